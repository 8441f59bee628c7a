/* Adam moment update and normalised step direction (backend.h adam_direction).
 * Element-wise over the 3 planes; the per-voxel voxel-unit length of the
 * direction feeds the driver's global step normalisation. max is exact and
 * order-independent, so the OpenMP reduction is deterministic. */
#include <math.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"

static gr_status check_adam(const gr_grid *g, const float *grad, const float *m, const float *v, const float *dir,
                            double b1, double b2, double eps, int t, const double *max_vox) {
  if (!g || !grad || !m || !v || !dir || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_direction: NULL argument");
  for (int a = 0; a < 3; ++a)
    if (g->n[a] < 1)
      return gr_error(GR_ERR_INVALID_ARG, "adam_direction: grid size %lld along axis %d", (long long)g->n[a], a);
  if (!(b1 >= 0.0 && b1 < 1.0) || !(b2 >= 0.0 && b2 < 1.0))
    return gr_error(GR_ERR_INVALID_ARG, "adam_direction: beta1 %g / beta2 %g must lie in [0, 1)", b1, b2);
  if (!(eps > 0.0) || !isfinite(eps))
    return gr_error(GR_ERR_INVALID_ARG, "adam_direction: epsilon %g must be finite and > 0", eps);
  if (t < 1) return gr_error(GR_ERR_INVALID_ARG, "adam_direction: step %d (1-based, must be >= 1)", t);
  return GR_OK;
}

gr_status cpu_adam_direction(gr_backend *be, const gr_grid *g, const float *grad, float *m, float *v, float *dir,
                             double b1, double b2, double eps, int t, double *max_vox) {
  (void)be;
  const gr_status s = check_adam(g, grad, m, v, dir, b1, b2, eps, t, max_vox);
  if (s != GR_OK) return s;
  const int64_t nvox = g->n[0] * g->n[1] * g->n[2];
  /* Bias corrections folded into scales: mhat = m / (1-b1^t), vhat = v / (1-b2^t). */
  const double c1 = 1.0 / (1.0 - pow(b1, t));
  const double c2 = 1.0 / (1.0 - pow(b2, t));
  double L[9];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) L[r * 3 + c] = g->p2i[r * 4 + c];
  const float *restrict gr = grad;
  float *restrict mr = m, *restrict vr = v, *restrict dr = dir;
  double mx = 0.0;
#pragma omp parallel for schedule(static) num_threads(cpu_nthreads(be)) if (nvox >= CPU_PAR_MIN_ELEMS) reduction(max : mx)
  for (int64_t i = 0; i < nvox; ++i) {
    double d[3];
    for (int c = 0; c < 3; ++c) {
      const int64_t k = i + c * nvox;
      const double gk = gr[k];
      const double mk = b1 * mr[k] + (1.0 - b1) * gk;
      const double vk = b2 * vr[k] + (1.0 - b2) * gk * gk;
      mr[k] = (float)mk;
      vr[k] = (float)vk;
      d[c] = (mk * c1) / (sqrt(vk * c2) + eps);
      dr[k] = (float)d[c];
    }
    const double e0 = L[0] * d[0] + L[1] * d[1] + L[2] * d[2];
    const double e1 = L[3] * d[0] + L[4] * d[1] + L[5] * d[2];
    const double e2 = L[6] * d[0] + L[7] * d[1] + L[8] * d[2];
    const double len = sqrt(e0 * e0 + e1 * e1 + e2 * e2);
    mx = len > mx ? len : mx;
  }
  *max_vox = mx;
  return GR_OK;
}
