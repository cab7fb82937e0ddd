/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * protocol.pml - the locked protocol: the kernel's mmu_interval_notifier
 * algorithm (kernel-semantics.md §2.2), every change under the space lock
 * L.  This is what libitn runs with its fast paths off (src/invalidate.c
 * start_locked/end_one, src/sub.c insert/remove), with the lock-free
 * itn_read_begin() of src/read.c.  fastpath.pml adds the lock-free paths.
 *
 * Abstractions:
 *  - three pages P0 P1 P2; subscription A covers P0, B covers P0 and P1;
 *    an invalidation covers one page, chosen at random (P2 overlaps
 *    nothing: that is how the Partial state arises);
 *  - the physical tree is a bit mask over {A, B}; the deferred list is a
 *    FIFO channel of (op, sub) entries; the global seq is a byte that
 *    starts at 2 and never wraps (every process runs a bounded number of
 *    rounds, so there is no ABA on seqs; wrap-around is unit-tested by
 *    test-seqwrap);
 *  - the primary mapping of each page is a version number that an
 *    invalidator bumps between its start and its end; the secondary
 *    mapping of A is a valid bit (secvalid) and the primary version it was
 *    built from;
 *  - every critical section of L is one atomic step.  That is exact here:
 *    all state it touches is written only under L, except the sub seqs,
 *    which L sections only write (insert).  Sections of the user lock U are
 *    short and atomic too (a callback's set_seq + teardown; the reader's
 *    read_retry + install), so neither lock needs a variable;
 *  - a condition wait is the guard "predicate true", taken atomically with
 *    what follows under L: pthread_cond_wait with the predicate re-checked
 *    under L and a broadcast after every seq change (no lost wake-up);
 *  - the walk of the frozen tree runs outside L, one step per callback;
 *  - memory is sequentially consistent (the C11 orderings are TSan's job).
 *
 * Processes: two invalidators (NINV rounds each), a reader (inserts A,
 * NREAD successful collision-retry reads, drops its secondary mapping,
 * removes A) and an owner (NCYCLE insert/remove cycles of B).  Every
 * process terminates, so an invalid end state is a deadlock.
 *
 * Properties (SEMANTICS.md §2 numbering), all assertions:
 *  I1 parity        monitor process: odd seq => active > 0
 *  I2 frozen tree   phys_set: nobody walks the tree and no period runs;
 *                   each walker finds the tree it started with
 *  I3 one cur_seq   a callback's cur_seq is odd and equals the global seq
 *  I4 odd sub seqs  every insert stores an odd sub seq
 *  I5 read_begin    the s it returns is below the global seq when it
 *                   decides to return: period s is not running
 *  I6 collisions    when an invalidator changes P0, A's secondary mapping
 *                   is invalid; an install after a false read_retry uses
 *                   the current primary version
 *  I8 quiescence    when remove returns the sub is in neither the tree nor
 *                   the deferred list, and no callback for it runs later
 *  deadlock freedom no invalid end state: every wait ends
 *
 * Mutants (-DBROKEN_x; tests/meson.build expects spin to fail on each):
 *  BROKEN_NO_DEFER        insert in Full goes straight into the tree (I2)
 *  BROKEN_READ_NOWAIT     read_begin returns a running period (I5)
 *  BROKEN_PARTIAL_AS_IDLE insert in Partial acts as in Idle (I6)
 *  BROKEN_NO_SET_SEQ      the callback does not call set_seq (I6)
 *  BROKEN_EARLY_WAKE      the seq moves before the deferred list is
 *                         applied: the pre-v5.18 kernel (I8)
 *  BROKEN_REMOVE_NOWAIT   remove of a node in the frozen tree returns at
 *                         once (I8)
 *  BROKEN_OWN_END         only an invalidation that opened or joined the
 *                         period (found a node) can close it (I1)
 *  BROKEN_UNBALANCED      an invalidator's last start "fails" after the
 *                         interval part and never ends (the kernel quirk
 *                         of SEMANTICS.md §4): run with pan -A, spin must
 *                         report an invalid end state (a deadlock)
 */

#ifndef NINV
#define NINV 2		/* invalidations per invalidator */
#endif
#ifndef NREAD
#define NREAD 2		/* successful reads by the reader */
#endif
#ifndef NCYCLE
#define NCYCLE 1	/* insert/remove cycles of B */
#endif

#define NSUB 2
#define SA 0		/* the reader's subscription: page P0 */
#define SB 1		/* the owner's subscription: pages P0, P1 */
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

byte seq = 2;			/* global seq */
byte nactive = 0;		/* active invalidations ('active' is a keyword) */
byte phys = 0;			/* physical tree */
chan defl = [NSUB] of { byte };	/* deferred list, FIFO */
byte pend[NSUB];		/* what defl holds for each sub */
byte sseq[NSUB];		/* sub seqs */
byte prim[NPAGE];		/* primary mapping versions */
bit secvalid = 0;		/* A's secondary mapping of P0 */
byte secver = 0;
bit gone[NSUB];			/* ghost: remove returned (may be freed) */
byte walkers = 0;		/* ghost: invalidators walking the tree */

/* I2 at the writer: nobody walks the tree and no period is running (a
 * drain runs with active 0 before the seq becomes even; a Partial insert
 * changes the tree in the section that makes the seq odd). */
inline phys_set(v) {
	assert(walkers == 0 && (!(seq & 1) || nactive == 0));	/* I2 */
	phys = v
}

/* The last end of a period: apply the deferred list in call order (the
 * caller then makes the seq even; the waiters' guards see it: wake-all). */
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

inline insert(i) {
	atomic {
		gone[i] = 0;
		if
#ifdef BROKEN_PARTIAL_AS_IDLE
		:: !(seq & 1) ->		/* Idle or Partial: as Idle */
#else
		:: nactive == 0 ->		/* Idle */
#endif
			assert(!(seq & 1));
			phys_set(phys | BIT(i));
			sseq[i] = seq - 1
		:: nactive > 0 && !(seq & 1) ->	/* Partial: open a period */
			phys_set(phys | BIT(i));
			seq = seq | 1;
			sseq[i] = seq
		:: nactive > 0 && (seq & 1) ->	/* Full: defer */
#ifndef BROKEN_NO_DEFER
			defl ! MSG(OP_INS, i);
			pend[i] = PEND_INS;
#else
			phys_set(phys | BIT(i));
#endif
			sseq[i] = seq
		fi;
		assert(sseq[i] & 1)		/* I4 */
	}
}

inline remove(i) {
	atomic {
		if
		:: (seq & 1) && pend[i] == PEND_INS ->
			defl ?? eval(MSG(OP_INS, i));	/* never applied */
			pend[i] = PEND_NONE
		:: (seq & 1) && pend[i] == PEND_NONE ->
			defl ! MSG(OP_REM, i);
			pend[i] = PEND_REM;
#ifndef BROKEN_REMOVE_NOWAIT
			S = seq
#endif
		:: !(seq & 1) ->
			assert(pend[i] == PEND_NONE);
			phys_set(phys & ~BIT(i))
		fi
	}
	atomic {
		/* sleep until the seq moves (predicate under L), then I8 */
		S == 0 || seq != S ->
		assert(!(phys & BIT(i)) && pend[i] == PEND_NONE);	/* I8 */
		assert(len(defl) == 0 || !(defl ?? [eval(MSG(OP_INS, i))]));
		assert(len(defl) == 0 || !(defl ?? [eval(MSG(OP_REM, i))]));
		gone[i] = 1;
		S = 0
	}
}

/* src/read.c: lock-free loads of the sub seq, then of the global seq; if
 * they are equal, wait under L until the global seq moves.  I5 is asserted
 * in the step that decides to return. */
inline read_begin(i, s) {
	s = sseq[i];
	if
	:: atomic { s != seq -> assert(s < seq) }	/* I5: no wait */
	:: atomic { s == seq -> skip };		/* touched by the running period */
#ifndef BROKEN_READ_NOWAIT
		atomic { s != seq -> assert(s < seq) }	/* I5: waited for its end */
#else
		atomic { assert(s < seq) }		/* I5: returns a running period */
#endif
	fi
}

/* ops->invalidate of sub i: set_seq and teardown under the user lock. */
inline callback(i, cur, rm, snap) {
	atomic {
		if
		:: HITS(snap, i, rm) ->
			assert(phys == snap);		/* I2 */
			assert(!gone[i]);		/* I8: no callback after remove */
			assert((cur & 1) && cur == seq);	/* I3 */
#ifndef BROKEN_NO_SET_SEQ
			sseq[i] = cur;
#endif
			if
			:: i == SA -> secvalid = 0
			:: else
			fi
		:: else
		fi
	}
}

proctype invalidator()
{
	byte n = 0, pg, cur, snap, m;

	do
	:: n < NINV ->
		if
		:: pg = 0
		:: pg = 1
		:: pg = 2
		fi;
		/* start: count in, search, open a period on a hit */
		atomic {
			nactive++;
			if
			:: HITS(phys, SA, BIT(pg)) || HITS(phys, SB, BIT(pg)) ->
				seq = seq | 1;
				cur = seq;
				snap = phys;
				walkers++
			:: else
			fi
		}
		/* walk the frozen tree without L, one callback per step */
		callback(SA, cur, BIT(pg), snap);
		callback(SB, cur, BIT(pg), snap);
		atomic {
			assert(phys == snap || cur == 0);	/* I2 */
			if
			:: cur != 0 -> walkers--
			:: else
			fi;
#ifdef BROKEN_OWN_END
			snap = (cur != 0);	/* remembers whether it found a node */
#else
			snap = 0;
#endif
			cur = 0
		}
		/* the primary changes only after start returned */
		atomic {
			assert(!(BIT(pg) & MASK(SA)) || !secvalid);	/* I6 */
			prim[pg]++
		}
#ifdef BROKEN_UNBALANCED
		if
		:: n == NINV - 1 -> break	/* never ends (active leaks) */
		:: else
		fi;
#endif
		/* end: count out; the last one of a period ends it */
		atomic {
			nactive--;
			if
#ifdef BROKEN_OWN_END
			:: nactive == 0 && (seq & 1) && snap ->
#else
			:: nactive == 0 && (seq & 1) ->
#endif
#ifndef BROKEN_EARLY_WAKE
				drain_list();
				seq++
#else
				/* the pre-v5.18 kernel: waiters read the seq
				 * without the lock and may see it move before
				 * the list is applied */
				seq++;
				cur = 1
#endif
			:: else
			fi;
			pg = 0;
			snap = 0;
			n++
		}
#ifdef BROKEN_EARLY_WAKE
		atomic {
			if
			:: cur == 1 -> drain_list(); cur = 0
			:: else
			fi
		}
#endif
	:: else -> break
	od
}

proctype reader()
{
	byte n = 0, s, v, S;

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
	/* a driver drops its secondary mapping before it removes */
	secvalid = 0;
	remove(SA)
}

proctype owner()
{
	byte n = 0, S;

	do
	:: n < NCYCLE -> insert(SB); remove(SB); n++
	:: else -> break
	od
}

/* I1: every L section leaves the seq even when no invalidation is active. */
active proctype parity()
{
end:	atomic { (seq & 1) && nactive == 0 -> assert(!(seq & 1)) }	/* I1 */
}

init {
	atomic {
		gone[SA] = 1;
		gone[SB] = 1;
		run invalidator();
		run invalidator();
		run reader();
		run owner()
	}
}
