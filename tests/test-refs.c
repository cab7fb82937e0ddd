// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-refs.c - itn_find()'s per-thread slot references (src/find.c,
 * "Slot references") against the lifetime contract: release() runs once,
 * after every reference, counted or in a slot, is gone.
 *
 * What each test would catch:
 *  - slot_ref_holds_release: release() run while this thread's slot holds
 *    the subscription (a release_cb that does not scan the slots);
 *  - slot_ref_of_other_thread_holds_release: the same with another
 *    thread's slot (a scan of this thread's block only);
 *  - slot_ref_put_by_other_thread: a put that only looks at its own slots
 *    (underflow abort, or release() never runs);
 *  - get_on_slot_ref: itn_sub_get() refusing a count of zero although a
 *    slot holds a reference, or a last slot put releasing while the
 *    counted reference taken by the get is held;
 *  - more_refs_than_slots: losing references past the slots (no counted
 *    fallback), or releasing early;
 *  - orphan_slots_after_thread_exit: a block freed with its references at
 *    thread exit (use after free, or release() never runs);
 *  - synchronize_waits_for_chained_release: itn_synchronize() returning
 *    before release_wait_cb, queued by release_cb, has run.
 *
 * Internal test: links the itn-core archive and includes itn-internal.h.
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

#include "itn-internal.h"

struct obj {
	struct itn_sub sub;
	atomic_int released;
	struct itn_sub *put_on_release; /* a reference this release() puts */
};

static struct obj objs[2];
static struct itn_space *space;

static bool inval(struct itn_sub *sub, const struct itn_range *r,
		  uint64_t cur_seq)
{
	(void)sub;
	(void)r;
	(void)cur_seq;
	return true;
}

static void rel(struct itn_sub *sub)
{
	struct obj *o = (struct obj *)(void *)sub;

	atomic_fetch_add(&o->released, 1);
	if (o->put_on_release)
		itn_sub_put(o->put_on_release);
}

static const struct itn_sub_ops ops = { .invalidate = inval, .release = rel };

static int setup(void **state)
{
	(void)state;
	memset(objs, 0, sizeof(objs));
	space = itn_space_new();
	assert_non_null(space);
	assert_int_equal(itn_sub_insert(&objs[0].sub, space, 0x1000, 0x1000,
					&ops), 0);
	assert_int_equal(itn_sub_insert(&objs[1].sub, space, 0x10000, 0x1000,
					&ops), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	itn_synchronize();
	assert_int_equal(itn_space_free(space), 0);
	return 0;
}

/* The counted references and the registration's (not the slotted flag). */
static uint32_t counted(int i)
{
	return atomic_load(&itn__sub(&objs[i].sub)->refs) & ITN_REFS_HELD;
}

static bool slotted(int i)
{
	return atomic_load(&itn__sub(&objs[i].sub)->refs) & ITN_REFS_SLOTTED;
}

static struct itn_sub *find0(void)
{
	struct itn_sub *s = itn_find(space, &ops, 0x1000, 0x1000);

	assert_ptr_equal(s, &objs[0].sub);
	return s;
}

static void slot_ref_holds_release(void **state)
{
	struct itn_sub *s;

	(void)state;
	assert_false(slotted(0));
	s = find0();
	/* A slot reference: the count is the registration's alone, and the
	 * subscription is flagged as slot-held (release() then waits one
	 * more grace period after the last put). */
	assert_int_equal(counted(0), ITN_REFS_REG);
	assert_true(slotted(0));
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	itn_synchronize();
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 0);
	assert_true(itn_sub_busy(&objs[0].sub));
	itn_sub_put(s);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 1);
	assert_false(itn_sub_busy(&objs[0].sub));
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
}

struct holder {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int step;
	int nfind;
	bool put;
};

static void step_wait(struct holder *h, int step)
{
	pthread_mutex_lock(&h->mu);
	while (h->step < step)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

static void step_set(struct holder *h, int step)
{
	pthread_mutex_lock(&h->mu);
	h->step = step;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Finds nfind references, then (step 2) puts them if put, and exits. */
static void *holder_thread(void *arg)
{
	struct holder *h = arg;
	struct itn_sub *s[16];

	for (int i = 0; i < h->nfind; i++)
		s[i] = find0();
	step_set(h, 1);
	step_wait(h, 2);
	if (h->put)
		for (int i = 0; i < h->nfind; i++)
			itn_sub_put(s[i]);
	return NULL;
}

#define HOLDER_INIT(n, p)                                                    \
	{ .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, \
	  .nfind = (n), .put = (p) }

static void slot_ref_of_other_thread_holds_release(void **state)
{
	struct holder h = HOLDER_INIT(1, true);
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, holder_thread, &h), 0);
	step_wait(&h, 1);
	assert_int_equal(counted(0), ITN_REFS_REG);
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	itn_synchronize();
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 0);
	step_set(&h, 2);
	assert_int_equal(pthread_join(t, NULL), 0);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 1);
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
}

static void *put_thread(void *arg)
{
	itn_sub_put(arg);
	return NULL;
}

static void slot_ref_put_by_other_thread(void **state)
{
	struct itn_sub *s;
	pthread_t t;

	(void)state;
	s = find0();
	assert_int_equal(pthread_create(&t, NULL, put_thread, s), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	/* Our slot was cleared by the other thread: nothing is held. */
	assert_int_equal(counted(0), ITN_REFS_REG);
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 1);
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
}

static void get_on_slot_ref(void **state)
{
	struct itn_sub *s;

	(void)state;
	s = find0();
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	itn_synchronize();
	/* Counted references 0, the registration's gone: the slot holds. */
	assert_int_equal(counted(0), 0);
	itn_sub_get(s);
	assert_int_equal(counted(0), 1);
	itn_sub_put(s); /* the slot reference */
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 0);
	itn_sub_put(s); /* the counted one */
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 1);
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
}

static void more_refs_than_slots(void **state)
{
	struct itn_sub *s[12];

	(void)state;
	for (int i = 0; i < 12; i++)
		s[i] = find0();
	/* 8 slots, then the count. */
	assert_int_equal(counted(0), ITN_REFS_REG + 4);
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	for (int i = 0; i < 11; i++) {
		itn_sub_put(s[i]);
		itn_synchronize();
		assert_int_equal(atomic_load(&objs[0].released), 0);
	}
	itn_sub_put(s[11]);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 1);
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
}

static void orphan_slots_after_thread_exit(void **state)
{
	struct holder h = HOLDER_INIT(2, false);
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, holder_thread, &h), 0);
	step_wait(&h, 1);
	step_set(&h, 2);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(counted(0), ITN_REFS_REG);
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 0);
	/* The exited thread's references, put here. */
	itn_sub_put(&objs[0].sub);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 0);
	itn_sub_put(&objs[0].sub);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[0].released), 1);
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
}

static void synchronize_waits_for_chained_release(void **state)
{
	struct itn_sub *s;

	(void)state;
	s = find0();
	/* obj 1's release(), queued after obj 0's release_cb, puts our slot
	 * reference to obj 0: release_cb saw it and queued release_wait_cb,
	 * which runs after one more grace period. */
	objs[1].put_on_release = s;
	assert_int_equal(itn_sub_remove(&objs[0].sub), 0);
	assert_int_equal(itn_sub_remove(&objs[1].sub), 0);
	itn_synchronize();
	assert_int_equal(atomic_load(&objs[1].released), 1);
	assert_int_equal(atomic_load(&objs[0].released), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(slot_ref_holds_release, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			slot_ref_of_other_thread_holds_release, setup,
			teardown),
		cmocka_unit_test_setup_teardown(slot_ref_put_by_other_thread,
						setup, teardown),
		cmocka_unit_test_setup_teardown(get_on_slot_ref, setup,
						teardown),
		cmocka_unit_test_setup_teardown(more_refs_than_slots, setup,
						teardown),
		cmocka_unit_test_setup_teardown(orphan_slots_after_thread_exit,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			synchronize_waits_for_chained_release, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
