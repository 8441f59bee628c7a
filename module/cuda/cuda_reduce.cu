/* Deterministic reductions: the final pass over per-block partials (see
 * cuda_reduce.cuh for the scheme) and minmax.
 *
 * minmax uses atomics, which is deterministic here because min, max and
 * counts are exact: floats are mapped to unsigned integers whose order is the
 * floats' order (flip all bits of negatives, set the sign bit of positives),
 * so atomicMin/atomicMax on the codes give the same answer in any order. */
#include <math.h>
#include <string.h>
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

constexpr int kReduceThreads = 256;

/* out[q] = sum over b (in block order, per thread strided, then a fixed tree) of part[b*K + q]. */
__global__ void __launch_bounds__(kReduceThreads) reduce_partials_kernel(const double *__restrict__ part,
                                                                        long long nblocks, int K,
                                                                        double *__restrict__ out) {
  __shared__ double sh[kReduceThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int q = 0; q < K; ++q) {
    double s = 0.0;
    for (long long b = threadIdx.x; b < nblocks; b += kReduceThreads) s += part[b * K + q];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(kFullMask, s, off);
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
      double t = 0.0;
      for (int w = 0; w < kReduceThreads / 32; ++w) t += sh[w];
      out[q] = t;
    }
    __syncthreads();
  }
}

gr_status reduce_partials_and_fetch(gr_backend *be, const double *part, long long nblocks, int K, double *host_out,
                                    void *extra_host, const void *extra_dev, size_t extra_bytes) {
  Impl *im = impl_of(be);
  double *d_out = (double *)scratch_alloc(be, (size_t)K * sizeof(double), "reduction result");
  if (!d_out) return GR_ERR_NOMEM;
  reduce_partials_kernel<<<1, kReduceThreads, 0, im->stream>>>(part, nblocks, K, d_out);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaMemcpyAsync(host_out, d_out, (size_t)K * sizeof(double), cudaMemcpyDeviceToHost, im->stream);
  if (e == cudaSuccess && extra_bytes)
    e = cudaMemcpyAsync(extra_host, extra_dev, extra_bytes, cudaMemcpyDeviceToHost, im->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(im->stream);
  scratch_free(be, d_out);
  if (e != cudaSuccess) return device_error(e, "partial-sum reduction");
  return GR_OK;
}

gr_status reduce_partials(gr_backend *be, const double *part, long long nblocks, int K, double *host_out) {
  return reduce_partials_and_fetch(be, part, nblocks, K, host_out, nullptr, nullptr, 0);
}

/* ---- minmax --------------------------------------------------------------------------- */
struct MinMaxResult {
  unsigned int lo, hi; /* order-preserving codes */
  unsigned long long count;
};

__device__ __forceinline__ unsigned int order_code(float f) {
  const unsigned int b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

static float order_decode(unsigned int c) {
  const unsigned int b = (c & 0x80000000u) ? (c & 0x7fffffffu) : ~c;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

__global__ void minmax_kernel(long long n, const float *__restrict__ x, const float *__restrict__ mask,
                              MinMaxResult *res) {
  float lo = INFINITY, hi = -INFINITY;
  unsigned long long cnt = 0;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = __ldg(x + i);
    if ((!mask || __ldg(mask + i) > 0.5f) && v == v) { /* NaN skipped, as on the CPU */
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
      ++cnt;
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    lo = fminf(lo, __shfl_down_sync(kFullMask, lo, off));
    hi = fmaxf(hi, __shfl_down_sync(kFullMask, hi, off));
    cnt += __shfl_down_sync(kFullMask, cnt, off);
  }
  if ((threadIdx.x & 31) == 0 && cnt) {
    atomicMin(&res->lo, order_code(lo));
    atomicMax(&res->hi, order_code(hi));
    atomicAdd(&res->count, cnt);
  }
}

gr_status minmax(gr_backend *be, int64_t n, const float *x, const float *mask, double *mn, double *mx) {
  if (n < 0) return gr_error(GR_ERR_INVALID_ARG, "cuda minmax: negative length %lld", (long long)n);
  if (n > 0 && !x) return gr_error(GR_ERR_INVALID_ARG, "cuda minmax: NULL array of %lld floats", (long long)n);
  if (!mn || !mx) return gr_error(GR_ERR_INVALID_ARG, "cuda minmax: NULL output");
  gr_status s = enter(be);
  if (s != GR_OK) return s;
  MinMaxResult h = {0xffffffffu, 0u, 0ull};
  if (n > 0) {
    Impl *im = impl_of(be);
    MinMaxResult *d = (MinMaxResult *)scratch_alloc(be, sizeof(MinMaxResult), "minmax result");
    if (!d) return GR_ERR_NOMEM;
    cudaError_t e = cudaMemsetAsync(d, 0, sizeof *d, im->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(&d->lo, 0xff, sizeof d->lo, im->stream);
    if (e == cudaSuccess) {
      minmax_kernel<<<flat_blocks(n), kBlock, 0, im->stream>>>(n, x, mask, d);
      e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, im->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(im->stream);
    scratch_free(be, d);
    if (e != cudaSuccess) return device_error(e, "minmax");
  }
  if (h.count == 0) {
    *mn = *mx = 0.0;
    return gr_error(GR_ERR_EMPTY, "cuda minmax: no %svalues among %lld elements", mask ? "masked non-NaN " : "non-NaN ",
                    (long long)n);
  }
  *mn = order_decode(h.lo);
  *mx = order_decode(h.hi);
  return GR_OK;
}

}  // namespace grcu
