/* Out-of-place separable Gaussian (the backend's smooth_to): dst = the
 * smoothing of src, bitwise the values the in-place float path
 * (cuda_smooth.cu) leaves, in ONE pass over the data instead of two.
 *
 * Why: the in-place smoothing must stage the x+y result in a scratch plane
 * and read it back for z (each component read and written twice, 16 B per
 * voxel); with a separate destination the three axes fuse (the march in
 * cuda_smooth_xyz.cuh). The driver has such a destination for the field
 * smoothing after the Adam compose (the old u is dead once the compose has
 * read it). Traffic: src read once from DRAM (the y-halo rows and the 2R halo
 * planes of each z chunk come again, mostly from L2), dst written once: 8 B
 * per voxel and component against 16, and no scratch plane.
 *
 * Other cases (radii not all equal or outside 1..4, rows not 16-byte
 * aligned, the exact double path) copy src to dst and smooth in place. */
#include <stdint.h>
#include <stdlib.h>
#include "cuda_ops.cuh"
#include "cuda_smooth_xyz.cuh"

namespace grcu {

/* The march's epilogue: store the 4 smoothed voxels. */
struct StoreOut {
  float *dst;
  __device__ __forceinline__ void put(long long v, const float (&o)[4]) const {
    *reinterpret_cast<float4 *>(dst + v) = make_float4(o[0], o[1], o[2], o[3]);
  }
  __device__ __forceinline__ void finish() const {}
};

gr_status smooth_to(gr_backend *be, const gr_grid *g, const float *src, float *dst, int ncomp,
                    const double sigma_vox[3]) {
  if (!g || !src || !dst || !sigma_vox) return gr_error(GR_ERR_INVALID_ARG, "smooth_to: NULL argument");
  if (ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "smooth_to: %d components", ncomp);
  int r[3];
  gr_status s = smooth_radii("smooth_to", g, sigma_vox, r);
  if (s != GR_OK) return s;
  const size_t bytes = (size_t)(g->n[0] * g->n[1] * g->n[2]) * (size_t)ncomp * sizeof(float);
  const uintptr_t s0 = (uintptr_t)src, d0 = (uintptr_t)dst;
  if (s0 < d0 + bytes && d0 < s0 + bytes) return gr_error(GR_ERR_INVALID_ARG, "smooth_to: source and destination overlap");
  if ((s = enter(be)) != GR_OK) return s;
  Impl *im = impl_of(be);
  const Dims d = dims_of(g);
  Xyz4Plan pl;
  const bool fused = !im->exact && d0 % 16 == 0 && xyz4_plan(r, d, sigma_vox, src, &pl);
  if (!fused) { /* same values through the in-place path */
    const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream);
    if (e != cudaSuccess) return device_error(e, "smooth_to copy");
    return smooth(be, g, dst, ncomp, sigma_vox);
  }
  cudaError_t e = cudaSuccess;
  for (int q = 0; q < ncomp && e == cudaSuccess; ++q) {
    const StoreOut out = {dst + (long long)q * d.nvox};
    e = launch_xyz4(pl, d, im->num_sms, im->stream, src + (long long)q * d.nvox, out);
  }
  if (e != cudaSuccess) return device_error(e, "fused smoothing kernel");
  return GR_OK;
}

}  // namespace grcu
