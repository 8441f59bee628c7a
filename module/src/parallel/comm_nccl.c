/* NCCL communicator: one rank per GPU (gigareg/comm.h gr_comm_nccl_create).
 *
 * Bootstrap over the wrapped MPI communicator: rank 0 calls ncclGetUniqueId,
 * the id is broadcast over `base`, every rank selects its device (local rank
 * modulo the device count unless given) and calls ncclCommInitRank.
 *
 * Point-to-point: the Grid Parallel traffic (halo planes, ring slabs) is
 * device memory of the CUDA backend. exchange_start first waits for the device
 * work queued so far (the backend's kernels that write the send buffers run on
 * the backend's own stream), then posts, inside one ncclGroupStart /
 * ncclGroupEnd, every receive and send of device buffers on this
 * communicator's stream; exchange_wait synchronises that stream. Messages are
 * matched per peer in posting order (NCCL has no tags): both sides sort their
 * messages of one exchange by (peer, tag), stably, so same-tag messages keep
 * the MPI posting order of comm.h and different tags pair up identically on
 * the two sides. Zero-byte messages are skipped on both sides.
 * Host buffers in an exchange (slab I/O of images) go through `base`.
 * Reductions, allgatherv, broadcast and barrier take host buffers in the
 * parallel layer, so they are delegated to `base` (MPI): bitwise the MPI
 * communicator's results. abort: ncclCommAbort, then base's abort (MPI_Abort).
 *
 * libnccl is loaded at run time (dlopen: libnccl.so.2, then the library found
 * at configure time), so a CUDA build runs on machines without NCCL; only
 * gr_comm_nccl_create then fails, with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/comm.h"

#if defined(GIGAREG_HAVE_NCCL) && defined(GIGAREG_HAVE_CUDA) && defined(GIGAREG_HAVE_MPI)
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include "kernels/cuda_entry.h"

/* ---- libnccl, resolved at run time ---------------------------------------------- */
typedef struct nccl_api {
  ncclResult_t (*GetUniqueId)(ncclUniqueId *);
  ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*CommDestroy)(ncclComm_t);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*Send)(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*Recv)(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*GroupStart)(void);
  ncclResult_t (*GroupEnd)(void);
  const char *(*GetErrorString)(ncclResult_t);
} nccl_api;

static nccl_api api;
static int api_state; /* 0 = not tried, 1 = loaded, -1 = failed */
static char api_error[512];
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

static void load_api(void) {
  const char *names[] = {"libnccl.so.2", "libnccl.so",
#ifdef GIGAREG_NCCL_LIBRARY_PATH
                         GIGAREG_NCCL_LIBRARY_PATH,
#endif
                         NULL};
  void *h = NULL;
  for (int k = 0; names[k] && !h; ++k) h = dlopen(names[k], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(api_error, sizeof api_error, "cannot load libnccl (%s)", dlerror());
    api_state = -1;
    return;
  }
  struct {
    void **slot;
    const char *name;
  } syms[] = {
      {(void **)&api.GetUniqueId, "ncclGetUniqueId"}, {(void **)&api.CommInitRank, "ncclCommInitRank"},
      {(void **)&api.CommDestroy, "ncclCommDestroy"}, {(void **)&api.CommAbort, "ncclCommAbort"},
      {(void **)&api.Send, "ncclSend"},               {(void **)&api.Recv, "ncclRecv"},
      {(void **)&api.GroupStart, "ncclGroupStart"},   {(void **)&api.GroupEnd, "ncclGroupEnd"},
      {(void **)&api.GetErrorString, "ncclGetErrorString"},
  };
  for (size_t k = 0; k < sizeof syms / sizeof syms[0]; ++k) {
    *syms[k].slot = dlsym(h, syms[k].name);
    if (!*syms[k].slot) {
      snprintf(api_error, sizeof api_error, "libnccl has no %s (NCCL >= 2.7 needed for send/recv)", syms[k].name);
      api_state = -1;
      return;
    }
  }
  api_state = 1;
}

static gr_status need_api(void) {
  pthread_once(&api_once, load_api);
  return api_state == 1 ? GR_OK : gr_error(GR_ERR_UNSUPPORTED, "NCCL communicator: %s", api_error);
}

static gr_status nccl_fail(ncclResult_t r, const char *what) {
  return gr_error(GR_ERR_COMM, "NCCL %s failed: %s", what, api.GetErrorString ? api.GetErrorString(r) : "?");
}

static gr_status cuda_fail(cudaError_t e, const char *what) {
  (void)cudaGetLastError();
  return gr_error(GR_ERR_DEVICE, "NCCL communicator: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* ---- the communicator -------------------------------------------------------------- */
typedef struct nccl_impl {
  gr_comm *base; /* MPI: collectives, host exchanges, bootstrap */
  ncclComm_t nc;
  cudaStream_t stream;
  int device, rank, size;
} nccl_impl;

struct gr_comm_pending {
  int nccl_posted;           /* device messages in flight on the stream */
  gr_comm_pending *host;     /* base's pending exchange of host buffers */
};

static nccl_impl *nimpl(const gr_comm *c) { return (nccl_impl *)c->impl; }

static int n_rank(const gr_comm *c) { return nimpl(c)->rank; }
static int n_size(const gr_comm *c) { return nimpl(c)->size; }
static gr_status n_sum_f64(gr_comm *c, double *x, int n) { gr_comm *b = nimpl(c)->base; return b->ops->allreduce_sum_f64(b, x, n); }
static gr_status n_max_f64(gr_comm *c, double *x, int n) { gr_comm *b = nimpl(c)->base; return b->ops->allreduce_max_f64(b, x, n); }
static gr_status n_sum_i64(gr_comm *c, int64_t *x, int n) { gr_comm *b = nimpl(c)->base; return b->ops->allreduce_sum_i64(b, x, n); }
static gr_status n_bcast(gr_comm *c, void *buf, int64_t bytes, int root) {
  gr_comm *b = nimpl(c)->base;
  return b->ops->broadcast(b, buf, bytes, root);
}
static gr_status n_allgatherv(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts) {
  return gr_comm_allgatherv(nimpl(c)->base, send, send_bytes, recv, counts);
}
static gr_status n_barrier(gr_comm *c) { return gr_comm_barrier(nimpl(c)->base); }

static void n_abort(gr_comm *c, gr_status s, const char *msg) {
  nccl_impl *m = nimpl(c);
  if (m->nc) (void)api.CommAbort(m->nc);
  m->nc = NULL;
  gr_comm_abort(m->base, s, msg);
}

static void n_destroy(gr_comm *c) {
  nccl_impl *m = nimpl(c);
  if (m->stream) {
    (void)cudaStreamSynchronize(m->stream);
    (void)cudaStreamDestroy(m->stream);
  }
  if (m->nc) (void)api.CommDestroy(m->nc);
  (void)cudaGetLastError();
  gr_comm_destroy(m->base);
  free(m);
  free(c);
}

/* One device message, with its position in the caller's list (stable sort key). */
typedef struct dmsg {
  const gr_comm_msg *m;
  int order;
} dmsg;

static int dmsg_cmp(const void *a, const void *b) {
  const dmsg *x = a, *y = b;
  if (x->m->peer != y->m->peer) return x->m->peer < y->m->peer ? -1 : 1;
  if (x->m->tag != y->m->tag) return x->m->tag < y->m->tag ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

static gr_status n_exchange_start(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv,
                                  gr_comm_pending **out) {
  nccl_impl *m = nimpl(c);
  *out = NULL;
  gr_comm_pending *p = calloc(1, sizeof *p);
  gr_comm_msg *hs = malloc(sizeof *hs * (size_t)(nsend + nrecv + 1));
  dmsg *ds = malloc(sizeof *ds * (size_t)(nsend + 1)), *dr = malloc(sizeof *dr * (size_t)(nrecv + 1));
  if (!p || !hs || !ds || !dr) {
    free(p);
    free(hs);
    free(ds);
    free(dr);
    return gr_error(GR_ERR_NOMEM, "NCCL exchange: message lists");
  }
  /* split: device buffers go through NCCL, host buffers through base */
  int nhs = 0, nhr = 0, nds = 0, ndr = 0;
  gr_comm_msg *hsend = hs, *hrecv = hs + nsend;
  for (int k = 0; k < nsend; ++k) {
    if (sends[k].bytes <= 0) continue;
    if (gr_cuda_pointer_is_device(sends[k].buf)) ds[nds++] = (dmsg){&sends[k], k};
    else hsend[nhs++] = sends[k];
  }
  for (int k = 0; k < nrecv; ++k) {
    if (recvs[k].bytes <= 0) continue;
    if (gr_cuda_pointer_is_device(recvs[k].buf)) dr[ndr++] = (dmsg){&recvs[k], k};
    else hrecv[nhr++] = recvs[k];
  }
  gr_status s = GR_OK;
  if (nds + ndr > 0) {
    qsort(ds, (size_t)nds, sizeof *ds, dmsg_cmp);
    qsort(dr, (size_t)ndr, sizeof *dr, dmsg_cmp);
    /* The send buffers are written by kernels on the backend's stream. */
    s = gr_cuda_sync_all();
    cudaError_t e = s == GR_OK ? cudaSetDevice(m->device) : cudaSuccess;
    if (e != cudaSuccess) s = cuda_fail(e, "cudaSetDevice");
    ncclResult_t r = ncclSuccess;
    if (s == GR_OK && (r = api.GroupStart()) != ncclSuccess) s = nccl_fail(r, "group start");
    if (s == GR_OK) {
      for (int k = 0; k < ndr && r == ncclSuccess; ++k)
        r = api.Recv(dr[k].m->buf, (size_t)dr[k].m->bytes, ncclChar, dr[k].m->peer, m->nc, m->stream);
      for (int k = 0; k < nds && r == ncclSuccess; ++k)
        r = api.Send(ds[k].m->buf, (size_t)ds[k].m->bytes, ncclChar, ds[k].m->peer, m->nc, m->stream);
      const ncclResult_t r2 = api.GroupEnd(); /* always close the group */
      if (r != ncclSuccess) s = nccl_fail(r, "send/recv");
      else if (r2 != ncclSuccess) s = nccl_fail(r2, "group end");
    }
    p->nccl_posted = s == GR_OK;
  }
  if (s == GR_OK && nhs + nhr > 0) s = gr_comm_exchange_start(m->base, hsend, nhs, hrecv, nhr, &p->host);
  free(hs);
  free(ds);
  free(dr);
  if (s != GR_OK) {
    if (p->nccl_posted) (void)cudaStreamSynchronize(m->stream);
    free(p);
    return s;
  }
  *out = p;
  return GR_OK;
}

static gr_status n_exchange_wait(gr_comm *c, gr_comm_pending *p) {
  if (!p) return GR_OK;
  nccl_impl *m = nimpl(c);
  gr_status s = GR_OK;
  if (p->host) s = gr_comm_exchange_wait(m->base, p->host);
  if (p->nccl_posted) {
    const cudaError_t e = cudaStreamSynchronize(m->stream);
    if (e != cudaSuccess && s == GR_OK) s = cuda_fail(e, "stream synchronise (send/recv)");
  }
  free(p);
  return s;
}

static const gr_comm_ops nccl_ops = {
  "nccl", n_rank, n_size, n_sum_f64, n_max_f64, n_sum_i64, n_bcast, n_destroy,
  n_allgatherv, n_exchange_start, n_exchange_wait, n_barrier, n_abort,
};

int gr_comm_nccl_available(void) { return need_api() == GR_OK && gr_cuda_device_count() > 0; }

gr_status gr_comm_nccl_create(gr_comm *base, int device, gr_comm **out) {
  *out = NULL;
  if (!base) return gr_error(GR_ERR_INVALID_ARG, "gr_comm_nccl_create: NULL base communicator");
  const int size = gr_comm_size(base), rank = gr_comm_rank(base);
  /* Every rank learns whether every rank can run NCCL, so no rank waits alone. */
  gr_status s = need_api();
  const int ndev = gr_cuda_device_count();
  if (s == GR_OK && ndev <= 0) s = gr_error(GR_ERR_DEVICE, "NCCL communicator: no CUDA device");
  if (s == GR_OK && device < 0) {
    const int lr = gr_comm_local_rank();
    device = (lr >= 0 ? lr : rank) % ndev;
  }
  if (s == GR_OK && device >= ndev)
    s = gr_error(GR_ERR_DEVICE, "NCCL communicator: device %d requested, %d found", device, ndev);
  s = gr_comm_agree_msg(base, s);
  if (s != GR_OK) return s;
  nccl_impl *m = calloc(1, sizeof *m);
  gr_comm *c = calloc(1, sizeof *c);
  if (!m || !c) {
    free(m);
    free(c);
    return gr_comm_agree_msg(base, gr_error(GR_ERR_NOMEM, "NCCL communicator allocation failed"));
  }
  m->base = base;
  m->device = device;
  m->rank = rank;
  m->size = size;
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) s = cuda_fail(e, "cudaSetDevice");
  if (s == GR_OK && rank == 0) {
    const ncclResult_t r = api.GetUniqueId(&id);
    if (r != ncclSuccess) s = nccl_fail(r, "get unique id");
  }
  s = gr_comm_agree_msg(base, s);
  if (s == GR_OK) s = base->ops->broadcast(base, &id, (int64_t)sizeof id, 0);
  if (s == GR_OK) {
    e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) s = cuda_fail(e, "cudaStreamCreateWithFlags");
  }
  s = gr_comm_agree_msg(base, s);
  if (s == GR_OK) {
    const ncclResult_t r = api.CommInitRank(&m->nc, size, id, rank); /* collective over all ranks */
    if (r != ncclSuccess) {
      m->nc = NULL;
      s = nccl_fail(r, "comm init rank");
    }
  }
  s = gr_comm_agree_msg(base, s);
  if (s != GR_OK) {
    if (m->nc) (void)api.CommDestroy(m->nc);
    if (m->stream) (void)cudaStreamDestroy(m->stream);
    free(m);
    free(c);
    return s;
  }
  c->ops = &nccl_ops;
  c->impl = m;
  *out = c;
  return GR_OK;
}

#else /* no NCCL (or no CUDA / MPI) in this build */

int gr_comm_nccl_available(void) { return 0; }

gr_status gr_comm_nccl_create(gr_comm *base, int device, gr_comm **out) {
  (void)base;
  (void)device;
  *out = NULL;
  return gr_error(GR_ERR_UNSUPPORTED,
                  "this build has no NCCL communicator (needs CUDA, MPI and NCCL: -DGIGAREG_USE_NCCL=ON)");
}

#endif
