/* LNCC fast path (the default CUDA LNCC for radius 1..4): fp32 storage and
 * arithmetic, the semantics of cpu_lncc.c (zero-padded warp, in-grid windows,
 * eps = 1e-5, masks with the valid count N, value / grad_u / affine variants,
 * the exact gradient
 *   dL/dW(z) = -(1/N) [ f(z) Sa(z) - Sam(z) - w(z) Sb(z) + Sbm(z) ]
 * with Sa, Sam, Sb, Sbm the window sums of alpha, alpha mu_f, beta, beta mu_w).
 * cuda_lncc.cu dispatches here (lncc_fast_supported); GIGAREG_CUDA_LNCC=double
 * selects the older double kernel there, GIGAREG_CUDA_EXACT=1 the bitwise-CPU
 * path (cuda_metric.cu).
 *
 * Two kernels:
 *  1) lncc_warp_f32_kernel (cuda_lncc_warp.cuh): W(x) = moving(y(x)) (index
 *     in double, trilinear in fp32: cuda_lncc_sample.cuh; ZERO padding),
 *     stored as float; with masks a validity byte and N (integer atomics).
 *     With grad_u wanted it also stages grad W(x) (physical units, float, the
 *     gradient of the same sample) in the three planes of grad_u: the fused
 *     kernel reads it back at the output voxel and overwrites it with
 *     dL/du = A^T dL/dW grad W. This replaces the fused kernel's own
 *     displacement load + FP64 index + 8-corner gather per output voxel (and
 *     the ~30 registers they held beside the alpha ring, which spilled);
 *     it costs 12 B/voxel of writes in kernel 1, no extra memory (grad_u is
 *     the output). Not used when grad_u overlaps an input (then the double
 *     kernel runs). The affine gradient without grad_u has nowhere to stage
 *     grad W: lncc_fast_supported sends it to the double kernel.
 *  2) lncc_fast_kernel<r, TY, GRAD_U, AFF>: one block owns a 32 x TY column of
 *     output voxels and a chunk of z and marches through the planes. Per
 *     plane step pw, 3 block barriers with a gradient (2 for the value only):
 *       1) y-sums of the z-window sums of plane pa = pw - r;
 *       2) x-sums, cc and the four alpha fields of plane pa, then the running
 *          z-window sums of f, w, f^2, w^2, f w on the (32+4r) x (TY+4r) halo
 *          tile advance to plane pw + 1 (double, in shared memory: the
 *          products of two floats are exact in double, so adding the new
 *          plane and subtracting the one 2r+1 behind leaves no drift);
 *       3) y-sums of the alpha fields;
 *       4) x-sums of the alpha fields at this thread's output column into a
 *          register ring of the last 2r+1 planes, whose sum is the z-box sum
 *          for output plane po = pw - 2r; the gradient formula there.
 *     The passes keep a task's inputs in registers (a column strip of the
 *     y-passes, a pair of positions of the x-pass): one shared load per input
 *     instead of one per tap, the taps still added one by one in the direct
 *     sum's order, so every sum is the one of the tap-by-tap loop (border
 *     windows are the in-grid windows: the tiles are zero outside the grid).
 *     The statistics use the unshifted intensities: where W (zero padding)
 *     or F is exactly 0 over a window, A and C (or B) are then exactly 0 as
 *     in the CPU's double sums, which matters because D = B C + eps makes
 *     alpha = 2A/D amplify any rounding in A by 1/eps = 1e5 in flat windows
 *     (a block-constant shift of the statistics, tried first, broke exactly
 *     that: 1e-2 relative L2 in grad_u on the oblique T1/PD pair); for the
 *     same reason the box sums are direct sums, not sliding (add/subtract)
 *     ones. The gradient assembly uses f - cf, w - cw and mu - c with one
 *     constant per block (f and W at one voxel of the block), an identity
 *       f Sa - Sam = (f - cf) Sa - sum alpha (mu_f - cf)
 *     that makes the two terms cancel far less in float.
 *
 * Precision: W and grad W are interpolated in fp32 from the double index
 * (the CPU: double, grad W rounded to float), the xy box sums, the
 * statistics and the alpha fields are float (relative rounding ~(2r+1) *
 * 6e-8 per sum, amplified by the cancellation in A, B, C by (var + mean^2) /
 * var), the z-window sums are double, the value and affine sums are
 * accumulated in double per thread and reduced per block in a fixed order
 * (deterministic, no float atomics). GIGAREG_CUDA_LNCC_SAMPLE64=1
 * interpolates W and grad W in double as before (then grad_u matches the
 * earlier fast kernel's: the same relative L2 and count of voxels differing
 * from the CPU in every test case). Measured against the CPU on the
 * test_cuda_vs_cpu pairs (H100): value 5.4e-8..1.8e-5 relative, grad_u
 * 2.3e-6..9.4e-5 relative L2, grad_affine 1.2e-7..5.9e-5 (the double
 * interpolation: 5.9e-8..1.8e-5, 2.4e-6..9.5e-5, 1.4e-7..5.7e-5).
 *
 * Speed (H100, 512^3, bench_gpu metric op, grad_u): r = 3 8.42 ms (ncu at
 * base clocks: warp 2.67 + fused 7.21), r = 2 7.32 ms; the first fp32
 * version took 15.08 ms at r = 3 (warp 2.44 + fused 15.59 under ncu; the
 * fused kernel latency bound and spilling at 64 registers) and 11.71 ms at
 * r = 2. Now the fused kernel is bound by shared-memory issue and barriers
 * (top stalls: not selected, barrier, wait), the warp kernel by its gather
 * latency at 1.9 TB/s. Measured and not taken: prefetching the next plane's
 * running-sum loads or the output voxel's loads across the barriers (the
 * registers they hold spill the alpha ring: 9.4..10.1 ms), one block per SM
 * with 128 registers (11.0..11.4 ms), TY = 8 (11.5 ms), row-major YS/AL
 * (8.93 ms), a 48-register cap on the warp kernel (-0.11 ms, spills).
 *
 * Traffic per voxel (DRAM, compulsory): kernel 1 u 12 + moving gather ~4 +
 * W 4 + grad W 12 (+ fixed mask 4 + V 1 with masks); kernel 2 F 4 + W 4 +
 * grad W 12 + grad_u 12 (halo re-reads and the old-plane re-reads of the
 * running sums hit L2): ~64 B/voxel.
 * 16-bit images (gr_metric_spec.fixed_u16 / moving_u16, the storage that
 * takes a greedy iteration's peak from 44 to 40 B/voxel): the moving gather
 * and F read 2 B instead of 4, ~60 B/voxel. Each read converts with
 * u16_value (cuda_common.cuh), so the result is bitwise that of float images
 * holding the rounded values. The warp kernel is templated on the moving
 * storage (M16, cuda_lncc_warp.cuh: a runtime branch per sample serialised
 * its two voxels' gathers); the fused kernel reads F through img_load's
 * uniform branch instead, as a template parameter would double its 32
 * heavy instantiations (CI compile time), and ptxas gives every variant the
 * same occupancy with it (sm_90: registers within the launch bounds, spill
 * bytes equal or fewer; one more batch of loads to keep in flight, not a
 * longer chain). The SAMPLE64 option reads float only: cuda_metric.cu hands
 * it float copies.
 * Extra memory: W 4 B/voxel (+1 validity byte with masks), 13 doubles per
 * block; nothing else at full resolution. */
#include <stdlib.h>
#include <string.h>
#include "cuda_lncc_sample.cuh"
#include "cuda_lncc_warp.cuh"
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

constexpr float kFastEps = 1e-5f;
constexpr int kFastTX = 32;
constexpr int kFastK = 13; /* sum cc + 12 affine */

/* ---- kernel 2 ------------------------------------------------------------------------- */
struct FastArgs {
  WarpMap map;
  const float *fixed, *disp, *W;
  const uint16_t *fixed16;         /* 16-bit fixed image (read instead of fixed when set) */
  const unsigned char *V;          /* validity (masks only) */
  const unsigned long long *count; /* device N (masks only) */
  double inv_n;                    /* 1/N when there are no masks */
  float *grad_u;
  float *dw;        /* LEAN: dL/dW per voxel (grad_u's second plane; W is its first) */
  int zchunk;       /* output planes per block */
};

/* The block's tiles (a 32 x TY column of output voxels, radius r). Dynamic
 * shared memory, in this order:
 *   ZD   5 x ZS doubles  running z-window sums on the WX x WY halo tile
 *                        (ZS = WX WY padded: see ZS)
 *   YS   5 x WX x CS     their y-sums, column-major (column stride CS >= AY)
 *   AL   4 x AX x CS     alpha fields on the AX x AY statistics tile,
 *                        column-major (gradient only)
 *   AYS  4 x TY x AX     their y-sums, row-major (gradient only; not aliased
 *                        with YS: the next plane's y-pass may overwrite YS
 *                        while slower threads still read AYS)
 * Work items per plane (tasks, spread over the NT threads):
 *   y-pass        NYT = 5 fields x WX columns x 2 halves of LY = AY/2 outputs
 *   x-pass+stats  NXT = AY rows x AX/2 pairs of statistics positions
 *   alpha y-pass  NAT = 4 fields x AX columns x 2 halves of LA = TY/2 outputs
 * Bank conflicts: the x-pass task t reads YS at row t % AY, column 2 (t / AY)
 * + k and writes AL there; with CS = AY/2 (mod 16) the bank is t + const
 * (mod 32), so a warp's 32 tasks hit 32 banks (the row-major layout of the
 * first version cost a 2-way conflict on every x-pass load). The column
 * tasks of the y-passes need CS odd; both hold when AY/2 is odd (r = 1, 3 at
 * TY = 16), else CS = AY + 1 keeps the y-passes conflict-free. */
constexpr int fast_col_stride(int ay) {
  return (ay / 2) % 2 == 1 ? ay + ((ay / 2 - ay) % 16 + 16) % 16 : ay + 1;
}

template <int RAD, int TY>
struct FastTile {
  static constexpr int r = RAD, R = 2 * RAD + 1, NT = kFastTX * TY;
  static constexpr int WX = kFastTX + 4 * r, WY = TY + 4 * r, E2 = WX * WY;
  /* ZD field stride: E2 padded to WX mod 16, so that a warp of the y-pass
   * straddling two fields addresses the double banks as if contiguous */
  static constexpr int ZS = E2 + ((WX - E2) % 16 + 16) % 16;
  static constexpr int AX = kFastTX + 2 * r, AY = TY + 2 * r;
  static constexpr int CS = fast_col_stride(AY);
  static constexpr int LY = AY / 2, LA = TY / 2;
  static constexpr int NYS = WX * CS, NAL = AX * CS, NAYS = TY * AX;
  static constexpr int KZ = (E2 + NT - 1) / NT; /* halo positions per thread */
  static constexpr int NYT = 5 * 2 * WX, NXT = AY * (AX / 2), NAT = 4 * 2 * AX;
  static_assert(TY % 2 == 0 && CS % 2 == 1 && CS >= AY, "tile shape");
  static constexpr size_t smem(bool grad) {
    return 8 * (size_t)5 * ZS + 4 * ((size_t)5 * NYS + (grad ? (size_t)4 * NAL + (size_t)4 * NAYS : 0));
  }
};

__device__ __forceinline__ int fwin_n(int i, int r, int n) {
  const int lo = i - r < 0 ? 0 : i - r, hi = i + r > n - 1 ? n - 1 : i + r;
  return hi - lo + 1;
}

/* Running z-window sums at halo-tile position e: add the new plane's (f, w),
 * subtract the old plane's (fo, wo); double sums of exact float products. */
__device__ __forceinline__ void zsum_update(double *ZD, int E2, int e, float f, float w, float fo, float wo) { /* E2: field stride */
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
}

/* One plane step of the running sums, split so that the loads (L2 re-reads
 * of the old plane, the new plane) are in flight while the statistics of the
 * current plane are computed. Values of a disabled add or subtract are 0. */
template <class T>
struct ZLoads {
  float nf[T::KZ], nw[T::KZ], of[T::KZ], ow[T::KZ];
};

/* The fixed image through img_load: a uniform branch per load. Hoisting one
 * branch around the whole batch (two copies of the loop) compiled to more
 * spills in the affine variants (ptxas, sm_90: r = 3 TY = 16 200 -> 220 B of
 * spill loads; the per-load form: 200 -> 196), and the loads stay one batch
 * either way: nothing between them waits on a loaded value. */
template <class T>
__device__ __forceinline__ void zsum_load(const FastArgs &a, const int (&zo)[T::KZ], int p, int pw_begin,
                                          ZLoads<T> &L) {
  const long long nxy = a.map.f.nxy;
  const int pold = p - T::R;
  const bool add = p < a.map.f.n[2], sub = pold >= pw_begin;
  const long long on = (add ? p : 0) * nxy, oo = (sub ? pold : 0) * nxy;
  const float *wn = a.W + on, *wo = a.W + oo;
#pragma unroll
  for (int k = 0; k < T::KZ; ++k) {
    const bool in = zo[k] >= 0;
    L.nf[k] = in && add ? img_load(a.fixed, a.fixed16, on + zo[k]) : 0.0f;
    L.nw[k] = in && add ? __ldg(wn + zo[k]) : 0.0f;
    L.of[k] = in && sub ? img_load(a.fixed, a.fixed16, oo + zo[k]) : 0.0f;
    L.ow[k] = in && sub ? __ldg(wo + zo[k]) : 0.0f;
  }
}

template <class T>
__device__ __forceinline__ void zsum_apply(double *ZD, const int (&zo)[T::KZ], int tid, const ZLoads<T> &L) {
#pragma unroll
  for (int k = 0; k < T::KZ; ++k)
    if (zo[k] >= 0) zsum_update(ZD, T::ZS, tid + k * T::NT, L.nf[k], L.nw[k], L.of[k], L.ow[k]);
}

/* True when plane p's running-sum step does anything (the kernel skips it otherwise). */
template <class T>
__device__ __forceinline__ bool zsum_active(int p, int pw_begin, int nz) {
  return p < nz || p - T::R >= pw_begin;
}

/* y-sums of the five z-window sums: each task keeps one column's LY + 2r
 * values in registers (one shared load per input instead of 2r + 1) and adds
 * the 2r + 1 taps of each output in the order of the direct sum (from 0,
 * top to bottom), so the sums are those of the tap-by-tap loop. */
template <class T>
__device__ __forceinline__ void fast_ypass(const double *__restrict__ ZD, float *__restrict__ YS, int tid) {
  constexpr int n = T::LY + 2 * T::r;
  for (int t = tid; t < T::NYT; t += T::NT) {
    const int col = t % T::WX, rest = t / T::WX, q = rest % 5, half = rest / 5;
    const double *src = ZD + q * T::ZS + half * T::LY * T::WX + col;
    float v[n];
#pragma unroll
    for (int k = 0; k < n; ++k) v[k] = (float)src[k * T::WX];
    float *dst = YS + q * T::NYS + half * T::LY + col * T::CS;
#pragma unroll
    for (int j = 0; j < T::LY; ++j) {
      float s = 0.0f;
#pragma unroll
      for (int d = 0; d < T::R; ++d) s += v[j + d];
      dst[j] = s;
    }
  }
}

/* Window statistics at statistics-tile position (ax, ay) of plane pa from its
 * box sums S (f, w, f^2, w^2, f w): cc into acc0 for owned valid voxels, the
 * alpha fields into AL. */
template <class T, bool GRAD>
__device__ __forceinline__ void fast_stats(const FastArgs &a, const float S[5], int ax, int ay, int x0, int y0,
                                           int pa, bool pa_owned, int ncz, float cf, float cw, double &acc0,
                                           float *__restrict__ AL) {
  constexpr int r = T::r;
  const int nx = (int)a.map.f.n[0], ny = (int)a.map.f.n[1];
  const int gx = x0 - r + ax, gy = y0 - r + ay;
  float al[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (gx >= 0 && gx < nx && gy >= 0 && gy < ny) {
    /* the in-grid window's size; inside the grid (nearly every voxel) the constant (2r+1)^3, no division */
    const int nw = fwin_n(gx, r, nx) * fwin_n(gy, r, ny) * ncz;
    constexpr int kFull = T::R * T::R * T::R;
    const float inv_nw = nw == kFull ? 1.0f / (float)kFull : 1.0f / (float)nw;
    const float mf = S[0] * inv_nw, mw = S[1] * inv_nw;
    const float A = fmaf(-S[0], mw, S[4]);
    const float Bt = fmaf(-S[0], mf, S[2]), Ct = fmaf(-S[1], mw, S[3]);
    const float B = Bt > 0.0f ? Bt : 0.0f, C = Ct > 0.0f ? Ct : 0.0f;
    const float inv_d = 1.0f / fmaf(B, C, kFastEps);
    bool ok = true;
    if (a.V) ok = __ldg(a.V + (long long)pa * a.map.f.nxy + (long long)gy * nx + gx) != 0;
    const bool owned = ax >= r && ax < r + kFastTX && ay >= r && ay < r + T::NT / kFastTX && pa_owned;
    if (ok && owned) acc0 += (double)(A * A * inv_d);
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
    for (int q = 0; q < 4; ++q) AL[q * T::NAL + ay + ax * T::CS] = al[q];
  }
}

/* x-sums and statistics: each task takes two neighbouring positions of one
 * row (2r + 2 loads per field for both), taps added in the direct sum's order. */
template <class T, bool GRAD>
__device__ __forceinline__ void fast_xpass_stats(const FastArgs &a, const float *__restrict__ YS, float *__restrict__ AL,
                                                 int tid, int x0, int y0, int pa, bool pa_owned, int ncz,
                                                 float cf, float cw, double &acc0) {
  constexpr int n = 2 * T::r + 2;
  for (int t = tid; t < T::NXT; t += T::NT) {
    const int ay = t % T::AY, ax = 2 * (t / T::AY);
    float S0[5], S1[5];
#pragma unroll
    for (int q = 0; q < 5; ++q) {
      const float *src = YS + q * T::NYS + ay + ax * T::CS;
      float v[n];
#pragma unroll
      for (int k = 0; k < n; ++k) v[k] = src[k * T::CS];
      float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
      for (int d = 0; d < T::R; ++d) s0 += v[d];
#pragma unroll
      for (int d = 0; d < T::R; ++d) s1 += v[d + 1];
      S0[q] = s0;
      S1[q] = s1;
    }
    fast_stats<T, GRAD>(a, S0, ax, ay, x0, y0, pa, pa_owned, ncz, cf, cw, acc0, AL);
    fast_stats<T, GRAD>(a, S1, ax + 1, ay, x0, y0, pa, pa_owned, ncz, cf, cw, acc0, AL);
  }
}

/* y-sums of the alpha fields onto the AX x TY tile (as fast_ypass). */
template <class T>
__device__ __forceinline__ void fast_alpha_ypass(const float *__restrict__ AL, float *__restrict__ AYS, int tid) {
  constexpr int n = T::LA + 2 * T::r;
  for (int t = tid; t < T::NAT; t += T::NT) {
    const int col = t % T::AX, rest = t / T::AX, q = rest & 3, half = rest >> 2;
    const float *src = AL + q * T::NAL + half * T::LA + col * T::CS;
    float v[n];
#pragma unroll
    for (int k = 0; k < n; ++k) v[k] = src[k];
    float *dst = AYS + q * T::NAYS + half * T::LA * T::AX + col;
#pragma unroll
    for (int j = 0; j < T::LA; ++j) {
      float s = 0.0f;
#pragma unroll
      for (int d = 0; d < T::R; ++d) s += v[j + d];
      dst[j * T::AX] = s;
    }
  }
}

/* What the gradient at one output voxel reads besides the ring: f and W
 * there, and grad W, staged in grad_u by the warp kernel (STAGED: grad_u is
 * wanted; the fast kernel takes no gradient without it). */
struct OutLoads {
  float f, w, g[3];
};

template <bool STAGED>
__device__ __forceinline__ void out_load(const FastArgs &a, long long v, OutLoads &o) {
  o.f = img_load(a.fixed, a.fixed16, v);
  o.w = __ldg(a.W + v);
  o.g[0] = STAGED ? a.grad_u[v] : 0.0f;
  o.g[1] = STAGED ? a.grad_u[a.map.f.nvox + v] : 0.0f;
  o.g[2] = STAGED ? a.grad_u[2 * a.map.f.nvox + v] : 0.0f;
}

__device__ __forceinline__ void load_u(const FastArgs &a, long long v, float u[3]) {
  u[0] = u[1] = u[2] = 0.0f;
  if (a.disp) {
    u[0] = __ldg(a.disp + v);
    u[1] = __ldg(a.disp + a.map.f.nvox + v);
    u[2] = __ldg(a.disp + 2 * a.map.f.nvox + v);
  }
}

/* Fused kernel. TY = 16: 512 threads, two blocks per SM (64 registers);
 * TY = 8: 256 threads, three blocks per SM. */
template <int RAD, int TY, bool GRAD_U, bool AFF, bool LEAN>
__global__ void __launch_bounds__(kFastTX *TY, TY >= 16 ? 2 : 3)
    lncc_fast_kernel(const FastArgs a, double *__restrict__ part) {
  using T = FastTile<RAD, TY>;
  static_assert(GRAD_U || !AFF, "the affine gradient needs grad W staged in grad_u");
  static_assert(!LEAN || (GRAD_U && !AFF), "the lean variant writes dL/dW for the gather kernel, nothing else");
  constexpr bool GRAD = GRAD_U || AFF;
  constexpr int r = RAD, R = T::R;
  extern __shared__ double smem[];
  double *ZD = smem;
  float *YS = reinterpret_cast<float *>(ZD + 5 * T::ZS);
  float *AL = YS + 5 * T::NYS;
  float *AYS = AL + 4 * T::NAL;
  const int tid = threadIdx.x;
  const int nx = (int)a.map.f.n[0], ny = (int)a.map.f.n[1], nz = (int)a.map.f.n[2];
  const long long nxy = a.map.f.nxy;
  const int x0 = blockIdx.x * kFastTX, y0 = blockIdx.y * TY;
  const int z0 = (int)blockIdx.z * a.zchunk;
  const int z1 = z0 + a.zchunk < nz ? z0 + a.zchunk : nz;

  /* this thread's halo positions (the same every plane): in-plane offsets, -1 outside the grid */
  int zo[T::KZ];
#pragma unroll
  for (int k = 0; k < T::KZ; ++k) {
    const int e = tid + k * T::NT;
    zo[k] = -1;
    if (e < T::E2) {
      const int ey = e / T::WX, gx = x0 - 2 * r + (e - ey * T::WX), gy = y0 - 2 * r + ey;
      if (gx >= 0 && gx < nx && gy >= 0 && gy < ny) zo[k] = gy * nx + gx;
#pragma unroll
      for (int q = 0; q < 5; ++q) ZD[q * T::ZS + e] = 0.0;
    }
  }

  /* the block's shift: f and W at one voxel of the block */
  const int cxi = x0 + kFastTX / 2 < nx ? x0 + kFastTX / 2 : nx - 1;
  const int cyi = y0 + TY / 2 < ny ? y0 + TY / 2 : ny - 1;
  const long long cvo = (long long)z0 * nxy + (long long)cyi * nx + cxi;
  const float cf = img_load(a.fixed, a.fixed16, cvo), cw = __ldg(a.W + cvo);

  __shared__ double inv_N; /* 1/N, read at each gradient voxel: kept out of the registers */
  if (tid == 0) {
    inv_N = a.inv_n;
    if (a.count) {
      const unsigned long long n = *a.count;
      inv_N = n ? 1.0 / (double)n : 0.0;
    }
  }
  double acc[kFastK];
#pragma unroll
  for (int q = 0; q < kFastK; ++q) acc[q] = 0.0;

  const int ox = tid % kFastTX, oy = tid / kFastTX;
  const int gxo = x0 + ox, gyo = y0 + oy;
  const bool out_in = gxo < nx && gyo < ny;
  float ring[R][4]; /* xy-box sums of the alpha fields at planes pw-3r .. pw-r */
#pragma unroll
  for (int k = 0; k < R; ++k)
#pragma unroll
    for (int q = 0; q < 4; ++q) ring[k][q] = 0.0f;

  const int pa_lo = GRAD ? (z0 - r > 0 ? z0 - r : 0) : z0;
  const int pa_hi = GRAD ? (z1 + r < nz ? z1 + r : nz) : z1;
  const int pw_begin = pa_lo - r > 0 ? pa_lo - r : 0;
  const int pw_end = GRAD ? z1 - 1 + 2 * r : z1 - 1 + r;

  {
    ZLoads<T> L;
    zsum_load<T>(a, zo, pw_begin, pw_begin, L);
    zsum_apply<T>(ZD, zo, tid, L);
  }
  __syncthreads();

  /* Per plane step pw: ZD holds the z-window sums of plane pa = pw - r.
   *   1) y-pass of plane pa                                       | barrier
   *   2) x-pass + statistics of plane pa, and the running-sum step
   *      of plane pw + 1                                          | barrier
   *   3) alpha y-pass                                             | barrier
   *   4) alpha x-pass, ring, gradient of output plane po = pw - 2r.
   * No barrier after 4: its reads of AYS are separated from the next writes
   * (step 3 of the next plane) by that plane's barriers after 1 and 2, and
   * the next y-pass touches neither AYS nor anything 4 reads. */
  for (int pw = pw_begin; pw <= pw_end; ++pw) {
    const int pa = pw - r;
    const bool stats = pa >= pa_lo && pa < pa_hi;
    if (stats) {
      fast_ypass<T>(ZD, YS, tid);
      __syncthreads();
    }
    {
      const int pn = pw + 1;
      const bool znext = pn <= pw_end && zsum_active<T>(pn, pw_begin, nz);
      if (stats)
        fast_xpass_stats<T, GRAD>(a, YS, AL, tid, x0, y0, pa, pa >= z0 && pa < z1, fwin_n(pa, r, nz), cf, cw, acc[0]);
      if (znext) {
        ZLoads<T> L;
        zsum_load<T>(a, zo, pn, pw_begin, L);
        zsum_apply<T>(ZD, zo, tid, L);
      }
    }
    __syncthreads();
    if (GRAD) {
      if (stats) {
        fast_alpha_ypass<T>(AL, AYS, tid);
        __syncthreads();
      }
      float al_new[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (stats) {
        const float *src = AYS + oy * T::AX + ox;
#pragma unroll
        for (int d = 0; d < R; ++d)
#pragma unroll
          for (int q = 0; q < 4; ++q) al_new[q] += src[q * T::NAYS + d];
      }
#pragma unroll
      for (int k = 0; k < R - 1; ++k)
#pragma unroll
        for (int q = 0; q < 4; ++q) ring[k][q] = ring[k + 1][q];
#pragma unroll
      for (int q = 0; q < 4; ++q) ring[R - 1][q] = al_new[q];
      const int po = pw - 2 * r;
      const long long v = (long long)po * nxy + (long long)gyo * nx + gxo;
      if (po >= z0 && po < z1 && out_in) {
        OutLoads ol;
        out_load<GRAD_U && !LEAN>(a, v, ol);
        float S[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < R; ++k)
#pragma unroll
          for (int q = 0; q < 4; ++q) S[q] += ring[k][q];
        const double f = (double)(ol.f - cf), w = (double)(ol.w - cw);
        const double dw0 = -inv_N * (f * (double)S[0] - (double)S[1] - w * (double)S[2] + (double)S[3]);
        /* the field gradient alone takes dL/dW rounded to float, as the lean
         * variant stores it: both variants give grad_u bit for bit */
        const double dw = GRAD_U && !AFF ? (double)(float)dw0 : dw0;
        const double d[3] = {dw * (double)ol.g[0], dw * (double)ol.g[1], dw * (double)ol.g[2]};
        if (LEAN) a.dw[v] = (float)dw;
        else if (GRAD_U) grad_u_store(a.map, a.grad_u, v, d);
        if (AFF) {
          float u[3];
          load_u(a, v, u);
          double x[3];
          metric_xphys_u(a.map, a.disp != nullptr, u[0], u[1], u[2], gxo, gyo, po, x);
          affine_accum(acc + 1, d, x);
        }
      }
    }
  }
  block_sum_to_partials<kFastK>(acc, part);
}

/* ---- host ------------------------------------------------------------------------------ */
template <int RAD, int TY, bool G, bool A, bool LEAN = false>
static gr_status fast_launch_t(const FastArgs *args, dim3 grid, cudaStream_t st, double *part, int *occ) {
  auto kern = lncc_fast_kernel<RAD, TY, G, A, LEAN>;
  const size_t smem = FastTile<RAD, TY>::smem(G || A);
  GRCU_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  if (occ) {
    GRCU_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(occ, kern, kFastTX * TY, smem));
    return GR_OK;
  }
  kern<<<grid, kFastTX * TY, smem, st>>>(*args, part);
  GRCU_LAUNCHED("LNCC fast kernel");
  return GR_OK;
}

template <int RAD, int TY>
static gr_status fast_launch_ty(bool gu, bool aff, const FastArgs *args, dim3 grid, cudaStream_t st, double *part,
                                int *occ) {
  if (gu && aff) return fast_launch_t<RAD, TY, true, true>(args, grid, st, part, occ);
  if (gu && args && args->dw) return fast_launch_t<RAD, TY, true, false, true>(args, grid, st, part, occ);
  if (gu) return fast_launch_t<RAD, TY, true, false>(args, grid, st, part, occ);
  if (aff) return gr_error(GR_ERR_INTERNAL, "cuda LNCC (fast): affine gradient without grad_u (lncc_fast_supported routes it to the double kernel)");
  return fast_launch_t<RAD, TY, false, false>(args, grid, st, part, occ);
}

template <int RAD>
static gr_status fast_launch_r(int ty, bool gu, bool aff, const FastArgs *args, dim3 grid, cudaStream_t st,
                               double *part, int *occ) {
  if (ty == 16) return fast_launch_ty<RAD, 16>(gu, aff, args, grid, st, part, occ);
  return fast_launch_ty<RAD, 8>(gu, aff, args, grid, st, part, occ);
}

/* occ != NULL: only the occupancy query (blocks per SM into *occ). */
static gr_status fast_launch(int r, int ty, bool gu, bool aff, const FastArgs *args, dim3 grid, cudaStream_t st,
                             double *part, int *occ) {
  switch (r) {
    case 1: return fast_launch_r<1>(ty, gu, aff, args, grid, st, part, occ);
    case 2: return fast_launch_r<2>(ty, gu, aff, args, grid, st, part, occ);
    case 3: return fast_launch_r<3>(ty, gu, aff, args, grid, st, part, occ);
    default: return fast_launch_r<4>(ty, gu, aff, args, grid, st, part, occ);
  }
}

template <int RAD>
static size_t fast_smem_r(int ty, bool grad) {
  return ty == 16 ? FastTile<RAD, 16>::smem(grad) : FastTile<RAD, 8>::smem(grad);
}

static size_t fast_smem_bytes(int r, int ty, bool grad) {
  switch (r) {
    case 1: return fast_smem_r<1>(ty, grad);
    case 2: return fast_smem_r<2>(ty, grad);
    case 3: return fast_smem_r<3>(ty, grad);
    default: return fast_smem_r<4>(ty, grad);
  }
}

static bool overlaps(const void *p, size_t np, const void *q, size_t nq) {
  if (!p || !q) return false;
  const char *a = (const char *)p, *b = (const char *)q;
  return a < b + nq && b < a + np;
}

/* Radius 1..4, planes of fewer than 2^31 voxels (int in-plane offsets), and
 * grad_u apart from every input (the warp kernel stages grad W in it). */
bool lncc_fast_supported(const MetricCall &c, int r) {
  if (r < 1 || r > 4 || c.map.f.nxy >= (1LL << 31)) return false;
  const float *g = c.im.grad_u;
  /* The affine gradient without grad_u goes to the double kernel: the fused
   * kernel's own fp32 gather for that case read out of bounds at r = 1
   * (compute-sanitizer, 2026-11-26: load_u in the affine block of
   * lncc_fast_kernel<1, 16, false, true>) and was taken out. */
  if (!g) return !c.want_affine;
  const size_t gb = (size_t)c.map.f.nvox * 3 * sizeof(float), fb = (size_t)c.map.f.nvox * sizeof(float);
  const size_t mb = (size_t)c.map.m.nvox * sizeof(float);
  const size_t fb16 = (size_t)c.map.f.nvox * sizeof(uint16_t), mb16 = (size_t)c.map.m.nvox * sizeof(uint16_t);
  return !overlaps(g, gb, c.im.fixed, fb) && !overlaps(g, gb, c.im.fmask, fb) && !overlaps(g, gb, c.im.moving, mb) &&
         !overlaps(g, gb, c.im.mmask, mb) && !overlaps(g, gb, c.im.disp, 3 * fb) &&
         !overlaps(g, gb, c.im.fixed16, fb16) && !overlaps(g, gb, c.im.moving16, mb16);
}

template <bool M, bool S, bool M16>
static void warp_launch_mode(int mode, const MetricCall &c, dim3 grid, cudaStream_t st, float *W, const LnccLaunch &L,
                             const WarpGradStage &gs) {
  const dim3 block(kBX, kBY);
  if (mode == kWarpStage) lncc_warp_f32_kernel<M, S, kWarpStage, M16><<<grid, block, 0, st>>>(c.map, c.im, W, L.V, L.count, gs);
  else lncc_warp_f32_kernel<M, S, kWarpW, M16><<<grid, block, 0, st>>>(c.map, c.im, W, L.V, L.count, gs);
}

/* S (the double sample) never sees a 16-bit moving image: metric_lncc_fast refuses it. */
template <bool M, bool S>
static void warp_launch_ms(int mode, const MetricCall &c, dim3 grid, cudaStream_t st, float *W, const LnccLaunch &L,
                           const WarpGradStage &gs) {
  if (!S && c.im.moving16) warp_launch_mode<M, S, !S>(mode, c, grid, st, W, L, gs);
  else warp_launch_mode<M, S, false>(mode, c, grid, st, W, L, gs);
}

static WarpGradStage warp_stage(const MetricCall &c) {
  WarpGradStage gs;
  gs.g = c.im.grad_u;
  gs.dw = c.im.grad_u ? c.im.grad_u + c.map.f.nvox : nullptr;
  for (int k = 0; k < 9; ++k) gs.Pf[k] = (float)c.map.P[k];
  return gs;
}

/* Kernel 1: W (and V, N with masks); with grad_u and not lean, grad W staged in it. */
static gr_status warp_launch(const MetricCall &c, bool sample64, bool lean, cudaStream_t st, float *W,
                             const LnccLaunch &L) {
  const bool masks = c.im.fmask || c.im.mmask;
  const int mode = c.im.grad_u && !lean ? kWarpStage : kWarpW;
  const WarpGradStage gs = warp_stage(c);
  const dim3 grid = voxel_grid(c.map.f.n);
  if (masks && sample64) warp_launch_ms<true, true>(mode, c, grid, st, W, L, gs);
  else if (masks) warp_launch_ms<true, false>(mode, c, grid, st, W, L, gs);
  else if (sample64) warp_launch_ms<false, true>(mode, c, grid, st, W, L, gs);
  else warp_launch_ms<false, false>(mode, c, grid, st, W, L, gs);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? GR_OK : device_error(e, "LNCC fast warp kernel");
}

/* Kernel 3 of the lean path: grad_u = A^T dL/dW grad W in place (WarpMode). */
static gr_status gather_launch(const MetricCall &c, bool sample64, cudaStream_t st) {
  const WarpGradStage gs = warp_stage(c);
  const dim3 grid = voxel_grid(c.map.f.n), block(kBX, kBY);
  if (sample64) lncc_warp_f32_kernel<false, true, kWarpGather, false><<<grid, block, 0, st>>>(c.map, c.im, nullptr, nullptr, nullptr, gs);
  else if (c.im.moving16) lncc_warp_f32_kernel<false, false, kWarpGather, true><<<grid, block, 0, st>>>(c.map, c.im, nullptr, nullptr, nullptr, gs);
  else lncc_warp_f32_kernel<false, false, kWarpGather, false><<<grid, block, 0, st>>>(c.map, c.im, nullptr, nullptr, nullptr, gs);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? GR_OK : device_error(e, "LNCC fast gather kernel");
}

static bool env_set(const char *name) {
  const char *e = getenv(name);
  return e && *e && strcmp(e, "0") != 0;
}

/* GIGAREG_CUDA_LNCC_SAMPLE64=1: W interpolated in double (the older arithmetic), for comparisons */
bool lncc_fast_sample64() { return env_set("GIGAREG_CUDA_LNCC_SAMPLE64"); }

/* Tile height (16 or 8): among those whose shared memory fits, the most
 * useful resident threads per SM (threads x output/halo-tile ratio), with a
 * bonus for two or more resident blocks (their barrier phases interleave).
 * Cached per backend (keys 2000 + ... beside the double kernel's). */
static gr_status fast_tile(Impl *imp, int r, bool gu, bool aff, cudaStream_t st, int *TY, size_t *smem) {
  const bool grad = gu || aff;
  const size_t static_smem = 32 * kFastK * sizeof(double) + 256;
  const size_t limit = imp->smem_optin > static_smem ? imp->smem_optin - static_smem : 0;
  const char *force_ty = getenv("GIGAREG_CUDA_LNCC_TY"); /* 16 or 8: for measurements */
  const int only_ty = force_ty ? atoi(force_ty) : 0;
  const int tile_key = 2000 + 100 * only_ty + r * 8 + (gu ? 4 : 0) + (aff ? 2 : 0);
  if (lncc_tile_cached(imp, tile_key, TY, smem)) return GR_OK;
  double best = 0.0;
  *TY = 0;
  for (int ty = 16; ty >= 8; ty /= 2) {
    if (only_ty && ty != only_ty) continue;
    const size_t b = fast_smem_bytes(r, ty, grad);
    if (b > limit) continue;
    int blocks = 0;
    if (fast_launch(r, ty, gu, aff, nullptr, dim3(1), st, nullptr, &blocks) != GR_OK) return GR_ERR_DEVICE;
    const double halo = (double)(kFastTX + 4 * r) * (ty + 4 * r);
    const double score = (double)blocks * kFastTX * ty * ((double)kFastTX * ty / halo) * (blocks >= 2 ? 1.25 : 1.0);
    if (blocks > 0 && score > best) {
      best = score;
      *TY = ty;
      *smem = b;
    }
  }
  if (!*TY)
    return gr_error(GR_ERR_UNSUPPORTED,
                    "cuda LNCC (fast): radius %d needs %zu bytes of shared memory per block (device offers %zu)", r,
                    fast_smem_bytes(r, 8, grad), limit);
  lncc_tile_store(imp, tile_key, *TY, *smem);
  return GR_OK;
}

gr_status metric_lncc_fast(const MetricCall &c, gr_metric_result *res) {
  gr_backend *be = c.be;
  Impl *imp = impl_of(be);
  cudaStream_t st = imp->stream;
  const int r = c.spec->lncc_radius > 0 ? c.spec->lncc_radius : 2;
  const bool gu = c.im.grad_u != nullptr;
  const bool masks = c.im.fmask || c.im.mmask;
  const long long nvox = c.map.f.nvox;
  const bool sample64 = lncc_fast_sample64();
  if (sample64 && c.im.moving16)
    return gr_error(GR_ERR_INTERNAL, "cuda LNCC (fast): the double sample (GIGAREG_CUDA_LNCC_SAMPLE64) got a 16-bit "
                                     "moving image (cuda_metric.cu dequantises it for that path)");
  /* Lean (the field gradient without the affine one): W lives in grad_u's
   * first plane and dL/dW in its second, grad W is sampled again by a third
   * kernel: no warped-image buffer (4 B/voxel less at the metric's peak, ~13%
   * more time: 17.0 vs 15.1 ms per 512^3 iteration). Taken when W's buffer
   * cannot be allocated; both variants give the same grad_u bit for bit, so
   * the choice never changes a result. GIGAREG_CUDA_LNCC_LEAN=1 / 0 forces
   * it / the buffer (measurements; memory_plan.c models the lean need). */
  const char *lean_env = getenv("GIGAREG_CUDA_LNCC_LEAN");
  const bool can_lean = gu && !c.want_affine && !(lean_env && strcmp(lean_env, "0") == 0);
  bool lean = can_lean && lean_env && strcmp(lean_env, "1") == 0;

  int TY = 0;
  size_t smem = 0;
  gr_status s = fast_tile(imp, r, gu, c.want_affine, st, &TY, &smem);
  if (s != GR_OK) return s;

  LnccLaunch L;
  if (!lean) {
    s = lncc_launch_begin(c, r, kFastTX, TY, 4, kFastK, masks, "LNCC warped image (float) and partials", &L);
    if (s == GR_ERR_NOMEM && can_lean) {
      gr_clear_error();
      lean = true;
    }
  }
  if (lean) s = lncc_launch_begin(c, r, kFastTX, TY, 0, kFastK, masks, "LNCC partials", &L);
  float *W = lean ? c.im.grad_u : (float *)L.W;
  if (s == GR_OK) s = warp_launch(c, sample64, lean, st, W, L);

  if (s == GR_OK) {
    FastArgs args;
    args.map = c.map;
    args.fixed = c.im.fixed;
    args.fixed16 = c.im.fixed16;
    args.disp = c.im.disp;
    args.W = W;
    args.V = L.V;
    args.count = masks ? L.count : nullptr;
    args.inv_n = 1.0 / (double)nvox;
    args.grad_u = c.im.grad_u;
    args.dw = lean ? c.im.grad_u + nvox : nullptr;
    args.zchunk = (int)L.zchunk;
    const dim3 grid((unsigned)L.gx, (unsigned)L.gy, (unsigned)L.nzc);
    s = fast_launch(r, TY, gu, c.want_affine, &args, grid, st, L.part, nullptr);
  }
  if (s == GR_OK && lean) s = gather_launch(c, sample64, st);
  return lncc_launch_end(c, &L, kFastK, masks, s, res);
}

}  // namespace grcu
