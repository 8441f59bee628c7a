/* LNCC dispatch and the double kernel.
 *
 * metric_lncc runs the fp32 kernel of cuda_lncc_fast.cu (radius 1..4) unless
 * the environment sets GIGAREG_CUDA_LNCC=double (this file's kernel, kept as
 * the reference for speed and accuracy comparisons) or lncc_fast_supported
 * declines (larger radius, planes of 2^31 voxels or more, grad_u overlapping
 * an input);
 * GIGAREG_CUDA_EXACT=1 never reaches here (cuda_metric.cu routes LNCC to the
 * bitwise-CPU windowed kernel). 16-bit images reach the fast path only
 * (lncc_reads_u16); cuda_metric.cu gives the double kernel float copies.
 *
 * The double kernel. Local normalised cross-correlation, box window of radius r (cpu_lncc.c
 * semantics: zero-padded warp, in-grid windows, eps = 1e-5, exact gradient
 *   dL/dW(z) = -(1/N) [ f(z) Sa(z) - Sam(z) - w(z) Sb(z) + Sbm(z) ]
 * with Sa, Sam, Sb, Sbm the window sums of alpha, alpha mu_f, beta, beta mu_w).
 *
 * Two kernels, no full-size intermediates beyond the warped image:
 *
 *  1) lncc_warp_kernel<MASKS, double> (cuda_lncc_warp.cuh): W(x) = moving(y(x)) (trilinear, ZERO padding, kept in
 *     double like the CPU's ring: the loss must stay smooth in u in flat,
 *     eps-dominated windows) for every fixed voxel; with masks also a validity
 *     byte and the valid count N (integer atomics). Recomputing W in the halos
 *     of kernel 2 would cost 2-3 extra gathers per voxel, while storing it
 *     costs 8 + 8 bytes per voxel of traffic.
 *
 *  2) lncc_fused_kernel: one block owns a 32 x TY column of output voxels and
 *     a chunk of z, and streams through z-planes keeping everything else on
 *     chip (shared memory, see lncc_smem_bytes; per step see the kernel):
 *     running z-window sums of f, w, f^2, w^2, f w on the (32+4r) x (TY+4r)
 *     halo tile; y- then x-sums, cc and the four alpha fields on the
 *     (32+2r) x (TY+2r) tile; y- and x-sums of the alpha fields on the output
 *     tile into a ring of 2r+1 planes; their z-sum and the gradient at the
 *     output plane 2r behind. Halo re-reads of F and W are served by L2; DRAM
 *     traffic per voxel is u 12 + F 4 + W 8 + moving gather + grad 12 bytes,
 *     plus kernel 1's u 12 + gather + W 8.
 *
 * Precision: everything the CPU keeps in double stays double, except the
 * per-plane box sums of the alpha fields, which are stored as float in the
 * ring (it is the largest shared array). Their relative rounding, ~6e-8,
 * enters the gradient linearly; the value is unaffected. The z-window sums
 * are running sums (add the entering plane, subtract the leaving one), equal
 * to the CPU's direct sums to ~1e-16 relative per plane. Value and affine sums
 * are reduced per block in a fixed order.
 *
 * Scratch: W (8 bytes per voxel), with masks a validity byte per voxel, and
 * 13 doubles per block. */
#include <stdlib.h>
#include <string.h>
#include "cuda_ops.cuh"
#include "cuda_lncc_warp.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

constexpr double kLnccEps = 1e-5;
constexpr int kLnccTX = 32;
constexpr int kLnccK = 13; /* sum cc + 12 affine */

/* ---- kernel 2: fused statistics + gradient -------------------------------------------- */
struct LnccArgs {
  WarpMap map;
  const float *fixed, *moving, *disp;
  const double *W;
  const unsigned char *V;               /* validity (masks only) */
  const unsigned long long *count;      /* device N (masks only) */
  double inv_n;                         /* 1/N when there are no masks */
  float *grad_u;
  int r, TY;
  long long zchunk;                     /* output planes per block */
};

struct LnccTile {
  int r, R, TY, WX, WY, AX, AY, E2, O;
};

__host__ __device__ inline LnccTile lncc_tile(int r, int TY) {
  LnccTile t;
  t.r = r;
  t.R = 2 * r + 1;
  t.TY = TY;
  t.WX = kLnccTX + 4 * r;
  t.WY = TY + 4 * r;
  t.AX = kLnccTX + 2 * r;
  t.AY = TY + 2 * r;
  t.E2 = t.WX * t.WY;
  t.O = kLnccTX * TY;
  return t;
}

/* Dynamic shared memory, in this order (all offsets multiples of 8 bytes):
 *   ZS   5 x E2 doubles        running z-window sums of f, w, f^2, w^2, f w
 *   YS   5 x WX x AY doubles   y-sums                  (reused: 4 x AX x TY alpha y-sums)
 *   AL   4 x AX x AY doubles   alpha fields            (gradient only)
 *   INV  R^3 + 1 doubles       1/n for n = 0..R^3 (the CPU's reciprocal table)
 *   RA   R x 4 x O floats      ring of the alpha fields' xy-box sums (gradient only) */
inline size_t lncc_smem_bytes(const LnccTile &t, bool grad) {
  const size_t r3 = (size_t)t.R * t.R * t.R + 1;
  return 8 * ((size_t)5 * t.E2 + (size_t)5 * t.WX * t.AY + (grad ? (size_t)4 * t.AX * t.AY : 0) + r3) +
         (grad ? (size_t)t.R * 4 * t.O * 4 : 0);
}

__device__ __forceinline__ long long win_lo(long long i, int r) { return i - r < 0 ? 0 : i - r; }
__device__ __forceinline__ long long win_hi(long long i, int r, long long n) { return i + r > n - 1 ? n - 1 : i + r; }

/* One z-chunk of one 32 x TY column. Per plane step pw:
 *   a) running z-sums: each thread adds plane pw's f, w, f^2, w^2, f w at its
 *      halo-tile positions and subtracts plane pw - (2r+1)'s (re-read from
 *      L2: it was read 2r+1 steps ago), so ZS holds the z-window sums of plane
 *      pa = pw - r. (The CPU adds the 2r+1 taps directly; the two agree to
 *      double rounding, ~1e-16 relative per step.)
 *   b) plane pa: y-sums, x-sums, cc and the alpha fields (taps added in the
 *      CPU's order); y- and x-sums of the alpha fields into the ring RA;
 *   c) output plane po = pw - 2r: z-sum of RA, the gradient formula with f and
 *      w re-read at the output voxel, W's gradient by one gather. */
template <bool GRAD_U, bool AFF, bool MASKS>
__global__ void __launch_bounds__(16 * kLnccTX) lncc_fused_kernel(const LnccArgs a, double *__restrict__ part) {
  constexpr bool GRAD = GRAD_U || AFF;
  extern __shared__ double smem[];
  const LnccTile t = lncc_tile(a.r, a.TY);
  const int r = t.r, R = t.R;
  const int tid = threadIdx.x, nthr = blockDim.x; /* nthr == t.O */
  const long long nx = a.map.f.n[0], ny = a.map.f.n[1], nz = a.map.f.n[2];
  const long long nxy = a.map.f.nxy;
  const long long x0 = (long long)blockIdx.x * kLnccTX, y0 = (long long)blockIdx.y * t.TY;
  const long long z0 = (long long)blockIdx.z * a.zchunk;
  const long long z1 = z0 + a.zchunk < nz ? z0 + a.zchunk : nz;
  const long long ex0 = x0 - 2 * r, ey0 = y0 - 2 * r; /* grid coordinates of halo tile (0,0) */
  const long long ax0 = x0 - r, ay0 = y0 - r;         /* of the statistics tile */
  const int nys = t.WX * t.AY, na = t.AX * t.AY, nay = t.AX * t.TY, ninv = R * R * R + 1;

  double *ZS = smem;
  double *YS = ZS + 5 * t.E2;
  double *AL = YS + 5 * nys;
  double *INV = AL + (GRAD ? 4 * na : 0);
  float *RA = reinterpret_cast<float *>(INV + ninv);
  double *AYS = YS; /* 4 x AX x TY, after the x-sums have consumed YS */

  for (int e = tid; e < 5 * t.E2; e += nthr) ZS[e] = 0.0;
  for (int c = tid; c < ninv; c += nthr) INV[c] = c ? 1.0 / (double)c : 0.0;

  double inv_n = a.inv_n;
  if (MASKS) {
    const unsigned long long n = *a.count;
    inv_n = n ? 1.0 / (double)n : 0.0;
  }
  double acc[kLnccK];
#pragma unroll
  for (int q = 0; q < kLnccK; ++q) acc[q] = 0.0;

  /* Output voxel of this thread (step c). */
  const int ox = tid % kLnccTX, oy = tid / kLnccTX;
  const long long gxo = x0 + ox, gyo = y0 + oy;
  const bool out_in = gxo < nx && gyo < ny;

  /* Statistics planes needed: [pa_lo, pa_hi); W/F planes from pa_lo - r on. */
  const long long pa_lo = GRAD ? (z0 - r > 0 ? z0 - r : 0) : z0;
  const long long pa_hi = GRAD ? (z1 + r < nz ? z1 + r : nz) : z1;
  const long long pw_begin = pa_lo - r > 0 ? pa_lo - r : 0;
  /* last step: output plane z1-1 (gradient) or statistics plane z1-1 (value only) */
  const long long pw_end = GRAD ? z1 - 1 + 2 * r : z1 - 1 + r;
  __syncthreads();

  int slot_w = (int)(pw_begin % R); /* ring slot of plane pw (64-bit modulo is slow: kept incrementally) */
  for (long long pw = pw_begin; pw <= pw_end; ++pw, slot_w = slot_w + 1 == R ? 0 : slot_w + 1) {
    const int slot_a = (slot_w + R - r) % R; /* plane pw - r */
    /* a) running z-window sums */
    const long long pold = pw - R;
    const bool add = pw < nz, sub = pold >= pw_begin;
    if (add || sub) {
#pragma unroll 2
      for (int e = tid; e < t.E2; e += nthr) {
        const int ey = e / t.WX;
        const long long gx = ex0 + (e - ey * t.WX), gy = ey0 + ey;
        if (gx < 0 || gx >= nx || gy < 0 || gy >= ny) continue;
        const long long o = gy * nx + gx;
        double s0 = ZS[e], s1 = ZS[t.E2 + e], s2 = ZS[2 * t.E2 + e], s3 = ZS[3 * t.E2 + e], s4 = ZS[4 * t.E2 + e];
        if (add) {
          const double fv = __ldg(a.fixed + pw * nxy + o), wv = __ldg(a.W + pw * nxy + o);
          s0 = dadd(s0, fv);
          s1 = dadd(s1, wv);
          s2 = dadd(s2, dmul(fv, fv));
          s3 = dadd(s3, dmul(wv, wv));
          s4 = dadd(s4, dmul(fv, wv));
        }
        if (sub) {
          const double fv = __ldg(a.fixed + pold * nxy + o), wv = __ldg(a.W + pold * nxy + o);
          s0 = dsub(s0, fv);
          s1 = dsub(s1, wv);
          s2 = dsub(s2, dmul(fv, fv));
          s3 = dsub(s3, dmul(wv, wv));
          s4 = dsub(s4, dmul(fv, wv));
        }
        ZS[e] = s0;
        ZS[t.E2 + e] = s1;
        ZS[2 * t.E2 + e] = s2;
        ZS[3 * t.E2 + e] = s3;
        ZS[4 * t.E2 + e] = s4;
      }
    }
    __syncthreads();

    /* b) statistics of plane pa */
    const long long pa = pw - r;
    if (pa >= pa_lo && pa < pa_hi) {
      /* y-sums on WX x AY */
#pragma unroll 2
      for (int e = tid; e < nys; e += nthr) {
        const int ay = e / t.WX, ex = e - ay * t.WX;
        const long long gy = ay0 + ay;
        double s[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
        if (gy >= 0 && gy < ny) {
          const long long j0 = win_lo(gy, r), j1 = win_hi(gy, r, ny);
          for (long long jj = j0; jj <= j1; ++jj) {
            const int row = (int)(jj - ey0) * t.WX + ex;
#pragma unroll
            for (int q = 0; q < 5; ++q) s[q] = dadd(s[q], ZS[q * t.E2 + row]);
          }
        }
#pragma unroll
        for (int q = 0; q < 5; ++q) YS[q * nys + e] = s[q];
      }
      __syncthreads();
      /* x-sums, cc and alpha fields on AX x AY */
      const int ncz = (int)(win_hi(pa, r, nz) - win_lo(pa, r) + 1);
#pragma unroll 2
      for (int e = tid; e < na; e += nthr) {
        const int ay = e / t.AX, ax = e - ay * t.AX;
        const long long gx = ax0 + ax, gy = ay0 + ay;
        double al[4] = {0.0, 0.0, 0.0, 0.0};
        if (gx >= 0 && gx < nx && gy >= 0 && gy < ny) {
          const long long i0 = win_lo(gx, r), i1 = win_hi(gx, r, nx);
          double S[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
          const int rowbase = ay * t.WX;
          for (long long xx = i0; xx <= i1; ++xx) {
            const int col = rowbase + (int)(xx - ex0);
#pragma unroll
            for (int q = 0; q < 5; ++q) S[q] = dadd(S[q], YS[q * nys + col]);
          }
          const int ncy = (int)(win_hi(gy, r, ny) - win_lo(gy, r) + 1);
          const double inv_nw = INV[(int)(i1 - i0 + 1) * (ncy * ncz)];
          const double sf = S[0], sw = S[1];
          const double A = dsub(S[4], dmul(dmul(sf, sw), inv_nw));
          const double Bt = dsub(S[2], dmul(dmul(sf, sf), inv_nw));
          const double Ct = dsub(S[3], dmul(dmul(sw, sw), inv_nw));
          const double B = Bt > 0.0 ? Bt : 0.0, C = Ct > 0.0 ? Ct : 0.0;
          const double inv_d = 1.0 / dadd(dmul(B, C), kLnccEps);
          bool ok = true;
          if (MASKS) ok = a.V[pa * nxy + gy * nx + gx] != 0;
          const bool owned = ax >= r && ax < r + kLnccTX && ay >= r && ay < r + t.TY && pa >= z0 && pa < z1;
          if (ok && owned) acc[0] += dmul(dmul(A, A), inv_d);
          if (GRAD) {
            const double alpha = ok ? dmul(dmul(2.0, A), inv_d) : 0.0;
            const double beta = dmul(dmul(dmul(alpha, A), B), inv_d); /* 2 A^2 B / D^2 */
            al[0] = alpha;
            al[1] = dmul(dmul(alpha, sf), inv_nw);
            al[2] = beta;
            al[3] = dmul(dmul(beta, sw), inv_nw);
          }
        }
        if (GRAD) {
#pragma unroll
          for (int q = 0; q < 4; ++q) AL[q * na + e] = al[q];
        }
      }
      if (GRAD) {
        __syncthreads();
        /* c) y-sums of the alpha fields on AX x TY, then x-sums on the output tile */
#pragma unroll 2
        for (int e = tid; e < nay; e += nthr) {
          const int oyy = e / t.AX, ax = e - oyy * t.AX;
          const long long gy = y0 + oyy;
          double s[4] = {0.0, 0.0, 0.0, 0.0};
          if (gy < ny) {
            const long long j0 = win_lo(gy, r), j1 = win_hi(gy, r, ny);
            for (long long jj = j0; jj <= j1; ++jj) {
              const int row = (int)(jj - ay0) * t.AX + ax;
#pragma unroll
              for (int q = 0; q < 4; ++q) s[q] += AL[q * na + row];
            }
          }
#pragma unroll
          for (int q = 0; q < 4; ++q) AYS[q * nay + e] = s[q];
        }
        __syncthreads();
        float *slot = RA + slot_a * 4 * t.O;
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        if (out_in) {
          const long long i0 = win_lo(gxo, r), i1 = win_hi(gxo, r, nx);
          for (long long xx = i0; xx <= i1; ++xx) {
            const int col = oy * t.AX + (int)(xx - ax0);
#pragma unroll
            for (int q = 0; q < 4; ++q) s[q] += AYS[q * nay + col];
          }
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) slot[q * t.O + tid] = (float)s[q]; /* this thread reads it back in c) */
      }
    }

    /* c) output plane po: z-sums of the alpha ring, gradient */
    const long long po = pw - 2 * r;
    if (GRAD && po >= z0 && po < z1 && out_in) {
      double S[4] = {0.0, 0.0, 0.0, 0.0};
      const long long p0 = win_lo(po, r), p1 = win_hi(po, r, nz);
      const int np = (int)(p1 - p0 + 1);
      for (int p = 0, sl = (int)(p0 % R); p < np; ++p, sl = sl + 1 == R ? 0 : sl + 1) {
        const float *slot = RA + sl * 4 * t.O;
#pragma unroll
        for (int q = 0; q < 4; ++q) S[q] += (double)slot[q * t.O + tid];
      }
      const long long v = po * nxy + gyo * nx + gxo;
      const double f = __ldg(a.fixed + v), w = __ldg(a.W + v);
      const double dw = dmul(-inv_n, dadd(dsub(dsub(dmul(f, S[0]), S[1]), dmul(w, S[2])), S[3]));
      double c[3], gi[3], gp[3];
      metric_index(a.map, a.disp, gxo, gyo, po, v, c);
      (void)sample_linear_grad_zero(a.moving, a.map.m, c, gi);
      grad_idx_to_phys(a.map.P, gi, gp);
      /* the CPU rounds grad W to float in its ring */
      const double d[3] = {dmul(dw, (double)(float)gp[0]), dmul(dw, (double)(float)gp[1]), dmul(dw, (double)(float)gp[2])};
      if (GRAD_U) grad_u_store(a.map, a.grad_u, v, d);
      if (AFF) {
        double x[3];
        metric_xphys(a.map, a.disp, gxo, gyo, po, v, x);
        affine_accum(acc + 1, d, x);
      }
    }
    __syncthreads(); /* the next step rewrites YS/AYS and ZS */
  }
  block_sum_to_partials<kLnccK>(acc, part);
}

/* ---- host ------------------------------------------------------------------------------ */
template <bool G, bool A, bool M>
static gr_status launch_fused(const LnccArgs &args, dim3 grid, int threads, size_t smem, cudaStream_t st,
                              double *part) {
  auto kern = lncc_fused_kernel<G, A, M>;
  GRCU_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  kern<<<grid, threads, smem, st>>>(args, part);
  GRCU_LAUNCHED("LNCC fused kernel");
  return GR_OK;
}

template <bool G, bool A, bool M>
static gr_status occupancy_of(int threads, size_t smem, int *blocks) {
  auto kern = lncc_fused_kernel<G, A, M>;
  GRCU_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  GRCU_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, kern, threads, smem));
  return GR_OK;
}

static gr_status lncc_occupancy(bool gu, bool aff, bool masks, int threads, size_t smem, int *blocks) {
  switch ((gu ? 4 : 0) | (aff ? 2 : 0) | (masks ? 1 : 0)) {
    case 0: return occupancy_of<false, false, false>(threads, smem, blocks);
    case 1: return occupancy_of<false, false, true>(threads, smem, blocks);
    case 2: return occupancy_of<false, true, false>(threads, smem, blocks);
    case 3: return occupancy_of<false, true, true>(threads, smem, blocks);
    case 4: return occupancy_of<true, false, false>(threads, smem, blocks);
    case 5: return occupancy_of<true, false, true>(threads, smem, blocks);
    case 6: return occupancy_of<true, true, false>(threads, smem, blocks);
    default: return occupancy_of<true, true, true>(threads, smem, blocks);
  }
}

static bool lncc_double_requested() {
  const char *e = getenv("GIGAREG_CUDA_LNCC");
  return e && strcmp(e, "double") == 0;
}

bool lncc_tile_cached(Impl *imp, int key, int *ty, size_t *smem) {
  std::lock_guard<std::mutex> lock(imp->mu);
  auto it = imp->lncc_tiles.find(key);
  if (it == imp->lncc_tiles.end()) return false;
  *ty = it->second.first;
  *smem = it->second.second;
  return true;
}

void lncc_tile_store(Impl *imp, int key, int ty, size_t smem) {
  std::lock_guard<std::mutex> lock(imp->mu);
  imp->lncc_tiles[key] = std::make_pair(ty, smem);
}

gr_status lncc_launch_begin(const MetricCall &c, int r, int tx, int ty, size_t w_bytes, int nparts, bool masks,
                            const char *what, LnccLaunch *L) {
  Impl *imp = impl_of(c.be);
  memset(L, 0, sizeof *L);
  const long long nvox = c.map.f.nvox, nz = c.map.f.n[2];
  L->gx = (c.map.f.n[0] + tx - 1) / tx;
  L->gy = (c.map.f.n[1] + ty - 1) / ty;
  /* Enough z-chunks for ~4 blocks per SM, but never chunks shorter than 4r
   * planes: each chunk re-reads 4r halo planes. */
  long long nzc = (4LL * imp->num_sms + L->gx * L->gy - 1) / (L->gx * L->gy);
  if (nzc < 1) nzc = 1;
  long long zchunk = (nz + nzc - 1) / nzc;
  const long long min_chunk = 4LL * r < nz ? 4LL * r : nz;
  if (zchunk < min_chunk) zchunk = min_chunk;
  L->zchunk = zchunk;
  L->nzc = (nz + zchunk - 1) / zchunk;
  if (L->gy > 65535 || L->nzc > 65535)
    return gr_error(GR_ERR_UNSUPPORTED, "cuda LNCC: grid %lldx%lldx%lld too large for one launch",
                    (long long)c.map.f.n[0], (long long)c.map.f.n[1], (long long)nz);
  L->nb = L->gx * L->gy * L->nzc;
  const size_t wbytes = ((size_t)nvox * w_bytes + 255) / 256 * 256;
  const size_t vbytes = masks ? ((size_t)nvox + 255) / 256 * 256 : 0;
  L->mem = (unsigned char *)scratch_alloc(c.be, wbytes + vbytes + 256 + (size_t)L->nb * nparts * 8, what);
  if (!L->mem) return GR_ERR_NOMEM;
  L->W = L->mem;
  L->V = masks ? L->mem + wbytes : nullptr;
  L->count = (unsigned long long *)(L->mem + wbytes + vbytes);
  L->part = (double *)(L->mem + wbytes + vbytes + 256);
  if (masks) GRCU_TRY(cudaMemsetAsync(L->count, 0, sizeof *L->count, imp->stream));
  return GR_OK;
}

gr_status lncc_launch_end(const MetricCall &c, LnccLaunch *L, int nparts, bool masks, gr_status s,
                          gr_metric_result *res) {
  double tot[kLnccK];
  unsigned long long count = (unsigned long long)c.map.f.nvox;
  if (s == GR_OK && nparts != kLnccK) s = gr_error(GR_ERR_INTERNAL, "cuda LNCC: %d partials per block", nparts);
  if (s == GR_OK)
    s = reduce_partials_and_fetch(c.be, L->part, L->nb, nparts, tot, masks ? &count : nullptr,
                                  masks ? L->count : nullptr, masks ? sizeof count : 0);
  if (L->mem) scratch_free(c.be, L->mem);
  L->mem = nullptr;
  if (s != GR_OK) return s;
  res->n_valid = (int64_t)count;
  if (count == 0) return metric_empty(c);
  res->value = -tot[0] * (1.0 / (double)count);
  if (c.want_affine) memcpy(res->grad_affine, tot + 1, sizeof res->grad_affine);
  return GR_OK;
}

/* The fast path reads 16-bit images itself unless GIGAREG_CUDA_LNCC_SAMPLE64
 * (its double sample reads float only); the double kernel reads float only. */
bool lncc_reads_u16(const MetricCall &c) {
  const int r = c.spec->lncc_radius > 0 ? c.spec->lncc_radius : 2;
  return lncc_fast_supported(c, r) && !lncc_double_requested() && !lncc_fast_sample64();
}

gr_status metric_lncc(const MetricCall &c, gr_metric_result *res) {
  const int r = c.spec->lncc_radius > 0 ? c.spec->lncc_radius : 2;
  if (lncc_fast_supported(c, r) && !lncc_double_requested()) return metric_lncc_fast(c, res);
  if (c.im.fixed16 || c.im.moving16)
    return gr_error(GR_ERR_INTERNAL, "cuda LNCC: 16-bit images reached the double kernel (cuda_metric.cu dequantises "
                                     "them for it)");
  gr_backend *be = c.be;
  Impl *imp = impl_of(be);
  cudaStream_t st = imp->stream;
  const bool gu = c.im.grad_u != nullptr, grad = gu || c.want_affine;
  const bool masks = c.im.fmask || c.im.mmask;
  const long long nvox = c.map.f.nvox;

  /* Tile height: among those whose shared memory fits, the one with the most
   * useful resident threads per SM (threads x output/halo-tile ratio), with a
   * bonus for two or more resident blocks, whose barrier phases interleave. */
  const size_t static_smem = 32 * kLnccK * sizeof(double) + 256;
  const size_t limit = imp->smem_optin > static_smem ? imp->smem_optin - static_smem : 0;
  int TY = 0;
  size_t smem = 0;
  double best = 0.0;
  const int tile_key = r * 8 + (gu ? 4 : 0) + (c.want_affine ? 2 : 0) + (masks ? 1 : 0);
  const bool cached = lncc_tile_cached(imp, tile_key, &TY, &smem);
  for (int ty = 16; ty >= 1 && !cached; ty /= 2) {
    const LnccTile tl = lncc_tile(r, ty);
    const size_t b = lncc_smem_bytes(tl, grad);
    if (b > limit) continue;
    int blocks = 0;
    if (lncc_occupancy(gu, c.want_affine, masks, kLnccTX * ty, b, &blocks) != GR_OK) return GR_ERR_DEVICE;
    const double score = (double)blocks * kLnccTX * ty * ((double)tl.O / (double)tl.E2) * (blocks >= 2 ? 1.25 : 1.0);
    if (blocks > 0 && score > best) {
      best = score;
      TY = ty;
      smem = b;
    }
  }
  if (!TY) { /* none fits */
    return gr_error(GR_ERR_UNSUPPORTED, "cuda LNCC: radius %d needs %zu bytes of shared memory per block (device offers %zu)",
                    r, lncc_smem_bytes(lncc_tile(r, 1), grad), limit);
  }
  if (!cached) lncc_tile_store(imp, tile_key, TY, smem);

  /* Scratch: W, validity, count, partials. */
  LnccLaunch L;
  gr_status s = lncc_launch_begin(c, r, kLnccTX, TY, 8, kLnccK, masks, "LNCC warped image and partials", &L);
  double *W = (double *)L.W;
  cudaError_t e = cudaSuccess;
  if (s == GR_OK) {
    const dim3 vgrid = voxel_grid(c.map.f.n), vblock(kBX, kBY);
    if (masks) lncc_warp_kernel<true, double><<<vgrid, vblock, 0, st>>>(c.map, c.im, W, L.V, L.count);
    else lncc_warp_kernel<false, double><<<vgrid, vblock, 0, st>>>(c.map, c.im, W, L.V, L.count);
    e = cudaGetLastError();
    if (e != cudaSuccess) s = device_error(e, "LNCC warp kernel");
  }

  if (s == GR_OK) {
    LnccArgs args;
    args.map = c.map;
    args.fixed = c.im.fixed;
    args.W = W;
    args.moving = c.im.moving;
    args.disp = c.im.disp;
    args.V = L.V;
    args.count = masks ? L.count : nullptr;
    args.inv_n = 1.0 / (double)nvox;
    args.grad_u = c.im.grad_u;
    args.r = r;
    args.TY = TY;
    args.zchunk = L.zchunk;
    const dim3 grid((unsigned)L.gx, (unsigned)L.gy, (unsigned)L.nzc);
    const int threads = kLnccTX * TY;
    const int key = (gu ? 4 : 0) | (c.want_affine ? 2 : 0) | (masks ? 1 : 0);
    switch (key) {
      case 0: s = launch_fused<false, false, false>(args, grid, threads, smem, st, L.part); break;
      case 1: s = launch_fused<false, false, true>(args, grid, threads, smem, st, L.part); break;
      case 2: s = launch_fused<false, true, false>(args, grid, threads, smem, st, L.part); break;
      case 3: s = launch_fused<false, true, true>(args, grid, threads, smem, st, L.part); break;
      case 4: s = launch_fused<true, false, false>(args, grid, threads, smem, st, L.part); break;
      case 5: s = launch_fused<true, false, true>(args, grid, threads, smem, st, L.part); break;
      case 6: s = launch_fused<true, true, false>(args, grid, threads, smem, st, L.part); break;
      default: s = launch_fused<true, true, true>(args, grid, threads, smem, st, L.part); break;
    }
  }
  return lncc_launch_end(c, &L, kLnccK, masks, s, res);
}

}  // namespace grcu
