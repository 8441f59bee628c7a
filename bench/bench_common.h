/* Small helpers shared by the bench tools (make_bench_pair.c, bench_eval.c,
 * bench_gpu.c, bench_bspline.c). Every buffer handed to a backend op comes
 * from be->alloc and moves with upload/download, as the kernel seam requires
 * (gigareg/backend.h), so the tools work with any backend. */
#ifndef GR_BENCH_COMMON_H
#define GR_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include "gigareg/gigareg.h"

/* Report a failed gr_status with its message and leave (benchmark tools only). */
#define BENCH_TRY(expr)                                                                    \
  do {                                                                                     \
    const gr_status bench_s_ = (expr);                                                     \
    if (bench_s_ != GR_OK) {                                                               \
      const char *bench_m_ = gr_last_error();                                              \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,                 \
              bench_m_[0] ? bench_m_ : gr_strerror(bench_s_));                             \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

/* A backend copy of an image's planes (NULL image -> NULL). */
static inline float *bench_upload(gr_backend *be, const gr_image *img) {
  const size_t bytes = (size_t)gr_image_nvox(img) * (size_t)img->ncomp * sizeof(float);
  float *d = be->ops->alloc(be, bytes);
  if (!d) BENCH_TRY(gr_error(GR_ERR_NOMEM, "cannot allocate %zu bytes on the backend", bytes));
  BENCH_TRY(be->ops->upload(be, d, img->data, bytes));
  return d;
}

/* A zero-filled backend buffer of n floats. */
static inline float *bench_alloc(gr_backend *be, int64_t n) {
  float *d = be->ops->alloc(be, (size_t)n * sizeof(float));
  if (!d) BENCH_TRY(gr_error(GR_ERR_NOMEM, "cannot allocate %lld floats on the backend", (long long)n));
  BENCH_TRY(be->ops->fill(be, d, 0.0f, n));
  return d;
}

static inline void bench_download(gr_backend *be, gr_image *img, const float *d) {
  BENCH_TRY(be->ops->download(be, img->data, d, (size_t)gr_image_nvox(img) * (size_t)img->ncomp * sizeof(float)));
}

/* out(x) = in(A (x + disp(x)) + t) for x on out's grid, through the backend's resample op. */
static inline void bench_resample(gr_backend *be, gr_image *out, const gr_image *in, const gr_affine *T,
                                  const gr_image *disp, gr_interp interp, gr_boundary boundary) {
  gr_grid og, ig;
  BENCH_TRY(gr_grid_from_geometry(&out->geom, &og));
  BENCH_TRY(gr_grid_from_geometry(&in->geom, &ig));
  if (out->ncomp != in->ncomp) BENCH_TRY(gr_error(GR_ERR_MISMATCH, "resample: %d vs %d components", out->ncomp, in->ncomp));
  if (disp && (disp->ncomp != 3 || !gr_geometry_same(&disp->geom, &out->geom)))
    BENCH_TRY(gr_error(GR_ERR_MISMATCH, "resample: the displacement field must be a 3-component image on the output grid"));
  float *din = bench_upload(be, in), *ddisp = disp ? bench_upload(be, disp) : NULL;
  float *dout = bench_alloc(be, gr_image_nvox(out) * out->ncomp);
  BENCH_TRY(be->ops->resample(be, &og, dout, &ig, din, in->ncomp, T, ddisp, interp, boundary));
  bench_download(be, out, dout);
  be->ops->free(be, din);
  if (ddisp) be->ops->free(be, ddisp);
  be->ops->free(be, dout);
}

static inline gr_image *bench_read(const char *path) {
  gr_image *img = NULL;
  BENCH_TRY(gr_image_read(path, &img));
  return img;
}

static inline void bench_write(const char *path, const gr_image *img, gr_pixel_type type) {
  BENCH_TRY(gr_image_write(path, img, type));
}

/* Median of n timings (sorts v in place; insertion sort: n is a handful of repeats). */
static inline double bench_median(double *v, int n) {
  for (int i = 1; i < n; ++i)
    for (int j = i; j > 0 && v[j] < v[j - 1]; --j) {
      const double t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
