/* Grid Parallel internals: slab decomposition, shards with halos, halo
 * exchange, the ring sampler and the distributed reductions the registration
 * stages use. Layering: this sits between registration/ (which calls it) and
 * the backend/comm seams (which it calls); kernels never see ranks, only
 * windows of global grids (gr_slab_sample, gr_metric_region in backend.h).
 * Design and cost model: docs/grid-parallel.md. */
#ifndef GIGAREG_GP_H
#define GIGAREG_GP_H

#include "gigareg/backend.h"
#include "gigareg/comm.h"
#include "gigareg/grid_parallel.h"

/* Tags of the point-to-point traffic (comm.h: < 4096). Each use has its own
 * range so that an exchange can never match another's messages. */
enum {
  GR_TAG_HALO = 16,      /* + component (0..2) */
  GR_TAG_RING = 64,      /* + component (0..2) */
  GR_TAG_SCATTER = 128,  /* + component */
  GR_TAG_GATHER = 192
};

/* ---- decomposition ------------------------------------------------------------- */
/* One rank's part of a z-slab decomposition of a global grid, with a halo:
 * owned planes [own0, own1), stored planes [ext0, ext1) = owned +- halo,
 * clipped to the grid. Arrays of a shard hold the stored planes, component
 * planes of nloc voxels each (the structure-of-arrays layout of whole grids). */
typedef struct gr_shard {
  gr_grid global;
  int nranks, rank, halo;
  int64_t own0, own1, ext0, ext1;
  int64_t nxy, nloc, nown;
  gr_grid local; /* the stored block as a grid: n = (nx, ny, ext1-ext0), maps shifted; for ops that
                  * only use the sizes and linear maps (smooth, adam_direction, fill, axpy) */
} gr_shard;

gr_status gr_shard_init(const gr_grid *global, int nranks, int rank, int halo, gr_shard *out);
/* Offset (in voxels) of the first owned plane inside a stored array. */
static inline int64_t gr_shard_own_offset(const gr_shard *s) { return (s->own0 - s->ext0) * s->nxy; }
/* Fails (GR_ERR_UNSUPPORTED, naming `what`) when some rank would own no plane. */
gr_status gr_shard_check_planes(const gr_grid *g, int nranks, const char *what);

/* ---- halo exchange -------------------------------------------------------------- */
/* Overwrite the halo planes of `data` (ncomp planes of s->nloc floats, backend
 * memory that the communicator can address: host for CPU) with their owners'
 * values. Non-blocking pair: work that touches only owned planes may run
 * between start and finish. */
gr_status gr_halo_start(gr_comm *c, const gr_shard *s, float *data, int ncomp, gr_comm_pending **p);
gr_status gr_halo_finish(gr_comm *c, gr_comm_pending *p);
gr_status gr_halo_exchange(gr_comm *c, const gr_shard *s, float *data, int ncomp);

/* Smooth a sharded field: x,y passes of the planes neighbours need, halo
 * exchange overlapped with the x,y passes of the interior planes, the z pass
 * on the stored block, halo exchange again. Owned planes are bitwise equal to
 * smoothing the whole grid when s->halo >= ceil(3 sigma_z) (the z pass is the
 * only one that crosses slabs; x and y lines are whole on every rank); the
 * final exchange makes the halo exact as well. */
gr_status gr_shard_smooth(gr_backend *be, gr_comm *c, const gr_shard *s, float *data, int ncomp,
                          const double sigma_vox[3]);

/* ---- ring sampler ---------------------------------------------------------------- */
/* A z-sharded input image: rank q holds planes [z0_q, z1_q) of gr_decomp_slab
 * (no halo), component c at data + c * comp_stride. */
typedef struct gr_ring_image {
  const gr_grid *grid;
  const float *data;
  int ncomp;
  int64_t comp_stride;
} gr_ring_image;

/* Evaluate the input at the points of `pts` (pts->in_* fields are filled here;
 * pts->acc / acc_grad are zeroed and accumulated over the ring). The moving
 * slabs travel in a shift schedule: at step k rank r receives the planes it
 * needs from rank r-k and sends rank r+k the planes that rank needs (both
 * found by the bounding-box pre-pass), with the next step's transfer in flight
 * while the current slab is sampled. Every trilinear corner lives on exactly
 * one rank, so the sum equals the single-process sampler (bitwise: at most two
 * slabs contribute to a point, and IEEE addition is commutative).
 * `stats` (may be NULL) receives bytes received and slabs skipped. */
typedef struct gr_ring_stats {
  int64_t bytes_received, steps_used, steps_skipped;
} gr_ring_stats;
gr_status gr_ring_sample(gr_backend *be, gr_comm *c, const gr_ring_image *in, gr_slab_sample *pts,
                         gr_ring_stats *stats);

/* ---- gathers -------------------------------------------------------------------- */
/* Assemble a whole image from owned slabs (every rank receives it). `own` is
 * this rank's ncomp planes of owned voxels (component stride comp_stride);
 * out is ncomp planes of the whole grid. */
gr_status gr_gather_slabs(gr_comm *c, const gr_grid *g, const float *own, int ncomp, int64_t comp_stride, float *out);

/* Sum per-plane partials of every rank in global plane order: each rank passes
 * K doubles for each of its owned planes (planes [own0, own1) of a
 * decomposition of nz planes); tot receives the K sums, identical on all ranks
 * and bitwise equal to summing the planes of one process in order. */
gr_status gr_sum_plane_partials(gr_comm *c, int64_t nz, const double *mine, int K, double *tot);

/* ---- distributed metric -------------------------------------------------------- */
/* A metric over a sharded fixed grid: the fixed image (and mask, and u) on the
 * stored planes of `fs`, the moving image (and mask) as this rank's slab of the
 * moving decomposition. The moving image is ring-sampled at the warped points
 * of the stored planes, the metric runs on that window (COUNT, all-reduce of the
 * count and the MI histogram as int64, EVAL), and the per-plane partials are
 * summed in global plane order. res: global value, N and affine gradient,
 * identical on every rank; grad_u: on the stored planes, exact on the owned
 * planes when fs->halo covers the metric's reach (LNCC: 2 r). An empty overlap
 * is GR_ERR_EMPTY on every rank. */
typedef struct gr_dist_metric_args {
  const gr_metric_spec *spec;
  const gr_shard *fs;
  const float *fixed, *fixed_mask;  /* stored planes; mask may be NULL */
  const gr_grid *moving_grid;
  const float *moving, *moving_mask; /* owned slab of the moving grid; mask may be NULL */
  const gr_affine *T;
  const float *disp;                 /* stored planes, 3 components; may be NULL */
} gr_dist_metric_args;
gr_status gr_dist_metric(gr_backend *be, gr_comm *c, const gr_dist_metric_args *a, gr_metric_result *res,
                         float *grad_u, gr_ring_stats *stats);

#endif
