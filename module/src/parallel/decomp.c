/* Slab decomposition of a grid along z (the slowest axis): whole x-y planes per
 * rank, so x and y lines never cross ranks (separable filters, LNCC's x/y box
 * sums and row-ordered reductions stay local) and a rank's data are contiguous
 * in memory and in uncompressed files (offset reads). Halo widths per kernel
 * are documented in docs/grid-parallel.md. */
#include <string.h>
#include "parallel/gp.h"

void gr_decomp_slab(int64_t nz, int nranks, int rank, int64_t *z0, int64_t *z1) {
  /* floor(nz * r / P): contiguous, rank-ordered, sizes differ by at most one.
   * nz * P stays far below 2^63 for any real grid. */
  *z0 = nz * (int64_t)rank / (int64_t)nranks;
  *z1 = nz * (int64_t)(rank + 1) / (int64_t)nranks;
}

gr_status gr_shard_check_planes(const gr_grid *g, int nranks, const char *what) {
  if (g->n[2] < nranks)
    return gr_error(GR_ERR_UNSUPPORTED,
                    "%s has %lld planes along z, fewer than the %d ranks: every rank needs at least one plane "
                    "(use fewer ranks or fewer pyramid levels)",
                    what, (long long)g->n[2], nranks);
  return GR_OK;
}

gr_status gr_shard_init(const gr_grid *global, int nranks, int rank, int halo, gr_shard *s) {
  memset(s, 0, sizeof *s);
  if (nranks < 1 || rank < 0 || rank >= nranks || halo < 0)
    return gr_error(GR_ERR_INVALID_ARG, "shard: rank %d of %d, halo %d", rank, nranks, halo);
  s->global = *global;
  s->nranks = nranks;
  s->rank = rank;
  s->halo = halo;
  gr_decomp_slab(global->n[2], nranks, rank, &s->own0, &s->own1);
  if (s->own1 <= s->own0)
    return gr_error(GR_ERR_UNSUPPORTED, "shard: rank %d of %d owns no plane of a %lld-plane grid", rank, nranks,
                    (long long)global->n[2]);
  s->ext0 = s->own0 - halo < 0 ? 0 : s->own0 - halo;
  s->ext1 = s->own1 + halo > global->n[2] ? global->n[2] : s->own1 + halo;
  s->nxy = global->n[0] * global->n[1];
  s->nloc = s->nxy * (s->ext1 - s->ext0);
  s->nown = s->nxy * (s->own1 - s->own0);
  s->local = *global;
  s->local.n[2] = s->ext1 - s->ext0;
  /* Shifted maps describe the stored block on its own (plane 0 = global ext0). */
  for (int r = 0; r < 3; ++r) {
    s->local.i2p[r * 4 + 3] = global->i2p[r * 4 + 3] + global->i2p[r * 4 + 2] * (double)s->ext0;
  }
  s->local.p2i[2 * 4 + 3] = global->p2i[2 * 4 + 3] - (double)s->ext0;
  return GR_OK;
}
