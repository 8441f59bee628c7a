/* CPU (C + OpenMP) implementations of the backend table in gigareg/backend.h.
 * One concept per file:
 *   cpu_backend.c  - table, accounted allocator, copy/fill/axpy/minmax, gr_backend_create dispatch
 *   cpu_sampler.c  - cpu_resample (composite implicit grid sampler: affine + displacement, trilinear)
 *   cpu_metric.c   - cpu_metric dispatch + shared per-voxel warp helpers
 *   cpu_mse.c, cpu_ncc.c, cpu_lncc.c, cpu_mi.c - one metric each (value + gradient, fused)
 *   cpu_smooth.c   - separable Gaussian
 *   cpu_field.c    - compose, adam_compose, invert, jacobian_det
 *   cpu_optim.c    - adam_direction, adam_moments (and the direction rule adam_compose shares)
 *   cpu_bspline.c  - bspline_field, bspline_grad (bspline_eval.h: the arithmetic CUDA shares)
 *   cpu_slab.c     - sample_slab, slab_finalize (Grid Parallel: the ring sampler's step)
 * Semantics documented in backend.h are normative: the CUDA backend must match them. */
#ifndef GIGAREG_CPU_KERNELS_H
#define GIGAREG_CPU_KERNELS_H
#include <math.h>
#include "gigareg/backend.h"
#include "kernels/adam_rule.h"

gr_status cpu_resample(gr_backend *be, const gr_grid *out_grid, float *out, const gr_grid *in_grid,
                       const float *in, int ncomp, const gr_affine *T, const float *disp,
                       gr_interp interp, gr_boundary boundary);
gr_status cpu_metric(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid,
                     const float *fixed, const float *fixed_mask, const gr_grid *moving_grid,
                     const float *moving, const float *moving_mask, const gr_affine *T,
                     const float *disp, gr_metric_result *res, float *grad_u);
gr_status cpu_metric_region(gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg,
                            const gr_grid *fixed_grid, const float *fixed, const float *fixed_mask,
                            const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                            const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u);
gr_status cpu_sample_slab(gr_backend *be, gr_slab_sample *a);
gr_status cpu_slab_finalize(gr_backend *be, int64_t n, const double *acc, const float *base, double scale,
                            float *out);
gr_status cpu_smooth(gr_backend *be, const gr_grid *g, float *data, int ncomp, const double sigma_vox[3]);
gr_status cpu_compose(gr_backend *be, const gr_grid *g, const float *u, const float *s, float *out);
gr_status cpu_adam_direction(gr_backend *be, const gr_grid *g, const float *grad, float *m, float *v,
                             float *dir, double b1, double b2, double eps, int t, double *max_vox);
gr_status cpu_adam_moments(gr_backend *be, const gr_grid *g, const float *grad, gr_moments mom, double b1,
                           double b2, double eps, int t, double *max_vox);
gr_status cpu_adam_compose(gr_backend *be, const gr_grid *g, gr_moments mom, double b1, double b2, double eps,
                           int t, float scale, const float *u, float *out);
gr_status cpu_jacobian_det(gr_backend *be, const gr_grid *g, const float *u, float *out);
gr_status cpu_bspline_field(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u);
gr_status cpu_bspline_grad(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u, double *dcoef);
gr_status cpu_invert(gr_backend *be, const gr_grid *g, const float *u, float *inv, int iterations);

/* Adam's per-element rule in float (backend.h): the moment updates and the
 * bias-corrected direction from the stored moments, one rule shared by
 * adam_direction, adam_moments and adam_compose so that the fused update
 * reproduces the unfused one bit for bit, and the CUDA twin
 * (cuda_adam.cuh AdamRule) reproduces it too: float *, +, / and sqrtf are
 * correctly rounded and the build does not contract them into fused
 * multiply-adds (-ffp-contract=off, CMakeLists.txt). Constants: kernels/adam_rule.h.
 * m <- b1 m + (1 - b1) g;  v <- b2 v + ((1 - b2) g) g  (before storage rounding) */
static inline float cpu_adam_m(const gr_adam_rule *r, float m, float g) { return r->b1 * m + r->omb1 * g; }
static inline float cpu_adam_v(const gr_adam_rule *r, float v, float g) { return r->b2 * v + r->omb2 * g * g; }
static inline float cpu_adam_dir(const gr_adam_rule *r, float m, float v) {
  return (m * r->c1) / (sqrtf(v * r->c2) + r->eps);
}

#endif
