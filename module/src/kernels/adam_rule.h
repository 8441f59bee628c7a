/* Adam's constants for one step, one definition for the CPU kernels
 * (cpu_kernels.h cpu_adam_m/v/dir) and the CUDA kernels (cuda_adam.cuh
 * adam_m/v/dir), which apply the per-element rule in float with the same
 * operations: the constants must be the same bits on both sides. They are
 * formed in double and rounded to float once. */
#ifndef GIGAREG_ADAM_RULE_H
#define GIGAREG_ADAM_RULE_H

#include <float.h>
#include <math.h>
#include "gigareg/status.h"

typedef struct gr_adam_rule {
  float b1, b2, omb1, omb2; /* beta and 1 - beta */
  float c1, c2, eps;        /* bias corrections c = 1 / (1 - beta^t); epsilon */
} gr_adam_rule;

/* `what` names the op in the messages. */
static inline gr_status gr_adam_rule_make(const char *what, double b1, double b2, double eps, int t,
                                          gr_adam_rule *r) {
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

#endif
