/* Mattes mutual information (cpu_mi.c semantics; bins, kernels and gradient
 * formulas there).
 *
 * Pass 1 (histogram): per voxel the warp, the fixed bin and the four cubic
 * B-spline weights of the moving value, each rounded to a fixed-point integer
 * (floor(w * 2^S + 0.5), the CPU's rounding) and added into a per-block joint
 * histogram in shared memory with native 32-bit integer atomics on 16-bit
 * halves (cuda_mi_hist.cuh: why, and the overflow bound); blocks then add
 * their non-zero bins into the global 64-bit histogram. Integer addition is
 * associative, so the histogram - and with it the MI value - is bitwise
 * identical run to run, for any schedule, and equal to the CPU's (the weights
 * are computed with the same operations, see cuda_common.cuh). Bins too many
 * for shared memory go straight to global 64-bit atomics.
 * Host: the B x B histogram comes back (8 KB at 32 bins); MI and the log table
 * L(i,j) = log(p / pm) are computed by the same code as the CPU's, and L goes
 * back to the device.
 * Pass 2 (gradient, when wanted): recompute the warp and W's gradient,
 * dL/dW = -(1/(N Dm)) sum_t L(i, j_t) w_t', grad_u and affine partials.
 * Both passes take the warp from cuda_mi_sample.cuh's fast sample where the
 * moving grid allows (bitwise metric_warp, fewer instructions), else from
 * metric_warp itself.
 * No per-voxel scratch: B^2 histogram + B^2 log table + 12 doubles per block.
 * 16-bit images (gr_metric_spec.fixed_u16 / moving_u16): the fast sample
 * reads F and the eight moving corners as 16 bit (2 B instead of 4 per read,
 * the passes' F + M traffic halved: 52 -> 44 B/voxel with the field
 * gradient), converted by u16_value so the result is bitwise the float call's
 * on the rounded images. A uniform branch, not a template parameter: the
 * corners are loaded together in either branch and their use follows the
 * join, and ptxas gives the float kernels the same registers within 8 and
 * no new spills. metric_warp (other grids) reads float only; cuda_metric.cu
 * then hands the passes float copies.
 *
 * H100, 512^3, against the 64-bit-atomic version (same card and call): bench
 * pair histogram pass 5.74 -> 1.94 ms, gradient pass 3.21 -> 2.33 ms; bench_gpu
 * MI metric op 9.00 -> 4.33 ms. */
#include <math.h>
#include <string.h>
#include <vector>
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"
#include "cuda_mi_rule.cuh"
#include "cuda_mi_hist.cuh"
#include "cuda_mi_sample.cuh"

namespace grcu {

constexpr size_t kMiSmemLimit = 48 * 1024; /* per-block tables above this go to global memory */

/* The warp's weights straight into the global histogram (bins too many for shared
 * memory): 64-bit atomics, once per warp when all 32 lanes share the bins. */
__device__ __forceinline__ void mi_global_warp_add(unsigned long long *__restrict__ ghist, int base,
                                                   const unsigned wt[4]) {
  const int base0 = __shfl_sync(kFullMask, base, 0);
  if (__all_sync(kFullMask, base == base0 && base0 >= 0)) {
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      unsigned long long x = wt[t];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(kFullMask, x, off);
      if ((threadIdx.x & 31) == 0 && x) atomicAdd(ghist + base0 + t, x);
    }
  } else if (base >= 0) {
#pragma unroll
    for (int t = 0; t < 4; ++t)
      if (wt[t]) atomicAdd(ghist + base + t, (unsigned long long)wt[t]);
  }
}

/* The z loop's streamed inputs: PF loads voxel k + gridDim.z's while voxel k is
 * computed (its DRAM latency then overlaps a whole iteration), else voxel k's
 * at the top of its iteration. Only the fast sample takes them.
 * The histogram pass prefetches (H100 512^3: 2.24 -> 1.97 ms on the rough
 * bench pair, 2.47 -> 2.27 ms on a smooth one, at the same 64 registers). The
 * gradient pass does not: there the prefetch costs 10 registers (48 -> 58, 5
 * -> 4 blocks per SM) and measured -0.14 / -0.10 ms on those pairs, within the
 * run-to-run spread, but +0.18 ms on a masked pair (it loads the displacement
 * of masked-out voxels too). */
template <bool FAST, bool PF>
struct MiStreamer {
  MiVoxel next;
  __device__ __forceinline__ MiStreamer(const WarpMap &m, const MetricImages &im, bool active, long long v) {
    next = MiVoxel{0.0f, 0.0f, 0.0f, 0.0f};
    if (FAST && PF && active && blockIdx.z < m.f.n[2]) next = mi_voxel_load(m, im, v);
  }
  /* Voxel (k, v)'s inputs. */
  __device__ __forceinline__ MiVoxel take(const WarpMap &m, const MetricImages &im, bool active, long long k,
                                          long long v, long long vstep) {
    MiVoxel x = next;
    if (FAST && active) {
      if (!PF) x = mi_voxel_load(m, im, v);
      else if (k + gridDim.z < m.f.n[2]) next = mi_voxel_load(m, im, v + vstep);
    }
    return x;
  }
};

/* Histogram pass. SMEM: the block's histogram in shared memory (cuda_mi_hist.cuh),
 * else 64-bit global atomics. FAST: mi_sample_fast (cuda_mi_sample.cuh), else metric_warp. */
template <bool SMEM, bool FAST>
__global__ void __launch_bounds__(kBlock, 4) /* 64 registers (4 blocks per SM); unbounded, the prefetch takes 80 */
    mi_hist_kernel(const WarpMap m, const MiGrid q, const MetricImages im, const MiSetup s,
                   unsigned long long *__restrict__ ghist, unsigned long long *__restrict__ gcount) {
  extern __shared__ unsigned sh_count[];
  const int B = s.bins, bb = B * B;
  const MiSharedHist h = {sh_count, sh_count + bb};
  if (SMEM) {
    for (int t = threadIdx.x + kBX * threadIdx.y; t < 2 * bb; t += kBlock) sh_count[t] = 0u;
    __syncthreads();
  }
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  const double di = (double)i, dj = (double)j, dkstep = (double)gridDim.z;
  const long long vstep = (long long)gridDim.z * m.f.nxy;
  long long v = ((long long)blockIdx.z * m.f.n[1] + j) * m.f.n[0] + i;
  double dk = (double)blockIdx.z;
  MiStreamer<FAST, true> in(m, im, active, v);
  unsigned long long cnt = 0;
  int since_flush = 0;
  /* Every thread runs the same z iterations (warp votes and block barriers below). */
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z, v += vstep, dk += dkstep) {
    const MiVoxel x = in.take(m, im, active, k, v, vstep);
    double w = 0.0;
    const bool valid = active && mi_sample<FAST, false>(m, q, im, i, j, k, di, dj, dk, v, x, &w, nullptr);
    int base = -1;
    unsigned wt[4] = {0u, 0u, 0u, 0u};
    if (valid) {
      bool inside;
      const double xi = mi_xi(s.m, w, &inside);
      const double fl = floor(xi);
      double wd[4];
      mi_cubic(dsub(xi, fl), wd);
      /* floor(w 2^S + 0.5) as the CPU: the product by 2^S is exact, so one FMA rounds
       * the same sum; w <= 2/3 and S <= 32 keep it below 2^32 */
#pragma unroll
      for (int t = 0; t < 4; ++t) wt[t] = (unsigned)__fma_rn(wd[t], s.scale, 0.5);
      base = mi_fixed_bin(s, mi_fixed_value<FAST>(im, v, x)) * B + ((int)fl - 1);
      ++cnt;
    }
    if (SMEM) {
      mi_hist_warp_add(h, base, wt);
      if (++since_flush == kMiFlushZ) {
        since_flush = 0;
        __syncthreads();
        mi_hist_flush(h, bb, ghist);
        __syncthreads();
      }
    } else {
      mi_global_warp_add(ghist, base, wt);
    }
  }
  warp_count_add(gcount, cnt);
  if (SMEM) {
    __syncthreads();
    mi_hist_flush(h, bb, ghist);
  }
}

template <bool GRAD_U, bool AFF, bool SMEM, bool FAST>
__global__ void __launch_bounds__(kBlock) mi_grad_kernel(const WarpMap m, const MiGrid q, const MetricImages im,
                                                         const MiSetup s, const double *__restrict__ gL, double coef,
                                                         double *__restrict__ part) {
  extern __shared__ double sh_L[];
  const int B = s.bins, bb = B * B;
  const double *L = gL;
  if (SMEM) {
    const int tid = threadIdx.x + kBX * threadIdx.y;
    for (int t = tid; t < bb; t += kBlock) sh_L[t] = gL[t];
    __syncthreads();
    L = sh_L;
  }
  double acc[12];
#pragma unroll
  for (int t = 0; t < 12; ++t) acc[t] = 0.0;
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  const double di = (double)i, dj = (double)j, dkstep = (double)gridDim.z;
  const long long vstep = (long long)gridDim.z * m.f.nxy;
  long long v = ((long long)blockIdx.z * m.f.n[1] + j) * m.f.n[0] + i;
  double dk = (double)blockIdx.z;
  MiStreamer<FAST, false> in(m, im, active, v);
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z, v += vstep, dk += dkstep) {
    const MiVoxel x = in.take(m, im, active, k, v, vstep);
    if (!active) continue;
    double w, g[3];
    if (!mi_sample<FAST, true>(m, q, im, i, j, k, di, dj, dk, v, x, &w, g)) {
      if (GRAD_U) grad_u_zero(im.grad_u, m.f.nvox, v);
      continue;
    }
    bool inside;
    const double xi = mi_xi(s.m, w, &inside);
    double dw = 0.0;
    if (inside) {
      const double fl = floor(xi);
      double dt[4];
      mi_cubic_deriv(dsub(xi, fl), dt);
      const double *Lr = L + mi_fixed_bin(s, mi_fixed_value<FAST>(im, v, x)) * B + ((int)fl - 1);
      dw = dmul(coef, dadd(dadd(dadd(dmul(Lr[0], dt[0]), dmul(Lr[1], dt[1])), dmul(Lr[2], dt[2])), dmul(Lr[3], dt[3])));
    }
    const double d[3] = {dmul(dw, g[0]), dmul(dw, g[1]), dmul(dw, g[2])};
    if (GRAD_U) grad_u_store(m, im.grad_u, v, d);
    if (AFF) {
      double xp[3];
      metric_xphys(m, im.disp, i, j, k, v, xp);
      affine_accum(acc, d, xp);
    }
  }
  if (AFF) block_sum_to_partials<12>(acc, part);
}

/* The fast sample reads 16-bit images; metric_warp (other grids) reads float only. */
bool mi_reads_u16(const MetricCall &c) {
  MiGrid q;
  return mi_grid_make(c.map.m, &q);
}

gr_status metric_mi(const MetricCall &c, gr_metric_result *res) {
  MiSetup s;
  gr_status st = gr_mi_setup_make(c.spec, c.map.f.nvox, "cuda", &s);
  if (st != GR_OK) return st;
  /* The kernels hold a voxel's fixed-point weight (<= 2/3 * 2^S) in 32 bits. */
  if (s.shift > 32) return gr_error(GR_ERR_INVALID_ARG, "cuda MI: fixed-point scale 2^%d above 2^32", s.shift);
  gr_backend *be = c.be;
  cudaStream_t stream = impl_of(be)->stream;
  const int B = s.bins;
  const size_t bb = (size_t)B * B;
  const dim3 grid = voxel_grid(c.map.f.n), block(kBX, kBY);
  const long long nb = grid_blocks(grid);
  /* One scratch block: histogram (bb) + count (1) as u64, log table (bb) and partials (nb*12) as double. */
  const size_t bytes = (bb + 1) * 8 + bb * 8 + (size_t)nb * 12 * 8;
  unsigned char *mem = (unsigned char *)scratch_alloc(be, bytes, "MI histogram, log table and partials");
  if (!mem) return GR_ERR_NOMEM;
  unsigned long long *d_hist = (unsigned long long *)mem, *d_count = d_hist + bb;
  double *d_L = (double *)(mem + (bb + 1) * 8), *d_part = d_L + bb;

  std::vector<int64_t> hist(bb + 1);
  const bool smem_hist = bb * 8 <= kMiSmemLimit;
  MiGrid q = {};
  const bool fast = mi_grid_make(c.map.m, &q);
  if (!fast && (c.im.fixed16 || c.im.moving16)) {
    scratch_free(be, mem);
    return gr_error(GR_ERR_INTERNAL, "cuda MI: 16-bit images reached the generic sample (cuda_metric.cu dequantises "
                                     "them for it)");
  }
  cudaError_t e = cudaMemsetAsync(d_hist, 0, (bb + 1) * 8, stream);
  if (e == cudaSuccess) {
    const size_t shm = smem_hist ? bb * 8 : 0;
    if (smem_hist && fast) mi_hist_kernel<true, true><<<grid, block, shm, stream>>>(c.map, q, c.im, s, d_hist, d_count);
    else if (smem_hist) mi_hist_kernel<true, false><<<grid, block, shm, stream>>>(c.map, q, c.im, s, d_hist, d_count);
    else if (fast) mi_hist_kernel<false, true><<<grid, block, 0, stream>>>(c.map, q, c.im, s, d_hist, d_count);
    else mi_hist_kernel<false, false><<<grid, block, 0, stream>>>(c.map, q, c.im, s, d_hist, d_count);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpyAsync(hist.data(), d_hist, (bb + 1) * 8, cudaMemcpyDeviceToHost, stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) {
    scratch_free(be, mem);
    return device_error(e, "MI histogram pass");
  }
  const int64_t count = hist[bb];
  res->n_valid = count;
  if (count == 0) {
    scratch_free(be, mem);
    return metric_empty(c);
  }
  std::vector<double> L(bb);
  res->value = -gr_mi_value(hist.data(), B, L.data());

  const bool gu = c.im.grad_u != nullptr;
  if (gu || c.want_affine) {
    const double coef = -s.m.inv_d / (double)count; /* dL/dW = -(1/(N Dm)) sum L w' */
    const bool smem_L = bb * 8 <= kMiSmemLimit;
    const size_t shm = smem_L ? bb * 8 : 0;
    e = cudaMemcpyAsync(d_L, L.data(), bb * 8, cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) {
#define GRCU_MI_GRAD(G, A)                                                                                 \
  do {                                                                                                     \
    if (smem_L && fast) mi_grad_kernel<G, A, true, true><<<grid, block, shm, stream>>>(c.map, q, c.im, s, d_L, coef, d_part); \
    else if (smem_L) mi_grad_kernel<G, A, true, false><<<grid, block, shm, stream>>>(c.map, q, c.im, s, d_L, coef, d_part);   \
    else if (fast) mi_grad_kernel<G, A, false, true><<<grid, block, 0, stream>>>(c.map, q, c.im, s, d_L, coef, d_part);       \
    else mi_grad_kernel<G, A, false, false><<<grid, block, 0, stream>>>(c.map, q, c.im, s, d_L, coef, d_part);                \
  } while (0)
      if (gu && c.want_affine) GRCU_MI_GRAD(true, true);
      else if (gu) GRCU_MI_GRAD(true, false);
      else GRCU_MI_GRAD(false, true);
#undef GRCU_MI_GRAD
      e = cudaGetLastError();
    }
    if (e != cudaSuccess) st = device_error(e, "MI gradient pass");
    else if (c.want_affine) st = reduce_partials(be, d_part, nb, 12, res->grad_affine);
    else st = GR_OK; /* L's pageable host copy was staged before cudaMemcpyAsync returned */
  }
  scratch_free(be, mem);
  return st;
}

}  // namespace grcu
