/* Grid Parallel sampler kernels of the CUDA backend (backend.h: sample_slab,
 * slab_finalize), the device twin of module/src/kernels/cpu_slab.c.
 *
 * Every point is handled by one thread, which evaluates exactly the
 * expressions of cpu_slab.c in the same order, with the products and sums
 * written through the non-contracting intrinsics of cuda_common.cuh (dmul,
 * dadd, lerp2): the CPU build is C11 with FP contraction off, so coordinates,
 * stencils, the per-plane parts ly(k) and the slab contributions are bitwise
 * the CPU's, and so are the accumulated sums (one add per slab per point, each
 * point touched by one thread per call). The same-grid rule is the field rule
 * of kernels/field_lerp.h, as in cpu_slab.c. Bounds mode reduces
 * the touched input planes with 64-bit integer atomics (min / max: exact,
 * order-free). */
#include <limits.h>
#include <string.h>
#include "cuda_adam.cuh"
#include "cuda_ops.cuh"
#include "kernels/cuda_entry.h"
#include "kernels/field_lerp.h"

namespace grcu {

struct SlabArgs {
  long long onx, ony, npts, out_z0;
  long long in_n[3], in_nxy;
  long long in_z0, in_nz, in_comp_stride;
  double M[12]; /* affine rule: in.p2i * T * out.i2p */
  double P[9];  /* affine rule: linear(in.p2i) * A (cpu_disp_matrix) */
  float L[9];   /* same-grid rule: linear(in.p2i), rounded to float (field_lerp.h) */
  int same_grid, ncomp, nearest, clamp;
  const float *disp;
  const float *in;
  double *acc, *acc_grad;
  float *out;
  const float *out_base;
  double out_scale;
  bool adam;           /* fused Adam step (gr_slab_adam): disp and base from the moments */
  AdamRule rule;
  gr_moments amom;
  float ascale;
};

/* cpu_slab.c slab_pt: a point's index, continuous input index, same-grid
 * float offsets and fused Adam step */
struct SlabPt {
  long long idx[3];
  double c[3];
  float d[3];
  double st[3];
};

/* cpu_slab.c slab_point */
__device__ __forceinline__ void slab_point(const SlabArgs &a, long long i, long long j, long long k, long long v,
                                           SlabPt &pt) {
  const float *d = a.disp;
  pt.idx[0] = i;
  pt.idx[1] = j;
  pt.idx[2] = k;
  if (a.same_grid) {
    float sf[3] = {0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      const long long o = v + q * a.npts;
      if (a.adam) {
        sf[q] = __fadd_rn(__fmul_rn(a.ascale, adam_dir_at(a.rule, a.amom, o)), 0.0f);
        pt.st[q] = sf[q];
      } else if (d) {
        sf[q] = d[o];
      }
    }
#pragma unroll
    for (int r = 0; r < 3; ++r) {
      pt.d[r] = gr_field_offset(a.L + 3 * r, sf[0], sf[1], sf[2]);
      pt.c[r] = dadd((double)pt.idx[r], (double)pt.d[r]);
    }
    return;
  }
  const double *M = a.M;
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const double row = dadd(dadd(dmul(M[r * 4 + 1], (double)j), dmul(M[r * 4 + 2], (double)k)), M[r * 4 + 3]);
    pt.c[r] = dadd(row, dmul(M[r * 4], (double)i));
  }
  if (d) {
    const double ux = d[v], uy = d[v + a.npts], uz = d[v + 2 * a.npts];
#pragma unroll
    for (int r = 0; r < 3; ++r)
      pt.c[r] = dadd(pt.c[r], dot3(a.P[r * 3], ux, a.P[r * 3 + 1], uy, a.P[r * 3 + 2], uz));
  }
}

/* cpu_slab.c slab_stencil (same-grid rule: float weights w, dw; CLAMP: the field cell) */
__device__ __forceinline__ bool slab_stencil(const SlabArgs &a, const SlabPt &pt, Axis ax[3], float w[6],
                                             float dw[6]) {
#pragma unroll
  for (int d = 0; d < 3; ++d) {
    const long long n = a.in_n[d];
    if (a.same_grid && a.clamp) {
      ax[d].i0 = gr_field_cell(pt.idx[d], pt.d[d], n, w + 2 * d);
      ax[d].i1 = n > 1 ? ax[d].i0 + 1 : ax[d].i0;
      dw[2 * d] = n > 1 ? -1.0f : 0.0f;
      dw[2 * d + 1] = n > 1 ? 1.0f : 0.0f;
      continue;
    }
    const double cs = snap_index(pt.c[d], n);
    if (a.clamp) axis_clamp(cs, n, ax[d]);
    else if (!axis_zero(cs, n, ax[d])) return false;
    if (a.same_grid) {
      gr_weights_f(ax[d].w0, ax[d].w1, w + 2 * d);
      gr_weights_f(ax[d].d0, ax[d].d1, dw + 2 * d);
    }
  }
  return true;
}

__device__ __forceinline__ bool slab_nearest(const SlabArgs &a, const double c[3], long long idx[3]) {
#pragma unroll
  for (int d = 0; d < 3; ++d) {
    const long long n = a.in_n[d];
    const double h = dadd(snap_index(c[d], n), 0.5);
    if (h >= 0.0 && h < (double)n) idx[d] = (long long)floor(h);
    else if (a.clamp) idx[d] = h >= (double)n ? n - 1 : 0;
    else return false;
  }
  return true;
}

/* cpu_slab.c plane_part */
__device__ __forceinline__ void plane_part(const float *__restrict__ p, long long nx, const Axis ax[3], double *ly,
                                           double *gx, double *gy, bool grad) {
  const double v0 = p[ax[1].i0 * nx + ax[0].i0], v1 = p[ax[1].i0 * nx + ax[0].i1];
  const double v2 = p[ax[1].i1 * nx + ax[0].i0], v3 = p[ax[1].i1 * nx + ax[0].i1];
  const double l00 = lerp2(ax[0].w0, v0, ax[0].w1, v1), l10 = lerp2(ax[0].w0, v2, ax[0].w1, v3);
  *ly = lerp2(ax[1].w0, l00, ax[1].w1, l10);
  if (grad) {
    const double d00 = lerp2(ax[0].d0, v0, ax[0].d1, v1), d10 = lerp2(ax[0].d0, v2, ax[0].d1, v3);
    *gx = lerp2(ax[1].w0, d00, ax[1].w1, d10);
    *gy = lerp2(ax[1].d0, l00, ax[1].d1, l10);
  }
}

/* cpu_slab.c plane_part_f (the same-grid rule, float) */
__device__ __forceinline__ float plane_part_f(const float *__restrict__ p, long long nx, const Axis ax[3],
                                              const float w[4], const float dw[4], float *gx, float *gy, bool grad) {
  const float v[4] = {p[ax[1].i0 * nx + ax[0].i0], p[ax[1].i0 * nx + ax[0].i1], p[ax[1].i1 * nx + ax[0].i0],
                      p[ax[1].i1 * nx + ax[0].i1]};
  if (!grad) return gr_plane_f(v, w, w + 2);
  return gr_plane_grad_f(v, w, dw, w + 2, dw + 2, gx, gy);
}

/* cpu_slab.c slab_value_f */
__device__ __forceinline__ void slab_value_f(const SlabArgs &a, const Axis ax[3], const float w[6], const float dw[6],
                                             bool h0, bool h1, double val[3], double g[3], bool grad) {
  const long long zlo = a.in_z0, inx = a.in_n[0];
  for (int q = 0; q < a.ncomp; ++q) {
    const float *img = a.in + q * a.in_comp_stride;
    float ly[2] = {0.0f, 0.0f}, gx[2] = {0.0f, 0.0f}, gy[2] = {0.0f, 0.0f};
    if (h0) ly[0] = plane_part_f(img + (ax[2].i0 - zlo) * a.in_nxy, inx, ax, w, dw, &gx[0], &gy[0], grad);
    if (h1) ly[1] = plane_part_f(img + (ax[2].i1 - zlo) * a.in_nxy, inx, ax, w, dw, &gx[1], &gy[1], grad);
    val[q] = gr_lerp_f(w[4], ly[0], w[5], ly[1]);
    if (grad) {
      g[0] = gr_lerp_f(w[4], gx[0], w[5], gx[1]);
      g[1] = gr_lerp_f(w[4], gy[0], w[5], gy[1]);
      g[2] = gr_lerp_f(dw[4], ly[0], dw[5], ly[1]);
    }
  }
}

/* cpu_slab.c slab_value */
__device__ __forceinline__ bool slab_value(const SlabArgs &a, const SlabPt &pt, double val[3], double g[3],
                                           bool grad) {
  const long long zlo = a.in_z0, zhi = a.in_z0 + a.in_nz, inx = a.in_n[0];
  if (a.nearest) {
    long long idx[3];
    if (!slab_nearest(a, pt.c, idx) || idx[2] < zlo || idx[2] >= zhi) return false;
    const long long o = (idx[2] - zlo) * a.in_nxy + idx[1] * inx + idx[0];
    for (int q = 0; q < a.ncomp; ++q) val[q] = (double)a.in[q * a.in_comp_stride + o];
    return true;
  }
  Axis ax[3];
  float w[6], dw[6];
  if (!slab_stencil(a, pt, ax, w, dw)) return false;
  const bool h0 = ax[2].i0 >= zlo && ax[2].i0 < zhi, h1 = ax[2].i1 >= zlo && ax[2].i1 < zhi;
  if (!h0 && !h1) return false;
  if (a.same_grid) {
    slab_value_f(a, ax, w, dw, h0, h1, val, g, grad);
    return true;
  }
  for (int q = 0; q < a.ncomp; ++q) {
    const float *img = a.in + q * a.in_comp_stride;
    double ly0 = 0.0, ly1 = 0.0, gx0 = 0.0, gx1 = 0.0, gy0 = 0.0, gy1 = 0.0;
    if (h0) plane_part(img + (ax[2].i0 - zlo) * a.in_nxy, inx, ax, &ly0, &gx0, &gy0, grad);
    if (h1) plane_part(img + (ax[2].i1 - zlo) * a.in_nxy, inx, ax, &ly1, &gx1, &gy1, grad);
    val[q] = lerp2(ax[2].w0, ly0, ax[2].w1, ly1);
    if (grad) {
      g[0] = lerp2(ax[2].w0, gx0, ax[2].w1, gx1);
      g[1] = lerp2(ax[2].w0, gy0, ax[2].w1, gy1);
      g[2] = lerp2(ax[2].d0, ly0, ax[2].d1, ly1);
    }
  }
  return true;
}

/* cpu_slab.c slab_combine: base + scale * value, the value rounded to float first */
__device__ __forceinline__ float slab_combine(double base, bool has_base, double scale, double value) {
  const double v = (double)(float)value;
  return has_base ? (float)dadd(base, dmul(scale, v)) : (float)dmul(scale, v);
}

__global__ void slab_sample_kernel(const SlabArgs a) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long nxy = a.onx * a.ony;
  const bool direct = a.acc == nullptr;
  const bool grad = a.acc_grad != nullptr;
  for (long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x; v < a.npts; v += stride) {
    const long long kl = v / nxy, rem = v - kl * nxy, j = rem / a.onx, i = rem - j * a.onx;
    double val[3] = {0.0, 0.0, 0.0}, g[3] = {0.0, 0.0, 0.0};
    SlabPt pt;
    slab_point(a, i, j, a.out_z0 + kl, v, pt);
    const bool hit = slab_value(a, pt, val, g, grad);
    if (direct) {
      for (int q = 0; q < a.ncomp; ++q) {
        const long long o = q * a.npts + v;
        const double base = a.adam ? pt.st[q] : a.out_base ? (double)a.out_base[o] : 0.0;
        a.out[o] = slab_combine(base, a.out_base || a.adam, a.out_scale, val[q]);
      }
      continue;
    }
    if (!hit) continue;
    for (int q = 0; q < a.ncomp; ++q) a.acc[q * a.npts + v] = dadd(a.acc[q * a.npts + v], val[q]);
    if (grad)
      for (int d = 0; d < 3; ++d) a.acc_grad[d * a.npts + v] = dadd(a.acc_grad[d * a.npts + v], g[d]);
  }
}

/* bounds[0] = min touched plane, bounds[1] = max touched plane */
__global__ void slab_bounds_kernel(const SlabArgs a, long long *bounds) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long nxy = a.onx * a.ony;
  long long lo = LLONG_MAX, hi = LLONG_MIN;
  for (long long v = (long long)blockIdx.x * blockDim.x + threadIdx.x; v < a.npts; v += stride) {
    const long long kl = v / nxy, rem = v - kl * nxy, j = rem / a.onx, i = rem - j * a.onx;
    SlabPt pt;
    slab_point(a, i, j, a.out_z0 + kl, v, pt);
    if (a.nearest) {
      long long idx[3];
      if (!slab_nearest(a, pt.c, idx)) continue;
      lo = idx[2] < lo ? idx[2] : lo;
      hi = idx[2] > hi ? idx[2] : hi;
      continue;
    }
    Axis ax[3];
    float w[6], dw[6];
    if (!slab_stencil(a, pt, ax, w, dw)) continue;
    const long long a0 = ax[2].i0 < ax[2].i1 ? ax[2].i0 : ax[2].i1, a1 = ax[2].i0 < ax[2].i1 ? ax[2].i1 : ax[2].i0;
    lo = a0 < lo ? a0 : lo;
    hi = a1 > hi ? a1 : hi;
  }
  /* warp reduction first: one pair of atomics per warp, not per thread (every
   * thread reaches this point; the block size is a multiple of 32) */
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const long long ol = __shfl_down_sync(0xffffffffu, lo, off), oh = __shfl_down_sync(0xffffffffu, hi, off);
    lo = ol < lo ? ol : lo;
    hi = oh > hi ? oh : hi;
  }
  if ((threadIdx.x & 31) == 0 && lo <= hi) {
    atomicMin(bounds, lo);
    atomicMax(bounds + 1, hi);
  }
}

static gr_status check_slab(const gr_slab_sample *a) {
  if (!a || !a->out_grid || !a->in_grid) return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: NULL argument");
  for (int d = 0; d < 3; ++d)
    if (a->out_grid->n[d] < 1 || a->in_grid->n[d] < 1)
      return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: empty grid along axis %d", d);
  if (a->out_z0 < 0 || a->out_nz < 0 || a->out_z0 + a->out_nz > a->out_grid->n[2])
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: output planes [%lld, %lld) outside 0..%lld",
                    (long long)a->out_z0, (long long)(a->out_z0 + a->out_nz), (long long)a->out_grid->n[2]);
  if (a->same_grid && (a->T || memcmp(a->out_grid->n, a->in_grid->n, sizeof a->in_grid->n) != 0))
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: the same-grid rule needs equal grids and no affine");
  if (a->interp != GR_INTERP_LINEAR && a->interp != GR_INTERP_NEAREST)
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: unknown interpolation %d", (int)a->interp);
  if (a->boundary != GR_BOUNDARY_ZERO && a->boundary != GR_BOUNDARY_CLAMP)
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: unknown boundary %d", (int)a->boundary);
  if (!a->acc && !a->out) return GR_OK; /* bounds mode */
  if (!a->acc && a->acc_grad)
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: direct mode has no gradient output");
  if (a->adam && (a->acc || !a->same_grid || a->ncomp != 3 || !a->adam->mom.m || !a->adam->mom.v))
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: the fused Adam step needs direct mode, the same-grid rule, "
                                        "3 components and both moments");
  if (a->ncomp < 1 || a->ncomp > 3) return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: %d components", a->ncomp);
  if (a->in_z0 < 0 || a->in_nz < 0 || a->in_z0 + a->in_nz > a->in_grid->n[2])
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: input planes [%lld, %lld) outside 0..%lld",
                    (long long)a->in_z0, (long long)(a->in_z0 + a->in_nz), (long long)a->in_grid->n[2]);
  if (a->in_nz > 0 && !a->in) return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: NULL input");
  if (a->acc_grad && (a->ncomp != 1 || a->interp != GR_INTERP_LINEAR))
    return gr_error(GR_ERR_INVALID_ARG, "cuda sample_slab: gradients need one component and linear interpolation");
  return GR_OK;
}

gr_status sample_slab(gr_backend *be, gr_slab_sample *a) {
  gr_status st = check_slab(a);
  if (st != GR_OK) return st;
  if ((st = enter(be)) != GR_OK) return st;
  Impl *im = impl_of(be);
  SlabArgs s;
  memset(&s, 0, sizeof s);
  s.onx = a->out_grid->n[0];
  s.ony = a->out_grid->n[1];
  s.npts = s.onx * s.ony * a->out_nz;
  s.out_z0 = a->out_z0;
  for (int d = 0; d < 3; ++d) s.in_n[d] = a->in_grid->n[d];
  s.in_nxy = s.in_n[0] * s.in_n[1];
  s.in_z0 = a->in_z0;
  s.in_nz = a->in_nz;
  s.in_comp_stride = a->in_comp_stride;
  s.same_grid = a->same_grid != 0;
  if (s.same_grid) {
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) s.L[r * 3 + c] = (float)a->in_grid->p2i[r * 4 + c];
  } else {
    composite_map(a->out_grid, a->in_grid, a->T, s.M);
    disp_matrix(a->in_grid->p2i, a->T, s.P);
  }
  s.ncomp = a->ncomp;
  s.nearest = a->interp == GR_INTERP_NEAREST;
  s.clamp = a->boundary == GR_BOUNDARY_CLAMP;
  s.disp = a->disp;
  s.in = a->in;
  s.acc = a->acc;
  s.acc_grad = a->acc_grad;
  s.out = a->out;
  s.out_base = a->out_base;
  s.out_scale = a->out_scale;
  if (a->adam) {
    st = gr_adam_rule_make("cuda sample_slab", a->adam->beta1, a->adam->beta2, a->adam->eps, a->adam->t, &s.rule);
    if (st != GR_OK) return st;
    s.adam = true;
    s.amom = a->adam->mom;
    s.ascale = a->adam->scale;
  }

  if (!a->acc && !a->out) { /* bounds mode */
    a->need_z0 = a->need_z1 = 0;
    if (s.npts == 0) return GR_OK;
    long long host[2] = {LLONG_MAX, LLONG_MIN};
    long long *dev = (long long *)scratch_alloc(be, sizeof host, "sample_slab bounds");
    if (!dev) return GR_ERR_NOMEM;
    cudaError_t e = cudaMemcpyAsync(dev, host, sizeof host, cudaMemcpyHostToDevice, im->stream);
    if (e == cudaSuccess) {
      slab_bounds_kernel<<<flat_blocks(s.npts), kBlock, 0, im->stream>>>(s, dev);
      e = cudaGetLastError();
    }
    if (e != cudaSuccess) {
      scratch_free(be, dev);
      return device_error(e, "sample_slab bounds kernel");
    }
    st = fetch(be, host, dev, sizeof host);
    scratch_free(be, dev);
    if (st != GR_OK) return st;
    a->need_z0 = host[0] <= host[1] ? (int64_t)host[0] : 0;
    a->need_z1 = host[0] <= host[1] ? (int64_t)host[1] + 1 : 0;
    return GR_OK;
  }
  if (a->in_nz == 0 && a->acc) return GR_OK;
  if (s.npts == 0) return GR_OK;
  slab_sample_kernel<<<flat_blocks(s.npts), kBlock, 0, im->stream>>>(s);
  GRCU_LAUNCHED("sample_slab kernel");
  return GR_OK;
}

__global__ void slab_finalize_kernel(long long n, const double *__restrict__ acc, const float *__restrict__ base,
                                     double scale, float *__restrict__ out) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = slab_combine(base ? (double)base[i] : 0.0, base != nullptr, scale, acc[i]);
}

gr_status slab_finalize(gr_backend *be, int64_t n, const double *acc, const float *base, double scale, float *out) {
  if (n < 0 || (n > 0 && (!acc || !out))) return gr_error(GR_ERR_INVALID_ARG, "cuda slab_finalize: bad arguments");
  if (n == 0) return GR_OK;
  const gr_status st = enter(be);
  if (st != GR_OK) return st;
  slab_finalize_kernel<<<flat_blocks(n), kBlock, 0, impl_of(be)->stream>>>(n, acc, base, scale, out);
  GRCU_LAUNCHED("slab_finalize kernel");
  return GR_OK;
}

}  // namespace grcu
