#include <math.h>
#include <string.h>
#include <stdlib.h>
#include "registration/reg_internal.h"
#include "kernels/u16.h"

static double min_spacing(const gr_geometry *g) {
  return fmin(g->spacing[0], fmin(g->spacing[1], g->spacing[2]));
}

/* Per-axis factor: an anisotropic image (2.4 mm slices of 0.86 mm pixels) is
 * shrunk towards isotropic voxels of shrink x its finest spacing, so coarse
 * levels do not collapse the thick axis to a handful of slices. */
static double axis_shrink(const gr_geometry *g, double shrink, int a) {
  const double f = shrink * min_spacing(g) / g->spacing[a];
  return f > 1.0 ? f : 1.0;
}

void gr_geometry_shrink(const gr_geometry *g, double shrink, gr_geometry *out) {
  *out = *g;
  if (shrink <= 1.0) return;
  double shift[3];
  for (int a = 0; a < 3; ++a) {
    int64_t n = (int64_t)floor((double)g->size[a] / axis_shrink(g, shrink, a) + 0.5);
    if (n < 1) n = 1;
    out->size[a] = n;
    /* Same physical extent: voxel corners of the coarse grid coincide with the fine grid's. */
    out->spacing[a] = g->spacing[a] * (double)g->size[a] / (double)n;
    shift[a] = 0.5 * (out->spacing[a] - g->spacing[a]);
  }
  for (int r = 0; r < 3; ++r) {
    double s = 0.0;
    for (int a = 0; a < 3; ++a) s += g->direction[r * 3 + a] * shift[a];
    out->origin[r] = g->origin[r] + s;
  }
}

void gr_level_sigma_vox(const gr_geometry *g, double sigma, double sv[3]) {
  const double ms = min_spacing(g);
  for (int a = 0; a < 3; ++a) sv[a] = sigma * ms / g->spacing[a];
}

/* Smooth a full-resolution backend image in place (a level's copy of it, or
 * the image itself when the level reads it where it is). */
static gr_status smooth_in_place(gr_backend *be, const gr_geometry *geom, const gr_grid *grid, float *img, double sigma) {
  if (!(sigma > 0.0)) return GR_OK;
  double sv[3];
  gr_level_sigma_vox(geom, sigma, sv);
  return be->ops->smooth(be, grid, img, 1, sv);
}

/* Smooth a copy of a full-resolution backend image and resample it onto `dst`. */
static gr_status level_image(gr_backend *be, const gr_geometry *src_geom, const gr_grid *src_grid, const float *src,
                             double sigma, const gr_grid *dst_grid, gr_interp interp, float **out) {
  const int64_t nsrc = src_grid->n[0] * src_grid->n[1] * src_grid->n[2];
  const int64_t ndst = dst_grid->n[0] * dst_grid->n[1] * dst_grid->n[2];
  *out = be->ops->alloc(be, (size_t)ndst * sizeof(float));
  if (!*out) return GR_ERR_NOMEM;
  const float *from = src;
  float *tmp = NULL;
  gr_status s = GR_OK;
  if (sigma > 0.0) {
    tmp = be->ops->alloc(be, (size_t)nsrc * sizeof(float));
    if (!tmp) return GR_ERR_NOMEM;
    s = be->ops->copy(be, tmp, src, (size_t)nsrc * sizeof(float));
    if (s == GR_OK) s = smooth_in_place(be, src_geom, src_grid, tmp, sigma);
    from = tmp;
  }
  if (s == GR_OK) s = be->ops->resample(be, dst_grid, *out, src_grid, from, 1, NULL, NULL, interp, GR_BOUNDARY_CLAMP);
  if (tmp) be->ops->free(be, tmp);
  return s;
}

/* ---- sharded levels ------------------------------------------------------------- */
/* This rank's planes of the whole-image smoothing: the own slab with a halo of
 * ceil(3 sigma_z) planes exchanged, smoothed; *tmp (fs->nloc floats) owns it. */
static gr_status shard_smooth_halo(gr_reg_ctx *c, const gr_shard *fs, const float *src_own, const double sv[3],
                                   float **tmp) {
  gr_backend *be = c->be;
  *tmp = be->ops->alloc(be, (size_t)fs->nloc * sizeof(float));
  if (!*tmp) return GR_ERR_NOMEM;
  gr_status s = be->ops->copy(be, *tmp + gr_shard_own_offset(fs), src_own, (size_t)fs->nown * sizeof(float));
  if (s == GR_OK) s = gr_halo_exchange(c->comm, fs, *tmp, 1);
  if (s == GR_OK) s = be->ops->smooth(be, &fs->local, *tmp, 1, sv);
  return s;
}

/* The sharded counterpart of smooth_in_place: the own planes of the smoothing
 * copied back over the rank's slab of the full-resolution image. */
static gr_status shard_smooth_in_place(gr_reg_ctx *c, const gr_geometry *src_geom, const gr_grid *src_grid,
                                       float *src_own, double sigma) {
  if (!(sigma > 0.0)) return GR_OK;
  double sv[3];
  gr_level_sigma_vox(src_geom, sigma, sv);
  gr_shard fs;
  gr_status s = gr_shard_init(src_grid, c->gp->nranks, c->gp->rank, (int)ceil(3.0 * sv[2]), &fs);
  float *tmp = NULL;
  if (s == GR_OK) s = shard_smooth_halo(c, &fs, src_own, sv, &tmp);
  if (s == GR_OK) s = c->be->ops->copy(c->be, src_own, tmp + gr_shard_own_offset(&fs), (size_t)fs.nown * sizeof(float));
  if (tmp) c->be->ops->free(c->be, tmp);
  return s;
}

/* The sharded counterpart of level_image: smooth this rank's full-resolution
 * slab with a halo of ceil(3 sigma_z) planes (exchanged, so the owned planes
 * are exactly the whole-image smoothing), then ring-resample the smoothed
 * owned planes of every rank onto planes [oz0, oz0 + onz) of the level grid.
 * Down-sampling reads the fine planes around each coarse plane: mostly the own
 * slab, a few planes of the neighbours; the ring's bounding box skips the rest. */
static gr_status shard_level_image(gr_reg_ctx *c, const gr_geometry *src_geom, const gr_grid *src_grid,
                                   const float *src_own, double sigma, const gr_grid *dst_grid, int64_t oz0,
                                   int64_t onz, gr_interp interp, float **out) {
  gr_backend *be = c->be;
  double sv[3];
  gr_level_sigma_vox(src_geom, sigma, sv);
  const int hs = sigma > 0.0 ? (int)ceil(3.0 * sv[2]) : 0;
  gr_shard fs;
  gr_status s = gr_shard_init(src_grid, c->gp->nranks, c->gp->rank, hs, &fs);
  if (s != GR_OK) return s;
  const int64_t npts = dst_grid->n[0] * dst_grid->n[1] * onz;
  *out = be->ops->alloc(be, (size_t)(npts > 0 ? npts : 1) * sizeof(float));
  double *acc = be->ops->alloc(be, (size_t)(npts > 0 ? npts : 1) * sizeof(double));
  float *tmp = NULL;
  if (!*out || !acc) s = GR_ERR_NOMEM;
  const float *from = src_own;
  if (s == GR_OK && sigma > 0.0) {
    s = shard_smooth_halo(c, &fs, src_own, sv, &tmp);
    from = tmp + gr_shard_own_offset(&fs);
  }
  if (s == GR_OK) {
    gr_slab_sample pts;
    memset(&pts, 0, sizeof pts);
    pts.out_grid = dst_grid;
    pts.out_z0 = oz0;
    pts.out_nz = onz;
    pts.interp = interp;
    pts.boundary = GR_BOUNDARY_CLAMP;
    pts.acc = acc;
    const gr_ring_image img = {src_grid, from, 1, fs.nown};
    s = gr_ring_sample(be, c->comm, &img, &pts, NULL);
  }
  if (s == GR_OK) s = be->ops->slab_finalize(be, npts, acc, NULL, 1.0, *out);
  if (tmp) be->ops->free(be, tmp);
  if (acc) be->ops->free(be, acc);
  return s;
}

/* No later level of the run reads the context's full-resolution images. */
static int run_last_level(const gr_reg_ctx *c, const gr_stage_config *cfg, int level) {
  return c->stage == c->nstages - 1 && level == cfg->levels - 1;
}

/* The moving level is this rank's slab of the moving grid, the planes the
 * full-resolution moving image holds: at shrink 1 it reads that buffer, as it
 * is or smoothed in place at the run's last level (gr_level_reuses_images);
 * the fixed level holds halo planes besides its own: always a copy. */
static gr_status level_build_sharded(gr_reg_ctx *c, const gr_stage_config *cfg, int level, int halo, gr_level *l) {
  const double shrink = cfg->shrink[level], sigma_vox = cfg->sigma_vox[level];
  const int full = shrink <= 1.0, plain = gr_level_reuses_images(cfg, level, run_last_level(c, cfg, level));
  const gr_gp_ctx *gp = c->gp;
  gr_status s = gr_shard_check_planes(&l->fgrid, gp->nranks, "a fixed pyramid level");
  if (s == GR_OK) s = gr_shard_check_planes(&l->mgrid, gp->nranks, "a moving pyramid level");
  if (s == GR_OK) s = gr_shard_init(&l->fgrid, gp->nranks, gp->rank, halo, &l->fs);
  if (s != GR_OK) return s;
  l->sharded = 1;
  gr_decomp_slab(l->mgrid.n[2], gp->nranks, gp->rank, &l->mz0, &l->mz1);
  l->nf = l->fs.nloc;
  l->nm = (l->mz1 - l->mz0) * l->mgrid.n[0] * l->mgrid.n[1];
  const int64_t fz0 = l->fs.ext0, fnz = l->fs.ext1 - l->fs.ext0, mz0 = l->mz0, mnz = l->mz1 - l->mz0;
  s = shard_level_image(c, c->fixed_geom, &c->fixed_grid, c->fixed_norm, sigma_vox, &l->fgrid, fz0, fnz,
                        GR_INTERP_LINEAR, &l->f);
  if (s == GR_OK && plain && sigma_vox > 0.0) {
    s = c->norm_consumed ? gr_error(GR_ERR_INTERNAL, "pyramid: the full-resolution images were already smoothed")
                         : shard_smooth_in_place(c, c->moving_geom, &c->moving_grid, c->moving_norm, sigma_vox);
    c->norm_consumed = 1;
  }
  if (s == GR_OK && !plain)
    s = shard_level_image(c, c->moving_geom, &c->moving_grid, c->moving_norm, sigma_vox, &l->mgrid, mz0, mnz,
                          GR_INTERP_LINEAR, &l->m);
  if (s == GR_OK && c->fixed_mask_dev)
    s = shard_level_image(c, c->fixed_geom, &c->fixed_grid, c->fixed_mask_dev, 0.0, &l->fgrid, fz0, fnz,
                          GR_INTERP_NEAREST, &l->fmask);
  if (s == GR_OK && c->moving_mask_dev && !full)
    s = shard_level_image(c, c->moving_geom, &c->moving_grid, c->moving_mask_dev, 0.0, &l->mgrid, mz0, mnz,
                          GR_INTERP_NEAREST, &l->mmask);
  if (s == GR_OK && plain) {
    l->m = c->moving_norm;
    l->borrowed |= 2;
  }
  if (s == GR_OK && full) {
    l->mmask = c->moving_mask_dev;
    l->borrowed |= 8;
  }
  return s;
}

static gr_status level_build_float(gr_reg_ctx *c, const gr_stage_config *cfg, int level, int halo, gr_level *l) {
  const double shrink = cfg->shrink[level], sigma_vox = cfg->sigma_vox[level];
  memset(l, 0, sizeof *l);
  gr_geometry_shrink(c->fixed_geom, shrink, &l->fgeom);
  gr_geometry_shrink(c->moving_geom, shrink, &l->mgeom);
  gr_status s = gr_grid_from_geometry(&l->fgeom, &l->fgrid);
  if (s == GR_OK) s = gr_grid_from_geometry(&l->mgeom, &l->mgrid);
  if (s != GR_OK) return s;
  if (c->gp) {
    s = level_build_sharded(c, cfg, level, halo, l);
    if (s != GR_OK) gr_level_release(c->be, l);
    return s;
  }
  l->nf = gr_geometry_nvox(&l->fgeom);
  l->nm = gr_geometry_nvox(&l->mgeom);
  gr_backend *be = c->be;
  /* A level at full resolution would be a resampled copy of the full-resolution
   * images onto their own grid: the same values, 8 more bytes per voxel for the
   * pair at the stage's memory peak. It reads the context's buffers instead:
   * as they are when not smoothed, smoothed in place when no later level needs
   * them unsmoothed (the last level of the last stage: gr_level_reuses_images).
   * Masks are never smoothed. */
  const int full = shrink <= 1.0;
  const int reuse = gr_level_reuses_images(cfg, level, run_last_level(c, cfg, level));
  if (reuse) {
    s = c->norm_consumed ? gr_error(GR_ERR_INTERNAL, "pyramid: the full-resolution images were already smoothed")
                         : smooth_in_place(be, c->fixed_geom, &c->fixed_grid, c->fixed_norm, sigma_vox);
    if (s == GR_OK) s = smooth_in_place(be, c->moving_geom, &c->moving_grid, c->moving_norm, sigma_vox);
    if (sigma_vox > 0.0) c->norm_consumed = 1;
  } else {
    s = level_image(be, c->fixed_geom, &c->fixed_grid, c->fixed_norm, sigma_vox, &l->fgrid, GR_INTERP_LINEAR, &l->f);
    if (s == GR_OK)
      s = level_image(be, c->moving_geom, &c->moving_grid, c->moving_norm, sigma_vox, &l->mgrid, GR_INTERP_LINEAR, &l->m);
  }
  if (s == GR_OK && c->fixed_mask_dev && !full)
    s = level_image(be, c->fixed_geom, &c->fixed_grid, c->fixed_mask_dev, 0.0, &l->fgrid, GR_INTERP_NEAREST, &l->fmask);
  if (s == GR_OK && c->moving_mask_dev && !full)
    s = level_image(be, c->moving_geom, &c->moving_grid, c->moving_mask_dev, 0.0, &l->mgrid, GR_INTERP_NEAREST, &l->mmask);
  if (s != GR_OK) {
    gr_level_release(be, l);
    return s;
  }
  if (reuse) {
    l->f = c->fixed_norm;
    l->m = c->moving_norm;
    l->borrowed |= 3;
  }
  if (full) {
    l->fmask = c->fixed_mask_dev;
    l->mmask = c->moving_mask_dev;
    l->borrowed |= 12;
  }
  return GR_OK;
}

int gr_level_reuses_images(const gr_stage_config *cfg, int level, int last_of_run) {
  if (cfg->shrink[level] > 1.0) return 0;
  return !(cfg->sigma_vox[level] > 0.0) || last_of_run;
}

/* ---- 16-bit level images --------------------------------------------------------- */
/* A float buffer of n voxels rounded to the 16-bit grid through the host (the
 * backends without pack_u16, Grid Parallel slabs, and stages that resample the
 * level images). */
static gr_status round_u16_via_host(gr_backend *be, float *x, int64_t n) {
  if (n <= 0) return GR_OK;
  float *h = malloc((size_t)n * sizeof(float));
  if (!h) return gr_error(GR_ERR_NOMEM, "cannot allocate %lld bytes to round an image to 16 bits", (long long)n * 4);
  gr_status s = be->ops->download(be, h, x, (size_t)n * sizeof(float));
  for (int64_t i = 0; s == GR_OK && i < n; ++i) h[i] = gr_u16_round(h[i]);
  if (s == GR_OK) s = be->ops->upload(be, x, h, (size_t)n * sizeof(float));
  free(h);
  return s;
}

/* One level image (bit `bit` of borrowed; *ctx_buf the context's buffer it may
 * borrow). last: no later level reads the context's buffer. */
static gr_status quantize_one(gr_reg_ctx *c, gr_level *l, int bit, float **img, uint16_t **img16, float **ctx_buf,
                              int64_t n, int pack, int last) {
  gr_backend *be = c->be;
  const int borrowed = (l->borrowed & (1 << bit)) != 0;
  gr_status s = GR_OK;
  if (pack) {
    *img16 = be->ops->alloc(be, ((size_t)n * sizeof(uint16_t) + 3) / 4 * 4);
    if (!*img16) return GR_ERR_NOMEM;
    s = be->ops->pack_u16(be, n, *img, *img16);
    if (s != GR_OK) return s;
    if (!borrowed) {
      be->ops->free(be, *img);
    } else if (last) { /* the context's image is dead after this level */
      be->ops->free(be, *ctx_buf);
      *ctx_buf = NULL;
      l->borrowed &= ~(1 << bit);
    }
    *img = NULL;
    return GR_OK;
  }
  if (borrowed && !last) { /* a rounded copy: later levels read the context's image unrounded */
    float *copy = be->ops->alloc(be, (size_t)n * sizeof(float));
    if (!copy) return GR_ERR_NOMEM;
    s = be->ops->copy(be, copy, *img, (size_t)n * sizeof(float));
    if (s != GR_OK) {
      be->ops->free(be, copy);
      return s;
    }
    *img = copy;
    l->borrowed &= ~(1 << bit);
  }
  return round_u16_via_host(be, *img, n);
}

int gr_stage_reads_u16(const gr_stage_config *cfg, int64_t moving_nvox) {
  const int r = cfg->metric.lncc_radius > 0 ? cfg->metric.lncc_radius : 2;
  const int mi = cfg->metric.kind == GR_METRIC_MI && moving_nvox < ((int64_t)1 << 31);
  return cfg->kind == GR_STAGE_GREEDY && (mi || (cfg->metric.kind == GR_METRIC_LNCC && r <= 4));
}

static gr_status level_quantize(gr_reg_ctx *c, const gr_stage_config *cfg, int level, gr_level *l) {
  if (!cfg->image_u16) return GR_OK;
  const int pack = c->be->ops->pack_u16 && !l->sharded && gr_stage_reads_u16(cfg, l->nm);
  const int last = run_last_level(c, cfg, level);
  gr_status s = quantize_one(c, l, 0, &l->f, &l->f16, &c->fixed_norm, l->nf, pack, last);
  if (s == GR_OK) s = quantize_one(c, l, 1, &l->m, &l->m16, &c->moving_norm, l->nm, pack, last);
  return s;
}

gr_status gr_level_build(gr_reg_ctx *c, const gr_stage_config *cfg, int level, int halo, gr_level *l) {
  gr_status s = level_build_float(c, cfg, level, halo, l);
  if (s == GR_OK) s = level_quantize(c, cfg, level, l);
  if (s != GR_OK) gr_level_release(c->be, l);
  return s;
}

gr_status gr_level_metric(gr_reg_ctx *c, const gr_level *lv, const gr_metric_spec *spec, const gr_affine *T,
                          const float *disp, gr_metric_result *res, float *grad_u) {
  gr_backend *be = c->be;
  if (!lv->sharded) { /* the level's 16-bit images, if packed (never for sharded levels) */
    gr_metric_spec s16 = *spec;
    s16.fixed_u16 = lv->f16;
    s16.moving_u16 = lv->m16;
    return be->ops->metric(be, &s16, &lv->fgrid, lv->f, lv->fmask, &lv->mgrid, lv->m, lv->mmask, T, disp, res,
                           grad_u);
  }
  const gr_dist_metric_args a = {spec, &lv->fs, lv->f, lv->fmask, &lv->mgrid, lv->m, lv->mmask, T, disp};
  return gr_dist_metric(be, c->comm, &a, res, grad_u, NULL);
}

void gr_level_release(gr_backend *be, gr_level *l) {
  float **bufs[4] = {&l->f, &l->m, &l->fmask, &l->mmask};
  for (int i = 0; i < 4; ++i) {
    if (*bufs[i] && !(l->borrowed & (1 << i))) be->ops->free(be, *bufs[i]);
    *bufs[i] = NULL;
  }
  l->borrowed = 0;
  if (l->f16) be->ops->free(be, l->f16);
  if (l->m16) be->ops->free(be, l->m16);
  l->f16 = l->m16 = NULL;
}
