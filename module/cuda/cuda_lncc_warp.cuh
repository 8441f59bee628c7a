/* Kernel 1 of both LNCC paths (cuda_lncc.cu, double W; cuda_lncc_fast.cu,
 * float W): the warped moving image W(x) = moving(y(x)) (trilinear, ZERO
 * padding, evaluated in double and stored as T) for every fixed voxel; with
 * masks also a validity byte and the valid count N (integer atomics). */
#ifndef GIGAREG_CUDA_LNCC_WARP_CUH
#define GIGAREG_CUDA_LNCC_WARP_CUH

#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

template <bool MASKS, typename T>
__global__ void __launch_bounds__(kBlock) lncc_warp_kernel(const WarpMap m, const MetricImages im,
                                                           T *__restrict__ W, unsigned char *__restrict__ V,
                                                           unsigned long long *__restrict__ count) {
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  unsigned long long cnt = 0;
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z) {
    if (!active) continue;
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i;
    double c[3];
    metric_index(m, im.disp, i, j, k, v, c);
    W[v] = (T)sample_linear_zero(im.moving, m.m, c);
    if (MASKS) {
      bool ok = !im.fmask || __ldg(im.fmask + v) > 0.5f;
      if (ok && im.mmask) {
        const long long o = nearest_offset(m.m, c, false);
        ok = o >= 0 && __ldg(im.mmask + o) > 0.5f;
      }
      V[v] = ok ? 1 : 0;
      cnt += ok ? 1 : 0;
    }
  }
  if (MASKS) warp_count_add(count, cnt);
}

}  // namespace grcu
#endif
