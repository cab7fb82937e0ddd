// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-itree.c - the interval tree (src/itree.c) against a brute-force model.
 *
 * The model keeps the linked nodes in an array sorted by (start, order),
 * where order is a counter bumped at every insertion: that is exactly the
 * order the tree promises (equal starts in insertion order).  After every
 * operation the tree is checked (itn__tree_check with the order word) and
 * queries are answered three ways - iter_first/_next, chains of
 * search_rcu(after), first_rcu - and compared with a linear scan.
 *
 * Random sequences use xorshift64* from a fixed seed, printed at start;
 * ITN_TEST_SEED=<number> overrides it.
 */
#include <errno.h>
#include <inttypes.h>
/* cmocka.h 1.1.5 needs stdarg.h, stddef.h and setjmp.h included first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "itree.h"

#define MAX UINT64_MAX
#define DEFAULT_SEED UINT64_C(0x9e3779b97f4a7c15)

/*
 * TSan makes every atomic access of this single-threaded test some 20 times
 * slower and finds nothing more in it: run fewer random operations there.
 */
#if defined(__SANITIZE_THREAD__)
#define OPS_DIVISOR 4
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OPS_DIVISOR 4
#endif
#endif
#ifndef OPS_DIVISOR
#define OPS_DIVISOR 1
#endif

static uint64_t base_seed = DEFAULT_SEED;

struct tnode {
	struct itn_tnode tn;
	_Atomic uint64_t order;
	/* model */
	uint64_t start, last;
	bool in;
};

/* The order word's offset from the embedded tree node. */
#define ORDER_OFF (offsetof(struct tnode, order) - offsetof(struct tnode, tn))

static struct tnode *to_tnode(struct itn_tnode *n)
{
	return (struct tnode *)(void *)((char *)n - offsetof(struct tnode, tn));
}

struct model {
	struct itn_tree tree;
	struct tnode *nodes;
	size_t n;
	struct tnode **sorted; /* linked nodes by (start, order) */
	size_t nin;
	uint64_t next_order;
	uint64_t rng;
	bool no_wide; /* keep the wide classes out */
	unsigned long op; /* mutating calls so far, for messages */
	/* scratch for queries */
	struct tnode **exp;
};

__attribute__((format(printf, 2, 3))) static void failf(const struct model *m,
							const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fail_msg("seed %#" PRIx64 ", op %lu: %s", base_seed, m ? m->op : 0,
		 buf);
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* A nonzero xorshift state for test @salt, derived from the base seed. */
static uint64_t seed_for(uint64_t salt)
{
	uint64_t z = base_seed + salt * UINT64_C(0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	z ^= z >> 31;
	return z ? z : 1;
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return rnd(s) % n;
}

static void model_init(struct model *m, size_t n, uint64_t salt)
{
	memset(m, 0, sizeof(*m));
	itn__tree_init(&m->tree);
	m->nodes = calloc(n, sizeof(*m->nodes));
	m->sorted = calloc(n, sizeof(*m->sorted));
	m->exp = calloc(n + 1, sizeof(*m->exp));
	assert_non_null(m->nodes);
	assert_non_null(m->sorted);
	assert_non_null(m->exp);
	m->n = n;
	for (size_t i = 0; i < n; i++) {
		itn__tnode_init(&m->nodes[i].tn);
		atomic_init(&m->nodes[i].order, 0);
	}
	m->next_order = 1;
	m->rng = seed_for(salt);
}

static void model_free(struct model *m)
{
	free(m->nodes);
	free(m->sorted);
	free(m->exp);
}

/* (a.start, a.order) < (start, order) */
static bool key_lt(const struct tnode *a, uint64_t start, uint64_t order)
{
	uint64_t ao = atomic_load_explicit(&a->order, memory_order_relaxed);

	return a->start < start || (a->start == start && ao < order);
}

static uint64_t wseq(const struct model *m)
{
	return atomic_load_explicit(&m->tree.wseq, memory_order_relaxed);
}

static void full_check(struct model *m)
{
	const char *why = NULL;
	long c = itn__tree_check(&m->tree, ORDER_OFF, &why);

	if (c < 0)
		failf(m, "itn__tree_check: %s", why ? why : "?");
	if ((size_t)c != m->nin)
		failf(m, "tree has %ld nodes, model %zu", c, m->nin);
	if (itn__tree_empty(&m->tree) != (m->nin == 0))
		failf(m, "itn__tree_empty() disagrees with the model");
	if (wseq(m) & 1)
		failf(m, "wseq is odd after an operation");
}

/* Insert node @i as [s, l]; the model follows. */
static void do_insert(struct model *m, size_t i, uint64_t s, uint64_t l)
{
	struct tnode *x = &m->nodes[i];
	uint64_t w = wseq(m), o = m->next_order++;
	size_t pos;
	int r;

	m->op++;
	atomic_store_explicit(&x->order, o, memory_order_relaxed);
	r = itn__tree_insert(&m->tree, &x->tn, s, l);
	if (r != 0)
		failf(m,
		      "insert of node %zu [%#" PRIx64 ", %#" PRIx64
		      "] returned %d",
		      i, s, l, r);
	if (wseq(m) <= w)
		failf(m, "insert did not advance wseq");
	if (!itn__tnode_linked(&x->tn))
		failf(m, "inserted node is not linked");
	if (itn__tnode_start(&x->tn) != s || itn__tnode_last(&x->tn) != l)
		failf(m, "inserted node has the wrong interval");
	x->start = s;
	x->last = l;
	x->in = true;
	/* After every key <= (s, o): o is the largest order so far. */
	pos = m->nin;
	while (pos > 0 && !key_lt(m->sorted[pos - 1], s, o))
		pos--;
	memmove(&m->sorted[pos + 1], &m->sorted[pos],
		(m->nin - pos) * sizeof(*m->sorted));
	m->sorted[pos] = x;
	m->nin++;
}

static void do_remove(struct model *m, size_t i)
{
	struct tnode *x = &m->nodes[i];
	uint64_t w = wseq(m);
	size_t pos;
	int r;

	m->op++;
	r = itn__tree_remove(&m->tree, &x->tn);
	if (r != 0)
		failf(m, "remove of node %zu returned %d", i, r);
	if (wseq(m) <= w)
		failf(m, "remove did not advance wseq");
	if (itn__tnode_linked(&x->tn))
		failf(m, "removed node is still linked");
	x->in = false;
	for (pos = 0; pos < m->nin && m->sorted[pos] != x; pos++)
		;
	assert_true(pos < m->nin);
	memmove(&m->sorted[pos], &m->sorted[pos + 1],
		(m->nin - pos - 1) * sizeof(*m->sorted));
	m->nin--;
}

/* Bad calls: -EINVAL, nothing changed (wseq, the node, the tree). */
static void bad_insert(struct model *m, size_t i, uint64_t s, uint64_t l)
{
	struct tnode *x = &m->nodes[i];
	bool was_in = x->in;
	uint64_t w = wseq(m), os, ol;
	int r;

	m->op++;
	os = itn__tnode_start(&x->tn);
	ol = itn__tnode_last(&x->tn);
	r = itn__tree_insert(&m->tree, &x->tn, s, l);
	if (r != -EINVAL)
		failf(m,
		      "bad insert of node %zu [%#" PRIx64 ", %#" PRIx64
		      "] returned %d, not -EINVAL",
		      i, s, l, r);
	if (wseq(m) != w)
		failf(m, "rejected insert changed wseq");
	if (itn__tnode_linked(&x->tn) != was_in)
		failf(m, "rejected insert changed the node's linkage");
	if (was_in &&
	    (itn__tnode_start(&x->tn) != os || itn__tnode_last(&x->tn) != ol))
		failf(m, "rejected insert changed a linked node's interval");
}

static void bad_remove(struct model *m, size_t i)
{
	uint64_t w = wseq(m);
	int r;

	m->op++;
	r = itn__tree_remove(&m->tree, &m->nodes[i].tn);

	if (r != -EINVAL)
		failf(m, "remove of unlinked node %zu returned %d", i, r);
	if (wseq(m) != w)
		failf(m, "rejected remove changed wseq");
}

/* Brute force: the linked nodes overlapping [qs, ql], in tree order. */
static size_t expected(struct model *m, uint64_t qs, uint64_t ql)
{
	size_t k = 0;

	for (size_t i = 0; i < m->nin; i++) {
		struct tnode *x = m->sorted[i];

		if (x->start > ql)
			break;
		if (x->last >= qs)
			m->exp[k++] = x;
	}
	return k;
}

/* Node index for messages: -1 for NULL, -2 for ITN_TREE_LOST. */
static long idx(const struct model *m, const struct itn_tnode *n)
{
	if (!n)
		return -1;
	if (n == ITN_TREE_LOST)
		return -2;
	return (long)(to_tnode((struct itn_tnode *)n) - m->nodes);
}

/* (a.start, a.order) > *k */
static bool key_gt(const struct tnode *a, const struct itn_tkey *k)
{
	uint64_t ao = atomic_load_explicit(&a->order, memory_order_relaxed);

	return a->start > k->start || (a->start == k->start && ao > k->order);
}

/* Compare all three read paths with the model for the query [qs, ql]. */
static void check_query(struct model *m, uint64_t qs, uint64_t ql)
{
	size_t k = expected(m, qs, ql), i;
	struct itn_tnode *n;
	struct itn_tkey after;
	bool valid;

	/* Writer-side iteration. */
	n = itn__tree_iter_first(&m->tree, qs, ql);
	for (i = 0; i < k; i++) {
		if (n != &m->exp[i]->tn)
			failf(m,
			      "iter [%#" PRIx64 ", %#" PRIx64
			      "]: result %zu is node %ld, expected %ld of %zu",
			      qs, ql, i, idx(m, n), idx(m, &m->exp[i]->tn), k);
		n = itn__tree_iter_next(n, qs, ql);
	}
	if (n)
		failf(m,
		      "iter [%#" PRIx64 ", %#" PRIx64
		      "]: extra result node %ld after %zu",
		      qs, ql, idx(m, n), k);

	/* Lockless search, chained through (start, order) keys. */
	n = itn__tree_search_rcu(&m->tree, qs, ql, NULL, ORDER_OFF);
	for (i = 0;; i++) {
		struct itn_tnode *want = i < k ? &m->exp[i]->tn : NULL;

		if (n != want)
			failf(m,
			      "search_rcu [%#" PRIx64 ", %#" PRIx64
			      "]: result %zu is node %ld, expected %ld of %zu",
			      qs, ql, i, idx(m, n), idx(m, want), k);
		if (!n)
			break;
		after.start = itn__tnode_start(n);
		after.order = atomic_load_explicit(&to_tnode(n)->order,
						   memory_order_relaxed);
		n = itn__tree_search_rcu(&m->tree, qs, ql, &after, ORDER_OFF);
	}

	/* An arbitrary key, not necessarily any node's. */
	if (m->nin) {
		struct tnode *r = m->sorted[below(&m->rng, m->nin)];
		struct itn_tnode *want = NULL;

		after.start = r->start;
		after.order =
			atomic_load_explicit(&r->order, memory_order_relaxed);
		switch (below(&m->rng, 4)) {
		case 0:
			after.order--;
			break;
		case 1:
			after.order += below(&m->rng, 3);
			break;
		case 2:
			after.order = 0;
			break;
		default:
			after.order = MAX;
			break;
		}
		for (i = 0; i < k; i++) {
			if (key_gt(m->exp[i], &after)) {
				want = &m->exp[i]->tn;
				break;
			}
		}
		n = itn__tree_search_rcu(&m->tree, qs, ql, &after, ORDER_OFF);
		if (n != want)
			failf(m,
			      "search_rcu [%#" PRIx64 ", %#" PRIx64
			      "] after (%#" PRIx64 ", %" PRIu64
			      "): node %ld, expected %ld",
			      qs, ql, after.start, after.order, idx(m, n),
			      idx(m, want));
	}

	n = itn__tree_first_rcu(&m->tree, qs, ql, &valid);
	if (!valid)
		failf(m, "first_rcu not valid without a concurrent writer");
	if (n != (k ? &m->exp[0]->tn : NULL))
		failf(m,
		      "first_rcu [%#" PRIx64 ", %#" PRIx64
		      "]: node %ld, expected %ld",
		      qs, ql, idx(m, n), k ? idx(m, &m->exp[0]->tn) : -1L);
}

/* A few fixed queries that every state should answer right. */
static void check_fixed_queries(struct model *m)
{
	check_query(m, 0, MAX);
	check_query(m, 0, 0);
	check_query(m, MAX, MAX);
}

/*
 * Interval classes by node index, so that a random run always has many
 * equal starts, points and boundary intervals.  The wide classes cover
 * most queries; run_random() keeps them out half of the time so that
 * small and empty answers are common too.
 */
static bool is_wide(size_t i)
{
	return i % 32 >= 28;
}

static void gen_range(uint64_t *rng, size_t i, uint64_t *s, uint64_t *l)
{
	uint64_t a, b, len;
	unsigned int c = i % 32;

	if (c < 6) { /* anywhere, up to 2^48 long */
		a = rnd(rng);
		len = rnd(rng) >> (16 + below(rng, 48));
		b = a > MAX - len ? MAX : a + len;
	} else if (c < 14) { /* clustered: few distinct starts */
		a = 1000 + 100 * below(rng, 4);
		b = a + below(rng, 300);
	} else if (c < 18) { /* single points in the small universe */
		a = below(rng, 1200);
		b = a;
	} else if (c < 24) { /* small universe */
		a = below(rng, 1200);
		b = a + below(rng, 150);
	} else if (c < 26) { /* at 0 */
		a = 0;
		b = below(rng, 3) ? below(rng, 1100) : 0;
	} else if (c < 28) { /* at UINT64_MAX */
		a = below(rng, 3) ? MAX - below(rng, 1100) : MAX;
		b = MAX;
	} else if (c < 29) { /* everything, or nearly */
		a = below(rng, 2) ? 0 : below(rng, 5);
		b = below(rng, 2) ? MAX : MAX - below(rng, 5);
	} else if (c < 30) { /* big, over the small universe */
		a = below(rng, 1100);
		b = a + (rnd(rng) >> below(rng, 8)) % (MAX - a);
	} else { /* anywhere, any length */
		a = rnd(rng);
		len = rnd(rng) >> below(rng, 64);
		b = a > MAX - len ? MAX : a + len;
	}
	*s = a;
	*l = b;
}

static void gen_query(struct model *m, uint64_t *s, uint64_t *l)
{
	uint64_t *rng = &m->rng, a, b;

	switch (below(rng, 8)) {
	case 0: /* around an endpoint of a random node */
	case 1: {
		struct tnode *x = &m->nodes[below(rng, m->n)];
		uint64_t d = below(rng, 3);

		a = below(rng, 2) ? x->start : x->last;
		if (below(rng, 2))
			a = a >= d ? a - d : 0;
		else
			a = a <= MAX - d ? a + d : MAX;
		d = below(rng, 3);
		b = a > MAX - d ? MAX : a + d;
		break;
	}
	case 2: /* small universe */
	case 3:
	case 4:
		a = below(rng, 1500);
		b = a + below(rng, 200);
		break;
	case 5: /* random */
		a = rnd(rng);
		b = rnd(rng);
		if (a > b) {
			uint64_t t = a;

			a = b;
			b = t;
		}
		break;
	case 6: /* top */
		a = MAX - below(rng, 1200);
		b = below(rng, 2) ? MAX : a + below(rng, MAX - a + 1);
		break;
	default: /* bottom */
		a = below(rng, 4) ? 0 : below(rng, 10);
		b = a + below(rng, 1200);
		break;
	}
	*s = a;
	*l = b;
}

/* One random operation on node @i. */
static void random_op(struct model *m)
{
	uint64_t *rng = &m->rng, s, l;
	size_t i = below(rng, m->n);
	struct tnode *x = &m->nodes[i];

	if (x->in) {
		if (below(rng, 16) == 0) {
			/* Already linked: rejected whatever the range. */
			gen_range(rng, i, &s, &l);
			bad_insert(m, i, s, l);
			return;
		}
		do_remove(m, i);
		if (below(rng, 4) == 0 && !(m->no_wide && is_wide(i))) {
			/* Straight back in: goes after its equal starts. */
			if (below(rng, 2))
				gen_range(rng, i, &s, &l);
			else
				s = x->start, l = x->last;
			do_insert(m, i, s, l);
		}
		return;
	}
	if (m->no_wide && is_wide(i))
		return;
	switch (below(rng, 16)) {
	case 0:
		bad_remove(m, i);
		return;
	case 1:
		gen_range(rng, i, &s, &l);
		if (s == l)
			return;
		bad_insert(m, i, l, s); /* start > last */
		return;
	case 2:
	case 3:
	case 4:
		if (x->start <= x->last && m->next_order > 1) {
			/* Same range as before (possibly never inserted:
			 * then [0, 0]). */
			do_insert(m, i, x->start, x->last);
			return;
		}
		break;
	default:
		break;
	}
	gen_range(rng, i, &s, &l);
	do_insert(m, i, s, l);
}

static void run_random(uint64_t salt, size_t nodes, unsigned long ops,
		       unsigned int check_every, unsigned int query_every,
		       unsigned int queries)
{
	struct model m;
	uint64_t qs, ql;

	model_init(&m, nodes, salt);
	for (unsigned long it = 1; it <= ops; it++) {
		m.no_wide = (it / 8192) % 2;
		random_op(&m);
		if (it % check_every == 0)
			full_check(&m);
		if (it % query_every)
			continue;
		for (unsigned int q = 0; q < queries; q++) {
			gen_query(&m, &qs, &ql);
			check_query(&m, qs, ql);
		}
		if (it % (64 * query_every) == 0)
			check_fixed_queries(&m);
	}
	/* Drain: remove everything, checking as we go. */
	for (size_t i = 0; i < m.n; i++) {
		if (!m.nodes[i].in)
			continue;
		do_remove(&m, i);
		if (i % check_every == 0)
			full_check(&m);
	}
	full_check(&m);
	check_fixed_queries(&m);
	model_free(&m);
}

static void random_ops_match_model(void **state)
{
	(void)state;
	run_random(1, 300, 200000 / OPS_DIVISOR, 1, 1, 2);
}

static void random_ops_many_nodes_match_model(void **state)
{
	(void)state;
	run_random(2, 5000, 60000 / OPS_DIVISOR, 97, 16, 2);
}

/* Fill-then-drain passes push the tree to full size and back to empty. */
static void fill_and_drain_match_model(void **state)
{
	struct model m;
	uint64_t s, l, qs, ql;

	(void)state;
	model_init(&m, 1000, 3);
	for (int pass = 0; pass < 3; pass++) {
		for (size_t i = 0; i < m.n; i++) {
			gen_range(&m.rng, i, &s, &l);
			do_insert(&m, i, s, l);
			if (i % 7 == 0)
				full_check(&m);
		}
		full_check(&m);
		for (int q = 0; q < 200; q++) {
			gen_query(&m, &qs, &ql);
			check_query(&m, qs, ql);
		}
		check_fixed_queries(&m);
		/* Remove in random order. */
		while (m.nin) {
			do_remove(&m, (size_t)(m.sorted[below(&m.rng, m.nin)] -
					       m.nodes));
			if (m.nin % 7 == 0) {
				full_check(&m);
				gen_query(&m, &qs, &ql);
				check_query(&m, qs, ql);
			}
		}
		full_check(&m);
	}
	model_free(&m);
}

static void empty_tree_finds_nothing(void **state)
{
	struct model m;
	struct itn_tkey after = { 0, 0 };
	bool valid = false;

	(void)state;
	model_init(&m, 4, 4);
	full_check(&m);
	assert_true(itn__tree_empty(&m.tree));
	assert_null(itn__tree_iter_first(&m.tree, 0, MAX));
	assert_null(itn__tree_iter_first(&m.tree, 0, 0));
	assert_null(itn__tree_iter_first(&m.tree, MAX, MAX));
	assert_null(itn__tree_search_rcu(&m.tree, 0, MAX, NULL, ORDER_OFF));
	assert_null(itn__tree_search_rcu(&m.tree, 0, MAX, &after, ORDER_OFF));
	assert_null(itn__tree_first_rcu(&m.tree, 0, MAX, &valid));
	assert_true(valid);
	assert_false(itn__tnode_linked(&m.nodes[0].tn));
	bad_remove(&m, 0);
	/* One node in and out again leaves an empty tree. */
	do_insert(&m, 0, 5, 7);
	check_fixed_queries(&m);
	check_query(&m, 5, 5);
	do_remove(&m, 0);
	full_check(&m);
	assert_null(itn__tree_iter_first(&m.tree, 0, MAX));
	assert_null(itn__tree_search_rcu(&m.tree, 5, 7, NULL, ORDER_OFF));
	model_free(&m);
}

static void boundary_intervals_are_found(void **state)
{
	static const uint64_t r[][2] = {
		{ 0, 0 },	  { 0, 5 },	  { MAX, MAX },
		{ MAX - 5, MAX }, { 0, MAX },	  { 5, MAX - 5 },
		{ MAX - 1, MAX }, { 0, MAX - 1 }, { 1, MAX },
		{ MAX, MAX },	  { 0, 0 },	  { MAX - 5, MAX - 1 },
	};
	const size_t n = sizeof(r) / sizeof(r[0]);
	static const uint64_t q[][2] = {
		{ MAX, MAX },
		{ 0, 0 },
		{ 0, MAX },
		{ 1, 1 },
		{ MAX - 1, MAX - 1 },
		{ 6, MAX - 6 },
		{ 0, 4 },
		{ MAX - 4, MAX },
		{ MAX - 5, MAX - 5 },
		{ 5, 5 },
		{ 1, MAX - 1 },
	};
	struct model m;
	struct itn_tnode *it;

	(void)state;
	model_init(&m, n, 5);
	for (size_t i = 0; i < n; i++) {
		do_insert(&m, i, r[i][0], r[i][1]);
		full_check(&m);
		for (size_t j = 0; j < sizeof(q) / sizeof(q[0]); j++)
			check_query(&m, q[j][0], q[j][1]);
	}
	/* Spot checks, independent of the model. */
	it = itn__tree_iter_first(&m.tree, MAX, MAX);
	assert_ptr_equal(it, &m.nodes[4].tn); /* [0, MAX] */
	it = itn__tree_iter_first(&m.tree, 0, 0);
	assert_ptr_equal(it, &m.nodes[0].tn);
	assert_int_equal(expected(&m, MAX, MAX), 6);
	assert_int_equal(expected(&m, 0, 0), 5);
	assert_int_equal(expected(&m, 0, MAX), n);
	/* Remove them one by one, the [0, MAX] ones first. */
	do_remove(&m, 4);
	do_remove(&m, 7);
	for (size_t i = 0; i < n; i++) {
		if (!m.nodes[i].in)
			continue;
		do_remove(&m, i);
		full_check(&m);
		for (size_t j = 0; j < sizeof(q) / sizeof(q[0]); j++)
			check_query(&m, q[j][0], q[j][1]);
	}
	model_free(&m);
}

static void duplicates_keep_insertion_order(void **state)
{
	enum { N = 64 };
	struct model m;
	struct itn_tnode *it;
	size_t i;

	(void)state;
	model_init(&m, N, 6);
	for (i = 0; i < N; i++)
		do_insert(&m, i, 10, 20);
	full_check(&m);
	/* Same interval: iteration is insertion order. */
	it = itn__tree_iter_first(&m.tree, 15, 15);
	for (i = 0; i < N; i++) {
		assert_ptr_equal(it, &m.nodes[i].tn);
		it = itn__tree_iter_next(it, 15, 15);
	}
	assert_null(it);
	check_query(&m, 15, 15);
	check_query(&m, 20, 30);
	check_query(&m, 0, 9);
	check_query(&m, 21, MAX);
	/* Remove some in the middle, then put them back: they go last. */
	for (i = 5; i < N - 5; i += 3) {
		do_remove(&m, i);
		full_check(&m);
		check_query(&m, 10, 10);
	}
	for (i = 5; i < N - 5; i += 3) {
		do_insert(&m, i, 10, 20);
		full_check(&m);
		check_query(&m, 20, 20);
	}
	it = itn__tree_iter_first(&m.tree, 0, MAX);
	for (i = 0; i < N; i++) {
		if (i >= 5 && i < N - 5 && (i - 5) % 3 == 0)
			continue;
		assert_ptr_equal(it, &m.nodes[i].tn);
		it = itn__tree_iter_next(it, 0, MAX);
	}
	for (i = 5; i < N - 5; i += 3) {
		assert_ptr_equal(it, &m.nodes[i].tn);
		it = itn__tree_iter_next(it, 0, MAX);
	}
	assert_null(it);
	/* Equal starts with different lasts: order still by insertion. */
	for (i = 0; i < N; i += 2) {
		do_remove(&m, i);
		do_insert(&m, i, 10, 10 + i);
		full_check(&m);
	}
	for (uint64_t q = 9; q < 10 + N + 2; q++)
		check_query(&m, q, q);
	check_query(&m, 0, MAX);
	model_free(&m);
}

static void single_points_are_found(void **state)
{
	enum { N = 200 };
	struct model m;
	struct itn_tnode *it;
	size_t i;

	(void)state;
	model_init(&m, N, 7);
	/* Points at even positions, inserted in a scrambled order. */
	for (i = 0; i < N; i++) {
		size_t j = (i * 37) % N;

		do_insert(&m, j, 2 * j, 2 * j);
	}
	full_check(&m);
	for (i = 0; i < N; i++) {
		it = itn__tree_iter_first(&m.tree, 2 * i, 2 * i);
		assert_ptr_equal(it, &m.nodes[i].tn);
		assert_null(itn__tree_iter_next(it, 2 * i, 2 * i));
		assert_null(
			itn__tree_iter_first(&m.tree, 2 * i + 1, 2 * i + 1));
		assert_null(itn__tree_search_rcu(&m.tree, 2 * i + 1, 2 * i + 1,
						 NULL, ORDER_OFF));
		check_query(&m, 2 * i, 2 * i);
		check_query(&m, 2 * i + 1, 2 * i + 1);
		check_query(&m, 2 * i + 1, 2 * i + 3);
	}
	/* Points at 0 and UINT64_MAX too. */
	do_remove(&m, 0);
	do_insert(&m, 0, MAX, MAX);
	do_remove(&m, 1);
	do_insert(&m, 1, 0, 0);
	full_check(&m);
	check_fixed_queries(&m);
	check_query(&m, MAX - 1, MAX - 1);
	check_query(&m, 1, 1);
	model_free(&m);
}

static void disjoint_queries_are_rejected(void **state)
{
	enum { N = 100 };
	struct model m;
	bool valid;
	uint64_t rng = seed_for(8);

	(void)state;
	model_init(&m, N, 8);
	/* All within [1000, 2000], touching both ends. */
	do_insert(&m, 0, 1000, 1000);
	do_insert(&m, 1, 1500, 2000);
	for (size_t i = 2; i < N; i++) {
		uint64_t s = 1000 + below(&rng, 1000);

		do_insert(&m, i, s, s + below(&rng, 2000 - s + 1));
	}
	full_check(&m);
	/* Left of everything: the cached leftmost rejects it. */
	assert_null(itn__tree_iter_first(&m.tree, 0, 999));
	assert_null(itn__tree_iter_first(&m.tree, 0, 0));
	assert_null(itn__tree_search_rcu(&m.tree, 0, 999, NULL, ORDER_OFF));
	assert_null(itn__tree_first_rcu(&m.tree, 0, 999, &valid));
	assert_true(valid);
	/* Right of everything: the root's maximum rejects it. */
	assert_null(itn__tree_iter_first(&m.tree, 2001, MAX));
	assert_null(itn__tree_iter_first(&m.tree, MAX, MAX));
	assert_null(itn__tree_search_rcu(&m.tree, 2001, MAX, NULL, ORDER_OFF));
	assert_null(itn__tree_first_rcu(&m.tree, 2001, MAX, &valid));
	assert_true(valid);
	/* The edges themselves are found. */
	assert_non_null(itn__tree_iter_first(&m.tree, 0, 1000));
	assert_non_null(itn__tree_iter_first(&m.tree, 2000, MAX));
	for (uint64_t q = 990; q < 1010; q++)
		check_query(&m, 0, q);
	for (uint64_t q = 1990; q < 2010; q++)
		check_query(&m, q, MAX);
	model_free(&m);
}

static void bad_input_is_rejected(void **state)
{
	enum { N = 16 };
	struct itn_tkey after = { 0, 0 };
	struct model m;
	uint64_t w;
	struct itn_tnode *it;
	bool valid;

	(void)state;
	model_init(&m, N, 9);
	/* start > last on an empty tree and on a populated one. */
	bad_insert(&m, 0, 2, 1);
	bad_insert(&m, 0, MAX, 0);
	assert_false(itn__tnode_linked(&m.nodes[0].tn));
	full_check(&m);
	for (size_t i = 1; i < N; i++)
		do_insert(&m, i, i * 10, i * 10 + 15);
	w = wseq(&m);
	bad_insert(&m, 0, 2, 1);
	bad_insert(&m, 0, 1, 0);
	bad_insert(&m, 0, MAX, MAX - 1);
	assert_false(itn__tnode_linked(&m.nodes[0].tn));
	assert_int_equal(itn__tree_check(&m.tree, ORDER_OFF, NULL), N - 1);
	assert_int_equal(wseq(&m), w);
	check_fixed_queries(&m);
	/* Already linked: rejected, even with an identical range. */
	bad_insert(&m, 3, 30, 45);
	bad_insert(&m, 3, 0, MAX);
	bad_insert(&m, 3, 5, 4);
	assert_int_equal(itn__tree_check(&m.tree, ORDER_OFF, NULL), N - 1);
	assert_int_equal(wseq(&m), w);
	check_query(&m, 30, 30);
	check_query(&m, 0, MAX);
	/* Unlinked: removing is rejected; twice too. */
	bad_remove(&m, 0);
	do_remove(&m, 5);
	bad_remove(&m, 5);
	full_check(&m);
	/* A rejected query sets errno. */
	errno = 0;
	it = itn__tree_iter_first(&m.tree, 2, 1);
	assert_null(it);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(itn__tree_iter_first(&m.tree, MAX, 0));
	assert_int_equal(errno, EINVAL);
	/* So does a lockless one, with or without a lower key, even where
	 * nodes hold both ends ([30, 45] holds 35 and 31). */
	errno = 0;
	assert_null(itn__tree_search_rcu(&m.tree, 35, 31, NULL, ORDER_OFF));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(itn__tree_search_rcu(&m.tree, 35, 31, &after, ORDER_OFF));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(itn__tree_first_rcu(&m.tree, 35, 31, &valid));
	assert_int_equal(errno, EINVAL);
	/* The node rejected earlier still goes in normally. */
	do_insert(&m, 0, 1, 2);
	full_check(&m);
	check_fixed_queries(&m);
	model_free(&m);
}

/*
 * What a reader could meet if a writer broke its rules: a cycle.  The walk
 * guards must end the walk with ITN_TREE_LOST (the tree is not used again).
 */
static void search_guards_end_cyclic_walks(void **state)
{
	struct itn_tkey after = { MAX, MAX };
	struct itn_tnode *root;
	struct model m;
	bool valid = true;

	(void)state;
	model_init(&m, 1, 10);
	do_insert(&m, 0, 10, 20);
	root = &m.nodes[0].tn;
	/* Descending left forever: the depth guard. */
	atomic_store(&root->left, root);
	assert_ptr_equal(itn__tree_search_rcu(&m.tree, 0, 5, NULL, ORDER_OFF),
			 ITN_TREE_LOST);
	assert_null(itn__tree_first_rcu(&m.tree, 0, 5, &valid));
	assert_false(valid);
	/* Skipping right forever past @after: the step guard. */
	atomic_store(&root->left, NULL);
	atomic_store(&root->right, root);
	assert_ptr_equal(
		itn__tree_search_rcu(&m.tree, 0, MAX, &after, ORDER_OFF),
		ITN_TREE_LOST);
	/* Popping and going right forever (a lying maximum). */
	atomic_store(&root->subtree_last, 30);
	assert_ptr_equal(itn__tree_search_rcu(&m.tree, 21, 30, NULL, ORDER_OFF),
			 ITN_TREE_LOST);
	model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_tree_finds_nothing),
		cmocka_unit_test(boundary_intervals_are_found),
		cmocka_unit_test(duplicates_keep_insertion_order),
		cmocka_unit_test(single_points_are_found),
		cmocka_unit_test(disjoint_queries_are_rejected),
		cmocka_unit_test(bad_input_is_rejected),
		cmocka_unit_test(search_guards_end_cyclic_walks),
		cmocka_unit_test(fill_and_drain_match_model),
		cmocka_unit_test(random_ops_match_model),
		cmocka_unit_test(random_ops_many_nodes_match_model),
	};
	const char *env = getenv("ITN_TEST_SEED");

	if (env && *env) {
		char *end;

		errno = 0;
		base_seed = strtoull(env, &end, 0);
		if (errno || *end) {
			fprintf(stderr, "ITN_TEST_SEED: not a number: %s\n",
				env);
			return EXIT_FAILURE;
		}
	}
	printf("itree: seed %#" PRIx64 " (override with ITN_TEST_SEED)\n",
	       base_seed);
	fflush(stdout);
	/* Never return the failure count: 77 reads as SKIP in meson. */
	return cmocka_run_group_tests_name("itree", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
