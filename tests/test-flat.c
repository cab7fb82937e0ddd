// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-flat.c - the flat index that itn_find() searches while the logical
 * index does not change (src/flat.h).
 *
 * What each test would catch:
 *  - flat_first_equals_tree_first: a wrong lower bound, layout or prefix
 *    maximum (overlapping, nested, equal and boundary intervals);
 *  - find_after_change_ignores_stale_index: using an index taken at an
 *    older tree sequence (insert, remove and update must show at once);
 *  - find_with_ops_continues_after_other_users: stopping at the index's
 *    first match when it belongs to other ops;
 *  - build_counts_finds_on_one_tree: building on every find, or never, or
 *    counting finds across changes of the tree;
 *  - no_build_in_callbacks: allocating from an invalidate callback or a
 *    release() (libitn's callback path never allocates);
 *  - build_refuses_open_writer_section: publishing a copy of a tree a
 *    writer was changing.
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

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "itn-internal.h"

#define NOBJ 4200

struct obj {
	struct itn_sub sub;
	int id;
	_Atomic int released;
};

static struct obj objs[NOBJ];
static struct itn_space *space;
static int finds_in_callback;

static struct obj *obj_of(struct itn_sub *sub)
{
	return (struct obj *)(void *)sub;
}

static bool obj_invalidate(struct itn_sub *sub, const struct itn_range *r,
			   uint64_t cur_seq)
{
	(void)r;
	itn_set_seq(sub, cur_seq);
	return true;
}

static void obj_release(struct itn_sub *sub)
{
	atomic_fetch_add(&obj_of(sub)->released, 1);
}

/* Finds from inside the callback, which must not build an index. */
static bool finding_invalidate(struct itn_sub *sub, const struct itn_range *r,
			       uint64_t cur_seq)
{
	itn_set_seq(sub, cur_seq);
	for (int i = 0; i < 8; i++) {
		struct itn_sub *got = itn_find(space, NULL, r->start, r->last);

		if (got) {
			finds_in_callback++;
			itn_sub_put(got);
		}
	}
	return true;
}

static const struct itn_sub_ops ops = { obj_invalidate, obj_release };
static const struct itn_sub_ops ops2 = { obj_invalidate, obj_release };
static const struct itn_sub_ops finding_ops = { finding_invalidate,
						obj_release };

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static int setup(void **state)
{
	(void)state;
	memset(objs, 0, sizeof(objs));
	for (int i = 0; i < NOBJ; i++)
		objs[i].id = i;
	space = itn_space_new();
	/* Build after the first find on an unchanged tree. */
	itn__flat_set_threshold(63, 1);
	return space ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NOBJ; i++)
		(void)itn_sub_remove(&objs[i].sub);
	itn_synchronize();
	itn__flat_set_threshold(2, 64);
	return itn_space_free(space) == 0 ? 0 : -1;
}

static struct obj *ins(int id, uint64_t start, uint64_t last,
		       const struct itn_sub_ops *o)
{
	assert_int_equal(
		itn_sub_insert(&objs[id].sub, space, start, last - start + 1, o),
		0);
	return &objs[id];
}

static const struct itn_flat *flat_now(void)
{
	return atomic_load(&space->flat);
}

static bool flat_current(void)
{
	const struct itn_flat *f = flat_now();

	return f && f->wseq == atomic_load(&space->logi.wseq);
}

/* itn_find() must return @want (NULL: none). */
static void find_is(const struct itn_sub_ops *o, uint64_t start,
		    uint64_t last, struct obj *want)
{
	struct itn_sub *got = itn_find(space, o, start, last);

	if (got != (want ? &want->sub : NULL))
		fail_msg("find [%ju, %ju]: got %d, want %d", (uintmax_t)start,
			 (uintmax_t)last, got ? obj_of(got)->id : -1,
			 want ? want->id : -1);
	if (got)
		itn_sub_put(got);
}

/* An interval of one of a few shapes, some at the ends of the space. */
static void random_interval(uint64_t span, uint64_t *start, uint64_t *last)
{
	switch (rnd() % 8) {
	case 0: /* a point */
		*start = *last = rnd() % span;
		break;
	case 1: /* at 0 */
		*start = 0;
		*last = rnd() % span;
		break;
	case 2: /* up to UINT64_MAX */
		*start = UINT64_MAX - rnd() % span;
		*last = UINT64_MAX;
		break;
	case 3: /* long: covers many others */
		*start = rnd() % span;
		*last = *start + rnd() % span;
		break;
	default:
		*start = rnd() % span;
		*last = *start + rnd() % 16;
		break;
	}
}

static void flat_first_equals_tree_first(void **state)
{
	/* With the n / 4 duplicates below, 1638..1640 give 2047..2050
	 * positions and 3300 gives 4125: both sides of
	 * ITN_FLAT_PREFETCH_ENT, where the descent prefetches entries. */
	static const int sizes[] = {
		0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1000, 1638, 1639, 1640,
		3300,
	};

	(void)state;
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		int n = sizes[si];
		uint64_t span = (uint64_t)n * 8 + 16;
		const struct itn_flat *f;

		rng_state = 0x9e3779b97f4a7c15ull + (uint64_t)n;
		for (int i = 0; i < n; i++) {
			uint64_t a, b;

			random_interval(span, &a, &b);
			if (b - a == UINT64_MAX)
				b--;
			ins(i, a, b, &ops);
		}
		/* Duplicates of earlier intervals: insertion order counts. */
		for (int i = 0; i < n / 4; i++) {
			const struct itn_sub *o = &objs[rnd() % (uint64_t)n].sub;

			ins(n + i, itn_sub_start(o), itn_sub_last(o), &ops);
		}
		assert_true(itn__flat_build(space));
		f = flat_now();
		assert_non_null(f);
		assert_int_equal(f->n, (uint64_t)(n + n / 4));
		for (int q = 0; q < 4000; q++) {
			uint64_t a, b, fs = 0;
			struct itn_tnode *t;
			struct itn__sub *got;

			random_interval(span, &a, &b);
			itn__lock(space);
			t = itn__tree_iter_first(&space->logi, a, b);
			itn__unlock(space);
			got = itn__flat_first(f, a, b, &fs);
			if (got != (t ? itn_container_of(t, struct itn__sub,
							 logi) :
					NULL))
				fail_msg("n=%d [%ju, %ju]: flat %p, tree %p", n,
					 (uintmax_t)a, (uintmax_t)b,
					 (void *)got, (void *)t);
			if (got)
				assert_true(fs == itn__tnode_start(t));
		}
		for (int i = 0; i < n + n / 4; i++)
			assert_int_equal(itn_sub_remove(&objs[i].sub), 0);
		itn_synchronize();
		memset(objs, 0, sizeof(objs));
	}
}

static void find_after_change_ignores_stale_index(void **state)
{
	struct obj *a, *b, *c;

	(void)state;
	a = ins(0, 100, 199, &ops);
	ins(1, 300, 399, &ops);
	find_is(&ops, 150, 150, a); /* walks the tree, then builds */
	assert_true(flat_current());
	find_is(&ops, 150, 150, a); /* from the index */

	/* Insert before a: found at once, though the index has a first. */
	b = ins(2, 50, 160, &ops);
	assert_false(flat_current());
	find_is(&ops, 150, 150, b);
	assert_true(flat_current()); /* rebuilt by that find */

	/* Remove b: never returned again. */
	assert_int_equal(itn_sub_remove(&b->sub), 0);
	find_is(&ops, 150, 150, a);
	assert_true(flat_current());

	/* Update a away: seen at once. */
	assert_int_equal(itn_sub_update(&a->sub, 1000, 10), 0);
	find_is(&ops, 150, 150, NULL);
	find_is(&ops, 1005, 1005, a);
	assert_true(flat_current());

	/* A deferred insert (inside a period) is found as soon as insert
	 * returns, from the index's point of view too. */
	struct itn_range r = { .start = 0, .last = UINT64_MAX,
			       .event = ITN_EVENT_UNMAP,
			       .flags = ITN_RANGE_BLOCKABLE };
	assert_int_equal(itn_invalidate_start(space, &r), 0);
	c = ins(3, 140, 160, &ops);
	find_is(&ops, 150, 150, c);
	find_is(&ops, 150, 150, c);
	assert_true(flat_current());
	itn_invalidate_end(space, &r);
	find_is(&ops, 150, 150, c);
}

static void find_with_ops_continues_after_other_users(void **state)
{
	struct obj *mine;

	(void)state;
	ins(0, 0, 1000, &ops);	 /* first in order, other ops */
	ins(1, 10, 500, &ops);	 /* other ops again */
	mine = ins(2, 20, 30, &ops2);
	ins(3, 25, 26, &ops2);
	find_is(&ops2, 25, 25, mine);
	assert_true(flat_current());
	find_is(&ops2, 25, 25, mine);
	find_is(&ops2, 31, 31, NULL);
	find_is(NULL, 25, 25, &objs[0]);
}

static void build_counts_finds_on_one_tree(void **state)
{
	struct obj *a;

	(void)state;
	itn__flat_set_threshold(63, 3);
	a = ins(0, 0, 9, &ops);
	find_is(&ops, 5, 5, a);
	find_is(&ops, 5, 5, a);
	assert_null(flat_now());
	ins(1, 20, 29, &ops); /* the count starts again */
	find_is(&ops, 5, 5, a);
	find_is(&ops, 5, 5, a);
	assert_null(flat_now());
	find_is(&ops, 5, 5, a);
	assert_true(flat_current());

	/* Never, when disabled. */
	itn__flat_set_threshold(63, UINT64_MAX);
	ins(2, 40, 49, &ops);
	for (int i = 0; i < 100; i++)
		find_is(&ops, 45, 45, &objs[2]);
	assert_false(flat_current());
}

static void no_build_in_callbacks(void **state)
{
	struct itn_range r = { .start = 0, .last = 99,
			       .event = ITN_EVENT_UNMAP,
			       .flags = ITN_RANGE_BLOCKABLE };

	(void)state;
	ins(0, 0, 99, &finding_ops);
	assert_null(flat_now());
	assert_int_equal(itn_invalidate_start(space, &r), 0);
	itn_invalidate_end(space, &r);
	assert_int_equal(finds_in_callback, 8);
	assert_null(flat_now());
	/* Outside the callback the same find builds. */
	find_is(NULL, 0, 0, &objs[0]);
	assert_true(flat_current());
}

static void build_refuses_open_writer_section(void **state)
{
	(void)state;
	ins(0, 0, 99, &ops);
	/* A writer in mid-change, as itree.c makes it. */
	itn__lock(space);
	atomic_fetch_add(&space->logi.wseq, 1);
	assert_false(itn__flat_build(space));
	atomic_fetch_add(&space->logi.wseq, 1);
	itn__unlock(space);
	assert_null(flat_now());
	assert_true(itn__flat_build(space));
	assert_true(flat_current());
	/* A second build of the same tree changes nothing. */
	const struct itn_flat *f = flat_now();
	assert_true(itn__flat_build(space));
	assert_ptr_equal(flat_now(), f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(flat_first_equals_tree_first,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			find_after_change_ignores_stale_index, setup, teardown),
		cmocka_unit_test_setup_teardown(
			find_with_ops_continues_after_other_users, setup,
			teardown),
		cmocka_unit_test_setup_teardown(build_counts_finds_on_one_tree,
						setup, teardown),
		cmocka_unit_test_setup_teardown(no_build_in_callbacks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			build_refuses_open_writer_section, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
