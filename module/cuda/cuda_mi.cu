/* Mattes mutual information (cpu_mi.c semantics; bins, kernels and gradient
 * formulas there).
 *
 * Pass 1 (histogram): per voxel the shared warp, the fixed bin and the four
 * cubic B-spline weights of the moving value, each rounded to a 64-bit
 * fixed-point integer (floor(w * 2^S + 0.5), the CPU's rounding) and added into a
 * per-block joint histogram in shared memory with 64-bit integer atomics;
 * blocks then add their non-zero bins into the global histogram, again with
 * integer atomics. Integer addition is associative, so the histogram - and
 * with it the MI value - is bitwise identical run to run, for any schedule,
 * and equal to the CPU's (the weights are computed with the same operations,
 * see cuda_common.cuh). Warps whose 32 voxels all fall in the same bins (flat
 * background) are summed with shuffles first and added once, which removes the
 * worst atomic contention.
 * Host: the B x B histogram comes back (8 KB at 32 bins); MI and the log table
 * L(i,j) = log(p / pm) are computed by the same code as the CPU's, and L goes
 * back to the device.
 * Pass 2 (gradient, when wanted): recompute the warp and W's gradient,
 * dL/dW = -(1/(N Dm)) sum_t L(i, j_t) w_t', grad_u and affine partials.
 * No per-voxel scratch: B^2 histogram + B^2 log table + 12 doubles per block. */
#include <math.h>
#include <string.h>
#include <vector>
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"
#include "cuda_mi_rule.cuh"

namespace grcu {

constexpr size_t kMiSmemLimit = 48 * 1024; /* per-block tables above this go to global memory */

template <bool SMEM>
__global__ void __launch_bounds__(kBlock) mi_hist_kernel(const WarpMap m, const MetricImages im, const MiSetup s,
                                                         unsigned long long *__restrict__ ghist,
                                                         unsigned long long *__restrict__ gcount) {
  extern __shared__ unsigned long long sh_hist[];
  const int B = s.bins, bb = B * B;
  const int tid = threadIdx.x + kBX * threadIdx.y;
  unsigned long long *H = SMEM ? sh_hist : ghist;
  if (SMEM) {
    for (int q = tid; q < bb; q += kBlock) sh_hist[q] = 0ull;
    __syncthreads();
  }
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  unsigned long long cnt = 0;
  /* Every thread runs the same z iterations (warp-wide votes below). */
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z) {
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i;
    double w = 0.0;
    const bool valid = active && metric_warp(m, im, i, j, k, v, &w, nullptr);
    int base = -1;
    unsigned long long wt[4] = {0ull, 0ull, 0ull, 0ull};
    if (valid) {
      bool inside;
      const double xi = mi_xi(s.m, w, &inside);
      const double fl = floor(xi);
      double wd[4];
      mi_cubic(dsub(xi, fl), wd);
#pragma unroll
      for (int t = 0; t < 4; ++t) wt[t] = (unsigned long long)dadd(dmul(wd[t], s.scale), 0.5); /* >= 0: floor(x + 0.5), as the CPU */
      base = mi_fixed_bin(s, __ldg(im.fixed + v)) * B + ((int)fl - 1);
      ++cnt;
    }
    const int base0 = __shfl_sync(kFullMask, base, 0);
    if (__all_sync(kFullMask, base == base0 && base0 >= 0)) {
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        unsigned long long x = wt[t];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) x += __shfl_down_sync(kFullMask, x, off);
        if ((threadIdx.x & 31) == 0 && x) atomicAdd(H + base0 + t, x);
      }
    } else if (valid) {
#pragma unroll
      for (int t = 0; t < 4; ++t)
        if (wt[t]) atomicAdd(H + base + t, wt[t]);
    }
  }
  warp_count_add(gcount, cnt);
  if (SMEM) {
    __syncthreads();
    for (int q = tid; q < bb; q += kBlock)
      if (sh_hist[q]) atomicAdd(ghist + q, sh_hist[q]);
  }
}

template <bool GRAD_U, bool AFF, bool SMEM>
__global__ void __launch_bounds__(kBlock) mi_grad_kernel(const WarpMap m, const MetricImages im, const MiSetup s,
                                                         const double *__restrict__ gL, double coef,
                                                         double *__restrict__ part) {
  extern __shared__ double sh_L[];
  const int B = s.bins, bb = B * B;
  const double *L = gL;
  if (SMEM) {
    const int tid = threadIdx.x + kBX * threadIdx.y;
    for (int q = tid; q < bb; q += kBlock) sh_L[q] = gL[q];
    __syncthreads();
    L = sh_L;
  }
  double acc[12];
#pragma unroll
  for (int q = 0; q < 12; ++q) acc[q] = 0.0;
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z) {
    if (!active) continue;
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i;
    double w, g[3];
    if (!metric_warp(m, im, i, j, k, v, &w, g)) {
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
      const double *Lr = L + mi_fixed_bin(s, __ldg(im.fixed + v)) * B + ((int)fl - 1);
      dw = dmul(coef, dadd(dadd(dadd(dmul(Lr[0], dt[0]), dmul(Lr[1], dt[1])), dmul(Lr[2], dt[2])), dmul(Lr[3], dt[3])));
    }
    const double d[3] = {dmul(dw, g[0]), dmul(dw, g[1]), dmul(dw, g[2])};
    if (GRAD_U) grad_u_store(m, im.grad_u, v, d);
    if (AFF) {
      double x[3];
      metric_xphys(m, im.disp, i, j, k, v, x);
      affine_accum(acc, d, x);
    }
  }
  if (AFF) block_sum_to_partials<12>(acc, part);
}

gr_status metric_mi(const MetricCall &c, gr_metric_result *res) {
  MiSetup s;
  gr_status st = gr_mi_setup_make(c.spec, c.map.f.nvox, "cuda", &s);
  if (st != GR_OK) return st;
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
  cudaError_t e = cudaMemsetAsync(d_hist, 0, (bb + 1) * 8, stream);
  if (e == cudaSuccess) {
    if (smem_hist) mi_hist_kernel<true><<<grid, block, bb * 8, stream>>>(c.map, c.im, s, d_hist, d_count);
    else mi_hist_kernel<false><<<grid, block, 0, stream>>>(c.map, c.im, s, d_hist, d_count);
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
#define GRCU_MI_GRAD(G, A)                                                                       \
  do {                                                                                           \
    if (smem_L) mi_grad_kernel<G, A, true><<<grid, block, shm, stream>>>(c.map, c.im, s, d_L, coef, d_part); \
    else mi_grad_kernel<G, A, false><<<grid, block, 0, stream>>>(c.map, c.im, s, d_L, coef, d_part);        \
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
