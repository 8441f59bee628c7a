/* MPI communicator.
 *
 * Device buffers: when the communicator's `mem` is set (a sharded run on the
 * CUDA backend, gigareg/comm.h), exchange buffers may be device memory. They
 * are staged through host memory (download, MPI, upload after the wait),
 * unless the MPI library is CUDA-aware (Open MPI's MPIX_Query_cuda_support),
 * in which case device work is synchronised and the device pointers go to MPI
 * directly. GIGAREG_MPI_CUDA_AWARE=0/1 overrides the detection. Reductions,
 * allgatherv and broadcast take host buffers only (as the parallel layer
 * passes them).
 *
 * Determinism: sums of doubles are NOT MPI_Allreduce(MPI_SUM), whose order
 * depends on the algorithm MPI picks for the message size and rank count.
 * Every rank gathers all ranks' vectors (MPI_Allgather) and adds them in rank
 * order, so results are bitwise reproducible and identical to the thread-group
 * communicator's (comm_group.c). The vectors reduced this way are small (a few
 * doubles per iteration; per-plane partials use allgatherv). Integer sums and
 * maxima are exact in any order and use MPI_Allreduce. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/comm.h"

#ifdef GIGAREG_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#include "gigareg/comm_mpi.h"
#if defined(__has_include)
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h> /* Open MPI: MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support */
#endif
#endif

/* Large buffers move in chunks: MPI counts are ints. */
#define MPI_CHUNK ((int64_t)1 << 30)

typedef struct mpi_impl {
  MPI_Comm comm;
  int rank, size;
  int cuda_aware; /* device pointers may go to MPI directly */
} mpi_impl;

/* A device buffer staged through host memory. */
typedef struct staged_buf {
  void *dev, *host;
  int64_t bytes;
  int recv;
} staged_buf;

struct gr_comm_pending {
  int n;
  int nstaged;
  staged_buf *staged;
  const gr_comm_memory *mem;
  MPI_Request req[];
};

static int detect_cuda_aware(void) {
  const char *e = getenv("GIGAREG_MPI_CUDA_AWARE");
  if (e && e[0]) return atoi(e) != 0;
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return 0;
#endif
}

static void free_staged(gr_comm_pending *p) {
  for (int k = 0; k < p->nstaged; ++k) free(p->staged[k].host);
  free(p->staged);
  p->staged = NULL;
  p->nstaged = 0;
}

static mpi_impl *impl_of(const gr_comm *c) { return (mpi_impl *)c->impl; }

static gr_status mpi_fail(int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
  return gr_error(GR_ERR_COMM, "MPI %s failed: %s", what, msg);
}

static int m_rank(const gr_comm *c) { return impl_of(c)->rank; }
static int m_size(const gr_comm *c) { return impl_of(c)->size; }

static gr_status m_sum_f64(gr_comm *c, double *x, int n) {
  mpi_impl *m = impl_of(c);
  if (n <= 0) return GR_OK;
  double *all = malloc((size_t)n * (size_t)m->size * sizeof(double));
  if (!all) return gr_error(GR_ERR_NOMEM, "MPI sum: %d x %d doubles", n, m->size);
  const int rc = MPI_Allgather(x, n, MPI_DOUBLE, all, n, MPI_DOUBLE, m->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return mpi_fail(rc, "allgather (sum)");
  }
  for (int i = 0; i < n; ++i) {
    double acc = all[i];
    for (int q = 1; q < m->size; ++q) acc += all[(size_t)q * (size_t)n + (size_t)i];
    x[i] = acc;
  }
  free(all);
  return GR_OK;
}

static gr_status m_max_f64(gr_comm *c, double *x, int n) {
  if (n <= 0) return GR_OK;
  const int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_MAX, impl_of(c)->comm);
  return rc == MPI_SUCCESS ? GR_OK : mpi_fail(rc, "allreduce (max)");
}

static gr_status m_sum_i64(gr_comm *c, int64_t *x, int n) {
  if (n <= 0) return GR_OK;
  const int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT64_T, MPI_SUM, impl_of(c)->comm);
  return rc == MPI_SUCCESS ? GR_OK : mpi_fail(rc, "allreduce (int64 sum)");
}

static gr_status m_bcast(gr_comm *c, void *buf, int64_t bytes, int root) {
  for (int64_t off = 0; off < bytes; off += MPI_CHUNK) {
    const int64_t k = bytes - off < MPI_CHUNK ? bytes - off : MPI_CHUNK;
    const int rc = MPI_Bcast((unsigned char *)buf + off, (int)k, MPI_BYTE, root, impl_of(c)->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "broadcast");
  }
  return GR_OK;
}

static gr_status m_allgatherv(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts) {
  mpi_impl *m = impl_of(c);
  if (counts[m->rank] != send_bytes)
    return gr_error(GR_ERR_INVALID_ARG, "allgatherv: rank %d sends %lld bytes, counts say %lld", m->rank,
                    (long long)send_bytes, (long long)counts[m->rank]);
  int64_t total = 0, maxc = 0;
  for (int q = 0; q < m->size; ++q) {
    total += counts[q];
    if (counts[q] > maxc) maxc = counts[q];
  }
  if (total <= INT_MAX) {
    int *cnt = malloc(sizeof(int) * 2 * (size_t)m->size);
    if (!cnt) return gr_error(GR_ERR_NOMEM, "allgatherv counts");
    int *disp = cnt + m->size;
    int off = 0;
    for (int q = 0; q < m->size; ++q) {
      cnt[q] = (int)counts[q];
      disp[q] = off;
      off += cnt[q];
    }
    /* MPI forbids aliasing send and receive buffers; MPI_IN_PLACE covers the in-place use. */
    const void *sb = (const unsigned char *)recv + disp[m->rank] == send ? MPI_IN_PLACE : send;
    const int rc = MPI_Allgatherv(sb, cnt[m->rank], MPI_BYTE, recv, cnt, disp, MPI_BYTE, m->comm);
    free(cnt);
    return rc == MPI_SUCCESS ? GR_OK : mpi_fail(rc, "allgatherv");
  }
  /* More than 2 GiB in all (whole-field gathers of big images): one chunked
   * broadcast per rank. */
  (void)maxc;
  int64_t off = 0;
  for (int q = 0; q < m->size; ++q) {
    unsigned char *dst = (unsigned char *)recv + off;
    if (q == m->rank && dst != send && send_bytes > 0) memcpy(dst, send, (size_t)send_bytes);
    const gr_status s = m_bcast(c, dst, counts[q], q);
    if (s != GR_OK) return s;
    off += counts[q];
  }
  return GR_OK;
}

static int64_t nchunks(int64_t bytes) { return bytes <= 0 ? 1 : (bytes + MPI_CHUNK - 1) / MPI_CHUNK; }

static gr_status m_exchange_start(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs, int nrecv,
                                  gr_comm_pending **out) {
  mpi_impl *m = impl_of(c);
  int64_t nreq = 0;
  for (int k = 0; k < nsend; ++k) nreq += nchunks(sends[k].bytes);
  for (int k = 0; k < nrecv; ++k) nreq += nchunks(recvs[k].bytes);
  gr_comm_pending *p = malloc(sizeof *p + (size_t)(nreq > 0 ? nreq : 1) * sizeof(MPI_Request));
  if (!p) return gr_error(GR_ERR_NOMEM, "exchange: %lld requests", (long long)nreq);
  p->n = 0;
  p->nstaged = 0;
  p->staged = NULL;
  p->mem = c->mem;
  /* Device buffers: staged through host memory, or (CUDA-aware MPI) passed on
   * once the device work that writes the send buffers has completed. */
  void **bufs = NULL;
  if (c->mem && nsend + nrecv > 0) {
    bufs = malloc(sizeof(void *) * (size_t)(nsend + nrecv));
    p->staged = calloc((size_t)(nsend + nrecv), sizeof *p->staged);
    if (!bufs || !p->staged) {
      free(bufs);
      free(p->staged);
      free(p);
      return gr_error(GR_ERR_NOMEM, "exchange: staging list");
    }
    int any_device = 0;
    gr_status st = GR_OK;
    for (int k = 0; k < nsend + nrecv && st == GR_OK; ++k) {
      const gr_comm_msg *g = k < nrecv ? &recvs[k] : &sends[k - nrecv];
      bufs[k] = g->buf;
      if (g->bytes <= 0 || !c->mem->is_device(g->buf)) continue;
      any_device = 1;
      if (m->cuda_aware) continue;
      staged_buf *sb = &p->staged[p->nstaged];
      sb->host = malloc((size_t)g->bytes);
      if (!sb->host) {
        st = gr_error(GR_ERR_NOMEM, "exchange: %lld-byte host staging buffer", (long long)g->bytes);
        break;
      }
      sb->dev = g->buf;
      sb->bytes = g->bytes;
      sb->recv = k < nrecv;
      p->nstaged++;
      bufs[k] = sb->host;
      if (!sb->recv) st = c->mem->copy(sb->host, g->buf, (size_t)g->bytes); /* download the send */
    }
    if (st == GR_OK && any_device && m->cuda_aware) st = c->mem->sync();
    if (st != GR_OK) {
      free(bufs);
      free_staged(p);
      free(p);
      return st;
    }
  }
  /* Receives first: a posted receive lets the eager protocol deliver straight into it. */
  for (int pass = 0; pass < 2; ++pass) {
    const gr_comm_msg *list = pass == 0 ? recvs : sends;
    const int cnt = pass == 0 ? nrecv : nsend;
    for (int k = 0; k < cnt; ++k) {
      const gr_comm_msg *g = &list[k];
      int64_t off = 0;
      do { /* chunks of one message share its tag: MPI keeps their order */
        const int64_t len = g->bytes - off < MPI_CHUNK ? g->bytes - off : MPI_CHUNK;
        unsigned char *b = (unsigned char *)(bufs ? bufs[pass == 0 ? k : nrecv + k] : g->buf) + off;
        const int rc = pass == 0 ? MPI_Irecv(b, (int)len, MPI_BYTE, g->peer, g->tag, m->comm, &p->req[p->n])
                                 : MPI_Isend(b, (int)len, MPI_BYTE, g->peer, g->tag, m->comm, &p->req[p->n]);
        if (rc != MPI_SUCCESS) {
          /* Requests already posted cannot be withdrawn safely; the caller aborts
           * (the staging buffers are leaked on purpose: MPI may still use them). */
          free(bufs);
          free(p);
          return mpi_fail(rc, pass == 0 ? "irecv" : "isend");
        }
        p->n++;
        off += len;
      } while (off < g->bytes);
    }
  }
  free(bufs);
  *out = p;
  return GR_OK;
}

static gr_status m_exchange_wait(gr_comm *c, gr_comm_pending *p) {
  (void)c;
  if (!p) return GR_OK;
  const int rc = p->n > 0 ? MPI_Waitall(p->n, p->req, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
  gr_status s = rc == MPI_SUCCESS ? GR_OK : mpi_fail(rc, "waitall");
  for (int k = 0; s == GR_OK && k < p->nstaged; ++k) /* upload the staged receives */
    if (p->staged[k].recv) s = p->mem->copy(p->staged[k].dev, p->staged[k].host, (size_t)p->staged[k].bytes);
  free_staged(p);
  free(p);
  return s;
}

static gr_status m_barrier(gr_comm *c) {
  const int rc = MPI_Barrier(impl_of(c)->comm);
  return rc == MPI_SUCCESS ? GR_OK : mpi_fail(rc, "barrier");
}

static void m_abort(gr_comm *c, gr_status s, const char *msg) {
  mpi_impl *m = impl_of(c);
  fprintf(stderr, "gigareg: rank %d of %d: error: %s (%s); aborting all ranks\n", m->rank, m->size,
          msg && msg[0] ? msg : "failure", gr_strerror(s));
  fflush(stderr);
  MPI_Abort(m->comm, 1);
}

static void m_destroy(gr_comm *c) {
  mpi_impl *m = impl_of(c);
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Comm_free(&m->comm);
  free(m);
  free(c);
}

static const gr_comm_ops mpi_ops = {
  "mpi", m_rank, m_size, m_sum_f64, m_max_f64, m_sum_i64, m_bcast, m_destroy,
  m_allgatherv, m_exchange_start, m_exchange_wait, m_barrier, m_abort,
};

gr_status gr_comm_mpi_create(MPI_Comm comm, gr_comm **out) {
  *out = NULL;
  int init = 0;
  MPI_Initialized(&init);
  if (!init) return gr_error(GR_ERR_COMM, "gr_comm_mpi_create: MPI is not initialised");
  gr_comm *c = calloc(1, sizeof *c);
  mpi_impl *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    return gr_error(GR_ERR_NOMEM, "MPI communicator allocation failed");
  }
  int rc = MPI_Comm_dup(comm, &m->comm);
  if (rc != MPI_SUCCESS) {
    free(c);
    free(m);
    return mpi_fail(rc, "comm_dup");
  }
  MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(m->comm, &m->rank);
  MPI_Comm_size(m->comm, &m->size);
  m->cuda_aware = detect_cuda_aware();
  c->ops = &mpi_ops;
  c->impl = m;
  *out = c;
  return GR_OK;
}

int gr_comm_mpi_available(void) { return 1; }

gr_status gr_comm_mpi_world(int *argc, char ***argv, gr_comm **out) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "init");
  }
  return gr_comm_mpi_create(MPI_COMM_WORLD, out);
}

void gr_comm_mpi_finalize(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
}

#else /* no MPI in this build */

int gr_comm_mpi_available(void) { return 0; }

gr_status gr_comm_mpi_world(int *argc, char ***argv, gr_comm **out) {
  (void)argc;
  (void)argv;
  *out = NULL;
  return gr_error(GR_ERR_UNSUPPORTED, "this build has no MPI (rebuild with -DGIGAREG_USE_MPI=ON and an MPI library)");
}

void gr_comm_mpi_finalize(void) {}

#endif
