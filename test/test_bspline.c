/* Core B-spline ops (backend.h bspline_field / bspline_grad) on the CPU backend,
 * against references written here independently of kernels/bspline_eval.h:
 *  - the field: elastix's cubic B-spline (uniform B-spline basis in its
 *    piecewise-polynomial form, support start floor(c) - 1, valid region
 *    1 <= c < size - 2) composed after an affine initial transform, on an
 *    oblique anisotropic grid and an oblique control grid: max error <= 1e-5 mm;
 *  - a z-window of the field (gr_bspline.z0): bitwise those planes of the whole field;
 *  - the gradient: a naive scatter of every voxel's 64 weighted terms in
 *    double: relative error <= 1e-11 per coefficient (only the summation order
 *    differs), and bitwise the same result with 1 and 3 threads;
 *  - errors: too few control points, a singular map. */
#include <stdint.h>
#include "gr_test.h"

enum { NX = 23, NY = 19, NZ = 17, SX = 9, SY = 8, SZ = 9 };

static void basis(double t, double w[4]) { /* t in [0, 1): weights of floor(c) - 1 .. floor(c) + 2 */
  const double s = 1.0 - t;
  w[0] = s * s * s / 6.0;
  w[1] = (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0;
  w[2] = (-3.0 * t * t * t + 3.0 * t * t + 3.0 * t + 1.0) / 6.0;
  w[3] = t * t * t / 6.0;
}

typedef struct setup {
  gr_grid g;
  double i2p[12], L[12], origin[3], M[9];
  gr_bspline bs;
  double *coef;
} setup;

static void mat3_inv(const double a[9], double o[9]) {
  const double det = a[0] * (a[4] * a[8] - a[5] * a[7]) - a[1] * (a[3] * a[8] - a[5] * a[6]) + a[2] * (a[3] * a[7] - a[4] * a[6]);
  o[0] = (a[4] * a[8] - a[5] * a[7]) / det;
  o[1] = (a[2] * a[7] - a[1] * a[8]) / det;
  o[2] = (a[1] * a[5] - a[2] * a[4]) / det;
  o[3] = (a[5] * a[6] - a[3] * a[8]) / det;
  o[4] = (a[0] * a[8] - a[2] * a[6]) / det;
  o[5] = (a[2] * a[3] - a[0] * a[5]) / det;
  o[6] = (a[3] * a[7] - a[4] * a[6]) / det;
  o[7] = (a[1] * a[6] - a[0] * a[7]) / det;
  o[8] = (a[0] * a[4] - a[1] * a[3]) / det;
}

static void make_setup(setup *S) {
  gr_geometry geo;
  gr_geometry_identity(&geo, NX, NY, NZ);
  const double sp[3] = {1.1, 0.9, 1.6};
  memcpy(geo.spacing, sp, sizeof sp);
  const double c = cos(0.3), s = sin(0.3);
  const double dir[9] = {c, -s, 0, s, c, 0, 0, 0, 1};
  memcpy(geo.direction, dir, sizeof dir);
  geo.origin[0] = -3.0;
  geo.origin[1] = 2.0;
  geo.origin[2] = 1.0;
  gr_grid_from_geometry(&geo, &S->g);
  memcpy(S->i2p, S->g.i2p, sizeof S->i2p);
  /* initial affine z = L p + l: a small rotation about x, scaling and a shift */
  const double cx = cos(0.1), sx = sin(0.1);
  const double L[12] = {1.02, 0, 0, 0.7, 0, 0.98 * cx, -sx, -0.4, 0, sx, 1.01 * cx, 0.3};
  memcpy(S->L, L, sizeof L);
  /* control grid: spacing (5, 4.5, 6) mm, rotated about z by -0.2, origin before the image */
  const double gs[3] = {5.0, 4.5, 6.0}, cg = cos(-0.2), sg = sin(-0.2);
  const double gd[9] = {cg, -sg, 0, sg, cg, 0, 0, 0, 1};
  double i2pg[9];
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 3; ++k) i2pg[r * 3 + k] = gd[r * 3 + k] * gs[k];
  mat3_inv(i2pg, S->M);
  S->origin[0] = -9.0;
  S->origin[1] = -5.0;
  S->origin[2] = -6.0;
  /* voxel-index form: c = M (L (i2p idx) + l - origin), zA idx = L p + l - p */
  gr_bspline *bs = &S->bs;
  memset(bs, 0, sizeof *bs);
  double LP[12]; /* L o i2p as a 3 x 4 map */
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 4; ++k) {
      double v = k == 3 ? L[r * 4 + 3] : 0.0;
      for (int m = 0; m < 3; ++m) v += L[r * 4 + m] * S->i2p[m * 4 + k];
      LP[r * 4 + k] = v;
    }
  }
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 4; ++k) {
      double v = 0.0;
      for (int m = 0; m < 3; ++m) v += S->M[r * 3 + m] * (LP[m * 4 + k] - (k == 3 ? S->origin[m] : 0.0));
      bs->cA[r * 4 + k] = v;
      bs->zA[r * 4 + k] = LP[r * 4 + k] - S->i2p[r * 4 + k];
    }
  }
  bs->size[0] = SX;
  bs->size[1] = SY;
  bs->size[2] = SZ;
  const int64_t G = SX * SY * SZ;
  S->coef = malloc(sizeof(double) * 3 * G);
  uint32_t st = 12345u;
  for (int64_t q = 0; q < 3 * G; ++q) {
    st = st * 1664525u + 1013904223u;
    S->coef[q] = ((st >> 8) * (1.0 / 16777216.0) - 0.5) * 4.0; /* +-2 mm */
  }
  bs->coef = S->coef;
  GR_CHECK_OK(gr_bspline_prepare(bs));
}

/* Reference: physical route, piecewise basis; also the voxel's support (st) and weights. */
static int ref_support(const setup *S, int64_t i, int64_t j, int64_t k, double z[3], double p[3], int64_t st[3],
                       double w[3][4]) {
  const double idx[3] = {(double)i, (double)j, (double)k};
  for (int r = 0; r < 3; ++r) p[r] = S->i2p[r * 4] * idx[0] + S->i2p[r * 4 + 1] * idx[1] + S->i2p[r * 4 + 2] * idx[2] + S->i2p[r * 4 + 3];
  for (int r = 0; r < 3; ++r) z[r] = S->L[r * 4] * p[0] + S->L[r * 4 + 1] * p[1] + S->L[r * 4 + 2] * p[2] + S->L[r * 4 + 3];
  int ok = 1;
  for (int a = 0; a < 3; ++a) {
    double c = 0.0;
    for (int m = 0; m < 3; ++m) c += S->M[a * 3 + m] * (z[m] - S->origin[m]);
    if (!(c >= 1.0 && c < (double)(S->bs.size[a] - 2))) ok = 0;
    const double f = floor(c);
    st[a] = (int64_t)f - 1;
    basis(c - f, w[a]);
  }
  return ok;
}

static void test_field_and_grad(gr_backend *be, gr_backend *be1, const setup *S) {
  const int64_t n = NX * NY * NZ, G = SX * SY * SZ;
  float *u = malloc(sizeof(float) * 3 * n), *gu = malloc(sizeof(float) * 3 * n);
  GR_CHECK_OK(be->ops->bspline_field(be, &S->g, &S->bs, u));
  double emax = 0.0, dmax = 0.0;
  int64_t valid = 0;
  double *dref = calloc((size_t)(3 * G), sizeof(double));
  uint32_t st32 = 777u;
  for (int64_t v = 0; v < 3 * n; ++v) {
    st32 = st32 * 1664525u + 1013904223u;
    gu[v] = (float)((st32 >> 8) * (1.0 / 16777216.0) - 0.5);
  }
  for (int64_t k = 0; k < NZ; ++k)
    for (int64_t j = 0; j < NY; ++j)
      for (int64_t i = 0; i < NX; ++i) {
        double z[3], p[3], w[3][4], d[3] = {0, 0, 0};
        int64_t st[3];
        const int64_t v = (k * NY + j) * NX + i;
        if (ref_support(S, i, j, k, z, p, st, w)) {
          ++valid;
          for (int c = 0; c < 4; ++c)
            for (int b = 0; b < 4; ++b)
              for (int a = 0; a < 4; ++a) {
                const int64_t q = ((st[2] + c) * SY + (st[1] + b)) * SX + st[0] + a;
                const double ww = w[2][c] * w[1][b] * w[0][a];
                for (int r = 0; r < 3; ++r) {
                  d[r] += ww * S->coef[r * G + q];
                  dref[r * G + q] += ww * (double)gu[r * n + v];
                }
              }
        }
        for (int r = 0; r < 3; ++r) {
          emax = fmax(emax, fabs((double)u[r * n + v] - (z[r] + d[r] - p[r])));
          dmax = fmax(dmax, fabs(d[r]));
        }
      }
  fprintf(stderr, "bspline_field: %lld of %lld voxels in the valid region, max |B-spline part| %.3f mm, max error %.3g mm\n",
          (long long)valid, (long long)n, dmax, emax);
  GR_CHECK(valid > n / 4 && valid < n, "valid region covers %lld of %lld voxels (test set-up)", (long long)valid, (long long)n);
  GR_CHECK(dmax > 0.5, "B-spline part too small (%g)", dmax);
  GR_CHECK(emax <= 1e-5, "bspline_field: max error %.3g mm", emax);
  { /* a z-window (z0 = 5, 6 planes) is bitwise those planes of the whole field */
    gr_grid gw = S->g;
    gw.n[2] = 6;
    gr_bspline bw = S->bs;
    bw.z0 = 5;
    const int64_t nw = NX * NY * 6;
    float *uw = malloc(sizeof(float) * 3 * nw);
    GR_CHECK_OK(be->ops->bspline_field(be, &gw, &bw, uw));
    int64_t bad = 0;
    for (int r = 0; r < 3; ++r)
      bad += memcmp(uw + r * nw, u + r * n + 5 * NX * NY, sizeof(float) * (size_t)nw) != 0;
    GR_CHECK(bad == 0, "bspline_field with z0: %lld components differ from the whole field's planes", (long long)bad);
    double dcw[1];
    GR_CHECK(be->ops->bspline_grad(be, &gw, &bw, uw, dcw) == GR_ERR_INVALID_ARG, "bspline_grad accepted z0 != 0");
    free(uw);
  }

  double *dc = malloc(sizeof(double) * 3 * G), *dc1 = malloc(sizeof(double) * 3 * G);
  GR_CHECK_OK(be->ops->bspline_grad(be, &S->g, &S->bs, gu, dc));
  GR_CHECK_OK(be1->ops->bspline_grad(be1, &S->g, &S->bs, gu, dc1));
  double rmax = 0.0, scale = 0.0;
  int64_t nonzero = 0;
  for (int64_t q = 0; q < 3 * G; ++q) scale = fmax(scale, fabs(dref[q]));
  for (int64_t q = 0; q < 3 * G; ++q) {
    rmax = fmax(rmax, fabs(dc[q] - dref[q]) / scale);
    nonzero += dref[q] != 0.0;
  }
  fprintf(stderr, "bspline_grad: %lld of %lld coefficients touched, max error %.3g of the largest\n", (long long)nonzero,
          (long long)(3 * G), rmax);
  GR_CHECK(nonzero > G && nonzero < 3 * G, "touched coefficients %lld (test set-up: the support must not cover all)",
           (long long)nonzero);
  GR_CHECK(rmax <= 1e-11, "bspline_grad: max error %.3g of the largest coefficient", rmax);
  GR_CHECK(memcmp(dc, dc1, sizeof(double) * 3 * G) == 0, "bspline_grad: 3 threads and 1 thread differ");
  free(u);
  free(gu);
  free(dref);
  free(dc);
  free(dc1);
}

static void test_errors(gr_backend *be, const setup *S) {
  gr_bspline b = S->bs;
  b.size[1] = 3;
  GR_CHECK(gr_bspline_prepare(&b) == GR_ERR_INVALID_ARG, "3 control points accepted");
  GR_CHECK(strstr(gr_last_error(), "axis 1") != NULL, "message: %s", gr_last_error());
  float u[3];
  GR_CHECK(be->ops->bspline_field(be, &S->g, &b, u) == GR_ERR_INVALID_ARG, "field with 3 control points accepted");
  b = S->bs;
  for (int k = 0; k < 4; ++k) b.cA[4 + k] = 2.0 * b.cA[k]; /* row 1 = 2 row 0 */
  GR_CHECK(gr_bspline_prepare(&b) == GR_ERR_INVALID_ARG, "singular map accepted");
  GR_CHECK(strstr(gr_last_error(), "singular") != NULL, "message: %s", gr_last_error());
}

int main(void) {
  gr_backend *be = NULL, *be1 = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(3, &be));
  GR_CHECK_OK(gr_backend_cpu_create(1, &be1));
  if (!be || !be1) GR_TEST_RETURN();
  setup S;
  make_setup(&S);
  test_field_and_grad(be, be1, &S);
  test_errors(be, &S);
  free(S.coef);
  gr_backend_destroy(be);
  gr_backend_destroy(be1);
  GR_TEST_RETURN();
}
