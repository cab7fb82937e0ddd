// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * invalidate.c - the writer side: itn_invalidate_start() / _end().
 *
 * start: under the space lock, count the invalidation in active and look
 * for an overlap in the physical tree; if there is one, make the seq odd
 * (a period).  Then, with no lock held, walk the frozen tree and call every
 * overlapping subscription with that odd seq.
 *
 * end: under the space lock, uncount; the last end of a period applies the
 * deferred list, makes the seq even and wakes the waiters.
 *
 * Neither allocates: both may run from memory hooks.
 */
#include "itn-internal.h"

#include <errno.h>

_Thread_local struct itn__cb_frame *itn__cb_top
	__attribute__((tls_model("initial-exec")));

void itn__invalidate_end_locked(struct itn_space *s)
{
	uint64_t seq = itn__seq(s);

	if (--s->active || !(seq & 1))
		return;
	/* Last out of a period.  Order matters: the deferred list is
	 * applied before the seq moves, in the same locked section, so a
	 * waiter that sees the new seq finds every change made. */
	itn__apply_deferred(s);
	itn__set_global_seq(s, seq + 1);
	itn__count(s, periods);
	pthread_cond_broadcast(&s->cv);
}

ITN_EXPORT int itn_invalidate_start(struct itn_space *s,
				    const struct itn_range *r)
{
	struct itn__cb_frame frame;
	struct itn_tnode *n;
	uint64_t cur_seq;

	if (!s || !r || r->start > r->last)
		return -EINVAL;

	itn__lock(s);
	s->active++;
	itn__count(s, invalidations);
	n = itn__tree_iter_first(&s->phys, r->start, r->last);
	cur_seq = itn__seq(s);
	if (n && !(cur_seq & 1)) {
		cur_seq |= 1;
		itn__set_global_seq(s, cur_seq);
	}
	itn__unlock(s);
	if (!n)
		return 0;

	/*
	 * The period stays open at least until our own end, so the tree is
	 * frozen under this walk: no lock is needed, and callbacks may call
	 * back into the library (insert, update, find...).
	 */
	frame.space = s;
	frame.next = itn__cb_top;
	itn__cb_top = &frame;
	for (; n; n = itn__tree_iter_next(n, r->start, r->last)) {
		struct itn__sub *sub = itn_container_of(n, struct itn__sub, phys);

		itn__count(s, callbacks);
		if (itn_likely(sub->ops->invalidate(itn__pub(sub), r, cur_seq)))
			continue;
		if (r->flags & ITN_RANGE_BLOCKABLE) {
			itn__count(s, refused);
			continue;
		}
		/* Non-blocking and refused: stop, end it ourselves. */
		itn__cb_top = frame.next;
		itn__count(s, nonblock_failures);
		itn__lock(s);
		itn__invalidate_end_locked(s);
		itn__unlock(s);
		return -EAGAIN;
	}
	itn__cb_top = frame.next;
	return 0;
}

ITN_EXPORT void itn_invalidate_end(struct itn_space *s,
				   const struct itn_range *r)
{
	if (!s || !r)
		itn__die("itn_invalidate_end: NULL argument");
	itn__lock(s);
	if (!s->active)
		itn__die("itn_invalidate_end: no invalidation in flight "
			 "(end without a successful start?)");
	itn__invalidate_end_locked(s);
	itn__unlock(s);
}
