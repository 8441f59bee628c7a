/* Internal state shared by the registration stages. */
#ifndef GIGAREG_REG_INTERNAL_H
#define GIGAREG_REG_INTERNAL_H

#include "gigareg/registration.h"
#include "parallel/gp.h"

/* Grid Parallel state of a sharded registration (NULL in gr_reg_ctx when one
 * process holds everything): which planes this rank owns at full resolution,
 * and where the caller's raw slab voxels are (centre-of-mass initialisation). */
typedef struct gr_gp_ctx {
  int nranks, rank;
  int64_t fz0, fz1, mz0, mz1;     /* owned full-resolution planes, fixed and moving */
  const float *fixed_raw;          /* owned planes of the caller's fixed image (not normalised) */
  const float *moving_raw;
  int whole_fields;                /* gather fields into whole images at the end (gr_register) */
} gr_gp_ctx;

typedef struct gr_reg_ctx {
  gr_backend *be;
  gr_comm *comm;
  const gr_image *fixed, *moving, *fixed_mask, *moving_mask; /* unsharded only; sharded: slabs via gp */
  const gr_geometry *fixed_geom, *moving_geom; /* whole images (both modes) */
  const gr_reg_options *opt;
  float *fixed_norm, *moving_norm;   /* full-resolution intensity-normalised images (backend); sharded: owned planes */
  float *fixed_mask_dev, *moving_mask_dev;
  gr_grid fixed_grid, moving_grid;   /* whole grids */
  int stage, nstages;
  int norm_consumed;                  /* fixed_norm/moving_norm were smoothed in place (the last level) */
  double t0;                          /* wall clock at start */
  gr_gp_ctx *gp;                      /* NULL unless sharded */
} gr_reg_ctx;

/* One pyramid level: fixed/moving smoothed and resampled onto coarser grids.
 * Sharded: f and fmask hold the stored planes of `fs` (owned + halo), m and
 * mmask this rank's slab [mz0, mz1) of the moving level grid (the ring
 * sampler's input); nf counts stored voxels. */
typedef struct gr_level {
  gr_geometry fgeom, mgeom;
  gr_grid fgrid, mgrid;
  float *f, *m, *fmask, *mmask;      /* backend memory; masks may be NULL */
  int borrowed;                      /* bits 0..3: f, m, fmask, mmask are the context's full-resolution
                                      * buffers (not freed by gr_level_release) */
  uint16_t *f16, *m16;               /* 16-bit images (gr_level_quantize), read instead of f / m */
  int64_t nf, nm;
  int sharded;
  gr_shard fs;
  int64_t mz0, mz1;
} gr_level;

/* Level `level` of a stage (its shrink factor and smoothing sigma). `halo`:
 * planes of fixed-grid halo the stage needs at this level (sharded only).
 * cfg->image_u16: the level's images rounded to 16 bits (kernels/u16.h). Packed
 * into f16 / m16 (float copies freed, the context's full-resolution images too
 * when this is their last use) where the backend has pack_u16 and the stage
 * reads them through gr_level_metric alone (greedy, LNCC or MI, one process);
 * otherwise the float images are rounded in place (or, when the level borrows
 * images a later level needs unrounded, in a rounded copy): the same values,
 * so results do not depend on which. */
gr_status gr_level_build(gr_reg_ctx *c, const gr_stage_config *cfg, int level, int halo, gr_level *out);
/* Shrink 1: whether the level reads the context's full-resolution images
 * (unsmoothed, or smoothed in place when last_of_run: no later level of the
 * run reads them) instead of a copy; sharded, the moving slab only.
 * memory_plan.c models it with the same function. */
int gr_level_reuses_images(const gr_stage_config *cfg, int level, int last_of_run);
/* A pyramid smoothing sigma given in finest-axis voxels, per axis of g:
 * thicker axes get proportionally fewer voxels. */
void gr_level_sigma_vox(const gr_geometry *g, double sigma, double sv[3]);
/* A stage whose level images a backend with pack_u16 stores in 16 bits: greedy
 * (the metric is all that reads them) with MI (moving level < 2^31 voxels, its
 * fast sample's int strides) or LNCC radius 1..4: the CUDA metrics that read
 * 16-bit images; the others would need float copies on every call. */
int gr_stage_reads_u16(const gr_stage_config *cfg, int64_t moving_nvox);

/* The metric at one level: the fused backend op on one shard, the distributed
 * metric (ring sampler, ordered reductions) on several. res is global; grad_u
 * (may be NULL) on the level's fixed grid / stored planes. disp on the same. */
gr_status gr_level_metric(gr_reg_ctx *c, const gr_level *lv, const gr_metric_spec *spec, const gr_affine *T,
                          const float *disp, gr_metric_result *res, float *grad_u);
void gr_level_release(gr_backend *be, gr_level *l);
/* Geometry of a grid shrunk by `shrink` covering the same physical extent. */
void gr_geometry_shrink(const gr_geometry *g, double shrink, gr_geometry *out);

/* Loss history: slope test over the last `window` values. */
typedef struct gr_history {
  double *v;
  int n, cap;
} gr_history;
gr_status gr_history_init(gr_history *h, int cap);
void gr_history_free(gr_history *h);
void gr_history_push(gr_history *h, double v);
/* 1 when the least-squares slope over the last `window` values is >= -tol * |mean|. */
int gr_history_converged(const gr_history *h, int window, double tol);

double gr_wall_seconds(void);
void gr_report(gr_reg_ctx *c, int level, int nlevels, int it, int nit, double metric);
/* The iterations of pyramid level l of a deformable stage (greedy, SyN; one
 * process or sharded): evaluate() computes the loss (and whatever the update
 * needs), the loss is reported and recorded, the loop stops at the iteration
 * limit or once the loss curve has flattened (convergence window), otherwise
 * update() (may be NULL) takes the step. *loss keeps the last loss. */
typedef struct gr_level_steps {
  gr_status (*evaluate)(void *user, double *loss);
  gr_status (*update)(void *user);
  void *user;
} gr_level_steps;
gr_status gr_level_iterate(gr_reg_ctx *c, const gr_stage_config *cfg, int l, const gr_level_steps *steps,
                           gr_stage_result *r, double *loss);

gr_status gr_stage_linear(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);
gr_status gr_stage_greedy(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);
gr_status gr_stage_syn(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);

/* Helpers shared by greedy and SyN. */
typedef struct gr_field_opt {
  float *grad, *step; /* 3 planes each, backend */
  gr_moments mom;     /* Adam's m, v (float, or bfloat16 with cfg->adam_moments_bf16) */
  int t;
} gr_field_opt;
/* A greedy level's state for gr_level_iterate: gr_greedy_evaluate is the metric
 * and its field gradient (one process or sharded: gr_level_metric); the update
 * is the stage's own (gr_field_update or gr_shard_field_update). */
typedef struct gr_greedy_iter {
  gr_reg_ctx *c;
  const gr_stage_config *cfg;
  const gr_level *lv;
  const gr_metric_spec *spec;
  const gr_affine *pre;
  float **u, **scratch;
  gr_field_opt *o;
  double lr;
} gr_greedy_iter;
gr_status gr_greedy_evaluate(void *user, double *loss);
/* True when the backend has the fused update ops (adam_moments + adam_compose):
 * gr_field_update then needs neither o->step nor a scratch field. */
int gr_field_update_fused(const gr_backend *be);
/* n voxels; with_step: the unfused update's direction field (float moments
 * only: bf16 moments need the fused ops, GR_ERR_UNSUPPORTED otherwise). */
gr_status gr_field_opt_init(gr_backend *be, int64_t n, int with_step, int bf16, gr_field_opt *o);
void gr_field_opt_free(gr_backend *be, gr_field_opt *o);
/* Smooth grad, Adam-normalise, scale to lr voxels max, compose into *u, smooth
 * u. Fused backends swap *u with o->grad (scratch unused, may be NULL); others
 * swap *u with *scratch. */
gr_status gr_field_update(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_grid *g,
                          gr_field_opt *o, float **u, float **scratch, double lr);
/* Resample a 3-plane field from one grid to another (CLAMP, linear). */
gr_status gr_field_resample(gr_backend *be, const gr_grid *dst_grid, float **dst, const gr_grid *src_grid,
                            const float *src);
/* Download a backend field into a new host image on geometry g. */
gr_status gr_field_download(gr_backend *be, const gr_geometry *g, const float *src, gr_image **out);

/* ---- sharded stages (greedy_sharded.c, syn_sharded.c) and their helpers (shard_ops.c) ---- */
gr_status gr_stage_greedy_sharded(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);
gr_status gr_stage_syn_sharded(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);
/* Halo a deformable stage needs at a level: LNCC 2r (exact window gradient),
 * Gaussian supports of the gradient and field smoothing, the compose reach of
 * one step (ceil(lr) + 1), at least 1 (trilinear). */
int gr_shard_field_halo(const gr_stage_config *cfg, double lr);
/* Sharded gr_field_update: the same arithmetic on the stored planes with halo
 * exchanges between the steps (docs/grid-parallel.md). */
gr_status gr_shard_field_update(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_shard *s, gr_field_opt *o,
                                float **u, double lr);
/* Resample a sharded 3-plane field from the owned planes of shard `from` onto the
 * stored planes of shard `to` (other grid; CLAMP, linear), with the ring sampler. */
gr_status gr_shard_field_resample(gr_reg_ctx *c, const gr_shard *from, const float *src, const gr_shard *to,
                                  float **dst);
/* Fixed-point inverse on a sharded field (owned planes of s, halo 0 arrays). */
gr_status gr_shard_field_invert(gr_reg_ctx *c, const gr_shard *s, const float *u_own, float *inv_own, int iterations);
/* out = s + u o (x + s) for arbitrary (large) s: the ring sampler over u's owned planes. */
gr_status gr_shard_field_compose_ring(gr_reg_ctx *c, const gr_shard *s, const float *u_own, const float *s_own,
                                      float *out_own);
/* Stage result fields from owned planes: whole images (gathered) or slabs. */
gr_status gr_shard_field_result(gr_reg_ctx *c, const gr_shard *s, const float *own, gr_image **out);
#endif
