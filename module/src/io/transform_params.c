/* elastix 5.0.1 TransformParameters files: writer (one stage result) and a
 * reader for chains of linear transforms (-t0).
 *
 * The writer reproduces the key order, comments and formats of elastix 5.0.1's
 * TransformBase::WriteToFile, the transform-specific WriteToFile methods,
 * ResampleInterpolatorBase and ResamplerBase, with two deliberate changes:
 * numbers are written with enough digits to round-trip (elastix writes 6
 * significant digits for parameters, 10 for geometry), and ResultImagePixelType
 * defaults to "float" (elastix's "short" truncates intensities).
 *
 * Direction is written column by column, "direction(j, i)" for i over columns
 * and j over rows, which is how elastix writes and reads it. */
#define _XOPEN_SOURCE 700 /* realpath, getpid, access */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gigareg/elastix_io.h"
#include "gigareg/params.h"

#define GR_TP_MAX_CHAIN 32

/* ---- output configuration -------------------------------------------------- */

void gr_output_config_defaults(gr_output_config *oc) {
  memset(oc, 0, sizeof *oc);
  oc->write_result_image = 1;
  strcpy(oc->result_format, "mhd");
  oc->result_pixel_type = GR_PIXEL_F32;
  oc->default_pixel_value = 0.0;
  oc->final_bspline_order = 3;
  oc->compress_result_image = 0;
}

static const struct {
  const char *name;
  gr_pixel_type type;
} gr_elx_pixel_names[] = {
    {"float", GR_PIXEL_F32},          {"double", GR_PIXEL_F64}, {"short", GR_PIXEL_I16},
    {"unsigned short", GR_PIXEL_U16}, {"char", GR_PIXEL_I8},    {"unsigned char", GR_PIXEL_U8},
    {"int", GR_PIXEL_I32},            {"unsigned int", GR_PIXEL_U32},
};

const char *gr_elastix_pixel_type_name(gr_pixel_type t) {
  for (size_t i = 0; i < sizeof gr_elx_pixel_names / sizeof gr_elx_pixel_names[0]; ++i)
    if (gr_elx_pixel_names[i].type == t) return gr_elx_pixel_names[i].name;
  return NULL;
}

gr_pixel_type gr_elastix_pixel_type_from_name(const char *name) {
  if (!name) return GR_PIXEL_UNKNOWN;
  for (size_t i = 0; i < sizeof gr_elx_pixel_names / sizeof gr_elx_pixel_names[0]; ++i)
    if (strcmp(gr_elx_pixel_names[i].name, name) == 0) return gr_elx_pixel_names[i].type;
  return GR_PIXEL_UNKNOWN;
}

/* ---- number and string formatting ---------------------------------------- */

/* Shortest of %.15g / %.16g / %.17g that reads back to exactly v: readable
 * for round numbers, exact for everything else. */
static void fmt_num(char *buf, size_t n, double v) {
  if (v == 0.0) v = 0.0; /* no "-0" in files */
  for (int prec = 15; prec <= 17; ++prec) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

static void put_nums(FILE *fp, const char *key, const double *v, int n) {
  char b[40];
  fprintf(fp, "(%s", key);
  for (int i = 0; i < n; ++i) {
    fmt_num(b, sizeof b, v[i]);
    fprintf(fp, " %s", b);
  }
  fputs(")\n", fp);
}

/* A path transformix can read back: its parser has no escapes, cuts every line
 * at "//" (even inside quotes), turns tabs into spaces and rejects values
 * containing any of ,;!@#$%&|<>? . Repeated slashes are collapsed (same file
 * on POSIX); the rest is refused with a message naming the character. */
static gr_status elastix_safe_path(const char *what, const char *in, char **out) {
  *out = NULL;
  if (!in || !*in) return gr_error(GR_ERR_INVALID_ARG, "%s: empty path", what);
  for (const char *p = in; *p; ++p) {
    const unsigned char c = (unsigned char)*p;
    if (c < 0x20 || c == 0x7f || c == '"' || strchr(",;!@#$%&|<>?", c))
      return gr_error(GR_ERR_INVALID_ARG,
                      "%s '%s' contains '%c' (0x%02x), which elastix's parameter file parser cannot read back", what, in,
                      c >= 0x20 && c < 0x7f ? c : '?', c);
  }
  char *s = malloc(strlen(in) + 1);
  if (!s) return gr_error(GR_ERR_NOMEM, "cannot allocate a path");
  char *d = s;
  for (const char *p = in; *p; ++p)
    if (!(*p == '/' && d > s && d[-1] == '/')) *d++ = *p;
  *d = '\0';
  *out = s;
  return GR_OK;
}

/* ---- writer ---------------------------------------------------------------- */

static const char *transform_name(gr_stage_kind k) {
  switch (k) {
    case GR_STAGE_TRANSLATION: return "TranslationTransform";
    case GR_STAGE_RIGID: return "EulerTransform";
    case GR_STAGE_AFFINE: return "AffineTransform";
    case GR_STAGE_GREEDY:
    case GR_STAGE_SYN: return "DeformationFieldTransform";
  }
  return NULL;
}

static int expected_nparams(gr_stage_kind k) {
  switch (k) {
    case GR_STAGE_TRANSLATION: return 3;
    case GR_STAGE_RIGID: return 6;
    case GR_STAGE_AFFINE: return 12;
    default: return 0;
  }
}

static int all_finite(const double *v, int n) {
  for (int i = 0; i < n; ++i)
    if (!isfinite(v[i])) return 0;
  return 1;
}

static gr_status check_write_args(const char *path, const gr_stage_result *r, const gr_geometry *g,
                                  const gr_output_config *oc, const char *field_path) {
  if (!path || !*path || !r || !g) return gr_error(GR_ERR_INVALID_ARG, "gr_transform_parameters_write: missing argument");
  if (!transform_name(r->kind)) return gr_error(GR_ERR_INVALID_ARG, "%s: unknown stage kind %d", path, (int)r->kind);
  const int np = expected_nparams(r->kind);
  if (np && r->nparams != np)
    return gr_error(GR_ERR_INVALID_ARG, "%s: %s needs %d parameters, the stage result has %d", path,
                    transform_name(r->kind), np, r->nparams);
  if (!np && !field_path)
    return gr_error(GR_ERR_INVALID_ARG, "%s: a deformable stage needs the displacement field file name", path);
  if (np && (!all_finite(r->params, np) || !all_finite(r->center, 3)))
    return gr_error(GR_ERR_NONFINITE, "%s: %s parameters or centre are not finite", path, transform_name(r->kind));
  gr_status s = gr_geometry_validate(g, path);
  if (s != GR_OK) return s;
  if (!all_finite(g->direction, 9)) return gr_error(GR_ERR_NONFINITE, "%s: fixed image direction is not finite", path);
  if (!isfinite(oc->default_pixel_value))
    return gr_error(GR_ERR_NONFINITE, "%s: DefaultPixelValue is not finite", path);
  if (oc->final_bspline_order < 0 || oc->final_bspline_order > 5)
    return gr_error(GR_ERR_INVALID_ARG, "%s: FinalBSplineInterpolationOrder %d must be in 0..5", path,
                    oc->final_bspline_order);
  if (!gr_elastix_pixel_type_name(oc->result_pixel_type))
    return gr_error(GR_ERR_INVALID_ARG, "%s: result pixel type %d has no elastix name", path, (int)oc->result_pixel_type);
  if (memchr(oc->result_format, '\0', sizeof oc->result_format) == NULL || !oc->result_format[0] ||
      strpbrk(oc->result_format, "\"/ \t\n"))
    return gr_error(GR_ERR_INVALID_ARG, "%s: bad ResultImageFormat", path);
  return GR_OK;
}

static void write_header(FILE *fp, const gr_stage_result *r, const gr_geometry *g, const char *initial) {
  const int np = expected_nparams(r->kind);
  fprintf(fp, "(Transform \"%s\")\n", transform_name(r->kind));
  fprintf(fp, "(NumberOfParameters %d)\n", np);
  /* elastix writes no TransformParameters line for a deformation field
   * (m_ReadWriteTransformParameters is false there). */
  if (np) put_nums(fp, "TransformParameters", r->params, np);
  fprintf(fp, "(InitialTransformParametersFileName \"%s\")\n", initial ? initial : "NoInitialTransform");
  fputs("(UseBinaryFormatForTransformationParameters \"false\")\n", fp);
  fputs("(HowToCombineTransforms \"Compose\")\n", fp);

  fputs("\n// Image specific\n", fp);
  fputs("(FixedImageDimension 3)\n(MovingImageDimension 3)\n", fp);
  fputs("(FixedInternalImagePixelType \"float\")\n(MovingInternalImagePixelType \"float\")\n", fp);
  fprintf(fp, "(Size %lld %lld %lld)\n", (long long)g->size[0], (long long)g->size[1], (long long)g->size[2]);
  fputs("(Index 0 0 0)\n", fp);
  put_nums(fp, "Spacing", g->spacing, 3);
  put_nums(fp, "Origin", g->origin, 3);
  double dcols[9];
  for (int c = 0; c < 3; ++c)
    for (int rr = 0; rr < 3; ++rr) dcols[c * 3 + rr] = g->direction[rr * 3 + c];
  put_nums(fp, "Direction", dcols, 9);
  fputs("(UseDirectionCosines \"true\")\n", fp);
}

static void write_specific(FILE *fp, const gr_stage_result *r, const char *field) {
  switch (r->kind) {
    case GR_STAGE_TRANSLATION: break; /* elastix writes nothing specific */
    case GR_STAGE_RIGID:
      fputs("\n// EulerTransform specific\n", fp);
      put_nums(fp, "CenterOfRotationPoint", r->center, 3);
      fputs("(ComputeZYX \"false\")\n", fp);
      break;
    case GR_STAGE_AFFINE:
      fputs("\n// AdvancedAffineTransform specific\n", fp);
      put_nums(fp, "CenterOfRotationPoint", r->center, 3);
      break;
    case GR_STAGE_GREEDY:
    case GR_STAGE_SYN:
      fputs("\n// DeformationFieldTransform specific\n", fp);
      fprintf(fp, "(DeformationFieldFileName \"%s\")\n", field);
      /* transformix's default is 0 (nearest neighbour): always say linear. */
      fputs("(DeformationFieldInterpolationOrder 1)\n", fp);
      break;
  }
}

static void write_resampler(FILE *fp, const gr_output_config *oc) {
  char b[40];
  fputs("\n// ResampleInterpolator specific\n", fp);
  /* Debian's transformix has only the B-spline resample interpolator; order 0
   * and 1 give nearest and linear. */
  fputs("(ResampleInterpolator \"FinalBSplineInterpolator\")\n", fp);
  fprintf(fp, "(FinalBSplineInterpolationOrder %d)\n", oc->final_bspline_order);
  fputs("\n// Resampler specific\n", fp);
  fputs("(Resampler \"DefaultResampler\")\n", fp);
  fmt_num(b, sizeof b, oc->default_pixel_value);
  fprintf(fp, "(DefaultPixelValue %s)\n", b);
  fprintf(fp, "(ResultImageFormat \"%s\")\n", oc->result_format);
  fprintf(fp, "(ResultImagePixelType \"%s\")\n", gr_elastix_pixel_type_name(oc->result_pixel_type));
  fprintf(fp, "(CompressResultImage \"%s\")\n", oc->compress_result_image ? "true" : "false");
}

gr_status gr_transform_parameters_write(const char *path, const gr_stage_result *r, const gr_geometry *fixed_geom,
                                        const char *initial_path, const char *field_path,
                                        const gr_output_config *oc_in) {
  gr_output_config oc;
  if (oc_in) oc = *oc_in;
  else gr_output_config_defaults(&oc);
  gr_status s = check_write_args(path, r, fixed_geom, &oc, field_path);
  if (s != GR_OK) return s;
  char *initial = NULL, *field = NULL, *tmp = NULL;
  if (initial_path && strcmp(initial_path, "NoInitialTransform") != 0)
    s = elastix_safe_path("InitialTransformParametersFileName", initial_path, &initial);
  if (s == GR_OK && !expected_nparams(r->kind)) s = elastix_safe_path("DeformationFieldFileName", field_path, &field);
  if (s == GR_OK) {
    const size_t n = strlen(path) + 32;
    tmp = malloc(n);
    if (!tmp) s = gr_error(GR_ERR_NOMEM, "cannot allocate a path");
    else snprintf(tmp, n, "%s.tmp-%ld", path, (long)getpid());
  }
  FILE *fp = NULL;
  if (s == GR_OK) {
    fp = fopen(tmp, "w");
    if (!fp) s = gr_error(GR_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
  }
  if (s == GR_OK) {
    write_header(fp, r, fixed_geom, initial);
    write_specific(fp, r, field);
    write_resampler(fp, &oc);
    const int werr = ferror(fp);
    const int cerr = fclose(fp);
    fp = NULL;
    if (werr || cerr) s = gr_error(GR_ERR_IO, "error writing '%s'", tmp);
    else if (rename(tmp, path) != 0) s = gr_error(GR_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (s != GR_OK) remove(tmp);
  }
  free(tmp);
  free(initial);
  free(field);
  return s;
}

/* ---- reader ---------------------------------------------------------------- */

static gr_status need_key(const gr_param_map *m, const char *file, const char *key) {
  if (gr_param_count(m, key) == 0) return gr_error(GR_ERR_PARAM, "%s: missing key '%s'", file, key);
  return GR_OK;
}

/* n numbers of key into v (exactly n values required). */
static gr_status read_numbers(const gr_param_map *m, const char *file, const char *key, double *v, int n) {
  gr_status s = need_key(m, file, key);
  if (s != GR_OK) return s;
  const int have = gr_param_count(m, key);
  if (have != n) return gr_error(GR_ERR_PARAM, "%s: %s has %d values, expected %d", file, key, have, n);
  for (int i = 0; i < n && s == GR_OK; ++i) s = gr_param_get_double(m, key, i, &v[i]);
  return s;
}

/* elastix's binary parameter format: TransformParameters names a file of n
 * host-order doubles. */
static gr_status read_binary_params(const gr_param_map *m, const char *file, double *v, int n) {
  const char *dat = gr_param_get(m, "TransformParameters", 0);
  if (!dat) return gr_error(GR_ERR_PARAM, "%s: missing key 'TransformParameters'", file);
  FILE *fp = fopen(dat, "rb");
  if (!fp) return gr_error(GR_ERR_IO, "%s: cannot open TransformParameters data file '%s': %s", file, dat, strerror(errno));
  const size_t got = fread(v, sizeof(double), (size_t)n, fp);
  fclose(fp);
  if (got != (size_t)n)
    return gr_error(GR_ERR_FORMAT, "%s: '%s' holds %zu parameters, NumberOfParameters says %d", file, dat, got, n);
  if (!all_finite(v, n)) return gr_error(GR_ERR_NONFINITE, "%s: '%s' holds non-finite parameters", file, dat);
  return GR_OK;
}

static gr_status read_params(const gr_param_map *m, const char *file, const char *name, double *v, int n) {
  int nop = -1;
  gr_status s = need_key(m, file, "NumberOfParameters");
  if (s == GR_OK) s = gr_param_get_int(m, "NumberOfParameters", 0, &nop);
  if (s != GR_OK) return s;
  if (nop != n) return gr_error(GR_ERR_PARAM, "%s: NumberOfParameters is %d, a 3D %s has %d", file, nop, name, n);
  int binary = 0;
  s = gr_param_get_bool(m, "UseBinaryFormatForTransformationParameters", 0, &binary);
  if (s != GR_OK) return s;
  if (binary) return read_binary_params(m, file, v, n);
  return read_numbers(m, file, "TransformParameters", v, n);
}

/* ITK/elastix Euler3D with ComputeZYX "true": R = Rz * Ry * Rx. */
static void euler_zyx_to_affine(const double p[6], const double c[3], gr_affine *out) {
  const double cx = cos(p[0]), sx = sin(p[0]), cy = cos(p[1]), sy = sin(p[1]), cz = cos(p[2]), sz = sin(p[2]);
  const double R[9] = {cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx,
                       sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx,
                       -sy,     cy * sx,                cy * cx};
  double q[12];
  memcpy(q, R, sizeof R);
  memcpy(q + 9, p + 3, 3 * sizeof(double));
  gr_affine_params_to_affine(q, c, out);
}

/* elastix SimilarityTransform (AdvancedSimilarity3DTransform): p = versor
 * x y z (right part of a unit quaternion), translation, isotropic scale.
 * Versor normalisation as in SetParameters: |v| >= 1 - 1e-10 is scaled to
 * just below 1, then w = sqrt(1 - |v|^2) (ITK Versor::Set). */
static void similarity_to_affine(const double p[7], const double c[3], gr_affine *out) {
  double x = p[0], y = p[1], z = p[2];
  double norm = sqrt(x * x + y * y + z * z);
  const double eps = 1e-10;
  if (norm >= 1.0 - eps) {
    const double f = 1.0 / (norm + eps * norm);
    x *= f; y *= f; z *= f;
    norm = sqrt(x * x + y * y + z * z);
  }
  const double w = sqrt(fmax(0.0, 1.0 - norm * norm));
  const double s = p[6];
  const double R[9] = {1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w),       2.0 * (x * z + y * w),
                       2.0 * (x * y + z * w),       1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w),
                       2.0 * (x * z - y * w),       2.0 * (y * z + x * w),       1.0 - 2.0 * (x * x + y * y)};
  double q[12];
  for (int i = 0; i < 9; ++i) q[i] = s * R[i];
  memcpy(q + 9, p + 3, 3 * sizeof(double));
  gr_affine_params_to_affine(q, c, out);
}

static int is_deformable_name(const char *t) {
  static const char *const names[] = {"BSplineTransform", "RecursiveBSplineTransform", "DeformationFieldTransform",
                                      "BSplineStackTransform", "BSplineTransformWithDiffusion",
                                      "MultiBSplineTransformWithNormal", "SplineKernelTransform",
                                      "WeightedCombinationTransform", "GigaRegGreedyTransform", "GigaRegSyNTransform"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
    if (strcmp(t, names[i]) == 0) return 1;
  return 0;
}

static gr_status check_dimension(const gr_param_map *m, const char *file, const char *key) {
  int d = 3;
  gr_status s = gr_param_get_int(m, key, 0, &d);
  if (s == GR_OK && d != 3) s = gr_error(GR_ERR_UNSUPPORTED, "%s: %s is %d; GigaReg reads 3D transforms only", file, key, d);
  return s;
}

/* The transform of one file, ignoring its initial transform. */
static gr_status current_transform(const gr_param_map *m, const char *file, gr_affine *out) {
  const char *name = NULL;
  gr_status s = need_key(m, file, "Transform");
  if (s == GR_OK) s = gr_param_get_string(m, "Transform", 0, &name);
  if (s == GR_OK) s = check_dimension(m, file, "FixedImageDimension");
  if (s == GR_OK) s = check_dimension(m, file, "MovingImageDimension");
  if (s != GR_OK) return s;
  double p[12], c[3];
  if (strcmp(name, "TranslationTransform") == 0) {
    s = read_params(m, file, name, p, 3);
    if (s != GR_OK) return s;
    gr_affine_identity(out);
    for (int i = 0; i < 3; ++i) out->m[i * 4 + 3] = p[i];
    return GR_OK;
  }
  if (strcmp(name, "EulerTransform") == 0) {
    const char *zyx = "false";
    s = read_params(m, file, name, p, 6);
    if (s == GR_OK) s = read_numbers(m, file, "CenterOfRotationPoint", c, 3);
    if (s == GR_OK) s = gr_param_get_string(m, "ComputeZYX", 0, &zyx);
    if (s != GR_OK) return s;
    if (strcmp(zyx, "true") == 0) euler_zyx_to_affine(p, c, out);
    else gr_euler_to_affine(p, c, out);
    return GR_OK;
  }
  if (strcmp(name, "AffineTransform") == 0) {
    s = read_params(m, file, name, p, 12);
    if (s == GR_OK) s = read_numbers(m, file, "CenterOfRotationPoint", c, 3);
    if (s == GR_OK) gr_affine_params_to_affine(p, c, out);
    return s;
  }
  if (strcmp(name, "SimilarityTransform") == 0) {
    s = read_params(m, file, name, p, 7);
    if (s == GR_OK) s = read_numbers(m, file, "CenterOfRotationPoint", c, 3);
    if (s == GR_OK) similarity_to_affine(p, c, out);
    return s;
  }
  if (is_deformable_name(name))
    return gr_error(GR_ERR_UNSUPPORTED, "%s: -t0 with a %s is not supported yet", file, name);
  return gr_error(GR_ERR_UNSUPPORTED, "%s: transform '%.80s' is not supported as an initial transform", file, name);
}

/* Folder part of path including the trailing '/', "" when there is none. */
static char *path_join_dir(const char *file, const char *name) {
  const char *slash = strrchr(file, '/');
  const size_t dl = slash ? (size_t)(slash - file) + 1 : 0;
  char *s = malloc(dl + strlen(name) + 1);
  if (!s) return NULL;
  memcpy(s, file, dl);
  strcpy(s + dl, name);
  return s;
}

static int file_readable(const char *p) { return access(p, R_OK) == 0; }

/* Resolves the initial transform name of `file` to a path that exists. */
static gr_status resolve_initial(const char *file, const char *name, char **out) {
  *out = NULL;
  if (file_readable(name)) {
    *out = malloc(strlen(name) + 1);
    if (!*out) return gr_error(GR_ERR_NOMEM, "cannot allocate a path");
    strcpy(*out, name);
    return GR_OK;
  }
  if (name[0] != '/') {
    char *j = path_join_dir(file, name);
    if (!j) return gr_error(GR_ERR_NOMEM, "cannot allocate a path");
    if (file_readable(j)) {
      *out = j;
      return GR_OK;
    }
    gr_status s = gr_error(GR_ERR_IO, "%s: InitialTransformParametersFileName '%s' not found (tried '%s' and '%s')", file,
                           name, name, j);
    free(j);
    return s;
  }
  return gr_error(GR_ERR_IO, "%s: InitialTransformParametersFileName '%s' not found", file, name);
}

typedef struct gr_chain {
  char *seen[GR_TP_MAX_CHAIN + 1]; /* canonical paths of the files read so far */
  int n;
} gr_chain;

static gr_status read_chain(const char *file, gr_chain *ch, gr_affine *out);

static gr_status initial_transform(const gr_param_map *m, const char *file, gr_chain *ch, gr_affine *out, int *has) {
  const char *init = "NoInitialTransform";
  gr_status s = gr_param_get_string(m, "InitialTransformParametersFileName", 0, &init);
  if (s == GR_OK && gr_param_count(m, "InitialTransformParametersFileName") == 0)
    s = gr_param_get_string(m, "InitialTransformParameterFileName", 0, &init); /* elastix >= 5.2 */
  *has = 0;
  if (s != GR_OK || strcmp(init, "NoInitialTransform") == 0) return s;
  char *ipath = NULL;
  s = resolve_initial(file, init, &ipath);
  if (s == GR_OK) s = read_chain(ipath, ch, out);
  free(ipath);
  if (s == GR_OK) *has = 1;
  return s;
}

static gr_status combine(const gr_param_map *m, const char *file, const gr_affine *init, const gr_affine *cur,
                         gr_affine *out) {
  const char *how = "Compose";
  gr_status s = gr_param_get_string(m, "HowToCombineTransforms", 0, &how);
  if (s != GR_OK) return s;
  if (strcmp(how, "Compose") == 0) {
    gr_affine_compose(cur, init, out); /* initial first: T_cur(T_init(x)) */
  } else if (strcmp(how, "Add") == 0) {
    /* T(x) = T_cur(x) + T_init(x) - x */
    for (int i = 0; i < 12; ++i) out->m[i] = cur->m[i] + init->m[i];
    out->m[0] -= 1.0; out->m[5] -= 1.0; out->m[10] -= 1.0;
  } else {
    return gr_error(GR_ERR_PARAM, "%s: HowToCombineTransforms '%.40s' must be \"Compose\" or \"Add\"", file, how);
  }
  return GR_OK;
}

static gr_status read_chain(const char *file, gr_chain *ch, gr_affine *out) {
  if (ch->n >= GR_TP_MAX_CHAIN)
    return gr_error(GR_ERR_PARAM, "%s: chain of InitialTransformParametersFileName longer than %d files", file,
                    GR_TP_MAX_CHAIN);
  char *canon = realpath(file, NULL);
  if (!canon) return gr_error(GR_ERR_IO, "cannot open TransformParameters file '%s': %s", file, strerror(errno));
  for (int i = 0; i < ch->n; ++i) {
    if (strcmp(ch->seen[i], canon) == 0) {
      gr_status s = gr_error(GR_ERR_PARAM, "%s: InitialTransformParametersFileName chain loops back to '%s'", file, canon);
      free(canon);
      return s;
    }
  }
  ch->seen[ch->n++] = canon;
  gr_param_map *m = NULL;
  gr_status s = gr_param_map_read(file, &m);
  gr_affine cur, init;
  int has_init = 0;
  if (s == GR_OK) s = current_transform(m, file, &cur);
  if (s == GR_OK) s = initial_transform(m, file, ch, &init, &has_init);
  if (s == GR_OK) {
    if (has_init) s = combine(m, file, &init, &cur, out);
    else *out = cur;
  }
  gr_param_map_destroy(m);
  return s;
}

gr_status gr_transform_parameters_read_affine(const char *path, gr_affine *out) {
  if (!path || !out) return gr_error(GR_ERR_INVALID_ARG, "gr_transform_parameters_read_affine: missing argument");
  gr_chain ch;
  memset(&ch, 0, sizeof ch);
  gr_affine a;
  gr_status s = read_chain(path, &ch, &a);
  for (int i = 0; i < ch.n; ++i) free(ch.seen[i]);
  if (s == GR_OK) *out = a;
  return s;
}
