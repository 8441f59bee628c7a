#include <stdlib.h>
#include <string.h>
#include "gigareg/comm.h"

/* One rank: every reduction is the identity. */
static int local_rank(const gr_comm *c) { (void)c; return 0; }
static int local_size(const gr_comm *c) { (void)c; return 1; }
static gr_status local_sum_f64(gr_comm *c, double *x, int n) { (void)c; (void)x; (void)n; return GR_OK; }
static gr_status local_max_f64(gr_comm *c, double *x, int n) { (void)c; (void)x; (void)n; return GR_OK; }
static gr_status local_sum_i64(gr_comm *c, int64_t *x, int n) { (void)c; (void)x; (void)n; return GR_OK; }
static gr_status local_bcast(gr_comm *c, void *b, int64_t n, int root) { (void)c; (void)b; (void)n; (void)root; return GR_OK; }
static void local_destroy(gr_comm *c) { free(c); }

static gr_status local_allgatherv(gr_comm *c, const void *send, int64_t bytes, void *recv, const int64_t *counts) {
  (void)c;
  if (counts[0] != bytes) return gr_error(GR_ERR_INVALID_ARG, "allgatherv: %lld bytes sent, %lld expected", (long long)bytes, (long long)counts[0]);
  if (bytes > 0 && recv != send) memmove(recv, send, (size_t)bytes);
  return GR_OK;
}

/* The only possible peer is rank 0 itself: match sends to receives by tag, in order. */
static gr_status local_exchange_start(gr_comm *c, const gr_comm_msg *sends, int nsend, const gr_comm_msg *recvs,
                                      int nrecv, gr_comm_pending **out) {
  (void)c;
  *out = NULL;
  for (int r = 0; r < nrecv; ++r) {
    int found = 0;
    for (int k = 0, seen = 0; k < nsend && !found; ++k) {
      if (sends[k].tag != recvs[r].tag || sends[k].peer != 0) continue;
      int earlier = 0; /* receives before r with the same tag consume earlier sends */
      for (int q = 0; q < r; ++q) earlier += recvs[q].tag == recvs[r].tag;
      if (seen++ < earlier) continue;
      if (sends[k].bytes != recvs[r].bytes)
        return gr_error(GR_ERR_COMM, "local exchange: %lld bytes sent, %lld expected (tag %d)",
                        (long long)sends[k].bytes, (long long)recvs[r].bytes, recvs[r].tag);
      if (recvs[r].bytes > 0) memmove(recvs[r].buf, sends[k].buf, (size_t)recvs[r].bytes);
      found = 1;
    }
    if (!found || recvs[r].peer != 0)
      return gr_error(GR_ERR_COMM, "local exchange: receive from rank %d (tag %d) has no matching send", recvs[r].peer,
                      recvs[r].tag);
  }
  return GR_OK;
}

static gr_status local_exchange_wait(gr_comm *c, gr_comm_pending *p) { (void)c; (void)p; return GR_OK; }
static gr_status local_barrier(gr_comm *c) { (void)c; return GR_OK; }
static void local_abort(gr_comm *c, gr_status s, const char *msg) { (void)c; (void)s; (void)msg; }

static const gr_comm_ops local_ops = {
  "local", local_rank, local_size, local_sum_f64, local_max_f64, local_sum_i64, local_bcast, local_destroy,
  local_allgatherv, local_exchange_start, local_exchange_wait, local_barrier, local_abort,
};

gr_status gr_comm_local_create(gr_comm **out) {
  gr_comm *c = calloc(1, sizeof *c);
  if (!c) return gr_error(GR_ERR_NOMEM, "communicator allocation failed");
  c->ops = &local_ops;
  *out = c;
  return GR_OK;
}

void gr_comm_destroy(gr_comm *c) {
  if (c) c->ops->destroy(c);
}
