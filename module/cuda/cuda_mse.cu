/* Mean squared error (cpu_mse.c semantics):
 *   loss = (1/N) sum_V (W - F)^2,  dL/dy = (2/N) (W - F) grad_phys W on V, 0 elsewhere.
 * Pass 1 (one kernel): warp, value/count/affine partials per block, grad_u
 * written unnormalised (2 e grad W, rounded to float) exactly like the CPU;
 * pass 2 scales grad_u by 1/N once N is known (float(double(g) / N), as the CPU).
 * Scratch: 14 doubles per block. Traffic (field gradient wanted): u 12 + F 4 +
 * moving gather + grad 12 bytes per voxel, plus 24 for the scaling pass. */
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

enum { MSE_SUM = 0, MSE_COUNT = 1, MSE_AFF = 2, MSE_K = 14 };

template <bool GRAD_U, bool AFF>
__global__ void __launch_bounds__(kBlock) mse_kernel(const WarpMap m, const MetricImages im, double *__restrict__ part) {
  constexpr bool kNeedGrad = GRAD_U || AFF;
  double acc[MSE_K];
#pragma unroll
  for (int q = 0; q < MSE_K; ++q) acc[q] = 0.0;
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z) {
    if (!active) continue;
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i;
    double w, g[3];
    if (!metric_warp(m, im, i, j, k, v, &w, kNeedGrad ? g : nullptr)) {
      if (GRAD_U) grad_u_zero(im.grad_u, m.f.nvox, v);
      continue;
    }
    const double e = dsub(w, (double)__ldg(im.fixed + v));
    acc[MSE_SUM] += e * e;
    acc[MSE_COUNT] += 1.0;
    if (!kNeedGrad) continue;
    const double e2 = dmul(2.0, e);
    const double d[3] = {dmul(e2, g[0]), dmul(e2, g[1]), dmul(e2, g[2])};
    if (GRAD_U) grad_u_store(m, im.grad_u, v, d);
    if (AFF) {
      double x[3];
      metric_xphys(m, im.disp, i, j, k, v, x);
      affine_accum(acc + MSE_AFF, d, x);
    }
  }
  block_sum_to_partials<MSE_K>(acc, part);
}

gr_status metric_mse(const MetricCall &c, gr_metric_result *res) {
  gr_backend *be = c.be;
  const dim3 grid = voxel_grid(c.map.f.n), block(kBX, kBY);
  const long long nb = grid_blocks(grid);
  double *part = (double *)scratch_alloc(be, (size_t)nb * MSE_K * sizeof(double), "MSE block partials");
  if (!part) return GR_ERR_NOMEM;
  cudaStream_t st = impl_of(be)->stream;
  const bool gu = c.im.grad_u != nullptr;
  if (gu && c.want_affine) mse_kernel<true, true><<<grid, block, 0, st>>>(c.map, c.im, part);
  else if (gu) mse_kernel<true, false><<<grid, block, 0, st>>>(c.map, c.im, part);
  else if (c.want_affine) mse_kernel<false, true><<<grid, block, 0, st>>>(c.map, c.im, part);
  else mse_kernel<false, false><<<grid, block, 0, st>>>(c.map, c.im, part);
  cudaError_t e = cudaGetLastError();
  double tot[MSE_K];
  gr_status s = e == cudaSuccess ? reduce_partials(be, part, nb, MSE_K, tot) : device_error(e, "MSE kernel");
  scratch_free(be, part);
  if (s != GR_OK) return s;
  const double n = tot[MSE_COUNT];
  res->n_valid = (int64_t)n;
  if (n <= 0.0) return metric_empty(c);
  const double inv_n = 1.0 / n;
  res->value = tot[MSE_SUM] * inv_n;
  if (c.want_affine)
    for (int q = 0; q < 12; ++q) res->grad_affine[q] = tot[MSE_AFF + q] * inv_n;
  if (gu) return grad_u_scale(c, inv_n);
  return GR_OK;
}

}  // namespace grcu
