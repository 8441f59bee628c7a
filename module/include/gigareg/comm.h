/* The communication seam. A registration runs on one shard per rank; every
 * global quantity (metric value, voxel counts, affine gradients, MI histograms,
 * the max-step normalisation) is reduced through this table so that N ranks take
 * exactly the same decisions as one. `local` (one process, one shard) is the
 * N = 1 implementation; `local group` (several shards as threads of one
 * process), MPI and (later) NCCL implement the same table.
 *
 * Buffers passed to the point-to-point and gather operations live in the memory
 * of the backend the ranks compute with: host memory for the CPU backend with
 * local/MPI communicators. A device-aware implementation (NCCL, CUDA-aware MPI)
 * takes device pointers; the ops are shaped after what NCCL offers (grouped
 * send/recv pairs completed together, all-gather) so it can implement them
 * without host staging. */
#ifndef GIGAREG_COMM_H
#define GIGAREG_COMM_H
#include <stddef.h>
#include <stdint.h>
#include "gigareg/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gr_comm gr_comm;

/* One message of a grouped exchange. Messages between one pair of ranks with
 * the same tag are matched in posting order (MPI's rule); tags are >= 0 and
 * < 4096. `buf` must stay valid and untouched until the exchange completes. */
typedef struct gr_comm_msg {
  int peer;
  int tag;
  void *buf;
  int64_t bytes;
} gr_comm_msg;

/* An exchange in flight (opaque, owned by the communicator until waited for). */
typedef struct gr_comm_pending gr_comm_pending;

typedef struct gr_comm_ops {
  const char *name;
  int (*rank)(const gr_comm *c);
  int (*size)(const gr_comm *c);
  /* In-place reductions over all ranks. Sums of doubles are reduced in rank order
   * so results are bitwise reproducible for a fixed rank count. */
  gr_status (*allreduce_sum_f64)(gr_comm *c, double *x, int n);
  gr_status (*allreduce_max_f64)(gr_comm *c, double *x, int n);
  gr_status (*allreduce_sum_i64)(gr_comm *c, int64_t *x, int n);
  gr_status (*broadcast)(gr_comm *c, void *buf, int64_t bytes, int root);
  void (*destroy)(gr_comm *c);

  /* ---- Grid Parallel additions (NULL in a table that predates them: the
   * gr_comm_* wrappers below then report GR_ERR_UNSUPPORTED) ---------------- */
  /* Every rank receives every rank's block in rank order: rank q's send_bytes
   * (== counts[q], counts identical on all ranks) land at offset
   * sum_{p<q} counts[p] of recv. Used for per-plane partial sums, which the
   * caller then adds in global plane order (bitwise reproducible). */
  gr_status (*allgatherv)(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts);
  /* Posts the sends and receives without blocking (MPI_Isend/Irecv, NCCL
   * group send/recv, a mailbox for threads); *out completes them in
   * exchange_wait. Halo exchange and the ring sampler overlap computation with
   * the transfers between these two calls. */
  gr_status (*exchange_start)(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv,
                              gr_comm_pending **out);
  gr_status (*exchange_wait)(gr_comm *c, gr_comm_pending *p);
  gr_status (*barrier)(gr_comm *c);
  /* A rank hit an error that the other ranks cannot see (allocation, a file it
   * alone reads, a device fault): make every rank stop instead of waiting in the
   * next collective forever. The thread group wakes every shard with
   * GR_ERR_COMM; MPI, which cannot cancel a peer's blocking call, prints `msg`
   * and calls MPI_Abort. */
  void (*abort)(gr_comm *c, gr_status s, const char *msg);
} gr_comm_ops;

/* Device memory in point-to-point exchanges (and only there: reductions,
 * allgatherv and broadcast always take host buffers). A communicator whose
 * `mem` is set may be handed device buffers of that memory kind in
 * exchange_start; the thread group then copies messages with mem->copy, and
 * the MPI communicator stages them through host memory (or, with a CUDA-aware
 * MPI, passes them on after mem->sync). `mem` NULL (the default) means host
 * buffers only. gr_register / gr_register_slabs set it for the duration of a
 * sharded run from the backend (gr_backend_comm_memory). */
typedef struct gr_comm_memory {
  const char *name;
  /* 1 when p points into device memory that host code cannot dereference. */
  int (*is_device)(const void *p);
  /* Synchronous copy between any two of host and device memory: device work
   * queued before the call that writes src has completed when it reads, and
   * the copy has landed when it returns. */
  gr_status (*copy)(void *dst, const void *src, size_t bytes);
  /* Wait until all device work queued so far has completed. */
  gr_status (*sync)(void);
} gr_comm_memory;

struct gr_comm {
  const gr_comm_ops *ops;
  void *impl;
  const gr_comm_memory *mem; /* device buffers in exchanges; NULL = host only (calloc'd comms start NULL) */
};

struct gr_backend;
/* The device-memory handler of a backend: the CUDA runtime's for the CUDA
 * backend, NULL for host-memory backends (and in a build without CUDA). */
const gr_comm_memory *gr_backend_comm_memory(const struct gr_backend *be);
/* Set / read c->mem (see gr_comm_memory). */
void gr_comm_set_memory(gr_comm *c, const gr_comm_memory *mem);
const gr_comm_memory *gr_comm_get_memory(const gr_comm *c);
/* memcpy, or mem->copy when either pointer is device memory of `mem` (mem may be NULL). */
gr_status gr_comm_copy(const gr_comm_memory *mem, void *dst, const void *src, size_t bytes);

/* Single-process communicator (rank 0 of 1). */
gr_status gr_comm_local_create(gr_comm **out);
void gr_comm_destroy(gr_comm *c);

/* `nshards` communicators of one group, for shards that run as threads of one
 * process (testing Grid Parallel without MPI, or splitting one device's problem).
 * out[k] is rank k; each is used by one thread and destroyed with
 * gr_comm_destroy (the group is freed with its last member). */
gr_status gr_comm_local_group_create(int nshards, gr_comm **out);

/* MPI (module/src/parallel/comm_mpi.c; GR_ERR_UNSUPPORTED in a build without
 * MPI). gr_comm_mpi_world initialises MPI if nobody did (MPI_THREAD_FUNNELED:
 * only the calling thread talks to MPI; OpenMP threads never do) and wraps a
 * duplicate of MPI_COMM_WORLD; gr_comm_mpi_finalize finalises MPI if
 * gr_comm_mpi_world initialised it. gr_comm_mpi_create(MPI_Comm) is declared
 * in gigareg/comm_mpi.h, which includes mpi.h. */
int gr_comm_mpi_available(void);
/* True when the process was started by mpirun/mpiexec/srun with more than one rank
 * (environment only: safe to call before MPI is initialised). */
int gr_comm_launched_by_mpi(void);
gr_status gr_comm_mpi_world(int *argc, char ***argv, gr_comm **out);
void gr_comm_mpi_finalize(void);

/* NCCL (module/src/parallel/comm_nccl.c; built with GIGAREG_HAVE_NCCL and MPI,
 * GR_ERR_UNSUPPORTED otherwise): one rank per GPU. Wraps `base` (an MPI
 * communicator; the new communicator owns it and destroys it with itself):
 * the NCCL unique id is broadcast over `base`, point-to-point exchanges of
 * device buffers go through ncclSend/ncclRecv groups on a stream of `device`,
 * exchanges of host buffers and every collective (their buffers are host
 * memory) go through `base`. device < 0: local rank (OMPI_COMM_WORLD_LOCAL_RANK,
 * MPI_LOCALRANKID, SLURM_LOCALID) modulo the device count. */
int gr_comm_nccl_available(void);
gr_status gr_comm_nccl_create(gr_comm *base, int device, gr_comm **out);
/* This process's rank among the ranks of its node from the launcher's
 * environment; -1 when unknown. */
int gr_comm_local_rank(void);
/* The GPU for one rank per GPU: gr_comm_local_rank() (0 when unknown) modulo
 * the CUDA device count; -1 without CUDA devices (or a build without CUDA). */
int gr_comm_local_device(void);

/* A communicator that forwards to `inner` and counts what passes (for
 * `gigareg -comm-stats` and the scaling benchmark): bytes and messages of
 * point-to-point exchanges, bytes and calls of collectives, and the wall time
 * this rank spends inside each kind of call (inside exchanges: communication
 * not hidden behind computation). With owns_inner, destroying it destroys
 * `inner`. gr_comm_stats_get returns 0 (and zeros) for other communicators. */
typedef struct gr_comm_stats {
  int64_t p2p_bytes, p2p_msgs, coll_bytes, coll_calls;
  double p2p_seconds, coll_seconds;
  double elapsed_seconds; /* since gr_comm_stats_create */
} gr_comm_stats;
gr_status gr_comm_stats_create(gr_comm *inner, int owns_inner, gr_comm **out);
int gr_comm_stats_get(const gr_comm *c, gr_comm_stats *out);

/* Wrappers: check that the op exists, then call it. */
int gr_comm_rank(const gr_comm *c);
int gr_comm_size(const gr_comm *c);
gr_status gr_comm_allgatherv(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts);
gr_status gr_comm_exchange_start(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv,
                                 gr_comm_pending **out);
gr_status gr_comm_exchange_wait(gr_comm *c, gr_comm_pending *p);
/* start + wait. */
gr_status gr_comm_exchange(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv);
gr_status gr_comm_barrier(gr_comm *c);
void gr_comm_abort(gr_comm *c, gr_status s, const char *msg);
/* All ranks learn whether any rank failed: returns GR_OK only when every rank
 * passed GR_OK; otherwise the largest status code of any rank (GR_ERR_COMM if
 * the reduction itself failed). */
gr_status gr_comm_agree(gr_comm *c, gr_status mine);
/* gr_comm_agree, and on failure every rank records (gr_error) the message of
 * the lowest failing rank, prefixed with its number: ranks that passed report
 * the same error as the rank that saw the problem (a NaN in its slab, a file it
 * could not read). */
gr_status gr_comm_agree_msg(gr_comm *c, gr_status mine);

#ifdef __cplusplus
}
#endif
#endif
