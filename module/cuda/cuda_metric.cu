/* metric: argument checks (as cpu_metric.c), the warp map shared by every
 * metric, and dispatch to cuda_mse.cu / cuda_ncc.cu / cuda_lncc.cu / cuda_mi.cu.
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

gr_status metric(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid, const float *fixed,
                 const float *fixed_mask, const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                 const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u) {
  if (!spec || !fixed_grid || !moving_grid || !fixed || !moving || !res)
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
  if (spec->kind == GR_METRIC_LNCC && impl_of(be)->exact)
    return metric_lncc_exact(be, spec, fixed_grid, fixed, fixed_mask, moving_grid, moving, moving_mask, T, disp, res,
                             spec->want_field_grad ? grad_u : nullptr);
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
  c.want_affine = spec->want_affine_grad != 0;
  switch (spec->kind) {
    case GR_METRIC_MSE: return metric_mse(c, res);
    case GR_METRIC_NCC: return metric_ncc(c, res);
    case GR_METRIC_LNCC: return metric_lncc(c, res);
    case GR_METRIC_MI: return metric_mi(c, res);
  }
  return gr_error(GR_ERR_INVALID_ARG, "cuda metric: unknown metric kind %d", (int)spec->kind);
}

}  // namespace grcu
