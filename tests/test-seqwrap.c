// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-seqwrap.c - SEMANTICS.md I15: the parity rules hold across the wrap
 * of the 64-bit global seq.
 *
 * The test-only hook itn__space_set_seq() (internal, not exported from
 * libitn.so) starts an idle, empty space at a chosen even seq.  From
 * UINT64_MAX - 1 the periods run UINT64_MAX -> 0 -> 1 -> 2; an idle insert
 * at global 0 gets sub seq UINT64_MAX (odd); read_begin never sleeps while
 * idle; collisions are detected across the wrap; Partial and Full inserts,
 * idle updates and non-blocking failures at the wrap keep parity.  Every
 * scenario runs with the lock-free invalidation fast paths on and off.
 *
 * The internal state (itn__seq, itn__active) is checked after each step:
 * odd seq => active > 0, active == 0 => even.
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
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "itn-internal.h"

#define WRAP_START (UINT64_MAX - 1)
#define PAGE 0x1000

static void expect_rc(int got, int want, const char *what)
{
	if (got != want)
		fail_msg("%s: got %d (%s), want %d (%s)", what, got,
			 strerror(got < 0 ? -got : got), want,
			 strerror(want < 0 ? -want : want));
}

#define assert_u64(got, want)                                                 \
	do {                                                                  \
		uint64_t g_ = (got), w_ = (want);                             \
		if (g_ != w_)                                                 \
			fail_msg("%s = %" PRIu64 ", want %" PRIu64, #got, g_, \
				 w_);                                         \
	} while (0)

struct wsub {
	struct itn_sub sub;
	int id;
	atomic_int calls;
	_Atomic uint64_t seq;
	atomic_bool refuse;
};

static bool wsub_invalidate(struct itn_sub *sub, const struct itn_range *r,
			    uint64_t cur_seq)
{
	struct wsub *w = itn_container_of(sub, struct wsub, sub);

	/* Single-threaded test: no user lock is needed around set_seq. */
	itn_set_seq(sub, cur_seq);
	atomic_fetch_add(&w->calls, 1);
	atomic_store(&w->seq, cur_seq);
	return !atomic_load(&w->refuse);
}

static const struct itn_sub_ops wops = { .invalidate = wsub_invalidate };

static struct itn_range rng(uint64_t start, uint64_t last, unsigned int fl)
{
	return (struct itn_range){ .start = start,
				   .last = last,
				   .event = ITN_EVENT_UNMAP,
				   .flags = fl,
				   .owner = NULL };
}

/* I1 on the internal state. */
static void check_parity(struct itn_space *s, const char *when)
{
	uint64_t seq = itn__seq(s), active = itn__active(s);

	if ((seq & 1) && !active)
		fail_msg("%s: odd seq %" PRIu64 " with nothing active", when,
			 seq);
}

/* A fresh space at @seq, fast paths as the test's prestate says. */
static struct itn_space *space_at(void **state, uint64_t seq)
{
	struct itn_space *s = itn_space_new();

	assert_non_null(s);
	expect_rc(itn__space_set_fast(s, *(bool *)*state), 0, "set_fast");
	expect_rc(itn__space_set_seq(s, seq), 0, "itn__space_set_seq");
	assert_u64(itn__seq(s), seq);
	check_parity(s, "new space");
	return s;
}

static void ins(struct itn_space *s, struct wsub *w, int id, uint64_t start)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	expect_rc(itn_sub_insert(&w->sub, s, start, PAGE, &wops), 0, "insert");
}

/* read_begin would not sleep; returns its (odd) value. */
static uint64_t rb_now(struct wsub *w)
{
	uint64_t v = 0;

	expect_rc(itn_read_begin_timeout(&w->sub, 0, &v), 0,
		  "read_begin_timeout(0)");
	if (!(v & 1))
		fail_msg("sub %d: read_begin returned even %" PRIu64, w->id, v);
	return v;
}

static bool would_wait(struct wsub *w)
{
	uint64_t v = 0;
	int rc = itn_read_begin_timeout(&w->sub, 0, &v);

	if (rc != 0 && rc != -ETIMEDOUT)
		expect_rc(rc, 0, "read_begin_timeout(0)");
	return rc == -ETIMEDOUT;
}

static void free_space(struct itn_space *s)
{
	expect_rc(itn_space_free(s), 0, "itn_space_free");
}

/* The hook refuses odd seqs and busy spaces. */
static void hook_rejects(void **state)
{
	struct itn_space *s = itn_space_new();
	struct itn_range r = rng(0x1000, 0x1fff, ITN_RANGE_BLOCKABLE);
	struct wsub a;

	(void)state;
	assert_non_null(s);
	expect_rc(itn__space_set_seq(s, 3), -EINVAL, "odd seq");
	assert_u64(itn__seq(s), 2);
	expect_rc(itn_invalidate_start(s, &r), 0, "start");
	expect_rc(itn__space_set_seq(s, 8), -EBUSY, "in flight");
	itn_invalidate_end(s, &r);
	ins(s, &a, 1, 0x1000);
	expect_rc(itn__space_set_seq(s, 8), -EBUSY, "with a sub");
	assert_u64(itn__seq(s), 2);
	expect_rc(itn_sub_remove(&a.sub), 0, "remove");
	expect_rc(itn__space_set_seq(s, 8), 0, "empty and idle");
	free_space(s);
}

/*
 * Periods across the wrap: UINT64_MAX-1 -> UINT64_MAX -> 0 -> 1 -> 2.  The
 * idle insert at global UINT64_MAX-1 gets UINT64_MAX-2, the one at global 0
 * gets UINT64_MAX; every cur_seq is odd; collisions across the wrap are
 * seen; read_begin never sleeps while idle.
 */
static void periods_across_wrap(void **state)
{
	struct itn_space *s = space_at(state, WRAP_START);
	struct itn_range ra = rng(0x1000, 0x1fff, ITN_RANGE_BLOCKABLE);
	struct itn_range all = rng(0, 0xffff, ITN_RANGE_BLOCKABLE);
	struct wsub a, b;
	uint64_t sa;

	ins(s, &a, 1, 0x1000);
	sa = rb_now(&a);
	assert_u64(sa, UINT64_MAX - 2);

	expect_rc(itn_invalidate_start(s, &ra), 0, "start");
	assert_u64(atomic_load(&a.seq), UINT64_MAX);
	assert_u64(itn__seq(s), UINT64_MAX);
	assert_u64(itn__active(s), 1);
	assert_true(would_wait(&a));
	assert_true(itn_read_retry(&a.sub, sa));
	itn_invalidate_end(s, &ra);
	assert_u64(itn__seq(s), 0); /* wrapped, even */
	assert_u64(itn__active(s), 0);
	check_parity(s, "after the wrap");
	assert_u64(rb_now(&a), UINT64_MAX); /* 0 != UINT64_MAX: no sleep */

	ins(s, &b, 2, 0x2000);
	assert_u64(rb_now(&b), UINT64_MAX); /* global 0 - 1 */

	expect_rc(itn_invalidate_start(s, &all), 0, "start");
	assert_u64(itn__seq(s), 1);
	assert_u64(atomic_load(&a.seq), 1);
	assert_u64(atomic_load(&b.seq), 1);
	assert_true(itn_read_retry(&a.sub, UINT64_MAX));
	assert_true(itn_read_retry(&b.sub, UINT64_MAX));
	assert_true(itn_check_retry(&b.sub, UINT64_MAX));
	assert_true(would_wait(&a));
	assert_true(would_wait(&b));
	itn_invalidate_end(s, &all);
	assert_u64(itn__seq(s), 2);
	check_parity(s, "period 1");
	assert_u64(rb_now(&a), 1);
	assert_u64(rb_now(&b), 1);
	assert_false(itn_read_retry(&b.sub, 1));
	assert_u64(atomic_load(&s->stats.periods), 2);

	expect_rc(itn_sub_remove(&a.sub), 0, "remove");
	expect_rc(itn_sub_remove(&b.sub), 0, "remove");
	free_space(s);
}

/* Several periods straddling the wrap: each cur_seq is the previous + 2
 * (mod 2^64) and odd; after each end the seq is even and nobody waits. */
static void many_periods_across_wrap(void **state)
{
	struct itn_space *s = space_at(state, UINT64_MAX - 7);
	struct itn_range ra = rng(0x1000, 0x1fff, ITN_RANGE_BLOCKABLE);
	struct itn_range miss = rng(0x100000, 0x100fff, ITN_RANGE_BLOCKABLE);
	struct wsub a;
	uint64_t want = UINT64_MAX - 6;

	ins(s, &a, 1, 0x1000);
	for (int i = 0; i < 8; i++, want += 2) {
		/* A miss in flight across the period: Partial, then Full. */
		expect_rc(itn_invalidate_start(s, &miss), 0, "miss");
		assert_u64(itn__seq(s) & 1, 0);
		expect_rc(itn_invalidate_start(s, &ra), 0, "start");
		assert_u64(atomic_load(&a.seq), want);
		assert_u64(itn__seq(s), want);
		itn_invalidate_end(s, &ra);
		assert_true(would_wait(&a)); /* the miss is still active */
		check_parity(s, "one active");
		itn_invalidate_end(s, &miss);
		check_parity(s, "idle");
		assert_u64(itn__seq(s), want + 1);
		assert_u64(rb_now(&a), want);
	}
	assert_u64(itn__seq(s), 8);
	expect_rc(itn_sub_remove(&a.sub), 0, "remove");
	free_space(s);
}

/* Partial insert at the wrap: global UINT64_MAX-1 -> UINT64_MAX, sub seq
 * UINT64_MAX, read_begin waits until the end (global 0). */
static void partial_insert_at_wrap(void **state)
{
	struct itn_space *s = space_at(state, WRAP_START);
	struct itn_range miss = rng(0x100000, 0x100fff, ITN_RANGE_BLOCKABLE);
	struct itn_range rz = rng(0x3000, 0x3fff, ITN_RANGE_BLOCKABLE);
	struct wsub z;

	expect_rc(itn_invalidate_start(s, &miss), 0, "miss");
	assert_u64(itn__seq(s), WRAP_START);
	ins(s, &z, 1, 0x3000);
	assert_u64(itn__seq(s), UINT64_MAX);
	assert_true(would_wait(&z));
	check_parity(s, "partial insert");
	expect_rc(itn_invalidate_start(s, &rz), 0, "start");
	assert_u64(atomic_load(&z.seq), UINT64_MAX);
	itn_invalidate_end(s, &rz);
	assert_true(would_wait(&z));
	itn_invalidate_end(s, &miss);
	assert_u64(itn__seq(s), 0);
	assert_u64(rb_now(&z), UINT64_MAX);
	expect_rc(itn_sub_remove(&z.sub), 0, "remove");
	free_space(s);
}

/* Full insert at the wrap: deferred with sub seq UINT64_MAX, not seen by
 * the period, present after it; the next period (1) calls it. */
static void full_insert_at_wrap(void **state)
{
	struct itn_space *s = space_at(state, WRAP_START);
	struct itn_range ra = rng(0x1000, 0x1fff, ITN_RANGE_BLOCKABLE);
	struct itn_range rf = rng(0x4000, 0x4fff, ITN_RANGE_BLOCKABLE);
	struct wsub a, f;

	ins(s, &a, 1, 0x1000);
	expect_rc(itn_invalidate_start(s, &ra), 0, "start");
	ins(s, &f, 2, 0x4000);
	assert_true(would_wait(&f));
	expect_rc(itn_invalidate_start(s, &rf), 0, "nested");
	itn_invalidate_end(s, &rf);
	assert_int_equal(atomic_load(&f.calls), 0);
	itn_invalidate_end(s, &ra);
	assert_u64(itn__seq(s), 0);
	assert_u64(rb_now(&f), UINT64_MAX);
	expect_rc(itn_invalidate_start(s, &rf), 0, "start");
	assert_u64(atomic_load(&f.seq), 1);
	assert_true(itn_read_retry(&f.sub, UINT64_MAX));
	itn_invalidate_end(s, &rf);
	assert_u64(itn__seq(s), 2);
	expect_rc(itn_sub_remove(&a.sub), 0, "remove");
	expect_rc(itn_sub_remove(&f.sub), 0, "remove");
	free_space(s);
}

/* Idle update at the wrap: the sections begun before retry, nobody
 * sleeps, parity holds. */
static void update_at_wrap(void **state)
{
	struct itn_space *s = space_at(state, WRAP_START);
	struct wsub u;
	uint64_t seq;

	ins(s, &u, 1, 0x1000);
	seq = rb_now(&u);
	assert_u64(seq, UINT64_MAX - 2);
	expect_rc(itn_sub_update(&u.sub, 0x8000, PAGE), 0, "update");
	assert_true(itn_read_retry(&u.sub, seq));
	check_parity(s, "update");
	assert_u64(itn__seq(s) & 1, 0);
	seq = rb_now(&u);
	expect_rc(itn_sub_update(&u.sub, 0x9000, PAGE), 0, "update");
	assert_true(itn_read_retry(&u.sub, seq));
	check_parity(s, "update");
	rb_now(&u);
	expect_rc(itn_sub_remove(&u.sub), 0, "remove");
	free_space(s);
}

/* A non-blocking failure at the wrap ends the period: global 0, idle. */
static void nonblock_failure_at_wrap(void **state)
{
	struct itn_space *s = space_at(state, WRAP_START);
	struct itn_range nb = rng(0x1000, 0x2fff, 0);
	struct wsub a, b;

	ins(s, &a, 1, 0x1000);
	ins(s, &b, 2, 0x2000);
	atomic_store(&a.refuse, true);
	expect_rc(itn_invalidate_start(s, &nb), -EAGAIN, "non-blocking");
	assert_int_equal(atomic_load(&b.calls), 0);
	assert_u64(itn__seq(s), 0);
	assert_u64(itn__active(s), 0);
	assert_u64(rb_now(&a), UINT64_MAX);
	assert_u64(rb_now(&b), UINT64_MAX - 2);
	expect_rc(itn_sub_remove(&a.sub), 0, "remove");
	expect_rc(itn_sub_remove(&b.sub), 0, "remove");
	free_space(s);
}

int main(void)
{
	static bool fast = true, slow = false;
#define T(f) \
	cmocka_unit_test_prestate(f, &fast), cmocka_unit_test_prestate(f, &slow)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hook_rejects), T(periods_across_wrap),
		T(many_periods_across_wrap),	T(partial_insert_at_wrap),
		T(full_insert_at_wrap),		T(update_at_wrap),
		T(nonblock_failure_at_wrap),
	};
#undef T

	/* Never return the failure count: 77 reads as SKIP in meson. */
	return cmocka_run_group_tests_name("seqwrap", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
