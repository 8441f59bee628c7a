/* cpu_metric: argument checks, the warp context shared by all metrics, and
 * dispatch on spec->kind to cpu_mse.c / cpu_ncc.c / cpu_lncc.c / cpu_mi.c.
 *
 * Semantics common to every metric (the per-metric files document their value
 * and gradient formulas):
 *   - the warp, the validity rule and the affine-gradient reduction are those
 *     written at the top of cpu_metric_internal.h;
 *   - res->value is the loss, res->n_valid the number of contributing fixed
 *     voxels, res->grad_affine = d loss / d [A | t] (row-major 3x4), filled when
 *     spec->want_affine_grad (zero otherwise);
 *   - grad_u (when spec->want_field_grad) receives d loss / d u(x) = d loss / d y
 *     (3 planes on the fixed grid, mm^-1) for every fixed voxel; voxels that do
 *     not influence the loss get 0;
 *   - no valid voxel -> GR_ERR_EMPTY ("no overlap between fixed and warped
 *     moving image"), res->value = 0, res->n_valid = 0.
 * Normalisation: every loss is a mean over the valid voxels, so grad_u and
 * grad_affine carry the 1/N factor. (A caller that splits the fixed volume
 * over ranks gets per-rank means; combining them needs n_valid weights.) */
#include <string.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_metric_internal.h"
#include "kernels/cpu_threads.h"

void *cpu_metric_alloc(const cpu_metric_ctx *m, size_t bytes, const char *what) {
  void *p = m->be->ops->alloc(m->be, bytes ? bytes : 1);
  if (!p) gr_error(GR_ERR_NOMEM, "cpu metric: cannot allocate %zu bytes of scratch for %s", bytes, what);
  return p;
}

void cpu_metric_free(const cpu_metric_ctx *m, void *p) {
  if (p) m->be->ops->free(m->be, p);
}

void cpu_partials_sum(const double *part, int64_t nslices, int K, double *out) {
  for (int q = 0; q < K; ++q) out[q] = 0.0;
  for (int64_t s = 0; s < nslices; ++s)
    for (int q = 0; q < K; ++q) out[q] += part[s * K + q];
}

void cpu_grad_u_scale(const cpu_metric_ctx *m, double scale) {
  float *restrict g = m->grad_u;
  const int64_t n = 3 * m->nvox;
#pragma omp parallel for simd schedule(static) num_threads(m->nt) if (m->par)
  for (int64_t i = 0; i < n; ++i) g[i] = (float)((double)g[i] * scale);
}

gr_status cpu_metric_empty(const cpu_metric_ctx *m) {
  return gr_error(GR_ERR_EMPTY,
                  "no overlap between fixed and warped moving image (%lld fixed voxels%s%s)",
                  (long long)m->nvox, m->fmask ? ", fixed mask" : "", m->mmask ? ", moving mask" : "");
}

static gr_status check_args(const gr_metric_spec *spec, const gr_grid *fg, const float *fixed, const gr_grid *mg,
                            const float *moving, const gr_metric_result *res, const float *grad_u) {
  if (spec && (spec->fixed_u16 || spec->moving_u16)) /* the driver rounds float images for this backend instead */
    return gr_error(GR_ERR_UNSUPPORTED, "cpu metric: 16-bit images need a backend with pack_u16");
  if (!spec || !fg || !mg || !fixed || !moving || !res)
    return gr_error(GR_ERR_INVALID_ARG, "cpu metric: NULL spec, grid, image or result pointer");
  if (spec->want_field_grad && !grad_u)
    return gr_error(GR_ERR_INVALID_ARG, "cpu metric: want_field_grad set but grad_u is NULL");
  for (int d = 0; d < 3; ++d)
    if (fg->n[d] <= 0 || mg->n[d] <= 0)
      return gr_error(GR_ERR_INVALID_ARG, "cpu metric: empty grid along axis %d (fixed %lld, moving %lld)", d,
                      (long long)fg->n[d], (long long)mg->n[d]);
  return GR_OK;
}

/* M = moving.p2i * T * fixed.i2p */
static void warp_matrix(const gr_grid *fg, const gr_grid *mg, const gr_affine *T, double M[12]) {
  gr_affine i2p, p2i, tmp, res;
  memcpy(i2p.m, fg->i2p, sizeof i2p.m);
  memcpy(p2i.m, mg->p2i, sizeof p2i.m);
  if (T) {
    gr_affine_compose(T, &i2p, &tmp);
    gr_affine_compose(&p2i, &tmp, &res);
  } else {
    gr_affine_compose(&p2i, &i2p, &res);
  }
  memcpy(M, res.m, sizeof res.m);
}

void cpu_grad_u_zero_unowned(const cpu_metric_ctx *m) {
  if (!m->grad_u) return;
  const int64_t P = m->fn[0] * m->fn[1];
  for (int c = 0; c < 3; ++c) {
    float *g = m->grad_u + c * m->nvox;
    if (m->own0 > 0) memset(g, 0, (size_t)(m->own0 * P) * sizeof(float));
    if (m->own1 < m->fn[2]) memset(g + m->own1 * P, 0, (size_t)((m->fn[2] - m->own1) * P) * sizeof(float));
  }
}

/* The context of a whole-grid call, or of a window (nz planes from z0) when reg is set. */
static void setup_ctx(cpu_metric_ctx *m, gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg,
                      const gr_grid *fixed_grid, const float *fixed, const float *fixed_mask,
                      const gr_grid *moving_grid, const float *moving, const float *moving_mask, const gr_affine *T,
                      const float *disp, float *grad_u) {
  memset(m, 0, sizeof *m);
  m->be = be;
  m->spec = spec;
  for (int d = 0; d < 3; ++d) {
    m->fn[d] = fixed_grid->n[d];
    m->mn[d] = moving_grid->n[d];
  }
  m->nz_global = fixed_grid->n[2];
  m->nvox_global = m->fn[0] * m->fn[1] * m->fn[2];
  if (reg) m->fn[2] = reg->nz;
  m->nvox = m->fn[0] * m->fn[1] * m->fn[2];
  m->zoff = reg ? reg->z0 : 0;
  m->own0 = reg ? reg->own0 - reg->z0 : 0;
  m->own1 = reg ? reg->own1 - reg->z0 : m->fn[2];
  m->reg = reg;
  if (reg) {
    m->pre_w = reg->pre_w;
    m->pre_g = reg->pre_g;
    m->pre_mm = reg->pre_mmask;
  }
  cpu_inside_strides(m->mn, m->mst);
  warp_matrix(fixed_grid, moving_grid, T, m->M);
  memcpy(m->P, moving_grid->p2i, sizeof m->P);
  cpu_disp_matrix(moving_grid->p2i, T, m->Q);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m->At[r * 3 + c] = T ? T->m[c * 4 + r] : (double)(r == c);
  memcpy(m->X, fixed_grid->i2p, sizeof m->X);
  m->fixed = fixed;
  m->fmask = fixed_mask;
  m->moving = moving;
  m->mmask = moving_mask;
  m->disp = disp;
  m->grad_u = spec->want_field_grad ? grad_u : NULL;
  m->want_affine = spec->want_affine_grad != 0;
  m->nt = cpu_nthreads(be);
  m->par = m->nvox >= CPU_METRIC_PAR_MIN;
}

static gr_status dispatch(const cpu_metric_ctx *m, gr_metric_result *res) {
  switch (m->spec->kind) {
    case GR_METRIC_MSE: return cpu_metric_mse(m, res);
    case GR_METRIC_NCC:
      if (m->reg)
        return gr_error(GR_ERR_UNSUPPORTED, "cpu metric: NCC on a window (sharded registration) is not implemented; "
                                            "use LNCC, MI or MSE");
      return cpu_metric_ncc(m, res);
    case GR_METRIC_LNCC: return cpu_metric_lncc(m, res);
    case GR_METRIC_MI: return cpu_metric_mi(m, res);
  }
  return gr_error(GR_ERR_INVALID_ARG, "cpu metric: unknown metric kind %d", (int)m->spec->kind);
}

gr_status cpu_metric(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid, const float *fixed,
                     const float *fixed_mask, const gr_grid *moving_grid, const float *moving,
                     const float *moving_mask, const gr_affine *T, const float *disp, gr_metric_result *res,
                     float *grad_u) {
  const gr_status st = check_args(spec, fixed_grid, fixed, moving_grid, moving, res, grad_u);
  if (st != GR_OK) return st;
  memset(res, 0, sizeof *res);
  cpu_metric_ctx m;
  setup_ctx(&m, be, spec, NULL, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp, grad_u);
  return dispatch(&m, res);
}

gr_status cpu_metric_region(gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg,
                            const gr_grid *fixed_grid, const float *fixed, const float *fixed_mask,
                            const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                            const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u) {
  if (!reg) return gr_error(GR_ERR_INVALID_ARG, "cpu metric_region: NULL region");
  /* With presampled values the moving image itself is not read. */
  const float *mv = reg->pre_w ? fixed : moving;
  gr_status st = check_args(spec, fixed_grid, fixed, moving_grid, mv, res, grad_u);
  if (st != GR_OK) return st;
  if (reg->z0 < 0 || reg->nz < 1 || reg->z0 + reg->nz > fixed_grid->n[2] || reg->own0 < reg->z0 ||
      reg->own1 > reg->z0 + reg->nz || reg->own1 < reg->own0)
    return gr_error(GR_ERR_INVALID_ARG, "cpu metric_region: window [%lld, %lld) owned [%lld, %lld) of %lld planes",
                    (long long)reg->z0, (long long)(reg->z0 + reg->nz), (long long)reg->own0, (long long)reg->own1,
                    (long long)fixed_grid->n[2]);
  if (reg->pre_w && !reg->pre_g && (spec->want_field_grad || spec->want_affine_grad))
    return gr_error(GR_ERR_INVALID_ARG, "cpu metric_region: presampled values without their gradient");
  if (spec->kind == GR_METRIC_MI && !reg->hist)
    return gr_error(GR_ERR_INVALID_ARG, "cpu metric_region: MI needs the histogram buffer");
  if (reg->phase == GR_METRIC_PHASE_EVAL && !reg->partials)
    return gr_error(GR_ERR_INVALID_ARG, "cpu metric_region: EVAL needs the partials buffer");
  memset(res, 0, sizeof *res);
  reg->value_scale = reg->affine_scale = 0.0;
  cpu_metric_ctx m;
  setup_ctx(&m, be, spec, reg, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp, grad_u);
  if (reg->phase == GR_METRIC_PHASE_COUNT) { /* counting only: no gradient */
    m.grad_u = NULL;
    m.want_affine = 0;
  }
  return dispatch(&m, res);
}
