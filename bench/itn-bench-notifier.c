// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itn-bench-notifier.c - the N (notifier) and M1 workloads of WORKLOADS.md:
 * libitn against the kernel's algorithm under one mutex (baseline.c), in
 * the same process run.
 *
 *	N1  itn_read_begin + itn_read_retry, uncontended
 *	N2  invalidate start+end that overlaps nothing, 10^4 subscriptions,
 *	    against a bare tree query of the same ranges
 *	N3  start+end hitting one subscription (callback: mutex + set_seq)
 *	N4  itn_find + itn_sub_put, 1 thread to every CPU
 *	N5  insert+remove of one subscription among 10^4, against T-W1
 *	N6  the examples/ mirror: readers fault pages, writers invalidate
 *	M1  bytes per subscription
 *
 * Layout: the 10^4 subscriptions are WORKLOADS.md's T dense intervals
 * (xorshift64*, seed 1, dense formula); each workload then continues the
 * same stream for its own ranges (see gen_queries()).
 *
 * Every workload body is written once, as an always-inline function taking
 * a `const struct impl *`, and instantiated for each implementation by a
 * noinline wrapper passing a constant table (bench_<w>_loop_itn / _bl):
 * the compiler folds the table away, so the timed loops call libitn's and
 * the baseline's functions directly, and callgrind can count each loop.
 *
 * Output: one line per measurement, key=value pairs, the workload first,
 * the libitn figure, the baseline's and their ratio on the same line;
 * --json adds the same measurement as a JSON object on the next line.
 * Timing is CLOCK_MONOTONIC; each figure is the median of --reps
 * repetitions, libitn and baseline interleaved.  Nothing is asserted about
 * time; the process fails only if a result is wrong (a stale mapping, a
 * failed find, a digest mismatch).
 */
#include <itn/itn.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "baseline.h"
#include "itn-internal.h" /* sizeof(struct itn__sub), for M1 */
#include "itree.h"

#if defined(__clang__)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_NOINLINE __attribute__((noinline, noclone))
#endif
#define BENCH_INLINE static inline __attribute__((always_inline))
#define BENCH_FORMAT(a, b) __attribute__((format(printf, a, b)))

#define DENSE_PAGES 262144 /* 2^30 / 4096 */
#define PAGE_SHIFT 12
#define KERNEL_SUB_BYTES 88 /* sizeof(struct mmu_interval_notifier) */

/* ---- options ---- */

static struct {
	bool json, quick;
	size_t subs; /* subscriptions of N1-N5 */
	size_t nq; /* queries (ranges) per workload */
	unsigned reps; /* repetitions per figure (medians) */
	uint64_t iters; /* N1 pairs per repetition */
	unsigned passes; /* N2/N3 passes over the queries per repetition */
	uint64_t churn; /* N5 insert+remove pairs per repetition */
	unsigned w1_loops; /* T-W1 loops per repetition (N5) */
	double seconds; /* N4/N6 duration of each point */
	unsigned threads[64], nthreads; /* N4 thread counts */
	unsigned readers[64], nreaders; /* N6 reader counts */
	unsigned writers; /* N6 writers */
	uint64_t pages; /* N6 pages */
	int n5_release; /* N5: 1 yes, 0 no, -1 both */
	size_t align; /* the layout's objects: 0 = an array of struct obj */
	unsigned paths; /* N2/N3: PATHS_FAST | PATHS_LOCKED */
	uint64_t inval_rate; /* N6: invalidations/s per writer, 0 = no limit */
} opt;

/* N2/N3 --paths: libitn's lock-free fast paths, its locked paths alone
 * (itn__space_set_fast(false), as the differential tests run them). */
#define PATHS_FAST 1u
#define PATHS_LOCKED 2u

/* ---- T1/T2: the stream and the dense layout ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t v)
{
	rng_state = v;
}

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t r32(void)
{
	return rng_next() >> 32;
}

struct query {
	uint64_t start, last;
};

/* One dense interval (T2), from the stream. */
static struct query dense_interval(void)
{
	uint64_t a = r32(), b = r32();
	uint64_t np = 1 + a % 16;
	uint64_t page = b % (DENSE_PAGES - np + 1);
	struct query q = { page * 4096, page * 4096 + np * 4096 - 1 };

	return q;
}

/* ---- output ---- */

struct line {
	char txt[1024], js[1536];
	size_t tl, jl;
};

BENCH_FORMAT(4, 5)
static void add(char *buf, size_t *len, size_t size, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(buf + *len, size - *len, fmt, ap);
	va_end(ap);
	if (r > 0)
		*len += (size_t)r;
	if (*len >= size)
		*len = size - 1;
}

static void line_begin(struct line *l, const char *workload)
{
	l->tl = l->jl = 0;
	add(l->txt, &l->tl, sizeof(l->txt), "%s", workload);
	add(l->js, &l->jl, sizeof(l->js), "{\"workload\":\"%s\"", workload);
}

static void line_str(struct line *l, const char *key, const char *val)
{
	add(l->txt, &l->tl, sizeof(l->txt), " %s=%s", key, val);
	add(l->js, &l->jl, sizeof(l->js), ",\"%s\":\"%s\"", key, val);
}

static void line_u(struct line *l, const char *key, uint64_t v)
{
	add(l->txt, &l->tl, sizeof(l->txt), " %s=%" PRIu64, key, v);
	add(l->js, &l->jl, sizeof(l->js), ",\"%s\":%" PRIu64, key, v);
}

/* A real number with @prec decimals. */
static void line_f(struct line *l, const char *key, int prec, double v)
{
	add(l->txt, &l->tl, sizeof(l->txt), " %s=%.*f", key, prec, v);
	add(l->js, &l->jl, sizeof(l->js), ",\"%s\":%.*f", key, prec, v);
}

static void line_end(struct line *l)
{
	puts(l->txt);
	if (opt.json) {
		add(l->js, &l->jl, sizeof(l->js), "}");
		puts(l->js);
	}
	fflush(stdout);
}

BENCH_FORMAT(1, 2) static void progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("itn-bench-notifier: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

BENCH_FORMAT(1, 2) static _Noreturn void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("itn-bench-notifier: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);

	if (!p)
		die("out of memory (%zu x %zu bytes)", n, sz);
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread: did the threads get their CPUs? */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s,
			       (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the subscriber objects, shared by both implementations ---- */

struct dev_pte {
	uint64_t version;
	bool valid;
};

/*
 * A subscriber: the subscription first, the user lock its callback takes,
 * and for N6 a chunk of the device page table.
 */
struct obj {
	union {
		struct itn_sub itn;
		struct bl_sub bl;
	} u;
	pthread_mutex_t lock;
	_Atomic bool released; /* release() ran (or never inserted) */
	uint64_t first, npages; /* N6: pages [first, first + npages) */
	struct dev_pte *pte; /* N6 only */
};

static inline struct obj *obj_of_itn(struct itn_sub *sub)
{
	return (struct obj *)(void *)((char *)sub -
				      offsetof(struct obj, u.itn));
}

static inline struct obj *obj_of_bl(struct bl_sub *sub)
{
	return (struct obj *)(void *)((char *)sub - offsetof(struct obj, u.bl));
}

/* Under o->lock: drop the device entries of @r (N6 chunks only). */
static void obj_clear(struct obj *o, const struct itn_range *r)
{
	uint64_t lo = r->start >> PAGE_SHIFT, hi = r->last >> PAGE_SHIFT;

	if (lo < o->first)
		lo = o->first;
	if (hi > o->first + o->npages - 1)
		hi = o->first + o->npages - 1;
	for (uint64_t p = lo; p <= hi; p++)
		o->pte[p - o->first].valid = false;
}

/* The invalidate callbacks: the user lock, set_seq, tear down, unlock. */
static bool itn_cb(struct itn_sub *sub, const struct itn_range *r,
		   uint64_t cur_seq)
{
	struct obj *o = obj_of_itn(sub);

	pthread_mutex_lock(&o->lock);
	itn_set_seq(sub, cur_seq);
	if (o->pte)
		obj_clear(o, r);
	pthread_mutex_unlock(&o->lock);
	return true;
}

static bool bl_cb(struct bl_sub *sub, const struct itn_range *r,
		  uint64_t cur_seq)
{
	struct obj *o = obj_of_bl(sub);

	pthread_mutex_lock(&o->lock);
	bl_set_seq(sub, cur_seq);
	if (o->pte)
		obj_clear(o, r);
	pthread_mutex_unlock(&o->lock);
	return true;
}

static void itn_release_cb(struct itn_sub *sub)
{
	atomic_store_explicit(&obj_of_itn(sub)->released, true,
			      memory_order_release);
}

static void bl_release_cb(struct bl_sub *sub)
{
	atomic_store_explicit(&obj_of_bl(sub)->released, true,
			      memory_order_release);
}

static const struct itn_sub_ops itn_ops_rel = { itn_cb, itn_release_cb };
static const struct itn_sub_ops itn_ops_plain = { itn_cb, NULL };
static const struct bl_sub_ops bl_ops_rel = { bl_cb, bl_release_cb };
static const struct bl_sub_ops bl_ops_plain = { bl_cb, NULL };

/* ---- the two implementations behind one table ---- */

struct impl {
	const char *name;
	void *(*space_new)(void);
	void (*space_free)(void *s);
	/* @rel: with release() (findable, reference counted). */
	void (*insert)(void *s, struct obj *o, uint64_t start, uint64_t len,
		       bool rel);
	void (*remove)(struct obj *o);
	uint64_t (*read_begin)(struct obj *o);
	bool (*read_retry)(struct obj *o, uint64_t seq);
	int (*inv_start)(void *s, const struct itn_range *r);
	void (*inv_end)(void *s, const struct itn_range *r);
	struct obj *(*find)(void *s, uint64_t start, uint64_t last);
	void (*put)(struct obj *o);
	void (*synchronize)(void); /* every release() queued has run */
};

static void *itn_space_new_(void)
{
	void *s = itn_space_new();

	if (!s)
		die("itn_space_new: %s", strerror(errno));
	return s;
}

static void itn_space_free_(void *s)
{
	int err = itn_space_free(s);

	if (err)
		die("itn_space_free: %s", strerror(-err));
}

static void itn_insert_(void *s, struct obj *o, uint64_t start, uint64_t len,
			bool rel)
{
	int err;

	atomic_store_explicit(&o->released, false, memory_order_relaxed);
	err = itn_sub_insert(&o->u.itn, s, start, len,
			     rel ? &itn_ops_rel : &itn_ops_plain);
	if (err)
		die("itn_sub_insert: %s", strerror(-err));
}

static int itn_inv_start_(void *s, const struct itn_range *r)
{
	return itn_invalidate_start(s, r);
}

static void itn_inv_end_(void *s, const struct itn_range *r)
{
	itn_invalidate_end(s, r);
}

static void itn_remove_(struct obj *o)
{
	itn_sub_remove(&o->u.itn);
}

static uint64_t itn_read_begin_(struct obj *o)
{
	return itn_read_begin(&o->u.itn);
}

static bool itn_read_retry_(struct obj *o, uint64_t seq)
{
	return itn_read_retry(&o->u.itn, seq);
}

static struct obj *itn_find_(void *s, uint64_t start, uint64_t last)
{
	struct itn_sub *sub = itn_find(s, &itn_ops_rel, start, last);

	return sub ? obj_of_itn(sub) : NULL;
}

static void itn_put_(struct obj *o)
{
	itn_sub_put(&o->u.itn);
}

static const struct impl itn_impl = {
	.name = "libitn",
	.space_new = itn_space_new_,
	.space_free = itn_space_free_,
	.insert = itn_insert_,
	.remove = itn_remove_,
	.read_begin = itn_read_begin_,
	.read_retry = itn_read_retry_,
	.inv_start = itn_inv_start_,
	.inv_end = itn_inv_end_,
	.find = itn_find_,
	.put = itn_put_,
	.synchronize = itn_synchronize,
};

static void *bl_space_new_(void)
{
	struct bl_space *s = xcalloc(1, sizeof(*s));
	int err = bl_space_init(s);

	if (err)
		die("bl_space_init: %s", strerror(err));
	return s;
}

static void bl_space_free_(void *s)
{
	bl_space_destroy(s);
	free(s);
}

static void bl_insert_(void *s, struct obj *o, uint64_t start, uint64_t len,
		       bool rel)
{
	atomic_store_explicit(&o->released, false, memory_order_relaxed);
	bl_sub_insert(&o->u.bl, s, start, len,
		      rel ? &bl_ops_rel : &bl_ops_plain);
}

static int bl_inv_start_(void *s, const struct itn_range *r)
{
	return bl_invalidate_start(s, r);
}

static void bl_inv_end_(void *s, const struct itn_range *r)
{
	bl_invalidate_end(s, r);
}

static void bl_remove_(struct obj *o)
{
	bl_sub_remove(&o->u.bl);
}

static uint64_t bl_read_begin_(struct obj *o)
{
	return bl_read_begin(&o->u.bl);
}

static bool bl_read_retry_(struct obj *o, uint64_t seq)
{
	return bl_read_retry(&o->u.bl, seq);
}

static struct obj *bl_find_(void *s, uint64_t start, uint64_t last)
{
	struct bl_sub *sub = bl_find(s, &bl_ops_rel, start, last);

	return sub ? obj_of_bl(sub) : NULL;
}

static void bl_put_(struct obj *o)
{
	bl_sub_put(&o->u.bl);
}

static void bl_synchronize_(void)
{
}

static const struct impl bl_impl = {
	.name = "baseline",
	.space_new = bl_space_new_,
	.space_free = bl_space_free_,
	.insert = bl_insert_,
	.remove = bl_remove_,
	.read_begin = bl_read_begin_,
	.read_retry = bl_read_retry_,
	.inv_start = bl_inv_start_,
	.inv_end = bl_inv_end_,
	.find = bl_find_,
	.put = bl_put_,
	.synchronize = bl_synchronize_,
};

enum { ITN, BL, NR_IMPL };
static const struct impl *const impls[NR_IMPL] = { &itn_impl, &bl_impl };

/* Remove, and make sure release() ran (plain subscriptions: at once). */
static void obj_remove_sync(const struct impl *im, struct obj *o)
{
	im->remove(o);
	atomic_store_explicit(&o->released, true, memory_order_relaxed);
}

/* ---- the timed loops: one body, two instantiations ---- */

static struct itn_range range_of(const struct query *q)
{
	struct itn_range r = {
		.start = q->start,
		.last = q->last,
		.event = ITN_EVENT_UNMAP,
		.flags = ITN_RANGE_BLOCKABLE,
		.owner = NULL,
	};

	return r;
}

/* N1: returns the number of retries (0: nothing ran). */
BENCH_INLINE uint64_t n1_body(const struct impl *im, struct obj *o,
			      uint64_t iters)
{
	uint64_t retries = 0;

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t seq = im->read_begin(o);

		retries += im->read_retry(o, seq);
	}
	return retries;
}

/* N2/N3: start+end over @nq ranges, @passes times. */
BENCH_INLINE void startend_body(const struct impl *im, void *s,
				const struct query *q, size_t nq,
				unsigned passes)
{
	for (unsigned p = 0; p < passes; p++) {
		for (size_t i = 0; i < nq; i++) {
			struct itn_range r = range_of(&q[i]);

			if (im->inv_start(s, &r))
				abort(); /* blockable: cannot fail */
			im->inv_end(s, &r);
		}
	}
}

/*
 * N5: insert+remove of the ring's objects, @pairs times.  Returns the
 * number of waits for a release() and their total time in *@wait_ns (not
 * part of the figure: release() runs on liburcu's call_rcu thread, which
 * batches callbacks and sleeps 10 ms between batches).
 */
BENCH_INLINE uint64_t churn_body(const struct impl *im, void *s,
				 struct obj *ring, const struct query *q,
				 size_t nring, uint64_t pairs, bool rel,
				 uint64_t *wait_ns)
{
	uint64_t waits = 0;

	for (uint64_t i = 0; i < pairs; i++) {
		struct obj *o = &ring[i % nring];

		/* With release(), the memory is ours again only once
		 * release() ran (after a grace period, for libitn). */
		if (!atomic_load_explicit(&o->released, memory_order_acquire)) {
			uint64_t t0 = now_ns();

			while (!atomic_load_explicit(&o->released,
						     memory_order_acquire))
				sched_yield();
			*wait_ns += now_ns() - t0;
			waits++;
		}
		im->insert(s, o, q[i % nring].start,
			   q[i % nring].last - q[i % nring].start + 1, rel);
		im->remove(o);
		if (!rel)
			atomic_store_explicit(&o->released, true,
					      memory_order_relaxed);
	}
	return waits;
}

/* N2 (misses) and N3 (hits): the same body under two names, for
 * callgrind. */
#define STARTEND_LOOPS(impl_, sfx)                                          \
	BENCH_NOINLINE static void bench_miss_loop_##sfx(                   \
		void *s, const struct query *q, size_t nq, unsigned passes) \
	{                                                                   \
		startend_body(&impl_, s, q, nq, passes);                    \
	}                                                                   \
	BENCH_NOINLINE static void bench_hit_loop_##sfx(                    \
		void *s, const struct query *q, size_t nq, unsigned passes) \
	{                                                                   \
		startend_body(&impl_, s, q, nq, passes);                    \
	}

#define INSTANTIATE(impl_, sfx)                                             \
	BENCH_NOINLINE static uint64_t bench_n1_loop_##sfx(struct obj *o,   \
							   uint64_t iters)  \
	{                                                                   \
		return n1_body(&impl_, o, iters);                           \
	}                                                                   \
	STARTEND_LOOPS(impl_, sfx)                                          \
	BENCH_NOINLINE static uint64_t bench_churn_loop_##sfx(              \
		void *s, struct obj *ring, const struct query *q,           \
		size_t nring, uint64_t pairs, bool rel, uint64_t *wait_ns)  \
	{                                                                   \
		return churn_body(&impl_, s, ring, q, nring, pairs, rel,    \
				  wait_ns);                                 \
	}

INSTANTIATE(itn_impl, itn)
INSTANTIATE(bl_impl, bl)

/* N2/N3 with the fast paths off: libitn again, under its own names so
 * that callgrind counts the locked paths apart. */
STARTEND_LOOPS(itn_impl, itn_locked)

static uint64_t (*const n1_loop[NR_IMPL])(struct obj *,
					  uint64_t) = { bench_n1_loop_itn,
							bench_n1_loop_bl };
static uint64_t (*const churn_loop[NR_IMPL])(
	void *, struct obj *, const struct query *, size_t, uint64_t, bool,
	uint64_t *) = { bench_churn_loop_itn, bench_churn_loop_bl };

/* The bare tree: N2's reference query and N5's T-W1. */
BENCH_NOINLINE
static uint64_t bench_bare_query_loop(const struct itn_tree *t,
				      const struct query *q, size_t nq,
				      unsigned passes)
{
	uint64_t hits = 0;

	for (unsigned p = 0; p < passes; p++)
		for (size_t i = 0; i < nq; i++)
			hits += itn__tree_iter_first(t, q[i].start,
						     q[i].last) != NULL;
	return hits;
}

BENCH_NOINLINE
static void bench_tree_w1_loop(struct itn_tree *t, struct itn_tnode *nodes,
			       size_t n, unsigned loops)
{
	for (unsigned l = 0; l < loops; l++) {
		for (size_t i = 0; i < n; i++)
			itn__tree_insert(t, &nodes[i],
					 itn__tnode_start(&nodes[i]),
					 itn__tnode_last(&nodes[i]));
		for (size_t i = 0; i < n; i++)
			itn__tree_remove(t, &nodes[i]);
	}
}

/* ---- the shared layout: 10^4 subscriptions in each implementation ---- */

struct layout {
	size_t n;
	struct query *iv; /* the dense intervals */
	struct itn_tnode *bare; /* the same, in a bare tree */
	struct itn_tree tree;
	void *space[NR_IMPL];
	char *objs[NR_IMPL];
	size_t stride; /* bytes from one object to the next */
	bool built;
};

static struct layout L;

/* Object @i of implementation @k's layout. */
static struct obj *lobj(int k, size_t i)
{
	return (struct obj *)(void *)(L.objs[k] + i * L.stride);
}

/* Fresh stream: seed 1, then the n dense intervals (T2). */
static void stream_intervals(struct query *out, size_t n)
{
	rng_seed(1);
	for (size_t i = 0; i < n; i++) {
		struct query q = dense_interval();

		if (out)
			out[i] = q;
	}
}

static void layout_build(void)
{
	uint64_t sum_start = 0, sum_last = 0;

	if (L.built)
		return;
	L.n = opt.subs;
	L.iv = xcalloc(L.n, sizeof(*L.iv));
	L.bare = xcalloc(L.n, sizeof(*L.bare));
	stream_intervals(L.iv, L.n);
	itn__tree_init(&L.tree);
	for (size_t i = 0; i < L.n; i++) {
		sum_start += L.iv[i].start;
		sum_last += L.iv[i].last;
		itn__tnode_init(&L.bare[i]);
		itn__tree_insert(&L.tree, &L.bare[i], L.iv[i].start,
				 L.iv[i].last);
	}
	/* WORKLOADS.md T6, dense n = 10^4. */
	if (L.n == 10000 &&
	    (sum_start != 5389842681856ULL || sum_last != 5390192109808ULL))
		die("dense layout digest mismatch: %" PRIu64 " %" PRIu64,
		    sum_start, sum_last);
	for (int k = 0; k < NR_IMPL; k++) {
		L.space[k] = impls[k]->space_new();
		L.stride = sizeof(struct obj);
		if (opt.align) {
			L.stride = (L.stride + opt.align - 1) / opt.align *
				   opt.align;
			L.objs[k] = aligned_alloc(opt.align, L.n * L.stride);
			if (!L.objs[k])
				die("out of memory");
			memset(L.objs[k], 0, L.n * L.stride);
		} else {
			L.objs[k] = xcalloc(L.n, L.stride);
		}
		for (size_t i = 0; i < L.n; i++) {
			struct obj *o = lobj(k, i);

			pthread_mutex_init(&o->lock, NULL);
			impls[k]->insert(L.space[k], o, L.iv[i].start,
					 L.iv[i].last - L.iv[i].start + 1,
					 true);
		}
	}
	L.built = true;
}

static void layout_destroy(void)
{
	if (!L.built)
		return;
	for (int k = 0; k < NR_IMPL; k++) {
		for (size_t i = 0; i < L.n; i++)
			impls[k]->remove(lobj(k, i));
		impls[k]->synchronize();
		impls[k]->space_free(L.space[k]);
		for (size_t i = 0; i < L.n; i++)
			pthread_mutex_destroy(&lobj(k, i)->lock);
		free(L.objs[k]);
	}
	free(L.iv);
	free(L.bare);
	L.built = false;
}

static size_t hits_of(const struct query *q)
{
	size_t h = 0;

	for (struct itn_tnode *x =
		     itn__tree_iter_first(&L.tree, q->start, q->last);
	     x; x = itn__tree_iter_next(x, q->start, q->last))
		h++;
	return h;
}

enum qkind {
	Q_MISS, /* W3 ranges (64 KiB) that overlap nothing: N2 */
	Q_ONE, /* W3 ranges that overlap exactly one interval: N3 */
	Q_POINT_HIT /* W2 points that overlap at least one: N4 */
};

/*
 * The stream after the layout's intervals, filtered: the first opt.nq
 * W3 range queries (page = r32() % (262144 - 16 + 1), 64 KiB wide) with no
 * hit (N2) or exactly one (N3), or W2 point queries (r32() % 2^30) with at
 * least one hit (N4).
 */
static struct query *gen_queries(enum qkind kind)
{
	struct query *qs = xcalloc(opt.nq, sizeof(*qs));
	size_t got = 0;

	stream_intervals(NULL, L.n);
	for (uint64_t draws = 0; got < opt.nq; draws++) {
		struct query q;
		size_t h;

		if (draws > 1000 * (uint64_t)opt.nq + 1000000)
			die("cannot find %zu queries of kind %d", opt.nq, kind);
		if (kind == Q_POINT_HIT) {
			q.start = q.last = r32() % (DENSE_PAGES * 4096ULL);
		} else {
			q.start = r32() % (DENSE_PAGES - 16 + 1) * 4096;
			q.last = q.start + 65536 - 1;
		}
		h = hits_of(&q);
		if ((kind == Q_MISS && h == 0) || (kind == Q_ONE && h == 1) ||
		    (kind == Q_POINT_HIT && h >= 1))
			qs[got++] = q;
	}
	return qs;
}

/*
 * N4 with disjoint subscriptions: the stream's W2 point queries (as for
 * Q_POINT_HIT) whose first hit is subscription i with i % @nt == @t, the
 * first opt.nq of them.  For @nt == 1 these are exactly the Q_POINT_HIT
 * queries.
 */
static struct query *gen_disjoint(unsigned nt, unsigned t)
{
	struct query *qs = xcalloc(opt.nq, sizeof(*qs));
	size_t got = 0;

	stream_intervals(NULL, L.n);
	for (uint64_t draws = 0; got < opt.nq; draws++) {
		struct query q;
		struct itn_tnode *x;

		if (draws > 1000 * (uint64_t)opt.nq * nt + 1000000)
			die("cannot find %zu queries for thread %u of %u",
			    opt.nq, t, nt);
		q.start = q.last = r32() % (DENSE_PAGES * 4096ULL);
		x = itn__tree_iter_first(&L.tree, q.start, q.last);
		if (x && (size_t)(x - L.bare) % nt == t)
			qs[got++] = q;
	}
	return qs;
}

/* ---- N1 ---- */

static void run_n1(void)
{
	double ns[NR_IMPL][64];
	unsigned reps = opt.reps;
	struct line l;

	layout_build();
	for (int k = 0; k < NR_IMPL; k++) /* warm up, untimed */
		n1_loop[k](lobj(k, 0), opt.iters / 10 + 1);
	for (unsigned r = 0; r < reps; r++) {
		for (int j = 0; j < NR_IMPL; j++) {
			int k = (int)(r + (unsigned)j) % NR_IMPL;
			uint64_t t0 = now_ns(), retries;

			retries = n1_loop[k](lobj(k, 0), opt.iters);
			ns[k][r] = (double)(now_ns() - t0) / (double)opt.iters;
			if (retries)
				die("N1: %" PRIu64 " retries with no writer",
				    retries);
		}
	}
	double a = median(ns[ITN], reps), b = median(ns[BL], reps);

	line_begin(&l, "N1");
	line_f(&l, "ns_pair", 2, a);
	line_f(&l, "base_ns_pair", 2, b);
	line_f(&l, "ratio", 3, a / b);
	line_u(&l, "iters", opt.iters);
	line_u(&l, "reps", reps);
	line_end(&l);
}

/* ---- N2 and N3 ---- */

/*
 * The columns of N2/N3: libitn with its fast paths, libitn with the
 * locked paths alone, the baseline, and (N2) the bare query.  The
 * repetitions interleave them, rotating which runs first.
 */
enum { C_FAST, C_LOCKED, C_BL, C_BARE, NR_COL };

static double n2_ns[NR_COL]; /* for N3's ratio */

static void startend_run(int c, bool one_hit, const struct query *q,
			 unsigned passes)
{
	static void (*const loop[2][3])(void *, const struct query *, size_t,
					unsigned) = {
		{ bench_miss_loop_itn, bench_miss_loop_itn_locked,
		  bench_miss_loop_bl },
		{ bench_hit_loop_itn, bench_hit_loop_itn_locked,
		  bench_hit_loop_bl },
	};
	void *s = L.space[c == C_BL ? BL : ITN];

	/* The space is idle between loops, so this cannot fail. */
	if (c == C_LOCKED && itn__space_set_fast(s, false))
		die("itn__space_set_fast: space not idle");
	loop[one_hit][c](s, q, opt.nq, passes);
	if (c == C_LOCKED && itn__space_set_fast(s, true))
		die("itn__space_set_fast: space not idle");
}

/* N2 (@one_hit false) or N3; @quiet: measure N2 for N3's ratio only. */
static void run_startend(bool one_hit, bool quiet)
{
	static const char *const path_name[] = { "fast", "locked" };
	struct query *q = gen_queries(one_hit ? Q_ONE : Q_MISS);
	double ns[NR_COL][64] = { { 0 } }, med[NR_COL] = { 0 };
	uint64_t pairs = (uint64_t)opt.nq * opt.passes;
	unsigned reps = opt.reps, runs = 0;
	int cols[NR_COL], ncol = 0;
	struct itn_stats st0, st1;

	if (opt.paths & PATHS_FAST)
		cols[ncol++] = C_FAST;
	if (opt.paths & PATHS_LOCKED)
		cols[ncol++] = C_LOCKED;
	cols[ncol++] = C_BL;
	if (!one_hit)
		cols[ncol++] = C_BARE;

	for (int j = 0; j < ncol; j++) { /* warm up, untimed */
		if (cols[j] == C_BARE) {
			bench_bare_query_loop(&L.tree, q, opt.nq, 1);
			continue;
		}
		startend_run(cols[j], one_hit, q, 1);
	}
	itn_space_stats(L.space[ITN], &st0);
	for (unsigned r = 0; r < reps; r++) {
		for (int j = 0; j < ncol; j++) {
			int c = cols[(r + (unsigned)j) % (unsigned)ncol];
			uint64_t t0 = now_ns();

			if (c == C_BARE) {
				if (bench_bare_query_loop(&L.tree, q, opt.nq,
							  opt.passes))
					die("N2: a query meant to miss hit");
			} else {
				startend_run(c, one_hit, q, opt.passes);
				runs += c != C_BL;
			}
			ns[c][r] = (double)(now_ns() - t0) / (double)pairs;
		}
	}
	itn_space_stats(L.space[ITN], &st1);
	/* Every timed pair called exactly one callback (N3) or none (N2),
	 * on either path. */
	if (st1.callbacks - st0.callbacks != (one_hit ? pairs * runs : 0))
		die("%s: %" PRIu64 " callbacks for %" PRIu64 " pairs",
		    one_hit ? "N3" : "N2", st1.callbacks - st0.callbacks,
		    pairs * runs);

	for (int j = 0; j < ncol; j++)
		med[cols[j]] = median(ns[cols[j]], reps);
	if (!one_hit)
		memcpy(n2_ns, med, sizeof(med));
	if (quiet) {
		free(q);
		return;
	}
	for (int j = 0; j < ncol; j++) {
		int c = cols[j];
		double a = med[c], b = med[C_BL];
		struct line l;

		if (c != C_FAST && c != C_LOCKED)
			continue;
		line_begin(&l, one_hit ? "N3" : "N2");
		line_str(&l, "paths", path_name[c]);
		line_u(&l, "subs", L.n);
		line_u(&l, "q", opt.nq);
		line_f(&l, "ns_pair", 2, a);
		line_f(&l, "base_ns_pair", 2, b);
		line_f(&l, "ratio_base", 3, a / b);
		if (!one_hit) {
			double bare = med[C_BARE];

			line_f(&l, "bare_ns", 2, bare);
			line_f(&l, "ratio_bare", 3, a / bare);
			line_f(&l, "base_ratio_bare", 3, b / bare);
		} else if (n2_ns[c] > 0) {
			line_f(&l, "n2_ns_pair", 2, n2_ns[c]);
			line_f(&l, "ratio_n2", 3, a / n2_ns[c]);
			line_f(&l, "base_ratio_n2", 3, b / n2_ns[C_BL]);
		}
		/* The fast line carries the locked figure of the same
		 * run: what the fast paths save. */
		if (c == C_FAST && (opt.paths & PATHS_LOCKED)) {
			line_f(&l, "locked_ns_pair", 2, med[C_LOCKED]);
			line_f(&l, "ratio_locked", 3, a / med[C_LOCKED]);
		}
		line_u(&l, "pairs", pairs);
		line_u(&l, "reps", reps);
		line_end(&l);
	}
	free(q);
}

/* ---- N4 ---- */

struct n4_arg {
	_Alignas(64) void *space;
	const struct query *q;
	size_t nq, off;
	uint64_t ops, misses, cpu_ns;
	_Atomic bool *stop;
	pthread_barrier_t *bar;
};

BENCH_INLINE void n4_body(const struct impl *im, struct n4_arg *a)
{
	size_t i = a->off;
	uint64_t ops = 0, misses = 0, cpu0;

	pthread_barrier_wait(a->bar);
	cpu0 = thread_cpu_ns();
	while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
		for (int k = 0; k < 64; k++) {
			const struct query *q = &a->q[i];
			struct obj *o;

			if (++i == a->nq)
				i = 0;
			o = im->find(a->space, q->start, q->last);
			if (o)
				im->put(o);
			else
				misses++;
		}
		ops += 64;
	}
	a->ops = ops;
	a->misses = misses;
	a->cpu_ns = thread_cpu_ns() - cpu0;
}

BENCH_NOINLINE static void *bench_n4_thread_itn(void *arg)
{
	n4_body(&itn_impl, arg);
	return NULL;
}

BENCH_NOINLINE static void *bench_n4_thread_bl(void *arg)
{
	n4_body(&bl_impl, arg);
	return NULL;
}

/*
 * The machine's own ceiling: the same queries on the bare tree (read-only,
 * no lock, no reference), so that N4's scaling can be read against what
 * this machine gives a read-only walk of the same memory.
 */
BENCH_NOINLINE static void *bench_n4_thread_bare(void *arg)
{
	struct n4_arg *a = arg;
	size_t i = a->off;
	uint64_t ops = 0, misses = 0, cpu0;

	pthread_barrier_wait(a->bar);
	cpu0 = thread_cpu_ns();
	while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
		for (int k = 0; k < 64; k++) {
			const struct query *q = &a->q[i];

			if (++i == a->nq)
				i = 0;
			misses += !itn__tree_iter_first(a->space, q->start,
							q->last);
		}
		ops += 64;
	}
	a->ops = ops;
	a->misses = misses;
	a->cpu_ns = thread_cpu_ns() - cpu0;
	return NULL;
}

#define BARE NR_IMPL /* N4's third column */

static void *(*const n4_thread[NR_IMPL + 1])(void *) = { bench_n4_thread_itn,
							 bench_n4_thread_bl,
							 bench_n4_thread_bare };

static void start_threads(pthread_t *tid, unsigned n, void *(*fn)(void *),
			  void *args, size_t argsz)
{
	for (unsigned t = 0; t < n; t++) {
		int err = pthread_create(&tid[t], NULL, fn,
					 (char *)args + t * argsz);

		if (err)
			die("pthread_create: %s", strerror(err));
	}
}

/*
 * One N4 point: ops/s of @k with @nt threads; adds the ops to *@total and
 * stores in *@cpus the CPUs the threads got (their CPU time / wall time:
 * below @nt when the machine is shared, or when threads sleep on a lock).
 * @own NULL (shared): every thread cycles through all of @q, from its own
 * offset, so every subscription's reference count is written by every
 * thread.  Else (disjoint) thread t cycles through @own[t], queries that
 * find subscriptions no other thread finds.
 */
static double n4_point(int k, unsigned nt, const struct query *q,
		       struct query *const *own, uint64_t *total, double *cpus)
{
	struct n4_arg *a = aligned_alloc(64, nt * sizeof(*a));
	pthread_t *tid = xcalloc(nt, sizeof(*tid));
	pthread_barrier_t bar;
	_Atomic bool stop = false;
	uint64_t t0, t1, ops = 0, cpu_ns = 0;

	if (!a)
		die("out of memory");
	pthread_barrier_init(&bar, NULL, nt + 1);
	for (unsigned t = 0; t < nt; t++) {
		memset(&a[t], 0, sizeof(a[t]));
		a[t].space = k == BARE ? (void *)&L.tree : L.space[k];
		a[t].q = own ? own[t] : q;
		a[t].nq = opt.nq;
		a[t].off = own ? 0 : (opt.nq / nt) * t;
		a[t].stop = &stop;
		a[t].bar = &bar;
	}
	start_threads(tid, nt, n4_thread[k], a, sizeof(*a));
	pthread_barrier_wait(&bar);
	t0 = now_ns();
	sleep_s(opt.seconds);
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	t1 = now_ns();
	for (unsigned t = 0; t < nt; t++) {
		pthread_join(tid[t], NULL);
		ops += a[t].ops;
		cpu_ns += a[t].cpu_ns;
		if (a[t].misses)
			die("N4: find missed %" PRIu64 " times", a[t].misses);
	}
	pthread_barrier_destroy(&bar);
	free(tid);
	free(a);
	*total += ops;
	*cpus = (double)cpu_ns / (double)(t1 - t0);
	return (double)ops * 1e9 / (double)(t1 - t0);
}

/* One N4 line: @nt threads (1: the single-thread figures). */
struct n4_line {
	unsigned nt;
	bool disjoint;
	unsigned reps;
	double ops[NR_IMPL + 1][128], cpus[NR_IMPL + 1][128];
	double scaling[NR_IMPL + 1][64];
	uint64_t total[NR_IMPL + 1];
};

static void n4_print(struct n4_line *p)
{
	double med[NR_IMPL + 1];
	struct line l;

	for (int k = 0; k <= NR_IMPL; k++)
		med[k] = median(p->ops[k], p->reps);
	line_begin(&l, "N4");
	line_u(&l, "subs", L.n);
	line_u(&l, "threads", p->nt);
	line_str(&l, "queries", p->disjoint ? "disjoint" : "shared");
	line_u(&l, "align", opt.align);
	line_f(&l, "ops_s", 0, med[ITN]);
	line_f(&l, "base_ops_s", 0, med[BL]);
	line_f(&l, "ratio", 3, med[ITN] / med[BL]);
	if (p->nt > 1) {
		line_f(&l, "scaling", 3, median(p->scaling[ITN], p->reps));
		line_f(&l, "base_scaling", 3, median(p->scaling[BL], p->reps));
	}
	line_f(&l, "bare_ops_s", 0, med[BARE]);
	if (p->nt > 1)
		line_f(&l, "bare_scaling", 3,
		       median(p->scaling[BARE], p->reps));
	line_f(&l, "cpus", 2, median(p->cpus[ITN], p->reps));
	line_f(&l, "base_cpus", 2, median(p->cpus[BL], p->reps));
	line_f(&l, "bare_cpus", 2, median(p->cpus[BARE], p->reps));
	line_f(&l, "seconds", 2, opt.seconds);
	line_u(&l, "reps", p->reps);
	line_u(&l, "n_ops", p->total[ITN]);
	line_u(&l, "base_n_ops", p->total[BL]);
	line_end(&l);
}

/*
 * N4: each repetition measures 1 thread and then @nt threads back to back
 * for each implementation, and the scaling is the median of those pairs'
 * ratios, so that drift on a shared machine cancels.  The single-thread
 * line gathers every single-thread measurement.
 */
static void run_n4(void)
{
	static const char *const names[NR_IMPL + 1] = { "libitn", "baseline",
							"bare tree" };
	struct query *q = gen_queries(Q_POINT_HIT);
	unsigned reps = opt.reps > 3 ? 3 : opt.reps;
	struct n4_line *one = xcalloc(1, sizeof(*one));
	struct n4_line **lines = xcalloc(2 * opt.nthreads, sizeof(*lines));
	unsigned nlines = 0;
	bool want_one = false;

	one->nt = 1;
	for (unsigned ti = 0; ti < opt.nthreads; ti++)
		want_one |= opt.threads[ti] == 1;
	for (unsigned ti = 0; ti < 2 * opt.nthreads; ti++) {
		unsigned nt = opt.threads[ti / 2];
		bool disjoint = ti % 2;
		struct n4_line *p;
		struct query **own = NULL;

		if (nt == 1)
			continue;
		p = xcalloc(1, sizeof(*p));
		lines[nlines++] = p;
		p->nt = nt;
		p->disjoint = disjoint;
		p->reps = reps;
		if (disjoint) {
			own = xcalloc(nt, sizeof(*own));
			for (unsigned t = 0; t < nt; t++)
				own[t] = gen_disjoint(nt, t);
		}
		for (unsigned r = 0; r < reps; r++) {
			for (int j = 0; j <= NR_IMPL; j++) {
				int k = (int)(r + (unsigned)j) % (NR_IMPL + 1);
				double a, b;

				if (!opt.quick)
					progress(
						"N4 threads=1,%u queries=%s %s "
						"rep %u/%u",
						nt,
						disjoint ? "disjoint" :
							   "shared",
						names[k], r + 1, reps);
				a = n4_point(k, 1, q, NULL, &one->total[k],
					     &one->cpus[k][one->reps]);
				one->ops[k][one->reps] = a;
				b = n4_point(k, nt, q, own, &p->total[k],
					     &p->cpus[k][r]);
				p->ops[k][r] = b;
				p->scaling[k][r] = b / a;
			}
			if (one->reps < 127)
				one->reps++;
		}
		for (unsigned t = 0; own && t < nt; t++)
			free(own[t]);
		free(own);
	}
	if (want_one && !nlines) {
		for (unsigned r = 0; r < reps; r++) {
			for (int k = 0; k <= NR_IMPL; k++)
				one->ops[k][r] =
					n4_point(k, 1, q, NULL, &one->total[k],
						 &one->cpus[k][r]);
		}
		one->reps = reps;
	}
	if (want_one)
		n4_print(one);
	for (unsigned i = 0; i < nlines; i++) {
		n4_print(lines[i]);
		free(lines[i]);
	}
	free(lines);
	free(one);
	free(q);
}

/* ---- N5 ---- */

/* Enough objects that release() has usually run before one comes back. */
#define N5_RING 65536

static void run_n5(void)
{
	size_t nring = opt.churn < N5_RING ? opt.churn : N5_RING;
	struct query *rq = xcalloc(nring, sizeof(*rq));
	struct obj *ring[NR_IMPL];
	double w1[64];
	unsigned reps = opt.reps;

	/* The churned ranges: the stream's next dense intervals. */
	stream_intervals(NULL, L.n);
	for (size_t i = 0; i < nring; i++)
		rq[i] = dense_interval();
	for (int k = 0; k < NR_IMPL; k++) {
		ring[k] = xcalloc(nring, sizeof(struct obj));
		for (size_t i = 0; i < nring; i++) {
			pthread_mutex_init(&ring[k][i].lock, NULL);
			ring[k][i].released = true;
		}
	}

	/* T-W1 at n = subs, on the layout's intervals, in a bare tree. */
	{
		struct itn_tnode *nodes = xcalloc(L.n, sizeof(*nodes));
		struct itn_tree t;

		itn__tree_init(&t);
		for (size_t i = 0; i < L.n; i++) {
			itn__tnode_init(&nodes[i]);
			atomic_store_explicit(&nodes[i].start, L.iv[i].start,
					      memory_order_relaxed);
			atomic_store_explicit(&nodes[i].last, L.iv[i].last,
					      memory_order_relaxed);
		}
		for (unsigned r = 0; r < reps; r++) {
			uint64_t t0 = now_ns();

			bench_tree_w1_loop(&t, nodes, L.n, opt.w1_loops);
			w1[r] = (double)(now_ns() - t0) /
				((double)L.n * opt.w1_loops);
		}
		free(nodes);
	}
	double w1_med = median(w1, reps);

	for (int rel = 1; rel >= 0; rel--) {
		double ns[NR_IMPL][64];

		if (opt.n5_release >= 0 && rel != opt.n5_release)
			continue;
		uint64_t waits[NR_IMPL] = { 0, 0 };
		uint64_t wait_ns[NR_IMPL] = { 0, 0 };
		struct line l;

		for (unsigned r = 0; r < reps; r++) {
			for (int j = 0; j < NR_IMPL; j++) {
				int k = (int)(r + (unsigned)j) % NR_IMPL;
				uint64_t t0 = now_ns(), w = 0;

				waits[k] += churn_loop[k](L.space[k], ring[k],
							  rq, nring, opt.churn,
							  rel, &w);
				wait_ns[k] += w;
				ns[k][r] = (double)(now_ns() - t0 - w) /
					   (double)opt.churn;
			}
		}
		double a = median(ns[ITN], reps), b = median(ns[BL], reps);

		line_begin(&l, "N5");
		line_u(&l, "subs", L.n);
		line_str(&l, "release", rel ? "yes" : "no");
		line_f(&l, "ns_pair", 2, a);
		line_f(&l, "base_ns_pair", 2, b);
		line_f(&l, "ratio_base", 3, a / b);
		line_f(&l, "w1_ns_pair", 2, w1_med);
		line_f(&l, "ratio_w1", 3, a / w1_med);
		line_f(&l, "base_ratio_w1", 3, b / w1_med);
		line_u(&l, "release_waits", waits[ITN]);
		line_f(&l, "release_wait_ms", 1, (double)wait_ns[ITN] / 1e6);
		line_u(&l, "pairs", opt.churn);
		line_u(&l, "reps", reps);
		line_end(&l);
	}
	for (int k = 0; k < NR_IMPL; k++) {
		impls[k]->synchronize();
		for (size_t i = 0; i < nring; i++)
			pthread_mutex_destroy(&ring[k][i].lock);
		free(ring[k]);
	}
	free(rq);
}

/* ---- N6: the mirror ---- */

#define CHUNK_PAGES 256

struct mirror {
	void *space;
	_Atomic uint64_t *primary;
	struct obj *chunks;
	uint64_t nchunks, npages;
	_Atomic bool stop;
	_Atomic uint64_t stale;
	pthread_barrier_t bar;
	/* The mm: every 64th invalidation drains the running ones, as
	 * mmap_write_lock() would (examples/mirror.c). */
	pthread_mutex_t mm_lock;
	pthread_cond_t mm_cond;
	int mm_inside;
	bool mm_draining;
};

struct n6_arg {
	_Alignas(64) struct mirror *m;
	uint64_t ops, retries, rng, cpu_ns;
};

static uint64_t xs_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void mm_gate(struct mirror *m, bool enter, bool drain)
{
	pthread_mutex_lock(&m->mm_lock);
	while (enter && m->mm_draining)
		pthread_cond_wait(&m->mm_cond, &m->mm_lock);
	m->mm_draining |= drain;
	while (drain && m->mm_inside)
		pthread_cond_wait(&m->mm_cond, &m->mm_lock);
	if (drain)
		m->mm_draining = false;
	m->mm_inside += enter ? 1 : -1;
	pthread_cond_broadcast(&m->mm_cond);
	pthread_mutex_unlock(&m->mm_lock);
}

/* A device fault of page @p: the collision-retry loop. */
BENCH_INLINE void fault(const struct impl *im, struct mirror *m,
			struct n6_arg *a, uint64_t p)
{
	struct obj *c = &m->chunks[p / CHUNK_PAGES];
	uint64_t seq, v;

	for (;;) {
		seq = im->read_begin(c);
		v = atomic_load_explicit(&m->primary[p], memory_order_acquire);
		pthread_mutex_lock(&c->lock);
		if (!im->read_retry(c, seq))
			break;
		pthread_mutex_unlock(&c->lock);
		a->retries++;
	}
	c->pte[p - c->first].version = v;
	c->pte[p - c->first].valid = true;
	pthread_mutex_unlock(&c->lock);
}

BENCH_INLINE void reader_body(const struct impl *im, struct n6_arg *a)
{
	struct mirror *m = a->m;
	uint64_t cpu0;

	pthread_barrier_wait(&m->bar);
	cpu0 = thread_cpu_ns();
	while (!atomic_load_explicit(&m->stop, memory_order_relaxed)) {
		fault(im, m, a, xs_next(&a->rng) % m->npages);
		a->ops++;
	}
	a->cpu_ns = thread_cpu_ns() - cpu0;
}

/*
 * N6 --inval-rate: a writer starts its invalidations on a schedule of
 * opt.inval_rate per second, sleeping (CLOCK_MONOTONIC, absolute) until
 * the next one is due.  A writer that falls more than one interval
 * behind starts the schedule again from now rather than catching up in
 * a burst.
 */
struct pace {
	uint64_t next, step; /* ns; step 0: no limit */
};

static void pace_init(struct pace *p)
{
	p->step = opt.inval_rate ? 1000000000u / opt.inval_rate : 0;
	p->next = now_ns();
}

static void pace_wait(struct pace *p)
{
	uint64_t now;

	if (!p->step)
		return;
	now = now_ns();
	if (now < p->next) {
		struct timespec ts = { (time_t)(p->next / 1000000000u),
				       (long)(p->next % 1000000000u) };

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
				       NULL) == EINTR)
			;
	} else if (now - p->next > p->step) {
		p->next = now;
	}
	p->next += p->step;
}

BENCH_INLINE void writer_body(const struct impl *im, struct n6_arg *a)
{
	struct mirror *m = a->m;
	uint64_t stale = 0, cpu0;
	struct pace pace;

	pthread_barrier_wait(&m->bar);
	cpu0 = thread_cpu_ns();
	pace_init(&pace);
	for (uint64_t i = 0;
	     !atomic_load_explicit(&m->stop, memory_order_relaxed); i++) {
		uint64_t n = 1 + xs_next(&a->rng) %
					 (m->npages < 16 ? m->npages : 16);
		uint64_t lo = xs_next(&a->rng) % (m->npages - n + 1);
		uint64_t hi = lo + n - 1;
		struct query q = { lo << PAGE_SHIFT,
				   ((hi + 1) << PAGE_SHIFT) - 1 };
		struct itn_range r = range_of(&q);

		pace_wait(&pace);
		mm_gate(m, true, i % 64 == 63);
		if (im->inv_start(m->space, &r))
			abort();
		/* No device entry of the range may survive the start. */
		for (uint64_t p = lo; p <= hi; p++) {
			struct obj *c = &m->chunks[p / CHUNK_PAGES];

			pthread_mutex_lock(&c->lock);
			stale += c->pte[p - c->first].valid;
			pthread_mutex_unlock(&c->lock);
		}
		for (uint64_t p = lo; p <= hi; p++)
			atomic_fetch_add_explicit(&m->primary[p], 1,
						  memory_order_release);
		im->inv_end(m->space, &r);
		mm_gate(m, false, false);
		a->ops++;
	}
	atomic_fetch_add(&m->stale, stale);
	a->cpu_ns = thread_cpu_ns() - cpu0;
}

#define N6_THREADS(impl_, sfx)                                     \
	BENCH_NOINLINE static void *bench_n6_reader_##sfx(void *a) \
	{                                                          \
		reader_body(&impl_, a);                            \
		return NULL;                                       \
	}                                                          \
	BENCH_NOINLINE static void *bench_n6_writer_##sfx(void *a) \
	{                                                          \
		writer_body(&impl_, a);                            \
		return NULL;                                       \
	}

N6_THREADS(itn_impl, itn)
N6_THREADS(bl_impl, bl)

static void *(*const n6_reader[NR_IMPL])(void *) = { bench_n6_reader_itn,
						     bench_n6_reader_bl };
static void *(*const n6_writer[NR_IMPL])(void *) = { bench_n6_writer_itn,
						     bench_n6_writer_bl };

struct n6_result {
	double faults_s, invals_s, cpus;
	uint64_t stale, retries, waits, faults;
};

static struct n6_result n6_point(int k, unsigned nr, unsigned nw)
{
	const struct impl *im = impls[k];
	struct mirror *m = xcalloc(1, sizeof(*m));
	unsigned nt = nr + nw;
	struct n6_arg *a = aligned_alloc(64, nt * sizeof(*a));
	pthread_t *tid = xcalloc(nt, sizeof(*tid));
	struct n6_result res = { 0, 0, 0, 0, 0, 0, 0 };
	uint64_t t0, t1, faults = 0, invals = 0, cpu_ns = 0;

	if (!a)
		die("out of memory");
	m->npages = opt.pages;
	m->nchunks = (m->npages + CHUNK_PAGES - 1) / CHUNK_PAGES;
	m->primary = xcalloc(m->npages, sizeof(*m->primary));
	m->chunks = xcalloc(m->nchunks, sizeof(*m->chunks));
	m->space = im->space_new();
	pthread_mutex_init(&m->mm_lock, NULL);
	pthread_cond_init(&m->mm_cond, NULL);
	pthread_barrier_init(&m->bar, NULL, nt + 1);
	for (uint64_t i = 0; i < m->nchunks; i++) {
		struct obj *c = &m->chunks[i];

		c->first = i * CHUNK_PAGES;
		c->npages = m->npages - c->first < CHUNK_PAGES ?
				    m->npages - c->first :
				    CHUNK_PAGES;
		c->pte = xcalloc(c->npages, sizeof(*c->pte));
		pthread_mutex_init(&c->lock, NULL);
		im->insert(m->space, c, c->first << PAGE_SHIFT,
			   c->npages << PAGE_SHIFT, false);
	}
	for (unsigned t = 0; t < nt; t++) {
		memset(&a[t], 0, sizeof(a[t]));
		a[t].m = m;
		a[t].rng = (t + 1) * UINT64_C(0x9e3779b97f4a7c15);
	}
	start_threads(tid, nr, n6_reader[k], a, sizeof(*a));
	start_threads(tid + nr, nw, n6_writer[k], a + nr, sizeof(*a));
	pthread_barrier_wait(&m->bar);
	t0 = now_ns();
	sleep_s(opt.seconds);
	atomic_store_explicit(&m->stop, true, memory_order_relaxed);
	t1 = now_ns();
	for (unsigned t = 0; t < nt; t++) {
		pthread_join(tid[t], NULL);
		cpu_ns += a[t].cpu_ns;
		if (t < nr) {
			faults += a[t].ops;
			res.retries += a[t].retries;
		} else {
			invals += a[t].ops;
		}
	}
	/* At rest, every valid device entry must be up to date. */
	for (uint64_t p = 0; p < m->npages; p++) {
		struct obj *c = &m->chunks[p / CHUNK_PAGES];
		struct dev_pte *e = &c->pte[p - c->first];

		if (e->valid &&
		    e->version != atomic_load_explicit(&m->primary[p],
						       memory_order_relaxed))
			m->stale++;
	}
	res.faults_s = (double)faults * 1e9 / (double)(t1 - t0);
	res.invals_s = (double)invals * 1e9 / (double)(t1 - t0);
	res.stale = m->stale;
	res.faults = faults;
	if (k == ITN) {
		struct itn_stats st;

		itn_space_stats(m->space, &st);
		res.waits = st.read_waits;
	} else {
		res.waits = ((struct bl_space *)m->space)->read_waits;
	}
	res.cpus = (double)cpu_ns / (double)(t1 - t0);

	for (uint64_t i = 0; i < m->nchunks; i++) {
		obj_remove_sync(im, &m->chunks[i]);
		pthread_mutex_destroy(&m->chunks[i].lock);
		free(m->chunks[i].pte);
	}
	im->space_free(m->space);
	pthread_barrier_destroy(&m->bar);
	pthread_cond_destroy(&m->mm_cond);
	pthread_mutex_destroy(&m->mm_lock);
	free(m->chunks);
	free((void *)m->primary);
	free(m);
	free(tid);
	free(a);
	return res;
}

static void run_n6(void)
{
	unsigned reps = opt.reps > 3 ? 3 : opt.reps;
	bool bad = false;

	for (unsigned ri = 0; ri < opt.nreaders; ri++) {
		unsigned nr = opt.readers[ri];
		double f[NR_IMPL][64], in[NR_IMPL][64], cpus[NR_IMPL][64];
		uint64_t stale[NR_IMPL] = { 0, 0 }, retries[NR_IMPL] = { 0, 0 };
		uint64_t waits[NR_IMPL] = { 0, 0 }, faults[NR_IMPL] = { 0, 0 };
		struct line l;

		for (unsigned r = 0; r < reps; r++) {
			for (int j = 0; j < NR_IMPL; j++) {
				int k = (int)(r + (unsigned)j) % NR_IMPL;
				struct n6_result res;

				if (!opt.quick)
					progress("N6 readers=%u writers=%u %s "
						 "rep %u/%u",
						 nr, opt.writers,
						 impls[k]->name, r + 1, reps);
				res = n6_point(k, nr, opt.writers);
				f[k][r] = res.faults_s;
				in[k][r] = res.invals_s;
				cpus[k][r] = res.cpus;
				stale[k] += res.stale;
				retries[k] += res.retries;
				waits[k] += res.waits;
				faults[k] += res.faults;
			}
		}
		double fa = median(f[ITN], reps), fb = median(f[BL], reps);
		double ia = median(in[ITN], reps), ib = median(in[BL], reps);

		line_begin(&l, "N6");
		line_u(&l, "readers", nr);
		line_u(&l, "writers", opt.writers);
		line_u(&l, "pages", opt.pages);
		line_u(&l, "inval_rate", opt.inval_rate);
		line_f(&l, "faults_s", 0, fa);
		line_f(&l, "base_faults_s", 0, fb);
		line_f(&l, "ratio_faults", 3, fa / fb);
		line_f(&l, "invals_s", 0, ia);
		line_f(&l, "base_invals_s", 0, ib);
		line_f(&l, "ratio_invals", 3, ib > 0 ? ia / ib : 0);
		line_u(&l, "stale", stale[ITN]);
		line_u(&l, "base_stale", stale[BL]);
		line_u(&l, "retries", retries[ITN]);
		line_u(&l, "base_retries", retries[BL]);
		/* Faults that slept in read_begin, per thousand. */
		line_f(&l, "waits_pm", 2,
		       faults[ITN] ? 1000.0 * (double)waits[ITN] /
					     (double)faults[ITN] :
				     0);
		line_f(&l, "base_waits_pm", 2,
		       faults[BL] ?
			       1000.0 * (double)waits[BL] / (double)faults[BL] :
			       0);
		line_f(&l, "cpus", 2, median(cpus[ITN], reps));
		line_f(&l, "base_cpus", 2, median(cpus[BL], reps));
		line_f(&l, "seconds", 2, opt.seconds);
		line_u(&l, "reps", reps);
		line_end(&l);
		bad |= stale[ITN] || stale[BL];
	}
	if (bad)
		die("N6: stale device mappings (see the stale= fields)");
}

/* ---- M1 ---- */

static void run_m1(void)
{
	size_t n = opt.subs;
	double heap = -1;
	struct line l;

#ifdef __GLIBC__
	/* The space allocates nothing per subscription: check it. */
	{
		void *s = itn_space_new_();
		struct obj *o = xcalloc(n, sizeof(*o));
		struct mallinfo2 m0, m1;

		m0 = mallinfo2();
		for (size_t i = 0; i < n; i++)
			itn_insert_(s, &o[i], i * 8192, 4096, true);
		m1 = mallinfo2();
		heap = ((double)m1.uordblks - (double)m0.uordblks) / (double)n;
		for (size_t i = 0; i < n; i++)
			itn_remove_(&o[i]);
		itn_synchronize();
		itn_space_free_(s);
		free(o);
	}
#endif
	line_begin(&l, "M1");
	line_u(&l, "sizeof_sub", sizeof(struct itn_sub));
	line_u(&l, "used", sizeof(struct itn__sub));
	line_u(&l, "bytes_per_sub", sizeof(struct itn_sub));
	line_f(&l, "heap_per_sub", 2, heap);
	line_u(&l, "kernel", KERNEL_SUB_BYTES);
	line_f(&l, "ratio", 3,
	       (double)sizeof(struct itn_sub) / KERNEL_SUB_BYTES);
	line_u(&l, "base_sizeof_sub", sizeof(struct bl_sub));
	line_u(&l, "sizeof_space", sizeof(struct itn_space));
	line_end(&l);
}

/* ---- main ---- */

static const char usage[] =
	"usage: itn-bench-notifier [--workload N1|N2|N3|N4|N5|N6|M1|all]\n"
	"        [--json] [--quick] [--reps N] [--subs N] [--queries N]\n"
	"        [--iters N] [--passes N] [--churn N] [--w1-loops N]\n"
	"        [--seconds S] [--threads LIST] [--readers LIST]\n"
	"        [--writers N] [--pages N] [--release yes|no|both]\n"
	"        [--align N] [--paths fast|locked|both] [--inval-rate N]\n"
	"Runs the N workloads of WORKLOADS.md, libitn against a kernel-style\n"
	"baseline (one mutex per space) in the same process.  LIST is a\n"
	"comma-separated list of thread counts; --threads (N4) and --readers\n"
	"(N6) default to every count from 1 to the number of CPUs.  Defaults:\n"
	"--reps 7 --subs 10000 --queries 4096 --iters 2000000 --passes 50\n"
	"--churn 200000 --w1-loops 20 --seconds 0.5 --writers 1 --pages 4096\n"
	"--release both (N5's churned subscription with release() or not).\n"
	"--align N: the 10^4 subscribers start every N bytes (a power of two;\n"
	"0, the default: an array of the bench's 240-byte objects).\n"
	"--paths (N2, N3): libitn with its lock-free fast paths, with its\n"
	"locked paths alone, or both side by side (the default).\n"
	"--inval-rate N (N6): each writer starts at most N invalidations per\n"
	"second (0, the default: as fast as it can).\n"
	"N4 and N6 use at most 3 repetitions per point.\n"
	"--quick: a few seconds in all.\n";

static unsigned long parse_num(const char *opt_name, const char *s,
			       unsigned long min)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min)
		die("bad value for %s: %s", opt_name, s);
	return v;
}

static unsigned parse_list(const char *opt_name, const char *s, unsigned *out)
{
	unsigned n = 0;
	char buf[256], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (n == 64)
			die("%s: at most 64 values", opt_name);
		out[n++] = (unsigned)parse_num(opt_name, tok, 1);
	}
	if (!n)
		die("%s: empty list", opt_name);
	return n;
}

int main(int argc, char **argv)
{
	const char *workload = "all";
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	bool set_reps = false, set_iters = false, set_passes = false;
	bool set_churn = false, set_w1 = false, set_sec = false;

	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > 64)
		ncpu = 64;
	opt.subs = 10000;
	opt.nq = 4096;
	opt.writers = 1;
	opt.pages = 4096;
	opt.n5_release = -1;
	opt.paths = PATHS_FAST | PATHS_LOCKED;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--json")) {
			opt.json = true;
			continue;
		}
		if (!strcmp(a, "--quick")) {
			opt.quick = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		}
		if (!v || strncmp(a, "--", 2)) {
			fputs(usage, stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--workload")) {
			workload = v;
		} else if (!strcmp(a, "--reps")) {
			opt.reps = (unsigned)parse_num(a, v, 1);
			if (opt.reps > 64)
				die("--reps: at most 64");
			set_reps = true;
		} else if (!strcmp(a, "--subs")) {
			opt.subs = parse_num(a, v, 1);
		} else if (!strcmp(a, "--queries")) {
			opt.nq = parse_num(a, v, 1);
		} else if (!strcmp(a, "--iters")) {
			opt.iters = parse_num(a, v, 1);
			set_iters = true;
		} else if (!strcmp(a, "--passes")) {
			opt.passes = (unsigned)parse_num(a, v, 1);
			set_passes = true;
		} else if (!strcmp(a, "--churn")) {
			opt.churn = parse_num(a, v, 1);
			set_churn = true;
		} else if (!strcmp(a, "--w1-loops")) {
			opt.w1_loops = (unsigned)parse_num(a, v, 1);
			set_w1 = true;
		} else if (!strcmp(a, "--seconds")) {
			char *end;

			opt.seconds = strtod(v, &end);
			if (end == v || *end || !(opt.seconds > 0))
				die("bad value for --seconds: %s", v);
			set_sec = true;
		} else if (!strcmp(a, "--threads")) {
			opt.nthreads = parse_list(a, v, opt.threads);
		} else if (!strcmp(a, "--readers")) {
			opt.nreaders = parse_list(a, v, opt.readers);
		} else if (!strcmp(a, "--writers")) {
			opt.writers = (unsigned)parse_num(a, v, 0);
		} else if (!strcmp(a, "--pages")) {
			opt.pages = parse_num(a, v, 1);
		} else if (!strcmp(a, "--align")) {
			opt.align = parse_num(a, v, 0);
			if (opt.align & (opt.align - 1) ||
			    (opt.align && opt.align < sizeof(void *)))
				die("--align: 0 or a power of two >= %zu",
				    sizeof(void *));
		} else if (!strcmp(a, "--inval-rate")) {
			opt.inval_rate = parse_num(a, v, 0);
			if (opt.inval_rate > 1000000000u)
				die("--inval-rate: at most 10^9");
		} else if (!strcmp(a, "--paths")) {
			if (!strcmp(v, "fast"))
				opt.paths = PATHS_FAST;
			else if (!strcmp(v, "locked"))
				opt.paths = PATHS_LOCKED;
			else if (!strcmp(v, "both"))
				opt.paths = PATHS_FAST | PATHS_LOCKED;
			else
				die("--paths: fast, locked or both");
		} else if (!strcmp(a, "--release")) {
			if (!strcmp(v, "yes") || !strcmp(v, "no"))
				opt.n5_release = !strcmp(v, "yes");
			else if (strcmp(v, "both"))
				die("--release: yes, no or both");
		} else {
			fputs(usage, stderr);
			return 2;
		}
	}
	if (!set_reps)
		opt.reps = opt.quick ? 3 : 7;
	if (!set_iters)
		opt.iters = opt.quick ? 200000 : 2000000;
	if (!set_passes)
		opt.passes = opt.quick ? 5 : 50;
	if (!set_churn)
		opt.churn = opt.quick ? 20000 : 200000;
	if (!set_w1)
		opt.w1_loops = opt.quick ? 2 : 20;
	if (!set_sec)
		opt.seconds = opt.quick ? 0.1 : 0.5;
	if (!opt.nthreads)
		for (long t = 1; t <= ncpu; t++)
			opt.threads[opt.nthreads++] = (unsigned)t;
	if (!opt.nreaders)
		for (long t = 1; t <= ncpu; t++)
			opt.readers[opt.nreaders++] = (unsigned)t;

	static const char *const names[] = { "N1", "N2", "N3", "N4",
					     "N5", "N6", "M1" };
	bool want[7] = { false };
	bool all = !strcmp(workload, "all");

	for (int w = 0; w < 7; w++)
		want[w] = all || !strcmp(workload, names[w]);
	if (!all && !want[0] && !want[1] && !want[2] && !want[3] && !want[4] &&
	    !want[5] && !want[6]) {
		fputs(usage, stderr);
		return 2;
	}

	if (want[0] || want[1] || want[2] || want[3] || want[4])
		layout_build();
	if (want[0])
		run_n1();
	/* N3's ratio needs N2 from the same run: measured quietly when
	 * only N3 was asked for. */
	if (want[1] || want[2])
		run_startend(false, !want[1]);
	if (want[2])
		run_startend(true, false);
	if (want[4])
		run_n5();
	if (want[3])
		run_n4();
	layout_destroy();
	if (want[5])
		run_n6();
	if (want[6])
		run_m1();
	return 0;
}
