/* -slabs: inputs and outputs as z-slabs under mpirun (slab_run.h). The
 * arithmetic is the whole-image mode's (gigareg_main.c), voxel for voxel with
 * global plane indices, so the files are identical to the default mode's
 * (test/gp_cli.sh compares them byte for byte). */
#include <stdio.h>
#include <string.h>
#include "slab_run.h"

static gr_status read_one(gr_comm *c, const gr_cli_args *a, const char *path, const char *what, gr_image **slab,
                          gr_geometry *whole) {
  int scattered = 0;
  gr_status s = gr_read_image_slab(c, path, slab, whole, &scattered);
  if (s != GR_OK) return s;
  if (scattered && !a->quiet && gr_comm_rank(c) == 0)
    fprintf(stderr, "gigareg: warning: %s '%s' cannot be read in slabs (compressed or not NIfTI/MetaImage): rank 0 "
                    "read the whole image (%lld voxels) and scattered it\n", what, path,
            (long long)gr_geometry_nvox(whole));
  gr_status mine = GR_OK;
  if ((*slab)->ncomp != 1)
    mine = gr_error(GR_ERR_UNSUPPORTED, "%s '%s' has %d components; a scalar image is required", what, path,
                    (*slab)->ncomp);
  if (mine == GR_OK) mine = gr_image_check_finite(*slab, what);
  return gr_comm_agree_msg(c, mine);
}

gr_status gr_cli_slab_read(gr_comm *c, const gr_cli_args *a, gr_slab_job *j) {
  gr_geometry g;
  gr_status s = read_one(c, a, a->fixed, "fixed image", &j->fixed, &j->fixed_whole);
  if (s == GR_OK) s = read_one(c, a, a->moving, "moving image", &j->moving, &j->moving_whole);
  if (s == GR_OK && a->fixed_mask) s = read_one(c, a, a->fixed_mask, "fixed mask", &j->fmask, &g);
  if (s == GR_OK && a->fixed_mask && !gr_geometry_same(&g, &j->fixed_whole))
    s = gr_error(GR_ERR_MISMATCH, "fixed mask '%s' does not share the fixed image's grid", a->fixed_mask);
  if (s == GR_OK && a->moving_mask) s = read_one(c, a, a->moving_mask, "moving mask", &j->mmask, &g);
  if (s == GR_OK && a->moving_mask && !gr_geometry_same(&g, &j->moving_whole))
    s = gr_error(GR_ERR_MISMATCH, "moving mask '%s' does not share the moving image's grid", a->moving_mask);
  j->comm = c;
  return s;
}

void gr_cli_slab_clear(gr_slab_job *j) {
  gr_image_destroy(j->fixed);
  gr_image_destroy(j->moving);
  gr_image_destroy(j->fmask);
  gr_image_destroy(j->mmask);
  j->fixed = j->moving = j->fmask = j->mmask = NULL;
}

/* Rank 0 stages `name` in its output folder; every rank learns the path. */
static gr_status staged_path(gr_slab_job *j, gr_outdir *out, const char *name, char *buf, size_t n) {
  memset(buf, 0, n);
  if (out) gr_outdir_stage(out, name, buf, n);
  return j->comm->ops->broadcast(j->comm, buf, (int64_t)n, 0);
}

void gr_cli_default_pixel(const gr_geometry *fixed_whole, const gr_geometry *moving_whole, int64_t z0,
                          const gr_affine *A, const gr_image *u, double dflt, gr_image *res) {
  gr_grid mgrid;
  gr_grid_from_geometry(moving_whole, &mgrid);
  const int64_t nx = res->geom.size[0], ny = res->geom.size[1], nz = res->geom.size[2], n = nx * ny * nz;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t jj = 0; jj < ny; ++jj)
      for (int64_t i = 0; i < nx; ++i) {
        const int64_t v = (k * ny + jj) * nx + i;
        const double idx[3] = {(double)i, (double)jj, (double)(z0 + k)};
        double x[3], y[3];
        gr_geometry_index_to_phys(fixed_whole, idx, x);
        if (u)
          for (int a = 0; a < 3; ++a) x[a] += u->data[a * n + v];
        gr_affine_apply(A, x, y);
        int inside = 1;
        for (int r = 0; r < 3; ++r) {
          const double c = mgrid.p2i[r * 4] * y[0] + mgrid.p2i[r * 4 + 1] * y[1] + mgrid.p2i[r * 4 + 2] * y[2] +
                           mgrid.p2i[r * 4 + 3];
          inside &= (c >= -0.5 && c <= (double)mgrid.n[r] - 0.5);
        }
        if (!inside) res->data[v] = (float)dflt;
      }
}

static gr_status write_fields(gr_slab_job *j, const gr_affine *A, const gr_stage_result *r, int k, gr_outdir *out,
                              char *fieldpath, size_t n) {
  char name[128], path[4400];
  const int P = gr_comm_size(j->comm), me = gr_comm_rank(j->comm);
  gr_image *fwd = NULL, *inv = NULL;
  gr_status s = gr_export_field_slab(&j->fixed_whole, P, me, A, r->field, &fwd);
  s = gr_comm_agree_msg(j->comm, s);
  snprintf(name, sizeof name, "deformationField.%d.mha", k);
  if (s == GR_OK) s = staged_path(j, out, name, path, sizeof path);
  if (s == GR_OK) s = gr_write_image_slabs(j->comm, path, &j->fixed_whole, fwd, GR_PIXEL_F32);
  if (out) gr_outdir_final(out, name, fieldpath, n);
  if (s == GR_OK)
    s = gr_export_inverse_slab(j->be, j->comm, &j->fixed_whole, &j->moving_whole, A, r->inverse_field, &inv);
  snprintf(name, sizeof name, "inverseDeformationField.%d.mha", k);
  if (s == GR_OK) s = staged_path(j, out, name, path, sizeof path);
  if (s == GR_OK) s = gr_write_image_slabs(j->comm, path, &j->moving_whole, inv, GR_PIXEL_F32);
  gr_image_destroy(fwd);
  gr_image_destroy(inv);
  return s;
}

static gr_status write_result(gr_slab_job *j, const gr_affine *A, const gr_image *u, int k,
                              const gr_output_config *oc, gr_outdir *out) {
  char name[128], path[4400];
  const gr_interp interp = oc->final_bspline_order == 0 ? GR_INTERP_NEAREST : GR_INTERP_LINEAR;
  gr_image *res = NULL;
  gr_status s = gr_resample_slabs(j->be, j->comm, &j->fixed_whole, &j->moving_whole, j->moving, A, u, interp,
                                  GR_BOUNDARY_CLAMP, &res);
  if (s == GR_OK) {
    int64_t z0, z1;
    gr_decomp_slab(j->fixed_whole.size[2], gr_comm_size(j->comm), gr_comm_rank(j->comm), &z0, &z1);
    gr_cli_default_pixel(&j->fixed_whole, &j->moving_whole, z0, A, u, oc->default_pixel_value, res);
    res->src_type = j->moving->src_type;
  }
  snprintf(name, sizeof name, "result.%d.%s", k, oc->result_format);
  if (s == GR_OK) s = staged_path(j, out, name, path, sizeof path);
  if (s == GR_OK) s = gr_write_image_slabs(j->comm, path, &j->fixed_whole, res, oc->result_pixel_type);
  gr_image_destroy(res);
  return s;
}

gr_status gr_cli_slab_write_stage(gr_slab_job *j, const gr_affine *A, const gr_stage_result *r, const gr_image *u,
                                  int k, const gr_output_config *oc, gr_outdir *out, char *fieldpath, size_t n) {
  gr_status s = GR_OK;
  if (r->field) s = write_fields(j, A, r, k, out, fieldpath, n);
  if (s == GR_OK && oc->write_result_image) s = write_result(j, A, u, k, oc, out);
  return s;
}
