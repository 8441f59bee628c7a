/* MetaImage (.mha with the data attached, .mhd with a separate raw file),
 * read and written without ITK/MetaIO.
 *
 * Conventions follow ITK's MetaImageIO: Offset is the origin (LPS), and
 * TransformMatrix lists the direction matrix axis by axis, i.e. its i-th
 * triple is the i-th column of the direction matrix (element [i*3+j] =
 * D[j][i]). Multi-component voxels are interleaved on disk. Compressed data is
 * a zlib stream (CompressedData = True); we read it but write uncompressed. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_internal.h"

enum { GR_META_LINE = 8192, GR_META_MAX_HEADER = 1 << 20 };

typedef struct gr_meta_header {
  int ndims;
  int64_t dims[4];
  int ndim_values;
  double spacing[4], element_size[4], origin[4], matrix[16];
  int nspacing, nelement_size, norigin, nmatrix;
  gr_pixel_type type;
  int ncomp;
  int msb;
  int compressed;
  int64_t header_size; /* for a separate data file; -1: data at its end */
  char data_file[GR_META_LINE];
} gr_meta_header;

static const struct {
  const char *name;
  gr_pixel_type type;
} gr_meta_types[] = {
    {"MET_UCHAR", GR_PIXEL_U8},
    {"MET_CHAR", GR_PIXEL_I8},
    {"MET_USHORT", GR_PIXEL_U16},
    {"MET_SHORT", GR_PIXEL_I16},
    {"MET_UINT", GR_PIXEL_U32},
    {"MET_INT", GR_PIXEL_I32},
    {"MET_FLOAT", GR_PIXEL_F32},
    {"MET_DOUBLE", GR_PIXEL_F64},
    /* MetaIO's MET_LONG/MET_ULONG are 32-bit (64-bit is MET_LONG_LONG). */
    {"MET_LONG", GR_PIXEL_I32},
    {"MET_ULONG", GR_PIXEL_U32},
};

static const char *gr_meta_type_name(gr_pixel_type t) {
  for (size_t i = 0; i < sizeof gr_meta_types / sizeof gr_meta_types[0]; ++i)
    if (gr_meta_types[i].type == t) return gr_meta_types[i].name;
  return NULL;
}

static int gr_meta_bool(const char *v, int *out) {
  if (gr_strieq(v, "true") || gr_strieq(v, "1") || gr_strieq(v, "yes")) {
    *out = 1;
    return 1;
  }
  if (gr_strieq(v, "false") || gr_strieq(v, "0") || gr_strieq(v, "no")) {
    *out = 0;
    return 1;
  }
  return 0;
}

static gr_status gr_meta_bad_value(const char *path, const char *key, const char *value) {
  return gr_error(GR_ERR_FORMAT, "'%s': invalid MetaImage value '%s = %s'", path, GR_QUOTE(key), GR_QUOTE(value));
}

/* Reads key = value lines up to and including ElementDataFile, which MetaIO
 * requires to be last; LOCAL data starts right after it. */
static gr_status gr_meta_parse(FILE *fp, const char *path, gr_meta_header *h) {
  memset(h, 0, sizeof *h);
  h->ncomp = 1;
  h->type = GR_PIXEL_UNKNOWN;
  int have_ndims = 0, have_type = 0, have_data = 0, binary = 1;
  int64_t consumed = 0;
  char *line = malloc(GR_META_LINE);
  if (!line) return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  gr_status st = GR_OK;
  while (st == GR_OK && !have_data) {
    const long n = gr_read_line(fp, line, GR_META_LINE);
    if (n == -1) {
      st = gr_error(GR_ERR_FORMAT, "'%s': MetaImage header has no ElementDataFile line", path);
      break;
    }
    if (n == -2) {
      st = gr_error(GR_ERR_FORMAT, "'%s' is not a MetaImage file (binary data or overlong line in the header)", path);
      break;
    }
    consumed += n + 1;
    if (consumed > GR_META_MAX_HEADER) {
      st = gr_error(GR_ERR_FORMAT, "'%s': MetaImage header is implausibly long", path);
      break;
    }
    char *eq = strchr(line, '=');
    if (!eq) {
      if (*gr_trim(line) == '\0') continue;
      st = gr_error(GR_ERR_FORMAT, "'%s' is not a MetaImage file (line '%s' is not 'Key = Value')", path,
                    GR_QUOTE(line));
      break;
    }
    *eq = '\0';
    const char *key = gr_trim(line);
    char *value = gr_trim(eq + 1);

    if (gr_strieq(key, "ObjectType")) {
      if (!gr_strieq(value, "Image"))
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': MetaImage ObjectType '%s' is not an image", path, GR_QUOTE(value));
    } else if (gr_strieq(key, "NDims")) {
      int64_t nd;
      if (gr_parse_sizes(value, &nd, 1) != 1 || nd < 1 || nd > 16)
        st = gr_meta_bad_value(path, key, value);
      else {
        h->ndims = (int)nd;
        have_ndims = 1;
      }
    } else if (gr_strieq(key, "DimSize")) {
      h->ndim_values = gr_parse_sizes(value, h->dims, 4);
      if (h->ndim_values < 1) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "ElementSpacing")) {
      h->nspacing = gr_parse_doubles(value, h->spacing, 4);
      if (h->nspacing < 1) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "ElementSize")) {
      h->nelement_size = gr_parse_doubles(value, h->element_size, 4);
      if (h->nelement_size < 1) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "Offset") || gr_strieq(key, "Position") || gr_strieq(key, "Origin")) {
      h->norigin = gr_parse_doubles(value, h->origin, 4);
      if (h->norigin < 1) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "TransformMatrix") || gr_strieq(key, "Rotation") || gr_strieq(key, "Orientation")) {
      h->nmatrix = gr_parse_doubles(value, h->matrix, 16);
      if (h->nmatrix < 1) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "ElementType")) {
      have_type = 1;
      for (size_t i = 0; i < sizeof gr_meta_types / sizeof gr_meta_types[0]; ++i)
        if (gr_strieq(value, gr_meta_types[i].name)) h->type = gr_meta_types[i].type;
      if (h->type == GR_PIXEL_UNKNOWN)
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': MetaImage ElementType '%s' is not supported", path, GR_QUOTE(value));
    } else if (gr_strieq(key, "ElementNumberOfChannels")) {
      int64_t nc;
      if (gr_parse_sizes(value, &nc, 1) != 1)
        st = gr_meta_bad_value(path, key, value);
      else if (nc != 1 && nc != 3)
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': %lld-channel images are not supported (1 or 3)", path, (long long)nc);
      else
        h->ncomp = (int)nc;
    } else if (gr_strieq(key, "BinaryDataByteOrderMSB") || gr_strieq(key, "ElementByteOrderMSB")) {
      if (!gr_meta_bool(value, &h->msb)) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "BinaryData")) {
      if (!gr_meta_bool(value, &binary)) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "CompressedData")) {
      if (!gr_meta_bool(value, &h->compressed)) st = gr_meta_bad_value(path, key, value);
    } else if (gr_strieq(key, "HeaderSize")) {
      char *end;
      errno = 0;
      const long long v = strtoll(value, &end, 10);
      if (end == value || *end || errno || v < -1)
        st = gr_meta_bad_value(path, key, value);
      else
        h->header_size = v;
    } else if (gr_strieq(key, "ElementDataFile")) {
      have_data = 1;
      if (!*value)
        st = gr_meta_bad_value(path, key, value);
      else
        snprintf(h->data_file, sizeof h->data_file, "%s", value);
    }
    /* Other keys (CenterOfRotation, AnatomicalOrientation, ElementMin, ...)
     * do not affect the voxel grid. */
  }
  free(line);
  if (st != GR_OK) return st;

  if (!have_ndims) return gr_error(GR_ERR_FORMAT, "'%s': MetaImage header lacks NDims", path);
  if (h->ndims == 2) return gr_error(GR_ERR_UNSUPPORTED, "'%s': 2D images are not supported", path);
  if (h->ndims != 3)
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': %d-dimensional images are not supported (NDims = %d)", path, h->ndims,
                    h->ndims);
  if (h->ndim_values == 0) return gr_error(GR_ERR_FORMAT, "'%s': MetaImage header lacks DimSize", path);
  if (!have_type) return gr_error(GR_ERR_FORMAT, "'%s': MetaImage header lacks ElementType", path);
  if (!binary)
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': ASCII MetaImage data (BinaryData = False) is not supported", path);
  if (h->ndim_values != 3)
    return gr_error(GR_ERR_FORMAT, "'%s': DimSize has %d values for NDims = 3", path, h->ndim_values);
  if ((h->nspacing && h->nspacing != 3) || (h->nelement_size && h->nelement_size != 3) ||
      (h->norigin && h->norigin != 3) || (h->nmatrix && h->nmatrix != 9))
    return gr_error(GR_ERR_FORMAT, "'%s': a MetaImage geometry key has the wrong number of values for NDims = 3", path);
  for (int i = 0; i < 3; ++i)
    if (h->dims[i] < 1) return gr_error(GR_ERR_FORMAT, "'%s': DimSize %lld is invalid", path, (long long)h->dims[i]);
  return GR_OK;
}

static void gr_meta_geometry(const gr_meta_header *h, gr_geometry *g) {
  memset(g, 0, sizeof *g);
  for (int i = 0; i < 3; ++i) {
    g->size[i] = h->dims[i];
    g->spacing[i] = h->nspacing ? h->spacing[i] : h->nelement_size ? h->element_size[i] : 1.0;
    g->origin[i] = h->norigin ? h->origin[i] : 0.0;
    for (int j = 0; j < 3; ++j) g->direction[j * 3 + i] = h->nmatrix ? h->matrix[i * 3 + j] : (i == j ? 1.0 : 0.0);
  }
}

gr_status gr_meta_read(const char *path, int header_only, gr_image **out, gr_geometry *geom, int *ncomp,
                       gr_pixel_type *type) {
  if (out) *out = NULL;
  FILE *fp = NULL;
  const gr_status ost = gr_fopen_regular(path, &fp);
  if (ost != GR_OK) return ost;
  gr_meta_header *h = malloc(sizeof *h);
  if (!h) {
    fclose(fp);
    return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  }
  gr_status st = gr_meta_parse(fp, path, h);
  gr_geometry g;
  if (st == GR_OK) {
    gr_meta_geometry(h, &g);
    st = gr_io_check_geometry(&g, path);
  }
  if (st == GR_OK) {
    if (geom) *geom = g;
    if (ncomp) *ncomp = h->ncomp;
    if (type) *type = h->type;
  }
  if (st != GR_OK || header_only) {
    fclose(fp);
    free(h);
    return st;
  }

  const gr_encoding enc = h->compressed ? GR_ENC_ZLIB : GR_ENC_RAW;
  const int swap = h->msb == gr_host_is_little_endian() && gr_pixel_size(h->type) > 1;
  char *label = NULL;
  FILE *data = fp;
  if (gr_strieq(h->data_file, "LOCAL")) {
    st = gr_load_voxels(fp, path, enc, 0, h->type, swap, &g, h->ncomp, 0, out);
  } else {
    st = gr_open_detached_data(path, h->data_file, "MetaImage", &data, &label);
    if (st == GR_OK && h->header_size == -1) /* MetaIO: the data is the last bytes of the file */
      st = gr_seek_tail_voxels(data, path, label, g.size, h->ncomp, h->type, enc == GR_ENC_RAW, "HeaderSize = -1");
    else if (st == GR_OK && h->header_size > 0 && fseeko(data, (off_t)h->header_size, SEEK_SET) != 0)
      st = gr_error(GR_ERR_IO, "cannot seek in '%s'", label);
    if (st == GR_OK) st = gr_load_voxels(data, label, enc, 0, h->type, swap, &g, h->ncomp, 0, out);
  }
  if (data && data != fp) fclose(data);
  fclose(fp);
  free(label);
  free(h);
  return st;
}

/* ---- writing ------------------------------------------------------------- */

/* ITK-style orientation code: for each axis the anatomical side it starts
 * from ("RAI" = identity LPS direction). Informative only; readers use the
 * TransformMatrix. */
static void gr_meta_orientation(const gr_geometry *g, char code[4]) {
  static const char from_pos[3] = {'R', 'A', 'I'}, from_neg[3] = {'L', 'P', 'S'};
  int used[3] = {0, 0, 0};
  for (int c = 0; c < 3; ++c) {
    int best = -1;
    for (int r = 0; r < 3; ++r)
      if (!used[r] && (best < 0 || fabs(g->direction[r * 3 + c]) > fabs(g->direction[best * 3 + c]))) best = r;
    used[best] = 1;
    code[c] = g->direction[best * 3 + c] >= 0.0 ? from_pos[best] : from_neg[best];
  }
  code[3] = '\0';
}

static int gr_meta_append(char *buf, size_t cap, size_t *len, const char *fmt, const char *a) {
  const int n = snprintf(buf + *len, cap - *len, fmt, a);
  if (n < 0 || (size_t)n >= cap - *len) return 0;
  *len += (size_t)n;
  return 1;
}

static void gr_meta_triple(char *out, size_t cap, const double v[3]) {
  char a[32], b[32], c[32];
  gr_format_double(a, sizeof a, v[0]);
  gr_format_double(b, sizeof b, v[1]);
  gr_format_double(c, sizeof c, v[2]);
  snprintf(out, cap, "%s %s %s", a, b, c);
}

/* Builds the header text; data_file is "LOCAL" or the raw file's name. */
static int gr_meta_header_text(const gr_image *img, gr_pixel_type t, const char *data_file, char *buf, size_t cap) {
  const gr_geometry *g = &img->geom;
  char tmp[512], orient[4];
  size_t len = 0;
  int ok = 1;
  ok = ok && gr_meta_append(buf, cap, &len, "%s", "ObjectType = Image\nNDims = 3\nBinaryData = True\n");
  ok = ok &&
       gr_meta_append(buf, cap, &len, "BinaryDataByteOrderMSB = %s\n", gr_host_is_little_endian() ? "False" : "True");
  ok = ok && gr_meta_append(buf, cap, &len, "%s", "CompressedData = False\n");
  char m[9][32];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) gr_format_double(m[i * 3 + j], sizeof m[0], g->direction[j * 3 + i]);
  snprintf(tmp, sizeof tmp, "%s %s %s %s %s %s %s %s %s", m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]);
  ok = ok && gr_meta_append(buf, cap, &len, "TransformMatrix = %s\n", tmp);
  gr_meta_triple(tmp, sizeof tmp, g->origin);
  ok = ok && gr_meta_append(buf, cap, &len, "Offset = %s\n", tmp);
  ok = ok && gr_meta_append(buf, cap, &len, "%s", "CenterOfRotation = 0 0 0\n");
  gr_meta_orientation(g, orient);
  ok = ok && gr_meta_append(buf, cap, &len, "AnatomicalOrientation = %s\n", orient);
  gr_meta_triple(tmp, sizeof tmp, g->spacing);
  ok = ok && gr_meta_append(buf, cap, &len, "ElementSpacing = %s\n", tmp);
  snprintf(tmp, sizeof tmp, "%lld %lld %lld", (long long)g->size[0], (long long)g->size[1], (long long)g->size[2]);
  ok = ok && gr_meta_append(buf, cap, &len, "DimSize = %s\n", tmp);
  if (img->ncomp != 1) ok = ok && gr_meta_append(buf, cap, &len, "%s", "ElementNumberOfChannels = 3\n");
  ok = ok && gr_meta_append(buf, cap, &len, "ElementType = %s\n", gr_meta_type_name(t));
  ok = ok && gr_meta_append(buf, cap, &len, "ElementDataFile = %s\n", data_file);
  return ok;
}

gr_status gr_meta_write(const char *path, const gr_image *img, gr_pixel_type type) {
  const gr_pixel_type t = gr_output_type(img, type);
  if (!gr_meta_type_name(t))
    return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': invalid pixel type %d", path, (int)t);
  int64_t bytes;
  if (!gr_data_bytes(img->geom.size, img->ncomp, t, &bytes))
    return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': image too large", path);

  const int detached = gr_path_has_suffix(path, ".mhd");
  char *raw_path = NULL;
  const char *raw_name = "LOCAL";
  if (detached) {
    /* "x.mhd" -> "x.raw", referenced by its bare name so the pair can move. */
    const size_t n = strlen(path);
    raw_path = malloc(n + 1);
    if (!raw_path) return gr_error(GR_ERR_NOMEM, "out of memory writing '%s'", path);
    memcpy(raw_path, path, n - 4);
    memcpy(raw_path + n - 4, ".raw", 5);
    raw_name = gr_path_basename(raw_path);
  }
  const size_t cap = 4096 + strlen(raw_name);
  char *text = malloc(cap);
  if (!text || !gr_meta_header_text(img, t, raw_name, text, cap)) {
    free(text);
    free(raw_path);
    return gr_error(GR_ERR_NOMEM, "cannot format the MetaImage header of '%s'", path);
  }

  const gr_status st = gr_write_text_header_and_voxels(path, text, strlen(text), detached ? raw_path : NULL, img, t);
  free(text);
  free(raw_path);
  return st;
}

/* ---- slab access ----------------------------------------------------------- */

gr_status gr_meta_layout(const char *path, gr_raw_layout *lay) {
  memset(lay, 0, sizeof *lay);
  FILE *fp = fopen(path, "rb");
  if (!fp) return gr_error(GR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  gr_meta_header *h = malloc(sizeof *h);
  if (!h) {
    fclose(fp);
    return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  }
  gr_status st = gr_meta_parse(fp, path, h);
  if (st == GR_OK) {
    gr_meta_geometry(h, &lay->geom);
    st = gr_io_check_geometry(&lay->geom, path);
  }
  if (st == GR_OK) {
    lay->ncomp = h->ncomp;
    lay->type = h->type;
    lay->swap = h->msb == gr_host_is_little_endian() && gr_pixel_size(h->type) > 1;
    lay->compressed = h->compressed;
    if (gr_strieq(h->data_file, "LOCAL")) {
      lay->data_path = malloc(strlen(path) + 1);
      if (lay->data_path) strcpy(lay->data_path, path);
      lay->offset = (int64_t)ftello(fp); /* LOCAL data starts right after ElementDataFile */
    } else if (gr_strieq(h->data_file, "LIST") || strchr(h->data_file, '%')) {
      st = gr_error(GR_ERR_UNSUPPORTED, "'%s': MetaImage data split over several files is not supported", path);
    } else {
      lay->data_path = gr_path_sibling(path, h->data_file);
      lay->offset = h->header_size;
      if (lay->data_path && h->header_size == -1) { /* the data are the file's last bytes */
        FILE *d = fopen(lay->data_path, "rb");
        int64_t bytes = 0;
        const int64_t fsize = d ? gr_file_size(d) : -1;
        if (d) fclose(d);
        if (fsize < 0 || !gr_data_bytes(lay->geom.size, lay->ncomp, lay->type, &bytes) || fsize < bytes)
          st = gr_error(GR_ERR_FORMAT, "'%s': cannot locate the voxel data (HeaderSize = -1)", path);
        else
          lay->offset = fsize - bytes;
      }
    }
    if (st == GR_OK && !lay->data_path) st = gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  }
  fclose(fp);
  free(h);
  if (st != GR_OK) {
    free(lay->data_path);
    lay->data_path = NULL;
  }
  return st;
}

gr_status gr_meta_header_bytes(const gr_geometry *g, int ncomp, gr_pixel_type t, char *buf, size_t cap, size_t *len) {
  if (!gr_meta_type_name(t)) return gr_error(GR_ERR_INVALID_ARG, "MetaImage: invalid pixel type %d", (int)t);
  gr_image img;
  memset(&img, 0, sizeof img);
  img.geom = *g;
  img.ncomp = ncomp;
  if (!gr_meta_header_text(&img, t, "LOCAL", buf, cap)) return gr_error(GR_ERR_INTERNAL, "MetaImage header too long");
  *len = strlen(buf);
  return GR_OK;
}
