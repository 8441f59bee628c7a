/* SyN (syn_stage.c) on a sharded fixed grid. Both half-way fields, their Adam
 * state and the warped images live on the stored planes (owned + halo) of the
 * level's fixed shard. The two warps of an iteration use the ring sampler:
 * F(x + u1) reads the fixed level image's owned slabs, M(A(x + u2) + t) the
 * moving slabs; the two metrics are distributed metrics (the second one with
 * the fixed image as its "moving" input, sharded by the same decomposition).
 * The final composition with the inverse of the other half uses the ring as
 * well (those displacements are large). Same arithmetic as syn_stage.c. */
#include <string.h>
#include "registration/reg_internal.h"

typedef struct syn_shard_buffers {
  float *u[2], *warped;
  double *acc;
  gr_field_opt o[2];
} syn_shard_buffers;

static void bufs_free_level(gr_backend *be, syn_shard_buffers *b) {
  for (int k = 0; k < 2; ++k) gr_field_opt_free(be, &b->o[k]);
  if (b->warped) be->ops->free(be, b->warped);
  if (b->acc) be->ops->free(be, b->acc);
  b->warped = NULL;
  b->acc = NULL;
}

/* warped(x) = img(A (x + disp(x)) + t) on the stored planes of fs; img is sharded
 * as the owned slabs of its grid. Linear, zero outside (the whole-grid resample). */
static gr_status ring_warp(gr_reg_ctx *c, const gr_shard *fs, const gr_grid *img_grid, const float *img_own,
                           int64_t img_own_n, const gr_affine *T, const float *disp, double *acc, float *out) {
  gr_slab_sample pts;
  memset(&pts, 0, sizeof pts);
  pts.out_grid = &fs->global;
  pts.out_z0 = fs->ext0;
  pts.out_nz = fs->ext1 - fs->ext0;
  pts.T = T;
  pts.disp = disp;
  pts.interp = GR_INTERP_LINEAR;
  pts.boundary = GR_BOUNDARY_ZERO;
  pts.acc = acc;
  const gr_ring_image img = {img_grid, img_own, 1, img_own_n};
  gr_status s = gr_ring_sample(c->be, c->comm, &img, &pts, NULL);
  if (s == GR_OK) s = c->be->ops->slab_finalize(c->be, fs->nloc, acc, NULL, 1.0, out);
  return s;
}

static gr_status syn_iteration(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, const gr_level *lv,
                               syn_shard_buffers *b, double lr, double *loss) {
  gr_metric_spec spec = cfg->metric;
  spec.want_affine_grad = 0;
  spec.want_field_grad = 1;
  spec.fixed_min = spec.moving_min = 0.0;
  spec.fixed_max = spec.moving_max = 1.0;
  gr_affine id;
  gr_affine_identity(&id);
  const gr_shard *fs = &lv->fs;
  const int64_t off = gr_shard_own_offset(fs);
  gr_metric_result r2, r1;
  /* Moving side: F(x + u1) is the reference, M(A(x + u2) + t) moves. */
  gr_status s = ring_warp(c, fs, &lv->fgrid, lv->f + off, fs->nown, &id, b->u[0], b->acc, b->warped);
  if (s == GR_OK) {
    const gr_dist_metric_args a = {&spec, fs, b->warped, lv->fmask, &lv->mgrid, lv->m, lv->mmask, pre, b->u[1]};
    s = gr_dist_metric(c->be, c->comm, &a, &r2, b->o[1].grad, NULL);
  }
  /* Fixed side: M(A(x + u2) + t) is the reference, F(x + u1) moves (the fixed
   * level image, sharded like the fixed grid, is the ring's input). */
  if (s == GR_OK) s = ring_warp(c, fs, &lv->mgrid, lv->m, lv->nm, pre, b->u[1], b->acc, b->warped);
  if (s == GR_OK) {
    const gr_dist_metric_args a = {&spec, fs, b->warped, NULL, &lv->fgrid, lv->f + off,
                                   lv->fmask ? lv->fmask + off : NULL, &id, b->u[0]};
    s = gr_dist_metric(c->be, c->comm, &a, &r1, b->o[0].grad, NULL);
  }
  if (s != GR_OK) return s;
  *loss = 0.5 * (r1.value + r2.value);
  for (int k = 0; k < 2 && s == GR_OK; ++k)
    s = gr_shard_field_update(c, cfg, fs, &b->o[k], &b->u[k], 0.5 * lr);
  return s;
}

/* One level's state for gr_level_iterate: each step is a whole symmetric
 * iteration (both metrics, both updates), so there is no separate update. */
typedef struct syn_level {
  gr_reg_ctx *c;
  const gr_stage_config *cfg;
  const gr_affine *pre;
  const gr_level *lv;
  syn_shard_buffers *b;
  double lr;
} syn_level;

static gr_status syn_step(void *user, double *loss) {
  syn_level *s = user;
  return syn_iteration(s->c, s->cfg, s->pre, s->lv, s->b, s->lr, loss);
}

gr_status gr_stage_syn_sharded(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r) {
  gr_backend *be = c->be;
  syn_shard_buffers b;
  memset(&b, 0, sizeof b);
  gr_shard ush;
  memset(&ush, 0, sizeof ush);
  gr_status s = GR_OK;
  double loss = 0.0;
  for (int l = 0; l < cfg->levels && s == GR_OK; ++l) {
    gr_level lv;
    s = gr_level_build(c, cfg, l, gr_shard_field_halo(cfg, cfg->learning_rate[l]), &lv);
    if (s != GR_OK) break;
    const int64_t n = lv.fs.nloc;
    for (int k = 0; k < 2 && s == GR_OK; ++k) {
      if (b.u[k]) {
        float *up = NULL;
        s = gr_shard_field_resample(c, &ush, b.u[k], &lv.fs, &up);
        be->ops->free(be, b.u[k]);
        b.u[k] = up;
      } else {
        b.u[k] = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
        s = b.u[k] ? be->ops->fill(be, b.u[k], 0.0f, n * 3) : GR_ERR_NOMEM;
      }
      if (s == GR_OK) s = gr_field_opt_init(be, n, !gr_field_update_fused(be), cfg->adam_moments_bf16, &b.o[k]);
    }
    ush = lv.fs;
    if (s == GR_OK) {
      b.warped = be->ops->alloc(be, (size_t)n * sizeof(float));
      b.acc = be->ops->alloc(be, (size_t)n * 3 * sizeof(double));
      if (!b.warped || !b.acc) s = GR_ERR_NOMEM;
    }
    syn_level si = {c, cfg, pre, &lv, &b, cfg->learning_rate[l]};
    const gr_level_steps steps = {syn_step, NULL, &si};
    if (s == GR_OK) s = gr_level_iterate(c, cfg, l, &steps, r, &loss);
    bufs_free_level(be, &b);
    gr_level_release(be, &lv);
  }
  /* Full-resolution owned planes of both halves, then d = u_out o (inverse of u_in). */
  gr_shard full;
  float *own[2] = {NULL, NULL}, *inv = NULL, *d = NULL;
  if (s == GR_OK) s = gr_shard_init(&c->fixed_grid, c->gp->nranks, c->gp->rank, 0, &full);
  for (int k = 0; k < 2 && s == GR_OK; ++k) {
    if (memcmp(ush.global.n, c->fixed_grid.n, sizeof ush.global.n) != 0) {
      s = gr_shard_field_resample(c, &ush, b.u[k], &full, &own[k]);
    } else {
      own[k] = be->ops->alloc(be, (size_t)(3 * full.nown) * sizeof(float));
      for (int q = 0; q < 3 && own[k]; ++q)
        s = be->ops->copy(be, own[k] + q * full.nown, b.u[k] + q * ush.nloc + gr_shard_own_offset(&ush),
                          (size_t)full.nown * sizeof(float));
      if (!own[k]) s = GR_ERR_NOMEM;
    }
  }
  if (s == GR_OK) {
    inv = be->ops->alloc(be, (size_t)(3 * full.nown) * sizeof(float));
    d = be->ops->alloc(be, (size_t)(3 * full.nown) * sizeof(float));
    if (!inv || !d) s = GR_ERR_NOMEM;
  }
  /* forward: u2 o phi1^-1; inverse: u1 o phi2^-1 (syn_compose_result) */
  for (int k = 0; k < 2 && s == GR_OK; ++k) {
    const float *u_out = own[k == 0 ? 1 : 0], *u_in = own[k == 0 ? 0 : 1];
    s = gr_shard_field_invert(c, &full, u_in, inv, 20);
    if (s == GR_OK) s = gr_shard_field_compose_ring(c, &full, u_out, inv, d);
    if (s == GR_OK) s = gr_shard_field_result(c, &full, d, k == 0 ? &r->field : &r->inverse_field);
  }
  for (int k = 0; k < 2; ++k) {
    if (own[k]) be->ops->free(be, own[k]);
    if (b.u[k]) be->ops->free(be, b.u[k]);
  }
  if (inv) be->ops->free(be, inv);
  if (d) be->ops->free(be, d);
  r->kind = cfg->kind;
  r->nparams = 0;
  r->final_metric = loss;
  return s;
}
