/* Local normalised cross-correlation, box window of radius r (cpu_lncc.c
 * semantics: zero-padded warp, in-grid windows, eps = 1e-5, exact gradient
 *   dL/dW(z) = -(1/N) [ f(z) Sa(z) - Sam(z) - w(z) Sb(z) + Sbm(z) ]
 * with Sa, Sam, Sb, Sbm the window sums of alpha, alpha mu_f, beta, beta mu_w).
 *
 * Two kernels, no full-size intermediates beyond the warped image:
 *
 *  1) lncc_warp_kernel: W(x) = moving(y(x)) (trilinear, ZERO padding, rounded
 *     to float exactly as the CPU's ring) for every fixed voxel; with masks also
 *     a validity byte and the valid count N (integer atomics). Recomputing W in
 *     the halos of kernel 2 would cost 2-3 extra gathers per voxel, while
 *     storing it costs 4 + 4 bytes per voxel of traffic.
 *
 *  2) lncc_fused_kernel: one block owns a 32 x TY column of output voxels and
 *     a chunk of z, and streams through z-planes keeping everything else on
 *     chip. Per plane step p (shared memory, see lncc_smem_bytes):
 *       a) load F and W of plane p over the (32+4r) x (TY+4r) halo tile into a
 *          ring of 2r+1 planes;
 *       b) statistics plane p-r: window sums of f, w, f^2, w^2, f w as direct
 *          sums of the 2r+1 taps in the CPU's order (z from the ring, then y,
 *          then x), in double, on the (32+2r) x (TY+2r) tile; cc (counted by
 *          the owner block) and the four alpha fields;
 *       c) y- then x-box sums of the alpha fields on the 32 x TY output tile,
 *          stored (float) in a ring of 2r+1 planes;
 *       d) output plane p-2r: z-box sum from that ring, the exact gradient
 *          formula, W's spatial gradient recomputed at the output voxel (one
 *          gather), grad_u and the affine partials.
 *     Halo re-reads of F and W are served by L2; DRAM traffic per voxel is
 *     u 12 + F 4 + W 4 + moving gather + grad 12 bytes, plus kernel 1's
 *     u 12 + gather + W 4.
 *
 * Precision: everything the CPU keeps in double stays double, except the
 * per-plane box sums of the alpha fields, which are stored as float in the
 * ring (halving the largest shared array so two radii's worth of tiles fit).
 * Their relative rounding, ~6e-8, enters the gradient linearly; the value is
 * unaffected. Value and affine sums are reduced per block in a fixed order.
 *
 * Scratch: W (4 bytes per voxel), with masks a validity byte per voxel, and
 * 13 doubles per block. */
#include <string.h>
#include "cuda_ops.cuh"
#include "cuda_reduce.cuh"

namespace grcu {

constexpr double kLnccEps = 1e-5;
constexpr int kLnccTX = 32;
constexpr int kLnccK = 13; /* sum cc + 12 affine */

/* ---- kernel 1: warped moving image, validity, count ------------------------------------ */
template <bool MASKS>
__global__ void __launch_bounds__(kBlock) lncc_warp_kernel(const WarpMap m, const MetricImages im,
                                                           float *__restrict__ W, unsigned char *__restrict__ V,
                                                           unsigned long long *__restrict__ count) {
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  const bool active = i < m.f.n[0] && j < m.f.n[1];
  unsigned long long cnt = 0;
  for (long long k = blockIdx.z; k < m.f.n[2]; k += gridDim.z) {
    if (!active) continue;
    const long long v = (k * m.f.n[1] + j) * m.f.n[0] + i;
    double c[3];
    metric_index(m, im.disp, i, j, k, v, c);
    W[v] = (float)sample_linear_zero(im.moving, m.m, c);
    if (MASKS) {
      bool ok = !im.fmask || __ldg(im.fmask + v) > 0.5f;
      if (ok && im.mmask) {
        const long long o = nearest_offset(m.m, c, false);
        ok = o >= 0 && __ldg(im.mmask + o) > 0.5f;
      }
      V[v] = ok ? 1 : 0;
      cnt += ok ? 1 : 0;
    }
  }
  if (MASKS) warp_count_add(count, cnt);
}

/* ---- kernel 2: fused statistics + gradient -------------------------------------------- */
struct LnccArgs {
  WarpMap map;
  const float *fixed, *W, *moving, *disp;
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
 *   ZS   5 x E2 doubles   z-sums of the statistics   (reused: 4 x AX x AY alpha fields)
 *   YS   5 x WX x AY      y-sums                      (reused: 4 x AX x TY alpha y-sums)
 *   FW   R x E2 float2    ring of (f, w) planes
 *   RA   R x 4 x O floats ring of the alpha fields' xy-box sums (gradient only) */
inline size_t lncc_smem_bytes(const LnccTile &t, bool grad) {
  return (size_t)5 * t.E2 * 8 + (size_t)5 * t.WX * t.AY * 8 + (size_t)t.R * t.E2 * 8 +
         (grad ? (size_t)t.R * 4 * t.O * 4 : 0);
}

__device__ __forceinline__ long long win_lo(long long i, int r) { return i - r < 0 ? 0 : i - r; }
__device__ __forceinline__ long long win_hi(long long i, int r, long long n) { return i + r > n - 1 ? n - 1 : i + r; }

template <bool GRAD_U, bool AFF, bool MASKS>
__global__ void __launch_bounds__(16 * kLnccTX) lncc_fused_kernel(const LnccArgs a, double *__restrict__ part) {
  constexpr bool GRAD = GRAD_U || AFF;
  extern __shared__ double smem[];
  const LnccTile t = lncc_tile(a.r, a.TY);
  const int r = t.r, R = t.R;
  const int tid = threadIdx.x, nthr = blockDim.x; /* nthr == t.O */
  const long long nx = a.map.f.n[0], ny = a.map.f.n[1], nz = a.map.f.n[2];
  const long long nxy = a.map.f.nxy, nvox = a.map.f.nvox;
  const long long x0 = (long long)blockIdx.x * kLnccTX, y0 = (long long)blockIdx.y * t.TY;
  const long long z0 = (long long)blockIdx.z * a.zchunk;
  const long long z1 = z0 + a.zchunk < nz ? z0 + a.zchunk : nz;
  const long long ex0 = x0 - 2 * r, ey0 = y0 - 2 * r; /* grid coordinates of halo tile (0,0) */
  const long long ax0 = x0 - r, ay0 = y0 - r;         /* of the statistics tile */

  double *ZS = smem;
  double *YS = ZS + 5 * t.E2;
  float2 *FW = reinterpret_cast<float2 *>(YS + 5 * t.WX * t.AY);
  float *RA = reinterpret_cast<float *>(FW + R * t.E2);
  double *ALPHA = ZS; /* 4 x AX x AY, after the y-sums have consumed ZS */
  double *AYS = YS;   /* 4 x AX x TY, after the x-sums have consumed YS */

  double inv_n = a.inv_n;
  if (MASKS) {
    const unsigned long long n = *a.count;
    inv_n = n ? 1.0 / (double)n : 0.0;
  }
  double acc[kLnccK];
#pragma unroll
  for (int q = 0; q < kLnccK; ++q) acc[q] = 0.0;

  /* Output voxel of this thread (steps d). */
  const int ox = tid % kLnccTX, oy = tid / kLnccTX;
  const long long gxo = x0 + ox, gyo = y0 + oy;
  const bool out_in = gxo < nx && gyo < ny;

  /* Statistics planes needed: [pa_lo, pa_hi); W/F planes from pa_lo - r on. */
  const long long pa_lo = GRAD ? (z0 - r > 0 ? z0 - r : 0) : z0;
  const long long pa_hi = GRAD ? (z1 + r < nz ? z1 + r : nz) : z1;
  const long long pw_begin = pa_lo - r > 0 ? pa_lo - r : 0;
  /* last step: output plane z1-1 (gradient) or statistics plane z1-1 (value only);
   * inclusive; planes >= nz are not loaded */
  const long long pw_end = GRAD ? z1 - 1 + 2 * r : z1 - 1 + r;

  /* Ring slots are plane % R; kept incrementally (64-bit modulo is slow on the GPU). */
  int slot_w = (int)(pw_begin % R);
  for (long long pw = pw_begin; pw <= pw_end; ++pw, slot_w = slot_w + 1 == R ? 0 : slot_w + 1) {
    const int slot_a = (slot_w + R - r) % R;  /* plane pw - r */
    const int slot_o = slot_w + 1 == R ? 0 : slot_w + 1; /* plane pw - 2r */
    /* a) load plane pw into the (f, w) ring */
    if (pw < nz) {
      float2 *slot = FW + slot_w * t.E2;
      for (int e = tid; e < t.E2; e += nthr) {
        const long long gx = ex0 + e % t.WX, gy = ey0 + e / t.WX;
        float2 fw = make_float2(0.0f, 0.0f);
        if (gx >= 0 && gx < nx && gy >= 0 && gy < ny) {
          const long long v = pw * nxy + gy * nx + gx;
          fw.x = __ldg(a.fixed + v);
          fw.y = __ldg(a.W + v);
        }
        slot[e] = fw;
      }
    }
    __syncthreads();

    /* b) statistics of plane pa */
    const long long pa = pw - r;
    if (pa >= pa_lo && pa < pa_hi) {
      const long long za0 = win_lo(pa, r), za1 = win_hi(pa, r, nz);
      const int nzp = (int)(za1 - za0 + 1), zslot0 = (int)(za0 % R);
      for (int e = tid; e < t.E2; e += nthr) {
        double sf = 0.0, sw = 0.0, sff = 0.0, sww = 0.0, sfw = 0.0;
        for (int p = 0, sl = zslot0; p < nzp; ++p, sl = sl + 1 == R ? 0 : sl + 1) {
          const float2 fw = FW[sl * t.E2 + e];
          const double fv = fw.x, wv = fw.y;
          sf = dadd(sf, fv);
          sw = dadd(sw, wv);
          sff = dadd(sff, dmul(fv, fv));
          sww = dadd(sww, dmul(wv, wv));
          sfw = dadd(sfw, dmul(fv, wv));
        }
        ZS[0 * t.E2 + e] = sf;
        ZS[1 * t.E2 + e] = sw;
        ZS[2 * t.E2 + e] = sff;
        ZS[3 * t.E2 + e] = sww;
        ZS[4 * t.E2 + e] = sfw;
      }
      __syncthreads();
      /* y-sums on WX x AY */
      const int nys = t.WX * t.AY;
      for (int e = tid; e < nys; e += nthr) {
        const int ex = e % t.WX, ay = e / t.WX;
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
      const int na = t.AX * t.AY;
      const long long ncz = win_hi(pa, r, nz) - win_lo(pa, r) + 1;
      for (int e = tid; e < na; e += nthr) {
        const int ax = e % t.AX, ay = e / t.AX;
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
          const double ncy = (double)(win_hi(gy, r, ny) - win_lo(gy, r) + 1);
          const double n = dmul((double)(i1 - i0 + 1), dmul(ncy, (double)ncz));
          const double inv_nw = 1.0 / n;
          const double sf = S[0], sw = S[1];
          const double A = dsub(S[4], dmul(dmul(sf, sw), inv_nw));
          const double Bt = dsub(S[2], dmul(dmul(sf, sf), inv_nw));
          const double Ct = dsub(S[3], dmul(dmul(sw, sw), inv_nw));
          const double B = Bt > 0.0 ? Bt : 0.0, C = Ct > 0.0 ? Ct : 0.0;
          const double D = dadd(dmul(B, C), kLnccEps);
          bool ok = true;
          if (MASKS) ok = a.V[pa * nxy + gy * nx + gx] != 0;
          const bool owned = ax >= r && ax < r + kLnccTX && ay >= r && ay < r + t.TY && pa >= z0 && pa < z1;
          if (ok && owned) acc[0] += ddiv(dmul(A, A), D);
          if (GRAD) {
            const double alpha = ok ? ddiv(dmul(2.0, A), D) : 0.0;
            const double beta = ddiv(dmul(dmul(alpha, A), B), D); /* 2 A^2 B / D^2 */
            al[0] = alpha;
            al[1] = dmul(dmul(alpha, sf), inv_nw);
            al[2] = beta;
            al[3] = dmul(dmul(beta, sw), inv_nw);
          }
        }
        if (GRAD) {
#pragma unroll
          for (int q = 0; q < 4; ++q) ALPHA[q * na + e] = al[q];
        }
      }
      if (GRAD) {
        __syncthreads();
        /* c) y-sums of the alpha fields on AX x TY, then x-sums on the output tile */
        const int nay = t.AX * t.TY;
        for (int e = tid; e < nay; e += nthr) {
          const int ax = e % t.AX, oyy = e / t.AX;
          const long long gy = y0 + oyy;
          double s[4] = {0.0, 0.0, 0.0, 0.0};
          if (gy < ny) {
            const long long j0 = win_lo(gy, r), j1 = win_hi(gy, r, ny);
            for (long long jj = j0; jj <= j1; ++jj) {
              const int row = (int)(jj - ay0) * t.AX + ax;
#pragma unroll
              for (int q = 0; q < 4; ++q) s[q] += ALPHA[q * na + row];
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
        for (int q = 0; q < 4; ++q) slot[q * t.O + tid] = (float)s[q]; /* this thread reads it back in d) */
      }
    }

    /* d) output plane po: z-sums of the alpha ring, gradient */
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
      const float2 fw = FW[slot_o * t.E2 + (oy + 2 * r) * t.WX + (ox + 2 * r)];
      const double f = fw.x, w = fw.y;
      const double dw = dmul(-inv_n, dadd(dsub(dsub(dmul(f, S[0]), S[1]), dmul(w, S[2])), S[3]));
      const long long v = po * nxy + gyo * nx + gxo;
      double c[3], gi[3], gp[3];
      metric_index(a.map, a.disp, gxo, gyo, po, v, c);
      (void)sample_linear_grad_zero(a.moving, a.map.m, c, gi);
      grad_idx_to_phys(a.map.P, gi, gp);
      /* the CPU rounds grad W to float in its ring */
      const double d[3] = {dmul(dw, (double)(float)gp[0]), dmul(dw, (double)(float)gp[1]), dmul(dw, (double)(float)gp[2])};
      if (GRAD_U) grad_u_store(a.grad_u, nvox, v, d);
      if (AFF) {
        double x[3];
        metric_xphys(a.map, gxo, gyo, po, x);
        affine_accum(acc + 1, d, x);
      }
    }
    __syncthreads(); /* the next step overwrites the ring slot read above */
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

gr_status metric_lncc(const MetricCall &c, gr_metric_result *res) {
  gr_backend *be = c.be;
  Impl *imp = impl_of(be);
  cudaStream_t st = imp->stream;
  const int r = c.spec->lncc_radius > 0 ? c.spec->lncc_radius : 2;
  const bool gu = c.im.grad_u != nullptr, grad = gu || c.want_affine;
  const bool masks = c.im.fmask || c.im.mmask;
  const long long nvox = c.map.f.nvox;

  /* Tile height: the tallest whose shared memory fits (static reduction buffer aside). */
  const size_t static_smem = 32 * kLnccK * sizeof(double) + 256;
  const size_t limit = imp->smem_optin > static_smem ? imp->smem_optin - static_smem : 0;
  int TY = 0;
  size_t smem = 0;
  for (int ty = 16; ty >= 1; ty /= 2) {
    const size_t b = lncc_smem_bytes(lncc_tile(r, ty), grad);
    if (b <= limit) {
      TY = ty;
      smem = b;
      break;
    }
  }
  if (!TY)
    return gr_error(GR_ERR_UNSUPPORTED, "cuda LNCC: radius %d needs %zu bytes of shared memory per block (device offers %zu)",
                    r, lncc_smem_bytes(lncc_tile(r, 1), grad), limit);

  /* Scratch: W, validity, count, partials. */
  const long long gx = (c.map.f.n[0] + kLnccTX - 1) / kLnccTX, gy = (c.map.f.n[1] + TY - 1) / TY;
  const long long nz = c.map.f.n[2];
  /* Enough z-chunks for ~4 blocks per SM, but never chunks shorter than 4r
   * planes: each chunk re-reads 4r halo planes. */
  long long nzc = (4LL * imp->num_sms + gx * gy - 1) / (gx * gy);
  if (nzc < 1) nzc = 1;
  long long zchunk = (nz + nzc - 1) / nzc;
  const long long min_chunk = 4LL * r < nz ? 4LL * r : nz;
  if (zchunk < min_chunk) zchunk = min_chunk;
  nzc = (nz + zchunk - 1) / zchunk;
  if (gy > 65535 || nzc > 65535)
    return gr_error(GR_ERR_UNSUPPORTED, "cuda LNCC: grid %lldx%lldx%lld too large for one launch",
                    (long long)c.map.f.n[0], (long long)c.map.f.n[1], (long long)nz);
  const long long nb = gx * gy * nzc;
  const size_t wbytes = ((size_t)nvox * 4 + 255) / 256 * 256;
  const size_t vbytes = masks ? ((size_t)nvox + 255) / 256 * 256 : 0;
  const size_t bytes = wbytes + vbytes + 256 + (size_t)nb * kLnccK * 8;
  unsigned char *mem = (unsigned char *)scratch_alloc(be, bytes, "LNCC warped image and partials");
  if (!mem) return GR_ERR_NOMEM;
  float *W = (float *)mem;
  unsigned char *V = masks ? mem + wbytes : nullptr;
  unsigned long long *d_count = (unsigned long long *)(mem + wbytes + vbytes);
  double *part = (double *)(mem + wbytes + vbytes + 256);

  gr_status s = GR_OK;
  cudaError_t e = cudaSuccess;
  if (masks) e = cudaMemsetAsync(d_count, 0, sizeof *d_count, st);
  if (e == cudaSuccess) {
    const dim3 vgrid = voxel_grid(c.map.f.n), vblock(kBX, kBY);
    if (masks) lncc_warp_kernel<true><<<vgrid, vblock, 0, st>>>(c.map, c.im, W, V, d_count);
    else lncc_warp_kernel<false><<<vgrid, vblock, 0, st>>>(c.map, c.im, W, V, d_count);
    e = cudaGetLastError();
  }
  if (e != cudaSuccess) s = device_error(e, "LNCC warp kernel");

  if (s == GR_OK) {
    LnccArgs args;
    args.map = c.map;
    args.fixed = c.im.fixed;
    args.W = W;
    args.moving = c.im.moving;
    args.disp = c.im.disp;
    args.V = V;
    args.count = masks ? d_count : nullptr;
    args.inv_n = 1.0 / (double)nvox;
    args.grad_u = c.im.grad_u;
    args.r = r;
    args.TY = TY;
    args.zchunk = zchunk;
    const dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)nzc);
    const int threads = kLnccTX * TY;
    const int key = (gu ? 4 : 0) | (c.want_affine ? 2 : 0) | (masks ? 1 : 0);
    switch (key) {
      case 0: s = launch_fused<false, false, false>(args, grid, threads, smem, st, part); break;
      case 1: s = launch_fused<false, false, true>(args, grid, threads, smem, st, part); break;
      case 2: s = launch_fused<false, true, false>(args, grid, threads, smem, st, part); break;
      case 3: s = launch_fused<false, true, true>(args, grid, threads, smem, st, part); break;
      case 4: s = launch_fused<true, false, false>(args, grid, threads, smem, st, part); break;
      case 5: s = launch_fused<true, false, true>(args, grid, threads, smem, st, part); break;
      case 6: s = launch_fused<true, true, false>(args, grid, threads, smem, st, part); break;
      default: s = launch_fused<true, true, true>(args, grid, threads, smem, st, part); break;
    }
  }
  double tot[kLnccK];
  unsigned long long count = (unsigned long long)nvox;
  if (s == GR_OK)
    s = reduce_partials_and_fetch(be, part, nb, kLnccK, tot, masks ? &count : nullptr, masks ? d_count : nullptr,
                                  masks ? sizeof count : 0);
  scratch_free(be, mem);
  if (s != GR_OK) return s;
  res->n_valid = (int64_t)count;
  if (count == 0) return metric_empty(c);
  res->value = -tot[0] * (1.0 / (double)count);
  if (c.want_affine) memcpy(res->grad_affine, tot + 1, sizeof res->grad_affine);
  return GR_OK;
}

}  // namespace grcu
