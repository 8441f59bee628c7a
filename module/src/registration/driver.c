/* gr_register: validation, intensity normalisation, upload, and the stage loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "registration/reg_internal.h"

static gr_status check_mask(const gr_image *mask, const gr_image *img, const char *what) {
  if (!mask) return GR_OK;
  if (!gr_geometry_same(&mask->geom, &img->geom))
    return gr_error(GR_ERR_MISMATCH, "%s mask grid (%lldx%lldx%lld) differs from its image grid (%lldx%lldx%lld, or other spacing/origin/direction)",
                    what, (long long)mask->geom.size[0], (long long)mask->geom.size[1], (long long)mask->geom.size[2],
                    (long long)img->geom.size[0], (long long)img->geom.size[1], (long long)img->geom.size[2]);
  const int64_t n = gr_image_nvox(mask);
  for (int64_t i = 0; i < n; ++i)
    if (mask->data[i] > 0.5f) return GR_OK;
  return gr_error(GR_ERR_EMPTY, "%s mask is empty (no voxel > 0)", what);
}

static gr_status check_stage(const gr_stage_config *c, int k) {
  if (c->levels < 1 || c->levels > GR_MAX_LEVELS)
    return gr_error(GR_ERR_PARAM, "stage %d: NumberOfResolutions %d must be in 1..%d", k, c->levels, GR_MAX_LEVELS);
  for (int l = 0; l < c->levels; ++l) {
    if (c->iterations[l] < 0)
      return gr_error(GR_ERR_PARAM, "stage %d: MaximumNumberOfIterations %d must be >= 0", k, c->iterations[l]);
    if (!(c->shrink[l] >= 1.0))
      return gr_error(GR_ERR_PARAM, "stage %d: pyramid factor %g must be >= 1", k, c->shrink[l]);
    if (!(c->sigma_vox[l] >= 0.0))
      return gr_error(GR_ERR_PARAM, "stage %d: smoothing sigma %g must be >= 0", k, c->sigma_vox[l]);
  }
  if (c->metric.kind == GR_METRIC_MI && c->metric.mi_bins < 6)
    return gr_error(GR_ERR_PARAM, "stage %d: NumberOfHistogramBins %d must be >= 6", k, c->metric.mi_bins);
  if (c->metric.kind == GR_METRIC_LNCC && c->metric.lncc_radius < 1)
    return gr_error(GR_ERR_PARAM, "stage %d: LNCC radius %d must be >= 1", k, c->metric.lncc_radius);
  return GR_OK;
}

/* Map intensities to [0, 1] with (lo, hi) and upload. */
static gr_status upload_normalised(gr_backend *be, const gr_image *img, double lo, double hi, float **out) {
  const int64_t n = gr_image_nvox(img);
  float *tmp = malloc((size_t)n * sizeof(float));
  if (!tmp) return gr_error(GR_ERR_NOMEM, "cannot allocate %lld bytes for intensity normalisation", (long long)n * 4);
  const double scale = hi > lo ? 1.0 / (hi - lo) : 1.0;
  for (int64_t i = 0; i < n; ++i) tmp[i] = (float)((img->data[i] - lo) * scale);
  gr_status s = GR_OK;
  *out = be->ops->alloc(be, (size_t)n * sizeof(float));
  if (!*out) s = GR_ERR_NOMEM;
  if (s == GR_OK) s = be->ops->upload(be, *out, tmp, (size_t)n * sizeof(float));
  free(tmp);
  return s;
}

static gr_status upload_raw(gr_backend *be, const gr_image *img, float **out) {
  const size_t bytes = (size_t)gr_image_nvox(img) * sizeof(float);
  *out = be->ops->alloc(be, bytes);
  if (!*out) return GR_ERR_NOMEM;
  return be->ops->upload(be, *out, img->data, bytes);
}

static void image_range(const gr_image *img, double *lo, double *hi) {
  const int64_t n = gr_image_nvox(img);
  double a = img->data[0], b = img->data[0];
  for (int64_t i = 1; i < n; ++i) {
    if (img->data[i] < a) a = img->data[i];
    if (img->data[i] > b) b = img->data[i];
  }
  *lo = a;
  *hi = b;
}

static gr_status prepare(gr_reg_ctx *c, const gr_stage_config *stages, int nstages) {
  gr_status s = gr_image_check_finite(c->fixed, "fixed image");
  if (s == GR_OK) s = gr_image_check_finite(c->moving, "moving image");
  if (s == GR_OK) s = check_mask(c->fixed_mask, c->fixed, "fixed");
  if (s == GR_OK) s = check_mask(c->moving_mask, c->moving, "moving");
  for (int k = 0; s == GR_OK && k < nstages; ++k) s = check_stage(&stages[k], k);
  if (s == GR_OK) s = gr_grid_from_geometry(&c->fixed->geom, &c->fixed_grid);
  if (s == GR_OK) s = gr_grid_from_geometry(&c->moving->geom, &c->moving_grid);
  if (s != GR_OK) return s;
  double flo, fhi, mlo, mhi;
  image_range(c->fixed, &flo, &fhi);
  image_range(c->moving, &mlo, &mhi);
  if (!(fhi > flo)) return gr_error(GR_ERR_EMPTY, "fixed image is constant (%g): nothing to register", flo);
  if (!(mhi > mlo)) return gr_error(GR_ERR_EMPTY, "moving image is constant (%g): nothing to register", mlo);
  /* MSE compares raw intensities, so both images share one scale; the other
   * metrics are invariant to per-image affine intensity changes. */
  int any_mse = 0;
  for (int k = 0; k < nstages; ++k) any_mse |= stages[k].metric.kind == GR_METRIC_MSE;
  if (any_mse) {
    flo = mlo = fmin(flo, mlo);
    fhi = mhi = fmax(fhi, mhi);
  }
  s = upload_normalised(c->be, c->fixed, flo, fhi, &c->fixed_norm);
  if (s == GR_OK) s = upload_normalised(c->be, c->moving, mlo, mhi, &c->moving_norm);
  if (s == GR_OK && c->fixed_mask) s = upload_raw(c->be, c->fixed_mask, &c->fixed_mask_dev);
  if (s == GR_OK && c->moving_mask) s = upload_raw(c->be, c->moving_mask, &c->moving_mask_dev);
  return s;
}

static void release(gr_reg_ctx *c) {
  float *bufs[4] = {c->fixed_norm, c->moving_norm, c->fixed_mask_dev, c->moving_mask_dev};
  for (int i = 0; i < 4; ++i)
    if (bufs[i]) c->be->ops->free(c->be, bufs[i]);
}

gr_status gr_chain_affine(const gr_affine *initial, const gr_stage_result *r, int n, int upto, gr_affine *out) {
  if (initial) *out = *initial;
  else gr_affine_identity(out);
  for (int k = 0; k < n && k < upto; ++k) {
    if (r[k].kind == GR_STAGE_GREEDY || r[k].kind == GR_STAGE_SYN) {
      if (k + 1 < upto && r[k + 1].kind != GR_STAGE_GREEDY && r[k + 1].kind != GR_STAGE_SYN)
        return gr_error(GR_ERR_UNSUPPORTED, "a linear stage after a deformable stage is not supported");
      continue;
    }
    gr_affine T, M;
    if (r[k].kind == GR_STAGE_RIGID) gr_euler_to_affine(r[k].params, r[k].center, &T);
    else if (r[k].kind == GR_STAGE_AFFINE) gr_affine_params_to_affine(r[k].params, r[k].center, &T);
    else {
      gr_affine_identity(&T);
      for (int i = 0; i < 3; ++i) T.m[i * 4 + 3] = r[k].params[i];
    }
    gr_affine_compose(&T, out, &M); /* elastix: a later stage acts on the earlier stages' output */
    *out = M;
  }
  return GR_OK;
}

gr_status gr_register(gr_backend *be, gr_comm *comm, const gr_image *fixed, const gr_image *moving,
                      const gr_image *fixed_mask, const gr_image *moving_mask, const gr_affine *initial,
                      const gr_stage_config *stages, int nstages, const gr_reg_options *opt, gr_stage_result *out) {
  if (!be || !comm || !fixed || !moving || !stages || nstages < 1 || !out)
    return gr_error(GR_ERR_INVALID_ARG, "gr_register: missing argument");
  if (fixed->ncomp != 1 || moving->ncomp != 1)
    return gr_error(GR_ERR_UNSUPPORTED, "registration needs scalar images (got %d and %d components)", fixed->ncomp,
                    moving->ncomp);
  for (int k = 0; k < nstages; ++k) memset(&out[k], 0, sizeof out[k]);
  gr_reg_ctx c;
  memset(&c, 0, sizeof c);
  c.be = be;
  c.comm = comm;
  c.fixed = fixed;
  c.moving = moving;
  c.fixed_mask = fixed_mask;
  c.moving_mask = moving_mask;
  c.opt = opt;
  c.nstages = nstages;
  c.t0 = gr_wall_seconds();
  gr_status s = prepare(&c, stages, nstages);
  for (int k = 0; s == GR_OK && k < nstages; ++k) {
    c.stage = k;
    gr_affine pre;
    s = gr_chain_affine(initial, out, nstages, k, &pre);
    if (s != GR_OK) break;
    gr_stage_config cfg = stages[k];
    if (k > 0) cfg.init = GR_INIT_NONE; /* only the first stage initialises from centres */
    if (initial) cfg.init = GR_INIT_NONE;
    switch (cfg.kind) {
      case GR_STAGE_TRANSLATION:
      case GR_STAGE_RIGID:
      case GR_STAGE_AFFINE: s = gr_stage_linear(&c, &cfg, &pre, &out[k]); break;
      case GR_STAGE_GREEDY: s = gr_stage_greedy(&c, &cfg, &pre, &out[k]); break;
      case GR_STAGE_SYN: s = gr_stage_syn(&c, &cfg, &pre, &out[k]); break;
    }
  }
  release(&c);
  if (s != GR_OK)
    for (int k = 0; k < nstages; ++k) gr_stage_result_clear(&out[k]);
  return s;
}

void gr_stage_result_clear(gr_stage_result *r) {
  gr_image_destroy(r->field);
  gr_image_destroy(r->inverse_field);
  r->field = r->inverse_field = NULL;
}
