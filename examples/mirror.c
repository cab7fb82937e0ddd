// SPDX-License-Identifier: MIT
/*
 * mirror.c - keep a device's copy of a page table coherent with libitn.
 *
 * A GPU or RDMA driver mirroring process memory (the kernel's hmm users):
 *  - the primary page table holds a version per page.  Writer threads play
 *    the mm: they bracket each change with itn_invalidate_start()/_end();
 *  - the device keeps its own page table, in chunks of 256 pages; each
 *    chunk subscribes to its range and has a mutex, the "user lock";
 *  - reader threads play the device's fault handler: they copy entries
 *    into the device with the collision-retry loop, and each chunk's
 *    invalidate callback drops them before the writer changes anything.
 *
 * Checked: once itn_invalidate_start() has returned no device entry of the
 * range is valid (a stale one would let the device use memory that is
 * about to change), and at the end every valid entry is up to date.
 *
 * Build: cc mirror.c $(pkg-config --cflags --libs itn) -pthread
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <itn/itn.h>

#define PAGE_SHIFT 12
#define CHUNK_PAGES 256 /* pages per subscription */

/* One translation in the device's page table. */
struct dev_pte {
	uint64_t version; /* what the device believes the page holds */
	bool valid;
};

/* One chunk of the device's page table, subscribed to its range. */
struct chunk {
	struct itn_sub sub; /* zero-initialised; first, so a cast finds us */
	pthread_mutex_t lock; /* the user lock: guards pte[] */
	uint64_t first, npages; /* pages [first, first + npages) */
	struct dev_pte *pte;
};

/* Per-thread counters, on their own cache lines; main sums them. */
struct worker {
	_Alignas(64) _Atomic uint64_t ops; /* faults or invalidations */
	_Atomic uint64_t retries;
	pthread_t tid;
	uint64_t rng;
};

static uint64_t npages = 4096;
static _Atomic uint64_t *primary; /* the "CPU" page table: versions */
static struct chunk *chunks;
static uint64_t nchunks;
static struct itn_space *space;
static _Atomic bool stop;
static _Atomic uint64_t stale; /* translations that survived a start */

static uint64_t rnd(uint64_t *s) /* a 64-bit LCG; the high bits */
{
	*s = *s * UINT64_C(6364136223846793005) + 1442695040888963407u;
	return *s >> 24;
}

/*
 * The invalidate callback: [r->start, r->last] is about to change.  It
 * runs on the writer's thread, before the change, with no library lock
 * held.  Under the user lock: record the invalidation with itn_set_seq()
 * (this is what makes a concurrent fault retry), then drop the
 * translations.  Returning false is only for non-blockable ranges when
 * we would have to sleep; this demo's writers are always blockable.
 */
static bool chunk_invalidate(struct itn_sub *sub, const struct itn_range *r,
			     uint64_t cur_seq)
{
	struct chunk *c = (struct chunk *)sub;
	uint64_t lo = r->start >> PAGE_SHIFT, hi = r->last >> PAGE_SHIFT;

	if (lo < c->first)
		lo = c->first;
	if (hi > c->first + c->npages - 1)
		hi = c->first + c->npages - 1;

	pthread_mutex_lock(&c->lock);
	itn_set_seq(sub, cur_seq);
	for (uint64_t p = lo; p <= hi; p++)
		c->pte[p - c->first].valid = false;
	pthread_mutex_unlock(&c->lock);
	return true;
}

static const struct itn_sub_ops chunk_ops = {
	.invalidate = chunk_invalidate,
};

/*
 * The device's fault handler: make page @p valid in the device.  This is
 * the collision-retry loop, the heart of the protocol:
 *  1. itn_read_begin() samples the subscription's sequence (it sleeps if
 *     an invalidation of this chunk is running, until it ends);
 *  2. read the primary page table, without any lock;
 *  3. take the user lock and ask itn_read_retry(): if an invalidation ran
 *     its callback since step 1, what we read may be outdated: start over;
 *  4. otherwise install it, still under the lock.  A callback that has not
 *     run yet cannot run now: it will wait for our lock, and remove what we
 *     installed before the writer changes the page.
 */
static void fault(struct worker *w, struct chunk *c, uint64_t p)
{
	uint64_t seq, v;

	for (;;) {
		seq = itn_read_begin(&c->sub);
		v = atomic_load_explicit(&primary[p], memory_order_acquire);
		pthread_mutex_lock(&c->lock);
		if (!itn_read_retry(&c->sub, seq))
			break;
		pthread_mutex_unlock(&c->lock);
		atomic_fetch_add_explicit(&w->retries, 1, memory_order_relaxed);
	}
	c->pte[p - c->first].version = v;
	c->pte[p - c->first].valid = true;
	pthread_mutex_unlock(&c->lock);
}

static void *reader(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t p = rnd(&w->rng) % npages;

		fault(w, &chunks[p / CHUNK_PAGES], p);
		atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
	}
	return NULL;
}

/* After itn_invalidate_start(): no device translation of [lo, hi] left. */
static void check_invalidated(uint64_t lo, uint64_t hi)
{
	for (uint64_t p = lo; p <= hi; p++) {
		struct chunk *c = &chunks[p / CHUNK_PAGES];

		pthread_mutex_lock(&c->lock);
		if (c->pte[p - c->first].valid)
			atomic_fetch_add(&stale, 1);
		pthread_mutex_unlock(&c->lock);
	}
}

/*
 * Invalidations may run in parallel, but a fault waits for the end of the
 * period and overlapping invalidations keep it open: writers that never
 * pause would keep faults waiting (writers win, as in the kernel).  A real
 * mm pauses; here every 64th invalidation first drains the running ones,
 * as mmap_write_lock() would.
 */
static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mm_cond = PTHREAD_COND_INITIALIZER;
static int mm_inside;
static bool mm_draining;

static void mm_gate(bool enter, bool drain)
{
	pthread_mutex_lock(&mm_lock);
	while (enter && mm_draining)
		pthread_cond_wait(&mm_cond, &mm_lock);
	mm_draining |= drain;
	while (drain && mm_inside)
		pthread_cond_wait(&mm_cond, &mm_lock);
	if (drain)
		mm_draining = false;
	mm_inside += enter ? 1 : -1;
	pthread_cond_broadcast(&mm_cond);
	pthread_mutex_unlock(&mm_lock);
}

/* The mm side: change random ranges of pages (unmap, mprotect...). */
static void *writer(void *arg)
{
	struct worker *w = arg;

	for (uint64_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed);
	     i++) {
		uint64_t n = 1 + rnd(&w->rng) % (npages < 16 ? npages : 16);
		uint64_t lo = rnd(&w->rng) % (npages - n + 1), hi = lo + n - 1;
		struct itn_range r = {
			.start = lo << PAGE_SHIFT,
			.last = ((hi + 1) << PAGE_SHIFT) - 1,
			.event = ITN_EVENT_UNMAP,
			.flags = ITN_RANGE_BLOCKABLE,
		};

		mm_gate(true, i % 64 == 63);
		/* Every overlapping chunk's callback runs before this
		 * returns: the device no longer uses these pages. */
		if (itn_invalidate_start(space, &r))
			abort(); /* blockable: cannot fail */
		check_invalidated(lo, hi);
		for (uint64_t p = lo; p <= hi; p++) /* the change itself */
			atomic_fetch_add_explicit(&primary[p], 1,
						  memory_order_release);
		/* Faults of these pages that were waiting may go on now. */
		itn_invalidate_end(space, &r);
		mm_gate(false, false);
		atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static uint64_t sum(const struct worker *ws, long n, bool retries)
{
	uint64_t t = 0;

	for (long i = 0; i < n; i++)
		t += atomic_load_explicit(retries ? &ws[i].retries : &ws[i].ops,
					  memory_order_relaxed);
	return t;
}

static void start_threads(struct worker *ws, long n, void *(*fn)(void *))
{
	static uint64_t seed;

	for (long i = 0; i < n; i++) {
		ws[i].rng = ++seed * UINT64_C(0x9e3779b97f4a7c15);
		if (pthread_create(&ws[i].tid, NULL, fn, &ws[i])) {
			perror("mirror: pthread_create");
			exit(1);
		}
	}
}

static const char usage[] =
	"usage: mirror [--threads R] [--writers W] [--pages P] [--seconds S]\n"
	"R readers fault pages of a P-page table into a device mirror while\n"
	"W writers invalidate ranges of it, for S seconds.\n"
	"Defaults: R = number of CPUs, W = 1, P = 4096, S = 2.\n";

int main(int argc, char **argv)
{
	static const char *const opts[] = { "--threads", "--writers", "--pages",
					    "--seconds" };
	long val[] = { sysconf(_SC_NPROCESSORS_ONLN), 1, 4096, 2 };
	long nreaders, nwriters, seconds;
	uint64_t faults, retries, invals, last_f = 0, last_i = 0;
	struct timespec t0, t1;
	struct worker *rs, *ws;
	struct itn_stats st;
	double elapsed;

	for (int i = 1; i < argc; i += 2) {
		char *end = NULL;
		int k = 0;

		while (k < 4 && strcmp(argv[i], opts[k]))
			k++;
		if (k < 4 && i + 1 < argc)
			val[k] = strtol(argv[i + 1], &end, 10);
		if (!strcmp(argv[i], "--help") || k == 4 || !end || *end ||
		    end == argv[i + 1] || val[k] < 1) {
			fputs(usage,
			      strcmp(argv[i], "--help") ? stderr : stdout);
			return strcmp(argv[i], "--help") ? 1 : 0;
		}
	}
	nreaders = val[0] > 0 ? val[0] : 1;
	nwriters = val[1];
	npages = (uint64_t)val[2];
	seconds = val[3];

	/* The space, the primary table, and one subscription per chunk. */
	space = itn_space_new();
	nchunks = (npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	primary = calloc(npages, sizeof(*primary));
	chunks = calloc(nchunks, sizeof(*chunks));
	rs = aligned_alloc(64, (size_t)nreaders * sizeof(*rs));
	ws = aligned_alloc(64, (size_t)nwriters * sizeof(*ws));
	if (!space || !primary || !chunks || !rs || !ws) {
		perror("mirror");
		return 1;
	}
	memset(rs, 0, (size_t)nreaders * sizeof(*rs));
	memset(ws, 0, (size_t)nwriters * sizeof(*ws));
	for (uint64_t i = 0; i < nchunks; i++) {
		struct chunk *c = &chunks[i];
		int err = -ENOMEM;

		c->first = i * CHUNK_PAGES;
		c->npages = npages - c->first < CHUNK_PAGES ?
				    npages - c->first :
				    CHUNK_PAGES;
		c->pte = calloc(c->npages, sizeof(*c->pte));
		pthread_mutex_init(&c->lock, NULL);
		if (c->pte)
			err = itn_sub_insert(
				&c->sub, space, c->first << PAGE_SHIFT,
				c->npages << PAGE_SHIFT, &chunk_ops);
		if (err) {
			fprintf(stderr, "mirror: itn_sub_insert: %s\n",
				strerror(-err));
			return 1;
		}
	}

	start_threads(rs, nreaders, reader);
	start_threads(ws, nwriters, writer);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long s = 1; s <= seconds; s++) { /* a progress line a second */
		t1 = t0;
		t1.tv_sec += s;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t1,
				       NULL) == EINTR)
			;
		faults = sum(rs, nreaders, false);
		invals = sum(ws, nwriters, false);
		fprintf(stderr,
			"%3lds: %10" PRIu64 " faults/s %8" PRIu64
			" invalidations/s %8" PRIu64 " retries\n",
			s, faults - last_f, invals - last_i,
			sum(rs, nreaders, true));
		last_f = faults;
		last_i = invals;
	}
	atomic_store(&stop, true);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	elapsed = (double)(t1.tv_sec - t0.tv_sec) +
		  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	for (long i = 0; i < nreaders; i++)
		pthread_join(rs[i].tid, NULL);
	for (long i = 0; i < nwriters; i++)
		pthread_join(ws[i].tid, NULL);

	/* Everything stopped: each valid translation must be current. */
	for (uint64_t i = 0; i < nchunks; i++)
		for (uint64_t j = 0; j < chunks[i].npages; j++)
			if (chunks[i].pte[j].valid &&
			    chunks[i].pte[j].version !=
				    atomic_load(&primary[chunks[i].first + j]))
				atomic_fetch_add(&stale, 1);

	faults = sum(rs, nreaders, false);
	retries = sum(rs, nreaders, true);
	invals = sum(ws, nwriters, false);
	itn_space_stats(space, &st);
	printf("readers %ld, writers %ld, pages %" PRIu64 ", %.1f s\n"
	       "faults        %12" PRIu64 " (%.0f/s)\n"
	       "retries       %12" PRIu64 "\n"
	       "invalidations %12" PRIu64 " (%.0f/s)\n"
	       "read_waits    %12" PRIu64 "\n"
	       "stale         %12" PRIu64 "\n",
	       nreaders, nwriters, npages, elapsed, faults,
	       (double)faults / elapsed, retries, invals,
	       (double)invals / elapsed, st.read_waits, atomic_load(&stale));

	/* Unsubscribe (it waits for running callbacks), free the space. */
	for (uint64_t i = 0; i < nchunks; i++) {
		itn_sub_remove(&chunks[i].sub);
		pthread_mutex_destroy(&chunks[i].lock);
		free(chunks[i].pte);
	}
	itn_space_free(space);
	free(chunks);
	free(primary);
	free(rs);
	free(ws);

	printf("stale = %" PRIu64 ": %s\n", atomic_load(&stale),
	       atomic_load(&stale) ? "FAILED" : "OK");
	return atomic_load(&stale) ? 1 : 0;
}
