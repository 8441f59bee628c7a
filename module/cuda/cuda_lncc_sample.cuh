/* The LNCC fast path's trilinear sample of the moving image (ZERO padding):
 * the continuous index stays in double (metric_index; floor and the fraction
 * c - floor(c) are exact there), the fraction is rounded to float once, and
 * the weights and the 8-corner interpolation are fp32. cuda_common.cuh's
 * sample_linear_zero / sample_linear_grad_zero do the same in double; the
 * branches (outside test, the last-voxel rule, the one-sided weights at the
 * border) are theirs, so the two differ by float rounding only (a few ulp of
 * the value, ~1e-7 relative). Used by the fp32 warp kernel for W and grad W
 * (both stored as float anyway; the CPU rounds grad W to float too).
 *
 * Requires the moving grid's axes to fit in int (any size the backend can
 * allocate does); offsets are 64-bit. */
#ifndef GIGAREG_CUDA_LNCC_SAMPLE_CUH
#define GIGAREG_CUDA_LNCC_SAMPLE_CUH

#include "cuda_common.cuh"

namespace grcu {

struct AxisF {
  int i0, i1;
  float w0, w1, d0, d1;
};

/* axis_zero (cuda_common.cuh) with a float fraction; c is already snapped
 * (metric_index), and snapping is idempotent. Branch-free: outside (the return
 * value false) the axis is filled for c = 0, so the caller's corner loads stay
 * in bounds and can be issued before the test. */
__device__ __forceinline__ bool axis_zero_f(double c, long long n, AxisF &a) {
  const bool ok = c > -1.0 && c < (double)n;
  axis_fill_as<float, int>(ok ? c : 0.0, (int)n, a);
  return ok;
}

__device__ __forceinline__ float lerp2f(float w0, float a, float w1, float b) { return fmaf(w1, b, w0 * a); }

/* The 8 corners in tri_offsets' order (x fastest, then y, then z); P: float
 * or uint16_t storage (img_ld, cuda_common.cuh). */
template <typename P>
__device__ __forceinline__ void corners_f(const P *__restrict__ img, const Dims &d, const AxisF a[3], float v[8]) {
  const long long z0 = (long long)a[2].i0 * d.nxy, z1 = (long long)a[2].i1 * d.nxy;
  const long long y0 = (long long)a[1].i0 * d.n[0], y1 = (long long)a[1].i1 * d.n[0];
  v[0] = img_ld(img + z0 + y0 + a[0].i0);
  v[1] = img_ld(img + z0 + y0 + a[0].i1);
  v[2] = img_ld(img + z0 + y1 + a[0].i0);
  v[3] = img_ld(img + z0 + y1 + a[0].i1);
  v[4] = img_ld(img + z1 + y0 + a[0].i0);
  v[5] = img_ld(img + z1 + y0 + a[0].i1);
  v[6] = img_ld(img + z1 + y1 + a[0].i0);
  v[7] = img_ld(img + z1 + y1 + a[0].i1);
}

/* The axes and the 8 corner values at the snapped continuous index c
 * (false: outside, ZERO). Split from the interpolation so that a caller can
 * do other work while the loads are in flight. */
template <typename P>
__device__ __forceinline__ bool tri_corners_f(const P *__restrict__ img, const Dims &d, const double c[3], AxisF a[3],
                                              float v[8]) {
  bool ok = true;
#pragma unroll
  for (int k = 0; k < 3; ++k) ok = axis_zero_f(c[k], d.n[k], a[k]) && ok;
  corners_f(img, d, a, v);
  return ok;
}

/* Value (tri_value_at's order of operations). */
__device__ __forceinline__ float tri_value_f(const AxisF a[3], const float v[8], bool ok) {
  const float l00 = lerp2f(a[0].w0, v[0], a[0].w1, v[1]);
  const float l10 = lerp2f(a[0].w0, v[2], a[0].w1, v[3]);
  const float l01 = lerp2f(a[0].w0, v[4], a[0].w1, v[5]);
  const float l11 = lerp2f(a[0].w0, v[6], a[0].w1, v[7]);
  const float ly0 = lerp2f(a[1].w0, l00, a[1].w1, l10);
  const float ly1 = lerp2f(a[1].w0, l01, a[1].w1, l11);
  return ok ? lerp2f(a[2].w0, ly0, a[2].w1, ly1) : 0.0f;
}

/* Index gradient (tri_value_grad_at's order of operations). */
__device__ __forceinline__ void tri_grad_f(const AxisF a[3], const float v[8], bool ok, float g[3]) {
  const float l00 = lerp2f(a[0].w0, v[0], a[0].w1, v[1]), d00 = lerp2f(a[0].d0, v[0], a[0].d1, v[1]);
  const float l10 = lerp2f(a[0].w0, v[2], a[0].w1, v[3]), d10 = lerp2f(a[0].d0, v[2], a[0].d1, v[3]);
  const float l01 = lerp2f(a[0].w0, v[4], a[0].w1, v[5]), d01 = lerp2f(a[0].d0, v[4], a[0].d1, v[5]);
  const float l11 = lerp2f(a[0].w0, v[6], a[0].w1, v[7]), d11 = lerp2f(a[0].d0, v[6], a[0].d1, v[7]);
  const float ly0 = lerp2f(a[1].w0, l00, a[1].w1, l10), gx0 = lerp2f(a[1].w0, d00, a[1].w1, d10);
  const float ly1 = lerp2f(a[1].w0, l01, a[1].w1, l11), gx1 = lerp2f(a[1].w0, d01, a[1].w1, d11);
  const float gy0 = lerp2f(a[1].d0, l00, a[1].d1, l10), gy1 = lerp2f(a[1].d0, l01, a[1].d1, l11);
  g[0] = ok ? lerp2f(a[2].w0, gx0, a[2].w1, gx1) : 0.0f;
  g[1] = ok ? lerp2f(a[2].w0, gy0, a[2].w1, gy1) : 0.0f;
  g[2] = ok ? lerp2f(a[2].d0, ly0, a[2].d1, ly1) : 0.0f;
}

/* metric_xphys (cuda_common.cuh) with the displacement already loaded. */
__device__ __forceinline__ void metric_xphys_u(const WarpMap &m, bool has_u, float ux, float uy, float uz,
                                               long long i, long long j, long long k, double x[3]) {
  const float u[3] = {ux, uy, uz};
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    x[r] = dadd(dadd(dadd(dmul(m.X[r * 4], (double)i), dmul(m.X[r * 4 + 1], (double)j)), dmul(m.X[r * 4 + 2], (double)k)),
                m.X[r * 4 + 3]);
    if (has_u) x[r] = dadd(x[r], (double)u[r]);
  }
}

}  // namespace grcu
#endif
