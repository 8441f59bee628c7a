/* Displacement-field kernels: compose, invert, jacobian_det.
 * All fields are 3 planes of physical (mm) displacements on grid g. Sample
 * positions x + s(x) are converted to continuous indices as idx + p2i_lin * s(x):
 * mathematically the same as p2i * (i2p * idx + s), without the round-off of a
 * round trip through millimetre coordinates far from the origin. compose,
 * adam_compose and invert follow the field rule of field_lerp.h (offsets,
 * cell and interpolation in float), which the CUDA twin and the Grid Parallel
 * sampler share. */
#include <math.h>
#include <string.h>
#include "kernels/bf16.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"
#include "kernels/field_lerp.h"

typedef struct field_dims {
  int64_t nx, ny, nz, nxy, nvox;
  int64_t st[3]; /* upper-corner strides {1, nx, nxy}, 0 along one-sample axes */
  double L[9];   /* linear part of p2i: voxel offset per mm */
  float Lf[9];   /* the same rounded to float: the field rule's offsets (field_lerp.h) */
} field_dims;

static field_dims field_dims_of(const gr_grid *g) {
  field_dims d;
  d.nx = g->n[0];
  d.ny = g->n[1];
  d.nz = g->n[2];
  d.nxy = d.nx * d.ny;
  d.nvox = d.nxy * d.nz;
  d.st[0] = d.nx > 1 ? 1 : 0;
  d.st[1] = d.ny > 1 ? d.nx : 0;
  d.st[2] = d.nz > 1 ? d.nxy : 0;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      d.L[r * 3 + c] = g->p2i[r * 4 + c];
      d.Lf[r * 3 + c] = (float)g->p2i[r * 4 + c];
    }
  return d;
}

/* All three planes of field u at x + s (x = (i, j, k), s in mm), trilinear in
 * float with CLAMP boundary: the field rule of field_lerp.h. The stencil is
 * computed once and shared by the planes. */
static inline void sample3_field(const float *restrict u, const field_dims *d, int64_t i, int64_t j, int64_t k,
                                 const float s[3], float out[3]) {
  const float *L = d->Lf;
  float wx[2], wy[2], wz[2];
  const int64_t o = gr_field_cell(k, gr_field_offset(L + 6, s[0], s[1], s[2]), d->nz, wz) * d->nxy +
                    gr_field_cell(j, gr_field_offset(L + 3, s[0], s[1], s[2]), d->ny, wy) * d->nx +
                    gr_field_cell(i, gr_field_offset(L, s[0], s[1], s[2]), d->nx, wx);
  const int64_t sx = d->st[0], sy = d->st[1], sz = d->st[2];
  for (int q = 0; q < 3; ++q) {
    const float *p = u + q * d->nvox + o;
    const float v[8] = {p[0], p[sx], p[sy], p[sy + sx], p[sz], p[sz + sx], p[sz + sy], p[sz + sy + sx]};
    out[q] = gr_tri_f(v, wx, wy, wz);
  }
}

/* ---- compose / fixed-point step ---------------------------------------------- */
typedef enum warp_mode {
  WARP_COMPOSE,    /* out(x) = s(x) + u(x + s(x)) */
  WARP_NEG_SAMPLE  /* out(x) = -u(x + s(x)): one fixed-point step of the inverse */
} warp_mode;

/* The step of the fused update: s = scale * Adam direction from m, v. */
typedef struct adam_step {
  const gr_adam_rule *rule;
  gr_moments mom;
  float scale;
} adam_step;

/* s(x) at voxel i: read from s, or (adam != NULL) formed from the moments
 * exactly as axpy forms it from adam_direction's output (scale * dir + 0). */
static inline void step_at(const float *s, const adam_step *adam, int64_t i, int64_t nvox, float out[3]) {
  for (int c = 0; c < 3; ++c) {
    const int64_t k = i + c * nvox;
    out[c] = adam ? adam->scale * cpu_adam_dir(adam->rule, gr_moment_load(adam->mom.m, adam->mom.bf16, k),
                                               gr_moment_load(adam->mom.v, adam->mom.bf16, k)) +
                        0.0f
                  : s[k];
  }
}

/* out may alias s (each voxel reads its own s before writing), never u. */
static void warp_pass(gr_backend *be, const field_dims *d, const float *restrict u, const float *s,
                      const adam_step *adam, float *out, warp_mode mode) {
  (void)be;
  const int64_t nx = d->nx, ny = d->ny, nz = d->nz, nvox = d->nvox;
#pragma omp parallel for collapse(2) schedule(static) num_threads(cpu_nthreads(be)) if (nvox >= CPU_PAR_MIN_ELEMS)
  for (int64_t z = 0; z < nz; ++z) {
    for (int64_t y = 0; y < ny; ++y) {
      const int64_t row = z * d->nxy + y * nx;
      for (int64_t x = 0; x < nx; ++x) {
        const int64_t i = row + x;
        float sv[3], a[3];
        step_at(s, adam, i, nvox, sv);
        sample3_field(u, d, x, y, z, sv, a);
        for (int q = 0; q < 3; ++q) out[i + q * nvox] = mode == WARP_COMPOSE ? sv[q] + a[q] : -a[q];
      }
    }
  }
}

static gr_status check_grid(const gr_grid *g, const char *what) {
  if (!g) return gr_error(GR_ERR_INVALID_ARG, "%s: NULL grid", what);
  for (int a = 0; a < 3; ++a)
    if (g->n[a] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[a], a);
  return GR_OK;
}

gr_status cpu_compose(gr_backend *be, const gr_grid *g, const float *u, const float *s, float *out) {
  gr_status st = check_grid(g, "compose");
  if (st != GR_OK) return st;
  if (!u || !s || !out) return gr_error(GR_ERR_INVALID_ARG, "compose: NULL field");
  if (out == u) return gr_error(GR_ERR_INVALID_ARG, "compose: output must not alias u (it is sampled at moved points)");
  const field_dims d = field_dims_of(g);
  warp_pass(be, &d, u, s, NULL, out, WARP_COMPOSE);
  return GR_OK;
}

gr_status cpu_adam_compose(gr_backend *be, const gr_grid *g, gr_moments mom, double b1, double b2, double eps,
                           int t, float scale, const float *u, float *out) {
  gr_status st = check_grid(g, "adam_compose");
  if (st != GR_OK) return st;
  if (!mom.m || !mom.v || !u || !out) return gr_error(GR_ERR_INVALID_ARG, "adam_compose: NULL field");
  if ((const void *)out == (const void *)u || (void *)out == mom.m || (void *)out == mom.v)
    return gr_error(GR_ERR_INVALID_ARG, "adam_compose: output must not alias u, m or v");
  gr_adam_rule r;
  st = gr_adam_rule_make("adam_compose", b1, b2, eps, t, &r);
  if (st != GR_OK) return st;
  const adam_step adam = {&r, mom, scale};
  const field_dims d = field_dims_of(g);
  warp_pass(be, &d, u, NULL, &adam, out, WARP_COMPOSE);
  return GR_OK;
}

/* Fixed-point (Jacobi) iteration v <- -u(y + v(y)) from v = -u. Each pass reads
 * the whole previous iterate, so it ping-pongs between inv and one scratch
 * field; an in-place (Gauss-Seidel) update would depend on the thread schedule.
 * Converges where |grad u| < 1 in voxel-consistent norms, i.e. for invertible
 * smooth fields. */
gr_status cpu_invert(gr_backend *be, const gr_grid *g, const float *u, float *inv, int iterations) {
  gr_status st = check_grid(g, "invert");
  if (st != GR_OK) return st;
  if (!u || !inv) return gr_error(GR_ERR_INVALID_ARG, "invert: NULL field");
  if (inv == u) return gr_error(GR_ERR_INVALID_ARG, "invert: output must not alias the input field");
  if (iterations < 0) return gr_error(GR_ERR_INVALID_ARG, "invert: %d iterations (must be >= 0)", iterations);
  const field_dims d = field_dims_of(g);
  const int64_t n = 3 * d.nvox;
#pragma omp parallel for simd schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; ++i) inv[i] = -u[i];
  if (iterations == 0) return GR_OK;

  float *tmp = be->ops->alloc(be, (size_t)n * sizeof(float));
  if (!tmp) return GR_ERR_NOMEM; /* alloc recorded the details */
  float *cur = inv, *next = tmp;
  for (int it = 0; it < iterations; ++it) {
    warp_pass(be, &d, u, cur, NULL, next, WARP_NEG_SAMPLE);
    float *t = cur;
    cur = next;
    next = t;
  }
  if (cur != inv) memcpy(inv, cur, (size_t)n * sizeof(float));
  be->ops->free(be, tmp);
  return GR_OK;
}

/* ---- Jacobian determinant ----------------------------------------------------- */
static inline double det3(const double m[9]) {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
         m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/* Neighbours along one axis: central difference inside, one-sided at the
 * borders, no derivative (0) on a one-sample axis. */
typedef struct diff_taps {
  int64_t minus, plus; /* offsets in samples along the axis, relative to the voxel */
  double inv_h;
} diff_taps;

static inline diff_taps diff_at(int64_t i, int64_t n) {
  diff_taps t = {0, 0, 0.0};
  if (n < 2) return t;
  t.minus = i > 0 ? -1 : 0;
  t.plus = i < n - 1 ? 1 : 0;
  t.inv_h = 1.0 / (double)(t.plus - t.minus);
  return t;
}

/* det(I + du/dx_phys), du/dx_phys = du/didx * p2i_lin (chain rule through idx = p2i x). */
gr_status cpu_jacobian_det(gr_backend *be, const gr_grid *g, const float *u, float *out) {
  (void)be;
  gr_status st = check_grid(g, "jacobian_det");
  if (st != GR_OK) return st;
  if (!u || !out) return gr_error(GR_ERR_INVALID_ARG, "jacobian_det: NULL field");
  const field_dims d = field_dims_of(g);
  const int64_t nx = d.nx, ny = d.ny, nz = d.nz, nxy = d.nxy, nvox = d.nvox;
  const double *L = d.L;
#pragma omp parallel for collapse(2) schedule(static) num_threads(cpu_nthreads(be)) if (nvox >= CPU_PAR_MIN_ELEMS)
  for (int64_t z = 0; z < nz; ++z) {
    for (int64_t y = 0; y < ny; ++y) {
      const diff_taps ty = diff_at(y, ny), tz = diff_at(z, nz);
      for (int64_t x = 0; x < nx; ++x) {
        const diff_taps tx = diff_at(x, nx);
        const int64_t i = z * nxy + y * nx + x;
        double gi[9]; /* gi[c*3 + j] = d u_c / d idx_j */
        for (int c = 0; c < 3; ++c) {
          const float *p = u + c * nvox + i;
          gi[c * 3 + 0] = ((double)p[tx.plus] - p[tx.minus]) * tx.inv_h;
          gi[c * 3 + 1] = ((double)p[ty.plus * nx] - p[ty.minus * nx]) * ty.inv_h;
          gi[c * 3 + 2] = ((double)p[tz.plus * nxy] - p[tz.minus * nxy]) * tz.inv_h;
        }
        double J[9];
        for (int c = 0; c < 3; ++c)
          for (int k = 0; k < 3; ++k)
            J[c * 3 + k] = (c == k ? 1.0 : 0.0) + gi[c * 3] * L[k] + gi[c * 3 + 1] * L[3 + k] + gi[c * 3 + 2] * L[6 + k];
        out[i] = (float)det3(J);
      }
    }
  }
  return GR_OK;
}
