/* Local normalised cross-correlation with a box window (reference semantics).
 *
 * Images: f = fixed, w(x) = moving(y(x)) sampled trilinearly with ZERO padding
 * (cpu_interp.h: fades to 0 within one voxel outside the moving grid), for
 * EVERY fixed voxel. Window of voxel x: the (2r+1)^3 box centred on x, r =
 * spec->lncc_radius (2 when <= 0), restricted to the fixed grid; n(x) = number
 * of in-grid voxels of the window (so border windows are plain smaller boxes).
 * Window statistics (sums over the window, over all in-grid voxels; masks do
 * not enter the windows):
 *   Sf, Sw, Sff, Sww, Sfw;  mu_f = Sf/n, mu_w = Sw/n
 *   A = Sfw - Sf Sw / n,  B = max(Sff - Sf^2/n, 0),  C = max(Sww - Sw^2/n, 0)
 *   D = B C + eps,  eps = 1e-5,   cc(x) = A^2 / D
 *   (evaluated as A*A*(1/D); 1/n from a table of reciprocals).
 * eps is absolute, in (intensity)^4 units of the caller's data: the
 * registration driver normalises both images to [0, 1] before calling, which
 * is the scale eps is chosen for (it only matters in flat windows).
 * Valid set V: fixed_mask(x) > 0.5 (or no mask) AND moving_mask(nearest(y(x)))
 * > 0.5 (or no mask; ZERO boundary: outside the moving grid is not valid).
 * The moving-domain test of the other metrics is NOT applied: zero padding
 * makes the loss continuous across the moving border. N = |V|.
 *   loss = -(1/N) sum_{x in V} cc(x)
 * Exact gradient (the derivative of this loss, not ANTs' local approximation):
 *   with alpha = 2A/D and beta = 2 A^2 B / D^2 (including eps),
 *   d cc(x) / d w(z) = alpha(x) (f(z) - mu_f(x)) - beta(x) (w(z) - mu_w(x))   for z in win(x)
 *   dL/dW(z) = -(1/N) [ f(z) Sa(z) - Sam(z) - w(z) Sb(z) + Sbm(z) ]
 *   where Sa, Sam, Sb, Sbm are window sums (same box, in-grid voxels) of
 *   alpha, alpha mu_f, beta, beta mu_w, each set to 0 outside V.
 *   dL/dy(z) = dL/dW(z) grad_phys W(y(z)).
 * Because w(z) enters the windows of its neighbours, grad_u is non-zero for
 * every voxel within r of V (it is the exact derivative), not only on V.
 *
 * Streaming implementation (no full-size scratch at all). A sequential sweep
 * over z-planes inside one OpenMP parallel region, each phase parallel over
 * the plane's rows; step s (s = 0 .. nz-1+2r):
 *   1) warp plane s: W and grad_phys W into rings of 2r+1 planes (plus the
 *      validity flags when there are masks);
 *   2) statistics plane s-r: Z = sum over the 2r+1 planes (z) of f, w, f^2,
 *      w^2, f w (plane buffer), then per row sum over y and over x (thread-
 *      local row buffers) -> cc, alpha, alpha mu_f, beta, beta mu_w into a ring
 *      of 2r+1 planes;
 *   3) output plane s-2r: the same z/y/x box sums of the four alpha fields,
 *      then grad_u and the affine partials.
 * Box sums are direct sums of the 2r+1 taps in a fixed order (z, then y, then
 * x), in double. All reductions are per row, added in row order by one thread,
 * so the result does not depend on the thread count.
 * Planes of fewer than LNCC_PAR_MIN_PLANE voxels run the sweep on one thread
 * (same result). N must be known before step 3 (it scales the gradient): without masks it is
 * the voxel count, otherwise a counting pre-pass evaluates the masks.
 *
 * Scratch (P = nx*ny voxels per plane, R = 2r+1 planes), all through the
 * backend allocator:
 *   rings:  R*P*(8 [W, double] + 12 [grad W, float] + 32 [4 alpha fields, double])
 *           bytes, + R*P bytes of validity flags (only with masks)
 *   planes: 40*P bytes (box-sum plane of 5 doubles)
 *   rows:   threads * 10 * nx doubles, ny * 13 doubles, nx+ny+nz ints,
 *           R^3+1 doubles of reciprocals
 * i.e. (52 R + 40) / nz bytes per voxel of the volume: r = 2 -> 300 B per
 * plane voxel = 2.3 B/voxel at 128^3, 0.6 B/voxel at 512^3 (r = 1: 196 B per
 * plane voxel). Value only (no gradient wanted): (8 R + 40) P bytes.
 * Nothing is O(volume): the warped image is never stored whole. */
#include <math.h>
#include <string.h>
#include "kernels/cpu_kernels.h"
#include "kernels/cpu_metric_internal.h"
#include "kernels/cpu_threads.h"

#define LNCC_EPS 1e-5
/* The sweep synchronises the team ~7 times per plane; below this many voxels
 * per plane the barriers cost more than the rows they share (and under CPU
 * oversubscription a barrier can cost a scheduler time slice). */
#define LNCC_PAR_MIN_PLANE ((int64_t)8192)

enum { Q_F = 0, Q_W, Q_FF, Q_WW, Q_FW, NQ = 5 };  /* statistics fields */
enum { A_A = 0, A_AM, A_B, A_BM, NA = 4 };         /* alpha fields */

typedef struct lncc_work {
  const cpu_metric_ctx *m;
  int r, R;            /* radius, ring planes */
  int64_t nx, ny, nz, P;
  int want_grad;
  int par;             /* run the sweep with the OpenMP team */
  double inv_n_valid;  /* 1/N */
  double *wr;          /* R*P  warped moving (double: the loss stays smooth in u to
                        * double precision, which flat, eps-dominated windows need) */
  float *gr;           /* R*3*P grad_phys W (want_grad) */
  unsigned char *vr;   /* R*P validity (masks only) */
  double *ar;          /* R*NA*P alpha fields (want_grad) */
  double *zp;          /* NQ*P z-summed plane */
  double *rowbuf;      /* nt * 2*NQ*nx */
  double *rowacc;      /* ny * 13 */
  int *cnt[3];         /* in-grid window extent per index, per axis */
  double *inv_count;   /* inv_count[n] = 1/n for n = 1..R^3 (no division per voxel) */
} lncc_work;

static inline int64_t ring(const lncc_work *L, int64_t z) { return z % L->R; }

/* ---- counting pre-pass (only with masks) ---------------------------------------- */
static inline int lncc_valid(const cpu_metric_ctx *m, int64_t v, const double c[3]) {
  if (m->fmask && !(m->fmask[v] > 0.5f)) return 0;
  if (m->pre_w) return !m->pre_mm || m->pre_mm[v] > 0.5; /* ring-sampled moving mask */
  if (m->mmask) {
    const int64_t o = cpu_nearest_offset(m->mn, c, 0);
    if (o < 0 || !(m->mmask[o] > 0.5f)) return 0;
  }
  return 1;
}

static int64_t lncc_count(const cpu_metric_ctx *m) {
  const int64_t nx = m->fn[0], ny = m->fn[1];
  if (!m->fmask && !m->mmask && !m->pre_mm) return nx * ny * (m->own1 - m->own0);
  int64_t total = 0;
#pragma omp parallel for schedule(static) num_threads(m->nt) if (m->par) reduction(+ : total)
  for (int64_t k = m->own0; k < m->own1; ++k) {
    for (int64_t j = 0; j < ny; ++j) {
      double row[3];
      cpu_metric_row(m, j, k, row);
      const int64_t v0 = (k * ny + j) * nx;
      for (int64_t i = 0; i < nx; ++i) {
        double c[3];
        if (m->fmask && !(m->fmask[v0 + i] > 0.5f)) continue;
        cpu_metric_index(m, row, i, v0 + i, c);
        total += lncc_valid(m, v0 + i, c);
      }
    }
  }
  return total;
}

/* ---- phase 1: warp one row ------------------------------------------------------ */
static void warp_row(const lncc_work *L, int64_t k, int64_t j) {
  const cpu_metric_ctx *m = L->m;
  const int64_t nx = L->nx, P = L->P, s = ring(L, k);
  double *restrict w = L->wr + s * P + j * nx;
  float *restrict g = L->want_grad ? L->gr + s * 3 * P + j * nx : NULL;
  unsigned char *restrict val = L->vr ? L->vr + s * P + j * nx : NULL;
  double row[3];
  cpu_metric_row(m, j, k, row);
  const int64_t v0 = (k * L->ny + j) * nx;
  for (int64_t i = 0; i < nx; ++i) {
    double c[3];
    cpu_metric_index(m, row, i, v0 + i, c);
    if (m->pre_w) { /* presampled by the ring sampler (bitwise the same values) */
      w[i] = m->pre_w[v0 + i];
      if (g) {
        const double gi[3] = {m->pre_g[v0 + i], m->pre_g[m->nvox + v0 + i], m->pre_g[2 * m->nvox + v0 + i]};
        double gp[3];
        cpu_grad_idx_to_phys(m->P, gi, gp);
        g[i] = (float)gp[0];
        g[P + i] = (float)gp[1];
        g[2 * P + i] = (float)gp[2];
      }
    } else if (g) {
      double gi[3], gp[3];
      w[i] = cpu_sample_linear_grad_zero(m->moving, m->mn, c, gi);
      cpu_grad_idx_to_phys(m->P, gi, gp);
      g[i] = (float)gp[0];
      g[P + i] = (float)gp[1];
      g[2 * P + i] = (float)gp[2];
    } else {
      w[i] = cpu_sample_linear_zero(m->moving, m->mn, c);
    }
    if (val) val[i] = (unsigned char)lncc_valid(m, v0 + i, c);
  }
}

/* ---- box sums ---------------------------------------------------------------------- */
/* Z-sum of the statistics for row j of plane k: zp[q][j][:] = sum_dz q(., j, k+dz),
 * taps added in increasing z. Separate restrict pointers (not an array of
 * them) and omp simd: after inlining GCC drops the restrict promise and
 * would otherwise need more alias checks than it is willing to emit. */
static void zsum_stats_row(const lncc_work *L, int64_t k, int64_t j) {
  const int64_t nx = L->nx, P = L->P;
  double *restrict zf = L->zp + Q_F * P + j * nx;
  double *restrict zw = L->zp + Q_W * P + j * nx;
  double *restrict zff = L->zp + Q_FF * P + j * nx;
  double *restrict zww = L->zp + Q_WW * P + j * nx;
  double *restrict zfw = L->zp + Q_FW * P + j * nx;
  const int64_t k0 = k - L->r < 0 ? 0 : k - L->r, k1 = k + L->r > L->nz - 1 ? L->nz - 1 : k + L->r;
  for (int64_t kk = k0; kk <= k1; ++kk) {
    const float *restrict f = L->m->fixed + kk * P + j * nx;
    const double *restrict w = L->wr + ring(L, kk) * P + j * nx;
    if (kk == k0) {
#pragma omp simd
      for (int64_t i = 0; i < nx; ++i) {
        const double fv = f[i], wv = w[i];
        zf[i] = fv;
        zw[i] = wv;
        zff[i] = fv * fv;
        zww[i] = wv * wv;
        zfw[i] = fv * wv;
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < nx; ++i) {
        const double fv = f[i], wv = w[i];
        zf[i] += fv;
        zw[i] += wv;
        zff[i] += fv * fv;
        zww[i] += wv * wv;
        zfw[i] += fv * wv;
      }
    }
  }
}

/* Z-sum of the alpha fields for row j of plane k. */
static void zsum_alpha_row(const lncc_work *L, int64_t k, int64_t j) {
  const int64_t nx = L->nx, P = L->P;
  const int64_t k0 = k - L->r < 0 ? 0 : k - L->r, k1 = k + L->r > L->nz - 1 ? L->nz - 1 : k + L->r;
  for (int q = 0; q < NA; ++q) {
    double *restrict z = L->zp + q * P + j * nx;
    memset(z, 0, (size_t)nx * sizeof(double));
    for (int64_t kk = k0; kk <= k1; ++kk) {
      const double *restrict a = L->ar + (ring(L, kk) * NA + q) * P + j * nx;
#pragma omp simd
      for (int64_t i = 0; i < nx; ++i) z[i] += a[i];
    }
  }
}

/* Y- then X-box sums of nq z-summed fields for row j: out[q][i] (buffer of
 * nq*nx), using tmp (nq*nx). */
static void yx_sum_row(const lncc_work *L, int nq, int64_t j, double *restrict tmp, double *restrict out) {
  const int64_t nx = L->nx, P = L->P, r = L->r;
  const int64_t j0 = j - r < 0 ? 0 : j - r, j1 = j + r > L->ny - 1 ? L->ny - 1 : j + r;
  for (int q = 0; q < nq; ++q) {
    double *restrict t = tmp + q * nx;
    memset(t, 0, (size_t)nx * sizeof(double));
    for (int64_t jj = j0; jj <= j1; ++jj) {
      const double *restrict z = L->zp + q * P + jj * nx;
#pragma omp simd
      for (int64_t i = 0; i < nx; ++i) t[i] += z[i];
    }
    double *restrict o = out + q * nx;
    memset(o, 0, (size_t)nx * sizeof(double));
    for (int64_t d = -r; d <= r; ++d) {
      const int64_t lo = d < 0 ? -d : 0, hi = d > 0 ? nx - d : nx;
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) o[i] += t[i + d];
    }
  }
}

/* ---- phase 2: statistics, cc and alpha fields for one row -------------------------- */
static double stats_row(const lncc_work *L, int64_t k, int64_t j, double *restrict buf) {
  const int64_t nx = L->nx, P = L->P;
  double *restrict S = buf + NQ * nx;
  yx_sum_row(L, NQ, j, buf, S);
  const unsigned char *val = L->vr ? L->vr + ring(L, k) * P + j * nx : NULL;
  double *restrict a[NA];
  for (int q = 0; q < NA; ++q) a[q] = L->want_grad ? L->ar + (ring(L, k) * NA + q) * P + j * nx : NULL;
  const int nyz = L->cnt[1][j] * L->cnt[2][k];
  double sum_cc = 0.0;
  for (int64_t i = 0; i < nx; ++i) {
    const double inv_n = L->inv_count[L->cnt[0][i] * nyz]; /* 1/n */
    const double sf = S[Q_F * nx + i], sw = S[Q_W * nx + i];
    const double A = S[Q_FW * nx + i] - sf * sw * inv_n;
    const double Bt = S[Q_FF * nx + i] - sf * sf * inv_n, Ct = S[Q_WW * nx + i] - sw * sw * inv_n;
    const double B = Bt > 0.0 ? Bt : 0.0, C = Ct > 0.0 ? Ct : 0.0;
    const double inv_d = 1.0 / (B * C + LNCC_EPS);
    const int ok = val ? val[i] : 1;
    if (ok) sum_cc += A * A * inv_d;
    if (!L->want_grad) continue;
    const double alpha = ok ? 2.0 * A * inv_d : 0.0;
    const double beta = alpha * A * B * inv_d; /* 2 A^2 B / D^2 */
    a[A_A][i] = alpha;
    a[A_AM][i] = alpha * sf * inv_n;
    a[A_B][i] = beta;
    a[A_BM][i] = beta * sw * inv_n;
  }
  return sum_cc;
}

/* ---- phase 3: gradient for one row ------------------------------------------------- */
static void output_row(const lncc_work *L, int64_t k, int64_t j, double *restrict buf, double *restrict aff) {
  const cpu_metric_ctx *m = L->m;
  const int64_t nx = L->nx, P = L->P, s = ring(L, k);
  double *restrict S = buf + NA * nx;
  yx_sum_row(L, NA, j, buf, S);
  const float *restrict f = m->fixed + k * P + j * nx;
  const double *restrict w = L->wr + s * P + j * nx;
  const float *restrict g = L->gr + s * 3 * P + j * nx;
  const int64_t v0 = k * P + j * nx;
  for (int q = 0; q < 12; ++q) aff[q] = 0.0;
  for (int64_t i = 0; i < nx; ++i) {
    const double dw = -L->inv_n_valid * ((double)f[i] * S[A_A * nx + i] - S[A_AM * nx + i] -
                                         w[i] * S[A_B * nx + i] + S[A_BM * nx + i]);
    const double d[3] = {dw * g[i], dw * g[P + i], dw * g[2 * P + i]};
    if (m->grad_u) cpu_grad_u_store(m, v0 + i, d);
    if (m->want_affine) {
      double x[3];
      cpu_metric_xphys(m, i, j, k, v0 + i, x);
      cpu_affine_accum(aff, d, x);
    }
  }
}

/* ---- the sweep ---------------------------------------------------------------------- */
/* Per-plane partials (plane k: pp[k*13] = sum of cc over the plane's rows in
 * row order, pp[k*13+1..12] = its affine-gradient sums), combined afterwards in
 * plane order: the order a sharded run reproduces by gathering the planes of
 * all ranks (gr_sum_plane_partials). */
static void lncc_sweep(lncc_work *L, double *pp) {
  const cpu_metric_ctx *m = L->m;
  const int64_t nx = L->nx, ny = L->ny, nz = L->nz, r = L->r;
#pragma omp parallel num_threads(m->nt) if (L->par)
  {
    double *buf = L->rowbuf + (int64_t)cpu_thread_id() * 2 * NQ * nx;
    for (int64_t st = 0; st < nz + 2 * r; ++st) {
      if (st < nz) {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < ny; ++j) warp_row(L, st, j);
      }
      const int64_t ks = st - r;
      if (ks >= 0 && ks < nz) {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < ny; ++j) zsum_stats_row(L, ks, j);
#pragma omp for schedule(static)
        for (int64_t j = 0; j < ny; ++j) L->rowacc[j * 13] = stats_row(L, ks, j, buf);
#pragma omp single
        {
          double plane = 0.0;
          for (int64_t j = 0; j < ny; ++j) plane += L->rowacc[j * 13];
          pp[ks * 13] = plane;
        }
      }
      const int64_t ko = st - 2 * r;
      if (L->want_grad && ko >= 0 && ko < nz) {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < ny; ++j) zsum_alpha_row(L, ko, j);
#pragma omp for schedule(static)
        for (int64_t j = 0; j < ny; ++j) output_row(L, ko, j, buf, L->rowacc + j * 13 + 1);
        if (m->want_affine) {
#pragma omp single
          for (int q = 0; q < 12; ++q) {
            double plane = 0.0;
            for (int64_t j = 0; j < ny; ++j) plane += L->rowacc[j * 13 + 1 + q];
            pp[ko * 13 + 1 + q] = plane;
          }
        }
      }
    }
  }
}

static void window_counts(int64_t n, int r, int *c) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t lo = i - r < 0 ? 0 : i - r, hi = i + r > n - 1 ? n - 1 : i + r;
    c[i] = (int)(hi - lo + 1);
  }
}

static void lncc_release(const cpu_metric_ctx *m, lncc_work *L) {
  cpu_metric_free(m, L->wr);
  cpu_metric_free(m, L->gr);
  cpu_metric_free(m, L->vr);
  cpu_metric_free(m, L->ar);
  cpu_metric_free(m, L->zp);
  cpu_metric_free(m, L->rowbuf);
  cpu_metric_free(m, L->rowacc);
  for (int d = 0; d < 3; ++d) cpu_metric_free(m, L->cnt[d]);
  cpu_metric_free(m, L->inv_count);
}

static gr_status lncc_alloc(const cpu_metric_ctx *m, lncc_work *L) {
  const size_t P = (size_t)L->P, R = (size_t)L->R, nx = (size_t)L->nx;
  int ok = 1;
  ok &= (L->wr = cpu_metric_alloc(m, R * P * sizeof(double), "LNCC warped ring")) != NULL;
  if (L->want_grad) {
    ok &= (L->gr = cpu_metric_alloc(m, R * 3 * P * sizeof(float), "LNCC gradient ring")) != NULL;
    ok &= (L->ar = cpu_metric_alloc(m, R * NA * P * sizeof(double), "LNCC alpha ring")) != NULL;
  }
  if (m->fmask || m->mmask || m->pre_mm) ok &= (L->vr = cpu_metric_alloc(m, R * P, "LNCC validity ring")) != NULL;
  ok &= (L->zp = cpu_metric_alloc(m, NQ * P * sizeof(double), "LNCC box-sum plane")) != NULL;
  ok &= (L->rowbuf = cpu_metric_alloc(m, (size_t)m->nt * 2 * NQ * nx * sizeof(double), "LNCC row buffers")) != NULL;
  ok &= (L->rowacc = cpu_metric_alloc(m, (size_t)L->ny * 13 * sizeof(double), "LNCC row partials")) != NULL;
  for (int d = 0; d < 3; ++d)
    ok &= (L->cnt[d] = cpu_metric_alloc(m, (size_t)m->fn[d] * sizeof(int), "LNCC window counts")) != NULL;
  const size_t ncount = R * R * R + 1;
  ok &= (L->inv_count = cpu_metric_alloc(m, ncount * sizeof(double), "LNCC count reciprocals")) != NULL;
  if (!ok) {
    lncc_release(m, L);
    return GR_ERR_NOMEM;
  }
  window_counts(m->fn[0], L->r, L->cnt[0]);
  window_counts(m->fn[1], L->r, L->cnt[1]);
  /* z: windows are cut by the WHOLE grid's borders (a window's stored range
   * ends at a shard border only for halo planes whose values the caller discards) */
  for (int64_t k = 0; k < m->fn[2]; ++k) {
    const int64_t kg = k + m->zoff;
    const int64_t lo = kg - L->r < 0 ? 0 : kg - L->r, hi = kg + L->r > m->nz_global - 1 ? m->nz_global - 1 : kg + L->r;
    L->cnt[2][k] = (int)(hi - lo + 1);
  }
  L->inv_count[0] = 0.0;
  for (size_t c = 1; c < ncount; ++c) L->inv_count[c] = 1.0 / (double)c;
  return GR_OK;
}

gr_status cpu_metric_lncc(const cpu_metric_ctx *m, gr_metric_result *res) {
  lncc_work L;
  memset(&L, 0, sizeof L);
  L.m = m;
  L.r = m->spec->lncc_radius > 0 ? m->spec->lncc_radius : 2;
  L.R = 2 * L.r + 1;
  L.nx = m->fn[0];
  L.ny = m->fn[1];
  L.nz = m->fn[2];
  L.P = L.nx * L.ny;
  L.want_grad = m->grad_u || m->want_affine;
  L.par = m->par && L.P >= LNCC_PAR_MIN_PLANE;

  const int64_t n_valid = lncc_count(m);
  res->n_valid = n_valid;
  if (cpu_metric_counting(m)) return GR_OK;
  const int64_t n_norm = m->reg ? m->reg->n_global : n_valid; /* a window divides by the global N */
  if (n_norm == 0) return cpu_metric_empty(m);
  L.inv_n_valid = 1.0 / (double)n_norm;

  double *pp = cpu_metric_alloc(m, (size_t)L.nz * 13 * sizeof(double), "LNCC plane partials");
  if (!pp) return GR_ERR_NOMEM;
  memset(pp, 0, (size_t)L.nz * 13 * sizeof(double));
  const gr_status st = lncc_alloc(m, &L);
  if (st != GR_OK) {
    cpu_metric_free(m, pp);
    return st;
  }
  lncc_sweep(&L, pp);
  lncc_release(m, &L);
  /* Only the owned planes count (all planes for a whole grid): their cc sums
   * and affine parts, added in plane order. */
  double sum_cc = 0.0, aff[12] = {0};
  for (int64_t k = m->own0; k < m->own1; ++k) {
    sum_cc += pp[k * 13];
    for (int q = 0; q < 12; ++q) aff[q] += pp[k * 13 + 1 + q];
    if (m->reg) {
      double *p = m->reg->partials + (k - m->own0) * GR_METRIC_PARTIALS;
      p[0] = pp[k * 13];
      for (int q = 0; q < 12; ++q) p[1 + q] = pp[k * 13 + 1 + q];
    }
  }
  cpu_metric_free(m, pp);
  res->value = -sum_cc * L.inv_n_valid;
  if (m->reg) {
    m->reg->value_scale = -L.inv_n_valid; /* loss = -(sum cc) / N */
    m->reg->affine_scale = 1.0;           /* the per-voxel gradients carry 1/N already */
  }
  if (m->want_affine) memcpy(res->grad_affine, aff, sizeof aff);
  return GR_OK;
}
