// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * stress-mirror.c - device mirrors kept coherent by the collision-retry
 * protocol, under concurrent invalidations and subscription churn: the
 * safety property of SEMANTICS.md I6 (kernel-semantics.md §7.2 item 16,
 * hmm-tests' anon_teardown, snapshot and double_map).
 *
 * The primary page table is an array of versions (one per page); the
 * owner of the space bumps a page's version to "change" it.  Mirrors
 * (subscriptions) keep a secondary table of (version, valid) per page of
 * their range, guarded by their own mutex: the user lock.  Sixteen mirrors
 * cover the first 4096 pages in chunks; four more overlap them (one spans
 * all 4096, one doubles a chunk exactly).  The last 1024 pages have no
 * mirror: invalidations there find only churn subscriptions, or nothing
 * (the Partial state, where an insert must open a period).
 *
 * Threads (public API only), for ITN_STRESS_SECONDS (default 2) or
 * --seconds N; with --paths locked, the space's lock-free invalidation
 * fast paths are switched off (a test-only hook), so both the fast and the
 * locked paths are stressed:
 *  - readers fault random pages (1 to 8 at a time) into a random mirror:
 *    read_begin (sometimes _timeout), read the primary versions,
 *    check_retry, lock, read_retry, install; under the lock the installed
 *    versions must still be the primary ones.  They also look translations
 *    up: under the lock a valid entry must equal the primary version;
 *  - writers invalidate random ranges: itn_invalidate_start (1 in 8 not
 *    blockable; callbacks then refuse at random or when the user lock is
 *    taken, and -EAGAIN means: change nothing, no end), then no entry of
 *    any mirror in the range may be valid, then bump the versions, then
 *    itn_invalidate_end.  Now and then a writer drains the others (like
 *    mmap_write_lock() against invalidations under the read lock), so
 *    that periods end even while writers keep overlapping (SEMANTICS.md
 *    I9: read_begin may otherwise wait as long as they do);
 *  - a churner inserts, updates and removes short-lived subscriptions
 *    over random ranges (some with release(), removed with
 *    itn_sub_remove_deferred or itn_sub_remove), and after each insert or
 *    update takes a snapshot of their range through them: read_begin,
 *    copy the versions, lock, read_retry; an accepted snapshot must equal
 *    the primary table under the lock (and a section begun before an
 *    update must retry).  Inserts and updates land in Idle,
 *    Partial and Full states, so this checks that a subscription inserted
 *    or moved while invalidations run is not handed a stale view (I4, I7).
 *
 * After joining: every valid entry equals the primary version, no check
 * failed, every thread made progress, and the space's counters agree with
 * the threads' (invalidations, -EAGAIN returns, callbacks, releases).
 *
 * Workers and callbacks never assert: they count into atomics and keep the
 * first message; the test thread asserts after joining.  The random
 * sequences come from a fixed seed, printed, that ITN_TEST_SEED overrides
 * (thread interleavings are not reproducible).
 */
#include <errno.h>
/* cmocka.h 1.1.5 needs stdarg.h, stddef.h and setjmp.h included first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <itn/itn.h>

/* For itn__space_set_fast() only: --paths locked runs the locked paths. */
#include "itn-internal.h"

#define PAGE_SHIFT 12
#define BASE UINT64_C(0x7f0000000000) /* address of page 0 */
#define NMIRRORED 4096 /* pages [0, NMIRRORED) have mirrors */
#define NPAGES (NMIRRORED + 1024) /* the rest only churn subscriptions */
#define NCHUNK 16
#define CHUNK (NMIRRORED / NCHUNK)
#define NWIDE 4
#define NMIRROR (NCHUNK + NWIDE)
#define FAULT_MAX 8 /* pages per fault */
#define NTMP 8 /* live churn subscriptions */
#define TMP_PAGES 128 /* longest churn range */

enum { N_READER = 4, N_WRITER = 2 };

static uint64_t addr(uint64_t page)
{
	return BASE + (page << PAGE_SHIFT);
}

/* ------------------------------------------------------------------ */
/* Failure recording (any thread)                                      */
/* ------------------------------------------------------------------ */

static _Atomic uint64_t failures;
static pthread_mutex_t note_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_failure[512];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failures, 1) != 0)
		return;
	pthread_mutex_lock(&note_lock);
	va_start(ap, fmt);
	vsnprintf(first_failure, sizeof(first_failure), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&note_lock);
}

/* The checks: each must stay at zero. */
static _Atomic uint64_t stale_after_start; /* writer: valid entry in range */
static _Atomic uint64_t stale_use; /* reader: valid entry != primary */
static _Atomic uint64_t install_mismatch; /* primary moved under retry=false */
static _Atomic uint64_t snapshot_mismatch; /* churn snapshot != primary */
static _Atomic uint64_t update_no_retry; /* section survived an update */
static _Atomic uint64_t final_mismatch; /* after join */

/* ------------------------------------------------------------------ */
/* The primary table, mirrors and their callbacks                      */
/* ------------------------------------------------------------------ */

static struct itn_space *space;
static _Atomic int stop;
static _Atomic uint64_t primary[NPAGES];

struct sec_entry {
	uint64_t version;
	bool valid;
};

struct mirror {
	struct itn_sub sub;
	pthread_mutex_t lock; /* the user lock: guards sec[] */
	uint64_t first, npages; /* pages [first, first + npages) */
	struct sec_entry *sec;
};

static struct mirror mirrors[NMIRROR];

static struct mirror *mirror_of(struct itn_sub *sub)
{
	return (struct mirror *)(void *)((char *)sub -
					 offsetof(struct mirror, sub));
}

/* Pages of [a, b] (inclusive) within [first, first + n): false if none. */
static bool clip(uint64_t a, uint64_t b, uint64_t first, uint64_t n,
		 uint64_t *lo, uint64_t *hi)
{
	*lo = a > first ? a : first;
	*hi = b < first + n - 1 ? b : first + n - 1;
	return *lo <= *hi;
}

/* Callbacks run on writer threads, which set these. */
static _Thread_local uint64_t *cb_rng;
static _Thread_local uint64_t cb_here; /* callbacks run on this thread */
static _Atomic uint64_t cb_calls; /* every invocation, refused or not */
static _Atomic uint64_t cb_refusals;

static uint64_t rnd(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/*
 * Take @lock for a callback of @r.  Not blockable: refuse at random, or
 * when the lock is taken (the callback "would have to sleep").
 */
static bool cb_lock(pthread_mutex_t *lock, const struct itn_range *r)
{
	atomic_fetch_add_explicit(&cb_calls, 1, memory_order_relaxed);
	cb_here++;
	if (r->flags & ITN_RANGE_BLOCKABLE) {
		pthread_mutex_lock(lock);
		return true;
	}
	if ((cb_rng && rnd(cb_rng) % 4 == 0) || pthread_mutex_trylock(lock)) {
		atomic_fetch_add_explicit(&cb_refusals, 1,
					  memory_order_relaxed);
		return false;
	}
	return true;
}

static bool mirror_invalidate(struct itn_sub *sub, const struct itn_range *r,
			      uint64_t cur_seq)
{
	struct mirror *m = mirror_of(sub);
	uint64_t a = (r->start - BASE) >> PAGE_SHIFT;
	uint64_t b = (r->last - BASE) >> PAGE_SHIFT;
	uint64_t lo = 1, hi = 0; /* empty unless clip() says otherwise */
	bool hit =
		r->start >= BASE && clip(a, b, m->first, m->npages, &lo, &hi);

	if (!hit)
		note("mirror callback outside its range");
	if (!cb_lock(&m->lock, r))
		return false;
	itn_set_seq(sub, cur_seq);
	for (uint64_t p = lo; hit && p <= hi; p++)
		m->sec[p - m->first].valid = false;
	pthread_mutex_unlock(&m->lock);
	return true;
}

static const struct itn_sub_ops mirror_ops = {
	.invalidate = mirror_invalidate,
};

/* ------------------------------------------------------------------ */
/* Per-thread state                                                    */
/* ------------------------------------------------------------------ */

struct worker {
	pthread_t tid;
	uint64_t rng;
	_Atomic uint64_t ops; /* faults, invalidations, churn operations */
	_Atomic uint64_t retries; /* readers */
	uint64_t lookups, timeouts; /* readers */
	uint64_t starts, eagains, drains; /* writers */
};

static struct worker readers[N_READER], writers[N_WRITER], churner;

static void bump(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* Readers                                                             */
/* ------------------------------------------------------------------ */

static uint64_t read_begin(struct worker *w, struct mirror *m)
{
	uint64_t seq;

	if (rnd(&w->rng) % 16)
		return itn_read_begin(&m->sub);
	while (itn_read_begin_timeout(&m->sub, 100000, &seq) == -ETIMEDOUT)
		w->timeouts++;
	return seq;
}

/*
 * Widen a race window: mostly nothing, sometimes a short spin, sometimes
 * a yield (on a small machine, the other threads then run inside it).
 */
static void pause_sometimes(uint64_t *rng)
{
	uint64_t k = rnd(rng) % 16;

	if (k == 0)
		sched_yield();
	else if (k < 4)
		for (uint64_t spin = rnd(rng) % 256; spin; spin--)
			atomic_signal_fence(memory_order_seq_cst);
}

/* Fault pages [p, p + n) of @m in: the collision-retry loop. */
static void fault(struct worker *w, struct mirror *m, uint64_t p, uint64_t n)
{
	uint64_t v[FAULT_MAX], seq;

again:
	seq = read_begin(w, m);
	for (uint64_t i = 0; i < n; i++)
		v[i] = atomic_load_explicit(&primary[p + i],
					    memory_order_acquire);
	/* The fault path takes its time now and then: invalidations run. */
	pause_sometimes(&w->rng);
	/* A lockless hint first, then the decision under the user lock. */
	if (itn_check_retry(&m->sub, seq)) {
		bump(&w->retries);
		goto again;
	}
	pthread_mutex_lock(&m->lock);
	if (itn_read_retry(&m->sub, seq)) {
		pthread_mutex_unlock(&m->lock);
		bump(&w->retries);
		goto again;
	}
	for (uint64_t i = 0; i < n; i++) {
		struct sec_entry *e = &m->sec[p + i - m->first];
		uint64_t now = atomic_load_explicit(&primary[p + i],
						    memory_order_relaxed);

		/* Nobody may change the page before our callback ran, and
		 * it cannot run while we hold the lock. */
		if (now != v[i]) {
			bump(&install_mismatch);
			note("page %" PRIu64 ": version %" PRIu64
			     " installed while the primary is %" PRIu64,
			     p + i, v[i], now);
		}
		e->version = v[i];
		e->valid = true;
	}
	pthread_mutex_unlock(&m->lock);
}

/* Use a translation: a valid one is never stale. */
static void lookup(struct mirror *m, uint64_t p)
{
	struct sec_entry *e = &m->sec[p - m->first];
	uint64_t now;

	pthread_mutex_lock(&m->lock);
	now = atomic_load_explicit(&primary[p], memory_order_relaxed);
	if (e->valid && e->version != now) {
		bump(&stale_use);
		note("page %" PRIu64 ": stale translation %" PRIu64
		     " used, primary %" PRIu64,
		     p, e->version, now);
	}
	pthread_mutex_unlock(&m->lock);
}

static void *reader_main(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct mirror *m = &mirrors[rnd(&w->rng) % NMIRROR];
		uint64_t p = m->first + rnd(&w->rng) % m->npages;
		uint64_t n = 1 + rnd(&w->rng) % FAULT_MAX;

		if (rnd(&w->rng) % 4 == 0) {
			lookup(m, p);
			w->lookups++;
			continue;
		}
		if (p + n > m->first + m->npages)
			n = m->first + m->npages - p;
		fault(w, m, p, n);
		bump(&w->ops);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Writers                                                             */
/* ------------------------------------------------------------------ */

/*
 * The drain gate: writers count themselves in around start..end; a
 * drainer raises the flag and waits for the count to reach zero, which
 * means every invalidation has ended, so the period did.  seq_cst on both
 * sides: either the writer sees the flag or the drainer sees the writer.
 */
static _Atomic int writers_inside, draining;
static pthread_mutex_t drain_lock = PTHREAD_MUTEX_INITIALIZER;

static void writer_enter(void)
{
	for (;;) {
		while (atomic_load(&draining))
			sched_yield();
		atomic_fetch_add(&writers_inside, 1);
		if (!atomic_load(&draining))
			return;
		atomic_fetch_sub(&writers_inside, 1);
	}
}

static void writer_exit(void)
{
	atomic_fetch_sub(&writers_inside, 1);
}

static void drain(void)
{
	pthread_mutex_lock(&drain_lock);
	atomic_store(&draining, 1);
	while (atomic_load(&writers_inside))
		sched_yield();
	atomic_store(&draining, 0);
	pthread_mutex_unlock(&drain_lock);
}

static const enum itn_event events[] = {
	ITN_EVENT_UNMAP,	  ITN_EVENT_CLEAR,
	ITN_EVENT_PROTECTION_VMA, ITN_EVENT_PROTECTION_PAGE,
	ITN_EVENT_SOFT_DIRTY,	  ITN_EVENT_MIGRATE,
};

/* After start: no mirror may hold a valid entry of [a, b]. */
static void check_range_invalid(uint64_t a, uint64_t b)
{
	for (int i = 0; i < NMIRROR; i++) {
		struct mirror *m = &mirrors[i];
		uint64_t lo, hi;

		if (!clip(a, b, m->first, m->npages, &lo, &hi))
			continue;
		pthread_mutex_lock(&m->lock);
		for (uint64_t p = lo; p <= hi; p++) {
			const struct sec_entry *e = &m->sec[p - m->first];

			if (e->valid) {
				bump(&stale_after_start);
				note("mirror %d page %" PRIu64
				     ": valid (version %" PRIu64
				     ") after itn_invalidate_start of [%" PRIu64
				     ", %" PRIu64 "]",
				     i, p, e->version, a, b);
			}
		}
		pthread_mutex_unlock(&m->lock);
	}
}

static void *writer_main(void *arg)
{
	struct worker *w = arg;

	cb_rng = &w->rng;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t k = rnd(&w->rng) % 32, len, a, b;
		struct itn_range r = { 0 };
		int err;

		len = k < 24 ? 1 + rnd(&w->rng) % 16 :
		      k < 31 ? 1 + rnd(&w->rng) % CHUNK :
			       1 + rnd(&w->rng) % NPAGES;
		a = rnd(&w->rng) % (NPAGES - len + 1);
		if (k < 8) /* where only churn subscriptions may be */
			a = NMIRRORED +
			    rnd(&w->rng) % (NPAGES - NMIRRORED - len + 1);
		b = a + len - 1;
		r.start = addr(a);
		r.last = addr(b + 1) - 1;
		r.event = events[rnd(&w->rng) % 6];
		r.flags = rnd(&w->rng) % 8 ? ITN_RANGE_BLOCKABLE : 0;
		r.owner = r.event == ITN_EVENT_MIGRATE ? (void *)w : NULL;

		if (rnd(&w->rng) % 16 == 0) {
			drain();
			w->drains++;
		}
		writer_enter();
		w->starts++;
		cb_here = 0;
		err = itn_invalidate_start(space, &r);
		if (err) {
			/* Refused: the library ended it; change nothing. */
			if (err != -EAGAIN || (r.flags & ITN_RANGE_BLOCKABLE))
				note("itn_invalidate_start: %d", err);
			w->eagains++;
			writer_exit();
			continue;
		}
		check_range_invalid(a, b);
		/* Nothing was subscribed here (Partial, unless another
		 * invalidation runs a period): take the time an insert needs
		 * to land before the change, which it must not miss. */
		if (!cb_here)
			sched_yield();
		else
			pause_sometimes(&w->rng);
		for (uint64_t p = a; p <= b; p++)
			atomic_fetch_add_explicit(&primary[p], 1,
						  memory_order_release);
		pause_sometimes(&w->rng);
		itn_invalidate_end(space, &r);
		writer_exit();
		bump(&w->ops);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The churner: short-lived subscriptions and snapshots through them    */
/* ------------------------------------------------------------------ */

struct tmp {
	struct itn_sub sub;
	pthread_mutex_t lock;
	uint64_t first, npages; /* churner only */
	bool has_release;
};

static struct tmp *tmp_of(struct itn_sub *sub)
{
	return (struct tmp *)(void *)((char *)sub - offsetof(struct tmp, sub));
}

static _Atomic uint64_t tmp_released;
static uint64_t tmp_inserted_rel, tmp_inserted, tmp_updates, snapshots,
	snapshot_retries;

static bool tmp_invalidate(struct itn_sub *sub, const struct itn_range *r,
			   uint64_t cur_seq)
{
	struct tmp *t = tmp_of(sub);

	if (!cb_lock(&t->lock, r))
		return false;
	itn_set_seq(sub, cur_seq);
	pthread_mutex_unlock(&t->lock);
	return true;
}

/* Runs on liburcu's call_rcu thread: atomics and note() only. */
static void tmp_release(struct itn_sub *sub)
{
	struct tmp *t = tmp_of(sub);

	pthread_mutex_destroy(&t->lock);
	free(t);
	atomic_fetch_add(&tmp_released, 1);
}

static const struct itn_sub_ops tmp_ops = { .invalidate = tmp_invalidate };
static const struct itn_sub_ops tmp_rel_ops = {
	.invalidate = tmp_invalidate,
	.release = tmp_release,
};

static void rnd_tmp_range(struct worker *w, struct tmp *t)
{
	t->npages = 1 + rnd(&w->rng) % TMP_PAGES;
	t->first = rnd(&w->rng) % (NPAGES - t->npages + 1);
	if (rnd(&w->rng) % 2) /* where no mirror is */
		t->first = NMIRRORED +
			   rnd(&w->rng) % (NPAGES - NMIRRORED - t->npages + 1);
}

/* A consistent copy of the primary table over @t's range. */
static void snapshot(struct tmp *t)
{
	uint64_t v[TMP_PAGES], seq;

again:
	seq = itn_read_begin(&t->sub);
	for (uint64_t i = 0; i < t->npages; i++)
		v[i] = atomic_load_explicit(&primary[t->first + i],
					    memory_order_acquire);
	pause_sometimes(cb_rng);
	pthread_mutex_lock(&t->lock);
	if (itn_read_retry(&t->sub, seq)) {
		pthread_mutex_unlock(&t->lock);
		snapshot_retries++;
		goto again;
	}
	for (uint64_t i = 0; i < t->npages; i++) {
		uint64_t p = t->first + i;
		uint64_t now =
			atomic_load_explicit(&primary[p], memory_order_relaxed);

		if (v[i] != now) {
			bump(&snapshot_mismatch);
			note("snapshot of page %" PRIu64 ": %" PRIu64
			     ", primary %" PRIu64,
			     p, v[i], now);
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	snapshots++;
}

/* With release(), @t may be freed as soon as the remove call returns. */
static void tmp_remove(struct worker *w, struct tmp *t)
{
	bool has_release = t->has_release;
	int err;

	if (has_release && rnd(&w->rng) % 2) {
		err = itn_sub_remove_deferred(&t->sub);
	} else {
		err = itn_sub_remove(&t->sub);
		if (!err && !has_release) {
			pthread_mutex_destroy(&t->lock);
			free(t);
		}
	}
	if (err)
		note("removing a churn subscription: %d", err);
}

static void *churner_main(void *arg)
{
	struct worker *w = arg;
	struct tmp *live[NTMP];
	int nlive = 0;

	cb_rng = &w->rng; /* for snapshot() (no callback runs here) */

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t k = rnd(&w->rng) % 8;

		if (nlive < NTMP && (k < 3 || nlive == 0)) {
			struct tmp *t = calloc(1, sizeof(*t));

			if (!t)
				abort();
			pthread_mutex_init(&t->lock, NULL);
			t->has_release = rnd(&w->rng) % 2;
			rnd_tmp_range(w, t);
			if (itn_sub_insert(&t->sub, space, addr(t->first),
					   t->npages << PAGE_SHIFT,
					   t->has_release ? &tmp_rel_ops :
							    &tmp_ops)) {
				note("inserting a churn subscription failed");
				free(t);
				continue;
			}
			tmp_inserted++;
			tmp_inserted_rel += t->has_release;
			live[nlive++] = t;
			snapshot(t);
		} else if (k < 5) {
			struct tmp *t = live[rnd(&w->rng) % (uint64_t)nlive];
			uint64_t seq = itn_read_begin(&t->sub);

			rnd_tmp_range(w, t);
			if (itn_sub_update(&t->sub, addr(t->first),
					   t->npages << PAGE_SHIFT))
				note("itn_sub_update failed");
			/* A section begun before an update must retry. */
			pthread_mutex_lock(&t->lock);
			if (!itn_read_retry(&t->sub, seq)) {
				bump(&update_no_retry);
				note("read section survived itn_sub_update");
			}
			pthread_mutex_unlock(&t->lock);
			if (itn_sub_start(&t->sub) != addr(t->first) ||
			    itn_sub_last(&t->sub) !=
				    addr(t->first + t->npages) - 1)
				note("itn_sub_start/last after update");
			tmp_updates++;
			snapshot(t);
		} else if (k < 7) {
			int i = (int)(rnd(&w->rng) % (uint64_t)nlive);

			tmp_remove(w, live[i]);
			live[i] = live[--nlive];
		} else {
			snapshot(live[rnd(&w->rng) % (uint64_t)nlive]);
		}
		bump(&w->ops);
	}
	while (nlive)
		tmp_remove(w, live[--nlive]);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The test                                                            */
/* ------------------------------------------------------------------ */

static double run_seconds;
static bool locked_paths; /* --paths locked: no lock-free fast paths */

static uint64_t seed_from_env(void)
{
	const char *env = getenv("ITN_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : UINT64_C(0x6d6972726f72);

	return seed ? seed : 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t load(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Has every thread made progress, and has every path been taken? */
static bool progressed(void)
{
	struct itn_stats st;
	uint64_t eagains = 0;

	for (int i = 0; i < N_READER; i++)
		if (!load(&readers[i].ops))
			return false;
	for (int i = 0; i < N_WRITER; i++)
		if (!load(&writers[i].ops))
			return false;
	if (!load(&churner.ops))
		return false;
	if (itn_space_stats(space, &st))
		return false;
	eagains = st.nonblock_failures;
	return eagains && st.deferred_inserts && st.deferred_removes &&
	       st.read_waits;
}

static void init_mirror(struct mirror *m, uint64_t first, uint64_t n)
{
	m->first = first;
	m->npages = n;
	m->sec = calloc(n, sizeof(*m->sec));
	assert_non_null(m->sec);
	assert_int_equal(pthread_mutex_init(&m->lock, NULL), 0);
	assert_int_equal(itn_sub_insert(&m->sub, space, addr(first),
					n << PAGE_SHIFT, &mirror_ops),
			 0);
}

static void stress_mirror(void **state)
{
	uint64_t seed = seed_from_env(), faults = 0, retries = 0, invals = 0;
	uint64_t starts = 0, eagains = 0, lookups = 0, timeouts = 0, drains = 0;
	uint64_t valid = 0;
	struct itn_stats st;
	double t0, deadline;
	int i;

	(void)state;
	print_message("seed %#" PRIx64 " (override with ITN_TEST_SEED),"
		      " %.1f s, %s paths\n",
		      seed, run_seconds, locked_paths ? "locked" : "fast");
	space = itn_space_new();
	assert_non_null(space);
	if (locked_paths)
		assert_int_equal(itn__space_set_fast(space, false), 0);

	for (i = 0; i < NCHUNK; i++)
		init_mirror(&mirrors[i], (uint64_t)i * CHUNK, CHUNK);
	/* Overlapping mirrors: two across chunk borders, one over every
	 * mirrored page, one doubling chunk 7 exactly (hmm2.double_map). */
	init_mirror(&mirrors[i++], 100, 700);
	init_mirror(&mirrors[i++], 1000, 2000);
	init_mirror(&mirrors[i++], 0, NMIRRORED);
	init_mirror(&mirrors[i++], 7 * CHUNK, CHUNK);
	assert_int_equal(i, NMIRROR);

	for (i = 0; i < N_READER; i++)
		readers[i].rng = seed ^ (UINT64_C(0x9e3779b97f4a7c15) *
					 (uint64_t)(i + 1));
	for (i = 0; i < N_WRITER; i++)
		writers[i].rng = seed ^ (UINT64_C(0xbf58476d1ce4e5b9) *
					 (uint64_t)(i + 1));
	churner.rng = seed ^ UINT64_C(0x94d049bb133111eb);

	for (i = 0; i < N_READER; i++)
		assert_int_equal(pthread_create(&readers[i].tid, NULL,
						reader_main, &readers[i]),
				 0);
	for (i = 0; i < N_WRITER; i++)
		assert_int_equal(pthread_create(&writers[i].tid, NULL,
						writer_main, &writers[i]),
				 0);
	assert_int_equal(
		pthread_create(&churner.tid, NULL, churner_main, &churner), 0);

	/* Run for the duration, then until every path was taken (bounded:
	 * meson's timeout is the backstop). */
	t0 = now_s();
	deadline = t0 + run_seconds;
	while (now_s() < deadline)
		sleep_ms(20);
	while (!progressed() && now_s() < deadline + 60)
		sleep_ms(10);
	atomic_store(&stop, 1);

	for (i = 0; i < N_READER; i++) {
		assert_int_equal(pthread_join(readers[i].tid, NULL), 0);
		faults += load(&readers[i].ops);
		retries += load(&readers[i].retries);
		lookups += readers[i].lookups;
		timeouts += readers[i].timeouts;
	}
	for (i = 0; i < N_WRITER; i++) {
		assert_int_equal(pthread_join(writers[i].tid, NULL), 0);
		invals += load(&writers[i].ops);
		starts += writers[i].starts;
		eagains += writers[i].eagains;
		drains += writers[i].drains;
	}
	assert_int_equal(pthread_join(churner.tid, NULL), 0);

	/* Quiescent now: every valid entry is the primary version. */
	for (i = 0; i < NMIRROR; i++) {
		struct mirror *m = &mirrors[i];

		for (uint64_t j = 0; j < m->npages; j++) {
			uint64_t p = m->first + j;

			if (!m->sec[j].valid)
				continue;
			valid++;
			if (m->sec[j].version != load(&primary[p])) {
				bump(&final_mismatch);
				note("after the run, mirror %d page %" PRIu64
				     ": %" PRIu64 ", primary %" PRIu64,
				     i, p, m->sec[j].version,
				     load(&primary[p]));
			}
		}
	}

	assert_int_equal(itn_space_stats(space, &st), 0);
	print_message("%.2f s: %" PRIu64 " faults (%" PRIu64
		      " retries, %" PRIu64 " timeouts), %" PRIu64
		      " lookups, %" PRIu64 " invalidations (%" PRIu64
		      " EAGAIN, %" PRIu64 " drains), %" PRIu64
		      " valid entries at the end\n",
		      now_s() - t0, faults, retries, timeouts, lookups, invals,
		      eagains, drains, valid);
	print_message("churn: %" PRIu64 " inserts (%" PRIu64
		      " with release), %" PRIu64 " updates, %" PRIu64
		      " snapshots (%" PRIu64 " retries)\n",
		      tmp_inserted, tmp_inserted_rel, tmp_updates, snapshots,
		      snapshot_retries);
	print_message("stats: %" PRIu64 " invalidations, %" PRIu64
		      " periods, %" PRIu64 " callbacks, %" PRIu64
		      " nonblock failures, %" PRIu64 " read waits, %" PRIu64
		      " remove waits, deferred %" PRIu64 " inserts %" PRIu64
		      " removes %" PRIu64 " updates\n",
		      st.invalidations, st.periods, st.callbacks,
		      st.nonblock_failures, st.read_waits, st.remove_waits,
		      st.deferred_inserts, st.deferred_removes,
		      st.deferred_updates);
	print_message("checks: %" PRIu64 " stale after start, %" PRIu64
		      " stale uses, %" PRIu64 " install mismatches, %" PRIu64
		      " snapshot mismatches, %" PRIu64
		      " updates not retried, %" PRIu64 " final mismatches\n",
		      load(&stale_after_start), load(&stale_use),
		      load(&install_mismatch), load(&snapshot_mismatch),
		      load(&update_no_retry), load(&final_mismatch));

	if (load(&failures)) {
		char msg[sizeof(first_failure)];

		pthread_mutex_lock(&note_lock);
		memcpy(msg, first_failure, sizeof(msg));
		pthread_mutex_unlock(&note_lock);
		fail_msg("%" PRIu64 " failures (seed %#" PRIx64 "); first: %s",
			 load(&failures), seed, msg);
	}
	assert_int_equal(load(&stale_after_start), 0);
	assert_int_equal(load(&stale_use), 0);
	assert_int_equal(load(&install_mismatch), 0);
	assert_int_equal(load(&snapshot_mismatch), 0);
	assert_int_equal(load(&update_no_retry), 0);
	assert_int_equal(load(&final_mismatch), 0);

	/* Every thread made progress, every path was taken. */
	for (i = 0; i < N_READER; i++)
		assert_true(load(&readers[i].ops) > 0);
	for (i = 0; i < N_WRITER; i++)
		assert_true(load(&writers[i].ops) > 0);
	assert_true(load(&churner.ops) > 0);
	assert_true(tmp_inserted > 0 && tmp_updates > 0 && snapshots > 0);
	assert_true(eagains > 0);
	assert_true(st.deferred_inserts > 0);
	assert_true(st.deferred_removes > 0);
	assert_true(st.read_waits > 0);

	/* The space's counters agree with the threads'. */
	assert_int_equal(st.invalidations, starts);
	assert_int_equal(st.nonblock_failures, eagains);
	assert_int_equal(starts, invals + eagains);
	assert_int_equal(st.callbacks, load(&cb_calls));
	assert_int_equal(st.refused, 0);
	assert_true(st.periods > 0);
	assert_true(st.periods <= invals + tmp_inserted + tmp_updates);
	assert_int_equal(st.subs, NMIRROR);

	for (i = 0; i < NMIRROR; i++) {
		assert_int_equal(itn_sub_remove(&mirrors[i].sub), 0);
		pthread_mutex_destroy(&mirrors[i].lock);
		free(mirrors[i].sec);
	}
	itn_synchronize();
	assert_int_equal(load(&tmp_released), tmp_inserted_rel);
	assert_int_equal(itn_space_stats(space, &st), 0);
	assert_int_equal(st.subs, 0);
	assert_int_equal(itn_space_free(space), 0);
}

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--seconds N] [--paths fast|locked]\n",
		argv0);
	return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stress_mirror),
	};
	const char *env = getenv("ITN_STRESS_SECONDS");
	char *end;

	run_seconds = env ? strtod(env, NULL) : 2.0;
	for (int i = 1; i < argc; i++) {
		if (i + 1 == argc)
			return usage(argv[0]);
		if (!strcmp(argv[i], "--paths")) {
			i++;
			if (!strcmp(argv[i], "locked"))
				locked_paths = true;
			else if (strcmp(argv[i], "fast"))
				return usage(argv[0]);
			continue;
		}
		if (strcmp(argv[i], "--seconds"))
			return usage(argv[0]);
		run_seconds = strtod(argv[++i], &end);
		if (*end || end == argv[i])
			return usage(argv[0]);
	}
	if (!(run_seconds > 0))
		run_seconds = 2.0;

	/* Never return the failure count: 77 reads as SKIP in meson. */
	return cmocka_run_group_tests_name("stress-mirror", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
