/* Global normalised cross-correlation (reference semantics).
 *
 *   V = valid fixed voxels (cpu_metric_internal.h), N = |V|, sums over V:
 *   fbar = sum f / N, wbar = sum w / N
 *   Sff = sum f^2 - N fbar^2,  Sww = sum w^2 - N wbar^2,  Sfw = sum f w - N fbar wbar
 *   ncc  = Sfw / sqrt(Sff Sww),   loss = -ncc
 *   dL/dW(x) = -[ (f(x) - fbar) / sqrt(Sff Sww) - ncc (w(x) - wbar) / Sww ]
 *     (exact: d Sfw/dw_x = f_x - fbar because sum (f - fbar) = 0,
 *      d Sww/dw_x = 2 (w_x - wbar))
 *   dL/dy(x) = dL/dW(x) grad_phys W(y(x)) on V, 0 elsewhere.
 *   Degenerate case: Sff <= 0 or Sww <= 0 (a constant image over V): ncc := 0,
 *   loss 0, all gradients 0.
 * Two passes over the volume, both recomputing the warp (nothing stored):
 *   1) per-z-slice double partials of N, sum f, sum w, sum f^2, sum w^2, sum f w;
 *   2) (only when a gradient is wanted) the gradient, with per-slice affine partials.
 * Raw moments in double per slice: with float inputs and the driver's [0,1]
 * intensities the cancellation in Sff/Sww/Sfw costs ~1e-16 * N relative.
 * Scratch: 12 doubles per z-slice. */
#include <math.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_metric_internal.h"
#include "kernels/cpu_threads.h"

enum { NCC_N = 0, NCC_F, NCC_W, NCC_FF, NCC_WW, NCC_FW, NCC_K1 = 6 };

static void ncc_moments_slice(const cpu_metric_ctx *m, int64_t k, double *restrict part) {
  const int64_t nx = m->fn[0], ny = m->fn[1];
  double n = 0, sf = 0, sw = 0, sff = 0, sww = 0, sfw = 0;
  for (int64_t j = 0; j < ny; ++j) {
    double row[3];
    cpu_metric_row(m, j, k, row);
    const int64_t v0 = (k * ny + j) * nx;
    for (int64_t i = 0; i < nx; ++i) {
      double w;
      if (!cpu_metric_warp(m, row, i, v0 + i, &w, NULL)) continue;
      const double f = m->fixed[v0 + i];
      n += 1.0;
      sf += f;
      sw += w;
      sff += f * f;
      sww += w * w;
      sfw += f * w;
    }
  }
  part[NCC_N] = n; part[NCC_F] = sf; part[NCC_W] = sw;
  part[NCC_FF] = sff; part[NCC_WW] = sww; part[NCC_FW] = sfw;
}

/* dL/dW = a f + b w + c on V. */
typedef struct ncc_coef { double a, b, c; } ncc_coef;

static void ncc_grad_slice(const cpu_metric_ctx *m, const ncc_coef *cf, int64_t k, double *restrict aff) {
  const int64_t nx = m->fn[0], ny = m->fn[1];
  for (int q = 0; q < 12; ++q) aff[q] = 0.0;
  for (int64_t j = 0; j < ny; ++j) {
    double row[3];
    cpu_metric_row(m, j, k, row);
    const int64_t v0 = (k * ny + j) * nx;
    for (int64_t i = 0; i < nx; ++i) {
      const int64_t v = v0 + i;
      double w, g[3];
      if (!cpu_metric_warp(m, row, i, v, &w, g)) {
        if (m->grad_u) cpu_grad_u_zero(m->grad_u, m->nvox, v);
        continue;
      }
      const double dw = cf->a * (double)m->fixed[v] + cf->b * w + cf->c;
      const double d[3] = {dw * g[0], dw * g[1], dw * g[2]};
      if (m->grad_u) cpu_grad_u_store(m, v, d);
      if (m->want_affine) {
        double x[3];
        cpu_metric_xphys(m, i, j, k, v, x);
        cpu_affine_accum(aff, d, x);
      }
    }
  }
}

gr_status cpu_metric_ncc(const cpu_metric_ctx *m, gr_metric_result *res) {
  const int64_t nz = m->fn[2];
  double *part = cpu_metric_alloc(m, (size_t)nz * 12 * sizeof(double), "NCC slice partials");
  if (!part) return GR_ERR_NOMEM;

#pragma omp parallel for schedule(static) num_threads(m->nt) if (m->par)
  for (int64_t k = 0; k < nz; ++k) ncc_moments_slice(m, k, part + k * NCC_K1);

  double t[NCC_K1];
  cpu_partials_sum(part, nz, NCC_K1, t);
  const double n = t[NCC_N];
  res->n_valid = (int64_t)n;
  if (n <= 0.0) {
    cpu_metric_free(m, part);
    return cpu_metric_empty(m);
  }
  const double fbar = t[NCC_F] / n, wbar = t[NCC_W] / n;
  const double sff = t[NCC_FF] - n * fbar * fbar;
  const double sww = t[NCC_WW] - n * wbar * wbar;
  const double sfw = t[NCC_FW] - n * fbar * wbar;
  const int degenerate = !(sff > 0.0 && sww > 0.0);
  const double den = degenerate ? 0.0 : sqrt(sff * sww);
  const double ncc = degenerate ? 0.0 : sfw / den;
  res->value = -ncc;

  if (m->grad_u || m->want_affine) {
    ncc_coef cf = {0.0, 0.0, 0.0};
    if (!degenerate) {
      cf.a = -1.0 / den;
      cf.b = ncc / sww;
      cf.c = fbar / den - ncc * wbar / sww;
    }
#pragma omp parallel for schedule(static) num_threads(m->nt) if (m->par)
    for (int64_t k = 0; k < nz; ++k) ncc_grad_slice(m, &cf, k, part + k * 12);
    if (m->want_affine) cpu_partials_sum(part, nz, 12, res->grad_affine);
  }
  cpu_metric_free(m, part);
  return GR_OK;
}
