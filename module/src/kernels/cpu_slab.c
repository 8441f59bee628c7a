/* Grid Parallel sampler kernels (backend.h: sample_slab, slab_finalize).
 *
 * sample_slab evaluates the whole-grid interpolation rules of cpu_interp.h at
 * every point of an output window, but reads only the input planes of one
 * slab. The trilinear value is nested as x-lines, then y, then z:
 *   value = wz0 * ly(k0) + wz1 * ly(k1)
 * where ly(k) needs plane k only. A slab that holds k0 but not k1 adds
 * wz0 * ly(k0) + wz1 * 0, which is exactly the rounded product wz0 * ly(k0);
 * the slab holding k1 adds wz1 * ly(k1); their sum is rounded once, as in the
 * whole-grid kernel, and IEEE addition is commutative, so the order in which
 * slabs arrive does not matter. The index-space gradient has the same nesting
 * (d/dc_z uses the derivative weights -1, +1 of the z corners). Hence summing
 * the slabs of a partition of the planes reproduces cpu_resample,
 * cpu_compose/invert and the metrics' warps bit for bit (up to the sign of a
 * zero).
 *
 * The same-grid rule (compose / invert of displacement fields) is the field
 * rule of kernels/field_lerp.h, as in cpu_field.c: float offsets d = L s, the
 * CLAMP cell at (i, j, k) + d and the interpolation in float; the per-slab
 * contributions are then floats and their sum, rounded to float by
 * slab_finalize, is the whole-grid value. (Under the ZERO boundary and for
 * nearest sampling, which only tests use, the same-grid index is the double
 * (i, j, k) + d with the whole-grid rules below.)
 *
 * Stencils always come from the general per-axis rules (cpu_axis_zero /
 * cpu_axis_clamp on the snapped index): for points inside the grid they give
 * the same cell, weights and results as the fast "inside" path of the
 * whole-grid kernels (cpu_interp.h states that equivalence). The snap is
 * applied for every rule: CLAMP results are unchanged by it (clamping maps the
 * snapped and unsnapped index to the same border sample) and the metrics and
 * ZERO resampling snap anyway.
 *
 * Parallel over output planes; each point is written by one thread only, so
 * results do not depend on the thread count. */
#include <math.h>
#include <string.h>
#include "kernels/bf16.h"
#include "kernels/cpu_interp.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_threads.h"
#include "kernels/field_lerp.h"

typedef struct slab_ctx {
  const gr_slab_sample *a;
  int64_t onx, ony, npts;   /* output window */
  int64_t in_n[3], in_nxy;  /* whole input grid */
  double M[12], P[12];      /* affine rule: composite map and displacement map */
  float L[9];               /* same-grid rule: p2i linear part, rounded to float */
  gr_adam_rule rule;       /* a->adam: the step's direction rule */
} slab_ctx;

static void slab_maps(slab_ctx *s) {
  const gr_slab_sample *a = s->a;
  if (a->same_grid) {
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) s->L[r * 3 + c] = (float)a->in_grid->p2i[r * 4 + c];
    return;
  }
  /* M = in.p2i * T * out.i2p, composed in the order cpu_resample/cpu_metric use. */
  gr_affine i2p, p2i, tmp, res;
  memcpy(i2p.m, a->out_grid->i2p, sizeof i2p.m);
  memcpy(p2i.m, a->in_grid->p2i, sizeof p2i.m);
  if (a->T) {
    gr_affine_compose(a->T, &i2p, &tmp);
    gr_affine_compose(&p2i, &tmp, &res);
  } else {
    gr_affine_compose(&p2i, &i2p, &res);
  }
  memcpy(s->M, res.m, sizeof s->M);
  cpu_disp_matrix(a->in_grid->p2i, a->T, s->P);
}

/* One output point: its index (k global), the continuous input index c, under
 * the same-grid rule the float offsets d (field_lerp.h), and with a fused Adam
 * step the step itself (st, the direct mode's base). */
typedef struct slab_pt {
  int64_t idx[3];
  double c[3];
  float d[3];
  double st[3];
} slab_pt;

/* Point (i, j, k), v its window offset */
static inline void slab_point(const slab_ctx *s, int64_t i, int64_t j, int64_t k, int64_t v, slab_pt *pt) {
  const gr_slab_sample *a = s->a;
  const float *d = a->disp;
  pt->idx[0] = i;
  pt->idx[1] = j;
  pt->idx[2] = k;
  if (a->same_grid) {
    float sf[3] = {0.0f, 0.0f, 0.0f};
    for (int q = 0; q < 3; ++q) {
      const int64_t o = v + q * s->npts;
      if (a->adam) {
        const gr_moments *mom = &a->adam->mom;
        sf[q] = a->adam->scale * cpu_adam_dir(&s->rule, gr_moment_load(mom->m, mom->bf16, o),
                                              gr_moment_load(mom->v, mom->bf16, o)) +
                0.0f;
        pt->st[q] = sf[q];
      } else if (d) {
        sf[q] = d[o];
      }
    }
    for (int r = 0; r < 3; ++r) {
      pt->d[r] = gr_field_offset(s->L + 3 * r, sf[0], sf[1], sf[2]);
      pt->c[r] = (double)pt->idx[r] + (double)pt->d[r];
    }
    return;
  }
  const double *M = s->M;
  for (int r = 0; r < 3; ++r) {
    const double row = M[r * 4 + 1] * (double)j + M[r * 4 + 2] * (double)k + M[r * 4 + 3];
    pt->c[r] = row + M[r * 4] * (double)i;
  }
  if (d) {
    const double ux = d[v], uy = d[v + s->npts], uz = d[v + 2 * s->npts];
    const double *P = s->P;
    for (int r = 0; r < 3; ++r) pt->c[r] += P[r * 4] * ux + P[r * 4 + 1] * uy + P[r * 4 + 2] * uz;
  }
}

/* Linear stencil under the whole-grid rules; 0 when the point reads exactly 0
 * (ZERO). Same-grid rule: also the float weights w and derivative weights dw
 * (x, y, z pairs); under CLAMP the field rule's cell (gr_field_cell). */
static inline int slab_stencil(const slab_ctx *s, const slab_pt *pt, cpu_axis ax[3], float w[6], float dw[6]) {
  const int same = s->a->same_grid, clamp = s->a->boundary == GR_BOUNDARY_CLAMP;
  for (int d = 0; d < 3; ++d) {
    const int64_t n = s->in_n[d];
    if (same && clamp) {
      ax[d].i0 = gr_field_cell(pt->idx[d], pt->d[d], n, w + 2 * d);
      ax[d].i1 = n > 1 ? ax[d].i0 + 1 : ax[d].i0;
      dw[2 * d] = n > 1 ? -1.0f : 0.0f;
      dw[2 * d + 1] = n > 1 ? 1.0f : 0.0f;
      continue;
    }
    const double cs = cpu_snap_index(pt->c[d], n);
    if (clamp) cpu_axis_clamp(cs, n, &ax[d]);
    else if (!cpu_axis_zero(cs, n, &ax[d])) return 0;
    if (same) {
      gr_weights_f(ax[d].w0, ax[d].w1, w + 2 * d);
      gr_weights_f(ax[d].d0, ax[d].d1, dw + 2 * d);
    }
  }
  return 1;
}

/* Nearest sample's input index per axis; 0 when outside (ZERO). Same rule as cpu_nearest_offset. */
static inline int slab_nearest(const slab_ctx *s, const double c[3], int64_t idx[3]) {
  for (int d = 0; d < 3; ++d) {
    const int64_t n = s->in_n[d];
    const double h = cpu_snap_index(c[d], n) + 0.5;
    if (h >= 0.0 && h < (double)n) idx[d] = cpu_floor_i64(h);
    else if (s->a->boundary == GR_BOUNDARY_CLAMP) idx[d] = h >= (double)n ? n - 1 : 0;
    else return 0;
  }
  return 1;
}

/* x/y part of one z-plane of the stencil: the plane's y-interpolated value and
 * its x and y index derivatives (cpu_tri_value_grad_at's nesting). */
static inline void plane_part(const float *restrict p, int64_t nx, const cpu_axis ax[3], double *ly, double *gx,
                              double *gy) {
  const double v0 = p[ax[1].i0 * nx + ax[0].i0], v1 = p[ax[1].i0 * nx + ax[0].i1];
  const double v2 = p[ax[1].i1 * nx + ax[0].i0], v3 = p[ax[1].i1 * nx + ax[0].i1];
  const double l00 = ax[0].w0 * v0 + ax[0].w1 * v1, l10 = ax[0].w0 * v2 + ax[0].w1 * v3;
  *ly = ax[1].w0 * l00 + ax[1].w1 * l10;
  if (gx) {
    const double d00 = ax[0].d0 * v0 + ax[0].d1 * v1, d10 = ax[0].d0 * v2 + ax[0].d1 * v3;
    *gx = ax[1].w0 * d00 + ax[1].w1 * d10;
    *gy = ax[1].d0 * l00 + ax[1].d1 * l10;
  }
}

/* plane_part of the same-grid rule: float arithmetic (field_lerp.h), weights
 * rounded to float once per axis (w[0..1] = x, w[2..3] = y; dw the derivative
 * weights). */
static inline float plane_part_f(const float *restrict p, int64_t nx, const cpu_axis ax[3], const float w[4],
                                 const float dw[4], float *gx, float *gy) {
  const float v[4] = {p[ax[1].i0 * nx + ax[0].i0], p[ax[1].i0 * nx + ax[0].i1], p[ax[1].i1 * nx + ax[0].i0],
                      p[ax[1].i1 * nx + ax[0].i1]};
  if (!gx) return gr_plane_f(v, w, w + 2);
  return gr_plane_grad_f(v, w, dw, w + 2, dw + 2, gx, gy);
}

/* slab_value's linear part under the same-grid rule (float, field_lerp.h) */
static inline void slab_value_f(const slab_ctx *s, const cpu_axis ax[3], const float w[6], const float dw[6], int h0,
                                int h1, double val[3], double g[3]) {
  const gr_slab_sample *a = s->a;
  const int64_t zlo = a->in_z0, inx = s->in_n[0];
  for (int q = 0; q < a->ncomp; ++q) {
    const float *img = a->in + q * a->in_comp_stride;
    float ly[2] = {0.0f, 0.0f}, gx[2] = {0.0f, 0.0f}, gy[2] = {0.0f, 0.0f};
    if (h0) ly[0] = plane_part_f(img + (ax[2].i0 - zlo) * s->in_nxy, inx, ax, w, dw, g ? &gx[0] : NULL, &gy[0]);
    if (h1) ly[1] = plane_part_f(img + (ax[2].i1 - zlo) * s->in_nxy, inx, ax, w, dw, g ? &gx[1] : NULL, &gy[1]);
    val[q] = gr_lerp_f(w[4], ly[0], w[5], ly[1]);
    if (g) {
      g[0] = gr_lerp_f(w[4], gx[0], w[5], gx[1]);
      g[1] = gr_lerp_f(w[4], gy[0], w[5], gy[1]);
      g[2] = gr_lerp_f(dw[4], ly[0], dw[5], ly[1]);
    }
  }
}

/* The slab's contribution at one point: val[q] (and the index gradient), and
 * whether any corner lies in the slab. */
static inline int slab_value(const slab_ctx *s, const slab_pt *pt, double val[3], double g[3]) {
  const gr_slab_sample *a = s->a;
  const int64_t zlo = a->in_z0, zhi = a->in_z0 + a->in_nz, inx = s->in_n[0];
  if (a->interp == GR_INTERP_NEAREST) {
    int64_t idx[3];
    if (!slab_nearest(s, pt->c, idx) || idx[2] < zlo || idx[2] >= zhi) return 0;
    const int64_t o = (idx[2] - zlo) * s->in_nxy + idx[1] * inx + idx[0];
    for (int q = 0; q < a->ncomp; ++q) val[q] = (double)a->in[q * a->in_comp_stride + o];
    return 1;
  }
  cpu_axis ax[3];
  float w[6], dw[6];
  if (!slab_stencil(s, pt, ax, w, dw)) return 0;
  const int h0 = ax[2].i0 >= zlo && ax[2].i0 < zhi, h1 = ax[2].i1 >= zlo && ax[2].i1 < zhi;
  if (!h0 && !h1) return 0;
  if (a->same_grid) {
    slab_value_f(s, ax, w, dw, h0, h1, val, g);
    return 1;
  }
  for (int q = 0; q < a->ncomp; ++q) {
    const float *img = a->in + q * a->in_comp_stride;
    double ly0 = 0.0, ly1 = 0.0, gx0 = 0.0, gx1 = 0.0, gy0 = 0.0, gy1 = 0.0;
    if (h0) plane_part(img + (ax[2].i0 - zlo) * s->in_nxy, inx, ax, &ly0, g ? &gx0 : NULL, &gy0);
    if (h1) plane_part(img + (ax[2].i1 - zlo) * s->in_nxy, inx, ax, &ly1, g ? &gx1 : NULL, &gy1);
    val[q] = ax[2].w0 * ly0 + ax[2].w1 * ly1;
    if (g) {
      g[0] = ax[2].w0 * gx0 + ax[2].w1 * gx1;
      g[1] = ax[2].w0 * gy0 + ax[2].w1 * gy1;
      g[2] = ax[2].d0 * ly0 + ax[2].d1 * ly1;
    }
  }
  return 1;
}

/* out = base + scale * value with the value rounded to float first, as every
 * whole-grid kernel rounds its interpolated value (compose: s + u(x + s) in
 * float); shared by the direct mode and slab_finalize. */
static inline float slab_combine(double base, int has_base, double scale, double value) {
  const double v = (double)(float)value;
  return has_base ? (float)(base + scale * v) : (float)(scale * v);
}

static void slab_plane(const slab_ctx *s, int64_t kl) {
  const gr_slab_sample *a = s->a;
  const int64_t k = a->out_z0 + kl, nx = s->onx, ny = s->ony;
  const int direct = a->acc == NULL;
  for (int64_t j = 0; j < ny; ++j) {
    for (int64_t i = 0; i < nx; ++i) {
      const int64_t v = (kl * ny + j) * nx + i;
      double val[3] = {0.0, 0.0, 0.0}, g[3];
      slab_pt pt;
      slab_point(s, i, j, k, v, &pt);
      const int hit = slab_value(s, &pt, val, a->acc_grad ? g : NULL);
      if (direct) {
        for (int q = 0; q < a->ncomp; ++q) {
          const int64_t o = q * s->npts + v;
          const double base = a->adam ? pt.st[q] : a->out_base ? (double)a->out_base[o] : 0.0;
          a->out[o] = slab_combine(base, a->out_base || a->adam, a->out_scale, val[q]);
        }
        continue;
      }
      if (!hit) continue; /* untouched: other slabs hold this point's corners */
      for (int q = 0; q < a->ncomp; ++q) a->acc[q * s->npts + v] += val[q];
      if (a->acc_grad)
        for (int d = 0; d < 3; ++d) a->acc_grad[d * s->npts + v] += g[d];
    }
  }
}

/* Input planes the points of one output plane read (lo > hi: none). */
static void bounds_plane(const slab_ctx *s, int64_t kl, int64_t *lo, int64_t *hi) {
  const gr_slab_sample *a = s->a;
  const int64_t k = a->out_z0 + kl, nx = s->onx, ny = s->ony;
  int64_t l = INT64_MAX, h = INT64_MIN;
  for (int64_t j = 0; j < ny; ++j) {
    for (int64_t i = 0; i < nx; ++i) {
      const int64_t v = (kl * ny + j) * nx + i;
      slab_pt pt;
      slab_point(s, i, j, k, v, &pt);
      if (a->interp == GR_INTERP_NEAREST) {
        int64_t idx[3];
        if (!slab_nearest(s, pt.c, idx)) continue;
        l = idx[2] < l ? idx[2] : l;
        h = idx[2] > h ? idx[2] : h;
        continue;
      }
      cpu_axis ax[3];
      float w[6], dw[6];
      if (!slab_stencil(s, &pt, ax, w, dw)) continue;
      const int64_t a0 = ax[2].i0 < ax[2].i1 ? ax[2].i0 : ax[2].i1, a1 = ax[2].i0 < ax[2].i1 ? ax[2].i1 : ax[2].i0;
      l = a0 < l ? a0 : l;
      h = a1 > h ? a1 : h;
    }
  }
  *lo = l;
  *hi = h;
}

static gr_status check_slab(const gr_slab_sample *a) {
  if (!a || !a->out_grid || !a->in_grid) return gr_error(GR_ERR_INVALID_ARG, "sample_slab: NULL argument");
  for (int d = 0; d < 3; ++d)
    if (a->out_grid->n[d] < 1 || a->in_grid->n[d] < 1)
      return gr_error(GR_ERR_INVALID_ARG, "sample_slab: empty grid along axis %d", d);
  if (a->out_z0 < 0 || a->out_nz < 0 || a->out_z0 + a->out_nz > a->out_grid->n[2])
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: output planes [%lld, %lld) outside 0..%lld", (long long)a->out_z0,
                    (long long)(a->out_z0 + a->out_nz), (long long)a->out_grid->n[2]);
  if (a->same_grid && (a->T || memcmp(a->out_grid->n, a->in_grid->n, sizeof a->in_grid->n) != 0))
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: the same-grid rule needs equal grids and no affine");
  if (a->interp != GR_INTERP_LINEAR && a->interp != GR_INTERP_NEAREST)
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: unknown interpolation %d", (int)a->interp);
  if (a->boundary != GR_BOUNDARY_ZERO && a->boundary != GR_BOUNDARY_CLAMP)
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: unknown boundary %d", (int)a->boundary);
  if (!a->acc && !a->out) return GR_OK; /* bounds mode */
  if (!a->acc && a->acc_grad) return gr_error(GR_ERR_INVALID_ARG, "sample_slab: direct mode has no gradient output");
  if (a->adam && (a->acc || !a->same_grid || a->ncomp != 3 || !a->adam->mom.m || !a->adam->mom.v))
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: the fused Adam step needs direct mode, the same-grid rule, "
                                        "3 components and both moments");
  if (a->ncomp < 1) return gr_error(GR_ERR_INVALID_ARG, "sample_slab: %d components", a->ncomp);
  if (a->in_z0 < 0 || a->in_nz < 0 || a->in_z0 + a->in_nz > a->in_grid->n[2])
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: input planes [%lld, %lld) outside 0..%lld", (long long)a->in_z0,
                    (long long)(a->in_z0 + a->in_nz), (long long)a->in_grid->n[2]);
  if (a->in_nz > 0 && !a->in) return gr_error(GR_ERR_INVALID_ARG, "sample_slab: NULL input");
  if (a->acc_grad && (a->ncomp != 1 || a->interp != GR_INTERP_LINEAR))
    return gr_error(GR_ERR_INVALID_ARG, "sample_slab: gradients need one component and linear interpolation");
  return GR_OK;
}

gr_status cpu_sample_slab(gr_backend *be, gr_slab_sample *a) {
  (void)be;
  const gr_status st = check_slab(a);
  if (st != GR_OK) return st;
  slab_ctx s;
  memset(&s, 0, sizeof s);
  s.a = a;
  s.onx = a->out_grid->n[0];
  s.ony = a->out_grid->n[1];
  s.npts = s.onx * s.ony * a->out_nz;
  for (int d = 0; d < 3; ++d) s.in_n[d] = a->in_grid->n[d];
  s.in_nxy = s.in_n[0] * s.in_n[1];
  slab_maps(&s);
  if (a->adam) {
    const gr_status ar = gr_adam_rule_make("sample_slab", a->adam->beta1, a->adam->beta2, a->adam->eps, a->adam->t,
                                            &s.rule);
    if (ar != GR_OK) return ar;
  }
  const int nt = cpu_nthreads(be);
  (void)nt;
  if (!a->acc && !a->out) {
    int64_t lo = INT64_MAX, hi = INT64_MIN;
#pragma omp parallel for schedule(static) num_threads(nt) if (s.npts >= CPU_PAR_MIN_ELEMS) reduction(min : lo) reduction(max : hi)
    for (int64_t kl = 0; kl < a->out_nz; ++kl) {
      int64_t l, h;
      bounds_plane(&s, kl, &l, &h);
      lo = l < lo ? l : lo;
      hi = h > hi ? h : hi;
    }
    a->need_z0 = lo <= hi ? lo : 0;
    a->need_z1 = lo <= hi ? hi + 1 : 0;
    return GR_OK;
  }
  if (a->in_nz == 0 && a->acc) return GR_OK;
#pragma omp parallel for schedule(static) num_threads(nt) if (s.npts >= CPU_PAR_MIN_ELEMS)
  for (int64_t kl = 0; kl < a->out_nz; ++kl) slab_plane(&s, kl);
  return GR_OK;
}

gr_status cpu_slab_finalize(gr_backend *be, int64_t n, const double *acc, const float *base, double scale, float *out) {
  (void)be;
  if (n < 0 || (n > 0 && (!acc || !out))) return gr_error(GR_ERR_INVALID_ARG, "slab_finalize: bad arguments");
#pragma omp parallel for simd schedule(static) num_threads(cpu_nthreads(be)) if (n >= CPU_PAR_MIN_ELEMS)
  for (int64_t i = 0; i < n; ++i) out[i] = slab_combine(base ? (double)base[i] : 0.0, base != NULL, scale, acc[i]);
  return GR_OK;
}
