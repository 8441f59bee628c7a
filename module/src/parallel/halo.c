/* Halo exchange of slab-sharded arrays, and the small collectives built on the
 * decomposition (whole-image gathers, per-plane partial sums).
 *
 * A rank's halo planes are owned by the ranks next to it (or further away when
 * the halo is wider than a neighbour's slab: coarse pyramid levels), so each
 * rank posts, for every other rank, the one contiguous plane range it needs
 * from it and the one range that rank needs from its owned planes. Messages go
 * straight from and into the arrays (one per component plane block: the
 * structure-of-arrays layout keeps a z-range of one component contiguous). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "parallel/gp.h"

#define HALO_MAX_MSGS(P, ncomp) ((size_t)(P) * (size_t)(ncomp))

typedef struct range { int64_t a, b; } range;

static range overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
  range r = {a0 > b0 ? a0 : b0, a1 < b1 ? a1 : b1};
  if (r.b < r.a) r.b = r.a;
  return r;
}

gr_status gr_halo_start(gr_comm *c, const gr_shard *s, float *data, int ncomp, gr_comm_pending **p) {
  *p = NULL;
  const int P = s->nranks;
  if (P == 1 || s->halo == 0) return GR_OK;
  gr_comm_msg *msgs = malloc(2 * HALO_MAX_MSGS(P, ncomp) * sizeof *msgs);
  if (!msgs) return gr_error(GR_ERR_NOMEM, "halo exchange: message list");
  gr_comm_msg *sends = msgs, *recvs = msgs + HALO_MAX_MSGS(P, ncomp);
  int ns = 0, nr = 0;
  const int64_t nz = s->global.n[2];
  for (int q = 0; q < P; ++q) {
    if (q == s->rank) continue;
    int64_t q0, q1;
    gr_decomp_slab(nz, P, q, &q0, &q1);
    const int64_t qe0 = q0 - s->halo < 0 ? 0 : q0 - s->halo, qe1 = q1 + s->halo > nz ? nz : q1 + s->halo;
    const range in = overlap(s->ext0, s->ext1, q0, q1);     /* planes q owns that I store */
    const range out = overlap(qe0, qe1, s->own0, s->own1);  /* planes I own that q stores */
    for (int k = 0; k < ncomp; ++k) {
      float *base = data + (int64_t)k * s->nloc;
      if (in.b > in.a)
        recvs[nr++] = (gr_comm_msg){q, GR_TAG_HALO + k, base + (in.a - s->ext0) * s->nxy,
                                    (in.b - in.a) * s->nxy * (int64_t)sizeof(float)};
      if (out.b > out.a)
        sends[ns++] = (gr_comm_msg){q, GR_TAG_HALO + k, base + (out.a - s->ext0) * s->nxy,
                                    (out.b - out.a) * s->nxy * (int64_t)sizeof(float)};
    }
  }
  const gr_status st = gr_comm_exchange_start(c, sends, ns, recvs, nr, p);
  free(msgs);
  return st;
}

gr_status gr_halo_finish(gr_comm *c, gr_comm_pending *p) { return gr_comm_exchange_wait(c, p); }

gr_status gr_halo_exchange(gr_comm *c, const gr_shard *s, float *data, int ncomp) {
  gr_comm_pending *p = NULL;
  const gr_status st = gr_halo_start(c, s, data, ncomp, &p);
  if (st != GR_OK) return st;
  return gr_halo_finish(c, p);
}

/* The x and y passes of planes [z0, z1) of the stored block (per component:
 * a window's component planes are not contiguous). x and y lines lie inside
 * one plane, so these passes need no halo. */
static gr_status smooth_xy_planes(gr_backend *be, const gr_shard *s, float *data, int ncomp, int64_t z0, int64_t z1,
                                  const double sigma_vox[3]) {
  if (z1 <= z0 || (!(sigma_vox[0] > 0.0) && !(sigma_vox[1] > 0.0))) return GR_OK;
  gr_grid g = s->local; /* smooth only reads sizes */
  g.n[2] = z1 - z0;
  const double sxy[3] = {sigma_vox[0], sigma_vox[1], 0.0};
  gr_status st = GR_OK;
  for (int k = 0; k < ncomp && st == GR_OK; ++k)
    st = be->ops->smooth(be, &g, data + (int64_t)k * s->nloc + (z0 - s->ext0) * s->nxy, 1, sxy);
  return st;
}

/* Overlapped: the owned planes other ranks store (the first and last `halo`
 * owned planes) are smoothed in x and y first and sent; the interior owned
 * planes are smoothed in x and y while the messages travel; the halo then
 * holds the owners' x,y-smoothed planes, exactly what a whole-grid x,y pass
 * gives there, and the z pass runs on the stored block. The separable passes
 * round to float after each axis (backend.h), so splitting them this way is
 * bitwise the single call. */
gr_status gr_shard_smooth(gr_backend *be, gr_comm *c, const gr_shard *s, float *data, int ncomp,
                          const double sigma_vox[3]) {
  const int64_t need = (int64_t)ceil(3.0 * sigma_vox[2]);
  if (s->nranks > 1 && need > s->halo && s->ext1 - s->ext0 < s->global.n[2])
    return gr_error(GR_ERR_INTERNAL, "sharded smoothing: halo %d < Gaussian support %lld planes", s->halo,
                    (long long)need);
  if (s->nranks == 1 || s->halo == 0) return be->ops->smooth(be, &s->local, data, ncomp, sigma_vox);
  const int64_t e0 = s->own0 + s->halo < s->own1 ? s->own0 + s->halo : s->own1;
  const int64_t e1 = s->own1 - s->halo > e0 ? s->own1 - s->halo : e0;
  gr_status st = smooth_xy_planes(be, s, data, ncomp, s->own0, e0, sigma_vox);
  if (st == GR_OK) st = smooth_xy_planes(be, s, data, ncomp, e1, s->own1, sigma_vox);
  gr_comm_pending *p = NULL;
  if (st == GR_OK) st = gr_halo_start(c, s, data, ncomp, &p);
  if (st == GR_OK) {
    st = smooth_xy_planes(be, s, data, ncomp, e0, e1, sigma_vox); /* overlapped with the transfers */
    const gr_status w = gr_halo_finish(c, p);
    if (st == GR_OK) st = w;
  }
  const double sz[3] = {0.0, 0.0, sigma_vox[2]};
  if (st == GR_OK && sigma_vox[2] > 0.0) st = be->ops->smooth(be, &s->local, data, ncomp, sz);
  if (st == GR_OK) st = gr_halo_exchange(c, s, data, ncomp);
  return st;
}

gr_status gr_gather_slabs(gr_comm *c, const gr_grid *g, const float *own, int ncomp, int64_t comp_stride, float *out) {
  const int P = gr_comm_size(c);
  const int64_t nxy = g->n[0] * g->n[1], nvox = nxy * g->n[2];
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)P);
  if (!counts) return gr_error(GR_ERR_NOMEM, "gather: counts");
  for (int q = 0; q < P; ++q) {
    int64_t z0, z1;
    gr_decomp_slab(g->n[2], P, q, &z0, &z1);
    counts[q] = (z1 - z0) * nxy * (int64_t)sizeof(float);
  }
  gr_status st = GR_OK;
  /* Rank order is plane order: each component's slabs land contiguously. */
  for (int k = 0; k < ncomp && st == GR_OK; ++k)
    st = gr_comm_allgatherv(c, own + k * comp_stride, counts[gr_comm_rank(c)], out + k * nvox, counts);
  free(counts);
  return st;
}

gr_status gr_sum_plane_partials(gr_comm *c, int64_t nz, const double *mine, int K, double *tot) {
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  int64_t *counts = malloc(sizeof(int64_t) * (size_t)P);
  double *all = malloc(sizeof(double) * (size_t)(nz > 0 ? nz : 1) * (size_t)K);
  if (!counts || !all) {
    free(counts);
    free(all);
    return gr_error(GR_ERR_NOMEM, "plane partials: %lld planes", (long long)nz);
  }
  for (int q = 0; q < P; ++q) {
    int64_t z0, z1;
    gr_decomp_slab(nz, P, q, &z0, &z1);
    counts[q] = (z1 - z0) * K * (int64_t)sizeof(double);
  }
  gr_status st = gr_comm_allgatherv(c, mine, counts[me], all, counts);
  if (st == GR_OK) {
    /* 0.0 + plane 0 + plane 1 + ...: the order of the single-process kernels. */
    for (int q = 0; q < K; ++q) tot[q] = 0.0;
    for (int64_t z = 0; z < nz; ++z)
      for (int q = 0; q < K; ++q) tot[q] += all[z * K + q];
  }
  free(counts);
  free(all);
  return st;
}
