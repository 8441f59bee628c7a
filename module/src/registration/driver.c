/* gr_register: validation, intensity normalisation, upload, and the stage loop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/grid_parallel.h"
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

/* Intensity ranges -> [0, 1] images and masks on the backend (shared by the
 * one-process and the sharded paths). */
static gr_status normalise_and_upload(gr_reg_ctx *c, const gr_image *fixed, const gr_image *moving,
                                      const gr_image *fmask, const gr_image *mmask, double flo, double fhi,
                                      double mlo, double mhi, const gr_stage_config *stages, int nstages) {
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
  gr_status s = upload_normalised(c->be, fixed, flo, fhi, &c->fixed_norm);
  if (s == GR_OK) s = upload_normalised(c->be, moving, mlo, mhi, &c->moving_norm);
  if (s == GR_OK && fmask) s = upload_raw(c->be, fmask, &c->fixed_mask_dev);
  if (s == GR_OK && mmask) s = upload_raw(c->be, mmask, &c->moving_mask_dev);
  return s;
}

static gr_status prepare(gr_reg_ctx *c, const gr_stage_config *stages, int nstages) {
  gr_status s = gr_image_check_finite(c->fixed, "fixed image");
  if (s == GR_OK) s = gr_image_check_finite(c->moving, "moving image");
  if (s == GR_OK) s = check_mask(c->fixed_mask, c->fixed, "fixed");
  if (s == GR_OK) s = check_mask(c->moving_mask, c->moving, "moving");
  for (int k = 0; s == GR_OK && k < nstages; ++k) s = check_stage(&stages[k], k);
  if (s == GR_OK) s = gr_grid_from_geometry(c->fixed_geom, &c->fixed_grid);
  if (s == GR_OK) s = gr_grid_from_geometry(c->moving_geom, &c->moving_grid);
  if (s != GR_OK) return s;
  double flo, fhi, mlo, mhi;
  image_range(c->fixed, &flo, &fhi);
  image_range(c->moving, &mlo, &mhi);
  return normalise_and_upload(c, c->fixed, c->moving, c->fixed_mask, c->moving_mask, flo, fhi, mlo, mhi, stages, nstages);
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

static gr_status run_stages(gr_reg_ctx *c, const gr_affine *initial, const gr_stage_config *stages, int nstages,
                            gr_stage_result *out) {
  gr_status s = GR_OK;
  for (int k = 0; s == GR_OK && k < nstages; ++k) {
    c->stage = k;
    gr_affine pre;
    s = gr_chain_affine(initial, out, nstages, k, &pre);
    if (s != GR_OK) break;
    gr_stage_config cfg = stages[k];
    if (k > 0) cfg.init = GR_INIT_NONE; /* only the first stage initialises from centres */
    if (initial) cfg.init = GR_INIT_NONE;
    switch (cfg.kind) {
      case GR_STAGE_TRANSLATION:
      case GR_STAGE_RIGID:
      case GR_STAGE_AFFINE: s = gr_stage_linear(c, &cfg, &pre, &out[k]); break;
      case GR_STAGE_GREEDY: s = gr_stage_greedy(c, &cfg, &pre, &out[k]); break;
      case GR_STAGE_SYN: s = gr_stage_syn(c, &cfg, &pre, &out[k]); break;
    }
  }
  return s;
}

/* ---- sharded registration (Grid Parallel) ----------------------------------------- */

/* A slab must be planes gr_decomp_slab(...) of its whole image. */
static gr_status check_slab(const gr_image *slab, const gr_geometry *whole, int P, int rank, const char *what) {
  int64_t z0, z1;
  gr_decomp_slab(whole->size[2], P, rank, &z0, &z1);
  if (!slab) return gr_error(GR_ERR_INVALID_ARG, "rank %d: no %s slab", rank, what);
  if (slab->ncomp != 1)
    return gr_error(GR_ERR_UNSUPPORTED, "rank %d: %s slab has %d components (scalar needed)", rank, what, slab->ncomp);
  gr_geometry want;
  gr_geometry_slab(whole, z0, z1, &want);
  if (!gr_geometry_same(&slab->geom, &want))
    return gr_error(GR_ERR_MISMATCH, "rank %d of %d: %s slab is %lldx%lldx%lld, expected planes [%lld, %lld) of the "
                    "%lldx%lldx%lld image (gr_decomp_slab)", rank, P, what, (long long)slab->geom.size[0],
                    (long long)slab->geom.size[1], (long long)slab->geom.size[2], (long long)z0, (long long)z1,
                    (long long)whole->size[0], (long long)whole->size[1], (long long)whole->size[2]);
  return GR_OK;
}

static void slab_range(const gr_image *img, double *lo, double *hi) {
  const int64_t n = gr_image_nvox(img);
  double a = INFINITY, b = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (img->data[i] < a) a = img->data[i];
    if (img->data[i] > b) b = img->data[i];
  }
  *lo = a;
  *hi = b;
}

static gr_status prepare_sharded(gr_reg_ctx *c, const gr_slab_inputs *in, const gr_stage_config *stages, int nstages) {
  gr_gp_ctx *gp = c->gp;
  const int P = gp->nranks, me = gp->rank;
  /* Local checks first; then all ranks agree, so a rank that found a problem
   * in its slab makes every rank fail with its message. */
  gr_status s = gr_geometry_validate(c->fixed_geom, "fixed image");
  if (s == GR_OK) s = gr_geometry_validate(c->moving_geom, "moving image");
  if (s == GR_OK) s = check_slab(in->fixed, c->fixed_geom, P, me, "fixed image");
  if (s == GR_OK) s = check_slab(in->moving, c->moving_geom, P, me, "moving image");
  if (s == GR_OK && in->fixed_mask) s = check_slab(in->fixed_mask, c->fixed_geom, P, me, "fixed mask");
  if (s == GR_OK && in->moving_mask) s = check_slab(in->moving_mask, c->moving_geom, P, me, "moving mask");
  for (int k = 0; s == GR_OK && k < nstages; ++k) s = check_stage(&stages[k], k);
  char what[2][96]; /* voxel indices in the messages are slab-local: name the planes */
  int64_t z[4];
  gr_decomp_slab(c->fixed_geom->size[2], P, me, &z[0], &z[1]);
  gr_decomp_slab(c->moving_geom->size[2], P, me, &z[2], &z[3]);
  snprintf(what[0], sizeof what[0], "fixed image (planes %lld..%lld)", (long long)z[0], (long long)z[1] - 1);
  snprintf(what[1], sizeof what[1], "moving image (planes %lld..%lld)", (long long)z[2], (long long)z[3] - 1);
  if (s == GR_OK) s = gr_image_check_finite(in->fixed, what[0]);
  if (s == GR_OK) s = gr_image_check_finite(in->moving, what[1]);
  if (s == GR_OK) s = gr_grid_from_geometry(c->fixed_geom, &c->fixed_grid);
  if (s == GR_OK) s = gr_grid_from_geometry(c->moving_geom, &c->moving_grid);
  if (s == GR_OK) s = gr_shard_check_planes(&c->fixed_grid, P, "the fixed image");
  if (s == GR_OK) s = gr_shard_check_planes(&c->moving_grid, P, "the moving image");
  s = gr_comm_agree_msg(c->comm, s);
  if (s != GR_OK) return s;
  gr_decomp_slab(c->fixed_geom->size[2], P, me, &gp->fz0, &gp->fz1);
  gr_decomp_slab(c->moving_geom->size[2], P, me, &gp->mz0, &gp->mz1);
  gp->fixed_raw = in->fixed->data;
  gp->moving_raw = in->moving->data;

  /* Global intensity ranges and mask occupancy (max is exact in any order). */
  double r[6];
  slab_range(in->fixed, &r[0], &r[1]);
  slab_range(in->moving, &r[2], &r[3]);
  const gr_image *masks[2] = {in->fixed_mask, in->moving_mask};
  for (int k = 0; k < 2; ++k) {
    r[4 + k] = 0.0;
    if (!masks[k]) continue;
    const int64_t n = gr_image_nvox(masks[k]);
    for (int64_t i = 0; i < n && r[4 + k] == 0.0; ++i) r[4 + k] = masks[k]->data[i] > 0.5f ? 1.0 : 0.0;
  }
  r[0] = -r[0];
  r[2] = -r[2];
  s = c->comm->ops->allreduce_max_f64(c->comm, r, 6);
  if (s != GR_OK) return s;
  double flo = -r[0], fhi = r[1], mlo = -r[2], mhi = r[3];
  if (in->fixed_mask && r[4] == 0.0) return gr_error(GR_ERR_EMPTY, "fixed mask is empty (no voxel > 0)");
  if (in->moving_mask && r[5] == 0.0) return gr_error(GR_ERR_EMPTY, "moving mask is empty (no voxel > 0)");
  s = normalise_and_upload(c, in->fixed, in->moving, in->fixed_mask, in->moving_mask, flo, fhi, mlo, mhi, stages,
                           nstages);
  return gr_comm_agree_msg(c->comm, s);
}

static gr_status register_sharded(gr_backend *be, gr_comm *comm, const gr_slab_inputs *in, const gr_affine *initial,
                                  const gr_stage_config *stages, int nstages, const gr_reg_options *opt,
                                  gr_stage_result *out, int whole_fields) {
  if (!be || !comm || !in || !in->fixed || !in->moving || !stages || nstages < 1 || !out)
    return gr_error(GR_ERR_INVALID_ARG, "sharded registration: missing argument");
  if (!be->ops->sample_slab || !be->ops->slab_finalize || !be->ops->metric_region)
    return gr_error(GR_ERR_UNSUPPORTED, "backend '%s' has no Grid Parallel kernels (sample_slab, metric_region): "
                    "run it with one shard", be->ops->name);
  for (int k = 0; k < nstages; ++k) memset(&out[k], 0, sizeof out[k]);
  /* Halo and ring messages are backend memory: tell the communicator how to move device buffers. */
  const gr_comm_memory *prev_mem = gr_comm_get_memory(comm);
  if (!prev_mem) gr_comm_set_memory(comm, gr_backend_comm_memory(be));
  gr_gp_ctx gp;
  memset(&gp, 0, sizeof gp);
  gp.nranks = gr_comm_size(comm);
  gp.rank = gr_comm_rank(comm);
  gp.whole_fields = whole_fields;
  gr_reg_ctx c;
  memset(&c, 0, sizeof c);
  c.be = be;
  c.comm = comm;
  c.fixed_geom = &in->fixed_geom;
  c.moving_geom = &in->moving_geom;
  c.opt = opt;
  c.nstages = nstages;
  c.t0 = gr_wall_seconds();
  c.gp = &gp;
  gr_status s = prepare_sharded(&c, in, stages, nstages);
  const int prepared = s == GR_OK;
  if (s == GR_OK) s = run_stages(&c, initial, stages, nstages, out);
  release(&c);
  if (s != GR_OK) {
    for (int k = 0; k < nstages; ++k) gr_stage_result_clear(&out[k]);
    /* Errors every rank reaches together (agreed checks, global N == 0,
     * parameters, unsupported sizes) end normally; anything else may have hit
     * one rank only, with the others blocked in a collective: stop them. */
    const int agreed = !prepared || s == GR_ERR_EMPTY || s == GR_ERR_PARAM || s == GR_ERR_UNSUPPORTED;
    if (!agreed) gr_comm_abort(comm, s, gr_last_error());
  }
  gr_comm_set_memory(comm, prev_mem);
  return s;
}

gr_status gr_register_slabs(gr_backend *be, gr_comm *comm, const gr_slab_inputs *in, const gr_affine *initial,
                            const gr_stage_config *stages, int nstages, const gr_reg_options *opt,
                            gr_stage_result *out) {
  return register_sharded(be, comm, in, initial, stages, nstages, opt, out, 0);
}

/* Whole images on every rank: views of this rank's planes (no copy). */
static void slab_view(const gr_image *img, int P, int rank, gr_image *view) {
  int64_t z0, z1;
  gr_decomp_slab(img->geom.size[2], P, rank, &z0, &z1);
  *view = *img;
  gr_geometry_slab(&img->geom, z0, z1, &view->geom);
  view->data = img->data + z0 * img->geom.size[0] * img->geom.size[1];
}

gr_status gr_register(gr_backend *be, gr_comm *comm, const gr_image *fixed, const gr_image *moving,
                      const gr_image *fixed_mask, const gr_image *moving_mask, const gr_affine *initial,
                      const gr_stage_config *stages, int nstages, const gr_reg_options *opt, gr_stage_result *out) {
  if (!be || !comm || !fixed || !moving || !stages || nstages < 1 || !out)
    return gr_error(GR_ERR_INVALID_ARG, "gr_register: missing argument");
  if (fixed->ncomp != 1 || moving->ncomp != 1)
    return gr_error(GR_ERR_UNSUPPORTED, "registration needs scalar images (got %d and %d components)", fixed->ncomp,
                    moving->ncomp);
  if (gr_comm_size(comm) > 1) {
    const int P = gr_comm_size(comm), me = gr_comm_rank(comm);
    gr_status s = check_mask(fixed_mask, fixed, "fixed");
    if (s == GR_OK) s = check_mask(moving_mask, moving, "moving");
    if (s != GR_OK) return s;
    gr_image views[4];
    gr_slab_inputs in;
    memset(&in, 0, sizeof in);
    in.fixed_geom = fixed->geom;
    in.moving_geom = moving->geom;
    slab_view(fixed, P, me, &views[0]);
    slab_view(moving, P, me, &views[1]);
    in.fixed = &views[0];
    in.moving = &views[1];
    if (fixed_mask) {
      slab_view(fixed_mask, P, me, &views[2]);
      in.fixed_mask = &views[2];
    }
    if (moving_mask) {
      slab_view(moving_mask, P, me, &views[3]);
      in.moving_mask = &views[3];
    }
    return register_sharded(be, comm, &in, initial, stages, nstages, opt, out, 1);
  }
  for (int k = 0; k < nstages; ++k) memset(&out[k], 0, sizeof out[k]);
  gr_reg_ctx c;
  memset(&c, 0, sizeof c);
  c.be = be;
  c.comm = comm;
  c.fixed = fixed;
  c.moving = moving;
  c.fixed_mask = fixed_mask;
  c.moving_mask = moving_mask;
  c.fixed_geom = &fixed->geom;
  c.moving_geom = &moving->geom;
  c.opt = opt;
  c.nstages = nstages;
  c.t0 = gr_wall_seconds();
  gr_status s = prepare(&c, stages, nstages);
  if (s == GR_OK) s = run_stages(&c, initial, stages, nstages, out);
  release(&c);
  if (s != GR_OK)
    for (int k = 0; k < nstages; ++k) gr_stage_result_clear(&out[k]);
  return s;
}

/* ---- local shards: threads of this process ------------------------------------------ */
typedef struct local_job {
  gr_backend *be;
  const gr_image *fixed, *moving, *fixed_mask, *moving_mask;
  const gr_affine *initial;
  const gr_stage_config *stages;
  int nstages;
  const gr_reg_options *opt;
  gr_stage_result *out;      /* shard 0's results: the caller's array */
  gr_stage_result *scratch;  /* the other shards' (identical) results, dropped */
} local_job;

static gr_status local_shard(gr_comm *comm, void *user) {
  local_job *j = user;
  const int me = gr_comm_rank(comm);
  gr_stage_result *out = me == 0 ? j->out : j->scratch + (size_t)(me - 1) * (size_t)j->nstages;
  const gr_status s = gr_register(j->be, comm, j->fixed, j->moving, j->fixed_mask, j->moving_mask, j->initial,
                                  j->stages, j->nstages, me == 0 ? j->opt : NULL, out);
  if (me != 0)
    for (int k = 0; k < j->nstages; ++k) gr_stage_result_clear(&out[k]);
  return s;
}

gr_status gr_register_local_shards(gr_backend *be, int nshards, const gr_image *fixed, const gr_image *moving,
                                   const gr_image *fixed_mask, const gr_image *moving_mask, const gr_affine *initial,
                                   const gr_stage_config *stages, int nstages, const gr_reg_options *opt,
                                   gr_stage_result *out) {
  if (nshards < 1) return gr_error(GR_ERR_INVALID_ARG, "local shards: %d (must be >= 1)", nshards);
  if (nshards == 1) {
    gr_comm *c = NULL;
    gr_status s = gr_comm_local_create(&c);
    if (s == GR_OK) s = gr_register(be, c, fixed, moving, fixed_mask, moving_mask, initial, stages, nstages, opt, out);
    gr_comm_destroy(c);
    return s;
  }
  local_job j = {be, fixed, moving, fixed_mask, moving_mask, initial, stages, nstages, opt, out, NULL};
  j.scratch = calloc((size_t)(nshards - 1) * (size_t)(nstages > 0 ? nstages : 1), sizeof *j.scratch);
  if (!j.scratch) return gr_error(GR_ERR_NOMEM, "local shards: result scratch");
  const gr_status s = gr_comm_local_group_run(nshards, local_shard, &j);
  free(j.scratch);
  if (s != GR_OK)
    for (int k = 0; k < nstages; ++k) gr_stage_result_clear(&out[k]);
  return s;
}

void gr_stage_result_clear(gr_stage_result *r) {
  gr_image_destroy(r->field);
  gr_image_destroy(r->inverse_field);
  r->field = r->inverse_field = NULL;
}
