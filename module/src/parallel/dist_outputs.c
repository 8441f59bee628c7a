/* Outputs of a sharded registration from slabs, with nothing whole on any
 * rank: the self-contained forward field, the inverse field on the moving
 * grid and any image resampled through the chain, each as this rank's planes
 * (gr_decomp_slab of the output grid), ready for gr_write_image_slabs. Values
 * are bitwise those of the whole-image code (export.c, the backend's
 * resample): the same per-voxel arithmetic with global plane indices, and the
 * ring sampler's exact sums in place of the whole-grid sampler. */
#include <string.h>
#include "gigareg/grid_parallel.h"
#include "parallel/gp.h"

/* Physical point of voxel (i, j, k) of the whole grid, k global. */
static void phys_of(const gr_geometry *g, int64_t i, int64_t j, int64_t k, double x[3]) {
  const double idx[3] = {(double)i, (double)j, (double)k};
  gr_geometry_index_to_phys(g, idx, x);
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
  const int64_t nx = sg.size[0], ny = sg.size[1], nz = sg.size[2], n = nx * ny * nz;
  float *d = (*out)->data;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t v = (k * ny + j) * nx + i;
        double x[3], p[3], y[3];
        phys_of(fixed_whole, i, j, z0 + k, x);
        for (int a = 0; a < 3; ++a) p[a] = x[a] + (u_slab ? u_slab->data[a * n + v] : 0.0);
        gr_affine_apply(A, p, y);
        for (int a = 0; a < 3; ++a) d[a * n + v] = (float)(y[a] - x[a]);
      }
  return GR_OK;
}

gr_status gr_resample_slabs(gr_backend *be, gr_comm *c, const gr_geometry *out_whole, const gr_geometry *in_whole,
                            const gr_image *in_slab, const gr_affine *T, const gr_image *disp_slab, gr_interp interp,
                            gr_boundary boundary, gr_image **out_slab) {
  *out_slab = NULL;
  const int P = gr_comm_size(c), r = gr_comm_rank(c);
  int64_t oz0, oz1, iz0, iz1;
  gr_decomp_slab(out_whole->size[2], P, r, &oz0, &oz1);
  gr_decomp_slab(in_whole->size[2], P, r, &iz0, &iz1);
  gr_geometry og, ig;
  gr_geometry_slab(out_whole, oz0, oz1, &og);
  gr_geometry_slab(in_whole, iz0, iz1, &ig);
  if (!gr_geometry_same(&in_slab->geom, &ig))
    return gr_error(GR_ERR_INVALID_ARG, "slab resample: the input is not this rank's slab of its grid");
  if (disp_slab && (!gr_geometry_same(&disp_slab->geom, &og) || disp_slab->ncomp != 3))
    return gr_error(GR_ERR_INVALID_ARG, "slab resample: the displacement is not this rank's slab of the output grid");
  gr_grid out_grid, in_grid;
  gr_status s = gr_grid_from_geometry(out_whole, &out_grid);
  if (s == GR_OK) s = gr_grid_from_geometry(in_whole, &in_grid);
  if (s != GR_OK) return s;
  const int ncomp = in_slab->ncomp;
  const int64_t npts = gr_geometry_nvox(&og), nin = gr_geometry_nvox(&ig);
  const size_t pts_alloc = (size_t)(npts > 0 ? npts : 1) * (size_t)ncomp;
  float *din = be->ops->alloc(be, (size_t)(nin > 0 ? nin : 1) * (size_t)ncomp * sizeof(float));
  float *ddisp = disp_slab ? be->ops->alloc(be, (size_t)(npts > 0 ? npts : 1) * 3 * sizeof(float)) : NULL;
  float *dout = be->ops->alloc(be, pts_alloc * sizeof(float));
  double *acc = be->ops->alloc(be, pts_alloc * sizeof(double));
  s = (din && dout && acc && (ddisp || !disp_slab)) ? GR_OK : GR_ERR_NOMEM;
  if (s == GR_OK && nin > 0) s = be->ops->upload(be, din, in_slab->data, (size_t)nin * (size_t)ncomp * sizeof(float));
  if (s == GR_OK && ddisp && npts > 0) s = be->ops->upload(be, ddisp, disp_slab->data, (size_t)npts * 12);
  if (s == GR_OK) {
    gr_slab_sample pts;
    memset(&pts, 0, sizeof pts);
    pts.out_grid = &out_grid;
    pts.out_z0 = oz0;
    pts.out_nz = oz1 - oz0;
    pts.T = T;
    pts.disp = ddisp;
    pts.interp = interp;
    pts.boundary = boundary;
    pts.acc = acc;
    const gr_ring_image img = {&in_grid, din, ncomp, nin};
    s = gr_ring_sample(be, c, &img, &pts, NULL);
  }
  if (s == GR_OK) s = be->ops->slab_finalize(be, npts * ncomp, acc, NULL, 1.0, dout);
  if (s == GR_OK) s = gr_image_create(&og, ncomp, out_slab);
  if (s == GR_OK && npts > 0)
    s = be->ops->download(be, (*out_slab)->data, dout, (size_t)npts * (size_t)ncomp * sizeof(float));
  if (s != GR_OK) {
    gr_image_destroy(*out_slab);
    *out_slab = NULL;
  }
  if (din) be->ops->free(be, din);
  if (ddisp) be->ops->free(be, ddisp);
  if (dout) be->ops->free(be, dout);
  if (acc) be->ops->free(be, acc);
  return gr_comm_agree_msg(c, s);
}

gr_status gr_export_inverse_slab(gr_backend *be, gr_comm *c, const gr_geometry *fixed_whole,
                                 const gr_geometry *moving_whole, const gr_affine *A, const gr_image *u_inv_slab,
                                 gr_image **out) {
  *out = NULL;
  gr_affine Ainv;
  gr_status s = gr_affine_invert(A, &Ainv);
  s = gr_comm_agree_msg(c, s);
  if (s != GR_OK) return s;
  gr_image *v = NULL;
  if (u_inv_slab) { /* v = u_inv at A^-1 (y - t), onto the moving grid (export.c) */
    s = gr_resample_slabs(be, c, moving_whole, fixed_whole, u_inv_slab, &Ainv, NULL, GR_INTERP_LINEAR,
                          GR_BOUNDARY_CLAMP, &v);
    if (s != GR_OK) return s;
  }
  int64_t z0, z1;
  gr_decomp_slab(moving_whole->size[2], gr_comm_size(c), gr_comm_rank(c), &z0, &z1);
  gr_geometry sg;
  gr_geometry_slab(moving_whole, z0, z1, &sg);
  s = gr_image_create(&sg, 3, out);
  if (s != GR_OK) {
    gr_image_destroy(v);
    return s;
  }
  const int64_t nx = sg.size[0], ny = sg.size[1], nz = sg.size[2], n = nx * ny * nz;
  float *d = (*out)->data;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t q = (k * ny + j) * nx + i;
        double y[3], p[3];
        phys_of(moving_whole, i, j, z0 + k, y);
        gr_affine_apply(&Ainv, y, p);
        for (int a = 0; a < 3; ++a) d[a * n + q] = (float)(p[a] + (v ? v->data[a * n + q] : 0.0f) - y[a]);
      }
  gr_image_destroy(v);
  return GR_OK;
}
