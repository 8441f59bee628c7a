/* Pieces of the separable Gaussian shared by the in-place smoothing
 * (cuda_smooth.cu) and the out-of-place fused x+y+z pass (cuda_smooth_to.cu):
 * the per-axis kernel, the two precisions' tap arithmetic, the border
 * renormalisation, and the 128-column strip (4 columns per lane) that both
 * float walkers x-smooth with shuffles. Sharing them is what keeps the two
 * paths bitwise equal. */
#pragma once
#include <math.h>
#include "cuda_common.cuh"

namespace grcu {

constexpr int kTileR = 16; /* halo of the fused XY tile */
constexpr int kSmoothMaxR = 127;
constexpr int kWalk4MaxR = 4; /* x/y radii of the 4-column strip walkers */

template <typename T, int MAXR>
struct AxisKernel {
  int r;          /* 0 = axis skipped */
  long long len;
  T inv_full;     /* 1 / (sum of all 2r+1 weights): interior positions */
  T w[2 * MAXR + 1];
};

/* Arithmetic of the two precisions. double: the CPU's operations one by one
 * (no contraction), so results are bitwise the CPU's. float: fused
 * multiply-adds, memory-bound, ~1e-7 relative from the CPU. */
__device__ __forceinline__ double smul(double a, double b) { return dmul(a, b); }
__device__ __forceinline__ float smul(float a, float b) { return __fmul_rn(a, b); }
/* acc + w (a + b) */
__device__ __forceinline__ double stap(double acc, double w, double a, double b) { return dadd(acc, dmul(w, dadd(a, b))); }
__device__ __forceinline__ float stap(float acc, float w, float a, float b) { return __fmaf_rn(w, a + b, acc); }

template <typename T, int MAXR>
__device__ __forceinline__ T inv_norm(const AxisKernel<T, MAXR> &k, long long i) {
  if (i >= k.r && i + k.r <= k.len - 1) return k.inv_full;
  const long long lo = i - k.r < 0 ? -i : -k.r;
  const long long hi = i + k.r > k.len - 1 ? k.len - 1 - i : k.r;
  T s = 0;
  for (long long t = lo; t <= hi; ++t) s += k.w[t + k.r];
  return T(1) / s;
}

/* One axis' output from its 2R+1 samples win[0..2R] (centre win[R]) for 4
 * columns at once: w_R c + sum_{t=0..R-1} w_t (win[t] + win[2R-t]), then the
 * renormalisation. The order every float pass uses. */
template <int R, int MAXR>
__device__ __forceinline__ void taps4(const AxisKernel<float, MAXR> &k, const float (&win)[2 * R + 1][4], float inv,
                                      float (&o)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float acc = __fmul_rn(k.w[R], win[R][i]);
#pragma unroll
    for (int t = 0; t < R; ++t) acc = stap(acc, k.w[t], win[t][i], win[2 * R - t][i]);
    o[i] = __fmul_rn(acc, inv);
  }
}

/* A lane's place in a 128-column strip: its columns c0..c0+3, and the halo
 * column it loads (lanes 0-3 the 4 left of the strip, lanes 28-31 the 4 right
 * of it; lanes 0 and 31 take them by shuffles). */
struct Strip4 {
  long long c0, hc;
  bool hl;
};

__device__ __forceinline__ Strip4 strip4_at(long long strip, int lane, long long nx) {
  Strip4 s;
  const long long x0 = strip * 128;
  s.c0 = x0 + 4 * lane;
  s.hc = lane < 4 ? x0 - 4 + lane : x0 + 100 + lane;
  s.hl = (lane < 4 || lane >= 28) && s.hc >= 0 && s.hc < nx;
  return s;
}

/* Raw samples of row yy (at p): the lane's 4 columns and its halo column,
 * zero outside the grid. vec: 16-byte loads (rows 16-byte aligned). */
__device__ __forceinline__ void strip4_load(const Strip4 &s, long long nx, long long ny, long long yy, const float *p,
                                            bool vec, float (&c)[4], float &h) {
  h = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) c[j] = 0.0f;
  if (yy < 0 || yy >= ny) return;
  if (vec) {
    if (s.c0 < nx) {
      const float4 v = __ldg(reinterpret_cast<const float4 *>(p + s.c0));
      c[0] = v.x; c[1] = v.y; c[2] = v.z; c[3] = v.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (s.c0 + j < nx) c[j] = __ldg(p + s.c0 + j);
  }
  if (s.hl) h = __ldg(p + s.hc);
}

/* x-smoothed values of the lane's 4 columns (whole warp: shuffles); inv_x:
 * the columns' renormalisations. Rows of zeros smooth to +0. */
template <int RX>
__device__ __forceinline__ void strip4_xsmooth(int lane, const AxisKernel<float, kTileR> &kx, const float (&c)[4], float h,
                                               const float (&inv_x)[4], float (&xs)[4]) {
  float e[4 + 2 * RX]; /* e[RX + j]: column c0 + j */
#pragma unroll
  for (int j = 0; j < 4; ++j) e[RX + j] = c[j];
#pragma unroll
  for (int j = 0; j < RX; ++j) {
    const float l = __shfl_up_sync(0xffffffffu, c[4 - RX + j], 1);
    const float hl_ = __shfl_sync(0xffffffffu, h, 4 - RX + j);
    const float r = __shfl_down_sync(0xffffffffu, c[j], 1);
    const float hr_ = __shfl_sync(0xffffffffu, h, 28 + j);
    e[j] = lane == 0 ? hl_ : l;
    e[RX + 4 + j] = lane == 31 ? hr_ : r;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float acc = __fmul_rn(kx.w[RX], e[RX + j]);
#pragma unroll
    for (int t = 0; t < RX; ++t) acc = stap(acc, kx.w[t], e[j + t], e[j + 2 * RX - t]);
    xs[j] = __fmul_rn(acc, inv_x[j]);
  }
}

/* Host: the truncation radius (ceil(3 sigma), capped at len - 1) and the
 * weights as cpu_smooth.c's kernel_build computes them (in double; the float
 * variant rounds them once). */
inline int smooth_radius(double sigma, long long len) {
  const double r = ceil(3.0 * sigma);
  return (int)(r < (double)(len - 1) ? r : (double)(len - 1));
}

/* The checks every smoothing entry point makes (grid sizes >= 1, sigmas
 * finite and >= 0; `what` names the op in the message) and the radii per axis
 * (0: the axis is skipped). */
inline gr_status smooth_radii(const char *what, const gr_grid *g, const double sigma_vox[3], int r[3]) {
  for (int a = 0; a < 3; ++a) {
    if (g->n[a] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[a], a);
    if (!(sigma_vox[a] >= 0.0) || !isfinite(sigma_vox[a]))
      return gr_error(GR_ERR_INVALID_ARG, "%s: sigma %g voxels along axis %d (must be finite and >= 0)", what,
                      sigma_vox[a], a);
    r[a] = sigma_vox[a] > 0.0 ? smooth_radius(sigma_vox[a], g->n[a]) : 0;
  }
  return GR_OK;
}

template <typename T, int MAXR>
inline void smooth_kernel_build(double sigma, long long len, int r, AxisKernel<T, MAXR> *k) {
  k->r = r;
  k->len = len;
  const double a = -0.5 / (sigma * sigma);
  double w[2 * MAXR + 1];
  for (int t = -r; t <= r; ++t) w[t + r] = exp(a * (double)t * (double)t);
  double s = 0.0;
  for (int t = -r; t <= r; ++t) s += w[t + r];
  for (int t = -r; t <= r; ++t) k->w[t + r] = (T)w[t + r];
  k->inv_full = (T)(1.0 / s);
}

}  // namespace grcu
