// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itn-bench-peer-ucx.c - UCX's side of the P workloads (peers.md §9.2):
 * ucs_rcache (get/put, invalidation, memory events) and ucs_pgtable, as
 * Debian's libucx-dev ships them.  Run by itn-bench-peers, one process per
 * measurement, because UCX's memory events change the process:
 *
 *	itn-bench-peer-ucx WORKLOAD key=value...
 *
 * prints one line, "WORKLOAD key=value...", with UCX's figures only; the
 * driver puts them next to libitn's.  mem_reg and mem_dereg do nothing and
 * the PFN check is off, so only the cache's own cost is measured.  Memory
 * events are "external" (ucm_set_external_event): no code is patched, and
 * an invalidation is ucm_vm_munmap(), the call Open MPI makes when it owns
 * the hooks.
 */
#include "peers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <ucm/api/ucm.h>
#include <ucs/datastruct/pgtable.h>
#include <ucs/memory/rcache.h>

static int g_argc;
static char **g_argv;

static uint64_t arg(const char *key, uint64_t def)
{
	return pb_arg_u64(g_argc, g_argv, key, def);
}

static void die(const char *what, int st)
{
	fprintf(stderr, "itn-bench-peer-ucx: %s failed (%d)\n", what, st);
	exit(1);
}

/* ---- the rcache, with a region that records what it was made from ---- */

struct region {
	ucs_rcache_region_t super;
	uint64_t gen; /* P7: the slot's generation at registration */
};

static _Atomic uint64_t *slot_gen; /* P7: the "primary" content per slot */
static uint64_t slot_n;
static _Atomic uint64_t deregs;
static _Atomic int reg_block; /* P6 busy: mem_reg waits while set */
static _Atomic int reg_waiting;

static ucs_status_t mem_reg(void *ctx, ucs_rcache_t *rc, void *a,
			    ucs_rcache_region_t *r, uint16_t flags)
{
	struct region *reg = (struct region *)r;

	if (slot_gen) {
		uint64_t i = (r->super.start - PB_BASE) / PB_STRIDE;

		reg->gen = i < slot_n ?
				   atomic_load_explicit(&slot_gen[i],
							memory_order_acquire) :
				   0;
	}
	if (atomic_load_explicit(&reg_block, memory_order_acquire)) {
		atomic_store(&reg_waiting, 1);
		while (atomic_load_explicit(&reg_block, memory_order_acquire))
			sched_yield();
	}
	return UCS_OK;
}

static void mem_dereg(void *ctx, ucs_rcache_t *rc, ucs_rcache_region_t *r)
{
	atomic_fetch_add_explicit(&deregs, 1, memory_order_relaxed);
}

static void dump_region(void *ctx, ucs_rcache_t *rc, ucs_rcache_region_t *r,
			char *buf, size_t max)
{
	if (max)
		buf[0] = '\0';
}

static const ucs_rcache_ops_t rc_ops = { mem_reg, mem_dereg, dump_region };

static ucs_rcache_t *rc_new(bool events)
{
	ucs_rcache_params_t p = {
		.region_struct_size = sizeof(struct region),
		.alignment = UCS_RCACHE_MIN_ALIGNMENT,
		.max_alignment = 4096,
		.ucm_events = events ? UCM_EVENT_VM_UNMAPPED : 0,
		.ucm_event_priority = 1000,
		.ops = &rc_ops,
		.context = NULL,
		.flags = UCS_RCACHE_FLAG_NO_PFN_CHECK,
		.max_regions = (unsigned long)-1,
		.max_size = (size_t)-1,
		.max_unreleased = (size_t)-1,
	};
	ucs_rcache_t *rc;
	ucs_status_t st;

	if (events)
		ucm_set_external_event(UCM_EVENT_VM_UNMAPPED);
	st = ucs_rcache_create(&p, "itn-bench", NULL, &rc);
	if (st != UCS_OK)
		die("ucs_rcache_create", st);
	return rc;
}

static struct region *rc_get(ucs_rcache_t *rc, uint64_t addr, uint64_t len,
			     int prot)
{
	ucs_rcache_region_t *r;
	ucs_status_t st = ucs_rcache_get(rc, (void *)(uintptr_t)addr, len, prot,
					 NULL, &r);

	if (st != UCS_OK)
		die("ucs_rcache_get", st);
	return (struct region *)r;
}

/* Register the n regions of the P1 layout (get + put: the pgtable keeps 1). */
static void rc_register(ucs_rcache_t *rc, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		ucs_rcache_region_put(rc, &rc_get(rc, pb_region(i), PB_LEN,
						  PROT_READ | PROT_WRITE)
						   ->super);
}

/* ---- P1: get + put on random registered regions, T threads ---- */

struct p1_thread {
	pthread_t tid;
	ucs_rcache_t *rc;
	pthread_barrier_t *bar;
	uint64_t n, ops, seed, t0, t1, sum, cpu;
};

PB_NOINLINE
static uint64_t bench_ucx_get_put_loop(ucs_rcache_t *rc, uint64_t n,
				       uint64_t ops, struct pb_rng *r)
{
	uint64_t sum = 0;

	for (uint64_t k = 0; k < ops; k++) {
		uint64_t a = pb_region(pb_below(r, n)) + PB_Q_OFF;
		ucs_rcache_region_t *reg;

		if (ucs_rcache_get(rc, (void *)(uintptr_t)a, PB_Q_LEN,
				   PROT_READ, NULL, &reg) != UCS_OK)
			abort();
		sum += reg->super.start;
		ucs_rcache_region_put(rc, reg);
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
	t->sum = bench_ucx_get_put_loop(t->rc, t->n, t->ops, &r);
	t->t1 = pb_now_ns();
	t->cpu = pb_thread_cpu_ns() - t->cpu;
	return NULL;
}

static int run_p1(void)
{
	uint64_t n = arg("n", 10000), threads = arg("threads", 1);
	uint64_t ops = arg("ops", 2000000), t0 = UINT64_MAX, t1 = 0, cpu = 0;
	ucs_rcache_t *rc = rc_new(false);
	struct p1_thread *t = pb_xmalloc(threads * sizeof(*t));
	pthread_barrier_t bar;
	struct pb_line l;

	rc_register(rc, n);
	pthread_barrier_init(&bar, NULL, (unsigned)threads);
	for (uint64_t i = 0; i < threads; i++) {
		t[i] = (struct p1_thread){
			.rc = rc, .bar = &bar, .n = n, .ops = ops, .seed = i + 1
		};
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
	ucs_rcache_destroy(rc);
	free(t);
	return 0;
}

/* ---- P2 (disjoint variant): ucs_pgtable insert / lookup / remove ---- */

static ucs_pgt_dir_t *dir_alloc(const ucs_pgtable_t *pt)
{
	return pb_xmalloc(sizeof(ucs_pgt_dir_t));
}

static void dir_free(const ucs_pgtable_t *pt, ucs_pgt_dir_t *d)
{
	free(d);
}

static _Atomic uint64_t dirs_live;

static ucs_pgt_dir_t *dir_alloc_counted(const ucs_pgtable_t *pt)
{
	atomic_fetch_add_explicit(&dirs_live, 1, memory_order_relaxed);
	return dir_alloc(pt);
}

static void dir_free_counted(const ucs_pgtable_t *pt, ucs_pgt_dir_t *d)
{
	atomic_fetch_sub_explicit(&dirs_live, 1, memory_order_relaxed);
	dir_free(pt, d);
}

PB_NOINLINE
static void bench_pgt_insert_loop(ucs_pgtable_t *pt, ucs_pgt_region_t *r,
				  uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (ucs_pgtable_insert(pt, &r[i]) != UCS_OK)
			abort();
}

PB_NOINLINE
static void bench_pgt_remove_loop(ucs_pgtable_t *pt, ucs_pgt_region_t *r,
				  uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (ucs_pgtable_remove(pt, &r[i]) != UCS_OK)
			abort();
}

PB_NOINLINE
static uint64_t bench_pgt_lookup_loop(ucs_pgtable_t *pt, const uint64_t *q,
				      uint64_t nq)
{
	uint64_t hits = 0;

	for (uint64_t i = 0; i < nq; i++)
		hits += ucs_pgtable_lookup(pt, q[i]) != NULL;
	return hits;
}

static int run_p2(void)
{
	uint64_t n = arg("n", 10000), nq = arg("q", 1000000), loops;
	uint64_t want, hits = 0, ti = 0, tr = 0, tq, t0, dirs = 0;
	ucs_pgt_region_t *r = aligned_alloc(64, n * sizeof(*r));
	uint64_t *q = pb_disjoint_queries(n, nq, &want);
	ucs_pgtable_t pt;
	struct pb_line l;

	if (!r)
		die("aligned_alloc", ENOMEM);
	loops = n <= 1000 ? 100 : n <= 10000 ? 10 : 1;
	for (uint64_t i = 0; i < n; i++) {
		r[i].start = pb_region(i);
		r[i].end = pb_region(i) + PB_LEN;
	}
	if (ucs_pgtable_init(&pt, dir_alloc_counted, dir_free_counted) !=
	    UCS_OK)
		die("ucs_pgtable_init", 0);
	for (uint64_t k = 0; k < loops; k++) {
		t0 = pb_now_ns();
		bench_pgt_insert_loop(&pt, r, n);
		ti += pb_now_ns() - t0;
		if (k + 1 < loops) {
			t0 = pb_now_ns();
			bench_pgt_remove_loop(&pt, r, n);
			tr += pb_now_ns() - t0;
		}
	}
	dirs = atomic_load(&dirs_live);
	t0 = pb_now_ns();
	hits = bench_pgt_lookup_loop(&pt, q, nq);
	tq = pb_now_ns() - t0;
	t0 = pb_now_ns();
	bench_pgt_remove_loop(&pt, r, n);
	tr += pb_now_ns() - t0;
	ucs_pgtable_cleanup(&pt);

	pb_line_begin(&l, false, "P2");
	pb_line_dbl(&l, "ins_ns", (double)ti / (double)(n * loops));
	pb_line_dbl(&l, "q_ns", (double)tq / (double)nq);
	pb_line_dbl(&l, "rem_ns", (double)tr / (double)(n * loops));
	pb_line_u64(&l, "with_hit", want);
	pb_line_u64(&l, "fn", want > hits ? want - hits : 0);
	pb_line_u64(&l, "wrong", hits > want ? hits - want : 0);
	pb_line_dbl(&l, "bytes_per_region",
		    (double)(dirs * sizeof(ucs_pgt_dir_t)) / (double)n +
			    (double)sizeof(ucs_pgt_region_t));
	pb_line_end(&l);
	free(r);
	free(q);
	return 0;
}

/* ---- P4: invalidate k regions, then register them again ---- */

static _Atomic uint64_t completions;

static void comp_cb(void *arg)
{
	atomic_fetch_add_explicit(&completions, 1, memory_order_relaxed);
}

struct holder {
	pthread_t tid;
	ucs_rcache_t *rc;
	uint64_t i0, k, put_ns;
	struct region **held;
	_Atomic int phase; /* 0 take, 1 taken, 2 put, 3 done */
};

static void *holder_main(void *arg)
{
	struct holder *h = arg;
	uint64_t t0;

	for (;;) {
		while (atomic_load(&h->phase) != 0 &&
		       atomic_load(&h->phase) != 2 &&
		       atomic_load(&h->phase) != 4)
			sched_yield();
		if (atomic_load(&h->phase) == 4)
			return NULL;
		if (atomic_load(&h->phase) == 0) {
			for (uint64_t j = 0; j < h->k; j++)
				h->held[j] = rc_get(
					h->rc, pb_region(h->i0 + j) + PB_Q_OFF,
					PB_Q_LEN, PROT_READ);
			atomic_store(&h->phase, 1);
		} else {
			t0 = pb_now_ns();
			for (uint64_t j = 0; j < h->k; j++)
				ucs_rcache_region_put(h->rc,
						      &h->held[j]->super);
			h->put_ns += pb_now_ns() - t0;
			atomic_store(&h->phase, 3);
		}
	}
}

static int run_p4(void)
{
	uint64_t n = arg("n", 10000), k = arg("k", 16);
	uint64_t rounds = arg("rounds", 100);
	bool busy = arg("busy", 0),
	     ev = !strcmp(pb_arg_str(g_argc, g_argv, "how", "region"), "event");
	ucs_rcache_t *rc = rc_new(ev);
	uint64_t ti = 0, trr = 0, t0;
	struct holder h = { .rc = rc, .k = k };
	struct pb_rng r;
	struct pb_line l;

	if (k > n)
		k = n;
	h.held = pb_xmalloc(k * sizeof(*h.held));
	atomic_store(&h.phase, 3);
	rc_register(rc, n);
	if (busy && pthread_create(&h.tid, NULL, holder_main, &h))
		die("pthread_create", errno);
	pb_rng_seed(&r, 4);
	atomic_store(&completions, 0);
	for (uint64_t round = 0; round < rounds; round++) {
		uint64_t i0 = pb_below(&r, n - k + 1);

		if (busy) {
			h.i0 = i0;
			atomic_store(&h.phase, 0);
			while (atomic_load(&h.phase) != 1)
				sched_yield();
		}
		t0 = pb_now_ns();
		if (ev) {
			ucm_vm_munmap((void *)(uintptr_t)pb_region(i0),
				      (size_t)((k - 1) * PB_STRIDE + PB_LEN));
		} else {
			for (uint64_t j = 0; j < k; j++) {
				struct region *g =
					rc_get(rc, pb_region(i0 + j) + PB_Q_OFF,
					       PB_Q_LEN, PROT_READ);

				ucs_rcache_region_invalidate(rc, &g->super,
							     comp_cb, NULL);
				ucs_rcache_region_put(rc, &g->super);
			}
		}
		ti += pb_now_ns() - t0;
		t0 = pb_now_ns();
		for (uint64_t j = 0; j < k; j++)
			ucs_rcache_region_put(
				rc, &rc_get(rc, pb_region(i0 + j), PB_LEN,
					    PROT_READ | PROT_WRITE)
					     ->super);
		trr += pb_now_ns() - t0;
		if (busy) {
			atomic_store(&h.phase, 2);
			while (atomic_load(&h.phase) != 3)
				sched_yield();
		}
	}
	if (busy) {
		atomic_store(&h.phase, 4);
		pthread_join(h.tid, NULL);
	}
	pb_line_begin(&l, false, "P4");
	pb_line_dbl(&l, "inv_ns", (double)ti / (double)(rounds * k));
	pb_line_dbl(&l, "rereg_ns", (double)trr / (double)(rounds * k));
	pb_line_dbl(&l, "total_ns", (double)(ti + trr) / (double)(rounds * k));
	pb_line_dbl(&l, "put_ns",
		    busy ? (double)h.put_ns / (double)(rounds * k) : 0);
	pb_line_u64(&l, "completions", atomic_load(&completions));
	pb_line_end(&l);
	ucs_rcache_destroy(rc);
	free(h.held);
	return 0;
}

/* ---- P5: memory events that hit no region ---- */

PB_NOINLINE
static void bench_ucx_event_loop(const uint64_t *ev, uint64_t nev)
{
	for (uint64_t i = 0; i < nev; i++)
		ucm_vm_munmap((void *)(uintptr_t)ev[i], PB_P5_EVENT);
}

static int run_p5(void)
{
	uint64_t n = arg("n", 10000), nev = arg("events", 1000000), t0, dt;
	ucs_rcache_t *rc = rc_new(true);
	uint64_t *ev = pb_xmalloc(nev * sizeof(*ev));
	uint64_t before;
	struct pb_rng r;
	struct pb_line l;

	for (uint64_t i = 0; i < n; i++)
		ucs_rcache_region_put(rc, &rc_get(rc, pb_p5_region(i), PB_LEN,
						  PROT_READ | PROT_WRITE)
						   ->super);
	pb_rng_seed(&r, 5);
	for (uint64_t i = 0; i < nev; i++)
		ev[i] = pb_p5_event(&r, n);
	before = atomic_load(&deregs);
	t0 = pb_now_ns();
	bench_ucx_event_loop(ev, nev);
	dt = pb_now_ns() - t0;
	pb_line_begin(&l, false, "P5");
	pb_line_dbl(&l, "ns", (double)dt / (double)nev);
	pb_line_u64(&l, "hits", atomic_load(&deregs) - before);
	pb_line_end(&l);
	ucs_rcache_destroy(rc);
	free(ev);
	return 0;
}

/* ---- P6: 10^6 events with no cache call in between, then one get ---- */

static void *busy_reg_main(void *arg)
{
	ucs_rcache_t *rc = arg;

	/* A registration in progress: mem_reg runs under the write lock. */
	ucs_rcache_region_put(rc, &rc_get(rc, PB_BASE - (UINT64_C(1) << 30),
					  PB_LEN, PROT_READ)
					   ->super);
	return NULL;
}

static int run_p6(void)
{
	uint64_t n = arg("n", 10000), nev = arg("events", 1000000);
	bool busy = arg("busy", 0);
	ucs_rcache_t *rc = rc_new(true);
	uint64_t rss0, rss1, rss2, t0, dt;
	pthread_t tid;
	struct pb_rng r;
	struct pb_line l;

	rc_register(rc, n);
	rss0 = pb_rss_kib();
	if (busy) {
		atomic_store(&reg_block, 1);
		if (pthread_create(&tid, NULL, busy_reg_main, rc))
			die("pthread_create", errno);
		while (!atomic_load(&reg_waiting))
			sched_yield();
	}
	pb_rng_seed(&r, 6);
	t0 = pb_now_ns();
	for (uint64_t i = 0; i < nev; i++)
		ucm_vm_munmap((void *)(uintptr_t)pb_p6_event(&r, n),
			      PB_P5_EVENT);
	dt = pb_now_ns() - t0;
	rss1 = pb_rss_kib();
	if (busy) {
		atomic_store(&reg_block, 0);
		pthread_join(tid, NULL);
	}
	ucs_rcache_region_put(
		rc, &rc_get(rc, pb_region(0), PB_LEN, PROT_READ)->super);
	rss2 = pb_rss_kib();
	pb_line_begin(&l, false, "P6");
	pb_line_dbl(&l, "ns", (double)dt / (double)nev);
	pb_line_u64(&l, "rss0_kib", rss0);
	pb_line_u64(&l, "rss_events_kib", rss1);
	pb_line_u64(&l, "rss_get_kib", rss2);
	pb_line_u64(&l, "deregs", atomic_load(&deregs));
	pb_line_end(&l);
	ucs_rcache_destroy(rc);
	return 0;
}

/*
 * ---- P7: get/put while another thread invalidates and the address is
 * reused (the content at a slot changes: its generation goes up) ----
 */

struct p7 {
	ucs_rcache_t *rc;
	uint64_t n, ns;
	_Atomic int stop;
	_Atomic uint64_t reads, stale, invals;
};

static void *p7_reader(void *arg)
{
	struct p7 *p = arg;
	uint64_t reads = 0, stale = 0;
	struct pb_rng r;

	pb_rng_seed(&r, 71);
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		for (int k = 0; k < 256; k++) {
			uint64_t i = pb_below(&r, p->n);
			uint64_t e = atomic_load_explicit(&slot_gen[i],
							  memory_order_acquire);
			struct region *g =
				rc_get(p->rc, pb_region(i) + PB_Q_OFF, PB_Q_LEN,
				       PROT_READ);

			/* Made from content older than what was there before
			 * the get began: a stale hit. */
			stale += g->gen < e;
			ucs_rcache_region_put(p->rc, &g->super);
			reads++;
		}
	}
	atomic_fetch_add(&p->reads, reads);
	atomic_fetch_add(&p->stale, stale);
	return NULL;
}

static int run_p7(void)
{
	struct p7 p = { .n = arg("n", 256), .ns = arg("ms", 10000) * 1000000 };
	uint64_t readers = arg("readers", 1), t0, dt, invals = 0;
	pthread_t *tid = pb_xmalloc(readers * sizeof(*tid));
	struct pb_rng r;
	struct pb_line l;

	slot_n = p.n;
	slot_gen = pb_xmalloc(p.n * sizeof(*slot_gen));
	for (uint64_t i = 0; i < p.n; i++)
		atomic_init(&slot_gen[i], 1);
	p.rc = rc_new(true);
	rc_register(p.rc, p.n);
	for (uint64_t i = 0; i < readers; i++)
		if (pthread_create(&tid[i], NULL, p7_reader, &p))
			die("pthread_create", errno);
	pb_rng_seed(&r, 72);
	t0 = pb_now_ns();
	do {
		for (int k = 0; k < 64; k++) {
			uint64_t i = pb_below(&r, p.n), c = 1 + pb_below(&r, 4);

			if (i + c > p.n)
				c = p.n - i;
			/* munmap: the cache drops the old registrations ... */
			ucm_vm_munmap((void *)(uintptr_t)pb_region(i),
				      (size_t)((c - 1) * PB_STRIDE + PB_LEN));
			/* ... then new content appears at the same address. */
			for (uint64_t j = i; j < i + c; j++)
				atomic_fetch_add_explicit(&slot_gen[j], 1,
							  memory_order_release);
			invals++;
		}
		dt = pb_now_ns() - t0;
	} while (dt < p.ns);
	atomic_store(&p.stop, 1);
	for (uint64_t i = 0; i < readers; i++)
		pthread_join(tid[i], NULL);
	pb_line_begin(&l, false, "P7");
	pb_line_dbl(&l, "reads_per_s",
		    (double)atomic_load(&p.reads) * 1e9 / (double)dt);
	pb_line_dbl(&l, "invals_per_s", (double)invals * 1e9 / (double)dt);
	pb_line_u64(&l, "reads", atomic_load(&p.reads));
	pb_line_u64(&l, "stale", atomic_load(&p.stale));
	pb_line_end(&l);
	ucs_rcache_destroy(p.rc);
	free(tid);
	return 0;
}

int main(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
	if (argc < 2)
		goto usage;
	if (!strcmp(argv[1], "P1"))
		return run_p1();
	if (!strcmp(argv[1], "P2"))
		return run_p2();
	if (!strcmp(argv[1], "P4"))
		return run_p4();
	if (!strcmp(argv[1], "P5"))
		return run_p5();
	if (!strcmp(argv[1], "P6"))
		return run_p6();
	if (!strcmp(argv[1], "P7"))
		return run_p7();
usage:
	fprintf(stderr, "usage: itn-bench-peer-ucx P1|P2|P4|P5|P6|P7 "
			"key=value... (run by itn-bench-peers)\n");
	return 2;
}
