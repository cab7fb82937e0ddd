/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * itn-internal.h - the library's private data structures and helpers.
 *
 * Included by the library's sources and by tests that need internal entry
 * points (they link the itn-core archive).  Nothing here is installed.
 */
#ifndef ITN_INTERNAL_H
#define ITN_INTERNAL_H

#include <itn/itn.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flat.h"
#include "itree.h"
#include "rcu.h"

#if defined(__GNUC__)
#define ITN_EXPORT __attribute__((visibility("default")))
#define itn_likely(x) __builtin_expect(!!(x), 1)
#define itn_unlikely(x) __builtin_expect(!!(x), 0)
#define ITN_NOINLINE __attribute__((noinline))
#define ITN_COLD __attribute__((cold, noinline))
#define ITN_NORETURN __attribute__((noreturn))
#define ITN_FORMAT(a, b) __attribute__((format(printf, a, b)))
#else
#define ITN_EXPORT
#define itn_likely(x) (x)
#define itn_unlikely(x) (x)
#define ITN_NOINLINE
#define ITN_COLD
#define ITN_NORETURN
#define ITN_FORMAT(a, b)
#endif

#define itn_container_of(ptr, type, member)                             \
	((type *)(void *)((char *)(1 ? (ptr) : &((type *)0)->member) - \
			  offsetof(type, member)))

/*
 * Logical state of a subscription (itn__sub.state).  Magic values rather
 * than 0, 1, 2... so that insert can tell a zero-initialised subscription
 * from one that holds garbage.
 */
enum itn__sub_state {
	ITN_SUB_UNREG = 0,		/* zero-initialised, never inserted */
	ITN_SUB_INSERTING = 0x494e5354, /* insert in progress */
	ITN_SUB_LIVE = 0x4c495645,	/* inserted: logically present */
	ITN_SUB_REMOVING = 0x524d5647,	/* itn_sub_remove() waiting (no release) */
	ITN_SUB_REMOVED = 0x52454d44,	/* removed, no release: reusable */
	ITN_SUB_ZOMBIE = 0x5a4f4d42,	/* removed, release() still to come */
	/* The states of a removed subscription with release() once its
	 * counted references are gone (find.c, "Slot references"). */
	ITN_SUB_DYING = 0x44594e47,	   /* release_cb queued */
	ITN_SUB_RELEASE_WAIT = 0x52574149, /* slot refs seen: release_wait_cb queued */
	ITN_SUB_RELEASE_ARMED = 0x5241524d, /* slot refs remain: last put finishes */
	ITN_SUB_RELEASING = 0x524c5347,	   /* release() queued or running */
};

/*
 * itn__sub.refs: the registration's reference, apart from the count, and
 * a flag set by the first find that holds the subscription in a per-thread
 * slot (find.c, "Slot references"), once per insertion (insert clears it):
 * it tells release_cb a put may still be reading the subscription.  A
 * flag, not a reference: every test of "no reference left" masks it.
 */
#define ITN_REFS_REG ((uint32_t)1 << 31)
#define ITN_REFS_SLOTTED ((uint32_t)1 << 30)
#define ITN_REFS_COUNT (ITN_REFS_SLOTTED - 1)
#define ITN_REFS_HELD (ITN_REFS_REG | ITN_REFS_COUNT)

/* A tree change waiting for the end of the period (itn__sub.pending). */
enum itn__pending {
	ITN_PENDING_NONE = 0,
	ITN_PENDING_INSERT, /* not in phys yet */
	ITN_PENDING_UPDATE, /* in phys at its old range */
	ITN_PENDING_REMOVE, /* in phys, leaves it at the end */
};

/**
 * struct itn__sub - the real layout behind struct itn_sub.
 * @phys: node in the physical tree (the kernel's itree): what invalidations
 *	walk.  Frozen during a period; its range lags the logical one while an
 *	update is deferred.
 * @logi: node in the logical index (only subscriptions with release()):
 *	what itn_find() walks.  Its range is the logical range of every
 *	subscription, linked or not (itn_sub_start/last read it).
 * @order: position among equal starts in the logical index (a per-space
 *	counter taken at insert and update).
 * @ops: the callbacks.
 * @space: the space; set by insert, never cleared.
 * @gen: the order taken by the insert: tells this insertion of the memory
 *	from earlier ones (find.c's walk positions).
 * @deferred: link in the space's deferred list (space lock).
 * @rcu: release() is queued with it once @refs reached zero (the sub is
 *	then on no list, so it can share storage with @deferred).
 * @pending: enum itn__pending (space lock).
 * @seq: the sub seq (always odd): written under the space lock by insert
 *	and update, by itn_set_seq() under the caller's lock.
 * @state: enum itn__sub_state.
 * @refs: counted references (release() subscriptions only): ITN_REFS_REG
 *	held by the registration until the subscription has left the physical
 *	tree, plus one per itn_sub_get() and per itn_find() that did not get
 *	a per-thread slot (find.c, "Slot references"); and the flag
 *	ITN_REFS_SLOTTED.
 *
 * Layout.  Lockless walks (itn_find() on @logi, invalidations on @phys)
 * read the two nodes of every subscription they pass, on any thread.  The
 * words written on hot paths, @refs (counted references), @seq (every
 * invalidation that hits) and @state, which find reads next to @refs,
 * come last, at least 64 bytes after the last word of the nodes: an
 * aligned word lies within one 64-byte cache line, and two words 64 bytes
 * apart never share one, so wherever the caller puts the subscription
 * (8-byte aligned), a find or an invalidation on it never dirties the line
 * holding its own nodes, which every walk through them reads.  (What comes
 * after struct itn_sub in the caller's object is the caller's: 168 bytes
 * leave no room to keep the nodes of the next object in an array of bare
 * subscriptions 64 bytes away as well.)
 *
 * A find that takes its result from the flat index (flat.h) and the put
 * of a per-thread slot reference read only @order, @ops, @gen, @state and
 * @refs (for ITN_REFS_SLOTTED): they fill one 32-byte-aligned chunk, which
 * lies in one cache line for every subscription aligned to 32 bytes and
 * for three in four of those aligned to 16 (malloc's; the 47 bytes they
 * spanned before took two lines for three in four).  In a cache simulation
 * of P1 at 10^5 subscriptions (cachegrind, 8 MiB last level) that halves
 * find's last-level misses; measured, find+put is 4-10% faster there.
 * That is why the slotted flag is a bit of @refs: a byte of its own had no
 * room in the chunk.
 */
struct itn__sub {
	struct itn_tnode phys;
	struct itn_tnode logi;
	/* Written under the space lock only. */
	_Atomic(struct itn_space *) space;
	union {
		struct cds_list_head deferred;
		struct rcu_head rcu;
	};
	uint8_t pending;
	/* What a find and its put read: one 32-byte-aligned chunk. */
	_Atomic uint64_t order;
	const struct itn_sub_ops *ops;
	uint64_t gen;
	_Atomic uint32_t state;
	_Atomic uint32_t refs;
	/* Hot: written by invalidations (see above). */
	_Atomic uint64_t seq;
};

_Static_assert(sizeof(struct itn__sub) <= sizeof(struct itn_sub),
	       "struct itn_sub is too small for the library's layout");
_Static_assert(_Alignof(struct itn__sub) <= _Alignof(struct itn_sub),
	       "struct itn_sub is not aligned enough");
#if UINTPTR_MAX == UINT64_MAX
/* LP64: the hot words are at least 64 bytes after the nodes. */
#define ITN__NODES_LAST_WORD                                      \
	(offsetof(struct itn__sub, logi) + sizeof(struct itn_tnode) - \
	 sizeof(uint64_t))
_Static_assert(offsetof(struct itn__sub, logi) ==
		       offsetof(struct itn__sub, phys) +
			       sizeof(struct itn_tnode) &&
	       offsetof(struct itn__sub, phys) == 0,
	       "struct itn__sub: the two nodes come first, together");
_Static_assert(offsetof(struct itn__sub, seq) >= ITN__NODES_LAST_WORD + 64 &&
		       offsetof(struct itn__sub, state) >=
			       ITN__NODES_LAST_WORD + 64 &&
		       offsetof(struct itn__sub, refs) >=
			       ITN__NODES_LAST_WORD + 64,
	       "struct itn__sub: a hot word shares a cache line with a node");
_Static_assert(offsetof(struct itn__sub, state) / 8 ==
		       offsetof(struct itn__sub, refs) / 8,
	       "struct itn__sub: state and refs in one word (one line)");
_Static_assert(offsetof(struct itn__sub, order) % 32 == 0 &&
		       offsetof(struct itn__sub, ops) >
			       offsetof(struct itn__sub, order) &&
		       offsetof(struct itn__sub, gen) >
			       offsetof(struct itn__sub, order) &&
		       offsetof(struct itn__sub, state) >
			       offsetof(struct itn__sub, order) &&
		       offsetof(struct itn__sub, refs) + sizeof(uint32_t) <=
			       offsetof(struct itn__sub, order) + 32,
	       "struct itn__sub: what a find reads is not one aligned chunk");
_Static_assert(sizeof(struct itn__sub) == 168,
	       "struct itn__sub: LP64 layout is 168 bytes");
#endif

static inline struct itn__sub *itn__sub(struct itn_sub *sub)
{
	return (struct itn__sub *)(void *)sub;
}

static inline const struct itn__sub *itn__csub(const struct itn_sub *sub)
{
	return (const struct itn__sub *)(const void *)sub;
}

static inline struct itn_sub *itn__pub(struct itn__sub *sub)
{
	return (struct itn_sub *)(void *)sub;
}

/* Classic notifier states (itn__notifier.state). */
enum itn__notifier_state {
	ITN_NOTIFIER_UNREG = 0,		    /* zero-initialised */
	ITN_NOTIFIER_LIVE = 0x4e4c5645,	    /* on the space's list */
	ITN_NOTIFIER_RELEASED = 0x4e52454c, /* unlinked by space teardown */
	ITN_NOTIFIER_GOING = 0x4e474f4e,    /* being unregistered or freed */
	ITN_NOTIFIER_DONE = 0x4e444f4e,	    /* unregistered: reusable */
};

/**
 * struct itn__notifier - the real layout behind struct itn_notifier.
 * @next: next in the space's classic list (newest first; changed under
 *	the space lock, read under RCU).
 * @ops: callbacks.
 * @space: the space.
 * @rcu: free_notifier() is queued with it.
 * @users: itn_notifier_get() users (space lock); 0 if registered directly.
 * @state: enum itn__notifier_state.
 * @released: ops->release has been called (once).
 */
struct itn__notifier {
	_Atomic(struct itn__notifier *) next;
	const struct itn_notifier_ops *ops;
	_Atomic(struct itn_space *) space;
	struct rcu_head rcu;
	uint32_t users;
	_Atomic uint32_t state;
	atomic_bool released;
};

_Static_assert(sizeof(struct itn__notifier) <= sizeof(struct itn_notifier),
	       "struct itn_notifier is too small for the library's layout");

static inline struct itn__notifier *itn__notifier(struct itn_notifier *n)
{
	return (struct itn__notifier *)(void *)n;
}

/* Counters; relaxed atomics so that lockless paths may bump them too. */
struct itn__counters {
	_Atomic uint64_t invalidations;
	_Atomic uint64_t periods;
	_Atomic uint64_t callbacks;
	_Atomic uint64_t nonblock_failures;
	_Atomic uint64_t deferred_inserts;
	_Atomic uint64_t deferred_removes;
	_Atomic uint64_t read_waits;
	_Atomic uint64_t remove_waits;
	_Atomic uint64_t refused;
	_Atomic uint64_t deferred_updates;
};

#define itn__count(s, field) \
	atomic_fetch_add_explicit(&(s)->stats.field, 1, memory_order_relaxed)

/**
 * struct itn_space - one watched address space.
 * @lock: the space lock ("L"): serialises every change of @seq, the
 *	trees and the deferred list, and every change of @st that crosses
 *	Idle/Partial/Full.  Never held while a callback runs.
 * @cv: waiters for the end of a period (CLOCK_MONOTONIC), bound to @lock.
 * @seq: the global seq: even outside periods, odd during one.  Written
 *	under @lock with release stores; read lockless by itn_read_begin().
 * @st: the state word: ITN_ST_ODD mirrors the parity of @seq,
 *	ITN_ST_BUSY is held by a @lock holder while it changes @seq, the
 *	physical tree or the Idle/Partial/Full state, and the bits from
 *	ITN_ST_ONE up count the active invalidations.  Lock-free fast paths
 *	change only the count, with one CAS, and only while BUSY is clear
 *	(see invalidate.c).
 * @fast: lock-free invalidation fast paths enabled (tests turn them off
 *	to run the locked paths alone; an atomic, because a test may flip it
 *	while other threads read it without the lock).
 * @phys: the physical tree (@lock; frozen while @seq is odd).
 * @logi: the logical index (@lock for writers; RCU readers).
 * @deferred: pending tree changes in call order (@lock).
 * @next_order: source of itn__sub.order (@lock).
 * @subs: subscriptions logically present (@lock).
 * @objs: subscriptions that still reference the space: inserted and not
 *	yet removed (no release) or released (release).
 * @released: itn_space_release() was called (@lock).
 * @read_waiters: threads of read.c sleeping on @cv (@lock).  The last end
 *	of a period broadcasts @cv only if there are some, or if the deferred
 *	list is not empty: a remover sleeping on @cv (sub.c) always has its
 *	subscription on the deferred list of the period it waits for.
 * @notifiers: classic notifiers, newest first (@lock; RCU readers).
 * @nnotifiers: how many (a lockless hint for the invalidation paths).
 * @classic_ends: invalidations counted out whose classic ends still run.
 * @stats_pad: keeps @stats, written by every invalidation, off the cache
 *	lines of the words above, which every invalidation reads (the space
 *	is malloc'ed, so padding rather than _Alignas).
 * @stats: counters.
 */
struct itn_space {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	_Atomic uint64_t seq;
	_Atomic uint64_t st;
	atomic_bool fast;
	struct itn_tree phys;
	struct itn_tree logi;
	_Atomic(struct itn_flat *) flat; /* read with logi by every find */
	struct cds_list_head deferred;
	uint64_t next_order;
	uint64_t subs;
	_Atomic uint64_t nlogi; /* nodes in logi: written under the lock */
	atomic_bool flat_building;
	_Atomic uint64_t objs;
	bool released;
	uint64_t read_waiters;
	_Atomic(struct itn__notifier *) notifiers;
	_Atomic uint64_t nnotifiers;
	_Atomic uint64_t classic_ends;
	char stats_pad[64];
	struct itn__counters stats;
};

/*
 * Invalidate callbacks running on this thread, innermost first: a stack of
 * frames living on the callers' stacks.  Used to refuse calls that would
 * wait for the callback's own period to end.
 */
struct itn__cb_frame {
	const struct itn_space *space;
	struct itn__cb_frame *next;
};

extern _Thread_local struct itn__cb_frame *itn__cb_top
	__attribute__((tls_model("initial-exec")));
extern _Thread_local bool itn__in_release
	__attribute__((tls_model("initial-exec")));

/* Record on this thread's stack that callbacks of @s run now, and stop. */
static inline void itn__cb_enter(struct itn__cb_frame *f,
				 const struct itn_space *s)
{
	f->space = s;
	f->next = itn__cb_top;
	itn__cb_top = f;
}

static inline void itn__cb_exit(struct itn__cb_frame *f)
{
	itn__cb_top = f->next;
}

/* The RELEASE invalidation of itn_space_release(): the whole space. */
extern const struct itn_range itn__range_release;

static inline bool itn__in_callback(const struct itn_space *s)
{
	for (const struct itn__cb_frame *f = itn__cb_top; f; f = f->next)
		if (f->space == s)
			return true;
	return false;
}

/* Abort with "libitn: <message>" on stderr: for programming errors only. */
ITN_NORETURN ITN_COLD ITN_FORMAT(1, 2) void itn__die(const char *fmt, ...);

static inline void itn__lock(struct itn_space *s)
{
	pthread_mutex_lock(&s->lock);
}

static inline void itn__unlock(struct itn_space *s)
{
	pthread_mutex_unlock(&s->lock);
}

#define ITN_ST_ODD ((uint64_t)1)
#define ITN_ST_BUSY ((uint64_t)2)
#define ITN_ST_ONE ((uint64_t)4)

static inline uint64_t itn__st_active(uint64_t st)
{
	return st / ITN_ST_ONE;
}

/*
 * itn__busy_begin() - take BUSY (space lock held): no fast path changes
 * the state word until itn__busy_end().  Only lock holders set BUSY, so
 * this only races with fast-path CASes, which fail while it is set.
 * Returns the state word as of taking BUSY (without BUSY).  The acquire
 * pairs with the release CASes of fast paths.
 */
static inline uint64_t itn__busy_begin(struct itn_space *s)
{
	uint64_t st = atomic_load_explicit(&s->st, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(
		&s->st, &st, st | ITN_ST_BUSY, memory_order_acq_rel,
		memory_order_relaxed))
		;
	return st;
}

/*
 * itn__busy_end() - store the new state word @st (without BUSY).  The
 * release pairs with the acquire CASes of fast paths: one that sees the
 * new word sees the trees and the seq as this lock holder left them.
 */
static inline void itn__busy_end(struct itn_space *s, uint64_t st)
{
	atomic_store_explicit(&s->st, st & ~ITN_ST_BUSY, memory_order_release);
}

/* Active invalidations (any context; a snapshot). */
static inline uint64_t itn__active(const struct itn_space *s)
{
	return itn__st_active(
		atomic_load_explicit(&s->st, memory_order_relaxed));
}

static inline uint64_t itn__seq(const struct itn_space *s)
{
	return atomic_load_explicit(&s->seq, memory_order_relaxed);
}

/*
 * Publish a new global seq (space lock held).  Pairs with the acquire load
 * in itn_read_begin(): a reader that sees the new value also sees the tree
 * and deferred-list changes made before it.
 */
static inline void itn__set_global_seq(struct itn_space *s, uint64_t v)
{
	atomic_store_explicit(&s->seq, v, memory_order_release);
}

static inline void itn__sub_set_seq(struct itn__sub *sub, uint64_t v)
{
	atomic_store_explicit(&sub->seq, v, memory_order_release);
}

/* Tree changes with the debug checker (-Ddebug_checks=true). */
void itn__phys_insert(struct itn_space *s, struct itn__sub *sub);
void itn__phys_remove(struct itn_space *s, struct itn__sub *sub);
void itn__logi_insert(struct itn_space *s, struct itn__sub *sub);
void itn__logi_remove(struct itn_space *s, struct itn__sub *sub);

/* Apply the deferred list in call order (last end of a period, lock held). */
void itn__apply_deferred(struct itn_space *s);

/*
 * itn__end_period_locked() - the last invalidation of a period ends
 * (space lock and BUSY held, @st is the word without BUSY and with the
 * count already zero): apply the deferred list, make the seq even, wake
 * the waiters (if any: see itn_space.read_waiters).  Returns the new state
 * word.
 */
uint64_t itn__end_period_locked(struct itn_space *s, uint64_t st);

/*
 * Classic notifier dispatch (notifier.c), called by invalidate.c with the
 * callback frame pushed.  itn__classic_start() returns 0 or the first
 * error of a non-blockable start, after calling every invalidate_end.
 */
int itn__classic_start(struct itn_space *s, const struct itn_range *r);
void itn__classic_end(struct itn_space *s, const struct itn_range *r);
void itn__classic_release(struct itn_space *s);

/* The RELEASE invalidation of [0, UINT64_MAX], interval part only. */
void itn__release_intervals(struct itn_space *s);

/*
 * itn__release_deferred() - the RELEASE invalidation @r calls, with the
 * running period's @cur_seq, the subscriptions whose insert that period
 * deferred (they are not in the tree yet).  The caller is counted in the
 * period, so it cannot end meanwhile.  (sub.c)
 */
void itn__release_deferred(struct itn_space *s, const struct itn_range *r,
			   uint64_t cur_seq);

static inline bool itn__has_classic(const struct itn_space *s)
{
	return atomic_load_explicit(&s->nnotifiers, memory_order_acquire);
}

/* Drop the registration's reference of a release() subscription (any
 * context, space lock held or not). */
void itn__sub_put(struct itn__sub *sub);

/* Whether itn_sub_insert() must refuse @st with -EBUSY. */
static inline bool itn__sub_state_busy(uint32_t st)
{
	return st == ITN_SUB_INSERTING || st == ITN_SUB_LIVE ||
	       st == ITN_SUB_REMOVING || st == ITN_SUB_ZOMBIE ||
	       st == ITN_SUB_DYING || st == ITN_SUB_RELEASE_WAIT ||
	       st == ITN_SUB_RELEASE_ARMED || st == ITN_SUB_RELEASING;
}

/*
 * Test-only hook: start the global seq at @seq (even) in an idle, empty
 * space, to exercise wrap-around.  Not exported from libitn.so.
 * Returns 0, or -EBUSY if the space is not idle and empty, -EINVAL if @seq
 * is odd.
 */
int itn__space_set_seq(struct itn_space *s, uint64_t seq);

/*
 * Test-only hook: enable or disable the lock-free invalidation fast paths
 * of an idle space (differential tests run both).  Returns 0 or -EBUSY.
 */
int itn__space_set_fast(struct itn_space *s, bool fast);

#endif /* ITN_INTERNAL_H */
