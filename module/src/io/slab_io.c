/* Slab I/O for Grid Parallel: read planes [z0, z1) of an uncompressed image
 * with offset reads, and write one uncompressed file from several writers,
 * each its planes. The header parsers and writers of nifti.c and metaimage.c
 * supply the data layout (gr_*_layout) and the header bytes. Planes are
 * contiguous in both layouts (x fastest, z slowest; NIfTI keeps components
 * as whole volumes, MetaImage interleaves them per voxel), so a slab is one
 * read per component (NIfTI) or one read in all (MetaImage). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "io/io_internal.h"

static gr_status layout_of(const char *path, gr_raw_layout *lay) {
  switch (gr_format_from_path(path)) {
    case GR_FORMAT_NIFTI: return gr_nifti_layout(path, lay);
    case GR_FORMAT_META: return gr_meta_layout(path, lay);
    default: break;
  }
  memset(lay, 0, sizeof *lay);
  return gr_error(GR_ERR_UNSUPPORTED, "'%s': slab reads need uncompressed NIfTI (.nii) or MetaImage (.mha, .mhd)", path);
}

static gr_status read_at(FILE *f, const char *path, int64_t off, void *buf, size_t bytes) {
  if (fseeko(f, (off_t)off, SEEK_SET) != 0) return gr_error(GR_ERR_IO, "cannot seek in '%s': %s", path, strerror(errno));
  if (bytes && fread(buf, 1, bytes, f) != bytes)
    return gr_error(GR_ERR_FORMAT, "'%s' is truncated: %zu bytes at offset %lld could not be read", path, bytes,
                    (long long)off);
  return GR_OK;
}

gr_status gr_image_read_slab(const char *path, int64_t z0, int64_t z1, gr_image **out, gr_geometry *whole) {
  *out = NULL;
  gr_raw_layout lay;
  gr_status st = layout_of(path, &lay);
  if (st != GR_OK) return st;
  if (lay.compressed) {
    free(lay.data_path);
    return gr_error(GR_ERR_UNSUPPORTED, "'%s' is compressed: its planes cannot be read at offsets", path);
  }
  if (whole) *whole = lay.geom;
  if (z0 < 0 || z1 > lay.geom.size[2] || z1 <= z0) {
    free(lay.data_path);
    return gr_error(GR_ERR_INVALID_ARG, "'%s': planes [%lld, %lld) outside 0..%lld", path, (long long)z0, (long long)z1,
                    (long long)lay.geom.size[2]);
  }
  gr_geometry sg;
  gr_geometry_slab(&lay.geom, z0, z1, &sg);
  const size_t esize = gr_pixel_size(lay.type);
  const int64_t nxy = lay.geom.size[0] * lay.geom.size[1], nvox = nxy * lay.geom.size[2], m = nxy * (z1 - z0);
  st = gr_image_create(&sg, lay.ncomp, out);
  unsigned char *buf = st == GR_OK ? malloc((size_t)m * esize * (lay.planar ? 1 : (size_t)lay.ncomp)) : NULL;
  FILE *f = st == GR_OK ? fopen(lay.data_path, "rb") : NULL;
  if (st == GR_OK && !buf) st = gr_error(GR_ERR_NOMEM, "reading '%s': %lld voxels", path, (long long)m);
  if (st == GR_OK && !f) st = gr_error(GR_ERR_IO, "cannot open '%s': %s", lay.data_path, strerror(errno));
  if (st == GR_OK && lay.planar) {
    for (int c = 0; c < lay.ncomp && st == GR_OK; ++c) {
      st = read_at(f, lay.data_path, lay.offset + ((int64_t)c * nvox + z0 * nxy) * (int64_t)esize, buf, (size_t)m * esize);
      if (st == GR_OK) gr_convert_to_float(buf, lay.type, lay.swap, (size_t)m, 1, (*out)->data + c * m);
    }
  } else if (st == GR_OK) {
    st = read_at(f, lay.data_path, lay.offset + z0 * nxy * lay.ncomp * (int64_t)esize, buf,
                 (size_t)m * esize * (size_t)lay.ncomp);
    for (int c = 0; c < lay.ncomp && st == GR_OK; ++c)
      gr_convert_to_float(buf + (size_t)c * esize, lay.type, lay.swap, (size_t)m, (size_t)lay.ncomp, (*out)->data + c * m);
  }
  if (f) fclose(f);
  free(buf);
  free(lay.data_path);
  if (st == GR_OK) {
    (*out)->src_type = lay.type;
    if (lay.rescale) { /* as gr_nifti_read */
      const int64_t n = m * lay.ncomp;
      for (int64_t i = 0; i < n; ++i) (*out)->data[i] = (float)((double)(*out)->data[i] * lay.slope + lay.inter);
      (*out)->src_type = GR_PIXEL_F32;
    }
  } else {
    gr_image_destroy(*out);
    *out = NULL;
  }
  return st;
}

/* ---- writing in slabs ---------------------------------------------------------------- */

int gr_slab_file_supported(const char *p) {
  return gr_path_has_suffix(p, ".mha") || (gr_path_has_suffix(p, ".nii") && !gr_path_has_suffix(p, ".nii.gz"));
}

typedef struct slab_target {
  unsigned char header[4096];
  size_t header_len;
  int planar;
  gr_pixel_type t;
  size_t esize;
} slab_target;

static gr_status target_of(const char *final_path, const gr_geometry *whole, int ncomp, gr_pixel_type t,
                           slab_target *tg) {
  memset(tg, 0, sizeof *tg);
  tg->t = t == GR_PIXEL_UNKNOWN ? GR_PIXEL_F32 : t;
  tg->esize = gr_pixel_size(tg->t);
  if (!gr_slab_file_supported(final_path))
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': slab writes need an uncompressed .mha or .nii file", final_path);
  if (gr_path_has_suffix(final_path, ".mha")) {
    tg->planar = 0;
    return gr_meta_header_bytes(whole, ncomp, tg->t, (char *)tg->header, sizeof tg->header, &tg->header_len);
  }
  tg->planar = 1;
  return gr_nifti_header_bytes(whole, ncomp, tg->t, tg->header, sizeof tg->header, &tg->header_len);
}

gr_status gr_slab_file_create(const char *tmp_path, const char *final_path, const gr_geometry *whole, int ncomp,
                              gr_pixel_type t) {
  slab_target tg;
  gr_status st = target_of(final_path, whole, ncomp, t, &tg);
  if (st != GR_OK) return st;
  int64_t bytes = 0;
  if (!gr_data_bytes(whole->size, ncomp, tg.t, &bytes))
    return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': image too large", final_path);
  FILE *f = fopen(tmp_path, "wb");
  if (!f) return gr_error(GR_ERR_IO, "cannot create '%s': %s", tmp_path, strerror(errno));
  /* Header, then the file extended to its full size without writing the voxels
   * (a sparse file: the writers fill their planes). */
  if (fwrite(tg.header, 1, tg.header_len, f) != tg.header_len || fflush(f) != 0 ||
      ftruncate(fileno(f), (off_t)((int64_t)tg.header_len + bytes)) != 0)
    st = gr_error(GR_ERR_IO, "cannot write '%s': %s", tmp_path, strerror(errno));
  if (fclose(f) != 0 && st == GR_OK) st = gr_error(GR_ERR_IO, "cannot write '%s': %s", tmp_path, strerror(errno));
  if (st != GR_OK) remove(tmp_path);
  return st;
}

gr_status gr_slab_file_write(const char *tmp_path, const char *final_path, const gr_geometry *whole,
                             const gr_image *slab, int64_t z0, gr_pixel_type t) {
  slab_target tg;
  gr_status st = target_of(final_path, whole, slab->ncomp, t, &tg);
  if (st != GR_OK) return st;
  const int64_t nxy = whole->size[0] * whole->size[1], nvox = nxy * whole->size[2];
  const int64_t m = gr_image_nvox(slab);
  if (slab->geom.size[0] != whole->size[0] || slab->geom.size[1] != whole->size[1] || z0 < 0 ||
      z0 + slab->geom.size[2] > whole->size[2])
    return gr_error(GR_ERR_MISMATCH, "'%s': a %lldx%lldx%lld slab at plane %lld does not fit the %lldx%lldx%lld image",
                    final_path, (long long)slab->geom.size[0], (long long)slab->geom.size[1],
                    (long long)slab->geom.size[2], (long long)z0, (long long)whole->size[0],
                    (long long)whole->size[1], (long long)whole->size[2]);
  const size_t nbuf = (size_t)m * tg.esize * (tg.planar ? 1 : (size_t)slab->ncomp);
  unsigned char *buf = malloc(nbuf ? nbuf : 1);
  if (!buf) return gr_error(GR_ERR_NOMEM, "writing '%s': %lld voxels", final_path, (long long)m);
  FILE *f = fopen(tmp_path, "r+b");
  if (!f) st = gr_error(GR_ERR_IO, "cannot open '%s' for writing: %s", tmp_path, strerror(errno));
  for (int c = 0; st == GR_OK && c < (tg.planar ? slab->ncomp : 1); ++c) {
    int64_t off;
    if (tg.planar) {
      gr_convert_from_float(slab->data + c * m, (size_t)m, tg.t, buf, 1);
      off = (int64_t)tg.header_len + ((int64_t)c * nvox + z0 * nxy) * (int64_t)tg.esize;
    } else {
      for (int q = 0; q < slab->ncomp; ++q)
        gr_convert_from_float(slab->data + q * m, (size_t)m, tg.t, buf + (size_t)q * tg.esize, (size_t)slab->ncomp);
      off = (int64_t)tg.header_len + z0 * nxy * slab->ncomp * (int64_t)tg.esize;
    }
    if (fseeko(f, (off_t)off, SEEK_SET) != 0 || fwrite(buf, 1, nbuf, f) != nbuf)
      st = gr_error(GR_ERR_IO, "cannot write '%s': %s", tmp_path, strerror(errno));
  }
  if (f && fclose(f) != 0 && st == GR_OK) st = gr_error(GR_ERR_IO, "cannot write '%s': %s", tmp_path, strerror(errno));
  free(buf);
  return st;
}
