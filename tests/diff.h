/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * diff.h - the differential driver: runs a program in a small operation
 * language against libitn and the reference model, in one thread, and
 * compares after every step the callbacks made (which subscription, with
 * which cur_seq, in which order, and what they did), the global seq,
 * every counter, the results and error codes of every call, find results
 * and release() calls.
 *
 * The program is a byte string, so random generators and libFuzzer can
 * both write it; every byte string is a valid program.
 */
#ifndef ITN_TEST_DIFF_H
#define ITN_TEST_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * diff_run() - run @prog against libitn and the model: with @fast, with
 * the lock-free invalidation fast paths and a flat index built after every
 * find on an unchanged tree (so finds search it whenever it is current);
 * without, with the locked paths and tree walks alone.  Returns the number of operations run, or -1 after
 * printing the first difference to stderr (with the operation trace if
 * @verbose).
 */
long diff_run(const uint8_t *prog, size_t len, bool fast, bool verbose);

#endif /* ITN_TEST_DIFF_H */
