/* metric: argument checks (as cpu_metric.c), the warp map shared by every
 * metric, and dispatch to cuda_mse.cu / cuda_ncc.cu / cuda_lncc.cu / cuda_mi.cu;
 * 16-bit images (gr_metric_spec.fixed_u16 / moving_u16) go to the LNCC and MI
 * fast paths as they are, to every other path as float copies
 * (metric_u16_fallback).
 * Semantics (value, n_valid, grad_affine, grad_u, GR_ERR_EMPTY) are those of
 * cpu_metric.c; each metric file states its passes and scratch. */
#include <stdlib.h>
#include <string.h>
#include "cuda_ops.cuh"

namespace grcu {

WarpMap make_warp_map(const gr_grid *fixed, const gr_grid *moving, const gr_affine *T) {
  WarpMap m;
  composite_map(fixed, moving, T, m.M);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      m.P[r * 3 + c] = moving->p2i[r * 4 + c];
      m.At[r * 3 + c] = T ? T->m[c * 4 + r] : (double)(r == c);
    }
  disp_matrix(moving->p2i, T, m.Q);
  memcpy(m.X, fixed->i2p, sizeof m.X);
  m.f = dims_of(fixed);
  m.m = dims_of(moving);
  return m;
}

gr_status metric_empty(const MetricCall &c) {
  return gr_error(GR_ERR_EMPTY, "no overlap between fixed and warped moving image (%lld fixed voxels%s%s)",
                  (long long)c.map.f.nvox, c.im.fmask ? ", fixed mask" : "", c.im.mmask ? ", moving mask" : "");
}

__global__ void grad_scale_kernel(float *__restrict__ g, long long n, double scale) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    g[i] = (float)dmul((double)g[i], scale);
}

gr_status grad_u_scale(const MetricCall &c, double scale) {
  const long long n = 3 * c.map.f.nvox;
  grad_scale_kernel<<<flat_blocks(n), kBlock, 0, impl_of(c.be)->stream>>>(c.im.grad_u, n, scale);
  GRCU_LAUNCHED("gradient scaling kernel");
  return GR_OK;
}

gr_status metric_region(gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg, const gr_grid *fixed_grid,
                        const float *fixed, const float *fixed_mask, const gr_grid *moving_grid, const float *moving,
                        const float *moving_mask, const gr_affine *T, const float *disp, gr_metric_result *res,
                        float *grad_u);

/* GIGAREG_CUDA_EXACT: LNCC through the windowed kernel over the whole grid
 * (cuda_metric_region.cu, bitwise the CPU's) with the per-plane partials added
 * in plane order, as gr_sum_plane_partials adds them for any shard count: the
 * one-GPU run then equals the CPU and every sharded run bit for bit (the fast
 * kernel (fp32, cuda_lncc_fast.cu) is within ~1e-4 relative L2 in the gradient). */
static gr_status metric_lncc_exact(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid,
                                   const float *fixed, const float *fixed_mask, const gr_grid *moving_grid,
                                   const float *moving, const float *moving_mask, const gr_affine *T,
                                   const float *disp, gr_metric_result *res, float *grad_u) {
  const long long nz = fixed_grid->n[2];
  double *partials = (double *)malloc(sizeof(double) * (size_t)nz * GR_METRIC_PARTIALS);
  if (!partials) return gr_error(GR_ERR_NOMEM, "cuda LNCC (exact): %lld plane partials", nz);
  gr_metric_region reg;
  memset(&reg, 0, sizeof reg);
  reg.z0 = 0;
  reg.nz = nz;
  reg.own0 = 0;
  reg.own1 = nz;
  reg.partials = partials;
  reg.phase = GR_METRIC_PHASE_COUNT;
  gr_metric_result r;
  gr_status s = metric_region(be, spec, &reg, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp,
                              &r, grad_u);
  const int64_t n = r.n_valid;
  if (s == GR_OK && n == 0)
    s = gr_error(GR_ERR_EMPTY, "no overlap between fixed and warped moving image (%lld fixed voxels%s%s)",
                 (long long)(fixed_grid->n[0] * fixed_grid->n[1] * nz), fixed_mask ? ", fixed mask" : "",
                 moving_mask ? ", moving mask" : "");
  if (s == GR_OK) {
    reg.phase = GR_METRIC_PHASE_EVAL;
    reg.n_global = n;
    s = metric_region(be, spec, &reg, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp, &r,
                      grad_u);
  }
  if (s == GR_OK) {
    double tot[GR_METRIC_PARTIALS];
    for (int q = 0; q < GR_METRIC_PARTIALS; ++q) tot[q] = 0.0;
    for (long long z = 0; z < nz; ++z)
      for (int q = 0; q < GR_METRIC_PARTIALS; ++q) tot[q] += partials[z * GR_METRIC_PARTIALS + q];
    memset(res, 0, sizeof *res);
    res->n_valid = n;
    res->value = reg.value_scale * tot[0];
    if (spec->want_affine_grad)
      for (int q = 0; q < 12; ++q) res->grad_affine[q] = reg.affine_scale * tot[1 + q];
  }
  free(partials);
  return s;
}

/* A call with 16-bit images whose path reads float images only (MSE, NCC,
 * the double LNCC kernel, GIGAREG_CUDA_EXACT, LNCC SAMPLE64, MI off the fast
 * grid): the 16-bit images are unpacked into float scratch (the floats a
 * 16-bit read gives, cuda_u16.cu) and the float call runs on them, so the
 * result is the float call's on the rounded images by construction. These
 * paths are measurement options or off the registration's hot path; the
 * copies cost 4 B/voxel each while the call runs. */
static gr_status metric_u16_fallback(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid,
                                     const float *fixed, const float *fixed_mask, const gr_grid *moving_grid,
                                     const float *moving, const float *moving_mask, const gr_affine *T,
                                     const float *disp, gr_metric_result *res, float *grad_u) {
  const long long nf = dims_of(fixed_grid).nvox, nm = dims_of(moving_grid).nvox;
  float *f32 = nullptr, *m32 = nullptr;
  gr_status s = GR_OK;
  if (spec->fixed_u16) {
    f32 = (float *)scratch_alloc(be, (size_t)nf * sizeof(float),
                                 "float copy of the 16-bit fixed image (metric path without 16-bit reads)");
    s = f32 ? u16_unpack(be, nf, spec->fixed_u16, f32) : GR_ERR_NOMEM;
  }
  if (s == GR_OK && spec->moving_u16) {
    m32 = (float *)scratch_alloc(be, (size_t)nm * sizeof(float),
                                 "float copy of the 16-bit moving image (metric path without 16-bit reads)");
    s = m32 ? u16_unpack(be, nm, spec->moving_u16, m32) : GR_ERR_NOMEM;
  }
  if (s == GR_OK) {
    gr_metric_spec sp = *spec;
    sp.fixed_u16 = sp.moving_u16 = nullptr;
    s = metric(be, &sp, fixed_grid, f32 ? f32 : fixed, fixed_mask, moving_grid, m32 ? m32 : moving, moving_mask, T, disp,
               res, grad_u);
  }
  /* stream order: the pool hands the blocks out again only to later work */
  if (f32) scratch_free(be, f32);
  if (m32) scratch_free(be, m32);
  return s;
}

gr_status metric(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid, const float *fixed,
                 const float *fixed_mask, const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                 const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u) {
  if (!spec || !fixed_grid || !moving_grid || !(fixed || spec->fixed_u16) || !(moving || spec->moving_u16) || !res)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric: NULL spec, grid, image or result pointer");
  if (spec->want_field_grad && !grad_u)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric: want_field_grad set but grad_u is NULL");
  for (int d = 0; d < 3; ++d)
    if (fixed_grid->n[d] <= 0 || moving_grid->n[d] <= 0)
      return gr_error(GR_ERR_INVALID_ARG, "cuda metric: empty grid along axis %d (fixed %lld, moving %lld)", d,
                      (long long)fixed_grid->n[d], (long long)moving_grid->n[d]);
  memset(res, 0, sizeof *res);
  gr_status s = enter(be);
  if (s != GR_OK) return s;
  MetricCall c;
  c.be = be;
  c.spec = spec;
  c.map = make_warp_map(fixed_grid, moving_grid, T);
  c.im.fixed = fixed;
  c.im.fmask = fixed_mask;
  c.im.moving = moving;
  c.im.mmask = moving_mask;
  c.im.disp = disp;
  c.im.grad_u = spec->want_field_grad ? grad_u : nullptr;
  c.im.fixed16 = spec->fixed_u16;
  c.im.moving16 = spec->moving_u16;
  c.want_affine = spec->want_affine_grad != 0;
  const bool exact_lncc = spec->kind == GR_METRIC_LNCC && impl_of(be)->exact;
  if (c.im.fixed16 || c.im.moving16) {
    const bool direct = !exact_lncc && ((spec->kind == GR_METRIC_LNCC && lncc_reads_u16(c)) ||
                                        (spec->kind == GR_METRIC_MI && mi_reads_u16(c)));
    if (!direct)
      return metric_u16_fallback(be, spec, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp,
                                 res, grad_u);
  }
  if (exact_lncc)
    return metric_lncc_exact(be, spec, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp, res,
                             spec->want_field_grad ? grad_u : nullptr);
  switch (spec->kind) {
    case GR_METRIC_MSE: return metric_mse(c, res);
    case GR_METRIC_NCC: return metric_ncc(c, res);
    case GR_METRIC_LNCC: return metric_lncc(c, res);
    case GR_METRIC_MI: return metric_mi(c, res);
  }
  return gr_error(GR_ERR_INVALID_ARG, "cuda metric: unknown metric kind %d", (int)spec->kind);
}

}  // namespace grcu
