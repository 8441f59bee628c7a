/* bench_gpu: one greedy deformable iteration on the CUDA backend, timed like
 * the FireANTs baseline (shared/baselines/fireants_h100.md): synthetic pair
 * with a known smooth displacement of up to +-4 voxels, fp32, one resolution
 * level, fixed iterations (3 warm-up + 20 timed), sizes 128^3 .. the largest
 * that fits.
 *
 * One iteration is exactly what the registration driver does per iteration
 * (greedy_stage.c + field_ops.c gr_field_update): metric (value + d loss/d u),
 * smooth the gradient (sigma 1), Adam moments + global max, the step formed
 * inside the compose pass (adam_compose), smooth the field (sigma 1, the greedy default), all
 * through the backend table (GR_BENCH_UNFUSED=1: the older sequence Adam
 * direction, fill + axpy, compose, with its two extra fields; GR_BENCH_NO_SMOOTH_TO=1: the field
 * smoothed in place instead of out of place; GR_BENCH_NO_SMOOTH_MOMENTS=1: the gradient smoothed by
 * itself before the moments pass). Reported per size and loss:
 *   ms/iteration (median), ms per Gvox, modelled DRAM bytes per voxel and the
 *   effective bandwidth against the 3.0 TB/s copy roofline, peak accounted
 *   device bytes per voxel (be->bytes_peak over the iterations) and the whole
 *   device's use (cudaMemGetInfo), end-point error before/after the 20
 *   iterations, and a per-op breakdown.
 * Plus a device-to-device copy bandwidth probe. Markdown tables on stdout,
 * progress on stderr.
 *
 * Usage: bench_gpu [max_size] [timed_iterations]
 * (GR_BENCH_MIN_SIZE=n skips the sizes below n, GR_BENCH_SKIP_R2=1 the LNCC r2
 * runs, GR_BENCH_SIZES="512 1145" times those edge lengths instead of the
 * default list, GR_BENCH_BF16=1 stores the Adam moments as bfloat16, GR_BENCH_U16=1 stores the fixed and
 * moving images as 16 bit (pack_u16, read through gr_metric_spec.fixed_u16 / moving_u16; the float
 * copies are freed before the iterations, so peak B/voxel shows the 4 B/voxel saved), GR_BENCH_ONLY=lncc|mi times one loss;
 * GIGAREG_CUDA_LNCC=double times the double LNCC kernel instead of the fp32 one.) */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gigareg/gigareg.h"
#include "bench_common.h"
#include "kernels/cuda_entry.h"
#include "registration/reg_internal.h" /* gr_geometry_shrink */

#define WARMUP 3
#define MAX_ROWS 32
#define ROOF_TBS 3.0

enum { OP_METRIC = 0, OP_SMOOTH_G, OP_ADAM, OP_SCALE, OP_COMPOSE, OP_SMOOTH_U, NOPS };
static const char *op_names[NOPS] = {"metric", "smooth grad", "adam", "fill+axpy", "compose", "smooth u"};

/* Modelled DRAM bytes per voxel of each op (each input read once, each output
 * written once, moving-image gathers counted as one 4-byte read). */
static int g_fused; /* the fused update (adam_moments + adam_compose), as the driver runs it */
static int g_smooth_to; /* the field smoothing out of place (backend smooth_to), as the driver runs it */
static int g_smooth_moments; /* the gradient smoothing inside the moments pass (adam_moments_smoothed), likewise */
static int g_bf16;  /* GR_BENCH_BF16=1: Adam moments stored as bfloat16 (GigaRegAdamMoments "bfloat16") */
static int g_u16;   /* GR_BENCH_U16=1: fixed and moving stored as 16 bit (GigaRegImageStorage "uint16") */

static double op_bytes(int op, gr_metric_kind k) {
  if (g_fused) {
    if (op == OP_ADAM) /* read g, m, v; write m, v (bfloat16 moments: 6 B per component each) */
      return g_bf16 ? 36.0 : 60.0;
    if (op == OP_SMOOTH_G && g_smooth_moments) return 0.0; /* inside the moments pass */
    if (op == OP_SCALE) return 0.0;    /* folded into compose */
    if (op == OP_COMPOSE) return 48.0; /* read m, v 24, u 12 (gathered), write 12 */
  }
  switch (op) {
    case OP_METRIC: /* LNCC: warp (u 12 + M 4 + W 8) + fused (F 4 + W 8 + u 12 + M 4 + grad 12);
                       MI: histogram (u 12 + F 4 + M 4) + gradient (u 12 + F 4 + M 4 + grad 12);
                       16-bit images: F and M 2 B per read instead of 4 */
      if (g_u16) return k == GR_METRIC_LNCC ? 60.0 : 44.0;
      return k == GR_METRIC_LNCC ? 64.0 : 52.0;
    case OP_SMOOTH_G: return 48.0; /* 3 components x (xy pass 8 + z pass 8) */
    case OP_ADAM: return 72.0;     /* read g, m, v; write m, v, dir */
    case OP_SCALE: return 48.0;    /* fill 12 + axpy (read 24, write 12) */
    case OP_COMPOSE: return 36.0;  /* read s 12, u 12 (gathered), write 12 */
    case OP_SMOOTH_U: return g_smooth_to ? 24.0 : 48.0; /* out of place: read 12, write 12 */
  }
  return 0.0;
}

typedef struct row {
  int n;
  const char *loss;
  int radius;
  double ms_iter, ms_op[NOPS], scratch_op[NOPS];
  double bytes_vox, peak_vox, device_vox, epe0, epe1, fireants;
  int oom;
} row;

static row rows[MAX_ROWS];
static int nrows = 0;


static int cuda_ok(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 1;
  fprintf(stderr, "bench_gpu: %s: %s\n", what, cudaGetErrorString(e));
  return 0;
}

#define TRY(expr)                                                                    \
  do {                                                                               \
    gr_status s_ = (expr);                                                           \
    if (s_ != GR_OK) {                                                               \
      fprintf(stderr, "bench_gpu: %s: %s: %s\n", #expr, gr_strerror(s_), gr_last_error()); \
      goto fail;                                                                     \
    }                                                                                \
  } while (0)

/* Deterministic uniform [0, 1) numbers. */
static uint64_t lcg_state = 0x9e3779b97f4a7c15ull;
static float urand(void) {
  lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((lcg_state >> 40) * (1.0 / 16777216.0));
}

/* Upload a coarse random grid of c^3 x ncomp values in [lo, hi) covering the
 * same extent as `full`, resample it (linear, clamp) onto `full` into dst. */
static gr_status coarse_noise(gr_backend *be, const gr_geometry *full, int c, int ncomp, float lo, float hi, float *dst) {
  gr_geometry cg;
  gr_geometry_shrink(full, (double)full->size[0] / (double)c, &cg);
  const int64_t nc = gr_geometry_nvox(&cg);
  float *h = malloc((size_t)nc * ncomp * sizeof(float));
  if (!h) return gr_error(GR_ERR_NOMEM, "host noise");
  for (int64_t i = 0; i < nc * ncomp; ++i) h[i] = lo + (hi - lo) * urand();
  float *d = be->ops->alloc(be, (size_t)nc * ncomp * sizeof(float));
  gr_status s = d ? be->ops->upload(be, d, h, (size_t)nc * ncomp * sizeof(float)) : GR_ERR_NOMEM;
  free(h);
  gr_grid fg, cgr;
  gr_grid_from_geometry(full, &fg);
  gr_grid_from_geometry(&cg, &cgr);
  if (s == GR_OK) s = be->ops->resample(be, &fg, dst, &cgr, d, ncomp, NULL, NULL, GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
  if (d) be->ops->free(be, d);
  return s;
}

/* Mean |a - b| in voxels over (a subset of) z-slices, downloading slice by slice. */
static double mean_epe(gr_backend *be, const gr_geometry *g, const float *a, const float *b) {
  const int64_t nxy = g->size[0] * g->size[1], nz = g->size[2], n = nxy * nz;
  const int64_t step = nz > 64 ? nz / 64 : 1;
  float *ha = malloc((size_t)nxy * 3 * sizeof(float)), *hb = malloc((size_t)nxy * 3 * sizeof(float));
  double s = 0.0;
  int64_t cnt = 0;
  for (int64_t z = step / 2; z < nz; z += step) {
    for (int c = 0; c < 3; ++c) {
      be->ops->download(be, ha + c * nxy, a + c * n + z * nxy, (size_t)nxy * sizeof(float));
      be->ops->download(be, hb + c * nxy, b + c * n + z * nxy, (size_t)nxy * sizeof(float));
    }
    for (int64_t i = 0; i < nxy; ++i) {
      double e2 = 0.0;
      for (int c = 0; c < 3; ++c) {
        const double d = ((double)ha[c * nxy + i] - (double)hb[c * nxy + i]) / g->spacing[c];
        e2 += d * d;
      }
      s += sqrt(e2);
      ++cnt;
    }
  }
  free(ha);
  free(hb);
  return cnt ? s / (double)cnt : 0.0;
}

static double fireants_ms(int n, gr_metric_kind k) {
  /* shared/baselines/fireants_h100.md, fused, H100 80GB HBM3 */
  if (k == GR_METRIC_LNCC) {
    if (n == 128) return 5.9;
    if (n == 256) return 37.7;
    if (n == 512) return 289.0;
    if (n == 768) return 1437.0;
    if (n == 896) return 4538.0;
  } else {
    if (n == 256) return 82.0;
    if (n == 512) return 630.8;
    if (n == 768) return 1489.0;
    if (n == 896) return 4552.0;
  }
  return 0.0;
}

/* One size and loss: set-up, 3 warm-up iterations (the last one probes each op's
 * transient memory), `iters` timed iterations, end-point error. */
static void run_size(int n, gr_metric_kind kind, int radius, int iters) {
  row *R = &rows[nrows++];
  memset(R, 0, sizeof *R);
  R->n = n;
  R->loss = kind == GR_METRIC_LNCC ? "LNCC" : "MI";
  R->radius = radius;
  R->fireants = fireants_ms(n, kind);
  fprintf(stderr, "== %d^3 %s%s\n", n, R->loss, kind == GR_METRIC_LNCC ? (radius == 3 ? " r3" : " r2") : "");

  size_t free0 = 0, total = 0, free_min;
  cudaMemGetInfo(&free0, &total);
  free_min = free0;
  gr_backend *be = NULL;
  float *F = NULL, *M = NULL, *u = NULL, *scratch = NULL, *grad = NULL, *m = NULL, *v = NULL, *step = NULL,
        *w = NULL, *ut = NULL;
  uint16_t *F16 = NULL, *M16 = NULL;
  cudaEvent_t ev[NOPS + 1];
  for (int i = 0; i <= NOPS; ++i) cudaEventCreate(&ev[i]);
  double *t_iter = calloc((size_t)iters, sizeof(double));
  double *t_op = calloc((size_t)iters * NOPS, sizeof(double));

  gr_geometry geom;
  gr_geometry_identity(&geom, n, n, n);
  gr_grid g;
  gr_grid_from_geometry(&geom, &g);
  const int64_t nv = (int64_t)n * n * n, n3 = 3 * nv;
  const size_t fb = (size_t)n3 * sizeof(float), ib = (size_t)nv * sizeof(float);
  TRY(gr_backend_create(GR_DEVICE_CUDA, 0, 0, &be));

  /* ---- synthetic pair: F = smooth texture, M(x) = F(x + w(x)), |w| <= 4 voxels ---- */
  F = be->ops->alloc(be, ib);
  M = be->ops->alloc(be, ib);
  w = be->ops->alloc(be, fb);
  if (!F || !M || !w) TRY(GR_ERR_NOMEM);
  lcg_state = 0x9e3779b97f4a7c15ull + (uint64_t)n;
  TRY(coarse_noise(be, &geom, n / 12 > 4 ? n / 12 : 4, 1, 0.0f, 1.0f, F));
  TRY(coarse_noise(be, &geom, n / 4 > 8 ? n / 4 : 8, 1, 0.0f, 1.0f, M)); /* finer texture, M as scratch */
  TRY(be->ops->axpy(be, nv, 0.5f, M, F));
  TRY(coarse_noise(be, &geom, 5, 3, -4.0f, 4.0f, w));
  TRY(be->ops->resample(be, &g, M, &g, F, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  be->ops->free(be, w);
  w = NULL;

  gr_stage_config cfg;
  gr_stage_config_defaults(GR_STAGE_GREEDY, &cfg);
  gr_metric_spec spec = cfg.metric;
  spec.kind = kind;
  spec.lncc_radius = radius;
  spec.mi_bins = 32;
  spec.want_field_grad = 1;
  spec.want_affine_grad = 0;
  TRY(be->ops->minmax(be, nv, F, NULL, &spec.fixed_min, &spec.fixed_max));
  TRY(be->ops->minmax(be, nv, M, NULL, &spec.moving_min, &spec.moving_max));
  if (g_u16) {
    /* The textures lie in [0, 1.5): scaled by 1/max into [0, 1] (the driver's images are min/max
     * normalised), packed, and the float images freed. MI's ranges become [0, 1], the 16-bit
     * grid's, which holds every packed value. */
    const float sf = (float)(1.0 / spec.fixed_max), sm = (float)(1.0 / spec.moving_max);
    F16 = be->ops->alloc(be, (size_t)nv * sizeof(uint16_t));
    M16 = be->ops->alloc(be, (size_t)nv * sizeof(uint16_t));
    if (!F16 || !M16) TRY(GR_ERR_NOMEM);
    w = be->ops->alloc(be, ib); /* scaled copy, reused for both images */
    if (!w) TRY(GR_ERR_NOMEM);
    TRY(be->ops->fill(be, w, 0.0f, nv));
    TRY(be->ops->axpy(be, nv, sf, F, w));
    TRY(be->ops->pack_u16(be, nv, w, F16));
    TRY(be->ops->fill(be, w, 0.0f, nv));
    TRY(be->ops->axpy(be, nv, sm, M, w));
    TRY(be->ops->pack_u16(be, nv, w, M16));
    be->ops->free(be, w);
    be->ops->free(be, F);
    be->ops->free(be, M);
    w = F = M = NULL;
    spec.fixed_min = spec.moving_min = 0.0;
    spec.fixed_max = spec.moving_max = 1.0;
    spec.fixed_u16 = F16; /* F and M are NULL: the metric reads these */
    spec.moving_u16 = M16;
  }

  /* ---- the driver's buffers (gr_field_opt_init + greedy_stage.c) ---- */
  u = be->ops->alloc(be, fb);
  grad = be->ops->alloc(be, fb);
  const size_t mb = gr_moment_bytes(nv, g_bf16);
  m = be->ops->alloc(be, mb);
  v = be->ops->alloc(be, mb);
  if (!g_fused) { /* the unfused update also needs a direction and a scratch field */
    scratch = be->ops->alloc(be, fb);
    step = be->ops->alloc(be, fb);
  }
  if (!u || !grad || !m || !v || (!g_fused && (!scratch || !step))) TRY(GR_ERR_NOMEM);
  float *bufs[6] = {u, grad, m, v, scratch, step};
  for (int i = 0; i < (g_fused ? 4 : 6); ++i)
    TRY(be->ops->fill(be, bufs[i], 0.0f, i == 2 || i == 3 ? (int64_t)(mb / sizeof(float)) : n3));
  const gr_moments mom = {m, v, g_bf16};
  be->bytes_peak = be->bytes_current; /* from here on: the iteration's working set */

  const double gs[3] = {cfg.grad_sigma_vox, cfg.grad_sigma_vox, cfg.grad_sigma_vox};
  const double fs[3] = {cfg.field_sigma_vox, cfg.field_sigma_vox, cfg.field_sigma_vox};
  const double lr = cfg.learning_rate[0];
  int t = 0;
  double loss = 0.0;
  for (int it = 0; it < WARMUP + iters; ++it) {
    const int timed = it >= WARMUP, probe_mem = it == WARMUP - 1;
    gr_metric_result res;
    double maxv = 0.0;
    size_t before = 0;
    /* events between ops (timed iterations) and per-op transient memory (probe iteration) */
#define OP_BEGIN(k)                                          \
  do {                                                       \
    if (timed) cudaEventRecord(ev[k], 0);                    \
    if (probe_mem) {                                         \
      before = be->bytes_current;                            \
      be->bytes_peak = before;                               \
    }                                                        \
  } while (0)
#define OP_END(k)                                                                     \
  do {                                                                                \
    if (probe_mem) {                                                                  \
      const double sc = (double)(be->bytes_peak - before);                           \
      if (sc > R->scratch_op[k]) R->scratch_op[k] = sc;                              \
    }                                                                                 \
  } while (0)
    OP_BEGIN(OP_METRIC);
    TRY(be->ops->metric(be, &spec, &g, F, NULL, &g, M, NULL, NULL, u, &res, grad));
    OP_END(OP_METRIC);
    loss = res.value;
    OP_BEGIN(OP_SMOOTH_G);
    if (!g_smooth_moments) TRY(be->ops->smooth(be, &g, grad, 3, gs));
    OP_END(OP_SMOOTH_G);
    ++t;
    OP_BEGIN(OP_ADAM);
    if (g_smooth_moments) /* as field_ops.c: the gradient smoothed inside the moments pass */
      TRY(be->ops->adam_moments_smoothed(be, &g, grad, gs, mom, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, t,
                                         &maxv));
    else if (g_fused)
      TRY(be->ops->adam_moments(be, &g, grad, mom, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, t, &maxv));
    else
      TRY(be->ops->adam_direction(be, &g, grad, m, v, step, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, t, &maxv));
    OP_END(OP_ADAM);
    OP_BEGIN(OP_SCALE);
    if (maxv > 0.0 && !g_fused) {
      TRY(be->ops->fill(be, grad, 0.0f, n3));
      TRY(be->ops->axpy(be, n3, (float)(-lr / maxv), step, grad));
    }
    OP_END(OP_SCALE);
    OP_BEGIN(OP_COMPOSE);
    if (maxv > 0.0 && g_fused) { /* the step is formed inside compose, written over the dead gradient */
      TRY(be->ops->adam_compose(be, &g, mom, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, t, (float)(-lr / maxv),
                                u, grad));
      if (!g_smooth_to) {
        float *tmp = u;
        u = grad;
        grad = tmp;
      }
    } else if (maxv > 0.0) {
      TRY(be->ops->compose(be, &g, u, grad, scratch));
      float *tmp = u;
      u = scratch;
      scratch = tmp;
    }
    OP_END(OP_COMPOSE);
    OP_BEGIN(OP_SMOOTH_U);
    if (g_smooth_to && maxv > 0.0) /* as field_ops.c: the new field, in the gradient's storage, smoothed into the old u */
      TRY(be->ops->smooth_to(be, &g, grad, u, 3, fs));
    else
      TRY(be->ops->smooth(be, &g, u, 3, fs));
    OP_END(OP_SMOOTH_U);
    if (timed) {
      cudaEventRecord(ev[NOPS], 0);
      if (!cuda_ok(cudaEventSynchronize(ev[NOPS]), "event sync")) goto fail;
      float ms;
      for (int k = 0; k < NOPS; ++k) {
        cudaEventElapsedTime(&ms, ev[k], ev[k + 1]);
        t_op[(it - WARMUP) * NOPS + k] = ms;
      }
      cudaEventElapsedTime(&ms, ev[0], ev[NOPS]);
      t_iter[it - WARMUP] = ms;
    }
    if (probe_mem) {
      size_t fr, tt;
      cudaMemGetInfo(&fr, &tt);
      free_min = fr < free_min ? fr : free_min;
      be->bytes_peak = be->bytes_current; /* the timed iterations measure their own peak */
    }
#undef OP_BEGIN
#undef OP_END
  }
  {
    size_t fr, tt;
    cudaMemGetInfo(&fr, &tt);
    free_min = fr < free_min ? fr : free_min;
  }
  /* Working set of the timed iterations: be->bytes_peak was reset to the
   * driver's buffers after the memory-probe iteration. */
  R->peak_vox = (double)be->bytes_peak / (double)nv;
  R->device_vox = (double)(free0 - free_min) / (double)nv;
  R->ms_iter = bench_median(t_iter, iters);
  for (int k = 0; k < NOPS; ++k) {
    double col[256];
    const int ni = iters < 256 ? iters : 256;
    for (int i = 0; i < ni; ++i) col[i] = t_op[i * NOPS + k];
    R->ms_op[k] = bench_median(col, ni);
  }
  R->bytes_vox = 0.0;
  for (int k = 0; k < NOPS; ++k) R->bytes_vox += op_bytes(k, kind);

  /* ---- end-point error against the true fixed->moving displacement (inverse of w) ----
   * Only u survives the timed loop: at most u + w + ut + the inversion's temporary
   * (48 B/voxel) live at once, less than the iteration itself, so a size whose
   * iterations ran also gets its EPE; should it still not fit, the row keeps its
   * timings and reports no EPE. */
  {
    float **dead[] = {&m, &v, &step, &grad, &F, &M, &scratch};
    for (size_t i = 0; i < sizeof dead / sizeof dead[0]; ++i) {
      if (*dead[i]) be->ops->free(be, *dead[i]);
      *dead[i] = NULL;
    }
    if (F16) be->ops->free(be, F16);
    if (M16) be->ops->free(be, M16);
    F16 = M16 = NULL;
  }
  R->epe0 = R->epe1 = NAN;
  w = be->ops->alloc(be, fb);
  ut = be->ops->alloc(be, fb);
  gr_status es = (w && ut) ? GR_OK : GR_ERR_NOMEM;
  if (es == GR_OK) {
    lcg_state = 0x9e3779b97f4a7c15ull + (uint64_t)n;
    /* regenerate w with the same random stream (the two textures come first; ut is their scratch) */
    es = coarse_noise(be, &geom, n / 12 > 4 ? n / 12 : 4, 1, 0.0f, 1.0f, ut);
    if (es == GR_OK) es = coarse_noise(be, &geom, n / 4 > 8 ? n / 4 : 8, 1, 0.0f, 1.0f, ut);
    if (es == GR_OK) es = coarse_noise(be, &geom, 5, 3, -4.0f, 4.0f, w);
    if (es == GR_OK) es = be->ops->invert(be, &g, w, ut, 20);
  }
  if (w) be->ops->free(be, w);
  w = NULL;
  if (es == GR_OK) {
    scratch = be->ops->alloc(be, fb);
    es = scratch ? be->ops->fill(be, scratch, 0.0f, n3) : GR_ERR_NOMEM;
  }
  if (es == GR_OK) {
    R->epe0 = mean_epe(be, &geom, scratch, ut);
    R->epe1 = mean_epe(be, &geom, u, ut);
  } else {
    fprintf(stderr, "   EPE not evaluated: %s\n", gr_last_error());
    gr_clear_error();
  }
  fprintf(stderr, "   %.3f ms/iter, loss %.5f, EPE %.3f -> %.3f voxel, peak %.1f B/voxel\n", R->ms_iter, loss, R->epe0,
          R->epe1, R->peak_vox);
  goto done;
fail:
  R->oom = 1;
  fprintf(stderr, "   failed (%s)\n", gr_last_error());
done:
  if (be) {
    float *all[] = {F, M, u, scratch, grad, m, v, step, w, ut};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
      if (all[i]) be->ops->free(be, all[i]);
    if (F16) be->ops->free(be, F16);
    if (M16) be->ops->free(be, M16);
    gr_backend_destroy(be);
  }
  for (int i = 0; i <= NOPS; ++i) cudaEventDestroy(ev[i]);
  free(t_iter);
  free(t_op);
}

static void copy_probe(double *tbs, double *ms_out, size_t *bytes_out) {
  gr_backend *be = NULL;
  *tbs = 0.0;
  if (gr_backend_create(GR_DEVICE_CUDA, 0, 0, &be) != GR_OK) return;
  const size_t bytes = (size_t)1 << 31;
  float *a = be->ops->alloc(be, bytes), *b = be->ops->alloc(be, bytes);
  if (a && b) {
    be->ops->fill(be, a, 1.0f, (int64_t)(bytes / 4));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[10];
    for (int i = 0; i < 12; ++i) {
      cudaEventRecord(e0, 0);
      be->ops->copy(be, b, a, bytes);
      cudaEventRecord(e1, 0);
      cudaEventSynchronize(e1);
      float ms;
      cudaEventElapsedTime(&ms, e0, e1);
      if (i >= 2) t[i - 2] = ms;
    }
    const double ms = bench_median(t, 10);
    *ms_out = ms;
    *bytes_out = bytes;
    *tbs = 2.0 * (double)bytes / (ms * 1e-3) / 1e12;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }
  if (a) be->ops->free(be, a);
  if (b) be->ops->free(be, b);
  gr_backend_destroy(be);
}

int main(int argc, char **argv) {
  const int max_n = argc > 1 ? atoi(argv[1]) : 1024;
  const int iters = argc > 2 ? atoi(argv[2]) : 20;
  if (gr_cuda_device_count() <= 0) {
    fprintf(stderr, "bench_gpu: no CUDA device\n");
    return 77;
  }
  { /* the driver's path: fused when the backend has the ops; GR_BENCH_UNFUSED=1 measures the old sequence */
    gr_backend *probe = NULL;
    if (gr_backend_create(GR_DEVICE_CUDA, 0, 0, &probe) == GR_OK) {
      g_fused = probe->ops->adam_moments && probe->ops->adam_compose && !getenv("GR_BENCH_UNFUSED");
      g_smooth_to = g_fused && probe->ops->smooth_to && !getenv("GR_BENCH_NO_SMOOTH_TO");
      g_smooth_moments = g_fused && probe->ops->adam_moments_smoothed && !getenv("GR_BENCH_NO_SMOOTH_MOMENTS");
      g_bf16 = g_fused && getenv("GR_BENCH_BF16") && atoi(getenv("GR_BENCH_BF16")) != 0;
      g_u16 = getenv("GR_BENCH_U16") && atoi(getenv("GR_BENCH_U16")) != 0;
      if (g_u16 && !probe->ops->pack_u16) {
        fprintf(stderr, "bench_gpu: GR_BENCH_U16=1 but the backend has no pack_u16\n");
        gr_backend_destroy(probe);
        return 1;
      }
      gr_backend_destroy(probe);
    }
    if (g_fused) op_names[OP_ADAM] = "adam moments";
    if (g_fused) op_names[OP_SCALE] = "(scale: fused)";
    if (g_fused) op_names[OP_COMPOSE] = "adam compose";
  }
  fprintf(stderr, "update: %s%s%s\n", g_fused ? "fused (adam_moments + adam_compose)" : "unfused (adam_direction, fill+axpy, compose)",
          g_bf16 ? ", bfloat16 Adam moments" : "", g_u16 ? ", 16-bit images" : "");
  struct cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  size_t free0, total;
  cudaMemGetInfo(&free0, &total);
  double copy_tbs = 0.0, copy_ms = 0.0;
  size_t copy_bytes = 0;
  copy_probe(&copy_tbs, &copy_ms, &copy_bytes);
  fprintf(stderr, "%s, %d SMs, %.1f GiB (%.1f free), CUDA driver %d runtime %d; copy %.2f TB/s\n", prop.name,
          prop.multiProcessorCount, total / 1073741824.0, free0 / 1073741824.0, drv, rt, copy_tbs);

  /* GR_BENCH_SIZES="512 1145": those edge lengths instead (1145^3 = 1.50 Gvox) */
  int sizes[16] = {128, 256, 512, 768, 896, 1024}, nsizes = 6;
  if (getenv("GR_BENCH_SIZES")) {
    nsizes = 0;
    for (const char *p = getenv("GR_BENCH_SIZES"); *p && nsizes < 16;) {
      char *end = NULL;
      const long v = strtol(p, &end, 10);
      if (end == p) break;
      if (v >= 16 && v <= 4096) sizes[nsizes++] = (int)v;
      p = end;
    }
  }
  for (int si = 0; si < nsizes; ++si) {
    const int n = sizes[si];
    if (n > max_n) break;
    if (getenv("GR_BENCH_MIN_SIZE") && n < atoi(getenv("GR_BENCH_MIN_SIZE"))) continue; /* e.g. profiling one size */
    /* bytes per voxel needed: images 8 (4 in 16 bit) + fields (fused 48, 36 with bf16 moments; unfused 72) + scratch
     * (a smoothing plane 4 where the smoothing is not fused; LNCC's warped image takes 4 only when they fit:
     * without them the lean variant runs, cuda_lncc_fast.cu) + 1 slack */
    const char *only = getenv("GR_BENCH_ONLY"); /* "lncc" or "mi": one loss (profiling) */
    int lncc = !only || strcmp(only, "mi") != 0, mi = !only || strcmp(only, "lncc") != 0;
    const double fields = g_fused ? (g_bf16 ? 36.0 : 48.0) : 72.0;
    const double smooth = g_smooth_moments && g_smooth_to && n % 4 == 0 ? 0.0 : 4.0; /* the march needs rows of float4s */
    const double n3d = (double)n * n * n;
    const double images = g_u16 ? 4.0 : 8.0; /* F + M (the set-up's float copies are gone before the fields exist) */
    const int fit_lncc = (images + fields + smooth + 1.0) * n3d <= 0.97 * (double)free0;
    const int fit_mi = (images + fields + smooth + 1.0) * n3d <= 0.97 * (double)free0;
    if ((lncc && !fit_lncc) || (mi && !fit_mi)) {
      fprintf(stderr, "== %d^3 %s skipped: does not fit %.1f GB free\n", n, lncc && !fit_lncc ? "LNCC" : "MI", free0 / 1e9);
      row *R = &rows[nrows++];
      memset(R, 0, sizeof *R);
      R->n = n;
      R->loss = lncc && !fit_lncc ? "LNCC" : "MI";
      R->oom = 2;
      lncc = lncc && fit_lncc;
      mi = mi && fit_mi;
    }
    if (lncc) run_size(n, GR_METRIC_LNCC, 3, iters);
    if (lncc && (n == 256 || n == 512) && !getenv("GR_BENCH_SKIP_R2")) run_size(n, GR_METRIC_LNCC, 2, iters);
    if (mi) run_size(n, GR_METRIC_MI, 0, iters);
  }

  printf("\nUpdate path: %s%s%s\n", g_fused ? "fused (adam_moments + adam_compose: no direction or scratch field)"
                                            : "unfused (adam_direction, fill + axpy, compose)",
         g_bf16 ? "; Adam moments in bfloat16" : "", g_u16 ? "; fixed and moving images in 16 bit" : "");
  printf("\n## CUDA backend on %s (driver %d.%d, runtime %d.%d, %d SMs, %.0f GiB)\n\n", prop.name, drv / 1000,
         (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10, prop.multiProcessorCount, total / 1073741824.0);
  printf("Copy probe (device-to-device, %zu MiB, read + write): %.3f ms = %.2f TB/s\n\n", copy_bytes >> 20, copy_ms,
         copy_tbs);
  printf("| size | loss | ms/iter | ms/Gvox | model B/voxel | effective TB/s | %% of %.1f TB/s | peak B/voxel | device B/voxel | EPE before -> after (vox) | FireANTs fused ms/iter | speed-up |\n",
         ROOF_TBS);
  printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < nrows; ++i) {
    const row *R = &rows[i];
    char loss[32];
    snprintf(loss, sizeof loss, "%s%s", R->loss, strcmp(R->loss, "LNCC") == 0 ? (R->radius == 3 ? " r3" : " r2") : "");
    if (R->oom) {
      printf("| %d³ | %s | %s | | | | | | | | | |\n", R->n, loss, R->oom == 2 ? "does not fit" : "failed");
      continue;
    }
    const double gv = (double)R->n * R->n * R->n / 1e9;
    const double tbs = R->bytes_vox * gv * 1e9 / (R->ms_iter * 1e-3) / 1e12;
    char fa[32] = "", su[32] = "";
    if (R->fireants > 0 && !(strcmp(R->loss, "LNCC") == 0 && R->radius != 3)) {
      snprintf(fa, sizeof fa, "%.1f", R->fireants);
      snprintf(su, sizeof su, "%.1fx", R->fireants / R->ms_iter);
    }
    printf("| %d³ | %s | %.2f | %.1f | %.0f | %.2f | %.0f%% | %.1f | %.1f | %.2f -> %.2f | %s | %s |\n", R->n, loss,
           R->ms_iter, R->ms_iter / gv, R->bytes_vox, tbs, 100.0 * tbs / ROOF_TBS, R->peak_vox, R->device_vox, R->epe0,
           R->epe1, fa, su);
  }
  printf("\nPer-op breakdown (median ms; model bytes/voxel; effective TB/s; transient scratch bytes/voxel above the driver's buffers):\n\n");
  printf("| size | loss |");
  for (int k = 0; k < NOPS; ++k) printf(" %s |", op_names[k]);
  printf("\n|---|---|");
  for (int k = 0; k < NOPS; ++k) printf("---|");
  printf("\n");
  for (int i = 0; i < nrows; ++i) {
    const row *R = &rows[i];
    if (R->oom) continue;
    const gr_metric_kind kind = strcmp(R->loss, "MI") == 0 ? GR_METRIC_MI : GR_METRIC_LNCC;
    const double nv = (double)R->n * R->n * R->n;
    printf("| %d³ | %s%s |", R->n, R->loss, kind == GR_METRIC_LNCC ? (R->radius == 3 ? " r3" : " r2") : "");
    for (int k = 0; k < NOPS; ++k)
      printf(" %.3f ms, %.0f B, %.2f TB/s, +%.1f B |", R->ms_op[k], op_bytes(k, kind),
             op_bytes(k, kind) * nv / (R->ms_op[k] * 1e-3) / 1e12, R->scratch_op[k] / nv);
    printf("\n");
  }
  return 0;
}
