/* Mean squared error (reference semantics).
 *
 *   V = valid fixed voxels (rule in cpu_metric_internal.h), N = |V|
 *   loss      = (1/N) sum_{x in V} (W(x) - F(x))^2,  W(x) = moving(y(x)) trilinear
 *   dL/dy(x)  = (2/N) (W(x) - F(x)) grad_phys W(y(x))   for x in V, 0 elsewhere
 *   grad_affine from dL/dy as in cpu_metric_internal.h.
 * One pass: per-z-slice double partials of sum e^2, count and the 12 affine
 * sums, with grad_u written unnormalised (2 e grad W, rounded to float) and
 * scaled by 1/N in a second sweep once N is known (the only extra cost is one
 * streaming pass over grad_u).
 * Scratch: 14 doubles per z-slice (no per-voxel scratch). */
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_metric_internal.h"
#include "kernels/cpu_threads.h"

enum { MSE_SUM = 0, MSE_COUNT = 1, MSE_AFF = 2, MSE_K = 14 };

static void mse_slice(const cpu_metric_ctx *m, int64_t k, double *restrict part) {
  const int64_t nx = m->fn[0], ny = m->fn[1];
  const int need_grad = m->grad_u || m->want_affine;
  for (int q = 0; q < MSE_K; ++q) part[q] = 0.0;
  for (int64_t j = 0; j < ny; ++j) {
    double row[3];
    cpu_metric_row(m, j, k, row);
    const int64_t v0 = (k * ny + j) * nx;
    for (int64_t i = 0; i < nx; ++i) {
      const int64_t v = v0 + i;
      double w, g[3];
      if (!cpu_metric_warp(m, row, i, v, &w, need_grad ? g : NULL)) {
        if (m->grad_u) cpu_grad_u_zero(m->grad_u, m->nvox, v);
        continue;
      }
      const double e = w - (double)m->fixed[v];
      part[MSE_SUM] += e * e;
      part[MSE_COUNT] += 1.0;
      if (!need_grad) continue;
      const double d[3] = {2.0 * e * g[0], 2.0 * e * g[1], 2.0 * e * g[2]};
      if (m->grad_u) cpu_grad_u_store(m, v, d);
      if (m->want_affine) {
        double x[3];
        cpu_metric_xphys(m, i, j, k, v, x);
        cpu_affine_accum(part + MSE_AFF, d, x);
      }
    }
  }
}

gr_status cpu_metric_mse(const cpu_metric_ctx *m, gr_metric_result *res) {
  /* Whole grid: own = all planes. Window: only owned planes count; the
   * gradient is per voxel, so the unowned (halo) planes are simply zeroed. */
  const int64_t k0 = m->own0, nk = m->own1 - m->own0;
  double *part = cpu_metric_alloc(m, (size_t)(nk > 0 ? nk : 1) * MSE_K * sizeof(double), "MSE slice partials");
  if (!part) return GR_ERR_NOMEM;

#pragma omp parallel for schedule(static) num_threads(m->nt) if (m->par)
  for (int64_t k = 0; k < nk; ++k) mse_slice(m, k0 + k, part + k * MSE_K);

  double tot[MSE_K];
  cpu_partials_sum(part, nk, MSE_K, tot);
  res->n_valid = (int64_t)tot[MSE_COUNT];
  if (cpu_metric_counting(m)) {
    cpu_metric_free(m, part);
    return GR_OK;
  }
  if (m->reg) {
    for (int64_t k = 0; k < nk; ++k) {
      double *p = m->reg->partials + k * GR_METRIC_PARTIALS;
      p[0] = part[k * MSE_K + MSE_SUM];
      for (int q = 0; q < 12; ++q) p[1 + q] = part[k * MSE_K + MSE_AFF + q];
    }
    cpu_grad_u_zero_unowned(m);
  }
  cpu_metric_free(m, part);
  const double n = m->reg ? (double)m->reg->n_global : tot[MSE_COUNT];
  if (n <= 0.0) return cpu_metric_empty(m);
  const double inv_n = 1.0 / n;
  res->value = tot[MSE_SUM] * inv_n;
  if (m->reg) m->reg->value_scale = m->reg->affine_scale = inv_n;
  if (m->want_affine)
    for (int q = 0; q < 12; ++q) res->grad_affine[q] = tot[MSE_AFF + q] * inv_n;
  if (m->grad_u) cpu_grad_u_scale(m, inv_n);
  return GR_OK;
}
