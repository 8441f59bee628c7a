/* 16-bit storage of the intensity-normalised images a metric reads (the stage
 * option GigaRegImageStorage "uint16"): one definition for the CPU and the
 * CUDA kernels, so every backend reads the same float for a stored value.
 * The driver's images lie in [0, 1] (min/max normalisation, then Gaussian
 * smoothing, which keeps them there up to rounding): a uniform 16-bit grid
 * of step 1/65535 = 1.5e-5 loses at most half a step, below the resolution of
 * any 12- or 16-bit scanner image once normalised, and halves the images'
 * bytes. fp16 would keep only 11 significant bits (steps of 4.9e-4 near 1);
 * bfloat16 8. */
#ifndef GIGAREG_U16_H
#define GIGAREG_U16_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define GR_U16_FN __host__ __device__ __forceinline__
#else
#define GR_U16_FN static inline
#endif

#define GR_U16_SCALE (1.0f / 65535.0f)

/* round(clamp(x, 0, 1) * 65535); NaN -> 0. The product of a float and 65535
 * is exact in double, so a fused multiply-add cannot change the rounding. */
GR_U16_FN uint16_t gr_u16_quantize(float x) {
  if (!(x > 0.0f)) return 0;
  if (x >= 1.0f) return 65535;
  return (uint16_t)floor((double)x * 65535.0 + 0.5);
}

/* The float a stored value stands for. On the device the product is written
 * __fmul_rn: nvcc would otherwise fuse it into a following add or subtract
 * (default fmad) and the caller would compute with a value no image holds. */
GR_U16_FN float gr_u16_value(uint16_t q) {
#ifdef __CUDA_ARCH__
  return __fmul_rn((float)q, GR_U16_SCALE);
#else
  return (float)q * GR_U16_SCALE;
#endif
}

/* The float a 16-bit store of x reads back as. */
GR_U16_FN float gr_u16_round(float x) { return gr_u16_value(gr_u16_quantize(x)); }

#endif
