// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-find-internal.c - itn_find()'s bounded fallback (rcu-design.md
 * §5.3 rule 4, §5.11 b, §6 "Reader stalls").
 *
 * A writer of the logical index that stalls in the middle of a change (its
 * sequence count odd) must not make a lockless finder spin: after a few
 * failed validations find takes the space lock, so it waits (sleeping) for
 * the writer and then returns the right answer.  The writer is simulated
 * by hand: a helper takes the space lock and makes s->logi.wseq odd, as
 * itree.c does around a change.
 *
 * Internal test: links the itn-core archive and includes itn-internal.h.
 * Worker threads only record into atomics; the test thread asserts.
 */
#include <errno.h>
/* cmocka.h 1.1.5 needs stdarg.h, stddef.h and setjmp.h included first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "itn-internal.h"

#define STALL_NS (50 * 1000000LL)

struct obj {
	struct itn_sub sub;
	_Atomic int released;
};

static struct obj objs[4];

static bool obj_invalidate(struct itn_sub *sub, const struct itn_range *r,
			   uint64_t cur_seq)
{
	(void)r;
	itn_set_seq(sub, cur_seq);
	return true;
}

/* call_rcu thread: atomics only. */
static void obj_release(struct itn_sub *sub)
{
	atomic_fetch_add(&((struct obj *)(void *)sub)->released, 1);
}

static const struct itn_sub_ops ops = { obj_invalidate, obj_release };

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000LL),
			       (long)(ns % 1000000000LL) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int setup(void **state)
{
	struct itn_space *s = itn_space_new();

	memset(objs, 0, sizeof(objs));
	*state = s;
	if (!s)
		return -1;
	/* obj 0: [0, 99]; obj 1: [50, 149]. */
	if (itn_sub_insert(&objs[0].sub, s, 0, 100, &ops) ||
	    itn_sub_insert(&objs[1].sub, s, 50, 100, &ops))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct itn_space *s = *state;

	for (int i = 0; i < 4; i++) {
		int err = itn_sub_remove(&objs[i].sub);

		if (err && err != -ENOENT)
			return -1;
	}
	itn_synchronize();
	for (int i = 0; i < 2; i++)
		if (atomic_load(&objs[i].released) != 1)
			return -1;
	return itn_space_free(s) == 0 ? 0 : -1;
}

/* The stalled writer: lock, wseq odd, hold, close the section, unlock. */
struct staller {
	struct itn_space *s;
	bool take_lock;
	_Atomic int stalled; /* the section is open */
	_Atomic int release; /* (no timer) close it now */
	_Atomic int64_t end_ns; /* CLOCK_MONOTONIC just before closing */
};

static void *staller_main(void *arg)
{
	struct staller *st = arg;
	struct itn_space *s = st->s;
	uint64_t w;

	if (st->take_lock)
		itn__lock(s);
	w = atomic_load_explicit(&s->logi.wseq, memory_order_relaxed);
	atomic_store_explicit(&s->logi.wseq, w + 1, memory_order_relaxed);
	atomic_store(&st->stalled, 1);
	if (st->take_lock) {
		sleep_ns(STALL_NS);
	} else {
		while (!atomic_load(&st->release))
			sleep_ns(1000000);
	}
	atomic_store(&st->end_ns, now_ns(CLOCK_MONOTONIC));
	/* Close the section as a writer does (even again, and new). */
	atomic_store_explicit(&s->logi.wseq, w + 2, memory_order_release);
	if (st->take_lock)
		itn__unlock(s);
	return NULL;
}

static void wait_stalled(struct staller *st)
{
	while (!atomic_load(&st->stalled))
		sleep_ns(100000);
}

/*
 * A writer holds the lock with the index's section open for 50 ms: find,
 * find_next and a miss all return the right answer, after the writer is
 * done (they waited on the lock), having slept rather than spun.
 */
static void find_waits_for_stalled_writer_on_the_lock(void **state)
{
	struct itn_space *s = *state;

	for (int kind = 0; kind < 3; kind++) {
		struct staller st = { .s = s, .take_lock = true };
		struct itn_sub *prev = NULL, *got;
		int64_t t0, c0, t1, c1;
		pthread_t t;

		if (kind == 1) {
			prev = itn_find(s, NULL, 0, 200);
			assert_ptr_equal(prev, &objs[0].sub);
		}
		assert_int_equal(pthread_create(&t, NULL, staller_main, &st),
				 0);
		wait_stalled(&st);

		t0 = now_ns(CLOCK_MONOTONIC);
		c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		errno = 0;
		if (kind == 0)
			got = itn_find(s, NULL, 120, 200);
		else if (kind == 1)
			got = itn_find_next(s, NULL, prev, 0, 200);
		else
			got = itn_find(s, NULL, 150, 200);
		c1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
		t1 = now_ns(CLOCK_MONOTONIC);
		assert_int_equal(pthread_join(t, NULL), 0);

		if (kind == 2) {
			assert_null(got);
			assert_int_equal(errno, ENOENT);
		} else {
			assert_ptr_equal(got, &objs[1].sub);
			itn_sub_put(got);
		}
		if (prev)
			itn_sub_put(prev);
		print_message("kind %d: waited %.1f ms, cpu %.3f ms\n", kind,
			      (double)(t1 - t0) / 1e6, (double)(c1 - c0) / 1e6);
		/* It returned only once the writer was done... */
		assert_true(t1 >= atomic_load(&st.end_ns));
		/* ...and slept meanwhile instead of spinning. */
		assert_true(c1 - c0 < STALL_NS / 2);
	}
}

struct finder {
	struct itn_space *s;
	uint64_t start, last;
	_Atomic(struct itn_sub *) got;
	_Atomic int err;
	_Atomic int done;
};

static void *finder_main(void *arg)
{
	struct finder *f = arg;
	struct itn_sub *got;

	errno = 0;
	got = itn_find(f->s, NULL, f->start, f->last);
	atomic_store(&f->err, errno);
	atomic_store(&f->got, got);
	atomic_store(&f->done, 1);
	return NULL;
}

/*
 * The bound itself: the index's section stays open (no lock held) until
 * find has returned.  A finder without the fallback would never return;
 * with it, it returns the right answer through the lock.  Waited for at
 * most 10 s, then the section is closed to free the thread and the test
 * fails.
 */
static void find_is_bounded_while_section_stays_open(void **state)
{
	struct itn_space *s = *state;
	struct staller st = { .s = s, .take_lock = false };
	struct finder hit = { .s = s, .start = 0, .last = 10 };
	struct finder miss = { .s = s, .start = 1000, .last = 2000 };
	pthread_t ts, th, tm;
	bool done = false;

	assert_int_equal(pthread_create(&ts, NULL, staller_main, &st), 0);
	wait_stalled(&st);
	assert_int_equal(pthread_create(&th, NULL, finder_main, &hit), 0);
	assert_int_equal(pthread_create(&tm, NULL, finder_main, &miss), 0);
	for (int i = 0; i < 10000 && !done; i++) {
		done = atomic_load(&hit.done) && atomic_load(&miss.done);
		if (!done)
			sleep_ns(1000000);
	}
	atomic_store(&st.release, 1);
	assert_int_equal(pthread_join(ts, NULL), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(pthread_join(tm, NULL), 0);
	if (atomic_load(&hit.got))
		itn_sub_put(atomic_load(&hit.got));
	assert_true(done);
	assert_ptr_equal(atomic_load(&hit.got), &objs[0].sub);
	assert_null(atomic_load(&miss.got));
	assert_int_equal(atomic_load(&miss.err), ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			find_waits_for_stalled_writer_on_the_lock, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			find_is_bounded_while_section_stays_open, setup,
			teardown),
	};

	/* Never return the failure count: 77 reads as SKIP in meson. */
	return cmocka_run_group_tests_name("find-internal", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
