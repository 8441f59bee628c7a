/* The device side of the Mattes MI rule, shared by the fused CUDA MI
 * (cuda_mi.cu) and the windowed one behind shards (cuda_metric_region.cu):
 * intensity -> bin coordinate, the fixed bin, the cubic B-spline Parzen weights
 * and their derivative, each operation through the non-contracting intrinsics
 * of cuda_common.cuh as cpu_mi.c computes it, so both histograms equal the
 * CPU's bit for bit. The host side (setup, value) is kernels/mi_rule.h. */
#ifndef GIGAREG_CUDA_MI_RULE_CUH
#define GIGAREG_CUDA_MI_RULE_CUH

#include <math.h>
#include "cuda_common.cuh"
#include "kernels/mi_rule.h"

namespace grcu {

/* The host-side setup (bins, axes, fixed-point scale) is kernels/mi_rule.h's,
 * shared with the CPU. */
using MiAxis = gr_mi_axis;
using MiSetup = gr_mi_setup;

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

/* x / 6 rounded to nearest, bitwise ddiv(x, 6.0), in three DP operations
 * instead of the division's reciprocal refinement and range check. Markstein's
 * theorem: with y = RN(1/6) (relative error 2^-54) the product q = RN(x y) is
 * within one ulp of x/6, so the residual x - 6q is exact in one FMA and
 * RN(q + residual * y) is the correctly rounded x/6. Needs x/6 normal or zero:
 * the cubic's numerators are 0 or >= 2^-159 (r = xi - floor(xi) is 0 or
 * >= ulp(2) = 2^-51, likewise 1 - r). */
__device__ __forceinline__ double div6(double x) {
  constexpr double y = 1.0 / 6.0;
  const double q = dmul(x, y);
  return __fma_rn(__fma_rn(-q, 6.0, x), y, q);
}

__device__ __forceinline__ void mi_cubic(double r, double w[4]) {
  const double r2 = dmul(r, r), r3 = dmul(r2, r), q = dsub(1.0, r);
  w[0] = div6(dmul(dmul(q, q), q));
  w[1] = div6(dadd(dsub(dmul(3.0, r3), dmul(6.0, r2)), 4.0));
  w[2] = div6(dadd(dadd(dadd(dmul(-3.0, r3), dmul(3.0, r2)), dmul(3.0, r)), 1.0));
  w[3] = div6(r3);
}

__device__ __forceinline__ void mi_cubic_deriv(double r, double d[4]) {
  const double r2 = dmul(r, r), q = dsub(1.0, r);
  d[0] = dmul(dmul(-0.5, q), q);
  d[1] = dsub(dmul(1.5, r2), dmul(2.0, r));
  d[2] = dadd(dadd(dmul(-1.5, r2), r), 0.5);
  d[3] = dmul(0.5, r2);
}

}  // namespace grcu
#endif
