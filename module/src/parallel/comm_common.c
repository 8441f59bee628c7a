/* Wrappers over the optional (Grid Parallel) entries of the comm table, and
 * launch detection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/comm.h"

int gr_comm_rank(const gr_comm *c) { return c->ops->rank(c); }
int gr_comm_size(const gr_comm *c) { return c->ops->size(c); }

static gr_status missing(const gr_comm *c, const char *op) {
  return gr_error(GR_ERR_UNSUPPORTED, "communicator '%s' has no %s (needed for sharded registration)", c->ops->name, op);
}

gr_status gr_comm_allgatherv(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts) {
  if (!c->ops->allgatherv) return missing(c, "allgatherv");
  return c->ops->allgatherv(c, send, send_bytes, recv, counts);
}

gr_status gr_comm_exchange_start(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv,
                                 gr_comm_pending **out) {
  *out = NULL;
  if (!c->ops->exchange_start || !c->ops->exchange_wait) return missing(c, "point-to-point exchange");
  for (int k = 0; k < nsend + nrecv; ++k) {
    const gr_comm_msg *m = k < nsend ? &sends[k] : &recvs[k - nsend];
    if (m->peer < 0 || m->peer >= c->ops->size(c) || m->tag < 0 || m->tag >= 4096 || m->bytes < 0 ||
        (m->bytes > 0 && !m->buf))
      return gr_error(GR_ERR_INVALID_ARG, "exchange: bad message (peer %d of %d, tag %d, %lld bytes)", m->peer,
                      c->ops->size(c), m->tag, (long long)m->bytes);
  }
  return c->ops->exchange_start(c, sends, nsend, recvs, nrecv, out);
}

gr_status gr_comm_exchange_wait(gr_comm *c, gr_comm_pending *p) {
  if (!c->ops->exchange_wait) return missing(c, "point-to-point exchange");
  return c->ops->exchange_wait(c, p);
}

gr_status gr_comm_exchange(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv) {
  gr_comm_pending *p = NULL;
  gr_status s = gr_comm_exchange_start(c, sends, nsend, recvs, nrecv, &p);
  if (s != GR_OK) return s;
  return gr_comm_exchange_wait(c, p);
}

gr_status gr_comm_barrier(gr_comm *c) {
  if (!c->ops->barrier) return missing(c, "barrier");
  return c->ops->barrier(c);
}

void gr_comm_abort(gr_comm *c, gr_status s, const char *msg) {
  if (c && c->ops->abort) c->ops->abort(c, s, msg);
}

gr_status gr_comm_agree(gr_comm *c, gr_status mine) {
  double v = (double)mine;
  if (c->ops->allreduce_max_f64(c, &v, 1) != GR_OK) return GR_ERR_COMM;
  return (gr_status)(int)v;
}

gr_status gr_comm_agree_msg(gr_comm *c, gr_status mine) {
  const int P = c->ops->size(c), me = c->ops->rank(c);
  if (P == 1) return mine;
  /* [any failure, lowest failing rank as P - rank] in one exact max-reduction */
  double v[2] = {mine != GR_OK ? 1.0 : 0.0, mine != GR_OK ? (double)(P - me) : 0.0};
  if (c->ops->allreduce_max_f64(c, v, 2) != GR_OK) return GR_ERR_COMM;
  if (v[0] == 0.0) return GR_OK;
  const int root = P - (int)v[1];
  struct {
    int32_t status;
    char msg[480];
  } m;
  memset(&m, 0, sizeof m);
  if (me == root) {
    m.status = (int32_t)mine;
    snprintf(m.msg, sizeof m.msg, "%s", gr_last_error());
  }
  if (c->ops->broadcast(c, &m, (int64_t)sizeof m, root) != GR_OK) return GR_ERR_COMM;
  m.msg[sizeof m.msg - 1] = '\0';
  if (me == root) return gr_error((gr_status)m.status, "%s", m.msg);
  return gr_error((gr_status)m.status, "rank %d: %s", root, m.msg[0] ? m.msg : gr_strerror((gr_status)m.status));
}

int gr_comm_launched_by_mpi(void) {
  /* Open MPI's and MPICH/Hydra's (PMI) world-size variables. */
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
  for (int k = 0; k < 2; ++k) {
    const char *v = getenv(vars[k]);
    if (v && atoi(v) > 1) return 1;
  }
  return 0;
}

/* ---- device memory in exchanges ------------------------------------------------- */
#include "gigareg/backend.h"
#ifdef GIGAREG_HAVE_CUDA
#include "kernels/cuda_entry.h"
static const gr_comm_memory cuda_memory = {"cuda", gr_cuda_pointer_is_device, gr_cuda_copy_any, gr_cuda_sync_all};
#endif

const gr_comm_memory *gr_backend_comm_memory(const struct gr_backend *be) {
#ifdef GIGAREG_HAVE_CUDA
  if (be && be->ops && be->ops->name && !strcmp(be->ops->name, "cuda")) return &cuda_memory;
#else
  (void)be;
#endif
  return NULL;
}

void gr_comm_set_memory(gr_comm *c, const gr_comm_memory *mem) {
  if (c) c->mem = mem;
}

const gr_comm_memory *gr_comm_get_memory(const gr_comm *c) { return c ? c->mem : NULL; }

gr_status gr_comm_copy(const gr_comm_memory *mem, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src) return GR_OK;
  if (mem && (mem->is_device(dst) || mem->is_device(src))) return mem->copy(dst, src, bytes);
  memcpy(dst, src, bytes);
  return GR_OK;
}

int gr_comm_local_rank(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID",
                        "PMI_LOCAL_RANK"};
  for (int k = 0; k < 5; ++k) {
    const char *v = getenv(vars[k]);
    if (v && v[0]) return atoi(v);
  }
  return -1;
}

int gr_comm_local_device(void) {
#ifdef GIGAREG_HAVE_CUDA
  const int n = gr_cuda_device_count();
  if (n <= 0) return -1;
  const int lr = gr_comm_local_rank();
  return (lr > 0 ? lr : 0) % n;
#else
  return -1;
#endif
}
