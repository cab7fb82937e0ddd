// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-diff.c - libFuzzer entry point for the differential driver: every
 * input is a program of the operation language (diff.c); the first byte
 * picks the lock-free fast paths or the locked paths.  A difference
 * between libitn and the reference model aborts, so libFuzzer keeps the
 * input.
 *
 * Built twice: with clang's -fsanitize=fuzzer (fuzz-diff, run by .ci/run
 * for a bounded time), and as fuzz-diff-replay (any compiler), whose main()
 * runs the files and directories it is given, e.g. the corpus in
 * tests/corpus/diff, under meson test.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (diff_run(data + 1, size - 1, data[0] & 1, false) < 0)
		abort();
	return 0;
}

#ifdef ITN_FUZZ_REPLAY
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f) {
		perror(path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = malloc(len > 0 ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
		fprintf(stderr, "%s: cannot read\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* Both modes, whatever the first byte says. */
	for (int mode = 0; mode < 2 && len > 0; mode++) {
		buf[0] = (uint8_t)((buf[0] & ~1u) | (unsigned int)mode);
		LLVMFuzzerTestOneInput(buf, (size_t)len);
	}
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		struct dirent *e;

		if (stat(argv[i], &st) || !S_ISDIR(st.st_mode)) {
			if (replay_file(argv[i]))
				return EXIT_FAILURE;
			files++;
			continue;
		}
		d = opendir(argv[i]);
		if (!d) {
			perror(argv[i]);
			return EXIT_FAILURE;
		}
		while ((e = readdir(d))) {
			char path[4096];

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i],
				 e->d_name);
			if (replay_file(path)) {
				closedir(d);
				return EXIT_FAILURE;
			}
			files++;
		}
		closedir(d);
	}
	printf("%d inputs replayed, no difference\n", files);
	return files ? EXIT_SUCCESS : 77;
}
#endif
