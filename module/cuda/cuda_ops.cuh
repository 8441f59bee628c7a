/* The CUDA implementations of the backend table (gigareg/backend.h), one
 * concept per file:
 *   cuda_backend.cu  - table, device selection, accounted caching allocator,
 *                      transfers, fill, axpy, the two extern "C" entry points
 *   cuda_reduce.cu   - deterministic partial-sum reduction, minmax
 *   cuda_sampler.cu  - resample
 *   cuda_metric.cu   - metric: argument checks and dispatch
 *   cuda_mse.cu, cuda_ncc.cu, cuda_lncc.cu, cuda_mi.cu - one metric each
 *                      (cuda_lncc_fast.cu: LNCC's fp32 kernel, cuda_lncc.cu dispatches;
 *                      cuda_lncc_warp.cuh / cuda_lncc_sample.cuh: its warp kernel and fp32 sample;
 *                      cuda_mi_hist.cuh: MI's shared histogram, cuda_mi_sample.cuh: its fast warp,
 *                      cuda_mi_rule.cuh: the Parzen rule)
 *   cuda_smooth.cu   - separable Gaussian (in place)
 *   cuda_smooth_to.cu - separable Gaussian, out of place, x+y+z fused
 *   cuda_field.cu    - compose, adam_compose, invert, jacobian_det (kernels/field_lerp.h: the float
 *                      field rule the CPU and the slab sampler share)
 *   cuda_optim.cu    - adam_direction, adam_moments, adam_moments_smoothed (cuda_adam.cuh: the shared
 *                      direction rule; cuda_smooth_xyz.cuh: the fused Gaussian march it runs the moments behind)
 *   cuda_bspline.cu  - bspline_field, bspline_grad (kernels/bspline_eval.h: the arithmetic the CPU shares)
 *   cuda_u16.cu      - pack_u16 (16-bit image storage, kernels/u16.h) and the dequantising copy the
 *                      metric dispatcher gives paths without 16-bit reads
 * Every op checks its arguments like the CPU reference, enqueues its kernels on
 * the backend's stream and returns; ops that return a host value (metric,
 * minmax, adam_direction's max) wait for their own result. */
#ifndef GIGAREG_CUDA_OPS_CUH
#define GIGAREG_CUDA_OPS_CUH

#include "cuda_common.cuh"

namespace grcu {

gr_status resample(gr_backend *be, const gr_grid *out_grid, float *out, const gr_grid *in_grid, const float *in,
                   int ncomp, const gr_affine *T, const float *disp, gr_interp interp, gr_boundary boundary);
gr_status metric(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fixed_grid, const float *fixed,
                 const float *fixed_mask, const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                 const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u);
gr_status smooth(gr_backend *be, const gr_grid *g, float *data, int ncomp, const double sigma_vox[3]);
gr_status smooth_to(gr_backend *be, const gr_grid *g, const float *src, float *dst, int ncomp,
                    const double sigma_vox[3]);
gr_status compose(gr_backend *be, const gr_grid *g, const float *u, const float *s, float *out);
gr_status adam_direction(gr_backend *be, const gr_grid *g, const float *grad, float *m, float *v, float *dir,
                         double b1, double b2, double eps, int t, double *max_vox);
gr_status adam_moments(gr_backend *be, const gr_grid *g, const float *grad, gr_moments mom, double b1, double b2,
                       double eps, int t, double *max_vox);
gr_status adam_moments_smoothed(gr_backend *be, const gr_grid *g, float *grad, const double sigma_vox[3], gr_moments mom,
                                double b1, double b2, double eps, int t, double *max_vox);
gr_status adam_compose(gr_backend *be, const gr_grid *g, gr_moments mom, double b1, double b2, double eps, int t,
                       float scale, const float *u, float *out);
gr_status minmax(gr_backend *be, int64_t n, const float *x, const float *mask, double *mn, double *mx);
gr_status bspline_field(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u);
gr_status bspline_grad(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u, double *dcoef);
gr_status jacobian_det(gr_backend *be, const gr_grid *g, const float *u, float *out);
gr_status invert(gr_backend *be, const gr_grid *g, const float *u, float *inv, int iterations);
gr_status pack_u16(gr_backend *be, int64_t n, const float *src, uint16_t *dst);

/* ---- metric internals (cuda_metric.cu dispatches to these) ------------------------ */
struct MetricCall {
  gr_backend *be;
  const gr_metric_spec *spec;
  WarpMap map;
  MetricImages im;    /* grad_u set only when spec->want_field_grad */
  bool want_affine;
};

gr_status metric_mse(const MetricCall &c, gr_metric_result *res);
gr_status metric_ncc(const MetricCall &c, gr_metric_result *res);
gr_status metric_lncc(const MetricCall &c, gr_metric_result *res);
/* What both LNCC kernels (cuda_lncc.cu double, cuda_lncc_fast.cu fp32) share
 * on the host (cuda_lncc.cu): the per-backend cache of the chosen tile height
 * and shared-memory size, the z-chunking of the tx x ty column grid, one
 * scratch block (W at w_bytes per voxel, validity bytes with masks, the valid
 * count, nparts doubles of partials per block) and the final reduction into
 * the result (value = -sum cc / N, affine gradient). */
bool lncc_tile_cached(Impl *imp, int key, int *ty, size_t *smem);
void lncc_tile_store(Impl *imp, int key, int ty, size_t smem);
struct LnccLaunch {
  long long gx, gy, nzc, zchunk, nb; /* column grid, z-chunks, chunk depth, blocks */
  unsigned char *mem;
  void *W;
  unsigned char *V;
  unsigned long long *count;
  double *part;
};
gr_status lncc_launch_begin(const MetricCall &c, int r, int tx, int ty, size_t w_bytes, int nparts, bool masks,
                            const char *what, LnccLaunch *L);
gr_status lncc_launch_end(const MetricCall &c, LnccLaunch *L, int nparts, bool masks, gr_status s,
                          gr_metric_result *res);
/* cuda_lncc_fast.cu: the fp32 LNCC (metric_lncc's default for radius 1..4,
 * planes of fewer than 2^31 voxels and a grad_u that overlaps no input). */
bool lncc_fast_supported(const MetricCall &c, int r);
bool lncc_fast_sample64(); /* GIGAREG_CUDA_LNCC_SAMPLE64 set */
gr_status metric_lncc_fast(const MetricCall &c, gr_metric_result *res);
gr_status metric_mi(const MetricCall &c, gr_metric_result *res);
/* Whether metric_lncc / metric_mi will read c.im.fixed16 / moving16 directly
 * (the fast paths); otherwise cuda_metric.cu hands them float copies. */
bool lncc_reads_u16(const MetricCall &c);
bool mi_reads_u16(const MetricCall &c);
/* cuda_u16.cu: dst[i] = the float that 16-bit src[i] stands for (u16_value). */
gr_status u16_unpack(gr_backend *be, long long n, const uint16_t *src, float *dst);
/* The GR_ERR_EMPTY report shared by all metrics (same text as the CPU's). */
gr_status metric_empty(const MetricCall &c);
/* grad_u *= scale (float(double(g) * scale), as the CPU's cpu_grad_u_scale). */
gr_status grad_u_scale(const MetricCall &c, double scale);

}  // namespace grcu
#endif
