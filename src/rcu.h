/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rcu.h - the only place that names a liburcu flavour, plus the
 * ThreadSanitizer annotations liburcu 0.13 lacks (rcu-design.md §2.4).
 *
 * Flavour: bp ("bulletproof").  Threads calling into libitn need no
 * registration: rcu_read_lock registers a reader lazily, and the registry
 * entry is reclaimed when the thread exits.  See meson.build for the choice.
 *
 * TSan cannot see liburcu 0.13's grace periods (inline asm and volatile
 * accesses), so the grace-period edges are annotated on a fake
 * synchronisation object: every read-side unlock releases it and every
 * reclamation (call_rcu callback, barrier) acquires it; every callback
 * releases it when done, for the barrier that waits for it; call_rcu's
 * hand-off of the rcu_head through its wait-free queue is annotated on the
 * head.
 * The annotations compile to nothing without TSan.
 */
#ifndef ITN_RCU_H
#define ITN_RCU_H

#include <urcu/urcu-bp.h>
#include <urcu/list.h>

#if defined(__SANITIZE_THREAD__)
#define ITN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ITN_TSAN 1
#endif
#endif

#ifdef ITN_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define itn__tsan_acquire(p) __tsan_acquire((void *)(p))
#define itn__tsan_release(p) __tsan_release((void *)(p))
#else
#define itn__tsan_acquire(p) ((void)(p))
#define itn__tsan_release(p) ((void)(p))
#endif

/* The fake object standing for "a grace period has elapsed". */
extern char itn__gp_token;

static inline void itn__rcu_read_lock(void)
{
	urcu_bp_read_lock();
}

static inline void itn__rcu_read_unlock(void)
{
	itn__tsan_release(&itn__gp_token);
	urcu_bp_read_unlock();
}

static inline void itn__call_rcu(struct rcu_head *head,
				 void (*func)(struct rcu_head *head))
{
	itn__tsan_release(head);
	urcu_bp_call_rcu(head, func);
}

/* First statement of every call_rcu callback. */
static inline void itn__rcu_callback_enter(struct rcu_head *head)
{
	itn__tsan_acquire(head);
	itn__tsan_acquire(&itn__gp_token);
}

/* Last statement of every call_rcu callback: what it did happens before
 * the return of an rcu_barrier() that waited for it. */
static inline void itn__rcu_callback_exit(void)
{
	itn__tsan_release(&itn__gp_token);
}

/* Wait for every read section begun before (never inside one, never
 * holding the space lock: find takes it inside read sections). */
static inline void itn__rcu_synchronize(void)
{
	urcu_bp_synchronize_rcu();
	itn__tsan_acquire(&itn__gp_token);
}

static inline void itn__rcu_barrier(void)
{
	urcu_bp_barrier();
	itn__tsan_acquire(&itn__gp_token);
}

#endif /* ITN_RCU_H */
