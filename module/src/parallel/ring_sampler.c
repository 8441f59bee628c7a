/* Ring sampler: the moving image (or any z-sharded input: a field, a coarser
 * level) evaluated at points that may fall in any rank's slab.
 *
 * Every rank holds one slab of the input (no halo) and a window of points (its
 * fixed planes plus halo). Step 0 samples the own slab; step k = 1..P-1 samples
 * the slab of rank r-k. A bounding-box pre-pass (sample_slab in bounds mode,
 * exact: it runs the stencil rule over all points without reading data) gives
 * each rank the range of input planes its points touch; the ranges are
 * all-gathered, so at step k rank r sends rank r+k exactly the planes of its
 * slab that rank needs, and nothing when it needs none. After an affine
 * pre-alignment most pairs need nothing (a slab's points read the moving
 * planes around the same z), so most steps carry no data at all; with a large
 * deformation only the slabs the points really reach move.
 *
 * This is a shift schedule rather than store-and-forward around a ring: the
 * owner sends straight to the rank that needs its planes. The per-step volume
 * is the same as forwarding whole slabs (one slab in, one out per rank), but
 * the bounding box can trim every transfer, and no rank forwards data it does
 * not need. Transfers are double-buffered: step k+1's messages are in flight
 * while step k's slab is sampled.
 *
 * Gradient contributions stay local: the values and index gradients land in
 * this rank's point arrays (its own fixed voxels), which the metric turns into
 * this rank's part of d loss / d u. Nothing flows back to the slab owners. */
#include <stdlib.h>
#include <string.h>
#include "parallel/gp.h"

typedef struct ring_step {
  int src, dst;
  int64_t recv_a, recv_b; /* planes of src's slab received */
  int64_t send_a, send_b; /* planes of my slab sent to dst */
} ring_step;

static void slab_of(const gr_ring_image *in, int P, int q, int64_t *z0, int64_t *z1) {
  gr_decomp_slab(in->grid->n[2], P, q, z0, z1);
}

static gr_status post_step(gr_comm *c, const gr_ring_image *in, const ring_step *st, int64_t my0, int64_t nxy,
                           float *buf, gr_comm_pending **p) {
  gr_comm_msg sends[3], recvs[3];
  int ns = 0, nr = 0;
  const int64_t rplanes = st->recv_b - st->recv_a, splanes = st->send_b - st->send_a;
  for (int k = 0; k < in->ncomp; ++k) {
    if (rplanes > 0)
      recvs[nr++] = (gr_comm_msg){st->src, GR_TAG_RING + k, buf + (int64_t)k * rplanes * nxy,
                                  rplanes * nxy * (int64_t)sizeof(float)};
    if (splanes > 0)
      sends[ns++] = (gr_comm_msg){st->dst, GR_TAG_RING + k,
                                  (void *)(in->data + k * in->comp_stride + (st->send_a - my0) * nxy),
                                  splanes * nxy * (int64_t)sizeof(float)};
  }
  return gr_comm_exchange_start(c, sends, ns, recvs, nr, p);
}

gr_status gr_ring_sample(gr_backend *be, gr_comm *c, const gr_ring_image *in, gr_slab_sample *pts,
                         gr_ring_stats *stats) {
  if (!be->ops->sample_slab)
    return gr_error(GR_ERR_UNSUPPORTED, "backend '%s' has no sample_slab: sharded registration needs it",
                    be->ops->name);
  if (in->ncomp < 1 || in->ncomp > 3) return gr_error(GR_ERR_INVALID_ARG, "ring sampler: %d components", in->ncomp);
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  const int64_t nxy = in->grid->n[0] * in->grid->n[1];
  const int64_t npts = pts->out_grid->n[0] * pts->out_grid->n[1] * pts->out_nz;
  if (stats) memset(stats, 0, sizeof *stats);

  /* Pre-pass: which input planes do my points touch? */
  gr_slab_sample b = *pts;
  b.acc = b.acc_grad = NULL;
  b.out = NULL;
  b.in_grid = in->grid;
  gr_status s = be->ops->sample_slab(be, &b);
  if (s != GR_OK) return s;
  int64_t mine[2] = {b.need_z0, b.need_z1};
  int64_t *need = malloc(sizeof(int64_t) * 2 * (size_t)P);
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)P);
  ring_step *steps = malloc(sizeof(ring_step) * (size_t)P);
  if (!need || !counts || !steps) {
    free(need);
    free(counts);
    free(steps);
    return gr_error(GR_ERR_NOMEM, "ring sampler: %d ranks", P);
  }
  for (int q = 0; q < P; ++q) counts[q] = 2 * (int64_t)sizeof(int64_t);
  s = gr_comm_allgatherv(c, mine, counts[me], need, counts);

  int64_t my0, my1;
  slab_of(in, P, me, &my0, &my1);
  int64_t maxrecv = 0;
  for (int k = 1; s == GR_OK && k < P; ++k) {
    ring_step *st = &steps[k];
    st->src = (me - k + P) % P;
    st->dst = (me + k) % P;
    int64_t s0, s1;
    slab_of(in, P, st->src, &s0, &s1);
    st->recv_a = mine[0] > s0 ? mine[0] : s0;
    st->recv_b = mine[1] < s1 ? mine[1] : s1;
    if (st->recv_b < st->recv_a) st->recv_b = st->recv_a;
    st->send_a = need[2 * st->dst] > my0 ? need[2 * st->dst] : my0;
    st->send_b = need[2 * st->dst + 1] < my1 ? need[2 * st->dst + 1] : my1;
    if (st->send_b < st->send_a) st->send_b = st->send_a;
    const int64_t r = (st->recv_b - st->recv_a) * nxy * in->ncomp;
    if (r > maxrecv) maxrecv = r;
  }
  free(need);
  free(counts);

  float *buf[2] = {NULL, NULL};
  if (s == GR_OK && maxrecv > 0) {
    for (int k = 0; k < 2 && s == GR_OK; ++k) {
      buf[k] = be->ops->alloc(be, (size_t)maxrecv * sizeof(float));
      if (!buf[k]) s = GR_ERR_NOMEM;
    }
  }
  /* Zero the accumulators (double: the sums are rounded once, by the caller).
   * They are backend memory (device memory for CUDA): zeroed through the
   * backend's fill, as 2 floats of +0.0f (all-zero bits) per double. */
  if (s == GR_OK) s = be->ops->fill(be, (float *)pts->acc, 0.0f, 2 * npts * in->ncomp);
  if (s == GR_OK && pts->acc_grad) s = be->ops->fill(be, (float *)pts->acc_grad, 0.0f, 2 * npts * 3);
  pts->in_grid = in->grid;
  pts->ncomp = in->ncomp;

  gr_comm_pending *pend[2] = {NULL, NULL};
  if (s == GR_OK && P > 1) s = post_step(c, in, &steps[1], my0, nxy, buf[1 % 2], &pend[1 % 2]);
  /* Step 0, overlapping step 1's transfer: my own slab. */
  if (s == GR_OK && mine[1] > my0 && mine[0] < my1) {
    pts->in_z0 = my0;
    pts->in_nz = my1 - my0;
    pts->in = in->data;
    pts->in_comp_stride = in->comp_stride;
    s = be->ops->sample_slab(be, pts);
    if (stats) stats->steps_used++;
  }
  for (int k = 1; k < P; ++k) {
    const int cur = k % 2;
    const gr_status w = gr_comm_exchange_wait(c, pend[cur]); /* always: buffers must not be freed in flight */
    pend[cur] = NULL;
    if (s == GR_OK) s = w;
    if (s == GR_OK && k + 1 < P) s = post_step(c, in, &steps[k + 1], my0, nxy, buf[(k + 1) % 2], &pend[(k + 1) % 2]);
    const ring_step *st = &steps[k];
    const int64_t planes = st->recv_b - st->recv_a;
    if (s == GR_OK && planes > 0) {
      pts->in_z0 = st->recv_a;
      pts->in_nz = planes;
      pts->in = buf[cur];
      pts->in_comp_stride = planes * nxy;
      s = be->ops->sample_slab(be, pts);
      if (stats) {
        stats->steps_used++;
        stats->bytes_received += planes * nxy * in->ncomp * (int64_t)sizeof(float);
      }
    } else if (stats) {
      stats->steps_skipped++;
    }
    if (s != GR_OK) break;
  }
  for (int k = 0; k < 2; ++k) {
    if (pend[k]) (void)gr_comm_exchange_wait(c, pend[k]);
    if (buf[k]) be->ops->free(be, buf[k]);
  }
  free(steps);
  return s;
}
