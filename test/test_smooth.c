/* cpu smooth: constants preserved (borders included), impulse response is a
 * normalised Gaussian of the requested variance, sigma 0 leaves an axis alone,
 * axes are separable, fields are smoothed per plane, thread count is invisible. */
#include <stdint.h>
#include "gr_test.h"

static gr_grid make_grid(int64_t nx, int64_t ny, int64_t nz) {
  gr_geometry geo;
  gr_geometry_identity(&geo, nx, ny, nz);
  geo.spacing[0] = 0.7; /* spacing must not matter: sigma is in voxels */
  gr_grid g;
  gr_grid_from_geometry(&geo, &g);
  return g;
}

static int64_t nvox_of(const gr_grid *g) { return g->n[0] * g->n[1] * g->n[2]; }

static float *alloc_f(gr_backend *be, int64_t n) { return be->ops->alloc(be, (size_t)n * sizeof(float)); }

/* Deterministic pseudo-random values in [-1, 1]. */
static void fill_random(float *x, int64_t n, uint32_t seed) {
  uint32_t s = seed;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((s >> 8) * (2.0 / 16777216.0) - 1.0);
  }
}

static void test_constant(gr_backend *be) {
  const gr_grid g = make_grid(23, 17, 11);
  const int64_t n = nvox_of(&g);
  float *x = alloc_f(be, n);
  const double sigmas[][3] = {{2.0, 1.5, 3.0}, {0.4, 0.8, 1.0}, {10.0, 20.0, 50.0} /* kernels wider than the grid */};
  for (int t = 0; t < 3; ++t) {
    GR_CHECK_OK(be->ops->fill(be, x, 3.25f, n));
    GR_CHECK_OK(be->ops->smooth(be, &g, x, 1, sigmas[t]));
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) worst = fmax(worst, fabs(x[i] - 3.25));
    GR_CHECK(worst <= 1e-6, "sigma set %d: constant changed by %g", t, worst);
  }
  be->ops->free(be, x);
}

/* Delta at the centre of a 41^3 grid: unit mass, zero mean offset, variance sigma^2. */
static void test_impulse(gr_backend *be) {
  const gr_grid g = make_grid(41, 41, 41);
  const int64_t n = nvox_of(&g), c = 20;
  float *x = alloc_f(be, n);
  GR_CHECK_OK(be->ops->fill(be, x, 0.0f, n));
  x[(c * 41 + c) * 41 + c] = 1.0f;
  const double sigma[3] = {1.5, 2.0, 3.0};
  GR_CHECK_OK(be->ops->smooth(be, &g, x, 1, sigma));
  double mass = 0.0, mean[3] = {0, 0, 0}, var[3] = {0, 0, 0};
  for (int64_t z = 0; z < 41; ++z)
    for (int64_t y = 0; y < 41; ++y)
      for (int64_t xi = 0; xi < 41; ++xi) {
        const double w = x[(z * 41 + y) * 41 + xi];
        const double d[3] = {(double)(xi - c), (double)(y - c), (double)(z - c)};
        mass += w;
        for (int a = 0; a < 3; ++a) {
          mean[a] += w * d[a];
          var[a] += w * d[a] * d[a];
        }
      }
  GR_CHECK_NEAR(mass, 1.0, 1e-5);
  for (int a = 0; a < 3; ++a) {
    GR_CHECK_NEAR(mean[a], 0.0, 1e-6);
    GR_CHECK(fabs(var[a] / (sigma[a] * sigma[a]) - 1.0) < 0.02, "axis %d: variance %g vs sigma^2 %g", a, var[a],
             sigma[a] * sigma[a]);
  }
  /* symmetric and peaked at the centre */
  const float peak = x[(c * 41 + c) * 41 + c];
  GR_CHECK(x[(c * 41 + c) * 41 + c + 3] == x[(c * 41 + c) * 41 + c - 3], "x symmetry");
  GR_CHECK(x[((c + 4) * 41 + c) * 41 + c] == x[((c - 4) * 41 + c) * 41 + c], "z symmetry");
  GR_CHECK(peak > x[(c * 41 + c + 1) * 41 + c], "peak at the centre");
  be->ops->free(be, x);
}

/* sigma 0 on an axis: an impulse spreads only along the smoothed axis, and a
 * random volume with sigma (0,0,0) is untouched bit for bit. */
static void test_axis_selective(gr_backend *be) {
  const gr_grid g = make_grid(19, 29, 18);
  const int64_t n = nvox_of(&g), nx = 19, ny = 29;
  float *x = alloc_f(be, n);
  GR_CHECK_OK(be->ops->fill(be, x, 0.0f, n));
  /* cy at least 2r from the ends: only then does the renormalised kernel also conserve mass */
  const int64_t cx = 9, cy = 14, cz = 8;
  x[(cz * ny + cy) * nx + cx] = 1.0f;
  const double sy[3] = {0.0, 2.0, 0.0};
  GR_CHECK_OK(be->ops->smooth(be, &g, x, 1, sy));
  int spill = 0;
  double line = 0.0;
  for (int64_t z = 0; z < 18; ++z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t xi = 0; xi < nx; ++xi) {
        const float v = x[(z * ny + y) * nx + xi];
        if (xi == cx && z == cz) line += v;
        else spill += v != 0.0f;
      }
  GR_CHECK(spill == 0, "%d voxels off the y line changed", spill);
  GR_CHECK_NEAR(line, 1.0, 1e-6);
  GR_CHECK(x[(cz * ny + cy + 2) * nx + cx] > 0.0f, "spread along y");

  float *r = alloc_f(be, n), *r0 = alloc_f(be, n);
  fill_random(r, n, 7);
  memcpy(r0, r, (size_t)n * sizeof(float));
  const double none[3] = {0.0, 0.0, 0.0};
  GR_CHECK_OK(be->ops->smooth(be, &g, r, 1, none));
  GR_CHECK(memcmp(r, r0, (size_t)n * sizeof(float)) == 0, "sigma 0 everywhere must be the identity");

  /* separability: three single-axis passes equal one three-axis call */
  const double all[3] = {1.2, 2.5, 0.9};
  memcpy(r, r0, (size_t)n * sizeof(float));
  GR_CHECK_OK(be->ops->smooth(be, &g, r, 1, all));
  for (int a = 0; a < 3; ++a) {
    double one[3] = {0.0, 0.0, 0.0};
    one[a] = all[a];
    GR_CHECK_OK(be->ops->smooth(be, &g, r0, 1, one));
  }
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) worst = fmax(worst, fabs((double)r[i] - r0[i]));
  GR_CHECK(worst <= 1e-6, "separable passes differ by %g", worst);

  const double bad[3] = {1.0, -1.0, 0.0};
  GR_CHECK(be->ops->smooth(be, &g, r, 1, bad) == GR_ERR_INVALID_ARG, "negative sigma rejected");
  be->ops->free(be, x);
  be->ops->free(be, r);
  be->ops->free(be, r0);
}

/* Each plane of a 3-component field is smoothed exactly as a scalar image. */
static void test_field_planes(gr_backend *be) {
  const gr_grid g = make_grid(37, 13, 15); /* nx not a multiple of the 16-wide bundles */
  const int64_t n = nvox_of(&g);
  float *orig = alloc_f(be, 3 * n), *f = alloc_f(be, 3 * n), *s = alloc_f(be, n);
  fill_random(orig, 3 * n, 11);
  for (int64_t i = 0; i < n; ++i) orig[2 * n + i] = -4.0f; /* a constant plane stays constant */
  memcpy(f, orig, (size_t)(3 * n) * sizeof(float));
  const double sigma[3] = {1.7, 1.1, 2.4};
  GR_CHECK_OK(be->ops->smooth(be, &g, f, 3, sigma));
  for (int c = 0; c < 3; ++c) {
    memcpy(s, orig + c * n, (size_t)n * sizeof(float));
    GR_CHECK_OK(be->ops->smooth(be, &g, s, 1, sigma));
    GR_CHECK(memcmp(s, f + c * n, (size_t)n * sizeof(float)) == 0, "plane %d differs from the scalar result", c);
  }
  double worst = 0.0;
  for (int64_t i = 0; i < n; ++i) worst = fmax(worst, fabs(f[2 * n + i] + 4.0));
  GR_CHECK(worst <= 1e-6, "constant plane changed by %g", worst);
  be->ops->free(be, orig);
  be->ops->free(be, f);
  be->ops->free(be, s);
}

/* Same bits with 1 and 2 threads (the result is a fixed-order sum per voxel). */
static void test_threads(void) {
  gr_backend *b1 = NULL, *b2 = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(1, &b1));
  GR_CHECK_OK(gr_backend_cpu_create(2, &b2));
  if (!b1 || !b2) return;
  const gr_grid g = make_grid(64, 48, 40);
  const int64_t n = nvox_of(&g);
  float *x1 = alloc_f(b1, 3 * n), *x2 = alloc_f(b2, 3 * n);
  fill_random(x1, 3 * n, 3);
  memcpy(x2, x1, (size_t)(3 * n) * sizeof(float));
  const double sigma[3] = {2.0, 3.0, 1.0};
  GR_CHECK_OK(b1->ops->smooth(b1, &g, x1, 3, sigma));
  GR_CHECK_OK(b2->ops->smooth(b2, &g, x2, 3, sigma));
  GR_CHECK(memcmp(x1, x2, (size_t)(3 * n) * sizeof(float)) == 0, "1 vs 2 threads differ");
  b1->ops->free(b1, x1);
  b2->ops->free(b2, x2);
  GR_CHECK(b1->bytes_current == 0 && b2->bytes_current == 0, "scratch leaked");
  gr_backend_destroy(b1);
  gr_backend_destroy(b2);
}

int main(void) {
  gr_backend *be = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  if (!be) GR_TEST_RETURN();
  test_constant(be);
  test_impulse(be);
  test_axis_selective(be);
  test_field_planes(be);
  GR_CHECK(be->bytes_current == 0, "leak: %zu bytes", be->bytes_current);
  gr_backend_destroy(be);
  test_threads();
  GR_TEST_RETURN();
}
