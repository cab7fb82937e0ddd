// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * sub.c - subscriptions: insert, remove, update, and the deferred list.
 *
 * Every function here changes the trees and the deferred list under the
 * space lock.  The physical tree follows the kernel (frozen during a
 * period, changes deferred); the logical index changes at once.
 */
#include "itn-internal.h"

#include <errno.h>

static void debug_check(const struct itn_tree *t, size_t order_off)
{
#ifdef ITN_DEBUG_CHECKS
	const char *why;

	if (itn__tree_check(t, order_off, &why) < 0)
		itn__die("interval tree corrupted: %s", why);
#else
	(void)t;
	(void)order_off;
#endif
}

#define LOGI_ORDER_OFF \
	(offsetof(struct itn__sub, order) - offsetof(struct itn__sub, logi))

void itn__phys_insert(struct itn_space *s, struct itn__sub *sub)
{
	/* The physical range catches up with the logical one. */
	if (itn__tree_insert(&s->phys, &sub->phys,
			     itn__tnode_start(&sub->logi),
			     itn__tnode_last(&sub->logi)))
		itn__die("physical tree insert of a linked subscription");
	debug_check(&s->phys, (size_t)-1);
}

void itn__phys_remove(struct itn_space *s, struct itn__sub *sub)
{
	if (itn__tree_remove(&s->phys, &sub->phys))
		itn__die("physical tree remove of an unlinked subscription");
	debug_check(&s->phys, (size_t)-1);
}

/* Move to the logical range in one writer section (no reader misses it). */
static void phys_move(struct itn_space *s, struct itn__sub *sub)
{
	if (itn__tree_move(&s->phys, &sub->phys,
			   itn__tnode_start(&sub->logi),
			   itn__tnode_last(&sub->logi), NULL, 0))
		itn__die("physical tree move of an unlinked subscription");
	debug_check(&s->phys, (size_t)-1);
}

void itn__logi_insert(struct itn_space *s, struct itn__sub *sub)
{
	if (itn__tree_insert(&s->logi, &sub->logi,
			     itn__tnode_start(&sub->logi),
			     itn__tnode_last(&sub->logi)))
		itn__die("logical index insert of a linked subscription");
	atomic_store_explicit(&s->nlogi,
			      atomic_load_explicit(&s->nlogi,
						   memory_order_relaxed) + 1,
			      memory_order_relaxed);
	debug_check(&s->logi, LOGI_ORDER_OFF);
}

void itn__logi_remove(struct itn_space *s, struct itn__sub *sub)
{
	if (itn__tree_remove(&s->logi, &sub->logi))
		itn__die("logical index remove of an unlinked subscription");
	atomic_store_explicit(&s->nlogi,
			      atomic_load_explicit(&s->nlogi,
						   memory_order_relaxed) - 1,
			      memory_order_relaxed);
	debug_check(&s->logi, LOGI_ORDER_OFF);
}

/* Set the logical range and take a new place in the insertion order. */
static void set_logical(struct itn_space *s, struct itn__sub *sub,
			uint64_t start, uint64_t last)
{
	atomic_store_explicit(&sub->logi.start, start, memory_order_relaxed);
	atomic_store_explicit(&sub->logi.last, last, memory_order_relaxed);
	atomic_store_explicit(&sub->order, ++s->next_order,
			      memory_order_relaxed);
}

/*
 * itn__sub.pending holds an enum itn__pending in its low bits and, for a
 * deferred insert only, PENDING_CALLED: the release invalidation of the
 * space (itn__release_deferred()) has called, or is calling, it.  Such a
 * subscription is no longer dropped at once by a remove: it stays on the
 * list until the end of the period, like a deferred removal.
 */
#define PENDING_OP 0x0f
#define PENDING_CALLED 0x80

static inline enum itn__pending pending_op(const struct itn__sub *sub)
{
	return (enum itn__pending)(sub->pending & PENDING_OP);
}

static void defer(struct itn_space *s, struct itn__sub *sub,
		  enum itn__pending op)
{
	sub->pending = op;
	cds_list_add_tail(&sub->deferred, &s->deferred);
}

void itn__apply_deferred(struct itn_space *s)
{
	while (!cds_list_empty(&s->deferred)) {
		struct itn__sub *sub = cds_list_first_entry(
			&s->deferred, struct itn__sub, deferred);
		enum itn__pending op = pending_op(sub);

		cds_list_del(&sub->deferred);
		sub->pending = ITN_PENDING_NONE;
		switch (op) {
		case ITN_PENDING_INSERT:
			if (atomic_load_explicit(&sub->state,
						 memory_order_relaxed) ==
			    ITN_SUB_LIVE) {
				itn__phys_insert(s, sub);
				break;
			}
			/* Removed after the release invalidation called
			 * it: it never enters the tree.  Its remover waits
			 * for this end, or (release()) the registration's
			 * reference goes now. */
			if (sub->ops->release)
				itn__sub_put(sub);
			break;
		case ITN_PENDING_UPDATE:
			phys_move(s, sub);
			break;
		case ITN_PENDING_REMOVE:
			itn__phys_remove(s, sub);
			/* Out of the tree: drop the registration's
			 * reference (a waiting itn_sub_remove() of a
			 * subscription without release() finishes itself). */
			if (sub->ops->release)
				itn__sub_put(sub);
			break;
		case ITN_PENDING_NONE:
			itn__die("deferred list entry with no operation");
		}
	}
}

/*
 * The first deferred insert after @prev (NULL: the head) that the release
 * invalidation has not called yet, marked as called (lock held), or NULL.
 */
static struct itn__sub *next_uncalled_insert(struct itn_space *s,
					     struct itn__sub *prev)
{
	struct cds_list_head *pos = prev ? prev->deferred.next :
					   s->deferred.next;

	for (; pos != &s->deferred; pos = pos->next) {
		struct itn__sub *sub =
			cds_list_entry(pos, struct itn__sub, deferred);

		if (sub->pending == ITN_PENDING_INSERT &&
		    atomic_load_explicit(&sub->state, memory_order_relaxed) ==
			    ITN_SUB_LIVE) {
			sub->pending |= PENDING_CALLED;
			return sub;
		}
	}
	return NULL;
}

void itn__release_deferred(struct itn_space *s, const struct itn_range *r,
			   uint64_t cur_seq)
{
	struct itn__cb_frame frame;
	struct itn__sub *sub = NULL;

	for (;;) {
		/*
		 * A marked subscription keeps its place until the end of the
		 * period, which cannot come while the caller is counted in
		 * it: a remove leaves it on the list, and an update is
		 * refused (the space is released).  So its memory stays
		 * valid while its callback runs, and the walk continues
		 * from it.  Entries behind it may leave (unmarked inserts
		 * being removed) or come (removals): the lock covers that.
		 */
		itn__lock(s);
		sub = next_uncalled_insert(s, sub);
		itn__unlock(s);
		if (!sub)
			return;
		frame.space = s;
		frame.next = itn__cb_top;
		itn__cb_top = &frame;
		itn__count(s, callbacks);
		if (!sub->ops->invalidate(itn__pub(sub), r, cur_seq))
			itn__count(s, refused); /* blockable: ignored */
		itn__cb_top = frame.next;
	}
}

static int range_of(uint64_t start, uint64_t length, uint64_t *last)
{
	if (length == 0)
		return -EINVAL;
	if (start + (length - 1) < start)
		return -EOVERFLOW;
	*last = start + (length - 1);
	return 0;
}

ITN_EXPORT int itn_sub_insert(struct itn_sub *psub, struct itn_space *s,
			      uint64_t start, uint64_t length,
			      const struct itn_sub_ops *ops)
{
	struct itn__sub *sub = itn__sub(psub);
	uint32_t old;
	uint64_t last, seq, st;
	int err;

	if (!psub || !s || !ops || !ops->invalidate)
		return -EINVAL;
	err = range_of(start, length, &last);
	if (err)
		return err;

	/* Claim the subscription: refuses a double insert, even a racing one. */
	old = atomic_load_explicit(&sub->state, memory_order_acquire);
	if (old != ITN_SUB_UNREG && old != ITN_SUB_REMOVED)
		return itn__sub_state_busy(old) ?
			       -EBUSY :
			       -EINVAL; /* not zero-initialised */
	if (!atomic_compare_exchange_strong_explicit(
		    &sub->state, &old, ITN_SUB_INSERTING, memory_order_acquire,
		    memory_order_relaxed))
		return -EBUSY;

	itn__lock(s);
	if (s->released) {
		itn__unlock(s);
		atomic_store_explicit(&sub->state, old, memory_order_release);
		return -ESHUTDOWN;
	}
	itn__tnode_init(&sub->phys);
	itn__tnode_init(&sub->logi);
	set_logical(s, sub, start, last);
	sub->gen = atomic_load_explicit(&sub->order, memory_order_relaxed);
	atomic_store_explicit(&sub->space, s, memory_order_relaxed);
	sub->ops = ops;
	atomic_store_explicit(&sub->refs, ops->release ? ITN_REFS_REG : 0,
			      memory_order_relaxed);
	sub->pending = ITN_PENDING_NONE;

	st = itn__busy_begin(s);
	seq = itn__seq(s);
	if (!itn__st_active(st)) {
		/* Idle: seq is even; global - 1 is odd and not current. */
		itn__phys_insert(s, sub);
		itn__sub_set_seq(sub, seq - 1);
	} else if (!(seq & 1)) {
		/* Partial: running invalidations may cover the range without
		 * knowing it: open a period so read_begin waits for them. */
		itn__set_global_seq(s, seq | 1);
		st |= ITN_ST_ODD;
		itn__phys_insert(s, sub);
		itn__sub_set_seq(sub, seq | 1);
	} else {
		/* Full: the tree is frozen. */
		defer(s, sub, ITN_PENDING_INSERT);
		itn__sub_set_seq(sub, seq);
		itn__count(s, deferred_inserts);
	}
	itn__busy_end(s, st);
	if (ops->release)
		itn__logi_insert(s, sub);
	s->subs++;
	atomic_fetch_add_explicit(&s->objs, 1, memory_order_relaxed);
	/* Pairs with the acquire loads of state in remove/update/find. */
	atomic_store_explicit(&sub->state, ITN_SUB_LIVE, memory_order_release);
	itn__unlock(s);
	return 0;
}

/*
 * How a live subscription left the physical tree (unsubscribe_locked).
 */
enum unsub {
	UNSUB_GONE,	/* it was never in it (deferred insert) */
	UNSUB_IDLE,	/* removed, and no invalidation is counted */
	UNSUB_PARTIAL,	/* removed while lockless walkers may hold it */
	UNSUB_DEFERRED, /* stays until the end of the running period */
};

/* Take a live subscription out of both indexes (lock held). */
static enum unsub unsubscribe_locked(struct itn_space *s,
				     struct itn__sub *sub)
{
	enum unsub how = UNSUB_GONE;
	uint64_t st;

	if (sub->ops->release)
		itn__logi_remove(s, sub);
	s->subs--;
	st = itn__busy_begin(s);
	switch (pending_op(sub)) {
	case ITN_PENDING_INSERT:
		if (sub->pending & PENDING_CALLED) {
			/* The release invalidation called it in this
			 * period: wait for its end (quiescence), then the
			 * end drops it (itn__apply_deferred()). */
			itn__count(s, deferred_removes);
			how = UNSUB_DEFERRED;
			break;
		}
		/* Never reached the tree: no callback ever runs. */
		cds_list_del(&sub->deferred);
		sub->pending = ITN_PENDING_NONE;
		break;
	case ITN_PENDING_UPDATE:
		sub->pending = ITN_PENDING_REMOVE;
		itn__count(s, deferred_removes);
		how = UNSUB_DEFERRED;
		break;
	case ITN_PENDING_NONE:
		if (st & ITN_ST_ODD) {
			defer(s, sub, ITN_PENDING_REMOVE);
			itn__count(s, deferred_removes);
			how = UNSUB_DEFERRED;
		} else {
			itn__phys_remove(s, sub);
			how = itn__st_active(st) ? UNSUB_PARTIAL : UNSUB_IDLE;
		}
		break;
	case ITN_PENDING_REMOVE:
		itn__die("removing a subscription twice");
	}
	itn__busy_end(s, st);
	return how;
}

/* Validate and lock for remove/update: returns the locked space or NULL. */
static struct itn_space *lock_live(struct itn__sub *sub)
{
	struct itn_space *s;

	if (atomic_load_explicit(&sub->state, memory_order_acquire) !=
	    ITN_SUB_LIVE)
		return NULL;
	s = atomic_load_explicit(&sub->space, memory_order_relaxed);
	itn__lock(s);
	if (atomic_load_explicit(&sub->state, memory_order_relaxed) !=
	    ITN_SUB_LIVE) {
		itn__unlock(s);
		return NULL;
	}
	return s;
}

ITN_EXPORT int itn_sub_remove(struct itn_sub *psub)
{
	struct itn__sub *sub = itn__sub(psub);
	struct itn_space *s;
	enum unsub how;
	bool release;
	uint64_t seq;

	if (!psub)
		return -EINVAL;
	if (atomic_load_explicit(&sub->state, memory_order_acquire) !=
	    ITN_SUB_LIVE)
		return -ENOENT;
	if (itn__in_callback(
		    atomic_load_explicit(&sub->space, memory_order_relaxed)))
		return -EDEADLK;
	s = lock_live(sub);
	if (!s)
		return -ENOENT;

	release = sub->ops->release != NULL;
	atomic_store_explicit(&sub->state,
			      release ? ITN_SUB_ZOMBIE : ITN_SUB_REMOVING,
			      memory_order_release);
	seq = itn__seq(s);
	how = unsubscribe_locked(s, sub);
	if (how == UNSUB_DEFERRED) {
		/*
		 * The period that may call us ends with the deferred list
		 * applied and seq advanced in one locked section: once seq
		 * moved, the subscription is out of the tree (v5.18 fix).
		 * Its end also drops the registration reference.
		 */
		itn__count(s, remove_waits);
		while (itn__seq(s) == seq)
			pthread_cond_wait(&s->cv, &s->lock);
	} else if (release) {
		itn__sub_put(sub);
	}
	if (!release) {
		atomic_fetch_sub_explicit(&s->objs, 1, memory_order_release);
		atomic_store_explicit(&sub->state, ITN_SUB_REMOVED,
				      memory_order_release);
	}
	itn__unlock(s);
	/*
	 * Invalidations counted while we removed it may be searching the
	 * tree lockless and hold its node: the caller may free it once we
	 * return, so wait for their read sections.  (Subscriptions with
	 * release() are freed after a grace period anyway.)
	 */
	if (how == UNSUB_PARTIAL && !release)
		itn__rcu_synchronize();
	return 0;
}

ITN_EXPORT int itn_sub_remove_deferred(struct itn_sub *psub)
{
	struct itn__sub *sub = itn__sub(psub);
	struct itn_space *s;

	if (!psub)
		return -EINVAL;
	s = lock_live(sub);
	if (!s)
		return -ENOENT;
	if (!sub->ops->release) {
		itn__unlock(s);
		return -EINVAL;
	}
	atomic_store_explicit(&sub->state, ITN_SUB_ZOMBIE, memory_order_release);
	if (unsubscribe_locked(s, sub) != UNSUB_DEFERRED)
		itn__sub_put(sub);
	/* else the end of the period drops the registration reference */
	itn__unlock(s);
	return 0;
}

ITN_EXPORT int itn_sub_update(struct itn_sub *psub, uint64_t start,
			      uint64_t length)
{
	struct itn__sub *sub = itn__sub(psub);
	struct itn_space *s;
	uint64_t last, seq, st;
	int err;

	if (!psub)
		return -EINVAL;
	err = range_of(start, length, &last);
	if (err)
		return err;
	s = lock_live(sub);
	if (!s)
		return -ENOENT;
	if (s->released) {
		/* Errors as insert: the space is torn down, nothing moves
		 * into it any more. */
		itn__unlock(s);
		return -ESHUTDOWN;
	}

	if (sub->ops->release) {
		/* One writer section: find never misses it mid-update. */
		if (itn__tree_move(&s->logi, &sub->logi, start, last,
				   &sub->order, ++s->next_order))
			itn__die("logical index move of an unlinked "
				 "subscription");
		debug_check(&s->logi, LOGI_ORDER_OFF);
	} else {
		set_logical(s, sub, start, last);
	}

	st = itn__busy_begin(s);
	seq = itn__seq(s);
	switch (pending_op(sub)) {
	case ITN_PENDING_INSERT:
	case ITN_PENDING_UPDATE:
		/* The end of the period applies the latest range, in the
		 * place of this call (call order: among equal starts the sub
		 * then follows those inserted before this call, as in the
		 * logical index).  The sub seq is already the running
		 * period's: sections begun before retry, new ones wait for
		 * the end. */
		cds_list_del(&sub->deferred);
		cds_list_add_tail(&sub->deferred, &s->deferred);
		break;
	case ITN_PENDING_NONE:
		if (seq & 1) {
			/* Full: like a deferred insert. */
			defer(s, sub, ITN_PENDING_UPDATE);
			itn__sub_set_seq(sub, seq);
			itn__count(s, deferred_updates);
		} else if (itn__st_active(st)) {
			/* Partial: like an insert in Partial.  One writer
			 * section, so a lockless walker cannot validate a
			 * miss; the node stays valid memory. */
			itn__set_global_seq(s, seq | 1);
			st |= ITN_ST_ODD;
			phys_move(s, sub);
			itn__sub_set_seq(sub, seq | 1);
		} else {
			/*
			 * Idle: nothing runs, but read sections begun before
			 * must see a new sub seq.  A period opens and closes
			 * at once: its odd value seq + 1 was never given to
			 * anyone, so it differs from every seq a section can
			 * hold, and later periods use higher values.  The
			 * global seq moves first, as in every other path, so
			 * a lock-free itn_read_begin() never sees a sub seq
			 * above the global one (the I5 form the spin model
			 * checks).
			 */
			phys_move(s, sub);
			itn__set_global_seq(s, seq + 2);
			itn__sub_set_seq(sub, seq + 1);
		}
		break;
	case ITN_PENDING_REMOVE:
		itn__die("updating a removed subscription");
	}
	itn__busy_end(s, st);
	itn__unlock(s);
	return 0;
}

ITN_EXPORT bool itn_sub_busy(const struct itn_sub *psub)
{
	uint32_t st;

	if (!psub)
		return false;
	/* The states in which itn_sub_insert() answers -EBUSY. */
	st = atomic_load_explicit(&itn__csub(psub)->state,
				  memory_order_acquire);
	return itn__sub_state_busy(st);
}

/* The range accessors have no value to return for NULL: say so and stop,
 * rather than fault at an offset of NULL. */
ITN_EXPORT uint64_t itn_sub_start(const struct itn_sub *sub)
{
	if (itn_unlikely(!sub))
		itn__die("itn_sub_start: NULL subscription");
	return itn__tnode_start(&itn__csub(sub)->logi);
}

ITN_EXPORT uint64_t itn_sub_last(const struct itn_sub *sub)
{
	if (itn_unlikely(!sub))
		itn__die("itn_sub_last: NULL subscription");
	return itn__tnode_last(&itn__csub(sub)->logi);
}

ITN_EXPORT struct itn_space *itn_sub_space(const struct itn_sub *sub)
{
	if (!sub)
		return NULL;
	return atomic_load_explicit(&itn__csub(sub)->space,
				    memory_order_relaxed);
}
