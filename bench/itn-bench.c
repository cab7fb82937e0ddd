// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itn-bench.c - the T (interval tree) workloads of WORKLOADS.md.
 *
 * Reproduces the kernel reference run exactly: the xorshift64* stream with
 * seed 1, the sparse and dense interval formulas, nodes in one malloc'ed
 * array in generation order, W1 insert+remove, W1m (malloc+insert,
 * remove+free), W2 point and W3 range queries, W4 sizes.  Every
 * configuration checks its digests against the table of WORKLOADS.md T6
 * and prints no time when they differ (exit status 1).
 *
 * The timed loops are the noinline functions bench_tree_*_loop, so that
 * callgrind gives their inclusive instruction counts per op; they do
 * nothing but the operations (the tree is checked outside them).
 *
 * Output: one line per measurement, key=value pairs, first word the
 * workload (or one JSON object per line with --json).
 */
#include "itree.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Keep the timed loops as separate functions with their own names. */
#if defined(__clang__)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_NOINLINE __attribute__((noinline, noclone))
#endif

/* T1: xorshift64* (Vigna).  Nothing else consumes random numbers. */
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

enum variant { SPARSE, DENSE, NR_VARIANTS };
enum workload { W1, W1M, W2, W3, W4, NR_WORKLOADS };

static const char *const variant_name[NR_VARIANTS] = { "sparse", "dense" };
static const char *const workload_name[NR_WORKLOADS] = { "W1", "W1m", "W2",
							 "W3", "W4" };

#define NR_SIZES 3
static const size_t sizes[NR_SIZES] = { 100, 10000, 1000000 };
static const unsigned long w1_loops[NR_SIZES] = { 10000, 100, 1 };
static const size_t sparse_q[NR_SIZES] = { 1000000, 100000, 100 };
#define DENSE_Q 1000000

#define DENSE_PAGES 262144 /* 2^30 / 4096 */

/* T6 digests: generated intervals. */
struct gen_digest {
	uint64_t sum_start, sum_last;
};

static const struct gen_digest gen_digests[NR_VARIANTS][NR_SIZES] = {
	[SPARSE] = { { 101793260823ULL, 225614178918ULL },
		     { 9725351480251ULL, 21489732853616ULL },
		     { 968992276234756ULL, 2145065665038494ULL } },
	[DENSE] = { { 53910372352ULL, 53913821084ULL },
		    { 5389842681856ULL, 5390192109808ULL },
		    { 537050065113088ULL, 537084893736384ULL } },
};

static const uint64_t first_interval[NR_VARIANTS][2] = {
	[SPARSE] = { 470157842, 1206177355 },
	[DENSE] = { 401752064, 401801215 },
};

/* T6 digests: queries and total hits ([W3][SPARSE] is not a workload). */
struct query_digest {
	uint64_t sum_qstart, hits;
};

static const struct query_digest query_digests[2][NR_VARIANTS][NR_SIZES] = {
	[0] = { [SPARSE] = { { 2147401612465281ULL, 28812001 },
			     { 214550584843991ULL, 273836049 },
			     { 221064708662ULL, 27671741 } },
		[DENSE] = { { 536698682152065ULL, 3108 },
			    { 536694653883142ULL, 325860 },
			    { 536973996443839ULL, 32437800 } } },
	[1] = { [DENSE] = { { 536299256803328ULL, 9164 },
			    { 536223152001024ULL, 898236 },
			    { 537002628255744ULL, 89656940 } } },
};

struct query {
	uint64_t start, last;
};

/* ---- output: key=value pairs, or one JSON object per line ---- */

static bool opt_json;

struct line {
	char buf[1024];
	size_t len;
};

__attribute__((format(printf, 2, 3))) static void
line_add(struct line *l, const char *fmt, ...)
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

static void line_begin(struct line *l, const char *workload)
{
	l->len = 0;
	if (opt_json)
		line_add(l, "{\"workload\":\"%s\"", workload);
	else
		line_add(l, "%s", workload);
}

/* A string value. */
static void line_str(struct line *l, const char *key, const char *val)
{
	if (opt_json)
		line_add(l, ",\"%s\":\"%s\"", key, val);
	else
		line_add(l, " %s=%s", key, val);
}

/* A numeric value, formatted by @fmt. */
__attribute__((format(printf, 3, 4))) static void
line_num(struct line *l, const char *key, const char *fmt, ...)
{
	char v[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v, sizeof(v), fmt, ap);
	va_end(ap);
	if (opt_json)
		line_add(l, ",\"%s\":%s", key, v);
	else
		line_add(l, " %s=%s", key, v);
}

static void line_end(struct line *l)
{
	if (opt_json)
		line_add(l, "}");
	puts(l->buf);
	fflush(stdout);
}

/* ---- the timed loops ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

BENCH_NOINLINE
static void bench_tree_insert_loop(struct itn_tree *t, struct itn_tnode *nodes,
				   size_t n)
{
	for (size_t i = 0; i < n; i++)
		itn__tree_insert(t, &nodes[i], itn__tnode_start(&nodes[i]),
				 itn__tnode_last(&nodes[i]));
}

BENCH_NOINLINE
static void bench_tree_remove_loop(struct itn_tree *t, struct itn_tnode *nodes,
				   size_t n)
{
	for (size_t i = 0; i < n; i++)
		itn__tree_remove(t, &nodes[i]);
}

/* W1m: each insert first allocates its node and copies the interval. */
BENCH_NOINLINE
static void bench_tree_malloc_insert_loop(struct itn_tree *t,
					  const struct itn_tnode *src,
					  struct itn_tnode **ptrs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct itn_tnode *m = malloc(sizeof(*m));

		if (!m)
			abort();
		itn__tnode_init(m);
		itn__tree_insert(t, m, itn__tnode_start(&src[i]),
				 itn__tnode_last(&src[i]));
		ptrs[i] = m;
	}
}

BENCH_NOINLINE
static void bench_tree_free_remove_loop(struct itn_tree *t,
					struct itn_tnode **ptrs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		itn__tree_remove(t, ptrs[i]);
		free(ptrs[i]);
	}
}

BENCH_NOINLINE
static uint64_t bench_tree_query_loop(const struct itn_tree *t,
				      const struct query *q, size_t nq)
{
	const struct query *end = q + nq;
	const struct itn_tnode *x;
	uint64_t hits = 0;

	for (; q < end; q++) {
		uint64_t qs = q->start, ql = q->last;

		for (x = itn__tree_iter_first(t, qs, ql); x;
		     x = itn__tree_iter_next(x, qs, ql))
			hits++;
	}
	return hits;
}

/* ---- configurations ---- */

struct config {
	enum workload w;
	enum variant v;
	int size; /* index into sizes[] */
	unsigned long loops;
};

static void *xmalloc(size_t sz)
{
	void *p = malloc(sz);

	if (!p) {
		fprintf(stderr, "itn-bench: out of memory (%zu bytes)\n", sz);
		exit(2);
	}
	return p;
}

static void mismatch(const struct config *c, const char *what, uint64_t got,
		     uint64_t want)
{
	struct line l;

	line_begin(&l, c->w == W1M ? "T-W1m" : c->w == W1 ? "T-W1" :
		       c->w == W2 ? "T-W2" : "T-W3");
	line_str(&l, "variant", variant_name[c->v]);
	line_num(&l, "n", "%zu", sizes[c->size]);
	line_str(&l, "digest", "mismatch");
	line_str(&l, "what", what);
	line_num(&l, "got", "%" PRIu64, got);
	line_num(&l, "want", "%" PRIu64, want);
	line_end(&l);
}

/*
 * T2: fresh stream, then the n intervals into a contiguous array, each node
 * holding its interval (the insert loop reads it from there, as the kernel
 * reads node->start).  Returns false after printing a mismatch.
 */
static bool generate(const struct config *c, struct itn_tnode *nodes)
{
	size_t n = sizes[c->size];
	uint64_t sum_start = 0, sum_last = 0;
	const struct gen_digest *d = &gen_digests[c->v][c->size];

	rng_seed(1);
	for (size_t i = 0; i < n; i++) {
		uint64_t a = r32(), b = r32(), start, last;

		if (c->v == SPARSE) {
			last = a;
			start = last != 0 ? b % last : 0;
		} else {
			uint64_t np = 1 + a % 16;
			uint64_t page = b % (DENSE_PAGES - np + 1);

			start = page * 4096;
			last = start + np * 4096 - 1;
		}
		itn__tnode_init(&nodes[i]);
		atomic_store_explicit(&nodes[i].start, start,
				      memory_order_relaxed);
		atomic_store_explicit(&nodes[i].last, last,
				      memory_order_relaxed);
		sum_start += start;
		sum_last += last;
	}
	if (itn__tnode_start(&nodes[0]) != first_interval[c->v][0]) {
		mismatch(c, "interval0_start", itn__tnode_start(&nodes[0]),
			 first_interval[c->v][0]);
		return false;
	}
	if (itn__tnode_last(&nodes[0]) != first_interval[c->v][1]) {
		mismatch(c, "interval0_last", itn__tnode_last(&nodes[0]),
			 first_interval[c->v][1]);
		return false;
	}
	if (sum_start != d->sum_start) {
		mismatch(c, "sum_start", sum_start, d->sum_start);
		return false;
	}
	if (sum_last != d->sum_last) {
		mismatch(c, "sum_last", sum_last, d->sum_last);
		return false;
	}
	return true;
}

/* Untimed structural check: the tree holds exactly @n nodes. */
static bool check_tree(const struct config *c, const struct itn_tree *t,
		       size_t n)
{
	const char *why = NULL;
	long got = itn__tree_check(t, (size_t)-1, &why);

	if (got != (long)n) {
		if (why)
			fprintf(stderr, "itn-bench: tree check: %s\n", why);
		mismatch(c, "tree_nodes", (uint64_t)got, n);
		return false;
	}
	return true;
}

static int run_w1(const struct config *c)
{
	size_t n = sizes[c->size];
	struct itn_tnode *nodes = xmalloc(n * sizeof(*nodes));
	struct itn_tnode **ptrs = NULL;
	uint64_t t_ins = 0, t_rem = 0, t0;
	struct itn_tree t;
	struct line l;
	int ret = 1;

	if (!generate(c, nodes))
		goto out;
	if (c->w == W1M)
		ptrs = xmalloc(n * sizeof(*ptrs));
	itn__tree_init(&t);
	for (unsigned long k = 0; k < c->loops; k++) {
		t0 = now_ns();
		if (c->w == W1)
			bench_tree_insert_loop(&t, nodes, n);
		else
			bench_tree_malloc_insert_loop(&t, nodes, ptrs, n);
		t_ins += now_ns() - t0;
		if (k == 0 && !check_tree(c, &t, n))
			goto out;
		t0 = now_ns();
		if (c->w == W1)
			bench_tree_remove_loop(&t, nodes, n);
		else
			bench_tree_free_remove_loop(&t, ptrs, n);
		t_rem += now_ns() - t0;
		if (k == 0 && !check_tree(c, &t, 0))
			goto out;
	}
	line_begin(&l, c->w == W1 ? "T-W1" : "T-W1m");
	line_str(&l, "variant", variant_name[c->v]);
	line_num(&l, "n", "%zu", n);
	line_num(&l, "loops", "%lu", c->loops);
	line_num(&l, "ns_insert", "%.2f", (double)t_ins / ((double)c->loops * n));
	line_num(&l, "ns_remove", "%.2f", (double)t_rem / ((double)c->loops * n));
	line_str(&l, "digest", "ok");
	line_end(&l);
	ret = 0;
out:
	free(ptrs);
	free(nodes);
	return ret;
}

static int run_query(const struct config *c)
{
	size_t n = sizes[c->size];
	size_t nq = c->v == SPARSE ? sparse_q[c->size] : DENSE_Q;
	const struct query_digest *d =
		&query_digests[c->w == W3][c->v][c->size];
	struct itn_tnode *nodes = xmalloc(n * sizeof(*nodes));
	struct query *q = xmalloc(nq * sizeof(*q));
	uint64_t sum_qstart = 0, hits, t0, dt;
	struct itn_tree t;
	struct line l;
	double mean;
	int ret = 1;

	if (!generate(c, nodes))
		goto out;
	/* T3: the queries continue the same stream. */
	for (size_t i = 0; i < nq; i++) {
		if (c->w == W3) {
			uint64_t page = r32() % (DENSE_PAGES - 16 + 1);

			q[i].start = page * 4096;
			q[i].last = q[i].start + 65536 - 1;
		} else {
			q[i].start = c->v == SPARSE ? r32() :
				     r32() % (UINT64_C(1) << 30);
			q[i].last = q[i].start;
		}
		sum_qstart += q[i].start;
	}
	if (sum_qstart != d->sum_qstart) {
		mismatch(c, "sum_qstart", sum_qstart, d->sum_qstart);
		goto out;
	}
	itn__tree_init(&t);
	for (size_t i = 0; i < n; i++)
		itn__tree_insert(&t, &nodes[i], itn__tnode_start(&nodes[i]),
				 itn__tnode_last(&nodes[i]));
	if (!check_tree(c, &t, n))
		goto out;

	t0 = now_ns();
	hits = bench_tree_query_loop(&t, q, nq);
	dt = now_ns() - t0;

	if (hits != d->hits) {
		mismatch(c, "hits", hits, d->hits);
		goto out;
	}
	mean = (double)hits / (double)nq;
	line_begin(&l, c->w == W2 ? "T-W2" : "T-W3");
	line_str(&l, "variant", variant_name[c->v]);
	line_num(&l, "n", "%zu", n);
	line_num(&l, "q", "%zu", nq);
	line_num(&l, "ns_query", "%.2f", (double)dt / (double)nq);
	line_num(&l, "mean_hits", "%.4f", mean);
	if (mean >= 1)
		line_num(&l, "ns_hit", "%.2f", (double)dt / (double)hits);
	line_num(&l, "hits", "%" PRIu64, hits);
	line_str(&l, "digest", "ok");
	line_end(&l);
	ret = 0;
out:
	free(q);
	free(nodes);
	return ret;
}

static void run_w4(void)
{
	struct line l;

	line_begin(&l, "T-W4");
	line_num(&l, "node_bytes", "%zu", sizeof(struct itn_tnode));
	line_num(&l, "tree_bytes", "%zu", sizeof(struct itn_tree));
#ifdef __GLIBC__
	{
		void *p = xmalloc(sizeof(struct itn_tnode));

		line_num(&l, "malloc_usable", "%zu", malloc_usable_size(p));
		free(p);
	}
#endif
	line_end(&l);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: itn-bench [--workload W1|W1m|W2|W3|W4|all] [--variant sparse|dense]\n"
		"                 [--n 100|10000|1000000] [--loops N] [--json] [--quick]\n"
		"Runs the T workloads of WORKLOADS.md, one measurement per configuration.\n"
		"--loops overrides the W1/W1m loop count (10000/100/1 by default);\n"
		"--quick runs every workload at n=100 with 100 W1 loops.\n");
}

static int parse_enum(const char *arg, const char *const *names, int nr)
{
	for (int i = 0; i < nr; i++)
		if (!strcmp(arg, names[i]))
			return i;
	return -1;
}

int main(int argc, char **argv)
{
	int wsel = -1, vsel = -1, nsel = -1, failed = 0;
	unsigned long loops = 0;
	bool quick = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--json")) {
			opt_json = true;
		} else if (!strcmp(a, "--quick")) {
			quick = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (v && !strcmp(a, "--workload")) {
			if (strcmp(v, "all") &&
			    (wsel = parse_enum(v, workload_name,
					       NR_WORKLOADS)) < 0)
				goto bad;
			i++;
		} else if (v && !strcmp(a, "--variant")) {
			if ((vsel = parse_enum(v, variant_name,
					       NR_VARIANTS)) < 0)
				goto bad;
			i++;
		} else if (v && !strcmp(a, "--n")) {
			char *end;
			unsigned long long x = strtoull(v, &end, 10);

			for (int k = 0; k < NR_SIZES; k++)
				if (!*end && x == sizes[k])
					nsel = k;
			if (nsel < 0)
				goto bad;
			i++;
		} else if (v && !strcmp(a, "--loops")) {
			char *end;

			errno = 0;
			loops = strtoul(v, &end, 10);
			if (errno || *end || !loops)
				goto bad;
			i++;
		} else {
			goto bad;
		}
	}
	if (quick) {
		if (nsel < 0)
			nsel = 0;
		if (!loops)
			loops = 100;
	}
	if (wsel == W3 && vsel == SPARSE) {
		fprintf(stderr, "itn-bench: W3 is defined for dense only\n");
		return 2;
	}

	if (wsel < 0 || wsel == W4)
		run_w4();
	for (int w = W1; w <= W3; w++) {
		if (wsel >= 0 && wsel != w)
			continue;
		for (int v = 0; v < NR_VARIANTS; v++) {
			if ((vsel >= 0 && vsel != v) ||
			    (w == W3 && v == SPARSE))
				continue;
			for (int s = 0; s < NR_SIZES; s++) {
				struct config c = {
					.w = (enum workload)w,
					.v = (enum variant)v,
					.size = s,
					.loops = loops ? loops : w1_loops[s],
				};

				if (nsel >= 0 && nsel != s)
					continue;
				if (w == W1 || w == W1M)
					failed |= run_w1(&c);
				else
					failed |= run_query(&c);
			}
		}
	}
	return failed ? 1 : 0;
bad:
	usage(stderr);
	return 2;
}
