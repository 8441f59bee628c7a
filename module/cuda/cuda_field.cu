/* Displacement-field kernels: compose, invert, jacobian_det (cpu_field.c
 * semantics) and adam_compose (the fused update's compose). Fields are 3 planes of mm displacements on grid g; sample
 * positions are idx + p2i_lin * s(x) (no round trip through mm). One thread per
 * voxel, arithmetic as the CPU's (bitwise equal results).
 * compose/invert sample u with CLAMP (the border value extends); the 8-corner
 * stencil is computed once and shared by the three planes. */
#include "cuda_adam.cuh"
#include "cuda_ops.cuh"

namespace grcu {

/* Register cap for warp_field_kernel: at least 4 blocks of kBlock threads per
 * SM (<= 64 registers). Left free, nvcc gives the kernel 96 registers since
 * the Adam rule runs in float (2 blocks per SM), and the latency-bound compose
 * loses occupancy: 512^3 on an H100, adam_compose 4.58 ms uncapped, 4.11 ms at
 * 4 blocks (64 registers, no spills), 6.94 ms at 6 (40 registers, spills). */
constexpr int kWarpMinBlocks = 4;

struct FieldMap {
  Dims d;
  double L[9]; /* linear part of p2i */
};

static FieldMap field_map(const gr_grid *g) {
  FieldMap f;
  f.d = dims_of(g);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) f.L[r * 3 + c] = g->p2i[r * 4 + c];
  return f;
}

/* The step of the fused update (adam_compose): s = scale * Adam direction. */
struct AdamStep {
  AdamRule r;
  gr_moments mom;
  float scale;
};

enum WarpMode { kCompose = 0, kNegSample = 1, kAdamCompose = 2 };

/* kCompose: out = s + u(x + s); kNegSample: out = -u(x + s) (one fixed-point
 * step of the inverse); kAdamCompose: kCompose with s formed from the moments
 * exactly as axpy forms it from adam_direction's output (scale * dir + 0, no
 * fused multiply-add). out may alias s (each thread reads its own voxel of s
 * before writing it), never u. */
template <int MODE>
__global__ void __launch_bounds__(kBlock, kWarpMinBlocks)
    warp_field_kernel(const FieldMap fm, const float *__restrict__ u, const float *s, const AdamStep as, float *out) {
  const long long x = (long long)blockIdx.x * kBX + threadIdx.x, y = (long long)blockIdx.y * kBY + threadIdx.y;
  if (x >= fm.d.n[0] || y >= fm.d.n[1]) return;
  const long long nvox = fm.d.nvox;
  for (long long z = blockIdx.z; z < fm.d.n[2]; z += gridDim.z) {
    const long long i = z * fm.d.nxy + y * fm.d.n[0] + x;
    double sv[3];
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      const long long k = i + q * nvox;
      sv[q] = MODE == kAdamCompose
                  ? (double)__fadd_rn(__fmul_rn(as.scale, adam_dir_at(as.r, as.mom, k)), 0.0f)
                  : (double)s[k];
    }
    const double s0 = sv[0], s1 = sv[1], s2 = sv[2];
    const double c[3] = {dadd(dadd(dadd((double)x, dmul(fm.L[0], s0)), dmul(fm.L[1], s1)), dmul(fm.L[2], s2)),
                         dadd(dadd(dadd((double)y, dmul(fm.L[3], s0)), dmul(fm.L[4], s1)), dmul(fm.L[5], s2)),
                         dadd(dadd(dadd((double)z, dmul(fm.L[6], s0)), dmul(fm.L[7], s1)), dmul(fm.L[8], s2))};
    Axis a[3];
#pragma unroll
    for (int k = 0; k < 3; ++k) axis_clamp(c[k], fm.d.n[k], a[k]);
    const Corners o = tri_offsets(a, fm.d.n[0], fm.d.nxy);
    const double u0 = tri_value_at(u, o, a), u1 = tri_value_at(u + nvox, o, a), u2 = tri_value_at(u + 2 * nvox, o, a);
    if (MODE == kNegSample) {
      out[i] = (float)-u0;
      out[i + nvox] = (float)-u1;
      out[i + 2 * nvox] = (float)-u2;
    } else {
      out[i] = (float)dadd(s0, u0);
      out[i + nvox] = (float)dadd(s1, u1);
      out[i + 2 * nvox] = (float)dadd(s2, u2);
    }
  }
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
  warp_field_kernel<kCompose><<<voxel_grid(fm.d.n), dim3(kBX, kBY), 0, impl_of(be)->stream>>>(fm, u, s, AdamStep(), out);
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
  warp_field_kernel<kAdamCompose><<<voxel_grid(fm.d.n), dim3(kBX, kBY), 0, impl_of(be)->stream>>>(fm, u, nullptr, as,
                                                                                                 out);
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
    warp_field_kernel<kNegSample><<<voxel_grid(fm.d.n), dim3(kBX, kBY), 0, stream>>>(fm, u, cur, AdamStep(), next);
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
