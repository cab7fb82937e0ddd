// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-diff.c - seeded random programs run by the differential driver
 * (diff.c) against libitn and the reference model, with the lock-free
 * invalidation fast paths on and off.
 *
 * ITN_TEST_SEED=n picks the first seed (printed), ITN_DIFF_RUNS=n the
 * number of programs (default 60, or meson -Ddiff_runs), ITN_DIFF_LEN=n their length in bytes.
 * A failing seed is printed with the program's first bytes; rerun it with
 * ITN_DIFF_VERBOSE=1 to see the operation trace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "diff.h"

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void run_programs(bool fast)
{
	uint64_t seed = env_u64("ITN_TEST_SEED", 1);
	uint64_t runs = env_u64("ITN_DIFF_RUNS", 60);
	size_t len = (size_t)env_u64("ITN_DIFF_LEN", 2000);
	bool verbose = env_u64("ITN_DIFF_VERBOSE", 0);
	uint8_t *prog = malloc(len);
	long ops = 0;

	assert_non_null(prog);
	printf("# seeds %llu..%llu, %zu bytes each, fast paths %s\n",
	       (unsigned long long)seed, (unsigned long long)(seed + runs - 1),
	       len, fast ? "on" : "off");
	for (uint64_t i = 0; i < runs; i++) {
		long n;

		rng_state = (seed + i) * 0x9E3779B97F4A7C15ULL | 1;
		for (size_t j = 0; j < len; j++)
			prog[j] = (uint8_t)(rng_next() >> 56);
		n = diff_run(prog, len, fast, verbose);
		if (n < 0) {
			free(prog);
			fail_msg("seed %llu differs (ITN_TEST_SEED=%llu "
				 "ITN_DIFF_RUNS=1 ITN_DIFF_VERBOSE=1 to trace)",
				 (unsigned long long)(seed + i),
				 (unsigned long long)(seed + i));
		}
		ops += n;
	}
	printf("# %ld operations compared\n", ops);
	free(prog);
}

static void libitn_matches_model_with_fast_paths(void **state)
{
	(void)state;
	run_programs(true);
}

static void libitn_matches_model_locked_only(void **state)
{
	(void)state;
	run_programs(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(libitn_matches_model_with_fast_paths),
		cmocka_unit_test(libitn_matches_model_locked_only),
	};

	return cmocka_run_group_tests_name("diff", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
