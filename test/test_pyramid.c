/* Pyramid geometry (same physical extent, per-axis shrink for anisotropic
 * voxels), Gaussian down-sampling of a linear ramp (exact in the interior),
 * and the loss-slope convergence test. */
#include "gr_test.h"
#include "registration/reg_internal.h"

static void test_shrink(void) {
  gr_geometry g;
  gr_geometry_identity(&g, 100, 80, 30);
  g.spacing[0] = 0.5; g.spacing[1] = 0.5; g.spacing[2] = 2.0;
  g.origin[0] = 10; g.origin[1] = -5; g.origin[2] = 3;
  gr_geometry s;
  gr_geometry_shrink(&g, 4.0, &s);
  GR_CHECK(s.size[0] == 25 && s.size[1] == 20, "in-plane sizes %lld %lld", (long long)s.size[0], (long long)s.size[1]);
  GR_CHECK(s.size[2] == 30, "thick axis must not shrink (2 mm >= 4 x 0.5 mm): %lld", (long long)s.size[2]);
  for (int a = 0; a < 3; ++a) {
    const double ext0 = g.size[a] * g.spacing[a], ext1 = s.size[a] * s.spacing[a];
    GR_CHECK_NEAR(ext0, ext1, 1e-9);
    /* first voxel corner unchanged: origin - spacing/2 */
    GR_CHECK_NEAR(g.origin[a] - 0.5 * g.spacing[a], s.origin[a] - 0.5 * s.spacing[a], 1e-9);
  }
  gr_geometry_shrink(&g, 1.0, &s);
  GR_CHECK(gr_geometry_same(&g, &s), "shrink 1 must be the identity");
}

static void test_ramp(void) {
  gr_backend *be = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  gr_geometry g;
  gr_geometry_identity(&g, 64, 48, 40);
  gr_image *img = NULL;
  gr_image_create(&g, 1, &img);
  for (int64_t k = 0; k < 40; ++k)
    for (int64_t j = 0; j < 48; ++j)
      for (int64_t i = 0; i < 64; ++i) img->data[(k * 48 + j) * 64 + i] = (float)(0.3 * i - 0.2 * j + 0.1 * k);
  gr_geometry s;
  gr_geometry_shrink(&g, 2.0, &s);
  gr_grid src, dst;
  gr_grid_from_geometry(&g, &src);
  gr_grid_from_geometry(&s, &dst);
  const double sv[3] = {1, 1, 1};
  GR_CHECK_OK(be->ops->smooth(be, &src, img->data, 1, sv));
  gr_image *out = NULL;
  gr_image_create(&s, 1, &out);
  GR_CHECK_OK(be->ops->resample(be, &dst, out->data, &src, img->data, 1, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP));
  double maxerr = 0.0;
  for (int64_t k = 3; k < s.size[2] - 3; ++k)
    for (int64_t j = 3; j < s.size[1] - 3; ++j)
      for (int64_t i = 3; i < s.size[0] - 3; ++i) {
        const double idx[3] = {(double)i, (double)j, (double)k};
        double p[3];
        gr_geometry_index_to_phys(&s, idx, p);
        const double expect = 0.3 * p[0] - 0.2 * p[1] + 0.1 * p[2];
        maxerr = fmax(maxerr, fabs(expect - out->data[(k * s.size[1] + j) * s.size[0] + i]));
      }
  GR_CHECK(maxerr < 1e-4, "smoothed, down-sampled ramp off by %g", maxerr);
  gr_image_destroy(img);
  gr_image_destroy(out);
  gr_backend_destroy(be);
}

static void test_convergence(void) {
  gr_history h;
  GR_CHECK_OK(gr_history_init(&h, 100));
  for (int i = 0; i < 20; ++i) gr_history_push(&h, -1.0 - 0.01 * i); /* still improving */
  GR_CHECK(!gr_history_converged(&h, 10, 1e-6), "decreasing loss must not converge");
  for (int i = 0; i < 10; ++i) gr_history_push(&h, -1.2 + 0.001 * (i % 2)); /* flat, noisy */
  GR_CHECK(gr_history_converged(&h, 10, 1e-6), "flat loss must converge");
  gr_history_free(&h);
  GR_CHECK_OK(gr_history_init(&h, 5));
  gr_history_push(&h, 1.0);
  GR_CHECK(!gr_history_converged(&h, 10, 1e-6), "fewer values than the window never converge");
  gr_history_free(&h);
}

int main(void) {
  test_shrink();
  test_ramp();
  test_convergence();
  GR_TEST_RETURN();
}
