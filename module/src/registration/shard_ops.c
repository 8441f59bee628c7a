/* Deformable-field operations on sharded fields (Grid Parallel counterparts of
 * field_ops.c and the field kernels). Every operation reproduces the
 * single-process arithmetic on the owned planes; the halo planes are refreshed
 * by exchanges where the next step reads them. See docs/grid-parallel.md for
 * the halo widths and the order of exchanges in one iteration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "registration/reg_internal.h"

int gr_shard_field_halo(const gr_stage_config *cfg, double lr) {
  int h = 1; /* trilinear footprint */
  if (cfg->metric.kind == GR_METRIC_LNCC) {
    const int r = cfg->metric.lncc_radius > 0 ? cfg->metric.lncc_radius : 2;
    /* The exact LNCC gradient at a voxel reads the alpha fields of every window
     * containing it (r planes), each of which reads its own window (r more). */
    if (2 * r > h) h = 2 * r;
  }
  const double sig[2] = {cfg->grad_sigma_vox, cfg->field_sigma_vox};
  for (int k = 0; k < 2; ++k)
    if (sig[k] > 0.0 && (int)ceil(3.0 * sig[k]) > h) h = (int)ceil(3.0 * sig[k]); /* cpu_smooth: 3 sigma */
  /* compose reads u at x + s, |s| <= lr voxels: corners up to ceil(lr) + 1 planes away */
  const int reach = (int)ceil(lr > 0.0 ? lr : 0.0) + 1;
  if (reach > h) h = reach;
  return h;
}

/* One sharded step u <- s + u(x + s) over the stored planes, s = scale * the
 * Adam direction: read from o->step (unfused backends: adam_direction wrote it)
 * or formed from the moments inside the pass (fused: no step field, as
 * adam_compose does). Compose reads the own stored planes only: a step moves
 * points by at most lr voxels and the halo covers ceil(lr) + 1 planes, so owned
 * points find every corner locally (halo points near the outer edge do not;
 * the exchange after smoothing replaces them). The result goes to o->grad
 * (dead after the moments), which becomes u. */
static gr_status shard_compose_step(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_shard *sh, gr_field_opt *o,
                                    float **u, float scale, int fused) {
  gr_backend *be = c->be;
  const int64_t n = sh->nloc;
  gr_status s = GR_OK;
  gr_slab_sample a;
  memset(&a, 0, sizeof a);
  gr_slab_adam adam;
  memset(&adam, 0, sizeof adam);
  if (fused) {
    adam.mom = o->mom;
    adam.beta1 = cfg->adam_beta1;
    adam.beta2 = cfg->adam_beta2;
    adam.eps = cfg->adam_eps;
    adam.t = o->t;
    adam.scale = scale;
    a.adam = &adam;
  } else {
    /* the step, scaled as axpy forms it, overwrites the gradient; the compose
     * then writes over it in place (each point reads its own step first) */
    s = be->ops->fill(be, o->grad, 0.0f, n * 3);
    if (s == GR_OK) s = be->ops->axpy(be, n * 3, scale, o->step, o->grad);
    a.disp = o->grad;
    a.out_base = o->grad;
  }
  a.out_grid = &sh->global;
  a.out_z0 = sh->ext0;
  a.out_nz = sh->ext1 - sh->ext0;
  a.same_grid = 1;
  a.in_grid = &sh->global;
  a.in_z0 = sh->ext0;
  a.in_nz = sh->ext1 - sh->ext0;
  a.in = *u;
  a.ncomp = 3;
  a.in_comp_stride = n;
  a.interp = GR_INTERP_LINEAR;
  a.boundary = GR_BOUNDARY_CLAMP;
  a.out = o->grad; /* direct mode: one slab, rounded once as cpu_compose does */
  a.out_scale = 1.0;
  if (s == GR_OK) s = be->ops->sample_slab(be, &a);
  if (s != GR_OK) return s;
  float *t = *u;
  *u = o->grad;
  o->grad = t;
  return GR_OK;
}

gr_status gr_shard_field_update(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_shard *sh, gr_field_opt *o,
                                float **u, double lr) {
  gr_backend *be = c->be;
  const double gs[3] = {cfg->grad_sigma_vox, cfg->grad_sigma_vox, cfg->grad_sigma_vox};
  /* The metric's gradient is exact on the owned planes only: exchange, smooth,
   * exchange, so the halo holds the owners' smoothed values too. Adam then runs
   * on the stored planes: its halo moments see the same inputs as the owners'
   * (bitwise the same state), and the maximum over stored planes is a maximum
   * over owned planes of this rank and its neighbours, so the all-reduced
   * maximum is the single-process one. */
  gr_status s = cfg->grad_sigma_vox > 0 ? gr_shard_smooth(be, c->comm, sh, o->grad, 3, gs)
                                        : gr_halo_exchange(c->comm, sh, o->grad, 3);
  if (s != GR_OK) return s;
  o->t += 1;
  double maxv = 0.0;
  const int fused = gr_field_update_fused(be);
  if (fused)
    s = be->ops->adam_moments(be, &sh->local, o->grad, o->mom, cfg->adam_beta1, cfg->adam_beta2, cfg->adam_eps,
                              o->t, &maxv);
  else
    s = be->ops->adam_direction(be, &sh->local, o->grad, (float *)o->mom.m, (float *)o->mom.v, o->step, cfg->adam_beta1, cfg->adam_beta2,
                                cfg->adam_eps, o->t, &maxv);
  if (s == GR_OK) s = c->comm->ops->allreduce_max_f64(c->comm, &maxv, 1);
  if (s != GR_OK) return s;
  if (!(maxv > 0.0)) return GR_OK; /* zero gradient everywhere (all ranks agree) */
  s = shard_compose_step(c, cfg, sh, o, u, (float)(-lr / maxv), fused);
  if (s != GR_OK) return s;
  if (cfg->field_sigma_vox > 0) {
    const double fs[3] = {cfg->field_sigma_vox, cfg->field_sigma_vox, cfg->field_sigma_vox};
    return gr_shard_smooth(be, c->comm, sh, *u, 3, fs);
  }
  return gr_halo_exchange(c->comm, sh, *u, 3);
}

gr_status gr_shard_field_resample(gr_reg_ctx *c, const gr_shard *from, const float *src, const gr_shard *to,
                                  float **dst) {
  gr_backend *be = c->be;
  const int64_t n = to->nloc;
  *dst = be->ops->alloc(be, (size_t)n * 3 * sizeof(float));
  double *acc = be->ops->alloc(be, (size_t)n * 3 * sizeof(double));
  gr_status s = (*dst && acc) ? GR_OK : GR_ERR_NOMEM;
  if (s == GR_OK) {
    gr_slab_sample pts;
    memset(&pts, 0, sizeof pts);
    pts.out_grid = &to->global;
    pts.out_z0 = to->ext0;
    pts.out_nz = to->ext1 - to->ext0;
    pts.interp = GR_INTERP_LINEAR;
    pts.boundary = GR_BOUNDARY_CLAMP;
    pts.acc = acc;
    const gr_ring_image img = {&from->global, src + gr_shard_own_offset(from), 3, from->nloc};
    s = gr_ring_sample(be, c->comm, &img, &pts, NULL);
  }
  if (s == GR_OK) s = be->ops->slab_finalize(be, 3 * n, acc, NULL, 1.0, *dst);
  if (acc) be->ops->free(be, acc);
  return s;
}

/* out = base + scale * u(x + disp(x)) over the owned planes of s (halo-free
 * arrays), u read through the ring: disp may be as large as the image. */
static gr_status ring_field_warp(gr_reg_ctx *c, const gr_shard *s, const float *u_own, const float *disp,
                                 const float *base, double scale, double *acc, float *out) {
  gr_backend *be = c->be;
  gr_slab_sample pts;
  memset(&pts, 0, sizeof pts);
  pts.out_grid = &s->global;
  pts.out_z0 = s->own0;
  pts.out_nz = s->own1 - s->own0;
  pts.disp = disp;
  pts.same_grid = 1;
  pts.interp = GR_INTERP_LINEAR;
  pts.boundary = GR_BOUNDARY_CLAMP;
  pts.acc = acc;
  const gr_ring_image img = {&s->global, u_own, 3, s->nown};
  gr_status st = gr_ring_sample(be, c->comm, &img, &pts, NULL);
  if (st == GR_OK) st = be->ops->slab_finalize(be, 3 * s->nown, acc, base, scale, out);
  return st;
}

gr_status gr_shard_field_invert(gr_reg_ctx *c, const gr_shard *s, const float *u_own, float *inv_own, int iterations) {
  gr_backend *be = c->be;
  const int64_t n = 3 * s->nown;
  /* v0 = -u, then v <- -u(x + v(x)) (cpu_invert's Jacobi iteration) */
  gr_status st = be->ops->fill(be, inv_own, 0.0f, n);
  if (st == GR_OK) st = be->ops->axpy(be, n, -1.0f, u_own, inv_own);
  if (st != GR_OK || iterations == 0) return st;
  float *next = be->ops->alloc(be, (size_t)n * sizeof(float));
  double *acc = be->ops->alloc(be, (size_t)n * sizeof(double));
  if (!next || !acc) st = GR_ERR_NOMEM;
  float *cur = inv_own, *nxt = next;
  for (int it = 0; st == GR_OK && it < iterations; ++it) {
    st = ring_field_warp(c, s, u_own, cur, NULL, -1.0, acc, nxt);
    float *t = cur;
    cur = nxt;
    nxt = t;
  }
  if (st == GR_OK && cur != inv_own) st = be->ops->copy(be, inv_own, cur, (size_t)n * sizeof(float));
  if (next) be->ops->free(be, next);
  if (acc) be->ops->free(be, acc);
  return st;
}

gr_status gr_shard_field_compose_ring(gr_reg_ctx *c, const gr_shard *s, const float *u_own, const float *s_own,
                                      float *out_own) {
  gr_backend *be = c->be;
  double *acc = be->ops->alloc(be, (size_t)(3 * s->nown) * sizeof(double));
  if (!acc) return GR_ERR_NOMEM;
  const gr_status st = ring_field_warp(c, s, u_own, s_own, s_own, 1.0, acc, out_own);
  be->ops->free(be, acc);
  return st;
}

gr_status gr_shard_field_result(gr_reg_ctx *c, const gr_shard *s, const float *own, gr_image **out) {
  gr_backend *be = c->be;
  *out = NULL;
  float *host = malloc(sizeof(float) * (size_t)(3 * s->nown));
  if (!host) return gr_error(GR_ERR_NOMEM, "field result: %lld voxels", (long long)s->nown);
  gr_status st = be->ops->download(be, host, own, (size_t)(3 * s->nown) * sizeof(float));
  if (st == GR_OK && c->gp->whole_fields) {
    st = gr_image_create(c->fixed_geom, 3, out);
    if (st == GR_OK) st = gr_gather_slabs(c->comm, &s->global, host, 3, s->nown, (*out)->data);
  } else if (st == GR_OK) {
    gr_geometry g;
    gr_geometry_slab(c->fixed_geom, s->own0, s->own1, &g);
    st = gr_image_create(&g, 3, out);
    if (st == GR_OK) memcpy((*out)->data, host, sizeof(float) * (size_t)(3 * s->nown));
  }
  free(host);
  if (st != GR_OK) {
    gr_image_destroy(*out);
    *out = NULL;
  }
  return st;
}
