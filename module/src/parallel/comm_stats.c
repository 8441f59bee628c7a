/* A communicator that forwards every call to another one and counts what
 * passes: point-to-point bytes and messages (halo exchanges, ring-sampler
 * slabs), collective bytes, and the wall time the calling rank spends inside
 * the calls. Time inside exchange_start + exchange_wait is communication the
 * rank did not hide behind computation (it also holds the device
 * synchronisation a device-buffer exchange needs); bytes / link bandwidth
 * minus that time is what the overlap hid. Used by `gigareg -comm-stats` and
 * bench/gp_scaling. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "parallel/gp.h"

static double wall_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct stats_impl {
  gr_comm *inner;
  int owns_inner;
  double t0; /* creation */
  gr_comm_stats st;
} stats_impl;

static stats_impl *impl(const gr_comm *c) { return (stats_impl *)c->impl; }
static gr_comm *inner(gr_comm *c) {
  gr_comm *in = impl(c)->inner;
  in->mem = c->mem; /* gr_register sets the device-memory handler on the outer communicator */
  return in;
}

static int s_rank(const gr_comm *c) { return gr_comm_rank(impl(c)->inner); }
static int s_size(const gr_comm *c) { return gr_comm_size(impl(c)->inner); }

static gr_status coll_done(gr_comm *c, int64_t bytes, double t0, gr_status s) {
  stats_impl *k = impl(c);
  k->st.coll_bytes += bytes;
  k->st.coll_calls += 1;
  k->st.coll_seconds += wall_seconds() - t0;
  return s;
}
static gr_status s_sum_f64(gr_comm *c, double *x, int n) {
  const double t0 = wall_seconds();
  return coll_done(c, 8 * (int64_t)n, t0, inner(c)->ops->allreduce_sum_f64(inner(c), x, n));
}
static gr_status s_max_f64(gr_comm *c, double *x, int n) {
  const double t0 = wall_seconds();
  return coll_done(c, 8 * (int64_t)n, t0, inner(c)->ops->allreduce_max_f64(inner(c), x, n));
}
static gr_status s_sum_i64(gr_comm *c, int64_t *x, int n) {
  const double t0 = wall_seconds();
  return coll_done(c, 8 * (int64_t)n, t0, inner(c)->ops->allreduce_sum_i64(inner(c), x, n));
}
static gr_status s_bcast(gr_comm *c, void *buf, int64_t bytes, int root) {
  const double t0 = wall_seconds();
  const int64_t mine = gr_comm_rank(c) == root ? bytes : 0;
  return coll_done(c, mine, t0, inner(c)->ops->broadcast(inner(c), buf, bytes, root));
}
static gr_status s_allgatherv(gr_comm *c, const void *send, int64_t send_bytes, void *recv, const int64_t *counts) {
  const double t0 = wall_seconds();
  return coll_done(c, send_bytes, t0, gr_comm_allgatherv(inner(c), send, send_bytes, recv, counts));
}
static gr_status s_xstart(gr_comm *c, const gr_comm_msg *s, int ns, const gr_comm_msg *r, int nr,
                          gr_comm_pending **out) {
  stats_impl *k = impl(c);
  const double t0 = wall_seconds();
  for (int q = 0; q < ns; ++q) k->st.p2p_bytes += s[q].bytes;
  k->st.p2p_msgs += ns;
  const gr_status st = gr_comm_exchange_start(inner(c), s, ns, r, nr, out);
  k->st.p2p_seconds += wall_seconds() - t0;
  return st;
}
static gr_status s_xwait(gr_comm *c, gr_comm_pending *p) {
  const double t0 = wall_seconds();
  const gr_status st = gr_comm_exchange_wait(inner(c), p);
  impl(c)->st.p2p_seconds += wall_seconds() - t0;
  return st;
}
static gr_status s_barrier(gr_comm *c) {
  const double t0 = wall_seconds();
  return coll_done(c, 0, t0, gr_comm_barrier(inner(c)));
}
static void s_abort(gr_comm *c, gr_status s, const char *msg) { gr_comm_abort(inner(c), s, msg); }
static void s_destroy(gr_comm *c) {
  stats_impl *k = impl(c);
  if (k->owns_inner) gr_comm_destroy(k->inner);
  free(k);
  free(c);
}

static const gr_comm_ops stats_ops = {
    .name = "counting",
    .rank = s_rank,
    .size = s_size,
    .allreduce_sum_f64 = s_sum_f64,
    .allreduce_max_f64 = s_max_f64,
    .allreduce_sum_i64 = s_sum_i64,
    .broadcast = s_bcast,
    .destroy = s_destroy,
    .allgatherv = s_allgatherv,
    .exchange_start = s_xstart,
    .exchange_wait = s_xwait,
    .barrier = s_barrier,
    .abort = s_abort,
};

gr_status gr_comm_stats_create(gr_comm *in, int owns_inner, gr_comm **out) {
  *out = NULL;
  if (!in) return gr_error(GR_ERR_INVALID_ARG, "gr_comm_stats_create: NULL communicator");
  gr_comm *c = calloc(1, sizeof *c);
  stats_impl *k = calloc(1, sizeof *k);
  if (!c || !k) {
    free(c);
    free(k);
    return gr_error(GR_ERR_NOMEM, "communicator allocation failed");
  }
  k->inner = in;
  k->owns_inner = owns_inner;
  k->t0 = wall_seconds();
  c->ops = &stats_ops;
  c->impl = k;
  c->mem = in->mem;
  *out = c;
  return GR_OK;
}

int gr_comm_stats_get(const gr_comm *c, gr_comm_stats *out) {
  memset(out, 0, sizeof *out);
  if (!c || c->ops != &stats_ops) return 0;
  *out = impl(c)->st;
  out->elapsed_seconds = wall_seconds() - impl(c)->t0;
  return 1;
}
