/* Mattes MI from the joint histogram, and the log table L(i, j) = log(p / pm)
 * its gradient pass reads: one definition for the CPU (cpu_mi.c) and the CUDA
 * host code (cuda_mi.cu, cuda_metric_region.cu), so the value is the same bits
 * whichever backend built the (bitwise equal) histogram. */
#ifndef GIGAREG_MI_VALUE_H
#define GIGAREG_MI_VALUE_H

#include <math.h>
#include <stdint.h>

#define GR_MI_MAX_BINS 1024

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
