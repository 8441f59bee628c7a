/* Images resampled from slabs, with nothing whole on any rank: this rank's
 * planes (gr_decomp_slab of the output grid) of an input held as slabs, read
 * through the ring sampler, bitwise what the backend's whole-grid resample
 * gives there (the ring's sums are exact). Used for result images and, by
 * registration/export.c, for the inverse field of -slabs runs. */
#include <string.h>
#include "gigareg/grid_parallel.h"
#include "parallel/gp.h"

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
