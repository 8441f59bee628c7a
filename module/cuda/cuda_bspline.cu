/* bspline_field and bspline_grad on the GPU (backend.h gr_bspline; the
 * arithmetic is module/src/kernels/bspline_eval.h, shared with cpu_bspline.c:
 * the field is bitwise the CPU's, the chain rule equal to rounding). Field: one
 * thread per voxel, 64 coefficient reads served by L1/L2 (the coefficient grid
 * is small). Chain rule: per B-spline cell like the CPU (each voxel visited
 * once per warp of its cell's block, not once per each of its 64 control
 * points), cell partials in scratch, then one sum per control point; see
 * bspline_cell_kernel. */
#include "cuda_ops.cuh"
#include "kernels/bspline_eval.h"

namespace grcu {

__global__ void __launch_bounds__(kBlock) bspline_field_kernel(const gr_bspline bs, long long nx, long long ny,
                                                               long long nz, float *__restrict__ u) {
  const long long x = (long long)blockIdx.x * kBX + threadIdx.x, y = (long long)blockIdx.y * kBY + threadIdx.y;
  if (x >= nx || y >= ny) return;
  const long long n = nx * ny * nz;
  for (long long z = blockIdx.z; z < nz; z += gridDim.z) {
    float o[3];
    gr_bs_field_at(&bs, x, y, z, o);
    const long long v = (z * ny + y) * nx + x;
    u[v] = o[0];
    u[n + v] = o[1];
    u[2 * n + v] = o[2];
  }
}

/* Chain rule, per B-spline cell (the CPU's structure, cpu_bspline.c), in two
 * passes:
 *  1. cell pass: block (cell s, part p) of 4 warps visits the voxels of the
 *     cell's bounding box (gr_bs_box_range(s + 1, s + 2), as the CPU) that lie
 *     in the cell (floor(c - 1) == s, valid region; the same bits as the CPU's
 *     test, gr_bs_index). Warp w holds the 16 x 3 partial sums of the control
 *     points with z offset w (4 x 4 in y, x); its 32 lanes take the box voxels
 *     p*32 + lane, then every S*32-th (S parts per cell, a function of the grid
 *     sizes alone). Each voxel's c, weights and gradient are computed by the 4
 *     warps (one visit per voxel per warp instead of 64 control-point visits);
 *     the weights are 6x the cubic weights as polynomials in the cell fraction
 *     (no division; the 1/216 is applied once per sum in pass 2). The lanes are
 *     reduced by a fixed xor-butterfly of shuffles and lane e % 32 writes the
 *     48 sums of its warp to the cell partials (192 doubles per (cell, part)).
 *  2. sum pass: control point q adds the partials of its 64 cells q - o
 *     (o_z, o_y, o_x increasing, parts increasing), times 1/216.
 * Deterministic: every sum's order is fixed by the grid sizes (gridDim only
 * strides over (cell, part) items, each summed wholly by one block); no
 * atomics. Equal to the CPU to rounding (the sums are ordered differently and
 * the weights are formed differently). */
constexpr int kCellThreads = 128; /* 4 warps: one per z offset of a cell's 4^3 control points */
constexpr int kCellTerms = 192;   /* 64 control points x 3 components per (cell, part) */
constexpr long long kMaxCellParts = 8, kVoxPerPart = 2048;

/* 6 x the cubic B-spline weights of control points s .. s + 3 at cell fraction
 * f = c - (s + 1) in [0, 1) (u = f + 1, f, 1 - f, 2 - f). */
__device__ __forceinline__ void bs_weights6(double f, double w[4]) {
  const double v = 1.0 - f, f2 = f * f, v2 = v * v;
  w[0] = v2 * v;
  w[1] = fma(f2, fma(3.0, f, -6.0), 4.0);
  w[2] = fma(v2, fma(3.0, v, -6.0), 4.0);
  w[3] = f2 * f;
}

__global__ void __launch_bounds__(kCellThreads, 3) bspline_cell_kernel(const gr_bspline bs, long long nx, long long ny,
                                                                   long long nz, const float *__restrict__ g, int S,
                                                                   long long items, double *__restrict__ part) {
  const int wz = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const long long n = nx * ny * nz, cx = bs.size[0] - 3, cy = bs.size[1] - 3;
  const int64_t grid_n[3] = {nx, ny, nz};
  for (long long item = blockIdx.x; item < items; item += gridDim.x) {
    const long long cell = item / S, p = item - cell * S;
    const int64_t s[3] = {cell % cx, (cell / cx) % cy, cell / (cx * cy)};
    int64_t lo[3], hi[3];
    const int64_t nbox = gr_bs_box_range(bs.iA, grid_n, s, 1.0, 2.0, lo, hi);
    double acc[48];
#pragma unroll
    for (int e = 0; e < 48; ++e) acc[e] = 0.0;
    if (nbox > 0) {
      const long long bx = hi[0] - lo[0] + 1, by = hi[1] - lo[1] + 1, bz = hi[2] - lo[2] + 1, bxy = bx * by;
      const long long stride = (long long)S * 32, di = stride % bx, dj = (stride / bx) % by, dk = stride / bxy;
      const long long t0 = p * 32 + lane;
      long long i = t0 % bx, j = (t0 / bx) % by, k = t0 / bxy;
      float g0 = 0.f, g1 = 0.f, g2 = 0.f;
      if (k < bz) {
        const long long v = ((lo[2] + k) * ny + lo[1] + j) * nx + lo[0] + i;
        g0 = __ldg(g + v);
        g1 = __ldg(g + n + v);
        g2 = __ldg(g + 2 * n + v);
      }
      while (k < bz) {
        const double vi = (double)(lo[0] + i), vj = (double)(lo[1] + j), vk = (double)(lo[2] + k);
        const double h0 = g0, h1 = g1, h2 = g2;
        /* next voxel of this lane, its gradient loaded ahead */
        i += di;
        if (i >= bx) { i -= bx; ++j; }
        j += dj;
        if (j >= by) { j -= by; ++k; }
        k += dk;
        if (k < bz) {
          const long long v = ((lo[2] + k) * ny + lo[1] + j) * nx + lo[0] + i;
          g0 = __ldg(g + v);
          g1 = __ldg(g + n + v);
          g2 = __ldg(g + 2 * n + v);
        }
        double c[3];
        if (!gr_bs_index(&bs, vi, vj, vk, c)) continue;
        const double e0 = floor(__dsub_rn(c[0], 1.0)), e1 = floor(__dsub_rn(c[1], 1.0)), e2 = floor(__dsub_rn(c[2], 1.0));
        if ((int64_t)e0 != s[0] || (int64_t)e1 != s[1] || (int64_t)e2 != s[2]) continue;
        double wx[4], wy[4], w3[4];
        bs_weights6(__dsub_rn(c[0], e0 + 1.0), wx);
        bs_weights6(__dsub_rn(c[1], e1 + 1.0), wy);
        bs_weights6(__dsub_rn(c[2], e2 + 1.0), w3);
        const double wzz = wz == 0 ? w3[0] : wz == 1 ? w3[1] : wz == 2 ? w3[2] : w3[3];
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          const double wzy = wzz * wy[b];
#pragma unroll
          for (int a = 0; a < 4; ++a) {
            const double ww = wzy * wx[a];
            acc[(b * 4 + a) * 3 + 0] = fma(ww, h0, acc[(b * 4 + a) * 3 + 0]);
            acc[(b * 4 + a) * 3 + 1] = fma(ww, h1, acc[(b * 4 + a) * 3 + 1]);
            acc[(b * 4 + a) * 3 + 2] = fma(ww, h2, acc[(b * 4 + a) * 3 + 2]);
          }
        }
      }
    }
    /* fixed butterfly: every lane ends with the same bits (x + y == y + x) */
#pragma unroll
    for (int e = 0; e < 48; ++e)
#pragma unroll
      for (int m = 16; m > 0; m >>= 1) acc[e] = __dadd_rn(acc[e], __shfl_xor_sync(0xffffffffu, acc[e], m));
    double *out = part + item * kCellTerms;
#pragma unroll
    for (int e = 0; e < 48; ++e)
      if (lane == (e & 31)) out[(e % 3) * 64 + wz * 16 + e / 3] = acc[e];
  }
}

__global__ void __launch_bounds__(kBlock) bspline_sum_kernel(long long sx, long long sy, long long sz, int S,
                                                             const double *__restrict__ part, double *__restrict__ dcoef) {
  const long long G = sx * sy * sz, cx = sx - 3, cy = sy - 3, cz = sz - 3;
  for (long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x; q < G; q += (long long)gridDim.x * blockDim.x) {
    const long long qx = q % sx, qy = (q / sx) % sy, qz = q / (sx * sy);
    double d[3] = {0.0, 0.0, 0.0};
    for (int oz = 0; oz < 4; ++oz)
      for (int oy = 0; oy < 4; ++oy)
        for (int ox = 0; ox < 4; ++ox) {
          const long long ex = qx - ox, ey = qy - oy, ez = qz - oz;
          if (ex < 0 || ey < 0 || ez < 0 || ex >= cx || ey >= cy || ez >= cz) continue;
          const double *pp = part + ((ez * cy + ey) * cx + ex) * S * kCellTerms + (oz * 4 + oy) * 4 + ox;
          for (int p = 0; p < S; ++p, pp += kCellTerms)
#pragma unroll
            for (int r = 0; r < 3; ++r) d[r] = dadd(d[r], pp[r * 64]);
        }
#pragma unroll
    for (int r = 0; r < 3; ++r) dcoef[r * G + q] = dmul(d[r], 1.0 / 216.0);
  }
}

gr_status bspline_field(gr_backend *be, const gr_grid *g, const gr_bspline *bs, float *u) {
  gr_status st = gr_bs_check(g, bs, u, u, "bspline_field", 1);
  if (st == GR_OK) st = enter(be);
  if (st != GR_OK) return st;
  const long long n[3] = {g->n[0], g->n[1], g->n[2]};
  bspline_field_kernel<<<voxel_grid(n), dim3(kBX, kBY), 0, impl_of(be)->stream>>>(*bs, n[0], n[1], n[2], u);
  GRCU_LAUNCHED("bspline_field kernel");
  return GR_OK;
}

gr_status bspline_grad(gr_backend *be, const gr_grid *g, const gr_bspline *bs, const float *grad_u, double *dcoef) {
  gr_status st = gr_bs_check(g, bs, grad_u, dcoef, "bspline_grad", 0);
  if (st == GR_OK) st = enter(be);
  if (st != GR_OK) return st;
  const long long G = bs->size[0] * bs->size[1] * bs->size[2];
  const long long cells = (bs->size[0] - 3) * (bs->size[1] - 3) * (bs->size[2] - 3);
  const long long n = g->n[0] * g->n[1] * g->n[2];
  /* parts per cell: from the grid sizes alone (~2048 voxels a part, at most 8) */
  long long S = (n / cells + kVoxPerPart - 1) / kVoxPerPart;
  S = S < 1 ? 1 : (S > kMaxCellParts ? kMaxCellParts : S);
  const long long items = cells * S;
  double *part = (double *)scratch_alloc(be, sizeof(double) * kCellTerms * (size_t)items, "bspline_grad cell partials");
  if (!part) return GR_ERR_NOMEM;
  cudaStream_t s = impl_of(be)->stream;
  const unsigned cblocks = (unsigned)(items < (1ll << 20) ? items : (1ll << 20));
  bspline_cell_kernel<<<cblocks, kCellThreads, 0, s>>>(*bs, g->n[0], g->n[1], g->n[2], grad_u, (int)S, items, part);
  const cudaError_t e1 = cudaGetLastError();
  if (e1 == cudaSuccess)
    bspline_sum_kernel<<<flat_blocks(G), kBlock, 0, s>>>(bs->size[0], bs->size[1], bs->size[2], (int)S, part, dcoef);
  scratch_free(be, part); /* stream-ordered reuse: safe (cuda_common.cuh, the pool) */
  if (e1 != cudaSuccess) return device_error(e1, "bspline_grad cell kernel");
  GRCU_LAUNCHED("bspline_grad sum kernel");
  return GR_OK;
}

}  // namespace grcu
