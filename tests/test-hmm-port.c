// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-hmm-port.c - the device-mirror driver of the kernel's lib/test_hmm.c,
 * ported to userspace against <itn/linux/mmu_notifier.h>, and the scenarios
 * of tools/testing/selftests/mm/hmm-tests.c that exercise its notifiers.
 *
 * The file has three parts:
 *
 *  1. Kernel shims: the few kernel names the driver uses (mutex_lock(),
 *     jiffies, container_of(), ...) mapped onto POSIX.
 *
 *  2. A simulated mm: a CPU page table over a window of the address space,
 *     page by page "VMAs", a pool of physical pages, and the CPU-side
 *     operations (page fault, mmap, munmap, mprotect, the OOM reaper, exit)
 *     that bracket every change with mmu_notifier_range_init() and
 *     mmu_notifier_invalidate_range_start()/_end() like mm/ does.  Its
 *     hmm_range_fault() walks that page table like mm/hmm.c.
 *
 *  3. The driver, written like lib/test_hmm.c: a dmirror per open with an
 *     interval notifier over the whole space; dmirror_interval_invalidate()
 *     (mutex, blockable or trylock, set_seq, zap the device page table);
 *     the dmirror_range_fault() read_begin / hmm_range_fault / lock /
 *     read_retry loop with its HMM_RANGE_DEFAULT_TIMEOUT deadline; and
 *     dmirror_range_snapshot() with a temporary notifier per chunk, on the
 *     stack and uninitialised.
 *
 * The safety property is checked structurally: whenever the CPU page table
 * changes (inside the invalidation, with the mmap lock held for write), no
 * device page table entry may point at a page the CPU does not map there
 * ("stale"), and freed pages are poisoned so that a stale read would show.
 *
 * Driver callbacks run on the thread that invalidates; some tests run the
 * CPU side on a second thread.  Neither asserts: they count into atomics
 * and the test thread asserts.
 */
#include <errno.h>
/* cmocka.h 1.1.5 needs stdarg.h, stddef.h and setjmp.h included first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <itn/linux/mmu_notifier.h>

/* ================================================================== */
/* 1. Kernel shims                                                    */
/* ================================================================== */

#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define BIT(n) (1UL << (n))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))

/* WARN_ON(): counted, never fatal (the test thread asserts the count). */
static atomic_ulong warnings;
#define WARN_ON(cond) ((cond) ? (atomic_fetch_add(&warnings, 1), true) : false)

struct mutex {
	pthread_mutex_t m;
};

static void mutex_init(struct mutex *lock)
{
	pthread_mutex_init(&lock->m, NULL);
}

static void mutex_destroy(struct mutex *lock)
{
	pthread_mutex_destroy(&lock->m);
}

static void mutex_lock(struct mutex *lock)
{
	pthread_mutex_lock(&lock->m);
}

/* 1 if acquired, like the kernel's. */
static int mutex_trylock(struct mutex *lock)
{
	return pthread_mutex_trylock(&lock->m) == 0;
}

static void mutex_unlock(struct mutex *lock)
{
	pthread_mutex_unlock(&lock->m);
}

/* One jiffy is one millisecond of CLOCK_MONOTONIC. */
static unsigned long jiffies_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long)ts.tv_sec * 1000 +
	       (unsigned long)ts.tv_nsec / 1000000;
}

#define jiffies jiffies_now()
#define msecs_to_jiffies(ms) ((unsigned long)(ms))
#define time_after(a, b) ((long)((b) - (a)) < 0)

#define kzalloc(size, gfp) calloc(1, size)
#define kfree(p) free(p)

/* ================================================================== */
/* 2. The simulated mm                                                */
/* ================================================================== */

/* The part of the address space that has page tables. */
#define SIM_BASE 0x7f0000000000UL
#define SIM_PAGES 512
#define SIM_END (SIM_BASE + SIM_PAGES * PAGE_SIZE)

/* Physical pages; pfn 0 is the shared zero page. */
#define SIM_PHYS 1024
#define ZERO_PFN 0UL
#define PAGE_POISON 0xdeadbeefdeadbeefUL

/* The VMA of each page (0: unmapped). */
#define VM_READ BIT(0)
#define VM_WRITE BIT(1)

/* CPU page table entries. */
#define _PAGE_PRESENT BIT(0)
#define _PAGE_RW BIT(1)
#define PTE_PFN_SHIFT 12

struct page {
	_Atomic unsigned long data; /* the page's contents, one word */
};

struct sim_mm {
	struct mm_struct *mm; /* the libitn space: the notifiers */
	atomic_int mm_users;
	pthread_rwlock_t mmap_lock;
	struct mutex ptl; /* page table lock: writers of pte[] */
	unsigned char vm_flags[SIM_PAGES];
	_Atomic unsigned long pte[SIM_PAGES];
};

static struct sim_mm sim;
static struct page pages[SIM_PHYS];
static struct mutex page_alloc_lock;
static unsigned long free_pfns[SIM_PHYS];
static int nr_free;

/* What the checks found: the test thread asserts they stay zero. */
static atomic_ulong stale_entries;

static struct sim_mm *sim_of(struct mm_struct *mm)
{
	if (mm != sim.mm) {
		fprintf(stderr, "test-hmm-port: unknown mm %p\n", (void *)mm);
		abort();
	}
	return &sim;
}

static int sim_index(unsigned long addr)
{
	if (addr < SIM_BASE || addr >= SIM_END)
		return -1;
	return (int)((addr - SIM_BASE) >> PAGE_SHIFT);
}

static unsigned long pte_pfn(unsigned long pte)
{
	return pte >> PTE_PFN_SHIFT;
}

static unsigned long mk_pte(unsigned long pfn, bool write)
{
	return pfn << PTE_PFN_SHIFT | _PAGE_PRESENT | (write ? _PAGE_RW : 0);
}

static void mmap_read_lock(struct mm_struct *mm)
{
	pthread_rwlock_rdlock(&sim_of(mm)->mmap_lock);
}

static void mmap_read_unlock(struct mm_struct *mm)
{
	pthread_rwlock_unlock(&sim_of(mm)->mmap_lock);
}

static void mmap_write_lock(struct mm_struct *mm)
{
	pthread_rwlock_wrlock(&sim_of(mm)->mmap_lock);
}

static void mmap_write_unlock(struct mm_struct *mm)
{
	pthread_rwlock_unlock(&sim_of(mm)->mmap_lock);
}

static unsigned long alloc_page(void)
{
	unsigned long pfn = ZERO_PFN;

	mutex_lock(&page_alloc_lock);
	if (!WARN_ON(nr_free == 0))
		pfn = free_pfns[--nr_free];
	mutex_unlock(&page_alloc_lock);
	atomic_store(&pages[pfn].data, 0);
	return pfn;
}

/* Freed pages are poisoned and reused first (LIFO): a stale device
 * mapping then reads garbage at once. */
static void put_page(unsigned long pfn)
{
	if (pfn == ZERO_PFN)
		return;
	atomic_store(&pages[pfn].data, PAGE_POISON);
	mutex_lock(&page_alloc_lock);
	free_pfns[nr_free++] = pfn;
	mutex_unlock(&page_alloc_lock);
}

static void sim_check_mirrors(void);

/* Zap the page table of [start, end) (ptl taken); returns the pages to
 * free once the invalidation has ended (the kernel's mmu_gather). */
static int zap_pte_range(struct sim_mm *s, unsigned long start,
			 unsigned long end, unsigned long *gather)
{
	int n = 0;

	mutex_lock(&s->ptl);
	for (unsigned long addr = start; addr < end; addr += PAGE_SIZE) {
		int i = sim_index(addr);
		unsigned long pte = atomic_exchange(&s->pte[i], 0);

		if (pte & _PAGE_PRESENT)
			gather[n++] = pte_pfn(pte);
	}
	mutex_unlock(&s->ptl);
	return n;
}

/* munmap(): mm/mmap.c's unmap_region() under the mmap lock. */
static void sim_munmap_locked(struct mm_struct *mm, unsigned long start,
			      unsigned long end)
{
	struct sim_mm *s = sim_of(mm);
	struct mmu_notifier_range range;
	unsigned long gather[SIM_PAGES];
	int n;

	mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, mm, start, end);
	mmu_notifier_invalidate_range_start(&range);
	n = zap_pte_range(s, start, end, gather);
	for (unsigned long addr = start; addr < end; addr += PAGE_SIZE) {
		int i = sim_index(addr);

		if (i >= 0)
			s->vm_flags[i] = 0;
	}
	/* Every secondary mapping of the range is gone by now. */
	sim_check_mirrors();
	mmu_notifier_invalidate_range_end(&range);
	while (n--)
		put_page(gather[n]);
}

static void sim_munmap(struct mm_struct *mm, unsigned long start,
		       unsigned long npages)
{
	mmap_write_lock(mm);
	sim_munmap_locked(mm, start, start + npages * PAGE_SIZE);
	mmap_write_unlock(mm);
}

/* mmap(MAP_FIXED | MAP_ANONYMOUS): replaces whatever was there. */
static void sim_mmap(struct mm_struct *mm, unsigned long start,
		     unsigned long npages, unsigned char prot)
{
	struct sim_mm *s = sim_of(mm);
	unsigned long end = start + npages * PAGE_SIZE;

	mmap_write_lock(mm);
	sim_munmap_locked(mm, start, end);
	for (unsigned long addr = start; addr < end; addr += PAGE_SIZE)
		s->vm_flags[sim_index(addr)] = prot;
	mmap_write_unlock(mm);
}

/* mprotect(): mm/mprotect.c's change_protection(). */
static void sim_mprotect(struct mm_struct *mm, unsigned long start,
			 unsigned long npages, unsigned char prot)
{
	struct sim_mm *s = sim_of(mm);
	unsigned long end = start + npages * PAGE_SIZE;
	struct mmu_notifier_range range;

	mmap_write_lock(mm);
	mmu_notifier_range_init(&range, MMU_NOTIFY_PROTECTION_VMA, 0, mm, start,
				end);
	mmu_notifier_invalidate_range_start(&range);
	mutex_lock(&s->ptl);
	for (unsigned long addr = start; addr < end; addr += PAGE_SIZE) {
		int i = sim_index(addr);

		if (i < 0)
			continue;
		s->vm_flags[i] = prot;
		if (!(prot & VM_WRITE))
			atomic_fetch_and(&s->pte[i], ~_PAGE_RW);
	}
	mutex_unlock(&s->ptl);
	sim_check_mirrors();
	mmu_notifier_invalidate_range_end(&range);
	mmap_write_unlock(mm);
}

/*
 * The CPU's page fault (mmap lock held for read): a read of an empty pte
 * maps the zero page, a write maps a new page; a write to the zero page
 * copies it (wp_page_copy(), which invalidates: the device may map the
 * zero page there); a write to a read-only private page reuses it.
 */
static int handle_mm_fault(struct mm_struct *mm, unsigned long addr, bool write)
{
	struct sim_mm *s = sim_of(mm);
	int i = sim_index(addr);
	struct mmu_notifier_range range;
	unsigned long pte, pfn;

	if (i < 0 || !(s->vm_flags[i] & VM_READ))
		return -EFAULT;
	if (write && !(s->vm_flags[i] & VM_WRITE))
		return -EFAULT;
	pte = atomic_load(&s->pte[i]);
	if (!(pte & _PAGE_PRESENT)) {
		mutex_lock(&s->ptl);
		if (!atomic_load(&s->pte[i]))
			atomic_store(&s->pte[i],
				     write ? mk_pte(alloc_page(), true) :
					     mk_pte(ZERO_PFN, false));
		mutex_unlock(&s->ptl);
		return 0;
	}
	if (!write || (pte & _PAGE_RW))
		return 0;
	if (pte_pfn(pte) != ZERO_PFN) {
		atomic_fetch_or(&s->pte[i], _PAGE_RW);
		return 0;
	}
	addr &= PAGE_MASK;
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, addr,
				addr + PAGE_SIZE);
	mmu_notifier_invalidate_range_start(&range);
	pfn = alloc_page();
	mutex_lock(&s->ptl);
	if (atomic_load(&s->pte[i]) == pte)
		atomic_store(&s->pte[i], mk_pte(pfn, true));
	else
		pte = 0;
	mutex_unlock(&s->ptl);
	mmu_notifier_invalidate_range_end(&range);
	if (!pte)
		put_page(pfn); /* someone else got there first */
	return 0;
}

/* A CPU store / load of a page's word. */
static int sim_cpu_write(struct mm_struct *mm, unsigned long addr,
			 unsigned long val)
{
	struct sim_mm *s = sim_of(mm);
	int ret;

	mmap_read_lock(mm);
	ret = handle_mm_fault(mm, addr, true);
	if (!ret)
		atomic_store(
			&pages[pte_pfn(atomic_load(&s->pte[sim_index(addr)]))]
				 .data,
			val);
	mmap_read_unlock(mm);
	return ret;
}

static int sim_cpu_read(struct mm_struct *mm, unsigned long addr,
			unsigned long *val)
{
	struct sim_mm *s = sim_of(mm);
	int ret;

	mmap_read_lock(mm);
	ret = handle_mm_fault(mm, addr, false);
	if (!ret)
		*val = atomic_load(
			&pages[pte_pfn(atomic_load(&s->pte[sim_index(addr)]))]
				 .data);
	mmap_read_unlock(mm);
	return ret;
}

/*
 * The OOM reaper (mm/oom_kill.c __oom_reap_task_mm()): it must not sleep,
 * so it starts non-blocking and skips the range when a notifier refuses.
 */
static bool sim_oom_reap(struct mm_struct *mm, unsigned long start,
			 unsigned long end)
{
	struct sim_mm *s = sim_of(mm);
	struct mmu_notifier_range range;
	unsigned long gather[SIM_PAGES];
	int n;

	mmap_read_lock(mm);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR, 0, mm, start, end);
	if (mmu_notifier_invalidate_range_start_nonblock(&range)) {
		/* -EAGAIN: leave the range alone, and no _end(). */
		mmap_read_unlock(mm);
		return false;
	}
	n = zap_pte_range(s, start, end, gather);
	mmu_notifier_invalidate_range_end(&range);
	mmap_read_unlock(mm);
	while (n--)
		put_page(gather[n]);
	return true;
}

static bool mmget_not_zero(struct mm_struct *mm)
{
	struct sim_mm *s = sim_of(mm);
	int users = atomic_load(&s->mm_users);

	while (users > 0)
		if (atomic_compare_exchange_weak(&s->mm_users, &users,
						 users + 1))
			return true;
	return false;
}

/*
 * mmput(): the last user tears the mm down like exit_mmap(): the
 * notifiers' release first (mmu_notifier_release()), then every mapping
 * is unmapped (interval notifiers still get those invalidations).  The
 * space itself lives on until the drivers removed their notifiers.
 */
static void mmput(struct mm_struct *mm)
{
	struct sim_mm *s = sim_of(mm);

	if (atomic_fetch_sub(&s->mm_users, 1) != 1)
		return;
	WARN_ON(itn_space_release(mm) != 0);
	mmap_write_lock(mm);
	sim_munmap_locked(mm, SIM_BASE, SIM_END);
	mmap_write_unlock(mm);
}

static void sim_init(void)
{
	memset(&sim, 0, sizeof(sim));
	sim.mm = itn_space_new();
	atomic_store(&sim.mm_users, 1);
	pthread_rwlock_init(&sim.mmap_lock, NULL);
	mutex_init(&sim.ptl);
	mutex_init(&page_alloc_lock);
	nr_free = 0;
	for (unsigned long pfn = SIM_PHYS - 1; pfn > ZERO_PFN; pfn--) {
		atomic_store(&pages[pfn].data, PAGE_POISON);
		free_pfns[nr_free++] = pfn;
	}
	atomic_store(&pages[ZERO_PFN].data, 0);
	atomic_store(&warnings, 0);
	atomic_store(&stale_entries, 0);
}

/* ------------------------------------------------------------------ */
/* hmm_range_fault(), after mm/hmm.c                                   */
/* ------------------------------------------------------------------ */

#define HMM_PFN_VALID BIT(63)
#define HMM_PFN_WRITE BIT(62)
#define HMM_PFN_ERROR BIT(61)
#define HMM_PFN_FLAGS (HMM_PFN_VALID | HMM_PFN_WRITE | HMM_PFN_ERROR)
#define HMM_PFN_REQ_FAULT HMM_PFN_VALID
#define HMM_PFN_REQ_WRITE HMM_PFN_WRITE

#define HMM_RANGE_DEFAULT_TIMEOUT 1000

struct hmm_range {
	struct mmu_interval_notifier *notifier;
	unsigned long notifier_seq;
	unsigned long start;
	unsigned long end;
	unsigned long *hmm_pfns;
	unsigned long default_flags;
	unsigned long pfn_flags_mask;
	void *dev_private_owner;
};

static unsigned long hmm_pfn_to_pfn(unsigned long hmm_pfn)
{
	return hmm_pfn & ~HMM_PFN_FLAGS;
}

/*
 * One walk from *@last: fills hmm_pfns, faults pages in when asked to.
 * After a fault it returns -EBUSY with *@last at the faulted page (the
 * caller restarts from there); 0 when the range is done.
 */
static int hmm_vma_walk(struct hmm_range *range, unsigned long *last)
{
	struct sim_mm *s = sim_of(range->notifier->mm);
	unsigned long req = range->default_flags;
	unsigned long addr;

	for (addr = *last; addr < range->end; addr += PAGE_SIZE) {
		unsigned long *hmm_pfn =
			&range->hmm_pfns[(addr - range->start) >> PAGE_SHIFT];
		int i = sim_index(addr);
		unsigned char vm_flags = i < 0 ? 0 : s->vm_flags[i];
		unsigned long pte;

		if (!(vm_flags & VM_READ)) {
			/* No VMA, or PROT_NONE. */
			if (req & HMM_PFN_REQ_FAULT)
				return -EFAULT;
			*hmm_pfn = HMM_PFN_ERROR;
			continue;
		}
		pte = atomic_load(&s->pte[i]);
		if ((req & HMM_PFN_REQ_FAULT) &&
		    (!(pte & _PAGE_PRESENT) ||
		     ((req & HMM_PFN_REQ_WRITE) && !(pte & _PAGE_RW)))) {
			int ret;

			if ((req & HMM_PFN_REQ_WRITE) && !(vm_flags & VM_WRITE))
				return -EPERM;
			*last = addr;
			ret = handle_mm_fault(range->notifier->mm, addr,
					      req & HMM_PFN_REQ_WRITE);
			return ret ? ret : -EBUSY;
		}
		if (!(pte & _PAGE_PRESENT)) {
			*hmm_pfn = 0;
			continue;
		}
		*hmm_pfn = pte_pfn(pte) | HMM_PFN_VALID |
			   (pte & _PAGE_RW ? HMM_PFN_WRITE : 0);
	}
	*last = range->end;
	return 0;
}

/* Called with the mmap lock held for read. */
static int hmm_range_fault(struct hmm_range *range)
{
	unsigned long last = range->start;
	int ret;

	do {
		/* If range is no longer valid force retry. */
		if (mmu_interval_check_retry(range->notifier,
					     range->notifier_seq))
			return -EBUSY;
		ret = hmm_vma_walk(range, &last);
	} while (ret == -EBUSY);
	return ret;
}

/* ================================================================== */
/* 3. The driver (lib/test_hmm.c)                                     */
/* ================================================================== */

#define HMM_DMIRROR_PROT_ERROR 0xff
#define HMM_DMIRROR_PROT_NONE 0x00
#define HMM_DMIRROR_PROT_READ 0x01
#define HMM_DMIRROR_PROT_WRITE 0x02
#define HMM_DMIRROR_PROT_ZERO 0x10

/* Device page table entries (an xarray of tagged page pointers there). */
#define DPT_VALID BIT(0)
#define DPT_WRITE BIT(1)

struct dmirror_device {
	int id; /* the owner token of its migrations */
};

struct dmirror {
	struct dmirror_device *mdevice;
	unsigned long pt[SIM_PAGES]; /* the device page table */
	struct mmu_interval_notifier notifier;
	struct mutex mutex;
	/* For the tests. */
	atomic_ulong invalidations;
	atomic_ulong refused;
	atomic_ulong retries;
	atomic_ulong faults;
	atomic_int last_event;
	_Atomic unsigned long last_start, last_end;
};

/* Test seam: runs between hmm_range_fault() and the driver lock. */
static void (*dmirror_fault_hook)(struct dmirror *dmirror,
				  struct hmm_range *range);
static unsigned long hmm_range_timeout = HMM_RANGE_DEFAULT_TIMEOUT;

#define MAX_MIRRORS 4
static struct dmirror *mirrors[MAX_MIRRORS];
static struct mutex mirrors_lock;

static unsigned long dpt_pfn(unsigned long entry)
{
	return entry >> 2;
}

static void dmirror_do_update(struct dmirror *dmirror, unsigned long start,
			      unsigned long end)
{
	unsigned long addr;

	/*
	 * The XArray doesn't hold references to pages since it relies on
	 * the mmu notifier to clear page pointers when they become stale.
	 * Therefore, it is OK to just clear the entry.
	 */
	start = max(start, SIM_BASE);
	end = min(end, SIM_END);
	for (addr = start; addr < end; addr += PAGE_SIZE)
		dmirror->pt[sim_index(addr)] = 0;
}

static bool dmirror_interval_invalidate(struct mmu_interval_notifier *mni,
					const struct mmu_notifier_range *range,
					unsigned long cur_seq)
{
	struct dmirror *dmirror = container_of(mni, struct dmirror, notifier);

	/*
	 * Ignore invalidation callbacks for device private pages since
	 * the invalidation is handled as part of the migration process.
	 */
	if (range->event == MMU_NOTIFY_MIGRATE &&
	    range->owner == dmirror->mdevice)
		return true;

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&dmirror->mutex);
	else if (!mutex_trylock(&dmirror->mutex)) {
		atomic_fetch_add(&dmirror->refused, 1);
		return false;
	}

	mmu_interval_set_seq(mni, cur_seq);
	dmirror_do_update(dmirror, range->start, range->end);
	atomic_fetch_add(&dmirror->invalidations, 1);
	atomic_store(&dmirror->last_event, (int)range->event);
	atomic_store(&dmirror->last_start, range->start);
	atomic_store(&dmirror->last_end, range->end);

	mutex_unlock(&dmirror->mutex);
	return true;
}

static const struct mmu_interval_notifier_ops dmirror_min_ops = {
	.invalidate = dmirror_interval_invalidate,
};

/* dmirror_fops_open(): one mirror of @mm per open. */
static struct dmirror *dmirror_open(struct dmirror_device *mdevice,
				    struct mm_struct *mm, int *err)
{
	struct dmirror *dmirror;
	int ret;

	dmirror = kzalloc(sizeof(*dmirror), GFP_KERNEL);
	if (dmirror == NULL) {
		*err = -ENOMEM;
		return NULL;
	}

	dmirror->mdevice = mdevice;
	mutex_init(&dmirror->mutex);

	ret = mmu_interval_notifier_insert(&dmirror->notifier, mm, 0,
					   ULONG_MAX & PAGE_MASK,
					   &dmirror_min_ops);
	if (ret) {
		mutex_destroy(&dmirror->mutex);
		kfree(dmirror);
		*err = ret;
		return NULL;
	}

	mutex_lock(&mirrors_lock);
	for (int i = 0; i < MAX_MIRRORS; i++)
		if (!mirrors[i]) {
			mirrors[i] = dmirror;
			break;
		}
	mutex_unlock(&mirrors_lock);
	*err = 0;
	return dmirror;
}

/* dmirror_fops_release(). */
static void dmirror_close(struct dmirror *dmirror)
{
	mutex_lock(&mirrors_lock);
	for (int i = 0; i < MAX_MIRRORS; i++)
		if (mirrors[i] == dmirror)
			mirrors[i] = NULL;
	mutex_unlock(&mirrors_lock);

	mmu_interval_notifier_remove(&dmirror->notifier);
	mutex_destroy(&dmirror->mutex);
	kfree(dmirror);
}

static int dmirror_do_fault(struct dmirror *dmirror, struct hmm_range *range)
{
	unsigned long *pfns = range->hmm_pfns;
	unsigned long addr;

	for (addr = range->start; addr < range->end;
	     addr += PAGE_SIZE, pfns++) {
		unsigned long entry;

		/*
		 * Since we asked for hmm_range_fault() to populate pages,
		 * it shouldn't return an error entry on success.
		 */
		WARN_ON(*pfns & HMM_PFN_ERROR);
		WARN_ON(!(*pfns & HMM_PFN_VALID));

		entry = hmm_pfn_to_pfn(*pfns) << 2 | DPT_VALID;
		if (*pfns & HMM_PFN_WRITE)
			entry |= DPT_WRITE;
		else if (WARN_ON(range->default_flags & HMM_PFN_WRITE))
			return -EFAULT;
		dmirror->pt[sim_index(addr)] = entry;
	}

	return 0;
}

static int dmirror_range_fault(struct dmirror *dmirror, struct hmm_range *range)
{
	struct mm_struct *mm = dmirror->notifier.mm;
	unsigned long timeout = jiffies + msecs_to_jiffies(hmm_range_timeout);
	int ret;

	while (true) {
		if (time_after(jiffies, timeout)) {
			ret = -EBUSY;
			goto out;
		}

		range->notifier_seq = mmu_interval_read_begin(range->notifier);
		mmap_read_lock(mm);
		ret = hmm_range_fault(range);
		mmap_read_unlock(mm);
		if (ret) {
			if (ret == -EBUSY) {
				atomic_fetch_add(&dmirror->retries, 1);
				continue;
			}
			goto out;
		}

		if (dmirror_fault_hook)
			dmirror_fault_hook(dmirror, range);

		mutex_lock(&dmirror->mutex);
		if (mmu_interval_read_retry(range->notifier,
					    range->notifier_seq)) {
			mutex_unlock(&dmirror->mutex);
			atomic_fetch_add(&dmirror->retries, 1);
			continue;
		}
		break;
	}

	ret = dmirror_do_fault(dmirror, range);

	mutex_unlock(&dmirror->mutex);
out:
	return ret;
}

static int dmirror_fault(struct dmirror *dmirror, unsigned long start,
			 unsigned long end, bool write)
{
	struct mm_struct *mm = dmirror->notifier.mm;
	unsigned long addr;
	unsigned long pfns[64];
	struct hmm_range range = {
		.notifier = &dmirror->notifier,
		.hmm_pfns = pfns,
		.pfn_flags_mask = 0,
		.default_flags =
			HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
		.dev_private_owner = dmirror->mdevice,
	};
	int ret = 0;

	/* Since the mm is for the mirrored process, get a reference first. */
	if (!mmget_not_zero(mm))
		return 0;

	for (addr = start; addr < end; addr = range.end) {
		range.start = addr;
		range.end = min(addr + (ARRAY_SIZE(pfns) << PAGE_SHIFT), end);

		ret = dmirror_range_fault(dmirror, &range);
		if (ret)
			break;
	}

	mmput(mm);
	return ret;
}

static int dmirror_do_read(struct dmirror *dmirror, unsigned long start,
			   unsigned long end, unsigned long *buf,
			   unsigned long *cpages)
{
	unsigned long addr;

	for (addr = start; addr < end; addr += PAGE_SIZE) {
		unsigned long entry = dmirror->pt[sim_index(addr)];

		if (!entry)
			return -ENOENT;
		*buf++ = atomic_load(&pages[dpt_pfn(entry)].data);
		(*cpages)++;
	}
	return 0;
}

/* HMM_DMIRROR_READ: the device reads @npages words from @addr. */
static int dmirror_read(struct dmirror *dmirror, unsigned long addr,
			unsigned long npages, unsigned long *buf)
{
	unsigned long start = addr, end = addr + (npages << PAGE_SHIFT);
	unsigned long cpages = 0;
	int ret;

	while (1) {
		mutex_lock(&dmirror->mutex);
		ret = dmirror_do_read(dmirror, start, end, buf + cpages,
				      &cpages);
		mutex_unlock(&dmirror->mutex);
		if (ret != -ENOENT)
			break;

		start = addr + (cpages << PAGE_SHIFT);
		ret = dmirror_fault(dmirror, start, end, false);
		if (ret)
			break;
		atomic_fetch_add(&dmirror->faults, 1);
	}
	return ret;
}

static int dmirror_do_write(struct dmirror *dmirror, unsigned long start,
			    unsigned long end, const unsigned long *buf,
			    unsigned long *cpages)
{
	unsigned long addr;

	for (addr = start; addr < end; addr += PAGE_SIZE) {
		unsigned long entry = dmirror->pt[sim_index(addr)];

		if (!entry || !(entry & DPT_WRITE))
			return -ENOENT;
		atomic_store(&pages[dpt_pfn(entry)].data, *buf++);
		(*cpages)++;
	}
	return 0;
}

/* HMM_DMIRROR_WRITE: the device writes @npages words at @addr. */
static int dmirror_write(struct dmirror *dmirror, unsigned long addr,
			 unsigned long npages, const unsigned long *buf)
{
	unsigned long start = addr, end = addr + (npages << PAGE_SHIFT);
	unsigned long cpages = 0;
	int ret;

	while (1) {
		mutex_lock(&dmirror->mutex);
		ret = dmirror_do_write(dmirror, start, end, buf + cpages,
				       &cpages);
		mutex_unlock(&dmirror->mutex);
		if (ret != -ENOENT)
			break;

		start = addr + (cpages << PAGE_SHIFT);
		ret = dmirror_fault(dmirror, start, end, true);
		if (ret)
			break;
		atomic_fetch_add(&dmirror->faults, 1);
	}
	return ret;
}

/* The temporary notifier of a snapshot. */
struct dmirror_interval {
	struct mmu_interval_notifier notifier;
	struct dmirror *dmirror;
};

static atomic_ulong snapshot_invalidations, snapshot_notifiers;

static bool dmirror_snapshot_invalidate(struct mmu_interval_notifier *mni,
					const struct mmu_notifier_range *range,
					unsigned long cur_seq)
{
	struct dmirror_interval *dmi =
		container_of(mni, struct dmirror_interval, notifier);
	struct dmirror *dmirror = dmi->dmirror;

	if (mmu_notifier_range_blockable(range))
		mutex_lock(&dmirror->mutex);
	else if (!mutex_trylock(&dmirror->mutex))
		return false;

	/*
	 * Snapshots only need to set the sequence number since any
	 * invalidation in the interval invalidates the whole snapshot.
	 */
	mmu_interval_set_seq(mni, cur_seq);
	atomic_fetch_add(&snapshot_invalidations, 1);

	mutex_unlock(&dmirror->mutex);
	return true;
}

static const struct mmu_interval_notifier_ops dmirror_mrn_ops = {
	.invalidate = dmirror_snapshot_invalidate,
};

static void dmirror_mkentry(struct dmirror *dmirror, struct hmm_range *range,
			    unsigned char *perm, unsigned long entry)
{
	if (entry & HMM_PFN_ERROR) {
		*perm = HMM_DMIRROR_PROT_ERROR;
		return;
	}
	if (!(entry & HMM_PFN_VALID)) {
		*perm = HMM_DMIRROR_PROT_NONE;
		return;
	}

	if (hmm_pfn_to_pfn(entry) == ZERO_PFN)
		*perm = HMM_DMIRROR_PROT_ZERO;
	else
		*perm = HMM_DMIRROR_PROT_NONE;
	if (entry & HMM_PFN_WRITE)
		*perm |= HMM_DMIRROR_PROT_WRITE;
	else
		*perm |= HMM_DMIRROR_PROT_READ;
}

static int dmirror_range_snapshot(struct dmirror *dmirror,
				  struct hmm_range *range, unsigned char *perm)
{
	struct mm_struct *mm = dmirror->notifier.mm;
	struct dmirror_interval notifier;
	unsigned long timeout = jiffies + msecs_to_jiffies(hmm_range_timeout);
	unsigned long i;
	unsigned long n;
	int ret = 0;

	/* The kernel leaves it uninitialised: make that visible. */
	memset(&notifier, 0x5a, sizeof(notifier));
	notifier.dmirror = dmirror;
	range->notifier = &notifier.notifier;

	ret = mmu_interval_notifier_insert(range->notifier, mm, range->start,
					   range->end - range->start,
					   &dmirror_mrn_ops);
	if (ret)
		return ret;
	atomic_fetch_add(&snapshot_notifiers, 1);

	while (true) {
		if (time_after(jiffies, timeout)) {
			ret = -EBUSY;
			goto out;
		}

		range->notifier_seq = mmu_interval_read_begin(range->notifier);

		mmap_read_lock(mm);
		ret = hmm_range_fault(range);
		mmap_read_unlock(mm);
		if (ret) {
			if (ret == -EBUSY) {
				atomic_fetch_add(&dmirror->retries, 1);
				continue;
			}
			goto out;
		}

		if (dmirror_fault_hook)
			dmirror_fault_hook(dmirror, range);

		mutex_lock(&dmirror->mutex);
		if (mmu_interval_read_retry(range->notifier,
					    range->notifier_seq)) {
			mutex_unlock(&dmirror->mutex);
			atomic_fetch_add(&dmirror->retries, 1);
			continue;
		}
		break;
	}

	n = (range->end - range->start) >> PAGE_SHIFT;
	for (i = 0; i < n; i++)
		dmirror_mkentry(dmirror, range, perm + i, range->hmm_pfns[i]);

	mutex_unlock(&dmirror->mutex);
out:
	mmu_interval_notifier_remove(range->notifier);
	atomic_fetch_sub(&snapshot_notifiers, 1);
	return ret;
}

/* HMM_DMIRROR_SNAPSHOT: the CPU's view of @npages pages, in chunks. */
static int dmirror_snapshot(struct dmirror *dmirror, unsigned long start,
			    unsigned long npages, unsigned char *out)
{
	struct mm_struct *mm = dmirror->notifier.mm;
	unsigned long end = start + (npages << PAGE_SHIFT);
	unsigned long addr;
	unsigned long next;
	unsigned long pfns[64];
	unsigned char perm[64];
	struct hmm_range range = {
		.hmm_pfns = pfns,
		.dev_private_owner = dmirror->mdevice,
	};
	int ret = 0;

	if (end < start)
		return -EINVAL;

	/* Since the mm is for the mirrored process, get a reference first. */
	if (!mmget_not_zero(mm))
		return -EINVAL;

	/*
	 * Register a temporary notifier to detect invalidations even if it
	 * overlaps with other mmu_interval_notifiers.
	 */
	for (addr = start; addr < end; addr = next) {
		unsigned long n;

		next = min(addr + (ARRAY_SIZE(pfns) << PAGE_SHIFT), end);
		range.start = addr;
		range.end = next;

		ret = dmirror_range_snapshot(dmirror, &range, perm);
		if (ret)
			break;

		n = (range.end - range.start) >> PAGE_SHIFT;
		memcpy(out, perm, n);
		out += n;
	}
	mmput(mm);

	return ret;
}

/* ================================================================== */
/* The checker                                                        */
/* ================================================================== */

/*
 * With the mmap lock held for write (no CPU fault runs) and each mirror's
 * lock: every device entry must map what the CPU maps at that address,
 * and may be writable only where the CPU's is.
 */
static void sim_check_mirrors(void)
{
	mutex_lock(&mirrors_lock);
	for (int m = 0; m < MAX_MIRRORS; m++) {
		struct dmirror *dmirror = mirrors[m];

		if (!dmirror)
			continue;
		mutex_lock(&dmirror->mutex);
		for (int i = 0; i < SIM_PAGES; i++) {
			unsigned long entry = dmirror->pt[i];
			unsigned long pte = atomic_load(&sim.pte[i]);

			if (!entry)
				continue;
			if (!(pte & _PAGE_PRESENT) ||
			    pte_pfn(pte) != dpt_pfn(entry) ||
			    ((entry & DPT_WRITE) && !(pte & _PAGE_RW)))
				atomic_fetch_add(&stale_entries, 1);
		}
		mutex_unlock(&dmirror->mutex);
	}
	mutex_unlock(&mirrors_lock);
}

/* ================================================================== */
/* Tests                                                              */
/* ================================================================== */

static struct dmirror_device device0 = { .id = 0 }, device1 = { .id = 1 };

#define ADDR(page) (SIM_BASE + (unsigned long)(page)*PAGE_SIZE)

static int hmm_setup(void **state)
{
	(void)state;
	mutex_init(&mirrors_lock);
	memset(mirrors, 0, sizeof(mirrors));
	sim_init();
	dmirror_fault_hook = NULL;
	hmm_range_timeout = HMM_RANGE_DEFAULT_TIMEOUT;
	atomic_store(&snapshot_invalidations, 0);
	atomic_store(&snapshot_notifiers, 0);
	return sim.mm ? 0 : -1;
}

/* Every test closes its mirrors; the process then exits. */
static int hmm_teardown(void **state)
{
	(void)state;
	if (atomic_load(&sim.mm_users) > 0)
		mmput(sim.mm);
	pthread_rwlock_destroy(&sim.mmap_lock);
	mutex_destroy(&sim.ptl);
	mutex_destroy(&page_alloc_lock);
	mutex_destroy(&mirrors_lock);
	return itn_space_free(sim.mm) == 0 ? 0 : -1;
}

static struct dmirror *open_mirror(struct dmirror_device *mdevice)
{
	int err = -1;
	struct dmirror *dmirror = dmirror_open(mdevice, sim.mm, &err);

	assert_non_null(dmirror);
	assert_int_equal(err, 0);
	return dmirror;
}

static int mirror_entries(struct dmirror *dmirror, int first, int n)
{
	int count = 0;

	mutex_lock(&dmirror->mutex);
	for (int i = first; i < first + n; i++)
		count += dmirror->pt[i] != 0;
	mutex_unlock(&dmirror->mutex);
	return count;
}

static void expect_clean(void)
{
	if (atomic_load(&stale_entries))
		fail_msg("%lu stale device page table entries",
			 atomic_load(&stale_entries));
	if (atomic_load(&warnings))
		fail_msg("%lu WARN_ON()s", atomic_load(&warnings));
}

static void expect_rc(int got, int want, const char *what)
{
	if (got != want)
		fail_msg("%s: got %d (%s), want %d (%s)", what, got,
			 strerror(got < 0 ? -got : got), want,
			 strerror(want < 0 ? -want : want));
}

/* Runs @fn(@arg) on another thread and waits for it. */
static void run_on_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	pthread_join(t, NULL);
}

/* open_close, and mmu_interval_notifier_insert()'s argument checks. */
static void open_close_and_insert_errors(void **state)
{
	static const struct mmu_interval_notifier_ops null_ops = { 0 };
	struct dmirror *dmirror = open_mirror(&device0);
	struct mmu_interval_notifier mni;

	(void)state;
	expect_rc(mmu_interval_notifier_insert(&mni, sim.mm, 0x1000, 0,
					       &dmirror_min_ops),
		  -EOVERFLOW, "zero length");
	expect_rc(mmu_interval_notifier_insert(&mni, sim.mm, ULONG_MAX - 1, 3,
					       &dmirror_min_ops),
		  -EOVERFLOW, "wraps");
	expect_rc(mmu_interval_notifier_insert(&mni, sim.mm, 0, 1, &null_ops),
		  -EINVAL, "no invalidate op");
	expect_rc(mmu_interval_notifier_insert(&mni, NULL, 0, 1,
					       &dmirror_min_ops),
		  -EINVAL, "no mm");
	/* The extremes fit. */
	expect_rc(mmu_interval_notifier_insert(&mni, sim.mm, ULONG_MAX, 1,
					       &dmirror_min_ops),
		  0, "(ULONG_MAX, 1)");
	assert_ptr_equal(mni.mm, sim.mm);
	mmu_interval_notifier_remove(&mni);
	expect_rc(mmu_interval_notifier_insert(&mni, sim.mm, 1, ULONG_MAX,
					       &dmirror_min_ops),
		  0, "(1, ULONG_MAX)");
	mmu_interval_notifier_remove(&mni);

	dmirror_close(dmirror);
	expect_clean();
}

static atomic_int twice_calls;

static bool twice_invalidate(struct mmu_interval_notifier *mni,
			     const struct mmu_notifier_range *range,
			     unsigned long cur_seq)
{
	(void)range;
	mmu_interval_set_seq(mni, cur_seq);
	atomic_fetch_add(&twice_calls, 1);
	return true;
}

static const struct mmu_interval_notifier_ops twice_ops = {
	.invalidate = twice_invalidate,
};

/*
 * Inserting a notifier twice: the kernel would corrupt its tree; here the
 * second insert (same mm or another) is -EBUSY and changes nothing: same
 * ops, mm and range, called once per invalidation.  The first insert of
 * uninitialised memory works, and so does an insert after remove.
 * Catches: a wrapper that wipes the notifier before inserting it (the
 * library then sees a fresh subscription and links the node twice).
 */
static void insert_twice_is_ebusy(void **state)
{
	struct mmu_interval_notifier *mni = malloc(sizeof(*mni));
	struct mm_struct *mm2 = itn_space_new();
	struct mmu_notifier_range range;

	(void)state;
	assert_non_null(mni);
	assert_non_null(mm2);
	atomic_store(&twice_calls, 0);
	memset(mni, 0xa5, sizeof(*mni)); /* uninitialised */
	expect_rc(mmu_interval_notifier_insert(mni, sim.mm, 0x10000, PAGE_SIZE,
					       &twice_ops),
		  0, "first insert of uninitialised memory");
	expect_rc(mmu_interval_notifier_insert(mni, sim.mm, 0x20000, PAGE_SIZE,
					       &dmirror_min_ops),
		  -EBUSY, "second insert");
	expect_rc(mmu_interval_notifier_insert(mni, mm2, 0x20000, PAGE_SIZE,
					       &dmirror_min_ops),
		  -EBUSY, "second insert, other mm");
	expect_rc(mmu_interval_notifier_insert_locked(mni, sim.mm, 0x10000,
						      PAGE_SIZE, &twice_ops),
		  -EBUSY, "second insert, _locked");
	assert_ptr_equal(mni->ops, &twice_ops);
	assert_ptr_equal(mni->mm, sim.mm);
	assert_int_equal(itn_sub_start(&mni->sub), 0x10000);
	assert_int_equal(itn_sub_last(&mni->sub), 0x10000 + PAGE_SIZE - 1);
	assert_true(itn_sub_busy(&mni->sub));

	mmu_notifier_range_init(&range, MMU_NOTIFY_UNMAP, 0, sim.mm, 0,
				0x100000);
	mmu_notifier_invalidate_range_start(&range);
	mmu_notifier_invalidate_range_end(&range);
	assert_int_equal(atomic_load(&twice_calls), 1);

	mmu_interval_notifier_remove(mni);
	assert_false(itn_sub_busy(&mni->sub));
	expect_rc(mmu_interval_notifier_insert(mni, mm2, 0x20000, PAGE_SIZE,
					       &twice_ops),
		  0, "insert after remove");
	assert_ptr_equal(mni->mm, mm2);
	mmu_interval_notifier_remove(mni);
	expect_rc(itn_space_free(mm2), 0, "free the other mm");
	free(mni);
	expect_clean();
}

/* anon_read: the device reads what the CPU wrote. */
static void anon_read(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned long buf[100];
	const int npages = 100;

	(void)state;
	sim_mmap(sim.mm, ADDR(0), npages, VM_READ | VM_WRITE);
	for (int i = 0; i < npages; i++)
		assert_int_equal(sim_cpu_write(sim.mm, ADDR(i), 1000 + i), 0);

	assert_int_equal(dmirror_read(dmirror, ADDR(0), npages, buf), 0);
	for (int i = 0; i < npages; i++)
		assert_int_equal(buf[i], 1000 + i);
	/* One fault of 100 pages (two hmm_range_fault() chunks of 64). */
	assert_int_equal(atomic_load(&dmirror->faults), 1);
	assert_int_equal(mirror_entries(dmirror, 0, npages), npages);

	/* Mirrored now: a second read faults nothing. */
	assert_int_equal(dmirror_read(dmirror, ADDR(0), npages, buf), 0);
	assert_int_equal(atomic_load(&dmirror->faults), 1);

	/* A never-touched page reads as the zero page. */
	sim_mmap(sim.mm, ADDR(200), 1, VM_READ | VM_WRITE);
	assert_int_equal(dmirror_read(dmirror, ADDR(200), 1, buf), 0);
	assert_int_equal(buf[0], 0);

	/* PROT_NONE (anon_read_prot): the fault fails, nothing mapped. */
	sim_mmap(sim.mm, ADDR(300), 4, 0);
	expect_rc(dmirror_read(dmirror, ADDR(300), 4, buf), -EFAULT,
		  "read PROT_NONE");
	assert_int_equal(mirror_entries(dmirror, 300, 4), 0);
	/* No mapping at all. */
	expect_rc(dmirror_read(dmirror, ADDR(400), 1, buf), -EFAULT,
		  "read a hole");

	dmirror_close(dmirror);
	expect_clean();
}

/* anon_write, anon_write_prot, and the zero page's copy on write. */
static void anon_write(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned long buf[16], val;
	const int npages = 16;
	unsigned long inv;

	(void)state;
	sim_mmap(sim.mm, ADDR(10), npages, VM_READ | VM_WRITE);
	for (int i = 0; i < npages; i++)
		buf[i] = 0xd00 + i;
	assert_int_equal(dmirror_write(dmirror, ADDR(10), npages, buf), 0);
	for (int i = 0; i < npages; i++) {
		assert_int_equal(sim_cpu_read(sim.mm, ADDR(10 + i), &val), 0);
		assert_int_equal(val, 0xd00 + i);
	}

	/* anon_write_prot: read-only mapping, the device may read (the
	 * zero page) but not write; after mprotect it may. */
	sim_mmap(sim.mm, ADDR(40), 1, VM_READ);
	assert_int_equal(dmirror_read(dmirror, ADDR(40), 1, buf), 0);
	assert_int_equal(buf[0], 0);
	buf[0] = 77;
	expect_rc(dmirror_write(dmirror, ADDR(40), 1, buf), -EPERM,
		  "write a read-only mapping");
	sim_mprotect(sim.mm, ADDR(40), 1, VM_READ | VM_WRITE);
	/* The device's read-only zero-page entry must go when the page is
	 * copied for writing (wp_page_copy() invalidates). */
	inv = atomic_load(&dmirror->invalidations);
	assert_int_equal(dmirror_write(dmirror, ADDR(40), 1, buf), 0);
	assert_true(atomic_load(&dmirror->invalidations) > inv);
	assert_int_equal(sim_cpu_read(sim.mm, ADDR(40), &val), 0);
	assert_int_equal(val, 77);

	/* The CPU writes a page the device maps as the zero page. */
	sim_mmap(sim.mm, ADDR(50), 1, VM_READ | VM_WRITE);
	assert_int_equal(dmirror_read(dmirror, ADDR(50), 1, buf), 0);
	assert_int_equal(mirror_entries(dmirror, 50, 1), 1);
	assert_int_equal(sim_cpu_write(sim.mm, ADDR(50), 5), 0);
	assert_int_equal(mirror_entries(dmirror, 50, 1), 0);
	assert_int_equal(dmirror_read(dmirror, ADDR(50), 1, buf), 0);
	assert_int_equal(buf[0], 5);

	/* mprotect(PROT_READ) takes the device's write access away. */
	assert_int_equal(mirror_entries(dmirror, 10, npages), npages);
	sim_mprotect(sim.mm, ADDR(10), npages, VM_READ);
	assert_int_equal(atomic_load(&dmirror->last_event),
			 MMU_NOTIFY_PROTECTION_VMA);
	assert_int_equal(mirror_entries(dmirror, 10, npages), 0);
	expect_rc(dmirror_write(dmirror, ADDR(10), 1, buf), -EPERM,
		  "write after mprotect");

	dmirror_close(dmirror);
	expect_clean();
}

/* munmap invalidates the mirror of the range, and only that. */
static void munmap_invalidates_mirror(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned long buf[32];

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 32, VM_READ | VM_WRITE);
	for (int i = 0; i < 32; i++)
		assert_int_equal(sim_cpu_write(sim.mm, ADDR(i), i), 0);
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 32, buf), 0);
	assert_int_equal(mirror_entries(dmirror, 0, 32), 32);

	sim_munmap(sim.mm, ADDR(8), 8);
	assert_int_equal(atomic_load(&dmirror->last_event), MMU_NOTIFY_UNMAP);
	assert_int_equal(atomic_load(&dmirror->last_start), ADDR(8));
	assert_int_equal(atomic_load(&dmirror->last_end), ADDR(16));
	assert_int_equal(mirror_entries(dmirror, 0, 8), 8);
	assert_int_equal(mirror_entries(dmirror, 8, 8), 0);
	assert_int_equal(mirror_entries(dmirror, 16, 16), 16);
	expect_rc(dmirror_read(dmirror, ADDR(0), 32, buf), -EFAULT,
		  "read across the hole");
	assert_int_equal(dmirror_read(dmirror, ADDR(16), 16, buf), 0);
	assert_int_equal(buf[0], 16);

	/* A new mapping there reads as fresh memory, never the old pages
	 * (they were freed, poisoned and maybe reused). */
	sim_mmap(sim.mm, ADDR(8), 8, VM_READ | VM_WRITE);
	assert_int_equal(dmirror_read(dmirror, ADDR(8), 8, buf), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(buf[i], 0);

	dmirror_close(dmirror);
	expect_clean();
}

/* hmm2.double_map: two devices mirror one mm; both are invalidated. */
static void double_map(void **state)
{
	struct dmirror *d0 = open_mirror(&device0);
	struct dmirror *d1 = open_mirror(&device1);
	unsigned long buf[8];

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 8, VM_READ | VM_WRITE);
	for (int i = 0; i < 8; i++)
		assert_int_equal(sim_cpu_write(sim.mm, ADDR(i), i), 0);
	assert_int_equal(dmirror_read(d0, ADDR(0), 8, buf), 0);
	assert_int_equal(dmirror_read(d1, ADDR(0), 8, buf), 0);
	sim_munmap(sim.mm, ADDR(0), 8);
	assert_int_equal(mirror_entries(d0, 0, 8), 0);
	assert_int_equal(mirror_entries(d1, 0, 8), 0);
	dmirror_close(d0);
	dmirror_close(d1);
	expect_clean();
}

/*
 * The key race, made deterministic: hmm_range_fault() has read the CPU
 * page table, and before the driver takes its lock another thread unmaps
 * part of the range.  read_retry must send the fault round again; the
 * second walk finds the hole; nothing of the old pages is installed.
 */
static int hook_calls;
static unsigned long hook_unmap_page, hook_unmap_npages;

static void *munmap_main(void *arg)
{
	(void)arg;
	sim_munmap(sim.mm, ADDR(hook_unmap_page), hook_unmap_npages);
	return NULL;
}

static void hook_munmap_once(struct dmirror *dmirror, struct hmm_range *range)
{
	(void)dmirror;
	(void)range;
	if (hook_calls++ == 0)
		run_on_thread(munmap_main, NULL);
}

static void fault_racing_munmap_retries(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned long buf[8];

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 8, VM_READ | VM_WRITE);
	for (int i = 0; i < 8; i++)
		assert_int_equal(sim_cpu_write(sim.mm, ADDR(i), 100 + i), 0);

	/* The unmap hits the faulted range: retry, then -EFAULT. */
	hook_calls = 0;
	hook_unmap_page = 4;
	hook_unmap_npages = 4;
	dmirror_fault_hook = hook_munmap_once;
	expect_rc(dmirror_read(dmirror, ADDR(0), 8, buf), -EFAULT,
		  "read racing munmap");
	assert_int_equal(atomic_load(&dmirror->retries), 1);
	assert_int_equal(mirror_entries(dmirror, 0, 8), 0);

	/* An unmap elsewhere: the whole-space notifier still collides
	 * (any invalidation does), the retry succeeds. */
	hook_calls = 0;
	sim_mmap(sim.mm, ADDR(100), 1, VM_READ | VM_WRITE);
	hook_unmap_page = 100;
	hook_unmap_npages = 1;
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 4, buf), 0);
	assert_int_equal(atomic_load(&dmirror->retries), 2);
	for (int i = 0; i < 4; i++)
		assert_int_equal(buf[i], 100 + i);
	dmirror_fault_hook = NULL;

	dmirror_close(dmirror);
	expect_clean();
}

/*
 * HMM_RANGE_DEFAULT_TIMEOUT: a fault that collides every time gives up
 * with -EBUSY once the deadline passed, instead of spinning forever.
 */
static void hook_invalidate_always(struct dmirror *dmirror,
				   struct hmm_range *range)
{
	(void)dmirror;
	(void)range;
	hook_calls++;
	sim_mprotect(sim.mm, ADDR(500), 1, VM_READ | VM_WRITE);
}

static void fault_gives_up_after_timeout(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned long buf[4], t0;

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 4, VM_READ | VM_WRITE);
	sim_mmap(sim.mm, ADDR(500), 1, VM_READ | VM_WRITE);
	hmm_range_timeout = 30;
	hook_calls = 0;
	dmirror_fault_hook = hook_invalidate_always;
	t0 = jiffies;
	expect_rc(dmirror_read(dmirror, ADDR(0), 4, buf), -EBUSY,
		  "continuously invalidated fault");
	assert_true(jiffies - t0 >= 30);
	assert_true(hook_calls >= 1);
	assert_int_equal(atomic_load(&dmirror->retries), hook_calls);
	assert_int_equal(mirror_entries(dmirror, 0, 4), 0);

	/* The storm over, the same fault goes through. */
	dmirror_fault_hook = NULL;
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 4, buf), 0);
	dmirror_close(dmirror);
	expect_clean();
}

/*
 * anon_teardown: another thread unmaps half the buffer after a random
 * delay while the device reads it.  The read either succeeds with the
 * right data or fails; no stale entry, ever.
 */
static unsigned long seed_state;

static unsigned long rnd(void)
{
	seed_state ^= seed_state << 13;
	seed_state ^= seed_state >> 7;
	seed_state ^= seed_state << 17;
	return seed_state;
}

struct teardown_arg {
	atomic_int ready, go;
	unsigned long delay;
	_Atomic unsigned long go_ns, seen_ns; /* when go was set, seen */
};

static unsigned long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long)ts.tv_sec * 1000000000UL +
	       (unsigned long)ts.tv_nsec;
}

/* Busy-waits @ns nanoseconds: finer than any sleep. */
static void spin(unsigned long ns)
{
	unsigned long end = now_ns() + ns;

	while (now_ns() < end)
		;
}

/* How long a whole read takes here (sanitizers, valgrind: longer), and
 * how long the unmapping thread takes to see the go. */
static unsigned long read_ns = 10000, wake_ns = 10000;

static void *teardown_main(void *p)
{
	struct teardown_arg *arg = p;

	/* Both threads running when the race starts: no futex wake-up
	 * latency between them (a barrier's is longer than the race). */
	atomic_store(&arg->ready, 1);
	while (!atomic_load(&arg->go))
		sched_yield();
	atomic_store(&arg->seen_ns, now_ns());
	spin(arg->delay);
	sim_munmap(sim.mm, ADDR(32), 32);
	return NULL;
}

/* Widens the window in which an unmap makes the fault collide. */
static void hook_random_delay(struct dmirror *dmirror, struct hmm_range *range)
{
	(void)dmirror;
	(void)range;
	spin(rnd() % (read_ns / 2 + 1));
}

static void anon_teardown_race(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned long buf[64], seed = 1;
	int ok = 0, failed = 0, bad = 0;
	const char *env = getenv("ITN_TEST_SEED");

	(void)state;
	if (env)
		seed = strtoul(env, NULL, 0);
	/* splitmix64 of the seed: small seeds give xorshift a bad start. */
	seed_state = seed + 0x9e3779b97f4a7c15UL;
	seed_state = (seed_state ^ (seed_state >> 30)) * 0xbf58476d1ce4e5b9UL;
	seed_state = (seed_state ^ (seed_state >> 27)) * 0x94d049bb133111ebUL;
	seed_state = (seed_state ^ (seed_state >> 31)) | 1;
	print_message("seed %lu (ITN_TEST_SEED overrides)\n", seed);
	dmirror_fault_hook = hook_random_delay;

	for (int iter = 0; iter < 400; iter++) {
		/* The unmap lands anywhere from before the read to after it. */
		struct teardown_arg arg = { .delay =
						    rnd() % (2 * read_ns + 1) };
		unsigned long t0;
		unsigned long token = (unsigned long)iter << 16;
		pthread_t t;
		int ret;

		sim_mmap(sim.mm, ADDR(0), 64, VM_READ | VM_WRITE);
		for (int i = 0; i < 64; i++)
			assert_int_equal(
				sim_cpu_write(sim.mm, ADDR(i), token | i), 0);
		assert_int_equal(pthread_create(&t, NULL, teardown_main, &arg),
				 0);
		while (!atomic_load(&arg.ready))
			sched_yield();
		atomic_store(&arg.go_ns, now_ns());
		atomic_store(&arg.go, 1);
		spin(rnd() % (2 * wake_ns + 1));
		t0 = now_ns();
		ret = dmirror_read(dmirror, ADDR(0), 64, buf);
		if (ret == 0)
			read_ns = (7 * read_ns + (now_ns() - t0)) / 8;
		pthread_join(t, NULL);
		wake_ns = (7 * wake_ns + atomic_load(&arg.seen_ns) -
			   atomic_load(&arg.go_ns)) /
			  8;
		if (ret == 0) {
			ok++;
			for (int i = 0; i < 64; i++)
				bad += buf[i] != (token | i);
		} else {
			failed++;
			bad += ret != -EFAULT;
		}
		sim_munmap(sim.mm, ADDR(0), 64);
		assert_int_equal(mirror_entries(dmirror, 0, 64), 0);
	}
	dmirror_fault_hook = NULL;
	print_message("reads: %d whole, %d failed; %lu retries; ~%lu ns each\n",
		      ok, failed, atomic_load(&dmirror->retries), read_ns);
	print_message("unmapper wakes in ~%lu ns\n", wake_ns);
	assert_int_equal(bad, 0);
	dmirror_close(dmirror);
	expect_clean();
}

/* hmm2.snapshot: holes, empty, zero, read-only and writable pages. */
static void snapshot(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned char perm[150];
	unsigned long buf[1];

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 150, VM_READ | VM_WRITE);
	sim_munmap(sim.mm, ADDR(0), 1); /* hole */
	/* page 1: mapped, never touched */
	assert_int_equal(sim_cpu_read(sim.mm, ADDR(2), buf), 0); /* zero */
	assert_int_equal(sim_cpu_write(sim.mm, ADDR(3), 3), 0);
	sim_mprotect(sim.mm, ADDR(3), 1, VM_READ); /* read-only */
	assert_int_equal(sim_cpu_write(sim.mm, ADDR(4), 4), 0); /* writable */
	assert_int_equal(sim_cpu_write(sim.mm, ADDR(149), 9), 0);

	memset(perm, 0xaa, sizeof(perm));
	assert_int_equal(dmirror_snapshot(dmirror, ADDR(0), 150, perm), 0);
	assert_int_equal(perm[0], HMM_DMIRROR_PROT_ERROR);
	assert_int_equal(perm[1], HMM_DMIRROR_PROT_NONE);
	assert_int_equal(perm[2],
			 HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ);
	assert_int_equal(perm[3], HMM_DMIRROR_PROT_READ);
	assert_int_equal(perm[4], HMM_DMIRROR_PROT_WRITE);
	for (int i = 5; i < 149; i++)
		assert_int_equal(perm[i], HMM_DMIRROR_PROT_NONE);
	assert_int_equal(perm[149], HMM_DMIRROR_PROT_WRITE);
	/* A snapshot maps nothing and faults nothing. */
	assert_int_equal(mirror_entries(dmirror, 0, 150), 0);

	/* Three chunks, three temporary notifiers, all removed: an
	 * invalidation of the range reaches none of them. */
	assert_int_equal(atomic_load(&snapshot_notifiers), 0);
	sim_munmap(sim.mm, ADDR(0), 150);
	assert_int_equal(atomic_load(&snapshot_invalidations), 0);

	dmirror_close(dmirror);
	expect_clean();
}

/* A snapshot chunk that collides with an unmap is taken again. */
static void snapshot_retries_on_invalidation(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	unsigned char perm[8];

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 8, VM_READ | VM_WRITE);
	for (int i = 0; i < 8; i++)
		assert_int_equal(sim_cpu_write(sim.mm, ADDR(i), i), 0);

	hook_calls = 0;
	hook_unmap_page = 6;
	hook_unmap_npages = 2;
	dmirror_fault_hook = hook_munmap_once;
	assert_int_equal(dmirror_snapshot(dmirror, ADDR(0), 8, perm), 0);
	dmirror_fault_hook = NULL;
	/* The temporary notifier saw the unmap, and the retry saw the hole. */
	assert_int_equal(atomic_load(&snapshot_invalidations), 1);
	assert_int_equal(atomic_load(&dmirror->retries), 1);
	for (int i = 0; i < 6; i++)
		assert_int_equal(perm[i], HMM_DMIRROR_PROT_WRITE);
	assert_int_equal(perm[6], HMM_DMIRROR_PROT_ERROR);
	assert_int_equal(perm[7], HMM_DMIRROR_PROT_ERROR);

	dmirror_close(dmirror);
	expect_clean();
}

/*
 * Non-blocking invalidation (the OOM reaper): with the mirror's lock
 * held elsewhere, start_nonblock is -EAGAIN, _end must not be called,
 * and the range is left alone; the active count stays balanced (a later
 * fault does not block, and the space can be freed).
 */
static void *oom_reap_main(void *arg)
{
	bool *reaped = arg;

	*reaped = sim_oom_reap(sim.mm, ADDR(0), ADDR(8));
	return NULL;
}

static void nonblock_invalidation(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	struct mmu_notifier_range range;
	unsigned long buf[8];
	bool reaped = true;

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 8, VM_READ | VM_WRITE);
	for (int i = 0; i < 8; i++)
		assert_int_equal(sim_cpu_write(sim.mm, ADDR(i), 10 + i), 0);
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 8, buf), 0);

	/* The driver is busy (its lock is held by this thread). */
	mutex_lock(&dmirror->mutex);
	mmu_notifier_range_init(&range, MMU_NOTIFY_CLEAR,
				MMU_NOTIFIER_RANGE_BLOCKABLE, sim.mm, ADDR(0),
				ADDR(8));
	expect_rc(mmu_notifier_invalidate_range_start_nonblock(&range), -EAGAIN,
		  "start_nonblock, driver busy");
	assert_false(mmu_notifier_range_blockable(&range));
	/* ...so no _end() here.  The reaper on another thread skips. */
	run_on_thread(oom_reap_main, &reaped);
	mutex_unlock(&dmirror->mutex);
	assert_false(reaped);
	assert_int_equal(atomic_load(&dmirror->refused), 2);
	/* Nothing was torn down, on either side. */
	assert_int_equal(mirror_entries(dmirror, 0, 8), 8);
	for (int i = 0; i < 8; i++)
		assert_true(atomic_load(&sim.pte[i]) & _PAGE_PRESENT);

	/* Balanced: the mirror's next fault cycle does not wait, and the
	 * device still reads the right data. */
	sim_mmap(sim.mm, ADDR(20), 1, VM_READ | VM_WRITE);
	assert_int_equal(dmirror_read(dmirror, ADDR(20), 1, buf), 0);

	/* The driver idle, the reaper goes through. */
	run_on_thread(oom_reap_main, &reaped);
	assert_true(reaped);
	assert_int_equal(atomic_load(&dmirror->last_event), MMU_NOTIFY_CLEAR);
	assert_int_equal(mirror_entries(dmirror, 0, 8), 0);
	/* Reaped memory reads back as new, zeroed memory. */
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 8, buf), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(buf[i], 0);

	dmirror_close(dmirror);
	expect_clean();
	/* hmm_teardown frees the space: -EBUSY if an invalidation were
	 * still counted as running. */
}

/* The driver ignores migrations it owns (MMU_NOTIFY_MIGRATE, owner). */
static void migrate_owned_by_device_is_ignored(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	struct mmu_notifier_range range;
	unsigned long buf[4];

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 4, VM_READ | VM_WRITE);
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 4, buf), 0);

	mmu_notifier_range_init_owner(&range, MMU_NOTIFY_MIGRATE, 0, sim.mm,
				      ADDR(0), ADDR(4), &device0);
	mmu_notifier_invalidate_range_start(&range);
	mmu_notifier_invalidate_range_end(&range);
	assert_int_equal(mirror_entries(dmirror, 0, 4), 4);

	mmu_notifier_range_init_owner(&range, MMU_NOTIFY_MIGRATE, 0, sim.mm,
				      ADDR(0), ADDR(4), &device1);
	mmu_notifier_invalidate_range_start(&range);
	mmu_notifier_invalidate_range_end(&range);
	assert_int_equal(mirror_entries(dmirror, 0, 4), 0);

	dmirror_close(dmirror);
	expect_clean();
}

/*
 * The process exits with the device still open: exit_mmap() calls the
 * notifiers' release (MMU_NOTIFY_RELEASE over the whole space), then
 * unmaps everything; the notifier stays inserted until the device is
 * closed; nothing new can be inserted.
 */
static void release_at_teardown(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);
	struct mmu_interval_notifier mni;
	unsigned long buf[8];
	unsigned long inv;
	int err = 0;

	(void)state;
	sim_mmap(sim.mm, ADDR(0), 8, VM_READ | VM_WRITE);
	assert_int_equal(dmirror_read(dmirror, ADDR(0), 8, buf), 0);
	assert_int_equal(mirror_entries(dmirror, 0, 8), 8);

	inv = atomic_load(&dmirror->invalidations);
	mmput(sim.mm);
	assert_int_equal(atomic_load(&sim.mm_users), 0);
	/* The release came first, then the unmap of everything. */
	assert_true(atomic_load(&dmirror->invalidations) >= inv + 2);
	assert_int_equal(atomic_load(&dmirror->last_event), MMU_NOTIFY_UNMAP);
	assert_int_equal(mirror_entries(dmirror, 0, SIM_PAGES), 0);

	expect_rc(mmu_interval_notifier_insert(&mni, sim.mm, 0, PAGE_SIZE,
					       &dmirror_min_ops),
		  -ESHUTDOWN, "insert after exit");
	assert_null(dmirror_open(&device1, sim.mm, &err));
	expect_rc(err, -ESHUTDOWN, "open after exit");
	/* The device can no longer fault (mmget_not_zero() fails). */
	assert_int_equal(dmirror_fault(dmirror, ADDR(0), ADDR(1), false), 0);
	assert_int_equal(mirror_entries(dmirror, 0, 1), 0);

	dmirror_close(dmirror);
	expect_clean();
}

/* The release event itself, as a driver sees it. */
static void release_event_covers_the_space(void **state)
{
	struct dmirror *dmirror = open_mirror(&device0);

	(void)state;
	assert_int_equal(itn_space_release(sim.mm), 0);
	assert_int_equal(atomic_load(&dmirror->last_event), MMU_NOTIFY_RELEASE);
	assert_int_equal(atomic_load(&dmirror->last_start), 0);
	assert_int_equal(atomic_load(&dmirror->last_end), ULONG_MAX);
	assert_int_equal(atomic_load(&dmirror->invalidations), 1);
	atomic_store(&sim.mm_users, 0); /* exited: no second release */
	dmirror_close(dmirror);
	expect_clean();
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, hmm_setup, hmm_teardown)
	const struct CMUnitTest tests[] = {
		T(open_close_and_insert_errors),
		T(insert_twice_is_ebusy),
		T(anon_read),
		T(anon_write),
		T(munmap_invalidates_mirror),
		T(double_map),
		T(fault_racing_munmap_retries),
		T(fault_gives_up_after_timeout),
		T(anon_teardown_race),
		T(snapshot),
		T(snapshot_retries_on_invalidation),
		T(nonblock_invalidation),
		T(migrate_owned_by_device_is_ignored),
		T(release_at_teardown),
		T(release_event_covers_the_space),
	};
#undef T

	/* Never return the failure count: 77 reads as SKIP in meson. */
	return cmocka_run_group_tests_name("hmm-port", tests, NULL, NULL) ?
		       EXIT_FAILURE :
		       EXIT_SUCCESS;
}
