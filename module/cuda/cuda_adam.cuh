/* Adam's bias-corrected direction from the stored (float) moments: the one
 * rule adam_direction, adam_moments and adam_compose share (cpu_kernels.h
 * cpu_adam_dir), so the fused update equals the unfused one bit for bit. */
#ifndef GIGAREG_CUDA_ADAM_CUH
#define GIGAREG_CUDA_ADAM_CUH

#include <math.h>
#include "cuda_common.cuh"
#include "kernels/bf16.h"

namespace grcu {

struct AdamRule {
  double b1, b2, omb1, omb2; /* beta and 1 - beta */
  double c1, c2;             /* bias corrections 1 / (1 - beta^t) */
  double eps;
};

/* The CPU's argument checks and messages (cpu_optim.c). */
inline gr_status adam_rule_make(const char *what, double b1, double b2, double eps, int t, AdamRule *r) {
  if (!(b1 >= 0.0 && b1 < 1.0) || !(b2 >= 0.0 && b2 < 1.0))
    return gr_error(GR_ERR_INVALID_ARG, "%s: beta1 %g / beta2 %g must lie in [0, 1)", what, b1, b2);
  if (!(eps > 0.0) || !isfinite(eps))
    return gr_error(GR_ERR_INVALID_ARG, "%s: epsilon %g must be finite and > 0", what, eps);
  if (t < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: step %d (1-based, must be >= 1)", what, t);
  r->b1 = b1;
  r->b2 = b2;
  r->omb1 = 1.0 - b1;
  r->omb2 = 1.0 - b2;
  r->c1 = 1.0 / (1.0 - pow(b1, t));
  r->c2 = 1.0 / (1.0 - pow(b2, t));
  r->eps = eps;
  return GR_OK;
}

__device__ __forceinline__ float adam_dir(const AdamRule &r, float m, float v) {
  return (float)ddiv(dmul((double)m, r.c1), dadd(__dsqrt_rn(dmul((double)v, r.c2)), r.eps));
}

/* adam_dir from element k of stored moments (float or bfloat16, bf16.h) */
__device__ __forceinline__ float adam_dir_at(const AdamRule &r, const gr_moments &mom, long long k) {
  return adam_dir(r, gr_moment_load(mom.m, mom.bf16, k), gr_moment_load(mom.v, mom.bf16, k));
}

}  // namespace grcu
#endif
