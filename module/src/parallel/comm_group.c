/* `local group`: several shards of one registration as threads of one process.
 * Used to test Grid Parallel without MPI, and to split one problem into shards
 * on a single device. Every collective is a rendezvous of all members through a
 * mutex/condition pair; point-to-point messages go through per-rank mailboxes.
 *
 * Semantics match comm_mpi.c exactly where results depend on them: sums of
 * doubles start from rank 0's value and add ranks in order (bitwise equal to
 * the MPI communicator's result), integer sums are exact.
 *
 * Sends copy their data into the mailbox when they are posted, so a sender's
 * buffer is free as soon as exchange_start returns and a shard that fails can
 * unwind and free its memory without a receiver reading freed data. The cost
 * is one extra copy of halo and ring data, small next to the kernels' passes.
 *
 * Device buffers: when a member's comm->mem is set (gr_register does it for a
 * device backend), payloads move between the device buffers and the host
 * mailbox with mem->copy (cudaMemcpyDefault for CUDA), so several shards share
 * one GPU in one process. Host buffers (slab I/O) still go through memcpy.
 *
 * Failure: gr_comm_abort (called by a shard that fails) wakes every member
 * blocked in a collective or a receive; they return GR_ERR_COMM naming the
 * failing shard, so the whole group stops instead of deadlocking. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/comm.h"

typedef struct group_msg {
  int src, tag;
  int64_t bytes;
  struct group_msg *next;
  unsigned char data[]; /* copied payload */
} group_msg;

typedef struct group {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n, members_alive;
  int aborted, abort_rank;
  gr_status abort_status;
  char abort_msg[256];
  int bar_count;
  unsigned long bar_gen;
  const void **slot;   /* collective: each member's buffer, valid between two barriers */
  group_msg **mail;    /* per destination, posting order */
} group;

typedef struct member {
  gr_comm comm;
  group *g;
  int rank;
} member;

struct gr_comm_pending {
  int nrecv;
  gr_comm_msg recvs[]; /* copies of the receive descriptors */
};

static member *mem_of(const gr_comm *c) { return (member *)c->impl; }

static gr_status aborted_error(const group *g) {
  return gr_error(GR_ERR_COMM, "shard %d failed (%s): %s", g->abort_rank, gr_strerror(g->abort_status), g->abort_msg);
}

/* Called with the lock held. */
static gr_status barrier_locked(group *g) {
  if (g->aborted) return aborted_error(g);
  const unsigned long gen = g->bar_gen;
  if (++g->bar_count == g->n) {
    g->bar_count = 0;
    g->bar_gen++;
    pthread_cond_broadcast(&g->cv);
    return GR_OK;
  }
  while (gen == g->bar_gen && !g->aborted) pthread_cond_wait(&g->cv, &g->mu);
  return g->aborted ? aborted_error(g) : GR_OK;
}

static gr_status grp_barrier(gr_comm *c) {
  group *g = mem_of(c)->g;
  pthread_mutex_lock(&g->mu);
  const gr_status s = barrier_locked(g);
  pthread_mutex_unlock(&g->mu);
  return s;
}

/* Publish `mine` and wait until every member has: afterwards g->slot[q] is
 * readable until the member calls publish_end. */
static gr_status publish(group *g, int rank, const void *mine) {
  pthread_mutex_lock(&g->mu);
  g->slot[rank] = mine;
  const gr_status s = barrier_locked(g);
  pthread_mutex_unlock(&g->mu);
  return s;
}

static gr_status publish_end(group *g) {
  pthread_mutex_lock(&g->mu);
  const gr_status s = barrier_locked(g);
  pthread_mutex_unlock(&g->mu);
  return s;
}

static int grp_rank(const gr_comm *c) { return mem_of(c)->rank; }
static int grp_size(const gr_comm *c) { return mem_of(c)->g->n; }

typedef enum red_kind { RED_SUM_F64, RED_MAX_F64, RED_SUM_I64 } red_kind;

static gr_status reduce(gr_comm *c, void *x, int n, red_kind kind) {
  member *m = mem_of(c);
  group *g = m->g;
  if (n <= 0) return GR_OK;
  void *tmp = malloc((size_t)n * 8);
  if (!tmp) return gr_error(GR_ERR_NOMEM, "group reduction: %d elements", n);
  gr_status s = publish(g, m->rank, x);
  if (s == GR_OK) {
    for (int i = 0; i < n; ++i) {
      if (kind == RED_SUM_I64) {
        int64_t acc = ((const int64_t *)g->slot[0])[i];
        for (int q = 1; q < g->n; ++q) acc += ((const int64_t *)g->slot[q])[i];
        ((int64_t *)tmp)[i] = acc;
      } else {
        double acc = ((const double *)g->slot[0])[i]; /* rank order, as comm_mpi.c */
        for (int q = 1; q < g->n; ++q) {
          const double v = ((const double *)g->slot[q])[i];
          if (kind == RED_SUM_F64) acc += v;
          else acc = v > acc ? v : acc;
        }
        ((double *)tmp)[i] = acc;
      }
    }
    s = publish_end(g); /* nobody overwrites its x while others still read it */
  }
  if (s == GR_OK) memcpy(x, tmp, (size_t)n * 8);
  free(tmp);
  return s;
}

static gr_status grp_sum_f64(gr_comm *c, double *x, int n) { return reduce(c, x, n, RED_SUM_F64); }
static gr_status grp_max_f64(gr_comm *c, double *x, int n) { return reduce(c, x, n, RED_MAX_F64); }
static gr_status grp_sum_i64(gr_comm *c, int64_t *x, int n) { return reduce(c, x, n, RED_SUM_I64); }

static gr_status grp_bcast(gr_comm *c, void *buf, int64_t bytes, int root) {
  member *m = mem_of(c);
  group *g = m->g;
  if (root < 0 || root >= g->n) return gr_error(GR_ERR_INVALID_ARG, "broadcast: root %d of %d", root, g->n);
  gr_status s = publish(g, m->rank, buf);
  if (s == GR_OK && m->rank != root && bytes > 0) memcpy(buf, g->slot[root], (size_t)bytes);
  if (s == GR_OK) s = publish_end(g);
  return s;
}

static gr_status grp_allgatherv(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts) {
  member *m = mem_of(c);
  group *g = m->g;
  if (counts[m->rank] != send_bytes)
    return gr_error(GR_ERR_INVALID_ARG, "allgatherv: rank %d sends %lld bytes, counts say %lld", m->rank,
                    (long long)send_bytes, (long long)counts[m->rank]);
  gr_status s = publish(g, m->rank, send);
  int64_t off = 0;
  for (int q = 0; s == GR_OK && q < g->n; ++q) {
    if (counts[q] > 0 && (unsigned char *)recv + off != g->slot[q])
      memcpy((unsigned char *)recv + off, g->slot[q], (size_t)counts[q]);
    off += counts[q];
  }
  if (s == GR_OK) s = publish_end(g);
  return s;
}

static gr_status grp_exchange_start(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs,
                                    int nrecv, gr_comm_pending **out) {
  member *m = mem_of(c);
  group *g = m->g;
  *out = NULL;
  gr_comm_pending *p = malloc(sizeof *p + (size_t)(nrecv > 0 ? nrecv : 1) * sizeof(gr_comm_msg));
  if (!p) return gr_error(GR_ERR_NOMEM, "exchange: pending descriptor");
  p->nrecv = nrecv;
  if (nrecv > 0) memcpy(p->recvs, recvs, (size_t)nrecv * sizeof *recvs);
  /* Copy the payloads outside the lock, then link them in posting order. */
  group_msg **msgs = nsend > 0 ? calloc((size_t)nsend, sizeof *msgs) : NULL;
  if (nsend > 0 && !msgs) {
    free(p);
    return gr_error(GR_ERR_NOMEM, "exchange: message list");
  }
  for (int k = 0; k < nsend; ++k) {
    msgs[k] = malloc(sizeof(group_msg) + (size_t)sends[k].bytes);
    if (!msgs[k]) {
      for (int q = 0; q < k; ++q) free(msgs[q]);
      free(msgs);
      free(p);
      return gr_error(GR_ERR_NOMEM, "exchange: %lld-byte message", (long long)sends[k].bytes);
    }
    msgs[k]->src = m->rank;
    msgs[k]->tag = sends[k].tag;
    msgs[k]->bytes = sends[k].bytes;
    msgs[k]->next = NULL;
    /* device buffers (c->mem set: a sharded run on a device backend) are copied with c->mem */
    const gr_status cs =
        sends[k].bytes > 0 ? gr_comm_copy(c->mem, msgs[k]->data, sends[k].buf, (size_t)sends[k].bytes) : GR_OK;
    if (cs != GR_OK) {
      for (int q = 0; q <= k; ++q) free(msgs[q]);
      free(msgs);
      free(p);
      return cs;
    }
  }
  pthread_mutex_lock(&g->mu);
  for (int k = 0; k < nsend; ++k) {
    group_msg **tail = &g->mail[sends[k].peer];
    while (*tail) tail = &(*tail)->next;
    *tail = msgs[k];
  }
  if (nsend > 0) pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  free(msgs);
  *out = p;
  return GR_OK;
}

static gr_status grp_exchange_wait(gr_comm *c, gr_comm_pending *p) {
  if (!p) return GR_OK;
  member *m = mem_of(c);
  group *g = m->g;
  gr_status s = GR_OK;
  for (int r = 0; r < p->nrecv && s == GR_OK; ++r) {
    const gr_comm_msg *want = &p->recvs[r];
    group_msg *got = NULL;
    pthread_mutex_lock(&g->mu);
    for (;;) {
      group_msg **pp = &g->mail[m->rank];
      while (*pp && !((*pp)->src == want->peer && (*pp)->tag == want->tag)) pp = &(*pp)->next;
      if (*pp) {
        got = *pp;
        *pp = got->next; /* unlink: this receive owns it now */
        break;
      }
      if (g->aborted) {
        s = aborted_error(g);
        break;
      }
      pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    if (got) {
      if (got->bytes != want->bytes)
        s = gr_error(GR_ERR_COMM, "exchange: rank %d sent %lld bytes with tag %d, rank %d expected %lld", got->src,
                     (long long)got->bytes, got->tag, m->rank, (long long)want->bytes);
      else if (got->bytes > 0)
        s = gr_comm_copy(c->mem, want->buf, got->data, (size_t)got->bytes);
      free(got);
    }
  }
  free(p);
  return s;
}

static void grp_abort(gr_comm *c, gr_status s, const char *msg) {
  member *m = mem_of(c);
  group *g = m->g;
  pthread_mutex_lock(&g->mu);
  if (!g->aborted) {
    g->aborted = 1;
    g->abort_rank = m->rank;
    g->abort_status = s;
    snprintf(g->abort_msg, sizeof g->abort_msg, "%s", msg ? msg : "");
  }
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

static void group_free(group *g) {
  for (int q = 0; q < g->n; ++q) {
    group_msg *x = g->mail[q];
    while (x) {
      group_msg *nx = x->next;
      free(x);
      x = nx;
    }
  }
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g->slot);
  free(g->mail);
  free(g);
}

static void grp_destroy(gr_comm *c) {
  member *m = mem_of(c);
  group *g = m->g;
  pthread_mutex_lock(&g->mu);
  const int last = --g->members_alive == 0;
  pthread_mutex_unlock(&g->mu);
  free(m);
  if (last) group_free(g);
}

static const gr_comm_ops group_ops = {
  "local-group", grp_rank, grp_size, grp_sum_f64, grp_max_f64, grp_sum_i64, grp_bcast, grp_destroy,
  grp_allgatherv, grp_exchange_start, grp_exchange_wait, grp_barrier, grp_abort,
};

gr_status gr_comm_local_group_create(int nshards, gr_comm **out) {
  if (nshards < 1 || nshards > 4096)
    return gr_error(GR_ERR_INVALID_ARG, "local group: %d shards (must be 1..4096)", nshards);
  group *g = calloc(1, sizeof *g);
  if (!g) return gr_error(GR_ERR_NOMEM, "local group allocation failed");
  g->n = nshards;
  g->slot = calloc((size_t)nshards, sizeof *g->slot);
  g->mail = calloc((size_t)nshards, sizeof *g->mail);
  if (!g->slot || !g->mail) {
    free(g->slot);
    free(g->mail);
    free(g);
    return gr_error(GR_ERR_NOMEM, "local group allocation failed");
  }
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  for (int k = 0; k < nshards; ++k) {
    member *m = calloc(1, sizeof *m);
    if (!m) {
      for (int q = 0; q < k; ++q) free(out[q]->impl);
      group_free(g);
      return gr_error(GR_ERR_NOMEM, "local group allocation failed");
    }
    m->g = g;
    m->rank = k;
    m->comm.ops = &group_ops;
    m->comm.impl = m;
    out[k] = &m->comm;
  }
  g->members_alive = nshards;
  return GR_OK;
}

/* ---- running a group on threads ----------------------------------------------- */
#include "gigareg/grid_parallel.h"

typedef struct shard_run {
  gr_comm *comm;
  gr_status (*fn)(gr_comm *c, void *user);
  void *user;
  gr_status status;
  char msg[512]; /* gr_last_error is per thread: copied out for the caller */
} shard_run;

static void *shard_main(void *arg) {
  shard_run *r = arg;
  r->status = r->fn(r->comm, r->user);
  if (r->status != GR_OK) {
    snprintf(r->msg, sizeof r->msg, "%s", gr_last_error());
    gr_comm_abort(r->comm, r->status, r->msg); /* wake the shards waiting for this one */
  }
  return NULL;
}

gr_status gr_comm_local_group_run(int nshards, gr_status (*fn)(gr_comm *c, void *user), void *user) {
  if (!fn) return gr_error(GR_ERR_INVALID_ARG, "gr_comm_local_group_run: NULL function");
  gr_comm **comms = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *comms);
  shard_run *runs = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *runs);
  pthread_t *th = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *th);
  if (!comms || !runs || !th) {
    free(comms);
    free(runs);
    free(th);
    return gr_error(GR_ERR_NOMEM, "local group: %d shards", nshards);
  }
  gr_status s = gr_comm_local_group_create(nshards, comms);
  int started = 0;
  for (int k = 0; s == GR_OK && k < nshards; ++k) {
    runs[k].comm = comms[k];
    runs[k].fn = fn;
    runs[k].user = user;
    if (pthread_create(&th[k], NULL, shard_main, &runs[k]) != 0) {
      s = gr_error(GR_ERR_INTERNAL, "local group: cannot start thread %d of %d", k, nshards);
      gr_comm_abort(comms[0], s, "thread creation failed");
      break;
    }
    started++;
  }
  for (int k = 0; k < started; ++k) pthread_join(th[k], NULL);
  /* Report the root cause: the first shard that failed on its own rather
   * than because another shard aborted the group. */
  int pick = -1;
  for (int k = 0; k < started; ++k)
    if (runs[k].status != GR_OK && (pick < 0 || (runs[pick].status == GR_ERR_COMM && runs[k].status != GR_ERR_COMM)))
      pick = k;
  if (s == GR_OK && pick >= 0) s = gr_error(runs[pick].status, "%s", runs[pick].msg);
  if (comms[0])
    for (int k = 0; k < nshards; ++k) gr_comm_destroy(comms[k]);
  free(comms);
  free(runs);
  free(th);
  return s;
}
