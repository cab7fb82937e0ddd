// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * refmodel.c - the reference model: SEMANTICS.md written as plainly as
 * possible.  Linear scans over a small array stand in for both trees and
 * for the deferred list (entries are ordered by counters), so every rule
 * is visible in a few lines.
 */
#include "refmodel.h"

#include <errno.h>
#include <string.h>

void ref_init(struct ref_space *m, uint64_t seq, ref_cb_fn cb, void *ctx)
{
	memset(m, 0, sizeof(*m));
	m->seq = seq;
	m->cb = cb;
	m->cb_ctx = ctx;
}

static bool overlaps(uint64_t s1, uint64_t l1, uint64_t s2, uint64_t l2)
{
	return s1 <= l2 && s2 <= l1;
}

static int range_of(uint64_t start, uint64_t length, uint64_t *last)
{
	if (length == 0)
		return -EINVAL;
	if (start + (length - 1) < start)
		return -EOVERFLOW;
	*last = start + (length - 1);
	return 0;
}

static void phys_add(struct ref_space *m, struct ref_sub *s)
{
	s->in_phys = true;
	s->pstart = s->start;
	s->plast = s->last;
	s->porder = ++m->phys_ctr;
}

static void defer(struct ref_space *m, struct ref_sub *s, enum ref_pending p)
{
	s->pending = p;
	s->pend_order = ++m->defer_ctr;
}

int ref_insert(struct ref_space *m, int id, uint64_t start, uint64_t length,
	       int kind)
{
	struct ref_sub *s = &m->sub[id];
	uint64_t last;
	int err = range_of(start, length, &last);

	if (err)
		return err;
	if (s->state == REF_LIVE || s->state == REF_ZOMBIE)
		return -EBUSY;
	if (m->released)
		return -ESHUTDOWN;
	memset(s, 0, sizeof(*s));
	s->state = REF_LIVE;
	s->has_space = true;
	s->kind = kind;
	s->start = start;
	s->last = last;
	s->lorder = ++m->next_order;
	s->refs = kind ? 1 : 0;
	if (!m->active) {
		phys_add(m, s);
		s->seq = m->seq - 1;
	} else if (!(m->seq & 1)) {
		m->seq |= 1;
		phys_add(m, s);
		s->seq = m->seq;
	} else {
		defer(m, s, REF_INSERT);
		s->seq = m->seq;
		m->stats.deferred_inserts++;
	}
	m->stats.subs++;
	return 0;
}

bool ref_remove_would_wait(const struct ref_space *m, int id)
{
	const struct ref_sub *s = &m->sub[id];

	if (s->state != REF_LIVE || m->in_callback)
		return false;
	if (s->pending == REF_UPDATE || (s->pending == REF_INSERT && s->called))
		return true;
	return s->pending == REF_NONE && (m->seq & 1);
}

/* Both removes: returns true if the subscription stays until the end. */
static bool unsubscribe(struct ref_space *m, struct ref_sub *s)
{
	m->stats.subs--;
	switch (s->pending) {
	case REF_INSERT:
		if (s->called) {
			/* The release invalidation called it: it stays
			 * until the end, which drops it. */
			m->stats.deferred_removes++;
			return true;
		}
		s->pending = REF_NONE;
		return false;
	case REF_UPDATE:
		s->pending = REF_REMOVE; /* keeps its place in the list */
		m->stats.deferred_removes++;
		return true;
	case REF_NONE:
		if (m->seq & 1) {
			defer(m, s, REF_REMOVE);
			m->stats.deferred_removes++;
			return true;
		}
		s->in_phys = false;
		return false;
	case REF_REMOVE:
		break;
	}
	return false;
}

int ref_remove(struct ref_space *m, int id)
{
	struct ref_sub *s = &m->sub[id];

	if (s->state != REF_LIVE)
		return -ENOENT;
	if (m->in_callback)
		return -EDEADLK;
	/* The driver never calls it when it would wait. */
	unsubscribe(m, s);
	if (s->kind) {
		s->state = REF_ZOMBIE;
		s->refs--;
	} else {
		s->state = REF_UNREG; /* reusable */
	}
	return 0;
}

int ref_remove_deferred(struct ref_space *m, int id)
{
	struct ref_sub *s = &m->sub[id];

	if (s->state != REF_LIVE)
		return -ENOENT;
	if (!s->kind)
		return -EINVAL;
	s->state = REF_ZOMBIE;
	if (!unsubscribe(m, s))
		s->refs--;
	return 0;
}

int ref_update(struct ref_space *m, int id, uint64_t start, uint64_t length)
{
	struct ref_sub *s = &m->sub[id];
	uint64_t last;
	int err = range_of(start, length, &last);

	if (err)
		return err;
	if (s->state != REF_LIVE)
		return -ENOENT;
	if (m->released)
		return -ESHUTDOWN;
	s->start = start;
	s->last = last;
	s->lorder = ++m->next_order;
	if (s->pending != REF_NONE) {
		/* The end of the period applies the latest range, in the
		 * place of this call (call order). */
		s->pend_order = ++m->defer_ctr;
		return 0;
	}
	if (m->seq & 1) {
		defer(m, s, REF_UPDATE);
		s->seq = m->seq;
		m->stats.deferred_updates++;
	} else if (m->active) {
		m->seq |= 1;
		phys_add(m, s);
		s->seq = m->seq;
	} else {
		phys_add(m, s);
		s->seq = m->seq + 1;
		m->seq += 2;
	}
	return 0;
}

/* The next pending entry in call order, or NULL. */
static struct ref_sub *next_pending(struct ref_space *m)
{
	struct ref_sub *best = NULL;

	for (int i = 0; i < REF_MAX_SUBS; i++) {
		struct ref_sub *s = &m->sub[i];

		if (s->pending != REF_NONE &&
		    (!best || s->pend_order < best->pend_order))
			best = s;
	}
	return best;
}

static void end_one(struct ref_space *m)
{
	struct ref_sub *s;

	m->active--;
	if (m->active || !(m->seq & 1))
		return;
	while ((s = next_pending(m))) {
		enum ref_pending p = s->pending;

		s->pending = REF_NONE;
		s->called = false;
		if (p == REF_REMOVE) {
			s->in_phys = false;
			if (s->kind)
				s->refs--;
		} else if (p == REF_INSERT && s->state != REF_LIVE) {
			/* Called by the release, then removed. */
			if (s->kind)
				s->refs--;
		} else {
			phys_add(m, s); /* insert, or update's re-insert */
		}
	}
	m->seq++;
	m->stats.periods++;
}

/* The physical overlap after (pstart, porder) = (*ks, *ko), or NULL. */
static struct ref_sub *phys_next(struct ref_space *m, const struct itn_range *r,
				 uint64_t ks, uint64_t ko, bool first)
{
	struct ref_sub *best = NULL;

	for (int i = 0; i < REF_MAX_SUBS; i++) {
		struct ref_sub *s = &m->sub[i];

		if (!s->in_phys ||
		    !overlaps(s->pstart, s->plast, r->start, r->last))
			continue;
		if (!first && (s->pstart < ks ||
			       (s->pstart == ks && s->porder <= ko)))
			continue;
		if (!best || s->pstart < best->pstart ||
		    (s->pstart == best->pstart && s->porder < best->porder))
			best = s;
	}
	return best;
}

int ref_start(struct ref_space *m, const struct itn_range *r)
{
	struct ref_sub *s;
	uint64_t cur;

	if (r->start > r->last)
		return -EINVAL;
	m->stats.invalidations++;
	m->active++;
	s = phys_next(m, r, 0, 0, true);
	if (!s)
		return 0;
	m->seq |= 1;
	cur = m->seq;
	/* The tree is frozen: callbacks' own changes are deferred. */
	for (; s; s = phys_next(m, r, s->pstart, s->porder, false)) {
		bool ok;

		m->stats.callbacks++;
		m->in_callback++;
		ok = m->cb(m->cb_ctx, (int)(s - m->sub), r, cur);
		m->in_callback--;
		if (ok)
			continue;
		if (r->flags & ITN_RANGE_BLOCKABLE) {
			m->stats.refused++;
			continue;
		}
		m->stats.nonblock_failures++;
		end_one(m);
		return -EAGAIN;
	}
	return 0;
}

void ref_end(struct ref_space *m)
{
	end_one(m);
}

int ref_read_begin_now(struct ref_space *m, int id, uint64_t *seq)
{
	struct ref_sub *s = &m->sub[id];

	if (!s->has_space)
		return -EINVAL;
	if (m->in_callback)
		return -EDEADLK;
	if (s->seq == m->seq) {
		m->stats.read_waits++;
		return -ETIMEDOUT;
	}
	*seq = s->seq;
	return 0;
}

bool ref_read_retry(const struct ref_space *m, int id, uint64_t seq)
{
	return m->sub[id].seq != seq;
}

void ref_set_seq(struct ref_space *m, int id, uint64_t cur_seq)
{
	m->sub[id].seq = cur_seq;
}

int ref_find(struct ref_space *m, int kind, uint64_t start, uint64_t last,
	     int after_id)
{
	const struct ref_sub *a = after_id >= 0 ? &m->sub[after_id] : NULL;
	int best = -1;

	for (int i = 0; i < REF_MAX_SUBS; i++) {
		const struct ref_sub *s = &m->sub[i];
		const struct ref_sub *b = best >= 0 ? &m->sub[best] : NULL;

		if (s->state != REF_LIVE || !s->kind ||
		    (kind >= 0 && s->kind != kind) ||
		    !overlaps(s->start, s->last, start, last))
			continue;
		if (a && (s->start < a->start ||
			  (s->start == a->start && s->lorder <= a->lorder)))
			continue;
		if (!b || s->start < b->start ||
		    (s->start == b->start && s->lorder < b->lorder))
			best = i;
	}
	if (best >= 0)
		m->sub[best].refs++;
	return best;
}

void ref_put(struct ref_space *m, int id)
{
	m->sub[id].refs--;
}

uint32_t ref_collect_releases(struct ref_space *m)
{
	uint32_t mask = 0;

	for (int i = 0; i < REF_MAX_SUBS; i++) {
		struct ref_sub *s = &m->sub[i];

		if (s->state == REF_ZOMBIE && !s->refs && !s->in_phys &&
		    s->pending == REF_NONE) {
			/* release() frees it; the driver zeroes the memory
			 * as a fresh allocation would be. */
			memset(s, 0, sizeof(*s));
			mask |= 1u << i;
		}
	}
	return mask;
}

/* The first deferred insert (call order) not called by the release. */
static struct ref_sub *next_uncalled_insert(struct ref_space *m)
{
	struct ref_sub *best = NULL;

	for (int i = 0; i < REF_MAX_SUBS; i++) {
		struct ref_sub *s = &m->sub[i];

		if (s->pending == REF_INSERT && !s->called &&
		    s->state == REF_LIVE &&
		    (!best || s->pend_order < best->pend_order))
			best = s;
	}
	return best;
}

int ref_space_release(struct ref_space *m)
{
	static const struct itn_range all = {
		.start = 0,
		.last = UINT64_MAX,
		.event = ITN_EVENT_RELEASE,
		.flags = ITN_RANGE_BLOCKABLE,
		.owner = NULL,
	};

	struct ref_sub *s;
	uint64_t held;

	if (m->in_callback)
		return -EDEADLK;
	if (m->released)
		return -EALREADY;
	m->released = true;
	held = m->seq;
	m->active++; /* holds a running period open */
	if (!ref_start(m, &all))
		ref_end(m);
	/* The inserts a running period deferred are subscriptions too: the
	 * RELEASE callback reaches them after the tree, in call order. */
	while ((held & 1) && (s = next_uncalled_insert(m))) {
		bool ok;

		s->called = true;
		m->stats.callbacks++;
		m->in_callback++;
		ok = m->cb(m->cb_ctx, (int)(s - m->sub), &all, held);
		m->in_callback--;
		if (!ok)
			m->stats.refused++;
	}
	end_one(m);
	return 0;
}

bool ref_space_busy(const struct ref_space *m)
{
	for (int i = 0; i < REF_MAX_SUBS; i++)
		if (m->sub[i].state == REF_LIVE || m->sub[i].state == REF_ZOMBIE)
			return true;
	return m->active != 0;
}
