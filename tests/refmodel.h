/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * refmodel.h - a deliberately simple reference implementation of the
 * libitn contract (SEMANTICS.md, API.md), single-threaded: sorted arrays
 * instead of trees, no locks, no waiting (an operation that would wait
 * says so instead).  The differential driver (diff.c) runs the same
 * operations against it and libitn and compares everything observable.
 */
#ifndef ITN_TEST_REFMODEL_H
#define ITN_TEST_REFMODEL_H

#include <itn/itn.h>

#include <stdbool.h>
#include <stdint.h>

#define REF_MAX_SUBS 16

enum ref_state { REF_UNREG, REF_LIVE, REF_ZOMBIE, REF_RELEASED };
enum ref_pending { REF_NONE, REF_INSERT, REF_UPDATE, REF_REMOVE };

struct ref_sub {
	enum ref_state state;
	bool has_space;		/* inserted since it was (re)initialised */
	int kind;		/* ops table: 0 no release(), 1 and 2 with */
	uint64_t start, last;	/* logical range */
	uint64_t lorder;	/* order in the logical index */
	bool in_phys;
	uint64_t pstart, plast; /* physical range */
	uint64_t porder;	/* order of application in the physical tree */
	enum ref_pending pending;
	bool called;		/* deferred insert the release invalidation
				 * called: a remove waits for the end */
	uint64_t pend_order;	/* position in the deferred list */
	uint64_t seq;
	int refs;		/* registration + find references */
};

/* Called by ref_start for each callback: returns what invalidate returns. */
typedef bool (*ref_cb_fn)(void *ctx, int id, const struct itn_range *r,
			  uint64_t cur_seq);

struct ref_space {
	uint64_t seq;
	uint64_t active;
	uint64_t next_order;	/* logical order counter */
	uint64_t phys_ctr;	/* physical application counter */
	uint64_t defer_ctr;	/* deferred list position counter */
	bool released;
	struct ref_sub sub[REF_MAX_SUBS];
	struct itn_stats stats;
	ref_cb_fn cb;
	void *cb_ctx;
	int in_callback;	/* depth of callbacks running */
};

void ref_init(struct ref_space *m, uint64_t seq, ref_cb_fn cb, void *ctx);

int ref_insert(struct ref_space *m, int id, uint64_t start, uint64_t length,
	       int kind);
/* Would itn_sub_remove(id) sleep?  (The driver never lets it.) */
bool ref_remove_would_wait(const struct ref_space *m, int id);
int ref_remove(struct ref_space *m, int id);
int ref_remove_deferred(struct ref_space *m, int id);
int ref_update(struct ref_space *m, int id, uint64_t start, uint64_t length);
int ref_start(struct ref_space *m, const struct itn_range *r);
void ref_end(struct ref_space *m);
/* itn_read_begin_timeout(id, 0): 0 and *seq, or -ETIMEDOUT / -EDEADLK. */
int ref_read_begin_now(struct ref_space *m, int id, uint64_t *seq);
bool ref_read_retry(const struct ref_space *m, int id, uint64_t seq);
void ref_set_seq(struct ref_space *m, int id, uint64_t cur_seq);
/* itn_find (after_id < 0) / itn_find_next: the id found (a reference
 * taken), -1 for none.  @kind: -1 any ops (NULL), else that ops table. */
int ref_find(struct ref_space *m, int kind, uint64_t start, uint64_t last,
	     int after_id);
void ref_put(struct ref_space *m, int id);
/* Subs whose release() is due (refs 0, out of the tree): marks them
 * released and returns a bit mask. */
uint32_t ref_collect_releases(struct ref_space *m);
int ref_space_release(struct ref_space *m);
bool ref_space_busy(const struct ref_space *m);

#endif /* ITN_TEST_REFMODEL_H */
