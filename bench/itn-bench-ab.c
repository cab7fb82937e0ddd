// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itn-bench-ab - two builds of libitn.so side by side in one process: P1's
 * find+put, alternating short chunks between them.
 *
 *	itn-bench-ab LIB_A LIB_B [--n N] [--ops OPS] [--pairs P] [--quick]
 *
 * On a shared machine, the speed of a memory-bound loop drifts by 2x and
 * more within seconds (another tenant's load on the last-level cache and
 * the memory bus), so two builds run one after the other, even in
 * alternating processes, differ by more than most changes do.  Here both
 * libraries are loaded with dlopen() (two copies of libitn, one liburcu),
 * each with its own space over its own copy of the P1 layout (n disjoint
 * 4 KiB regions at an 8 KiB stride, peers.h), and the loop runs OPS
 * find+put on A, then on B, then on B, then on A, ... for P pairs: both see
 * the same drift.  The figure is the median over the pairs of B's speed
 * over A's, with the quartiles; an A/A run (the same library twice, or a
 * copy of it) shows the spread to expect from noise alone.
 *
 * Output, one line: AB n= ops= pairs= a_mops= b_mops= ratio= q1= q3=
 * (a_mops, b_mops: medians of the chunks; ratio > 1: B is faster).
 */
#include <itn/itn.h>

#include "peers.h"

#include <dlfcn.h>

/* P1's object (itn-bench-peers.c): the subscription and a word of payload,
 * never read here but part of the footprint the loop walks. */
struct ab_obj {
	struct itn_sub sub;
	uint64_t gen;
};

static bool inv_noop(struct itn_sub *sub, const struct itn_range *range,
		     uint64_t cur_seq)
{
	(void)sub;
	(void)range;
	(void)cur_seq;
	return true;
}

static void rel_noop(struct itn_sub *sub)
{
	(void)sub;
}

static const struct itn_sub_ops ops_ref = { inv_noop, rel_noop };

/* One loaded libitn, its space and objects. */
struct ab_lib {
	const char *path;
	struct itn_space *(*space_new)(void);
	int (*space_free)(struct itn_space *s);
	int (*insert)(struct itn_sub *sub, struct itn_space *s, uint64_t start,
		      uint64_t length, const struct itn_sub_ops *ops);
	int (*remove)(struct itn_sub *sub);
	struct itn_sub *(*find)(struct itn_space *s,
				const struct itn_sub_ops *ops, uint64_t start,
				uint64_t last);
	void (*put)(struct itn_sub *sub);
	void (*synchronize)(void);
	struct itn_space *s;
	struct ab_obj *o;
	struct pb_rng r;
	double *mops;
};

static void *ab_sym(void *h, const char *path, const char *name)
{
	void *p = dlsym(h, name);

	if (!p) {
		fprintf(stderr, "itn-bench-ab: %s: no %s: %s\n", path, name,
			dlerror());
		exit(2);
	}
	return p;
}

static void ab_load(struct ab_lib *l, uint64_t n)
{
	void *h = dlopen(l->path, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		fprintf(stderr, "itn-bench-ab: dlopen: %s\n", dlerror());
		exit(2);
	}
	*(void **)&l->space_new = ab_sym(h, l->path, "itn_space_new");
	*(void **)&l->space_free = ab_sym(h, l->path, "itn_space_free");
	*(void **)&l->insert = ab_sym(h, l->path, "itn_sub_insert");
	*(void **)&l->remove = ab_sym(h, l->path, "itn_sub_remove");
	*(void **)&l->find = ab_sym(h, l->path, "itn_find");
	*(void **)&l->put = ab_sym(h, l->path, "itn_sub_put");
	*(void **)&l->synchronize = ab_sym(h, l->path, "itn_synchronize");
	l->s = l->space_new();
	l->o = pb_xmalloc(n * sizeof(*l->o));
	if (!l->s) {
		fprintf(stderr, "itn-bench-ab: itn_space_new failed\n");
		exit(2);
	}
	memset(l->o, 0, n * sizeof(*l->o));
	for (uint64_t i = 0; i < n; i++)
		if (l->insert(&l->o[i].sub, l->s, pb_region(i), PB_LEN,
			      &ops_ref)) {
			fprintf(stderr, "itn-bench-ab: insert failed\n");
			exit(2);
		}
	pb_rng_seed(&l->r, 1);
}

static void ab_unload(struct ab_lib *l, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		l->remove(&l->o[i].sub);
	l->synchronize();
	if (l->space_free(l->s))
		fprintf(stderr, "itn-bench-ab: itn_space_free failed\n");
	free(l->o);
	/* Not dlclose()d: liburcu's call_rcu thread may still run its code. */
}

PB_NOINLINE
static uint64_t bench_ab_find_put_loop(struct ab_lib *l, uint64_t n,
				       uint64_t ops)
{
	uint64_t sum = 0;

	for (uint64_t k = 0; k < ops; k++) {
		uint64_t a = pb_region(pb_below(&l->r, n)) + PB_Q_OFF;
		struct itn_sub *sub =
			l->find(l->s, &ops_ref, a, a + PB_Q_LEN - 1);

		if (!sub)
			abort();
		sum += (uintptr_t)sub;
		l->put(sub);
	}
	return sum;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double quantile(double *v, size_t n, size_t num, size_t den)
{
	qsort(v, n, sizeof(*v), cmp_dbl);
	return v[(n - 1) * num / den];
}

static uint64_t opt_u64(int argc, char **argv, const char *name, uint64_t def)
{
	for (int i = 3; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return strtoull(argv[i + 1], NULL, 0);
	return def;
}

int main(int argc, char **argv)
{
	bool quick = argc > 3 && !strcmp(argv[argc - 1], "--quick");
	uint64_t n, ops, pairs, sink = 0;
	struct ab_lib l[2] = { { .path = NULL } };
	double *ratio;

	if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-') {
		fprintf(stderr,
			"usage: itn-bench-ab LIB_A LIB_B [--n N] [--ops OPS] "
			"[--pairs P] [--quick]\n");
		return 2;
	}
	n = opt_u64(argc, argv, "--n", quick ? 1000 : 100000);
	ops = opt_u64(argc, argv, "--ops", quick ? 20000 : 50000);
	pairs = opt_u64(argc, argv, "--pairs", quick ? 5 : 100);
	if (!n || !ops || !pairs) {
		fprintf(stderr, "itn-bench-ab: --n, --ops and --pairs must be "
				"positive\n");
		return 2;
	}
	ratio = pb_xmalloc(pairs * sizeof(*ratio));
	for (int j = 0; j < 2; j++) {
		l[j].path = argv[1 + j];
		l[j].mops = pb_xmalloc(pairs * sizeof(double));
		ab_load(&l[j], n);
		/* Warm up: the flat index gets built, the lines cached. */
		sink += bench_ab_find_put_loop(&l[j], n, n + 10000);
	}
	for (uint64_t p = 0; p < pairs; p++) {
		double ns[2];

		for (int jj = 0; jj < 2; jj++) {
			int j = jj ^ (int)(p & 1); /* A B, B A, A B, ... */
			uint64_t t0 = pb_now_ns();

			sink += bench_ab_find_put_loop(&l[j], n, ops);
			ns[j] = (double)(pb_now_ns() - t0);
			l[j].mops[p] = (double)ops * 1e3 / ns[j];
		}
		ratio[p] = ns[0] / ns[1];
	}
	printf("AB n=%" PRIu64 " ops=%" PRIu64 " pairs=%" PRIu64
	       " a_mops=%.3f b_mops=%.3f ratio=%.3f q1=%.3f q3=%.3f\n",
	       n, ops, pairs, quantile(l[0].mops, pairs, 1, 2),
	       quantile(l[1].mops, pairs, 1, 2), quantile(ratio, pairs, 1, 2),
	       quantile(ratio, pairs, 1, 4), quantile(ratio, pairs, 3, 4));
	for (int j = 0; j < 2; j++) {
		ab_unload(&l[j], n);
		free(l[j].mops);
	}
	free(ratio);
	/* Keeps the loop's result alive; never true in practice. */
	return sink == 1 ? 3 : 0;
}
