/* NIfTI-1/-2 through nifticlib (reading) and a hand-built header (writing).
 *
 * Physical space follows ITK 5's NiftiImageIO so that images, transforms and
 * deformation fields line up with elastix/ANTs output:
 *  - choice between sform and qform as in SetImageIOOrientationFromNIfTI
 *    (sform when it is an orthonormal affine and either the qform is unknown,
 *    the sform is SCANNER_ANAT, or both describe the same space; otherwise the
 *    qform; no known form: origin 0, identity direction);
 *  - RAS (NIfTI) <-> LPS (ITK) by negating the first two rows of the affine;
 *  - spacing from pixdim, direction from the normalised affine columns;
 *  - vector images as dim[5] = 3 planes, components stored as ITK writes them
 *    (LPS, not flipped).
 * Writing fills both qform and sform with code 1 (SCANNER_ANAT) like ITK. The
 * header is written by hand rather than by nifti_image_write because the
 * atomic temp name does not end in .nii/.nii.gz, which nifticlib would reject. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nifti2_io.h>
#include <zlib.h>

#include "core/mat3.h"
#include "io/io_internal.h"

_Static_assert(sizeof(nifti_1_header) == 348, "nifti_1_header must be packed");
_Static_assert(sizeof(nifti_2_header) == 540, "nifti_2_header must be packed");

static gr_pixel_type gr_nifti_to_pixel(int dt) {
  switch (dt) {
    case NIFTI_TYPE_UINT8: return GR_PIXEL_U8;
    case NIFTI_TYPE_INT8: return GR_PIXEL_I8;
    case NIFTI_TYPE_UINT16: return GR_PIXEL_U16;
    case NIFTI_TYPE_INT16: return GR_PIXEL_I16;
    case NIFTI_TYPE_UINT32: return GR_PIXEL_U32;
    case NIFTI_TYPE_INT32: return GR_PIXEL_I32;
    case NIFTI_TYPE_FLOAT32: return GR_PIXEL_F32;
    case NIFTI_TYPE_FLOAT64: return GR_PIXEL_F64;
    default: return GR_PIXEL_UNKNOWN;
  }
}

static int gr_pixel_to_nifti(gr_pixel_type t) {
  switch (t) {
    case GR_PIXEL_U8: return NIFTI_TYPE_UINT8;
    case GR_PIXEL_I8: return NIFTI_TYPE_INT8;
    case GR_PIXEL_U16: return NIFTI_TYPE_UINT16;
    case GR_PIXEL_I16: return NIFTI_TYPE_INT16;
    case GR_PIXEL_U32: return NIFTI_TYPE_UINT32;
    case GR_PIXEL_I32: return NIFTI_TYPE_INT32;
    case GR_PIXEL_F32: return NIFTI_TYPE_FLOAT32;
    case GR_PIXEL_F64: return NIFTI_TYPE_FLOAT64;
    case GR_PIXEL_UNKNOWN: break;
  }
  return 0;
}

/* ---- ITK's sform/qform decision ----------------------------------------- */

static void gr_nifti_top3x3(const nifti_dmat44 *m, double a[9]) {
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) a[r * 3 + c] = m->m[r][c];
}

/* Columns scaled to unit length; 0 when a column vanishes. */
static int gr_nifti_unit_columns(const nifti_dmat44 *m, double u[9], double norms[3]) {
  for (int c = 0; c < 3; ++c) {
    const double n = sqrt(m->m[0][c] * m->m[0][c] + m->m[1][c] * m->m[1][c] + m->m[2][c] * m->m[2][c]);
    if (!(n > 0.0) || !isfinite(n)) return 0;
    if (norms) norms[c] = n;
    for (int r = 0; r < 3; ++r) u[r * 3 + c] = m->m[r][c] / n;
  }
  return 1;
}

/* max |A * B^T - I| <= tol (vnl is_identity semantics). */
static int gr_nifti_abt_identity(const double a[9], const double b[9], double tol) {
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0.0;
      for (int k = 0; k < 3; ++k) s += a[i * 3 + k] * b[j * 3 + k];
      if (fabs(s - (i == j ? 1.0 : 0.0)) > tol) return 0;
    }
  return 1;
}

static int gr_nifti_bottom_row_ok(const nifti_dmat44 *m) {
  const double err = fabs(m->m[3][0]) + fabs(m->m[3][1]) + fabs(m->m[3][2]) + fabs(m->m[3][3] - 1.0);
  return err <= 1.1920929e-07; /* float epsilon, as ITK */
}

/* ITK: "sform decomposable without skew" = invertible affine with orthonormal
 * normalised 3x3 part. */
static int gr_nifti_sform_rigid(const nifti_dmat44 *s) {
  double a[9], u[9];
  gr_nifti_top3x3(s, a);
  if (!gr_nifti_bottom_row_ok(s) || !(fabs(gr_mat3_det(a)) > 0.0)) return 0;
  if (!gr_nifti_unit_columns(s, u, NULL)) return 0;
  return gr_nifti_abt_identity(u, u, 1e-4);
}

/* ITK's cheap test: the two matrices agree element by element. */
static int gr_nifti_forms_equal(const nifti_dmat44 *s, const nifti_dmat44 *q) {
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      if (fabs(s->m[r][c] - q->m[r][c]) > 1e-5) return 0;
  double t = 0.0, b = 0.0;
  for (int r = 0; r < 4; ++r) t += fabs(s->m[r][3] - q->m[r][3]);
  for (int c = 0; c < 4; ++c) b += fabs(s->m[3][c] - q->m[3][c]);
  return t <= 1e-7 && b <= 1e-7;
}

/* ITK compares the SVDs; for the column-orthogonal matrices that reach this
 * point that amounts to equal column norms, equal unit columns and equal offsets. */
static int gr_nifti_forms_similar(const nifti_dmat44 *s, const nifti_dmat44 *q) {
  double us[9], uq[9], ns[3], nq[3];
  if (!gr_nifti_unit_columns(s, us, ns) || !gr_nifti_unit_columns(q, uq, nq)) return 0;
  for (int c = 0; c < 3; ++c)
    if (fabs(ns[c] - nq[c]) > 1e-4) return 0;
  if (!gr_nifti_abt_identity(us, uq, 1e-4)) return 0;
  for (int r = 0; r < 4; ++r)
    if (fabs(s->m[r][3] - q->m[r][3]) > 1e-4) return 0;
  for (int c = 0; c < 4; ++c)
    if (fabs(s->m[3][c] - q->m[3][c]) > 1e-4) return 0;
  return 1;
}

/* Returns the chosen voxel-to-RAS matrix, or NULL when ITK would refuse. */
static const nifti_dmat44 *gr_nifti_pick_form(const nifti_image *nim) {
  const int qcode = nim->qform_code, scode = nim->sform_code;
  int prefer_sform = gr_nifti_forms_equal(&nim->sto_xyz, &nim->qto_xyz);
  if (!prefer_sform || scode != NIFTI_XFORM_UNKNOWN) {
    if (gr_nifti_sform_rigid(&nim->sto_xyz)) {
      if (qcode == NIFTI_XFORM_UNKNOWN && scode != NIFTI_XFORM_UNKNOWN)
        prefer_sform = 1;
      else if (scode == NIFTI_XFORM_SCANNER_ANAT)
        prefer_sform = 1;
      else if (qcode != NIFTI_XFORM_UNKNOWN && scode != NIFTI_XFORM_UNKNOWN)
        prefer_sform = gr_nifti_forms_similar(&nim->sto_xyz, &nim->qto_xyz);
    }
  }
  if (prefer_sform) return &nim->sto_xyz;
  if (qcode != NIFTI_XFORM_UNKNOWN) return &nim->qto_xyz;
  return NULL;
}

/* ---- header interpretation ----------------------------------------------- */

typedef struct gr_nifti_info {
  gr_geometry geom;
  int ncomp;
  gr_pixel_type type;
  double slope, inter;
  int rescale;
} gr_nifti_info;

static gr_status gr_nifti_interpret(const nifti_image *nim, const char *path, gr_nifti_info *info) {
  memset(info, 0, sizeof *info);
  info->type = gr_nifti_to_pixel(nim->datatype);
  if (info->type == GR_PIXEL_UNKNOWN)
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': NIfTI datatype %d (%s) is not supported", path, nim->datatype,
                    nifti_datatype_string(nim->datatype));
  if ((size_t)nim->nbyper != gr_pixel_size(info->type))
    return gr_error(GR_ERR_FORMAT, "'%s': %d bytes per voxel do not match datatype %d", path, nim->nbyper,
                    nim->datatype);

  const int64_t ndim = nim->dim[0];
  if (ndim < 1 || ndim > 7) return gr_error(GR_ERR_FORMAT, "'%s': invalid NIfTI dim[0] = %lld", path, (long long)ndim);
  for (int k = 1; k <= ndim; ++k)
    if (nim->dim[k] < 1)
      return gr_error(GR_ERR_FORMAT, "'%s': invalid NIfTI dim[%d] = %lld", path, k, (long long)nim->dim[k]);
  if (ndim < 3)
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': 2D images are not supported (NIfTI dim[0] = %lld)", path,
                    (long long)ndim);
  info->ncomp = 1;
  for (int k = 4; k <= ndim; ++k) {
    const int64_t d = nim->dim[k];
    if (d == 1) continue;
    if (k == 5 && d == 3) {
      info->ncomp = 3;
      continue;
    }
    if (k == 5)
      return gr_error(GR_ERR_UNSUPPORTED, "'%s': %lld-component images are not supported (1 or 3 components)", path,
                      (long long)d);
    if (k == 4)
      return gr_error(GR_ERR_UNSUPPORTED, "'%s': 4D images are not supported (NIfTI dim[4] = %lld time points)", path,
                      (long long)d);
    return gr_error(GR_ERR_UNSUPPORTED, "'%s': %lld-dimensional images are not supported (NIfTI dim[%d] = %lld)", path,
                    (long long)ndim, k, (long long)d);
  }

  gr_geometry *g = &info->geom;
  g->size[0] = nim->dim[1];
  g->size[1] = nim->dim[2];
  g->size[2] = nim->dim[3];
  const double pix[3] = {nim->dx, nim->dy, nim->dz};

  if (nim->qform_code == NIFTI_XFORM_UNKNOWN && nim->sform_code == NIFTI_XFORM_UNKNOWN) {
    /* ITK (non-Analyze flavour): origin 0, identity direction, pixdim spacing. */
    for (int i = 0; i < 3; ++i) {
      g->spacing[i] = (isfinite(pix[i]) && pix[i] != 0.0) ? fabs(pix[i]) : 1.0;
      g->origin[i] = 0.0;
      for (int j = 0; j < 3; ++j) g->direction[i * 3 + j] = i == j ? 1.0 : 0.0;
    }
  } else {
    const nifti_dmat44 *m = gr_nifti_pick_form(nim);
    if (!m)
      return gr_error(GR_ERR_UNSUPPORTED,
                      "'%s': the sform is not a rigid (orthonormal) transform and there is no qform; "
                      "only orthonormal direction cosines are supported",
                      path);
    double u[9], norms[3];
    if (!gr_nifti_unit_columns(m, u, norms))
      return gr_error(GR_ERR_FORMAT, "'%s': the NIfTI voxel-to-world matrix has a zero column", path);
    for (int r = 0; r < 3; ++r) {
      const double flip = r < 2 ? -1.0 : 1.0; /* RAS -> LPS */
      g->origin[r] = flip * m->m[r][3];
      for (int c = 0; c < 3; ++c) g->direction[r * 3 + c] = flip * u[r * 3 + c];
    }
    for (int i = 0; i < 3; ++i) g->spacing[i] = (isfinite(pix[i]) && pix[i] > 0.0) ? pix[i] : norms[i];
  }
  gr_status st = gr_io_check_geometry(g, path);
  if (st != GR_OK) return st;

  /* ITK's MustRescale: slope neither 0 nor NaN, and (slope, inter) != (1, 0). */
  const double slope = nim->scl_slope, inter = isfinite(nim->scl_inter) ? nim->scl_inter : 0.0;
  if (isfinite(slope) && slope != 0.0 && (slope != 1.0 || inter != 0.0)) {
    info->rescale = 1;
    info->slope = slope;
    info->inter = inter;
  }
  return GR_OK;
}

static uint32_t gr_bswap32(uint32_t v) { return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24); }

/* Reads the 348- or 540-byte header through zlib, which passes uncompressed
 * files through unchanged, and lets nifticlib interpret it (byte swapping,
 * qform/sform matrices). Deliberately not nifti_image_read: given "x.nii.gz"
 * it opens "x.nii" when that exists, i.e. possibly a different image. */
static gr_status gr_nifti_read_header(FILE *f, const char *path, nifti_image **out, int *swap) {
  *out = NULL;
  union {
    nifti_1_header h1;
    nifti_2_header h2;
    unsigned char b[sizeof(nifti_2_header)];
  } u;
  memset(&u, 0, sizeof u);
  /* The duplicate shares f's file offset, which buffered reads have moved. */
  const int fd = dup(fileno(f));
  gzFile gz = fd >= 0 && lseek(fd, 0, SEEK_SET) == 0 ? gzdopen(fd, "rb") : NULL;
  if (!gz) {
    if (fd >= 0) close(fd);
    return gr_error(GR_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
  }
  int got = gzread(gz, u.b, (unsigned)sizeof(nifti_1_header));
  int version = 0;
  uint32_t sz = 0;
  if (got >= 4) {
    memcpy(&sz, u.b, 4);
    *swap = sz != 348 && sz != 540;
    if (*swap) sz = gr_bswap32(sz);
    if (sz == 348 && got == (int)sizeof(nifti_1_header)) {
      version = 1;
    } else if (sz == 540 && got == (int)sizeof(nifti_1_header)) {
      const unsigned rest = (unsigned)(sizeof(nifti_2_header) - sizeof(nifti_1_header));
      if (gzread(gz, u.b + sizeof(nifti_1_header), rest) == (int)rest) version = 2;
    }
  }
  gzclose(gz);
  if (!version) {
    if (sz == 348 || sz == 540) return gr_error(GR_ERR_FORMAT, "'%s' is truncated: incomplete NIfTI header", path);
    return gr_error(GR_ERR_FORMAT, "'%s' is not a NIfTI file (bad header size)", path);
  }
  const char *magic = version == 1 ? u.h1.magic : u.h2.magic;
  if (memcmp(magic, version == 1 ? "n+1" : "n+2", 4) != 0)
    return gr_error(GR_ERR_FORMAT, "'%s' is not a single-file NIfTI image (no n+%d magic)", path, version);
  /* nifticlib indexes dim[] and pixdim[] up to dim[0] without a bound check. */
  int64_t dim0;
  if (version == 1) {
    uint16_t d;
    memcpy(&d, &u.h1.dim[0], 2);
    dim0 = *swap ? (int16_t)(uint16_t)((d >> 8) | (d << 8)) : (int16_t)d;
  } else {
    uint64_t d;
    memcpy(&d, &u.h2.dim[0], 8);
    if (*swap) d = ((uint64_t)gr_bswap32((uint32_t)d) << 32) | gr_bswap32((uint32_t)(d >> 32));
    dim0 = (int64_t)d;
  }
  if (dim0 < 1 || dim0 > 7)
    return gr_error(GR_ERR_FORMAT, "'%s': corrupt NIfTI header (dim[0] = %lld)", path, (long long)dim0);
  nifti_image *nim = version == 1 ? nifti_convert_n1hdr2nim(u.h1, path) : nifti_convert_n2hdr2nim(u.h2, path);
  if (!nim) return gr_error(GR_ERR_FORMAT, "'%s': corrupt NIfTI header", path);
  *out = nim;
  return GR_OK;
}

gr_status gr_nifti_read(const char *path, int header_only, gr_image **out, gr_geometry *geom, int *ncomp,
                        gr_pixel_type *type) {
  if (out) *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return gr_error(GR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  if (gr_file_size(f) < 0) {
    fclose(f);
    return gr_error(GR_ERR_IO, "cannot read '%s': not a regular file", path);
  }
  unsigned char magic[2] = {0, 0};
  const int gz = fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;

  nifti_image *nim = NULL;
  int swap = 0;
  gr_nifti_info info;
  gr_status st = gr_nifti_read_header(f, path, &nim, &swap);
  if (st == GR_OK) st = gr_nifti_interpret(nim, path, &info);
  const int64_t offset = nim ? nim->iname_offset : 0;
  nifti_image_free(nim);
  if (st == GR_OK) {
    if (geom) *geom = info.geom;
    if (ncomp) *ncomp = info.ncomp;
    if (type) *type = info.type;
  }
  if (st != GR_OK || header_only) {
    fclose(f);
    return st;
  }
  if (offset < 0 || (!gz && fseeko(f, (off_t)offset, SEEK_SET) != 0) || (gz && fseeko(f, 0, SEEK_SET) != 0)) {
    fclose(f);
    return gr_error(GR_ERR_FORMAT, "'%s': invalid NIfTI vox_offset %lld", path, (long long)offset);
  }
  /* NIfTI's component-slowest layout is exactly our plane layout. */
  gr_image *img = NULL;
  st = gr_load_voxels(f, path, gz ? GR_ENC_ZLIB : GR_ENC_RAW, gz ? offset : 0, info.type, swap, &info.geom, info.ncomp,
                      1, &img);
  fclose(f);
  if (st != GR_OK) return st;
  if (info.rescale) {
    const size_t n = (size_t)gr_image_nvox(img) * (size_t)info.ncomp;
    for (size_t i = 0; i < n; ++i) img->data[i] = (float)((double)img->data[i] * info.slope + info.inter);
    img->src_type = GR_PIXEL_F32; /* scaled values are no longer labels of the stored type */
  }
  *out = img;
  return GR_OK;
}

/* ---- writing ------------------------------------------------------------- */

typedef struct gr_nifti_xform {
  double srow[3][4];
  double qb, qc, qd, qx, qy, qz, qfac;
} gr_nifti_xform;

static void gr_nifti_make_xform(const gr_geometry *g, gr_nifti_xform *x) {
  nifti_dmat44 m;
  memset(&m, 0, sizeof m);
  for (int r = 0; r < 3; ++r) {
    const double flip = r < 2 ? -1.0 : 1.0; /* LPS -> RAS */
    for (int c = 0; c < 3; ++c) m.m[r][c] = flip * g->direction[r * 3 + c] * g->spacing[c];
    m.m[r][3] = flip * g->origin[r];
  }
  m.m[3][3] = 1.0;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) x->srow[r][c] = m.m[r][c];
  /* nifticlib orthogonalises the 3x3 part (polar decomposition) as ITK does
   * before it builds the quaternion. */
  double dx, dy, dz;
  nifti_dmat44_to_quatern(m, &x->qb, &x->qc, &x->qd, &x->qx, &x->qy, &x->qz, &dx, &dy, &dz, &x->qfac);
}

static void gr_nifti1_header(const gr_image *img, int dt, size_t esize, const gr_nifti_xform *x, nifti_1_header *h) {
  memset(h, 0, sizeof *h);
  h->sizeof_hdr = 348;
  const gr_geometry *g = &img->geom;
  h->dim[0] = img->ncomp == 3 ? 5 : 3;
  for (int i = 0; i < 3; ++i) h->dim[i + 1] = (short)g->size[i];
  for (int i = 4; i < 8; ++i) h->dim[i] = 1;
  if (img->ncomp == 3) {
    h->dim[5] = 3;
    h->intent_code = NIFTI_INTENT_VECTOR;
  }
  h->datatype = (short)dt;
  h->bitpix = (short)(8 * esize);
  h->pixdim[0] = (float)x->qfac;
  for (int i = 0; i < 3; ++i) h->pixdim[i + 1] = (float)g->spacing[i];
  for (int i = 4; i < 8; ++i) h->pixdim[i] = 1.0f;
  h->vox_offset = 352.0f;
  h->scl_slope = 1.0f;
  h->scl_inter = 0.0f;
  h->xyzt_units = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
  snprintf(h->descrip, sizeof h->descrip, "GigaReg");
  h->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  h->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  h->quatern_b = (float)x->qb;
  h->quatern_c = (float)x->qc;
  h->quatern_d = (float)x->qd;
  h->qoffset_x = (float)x->qx;
  h->qoffset_y = (float)x->qy;
  h->qoffset_z = (float)x->qz;
  for (int c = 0; c < 4; ++c) {
    h->srow_x[c] = (float)x->srow[0][c];
    h->srow_y[c] = (float)x->srow[1][c];
    h->srow_z[c] = (float)x->srow[2][c];
  }
  memcpy(h->magic, "n+1", 4);
}

static void gr_nifti2_header(const gr_image *img, int dt, size_t esize, const gr_nifti_xform *x, nifti_2_header *h) {
  memset(h, 0, sizeof *h);
  h->sizeof_hdr = 540;
  memcpy(h->magic, "n+2\0\r\n\032\n", 8);
  const gr_geometry *g = &img->geom;
  h->dim[0] = img->ncomp == 3 ? 5 : 3;
  for (int i = 0; i < 3; ++i) h->dim[i + 1] = g->size[i];
  for (int i = 4; i < 8; ++i) h->dim[i] = 1;
  if (img->ncomp == 3) {
    h->dim[5] = 3;
    h->intent_code = NIFTI_INTENT_VECTOR;
  }
  h->datatype = (int16_t)dt;
  h->bitpix = (int16_t)(8 * esize);
  h->pixdim[0] = x->qfac;
  for (int i = 0; i < 3; ++i) h->pixdim[i + 1] = g->spacing[i];
  for (int i = 4; i < 8; ++i) h->pixdim[i] = 1.0;
  h->vox_offset = 544;
  h->scl_slope = 1.0;
  h->scl_inter = 0.0;
  h->xyzt_units = NIFTI_UNITS_MM | NIFTI_UNITS_SEC;
  snprintf(h->descrip, sizeof h->descrip, "GigaReg");
  h->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  h->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  h->quatern_b = x->qb;
  h->quatern_c = x->qc;
  h->quatern_d = x->qd;
  h->qoffset_x = x->qx;
  h->qoffset_y = x->qy;
  h->qoffset_z = x->qz;
  for (int c = 0; c < 4; ++c) {
    h->srow_x[c] = x->srow[0][c];
    h->srow_y[c] = x->srow[1][c];
    h->srow_z[c] = x->srow[2][c];
  }
}

gr_status gr_nifti_write(const char *path, const gr_image *img, gr_pixel_type type) {
  const gr_pixel_type t = gr_output_type(img, type);
  const int dt = gr_pixel_to_nifti(t);
  const size_t esize = gr_pixel_size(t);
  if (!dt || !esize) return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': invalid pixel type %d", path, (int)t);
  int64_t bytes;
  if (!gr_data_bytes(img->geom.size, img->ncomp, t, &bytes))
    return gr_error(GR_ERR_INVALID_ARG, "cannot write '%s': image too large", path);
  gr_nifti_xform x;
  gr_nifti_make_xform(&img->geom, &x);

  /* NIfTI-1 stores dims as short; larger grids need NIfTI-2 (ITK would refuse). */
  int nifti2 = 0;
  for (int i = 0; i < 3; ++i)
    if (img->geom.size[i] > 32767) nifti2 = 1;

  gr_atomic_file af;
  gr_status st = gr_atomic_open(&af, path, gr_path_has_suffix(path, ".gz"));
  if (st != GR_OK) return st;
  const unsigned char no_extension[4] = {0, 0, 0, 0};
  if (nifti2) {
    nifti_2_header h;
    gr_nifti2_header(img, dt, esize, &x, &h);
    st = gr_atomic_write(&af, &h, sizeof h);
  } else {
    nifti_1_header h;
    gr_nifti1_header(img, dt, esize, &x, &h);
    st = gr_atomic_write(&af, &h, sizeof h);
  }
  if (st == GR_OK) st = gr_atomic_write(&af, no_extension, sizeof no_extension);
  if (st == GR_OK) st = gr_write_voxels(&af, img, t, 0);
  if (st != GR_OK) {
    gr_atomic_abort(&af);
    return st;
  }
  return gr_atomic_commit(&af);
}

/* ---- slab access ----------------------------------------------------------- */

gr_status gr_nifti_layout(const char *path, gr_raw_layout *lay) {
  memset(lay, 0, sizeof *lay);
  FILE *f = fopen(path, "rb");
  if (!f) return gr_error(GR_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  unsigned char magic[2] = {0, 0};
  lay->compressed = fread(magic, 1, 2, f) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  nifti_image *nim = NULL;
  int swap = 0;
  gr_nifti_info info;
  gr_status st = gr_nifti_read_header(f, path, &nim, &swap);
  if (st == GR_OK) st = gr_nifti_interpret(nim, path, &info);
  if (st == GR_OK) {
    lay->geom = info.geom;
    lay->ncomp = info.ncomp;
    lay->type = info.type;
    lay->swap = swap;
    lay->planar = 1; /* NIfTI: component slowest */
    lay->offset = nim->iname_offset;
    lay->rescale = info.rescale;
    lay->slope = info.slope;
    lay->inter = info.inter;
    lay->data_path = malloc(strlen(path) + 1);
    if (lay->data_path) strcpy(lay->data_path, path);
    else st = gr_error(GR_ERR_NOMEM, "out of memory reading '%s'", path);
  }
  nifti_image_free(nim);
  fclose(f);
  return st;
}

gr_status gr_nifti_header_bytes(const gr_geometry *g, int ncomp, gr_pixel_type t, unsigned char *buf, size_t cap,
                                size_t *len) {
  const int dt = gr_pixel_to_nifti(t);
  const size_t esize = gr_pixel_size(t);
  if (!dt || !esize) return gr_error(GR_ERR_INVALID_ARG, "NIfTI: invalid pixel type %d", (int)t);
  gr_image img;
  memset(&img, 0, sizeof img);
  img.geom = *g;
  img.ncomp = ncomp;
  gr_nifti_xform x;
  gr_nifti_make_xform(g, &x);
  int nifti2 = 0;
  for (int i = 0; i < 3; ++i)
    if (g->size[i] > 32767) nifti2 = 1;
  const size_t need = (nifti2 ? sizeof(nifti_2_header) : sizeof(nifti_1_header)) + 4;
  if (cap < need) return gr_error(GR_ERR_INTERNAL, "NIfTI header buffer too small");
  memset(buf, 0, need); /* the 4 zero bytes: no extension */
  if (nifti2) {
    nifti_2_header h;
    gr_nifti2_header(&img, dt, esize, &x, &h);
    memcpy(buf, &h, sizeof h);
  } else {
    nifti_1_header h;
    gr_nifti1_header(&img, dt, esize, &x, &h);
    memcpy(buf, &h, sizeof h);
  }
  *len = need;
  return GR_OK;
}
