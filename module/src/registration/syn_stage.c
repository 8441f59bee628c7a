/* Symmetric normalisation (SyN, Avants et al. 2008) in greedy form: two
 * half-way fields u1 (fixed side) and u2 (moving side) on the fixed grid, each
 * updated compositively so that F(x + u1) matches M(A(x + u2) + t) in the
 * middle. Result: forward d = u2 o phi1^-1 composed with phi1^-1, inverse
 * = u1 o phi2^-1 likewise, so forward and inverse are both written (the inverse
 * is what FireANTs users cannot get). */
#include <string.h>
#include "registration/reg_internal.h"

typedef struct syn_buffers {
  float *u[2], *scratch, *warped;
  gr_field_opt o[2];
} syn_buffers;

static void syn_free(gr_backend *be, syn_buffers *b) {
  for (int k = 0; k < 2; ++k) {
    if (b->u[k]) be->ops->free(be, b->u[k]);
    gr_field_opt_free(be, &b->o[k]);
  }
  if (b->scratch) be->ops->free(be, b->scratch);
  if (b->warped) be->ops->free(be, b->warped);
  memset(b, 0, sizeof *b);
}

static gr_status syn_level_alloc(gr_backend *be, const gr_level *lv, const gr_grid *old_grid, int bf16, syn_buffers *b) {
  gr_status s = GR_OK;
  const int fused = gr_field_update_fused(be);
  for (int k = 0; k < 2 && s == GR_OK; ++k) {
    if (b->u[k]) {
      float *up = NULL;
      s = gr_field_resample(be, &lv->fgrid, &up, old_grid, b->u[k]);
      be->ops->free(be, b->u[k]);
      b->u[k] = up;
    } else {
      b->u[k] = be->ops->alloc(be, (size_t)lv->nf * 3 * sizeof(float));
      s = b->u[k] ? be->ops->fill(be, b->u[k], 0.0f, lv->nf * 3) : GR_ERR_NOMEM;
    }
    if (s == GR_OK) s = gr_field_opt_init(be, lv->nf, !fused, bf16, &b->o[k]);
  }
  if (s == GR_OK) {
    b->scratch = fused ? NULL : be->ops->alloc(be, (size_t)lv->nf * 3 * sizeof(float));
    b->warped = be->ops->alloc(be, (size_t)lv->nf * sizeof(float));
    if ((!fused && !b->scratch) || !b->warped) s = GR_ERR_NOMEM;
  }
  return s;
}

static void syn_level_free(gr_backend *be, syn_buffers *b) {
  for (int k = 0; k < 2; ++k) gr_field_opt_free(be, &b->o[k]);
  if (b->scratch) be->ops->free(be, b->scratch);
  be->ops->free(be, b->warped);
  b->scratch = b->warped = NULL;
}

/* One symmetric iteration; returns the mean of the two half-way losses. */
static gr_status syn_iteration(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, const gr_level *lv,
                               syn_buffers *b, double lr, double *loss) {
  gr_backend *be = c->be;
  gr_metric_spec spec = cfg->metric;
  spec.want_affine_grad = 0;
  spec.want_field_grad = 1;
  spec.fixed_min = spec.moving_min = 0.0;
  spec.fixed_max = spec.moving_max = 1.0;
  gr_affine id;
  gr_affine_identity(&id);
  gr_metric_result r2, r1;
  /* Moving side: F(x + u1) is the reference, M(A(x + u2) + t) moves. */
  gr_status s = be->ops->resample(be, &lv->fgrid, b->warped, &lv->fgrid, lv->f, 1, &id, b->u[0], GR_INTERP_LINEAR,
                                  GR_BOUNDARY_ZERO);
  if (s == GR_OK)
    s = be->ops->metric(be, &spec, &lv->fgrid, b->warped, lv->fmask, &lv->mgrid, lv->m, lv->mmask, pre, b->u[1], &r2,
                        b->o[1].grad);
  /* Fixed side: M(A(x + u2) + t) is the reference, F(x + u1) moves. */
  if (s == GR_OK)
    s = be->ops->resample(be, &lv->fgrid, b->warped, &lv->mgrid, lv->m, 1, pre, b->u[1], GR_INTERP_LINEAR,
                          GR_BOUNDARY_ZERO);
  if (s == GR_OK)
    s = be->ops->metric(be, &spec, &lv->fgrid, b->warped, NULL, &lv->fgrid, lv->f, lv->fmask, &id, b->u[0], &r1,
                        b->o[0].grad);
  if (s != GR_OK) return s;
  *loss = 0.5 * (r1.value + r2.value);
  for (int k = 0; k < 2 && s == GR_OK; ++k)
    s = gr_field_update(c, cfg, &lv->fgrid, &b->o[k], &b->u[k], &b->scratch, 0.5 * lr);
  return s;
}

/* d = s + u o (x + s) with s = inverse of the other half. */
static gr_status syn_compose_result(gr_backend *be, const gr_grid *g, const float *u_out, const float *u_in,
                                    const gr_geometry *geom, gr_image **out) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2];
  float *inv = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
  float *d = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
  gr_status s = (inv && d) ? GR_OK : GR_ERR_NOMEM;
  if (s == GR_OK) s = be->ops->invert(be, g, u_in, inv, 20);
  if (s == GR_OK) s = be->ops->compose(be, g, u_out, inv, d);
  if (s == GR_OK) s = gr_field_download(be, geom, d, out);
  if (inv) be->ops->free(be, inv);
  if (d) be->ops->free(be, d);
  return s;
}

/* One level's state for gr_level_iterate: each step is a whole symmetric
 * iteration (both metrics, both updates), so there is no separate update. */
typedef struct syn_level {
  gr_reg_ctx *c;
  const gr_stage_config *cfg;
  const gr_affine *pre;
  const gr_level *lv;
  syn_buffers *b;
  double lr;
} syn_level;

static gr_status syn_step(void *user, double *loss) {
  syn_level *s = user;
  return syn_iteration(s->c, s->cfg, s->pre, s->lv, s->b, s->lr, loss);
}

gr_status gr_stage_syn(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r) {
  if (c->gp) return gr_stage_syn_sharded(c, cfg, pre, r);
  gr_backend *be = c->be;
  syn_buffers b;
  memset(&b, 0, sizeof b);
  gr_grid ugrid;
  gr_status s = GR_OK;
  double loss = 0.0;
  for (int l = 0; l < cfg->levels && s == GR_OK; ++l) {
    gr_level lv;
    s = gr_level_build(c, cfg, l, 0, &lv);
    if (s != GR_OK) break;
    s = syn_level_alloc(be, &lv, &ugrid, cfg->adam_moments_bf16, &b);
    ugrid = lv.fgrid;
    syn_level si = {c, cfg, pre, &lv, &b, cfg->learning_rate[l]};
    const gr_level_steps steps = {syn_step, NULL, &si};
    if (s == GR_OK) s = gr_level_iterate(c, cfg, l, &steps, r, &loss);
    syn_level_free(be, &b);
    gr_level_release(be, &lv);
  }
  for (int k = 0; k < 2 && s == GR_OK; ++k) {
    if (memcmp(ugrid.n, c->fixed_grid.n, sizeof ugrid.n) == 0) continue;
    float *up = NULL;
    s = gr_field_resample(be, &c->fixed_grid, &up, &ugrid, b.u[k]);
    be->ops->free(be, b.u[k]);
    b.u[k] = up;
  }
  if (s == GR_OK) s = syn_compose_result(be, &c->fixed_grid, b.u[1], b.u[0], c->fixed_geom, &r->field);
  if (s == GR_OK) s = syn_compose_result(be, &c->fixed_grid, b.u[0], b.u[1], c->fixed_geom, &r->inverse_field);
  syn_free(be, &b);
  r->kind = cfg->kind;
  r->nparams = 0;
  r->final_metric = loss;
  return s;
}
