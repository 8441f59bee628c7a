/* Grid Parallel: one registration sharded over ranks (MPI processes, or threads
 * of one process through the local-group communicator). The fixed grid, the
 * displacement field, its gradient and optimizer state are split into z-slabs
 * (whole x-y planes; the slowest axis); every rank computes on its slab plus
 * halo planes, the moving image is sampled with the ring sampler, and every
 * global quantity is reduced in a fixed order, so N ranks reproduce the
 * single-process result (docs/grid-parallel.md states where bit for bit).
 *
 * Entry points:
 *   gr_register(be, comm, ...) with gr_comm_size(comm) > 1: whole images on
 *     every rank (fine for images that fit one node's memory); each rank keeps
 *     only its slabs for the computation and every rank receives whole fields.
 *   gr_register_slabs: each rank passes only its slabs (from gr_image_read_slab)
 *     and gets its slab of the fields back: nothing whole-image on any rank.
 *   gr_register_local_shards: N shards as threads of this process. */
#ifndef GIGAREG_GRID_PARALLEL_H
#define GIGAREG_GRID_PARALLEL_H

#include <stdint.h>
#include "gigareg/backend.h"
#include "gigareg/comm.h"
#include "gigareg/image.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gr_stage_config;
struct gr_stage_result;
struct gr_reg_options;

/* Planes [*z0, *z1) of nz owned by `rank` of `nranks`: contiguous, in rank
 * order, sizes differing by at most one (nz * rank / nranks). */
void gr_decomp_slab(int64_t nz, int nranks, int rank, int64_t *z0, int64_t *z1);

/* This rank's inputs: the whole images' geometries and this rank's slabs
 * (planes gr_decomp_slab(size[2], nranks, rank) of each image; masks may be NULL). */
typedef struct gr_slab_inputs {
  gr_geometry fixed_geom, moving_geom;
  const gr_image *fixed, *moving, *fixed_mask, *moving_mask;
} gr_slab_inputs;

/* Sharded registration with slab inputs (see above). Stage results: the
 * parameters of linear stages are identical on every rank; a deformable
 * stage's field and inverse_field hold this rank's slab of the fixed grid
 * (geometry gr_geometry_slab of the fixed image). */
gr_status gr_register_slabs(gr_backend *be, gr_comm *comm, const gr_slab_inputs *in, const gr_affine *initial,
                            const struct gr_stage_config *stages, int nstages, const struct gr_reg_options *opt,
                            struct gr_stage_result *out);

/* Runs gr_register on `nshards` threads of this process, one shard each, over a
 * local-group communicator; results (whole fields) as from gr_register. The
 * backend is shared by the threads (the CPU backend is thread-safe; set
 * be->threads so that nshards x threads fits the machine). Progress and log
 * output come from shard 0 only. */
gr_status gr_register_local_shards(gr_backend *be, int nshards, const gr_image *fixed, const gr_image *moving,
                                   const gr_image *fixed_mask, const gr_image *moving_mask, const gr_affine *initial,
                                   const struct gr_stage_config *stages, int nstages,
                                   const struct gr_reg_options *opt, struct gr_stage_result *out);

/* Distributed I/O. gr_read_image_slab: this rank's planes gr_decomp_slab of
 * the image; uncompressed NIfTI (.nii) and MetaImage (.mha, .mhd) are read
 * with offset reads (nothing else of the file is touched); other inputs
 * (.nii.gz, compressed MetaImage, NRRD) are read whole by rank 0, which sends
 * every rank its planes; *scattered (may be NULL) is then set to 1 on every
 * rank, so that the caller can warn that rank 0 held the whole image (the
 * library prints nothing). *whole receives the whole image's geometry. Errors are agreed: every
 * rank fails with the failing rank's message.
 * gr_write_image_slabs: every rank's slab (geometry gr_geometry_slab of
 * *whole, planes gr_decomp_slab) into one file. .mha and .nii are written at
 * offsets into a file that rank 0 creates at its full size (no rank holds the
 * whole image), under a temporary name renamed into place once every rank
 * succeeded; other formats (compressed) are gathered on rank 0 and written
 * whole: small images only. t: GR_PIXEL_UNKNOWN = float. */
gr_status gr_read_image_slab(gr_comm *c, const char *path, gr_image **slab, gr_geometry *whole, int *scattered);
gr_status gr_write_image_slabs(gr_comm *c, const char *path, const gr_geometry *whole, const gr_image *slab,
                               gr_pixel_type t);

/* Outputs from slabs (module/src/registration/export.c for the fields, sharing
 * its per-voxel formulas with gr_export_fields; module/src/parallel/dist_outputs.c
 * for gr_resample_slabs), every one this
 * rank's planes gr_decomp_slab of its output grid, bitwise what the
 * whole-image code computes there (gr_export_fields, the backend's resample):
 *   gr_export_field_slab: the forward field x -> A (x + u(x)) + t - x on the
 *     fixed grid, from this rank's slab of u (NULL: the linear chain alone);
 *   gr_resample_slabs: in(T (x + disp(x))) at this rank's planes of out_whole,
 *     the input given as this rank's slab of in_whole, read through the ring
 *     sampler (disp: this rank's slab of the output grid, 3 components, may be NULL);
 *   gr_export_inverse_slab: the inverse field on the moving grid, y -> A^-1 y
 *     + u_inv(A^-1 y) - y, from this rank's slab of u_inv on the fixed grid.
 * The last two are collective (every rank calls them; errors are agreed). */
gr_status gr_export_field_slab(const gr_geometry *fixed_whole, int nranks, int rank, const gr_affine *A,
                               const gr_image *u_slab, gr_image **out);
gr_status gr_resample_slabs(gr_backend *be, gr_comm *c, const gr_geometry *out_whole, const gr_geometry *in_whole,
                            const gr_image *in_slab, const gr_affine *T, const gr_image *disp_slab, gr_interp interp,
                            gr_boundary boundary, gr_image **out_slab);
gr_status gr_export_inverse_slab(gr_backend *be, gr_comm *c, const gr_geometry *fixed_whole,
                                 const gr_geometry *moving_whole, const gr_affine *A, const gr_image *u_inv_slab,
                                 gr_image **out);

/* Runs fn(comm_k, user) for k = 0..nshards-1 on threads over a local group.
 * A shard that returns an error aborts the group, so no shard waits forever;
 * the first failing shard's status and message are returned. */
gr_status gr_comm_local_group_run(int nshards, gr_status (*fn)(gr_comm *c, void *user), void *user);

#ifdef __cplusplus
}
#endif
#endif
