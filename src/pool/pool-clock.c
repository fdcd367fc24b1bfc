/* The clock of the pools' queue-wait statistics.
 *
 * Design notes.
 *
 * Every accepted item is stamped on the scheduling thread, and the loop
 * thread schedules most of them. There uv_hrtime() cost 20 ns a task with
 * the workers held back, and 30-50 ns while they run (the vDSO orders its
 * TSC read after the loads in flight, cache misses there): a tenth of the
 * pool's cost on the loop thread (bench/README.md). Where the TSC is
 * invariant (x86-64, CPUID 0x80000007 EDX bit 8: one rate on every CPU,
 * in every power state) a stamp is a bare TSC read, and waits are kept in
 * ticks. They become nanoseconds only when stats are read, at a rate
 * measured against uv_hrtime() since an anchor taken at the first pool:
 * a converted wait is as exact as the clock reads themselves (tens of
 * ns), so the statistic loses nothing. Elsewhere a tick is a uv_hrtime()
 * nanosecond.
 */
#include "pool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define HAVE_TSC 1
__extension__ typedef unsigned __int128 u128;
#endif

static uv_once_t once = UV_ONCE_INIT;
static bool use_tsc;                  /* set once, before any stamp */
static uint64_t anchor_ns, anchor_tk; /* uv_hrtime() and ticks, together */

static void clock_init(void) {
#ifdef HAVE_TSC
  unsigned a, b, c, d;
  use_tsc = __get_cpuid(0x80000007u, &a, &b, &c, &d) && (d & (1u << 8));
#endif
  anchor_ns = uv_hrtime();
  anchor_tk = pbl__pool_ticks();
}

void pbl__pool_clock_init(void) {
  uv_once(&once, clock_init);
}

uint64_t pbl__pool_ticks(void) {
#ifdef HAVE_TSC
  if (use_tsc)
    return __builtin_ia32_rdtsc();
#endif
  return uv_hrtime();
}

uint64_t pbl__pool_ticks_ns(uint64_t ticks) {
#ifdef HAVE_TSC
  if (use_tsc) {
    uint64_t ns = uv_hrtime() - anchor_ns;
    uint64_t tk = pbl__pool_ticks() - anchor_tk;
    if (tk == 0)
      return 0;
    u128 v = (u128)ticks * ns / tk;
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
  }
#endif
  return ticks;
}
