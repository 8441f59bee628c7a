/* Fields in the form elastix's transformix and ITK apply: one displacement per
 * voxel holding the whole chain, so no composition (and no interpolation of one
 * transform at another's output points) happens in the reader. Exact on the
 * fixed grid for the forward map. */
#include <string.h>
#include "registration/reg_internal.h"

gr_status gr_export_fields(gr_backend *be, const gr_affine *A, const gr_image *u, const gr_image *u_inv,
                           const gr_geometry *fixed_geom, const gr_geometry *moving_geom, gr_image **fwd,
                           gr_image **inv) {
  gr_status s = GR_OK;
  if (fwd) {
    *fwd = NULL;
    s = gr_image_create(fixed_geom, 3, fwd);
    if (s != GR_OK) return s;
    const gr_geometry *g = fixed_geom;
    const int64_t nx = g->size[0], ny = g->size[1], nz = g->size[2], n = nx * ny * nz;
    float *d = (*fwd)->data;
    for (int64_t k = 0; k < nz; ++k)
      for (int64_t j = 0; j < ny; ++j)
        for (int64_t i = 0; i < nx; ++i) {
          const int64_t v = (k * ny + j) * nx + i;
          const double idx[3] = {(double)i, (double)j, (double)k};
          double x[3], p[3], y[3];
          gr_geometry_index_to_phys(g, idx, x);
          for (int a = 0; a < 3; ++a) p[a] = x[a] + (u ? u->data[a * n + v] : 0.0);
          gr_affine_apply(A, p, y);
          for (int a = 0; a < 3; ++a) d[a * n + v] = (float)(y[a] - x[a]);
        }
  }
  if (!inv) return GR_OK;
  *inv = NULL;
  gr_affine Ainv;
  s = gr_affine_invert(A, &Ainv);
  if (s == GR_OK) s = gr_image_create(moving_geom, 3, inv);
  if (s != GR_OK) return s;
  const gr_geometry *g = moving_geom;
  const int64_t nx = g->size[0], ny = g->size[1], nz = g->size[2], n = nx * ny * nz;
  float *d = (*inv)->data;
  if (u_inv) {
    /* v = u_inv read at p = A^-1 (y - t), onto the moving grid. */
    gr_grid fg, mg;
    const int64_t nf = gr_geometry_nvox(fixed_geom);
    gr_grid_from_geometry(fixed_geom, &fg);
    gr_grid_from_geometry(moving_geom, &mg);
    float *src = be->ops->alloc(be, (size_t)nf * 12), *dst = be->ops->alloc(be, (size_t)n * 12);
    s = (src && dst) ? be->ops->upload(be, src, u_inv->data, (size_t)nf * 12) : GR_ERR_NOMEM;
    if (s == GR_OK) s = be->ops->resample(be, &mg, dst, &fg, src, 3, &Ainv, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
    if (s == GR_OK) s = be->ops->download(be, d, dst, (size_t)n * 12);
    if (src) be->ops->free(be, src);
    if (dst) be->ops->free(be, dst);
    if (s != GR_OK) {
      gr_image_destroy(*inv);
      *inv = NULL;
      return s;
    }
  }
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t v = (k * ny + j) * nx + i;
        const double idx[3] = {(double)i, (double)j, (double)k};
        double y[3], p[3];
        gr_geometry_index_to_phys(g, idx, y);
        gr_affine_apply(&Ainv, y, p);
        for (int a = 0; a < 3; ++a) d[a * n + v] = (float)(p[a] + (u_inv ? d[a * n + v] : 0.0f) - y[a]);
      }
  return GR_OK;
}
