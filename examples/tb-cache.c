// SPDX-License-Identifier: MIT
/*
 * tb-cache.c - an emulator's translated-block cache, kept coherent with
 * self-modifying guest code by libitn.
 *
 * A dynamic translator caches "translated blocks" (TBs) by guest PC; once
 * the guest writes to the bytes a TB came from, it must never run again:
 *  - guest memory is an itn_space; each TB subscribes to the guest bytes
 *    it was translated from (ops with release(), so itn_find() can look it
 *    up by PC and the memory is freed safely, after an RCU grace period);
 *  - the guest's store path brackets every write with
 *    itn_invalidate_start()/_end(); the TBs it hits mark themselves stale
 *    and itn_sub_remove_deferred() themselves from their callback;
 *  - the dispatcher finds the TB for the PC, checks it is valid, runs it,
 *    and translates again on a miss.  A store into the running TB itself
 *    ends the TB right after that store.
 *
 * Checked: before a TB runs, the guest bytes it came from are compared
 * with guest memory ("stale runs" must be 0); the final guest state is
 * compared with a plain interpreter's.
 *
 * Build: cc tb-cache.c $(pkg-config --cflags --libs itn)
 * Usage: tb-cache [outer-loop-iterations]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <itn/itn.h>

/* The toy guest: 4-byte instructions [op, reg, imm_lo, imm_hi]. */
enum { OP_HALT, OP_LI, OP_ADDI, OP_STB, OP_DJNZ };
#define MEM_SIZE 1024
#define MAX_INSNS 8 /* per TB */
#define PC_HALT UINT64_MAX

struct cpu {
	uint64_t reg[8];
	uint8_t mem[MEM_SIZE];
};
struct insn {
	uint8_t op, reg;
	uint16_t imm;
};

/* A translated block: the subscription to its guest bytes comes first. */
struct tb {
	struct itn_sub sub;
	uint64_t pc;
	unsigned int n, len; /* instructions, bytes */
	atomic_bool valid; /* false once invalidated (or while translating) */
	struct insn code[MAX_INSNS]; /* the "translation" that runs */
	uint8_t src[MAX_INSNS * 4]; /* the guest bytes it came from */
};

static struct cpu cpu;
static struct itn_space *space; /* the guest's memory, as libitn sees it */
static pthread_mutex_t tb_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t hits, misses, stale_runs; /* the dispatcher's */
static atomic_ulong invalidated, released; /* callbacks', any thread */

static bool tb_invalidate(struct itn_sub *sub, const struct itn_range *range,
			  uint64_t cur_seq)
{
	struct tb *tb = (struct tb *)sub;
	bool was_valid;

	(void)range; /* a TB is stale as soon as any of its bytes changes */
	pthread_mutex_lock(&tb_lock);
	itn_set_seq(sub, cur_seq); /* a translation in progress retries */
	was_valid = atomic_exchange(&tb->valid, false);
	pthread_mutex_unlock(&tb_lock);
	if (was_valid) {
		atomic_fetch_add(&invalidated, 1);
		/* Gone from itn_find() at once; freed by tb_release(). */
		itn_sub_remove_deferred(sub);
	}
	return true;
}

/* On a libitn thread, once no reference is left: free and count only. */
static void tb_release(struct itn_sub *sub)
{
	free(sub);
	atomic_fetch_add(&released, 1);
}

static const struct itn_sub_ops tb_ops = {
	.invalidate = tb_invalidate,
	.release = tb_release,
};

/* The guest's store path: every write to guest memory goes through here. */
static void guest_store(struct cpu *c, uint64_t addr, uint8_t val)
{
	struct itn_range r = { .start = addr,
			       .last = addr,
			       .event = ITN_EVENT_CLEAR, /* contents change */
			       .flags = ITN_RANGE_BLOCKABLE,
			       .owner = NULL };

	itn_invalidate_start(space, &r); /* stale TBs of [addr] drop here */
	c->mem[addr] = val;
	itn_invalidate_end(space, &r);
}

static struct insn fetch(const uint8_t *mem, uint64_t pc)
{
	return (struct insn){ mem[pc], mem[pc + 1] & 7,
			      (uint16_t)(mem[pc + 2] | mem[pc + 3] << 8) };
}

/* Decode from tb->pc up to a branch or HALT: reads guest memory. */
static void decode(struct tb *tb)
{
	tb->n = 0;
	for (uint64_t pc = tb->pc; tb->n < MAX_INSNS && pc + 4 <= MEM_SIZE;
	     pc += 4) {
		tb->code[tb->n++] = fetch(cpu.mem, pc);
		if (cpu.mem[pc] >= OP_DJNZ || cpu.mem[pc] == OP_HALT)
			break; /* a branch ends the block */
	}
	tb->len = tb->n * 4;
	memcpy(tb->src, &cpu.mem[tb->pc], tb->len);
}

/*
 * Translate with the collision-retry protocol: subscribe first, then
 * decode between itn_read_begin() and itn_read_retry(), so that a store
 * racing the translation (another vCPU, DMA) makes it start again.
 */
static struct tb *translate(uint64_t pc)
{
	struct tb *tb = calloc(1, sizeof(*tb));

	if (!tb)
		abort();
	tb->pc = pc;
	decode(tb); /* a first look, for the length to subscribe to */
	if (itn_sub_insert(&tb->sub, space, pc, tb->len, &tb_ops))
		abort();
	for (;;) {
		unsigned int len = tb->len;
		uint64_t seq = itn_read_begin(&tb->sub);

		decode(tb);
		pthread_mutex_lock(&tb_lock);
		if (!itn_read_retry(&tb->sub, seq) && tb->len == len) {
			atomic_store(&tb->valid, true);
			pthread_mutex_unlock(&tb_lock);
			break;
		}
		pthread_mutex_unlock(&tb_lock);
		if (tb->len != len) /* the code changed under us */
			itn_sub_update(&tb->sub, pc, tb->len);
	}
	misses++;
	itn_sub_get(&tb->sub); /* the caller's reference, as lookup gives */
	return tb;
}

/* The valid TB that starts at @pc, with a reference, or NULL. */
static struct tb *lookup(uint64_t pc)
{
	/* TBs overlapping [pc, pc] in start order: the one at pc is last. */
	struct itn_sub *sub = itn_find(space, &tb_ops, pc, pc), *next;

	while (sub) {
		struct tb *tb = (struct tb *)sub;

		if (tb->pc == pc && atomic_load(&tb->valid))
			return tb;
		next = itn_find_next(space, &tb_ops, sub, pc, pc);
		itn_sub_put(sub);
		sub = next;
	}
	return NULL;
}

/* Execute one instruction at @pc; returns the next PC.  The reference
 * interpreter (@cached false) stores without invalidating. */
static uint64_t exec(struct cpu *c, struct insn in, uint64_t pc, bool cached)
{
	switch (in.op) {
	case OP_LI:
		c->reg[in.reg] = in.imm;
		break;
	case OP_ADDI:
		c->reg[in.reg] += in.imm;
		break;
	case OP_STB:
		if (cached)
			guest_store(c, in.imm % MEM_SIZE,
				    (uint8_t)c->reg[in.reg]);
		else
			c->mem[in.imm % MEM_SIZE] = (uint8_t)c->reg[in.reg];
		break;
	case OP_DJNZ:
		return --c->reg[in.reg] ? in.imm : pc + 4;
	default:
		return PC_HALT;
	}
	return pc + 4;
}

/* Run a TB; returns the next PC. */
static uint64_t run(struct tb *tb)
{
	uint64_t pc = tb->pc;

	if (memcmp(tb->src, &cpu.mem[tb->pc], tb->len))
		stale_runs++; /* never: that is the point */
	for (unsigned int i = 0; i < tb->n; i++) {
		uint64_t next = exec(&cpu, tb->code[i], pc, true);

		/* A branch, or a store that hit this very TB: the rest of
		 * it is stale (QEMU exits the TB the same way). */
		if (next != pc + 4 || !atomic_load(&tb->valid))
			return next;
		pc = next;
	}
	return pc;
}

static void emit(uint64_t pc, uint8_t op, uint8_t reg, uint16_t imm)
{
	memcpy(&cpu.mem[pc], (uint8_t[]){ op, reg, imm & 0xff, imm >> 8 }, 4);
}

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : 100;
	struct itn_stats stats;
	struct itn_sub *sub;
	struct cpu ref;
	uint64_t pc;
	bool same;

	if (iters < 1 || iters > 65535) {
		fprintf(stderr, "usage: %s [iterations, 1..65535]\n", argv[0]);
		return 2;
	}
	space = itn_space_new();
	if (!space)
		return 1;
	emit(0x00, OP_LI, 0, 0);
	emit(0x04, OP_LI, 1, (uint16_t)iters);
	emit(0x08, OP_LI, 4, 1);
	emit(0x0c, OP_LI, 2, 16); /* outer: */
	emit(0x10, OP_ADDI, 0, 1); /* inner: its immediate gets rewritten */
	emit(0x14, OP_DJNZ, 2, 0x10);
	emit(0x18, OP_ADDI, 3, 1);
	emit(0x1c, OP_STB, 3, 0x12); /* self-modifying: patch the inner ADDI */
	emit(0x20, OP_STB, 4, 0x1a); /* rewrite our own TB (same value) */
	emit(0x24, OP_STB, 0, 0x200); /* a data store: no TB there */
	emit(0x28, OP_DJNZ, 1, 0x0c);
	emit(0x2c, OP_HALT, 0, 0);
	ref = cpu;

	/* The dispatcher: find, check, run; translate on a miss. */
	for (pc = 0; pc != PC_HALT;) {
		struct tb *tb = lookup(pc);

		if (tb)
			hits++;
		else
			tb = translate(pc);
		pc = run(tb);
		itn_sub_put(&tb->sub);
	}

	for (pc = 0; pc != PC_HALT;) /* the reference: no cache */
		pc = exec(&ref, fetch(ref.mem, pc), pc, false);
	same = !memcmp(&ref, &cpu, sizeof(cpu));
	itn_space_stats(space, &stats);
	/* Drop the cache; release() frees each TB after a grace period. */
	while ((sub = itn_find(space, &tb_ops, 0, UINT64_MAX))) {
		itn_sub_remove_deferred(sub);
		itn_sub_put(sub);
	}
	itn_synchronize();

	printf("tb-cache: %lu iterations of a self-modifying guest loop\n"
	       "  lookups: %" PRIu64 " hits, %" PRIu64
	       " misses (translations)\n"
	       "  guest stores: %" PRIu64
	       " invalidations, %lu TBs invalidated\n"
	       "  TBs freed by release(): %lu of %" PRIu64 "\n"
	       "  stale TBs run: %" PRIu64 "\n"
	       "  guest state equals a plain interpreter's: %s\n",
	       iters, hits, misses, stats.invalidations,
	       atomic_load(&invalidated), atomic_load(&released), misses,
	       stale_runs, same ? "yes" : "NO");
	if (stale_runs || !same || atomic_load(&released) != misses ||
	    itn_space_free(space)) {
		printf("verdict: FAILED\n");
		return 1;
	}
	printf("verdict: OK, no stale translated block ever ran\n");
	return 0;
}
