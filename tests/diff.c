// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * diff.c - the differential driver (see diff.h).
 *
 * Operation language: one byte selects the operation, the next bytes its
 * arguments (a missing byte reads as 0).  Subscriptions are the slots of a
 * fixed array; ranges come from a small address space so that overlaps,
 * equal starts and nesting are frequent, plus values at the top of the
 * 64-bit space and invalid ones.  Operations that would sleep in one
 * thread (a remove during a period that may call it) are skipped on both
 * sides; read_begin is read_begin_timeout with a zero timeout.
 *
 * Every subscription has a programmable callback: what it returns, whether
 * it calls itn_set_seq, and one action on another slot (insert, update,
 * remove_deferred, find, and the calls that must fail with -EDEADLK).
 */
#include "diff.h"
#include "refmodel.h"

#include <itn/itn.h>
#include "itn-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define NSUBS 12
#define MAX_OPEN 8
#define LOG_MAX 512

_Static_assert(NSUBS <= REF_MAX_SUBS, "model too small");

enum op {
	OP_INSERT,
	OP_REMOVE,
	OP_REMOVE_DEFERRED,
	OP_UPDATE,
	OP_START,
	OP_END,
	OP_FIND,
	OP_WALK,
	OP_READ_BEGIN,
	OP_READ_RETRY,
	OP_CB_SET,
	OP_START_NESTED,
	OP_RELEASE_SPACE,
	OP_COUNT
};

static const char *const op_name[OP_COUNT] = {
	"insert", "remove", "remove_deferred", "update", "start", "end",
	"find", "walk", "read_begin", "read_retry", "cb_set", "start2",
	"space_release",
};

enum cb_action {
	ACT_NONE,
	ACT_INSERT,
	ACT_UPDATE,
	ACT_REMOVE_DEFERRED,
	ACT_FIND,
	ACT_REMOVE,	/* must fail: -EDEADLK (or -ENOENT) */
	ACT_READ_BEGIN, /* must fail: -EDEADLK (or -EINVAL) */
	ACT_COUNT
};

struct cb_conf {
	bool refuse;   /* return false */
	bool noset;    /* do not call itn_set_seq */
	enum cb_action act;
	int other;     /* slot the action is about */
	uint64_t start, length;
	int kind;
};

/* One entry per callback: who, with which seq, and what the action gave. */
struct log_entry {
	int id;
	uint64_t cur_seq;
	int act_result;
};

struct side_log {
	struct log_entry e[LOG_MAX];
	int n;
};

struct ctx {
	/* libitn side */
	struct itn_space *s;
	struct itn_sub subs[NSUBS];
	_Atomic uint32_t released; /* set by release() on liburcu's thread */
	struct side_log lib;
	/* model side */
	struct ref_space m;
	struct side_log ref;
	/* shared */
	struct cb_conf cb[NSUBS];
	uint64_t read_seq[NSUBS];
	struct itn_range open[MAX_OPEN];
	int nopen;
	/* input */
	const uint8_t *p;
	size_t left;
	long ops;
	bool verbose;
};

static struct ctx *cur_ctx; /* the callbacks' way back (one thread) */

static uint8_t u8(struct ctx *c)
{
	if (!c->left)
		return 0;
	c->left--;
	return *c->p++;
}

static int slot(struct ctx *c)
{
	return u8(c) % NSUBS;
}

static uint64_t addr(struct ctx *c)
{
	uint8_t b = u8(c);

	if (b >= 248) /* the top of the space */
		return UINT64_MAX - (uint64_t)(u8(c) % 64);
	return (uint64_t)(b % 32) * 16 + (b / 128) * 4;
}

static uint64_t length(struct ctx *c)
{
	static const uint64_t len[16] = {
		1, 4, 16, 16, 32, 48, 64, 100, 128, 256, 512, 1000, 1,
		0 /* -EINVAL */, UINT64_MAX /* -EOVERFLOW unless at 0 */, 17,
	};

	return len[u8(c) % 16];
}

static void range(struct ctx *c, struct itn_range *r)
{
	uint8_t f = u8(c);

	r->start = addr(c);
	r->last = r->start + length(c) - 1;
	if (r->last < r->start || f >= 250) /* wrapped, or inverted */
		r->last = f >= 250 ? r->start - 1 : UINT64_MAX;
	r->event = (enum itn_event)(f % 8);
	r->flags = (f & 8) ? 0 : ITN_RANGE_BLOCKABLE;
	r->owner = NULL;
}

static int lib_id(struct itn_sub *sub)
{
	return (int)(sub - cur_ctx->subs);
}

static bool lib_invalidate(struct itn_sub *sub, const struct itn_range *r,
			   uint64_t cur_seq);
static void lib_release(struct itn_sub *sub);

static const struct itn_sub_ops lib_ops[3] = {
	{ .invalidate = lib_invalidate, .release = NULL },
	{ .invalidate = lib_invalidate, .release = lib_release },
	{ .invalidate = lib_invalidate, .release = lib_release },
};


static void lib_release(struct itn_sub *sub)
{
	/* liburcu's call_rcu thread: record only. */
	atomic_fetch_or_explicit(&cur_ctx->released, 1u << lib_id(sub),
				 memory_order_relaxed);
}

static void log_add(struct side_log *l, int id, uint64_t seq, int res)
{
	if (l->n < LOG_MAX)
		l->e[l->n] = (struct log_entry){ id, seq, res };
	l->n++;
}

/* A found subscription as a slot number, after dropping the reference. */
static int lib_found(struct itn_sub *sub)
{
	int id;

	if (!sub)
		return errno == ENOENT ? -1 : -1000 - errno;
	id = lib_id(sub);
	itn_sub_put(sub);
	return id;
}

static bool lib_invalidate(struct itn_sub *sub, const struct itn_range *r,
			   uint64_t cur_seq)
{
	struct ctx *c = cur_ctx;
	int id = lib_id(sub);
	const struct cb_conf *cf = &c->cb[id];
	struct itn_sub *o = &c->subs[cf->other];
	int res = 0;
	uint64_t seq;

	if (!cf->noset)
		itn_set_seq(sub, cur_seq);
	switch (cf->act) {
	case ACT_NONE:
	case ACT_COUNT:
		break;
	case ACT_INSERT:
		res = itn_sub_insert(o, c->s, cf->start, cf->length,
				     &lib_ops[cf->kind]);
		break;
	case ACT_UPDATE:
		res = itn_sub_update(o, cf->start, cf->length);
		break;
	case ACT_REMOVE_DEFERRED:
		res = itn_sub_remove_deferred(o);
		break;
	case ACT_FIND:
		res = lib_found(itn_find(c->s, NULL, r->start, r->last));
		break;
	case ACT_REMOVE:
		res = itn_sub_remove(o);
		break;
	case ACT_READ_BEGIN:
		res = itn_read_begin_timeout(o, 0, &seq);
		break;
	}
	log_add(&c->lib, id, cur_seq, res);
	return !cf->refuse;
}

static bool ref_invalidate(void *p, int id, const struct itn_range *r,
			   uint64_t cur_seq)
{
	struct ctx *c = p;
	const struct cb_conf *cf = &c->cb[id];
	int res = 0, f;
	uint64_t seq;

	if (!cf->noset)
		ref_set_seq(&c->m, id, cur_seq);
	switch (cf->act) {
	case ACT_NONE:
	case ACT_COUNT:
		break;
	case ACT_INSERT:
		res = ref_insert(&c->m, cf->other, cf->start, cf->length,
				 cf->kind);
		break;
	case ACT_UPDATE:
		res = ref_update(&c->m, cf->other, cf->start, cf->length);
		break;
	case ACT_REMOVE_DEFERRED:
		res = ref_remove_deferred(&c->m, cf->other);
		break;
	case ACT_FIND:
		f = ref_find(&c->m, -1, r->start, r->last, -1);
		if (f >= 0)
			ref_put(&c->m, f);
		res = f;
		break;
	case ACT_REMOVE:
		res = ref_remove(&c->m, cf->other);
		break;
	case ACT_READ_BEGIN:
		res = ref_read_begin_now(&c->m, cf->other, &seq);
		break;
	}
	log_add(&c->ref, id, cur_seq, res);
	return !cf->refuse;
}

static ITN_FORMAT(2, 3) bool fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "diff: op %ld: ", c->ops);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return false;
}

static bool same_int(struct ctx *c, const char *what, long lib, long ref)
{
	if (lib == ref)
		return true;
	return fail(c, "%s: libitn %ld, model %ld", what, lib, ref);
}

static bool compare_logs(struct ctx *c)
{
	if (c->lib.n != c->ref.n)
		return fail(c, "callbacks: libitn made %d, model %d", c->lib.n,
			    c->ref.n);
	for (int i = 0; i < c->lib.n && i < LOG_MAX; i++) {
		const struct log_entry *a = &c->lib.e[i], *b = &c->ref.e[i];

		if (a->id != b->id || a->cur_seq != b->cur_seq ||
		    a->act_result != b->act_result)
			return fail(c,
				    "callback %d: libitn (sub %d, seq %" PRIu64
				    ", action %d), model (sub %d, seq %" PRIu64
				    ", action %d)",
				    i, a->id, a->cur_seq, a->act_result, b->id,
				    b->cur_seq, b->act_result);
	}
	c->lib.n = c->ref.n = 0;
	return true;
}

#define CMP_STAT(f) \
	ok = ok && same_int(c, "stats." #f, (long)st.f, (long)c->m.stats.f)

static bool compare_state(struct ctx *c)
{
	struct itn_stats st;
	uint32_t due, got;
	bool ok = true;

	if (!compare_logs(c))
		return false;
	if (itn__seq(c->s) != c->m.seq)
		return fail(c, "global seq: libitn %" PRIu64 ", model %" PRIu64,
			    itn__seq(c->s), c->m.seq);
	if (itn__active(c->s) != c->m.active)
		return fail(c, "active: libitn %" PRIu64 ", model %" PRIu64,
			    itn__active(c->s), c->m.active);
	itn_space_stats(c->s, &st);
	CMP_STAT(invalidations);
	CMP_STAT(periods);
	CMP_STAT(callbacks);
	CMP_STAT(nonblock_failures);
	CMP_STAT(deferred_inserts);
	CMP_STAT(deferred_removes);
	CMP_STAT(read_waits);
	CMP_STAT(remove_waits);
	CMP_STAT(subs);
	CMP_STAT(refused);
	CMP_STAT(deferred_updates);
	if (!ok)
		return false;

	/* release(): due in the model ⇔ run by libitn after a barrier. */
	due = ref_collect_releases(&c->m);
	if (due)
		itn_synchronize();
	got = atomic_exchange_explicit(&c->released, 0, memory_order_relaxed);
	if (got != due)
		return fail(c, "release() calls: libitn %#x, model %#x", got,
			    due);
	for (int i = 0; i < NSUBS; i++)
		if (got & (1u << i))
			memset(&c->subs[i], 0, sizeof(c->subs[i])); /* "free" */
	return true;
}

static bool op_find(struct ctx *c, bool walk)
{
	uint64_t start = addr(c), last = start + length(c) - 1;
	int kind = (int)(u8(c) % 4) - 1; /* -1 any, 0 invalid, 1, 2 */
	const struct itn_sub_ops *ops = kind < 0 ? NULL : &lib_ops[kind];
	struct itn_sub *prev = NULL, *got;
	int ref = -1, lib, n = 0;

	if (last < start)
		last = UINT64_MAX;
	if (kind == 0) {
		got = itn_find(c->s, ops, start, last);
		return same_int(c, "find (ops without release) errno",
				got ? 0 : errno, EINVAL);
	}
	for (;;) {
		got = prev ? itn_find_next(c->s, ops, prev, start, last) :
			     itn_find(c->s, ops, start, last);
		lib = got ? lib_id(got) : (errno == ENOENT ? -1 : -1000 - errno);
		ref = ref_find(&c->m, kind, start, last, prev ? lib_id(prev) : -1);
		if (prev) {
			itn_sub_put(prev);
			ref_put(&c->m, lib_id(prev));
		}
		if (!same_int(c, walk ? "find_next" : "find", lib, ref)) {
			if (got)
				itn_sub_put(got);
			return false;
		}
		if (!got)
			return true;
		if (!walk || ++n > NSUBS) {
			itn_sub_put(got);
			ref_put(&c->m, ref);
			return n <= NSUBS || fail(c, "walk does not end");
		}
		prev = got;
	}
}

static bool do_start(struct ctx *c)
{
	struct itn_range r;
	int lib, ref;

	range(c, &r);
	if (c->nopen == MAX_OPEN)
		return true;
	lib = itn_invalidate_start(c->s, &r);
	ref = ref_start(&c->m, &r);
	if (!lib)
		c->open[c->nopen++] = r;
	return same_int(c, "invalidate_start", lib, ref);
}

static bool step(struct ctx *c)
{
	enum op op = (enum op)(u8(c) % OP_COUNT);
	struct itn_range r;
	uint64_t start, len, seq = 0, mseq = 0;
	int id, kind, lib, ref;

	if (c->verbose)
		fprintf(stderr, "diff: op %ld: %s\n", c->ops, op_name[op]);
	switch (op) {
	case OP_INSERT:
		id = slot(c);
		start = addr(c);
		len = length(c);
		kind = u8(c) % 3;
		lib = itn_sub_insert(&c->subs[id], c->s, start, len,
				     &lib_ops[kind]);
		ref = ref_insert(&c->m, id, start, len, kind);
		return same_int(c, "insert", lib, ref);
	case OP_REMOVE:
		id = slot(c);
		if (ref_remove_would_wait(&c->m, id))
			return true; /* it would sleep in one thread */
		return same_int(c, "remove", itn_sub_remove(&c->subs[id]),
				ref_remove(&c->m, id));
	case OP_REMOVE_DEFERRED:
		id = slot(c);
		return same_int(c, "remove_deferred",
				itn_sub_remove_deferred(&c->subs[id]),
				ref_remove_deferred(&c->m, id));
	case OP_UPDATE:
		id = slot(c);
		start = addr(c);
		len = length(c);
		return same_int(c, "update",
				itn_sub_update(&c->subs[id], start, len),
				ref_update(&c->m, id, start, len));
	case OP_START:
		return do_start(c);
	case OP_START_NESTED:
		/* a second start while the first is still open */
		return do_start(c) && compare_logs(c) && do_start(c);
	case OP_END:
		if (!c->nopen)
			return true;
		id = u8(c) % c->nopen; /* any order: they are parallel */
		r = c->open[id];
		c->open[id] = c->open[--c->nopen];
		itn_invalidate_end(c->s, &r);
		ref_end(&c->m);
		return true;
	case OP_FIND:
		return op_find(c, false);
	case OP_WALK:
		return op_find(c, true);
	case OP_READ_BEGIN:
		id = slot(c);
		lib = itn_read_begin_timeout(&c->subs[id], 0, &seq);
		ref = ref_read_begin_now(&c->m, id, &mseq);
		if (!same_int(c, "read_begin_timeout", lib, ref))
			return false;
		if (!lib && seq != mseq)
			return fail(c, "read_begin: libitn %" PRIu64
				       ", model %" PRIu64, seq, mseq);
		if (!lib)
			c->read_seq[id] = seq;
		return true;
	case OP_READ_RETRY:
		id = slot(c);
		if (!c->m.sub[id].has_space)
			return true; /* never inserted: nothing to compare */
		return same_int(c, "read_retry",
				itn_read_retry(&c->subs[id], c->read_seq[id]),
				ref_read_retry(&c->m, id, c->read_seq[id]));
	case OP_CB_SET: {
		struct cb_conf *cf = &c->cb[slot(c)];
		uint8_t b = u8(c);

		cf->refuse = (b & 3) == 3;
		cf->noset = (b & 12) == 12;
		cf->act = (enum cb_action)((b >> 4) % ACT_COUNT);
		cf->other = slot(c);
		cf->start = addr(c);
		cf->length = length(c);
		cf->kind = u8(c) % 3;
		return true;
	}
	case OP_RELEASE_SPACE:
		if (u8(c) < 240)
			return true; /* rare: it ends inserting */
		return same_int(c, "space_release", itn_space_release(c->s),
				ref_space_release(&c->m));
	case OP_COUNT:
		break;
	}
	return true;
}

/* End what is open and remove everything, comparing all the way. */
static bool drain(struct ctx *c)
{
	while (c->nopen) {
		struct itn_range r = c->open[--c->nopen];

		itn_invalidate_end(c->s, &r);
		ref_end(&c->m);
		if (!compare_state(c))
			return false;
	}
	for (int i = 0; i < NSUBS; i++) {
		int lib = itn_sub_remove(&c->subs[i]);

		if (!same_int(c, "final remove", lib, ref_remove(&c->m, i)) ||
		    !compare_state(c))
			return false;
	}
	if (!same_int(c, "space_free", itn_space_free(c->s), 0))
		return false;
	c->s = NULL;
	return true;
}

long diff_run(const uint8_t *prog, size_t len, bool fast, bool verbose)
{
	static struct ctx c; /* large; one run at a time */
	bool ok = true;

	memset(&c, 0, sizeof(c));
	cur_ctx = &c;
	c.p = prog;
	c.left = len;
	c.verbose = verbose;
	c.s = itn_space_new();
	if (!c.s || itn__space_set_fast(c.s, fast))
		return fail(&c, "cannot create a space"), -1;
	/* With the fast paths, a flat index after every find on an unchanged
	 * tree (so finds use it whenever it is current); without, none. */
	itn__flat_set_threshold(63, fast ? 1 : UINT64_MAX);
	ref_init(&c.m, 2, ref_invalidate, &c);

	while (ok && c.left) {
		ok = step(&c) && compare_state(&c);
		c.ops++;
	}
	if (ok)
		ok = drain(&c);
	if (!ok) {
		/* Leave no callback of this run behind for the next one. */
		if (c.s) {
			while (c.nopen)
				itn_invalidate_end(c.s, &c.open[--c.nopen]);
			for (int i = 0; i < NSUBS; i++)
				(void)itn_sub_remove(&c.subs[i]);
			itn_synchronize();
			(void)itn_space_free(c.s);
		}
		return -1;
	}
	itn_synchronize();
	return c.ops;
}
