/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * itree.h - the RCU-readable augmented red-black interval tree (internal).
 *
 * An intrusive red-black tree over closed intervals [start, last] of
 * uint64_t, ordered by start (equal starts in insertion order: a new node goes
 * to the right of every equal start), augmented with the subtree maximum of
 * last, with a cached leftmost node.
 *
 * Two kinds of reader:
 *
 *  - Writer-side and frozen walks (itn__tree_iter_first/_next) run under the
 *    writers' lock, or while the tree is known not to change (an invalidation
 *    period).  They use parent pointers and see a consistent tree.
 *
 *  - Lockless walks (itn__tree_search_rcu) run under an RCU read-side section
 *    concurrently with a writer.  They descend from the root through child
 *    pointers only, with acquire loads, and never follow a parent pointer.
 *    The writer brackets every change with the sequence count wseq (odd while
 *    it mutates); a walk is *validated* when wseq was even and unchanged
 *    across it (itn__tree_read_begin / itn__tree_read_valid).  An unvalidated
 *    walk may have missed nodes or returned a node that has since moved; it
 *    never crashes and never loops (a step guard ends it).
 *
 * Writer rules that make the lockless walk safe (rcu-design.md §5.3):
 *   1. every store a reader can observe is a release store, after the odd
 *      wseq (so a reader that sees it fails validation): child pointers,
 *      subtree_last, and a node's fields, which are initialised before
 *      the store that links it (itree.c, "Writer sections");
 *   2. rotations detach before they re-attach, so a descending reader never
 *      meets a cycle;
 *   3. memory of a removed node is reused or freed only after an RCU grace
 *      period (the callers' business: the tree never frees).
 *
 * The writers' lock is the caller's: every function here except the _rcu
 * walk and the read_begin/valid pair requires it.
 */
#ifndef ITN_ITREE_H
#define ITN_ITREE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * struct itn_tnode - a tree node, embedded in the caller's object.
 * @left, @right: children; release-stored by writers, acquire-loaded by
 *	lockless readers.
 * @parent_color: parent pointer with the colour in bit 0 (1 = black); read
 *	and written by writers (and frozen walks) only.  A node that is not in
 *	any tree has parent_color == (uintptr_t)node.
 * @start, @last: the interval; written only while the node is not linked,
 *	but atomic because a lockless reader may still be looking at a node
 *	that a writer unlinked and is re-inserting.
 * @subtree_last: maximum of last over the subtree rooted here.
 */
struct itn_tnode {
	_Atomic(struct itn_tnode *) left;
	_Atomic(struct itn_tnode *) right;
	uintptr_t parent_color;
	_Atomic uint64_t start;
	_Atomic uint64_t last;
	_Atomic uint64_t subtree_last;
};

/**
 * struct itn_tree - the root.
 * @root: the root node; release-stored, acquire-loaded.
 * @leftmost: the node with the lowest start (writers and frozen walks).
 * @wseq: sequence count, odd while a writer changes the tree.
 */
struct itn_tree {
	_Atomic(struct itn_tnode *) root;
	struct itn_tnode *leftmost;
	_Atomic uint64_t wseq;
};

/**
 * struct itn_tkey - a position in the (start, order) total order.
 * @start: start of the interval.
 * @order: the node's order word (see itn__tree_search_rcu).
 */
struct itn_tkey {
	uint64_t start;
	uint64_t order;
};

/* Walk guard: a valid red-black tree of 2^64 nodes is at most 128 deep. */
#define ITN_TREE_MAX_DEPTH (2 * 64 + 8)

/* Returned by itn__tree_search_rcu() when its step or depth guard fired. */
#define ITN_TREE_LOST ((struct itn_tnode *)(uintptr_t)1)

void itn__tree_init(struct itn_tree *t);
void itn__tnode_init(struct itn_tnode *n);

/* True if @n is currently linked in a tree (writer side). */
static inline bool itn__tnode_linked(const struct itn_tnode *n)
{
	return n->parent_color != (uintptr_t)n;
}

static inline bool itn__tree_empty(const struct itn_tree *t)
{
	return atomic_load_explicit(&t->root, memory_order_relaxed) == NULL;
}

static inline uint64_t itn__tnode_start(const struct itn_tnode *n)
{
	return atomic_load_explicit(&n->start, memory_order_relaxed);
}

static inline uint64_t itn__tnode_last(const struct itn_tnode *n)
{
	return atomic_load_explicit(&n->last, memory_order_relaxed);
}

/*
 * itn__tree_insert() - link @n as [start, last], after every node with the
 * same start.  Returns 0, or -EINVAL if start > last or @n is already linked
 * (nothing is changed then).
 */
int itn__tree_insert(struct itn_tree *t, struct itn_tnode *n, uint64_t start,
		     uint64_t last);

/*
 * itn__tree_remove() - unlink @n.  Returns 0, or -EINVAL if @n is not linked.
 * The node may be re-inserted at once; readers that still hold it see stale
 * but harmless values (their walk fails validation).
 */
int itn__tree_remove(struct itn_tree *t, struct itn_tnode *n);

/*
 * itn__tree_move() - re-link the linked node @n as [start, last], after
 * every node with the same start, in one writer section: a lockless
 * reader never validates a walk of a tree without @n.  If @order is not
 * NULL, the node's order word becomes @order_val inside that section.
 * Returns 0, or -EINVAL if start > last or @n is not linked (nothing
 * changed).
 */
int itn__tree_move(struct itn_tree *t, struct itn_tnode *n, uint64_t start,
		   uint64_t last, _Atomic uint64_t *order, uint64_t order_val);

/*
 * itn__tree_iter_first() - the first node overlapping [start, last] in
 * (start, insertion) order, or NULL.  Writer side or frozen tree only.
 * A query with start > last is rejected: NULL, errno = EINVAL.
 */
struct itn_tnode *itn__tree_iter_first(const struct itn_tree *t,
				       uint64_t start, uint64_t last);

/*
 * itn__tree_iter_next() - the next node after @n overlapping [start, last].
 * @n is the result of itn__tree_iter_first() or _next() for the same
 * [start, last], so start <= last (not checked again here).
 */
struct itn_tnode *itn__tree_iter_next(const struct itn_tnode *n,
				      uint64_t start, uint64_t last);

/*
 * Lockless reads.  s = itn__tree_read_begin(t); walks...;
 * itn__tree_read_valid(t, s) is true iff no writer ran since read_begin and
 * none was running then, i.e. every walk in between saw one consistent tree.
 */
static inline uint64_t itn__tree_read_begin(const struct itn_tree *t)
{
	/* Pairs with the release store that ends a writer section. */
	return atomic_load_explicit(&t->wseq, memory_order_acquire);
}

static inline bool itn__tree_read_valid(const struct itn_tree *t, uint64_t s)
{
	/*
	 * The walk's loads were acquire loads, so this load cannot be
	 * satisfied before them; a writer whose stores they saw has made
	 * wseq odd first (its child stores are releases after that).
	 */
	return !(s & 1) &&
	       atomic_load_explicit(&t->wseq, memory_order_acquire) == s;
}

/*
 * itn__tree_search_rcu() - lockless: the first node overlapping
 * [start, last] whose (start, order) is greater than *@after (all nodes if
 * @after is NULL).  @order_off is the byte offset, from the node, of an
 * _Atomic uint64_t order word that increases with insertion order among
 * equal starts (the caller's); it is read only when @after is not NULL.
 * Returns the node, NULL, or ITN_TREE_LOST if the walk was cut short by its
 * guards (only possible when a writer ran concurrently).  The result means
 * something only if the caller then validates the read section.
 * A query with start > last is rejected: NULL, errno = EINVAL.
 */
struct itn_tnode *itn__tree_search_rcu(const struct itn_tree *t,
				       uint64_t start, uint64_t last,
				       const struct itn_tkey *after,
				       size_t order_off);

/*
 * itn__tree_first_rcu() - convenience: one validated search.  Sets *@valid
 * to whether the walk was validated; the result is meaningful only then.
 * A query with start > last is rejected: NULL, errno = EINVAL.
 */
struct itn_tnode *itn__tree_first_rcu(const struct itn_tree *t,
				      uint64_t start, uint64_t last,
				      bool *valid);

/*
 * itn__tree_check() - debug checker, writer side.  Verifies the binary
 * search order, the red-black rules (red nodes have black children, equal
 * black height, black root), parent pointers, subtree_last of every node,
 * the cached leftmost node, that no writer section is open, and (when
 * @order_off is not (size_t)-1) that order increases among equal starts.
 * Returns the number of nodes, or -1 with a description in @why (which may
 * be NULL).
 */
long itn__tree_check(const struct itn_tree *t, size_t order_off,
		     const char **why);

#endif /* ITN_ITREE_H */
