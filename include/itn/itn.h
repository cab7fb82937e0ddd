/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libitn - the Linux kernel's mmu_interval_notifier semantics in userspace.
 *
 * An address space (struct itn_space) has subscriptions (struct itn_sub) to
 * ranges of it.  Whoever changes the space brackets the change with
 * itn_invalidate_start() / itn_invalidate_end(); each overlapping
 * subscription's invalidate callback runs at start.  A subscriber builds a
 * secondary mapping with the collision-retry protocol:
 *
 *	again:
 *		seq = itn_read_begin(&obj->sub);
 *		... read the primary mapping, prepare the secondary one ...
 *		lock(&obj->lock);
 *		if (itn_read_retry(&obj->sub, seq)) {
 *			unlock(&obj->lock);
 *			goto again;
 *		}
 *		... install the secondary mapping ...
 *		unlock(&obj->lock);
 *
 * and its invalidate callback takes the same lock, calls itn_set_seq() and
 * tears the secondary mapping of the range down.  The behaviour is specified
 * in SEMANTICS.md; names, errors and lifetime in API.md.
 *
 * Conventions: ranges are closed, [start, last]; errors are negative errno
 * values; functions returning pointers return NULL and set errno.  Every
 * function is thread-safe unless its comment says otherwise.
 */
#ifndef ITN_ITN_H
#define ITN_ITN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct itn_space;

/**
 * enum itn_event - why a range is invalidated (the kernel's order).
 * @ITN_EVENT_UNMAP: the range is unmapped.
 * @ITN_EVENT_CLEAR: pages are cleared (e.g. madvise(MADV_DONTNEED)).
 * @ITN_EVENT_PROTECTION_VMA: protection of a whole mapping changes.
 * @ITN_EVENT_PROTECTION_PAGE: protection of some pages changes.
 * @ITN_EVENT_SOFT_DIRTY: soft-dirty tracking is reset.
 * @ITN_EVENT_RELEASE: the space is torn down (itn_space_release()).
 * @ITN_EVENT_MIGRATE: pages migrate (owner may be set).
 * @ITN_EVENT_EXCLUSIVE: pages are made exclusive to a device (owner set).
 */
enum itn_event {
	ITN_EVENT_UNMAP,
	ITN_EVENT_CLEAR,
	ITN_EVENT_PROTECTION_VMA,
	ITN_EVENT_PROTECTION_PAGE,
	ITN_EVENT_SOFT_DIRTY,
	ITN_EVENT_RELEASE,
	ITN_EVENT_MIGRATE,
	ITN_EVENT_EXCLUSIVE,
};

/* Callbacks of this invalidation may sleep. */
#define ITN_RANGE_BLOCKABLE (1u << 0)

/**
 * struct itn_range - one invalidation.
 * @start: first address.
 * @last: last address, inclusive.
 * @event: why.
 * @flags: ITN_RANGE_BLOCKABLE or 0.
 * @owner: opaque token (MIGRATE/EXCLUSIVE), else NULL.
 */
struct itn_range {
	uint64_t start;
	uint64_t last;
	enum itn_event event;
	unsigned int flags;
	const void *owner;
};

/**
 * struct itn_sub - a subscription, embedded in the caller's object.
 *
 * Its members are private to the library.  Zero-initialise it (or use
 * ITN_SUB_INIT) before the first itn_sub_insert(); after that only the
 * library writes it.  sizeof(struct itn_sub) is part of the ABI.
 */
struct itn_sub {
	/* private: */
	uint64_t itn_private_[21];
};

/* Static initialiser of a not-yet-inserted subscription. */
#define ITN_SUB_INIT { { 0 } }

struct itn_sub_ops {
	/*
	 * invalidate() - required.  [range->start, range->last] overlaps
	 * @sub and is about to change.  Called with no library lock held,
	 * from the thread that called itn_invalidate_start().  Take the lock
	 * that guards the secondary mapping, call itn_set_seq(sub, cur_seq),
	 * tear the mapping of the range down, unlock.  Return false only when
	 * range->flags lacks ITN_RANGE_BLOCKABLE and the callback would have
	 * to sleep.  It may call itn_sub_insert(), itn_sub_update(),
	 * itn_sub_remove_deferred() and itn_find(); it must not call
	 * itn_sub_remove() or itn_read_begin() on the same space.
	 */
	bool (*invalidate)(struct itn_sub *sub, const struct itn_range *range,
			   uint64_t cur_seq);
	/*
	 * release() - optional.  Present: the subscription is reference
	 * counted, visible to itn_find(), and release() frees it (see
	 * itn_sub_put()).  Runs once, on a library thread, after the
	 * subscription has left the space, every reference is gone and an RCU
	 * grace period has passed.  It must not call itn_synchronize(),
	 * itn_sub_remove() or itn_read_begin().
	 */
	void (*release)(struct itn_sub *sub);
};

/**
 * struct itn_stats - monotonic counters of one space (subs: a gauge).
 * @invalidations: itn_invalidate_start() calls (and releases).
 * @periods: odd periods completed.
 * @callbacks: invalidate callbacks made.
 * @nonblock_failures: -EAGAIN returns of itn_invalidate_start().
 * @deferred_inserts: inserts deferred to the end of a period.
 * @deferred_removes: removals deferred to the end of a period.
 * @read_waits: itn_read_begin() / _timeout() calls that slept.
 * @remove_waits: itn_sub_remove() calls that slept.
 * @subs: subscriptions logically present now.
 * @refused: callbacks that returned false in blockable mode (ignored).
 * @deferred_updates: itn_sub_update() calls deferred to the end of a period.
 */
struct itn_stats {
	uint64_t invalidations;
	uint64_t periods;
	uint64_t callbacks;
	uint64_t nonblock_failures;
	uint64_t deferred_inserts;
	uint64_t deferred_removes;
	uint64_t read_waits;
	uint64_t remove_waits;
	uint64_t subs;
	uint64_t refused;
	uint64_t deferred_updates;
};

/**
 * itn_space_new() - Create an address space.
 *
 * Context: any thread; may allocate.  Not from an invalidate callback of
 * the new space (it has none yet).
 * Return: the space, or NULL with errno ENOMEM (or the error of
 * pthread_mutex_init / pthread_cond_init).
 */
struct itn_space *itn_space_new(void);

/**
 * itn_space_release() - Tear the space down, like the kernel's mm exit.
 * @s: the space.
 *
 * Runs one blockable invalidation of [0, UINT64_MAX] with event
 * ITN_EVENT_RELEASE over every interval subscription, then calls the
 * release op of every classic notifier, unlinks them and waits for a grace
 * period (the kernel's mm teardown).  Subscriptions stay registered (remove
 * them afterwards; unregistering a released classic notifier does not call
 * release again); later inserts, updates and registrations fail with
 * -ESHUTDOWN.  During a period the release joins it (its callbacks get the
 * period's cur_seq) and also calls the subscriptions whose insert the
 * period deferred, after those in the tree, in call order; removing one of
 * those afterwards waits for the end of the period like any removal.
 *
 * Context: sleeps; any thread, not from a callback of @s.
 * Return: 0; -EINVAL if @s is NULL; -EALREADY on a second call; -EDEADLK
 * from a callback of @s (nothing is done).
 */
int itn_space_release(struct itn_space *s);

/**
 * itn_space_free() - Free an empty, idle space.
 * @s: the space.
 *
 * Context: any thread that no longer uses @s; never sleeps.
 * Return: 0; -EINVAL if @s is NULL; -EBUSY while any subscription is
 * present (logically, or pending removal, or awaiting its release()), a
 * classic notifier is registered or awaiting free_notifier(), or an
 * invalidation is in flight (nothing is freed then).
 */
int itn_space_free(struct itn_space *s);

/**
 * itn_space_stats() - Read the counters of a space.
 * @s: the space.
 * @out: where to store them.
 *
 * Context: any thread, including callbacks; takes the space lock briefly.
 * Return: 0; -EINVAL if an argument is NULL.
 */
int itn_space_stats(struct itn_space *s, struct itn_stats *out);

/**
 * itn_sub_insert() - Subscribe to [start, start + length - 1].
 * @sub: zero-initialised or removed subscription (caller memory).
 * @s: the space.
 * @start: first address.
 * @length: number of bytes, > 0.
 * @ops: callbacks; ops->invalidate is required.
 *
 * Idle space: in the tree at once, and the sub seq is global - 1.  An
 * invalidation running but touching nothing (Partial): in the tree at once,
 * and a period starts so that the first itn_read_begin() waits for the
 * running invalidations.  During a period (Full): deferred to its end, and
 * the first itn_read_begin() waits for the end.  itn_find() sees it at once
 * in every case (if ops->release is set).
 *
 * Context: never sleeps or waits (takes the space lock briefly); any
 * thread, including an invalidate callback of the same space.
 * Return: 0; -EINVAL (NULL argument, ops->invalidate NULL, length 0, or
 * @sub neither zero-initialised nor removed); -EOVERFLOW (start + length - 1
 * wraps); -EBUSY (already inserted, or removed but its release() has not
 * run yet); -ESHUTDOWN (space released).  Nothing changes on an error.
 */
int itn_sub_insert(struct itn_sub *sub, struct itn_space *s, uint64_t start,
		   uint64_t length, const struct itn_sub_ops *ops);

/**
 * itn_sub_remove() - Unsubscribe and wait until no callback can run.
 * @sub: an inserted subscription.
 *
 * When it returns, @sub is in neither the tree nor the deferred list, no
 * callback for it runs and none will start.  During a period that may have
 * seen @sub it sleeps until the period ends.  A subscription whose insert
 * is still deferred is dropped at once (unless itn_space_release() has
 * called it during this period).  Without ops->release the caller may
 * then free or reuse the memory; with it, the insert's reference is dropped
 * and release() frees the memory later (do not touch @sub after this call
 * unless you hold a reference).
 *
 * Context: may sleep; not from an invalidate callback of the same space,
 * and not while holding a lock that a callback takes.
 * Return: 0; -EINVAL if @sub is NULL; -ENOENT (not inserted, or already
 * removed); -EDEADLK (called from an invalidate callback of the same space
 * on this thread: nothing is changed).
 */
int itn_sub_remove(struct itn_sub *sub);

/**
 * itn_sub_remove_deferred() - Unsubscribe without waiting.
 * @sub: an inserted subscription whose ops have release().
 *
 * Hidden from itn_find() at once; callbacks may still run until the
 * current period ends; release() runs once the subscription has left the
 * tree and every reference is gone.
 *
 * Context: never sleeps; any thread, including invalidate callbacks.
 * Return: 0; -EINVAL (NULL, or ops->release is NULL); -ENOENT (not
 * inserted, or already removed).
 */
int itn_sub_remove_deferred(struct itn_sub *sub);

/**
 * itn_sub_update() - Move a subscription to [start, start + length - 1].
 * @sub: an inserted subscription.
 * @start: new first address.
 * @length: new length, > 0.
 *
 * As if removed and inserted atomically: itn_find() sees only the new range
 * from the moment it returns; read sections begun before it must retry
 * (itn_read_retry() is true for them).  During a period the tree change is
 * deferred like an insert (and the next itn_read_begin() waits for the end
 * of the period); otherwise it takes effect at once.  Equal starts: the
 * moved subscription comes after those already present.
 *
 * Context: never sleeps; any thread, including invalidate callbacks.
 * Return: 0; -EINVAL (NULL, length 0); -EOVERFLOW (the range wraps);
 * -ENOENT (not inserted, or removed); -ESHUTDOWN (space released).
 * Nothing changes on an error.
 */
int itn_sub_update(struct itn_sub *sub, uint64_t start, uint64_t length);

/**
 * itn_sub_busy() - Does the library hold @sub?
 * @sub: any memory of the size of struct itn_sub, initialised or not.
 *
 * True from itn_sub_insert() until the memory may be inserted again (when
 * itn_sub_remove() has returned, or release() runs): exactly when
 * itn_sub_insert() would fail with -EBUSY.  Only the marks the library
 * writes are read, 32-bit magic values that uninitialised memory is most
 * unlikely to hold; the memory is not otherwise interpreted.  Wrappers that
 * accept uninitialised memory (<itn/linux/mmu_notifier.h>) use it to tell
 * a second insert from a first one.
 *
 * Context: any thread; lockless; a snapshot (racing with an insert or a
 * remove of @sub on another thread, it may be stale when it returns).
 * Return: true if @sub is inserted, being inserted or removed, or removed
 * and awaiting its release(); false otherwise and for NULL.
 */
bool itn_sub_busy(const struct itn_sub *sub);

/**
 * itn_sub_start() - First address of the logical range (after updates).
 * @sub: an inserted (or removed, still referenced) subscription; NULL
 *	aborts with a message naming itn_sub_start.
 *
 * Context: any thread; lockless.
 * Return: the first address.
 */
uint64_t itn_sub_start(const struct itn_sub *sub);

/**
 * itn_sub_last() - Last address of the logical range (after updates).
 * @sub: an inserted (or removed, still referenced) subscription; NULL
 *	aborts with a message naming itn_sub_last.
 *
 * Context: any thread; lockless.
 * Return: the last address, inclusive.
 */
uint64_t itn_sub_last(const struct itn_sub *sub);

/**
 * itn_sub_space() - The space a subscription was inserted in.
 * @sub: the subscription.
 *
 * Context: any thread; lockless.
 * Return: the space, or NULL if @sub is NULL or was never inserted.
 */
struct itn_space *itn_sub_space(const struct itn_sub *sub);

/**
 * itn_read_begin() - Begin a collision-retry read section.
 * @sub: an inserted subscription.
 *
 * Outside a period that touched @sub it is two acquire loads.  Otherwise it
 * sleeps until that period ends (unbounded while overlapping invalidations
 * keep coming: see itn_read_begin_timeout()).  Calling it from an
 * invalidate callback of the same space would never return: the library
 * aborts with a message naming this function.
 *
 * Context: may sleep; not while holding the lock the callback takes.
 * Return: the (odd) sequence to pass to itn_read_retry().
 */
uint64_t itn_read_begin(struct itn_sub *sub);

/**
 * itn_read_begin_timeout() - itn_read_begin() with a bound on the wait.
 * @sub: an inserted subscription.
 * @timeout_ns: longest wait, CLOCK_MONOTONIC nanoseconds.
 * @seq: where to store the sequence.
 *
 * Context: may sleep up to @timeout_ns; not from a callback of the space.
 * Return: 0 and *@seq; -EINVAL (NULL argument, or @sub zero-initialised
 * and never inserted); -ETIMEDOUT (*@seq is not written); -EDEADLK (inside
 * an invalidate callback of the same space).
 */
int itn_read_begin_timeout(struct itn_sub *sub, uint64_t timeout_ns,
			   uint64_t *seq);

/**
 * itn_read_retry() - End a read section: did it collide?
 * @sub: the subscription.
 * @seq: the value itn_read_begin() returned.
 *
 * Context: call under the lock the invalidate callback holds around
 * itn_set_seq(); never sleeps.
 * Return: true if an invalidation (or update) of @sub happened since
 * itn_read_begin(): discard what was read and start again.
 */
bool itn_read_retry(const struct itn_sub *sub, uint64_t seq);

/**
 * itn_check_retry() - Lockless hint that a read section collided.
 * @sub: the subscription.
 * @seq: the value itn_read_begin() returned.
 *
 * Context: any thread, no lock needed; never sleeps.
 * Return: true if it collided (definitive); false is only a hint.
 */
bool itn_check_retry(const struct itn_sub *sub, uint64_t seq);

/**
 * itn_set_seq() - Record the invalidation in the subscription.
 * @sub: the subscription being invalidated.
 * @cur_seq: the cur_seq argument of the invalidate callback.
 *
 * Context: from the invalidate callback, under the caller's lock.
 * Return: nothing.
 */
void itn_set_seq(struct itn_sub *sub, uint64_t cur_seq);

/**
 * itn_invalidate_start() - Announce that [r->start, r->last] will change.
 * @s: the space.
 * @r: the range; r->flags says whether callbacks may sleep.
 *
 * Calls invalidate() on every subscription overlapping @r, ascending start,
 * equal starts in insertion order, with no library lock held.  Starts nest
 * in one thread and run in parallel across threads.  Blockable: a false
 * return is counted (stats.refused) and ignored.  Not blockable: a false
 * return stops the walk, the library ends the invalidation itself and
 * returns -EAGAIN; the caller must then not change the range and must not
 * call itn_invalidate_end().
 *
 * Context: sleeps if callbacks sleep; any thread, also a callback.
 * Return: 0; -EINVAL (NULL argument, start > last); -EAGAIN (see above).
 */
int itn_invalidate_start(struct itn_space *s, const struct itn_range *r);

/**
 * itn_invalidate_end() - End one successful itn_invalidate_start().
 * @s: the space.
 * @r: the same range.
 *
 * The last end of a period makes the seq even, applies the deferred
 * inserts, removes and updates in call order, and wakes the waiters.
 * Calling it without a matching start is a programming error: the library
 * aborts with a message.
 *
 * Context: never sleeps (takes the space lock briefly); any thread.
 * Return: nothing.
 */
void itn_invalidate_end(struct itn_space *s, const struct itn_range *r);

/**
 * itn_find() - Look a subscription up, with a reference.
 * @s: the space.
 * @ops: only subscriptions with these ops (NULL: any).
 * @start: first address of the query.
 * @last: last address of the query, inclusive.
 *
 * The logically present subscription overlapping [start, last] with the
 * lowest start (ties: insertion order) whose ops equal @ops.  Only
 * subscriptions whose ops have release() are eligible.  Consistent with
 * program order: a deferred insert is found as soon as insert returns; a
 * subscription is never returned once remove was called; an update is seen
 * at once.  Drop the reference with itn_sub_put().
 *
 * While the index does not change, finds search a flat copy of it (about
 * 3x faster at 10^4 subscriptions): after enough finds on an unchanged
 * index (a quarter of its size, per thread), the finding thread makes one,
 * with one malloc() of 24 bytes per subscription and a lockless O(n) walk
 * that never blocks writers; any insert, remove or update makes it stale.
 * A find inside a callback or release() never makes one (never allocates).
 *
 * Context: never sleeps; lock-free (an RCU read-side section with a
 * bounded fallback to the space lock); any thread, including callbacks.
 * Return: the subscription, or NULL with errno ENOENT (none) or EINVAL
 * (NULL space, @ops without release, start > last).
 */
struct itn_sub *itn_find(struct itn_space *s, const struct itn_sub_ops *ops,
			 uint64_t start, uint64_t last);

/**
 * itn_find_next() - The next match after @prev, with a reference.
 * @s: the space.
 * @ops: as for itn_find().
 * @prev: the previous result (the caller still holds, and later puts, its
 *	reference; it may have been removed or updated meanwhile).
 * @start: first address of the query.
 * @last: last address of the query, inclusive.
 *
 * itn_find() then itn_find_next() until NULL visits every match present
 * throughout the walk exactly once, in (start, insertion) order.
 *
 * Context: as itn_find().
 * Return: as itn_find(); EINVAL also when @prev is NULL.
 */
struct itn_sub *itn_find_next(struct itn_space *s,
			      const struct itn_sub_ops *ops,
			      struct itn_sub *prev, uint64_t start,
			      uint64_t last);

/**
 * itn_sub_get() - Take a reference.
 * @sub: a subscription whose ops have release() and on which the caller
 *	already holds a reference (or that is inserted).
 *
 * A no-op for subscriptions without release().
 *
 * Context: any thread; lockless, except on a removed subscription whose
 * only references are itn_find()'s per-thread ones: then it checks them
 * under a short internal lock; never waits for a grace period.
 * Return: nothing.
 */
void itn_sub_get(struct itn_sub *sub);

/**
 * itn_sub_put() - Drop a reference.
 * @sub: the subscription.
 *
 * The last put of a removed subscription queues release() behind an RCU
 * grace period.  A no-op for subscriptions without release().  Any thread
 * may put any reference; putting one that itn_find() gave another thread,
 * or the last one of a removed subscription, takes a short internal lock.
 *
 * Context: any thread, including callbacks; never waits for a grace
 * period or a callback.
 * Return: nothing.
 */
void itn_sub_put(struct itn_sub *sub);

/**
 * itn_synchronize() - Wait for every queued release().
 *
 * Returns once every release() and free_notifier() callback queued before
 * the call has run,
 * e.g. before unloading the code of release() or checking for leaks.
 * Calling it from an invalidate or release callback is a programming error
 * (it would wait for itself): the library aborts with a message.
 *
 * Context: sleeps; any thread outside callbacks.
 * Return: nothing.
 */
void itn_synchronize(void);

/*
 * Classic notifiers: the kernel's list-based struct mmu_notifier, for
 * subscribers that want every invalidation of the space (no range
 * filtering) and the page-aging and teardown hooks.  Dispatch follows the
 * kernel: interval subscriptions first on start, end and release; classic
 * notifiers newest first.
 */

/**
 * struct itn_notifier - a classic notifier, embedded in caller memory.
 *
 * Private to the library; zero-initialise before itn_notifier_register().
 */
struct itn_notifier {
	/* private: */
	uint64_t itn_private_[8];
};

/**
 * struct itn_notifier_ops - classic notifier callbacks (all optional).
 * @release: the space is torn down (itn_space_release()), or the notifier
 *	is unregistered before that; called once.
 * @clear_flush_young: age [start, last]; return nonzero if it was young.
 * @clear_young: as @clear_flush_young, without a flush.
 * @test_young: return nonzero if @address is young.
 * @invalidate_start: [r->start, r->last] will change.  Return 0, or
 *	-EAGAIN only when @r is not blockable and it would have to sleep.
 * @invalidate_end: the change is done; paired with every start, also when
 *	another notifier's start failed.
 * @alloc_notifier: allocate a notifier for itn_notifier_get().
 * @free_notifier: free one after its last itn_notifier_put() and a grace
 *	period (on a library thread).
 *
 * Callbacks run with no library lock held, inside an RCU read-side section
 * of the library (the kernel uses SRCU): they may sleep (blockable ranges)
 * but must not wait for a grace period or for the space: no
 * itn_notifier_unregister(), itn_synchronize(), itn_space_release(), and
 * no itn_sub_remove() or itn_read_begin() of any space (the same space
 * gets -EDEADLK or an abort, from every callback here, release and the
 * page-aging hooks included).
 */
struct itn_notifier_ops {
	void (*release)(struct itn_notifier *n, struct itn_space *s);
	int (*clear_flush_young)(struct itn_notifier *n, struct itn_space *s,
				 uint64_t start, uint64_t last);
	int (*clear_young)(struct itn_notifier *n, struct itn_space *s,
			   uint64_t start, uint64_t last);
	int (*test_young)(struct itn_notifier *n, struct itn_space *s,
			  uint64_t address);
	int (*invalidate_start)(struct itn_notifier *n,
				const struct itn_range *r);
	void (*invalidate_end)(struct itn_notifier *n,
			       const struct itn_range *r);
	struct itn_notifier *(*alloc_notifier)(struct itn_space *s);
	void (*free_notifier)(struct itn_notifier *n);
};

/**
 * itn_notifier_register() - Add a classic notifier to a space.
 * @n: zero-initialised (or unregistered) notifier.
 * @s: the space.
 * @ops: its callbacks.
 *
 * Waits until no invalidation is in flight, then links the notifier:
 * every invalidation that starts after it returns calls it, at start and at
 * end, and none that started before does (the kernel's registration takes
 * all of the mm's locks for the same reason).
 *
 * Context: may sleep while invalidations run; any thread, not from a
 * callback of @s.
 * Return: 0; -EINVAL (NULL argument, or @n neither zero-initialised nor
 * unregistered); -EBUSY (already registered, or being registered or
 * unregistered by another thread); -ESHUTDOWN (space released); -EDEADLK
 * (from a callback of @s).  Nothing changes on an error.
 */
int itn_notifier_register(struct itn_notifier *n, struct itn_space *s,
			  const struct itn_notifier_ops *ops);

/**
 * itn_notifier_unregister() - Remove a classic notifier and wait for it.
 * @n: a registered notifier.
 * @s: its space.
 *
 * Calls ops->release unless the space's teardown already did, unlinks the
 * notifier, and waits for an RCU grace period: when it returns no callback
 * of @n runs, and the caller may free it.  Not for notifiers obtained with
 * itn_notifier_get() (use itn_notifier_put()).
 *
 * Context: sleeps; not from any libitn callback.
 * Return: 0; -EINVAL (NULL, or @n belongs to another space, or it came from
 * itn_notifier_get()); -ENOENT (not registered); -EDEADLK (from a callback
 * of @s).
 */
int itn_notifier_unregister(struct itn_notifier *n, struct itn_space *s);

/**
 * itn_notifier_get() - The notifier of @ops on @s, shared and counted.
 * @ops: callbacks with alloc_notifier and free_notifier.
 * @s: the space.
 *
 * Returns the registered notifier with these ops, with one more user, or
 * allocates one with ops->alloc_notifier and registers it (waiting, like
 * itn_notifier_register(), until no invalidation is in flight).
 *
 * Context: may sleep in alloc_notifier; not from a callback of @s.
 * Return: the notifier, or NULL with errno EINVAL (NULL argument, ops lack
 * alloc_notifier or free_notifier), ENOMEM (alloc_notifier returned
 * NULL), ESHUTDOWN (space released), EDEADLK (from a callback of @s).
 */
struct itn_notifier *itn_notifier_get(const struct itn_notifier_ops *ops,
				      struct itn_space *s);

/**
 * itn_notifier_put() - Drop a user of a notifier from itn_notifier_get().
 * @n: the notifier.
 *
 * The last put unlinks it and queues ops->free_notifier behind an RCU
 * grace period (itn_synchronize() waits for it).
 *
 * Context: never sleeps; any thread, also callbacks (not release).
 * Return: nothing.
 */
void itn_notifier_put(struct itn_notifier *n);

/**
 * itn_clear_flush_young() - Ask every classic notifier to age a range.
 * @s: the space.
 * @start: first address.
 * @last: last address, inclusive.
 *
 * Context: never sleeps itself; callbacks run under RCU.
 * Return: nonzero if any notifier reported the range young; -EINVAL for
 * a NULL space or start > last.
 */
int itn_clear_flush_young(struct itn_space *s, uint64_t start, uint64_t last);

/**
 * itn_clear_young() - As itn_clear_flush_young(), without a flush.
 * @s: the space.
 * @start: first address.
 * @last: last address, inclusive.
 *
 * Context: as itn_clear_flush_young().
 * Return: as itn_clear_flush_young().
 */
int itn_clear_young(struct itn_space *s, uint64_t start, uint64_t last);

/**
 * itn_test_young() - Is @address young for any classic notifier?
 * @s: the space.
 * @address: the address.
 *
 * Context: as itn_clear_flush_young().
 * Return: nonzero if young, 0 if not, -EINVAL for a NULL space.
 */
int itn_test_young(struct itn_space *s, uint64_t address);

#ifdef __cplusplus
}
#endif

#endif /* ITN_ITN_H */
