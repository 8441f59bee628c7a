/* Format dispatch, pixel conversion, voxel streams and atomic writes shared by
 * the NIfTI, MetaImage and NRRD back ends. */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include "io/io_internal.h"

/* ======================================================================== */
/* format and pixel-type names                                              */
/* ======================================================================== */

int gr_path_has_suffix(const char *path, const char *suffix) {
  if (!path || !suffix) return 0;
  const size_t n = strlen(path), m = strlen(suffix);
  if (m > n) return 0;
  const char *p = path + (n - m);
  for (size_t i = 0; i < m; ++i)
    if (tolower((unsigned char)p[i]) != tolower((unsigned char)suffix[i])) return 0;
  return 1;
}

gr_file_format gr_format_from_path(const char *path) {
  if (!path) return GR_FORMAT_UNKNOWN;
  if (gr_path_has_suffix(path, ".nii") || gr_path_has_suffix(path, ".nii.gz")) return GR_FORMAT_NIFTI;
  if (gr_path_has_suffix(path, ".mha") || gr_path_has_suffix(path, ".mhd")) return GR_FORMAT_META;
  if (gr_path_has_suffix(path, ".nrrd") || gr_path_has_suffix(path, ".nhdr")) return GR_FORMAT_NRRD;
  return GR_FORMAT_UNKNOWN;
}

typedef struct gr_type_alias {
  const char *name;
  gr_pixel_type type;
} gr_type_alias;

/* The first entry for each type is its canonical (elastix) name. */
static const gr_type_alias gr_type_aliases[] = {
    {"unsigned char", GR_PIXEL_U8}, {"char", GR_PIXEL_I8},          {"unsigned short", GR_PIXEL_U16},
    {"short", GR_PIXEL_I16},        {"unsigned int", GR_PIXEL_U32}, {"int", GR_PIXEL_I32},
    {"float", GR_PIXEL_F32},        {"double", GR_PIXEL_F64},       {"uint8", GR_PIXEL_U8},
    {"uchar", GR_PIXEL_U8},         {"int8", GR_PIXEL_I8},          {"signed char", GR_PIXEL_I8},
    {"uint16", GR_PIXEL_U16},       {"ushort", GR_PIXEL_U16},       {"int16", GR_PIXEL_I16},
    {"signed short", GR_PIXEL_I16}, {"uint32", GR_PIXEL_U32},       {"uint", GR_PIXEL_U32},
    {"int32", GR_PIXEL_I32},        {"signed int", GR_PIXEL_I32},   {"float32", GR_PIXEL_F32},
    {"float64", GR_PIXEL_F64},      {"uint8_t", GR_PIXEL_U8},       {"int8_t", GR_PIXEL_I8},
    {"uint16_t", GR_PIXEL_U16},     {"int16_t", GR_PIXEL_I16},      {"uint32_t", GR_PIXEL_U32},
    {"int32_t", GR_PIXEL_I32},
};

int gr_strieq(const char *a, const char *b) {
  for (; *a && *b; ++a, ++b)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

gr_pixel_type gr_pixel_type_from_name(const char *name) {
  if (!name) return GR_PIXEL_UNKNOWN;
  /* Parameter files may carry blanks around the value; tolerate them. */
  char buf[64];
  while (isspace((unsigned char)*name)) ++name;
  size_t n = strlen(name);
  while (n > 0 && isspace((unsigned char)name[n - 1])) --n;
  if (n == 0 || n >= sizeof buf) return GR_PIXEL_UNKNOWN;
  memcpy(buf, name, n);
  buf[n] = '\0';
  for (size_t i = 0; i < sizeof gr_type_aliases / sizeof gr_type_aliases[0]; ++i)
    if (gr_strieq(buf, gr_type_aliases[i].name)) return gr_type_aliases[i].type;
  return GR_PIXEL_UNKNOWN;
}

const char *gr_pixel_type_name(gr_pixel_type t) {
  for (size_t i = 0; i < sizeof gr_type_aliases / sizeof gr_type_aliases[0]; ++i)
    if (gr_type_aliases[i].type == t) return gr_type_aliases[i].name;
  return "unknown";
}

size_t gr_pixel_size(gr_pixel_type t) {
  switch (t) {
    case GR_PIXEL_U8:
    case GR_PIXEL_I8: return 1;
    case GR_PIXEL_U16:
    case GR_PIXEL_I16: return 2;
    case GR_PIXEL_U32:
    case GR_PIXEL_I32:
    case GR_PIXEL_F32: return 4;
    case GR_PIXEL_F64: return 8;
    case GR_PIXEL_UNKNOWN: break;
  }
  return 0;
}

int gr_pixel_is_integer(gr_pixel_type t) { return t != GR_PIXEL_F32 && t != GR_PIXEL_F64 && t != GR_PIXEL_UNKNOWN; }

int gr_host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

gr_pixel_type gr_output_type(const gr_image *img, gr_pixel_type requested) {
  if (requested != GR_PIXEL_UNKNOWN) return requested;
  if (img && gr_pixel_size(img->src_type) != 0) return img->src_type;
  return GR_PIXEL_F32;
}

/* ======================================================================== */
/* pixel conversion                                                         */
/* ======================================================================== */

/* memcpy keeps unaligned file buffers legal; the compiler turns it into a load. */
#define GR_CONVERT_IN(T)                                                    \
  do {                                                                      \
    const unsigned char *p = (const unsigned char *)src;                    \
    const size_t step = stride * sizeof(T);                                 \
    for (size_t k = 0; k < n; ++k, p += step) {                             \
      T v;                                                                  \
      if (swap) {                                                           \
        unsigned char b[sizeof(T)];                                         \
        for (size_t j = 0; j < sizeof(T); ++j) b[j] = p[sizeof(T) - 1 - j]; \
        memcpy(&v, b, sizeof v);                                            \
      } else {                                                              \
        memcpy(&v, p, sizeof v);                                            \
      }                                                                     \
      dst[k] = (float)v;                                                    \
    }                                                                       \
  } while (0)

void gr_convert_to_float(const void *src, gr_pixel_type t, int swap, size_t n, size_t stride, float *dst) {
  switch (t) {
    case GR_PIXEL_U8: GR_CONVERT_IN(uint8_t); break;
    case GR_PIXEL_I8: GR_CONVERT_IN(int8_t); break;
    case GR_PIXEL_U16: GR_CONVERT_IN(uint16_t); break;
    case GR_PIXEL_I16: GR_CONVERT_IN(int16_t); break;
    case GR_PIXEL_U32: GR_CONVERT_IN(uint32_t); break;
    case GR_PIXEL_I32: GR_CONVERT_IN(int32_t); break;
    case GR_PIXEL_F32: GR_CONVERT_IN(float); break;
    case GR_PIXEL_F64: GR_CONVERT_IN(double); break;
    case GR_PIXEL_UNKNOWN: break;
  }
}

static double gr_round_clamp(float v, double lo, double hi) {
  if (v != v) return 0.0;
  double d = round((double)v); /* half away from zero, independent of the FP rounding mode */
  if (d < lo) d = lo;
  if (d > hi) d = hi;
  return d;
}

#define GR_CONVERT_OUT_INT(T, LO, HI)                                    \
  do {                                                                   \
    unsigned char *p = (unsigned char *)dst;                             \
    const size_t step = stride * sizeof(T);                              \
    for (size_t k = 0; k < n; ++k, p += step) {                          \
      const T v = (T)gr_round_clamp(src[k], (double)(LO), (double)(HI)); \
      memcpy(p, &v, sizeof v);                                           \
    }                                                                    \
  } while (0)

#define GR_CONVERT_OUT_FLT(T)                   \
  do {                                          \
    unsigned char *p = (unsigned char *)dst;    \
    const size_t step = stride * sizeof(T);     \
    for (size_t k = 0; k < n; ++k, p += step) { \
      const T v = (T)src[k];                    \
      memcpy(p, &v, sizeof v);                  \
    }                                           \
  } while (0)

void gr_convert_from_float(const float *src, size_t n, gr_pixel_type t, void *dst, size_t stride) {
  switch (t) {
    case GR_PIXEL_U8: GR_CONVERT_OUT_INT(uint8_t, 0, UINT8_MAX); break;
    case GR_PIXEL_I8: GR_CONVERT_OUT_INT(int8_t, INT8_MIN, INT8_MAX); break;
    case GR_PIXEL_U16: GR_CONVERT_OUT_INT(uint16_t, 0, UINT16_MAX); break;
    case GR_PIXEL_I16: GR_CONVERT_OUT_INT(int16_t, INT16_MIN, INT16_MAX); break;
    case GR_PIXEL_U32: GR_CONVERT_OUT_INT(uint32_t, 0, UINT32_MAX); break;
    case GR_PIXEL_I32: GR_CONVERT_OUT_INT(int32_t, INT32_MIN, INT32_MAX); break;
    case GR_PIXEL_F32: GR_CONVERT_OUT_FLT(float); break;
    case GR_PIXEL_F64: GR_CONVERT_OUT_FLT(double); break;
    case GR_PIXEL_UNKNOWN: break;
  }
}

/* ======================================================================== */
/* sizes and paths                                                          */
/* ======================================================================== */

int gr_mul_i64(int64_t a, int64_t b, int64_t *out) {
  if (a < 0 || b < 0) return 0;
  if (a != 0 && b > INT64_MAX / a) return 0;
  *out = a * b;
  return 1;
}

int gr_data_bytes(const int64_t size[3], int ncomp, gr_pixel_type t, int64_t *bytes) {
  int64_t n = 1;
  for (int i = 0; i < 3; ++i)
    if (size[i] <= 0 || !gr_mul_i64(n, size[i], &n)) return 0;
  /* The float copy in memory is what must fit, so check both. */
  int64_t nf;
  if (!gr_mul_i64(n, ncomp, &n) || !gr_mul_i64(n, (int64_t)gr_pixel_size(t), bytes) ||
      !gr_mul_i64(n, (int64_t)sizeof(float), &nf))
    return 0;
  if ((uint64_t)nf > (uint64_t)SIZE_MAX / 2 || (uint64_t)*bytes > (uint64_t)SIZE_MAX / 2) return 0;
  return 1;
}

int64_t gr_file_size(FILE *fp) {
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return (int64_t)st.st_size;
}

const char *gr_path_basename(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static char *gr_strdup(const char *s) {
  const size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

char *gr_path_sibling(const char *header_path, const char *name) {
  if (name[0] == '/') return gr_strdup(name);
  const char *slash = strrchr(header_path, '/');
  const size_t dir_len = slash ? (size_t)(slash - header_path) + 1 : 0;
  const size_t n = strlen(name);
  char *out = malloc(dir_len + n + 1);
  if (!out) return NULL;
  memcpy(out, header_path, dir_len);
  memcpy(out + dir_len, name, n + 1);
  return out;
}

/* ======================================================================== */
/* text headers                                                             */
/* ======================================================================== */

long gr_read_line(FILE *fp, char *buf, size_t cap) {
  size_t n = 0;
  int c, any = 0, too_long = 0;
  while ((c = getc(fp)) != EOF) {
    any = 1;
    if (c == '\n') break;
    if (c == '\0') too_long = 1; /* NUL: binary data, not a header line */
    if (n + 1 < cap)
      buf[n++] = (char)c;
    else
      too_long = 1;
    if (too_long) break;
  }
  if (!any) return -1;
  if (too_long) return -2;
  if (n > 0 && buf[n - 1] == '\r') --n;
  buf[n] = '\0';
  return (long)n;
}

const char *gr_printable(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; s && *s && n + 1 < cap; ++s) out[n++] = isprint((unsigned char)*s) ? *s : '?';
  out[n] = '\0';
  return out;
}

char *gr_trim(char *s) {
  while (isspace((unsigned char)*s)) ++s;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
  return s;
}

static int gr_is_sep(char c) { return isspace((unsigned char)c) || c == ',' || c == '(' || c == ')'; }

int gr_parse_doubles(const char *s, double *out, int max) {
  int n = 0;
  for (;;) {
    while (*s && gr_is_sep(*s)) ++s;
    if (!*s) return n;
    if (n == max) return -1;
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (end == s || !isfinite(v) || (*end && !gr_is_sep(*end))) return -1;
    out[n++] = v;
    s = end;
  }
}

int gr_parse_sizes(const char *s, int64_t *out, int max) {
  int n = 0;
  for (;;) {
    while (*s && gr_is_sep(*s)) ++s;
    if (!*s) return n;
    if (n == max || !isdigit((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    const long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || (*end && !gr_is_sep(*end))) return -1;
    out[n++] = (int64_t)v;
    s = end;
  }
}

gr_status gr_io_check_geometry(const gr_geometry *g, const char *path) {
  for (int i = 0; i < 9; ++i)
    if (!isfinite(g->direction[i])) return gr_error(GR_ERR_FORMAT, "'%s': direction matrix is not finite", path);
  if (gr_geometry_validate(g, path) != GR_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", gr_last_error());
    return gr_error(GR_ERR_FORMAT, "invalid geometry in %s", msg);
  }
  return GR_OK;
}

/* ======================================================================== */
/* voxel streams                                                            */
/* ======================================================================== */

enum { GR_IO_CHUNK_VOXELS = 1 << 16, GR_IO_INBUF = 1 << 18 };

typedef struct gr_source {
  FILE *fp;
  const char *path;
  gr_encoding enc;
  z_stream zs;
  unsigned char *in;
  int zinit, eof;
} gr_source;

static gr_status gr_source_read(gr_source *s, unsigned char *dst, size_t n) {
  if (s->enc == GR_ENC_RAW) {
    const size_t got = fread(dst, 1, n, s->fp);
    if (got != n) {
      if (ferror(s->fp)) return gr_error(GR_ERR_IO, "read error in '%s': %s", s->path, strerror(errno));
      return gr_error(GR_ERR_FORMAT, "'%s' is truncated: voxel data ends early", s->path);
    }
    return GR_OK;
  }
  s->zs.next_out = dst;
  s->zs.avail_out = (uInt)n; /* n <= chunk size, well below UINT_MAX */
  while (s->zs.avail_out > 0) {
    if (s->zs.avail_in == 0 && !s->eof) {
      const size_t got = fread(s->in, 1, GR_IO_INBUF, s->fp);
      if (got == 0) {
        if (ferror(s->fp)) return gr_error(GR_ERR_IO, "read error in '%s': %s", s->path, strerror(errno));
        s->eof = 1;
      }
      s->zs.next_in = s->in;
      s->zs.avail_in = (uInt)got;
    }
    const int ret = inflate(&s->zs, Z_NO_FLUSH);
    if (ret == Z_STREAM_END) {
      if (s->zs.avail_out == 0) break;
      /* Concatenated gzip members (pigz, cat a.gz b.gz) continue the stream. */
      if (s->zs.avail_in == 0 && s->eof)
        return gr_error(GR_ERR_FORMAT, "'%s' is truncated: compressed voxel data ends early", s->path);
      if (inflateReset(&s->zs) != Z_OK) return gr_error(GR_ERR_FORMAT, "'%s': corrupt compressed data", s->path);
    } else if (ret == Z_BUF_ERROR) {
      if (s->zs.avail_in == 0 && s->eof)
        return gr_error(GR_ERR_FORMAT, "'%s' is truncated: compressed voxel data ends early", s->path);
    } else if (ret != Z_OK) {
      return gr_error(GR_ERR_FORMAT, "'%s': corrupt compressed voxel data (%s)", s->path,
                      s->zs.msg ? s->zs.msg : "zlib error");
    }
  }
  return GR_OK;
}

gr_status gr_read_voxels(FILE *fp, const char *path, gr_encoding enc, int64_t skip_decoded, gr_pixel_type t, int swap,
                         int ncomp, int64_t nvox, float *out) {
  const size_t esize = gr_pixel_size(t);
  if (esize == 0 || ncomp < 1 || nvox < 0)
    return gr_error(GR_ERR_INTERNAL, "gr_read_voxels: bad arguments for '%s'", path);
  gr_source s;
  memset(&s, 0, sizeof s);
  s.fp = fp;
  s.path = path;
  s.enc = enc;
  gr_status st = GR_OK;
  const size_t vox_bytes = esize * (size_t)ncomp;
  unsigned char *buf = malloc(vox_bytes * GR_IO_CHUNK_VOXELS);
  if (!buf) return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  if (enc == GR_ENC_ZLIB) {
    s.in = malloc(GR_IO_INBUF);
    if (!s.in) {
      free(buf);
      return gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    /* 15 + 32: accept both zlib (MetaImage) and gzip (NRRD) headers. */
    if (inflateInit2(&s.zs, 15 + 32) != Z_OK) {
      free(s.in);
      free(buf);
      return gr_error(GR_ERR_NOMEM, "cannot initialise zlib for '%s'", path);
    }
    s.zinit = 1;
  }
  if (skip_decoded > 0) {
    if (enc == GR_ENC_RAW) {
      if (fseeko(fp, (off_t)skip_decoded, SEEK_CUR) != 0)
        st = gr_error(GR_ERR_FORMAT, "'%s': cannot skip %lld bytes", path, (long long)skip_decoded);
    } else {
      int64_t left = skip_decoded;
      const size_t cap = vox_bytes * GR_IO_CHUNK_VOXELS;
      while (st == GR_OK && left > 0) {
        const size_t n = (uint64_t)left < cap ? (size_t)left : cap;
        st = gr_source_read(&s, buf, n);
        left -= (int64_t)n;
      }
    }
  }
  for (int64_t base = 0; st == GR_OK && base < nvox; base += GR_IO_CHUNK_VOXELS) {
    const size_t m = (size_t)(nvox - base < GR_IO_CHUNK_VOXELS ? nvox - base : GR_IO_CHUNK_VOXELS);
    st = gr_source_read(&s, buf, m * vox_bytes);
    if (st != GR_OK) break;
    for (int c = 0; c < ncomp; ++c)
      gr_convert_to_float(buf + (size_t)c * esize, t, swap, m, (size_t)ncomp,
                          out + (size_t)c * (size_t)nvox + (size_t)base);
  }
  if (s.zinit) inflateEnd(&s.zs);
  free(s.in);
  free(buf);
  return st;
}

gr_status gr_load_voxels(FILE *fp, const char *label, gr_encoding enc, int64_t skip_decoded, gr_pixel_type t, int swap,
                         const gr_geometry *g, int ncomp, int planar, gr_image **out) {
  *out = NULL;
  int64_t bytes;
  if (!gr_data_bytes(g->size, ncomp, t, &bytes) || (skip_decoded > 0 && bytes > INT64_MAX - skip_decoded))
    return gr_error(GR_ERR_FORMAT, "'%s': image size %lldx%lldx%lld is impossible", label, (long long)g->size[0],
                    (long long)g->size[1], (long long)g->size[2]);
  const int64_t fsize = gr_file_size(fp);
  const off_t pos = ftello(fp);
  if (fsize >= 0 && pos >= 0) {
    const int64_t avail = fsize - (int64_t)pos;
    const int64_t need = bytes + (skip_decoded > 0 ? skip_decoded : 0);
    if ((enc == GR_ENC_RAW && need > avail) || (enc == GR_ENC_ZLIB && need / GR_DEFLATE_MAX_RATIO > avail))
      return gr_error(GR_ERR_FORMAT,
                      "'%s' is truncated: %lld bytes of voxel data expected, only %lld bytes follow the header", label,
                      (long long)need, (long long)(avail > 0 ? avail : 0));
  }
  gr_image *img = NULL;
  gr_status st = gr_image_create(g, ncomp, &img);
  if (st != GR_OK) return st;
  const int64_t nvox = gr_image_nvox(img);
  if (planar || ncomp == 1)
    st = gr_read_voxels(fp, label, enc, skip_decoded, t, swap, 1, nvox * ncomp, img->data);
  else
    st = gr_read_voxels(fp, label, enc, skip_decoded, t, swap, ncomp, nvox, img->data);
  if (st != GR_OK) {
    gr_image_destroy(img);
    return st;
  }
  img->src_type = t;
  *out = img;
  return GR_OK;
}

void gr_format_double(char *buf, size_t cap, double v) {
  snprintf(buf, cap, "%.15g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, cap, "%.17g", v);
}

/* ======================================================================== */
/* atomic writes                                                            */
/* ======================================================================== */

/* Process-wide counter so that threads writing the same path never share a
 * temp name; atomic, hence safe without locks. */
static atomic_ulong gr_tmp_counter = 0;

static void gr_atomic_release(gr_atomic_file *af) {
  free(af->path);
  free(af->tmp_path);
  memset(af, 0, sizeof *af);
}

gr_status gr_atomic_open(gr_atomic_file *af, const char *path, int gzip) {
  memset(af, 0, sizeof *af);
  af->path = gr_strdup(path);
  const size_t cap = strlen(path) + 64;
  af->tmp_path = malloc(cap);
  if (!af->path || !af->tmp_path) {
    gr_atomic_release(af); /* nothing created yet, so nothing to remove */
    return gr_error(GR_ERR_NOMEM, "out of memory writing '%s'", path);
  }
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    const unsigned long n = atomic_fetch_add(&gr_tmp_counter, 1UL);
    snprintf(af->tmp_path, cap, "%s.tmp-%ld-%lu", path, (long)getpid(), n);
    fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int e = errno;
    gr_atomic_release(af); /* nothing created: must not remove a stranger's file */
    return gr_error(GR_ERR_IO, "cannot write '%s': %s", path, strerror(e));
  }
  if (gzip) {
    af->gz = gzdopen(fd, "wb6");
    if (!af->gz) close(fd);
  } else {
    af->fp = fdopen(fd, "wb");
    if (!af->fp) close(fd);
  }
  if (!af->gz && !af->fp) {
    gr_atomic_abort(af);
    return gr_error(GR_ERR_IO, "cannot write '%s': cannot open output stream", path);
  }
  return GR_OK;
}

gr_status gr_atomic_write(gr_atomic_file *af, const void *buf, size_t n) {
  if (af->failed) return GR_ERR_IO;
  const unsigned char *p = buf;
  while (n > 0) {
    const size_t m = n > (1u << 30) ? (1u << 30) : n;
    if (af->gz) {
      if (gzwrite((gzFile)af->gz, p, (unsigned)m) != (int)m) {
        int zerr;
        const char *msg = gzerror((gzFile)af->gz, &zerr);
        af->failed = 1;
        return gr_error(GR_ERR_IO, "cannot write '%s': %s", af->path,
                        zerr == Z_ERRNO ? strerror(errno) : (msg ? msg : "zlib error"));
      }
    } else if (fwrite(p, 1, m, af->fp) != m) {
      af->failed = 1;
      return gr_error(GR_ERR_IO, "cannot write '%s': %s", af->path, strerror(errno));
    }
    p += m;
    n -= m;
  }
  return GR_OK;
}

void gr_atomic_abort(gr_atomic_file *af) {
  if (af->gz) gzclose((gzFile)af->gz);
  if (af->fp) fclose(af->fp);
  af->gz = NULL;
  af->fp = NULL;
  if (af->tmp_path) remove(af->tmp_path);
  gr_atomic_release(af);
}

gr_status gr_atomic_commit(gr_atomic_file *af) {
  if (af->failed) {
    gr_atomic_abort(af);
    return GR_ERR_IO; /* the failing write already recorded the message */
  }
  int ok = 1, e = 0;
  if (af->gz) {
    const int r = gzclose((gzFile)af->gz);
    af->gz = NULL;
    if (r != Z_OK) {
      ok = 0;
      e = errno;
    }
  }
  if (af->fp) {
    if (fflush(af->fp) != 0 || ferror(af->fp)) {
      ok = 0;
      e = errno;
    }
    if (fclose(af->fp) != 0 && ok) {
      ok = 0;
      e = errno;
    }
    af->fp = NULL;
  }
  if (ok && rename(af->tmp_path, af->path) != 0) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    char path[1024];
    snprintf(path, sizeof path, "%s", af->path);
    gr_atomic_abort(af);
    return gr_error(GR_ERR_IO, "cannot write '%s': %s", path, e ? strerror(e) : "close failed");
  }
  gr_atomic_release(af);
  return GR_OK;
}

gr_status gr_write_voxels(gr_atomic_file *af, const gr_image *img, gr_pixel_type t, int interleave) {
  const size_t esize = gr_pixel_size(t);
  const int ncomp = img->ncomp;
  const int64_t nvox = gr_image_nvox(img);
  const size_t per_vox = interleave ? esize * (size_t)ncomp : esize;
  unsigned char *buf = malloc(per_vox * GR_IO_CHUNK_VOXELS);
  if (!buf) return gr_error(GR_ERR_NOMEM, "out of memory writing '%s'", af->path);
  gr_status st = GR_OK;
  if (interleave) {
    for (int64_t base = 0; st == GR_OK && base < nvox; base += GR_IO_CHUNK_VOXELS) {
      const size_t m = (size_t)(nvox - base < GR_IO_CHUNK_VOXELS ? nvox - base : GR_IO_CHUNK_VOXELS);
      for (int c = 0; c < ncomp; ++c)
        gr_convert_from_float(img->data + (size_t)c * (size_t)nvox + (size_t)base, m, t, buf + (size_t)c * esize,
                              (size_t)ncomp);
      st = gr_atomic_write(af, buf, m * per_vox);
    }
  } else {
    for (int c = 0; c < ncomp && st == GR_OK; ++c)
      for (int64_t base = 0; st == GR_OK && base < nvox; base += GR_IO_CHUNK_VOXELS) {
        const size_t m = (size_t)(nvox - base < GR_IO_CHUNK_VOXELS ? nvox - base : GR_IO_CHUNK_VOXELS);
        gr_convert_from_float(img->data + (size_t)c * (size_t)nvox + (size_t)base, m, t, buf, 1);
        st = gr_atomic_write(af, buf, m * esize);
      }
  }
  free(buf);
  return st;
}

/* ======================================================================== */
/* dispatch                                                                 */
/* ======================================================================== */

static gr_status gr_unknown_format(const char *path) {
  return gr_error(
      GR_ERR_UNSUPPORTED,
      "cannot tell the image format of '%s' from its name (expected .nii, .nii.gz, .mha, .mhd, .nrrd or .nhdr)", path);
}

gr_status gr_image_read(const char *path, gr_image **out) {
  if (!out) return gr_error(GR_ERR_INVALID_ARG, "gr_image_read: out is NULL");
  *out = NULL;
  if (!path || !*path) return gr_error(GR_ERR_INVALID_ARG, "gr_image_read: empty path");
  switch (gr_format_from_path(path)) {
    case GR_FORMAT_NIFTI: return gr_nifti_read(path, 0, out, NULL, NULL, NULL);
    case GR_FORMAT_META: return gr_meta_read(path, 0, out, NULL, NULL, NULL);
    case GR_FORMAT_NRRD: return gr_nrrd_read(path, 0, out, NULL, NULL, NULL);
    case GR_FORMAT_UNKNOWN: break;
  }
  return gr_unknown_format(path);
}

gr_status gr_image_read_header(const char *path, gr_geometry *geom, int *ncomp, gr_pixel_type *type) {
  if (!path || !*path) return gr_error(GR_ERR_INVALID_ARG, "gr_image_read_header: empty path");
  switch (gr_format_from_path(path)) {
    case GR_FORMAT_NIFTI: return gr_nifti_read(path, 1, NULL, geom, ncomp, type);
    case GR_FORMAT_META: return gr_meta_read(path, 1, NULL, geom, ncomp, type);
    case GR_FORMAT_NRRD: return gr_nrrd_read(path, 1, NULL, geom, ncomp, type);
    case GR_FORMAT_UNKNOWN: break;
  }
  return gr_unknown_format(path);
}

gr_status gr_image_write(const char *path, const gr_image *img, gr_pixel_type type) {
  if (!path || !*path) return gr_error(GR_ERR_INVALID_ARG, "gr_image_write: empty path");
  if (!img || !img->data) return gr_error(GR_ERR_INVALID_ARG, "gr_image_write('%s'): no image data", path);
  if (img->ncomp != 1 && img->ncomp != 3)
    return gr_error(GR_ERR_UNSUPPORTED, "cannot write '%s': images have 1 or 3 components, not %d", path, img->ncomp);
  if (type != GR_PIXEL_UNKNOWN && gr_pixel_size(type) == 0)
    return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': invalid pixel type %d", path, (int)type);
  if (gr_geometry_validate(&img->geom, path) != GR_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", gr_last_error());
    return gr_error(GR_ERR_INVALID_ARG, "cannot write image: %s", msg);
  }
  switch (gr_format_from_path(path)) {
    case GR_FORMAT_NIFTI: return gr_nifti_write(path, img, type);
    case GR_FORMAT_META: return gr_meta_write(path, img, type);
    case GR_FORMAT_NRRD: return gr_nrrd_write(path, img, type);
    case GR_FORMAT_UNKNOWN: break;
  }
  return gr_unknown_format(path);
}

gr_status gr_write_text_header_and_voxels(const char *path, const char *text, size_t len, const char *raw_path,
                                          const gr_image *img, gr_pixel_type t) {
  const int detached = raw_path != NULL;
  gr_status st = GR_OK;
  gr_atomic_file data_af, hdr_af;
  memset(&data_af, 0, sizeof data_af);
  if (detached) {
    st = gr_atomic_open(&data_af, raw_path, 0);
    if (st == GR_OK) st = gr_write_voxels(&data_af, img, t, 1);
    if (st != GR_OK) {
      gr_atomic_abort(&data_af);
      return st;
    }
  }
  st = gr_atomic_open(&hdr_af, path, 0);
  if (st == GR_OK) st = gr_atomic_write(&hdr_af, text, len);
  if (st == GR_OK && !detached) st = gr_write_voxels(&hdr_af, img, t, 1);
  if (st != GR_OK) {
    gr_atomic_abort(&hdr_af);
    if (detached) gr_atomic_abort(&data_af);
    return st;
  }
  if (!detached) return gr_atomic_commit(&hdr_af);
  st = gr_atomic_commit(&data_af);
  if (st != GR_OK) {
    gr_atomic_abort(&hdr_af);
    return st;
  }
  st = gr_atomic_commit(&hdr_af);
  if (st != GR_OK) remove(raw_path);
  return st;
}

gr_status gr_fopen_regular(const char *path, FILE **fp) {
  *fp = fopen(path, "rb");
  if (!*fp) return gr_error(GR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  if (gr_file_size(*fp) < 0) {
    fclose(*fp);
    *fp = NULL;
    return gr_error(GR_ERR_IO, "cannot read '%s': not a regular file", path);
  }
  return GR_OK;
}

gr_status gr_open_detached_data(const char *path, const char *data_file, const char *format, FILE **data,
                                char **label) {
  *data = NULL;
  *label = NULL;
  if (gr_strieq(data_file, "LIST") || strchr(data_file, '%'))
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': %s data split over several files (%s) is not supported", path, format,
                    GR_QUOTE(data_file));
  char *data_path = gr_path_sibling(path, data_file);
  const size_t cap = (data_path ? strlen(data_path) : 0) + strlen(path) + 32;
  char *lab = data_path ? malloc(cap) : NULL;
  gr_status st = GR_OK;
  if (!data_path || !lab) {
    st = gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  } else {
    snprintf(lab, cap, "%s' (data of '%s)", data_path, path);
    *data = fopen(data_path, "rb");
    if (!*data) st = gr_error(GR_ERR_IO, "cannot open '%s', the data file of '%s': %s", data_path, path, strerror(errno));
  }
  free(data_path);
  if (st != GR_OK) {
    free(lab);
    return st;
  }
  *label = lab;
  return GR_OK;
}

gr_status gr_seek_tail_voxels(FILE *data, const char *path, const char *label, const int64_t size[3], int ncomp,
                              gr_pixel_type t, int raw, const char *what) {
  int64_t bytes = 0;
  const int64_t fsize = gr_file_size(data);
  if (!raw) return gr_error(GR_ERR_FORMAT, "'%s': %s requires uncompressed data", path, what);
  if (!gr_data_bytes(size, ncomp, t, &bytes) || fsize < bytes)
    return gr_error(GR_ERR_FORMAT, "'%s' is truncated: %lld bytes of voxel data expected", label, (long long)bytes);
  if (fseeko(data, (off_t)(fsize - bytes), SEEK_SET) != 0) return gr_error(GR_ERR_IO, "cannot seek in '%s'", label);
  return GR_OK;
}
