/* Cross-check with Debian's real transformix 5.0.1 (test/cmake/transformix_affine.cmake):
 *  1. an Euler TransformParameters file and an Affine one chained to it
 *     (InitialTransformParametersFileName), both written by
 *     gr_transform_parameters_write on an oblique 40^3 moving image and a
 *     different oblique fixed grid, are applied by `transformix -in -tp`; the
 *     result must match our own trilinear resampling through the affine that
 *     gr_transform_parameters_read_affine reads back (FinalBSplineInterpolationOrder
 *     1 = linear; mean |diff| < 1% of the intensity range in the interior);
 *     the opposite composition order must NOT match (the test can tell);
 *  2. a DeformationFieldTransform file (vector .mha field) chained to the
 *     affine one is applied to points (`transformix -def pts`): transformix
 *     must compute y = x' + d(x') with x' the affine chain of x.
 * Usage: tp_transformix_check TRANSFORMIX_OR_EMPTY WORKDIR. Exit 77 = skipped. */
#define _XOPEN_SOURCE 700 /* mkdir, access */
#include <sys/stat.h>
#include <unistd.h>
#include "gr_test.h"
#include "gigareg/elastix_io.h"

static void oblique(gr_geometry *g, int64_t nx, int64_t ny, int64_t nz, const double sp[3], const double org[3],
                    double az, double ax) {
  gr_geometry_identity(g, nx, ny, nz);
  memcpy(g->spacing, sp, sizeof g->spacing);
  memcpy(g->origin, org, sizeof g->origin);
  const double cz = cos(az), sz = sin(az), cx = cos(ax), sx = sin(ax);
  const double Rz[9] = {cz, -sz, 0, sz, cz, 0, 0, 0, 1};
  const double Rx[9] = {1, 0, 0, 0, cx, -sx, 0, sx, cx};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += Rz[r * 3 + k] * Rx[k * 3 + c];
      g->direction[r * 3 + c] = s;
    }
}

/* Smooth content so that linear interpolation differences stay small. */
static float phantom(const double p[3]) {
  const double a = exp(-((p[0] - 2) * (p[0] - 2) / 120.0 + (p[1] + 3) * (p[1] + 3) / 200.0 + (p[2] - 1) * (p[2] - 1) / 90.0));
  const double b = exp(-((p[0] + 8) * (p[0] + 8) + (p[1] - 6) * (p[1] - 6) + (p[2] + 4) * (p[2] + 4)) / 40.0);
  return (float)(800.0 * a + 400.0 * b + 2.0 * p[0] + 100.0);
}

/* Trilinear sample at a physical point; returns 0 outside the interior band. */
static int sample(const gr_image *img, const double phys[3], double *out) {
  double ci[3];
  gr_geometry_phys_to_index(&img->geom, phys, ci);
  int64_t i0[3];
  double f[3];
  for (int a = 0; a < 3; ++a) {
    if (!(ci[a] >= 1.0 && ci[a] <= (double)img->geom.size[a] - 2.0)) return 0;
    i0[a] = (int64_t)floor(ci[a]);
    f[a] = ci[a] - (double)i0[a];
  }
  const int64_t nx = img->geom.size[0], ny = img->geom.size[1];
  double v = 0;
  for (int dz = 0; dz < 2; ++dz)
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx) {
        const double w = (dx ? f[0] : 1 - f[0]) * (dy ? f[1] : 1 - f[1]) * (dz ? f[2] : 1 - f[2]);
        v += w * img->data[((i0[2] + dz) * ny + i0[1] + dy) * nx + i0[0] + dx];
      }
  *out = v;
  return 1;
}

/* Mean |transformix - reference| over fixed voxels whose warped point is in the
 * moving interior; *n counts them. */
static double compare(const gr_image *res, const gr_image *moving, const gr_affine *T, int64_t *n) {
  const gr_geometry *g = &res->geom;
  double sum = 0;
  *n = 0;
  for (int64_t z = 0; z < g->size[2]; ++z)
    for (int64_t y = 0; y < g->size[1]; ++y)
      for (int64_t x = 0; x < g->size[0]; ++x) {
        const double idx[3] = {(double)x, (double)y, (double)z};
        double p[3], q[3], ref;
        gr_geometry_index_to_phys(g, idx, p);
        gr_affine_apply(T, p, q);
        if (!sample(moving, q, &ref)) continue;
        sum += fabs(res->data[(z * g->size[1] + y) * g->size[0] + x] - ref);
        ++*n;
      }
  return *n ? sum / (double)*n : INFINITY;
}

static int run(const char *cmd) {
  fprintf(stderr, "+ %s\n", cmd);
  return system(cmd);
}

static void affine_chain(const char *tx, const char *dir, gr_affine *T_out, char *tp1, size_t tp1n) {
  const double msp[3] = {1.0, 1.2, 0.9}, morg[3] = {-20, -22, -18};
  const double fsp[3] = {1.1, 1.0, 1.15}, forg[3] = {-19, -20, -17};
  gr_geometry mg, fg;
  oblique(&mg, 40, 40, 40, msp, morg, 0.25, -0.15);
  oblique(&fg, 36, 38, 34, fsp, forg, -0.1, 0.2);
  gr_image *moving = NULL;
  GR_CHECK_OK(gr_image_create(&mg, 1, &moving));
  if (!moving) return;
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t z = 0; z < 40; ++z)
    for (int64_t y = 0; y < 40; ++y)
      for (int64_t x = 0; x < 40; ++x) {
        const double idx[3] = {(double)x, (double)y, (double)z};
        double p[3];
        gr_geometry_index_to_phys(&mg, idx, p);
        const float v = phantom(p);
        moving->data[(z * 40 + y) * 40 + x] = v;
        lo = fmin(lo, v);
        hi = fmax(hi, v);
      }
  char img[1200], tp0[1200], out[1200], cmd[4000], resp[1300];
  snprintf(img, sizeof img, "%s/moving.mha", dir);
  snprintf(tp0, sizeof tp0, "%s/TransformParameters.0.txt", dir);
  snprintf(tp1, tp1n, "%s/TransformParameters.1.txt", dir);
  snprintf(out, sizeof out, "%s/tx_affine", dir);
  mkdir(out, 0777);
  GR_CHECK_OK(gr_image_write(img, moving, GR_PIXEL_F32));

  gr_stage_result e, a;
  memset(&e, 0, sizeof e);
  memset(&a, 0, sizeof a);
  e.kind = GR_STAGE_RIGID;
  e.nparams = 6;
  const double ep[6] = {0.12, -0.08, 0.2, 2.5, -1.5, 1.0};
  memcpy(e.params, ep, sizeof ep);
  gr_geometry_center(&fg, e.center);
  a.kind = GR_STAGE_AFFINE;
  a.nparams = 12;
  const double ap[12] = {1.06, 0.03, -0.02, -0.04, 0.95, 0.05, 0.02, -0.03, 1.08, -1.0, 2.0, 0.5};
  memcpy(a.params, ap, sizeof ap);
  a.center[0] = 1.0; a.center[1] = -2.0; a.center[2] = 0.5;
  gr_output_config oc;
  gr_output_config_defaults(&oc);
  oc.final_bspline_order = 1;
  strcpy(oc.result_format, "mha");
  GR_CHECK_OK(gr_transform_parameters_write(tp0, &e, &fg, NULL, NULL, &oc));
  GR_CHECK_OK(gr_transform_parameters_write(tp1, &a, &fg, tp0, NULL, &oc));
  GR_CHECK_OK(gr_transform_parameters_read_affine(tp1, T_out));

  snprintf(cmd, sizeof cmd, "'%s' -in '%s' -out '%s' -tp '%s' > '%s/transformix_affine.log' 2>&1", tx, img, out, tp1, dir);
  const int rc = run(cmd);
  GR_CHECK(rc == 0, "transformix failed (%d); see %s/transformix_affine.log", rc, dir);
  snprintf(resp, sizeof resp, "%s/result.mha", out);
  gr_image *res = NULL;
  if (rc == 0) GR_CHECK_OK(gr_image_read(resp, &res));
  if (res) {
    GR_CHECK(gr_geometry_same(&res->geom, &fg), "transformix output grid differs from the fixed grid we wrote");
    int64_t n = 0;
    const double mad = compare(res, moving, T_out, &n);
    gr_affine E, A, wrong;
    gr_euler_to_affine(e.params, e.center, &E);
    gr_affine_params_to_affine(a.params, a.center, &A);
    gr_affine_compose(&E, &A, &wrong); /* the affine applied first: not elastix's order */
    int64_t nw = 0;
    const double madw = compare(res, moving, &wrong, &nw);
    fprintf(stderr, "interior voxels %lld: mean |transformix - ours| = %g (range %g); opposite order gives %g\n",
            (long long)n, mad, hi - lo, madw);
    GR_CHECK(n > 10000, "too few interior voxels (%lld)", (long long)n);
    GR_CHECK(mad < 0.01 * (hi - lo), "mean abs diff %g >= 1%% of range %g", mad, hi - lo);
    GR_CHECK(madw > 10.0 * mad && madw > 0.005 * (hi - lo), "opposite order not distinguishable (%g vs %g)", madw, mad);
  }
  gr_image_destroy(res);
  gr_image_destroy(moving);
}

/* Parses "OutputPoint = [ x y z ]" from transformix's outputpoints.txt. */
static int read_output_points(const char *path, double (*pts)[3], int max) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[2048];
  int n = 0;
  while (n < max && fgets(line, sizeof line, f)) {
    const char *p = strstr(line, "OutputPoint = [");
    if (!p) continue;
    if (sscanf(p + strlen("OutputPoint = ["), "%lf %lf %lf", &pts[n][0], &pts[n][1], &pts[n][2]) == 3) ++n;
  }
  fclose(f);
  return n;
}

static void deformable_points(const char *tx, const char *dir, const gr_affine *T, const char *tp1) {
  /* field on its own axis-aligned grid; d(x) = (1.5, -0.75 + 0.02 x, 0.5) mm is
   * linear, so linear interpolation reproduces it exactly inside the grid */
  gr_geometry g;
  gr_geometry_identity(&g, 60, 60, 60);
  for (int a = 0; a < 3; ++a) { g.spacing[a] = 1.0; g.origin[a] = -30.0; }
  gr_image *field = NULL;
  GR_CHECK_OK(gr_image_create(&g, 3, &field));
  if (!field) return;
  const int64_t nv = gr_image_nvox(field);
  for (int64_t z = 0; z < 60; ++z)
    for (int64_t y = 0; y < 60; ++y)
      for (int64_t x = 0; x < 60; ++x) {
        const int64_t i = (z * 60 + y) * 60 + x;
        const double px = -30.0 + (double)x;
        field->data[i] = 1.5f;
        field->data[nv + i] = (float)(-0.75 + 0.02 * px);
        field->data[2 * nv + i] = 0.5f;
      }
  char fpath[1200], tp2[1200], pts[1200], out[1200], cmd[4000], op[1300];
  snprintf(fpath, sizeof fpath, "%s/deformationField.mha", dir);
  snprintf(tp2, sizeof tp2, "%s/TransformParameters.2.txt", dir);
  snprintf(pts, sizeof pts, "%s/points.txt", dir);
  snprintf(out, sizeof out, "%s/tx_points", dir);
  mkdir(out, 0777);
  GR_CHECK_OK(gr_image_write(fpath, field, GR_PIXEL_F32));
  gr_stage_result d;
  memset(&d, 0, sizeof d);
  d.kind = GR_STAGE_GREEDY;
  gr_geometry fg;
  gr_geometry_identity(&fg, 20, 20, 20);
  GR_CHECK_OK(gr_transform_parameters_write(tp2, &d, &fg, tp1, fpath, NULL));
  static const double in[5][3] = {{0, 0, 0}, {5, -3, 2}, {-8, 6, 4}, {10, 10, -10}, {-4, -9, 7}};
  FILE *f = fopen(pts, "w");
  GR_CHECK(f != NULL, "cannot write %s", pts);
  if (!f) { gr_image_destroy(field); return; }
  fprintf(f, "point\n5\n");
  for (int k = 0; k < 5; ++k) fprintf(f, "%.17g %.17g %.17g\n", in[k][0], in[k][1], in[k][2]);
  fclose(f);
  snprintf(cmd, sizeof cmd, "'%s' -def '%s' -out '%s' -tp '%s' > '%s/transformix_points.log' 2>&1", tx, pts, out, tp2, dir);
  const int rc = run(cmd);
  GR_CHECK(rc == 0, "transformix -def failed (%d); see %s/transformix_points.log", rc, dir);
  snprintf(op, sizeof op, "%s/outputpoints.txt", out);
  double got[5][3];
  const int n = rc == 0 ? read_output_points(op, got, 5) : -1;
  GR_CHECK(n == 5, "read %d output points from %s", n, op);
  for (int k = 0; k < n; ++k) {
    double xp[3];
    gr_affine_apply(T, in[k], xp); /* the initial (affine) chain first ... */
    const double want[3] = {xp[0] + 1.5, xp[1] - 0.75 + 0.02 * xp[0], xp[2] + 0.5}; /* ... then x' + d(x') */
    for (int a = 0; a < 3; ++a) GR_CHECK_NEAR(got[k][a], want[a], 1e-4);
  }
  gr_image_destroy(field);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s TRANSFORMIX WORKDIR\n", argv[0]);
    return 2;
  }
  const char *tx = argv[1];
  if (!tx[0] || access(tx, X_OK) != 0) GR_SKIP("transformix not found ('%s')", tx);
  const char *dir = argv[2];
  mkdir(dir, 0777);
  gr_affine T;
  char tp1[1200];
  affine_chain(tx, dir, &T, tp1, sizeof tp1);
  if (!gr_test_failures) deformable_points(tx, dir, &T, tp1);
  GR_TEST_RETURN();
}
