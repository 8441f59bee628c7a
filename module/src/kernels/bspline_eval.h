/* Cubic B-spline transforms (backend.h gr_bspline): the per-voxel field and
 * the per-control-point gather of the chain rule, written once for the CPU
 * kernels (cpu_bspline.c) and the CUDA kernels (cuda_bspline.cu). On the GPU
 * every product and sum goes through __dmul_rn / __dadd_rn, which are never
 * contracted into fused multiply-adds, and the CPU build has contraction off,
 * so both backends compute the same bits. */
#ifndef GIGAREG_BSPLINE_EVAL_H
#define GIGAREG_BSPLINE_EVAL_H

#include <math.h>
#include <stdint.h>
#include "gigareg/backend.h"
#include "gigareg/status.h"

#ifdef __CUDACC__
#define GR_BS_FN __host__ __device__ __forceinline__
#else
#define GR_BS_FN static inline
#endif

#ifdef __CUDA_ARCH__
#define GR_BS_MUL(a, b) __dmul_rn((a), (b))
#define GR_BS_ADD(a, b) __dadd_rn((a), (b))
#define GR_BS_SUB(a, b) __dsub_rn((a), (b))
#define GR_BS_DIV(a, b) __ddiv_rn((a), (b))
#else
#define GR_BS_MUL(a, b) ((a) * (b))
#define GR_BS_ADD(a, b) ((a) + (b))
#define GR_BS_SUB(a, b) ((a) - (b))
#define GR_BS_DIV(a, b) ((a) / (b))
#endif

/* row r of a 3 x 4 map applied to (i, j, k, 1) */
GR_BS_FN double gr_bs_row(const double *m, int r, double i, double j, double k) {
  return GR_BS_ADD(GR_BS_ADD(GR_BS_ADD(GR_BS_MUL(m[r * 4], i), GR_BS_MUL(m[r * 4 + 1], j)), GR_BS_MUL(m[r * 4 + 2], k)),
                   m[r * 4 + 3]);
}

/* Continuous control-grid index of voxel (i, j, k); 1 inside the valid region. */
GR_BS_FN int gr_bs_index(const gr_bspline *bs, double i, double j, double k, double c[3]) {
  int ok = 1;
  for (int a = 0; a < 3; ++a) {
    c[a] = gr_bs_row(bs->cA, a, i, j, k);
    if (!(c[a] >= 1.0 && c[a] < (double)(bs->size[a] - 2))) ok = 0;
  }
  return ok;
}

/* The cubic B-spline kernel at distance u (elastix's expression and order). */
GR_BS_FN double gr_bs_weight(double u) {
  u = fabs(u);
  if (u < 1.0)
    return GR_BS_DIV(GR_BS_ADD(GR_BS_SUB(4.0, GR_BS_MUL(GR_BS_MUL(6.0, u), u)), GR_BS_MUL(GR_BS_MUL(GR_BS_MUL(3.0, u), u), u)),
                     6.0);
  if (u < 2.0) {
    const double v = GR_BS_SUB(2.0, u);
    return GR_BS_DIV(GR_BS_MUL(GR_BS_MUL(v, v), v), 6.0);
  }
  return 0.0;
}

/* u at voxel (i, j, k): the initial transform's displacement plus the B-spline's
 * 4^3-term sum (z, then y, then x, as elastix's host path sums). */
GR_BS_FN void gr_bs_field_at(const gr_bspline *bs, int64_t i, int64_t j, int64_t k, float out[3]) {
  const double di = (double)i, dj = (double)j, dk = (double)(k + bs->z0);
  double c[3], d[3] = {0.0, 0.0, 0.0};
  if (gr_bs_index(bs, di, dj, dk, c)) {
    int64_t st[3];
    double w[3][4];
    for (int a = 0; a < 3; ++a) {
      st[a] = (int64_t)floor(GR_BS_SUB(c[a], 1.0));
      for (int q = 0; q < 4; ++q) w[a][q] = gr_bs_weight(GR_BS_SUB(c[a], (double)(st[a] + q)));
    }
    const int64_t G = bs->size[0] * bs->size[1] * bs->size[2];
    for (int cz = 0; cz < 4; ++cz)
      for (int b = 0; b < 4; ++b) {
        const double wbc = GR_BS_MUL(w[2][cz], w[1][b]);
        const int64_t row = ((st[2] + cz) * bs->size[1] + (st[1] + b)) * bs->size[0] + st[0];
        for (int a = 0; a < 4; ++a) {
          const double ww = GR_BS_MUL(wbc, w[0][a]);
          for (int r = 0; r < 3; ++r) d[r] = GR_BS_ADD(d[r], GR_BS_MUL(ww, bs->coef[r * G + row + a]));
        }
      }
  }
  for (int r = 0; r < 3; ++r) out[r] = (float)GR_BS_ADD(gr_bs_row(bs->zA, r, di, dj, dk), d[r]);
}

/* Voxel box [lo, hi] (inclusive, clamped to the grid n) that holds every voxel
 * whose control index lies in [q + d0, q + d1] on each axis, mapped back
 * through iA (voxel index = iA [c 1]) and widened by one voxel. */
GR_BS_FN int64_t gr_bs_box_range(const double iA[12], const int64_t n[3], const int64_t q[3], double d0, double d1,
                                 int64_t lo[3], int64_t hi[3]) {
  double mn[3] = {INFINITY, INFINITY, INFINITY}, mx[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int corner = 0; corner < 8; ++corner) {
    const double c0 = (double)q[0] + ((corner & 1) ? d1 : d0), c1 = (double)q[1] + ((corner & 2) ? d1 : d0),
                 c2 = (double)q[2] + ((corner & 4) ? d1 : d0);
    for (int a = 0; a < 3; ++a) {
      const double v = gr_bs_row(iA, a, c0, c1, c2);
      mn[a] = v < mn[a] ? v : mn[a];
      mx[a] = v > mx[a] ? v : mx[a];
    }
  }
  int64_t count = 1;
  for (int a = 0; a < 3; ++a) {
    const double l = floor(mn[a]) - 1.0, h = ceil(mx[a]) + 1.0;
    lo[a] = l < 0.0 ? 0 : (l > (double)(n[a] - 1) ? n[a] : (int64_t)l);
    hi[a] = h > (double)(n[a] - 1) ? n[a] - 1 : (h < 0.0 ? -1 : (int64_t)h);
    count *= hi[a] >= lo[a] ? hi[a] - lo[a] + 1 : 0;
  }
  return count;
}

/* The voxels whose support includes control point q: c within (q - 2, q + 2). */
GR_BS_FN int64_t gr_bs_box(const double iA[12], const int64_t n[3], const int64_t q[3], int64_t lo[3], int64_t hi[3]) {
  return gr_bs_box_range(iA, n, q, -2.0, 2.0, lo, hi);
}

/* One voxel's term for control point q (absolute control index q, 3 weights'
 * product as elastix's host path forms it: (w_z w_y) w_x); 0 outside its support. */
GR_BS_FN double gr_bs_term(const gr_bspline *bs, const int64_t q[3], int64_t i, int64_t j, int64_t k) {
  double c[3];
  if (!gr_bs_index(bs, (double)i, (double)j, (double)k, c)) return 0.0;
  double w[3];
  for (int a = 0; a < 3; ++a) {
    /* in the support iff q - 3 <= floor(c - 1) <= q, i.e. |c - q| < 2 up to the zero-weight edge */
    const int64_t st = (int64_t)floor(GR_BS_SUB(c[a], 1.0));
    if (st > q[a] || st < q[a] - 3) return 0.0;
    w[a] = gr_bs_weight(GR_BS_SUB(c[a], (double)q[a]));
  }
  return GR_BS_MUL(GR_BS_MUL(w[2], w[1]), w[0]);
}

/* The ops' argument checks (host side of both backends). */
static inline gr_status gr_bs_check(const gr_grid *g, const gr_bspline *bs, const void *a, const void *b,
                                    const char *what, int allow_z0) {
  if (!g || !bs || !bs->coef || !a || !b) return gr_error(GR_ERR_INVALID_ARG, "%s: NULL argument", what);
  if (bs->z0 < 0 || (bs->z0 != 0 && !allow_z0))
    return gr_error(GR_ERR_INVALID_ARG, "%s: plane offset z0 %lld (%s)", what, (long long)bs->z0,
                    allow_z0 ? "must be >= 0" : "must be 0");
  for (int ax = 0; ax < 3; ++ax) {
    if (g->n[ax] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[ax], ax);
    if (bs->size[ax] < 4)
      return gr_error(GR_ERR_INVALID_ARG, "%s: %lld control points along axis %d (need >= 4)", what,
                      (long long)bs->size[ax], ax);
  }
  return GR_OK;
}

#undef GR_BS_FN
#endif
