/* Helpers shared by the format readers/writers under module/src/io/.
 * Not part of the public API. */
#ifndef GIGAREG_IO_INTERNAL_H
#define GIGAREG_IO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "gigareg/image.h"
#include "gigareg/io.h"

/* ---- pixel types --------------------------------------------------------- */

/* Bytes per element, 0 for GR_PIXEL_UNKNOWN. */
size_t gr_pixel_size(gr_pixel_type t);
int gr_pixel_is_integer(gr_pixel_type t);
/* True on little-endian hosts; files record their own byte order. */
int gr_host_is_little_endian(void);

/* dst[k] = (float)src[k * stride] for k < n; stride counts elements, so
 * interleaved components are converted one plane at a time. swap reverses the
 * bytes of each element first (file byte order != host byte order). */
void gr_convert_to_float(const void *src, gr_pixel_type t, int swap, size_t n, size_t stride, float *dst);
/* dst[k * stride] = src[k] converted to t, rounded half away from zero and
 * clamped to the range of integer types (NaN -> 0). Host byte order. */
void gr_convert_from_float(const float *src, size_t n, gr_pixel_type t, void *dst, size_t stride);
/* Resolves GR_PIXEL_UNKNOWN to the image's source type (float if unknown too). */
gr_pixel_type gr_output_type(const gr_image *img, gr_pixel_type requested);

/* ---- overflow-checked sizes ---------------------------------------------- */

/* *out = a * b; returns 0 on overflow or negative operands. */
int gr_mul_i64(int64_t a, int64_t b, int64_t *out);
/* Number of voxel bytes for nvox*ncomp elements of t; returns 0 on overflow or
 * when the total exceeds what this process can address. */
int gr_data_bytes(const int64_t size[3], int ncomp, gr_pixel_type t, int64_t *bytes);
/* Size of an open regular file in bytes, -1 if unknown. */
int64_t gr_file_size(FILE *fp);

/* ---- paths ---------------------------------------------------------------- */

/* Case-insensitive suffix test. */
int gr_path_has_suffix(const char *path, const char *suffix);
/* Joins `name` to the folder of `header_path` unless `name` is absolute.
 * Returns a malloc'ed string or NULL when out of memory. */
char *gr_path_sibling(const char *header_path, const char *name);
/* Final path component (pointer into path). */
const char *gr_path_basename(const char *path);

/* ---- text headers (MetaImage, NRRD) -------------------------------------- */

/* Reads one line (without "\n" or "\r\n") into buf. Returns the length, -1 at
 * end of file with nothing read, -2 when the line does not fit in cap-1 bytes or
 * contains a NUL byte (a binary file is not a header). */
long gr_read_line(FILE *fp, char *buf, size_t cap);
/* Trims ASCII white space in place; returns s advanced past leading blanks. */
char *gr_trim(char *s);
int gr_strieq(const char *a, const char *b);
/* Copies at most cap-1 bytes of s, replacing non-printable bytes with '?', so
 * that messages quoting a corrupt header stay readable text. Returns out. */
const char *gr_printable(char *out, size_t cap, const char *s);
#define GR_QUOTE(s) gr_printable((char[48]){0}, 48, (s))
/* Parses up to `max` doubles separated by blanks, commas or parentheses;
 * returns how many were read, -1 on a malformed or non-finite number. */
int gr_parse_doubles(const char *s, double *out, int max);
/* Same for non-negative integers (sizes); -1 on anything else. */
int gr_parse_sizes(const char *s, int64_t *out, int max);

/* ---- voxel data streams --------------------------------------------------- */

/* Largest expansion factor of deflate: a compressed stream cannot decode to
 * more bytes than this times its own size, which rejects absurd headers
 * before anything is allocated. */
#define GR_DEFLATE_MAX_RATIO 1032

typedef enum gr_encoding { GR_ENC_RAW = 0, GR_ENC_ZLIB /* zlib or gzip, auto-detected */ } gr_encoding;

/* Reads nvox voxels of ncomp interleaved elements of type t from the current
 * position of fp, decoding zlib/gzip when enc says so, and converts them to
 * float planes (out[c * nvox + i]). skip_decoded bytes of decoded data are
 * dropped first (NRRD "byte skip" on compressed data). Short or corrupt data is
 * GR_ERR_FORMAT naming path. */
gr_status gr_read_voxels(FILE *fp, const char *path, gr_encoding enc, int64_t skip_decoded, gr_pixel_type t, int swap,
                         int ncomp, int64_t nvox, float *out);

/* Checks that fp, at its current position, can still supply the voxel bytes
 * (raw: file size; zlib: deflate's maximum ratio) before anything is
 * allocated, then creates the image and reads it. planar: components stored
 * as whole planes (NRRD with the vector axis last) rather than interleaved.
 * label names the file in messages. */
gr_status gr_load_voxels(FILE *fp, const char *label, gr_encoding enc, int64_t skip_decoded, gr_pixel_type t, int swap,
                         const gr_geometry *g, int ncomp, int planar, gr_image **out);

/* ---- atomic writes -------------------------------------------------------- */

/* Output goes to "<path>.tmp-<pid>-<n>" and is renamed over path by commit, so
 * readers never see a partial file. Every failure path removes the temp file. */
typedef struct gr_atomic_file {
  char *path;     /* final name (owned copy) */
  char *tmp_path; /* owned */
  FILE *fp;       /* plain output */
  void *gz;       /* gzFile when gzip output */
  int failed;     /* a write failed; commit refuses */
} gr_atomic_file;

gr_status gr_atomic_open(gr_atomic_file *af, const char *path, int gzip);
gr_status gr_atomic_write(gr_atomic_file *af, const void *buf, size_t n);
/* Closes, flushes and renames. Always releases af; on error nothing is left. */
gr_status gr_atomic_commit(gr_atomic_file *af);
/* Closes and removes the temp file (safe on a zeroed or released af). */
void gr_atomic_abort(gr_atomic_file *af);

/* Converts the planes of img to type t, interleaving components when
 * interleave is set (MetaImage, NRRD) or keeping planes (NIfTI), and writes
 * them in host byte order. */
/* Opens the detached data file a text header names (resolved next to the
 * header). `format` names the header kind in messages. On success *data is
 * open and *label (owned by the caller) reads "<data>' (data of '<header>)". */
gr_status gr_open_detached_data(const char *path, const char *data_file, const char *format, FILE **data,
                                char **label);
/* Seeks to the last `bytes` of voxel data (MetaImage HeaderSize -1, NRRD byte
 * skip -1: "the data is the end of the file"); raw data only. */
gr_status gr_seek_tail_voxels(FILE *data, const char *path, const char *label, const int64_t size[3], int ncomp,
                              gr_pixel_type t, int raw, const char *what);
/* fopen(path, "rb") of a regular file, or GR_ERR_IO naming the file. */
gr_status gr_fopen_regular(const char *path, FILE **fp);
gr_status gr_write_voxels(gr_atomic_file *af, const gr_image *img, gr_pixel_type t, int interleave);
/* Text-header formats (MetaImage, NRRD): header + interleaved voxels in one
 * file, or (raw_path != NULL) header and a detached data file, each written
 * atomically; the data file is committed first so a header never names a
 * missing or stale raw file. */
gr_status gr_write_text_header_and_voxels(const char *path, const char *text, size_t len, const char *raw_path,
                                          const gr_image *img, gr_pixel_type t);

/* Geometry read from a file must be usable: GR_ERR_FORMAT naming path if not. */
gr_status gr_io_check_geometry(const gr_geometry *g, const char *path);

/* ---- slab access (Grid Parallel I/O, slab_io.c) ------------------------------ */

/* Where a file keeps its voxels. Only uncompressed data is addressable by
 * offset; `compressed` says the caller must decode the whole stream instead. */
typedef struct gr_raw_layout {
  gr_geometry geom;
  int ncomp;
  gr_pixel_type type;
  int swap;          /* file byte order differs from the host's */
  int planar;        /* components stored as whole volumes (NIfTI) instead of interleaved */
  int compressed;
  char *data_path;   /* file holding the voxels (malloc'ed; free with free()) */
  int64_t offset;    /* byte offset of voxel 0 in data_path */
  int rescale;       /* NIfTI scl_slope / scl_inter apply */
  double slope, inter;
} gr_raw_layout;

gr_status gr_meta_layout(const char *path, gr_raw_layout *lay);
gr_status gr_nifti_layout(const char *path, gr_raw_layout *lay);
/* Header bytes of an uncompressed file of geometry g (MetaImage with LOCAL
 * data, NIfTI-1/2 with vox_offset): the voxels follow at offset *len. */
gr_status gr_meta_header_bytes(const gr_geometry *g, int ncomp, gr_pixel_type t, char *buf, size_t cap, size_t *len);
gr_status gr_nifti_header_bytes(const gr_geometry *g, int ncomp, gr_pixel_type t, unsigned char *buf, size_t cap,
                                size_t *len);

/* Formats a double with the fewest digits (15 or 17) that read back exactly. */
void gr_format_double(char *buf, size_t cap, double v);

#endif
