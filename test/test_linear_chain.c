/* Regression: a linear stage that follows another (rigid -> affine, what every
 * Slicer preset runs) must keep the alignment the first one found. The affine
 * stage optimises T in M = T o pre; its gradient needs dL/dT = dL/dM pre^T, and
 * with pre^T replaced by pre the translation gradient picked up the matrix
 * gradient times pre's translation: on the T1 test pair the affine stage then
 * walked 95 mm away (here: 58 mm with the old formula, 0.2 mm with the fix).
 * Small synthetic images, so it runs with the unit tests. */
#include "reg_fixtures.h"

static gr_image *blobs(void) {
  gr_geometry g;
  gr_geometry_identity(&g, 48, 44, 40);
  const double sp[3] = {1.2, 1.2, 1.5};
  for (int a = 0; a < 3; ++a) {
    g.spacing[a] = sp[a];
    /* Far from the physical origin, as scanner coordinates are: the wrong gradient
     * grew with the distance of the voxels from the origin. */
    g.origin[a] = (a == 2 ? -90.0 : 120.0) - 0.5 * (double)g.size[a] * sp[a];
  }
  gr_image *img = NULL;
  if (gr_image_create(&g, 1, &img) != GR_OK) return NULL;
  const double c[3][4] = {{120, 120, -90, 80}, {128, 126, -88, 40}, {114, 113, -94, 30}}; /* x y z amplitude, mm */
  for (int64_t z = 0; z < g.size[2]; ++z)
    for (int64_t y = 0; y < g.size[1]; ++y)
      for (int64_t x = 0; x < g.size[0]; ++x) {
        const double idx[3] = {(double)x, (double)y, (double)z};
        double p[3], v = 0.0;
        gr_geometry_index_to_phys(&g, idx, p);
        for (int b = 0; b < 3; ++b) {
          const double d2 = (p[0] - c[b][0]) * (p[0] - c[b][0]) + (p[1] - c[b][1]) * (p[1] - c[b][1]) +
                            (p[2] - c[b][2]) * (p[2] - c[b][2]);
          v += c[b][3] * exp(-d2 / (b == 0 ? 150.0 : 25.0));
        }
        img->data[(z * g.size[1] + y) * g.size[0] + x] = (float)v;
      }
  return img;
}

/* Mean distance (mm) between A and the truth over points around the image centre. */
static double transform_error(const gr_affine *A, const gr_affine *truth, const double c[3]) {
  double s = 0.0;
  int n = 0;
  for (int i = -1; i <= 1; ++i)
    for (int j = -1; j <= 1; ++j)
      for (int k = -1; k <= 1; ++k) {
        const double x[3] = {c[0] + 12.0 * i, c[1] + 12.0 * j, c[2] + 12.0 * k};
        double y0[3], y1[3];
        gr_affine_apply(A, x, y0);
        gr_affine_apply(truth, x, y1);
        s += sqrt((y0[0] - y1[0]) * (y0[0] - y1[0]) + (y0[1] - y1[1]) * (y0[1] - y1[1]) + (y0[2] - y1[2]) * (y0[2] - y1[2]));
        ++n;
      }
  return s / n;
}

int main(void) {
  gr_backend *be = NULL;
  gr_comm *comm = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(2, &be));
  GR_CHECK_OK(gr_comm_local_create(&comm));
  gr_image *f = blobs();
  if (!be || !comm || !f) return 1;
  double c[3];
  gr_geometry_center(&f->geom, c);
  const double p[6] = {0.0, 0.0, 0.05, 4.0, -3.0, 2.0}; /* ~3 degrees about z, mm */
  gr_affine truth;
  gr_euler_to_affine(p, c, &truth);
  gr_image *m = fx_warp_affine(be, f, &truth);

  gr_stage_config st[2];
  gr_stage_config_defaults(GR_STAGE_RIGID, &st[0]);
  gr_stage_config_defaults(GR_STAGE_AFFINE, &st[1]);
  for (int k = 0; k < 2; ++k) {
    st[k].levels = 2;
    st[k].shrink[0] = 2;
    st[k].shrink[1] = 1;
    st[k].sigma_vox[0] = 1.0;
    st[k].sigma_vox[1] = 0.5;
    st[k].iterations[0] = 80;
    st[k].iterations[1] = 60;
    st[k].metric.kind = GR_METRIC_MSE; /* same modality: the true transform is the loss's minimum */
  }
  gr_stage_result res[2];
  gr_reg_options opt;
  memset(&opt, 0, sizeof opt);
  GR_CHECK_OK(gr_register(be, comm, f, m, NULL, NULL, NULL, st, 2, &opt, res));
  gr_affine after_rigid, after_affine;
  GR_CHECK_OK(gr_chain_affine(NULL, res, 2, 1, &after_rigid));
  GR_CHECK_OK(gr_chain_affine(NULL, res, 2, 2, &after_affine));
  const double e_rigid = transform_error(&after_rigid, &truth, c), e_affine = transform_error(&after_affine, &truth, c);
  printf("mean error: after rigid %.3f mm, after rigid -> affine %.3f mm; final losses %.3g, %.3g\n", e_rigid,
         e_affine, res[0].final_metric, res[1].final_metric);
  GR_CHECK(e_rigid < 1.0, "rigid stage error %.3f mm", e_rigid);
  GR_CHECK(e_affine < 1.0, "affine after rigid moved away: %.3f mm (rigid %.3f mm)", e_affine, e_rigid);
  GR_CHECK(res[1].final_metric <= 1.05 * res[0].final_metric + 1e-9, "affine stage worsened the loss: %.3g -> %.3g",
           res[0].final_metric, res[1].final_metric);
  for (int k = 0; k < 2; ++k) gr_stage_result_clear(&res[k]);
  gr_image_destroy(f);
  gr_image_destroy(m);
  gr_comm_destroy(comm);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
