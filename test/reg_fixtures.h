/* Fixtures for registration accuracy tests: real heads with synthetic, known
 * misalignments. Everything is generated here from the shipped/real images. */
#ifndef GR_REG_FIXTURES_H
#define GR_REG_FIXTURES_H
#include <math.h>
#include "gr_test.h"
#include "registration/reg_internal.h"

/* Load an image and shrink it by `shrink` (Gaussian sigma 0.5*shrink voxels), like a pyramid level. */
static inline gr_image *fx_load(gr_backend *be, const char *path, double shrink) {
  gr_image *img = NULL;
  if (!gr_test_file_exists(path)) return NULL;
  if (gr_image_read(path, &img) != GR_OK) {
    fprintf(stderr, "cannot read %s: %s\n", path, gr_last_error());
    return NULL;
  }
  if (shrink <= 1.0) return img;
  gr_geometry g;
  gr_geometry_shrink(&img->geom, shrink, &g);
  gr_image *out = NULL;
  gr_grid src, dst;
  gr_grid_from_geometry(&img->geom, &src);
  gr_grid_from_geometry(&g, &dst);
  gr_image_create(&g, 1, &out);
  const double sv[3] = {0.5 * shrink, 0.5 * shrink, 0.5 * shrink};
  be->ops->smooth(be, &src, img->data, 1, sv);
  be->ops->resample(be, &dst, out->data, &src, img->data, 1, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
  out->src_type = img->src_type;
  gr_image_destroy(img);
  return out;
}

/* moving(y) = src(T^-1 y) on src's grid, so the transform fixed->moving is T. */
static inline gr_image *fx_warp_affine(gr_backend *be, const gr_image *src, const gr_affine *T) {
  gr_affine inv;
  gr_affine_invert(T, &inv);
  gr_image *out = NULL;
  gr_image_create(&src->geom, 1, &out);
  gr_grid g;
  gr_grid_from_geometry(&src->geom, &g);
  be->ops->resample(be, &g, out->data, &g, src->data, 1, &inv, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  out->src_type = src->src_type;
  return out;
}

/* Smooth deterministic displacement w (mm) of amplitude `amp_vox` voxels:
 * sums of low-frequency sines, so its Jacobian stays well above 0. */
static inline gr_image *fx_smooth_field(const gr_geometry *geom, double amp_vox, unsigned seed) {
  gr_image *w = NULL;
  gr_image_create(geom, 3, &w);
  const int64_t nx = geom->size[0], ny = geom->size[1], nz = geom->size[2], n = nx * ny * nz;
  double ph[3][3];
  for (int c = 0; c < 3; ++c)
    for (int a = 0; a < 3; ++a) ph[c][a] = 0.7 * (double)((seed * 2654435761u + (unsigned)(c * 3 + a) * 40503u) % 1000) / 100.0;
  for (int64_t z = 0; z < nz; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const double u = (double)x / nx, v = (double)y / ny, s = (double)z / nz;
        const int64_t i = (z * ny + y) * nx + x;
        for (int c = 0; c < 3; ++c) {
          const double val = sin(2 * M_PI * u + ph[c][0]) * sin(2 * M_PI * v + ph[c][1]) * sin(2 * M_PI * s + ph[c][2]) +
                             0.5 * sin(4 * M_PI * u + ph[c][1]) * cos(2 * M_PI * s + ph[c][0]);
          w->data[c * n + i] = (float)(amp_vox * geom->spacing[c] * val / 1.5);
        }
      }
  return w;
}

/* out(x) = src(x + w(x)) (field on src's grid). */
static inline gr_image *fx_warp_field(gr_backend *be, const gr_image *src, const gr_image *w, gr_interp interp) {
  gr_image *out = NULL;
  gr_image_create(&src->geom, 1, &out);
  gr_grid g;
  gr_grid_from_geometry(&src->geom, &g);
  be->ops->resample(be, &g, out->data, &g, src->data, 1, NULL, w->data, interp, GR_BOUNDARY_ZERO);
  out->src_type = src->src_type;
  return out;
}

/* Mean over voxels with ref > thr of |a - b| in voxel units (fields on the same grid). */
static inline double fx_mean_epe_vox(const gr_image *a, const gr_image *b, const gr_image *ref, float thr, double *maxe) {
  const int64_t n = gr_image_nvox(ref);
  double s = 0.0, mx = 0.0;
  int64_t cnt = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (ref->data[i] <= thr) continue;
    double e2 = 0.0;
    for (int c = 0; c < 3; ++c) {
      const double d = (a->data[c * n + i] - b->data[c * n + i]) / ref->geom.spacing[c];
      e2 += d * d;
    }
    const double e = sqrt(e2);
    s += e;
    if (e > mx) mx = e;
    ++cnt;
  }
  if (maxe) *maxe = mx;
  return cnt ? s / cnt : INFINITY;
}

static inline double fx_mean_norm_vox(const gr_image *a, const gr_image *ref, float thr) {
  gr_image *zero = NULL;
  gr_image_create(&a->geom, 3, &zero);
  const double m = fx_mean_epe_vox(a, zero, ref, thr, NULL);
  gr_image_destroy(zero);
  return m;
}

static inline float fx_otsu_like_threshold(const gr_image *img) {
  double mx = 0.0;
  const int64_t n = gr_image_nvox(img);
  for (int64_t i = 0; i < n; ++i) if (img->data[i] > mx) mx = img->data[i];
  return (float)(0.15 * mx); /* "inside the head": above 15% of the maximum */
}
#endif
