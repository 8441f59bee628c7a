/* Greedy deformable registration (ANTs/greedy/FireANTs family): a dense
 * displacement u on the fixed grid, y = A (x + u(x)) + t with A, t the chain of
 * earlier stages; each iteration takes the smoothed metric gradient, normalises
 * it with Adam so the largest move is `lr` voxels, and composes it into u
 * (u <- s + u o (x + s)), then smooths u. Coarse-to-fine over the pyramid. */
#include <math.h>
#include <string.h>
#include "registration/reg_internal.h"

static gr_metric_spec field_spec(const gr_stage_config *cfg) {
  gr_metric_spec spec = cfg->metric;
  spec.want_affine_grad = 0;
  spec.want_field_grad = 1;
  spec.fixed_min = spec.moving_min = 0.0;
  spec.fixed_max = spec.moving_max = 1.0;
  return spec;
}

/* Move u (on *ugrid) onto the level's fixed grid; allocate it zeroed the first time. */
static gr_status field_to_level(gr_backend *be, const gr_level *lv, float **u, gr_grid *ugrid) {
  if (!*u) {
    *u = be->ops->alloc(be, (size_t)lv->nf * 3 * sizeof(float));
    if (!*u) return GR_ERR_NOMEM;
    *ugrid = lv->fgrid;
    return be->ops->fill(be, *u, 0.0f, lv->nf * 3);
  }
  float *up = NULL;
  gr_status s = gr_field_resample(be, &lv->fgrid, &up, ugrid, *u);
  be->ops->free(be, *u);
  *u = up;
  *ugrid = lv->fgrid;
  return s;
}

gr_status gr_greedy_evaluate(void *user, double *loss) {
  gr_greedy_iter *g = user;
  gr_metric_result res;
  const gr_status s = gr_level_metric(g->c, g->lv, g->spec, g->pre, *g->u, &res, g->o->grad);
  if (s == GR_OK) *loss = res.value; /* global under Grid Parallel: every rank takes the same branch */
  return s;
}

static gr_status greedy_update(void *user) {
  gr_greedy_iter *g = user;
  return gr_field_update(g->c, g->cfg, &g->lv->fgrid, g->o, g->u, g->scratch, g->lr);
}

gr_status gr_stage_greedy(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r) {
  if (c->gp) return gr_stage_greedy_sharded(c, cfg, pre, r);
  gr_backend *be = c->be;
  const gr_metric_spec spec = field_spec(cfg);
  float *u = NULL, *scratch = NULL;
  gr_grid ugrid;
  gr_status s = GR_OK;
  double loss = 0.0;
  for (int l = 0; l < cfg->levels && s == GR_OK; ++l) {
    gr_level lv;
    s = gr_level_build(c, cfg, l, 0, &lv);
    if (s != GR_OK) break;
    gr_field_opt o;
    s = field_to_level(be, &lv, &u, &ugrid);
    const int fused = gr_field_update_fused(be);
    if (s == GR_OK) s = gr_field_opt_init(be, lv.nf, !fused, cfg->adam_moments_bf16, &o);
    if (s == GR_OK && !fused) {
      scratch = be->ops->alloc(be, (size_t)lv.nf * 3 * sizeof(float));
      if (!scratch) s = GR_ERR_NOMEM;
    }
    gr_greedy_iter gi = {c, cfg, &lv, &spec, pre, &u, &scratch, &o, cfg->learning_rate[l]};
    const gr_level_steps steps = {gr_greedy_evaluate, greedy_update, &gi};
    if (s == GR_OK) s = gr_level_iterate(c, cfg, l, &steps, r, &loss);
    gr_field_opt_free(be, &o);
    if (scratch) be->ops->free(be, scratch);
    scratch = NULL;
    gr_level_release(be, &lv);
  }
  /* The result lives on the full-resolution fixed grid. */
  if (s == GR_OK && memcmp(ugrid.n, c->fixed_grid.n, sizeof ugrid.n) != 0) {
    float *up = NULL;
    s = gr_field_resample(be, &c->fixed_grid, &up, &ugrid, u);
    be->ops->free(be, u);
    u = up;
  }
  float *inv = NULL;
  const int64_t n = gr_geometry_nvox(c->fixed_geom);
  if (s == GR_OK) {
    inv = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
    s = inv ? be->ops->invert(be, &c->fixed_grid, u, inv, 20) : GR_ERR_NOMEM;
  }
  if (s == GR_OK) s = gr_field_download(be, c->fixed_geom, u, &r->field);
  if (s == GR_OK) s = gr_field_download(be, c->fixed_geom, inv, &r->inverse_field);
  if (inv) be->ops->free(be, inv);
  if (u) be->ops->free(be, u);
  r->kind = cfg->kind;
  r->nparams = 0;
  r->final_metric = loss;
  return s;
}
