/* Displacement-field kernels: compose, invert, jacobian_det (cpu_field.c
 * semantics) and adam_compose (the fused update's compose). Fields are 3
 * planes of mm displacements on grid g; sample positions are
 * idx + p2i_lin * s(x) (no round trip through mm). Arithmetic as the CPU's
 * (bitwise equal results): the field rule of kernels/field_lerp.h (float
 * offsets, CLAMP cell and trilinear interpolation), the 8-corner stencil
 * computed once and shared by the three planes.
 *
 * Performance (512^3, H100, bf16 moments; adam_compose 3.74 ms when the
 * interpolation ran in double, one thread per voxel with a strided z loop):
 * the kernel is bound by instruction issue and latency more than by DRAM
 * (36 B/voxel). What paid: float interpolation (no per-corner conversions),
 * float offsets and cell (no double arithmetic or conversion left), 32-bit
 * offsets, each block walking consecutive planes (L1 reuse of the corner
 * planes), and the step inputs loaded one plane ahead. */
#include <type_traits>
#include "cuda_adam.cuh"
#include "cuda_ops.cuh"
#include "kernels/field_lerp.h"

namespace grcu {

struct FieldMap {
  Dims d;
  double L[9];      /* linear part of p2i (jacobian_det) */
  float Lf[9];      /* the same rounded to float: the field rule's offsets (field_lerp.h) */
  long long st[3];  /* upper-corner strides {1, nx, nxy}, 0 along one-sample axes */
  long long top[3]; /* the CLAMP cell at or past n - 1: lower corner max(n - 2, 0) ... */
  float ttop[3];    /* ... and fraction (1, or 0 when n == 1) */
  long long zchunk; /* planes per block (each block walks consecutive planes) */
};

static FieldMap field_map(const gr_grid *g) {
  FieldMap f;
  f.d = dims_of(g);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      f.L[r * 3 + c] = g->p2i[r * 4 + c];
      f.Lf[r * 3 + c] = (float)g->p2i[r * 4 + c];
    }
  const long long stride[3] = {1, f.d.n[0], f.d.nxy};
  for (int a = 0; a < 3; ++a) {
    f.st[a] = f.d.n[a] > 1 ? stride[a] : 0;
    f.top[a] = f.d.n[a] > 1 ? f.d.n[a] - 2 : 0;
    f.ttop[a] = f.d.n[a] > 1 ? 1.0f : 0.0f;
  }
  f.zchunk = 1;
  return f;
}

/* The step of the fused update (adam_compose): s = scale * Adam direction. */
struct AdamStep {
  AdamRule r;
  gr_moments mom;
  float scale;
};

enum WarpMode { kCompose = 0, kNegSample = 1, kAdamCompose = 2 };

/* gr_field_cell, bitwise (S: int below 2^30 samples per axis, else long
 * long): floor(d) comes from the 1.5 * 2^23 shift (for |d| <= 2^21,
 * d + 1.5 * 2^23 rounded down is floor(d) + 1.5 * 2^23 exactly, and the
 * difference of the bit patterns is floor(d)), which keeps the cell off the
 * quarter-rate conversion pipe; the clamping is selects, not branches.
 * nm1 = n - 1, top / ttop: the cell at or past n - 1 (FieldMap). */
template <typename S>
__device__ __forceinline__ S field_axis(S x, float d, S nm1, S top, float ttop, float w[2]) {
  const float kShift = 12582912.0f;
  d = d >= -GR_FIELD_REACH ? d : -GR_FIELD_REACH;
  d = d <= GR_FIELD_REACH ? d : GR_FIELD_REACH;
  const float sh = __fadd_rd(d, kShift);
  const S k = x + (S)(__float_as_int(sh) - __float_as_int(kShift));
  const float f = __fsub_rn(d, __fsub_rn(sh, kShift));
  const bool below = k < 0, above = k >= nm1;
  const float t = below ? 0.0f : above ? ttop : f;
  w[0] = __fsub_rn(1.0f, t);
  w[1] = t;
  return below ? (S)0 : above ? top : k;
}

/* The inputs of one voxel's step, loaded ahead of their use: the moments
 * (kAdamCompose; bfloat16 pairs packed m << 16 | v, one register per
 * component) or the step itself. */
template <int MODE, bool BF16>
struct StepIn {
  float a[3], b[3];
};
template <>
struct StepIn<kAdamCompose, true> {
  unsigned p[3];
};

template <int MODE, bool BF16>
__device__ __forceinline__ StepIn<MODE, BF16> step_load(const float *s, const AdamStep &as, long long i,
                                                        long long nvox) {
  StepIn<MODE, BF16> r;
#pragma unroll
  for (int q = 0; q < 3; ++q) {
    const long long k = i + q * nvox;
    if constexpr (MODE == kAdamCompose && BF16) {
      r.p[q] = (unsigned)((const uint16_t *)as.mom.m)[k] << 16 | (unsigned)((const uint16_t *)as.mom.v)[k];
    } else if constexpr (MODE == kAdamCompose) {
      r.a[q] = ((const float *)as.mom.m)[k];
      r.b[q] = ((const float *)as.mom.v)[k];
    } else {
      r.a[q] = MODE == kCompose ? s[k] : __ldcs(s + k);
      r.b[q] = 0.0f;
    }
  }
  return r;
}

/* s = scale * dir + 0, as axpy forms it from adam_direction's output */
template <int MODE, bool BF16>
__device__ __forceinline__ void step_form(const StepIn<MODE, BF16> &r, const AdamStep &as, float sv[3]) {
#pragma unroll
  for (int q = 0; q < 3; ++q) {
    if constexpr (MODE == kAdamCompose && BF16) {
      const float m = __uint_as_float(r.p[q] & 0xffff0000u), v = __uint_as_float(r.p[q] << 16);
      sv[q] = __fadd_rn(__fmul_rn(as.scale, adam_dir(as.r, m, v)), 0.0f);
    } else if constexpr (MODE == kAdamCompose) {
      sv[q] = __fadd_rn(__fmul_rn(as.scale, adam_dir(as.r, r.a[q], r.b[q])), 0.0f);
    } else {
      sv[q] = r.a[q];
    }
  }
}

/* The field rule's CLAMP stencil at (x, y, z) + L s: the lower corner's
 * offset (returned) and the float weights per axis. */
template <typename Idx>
__device__ __forceinline__ Idx field_cell(const FieldMap &fm, Idx x, Idx y, Idx z, const float sv[3], Idx nx,
                                          Idx nxy, float wx[2], float wy[2], float wz[2]) {
  using S = typename std::conditional<sizeof(Idx) == 4, int, long long>::type;
  const S ix = field_axis<S>((S)x, gr_field_offset(fm.Lf, sv[0], sv[1], sv[2]), (S)(fm.d.n[0] - 1), (S)fm.top[0],
                             fm.ttop[0], wx);
  const S iy = field_axis<S>((S)y, gr_field_offset(fm.Lf + 3, sv[0], sv[1], sv[2]), (S)(fm.d.n[1] - 1),
                             (S)fm.top[1], fm.ttop[1], wy);
  const S iz = field_axis<S>((S)z, gr_field_offset(fm.Lf + 6, sv[0], sv[1], sv[2]), (S)(fm.d.n[2] - 1),
                             (S)fm.top[2], fm.ttop[2], wz);
  return (Idx)iz * nxy + (Idx)iy * nx + (Idx)ix;
}

/* One thread per (x, y) column of a block's run of planes. The step inputs
 * of plane z + 1 (the moments, or s) are loaded at the start of plane z, so
 * their DRAM latency overlaps plane z's gather and arithmetic instead of
 * preceding plane z + 1's; the 24 corner loads of a plane are issued before
 * any is used. X1: the x stride is 1 (nx > 1), so the x + 1 corners are read
 * at an immediate offset from their x corner. */
template <int MODE, typename Idx, int MINB, bool BF16, bool X1>
__global__ void __launch_bounds__(kBlock, MINB)
    warp_field_kernel(const FieldMap fm, const float *__restrict__ u, const float *__restrict__ u1,
                      const float *__restrict__ u2, const float *s, const AdamStep as, float *out) {
  const Idx nx = (Idx)fm.d.n[0], ny = (Idx)fm.d.n[1], nxy = (Idx)fm.d.nxy;
  const Idx x = (Idx)(blockIdx.x * kBX + threadIdx.x), y = (Idx)(blockIdx.y * kBY + threadIdx.y);
  if (x >= nx || y >= ny) return;
  const long long nvox = fm.d.nvox;
  const Idx sx = (Idx)fm.st[0], sy = (Idx)fm.st[1], sz = (Idx)fm.st[2];
  Idx z = (Idx)(blockIdx.z * fm.zchunk);
  const Idx zend = (Idx)min(fm.d.n[2], (long long)(blockIdx.z + 1) * fm.zchunk);
  if (z >= zend) return;
  const Idx row = y * nx + x;
  const float *up[3] = {u, u1, u2}; /* u's planes: separate parameters, so each corner
                                        address is one multiply-add from its plane */
  float sv[3];
  StepIn<MODE, BF16> next = step_load<MODE, BF16>(s, as, (long long)(z * nxy + row), nvox);
  for (; z < zend; ++z) {
    const Idx i = z * nxy + row;
    step_form<MODE, BF16>(next, as, sv);
    if (z + 1 < zend) next = step_load<MODE, BF16>(s, as, (long long)((z + 1) * nxy + row), nvox);
    float wx[2], wy[2], wz[2], v[3][8];
    const Idx o = field_cell(fm, x, y, z, sv, nx, nxy, wx, wy, wz);
    if (X1) {
      /* x + 1 corners at an immediate offset from their x corner; one 32-bit
       * offset per (y, z) corner line, shared by the planes */
      const Idx oy = o + sy, oz = o + sz, oyz = oz + sy;
#pragma unroll
      for (int q = 0; q < 3; ++q) {
        const float *p00 = up[q] + o, *p01 = up[q] + oy, *p10 = up[q] + oz, *p11 = up[q] + oyz;
        v[q][0] = __ldg(p00);
        v[q][1] = __ldg(p00 + 1);
        v[q][2] = __ldg(p01);
        v[q][3] = __ldg(p01 + 1);
        v[q][4] = __ldg(p10);
        v[q][5] = __ldg(p10 + 1);
        v[q][6] = __ldg(p11);
        v[q][7] = __ldg(p11 + 1);
      }
    } else {
#pragma unroll
      for (int q = 0; q < 3; ++q) {
        const float *p = up[q];
        v[q][0] = __ldg(p + o);
        v[q][1] = __ldg(p + (o + sx));
        v[q][2] = __ldg(p + (o + sy));
        v[q][3] = __ldg(p + (o + sy + sx));
        v[q][4] = __ldg(p + (o + sz));
        v[q][5] = __ldg(p + (o + sz + sx));
        v[q][6] = __ldg(p + (o + sz + sy));
        v[q][7] = __ldg(p + (o + sz + sy + sx));
      }
    }
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      const float val = gr_tri_f(v[q], wx, wy, wz);
      out[(long long)i + q * nvox] = MODE == kNegSample ? -val : __fadd_rn(sv[q], val);
    }
  }
}

/* Register cap: 5 blocks of kBlock threads per SM (<= 48 registers, no
 * spills). At 512^3 on an H100 with bf16 moments, adam_compose took 2.36 ms
 * at 4 blocks (56 registers), 2.23 ms at 5 and 2.32 ms at 6 (40 registers). */
constexpr int kWarpMinBlocks = 5;

/* kCompose: out = s + u(x + s); kNegSample: out = -u(x + s) (one fixed-point
 * step of the inverse); kAdamCompose: kCompose with s formed from the moments
 * exactly as axpy forms it from adam_direction's output (scale * dir + 0, no
 * fused multiply-add). out may alias s (each voxel's s is read before that
 * voxel is written), never u. Each block walks a run of consecutive planes
 * (the corner planes of plane z + 1 are mostly those of plane z, still in L1);
 * 32-bit offsets below 2^32 voxels per plane and 2^30 samples per axis. */
template <int MODE, bool BF16>
static void launch_warp_field(const FieldMap &fm0, const float *u, const float *s, const AdamStep &as, float *out,
                              cudaStream_t stream) {
  FieldMap fm = fm0;
  dim3 grid = voxel_grid(fm.d.n);
  fm.zchunk = (fm.d.n[2] + grid.z - 1) / grid.z;
  grid.z = (unsigned)((fm.d.n[2] + fm.zchunk - 1) / fm.zchunk);
  const dim3 block(kBX, kBY);
  const long long nmax = fm.d.n[0] > fm.d.n[1] ? (fm.d.n[0] > fm.d.n[2] ? fm.d.n[0] : fm.d.n[2])
                                                : (fm.d.n[1] > fm.d.n[2] ? fm.d.n[1] : fm.d.n[2]);
  const float *u1 = u + fm.d.nvox, *u2 = u + 2 * fm.d.nvox;
  if (fm.d.nvox > 0xffffffffLL || nmax >= (1LL << 30))
    warp_field_kernel<MODE, long long, kWarpMinBlocks, BF16, false><<<grid, block, 0, stream>>>(fm, u, u1, u2, s, as,
                                                                                                out);
  else if (fm.st[0] == 1)
    warp_field_kernel<MODE, unsigned, kWarpMinBlocks, BF16, true><<<grid, block, 0, stream>>>(fm, u, u1, u2, s, as, out);
  else
    warp_field_kernel<MODE, unsigned, kWarpMinBlocks, BF16, false><<<grid, block, 0, stream>>>(fm, u, u1, u2, s, as,
                                                                                               out);
}

template <int MODE>
static void launch_warp_field(const FieldMap &fm, const float *u, const float *s, const AdamStep &as, float *out,
                              cudaStream_t stream) {
  if constexpr (MODE == kAdamCompose) {
    if (as.mom.bf16) {
      launch_warp_field<MODE, true>(fm, u, s, as, out, stream);
      return;
    }
  }
  launch_warp_field<MODE, false>(fm, u, s, as, out, stream);
}

__global__ void negate_kernel(const float *__restrict__ u, float *__restrict__ out, long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = -__ldg(u + i);
}

static gr_status check_grid(const gr_grid *g, const char *what) {
  if (!g) return gr_error(GR_ERR_INVALID_ARG, "%s: NULL grid", what);
  for (int a = 0; a < 3; ++a)
    if (g->n[a] < 1) return gr_error(GR_ERR_INVALID_ARG, "%s: grid size %lld along axis %d", what, (long long)g->n[a], a);
  return GR_OK;
}

gr_status compose(gr_backend *be, const gr_grid *g, const float *u, const float *s, float *out) {
  gr_status st = check_grid(g, "compose");
  if (st != GR_OK) return st;
  if (!u || !s || !out) return gr_error(GR_ERR_INVALID_ARG, "compose: NULL field");
  if (out == u) return gr_error(GR_ERR_INVALID_ARG, "compose: output must not alias u (it is sampled at moved points)");
  if ((st = enter(be)) != GR_OK) return st;
  const FieldMap fm = field_map(g);
  launch_warp_field<kCompose>(fm, u, s, AdamStep(), out, impl_of(be)->stream);
  GRCU_LAUNCHED("compose kernel");
  return GR_OK;
}

gr_status adam_compose(gr_backend *be, const gr_grid *g, gr_moments mom, double b1, double b2, double eps, int t,
                       float scale, const float *u, float *out) {
  gr_status st = check_grid(g, "adam_compose");
  if (st != GR_OK) return st;
  if (!mom.m || !mom.v || !u || !out) return gr_error(GR_ERR_INVALID_ARG, "adam_compose: NULL field");
  if (out == u || (void *)out == mom.m || (void *)out == mom.v)
    return gr_error(GR_ERR_INVALID_ARG, "adam_compose: output must not alias u, m or v");
  AdamStep as;
  if ((st = gr_adam_rule_make("adam_compose", b1, b2, eps, t, &as.r)) != GR_OK) return st;
  as.mom = mom;
  as.scale = scale;
  if ((st = enter(be)) != GR_OK) return st;
  const FieldMap fm = field_map(g);
  launch_warp_field<kAdamCompose>(fm, u, nullptr, as, out, impl_of(be)->stream);
  GRCU_LAUNCHED("adam_compose kernel");
  return GR_OK;
}

/* Jacobi fixed-point iteration v <- -u(y + v(y)) from v = -u, ping-ponging
 * between inv and one scratch field (an in-place update would depend on the
 * thread schedule). */
gr_status invert(gr_backend *be, const gr_grid *g, const float *u, float *inv, int iterations) {
  gr_status st = check_grid(g, "invert");
  if (st != GR_OK) return st;
  if (!u || !inv) return gr_error(GR_ERR_INVALID_ARG, "invert: NULL field");
  if (inv == u) return gr_error(GR_ERR_INVALID_ARG, "invert: output must not alias the input field");
  if (iterations < 0) return gr_error(GR_ERR_INVALID_ARG, "invert: %d iterations (must be >= 0)", iterations);
  if ((st = enter(be)) != GR_OK) return st;
  const FieldMap fm = field_map(g);
  const long long n = 3 * fm.d.nvox;
  cudaStream_t stream = impl_of(be)->stream;
  negate_kernel<<<flat_blocks(n), kBlock, 0, stream>>>(u, inv, n);
  GRCU_LAUNCHED("invert: negation kernel");
  if (iterations == 0) return GR_OK;
  float *tmp = (float *)scratch_alloc(be, (size_t)n * sizeof(float), "field inversion");
  if (!tmp) return GR_ERR_NOMEM;
  float *cur = inv, *next = tmp;
  cudaError_t e = cudaSuccess;
  for (int it = 0; it < iterations && e == cudaSuccess; ++it) {
    launch_warp_field<kNegSample>(fm, u, cur, AdamStep(), next, stream);
    e = cudaGetLastError();
    float *t = cur;
    cur = next;
    next = t;
  }
  if (e == cudaSuccess && cur != inv)
    e = cudaMemcpyAsync(inv, cur, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, stream);
  scratch_free(be, tmp);
  if (e != cudaSuccess) return device_error(e, "invert kernels");
  return GR_OK;
}

/* ---- Jacobian determinant ------------------------------------------------------------ */
struct DiffTaps {
  long long minus, plus; /* sample offsets along the axis */
  double inv_h;
};

__device__ __forceinline__ DiffTaps diff_at(long long i, long long n) {
  DiffTaps t = {0, 0, 0.0};
  if (n < 2) return t;
  t.minus = i > 0 ? -1 : 0;
  t.plus = i < n - 1 ? 1 : 0;
  t.inv_h = 1.0 / (double)(t.plus - t.minus);
  return t;
}

__global__ void __launch_bounds__(kBlock) jacobian_kernel(const FieldMap fm, const float *__restrict__ u,
                                                          float *__restrict__ out) {
  const long long x = (long long)blockIdx.x * kBX + threadIdx.x, y = (long long)blockIdx.y * kBY + threadIdx.y;
  if (x >= fm.d.n[0] || y >= fm.d.n[1]) return;
  const long long nx = fm.d.n[0], nxy = fm.d.nxy, nvox = fm.d.nvox;
  const DiffTaps tx = diff_at(x, nx), ty = diff_at(y, fm.d.n[1]);
  const double *L = fm.L;
  for (long long z = blockIdx.z; z < fm.d.n[2]; z += gridDim.z) {
    const DiffTaps tz = diff_at(z, fm.d.n[2]);
    const long long i = z * nxy + y * nx + x;
    double gi[9]; /* d u_c / d idx_j */
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const float *p = u + c * nvox + i;
      gi[c * 3 + 0] = dmul(dsub((double)__ldg(p + tx.plus), (double)__ldg(p + tx.minus)), tx.inv_h);
      gi[c * 3 + 1] = dmul(dsub((double)__ldg(p + ty.plus * nx), (double)__ldg(p + ty.minus * nx)), ty.inv_h);
      gi[c * 3 + 2] = dmul(dsub((double)__ldg(p + tz.plus * nxy), (double)__ldg(p + tz.minus * nxy)), tz.inv_h);
    }
    double J[9];
#pragma unroll
    for (int c = 0; c < 3; ++c)
#pragma unroll
      for (int k = 0; k < 3; ++k)
        J[c * 3 + k] = dadd(dadd(dadd(c == k ? 1.0 : 0.0, dmul(gi[c * 3], L[k])), dmul(gi[c * 3 + 1], L[3 + k])),
                            dmul(gi[c * 3 + 2], L[6 + k]));
    const double det = dadd(dsub(dmul(J[0], dsub(dmul(J[4], J[8]), dmul(J[5], J[7]))),
                                 dmul(J[1], dsub(dmul(J[3], J[8]), dmul(J[5], J[6])))),
                            dmul(J[2], dsub(dmul(J[3], J[7]), dmul(J[4], J[6]))));
    out[i] = (float)det;
  }
}

gr_status jacobian_det(gr_backend *be, const gr_grid *g, const float *u, float *out) {
  gr_status st = check_grid(g, "jacobian_det");
  if (st != GR_OK) return st;
  if (!u || !out) return gr_error(GR_ERR_INVALID_ARG, "jacobian_det: NULL field");
  if ((st = enter(be)) != GR_OK) return st;
  const FieldMap fm = field_map(g);
  jacobian_kernel<<<voxel_grid(fm.d.n), dim3(kBX, kBY), 0, impl_of(be)->stream>>>(fm, u, out);
  GRCU_LAUNCHED("jacobian_det kernel");
  return GR_OK;
}

}  // namespace grcu
