/* Adam moment update and normalised step direction (backend.h adam_direction,
 * adam_moments). Element-wise over the 3 planes; the per-voxel voxel-unit
 * length of the direction feeds the driver's global step normalisation. The
 * max is taken over squared lengths and rooted once (a correctly rounded sqrt
 * is monotone, so this is bitwise the max of the roots; the CUDA pass does the
 * same); it is exact and order-independent, so the OpenMP reduction is
 * deterministic. */
#include <math.h>
#include "kernels/bf16.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"

static gr_status check_grid(const gr_grid *g, const char *what) {
  for (int a = 0; a < 3; ++a)
    if (g->n[a] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[a], a);
  return GR_OK;
}

/* One pass: moments, optionally the direction, and the max voxel length. */
static void adam_pass(gr_backend *be, const gr_grid *g, const gr_adam_rule *r, const float *grad, gr_moments mom,
                      float *dir, double *max_vox) {
  const int64_t nvox = g->n[0] * g->n[1] * g->n[2];
  double L[9];
  for (int a = 0; a < 3; ++a)
    for (int c = 0; c < 3; ++c) L[a * 3 + c] = g->p2i[a * 4 + c];
  const float *restrict gr = grad;
  float *restrict dr = dir;
  void *const mp = mom.m, *const vp = mom.v;
  const int h = mom.bf16;
  double mx = 0.0;
#pragma omp parallel for schedule(static) num_threads(cpu_nthreads(be)) if (nvox >= CPU_PAR_MIN_ELEMS) reduction(max : mx)
  for (int64_t i = 0; i < nvox; ++i) {
    double d[3];
    for (int c = 0; c < 3; ++c) {
      const int64_t k = i + c * nvox;
      const float gk = gr[k];
      const float mk = gr_moment_store(mp, h, k, cpu_adam_m(r, gr_moment_load(mp, h, k), gk));
      const float vk = gr_moment_store(vp, h, k, cpu_adam_v(r, gr_moment_load(vp, h, k), gk));
      const float dk = cpu_adam_dir(r, mk, vk);
      d[c] = dk;
      if (dr) dr[k] = dk;
    }
    const double e0 = L[0] * d[0] + L[1] * d[1] + L[2] * d[2];
    const double e1 = L[3] * d[0] + L[4] * d[1] + L[5] * d[2];
    const double e2 = L[6] * d[0] + L[7] * d[1] + L[8] * d[2];
    const double len2 = e0 * e0 + e1 * e1 + e2 * e2;
    mx = len2 > mx ? len2 : mx;
  }
  *max_vox = sqrt(mx);
}

gr_status cpu_adam_direction(gr_backend *be, const gr_grid *g, const float *grad, float *m, float *v, float *dir,
                             double b1, double b2, double eps, int t, double *max_vox) {
  if (!g || !grad || !m || !v || !dir || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_direction: NULL argument");
  gr_adam_rule r;
  gr_status s = check_grid(g, "adam_direction");
  if (s == GR_OK) s = gr_adam_rule_make("adam_direction", b1, b2, eps, t, &r);
  const gr_moments mom = {m, v, 0};
  if (s == GR_OK) adam_pass(be, g, &r, grad, mom, dir, max_vox);
  return s;
}

gr_status cpu_adam_moments(gr_backend *be, const gr_grid *g, const float *grad, gr_moments mom, double b1,
                           double b2, double eps, int t, double *max_vox) {
  if (!g || !grad || !mom.m || !mom.v || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_moments: NULL argument");
  gr_adam_rule r;
  gr_status s = check_grid(g, "adam_moments");
  if (s == GR_OK) s = gr_adam_rule_make("adam_moments", b1, b2, eps, t, &r);
  if (s == GR_OK) adam_pass(be, g, &r, grad, mom, NULL, max_vox);
  return s;
}
