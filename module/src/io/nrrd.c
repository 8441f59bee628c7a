/* NRRD (.nrrd with attached data, .nhdr with a detached data file), read and
 * written without teem.
 *
 * Geometry comes from "space directions" (one vector per spatial axis: its
 * length is the spacing, its direction a column of the direction matrix) and
 * "space origin", converted to LPS as ITK's NrrdImageIO does (RAS flips x and
 * y, LAS flips x; scanner-xyz and unnamed spaces are taken as they are).
 * Without space directions, "spacings" and an identity direction are used.
 * A 3-component axis may come first (interleaved, ITK's layout) or last
 * (planar). We write raw LPS data with the vector axis first, attached for
 * .nrrd and in a sibling .raw file for .nhdr. */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_internal.h"

enum { GR_NRRD_LINE = 8192, GR_NRRD_MAX_HEADER = 1 << 20, GR_NRRD_MAXDIM = 16 };

typedef struct gr_nrrd_header {
  int dim;
  int64_t sizes[GR_NRRD_MAXDIM];
  int nsizes;
  gr_pixel_type type;
  double flip[3]; /* space -> LPS sign per world axis */
  int space_dim;
  double dirs[GR_NRRD_MAXDIM][3];
  int dir_none[GR_NRRD_MAXDIM];
  int ndirs;
  double origin[3];
  int have_origin;
  double spacings[GR_NRRD_MAXDIM];
  int nspacings;
  int kind_nonspatial[GR_NRRD_MAXDIM];
  int nkinds;
  int endian; /* 0 unset, 1 little, 2 big */
  gr_encoding enc;
  int64_t line_skip, byte_skip;
  char data_file[GR_NRRD_LINE];
} gr_nrrd_header;

static const struct {
  const char *name;
  gr_pixel_type type;
} gr_nrrd_types[] = {
    {"unsigned char", GR_PIXEL_U8},
    {"uchar", GR_PIXEL_U8},
    {"uint8", GR_PIXEL_U8},
    {"uint8_t", GR_PIXEL_U8},
    {"signed char", GR_PIXEL_I8},
    {"int8", GR_PIXEL_I8},
    {"int8_t", GR_PIXEL_I8},
    {"short", GR_PIXEL_I16},
    {"short int", GR_PIXEL_I16},
    {"signed short", GR_PIXEL_I16},
    {"signed short int", GR_PIXEL_I16},
    {"int16", GR_PIXEL_I16},
    {"int16_t", GR_PIXEL_I16},
    {"unsigned short", GR_PIXEL_U16},
    {"ushort", GR_PIXEL_U16},
    {"unsigned short int", GR_PIXEL_U16},
    {"uint16", GR_PIXEL_U16},
    {"uint16_t", GR_PIXEL_U16},
    {"int", GR_PIXEL_I32},
    {"signed int", GR_PIXEL_I32},
    {"int32", GR_PIXEL_I32},
    {"int32_t", GR_PIXEL_I32},
    {"unsigned int", GR_PIXEL_U32},
    {"uint", GR_PIXEL_U32},
    {"uint32", GR_PIXEL_U32},
    {"uint32_t", GR_PIXEL_U32},
    {"float", GR_PIXEL_F32},
    {"double", GR_PIXEL_F64},
};

static gr_status gr_nrrd_bad(const char *path, const char *key, const char *value) {
  return gr_error(GR_ERR_FORMAT, "'%s': invalid NRRD field '%s: %s'", path, GR_QUOTE(key), GR_QUOTE(value));
}

/* "(x,y,z)" vectors and "none", blank separated. Returns the count or -1. */
static int gr_nrrd_parse_vectors(const char *s, double (*v)[3], int *none, int max, int space_dim) {
  int n = 0;
  for (;;) {
    while (isspace((unsigned char)*s)) ++s;
    if (!*s) return n;
    if (n == max) return -1;
    if (strncmp(s, "none", 4) == 0 && (s[4] == '\0' || isspace((unsigned char)s[4]))) {
      none[n] = 1;
      v[n][0] = v[n][1] = v[n][2] = 0.0;
      ++n;
      s += 4;
      continue;
    }
    if (*s != '(') return -1;
    const char *close = strchr(s, ')');
    if (!close || close - s > 1000) return -1;
    char tmp[1024];
    memcpy(tmp, s + 1, (size_t)(close - s - 1));
    tmp[close - s - 1] = '\0';
    double d[3];
    if (gr_parse_doubles(tmp, d, 3) != space_dim) return -1;
    none[n] = 0;
    for (int i = 0; i < 3; ++i) v[n][i] = d[i];
    ++n;
    s = close + 1;
  }
}

static int gr_nrrd_space(const char *v, double flip[3]) {
  flip[0] = flip[1] = flip[2] = 1.0;
  if (gr_strieq(v, "right-anterior-superior") || gr_strieq(v, "RAS")) {
    flip[0] = flip[1] = -1.0;
  } else if (gr_strieq(v, "left-anterior-superior") || gr_strieq(v, "LAS")) {
    flip[0] = -1.0;
  } else if (!(gr_strieq(v, "left-posterior-superior") || gr_strieq(v, "LPS") || gr_strieq(v, "scanner-xyz") ||
               gr_strieq(v, "3D-right-handed") || gr_strieq(v, "3D-left-handed"))) {
    return 0;
  }
  return 1;
}

static gr_status gr_nrrd_parse(FILE *fp, const char *path, gr_nrrd_header *h, int *attached_data) {
  memset(h, 0, sizeof *h);
  h->type = GR_PIXEL_UNKNOWN;
  h->flip[0] = h->flip[1] = h->flip[2] = 1.0;
  h->enc = GR_ENC_RAW;
  *attached_data = 0;
  char *line = malloc(GR_NRRD_LINE);
  if (!line) return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  gr_status st = GR_OK;
  long n = gr_read_line(fp, line, GR_NRRD_LINE);
  if (n < 8 || strncmp(line, "NRRD000", 7) != 0 || !isdigit((unsigned char)line[7])) {
    free(line);
    return gr_error(GR_ERR_FORMAT, "'%s' is not a NRRD file (no NRRD000X magic)", path);
  }
  int have_encoding = 0;
  int64_t consumed = n + 1;
  while (st == GR_OK) {
    n = gr_read_line(fp, line, GR_NRRD_LINE);
    if (n == -1) break; /* end of a detached header */
    if (n == -2) {
      st = gr_error(GR_ERR_FORMAT, "'%s': NRRD header contains binary data or an overlong line", path);
      break;
    }
    consumed += n + 1;
    if (consumed > GR_NRRD_MAX_HEADER) {
      st = gr_error(GR_ERR_FORMAT, "'%s': NRRD header is implausibly long", path);
      break;
    }
    if (n == 0) { /* blank line: attached data follows */
      *attached_data = 1;
      break;
    }
    if (line[0] == '#') continue;
    char *colon = strstr(line, ": ");
    char *kv = strstr(line, ":=");
    if (kv && (!colon || kv < colon)) continue; /* key/value pairs carry no geometry */
    if (!colon) {
      st = gr_error(GR_ERR_FORMAT, "'%s': malformed NRRD header line '%s'", path, GR_QUOTE(line));
      break;
    }
    *colon = '\0';
    const char *key = gr_trim(line);
    char *value = gr_trim(colon + 2);

    if (gr_strieq(key, "type")) {
      for (size_t i = 0; i < sizeof gr_nrrd_types / sizeof gr_nrrd_types[0]; ++i)
        if (gr_strieq(value, gr_nrrd_types[i].name)) h->type = gr_nrrd_types[i].type;
      if (h->type == GR_PIXEL_UNKNOWN)
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': NRRD type '%s' is not supported", path, GR_QUOTE(value));
    } else if (gr_strieq(key, "dimension")) {
      int64_t d;
      if (gr_parse_sizes(value, &d, 1) != 1 || d < 1 || d > GR_NRRD_MAXDIM)
        st = gr_nrrd_bad(path, key, value);
      else
        h->dim = (int)d;
    } else if (gr_strieq(key, "sizes")) {
      h->nsizes = gr_parse_sizes(value, h->sizes, GR_NRRD_MAXDIM);
      if (h->nsizes < 1) st = gr_nrrd_bad(path, key, value);
    } else if (gr_strieq(key, "space")) {
      if (!gr_nrrd_space(value, h->flip))
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': NRRD space '%s' is not supported", path, GR_QUOTE(value));
      h->space_dim = 3;
    } else if (gr_strieq(key, "space dimension")) {
      int64_t d;
      if (gr_parse_sizes(value, &d, 1) != 1)
        st = gr_nrrd_bad(path, key, value);
      else if (d != 3)
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': NRRD space dimension %lld is not supported", path, (long long)d);
      else
        h->space_dim = 3;
    } else if (gr_strieq(key, "space directions")) {
      h->ndirs = gr_nrrd_parse_vectors(value, h->dirs, h->dir_none, GR_NRRD_MAXDIM, 3);
      if (h->ndirs < 1) st = gr_nrrd_bad(path, key, value);
    } else if (gr_strieq(key, "space origin")) {
      if (gr_parse_doubles(value, h->origin, 3) != 3)
        st = gr_nrrd_bad(path, key, value);
      else
        h->have_origin = 1;
    } else if (gr_strieq(key, "spacings")) {
      /* "nan" marks non-spatial axes; read token by token. */
      char *save = NULL;
      int k = 0;
      for (char *tok = strtok_r(value, " \t", &save); tok && st == GR_OK; tok = strtok_r(NULL, " \t", &save)) {
        if (k == GR_NRRD_MAXDIM) {
          st = gr_nrrd_bad(path, key, value);
          break;
        }
        char *end;
        const double d = strtod(tok, &end);
        if (end == tok || *end) {
          st = gr_nrrd_bad(path, key, tok);
          break;
        }
        h->spacings[k++] = d;
      }
      h->nspacings = k;
    } else if (gr_strieq(key, "kinds")) {
      char *save = NULL;
      int k = 0;
      for (char *tok = strtok_r(value, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (k == GR_NRRD_MAXDIM) {
          st = gr_nrrd_bad(path, key, value);
          break;
        }
        h->kind_nonspatial[k++] = !(gr_strieq(tok, "domain") || gr_strieq(tok, "space") || gr_strieq(tok, "time") ||
                                    gr_strieq(tok, "???") || gr_strieq(tok, "none"));
      }
      h->nkinds = k;
    } else if (gr_strieq(key, "endian")) {
      if (gr_strieq(value, "little"))
        h->endian = 1;
      else if (gr_strieq(value, "big"))
        h->endian = 2;
      else
        st = gr_nrrd_bad(path, key, value);
    } else if (gr_strieq(key, "encoding")) {
      have_encoding = 1;
      if (gr_strieq(value, "raw"))
        h->enc = GR_ENC_RAW;
      else if (gr_strieq(value, "gzip") || gr_strieq(value, "gz"))
        h->enc = GR_ENC_ZLIB;
      else
        st = gr_error(GR_ERR_UNSUPPORTED, "'%s': NRRD encoding '%s' is not supported (raw or gzip)", path,
                      GR_QUOTE(value));
    } else if (gr_strieq(key, "data file") || gr_strieq(key, "datafile")) {
      snprintf(h->data_file, sizeof h->data_file, "%s", value);
    } else if (gr_strieq(key, "line skip") || gr_strieq(key, "lineskip")) {
      if (gr_parse_sizes(value, &h->line_skip, 1) != 1) st = gr_nrrd_bad(path, key, value);
    } else if (gr_strieq(key, "byte skip") || gr_strieq(key, "byteskip")) {
      char *end;
      errno = 0;
      const long long v = strtoll(value, &end, 10);
      if (end == value || *end || errno || v < -1)
        st = gr_nrrd_bad(path, key, value);
      else
        h->byte_skip = v;
    }
  }
  free(line);
  if (st != GR_OK) return st;
  if (!h->dim) return gr_error(GR_ERR_FORMAT, "'%s': NRRD header lacks the dimension field", path);
  if (h->type == GR_PIXEL_UNKNOWN) return gr_error(GR_ERR_FORMAT, "'%s': NRRD header lacks the type field", path);
  if (!have_encoding) return gr_error(GR_ERR_FORMAT, "'%s': NRRD header lacks the encoding field", path);
  if (h->nsizes != h->dim)
    return gr_error(GR_ERR_FORMAT, "'%s': NRRD sizes has %d values for dimension %d", path, h->nsizes, h->dim);
  if ((h->ndirs && h->ndirs != h->dim) || (h->nspacings && h->nspacings != h->dim) ||
      (h->nkinds && h->nkinds != h->dim))
    return gr_error(GR_ERR_FORMAT, "'%s': a NRRD per-axis field does not have %d entries", path, h->dim);
  if (gr_pixel_size(h->type) > 1 && !h->endian)
    return gr_error(GR_ERR_FORMAT, "'%s': NRRD header lacks the endian field", path);
  return GR_OK;
}

/* Picks the spatial axes and the component axis and builds the geometry. */
static gr_status gr_nrrd_geometry(const gr_nrrd_header *h, const char *path, gr_geometry *g, int *ncomp, int *planar) {
  int comp_axis = -1, spatial[GR_NRRD_MAXDIM], nspatial = 0;
  for (int a = 0; a < h->dim; ++a) {
    const int nonspatial = (h->ndirs && h->dir_none[a]) || (!h->ndirs && h->nkinds && h->kind_nonspatial[a]);
    if (nonspatial) {
      if (comp_axis >= 0)
        return gr_error(GR_ERR_UNSUPPORTED, "'%s': NRRD files with several non-spatial axes are not supported", path);
      comp_axis = a;
    } else {
      spatial[nspatial++] = a;
    }
  }
  /* Without space directions or kinds, ITK treats a leading extra axis as the
   * pixel components. */
  if (comp_axis < 0 && h->dim == 4) {
    comp_axis = 0;
    nspatial = 0;
    for (int a = 1; a < 4; ++a) spatial[nspatial++] = a;
  }
  if (nspatial == 2) return gr_error(GR_ERR_UNSUPPORTED, "'%s': 2D images are not supported", path);
  if (nspatial != 3)
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': %d-dimensional images are not supported", path, nspatial);
  *ncomp = 1;
  *planar = 0;
  if (comp_axis >= 0) {
    const int64_t nc = h->sizes[comp_axis];
    if (nc != 1 && nc != 3)
      return gr_error(GR_ERR_UNSUPPORTED, "'%s': %lld-component images are not supported (1 or 3)", path,
                      (long long)nc);
    if (nc == 3 && comp_axis != 0 && comp_axis != h->dim - 1)
      return gr_error(GR_ERR_UNSUPPORTED, "'%s': the NRRD vector axis must be the first or the last axis", path);
    *ncomp = (int)nc;
    *planar = nc == 3 && comp_axis == h->dim - 1;
  }
  memset(g, 0, sizeof *g);
  for (int i = 0; i < 3; ++i) {
    const int a = spatial[i];
    g->size[i] = h->sizes[a];
    if (h->ndirs) {
      const double *v = h->dirs[a];
      const double len = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
      if (!(len > 0.0) || !isfinite(len))
        return gr_error(GR_ERR_FORMAT, "'%s': NRRD space direction %d is zero", path, a);
      g->spacing[i] = len;
      for (int r = 0; r < 3; ++r) g->direction[r * 3 + i] = h->flip[r] * v[r] / len;
    } else {
      const double s = h->nspacings ? h->spacings[a] : 1.0;
      g->spacing[i] = isfinite(s) && s != 0.0 ? fabs(s) : 1.0;
      g->direction[i * 3 + i] = 1.0;
    }
    g->origin[i] = h->have_origin ? h->flip[i] * h->origin[i] : 0.0;
  }
  return gr_io_check_geometry(g, path);
}

static gr_status gr_nrrd_skip_lines(FILE *fp, int64_t n, const char *label) {
  for (int64_t k = 0; k < n; ++k) {
    int c;
    while ((c = getc(fp)) != EOF && c != '\n') {
    }
    if (c == EOF)
      return gr_error(GR_ERR_FORMAT, "'%s' is truncated: ends within its %lld skipped lines", label, (long long)n);
  }
  return GR_OK;
}

gr_status gr_nrrd_read(const char *path, int header_only, gr_image **out, gr_geometry *geom, int *ncomp,
                       gr_pixel_type *type) {
  if (out) *out = NULL;
  FILE *fp = NULL;
  const gr_status ost = gr_fopen_regular(path, &fp);
  if (ost != GR_OK) return ost;
  gr_nrrd_header *h = malloc(sizeof *h);
  if (!h) {
    fclose(fp);
    return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  }
  int attached = 0, nc = 1, planar = 0;
  gr_geometry g;
  gr_status st = gr_nrrd_parse(fp, path, h, &attached);
  if (st == GR_OK) st = gr_nrrd_geometry(h, path, &g, &nc, &planar);
  if (st == GR_OK) {
    if (geom) *geom = g;
    if (ncomp) *ncomp = nc;
    if (type) *type = h->type;
  }
  if (st != GR_OK || header_only) {
    fclose(fp);
    free(h);
    return st;
  }

  const int swap = gr_pixel_size(h->type) > 1 && (h->endian == 1) != gr_host_is_little_endian();
  FILE *data = fp;
  char *label = NULL;
  if (h->data_file[0]) {
    st = gr_open_detached_data(path, h->data_file, "NRRD", &data, &label);
    if (st != GR_OK) data = fp; /* the shared cleanup below closes fp exactly once */
  } else if (!attached) {
    st = gr_error(GR_ERR_FORMAT, "'%s': NRRD header has neither attached data nor a data file", path);
  }
  const char *name = label ? label : path;
  int64_t skip_decoded = 0;
  if (st == GR_OK) st = gr_nrrd_skip_lines(data, h->line_skip, name);
  if (st == GR_OK) {
    if (h->byte_skip == -1) {
      /* teem: the data is the last bytes of the file (raw only). */
      st = gr_seek_tail_voxels(data, path, name, g.size, nc, h->type, h->enc == GR_ENC_RAW, "byte skip -1");
    } else if (h->enc == GR_ENC_RAW) {
      if (h->byte_skip > 0 && fseeko(data, (off_t)h->byte_skip, SEEK_CUR) != 0)
        st = gr_error(GR_ERR_IO, "cannot seek in '%s'", name);
    } else {
      skip_decoded = h->byte_skip; /* teem skips decompressed bytes */
    }
  }
  if (st == GR_OK) st = gr_load_voxels(data, name, h->enc, skip_decoded, h->type, swap, &g, nc, planar, out);
  if (data && data != fp) fclose(data);
  fclose(fp);
  free(label);
  free(h);
  return st;
}

/* ---- writing ------------------------------------------------------------- */

static const char *gr_nrrd_type_name(gr_pixel_type t) {
  switch (t) {
    case GR_PIXEL_U8: return "unsigned char";
    case GR_PIXEL_I8: return "signed char";
    case GR_PIXEL_U16: return "unsigned short";
    case GR_PIXEL_I16: return "short";
    case GR_PIXEL_U32: return "unsigned int";
    case GR_PIXEL_I32: return "int";
    case GR_PIXEL_F32: return "float";
    case GR_PIXEL_F64: return "double";
    case GR_PIXEL_UNKNOWN: break;
  }
  return NULL;
}

static void gr_nrrd_vector(char *out, size_t cap, double x, double y, double z) {
  char a[32], b[32], c[32];
  gr_format_double(a, sizeof a, x);
  gr_format_double(b, sizeof b, y);
  gr_format_double(c, sizeof c, z);
  snprintf(out, cap, "(%s,%s,%s)", a, b, c);
}

gr_status gr_nrrd_write(const char *path, const gr_image *img, gr_pixel_type type) {
  const gr_pixel_type t = gr_output_type(img, type);
  const char *tname = gr_nrrd_type_name(t);
  if (!tname) return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': invalid pixel type %d", path, (int)t);
  int64_t bytes;
  if (!gr_data_bytes(img->geom.size, img->ncomp, t, &bytes))
    return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': image too large", path);

  const int detached = gr_path_has_suffix(path, ".nhdr");
  char *raw_path = NULL;
  if (detached) {
    /* "x.nhdr" -> "x.raw", referenced by its bare name so the pair can move. */
    const size_t len = strlen(path);
    raw_path = malloc(len);
    if (!raw_path) return gr_error(GR_ERR_NOMEM, "out of memory writing '%s'", path);
    memcpy(raw_path, path, len - 5);
    memcpy(raw_path + len - 5, ".raw", 5);
  }

  const gr_geometry *g = &img->geom;
  const int vec = img->ncomp == 3;
  char dirs[3][128], origin[128], data_line[1100] = "";
  for (int c = 0; c < 3; ++c)
    gr_nrrd_vector(dirs[c], sizeof dirs[c], g->direction[c] * g->spacing[c], g->direction[3 + c] * g->spacing[c],
                   g->direction[6 + c] * g->spacing[c]);
  gr_nrrd_vector(origin, sizeof origin, g->origin[0], g->origin[1], g->origin[2]);
  if (detached) snprintf(data_line, sizeof data_line, "data file: %.1000s\n", gr_path_basename(raw_path));
  const size_t cap = 4096;
  char *text = malloc(cap);
  const int n =
      text ? snprintf(text, cap,
                      "NRRD0004\n"
                      "# Complete NRRD file format specification at:\n"
                      "# http://teem.sourceforge.net/nrrd/format.html\n"
                      "type: %s\n"
                      "dimension: %d\n"
                      "space: left-posterior-superior\n"
                      "sizes: %s%lld %lld %lld\n"
                      "space directions: %s%s %s %s\n"
                      "kinds: %sdomain domain domain\n"
                      "endian: %s\n"
                      "encoding: raw\n"
                      "space origin: %s\n"
                      "%s%s",
                      tname, vec ? 4 : 3, vec ? "3 " : "", (long long)g->size[0], (long long)g->size[1],
                      (long long)g->size[2], vec ? "none " : "", dirs[0], dirs[1], dirs[2], vec ? "vector " : "",
                      gr_host_is_little_endian() ? "little" : "big", origin, data_line, detached ? "" : "\n")
           : -1;
  if (n < 0 || (size_t)n >= cap) {
    free(text);
    free(raw_path);
    return gr_error(GR_ERR_NOMEM, "cannot format the NRRD header of '%s'", path);
  }

  const gr_status st = gr_write_text_header_and_voxels(path, text, (size_t)n, detached ? raw_path : NULL, img, t);
  free(text);
  free(raw_path);
  return st;
}
