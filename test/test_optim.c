/* cpu adam_direction: the first step is sign(g); bias-corrected moments follow a
 * double-precision reference over several steps (the rule itself runs in float); max_vox is the voxel-unit
 * length of the direction on an anisotropic, oblique grid. */
#include <stdint.h>
#include "gr_test.h"

static gr_grid make_grid(void) {
  gr_geometry geo;
  gr_geometry_identity(&geo, 10, 9, 8);
  geo.spacing[0] = 0.5;
  geo.spacing[1] = 1.0;
  geo.spacing[2] = 2.0;
  const double c = cos(0.4), s = sin(0.4);
  const double dir[9] = {1, 0, 0, 0, c, -s, 0, s, c};
  memcpy(geo.direction, dir, sizeof dir);
  gr_grid g;
  gr_grid_from_geometry(&geo, &g);
  return g;
}

static void fill_grad(float *g, int64_t n, uint32_t seed) {
  uint32_t s = seed;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    const double r = (s >> 8) * (2.0 / 16777216.0) - 1.0; /* [-1, 1) */
    g[i] = (float)(r >= 0 ? r + 0.01 : r - 0.01);          /* |g| >= 0.01 */
  }
}

static double vox_len(const gr_grid *g, const double d[3]) {
  double s = 0.0;
  for (int r = 0; r < 3; ++r) {
    const double e = g->p2i[r * 4] * d[0] + g->p2i[r * 4 + 1] * d[1] + g->p2i[r * 4 + 2] * d[2];
    s += e * e;
  }
  return sqrt(s);
}

static double max_vox_of(const gr_grid *g, const float *dir, int64_t n) {
  double mx = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d[3] = {dir[i], dir[n + i], dir[2 * n + i]};
    mx = fmax(mx, vox_len(g, d));
  }
  return mx;
}

static void test_first_step(gr_backend *be, const gr_grid *g) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2];
  float *gr = be->ops->alloc(be, 3 * n * sizeof(float)), *m = be->ops->alloc(be, 3 * n * sizeof(float)),
        *v = be->ops->alloc(be, 3 * n * sizeof(float)), *d = be->ops->alloc(be, 3 * n * sizeof(float));
  fill_grad(gr, 3 * n, 5);
  gr[0] = 0.0f; /* zero gradient: zero direction, not NaN */
  GR_CHECK_OK(be->ops->fill(be, m, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->fill(be, v, 0.0f, 3 * n));
  double mv = -1.0;
  GR_CHECK_OK(be->ops->adam_direction(be, g, gr, m, v, d, 0.9, 0.999, 1e-8, 1, &mv));
  double worst = 0.0;
  for (int64_t i = 1; i < 3 * n; ++i) worst = fmax(worst, fabs(d[i] - (gr[i] > 0 ? 1.0 : -1.0)));
  GR_CHECK(worst < 1e-5, "first step is not sign(g): worst %g", worst);
  GR_CHECK(d[0] == 0.0f, "zero gradient gives %g", d[0]);
  const double want = max_vox_of(g, d, n);
  GR_CHECK_NEAR(mv, want, 1e-6 * want);
  /* a voxel with all three components +-1: length ~ |p2i (+-1,+-1,+-1)|, between 1/2 and 2+1+0.5 voxels */
  GR_CHECK(mv > 2.0 && mv < 3.5, "max_vox %g", mv);

  /* with only an x component of 1 mm the length is 1 / 0.5 mm = 2 voxels */
  GR_CHECK_OK(be->ops->fill(be, gr, 0.0f, 3 * n));
  gr[7] = 3.0f;
  GR_CHECK_OK(be->ops->fill(be, m, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->fill(be, v, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->adam_direction(be, g, gr, m, v, d, 0.9, 0.999, 1e-8, 1, &mv));
  GR_CHECK_NEAR(mv, 2.0, 1e-6);
  /* a z component of 1 mm: |p2i e_z| = 1/1 * sin(.4) (y axis) and 1/2 * cos(.4) (z axis) mixed */
  GR_CHECK_OK(be->ops->fill(be, gr, 0.0f, 3 * n));
  gr[2 * n + 11] = -0.2f;
  GR_CHECK_OK(be->ops->fill(be, m, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->fill(be, v, 0.0f, 3 * n));
  GR_CHECK_OK(be->ops->adam_direction(be, g, gr, m, v, d, 0.9, 0.999, 1e-8, 1, &mv));
  GR_CHECK_NEAR(mv, sqrt(pow(sin(0.4) / 1.0, 2) + pow(cos(0.4) / 2.0, 2)), 1e-6);

  GR_CHECK(be->ops->adam_direction(be, g, gr, m, v, d, 0.9, 0.999, 1e-8, 0, &mv) == GR_ERR_INVALID_ARG, "t = 0");
  GR_CHECK(be->ops->adam_direction(be, g, gr, m, v, d, 1.0, 0.999, 1e-8, 1, &mv) == GR_ERR_INVALID_ARG, "b1 = 1");
  /* the rule runs in float: an epsilon that float flushes or cannot hold is refused, not silently 0 */
  GR_CHECK(be->ops->adam_direction(be, g, gr, m, v, d, 0.9, 0.999, 1e-300, 1, &mv) == GR_ERR_INVALID_ARG,
           "eps below FLT_MIN");
  GR_CHECK(be->ops->adam_moments(be, g, gr, (gr_moments){m, v, 0}, 0.9, 0.999, 1e300, 1, &mv) == GR_ERR_INVALID_ARG,
           "eps above FLT_MAX");
  be->ops->free(be, gr);
  be->ops->free(be, m);
  be->ops->free(be, v);
  be->ops->free(be, d);
}

/* Five steps with changing gradients against a plain double reference. */
static void test_bias_correction(gr_backend *be, const gr_grid *g) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2], n3 = 3 * n;
  float *gr = be->ops->alloc(be, n3 * sizeof(float)), *m = be->ops->alloc(be, n3 * sizeof(float)),
        *v = be->ops->alloc(be, n3 * sizeof(float)), *d = be->ops->alloc(be, n3 * sizeof(float));
  double *rm = calloc((size_t)n3, sizeof(double)), *rv = calloc((size_t)n3, sizeof(double)),
         *rd = calloc((size_t)n3, sizeof(double));
  GR_CHECK_OK(be->ops->fill(be, m, 0.0f, n3));
  GR_CHECK_OK(be->ops->fill(be, v, 0.0f, n3));
  const double b1 = 0.8, b2 = 0.95, eps = 1e-3;
  for (int t = 1; t <= 5; ++t) {
    fill_grad(gr, n3, 100 + (uint32_t)t);
    double mv = 0.0;
    GR_CHECK_OK(be->ops->adam_direction(be, g, gr, m, v, d, b1, b2, eps, t, &mv));
    double worst_m = 0.0, worst_v = 0.0, worst_d = 0.0;
    for (int64_t i = 0; i < n3; ++i) {
      rm[i] = b1 * rm[i] + (1 - b1) * gr[i];
      rv[i] = b2 * rv[i] + (1 - b2) * (double)gr[i] * gr[i];
      const double mh = rm[i] / (1 - pow(b1, t)), vh = rv[i] / (1 - pow(b2, t));
      rd[i] = mh / (sqrt(vh) + eps);
      worst_m = fmax(worst_m, fabs(m[i] - rm[i]));
      worst_v = fmax(worst_v, fabs(v[i] - rv[i]));
      worst_d = fmax(worst_d, fabs(d[i] - rd[i]));
    }
    GR_CHECK(worst_m < 1e-6 && worst_v < 1e-6, "t=%d: moments off by %g / %g", t, worst_m, worst_v);
    GR_CHECK(worst_d < 1e-5, "t=%d: direction off by %g", t, worst_d);
    double want = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double dd[3] = {rd[i], rd[n + i], rd[2 * n + i]};
      want = fmax(want, vox_len(g, dd));
    }
    GR_CHECK_NEAR(mv, want, 1e-5 * want);
  }
  free(rm);
  free(rv);
  free(rd);
  be->ops->free(be, gr);
  be->ops->free(be, m);
  be->ops->free(be, v);
  be->ops->free(be, d);
}

/* The fused update (adam_moments + adam_compose) is bitwise the unfused
 * sequence (adam_direction, fill + axpy to form the step, compose) over
 * several steps: the driver may use either, and sharded runs use the latter. */
static void test_fused_update(gr_backend *be, const gr_grid *g) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2], n3 = 3 * n;
  float *grad = malloc(sizeof(float) * (size_t)n3), *m1 = calloc((size_t)n3, sizeof(float)),
        *v1 = calloc((size_t)n3, sizeof(float)), *m2 = calloc((size_t)n3, sizeof(float)),
        *v2 = calloc((size_t)n3, sizeof(float)), *dir = malloc(sizeof(float) * (size_t)n3),
        *step = malloc(sizeof(float) * (size_t)n3), *u1 = calloc((size_t)n3, sizeof(float)),
        *u2 = calloc((size_t)n3, sizeof(float)), *o1 = malloc(sizeof(float) * (size_t)n3),
        *o2 = malloc(sizeof(float) * (size_t)n3);
  int64_t differ = 0;
  for (int t = 1; t <= 4; ++t) {
    fill_grad(grad, n3, 77u + (uint32_t)t);
    double mx1 = 0.0, mx2 = 0.0;
    GR_CHECK_OK(be->ops->adam_direction(be, g, grad, m1, v1, dir, 0.9, 0.99, 1e-8, t, &mx1));
    const gr_moments mom2 = {m2, v2, 0};
    GR_CHECK_OK(be->ops->adam_moments(be, g, grad, mom2, 0.9, 0.99, 1e-8, t, &mx2));
    GR_CHECK(mx1 == mx2, "step %d: max_vox %.17g (unfused) vs %.17g (fused)", t, mx1, mx2);
    const float scale = (float)(-0.7 / mx1);
    GR_CHECK_OK(be->ops->fill(be, step, 0.0f, n3));
    GR_CHECK_OK(be->ops->axpy(be, n3, scale, dir, step));
    GR_CHECK_OK(be->ops->compose(be, g, u1, step, o1));
    GR_CHECK_OK(be->ops->adam_compose(be, g, mom2, 0.9, 0.99, 1e-8, t, scale, u2, o2));
    for (int64_t i = 0; i < n3; ++i) differ += memcmp(&o1[i], &o2[i], sizeof(float)) != 0;
    differ += memcmp(m1, m2, sizeof(float) * (size_t)n3) != 0;
    differ += memcmp(v1, v2, sizeof(float) * (size_t)n3) != 0;
    memcpy(u1, o1, sizeof(float) * (size_t)n3);
    memcpy(u2, o2, sizeof(float) * (size_t)n3);
  }
  GR_CHECK(differ == 0, "fused update differs from the unfused sequence in %lld values", (long long)differ);
  double umax = 0.0;
  for (int64_t i = 0; i < n3; ++i) umax = fabs(u1[i]) > umax ? fabs(u1[i]) : umax;
  GR_CHECK(umax > 0.1, "the update moved nothing (max |u| %g)", umax);
  const gr_moments mom2 = {m2, v2, 0};
  GR_CHECK(be->ops->adam_compose(be, g, mom2, 0.9, 0.99, 1e-8, 1, 1.0f, u2, u2) == GR_ERR_INVALID_ARG,
           "adam_compose accepted out == u");
  GR_CHECK(be->ops->adam_moments(be, g, grad, mom2, 1.0, 0.99, 1e-8, 1, &umax) == GR_ERR_INVALID_ARG,
           "adam_moments accepted beta1 = 1");
  free(grad); free(m1); free(v1); free(m2); free(v2); free(dir); free(step); free(u1); free(u2); free(o1); free(o2);
}

/* Round to nearest even bfloat16, written independently of the library's bit
 * trick: the nearer of the two neighbours that keep 8 significant bits. */
static float bf16_ref(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
  float flo, fhi;
  memcpy(&flo, &lo, sizeof flo);
  memcpy(&fhi, &hi, sizeof fhi);
  const double dl = fabs((double)x - flo), dh = fabs((double)fhi - x);
  if (dl != dh) return dl < dh ? flo : fhi;
  return ((lo >> 16) & 1u) ? fhi : flo;
}

static float bf16_at(const void *p, int64_t k) {
  const uint32_t u = (uint32_t)((const uint16_t *)p)[k] << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* bfloat16 moments (GigaRegAdamMoments "bfloat16"): m and v are the float
 * rule's values rounded to nearest-even bfloat16, the direction, max_vox and
 * the fused compose's step come from the stored values, and over 30 steps the
 * direction stays within 1% (relative L2) of the float-moment direction. */
static void test_bf16_moments(gr_backend *be, const gr_grid *g) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2], n3 = 3 * n;
  const double b1 = 0.9, b2 = 0.99, eps = 1e-8;
  float *grad = malloc(sizeof(float) * (size_t)n3), *mr = calloc((size_t)n3, sizeof(float)),
        *vr = calloc((size_t)n3, sizeof(float)), *mf = calloc((size_t)n3, sizeof(float)),
        *vf = calloc((size_t)n3, sizeof(float)), *dirf = malloc(sizeof(float) * (size_t)n3),
        *dirr = malloc(sizeof(float) * (size_t)n3), *step = malloc(sizeof(float) * (size_t)n3),
        *u = calloc((size_t)n3, sizeof(float)), *o1 = malloc(sizeof(float) * (size_t)n3),
        *o2 = malloc(sizeof(float) * (size_t)n3);
  void *m16 = be->ops->alloc(be, gr_moment_bytes(n, 1)), *v16 = be->ops->alloc(be, gr_moment_bytes(n, 1));
  GR_CHECK(gr_moment_bytes(n, 1) * 2 >= gr_moment_bytes(n, 0) && gr_moment_bytes(n, 1) * 2 <= gr_moment_bytes(n, 0) + 8,
           "bf16 moment bytes %zu vs float %zu", gr_moment_bytes(n, 1), gr_moment_bytes(n, 0));
  memset(m16, 0, gr_moment_bytes(n, 1));
  memset(v16, 0, gr_moment_bytes(n, 1));
  const gr_moments mom = {m16, v16, 1};
  int64_t differ = 0, rounded = 0;
  double rel = 0.0;
  for (int t = 1; t <= 30; ++t) {
    fill_grad(grad, n3, 501u + (uint32_t)t);
    for (int64_t i = 0; i < n3; ++i) grad[i] *= (float)(1.0 + 0.5 * sin(0.3 * t)); /* moments rise and fall */
    double mx = 0.0, mxf = 0.0, mxr = 0.0;
    GR_CHECK_OK(be->ops->adam_moments(be, g, grad, mom, b1, b2, eps, t, &mx));
    GR_CHECK_OK(be->ops->adam_direction(be, g, grad, mf, vf, dirf, b1, b2, eps, t, &mxf));
    /* the float rule (cpu_kernels.h): constants formed in double, rounded once */
    const float c1 = (float)(1.0 / (1.0 - pow(b1, t))), c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    const float fb1 = (float)b1, fb2 = (float)b2, omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2);
    for (int64_t k = 0; k < n3; ++k) {
      const float gk = grad[k];
      const float mk = fb1 * mr[k] + omb1 * gk, vk = fb2 * vr[k] + omb2 * gk * gk;
      mr[k] = bf16_ref(mk);
      vr[k] = bf16_ref(vk);
      rounded += mr[k] != mk;
      differ += memcmp(&mr[k], &(float){bf16_at(m16, k)}, sizeof(float)) != 0;
      differ += memcmp(&vr[k], &(float){bf16_at(v16, k)}, sizeof(float)) != 0;
      dirr[k] = (mr[k] * c1) / (sqrtf(vr[k] * c2) + (float)eps);
    }
    mxr = max_vox_of(g, dirr, n);
    GR_CHECK(fabs(mx - mxr) <= 1e-12 * mxr, "step %d: bf16 max_vox %.17g vs reference %.17g", t, mx, mxr);
    const float scale = (float)(-0.7 / mx);
    for (int64_t k = 0; k < n3; ++k) step[k] = scale * dirr[k] + 0.0f;
    GR_CHECK_OK(be->ops->compose(be, g, u, step, o1));
    GR_CHECK_OK(be->ops->adam_compose(be, g, mom, b1, b2, eps, t, scale, u, o2));
    for (int64_t k = 0; k < n3; ++k) differ += memcmp(&o1[k], &o2[k], sizeof(float)) != 0;
    memcpy(u, o2, sizeof(float) * (size_t)n3);
    double num = 0.0, den = 0.0;
    for (int64_t k = 0; k < n3; ++k) {
      num += ((double)dirr[k] - dirf[k]) * ((double)dirr[k] - dirf[k]);
      den += (double)dirf[k] * dirf[k];
    }
    rel = fmax(rel, sqrt(num / den));
  }
  GR_CHECK(differ == 0, "bf16 moments / fused compose differ from the reference in %lld values", (long long)differ);
  GR_CHECK(rounded > n3, "the bf16 rounding never changed a moment (%lld)", (long long)rounded);
  GR_CHECK(rel < 1e-2 && rel > 0.0, "bf16 direction vs float: relative L2 %.3g (want (0, 1e-2))", rel);
  fprintf(stderr, "bf16 moments: direction vs float moments, worst relative L2 over 30 steps %.3g\n", rel);
  const gr_moments half_only = {m16, NULL, 1};
  double umax = 0.0;
  GR_CHECK(be->ops->adam_moments(be, g, grad, half_only, b1, b2, eps, 1, &umax) == GR_ERR_INVALID_ARG,
           "adam_moments accepted a NULL v");
  be->ops->free(be, m16);
  be->ops->free(be, v16);
  free(grad); free(mr); free(vr); free(mf); free(vf); free(dirf); free(dirr); free(step); free(u); free(o1); free(o2);
}

int main(void) {
  gr_backend *be = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  if (!be) GR_TEST_RETURN();
  const gr_grid g = make_grid();
  test_first_step(be, &g);
  test_bias_correction(be, &g);
  test_fused_update(be, &g);
  test_bf16_moments(be, &g);
  GR_CHECK(be->bytes_current == 0, "leak: %zu bytes", be->bytes_current);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
