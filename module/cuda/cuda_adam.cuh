/* Adam's per-element rule in float: the moment updates and the bias-corrected
 * direction from the stored moments, the one rule adam_direction, adam_moments
 * and adam_compose share (the CPU twin is cpu_kernels.h cpu_adam_rule), so the
 * fused update equals the unfused one and the CPU bit for bit.
 *
 * Why float: in double the rule cost three divisions and four square roots per
 * voxel in FP64 (software sequences on the GPU) plus ~27 float<->double
 * conversions, which bound adam_moments and adam_compose well below the
 * memory roofline. IEEE float multiplication, addition, division and square
 * root are correctly rounded on the CPU and the GPU alike, so writing every
 * operation through the __f*_rn intrinsics (never contracted into fused
 * multiply-adds, denormals kept: the build does not pass -ftz/-use_fast_math)
 * keeps CPU == CUDA bitwise. PyTorch's Adam runs in float too. */
#ifndef GIGAREG_CUDA_ADAM_CUH
#define GIGAREG_CUDA_ADAM_CUH

#include <float.h>
#include <math.h>
#include "cuda_common.cuh"
#include "kernels/bf16.h"

namespace grcu {

struct AdamRule {
  float b1, b2, omb1, omb2; /* beta and 1 - beta (formed in double, rounded once) */
  float c1, c2;             /* bias corrections 1 / (1 - beta^t) */
  float eps;
};

/* The CPU's argument checks, messages and constants (cpu_optim.c). */
inline gr_status adam_rule_make(const char *what, double b1, double b2, double eps, int t, AdamRule *r) {
  if (!(b1 >= 0.0 && b1 < 1.0) || !(b2 >= 0.0 && b2 < 1.0))
    return gr_error(GR_ERR_INVALID_ARG, "%s: beta1 %g / beta2 %g must lie in [0, 1)", what, b1, b2);
  if (!(eps >= FLT_MIN && eps <= FLT_MAX))
    return gr_error(GR_ERR_INVALID_ARG, "%s: epsilon %g must lie in [%g, %g] (the rule runs in float)", what, eps,
                    (double)FLT_MIN, (double)FLT_MAX);
  if (t < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: step %d (1-based, must be >= 1)", what, t);
  r->b1 = (float)b1;
  r->b2 = (float)b2;
  r->omb1 = (float)(1.0 - b1);
  r->omb2 = (float)(1.0 - b2);
  r->c1 = (float)(1.0 / (1.0 - pow(b1, t)));
  r->c2 = (float)(1.0 / (1.0 - pow(b2, t)));
  r->eps = (float)eps;
  return GR_OK;
}

/* m <- b1 m + (1 - b1) g;  v <- b2 v + ((1 - b2) g) g  (before storage rounding) */
__device__ __forceinline__ float adam_m(const AdamRule &r, float m, float g) {
  return __fadd_rn(__fmul_rn(r.b1, m), __fmul_rn(r.omb1, g));
}
__device__ __forceinline__ float adam_v(const AdamRule &r, float v, float g) {
  return __fadd_rn(__fmul_rn(r.b2, v), __fmul_rn(__fmul_rn(r.omb2, g), g));
}

/* (m c1) / (sqrt(v c2) + eps) */
__device__ __forceinline__ float adam_dir(const AdamRule &r, float m, float v) {
  return __fdiv_rn(__fmul_rn(m, r.c1), __fadd_rn(__fsqrt_rn(__fmul_rn(v, r.c2)), r.eps));
}

/* adam_dir from element k of stored moments (float or bfloat16, bf16.h) */
__device__ __forceinline__ float adam_dir_at(const AdamRule &r, const gr_moments &mom, long long k) {
  return adam_dir(r, gr_moment_load(mom.m, mom.bf16, k), gr_moment_load(mom.v, mom.bf16, k));
}

}  // namespace grcu
#endif
