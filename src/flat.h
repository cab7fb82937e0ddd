/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * flat.h - the flat index: a read-only, cache-friendly copy of the logical
 * index that itn_find() searches instead of the tree while the index does
 * not change (internal).
 *
 * A lookup in the tree costs one dependent cache miss per level on nodes
 * scattered through the callers' objects.  The flat index keeps, for the
 * subscriptions in (start, insertion) order, the prefix maximum of their
 * last addresses in one array laid out in Eytzinger (breadth-first) order,
 * and their start and pointer in a second one, same positions.  The first
 * subscription overlapping [start, last] in that order is the first one
 * whose prefix maximum is >= start, provided its own start is <= last
 * (every earlier one ends before start; every later one starts after this
 * one's start): a branch-free lower bound over 8-byte keys, which fetches
 * the line of its descendants three levels down while it compares, then
 * one entry.  (Entries inside the search array, 32 bytes a node, made
 * the search slower at 10^4 and 10^5: four times the lines to walk.  A
 * static B-tree of 8-key lines has fewer levels, but each waits for its
 * line: 2.5x slower than this at 10^5 subscriptions, no faster at 10^4.)
 *
 * A flat index is a snapshot of the tree at one value of its sequence count
 * (itn_tree.wseq): it answers for exactly that value, and a reader uses it
 * only if wseq still has it, validating as for a tree walk.  Any insert,
 * remove or update makes it stale; finds then walk the tree again, and a
 * thread that has done enough finds on the same unchanged tree builds a new
 * one (lockless, validated; itn__flat_note_miss()).  Builders never block
 * writers and never hold the space lock.  A replaced index is freed after a
 * grace period.
 *
 * Memory: 24 bytes per subscription while an index exists, in one block.
 */
#ifndef ITN_FLAT_H
#define ITN_FLAT_H

#include "itree.h"
#include "rcu.h"

#include <stdbool.h>
#include <stdint.h>

struct itn_space;
struct itn__sub;

/* An entry, in the same position as its prefix maximum. */
struct itn_flat_ent {
	uint64_t start;
	struct itn__sub *sub;
};

/**
 * struct itn_flat - one snapshot of a space's logical index.
 * @wseq: the logical tree's sequence count it was taken at (even).
 * @n: number of subscriptions; positions are 1..n.
 * @max: prefix maxima of last, Eytzinger order (children of k: 2k and
 *	2k+1), max[0] unused; 64-byte aligned, so max[8k..8k+7] is a line.
 * @ent: start and subscription of each position.
 * @rcu: for freeing after a grace period once replaced.
 */
struct itn_flat {
	uint64_t wseq;
	uint64_t n;
	const uint64_t *max;
	const struct itn_flat_ent *ent;
	struct rcu_head rcu;
};

/*
 * Indexes of at least this many positions also prefetch entries: below,
 * ent[] fits the L1 cache with max[] and the prefetches cost more than
 * they save (P1 at 10^3: 7% slower with them).
 */
#define ITN_FLAT_PREFETCH_ENT 2048

/*
 * The lower bound's descent: the position past the last one it visits.
 * At each level it fetches the line of the node's 8 descendants three
 * levels down, and with @ent_too their two lines of entries: the result
 * is the last node the descent turned left at, so its entry was asked
 * for three levels before the search ends rather than after (one cache
 * miss less on the way to the subscription: P1 +25% at 10^5, +14% at
 * 10^4).  Never past the arrays: a prefetch does not fault, but one of an
 * unmapped address costs a page walk (many more in a VM).
 */
static inline __attribute__((always_inline)) uint64_t
itn__flat_descend(const struct itn_flat *f, uint64_t start, bool ent_too)
{
	const uint64_t *max = f->max;
	uint64_t n = f->n, k = 1;

	while (k <= n) {
		uint64_t d = 8 * k < n ? 8 * k : n;

		__builtin_prefetch(&max[d]);
		if (ent_too) {
			__builtin_prefetch(&f->ent[d]);
			__builtin_prefetch((const char *)&f->ent[d] + 64);
		}
		k = 2 * k + (max[k] < start);
	}
	return k;
}

/*
 * The first subscription overlapping [start, last] (start <= last) in
 * (start, insertion) order, or NULL; *@found_start is its start.
 */
static inline struct itn__sub *itn__flat_first(const struct itn_flat *f,
					       uint64_t start, uint64_t last,
					       uint64_t *found_start)
{
	uint64_t k = f->n >= ITN_FLAT_PREFETCH_ENT ?
			     itn__flat_descend(f, start, true) :
			     itn__flat_descend(f, start, false);

	/* Undo the right turns after the last left one: the lower bound. */
	k >>= __builtin_ffsll((long long)~k);
	if (!k || f->ent[k].start > last)
		return NULL;
	*found_start = f->ent[k].start;
	return f->ent[k].sub;
}

/*
 * Called by a find that walked the tree at sequence @w because no flat
 * index was current: counts such finds per thread, and after enough of
 * them on an unchanged tree builds one.  Must not be called inside a
 * read-side section, a callback or a release().
 */
void itn__flat_note_miss(struct itn_space *s, uint64_t w);

/* Build an index now; true if one for the current tree was published. */
bool itn__flat_build(struct itn_space *s);

/* At itn_space_free(): free the space's index (no reader is left). */
void itn__flat_free(struct itn_space *s);

/*
 * Tests: the number of tree-walking finds after which a thread builds an
 * index is @per_sub_shift and @min: (subscriptions >> per_sub_shift) +
 * min.  min == UINT64_MAX never builds.  Process-wide.
 */
void itn__flat_set_threshold(unsigned int per_sub_shift, uint64_t min);

#endif /* ITN_FLAT_H */
