/* Distributed metric: ring-sampled moving values, a windowed metric in two
 * phases around the integer all-reduce, and per-plane partials gathered in
 * global plane order. Every reduction is exact (integers) or ordered (the
 * planes of all ranks added in plane order, as one process adds them), so the
 * value, N and affine gradient are bitwise those of the single-process metric
 * and identical on every rank; convergence decisions taken from them agree. */
#include <stdlib.h>
#include <string.h>
#include "parallel/gp.h"

gr_status gr_dist_metric(gr_backend *be, gr_comm *c, const gr_dist_metric_args *a, gr_metric_result *res,
                         float *grad_u, gr_ring_stats *stats) {
  if (!be->ops->metric_region || !be->ops->sample_slab)
    return gr_error(GR_ERR_UNSUPPORTED, "backend '%s' has no windowed metric / slab sampler: sharded registration needs them",
                    be->ops->name);
  const gr_shard *fs = a->fs;
  const gr_metric_spec *spec = a->spec;
  const int want_grad = spec->want_field_grad || spec->want_affine_grad;
  const int64_t n = fs->nloc;
  const int B = spec->kind == GR_METRIC_MI ? (spec->mi_bins > 0 ? spec->mi_bins : 32) : 0;
  /* The validity of MSE/MI points needs no data; LNCC and the moving mask do. */
  double *w = be->ops->alloc(be, (size_t)n * sizeof(double));
  double *g = want_grad ? be->ops->alloc(be, (size_t)n * 3 * sizeof(double)) : NULL;
  double *mm = a->moving_mask ? be->ops->alloc(be, (size_t)n * sizeof(double)) : NULL;
  int64_t *red = malloc(sizeof(int64_t) * (size_t)(1 + B * B));
  double *partials = malloc(sizeof(double) * (size_t)(fs->own1 - fs->own0) * GR_METRIC_PARTIALS);
  gr_status s = (w && (g || !want_grad) && (mm || !a->moving_mask) && red && partials) ? GR_OK : GR_ERR_NOMEM;
  if (s == GR_ERR_NOMEM) gr_error(GR_ERR_NOMEM, "distributed metric: scratch for %lld voxels", (long long)n);

  gr_slab_sample pts;
  memset(&pts, 0, sizeof pts);
  pts.out_grid = &fs->global;
  pts.out_z0 = fs->ext0;
  pts.out_nz = fs->ext1 - fs->ext0;
  pts.T = a->T;
  pts.disp = a->disp;
  pts.interp = GR_INTERP_LINEAR;
  pts.boundary = GR_BOUNDARY_ZERO;
  int64_t mz0, mz1;
  gr_decomp_slab(a->moving_grid->n[2], fs->nranks, fs->rank, &mz0, &mz1);
  const int64_t mslab = (mz1 - mz0) * a->moving_grid->n[0] * a->moving_grid->n[1];
  if (s == GR_OK) {
    const gr_ring_image img = {a->moving_grid, a->moving, 1, mslab};
    pts.acc = w;
    pts.acc_grad = g;
    s = gr_ring_sample(be, c, &img, &pts, stats);
  }
  if (s == GR_OK && a->moving_mask) {
    const gr_ring_image img = {a->moving_grid, a->moving_mask, 1, mslab};
    pts.acc = mm;
    pts.acc_grad = NULL;
    pts.interp = GR_INTERP_NEAREST;
    s = gr_ring_sample(be, c, &img, &pts, NULL);
  }
  gr_metric_region reg;
  memset(&reg, 0, sizeof reg);
  reg.z0 = fs->ext0;
  reg.nz = fs->ext1 - fs->ext0;
  reg.own0 = fs->own0;
  reg.own1 = fs->own1;
  reg.hist = red ? red + 1 : NULL;
  reg.partials = partials;
  reg.pre_w = w;
  reg.pre_g = g;
  reg.pre_mmask = mm;
  gr_metric_result r;
  if (s == GR_OK) {
    reg.phase = GR_METRIC_PHASE_COUNT;
    s = be->ops->metric_region(be, spec, &reg, &fs->global, a->fixed, a->fixed_mask, a->moving_grid, NULL, NULL, a->T,
                               a->disp, &r, grad_u);
  }
  if (s == GR_OK) {
    red[0] = r.n_valid;
    s = c->ops->allreduce_sum_i64(c, red, 1 + B * B);
  }
  if (s == GR_OK && red[0] == 0)
    s = gr_error(GR_ERR_EMPTY, "no overlap between fixed and warped moving image (all %d shards)", fs->nranks);
  if (s == GR_OK) {
    reg.phase = GR_METRIC_PHASE_EVAL;
    reg.n_global = red[0];
    s = be->ops->metric_region(be, spec, &reg, &fs->global, a->fixed, a->fixed_mask, a->moving_grid, NULL, NULL, a->T,
                               a->disp, &r, grad_u);
  }
  double tot[GR_METRIC_PARTIALS];
  if (s == GR_OK) s = gr_sum_plane_partials(c, fs->global.n[2], partials, GR_METRIC_PARTIALS, tot);
  if (s == GR_OK) {
    memset(res, 0, sizeof *res);
    res->n_valid = red[0];
    res->value = spec->kind == GR_METRIC_MI ? r.value : reg.value_scale * tot[0];
    if (spec->want_affine_grad)
      for (int q = 0; q < 12; ++q) res->grad_affine[q] = reg.affine_scale * tot[1 + q];
  }
  if (w) be->ops->free(be, w);
  if (g) be->ops->free(be, g);
  if (mm) be->ops->free(be, mm);
  free(red);
  free(partials);
  return s;
}
