/* 16-bit image storage (kernels/u16.h: the rule, and why 16-bit): the
 * pack_u16 op, and the dequantising copy cuda_metric.cu makes for the metric
 * paths that read float images only.
 *
 * Both are one streaming pass (pack: read 4 B, write 2 B per voxel; unpack
 * the reverse). pack runs once per image and level, so it stays a plain
 * element-wise loop: gr_u16_quantize's double floor is cheap beside the
 * memory traffic, and the shared definition is what keeps the GPU's stored
 * values equal to the CPU's. The unpacked float is u16_value (cuda_common.cuh),
 * the value every 16-bit read site of the fast paths computes, so a path that
 * runs on the copy gives the result of the float call on the rounded image. */
#include "cuda_ops.cuh"

namespace grcu {

__global__ void __launch_bounds__(kBlock) pack_u16_kernel(const float *__restrict__ src, uint16_t *__restrict__ dst,
                                                          long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = gr_u16_quantize(__ldg(src + i));
}

__global__ void __launch_bounds__(kBlock) unpack_u16_kernel(const uint16_t *__restrict__ src, float *__restrict__ dst,
                                                            long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = img_ld(src + i);
}

static bool overlap(const void *a, size_t na, const void *b, size_t nb) {
  const char *p = (const char *)a, *q = (const char *)b;
  return p < q + nb && q < p + na;
}

gr_status pack_u16(gr_backend *be, int64_t n, const float *src, uint16_t *dst) {
  if (n < 0) return gr_error(GR_ERR_INVALID_ARG, "cuda pack_u16: negative length %lld", (long long)n);
  if (n == 0) return GR_OK;
  if (!src || !dst) return gr_error(GR_ERR_INVALID_ARG, "cuda pack_u16: NULL %s for %lld voxels", src ? "dst" : "src",
                                    (long long)n);
  /* in place would let one thread's 2-byte store land on a float another thread has still to read */
  if (overlap(src, (size_t)n * sizeof(float), dst, (size_t)n * sizeof(uint16_t)))
    return gr_error(GR_ERR_INVALID_ARG, "cuda pack_u16: src and dst overlap");
  gr_status s = enter(be);
  if (s != GR_OK) return s;
  pack_u16_kernel<<<flat_blocks(n), kBlock, 0, impl_of(be)->stream>>>(src, dst, n);
  GRCU_LAUNCHED("pack_u16 kernel");
  return GR_OK;
}

gr_status u16_unpack(gr_backend *be, long long n, const uint16_t *src, float *dst) {
  if (n <= 0) return GR_OK;
  unpack_u16_kernel<<<flat_blocks(n), kBlock, 0, impl_of(be)->stream>>>(src, dst, n);
  GRCU_LAUNCHED("16-bit image unpack kernel");
  return GR_OK;
}

}  // namespace grcu
