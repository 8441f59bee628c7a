/* Deformable-stage building blocks shared by greedy and SyN. */
#include <math.h>
#include <string.h>
#include "registration/reg_internal.h"

static int64_t grid_nvox(const gr_grid *g) { return g->n[0] * g->n[1] * g->n[2]; }

int gr_field_update_fused(const gr_backend *be) { return be->ops->adam_moments && be->ops->adam_compose; }

/* bytes of zeros from the backend; NULL with *s set (kept GR_OK on success) */
static void *alloc_zero(gr_backend *be, size_t bytes, gr_status *s) {
  if (*s != GR_OK) return NULL;
  void *p = be->ops->alloc(be, bytes);
  if (!p) *s = GR_ERR_NOMEM; /* alloc recorded the details */
  else *s = be->ops->fill(be, (float *)p, 0.0f, (int64_t)(bytes / sizeof(float)));
  return p;
}

gr_status gr_field_opt_init(gr_backend *be, int64_t n, int with_step, int bf16, gr_field_opt *o) {
  memset(o, 0, sizeof *o);
  if (bf16 && with_step)
    return gr_error(GR_ERR_UNSUPPORTED, "bfloat16 Adam moments need a backend with the fused field update");
  o->mom.bf16 = bf16;
  const size_t field = (size_t)n * 3 * sizeof(float);
  gr_status s = GR_OK;
  o->grad = alloc_zero(be, field, &s);
  o->mom.m = alloc_zero(be, gr_moment_bytes(n, bf16), &s);
  o->mom.v = alloc_zero(be, gr_moment_bytes(n, bf16), &s);
  if (with_step) o->step = alloc_zero(be, field, &s);
  if (s != GR_OK) gr_field_opt_free(be, o);
  return s;
}

void gr_field_opt_free(gr_backend *be, gr_field_opt *o) {
  void *bufs[4] = {o->grad, o->mom.m, o->mom.v, o->step};
  for (int i = 0; i < 4; ++i)
    if (bufs[i]) be->ops->free(be, bufs[i]);
  o->grad = o->step = NULL;
  o->mom.m = o->mom.v = NULL;
}

/* The field smoothing: u in place (src == u), or from src into u (smooth_to). */
static gr_status smooth_field(gr_backend *be, const gr_stage_config *cfg, const gr_grid *g, const float *src, float *u) {
  if (!(cfg->field_sigma_vox > 0)) return GR_OK;
  const double fs[3] = {cfg->field_sigma_vox, cfg->field_sigma_vox, cfg->field_sigma_vox};
  return src == u ? be->ops->smooth(be, g, u, 3, fs) : be->ops->smooth_to(be, g, src, u, 3, fs);
}

/* Moments and the global max in one pass (grad_sigma != NULL: the gradient's
 * smoothing fused into it), then the step formed on the fly inside the compose
 * pass, written over the (dead) gradient; then either the field smoothing from
 * there back into u's buffer (smooth_to) or u takes the gradient's buffer and
 * is smoothed in place: no direction or scratch field. */
static gr_status fused_update(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_grid *g, gr_field_opt *o, float **u,
                              double lr, const double *grad_sigma) {
  gr_backend *be = c->be;
  double maxv = 0.0;
  gr_status s = grad_sigma ? be->ops->adam_moments_smoothed(be, g, o->grad, grad_sigma, o->mom, cfg->adam_beta1,
                                                            cfg->adam_beta2, cfg->adam_eps, o->t, &maxv)
                           : be->ops->adam_moments(be, g, o->grad, o->mom, cfg->adam_beta1, cfg->adam_beta2,
                                                   cfg->adam_eps, o->t, &maxv);
  if (s == GR_OK) s = c->comm->ops->allreduce_max_f64(c->comm, &maxv, 1);
  if (s != GR_OK) return s;
  if (!(maxv > 0.0)) return GR_OK;
  s = be->ops->adam_compose(be, g, o->mom, cfg->adam_beta1, cfg->adam_beta2, cfg->adam_eps, o->t,
                            (float)(-lr / maxv), *u, o->grad);
  if (s != GR_OK) return s;
  /* the old u is dead now: smooth the new field from the gradient's storage back into it (one pass, no scratch) */
  if (cfg->field_sigma_vox > 0 && be->ops->smooth_to) return smooth_field(be, cfg, g, o->grad, *u);
  float *t = *u;
  *u = o->grad;
  o->grad = t;
  return smooth_field(be, cfg, g, *u, *u);
}

gr_status gr_field_update(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_grid *g, gr_field_opt *o,
                          float **u, float **scratch, double lr) {
  gr_backend *be = c->be;
  const int64_t n = grid_nvox(g);
  const double gs[3] = {cfg->grad_sigma_vox, cfg->grad_sigma_vox, cfg->grad_sigma_vox};
  /* the fused update can take the gradient's smoothing inside its moments pass */
  const int smooth_in_moments = gr_field_update_fused(be) && be->ops->adam_moments_smoothed && cfg->grad_sigma_vox > 0;
  gr_status s = GR_OK;
  if (cfg->grad_sigma_vox > 0 && !smooth_in_moments) s = be->ops->smooth(be, g, o->grad, 3, gs);
  if (s != GR_OK) return s;
  o->t += 1;
  double maxv = 0.0;
  if (gr_field_update_fused(be)) return fused_update(c, cfg, g, o, u, lr, smooth_in_moments ? gs : NULL);
  s = be->ops->adam_direction(be, g, o->grad, (float *)o->mom.m, (float *)o->mom.v, o->step, cfg->adam_beta1, cfg->adam_beta2,
                              cfg->adam_eps, o->t, &maxv);
  if (s == GR_OK) s = c->comm->ops->allreduce_max_f64(c->comm, &maxv, 1);
  if (s != GR_OK) return s;
  if (!(maxv > 0.0)) return GR_OK; /* zero gradient everywhere: nothing to do */
  /* grad <- -lr/max * dir : the largest voxel moves lr voxels this iteration. */
  s = be->ops->fill(be, o->grad, 0.0f, n * 3);
  if (s == GR_OK) s = be->ops->axpy(be, n * 3, (float)(-lr / maxv), o->step, o->grad);
  if (s == GR_OK) s = be->ops->compose(be, g, *u, o->grad, *scratch);
  if (s != GR_OK) return s;
  float *t = *u;
  *u = *scratch;
  *scratch = t;
  return smooth_field(be, cfg, g, *u, *u);
}

gr_status gr_field_resample(gr_backend *be, const gr_grid *dst_grid, float **dst, const gr_grid *src_grid,
                            const float *src) {
  const int64_t n = grid_nvox(dst_grid);
  *dst = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
  if (!*dst) return GR_ERR_NOMEM;
  return be->ops->resample(be, dst_grid, *dst, src_grid, src, 3, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
}

gr_status gr_field_download(gr_backend *be, const gr_geometry *g, const float *src, gr_image **out) {
  gr_status s = gr_image_create(g, 3, out);
  if (s != GR_OK) return s;
  s = be->ops->download(be, (*out)->data, src, (size_t)gr_geometry_nvox(g) * 3 * sizeof(float));
  if (s != GR_OK) {
    gr_image_destroy(*out);
    *out = NULL;
  }
  return s;
}
