// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-noalloc.c - itn_invalidate_start/end never allocate.
 *
 * libitn is meant to be driven from memory hooks (a malloc or munmap
 * interposer that must invalidate a registration cache): an invalidation
 * path that allocates would re-enter the allocator, the deadlock behind
 * years of reports against UCX, libfabric and Open MPI.  This test
 * interposes malloc and friends and fails if any is called while an
 * invalidation runs on the test thread: lock-free and locked paths, hits
 * and misses, nested and non-blocking invalidations, the end of a period
 * that applies deferred inserts, updates and removes and queues release()
 * calls, and classic notifiers; also itn_find() and itn_sub_put() called
 * from a callback.  The callbacks then allow allocation again while the
 * rest of them runs (the user's code), so only the library's own path is
 * checked.  Each scenario runs first on a brand-new thread, so one-time
 * per-thread setup is covered too.
 *
 * The interposer cannot coexist with AddressSanitizer's own: under ASan the
 * test is skipped (exit 77).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <itn/itn.h>

#if defined(__SANITIZE_ADDRESS__)
#define SKIP_INTERPOSER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define SKIP_INTERPOSER 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SKIP_INTERPOSER 1
#endif

#ifndef SKIP_INTERPOSER
/* glibc's allocator under its internal names. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

/* volatile: the compiler must not move these stores across calls it
 * believes cannot read them (it treats malloc as a builtin). */
static _Thread_local volatile bool forbidden;
static atomic_ulong violations;

static void note(void)
{
	if (forbidden)
		atomic_fetch_add(&violations, 1);
}

void *malloc(size_t size)
{
	note();
	return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
	note();
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
	note();
	return __libc_realloc(p, size);
}

void free(void *p)
{
	note();
	__libc_free(p);
}

void *aligned_alloc(size_t align, size_t size)
{
	note();
	return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
	void *p;

	note();
	p = __libc_memalign(align, size);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

#define FORBID() (forbidden = true)
#define ALLOW() (forbidden = false)

struct obj {
	struct itn_sub sub;
	pthread_mutex_t lock;
	int id;
};

static void *volatile sink;
static struct obj objs[64];
static struct obj extra[8];
static int failures;

static bool cb_invalidate(struct itn_sub *sub, const struct itn_range *r,
			  uint64_t cur_seq)
{
	struct obj *o = (struct obj *)(void *)sub;
	bool was = forbidden;
	struct itn_sub *found;

	/* itn_find() and itn_sub_put() from a callback are the library's
	 * path too: no flat index built, no per-thread block made here. */
	for (int i = 0; i < 4; i++) {
		found = itn_find(itn_sub_space(sub), NULL, r->start, r->last);
		if (found)
			itn_sub_put(found);
	}
	ALLOW();
	pthread_mutex_lock(&o->lock);
	itn_set_seq(sub, cur_seq);
	pthread_mutex_unlock(&o->lock);
	forbidden = was;
	/* Refuse non-blocking invalidations on odd ids. */
	return (r->flags & ITN_RANGE_BLOCKABLE) || !(o->id & 1);
}

static void cb_release(struct itn_sub *sub)
{
	(void)sub; /* static memory: zeroed by the test before reuse */
}

static const struct itn_sub_ops ops = { cb_invalidate, NULL };
static const struct itn_sub_ops rel_ops = { cb_invalidate, cb_release };

static int classic_start(struct itn_notifier *n, const struct itn_range *r)
{
	(void)n;
	(void)r;
	return 0;
}

static void classic_end(struct itn_notifier *n, const struct itn_range *r)
{
	(void)n;
	(void)r;
}

static const struct itn_notifier_ops classic_ops = {
	.invalidate_start = classic_start,
	.invalidate_end = classic_end,
};

static struct itn_range range(uint64_t start, uint64_t last, bool block)
{
	return (struct itn_range){ start, last, ITN_EVENT_UNMAP,
				   block ? ITN_RANGE_BLOCKABLE : 0, NULL };
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "FAIL: %s\n", what);
		failures++;
	}
}

/* Inserts and the like happen outside; only start/end are watched. */
static void scenario(struct itn_space *s)
{
	struct itn_range miss = range(1u << 30, (1u << 30) + 4095, true);
	struct itn_range hit = range(0, 4096 * 8 - 1, true);
	struct itn_range nb = range(4096, 4096 * 2 - 1, false);
	unsigned long before;
	int err;

	before = atomic_load(&violations);

	FORBID(); /* a miss: the lock-free path */
	err = itn_invalidate_start(s, &miss);
	itn_invalidate_end(s, &miss);
	ALLOW();
	check(!err, "miss");

	FORBID(); /* hits, nested, and a non-blocking refusal */
	err = itn_invalidate_start(s, &hit);
	err |= itn_invalidate_start(s, &hit);
	ALLOW();
	check(!err, "hit");
	/* Deferred work for the end of the period. */
	check(itn_sub_insert(&extra[0].sub, s, 0, 4096, &rel_ops) == 0,
	      "deferred insert");
	check(itn_sub_update(&objs[2].sub, 4096 * 40, 4096) == 0,
	      "deferred update");
	check(itn_sub_remove_deferred(&objs[4].sub) == 0, "deferred remove");
	FORBID();
	err = itn_invalidate_start(s, &nb); /* objs[1] refuses */
	check(err == -EAGAIN, "non-blocking refusal");
	itn_invalidate_end(s, &hit);
	itn_invalidate_end(s, &hit); /* applies the list, queues release */
	ALLOW();

	check(atomic_load(&violations) == before, "no allocation");
	/* Put things back for the next round. */
	check(itn_sub_remove(&extra[0].sub) == 0, "remove extra");
	itn_synchronize();
	memset(&extra[0].sub, 0, sizeof(extra[0].sub));
	memset(&objs[4].sub, 0, sizeof(objs[4].sub));
	check(itn_sub_insert(&objs[4].sub, s, 4 * 4096, 4096, &rel_ops) == 0,
	      "reinsert");
	check(itn_sub_update(&objs[2].sub, 2 * 4096, 4096) == 0, "move back");
}

static void *thread_main(void *arg)
{
	scenario(arg);
	return NULL;
}

static void run(struct itn_space *s)
{
	pthread_t t;

	/* A new thread each time: first-call setup must not allocate
	 * either.  Thread creation itself allocates, outside the watch. */
	pthread_create(&t, NULL, thread_main, s);
	pthread_join(t, NULL);
	scenario(s);
}

int main(void)
{
	struct itn_space *s = itn_space_new();
	struct itn_notifier classic;

	if (!s)
		return EXIT_FAILURE;
	/* The interposer sees allocations (else this test proves nothing). */
	FORBID();
	sink = malloc(16);
	free(sink);
	ALLOW();
	check(atomic_exchange(&violations, 0) == 2, "interposer works");
	for (int i = 0; i < 64; i++) {
		objs[i].id = i;
		pthread_mutex_init(&objs[i].lock, NULL);
		if (itn_sub_insert(&objs[i].sub, s, (uint64_t)i * 4096, 4096,
				   i % 2 ? &ops : &rel_ops)) {
			fprintf(stderr, "insert failed\n");
			return EXIT_FAILURE;
		}
	}
	for (int i = 0; i < 8; i++)
		pthread_mutex_init(&extra[i].lock, NULL);
	run(s);

	/* And with a classic notifier in the dispatch. */
	memset(&classic, 0, sizeof(classic));
	check(itn_notifier_register(&classic, s, &classic_ops) == 0,
	      "register classic");
	run(s);
	check(itn_notifier_unregister(&classic, s) == 0, "unregister");

	for (int i = 0; i < 64; i++)
		check(itn_sub_remove(&objs[i].sub) == 0, "remove");
	itn_synchronize();
	check(itn_space_free(s) == 0, "free");
	printf("%lu allocations inside invalidations, %d failures\n",
	       atomic_load(&violations), failures);
	return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
#else
int main(void)
{
	puts("skipped: the malloc interposer cannot run under a sanitizer");
	return 77;
}
#endif
