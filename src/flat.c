// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * flat.c - building, publishing and retiring the flat index (see flat.h).
 *
 * A build is a lockless in-order walk of the logical index under an RCU
 * read-side section, validated by the tree's sequence count like any
 * lockless walk: if a writer ran meanwhile, the copy is thrown away (the
 * tree changed, so it would be stale anyway).  The copy is laid out, then
 * published with a release CAS; the index it replaces is freed after a
 * grace period, since finds may still be searching it.
 *
 * When to build (itn__flat_note_miss()): each thread counts the finds it
 * walked in the tree because the flat index was stale, for one space at one
 * tree sequence.  At (subscriptions / 4 + 64) such finds it builds: a build
 * costs about as much as that many tree levels, so a space that changes
 * between every few finds never builds, and one that stops changing gets
 * its index back after a quarter of a pass over it.
 */
#include "itn-internal.h"

#include <stdlib.h>

static _Atomic unsigned int thr_shift = 2;
static _Atomic uint64_t thr_min = 64;

void itn__flat_set_threshold(unsigned int per_sub_shift, uint64_t min)
{
	atomic_store_explicit(&thr_shift, per_sub_shift < 64 ? per_sub_shift : 63,
			      memory_order_relaxed);
	atomic_store_explicit(&thr_min, min, memory_order_relaxed);
}

/* This thread's tree-walking finds on one space at one tree sequence. */
static _Thread_local struct {
	const struct itn_space *s;
	uint64_t w;
	uint64_t finds;
} misses __attribute__((tls_model("initial-exec")));

void itn__flat_note_miss(struct itn_space *s, uint64_t w)
{
	uint64_t min = atomic_load_explicit(&thr_min, memory_order_relaxed);
	uint64_t n, limit;

	if (misses.s != s || misses.w != w) {
		misses.s = s;
		misses.w = w;
		misses.finds = 0;
	}
	if (min == UINT64_MAX)
		return;
	n = atomic_load_explicit(&s->nlogi, memory_order_relaxed);
	limit = (n >> atomic_load_explicit(&thr_shift, memory_order_relaxed)) +
		min;
	if (++misses.finds < limit)
		return;
	misses.finds = 0;
	itn__flat_build(s);
}

static void flat_free_cb(struct rcu_head *head)
{
	struct itn_flat *f = itn_container_of(head, struct itn_flat, rcu);

	itn__rcu_callback_enter(head);
	free(f);
	itn__rcu_callback_exit();
}

/* Sorted (start, last, sub) triples taken from the tree. */
struct flat_item {
	uint64_t start;
	uint64_t last;
	struct itn__sub *sub;
};

static inline struct itn__sub *logi_sub(struct itn_tnode *n)
{
	return itn_container_of(n, struct itn__sub, logi);
}

/*
 * In-order walk of the logical index into @out (at most @cap items), with
 * child pointers only.  Returns the count, or -1 if the walk went beyond
 * @cap or the depth guard (only when a writer ran; the caller's validation
 * would fail anyway).
 */
static long collect(const struct itn_tree *t, struct flat_item *out,
		    size_t cap)
{
	struct itn_tnode *stack[ITN_TREE_MAX_DEPTH];
	struct itn_tnode *n = atomic_load_explicit(&t->root,
						   memory_order_acquire);
	size_t depth = 0, count = 0;

	for (;;) {
		while (n) {
			if (depth == ITN_TREE_MAX_DEPTH)
				return -1;
			stack[depth++] = n;
			n = atomic_load_explicit(&n->left,
						 memory_order_acquire);
		}
		if (!depth)
			return (long)count;
		n = stack[--depth];
		if (count == cap)
			return -1;
		out[count++] = (struct flat_item){
			.start = atomic_load_explicit(&n->start,
						      memory_order_relaxed),
			.last = atomic_load_explicit(&n->last,
						     memory_order_relaxed),
			.sub = logi_sub(n),
		};
		n = atomic_load_explicit(&n->right, memory_order_acquire);
	}
}

/*
 * Lay the sorted items out in Eytzinger order: an in-order walk of the
 * implicit tree 1..n (children 2k, 2k+1) meets the positions in key order.
 */
static void layout(uint64_t *max, struct itn_flat_ent *ent,
		   const struct flat_item *items, uint64_t n)
{
	uint64_t k = 1, run = 0;

	if (!n)
		return;
	while (2 * k <= n) /* the leftmost position */
		k *= 2;
	for (uint64_t i = 0;;) {
		if (i == 0 || items[i].last > run)
			run = items[i].last;
		max[k] = run;
		ent[k] = (struct itn_flat_ent){ .start = items[i].start,
						.sub = items[i].sub };
		if (++i == n)
			return;
		if (2 * k + 1 <= n) {
			/* Successor: leftmost of the right subtree. */
			k = 2 * k + 1;
			while (2 * k <= n)
				k *= 2;
		} else {
			/* Up past the ancestors we are right of. */
			while (k & 1)
				k >>= 1;
			k >>= 1;
		}
	}
}

/*
 * One block: the header, max[0..n] on a 64-byte boundary, ent[0..n] on
 * one too, and a line after them (the search prefetches ent[n]'s next
 * line).
 */
static struct itn_flat *flat_alloc(uint64_t n, uint64_t **max,
				   struct itn_flat_ent **ent)
{
	size_t hdr = (sizeof(struct itn_flat) + 63) & ~(size_t)63;
	size_t max_bytes, total;
	char *p;

	if (n > (SIZE_MAX - 4096) / 32)
		return NULL;
	max_bytes = ((n + 1) * sizeof(uint64_t) + 63) & ~(size_t)63;
	total = hdr + max_bytes + (n + 1) * sizeof(struct itn_flat_ent) + 64;
	p = aligned_alloc(64, (total + 63) & ~(size_t)63);
	if (!p)
		return NULL;
	*max = (uint64_t *)(void *)(p + hdr);
	*ent = (struct itn_flat_ent *)(void *)(p + hdr + max_bytes);
	return (struct itn_flat *)(void *)p;
}

/* Publish @f unless an index at least as new is there; retire the old. */
static bool publish(struct itn_space *s, struct itn_flat *f)
{
	struct itn_flat *cur = atomic_load_explicit(&s->flat,
						    memory_order_acquire);

	do {
		if (cur && cur->wseq >= f->wseq) {
			bool same = cur->wseq == f->wseq;

			free(f);
			return same;
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&s->flat, &cur, f, memory_order_acq_rel, memory_order_acquire));
	if (cur)
		itn__call_rcu(&cur->rcu, flat_free_cb);
	return true;
}

bool itn__flat_build(struct itn_space *s)
{
	struct flat_item *items;
	struct itn_flat_ent *ent;
	struct itn_flat *f;
	uint64_t *max, w;
	size_t cap;
	long n;
	bool ok = false;

	/* One builder per space at a time; the others keep walking. */
	if (atomic_exchange_explicit(&s->flat_building, true,
				     memory_order_acquire))
		return false;
	/* Room for a few concurrent inserts; more and the walk is invalid. */
	cap = (size_t)atomic_load_explicit(&s->nlogi, memory_order_relaxed);
	cap += cap / 16 + 16;
	items = malloc(cap * sizeof(*items));
	if (!items)
		goto out;

	itn__rcu_read_lock();
	w = itn__tree_read_begin(&s->logi);
	n = (w & 1) ? -1 : collect(&s->logi, items, cap);
	if (n < 0 || !itn__tree_read_valid(&s->logi, w)) {
		itn__rcu_read_unlock();
		goto out_items;
	}
	f = flat_alloc((uint64_t)n, &max, &ent);
	if (!f) {
		itn__rcu_read_unlock();
		goto out_items;
	}
	f->wseq = w;
	f->n = (uint64_t)n;
	f->max = max;
	f->ent = ent;
	layout(max, ent, items, (uint64_t)n);
	ok = publish(s, f);
	itn__rcu_read_unlock();
out_items:
	free(items);
out:
	atomic_store_explicit(&s->flat_building, false, memory_order_release);
	return ok;
}

void itn__flat_free(struct itn_space *s)
{
	free(atomic_load_explicit(&s->flat, memory_order_relaxed));
	atomic_store_explicit(&s->flat, NULL, memory_order_relaxed);
}
