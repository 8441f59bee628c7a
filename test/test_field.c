/* cpu compose / invert / jacobian_det on an oblique, anisotropic grid, so the
 * index <-> physical conversions are exercised, not just the identity case. */
#include <stdint.h>
#include "gr_test.h"

#define GR_PI 3.14159265358979323846

typedef void (*field_fn)(const double p[3], double u[3]);

static gr_grid make_grid(void) {
  gr_geometry geo;
  gr_geometry_identity(&geo, 32, 28, 24);
  const double sp[3] = {1.0, 1.2, 0.8}, org[3] = {-10.0, 5.0, 3.0};
  const double c = cos(GR_PI / 6), s = sin(GR_PI / 6);
  const double dir[9] = {c, -s, 0, s, c, 0, 0, 0, 1};
  for (int i = 0; i < 3; ++i) {
    geo.spacing[i] = sp[i];
    geo.origin[i] = org[i];
  }
  memcpy(geo.direction, dir, sizeof dir);
  gr_grid g;
  gr_grid_from_geometry(&geo, &g);
  return g;
}

static int64_t nvox_of(const gr_grid *g) { return g->n[0] * g->n[1] * g->n[2]; }

static void affine_apply(const double m[12], const double a[3], double b[3]) {
  for (int r = 0; r < 3; ++r) b[r] = m[r * 4] * a[0] + m[r * 4 + 1] * a[1] + m[r * 4 + 2] * a[2] + m[r * 4 + 3];
}
static void linear_apply(const double m[12], const double a[3], double b[3]) {
  for (int r = 0; r < 3; ++r) b[r] = m[r * 4] * a[0] + m[r * 4 + 1] * a[1] + m[r * 4 + 2] * a[2];
}

static void voxel_phys(const gr_grid *g, int64_t x, int64_t y, int64_t z, double p[3]) {
  const double idx[3] = {(double)x, (double)y, (double)z};
  affine_apply(g->i2p, idx, p);
}

static void fill_field(const gr_grid *g, float *f, field_fn fn) {
  const int64_t n = nvox_of(g);
  for (int64_t z = 0; z < g->n[2]; ++z)
    for (int64_t y = 0; y < g->n[1]; ++y)
      for (int64_t x = 0; x < g->n[0]; ++x) {
        double p[3], u[3];
        voxel_phys(g, x, y, z, p);
        fn(p, u);
        const int64_t i = (z * g->n[1] + y) * g->n[0] + x;
        for (int c = 0; c < 3; ++c) f[c * n + i] = (float)u[c];
      }
}

static void get3(const float *f, int64_t n, int64_t i, double v[3]) {
  for (int c = 0; c < 3; ++c) v[c] = f[c * n + i];
}

/* Is continuous index of physical point p at least `margin` voxels inside? */
static int inside(const gr_grid *g, const double p[3], double margin) {
  double idx[3];
  affine_apply(g->p2i, p, idx);
  for (int a = 0; a < 3; ++a)
    if (idx[a] < margin || idx[a] > (double)(g->n[a] - 1) - margin) return 0;
  return 1;
}

/* ---- analytic fields ---- */
static const double A_lin[12] = {0.04, -0.02, 0.01, 0.5, 0.03, 0.05, -0.02, -0.3, -0.01, 0.02, 0.06, 0.2};
static void u_linear(const double p[3], double u[3]) { affine_apply(A_lin, p, u); }
static void s_small(const double p[3], double u[3]) {
  u[0] = 0.5 * sin(0.21 * p[1] + 0.4);
  u[1] = 0.4 * cos(0.17 * p[2] - 0.2);
  u[2] = 0.3 * sin(0.13 * p[0] + 0.11 * p[1]);
}
static void u_sine(const double p[3], double u[3]) {
  const double k = 2.0 * GR_PI;
  u[0] = 2.0 * sin(k * p[1] / 40.0 + 0.3);
  u[1] = 2.0 * sin(k * p[2] / 35.0);
  u[2] = 2.0 * sin(k * p[0] / 45.0 + 1.0);
}
static const double B_mat[9] = {1.1, 0.05, 0.0, 0.02, 0.9, 0.1, 0.0, -0.03, 1.05};
static void u_affine_minus_id(const double p[3], double u[3]) {
  for (int r = 0; r < 3; ++r) u[r] = B_mat[r * 3] * p[0] + B_mat[r * 3 + 1] * p[1] + B_mat[r * 3 + 2] * p[2] - p[r];
}
static void const_a(const double p[3], double u[3]) { (void)p; u[0] = 1.0; u[1] = -2.0; u[2] = 0.5; }
static void const_b(const double p[3], double u[3]) { (void)p; u[0] = 0.3; u[1] = 0.7; u[2] = -1.1; }

static void test_compose(gr_backend *be, const gr_grid *g) {
  const int64_t n = nvox_of(g);
  float *u = be->ops->alloc(be, 3 * n * sizeof(float));
  float *s = be->ops->alloc(be, 3 * n * sizeof(float));
  float *o = be->ops->alloc(be, 3 * n * sizeof(float));

  /* zero o zero = zero */
  GR_CHECK_OK(be->ops->fill(be, u, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->fill(be, s, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->fill(be, o, 7.0f, 3 * n));
  GR_CHECK_OK(be->ops->compose(be, g, u, s, o));
  int nz = 0;
  for (int64_t i = 0; i < 3 * n; ++i) nz += o[i] != 0.0f;
  GR_CHECK(nz == 0, "zero compose: %d non-zero", nz);

  /* two translations add, everywhere (CLAMP keeps a constant constant past the border) */
  fill_field(g, u, const_a);
  fill_field(g, s, const_b);
  GR_CHECK_OK(be->ops->compose(be, g, u, s, o));
  const double want[3] = {1.3, -1.3, -0.6};
  double worst = 0.0;
  for (int c = 0; c < 3; ++c)
    for (int64_t i = 0; i < n; ++i) worst = fmax(worst, fabs(o[c * n + i] - want[c]));
  GR_CHECK(worst < 1e-6, "translations: worst error %g", worst);

  /* linear u: trilinear interpolation is exact, so out = s + u(x + s) to float precision */
  fill_field(g, u, u_linear);
  fill_field(g, s, s_small);
  GR_CHECK_OK(be->ops->compose(be, g, u, s, o));
  worst = 0.0;
  int checked = 0;
  for (int64_t z = 0; z < g->n[2]; ++z)
    for (int64_t y = 0; y < g->n[1]; ++y)
      for (int64_t x = 0; x < g->n[0]; ++x) {
        const int64_t i = (z * g->n[1] + y) * g->n[0] + x;
        double p[3], sv[3], q[3], uq[3], ov[3];
        voxel_phys(g, x, y, z, p);
        get3(s, n, i, sv);
        for (int c = 0; c < 3; ++c) q[c] = p[c] + sv[c];
        if (!inside(g, q, 0.0)) continue;
        u_linear(q, uq);
        get3(o, n, i, ov);
        for (int c = 0; c < 3; ++c) worst = fmax(worst, fabs(ov[c] - (sv[c] + uq[c])));
        ++checked;
      }
  GR_CHECK(checked > n / 2, "only %d voxels checked", checked);
  GR_CHECK(worst < 1e-4, "linear u: worst error %g mm", worst);

  /* sinusoidal u at a few interior points: trilinear error ~ h^2/8 |u''| */
  fill_field(g, u, u_sine);
  GR_CHECK_OK(be->ops->compose(be, g, u, s, o));
  const int64_t pts[4][3] = {{10, 10, 10}, {16, 14, 12}, {5, 20, 8}, {25, 6, 17}};
  for (int k = 0; k < 4; ++k) {
    const int64_t i = (pts[k][2] * g->n[1] + pts[k][1]) * g->n[0] + pts[k][0];
    double p[3], sv[3], q[3], uq[3], ov[3];
    voxel_phys(g, pts[k][0], pts[k][1], pts[k][2], p);
    get3(s, n, i, sv);
    for (int c = 0; c < 3; ++c) q[c] = p[c] + sv[c];
    u_sine(q, uq);
    get3(o, n, i, ov);
    for (int c = 0; c < 3; ++c) GR_CHECK_NEAR(ov[c], sv[c] + uq[c], 0.02);
  }

  /* out may alias s (in-place update), never u */
  float *s2 = be->ops->alloc(be, 3 * n * sizeof(float));
  memcpy(s2, s, 3 * n * sizeof(float));
  GR_CHECK_OK(be->ops->compose(be, g, u, s2, s2));
  GR_CHECK(memcmp(s2, o, 3 * n * sizeof(float)) == 0, "in-place compose differs");
  GR_CHECK(be->ops->compose(be, g, u, s, u) == GR_ERR_INVALID_ARG, "out == u rejected");
  be->ops->free(be, s2);
  be->ops->free(be, u);
  be->ops->free(be, s);
  be->ops->free(be, o);
}

static void test_invert(gr_backend *be, const gr_grid *g) {
  const int64_t n = nvox_of(g);
  float *u = be->ops->alloc(be, 3 * n * sizeof(float));
  float *v = be->ops->alloc(be, 3 * n * sizeof(float));
  fill_field(g, u, u_sine);
  const size_t before = be->bytes_current;
  GR_CHECK_OK(be->ops->invert(be, g, u, v, 20));
  GR_CHECK(be->bytes_current == before, "invert leaked scratch");
  GR_CHECK(be->bytes_peak >= before + 3 * n * sizeof(float), "invert allocates one scratch field");
  double worst = 0.0;
  int checked = 0;
  for (int64_t z = 5; z < g->n[2] - 5; ++z)
    for (int64_t y = 5; y < g->n[1] - 5; ++y)
      for (int64_t x = 5; x < g->n[0] - 5; ++x) {
        const int64_t i = (z * g->n[1] + y) * g->n[0] + x;
        double p[3], vv[3], q[3], uq[3], r[3], rv[3];
        voxel_phys(g, x, y, z, p);
        get3(v, n, i, vv);
        for (int c = 0; c < 3; ++c) q[c] = p[c] + vv[c];
        u_sine(q, uq);
        for (int c = 0; c < 3; ++c) r[c] = vv[c] + uq[c]; /* (x + v + u(x + v)) - x */
        linear_apply(g->p2i, r, rv);                     /* in voxels */
        worst = fmax(worst, sqrt(rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2]));
        ++checked;
      }
  GR_CHECK(checked > 1000, "checked %d", checked);
  GR_CHECK(worst < 0.05, "inverse residual %g voxel", worst);

  /* 0 iterations is the first-order guess -u */
  GR_CHECK_OK(be->ops->invert(be, g, u, v, 0));
  int bad = 0;
  for (int64_t i = 0; i < 3 * n; ++i) bad += v[i] != -u[i];
  GR_CHECK(bad == 0, "0 iterations: %d voxels differ from -u", bad);
  GR_CHECK(be->ops->invert(be, g, u, v, -1) == GR_ERR_INVALID_ARG, "negative iterations rejected");
  GR_CHECK(be->ops->invert(be, g, u, u, 3) == GR_ERR_INVALID_ARG, "inv == u rejected");
  be->ops->free(be, u);
  be->ops->free(be, v);
}

static void test_jacobian(gr_backend *be, const gr_grid *g) {
  const int64_t n = nvox_of(g);
  float *u = be->ops->alloc(be, 3 * n * sizeof(float));
  float *j = be->ops->alloc(be, n * sizeof(float));
  GR_CHECK_OK(be->ops->fill(be, u, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->jacobian_det(be, g, u, j));
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad += j[i] != 1.0f;
  GR_CHECK(bad == 0, "zero field: %d voxels with det != 1", bad);

  const double want = B_mat[0] * (B_mat[4] * B_mat[8] - B_mat[5] * B_mat[7]) -
                      B_mat[1] * (B_mat[3] * B_mat[8] - B_mat[5] * B_mat[6]) +
                      B_mat[2] * (B_mat[3] * B_mat[7] - B_mat[4] * B_mat[6]);
  fill_field(g, u, u_affine_minus_id);
  GR_CHECK_OK(be->ops->jacobian_det(be, g, u, j));
  double worst_in = 0.0, worst_all = 0.0;
  for (int64_t z = 0; z < g->n[2]; ++z)
    for (int64_t y = 0; y < g->n[1]; ++y)
      for (int64_t x = 0; x < g->n[0]; ++x) {
        const double e = fabs(j[(z * g->n[1] + y) * g->n[0] + x] - want);
        worst_all = fmax(worst_all, e);
        if (x > 0 && y > 0 && z > 0 && x < g->n[0] - 1 && y < g->n[1] - 1 && z < g->n[2] - 1)
          worst_in = fmax(worst_in, e);
      }
  GR_CHECK(worst_in < 1e-4, "interior det error %g (det B = %g)", worst_in, want);
  /* one-sided differences are exact for a linear field too */
  GR_CHECK(worst_all < 1e-4, "border det error %g", worst_all);

  /* a compressive sine field: det in the interior matches the analytic det */
  fill_field(g, u, u_sine);
  GR_CHECK_OK(be->ops->jacobian_det(be, g, u, j));
  const int64_t x = 12, y = 9, z = 7;
  double p[3];
  voxel_phys(g, x, y, z, p);
  const double k = 2.0 * GR_PI, a = 2.0 * k / 40.0 * cos(k * p[1] / 40.0 + 0.3), b = 2.0 * k / 35.0 * cos(k * p[2] / 35.0),
               c = 2.0 * k / 45.0 * cos(k * p[0] / 45.0 + 1.0);
  /* I + G with G = [[0 a 0], [0 0 b], [c 0 0]]: det = 1 + a b c */
  GR_CHECK_NEAR(j[(z * g->n[1] + y) * g->n[0] + x], 1.0 + a * b * c, 0.01);
  be->ops->free(be, u);
  be->ops->free(be, j);
}

int main(void) {
  gr_backend *be = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  if (!be) GR_TEST_RETURN();
  const gr_grid g = make_grid();
  test_compose(be, &g);
  test_invert(be, &g);
  test_jacobian(be, &g);
  GR_CHECK(be->bytes_current == 0, "leak: %zu bytes", be->bytes_current);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
