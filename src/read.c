// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * read.c - the collision-retry read side.
 *
 * itn_read_begin() needs no lock (rcu-design.md §5.6): it loads the sub
 * seq s and the global seq g.  s == g means a running period already
 * touched the subscription (its callback stored s, or it was inserted or
 * updated during the period): wait for the period to end, under the space
 * lock with the predicate rechecked there, since the seq changes only under
 * that lock (no lost wake-up).  A waiter counts itself in read_waiters
 * under the lock before it sleeps, because the end of a period broadcasts
 * only when someone is counted (invalidate.c).  Otherwise s is returned at
 * once.
 *
 * Why an unlocked pair is enough: if a callback of the running period S has
 * stored S (release) and we loaded it (acquire), the period was open when
 * the callback ran, so our later acquire load of g reads S or a later
 * value; we wait if it is S.  If we loaded an older s, the callback has not
 * yet stored S under the user's lock: itn_read_retry() under that lock will
 * see it, or the callback will tear down what we install — exactly the race
 * the kernel accepts.
 */
#include "itn-internal.h"

#include <errno.h>
#include <time.h>

static ITN_COLD ITN_NORETURN void misuse(const char *fn)
{
	itn__die("%s: called from an invalidate callback of the same space; "
		 "it would wait for the callback's own period to end",
		 fn);
}

static inline struct itn_space *space_of(const struct itn__sub *sub,
					 const char *fn)
{
	struct itn_space *s =
		atomic_load_explicit(&sub->space, memory_order_relaxed);

	if (itn_unlikely(!s))
		itn__die("%s: subscription was never inserted", fn);
	return s;
}

static ITN_NOINLINE uint64_t wait_period(struct itn_space *s, uint64_t seq)
{
	itn__lock(s);
	if (itn__seq(s) == seq) {
		itn__count(s, read_waits);
		/* Counted under L before sleeping: the end that moves the
		 * seq (under L) sees us and broadcasts. */
		s->read_waiters++;
		do
			pthread_cond_wait(&s->cv, &s->lock);
		while (itn__seq(s) == seq);
		s->read_waiters--;
	}
	itn__unlock(s);
	return seq;
}

ITN_EXPORT uint64_t itn_read_begin(struct itn_sub *psub)
{
	struct itn__sub *sub = itn__sub(psub);
	struct itn_space *s = space_of(sub, "itn_read_begin");
	uint64_t seq;

	if (itn_unlikely(itn__cb_top != NULL) && itn__in_callback(s))
		misuse("itn_read_begin");
	/* Pairs with itn_set_seq() and with the insert/update stores. */
	seq = atomic_load_explicit(&sub->seq, memory_order_acquire);
	/* Pairs with itn__set_global_seq(). */
	if (itn_likely(seq != atomic_load_explicit(&s->seq,
						   memory_order_acquire)))
		return seq;
	return wait_period(s, seq);
}

/* @deadline = now + @ns on CLOCK_MONOTONIC (waits past a century are
 * clamped to one, so that time_t cannot overflow). */
static void deadline_after(struct timespec *deadline, uint64_t ns)
{
	const uint64_t century = UINT64_C(100) * 366 * 24 * 3600 * 1000000000;
	struct timespec now;

	if (ns > century)
		ns = century;
	clock_gettime(CLOCK_MONOTONIC, &now);
	deadline->tv_sec = now.tv_sec + (time_t)(ns / 1000000000u);
	deadline->tv_nsec = now.tv_nsec + (long)(ns % 1000000000u);
	if (deadline->tv_nsec >= 1000000000L) {
		deadline->tv_nsec -= 1000000000L;
		deadline->tv_sec++;
	}
}

ITN_EXPORT int itn_read_begin_timeout(struct itn_sub *psub,
				      uint64_t timeout_ns, uint64_t *ret_seq)
{
	struct itn__sub *sub = itn__sub(psub);
	struct timespec deadline;
	struct itn_space *s;
	uint64_t seq;
	int err = 0;

	if (!psub || !ret_seq)
		return -EINVAL;
	s = atomic_load_explicit(&sub->space, memory_order_relaxed);
	if (!s)
		return -EINVAL;
	if (itn__in_callback(s))
		return -EDEADLK;
	seq = atomic_load_explicit(&sub->seq, memory_order_acquire);
	if (itn_likely(seq != atomic_load_explicit(&s->seq,
						   memory_order_acquire))) {
		*ret_seq = seq;
		return 0;
	}
	deadline_after(&deadline, timeout_ns);
	itn__lock(s);
	if (itn__seq(s) == seq) {
		itn__count(s, read_waits);
		s->read_waiters++; /* as in wait_period() */
		while (itn__seq(s) == seq && err != ETIMEDOUT)
			err = pthread_cond_timedwait(&s->cv, &s->lock,
						     &deadline);
		s->read_waiters--;
	}
	/* The period may have ended just as the wait timed out. */
	if (itn__seq(s) != seq)
		err = 0;
	itn__unlock(s);
	if (err)
		return -ETIMEDOUT;
	*ret_seq = seq;
	return 0;
}

ITN_EXPORT bool itn_read_retry(const struct itn_sub *psub, uint64_t seq)
{
	/* The caller's lock orders this with itn_set_seq(). */
	return atomic_load_explicit(&itn__csub(psub)->seq,
				    memory_order_relaxed) != seq;
}

ITN_EXPORT bool itn_check_retry(const struct itn_sub *psub, uint64_t seq)
{
	return atomic_load_explicit(&itn__csub(psub)->seq,
				    memory_order_acquire) != seq;
}

ITN_EXPORT void itn_set_seq(struct itn_sub *psub, uint64_t cur_seq)
{
	/* Pairs with the acquire load in itn_read_begin(). */
	atomic_store_explicit(&itn__sub(psub)->seq, cur_seq,
			      memory_order_release);
}
