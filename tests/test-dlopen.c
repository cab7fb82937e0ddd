// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-dlopen - libitn.so works when a program loads it with dlopen().
 *
 *	test-dlopen LIBITN_SO
 *	test-dlopen LIBITN_SO --after-urcu LIBURCU_BP_SO loads|fails
 *
 * libitn's thread-locals, and with tls_model=initial-exec (the default)
 * liburcu-bp's reader pointer too, use the initial-exec TLS model
 * (src/meson.build), which needs their TLS in the static block.  A library
 * loaded after start-up gets that from the small surplus the dynamic
 * loader reserves; if libitn's thread-locals grew past it, dlopen() would
 * fail with "cannot allocate memory in static TLS block".  The first form
 * loads the library named by argv[1] into this program, which is not
 * linked with it, then runs finds, puts and removes from the main thread
 * and from a new thread (whose TLS is laid out after the load).
 *
 * The second form first loads liburcu-bp itself and runs one read section
 * through its exported functions, so that its TLS is set up dynamically,
 * then loads libitn: the one case the initial-exec build cannot load in
 * (documented in README.md), which the dynamic build can.  The last
 * argument says which this build is expected to do.
 */
#include <itn/itn.h>

#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static const char *lib_path;
static const char *urcu_path;
static bool expect_load = true;
static void *lib;

static struct itn_space *(*p_space_new)(void);
static int (*p_space_free)(struct itn_space *);
static int (*p_insert)(struct itn_sub *, struct itn_space *, uint64_t,
		       uint64_t, const struct itn_sub_ops *);
static int (*p_remove)(struct itn_sub *);
static struct itn_sub *(*p_find)(struct itn_space *,
				 const struct itn_sub_ops *, uint64_t,
				 uint64_t);
static void (*p_put)(struct itn_sub *);
static void (*p_synchronize)(void);

static _Atomic int released;

static bool inv(struct itn_sub *sub, const struct itn_range *range,
		uint64_t cur_seq)
{
	(void)sub;
	(void)range;
	(void)cur_seq;
	return true;
}

static void rel(struct itn_sub *sub)
{
	(void)sub;
	released++;
}

static const struct itn_sub_ops ops = { .invalidate = inv, .release = rel };

static void *sym(const char *name)
{
	void *p = dlsym(lib, name);

	if (!p)
		fail_msg("dlsym(%s): %s", name, dlerror());
	return p;
}

static void load_syms(void)
{
	*(void **)&p_space_new = sym("itn_space_new");
	*(void **)&p_space_free = sym("itn_space_free");
	*(void **)&p_insert = sym("itn_sub_insert");
	*(void **)&p_remove = sym("itn_sub_remove");
	*(void **)&p_find = sym("itn_find");
	*(void **)&p_put = sym("itn_sub_put");
	*(void **)&p_synchronize = sym("itn_synchronize");
}

static int load(void **state)
{
	(void)state;
	lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		fail_msg("dlopen(%s): %s", lib_path, dlerror());
	load_syms();
	return 0;
}

/* A failure in round_trip(), which may run on a thread of its own. */
static void die(const char *what)
{
	fprintf(stderr, "test-dlopen: %s\n", what);
	abort();
}

/* Static: a release() of a sub inserted by a failed run lands here. */
static struct itn_sub subs[64];

/* Insert, find + put many times (the flat index gets built), remove. */
static void *round_trip(void *arg)
{
	struct itn_space *s = p_space_new();
	int *ok = arg;

	if (!s)
		die("itn_space_new failed");
	memset(subs, 0, sizeof(subs));
	for (int i = 0; i < 64; i++)
		if (p_insert(&subs[i], s, 0x10000 + 0x2000 * (uint64_t)i,
			     0x1000, &ops))
			die("itn_sub_insert failed");
	for (int k = 0; k < 10000; k++) {
		uint64_t a = 0x10000 + 0x2000 * (uint64_t)(k % 64) + 8;
		struct itn_sub *got = p_find(s, &ops, a, a + 15);

		if (got != &subs[k % 64])
			die("itn_find returned the wrong subscription");
		p_put(got);
	}
	for (int i = 0; i < 64; i++)
		if (p_remove(&subs[i]))
			die("itn_sub_remove failed");
	p_synchronize();
	if (p_space_free(s))
		die("itn_space_free failed");
	*ok = 1;
	return NULL;
}

static void main_thread(void **state)
{
	int ok = 0;

	(void)state;
	released = 0;
	round_trip(&ok);
	assert_int_equal(ok, 1);
	assert_int_equal(released, 64);
}

static void new_thread(void **state)
{
	pthread_t t;
	int ok = 0;

	(void)state;
	released = 0;
	assert_int_equal(pthread_create(&t, NULL, round_trip, &ok), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(ok, 1);
	assert_int_equal(released, 64);
}

/* liburcu-bp loaded and used first, then libitn (see the top). */
static void after_urcu(void **state)
{
	void *urcu = dlopen(urcu_path, RTLD_NOW | RTLD_LOCAL);
	void (*lock)(void), (*unlock)(void);
	const char *err;
	int ok = 0;

	(void)state;
	if (!urcu)
		fail_msg("dlopen(%s): %s", urcu_path, dlerror());
	*(void **)&lock = dlsym(urcu, "urcu_bp_read_lock");
	*(void **)&unlock = dlsym(urcu, "urcu_bp_read_unlock");
	assert_non_null(lock);
	assert_non_null(unlock);
	lock();
	unlock();
	lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
	err = lib ? NULL : dlerror();
	if (!expect_load) {
#ifdef __GLIBC__
		/* glibc cannot move liburcu-bp's TLS to the static block
		 * once it was used: README.md documents the failure. */
		if (lib)
			fail_msg("dlopen(%s) after liburcu-bp: loaded, but the "
				 "initial-exec build should not (README.md)",
				 lib_path);
		assert_non_null(strstr(err, "static TLS"));
		return;
#else
		/* Other C libraries may manage: then it must work. */
		if (!lib)
			skip();
#endif
	}
	if (!lib)
		fail_msg("dlopen(%s) after liburcu-bp: %s", lib_path, err);
	load_syms();
	released = 0;
	round_trip(&ok);
	assert_int_equal(ok, 1);
	assert_int_equal(released, 64);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(main_thread),
		cmocka_unit_test(new_thread),
	};
	const struct CMUnitTest tests_after_urcu[] = {
		cmocka_unit_test(after_urcu),
	};

	if (argc == 5 && !strcmp(argv[2], "--after-urcu") &&
	    (!strcmp(argv[4], "loads") || !strcmp(argv[4], "fails"))) {
		lib_path = argv[1];
		urcu_path = argv[3];
		expect_load = !strcmp(argv[4], "loads");
		return cmocka_run_group_tests(tests_after_urcu, NULL, NULL) ?
			       EXIT_FAILURE :
			       EXIT_SUCCESS;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: test-dlopen LIBITN_SO "
				"[--after-urcu LIBURCU_BP_SO loads|fails]\n");
		return 2;
	}
	lib_path = argv[1];
	/* The library stays loaded: liburcu-bp's threads may still run. */
	return cmocka_run_group_tests(tests, load, NULL) ? EXIT_FAILURE :
							   EXIT_SUCCESS;
}
