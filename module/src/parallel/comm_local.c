#include <stdlib.h>
#include "gigareg/comm.h"

/* One rank: every reduction is the identity. */
static int local_rank(const gr_comm *c) { (void)c; return 0; }
static int local_size(const gr_comm *c) { (void)c; return 1; }
static gr_status local_sum_f64(gr_comm *c, double *x, int n) { (void)c; (void)x; (void)n; return GR_OK; }
static gr_status local_max_f64(gr_comm *c, double *x, int n) { (void)c; (void)x; (void)n; return GR_OK; }
static gr_status local_sum_i64(gr_comm *c, int64_t *x, int n) { (void)c; (void)x; (void)n; return GR_OK; }
static gr_status local_bcast(gr_comm *c, void *b, int64_t n, int root) { (void)c; (void)b; (void)n; (void)root; return GR_OK; }
static void local_destroy(gr_comm *c) { free(c); }

static const gr_comm_ops local_ops = {
  "local", local_rank, local_size, local_sum_f64, local_max_f64, local_sum_i64, local_bcast, local_destroy,
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
