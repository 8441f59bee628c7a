/* Shared machinery of the CUDA backend (module/cuda/*.cu): the per-backend
 * state, error macros, launch-shape helpers, and the device-side warp and
 * interpolation primitives.
 *
 * The build compiles every .cu file separately WITHOUT relocatable device code
 * (CUDA_SEPARABLE_COMPILATION OFF), so every __device__ function used by more
 * than one file lives here as an inline function.
 *
 * Fidelity to the CPU reference. The interpolation primitives mirror
 * module/src/kernels/cpu_interp.h operation for operation, in double, with the
 * products and sums written through __dmul_rn / __dadd_rn / __dsub_rn. Those
 * intrinsics are never contracted into fused multiply-adds, so every warped
 * coordinate, validity decision, nearest-neighbour index, trilinear value,
 * histogram weight and smoothing tap is bitwise what the CPU computes (the CPU
 * build is C11 with FP contraction off). Only reductions (sums over voxels)
 * associate differently and differ by rounding. This costs a few DP
 * instructions per voxel, which is cheap on Hopper (FP64 at half the FP32
 * rate) and buys exact agreement on every discontinuous decision.
 *
 * Composite transform convention (backend.h, as the CPU reference implements
 * it in cpu_metric_internal.h / cpu_sampler.c): y = A (x + u(x)) + t, i.e. the
 * continuous moving index is c = M (i,j,k,1) + Q u(x) with M = moving.p2i * T *
 * fixed.i2p and Q = (linear part of moving.p2i) * A; grad_u = A^T dL/dy and the
 * affine gradient is sum_x dL/dy [x_phys + u(x), 1]^T. */
#ifndef GIGAREG_CUDA_COMMON_CUH
#define GIGAREG_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <map>
#include <utility>
#include <mutex>
#include <unordered_map>
#include "gigareg/backend.h"
#include "kernels/u16.h"

namespace grcu {

/* ---- per-backend state ---------------------------------------------------------- */
struct Block {
  size_t capacity;  /* bytes actually obtained from cudaMalloc */
  size_t requested; /* bytes the caller asked for (what the accounting counts) */
};

struct Impl {
  int device = 0;
  cudaStream_t stream = nullptr; /* every op is enqueued here, in order */
  int num_sms = 0;
  size_t smem_optin = 0;         /* max dynamic shared memory per block after opt-in */
  /* Bitwise-CPU mode (environment GIGAREG_CUDA_EXACT=1): ops that have a fast
   * float variant (smoothing) run the double, CPU-order one instead. */
  bool exact = false;
  /* Scratch budget of one chunk of the windowed (sharded) LNCC, bytes; the
   * environment GIGAREG_CUDA_REGION_CHUNK_MB lowers it so tests cover chunking. */
  size_t region_chunk_bytes = (size_t)4 << 30;
  char name[256] = {0};
  /* Caching pool: freed blocks are kept by capacity and handed out again, so a
   * registration level (same sizes every iteration) calls cudaMalloc only on its
   * first iteration. Reuse is safe without events because every op runs on the
   * one stream: a block freed by the host and reused by a later op is used in
   * stream order. */
  std::mutex mu;
  std::unordered_map<void *, Block> live;
  std::multimap<size_t, void *> cached; /* capacity -> pointer */
  size_t reserved = 0;                  /* bytes held from cudaMalloc (live + cached) */
  /* Launch-shape choices that need occupancy queries, made once per backend:
   * LNCC tile height and shared bytes per (radius, variant). Guarded by mu. */
  std::map<int, std::pair<int, size_t>> lncc_tiles;
};

inline Impl *impl_of(gr_backend *be) { return static_cast<Impl *>(be->impl); }

/* ---- errors ------------------------------------------------------------------------ */
/* Records "cuda backend: <what>: <error name>: <description>" and returns
 * GR_ERR_DEVICE (GR_ERR_NOMEM for cudaErrorMemoryAllocation). Clears the
 * non-sticky error state. Defined in cuda_backend.cu. */
gr_status device_error(cudaError_t e, const char *what);

#define GRCU_TRY(call)                                                  \
  do {                                                                  \
    const cudaError_t grcu_e_ = (call);                                 \
    if (grcu_e_ != cudaSuccess) return ::grcu::device_error(grcu_e_, #call); \
  } while (0)

/* After a kernel launch: launch-configuration errors surface here; faults in
 * the kernel itself surface at the next synchronising call. */
#define GRCU_LAUNCHED(what)                                                \
  do {                                                                     \
    const cudaError_t grcu_e_ = cudaGetLastError();                        \
    if (grcu_e_ != cudaSuccess) return ::grcu::device_error(grcu_e_, what); \
  } while (0)

/* Makes the backend's device current for the calling thread (several backends
 * on several GPUs may share one process and one thread). */
gr_status enter(gr_backend *be);

/* Scratch from the backend's accounted pool (NULL + gr_error on failure). */
void *scratch_alloc(gr_backend *be, size_t bytes, const char *what);
void scratch_free(gr_backend *be, void *p);

/* Download `bytes` from device to a host buffer and wait for the stream. */
gr_status fetch(gr_backend *be, void *host, const void *dev, size_t bytes);

/* ---- launch shapes --------------------------------------------------------------------- */
/* Voxel kernels use 32x8 thread blocks (a warp spans 32 consecutive x, so
 * plane accesses coalesce) on a 3D grid whose z extent is capped: each thread
 * then loops over z with stride gridDim.z. The cap bounds the number of
 * per-block reduction partials; it depends on the grid size only, never on
 * the device, so reductions are reproducible. */
constexpr int kBX = 32, kBY = 8, kBlock = kBX * kBY;
constexpr long long kMaxBlocks = 8192;

inline dim3 voxel_grid(const long long n[3]) {
  const long long gx = (n[0] + kBX - 1) / kBX, gy = (n[1] + kBY - 1) / kBY;
  long long gz = kMaxBlocks / (gx * gy);
  if (gz < 1) gz = 1;
  if (gz > n[2]) gz = n[2];
  if (gz > 65535) gz = 65535;
  return dim3((unsigned)gx, (unsigned)gy, (unsigned)gz);
}

inline long long grid_blocks(dim3 g) { return (long long)g.x * g.y * g.z; }

/* Elementwise kernels: 1D grid-stride, fixed block count cap. */
inline unsigned flat_blocks(long long n) {
  long long b = (n + kBlock - 1) / kBlock;
  if (b > 4 * kMaxBlocks) b = 4 * kMaxBlocks;
  if (b < 1) b = 1;
  return (unsigned)b;
}

/* ---- no-contract double arithmetic ------------------------------------------------- */
__device__ __forceinline__ double dmul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double dadd(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double dsub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double ddiv(double a, double b) { return __ddiv_rn(a, b); }
/* a*b + c*d + e*f, evaluated left to right like the C expression. */
__device__ __forceinline__ double dot3(double a, double b, double c, double d, double e, double f) {
  return dadd(dadd(dmul(a, b), dmul(c, d)), dmul(e, f));
}

/* ---- grids and maps (PODs passed by value: they land in the kernel parameter
 * constant bank, read with uniform indices) ------------------------------------------- */
struct Dims {
  long long n[3];
  long long nxy, nvox;
};

inline Dims dims_of(const gr_grid *g) {
  Dims d;
  for (int a = 0; a < 3; ++a) d.n[a] = g->n[a];
  d.nxy = d.n[0] * d.n[1];
  d.nvox = d.nxy * d.n[2];
  return d;
}

/* Fixed index -> moving continuous index (cpu_metric_ctx's M, P, Q, At, X). */
struct WarpMap {
  double M[12]; /* moving.p2i * T * fixed.i2p, row-major 3x4 */
  double P[9];  /* linear part of moving.p2i (index offset per mm), row-major 3x3 */
  double Q[9];  /* P * A: maps u (applied before the affine) to index offsets */
  double At[9]; /* A^T: d loss / d u = A^T d loss / d y */
  double X[12]; /* fixed.i2p (x_phys for the affine gradient) */
  Dims f, m;    /* fixed and moving grids */
};

/* M = p2i_in * T * i2p_out (T may be NULL), as cpu_sampler / cpu_metric compute it. */
void composite_map(const gr_grid *out_grid, const gr_grid *in_grid, const gr_affine *T, double M[12]);
/* Q = linear(p2i) * A (identity A when T is NULL), row-major 3x3, summed like
 * cpu_interp.h's cpu_disp_matrix. */
void disp_matrix(const double p2i[12], const gr_affine *T, double Q[9]);
WarpMap make_warp_map(const gr_grid *fixed, const gr_grid *moving, const gr_affine *T);

/* ---- interpolation primitives (cpu_interp.h, see there for the conventions) ---------- */
constexpr double kIndexSnap = 1e-6;

struct Axis {
  long long i0, i1;
  double w0, w1;
  double d0, d1;
};

__device__ __forceinline__ double snap_index(double c, long long n) {
  const double hi = (double)(n - 1);
  if (c < 0.0 && c >= -kIndexSnap) return 0.0;
  if (c > hi && c <= hi + kIndexSnap) return hi;
  return c;
}

__device__ __forceinline__ bool index_inside(double c, long long n) { return c >= 0.0 && c <= (double)(n - 1); }

/* The linear stencil of one axis at continuous index c (the last voxel taken
 * as the right end of the last cell, one-sided weights at the border), with
 * weights of type T and indices of type I: double / long long here (Axis),
 * float / int for the LNCC fast path's sample (cuda_lncc_sample.cuh), which
 * rounds the exact fraction c - floor(c) to float once. */
template <typename T, typename I, class A>
__device__ __forceinline__ void axis_fill_as(double c, I n, A &a) {
  const double fl = floor(c);
  I i = (I)fl;
  T t = (T)(c - fl);
  if (i == n - 1 && t == T(0) && n > 1) {
    i = n - 2;
    t = T(1);
  }
  a.i0 = i;
  a.i1 = i + 1;
  a.w0 = T(1) - t;
  a.w1 = t;
  a.d0 = T(-1);
  a.d1 = T(1);
  if (i < 0) {
    a.i0 = 0;
    a.w0 = T(0);
    a.d0 = T(0);
  }
  if (i + 1 > n - 1) {
    a.i1 = n - 1;
    a.w1 = T(0);
    a.d1 = T(0);
    if (n == 1 && t == T(0)) a.d0 = T(0);
  }
}

__device__ __forceinline__ void axis_fill(double c, long long n, Axis &a) { axis_fill_as<double, long long>(c, n, a); }

__device__ __forceinline__ bool axis_zero(double c, long long n, Axis &a) {
  if (!(c > -1.0 && c < (double)n)) return false;
  axis_fill(c, n, a);
  return true;
}

__device__ __forceinline__ void axis_clamp(double c, long long n, Axis &a) {
  const double hi = (double)(n - 1);
  c = c > 0.0 ? c : 0.0; /* also maps NaN to 0 */
  c = c < hi ? c : hi;
  const double fl = floor(c);
  long long i = (long long)fl;
  double t = c - fl;
  if (i >= n - 1 && n > 1) {
    i = n - 2;
    t = 1.0;
  }
  a.i0 = i;
  a.i1 = n > 1 ? i + 1 : i;
  a.w0 = 1.0 - t;
  a.w1 = t;
  a.d0 = n > 1 ? -1.0 : 0.0;
  a.d1 = n > 1 ? 1.0 : 0.0;
}

struct Corners {
  long long o[8];
};

__device__ __forceinline__ Corners tri_offsets(const Axis a[3], long long nx, long long nxy) {
  Corners c;
  const long long z0 = a[2].i0 * nxy, z1 = a[2].i1 * nxy;
  const long long y0 = a[1].i0 * nx, y1 = a[1].i1 * nx;
  c.o[0] = z0 + y0 + a[0].i0;
  c.o[1] = z0 + y0 + a[0].i1;
  c.o[2] = z0 + y1 + a[0].i0;
  c.o[3] = z0 + y1 + a[0].i1;
  c.o[4] = z1 + y0 + a[0].i0;
  c.o[5] = z1 + y0 + a[0].i1;
  c.o[6] = z1 + y1 + a[0].i0;
  c.o[7] = z1 + y1 + a[0].i1;
  return c;
}

__device__ __forceinline__ double lerp2(double w0, double a, double w1, double b) {
  return dadd(dmul(w0, a), dmul(w1, b));
}

__device__ __forceinline__ double tri_value_at(const float *__restrict__ img, const Corners &c, const Axis a[3]) {
  const double v0 = __ldg(img + c.o[0]), v1 = __ldg(img + c.o[1]), v2 = __ldg(img + c.o[2]), v3 = __ldg(img + c.o[3]);
  const double v4 = __ldg(img + c.o[4]), v5 = __ldg(img + c.o[5]), v6 = __ldg(img + c.o[6]), v7 = __ldg(img + c.o[7]);
  const double l00 = lerp2(a[0].w0, v0, a[0].w1, v1);
  const double l10 = lerp2(a[0].w0, v2, a[0].w1, v3);
  const double l01 = lerp2(a[0].w0, v4, a[0].w1, v5);
  const double l11 = lerp2(a[0].w0, v6, a[0].w1, v7);
  const double ly0 = lerp2(a[1].w0, l00, a[1].w1, l10);
  const double ly1 = lerp2(a[1].w0, l01, a[1].w1, l11);
  return lerp2(a[2].w0, ly0, a[2].w1, ly1);
}

/* Value and gradient with respect to the continuous index. */
__device__ __forceinline__ double tri_value_grad_at(const float *__restrict__ img, const Corners &c, const Axis a[3],
                                                    double g[3]) {
  const double v0 = __ldg(img + c.o[0]), v1 = __ldg(img + c.o[1]), v2 = __ldg(img + c.o[2]), v3 = __ldg(img + c.o[3]);
  const double v4 = __ldg(img + c.o[4]), v5 = __ldg(img + c.o[5]), v6 = __ldg(img + c.o[6]), v7 = __ldg(img + c.o[7]);
  const double l00 = lerp2(a[0].w0, v0, a[0].w1, v1), d00 = lerp2(a[0].d0, v0, a[0].d1, v1);
  const double l10 = lerp2(a[0].w0, v2, a[0].w1, v3), d10 = lerp2(a[0].d0, v2, a[0].d1, v3);
  const double l01 = lerp2(a[0].w0, v4, a[0].w1, v5), d01 = lerp2(a[0].d0, v4, a[0].d1, v5);
  const double l11 = lerp2(a[0].w0, v6, a[0].w1, v7), d11 = lerp2(a[0].d0, v6, a[0].d1, v7);
  const double ly0 = lerp2(a[1].w0, l00, a[1].w1, l10), gx0 = lerp2(a[1].w0, d00, a[1].w1, d10);
  const double ly1 = lerp2(a[1].w0, l01, a[1].w1, l11), gx1 = lerp2(a[1].w0, d01, a[1].w1, d11);
  const double gy0 = lerp2(a[1].d0, l00, a[1].d1, l10), gy1 = lerp2(a[1].d0, l01, a[1].d1, l11);
  g[0] = lerp2(a[2].w0, gx0, a[2].w1, gx1);
  g[1] = lerp2(a[2].w0, gy0, a[2].w1, gy1);
  g[2] = lerp2(a[2].d0, ly0, a[2].d1, ly1);
  return lerp2(a[2].w0, ly0, a[2].w1, ly1);
}

/* ZERO boundary, value only (c already snapped or not: snapping is idempotent). */
__device__ __forceinline__ double sample_linear_zero(const float *__restrict__ img, const Dims &d, const double c[3]) {
  Axis a[3];
#pragma unroll
  for (int k = 0; k < 3; ++k)
    if (!axis_zero(snap_index(c[k], d.n[k]), d.n[k], a[k])) return 0.0;
  const Corners o = tri_offsets(a, d.n[0], d.nxy);
  return tri_value_at(img, o, a);
}

/* ZERO boundary, value and index gradient. */
__device__ __forceinline__ double sample_linear_grad_zero(const float *__restrict__ img, const Dims &d,
                                                          const double c[3], double g[3]) {
  Axis a[3];
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    if (!axis_zero(snap_index(c[k], d.n[k]), d.n[k], a[k])) {
      g[0] = g[1] = g[2] = 0.0;
      return 0.0;
    }
  }
  const Corners o = tri_offsets(a, d.n[0], d.nxy);
  return tri_value_grad_at(img, o, a, g);
}

/* Nearest voxel's linear offset; -1 when outside (ZERO); never -1 with clamp. */
__device__ __forceinline__ long long nearest_offset(const Dims &d, const double c[3], bool clamp) {
  long long idx[3];
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const double r = floor(dadd(snap_index(c[k], d.n[k]), 0.5));
    if (clamp) {
      idx[k] = r > 0.0 ? (r < (double)(d.n[k] - 1) ? (long long)r : d.n[k] - 1) : 0; /* NaN -> 0 */
    } else {
      if (!(r >= 0.0 && r <= (double)(d.n[k] - 1))) return -1;
      idx[k] = (long long)r;
    }
  }
  return (idx[2] * d.n[1] + idx[1]) * d.n[0] + idx[0];
}

/* grad_phys = P^T grad_idx (P row-major 3x3). */
__device__ __forceinline__ void grad_idx_to_phys(const double P[9], const double gi[3], double gp[3]) {
#pragma unroll
  for (int r = 0; r < 3; ++r) gp[r] = dot3(P[0 * 3 + r], gi[0], P[1 * 3 + r], gi[1], P[2 * 3 + r], gi[2]);
}

/* ---- the metric warp (cpu_metric_internal.h) ---------------------------------------- */
/* Continuous moving index of fixed voxel (i, j, k), displacement included, snapped. */
__device__ __forceinline__ void metric_index(const WarpMap &m, const float *__restrict__ disp, long long i, long long j,
                                             long long k, long long v, double c[3]) {
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const double row = dadd(dadd(dmul(m.M[r * 4 + 1], (double)j), dmul(m.M[r * 4 + 2], (double)k)), m.M[r * 4 + 3]);
    c[r] = dadd(row, dmul(m.M[r * 4], (double)i));
  }
  if (disp) {
    const double ux = __ldg(disp + v), uy = __ldg(disp + m.f.nvox + v), uz = __ldg(disp + 2 * m.f.nvox + v);
#pragma unroll
    for (int r = 0; r < 3; ++r)
      c[r] = dadd(c[r], dot3(m.Q[r * 3], ux, m.Q[r * 3 + 1], uy, m.Q[r * 3 + 2], uz));
  }
#pragma unroll
  for (int r = 0; r < 3; ++r) c[r] = snap_index(c[r], m.m.n[r]);
}

/* The point the affine acts on for fixed voxel (i, j, k) = flat index v: x_phys + u(x). */
__device__ __forceinline__ void metric_xphys(const WarpMap &m, const float *__restrict__ disp, long long i, long long j,
                                             long long k, long long v, double x[3]) {
#pragma unroll
  for (int r = 0; r < 3; ++r)
    x[r] = dadd(dadd(dadd(dmul(m.X[r * 4], (double)i), dmul(m.X[r * 4 + 1], (double)j)), dmul(m.X[r * 4 + 2], (double)k)),
                m.X[r * 4 + 3]);
  if (disp) {
#pragma unroll
    for (int r = 0; r < 3; ++r) x[r] = dadd(x[r], (double)__ldg(disp + r * m.f.nvox + v));
  }
}

struct MetricImages {
  const float *fixed, *fmask, *moving, *mmask, *disp;
  float *grad_u; /* NULL unless the field gradient is wanted */
  /* 16-bit images (gr_metric_spec.fixed_u16 / moving_u16): when set, read
   * instead of fixed / moving. Only the LNCC and MI fast paths see them; the
   * dispatcher (cuda_metric.cu) hands every other path float copies. */
  const uint16_t *fixed16, *moving16;
};

/* ---- 16-bit images (kernels/u16.h) --------------------------------------------------- */
/* gr_u16_value writes its product __fmul_rn on the device: nvcc's default
 * fmad would fuse a plain q * scale into a following add or subtract (f - cf,
 * the lerps), so a 16-bit read would stop being the float the rounded image
 * holds, which the bitwise contract of gr_metric_spec needs. */
__device__ __forceinline__ float u16_value(uint16_t q) { return gr_u16_value(q); }

__device__ __forceinline__ float img_ld(const float *__restrict__ p) { return __ldg(p); }
__device__ __forceinline__ float img_ld(const uint16_t *__restrict__ p) { return u16_value(__ldg(p)); }

/* Voxel i of an image stored as float (f) or, when q is set, 16-bit. The
 * branch is uniform (a kernel parameter), so it costs an issue slot, not
 * divergence. */
__device__ __forceinline__ float img_load(const float *__restrict__ f, const uint16_t *__restrict__ q, long long i) {
  return q ? img_ld(q + i) : img_ld(f + i);
}

/* The MSE/NCC/MI validity rule and sample. Returns true and W (and grad_phys W
 * when g_phys != NULL) for a valid voxel. */
__device__ __forceinline__ bool metric_warp(const WarpMap &m, const MetricImages &im, long long i, long long j,
                                            long long k, long long v, double *w, double *g_phys) {
  if (im.fmask && !(__ldg(im.fmask + v) > 0.5f)) return false;
  double c[3];
  metric_index(m, im.disp, i, j, k, v, c);
  if (!(index_inside(c[0], m.m.n[0]) && index_inside(c[1], m.m.n[1]) && index_inside(c[2], m.m.n[2]))) return false;
  if (im.mmask && !(__ldg(im.mmask + nearest_offset(m.m, c, true)) > 0.5f)) return false;
  Axis a[3];
#pragma unroll
  for (int d = 0; d < 3; ++d) axis_fill(c[d], m.m.n[d], a[d]);
  const Corners o = tri_offsets(a, m.m.n[0], m.m.nxy);
  if (!g_phys) {
    *w = tri_value_at(im.moving, o, a);
    return true;
  }
  double gi[3];
  *w = tri_value_grad_at(im.moving, o, a, gi);
  grad_idx_to_phys(m.P, gi, g_phys);
  return true;
}

/* acc += dL/dy [x_phys, 1]^T */
__device__ __forceinline__ void affine_accum(double acc[12], const double d[3], const double x[3]) {
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    acc[r * 4 + 0] += d[r] * x[0];
    acc[r * 4 + 1] += d[r] * x[1];
    acc[r * 4 + 2] += d[r] * x[2];
    acc[r * 4 + 3] += d[r];
  }
}

/* grad_u(v) = A^T d, d = d loss / d y. */
__device__ __forceinline__ void grad_u_store(const WarpMap &m, float *__restrict__ gu, long long v, const double d[3]) {
  const long long nvox = m.f.nvox;
  gu[v] = (float)dot3(m.At[0], d[0], m.At[1], d[1], m.At[2], d[2]);
  gu[nvox + v] = (float)dot3(m.At[3], d[0], m.At[4], d[1], m.At[5], d[2]);
  gu[2 * nvox + v] = (float)dot3(m.At[6], d[0], m.At[7], d[1], m.At[8], d[2]);
}

__device__ __forceinline__ void grad_u_zero(float *__restrict__ gu, long long nvox, long long v) {
  gu[v] = 0.0f;
  gu[nvox + v] = 0.0f;
  gu[2 * nvox + v] = 0.0f;
}

}  // namespace grcu
#endif
