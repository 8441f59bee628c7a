/* The field rule in float: the sample position and trilinear interpolation of
 * displacement fields for compose, adam_compose, invert and the Grid Parallel
 * sampler's same-grid rule, one definition for the CPU kernels (cpu_field.c,
 * cpu_slab.c) and the CUDA kernels (cuda_field.cu, cuda_slab.cu).
 *
 * Position. The continuous index of x + s(x) along axis r is x_r + d_r with
 * the voxel offset d_r = L[r][0] s0 + L[r][1] s1 + L[r][2] s2 (L: p2i's linear
 * part rounded to float), formed in float left to right (gr_field_offset).
 * The cell is x_r + floor(d_r), exact in integers, and the fraction
 * d_r - floor(d_r) is exact in float (gr_field_cell): the offset's rounding is
 * relative to |d| (a few voxels: ~1e-7 voxel), not to the index, so nothing
 * is lost against forming the index in double, and no double arithmetic or
 * conversion is left in the GPU kernel (they were a quarter of its
 * instructions). CLAMP as cpu_interp.h: an index below 0 reads sample 0, one
 * at or above n - 1 the cell (n-2, n-1) with fraction 1.
 *
 * Interpolation. The field is float, its values are millimetres, and float's
 * 2^-24 relative rounding is far below the interpolation error; in double the
 * GPU kernel spent ~30 float <-> double conversions per voxel (a quarter-rate
 * pipe on Hopper) on it. Weights per axis: (1 - t, t) in float.
 *
 * Both backends agree bit for bit: IEEE float multiplication and addition are
 * correctly rounded on the CPU and the GPU alike, the CPU core is compiled
 * with -ffp-contract=off and the CUDA side goes through __fmul_rn/__fadd_rn
 * (never contracted into fused multiply-adds), and every caller nests the
 * operations as below:
 *   line(j,k) = wx0 v(i0,j,k) + wx1 v(i1,j,k)       (x first)
 *   plane(k)  = wy0 line(j0,k) + wy1 line(j1,k)     (then y)
 *   value     = wz0 plane(k0) + wz1 plane(k1)       (then z)
 * A z-slab holding one of the two planes contributes the rounded product
 * wz * plane(k) (the other plane read as 0): the sum of the two slabs,
 * rounded to float, is the whole-grid value (double rounding through a
 * double accumulator is innocuous for the sum of two floats: 53 >= 2*24 + 2). */
#ifndef GIGAREG_FIELD_LERP_H
#define GIGAREG_FIELD_LERP_H

#include <stdint.h>

#ifdef __CUDACC__
#define GR_FL_FN __device__ __forceinline__
#define GR_FL_MUL(a, b) __fmul_rn((a), (b))
#define GR_FL_ADD(a, b) __fadd_rn((a), (b))
#define GR_FL_SUB(a, b) __fsub_rn((a), (b))
#else
#define GR_FL_FN static inline
#define GR_FL_MUL(a, b) ((a) * (b))
#define GR_FL_ADD(a, b) ((a) + (b))
#define GR_FL_SUB(a, b) ((a) - (b))
#endif

/* Offsets are clamped to +-2^21 voxels (beyond any grid's CLAMP range for
 * n <= 2^21; NaN -> -2^21, i.e. sample 0, as CLAMP maps a NaN index to 0):
 * there floor(d) is exact through an int32 and, on the GPU, through the
 * 1.5 * 2^23 shift. */
#define GR_FIELD_REACH 2097152.0f

/* d_r = L[0] s0 + L[1] s1 + L[2] s2 (L: one row of p2i's linear part, float) */
GR_FL_FN float gr_field_offset(const float L[3], float s0, float s1, float s2) {
  return GR_FL_ADD(GR_FL_ADD(GR_FL_MUL(L[0], s0), GR_FL_MUL(L[1], s1)), GR_FL_MUL(L[2], s2));
}

/* The CLAMP cell at index x + d on an axis of n samples: returns the lower
 * corner i0 (the upper one is i0 + 1, or i0 when n == 1) and sets its weights
 * w = (1 - t, t). */
GR_FL_FN int64_t gr_field_cell(int64_t x, float d, int64_t n, float w[2]) {
  d = d >= -GR_FIELD_REACH ? d : -GR_FIELD_REACH;
  d = d <= GR_FIELD_REACH ? d : GR_FIELD_REACH;
  const int32_t tr = (int32_t)d; /* toward zero */
  const int32_t fl = tr - ((float)tr > d ? 1 : 0);
  const int64_t k = x + fl;
  float t = GR_FL_SUB(d, (float)fl);
  int64_t i = k;
  if (k < 0) {
    i = 0;
    t = 0.0f;
  } else if (k >= n - 1) {
    i = n > 1 ? n - 2 : 0;
    t = n > 1 ? 1.0f : 0.0f;
  }
  w[0] = GR_FL_SUB(1.0f, t);
  w[1] = t;
  return i;
}

/* w0 a + w1 b, two rounded products and a rounded sum */
GR_FL_FN float gr_lerp_f(float w0, float a, float w1, float b) {
  return GR_FL_ADD(GR_FL_MUL(w0, a), GR_FL_MUL(w1, b));
}

/* One axis's double weights (w0, w1) rounded to float once (the slab
 * sampler's same-grid rule under the ZERO boundary, from a cpu_interp.h stencil) */
GR_FL_FN void gr_weights_f(double w0, double w1, float w[2]) {
  w[0] = (float)w0;
  w[1] = (float)w1;
}

/* plane(k) from its four corners v = {(i0,j0), (i1,j0), (i0,j1), (i1,j1)} */
GR_FL_FN float gr_plane_f(const float v[4], const float wx[2], const float wy[2]) {
  return gr_lerp_f(wy[0], gr_lerp_f(wx[0], v[0], wx[1], v[1]), wy[1], gr_lerp_f(wx[0], v[2], wx[1], v[3]));
}

/* plane(k) and its index derivatives along x and y (d: derivative weights of
 * an axis, -1 / +1 or 0, exact in float): gx = wy-weighted x-differences,
 * gy = dy-weighted x-lines (cpu_tri_value_grad_at's nesting) */
GR_FL_FN float gr_plane_grad_f(const float v[4], const float wx[2], const float dx[2], const float wy[2],
                               const float dy[2], float *gx, float *gy) {
  const float l0 = gr_lerp_f(wx[0], v[0], wx[1], v[1]), l1 = gr_lerp_f(wx[0], v[2], wx[1], v[3]);
  const float d0 = gr_lerp_f(dx[0], v[0], dx[1], v[1]), d1 = gr_lerp_f(dx[0], v[2], dx[1], v[3]);
  *gx = gr_lerp_f(wy[0], d0, wy[1], d1);
  *gy = gr_lerp_f(dy[0], l0, dy[1], l1);
  return gr_lerp_f(wy[0], l0, wy[1], l1);
}

/* The trilinear value from the 8 corners (x fastest: v[zbit*4 + ybit*2 + xbit]) */
GR_FL_FN float gr_tri_f(const float v[8], const float wx[2], const float wy[2], const float wz[2]) {
  return gr_lerp_f(wz[0], gr_plane_f(v, wx, wy), wz[1], gr_plane_f(v + 4, wx, wy));
}

#undef GR_FL_FN
#undef GR_FL_MUL
#undef GR_FL_ADD
#undef GR_FL_SUB
#endif
