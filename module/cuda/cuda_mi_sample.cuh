/* The MI passes' per-voxel sample: metric_warp (cuda_common.cuh) specialised
 * for the common geometry, bit for bit the same W and grad_phys W.
 *
 * When every moving axis has at least 2 voxels and the moving grid has fewer
 * than 2^31 voxels, a sample that passed the inside test (0 <= c <= n - 1)
 * always has axis_fill's interior form: i1 = i0 + 1, derivative weights -1 and
 * +1, and the c == n - 1 case is floor(min(c, n - 2)) with t = 1. So:
 *   - the eight corners are base + {0, 1, nx, nx + 1, nxy, ...}: 32-bit
 *     offsets from one base pointer instead of eight 64-bit index sums;
 *   - lerp2(-1, a, +1, b) = (-a) + b is b - a exactly (IEEE subtraction is
 *     the addition of the negation; signed zeros included), so each
 *     derivative lerp is one subtraction instead of two products and a sum;
 *   - the grid's n - 1, n - 2 and n - 1 + kIndexSnap are host constants, not
 *     per-voxel conversions.
 * Every remaining operation is metric_warp's, in its order. The generic
 * metric_warp stays the path for other grids (the MI kernels are templated on
 * which one they use). The fast sample also reads 16-bit fixed and moving
 * images (cuda_mi.cu); metric_warp reads float only. */
#ifndef GIGAREG_CUDA_MI_SAMPLE_CUH
#define GIGAREG_CUDA_MI_SAMPLE_CUH

#include "cuda_common.cuh"

namespace grcu {

/* Moving-grid constants of the fast sample, made by mi_grid_make. */
struct MiGrid {
  double hi[3];   /* n - 1 */
  double top[3];  /* n - 2: the last cell's lower corner */
  double snap[3]; /* n - 1 + kIndexSnap, as snap_index computes it */
  int nx, nxy;    /* strides (moving nvox < 2^31) */
};

/* True (and q filled) when the moving grid allows the fast sample. */
inline bool mi_grid_make(const Dims &d, MiGrid *q) {
  for (int a = 0; a < 3; ++a)
    if (d.n[a] < 2) return false;
  if (d.nvox >= ((long long)1 << 31)) return false;
  for (int a = 0; a < 3; ++a) {
    q->hi[a] = (double)(d.n[a] - 1);
    q->top[a] = (double)(d.n[a] - 2);
    q->snap[a] = q->hi[a] + kIndexSnap;
  }
  q->nx = (int)d.n[0];
  q->nxy = (int)d.nxy;
  return true;
}

/* One axis of the interior trilinear: lower corner and weights (axis_fill for 0 <= c <= n - 1, n >= 2). */
struct MiAxis1 {
  int i0;
  double w0, w1;
};

__device__ __forceinline__ MiAxis1 mi_axis(double c, double top) {
  const double fl = floor(c < top ? c : top);
  MiAxis1 a;
  a.i0 = (int)fl;
  a.w1 = c - fl;
  a.w0 = 1.0 - a.w1;
  return a;
}

/* A voxel's streamed inputs (displacement, fixed value), loaded apart from the
 * sample so a pass can fetch them a z-iteration ahead. */
struct MiVoxel {
  float ux, uy, uz, f;
};

__device__ __forceinline__ MiVoxel mi_voxel_load(const WarpMap &m, const MetricImages &im, long long v) {
  MiVoxel x;
  x.f = img_load(im.fixed, im.fixed16, v);
  x.ux = x.uy = x.uz = 0.0f;
  if (im.disp) {
    x.ux = __ldg(im.disp + v);
    x.uy = __ldg(im.disp + m.f.nvox + v);
    x.uz = __ldg(im.disp + 2 * m.f.nvox + v);
  }
  return x;
}

/* The 8 corners of the cell whose lower corner p0 points at, in tri_offsets'
 * order; P: float or uint16_t storage (img_ld, cuda_common.cuh). */
template <typename P>
__device__ __forceinline__ void mi_corners(const P *__restrict__ p0, const MiGrid &q, float v[8]) {
  const P *p1 = p0 + q.nx, *p2 = p0 + q.nxy, *p3 = p2 + q.nx;
  v[0] = img_ld(p0);
  v[1] = img_ld(p0 + 1);
  v[2] = img_ld(p1);
  v[3] = img_ld(p1 + 1);
  v[4] = img_ld(p2);
  v[5] = img_ld(p2 + 1);
  v[6] = img_ld(p3);
  v[7] = img_ld(p3 + 1);
}

/* metric_warp for a grid accepted by mi_grid_make: the validity rule, W and
 * (GRAD) grad_phys W of fixed voxel (i, j, k) = flat index v with streamed
 * inputs x; di, dj, dk are (double) i, j, k. */
template <bool GRAD>
__device__ __forceinline__ bool mi_sample_fast(const WarpMap &m, const MiGrid &q, const MetricImages &im, double di,
                                               double dj, double dk, long long v, const MiVoxel &x, double *w,
                                               double g_phys[3]) {
  if (im.fmask && !(__ldg(im.fmask + v) > 0.5f)) return false;
  double c[3];
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const double row = dadd(dadd(dmul(m.M[r * 4 + 1], dj), dmul(m.M[r * 4 + 2], dk)), m.M[r * 4 + 3]);
    c[r] = dadd(row, dmul(m.M[r * 4], di));
  }
  if (im.disp) {
    const double ux = x.ux, uy = x.uy, uz = x.uz;
#pragma unroll
    for (int r = 0; r < 3; ++r) c[r] = dadd(c[r], dot3(m.Q[r * 3], ux, m.Q[r * 3 + 1], uy, m.Q[r * 3 + 2], uz));
  }
  bool inside = true;
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const double e = c[r];
    c[r] = e < 0.0 && e >= -kIndexSnap ? 0.0 : (e > q.hi[r] && e <= q.snap[r] ? q.hi[r] : e); /* snap_index */
    inside = inside && c[r] >= 0.0 && c[r] <= q.hi[r];
  }
  if (!inside) return false;
  if (im.mmask && !(__ldg(im.mmask + nearest_offset(m.m, c, true)) > 0.5f)) return false;
  const MiAxis1 ax = mi_axis(c[0], q.top[0]), ay = mi_axis(c[1], q.top[1]), az = mi_axis(c[2], q.top[2]);
  const int o = az.i0 * q.nxy + ay.i0 * q.nx + ax.i0;
  float cv[8];
  if (im.moving16) mi_corners(im.moving16 + o, q, cv);
  else mi_corners(im.moving + o, q, cv);
  const double v0 = cv[0], v1 = cv[1], v2 = cv[2], v3 = cv[3], v4 = cv[4], v5 = cv[5], v6 = cv[6], v7 = cv[7];
  const double l00 = lerp2(ax.w0, v0, ax.w1, v1), l10 = lerp2(ax.w0, v2, ax.w1, v3);
  const double l01 = lerp2(ax.w0, v4, ax.w1, v5), l11 = lerp2(ax.w0, v6, ax.w1, v7);
  const double ly0 = lerp2(ay.w0, l00, ay.w1, l10), ly1 = lerp2(ay.w0, l01, ay.w1, l11);
  *w = lerp2(az.w0, ly0, az.w1, ly1);
  if (GRAD) { /* tri_value_grad_at with d0 = -1, d1 = +1 */
    const double gx0 = lerp2(ay.w0, dsub(v1, v0), ay.w1, dsub(v3, v2));
    const double gx1 = lerp2(ay.w0, dsub(v5, v4), ay.w1, dsub(v7, v6));
    const double gi[3] = {lerp2(az.w0, gx0, az.w1, gx1), lerp2(az.w0, dsub(l10, l00), az.w1, dsub(l11, l01)),
                          dsub(ly1, ly0)};
    grad_idx_to_phys(m.P, gi, g_phys);
  }
  return true;
}

/* The pass's sample: the fast one (inputs x) or metric_warp (loads its own). */
template <bool FAST, bool GRAD>
__device__ __forceinline__ bool mi_sample(const WarpMap &m, const MiGrid &q, const MetricImages &im, long long i,
                                          long long j, long long k, double di, double dj, double dk, long long v,
                                          const MiVoxel &x, double *w, double g_phys[3]) {
  if (FAST) return mi_sample_fast<GRAD>(m, q, im, di, dj, dk, v, x, w, g_phys);
  return metric_warp(m, im, i, j, k, v, w, GRAD ? g_phys : nullptr);
}

/* The fixed value of voxel v: streamed with x on the fast path (float images only off it). */
template <bool FAST>
__device__ __forceinline__ float mi_fixed_value(const MetricImages &im, long long v, const MiVoxel &x) {
  return FAST ? x.f : __ldg(im.fixed + v);
}

}  // namespace grcu
#endif
