/* cpu_resample: identity, integer shifts, linear-ramp exactness under oblique
 * geometry + random affine + smooth displacement, ZERO vs CLAMP borders,
 * nearest neighbour, and the border snap for single-slice images. */
#include "gr_test.h"

static gr_backend *be;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0,1) xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}
static double srand1(void) { return 2.0 * urand() - 1.0; }

/* Oblique geometry centred on `center`. */
static void make_grid(int64_t nx, int64_t ny, int64_t nz, const double sp[3], const double euler[3],
                      const double center[3], gr_geometry *g, gr_grid *grid) {
  gr_geometry_identity(g, nx, ny, nz);
  const double p[6] = {euler[0], euler[1], euler[2], 0, 0, 0}, zero[3] = {0, 0, 0};
  gr_affine R;
  gr_euler_to_affine(p, zero, &R);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) g->direction[r * 3 + c] = R.m[r * 4 + c];
  for (int d = 0; d < 3; ++d) g->spacing[d] = sp[d];
  const double half[3] = {(nx - 1) * 0.5, (ny - 1) * 0.5, (nz - 1) * 0.5};
  for (int r = 0; r < 3; ++r) {
    double s = center[r];
    for (int c = 0; c < 3; ++c) s -= g->direction[r * 3 + c] * sp[c] * half[c];
    g->origin[r] = s;
  }
  GR_CHECK_OK(gr_grid_from_geometry(g, grid));
}

static void idx_to_phys(const gr_grid *g, double i, double j, double k, double p[3]) {
  for (int r = 0; r < 3; ++r) p[r] = g->i2p[r * 4] * i + g->i2p[r * 4 + 1] * j + g->i2p[r * 4 + 2] * k + g->i2p[r * 4 + 3];
}
static void phys_to_idx(const gr_grid *g, const double p[3], double c[3]) {
  for (int r = 0; r < 3; ++r) c[r] = g->p2i[r * 4] * p[0] + g->p2i[r * 4 + 1] * p[1] + g->p2i[r * 4 + 2] * p[2] + g->p2i[r * 4 + 3];
}

static float *random_image(int64_t n) {
  float *x = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; ++i) x[i] = (float)urand();
  return x;
}

static void test_identity(void) {
  const double sp[3] = {0.9, 1.3, 1.1}, eu[3] = {0.3, -0.2, 0.5}, c0[3] = {10, -5, 3};
  gr_geometry g;
  gr_grid grid;
  make_grid(13, 11, 9, sp, eu, c0, &g, &grid);
  const int64_t n = 13 * 11 * 9;
  float *in = random_image(2 * n), *out = malloc(2 * n * sizeof(float));
  GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 2, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  double err = 0;
  for (int64_t i = 0; i < 2 * n; ++i) err = fmax(err, fabs(out[i] - in[i]));
  GR_CHECK(err < 1e-6, "identity resample max error %g", err);
  GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 2, NULL, NULL, GR_INTERP_NEAREST, GR_BOUNDARY_ZERO));
  GR_CHECK(memcmp(out, in, 2 * n * sizeof(float)) == 0, "identity nearest resample is not exact");
  free(in);
  free(out);
}

/* Translation by an integer number of voxels along the oblique axes, as T and
 * as a constant displacement. */
static void test_integer_shift(void) {
  const double sp[3] = {1.2, 0.8, 1.5}, eu[3] = {-0.4, 0.25, 0.1}, c0[3] = {-3, 7, 2};
  const int64_t nx = 12, ny = 10, nz = 8, n = nx * ny * nz;
  const int sh[3] = {2, -1, 3};
  gr_geometry g;
  gr_grid grid;
  make_grid(nx, ny, nz, sp, eu, c0, &g, &grid);
  gr_affine T;
  gr_affine_identity(&T);
  for (int r = 0; r < 3; ++r) T.m[r * 4 + 3] = grid.i2p[r * 4] * sh[0] + grid.i2p[r * 4 + 1] * sh[1] + grid.i2p[r * 4 + 2] * sh[2];
  float *in = random_image(n), *out = malloc(n * sizeof(float)), *disp = malloc(3 * n * sizeof(float));
  for (int r = 0; r < 3; ++r)
    for (int64_t v = 0; v < n; ++v) disp[r * n + v] = (float)T.m[r * 4 + 3];
  for (int mode = 0; mode < 2; ++mode) {
    if (mode == 0)
      GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, &T, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
    else
      GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, NULL, disp, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
    double err = 0;
    for (int64_t k = 0; k < nz; ++k)
      for (int64_t j = 0; j < ny; ++j)
        for (int64_t i = 0; i < nx; ++i) {
          const int64_t a = i + sh[0], b = j + sh[1], c = k + sh[2];
          const int in_grid = a >= 0 && a < nx && b >= 0 && b < ny && c >= 0 && c < nz;
          const float expect = in_grid ? in[(c * ny + b) * nx + a] : 0.0f;
          /* the float disp rounds the shift to ~1e-7 mm: allow that much */
          err = fmax(err, fabs(out[(k * ny + j) * nx + i] - expect));
        }
    GR_CHECK(err < (mode == 0 ? 1e-6 : 1e-5), "integer shift (mode %d) max error %g", mode, err);
  }
  free(in);
  free(out);
  free(disp);
}

/* Trilinear reproduces affine functions exactly: sample f(p) = a.p + b on an
 * oblique anisotropic input grid, warp by a random affine T and a smooth random
 * displacement, and expect a.y + b wherever y falls inside the input grid. */
static void test_linear_ramp(void) {
  const double spi[3] = {1.1, 0.7, 1.4}, eui[3] = {0.35, -0.3, 0.6}, ci[3] = {1, 2, -1};
  const double spo[3] = {0.9, 1.2, 1.0}, euo[3] = {-0.2, 0.4, -0.15}, co[3] = {0, 1, 0};
  gr_geometry gi, go;
  gr_grid in_grid, out_grid;
  make_grid(24, 30, 18, spi, eui, ci, &gi, &in_grid);
  make_grid(20, 17, 19, spo, euo, co, &go, &out_grid);
  const int64_t nin = 24 * 30 * 18, nout = 20 * 17 * 19;
  const int ncomp = 3;
  double a[3][3], b[3];
  for (int q = 0; q < ncomp; ++q) {
    for (int r = 0; r < 3; ++r) a[q][r] = 0.5 * srand1();
    b[q] = 3.0 * srand1();
  }
  float *in = malloc((size_t)ncomp * nin * sizeof(float));
  for (int64_t k = 0; k < 18; ++k)
    for (int64_t j = 0; j < 30; ++j)
      for (int64_t i = 0; i < 24; ++i) {
        double p[3];
        idx_to_phys(&in_grid, (double)i, (double)j, (double)k, p);
        for (int q = 0; q < ncomp; ++q)
          in[q * nin + (k * 30 + j) * 24 + i] = (float)(a[q][0] * p[0] + a[q][1] * p[1] + a[q][2] * p[2] + b[q]);
      }
  gr_affine T;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) T.m[r * 4 + c] = (r == c ? 1.0 : 0.0) + 0.08 * srand1();
    T.m[r * 4 + 3] = 1.5 * srand1();
  }
  float *disp = malloc(3 * nout * sizeof(float)), *out = malloc((size_t)ncomp * nout * sizeof(float));
  double fr[3][3], ph[3];
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) fr[r][c] = 0.3 * srand1();
    ph[r] = 3.0 * srand1();
  }
  for (int64_t k = 0; k < 19; ++k)
    for (int64_t j = 0; j < 17; ++j)
      for (int64_t i = 0; i < 20; ++i) {
        double p[3];
        idx_to_phys(&out_grid, (double)i, (double)j, (double)k, p);
        for (int r = 0; r < 3; ++r)
          disp[r * nout + (k * 17 + j) * 20 + i] = (float)(1.2 * sin(fr[r][0] * p[0] + fr[r][1] * p[1] + fr[r][2] * p[2] + ph[r]));
      }
  GR_CHECK_OK(be->ops->resample(be, &out_grid, out, &in_grid, in, ncomp, &T, disp, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  int64_t inside = 0, outside_zero_bad = 0;
  double err = 0;
  for (int64_t k = 0; k < 19; ++k)
    for (int64_t j = 0; j < 17; ++j)
      for (int64_t i = 0; i < 20; ++i) {
        const int64_t v = (k * 17 + j) * 20 + i;
        double x[3], y[3], c[3];
        idx_to_phys(&out_grid, (double)i, (double)j, (double)k, x);
        for (int r = 0; r < 3; ++r) x[r] += disp[r * nout + v]; /* y = A (x + u) + t */
        gr_affine_apply(&T, x, y);
        phys_to_idx(&in_grid, y, c);
        const int in_dom = c[0] >= 1e-6 && c[0] <= 23 - 1e-6 && c[1] >= 1e-6 && c[1] <= 29 - 1e-6 && c[2] >= 1e-6 && c[2] <= 17 - 1e-6;
        const int far = c[0] <= -1.001 || c[0] >= 24.001 || c[1] <= -1.001 || c[1] >= 30.001 || c[2] <= -1.001 || c[2] >= 18.001;
        for (int q = 0; q < ncomp; ++q) {
          if (in_dom) {
            const double e = a[q][0] * y[0] + a[q][1] * y[1] + a[q][2] * y[2] + b[q];
            err = fmax(err, fabs(out[q * nout + v] - e));
          } else if (far && out[q * nout + v] != 0.0f) {
            ++outside_zero_bad;
          }
        }
        inside += in_dom;
      }
  GR_CHECK(inside > nout / 4, "only %lld of %lld voxels inside: test geometry too weak", (long long)inside, (long long)nout);
  GR_CHECK(err < 2e-5 * 30, "linear ramp max error %g over %lld inside voxels", err, (long long)inside);
  GR_CHECK(outside_zero_bad == 0, "%lld samples far outside are not 0", (long long)outside_zero_bad);
  free(in);
  free(out);
  free(disp);
}

/* Borders on an identity grid: shift by -0.5 voxel along x (and far away). */
static void test_borders(void) {
  const int64_t nx = 6, ny = 5, nz = 4, n = nx * ny * nz;
  gr_geometry g;
  gr_grid grid;
  gr_geometry_identity(&g, nx, ny, nz);
  GR_CHECK_OK(gr_grid_from_geometry(&g, &grid));
  float *in = random_image(n), *out = malloc(n * sizeof(float));
  for (int64_t v = 0; v < n; ++v) in[v] += 1.0f; /* keep away from 0 */
  gr_affine T;
  gr_affine_identity(&T);
  T.m[3] = -0.5;
  for (int bnd = 0; bnd < 2; ++bnd) {
    GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, &T, NULL, GR_INTERP_LINEAR, (gr_boundary)bnd));
    for (int64_t k = 0; k < nz; ++k)
      for (int64_t j = 0; j < ny; ++j) {
        const float *r = in + (k * ny + j) * nx, *o = out + (k * ny + j) * nx;
        const double e0 = bnd == GR_BOUNDARY_ZERO ? 0.5 * r[0] : r[0];
        GR_CHECK_NEAR(o[0], e0, 1e-6);
        GR_CHECK_NEAR(o[3], 0.5 * (r[2] + r[3]), 1e-6);
      }
  }
  T.m[3] = 0.5; /* the last column reads half of the border voxel (ZERO) or the border voxel (CLAMP) */
  for (int bnd = 0; bnd < 2; ++bnd) {
    GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, &T, NULL, GR_INTERP_LINEAR, (gr_boundary)bnd));
    const float *r = in + nx * 2, *o = out + nx * 2;
    GR_CHECK_NEAR(o[nx - 1], bnd == GR_BOUNDARY_ZERO ? 0.5 * r[nx - 1] : r[nx - 1], 1e-6);
  }
  T.m[3] = -10.0; T.m[7] = 0.25;
  GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, &T, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  int nonzero = 0;
  for (int64_t v = 0; v < n; ++v) nonzero += out[v] != 0.0f;
  GR_CHECK(nonzero == 0, "ZERO far outside: %d non-zero samples", nonzero);
  GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, &T, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP));
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j) {
      /* x clamped to 0; y = j + 0.25 interpolates (clamped at the top row) */
      const int64_t j1 = j + 1 < ny ? j + 1 : ny - 1;
      const double t = j + 1 < ny ? 0.25 : 0.0;
      const double e = (1 - t) * in[(k * ny + j) * nx] + t * in[(k * ny + j1) * nx];
      for (int64_t i = 0; i < nx; ++i) GR_CHECK_NEAR(out[(k * ny + j) * nx + i], e, 1e-6);
    }
  free(in);
  free(out);
}

static void test_nearest(void) {
  const int64_t nx = 7, ny = 6, nz = 5, n = nx * ny * nz;
  gr_geometry g;
  gr_grid grid;
  gr_geometry_identity(&g, nx, ny, nz);
  g.spacing[0] = 2.0; /* shifts below are in voxels: scale x by the spacing */
  GR_CHECK_OK(gr_grid_from_geometry(&g, &grid));
  float *in = random_image(n), *out = malloc(n * sizeof(float));
  for (int64_t v = 0; v < n; ++v) in[v] += 1.0f;
  gr_affine T;
  gr_affine_identity(&T);
  T.m[3] = 0.4 * 2.0; T.m[7] = -0.4; T.m[11] = 0.6; /* rounds to (i, j, k+1) */
  for (int bnd = 0; bnd < 2; ++bnd) {
    GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, &T, NULL, GR_INTERP_NEAREST, (gr_boundary)bnd));
    int bad = 0;
    for (int64_t k = 0; k < nz; ++k)
      for (int64_t j = 0; j < ny; ++j)
        for (int64_t i = 0; i < nx; ++i) {
          int64_t kk = k + 1;
          float e;
          if (kk >= nz) e = bnd == GR_BOUNDARY_ZERO ? 0.0f : in[((nz - 1) * ny + j) * nx + i];
          else e = in[(kk * ny + j) * nx + i];
          bad += out[(k * ny + j) * nx + i] != e;
        }
    GR_CHECK(bad == 0, "nearest (boundary %d): %d wrong samples", bnd, bad);
  }
  free(in);
  free(out);
}

/* A single-slice oblique image resampled onto itself: c_z is 0 only up to
 * double rounding; the border snap must keep the slice. */
static void test_single_slice(void) {
  const double sp[3] = {0.7, 0.9, 2.0}, eu[3] = {0.3, 0.7, -0.4}, c0[3] = {3, -2, 11};
  gr_geometry g;
  gr_grid grid;
  make_grid(9, 8, 1, sp, eu, c0, &g, &grid);
  const int64_t n = 72;
  float *in = random_image(n), *out = malloc(n * sizeof(float));
  for (int64_t v = 0; v < n; ++v) in[v] += 1.0f;
  GR_CHECK_OK(be->ops->resample(be, &grid, out, &grid, in, 1, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  double err = 0;
  for (int64_t v = 0; v < n; ++v) err = fmax(err, fabs(out[v] - in[v]));
  GR_CHECK(err < 1e-6, "single-slice identity max error %g", err);
  free(in);
  free(out);
}

static void test_bad_args(void) {
  gr_geometry g;
  gr_grid grid;
  gr_geometry_identity(&g, 2, 2, 2);
  GR_CHECK_OK(gr_grid_from_geometry(&g, &grid));
  float buf[8] = {0};
  GR_CHECK(be->ops->resample(be, &grid, buf, &grid, NULL, 1, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO) ==
               GR_ERR_INVALID_ARG, "NULL input accepted");
  GR_CHECK(be->ops->resample(be, &grid, buf, &grid, buf, 0, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO) ==
               GR_ERR_INVALID_ARG, "ncomp 0 accepted");
}

int main(void) {
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  if (!be) return 1;
  test_identity();
  test_integer_shift();
  test_linear_ramp();
  test_borders();
  test_nearest();
  test_single_slice();
  test_bad_args();
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
