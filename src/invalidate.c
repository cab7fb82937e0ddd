// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * invalidate.c - the writer side: itn_invalidate_start() / _end().
 *
 * The slow paths are the kernel's algorithm under the space lock L, with
 * BUSY held in the state word around every change of the seq, the physical
 * tree, or the Idle/Partial/Full state.  The fast paths (rcu-design.md
 * §5.7, model-checked in tests/model/fastpath.pml) take no lock and change
 * only the active count, with one CAS, and only while BUSY is clear:
 *
 *  start, Full (ODD set): count in; the period cannot end while we are
 *	counted, so the seq is stable and the tree frozen: walk it.
 *  start, Idle/Partial: count in, then search the physical tree lockless
 *	under RCU, validated by its sequence count.  A validated miss is done
 *	(Partial: no seq change, no callback).  A hit, or a walk that keeps
 *	failing validation, continues on the slow path while counted: under
 *	L and BUSY, open the period if it hits.  A validated hit is handed
 *	over with the tree's sequence count, and the slow path searches
 *	again only if the tree changed since (start_hit()).
 *  end, not the last of a period: count out.
 *
 * Why the lock holders need BUSY: an insert in Idle must not miss an
 * invalidator that registered and validated a miss concurrently (race a);
 * a remove in Partial must not race an invalidator about to open a period
 * on the node (race b); a Partial insert opening a period must not race the
 * last count-out (race c: active 0 with an odd seq).  With BUSY, a lock
 * holder decides from a state word no fast path can change under it.
 *
 * Memory: a lockless walker may hold a node of a subscription removed in
 * Partial; such a remove waits for an RCU grace period before returning
 * (sub.c).  In Idle no walker is counted, and in Full nothing leaves the
 * tree before the period ends.
 *
 * Neither start nor end allocates: both may run from memory hooks.
 */
#include "itn-internal.h"

#include <errno.h>

/* Validated lockless searches before the slow path takes over. */
#define ITN_START_RETRIES 4

_Thread_local struct itn__cb_frame *itn__cb_top
	__attribute__((tls_model("initial-exec")));

uint64_t itn__end_period_locked(struct itn_space *s, uint64_t st)
{
	/*
	 * Who may sleep on cv until the seq moves: readers of read.c, which
	 * count themselves in read_waiters, and removers of sub.c, whose
	 * subscription waits on the deferred list for this end.  Both
	 * checked the seq and went to sleep under L, and the seq moves only
	 * under L, so they are counted or listed by now: with neither, there
	 * is nobody to wake.
	 */
	bool deferred = !cds_list_empty(&s->deferred);

	/* Order matters: the deferred list is applied before the seq moves,
	 * in the same locked section, so a waiter that sees the new seq finds
	 * every change made (the kernel's v5.18 remove fix). */
	if (deferred)
		itn__apply_deferred(s);
	itn__set_global_seq(s, itn__seq(s) + 1);
	/* Changed only here, under L: no atomic read-modify-write. */
	atomic_store_explicit(&s->stats.periods,
			      atomic_load_explicit(&s->stats.periods,
						   memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (deferred || s->read_waiters)
		pthread_cond_broadcast(&s->cv);
	return st & ~ITN_ST_ODD;
}

/* Whether the lock-free fast paths are on (itn__space_set_fast()). */
static inline bool fast_paths(const struct itn_space *s)
{
	return atomic_load_explicit(&s->fast, memory_order_relaxed);
}

/* Count one invalidation out; the last one of a period ends it. */
static void end_one(struct itn_space *s)
{
	uint64_t st = atomic_load_explicit(&s->st, memory_order_relaxed);

	while (fast_paths(s) && !(st & ITN_ST_BUSY) &&
	       (itn__st_active(st) > 1 ||
		(itn__st_active(st) == 1 && !(st & ITN_ST_ODD)))) {
		/* Not the last out of a period: no lock.  The release orders
		 * the caller's changes before whoever ends the period. */
		if (atomic_compare_exchange_weak_explicit(
			    &s->st, &st, st - ITN_ST_ONE, memory_order_acq_rel,
			    memory_order_relaxed))
			return;
	}
	itn__lock(s);
	st = itn__busy_begin(s);
	if (!itn__st_active(st))
		itn__die("itn_invalidate_end: no invalidation in flight "
			 "(end without a successful start?)");
	st -= ITN_ST_ONE;
	if (!itn__st_active(st) && (st & ITN_ST_ODD))
		st = itn__end_period_locked(s, st);
	itn__busy_end(s, st);
	itn__unlock(s);
}

/*
 * Lock-free registration.  Returns true if counted, with the word as of the
 * CAS in *@stp; false if BUSY was set (or fast paths are off).
 */
static bool count_in_fast(struct itn_space *s, uint64_t *stp)
{
	uint64_t st = atomic_load_explicit(&s->st, memory_order_relaxed);

	while (fast_paths(s) && !(st & ITN_ST_BUSY)) {
		/* Acquire: pairs with itn__busy_end(), so the tree and seq
		 * that lock holder left are visible. */
		if (atomic_compare_exchange_weak_explicit(
			    &s->st, &st, st + ITN_ST_ONE, memory_order_acq_rel,
			    memory_order_relaxed)) {
			*stp = st;
			return true;
		}
	}
	return false;
}

/*
 * Idle/Partial: the first overlap in the physical tree, searched lockless.
 * Returns NULL for a validated miss; the first overlapping node for a
 * validated hit, with the tree's sequence count of the walk in *@wseq;
 * ITN_TREE_LOST if validation kept failing.  A hit is only a hint once
 * the read section is left (the node may leave the tree and be freed):
 * start_hit() uses it only if the tree has not changed since.
 */
static struct itn_tnode *phys_search_rcu(struct itn_space *s,
					 const struct itn_range *r,
					 uint64_t *wseq)
{
	struct itn_tnode *ret = ITN_TREE_LOST;

	itn__rcu_read_lock();
	for (int tries = 0; tries < ITN_START_RETRIES; tries++) {
		uint64_t w = itn__tree_read_begin(&s->phys);
		struct itn_tnode *n;

		if (w & 1)
			continue;
		n = itn__tree_search_rcu(&s->phys, r->start, r->last, NULL, 0);
		if (n != ITN_TREE_LOST && itn__tree_read_valid(&s->phys, w)) {
			*wseq = w;
			ret = n;
			break;
		}
	}
	itn__rcu_read_unlock();
	return ret;
}

/*
 * Slow start under L and BUSY: count in (unless @counted), search, open
 * the period on a hit.  Returns the first overlapping node, or NULL, and
 * the period's seq in *@cur_seq.
 *
 * @hint, if not NULL, is the first overlap found by a validated lockless
 * walk of the tree whose sequence count was @hint_wseq.  Every change of
 * the physical tree is a writer section under L that moves the sequence
 * count (itree.h), so if it still reads @hint_wseq here, the tree is the
 * one the walk validated: @hint is still linked and is what
 * itn__tree_iter_first() would return (the lockless descent and
 * iter_first are the same search).  Otherwise search again.
 */
static inline __attribute__((always_inline)) struct itn_tnode *
start_locked_body(struct itn_space *s, const struct itn_range *r,
		  bool counted, struct itn_tnode *hint, uint64_t hint_wseq,
		  uint64_t *cur_seq)
{
	struct itn_tnode *n;
	uint64_t st, seq;

	itn__lock(s);
	st = itn__busy_begin(s);
	if (!counted)
		st += ITN_ST_ONE;
	if (hint && itn__tree_read_begin(&s->phys) == hint_wseq)
		n = hint;
	else
		n = itn__tree_iter_first(&s->phys, r->start, r->last);
	seq = itn__seq(s);
	if (n && !(seq & 1)) {
		seq |= 1;
		itn__set_global_seq(s, seq);
		st |= ITN_ST_ODD;
	}
	itn__busy_end(s, st);
	itn__unlock(s);
	*cur_seq = seq;
	return n;
}

/* No hint: BUSY was set, fast paths are off, or validation kept failing. */
static ITN_NOINLINE struct itn_tnode *start_locked(struct itn_space *s,
						   const struct itn_range *r,
						   bool counted,
						   uint64_t *cur_seq)
{
	return start_locked_body(s, r, counted, NULL, 0, cur_seq);
}

/* Counted, with the validated lockless hit @hint of the tree at @wseq. */
static ITN_NOINLINE struct itn_tnode *start_hit(struct itn_space *s,
					       const struct itn_range *r,
					       struct itn_tnode *hint,
					       uint64_t wseq, uint64_t *cur_seq)
{
	return start_locked_body(s, r, true, hint, wseq, cur_seq);
}

/* The interval part of a start: 0, or -EAGAIN after ending it. */
static int start_intervals(struct itn_space *s, const struct itn_range *r)
{
	struct itn__cb_frame frame;
	struct itn_tnode *n;
	uint64_t cur_seq, st, wseq = 0;

	if (!count_in_fast(s, &st)) {
		n = start_locked(s, r, false, &cur_seq);
	} else if (st & ITN_ST_ODD) {
		/* Full: frozen while we are counted.  The acquire CAS saw
		 * ODD, stored after the odd seq. */
		cur_seq = itn__seq(s);
		n = itn__tree_iter_first(&s->phys, r->start, r->last);
	} else {
		/* A validated miss: Partial now, nothing to call.  A hit, or
		 * no validated walk: open the period under L. */
		n = phys_search_rcu(s, r, &wseq);
		if (n)
			n = n == ITN_TREE_LOST
				    ? start_locked(s, r, true, &cur_seq)
				    : start_hit(s, r, n, wseq, &cur_seq);
	}
	if (!n)
		return 0;

	/*
	 * The period stays open at least until our own end, so the tree is
	 * frozen under this walk: no lock is needed, and callbacks may call
	 * back into the library (insert, update, find...).
	 */
	itn__cb_enter(&frame, s);
	for (; n; n = itn__tree_iter_next(n, r->start, r->last)) {
		struct itn__sub *sub = itn_container_of(n, struct itn__sub, phys);

		itn__count(s, callbacks);
		if (itn_likely(sub->ops->invalidate(itn__pub(sub), r, cur_seq)))
			continue;
		if (r->flags & ITN_RANGE_BLOCKABLE) {
			itn__count(s, refused);
			continue;
		}
		/* Non-blocking and refused: stop, end it ourselves (the
		 * count-out is our last access to the space). */
		itn__cb_exit(&frame);
		itn__count(s, nonblock_failures);
		end_one(s);
		return -EAGAIN;
	}
	itn__cb_exit(&frame);
	return 0;
}

ITN_EXPORT int itn_invalidate_start(struct itn_space *s,
				    const struct itn_range *r)
{
	struct itn__cb_frame frame;
	int err;

	if (!s || !r || r->start > r->last)
		return -EINVAL;
	itn__count(s, invalidations);
	err = start_intervals(s, r);
	if (!err && itn__has_classic(s)) {
		itn__cb_enter(&frame, s);
		err = itn__classic_start(s, r);
		itn__cb_exit(&frame);
		if (err) {
			/* The classic ends ran; end the interval part too,
			 * which the kernel forgets (SEMANTICS.md §4). */
			itn__count(s, nonblock_failures);
			end_one(s);
			err = -EAGAIN;
		}
	}
	return err;
}

ITN_EXPORT void itn_invalidate_end(struct itn_space *s,
				   const struct itn_range *r)
{
	struct itn__cb_frame frame;

	if (!s || !r)
		itn__die("itn_invalidate_end: NULL argument");
	if (!itn__has_classic(s)) {
		end_one(s); /* the last access to the space */
		return;
	}
	/*
	 * Interval part first, as the kernel does.  The classic ends still
	 * to run are counted, so that a registration (notifier.c) waits for
	 * them and itn_space_free() stays -EBUSY until the last access.
	 */
	atomic_fetch_add_explicit(&s->classic_ends, 1, memory_order_acq_rel);
	end_one(s);
	itn__cb_enter(&frame, s);
	itn__classic_end(s, r);
	itn__cb_exit(&frame);
	atomic_fetch_sub_explicit(&s->classic_ends, 1, memory_order_release);
}

const struct itn_range itn__range_release = {
	.start = 0,
	.last = UINT64_MAX,
	.event = ITN_EVENT_RELEASE,
	.flags = ITN_RANGE_BLOCKABLE,
	.owner = NULL,
};

void itn__release_intervals(struct itn_space *s)
{
	itn__count(s, invalidations);
	if (!start_intervals(s, &itn__range_release)) /* blockable */
		end_one(s);
}
