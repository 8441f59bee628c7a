/* resample: the composite implicit grid sampler (cpu_sampler.c semantics).
 *   y = A (x_phys + disp(x)) + t, i.e.
 *   c = M (i,j,k,1) + P disp(x),  M = in.p2i * T * out.i2p,  P = linear(in.p2i) * A
 *   out_q(x) = interp(in_q, c) for each of the ncomp planes.
 * One thread per output voxel; the stencil (or nearest index) is computed once
 * and shared by the planes. Coordinates and weights follow cpu_interp.h
 * bitwise (cuda_common.cuh), so nearest-neighbour label maps agree exactly. */
#include <string.h>
#include "cuda_ops.cuh"

namespace grcu {

void composite_map(const gr_grid *out_grid, const gr_grid *in_grid, const gr_affine *T, double M[12]) {
  gr_affine i2p, p2i, tmp, res;
  memcpy(i2p.m, out_grid->i2p, sizeof i2p.m);
  memcpy(p2i.m, in_grid->p2i, sizeof p2i.m);
  if (T) {
    gr_affine_compose(T, &i2p, &tmp);
    gr_affine_compose(&p2i, &tmp, &res);
  } else {
    gr_affine_compose(&p2i, &i2p, &res);
  }
  memcpy(M, res.m, sizeof res.m);
}

void disp_matrix(const double p2i[12], const gr_affine *T, double Q[9]) {
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      double s = 0.0;
      for (int k = 0; k < 3; ++k) s += p2i[r * 4 + k] * (T ? T->m[k * 4 + c] : (double)(k == c));
      Q[r * 3 + c] = s;
    }
}

struct ResampleMap {
  double M[12];
  double P[9]; /* linear(in.p2i) * A: maps the displacement (applied before T) to index offsets */
  Dims in, out;
  int ncomp;
};

template <int MODE> /* 0 = nearest, 1 = linear CLAMP, 2 = linear ZERO */
__global__ void __launch_bounds__(kBlock) resample_kernel(const ResampleMap rm, const float *__restrict__ in,
                                                          const float *__restrict__ disp, float *__restrict__ out,
                                                          bool nearest_clamp) {
  const long long i = (long long)blockIdx.x * kBX + threadIdx.x;
  const long long j = (long long)blockIdx.y * kBY + threadIdx.y;
  if (i >= rm.out.n[0] || j >= rm.out.n[1]) return;
  for (long long k = blockIdx.z; k < rm.out.n[2]; k += gridDim.z) {
    const long long v = (k * rm.out.n[1] + j) * rm.out.n[0] + i;
    double c[3];
#pragma unroll
    for (int r = 0; r < 3; ++r) {
      const double row = dadd(dadd(dmul(rm.M[r * 4 + 1], (double)j), dmul(rm.M[r * 4 + 2], (double)k)), rm.M[r * 4 + 3]);
      c[r] = dadd(row, dmul(rm.M[r * 4], (double)i));
    }
    if (disp) {
      const double ux = __ldg(disp + v), uy = __ldg(disp + rm.out.nvox + v), uz = __ldg(disp + 2 * rm.out.nvox + v);
#pragma unroll
      for (int r = 0; r < 3; ++r) c[r] = dadd(c[r], dot3(rm.P[r * 3], ux, rm.P[r * 3 + 1], uy, rm.P[r * 3 + 2], uz));
    }
    if (MODE == 0) {
      const long long o = nearest_offset(rm.in, c, nearest_clamp);
      for (int q = 0; q < rm.ncomp; ++q) out[q * rm.out.nvox + v] = o >= 0 ? __ldg(in + q * rm.in.nvox + o) : 0.0f;
      continue;
    }
    Axis a[3];
    bool inside = true;
    if (MODE == 1) {
#pragma unroll
      for (int d = 0; d < 3; ++d) axis_clamp(c[d], rm.in.n[d], a[d]);
    } else {
#pragma unroll
      for (int d = 0; d < 3; ++d) inside = inside && axis_zero(snap_index(c[d], rm.in.n[d]), rm.in.n[d], a[d]);
    }
    if (!inside) {
      for (int q = 0; q < rm.ncomp; ++q) out[q * rm.out.nvox + v] = 0.0f;
      continue;
    }
    const Corners o = tri_offsets(a, rm.in.n[0], rm.in.nxy);
    for (int q = 0; q < rm.ncomp; ++q) out[q * rm.out.nvox + v] = (float)tri_value_at(in + q * rm.in.nvox, o, a);
  }
}

gr_status resample(gr_backend *be, const gr_grid *out_grid, float *out, const gr_grid *in_grid, const float *in,
                   int ncomp, const gr_affine *T, const float *disp, gr_interp interp, gr_boundary boundary) {
  if (!out_grid || !in_grid || !out || !in)
    return gr_error(GR_ERR_INVALID_ARG, "cuda resample: NULL grid or image pointer");
  if (ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "cuda resample: ncomp %d (must be >= 1)", ncomp);
  for (int d = 0; d < 3; ++d)
    if (out_grid->n[d] <= 0 || in_grid->n[d] <= 0)
      return gr_error(GR_ERR_INVALID_ARG, "cuda resample: empty grid along axis %d (out %lld, in %lld)", d,
                      (long long)out_grid->n[d], (long long)in_grid->n[d]);
  if (interp != GR_INTERP_LINEAR && interp != GR_INTERP_NEAREST)
    return gr_error(GR_ERR_INVALID_ARG, "cuda resample: unknown interpolation %d", (int)interp);
  if (boundary != GR_BOUNDARY_ZERO && boundary != GR_BOUNDARY_CLAMP)
    return gr_error(GR_ERR_INVALID_ARG, "cuda resample: unknown boundary %d", (int)boundary);
  gr_status s = enter(be);
  if (s != GR_OK) return s;
  ResampleMap rm;
  composite_map(out_grid, in_grid, T, rm.M);
  disp_matrix(in_grid->p2i, T, rm.P);
  rm.in = dims_of(in_grid);
  rm.out = dims_of(out_grid);
  rm.ncomp = ncomp;
  const dim3 grid = voxel_grid(rm.out.n), block(kBX, kBY);
  cudaStream_t st = impl_of(be)->stream;
  const bool clamp = boundary == GR_BOUNDARY_CLAMP;
  if (interp == GR_INTERP_NEAREST)
    resample_kernel<0><<<grid, block, 0, st>>>(rm, in, disp, out, clamp);
  else if (clamp)
    resample_kernel<1><<<grid, block, 0, st>>>(rm, in, disp, out, clamp);
  else
    resample_kernel<2><<<grid, block, 0, st>>>(rm, in, disp, out, clamp);
  GRCU_LAUNCHED("resample kernel");
  return GR_OK;
}

}  // namespace grcu
