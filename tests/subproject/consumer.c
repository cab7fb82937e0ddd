// SPDX-License-Identifier: MIT
/*
 * consumer.c - a program outside libitn that uses it, as a user would:
 * built against the installed library through pkg-config
 * (tests/pkgconfig-consumer.sh) and as a meson subproject through
 * dependency('itn') (tests/subproject-consumer.sh, this directory's
 * meson.build).  Public API only.  Exits 0 when every check holds.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <itn/itn.h>

struct obj {
	struct itn_sub sub; /* first: a cast finds the object */
	atomic_int calls;
	atomic_int released;
};

static bool obj_invalidate(struct itn_sub *sub, const struct itn_range *r,
			   uint64_t cur_seq)
{
	struct obj *o = (struct obj *)sub;

	(void)r;
	atomic_fetch_add(&o->calls, 1);
	itn_set_seq(sub, cur_seq);
	return true;
}

/* On a libitn thread: record only. */
static void obj_release(struct itn_sub *sub)
{
	atomic_fetch_add(&((struct obj *)sub)->released, 1);
}

static const struct itn_sub_ops ops = {
	.invalidate = obj_invalidate,
	.release = obj_release,
};

static int failures;

static void check(bool ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAILED", what);
	failures += !ok;
}

int main(void)
{
	static struct obj a; /* zero-initialised; outlives release() */
	struct itn_range r = { .start = 0x1800,
			       .last = 0x1fff,
			       .event = ITN_EVENT_UNMAP,
			       .flags = ITN_RANGE_BLOCKABLE,
			       .owner = NULL };
	struct itn_space *s = itn_space_new();
	struct itn_sub *found;
	uint64_t seq;

	if (!s) {
		perror("itn_space_new");
		return 1;
	}
	check(itn_sub_insert(&a.sub, s, 0x1000, 0x1000, &ops) == 0, "insert");
	check(itn_sub_insert(&a.sub, s, 0x1000, 0x1000, &ops) == -EBUSY,
	      "double insert is -EBUSY");

	seq = itn_read_begin(&a.sub);
	check(!itn_read_retry(&a.sub, seq), "read section without collision");
	check(itn_invalidate_start(s, &r) == 0, "invalidate_start");
	itn_invalidate_end(s, &r);
	check(atomic_load(&a.calls) == 1, "the callback ran once");
	check(itn_read_retry(&a.sub, seq), "the read section collided");
	seq = itn_read_begin(&a.sub);
	check(!itn_read_retry(&a.sub, seq), "a new section does not");

	found = itn_find(s, &ops, 0x1fff, 0x2fff);
	check(found == &a.sub, "itn_find finds it");
	if (found)
		itn_sub_put(found);
	check(!itn_find(s, &ops, 0x2000, 0x2fff) && errno == ENOENT,
	      "itn_find misses beyond it (ENOENT)");

	check(itn_sub_remove(&a.sub) == 0, "remove");
	itn_synchronize();
	check(atomic_load(&a.released) == 1, "release ran once");
	check(itn_space_free(s) == 0, "space free");

	printf("%s\n", failures ? "consumer: FAILED" : "consumer: OK");
	return failures ? 1 : 0;
}
