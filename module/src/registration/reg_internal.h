/* Internal state shared by the registration stages. */
#ifndef GIGAREG_REG_INTERNAL_H
#define GIGAREG_REG_INTERNAL_H

#include "gigareg/registration.h"

typedef struct gr_reg_ctx {
  gr_backend *be;
  gr_comm *comm;
  const gr_image *fixed, *moving, *fixed_mask, *moving_mask;
  const gr_reg_options *opt;
  float *fixed_norm, *moving_norm;   /* full-resolution intensity-normalised images (backend) */
  float *fixed_mask_dev, *moving_mask_dev;
  gr_grid fixed_grid, moving_grid;
  int stage, nstages;
  double t0;                          /* wall clock at start */
} gr_reg_ctx;

/* One pyramid level: fixed/moving smoothed and resampled onto coarser grids. */
typedef struct gr_level {
  gr_geometry fgeom, mgeom;
  gr_grid fgrid, mgrid;
  float *f, *m, *fmask, *mmask;      /* backend memory; masks may be NULL */
  int64_t nf, nm;
} gr_level;

gr_status gr_level_build(gr_reg_ctx *c, double shrink, double sigma_vox, gr_level *out);
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

gr_status gr_stage_linear(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);
gr_status gr_stage_greedy(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);
gr_status gr_stage_syn(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r);

/* Helpers shared by greedy and SyN. */
typedef struct gr_field_opt {
  float *grad, *m, *v, *step;   /* 3 planes each, backend */
  int t;
} gr_field_opt;
gr_status gr_field_opt_init(gr_backend *be, int64_t n, gr_field_opt *o);
void gr_field_opt_free(gr_backend *be, gr_field_opt *o);
/* Smooth grad, Adam-normalise, scale to lr voxels max, compose into *u (swaps
 * *u with a scratch buffer), smooth u. */
gr_status gr_field_update(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_grid *g,
                          gr_field_opt *o, float **u, float **scratch, double lr);
/* Resample a 3-plane field from one grid to another (CLAMP, linear). */
gr_status gr_field_resample(gr_backend *be, const gr_grid *dst_grid, float **dst, const gr_grid *src_grid,
                            const float *src);
/* Download a backend field into a new host image on geometry g. */
gr_status gr_field_download(gr_backend *be, const gr_geometry *g, const float *src, gr_image **out);
#endif
