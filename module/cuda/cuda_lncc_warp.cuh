/* Kernel 1 of both LNCC paths: the warped moving image W(x) = moving(y(x))
 * (trilinear, ZERO padding) for every fixed voxel; with masks also a
 * validity byte and the valid count N (integer atomics).
 *   lncc_warp_kernel<MASKS, double> (cuda_lncc.cu): evaluated and stored in
 *     double;
 *   lncc_warp_f32_kernel<MASKS, SAMPLE64, MODE, M16> (cuda_lncc_fast.cu): the
 *     index in double, the interpolation in fp32 (cuda_lncc_sample.cuh),
 *     stored as float; MODE: grad W staged in grad_u, or the lean path's
 *     gather (see WarpMode);
 *     SAMPLE64: the interpolation in double as cuda_common.cuh (the older
 *     arithmetic, for comparisons); M16: the moving image stored as 16 bit
 *     (2 B per corner load instead of 4). Two voxels per thread and step (z and
 *     z + gridDim.z), their displacement loads and corner gathers issued
 *     together: the kernel is latency bound on these. */
#ifndef GIGAREG_CUDA_LNCC_WARP_CUH
#define GIGAREG_CUDA_LNCC_WARP_CUH

#include "cuda_ops.cuh"
#include "cuda_lncc_sample.cuh"
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

/* V and the count of one voxel (masks): the fixed mask, then the moving mask at the nearest voxel. */
__device__ __forceinline__ bool lncc_voxel_valid(const WarpMap &m, const MetricImages &im, long long v, const double c[3]) {
  bool ok = !im.fmask || __ldg(im.fmask + v) > 0.5f;
  if (ok && im.mmask) {
    const long long o = nearest_offset(m.m, c, false);
    ok = o >= 0 && __ldg(im.mmask + o) > 0.5f;
  }
  return ok;
}

/* What the fp32 warp kernel writes besides W:
 *   kWarpW      W only;
 *   kWarpStage  W, and grad W (physical units, float: the gradient the fused
 *               kernel multiplies by dL/dW at the same voxel) staged in the
 *               three planes of grad_u, which the fused kernel then
 *               overwrites voxel by voxel;
 *   kWarpGather no W: the lean path's last kernel. The fused kernel left
 *               dL/dW in grad_u's second plane (W lived in its first); grad W
 *               is sampled again, the same fp32 sample kWarpStage stages,
 *               and grad_u = A^T dL/dW grad W is written over all three planes
 *               (each voxel reads only its own dL/dW first: in place is safe). */
enum WarpMode { kWarpW = 0, kWarpStage = 1, kWarpGather = 2 };

struct WarpGradStage {
  float *g;         /* grad_u (kWarpStage, kWarpGather) */
  const float *dw;  /* kWarpGather: dL/dW (grad_u + nvox) */
  float Pf[9];
};

/* W and, with GRADW, grad W at the snapped continuous index c. SAMPLE64: the
 * double interpolation of cuda_common.cuh (the arithmetic the fused kernel's
 * gather used before the staging), rounded to float; it reads the float
 * moving image only (a measurement option: with a 16-bit moving image the
 * dispatcher hands this path a float copy). M16: the 16-bit moving image.
 * A template parameter, not a runtime branch: a branch around each sample's
 * loads puts the first voxel's arithmetic between the two voxels' gathers
 * (other blocks), which the kernel, latency bound on them, issues together;
 * the branch form compiled to 64 instead of 76 registers for the W variant
 * (ptxas, sm_90), the overlap lost. The float variants are the code of before. */
template <bool SAMPLE64, bool GRADW, bool M16>
__device__ __forceinline__ float lncc_sample_w(const WarpMap &m, const MetricImages &im, const WarpGradStage &st,
                                               const double c[3], float gp[3]) {
  if (SAMPLE64) {
    if (!GRADW) return (float)sample_linear_zero(im.moving, m.m, c);
    double gi[3], gpd[3];
    const double val = sample_linear_grad_zero(im.moving, m.m, c, gi);
    grad_idx_to_phys(m.P, gi, gpd);
#pragma unroll
    for (int q = 0; q < 3; ++q) gp[q] = (float)gpd[q];
    return (float)val;
  }
  AxisF a[3];
  float cv[8];
  static_assert(!(SAMPLE64 && M16), "the double sample reads float images");
  const bool ok = M16 ? tri_corners_f(im.moving16, m.m, c, a, cv) : tri_corners_f(im.moving, m.m, c, a, cv);
  if (GRADW) {
    float gi[3];
    tri_grad_f(a, cv, ok, gi);
#pragma unroll
    for (int q = 0; q < 3; ++q) gp[q] = fmaf(st.Pf[6 + q], gi[2], fmaf(st.Pf[3 + q], gi[1], st.Pf[q] * gi[0]));
  }
  return tri_value_f(a, cv, ok);
}

/* One voxel's outputs of the mode (the sample already taken). */
template <int MODE>
__device__ __forceinline__ void lncc_warp_store(const WarpMap &m, float *__restrict__ W, const WarpGradStage &st,
                                                long long v, float w, const float g[3], float dw) {
  const long long nvox = m.f.nvox;
  if (MODE == kWarpGather) {
    const double d[3] = {(double)dw * (double)g[0], (double)dw * (double)g[1], (double)dw * (double)g[2]};
    grad_u_store(m, st.g, v, d);
    return;
  }
  W[v] = w;
  if (MODE == kWarpStage) {
#pragma unroll
    for (int q = 0; q < 3; ++q) st.g[q * nvox + v] = g[q];
  }
}

template <bool MASKS, bool SAMPLE64, int MODE, bool M16>
__device__ __forceinline__ void lncc_warp_f32_body(const WarpMap &m, const MetricImages &im, float *__restrict__ W,
                                                   unsigned char *__restrict__ V, unsigned long long *__restrict__ count,
                                                   const WarpGradStage &st) {
  static_assert(!(MASKS && MODE == kWarpGather), "validity is the warp pass's, not the gather's");
  constexpr bool GRADW = MODE != kWarpW;
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  const long long nz = m.f.n[2], gz = gridDim.z;
  unsigned long long cnt = 0;
  for (long long k = blockIdx.z; k < nz; k += 2 * gz) {
    if (!active) continue;
    /* the second voxel; past the end it repeats the first (same loads, no store) */
    const bool two = k + gz < nz;
    const long long k2 = two ? k + gz : k;
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i, v2 = (k2 * m.f.n[1] + j) * m.f.n[0] + i;
    const float dw = MODE == kWarpGather ? st.dw[v] : 0.0f, dw2 = MODE == kWarpGather ? st.dw[v2] : 0.0f;
    double c[3], c2[3];
    metric_index(m, im.disp, i, j, k, v, c);
    metric_index(m, im.disp, i, j, k2, v2, c2);
    float g[3], g2[3];
    const float w = lncc_sample_w<SAMPLE64, GRADW, M16>(m, im, st, c, g);
    const float w2 = lncc_sample_w<SAMPLE64, GRADW, M16>(m, im, st, c2, g2);
    lncc_warp_store<MODE>(m, W, st, v, w, g, dw);
    if (two) lncc_warp_store<MODE>(m, W, st, v2, w2, g2, dw2);
    if (MASKS) {
      const bool ok = lncc_voxel_valid(m, im, v, c);
      V[v] = ok ? 1 : 0;
      cnt += ok ? 1 : 0;
      if (two) {
        const bool ok2 = lncc_voxel_valid(m, im, v2, c2);
        V[v2] = ok2 ? 1 : 0;
        cnt += ok2 ? 1 : 0;
      }
    }
  }
  if (MASKS) warp_count_add(count, cnt);
}

template <bool MASKS, bool SAMPLE64, int MODE, bool M16>
__global__ void __launch_bounds__(kBlock) lncc_warp_f32_kernel(const WarpMap m, const MetricImages im,
                                                               float *__restrict__ W, unsigned char *__restrict__ V,
                                                               unsigned long long *__restrict__ count,
                                                               const WarpGradStage st) {
  lncc_warp_f32_body<MASKS, SAMPLE64, MODE, M16>(m, im, W, V, count, st);
}

}  // namespace grcu
#endif
