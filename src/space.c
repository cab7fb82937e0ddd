// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * space.c - address spaces: creation, teardown, counters.
 *
 * DOC: Theory of operation
 *
 * A space has a global seq, a count of active invalidations, two trees and
 * a deferred list, all changed under the space lock L (the kernel's
 * per-mm spinlock).  States (SEMANTICS.md §1):
 *
 *	Idle     active == 0, seq even   trees change under L
 *	Partial  active  > 0, seq even   trees change under L
 *	Full     active  > 0, seq odd    the physical tree is frozen; inserts,
 *	                                  removes and updates are deferred
 *
 * itn_invalidate_start() counts itself in active and, when its range
 * overlaps a subscription of the physical tree, makes seq odd: a period.
 * Every callback of the period gets that odd seq.  The invalidation that
 * brings active back to zero in Full applies the deferred list (call
 * order), then makes seq even (+1: each period advances it by 2), then
 * wakes every waiter, all in one L section: a remover that wakes finds its
 * subscription already out of the tree.
 *
 * The logical index is the membership itn_find() answers from: insert,
 * remove and update change it at once, whatever the state.  The physical
 * tree is what invalidations walk, exactly as the kernel's.
 *
 * Files: space.c (this), sub.c (insert/remove/update and the deferred
 * list), invalidate.c, read.c (collision-retry read side), find.c (lookup,
 * references, release).
 */
#include "itn-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void itn__die(const char *fmt, ...)
{
	va_list ap;

	fputs("libitn: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

ITN_EXPORT struct itn_space *itn_space_new(void)
{
	struct itn_space *s = calloc(1, sizeof(*s));
	pthread_condattr_t attr;
	int err;

	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	err = pthread_mutex_init(&s->lock, NULL);
	if (err)
		goto fail_free;
	err = pthread_condattr_init(&attr);
	if (err)
		goto fail_mutex;
	err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (!err)
		err = pthread_cond_init(&s->cv, &attr);
	pthread_condattr_destroy(&attr);
	if (err)
		goto fail_mutex;

	atomic_init(&s->seq, 2);
	atomic_init(&s->st, 0);
	atomic_init(&s->fast, true);
	itn__tree_init(&s->phys);
	itn__tree_init(&s->logi);
	atomic_init(&s->flat, NULL);
	atomic_init(&s->nlogi, 0);
	atomic_init(&s->flat_building, false);
	CDS_INIT_LIST_HEAD(&s->deferred);
	atomic_init(&s->objs, 0);
	atomic_init(&s->notifiers, NULL);
	atomic_init(&s->nnotifiers, 0);
	atomic_init(&s->classic_ends, 0);

	/*
	 * Create the call_rcu worker now rather than at the first release:
	 * the last itn_invalidate_end() of a period may queue a release, and
	 * invalidations must never allocate (they may run from memory hooks).
	 */
	(void)urcu_bp_get_default_call_rcu_data();
	return s;

fail_mutex:
	pthread_mutex_destroy(&s->lock);
fail_free:
	free(s);
	errno = err;
	return NULL;
}

/* Count out the hold of itn_space_release(); the last one out of a
 * period ends it. */
static void release_hold_end(struct itn_space *s)
{
	uint64_t st;

	itn__lock(s);
	st = itn__busy_begin(s) - ITN_ST_ONE;
	if (!itn__st_active(st) && (st & ITN_ST_ODD))
		st = itn__end_period_locked(s, st);
	itn__busy_end(s, st);
	itn__unlock(s);
}

ITN_EXPORT int itn_space_release(struct itn_space *s)
{
	uint64_t st, seq;

	if (!s)
		return -EINVAL;
	if (itn__in_callback(s))
		return -EDEADLK; /* the classic part waits for a grace period */
	itn__lock(s);
	if (s->released) {
		itn__unlock(s);
		return -EALREADY;
	}
	/*
	 * From here inserts fail, so the only subscriptions outside the tree
	 * are the inserts deferred by a period running now (seq odd).  Count
	 * a hold in, in the same section: that period cannot end before they
	 * too have had the RELEASE callback.
	 */
	s->released = true;
	st = itn__busy_begin(s);
	seq = itn__seq(s);
	itn__busy_end(s, st + ITN_ST_ONE);
	itn__unlock(s);

	/* The kernel's order: interval subscriptions, then classic.  The
	 * RELEASE invalidation joins the running period, if any: same seq. */
	itn__release_intervals(s);
	if (seq & 1)
		itn__release_deferred(s, &itn__range_release, seq);
	release_hold_end(s);
	itn__classic_release(s);
	return 0;
}

/* Anything present, pending or in flight?  (Space lock held.) */
static bool space_busy_locked(struct itn_space *s)
{
	/* objs: acquire pairs with the release in the release() paths. */
	return itn__active(s) || s->subs || itn__has_classic(s) ||
	       atomic_load_explicit(&s->classic_ends, memory_order_acquire) ||
	       !cds_list_empty(&s->deferred) || !itn__tree_empty(&s->phys) ||
	       !itn__tree_empty(&s->logi) ||
	       atomic_load_explicit(&s->objs, memory_order_acquire);
}

ITN_EXPORT int itn_space_free(struct itn_space *s)
{
	bool busy;

	if (!s)
		return -EINVAL;
	itn__lock(s);
	busy = space_busy_locked(s);
	itn__unlock(s);
	if (busy)
		return -EBUSY;
	itn__flat_free(s);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return 0;
}

#define rd(f) atomic_load_explicit(&s->stats.f, memory_order_relaxed)

ITN_EXPORT int itn_space_stats(struct itn_space *s, struct itn_stats *out)
{
	if (!s || !out)
		return -EINVAL;
	itn__lock(s);
	*out = (struct itn_stats){
		.invalidations = rd(invalidations),
		.periods = rd(periods),
		.callbacks = rd(callbacks),
		.nonblock_failures = rd(nonblock_failures),
		.deferred_inserts = rd(deferred_inserts),
		.deferred_removes = rd(deferred_removes),
		.read_waits = rd(read_waits),
		.remove_waits = rd(remove_waits),
		.subs = s->subs,
		.refused = rd(refused),
		.deferred_updates = rd(deferred_updates),
	};
	itn__unlock(s);
	return 0;
}

int itn__space_set_seq(struct itn_space *s, uint64_t seq)
{
	int err = 0;

	if (seq & 1)
		return -EINVAL;
	itn__lock(s);
	if (space_busy_locked(s))
		err = -EBUSY;
	else
		itn__set_global_seq(s, seq);
	itn__unlock(s);
	return err;
}

int itn__space_set_fast(struct itn_space *s, bool fast)
{
	int err = 0;

	itn__lock(s);
	if (itn__active(s))
		err = -EBUSY;
	else
		atomic_store_explicit(&s->fast, fast, memory_order_relaxed);
	itn__unlock(s);
	return err;
}
