// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * find.c - lookup with a lifetime: itn_find(), references, release().
 *
 * itn_find() walks the logical index under an RCU read-side section, with
 * no lock: the walk is validated by the index's sequence count, retried a
 * few times if a writer ran, and then done under the space lock so a
 * stalled writer cannot make a reader spin.  A live result gets a
 * reference in one of the thread's slots (below, "Slot references": no
 * shared write), else a counted one with get-unless-zero (its memory cannot
 * go away before the read section ends: release() is queued with
 * call_rcu), and the state is checked, so a subscription is never returned
 * once remove has been called.
 *
 * The logical index changes synchronously in insert/remove/update, so
 * find follows program order even while the physical tree is frozen.
 * While it does not change, itn_find() searches a flat copy of it instead
 * (flat.h), valid only at the tree sequence it was taken at.  The walk
 * with a position (itn_find_next()) always uses the tree.
 *
 * Lifetime of a subscription with release(): the registration holds one
 * reference until the subscription has left the physical tree; each find
 * and itn_sub_get() holds one more, counted or in a slot.  When the last
 * is gone, release() runs from call_rcu behind a grace period;
 * itn_synchronize() waits for the queue, chained callbacks included.
 */
#include "itn-internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Validated lockless walks tried before falling back to the lock. */
#define ITN_FIND_RETRIES 8

char itn__gp_token;

_Thread_local bool itn__in_release __attribute__((tls_model("initial-exec")));

/*
 * Where each result still referenced by this thread was when it was
 * returned: itn_find_next() continues from there even if the previous
 * result was updated (moved) since, so a walk neither skips nor repeats
 * others.
 *
 * A thread may hold several references to one subscription, found at
 * different places: a walk that meets a subscription which moved forward
 * returns it again at its new place (an update is a new place in the
 * insertion order).  So each reference gets its own entry, stamped with
 * when it was made: itn_find_next() continues from the newest entry of
 * @prev (the place the walk reached), itn_sub_put() drops the oldest (the
 * walk idiom puts the older of two references: next = find_next(cur);
 * put(cur)).  An entry is dropped when this thread puts the reference, so
 * the slots hold only references in use; with more references than slots
 * the oldest entry is overwritten.  @gen tells a reused address (a new
 * insert) from the subscription the entry was made for.
 *
 * @used has a bit per slot in use, so that recording takes a free slot
 * without a scan and put and find_next look only at the slots in use
 * (usually one or two; none for a reference taken by itn_sub_get() alone).
 */
#define ITN_KEY_CACHE 8
#define KEY_CACHE_ALL ((1u << ITN_KEY_CACHE) - 1)

struct key_pos {
	const struct itn__sub *sub;
	uint64_t gen;
	uint64_t stamp;
	struct itn_tkey key;
};

static _Thread_local struct key_cache {
	unsigned int used;
	uint64_t clock;
	struct key_pos pos[ITN_KEY_CACHE];
} key_cache __attribute__((tls_model("initial-exec")));

/* More references than slots: the slot of the oldest entry. */
static ITN_NOINLINE unsigned int key_cache_oldest(const struct key_cache *kc)
{
	unsigned int i, slot = 0;

	for (i = 1; i < ITN_KEY_CACHE; i++)
		if (kc->pos[i].stamp < kc->pos[slot].stamp)
			slot = i;
	return slot;
}

static inline void key_cache_record(const struct itn__sub *sub,
				    const struct itn_tkey *key)
{
	struct key_cache *kc = &key_cache;
	unsigned int free_slots = ~kc->used & KEY_CACHE_ALL;
	unsigned int slot = itn_likely(free_slots) ?
				    (unsigned int)__builtin_ctz(free_slots) :
				    key_cache_oldest(kc);
	struct key_pos *p = &kc->pos[slot];

	kc->used |= 1u << slot;
	p->sub = sub;
	p->gen = sub->gen;
	p->stamp = ++kc->clock;
	p->key = *key;
}

static inline void key_cache_forget(const struct itn__sub *sub)
{
	struct key_cache *kc = &key_cache;
	unsigned int m = kc->used, drop = ITN_KEY_CACHE;

	if (itn_likely(!(m & (m - 1)))) {
		/* One entry or none (find then put): an entry for @sub is
		 * dropped whatever its generation (see below). */
		if (m && kc->pos[__builtin_ctz(m)].sub == sub)
			kc->used = 0;
		return;
	}
	for (; m; m &= m - 1) {
		unsigned int i = (unsigned int)__builtin_ctz(m);

		if (kc->pos[i].sub != sub)
			continue;
		if (itn_unlikely(kc->pos[i].gen != sub->gen)) {
			/* Made for an earlier insertion of this memory
			 * (its reference was put by another thread). */
			kc->used &= ~(1u << i);
			continue;
		}
		if (drop == ITN_KEY_CACHE ||
		    kc->pos[i].stamp < kc->pos[drop].stamp)
			drop = i;
	}
	if (drop != ITN_KEY_CACHE)
		kc->used &= ~(1u << drop);
}

/* Where @sub was when this thread last got a reference to it. */
static bool key_cache_lookup(const struct itn__sub *sub, struct itn_tkey *key)
{
	const struct key_cache *kc = &key_cache;
	unsigned int m = kc->used, slot = ITN_KEY_CACHE;

	for (; m; m &= m - 1) {
		unsigned int i = (unsigned int)__builtin_ctz(m);

		if (kc->pos[i].sub == sub && kc->pos[i].gen == sub->gen &&
		    (slot == ITN_KEY_CACHE ||
		     kc->pos[i].stamp > kc->pos[slot].stamp))
			slot = i;
	}
	if (slot == ITN_KEY_CACHE)
		return false;
	*key = kc->pos[slot].key;
	return true;
}

#define LOGI_ORDER_OFF \
	(offsetof(struct itn__sub, order) - offsetof(struct itn__sub, logi))

static inline struct itn__sub *logi_sub(struct itn_tnode *n)
{
	return itn_container_of(n, struct itn__sub, logi);
}

/*
 * Slot references.
 *
 * A find whose result is live stores it in one of this thread's slots
 * instead of adding to @refs, and the put that finds it there clears the
 * slot: a same-thread find+put writes only this thread's lines, however
 * many threads find the same subscription.  References stay fungible: a
 * put of a subscription this thread has no slot for takes a counted
 * reference if there is one, else clears another thread's slot holding it
 * (under ref_lock, scanning every block).
 *
 * A reference is thus a unit of @refs (ITN_REFS_COUNT part, plus the
 * registration's ITN_REFS_REG) or a slot holding the subscription, and
 * release() must wait for both.  Slots are filled only by finds that saw
 * the subscription LIVE, inside their read section, so a scan made after
 * a grace period that began after remove stored ZOMBIE sees every slot
 * ever filled for it; later, slots are only cleared.  When @refs reaches
 * zero (remove dropped ITN_REFS_REG, the last counted reference went),
 * release_cb runs after a grace period (DYING) and scans: no slot, then
 * release() at once if no slot ever held it (no ITN_REFS_SLOTTED: the
 * first slot find of each insertion sets it; the usual case for churn),
 * else after one more grace period (a put that has just cleared the last
 * slot may still be in its read section, reading the state: it must be
 * done before the memory goes).  Else RELEASE_WAIT, and release_wait_cb
 * after one more grace period scans again: a put that cleared a slot but loaded the
 * state before RELEASE_WAIT was stored began its read section before that
 * grace period, so its clear is seen.  Still held: RELEASE_ARMED, and the
 * put that clears the last slot (it loads RELEASE_WAIT or RELEASE_ARMED in
 * its read section, then rechecks under ref_lock) queues release() with
 * call_rcu.  Exactly once: the state changes to RELEASING under ref_lock,
 * and release() always runs from release_final_cb, a grace period after
 * that change.
 *
 * Blocks are per thread, registered in ref_blocks (ref_lock).  A thread
 * that exits still holding slot references leaves its block there as an
 * orphan, so other threads can put them; the last foreign clear frees it.
 * A scan (under ref_lock) races only with owners clearing their own slots
 * and filling them; an owner bumps @clears before it clears, so a scan
 * that found nothing can tell a miss (a clear during the scan) from an
 * underflow.
 */
#define ITN_REF_SLOTS 8

struct ref_block {
	_Atomic(struct itn__sub *) slot[ITN_REF_SLOTS];
	_Atomic uint64_t clears;
	struct cds_list_head link; /* ref_lock */
	bool orphan;		   /* ref_lock */
};

/*
 * A block is allocated on whole cache lines: two threads' blocks never
 * share one, even when they come from one malloc arena (each find and put
 * writes its thread's block).  Not an alignment of the type: the list walk
 * makes a struct ref_block pointer of the list head, which is not aligned.
 */
#define REF_BLOCK_BYTES ((sizeof(struct ref_block) + 63) & ~(size_t)63)

static pthread_mutex_t ref_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(ref_blocks);
static pthread_key_t ref_key;
static pthread_once_t ref_once = PTHREAD_ONCE_INIT;
static bool ref_key_ok;
/* release_wait_cb callbacks queued and not finished (itn_synchronize()). */
static _Atomic uint64_t ref_chained;

static _Thread_local struct ref_block *ref_self
	__attribute__((tls_model("initial-exec")));

static bool block_empty(struct ref_block *b)
{
	for (unsigned int i = 0; i < ITN_REF_SLOTS; i++)
		if (atomic_load_explicit(&b->slot[i], memory_order_relaxed))
			return false;
	return true;
}

/* Thread exit: drop the block, unless it holds references others put. */
static void ref_block_exit(void *p)
{
	struct ref_block *b = p;

	pthread_mutex_lock(&ref_lock);
	if (ref_self == b)
		ref_self = NULL;
	if (block_empty(b)) {
		cds_list_del(&b->link);
		free(b);
	} else {
		b->orphan = true;
	}
	pthread_mutex_unlock(&ref_lock);
}

static void ref_key_init(void)
{
	ref_key_ok = pthread_key_create(&ref_key, ref_block_exit) == 0;
}

static ITN_NOINLINE struct ref_block *ref_block_new(void)
{
	struct ref_block *b;

	/* Failing leaves this find the counted path.  A thread's first find
	 * inside an invalidate callback or a release() takes that path too:
	 * libitn never allocates there (callbacks may run from memory hooks);
	 * its next find outside makes the block. */
	if (itn__cb_top || itn__in_release)
		return NULL;
	pthread_once(&ref_once, ref_key_init);
	if (!ref_key_ok)
		return NULL;
	b = aligned_alloc(64, REF_BLOCK_BYTES);
	if (!b)
		return NULL;
	memset(b, 0, REF_BLOCK_BYTES);
	if (pthread_setspecific(ref_key, b)) {
		free(b);
		return NULL;
	}
	pthread_mutex_lock(&ref_lock);
	cds_list_add(&b->link, &ref_blocks);
	pthread_mutex_unlock(&ref_lock);
	ref_self = b;
	return b;
}

/*
 * Take a slot reference to @sub, which the caller's read section found
 * LIVE.  False: no free slot (take a counted reference).  Only the owner
 * fills its slots, so a slot it reads empty stays empty until it fills it.
 */
static inline bool slot_take(struct itn__sub *sub)
{
	struct ref_block *b = ref_self;

	if (itn_unlikely(!b)) {
		b = ref_block_new();
		if (!b)
			return false;
	}
	for (unsigned int i = 0; i < ITN_REF_SLOTS; i++)
		if (!atomic_load_explicit(&b->slot[i], memory_order_relaxed)) {
			/* Once per insertion (then only read): tells
			 * release_cb a put may still be reading it. */
			if (itn_unlikely(!(atomic_load_explicit(
						   &sub->refs,
						   memory_order_relaxed) &
					   ITN_REFS_SLOTTED)))
				atomic_fetch_or_explicit(&sub->refs,
							 ITN_REFS_SLOTTED,
							 memory_order_relaxed);
			atomic_store_explicit(&b->slot[i], sub,
					      memory_order_relaxed);
			return true;
		}
	return false;
}

/* Clear one of this thread's slots holding @sub (a put); false if none. */
static inline bool slot_drop_own(struct itn__sub *sub)
{
	struct ref_block *b = ref_self;

	if (!b)
		return false;
	for (unsigned int i = 0; i < ITN_REF_SLOTS; i++) {
		struct itn__sub *cur = sub;

		if (atomic_load_explicit(&b->slot[i], memory_order_relaxed) !=
		    sub)
			continue;
		/* Tell a concurrent scan it may have missed a reference
		 * (pairs with the acquire fence in slot_drop_foreign()). */
		atomic_store_explicit(
			&b->clears,
			atomic_load_explicit(&b->clears, memory_order_relaxed) +
				1,
			memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		/* A CAS: another thread may put this reference (under
		 * ref_lock) at the same time.  Release: a finish attempt that
		 * sees the slot empty sees the counted references taken
		 * before. */
		if (atomic_compare_exchange_strong_explicit(
			    &b->slot[i], &cur, NULL, memory_order_release,
			    memory_order_relaxed))
			return true;
	}
	return false;
}

/* Whether this thread holds a slot reference to @sub. */
static bool slot_own(const struct itn__sub *sub)
{
	struct ref_block *b = ref_self;

	if (!b)
		return false;
	for (unsigned int i = 0; i < ITN_REF_SLOTS; i++)
		if (atomic_load_explicit(&b->slot[i], memory_order_relaxed) ==
		    sub)
			return true;
	return false;
}

/* Whether any slot holds @sub (ref_lock held). */
static bool slot_held(const struct itn__sub *sub)
{
	struct ref_block *b;

	cds_list_for_each_entry(b, &ref_blocks, link)
		for (unsigned int i = 0; i < ITN_REF_SLOTS; i++)
			if (atomic_load_explicit(&b->slot[i],
						 memory_order_acquire) == sub)
				return true;
	return false;
}

/*
 * Clear a slot of any thread holding @sub (ref_lock held).  False only if
 * none did during a scan no owner cleared a slot in: then no slot held
 * it throughout (owners only fill theirs meanwhile, with their own new
 * references).
 */
static bool slot_drop_foreign(struct itn__sub *sub, bool *quiet)
{
	struct ref_block *b, *tmp;
	uint64_t before = 0, after = 0;

	cds_list_for_each_entry(b, &ref_blocks, link)
		before += atomic_load_explicit(&b->clears,
					       memory_order_acquire);
	cds_list_for_each_entry_safe(b, tmp, &ref_blocks, link)
		for (unsigned int i = 0; i < ITN_REF_SLOTS; i++) {
			struct itn__sub *cur = sub;

			if (atomic_compare_exchange_strong_explicit(
				    &b->slot[i], &cur, NULL,
				    memory_order_acq_rel,
				    memory_order_acquire)) {
				if (b->orphan && block_empty(b)) {
					cds_list_del(&b->link);
					free(b);
				}
				return true;
			}
		}
	atomic_thread_fence(memory_order_acquire);
	cds_list_for_each_entry(b, &ref_blocks, link)
		after += atomic_load_explicit(&b->clears,
					      memory_order_relaxed);
	*quiet = before == after;
	return false;
}

/* Run release() (a call_rcu callback, after every reference went). */
static void do_release(struct itn__sub *sub)
{
	struct itn_space *s = atomic_load_explicit(&sub->space,
						   memory_order_relaxed);

	/* The memory is the caller's again: it may be inserted anew
	 * (itn_sub_insert() refuses it with -EBUSY only until now). */
	atomic_store_explicit(&sub->state, ITN_SUB_REMOVED,
			      memory_order_relaxed);
	itn__in_release = true;
	sub->ops->release(itn__pub(sub)); /* frees sub */
	itn__in_release = false;
	/* Pairs with the acquire load in itn_space_free(). */
	atomic_fetch_sub_explicit(&s->objs, 1, memory_order_release);
}

/* No reference of any kind left (ref_lock held; no slot can be filled):
 * no slot, and of @refs at most ITN_REFS_SLOTTED. */
static bool refs_gone(const struct itn__sub *sub)
{
	return !slot_held(sub) &&
	       !(atomic_load_explicit(&sub->refs, memory_order_acquire) &
		 ITN_REFS_HELD);
}

static void release_final_cb(struct rcu_head *head)
{
	itn__rcu_callback_enter(head);
	do_release(itn_container_of(head, struct itn__sub, rcu));
	/* Pairs with the acquire load in itn_synchronize(). */
	atomic_fetch_sub_explicit(&ref_chained, 1, memory_order_release);
	itn__rcu_callback_exit();
}

/*
 * Every reference is gone (ref_lock held): release() one grace period from
 * now, never at once.  A put that has just cleared the last slot may still
 * be in its read section, about to load the state (put_done()): the grace
 * period lets it finish before release() frees the memory.
 */
static void queue_release(struct itn__sub *sub)
{
	atomic_store_explicit(&sub->state, ITN_SUB_RELEASING,
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&ref_chained, 1, memory_order_relaxed);
	itn__call_rcu(&sub->rcu, release_final_cb);
}

static void release_wait_cb(struct rcu_head *head)
{
	struct itn__sub *sub = itn_container_of(head, struct itn__sub, rcu);

	itn__rcu_callback_enter(head);
	pthread_mutex_lock(&ref_lock);
	if (refs_gone(sub))
		queue_release(sub);
	else
		atomic_store_explicit(&sub->state, ITN_SUB_RELEASE_ARMED,
				      memory_order_relaxed);
	pthread_mutex_unlock(&ref_lock);
	/* Pairs with the acquire load in itn_synchronize(). */
	atomic_fetch_sub_explicit(&ref_chained, 1, memory_order_release);
	itn__rcu_callback_exit();
}

/* A grace period after @refs reached zero (and the state left LIVE). */
static void release_cb(struct rcu_head *head)
{
	struct itn__sub *sub = itn_container_of(head, struct itn__sub, rcu);

	itn__rcu_callback_enter(head);
	pthread_mutex_lock(&ref_lock);
	if (refs_gone(sub) &&
	    !(atomic_load_explicit(&sub->refs, memory_order_relaxed) &
	      ITN_REFS_SLOTTED)) {
		/* No slot ever held it, so no put is between clearing a slot
		 * and loading the state: release() now (the usual case). */
		atomic_store_explicit(&sub->state, ITN_SUB_RELEASING,
				      memory_order_relaxed);
		pthread_mutex_unlock(&ref_lock);
		do_release(sub);
		itn__rcu_callback_exit();
		return;
	}
	if (refs_gone(sub)) {
		queue_release(sub);
	} else {
		/* Slot references remain: look again after one more grace
		 * period (see above), then leave it to the last put. */
		atomic_fetch_add_explicit(&ref_chained, 1,
					  memory_order_relaxed);
		atomic_store_explicit(&sub->state, ITN_SUB_RELEASE_WAIT,
				      memory_order_relaxed);
		itn__call_rcu(&sub->rcu, release_wait_cb);
	}
	pthread_mutex_unlock(&ref_lock);
	itn__rcu_callback_exit();
}

/* A put cleared a slot or the count of a RELEASE_WAIT/ARMED subscription. */
static ITN_NOINLINE void release_try_finish(struct itn__sub *sub)
{
	pthread_mutex_lock(&ref_lock);
	/* RELEASE_WAIT: release_wait_cb will scan after this unlock. */
	if (atomic_load_explicit(&sub->state, memory_order_relaxed) ==
		    ITN_SUB_RELEASE_ARMED &&
	    refs_gone(sub))
		queue_release(sub);
	pthread_mutex_unlock(&ref_lock);
}

/*
 * After a put (in its read section): @zero says it took @refs to zero.
 * The first time, the subscription is ZOMBIE: queue release_cb.
 */
static inline void put_done(struct itn__sub *sub, bool zero)
{
	uint32_t st = atomic_load_explicit(&sub->state, memory_order_acquire);
	uint32_t zombie = ITN_SUB_ZOMBIE;

	if (itn_likely(st == ITN_SUB_LIVE))
		return;
	if (zero && st == ITN_SUB_ZOMBIE) {
		if (atomic_compare_exchange_strong_explicit(
			    &sub->state, &zombie, ITN_SUB_DYING,
			    memory_order_acq_rel, memory_order_relaxed))
			itn__call_rcu(&sub->rcu, release_cb);
		return;
	}
	if (st == ITN_SUB_RELEASE_WAIT || st == ITN_SUB_RELEASE_ARMED)
		release_try_finish(sub);
}

/*
 * Drop a counted reference; none: another thread's slot reference.
 * Inside the caller's read section.
 */
static ITN_NOINLINE void put_slow(struct itn__sub *sub)
{
	uint32_t r = atomic_load_explicit(&sub->refs, memory_order_relaxed);
	bool quiet = false;

	for (;;) {
		while (r & ITN_REFS_COUNT)
			if (atomic_compare_exchange_weak_explicit(
				    &sub->refs, &r, r - 1,
				    memory_order_acq_rel,
				    memory_order_relaxed)) {
				put_done(sub, (r & ITN_REFS_HELD) == 1);
				return;
			}
		pthread_mutex_lock(&ref_lock);
		if (slot_drop_foreign(sub, &quiet)) {
			pthread_mutex_unlock(&ref_lock);
			put_done(sub, false);
			return;
		}
		pthread_mutex_unlock(&ref_lock);
		r = atomic_load_explicit(&sub->refs, memory_order_acquire);
		if (quiet && !(r & ITN_REFS_COUNT))
			itn__die("itn_sub_put: reference count underflow");
	}
}

void itn__sub_put(struct itn__sub *sub)
{
	uint32_t old;

	itn__rcu_read_lock();
	old = atomic_fetch_sub_explicit(&sub->refs, ITN_REFS_REG,
					memory_order_acq_rel);
	if (itn_unlikely(!(old & ITN_REFS_REG)))
		itn__die("itn_sub_put: registration reference dropped twice");
	put_done(sub, (old & ITN_REFS_HELD) == ITN_REFS_REG);
	itn__rcu_read_unlock();
}

/*
 * Take a counted reference to a subscription a validated walk found,
 * unless @refs already reached zero (release() is queued: the memory lasts
 * until the read section ends), and keep it only if the subscription is
 * still live (remove stores the state before it takes the node out).
 *
 * The CAS first guesses the usual count, the registration's reference
 * alone, rather than loading it: on a line another CPU wrote last, a load
 * then a CAS would fetch it twice.
 */
static inline bool get_live(struct itn__sub *sub)
{
	uint32_t r = ITN_REFS_REG;

	while (!atomic_compare_exchange_weak_explicit(&sub->refs, &r, r + 1,
						      memory_order_acquire,
						      memory_order_relaxed))
		if (itn_unlikely(!(r & ITN_REFS_HELD) ||
				 (r & ITN_REFS_COUNT) == ITN_REFS_COUNT))
			return false;
	/* Pairs with the release stores of state in remove. */
	if (itn_likely(atomic_load_explicit(&sub->state,
					    memory_order_acquire) ==
		       ITN_SUB_LIVE))
		return true;
	put_slow(sub); /* removed since the walk */
	return false;
}

/*
 * A reference to a subscription the read section found: a slot if it is
 * live and one is free (no shared write), else a counted one.
 */
static inline bool get_ref(struct itn__sub *sub)
{
	/* Pairs with the release stores of state in remove. */
	if (itn_likely(atomic_load_explicit(&sub->state,
					    memory_order_acquire) ==
		       ITN_SUB_LIVE) &&
	    itn_likely(slot_take(sub)))
		return true;
	return get_live(sub);
}

ITN_EXPORT void itn_sub_get(struct itn_sub *psub)
{
	struct itn__sub *sub = itn__sub(psub);
	uint32_t old;
	bool held;

	if (!psub || !sub->ops || !sub->ops->release)
		return;
	old = atomic_fetch_add_explicit(&sub->refs, 1, memory_order_relaxed);
	if (itn_unlikely((old & ITN_REFS_COUNT) == ITN_REFS_COUNT))
		itn__die("itn_sub_get: reference count overflow");
	if (itn_likely(old & ITN_REFS_HELD))
		return;
	/* The caller's reference is a slot (its own or one handed over):
	 * the count now holds the subscription too. */
	held = slot_own(sub);
	if (!held) {
		pthread_mutex_lock(&ref_lock);
		held = slot_held(sub);
		pthread_mutex_unlock(&ref_lock);
	}
	if (!held)
		itn__die("itn_sub_get: no reference is held");
}

ITN_EXPORT void itn_sub_put(struct itn_sub *psub)
{
	struct itn__sub *sub = itn__sub(psub);

	if (itn_unlikely(!psub || !sub->ops || !sub->ops->release))
		return;
	/* Our walk is over with this one: forget its key (the memory may be
	 * reused once released). */
	key_cache_forget(sub);
	/* In a read section: a put that clears a slot after release_cb
	 * scanned either sees RELEASE_WAIT or is waited for by the grace
	 * period before release_wait_cb (see "Slot references"). */
	itn__rcu_read_lock();
	if (itn_likely(slot_drop_own(sub)))
		put_done(sub, false);
	else
		put_slow(sub);
	itn__rcu_read_unlock();
}

static inline struct itn_tkey key_of(const struct itn_tnode *n)
{
	return (struct itn_tkey){
		.start = atomic_load_explicit(&n->start, memory_order_acquire),
		.order = atomic_load_explicit(
			&logi_sub((struct itn_tnode *)n)->order,
			memory_order_acquire),
	};
}

/* First match after @after, skipping other ops; may return ITN_TREE_LOST. */
static inline struct itn_tnode *walk(const struct itn_space *s,
				     const struct itn_sub_ops *ops,
				     uint64_t start, uint64_t last,
				     const struct itn_tkey *after,
				     struct itn_tkey *key)
{
	struct itn_tnode *n = itn__tree_search_rcu(&s->logi, start, last, after,
						   LOGI_ORDER_OFF);

	while (n && n != ITN_TREE_LOST) {
		*key = key_of(n);
		if (!ops || logi_sub(n)->ops == ops)
			break;
		n = itn__tree_search_rcu(&s->logi, start, last, key,
					 LOGI_ORDER_OFF);
	}
	return n;
}

/*
 * The first match (after @after), from the flat index when it is the
 * tree at @w, else from the tree; *@stale says the flat index was not.
 * Meaningful only if the read section then validates @w.
 */
static inline __attribute__((always_inline)) struct itn_tnode *
lookup(const struct itn_space *s,
				       const struct itn_sub_ops *ops,
				       uint64_t start, uint64_t last,
				       const struct itn_tkey *after,
				       struct itn_tkey *key, uint64_t w,
				       bool *stale)
{
	if (!after) {
		const struct itn_flat *f =
			atomic_load_explicit(&s->flat, memory_order_acquire);

		if (itn_likely(f && f->wseq == w)) {
			struct itn__sub *sub;
			uint64_t fstart;

			sub = itn__flat_first(f, start, last, &fstart);
			if (!sub)
				return NULL;
			*key = (struct itn_tkey){
				.start = fstart,
				.order = atomic_load_explicit(
					&sub->order, memory_order_acquire),
			};
			if (!ops || sub->ops == ops)
				return &sub->logi;
			/* Another user's: go on in the tree after it. */
			return walk(s, ops, start, last, key, key);
		}
		*stale = true;
	}
	return walk(s, ops, start, last, after, key);
}

static struct itn__sub *find_locked(struct itn_space *s,
				    const struct itn_sub_ops *ops,
				    uint64_t start, uint64_t last,
				    const struct itn_tkey *after,
				    struct itn_tkey *key)
{
	struct itn__sub *sub = NULL;
	struct itn_tnode *n;

	itn__lock(s);
	n = walk(s, ops, start, last, after, key);
	if (n == ITN_TREE_LOST)
		itn__die("logical index walk lost under the lock");
	if (n) {
		/* In the index: live, so the registration holds a ref. */
		uint32_t old;

		sub = logi_sub(n);
		old = atomic_fetch_add_explicit(&sub->refs, 1,
						memory_order_relaxed);
		if (itn_unlikely((old & ITN_REFS_COUNT) == ITN_REFS_COUNT))
			itn__die("itn_find: reference count overflow");
	}
	itn__unlock(s);
	return sub;
}

/*
 * The lockless walk, tried again after a failed first try (a writer ran,
 * or the result was being removed), then under the lock.  Returns the
 * result with a reference, or NULL; *@key is where it was found.
 */
static ITN_NOINLINE struct itn__sub *
find_retry(struct itn_space *s, const struct itn_sub_ops *ops, uint64_t start,
	   uint64_t last, const struct itn_tkey *after, struct itn_tkey *key)
{
	struct itn__sub *sub = NULL;
	int tries;

	itn__rcu_read_lock();
	for (tries = 1;; tries++) {
		struct itn_tnode *n;
		uint64_t w;

		if (tries == ITN_FIND_RETRIES) {
			sub = find_locked(s, ops, start, last, after, key);
			break;
		}
		bool stale = false;

		w = itn__tree_read_begin(&s->logi);
		if (w & 1)
			continue;
		n = lookup(s, ops, start, last, after, key, w, &stale);
		if (n == ITN_TREE_LOST || !itn__tree_read_valid(&s->logi, w))
			continue;
		if (!n) {
			sub = NULL;
			break;
		}
		sub = logi_sub(n);
		if (get_live(sub))
			break;
		/* its last reference is gone, or removed since the walk */
	}
	itn__rcu_read_unlock();
	return sub;
}

/*
 * A validated itn_find() walked the tree at @w: the flat index was stale.
 * Count it, and maybe build a new index, except where a find must not
 * allocate or wait: in an invalidate callback or a release().
 */
static ITN_NOINLINE void note_miss(struct itn_space *s, uint64_t w)
{
	if (!itn__cb_top && !itn__in_release)
		itn__flat_note_miss(s, w);
}

/*
 * The first match after *@after (NULL: the first), with a reference.  The
 * first try is inline, the common case: one validated lockless walk and a
 * live result.  Anything else goes to find_retry().
 */
static inline struct itn_sub *find_after(struct itn_space *s,
					 const struct itn_sub_ops *ops,
					 uint64_t start, uint64_t last,
					 const struct itn_tkey *after)
{
	struct itn__sub *sub;
	struct itn_tkey key;
	struct itn_tnode *n;
	bool stale = false;
	uint64_t w;

	itn__rcu_read_lock();
	w = itn__tree_read_begin(&s->logi);
	if (itn_likely(!(w & 1))) {
		n = lookup(s, ops, start, last, after, &key, w, &stale);
		if (itn_likely(n != ITN_TREE_LOST &&
			       itn__tree_read_valid(&s->logi, w))) {
			if (!n) {
				itn__rcu_read_unlock();
				if (itn_unlikely(stale))
					note_miss(s, w);
				goto none;
			}
			sub = logi_sub(n);
			if (itn_likely(get_ref(sub))) {
				itn__rcu_read_unlock();
				if (itn_unlikely(stale))
					note_miss(s, w);
				goto found;
			}
		}
	}
	itn__rcu_read_unlock();
	sub = find_retry(s, ops, start, last, after, &key);
	if (!sub)
		goto none;
found:
	key_cache_record(sub, &key);
	return itn__pub(sub);
none:
	errno = ENOENT;
	return NULL;
}

ITN_EXPORT struct itn_sub *itn_find(struct itn_space *s,
				    const struct itn_sub_ops *ops,
				    uint64_t start, uint64_t last)
{
	if (itn_unlikely(!s || start > last || (ops && !ops->release))) {
		errno = EINVAL;
		return NULL;
	}
	return find_after(s, ops, start, last, NULL);
}

ITN_EXPORT struct itn_sub *itn_find_next(struct itn_space *s,
					 const struct itn_sub_ops *ops,
					 struct itn_sub *pprev, uint64_t start,
					 uint64_t last)
{
	const struct itn__sub *prev = itn__csub(pprev);
	struct itn_tkey after;

	if (itn_unlikely(!s || !pprev || start > last ||
			 (ops && !ops->release) || !prev->ops ||
			 !prev->ops->release)) {
		errno = EINVAL;
		return NULL;
	}
	/* Where prev was when this thread got it, else where it is now
	 * (the caller's reference keeps its memory). */
	if (!key_cache_lookup(prev, &after))
		after = key_of(&prev->logi);
	return find_after(s, ops, start, last, &after);
}

ITN_EXPORT void itn_synchronize(void)
{
	if (itn__cb_top)
		itn__die("itn_synchronize: called from an invalidate callback");
	if (itn__in_release)
		itn__die("itn_synchronize: called from a release callback; it "
			 "would wait for itself");
	/* release_cb may queue release_wait_cb: wait for it too. */
	do
		itn__rcu_barrier();
	while (atomic_load_explicit(&ref_chained, memory_order_acquire));
}
