/* Mattes mutual information (reference semantics), after elastix
 * AdvancedMattesMutualInformation: fixed Parzen kernel = B-spline order 0
 * (box), moving Parzen kernel = cubic B-spline, B = spec->mi_bins bins
 * (default 32 when <= 0; must be >= 6).
 *
 * Bin coordinates (two padding bins on each side, so the cubic kernel of a
 * value anywhere in the range stays inside 0..B-1):
 *   Df = (fixed_max - fixed_min) / (B - 5),   xi_f = clamp((f - fixed_min) / Df + 2, 2, B-3)
 *   Dm = (moving_max - moving_min) / (B - 5), xi_m = clamp((w - moving_min) / Dm + 2, 2, B-3)
 *   so min -> 2 and max -> B-3 exactly (elastix's "(B - 2*padding - 1)"
 *   denominator); a degenerate range (max == min) uses D = 1. Values outside
 *   the range are clamped and contribute no gradient.
 *   Fixed bin i(x) = floor(xi_f + 0.5)  (box kernel beta0, one bin, weight 1).
 *   Moving bins j = floor(xi_m) - 1 + t, t = 0..3, with r = xi_m - floor(xi_m):
 *     w0 = (1-r)^3/6, w1 = (3r^3 - 6r^2 + 4)/6, w2 = (-3r^3 + 3r^2 + 3r + 1)/6, w3 = r^3/6
 *   (= beta3(j - xi_m)), and their xi-derivatives
 *     w0' = -(1-r)^2/2, w1' = 1.5r^2 - 2r, w2' = -1.5r^2 + r + 0.5, w3' = r^2/2.
 * Histogram over the valid voxels V (cpu_metric_internal.h), N = |V|:
 *   h(i,j) = sum_{x in V} floor(w_t(x) * 2^S + 0.5)  (int64 fixed point, S = 32 for
 *            volumes below 2^30 voxels, one bit less per doubling above)
 *   p(i,j) = h(i,j) / sum h,  pf(i) = sum_j p(i,j),  pm(j) = sum_i p(i,j)
 *   MI = sum_{p > 0} p log(p / (pf pm)),   loss = -MI.
 * Integer accumulation is associative, so per-thread histograms summed in any
 * order give bitwise identical results for any thread count.
 * Gradient (exact for the Parzen estimate; the pf term and the normalisation
 * terms cancel because sum_j dp(i,j) = d pf(i) = 0 and sum dp = 0):
 *   dMI/dW(x)  = (1/N) sum_j log(p(i(x), j) / pm(j)) * w_t'(x) * (1 / Dm)
 *   dL/dW(x)   = -dMI/dW(x)      (0 when xi_m was clamped, i.e. w outside
 *                                 (moving_min, moving_max))
 *   dL/dy(x)   = dL/dW(x) grad_phys W(y(x)) on V, 0 elsewhere.
 *   Terms with p(i,j) == 0 are skipped (log table entry 0).
 * Two passes recomputing the warp: histogram, then gradient.
 * Scratch: threads * B^2 int64 histograms + B^2 doubles (log table) +
 * 12 doubles per z-slice; nothing per voxel. */
#include <math.h>
#include <string.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_metric_internal.h"
#include "kernels/cpu_threads.h"
#include "kernels/mi_rule.h"

/* The setup (bins, axes, fixed-point scale) is kernels/mi_rule.h's. */
typedef gr_mi_axis mi_axis;
typedef gr_mi_setup mi_setup;

/* Clamped bin coordinate; *inside = 1 when no clamping happened (strictly). */
static inline double mi_xi(const mi_axis *a, double v, int *inside) {
  const double xi = (v - a->lo) * a->inv_d + 2.0;
  if (xi > 2.0 && xi < a->hi_xi) {
    *inside = 1;
    return xi;
  }
  *inside = 0;
  return xi > 2.0 ? a->hi_xi : 2.0; /* NaN -> 2 */
}

static inline int mi_fixed_bin(const mi_setup *s, double f) {
  int unused;
  return (int)cpu_floor_i64(mi_xi(&s->f, f, &unused) + 0.5); /* xi in [2, B-3] */
}

static inline void mi_cubic(double r, double w[4]) {
  const double r2 = r * r, r3 = r2 * r, q = 1.0 - r;
  w[0] = q * q * q / 6.0;
  w[1] = (3.0 * r3 - 6.0 * r2 + 4.0) / 6.0;
  w[2] = (-3.0 * r3 + 3.0 * r2 + 3.0 * r + 1.0) / 6.0;
  w[3] = r3 / 6.0;
}

static inline void mi_cubic_deriv(double r, double d[4]) {
  const double r2 = r * r, q = 1.0 - r;
  d[0] = -0.5 * q * q;
  d[1] = 1.5 * r2 - 2.0 * r;
  d[2] = -1.5 * r2 + r + 0.5;
  d[3] = 0.5 * r2;
}

/* Pass 1 over one slice: add the slice's voxels into one thread's histogram. */
static int64_t mi_hist_slice(const cpu_metric_ctx *m, const mi_setup *s, int64_t k, int64_t *restrict h) {
  const int64_t nx = m->fn[0], ny = m->fn[1];
  const int B = s->bins;
  int64_t count = 0;
  for (int64_t j = 0; j < ny; ++j) {
    double row[3];
    cpu_metric_row(m, j, k, row);
    const int64_t v0 = (k * ny + j) * nx;
    for (int64_t i = 0; i < nx; ++i) {
      double w;
      if (!cpu_metric_warp(m, row, i, v0 + i, &w, NULL)) continue;
      int inside;
      const double xi = mi_xi(&s->m, w, &inside);
      const int64_t fl = cpu_floor_i64(xi);
      double wt[4];
      mi_cubic(xi - (double)fl, wt);
      int64_t *restrict hr = h + (int64_t)mi_fixed_bin(s, m->fixed[v0 + i]) * B + (fl - 1);
      /* weights are >= 0 and < 2^53 after scaling: +0.5 and truncation is llround */
      for (int t = 0; t < 4; ++t) hr[t] += (int64_t)(wt[t] * s->scale + 0.5);
      ++count;
    }
  }
  return count;
}

/* Pass 2 over one slice: gradient from the log table L(i,j) = log(p/pm). */
static void mi_grad_slice(const cpu_metric_ctx *m, const mi_setup *s, const double *restrict L, double coef,
                          int64_t k, double *restrict aff) {
  const int64_t nx = m->fn[0], ny = m->fn[1];
  const int B = s->bins;
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
      int inside;
      const double xi = mi_xi(&s->m, w, &inside);
      double dw = 0.0;
      if (inside) {
        const int64_t fl = cpu_floor_i64(xi);
        double dt[4];
        mi_cubic_deriv(xi - (double)fl, dt);
        const double *Lr = L + (int64_t)mi_fixed_bin(s, m->fixed[v]) * B + (fl - 1);
        dw = coef * (Lr[0] * dt[0] + Lr[1] * dt[1] + Lr[2] * dt[2] + Lr[3] * dt[3]);
      }
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

/* Sum the per-thread histograms into hist[0] (integers: order-free). */
static void mi_hist_reduce(int64_t *hist, int nt, int B) {
  const int64_t bb = (int64_t)B * B;
  for (int t = 1; t < nt; ++t)
    for (int64_t q = 0; q < bb; ++q) hist[q] += hist[t * bb + q];
}

/* Whole grid: histogram, value, gradient. Window (sharded): COUNT builds the
 * owned planes' histogram; EVAL takes the all-reduced one, so every shard
 * computes the same MI, and forms the owned planes' gradient with the global N. */
gr_status cpu_metric_mi(const cpu_metric_ctx *m, gr_metric_result *res) {
  mi_setup s;
  gr_status st = gr_mi_setup_make(m->spec, m->nvox_global, "cpu", &s);
  if (st != GR_OK) return st;
  const int B = s.bins, nt = m->nt;
  const int64_t k0 = m->own0, nk = m->own1 - m->own0, bb = (int64_t)B * B;
  const int eval_region = m->reg && m->reg->phase == GR_METRIC_PHASE_EVAL;
  int64_t *hist = eval_region ? NULL : cpu_metric_alloc(m, (size_t)nt * (size_t)bb * sizeof(int64_t), "MI histograms");
  double *L = cpu_metric_alloc(m, (size_t)bb * sizeof(double), "MI log table");
  double *part = cpu_metric_alloc(m, (size_t)(nk > 0 ? nk : 1) * 12 * sizeof(double), "MI slice partials");
  if ((!hist && !eval_region) || !L || !part) {
    cpu_metric_free(m, hist);
    cpu_metric_free(m, L);
    cpu_metric_free(m, part);
    return GR_ERR_NOMEM;
  }

  int64_t count = 0;
  if (!eval_region) {
    memset(hist, 0, (size_t)nt * (size_t)bb * sizeof(int64_t));
#pragma omp parallel num_threads(nt) if (m->par) reduction(+ : count)
    {
      int64_t *h = hist + (int64_t)cpu_thread_id() * bb;
#pragma omp for schedule(static)
      for (int64_t k = 0; k < nk; ++k) count += mi_hist_slice(m, &s, k0 + k, h);
    }
    mi_hist_reduce(hist, nt, B);
    res->n_valid = count;
  }
  if (cpu_metric_counting(m)) {
    memcpy(m->reg->hist, hist, (size_t)bb * sizeof(int64_t));
  } else {
    const int64_t *H = eval_region ? m->reg->hist : hist;
    if (eval_region) count = m->reg->n_global;
    if (count == 0) {
      st = cpu_metric_empty(m);
    } else {
      res->value = -gr_mi_value(H, B, L);
      if (m->grad_u || m->want_affine) {
        const double coef = -s.m.inv_d / (double)count; /* dL/dW = -(1/(N Dm)) sum L w' */
#pragma omp parallel for schedule(static) num_threads(nt) if (m->par)
        for (int64_t k = 0; k < nk; ++k) mi_grad_slice(m, &s, L, coef, k0 + k, part + k * 12);
        if (m->want_affine) cpu_partials_sum(part, nk, 12, res->grad_affine);
      }
      if (eval_region) {
        for (int64_t k = 0; k < nk; ++k) {
          double *p = m->reg->partials + k * GR_METRIC_PARTIALS;
          p[0] = 0.0;
          for (int q = 0; q < 12; ++q) p[1 + q] = m->want_affine ? part[k * 12 + q] : 0.0;
        }
        m->reg->value_scale = 0.0; /* the value is global already: res->value */
        m->reg->affine_scale = 1.0;
        cpu_grad_u_zero_unowned(m);
      }
    }
  }
  cpu_metric_free(m, hist);
  cpu_metric_free(m, L);
  cpu_metric_free(m, part);
  return st;
}
