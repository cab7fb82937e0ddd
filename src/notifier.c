// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * notifier.c - classic notifiers: the kernel's list-based mmu_notifier.
 *
 * The list is an RCU list: changed under the space lock, traversed under
 * an RCU read-side section (the kernel uses SRCU; liburcu's read sections
 * may sleep too, at the cost of delaying grace periods).  Unregistering
 * waits for a grace period, so no callback of the notifier runs once it
 * returns; itn_notifier_put() queues free_notifier behind one.
 *
 * Dispatch order is the kernel's: interval subscriptions first (start, end,
 * release), then classic notifiers newest first.  When a non-blockable
 * start of a classic notifier fails, every classic invalidate_end is called
 * (the kernel's v5.12 pairing rule) and, unlike the kernel, the interval
 * part is ended too, so the active count stays balanced (SEMANTICS.md §4).
 */
#include "itn-internal.h"

#include <errno.h>
#include <time.h>

static inline struct itn_notifier *pub(struct itn__notifier *n)
{
	return (struct itn_notifier *)(void *)n;
}

/*
 * The list is singly linked with C11 atomics (liburcu 0.13's rculist
 * publishes with volatile stores that TSan cannot see).  Readers: acquire
 * loads, inside an RCU read-side section.  Writers: the space lock.
 */
static inline struct itn__notifier *rd_first(const struct itn_space *s)
{
	return atomic_load_explicit(&s->notifiers, memory_order_acquire);
}

static inline struct itn__notifier *rd_next(const struct itn__notifier *n)
{
	return atomic_load_explicit(&n->next, memory_order_acquire);
}

#define for_each_notifier_rcu(n, s) \
	for (n = rd_first(s); n; n = rd_next(n))

int itn__classic_start(struct itn_space *s, const struct itn_range *r)
{
	struct itn__notifier *n;
	int err = 0;

	itn__rcu_read_lock();
	for_each_notifier_rcu(n, s) {
		int ret;

		if (!n->ops->invalidate_start)
			continue;
		ret = n->ops->invalidate_start(pub(n), r);
		if (!ret)
			continue;
		if (r->flags & ITN_RANGE_BLOCKABLE)
			itn__count(s, refused);
		else if (!err)
			err = ret;
	}
	if (err) {
		/* Every end, paired with every start (those that have an end
		 * are the ones that cannot fail). */
		for_each_notifier_rcu(n, s)
			if (n->ops->invalidate_end)
				n->ops->invalidate_end(pub(n), r);
	}
	itn__rcu_read_unlock();
	return err;
}

void itn__classic_end(struct itn_space *s, const struct itn_range *r)
{
	struct itn__notifier *n;

	itn__rcu_read_lock();
	for_each_notifier_rcu(n, s)
		if (n->ops->invalidate_end)
			n->ops->invalidate_end(pub(n), r);
	itn__rcu_read_unlock();
}

/* ops->release once per notifier, whoever gets there first.  It runs in
 * a read-side section: recorded as a callback of @s (see itn__cb_enter()). */
static void release_once(struct itn__notifier *n, struct itn_space *s)
{
	struct itn__cb_frame frame;

	if (atomic_exchange_explicit(&n->released, true,
				     memory_order_acq_rel) ||
	    !n->ops->release)
		return;
	frame.space = s;
	frame.next = itn__cb_top;
	itn__cb_top = &frame;
	n->ops->release(pub(n), s);
	itn__cb_top = frame.next;
}

/* Unlink @n (lock held).  Its next pointer stays intact for readers that
 * are on it until a grace period has passed. */
static void unlink_locked(struct itn_space *s, struct itn__notifier *n)
{
	_Atomic(struct itn__notifier *) *link = &s->notifiers;
	struct itn__notifier *p;

	while ((p = atomic_load_explicit(link, memory_order_relaxed)) != n) {
		if (!p)
			itn__die("classic notifier missing from its list");
		link = &p->next;
	}
	atomic_store_explicit(link,
			      atomic_load_explicit(&n->next,
						   memory_order_relaxed),
			      memory_order_release);
	atomic_fetch_sub_explicit(&s->nnotifiers, 1, memory_order_relaxed);
}

/* Is @n on the list of @s?  (Lock held.) */
static bool linked_locked(struct itn_space *s, struct itn__notifier *n)
{
	struct itn__notifier *p;

	for (p = atomic_load_explicit(&s->notifiers, memory_order_relaxed); p;
	     p = atomic_load_explicit(&p->next, memory_order_relaxed))
		if (p == n)
			return true;
	return false;
}

void itn__classic_release(struct itn_space *s)
{
	struct itn__notifier *n;

	if (!itn__has_classic(s))
		return;
	itn__rcu_read_lock();
	for_each_notifier_rcu(n, s)
		release_once(n, s);
	itn__rcu_read_unlock();

	itn__lock(s);
	while ((n = atomic_load_explicit(&s->notifiers,
					 memory_order_relaxed))) {
		unlink_locked(s, n);
		/* One being unregistered stays GOING (no second unregister). */
		if (atomic_load_explicit(&n->state, memory_order_relaxed) !=
		    ITN_NOTIFIER_GOING)
			atomic_store_explicit(&n->state, ITN_NOTIFIER_RELEASED,
					      memory_order_release);
	}
	itn__unlock(s);
	/* A release still running in a concurrent unregister, and every
	 * callback that saw the list, are over after this. */
	itn__rcu_synchronize();
}

static void link_locked(struct itn_space *s, struct itn__notifier *n,
			const struct itn_notifier_ops *ops, uint32_t users)
{
	n->ops = ops;
	atomic_store_explicit(&n->space, s, memory_order_relaxed);
	n->users = users;
	atomic_store_explicit(&n->released, false, memory_order_relaxed);
	atomic_store_explicit(&n->state, ITN_NOTIFIER_LIVE,
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&s->objs, 1, memory_order_relaxed);
	/* Newest first; the release store publishes the initialised
	 * notifier to list readers. */
	atomic_store_explicit(&n->next,
			      atomic_load_explicit(&s->notifiers,
						   memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&s->notifiers, n, memory_order_release);
	atomic_fetch_add_explicit(&s->nnotifiers, 1, memory_order_release);
}

/*
 * Lock @s with no invalidation in flight, and keep new ones out (BUSY)
 * until unlock_idle(), or return as soon as the space is released.  A
 * notifier linked in between sees the start of every invalidation whose
 * end it sees (the kernel gets this from mm_take_all_locks()).  Polls with
 * a growing sleep while invalidations run.
 */
static uint64_t lock_idle(struct itn_space *s)
{
	struct timespec pause = { 0, 1000 };

	for (;;) {
		uint64_t st;

		itn__lock(s);
		st = itn__busy_begin(s);
		if ((!itn__st_active(st) &&
		     !atomic_load_explicit(&s->classic_ends,
					   memory_order_acquire)) ||
		    s->released)
			return st;
		itn__busy_end(s, st);
		itn__unlock(s);
		nanosleep(&pause, NULL);
		if (pause.tv_nsec < 1000000)
			pause.tv_nsec *= 2;
	}
}

static void unlock_idle(struct itn_space *s, uint64_t st)
{
	itn__busy_end(s, st);
	itn__unlock(s);
}

ITN_EXPORT int itn_notifier_register(struct itn_notifier *pn,
				     struct itn_space *s,
				     const struct itn_notifier_ops *ops)
{
	struct itn__notifier *n = itn__notifier(pn);
	uint64_t word;
	uint32_t st;
	int err = 0;

	if (!pn || !s || !ops)
		return -EINVAL;
	if (itn__in_callback(s))
		return -EDEADLK;
	st = atomic_load_explicit(&n->state, memory_order_acquire);
	if (st != ITN_NOTIFIER_UNREG && st != ITN_NOTIFIER_DONE)
		return st == ITN_NOTIFIER_LIVE || st == ITN_NOTIFIER_RELEASED ||
				       st == ITN_NOTIFIER_GOING ?
			       -EBUSY :
			       -EINVAL; /* not zero-initialised */
	/*
	 * Claim it (GOING: a second register is -EBUSY, an unregister
	 * -ENOENT) before waiting in lock_idle(): two registrations of one
	 * notifier, in one space or two, must not both link it.
	 */
	if (!atomic_compare_exchange_strong_explicit(
		    &n->state, &st, ITN_NOTIFIER_GOING, memory_order_acquire,
		    memory_order_relaxed))
		return -EBUSY;
	word = lock_idle(s);
	if (s->released)
		err = -ESHUTDOWN;
	else
		link_locked(s, n, ops, 0);
	unlock_idle(s, word);
	if (err) /* nothing changed: give the state back */
		atomic_store_explicit(&n->state, st, memory_order_release);
	return err;
}

ITN_EXPORT int itn_notifier_unregister(struct itn_notifier *pn,
				       struct itn_space *s)
{
	struct itn__notifier *n = itn__notifier(pn);
	uint32_t st;

	if (!pn || !s)
		return -EINVAL;
	st = atomic_load_explicit(&n->state, memory_order_acquire);
	if (st != ITN_NOTIFIER_LIVE && st != ITN_NOTIFIER_RELEASED)
		return -ENOENT;
	if (atomic_load_explicit(&n->space, memory_order_relaxed) != s ||
	    n->users)
		return -EINVAL;
	if (itn__in_callback(s) || itn__in_release)
		return -EDEADLK;

	itn__lock(s);
	st = atomic_load_explicit(&n->state, memory_order_relaxed);
	if (st != ITN_NOTIFIER_LIVE && st != ITN_NOTIFIER_RELEASED) {
		itn__unlock(s);
		return -ENOENT;
	}
	atomic_store_explicit(&n->state, ITN_NOTIFIER_GOING,
			      memory_order_relaxed);
	itn__unlock(s);

	/* Like the kernel: release unless teardown already called it, inside
	 * a read section, so that a teardown running meanwhile does not
	 * return before it (its grace period waits for us). */
	itn__rcu_read_lock();
	release_once(n, s);
	itn__rcu_read_unlock();
	itn__lock(s);
	/* A teardown running meanwhile may have unlinked it already. */
	if (st == ITN_NOTIFIER_LIVE && linked_locked(s, n))
		unlink_locked(s, n);
	itn__unlock(s);
	itn__rcu_synchronize();
	atomic_fetch_sub_explicit(&s->objs, 1, memory_order_release);
	atomic_store_explicit(&n->state, ITN_NOTIFIER_DONE,
			      memory_order_release);
	return 0;
}

static void free_cb(struct rcu_head *head)
{
	struct itn__notifier *n =
		itn_container_of(head, struct itn__notifier, rcu);
	struct itn_space *s;

	itn__rcu_callback_enter(head);
	s = atomic_load_explicit(&n->space, memory_order_relaxed);
	itn__in_release = true;
	n->ops->free_notifier(pub(n)); /* frees n */
	itn__in_release = false;
	atomic_fetch_sub_explicit(&s->objs, 1, memory_order_release);
	itn__rcu_callback_exit();
}

/* A live notifier of @ops with users (lock held), or NULL. */
static struct itn__notifier *lookup_locked(struct itn_space *s,
					   const struct itn_notifier_ops *ops)
{
	struct itn__notifier *n;

	for (n = atomic_load_explicit(&s->notifiers, memory_order_relaxed); n;
	     n = atomic_load_explicit(&n->next, memory_order_relaxed))
		if (n->ops == ops && n->users)
			return n;
	return NULL;
}

ITN_EXPORT struct itn_notifier *itn_notifier_get(
	const struct itn_notifier_ops *ops, struct itn_space *s)
{
	struct itn__notifier *n, *fresh;
	struct itn_notifier *pfresh;
	uint64_t word;
	int err = 0;

	if (!ops || !s || !ops->alloc_notifier || !ops->free_notifier) {
		errno = EINVAL;
		return NULL;
	}
	if (itn__in_callback(s)) {
		errno = EDEADLK;
		return NULL;
	}
	itn__lock(s);
	n = s->released ? NULL : lookup_locked(s, ops);
	if (n)
		n->users++;
	else if (s->released)
		err = ESHUTDOWN;
	itn__unlock(s);
	if (n || err) {
		errno = err;
		return n ? pub(n) : NULL;
	}

	/* Allocate without the lock: alloc_notifier may sleep. */
	pfresh = ops->alloc_notifier(s);
	if (!pfresh) {
		errno = ENOMEM;
		return NULL;
	}
	fresh = itn__notifier(pfresh);
	word = lock_idle(s);
	n = s->released ? NULL : lookup_locked(s, ops);
	if (n)
		n->users++; /* another thread registered one meanwhile */
	else if (s->released)
		err = ESHUTDOWN;
	else
		link_locked(s, fresh, ops, 1);
	unlock_idle(s, word);
	if (n || err) {
		ops->free_notifier(pfresh); /* never published */
		errno = err;
		return n ? pub(n) : NULL;
	}
	return pfresh;
}

ITN_EXPORT void itn_notifier_put(struct itn_notifier *pn)
{
	struct itn__notifier *n = itn__notifier(pn);
	struct itn_space *s;
	uint32_t st;

	if (!pn)
		return;
	s = atomic_load_explicit(&n->space, memory_order_relaxed);
	if (!s)
		itn__die("itn_notifier_put: notifier was never registered");
	itn__lock(s);
	if (!n->users)
		itn__die("itn_notifier_put: notifier has no users (not from "
			 "itn_notifier_get, or put too often)");
	if (--n->users) {
		itn__unlock(s);
		return;
	}
	st = atomic_load_explicit(&n->state, memory_order_relaxed);
	if (st == ITN_NOTIFIER_LIVE)
		unlink_locked(s, n);
	atomic_store_explicit(&n->state, ITN_NOTIFIER_GOING,
			      memory_order_relaxed);
	itn__unlock(s);
	itn__call_rcu(&n->rcu, free_cb);
}

/*
 * The page-aging callbacks run inside an RCU read-side section, like the
 * invalidation callbacks: record them on this thread's callback stack, so
 * that calls which would wait for a grace period or for the space
 * (unregister, register, space release, remove...) are refused with
 * -EDEADLK (or abort, for read_begin and synchronize) instead of hanging.
 */
static int young_range(struct itn_space *s, uint64_t start, uint64_t last,
		       bool flush)
{
	struct itn__cb_frame frame;
	struct itn__notifier *n;
	int young = 0;

	if (!s || start > last)
		return -EINVAL;
	if (!itn__has_classic(s))
		return 0;
	itn__cb_enter(&frame, s);
	itn__rcu_read_lock();
	for_each_notifier_rcu(n, s) {
		int (*fn)(struct itn_notifier *, struct itn_space *, uint64_t,
			  uint64_t) = flush ? n->ops->clear_flush_young :
					      n->ops->clear_young;

		if (fn)
			young |= fn(pub(n), s, start, last);
	}
	itn__rcu_read_unlock();
	itn__cb_exit(&frame);
	return young;
}

ITN_EXPORT int itn_clear_flush_young(struct itn_space *s, uint64_t start,
				     uint64_t last)
{
	return young_range(s, start, last, true);
}

ITN_EXPORT int itn_clear_young(struct itn_space *s, uint64_t start,
			       uint64_t last)
{
	return young_range(s, start, last, false);
}

ITN_EXPORT int itn_test_young(struct itn_space *s, uint64_t address)
{
	struct itn__cb_frame frame;
	struct itn__notifier *n;
	int young = 0;

	if (!s)
		return -EINVAL;
	if (!itn__has_classic(s))
		return 0;
	itn__cb_enter(&frame, s);
	itn__rcu_read_lock();
	for_each_notifier_rcu(n, s) {
		if (!n->ops->test_young)
			continue;
		young = n->ops->test_young(pub(n), s, address);
		if (young)
			break; /* the kernel stops at the first young one */
	}
	itn__rcu_read_unlock();
	itn__cb_exit(&frame);
	return young;
}
