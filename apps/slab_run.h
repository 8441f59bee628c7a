/* -slabs under mpirun: inputs read and outputs written as z-slabs, so no rank
 * ever holds a whole image (docs/grid-parallel.md, "Distributed I/O"). */
#ifndef GIGAREG_APP_SLAB_RUN_H
#define GIGAREG_APP_SLAB_RUN_H

#include "gigareg/gigareg.h"
#include "gigareg/elastix_io.h"
#include "gigareg/grid_parallel.h"
#include "cli_args.h"
#include "outputs.h"

typedef struct gr_slab_job {
  gr_comm *comm;
  gr_backend *be;
  gr_geometry fixed_whole, moving_whole;
  gr_image *fixed, *moving, *fmask, *mmask; /* this rank's slabs (masks may be NULL) */
} gr_slab_job;

/* Every rank reads its slabs of -f, -m, -fMask, -mMask (scalar, finite);
 * errors are agreed: every rank fails with the failing rank's message. */
gr_status gr_cli_slab_read(gr_comm *c, const gr_cli_args *a, gr_slab_job *j);
void gr_cli_slab_clear(gr_slab_job *j);

/* Stage k's images, collectively: deformationField.k.mha and
 * inverseDeformationField.k.mha for a deformable stage r (fieldpath receives
 * the final path of the forward field, for the TransformParameters file), and
 * result.k.<fmt> when oc asks for it, through the chain A (x + u(x)) + t with
 * u this rank's slab of the last deformable field up to stage k (or NULL).
 * `out` is rank 0's output folder (NULL elsewhere): rank 0 names the staged
 * files and every rank writes its planes into them. */
gr_status gr_cli_slab_write_stage(gr_slab_job *j, const gr_affine *A, const gr_stage_result *r, const gr_image *u,
                                  int k, const gr_output_config *oc, gr_outdir *out, char *fieldpath, size_t n);

/* DefaultPixelValue where the warped point A (x + u(x)) + t leaves the moving
 * grid (ITK's inside-buffer rule: continuous index in [-0.5, n - 0.5]), for a
 * result image `res` holding planes [z0, z0 + nz) of the fixed grid (u: the same
 * planes, may be NULL). Whole images are z0 = 0. */
void gr_cli_default_pixel(const gr_geometry *fixed_whole, const gr_geometry *moving_whole, int64_t z0,
                          const gr_affine *A, const gr_image *u, double dflt, gr_image *res);

#endif
