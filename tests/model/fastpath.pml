/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fastpath.pml - the lock-free invalidation fast paths over the state word
 * (rcu-design.md §5.6-§5.9; src/invalidate.c, src/sub.c, src/read.c).
 *
 * st = ACTIVE * ONE | BUSY | ODD.  ODD mirrors the parity of the global
 * seq; BUSY is taken by a holder of the space lock L (a CAS; only lock
 * holders set it) around every change of the seq, the physical tree or the
 * Idle/Partial/Full state; fast paths change only ACTIVE, by one CAS, and
 * only while BUSY is clear:
 *
 *  inv_start, Full:         CAS ACTIVE+1 if ODD && !BUSY; cur = seq; walk
 *                           the frozen tree without any lock
 *  inv_start, Idle/Partial: CAS ACTIVE+1 if !ODD && !BUSY; search the tree
 *                           inside an RCU read section, validated by the
 *                           tree's writer seqcount; a validated miss is
 *                           done; a hit (or NTRIES failed validations)
 *                           continues under L and BUSY while counted:
 *                           search again, open the period on a hit
 *  inv_start, BUSY set:     everything under L and BUSY (start_locked)
 *  inv_end:                 CAS ACTIVE-1 if !BUSY && (ACTIVE > 1 || !ODD);
 *                           else under L and BUSY: the last end of a period
 *                           drains the deferred list, then seq += 1, clears
 *                           ODD, wakes
 *  insert/remove:           under L, BUSY taken before deciding
 *                           Idle/Partial/Full from the word it CASed
 *  read_begin:              lock-free (§5.6): s = sub seq; if s != seq
 *                           return s; else wait under L until seq != s
 *  remove in Partial:       waits for an RCU grace period (lockless
 *                           searchers may hold the node)
 *
 * -DNOBUSY: the same protocol without BUSY.  Fast paths no longer test it;
 * lock holders load the word, decide from it, and apply each change with
 * an atomic read-modify-write (fetch_add/fetch_or/fetch_and) at the point
 * where the code changes it -- the best one can do without BUSY.
 *
 * Scenarios (-DSCEN_x; default: the general one):
 *  general  two invalidators (NINV rounds, random page), a reader (inserts
 *           A, NREAD collision-retry reads, removes A), an owner (NCYCLE
 *           insert/remove of B)
 *  SCEN_A   race (a): the reader inserts A while one invalidation of P0
 *           starts (Idle insert vs lock-free registration)
 *  SCEN_B   race (b): A is in the tree; a remover removes it while one
 *           invalidation of P0 starts (even-state remove vs an invalidator
 *           that found the node)
 *  SCEN_C   race (c): the reader inserts A while one invalidation of P2
 *           (no overlap: Partial) ends (Partial insert vs last count-out)
 *
 * What spin finds with -DNOBUSY (tests/meson.build runs each one and
 * expects the failure; with BUSY the same scenario passes):
 *  (a) the reader takes L and loads the word: ACTIVE 0, Idle.  The
 *      invalidator of P0 counts in lock-free, searches the tree (empty) and
 *      validates its miss before the insert's tree change begins: no
 *      callback, done.  The insert puts A in the tree with sub seq
 *      seq - 1; read_begin returns it at once, read_retry is false, the
 *      reader installs P0.  The invalidator then changes P0 while A's
 *      secondary mapping is valid: "assert(!(BIT(pg) & MASK(SA)) ||
 *      !secvalid)" (I6, a stale secondary mapping).
 *  (b) the remover takes L and loads the word: ACTIVE 0, Idle.  The
 *      invalidator of P0 counts in lock-free and its lockless search
 *      reads the pointer to A.  The remover unlinks A and, having seen
 *      Idle, skips the RCU grace period: remove returns (A may be freed).
 *      The search then reads A's node: "assert(!gone[i])" in visit() (I8:
 *      freed memory touched after remove returned).  rcu-design §5.7 says
 *      the victim is a callback; in libitn's design the hit is searched
 *      again under L, which no longer finds A, so the callback never runs
 *      and the damage is the lockless search's read of the freed node:
 *      the same race (the remover decided Idle/Partial from a word a
 *      lock-free registration changed under it), caught one step earlier.
 *  (c) the invalidator of P2 counts in lock-free (Partial, ACTIVE 1).  The
 *      reader takes L, loads the word (ACTIVE 1, !ODD: Partial) and makes
 *      the seq odd.  The invalidator's search misses; it counts out
 *      lock-free (ACTIVE 1 -> 0, ODD still clear, so not "the last of a
 *      period").  The reader then sets ODD: ACTIVE 0 with ODD and an odd
 *      seq, and no invalidation left to end the period: "assert(!(ACT(st)
 *      == 0 && (st & ODD)))" (I1).  read_begin(A) sleeps forever; with
 *      pan -A (assertions ignored) spin reports that invalid end state.
 *
 * Abstractions as in protocol.pml (pages, bit-mask tree, FIFO deferred
 * list, primary versions, bounded rounds so seqs never wrap), plus:
 *  - memory is sequentially consistent: this checks the protocol's logic;
 *    the C11 orderings that implement it are checked by TSan runs;
 *  - a CAS loop is one guarded atomic step (fails and retries = the guard
 *    is re-evaluated); "lock L" is an atomic test-and-set of L; taking L
 *    and then BUSY is one step (in C nothing is read in between that a
 *    fast path could change: fast paths only move ACTIVE);
 *  - the tree's seqcount: wodd is "the count is odd" (a writer is at
 *    work); wmoved[id] is "it moved since searcher id read it", set by
 *    every writer that begins while searcher id is in its read section.
 *    That is the seqcount with no wrap-around;
 *  - while a writer is at work a lockless search may miss any node (a
 *    rotation sends it down the wrong subtree), but sees no garbage;
 *  - a lockless search reads a node pointer, then the node, in separate
 *    steps (a use-after-free check in between);
 *  - RCU: a searcher's read section is rcu_in[id]; a grace period waits
 *    until each reader has been seen outside a section;
 *  - ghost gone[i]: remove of i returned, the caller may free it.
 *
 * Properties (SEMANTICS.md §2), all assertions: I1 parity (monitor:
 * whenever the word is not BUSY -- with NOBUSY, whenever L is free --
 * ACTIVE 0 => !ODD and the seq even, and ODD mirrors the seq's parity); I2
 * frozen tree (walker snapshot; no tree change while someone walks); I3/I4
 * (cur_seq odd and equal to the seq; odd sub seqs); I5 (read_begin returns
 * s < seq, checked where it decides); I6 (no valid secondary mapping of P0
 * when P0 changes; an install after a false retry uses the current primary);
 * I8 (remove returned => not in tree/list, no callback and no lockless
 * search touches it afterwards); deadlock freedom (no invalid end state:
 * every wait ends).
 *
 * Mutants (-DBROKEN_x, general scenario unless noted; spin must fail):
 *  BROKEN_NO_GP          remove in Partial skips the RCU grace period
 *                        (I8; SCEN_B)
 *  BROKEN_NO_VALIDATE    a lockless search trusts its result without the
 *                        seqcount: a rotation hides a node, the search
 *                        "validates" a miss, no callback (I6)
 *  BROKEN_FAST_LAST_END  inv_end counts out lock-free even as the last of
 *                        a period, which then never ends (I1)
 *  BROKEN_WAIT_HOLDING_L remove waits for the end of the period without
 *                        releasing L, which that end needs (run with pan
 *                        -A: an invalid end state, a deadlock)
 */

#ifndef NINV
#define NINV 1		/* invalidations per invalidator (general) */
#endif
#ifndef NREAD
#define NREAD 1		/* successful reads by the reader */
#endif
#ifndef NCYCLE
#define NCYCLE 1	/* insert/remove cycles of B (general) */
#endif
#ifndef NTRIES
#define NTRIES 2	/* validated lockless searches before the slow path */
#endif

#define NSUB 2
#define SA 0		/* page P0 */
#define SB 1		/* pages P0, P1 */
#define NPAGE 3
#define OP_INS 0
#define OP_REM 1
#define MSG(op, i) ((op) * 4 + (i))
#define PEND_NONE 0
#define PEND_INS 1
#define PEND_REM 2
#define BIT(i) (1 << (i))
#define MASK(i) ((i) == SA -> BIT(0) : (BIT(0) | BIT(1)))
#define HITS(t, i, rm) (((t) & BIT(i)) && (MASK(i) & (rm)))

#define ODD 1
#define BUSY 2
#define ONE 4
#define ACT(w) ((w) >> 2)

/* how a remove left the tree (src/sub.c enum unsub) */
#define UN_GONE 0
#define UN_IDLE 1
#define UN_PARTIAL 2
#define UN_DEFERRED 3

byte seq = 2;			/* global seq */
byte st = 0;			/* state word */
bit L = 0;			/* the space lock */
byte phys = 0;			/* physical tree */
bit wodd = 0;			/* its seqcount is odd: a writer at work */
bit wmoved[2];			/* ... and moved since searcher id read it */
chan defl = [NSUB] of { byte };	/* deferred list, FIFO */
byte pend[NSUB];
byte sseq[NSUB];		/* sub seqs */
byte prim[NPAGE];		/* primary mapping versions */
bit secvalid = 0;		/* A's secondary mapping of P0 */
byte secver = 0;
bit rcu_in[2];			/* lockless searchers' read sections */
bit gone[NSUB];			/* ghost: remove returned */
byte walkers = 0;		/* ghost: invalidators walking the tree */

/* ---- the state word, as lock holders use it ---- */

inline lock_busy(w) {		/* lock L, then take BUSY (w: word seen) */
#ifndef NOBUSY
	atomic { L == 0 -> L = 1; assert(!(st & BUSY)); w = st; st = st | BUSY }
#else
	atomic { L == 0 -> L = 1; w = st }
#endif
}

inline busy_end_unlock(w) {	/* store the word, drop BUSY, unlock L */
#ifndef NOBUSY
	atomic { st = w & ~BUSY; L = 0; w = 0 }
#else
	atomic { L = 0; w = 0 }
#endif
}

inline st_add(w, d) {		/* ACTIVE += d / ONE */
#ifndef NOBUSY
	w = w + (d)
#else
	atomic { st = st + (d); w = st }
#endif
}

inline st_set_odd(w) {
#ifndef NOBUSY
	w = w | ODD
#else
	atomic { st = st | ODD; w = st }
#endif
}

inline st_clr_odd(w) {
#ifndef NOBUSY
	w = w & ~ODD
#else
	atomic { st = st & ~ODD; w = st }
#endif
}

/* ---- the physical tree (lock holders) ---- */

/* One writer section of the seqcount; a search may miss nodes meanwhile. */
inline phys_set(v) {
	atomic {
		assert(walkers == 0);			/* I2: nobody walks it */
		wodd = 1;
		wmoved[0] = wmoved[0] | rcu_in[0];
		wmoved[1] = wmoved[1] | rcu_in[1]
	};
	phys = v;
	wodd = 0
}

inline drain_list() {
	do
	:: defl ? m ->
		if
		:: m / 4 == OP_INS -> phys_set(phys | BIT(m % 4))
		:: else -> phys_set(phys & ~BIT(m % 4))
		fi;
		pend[m % 4] = PEND_NONE
	:: empty(defl) -> break
	od;
	m = 0
}

/* ---- insert / remove / read_begin ---- */

inline insert(i) {
	lock_busy(w);
	gone[i] = 0;
	if
	:: ACT(w) == 0 ->			/* Idle */
		phys_set(phys | BIT(i));
		sseq[i] = seq - 1
	:: ACT(w) > 0 && !(w & ODD) ->		/* Partial: open a period */
		seq = seq | 1;
		st_set_odd(w);
		phys_set(phys | BIT(i));
		sseq[i] = seq
	:: ACT(w) > 0 && (w & ODD) ->		/* Full: defer */
		atomic {
			defl ! MSG(OP_INS, i);
			pend[i] = PEND_INS;
			sseq[i] = seq
		}
	fi;
	assert(sseq[i] & 1);			/* I4 */
	busy_end_unlock(w)
}

inline remove(i) {
	lock_busy(w);
	S = seq;
	if
	:: pend[i] == PEND_INS ->		/* never applied */
		atomic {
			defl ?? eval(MSG(OP_INS, i));
			pend[i] = PEND_NONE;
			how = UN_GONE
		}
	:: pend[i] == PEND_NONE && (w & ODD) ->	/* Full: defer, wait */
		atomic {
			defl ! MSG(OP_REM, i);
			pend[i] = PEND_REM;
			how = UN_DEFERRED
		}
	:: pend[i] == PEND_NONE && !(w & ODD) ->	/* Idle/Partial */
		phys_set(phys & ~BIT(i));
		how = (ACT(w) > 0 -> UN_PARTIAL : UN_IDLE)
	fi;
#ifndef BROKEN_WAIT_HOLDING_L
	busy_end_unlock(w);
#endif
	if
	:: how == UN_DEFERRED ->	/* cond wait: predicate under L */
#ifndef BROKEN_WAIT_HOLDING_L
		atomic { L == 0 && seq != S -> skip }
#else
		atomic { st = w & ~BUSY; w = 0 };	/* keeps L */
		(seq != S);
		L = 0
#endif
	:: how == UN_PARTIAL ->		/* lockless searchers may hold it */
#ifndef BROKEN_NO_GP
		(rcu_in[0] == 0);
		(rcu_in[1] == 0)
#else
		skip
#endif
	:: else
	fi;
#ifdef BROKEN_WAIT_HOLDING_L
	if
	:: L == 1 && how != UN_DEFERRED -> busy_end_unlock(w)
	:: else
	fi;
#endif
	atomic {			/* I8; the caller may free it now */
		assert(!(phys & BIT(i)) && pend[i] == PEND_NONE);	/* I8 */
		assert(len(defl) == 0 || !(defl ?? [eval(MSG(OP_INS, i))]));
		assert(len(defl) == 0 || !(defl ?? [eval(MSG(OP_REM, i))]));
		gone[i] = 1;
		S = 0;
		how = 0
	}
}

inline read_begin(i, s) {
	s = sseq[i];
	if
	:: atomic { s != seq -> assert(s < seq) }	/* I5: fast, no lock */
	:: atomic { s == seq -> skip };	/* touched by the running period */
		atomic { L == 0 && seq != s -> assert(s < seq) }	/* I5 */
	fi
}

/* ---- invalidations ---- */

/* ops->invalidate of sub i: set_seq and teardown under the user lock,
 * if the walker finds i in the tree (it reads the tree itself). */
inline callback(i) {
	atomic {
		if
		:: walking && HITS(phys, i, BIT(pg)) ->
			assert(phys == snap);		/* I2 */
			assert(!gone[i]);		/* I8: no callback after remove */
			assert((cur & 1) && cur == seq);	/* I3 */
			sseq[i] = cur;
			if
			:: i == SA -> secvalid = 0
			:: else
			fi
		:: else
		fi
	}
}

/* One node of a lockless search: read the pointer, then the node. */
inline visit(i) {
	if
	:: (phys & BIT(i)) ->
		atomic {
			assert(!gone[i]);	/* I8: freed node read by a search */
			hit = hit || (MASK(i) & BIT(pg))
		}
	:: wodd -> skip			/* a rotation hid it */
	:: else
	fi
}

/* Under L and BUSY, counted or not: search, open the period on a hit. */
inline start_locked(counted) {
	lock_busy(w);
	if
	:: !counted -> st_add(w, ONE)
	:: else
	fi;
	hit = HITS(phys, SA, BIT(pg)) || HITS(phys, SB, BIT(pg));
	if
	:: hit && !(seq & 1) ->
		seq = seq | 1;
		st_set_odd(w)
	:: else
	fi;
	atomic {
		if
		:: hit -> cur = seq; snap = phys; walking = 1; walkers++
		:: else
		fi;
		hit = 0
	}
	busy_end_unlock(w)
}

/* id: searcher index; pin: page + 1, or 0 for any page; rounds: how many */
proctype invalidator(byte id; byte pin; byte rounds)
{
	byte n = 0, pg, cur, snap, m, w, tries;
	bit hit, walking;

	do
	:: n < rounds ->
		if
		:: pin == 0 ->
			if
			:: pg = 0
			:: pg = 1
			:: pg = 2
			fi
		:: else -> pg = pin - 1
		fi;
		/* ---- start ---- */
		if
		:: atomic {	/* Full: count in, the tree is frozen */
			(st & ODD) && !(st & BUSY) ->
			st = st + ONE;
			snap = phys;
			walking = 1;
			walkers++
		   }
		   cur = seq
		:: atomic {	/* Idle/Partial: count in, search lockless */
			!(st & ODD) && !(st & BUSY) ->
			st = st + ONE;
			rcu_in[id] = 1
		   }
		   do
		   :: tries < NTRIES ->
#ifndef BROKEN_NO_VALIDATE
			if
			:: atomic { wodd -> tries++ }	/* a writer is at work */
			:: atomic { !wodd -> wmoved[id] = 0; hit = 0 };
				visit(SA);
				visit(SB);
				if
				:: atomic { !wmoved[id] -> tries = 0 };
					break			/* validated */
				:: atomic { wmoved[id] -> tries++; hit = 0 }
				fi
			fi
#else
			hit = 0;
			visit(SA);
			visit(SB);
			tries = 0;
			break
#endif
		   :: tries >= NTRIES -> hit = 1; break	/* give up: slow */
		   od;
		   atomic { rcu_in[id] = 0; wmoved[id] = 0; tries = 0 };
		   if
		   :: hit -> hit = 0; start_locked(1)	/* counted */
		   :: else				/* validated miss */
		   fi
		:: atomic { (st & BUSY) -> skip };
		   start_locked(0)
		fi;
		/* ---- callbacks, walking the frozen tree without L ---- */
		callback(SA);
		callback(SB);
		atomic {
			if
			:: walking ->
				assert(phys == snap);		/* I2 */
				walkers--
			:: else
			fi;
			walking = 0;
			cur = 0;
			snap = 0
		}
		/* ---- the primary changes only after start returned ---- */
		atomic {
			assert(!(BIT(pg) & MASK(SA)) || !secvalid);	/* I6 */
			prim[pg]++;
			pg = 0
		}
		/* ---- end ---- */
#ifndef BROKEN_FAST_LAST_END
#define FAST_END(w) (!((w) & BUSY) && \
		     (ACT(w) > 1 || (ACT(w) == 1 && !((w) & ODD))))
#else
#define FAST_END(w) (!((w) & BUSY) && ACT(w) >= 1)
#endif
		if
		:: atomic { FAST_END(st) -> st = st - ONE }	/* count out */
		:: atomic { !FAST_END(st) -> skip };
		   lock_busy(w);
		   assert(ACT(w) > 0);
		   st_add(w, -ONE);
		   if
		   :: ACT(w) == 0 && (w & ODD) ->	/* last of a period */
			drain_list();
			seq++;
			st_clr_odd(w)
		   :: else
		   fi;
		   busy_end_unlock(w)
		fi;
		n++
	:: else -> break
	od
}

proctype reader()
{
	byte n = 0, s, v, S, w, how;

	insert(SA);
	do
	:: n < NREAD ->
		read_begin(SA, s);
		v = prim[0];			/* read the primary */
		atomic {			/* under the user lock */
			if
			:: sseq[SA] != s	/* read_retry: collided */
			:: else ->		/* install the secondary */
				assert(v == prim[0]);		/* I6 */
				secvalid = 1;
				secver = v;
				n++
			fi;
			s = 0;
			v = 0
		}
	:: else -> break
	od;
#if !defined(SCEN_A) && !defined(SCEN_C)
	secvalid = 0;	/* a driver drops its mapping before it removes */
	remove(SA)
#endif
}

proctype owner()
{
	byte n = 0, S, w, how;

	do
	:: n < NCYCLE -> insert(SB); remove(SB); n++
	:: else -> break
	od
}

proctype remover()
{
	byte S, w, how;

	remove(SA)
}

/* I1, checked whenever the word is not being changed by a lock holder. */
#ifndef NOBUSY
#define QUIET (!(st & BUSY))
#else
#define QUIET (L == 0)
#endif
active proctype parity()
{
end:	atomic {
		QUIET && ((ACT(st) == 0 && ((st & ODD) || (seq & 1))) ||
			  ((st & ODD) != (seq & 1))) ->
		assert(!(ACT(st) == 0 && (st & ODD)));	/* I1: active 0, ODD */
		assert((st & ODD) == (seq & 1));	/* I1: ODD is the parity */
		assert(!(ACT(st) == 0 && (seq & 1)))	/* I1: active 0, odd seq */
	}
}

init {
	atomic {
		gone[SA] = 1;
		gone[SB] = 1;
#if defined(SCEN_A)
		run invalidator(0, 1, 1);
		run reader()
#elif defined(SCEN_B)
		phys = BIT(SA);		/* A inserted while Idle */
		sseq[SA] = seq - 1;
		gone[SA] = 0;
		run invalidator(0, 1, 1);
		run remover()
#elif defined(SCEN_C)
		run invalidator(0, 3, 1);
		run reader()
#else
		run invalidator(0, 0, NINV);
		run invalidator(1, 0, NINV);
		run reader();
		run owner()
#endif
	}
}
