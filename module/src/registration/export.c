/* Fields in the form elastix's transformix and ITK apply: one displacement per
 * voxel holding the whole chain, so no composition (and no interpolation of one
 * transform at another's output points) happens in the reader. Exact on the
 * fixed grid for the forward map. The whole-image exporter and the slab
 * exporters of Grid Parallel (-slabs) share the per-voxel formulas below, with
 * global plane indices, so their files are byte-identical. */
#include <string.h>
#include "gigareg/grid_parallel.h"
#include "registration/reg_internal.h"

/* d = A (x + u(x)) + t - x on planes [z0, z0 + nz) of the whole fixed grid g;
 * u and d hold those planes only (3 planes of nx * ny * nz floats; u may be NULL). */
static void forward_planes(const gr_geometry *g, int64_t z0, int64_t nz, const gr_affine *A, const float *u,
                           float *d) {
  const int64_t nx = g->size[0], ny = g->size[1], n = nx * ny * nz;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t v = (k * ny + j) * nx + i;
        const double idx[3] = {(double)i, (double)j, (double)(z0 + k)};
        double x[3], p[3], y[3];
        gr_geometry_index_to_phys(g, idx, x);
        for (int a = 0; a < 3; ++a) p[a] = x[a] + (u ? u[a * n + v] : 0.0);
        gr_affine_apply(A, p, y);
        for (int a = 0; a < 3; ++a) d[a * n + v] = (float)(y[a] - x[a]);
      }
}

/* d = A^-1 y + v(y) - y on planes [z0, z0 + nz) of the whole moving grid g,
 * where d holds v (u_inv read at A^-1 (y - t)) on entry, or anything when
 * have_v is 0 (v = 0). */
static void inverse_planes(const gr_geometry *g, int64_t z0, int64_t nz, const gr_affine *Ainv, int have_v,
                           float *d) {
  const int64_t nx = g->size[0], ny = g->size[1], n = nx * ny * nz;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t v = (k * ny + j) * nx + i;
        const double idx[3] = {(double)i, (double)j, (double)(z0 + k)};
        double y[3], p[3];
        gr_geometry_index_to_phys(g, idx, y);
        gr_affine_apply(Ainv, y, p);
        for (int a = 0; a < 3; ++a) d[a * n + v] = (float)(p[a] + (have_v ? d[a * n + v] : 0.0f) - y[a]);
      }
}

gr_status gr_export_fields(gr_backend *be, const gr_affine *A, const gr_image *u, const gr_image *u_inv,
                           const gr_geometry *fixed_geom, const gr_geometry *moving_geom, gr_image **fwd,
                           gr_image **inv) {
  gr_status s = GR_OK;
  if (fwd) {
    *fwd = NULL;
    s = gr_image_create(fixed_geom, 3, fwd);
    if (s != GR_OK) return s;
    forward_planes(fixed_geom, 0, fixed_geom->size[2], A, u ? u->data : NULL, (*fwd)->data);
  }
  if (!inv) return GR_OK;
  *inv = NULL;
  gr_affine Ainv;
  s = gr_affine_invert(A, &Ainv);
  if (s == GR_OK) s = gr_image_create(moving_geom, 3, inv);
  if (s != GR_OK) return s;
  const int64_t n = gr_geometry_nvox(moving_geom);
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
  inverse_planes(moving_geom, 0, moving_geom->size[2], &Ainv, u_inv != NULL, d);
  return GR_OK;
}

gr_status gr_export_field_slab(const gr_geometry *fixed_whole, int nranks, int rank, const gr_affine *A,
                               const gr_image *u_slab, gr_image **out) {
  *out = NULL;
  int64_t z0, z1;
  gr_decomp_slab(fixed_whole->size[2], nranks, rank, &z0, &z1);
  gr_geometry sg;
  gr_geometry_slab(fixed_whole, z0, z1, &sg);
  if (u_slab && (!gr_geometry_same(&u_slab->geom, &sg) || u_slab->ncomp != 3))
    return gr_error(GR_ERR_INVALID_ARG, "field slab: the displacement is not this rank's slab of the fixed grid");
  gr_status s = gr_image_create(&sg, 3, out);
  if (s != GR_OK) return s;
  forward_planes(fixed_whole, z0, z1 - z0, A, u_slab ? u_slab->data : NULL, (*out)->data);
  return GR_OK;
}

gr_status gr_export_inverse_slab(gr_backend *be, gr_comm *c, const gr_geometry *fixed_whole,
                                 const gr_geometry *moving_whole, const gr_affine *A, const gr_image *u_inv_slab,
                                 gr_image **out) {
  *out = NULL;
  gr_affine Ainv;
  gr_status s = gr_comm_agree_msg(c, gr_affine_invert(A, &Ainv));
  if (s != GR_OK) return s;
  int64_t z0, z1;
  gr_decomp_slab(moving_whole->size[2], gr_comm_size(c), gr_comm_rank(c), &z0, &z1);
  if (u_inv_slab) { /* v = u_inv at A^-1 (y - t), onto this rank's planes of the moving grid */
    s = gr_resample_slabs(be, c, moving_whole, fixed_whole, u_inv_slab, &Ainv, NULL, GR_INTERP_LINEAR,
                          GR_BOUNDARY_CLAMP, out);
  } else {
    gr_geometry sg;
    gr_geometry_slab(moving_whole, z0, z1, &sg);
    s = gr_image_create(&sg, 3, out);
  }
  if (s != GR_OK) return s;
  inverse_planes(moving_whole, z0, z1 - z0, &Ainv, u_inv_slab != NULL, (*out)->data);
  return GR_OK;
}
