/* Separable Gaussian smoothing, in place (cpu_smooth.c semantics: truncated at
 * ceil(3 sigma) capped at len-1, kernel renormalised over the in-grid taps,
 * each axis' result rounded to float before the next axis; each output is
 *   g(0) v[i] + sum_{t = r..1} g(t) (v[i-t] + v[i+t])
 * samples outside the grid reading 0). Two precisions (Impl::exact):
 *   exact (GIGAREG_CUDA_EXACT=1): in double, in the CPU's order, no fused
 *     multiply-adds: bitwise the CPU's result, but FP64- and conversion-bound
 *     (~8 ms per 3-component call at 512^3 on an H100);
 *   default: float with fused multiply-adds, memory-bound, within ~1e-6
 *     relative of the CPU (the weights are rounded to float once).
 *
 * Passes, per component plane (scratch: one plane, 4 bytes per voxel):
 *   XY: x and y fused in one kernel on 32x32 tiles in shared memory (the x pass
 *       is computed on the tile's y-halo rows too, exactly as the CPU's x pass
 *       would have produced them), plane -> scratch;
 *   Z : each thread walks four adjacent z-columns (16-byte loads), taps from
 *       L1 (the block's 2r+1 recent planes stay resident), scratch -> plane.
 * The float path streams instead (smooth_xy_walk4_kernel: warps walk y over
 * 128-column strips, 4 columns per lane, x taps by shuffles, for x and y radii
 * 1..4; smooth_xy_walk_kernel otherwise), and the z pass keeps its window in
 * registers for radii <= 6 (smooth_z_reg_kernel, 16-byte or scalar columns,
 * the next plane's load issued one step ahead), both precisions.
 * So a smoothing of all three axes reads and writes each voxel twice (16 bytes
 * per component) instead of three times. Radii above the tile's halo (x or y
 * radius > 16, sigma > ~5.3 voxels) use one generic kernel per axis.
 * Weights ride in the kernel parameters (constant bank, read with uniform
 * indices); radius up to 127 voxels per axis. */
#include <type_traits>
#include "cuda_ops.cuh"
#include "cuda_smooth.cuh"

namespace grcu {

constexpr int kTile = 32;

/* Fused x+y pass over one z-plane tile; in != out. 256 threads = 32 columns x
 * 8 row groups; each thread keeps the accumulators of its rows (ty + 8k) in
 * registers and walks the taps outermost, so its 4-8 independent double
 * chains overlap (a thread per output, one chain at a time, left the FP64
 * pipes waiting on latency). Per output the taps are still added in the CPU's
 * order. */
template <typename T>
__global__ void __launch_bounds__(256, 3) smooth_xy_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                        const Dims d, const AxisKernel<T, kTileR> kx,
                                                        const AxisKernel<T, kTileR> ky) {
  __shared__ float tin[kTile + 2 * kTileR][kTile + 2 * kTileR + 1];
  __shared__ float tmid[kTile + 2 * kTileR][kTile];
  constexpr int kRowsX = (kTile + 2 * kTileR) / 8, kRowsY = kTile / 8;
  const int tid = threadIdx.x, col = tid & 31, ty = tid >> 5;
  const int rx = kx.r, ry = ky.r;
  const long long nx = d.n[0], ny = d.n[1];
  const long long x0 = (long long)blockIdx.x * kTile, y0 = (long long)blockIdx.y * kTile;
  const int H = kTile + 2 * ry, Wd = kTile + 2 * rx;
  const long long gx = x0 + col;
  const T inv_x = (rx && gx < nx) ? inv_norm(kx, gx) : T(0);
  for (long long z = blockIdx.z; z < d.n[2]; z += gridDim.z) {
    const float *pin = in + z * d.nxy;
    for (int idx = tid; idx < H * Wd; idx += 256) {
      const int row = idx / Wd, c = idx - row * Wd;
      const long long sx = x0 - rx + c, sy = y0 - ry + row;
      tin[row][c] = (sx >= 0 && sx < nx && sy >= 0 && sy < ny) ? __ldg(pin + sy * nx + sx) : 0.0f;
    }
    __syncthreads();
    /* x pass on all H rows (the tile's y-halo rows included); tin is zero outside the grid */
    T ax[kRowsX];
#pragma unroll
    for (int k = 0; k < kRowsX; ++k) {
      const int row = ty + 8 * k;
      ax[k] = row < H ? smul(kx.w[rx], (T)tin[row][col + rx]) : T(0);
    }
    for (int t = 0; t < rx; ++t) {
      const T wt = kx.w[t];
#pragma unroll
      for (int k = 0; k < kRowsX; ++k) {
        const int row = ty + 8 * k;
        if (row < H) ax[k] = stap(ax[k], wt, (T)tin[row][col + t], (T)tin[row][col + 2 * rx - t]);
      }
    }
#pragma unroll
    for (int k = 0; k < kRowsX; ++k) {
      const int row = ty + 8 * k;
      if (row >= H) continue;
      const long long sy = y0 - ry + row;
      float m = 0.0f;
      if (gx < nx && sy >= 0 && sy < ny) m = rx ? (float)smul(ax[k], inv_x) : tin[row][col + rx];
      tmid[row][col] = m;
    }
    __syncthreads();
    /* y pass on the 32 x 32 outputs; tmid rows outside the grid are zero */
    T ay[kRowsY];
#pragma unroll
    for (int k = 0; k < kRowsY; ++k) ay[k] = smul(ky.w[ry], (T)tmid[ty + 8 * k + ry][col]);
    for (int t = 0; t < ry; ++t) {
      const T wt = ky.w[t];
#pragma unroll
      for (int k = 0; k < kRowsY; ++k) {
        const int row = ty + 8 * k;
        ay[k] = stap(ay[k], wt, (T)tmid[row + t][col], (T)tmid[row + 2 * ry - t][col]);
      }
    }
    float *pout = out + z * d.nxy;
#pragma unroll
    for (int k = 0; k < kRowsY; ++k) {
      const long long gy = y0 + ty + 8 * k;
      if (gx >= nx || gy >= ny) continue;
      pout[gy * nx + gx] = ry ? (float)smul(ay[k], inv_norm(ky, gy)) : tmid[ty + 8 * k][col];
    }
    __syncthreads();
  }
}

/* z pass: one thread per V adjacent (x, y) columns (V = 4: 16-byte loads, four
 * independent accumulators), walking a chunk of z; the block's 2r+1 recent
 * planes stay in L1. in != out. */
template <typename T, int V>
__global__ void __launch_bounds__(kBlock) smooth_z_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                          const Dims d, const AxisKernel<T, kSmoothMaxR> kz,
                                                          long long zchunk) {
  const long long gx = ((long long)blockIdx.x * kBX + threadIdx.x) * V, gy = (long long)blockIdx.y * kBY + threadIdx.y;
  if (gx >= d.n[0] || gy >= d.n[1]) return;
  const long long nz = d.n[2], base = gy * d.n[0] + gx;
  const long long z0 = (long long)blockIdx.z * zchunk, z1 = z0 + zchunk < nz ? z0 + zchunk : nz;
  const int r = kz.r;
  for (long long z = z0; z < z1; ++z) {
    T acc[V], lo[V], hi[V];
    if (V == 4) {
      const float4 c = __ldg(reinterpret_cast<const float4 *>(in + z * d.nxy + base));
      acc[0] = smul(kz.w[r], (T)c.x);
      acc[1] = smul(kz.w[r], (T)c.y);
      acc[2] = smul(kz.w[r], (T)c.z);
      acc[3] = smul(kz.w[r], (T)c.w);
    } else {
      acc[0] = smul(kz.w[r], (T)__ldg(in + z * d.nxy + base));
    }
    for (int t = 0; t < r; ++t) {
      const long long zl = z - r + t, zh = z + r - t;
      if (V == 4) {
        const float4 a = zl >= 0 ? __ldg(reinterpret_cast<const float4 *>(in + zl * d.nxy + base)) : make_float4(0.f, 0.f, 0.f, 0.f);
        const float4 b = zh < nz ? __ldg(reinterpret_cast<const float4 *>(in + zh * d.nxy + base)) : make_float4(0.f, 0.f, 0.f, 0.f);
        lo[0] = a.x; lo[1] = a.y; lo[2] = a.z; lo[3] = a.w;
        hi[0] = b.x; hi[1] = b.y; hi[2] = b.z; hi[3] = b.w;
      } else {
        lo[0] = zl >= 0 ? (T)__ldg(in + zl * d.nxy + base) : T(0);
        hi[0] = zh < nz ? (T)__ldg(in + zh * d.nxy + base) : T(0);
      }
      const T wt = kz.w[t];
#pragma unroll
      for (int v = 0; v < V; ++v) acc[v] = stap(acc[v], wt, lo[v], hi[v]);
    }
    const T inv = inv_norm(kz, z);
    if (V == 4) {
      float4 o;
      o.x = (float)smul(acc[0], inv);
      o.y = (float)smul(acc[1], inv);
      o.z = (float)smul(acc[2], inv);
      o.w = (float)smul(acc[3], inv);
      *reinterpret_cast<float4 *>(out + z * d.nxy + base) = o;
    } else {
      out[z * d.nxy + base] = (float)smul(acc[0], inv);
    }
  }
}

/* z pass for small radii (R <= kZRegMax): one thread per V adjacent (x, y)
 * columns (V = 4: 16-byte accesses, needs 16-byte columns; V = 1: any row
 * length) walks a chunk of z with the 2R+1 planes of its window in registers,
 * so every input plane is read once per chunk (plus 2R halo planes) instead
 * of 2R+1 times from cache, and the next kZPrefetch planes' loads are issued
 * ahead (one load in flight per thread left HBM latency-bound). Same
 * arithmetic and order as smooth_z_kernel (bitwise equal in either precision).
 * in != out. */
constexpr int kZRegMax = 6;
constexpr int kZPrefetch = 1;

template <int V> struct ZVec;
template <> struct ZVec<4> {
  static __device__ __forceinline__ void load(const float *p, float (&v)[4]) {
    const float4 c = __ldg(reinterpret_cast<const float4 *>(p));
    v[0] = c.x; v[1] = c.y; v[2] = c.z; v[3] = c.w;
  }
  static __device__ __forceinline__ void store(float *p, const float (&v)[4]) {
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};
template <> struct ZVec<1> {
  static __device__ __forceinline__ void load(const float *p, float (&v)[1]) { v[0] = __ldg(p); }
  static __device__ __forceinline__ void store(float *p, const float (&v)[1]) { *p = v[0]; }
};

template <typename T, int R, int V>
__global__ void __launch_bounds__(kBlock, !std::is_same<T, float>::value ? 1 : V == 1 || R <= 3 ? 4 : R == 4 ? 3 : 2)
    smooth_z_reg_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                              const Dims d, const AxisKernel<T, kSmoothMaxR> kz,
                                                              long long zchunk) {
  const long long gx = ((long long)blockIdx.x * kBX + threadIdx.x) * V, gy = (long long)blockIdx.y * kBY + threadIdx.y;
  if (gx >= d.n[0] || gy >= d.n[1]) return;
  const long long nz = d.n[2], nxy = d.nxy;
  const long long z0 = (long long)blockIdx.z * zchunk, z1 = z0 + zchunk < nz ? z0 + zchunk : nz;
  const float *col = in + gy * d.n[0] + gx;
  float win[2 * R + 1][V]; /* win[j]: plane z - R + j */
  float pf[kZPrefetch][V]; /* planes z + R + 1 .. z + R + kZPrefetch (zero past the chunk's window) */
  auto fetch = [&](long long zz, float (&v)[V]) {
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = 0.0f;
    if (zz >= 0 && zz < nz && zz < z1 + R) ZVec<V>::load(col + zz * nxy, v);
  };
#pragma unroll
  for (int j = 0; j < 2 * R; ++j) fetch(z0 - R + j, win[j + 1]);
  fetch(z0 + R, win[0]); /* parked in win[0]: shifted into win[2R] below */
#pragma unroll
  for (int p = 0; p < kZPrefetch; ++p) fetch(z0 + R + 1 + p, pf[p]);
  float nxt[V];
#pragma unroll
  for (int i = 0; i < V; ++i) nxt[i] = win[0][i];
  float *o = out + gy * d.n[0] + gx + z0 * nxy;
  for (long long z = z0; z < z1; ++z, o += nxy) {
#pragma unroll
    for (int j = 0; j < 2 * R; ++j)
#pragma unroll
      for (int i = 0; i < V; ++i) win[j][i] = win[j + 1][i];
#pragma unroll
    for (int i = 0; i < V; ++i) win[2 * R][i] = nxt[i];
#pragma unroll
    for (int i = 0; i < V; ++i) nxt[i] = pf[0][i];
#pragma unroll
    for (int p = 0; p + 1 < kZPrefetch; ++p)
#pragma unroll
      for (int i = 0; i < V; ++i) pf[p][i] = pf[p + 1][i];
    fetch(z + R + 1 + kZPrefetch, pf[kZPrefetch - 1]);
    const T wc = kz.w[R];
    T a[V];
#pragma unroll
    for (int i = 0; i < V; ++i) a[i] = smul(wc, (T)win[R][i]);
#pragma unroll
    for (int t = 0; t < R; ++t) {
      const T wt = kz.w[t];
#pragma unroll
      for (int i = 0; i < V; ++i) a[i] = stap(a[i], wt, (T)win[t][i], (T)win[2 * R - t][i]);
    }
    const T inv = inv_norm(kz, z);
    float res[V];
#pragma unroll
    for (int i = 0; i < V; ++i) res[i] = (float)smul(a[i], inv);
    ZVec<V>::store(o, res);
  }
}

/* Fused x + y pass for the float path and small y radii (RY <= kZRegMax, x
 * radius <= kTileR): each warp owns a 32-column strip of one z-plane and walks
 * a chunk of y. Per step it stages one input row (32 + 2 rx floats) in its own
 * shared-memory slot, forms the x-smoothed row, and keeps the last 2 RY + 1
 * x-smoothed rows in registers, from which it writes the y-smoothed output
 * row. Every input row is read once per chunk (plus 2 RY halo rows and the 2 rx
 * halo columns), every output written once: a streaming pass, where the tiled
 * kernel spends its time in barriers. Rows outside the grid are zero and each
 * axis is renormalised over its in-grid taps, as everywhere else. */
constexpr int kWalkWarps = 8;

/* The (plane, strip, y range) of warp `wid` of this block in an x+y walk
 * (walk_shape's decomposition); false for the tail warps past the last job. */
struct WalkJob {
  long long z, strip, y0, y1;
};

__device__ __forceinline__ bool walk_job(const Dims &d, long long ychunk, long long nstrips, long long nychunks,
                                         int wid, WalkJob *j) {
  const long long job = (long long)blockIdx.x * kWalkWarps + wid;
  const long long per_plane = nstrips * nychunks;
  if (job >= per_plane * d.n[2]) return false;
  j->z = job / per_plane;
  const long long rem = job - j->z * per_plane;
  const long long yc = rem / nstrips;
  j->strip = rem - yc * nstrips;
  j->y0 = yc * ychunk;
  j->y1 = j->y0 + ychunk < d.n[1] ? j->y0 + ychunk : d.n[1];
  return true;
}

template <int RY>
__global__ void __launch_bounds__(32 * kWalkWarps) smooth_xy_walk_kernel(const float *__restrict__ in,
                                                                        float *__restrict__ out, const Dims d,
                                                                        const AxisKernel<float, kTileR> kx,
                                                                        const AxisKernel<float, kTileR> ky,
                                                                        long long ychunk, long long nstrips,
                                                                        long long nychunks) {
  __shared__ float row[kWalkWarps][32 + 2 * kTileR];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  WalkJob jb;
  if (!walk_job(d, ychunk, nstrips, nychunks, wid, &jb)) return;
  const long long z = jb.z, y0 = jb.y0, y1 = jb.y1;
  const long long nx = d.n[0], ny = d.n[1];
  const long long x0 = jb.strip * 32, gx = x0 + lane;
  const int rx = kx.r;
  const float inv_x = rx ? inv_norm(kx, gx < nx ? gx : nx - 1) : 1.0f;
  const float *plane = in + z * d.nxy;
  float *srow = row[wid];

  /* Raw samples of row yy this lane stages: column x0 - rx + lane and, for the
   * last 2 rx slots, x0 - rx + lane + 32 (zero outside the grid). */
  auto load_row = [&](long long yy, float &a, float &b) {
    a = b = 0.0f;
    if (yy < 0 || yy >= ny) return;
    const float *p = plane + yy * nx;
    const long long sx = x0 - rx + lane;
    if (sx >= 0 && sx < nx) a = __ldg(p + sx);
    if (lane < 2 * rx && sx + 32 < nx) b = __ldg(p + sx + 32);
  };
  /* x-smoothed value at this lane's column of a staged row */
  auto xsmooth = [&](float a, float b) -> float {
    if (!rx) return a; /* x axis skipped (warp-uniform) */
    srow[lane] = a;
    if (lane < 2 * rx) srow[lane + 32] = b;
    __syncwarp();
    float acc = __fmul_rn(kx.w[rx], srow[lane + rx]);
    for (int t = 0; t < rx; ++t) acc = stap(acc, kx.w[t], srow[lane + t], srow[lane + 2 * rx - t]);
    __syncwarp(); /* the slot is rewritten by the next row */
    return __fmul_rn(acc, inv_x);
  };

  /* Rows y0 - RY .. y1 - 1 + RY in order; two rows' loads stay in flight
   * while the current one is smoothed (one outstanding load per warp leaves
   * HBM half idle). */
  const long long rfirst = y0 - RY, nrows = (y1 - y0) + 2 * RY;
  float a0, b0, a1, b1;
  load_row(rfirst, a0, b0);
  load_row(rfirst + 1, a1, b1);
  float win[2 * RY + 1]; /* win[j]: x-smoothed row y - RY + j once full */
#pragma unroll
  for (int j = 0; j <= 2 * RY; ++j) win[j] = 0.0f;
  for (long long k = 0; k < nrows; ++k) {
    const float ca = a0, cb = b0;
    a0 = a1;
    b0 = b1;
    if (k + 2 < nrows) load_row(rfirst + k + 2, a1, b1);
    const long long yy = rfirst + k;
    const float xs = (yy >= 0 && yy < ny) ? xsmooth(ca, cb) : 0.0f;
#pragma unroll
    for (int j = 0; j < 2 * RY; ++j) win[j] = win[j + 1];
    win[2 * RY] = xs;
    if (k < 2 * RY) continue;
    const long long y = yy - RY;
    float acc = __fmul_rn(ky.w[RY], win[RY]);
#pragma unroll
    for (int t = 0; t < RY; ++t) acc = stap(acc, ky.w[t], win[t], win[2 * RY - t]);
    if (RY) acc = __fmul_rn(acc, inv_norm(ky, y));
    else acc = win[0];
    if (gx < nx) out[z * d.nxy + y * nx + gx] = acc;
  }
}

/* The same streaming x + y pass with each lane owning 4 adjacent columns (a
 * warp strip is 128 columns): one 16-byte load and store per lane and row when
 * rows are 16-byte aligned (vec), else four scalar ones; the x taps come from
 * the neighbour lanes by shuffles (lanes 0-3 and 28-31 load the strip's
 * 4-column halos), so there is no shared memory and the index arithmetic and
 * loop overhead are spread over 4 outputs: the one-column walk issued ~4x the
 * instructions and was issue-bound. Radii RX, RY in 1..4 (the halo is one
 * 4-column block). Per output the same operations in the same order as
 * smooth_xy_walk_kernel, so the results are bitwise equal to it. */

template <int RX, int RY>
__global__ void __launch_bounds__(32 * kWalkWarps, RY >= 4 ? 2 : 3) smooth_xy_walk4_kernel(
    const float *__restrict__ in, float *__restrict__ out, const Dims d, const AxisKernel<float, kTileR> kx,
    const AxisKernel<float, kTileR> ky, long long ychunk, long long nstrips, long long nychunks, int vec) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  WalkJob jb;
  if (!walk_job(d, ychunk, nstrips, nychunks, wid, &jb)) return;
  const long long z = jb.z, y0 = jb.y0, y1 = jb.y1;
  const long long nx = d.n[0], ny = d.n[1];
  const Strip4 sp = strip4_at(jb.strip, lane, nx);
  const long long c0 = sp.c0;
  /* the x renormalisations of the lane's columns live in shared memory (registers are the limit) */
  __shared__ float4 sinv[32 * kWalkWarps];
  {
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = inv_norm(kx, c0 + j < nx ? c0 + j : nx - 1);
    sinv[threadIdx.x] = make_float4(v[0], v[1], v[2], v[3]);
  }
  const float *plane = in + z * d.nxy;
  auto load_row = [&](int yy, const float *p, float (&c)[4], float &h) { strip4_load(sp, nx, ny, yy, p, vec, c, h); };
  auto xsmooth = [&](const float (&c)[4], float h, float (&xs)[4]) {
    const float4 iv = sinv[threadIdx.x];
    const float inv_x[4] = {iv.x, iv.y, iv.z, iv.w};
    strip4_xsmooth<RX>(lane, kx, c, h, inv_x, xs);
  };

  const int rfirst = (int)y0 - RY, nrows = (int)(y1 - y0) + 2 * RY;
  float c0r[4], c1r[4], h0r, h1r;
  const float *prow = plane + (long long)rfirst * nx; /* row rfirst + k + 2 at step k (the pointer is formed, not read, outside the grid) */
  load_row(rfirst, prow, c0r, h0r);
  prow += nx;
  load_row(rfirst + 1, prow, c1r, h1r);
  prow += nx;
  float win[2 * RY + 1][4]; /* win[j]: x-smoothed row y - RY + j once full */
#pragma unroll
  for (int j = 0; j <= 2 * RY; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) win[j][i] = 0.0f;
  float *orow = out + z * d.nxy + (y0 - 2 * RY) * nx + c0; /* output row of step k: y0 - 2 RY + k */
  for (int k = 0; k < nrows; ++k, orow += nx, prow += nx) {
    float ca[4];
    const float cb = h0r;
    h0r = h1r;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      ca[i] = c0r[i];
      c0r[i] = c1r[i];
    }
    if (k + 2 < nrows) load_row(rfirst + k + 2, prow, c1r, h1r);
#pragma unroll
    for (int j = 0; j < 2 * RY; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) win[j][i] = win[j + 1][i];
    xsmooth(ca, cb, win[2 * RY]); /* rows outside the grid load as zeros and smooth to +0 */
    if (k < 2 * RY) continue;
    const int y = rfirst + k - RY;
    float o[4];
    taps4<RY>(ky, win, inv_norm(ky, y), o);
    if (vec) {
      if (c0 < nx) *reinterpret_cast<float4 *>(orow) = make_float4(o[0], o[1], o[2], o[3]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (c0 + i < nx) orow[i] = o[i];
    }
  }
}

/* Launch shape of an x+y walk: strips of `cols` columns, each split in y into
 * chunks long enough that the 2 RY halo rows cost little and numerous enough
 * for about `warps_per_sm` warps per SM; one warp per (strip, y chunk, plane). */
struct WalkShape {
  long long nstrips, nyc, ychunk;
  dim3 grid, block;
};

static cudaError_t walk_shape(const Dims &d, long long cols, long long warps_per_sm, int num_sms, WalkShape *w) {
  w->nstrips = (d.n[0] + cols - 1) / cols;
  long long nyc = (warps_per_sm * num_sms + w->nstrips * d.n[2] - 1) / (w->nstrips * d.n[2]);
  long long ychunk = (d.n[1] + (nyc > 0 ? nyc : 1) - 1) / (nyc > 0 ? nyc : 1);
  if (ychunk < 32) ychunk = 32;
  w->ychunk = ychunk;
  w->nyc = (d.n[1] + ychunk - 1) / ychunk;
  const long long warps = w->nstrips * w->nyc * d.n[2];
  const long long blocks = (warps + kWalkWarps - 1) / kWalkWarps;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;
  w->grid = dim3((unsigned)blocks);
  w->block = dim3(32 * kWalkWarps);
  return cudaSuccess;
}

static cudaError_t launch_xy_walk4(int rx, int ry, bool vec, const Dims &d, const AxisKernel<float, kTileR> &kx,
                                   const AxisKernel<float, kTileR> &ky, int num_sms, cudaStream_t st,
                                   const float *in, float *out) {
  WalkShape w;
  const cudaError_t e = walk_shape(d, 128, 48, num_sms, &w); /* 4 columns per lane */
  if (e != cudaSuccess) return e;
  const int v = vec ? 1 : 0;
#define GR_WALK4(RX_, RY_)                                                                                        \
  case (RX_)*8 + (RY_):                                                                                           \
    smooth_xy_walk4_kernel<RX_, RY_><<<w.grid, w.block, 0, st>>>(in, out, d, kx, ky, w.ychunk, w.nstrips, w.nyc, v); \
    break;
  switch (rx * 8 + ry) {
    GR_WALK4(1, 1) GR_WALK4(1, 2) GR_WALK4(1, 3) GR_WALK4(1, 4)
    GR_WALK4(2, 1) GR_WALK4(2, 2) GR_WALK4(2, 3) GR_WALK4(2, 4)
    GR_WALK4(3, 1) GR_WALK4(3, 2) GR_WALK4(3, 3) GR_WALK4(3, 4)
    GR_WALK4(4, 1) GR_WALK4(4, 2) GR_WALK4(4, 3) GR_WALK4(4, 4)
    default: return cudaErrorInvalidValue;
  }
#undef GR_WALK4
  return cudaGetLastError();
}

static cudaError_t launch_xy_walk(int ry, const Dims &d, const AxisKernel<float, kTileR> &kx,
                                  const AxisKernel<float, kTileR> &ky, int num_sms, cudaStream_t st, const float *in,
                                  float *out) {
  WalkShape w;
  const cudaError_t e = walk_shape(d, 32, 64, num_sms, &w); /* 1 column per lane */
  if (e != cudaSuccess) return e;
  const dim3 grid = w.grid, block = w.block;
  const long long ychunk = w.ychunk, nstrips = w.nstrips, nyc = w.nyc;
  switch (ry) {
    case 0: smooth_xy_walk_kernel<0><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
    case 1: smooth_xy_walk_kernel<1><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
    case 2: smooth_xy_walk_kernel<2><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
    case 3: smooth_xy_walk_kernel<3><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
    case 4: smooth_xy_walk_kernel<4><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
    case 5: smooth_xy_walk_kernel<5><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
    default: smooth_xy_walk_kernel<6><<<grid, block, 0, st>>>(in, out, d, kx, ky, ychunk, nstrips, nyc); break;
  }
  return cudaGetLastError();
}

/* One wave of register-window z walkers: (x, y) blocks times z chunks of >= 16
 * planes (each chunk re-reads 2r halo planes), as many as fit resident. */
template <typename T, int R, int V>
static void launch_z_reg_r(int num_sms, cudaStream_t st, const float *in, float *out, const Dims &d,
                           const AxisKernel<T, kSmoothMaxR> &kz) {
  const dim3 b(kBX, kBY);
  const unsigned gx = (unsigned)(((V == 4 ? d.n[0] / 4 : d.n[0]) + kBX - 1) / kBX);
  const unsigned gy = (unsigned)((d.n[1] + kBY - 1) / kBY);
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, smooth_z_reg_kernel<T, R, V>, kBlock, 0) != cudaSuccess ||
      per_sm < 1)
    per_sm = 2;
  long long n = (long long)per_sm * num_sms / ((long long)gx * gy);
  if (n < 1) n = 1;
  long long zchunk = (d.n[2] + n - 1) / n;
  if (zchunk < 16) zchunk = 16;
  n = (d.n[2] + zchunk - 1) / zchunk;
  if (n > 65535) {
    n = 65535;
    zchunk = (d.n[2] + n - 1) / n;
  }
  smooth_z_reg_kernel<T, R, V><<<dim3(gx, gy, (unsigned)n), b, 0, st>>>(in, out, d, kz, zchunk);
}

template <typename T, int V>
static void launch_z_reg(int r, int num_sms, cudaStream_t st, const float *in, float *out, const Dims &d,
                         const AxisKernel<T, kSmoothMaxR> &kz) {
  switch (r) {
    case 1: launch_z_reg_r<T, 1, V>(num_sms, st, in, out, d, kz); break;
    case 2: launch_z_reg_r<T, 2, V>(num_sms, st, in, out, d, kz); break;
    case 3: launch_z_reg_r<T, 3, V>(num_sms, st, in, out, d, kz); break;
    case 4: launch_z_reg_r<T, 4, V>(num_sms, st, in, out, d, kz); break;
    case 5: launch_z_reg_r<T, 5, V>(num_sms, st, in, out, d, kz); break;
    default: launch_z_reg_r<T, 6, V>(num_sms, st, in, out, d, kz); break;
  }
}

/* Generic pass along x (axis 0) or y (axis 1), one thread per voxel; in != out. */
template <typename T>
__global__ void __launch_bounds__(kBlock) smooth_axis_kernel(const float *__restrict__ in, float *__restrict__ out,
                                                             const Dims d, const AxisKernel<T, kSmoothMaxR> k, int axis) {
  const long long gx = (long long)blockIdx.x * kBX + threadIdx.x, gy = (long long)blockIdx.y * kBY + threadIdx.y;
  if (gx >= d.n[0] || gy >= d.n[1]) return;
  const long long stride = axis == 0 ? 1 : d.n[0];
  const long long pos = axis == 0 ? gx : gy, len = axis == 0 ? d.n[0] : d.n[1];
  const int r = k.r;
  for (long long z = blockIdx.z; z < d.n[2]; z += gridDim.z) {
    const long long v = z * d.nxy + gy * d.n[0] + gx;
    T acc = smul(k.w[r], (T)__ldg(in + v));
    for (int t = 0; t < r; ++t) {
      const long long pl = pos - r + t, ph = pos + r - t;
      const T lo = pl >= 0 ? (T)__ldg(in + v + (t - r) * stride) : T(0);
      const T hi = ph < len ? (T)__ldg(in + v + (r - t) * stride) : T(0);
      acc = stap(acc, k.w[t], lo, hi);
    }
    out[v] = (float)smul(acc, inv_norm(k, pos));
  }
}

/* The launch plan of one smoothing (shared by both precisions). */
struct SmoothPlan {
  Dims d;
  int r[3];
  bool tiled, vec4, walk_xy;
  int num_sms;
  dim3 vgrid, tgrid, zgrid, zgrid4;
  long long zchunk;
};

template <typename T>
static cudaError_t smooth_planes(const SmoothPlan &p, const double sigma_vox[3], float *data, float *tmp, int ncomp,
                                 cudaStream_t st) {
  const Dims &d = p.d;
  AxisKernel<T, kTileR> tk[2];
  AxisKernel<T, kSmoothMaxR> gk[3];
  for (int a = 0; a < 3; ++a) {
    gk[a].r = 0;
    gk[a].len = d.n[a];
    if (p.r[a]) smooth_kernel_build(sigma_vox[a], d.n[a], p.r[a], &gk[a]);
    if (a < 2) {
      tk[a].r = 0;
      tk[a].len = d.n[a];
      if (p.r[a] && p.tiled) smooth_kernel_build(sigma_vox[a], d.n[a], p.r[a], &tk[a]);
    }
  }
  const dim3 vblock(kBX, kBY);
  cudaError_t e = cudaSuccess;
  for (int q = 0; q < ncomp && e == cudaSuccess; ++q) {
    float *plane = data + (long long)q * d.nvox;
    float *cur = plane, *other = tmp;
    if (p.r[0] || p.r[1]) {
      bool walked = false;
      if constexpr (std::is_same<T, float>::value) {
        if (p.tiled && p.walk_xy && p.r[0] >= 1 && p.r[0] <= kWalk4MaxR && p.r[1] >= 1 && p.r[1] <= kWalk4MaxR) {
          const cudaError_t we = launch_xy_walk4(p.r[0], p.r[1], p.vec4, d, tk[0], tk[1], p.num_sms, st, cur, other);
          if (we != cudaSuccess) return we;
          float *t = cur; cur = other; other = t;
          walked = true;
        } else if (p.tiled && p.walk_xy && p.r[1] <= kZRegMax) {
          const cudaError_t we = launch_xy_walk(p.r[1], d, tk[0], tk[1], p.num_sms, st, cur, other);
          if (we != cudaSuccess) return we;
          float *t = cur; cur = other; other = t;
          walked = true;
        }
      }
      if (walked) {
      } else if (p.tiled) {
        smooth_xy_kernel<T><<<p.tgrid, 256, 0, st>>>(cur, other, d, tk[0], tk[1]);
        float *t = cur; cur = other; other = t;
      } else {
        for (int a = 0; a < 2; ++a) {
          if (!p.r[a]) continue;
          smooth_axis_kernel<T><<<p.vgrid, vblock, 0, st>>>(cur, other, d, gk[a], a);
          float *t = cur; cur = other; other = t;
        }
      }
    }
    if (p.r[2]) {
      if (p.vec4 && p.r[2] <= kZRegMax) launch_z_reg<T, 4>(p.r[2], p.num_sms, st, cur, other, d, gk[2]);
      else if (p.r[2] <= kZRegMax) launch_z_reg<T, 1>(p.r[2], p.num_sms, st, cur, other, d, gk[2]);
      else if (p.vec4) smooth_z_kernel<T, 4><<<p.zgrid4, vblock, 0, st>>>(cur, other, d, gk[2], p.zchunk);
      else smooth_z_kernel<T, 1><<<p.zgrid, vblock, 0, st>>>(cur, other, d, gk[2], p.zchunk);
      float *t = cur; cur = other; other = t;
    }
    e = cudaGetLastError();
    if (e == cudaSuccess && cur != plane)
      e = cudaMemcpyAsync(plane, cur, (size_t)d.nvox * sizeof(float), cudaMemcpyDeviceToDevice, st);
  }
  return e;
}

gr_status smooth(gr_backend *be, const gr_grid *g, float *data, int ncomp, const double sigma_vox[3]) {
  if (!g || !data || !sigma_vox) return gr_error(GR_ERR_INVALID_ARG, "smooth: NULL argument");
  if (ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "smooth: %d components", ncomp);
  SmoothPlan p;
  const gr_status rs = smooth_radii("smooth", g, sigma_vox, p.r);
  if (rs != GR_OK) return rs;
  for (int a = 0; a < 3; ++a) {
    if (p.r[a] > kSmoothMaxR)
      return gr_error(GR_ERR_UNSUPPORTED, "cuda smooth: sigma %g voxels along axis %d needs a %d-voxel radius (limit %d)",
                      sigma_vox[a], a, p.r[a], kSmoothMaxR);
  }
  if (!p.r[0] && !p.r[1] && !p.r[2]) return GR_OK;
  gr_status s = enter(be);
  if (s != GR_OK) return s;
  Impl *im = impl_of(be);
  p.d = dims_of(g);
  const Dims &d = p.d;
  p.tiled = p.r[0] <= kTileR && p.r[1] <= kTileR;
  p.walk_xy = true;
  p.num_sms = im->num_sms;
  float *tmp = (float *)scratch_alloc(be, (size_t)d.nvox * sizeof(float), "smoothing plane");
  if (!tmp) return GR_ERR_NOMEM;

  p.vgrid = voxel_grid(d.n);
  p.tgrid = dim3((unsigned)((d.n[0] + kTile - 1) / kTile), (unsigned)((d.n[1] + kTile - 1) / kTile),
                 (unsigned)(d.n[2] < 65535 ? d.n[2] : 65535));
  /* z walkers: enough (x, y, z-chunk) blocks for ~8 per SM, chunks >= 16 planes */
  const long long cols = (long long)p.vgrid.x * p.vgrid.y;
  long long nzc = (8LL * im->num_sms + cols - 1) / cols;
  p.zchunk = (d.n[2] + nzc - 1) / nzc;
  if (p.zchunk < 16) p.zchunk = 16;
  nzc = (d.n[2] + p.zchunk - 1) / p.zchunk;
  if (nzc > 65535) {
    nzc = 65535;
    p.zchunk = (d.n[2] + nzc - 1) / nzc;
  }
  p.zgrid = dim3(p.vgrid.x, p.vgrid.y, (unsigned)nzc);
  /* 16-byte columns when every plane start is 16-byte aligned */
  p.vec4 = d.n[0] % 4 == 0 && ((uintptr_t)data % 16) == 0 && ((uintptr_t)tmp % 16) == 0;
  p.zgrid4 = dim3((unsigned)((d.n[0] / 4 + kBX - 1) / kBX), p.vgrid.y, (unsigned)nzc);

  const cudaError_t e = im->exact ? smooth_planes<double>(p, sigma_vox, data, tmp, ncomp, im->stream)
                                  : smooth_planes<float>(p, sigma_vox, data, tmp, ncomp, im->stream);
  scratch_free(be, tmp);
  if (e != cudaSuccess) return device_error(e, "smoothing kernels");
  return GR_OK;
}

}  // namespace grcu
