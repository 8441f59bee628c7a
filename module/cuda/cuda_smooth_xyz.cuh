/* The fused x+y+z Gaussian march (float path), shared by the out-of-place
 * smoothing (cuda_smooth_to.cu: the epilogue stores the smoothed values) and
 * the Adam moments of the smoothed gradient (cuda_optim.cu
 * adam_moments_smoothed: the epilogue updates m and v and never stores the
 * smoothed gradient).
 *
 * smooth_xyz4_kernel<R, NW, Epi>: one block owns a 128-column strip (4 columns
 * per lane) x NW output rows (one per warp) and marches through a chunk of z.
 * NW = 12 at R >= 3 (2 blocks of 384 threads per SM at 80 registers): the y
 * halo costs 2R/12 extra x-smoothed rows instead of 2R/8, which took 2% off
 * smooth_to and 6% off adam_moments_smoothed at 512^3 on an H100; 16 warps
 * spill at R >= 3 (64 registers).
 * Per input plane: the NW + 2R rows of the tile (its y halo included) are
 * x-smoothed by shuffles (strip4_xsmooth, as the in-place x+y walker does)
 * into a double-buffered shared tile (so one barrier per plane suffices), the
 * next plane's rows are loaded into registers before that barrier (their
 * latency overlaps the y and z work), each warp y-smooths its row (taps4),
 * and the last 2R+1 x+y-smoothed rows stay in registers, whose z taps give
 * the output plane R behind the input, handed to the epilogue. Per output the
 * operations and their order are the in-place walkers' (x, y, then z, each
 * rounded to float), so the values are bitwise theirs. The source is only
 * read: no block overwrites a sample a neighbour's halo still needs, which is
 * what lets the three axes fuse.
 * Needs nx % 4 == 0 and a 16-byte aligned source (one float4 per lane and row);
 * the same radius R (1..4) on all three axes. */
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include "cuda_smooth.cuh"

namespace grcu {

template <int R, int NW, class Epi>
__global__ void __launch_bounds__(32 * NW, NW >= 12 ? 2 : 3)
    smooth_xyz4_kernel(const float *__restrict__ in, const Dims d, const AxisKernel<float, kTileR> kx,
                       const AxisKernel<float, kTileR> ky, const AxisKernel<float, kTileR> kz, long long zchunk,
                       Epi epi) {
  constexpr int kRows = NW + 2 * R; /* x-smoothed rows per plane: the tile and its y halo */
  __shared__ float4 xs[2][kRows][32];
  __shared__ float4 sinv[32];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const long long nx = d.n[0], ny = d.n[1], nz = d.n[2], nxy = d.nxy;
  const Strip4 sp = strip4_at(blockIdx.x, lane, nx);
  const long long y0 = (long long)blockIdx.y * NW;
  const long long z0 = (long long)blockIdx.z * zchunk, z1 = z0 + zchunk < nz ? z0 + zchunk : nz;
  if (wid == 0) {
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = inv_norm(kx, sp.c0 + j < nx ? sp.c0 + j : nx - 1);
    sinv[lane] = make_float4(v[0], v[1], v[2], v[3]);
  }
  /* this warp's x rows: tile rows wid and (for the first 2R warps) wid + NW */
  const long long ya = y0 - R + wid, yb = ya + NW;
  const bool has_b = wid < 2 * R;
  const long long yo = y0 + wid; /* output row */
  const float inv_y = inv_norm(ky, yo < ny ? yo : ny - 1);
  float ca[4], cb[4], ha, hb;
  auto load_plane = [&](long long p) { /* planes outside the grid read as zero rows */
    const bool in_z = p >= 0 && p < nz;
    const float *pl = in + (in_z ? p : 0) * nxy;
    strip4_load(sp, nx, in_z ? ny : 0, ya, pl + ya * nx, true, ca, ha);
    if (has_b) strip4_load(sp, nx, in_z ? ny : 0, yb, pl + yb * nx, true, cb, hb);
  };
  float ring[2 * R + 1][4]; /* ring[j]: x+y-smoothed row yo of plane pw - 2R + j */
#pragma unroll
  for (int j = 0; j <= 2 * R; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) ring[j][i] = 0.0f;
  const long long first = z0 - R, last = z1 - 1 + R;
  load_plane(first);
  __syncthreads(); /* sinv */
  float inv_x[4];
  {
    const float4 iv = sinv[lane];
    inv_x[0] = iv.x; inv_x[1] = iv.y; inv_x[2] = iv.z; inv_x[3] = iv.w;
  }
  int buf = 0;
  for (long long pw = first; pw <= last; ++pw, buf ^= 1) {
    {
      float t[4];
      strip4_xsmooth<R>(lane, kx, ca, ha, inv_x, t); /* zero rows (outside the grid) smooth to +0 */
      xs[buf][wid][lane] = make_float4(t[0], t[1], t[2], t[3]);
      if (has_b) {
        strip4_xsmooth<R>(lane, kx, cb, hb, inv_x, t);
        xs[buf][wid + NW][lane] = make_float4(t[0], t[1], t[2], t[3]);
      }
    }
    if (pw < last) load_plane(pw + 1);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 2 * R; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) ring[j][i] = ring[j + 1][i];
    {
      float win[2 * R + 1][4];
#pragma unroll
      for (int j = 0; j <= 2 * R; ++j) {
        const float4 v = xs[buf][wid + j][lane];
        win[j][0] = v.x; win[j][1] = v.y; win[j][2] = v.z; win[j][3] = v.w;
      }
      taps4<R>(ky, win, inv_y, ring[2 * R]);
    }
    const long long po = pw - R;
    if (po < z0 || yo >= ny || sp.c0 >= nx) continue;
    float o[4];
    taps4<R>(kz, ring, inv_norm(kz, po), o);
    epi.put(po * nxy + yo * nx + sp.c0, o); /* 4 consecutive voxels, the first a multiple of 4 */
  }
  epi.finish();
}

/* Grid of one march: z chunks whose blocks fill whole waves of resident blocks
 * best, net of the 2R halo planes each chunk reads again. */
template <int R, int NW, class Epi>
inline cudaError_t launch_xyz4_r(const Dims &d, const AxisKernel<float, kTileR> (&k)[3], int num_sms, cudaStream_t st,
                                 const float *in, const Epi &epi) {
  const long long strips = (d.n[0] + 127) / 128, ytiles = (d.n[1] + NW - 1) / NW;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, smooth_xyz4_kernel<R, NW, Epi>, 32 * NW, 0) !=
          cudaSuccess ||
      per_sm < 1)
    per_sm = 1;
  const long long tiles = strips * ytiles, resident = (long long)per_sm * num_sms;
  long long nzc = 1, zchunk = d.n[2];
  double best = -1.0;
  for (long long c = 1; c <= 16; ++c) {
    const long long zc = (d.n[2] + c - 1) / c;
    if (c > 1 && zc < 8 * R) break;
    const long long blocks = tiles * ((d.n[2] + zc - 1) / zc), waves = (blocks + resident - 1) / resident;
    const double eff = (double)blocks / (double)(waves * resident) * (double)zc / (double)(zc + 2 * R);
    if (eff > best + 1e-9) {
      best = eff;
      nzc = (d.n[2] + zc - 1) / zc;
      zchunk = zc;
    }
  }
  if (strips > 0x7fffffffLL || ytiles > 65535 || nzc > 65535) return cudaErrorInvalidConfiguration;
  smooth_xyz4_kernel<R, NW, Epi><<<dim3((unsigned)strips, (unsigned)ytiles, (unsigned)nzc), 32 * NW, 0, st>>>(
      in, d, k[0], k[1], k[2], zchunk, epi);
  return cudaGetLastError();
}

/* The march for one smoothing: its radius (the same on all axes) and kernels. */
struct Xyz4Plan {
  int r;
  AxisKernel<float, kTileR> k[3];
};

/* Whether the march applies (equal radii 1..4, rows of whole float4s, a
 * 16-byte aligned source; r from smooth_radii) and, if so, its plan. */
inline bool xyz4_plan(const int r[3], const Dims &d, const double sigma_vox[3], const void *src, Xyz4Plan *p) {
  if (!(r[0] == r[1] && r[1] == r[2] && r[0] >= 1 && r[0] <= kWalk4MaxR && d.n[0] % 4 == 0 &&
        (uintptr_t)src % 16 == 0))
    return false;
  p->r = r[0];
  for (int a = 0; a < 3; ++a) smooth_kernel_build(sigma_vox[a], d.n[a], r[a], &p->k[a]);
  return true;
}

/* NW output rows per block (y halo 2R / NW): 16 for R <= 2, 12 for R >= 3 (16
 * spills there at 64 registers); GIGAREG_CUDA_SMOOTH_NW forces 8, 16 or
 * (R >= 3) 12 (measurements). */
template <class Epi>
inline cudaError_t launch_xyz4(const Xyz4Plan &pl, const Dims &d, int num_sms, cudaStream_t st, const float *in,
                               const Epi &epi) {
  const char *env = getenv("GIGAREG_CUDA_SMOOTH_NW");
  const int r = pl.r;
  int nw = env ? atoi(env) : 0;
  if (nw != 8 && nw != 16 && !(nw == 12 && r >= 3)) nw = r <= 2 ? 16 : 12;
  const AxisKernel<float, kTileR>(&k)[3] = pl.k;
#define GR_XYZ4(R_)                                                                           \
  case R_:                                                                                    \
    return nw == 8 ? launch_xyz4_r<R_, 8>(d, k, num_sms, st, in, epi)                         \
                   : launch_xyz4_r<R_, 16>(d, k, num_sms, st, in, epi);
#define GR_XYZ4_12(R_)                                                                        \
  case R_:                                                                                    \
    return nw == 8    ? launch_xyz4_r<R_, 8>(d, k, num_sms, st, in, epi)                      \
           : nw == 12 ? launch_xyz4_r<R_, 12>(d, k, num_sms, st, in, epi)                     \
                      : launch_xyz4_r<R_, 16>(d, k, num_sms, st, in, epi);
  switch (r) {
    GR_XYZ4(1) GR_XYZ4(2) GR_XYZ4_12(3) GR_XYZ4_12(4)
    default: return cudaErrorInvalidValue;
  }
#undef GR_XYZ4
#undef GR_XYZ4_12
}

}  // namespace grcu
