// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * baseline.c - the kernel's algorithm under one mutex (see baseline.h).
 *
 * Each function follows its counterpart in mm/mmu_notifier.c (the
 * transition table of kernel-semantics.md §2.2):
 *
 *	bl_sub_insert		__mmu_interval_notifier_insert
 *	bl_sub_remove		mmu_interval_notifier_remove
 *	bl_read_begin		mmu_interval_read_begin
 *	bl_invalidate_start	mn_itree_inv_start_range + mn_itree_invalidate
 *	bl_invalidate_end	mn_itree_inv_end
 *
 * The only differences are the kernel's primitives: a pthread mutex for
 * the spinlock, a condition variable for the wait queue (waiters check
 * their predicate under the mutex), and the first-overlap lookup with a
 * reference that the kernel never merged (bl_find).
 */
#include "baseline.h"

#include <errno.h>

static inline struct bl_sub *node_sub(struct itn_tnode *n)
{
	return (struct bl_sub *)(void *)((char *)n -
					 offsetof(struct bl_sub, node));
}

static inline uint64_t gseq(const struct bl_space *s)
{
	return atomic_load_explicit(&s->seq, memory_order_relaxed);
}

static inline void set_gseq(struct bl_space *s, uint64_t v)
{
	atomic_store_explicit(&s->seq, v, memory_order_relaxed);
}

int bl_space_init(struct bl_space *s)
{
	pthread_condattr_t attr;
	int err;

	err = pthread_mutex_init(&s->lock, NULL);
	if (err)
		return err;
	err = pthread_condattr_init(&attr);
	if (!err) {
		err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		if (!err)
			err = pthread_cond_init(&s->cv, &attr);
		pthread_condattr_destroy(&attr);
	}
	if (err) {
		pthread_mutex_destroy(&s->lock);
		return err;
	}
	atomic_init(&s->seq, 2); /* the kernel starts at 2 */
	s->active = 0;
	itn__tree_init(&s->tree);
	s->deferred = NULL;
	s->read_waits = 0;
	return 0;
}

void bl_space_destroy(struct bl_space *s)
{
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
}

/* hlist_add_head / hlist_del. */
static void deferred_add(struct bl_space *s, struct bl_sub *sub)
{
	sub->deferred_next = s->deferred;
	if (s->deferred)
		s->deferred->deferred_pprev = &sub->deferred_next;
	s->deferred = sub;
	sub->deferred_pprev = &s->deferred;
}

static void deferred_del(struct bl_sub *sub)
{
	*sub->deferred_pprev = sub->deferred_next;
	if (sub->deferred_next)
		sub->deferred_next->deferred_pprev = sub->deferred_pprev;
	sub->deferred_next = NULL;
	sub->deferred_pprev = NULL;
}

void bl_sub_insert(struct bl_sub *sub, struct bl_space *s, uint64_t start,
		   uint64_t length, const struct bl_sub_ops *ops)
{
	uint64_t last = start + length - 1;

	sub->space = s;
	sub->ops = ops;
	sub->deferred_next = NULL;
	sub->deferred_pprev = NULL;
	atomic_store_explicit(&sub->refs, 1, memory_order_relaxed);
	itn__tnode_init(&sub->node); /* RB_CLEAR_NODE */
	/* The node holds the range while it waits on the deferred list. */
	atomic_store_explicit(&sub->node.start, start, memory_order_relaxed);
	atomic_store_explicit(&sub->node.last, last, memory_order_relaxed);

	pthread_mutex_lock(&s->lock);
	if (s->active) {
		if (gseq(s) & 1) {
			deferred_add(s, sub);
		} else {
			set_gseq(s, gseq(s) | 1);
			itn__tree_insert(&s->tree, &sub->node, start, last);
		}
		atomic_store_explicit(&sub->seq, gseq(s), memory_order_relaxed);
	} else {
		atomic_store_explicit(&sub->seq, gseq(s) - 1,
				      memory_order_relaxed);
		itn__tree_insert(&s->tree, &sub->node, start, last);
	}
	pthread_mutex_unlock(&s->lock);
}

void bl_sub_remove(struct bl_sub *sub)
{
	struct bl_space *s = sub->space;
	uint64_t seq = 0;

	pthread_mutex_lock(&s->lock);
	if (gseq(s) & 1) {
		if (!itn__tnode_linked(&sub->node)) {
			deferred_del(sub); /* a pending insert */
		} else {
			deferred_add(s, sub);
			seq = gseq(s);
		}
	} else {
		itn__tree_remove(&s->tree, &sub->node);
	}
	/* The kernel waits with the lock dropped and rechecks under it
	 * (mmu_interval_seq_released); a condvar does both at once. */
	while (seq && gseq(s) == seq)
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
	bl_sub_put(sub); /* the registration's reference */
}

uint64_t bl_read_begin(struct bl_sub *sub)
{
	struct bl_space *s = sub->space;
	uint64_t seq;

	pthread_mutex_lock(&s->lock);
	seq = atomic_load_explicit(&sub->seq, memory_order_relaxed);
	if (seq == gseq(s)) {
		s->read_waits++;
		do
			pthread_cond_wait(&s->cv, &s->lock);
		while (seq == gseq(s));
	}
	pthread_mutex_unlock(&s->lock);
	return seq;
}

bool bl_read_retry(const struct bl_sub *sub, uint64_t seq)
{
	/* Under the caller's lock, which orders it with bl_set_seq(). */
	return atomic_load_explicit(&sub->seq, memory_order_relaxed) != seq;
}

void bl_set_seq(struct bl_sub *sub, uint64_t cur_seq)
{
	atomic_store_explicit(&sub->seq, cur_seq, memory_order_relaxed);
}

void bl_invalidate_end(struct bl_space *s, const struct itn_range *r)
{
	(void)r;
	pthread_mutex_lock(&s->lock);
	if (--s->active || !(gseq(s) & 1)) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	set_gseq(s, gseq(s) + 1);
	while (s->deferred) {
		struct bl_sub *sub = s->deferred;

		deferred_del(sub);
		if (!itn__tnode_linked(&sub->node))
			itn__tree_insert(&s->tree, &sub->node,
					 itn__tnode_start(&sub->node),
					 itn__tnode_last(&sub->node));
		else
			itn__tree_remove(&s->tree, &sub->node);
	}
	pthread_mutex_unlock(&s->lock);
	pthread_cond_broadcast(&s->cv); /* wake_up_all */
}

int bl_invalidate_start(struct bl_space *s, const struct itn_range *r)
{
	struct itn_tnode *n;
	uint64_t cur_seq;

	pthread_mutex_lock(&s->lock);
	s->active++;
	n = itn__tree_iter_first(&s->tree, r->start, r->last);
	if (n)
		set_gseq(s, gseq(s) | 1);
	cur_seq = gseq(s);
	pthread_mutex_unlock(&s->lock);

	/* The tree is frozen while we are counted in an odd period. */
	for (; n; n = itn__tree_iter_next(n, r->start, r->last)) {
		struct bl_sub *sub = node_sub(n);

		if (sub->ops->invalidate(sub, r, cur_seq))
			continue;
		if (!(r->flags & ITN_RANGE_BLOCKABLE)) {
			bl_invalidate_end(s, r);
			return -EAGAIN;
		}
	}
	return 0;
}

struct bl_sub *bl_find(struct bl_space *s, const struct bl_sub_ops *ops,
		       uint64_t start, uint64_t last)
{
	struct bl_sub *sub = NULL;
	struct itn_tnode *n;

	pthread_mutex_lock(&s->lock);
	for (n = itn__tree_iter_first(&s->tree, start, last); n;
	     n = itn__tree_iter_next(n, start, last)) {
		if (!ops || node_sub(n)->ops == ops) {
			sub = node_sub(n);
			atomic_fetch_add_explicit(&sub->refs, 1,
						  memory_order_relaxed);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return sub;
}

void bl_sub_put(struct bl_sub *sub)
{
	if (atomic_fetch_sub_explicit(&sub->refs, 1, memory_order_acq_rel) ==
		    1 &&
	    sub->ops->release)
		sub->ops->release(sub);
}
