/* adam_direction and adam_moments (cpu_optim.c semantics): Adam moments, the
 * bias-corrected normalised direction from the stored moments (cuda_adam.cuh),
 * element-wise over the 3 planes, and the largest voxel-unit length of the
 * direction. One streaming pass: reads grad, m, v and writes m, v (and dir for
 * adam_direction): 20 (24) bytes per component. The max is exact, so it is
 * reduced with integer atomics on the bit patterns of the non-negative
 * doubles (their integer order is their numeric order): deterministic. */
#include <math.h>
#include <string.h>
#include "cuda_adam.cuh"
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

struct AdamArgs {
  AdamRule r;
  double L[9]; /* linear part of p2i: mm -> voxels */
  long long nvox;
};

template <bool DIR, bool BF16>
__global__ void __launch_bounds__(kBlock) adam_kernel(const AdamArgs a, const float *__restrict__ grad,
                                                      void *__restrict__ m, void *__restrict__ v,
                                                      float *__restrict__ dir, unsigned long long *max_bits) {
  double mx = 0.0;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.nvox; i += stride) {
    double d[3];
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const long long k = i + c * a.nvox;
      const double gk = __ldg(grad + k);
      const float mk =
          gr_moment_store(m, BF16, k, (float)dadd(dmul(a.r.b1, (double)gr_moment_load(m, BF16, k)), dmul(a.r.omb1, gk)));
      const float vk = gr_moment_store(
          v, BF16, k, (float)dadd(dmul(a.r.b2, (double)gr_moment_load(v, BF16, k)), dmul(dmul(a.r.omb2, gk), gk)));
      const float dk = adam_dir(a.r, mk, vk);
      d[c] = dk;
      if (DIR) dir[k] = dk;
    }
    const double e0 = dot3(a.L[0], d[0], a.L[1], d[1], a.L[2], d[2]);
    const double e1 = dot3(a.L[3], d[0], a.L[4], d[1], a.L[5], d[2]);
    const double e2 = dot3(a.L[6], d[0], a.L[7], d[1], a.L[8], d[2]);
    const double len = __dsqrt_rn(dadd(dadd(dmul(e0, e0), dmul(e1, e1)), dmul(e2, e2)));
    mx = len > mx ? len : mx; /* NaN never wins, as on the CPU */
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const double o = __shfl_down_sync(kFullMask, mx, off);
    mx = o > mx ? o : mx;
  }
  if ((threadIdx.x & 31) == 0 && mx > 0.0) atomicMax(max_bits, (unsigned long long)__double_as_longlong(mx));
}

static gr_status adam_pass(gr_backend *be, const char *what, const gr_grid *g, const float *grad, gr_moments mom,
                           float *dir, double b1, double b2, double eps, int t, double *max_vox) {
  for (int ax = 0; ax < 3; ++ax)
    if (g->n[ax] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[ax], ax);
  AdamArgs a;
  gr_status s = adam_rule_make(what, b1, b2, eps, t, &a.r);
  if (s == GR_OK) s = enter(be);
  if (s != GR_OK) return s;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) a.L[r * 3 + c] = g->p2i[r * 4 + c];
  a.nvox = g->n[0] * g->n[1] * g->n[2];
  Impl *im = impl_of(be);
  unsigned long long *d_max = (unsigned long long *)scratch_alloc(be, sizeof(unsigned long long), "Adam max");
  if (!d_max) return GR_ERR_NOMEM;
  unsigned long long bits = 0;
  cudaError_t e = cudaMemsetAsync(d_max, 0, sizeof *d_max, im->stream);
  if (e == cudaSuccess) {
    const dim3 nb(flat_blocks(a.nvox));
    if (dir) adam_kernel<true, false><<<nb, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, dir, d_max);
    else if (mom.bf16) adam_kernel<false, true><<<nb, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, dir, d_max);
    else adam_kernel<false, false><<<nb, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, dir, d_max);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpyAsync(&bits, d_max, sizeof bits, cudaMemcpyDeviceToHost, im->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(im->stream);
  scratch_free(be, d_max);
  if (e != cudaSuccess) return device_error(e, what);
  double mx;
  memcpy(&mx, &bits, sizeof mx);
  *max_vox = mx;
  return GR_OK;
}

gr_status adam_direction(gr_backend *be, const gr_grid *g, const float *grad, float *m, float *v, float *dir,
                         double b1, double b2, double eps, int t, double *max_vox) {
  if (!g || !grad || !m || !v || !dir || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_direction: NULL argument");
  const gr_moments mom = {m, v, 0};
  return adam_pass(be, "adam_direction", g, grad, mom, dir, b1, b2, eps, t, max_vox);
}

gr_status adam_moments(gr_backend *be, const gr_grid *g, const float *grad, gr_moments mom, double b1, double b2,
                       double eps, int t, double *max_vox) {
  if (!g || !grad || !mom.m || !mom.v || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_moments: NULL argument");
  return adam_pass(be, "adam_moments", g, grad, mom, nullptr, b1, b2, eps, t, max_vox);
}

}  // namespace grcu
