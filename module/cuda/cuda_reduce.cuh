/* Deterministic reductions of the CUDA backend.
 *
 * Floating-point sums never go through atomics: each block reduces its
 * threads' values with a fixed shuffle tree and a fixed pass over its warps,
 * and writes one partial per block; reduce_partials (cuda_reduce.cu) then sums
 * the partials of all blocks in block order with a fixed tree. The grid shape
 * is a function of the problem size only (cuda_common.cuh), so two runs give
 * bitwise identical sums. Integer sums (counts, MI histogram) and min/max are
 * exact and order-free, so those may use atomics. */
#ifndef GIGAREG_CUDA_REDUCE_CUH
#define GIGAREG_CUDA_REDUCE_CUH

#include "cuda_common.cuh"

namespace grcu {

constexpr unsigned kFullMask = 0xffffffffu;

/* Sum K values over the block and write them to part[block * K + q]. Every
 * thread of the block must call this (it synchronises). Block size <= 1024. */
template <int K>
__device__ __forceinline__ void block_sum_to_partials(double (&v)[K], double *__restrict__ part) {
  __shared__ double sh[32][K];
  const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int nthreads = blockDim.x * blockDim.y * blockDim.z;
  const int lane = tid & 31, warp = tid >> 5, nwarps = (nthreads + 31) >> 5;
#pragma unroll
  for (int q = 0; q < K; ++q) {
    double x = v[q];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(kFullMask, x, off);
    if (lane == 0) sh[warp][q] = x;
  }
  __syncthreads();
  if (tid < K) {
    double s = 0.0;
    for (int w = 0; w < nwarps; ++w) s += sh[w][tid];
    const long long b = blockIdx.x + (long long)gridDim.x * (blockIdx.y + (long long)gridDim.y * blockIdx.z);
    part[b * K + tid] = s;
  }
  __syncthreads(); /* sh may be reused by a following call */
}

/* Warp-aggregated 64-bit integer add into a device counter. */
__device__ __forceinline__ void warp_count_add(unsigned long long *counter, unsigned long long mine) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) mine += __shfl_down_sync(kFullMask, mine, off);
  if ((threadIdx.x & 31) == 0 && mine) atomicAdd(counter, mine);
}

/* Host: sum the K-vectors part[0..nblocks-1] (block order, fixed tree) into
 * host_out[0..K-1]. Waits for the stream. */
gr_status reduce_partials(gr_backend *be, const double *part, long long nblocks, int K, double *host_out);

/* Host: same, also fetching `extra_bytes` of device memory (e.g. an integer
 * counter) in the same synchronisation. */
gr_status reduce_partials_and_fetch(gr_backend *be, const double *part, long long nblocks, int K, double *host_out,
                                    void *extra_host, const void *extra_dev, size_t extra_bytes);

}  // namespace grcu
#endif
