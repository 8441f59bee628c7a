/* The Mattes MI arithmetic shared by the fused CUDA MI (cuda_mi.cu) and the
 * windowed one behind shards (cuda_metric_region.cu): bins, intensity -> bin
 * coordinate, the cubic B-spline Parzen weights and their derivative, the
 * fixed-point scale of the histogram, each operation through the
 * non-contracting intrinsics of cuda_common.cuh as cpu_mi.c computes it, so
 * both histograms equal the CPU's bit for bit. */
#ifndef GIGAREG_CUDA_MI_RULE_CUH
#define GIGAREG_CUDA_MI_RULE_CUH

#include <math.h>
#include "cuda_common.cuh"

namespace grcu {

constexpr int kMiMinBins = 6, kMiMaxBins = 1024;

struct MiAxis {
  double lo, inv_d; /* xi = (v - lo) * inv_d + 2 */
  double hi_xi;     /* B - 3 */
};

struct MiSetup {
  int bins;
  int shift;    /* S */
  double scale; /* 2^S */
  MiAxis f, m;
};

inline gr_status mi_axis_init(double lo, double hi, int bins, const char *which, MiAxis *a) {
  if (!isfinite(lo) || !isfinite(hi) || hi < lo)
    return gr_error(GR_ERR_INVALID_ARG, "cuda MI: %s intensity range [%g, %g] is not a finite, ordered range", which,
                    lo, hi);
  const double d = hi > lo ? (hi - lo) / (double)(bins - 5) : 1.0;
  a->lo = lo;
  a->inv_d = 1.0 / d;
  a->hi_xi = (double)(bins - 3);
  return GR_OK;
}

__device__ __forceinline__ double mi_xi(const MiAxis &a, double v, bool *inside) {
  const double xi = dadd(dmul(dsub(v, a.lo), a.inv_d), 2.0);
  if (xi > 2.0 && xi < a.hi_xi) {
    *inside = true;
    return xi;
  }
  *inside = false;
  return xi > 2.0 ? a.hi_xi : 2.0; /* NaN -> 2 */
}

__device__ __forceinline__ int mi_fixed_bin(const MiSetup &s, double f) {
  bool unused;
  return (int)floor(dadd(mi_xi(s.f, f, &unused), 0.5));
}

__device__ __forceinline__ void mi_cubic(double r, double w[4]) {
  const double r2 = dmul(r, r), r3 = dmul(r2, r), q = dsub(1.0, r);
  w[0] = ddiv(dmul(dmul(q, q), q), 6.0);
  w[1] = ddiv(dadd(dsub(dmul(3.0, r3), dmul(6.0, r2)), 4.0), 6.0);
  w[2] = ddiv(dadd(dadd(dadd(dmul(-3.0, r3), dmul(3.0, r2)), dmul(3.0, r)), 1.0), 6.0);
  w[3] = ddiv(r3, 6.0);
}

__device__ __forceinline__ void mi_cubic_deriv(double r, double d[4]) {
  const double r2 = dmul(r, r), q = dsub(1.0, r);
  d[0] = dmul(dmul(-0.5, q), q);
  d[1] = dsub(dmul(1.5, r2), dmul(2.0, r));
  d[2] = dadd(dadd(dmul(-1.5, r2), r), 0.5);
  d[3] = dmul(0.5, r2);
}

/* Bins and axes from the spec; S (the histogram's fixed-point shift): a bin can
 * receive at most nvox * 2^S, kept below 2^62 as on the CPU. */
inline gr_status mi_setup_make(const gr_metric_spec *sp, long long nvox, MiSetup *s) {
  s->bins = sp->mi_bins > 0 ? sp->mi_bins : 32;
  if (s->bins < kMiMinBins || s->bins > kMiMaxBins)
    return gr_error(GR_ERR_INVALID_ARG, "cuda MI: %d histogram bins (must be %d..%d: 2 padding bins each side)",
                    s->bins, kMiMinBins, kMiMaxBins);
  gr_status st = mi_axis_init(sp->fixed_min, sp->fixed_max, s->bins, "fixed", &s->f);
  if (st == GR_OK) st = mi_axis_init(sp->moving_min, sp->moving_max, s->bins, "moving", &s->m);
  if (st != GR_OK) return st;
  s->shift = 32;
  while (s->shift > 8 && (nvox >> (62 - s->shift)) != 0) --s->shift;
  s->scale = ldexp(1.0, s->shift);
  return GR_OK;
}

}  // namespace grcu
#endif
