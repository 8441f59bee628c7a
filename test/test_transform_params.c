/* TransformParameters writer and chain reader: round trips to 1e-9, elastix
 * composition order (initial transform first), real elastix 5.0.1 files,
 * cycles, depth, missing keys, deformable chains. */
#define _XOPEN_SOURCE 700 /* mkdir, access, getpid */
#include <unistd.h>
#include <sys/stat.h>
#include "gr_test.h"
#include "gigareg/elastix_io.h"

static char g_dir[1024];

static const char *tmp(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", g_dir, name);
  return buf;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  GR_CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static void oblique_geometry(gr_geometry *g) {
  gr_geometry_identity(g, 40, 36, 30);
  g->spacing[0] = 1.1; g->spacing[1] = 0.9; g->spacing[2] = 1.3;
  g->origin[0] = -12.5; g->origin[1] = 7.25; g->origin[2] = 3.0;
  /* rotation 0.3 rad about z then 0.2 about x: columns are the axis directions */
  const double cz = cos(0.3), sz = sin(0.3), cx = cos(0.2), sx = sin(0.2);
  const double Rz[9] = {cz, -sz, 0, sz, cz, 0, 0, 0, 1};
  const double Rx[9] = {1, 0, 0, 0, cx, -sx, 0, sx, cx};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += Rx[r * 3 + k] * Rz[k * 3 + c];
      g->direction[r * 3 + c] = s;
    }
}

static void check_affine_near(const gr_affine *a, const gr_affine *b, double tol, const char *what) {
  double worst = 0;
  for (int i = 0; i < 12; ++i) worst = fmax(worst, fabs(a->m[i] - b->m[i]));
  GR_CHECK(worst <= tol, "%s: max difference %g > %g", what, worst, tol);
}

static gr_stage_result euler_result(void) {
  gr_stage_result r;
  memset(&r, 0, sizeof r);
  r.kind = GR_STAGE_RIGID;
  r.nparams = 6;
  const double p[6] = {0.1, -0.05, 0.2, 3.5, -2.25, 1.0 / 3.0};
  memcpy(r.params, p, sizeof p);
  r.center[0] = 10.1; r.center[1] = -4.7; r.center[2] = 20.0 / 3.0;
  return r;
}

static gr_stage_result affine_result(void) {
  gr_stage_result r;
  memset(&r, 0, sizeof r);
  r.kind = GR_STAGE_AFFINE;
  r.nparams = 12;
  const double p[12] = {1.05, 0.02, -0.03, 0.01, 0.97, 0.04, -0.02, 0.015, 1.1, -1.5, 2.0, 0.7};
  memcpy(r.params, p, sizeof p);
  r.center[0] = 9.0; r.center[1] = 1.0; r.center[2] = -2.0;
  return r;
}

static void test_euler_roundtrip(const gr_geometry *g) {
  char p0[1200];
  gr_stage_result r = euler_result();
  GR_CHECK_OK(gr_transform_parameters_write(tmp(p0, sizeof p0, "TP.euler.txt"), &r, g, NULL, NULL, NULL));
  gr_affine got, want;
  GR_CHECK_OK(gr_transform_parameters_read_affine(p0, &got));
  gr_euler_to_affine(r.params, r.center, &want);
  check_affine_near(&got, &want, 1e-12, "Euler round trip");

  /* the file says what transformix needs, in elastix's spelling */
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(p0, &m));
  if (!m) return;
  const char *s = NULL;
  int n = 0;
  GR_CHECK_OK(gr_param_get_string(m, "Transform", 0, &s));
  GR_CHECK(strcmp(s, "EulerTransform") == 0, "Transform %s", s);
  GR_CHECK_OK(gr_param_get_int(m, "NumberOfParameters", 0, &n));
  GR_CHECK(n == 6, "NumberOfParameters %d", n);
  GR_CHECK(gr_param_count(m, "TransformParameters") == 6, "TransformParameters");
  GR_CHECK_OK(gr_param_get_string(m, "InitialTransformParametersFileName", 0, &s));
  GR_CHECK(strcmp(s, "NoInitialTransform") == 0, "initial %s", s);
  GR_CHECK_OK(gr_param_get_string(m, "ComputeZYX", 0, &s));
  GR_CHECK(strcmp(s, "false") == 0, "ComputeZYX");
  GR_CHECK_OK(gr_param_get_string(m, "ResultImagePixelType", 0, &s));
  GR_CHECK(strcmp(s, "float") == 0, "ResultImagePixelType %s", s);
  GR_CHECK_OK(gr_param_get_string(m, "ResultImageFormat", 0, &s));
  GR_CHECK(strcmp(s, "mhd") == 0, "ResultImageFormat %s", s);
  GR_CHECK_OK(gr_param_get_string(m, "ResampleInterpolator", 0, &s));
  GR_CHECK(strcmp(s, "FinalBSplineInterpolator") == 0, "ResampleInterpolator %s", s);
  GR_CHECK_OK(gr_param_get_int(m, "FinalBSplineInterpolationOrder", 0, &n));
  GR_CHECK(n == 3, "order %d", n);
  static const char *const keys[] = {"HowToCombineTransforms", "FixedImageDimension", "MovingImageDimension",
                                     "FixedInternalImagePixelType", "MovingInternalImagePixelType", "Size", "Index",
                                     "Spacing", "Origin", "Direction", "UseDirectionCosines", "CenterOfRotationPoint",
                                     "Resampler", "DefaultPixelValue", "CompressResultImage",
                                     "UseBinaryFormatForTransformationParameters"};
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; ++k)
    GR_CHECK(gr_param_count(m, keys[k]) > 0, "missing key %s", keys[k]);
  /* Direction column by column: value 3*c + r is D[r][c] */
  for (int c = 0; c < 3; ++c)
    for (int rr = 0; rr < 3; ++rr) {
      double v = 0;
      GR_CHECK_OK(gr_param_get_double(m, "Direction", 3 * c + rr, &v));
      GR_CHECK_NEAR(v, g->direction[rr * 3 + c], 1e-15);
    }
  double sp = 0;
  GR_CHECK_OK(gr_param_get_double(m, "Spacing", 0, &sp));
  GR_CHECK_NEAR(sp, 1.1, 0);
  GR_CHECK_OK(gr_param_get_int(m, "Size", 2, &n));
  GR_CHECK(n == 30, "Size z %d", n);
  gr_param_map_destroy(m);
  /* no temporary file left behind */
  char t[1300];
  snprintf(t, sizeof t, "%s.tmp-%ld", p0, (long)getpid());
  GR_CHECK(!file_exists(t), "temporary file left: %s", t);
}

static void test_chain(const gr_geometry *g) {
  char p0[1200], p1[1200];
  gr_stage_result e = euler_result(), a = affine_result();
  gr_output_config oc;
  gr_output_config_defaults(&oc);
  oc.final_bspline_order = 1;
  oc.default_pixel_value = -1024.5;
  strcpy(oc.result_format, "nii.gz");
  oc.result_pixel_type = GR_PIXEL_I16;
  GR_CHECK_OK(gr_transform_parameters_write(tmp(p0, sizeof p0, "TP.0.txt"), &e, g, NULL, NULL, &oc));
  GR_CHECK_OK(gr_transform_parameters_write(tmp(p1, sizeof p1, "TP.1.txt"), &a, g, p0, NULL, &oc));
  gr_affine E, A, want, got;
  gr_euler_to_affine(e.params, e.center, &E);
  gr_affine_params_to_affine(a.params, a.center, &A);
  gr_affine_compose(&A, &E, &want); /* elastix: T1(T0(x)), the initial transform first */
  GR_CHECK_OK(gr_transform_parameters_read_affine(p1, &got));
  check_affine_near(&got, &want, 1e-9, "Euler -> Affine chain");
  gr_affine wrong;
  gr_affine_compose(&E, &A, &wrong);
  double d = 0;
  for (int i = 0; i < 12; ++i) d = fmax(d, fabs(wrong.m[i] - want.m[i]));
  GR_CHECK(d > 1e-3, "test transforms commute; the order check is void");

  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(p1, &m));
  if (m) {
    const char *s = NULL;
    double v = 0;
    GR_CHECK_OK(gr_param_get_string(m, "InitialTransformParametersFileName", 0, &s));
    GR_CHECK(strcmp(s, p0) == 0, "initial '%s'", s);
    GR_CHECK_OK(gr_param_get_string(m, "ResultImagePixelType", 0, &s));
    GR_CHECK(strcmp(s, "short") == 0, "pixel type %s", s);
    GR_CHECK_OK(gr_param_get_string(m, "ResultImageFormat", 0, &s));
    GR_CHECK(strcmp(s, "nii.gz") == 0, "format %s", s);
    GR_CHECK_OK(gr_param_get_double(m, "DefaultPixelValue", 0, &v));
    GR_CHECK_NEAR(v, -1024.5, 0);
  }
  gr_param_map_destroy(m);

  /* relative initial name, resolved against the folder of the naming file */
  char sub[1200], q0[1300], q1[1300];
  tmp(sub, sizeof sub, "rel");
  mkdir(sub, 0777);
  snprintf(q0, sizeof q0, "%s/TransformParameters.0.txt", sub);
  snprintf(q1, sizeof q1, "%s/TransformParameters.1.txt", sub);
  GR_CHECK_OK(gr_transform_parameters_write(q0, &e, g, NULL, NULL, NULL));
  GR_CHECK_OK(gr_transform_parameters_write(q1, &a, g, "TransformParameters.0.txt", NULL, NULL));
  GR_CHECK_OK(gr_transform_parameters_read_affine(q1, &got));
  check_affine_near(&got, &want, 1e-9, "relative chain");
  /* "//" in a path would be cut by elastix's parser: collapsed on writing */
  char dbl[1400];
  snprintf(dbl, sizeof dbl, "%s//TransformParameters.0.txt", sub);
  GR_CHECK_OK(gr_transform_parameters_write(q1, &a, g, dbl, NULL, NULL));
  m = NULL;
  GR_CHECK_OK(gr_param_map_read(q1, &m));
  if (m) {
    const char *s = gr_param_get(m, "InitialTransformParametersFileName", 0);
    GR_CHECK(s && strcmp(s, q0) == 0, "collapsed '%s'", s ? s : "(null)");
  }
  gr_param_map_destroy(m);
  GR_CHECK(gr_transform_parameters_write(q1, &a, g, "/tmp/a,b.txt", NULL, NULL) == GR_ERR_INVALID_ARG, "',' path");
  GR_CHECK(strstr(gr_last_error(), "','") != NULL, "msg '%s'", gr_last_error());
}

static void test_translation_and_deformable(const gr_geometry *g) {
  char p0[1200], p1[1200];
  gr_stage_result t;
  memset(&t, 0, sizeof t);
  t.kind = GR_STAGE_TRANSLATION;
  t.nparams = 3;
  t.params[0] = 1.5; t.params[1] = -2.0; t.params[2] = 0.1;
  GR_CHECK_OK(gr_transform_parameters_write(tmp(p0, sizeof p0, "TP.t.txt"), &t, g, NULL, NULL, NULL));
  gr_affine got, want;
  gr_affine_identity(&want);
  want.m[3] = 1.5; want.m[7] = -2.0; want.m[11] = 0.1;
  GR_CHECK_OK(gr_transform_parameters_read_affine(p0, &got));
  check_affine_near(&got, &want, 0, "translation");

  gr_stage_result d;
  memset(&d, 0, sizeof d);
  d.kind = GR_STAGE_GREEDY;
  GR_CHECK(gr_transform_parameters_write(tmp(p1, sizeof p1, "TP.d.txt"), &d, g, p0, NULL, NULL) == GR_ERR_INVALID_ARG,
           "deformable without a field path");
  GR_CHECK_OK(gr_transform_parameters_write(p1, &d, g, p0, "/data/out/deformationField.mhd", NULL));
  gr_param_map *m = NULL;
  GR_CHECK_OK(gr_param_map_read(p1, &m));
  if (m) {
    const char *s = gr_param_get(m, "Transform", 0);
    GR_CHECK(s && strcmp(s, "DeformationFieldTransform") == 0, "Transform %s", s ? s : "(null)");
    s = gr_param_get(m, "DeformationFieldFileName", 0);
    GR_CHECK(s && strcmp(s, "/data/out/deformationField.mhd") == 0, "field %s", s ? s : "(null)");
    s = gr_param_get(m, "DeformationFieldInterpolationOrder", 0);
    GR_CHECK(s && strcmp(s, "1") == 0, "field order");
    s = gr_param_get(m, "NumberOfParameters", 0);
    GR_CHECK(s && strcmp(s, "0") == 0, "NumberOfParameters");
    GR_CHECK(gr_param_count(m, "TransformParameters") == 0, "no TransformParameters for a field");
  }
  gr_param_map_destroy(m);
  GR_CHECK(gr_transform_parameters_read_affine(p1, &got) == GR_ERR_UNSUPPORTED, "deformable -t0");
  GR_CHECK(strstr(gr_last_error(), "-t0 with a DeformationFieldTransform is not supported yet") != NULL, "msg '%s'",
           gr_last_error());
  /* a deformable file deeper in a chain is refused the same way */
  gr_stage_result e = euler_result();
  char p2[1200];
  GR_CHECK_OK(gr_transform_parameters_write(tmp(p2, sizeof p2, "TP.after_d.txt"), &e, g, p1, NULL, NULL));
  GR_CHECK(gr_transform_parameters_read_affine(p2, &got) == GR_ERR_UNSUPPORTED, "deformable in chain");

  /* argument checks */
  gr_stage_result bad = euler_result();
  bad.nparams = 5;
  GR_CHECK(gr_transform_parameters_write(p0, &bad, g, NULL, NULL, NULL) == GR_ERR_INVALID_ARG, "nparams");
  bad = euler_result();
  bad.params[2] = NAN;
  GR_CHECK(gr_transform_parameters_write(p0, &bad, g, NULL, NULL, NULL) == GR_ERR_NONFINITE, "NaN");
  bad = euler_result();
  GR_CHECK(gr_transform_parameters_write("/nonexistent_dir_gr/TP.txt", &bad, g, NULL, NULL, NULL) == GR_ERR_IO, "bad dir");
  gr_geometry bg = *g;
  bg.spacing[1] = 0;
  GR_CHECK(gr_transform_parameters_write(p0, &bad, &bg, NULL, NULL, NULL) == GR_ERR_INVALID_ARG, "bad geometry");
}

static void test_cycles_and_depth(void) {
  char a[1200], b[1200], c[1200], text[4000];
  tmp(a, sizeof a, "cyc_a.txt");
  tmp(b, sizeof b, "cyc_b.txt");
  static const char *body = "(Transform \"TranslationTransform\")\n(NumberOfParameters 3)\n(TransformParameters 1 0 0)\n"
                            "(FixedImageDimension 3)\n(MovingImageDimension 3)\n(HowToCombineTransforms \"Compose\")\n";
  snprintf(text, sizeof text, "%s(InitialTransformParametersFileName \"%s\")\n", body, b);
  write_text(a, text);
  snprintf(text, sizeof text, "%s(InitialTransformParametersFileName \"%s\")\n", body, a);
  write_text(b, text);
  gr_affine got;
  GR_CHECK(gr_transform_parameters_read_affine(a, &got) == GR_ERR_PARAM, "cycle");
  GR_CHECK(strstr(gr_last_error(), "loops back") != NULL, "msg '%s'", gr_last_error());
  /* self reference through a relative name */
  tmp(c, sizeof c, "cyc_self.txt");
  snprintf(text, sizeof text, "%s(InitialTransformParametersFileName \"cyc_self.txt\")\n", body);
  write_text(c, text);
  GR_CHECK(gr_transform_parameters_read_affine(c, &got) == GR_ERR_PARAM, "self cycle");

  /* 40 translations chained: > 32 refused; 30 fine and the translations add up */
  char prev[1200] = "NoInitialTransform", cur[1200];
  for (int k = 0; k < 40; ++k) {
    snprintf(cur, sizeof cur, "%s/depth_%02d.txt", g_dir, k);
    snprintf(text, sizeof text, "%s(InitialTransformParametersFileName \"%s\")\n", body, prev);
    write_text(cur, text);
    strcpy(prev, cur);
    if (k == 29) {
      GR_CHECK_OK(gr_transform_parameters_read_affine(cur, &got));
      GR_CHECK_NEAR(got.m[3], 30.0, 1e-12);
    }
  }
  GR_CHECK(gr_transform_parameters_read_affine(cur, &got) == GR_ERR_PARAM, "depth 40");
  GR_CHECK(strstr(gr_last_error(), "longer than 32") != NULL, "msg '%s'", gr_last_error());

  /* a missing initial file names both places tried */
  snprintf(text, sizeof text, "%s(InitialTransformParametersFileName \"no_such_TP.txt\")\n", body);
  write_text(c, text);
  GR_CHECK(gr_transform_parameters_read_affine(c, &got) == GR_ERR_IO, "missing initial");
  GR_CHECK(strstr(gr_last_error(), "no_such_TP.txt") != NULL, "msg '%s'", gr_last_error());
}

static void test_hand_written(void) {
  char p[1200];
  gr_affine got, want;
  /* missing keys */
  write_text(tmp(p, sizeof p, "miss_center.txt"),
             "(Transform \"EulerTransform\")\n(NumberOfParameters 6)\n(TransformParameters 0 0 0 1 2 3)\n");
  GR_CHECK(gr_transform_parameters_read_affine(p, &got) == GR_ERR_PARAM, "missing centre");
  GR_CHECK(strstr(gr_last_error(), "miss_center.txt: missing key 'CenterOfRotationPoint'") != NULL, "msg '%s'", gr_last_error());
  write_text(p, "(NumberOfParameters 6)\n(TransformParameters 0 0 0 1 2 3)\n");
  GR_CHECK(gr_transform_parameters_read_affine(p, &got) == GR_ERR_PARAM, "missing Transform");
  GR_CHECK(strstr(gr_last_error(), "missing key 'Transform'") != NULL, "msg '%s'", gr_last_error());
  write_text(p, "(Transform \"AffineTransform\")\n(NumberOfParameters 12)\n(TransformParameters 1 0 0 0 1 0 0 0 1 0 0)\n"
                "(CenterOfRotationPoint 0 0 0)\n");
  GR_CHECK(gr_transform_parameters_read_affine(p, &got) == GR_ERR_PARAM, "11 of 12 parameters");
  GR_CHECK(strstr(gr_last_error(), "TransformParameters has 11 values, expected 12") != NULL, "msg '%s'", gr_last_error());
  write_text(p, "(Transform \"SplineKernelTransform\")\n(NumberOfParameters 3)\n");
  GR_CHECK(gr_transform_parameters_read_affine(p, &got) == GR_ERR_UNSUPPORTED, "spline kernel");
  write_text(p, "(Transform \"TranslationTransform\")\n(FixedImageDimension 2)\n(NumberOfParameters 2)\n(TransformParameters 1 2)\n");
  GR_CHECK(gr_transform_parameters_read_affine(p, &got) == GR_ERR_UNSUPPORTED, "2D");

  /* ComputeZYX "true": R = Rz Ry Rx */
  write_text(p, "(Transform \"EulerTransform\")\n(NumberOfParameters 6)\n(TransformParameters 0.3 -0.2 0.1 1 2 3)\n"
                "(CenterOfRotationPoint 5 6 7)\n(ComputeZYX \"true\")\n");
  GR_CHECK_OK(gr_transform_parameters_read_affine(p, &got));
  {
    const double ax = 0.3, ay = -0.2, az = 0.1;
    const double X[9] = {1, 0, 0, 0, cos(ax), -sin(ax), 0, sin(ax), cos(ax)};
    const double Y[9] = {cos(ay), 0, sin(ay), 0, 1, 0, -sin(ay), 0, cos(ay)};
    const double Z[9] = {cos(az), -sin(az), 0, sin(az), cos(az), 0, 0, 0, 1};
    double ZY[9], R[9];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        ZY[r * 3 + c] = 0;
        for (int k = 0; k < 3; ++k) ZY[r * 3 + c] += Z[r * 3 + k] * Y[k * 3 + c];
      }
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        R[r * 3 + c] = 0;
        for (int k = 0; k < 3; ++k) R[r * 3 + c] += ZY[r * 3 + k] * X[k * 3 + c];
      }
    double q[12];
    memcpy(q, R, sizeof R);
    q[9] = 1; q[10] = 2; q[11] = 3;
    const double ctr[3] = {5, 6, 7};
    gr_affine_params_to_affine(q, ctr, &want);
    check_affine_near(&got, &want, 1e-12, "Euler ZYX");
  }

  /* Similarity: rotation of 0.4 rad about z (versor (0, 0, sin 0.2)), scale 1.5 */
  write_text(p, "(Transform \"SimilarityTransform\")\n(NumberOfParameters 7)\n"
                "(TransformParameters 0 0 0.19866933079506122 1 -1 2 1.5)\n(CenterOfRotationPoint 1 2 3)\n");
  GR_CHECK_OK(gr_transform_parameters_read_affine(p, &got));
  {
    const double c = cos(0.4), s = sin(0.4);
    const double q[12] = {1.5 * c, -1.5 * s, 0, 1.5 * s, 1.5 * c, 0, 0, 0, 1.5, 1, -1, 2};
    const double ctr[3] = {1, 2, 3};
    gr_affine_params_to_affine(q, ctr, &want);
    check_affine_near(&got, &want, 1e-12, "Similarity");
  }

  /* "Add": T(x) = T_cur(x) + T_init(x) - x */
  char q0[1200];
  write_text(tmp(q0, sizeof q0, "add_0.txt"),
             "(Transform \"TranslationTransform\")\n(NumberOfParameters 3)\n(TransformParameters 1 2 3)\n");
  write_text(p, "(Transform \"AffineTransform\")\n(NumberOfParameters 12)\n(TransformParameters 2 0 0 0 1 0 0 0 1 0 0 0)\n"
                "(CenterOfRotationPoint 0 0 0)\n(InitialTransformParametersFileName \"add_0.txt\")\n"
                "(HowToCombineTransforms \"Add\")\n");
  GR_CHECK_OK(gr_transform_parameters_read_affine(p, &got));
  gr_affine_identity(&want);
  want.m[0] = 2; want.m[3] = 1; want.m[7] = 2; want.m[11] = 3;
  check_affine_near(&got, &want, 1e-15, "Add");

  /* UseBinaryFormatForTransformationParameters: a .dat file of host doubles */
  char dat[1200], text[3000];
  tmp(dat, sizeof dat, "params.dat");
  const double tv[3] = {0.5, -1.25, 3.0};
  FILE *f = fopen(dat, "wb");
  GR_CHECK(f && fwrite(tv, sizeof(double), 3, f) == 3, "write %s", dat);
  if (f) fclose(f);
  snprintf(text, sizeof text, "(Transform \"TranslationTransform\")\n(NumberOfParameters 3)\n"
                              "(UseBinaryFormatForTransformationParameters \"true\")\n(TransformParameters \"%s\")\n", dat);
  write_text(p, text);
  GR_CHECK_OK(gr_transform_parameters_read_affine(p, &got));
  GR_CHECK(got.m[3] == 0.5 && got.m[7] == -1.25 && got.m[11] == 3.0, "binary parameters");
  snprintf(text, sizeof text, "(Transform \"AffineTransform\")\n(NumberOfParameters 12)\n(CenterOfRotationPoint 0 0 0)\n"
                              "(UseBinaryFormatForTransformationParameters \"true\")\n(TransformParameters \"%s\")\n", dat);
  write_text(p, text);
  GR_CHECK(gr_transform_parameters_read_affine(p, &got) == GR_ERR_FORMAT, "short .dat");

  /* elastix >= 5.2 spelling of the initial key */
  write_text(p, "(Transform \"AffineTransform\")\n(NumberOfParameters 12)\n(TransformParameters 2 0 0 0 1 0 0 0 1 0 0 0)\n"
                "(CenterOfRotationPoint 0 0 0)\n(InitialTransformParameterFileName \"add_0.txt\")\n");
  GR_CHECK_OK(gr_transform_parameters_read_affine(p, &got));
  GR_CHECK_NEAR(got.m[3], 2.0, 1e-15); /* 2 * (x + 1) */
}

/* Files written by Debian's elastix 5.0.1 and points mapped by its transformix. */
static void test_real_elastix_chain(void) {
  gr_affine T;
  GR_CHECK_OK(gr_transform_parameters_read_affine(GR_TEST_DATA_DIR "/params/elastix_chain/TransformParameters.1.txt", &T));
  static const double in[4][3] = {{0, 0, 0}, {10, 20, 30}, {-5, 7.5, 12}, {30, -4, 8}};
  static const double out[4][3] = {{3.998482, 2.415989, 3.029345},
                                   {13.287428, 18.745429, 29.339046},
                                   {-0.107859, 8.641510, 13.545824},
                                   {30.220475, -1.727052, 9.999307}};
  for (int k = 0; k < 4; ++k) {
    double y[3];
    gr_affine_apply(&T, in[k], y);
    for (int i = 0; i < 3; ++i) GR_CHECK_NEAR(y[i], out[k][i], 2e-5);
  }
  GR_CHECK(gr_transform_parameters_read_affine(GR_TEST_DATA_DIR "/params/elastix_chain/TransformParameters.bspline.txt",
                                               &T) == GR_ERR_UNSUPPORTED,
           "bspline -t0");
  GR_CHECK(strstr(gr_last_error(), "-t0 with a BSplineTransform is not supported yet") != NULL, "msg '%s'",
           gr_last_error());
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "%s/tp_%ld", GR_TEST_TMP_DIR, (long)getpid());
  if (mkdir(g_dir, 0777) != 0) GR_SKIP("cannot create %s", g_dir);
  gr_geometry g;
  oblique_geometry(&g);
  test_euler_roundtrip(&g);
  test_chain(&g);
  test_translation_and_deformable(&g);
  test_cycles_and_depth();
  test_hand_written();
  test_real_elastix_chain();
  if (!gr_test_failures) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  }
  GR_TEST_RETURN();
}
