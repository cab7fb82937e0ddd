/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <itn/linux/mmu_notifier.h> - the kernel's interval-notifier API on libitn.
 *
 * Driver logic written against include/linux/mmu_notifier.h compiles and
 * runs unchanged in userspace: the names, argument types and return
 * conventions are the kernel's.  An mm is a libitn space:
 *
 *	struct mm_struct *mm = itn_space_new();    // "struct mm_struct" is a
 *	                                           // struct itn_space
 *	mmu_interval_notifier_insert(&obj->notifier, mm, start, length, &ops);
 *	...
 *	seq = mmu_interval_read_begin(&obj->notifier);
 *
 * The address space side announces changes with mmu_notifier_range_init()
 * and mmu_notifier_invalidate_range_start() / _end().
 *
 * Differences from the kernel, all deliberate:
 *  - Ranges are [start, end) like the kernel's; a range ending at the very
 *    top of the address space cannot be expressed, as in the kernel, and
 *    libitn's own release invalidation ([0, UINT64_MAX]) reaches the driver
 *    as [0, ULONG_MAX).
 *  - mmu_interval_notifier_insert() accepts an uninitialised notifier (on
 *    the stack, or fresh from malloc), like the kernel's, and refuses one
 *    that is inserted with -EBUSY where the kernel would corrupt its tree.
 *    The rule: the only state the wrapper relies on is libitn's own mark
 *    in the notifier (itn_sub_busy()), which stays set from a successful
 *    insert until mmu_interval_notifier_remove() returns.  Memory with
 *    that mark is an inserted notifier; anything else (zeroes, garbage, a
 *    removed notifier) is a fresh one.  So remove a notifier before its
 *    memory is freed or reused for another notifier, as in the kernel.
 *  - There is no mmap_lock; _insert_locked() is _insert().
 * Everything else (sleeping rules, -EOVERFLOW for a zero length, the
 * deferred insert/remove, the collision-retry protocol) is libitn's, which
 * is the kernel's.
 */
#ifndef ITN_LINUX_MMU_NOTIFIER_H
#define ITN_LINUX_MMU_NOTIFIER_H

#include <itn/itn.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#if ULONG_MAX != UINT64_MAX
#error "<itn/linux/mmu_notifier.h> needs a 64-bit unsigned long (LP64)"
#endif

/* The kernel's mm is libitn's space. */
#define mm_struct itn_space

/**
 * enum mmu_notifier_event - the kernel's event names (same values as
 * enum itn_event).
 */
enum mmu_notifier_event {
	MMU_NOTIFY_UNMAP = ITN_EVENT_UNMAP,
	MMU_NOTIFY_CLEAR = ITN_EVENT_CLEAR,
	MMU_NOTIFY_PROTECTION_VMA = ITN_EVENT_PROTECTION_VMA,
	MMU_NOTIFY_PROTECTION_PAGE = ITN_EVENT_PROTECTION_PAGE,
	MMU_NOTIFY_SOFT_DIRTY = ITN_EVENT_SOFT_DIRTY,
	MMU_NOTIFY_RELEASE = ITN_EVENT_RELEASE,
	MMU_NOTIFY_MIGRATE = ITN_EVENT_MIGRATE,
	MMU_NOTIFY_EXCLUSIVE = ITN_EVENT_EXCLUSIVE,
};

#define MMU_NOTIFIER_RANGE_BLOCKABLE ITN_RANGE_BLOCKABLE

/**
 * struct mmu_notifier_range - an invalidation, kernel style.
 * @mm: the space.
 * @start: first address.
 * @end: first address after the range (exclusive).
 * @flags: MMU_NOTIFIER_RANGE_BLOCKABLE or 0.
 * @event: why.
 * @owner: opaque token (MIGRATE/EXCLUSIVE), else NULL.
 */
struct mmu_notifier_range {
	struct mm_struct *mm;
	unsigned long start;
	unsigned long end;
	unsigned int flags;
	enum mmu_notifier_event event;
	void *owner;
};

struct mmu_interval_notifier;

/**
 * struct mmu_interval_notifier_ops - the kernel's interval ops.
 * @invalidate: as the kernel's: called with no lock held; take the driver
 *	lock, mmu_interval_set_seq(), tear down; return false only if the
 *	range is not blockable and it would have to sleep.
 */
struct mmu_interval_notifier_ops {
	bool (*invalidate)(struct mmu_interval_notifier *interval_sub,
			   const struct mmu_notifier_range *range,
			   unsigned long cur_seq);
};

/**
 * struct mmu_interval_notifier - an interval subscription, kernel style.
 * @sub: the libitn subscription (private).
 * @ops: the driver's ops.
 * @mm: the space it was inserted in (drivers read notifier.mm).
 */
struct mmu_interval_notifier {
	struct itn_sub sub;
	const struct mmu_interval_notifier_ops *ops;
	struct mm_struct *mm;
};

static inline struct mmu_interval_notifier *
itn_compat_notifier_(struct itn_sub *sub)
{
	return (struct mmu_interval_notifier
			*)(void *)((char *)sub -
				   offsetof(struct mmu_interval_notifier, sub));
}

/* libitn's callback: rebuild the kernel's range and call the driver. */
static inline bool itn_compat_invalidate_(struct itn_sub *sub,
					  const struct itn_range *r,
					  uint64_t cur_seq)
{
	struct mmu_interval_notifier *mni = itn_compat_notifier_(sub);
	struct mmu_notifier_range range = {
		.mm = mni->mm,
		.start = r->start,
		.end = r->last == UINT64_MAX ? ULONG_MAX : r->last + 1,
		.flags = r->flags,
		.event = (enum mmu_notifier_event)r->event,
		.owner = (void *)(uintptr_t)r->owner,
	};

	return mni->ops->invalidate(mni, &range, cur_seq);
}

static const struct itn_sub_ops itn_compat_interval_ops_ = {
	.invalidate = itn_compat_invalidate_,
	.release = NULL,
};

/**
 * mmu_interval_notifier_insert() - Insert an interval notifier.
 * @interval_sub: the notifier (need not be initialised; see the rule at
 *	the top of this header).
 * @mm: the space.
 * @start: first address.
 * @length: number of bytes.
 * @ops: the interval ops.
 *
 * Context: never waits; any thread, including an invalidate callback.
 * Return: 0; -EOVERFLOW if @length is 0 or the range wraps; -EINVAL for a
 * NULL argument; -EBUSY if @interval_sub is already inserted (in any
 * space; it is left as it was); -ESHUTDOWN if the space was released.
 */
static inline int
mmu_interval_notifier_insert(struct mmu_interval_notifier *interval_sub,
			     struct mm_struct *mm, unsigned long start,
			     unsigned long length,
			     const struct mmu_interval_notifier_ops *ops)
{
	int err;

	if (!interval_sub || !mm || !ops || !ops->invalidate)
		return -EINVAL;
	if (length == 0 || start + (length - 1) < start)
		return -EOVERFLOW;
	/* Inserted: its callback may run at any time and reads ops and mm,
	 * so neither may change. */
	if (itn_sub_busy(&interval_sub->sub))
		return -EBUSY;
	interval_sub->ops = ops;
	interval_sub->mm = mm;
	err = itn_sub_insert(&interval_sub->sub, mm, start, length,
			     &itn_compat_interval_ops_);
	if (err == -EINVAL) {
		/* The arguments are valid: libitn found neither zeroes nor
		 * a removed subscription, so the memory is uninitialised. */
		memset(&interval_sub->sub, 0, sizeof(interval_sub->sub));
		err = itn_sub_insert(&interval_sub->sub, mm, start, length,
				     &itn_compat_interval_ops_);
	}
	return err;
}

/**
 * mmu_interval_notifier_insert_locked() - As _insert(); there is no
 * mmap_lock in userspace.
 * @interval_sub: the notifier.
 * @mm: the space.
 * @start: first address.
 * @length: number of bytes.
 * @ops: the interval ops.
 *
 * Context: as mmu_interval_notifier_insert().
 * Return: as mmu_interval_notifier_insert().
 */
static inline int
mmu_interval_notifier_insert_locked(struct mmu_interval_notifier *interval_sub,
				    struct mm_struct *mm, unsigned long start,
				    unsigned long length,
				    const struct mmu_interval_notifier_ops *ops)
{
	return mmu_interval_notifier_insert(interval_sub, mm, start, length,
					    ops);
}

/**
 * mmu_interval_notifier_remove() - Remove an interval notifier.
 * @interval_sub: an inserted notifier.
 *
 * When it returns no callback runs or will run; the memory may be freed.
 *
 * Context: may sleep until the running period ends; never from an
 * invalidate callback of the same space (the kernel's rule; libitn then
 * refuses and leaves the notifier inserted, see itn_sub_remove()).
 * Return: nothing.
 */
static inline void
mmu_interval_notifier_remove(struct mmu_interval_notifier *interval_sub)
{
	(void)itn_sub_remove(&interval_sub->sub);
}

/**
 * mmu_interval_read_begin() - Begin a read-side critical section.
 * @interval_sub: the notifier.
 *
 * Context: may sleep; not under the driver lock, not from a callback.
 * Return: the sequence for mmu_interval_read_retry().
 */
static inline unsigned long
mmu_interval_read_begin(struct mmu_interval_notifier *interval_sub)
{
	return itn_read_begin(&interval_sub->sub);
}

/**
 * mmu_interval_read_retry() - End a read-side critical section.
 * @interval_sub: the notifier.
 * @seq: the value mmu_interval_read_begin() returned.
 *
 * Context: under the driver lock that the callback holds for set_seq.
 * Return: true if the section collided with an invalidation.
 */
static inline bool
mmu_interval_read_retry(struct mmu_interval_notifier *interval_sub,
			unsigned long seq)
{
	return itn_read_retry(&interval_sub->sub, seq);
}

/**
 * mmu_interval_check_retry() - Lockless collision hint.
 * @interval_sub: the notifier.
 * @seq: the value mmu_interval_read_begin() returned.
 *
 * Context: any; no lock.
 * Return: true if collided (definitive); false is only a hint.
 */
static inline bool
mmu_interval_check_retry(struct mmu_interval_notifier *interval_sub,
			 unsigned long seq)
{
	return itn_check_retry(&interval_sub->sub, seq);
}

/**
 * mmu_interval_set_seq() - Record an invalidation (from the callback).
 * @interval_sub: the notifier.
 * @cur_seq: the callback's cur_seq.
 *
 * Context: inside invalidate, under the driver lock.
 * Return: nothing.
 */
static inline void
mmu_interval_set_seq(struct mmu_interval_notifier *interval_sub,
		     unsigned long cur_seq)
{
	itn_set_seq(&interval_sub->sub, cur_seq);
}

/**
 * mmu_notifier_range_init_owner() - Initialise a range with an owner.
 * @range: the range.
 * @event: why.
 * @flags: MMU_NOTIFIER_RANGE_BLOCKABLE or 0.
 * @mm: the space.
 * @start: first address.
 * @end: first address after the range.
 * @owner: the owner token.
 *
 * Context: any.
 * Return: nothing.
 */
static inline void
mmu_notifier_range_init_owner(struct mmu_notifier_range *range,
			      enum mmu_notifier_event event,
			      unsigned int flags, struct mm_struct *mm,
			      unsigned long start, unsigned long end,
			      void *owner)
{
	range->mm = mm;
	range->start = start;
	range->end = end;
	range->flags = flags;
	range->event = event;
	range->owner = owner;
}

/**
 * mmu_notifier_range_init() - Initialise a range.
 * @range: the range.
 * @event: why.
 * @flags: MMU_NOTIFIER_RANGE_BLOCKABLE or 0.
 * @mm: the space.
 * @start: first address.
 * @end: first address after the range.
 *
 * Context: any.
 * Return: nothing.
 */
static inline void mmu_notifier_range_init(struct mmu_notifier_range *range,
					   enum mmu_notifier_event event,
					   unsigned int flags,
					   struct mm_struct *mm,
					   unsigned long start,
					   unsigned long end)
{
	mmu_notifier_range_init_owner(range, event, flags, mm, start, end,
				      NULL);
}

/**
 * mmu_notifier_range_blockable() - May the callbacks of @range sleep?
 * @range: the range.
 *
 * Context: any.
 * Return: true if blockable.
 */
static inline bool
mmu_notifier_range_blockable(const struct mmu_notifier_range *range)
{
	return range->flags & MMU_NOTIFIER_RANGE_BLOCKABLE;
}

static inline int itn_compat_start_(struct mmu_notifier_range *range)
{
	struct itn_range r = {
		.start = range->start,
		.last = range->end - 1,
		.event = (enum itn_event)range->event,
		.flags = range->flags,
		.owner = range->owner,
	};

	/* An empty range touches nothing (and is never ended either). */
	if (range->end <= range->start)
		return 0;
	return itn_invalidate_start(range->mm, &r);
}

/**
 * mmu_notifier_invalidate_range_start() - Announce a change (may sleep).
 * @range: the range; made blockable.
 *
 * Context: may sleep in callbacks.
 * Return: nothing (blockable starts cannot fail).
 */
static inline void
mmu_notifier_invalidate_range_start(struct mmu_notifier_range *range)
{
	range->flags |= MMU_NOTIFIER_RANGE_BLOCKABLE;
	(void)itn_compat_start_(range);
}

/**
 * mmu_notifier_invalidate_range_start_nonblock() - Announce a change
 * without sleeping.
 * @range: the range; made non-blockable.
 *
 * Context: any; callbacks must not sleep.
 * Return: 0, or -EAGAIN if a callback would have to sleep: then do not
 * change the range and do not call mmu_notifier_invalidate_range_end().
 */
static inline int
mmu_notifier_invalidate_range_start_nonblock(struct mmu_notifier_range *range)
{
	range->flags &= ~MMU_NOTIFIER_RANGE_BLOCKABLE;
	return itn_compat_start_(range);
}

/**
 * mmu_notifier_invalidate_range_end() - The change is done.
 * @range: the range given to the successful start.
 *
 * Context: never sleeps.
 * Return: nothing.
 */
static inline void
mmu_notifier_invalidate_range_end(struct mmu_notifier_range *range)
{
	struct itn_range r = {
		.start = range->start,
		.last = range->end - 1,
		.event = (enum itn_event)range->event,
		.flags = range->flags,
		.owner = range->owner,
	};

	if (range->end > range->start)
		itn_invalidate_end(range->mm, &r);
}

#ifdef __cplusplus
}
#endif

#endif /* ITN_LINUX_MMU_NOTIFIER_H */
