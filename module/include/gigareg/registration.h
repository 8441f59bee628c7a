/* Staged multi-resolution registration (rigid -> affine -> greedy / SyN), the
 * product's core loop. Each stage is what one elastix parameter file describes.
 * The driver only calls the backend table and the comm seam. */
#ifndef GIGAREG_REGISTRATION_H
#define GIGAREG_REGISTRATION_H

#include <stdio.h>
#include "gigareg/backend.h"
#include "gigareg/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GR_MAX_LEVELS 8

typedef enum gr_stage_kind {
  GR_STAGE_TRANSLATION = 0, GR_STAGE_RIGID, GR_STAGE_AFFINE, GR_STAGE_GREEDY, GR_STAGE_SYN
} gr_stage_kind;

typedef enum gr_optimizer_kind { GR_OPT_ADAM = 0, GR_OPT_GD } gr_optimizer_kind;
typedef enum gr_init_kind { GR_INIT_NONE = 0, GR_INIT_GEOMETRIC_CENTER, GR_INIT_CENTER_OF_MASS } gr_init_kind;

typedef struct gr_stage_config {
  gr_stage_kind kind;
  gr_metric_spec metric;          /* kind, lncc_radius, mi_bins (ranges filled by the driver) */
  int levels;                     /* number of resolutions */
  double shrink[GR_MAX_LEVELS];   /* per level, coarse -> fine (e.g. 4 2 1) */
  double sigma_vox[GR_MAX_LEVELS];/* image smoothing per level, in fine voxels (elastix default: 0.5*shrink) */
  int iterations[GR_MAX_LEVELS];
  gr_optimizer_kind optimizer;
  double learning_rate[GR_MAX_LEVELS]; /* affine: step in mm at the image radius; deformable: max voxels/iteration */
  double grad_sigma_vox;          /* deformable: gradient smoothing (default 1.0) */
  double field_sigma_vox;         /* deformable: field smoothing (default 0.5) */
  double adam_beta1, adam_beta2, adam_eps;
  int adam_moments_bf16;          /* deformable: Adam moments stored as bfloat16 (GigaRegAdamMoments
                                   * "bfloat16"): 12 instead of 24 B/voxel; default 0 (float) */
  int image_u16;                  /* deformable: the level images rounded to 16 bits (GigaRegImageStorage
                                   * "uint16", kernels/u16.h) and, where the backend can (CUDA, greedy,
                                   * LNCC or MI, one process), stored so: 2 instead of 4 B/voxel each */
  int convergence_window;         /* iterations over which the loss slope is tested (default 10) */
  double convergence_tol;         /* stop when the relative slope is > -tol (default 1e-6) */
  gr_init_kind init;              /* only used when the stage is the first linear stage */
  double final_grid_spacing_mm;   /* deformable: field grid spacing (0 = fixed-image grid) */
  int shards;                     /* (GigaRegNumberOfShards N): Grid Parallel shards as threads of one
                                   * process for the whole run (the CLI takes the largest over the
                                   * stages and -shards); 0 = not set. gr_register itself shards by
                                   * its communicator's size. */
} gr_stage_config;

typedef struct gr_progress_info {
  int stage, nstages, level, nlevels, iteration, niterations;
  double metric;
  double elapsed_s, eta_s;
} gr_progress_info;

typedef void (*gr_progress_fn)(void *user, const gr_progress_info *info);

typedef struct gr_reg_options {
  gr_progress_fn progress;   /* may be NULL */
  void *progress_user;
  FILE *log;                 /* elastix.log-style per-iteration log, may be NULL */
  unsigned seed;
} gr_reg_options;

/* Result of one stage, in elastix's chaining convention: the moving point of
 * the whole registration is T_k(...T_1(T_0(T_init(x)))) where T_init is -t0
 * (elastix: T_current(T_initial(x))). A deformable stage's `field` u is kept in
 * the internal form y = A (x + u(x)) + t, A|t the whole linear chain;
 * gr_export_fields turns it into the self-contained fields elastix/ITK read. */
typedef struct gr_stage_result {
  gr_stage_kind kind;
  double center[3];
  double params[12];         /* Translation: 3, Euler: 6, Affine: 12 (elastix order) */
  int nparams;
  gr_image *field;           /* deformable: y = x + d(x), d in mm (LPS), on field grid; owned */
  gr_image *inverse_field;   /* deformable: inverse displacement (SyN/greedy), owned */
  double final_metric;
  int iterations_run[GR_MAX_LEVELS];
} gr_stage_result;

void gr_stage_config_defaults(gr_stage_kind kind, gr_stage_config *c);

/* Register moving to fixed through `nstages` stages. `initial` (may be NULL) is
 * the -t0 transform as an affine applied after all stages. Results are written
 * to out[0..nstages-1]. Masks may be NULL; they must share their image's grid. */
gr_status gr_register(gr_backend *be, gr_comm *comm, const gr_image *fixed, const gr_image *moving,
                      const gr_image *fixed_mask, const gr_image *moving_mask,
                      const gr_affine *initial, const gr_stage_config *stages, int nstages,
                      const gr_reg_options *opt, gr_stage_result *out);
void gr_stage_result_clear(gr_stage_result *r);

/* The linear part of the chain (stages 0..upto-1 after -t0) as one affine; with
 * the last deformable stage's u the whole transform is y = A (x + u(x)) + t. */
gr_status gr_chain_affine(const gr_affine *initial, const gr_stage_result *r, int n, int upto, gr_affine *out);

/* Self-contained displacement fields of the whole transform y = A (x + u(x)) + t
 * (u, u_inv on the fixed grid; either may be NULL for a purely linear chain):
 *   fwd on the fixed grid:  x -> x + fwd(x) maps fixed to moving points
 *                            (elastix DeformationFieldTransform / ITK DisplacementFieldTransform);
 *   inv on the moving grid: y -> y + inv(y) maps moving points back to fixed points.
 * Either output pointer may be NULL. Fields are in mm, LPS. */
gr_status gr_export_fields(gr_backend *be, const gr_affine *A, const gr_image *u, const gr_image *u_inv,
                           const gr_geometry *fixed_geom, const gr_geometry *moving_geom, gr_image **fwd,
                           gr_image **inv);

#ifdef __cplusplus
}
#endif
#endif
