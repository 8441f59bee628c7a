/* bfloat16 storage of Adam's moments (backend.h gr_moments), one definition
 * for the CPU kernels and the CUDA kernels so both round the same bits.
 * bfloat16 keeps float's 8-bit exponent (the squared gradients in v span many
 * decades; fp16 would flush them) and 8 significant bits: with beta1 0.9 and
 * beta2 0.99 each update moves a moment by 10% and 1% of itself, above the
 * 0.4% half-ulp, so the moments keep moving under round-to-nearest-even. */
#ifndef GIGAREG_BF16_H
#define GIGAREG_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define GR_BF16_FN __host__ __device__ __forceinline__
#else
#define GR_BF16_FN static inline
#endif

GR_BF16_FN float gr_bf16_to_float(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Round to nearest, ties to even; NaN stays a (quiet) NaN, infinities stay. */
GR_BF16_FN uint16_t gr_float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* Element k of a moment plane set stored as float (bf16 == 0) or bfloat16. */
GR_BF16_FN float gr_moment_load(const void *p, int bf16, int64_t k) {
  return bf16 ? gr_bf16_to_float(((const uint16_t *)p)[k]) : ((const float *)p)[k];
}

/* Stores x and returns the value as stored (what later passes will read). */
GR_BF16_FN float gr_moment_store(void *p, int bf16, int64_t k, float x) {
  if (!bf16) {
    ((float *)p)[k] = x;
    return x;
  }
  const uint16_t h = gr_float_to_bf16(x);
  ((uint16_t *)p)[k] = h;
  return gr_bf16_to_float(h);
}

#undef GR_BF16_FN
#endif
