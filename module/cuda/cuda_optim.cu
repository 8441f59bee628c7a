/* adam_direction and adam_moments (cpu_optim.c semantics): Adam moments, the
 * bias-corrected normalised direction from the stored moments (the float rule
 * of cuda_adam.cuh), element-wise over the 3 planes, and the largest
 * voxel-unit length of the direction. One streaming pass: reads grad, m, v and
 * writes m, v (and dir for adam_direction): 20 (24) bytes per component with
 * float moments, 12 with bfloat16. The max is taken over the squared lengths
 * and rooted once on the host: a correctly rounded square root is monotone, so
 * that is bitwise the max of the per-voxel roots, without a FP64 square root
 * per voxel. It is exact, so it is reduced with integer atomics on the bit
 * patterns of the non-negative doubles (their integer order is their numeric
 * order): deterministic. */
#include <math.h>
#include <string.h>
#include "cuda_adam.cuh"
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"
#include "cuda_smooth_xyz.cuh"

namespace grcu {

struct AdamArgs {
  AdamRule r;
  double L[9]; /* linear part of p2i: mm -> voxels */
  long long nvox;
};

/* Squared voxel-unit length of direction d (mm) under the p2i linear part L. */
__device__ __forceinline__ double len2_vox(const double L[9], double d0, double d1, double d2) {
  const double e0 = dot3(L[0], d0, L[1], d1, L[2], d2);
  const double e1 = dot3(L[3], d0, L[4], d1, L[5], d2);
  const double e2 = dot3(L[6], d0, L[7], d1, L[8], d2);
  return dadd(dadd(dmul(e0, e0), dmul(e1, e1)), dmul(e2, e2));
}

/* Warp max, then one integer atomic per warp on the bit pattern. */
__device__ __forceinline__ void max_commit(double mx, unsigned long long *max_bits) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const double o = __shfl_down_sync(kFullMask, mx, off);
    mx = o > mx ? o : mx;
  }
  if ((threadIdx.x & 31) == 0 && mx > 0.0) atomicMax(max_bits, (unsigned long long)__double_as_longlong(mx));
}

template <bool DIR, bool BF16>
__global__ void __launch_bounds__(kBlock) adam_kernel(const AdamArgs a, const float *__restrict__ grad,
                                                      void *__restrict__ m, void *__restrict__ v,
                                                      float *__restrict__ dir, unsigned long long *max_bits) {
  double mx = 0.0;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.nvox; i += stride) {
    double d[3];
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const long long k = i + c * a.nvox;
      const float gk = __ldg(grad + k);
      const float mk = gr_moment_store(m, BF16, k, adam_m(a.r, gr_moment_load(m, BF16, k), gk));
      const float vk = gr_moment_store(v, BF16, k, adam_v(a.r, gr_moment_load(v, BF16, k), gk));
      const float dk = adam_dir(a.r, mk, vk);
      d[c] = dk;
      if (DIR) dir[k] = dk;
    }
    const double len2 = len2_vox(a.L, d[0], d[1], d[2]);
    mx = len2 > mx ? len2 : mx; /* NaN never wins, as on the CPU */
  }
  max_commit(mx, max_bits);
}

/* Four consecutive moments of one plane: float4, or four bfloat16 in a uint2
 * (little-endian: element 0 in the low half of .x). */
template <bool BF16> struct Quad;
template <> struct Quad<false> {
  static __device__ __forceinline__ void load(const void *p, long long q, float f[4]) {
    const float4 x = reinterpret_cast<const float4 *>(p)[q];
    f[0] = x.x, f[1] = x.y, f[2] = x.z, f[3] = x.w;
  }
  /* stores f and leaves in f the values as stored (unchanged for float) */
  static __device__ __forceinline__ void store(void *p, long long q, float f[4]) {
    reinterpret_cast<float4 *>(p)[q] = make_float4(f[0], f[1], f[2], f[3]);
  }
};
template <> struct Quad<true> {
  static __device__ __forceinline__ void load(const void *p, long long q, float f[4]) {
    const uint2 x = reinterpret_cast<const uint2 *>(p)[q];
    f[0] = gr_bf16_to_float((uint16_t)(x.x & 0xffffu)), f[1] = gr_bf16_to_float((uint16_t)(x.x >> 16));
    f[2] = gr_bf16_to_float((uint16_t)(x.y & 0xffffu)), f[3] = gr_bf16_to_float((uint16_t)(x.y >> 16));
  }
  static __device__ __forceinline__ void store(void *p, long long q, float f[4]) {
    uint16_t h[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      h[j] = gr_float_to_bf16(f[j]); /* gr_moment_store's rounding */
      f[j] = gr_bf16_to_float(h[j]);
    }
    reinterpret_cast<uint2 *>(p)[q] =
        make_uint2((unsigned)h[0] | ((unsigned)h[1] << 16), (unsigned)h[2] | ((unsigned)h[3] << 16));
  }
};

/* Four moments of one component plane (quad kq) updated with gradient g and
 * stored; mk, vk are left as stored (bfloat16 rounding included). */
template <bool BF16>
__device__ __forceinline__ void moments_quad(const AdamRule &r, void *m, void *v, long long kq, const float (&g)[4],
                                             float (&mk)[4], float (&vk)[4]) {
  Quad<BF16>::load(m, kq, mk);
  Quad<BF16>::load(v, kq, vk);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    mk[j] = adam_m(r, mk[j], g[j]);
    vk[j] = adam_v(r, vk[j], g[j]);
  }
  Quad<BF16>::store(m, kq, mk);
  Quad<BF16>::store(v, kq, vk);
}

/* mx = max(mx, squared voxel lengths of the 4 directions d[component][voxel]) */
__device__ __forceinline__ void length_max4(const double L[9], const float (&d)[3][4], double &mx) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const double len2 = len2_vox(L, d[0][j], d[1][j], d[2][j]);
    mx = len2 > mx ? len2 : mx;
  }
}

/* adam_moments with four voxels per thread and one 16-byte (8 for bfloat16)
 * access per plane and array: the scalar kernel issues a 2- or 4-byte access
 * per element and a 64-bit address computation per access, which leaves the
 * pass latency- and issue-bound (2.8 ms for 36 B/voxel at 512^3 with bfloat16
 * moments). Same element-wise arithmetic, so the same bits. Needs nvox % 4 ==
 * 0 and aligned planes (adam_pass checks, else the scalar kernel runs). */
template <bool BF16>
__global__ void __launch_bounds__(kBlock) adam_moments4_kernel(const AdamArgs a, const float *__restrict__ grad,
                                                               void *__restrict__ m, void *__restrict__ v,
                                                               unsigned long long *max_bits) {
  double mx = 0.0;
  const long long nq = a.nvox >> 2, stride = (long long)gridDim.x * blockDim.x;
  for (long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x; q < nq; q += stride) {
    float d[3][4];
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const long long kq = q + c * nq;
      const float4 g4 = __ldg(reinterpret_cast<const float4 *>(grad) + kq);
      const float g[4] = {g4.x, g4.y, g4.z, g4.w};
      float mk[4], vk[4];
      moments_quad<BF16>(a.r, m, v, kq, g, mk, vk);
#pragma unroll
      for (int j = 0; j < 4; ++j) d[c][j] = adam_dir(a.r, mk[j], vk[j]);
    }
    length_max4(a.L, d, mx);
  }
  max_commit(mx, max_bits);
}

/* The direction's largest squared voxel length from the three components'
 * stored moments, adam_moments4_kernel's arithmetic without the update: the
 * last pass of adam_moments_smoothed. Why a pass of its own: done in the last
 * march's epilogue (4 more quad loads, 3 IEEE divisions and square roots and
 * an FP64 length per voxel on top of the march's work) that march took 1.85 ms
 * at 512^3 against 0.89 for the others (ncu); the separate streaming pass
 * reads 12 more bytes per voxel (bfloat16) but hides its latency with full
 * occupancy: 2.95 ms against 3.11 for the whole adam_moments_smoothed. */
template <bool BF16>
__global__ void __launch_bounds__(kBlock) adam_length4_kernel(const AdamArgs a, const void *__restrict__ m,
                                                              const void *__restrict__ v, unsigned long long *max_bits) {
  double mx = 0.0;
  const long long nq = a.nvox >> 2, stride = (long long)gridDim.x * blockDim.x;
  for (long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x; q < nq; q += stride) {
    float d[3][4];
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      float mk[4], vk[4];
      Quad<BF16>::load(m, q + c * nq, mk);
      Quad<BF16>::load(v, q + c * nq, vk);
#pragma unroll
      for (int j = 0; j < 4; ++j) d[c][j] = adam_dir(a.r, mk[j], vk[j]);
    }
    length_max4(a.L, d, mx);
  }
  max_commit(mx, max_bits);
}

/* adam_moments_smoothed: the epilogue of the fused Gaussian march
 * (cuda_smooth_xyz.cuh) over gradient component c. It takes 4 smoothed
 * gradient voxels straight from the march and applies adam_moments4_kernel's
 * update to component c's moments, so the smoothed gradient is never stored:
 * the gradient smoothing's two passes, its scratch plane and the moments
 * pass's gradient read become one read of the raw gradient. The direction's
 * length comes after the three marches (adam_length4_kernel), from the stored
 * moments as adam_moments4_kernel forms it (Quad::store leaves the stored
 * values, so the same bits). */
template <bool BF16>
struct MomentsOut {
  AdamArgs a;
  void *m, *v;
  long long c; /* component */
  __device__ __forceinline__ void put(long long vox, const float (&g)[4]) const {
    float mk[4], vk[4];
    moments_quad<BF16>(a.r, m, v, (vox >> 2) + c * (a.nvox >> 2), g, mk, vk);
  }
  __device__ __forceinline__ void finish() const {}
};

/* The three component marches of adam_moments_smoothed, then the length pass
 * (it reads all three components' updated moments). */
template <bool BF16>
static cudaError_t launch_smoothed_moments(const AdamArgs &a, const Dims &d, const Xyz4Plan &pl, int num_sms,
                                           cudaStream_t st, const float *grad, gr_moments mom,
                                           unsigned long long *d_max) {
  cudaError_t e = cudaSuccess;
  for (long long c = 0; c < 3 && e == cudaSuccess; ++c) {
    const MomentsOut<BF16> out = {a, mom.m, mom.v, c};
    e = launch_xyz4(pl, d, num_sms, st, grad + c * a.nvox, out);
  }
  if (e != cudaSuccess) return e;
  adam_length4_kernel<BF16><<<dim3(flat_blocks(a.nvox / 4)), kBlock, 0, st>>>(a, mom.m, mom.v, d_max);
  return cudaGetLastError();
}


static gr_status adam_pass(gr_backend *be, const char *what, const gr_grid *g, const float *grad, gr_moments mom,
                           float *dir, double b1, double b2, double eps, int t, double *max_vox,
                           const Xyz4Plan *gs = nullptr) {
  for (int ax = 0; ax < 3; ++ax)
    if (g->n[ax] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[ax], ax);
  AdamArgs a;
  gr_status s = gr_adam_rule_make(what, b1, b2, eps, t, &a.r);
  if (s == GR_OK) s = enter(be);
  if (s != GR_OK) return s;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) a.L[r * 3 + c] = g->p2i[r * 4 + c];
  a.nvox = g->n[0] * g->n[1] * g->n[2];
  Impl *im = impl_of(be);
  unsigned long long *d_max = (unsigned long long *)scratch_alloc(be, sizeof(unsigned long long), "Adam max");
  if (!d_max) return GR_ERR_NOMEM;
  unsigned long long bits = 0;
  cudaError_t e = cudaMemsetAsync(d_max, 0, sizeof *d_max, im->stream);
  if (e == cudaSuccess) {
    const dim3 nb(flat_blocks(a.nvox));
    /* the 4-wide kernel: every plane starts on a 16-byte (8 for bfloat16) boundary */
    const uintptr_t mal = mom.bf16 ? 8 : 16;
    const bool quad = !dir && a.nvox % 4 == 0 && (uintptr_t)grad % 16 == 0 && (uintptr_t)mom.m % mal == 0 &&
                      (uintptr_t)mom.v % mal == 0;
    const dim3 nq(flat_blocks(a.nvox / 4));
    if (gs) { /* adam_moments_smoothed checked the quad conditions */
      const Dims d = dims_of(g);
      e = mom.bf16 ? launch_smoothed_moments<true>(a, d, *gs, im->num_sms, im->stream, grad, mom, d_max)
                   : launch_smoothed_moments<false>(a, d, *gs, im->num_sms, im->stream, grad, mom, d_max);
    } else if (quad && mom.bf16) adam_moments4_kernel<true><<<nq, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, d_max);
    else if (quad) adam_moments4_kernel<false><<<nq, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, d_max);
    else if (dir) adam_kernel<true, false><<<nb, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, dir, d_max);
    else if (mom.bf16) adam_kernel<false, true><<<nb, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, dir, d_max);
    else adam_kernel<false, false><<<nb, kBlock, 0, im->stream>>>(a, grad, mom.m, mom.v, dir, d_max);
    if (e == cudaSuccess) e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpyAsync(&bits, d_max, sizeof bits, cudaMemcpyDeviceToHost, im->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(im->stream);
  scratch_free(be, d_max);
  if (e != cudaSuccess) return device_error(e, what);
  double mx;
  memcpy(&mx, &bits, sizeof mx);
  *max_vox = sqrt(mx);
  return GR_OK;
}

gr_status adam_direction(gr_backend *be, const gr_grid *g, const float *grad, float *m, float *v, float *dir,
                         double b1, double b2, double eps, int t, double *max_vox) {
  if (!g || !grad || !m || !v || !dir || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_direction: NULL argument");
  const gr_moments mom = {m, v, 0};
  return adam_pass(be, "adam_direction", g, grad, mom, dir, b1, b2, eps, t, max_vox);
}

gr_status adam_moments(gr_backend *be, const gr_grid *g, const float *grad, gr_moments mom, double b1, double b2,
                       double eps, int t, double *max_vox) {
  if (!g || !grad || !mom.m || !mom.v || !max_vox) return gr_error(GR_ERR_INVALID_ARG, "adam_moments: NULL argument");
  return adam_pass(be, "adam_moments", g, grad, mom, nullptr, b1, b2, eps, t, max_vox);
}

gr_status adam_moments_smoothed(gr_backend *be, const gr_grid *g, float *grad, const double sigma_vox[3], gr_moments mom,
                                double b1, double b2, double eps, int t, double *max_vox) {
  if (!g || !grad || !sigma_vox || !mom.m || !mom.v || !max_vox)
    return gr_error(GR_ERR_INVALID_ARG, "adam_moments_smoothed: NULL argument");
  int r[3];
  gr_status s = smooth_radii("adam_moments_smoothed", g, sigma_vox, r);
  if (s != GR_OK) return s;
  if ((s = enter(be)) != GR_OK) return s;
  const Dims d = dims_of(g);
  const uintptr_t mal = mom.bf16 ? 8 : 16;
  Xyz4Plan pl;
  const bool fused = !impl_of(be)->exact && (uintptr_t)mom.m % mal == 0 && (uintptr_t)mom.v % mal == 0 &&
                     xyz4_plan(r, d, sigma_vox, grad, &pl);
  if (!fused) { /* the same values in two steps (grad is smoothed in place: the caller's gradient is dead after this) */
    s = smooth(be, g, grad, 3, sigma_vox);
    return s == GR_OK ? adam_moments(be, g, grad, mom, b1, b2, eps, t, max_vox) : s;
  }
  return adam_pass(be, "adam_moments_smoothed", g, grad, mom, nullptr, b1, b2, eps, t, max_vox, &pl);
}

}  // namespace grcu
