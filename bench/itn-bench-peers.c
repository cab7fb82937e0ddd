// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * itn-bench-peers.c - libitn side by side with its peers (issue 8): the P
 * workloads of research/peers.md §9.2.
 *
 * This driver measures libitn (and the baselines written in the bench) in
 * its own process, runs each peer's side of the same measurement in a
 * process of its own (itn-bench-peer-ucx: UCX 1.13 ucs_rcache/ucs_pgtable;
 * itn-bench-peer-ompi: Open MPI 4.1 opal_interval_tree), since UCX's memory
 * events and opal_init_util() change the process, and prints one line per
 * measurement and peer with libitn's figure, the peer's, and their ratio.
 * Every ratio reads "how many times better libitn is": peer time / libitn
 * time, or libitn rate / peer rate (above 1: libitn wins).
 *
 * A peer that was not built (-Dpeers=disabled, or not installed) gives
 * "status=unavailable" in place of its figures.  The exit status is 1 if
 * libitn fails a correctness check (a false negative, a stale hit, a
 * digest) or a peer process fails, else 0.
 *
 * Workloads (peers.md §9.2; P3 is not here):
 *   P1 find + reference + release on random registered regions, 1..T threads
 *   P2 insert / point query / remove on the T streams (+ a disjoint layout)
 *   P4 invalidate a range that holds k regions, then register them again
 *   P5 invalidations that hit nothing, against a bare tree query
 *   P6 10^6 invalidations and nothing else: pending work and RSS stay bounded
 *   P7 stale-hit stress: readers vs an invalidating, address-reusing writer
 *   P8 overlapping intervals against brute force, with a concurrent writer
 *   P9 emulator translation-block invalidation by stores
 */
#include "peers.h"

#include "itn-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- options ---- */

static bool opt_json, opt_quick;
static char peer_dir[PATH_MAX];
static unsigned int opt_threads[16], opt_nthreads;
static uint64_t opt_n; /* 0: the workload's defaults */
static uint64_t opt_ms; /* P7 duration */
static int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("itn-bench-peers: FAIL: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	failures++;
}

/* ---- running a peer process ---- */

#define KV_MAX 48

struct kv {
	int n;
	char key[KV_MAX][32];
	double val[KV_MAX];
};

static double kv_get(const struct kv *kv, const char *key)
{
	for (int i = 0; i < kv->n; i++)
		if (!strcmp(kv->key[i], key))
			return kv->val[i];
	return 0;
}

enum peer_status { PEER_OK, PEER_UNAVAILABLE, PEER_FAILED };

/*
 * Run "itn-bench-peer-@peer @wl args..." (a NULL-terminated list of
 * "key=value" strings) and parse its "@wl key=value..." line into @kv.
 */
static enum peer_status peer_run(const char *peer, struct kv *kv,
				 const char *wl, ...)
{
	char path[PATH_MAX + 64], buf[4096];
	const char *argv[32];
	int argc = 0, fd[2], st;
	size_t len = 0;
	ssize_t r;
	va_list ap;
	pid_t pid;

	kv->n = 0;
	snprintf(path, sizeof(path), "%s/itn-bench-peer-%s", peer_dir, peer);
	if (access(path, X_OK))
		return PEER_UNAVAILABLE;
	argv[argc++] = path;
	argv[argc++] = wl;
	va_start(ap, wl);
	while (argc < 31 && (argv[argc] = va_arg(ap, const char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	if (pipe(fd))
		return PEER_FAILED;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return PEER_FAILED;
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(fd[1]);
	while (len < sizeof(buf) - 1 &&
	       (r = read(fd[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fd[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fail("%s %s: exit status %d", path, wl,
		     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		return PEER_FAILED;
	}
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		size_t wl_len = strlen(wl);
		char *tok, *save;

		if (strncmp(line, wl, wl_len) || line[wl_len] != ' ')
			continue;
		for (tok = strtok_r(line + wl_len, " ", &save); tok;
		     tok = strtok_r(NULL, " ", &save)) {
			char *eq = strchr(tok, '=');

			if (!eq || kv->n == KV_MAX)
				continue;
			*eq = '\0';
			snprintf(kv->key[kv->n], sizeof(kv->key[0]), "%s", tok);
			kv->val[kv->n++] = strtod(eq + 1, NULL);
		}
		return PEER_OK;
	}
	fail("%s %s: no result line", path, wl);
	return PEER_FAILED;
}

/* "key=value" argument strings for peer_run(). */
struct args {
	char s[12][64];
	int n;
};

static const char *a_u64(struct args *a, const char *key, uint64_t v)
{
	char *s = a->s[a->n++ % 12];

	snprintf(s, sizeof(a->s[0]), "%s=%" PRIu64, key, v);
	return s;
}

static const char *a_str(struct args *a, const char *key, const char *v)
{
	char *s = a->s[a->n++ % 12];

	snprintf(s, sizeof(a->s[0]), "%s=%s", key, v);
	return s;
}

/* Peer status onto a line; false if there are no figures to add. */
static bool line_peer(struct pb_line *l, const char *peer, enum peer_status st)
{
	pb_line_str(l, "peer", peer);
	if (st == PEER_OK)
		return true;
	pb_line_str(l, "status",
		    st == PEER_UNAVAILABLE ? "unavailable" : "failed");
	return false;
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

/* ---- libitn objects ---- */

struct obj {
	struct itn_sub sub;
	pthread_mutex_t lock;
	bool valid;
	bool dead;
	uint64_t sgen; /* secondary mapping: the generation installed */
	uint64_t slot;
	_Atomic uint64_t dead_at;
	uint64_t inval;
};

static struct obj *obj_of(struct itn_sub *sub)
{
	return itn_container_of(sub, struct obj, sub);
}

static bool inv_noop(struct itn_sub *sub, const struct itn_range *r,
		     uint64_t cur_seq)
{
	itn_set_seq(sub, cur_seq);
	return true;
}

static void rel_noop(struct itn_sub *sub)
{
}

/* The kernel pattern: take the driver lock, set the seq, tear down. */
static bool inv_locked(struct itn_sub *sub, const struct itn_range *r,
		       uint64_t cur_seq)
{
	struct obj *o = obj_of(sub);

	pthread_mutex_lock(&o->lock);
	itn_set_seq(sub, cur_seq);
	o->valid = false;
	o->inval++;
	pthread_mutex_unlock(&o->lock);
	return true;
}

static const struct itn_sub_ops ops_ref = { inv_noop, rel_noop };
static const struct itn_sub_ops ops_locked = { inv_locked, rel_noop };
static const struct itn_sub_ops ops_plain = { inv_noop, NULL };

static struct itn_space *space_new(void)
{
	struct itn_space *s = itn_space_new();

	if (!s) {
		perror("itn_space_new");
		exit(2);
	}
	return s;
}

static void sub_insert(struct itn_sub *sub, struct itn_space *s, uint64_t start,
		       uint64_t len, const struct itn_sub_ops *ops)
{
	int rc = itn_sub_insert(sub, s, start, len, ops);

	if (rc) {
		fprintf(stderr, "itn-bench-peers: itn_sub_insert: %d\n", rc);
		exit(2);
	}
}

static struct obj *objs_new(size_t n)
{
	struct obj *o = pb_xmalloc(n * sizeof(*o));

	memset(o, 0, n * sizeof(*o));
	for (size_t i = 0; i < n; i++)
		pthread_mutex_init(&o[i].lock, NULL);
	return o;
}

/* Remove every subscription, wait for release(), free the space. */
static void objs_free(struct itn_space *s, struct obj *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		itn_sub_remove(&o[i].sub); /* -ENOENT if already removed */
	itn_synchronize();
	if (s && itn_space_free(s))
		fprintf(stderr, "itn-bench-peers: itn_space_free failed\n");
	free(o);
}

static struct itn_range range_of(uint64_t start, uint64_t last)
{
	return (struct itn_range){ .start = start,
				   .last = last,
				   .event = ITN_EVENT_UNMAP,
				   .flags = ITN_RANGE_BLOCKABLE };
}

/* ---- the kernel-style baseline: one mutex, a tree, a kref ---- */

struct bl_obj {
	struct itn_tnode node;
	_Atomic uint32_t ref;
};

struct bl {
	pthread_mutex_t lock;
	struct itn_tree tree;
};

static struct bl_obj *bl_find(struct bl *b, uint64_t start, uint64_t last)
{
	struct itn_tnode *x;
	struct bl_obj *o = NULL;

	pthread_mutex_lock(&b->lock);
	x = itn__tree_iter_first(&b->tree, start, last);
	if (x) {
		o = itn_container_of(x, struct bl_obj, node);
		atomic_fetch_add_explicit(&o->ref, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&b->lock);
	return o;
}

static void bl_put(struct bl_obj *o)
{
	atomic_fetch_sub_explicit(&o->ref, 1, memory_order_release);
}

/* ---- P1: find + reference + release ---- */

/*
 * P1's object: the subscription and one word of payload, as UCX's region
 * (ucs_rcache_region_t + a generation, 88 bytes): the caller's object of a
 * registration cache, not struct obj's fields for P4/P7 (240 bytes), whose
 * extra cache footprint would be the bench's, not libitn's.
 */
struct p1_obj {
	struct itn_sub sub;
	uint64_t gen;
};

enum p1_impl { P1_ITN, P1_BL };

struct p1_thread {
	pthread_t tid;
	enum p1_impl impl;
	struct itn_space *s;
	struct bl *b;
	pthread_barrier_t *bar;
	uint64_t n, ops, seed, t0, t1, sum, cpu;
};

PB_NOINLINE
static uint64_t bench_itn_find_put_loop(struct itn_space *s, uint64_t n,
					uint64_t ops, struct pb_rng *r)
{
	uint64_t sum = 0;

	for (uint64_t k = 0; k < ops; k++) {
		uint64_t a = pb_region(pb_below(r, n)) + PB_Q_OFF;
		struct itn_sub *sub =
			itn_find(s, &ops_ref, a, a + PB_Q_LEN - 1);

		if (!sub)
			abort();
		sum += (uintptr_t)sub;
		itn_sub_put(sub);
	}
	return sum;
}

PB_NOINLINE
static uint64_t bench_bl_find_put_loop(struct bl *b, uint64_t n, uint64_t ops,
				       struct pb_rng *r)
{
	uint64_t sum = 0;

	for (uint64_t k = 0; k < ops; k++) {
		uint64_t a = pb_region(pb_below(r, n)) + PB_Q_OFF;
		struct bl_obj *o = bl_find(b, a, a + PB_Q_LEN - 1);

		if (!o)
			abort();
		sum += (uintptr_t)o;
		bl_put(o);
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
	if (t->impl == P1_ITN)
		t->sum = bench_itn_find_put_loop(t->s, t->n, t->ops, &r);
	else
		t->sum = bench_bl_find_put_loop(t->b, t->n, t->ops, &r);
	t->t1 = pb_now_ns();
	t->cpu = pb_thread_cpu_ns() - t->cpu;
	return NULL;
}

/*
 * Total Mops/s of @threads threads; *@cpu_mops: the same per second of CPU
 * time the threads got (what they did while they ran: on a shared machine
 * the wall clock also counts the time other processes had the CPUs).
 */
static double p1_run(enum p1_impl impl, struct itn_space *s, struct bl *b,
		     uint64_t n, unsigned int threads, uint64_t ops,
		     double *cpu_mops)
{
	struct p1_thread t[64];
	uint64_t t0 = UINT64_MAX, t1 = 0, cpu = 0;
	pthread_barrier_t bar;

	pthread_barrier_init(&bar, NULL, threads);
	for (unsigned int i = 0; i < threads; i++) {
		t[i] = (struct p1_thread){ .impl = impl,
					   .s = s,
					   .b = b,
					   .bar = &bar,
					   .n = n,
					   .ops = ops,
					   .seed = i + 1 };
		if (pthread_create(&t[i].tid, NULL, p1_main, &t[i])) {
			perror("pthread_create");
			exit(2);
		}
	}
	for (unsigned int i = 0; i < threads; i++) {
		pthread_join(t[i].tid, NULL);
		if (t[i].t0 < t0)
			t0 = t[i].t0;
		if (t[i].t1 > t1)
			t1 = t[i].t1;
		cpu += t[i].cpu;
	}
	pthread_barrier_destroy(&bar);
	*cpu_mops = (double)(ops * threads) * 1e3 / (double)cpu;
	return (double)(ops * threads) * 1e3 / (double)(t1 - t0);
}

/* One implementation's P1 figures at a thread count, and at 1 thread. */
struct p1_fig {
	double mops, cpu_mops, mops1, cpu_mops1;
};

/*
 * scaling: total Mops/s over threads x the 1-thread figure (the goal is
 * >= 0.9); cpu_scaling: Mops per CPU second over the 1-thread one (1.0:
 * no contention, whatever share of the CPUs the threads got).
 */
static void p1_line(uint64_t n, unsigned int threads, const char *peer,
		    enum peer_status st, const struct p1_fig *itn,
		    const struct p1_fig *pf, const char *note)
{
	struct pb_line l;

	pb_line_begin(&l, opt_json, "P1");
	pb_line_u64(&l, "n", n);
	pb_line_u64(&l, "threads", threads);
	pb_line_dbl(&l, "itn_mops", itn->mops);
	pb_line_dbl(&l, "itn_scaling", itn->mops / (threads * itn->mops1));
	pb_line_dbl(&l, "itn_cpu_mops", itn->cpu_mops);
	pb_line_dbl(&l, "itn_cpu_scaling", itn->cpu_mops / itn->cpu_mops1);
	if (line_peer(&l, peer, st)) {
		pb_line_dbl(&l, "peer_mops", pf->mops);
		pb_line_dbl(&l, "peer_scaling",
			    pf->mops / (threads * pf->mops1));
		pb_line_dbl(&l, "peer_cpu_mops", pf->cpu_mops);
		pb_line_dbl(&l, "peer_cpu_scaling",
			    pf->cpu_mops / pf->cpu_mops1);
		pb_line_dbl(&l, "ratio", ratio(itn->mops, pf->mops));
		if (note)
			pb_line_str(&l, "note", note);
	}
	pb_line_end(&l);
}

static void run_p1(void)
{
	static const uint64_t sizes[] = { 1000, 10000, 100000 };
	uint64_t ops = opt_quick ? 200000 : 2000000;

	for (int si = 0; si < 3; si++) {
		uint64_t n = sizes[si];
		struct p1_fig fi = { 0 }, fb = { 0 }, fu = { 0 }, fo = { 0 };
		struct itn_space *s;
		struct p1_obj *o;
		struct bl_obj *bo;
		struct bl b;

		if (opt_n ? n != opt_n : opt_quick && n != 10000)
			continue;
		s = space_new();
		o = pb_xmalloc(n * sizeof(*o));
		memset(o, 0, n * sizeof(*o));
		bo = pb_xmalloc(n * sizeof(*bo));
		pthread_mutex_init(&b.lock, NULL);
		itn__tree_init(&b.tree);
		for (uint64_t i = 0; i < n; i++) {
			sub_insert(&o[i].sub, s, pb_region(i), PB_LEN,
				   &ops_ref);
			itn__tnode_init(&bo[i].node);
			atomic_init(&bo[i].ref, 1);
			itn__tree_insert(&b.tree, &bo[i].node, pb_region(i),
					 pb_region(i) + PB_LEN - 1);
		}
		for (unsigned int ti = 0; ti < opt_nthreads; ti++) {
			unsigned int T = opt_threads[ti];
			struct kv ku, ko;
			enum peer_status su, so;
			struct args a = { .n = 0 };

			fi.mops = p1_run(P1_ITN, s, NULL, n, T, ops,
					 &fi.cpu_mops);
			fb.mops = p1_run(P1_BL, NULL, &b, n, T, ops,
					 &fb.cpu_mops);
			su = peer_run("ucx", &ku, "P1", a_u64(&a, "n", n),
				      a_u64(&a, "threads", T),
				      a_u64(&a, "ops", ops), NULL);
			so = peer_run("ompi", &ko, "P1", a_u64(&a, "n", n),
				      a_u64(&a, "threads", T),
				      a_u64(&a, "ops", ops), NULL);
			fu.mops = kv_get(&ku, "mops");
			fu.cpu_mops = kv_get(&ku, "cpu_mops");
			fo.mops = kv_get(&ko, "mops");
			fo.cpu_mops = kv_get(&ko, "cpu_mops");
			if (ti == 0) {
				struct p1_fig *f[4] = { &fi, &fb, &fu, &fo };

				for (int k = 0; k < 4; k++) {
					f[k]->mops1 = f[k]->mops;
					f[k]->cpu_mops1 = f[k]->cpu_mops;
				}
			}
			p1_line(n, T, "ucx", su, &fi, &fu, NULL);
			p1_line(n, T, "baseline", PEER_OK, &fi, &fb,
				"kernel-style_mutex");
			p1_line(n, T, "ompi", so, &fi, &fo, "no_refcount");
		}
		for (uint64_t i = 0; i < n; i++)
			itn_sub_remove(&o[i].sub);
		itn_synchronize();
		if (itn_space_free(s))
			fprintf(stderr, "itn-bench-peers: itn_space_free failed\n");
		free(o);
		free(bo);
	}
}

/* ---- P2: index operations on the T streams ---- */

struct p2obj {
	struct itn_sub sub;
};

PB_NOINLINE
static void bench_itn_insert_loop(struct itn_space *s, struct p2obj *o,
				  const uint64_t *st, const uint64_t *la,
				  uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		sub_insert(&o[i].sub, s, st[i], la[i] - st[i] + 1, &ops_ref);
}

PB_NOINLINE
static void bench_itn_remove_loop(struct p2obj *o, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (itn_sub_remove(&o[i].sub))
			abort();
}

PB_NOINLINE
static void bench_itn_query_loop(struct itn_space *s, const uint64_t *q,
				 uint64_t nq, struct itn_sub **res)
{
	for (uint64_t i = 0; i < nq; i++) {
		struct itn_sub *sub = itn_find(s, NULL, q[i], q[i]);

		res[i] = sub;
		if (sub)
			itn_sub_put(sub);
	}
}

/* Every match of every query, with itn_find + itn_find_next. */
static uint64_t itn_count_all(struct itn_space *s, const uint64_t *q,
			      uint64_t nq)
{
	uint64_t hits = 0;

	for (uint64_t i = 0; i < nq; i++) {
		struct itn_sub *x = itn_find(s, NULL, q[i], q[i]), *nx;

		while (x) {
			hits++;
			nx = itn_find_next(s, NULL, x, q[i], q[i]);
			itn_sub_put(x);
			x = nx;
		}
	}
	return hits;
}

static void p2_one(const char *vname, uint64_t n)
{
	bool disjoint = !strcmp(vname, "disjoint");
	uint64_t loops = n <= 100 ? 100 : n <= 10000 ? 3 : 1;
	uint64_t ti = 0, tr = 0, tq, t0, fn = 0, wrong = 0, with_hit = 0;
	uint64_t hits = 0, want_hits = 0;
	bool hits_checked = false;
	struct pb_tset ts = { 0 };
	struct itn_space *s;
	struct itn_sub **res;
	struct p2obj *o;
	struct pb_oracle orc;
	struct kv kv[2];
	enum peer_status st[2];
	const char *peers[2];
	int np = 0;

	if (disjoint) {
		uint64_t h;

		ts.n = n;
		ts.q = opt_quick ? 100000 : 1000000;
		ts.start = pb_xmalloc(n * sizeof(uint64_t));
		ts.last = pb_xmalloc(n * sizeof(uint64_t));
		for (uint64_t i = 0; i < n; i++) {
			ts.start[i] = pb_region(i);
			ts.last[i] = pb_region(i) + PB_LEN - 1;
		}
		ts.query = pb_disjoint_queries(n, ts.q, &h);
	} else if (!pb_tset_make(&ts,
				 strcmp(vname, "sparse") ? PB_DENSE : PB_SPARSE,
				 n)) {
		fail("P2 %s n=%" PRIu64 ": T stream digest", vname, n);
		return;
	}
	s = space_new();
	o = pb_xmalloc(n * sizeof(*o));
	res = pb_xmalloc(ts.q * sizeof(*res));
	for (uint64_t k = 0; k < loops; k++) {
		memset(o, 0, n * sizeof(*o));
		t0 = pb_now_ns();
		bench_itn_insert_loop(s, o, ts.start, ts.last, n);
		ti += pb_now_ns() - t0;
		if (k + 1 < loops) {
			t0 = pb_now_ns();
			bench_itn_remove_loop(o, n);
			tr += pb_now_ns() - t0;
			itn_synchronize();
		}
	}
	t0 = pb_now_ns();
	bench_itn_query_loop(s, ts.query, ts.q, res);
	tq = pb_now_ns() - t0;

	/* Correctness: every query with a containing interval found one. */
	pb_oracle_init(&orc, ts.start, ts.last, n);
	for (uint64_t i = 0; i < ts.q; i++) {
		bool hit = pb_oracle_hit(&orc, ts.query[i]);

		with_hit += hit;
		if (!res[i]) {
			fn += hit;
		} else {
			uint64_t j =
				(uint64_t)((struct p2obj *)(void *)res[i] - o);

			wrong += !(j < n && ts.start[j] <= ts.query[i] &&
				   ts.query[i] <= ts.last[j]);
		}
	}
	pb_oracle_free(&orc);
	/* And the T6 total of hits, where enumerating them is affordable. */
	if (!disjoint) {
		const struct pb_t_digest *d = pb_t_digest(
			strcmp(vname, "sparse") ? PB_DENSE : PB_SPARSE, n);

		want_hits = d->hits;
		if (want_hits <= (opt_quick ? 4000000u : 40000000u)) {
			hits = itn_count_all(s, ts.query, ts.q);
			hits_checked = true;
		}
	}
	t0 = pb_now_ns();
	bench_itn_remove_loop(o, n);
	tr += pb_now_ns() - t0;
	itn_synchronize();
	itn_space_free(s);
	if (fn || wrong)
		fail("P2 %s n=%" PRIu64 ": libitn fn=%" PRIu64
		     " wrong=%" PRIu64,
		     vname, n, fn, wrong);
	if (hits_checked && hits != want_hits)
		fail("P2 %s n=%" PRIu64 ": libitn hits %" PRIu64
		     " != T6 %" PRIu64,
		     vname, n, hits, want_hits);

	{
		struct args a = { .n = 0 };

		if (disjoint) {
			peers[np] = "ucx-pgtable";
			st[np++] =
				peer_run("ucx", &kv[0], "P2", a_u64(&a, "n", n),
					 a_u64(&a, "q", ts.q), NULL);
		}
		peers[np] = "ompi";
		st[np] = peer_run(
			"ompi", &kv[np], "P2", a_str(&a, "variant", vname),
			a_u64(&a, "n", n), a_u64(&a, "q", ts.q), NULL);
		np++;
	}
	for (int p = 0; p < np; p++) {
		static const char *const op[3] = { "insert", "query",
						   "remove" };
		static const char *const key[3] = { "ins_ns", "q_ns",
						    "rem_ns" };
		double itn_ns[3] = { (double)ti / (double)(n * loops),
				     (double)tq / (double)ts.q,
				     (double)tr / (double)(n * loops) };

		for (int k = 0; k < 3; k++) {
			struct pb_line l;

			pb_line_begin(&l, opt_json, "P2");
			pb_line_str(&l, "variant", vname);
			pb_line_u64(&l, "n", n);
			pb_line_str(&l, "op", op[k]);
			pb_line_dbl(&l, "itn_ns", itn_ns[k]);
			if (k == 1) {
				pb_line_u64(&l, "q", ts.q);
				pb_line_u64(&l, "with_hit", with_hit);
				pb_line_u64(&l, "itn_fn", fn);
				pb_line_u64(&l, "itn_wrong", wrong);
				if (hits_checked)
					pb_line_u64(&l, "itn_hits", hits);
			}
			if (line_peer(&l, peers[p], st[p])) {
				double pv = kv_get(&kv[p], key[k]);

				pb_line_dbl(&l, "peer_ns", pv);
				pb_line_dbl(&l, "ratio", ratio(pv, itn_ns[k]));
				if (k == 1) {
					pb_line_u64(
						&l, "peer_fn",
						(uint64_t)kv_get(&kv[p], "fn"));
					pb_line_u64(&l, "peer_wrong",
						    (uint64_t)kv_get(&kv[p],
								     "wrong"));
				}
				if (k == 0 && p == 0 && disjoint)
					pb_line_dbl(&l, "peer_bytes_per_region",
						    kv_get(&kv[p],
							   "bytes_per_region"));
			}
			pb_line_end(&l);
		}
	}
	free(o);
	free(res);
	pb_tset_free(&ts);
}

static void run_p2(void)
{
	static const uint64_t sizes[] = { 100, 10000, 1000000 };

	for (int v = 0; v < 2; v++)
		for (int si = 0; si < 3; si++) {
			uint64_t n = sizes[si];

			if (opt_n ? n != opt_n : opt_quick && n != 100)
				continue;
			p2_one(v ? "sparse" : "dense", n);
		}
	if (!opt_n || opt_n == 10000)
		p2_one("disjoint", opt_quick ? 1000 : 10000);
}

/* ---- P4: invalidate a range that holds k regions, register again ---- */

struct p4_holder {
	pthread_t tid;
	struct itn_space *s;
	uint64_t i0, k, put_ns;
	struct itn_sub **held;
	_Atomic int phase; /* 0 take, 1 taken, 2 put, 3 idle, 4 exit */
};

static void *p4_holder_main(void *arg)
{
	struct p4_holder *h = arg;

	for (;;) {
		int ph;

		while ((ph = atomic_load(&h->phase)) == 1 || ph == 3)
			sched_yield();
		if (ph == 4)
			return NULL;
		if (ph == 0) {
			for (uint64_t j = 0; j < h->k; j++) {
				uint64_t a = pb_region(h->i0 + j) + PB_Q_OFF;

				h->held[j] = itn_find(h->s, &ops_locked, a,
						      a + PB_Q_LEN - 1);
				if (!h->held[j])
					abort();
			}
			atomic_store(&h->phase, 1);
		} else {
			uint64_t t0 = pb_now_ns();

			for (uint64_t j = 0; j < h->k; j++)
				itn_sub_put(h->held[j]);
			h->put_ns += pb_now_ns() - t0;
			atomic_store(&h->phase, 3);
		}
	}
}

static void p4_one(uint64_t n, uint64_t k, bool busy)
{
	uint64_t rounds = (opt_quick ? 10000 : 200000) / k + 10;
	struct p4_holder h = { .k = k };
	uint64_t ti = 0, trr = 0, t0, callbacks = 0, retries = 0;
	struct itn_space *s = space_new();
	struct obj *o = objs_new(n);
	struct pb_rng r;
	double itn_total, itn_inv, itn_rr;

	for (uint64_t i = 0; i < n; i++)
		sub_insert(&o[i].sub, s, pb_region(i), PB_LEN, &ops_locked);
	h.s = s;
	h.held = pb_xmalloc(k * sizeof(*h.held));
	atomic_store(&h.phase, 3);
	if (busy && pthread_create(&h.tid, NULL, p4_holder_main, &h))
		exit(2);
	pb_rng_seed(&r, 4);
	for (uint64_t round = 0; round < rounds; round++) {
		uint64_t i0 = pb_below(&r, n - k + 1);
		struct itn_range rg = range_of(
			pb_region(i0), pb_region(i0 + k - 1) + PB_LEN - 1);

		if (busy) {
			h.i0 = i0;
			atomic_store(&h.phase, 0);
			while (atomic_load(&h.phase) != 1)
				sched_yield();
		}
		t0 = pb_now_ns();
		itn_invalidate_start(s, &rg);
		itn_invalidate_end(s, &rg);
		ti += pb_now_ns() - t0;
		t0 = pb_now_ns();
		for (uint64_t j = i0; j < i0 + k; j++) {
			struct obj *x = &o[j];
			uint64_t seq;

again:
			seq = itn_read_begin(&x->sub);
			pthread_mutex_lock(&x->lock);
			if (itn_read_retry(&x->sub, seq)) {
				pthread_mutex_unlock(&x->lock);
				retries++;
				goto again;
			}
			x->valid = true;
			pthread_mutex_unlock(&x->lock);
		}
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
	for (uint64_t i = 0; i < n; i++)
		callbacks += o[i].inval;
	if (callbacks != rounds * k)
		fail("P4 k=%" PRIu64 ": %" PRIu64 " callbacks, want %" PRIu64,
		     k, callbacks, rounds * k);
	itn_inv = (double)ti / (double)(rounds * k);
	itn_rr = (double)trr / (double)(rounds * k);
	itn_total = itn_inv + itn_rr;

	static const char *const peers[3] = { "ucx-region", "ucx-event",
					      "ompi" };
	for (int p = 0; p < 3; p++) {
		struct args a = { .n = 0 };
		struct pb_line l;
		struct kv kv;
		enum peer_status st;

		if (p == 2 && busy)
			continue; /* opal has no references to hold */
		st = peer_run(
			p == 2 ? "ompi" : "ucx", &kv, "P4", a_u64(&a, "n", n),
			a_u64(&a, "k", k), a_u64(&a, "rounds", rounds),
			a_u64(&a, "busy", busy),
			a_str(&a, "how", p == 1 ? "event" : "region"), NULL);
		pb_line_begin(&l, opt_json, "P4");
		pb_line_u64(&l, "n", n);
		pb_line_u64(&l, "k", k);
		pb_line_str(&l, "mode", busy ? "busy" : "idle");
		pb_line_dbl(&l, "itn_ns", itn_total);
		pb_line_dbl(&l, "itn_inv_ns", itn_inv);
		pb_line_dbl(&l, "itn_rereg_ns", itn_rr);
		if (busy)
			pb_line_dbl(&l, "itn_put_ns",
				    (double)h.put_ns / (double)(rounds * k));
		if (line_peer(&l, peers[p], st)) {
			pb_line_dbl(&l, "peer_ns", kv_get(&kv, "total_ns"));
			pb_line_dbl(&l, "peer_inv_ns", kv_get(&kv, "inv_ns"));
			pb_line_dbl(&l, "peer_rereg_ns",
				    kv_get(&kv, "rereg_ns"));
			if (busy)
				pb_line_dbl(&l, "peer_put_ns",
					    kv_get(&kv, "put_ns"));
			pb_line_dbl(&l, "ratio",
				    ratio(kv_get(&kv, "total_ns"), itn_total));
		}
		pb_line_end(&l);
	}
	objs_free(s, o, n);
	free(h.held);
}

static void run_p4(void)
{
	static const uint64_t ks[] = { 1, 16, 1024 };

	for (int b = 0; b < 2; b++)
		for (int i = 0; i < 3; i++)
			if (!opt_quick || ks[i] != 1024)
				p4_one(opt_n ? opt_n : 10000, ks[i], b);
}

/* ---- P5: invalidations that hit nothing ---- */

PB_NOINLINE
static void bench_itn_miss_loop(struct itn_space *s, const uint64_t *ev,
				uint64_t nev)
{
	for (uint64_t i = 0; i < nev; i++) {
		struct itn_range r = range_of(ev[i], ev[i] + PB_P5_EVENT - 1);

		itn_invalidate_start(s, &r);
		itn_invalidate_end(s, &r);
	}
}

PB_NOINLINE
static uint64_t bench_bare_query_loop(const struct itn_tree *t,
				      const uint64_t *ev, uint64_t nev)
{
	uint64_t hits = 0;

	for (uint64_t i = 0; i < nev; i++)
		hits += itn__tree_iter_first(t, ev[i],
					     ev[i] + PB_P5_EVENT - 1) != NULL;
	return hits;
}

static void run_p5(void)
{
	uint64_t n = opt_n ? opt_n : 10000;
	uint64_t nev = opt_quick ? 100000 : 1000000, t0, tinv, tq, hits;
	struct itn_space *s = space_new();
	struct obj *o = objs_new(n);
	struct itn_tnode *nodes = pb_xmalloc(n * sizeof(*nodes));
	uint64_t *ev = pb_xmalloc(nev * sizeof(*ev));
	struct itn_stats stats;
	struct itn_tree t;
	struct pb_rng r;
	double itn, bare;

	itn__tree_init(&t);
	for (uint64_t i = 0; i < n; i++) {
		sub_insert(&o[i].sub, s, pb_p5_region(i), PB_LEN, &ops_locked);
		itn__tnode_init(&nodes[i]);
		itn__tree_insert(&t, &nodes[i], pb_p5_region(i),
				 pb_p5_region(i) + PB_LEN - 1);
	}
	pb_rng_seed(&r, 5);
	for (uint64_t i = 0; i < nev; i++)
		ev[i] = pb_p5_event(&r, n);
	/* Bare query and invalidation twice, interleaved: take the second. */
	for (int pass = 0; pass < 2; pass++) {
		t0 = pb_now_ns();
		hits = bench_bare_query_loop(&t, ev, nev);
		tq = pb_now_ns() - t0;
		t0 = pb_now_ns();
		bench_itn_miss_loop(s, ev, nev);
		tinv = pb_now_ns() - t0;
	}
	itn_space_stats(s, &stats);
	if (hits || stats.callbacks)
		fail("P5: the events hit %" PRIu64 " nodes, %" PRIu64
		     " callbacks",
		     hits, stats.callbacks);
	itn = (double)tinv / (double)nev;
	bare = (double)tq / (double)nev;

	static const char *const peers[2] = { "ucx", "ompi" };
	for (int p = 0; p < 2; p++) {
		struct args a = { .n = 0 };
		uint64_t pev = p == 1 ? (opt_quick ? 1000 : 20000) : nev;
		struct pb_line l;
		struct kv kv;
		enum peer_status st;

		st = peer_run(peers[p], &kv, "P5", a_u64(&a, "n", n),
			      a_u64(&a, "events", pev), NULL);
		pb_line_begin(&l, opt_json, "P5");
		pb_line_u64(&l, "n", n);
		pb_line_u64(&l, "events", nev);
		pb_line_dbl(&l, "itn_ns", itn);
		pb_line_dbl(&l, "bare_query_ns", bare);
		pb_line_dbl(&l, "itn_over_bare", ratio(itn, bare));
		if (line_peer(&l, p == 0 ? "ucx-event" : "ompi-traverse", st)) {
			pb_line_u64(&l, "peer_events", pev);
			pb_line_dbl(&l, "peer_ns", kv_get(&kv, "ns"));
			pb_line_u64(&l, "peer_hits",
				    (uint64_t)kv_get(&kv, "hits"));
			pb_line_dbl(&l, "ratio", ratio(kv_get(&kv, "ns"), itn));
		}
		pb_line_end(&l);
	}
	objs_free(s, o, n);
	free(nodes);
	free(ev);
}

/* ---- P6: invalidations and nothing else: bounded pending work ---- */

static uint64_t deferred_len(struct itn_space *s)
{
	struct cds_list_head *pos;
	uint64_t len = 0;

	itn__lock(s);
	cds_list_for_each(pos, &s->deferred) len++;
	itn__unlock(s);
	return len;
}

static void p6_one(bool busy)
{
	uint64_t n = opt_n ? opt_n : 10000;
	uint64_t nev = opt_quick ? 100000 : 1000000, t0, dt;
	uint64_t rss0, rss1, rss2, dlen = 0, dmax = 0, updates = 0;
	struct itn_space *s = space_new();
	struct obj *o = objs_new(n + 1);
	struct itn_range outer =
		range_of(PB_BASE - (UINT64_C(1) << 30),
			 PB_BASE - (UINT64_C(1) << 30) + PB_LEN - 1);
	struct pb_rng r;

	for (uint64_t i = 0; i < n; i++)
		sub_insert(&o[i].sub, s, pb_region(i), PB_LEN, &ops_locked);
	sub_insert(&o[n].sub, s, outer.start, PB_LEN, &ops_locked);
	rss0 = pb_rss_kib();
	/*
	 * Busy: an invalidation stays in flight (started, not ended) while
	 * the others run, so the tree is frozen and every update is
	 * deferred to its end: the worst case for pending work.
	 */
	if (busy)
		itn_invalidate_start(s, &outer);
	pb_rng_seed(&r, 6);
	t0 = pb_now_ns();
	for (uint64_t i = 0; i < nev; i++) {
		uint64_t a = pb_p6_event(&r, n);
		struct itn_range rg = range_of(a, a + PB_P5_EVENT - 1);

		itn_invalidate_start(s, &rg);
		itn_invalidate_end(s, &rg);
		if (busy) {
			uint64_t j = pb_below(&r, n);

			if (itn_sub_update(&o[j].sub, pb_region(j), PB_LEN))
				abort();
			updates++;
			if ((i & 4095) == 0 && (dlen = deferred_len(s)) > dmax)
				dmax = dlen;
		}
	}
	dt = pb_now_ns() - t0;
	if ((dlen = deferred_len(s)) > dmax)
		dmax = dlen;
	rss1 = pb_rss_kib();
	if (busy)
		itn_invalidate_end(s, &outer);
	{
		struct itn_sub *x =
			itn_find(s, &ops_locked, pb_region(0), pb_region(0));

		if (x)
			itn_sub_put(x);
	}
	rss2 = pb_rss_kib();
	if (dmax > n + 1)
		fail("P6: deferred list of %" PRIu64 " > %" PRIu64
		     " subscriptions",
		     dmax, n + 1);
	if (deferred_len(s))
		fail("P6: deferred list not empty after the last end");

	struct args a = { .n = 0 };
	struct pb_line l;
	struct kv kv;
	enum peer_status st = peer_run("ucx", &kv, "P6", a_u64(&a, "n", n),
				       a_u64(&a, "events", nev),
				       a_u64(&a, "busy", busy), NULL);

	pb_line_begin(&l, opt_json, "P6");
	pb_line_u64(&l, "n", n);
	pb_line_u64(&l, "events", nev);
	pb_line_str(&l, "mode", busy ? "busy" : "quiet");
	pb_line_dbl(&l, "itn_ns", (double)dt / (double)nev);
	pb_line_u64(&l, "itn_updates", updates);
	pb_line_u64(&l, "itn_deferred_max", dmax);
	pb_line_u64(&l, "itn_subs", n + 1);
	pb_line_dbl(&l, "itn_rss_delta_kib", (double)rss1 - (double)rss0);
	pb_line_dbl(&l, "itn_rss_after_kib", (double)rss2 - (double)rss0);
	if (line_peer(&l, "ucx", st)) {
		double p0 = kv_get(&kv, "rss0_kib");

		pb_line_dbl(&l, "peer_ns", kv_get(&kv, "ns"));
		pb_line_dbl(&l, "peer_rss_delta_kib",
			    kv_get(&kv, "rss_events_kib") - p0);
		pb_line_dbl(&l, "peer_rss_after_kib",
			    kv_get(&kv, "rss_get_kib") - p0);
		pb_line_dbl(&l, "ratio",
			    ratio(kv_get(&kv, "ns"), (double)dt / (double)nev));
	}
	pb_line_end(&l);
	objs_free(s, o, n + 1);
}

static void run_p6(void)
{
	p6_one(false);
	p6_one(true);
}

/* ---- P7: stale-hit stress with address reuse ---- */

struct p7 {
	struct itn_space *s;
	uint64_t n;
	_Atomic uint64_t *primary; /* the content's generation per slot */
	_Atomic uint64_t epoch; /* last removal that has returned */
	_Atomic int stop;
	_Atomic uint64_t reads, retries, stale, stale_find, fn, dead;
};

static void p7_release(struct itn_sub *sub)
{
	struct obj *o = obj_of(sub);

	pthread_mutex_destroy(&o->lock);
	free(o);
}

static const struct itn_sub_ops ops_p7 = { inv_locked, p7_release };

static void *p7_reader(void *arg)
{
	struct p7 *p = arg;
	uint64_t reads = 0, retries = 0, stale = 0, stale_find = 0, fn = 0;
	uint64_t dead = 0;
	struct pb_rng r;

	pb_rng_seed(&r, 71);
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		for (int k = 0; k < 256; k++) {
			uint64_t i = pb_below(&r, p->n);
			uint64_t a = pb_region(i) + PB_Q_OFF, seq, g, d, e0;
			struct itn_sub *sub;
			struct obj *o;

			e0 = atomic_load_explicit(&p->epoch,
						  memory_order_acquire);
			sub = itn_find(p->s, &ops_p7, a, a + PB_Q_LEN - 1);
			if (!sub) {
				fn++; /* a slot always has a subscription */
				continue;
			}
			o = obj_of(sub);
			d = atomic_load_explicit(&o->dead_at,
						 memory_order_acquire);
			if (d && d <= e0)
				stale_find++; /* removed before find began */
again:
			seq = itn_read_begin(sub);
			g = atomic_load_explicit(&p->primary[i],
						 memory_order_acquire);
			pthread_mutex_lock(&o->lock);
			if (o->dead) {
				pthread_mutex_unlock(&o->lock);
				dead++;
				itn_sub_put(sub);
				continue;
			}
			if (itn_read_retry(sub, seq)) {
				pthread_mutex_unlock(&o->lock);
				retries++;
				goto again;
			}
			o->valid = true;
			o->sgen = g;
			pthread_mutex_unlock(&o->lock);
			/* Use the mapping: it must match the content. */
			pthread_mutex_lock(&o->lock);
			if (o->valid && !o->dead &&
			    o->sgen !=
				    atomic_load_explicit(&p->primary[i],
							 memory_order_acquire))
				stale++;
			pthread_mutex_unlock(&o->lock);
			itn_sub_put(sub);
			reads++;
		}
	}
	atomic_fetch_add(&p->reads, reads);
	atomic_fetch_add(&p->retries, retries);
	atomic_fetch_add(&p->stale, stale);
	atomic_fetch_add(&p->stale_find, stale_find);
	atomic_fetch_add(&p->fn, fn);
	atomic_fetch_add(&p->dead, dead);
	return NULL;
}

static struct obj *p7_new(struct itn_space *s, uint64_t i)
{
	struct obj *o = pb_xmalloc(sizeof(*o));

	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
	o->slot = i;
	sub_insert(&o->sub, s, pb_region(i), PB_LEN, &ops_p7);
	return o;
}

static void run_p7(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t readers = ncpu > 1 ? (uint64_t)ncpu - 1 : 1;
	uint64_t ms = opt_ms ? opt_ms : opt_quick ? 300 : 10000;
	struct p7 p = { .n = 256 };
	uint64_t invals = 0, reuses = 0, t0, dt;
	struct obj **cur;
	pthread_t tid[64];
	struct pb_rng r;

	p.s = space_new();
	p.primary = pb_xmalloc(p.n * sizeof(*p.primary));
	cur = pb_xmalloc(p.n * sizeof(*cur));
	for (uint64_t i = 0; i < p.n; i++) {
		atomic_init(&p.primary[i], 1);
		cur[i] = p7_new(p.s, i);
	}
	for (uint64_t i = 0; i < readers && i < 64; i++)
		if (pthread_create(&tid[i], NULL, p7_reader, &p))
			exit(2);
	pb_rng_seed(&r, 72);
	t0 = pb_now_ns();
	do {
		for (int k = 0; k < 64; k++) {
			uint64_t i = pb_below(&r, p.n), c = 1 + pb_below(&r, 4);
			struct itn_range rg;

			if (i + c > p.n)
				c = p.n - i;
			rg = range_of(pb_region(i),
				      pb_region(i + c - 1) + PB_LEN - 1);
			/* munmap: tear the secondary mappings down ... */
			itn_invalidate_start(p.s, &rg);
			/* ... and new content appears at the same address. */
			for (uint64_t j = i; j < i + c; j++)
				atomic_fetch_add_explicit(&p.primary[j], 1,
							  memory_order_release);
			itn_invalidate_end(p.s, &rg);
			invals++;
			if (k & 3)
				continue;
			/* Address reuse: a new registration replaces the
			 * old one at the same address. */
			{
				struct obj *old = cur[i];
				uint64_t e = atomic_load(&p.epoch) + 1;

				cur[i] = p7_new(p.s, i);
				atomic_store_explicit(&old->dead_at, e,
						      memory_order_release);
				pthread_mutex_lock(&old->lock);
				old->dead = true;
				old->valid = false;
				pthread_mutex_unlock(&old->lock);
				if (itn_sub_remove_deferred(&old->sub))
					abort();
				atomic_store_explicit(&p.epoch, e,
						      memory_order_release);
				reuses++;
			}
		}
		dt = pb_now_ns() - t0;
	} while (dt < ms * 1000000);
	atomic_store(&p.stop, 1);
	for (uint64_t i = 0; i < readers && i < 64; i++)
		pthread_join(tid[i], NULL);
	for (uint64_t i = 0; i < p.n; i++)
		itn_sub_remove(&cur[i]->sub);
	itn_synchronize();
	itn_space_free(p.s);
	free(cur);
	free(p.primary);

	uint64_t stale = atomic_load(&p.stale) + atomic_load(&p.stale_find);

	if (stale || atomic_load(&p.fn))
		fail("P7: libitn stale=%" PRIu64 " stale_find=%" PRIu64
		     " fn=%" PRIu64,
		     atomic_load(&p.stale), atomic_load(&p.stale_find),
		     atomic_load(&p.fn));

	struct args a = { .n = 0 };
	struct pb_line l;
	struct kv kv;
	double itn_rps = (double)atomic_load(&p.reads) * 1e9 / (double)dt;
	enum peer_status st = peer_run("ucx", &kv, "P7", a_u64(&a, "n", p.n),
				       a_u64(&a, "ms", ms),
				       a_u64(&a, "readers", readers), NULL);

	pb_line_begin(&l, opt_json, "P7");
	pb_line_u64(&l, "slots", p.n);
	pb_line_u64(&l, "readers", readers);
	pb_line_u64(&l, "ms", ms);
	pb_line_u64(&l, "itn_stale", atomic_load(&p.stale));
	pb_line_u64(&l, "itn_stale_find", atomic_load(&p.stale_find));
	pb_line_u64(&l, "itn_fn", atomic_load(&p.fn));
	pb_line_dbl(&l, "itn_reads_per_s", itn_rps);
	pb_line_dbl(&l, "itn_retries_per_s",
		    (double)atomic_load(&p.retries) * 1e9 / (double)dt);
	pb_line_dbl(&l, "itn_invals_per_s", (double)invals * 1e9 / (double)dt);
	pb_line_dbl(&l, "itn_reuses_per_s", (double)reuses * 1e9 / (double)dt);
	if (line_peer(&l, "ucx", st)) {
		pb_line_u64(&l, "peer_stale", (uint64_t)kv_get(&kv, "stale"));
		pb_line_dbl(&l, "peer_reads_per_s", kv_get(&kv, "reads_per_s"));
		pb_line_dbl(&l, "peer_invals_per_s",
			    kv_get(&kv, "invals_per_s"));
		pb_line_dbl(&l, "ratio",
			    ratio(itn_rps, kv_get(&kv, "reads_per_s")));
	}
	pb_line_end(&l);
}

/* ---- P8: overlapping correctness against brute force ---- */

struct p8_writer {
	struct itn_space *s;
	struct obj *vol;
	uint64_t nvol;
	_Atomic int stop, ready;
	uint64_t ops;
};

static void *p8_writer_main(void *arg)
{
	struct p8_writer *w = arg;
	struct pb_rng r;
	uint64_t lo, hi;

	pb_rng_seed(&r, 81);
	for (uint64_t i = 0; i < w->nvol; i++) {
		pb_p8_interval(&r, &lo, &hi);
		sub_insert(&w->vol[i].sub, w->s, lo, hi - lo + 1, &ops_plain);
	}
	atomic_store(&w->ready, 1);
	while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
		uint64_t i = pb_below(&r, w->nvol);

		if (itn_sub_remove(&w->vol[i].sub))
			abort();
		pb_p8_interval(&r, &lo, &hi);
		sub_insert(&w->vol[i].sub, w->s, lo, hi - lo + 1, &ops_plain);
		w->ops++;
	}
	return NULL;
}

static void p8_one(uint64_t n, bool range, bool writer)
{
	uint64_t nq = opt_quick ? 2000 : 20000, t0, tq;
	uint64_t nvol = writer ? n / 10 + 1 : 0;
	uint64_t with_hit = 0, fn_first = 0, missed = 0, wrong = 0;
	uint64_t not_first = 0, found_total = 0;
	uint64_t *lo = pb_xmalloc(n * sizeof(*lo));
	uint64_t *hi = pb_xmalloc(n * sizeof(*hi));
	uint64_t *qlo = pb_xmalloc(nq * sizeof(*qlo));
	uint64_t *qhi = pb_xmalloc(nq * sizeof(*qhi));
	struct itn_sub **res = pb_xmalloc(nq * sizeof(*res));
	uint64_t *cnt = pb_xmalloc(nq * sizeof(*cnt));
	struct itn_space *s = space_new();
	struct obj *o = objs_new(n);
	struct obj *vol = objs_new(nvol);
	struct p8_writer w = { .s = s, .vol = vol, .nvol = nvol };
	pthread_t tid;
	struct pb_rng r;

	pb_rng_seed(&r, 1);
	for (uint64_t i = 0; i < n; i++) {
		pb_p8_interval(&r, &lo[i], &hi[i]);
		sub_insert(&o[i].sub, s, lo[i], hi[i] - lo[i] + 1, &ops_ref);
	}
	for (uint64_t i = 0; i < nq; i++)
		pb_p8_query(&r, range, &qlo[i], &qhi[i]);
	if (writer) {
		if (pthread_create(&tid, NULL, p8_writer_main, &w))
			exit(2);
		while (!atomic_load(&w.ready))
			sched_yield();
	}
	/* Timed: the first match (what opal's find returns). */
	t0 = pb_now_ns();
	for (uint64_t i = 0; i < nq; i++) {
		res[i] = itn_find(s, &ops_ref, qlo[i], qhi[i]);
		if (res[i])
			itn_sub_put(res[i]);
	}
	tq = pb_now_ns() - t0;
	/* Every match, still under the writer. */
	for (uint64_t i = 0; i < nq; i++) {
		struct itn_sub *x = itn_find(s, &ops_ref, qlo[i], qhi[i]), *nx;

		cnt[i] = 0;
		while (x) {
			uint64_t j = (uint64_t)(obj_of(x) - o);

			if (j >= n || !(lo[j] <= qhi[i] && qlo[i] <= hi[j]))
				wrong++;
			else
				cnt[i]++;
			nx = itn_find_next(s, &ops_ref, x, qlo[i], qhi[i]);
			itn_sub_put(x);
			x = nx;
		}
	}
	if (writer) {
		atomic_store(&w.stop, 1);
		pthread_join(tid, NULL);
	}
	for (uint64_t i = 0; i < nq; i++) {
		uint64_t bc = 0, best = UINT64_MAX;

		for (uint64_t j = 0; j < n; j++)
			if (lo[j] <= qhi[i] && qlo[i] <= hi[j]) {
				bc++;
				if (lo[j] < best)
					best = lo[j];
			}
		with_hit += bc > 0;
		found_total += cnt[i];
		if (cnt[i] < bc)
			missed += bc - cnt[i];
		if (!res[i]) {
			fn_first += bc > 0;
		} else {
			uint64_t j = (uint64_t)(obj_of(res[i]) - o);

			if (j >= n || !(lo[j] <= qhi[i] && qlo[i] <= hi[j]))
				wrong++;
			else if (lo[j] != best)
				not_first++;
		}
	}
	if (fn_first || missed || wrong || not_first)
		fail("P8 n=%" PRIu64 " %s %s: libitn fn=%" PRIu64
		     " missed=%" PRIu64 " wrong=%" PRIu64 " not_first=%" PRIu64,
		     n, range ? "range" : "point", writer ? "writer" : "static",
		     fn_first, missed, wrong, not_first);
	for (uint64_t i = 0; i < n; i++)
		itn_sub_remove(&o[i].sub);
	for (uint64_t i = 0; i < nvol; i++)
		itn_sub_remove(&vol[i].sub);
	itn_synchronize();
	itn_space_free(s);

	struct args a = { .n = 0 };
	struct pb_line l;
	struct kv kv;
	enum peer_status st = peer_run(
		"ompi", &kv, "P8", a_u64(&a, "n", n), a_u64(&a, "q", nq),
		a_u64(&a, "range", range), a_u64(&a, "writer", writer), NULL);
	double itn_ns = (double)tq / (double)nq;

	pb_line_begin(&l, opt_json, "P8");
	pb_line_u64(&l, "n", n);
	pb_line_str(&l, "query", range ? "range" : "point");
	pb_line_str(&l, "mode", writer ? "writer" : "static");
	pb_line_u64(&l, "q", nq);
	pb_line_u64(&l, "with_hit", with_hit);
	pb_line_u64(&l, "itn_fn", fn_first);
	pb_line_u64(&l, "itn_missed", missed);
	pb_line_u64(&l, "itn_wrong", wrong);
	pb_line_u64(&l, "itn_not_first", not_first);
	pb_line_u64(&l, "itn_found", found_total);
	pb_line_u64(&l, "itn_writer_ops", w.ops);
	pb_line_dbl(&l, "itn_ns", itn_ns);
	if (line_peer(&l, "ompi", st)) {
		pb_line_u64(&l, "peer_with_hit",
			    (uint64_t)kv_get(&kv, "with_hit"));
		pb_line_u64(&l, "peer_fn", (uint64_t)kv_get(&kv, "fn"));
		pb_line_u64(&l, "peer_fn_overlap",
			    (uint64_t)kv_get(&kv, "fn_overlap"));
		pb_line_u64(&l, "peer_wrong", (uint64_t)kv_get(&kv, "wrong"));
		pb_line_u64(&l, "peer_writer_ops",
			    (uint64_t)kv_get(&kv, "writer_ops"));
		pb_line_dbl(&l, "peer_ns", kv_get(&kv, "ns"));
		pb_line_dbl(&l, "ratio", ratio(kv_get(&kv, "ns"), itn_ns));
	}
	pb_line_end(&l);
	free(lo);
	free(hi);
	free(qlo);
	free(qhi);
	free(res);
	free(cnt);
	free(o);
	free(vol);
}

static void run_p8(void)
{
	static const uint64_t sizes[] = { 1000, 10000 };

	for (int si = 0; si < 2; si++) {
		uint64_t n = sizes[si];

		if (opt_n ? n != opt_n : opt_quick && n != 1000)
			continue;
		for (int q = 0; q < 2; q++)
			for (int wr = 0; wr < 2; wr++)
				p8_one(n, q, wr);
	}
}

/* ---- P9: emulator translation-block invalidation ---- */

struct tb {
	struct itn_sub sub;
	struct itn_tnode node;
	struct tb *page_next;
	uint64_t addr;
};

static uint64_t tb_invals;

static bool tb_invalidate(struct itn_sub *sub, const struct itn_range *r,
			  uint64_t cur_seq)
{
	itn_set_seq(sub, cur_seq);
	tb_invals++;
	return true;
}

static const struct itn_sub_ops tb_ops = { tb_invalidate, NULL };

/* QEMU system mode: PageDesc in a two-level radix table, a lock each. */
struct page_desc {
	pthread_spinlock_t lock;
	_Atomic(struct tb *) first_tb;
};

#define L2_BITS 10
#define L1_SIZE 1024

struct page_map {
	struct page_desc *l1[L1_SIZE];
};

static struct page_desc *page_find(struct page_map *m, uint64_t addr)
{
	uint64_t page = addr >> 12;
	struct page_desc *l2;

	if (page >> L2_BITS >= L1_SIZE)
		return NULL;
	l2 = m->l1[page >> L2_BITS];
	return l2 ? &l2[page & ((1u << L2_BITS) - 1)] : NULL;
}

static void page_add(struct page_map *m, struct tb *tb)
{
	uint64_t page = tb->addr >> 12;
	struct page_desc **l2 = &m->l1[page >> L2_BITS];
	struct page_desc *pd;

	if (!*l2) {
		*l2 = pb_xmalloc(sizeof(**l2) << L2_BITS);
		for (unsigned int i = 0; i < 1u << L2_BITS; i++) {
			pthread_spin_init(&(*l2)[i].lock, 0);
			atomic_init(&(*l2)[i].first_tb, NULL);
		}
	}
	pd = &(*l2)[page & ((1u << L2_BITS) - 1)];
	tb->page_next = atomic_load(&pd->first_tb);
	atomic_store(&pd->first_tb, tb);
}

PB_NOINLINE
static void bench_pagelist_store_loop(struct page_map *m, const uint64_t *st,
				      uint64_t ns, bool alloc)
{
	for (uint64_t i = 0; i < ns; i++) {
		uint64_t a = st[i], last = a + 7;
		struct page_desc *pd = page_find(m, a);
		void *coll[2] = { NULL, NULL };

		if (!pd ||
		    !atomic_load_explicit(&pd->first_tb, memory_order_acquire))
			continue;
		if (alloc) { /* page_collection_lock: g_new + g_tree_new */
			coll[0] = malloc(24);
			coll[1] = malloc(64);
			if (!coll[0] || !coll[1])
				abort();
		}
		pthread_spin_lock(&pd->lock);
		for (struct tb *tb = atomic_load_explicit(&pd->first_tb,
							  memory_order_relaxed);
		     tb; tb = tb->page_next)
			if (tb->addr <= last && a <= tb->addr + PB_TB_SIZE - 1)
				tb_invals++;
		pthread_spin_unlock(&pd->lock);
		free(coll[0]);
		free(coll[1]);
	}
}

PB_NOINLINE
static void bench_itree_mutex_store_loop(struct bl *b, const uint64_t *st,
					 uint64_t ns)
{
	for (uint64_t i = 0; i < ns; i++) {
		struct itn_tnode *x;

		pthread_mutex_lock(&b->lock);
		for (x = itn__tree_iter_first(&b->tree, st[i], st[i] + 7); x;
		     x = itn__tree_iter_next(x, st[i], st[i] + 7))
			tb_invals++;
		pthread_mutex_unlock(&b->lock);
	}
}

PB_NOINLINE
static void bench_itn_store_loop(struct itn_space *s, const uint64_t *st,
				 uint64_t ns)
{
	for (uint64_t i = 0; i < ns; i++) {
		struct itn_range r = {
			.start = st[i],
			.last = st[i] + 7,
			.event = ITN_EVENT_PROTECTION_PAGE,
			.flags = ITN_RANGE_BLOCKABLE,
		};

		itn_invalidate_start(s, &r);
		itn_invalidate_end(s, &r);
	}
}

static void run_p9(void)
{
	uint64_t ntb = 100000, ns = opt_quick ? 100000 : 10000000;
	struct tb *tbs = pb_xmalloc(ntb * sizeof(*tbs));
	uint64_t *st = pb_xmalloc(ns * sizeof(*st));
	struct page_map *m = calloc(1, sizeof(*m));
	struct itn_space *s = space_new();
	uint64_t t0, t_itn, t_pl, t_pla, t_tree, c_itn, c_pl, c_pla, c_tree;
	struct bl b;
	struct pb_rng r;

	if (!m)
		exit(2);
	memset(tbs, 0, ntb * sizeof(*tbs));
	pthread_mutex_init(&b.lock, NULL);
	itn__tree_init(&b.tree);
	for (uint64_t i = 0; i < ntb; i++) {
		tbs[i].addr = pb_tb_addr(i);
		sub_insert(&tbs[i].sub, s, tbs[i].addr, PB_TB_SIZE, &tb_ops);
		itn__tnode_init(&tbs[i].node);
		itn__tree_insert(&b.tree, &tbs[i].node, tbs[i].addr,
				 tbs[i].addr + PB_TB_SIZE - 1);
		page_add(m, &tbs[i]);
	}
	pb_rng_seed(&r, 9);
	for (uint64_t i = 0; i < ns; i++)
		st[i] = pb_p9_store(&r, ntb);

	tb_invals = 0;
	t0 = pb_now_ns();
	bench_itn_store_loop(s, st, ns);
	t_itn = pb_now_ns() - t0;
	c_itn = tb_invals;
	tb_invals = 0;
	t0 = pb_now_ns();
	bench_pagelist_store_loop(m, st, ns, false);
	t_pl = pb_now_ns() - t0;
	c_pl = tb_invals;
	tb_invals = 0;
	t0 = pb_now_ns();
	bench_pagelist_store_loop(m, st, ns, true);
	t_pla = pb_now_ns() - t0;
	c_pla = tb_invals;
	tb_invals = 0;
	t0 = pb_now_ns();
	bench_itree_mutex_store_loop(&b, st, ns);
	t_tree = pb_now_ns() - t0;
	c_tree = tb_invals;
	if (c_itn != c_pl || c_itn != c_pla || c_itn != c_tree)
		fail("P9: TB invalidations differ: libitn %" PRIu64
		     " pagelist %" PRIu64 " %" PRIu64 " itree %" PRIu64,
		     c_itn, c_pl, c_pla, c_tree);

	static const char *const peers[3] = { "pagelist", "pagelist-alloc",
					      "itree-mutex" };
	const uint64_t tp[3] = { t_pl, t_pla, t_tree };
	const uint64_t cp[3] = { c_pl, c_pla, c_tree };
	double itn_rate = (double)ns * 1e3 / (double)t_itn;

	for (int p = 0; p < 3; p++) {
		struct pb_line l;
		double pr = (double)ns * 1e3 / (double)tp[p];

		pb_line_begin(&l, opt_json, "P9");
		pb_line_u64(&l, "tbs", ntb);
		pb_line_u64(&l, "stores", ns);
		pb_line_dbl(&l, "itn_mstores_per_s", itn_rate);
		pb_line_u64(&l, "itn_tb_invals", c_itn);
		line_peer(&l, peers[p], PEER_OK);
		pb_line_dbl(&l, "peer_mstores_per_s", pr);
		pb_line_u64(&l, "peer_tb_invals", cp[p]);
		pb_line_dbl(&l, "ratio", ratio(itn_rate, pr));
		pb_line_end(&l);
	}
	for (uint64_t i = 0; i < ntb; i++)
		itn_sub_remove(&tbs[i].sub);
	itn_space_free(s);
	for (int i = 0; i < L1_SIZE; i++)
		free(m->l1[i]);
	free(m);
	free(tbs);
	free(st);
}

/* ---- main ---- */

static const struct {
	const char *name;
	void (*run)(void);
} workloads[] = {
	{ "P1", run_p1 }, { "P2", run_p2 }, { "P4", run_p4 }, { "P5", run_p5 },
	{ "P6", run_p6 }, { "P7", run_p7 }, { "P8", run_p8 }, { "P9", run_p9 },
};

#define NR_WORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: itn-bench-peers [--workload P1|P2|P4|P5|P6|P7|P8|P9|all]...\n"
		"                       [--threads 1,2,...] [--n N] [--ms MS]\n"
		"                       [--peer-dir DIR] [--json] [--quick]\n"
		"Runs libitn and its peers (UCX ucs_rcache, Open MPI opal_interval_tree)\n"
		"on the P workloads of peers.md §9.2, one process per peer; each line has\n"
		"libitn's figure, the peer's and ratio = how many times better libitn is.\n");
}

static bool parse_threads(const char *s)
{
	opt_nthreads = 0;
	while (*s && opt_nthreads < 16) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);

		if (end == s || !v || v > 64)
			return false;
		opt_threads[opt_nthreads++] = (unsigned int)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return false;
	}
	return opt_nthreads > 0;
}

int main(int argc, char **argv)
{
	bool sel[NR_WORKLOADS] = { false }, any = false;
	char *dir;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (readlink("/proc/self/exe", peer_dir, sizeof(peer_dir) - 1) < 0)
		snprintf(peer_dir, sizeof(peer_dir), "%s", argv[0]);
	dir = strrchr(peer_dir, '/');
	if (dir)
		*dir = '\0';
	else
		snprintf(peer_dir, sizeof(peer_dir), ".");
	for (long t = 1; t <= (ncpu > 0 ? ncpu : 1) && t <= 16; t++)
		opt_threads[opt_nthreads++] = (unsigned int)t;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--json")) {
			opt_json = true;
		} else if (!strcmp(a, "--quick")) {
			opt_quick = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		} else if (v && !strcmp(a, "--workload")) {
			bool ok = !strcmp(v, "all");

			for (size_t w = 0; w < NR_WORKLOADS; w++)
				if (ok || !strcmp(v, workloads[w].name)) {
					sel[w] = true;
					any = true;
					if (!ok)
						break;
				}
			if (!any)
				goto bad;
			i++;
		} else if (v && !strcmp(a, "--threads")) {
			if (!parse_threads(v))
				goto bad;
			i++;
		} else if (v && !strcmp(a, "--n")) {
			opt_n = strtoull(v, NULL, 10);
			if (!opt_n)
				goto bad;
			i++;
		} else if (v && !strcmp(a, "--ms")) {
			opt_ms = strtoull(v, NULL, 10);
			i++;
		} else if (v && !strcmp(a, "--peer-dir")) {
			snprintf(peer_dir, sizeof(peer_dir), "%s", v);
			i++;
		} else {
			goto bad;
		}
	}
	for (size_t w = 0; w < NR_WORKLOADS; w++)
		if (!any || sel[w])
			workloads[w].run();
	return failures ? 1 : 0;
bad:
	usage(stderr);
	return 2;
}
