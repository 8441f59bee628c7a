/* Interpolation primitives shared by the CPU sampler and the fused metrics.
 * Everything here is static inline: these run once per voxel, in the
 * innermost loops, and must inline into them.
 *
 * Conventions (normative; the CUDA backend reproduces them):
 *
 *  Continuous index c of a grid with n samples along an axis; samples sit at
 *  the integers 0..n-1.
 *
 *  Snap:   c in [-1e-6, 0) becomes 0 and c in (n-1, n-1+1e-6] becomes n-1
 *          (CPU_INDEX_SNAP), so grids that coincide up to double rounding, and
 *          2D images stored with one slice, keep their border samples instead
 *          of losing them to a 1e-16 overshoot. Applied before any test below.
 *
 *  Linear, per axis: i0 = floor(c), t = c - i0, weights (1-t, t) on (i0, i0+1),
 *          derivative weights (-1, +1). Exception: at c == n-1 exactly
 *          (n >= 2) the cell is (n-2, n-1) with t = 1, so the value is the
 *          border sample and the derivative is the one-sided difference from
 *          INSIDE the grid (never a difference against the zero padding).
 *          For n == 1 and c == 0 the derivative is 0 (the symmetric choice).
 *    ZERO  : a corner outside [0, n-1] contributes 0 (weight and derivative
 *            weight 0): values fade linearly to 0 within one voxel outside;
 *            |c - clamp(c)| >= 1 on any axis gives exactly 0, gradient 0.
 *    CLAMP : c is clamped into [0, n-1] first; all corners are then in the grid.
 *  Trilinear = product of the per-axis weights; the value is accumulated as
 *          x-lines, then y, then z:
 *            lx(j,k) = wx0 v(i0,j,k) + wx1 v(i1,j,k)
 *            ly(k)   = wy0 lx(j0,k) + wy1 lx(j1,k)
 *            value   = wz0 ly(k0)   + wz1 ly(k1)
 *          and d/dc_x, d/dc_y, d/dc_z replace the weights of one axis by its
 *          derivative weights (exact derivative of the trilinear interpolant
 *          inside the cell; one-sided at cell faces, taking the cell above
 *          except at the last sample as stated).
 *
 *  Nearest: i = floor(c + 0.5) (round half up, as ITK); ZERO: 0 when i is
 *          outside [0, n-1] (so nearest covers [-0.5, n-0.5)); CLAMP: i clamped.
 *
 *  Physical gradient: with c = P y + b (P = p2i linear part, row-major),
 *          dW/dy_r = sum_a dW/dc_a * P[a][r], i.e. grad_phys = P^T grad_idx. */
#ifndef GIGAREG_CPU_INTERP_H
#define GIGAREG_CPU_INTERP_H

#include <math.h>
#include <stdint.h>
#include "gigareg/transform.h"

#define CPU_INDEX_SNAP 1e-6

/* One axis of a trilinear stencil: corner indices (always valid memory
 * indices), value weights and derivative weights. */
typedef struct cpu_axis {
  int64_t i0, i1;
  double w0, w1;
  double d0, d1;
} cpu_axis;

/* floor() for |c| well inside the int64 range (callers range-check first).
 * libm's floor is a function call on baseline x86-64 (no SSE4.1 roundsd);
 * this is three instructions and bitwise the same result. */
static inline int64_t cpu_floor_i64(double c) {
  const int64_t t = (int64_t)c; /* truncates toward zero */
  return t - (int64_t)((double)t > c);
}

static inline double cpu_snap_index(double c, int64_t n) {
  const double hi = (double)(n - 1);
  if (c < 0.0 && c >= -CPU_INDEX_SNAP) return 0.0;
  if (c > hi && c <= hi + CPU_INDEX_SNAP) return hi;
  return c;
}

/* True when the (snapped) continuous index lies in [0, n-1]: the validity
 * domain of the MSE/NCC/MI metrics. NaN is outside. */
static inline int cpu_index_inside(double c, int64_t n) {
  return c >= 0.0 && c <= (double)(n - 1);
}

/* ZERO-boundary stencil for c in (-1, n) (the caller has checked). */
static inline void cpu_axis_fill(double c, int64_t n, cpu_axis *a) {
  int64_t i = cpu_floor_i64(c);
  double t = c - (double)i;
  if (i == n - 1 && t == 0.0 && n > 1) {
    i = n - 2;
    t = 1.0;
  }
  a->i0 = i;
  a->i1 = i + 1;
  a->w0 = 1.0 - t;
  a->w1 = t;
  a->d0 = -1.0;
  a->d1 = 1.0;
  if (i < 0) { /* lower corner in the padding */
    a->i0 = 0;
    a->w0 = 0.0;
    a->d0 = 0.0;
  }
  if (i + 1 > n - 1) { /* upper corner in the padding */
    a->i1 = n - 1;
    a->w1 = 0.0;
    a->d1 = 0.0;
    if (n == 1 && t == 0.0) a->d0 = 0.0;
  }
}

/* ZERO boundary. Returns 0 when the sample is exactly 0 along this axis
 * (c <= -1 or c >= n, or NaN), else fills `a`. */
static inline int cpu_axis_zero(double c, int64_t n, cpu_axis *a) {
  if (!(c > -1.0 && c < (double)n)) return 0;
  cpu_axis_fill(c, n, a);
  return 1;
}

/* CLAMP boundary: c clamped into [0, n-1]; both corners in the grid. */
static inline void cpu_axis_clamp(double c, int64_t n, cpu_axis *a) {
  const double hi = (double)(n - 1);
  c = c > 0.0 ? c : 0.0; /* also maps NaN to 0 */
  c = c < hi ? c : hi;
  int64_t i = cpu_floor_i64(c);
  double t = c - (double)i;
  if (i >= n - 1 && n > 1) {
    i = n - 2;
    t = 1.0;
  }
  a->i0 = i;
  a->i1 = n > 1 ? i + 1 : i;
  a->w0 = 1.0 - t;
  a->w1 = t;
  a->d0 = n > 1 ? -1.0 : 0.0;
  a->d1 = n > 1 ? 1.0 : 0.0;
}

/* Linear offsets of the 8 corners (x fastest): o[zbit*4 + ybit*2 + xbit]. */
static inline void cpu_tri_offsets(const cpu_axis a[3], int64_t nx, int64_t nxy, int64_t o[8]) {
  const int64_t z0 = a[2].i0 * nxy, z1 = a[2].i1 * nxy;
  const int64_t y0 = a[1].i0 * nx, y1 = a[1].i1 * nx;
  o[0] = z0 + y0 + a[0].i0; o[1] = z0 + y0 + a[0].i1;
  o[2] = z0 + y1 + a[0].i0; o[3] = z0 + y1 + a[0].i1;
  o[4] = z1 + y0 + a[0].i0; o[5] = z1 + y0 + a[0].i1;
  o[6] = z1 + y1 + a[0].i0; o[7] = z1 + y1 + a[0].i1;
}

static inline double cpu_tri_value_at(const float *restrict img, const int64_t o[8], const cpu_axis a[3]) {
  const double l00 = a[0].w0 * img[o[0]] + a[0].w1 * img[o[1]];
  const double l10 = a[0].w0 * img[o[2]] + a[0].w1 * img[o[3]];
  const double l01 = a[0].w0 * img[o[4]] + a[0].w1 * img[o[5]];
  const double l11 = a[0].w0 * img[o[6]] + a[0].w1 * img[o[7]];
  const double ly0 = a[1].w0 * l00 + a[1].w1 * l10;
  const double ly1 = a[1].w0 * l01 + a[1].w1 * l11;
  return a[2].w0 * ly0 + a[2].w1 * ly1;
}

/* Value and gradient with respect to the continuous index (c_x, c_y, c_z). */
static inline double cpu_tri_value_grad_at(const float *restrict img, const int64_t o[8], const cpu_axis a[3],
                                           double g[3]) {
  const double v0 = img[o[0]], v1 = img[o[1]], v2 = img[o[2]], v3 = img[o[3]];
  const double v4 = img[o[4]], v5 = img[o[5]], v6 = img[o[6]], v7 = img[o[7]];
  const double l00 = a[0].w0 * v0 + a[0].w1 * v1, d00 = a[0].d0 * v0 + a[0].d1 * v1;
  const double l10 = a[0].w0 * v2 + a[0].w1 * v3, d10 = a[0].d0 * v2 + a[0].d1 * v3;
  const double l01 = a[0].w0 * v4 + a[0].w1 * v5, d01 = a[0].d0 * v4 + a[0].d1 * v5;
  const double l11 = a[0].w0 * v6 + a[0].w1 * v7, d11 = a[0].d0 * v6 + a[0].d1 * v7;
  const double ly0 = a[1].w0 * l00 + a[1].w1 * l10, gx0 = a[1].w0 * d00 + a[1].w1 * d10;
  const double ly1 = a[1].w0 * l01 + a[1].w1 * l11, gx1 = a[1].w0 * d01 + a[1].w1 * d11;
  const double gy0 = a[1].d0 * l00 + a[1].d1 * l10, gy1 = a[1].d0 * l01 + a[1].d1 * l11;
  g[0] = a[2].w0 * gx0 + a[2].w1 * gx1;
  g[1] = a[2].w0 * gy0 + a[2].w1 * gy1;
  g[2] = a[2].d0 * ly0 + a[2].d1 * ly1;
  return a[2].w0 * ly0 + a[2].w1 * ly1;
}

/* ---- fast path for points inside [0, n-1] on every axis ----------------------------
 * The MSE/NCC/MI validity domain. Bitwise the same results as the general ZERO
 * path there (same weights, same operation order; -v0 + v1 == v1 - v0 in IEEE),
 * without its per-corner border handling: the cell is (i, i+1) with
 * i = min(floor(c), n-2), and an axis with n == 1 uses a zero stride (both
 * corners are the single sample, derivative 0). */

/* Upper-corner strides of a grid: {1, nx, nx*ny}, 0 along single-sample axes. */
static inline void cpu_inside_strides(const int64_t n[3], int64_t st[3]) {
  st[0] = n[0] > 1 ? 1 : 0;
  st[1] = n[1] > 1 ? n[0] : 0;
  st[2] = n[2] > 1 ? n[0] * n[1] : 0;
}

/* Lower corner's linear offset and the fractions t; c must be inside. */
static inline int64_t cpu_inside_cell(const int64_t n[3], const double c[3], double t[3]) {
  int64_t i[3];
  for (int d = 0; d < 3; ++d) {
    int64_t f = cpu_floor_i64(c[d]);
    f = f > n[d] - 2 ? n[d] - 2 : f; /* c == n-1 -> cell (n-2, n-1), t = 1 */
    f = f < 0 ? 0 : f;               /* n == 1 */
    i[d] = f;
    t[d] = c[d] - (double)f;
  }
  return (i[2] * n[1] + i[1]) * n[0] + i[0];
}

static inline double cpu_inside_value(const float *restrict img, int64_t o, const int64_t st[3], const double t[3]) {
  const float *p = img + o;
  const double u = 1.0 - t[0];
  const double l00 = u * p[0] + t[0] * p[st[0]];
  const double l10 = u * p[st[1]] + t[0] * p[st[1] + st[0]];
  const double l01 = u * p[st[2]] + t[0] * p[st[2] + st[0]];
  const double l11 = u * p[st[2] + st[1]] + t[0] * p[st[2] + st[1] + st[0]];
  const double ly0 = (1.0 - t[1]) * l00 + t[1] * l10;
  const double ly1 = (1.0 - t[1]) * l01 + t[1] * l11;
  return (1.0 - t[2]) * ly0 + t[2] * ly1;
}

static inline double cpu_inside_value_grad(const float *restrict img, int64_t o, const int64_t st[3],
                                           const double t[3], double g[3]) {
  const float *p = img + o;
  const double v0 = p[0], v1 = p[st[0]], v2 = p[st[1]], v3 = p[st[1] + st[0]];
  const double v4 = p[st[2]], v5 = p[st[2] + st[0]], v6 = p[st[2] + st[1]], v7 = p[st[2] + st[1] + st[0]];
  const double ux = 1.0 - t[0], uy = 1.0 - t[1], uz = 1.0 - t[2];
  const double l00 = ux * v0 + t[0] * v1, d00 = v1 - v0;
  const double l10 = ux * v2 + t[0] * v3, d10 = v3 - v2;
  const double l01 = ux * v4 + t[0] * v5, d01 = v5 - v4;
  const double l11 = ux * v6 + t[0] * v7, d11 = v7 - v6;
  const double ly0 = uy * l00 + t[1] * l10, gx0 = uy * d00 + t[1] * d10;
  const double ly1 = uy * l01 + t[1] * l11, gx1 = uy * d01 + t[1] * d11;
  g[0] = uz * gx0 + t[2] * gx1;
  g[1] = uz * (l10 - l00) + t[2] * (l11 - l01);
  g[2] = ly1 - ly0;
  return uz * ly0 + t[2] * ly1;
}

static inline int cpu_inside3(const int64_t n[3], const double c[3]) {
  return cpu_index_inside(c[0], n[0]) && cpu_index_inside(c[1], n[1]) && cpu_index_inside(c[2], n[2]);
}

/* Trilinear, ZERO boundary, value only. n = grid size, c = continuous index. */
static inline double cpu_sample_linear_zero(const float *restrict img, const int64_t n[3], const double c_in[3]) {
  double c[3], t[3];
  for (int d = 0; d < 3; ++d) c[d] = cpu_snap_index(c_in[d], n[d]);
  if (cpu_inside3(n, c)) {
    int64_t st[3];
    cpu_inside_strides(n, st);
    return cpu_inside_value(img, cpu_inside_cell(n, c, t), st, t);
  }
  cpu_axis a[3];
  for (int d = 0; d < 3; ++d)
    if (!cpu_axis_zero(c[d], n[d], &a[d])) return 0.0;
  int64_t o[8];
  cpu_tri_offsets(a, n[0], n[0] * n[1], o);
  return cpu_tri_value_at(img, o, a);
}

/* Trilinear, ZERO boundary, value and index-space gradient (d/dc). */
static inline double cpu_sample_linear_grad_zero(const float *restrict img, const int64_t n[3], const double c_in[3],
                                                 double g_idx[3]) {
  double c[3], t[3];
  for (int d = 0; d < 3; ++d) c[d] = cpu_snap_index(c_in[d], n[d]);
  if (cpu_inside3(n, c)) {
    int64_t st[3];
    cpu_inside_strides(n, st);
    return cpu_inside_value_grad(img, cpu_inside_cell(n, c, t), st, t, g_idx);
  }
  cpu_axis a[3];
  for (int d = 0; d < 3; ++d) {
    if (!cpu_axis_zero(c[d], n[d], &a[d])) {
      g_idx[0] = g_idx[1] = g_idx[2] = 0.0;
      return 0.0;
    }
  }
  int64_t o[8];
  cpu_tri_offsets(a, n[0], n[0] * n[1], o);
  return cpu_tri_value_grad_at(img, o, a, g_idx);
}

/* Trilinear, CLAMP boundary, value only. */
static inline double cpu_sample_linear_clamp(const float *restrict img, const int64_t n[3], const double c[3]) {
  cpu_axis a[3];
  for (int d = 0; d < 3; ++d) cpu_axis_clamp(c[d], n[d], &a[d]);
  int64_t o[8];
  cpu_tri_offsets(a, n[0], n[0] * n[1], o);
  return cpu_tri_value_at(img, o, a);
}

/* Nearest voxel's linear offset, or -1 when outside (ZERO) / never (clamp=1). */
static inline int64_t cpu_nearest_offset(const int64_t n[3], const double c[3], int clamp) {
  int64_t idx[3];
  for (int d = 0; d < 3; ++d) {
    const double h = cpu_snap_index(c[d], n[d]) + 0.5; /* index = floor(h) */
    if (h >= 0.0 && h < (double)n[d]) {
      idx[d] = cpu_floor_i64(h);
    } else if (clamp) {
      idx[d] = h >= (double)n[d] ? n[d] - 1 : 0; /* NaN -> 0 */
    } else {
      return -1;
    }
  }
  return (idx[2] * n[1] + idx[1]) * n[0] + idx[0];
}

/* Nearest-neighbour value, ZERO boundary. */
static inline float cpu_sample_nearest_zero(const float *restrict img, const int64_t n[3], const double c[3]) {
  const int64_t o = cpu_nearest_offset(n, c, 0);
  return o >= 0 ? img[o] : 0.0f;
}

/* grad_phys = P^T grad_idx, P the row-major linear part of p2i (3x4 layout). */
static inline void cpu_grad_idx_to_phys(const double p2i[12], const double g_idx[3], double g_phys[3]) {
  for (int r = 0; r < 3; ++r)
    g_phys[r] = p2i[0 * 4 + r] * g_idx[0] + p2i[1 * 4 + r] * g_idx[1] + p2i[2 * 4 + r] * g_idx[2];
}

/* Q = linear part of p2i times the linear part of T (identity when T is NULL):
 * maps a displacement u (mm, applied before T: y = A (x + u) + t) to moving
 * index offsets. Stored 3x4 row-major like the other maps (column 3 unused). */
static inline void cpu_disp_matrix(const double p2i[12], const gr_affine *T, double Q[12]) {
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      double s = 0.0;
      for (int k = 0; k < 3; ++k) s += p2i[r * 4 + k] * (T ? T->m[k * 4 + c] : (double)(k == c));
      Q[r * 4 + c] = s;
    }
    Q[r * 4 + 3] = 0.0;
  }
}

#endif
