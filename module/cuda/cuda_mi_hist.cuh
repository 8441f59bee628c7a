/* The MI histogram pass's per-block joint histogram in shared memory.
 *
 * Why split counters: a 64-bit atomicAdd on shared memory has no native
 * instruction on sm_90; it compiles to a load + compare-and-swap loop
 * (ATOMS.CAST.SPIN.64) that retries whenever another lane or warp wrote the
 * bin in between, and that loop bounded the pass. The 32-bit add is native
 * (ATOMS.ADD). Each voxel's fixed-point weight x is < 2^32 (weights <= 2/3,
 * scale 2^S with S <= 32: gr_mi_setup_make), so bin q is kept as two 32-bit
 * counters, lo[q] += x mod 2^16 and hi[q] += x >> 16, and its sum is
 * hi * 2^16 + lo: integer arithmetic, so the bins are exactly the 64-bit
 * sums of before, bitwise, in any order.
 *
 * Overflow: every add puts at most n * (2^16 - 1) into lo and at most
 * n * 2^16 into hi for the n voxels it carries, so a counter stays below 2^32
 * while the block has added fewer than 2^16 voxels since the last flush. The
 * pass flushes (bins into the global 64-bit histogram, counters to zero) every
 * kMiFlushZ z-iterations of its 256 threads: 2^15 voxels.
 *
 * Warp aggregation: a warp whose 32 lanes share one base bin (flat
 * background) adds once, with REDUX sums of the 16-bit halves, instead of 32
 * same-address atomics; other warps add per lane. (Summing runs of equal bins
 * with a segmented shuffle reduction was slower: 2.36 -> 2.37..2.88 ms on the
 * rough bench pair, 2.65 -> 2.72..2.83 ms on a smooth pair, H100 512^3.) */
#ifndef GIGAREG_CUDA_MI_HIST_CUH
#define GIGAREG_CUDA_MI_HIST_CUH

#include "cuda_common.cuh"
#include "cuda_reduce.cuh" /* kFullMask */

namespace grcu {

constexpr int kMiFlushZ = 128;
static_assert((unsigned long long)kBlock * kMiFlushZ * 0x10000ull < (1ull << 32),
              "MI shared histogram counters could overflow between flushes");

/* lo = counters [0, bb), hi = [bb, 2 bb) of the dynamic shared memory. */
struct MiSharedHist {
  unsigned *lo, *hi;
};

/* Adds a + 2^16 b to bin q (a, b: the halves of one or more voxels' weights).
 * Unconditional: zero halves are rare, and a skip would branch around each atomic. */
__device__ __forceinline__ void mi_hist_add(const MiSharedHist &h, int q, unsigned a, unsigned b) {
  atomicAdd(h.lo + q, a);
  atomicAdd(h.hi + q, b);
}

/* The warp's four weights per lane into bins base .. base + 3 (base < 0: no voxel). */
__device__ __forceinline__ void mi_hist_warp_add(const MiSharedHist &h, int base, const unsigned wt[4]) {
  const int lane = threadIdx.x & 31;
  const int left = __shfl_up_sync(kFullMask, base, 1);
  if (__all_sync(kFullMask, lane == 0 || left == base)) { /* one run: REDUX sums (< 2^21 per half) */
    if (base < 0) return;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const unsigned a = __reduce_add_sync(kFullMask, wt[t] & 0xFFFFu), b = __reduce_add_sync(kFullMask, wt[t] >> 16);
      if (lane == 0) mi_hist_add(h, base + t, a, b);
    }
    return;
  }
  if (base < 0) return;
#pragma unroll
  for (int t = 0; t < 4; ++t) mi_hist_add(h, base + t, wt[t] & 0xFFFFu, wt[t] >> 16);
}

/* Block-wide (between barriers): bins into the global histogram, counters to zero. */
__device__ __forceinline__ void mi_hist_flush(const MiSharedHist &h, int bb, unsigned long long *__restrict__ ghist) {
  for (int q = threadIdx.x + kBX * threadIdx.y; q < bb; q += kBlock) {
    const unsigned a = h.lo[q], b = h.hi[q];
    if (a | b) {
      atomicAdd(ghist + q, ((unsigned long long)b << 16) + a);
      h.lo[q] = 0u;
      h.hi[q] = 0u;
    }
  }
}

}  // namespace grcu
#endif
