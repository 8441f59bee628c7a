/* Separable Gaussian smoothing, in place (cpu_smooth.c semantics: truncated at
 * ceil(3 sigma) capped at len-1, kernel renormalised over the in-grid taps,
 * each axis' result rounded to float before the next axis; each output is
 *   g(0) v[i] + sum_{t = r..1} g(t) (v[i-t] + v[i+t])
 * in double, in that order, samples outside the grid reading 0). The
 * arithmetic is the CPU's operation for operation (no fused multiply-adds), so
 * results are bitwise equal.
 *
 * Passes, per component plane (scratch: one plane, 4 bytes per voxel):
 *   XY: x and y fused in one kernel on 32x32 tiles in shared memory (the x pass
 *       is computed on the tile's y-halo rows too, exactly as the CPU's x pass
 *       would have produced them), plane -> scratch;
 *   Z : each thread walks four adjacent z-columns (16-byte loads), taps from
 *       L1 (the block's 2r+1 recent planes stay resident), scratch -> plane.
 * So a smoothing of all three axes reads and writes each voxel twice (16 bytes
 * per component) instead of three times. Radii above the tile's halo (x or y
 * radius > 16, sigma > ~5.3 voxels) use one generic kernel per axis.
 * Weights ride in the kernel parameters (constant bank, read with uniform
 * indices); radius up to 127 voxels per axis. */
#include <math.h>
#include "cuda_ops.cuh"

namespace grcu {

constexpr int kTileR = 16;   /* halo of the fused XY tile */
constexpr int kSmoothMaxR = 127;
constexpr int kTile = 32;

template <int MAXR>
struct AxisKernel {
  int r;           /* 0 = axis skipped */
  long long len;
  double inv_full; /* 1 / (sum of all 2r+1 weights): interior positions */
  double w[2 * MAXR + 1];
};

template <int MAXR>
__device__ __forceinline__ double inv_norm(const AxisKernel<MAXR> &k, long long i) {
  if (i >= k.r && i + k.r <= k.len - 1) return k.inv_full;
  const long long lo = i - k.r < 0 ? -i : -k.r;
  const long long hi = i + k.r > k.len - 1 ? k.len - 1 - i : k.r;
  double s = 0.0;
  for (long long t = lo; t <= hi; ++t) s += k.w[t + k.r];
  return 1.0 / s;
}

/* Fused x+y pass over one z-plane tile; in != out. 256 threads = 32 columns x
 * 8 row groups; each thread keeps the accumulators of its rows (ty + 8k) in
 * registers and walks the taps outermost, so its 4-8 independent double
 * chains overlap (a thread per output, one chain at a time, left the FP64
 * pipes waiting on latency). Per output the taps are still added in the CPU's
 * order. */
__global__ void __launch_bounds__(256, 3) smooth_xy_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                        const Dims d, const AxisKernel<kTileR> kx,
                                                        const AxisKernel<kTileR> ky) {
  __shared__ float tin[kTile + 2 * kTileR][kTile + 2 * kTileR + 1];
  __shared__ float tmid[kTile + 2 * kTileR][kTile];
  constexpr int kRowsX = (kTile + 2 * kTileR) / 8, kRowsY = kTile / 8;
  const int tid = threadIdx.x, col = tid & 31, ty = tid >> 5;
  const int rx = kx.r, ry = ky.r;
  const long long nx = d.n[0], ny = d.n[1];
  const long long x0 = (long long)blockIdx.x * kTile, y0 = (long long)blockIdx.y * kTile;
  const int H = kTile + 2 * ry, Wd = kTile + 2 * rx;
  const long long gx = x0 + col;
  const double inv_x = (rx && gx < nx) ? inv_norm(kx, gx) : 0.0;
  for (long long z = blockIdx.z; z < d.n[2]; z += gridDim.z) {
    const float *pin = in + z * d.nxy;
    for (int idx = tid; idx < H * Wd; idx += 256) {
      const int row = idx / Wd, c = idx - row * Wd;
      const long long sx = x0 - rx + c, sy = y0 - ry + row;
      tin[row][c] = (sx >= 0 && sx < nx && sy >= 0 && sy < ny) ? __ldg(pin + sy * nx + sx) : 0.0f;
    }
    __syncthreads();
    /* x pass on all H rows (the tile's y-halo rows included); tin is zero outside the grid */
    double ax[kRowsX];
#pragma unroll
    for (int k = 0; k < kRowsX; ++k) {
      const int row = ty + 8 * k;
      ax[k] = row < H ? dmul(kx.w[rx], (double)tin[row][col + rx]) : 0.0;
    }
    for (int t = 0; t < rx; ++t) {
      const double wt = kx.w[t];
#pragma unroll
      for (int k = 0; k < kRowsX; ++k) {
        const int row = ty + 8 * k;
        if (row < H) ax[k] = dadd(ax[k], dmul(wt, dadd((double)tin[row][col + t], (double)tin[row][col + 2 * rx - t])));
      }
    }
#pragma unroll
    for (int k = 0; k < kRowsX; ++k) {
      const int row = ty + 8 * k;
      if (row >= H) continue;
      const long long sy = y0 - ry + row;
      float m = 0.0f;
      if (gx < nx && sy >= 0 && sy < ny) m = rx ? (float)dmul(ax[k], inv_x) : tin[row][col + rx];
      tmid[row][col] = m;
    }
    __syncthreads();
    /* y pass on the 32 x 32 outputs; tmid rows outside the grid are zero */
    double ay[kRowsY];
#pragma unroll
    for (int k = 0; k < kRowsY; ++k) ay[k] = dmul(ky.w[ry], (double)tmid[ty + 8 * k + ry][col]);
    for (int t = 0; t < ry; ++t) {
      const double wt = ky.w[t];
#pragma unroll
      for (int k = 0; k < kRowsY; ++k) {
        const int row = ty + 8 * k;
        ay[k] = dadd(ay[k], dmul(wt, dadd((double)tmid[row + t][col], (double)tmid[row + 2 * ry - t][col])));
      }
    }
    float *pout = out + z * d.nxy;
#pragma unroll
    for (int k = 0; k < kRowsY; ++k) {
      const long long gy = y0 + ty + 8 * k;
      if (gx >= nx || gy >= ny) continue;
      pout[gy * nx + gx] = ry ? (float)dmul(ay[k], inv_norm(ky, gy)) : tmid[ty + 8 * k][col];
    }
    __syncthreads();
  }
}

/* z pass: one thread per V adjacent (x, y) columns (V = 4: 16-byte loads, four
 * independent accumulators), walking a chunk of z; the block's 2r+1 recent
 * planes stay in L1. in != out. */
template <int V>
__global__ void __launch_bounds__(kBlock) smooth_z_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                          const Dims d, const AxisKernel<kSmoothMaxR> kz,
                                                          long long zchunk) {
  const long long gx = ((long long)blockIdx.x * kBX + threadIdx.x) * V, gy = (long long)blockIdx.y * kBY + threadIdx.y;
  if (gx >= d.n[0] || gy >= d.n[1]) return;
  const long long nz = d.n[2], base = gy * d.n[0] + gx;
  const long long z0 = (long long)blockIdx.z * zchunk, z1 = z0 + zchunk < nz ? z0 + zchunk : nz;
  const int r = kz.r;
  for (long long z = z0; z < z1; ++z) {
    double acc[V], lo[V], hi[V];
    if (V == 4) {
      const float4 c = __ldg(reinterpret_cast<const float4 *>(in + z * d.nxy + base));
      acc[0] = dmul(kz.w[r], (double)c.x);
      acc[1] = dmul(kz.w[r], (double)c.y);
      acc[2] = dmul(kz.w[r], (double)c.z);
      acc[3] = dmul(kz.w[r], (double)c.w);
    } else {
      acc[0] = dmul(kz.w[r], (double)__ldg(in + z * d.nxy + base));
    }
    for (int t = 0; t < r; ++t) {
      const long long zl = z - r + t, zh = z + r - t;
      if (V == 4) {
        const float4 a = zl >= 0 ? __ldg(reinterpret_cast<const float4 *>(in + zl * d.nxy + base)) : make_float4(0.f, 0.f, 0.f, 0.f);
        const float4 b = zh < nz ? __ldg(reinterpret_cast<const float4 *>(in + zh * d.nxy + base)) : make_float4(0.f, 0.f, 0.f, 0.f);
        lo[0] = a.x; lo[1] = a.y; lo[2] = a.z; lo[3] = a.w;
        hi[0] = b.x; hi[1] = b.y; hi[2] = b.z; hi[3] = b.w;
      } else {
        lo[0] = zl >= 0 ? (double)__ldg(in + zl * d.nxy + base) : 0.0;
        hi[0] = zh < nz ? (double)__ldg(in + zh * d.nxy + base) : 0.0;
      }
      const double wt = kz.w[t];
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] = dadd(acc[v], dmul(wt, dadd(lo[v], hi[v])));
    }
    const double inv = inv_norm(kz, z);
    if (V == 4) {
      float4 o;
      o.x = (float)dmul(acc[0], inv);
      o.y = (float)dmul(acc[1], inv);
      o.z = (float)dmul(acc[2], inv);
      o.w = (float)dmul(acc[3], inv);
      *reinterpret_cast<float4 *>(out + z * d.nxy + base) = o;
    } else {
      out[z * d.nxy + base] = (float)dmul(acc[0], inv);
    }
  }
}

/* Generic pass along x (axis 0) or y (axis 1), one thread per voxel; in != out. */
__global__ void __launch_bounds__(kBlock) smooth_axis_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                             const Dims d, const AxisKernel<kSmoothMaxR> k, int axis) {
  const long long gx = (long long)blockIdx.x * kBX + threadIdx.x, gy = (long long)blockIdx.y * kBY + threadIdx.y;
  if (gx >= d.n[0] || gy >= d.n[1]) return;
  const long long stride = axis == 0 ? 1 : d.n[0];
  const long long pos = axis == 0 ? gx : gy, len = axis == 0 ? d.n[0] : d.n[1];
  const int r = k.r;
  for (long long z = blockIdx.z; z < d.n[2]; z += gridDim.z) {
    const long long v = z * d.nxy + gy * d.n[0] + gx;
    double acc = dmul(k.w[r], (double)__ldg(in + v));
    for (int t = 0; t < r; ++t) {
      const long long pl = pos - r + t, ph = pos + r - t;
      const double lo = pl >= 0 ? (double)__ldg(in + v + (t - r) * stride) : 0.0;
      const double hi = ph < len ? (double)__ldg(in + v + (r - t) * stride) : 0.0;
      acc = dadd(acc, dmul(k.w[t], dadd(lo, hi)));
    }
    out[v] = (float)dmul(acc, inv_norm(k, pos));
  }
}

static int kernel_radius(double sigma, long long len) {
  const double r = ceil(3.0 * sigma);
  return (int)(r < (double)(len - 1) ? r : (double)(len - 1));
}

/* Weights and interior normalisation, computed as cpu_smooth.c's kernel_build. */
template <int MAXR>
static void build_kernel(double sigma, long long len, int r, AxisKernel<MAXR> *k) {
  k->r = r;
  k->len = len;
  const double a = -0.5 / (sigma * sigma);
  for (int t = -r; t <= r; ++t) k->w[t + r] = exp(a * (double)t * (double)t);
  double s = 0.0;
  for (int t = -r; t <= r; ++t) s += k->w[t + r];
  k->inv_full = 1.0 / s;
}

gr_status smooth(gr_backend *be, const gr_grid *g, float *data, int ncomp, const double sigma_vox[3]) {
  if (!g || !data || !sigma_vox) return gr_error(GR_ERR_INVALID_ARG, "smooth: NULL argument");
  if (ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "smooth: %d components", ncomp);
  for (int a = 0; a < 3; ++a) {
    if (g->n[a] < 1) return gr_error(GR_ERR_INVALID_ARG, "smooth: grid size %lld along axis %d", (long long)g->n[a], a);
    if (!(sigma_vox[a] >= 0.0) || !isfinite(sigma_vox[a]))
      return gr_error(GR_ERR_INVALID_ARG, "smooth: sigma %g voxels along axis %d (must be finite and >= 0)",
                      sigma_vox[a], a);
  }
  int r[3];
  for (int a = 0; a < 3; ++a) {
    r[a] = sigma_vox[a] > 0.0 ? kernel_radius(sigma_vox[a], g->n[a]) : 0;
    if (r[a] > kSmoothMaxR)
      return gr_error(GR_ERR_UNSUPPORTED, "cuda smooth: sigma %g voxels along axis %d needs a %d-voxel radius (limit %d)",
                      sigma_vox[a], a, r[a], kSmoothMaxR);
  }
  if (!r[0] && !r[1] && !r[2]) return GR_OK;
  gr_status s = enter(be);
  if (s != GR_OK) return s;
  const Dims d = dims_of(g);
  cudaStream_t st = impl_of(be)->stream;
  const bool tiled = r[0] <= kTileR && r[1] <= kTileR;
  AxisKernel<kTileR> tk[2];
  AxisKernel<kSmoothMaxR> gk[3];
  for (int a = 0; a < 3; ++a) {
    gk[a].r = 0;
    gk[a].len = d.n[a];
    if (r[a]) build_kernel(sigma_vox[a], d.n[a], r[a], &gk[a]);
    if (a < 2) {
      tk[a].r = 0;
      tk[a].len = d.n[a];
      if (r[a] && tiled) build_kernel(sigma_vox[a], d.n[a], r[a], &tk[a]);
    }
  }
  float *tmp = (float *)scratch_alloc(be, (size_t)d.nvox * sizeof(float), "smoothing plane");
  if (!tmp) return GR_ERR_NOMEM;

  const dim3 vblock(kBX, kBY), vgrid = voxel_grid(d.n);
  const dim3 tgrid((unsigned)((d.n[0] + kTile - 1) / kTile), (unsigned)((d.n[1] + kTile - 1) / kTile),
                   (unsigned)(d.n[2] < 65535 ? d.n[2] : 65535));
  /* z walkers: enough (x, y, z-chunk) blocks for ~8 per SM, chunks >= 16 planes */
  const long long cols = (long long)vgrid.x * vgrid.y;
  long long nzc = (8LL * impl_of(be)->num_sms + cols - 1) / cols;
  long long zchunk = (d.n[2] + nzc - 1) / nzc;
  if (zchunk < 16) zchunk = 16;
  nzc = (d.n[2] + zchunk - 1) / zchunk;
  if (nzc > 65535) {
    nzc = 65535;
    zchunk = (d.n[2] + nzc - 1) / nzc;
  }
  const dim3 zgrid(vgrid.x, vgrid.y, (unsigned)nzc);
  /* 16-byte columns when every plane start is 16-byte aligned */
  const bool vec4 = d.n[0] % 4 == 0 && ((uintptr_t)data % 16) == 0 && ((uintptr_t)tmp % 16) == 0;
  const dim3 zgrid4((unsigned)((d.n[0] / 4 + kBX - 1) / kBX), vgrid.y, (unsigned)nzc);

  cudaError_t e = cudaSuccess;
  for (int q = 0; q < ncomp && e == cudaSuccess; ++q) {
    float *plane = data + (long long)q * d.nvox;
    float *cur = plane, *other = tmp;
    if (r[0] || r[1]) {
      if (tiled) {
        smooth_xy_kernel<<<tgrid, 256, 0, st>>>(cur, other, d, tk[0], tk[1]);
        float *t = cur; cur = other; other = t;
      } else {
        for (int a = 0; a < 2; ++a) {
          if (!r[a]) continue;
          smooth_axis_kernel<<<vgrid, vblock, 0, st>>>(cur, other, d, gk[a], a);
          float *t = cur; cur = other; other = t;
        }
      }
    }
    if (r[2]) {
      if (vec4) smooth_z_kernel<4><<<zgrid4, vblock, 0, st>>>(cur, other, d, gk[2], zchunk);
      else smooth_z_kernel<1><<<zgrid, vblock, 0, st>>>(cur, other, d, gk[2], zchunk);
      float *t = cur; cur = other; other = t;
    }
    e = cudaGetLastError();
    if (e == cudaSuccess && cur != plane)
      e = cudaMemcpyAsync(plane, cur, (size_t)d.nvox * sizeof(float), cudaMemcpyDeviceToDevice, st);
  }
  scratch_free(be, tmp);
  if (e != cudaSuccess) return device_error(e, "smoothing kernels");
  return GR_OK;
}

}  // namespace grcu
