/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * baseline.h - the kernel's mmu_interval_notifier algorithm, done the
 * kernel's way, for the N workloads of itn-bench-notifier.  Not part of
 * the library.
 *
 * One pthread mutex per space (the kernel's per-mm spinlock) serialises
 * the global seq, the active count, the interval tree and the deferred
 * list, exactly as mm/mmu_notifier.c does: bl_read_begin() takes it to
 * compare the sub seq with the global one, bl_invalidate_start() takes it
 * to count itself in and search the tree, bl_invalidate_end() to count
 * itself out (and, last out of a period, to apply the deferred list and
 * make the seq even), insert and remove to change the tree or defer.
 * Waiters sleep on a condition variable bound to the mutex.  The tree is
 * libitn's (src/itree.h), so that only the protocol differs.
 *
 * bl_find() is what a kernel-style lookup with a lifetime would be: the
 * first overlapping subscription, found under the mutex, with a reference
 * taken (an atomic increment) before the mutex is dropped; bl_sub_put()
 * is an atomic decrement.
 *
 * The API mirrors libitn's (same arguments, struct itn_range), so every
 * workload runs against both.  All functions are thread-safe; none
 * validates its arguments (a bench, not a library).
 */
#ifndef ITN_BENCH_BASELINE_H
#define ITN_BENCH_BASELINE_H

#include <itn/itn.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "itree.h"

struct bl_sub;

struct bl_sub_ops {
	bool (*invalidate)(struct bl_sub *sub, const struct itn_range *range,
			   uint64_t cur_seq);
	void (*release)(struct bl_sub *sub); /* optional: last bl_sub_put() */
};

/**
 * struct bl_sub - the kernel's struct mmu_interval_notifier, plus a
 * reference count for bl_find().
 * @node: the interval tree node; not linked while an insert is deferred
 *	(the kernel's RB_EMPTY_NODE test).
 * @space: the space.
 * @ops: the callbacks.
 * @deferred_next, @deferred_pprev: the hlist link into the deferred list.
 * @seq: the sub seq (odd): insert writes it under the mutex, bl_set_seq()
 *	under the caller's lock.
 * @refs: references: 1 for the registration, one per bl_find().
 */
struct bl_sub {
	struct itn_tnode node;
	struct bl_space *space;
	const struct bl_sub_ops *ops;
	struct bl_sub *deferred_next;
	struct bl_sub **deferred_pprev;
	_Atomic uint64_t seq;
	_Atomic uint32_t refs;
};

/**
 * struct bl_space - the kernel's struct mmu_notifier_subscriptions.
 * @lock: the one lock of the space.
 * @cv: waiters for the end of a period (read_begin, remove).
 * @seq: the global seq: even when idle, odd during a period.  Written
 *	under @lock; atomic only so that a racing lockless reader (none in
 *	this file) would be defined.
 * @active: invalidations in flight (@lock).
 * @tree: the interval tree (@lock; frozen while @seq is odd).
 * @deferred: inserts and removes waiting for the end of the period; head
 *	insertion, as the kernel's hlist (@lock).
 * @read_waits: bl_read_begin() calls that slept (@lock; for the bench).
 */
struct bl_space {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	_Atomic uint64_t seq;
	uint64_t active;
	struct itn_tree tree;
	struct bl_sub *deferred;
	uint64_t read_waits;
};

/* 0, or the error of pthread_mutex_init / pthread_cond_init. */
int bl_space_init(struct bl_space *s);
void bl_space_destroy(struct bl_space *s);

/* Idle/Partial/Full as the kernel; length > 0, no overflow (unchecked). */
void bl_sub_insert(struct bl_sub *sub, struct bl_space *s, uint64_t start,
		   uint64_t length, const struct bl_sub_ops *ops);
/* Sleeps until the period ends if the sub is in the frozen tree; then
 * drops the registration's reference (release() runs if it was the last). */
void bl_sub_remove(struct bl_sub *sub);

uint64_t bl_read_begin(struct bl_sub *sub);
bool bl_read_retry(const struct bl_sub *sub, uint64_t seq);
void bl_set_seq(struct bl_sub *sub, uint64_t cur_seq);

/* 0, or -EAGAIN (not blockable and a callback refused; already ended). */
int bl_invalidate_start(struct bl_space *s, const struct itn_range *r);
void bl_invalidate_end(struct bl_space *s, const struct itn_range *r);

/* First overlap of [start, last] with these @ops (NULL: any), with a
 * reference; NULL if none. */
struct bl_sub *bl_find(struct bl_space *s, const struct bl_sub_ops *ops,
		       uint64_t start, uint64_t last);
void bl_sub_put(struct bl_sub *sub);

#endif /* ITN_BENCH_BASELINE_H */
