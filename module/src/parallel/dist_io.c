/* Distributed image I/O over the comm seam: slab reads (or rank 0 reading and
 * scattering), slab writes at offsets into one file (or a gather to rank 0
 * for formats that cannot be written at offsets). Every error is agreed, so
 * all ranks fail together with the failing rank's message, and no partial
 * output survives (temporary name, renamed by rank 0 last). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/io.h"
#include "parallel/gp.h"

gr_status gr_read_image_slab(gr_comm *c, const char *path, gr_image **slab, gr_geometry *whole, int *scattered) {
  if (scattered) *scattered = 0;
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  *slab = NULL;
  gr_geometry g;
  int ncomp = 0;
  gr_pixel_type type = GR_PIXEL_UNKNOWN;
  gr_status s = gr_image_read_header(path, &g, &ncomp, &type);
  s = gr_comm_agree_msg(c, s);
  if (s != GR_OK) return s;
  if (g.size[2] < P)
    return gr_error(GR_ERR_UNSUPPORTED, "'%s' has %lld planes, fewer than the %d ranks", path, (long long)g.size[2], P);
  int64_t z0, z1;
  gr_decomp_slab(g.size[2], P, me, &z0, &z1);
  if (whole) *whole = g;
  s = gr_image_read_slab(path, z0, z1, slab, NULL);
  /* Every rank tried the same file type: UNSUPPORTED (compressed) everywhere or nowhere. */
  double unsup = s == GR_ERR_UNSUPPORTED ? 1.0 : 0.0;
  if (c->ops->allreduce_max_f64(c, &unsup, 1) != GR_OK) return GR_ERR_COMM;
  if (unsup == 0.0) {
    s = gr_comm_agree_msg(c, s);
    if (s != GR_OK) {
      gr_image_destroy(*slab);
      *slab = NULL;
    }
    return s;
  }
  gr_image_destroy(*slab);
  *slab = NULL;
  gr_clear_error();
  s = GR_OK;
  /* Rank 0 reads the whole file and sends every rank its planes. */
  gr_image *all = NULL;
  if (scattered) *scattered = 1;
  if (me == 0) {
    s = gr_image_read(path, &all);
    if (s == GR_OK && (all->ncomp != ncomp || !gr_geometry_same(&all->geom, &g)))
      s = gr_error(GR_ERR_FORMAT, "'%s' changed while it was read", path);
  }
  s = gr_comm_agree_msg(c, s);
  gr_geometry sg;
  gr_geometry_slab(&g, z0, z1, &sg);
  if (s == GR_OK) s = gr_image_create(&sg, ncomp, slab);
  s = gr_comm_agree_msg(c, s);
  if (s == GR_OK) {
    const int64_t nxy = g.size[0] * g.size[1], nvox = gr_geometry_nvox(&g), m = (z1 - z0) * nxy;
    gr_comm_msg *sends = me == 0 ? malloc(sizeof *sends * (size_t)P * (size_t)ncomp) : NULL;
    gr_comm_msg recvs[3];
    int ns = 0, nr = 0;
    if (me == 0 && !sends) s = gr_error(GR_ERR_NOMEM, "scatter: message list");
    for (int q = 1; q < P && me == 0 && sends; ++q) {
      int64_t q0, q1;
      gr_decomp_slab(g.size[2], P, q, &q0, &q1);
      for (int k = 0; k < ncomp; ++k)
        sends[ns++] = (gr_comm_msg){q, GR_TAG_SCATTER + k, all->data + k * nvox + q0 * nxy,
                                    (q1 - q0) * nxy * (int64_t)sizeof(float)};
    }
    if (me == 0 && sends) {
      for (int k = 0; k < ncomp; ++k)
        memcpy((*slab)->data + k * m, all->data + k * nvox + z0 * nxy, sizeof(float) * (size_t)m);
      (*slab)->src_type = all->src_type;
    } else if (me != 0) {
      for (int k = 0; k < ncomp; ++k)
        recvs[nr++] = (gr_comm_msg){0, GR_TAG_SCATTER + k, (*slab)->data + k * m, m * (int64_t)sizeof(float)};
      (*slab)->src_type = type;
    }
    if (s == GR_OK) s = gr_comm_exchange(c, sends, ns, recvs, nr);
    free(sends);
  }
  gr_image_destroy(all);
  s = gr_comm_agree_msg(c, s);
  if (s != GR_OK) {
    gr_image_destroy(*slab);
    *slab = NULL;
  }
  return s;
}

gr_status gr_write_image_slabs(gr_comm *c, const char *path, const gr_geometry *whole, const gr_image *slab,
                               gr_pixel_type t) {
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  int64_t z0, z1;
  gr_decomp_slab(whole->size[2], P, me, &z0, &z1);
  gr_status s = slab->geom.size[2] == z1 - z0 ? GR_OK
                                               : gr_error(GR_ERR_MISMATCH, "rank %d: slab of %lld planes, expected %lld",
                                                          me, (long long)slab->geom.size[2], (long long)(z1 - z0));
  s = gr_comm_agree_msg(c, s);
  if (s != GR_OK) return s;
  if (!gr_slab_file_supported(path)) {
    /* Whole-file formats (compressed): gather on every rank, rank 0 writes. */
    gr_image *all = NULL;
    gr_grid g;
    s = gr_grid_from_geometry(whole, &g);
    if (s == GR_OK) s = gr_image_create(whole, slab->ncomp, &all);
    if (s == GR_OK) s = gr_gather_slabs(c, &g, slab->data, slab->ncomp, gr_image_nvox(slab), all->data);
    if (s == GR_OK && me == 0) {
      all->src_type = slab->src_type;
      s = gr_image_write(path, all, t);
    }
    gr_image_destroy(all);
    return gr_comm_agree_msg(c, s);
  }
  const size_t n = strlen(path) + 16;
  char *tmp = malloc(n);
  if (!tmp) return gr_error(GR_ERR_NOMEM, "slab write: path");
  snprintf(tmp, n, "%s.gp-tmp", path);
  s = me == 0 ? gr_slab_file_create(tmp, path, whole, slab->ncomp, t) : GR_OK;
  s = gr_comm_agree_msg(c, s); /* the file exists at full size before anyone writes */
  if (s == GR_OK) s = gr_slab_file_write(tmp, path, whole, slab, z0, t);
  s = gr_comm_agree_msg(c, s);
  if (me == 0) {
    if (s == GR_OK && rename(tmp, path) != 0) s = gr_error(GR_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
    if (s != GR_OK) remove(tmp);
  }
  s = gr_comm_agree_msg(c, s);
  free(tmp);
  return s;
}
