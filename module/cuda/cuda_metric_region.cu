/* Grid Parallel windowed metric of the CUDA backend (backend.h: metric_region),
 * the device twin of cpu_metric_region (cpu_metric.c, and the window parts of
 * cpu_mse.c, cpu_mi.c, cpu_lncc.c). NCC is not available on a window (as on
 * the CPU).
 *
 * Bitwise the CPU's results, by construction:
 *   - per-voxel work (warp or presampled values, validity, losses, alpha
 *     fields, dL/dy, grad_u) runs one thread per voxel with the CPU's
 *     expressions through the non-contracting intrinsics of cuda_common.cuh;
 *   - LNCC box sums are separable passes in the CPU's order (z, then y, then
 *     x, taps increasing, in-window taps only), partial sums kept in scratch;
 *   - reductions follow the CPU's order exactly: MSE and MI add a plane's
 *     voxels in row-major order on one thread per owned plane (per-voxel terms
 *     come from scratch arrays, so that thread only streams and adds); LNCC adds
 *     each row on one thread and the rows of a plane in order on one thread per
 *     plane, like cpu_lncc.c's row partials. Integer parts (counts, the MI
 *     histogram) use 64-bit atomics (exact, order-free).
 * So the per-plane partials written to reg->partials (host memory) equal the
 * CPU backend's, and a sharded GPU run sums them like a sharded CPU run.
 * The price is a sequential pass per plane (one thread streams nx*ny voxels);
 * fine for correctness, a candidate for a two-level row/plane scheme later.
 *
 * Scratch per call (backend pool): MSE / MI: 33 bytes per owned voxel; LNCC:
 * ~165 bytes per stored voxel (W, grad W, validity, 4 alpha fields, cc, dL/dy,
 * two 5-field box-sum passes) plus 13 doubles per row. */
#include <math.h>
#include <string.h>
#include <vector>
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"
#include "cuda_mi_rule.cuh"
#include "kernels/cuda_entry.h"

namespace grcu {
namespace {

constexpr double kLnccEps = 1e-5;

struct RegArgs {
  WarpMap map;          /* f = the stored window (n[2] = nz, nvox = window voxels) */
  MetricImages im;      /* moving / mmask may be NULL with presampled values */
  const double *pre_w, *pre_g, *pre_mm;
  long long zoff;       /* global index of stored plane 0 */
  long long own0, own1; /* local owned planes */
  long long nz_global;
  bool want_affine;
};

/* The MSE/MI validity rule and sample on a window (cpu_metric_warp). */
__device__ __forceinline__ bool region_warp(const RegArgs &a, long long i, long long j, long long kl, long long v,
                                            double *w, double *g_phys) {
  if (!a.pre_w) return metric_warp(a.map, a.im, i, j, kl + a.zoff, v, w, g_phys);
  if (a.im.fmask && !(a.im.fmask[v] > 0.5f)) return false;
  double c[3];
  metric_index(a.map, a.im.disp, i, j, kl + a.zoff, v, c);
  if (!(index_inside(c[0], a.map.m.n[0]) && index_inside(c[1], a.map.m.n[1]) && index_inside(c[2], a.map.m.n[2])))
    return false;
  if (a.pre_mm && !(a.pre_mm[v] > 0.5)) return false;
  *w = a.pre_w[v];
  if (g_phys) {
    const long long n = a.map.f.nvox;
    const double gi[3] = {a.pre_g[v], a.pre_g[n + v], a.pre_g[2 * n + v]};
    grad_idx_to_phys(a.map.P, gi, g_phys);
  }
  return true;
}

__device__ __forceinline__ void voxel_ijk(const RegArgs &a, long long v, long long *i, long long *j, long long *kl) {
  const long long nx = a.map.f.n[0], nxy = a.map.f.nxy;
  *kl = v / nxy;
  const long long rem = v - *kl * nxy;
  *j = rem / nx;
  *i = rem - *j * nx;
}

/* acc += dL/dy [x, 1]^T without contraction (cpu_affine_accum). */
__device__ __forceinline__ void affine_accum_nc(double acc[12], const double d[3], const double x[3]) {
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    acc[r * 4 + 0] = dadd(acc[r * 4 + 0], dmul(d[r], x[0]));
    acc[r * 4 + 1] = dadd(acc[r * 4 + 1], dmul(d[r], x[1]));
    acc[r * 4 + 2] = dadd(acc[r * 4 + 2], dmul(d[r], x[2]));
    acc[r * 4 + 3] = dadd(acc[r * 4 + 3], d[r]);
  }
}

/* ---- plane reduction shared by MSE and MI ------------------------------------------ */
/* One thread per owned plane p (local plane own0 + p): in row-major order, over
 * the valid voxels, part[p*K + 0] += loss, part[p*K + 1] += 1, and (want_affine)
 * part[p*K + 2 + q] += the affine terms of d = dL/dy. K = 14 (cpu_mse.c layout). */
__global__ void plane_chain_kernel(const RegArgs a, const unsigned char *__restrict__ valid,
                                   const double *__restrict__ loss, const double *__restrict__ dly, bool use_loss,
                                   bool use_aff, double *__restrict__ part) {
  const long long nk = a.own1 - a.own0;
  const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= nk) return;
  const long long nx = a.map.f.n[0], ny = a.map.f.n[1], nxy = a.map.f.nxy, nown = nk * nxy;
  const long long kl = a.own0 + p;
  double s = 0.0, cnt = 0.0, aff[12];
#pragma unroll
  for (int q = 0; q < 12; ++q) aff[q] = 0.0;
  for (long long j = 0; j < ny; ++j) {
    for (long long i = 0; i < nx; ++i) {
      const long long o = p * nxy + j * nx + i; /* owned-voxel index */
      if (!valid[o]) continue;
      if (use_loss) s = dadd(s, loss[o]);
      cnt = dadd(cnt, 1.0);
      if (use_aff) {
        const long long v = kl * nxy + j * nx + i;
        double x[3];
        metric_xphys(a.map, a.im.disp, i, j, kl + a.zoff, v, x);
        const double d[3] = {dly[o], dly[nown + o], dly[2 * nown + o]};
        affine_accum_nc(aff, d, x);
      }
    }
  }
  double *out = part + p * 14;
  out[0] = s;
  out[1] = cnt;
#pragma unroll
  for (int q = 0; q < 12; ++q) out[2 + q] = aff[q];
}

/* ---- MSE ---------------------------------------------------------------------------------- */
__global__ void mse_voxel_kernel(const RegArgs a, bool need_grad, double inv_n, unsigned char *__restrict__ valid,
                                 double *__restrict__ loss, double *__restrict__ dly) {
  const long long nxy = a.map.f.nxy, nown = (a.own1 - a.own0) * nxy, base = a.own0 * nxy;
  const long long stride = (long long)gridDim.x * blockDim.x;
  float *gu = a.im.grad_u;
  for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < nown; o += stride) {
    const long long v = base + o;
    long long i, j, kl;
    voxel_ijk(a, v, &i, &j, &kl);
    double w, g[3];
    if (!region_warp(a, i, j, kl, v, &w, need_grad ? g : nullptr)) {
      valid[o] = 0;
      loss[o] = 0.0;
      if (gu) grad_u_zero(gu, a.map.f.nvox, v);
      if (dly) dly[o] = dly[nown + o] = dly[2 * nown + o] = 0.0;
      continue;
    }
    valid[o] = 1;
    const double e = dsub(w, (double)a.im.fixed[v]);
    loss[o] = dmul(e, e);
    if (!need_grad) continue;
    const double e2 = dmul(2.0, e);
    const double d[3] = {dmul(e2, g[0]), dmul(e2, g[1]), dmul(e2, g[2])};
    if (gu) {
      /* cpu_grad_u_store, then cpu_grad_u_scale's float(double(g) * (1/N)) */
      const long long n = a.map.f.nvox;
      const float g0 = (float)dot3(a.map.At[0], d[0], a.map.At[1], d[1], a.map.At[2], d[2]);
      const float g1 = (float)dot3(a.map.At[3], d[0], a.map.At[4], d[1], a.map.At[5], d[2]);
      const float g2 = (float)dot3(a.map.At[6], d[0], a.map.At[7], d[1], a.map.At[8], d[2]);
      gu[v] = (float)dmul((double)g0, inv_n);
      gu[n + v] = (float)dmul((double)g1, inv_n);
      gu[2 * n + v] = (float)dmul((double)g2, inv_n);
    }
    if (dly) {
      dly[o] = d[0];
      dly[nown + o] = d[1];
      dly[2 * nown + o] = d[2];
    }
  }
}

/* ---- MI ------------------------------------------------------------------------------------ */
/* Joint histogram of the owned voxels: per-block histogram in shared memory
 * when it fits (SMEM), then added into the global one; integer adds, so the
 * result does not depend on the schedule. */
template <bool SMEM>
__global__ void mi_region_hist_kernel(const RegArgs a, const MiSetup s, unsigned long long *__restrict__ ghist,
                                      unsigned long long *__restrict__ count) {
  extern __shared__ unsigned long long sh_rhist[];
  const long long nxy = a.map.f.nxy, nown = (a.own1 - a.own0) * nxy, base = a.own0 * nxy;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const int B = s.bins, bb = B * B;
  unsigned long long *hist = SMEM ? sh_rhist : ghist;
  if (SMEM) {
    for (int q = threadIdx.x; q < bb; q += blockDim.x) sh_rhist[q] = 0ull;
    __syncthreads();
  }
  unsigned long long mine = 0;
  for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < nown; o += stride) {
    const long long v = base + o;
    long long i, j, kl;
    voxel_ijk(a, v, &i, &j, &kl);
    double w;
    if (!region_warp(a, i, j, kl, v, &w, nullptr)) continue;
    bool inside;
    const double xi = mi_xi(s.m, w, &inside);
    const double flv = floor(xi);
    const long long fl = (long long)flv;
    double wt[4];
    mi_cubic(dsub(xi, flv), wt);
    unsigned long long *hr = hist + (long long)mi_fixed_bin(s, (double)a.im.fixed[v]) * B + (fl - 1);
    for (int t = 0; t < 4; ++t)
      atomicAdd(hr + t, (unsigned long long)(long long)dadd(dmul(wt[t], s.scale), 0.5));
    ++mine;
  }
  warp_count_add(count, mine);
  if (SMEM) {
    __syncthreads();
    for (int q = threadIdx.x; q < bb; q += blockDim.x)
      if (sh_rhist[q]) atomicAdd(ghist + q, sh_rhist[q]);
  }
}

__global__ void mi_region_grad_kernel(const RegArgs a, const MiSetup s, const double *__restrict__ L, double coef,
                                      unsigned char *__restrict__ valid, double *__restrict__ dly) {
  const long long nxy = a.map.f.nxy, nown = (a.own1 - a.own0) * nxy, base = a.own0 * nxy;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const int B = s.bins;
  float *gu = a.im.grad_u;
  for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < nown; o += stride) {
    const long long v = base + o;
    long long i, j, kl;
    voxel_ijk(a, v, &i, &j, &kl);
    double w, g[3];
    if (!region_warp(a, i, j, kl, v, &w, g)) {
      if (gu) grad_u_zero(gu, a.map.f.nvox, v);
      if (dly) {
        valid[o] = 0;
        dly[o] = dly[nown + o] = dly[2 * nown + o] = 0.0;
      }
      continue;
    }
    if (dly) valid[o] = 1;
    bool inside;
    const double xi = mi_xi(s.m, w, &inside);
    double dw = 0.0;
    if (inside) {
      const double flv = floor(xi);
      const long long fl = (long long)flv;
      double dt[4];
      mi_cubic_deriv(dsub(xi, flv), dt);
      const double *Lr = L + (long long)mi_fixed_bin(s, (double)a.im.fixed[v]) * B + (fl - 1);
      dw = dmul(coef, dadd(dadd(dadd(dmul(Lr[0], dt[0]), dmul(Lr[1], dt[1])), dmul(Lr[2], dt[2])), dmul(Lr[3], dt[3])));
    }
    const double d[3] = {dmul(dw, g[0]), dmul(dw, g[1]), dmul(dw, g[2])};
    if (gu) grad_u_store(a.map, gu, v, d);
    if (dly) {
      dly[o] = d[0];
      dly[nown + o] = d[1];
      dly[2 * nown + o] = d[2];
    }
  }
}

/* ---- LNCC ---------------------------------------------------------------------------------- */
/* The stored planes are processed in chunks of planes (LnccChunk), each with its
 * own 2r-plane margins recomputed, so the scratch fields (up to ~165 bytes per
 * voxel) cover one chunk instead of the whole slab: at 1024^2 planes a chunk
 * holds ~6 GB whatever the slab's depth. Every output voxel is computed by the
 * same operations from the same inputs as without chunks (the z taps of the
 * planes a chunk needs never reach past its stored planes unless the slab's own
 * edge clips them too), so chunking changes no bit. */
struct LnccChunk {
  long long q0, q1; /* stored planes of the chunk (window-local): scratch covers [q0, q1) */
  long long c0, c1; /* output planes (window-local; the chunks tile the stored planes) */
  long long sb, sn; /* scratch base voxel q0 * nxy and scratch voxels (q1 - q0) * nxy */
};

struct LnccBufs {
  double *w;            /* sn: warped moving (double) */
  float *g;             /* 3 sn: grad_phys W (float, as the CPU's ring) */
  unsigned char *valid; /* sn or NULL (no masks: every voxel valid) */
  double *alpha;        /* 4 sn: alpha, alpha mu_f, beta, beta mu_w */
  double *cc;           /* sn: cc where valid, else 0 */
  double *dly;          /* 3 sn: dL/dy (want_affine) */
};

/* cpu_lncc.c lncc_valid, c the snapped index. */
__device__ __forceinline__ bool lncc_valid(const RegArgs &a, long long v, const double c[3]) {
  if (a.im.fmask && !(a.im.fmask[v] > 0.5f)) return false;
  if (a.pre_w) return !a.pre_mm || a.pre_mm[v] > 0.5;
  if (a.im.mmask) {
    const long long o = nearest_offset(a.map.m, c, false);
    if (o < 0 || !(a.im.mmask[o] > 0.5f)) return false;
  }
  return true;
}

__global__ void lncc_count_kernel(const RegArgs a, unsigned long long *__restrict__ count) {
  const long long nxy = a.map.f.nxy, nown = (a.own1 - a.own0) * nxy, base = a.own0 * nxy;
  const long long stride = (long long)gridDim.x * blockDim.x;
  unsigned long long mine = 0;
  for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < nown; o += stride) {
    const long long v = base + o;
    long long i, j, kl;
    voxel_ijk(a, v, &i, &j, &kl);
    if (a.im.fmask && !(a.im.fmask[v] > 0.5f)) continue;
    double c[3];
    metric_index(a.map, a.im.disp, i, j, kl + a.zoff, v, c);
    mine += lncc_valid(a, v, c) ? 1ull : 0ull;
  }
  warp_count_add(count, mine);
}

/* cpu_lncc.c warp_row, every stored voxel of the chunk (x = scratch index, v = window index). */
__global__ void lncc_warp_kernel(const RegArgs a, const LnccChunk ch, bool want_grad, LnccBufs b) {
  const long long n = a.map.f.nvox, sn = ch.sn;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x; x < sn; x += stride) {
    const long long v = ch.sb + x;
    long long i, j, kl;
    voxel_ijk(a, v, &i, &j, &kl);
    double c[3];
    metric_index(a.map, a.im.disp, i, j, kl + a.zoff, v, c);
    if (a.pre_w) {
      b.w[x] = a.pre_w[v];
      if (want_grad) {
        const double gi[3] = {a.pre_g[v], a.pre_g[n + v], a.pre_g[2 * n + v]};
        double gp[3];
        grad_idx_to_phys(a.map.P, gi, gp);
        b.g[x] = (float)gp[0];
        b.g[sn + x] = (float)gp[1];
        b.g[2 * sn + x] = (float)gp[2];
      }
    } else if (want_grad) {
      double gi[3], gp[3];
      b.w[x] = sample_linear_grad_zero(a.im.moving, a.map.m, c, gi);
      grad_idx_to_phys(a.map.P, gi, gp);
      b.g[x] = (float)gp[0];
      b.g[sn + x] = (float)gp[1];
      b.g[2 * sn + x] = (float)gp[2];
    } else {
      b.w[x] = sample_linear_zero(a.im.moving, a.map.m, c);
    }
    if (b.valid) b.valid[x] = lncc_valid(a, v, c) ? 1 : 0;
  }
}

__device__ __forceinline__ long long win_count(long long i, long long r, long long n) {
  const long long lo = i - r < 0 ? 0 : i - r, hi = i + r > n - 1 ? n - 1 : i + r;
  return hi - lo + 1;
}

/* Box sums, separable like cpu_lncc.c (zsum_*_row, yx_sum_row), in the same
 * order: Z = sum over the z taps (increasing, clipped to the stored block; the
 * statistics start from the first tap, the alpha fields from 0), then
 * T = 0 + the Z of the y taps (increasing), then S = 0 + the T of the x taps
 * (increasing). Each pass keeps its partial sums in a scratch field (nq doubles
 * per chunk voxel), so the result is the CPU's sum, operation for operation. */

/* Z pass. STATS: the 5 statistics of f and w; else the 4 alpha fields. */
template <bool STATS>
__global__ void lncc_zsum_kernel(const RegArgs a, const LnccChunk ch, int r, LnccBufs b, double *__restrict__ Z) {
  const long long sn = ch.sn, nxy = a.map.f.nxy, nzc = ch.q1 - ch.q0;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const float *f = a.im.fixed + ch.sb;
  for (long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x; x < sn; x += stride) {
    const long long k = x / nxy, ij = x - k * nxy;
    const long long k0 = k - r < 0 ? 0 : k - r, k1 = k + r > nzc - 1 ? nzc - 1 : k + r;
    if (STATS) {
      double z[5];
      for (long long kk = k0; kk <= k1; ++kk) {
        const long long o = kk * nxy + ij;
        const double fv = f[o], wv = b.w[o];
        if (kk == k0) {
          z[0] = fv;
          z[1] = wv;
          z[2] = dmul(fv, fv);
          z[3] = dmul(wv, wv);
          z[4] = dmul(fv, wv);
        } else {
          z[0] = dadd(z[0], fv);
          z[1] = dadd(z[1], wv);
          z[2] = dadd(z[2], dmul(fv, fv));
          z[3] = dadd(z[3], dmul(wv, wv));
          z[4] = dadd(z[4], dmul(fv, wv));
        }
      }
#pragma unroll
      for (int q = 0; q < 5; ++q) Z[q * sn + x] = z[q];
    } else {
      double z[4] = {0.0, 0.0, 0.0, 0.0};
      for (long long kk = k0; kk <= k1; ++kk) {
        const long long o = kk * nxy + ij;
#pragma unroll
        for (int q = 0; q < 4; ++q) z[q] = dadd(z[q], b.alpha[q * sn + o]);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) Z[q * sn + x] = z[q];
    }
  }
}

/* Y pass over nq fields: T = 0 + Z(j0) + ... + Z(j1). */
template <int NQ>
__global__ void lncc_ysum_kernel(const RegArgs a, const LnccChunk ch, int r, const double *__restrict__ Z,
                                 double *__restrict__ T) {
  const long long sn = ch.sn, nx = a.map.f.n[0], ny = a.map.f.n[1], nxy = a.map.f.nxy;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x; x < sn; x += stride) {
    const long long k = x / nxy, rem = x - k * nxy, j = rem / nx, i = rem - j * nx;
    const long long j0 = j - r < 0 ? 0 : j - r, j1 = j + r > ny - 1 ? ny - 1 : j + r;
    double t[NQ];
#pragma unroll
    for (int q = 0; q < NQ; ++q) t[q] = 0.0;
    for (long long jj = j0; jj <= j1; ++jj) {
      const long long o = k * nxy + jj * nx + i;
#pragma unroll
      for (int q = 0; q < NQ; ++q) t[q] = dadd(t[q], Z[q * sn + o]);
    }
#pragma unroll
    for (int q = 0; q < NQ; ++q) T[q * sn + x] = t[q];
  }
}

/* X pass: S = 0 + T(i-r) + ... + T(i+r) (in-grid taps), x the scratch index. */
template <int NQ>
__device__ __forceinline__ void lncc_xsum(const RegArgs &a, const LnccChunk &ch, int r, const double *__restrict__ T,
                                          long long x, long long i, double S[NQ]) {
  const long long sn = ch.sn, nx = a.map.f.n[0];
#pragma unroll
  for (int q = 0; q < NQ; ++q) S[q] = 0.0;
  for (long long dx = -r; dx <= r; ++dx) {
    const long long ii = i + dx;
    if (ii < 0 || ii >= nx) continue;
#pragma unroll
    for (int q = 0; q < NQ; ++q) S[q] = dadd(S[q], T[q * sn + x + dx]);
  }
}

/* cc and alpha fields of every stored voxel of the chunk (cpu_lncc.c stats_row), from the y-summed statistics T. */
__global__ void lncc_stats_kernel(const RegArgs a, const LnccChunk ch, int r, bool want_grad, LnccBufs b,
                                  const double *__restrict__ T) {
  const long long sn = ch.sn, nx = a.map.f.n[0], ny = a.map.f.n[1];
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x; x < sn; x += stride) {
    long long i, j, k;
    voxel_ijk(a, ch.sb + x, &i, &j, &k);
    double S[5];
    lncc_xsum<5>(a, ch, r, T, x, i, S);
    /* 1/n from the window counts (cpu_lncc.c: cnt0[i] * (cnt1[j] * cnt2[kg])) */
    const int nyz = (int)win_count(j, r, ny) * (int)win_count(k + a.zoff, r, a.nz_global);
    const int cnt = (int)win_count(i, r, nx) * nyz;
    const double inv_n = ddiv(1.0, (double)cnt);
    const double sf = S[0], sw = S[1];
    const double A = dsub(S[4], dmul(dmul(sf, sw), inv_n));
    const double Bt = dsub(S[2], dmul(dmul(sf, sf), inv_n)), Ct = dsub(S[3], dmul(dmul(sw, sw), inv_n));
    const double B = Bt > 0.0 ? Bt : 0.0, C = Ct > 0.0 ? Ct : 0.0;
    const double inv_d = ddiv(1.0, dadd(dmul(B, C), kLnccEps));
    const bool ok = b.valid ? b.valid[x] != 0 : true;
    b.cc[x] = ok ? dmul(dmul(A, A), inv_d) : 0.0;
    if (!want_grad) continue;
    const double alpha = ok ? dmul(dmul(2.0, A), inv_d) : 0.0;
    const double beta = dmul(dmul(dmul(alpha, A), B), inv_d);
    b.alpha[x] = alpha;
    b.alpha[sn + x] = dmul(dmul(alpha, sf), inv_n);
    b.alpha[2 * sn + x] = beta;
    b.alpha[3 * sn + x] = dmul(dmul(beta, sw), inv_n);
  }
}

/* Gradient of the chunk's output planes (cpu_lncc.c output_row), from the y-summed alpha fields T. */
__global__ void lncc_output_kernel(const RegArgs a, const LnccChunk ch, int r, double inv_n_valid, LnccBufs b,
                                   const double *__restrict__ T) {
  const long long sn = ch.sn, nxy = a.map.f.nxy, x0 = (ch.c0 - ch.q0) * nxy, nout = (ch.c1 - ch.c0) * nxy;
  const long long stride = (long long)gridDim.x * blockDim.x;
  float *gu = a.im.grad_u;
  for (long long o = (long long)blockIdx.x * blockDim.x + threadIdx.x; o < nout; o += stride) {
    const long long x = x0 + o, v = ch.sb + x;
    long long i, j, k;
    voxel_ijk(a, v, &i, &j, &k);
    double S[4];
    lncc_xsum<4>(a, ch, r, T, x, i, S);
    const double fv = (double)a.im.fixed[v], wv = b.w[x];
    /* -inv_n * (f Sa - Sam - w Sb + Sbm), left to right */
    const double dw = dmul(-inv_n_valid, dadd(dsub(dsub(dmul(fv, S[0]), S[1]), dmul(wv, S[2])), S[3]));
    const double d[3] = {dmul(dw, (double)b.g[x]), dmul(dw, (double)b.g[sn + x]), dmul(dw, (double)b.g[2 * sn + x])};
    if (gu) grad_u_store(a.map, gu, v, d);
    if (b.dly) {
      b.dly[x] = d[0];
      b.dly[sn + x] = d[1];
      b.dly[2 * sn + x] = d[2];
    }
  }
}

/* Row sums of owned planes [k0, k1) of a chunk: rows[(p*ny + j)*13 + 0] = sum
 * of cc along the row of plane k0 + p, [1..12] = its affine sums (want_affine),
 * one thread per row, i increasing. */
__global__ void lncc_rows_kernel(const RegArgs a, const LnccChunk ch, long long k0, long long k1, LnccBufs b, bool aff,
                                 double *__restrict__ rows) {
  const long long nx = a.map.f.n[0], ny = a.map.f.n[1], nxy = a.map.f.nxy, sn = ch.sn;
  const long long nrows = (k1 - k0) * ny;
  const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= nrows) return;
  const long long p = t / ny, j = t - p * ny, kl = k0 + p;
  double s = 0.0, acc[12];
#pragma unroll
  for (int q = 0; q < 12; ++q) acc[q] = 0.0;
  for (long long i = 0; i < nx; ++i) {
    const long long v = kl * nxy + j * nx + i, x = v - ch.sb;
    s = dadd(s, b.cc[x]);
    if (aff) {
      double xp[3];
      metric_xphys(a.map, a.im.disp, i, j, kl + a.zoff, v, xp);
      const double d[3] = {b.dly[x], b.dly[sn + x], b.dly[2 * sn + x]};
      affine_accum_nc(acc, d, xp);
    }
  }
  double *o = rows + t * 13;
  o[0] = s;
#pragma unroll
  for (int q = 0; q < 12; ++q) o[1 + q] = acc[q];
}

/* Plane sums of the rows, in row order: pp[p*13 + q]. */
__global__ void lncc_planes_kernel(long long nk, long long ny, bool aff, const double *__restrict__ rows,
                                   double *__restrict__ pp) {
  const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= nk) return;
  double s[13];
#pragma unroll
  for (int q = 0; q < 13; ++q) s[q] = 0.0;
  for (long long j = 0; j < ny; ++j) {
    const double *row = rows + (p * ny + j) * 13;
    s[0] = dadd(s[0], row[0]);
    if (aff)
      for (int q = 1; q < 13; ++q) s[q] = dadd(s[q], row[q]);
  }
#pragma unroll
  for (int q = 0; q < 13; ++q) pp[p * 13 + q] = s[q];
}

/* ---- host side --------------------------------------------------------------------------- */
/* A set of scratch blocks released together. */
struct Scratch {
  gr_backend *be;
  void *p[16];
  int n = 0;
  explicit Scratch(gr_backend *b) : be(b) {}
  ~Scratch() {
    for (int k = 0; k < n; ++k) scratch_free(be, p[k]);
  }
  template <class T>
  T *get(size_t count, const char *what) {
    void *q = scratch_alloc(be, count ? count * sizeof(T) : 1, what);
    if (q) p[n++] = q;
    return (T *)q;
  }
};

inline unsigned blocks_for(long long n, int per) {
  long long b = (n + per - 1) / per;
  return (unsigned)(b < 1 ? 1 : b);
}

gr_status region_empty(const RegArgs &a) {
  return gr_error(GR_ERR_EMPTY, "no overlap between fixed and warped moving image (%lld fixed voxels%s%s)",
                  (long long)a.map.f.nvox, a.im.fmask ? ", fixed mask" : "",
                  (a.im.mmask || a.pre_mm) ? ", moving mask" : "");
}

/* grad_u = 0 on the stored planes outside [own0, own1) (cpu_grad_u_zero_unowned). */
gr_status zero_unowned(const RegArgs &a, cudaStream_t st) {
  float *g = a.im.grad_u;
  if (!g) return GR_OK;
  const long long P = a.map.f.nxy, nz = a.map.f.n[2], n = a.map.f.nvox;
  for (int c = 0; c < 3; ++c) {
    float *gc = g + c * n;
    if (a.own0 > 0) GRCU_TRY(cudaMemsetAsync(gc, 0, (size_t)(a.own0 * P) * sizeof(float), st));
    if (a.own1 < nz) GRCU_TRY(cudaMemsetAsync(gc + a.own1 * P, 0, (size_t)((nz - a.own1) * P) * sizeof(float), st));
  }
  return GR_OK;
}

gr_status region_mse(gr_backend *be, const RegArgs &a, gr_metric_region *reg, gr_metric_result *res) {
  cudaStream_t st = impl_of(be)->stream;
  const long long nk = a.own1 - a.own0, nown = nk * a.map.f.nxy;
  const bool counting = reg->phase == GR_METRIC_PHASE_COUNT;
  const bool need_grad = !counting && (a.im.grad_u || a.want_affine);
  const double inv_n_pre = counting || reg->n_global <= 0 ? 1.0 : 1.0 / (double)reg->n_global;
  Scratch sc(be);
  unsigned char *valid = sc.get<unsigned char>((size_t)nown, "MSE validity");
  double *loss = sc.get<double>((size_t)nown, "MSE losses");
  double *dly = a.want_affine && !counting ? sc.get<double>((size_t)nown * 3, "MSE dL/dy") : nullptr;
  double *part = sc.get<double>((size_t)(nk > 0 ? nk : 1) * 14, "MSE plane partials");
  if (!valid || !loss || (a.want_affine && !counting && !dly) || !part) return GR_ERR_NOMEM;
  if (nown > 0) {
    mse_voxel_kernel<<<flat_blocks(nown), kBlock, 0, st>>>(a, need_grad, inv_n_pre, valid, loss, dly);
    GRCU_LAUNCHED("metric_region MSE voxel kernel");
    plane_chain_kernel<<<blocks_for(nk, 64), 64, 0, st>>>(a, valid, loss, dly, true, dly != nullptr, part);
    GRCU_LAUNCHED("metric_region MSE plane kernel");
  }
  std::vector<double> hp((size_t)(nk > 0 ? nk : 1) * 14, 0.0);
  gr_status s = fetch(be, hp.data(), part, (size_t)nk * 14 * sizeof(double));
  if (s != GR_OK) return s;
  double tot[14];
  for (int q = 0; q < 14; ++q) tot[q] = 0.0;
  for (long long k = 0; k < nk; ++k)
    for (int q = 0; q < 14; ++q) tot[q] += hp[k * 14 + q];
  res->n_valid = (int64_t)tot[1];
  if (counting) return GR_OK;
  for (long long k = 0; k < nk; ++k) {
    double *p = reg->partials + k * GR_METRIC_PARTIALS;
    p[0] = hp[k * 14 + 0];
    for (int q = 0; q < 12; ++q) p[1 + q] = hp[k * 14 + 2 + q];
  }
  if ((s = zero_unowned(a, st)) != GR_OK) return s;
  const double n = (double)reg->n_global;
  if (n <= 0.0) return region_empty(a);
  const double inv_n = 1.0 / n;
  res->value = tot[0] * inv_n;
  reg->value_scale = reg->affine_scale = inv_n;
  if (a.want_affine)
    for (int q = 0; q < 12; ++q) res->grad_affine[q] = tot[2 + q] * inv_n;
  return GR_OK;
}

gr_status region_mi(gr_backend *be, const gr_metric_spec *spec, const RegArgs &a, long long nvox_global,
                    gr_metric_region *reg, gr_metric_result *res) {
  cudaStream_t st = impl_of(be)->stream;
  MiSetup s;
  gr_status e = gr_mi_setup_make(spec, nvox_global, "cuda", &s);
  if (e != GR_OK) return e;
  const int B = s.bins;
  const size_t bb = (size_t)B * B;
  const long long nk = a.own1 - a.own0, nown = nk * a.map.f.nxy;
  Scratch sc(be);
  if (reg->phase == GR_METRIC_PHASE_COUNT) {
    unsigned long long *hist = sc.get<unsigned long long>(bb + 1, "MI histogram");
    if (!hist) return GR_ERR_NOMEM;
    GRCU_TRY(cudaMemsetAsync(hist, 0, (bb + 1) * sizeof(unsigned long long), st));
    if (nown > 0) {
      const size_t smem = bb * sizeof(unsigned long long);
      if (smem <= 32 * 1024) { /* up to 64 bins: per-block histograms in shared memory, fewer blocks */
        long long nb = (nown + kBlock - 1) / kBlock;
        nb = nb < 4LL * impl_of(be)->num_sms ? nb : 4LL * impl_of(be)->num_sms;
        mi_region_hist_kernel<true><<<(unsigned)(nb > 0 ? nb : 1), kBlock, smem, st>>>(a, s, hist, hist + bb);
      } else {
        mi_region_hist_kernel<false><<<flat_blocks(nown), kBlock, 0, st>>>(a, s, hist, hist + bb);
      }
      GRCU_LAUNCHED("metric_region MI histogram kernel");
    }
    std::vector<int64_t> h(bb + 1);
    e = fetch(be, h.data(), hist, (bb + 1) * sizeof(int64_t));
    if (e != GR_OK) return e;
    memcpy(reg->hist, h.data(), bb * sizeof(int64_t));
    res->n_valid = h[bb];
    return GR_OK;
  }
  /* EVAL: the global histogram and N */
  const int64_t count = reg->n_global;
  if (count == 0) return region_empty(a);
  std::vector<double> L(bb);
  res->value = -gr_mi_value(reg->hist, B, L.data());
  std::vector<double> hp((size_t)(nk > 0 ? nk : 1) * 14, 0.0);
  if (a.im.grad_u || a.want_affine) {
    /* validity and dL/dy per voxel only feed the affine plane sums: a field
     * gradient alone (greedy, SyN) stores neither (25 bytes per voxel) */
    double *dL = sc.get<double>(bb, "MI log table");
    unsigned char *valid = a.want_affine ? sc.get<unsigned char>((size_t)nown, "MI validity") : nullptr;
    double *dly = a.want_affine ? sc.get<double>((size_t)nown * 3, "MI dL/dy") : nullptr;
    double *part = sc.get<double>((size_t)(nk > 0 ? nk : 1) * 14, "MI plane partials");
    if (!dL || (a.want_affine && (!valid || !dly)) || !part) return GR_ERR_NOMEM;
    GRCU_TRY(cudaMemcpyAsync(dL, L.data(), bb * sizeof(double), cudaMemcpyHostToDevice, st));
    const double coef = -s.m.inv_d / (double)count;
    if (nown > 0) {
      mi_region_grad_kernel<<<flat_blocks(nown), kBlock, 0, st>>>(a, s, dL, coef, valid, dly);
      GRCU_LAUNCHED("metric_region MI gradient kernel");
      if (a.want_affine) {
        plane_chain_kernel<<<blocks_for(nk, 64), 64, 0, st>>>(a, valid, nullptr, dly, false, true, part);
        GRCU_LAUNCHED("metric_region MI plane kernel");
      }
    }
    if (a.want_affine) e = fetch(be, hp.data(), part, (size_t)nk * 14 * sizeof(double));
    else e = fetch(be, nullptr, nullptr, 0); /* L must outlive its upload */
    if (e != GR_OK) return e;
    if (a.want_affine) {
      for (int q = 0; q < 12; ++q) res->grad_affine[q] = 0.0;
      for (long long k = 0; k < nk; ++k)
        for (int q = 0; q < 12; ++q) res->grad_affine[q] += hp[k * 14 + 2 + q];
    }
  }
  for (long long k = 0; k < nk; ++k) {
    double *p = reg->partials + k * GR_METRIC_PARTIALS;
    p[0] = 0.0;
    for (int q = 0; q < 12; ++q) p[1 + q] = a.want_affine ? hp[k * 14 + 2 + q] : 0.0;
  }
  reg->value_scale = 0.0;
  reg->affine_scale = 1.0;
  return zero_unowned(a, st);
}

gr_status region_lncc(gr_backend *be, const gr_metric_spec *spec, const RegArgs &a, gr_metric_region *reg,
                      gr_metric_result *res) {
  cudaStream_t st = impl_of(be)->stream;
  const int r = spec->lncc_radius > 0 ? spec->lncc_radius : 2;
  const long long nk = a.own1 - a.own0, nown = nk * a.map.f.nxy, ny = a.map.f.n[1];
  const bool masks = a.im.fmask || a.im.mmask || a.pre_mm;
  Scratch sc(be);
  /* N over the owned planes (cpu_lncc.c lncc_count) */
  int64_t n_valid = nown;
  if (masks) {
    unsigned long long *cnt = sc.get<unsigned long long>(1, "LNCC count");
    if (!cnt) return GR_ERR_NOMEM;
    GRCU_TRY(cudaMemsetAsync(cnt, 0, sizeof *cnt, st));
    if (nown > 0) {
      lncc_count_kernel<<<flat_blocks(nown), kBlock, 0, st>>>(a, cnt);
      GRCU_LAUNCHED("metric_region LNCC count kernel");
    }
    unsigned long long h = 0;
    const gr_status e = fetch(be, &h, cnt, sizeof h);
    if (e != GR_OK) return e;
    n_valid = (int64_t)h;
  }
  res->n_valid = n_valid;
  if (reg->phase == GR_METRIC_PHASE_COUNT) return GR_OK;
  const int64_t n_norm = reg->n_global;
  if (n_norm == 0) return region_empty(a);
  const double inv_n_valid = 1.0 / (double)n_norm;
  const bool want_grad = a.im.grad_u || a.want_affine;
  /* Chunk depth: output planes per chunk so that its scratch stays near the
   * budget (4 GiB; at least 8r + 8 planes, so margins are at most a third of the work). */
  const long long nxy = a.map.f.nxy, nz = a.map.f.n[2];
  const size_t per_voxel = 8 + 8 + (want_grad ? 12 + 32 : 0) + (a.want_affine ? 24 : 0) + (masks ? 1 : 0) + 80;
  long long depth = (long long)(impl_of(be)->region_chunk_bytes / (per_voxel * (size_t)nxy)) - 4 * r;
  if (depth < 8 * r + 8 && impl_of(be)->region_chunk_bytes >= ((size_t)4 << 30)) depth = 8 * r + 8;
  if (depth < 1) depth = 1;
  if (depth > nz) depth = nz;
  const long long maxq = depth + 4 * r < nz ? depth + 4 * r : nz, sn_max = maxq * nxy;
  LnccBufs b;
  memset(&b, 0, sizeof b);
  b.w = sc.get<double>((size_t)sn_max, "LNCC warped");
  b.cc = sc.get<double>((size_t)sn_max, "LNCC cc");
  bool ok = b.w && b.cc;
  if (want_grad) {
    ok = ok && (b.g = sc.get<float>((size_t)sn_max * 3, "LNCC gradient")) != nullptr;
    ok = ok && (b.alpha = sc.get<double>((size_t)sn_max * 4, "LNCC alpha fields")) != nullptr;
  }
  if (a.want_affine) ok = ok && (b.dly = sc.get<double>((size_t)sn_max * 3, "LNCC dL/dy")) != nullptr;
  if (masks) ok = ok && (b.valid = sc.get<unsigned char>((size_t)sn_max, "LNCC validity")) != nullptr;
  double *Zs = ok ? sc.get<double>((size_t)sn_max * 5, "LNCC z box sums") : nullptr;
  double *Ts = Zs ? sc.get<double>((size_t)sn_max * 5, "LNCC y box sums") : nullptr;
  ok = ok && Zs && Ts;
  double *rows = ok ? sc.get<double>((size_t)(nk * ny > 0 ? nk * ny : 1) * 13, "LNCC row partials") : nullptr;
  double *pp = ok ? sc.get<double>((size_t)(nk > 0 ? nk : 1) * 13, "LNCC plane partials") : nullptr;
  if (!ok || !rows || !pp) return GR_ERR_NOMEM;
  /* Chunks cover every stored plane: the gradient is written on the halo
   * planes too (from windows clipped at the window's edge, as cpu_lncc.c does). */
  for (long long c0 = 0; c0 < nz; c0 += depth) {
    LnccChunk ch;
    ch.c0 = c0;
    ch.c1 = c0 + depth < nz ? c0 + depth : nz;
    ch.q0 = ch.c0 - 2 * r > 0 ? ch.c0 - 2 * r : 0;
    ch.q1 = ch.c1 + 2 * r < nz ? ch.c1 + 2 * r : nz;
    ch.sb = ch.q0 * nxy;
    ch.sn = (ch.q1 - ch.q0) * nxy;
    const unsigned nb = flat_blocks(ch.sn);
    lncc_warp_kernel<<<nb, kBlock, 0, st>>>(a, ch, want_grad, b);
    GRCU_LAUNCHED("metric_region LNCC warp kernel");
    lncc_zsum_kernel<true><<<nb, kBlock, 0, st>>>(a, ch, r, b, Zs);
    lncc_ysum_kernel<5><<<nb, kBlock, 0, st>>>(a, ch, r, Zs, Ts);
    lncc_stats_kernel<<<nb, kBlock, 0, st>>>(a, ch, r, want_grad, b, Ts);
    GRCU_LAUNCHED("metric_region LNCC statistics kernels");
    if (want_grad) {
      lncc_zsum_kernel<false><<<nb, kBlock, 0, st>>>(a, ch, r, b, Zs);
      lncc_ysum_kernel<4><<<nb, kBlock, 0, st>>>(a, ch, r, Zs, Ts);
      lncc_output_kernel<<<flat_blocks((ch.c1 - ch.c0) * nxy), kBlock, 0, st>>>(a, ch, r, inv_n_valid, b, Ts);
      GRCU_LAUNCHED("metric_region LNCC gradient kernels");
    }
    const long long r0 = ch.c0 > a.own0 ? ch.c0 : a.own0, r1 = ch.c1 < a.own1 ? ch.c1 : a.own1;
    if (r1 > r0) {
      lncc_rows_kernel<<<blocks_for((r1 - r0) * ny, 128), 128, 0, st>>>(a, ch, r0, r1, b, a.want_affine,
                                                                      rows + (r0 - a.own0) * ny * 13);
      GRCU_LAUNCHED("metric_region LNCC row kernel");
    }
  }
  if (nk > 0) {
    lncc_planes_kernel<<<blocks_for(nk, 64), 64, 0, st>>>(nk, ny, a.want_affine, rows, pp);
    GRCU_LAUNCHED("metric_region LNCC plane kernel");
  }
  std::vector<double> hp((size_t)(nk > 0 ? nk : 1) * 13, 0.0);
  const gr_status e = fetch(be, hp.data(), pp, (size_t)nk * 13 * sizeof(double));
  if (e != GR_OK) return e;
  double sum_cc = 0.0, aff[12] = {0};
  for (long long k = 0; k < nk; ++k) {
    sum_cc += hp[k * 13];
    for (int q = 0; q < 12; ++q) aff[q] += hp[k * 13 + 1 + q];
    double *p = reg->partials + k * GR_METRIC_PARTIALS;
    p[0] = hp[k * 13];
    for (int q = 0; q < 12; ++q) p[1 + q] = hp[k * 13 + 1 + q];
  }
  res->value = -sum_cc * inv_n_valid;
  reg->value_scale = -inv_n_valid;
  reg->affine_scale = 1.0;
  if (a.want_affine) memcpy(res->grad_affine, aff, sizeof aff);
  return GR_OK;
}

}  // namespace

gr_status metric_region(gr_backend *be, const gr_metric_spec *spec, gr_metric_region *reg, const gr_grid *fixed_grid,
                        const float *fixed, const float *fixed_mask, const gr_grid *moving_grid, const float *moving,
                        const float *moving_mask, const gr_affine *T, const float *disp, gr_metric_result *res,
                        float *grad_u) {
  if (!reg) return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: NULL region");
  if (spec && (spec->fixed_u16 || spec->moving_u16)) /* the driver keeps sharded (windowed) images in float */
    return gr_error(GR_ERR_UNSUPPORTED, "cuda metric_region: 16-bit images (gr_metric_spec.fixed_u16 / moving_u16) "
                                        "are not supported on a window; pass float images");
  const float *mv = reg->pre_w ? fixed : moving;
  if (!spec || !fixed_grid || !moving_grid || !fixed || !mv || !res)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: NULL spec, grid, image or result pointer");
  if (spec->want_field_grad && !grad_u)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: want_field_grad set but grad_u is NULL");
  for (int d = 0; d < 3; ++d)
    if (fixed_grid->n[d] <= 0 || moving_grid->n[d] <= 0)
      return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: empty grid along axis %d (fixed %lld, moving %lld)", d,
                      (long long)fixed_grid->n[d], (long long)moving_grid->n[d]);
  if (reg->z0 < 0 || reg->nz < 1 || reg->z0 + reg->nz > fixed_grid->n[2] || reg->own0 < reg->z0 ||
      reg->own1 > reg->z0 + reg->nz || reg->own1 < reg->own0)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: window [%lld, %lld) owned [%lld, %lld) of %lld planes",
                    (long long)reg->z0, (long long)(reg->z0 + reg->nz), (long long)reg->own0, (long long)reg->own1,
                    (long long)fixed_grid->n[2]);
  if (reg->pre_w && !reg->pre_g && (spec->want_field_grad || spec->want_affine_grad))
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: presampled values without their gradient");
  if (spec->kind == GR_METRIC_MI && !reg->hist)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: MI needs the histogram buffer");
  if (reg->phase == GR_METRIC_PHASE_EVAL && !reg->partials)
    return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: EVAL needs the partials buffer");
  memset(res, 0, sizeof *res);
  reg->value_scale = reg->affine_scale = 0.0;
  gr_status s = enter(be);
  if (s != GR_OK) return s;

  RegArgs a;
  memset(&a, 0, sizeof a);
  a.map = make_warp_map(fixed_grid, moving_grid, T);
  a.map.f.n[2] = reg->nz; /* the window: per-voxel arrays hold the stored planes */
  a.map.f.nvox = a.map.f.nxy * reg->nz;
  a.im.fixed = fixed;
  a.im.fmask = fixed_mask;
  a.im.moving = moving;
  a.im.mmask = moving_mask;
  a.im.disp = disp;
  const bool counting = reg->phase == GR_METRIC_PHASE_COUNT;
  a.im.grad_u = (!counting && spec->want_field_grad) ? grad_u : nullptr;
  a.want_affine = !counting && spec->want_affine_grad != 0;
  a.pre_w = reg->pre_w;
  a.pre_g = reg->pre_g;
  a.pre_mm = reg->pre_mmask;
  a.zoff = reg->z0;
  a.own0 = reg->own0 - reg->z0;
  a.own1 = reg->own1 - reg->z0;
  a.nz_global = fixed_grid->n[2];
  const long long nvox_global = fixed_grid->n[0] * fixed_grid->n[1] * fixed_grid->n[2];
  switch (spec->kind) {
    case GR_METRIC_MSE: return region_mse(be, a, reg, res);
    case GR_METRIC_NCC:
      return gr_error(GR_ERR_UNSUPPORTED, "cuda metric: NCC on a window (sharded registration) is not implemented; "
                                          "use LNCC, MI or MSE");
    case GR_METRIC_LNCC: return region_lncc(be, spec, a, reg, res);
    case GR_METRIC_MI: return region_mi(be, spec, a, nvox_global, reg, res);
  }
  return gr_error(GR_ERR_INVALID_ARG, "cuda metric_region: unknown metric kind %d", (int)spec->kind);
}

}  // namespace grcu
