/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * peers.h - what the peer benches share (issue 8): the P workloads of
 * research/peers.md §9.2, run by itn-bench-peers (libitn, the in-bench
 * baselines, and the driver) and by one process per peer
 * (itn-bench-peer-ucx, itn-bench-peer-ompi).
 *
 * Every process draws its intervals and queries from the same generators
 * here, so the driver can put libitn's figure and a peer's, measured in two
 * processes of the same run, on one line.
 *
 * The random stream is WORKLOADS.md T1 (xorshift64*, Vigna), copied from
 * itn-bench.c rather than shared with it, as a value type so that threads
 * can have their own stream; the T2/T3 interval and query formulas are
 * copied the same way, with their T6 digests.
 */
#ifndef ITN_BENCH_PEERS_H
#define ITN_BENCH_PEERS_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__clang__)
#define PB_NOINLINE __attribute__((noinline))
#else
#define PB_NOINLINE __attribute__((noinline, noclone))
#endif

/* ---- T1: xorshift64*, one stream per value ---- */

struct pb_rng {
	uint64_t s;
};

static inline void pb_rng_seed(struct pb_rng *r, uint64_t seed)
{
	r->s = seed;
}

static inline uint64_t pb_rng_next(struct pb_rng *r)
{
	uint64_t x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Top 32 bits: 0 .. 2^32-1 (T1's r32()). */
static inline uint64_t pb_r32(struct pb_rng *r)
{
	return pb_rng_next(r) >> 32;
}

/* Uniform-ish in [0, n), n < 2^32, without a division (Lemire). */
static inline uint64_t pb_below(struct pb_rng *r, uint64_t n)
{
	return (pb_r32(r) * n) >> 32;
}

/* ---- T2/T3: the kernel-test streams ---- */

enum pb_variant { PB_SPARSE, PB_DENSE };

#define PB_DENSE_PAGES 262144 /* 2^30 / 4096 */

/* One T2 interval from stream @r. */
static inline void pb_t_interval(struct pb_rng *r, enum pb_variant v,
				 uint64_t *start, uint64_t *last)
{
	uint64_t a = pb_r32(r), b = pb_r32(r);

	if (v == PB_SPARSE) {
		*last = a;
		*start = a != 0 ? b % a : 0;
	} else {
		uint64_t np = 1 + a % 16;
		uint64_t page = b % (PB_DENSE_PAGES - np + 1);

		*start = page * 4096;
		*last = *start + np * 4096 - 1;
	}
}

/* One T3 W2 point query from stream @r (continuing the intervals). */
static inline uint64_t pb_t_point(struct pb_rng *r, enum pb_variant v)
{
	return v == PB_SPARSE ? pb_r32(r) : pb_r32(r) % (UINT64_C(1) << 30);
}

/* T6 digests for n = 100, 10^4, 10^6 (index 0..2). */
struct pb_t_digest {
	size_t n, q;
	uint64_t sum_start, sum_last, sum_qstart, hits;
};

static const struct pb_t_digest pb_t_digests[2][3] = {
	[PB_SPARSE] = {
		{ 100, 1000000, 101793260823ULL, 225614178918ULL,
		  2147401612465281ULL, 28812001 },
		{ 10000, 100000, 9725351480251ULL, 21489732853616ULL,
		  214550584843991ULL, 273836049 },
		{ 1000000, 100, 968992276234756ULL, 2145065665038494ULL,
		  221064708662ULL, 27671741 },
	},
	[PB_DENSE] = {
		{ 100, 1000000, 53910372352ULL, 53913821084ULL,
		  536698682152065ULL, 3108 },
		{ 10000, 1000000, 5389842681856ULL, 5390192109808ULL,
		  536694653883142ULL, 325860 },
		{ 1000000, 1000000, 537050065113088ULL, 537084893736384ULL,
		  536973996443839ULL, 32437800 },
	},
};

static inline const struct pb_t_digest *pb_t_digest(enum pb_variant v, size_t n)
{
	for (int i = 0; i < 3; i++)
		if (pb_t_digests[v][i].n == n)
			return &pb_t_digests[v][i];
	return NULL;
}

/*
 * A T stream: n intervals then q point queries, generated into arrays, with
 * the digests checked.  Returns NULL (after a message) on a mismatch.
 */
struct pb_tset {
	size_t n, q;
	uint64_t *start, *last, *query;
};

static inline void *pb_xmalloc(size_t sz)
{
	void *p = malloc(sz ? sz : 1);

	if (!p) {
		fprintf(stderr, "itn-bench-peers: out of memory (%zu)\n", sz);
		exit(2);
	}
	return p;
}

static inline void pb_tset_free(struct pb_tset *t)
{
	free(t->start);
	free(t->last);
	free(t->query);
}

static inline bool pb_tset_make(struct pb_tset *t, enum pb_variant v, size_t n)
{
	const struct pb_t_digest *d = pb_t_digest(v, n);
	uint64_t ss = 0, sl = 0, sq = 0;
	struct pb_rng r;

	if (!d) {
		fprintf(stderr, "itn-bench-peers: no T stream with n=%zu\n", n);
		return false;
	}
	t->n = n;
	t->q = d->q;
	t->start = pb_xmalloc(n * sizeof(uint64_t));
	t->last = pb_xmalloc(n * sizeof(uint64_t));
	t->query = pb_xmalloc(t->q * sizeof(uint64_t));
	pb_rng_seed(&r, 1);
	for (size_t i = 0; i < n; i++) {
		pb_t_interval(&r, v, &t->start[i], &t->last[i]);
		ss += t->start[i];
		sl += t->last[i];
	}
	for (size_t i = 0; i < t->q; i++) {
		t->query[i] = pb_t_point(&r, v);
		sq += t->query[i];
	}
	if (ss != d->sum_start || sl != d->sum_last || sq != d->sum_qstart) {
		fprintf(stderr, "itn-bench-peers: T stream digest mismatch\n");
		pb_tset_free(t);
		return false;
	}
	return true;
}

/* ---- the P layouts (peers.md §9.2) ---- */

/* P1/P4/P6/P7: n disjoint 4 KiB regions at an 8 KiB stride. */
#define PB_BASE UINT64_C(0x100000000000) /* 2^44: nothing is mapped there */
#define PB_STRIDE UINT64_C(8192)
#define PB_LEN UINT64_C(4096)

static inline uint64_t pb_region(uint64_t i)
{
	return PB_BASE + i * PB_STRIDE;
}

/* P1: the query [addr + 64, addr + 64 + 127]. */
#define PB_Q_OFF 64
#define PB_Q_LEN 128

/* P5: regions at a 1 MiB stride; events are 256 KiB ranges in the gaps. */
#define PB_P5_STRIDE (UINT64_C(1) << 20)
#define PB_P5_EVENT (UINT64_C(256) << 10)

static inline uint64_t pb_p5_region(uint64_t i)
{
	return PB_BASE + i * PB_P5_STRIDE;
}

/* A random 256 KiB range that overlaps no P5 region. */
static inline uint64_t pb_p5_event(struct pb_rng *r, uint64_t n)
{
	uint64_t i = pb_below(r, n);
	uint64_t pages = (PB_P5_STRIDE - 2 * PB_LEN - PB_P5_EVENT) / 4096;

	return pb_p5_region(i) + 2 * PB_LEN + pb_below(r, pages + 1) * 4096;
}

/* P6: a random 256 KiB range, page aligned, over the P1 layout. */
static inline uint64_t pb_p6_event(struct pb_rng *r, uint64_t n)
{
	uint64_t pages = n * PB_STRIDE / 4096;

	return PB_BASE + pb_below(r, pages) * 4096;
}

/*
 * P8: overlapping random intervals as in peers.md §9.3 "opal overlapping":
 * lo = (r>>32) mod 2^30, len = 1 + (r>>32) mod 2^20, seed 1.  Queries
 * continue the stream: points q = (r>>32) mod 2^30, and ranges
 * [q, q + (r>>32) mod 2^16].
 */
static inline void pb_p8_interval(struct pb_rng *r, uint64_t *lo, uint64_t *hi)
{
	*lo = pb_r32(r) % (UINT64_C(1) << 30);
	*hi = *lo + pb_r32(r) % (UINT64_C(1) << 20);
}

static inline void pb_p8_query(struct pb_rng *r, bool range, uint64_t *lo,
			       uint64_t *hi)
{
	*lo = pb_r32(r) % (UINT64_C(1) << 30);
	*hi = range ? *lo + pb_r32(r) % (UINT64_C(1) << 16) : *lo;
}

/* P9: 64-byte translation blocks, 50 per 4 KiB code page. */
#define PB_TB_SIZE 64
#define PB_TB_PER_PAGE 50
#define PB_CODE_BASE UINT64_C(0x400000)

static inline uint64_t pb_tb_addr(uint64_t i)
{
	return PB_CODE_BASE + (i / PB_TB_PER_PAGE) * 4096 +
	       (i % PB_TB_PER_PAGE) * PB_TB_SIZE;
}

/*
 * P9 store stream: 1 in 10 stores goes to a random 8-byte word of a random
 * TB (it hits exactly that TB), the others to data pages after the code.
 */
static inline uint64_t pb_p9_store(struct pb_rng *r, uint64_t ntb)
{
	uint64_t code_pages = (ntb + PB_TB_PER_PAGE - 1) / PB_TB_PER_PAGE;

	if (pb_below(r, 10) == 0)
		return pb_tb_addr(pb_below(r, ntb)) + 8 * pb_below(r, 8);
	return PB_CODE_BASE + code_pages * 4096 +
	       8 * pb_below(r, 4 * code_pages * 4096 / 8);
}

/*
 * P2 "disjoint" queries over the P1 layout: a random 16-byte-aligned byte
 * of the layout's span, so about half fall in a region; *@hits counts
 * those (the same stream in every process).
 */
static inline uint64_t *pb_disjoint_queries(uint64_t n, uint64_t nq,
					    uint64_t *hits)
{
	uint64_t *q = pb_xmalloc(nq * sizeof(*q));
	struct pb_rng r;

	pb_rng_seed(&r, 1);
	*hits = 0;
	for (uint64_t i = 0; i < nq; i++) {
		uint64_t off = pb_below(&r, n * PB_STRIDE / 16) * 16;

		q[i] = PB_BASE + off;
		*hits += off % PB_STRIDE < PB_LEN;
	}
	return q;
}

/* ---- point-containment oracle (sorted starts + prefix max of last) ---- */

struct pb_oracle {
	size_t n;
	uint64_t *start, *maxlast;
};

static inline int pb_cmp_pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return x[0] < y[0] ? -1 : x[0] > y[0];
}

static inline void pb_oracle_init(struct pb_oracle *o, const uint64_t *start,
				  const uint64_t *last, size_t n)
{
	uint64_t *pairs = pb_xmalloc(2 * n * sizeof(uint64_t));
	uint64_t m = 0;

	for (size_t i = 0; i < n; i++) {
		pairs[2 * i] = start[i];
		pairs[2 * i + 1] = last[i];
	}
	qsort(pairs, n, 2 * sizeof(uint64_t), pb_cmp_pair);
	o->n = n;
	o->start = pb_xmalloc(n * sizeof(uint64_t));
	o->maxlast = pb_xmalloc(n * sizeof(uint64_t));
	for (size_t i = 0; i < n; i++) {
		o->start[i] = pairs[2 * i];
		if (pairs[2 * i + 1] > m || i == 0)
			m = pairs[2 * i + 1];
		o->maxlast[i] = m;
	}
	free(pairs);
}

static inline void pb_oracle_free(struct pb_oracle *o)
{
	free(o->start);
	free(o->maxlast);
}

/* Does some interval contain the point @q? */
static inline bool pb_oracle_hit(const struct pb_oracle *o, uint64_t q)
{
	size_t lo = 0, hi = o->n; /* first index with start > q */

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (o->start[mid] <= q)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && o->maxlast[lo - 1] >= q;
}

/* ---- time and memory ---- */

static inline uint64_t pb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread, ns. */
static inline uint64_t pb_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Resident set size in KiB (VmRSS of /proc/self/status), or 0. */
static inline uint64_t pb_rss_kib(void)
{
	char buf[256];
	uint64_t kib = 0;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, "VmRSS:", 6)) {
			kib = strtoull(buf + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

/* ---- output: key=value pairs, or one JSON object per line ---- */

struct pb_line {
	char buf[2048];
	size_t len;
	bool json;
};

static inline void pb_line_add(struct pb_line *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void pb_line_add(struct pb_line *l, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmt, ap);
	va_end(ap);
	if (r > 0)
		l->len += (size_t)r;
	if (l->len >= sizeof(l->buf))
		l->len = sizeof(l->buf) - 1;
}

static inline void pb_line_begin(struct pb_line *l, bool json,
				 const char *workload)
{
	l->len = 0;
	l->json = json;
	if (json)
		pb_line_add(l, "{\"workload\":\"%s\"", workload);
	else
		pb_line_add(l, "%s", workload);
}

static inline void pb_line_str(struct pb_line *l, const char *key,
			       const char *val)
{
	if (l->json)
		pb_line_add(l, ",\"%s\":\"%s\"", key, val);
	else
		pb_line_add(l, " %s=%s", key, val);
}

static inline void pb_line_u64(struct pb_line *l, const char *key, uint64_t v)
{
	if (l->json)
		pb_line_add(l, ",\"%s\":%" PRIu64, key, v);
	else
		pb_line_add(l, " %s=%" PRIu64, key, v);
}

/* A figure with 3 significant decimals (4 below 1). */
static inline void pb_line_dbl(struct pb_line *l, const char *key, double v)
{
	char num[64];

	if (v != 0 && v < 1 && v > -1)
		snprintf(num, sizeof(num), "%.4f", v);
	else if (v < 100 && v > -100)
		snprintf(num, sizeof(num), "%.3f", v);
	else
		snprintf(num, sizeof(num), "%.1f", v);
	if (l->json)
		pb_line_add(l, ",\"%s\":%s", key, num);
	else
		pb_line_add(l, " %s=%s", key, num);
}

static inline void pb_line_end(struct pb_line *l)
{
	if (l->json)
		pb_line_add(l, "}");
	puts(l->buf);
	fflush(stdout);
}

/* ---- key=value arguments (the driver -> peer protocol) ---- */

/* The value of "key=value" in argv[first..argc-1], or @def. */
static inline uint64_t pb_arg_u64(int argc, char **argv, const char *key,
				  uint64_t def)
{
	size_t kl = strlen(key);

	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], key, kl) && argv[i][kl] == '=')
			return strtoull(argv[i] + kl + 1, NULL, 10);
	return def;
}

static inline const char *pb_arg_str(int argc, char **argv, const char *key,
				     const char *def)
{
	size_t kl = strlen(key);

	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], key, kl) && argv[i][kl] == '=')
			return argv[i] + kl + 1;
	return def;
}

#endif /* ITN_BENCH_PEERS_H */
