/* LNCC fast path (the default CUDA LNCC for radius 1..4): fp32 storage and
 * arithmetic, the semantics of cpu_lncc.c (zero-padded warp, in-grid windows,
 * eps = 1e-5, masks with the valid count N, value / grad_u / affine variants,
 * the exact gradient
 *   dL/dW(z) = -(1/N) [ f(z) Sa(z) - Sam(z) - w(z) Sb(z) + Sbm(z) ]
 * with Sa, Sam, Sb, Sbm the window sums of alpha, alpha mu_f, beta, beta mu_w).
 * cuda_lncc.cu dispatches here; GIGAREG_CUDA_LNCC=double selects the older
 * double kernel there, GIGAREG_CUDA_EXACT=1 the bitwise-CPU path
 * (cuda_metric.cu).
 *
 * Two kernels:
 *  1) lncc_warp_kernel<MASKS, float> (cuda_lncc_warp.cuh): W(x) = moving(y(x)) (trilinear, ZERO padding,
 *     evaluated in double as cuda_common.cuh does, stored as float); with
 *     masks a validity byte and N (integer atomics).
 *  2) lncc_fast_kernel<r, GRAD_U, AFF, BIG>: one block owns a 32 x TY column of
 *     output voxels and a chunk of z and marches through the planes. Per
 *     plane step pw (4 block barriers with a gradient, 2 for the value only):
 *       a) running z-window sums of f, w, f^2, w^2, f w on the
 *          (32+4r) x (TY+4r) halo tile, in double in shared memory (the
 *          products of two floats are exact in double, so adding plane pw and
 *          subtracting plane pw-2r-1 leaves no drift), and a float copy;
 *       b) plane pa = pw - r: y- then x-box sums (fixed 2r+1 taps over the
 *          zero-padded tile, so border windows are the in-grid windows), cc
 *          and the four alpha fields in float;
 *       c) y- and x-box sums of the alpha fields; each thread keeps the
 *          xy-sums of its output column for the last 2r+1 planes in a
 *          register ring, whose sum is the z-box sum for output plane
 *          po = pw - 2r; the gradient formula; grad W by one gather.
 *     The statistics use the unshifted intensities: where W (zero padding)
 *     or F is exactly 0 over a window, A and C (or B) are then exactly 0 as
 *     in the CPU's double sums, which matters because D = B C + eps makes
 *     alpha = 2A/D amplify any rounding in A by 1/eps = 1e5 in flat windows
 *     (a block-constant shift of the statistics, tried first, broke exactly
 *     that: 1e-2 relative L2 in grad_u on the oblique T1/PD pair). The
 *     gradient assembly uses f - cf, w - cw and mu - c with one constant per
 *     block (f and W at one voxel of the block), an identity
 *       f Sa - Sam = (f - cf) Sa - sum alpha (mu_f - cf)
 *     that makes the two terms cancel far less in float.
 *
 * Precision: W is rounded to float (the CPU keeps it in double), the xy box
 * sums, the statistics and the alpha fields are float (relative rounding
 * ~(2r+1) * 6e-8 per sum, amplified by the cancellation in A, B, C by
 * (var + mean^2) / var), the z-window sums are double, the value and affine
 * sums are accumulated in double per thread and reduced per block in a fixed
 * order (deterministic, no float atomics). Measured against the CPU on the
 * test_cuda_vs_cpu pairs (H100): value 6e-8..1.8e-5 relative, grad_u
 * 2.4e-6..9.5e-5 relative L2, grad_affine 1.4e-7..5.7e-5.
 *
 * Speed (H100, 512^3, r = 3): 15.1 ms for both kernels (2.5 warp + 12.6
 * fused) against 27.0 ms for the double kernel (batching the running-sum
 * loads of step a gave ~2.5%; GIGAREG_CUDA_LNCC_NOBATCH=1 turns it off, and
 * GIGAREG_CUDA_LNCC_TY forces the tile height); the fused kernel is latency
 * bound (long-scoreboard stalls on the L2 re-reads and the gradient gather,
 * then shared-memory and barrier stalls), see docs/performance.md.
 *
 * Traffic per voxel (DRAM, compulsory): kernel 1 u 12 + moving gather ~4 +
 * W 4 (+ fixed mask 4 + V 1 with masks); kernel 2 F 4 + W 4 + u 12 + moving
 * gather ~4 + grad_u 12 (halo re-reads and the old-plane re-reads of the
 * running sums hit L2): ~56 B/voxel (the double kernel: 64).
 * Extra memory: W 4 B/voxel (+1 validity byte with masks), 13 doubles per
 * block; nothing else at full resolution (the double kernel: 8 B/voxel). */
#include <stdlib.h>
#include <string.h>
#include "cuda_lncc_warp.cuh"
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

constexpr float kFastEps = 1e-5f;
constexpr int kFastTX = 32;
constexpr int kFastK = 13; /* sum cc + 12 affine */
constexpr int kFastMaxThreads = 512;
constexpr int kFastBatch = 3; /* halo positions per thread with their loads batched (E2 <= 3 x 512 for TY = 16, r <= 4) */

/* ---- kernel 2 ------------------------------------------------------------------------- */
struct FastArgs {
  WarpMap map;
  const float *fixed, *moving, *disp, *W;
  const unsigned char *V;          /* validity (masks only) */
  const unsigned long long *count; /* device N (masks only) */
  double inv_n;                    /* 1/N when there are no masks */
  float *grad_u;
  int TY;
  int batch;        /* batch the running-sum loads (default; GIGAREG_CUDA_LNCC_NOBATCH=1: one position at a time) */
  long long zchunk; /* output planes per block */
};

/* Dynamic shared memory, in this order:
 *   ZD  5 x E2 doubles   running z-window sums (E2 = (32+4r) x (TY+4r))
 *   ZF  5 x E2 floats    their float copy (zero outside the grid)
 *   YS  5 x WX x AY      y-sums (reused: 4 x AX x TY alpha y-sums)
 *   AL  4 x AX x AY      alpha fields (gradient only) */
static size_t fast_smem_bytes(int r, int TY, bool grad) {
  const size_t WX = kFastTX + 4 * r, WY = TY + 4 * r, AX = kFastTX + 2 * r, AY = TY + 2 * r, E2 = WX * WY;
  return 8 * 5 * E2 + 4 * (5 * E2 + 5 * WX * AY + (grad ? 4 * AX * AY : 0));
}

__device__ __forceinline__ long long fwin_lo(long long i, int r) { return i - r < 0 ? 0 : i - r; }
__device__ __forceinline__ long long fwin_hi(long long i, int r, long long n) { return i + r > n - 1 ? n - 1 : i + r; }

/* Running z-window sums at halo-tile position e: add the new plane's (f, w),
 * subtract the old plane's (fo, wo); double sums of exact float products. */
__device__ __forceinline__ void zsum_update(double *ZD, float *ZF, int E2, int e, float f, float w, float fo, float wo) {
  const double fv = f, wv = w, fov = fo, wov = wo;
  double s0 = ZD[e], s1 = ZD[E2 + e], s2 = ZD[2 * E2 + e], s3 = ZD[3 * E2 + e], s4 = ZD[4 * E2 + e];
  s0 += fv;
  s1 += wv;
  s2 += fv * fv;
  s3 += wv * wv;
  s4 += fv * wv;
  s0 -= fov;
  s1 -= wov;
  s2 -= fov * fov;
  s3 -= wov * wov;
  s4 -= fov * wov;
  ZD[e] = s0;
  ZD[E2 + e] = s1;
  ZD[2 * E2 + e] = s2;
  ZD[3 * E2 + e] = s3;
  ZD[4 * E2 + e] = s4;
  ZF[e] = (float)s0;
  ZF[E2 + e] = (float)s1;
  ZF[2 * E2 + e] = (float)s2;
  ZF[3 * E2 + e] = (float)s3;
  ZF[4 * E2 + e] = (float)s4;
}

/* BIG: 32 x 16 threads, two blocks per SM (64 registers); else 32 x TY <= 256
 * threads, three blocks per SM (85 registers: fewer spills around the gather). */
template <int RAD, bool GRAD_U, bool AFF, bool BIG>
__global__ void __launch_bounds__(BIG ? kFastMaxThreads : kFastMaxThreads / 2, BIG ? 2 : 3)
    lncc_fast_kernel(const FastArgs a, double *__restrict__ part) {
  constexpr bool GRAD = GRAD_U || AFF;
  constexpr int r = RAD, R = 2 * RAD + 1, WX = kFastTX + 4 * RAD, AX = kFastTX + 2 * RAD;
  extern __shared__ double smem[];
  const int TY = a.TY, WY = TY + 4 * r, AY = TY + 2 * r;
  const int E2 = WX * WY, nys = WX * AY, na = AX * AY, nay = AX * TY;
  const int tid = threadIdx.x, nthr = blockDim.x; /* nthr == 32 * TY */
  const long long nx = a.map.f.n[0], ny = a.map.f.n[1], nz = a.map.f.n[2];
  const long long nxy = a.map.f.nxy;
  const long long x0 = (long long)blockIdx.x * kFastTX, y0 = (long long)blockIdx.y * TY;
  const long long z0 = (long long)blockIdx.z * a.zchunk;
  const long long z1 = z0 + a.zchunk < nz ? z0 + a.zchunk : nz;
  const long long ex0 = x0 - 2 * r, ey0 = y0 - 2 * r; /* grid coordinates of halo tile (0,0) */
  const long long ax0 = x0 - r, ay0 = y0 - r;         /* of the statistics tile */

  double *ZD = smem;
  float *ZF = reinterpret_cast<float *>(ZD + 5 * E2);
  float *YS = ZF + 5 * E2;
  float *AL = YS + 5 * nys;
  float *AYS = YS; /* 4 x AX x TY, after the x-sums have consumed YS */

  for (int e = tid; e < 5 * E2; e += nthr) {
    ZD[e] = 0.0;
    ZF[e] = 0.0f;
  }

  /* the block's shift: f and W at one voxel of the block */
  const long long cxi = x0 + kFastTX / 2 < nx ? x0 + kFastTX / 2 : nx - 1;
  const long long cyi = y0 + TY / 2 < ny ? y0 + TY / 2 : ny - 1;
  const long long cvo = z0 * nxy + cyi * nx + cxi;
  const float cf = __ldg(a.fixed + cvo), cw = __ldg(a.W + cvo);

  double inv_N = a.inv_n;
  if (a.count) {
    const unsigned long long n = *a.count;
    inv_N = n ? 1.0 / (double)n : 0.0;
  }
  double acc[kFastK];
#pragma unroll
  for (int q = 0; q < kFastK; ++q) acc[q] = 0.0;

  const int ox = tid % kFastTX, oy = tid / kFastTX;
  const long long gxo = x0 + ox, gyo = y0 + oy;
  const bool out_in = gxo < nx && gyo < ny;
  float ring[R][4]; /* xy-box sums of the alpha fields at planes pw-3r .. pw-r */
#pragma unroll
  for (int k = 0; k < R; ++k)
#pragma unroll
    for (int q = 0; q < 4; ++q) ring[k][q] = 0.0f;

  const long long pa_lo = GRAD ? (z0 - r > 0 ? z0 - r : 0) : z0;
  const long long pa_hi = GRAD ? (z1 + r < nz ? z1 + r : nz) : z1;
  const long long pw_begin = pa_lo - r > 0 ? pa_lo - r : 0;
  const long long pw_end = GRAD ? z1 - 1 + 2 * r : z1 - 1 + r;
  __syncthreads();

  for (long long pw = pw_begin; pw <= pw_end; ++pw) {
    /* a) running z-window sums (ZD holds planes pw-2r .. pw afterwards) */
    const long long pold = pw - R;
    const bool add = pw < nz, sub = pold >= pw_begin;
    if (add || sub) {
      /* The first kFastBatch positions of this thread: all their loads (new
       * plane and, for the subtraction, old plane) are issued before any
       * use, so one L2 round trip covers them; values of a disabled add or
       * subtract are 0, which leaves the sums bitwise unchanged. */
      const float *fn = a.fixed + pw * nxy, *wn = a.W + pw * nxy;
      const float *fo = a.fixed + pold * nxy, *wo = a.W + pold * nxy;
      const int kb = a.batch ? kFastBatch : 0;
      if (a.batch) {
        float nf[kFastBatch], nw[kFastBatch], of[kFastBatch], ow[kFastBatch];
        long long oo[kFastBatch];
#pragma unroll
        for (int k = 0; k < kFastBatch; ++k) {
          const int e = tid + k * nthr;
          const int ey = e / WX;
          const long long gx = ex0 + (e - ey * WX), gy = ey0 + ey;
          const bool in = e < E2 && gx >= 0 && gx < nx && gy >= 0 && gy < ny;
          oo[k] = in ? gy * nx + gx : -1;
          nf[k] = in && add ? __ldg(fn + oo[k]) : 0.0f;
          nw[k] = in && add ? __ldg(wn + oo[k]) : 0.0f;
          of[k] = in && sub ? __ldg(fo + oo[k]) : 0.0f;
          ow[k] = in && sub ? __ldg(wo + oo[k]) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < kFastBatch; ++k)
          if (oo[k] >= 0) zsum_update(ZD, ZF, E2, tid + k * nthr, nf[k], nw[k], of[k], ow[k]);
      }
      for (int e = tid + kb * nthr; e < E2; e += nthr) { /* the rest (small tiles, or no batching) */
        const int ey = e / WX;
        const long long gx = ex0 + (e - ey * WX), gy = ey0 + ey;
        if (gx < 0 || gx >= nx || gy < 0 || gy >= ny) continue;
        const long long o = gy * nx + gx;
        zsum_update(ZD, ZF, E2, e, add ? __ldg(fn + o) : 0.0f, add ? __ldg(wn + o) : 0.0f, sub ? __ldg(fo + o) : 0.0f,
                    sub ? __ldg(wo + o) : 0.0f);
      }
    }
    __syncthreads();

    /* b) statistics of plane pa */
    const long long pa = pw - r;
    float al_new[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (pa >= pa_lo && pa < pa_hi) {
      for (int e = tid; e < nys; e += nthr) {
        const int ay = e / WX, exx = e - ay * WX;
        float s[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int d = 0; d < R; ++d) {
          const int row = (ay + d) * WX + exx;
#pragma unroll
          for (int q = 0; q < 5; ++q) s[q] += ZF[q * E2 + row];
        }
#pragma unroll
        for (int q = 0; q < 5; ++q) YS[q * nys + e] = s[q];
      }
      __syncthreads();
      const int ncz = (int)(fwin_hi(pa, r, nz) - fwin_lo(pa, r) + 1);
      for (int e = tid; e < na; e += nthr) {
        const int ay = e / AX, ax = e - ay * AX;
        const long long gx = ax0 + ax, gy = ay0 + ay;
        float al[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (gx >= 0 && gx < nx && gy >= 0 && gy < ny) {
          float S[5] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
          const int base = ay * WX + ax;
#pragma unroll
          for (int d = 0; d < R; ++d)
#pragma unroll
            for (int q = 0; q < 5; ++q) S[q] += YS[q * nys + base + d];
          const int ncx = (int)(fwin_hi(gx, r, nx) - fwin_lo(gx, r) + 1);
          const int ncy = (int)(fwin_hi(gy, r, ny) - fwin_lo(gy, r) + 1);
          const float inv_nw = 1.0f / (float)(ncx * ncy * ncz);
          const float mf = S[0] * inv_nw, mw = S[1] * inv_nw;
          const float A = fmaf(-S[0], mw, S[4]);
          const float Bt = fmaf(-S[0], mf, S[2]), Ct = fmaf(-S[1], mw, S[3]);
          const float B = Bt > 0.0f ? Bt : 0.0f, C = Ct > 0.0f ? Ct : 0.0f;
          const float inv_d = 1.0f / fmaf(B, C, kFastEps);
          bool ok = true;
          if (a.V) ok = a.V[pa * nxy + gy * nx + gx] != 0;
          const bool owned = ax >= r && ax < r + kFastTX && ay >= r && ay < r + TY && pa >= z0 && pa < z1;
          if (ok && owned) acc[0] += (double)(A * A * inv_d);
          if (GRAD) {
            const float alpha = ok ? 2.0f * A * inv_d : 0.0f;
            const float beta = alpha * A * B * inv_d; /* 2 A^2 B / D^2 */
            al[0] = alpha;
            al[1] = alpha * (mf - cf); /* the block's shift: see the file header */
            al[2] = beta;
            al[3] = beta * (mw - cw);
          }
        }
        if (GRAD) {
#pragma unroll
          for (int q = 0; q < 4; ++q) AL[q * na + e] = al[q];
        }
      }
      if (GRAD) {
        __syncthreads();
        /* c) y-sums of the alpha fields on AX x TY, then x-sums of this thread's output column */
        for (int e = tid; e < nay; e += nthr) {
          const int oyy = e / AX, ax = e - oyy * AX;
          float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
          for (int d = 0; d < R; ++d) {
            const int row = (oyy + d) * AX + ax;
#pragma unroll
            for (int q = 0; q < 4; ++q) s[q] += AL[q * na + row];
          }
#pragma unroll
          for (int q = 0; q < 4; ++q) AYS[q * nay + e] = s[q];
        }
        __syncthreads();
        const int base = oy * AX + ox;
#pragma unroll
        for (int d = 0; d < R; ++d)
#pragma unroll
          for (int q = 0; q < 4; ++q) al_new[q] += AYS[q * nay + base + d];
      }
    }
    /* No barrier at the end of the step: the next step's first barrier (after
     * a) separates this step's reads of YS/AYS/AL from the next writes. */

    if (GRAD) {
#pragma unroll
      for (int k = 0; k < R - 1; ++k)
#pragma unroll
        for (int q = 0; q < 4; ++q) ring[k][q] = ring[k + 1][q];
#pragma unroll
      for (int q = 0; q < 4; ++q) ring[R - 1][q] = al_new[q];
      const long long po = pw - 2 * r;
      if (po >= z0 && po < z1 && out_in) {
        float S[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < R; ++k)
#pragma unroll
          for (int q = 0; q < 4; ++q) S[q] += ring[k][q];
        const long long v = po * nxy + gyo * nx + gxo;
        const double f = (double)(__ldg(a.fixed + v) - cf), w = (double)(__ldg(a.W + v) - cw);
        const double dw = -inv_N * (f * (double)S[0] - (double)S[1] - w * (double)S[2] + (double)S[3]);
        double c[3], gi[3], gp[3];
        metric_index(a.map, a.disp, gxo, gyo, po, v, c);
        (void)sample_linear_grad_zero(a.moving, a.map.m, c, gi);
        grad_idx_to_phys(a.map.P, gi, gp);
        const double d[3] = {dw * (double)(float)gp[0], dw * (double)(float)gp[1], dw * (double)(float)gp[2]};
        if (GRAD_U) grad_u_store(a.map, a.grad_u, v, d);
        if (AFF) {
          double x[3];
          metric_xphys(a.map, a.disp, gxo, gyo, po, v, x);
          affine_accum(acc + 1, d, x);
        }
      }
    }
  }
  block_sum_to_partials<kFastK>(acc, part);
}

/* ---- host ------------------------------------------------------------------------------ */
template <int RAD, bool G, bool A>
static gr_status fast_launch_t(const FastArgs *args, dim3 grid, int threads, size_t smem, cudaStream_t st,
                               double *part, int *occ) {
  auto kern = threads > kFastMaxThreads / 2 ? lncc_fast_kernel<RAD, G, A, true> : lncc_fast_kernel<RAD, G, A, false>;
  GRCU_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  if (occ) {
    GRCU_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(occ, kern, threads, smem));
    return GR_OK;
  }
  kern<<<grid, threads, smem, st>>>(*args, part);
  GRCU_LAUNCHED("LNCC fast kernel");
  return GR_OK;
}

template <int RAD>
static gr_status fast_launch_r(bool gu, bool aff, const FastArgs *args, dim3 grid, int threads, size_t smem,
                               cudaStream_t st, double *part, int *occ) {
  if (gu && aff) return fast_launch_t<RAD, true, true>(args, grid, threads, smem, st, part, occ);
  if (gu) return fast_launch_t<RAD, true, false>(args, grid, threads, smem, st, part, occ);
  if (aff) return fast_launch_t<RAD, false, true>(args, grid, threads, smem, st, part, occ);
  return fast_launch_t<RAD, false, false>(args, grid, threads, smem, st, part, occ);
}

/* occ != NULL: only the occupancy query (blocks per SM into *occ). */
static gr_status fast_launch(int r, bool gu, bool aff, const FastArgs *args, dim3 grid, int threads, size_t smem,
                             cudaStream_t st, double *part, int *occ) {
  switch (r) {
    case 1: return fast_launch_r<1>(gu, aff, args, grid, threads, smem, st, part, occ);
    case 2: return fast_launch_r<2>(gu, aff, args, grid, threads, smem, st, part, occ);
    case 3: return fast_launch_r<3>(gu, aff, args, grid, threads, smem, st, part, occ);
    default: return fast_launch_r<4>(gu, aff, args, grid, threads, smem, st, part, occ);
  }
}

bool lncc_fast_supported(int r) { return r >= 1 && r <= 4; }

gr_status metric_lncc_fast(const MetricCall &c, gr_metric_result *res) {
  gr_backend *be = c.be;
  Impl *imp = impl_of(be);
  cudaStream_t st = imp->stream;
  const int r = c.spec->lncc_radius > 0 ? c.spec->lncc_radius : 2;
  const bool gu = c.im.grad_u != nullptr, grad = gu || c.want_affine;
  const bool masks = c.im.fmask || c.im.mmask;
  const long long nvox = c.map.f.nvox;

  /* Tile height: among those whose shared memory fits, the most useful
   * resident threads per SM (threads x output/halo-tile ratio), with a bonus
   * for two or more resident blocks (their barrier phases interleave).
   * Cached per backend (keys 1000 + ... beside the double kernel's). */
  const size_t static_smem = 32 * kFastK * sizeof(double) + 256;
  const size_t limit = imp->smem_optin > static_smem ? imp->smem_optin - static_smem : 0;
  int TY = 0;
  size_t smem = 0;
  const char *force_ty = getenv("GIGAREG_CUDA_LNCC_TY"); /* 16, 8, 4 or 2: for measurements */
  const int only_ty = force_ty ? atoi(force_ty) : 0;
  const int tile_key = 1000 + 100 * only_ty + r * 8 + (gu ? 4 : 0) + (c.want_affine ? 2 : 0);
  const bool cached = lncc_tile_cached(imp, tile_key, &TY, &smem);
  double best = 0.0;
  for (int ty = kFastMaxThreads / kFastTX; ty >= 2 && !cached; ty /= 2) {
    if (only_ty && ty != only_ty) continue;
    const size_t b = fast_smem_bytes(r, ty, grad);
    if (b > limit) continue;
    int blocks = 0;
    if (fast_launch(r, gu, c.want_affine, nullptr, dim3(1), kFastTX * ty, b, st, nullptr, &blocks) != GR_OK)
      return GR_ERR_DEVICE;
    const double halo = (double)(kFastTX + 4 * r) * (ty + 4 * r);
    const double score = (double)blocks * kFastTX * ty * ((double)kFastTX * ty / halo) * (blocks >= 2 ? 1.25 : 1.0);
    if (blocks > 0 && score > best) {
      best = score;
      TY = ty;
      smem = b;
    }
  }
  if (!TY)
    return gr_error(GR_ERR_UNSUPPORTED, "cuda LNCC (fast): radius %d needs %zu bytes of shared memory per block (device offers %zu)",
                    r, fast_smem_bytes(r, 2, grad), limit);
  if (!cached) lncc_tile_store(imp, tile_key, TY, smem);

  LnccLaunch L;
  gr_status s =
      lncc_launch_begin(c, r, kFastTX, TY, 4, kFastK, masks, "LNCC warped image (float) and partials", &L);
  float *W = (float *)L.W;
  if (s == GR_OK) {
    const dim3 vgrid = voxel_grid(c.map.f.n), vblock(kBX, kBY);
    if (masks) lncc_warp_kernel<true, float><<<vgrid, vblock, 0, st>>>(c.map, c.im, W, L.V, L.count);
    else lncc_warp_kernel<false, float><<<vgrid, vblock, 0, st>>>(c.map, c.im, W, L.V, L.count);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) s = device_error(e, "LNCC fast warp kernel");
  }

  if (s == GR_OK) {
    FastArgs args;
    args.map = c.map;
    args.fixed = c.im.fixed;
    args.moving = c.im.moving;
    args.disp = c.im.disp;
    args.W = W;
    args.V = L.V;
    args.count = masks ? L.count : nullptr;
    args.inv_n = 1.0 / (double)nvox;
    args.grad_u = c.im.grad_u;
    args.TY = TY;
    args.batch = getenv("GIGAREG_CUDA_LNCC_NOBATCH") ? 0 : 1;
    args.zchunk = L.zchunk;
    const dim3 grid((unsigned)L.gx, (unsigned)L.gy, (unsigned)L.nzc);
    s = fast_launch(r, gu, c.want_affine, &args, grid, kFastTX * TY, smem, st, L.part, nullptr);
  }
  return lncc_launch_end(c, &L, kFastK, masks, s, res);
}

}  // namespace grcu
