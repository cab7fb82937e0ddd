// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * stress-itree.c - lockless tree walks against a concurrent writer.
 *
 * One writer thread inserts, removes and re-inserts the nodes of a static
 * array (nodes are never freed, so no RCU grace period is needed for memory
 * safety); reader threads walk the tree with chains of itn__tree_search_rcu
 * between itn__tree_read_begin and itn__tree_read_valid, and with
 * itn__tree_first_rcu.  Every walk that validates must return exactly the
 * brute-force answer for the tree as it was at the version it validated
 * against.
 *
 * For that the writer publishes, before each operation, the state the tree
 * will be in once the operation has ended (wseq advances by 2 per insert or
 * remove), in a ring of snapshots keyed by that wseq.  The operation's
 * closing release store of wseq orders the snapshot before any reader that
 * sees the new version.  Each slot is a seqlock made of C11 atomics; a
 * reader whose version has fallen out of the ring (or whose slot is being
 * rewritten) counts the walk as unchecked.
 *
 * Threads never assert: they count into atomics and keep the first failure
 * message; the test thread asserts after joining.  The run lasts
 * ITN_STRESS_SECONDS (default 2) and is bounded by operation counts too.
 * The writer's random sequence comes from a fixed seed, printed, that
 * ITN_TEST_SEED overrides (thread interleavings are not reproducible).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
/* cmocka.h 1.1.5 needs stdarg.h, stddef.h and setjmp.h included first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "itree.h"

#define MAX UINT64_MAX
#define DEFAULT_SEED UINT64_C(0x2545f4914f6cdd1d)

#define NNODES 64 /* one bit each in a snapshot's in-mask */
#define RING 64 /* snapshots kept; a power of two */
#define NREADERS 2
#define MAX_WRITER_OPS 20000000UL
#define MAX_READER_WALKS 100000000UL
#define FINAL_WALKS 2000 /* per reader, after the writer stopped */

static uint64_t base_seed = DEFAULT_SEED;
static double run_seconds = 2.0;

struct snode {
	struct itn_tnode tn;
	_Atomic uint64_t order;
};

#define ORDER_OFF (offsetof(struct snode, order) - offsetof(struct snode, tn))

static struct snode nodes[NNODES];
static struct itn_tree tree;

/* The tree's contents at version @wseq; @ver is the slot's seqlock. */
struct snap {
	_Atomic uint64_t ver;
	_Atomic uint64_t wseq;
	_Atomic uint64_t in;
	_Atomic uint64_t start[NNODES];
	_Atomic uint64_t last[NNODES];
	_Atomic uint64_t order[NNODES];
};

static struct snap ring[RING];

/* A snapshot as a reader copies it out. */
struct state {
	uint64_t in;
	uint64_t start[NNODES];
	uint64_t last[NNODES];
	uint64_t order[NNODES];
};

static _Atomic bool stop;
static _Atomic unsigned long failures;
static _Atomic bool failed_once;
static char first_failure[256]; /* written once, by the failed_once winner */

/* Counters, summed over readers. */
static _Atomic unsigned long walks_checked, walks_unchecked, walks_invalid,
	walks_lost, walks_final;
static _Atomic unsigned long writer_ops;

__attribute__((format(printf, 1, 2))) static void
record_failure(const char *fmt, ...)
{
	bool was = false;
	va_list ap;

	atomic_fetch_add_explicit(&failures, 1, memory_order_relaxed);
	if (!atomic_compare_exchange_strong_explicit(&failed_once, &was, true,
						     memory_order_relaxed,
						     memory_order_relaxed))
		return;
	/* Read by the test thread after pthread_join. */
	va_start(ap, fmt);
	vsnprintf(first_failure, sizeof(first_failure), fmt, ap);
	va_end(ap);
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

static uint64_t seed_for(uint64_t salt)
{
	uint64_t z = base_seed + salt * UINT64_C(0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	z ^= z >> 31;
	return z ? z : 1;
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return rnd(s) % n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Writer: publish @st as the contents of the tree at version @w. */
static void snap_publish(uint64_t w, const struct state *st)
{
	struct snap *sl = &ring[(w / 2) % RING];
	uint64_t v = atomic_load_explicit(&sl->ver, memory_order_relaxed);

	atomic_store_explicit(&sl->ver, v + 1, memory_order_relaxed);
	/* Orders the odd ver before the data stores (seqlock writer). */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&sl->wseq, w, memory_order_relaxed);
	atomic_store_explicit(&sl->in, st->in, memory_order_relaxed);
	for (int i = 0; i < NNODES; i++) {
		atomic_store_explicit(&sl->start[i], st->start[i],
				      memory_order_relaxed);
		atomic_store_explicit(&sl->last[i], st->last[i],
				      memory_order_relaxed);
		atomic_store_explicit(&sl->order[i], st->order[i],
				      memory_order_relaxed);
	}
	/* Pairs with the acquire load of ver in snap_read(). */
	atomic_store_explicit(&sl->ver, v + 2, memory_order_release);
}

/* Reader: copy the snapshot of version @w, or return false. */
static bool snap_read(uint64_t w, struct state *st)
{
	struct snap *sl = &ring[(w / 2) % RING];
	uint64_t v1, v2;

	v1 = atomic_load_explicit(&sl->ver, memory_order_acquire);
	if ((v1 & 1) ||
	    atomic_load_explicit(&sl->wseq, memory_order_relaxed) != w)
		return false;
	st->in = atomic_load_explicit(&sl->in, memory_order_relaxed);
	for (int i = 0; i < NNODES; i++) {
		st->start[i] = atomic_load_explicit(&sl->start[i],
						    memory_order_relaxed);
		st->last[i] = atomic_load_explicit(&sl->last[i],
						   memory_order_relaxed);
		st->order[i] = atomic_load_explicit(&sl->order[i],
						    memory_order_relaxed);
	}
	/* Orders the data loads before the second ver load. */
	atomic_thread_fence(memory_order_acquire);
	v2 = atomic_load_explicit(&sl->ver, memory_order_relaxed);
	return v1 == v2;
}

/* Brute force: indices of the nodes overlapping [qs, ql] in tree order. */
static int expected(const struct state *st, uint64_t qs, uint64_t ql, int *out)
{
	int k = 0;

	for (int i = 0; i < NNODES; i++) {
		int j;

		if (!(st->in & (UINT64_C(1) << i)) || st->start[i] > ql ||
		    st->last[i] < qs)
			continue;
		/* Insertion sort by (start, order). */
		for (j = k; j > 0; j--) {
			int p = out[j - 1];

			if (st->start[p] < st->start[i] ||
			    (st->start[p] == st->start[i] &&
			     st->order[p] < st->order[i]))
				break;
			out[j] = p;
		}
		out[j] = i;
		k++;
	}
	return k;
}

/* Index of @n in nodes[], or -1 if it is not one of them. */
static int node_index(const struct itn_tnode *n)
{
	uintptr_t base = (uintptr_t)&nodes[0].tn, p = (uintptr_t)n;

	if (p < base || (p - base) % sizeof(struct snode) ||
	    (p - base) / sizeof(struct snode) >= NNODES)
		return -1;
	return (int)((p - base) / sizeof(struct snode));
}

/* Ranges: a small universe, so that walks have several results. */
static void gen_range(uint64_t *rng, int i, uint64_t *s, uint64_t *l)
{
	uint64_t a, b;

	switch (i % 8) {
	case 4: /* clustered: equal starts */
		a = 64 * below(rng, 3);
		b = a + below(rng, 64);
		break;
	case 5: /* points */
		a = below(rng, 256);
		b = a;
		break;
	case 6: /* at the ends */
		if (below(rng, 2)) {
			a = 0;
			b = below(rng, 40);
		} else {
			a = MAX - below(rng, 2);
			b = MAX;
		}
		break;
	case 7: /* wide */
		a = below(rng, 2) ? 0 : below(rng, 256);
		b = below(rng, 2) ? MAX : a + below(rng, 512);
		break;
	default:
		a = below(rng, 256);
		b = a + below(rng, 40);
		break;
	}
	*s = a;
	*l = b;
}

static void gen_query(uint64_t *rng, uint64_t *s, uint64_t *l)
{
	switch (below(rng, 16)) {
	case 0:
		*s = 0;
		*l = MAX;
		break;
	case 1:
		*s = MAX - below(rng, 2);
		*l = MAX;
		break;
	case 2:
		*s = 0;
		*l = below(rng, 2);
		break;
	case 3:
		*s = below(rng, 300);
		*l = *s;
		break;
	default:
		*s = below(rng, 300);
		*l = *s + below(rng, 48);
		break;
	}
}

static void *writer(void *arg)
{
	pthread_barrier_t *bar = arg;
	uint64_t rng = seed_for(1000);
	struct state st;
	double deadline;
	unsigned long ops = 0;
	uint64_t next_order = 1;

	memset(&st, 0, sizeof(st));
	pthread_barrier_wait(bar);
	deadline = now() + run_seconds;
	while (ops < MAX_WRITER_OPS) {
		unsigned int burst = 1 + (unsigned int)below(&rng, 8);
		unsigned long idle;

		for (unsigned int b = 0; b < burst; b++, ops++) {
			int i = (int)below(&rng, NNODES);
			uint64_t bit = UINT64_C(1) << i, w, s, l;
			const char *why;
			long c;
			int r;

			w = atomic_load_explicit(&tree.wseq,
						 memory_order_relaxed);
			if (st.in & bit) {
				st.in &= ~bit;
				snap_publish(w + 2, &st);
				r = itn__tree_remove(&tree, &nodes[i].tn);
			} else {
				/* Sometimes the same range again. */
				if (st.order[i] == 0 || below(&rng, 4))
					gen_range(&rng, i, &s, &l);
				else
					s = st.start[i], l = st.last[i];
				st.in |= bit;
				st.start[i] = s;
				st.last[i] = l;
				st.order[i] = next_order++;
				snap_publish(w + 2, &st);
				/* Published by the insert's linking store. */
				atomic_store_explicit(&nodes[i].order,
						      st.order[i],
						      memory_order_relaxed);
				r = itn__tree_insert(&tree, &nodes[i].tn, s, l);
			}
			if (r)
				record_failure("writer op %lu: returned %d",
					       ops, r);
			if (atomic_load_explicit(&tree.wseq,
						 memory_order_relaxed) != w + 2)
				record_failure("writer op %lu: wseq not +2",
					       ops);
			c = itn__tree_check(&tree, ORDER_OFF, &why);
			if (c < 0)
				record_failure("writer op %lu: check: %s", ops,
					       why);
			else if (c != __builtin_popcountll(st.in))
				record_failure(
					"writer op %lu: %ld nodes, model %d",
					ops, c, __builtin_popcountll(st.in));
		}
		if (ops % 64 < 8 && now() > deadline)
			break;
		/*
		 * A quiet spell, so that readers validate some walks (the
		 * atomic load keeps the compiler from removing the loop).
		 */
		idle = (unsigned long)below(&rng, 4) ? below(&rng, 2000) : 0;
		while (idle--)
			(void)atomic_load_explicit(&tree.wseq,
						   memory_order_relaxed);
	}
	atomic_store_explicit(&writer_ops, ops, memory_order_relaxed);
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	return NULL;
}

struct reader_arg {
	pthread_barrier_t *bar;
	int id;
};

enum walk_result { WALK_CHECKED, WALK_UNCHECKED, WALK_INVALID, WALK_LOST };

/*
 * One chain of searches for [qs, ql] in one read section, then one
 * first_rcu in another, each compared with the snapshot of its version.
 */
static enum walk_result walk(uint64_t qs, uint64_t ql, int id, unsigned long nr)
{
	int got[NNODES + 1], want[NNODES], k, nw = 0;
	struct itn_tnode *n, *f;
	struct itn_tkey after;
	struct state st;
	bool lost = false, fvalid;
	uint64_t s, s2, s3;
	int i, fi;

	s = itn__tree_read_begin(&tree);
	n = itn__tree_search_rcu(&tree, qs, ql, NULL, ORDER_OFF);
	while (n) {
		if (n == ITN_TREE_LOST) {
			lost = true;
			break;
		}
		i = node_index(n);
		if (i < 0) {
			record_failure("reader %d walk %lu: foreign node %p",
				       id, nr, (void *)n);
			return WALK_INVALID;
		}
		got[nw++] = i;
		if (nw > NNODES)
			break; /* more results than nodes: not consistent */
		after.start =
			atomic_load_explicit(&n->start, memory_order_acquire);
		after.order = atomic_load_explicit(&nodes[i].order,
						   memory_order_acquire);
		n = itn__tree_search_rcu(&tree, qs, ql, &after, ORDER_OFF);
	}
	if (!itn__tree_read_valid(&tree, s)) {
		if (lost)
			return WALK_LOST;
		return WALK_INVALID;
	}
	if (s & 1) {
		record_failure(
			"reader %d walk %lu: validated at odd wseq %" PRIu64,
			id, nr, s);
		return WALK_INVALID;
	}
	if (lost || nw > NNODES) {
		record_failure("reader %d walk %lu: validated walk %s", id, nr,
			       lost ? "returned ITN_TREE_LOST" :
				      "has more results than nodes");
		return WALK_INVALID;
	}
	if (!snap_read(s, &st))
		return WALK_UNCHECKED;
	k = expected(&st, qs, ql, want);
	if (k != nw || memcmp(got, want, (size_t)k * sizeof(*got))) {
		record_failure(
			"reader %d walk %lu: [%#" PRIx64 ", %#" PRIx64
			"] at wseq %" PRIu64
			": %d results (first %d), expected %d (first %d)",
			id, nr, qs, ql, s, nw, nw ? got[0] : -1, k,
			k ? want[0] : -1);
		return WALK_INVALID;
	}

	/*
	 * first_rcu validates on its own: if it says valid, its walk saw one
	 * even version between s2 and s3, and its answer must be right for
	 * at least one of them (unchecked if one fell out of the ring).
	 */
	s2 = itn__tree_read_begin(&tree);
	f = itn__tree_first_rcu(&tree, qs, ql, &fvalid);
	s3 = itn__tree_read_begin(&tree);
	fi = f ? node_index(f) : -1;
	if (f && fi < 0) {
		record_failure("reader %d walk %lu: first_rcu: foreign node %p",
			       id, nr, (void *)f);
		return WALK_INVALID;
	}
	if (!fvalid || s3 - s2 > 2 * RING)
		return WALK_CHECKED;
	for (uint64_t v = (s2 + 1) & ~UINT64_C(1); v <= s3; v += 2) {
		if (!snap_read(v, &st))
			return WALK_CHECKED;
		k = expected(&st, qs, ql, want);
		if (fi == (k ? want[0] : -1))
			return WALK_CHECKED;
	}
	record_failure("reader %d walk %lu: first_rcu [%#" PRIx64 ", %#" PRIx64
		       "] in wseq %" PRIu64 "..%" PRIu64
		       " returned %d, right for none",
		       id, nr, qs, ql, s2, s3, fi);
	return WALK_INVALID;
	return WALK_CHECKED;
}

static void *reader(void *p)
{
	struct reader_arg *a = p;
	uint64_t rng = seed_for(2000 + (uint64_t)a->id), qs, ql;
	unsigned long nr, counts[4] = { 0 };

	pthread_barrier_wait(a->bar);
	for (nr = 0; nr < MAX_READER_WALKS &&
		     !atomic_load_explicit(&stop, memory_order_relaxed);
	     nr++) {
		gen_query(&rng, &qs, &ql);
		counts[walk(qs, ql, a->id, nr)]++;
	}
	/* Out of walks early: wait for the writer, which is bounded too. */
	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		;
	/* The writer is done: every walk must now validate and check. */
	for (int j = 0; j < FINAL_WALKS; j++, nr++) {
		gen_query(&rng, &qs, &ql);
		if (walk(qs, ql, a->id, nr) != WALK_CHECKED)
			record_failure("reader %d: quiet walk %lu unchecked",
				       a->id, nr);
		atomic_fetch_add_explicit(&walks_final, 1,
					  memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&walks_checked, counts[WALK_CHECKED],
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&walks_unchecked, counts[WALK_UNCHECKED],
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&walks_invalid, counts[WALK_INVALID],
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&walks_lost, counts[WALK_LOST],
				  memory_order_relaxed);
	return NULL;
}

static void validated_walks_match_snapshots(void **state)
{
	pthread_barrier_t bar;
	pthread_t w, r[NREADERS];
	struct reader_arg ra[NREADERS];
	struct state st;
	unsigned long checked, unchecked, invalid, lost, final;

	(void)state;
	itn__tree_init(&tree);
	for (int i = 0; i < NNODES; i++) {
		itn__tnode_init(&nodes[i].tn);
		atomic_init(&nodes[i].order, 0);
	}
	memset(&st, 0, sizeof(st));
	snap_publish(0, &st); /* the empty tree, before any thread runs */

	assert_int_equal(pthread_barrier_init(&bar, NULL, NREADERS + 2), 0);
	assert_int_equal(pthread_create(&w, NULL, writer, &bar), 0);
	for (int i = 0; i < NREADERS; i++) {
		ra[i].bar = &bar;
		ra[i].id = i;
		assert_int_equal(pthread_create(&r[i], NULL, reader, &ra[i]),
				 0);
	}
	pthread_barrier_wait(&bar);
	assert_int_equal(pthread_join(w, NULL), 0);
	for (int i = 0; i < NREADERS; i++)
		assert_int_equal(pthread_join(r[i], NULL), 0);
	pthread_barrier_destroy(&bar);

	checked = atomic_load(&walks_checked);
	unchecked = atomic_load(&walks_unchecked);
	invalid = atomic_load(&walks_invalid);
	lost = atomic_load(&walks_lost);
	final = atomic_load(&walks_final);
	print_message("writer ops %lu; concurrent walks: %lu checked, "
		      "%lu unchecked, %lu invalid, %lu lost; %lu final\n",
		      atomic_load(&writer_ops), checked, unchecked, invalid,
		      lost, final);
	if (atomic_load(&failures))
		fail_msg("seed %#" PRIx64 ": %lu failures, first: %s",
			 base_seed, atomic_load(&failures), first_failure);
	assert_true(itn__tree_check(&tree, ORDER_OFF, NULL) >= 0);
	/* Progress: the writer ran, readers validated walks during it. */
	assert_true(atomic_load(&writer_ops) > 0);
	assert_true(checked > 0);
	assert_int_equal(final, (unsigned long)NREADERS * FINAL_WALKS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(validated_walks_match_snapshots),
	};
	const char *env = getenv("ITN_TEST_SEED");
	char *end;

	if (env && *env) {
		errno = 0;
		base_seed = strtoull(env, &end, 0);
		if (errno || *end) {
			fprintf(stderr, "ITN_TEST_SEED: not a number: %s\n",
				env);
			return EXIT_FAILURE;
		}
	}
	env = getenv("ITN_STRESS_SECONDS");
	if (env && *env) {
		errno = 0;
		run_seconds = strtod(env, &end);
		if (errno || *end || run_seconds < 0) {
			fprintf(stderr,
				"ITN_STRESS_SECONDS: not a duration: %s\n",
				env);
			return EXIT_FAILURE;
		}
	}
	printf("stress-itree: seed %#" PRIx64
	       " (override with ITN_TEST_SEED), %g s\n",
	       base_seed, run_seconds);
	fflush(stdout);
	/* Never return the failure count: 77 reads as SKIP in meson. */
	return cmocka_run_group_tests_name("stress-itree", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
