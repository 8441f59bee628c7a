/* The kernel seam: one table of fused operations, implemented by every backend
 * (CPU/OpenMP now, CUDA in module/cuda). All float pointers passed to ops live
 * in the backend's memory (host for CPU, device for CUDA) and come from
 * be->alloc; grids, transforms and specs are small host structs passed by value
 * or pointer. The registration driver only ever talks to this table, so a new
 * backend drops in without touching it.
 *
 * Composite transform (elastix's chaining: the displacement acts first, then
 * the affine): y = A (x + u(x)) + t, x a fixed-grid physical point, u in mm on
 * the fixed grid, y a moving-image physical point.
 *
 * Sign and units: every metric returns a LOSS to minimise (MSE, -NCC, -LNCC,
 * -MI). Its field gradient is d loss / d u(x) = A^T d loss / d y (mm^-1), and
 * its affine gradient is d loss / d [A | t] = sum_x (d loss / d y) [x + u(x), 1]^T. */
#ifndef GIGAREG_BACKEND_H
#define GIGAREG_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "gigareg/image.h"
#include "gigareg/transform.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gr_interp { GR_INTERP_LINEAR = 0, GR_INTERP_NEAREST = 1 } gr_interp;
/* ZERO: samples outside the input grid read 0 (images).
 * CLAMP: coordinates clamped to the grid (fields: extend the border value). */
typedef enum gr_boundary { GR_BOUNDARY_ZERO = 0, GR_BOUNDARY_CLAMP = 1 } gr_boundary;

typedef enum gr_metric_kind {
  GR_METRIC_MSE = 0, GR_METRIC_NCC, GR_METRIC_LNCC, GR_METRIC_MI
} gr_metric_kind;

typedef struct gr_metric_spec {
  gr_metric_kind kind;
  int lncc_radius;        /* window is (2r+1)^3 voxels; default 2 */
  int mi_bins;            /* default 32 */
  double fixed_min, fixed_max;   /* MI intensity ranges (caller reduces them once) */
  double moving_min, moving_max;
  int want_affine_grad;   /* fill result.grad_affine */
  int want_field_grad;    /* write grad_u */
  /* 16-bit images (backends with pack_u16 only; NULL: float images): when
   * set, the metric reads this image instead of the float one (`fixed` /
   * `moving` may then be NULL), value q * (1 / 65535) in float
   * (kernels/u16.h), exactly what the float image rounded by gr_u16_round
   * holds: the metric's result is bitwise the float call's on that image. */
  const uint16_t *fixed_u16, *moving_u16;
} gr_metric_spec;

typedef struct gr_metric_result {
  double value;           /* loss */
  int64_t n_valid;        /* voxels that contributed */
  double grad_affine[12]; /* d loss / d [A | t], row-major like gr_affine.m */
} gr_metric_result;

/* ---- Grid Parallel: kernels on windows of global grids ----------------------------
 * A rank holds z-slabs of the global grids. Kernels never learn about ranks;
 * they take a window (a range of planes of a global grid) and evaluate exactly
 * what the whole-grid kernel evaluates there: coordinates use global plane
 * indices and boundary rules apply at the global grid's borders, so sharded
 * results reproduce the single-process ones bit for bit where the reduction
 * order allows (docs/grid-parallel.md). */

/* One step of the ring sampler: evaluate a z-slab of an input image at the
 * points of a window of an output grid, adding the contribution of the
 * interpolation corners that lie in the slab.
 * Points: every voxel (i, j, k) of planes [out_z0, out_z0 + out_nz) of out_grid
 * (k global; npts = nx * ny * out_nz, arrays on the points are indexed
 * (k - out_z0) * nx * ny + j * nx + i):
 *   same_grid == 0: c = in.p2i * (A (out.i2p (i,j,k) + disp) + t), computed as
 *                   the resample/metric kernels do (composite matrix, global k);
 *   same_grid == 1: c = (i, j, k) + in.p2i_linear * disp (the compose/invert rule;
 *                   in_grid must be out_grid; linear interpolation in float, the
 *                   field rule of compose). disp (3 planes on the points) may be NULL.
 * Input: planes [in_z0, in_z0 + in_nz) of in_grid; component q at in + q * in_comp_stride.
 * Interpolation/boundary: the rules of the whole-grid sampler (linear or
 * nearest; ZERO or CLAMP at in_grid's borders; the 1e-6 border snap). For each
 * point, the corners whose plane lies in the slab contribute:
 *   acc[q * npts + v]       += their part of the value of component q
 *   acc_grad[a * npts + v]  += their part of d value / d c_a   (linear, ncomp == 1; may be NULL)
 * Points with no corner in the slab are not touched. Summed over slabs that
 * partition the input planes, acc is the whole-grid value (exactly: a point
 * has corners on at most two planes).
 * Bounds mode (acc == NULL and out == NULL): need_z0/need_z1 receive the range of input planes
 * that carry a non-zero weight for some point (need_z0 >= need_z1: none). */
typedef struct gr_slab_sample {
  const gr_grid *out_grid;
  int64_t out_z0, out_nz;
  const gr_affine *T;   /* NULL = identity */
  const float *disp;    /* NULL = none */
  int same_grid;
  const gr_grid *in_grid;
  int64_t in_z0, in_nz;
  const float *in;
  int ncomp;
  int64_t in_comp_stride;
  gr_interp interp;
  gr_boundary boundary;
  double *acc;
  double *acc_grad;
  int64_t need_z0, need_z1; /* bounds mode output */
  /* Direct mode (acc == NULL, out != NULL): the slab is the only one (a field
   * composed with its own stored planes, whose halo covers every corner the
   * owned points read): out[q * npts + v] = (float)(out_base + out_scale *
   * (float)value) for every point, value = this slab's contribution (0 if none).
   * The same rounding as slab_finalize, without the double accumulator. */
  float *out;
  const float *out_base; /* may be NULL */
  double out_scale;
  /* Fused Adam step (direct mode, same-grid rule, 3 components): when set,
   * disp and out_base are not read; both are the step
   *   s = (float)(scale * dir(m, v)) + 0   (adam_compose's rule, m and v on the points),
   * so out = s + out_scale * u(x + s) without a stored step field. */
  const struct gr_slab_adam *adam;
} gr_slab_sample;

/* Adam's moments m and v, 3 planes each, stored as float (12 B/voxel each) or,
 * with bf16 set, as bfloat16 (uint16_t, 6 B/voxel each: the stage option
 * GigaRegAdamMoments "bfloat16"). The moment update is formed in double and
 * rounded to float as before, then (bf16) to bfloat16, round to nearest even
 * (module/src/kernels/bf16.h, shared by every backend); the direction is
 * always formed from the stored values, so backends agree bit for bit. */
typedef struct gr_moments {
  void *m, *v;
  int bf16;
} gr_moments;

/* Bytes of one moment (m or v) for n voxels of 3 components, rounded up to
 * whole floats (the backends' fill and alloc work in floats). */
static inline size_t gr_moment_bytes(int64_t nvox, int bf16) {
  const size_t n3 = (size_t)nvox * 3;
  return bf16 ? (n3 + 1) / 2 * sizeof(float) : n3 * sizeof(float);
}

/* A cubic B-spline displacement on a control-point grid (elastix's
 * AdvancedBSplineDeformableTransform, optionally composed after a linear
 * initial transform), in voxel-index form on the grid it is evaluated on:
 *   c(x) = cA [i j k 1]^T  continuous control-grid index of voxel (i, j, k),
 *                          relative to the grid region's first index;
 *   valid where 1 <= c_a < size_a - 2 on every axis (elastix's valid region);
 *   u(x) = zA [i j k 1]^T + (valid ? sum over the 4^3 support of w(c) coef : 0),
 *          zA the initial transform's displacement T0(p) - p (zero rows: none);
 * w the cubic B-spline weights of |c - q|, support start floor(c - 1). coef is
 * 3 planes of size[0]*size[1]*size[2] doubles (x, y, z displacements, elastix's
 * parameter order) in backend memory. */

typedef struct gr_bspline {
  double cA[12], zA[12]; /* row-major 3 x 4 */
  double iA[12];         /* voxel index = iA [c 1]: filled by gr_bspline_prepare */
  int64_t size[3];
  int64_t z0;            /* bspline_field only: output plane k is plane k + z0 of the grid cA and zA
                          * describe (a z-window of it, bitwise that grid's planes); 0 otherwise */
  const double *coef;
} gr_bspline;

/* Checks cA (invertible) and size (>= 4 control points per axis) and fills iA. */
gr_status gr_bspline_prepare(gr_bspline *bs);

typedef struct gr_slab_adam {
  gr_moments mom;
  double beta1, beta2, eps;
  int t;
  float scale;
} gr_slab_adam;

/* A metric evaluated on a window of the fixed grid (one rank's stored planes).
 * Two phases, so that global quantities are known before gradients are formed:
 *   COUNT: res->n_valid = valid voxels on the owned planes; MI also writes the
 *          owned planes' joint histogram (bins^2 int64, fixed point) to hist.
 *   EVAL:  with n_global (and for MI the all-reduced histogram in hist), the
 *          loss parts and affine-gradient parts of every owned plane go to
 *          partials, and grad_u (when wanted) is written on the stored planes,
 *          exact on the owned planes given halos wide enough for the metric
 *          (LNCC: 2 r planes; the others: none); other planes get values that
 *          the caller must overwrite (halo exchange).
 * Fixed image, masks, disp, grad_u and the presampled arrays hold the nz stored
 * planes. With pre_w set, the moving image is not read: W, dW/dc (3 planes,
 * moving index space) and the moving mask at the nearest voxel (NULL: no mask)
 * come from the ring sampler; moving / moving_mask may then be NULL. */
typedef enum gr_metric_phase { GR_METRIC_PHASE_COUNT = 0, GR_METRIC_PHASE_EVAL = 1 } gr_metric_phase;
#define GR_METRIC_PARTIALS 13 /* per owned plane: [loss part, 12 affine-gradient parts] */
typedef struct gr_metric_region {
  int64_t z0, nz;           /* stored planes [z0, z0 + nz) of the (global) fixed grid */
  int64_t own0, own1;       /* planes whose voxels count, global indices within the stored range */
  gr_metric_phase phase;
  int64_t n_global;         /* EVAL: N over all ranks (divides loss and gradients) */
  int64_t *hist;            /* MI: COUNT output (this window), EVAL input (global) */
  double *partials;         /* EVAL: GR_METRIC_PARTIALS doubles per owned plane, in plane order */
  double value_scale;       /* EVAL output: loss = value_scale * sum of partial[0] over all planes in order */
  double affine_scale;      /*   grad_affine = affine_scale * the sums of partial[1..12] (MI: value_scale = 0
                             *   and res->value is the global loss) */
  const double *pre_w, *pre_g, *pre_mmask;
} gr_metric_region;

typedef struct gr_backend gr_backend;

typedef struct gr_backend_ops {
  const char *name;
  /* memory (accounted per backend: current and peak bytes) */
  void *(*alloc)(gr_backend *be, size_t bytes);
  void (*free)(gr_backend *be, void *p);
  gr_status (*upload)(gr_backend *be, void *dst, const void *src_host, size_t bytes);
  gr_status (*download)(gr_backend *be, void *dst_host, const void *src, size_t bytes);
  gr_status (*copy)(gr_backend *be, void *dst, const void *src, size_t bytes);
  gr_status (*fill)(gr_backend *be, float *x, float value, int64_t n);

  /* out(x) = in( A (x + disp(x)) + t ) for x on out_grid; ncomp planes. disp and T may be NULL. */
  gr_status (*resample)(gr_backend *be, const gr_grid *out_grid, float *out,
                        const gr_grid *in_grid, const float *in, int ncomp,
                        const gr_affine *T, const float *disp,
                        gr_interp interp, gr_boundary boundary);

  /* Fused warp + metric: value, and optionally d loss/d u (3 planes on the fixed
   * grid) and d loss / d[A|t], in one call without storing the warped image
   * beyond what the metric's window needs. Masks are 0/1 floats or NULL; the
   * moving mask is read at the warped point (nearest). */
  gr_status (*metric)(gr_backend *be, const gr_metric_spec *spec,
                      const gr_grid *fixed_grid, const float *fixed, const float *fixed_mask,
                      const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                      const gr_affine *T, const float *disp,
                      gr_metric_result *res, float *grad_u);

  /* In-place separable Gaussian, sigma in voxels per axis (0 = skip axis),
   * truncated at 3 sigma, kernel renormalised at the borders. */
  gr_status (*smooth)(gr_backend *be, const gr_grid *g, float *data, int ncomp,
                      const double sigma_vox[3]);

  /* out(x) = s(x) + u(x + s(x)): compositive update (u read with CLAMP). out != u.
   * The field rule (compose, adam_compose, invert, sample_slab's same-grid rule;
   * kernels/field_lerp.h): the voxel offset p2i_lin s, the CLAMP cell at
   * idx + offset and the trilinear interpolation of u in float, s + value in float. */
  gr_status (*compose)(gr_backend *be, const gr_grid *g, const float *u, const float *s, float *out);

  /* Adam moments update and normalised direction:
   * m = b1 m + (1-b1) g; v = b2 v + ((1-b2) g) g (stored as float); dir = mhat / (sqrt(vhat) + eps)
   * from the stored (rounded) moments, so a fused pass can recompute dir from m, v alone. Every
   * operation in float, correctly rounded, none fused (kernels/adam_rule.h: the constants,
   * formed in double and rounded once; eps must lie in [FLT_MIN, FLT_MAX]).
   * t is the 1-based step count. Returns max over voxels of |dir| in voxel units
   * (|p2i_linear * dir(x)|) through *max_vox (for the global step normalisation). */
  gr_status (*adam_direction)(gr_backend *be, const gr_grid *g, const float *grad,
                              float *m, float *v, float *dir, double b1, double b2,
                              double eps, int t, double *max_vox);

  /* y = a * x + y over n floats. */
  gr_status (*axpy)(gr_backend *be, int64_t n, float a, const float *x, float *y);
  /* min/max over n floats, optionally only where mask > 0.5 (mask may be NULL). */
  gr_status (*minmax)(gr_backend *be, int64_t n, const float *x, const float *mask,
                      double *mn, double *mx);
  /* Jacobian determinant of x -> x + u(x) (central differences, physical space). */
  gr_status (*jacobian_det)(gr_backend *be, const gr_grid *g, const float *u, float *out);
  /* inv such that x + u(x) + ... : v(x) = -u(x + v(x)), fixed-point iterations. */
  gr_status (*invert)(gr_backend *be, const gr_grid *g, const float *u, float *inv,
                      int iterations);

  void (*destroy)(gr_backend *be);

  /* ---- Grid Parallel entries (appended so positional tables stay valid; a
   * backend that leaves them NULL runs single-shard only, and the sharded
   * driver says so with GR_ERR_UNSUPPORTED) ------------------------------------- */
  gr_status (*sample_slab)(gr_backend *be, gr_slab_sample *a);
  /* out[i] = (float)(base[i] + scale * (float)acc[i]), or (float)(scale * (float)acc[i])
   * when base is NULL: rounds the ring-sampler sum to float as the whole-grid
   * kernels round their interpolated value, then combines it as they do
   * (compose: base = s, scale 1; invert: scale -1; resample: scale 1). */
  gr_status (*slab_finalize)(gr_backend *be, int64_t n, const double *acc, const float *base, double scale,
                             float *out);
  gr_status (*metric_region)(gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg,
                             const gr_grid *fixed_grid, const float *fixed, const float *fixed_mask,
                             const gr_grid *moving_grid, const float *moving, const float *moving_mask,
                             const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u);

  /* ---- Fused field update (appended; a backend that leaves them NULL gets the
   * unfused sequence adam_direction -> axpy -> compose, which needs a direction
   * and a scratch field: 24 more bytes per voxel) ------------------------------
   * adam_moments: adam_direction without writing the direction (m, v updated,
   * *max_vox as adam_direction reports it).
   * adam_compose: out(x) = s(x) + u(x + s(x)) with s = scale * dir, dir
   * recomputed from the updated m, v exactly as adam_direction writes it (a
   * float) and the product rounded to float as axpy rounds it, so the result is
   * bitwise the unfused sequence's. out must not alias u, m or v (it may be the
   * gradient's storage, which is dead by then). */
  gr_status (*adam_moments)(gr_backend *be, const gr_grid *g, const float *grad, gr_moments mom, double b1,
                            double b2, double eps, int t, double *max_vox);
  gr_status (*adam_compose)(gr_backend *be, const gr_grid *g, gr_moments mom, double b1, double b2,
                            double eps, int t, float scale, const float *u, float *out);

  /* ---- B-spline transforms (appended; NULL: the caller evaluates them itself) ----
   * bspline_field: u (3 planes on g) from the B-spline (gr_bspline above).
   * bspline_grad: the chain rule to the coefficients, dcoef[q] = sum_x w_q(x)
   * grad_u(x) per component (3 planes of doubles like coef), for every control
   * point, in an order fixed by the grids alone (deterministic, independent of
   * thread counts). The field is bitwise the same on every backend; the
   * gradient's sums are ordered per backend (CPU: per B-spline cell; CUDA: per
   * cell too, lanes reduced by a fixed shuffle butterfly into cell partials,
   * then a fixed-order sum per control point), so backends agree to rounding
   * (~1e-15 relative). */
  gr_status (*bspline_field)(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u);
  gr_status (*bspline_grad)(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u,
                            double *dcoef);

  /* ---- out-of-place smoothing (appended; NULL: copy, then smooth in place) ----
   * dst = smooth(src) for ncomp planes on g: the values smooth() leaves in
   * place on this backend, bitwise, without a scratch plane and, where the
   * backend can fuse the axes, in one pass instead of two. src and dst must not
   * overlap. */
  gr_status (*smooth_to)(gr_backend *be, const gr_grid *g, const float *src, float *dst, int ncomp,
                         const double sigma_vox[3]);

  /* ---- Adam moments of the smoothed gradient (appended; NULL: smooth, then adam_moments) ----
   * adam_moments(smooth(grad, sigma_vox)), bitwise, where the backend can do it
   * without storing the smoothed gradient (one read of grad instead of the
   * smoothing's two passes and the moments pass's read). grad's contents are
   * undefined afterwards (a backend may smooth it in place). */
  gr_status (*adam_moments_smoothed)(gr_backend *be, const gr_grid *g, float *grad, const double sigma_vox[3],
                                     gr_moments mom, double b1, double b2, double eps, int t, double *max_vox);

  /* ---- 16-bit images (appended; NULL: the backend keeps images in float and
   * the driver rounds them to the same values instead) ----
   * dst[i] = gr_u16_quantize(src[i]) (kernels/u16.h) for n voxels; the metric
   * then reads dst through gr_metric_spec.fixed_u16 / moving_u16. */
  gr_status (*pack_u16)(gr_backend *be, int64_t n, const float *src, uint16_t *dst);
} gr_backend_ops;

struct gr_backend {
  const gr_backend_ops *ops;
  void *impl;              /* backend-private state */
  size_t bytes_current;    /* accounting, updated by alloc/free */
  size_t bytes_peak;
  int threads;             /* CPU threads (0 = OpenMP default) */
};

typedef enum gr_device_kind { GR_DEVICE_AUTO = 0, GR_DEVICE_CPU, GR_DEVICE_CUDA } gr_device_kind;

/* Create a backend. AUTO picks CUDA when compiled in and a GPU is present. */
gr_status gr_backend_create(gr_device_kind kind, int device_index, int threads, gr_backend **out);
void gr_backend_destroy(gr_backend *be);
/* Number of CUDA devices this process sees (0 without a GPU or in a build without CUDA). */
int gr_cuda_devices(void);
/* Parse "cpu", "cuda", "cuda:N", "auto". */
gr_status gr_device_parse(const char *s, gr_device_kind *kind, int *index);

/* CPU backend constructor (module/src/kernels/cpu_backend.c). */
gr_status gr_backend_cpu_create(int threads, gr_backend **out);

#ifdef __cplusplus
}
#endif
#endif
