// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itn-bench-peer-ompi.c - Open MPI's side of the P workloads (peers.md
 * §9.2): opal_interval_tree, the index under Open MPI's registration cache
 * (mca_rcache_base_vma), as Debian's libopenmpi-dev ships it.  Run by
 * itn-bench-peers, one process per measurement, because opal_init_util()
 * changes the process:
 *
 *	itn-bench-peer-ompi WORKLOAD key=value...
 *
 * prints one line, "WORKLOAD key=value...", with Open MPI's figures only.
 *
 * opal_interval_tree has no reference counts (grdma keeps its own per
 * registration): its find is compared with libitn's find + put as is.
 * opal_interval_tree_find_overlapping() returns one interval *containing*
 * the query (for a point query: one overlapping it); a NULL while one
 * exists is counted as a false negative.
 */
#include "peers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <opal_config.h>
#include <opal/class/opal_interval_tree.h>
#include <opal/runtime/opal.h>

static int g_argc;
static char **g_argv;

static uint64_t arg(const char *key, uint64_t def)
{
	return pb_arg_u64(g_argc, g_argv, key, def);
}

static void die(const char *what, int st)
{
	fprintf(stderr, "itn-bench-peer-ompi: %s failed (%d)\n", what, st);
	exit(1);
}

/* The data pointer of interval i: an index into a per-run array. */
static char *cookies;

static void *cookie(uint64_t i)
{
	return &cookies[i];
}

static uint64_t cookie_index(const void *p)
{
	return (uint64_t)((const char *)p - cookies);
}

static void tree_init(opal_interval_tree_t *t, uint64_t maxn)
{
	int rc;

	cookies = pb_xmalloc(maxn ? maxn : 1);
	OBJ_CONSTRUCT(t, opal_interval_tree_t);
	rc = opal_interval_tree_init(t);
	if (rc != OPAL_SUCCESS)
		die("opal_interval_tree_init", rc);
}

static void tree_fini(opal_interval_tree_t *t)
{
	OBJ_DESTRUCT(t);
	free(cookies);
	cookies = NULL;
}

static void tree_insert(opal_interval_tree_t *t, uint64_t i, uint64_t lo,
			uint64_t hi)
{
	int rc = opal_interval_tree_insert(t, cookie(i), lo, hi);

	if (rc != OPAL_SUCCESS)
		die("opal_interval_tree_insert", rc);
}

/* ---- P1: find_overlapping on random registered regions, T threads ---- */

struct p1_thread {
	pthread_t tid;
	opal_interval_tree_t *t;
	pthread_barrier_t *bar;
	uint64_t n, ops, seed, t0, t1, sum, cpu;
};

PB_NOINLINE
static uint64_t bench_opal_find_loop(opal_interval_tree_t *t, uint64_t n,
				     uint64_t ops, struct pb_rng *r)
{
	uint64_t sum = 0;

	for (uint64_t k = 0; k < ops; k++) {
		uint64_t a = pb_region(pb_below(r, n)) + PB_Q_OFF;
		void *d = opal_interval_tree_find_overlapping(t, a,
							      a + PB_Q_LEN - 1);

		if (!d)
			abort();
		sum += cookie_index(d);
	}
	return sum;
}

static void *p1_main(void *arg)
{
	struct p1_thread *t = arg;
	struct pb_rng r;

	pb_rng_seed(&r, t->seed);
	pthread_barrier_wait(t->bar);
	t->cpu = pb_thread_cpu_ns();
	t->t0 = pb_now_ns();
	t->sum = bench_opal_find_loop(t->t, t->n, t->ops, &r);
	t->t1 = pb_now_ns();
	t->cpu = pb_thread_cpu_ns() - t->cpu;
	return NULL;
}

static int run_p1(void)
{
	uint64_t n = arg("n", 10000), threads = arg("threads", 1);
	uint64_t ops = arg("ops", 2000000), t0 = UINT64_MAX, t1 = 0, cpu = 0;
	struct p1_thread *t = pb_xmalloc(threads * sizeof(*t));
	opal_interval_tree_t tree;
	pthread_barrier_t bar;
	struct pb_line l;

	tree_init(&tree, n);
	for (uint64_t i = 0; i < n; i++)
		tree_insert(&tree, i, pb_region(i), pb_region(i) + PB_LEN - 1);
	pthread_barrier_init(&bar, NULL, (unsigned)threads);
	for (uint64_t i = 0; i < threads; i++) {
		t[i] = (struct p1_thread){ .t = &tree,
					   .bar = &bar,
					   .n = n,
					   .ops = ops,
					   .seed = i + 1 };
		if (pthread_create(&t[i].tid, NULL, p1_main, &t[i]))
			die("pthread_create", errno);
	}
	for (uint64_t i = 0; i < threads; i++) {
		pthread_join(t[i].tid, NULL);
		if (t[i].t0 < t0)
			t0 = t[i].t0;
		if (t[i].t1 > t1)
			t1 = t[i].t1;
		cpu += t[i].cpu;
	}
	pb_line_begin(&l, false, "P1");
	pb_line_dbl(&l, "mops",
		    (double)(ops * threads) * 1e3 / (double)(t1 - t0));
	pb_line_dbl(&l, "ns", (double)(t1 - t0) / (double)ops);
	/* Per CPU second: what the threads did while they ran. */
	pb_line_dbl(&l, "cpu_mops",
		    (double)(ops * threads) * 1e3 / (double)cpu);
	pb_line_end(&l);
	tree_fini(&tree);
	free(t);
	return 0;
}

/* ---- P2: insert / point query / delete on the T streams ---- */

PB_NOINLINE
static void bench_opal_insert_loop(opal_interval_tree_t *t, const uint64_t *s,
				   const uint64_t *e, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		tree_insert(t, i, s[i], e[i]);
}

PB_NOINLINE
static void bench_opal_delete_loop(opal_interval_tree_t *t, const uint64_t *s,
				   const uint64_t *e, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (opal_interval_tree_delete(t, s[i], e[i], cookie(i)) !=
		    OPAL_SUCCESS)
			abort();
}

PB_NOINLINE
static void bench_opal_query_loop(opal_interval_tree_t *t, const uint64_t *q,
				  uint64_t nq, void **res)
{
	for (uint64_t i = 0; i < nq; i++)
		res[i] = opal_interval_tree_find_overlapping(t, q[i], q[i]);
}

static int run_p2(void)
{
	const char *vs = pb_arg_str(g_argc, g_argv, "variant", "dense");
	uint64_t n = arg("n", 10000), loops, ti = 0, tr = 0, tq, t0;
	uint64_t with_hit = 0, fn = 0, wrong = 0;
	struct pb_tset ts = { 0 };
	opal_interval_tree_t tree;
	struct pb_oracle o;
	struct pb_line l;
	void **res;

	if (!strcmp(vs, "disjoint")) {
		uint64_t hits;

		ts.n = n;
		ts.q = arg("q", 1000000);
		ts.start = pb_xmalloc(n * sizeof(uint64_t));
		ts.last = pb_xmalloc(n * sizeof(uint64_t));
		for (uint64_t i = 0; i < n; i++) {
			ts.start[i] = pb_region(i);
			ts.last[i] = pb_region(i) + PB_LEN - 1;
		}
		ts.query = pb_disjoint_queries(n, ts.q, &hits);
	} else if (!pb_tset_make(&ts,
				 strcmp(vs, "sparse") ? PB_DENSE : PB_SPARSE,
				 n)) {
		return 1;
	}
	loops = n <= 100 ? 100 : n <= 10000 ? 3 : 1;
	res = pb_xmalloc(ts.q * sizeof(*res));
	tree_init(&tree, n);
	for (uint64_t k = 0; k < loops; k++) {
		t0 = pb_now_ns();
		bench_opal_insert_loop(&tree, ts.start, ts.last, n);
		ti += pb_now_ns() - t0;
		if (k + 1 < loops) {
			t0 = pb_now_ns();
			bench_opal_delete_loop(&tree, ts.start, ts.last, n);
			tr += pb_now_ns() - t0;
		}
	}
	t0 = pb_now_ns();
	bench_opal_query_loop(&tree, ts.query, ts.q, res);
	tq = pb_now_ns() - t0;
	t0 = pb_now_ns();
	bench_opal_delete_loop(&tree, ts.start, ts.last, n);
	tr += pb_now_ns() - t0;

	pb_oracle_init(&o, ts.start, ts.last, n);
	for (uint64_t i = 0; i < ts.q; i++) {
		bool hit = pb_oracle_hit(&o, ts.query[i]);

		with_hit += hit;
		if (!res[i]) {
			fn += hit;
		} else {
			uint64_t j = cookie_index(res[i]);

			wrong += !(j < n && ts.start[j] <= ts.query[i] &&
				   ts.query[i] <= ts.last[j]);
		}
	}
	pb_line_begin(&l, false, "P2");
	pb_line_dbl(&l, "ins_ns", (double)ti / (double)(n * loops));
	pb_line_dbl(&l, "q_ns", (double)tq / (double)ts.q);
	pb_line_dbl(&l, "rem_ns", (double)tr / (double)(n * loops));
	pb_line_u64(&l, "q", ts.q);
	pb_line_u64(&l, "with_hit", with_hit);
	pb_line_u64(&l, "fn", fn);
	pb_line_u64(&l, "wrong", wrong);
	pb_line_end(&l);
	pb_oracle_free(&o);
	tree_fini(&tree);
	pb_tset_free(&ts);
	free(res);
	return 0;
}

/* ---- P4: traverse the range, delete what it found, insert it again ---- */

struct collect {
	uint64_t *idx, n, max;
};

static int collect_cb(uint64_t low, uint64_t high, void *data, void *ctx)
{
	struct collect *c = ctx;

	if (c->n < c->max)
		c->idx[c->n++] = cookie_index(data);
	return OPAL_SUCCESS;
}

static int run_p4(void)
{
	uint64_t n = arg("n", 10000), k = arg("k", 16);
	uint64_t rounds = arg("rounds", 100), ti = 0, trr = 0, t0, found = 0;
	opal_interval_tree_t tree;
	struct collect c;
	struct pb_rng r;
	struct pb_line l;

	if (k > n)
		k = n;
	c.max = k;
	c.idx = pb_xmalloc(k * sizeof(*c.idx));
	tree_init(&tree, n);
	for (uint64_t i = 0; i < n; i++)
		tree_insert(&tree, i, pb_region(i), pb_region(i) + PB_LEN - 1);
	pb_rng_seed(&r, 4);
	for (uint64_t round = 0; round < rounds; round++) {
		uint64_t i0 = pb_below(&r, n - k + 1);
		uint64_t lo = pb_region(i0);
		uint64_t hi = pb_region(i0 + k - 1) + PB_LEN - 1;

		c.n = 0;
		t0 = pb_now_ns();
		opal_interval_tree_traverse(&tree, lo, hi, true, collect_cb,
					    &c);
		for (uint64_t j = 0; j < c.n; j++)
			opal_interval_tree_delete(&tree, pb_region(c.idx[j]),
						  pb_region(c.idx[j]) + PB_LEN -
							  1,
						  cookie(c.idx[j]));
		ti += pb_now_ns() - t0;
		found += c.n;
		t0 = pb_now_ns();
		for (uint64_t j = 0; j < c.n; j++)
			tree_insert(&tree, c.idx[j], pb_region(c.idx[j]),
				    pb_region(c.idx[j]) + PB_LEN - 1);
		trr += pb_now_ns() - t0;
	}
	pb_line_begin(&l, false, "P4");
	pb_line_dbl(&l, "inv_ns", (double)ti / (double)(rounds * k));
	pb_line_dbl(&l, "rereg_ns", (double)trr / (double)(rounds * k));
	pb_line_dbl(&l, "total_ns", (double)(ti + trr) / (double)(rounds * k));
	pb_line_u64(&l, "found", found);
	pb_line_u64(&l, "want", rounds * k);
	pb_line_end(&l);
	tree_fini(&tree);
	free(c.idx);
	return 0;
}

/* ---- P5: traverse a range that holds nothing ---- */

static int count_cb(uint64_t low, uint64_t high, void *data, void *ctx)
{
	(*(uint64_t *)ctx)++;
	return OPAL_SUCCESS;
}

static int run_p5(void)
{
	uint64_t n = arg("n", 10000), nev = arg("events", 10000), t0, dt;
	uint64_t hits = 0;
	opal_interval_tree_t tree;
	struct pb_rng r;
	struct pb_line l;
	uint64_t *ev = pb_xmalloc(nev * sizeof(*ev));

	tree_init(&tree, n);
	for (uint64_t i = 0; i < n; i++)
		tree_insert(&tree, i, pb_p5_region(i),
			    pb_p5_region(i) + PB_LEN - 1);
	pb_rng_seed(&r, 5);
	for (uint64_t i = 0; i < nev; i++)
		ev[i] = pb_p5_event(&r, n);
	t0 = pb_now_ns();
	for (uint64_t i = 0; i < nev; i++)
		opal_interval_tree_traverse(&tree, ev[i],
					    ev[i] + PB_P5_EVENT - 1, true,
					    count_cb, &hits);
	dt = pb_now_ns() - t0;
	pb_line_begin(&l, false, "P5");
	pb_line_dbl(&l, "ns", (double)dt / (double)nev);
	pb_line_u64(&l, "hits", hits);
	pb_line_end(&l);
	tree_fini(&tree);
	free(ev);
	return 0;
}

/*
 * ---- P8: overlapping intervals against brute force, alone and with a
 * concurrent writer inserting and deleting other intervals ----
 */

struct p8_writer {
	opal_interval_tree_t *t;
	uint64_t base, nvol;
	_Atomic int stop, ready;
	uint64_t ops;
};

static void *p8_writer_main(void *arg)
{
	struct p8_writer *w = arg;
	uint64_t *lo = pb_xmalloc(w->nvol * sizeof(*lo));
	uint64_t *hi = pb_xmalloc(w->nvol * sizeof(*hi));
	struct pb_rng r;

	pb_rng_seed(&r, 81);
	for (uint64_t i = 0; i < w->nvol; i++) {
		pb_p8_interval(&r, &lo[i], &hi[i]);
		tree_insert(w->t, w->base + i, lo[i], hi[i]);
	}
	atomic_store(&w->ready, 1);
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		uint64_t i = pb_below(&r, w->nvol);

		opal_interval_tree_delete(w->t, lo[i], hi[i],
					  cookie(w->base + i));
		pb_p8_interval(&r, &lo[i], &hi[i]);
		tree_insert(w->t, w->base + i, lo[i], hi[i]);
		w->ops++;
	}
	free(lo);
	free(hi);
	return NULL;
}

static int run_p8(void)
{
	uint64_t n = arg("n", 10000), nq = arg("q", 20000);
	bool range = arg("range", 0), writer = arg("writer", 0);
	uint64_t nvol = writer ? n / 10 + 1 : 0, t0, dt;
	uint64_t with_hit = 0, with_ovl = 0, fn = 0, fn_ovl = 0, wrong = 0;
	uint64_t *lo = pb_xmalloc(n * sizeof(*lo));
	uint64_t *hi = pb_xmalloc(n * sizeof(*hi));
	uint64_t *qlo = pb_xmalloc(nq * sizeof(*qlo));
	uint64_t *qhi = pb_xmalloc(nq * sizeof(*qhi));
	void **res = pb_xmalloc(nq * sizeof(*res));
	struct p8_writer w = { 0 };
	opal_interval_tree_t tree;
	pthread_t tid;
	struct pb_rng r;
	struct pb_line l;

	tree_init(&tree, n + nvol);
	pb_rng_seed(&r, 1);
	for (uint64_t i = 0; i < n; i++) {
		pb_p8_interval(&r, &lo[i], &hi[i]);
		tree_insert(&tree, i, lo[i], hi[i]);
	}
	for (uint64_t i = 0; i < nq; i++)
		pb_p8_query(&r, range, &qlo[i], &qhi[i]);
	if (writer) {
		w.t = &tree;
		w.base = n;
		w.nvol = nvol;
		if (pthread_create(&tid, NULL, p8_writer_main, &w))
			die("pthread_create", errno);
		while (!atomic_load(&w.ready))
			sched_yield();
	}
	t0 = pb_now_ns();
	for (uint64_t i = 0; i < nq; i++)
		res[i] = opal_interval_tree_find_overlapping(&tree, qlo[i],
							     qhi[i]);
	dt = pb_now_ns() - t0;
	if (writer) {
		atomic_store(&w.stop, 1);
		pthread_join(tid, NULL);
	}
	/* Brute force over the stable intervals. */
	for (uint64_t i = 0; i < nq; i++) {
		bool contain = false, ovl = false;

		for (uint64_t j = 0; j < n && !contain; j++) {
			if (lo[j] <= qhi[i] && qlo[i] <= hi[j])
				ovl = true;
			if (lo[j] <= qlo[i] && qhi[i] <= hi[j])
				contain = true;
		}
		with_hit += contain;
		with_ovl += ovl;
		if (!res[i]) {
			fn += contain;
			fn_ovl += ovl;
		} else if (cookie_index(res[i]) < n) {
			uint64_t j = cookie_index(res[i]);

			wrong += !(lo[j] <= qhi[i] && qlo[i] <= hi[j]);
		}
	}
	pb_line_begin(&l, false, "P8");
	pb_line_dbl(&l, "ns", (double)dt / (double)nq);
	pb_line_u64(&l, "with_hit", with_hit);
	pb_line_u64(&l, "with_overlap", with_ovl);
	pb_line_u64(&l, "fn", fn);
	pb_line_u64(&l, "fn_overlap", fn_ovl);
	pb_line_u64(&l, "wrong", wrong);
	pb_line_u64(&l, "writer_ops", w.ops);
	pb_line_end(&l);
	tree_fini(&tree);
	free(lo);
	free(hi);
	free(qlo);
	free(qhi);
	free(res);
	return 0;
}

int main(int argc, char **argv)
{
	int rc;

	g_argc = argc;
	g_argv = argv;
	if (argc < 2)
		goto usage;
	rc = opal_init_util(&argc, &argv);
	if (rc != OPAL_SUCCESS)
		die("opal_init_util", rc);
	if (!strcmp(argv[1], "P1"))
		rc = run_p1();
	else if (!strcmp(argv[1], "P2"))
		rc = run_p2();
	else if (!strcmp(argv[1], "P4"))
		rc = run_p4();
	else if (!strcmp(argv[1], "P5"))
		rc = run_p5();
	else if (!strcmp(argv[1], "P8"))
		rc = run_p8();
	else
		goto usage;
	opal_finalize_util();
	return rc;
usage:
	fprintf(stderr, "usage: itn-bench-peer-ompi P1|P2|P4|P5|P8 "
			"key=value... (run by itn-bench-peers)\n");
	return 2;
}
