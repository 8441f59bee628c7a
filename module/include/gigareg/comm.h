/* The communication seam. A registration runs on one shard per rank; every
 * global quantity (metric value, voxel counts, affine gradients, MI histograms,
 * the max-step normalisation) is reduced through this table so that N ranks take
 * exactly the same decisions as one. `local` (one process, one shard) is the
 * N = 1 implementation; MPI and NCCL implementations add the same table. */
#ifndef GIGAREG_COMM_H
#define GIGAREG_COMM_H
#include <stdint.h>
#include "gigareg/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gr_comm gr_comm;
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
} gr_comm_ops;

struct gr_comm {
  const gr_comm_ops *ops;
  void *impl;
};

/* Single-process communicator (rank 0 of 1). */
gr_status gr_comm_local_create(gr_comm **out);
void gr_comm_destroy(gr_comm *c);

#ifdef __cplusplus
}
#endif
#endif
