/* The host side of the Mattes MI rule, one definition for the CPU (cpu_mi.c)
 * and the CUDA host code (cuda_mi.cu, cuda_metric_region.cu): the bins, the
 * intensity -> bin coordinate map, the histogram's fixed-point scale, and MI
 * from the joint histogram with the log table L(i, j) = log(p / pm) that the
 * gradient pass reads. So the setup is the same on every backend and the value
 * the same bits whichever backend built the (bitwise equal) histogram. */
#ifndef GIGAREG_MI_RULE_H
#define GIGAREG_MI_RULE_H

#include <math.h>
#include <stdint.h>
#include "gigareg/backend.h"
#include "gigareg/status.h"

#define GR_MI_MIN_BINS 6
#define GR_MI_MAX_BINS 1024

/* Intensity -> bin coordinate: xi = (v - lo) * inv_d + 2, inside for 2 < xi < B - 3. */
typedef struct gr_mi_axis {
  double lo, inv_d;
  double hi_xi; /* B - 3 */
} gr_mi_axis;

typedef struct gr_mi_setup {
  int bins;
  int shift;    /* S: the histogram's fixed-point scale 2^S */
  double scale; /* 2^S */
  gr_mi_axis f, m;
} gr_mi_setup;

/* `who` ("cpu", "cuda") names the backend in the messages. */
static inline gr_status gr_mi_axis_init(double lo, double hi, int bins, const char *who, const char *which,
                                        gr_mi_axis *a) {
  if (!isfinite(lo) || !isfinite(hi) || hi < lo)
    return gr_error(GR_ERR_INVALID_ARG, "%s MI: %s intensity range [%g, %g] is not a finite, ordered range", who,
                    which, lo, hi);
  const double d = hi > lo ? (hi - lo) / (double)(bins - 5) : 1.0;
  a->lo = lo;
  a->inv_d = 1.0 / d;
  a->hi_xi = (double)(bins - 3);
  return GR_OK;
}

/* Bins and axes from the spec; S: a bin can receive at most nvox * 2^S, kept
 * below 2^62. nvox is the whole grid's count, so that every shard of a sharded
 * run uses the same scale. */
static inline gr_status gr_mi_setup_make(const gr_metric_spec *sp, int64_t nvox, const char *who, gr_mi_setup *s) {
  s->bins = sp->mi_bins > 0 ? sp->mi_bins : 32;
  if (s->bins < GR_MI_MIN_BINS || s->bins > GR_MI_MAX_BINS)
    return gr_error(GR_ERR_INVALID_ARG, "%s MI: %d histogram bins (must be %d..%d: 2 padding bins each side)", who,
                    s->bins, GR_MI_MIN_BINS, GR_MI_MAX_BINS);
  gr_status st = gr_mi_axis_init(sp->fixed_min, sp->fixed_max, s->bins, who, "fixed", &s->f);
  if (st == GR_OK) st = gr_mi_axis_init(sp->moving_min, sp->moving_max, s->bins, who, "moving", &s->m);
  if (st != GR_OK) return st;
  s->shift = 32;
  while (s->shift > 8 && (nvox >> (62 - s->shift)) != 0) --s->shift;
  s->scale = ldexp(1.0, s->shift);
  return GR_OK;
}

/* hist: B x B counts (fixed bin major); L: B x B, written. B <= GR_MI_MAX_BINS. */
static inline double gr_mi_value(const int64_t *hist, int B, double *L) {
  double total = 0.0;
  const int64_t bb = (int64_t)B * B;
  for (int64_t q = 0; q < bb; ++q) total += (double)hist[q];
  double pf[GR_MI_MAX_BINS], pm[GR_MI_MAX_BINS];
  for (int b = 0; b < B; ++b) pf[b] = pm[b] = 0.0;
  for (int i = 0; i < B; ++i)
    for (int j = 0; j < B; ++j) {
      const double p = (double)hist[i * B + j] / total;
      pf[i] += p;
      pm[j] += p;
    }
  double mi = 0.0;
  for (int i = 0; i < B; ++i)
    for (int j = 0; j < B; ++j) {
      const double p = (double)hist[i * B + j] / total;
      if (p > 0.0) {
        mi += p * log(p / (pf[i] * pm[j]));
        L[i * B + j] = log(p / pm[j]);
      } else {
        L[i * B + j] = 0.0;
      }
    }
  return mi;
}

#endif
