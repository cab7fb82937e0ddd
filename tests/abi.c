// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The ABI of libitn.so.0 (symbol version ITN_0.1), frozen at compile time.
 *
 * Callers embed struct itn_sub and struct itn_notifier, fill struct
 * itn_range, read struct itn_stats and allocate the ops tables, so the size,
 * alignment and member offsets of all of them are compiled into callers.  A
 * failing assertion here means an ABI change: either undo it, or make it
 * deliberately (new soname in meson.build, new node in src/libitn.sym, an
 * ABI line in CHANGELOG.md) and update the numbers below in the same commit.
 * The numbers are for LP64 (x86_64, aarch64, ...).
 */
#include <itn/itn.h>

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ITN_ABI_ASSERT(expr) _Static_assert(expr, #expr)

#if UINTPTR_MAX == UINT64_MAX

/*
 * struct itn_sub: 21 private words.  168 bytes since the insert generation
 * was added (find: walk positions that survive updates and address reuse);
 * the budget agreed for 0.1 is 176 bytes, so one word is left.
 */
ITN_ABI_ASSERT(sizeof(struct itn_sub) == 168);
ITN_ABI_ASSERT(alignof(struct itn_sub) == 8);
ITN_ABI_ASSERT(sizeof(struct itn_sub) <= 176);

/* struct itn_notifier: 8 private words. */
ITN_ABI_ASSERT(sizeof(struct itn_notifier) == 64);
ITN_ABI_ASSERT(alignof(struct itn_notifier) == 8);

/* struct itn_range: filled in by callers. */
ITN_ABI_ASSERT(sizeof(struct itn_range) == 32);
ITN_ABI_ASSERT(alignof(struct itn_range) == 8);
ITN_ABI_ASSERT(offsetof(struct itn_range, start) == 0);
ITN_ABI_ASSERT(offsetof(struct itn_range, last) == 8);
ITN_ABI_ASSERT(offsetof(struct itn_range, event) == 16);
ITN_ABI_ASSERT(offsetof(struct itn_range, flags) == 20);
ITN_ABI_ASSERT(offsetof(struct itn_range, owner) == 24);
ITN_ABI_ASSERT(sizeof(enum itn_event) == 4);

/* struct itn_stats: eleven counters, new ones only at the end. */
ITN_ABI_ASSERT(sizeof(struct itn_stats) == 11 * 8);
ITN_ABI_ASSERT(alignof(struct itn_stats) == 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, invalidations) == 0 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, periods) == 1 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, callbacks) == 2 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, nonblock_failures) == 3 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, deferred_inserts) == 4 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, deferred_removes) == 5 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, read_waits) == 6 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, remove_waits) == 7 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, subs) == 8 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, refused) == 9 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_stats, deferred_updates) == 10 * 8);

/*
 * The ops tables live in caller memory and the library reads them: they
 * never grow (style.md §4.8), and their members never move.
 */
ITN_ABI_ASSERT(sizeof(struct itn_sub_ops) == 2 * sizeof(void (*)(void)));
ITN_ABI_ASSERT(offsetof(struct itn_sub_ops, invalidate) == 0);
ITN_ABI_ASSERT(offsetof(struct itn_sub_ops, release) == 8);

ITN_ABI_ASSERT(sizeof(struct itn_notifier_ops) == 8 * sizeof(void (*)(void)));
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, release) == 0 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, clear_flush_young) == 1 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, clear_young) == 2 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, test_young) == 3 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, invalidate_start) == 4 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, invalidate_end) == 5 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, alloc_notifier) == 6 * 8);
ITN_ABI_ASSERT(offsetof(struct itn_notifier_ops, free_notifier) == 7 * 8);

#endif /* LP64 */

/* enum itn_event: the kernel's enum mmu_notifier_event, in its order. */
ITN_ABI_ASSERT(ITN_EVENT_UNMAP == 0);
ITN_ABI_ASSERT(ITN_EVENT_CLEAR == 1);
ITN_ABI_ASSERT(ITN_EVENT_PROTECTION_VMA == 2);
ITN_ABI_ASSERT(ITN_EVENT_PROTECTION_PAGE == 3);
ITN_ABI_ASSERT(ITN_EVENT_SOFT_DIRTY == 4);
ITN_ABI_ASSERT(ITN_EVENT_RELEASE == 5);
ITN_ABI_ASSERT(ITN_EVENT_MIGRATE == 6);
ITN_ABI_ASSERT(ITN_EVENT_EXCLUSIVE == 7);

/* Range flags are bits in an unsigned int. */
ITN_ABI_ASSERT(ITN_RANGE_BLOCKABLE == 1u);

int main(void)
{
	/* ITN_SUB_INIT is the all-zero state itn_sub_insert() expects. */
	static const struct itn_sub zero;
	struct itn_sub sub = ITN_SUB_INIT;

	return memcmp(&sub, &zero, sizeof(sub)) == 0 ? EXIT_SUCCESS :
						       EXIT_FAILURE;
}
