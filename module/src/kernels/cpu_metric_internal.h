/* Shared machinery of the CPU fused metrics (cpu_metric.c dispatches to the
 * per-metric files cpu_mse.c, cpu_ncc.c, cpu_lncc.c, cpu_mi.c).
 *
 * The per-voxel warp helper is static inline here (not an extern function in
 * cpu_metric.c) because every metric calls it once or twice per voxel in its
 * innermost loop and it must inline there.
 *
 * Warp of fixed voxel x = (i,j,k):
 *   c = M * (i,j,k,1) + Q * u(x)      M = moving.p2i * T * fixed.i2p,
 *                                      Q = linear part of moving.p2i times A, u in mm
 *   i.e. y = A (x + u(x)) + t: the displacement acts before the affine (elastix chain)
 *   (the same composite as cpu_resample), then the border snap of cpu_interp.h.
 * Validity (MSE, NCC, MI) of fixed voxel x:
 *   (fixed_mask == NULL or fixed_mask(x) > 0.5)
 *   AND 0 <= c_a <= n_a - 1 on every axis a of the moving grid
 *   AND (moving_mask == NULL or moving_mask(nearest(c)) > 0.5).
 * W(y) and grad_idx W come from trilinear interpolation (cpu_interp.h rules),
 * grad_phys W = P^T grad_idx W; d loss / d y = (d loss / d W) grad_phys W.
 * LNCC uses its own rule (zero padding, see cpu_lncc.c).
 *
 * Field gradient: d loss / d u(x) = A^T d loss / d y.
 * Affine gradient: y = A (x_phys + u(x)) + t, so with p = x_phys + u(x)
 *   grad_affine[r*4+c] = sum_x dL/dy_r(x) * p_c   (c < 3)
 *   grad_affine[r*4+3] = sum_x dL/dy_r(x).
 *
 * Determinism: every reduction goes through per-z-slice (or per-row, summed in
 * row order) double partials that are combined in a fixed order afterwards, or
 * through integers; per-voxel outputs are pure functions of the inputs. Results
 * are therefore bitwise identical for any OpenMP thread count. */
#ifndef GIGAREG_CPU_METRIC_INTERNAL_H
#define GIGAREG_CPU_METRIC_INTERNAL_H

#include <stdint.h>
#include "gigareg/backend.h"
#include "kernels/cpu_interp.h"

/* Metric loops fork for volumes above this many voxels (per-voxel work is
 * heavier than in the vector ops, so the threshold is lower). */
#define CPU_METRIC_PAR_MIN ((int64_t)4096)

typedef struct cpu_metric_ctx {
  gr_backend *be;
  const gr_metric_spec *spec;
  int64_t fn[3], nvox; /* fixed grid */
  int64_t mn[3];       /* moving grid */
  int64_t mst[3];      /* moving upper-corner strides (cpu_inside_strides) */
  double M[12];        /* fixed index -> moving continuous index */
  double P[12];        /* moving p2i (its linear part maps mm to index offsets) */
  double Q[12];        /* P_lin * A: maps u (applied before the affine) to index offsets */
  double At[9];        /* A^T: d loss/d u = A^T d loss/d y */
  double X[12];        /* fixed i2p (x_phys for the affine gradient) */
  const float *fixed, *fmask, *moving, *mmask, *disp;
  float *grad_u;       /* NULL unless spec->want_field_grad */
  int want_affine;
  int nt;              /* OpenMP team size */
  int par;             /* fork at all (volume large enough) */
  /* Window of a global fixed grid (Grid Parallel, backend.h gr_metric_region);
   * a whole-grid call has zoff 0, own = [0, fn[2]) and reg NULL. Plane indices k
   * in the metric loops are local (memory); coordinates use k + zoff. */
  int64_t zoff;        /* global index of stored plane 0 */
  int64_t own0, own1;  /* stored planes whose voxels count (local indices) */
  int64_t nz_global;   /* planes of the whole fixed grid (LNCC window counts) */
  int64_t nvox_global; /* voxels of the whole fixed grid (MI fixed-point scale) */
  gr_metric_region *reg;
  const double *pre_w, *pre_g, *pre_mm; /* presampled moving values (ring sampler) or NULL */
} cpu_metric_ctx;

/* Continuous moving index of the start (i = 0) of fixed row (j, k), without u. */
static inline void cpu_metric_row(const cpu_metric_ctx *m, int64_t j, int64_t k, double row[3]) {
  const double kg = (double)(k + m->zoff);
  for (int r = 0; r < 3; ++r) row[r] = m->M[r * 4 + 1] * (double)j + m->M[r * 4 + 2] * kg + m->M[r * 4 + 3];
}

/* Point the affine acts on for fixed voxel (i, j, k) = flat index v: x_phys + u(x). */
static inline void cpu_metric_xphys(const cpu_metric_ctx *m, int64_t i, int64_t j, int64_t k, int64_t v, double x[3]) {
  for (int r = 0; r < 3; ++r)
    x[r] = m->X[r * 4] * (double)i + m->X[r * 4 + 1] * (double)j + m->X[r * 4 + 2] * (double)(k + m->zoff) +
           m->X[r * 4 + 3];
  if (m->disp)
    for (int r = 0; r < 3; ++r) x[r] += m->disp[r * m->nvox + v];
}

/* Continuous moving index of fixed voxel i of a row, u included, snapped. */
static inline void cpu_metric_index(const cpu_metric_ctx *m, const double row[3], int64_t i, int64_t v, double c[3]) {
  for (int r = 0; r < 3; ++r) c[r] = row[r] + m->M[r * 4] * (double)i;
  if (m->disp) {
    const double ux = m->disp[v], uy = m->disp[m->nvox + v], uz = m->disp[2 * m->nvox + v];
    for (int r = 0; r < 3; ++r) c[r] += m->Q[r * 4] * ux + m->Q[r * 4 + 1] * uy + m->Q[r * 4 + 2] * uz;
  }
  for (int r = 0; r < 3; ++r) c[r] = cpu_snap_index(c[r], m->mn[r]);
}

/* The shared per-voxel warp (MSE/NCC/MI rule). Returns 1 and W(y) (and, when
 * g_phys != NULL, grad_phys W) for a valid voxel; 0 otherwise. */
static inline int cpu_metric_warp(const cpu_metric_ctx *m, const double row[3], int64_t i, int64_t v, double *w,
                                  double *g_phys) {
  if (m->fmask && !(m->fmask[v] > 0.5f)) return 0;
  double c[3];
  cpu_metric_index(m, row, i, v, c);
  if (!cpu_inside3(m->mn, c)) return 0;
  if (m->pre_w) { /* the ring sampler already evaluated the moving image at y(x) */
    if (m->pre_mm && !(m->pre_mm[v] > 0.5)) return 0;
    *w = m->pre_w[v];
    if (g_phys) {
      const double g_idx[3] = {m->pre_g[v], m->pre_g[m->nvox + v], m->pre_g[2 * m->nvox + v]};
      cpu_grad_idx_to_phys(m->P, g_idx, g_phys);
    }
    return 1;
  }
  if (m->mmask && !(m->mmask[cpu_nearest_offset(m->mn, c, 1)] > 0.5f)) return 0;
  double t[3];
  const int64_t o = cpu_inside_cell(m->mn, c, t);
  if (!g_phys) {
    *w = cpu_inside_value(m->moving, o, m->mst, t);
    return 1;
  }
  double g_idx[3];
  *w = cpu_inside_value_grad(m->moving, o, m->mst, t, g_idx);
  cpu_grad_idx_to_phys(m->P, g_idx, g_phys);
  return 1;
}

/* acc += dL/dy (x) [x_phys, 1]. */
static inline void cpu_affine_accum(double *restrict acc, const double dldy[3], const double x[3]) {
  for (int r = 0; r < 3; ++r) {
    acc[r * 4 + 0] += dldy[r] * x[0];
    acc[r * 4 + 1] += dldy[r] * x[1];
    acc[r * 4 + 2] += dldy[r] * x[2];
    acc[r * 4 + 3] += dldy[r];
  }
}

/* grad_u(v) = A^T d, d = d loss / d y. */
static inline void cpu_grad_u_store(const cpu_metric_ctx *m, int64_t v, const double d[3]) {
  float *restrict gu = m->grad_u;
  const double *At = m->At;
  gu[v] = (float)(At[0] * d[0] + At[1] * d[1] + At[2] * d[2]);
  gu[m->nvox + v] = (float)(At[3] * d[0] + At[4] * d[1] + At[5] * d[2]);
  gu[2 * m->nvox + v] = (float)(At[6] * d[0] + At[7] * d[1] + At[8] * d[2]);
}

static inline void cpu_grad_u_zero(float *restrict gu, int64_t nvox, int64_t v) {
  gu[v] = gu[nvox + v] = gu[2 * nvox + v] = 0.0f;
}

/* ---- helpers in cpu_metric.c ------------------------------------------------- */
/* Accounted scratch; NULL (with gr_error recorded) on failure. */
void *cpu_metric_alloc(const cpu_metric_ctx *m, size_t bytes, const char *what);
void cpu_metric_free(const cpu_metric_ctx *m, void *p);
/* out[q] = sum over s = 0..nslices-1 (in order) of part[s*K + q]. */
void cpu_partials_sum(const double *part, int64_t nslices, int K, double *out);
/* grad_u *= scale (the metrics that learn N only after their single pass). */
void cpu_grad_u_scale(const cpu_metric_ctx *m, double scale);
/* The GR_ERR_EMPTY report shared by all metrics. */
gr_status cpu_metric_empty(const cpu_metric_ctx *m);

/* Window helpers: whether a call is the COUNT phase of a region, zeroing
 * grad_u outside the owned planes, and writing per-plane partials. */
static inline int cpu_metric_counting(const cpu_metric_ctx *m) {
  return m->reg && m->reg->phase == GR_METRIC_PHASE_COUNT;
}
void cpu_grad_u_zero_unowned(const cpu_metric_ctx *m);

/* ---- the metrics ---------------------------------------------------------------- */
gr_status cpu_metric_mse(const cpu_metric_ctx *m, gr_metric_result *res);
gr_status cpu_metric_ncc(const cpu_metric_ctx *m, gr_metric_result *res);
gr_status cpu_metric_lncc(const cpu_metric_ctx *m, gr_metric_result *res);
gr_status cpu_metric_mi(const cpu_metric_ctx *m, gr_metric_result *res);

#endif
