/* Greedy deformable registration on a sharded fixed grid: greedy_stage.c's
 * algorithm with every rank holding its slab (plus halo) of u, the gradient
 * and the Adam state. Per iteration:
 *   metric (ring-sampled moving image, ordered global reductions)
 *   -> gradient: halo exchange, smoothing, halo exchange
 *   -> Adam on the stored planes, max step all-reduced (exact)
 *   -> compose from the own stored planes (the halo covers one step's reach)
 *   -> field smoothing with halo exchanges.
 * Between levels u moves through the ring sampler; the final inverse runs the
 * fixed-point iteration with u read through the ring (inverse displacements are
 * as large as the registration's). Every step reproduces the single-process
 * arithmetic, so the fields are bitwise those of one process (test_gp_register). */
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

/* The owned planes of a shard's stored field as a halo-free array. */
static gr_status own_planes(gr_backend *be, const gr_shard *s, const float *stored, float **out) {
  *out = be->ops->alloc(be, (size_t)(3 * s->nown) * sizeof(float));
  if (!*out) return GR_ERR_NOMEM;
  gr_status st = GR_OK;
  for (int k = 0; k < 3 && st == GR_OK; ++k)
    st = be->ops->copy(be, *out + k * s->nown, stored + k * s->nloc + gr_shard_own_offset(s),
                       (size_t)s->nown * sizeof(float));
  return st;
}

static gr_status shard_update(void *user) {
  gr_greedy_iter *g = user;
  return gr_shard_field_update(g->c, g->cfg, &g->lv->fs, g->o, g->u, g->lr);
}

gr_status gr_stage_greedy_sharded(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r) {
  gr_backend *be = c->be;
  const gr_metric_spec spec = field_spec(cfg);
  float *u = NULL;
  gr_shard ush; /* u's shard at the current level */
  memset(&ush, 0, sizeof ush);
  gr_status s = GR_OK;
  double loss = 0.0;
  for (int l = 0; l < cfg->levels && s == GR_OK; ++l) {
    gr_level lv;
    s = gr_level_build(c, cfg, l, gr_shard_field_halo(cfg, cfg->learning_rate[l]), &lv);
    if (s != GR_OK) break;
    const int64_t n = lv.fs.nloc;
    if (!u) {
      u = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
      s = u ? be->ops->fill(be, u, 0.0f, n * 3) : GR_ERR_NOMEM;
    } else {
      float *up = NULL;
      s = gr_shard_field_resample(c, &ush, u, &lv.fs, &up);
      be->ops->free(be, u);
      u = up;
    }
    ush = lv.fs;
    gr_field_opt o;
    memset(&o, 0, sizeof o);
    if (s == GR_OK) s = gr_field_opt_init(be, n, !gr_field_update_fused(be), cfg->adam_moments_bf16, &o);
    gr_greedy_iter gi = {c, cfg, &lv, &spec, pre, &u, NULL, &o, cfg->learning_rate[l]};
    const gr_level_steps steps = {gr_greedy_evaluate, shard_update, &gi};
    if (s == GR_OK) s = gr_level_iterate(c, cfg, l, &steps, r, &loss);
    gr_field_opt_free(be, &o);
    gr_level_release(be, &lv);
  }
  /* The result lives on the full-resolution fixed grid, owned planes only. */
  gr_shard full;
  float *u_own = NULL, *inv = NULL;
  if (s == GR_OK) s = gr_shard_init(&c->fixed_grid, c->gp->nranks, c->gp->rank, 0, &full);
  if (s == GR_OK) {
    if (memcmp(ush.global.n, c->fixed_grid.n, sizeof ush.global.n) != 0) s = gr_shard_field_resample(c, &ush, u, &full, &u_own);
    else s = own_planes(be, &ush, u, &u_own);
  }
  if (u) be->ops->free(be, u);
  if (s == GR_OK) {
    inv = be->ops->alloc(be, (size_t)(3 * full.nown) * sizeof(float));
    s = inv ? gr_shard_field_invert(c, &full, u_own, inv, 20) : GR_ERR_NOMEM;
  }
  if (s == GR_OK) s = gr_shard_field_result(c, &full, u_own, &r->field);
  if (s == GR_OK) s = gr_shard_field_result(c, &full, inv, &r->inverse_field);
  if (inv) be->ops->free(be, inv);
  if (u_own) be->ops->free(be, u_own);
  r->kind = cfg->kind;
  r->nparams = 0;
  r->final_metric = loss;
  return s;
}
