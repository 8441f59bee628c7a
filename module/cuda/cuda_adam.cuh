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

#include <math.h>
#include "cuda_common.cuh"
#include "kernels/adam_rule.h"
#include "kernels/bf16.h"

namespace grcu {

/* The constants (kernels/adam_rule.h, shared with the CPU). */
using AdamRule = gr_adam_rule;

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
