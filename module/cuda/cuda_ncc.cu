/* Global normalised cross-correlation (cpu_ncc.c semantics; formulas there).
 * Pass 1: per-block partials of N, sum f, sum w, sum f^2, sum w^2, sum f w
 * (double), reduced in a fixed order; the host forms ncc and the gradient
 * coefficients exactly as the CPU does. Pass 2 (only when a gradient is
 * wanted): recompute the warp, dL/dW = a f + b w + c, grad_u and per-block
 * affine partials. Nothing per voxel is stored between the passes.
 * Scratch: 12 doubles per block. */
#include <math.h>
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

enum { NCC_N = 0, NCC_F, NCC_W, NCC_FF, NCC_WW, NCC_FW, NCC_K1 = 6 };

__global__ void __launch_bounds__(kBlock) ncc_moments_kernel(const WarpMap m, const MetricImages im,
                                                             double *__restrict__ part) {
  double acc[NCC_K1];
#pragma unroll
  for (int q = 0; q < NCC_K1; ++q) acc[q] = 0.0;
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z) {
    if (!active) continue;
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i;
    double w;
    if (!metric_warp(m, im, i, j, k, v, &w, nullptr)) continue;
    const double f = __ldg(im.fixed + v);
    acc[NCC_N] += 1.0;
    acc[NCC_F] += f;
    acc[NCC_W] += w;
    acc[NCC_FF] += f * f;
    acc[NCC_WW] += w * w;
    acc[NCC_FW] += f * w;
  }
  block_sum_to_partials<NCC_K1>(acc, part);
}

struct NccCoef {
  double a, b, c; /* dL/dW = a f + b w + c on V */
};

template <bool GRAD_U, bool AFF>
__global__ void __launch_bounds__(kBlock) ncc_grad_kernel(const WarpMap m, const MetricImages im, const NccCoef cf,
                                                          double *__restrict__ part) {
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
    const double dw = dadd(dadd(dmul(cf.a, (double)__ldg(im.fixed + v)), dmul(cf.b, w)), cf.c);
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

gr_status metric_ncc(const MetricCall &c, gr_metric_result *res) {
  gr_backend *be = c.be;
  const dim3 grid = voxel_grid(c.map.f.n), block(kBX, kBY);
  const long long nb = grid_blocks(grid);
  double *part = (double *)scratch_alloc(be, (size_t)nb * 12 * sizeof(double), "NCC block partials");
  if (!part) return GR_ERR_NOMEM;
  cudaStream_t st = impl_of(be)->stream;
  ncc_moments_kernel<<<grid, block, 0, st>>>(c.map, c.im, part);
  cudaError_t e = cudaGetLastError();
  double t[NCC_K1];
  gr_status s = e == cudaSuccess ? reduce_partials(be, part, nb, NCC_K1, t) : device_error(e, "NCC moments kernel");
  if (s != GR_OK) {
    scratch_free(be, part);
    return s;
  }
  const double n = t[NCC_N];
  res->n_valid = (int64_t)n;
  if (n <= 0.0) {
    scratch_free(be, part);
    return metric_empty(c);
  }
  const double fbar = t[NCC_F] / n, wbar = t[NCC_W] / n;
  const double sff = t[NCC_FF] - n * fbar * fbar;
  const double sww = t[NCC_WW] - n * wbar * wbar;
  const double sfw = t[NCC_FW] - n * fbar * wbar;
  const int degenerate = !(sff > 0.0 && sww > 0.0);
  const double den = degenerate ? 0.0 : sqrt(sff * sww);
  const double ncc = degenerate ? 0.0 : sfw / den;
  res->value = -ncc;

  const bool gu = c.im.grad_u != nullptr;
  if (gu || c.want_affine) {
    NccCoef cf = {0.0, 0.0, 0.0};
    if (!degenerate) {
      cf.a = -1.0 / den;
      cf.b = ncc / sww;
      cf.c = fbar / den - ncc * wbar / sww;
    }
    if (gu && c.want_affine) ncc_grad_kernel<true, true><<<grid, block, 0, st>>>(c.map, c.im, cf, part);
    else if (gu) ncc_grad_kernel<true, false><<<grid, block, 0, st>>>(c.map, c.im, cf, part);
    else ncc_grad_kernel<false, true><<<grid, block, 0, st>>>(c.map, c.im, cf, part);
    e = cudaGetLastError();
    if (e != cudaSuccess) s = device_error(e, "NCC gradient kernel");
    else if (c.want_affine) s = reduce_partials(be, part, nb, 12, res->grad_affine);
  }
  scratch_free(be, part);
  return s;
}

}  // namespace grcu
