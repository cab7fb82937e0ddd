// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itree.c - the RCU-readable augmented red-black interval tree.
 *
 * Written from the textbook algorithms (Cormen et al., "Introduction to
 * Algorithms", ch. 13 and §14.3 on interval trees); no kernel code is
 * copied.  See itree.h for the reader/writer contract.
 *
 * Conventions in this file:
 *  - ld_*() are the loads of writers and frozen walks: plain loads, see
 *    below;
 *  - pub() is a release store of a child pointer or a subtree maximum: it
 *    pairs with the acquire loads in itn__tree_search_rcu();
 *  - the red-black "fixup" loops are the classical ones; every rotation
 *    keeps subtree_last exact, so the tree is fully augmented between any
 *    two steps of a fixup.
 */
#include "itree.h"

#include <errno.h>

#define RB_RED ((uintptr_t)0)
#define RB_BLACK ((uintptr_t)1)

#define ITN_TREE_MAX_STEPS (4 * ITN_TREE_MAX_DEPTH)

typedef struct itn_tnode node_t;

/*
 * For the bodies shared by insert/remove and move, and the lockless
 * descent: gcc stops inlining them once they have two callers, and the
 * call then costs the hot path its prologue and epilogue.
 */
#define ITREE_INLINE static inline __attribute__((always_inline))

/*
 * Loads of writers and frozen walks.  Every function of this file except
 * the lockless walk (the _rcu functions and their rd_*() loads) runs under
 * the writers' lock or on a tree that does not change (itree.h), so no
 * other thread stores to the tree while these loads run: they cannot race
 * (lockless readers only load), and they need not be atomic.  They are
 * plain loads of the atomic objects because gcc treats every atomic load,
 * even a relaxed one, like a volatile access: it never folds one into a
 * compare or merges two, which costs a walk about a fifth more
 * instructions.  Stores stay atomic (pub_*() and the relaxed initialising
 * stores), since lockless readers load concurrently.  The casts rely on
 * the lock-free _Atomic types having the representation of their plain
 * types, as they do with gcc and clang (checked below).
 */
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t) &&
		       _Alignof(_Atomic uint64_t) == _Alignof(uint64_t),
	       "_Atomic uint64_t must look like uint64_t");
_Static_assert(sizeof(_Atomic(node_t *)) == sizeof(node_t *) &&
		       _Alignof(_Atomic(node_t *)) == _Alignof(node_t *),
	       "_Atomic pointers must look like pointers");

static inline node_t *ld_ptr(_Atomic(node_t *) const *p)
{
	return *(node_t *const *)p;
}

static inline node_t *ld_left(const node_t *n)
{
	return ld_ptr(&n->left);
}

static inline node_t *ld_right(const node_t *n)
{
	return ld_ptr(&n->right);
}

static inline node_t *ld_root(const struct itn_tree *t)
{
	return ld_ptr(&t->root);
}

static inline uint64_t ld_u64(const _Atomic uint64_t *p)
{
	return *(const uint64_t *)p;
}

static inline uint64_t ld_max(const node_t *n)
{
	return ld_u64(&n->subtree_last);
}

static inline uint64_t ld_start(const node_t *n)
{
	return ld_u64(&n->start);
}

static inline uint64_t ld_last(const node_t *n)
{
	return ld_u64(&n->last);
}

/* Release stores: pair with the acquire loads of lockless readers. */
static inline void pub_left(node_t *n, node_t *c)
{
	atomic_store_explicit(&n->left, c, memory_order_release);
}

static inline void pub_right(node_t *n, node_t *c)
{
	atomic_store_explicit(&n->right, c, memory_order_release);
}

static inline void pub_max(node_t *n, uint64_t v)
{
	atomic_store_explicit(&n->subtree_last, v, memory_order_release);
}

static inline node_t *parent_of(const node_t *n)
{
	return (node_t *)(n->parent_color & ~RB_BLACK);
}

static inline bool is_black(const node_t *n)
{
	return !n || (n->parent_color & RB_BLACK);
}

static inline bool is_red(const node_t *n)
{
	return !is_black(n);
}

static inline void set_black(node_t *n)
{
	n->parent_color |= RB_BLACK;
}

static inline void set_red(node_t *n)
{
	n->parent_color &= ~RB_BLACK;
}

static inline void set_parent(node_t *n, node_t *p)
{
	n->parent_color = (uintptr_t)p | (n->parent_color & RB_BLACK);
}

/*
 * Writer sections.  A lockless reader validates its walk by reading wseq
 * before and after it (itn__tree_read_begin/_valid); the walk's loads are
 * acquire loads.  For that to work, a reader whose walk saw any store of a
 * section must see, in its closing read, a wseq at least as new as the odd
 * value that opened the section.  Every store to the tree that a reader
 * can observe is therefore a release store, sequenced after the opening
 * store of wseq: the acquire load that reads it synchronizes with it, so
 * the opening store happens before the reader's closing read of wseq,
 * which then cannot return the even value the walk started with.  This
 * covers the child links and maxima (pub_*(), change_child()) and also
 * the stores that initialise a node before it is linked (insert_body(),
 * itn__tnode_init()): the node may be one that a reader reached before it
 * was removed, and with relaxed stores a weakly ordered machine (Arm,
 * POWER) could make its new start/last/children visible before the odd
 * wseq, and the reader would validate a walk that mixed the two intervals.
 * The opening store itself may be relaxed, since those release stores
 * order it.  The closing release store pairs with itn__tree_read_begin().
 * On x86 a release store is a plain mov: this costs no instruction.
 */
static inline void write_begin(struct itn_tree *t)
{
	uint64_t w = ld_u64(&t->wseq);

	atomic_store_explicit(&t->wseq, w + 1, memory_order_relaxed);
}

static inline void write_end(struct itn_tree *t)
{
	uint64_t w = ld_u64(&t->wseq);

	atomic_store_explicit(&t->wseq, w + 1, memory_order_release);
}

static inline uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a > b ? a : b;

	return m > c ? m : c;
}

/* subtree_last of a possibly empty subtree. */
static inline uint64_t max_of(const node_t *n)
{
	return n ? ld_max(n) : 0;
}

/* subtree_last of @n computed from its own last and its children. */
static inline uint64_t compute_max(const node_t *n)
{
	return max3(ld_last(n), max_of(ld_left(n)), max_of(ld_right(n)));
}

/* Replace @old by @new as the child of @parent (or the root). */
static inline void change_child(struct itn_tree *t, node_t *parent,
				node_t *old, node_t *new)
{
	if (!parent)
		atomic_store_explicit(&t->root, new, memory_order_release);
	else if (ld_left(parent) == old)
		pub_left(parent, new);
	else
		pub_right(parent, new);
}

/*
 * Rotations.  rotate_left(x): x's right child y takes x's place, x becomes
 * y's left child and y's old left subtree b becomes x's right subtree.
 * Store order: x->right = b detaches y from x before y->left = x attaches x
 * below y, and only then does the parent link switch to y.  At every step
 * each node is reachable from the root by at most one path, so a reader
 * descending concurrently can miss nodes but never meets a cycle.
 * Augmentation: y's subtree now holds exactly x's old subtree, so y takes
 * x's maximum (raised before y becomes reachable from above); x is
 * recomputed from its new children.
 * Colours: every caller knows the colours x and y end with (@xc, @yc), so
 * their parent words are written whole rather than updated twice.
 */
static inline void rotate_left(struct itn_tree *t, node_t *x, uintptr_t xc,
			       uintptr_t yc)
{
	node_t *y = ld_right(x), *b = ld_left(y), *p = parent_of(x);

	pub_right(x, b);
	if (b)
		set_parent(b, x);
	pub_max(y, ld_max(x));
	pub_left(y, x);
	pub_max(x, max3(ld_last(x), max_of(ld_left(x)), max_of(b)));
	y->parent_color = (uintptr_t)p | yc;
	x->parent_color = (uintptr_t)y | xc;
	change_child(t, p, x, y);
}

static inline void rotate_right(struct itn_tree *t, node_t *x, uintptr_t xc,
				uintptr_t yc)
{
	node_t *y = ld_left(x), *b = ld_right(y), *p = parent_of(x);

	pub_left(x, b);
	if (b)
		set_parent(b, x);
	pub_max(y, ld_max(x));
	pub_right(y, x);
	pub_max(x, max3(ld_last(x), max_of(b), max_of(ld_right(x))));
	y->parent_color = (uintptr_t)p | yc;
	x->parent_color = (uintptr_t)y | xc;
	change_child(t, p, x, y);
}

void itn__tree_init(struct itn_tree *t)
{
	atomic_init(&t->root, NULL);
	t->leftmost = NULL;
	atomic_init(&t->wseq, 0);
}

/*
 * Atomic release stores rather than atomic_init(): if @n was in a tree, a
 * lockless reader may still be looking at it.  Its walk started before
 * the section that removed @n ended, so a reader that sees these values
 * also sees that wseq moved (write_begin()) and fails validation.
 */
void itn__tnode_init(struct itn_tnode *n)
{
	atomic_store_explicit(&n->left, NULL, memory_order_release);
	atomic_store_explicit(&n->right, NULL, memory_order_release);
	n->parent_color = (uintptr_t)n;
	atomic_store_explicit(&n->start, 0, memory_order_release);
	atomic_store_explicit(&n->last, 0, memory_order_release);
	atomic_store_explicit(&n->subtree_last, 0, memory_order_release);
}

/*
 * Restore the red-black rules after linking the red node @n (CLRS 13.3).
 * Red uncle: recolour and move the violation up to the grandparent.
 * Black uncle: at most two rotations end it; the node that takes g's place
 * is black, so the loop stops there.
 */
ITREE_INLINE void insert_fixup(struct itn_tree *t, node_t *n)
{
	node_t *p, *g, *u;

	while ((p = parent_of(n)) && is_red(p)) {
		g = parent_of(p); /* exists: a red node is never the root */
		if (p == ld_left(g)) {
			u = ld_right(g);
			if (is_red(u)) {
				set_black(p);
				set_black(u);
				set_red(g);
				n = g;
				continue;
			}
			if (n == ld_right(p)) {
				rotate_left(t, p, RB_RED, RB_RED);
				p = n;
			}
			rotate_right(t, g, RB_RED, RB_BLACK);
		} else {
			u = ld_left(g);
			if (is_red(u)) {
				set_black(p);
				set_black(u);
				set_red(g);
				n = g;
				continue;
			}
			if (n == ld_left(p)) {
				rotate_right(t, p, RB_RED, RB_RED);
				p = n;
			}
			rotate_left(t, g, RB_RED, RB_BLACK);
		}
		return;
	}
	if (!p) /* n is the root */
		set_black(n);
}

/* Link @n as [start, last] (writer section open). */
ITREE_INLINE void insert_body(struct itn_tree *t, node_t *n, uint64_t start,
			      uint64_t last)
{
	_Atomic(node_t *) *link = &t->root;
	node_t *parent = NULL, *p;

	/*
	 * Initialise before the linking release store publishes the node.
	 * Release stores, not relaxed ones: a reader may still hold @n from
	 * before it was removed (a move, or a remove and an insert), and
	 * must not see the new values without the odd wseq (write_begin()).
	 */
	atomic_store_explicit(&n->left, NULL, memory_order_release);
	atomic_store_explicit(&n->right, NULL, memory_order_release);
	atomic_store_explicit(&n->start, start, memory_order_release);
	atomic_store_explicit(&n->last, last, memory_order_release);
	atomic_store_explicit(&n->subtree_last, last, memory_order_release);

	/* Raise the maxima on the way down: they only ever over-approximate
	 * until the node is linked, which is harmless to readers. */
	while ((p = ld_ptr(link))) {
		parent = p;
		if (ld_max(p) < last)
			pub_max(p, last);
		if (start < ld_start(p))
			link = &p->left;
		else
			link = &p->right;
	}
	n->parent_color = (uintptr_t)parent; /* red */
	atomic_store_explicit(link, n, memory_order_release);
	/* Equal starts go right, so n is leftmost iff it starts first. */
	if (!t->leftmost || start < ld_start(t->leftmost))
		t->leftmost = n;
	insert_fixup(t, n);
}

int itn__tree_insert(struct itn_tree *t, struct itn_tnode *n, uint64_t start,
		     uint64_t last)
{
	if (start > last || itn__tnode_linked(n))
		return -EINVAL;
	write_begin(t);
	insert_body(t, n, start, last);
	write_end(t);
	return 0;
}

/*
 * A node whose last is @gone has left the subtrees of @n and its ancestors:
 * recompute their maxima from @n up to (not including) @stop, while they
 * change.  Each of them is >= @gone; one that is greater is still held by
 * a node of its subtree, and so is every maximum above it, so the walk
 * stops there without recomputing anything (the common case).
 */
static inline void propagate(node_t *n, const node_t *stop, uint64_t gone)
{
	while (n != stop && ld_max(n) == gone) {
		uint64_t m = compute_max(n);

		if (m == gone)
			break;
		pub_max(n, m);
		n = parent_of(n);
	}
}

/*
 * Restore the red-black rules after a black leaf was removed (CLRS 13.4):
 * the subtree at @x (NULL at first), child of @p, is one black short.  Its
 * sibling w exists, since w's side has a black height of at least one.
 */
ITREE_INLINE void remove_fixup(struct itn_tree *t, node_t *x, node_t *p)
{
	node_t *w;

	do {
		if (x == ld_left(p)) {
			w = ld_right(p);
			if (is_red(w)) {
				rotate_left(t, p, RB_RED, RB_BLACK);
				w = ld_right(p);
			}
			if (is_black(ld_left(w)) && is_black(ld_right(w))) {
				set_red(w);
				x = p;
				p = parent_of(x);
				continue;
			}
			if (is_black(ld_right(w))) {
				rotate_right(t, w, RB_RED, RB_BLACK);
				w = ld_right(p);
			}
			set_black(ld_right(w));
			rotate_left(t, p, RB_BLACK, p->parent_color & RB_BLACK);
		} else {
			w = ld_left(p);
			if (is_red(w)) {
				rotate_right(t, p, RB_RED, RB_BLACK);
				w = ld_left(p);
			}
			if (is_black(ld_left(w)) && is_black(ld_right(w))) {
				set_red(w);
				x = p;
				p = parent_of(x);
				continue;
			}
			if (is_black(ld_left(w))) {
				rotate_left(t, w, RB_RED, RB_BLACK);
				w = ld_left(p);
			}
			set_black(ld_left(w));
			rotate_right(t, p, RB_BLACK, p->parent_color & RB_BLACK);
		}
		return;
	} while (p && is_black(x));
	set_black(x);
}

static inline node_t *subtree_min(node_t *n)
{
	node_t *l;

	while ((l = ld_left(n)))
		n = l;
	return n;
}

/* Unlink @z (writer section open). */
ITREE_INLINE void remove_body(struct itn_tree *t, node_t *z)
{
	node_t *zl, *zr, *zp, *x, *xp, *y, *unbalanced;

	zl = ld_left(z);
	zr = ld_right(z);
	zp = parent_of(z);
	if (t->leftmost == z) /* then z has no left child */
		t->leftmost = zr ? subtree_min(zr) : zp;

	/*
	 * A node with a single child is black and its child is a red leaf
	 * (equal black heights), so moving the child up and painting it black
	 * keeps every rule: only unlinking a black leaf leaves a subtree one
	 * black short (@unbalanced is its parent) and needs remove_fixup().
	 */
	if (!zl || !zr) {
		/* At most one child: splice it into z's place. */
		x = zl ? zl : zr;
		if (x) {
			x->parent_color = z->parent_color; /* zp, black */
			unbalanced = NULL;
		} else {
			unbalanced = is_black(z) ? zp : NULL;
		}
		change_child(t, zp, z, x);
		propagate(zp, NULL, ld_last(z));
	} else {
		/*
		 * Two children: y, the leftmost node of z's right subtree,
		 * takes z's place (and colour).  y is fully set up (both
		 * children) before the parent link publishes it, and it is
		 * detached from its old position before that.
		 */
		y = subtree_min(zr);
		x = ld_right(y);
		if (y == zr) {
			xp = y;
		} else {
			xp = parent_of(y);
			pub_left(xp, x);
			pub_right(y, zr);
			set_parent(zr, y);
		}
		if (x) {
			x->parent_color = (uintptr_t)xp | RB_BLACK;
			unbalanced = NULL;
		} else {
			unbalanced = is_black(y) ? xp : NULL;
		}
		pub_max(y, ld_max(z));
		pub_left(y, zl);
		set_parent(zl, y);
		y->parent_color = z->parent_color;
		change_child(t, zp, z, y);
		/* Below y the maxima lose y's last; y's copy of z's maximum
		 * and those above lose z's. */
		propagate(xp, y, ld_last(y));
		propagate(y, NULL, ld_last(z));
	}
	if (unbalanced)
		remove_fixup(t, NULL, unbalanced);
	z->parent_color = (uintptr_t)z;
}

int itn__tree_remove(struct itn_tree *t, struct itn_tnode *z)
{
	if (!itn__tnode_linked(z))
		return -EINVAL;
	write_begin(t);
	remove_body(t, z);
	write_end(t);
	return 0;
}

int itn__tree_move(struct itn_tree *t, struct itn_tnode *n, uint64_t start,
		   uint64_t last, _Atomic uint64_t *order, uint64_t order_val)
{
	if (start > last || !itn__tnode_linked(n))
		return -EINVAL;
	/* One writer section: no reader validates a tree without @n. */
	write_begin(t);
	remove_body(t, n);
	if (order)
		atomic_store_explicit(order, order_val, memory_order_release);
	insert_body(t, n, start, last);
	write_end(t);
	return 0;
}

/*
 * One step of the kernel's descent, at node @cur, in the subtree of which
 * lies the leftmost node x with last >= @start (the caller knows some node
 * of it reaches @start).  If @cur's left subtree reaches @start, x is in
 * it.  Otherwise, if @cur reaches @start, x is @cur; it overlaps when it
 * starts by @last, and if it does not, no node after it does either, so
 * the search ends.  Otherwise x is in @cur's right subtree.  Cond1
 * (start(cur) <= last) is tested only at x: a node passed on the right
 * has last(cur) < start <= last, so it starts before @last anyway.
 * @ld is the family of loads (ld_ or rd_); @start and @last are the
 * caller's.  The step leaves the child in @next, a variable other than
 * @cur: the loops below alternate two variables, so a step is a load and
 * two tests, without the register move a single variable would need.
 */
#define DESCEND_STEP(ld, cur, next)                                         \
	do {                                                                \
		next = ld##left(cur);                                       \
		if (!next || start > ld##max(next)) {                       \
			if (start <= ld##last(cur))                         \
				return ld##start(cur) <= last ? cur : NULL; \
			next = ld##right(cur);                              \
			if (!next || start > ld##max(next))                 \
				return NULL;                                \
		}                                                           \
	} while (0)

/*
 * Writer-side search (consistent tree): the leftmost node of the subtree at
 * @n overlapping [start, last], given that some node of that subtree has
 * last >= start.
 */
static inline node_t *subtree_search(node_t *n, uint64_t start, uint64_t last)
{
	node_t *m;

	for (;;) {
		DESCEND_STEP(ld_, n, m);
		DESCEND_STEP(ld_, m, n);
	}
}

struct itn_tnode *itn__tree_iter_first(const struct itn_tree *t,
				       uint64_t start, uint64_t last)
{
	node_t *root = ld_root(t);

	if (start > last) {
		errno = EINVAL;
		return NULL;
	}
	/* O(1) rejection of queries entirely right or left of the tree. */
	if (!root || ld_max(root) < start ||
	    ld_start(t->leftmost) > last)
		return NULL;
	return subtree_search(root, start, last);
}

struct itn_tnode *itn__tree_iter_next(const struct itn_tnode *cn,
				      uint64_t start, uint64_t last)
{
	node_t *n = (node_t *)cn, *r = ld_right(n), *prev;

	for (;;) {
		/* Everything left of and including n has been visited. */
		if (r && start <= ld_max(r))
			return subtree_search(r, start, last);
		/* Climb until we arrive from a left child. */
		do {
			prev = n;
			n = parent_of(n);
			if (!n)
				return NULL;
			r = ld_right(n);
		} while (r == prev);
		/* As in DESCEND_STEP(): n is the first node after the
		 * visited ones, and decides only if it reaches @start. */
		if (start <= ld_last(n))
			return ld_start(n) <= last ? n : NULL;
	}
}

/* Acquire loads for lockless readers: pair with the writers' pub_*(). */
static inline node_t *rd_left(const node_t *n)
{
	return atomic_load_explicit(&n->left, memory_order_acquire);
}

static inline node_t *rd_right(const node_t *n)
{
	return atomic_load_explicit(&n->right, memory_order_acquire);
}

static inline uint64_t rd_max(const node_t *n)
{
	return atomic_load_explicit(&n->subtree_last, memory_order_acquire);
}

static inline uint64_t rd_order(const node_t *n, size_t off)
{
	const _Atomic uint64_t *o =
		(const _Atomic uint64_t *)(const void *)((const char *)n + off);

	return atomic_load_explicit(o, memory_order_acquire);
}

/* (start, order) of @n is <= *@k */
static inline bool key_le(const node_t *n, const struct itn_tkey *k,
			  size_t off)
{
	uint64_t s = atomic_load_explicit(&n->start, memory_order_acquire);

	return s < k->start || (s == k->start && rd_order(n, off) <= k->order);
}

static inline uint64_t rd_start(const node_t *n)
{
	return atomic_load_explicit(&n->start, memory_order_acquire);
}

static inline uint64_t rd_last(const node_t *n)
{
	return atomic_load_explicit(&n->last, memory_order_acquire);
}

/*
 * No lower key: the kernel's descent, lockless, with the acquire loads.
 * The guard is tested once every four steps: a walk of more than
 * ITN_TREE_MAX_DEPTH steps, longer than any walk of a valid tree, ends
 * with ITN_TREE_LOST.
 */
ITREE_INLINE node_t *
search_first_rcu(const struct itn_tree *t, uint64_t start, uint64_t last)
{
	node_t *n = atomic_load_explicit(&t->root, memory_order_acquire);
	unsigned int budget = ITN_TREE_MAX_DEPTH / 4;
	node_t *m;

	_Static_assert(ITN_TREE_MAX_DEPTH / 4 * 4 > 2 * 64,
		       "the guard must let a walk of a valid tree finish");

	if (!n || rd_max(n) < start)
		return NULL;
	for (;;) {
		if (!budget--)
			return ITN_TREE_LOST;
		DESCEND_STEP(rd_, n, m);
		DESCEND_STEP(rd_, m, n);
		DESCEND_STEP(rd_, n, m);
		DESCEND_STEP(rd_, m, n);
	}
}

/*
 * With a lower key, the leftmost node reaching @start may be at or before
 * @after, so the walk is in order, with pruning: a subtree whose maximum is
 * below @start holds no overlap; a node (and its left subtree) at or before
 * @after is skipped; the first node starting beyond @last ends the walk.  A
 * node waits on the stack while its left subtree, if that may hold an
 * overlap, is searched.  Each step reads a node's fields with acquire
 * loads; the guards bound the walk if a writer reshapes the tree under it.
 * Out of line: its stack would otherwise be set up for every search.
 */
static __attribute__((noinline)) node_t *
search_after_rcu(const struct itn_tree *t, uint64_t start, uint64_t last,
		 const struct itn_tkey *after, size_t order_off)
{
	node_t *stack[ITN_TREE_MAX_DEPTH];
	unsigned int sp = 0, steps = 0;
	node_t *n = atomic_load_explicit(&t->root, memory_order_acquire);

	for (;;) {
		node_t *l;

		if (++steps > ITN_TREE_MAX_STEPS)
			return ITN_TREE_LOST;
		if (!n || rd_max(n) < start) {
			if (!sp)
				return NULL;
			n = stack[--sp]; /* its left subtree had nothing */
		} else if (key_le(n, after, order_off)) {
			n = rd_right(n);
			continue;
		} else if ((l = rd_left(n)) && start <= rd_max(l)) {
			if (sp == ITN_TREE_MAX_DEPTH)
				return ITN_TREE_LOST;
			stack[sp++] = n;
			n = l;
			continue;
		}
		/* Visit n: every node before it is done. */
		if (rd_start(n) > last)
			return NULL;
		if (rd_last(n) >= start)
			return n;
		n = rd_right(n);
	}
}

struct itn_tnode *itn__tree_search_rcu(const struct itn_tree *t,
				       uint64_t start, uint64_t last,
				       const struct itn_tkey *after,
				       size_t order_off)
{
	if (start > last) {
		errno = EINVAL;
		return NULL;
	}
	if (after)
		return search_after_rcu(t, start, last, after, order_off);
	return search_first_rcu(t, start, last);
}

struct itn_tnode *itn__tree_first_rcu(const struct itn_tree *t,
				      uint64_t start, uint64_t last,
				      bool *valid)
{
	uint64_t s = itn__tree_read_begin(t);
	node_t *n = itn__tree_search_rcu(t, start, last, NULL, 0);

	*valid = n != ITN_TREE_LOST && itn__tree_read_valid(t, s);
	return n == ITN_TREE_LOST ? NULL : n;
}

/* Checker: returns the black height of the subtree, or -1. */
static int check_subtree(const node_t *n, const node_t *parent,
			 size_t order_off, long *count,
			 const node_t **prev, const char **why)
{
	int lh, rh;
	const node_t *l, *r;

	if (!n)
		return 1;
	if (parent_of(n) != parent) {
		*why = "parent pointer does not match the parent";
		return -1;
	}
	if (is_red(n) && is_red(parent)) {
		*why = "red node with a red parent";
		return -1;
	}
	if (itn__tnode_start(n) > itn__tnode_last(n)) {
		*why = "node with start > last";
		return -1;
	}
	if (++*count > (1L << 40)) {
		*why = "cycle";
		return -1;
	}
	l = ld_left(n);
	r = ld_right(n);
	lh = check_subtree(l, n, order_off, count, prev, why);
	if (lh < 0)
		return -1;
	/* In-order visit of n: order by start, then by order word. */
	if (*prev) {
		uint64_t ps = itn__tnode_start(*prev), ns = itn__tnode_start(n);

		if (ps > ns) {
			*why = "in-order starts are not ascending";
			return -1;
		}
		if (ps == ns && order_off != (size_t)-1 &&
		    rd_order(*prev, order_off) >= rd_order(n, order_off)) {
			*why = "equal starts are not in insertion order";
			return -1;
		}
	}
	*prev = n;
	rh = check_subtree(r, n, order_off, count, prev, why);
	if (rh < 0)
		return -1;
	if (lh != rh) {
		*why = "black heights differ";
		return -1;
	}
	if (ld_max(n) != compute_max(n)) {
		*why = "subtree_last is not the subtree maximum of last";
		return -1;
	}
	return lh + (is_black(n) ? 1 : 0);
}

long itn__tree_check(const struct itn_tree *t, size_t order_off,
		     const char **why)
{
	const node_t *root = atomic_load_explicit(&t->root,
						  memory_order_relaxed);
	const node_t *prev = NULL, *lm;
	const char *dummy;
	long count = 0;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (atomic_load_explicit(&t->wseq, memory_order_relaxed) & 1) {
		*why = "a writer section is open";
		return -1;
	}
	if (!root) {
		if (t->leftmost) {
			*why = "empty tree with a leftmost node";
			return -1;
		}
		return 0;
	}
	if (is_red(root)) {
		*why = "red root";
		return -1;
	}
	if (check_subtree(root, NULL, order_off, &count, &prev, why) < 0)
		return -1;
	lm = root;
	while (ld_left(lm))
		lm = ld_left(lm);
	if (t->leftmost != lm) {
		*why = "cached leftmost is not the leftmost node";
		return -1;
	}
	return count;
}
