#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/image.h"
#include "core/mat3.h"

void gr_geometry_identity(gr_geometry *g, int64_t nx, int64_t ny, int64_t nz) {
  memset(g, 0, sizeof *g);
  g->size[0] = nx; g->size[1] = ny; g->size[2] = nz;
  for (int i = 0; i < 3; ++i) { g->spacing[i] = 1.0; g->direction[i * 4] = 1.0; }
}

int64_t gr_geometry_nvox(const gr_geometry *g) { return g->size[0] * g->size[1] * g->size[2]; }

gr_status gr_geometry_validate(const gr_geometry *g, const char *what) {
  for (int i = 0; i < 3; ++i) {
    if (g->size[i] <= 0)
      return gr_error(GR_ERR_INVALID_ARG, "%s: size along axis %d is %lld (must be > 0)", what, i, (long long)g->size[i]);
    if (!(g->spacing[i] > 0.0) || !isfinite(g->spacing[i]))
      return gr_error(GR_ERR_INVALID_ARG, "%s: spacing along axis %d is %g (must be finite and > 0)", what, i, g->spacing[i]);
    if (!isfinite(g->origin[i]))
      return gr_error(GR_ERR_INVALID_ARG, "%s: origin is not finite", what);
  }
  if (fabs(gr_mat3_det(g->direction)) < 1e-6)
    return gr_error(GR_ERR_INVALID_ARG, "%s: direction matrix is singular", what);
  return GR_OK;
}

int gr_geometry_same(const gr_geometry *a, const gr_geometry *b) {
  for (int i = 0; i < 3; ++i) {
    if (a->size[i] != b->size[i]) return 0;
    const double tol = 1e-4 * a->spacing[i];
    if (fabs(a->spacing[i] - b->spacing[i]) > tol) return 0;
    if (fabs(a->origin[i] - b->origin[i]) > 1e-3 * a->spacing[i] + 1e-6) return 0;
  }
  for (int i = 0; i < 9; ++i)
    if (fabs(a->direction[i] - b->direction[i]) > 1e-4) return 0;
  return 1;
}

gr_status gr_grid_from_geometry(const gr_geometry *g, gr_grid *out) {
  double m[9], inv[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m[r * 3 + c] = g->direction[r * 3 + c] * g->spacing[c];
  if (!gr_mat3_inverse(m, inv)) return gr_error(GR_ERR_INVALID_ARG, "singular index-to-physical matrix");
  for (int i = 0; i < 3; ++i) out->n[i] = g->size[i];
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      out->i2p[r * 4 + c] = m[r * 3 + c];
      out->p2i[r * 4 + c] = inv[r * 3 + c];
    }
    out->i2p[r * 4 + 3] = g->origin[r];
  }
  for (int r = 0; r < 3; ++r) {
    double s = 0.0;
    for (int c = 0; c < 3; ++c) s += inv[r * 3 + c] * g->origin[c];
    out->p2i[r * 4 + 3] = -s;
  }
  return GR_OK;
}

void gr_geometry_index_to_phys(const gr_geometry *g, const double idx[3], double phys[3]) {
  for (int r = 0; r < 3; ++r) {
    double s = g->origin[r];
    for (int c = 0; c < 3; ++c) s += g->direction[r * 3 + c] * g->spacing[c] * idx[c];
    phys[r] = s;
  }
}

void gr_geometry_phys_to_index(const gr_geometry *g, const double phys[3], double idx[3]) {
  gr_grid grid;
  if (gr_grid_from_geometry(g, &grid) != GR_OK) { idx[0] = idx[1] = idx[2] = NAN; return; }
  for (int r = 0; r < 3; ++r)
    idx[r] = grid.p2i[r * 4] * phys[0] + grid.p2i[r * 4 + 1] * phys[1] + grid.p2i[r * 4 + 2] * phys[2] + grid.p2i[r * 4 + 3];
}

void gr_geometry_slab(const gr_geometry *g, int64_t z0, int64_t z1, gr_geometry *out) {
  *out = *g;
  out->size[2] = z1 - z0;
  const double idx[3] = {0.0, 0.0, (double)z0};
  gr_geometry_index_to_phys(g, idx, out->origin);
}

void gr_geometry_center(const gr_geometry *g, double c[3]) {
  const double idx[3] = {(g->size[0] - 1) * 0.5, (g->size[1] - 1) * 0.5, (g->size[2] - 1) * 0.5};
  gr_geometry_index_to_phys(g, idx, c);
}

gr_status gr_image_create(const gr_geometry *g, int ncomp, gr_image **out) {
  *out = NULL;
  if (ncomp != 1 && ncomp != 3) return gr_error(GR_ERR_UNSUPPORTED, "images have 1 or 3 components, not %d", ncomp);
  gr_status s = gr_geometry_validate(g, "image");
  if (s != GR_OK) return s;
  gr_image *img = calloc(1, sizeof *img);
  if (!img) return gr_error(GR_ERR_NOMEM, "image header allocation failed");
  img->geom = *g;
  img->ncomp = ncomp;
  img->src_type = GR_PIXEL_F32;
  const size_t n = (size_t)gr_geometry_nvox(g) * (size_t)ncomp;
  img->data = calloc(n, sizeof(float));
  if (!img->data) {
    free(img);
    return gr_error(GR_ERR_NOMEM, "cannot allocate %zu bytes for a %lldx%lldx%lld image", n * sizeof(float),
                    (long long)g->size[0], (long long)g->size[1], (long long)g->size[2]);
  }
  *out = img;
  return GR_OK;
}

void gr_image_destroy(gr_image *img) {
  if (!img) return;
  free(img->data);
  free(img);
}

gr_status gr_image_clone(const gr_image *src, gr_image **out) {
  gr_status s = gr_image_create(&src->geom, src->ncomp, out);
  if (s != GR_OK) return s;
  (*out)->src_type = src->src_type;
  memcpy((*out)->data, src->data, (size_t)gr_image_nvox(src) * (size_t)src->ncomp * sizeof(float));
  return GR_OK;
}

int64_t gr_image_nvox(const gr_image *img) { return gr_geometry_nvox(&img->geom); }

gr_status gr_image_check_finite(const gr_image *img, const char *what) {
  const int64_t n = gr_image_nvox(img) * img->ncomp;
  for (int64_t i = 0; i < n; ++i)
    if (!isfinite(img->data[i]))
      return gr_error(GR_ERR_NONFINITE, "%s: voxel %lld is %s (NaN/Inf values are not allowed)", what,
                      (long long)(i % gr_image_nvox(img)), isnan(img->data[i]) ? "NaN" : "Inf");
  return GR_OK;
}
