/* Memory planner (gigareg/memory_plan.h): replays gr_register's allocations on
 * headers only.
 *
 * Why a replay and not a bytes-per-voxel table: the peak depends on what is
 * alive at the same moment (a coarse field still held while the next level's
 * is allocated, the full-resolution smoothing copy made while level images
 * already exist, kernel scratch on top of the optimizer state), and on sizes
 * that are not proportional to the volume (LNCC rings are per plane, MI
 * histograms per thread). Each function below mirrors one function of the
 * driver in the same order of alloc/free calls; the comment names it. When the
 * driver changes its allocations, test_memory_plan (planner vs measured
 * be->bytes_peak) fails and this file must follow. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gigareg/memory_plan.h"
#include "registration/reg_internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef GIGAREG_HAVE_CUDA
#include <cuda_runtime_api.h>
#include "kernels/cuda_entry.h"
#endif

const char *gr_mem_kind_name(gr_mem_kind k) {
  switch (k) {
    case GR_MEM_IMAGES: return "images";
    case GR_MEM_MASKS: return "masks";
    case GR_MEM_FIELDS: return "fields";
    case GR_MEM_OPTIMIZER: return "optimizer";
    case GR_MEM_SCRATCH: return "scratch";
    case GR_MEM_HALO: return "halo";
    case GR_MEM_NKINDS: break;
  }
  return "?";
}

void gr_memory_plan_options_defaults(gr_memory_plan_options *o) {
  memset(o, 0, sizeof *o);
  o->device = GR_DEVICE_CPU;
  o->ranks = 1;
  o->image_bytes = 4;
}

const char *gr_memory_format_bytes(size_t bytes, char *buf, size_t n) {
  static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  if (u == 0) snprintf(buf, n, "%zu B", bytes);
  else snprintf(buf, n, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
  return buf;
}

/* ---- the simulated allocator --------------------------------------------------- */

/* One simulated buffer: its own planes and, for ranks > 1, its halo planes. */
typedef struct sbuf {
  gr_mem_kind kind;
  size_t main, halo;
} sbuf;

typedef struct sim {
  gr_memory_plan *plan;
  const gr_memory_plan_options *o;
  int nt;     /* CPU threads the kernels size their scratch for */
  int cuda;   /* model the CUDA backend's scratch */
  size_t dev[GR_MEM_NKINDS], dev_total, host;
  gr_memory_phase *ph;
} sim;

static void touch(sim *s) {
  gr_memory_plan *p = s->plan;
  gr_memory_phase *ph = s->ph;
  const size_t total = s->dev_total + s->host;
  if (ph) {
    if (s->dev_total > ph->device_peak || (ph->device_peak == 0 && ph->host_at_peak == 0)) {
      ph->device_peak = s->dev_total;
      memcpy(ph->kind, s->dev, sizeof ph->kind);
      ph->host_at_peak = s->host;
    }
    if (total > ph->total_peak) ph->total_peak = total;
  }
  const int idx = ph ? (int)(ph - p->phase) : 0;
  if (s->dev_total > p->device_peak) {
    p->device_peak = s->dev_total;
    p->device_peak_phase = idx;
  }
  if (s->host > p->host_peak) p->host_peak = s->host;
  if (total > p->total_peak) {
    p->total_peak = total;
    p->total_peak_phase = idx;
  }
}

static void s_alloc(sim *s, const sbuf *b) {
  s->dev[b->kind] += b->main;
  s->dev[GR_MEM_HALO] += b->halo;
  s->dev_total += b->main + b->halo;
  touch(s);
}

static void s_free(sim *s, const sbuf *b) {
  s->dev[b->kind] -= b->main;
  s->dev[GR_MEM_HALO] -= b->halo;
  s->dev_total -= b->main + b->halo;
}

/* Allocated and freed again inside one backend call (kernel scratch). */
static void s_transient(sim *s, gr_mem_kind kind, size_t bytes) {
  const sbuf b = {kind, bytes, 0};
  s_alloc(s, &b);
  s_free(s, &b);
}

static void h_alloc(sim *s, size_t bytes) {
  s->host += bytes;
  touch(s);
}

static void h_free(sim *s, size_t bytes) { s->host -= bytes; }

static gr_status phase_begin(sim *s, int stage, int level, const int64_t grid[3], const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static gr_status phase_begin(sim *s, int stage, int level, const int64_t grid[3], const char *fmt, ...) {
  gr_memory_plan *p = s->plan;
  if (p->nphases >= GR_PLAN_MAX_PHASES)
    return gr_error(GR_ERR_INVALID_ARG, "memory plan: more than %d phases", GR_PLAN_MAX_PHASES);
  gr_memory_phase *ph = &p->phase[p->nphases++];
  memset(ph, 0, sizeof *ph);
  ph->stage = stage;
  ph->level = level;
  if (grid) memcpy(ph->grid, grid, sizeof ph->grid);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ph->label, sizeof ph->label, fmt, ap);
  va_end(ap);
  s->ph = ph;
  touch(s); /* what is already resident counts for this phase */
  return GR_OK;
}

/* ---- per-rank grids ------------------------------------------------------------ */

/* Planes a rank holds of an nz-plane grid: its slab plus up to h halo planes
 * on each side (never more than the whole grid). */
static void slab(const sim *s, int64_t nz, int h, int64_t *own, int64_t *total) {
  const int64_t N = s->o->ranks;
  if (N <= 1) {
    *own = *total = nz;
    return;
  }
  *own = (nz + N - 1) / N;
  /* the largest rank: an interior one (halos on both sides), or with two
   * ranks either end rank (one neighbour) */
  int64_t t = *own + (N == 2 ? 1 : 2) * (int64_t)h;
  *total = t < nz ? t : nz;
}

static sbuf gbuf(const sim *s, const int64_t n[3], int h, size_t bytes_per_voxel, gr_mem_kind kind) {
  int64_t own, tot;
  slab(s, n[2], h, &own, &tot);
  const size_t plane = (size_t)n[0] * (size_t)n[1] * bytes_per_voxel;
  sbuf b = {kind, plane * (size_t)own, plane * (size_t)(tot - own)};
  return b;
}

/* Grid a rank's kernels run on (its planes including halos). */
static void local_dims(const sim *s, const int64_t n[3], int h, int64_t out[3]) {
  int64_t own, tot;
  slab(s, n[2], h, &own, &tot);
  out[0] = n[0];
  out[1] = n[1];
  out[2] = tot;
}

static int64_t nvox3(const int64_t n[3]) { return n[0] * n[1] * n[2]; }



/* ---- kernel scratch models ----------------------------------------------------- */

static int kernel_radius(double sigma, int64_t len) { /* cpu_smooth.c / cuda_smooth.cu */
  const double r = ceil(3.0 * sigma);
  return (int)(r < (double)(len - 1) ? r : (double)(len - 1));
}

/* be->ops->smooth: CPU cpu_smooth (one block per axis: kernel + per-thread line
 * bundles of CPU_SMOOTH_BUNDLE = 16 lanes); CUDA cuda_smooth.cu (one volume of
 * floats, whatever the component count). */
static void smooth_scratch(sim *s, const int64_t n[3], const double sigma[3]) {
  if (s->cuda) {
    int any = 0;
    for (int a = 0; a < 3; ++a) any |= sigma[a] > 0.0 && kernel_radius(sigma[a], n[a]) > 0;
    if (any) s_transient(s, GR_MEM_SCRATCH, (size_t)nvox3(n) * 4);
    return;
  }
  for (int a = 0; a < 3; ++a) {
    if (!(sigma[a] > 0.0)) continue;
    const int64_t len = n[a];
    const int r = kernel_radius(sigma[a], len);
    if (r <= 0) continue;
    const size_t line = (size_t)(len + 2 * r) + (size_t)len;
    const size_t per_thread = a == 0 ? line : line * 16;
    const size_t kernel = (size_t)(2 * r + 1) + (size_t)len;
    s_transient(s, GR_MEM_SCRATCH, (kernel + per_thread * (size_t)s->nt) * 8);
  }
}

static size_t round256(size_t b) { return (b + 255) / 256 * 256; }

/* Blocks of cuda_common.cuh's voxel_grid (32 x 8 threads, at most 8192 blocks). */
static size_t cuda_voxel_blocks(const int64_t n[3]) {
  const int64_t gx = (n[0] + 31) / 32, gy = (n[1] + 7) / 8;
  int64_t gz = 8192 / (gx * gy);
  if (gz < 1) gz = 1;
  if (gz > n[2]) gz = n[2];
  if (gz > 65535) gz = 65535;
  return (size_t)(gx * gy * gz);
}

/* be->ops->metric scratch on a fixed grid n (per rank). CPU: cpu_lncc.c
 * lncc_alloc, cpu_mi.c, cpu_mse.c, cpu_ncc.c. CUDA: cuda_lncc.cu (a float or
 * double warped volume + validity + block partials), cuda_mi.cu, cuda_mse.cu, cuda_ncc.cu. */
/* want_grad: 0 the value, 1 with the affine gradient (linear stages), 2 with the field gradient. */
static void metric_scratch(sim *s, const gr_metric_spec *spec, const int64_t n[3], int want_grad, int masks) {
  const size_t nx = (size_t)n[0], ny = (size_t)n[1], nz = (size_t)n[2], P = nx * ny;
  const size_t bins = (size_t)(spec->mi_bins > 0 ? spec->mi_bins : 32), bb = bins * bins;
  const int r = spec->lncc_radius > 0 ? spec->lncc_radius : 2;
  const size_t R = (size_t)(2 * r + 1);
  size_t b = 0;
  if (s->cuda && s->o->ranks > 1 && spec->kind == GR_METRIC_LNCC) {
    /* cuda_metric_region.cu region_lncc: separable double passes over chunks
     * of planes, ~165 bytes per chunk voxel, chunks of at most 4 GiB */
    const size_t whole = (size_t)nvox3(n) * (size_t)(96 + (want_grad ? 44 : 0) + (masks ? 1 : 0));
    s_transient(s, GR_MEM_SCRATCH, whole < ((size_t)4 << 30) ? whole : ((size_t)4 << 30));
    return;
  }
  if (s->cuda) {
    const size_t nb = cuda_voxel_blocks(n);
    switch (spec->kind) {
      case GR_METRIC_LNCC:
        /* partials: at most a few blocks per SM plus the x-y tiles; 64 KiB covers them */
        /* W in float (cuda_lncc_fast.cu, radius 1..4) or double; none for the
         * field gradient at radius 1..4 (the lean path keeps W in grad_u) */
        b = (want_grad == 2 && r <= 4 ? 0 : round256((size_t)nvox3(n) * (r <= 4 ? 4 : 8))) +
            (masks ? round256((size_t)nvox3(n)) : 0) + 256 + 65536;
        break;
      case GR_METRIC_MI: b = (bb + 1) * 8 + bb * 8 + nb * 12 * 8; break;
      case GR_METRIC_MSE: b = nb * 14 * 8; break;
      case GR_METRIC_NCC: b = nb * 12 * 8; break;
    }
    s_transient(s, GR_MEM_SCRATCH, b);
    return;
  }
  const size_t nt = (size_t)s->nt;
  switch (spec->kind) {
    case GR_METRIC_LNCC:
      b = R * P * 8;                                  /* warped ring */
      if (want_grad) b += R * 3 * P * 4 + R * 4 * P * 8; /* gradient ring, alpha ring */
      if (masks) b += R * P;                          /* validity ring */
      b += 5 * P * 8 + nt * 2 * 5 * nx * 8 + ny * 13 * 8 + (nx + ny + nz) * 4 + (R * R * R + 1) * 8;
      b += nz * 13 * 8;                               /* plane partials (cpu_metric_lncc) */
      break;
    case GR_METRIC_MI: b = nt * bb * 8 + bb * 8 + nz * 12 * 8; break;
    case GR_METRIC_MSE: b = nz * 14 * 8; break;
    case GR_METRIC_NCC: b = nz * 12 * 8; break;
  }
  s_transient(s, GR_MEM_SCRATCH, b);
}

/* ---- the driver, replayed ----------------------------------------------------- */

typedef struct pctx {
  sim s;
  const gr_geometry *fg, *mg;
  int64_t fn[3], mn[3];
  int hfull;                 /* halo of full-resolution arrays */
  size_t ib, mb;             /* bytes per image / mask voxel */
  sbuf fnorm, mnorm, fmask, mmask;
  int nstages;
  size_t host_fixed, host_moving, host_fmask, host_mmask;
} pctx;

typedef struct plevel {
  gr_geometry fgeom, mgeom;
  int64_t fn[3], mn[3];
  int h;
  sbuf f, m, fm, mm;
} plevel;

static void geom_dims(const gr_geometry *g, int64_t n[3]) {
  for (int a = 0; a < 3; ++a) n[a] = g->size[a];
}

static int ceil3(double sigma) { return sigma > 0 ? (int)ceil(3.0 * sigma) : 0; }

/* Halo planes of a level's slabs (ranks > 1), as the stages ask for them:
 * linear_stage.c (LNCC: 2r, else none) and shard_ops.c gr_shard_field_halo
 * (trilinear footprint 1, LNCC 2r, 3 sigma of the two Gaussians, the compose
 * step's reach ceil(lr) + 1). */
static int level_halo(const sim *s, const gr_stage_config *c, int l) {
  if (s->o->ranks <= 1) return 0;
  const int two_r = c->metric.kind == GR_METRIC_LNCC ? 2 * (c->metric.lncc_radius > 0 ? c->metric.lncc_radius : 2) : 0;
  if (c->kind != GR_STAGE_GREEDY && c->kind != GR_STAGE_SYN) return two_r;
  int h = two_r > 1 ? two_r : 1;
  if (ceil3(c->grad_sigma_vox) > h) h = ceil3(c->grad_sigma_vox);
  if (ceil3(c->field_sigma_vox) > h) h = ceil3(c->field_sigma_vox);
  const double lr = c->learning_rate[l] > 0.0 ? c->learning_rate[l] : 0.0;
  if ((int)ceil(lr) + 1 > h) h = (int)ceil(lr) + 1;
  return h;
}

/* A smoothed full-resolution copy (pyramid.c level_image's, or the sharded
 * in-place smoothing's halo copy): the copy and the smoothing's scratch. */
static void smooth_copy(pctx *c, const gr_geometry *full, const int64_t full_n[3], double sigma, size_t bpv) {
  sim *s = &c->s;
  sbuf tmp = gbuf(s, full_n, c->hfull, bpv, GR_MEM_SCRATCH);
  s_alloc(s, &tmp);
  double sv[3];
  gr_level_sigma_vox(full, sigma, sv);
  int64_t ln[3];
  local_dims(s, full_n, c->hfull, ln);
  smooth_scratch(s, ln, sv);
  s_free(s, &tmp);
}

/* pyramid.c level_image: the level buffer, then (sigma > 0) a full-resolution
 * copy that is smoothed (sigma in finest-axis voxels) and resampled. */
static sbuf level_image(pctx *c, const gr_geometry *full, const int64_t full_n[3], const int64_t lvl_n[3], int h,
                        double sigma, size_t bpv, gr_mem_kind kind) {
  sbuf out = gbuf(&c->s, lvl_n, h, bpv, kind);
  s_alloc(&c->s, &out);
  if (sigma > 0.0) smooth_copy(c, full, full_n, sigma, bpv);
  return out;
}

/* pyramid.c quantize_one: a level image (borrowed: the context's buffer ctx)
 * packed to 16 bits, the float freed (the context's too at its last use); or
 * rounded through a host copy, in a float copy of its own when borrowed and
 * needed later unrounded. */
static void level_quantize(pctx *c, sbuf *img, int borrowed, sbuf *ctx, const int64_t n[3], int h, int pack,
                           int last) {
  sim *s = &c->s;
  if (pack) {
    const sbuf q = gbuf(s, n, h, 2, GR_MEM_IMAGES);
    s_alloc(s, &q);
    if (!borrowed) {
      s_free(s, img);
    } else if (last) {
      s_free(s, ctx);
      ctx->main = ctx->halo = 0;
    }
    *img = q;
    return;
  }
  if (borrowed && !last) {
    *img = gbuf(s, n, h, 4, GR_MEM_IMAGES);
    s_alloc(s, img);
  }
  const size_t hb = (size_t)nvox3(n) * 4; /* round_u16_via_host */
  h_alloc(s, hb);
  h_free(s, hb);
}

/* pyramid.c smooth_in_place: the full-resolution image smoothed where it is */
static void smooth_full_in_place(pctx *c, const gr_geometry *full, const int64_t full_n[3], double sigma) {
  if (!(sigma > 0.0)) return;
  double sv[3];
  gr_level_sigma_vox(full, sigma, sv);
  smooth_scratch(&c->s, full_n, sv);
}

/* pyramid.c gr_level_build. Shrink 1, one rank: the level reads the
 * full-resolution buffers (images when not smoothed or, at the run's last
 * level, smoothed in place: gr_level_reuses_images; masks always). Ranks > 1:
 * the moving image when not smoothed and the moving mask (level_build_sharded). */
static void level_build(pctx *c, int k, const gr_stage_config *cfg, int l, plevel *L) {
  memset(L, 0, sizeof *L);
  gr_geometry_shrink(c->fg, cfg->shrink[l], &L->fgeom);
  gr_geometry_shrink(c->mg, cfg->shrink[l], &L->mgeom);
  geom_dims(&L->fgeom, L->fn);
  geom_dims(&L->mgeom, L->mn);
  L->h = level_halo(&c->s, cfg, l);
  const int one = c->s.o->ranks <= 1, full = cfg->shrink[l] <= 1.0;
  const int smoothed = cfg->sigma_vox[l] > 0.0, last = k == c->nstages - 1 && l == cfg->levels - 1;
  const int mreuse = gr_level_reuses_images(cfg, l, last);
  const int reuse = one && mreuse; /* sharded: only the moving slab (no halo) */
  const sbuf none = {GR_MEM_IMAGES, 0, 0};
  if (reuse) {
    smooth_full_in_place(c, c->fg, c->fn, cfg->sigma_vox[l]);
    smooth_full_in_place(c, c->mg, c->mn, cfg->sigma_vox[l]);
  } else if (mreuse && smoothed) {
    smooth_copy(c, c->mg, c->mn, cfg->sigma_vox[l], c->ib); /* shard_smooth_in_place */
  }
  L->f = reuse ? none : level_image(c, c->fg, c->fn, L->fn, L->h, cfg->sigma_vox[l], c->ib, GR_MEM_IMAGES);
  L->m = mreuse ? none : level_image(c, c->mg, c->mn, L->mn, L->h, cfg->sigma_vox[l], c->ib, GR_MEM_IMAGES);
  if (c->s.o->fixed_mask) L->fm = one && full ? none : level_image(c, c->fg, c->fn, L->fn, L->h, 0.0, c->mb, GR_MEM_MASKS);
  if (c->s.o->moving_mask) L->mm = full ? none : level_image(c, c->mg, c->mn, L->mn, L->h, 0.0, c->mb, GR_MEM_MASKS);
  if (cfg->image_u16) {
    const int pack = c->s.cuda && one && gr_stage_reads_u16(cfg, nvox3(L->mn));
    level_quantize(c, &L->f, reuse, &c->fnorm, L->fn, L->h, pack, last);
    level_quantize(c, &L->m, mreuse, &c->mnorm, L->mn, L->h, pack, last);
  }
}

static void level_release(pctx *c, plevel *L) {
  s_free(&c->s, &L->f);
  s_free(&c->s, &L->m);
  if (c->s.o->fixed_mask) s_free(&c->s, &L->fm);
  if (c->s.o->moving_mask) s_free(&c->s, &L->mm);
}

/* One metric evaluation on a level: the ring sampler's in-flight moving shard
 * (ranks > 1) plus the kernel's own scratch. */
static void level_metric(pctx *c, const gr_stage_config *cfg, const plevel *L, int want_grad, int masks) {
  sim *s = &c->s;
  sbuf ring = {GR_MEM_HALO, 0, 0}, acc = {GR_MEM_SCRATCH, 0, 0};
  if (s->o->ranks > 1) {
    /* dist_metric.c: W (and its index gradient, the moving mask) presampled in
     * double on the stored planes; ring_sampler.c: two in-flight moving slabs */
    acc = gbuf(s, L->fn, L->h, 8 + (want_grad ? 24 : 0) + (s->o->moving_mask ? 8 : 0), GR_MEM_SCRATCH);
    s_alloc(s, &acc);
    const sbuf mshard = gbuf(s, L->mn, 0, 2 * c->ib, GR_MEM_HALO);
    ring.main = mshard.main;
    s_alloc(s, &ring);
  }
  int64_t ln[3];
  local_dims(s, L->fn, L->h, ln);
  metric_scratch(s, &cfg->metric, ln, want_grad, masks);
  if (ring.main) s_free(s, &ring);
  if (acc.main) s_free(s, &acc);
}

static const char *kind_name(gr_stage_kind k) {
  switch (k) {
    case GR_STAGE_TRANSLATION: return "translation";
    case GR_STAGE_RIGID: return "rigid";
    case GR_STAGE_AFFINE: return "affine";
    case GR_STAGE_GREEDY: return "greedy";
    case GR_STAGE_SYN: return "syn";
  }
  return "?";
}

static gr_status begin_level(pctx *c, int k, const gr_stage_config *cfg, int l) {
  gr_geometry g;
  gr_geometry_shrink(c->fg, cfg->shrink[l], &g);
  int64_t n[3], ln[3];
  geom_dims(&g, n);
  local_dims(&c->s, n, level_halo(&c->s, cfg, l), ln);
  return phase_begin(&c->s, k, l, ln, "%s level %d/%d (shrink %g)", kind_name(cfg->kind), l + 1, cfg->levels,
                     cfg->shrink[l]);
}

/* linear_stage.c gr_stage_linear: level images, metric scratch per iteration. */
static gr_status plan_linear(pctx *c, int k, const gr_stage_config *cfg) {
  const int masks = c->s.o->fixed_mask || c->s.o->moving_mask;
  for (int l = 0; l < cfg->levels; ++l) {
    gr_status st = begin_level(c, k, cfg, l);
    if (st != GR_OK) return st;
    plevel L;
    level_build(c, k, cfg, l, &L);
    if (cfg->iterations[l] > 0) level_metric(c, cfg, &L, 1, masks);
    level_release(c, &L);
  }
  return GR_OK;
}

/* One process on CUDA smooths the gradient inside adam_moments_smoothed and
 * the field with smooth_to, both the fused march of cuda_smooth_xyz.cuh
 * (equal radii 1..4, rows of whole float4s): no scratch plane. */
static int cuda_march(const sim *s, const int64_t n[3], const double sigma[3]) {
  if (!s->cuda || s->o->ranks > 1 || n[0] % 4 != 0) return 0;
  int r0 = 0;
  for (int a = 0; a < 3; ++a) {
    const int r = sigma[a] > 0.0 ? kernel_radius(sigma[a], n[a]) : 0;
    if (r < 1 || r > 4 || (r0 && r != r0)) return 0;
    r0 = r;
  }
  return 1;
}

/* field_ops.c gr_field_update: smooth the gradient (3 planes), Adam, compose, smooth u. */
static void field_update(pctx *c, const gr_stage_config *cfg, const plevel *L) {
  int64_t ln[3];
  local_dims(&c->s, L->fn, L->h, ln);
  const double gs[3] = {cfg->grad_sigma_vox, cfg->grad_sigma_vox, cfg->grad_sigma_vox};
  const double fs[3] = {cfg->field_sigma_vox, cfg->field_sigma_vox, cfg->field_sigma_vox};
  if (!cuda_march(&c->s, ln, gs)) smooth_scratch(&c->s, ln, gs);
  if (c->s.cuda) s_transient(&c->s, GR_MEM_SCRATCH, 8); /* cuda_optim.cu: the max reduction */
  if (!cuda_march(&c->s, ln, fs)) smooth_scratch(&c->s, ln, fs);
}

/* Both backends fuse the update (adam_moments + adam_compose, or for shards
 * sample_slab with gr_slab_adam): no direction or scratch field; the compose
 * result overwrites the dead gradient. */
static int fused_update(const pctx *c) {
  (void)c;
  return 1;
}

/* field_ops.c gr_field_opt_init: gradient, m, v (6 B/voxel each as bfloat16), step */
static void opt_alloc(pctx *c, const gr_stage_config *cfg, const plevel *L, sbuf o[4]) {
  memset(o, 0, 4 * sizeof *o);
  for (int i = 0; i < (fused_update(c) ? 3 : 4); ++i) {
    const int moment = i == 1 || i == 2;
    o[i] = gbuf(&c->s, L->fn, L->h, moment && cfg->adam_moments_bf16 ? 6 : 12, GR_MEM_OPTIMIZER);
    s_alloc(&c->s, &o[i]);
  }
}

static void opt_free(pctx *c, sbuf o[4]) {
  for (int i = 0; i < (fused_update(c) ? 3 : 4); ++i) s_free(&c->s, &o[i]);
}

/* A field held on one grid, moved to another (field_ops.c gr_field_resample:
 * the new buffer exists before the old one is freed). */
static void field_move(pctx *c, sbuf *u, const int64_t n[3], int h) {
  sbuf up = gbuf(&c->s, n, h, 12, GR_MEM_FIELDS);
  s_alloc(&c->s, &up);
  s_free(&c->s, u);
  *u = up;
}

/* cpu_field.c / cuda_field.cu invert: one temporary field. */
static void invert_scratch(pctx *c) {
  const sbuf t = gbuf(&c->s, c->fn, c->hfull, 12, GR_MEM_SCRATCH);
  s_alloc(&c->s, &t);
  s_free(&c->s, &t);
}

/* Host copy of a full-resolution field (gr_field_download), kept as a stage
 * result. Ranks > 1: the rank's slab, as issue 5's distributed I/O intends (the
 * first Grid Parallel code gathers whole fields, which this does not model). */
static size_t host_field_bytes(pctx *c) { return gbuf(&c->s, c->fn, 0, 12, GR_MEM_FIELDS).main; }

static int same_dims(const int64_t a[3], const int64_t b[3]) { return a[0] == b[0] && a[1] == b[1] && a[2] == b[2]; }

/* greedy_stage.c gr_stage_greedy */
static gr_status plan_greedy(pctx *c, int k, const gr_stage_config *cfg, size_t *host_results) {
  const int masks = c->s.o->fixed_mask || c->s.o->moving_mask;
  sbuf u = {GR_MEM_FIELDS, 0, 0};
  int have_u = 0;
  int64_t un[3] = {0, 0, 0};
  for (int l = 0; l < cfg->levels; ++l) {
    gr_status st = begin_level(c, k, cfg, l);
    if (st != GR_OK) return st;
    plevel L;
    level_build(c, k, cfg, l, &L);
    if (!have_u) {
      u = gbuf(&c->s, L.fn, L.h, 12, GR_MEM_FIELDS);
      s_alloc(&c->s, &u);
      have_u = 1;
    } else {
      field_move(c, &u, L.fn, L.h);
    }
    memcpy(un, L.fn, sizeof un);
    sbuf o[4];
    opt_alloc(c, cfg, &L, o);
    if (cfg->iterations[l] > 0) {
      level_metric(c, cfg, &L, 2, masks);
      field_update(c, cfg, &L);
    }
    opt_free(c, o);
    level_release(c, &L);
  }
  int64_t ln[3];
  local_dims(&c->s, c->fn, c->hfull, ln);
  gr_status st = phase_begin(&c->s, k, -1, ln, "%s finish (full-resolution field + inverse)", kind_name(cfg->kind));
  if (st != GR_OK) return st;
  if (!same_dims(un, c->fn)) field_move(c, &u, c->fn, c->hfull);
  sbuf inv = gbuf(&c->s, c->fn, c->hfull, 12, GR_MEM_FIELDS);
  s_alloc(&c->s, &inv);
  invert_scratch(c);
  const size_t hf = host_field_bytes(c);
  h_alloc(&c->s, hf); /* r->field */
  h_alloc(&c->s, hf); /* r->inverse_field */
  *host_results += 2 * hf;
  s_free(&c->s, &inv);
  s_free(&c->s, &u);
  return GR_OK;
}

/* syn_stage.c gr_stage_syn */
static gr_status plan_syn(pctx *c, int k, const gr_stage_config *cfg, size_t *host_results) {
  sbuf u[2] = {{GR_MEM_FIELDS, 0, 0}, {GR_MEM_FIELDS, 0, 0}};
  int have_u = 0;
  int64_t un[3] = {0, 0, 0};
  for (int l = 0; l < cfg->levels; ++l) {
    gr_status st = begin_level(c, k, cfg, l);
    if (st != GR_OK) return st;
    plevel L;
    level_build(c, k, cfg, l, &L);
    sbuf o[2][4];
    for (int q = 0; q < 2; ++q) { /* syn_level_alloc: u[q] then its optimizer state */
      if (have_u) field_move(c, &u[q], L.fn, L.h);
      else {
        u[q] = gbuf(&c->s, L.fn, L.h, 12, GR_MEM_FIELDS);
        s_alloc(&c->s, &u[q]);
      }
      opt_alloc(c, cfg, &L, o[q]);
    }
    have_u = 1;
    memcpy(un, L.fn, sizeof un);
    sbuf warped = gbuf(&c->s, L.fn, L.h, 4, GR_MEM_SCRATCH);
    s_alloc(&c->s, &warped);
    if (cfg->iterations[l] > 0) {
      level_metric(c, cfg, &L, 2, c->s.o->fixed_mask || c->s.o->moving_mask); /* moving side */
      level_metric(c, cfg, &L, 2, c->s.o->fixed_mask);                       /* fixed side */
      field_update(c, cfg, &L);
      field_update(c, cfg, &L);
    }
    for (int q = 0; q < 2; ++q) opt_free(c, o[q]);
    s_free(&c->s, &warped);
    level_release(c, &L);
  }
  int64_t ln[3];
  local_dims(&c->s, c->fn, c->hfull, ln);
  gr_status st = phase_begin(&c->s, k, -1, ln, "%s finish (full-resolution fields, forward + inverse)",
                             kind_name(cfg->kind));
  if (st != GR_OK) return st;
  if (!same_dims(un, c->fn))
    for (int q = 0; q < 2; ++q) field_move(c, &u[q], c->fn, c->hfull);
  const size_t hf = host_field_bytes(c);
  for (int q = 0; q < 2; ++q) { /* syn_compose_result: inverse + composed field, then download */
    sbuf inv = gbuf(&c->s, c->fn, c->hfull, 12, GR_MEM_FIELDS), d = gbuf(&c->s, c->fn, c->hfull, 12, GR_MEM_FIELDS);
    s_alloc(&c->s, &inv);
    s_alloc(&c->s, &d);
    invert_scratch(c);
    h_alloc(&c->s, hf);
    *host_results += hf;
    s_free(&c->s, &inv);
    s_free(&c->s, &d);
  }
  for (int q = 0; q < 2; ++q) s_free(&c->s, &u[q]);
  return GR_OK;
}

/* The CLI after gr_register (apps/gigareg_main.c write_outputs): per stage the
 * exported fields (host fwd on the fixed grid, inv on the moving grid; backend
 * copies while resampling the inverse) and the result image. Ranks > 1: slabs,
 * as written by issue 5's distributed writers (not the first code's gather). */
static gr_status plan_outputs(pctx *c, const gr_stage_config *stages, int nstages) {
  sim *s = &c->s;
  gr_status st = phase_begin(s, nstages, -1, c->fn, "outputs (result images, exported fields)");
  if (st != GR_OK) return st;
  const sbuf f4 = gbuf(s, c->fn, 0, 4, GR_MEM_IMAGES), m4 = gbuf(s, c->mn, 0, 4, GR_MEM_IMAGES);
  const sbuf f12 = gbuf(s, c->fn, 0, 12, GR_MEM_FIELDS), m12 = gbuf(s, c->mn, 0, 12, GR_MEM_FIELDS);
  int any_field = 0;
  for (int k = 0; k < nstages; ++k) {
    const int deformable = stages[k].kind == GR_STAGE_GREEDY || stages[k].kind == GR_STAGE_SYN;
    any_field |= deformable;
    if (deformable) {
      h_alloc(s, f12.main);
      h_alloc(s, m12.main);
      s_alloc(s, &f12);
      s_alloc(s, &m12);
      s_free(s, &f12);
      s_free(s, &m12);
      h_free(s, f12.main);
      h_free(s, m12.main);
    }
    s_alloc(s, &m4); /* write_result_image */
    s_alloc(s, &f4);
    if (any_field) s_alloc(s, &f12);
    h_alloc(s, f4.main);
    h_free(s, f4.main);
    if (any_field) s_free(s, &f12);
    s_free(s, &f4);
    s_free(s, &m4);
  }
  return GR_OK;
}

static gr_status check_inputs(const gr_geometry *fixed, const gr_geometry *moving, const gr_stage_config *stages,
                              int nstages, const gr_memory_plan_options *opt, gr_memory_plan *out) {
  if (!fixed || !moving || !stages || !opt || !out || nstages < 1)
    return gr_error(GR_ERR_INVALID_ARG, "memory plan: missing argument");
  if (opt->ranks < 1) return gr_error(GR_ERR_INVALID_ARG, "memory plan: %d ranks (must be >= 1)", opt->ranks);
  if (opt->image_bytes != 2 && opt->image_bytes != 4)
    return gr_error(GR_ERR_INVALID_ARG, "memory plan: %d bytes per image voxel (2 or 4)", opt->image_bytes);
  gr_status s = gr_geometry_validate(fixed, "fixed image");
  if (s == GR_OK) s = gr_geometry_validate(moving, "moving image");
  for (int k = 0; s == GR_OK && k < nstages; ++k) {
    const gr_stage_config *c = &stages[k];
    if (c->levels < 1 || c->levels > GR_MAX_LEVELS)
      return gr_error(GR_ERR_PARAM, "stage %d: NumberOfResolutions %d must be in 1..%d", k, c->levels, GR_MAX_LEVELS);
    for (int l = 0; l < c->levels; ++l)
      if (!(c->shrink[l] >= 1.0) || !(c->sigma_vox[l] >= 0.0))
        return gr_error(GR_ERR_PARAM, "stage %d level %d: pyramid factor %g / smoothing %g out of range", k, l,
                        c->shrink[l], c->sigma_vox[l]);
  }
  return s;
}

gr_status gr_memory_plan_compute(const gr_geometry *fixed, const gr_geometry *moving, const gr_stage_config *stages,
                                 int nstages, const gr_memory_plan_options *opt, gr_memory_plan *out) {
  gr_status st = check_inputs(fixed, moving, stages, nstages, opt, out);
  if (st != GR_OK) return st;
  memset(out, 0, sizeof *out);
  out->opt = *opt;
  out->nstages = nstages;
  for (int k = 0; k < nstages; ++k) {
    const int deformable = stages[k].kind == GR_STAGE_GREEDY || stages[k].kind == GR_STAGE_SYN;
    out->float_moment_stages += deformable && !stages[k].adam_moments_bf16;
    out->float_image_stages += gr_stage_reads_u16(&stages[k], gr_geometry_nvox(moving)) && !stages[k].image_u16;
  }
  pctx c;
  memset(&c, 0, sizeof c);
  c.s.plan = out;
  c.s.o = &out->opt;
  c.s.cuda = opt->device == GR_DEVICE_CUDA;
  c.s.nt = 1;
#ifdef _OPENMP
  c.s.nt = opt->threads > 0 ? opt->threads : omp_get_max_threads();
#endif
  c.fg = fixed;
  c.mg = moving;
  c.nstages = nstages;
  geom_dims(fixed, c.fn);
  geom_dims(moving, c.mn);
  c.ib = (size_t)opt->image_bytes;
  c.mb = opt->image_bytes == 2 ? 1 : 4; /* the fp16 what-if keeps masks as bytes */
  /* Full-resolution arrays are smoothed for every level's pyramid: the widest Gaussian sets their halo. */
  if (opt->ranks > 1) {
    c.hfull = 1;
    for (int k = 0; k < nstages; ++k)
      for (int l = 0; l < stages[k].levels; ++l)
        if (ceil3(stages[k].sigma_vox[l]) > c.hfull) c.hfull = ceil3(stages[k].sigma_vox[l]);
    out->halo_planes = c.hfull;
    for (int k = 0; k < nstages; ++k)
      for (int l = 0; l < stages[k].levels; ++l)
        if (level_halo(&c.s, &stages[k], l) > out->halo_planes) out->halo_planes = level_halo(&c.s, &stages[k], l);
  }
  sim *s = &c.s;

  /* Inputs (CLI: gr_image_read keeps float copies on the host) and driver.c
   * prepare(): a host staging copy per image while its normalised copy is uploaded. */
  st = phase_begin(s, -1, -1, c.fn, "inputs + preparation");
  if (st != GR_OK) return st;
  c.host_fixed = gbuf(s, c.fn, c.hfull, 4, GR_MEM_IMAGES).main + gbuf(s, c.fn, c.hfull, 4, GR_MEM_IMAGES).halo;
  c.host_moving = gbuf(s, c.mn, c.hfull, 4, GR_MEM_IMAGES).main + gbuf(s, c.mn, c.hfull, 4, GR_MEM_IMAGES).halo;
  h_alloc(s, c.host_fixed);
  h_alloc(s, c.host_moving);
  if (opt->fixed_mask) h_alloc(s, c.host_fmask = c.host_fixed);
  if (opt->moving_mask) h_alloc(s, c.host_mmask = c.host_moving);
  c.fnorm = gbuf(s, c.fn, c.hfull, c.ib, GR_MEM_IMAGES);
  c.mnorm = gbuf(s, c.mn, c.hfull, c.ib, GR_MEM_IMAGES);
  h_alloc(s, c.host_fixed);
  s_alloc(s, &c.fnorm);
  h_free(s, c.host_fixed);
  h_alloc(s, c.host_moving);
  s_alloc(s, &c.mnorm);
  h_free(s, c.host_moving);
  if (opt->fixed_mask) {
    c.fmask = gbuf(s, c.fn, c.hfull, c.mb, GR_MEM_MASKS);
    s_alloc(s, &c.fmask);
  }
  if (opt->moving_mask) {
    c.mmask = gbuf(s, c.mn, c.hfull, c.mb, GR_MEM_MASKS);
    s_alloc(s, &c.mmask);
  }

  size_t host_results = 0;
  for (int k = 0; k < nstages && st == GR_OK; ++k) {
    gr_stage_config cfg = stages[k];
    switch (cfg.kind) {
      case GR_STAGE_TRANSLATION:
      case GR_STAGE_RIGID:
      case GR_STAGE_AFFINE: st = plan_linear(&c, k, &cfg); break;
      case GR_STAGE_GREEDY: st = plan_greedy(&c, k, &cfg, &host_results); break;
      case GR_STAGE_SYN: st = plan_syn(&c, k, &cfg, &host_results); break;
    }
  }
  if (st != GR_OK) return st;
  /* driver.c release() */
  s_free(s, &c.fnorm);
  s_free(s, &c.mnorm);
  if (opt->fixed_mask) s_free(s, &c.fmask);
  if (opt->moving_mask) s_free(s, &c.mmask);
  if (opt->with_outputs) st = plan_outputs(&c, stages, nstages);
  return st;
}

size_t gr_memory_plan_need(const gr_memory_plan *p) {
  return p->opt.device == GR_DEVICE_CUDA ? p->device_peak : p->total_peak;
}

int gr_memory_plan_min_ranks(const gr_geometry *fixed, const gr_geometry *moving, const gr_stage_config *stages,
                             int nstages, const gr_memory_plan_options *opt, size_t budget, int max_ranks) {
  gr_memory_plan *p = malloc(sizeof *p);
  if (!p) return 0;
  gr_memory_plan_options o = *opt;
  int found = 0;
  for (int n = 1; n <= max_ranks && !found; ++n) {
    o.ranks = n;
    if (gr_memory_plan_compute(fixed, moving, stages, nstages, &o, p) != GR_OK) break;
    if (gr_memory_plan_need(p) <= budget) found = n;
  }
  free(p);
  return found;
}

/* ---- what a machine offers ------------------------------------------------------ */

/* "123", "64M", "2G", "1.5GiB": bytes. */
static int parse_bytes(const char *s, size_t *out) {
  errno = 0;
  char *end = NULL;
  const double v = strtod(s, &end);
  if (errno || end == s || !(v >= 0.0)) return 0;
  while (*end == ' ') ++end;
  double mul = 1.0;
  switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0; ++end; break;
    case 'M': mul = 1024.0 * 1024.0; ++end; break;
    case 'G': mul = 1024.0 * 1024.0 * 1024.0; ++end; break;
    case 'T': mul = 1024.0 * 1024.0 * 1024.0 * 1024.0; ++end; break;
    default: break;
  }
  if (mul > 1.0 && (*end == 'i' || *end == 'I')) ++end;
  if (mul > 1.0 && (*end == 'b' || *end == 'B')) ++end;
  if (*end == 'B' && mul == 1.0) ++end;
  if (*end != '\0' || v * mul > 1.8e19) return 0;
  *out = (size_t)(v * mul);
  return 1;
}

static gr_status query_cpu(gr_memory_budget *b) {
  b->kind = GR_DEVICE_CPU;
  FILE *f = fopen("/proc/meminfo", "r");
  size_t avail = 0, total = 0;
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      unsigned long long kb = 0;
      if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = (size_t)kb * 1024;
      else if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) total = (size_t)kb * 1024;
    }
    fclose(f);
  }
  if (avail && total) {
    snprintf(b->source, sizeof b->source, "MemAvailable in /proc/meminfo");
  } else {
    const long pages = sysconf(_SC_AVPHYS_PAGES), all = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || all <= 0 || ps <= 0) return gr_error(GR_ERR_IO, "cannot determine the available RAM");
    avail = (size_t)pages * (size_t)ps;
    total = (size_t)all * (size_t)ps;
    snprintf(b->source, sizeof b->source, "free physical pages (sysconf)");
  }
  b->available = avail;
  b->total = total;
  return GR_OK;
}

static gr_status query_cuda(int index, gr_memory_budget *b) {
  b->kind = GR_DEVICE_CUDA;
  b->index = index;
#ifdef GIGAREG_HAVE_CUDA
  const int count = gr_cuda_device_count();
  if (count <= 0) return gr_error(GR_ERR_DEVICE, "no CUDA device found");
  if (index >= count) return gr_error(GR_ERR_DEVICE, "CUDA device %d requested but only %d device(s) found", index, count);
  int prev = 0;
  if (cudaGetDevice(&prev) != cudaSuccess) prev = 0;
  size_t fr = 0, tot = 0;
  cudaError_t e = cudaSetDevice(index);
  if (e == cudaSuccess) e = cudaMemGetInfo(&fr, &tot);
  (void)cudaSetDevice(prev); /* leave the caller's current device as it was */
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return gr_error(GR_ERR_DEVICE, "cudaMemGetInfo on device %d failed: %s", index, cudaGetErrorString(e));
  }
  b->available = fr;
  b->total = tot;
  snprintf(b->source, sizeof b->source, "cudaMemGetInfo on cuda:%d", index);
  return GR_OK;
#else
  (void)index;
  return gr_error(GR_ERR_UNSUPPORTED, "this build has no CUDA backend (rebuild with CUDA)");
#endif
}

static int cuda_present(void) {
#ifdef GIGAREG_HAVE_CUDA
  return gr_cuda_device_count() > 0;
#else
  return 0;
#endif
}

gr_status gr_memory_budget_query(gr_device_kind kind, int index, gr_memory_budget *out) {
  if (!out) return gr_error(GR_ERR_INVALID_ARG, "gr_memory_budget_query: NULL output");
  memset(out, 0, sizeof *out);
  if (kind == GR_DEVICE_AUTO) kind = cuda_present() ? GR_DEVICE_CUDA : GR_DEVICE_CPU;
  gr_status s = kind == GR_DEVICE_CUDA ? query_cuda(index, out) : query_cpu(out);
  /* The override replaces the detected number even when detection failed, so a
   * test can simulate a small machine anywhere. */
  const char *env = getenv("GIGAREG_MEMORY_LIMIT_BYTES");
  if (env && *env) {
    size_t lim = 0;
    if (!parse_bytes(env, &lim))
      return gr_error(GR_ERR_INVALID_ARG, "GIGAREG_MEMORY_LIMIT_BYTES='%s' is not a byte count (e.g. 64M, 2G)", env);
    out->kind = kind;
    out->index = index;
    out->available = lim;
    if (out->total < lim) out->total = lim;
    snprintf(out->source, sizeof out->source, "GIGAREG_MEMORY_LIMIT_BYTES");
    return GR_OK;
  }
  return s;
}

static void breakdown(const gr_memory_phase *ph, char *buf, size_t n) {
  size_t len = 0;
  buf[0] = '\0';
  for (int k = 0; k < GR_MEM_NKINDS && len + 1 < n; ++k) {
    if (!ph->kind[k]) continue;
    char b[32];
    const int w = snprintf(buf + len, n - len, "%s%s %s", len ? ", " : "", gr_mem_kind_name((gr_mem_kind)k),
                           gr_memory_format_bytes(ph->kind[k], b, sizeof b));
    if (w < 0) break;
    len += (size_t)w;
  }
  if (ph->host_at_peak && len + 1 < n) {
    char b[32];
    snprintf(buf + len, n - len, "%shost %s", len ? ", " : "", gr_memory_format_bytes(ph->host_at_peak, b, sizeof b));
  }
}

gr_status gr_memory_plan_check(const gr_memory_plan *p, const gr_memory_budget *device, const gr_memory_budget *host,
                               int min_ranks) {
  if (!p || !device) return gr_error(GR_ERR_INVALID_ARG, "gr_memory_plan_check: missing argument");
  const size_t need = gr_memory_plan_need(p);
  const int cuda = p->opt.device == GR_DEVICE_CUDA;
  const gr_memory_budget *short_of = NULL;
  size_t short_need = 0;
  if (need > device->available) {
    short_of = device;
    short_need = need;
  } else if (cuda && host && p->host_peak > host->available) {
    short_of = host;
    short_need = p->host_peak;
  }
  if (!short_of) return GR_OK;
  const int at = short_of == device ? (cuda ? p->device_peak_phase : p->total_peak_phase) : 0;
  const gr_memory_phase *ph = &p->phase[at];
  char a[32], b[32], parts[320], fit[96], where[40], phase[96];
  breakdown(ph, parts, sizeof parts);
  if (ph->stage >= 0 && ph->stage < p->nstages) snprintf(phase, sizeof phase, "stage %d (%s)", ph->stage, ph->label);
  else snprintf(phase, sizeof phase, "%s", ph->label);
  if (short_of->kind == GR_DEVICE_CUDA) snprintf(where, sizeof where, "on cuda:%d", short_of->index);
  else snprintf(where, sizeof where, "of CPU RAM");
  if (min_ranks > 1) snprintf(fit, sizeof fit, "; %d ranks (Grid Parallel slabs) would fit", min_ranks);
  else if (min_ranks == 0 && short_of == device) snprintf(fit, sizeof fit, "; no rank count up to the planner's limit fits");
  else fit[0] = '\0';
  const char *bf16 = p->float_moment_stages ? "; (GigaRegAdamMoments \"bfloat16\") saves 12 B per field voxel" : "";
  const char *u16 = cuda && p->opt.ranks <= 1 && p->float_image_stages
                        ? "; (GigaRegImageStorage \"uint16\") saves 4 B per full-resolution voxel in greedy LNCC/MI stages"
                        : "";
  if (short_of == device)
    return gr_error(GR_ERR_NOMEM,
                    "not enough memory: the memory planner needs %s (%zu bytes) %s at its peak in %s (%s), "
                    "but %s (%zu bytes) are available (%s)%s%s%s; see gigareg --plan",
                    gr_memory_format_bytes(short_need, a, sizeof a), short_need, where, phase, parts,
                    gr_memory_format_bytes(short_of->available, b, sizeof b), short_of->available, short_of->source, fit,
                    bf16, u16);
  return gr_error(GR_ERR_NOMEM,
                  "not enough host memory: the memory planner needs %s (%zu bytes) of CPU RAM for images and results "
                  "beside the GPU, but %s (%zu bytes) are available (%s); see gigareg --plan",
                  gr_memory_format_bytes(short_need, a, sizeof a), short_need,
                  gr_memory_format_bytes(short_of->available, b, sizeof b), short_of->available, short_of->source);
}
