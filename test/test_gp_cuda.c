/* Grid Parallel on the CUDA backend.
 *
 * 1. Kernels, CUDA vs CPU backend on the same inputs (expected bitwise equal:
 *    the CUDA kernels mirror the CPU arithmetic without FMA contraction and add
 *    in the CPU's order):
 *    - sample_slab accumulated over an uneven partition of the input planes
 *      (linear / nearest, ZERO / CLAMP, 1 and 3 components, index gradients,
 *      affine rule with displacement, same-grid rule, a sub-window of points);
 *      bounds mode; direct mode (out = base + scale * value), also with the
 *      fused Adam step (gr_slab_adam); slab_finalize;
 *    - metric_region for LNCC, MI, MSE, with and without masks, presampled
 *      (ring-sampler input) and direct, whole window and a window with halo:
 *      COUNT (N, MI histogram) and EVAL (value, per-plane partials, scales,
 *      affine gradient, grad_u); LNCC again with its slab split into chunks
 *      of a few planes (GIGAREG_CUDA_REGION_CHUNK_MB=1).
 * 2. Registrations: gr_register_local_shards on the CUDA backend with 2 and 3
 *    shards (threads sharing the GPU, device buffers through the thread-group
 *    communicator) vs the unsharded CUDA run: rigid MI -> greedy LNCC (fixed
 *    mask), greedy MI (moving mask), affine LNCC -> SyN LNCC (both masks), on a
 *    pair with a 3.5 mm deformation whose points cross several slab borders.
 *    Required: parameters and final metric within 1e-4 relative, fields and
 *    inverse fields within 0.01 voxel; reported: whether they meet 1e-5
 *    relative (the target), P=2 vs P=3 bitwise, and the distance to the CPU.
 * 3. With --mpi (under mpirun): the sharded registrations once per MPI rank
 *    (device buffers staged through host memory, or CUDA-aware MPI); with
 *    --nccl: the MPI communicator wrapped in the NCCL communicator (one GPU per
 *    rank: skipped when there are fewer GPUs than ranks). Rank 0 compares with
 *    the unsharded CUDA run.
 * --bench N: timings (no checks) on an N^3 pair: unsharded vs 2 and 4 shards on
 * one GPU, or with --mpi / --nccl under mpirun one shard per rank.
 * Exit 77 (skipped) without a CUDA build or without a GPU. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "gp_test.h"
#include "gigareg/registration.h"
#include "registration/reg_internal.h"
#ifndef GIGAREG_HAVE_CUDA
int main(void) { GR_SKIP("this build has no CUDA backend"); }
#else
#include "kernels/cuda_entry.h"

static gr_backend *cpu, *gpu;

/* ---- device helpers ------------------------------------------------------------------ */
static void *dup_dev(const void *h, size_t bytes) {
  void *d = gpu->ops->alloc(gpu, bytes ? bytes : 1);
  GR_CHECK(d != NULL, "device alloc of %zu bytes", bytes);
  if (d && h && bytes) GR_CHECK_OK(gpu->ops->upload(gpu, d, h, bytes));
  return d;
}
static void *zero_dev(size_t bytes) { /* bytes: multiple of 4 */
  void *d = dup_dev(NULL, bytes);
  if (d && bytes) GR_CHECK_OK(gpu->ops->fill(gpu, (float *)d, 0.0f, (int64_t)(bytes / 4)));
  return d;
}
static void get_dev(void *h, const void *d, size_t bytes) {
  if (bytes) GR_CHECK_OK(gpu->ops->download(gpu, h, d, bytes));
}
static void free_dev(void *d) {
  if (d) gpu->ops->free(gpu, d);
}

/* Doubles: count of values not bitwise equal (as numbers), largest relative difference. */
static int64_t cmp_f64(const double *a, const double *b, int64_t n, double *maxrel) {
  int64_t bad = 0;
  double md = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] == b[i]) continue;
    ++bad;
    const double d = fabs(a[i] - b[i]) / fmax(1e-300, fmax(fabs(a[i]), fabs(b[i])));
    if (d > md || d != d) md = d != d ? INFINITY : d;
  }
  *maxrel = md;
  return bad;
}

static double max_abs_f(const float *a, int64_t n) {
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) m = fmax(m, fabs((double)a[i]));
  return m;
}


/* ---- 1a. slab sampler ----------------------------------------------------------------- */
static void test_slab(const gp_scene *s) {
  const int64_t nf = gp_nvox(&s->fg), nm = gp_nvox(&s->mg), nxy = s->fg.n[0] * s->fg.n[1];
  float *in3 = malloc(sizeof(float) * nm * 3), *u3 = malloc(sizeof(float) * nf * 3);
  for (int q = 0; q < 3; ++q)
    for (int64_t v = 0; v < nm; ++v) in3[q * nm + v] = s->moving[v] * (float)(1 + q) - 0.1f * q;
  gp_field(&s->fg, u3, 6.0);
  float *d_in3 = dup_dev(in3, sizeof(float) * nm * 3), *d_u3 = dup_dev(u3, sizeof(float) * nf * 3);
  double *acc_c = malloc(sizeof(double) * nf * 3), *grad_c = malloc(sizeof(double) * nf * 3);
  double *acc_g = malloc(sizeof(double) * nf * 3), *grad_g = malloc(sizeof(double) * nf * 3);
  double *d_acc = zero_dev(sizeof(double) * nf * 3), *d_grad = zero_dev(sizeof(double) * nf * 3);
  int cases = 0, bitwise = 0;
  for (int same = 0; same < 2; ++same)
    for (int interp = 0; interp < 2; ++interp)
      for (int bnd = 0; bnd < 2; ++bnd)
        for (int nc = 1; nc <= 3; nc += 2)
          for (int win = 0; win < 2; ++win)
            for (int wg = 0; wg < 2; ++wg) {
              if (wg && (nc != 1 || interp != GR_INTERP_LINEAR)) continue;
              const int64_t z0 = win ? 5 : 0, nz = win ? 7 : s->fg.n[2], npts = nz * nxy;
              const gr_grid *ing = same ? &s->fg : &s->mg;
              const int64_t in_nvox = same ? nf : nm;
              const float *in_h = same ? u3 : in3, *in_d = same ? d_u3 : d_in3;
              float *dwin = malloc(sizeof(float) * npts * 3);
              for (int q = 0; q < 3; ++q) {
                const float *src = s->disp + q * nf + z0 * nxy;
                for (int64_t v = 0; v < npts; ++v) dwin[q * npts + v] = same ? 0.25f * src[v] : src[v];
              }
              float *d_dwin = dup_dev(dwin, sizeof(float) * npts * 3);
              gr_slab_sample a;
              memset(&a, 0, sizeof a);
              a.out_grid = &s->fg;
              a.out_z0 = z0;
              a.out_nz = nz;
              a.T = same ? NULL : &s->T;
              a.same_grid = same;
              a.in_grid = ing;
              a.ncomp = nc;
              a.interp = (gr_interp)interp;
              a.boundary = (gr_boundary)bnd;
              gr_slab_sample b = a; /* GPU twin */
              a.disp = dwin;
              a.acc = acc_c;
              a.acc_grad = wg ? grad_c : NULL;
              gp_ring_by_hand(cpu, &a, in_h, in_nvox);
              b.disp = d_dwin;
              b.acc = d_acc;
              b.acc_grad = wg ? d_grad : NULL;
              gp_ring_by_hand(gpu, &b, in_d, in_nvox);
              get_dev(acc_g, d_acc, sizeof(double) * npts * nc);
              double mr = 0.0, mg = 0.0;
              int64_t bad = cmp_f64(acc_g, acc_c, npts * nc, &mr), badg = 0;
              if (wg) {
                get_dev(grad_g, d_grad, sizeof(double) * npts * 3);
                badg = cmp_f64(grad_g, grad_c, npts * 3, &mg);
              }
              ++cases;
              bitwise += bad == 0 && badg == 0;
              GR_CHECK(mr <= 1e-12 && mg <= 1e-12,
                       "sample_slab same_grid %d interp %d boundary %d ncomp %d window %d grad %d: %lld values "
                       "differ (max rel %.3g), %lld gradient values (max rel %.3g)",
                       same, interp, bnd, nc, win, wg, (long long)bad, mr, (long long)badg, mg);
              if (bad || badg)
                fprintf(stderr, "  sample_slab case (same %d interp %d bnd %d nc %d win %d grad %d): %lld/%lld values "
                                "not bitwise (max rel %.3g)\n",
                        same, interp, bnd, nc, win, wg, (long long)(bad + badg), (long long)npts * nc, fmax(mr, mg));
              /* bounds mode */
              gr_slab_sample ab = a, bb = b;
              ab.acc = ab.acc_grad = NULL;
              bb.acc = bb.acc_grad = NULL;
              GR_CHECK_OK(cpu->ops->sample_slab(cpu, &ab));
              GR_CHECK_OK(gpu->ops->sample_slab(gpu, &bb));
              GR_CHECK(ab.need_z0 == bb.need_z0 && ab.need_z1 == bb.need_z1,
                       "bounds: cuda [%lld, %lld) cpu [%lld, %lld)", (long long)bb.need_z0, (long long)bb.need_z1,
                       (long long)ab.need_z0, (long long)ab.need_z1);
              /* slab_finalize, with a base and a scale */
              if (!wg) {
                float *fc = malloc(sizeof(float) * npts * nc), *fg = malloc(sizeof(float) * npts * nc);
                float *base = malloc(sizeof(float) * npts * nc);
                for (int64_t v = 0; v < npts * nc; ++v) base[v] = 0.1f * (float)(v % 13) - 0.5f;
                float *d_base = dup_dev(base, sizeof(float) * npts * nc), *d_out = zero_dev(sizeof(float) * npts * nc);
                GR_CHECK_OK(cpu->ops->slab_finalize(cpu, npts * nc, acc_c, base, -0.75, fc));
                GR_CHECK_OK(gpu->ops->slab_finalize(gpu, npts * nc, d_acc, d_base, -0.75, d_out));
                get_dev(fg, d_out, sizeof(float) * npts * nc);
                double md = 0.0;
                int64_t fb = gp_compare(fg, fc, npts * nc, &md);
                GR_CHECK(fb == 0, "slab_finalize: %lld values differ (max %g)", (long long)fb, md);
                /* direct mode: one slab holding every input plane */
                gr_slab_sample ad = a, bd = b;
                ad.acc = ad.acc_grad = NULL;
                bd.acc = bd.acc_grad = NULL;
                ad.in_z0 = bd.in_z0 = 0;
                ad.in_nz = bd.in_nz = ing->n[2];
                ad.in = in_h;
                bd.in = in_d;
                ad.in_comp_stride = bd.in_comp_stride = in_nvox;
                ad.out = fc;
                bd.out = d_out;
                ad.out_base = base;
                bd.out_base = d_base;
                ad.out_scale = bd.out_scale = 1.0;
                GR_CHECK_OK(cpu->ops->sample_slab(cpu, &ad));
                GR_CHECK_OK(gpu->ops->sample_slab(gpu, &bd));
                get_dev(fg, d_out, sizeof(float) * npts * nc);
                fb = gp_compare(fg, fc, npts * nc, &md);
                GR_CHECK(fb == 0, "sample_slab direct mode (same %d interp %d bnd %d nc %d): %lld values differ (max %g)",
                         same, interp, bnd, nc, (long long)fb, md);
                /* direct mode with the fused Adam step (same grid, 3 components): moments
                 * on the points stand for disp and base */
                if (same && nc == 3) {
                  float *mv = malloc(sizeof(float) * npts * 6);
                  for (int64_t v = 0; v < npts * 3; ++v) {
                    mv[v] = 0.02f * dwin[v];                               /* m */
                    mv[npts * 3 + v] = 1e-4f * (float)(1 + v % 7) * 0.01f; /* v > 0 */
                  }
                  /* the same moments as bfloat16 (the top halves: truncation) */
                  uint16_t *mh = malloc(sizeof(uint16_t) * npts * 6);
                  for (int64_t v = 0; v < npts * 6; ++v) {
                    uint32_t bits;
                    memcpy(&bits, &mv[v], sizeof bits);
                    mh[v] = (uint16_t)(bits >> 16);
                  }
                  for (int bf = 0; bf < 2; ++bf) {
                    void *hm = bf ? (void *)mh : (void *)mv;
                    const size_t es = bf ? sizeof(uint16_t) : sizeof(float);
                    char *d_mv = dup_dev(hm, es * npts * 6);
                    const gr_slab_adam am_c = {{hm, (char *)hm + es * npts * 3, bf}, 0.9, 0.99, 1e-8, 3, -0.6f};
                    const gr_slab_adam am_g = {{d_mv, d_mv + es * npts * 3, bf}, 0.9, 0.99, 1e-8, 3, -0.6f};
                    ad.disp = ad.out_base = NULL;
                    bd.disp = bd.out_base = NULL;
                    ad.adam = &am_c;
                    bd.adam = &am_g;
                    GR_CHECK_OK(cpu->ops->sample_slab(cpu, &ad));
                    GR_CHECK_OK(gpu->ops->sample_slab(gpu, &bd));
                    get_dev(fg, d_out, sizeof(float) * npts * nc);
                    fb = gp_compare(fg, fc, npts * nc, &md);
                    GR_CHECK(fb == 0, "sample_slab fused Adam step (%s moments, interp %d bnd %d): %lld values differ (max %g)",
                             bf ? "bf16" : "float", interp, bnd, (long long)fb, md);
                    free_dev(d_mv);
                  }
                  free(mh);
                  free(mv);
                }
                free_dev(d_base);
                free_dev(d_out);
                free(fc);
                free(fg);
                free(base);
              }
              free_dev(d_dwin);
              free(dwin);
            }
  fprintf(stderr, "sample_slab: %d cases, %d bitwise equal to the CPU backend\n", cases, bitwise);
  free_dev(d_in3);
  free_dev(d_u3);
  free_dev(d_acc);
  free_dev(d_grad);
  free(in3);
  free(u3);
  free(acc_c);
  free(grad_c);
  free(acc_g);
  free(grad_g);
}

/* ---- 1b. metric_region ---------------------------------------------------------------- */
static void test_metric_region(const gp_scene *s) {
  const int64_t nf = gp_nvox(&s->fg), nm = gp_nvox(&s->mg), nxy = s->fg.n[0] * s->fg.n[1];
  const gr_metric_kind kinds[3] = {GR_METRIC_LNCC, GR_METRIC_MI, GR_METRIC_MSE};
  const char *names[3] = {"LNCC", "MI", "MSE"};
  float *d_moving = dup_dev(s->moving, sizeof(float) * nm), *d_mmask = dup_dev(s->mmask, sizeof(float) * nm);
  int cases = 0, bitwise = 0;
  for (int ki = 0; ki < 3; ++ki)
    for (int masks = 0; masks < 2; ++masks)
      for (int pre = 0; pre < 2; ++pre)
        for (int win = 0; win < 2; ++win) {
          /* window: stored [z0, z0+nz), owned [o0, o1) */
          const int64_t z0 = win ? 3 : 0, nz = win ? 11 : s->fg.n[2];
          const int64_t o0 = win ? 6 : 0, o1 = win ? 11 : s->fg.n[2], nk = o1 - o0, n = nz * nxy;
          gr_metric_spec spec;
          memset(&spec, 0, sizeof spec);
          spec.kind = kinds[ki];
          spec.lncc_radius = 2;
          spec.mi_bins = 24;
          spec.fixed_min = spec.moving_min = 0.0;
          spec.fixed_max = spec.moving_max = 1.0;
          spec.want_field_grad = 1;
          spec.want_affine_grad = 1;
          float *fw = malloc(sizeof(float) * n), *fmw = malloc(sizeof(float) * n), *dw = malloc(sizeof(float) * n * 3);
          memcpy(fw, s->fixed + z0 * nxy, sizeof(float) * n);
          memcpy(fmw, s->fmask + z0 * nxy, sizeof(float) * n);
          for (int q = 0; q < 3; ++q) memcpy(dw + q * n, s->disp + q * nf + z0 * nxy, sizeof(float) * n);
          double *w = malloc(sizeof(double) * n), *g = malloc(sizeof(double) * n * 3), *mm = malloc(sizeof(double) * n);
          if (pre) { /* presampled by the CPU backend (the ring sampler's output), uploaded for the GPU */
            gr_slab_sample a;
            memset(&a, 0, sizeof a);
            a.out_grid = &s->fg;
            a.out_z0 = z0;
            a.out_nz = nz;
            a.T = &s->T;
            a.disp = dw;
            a.in_grid = &s->mg;
            a.ncomp = 1;
            a.interp = GR_INTERP_LINEAR;
            a.boundary = GR_BOUNDARY_ZERO;
            a.acc = w;
            a.acc_grad = g;
            gp_ring_by_hand(cpu, &a, s->moving, nm);
            a.acc = mm;
            a.acc_grad = NULL;
            a.interp = GR_INTERP_NEAREST;
            gp_ring_by_hand(cpu, &a, s->mmask, nm);
          }
          float *d_f = dup_dev(fw, sizeof(float) * n), *d_fm = dup_dev(fmw, sizeof(float) * n);
          float *d_disp = dup_dev(dw, sizeof(float) * n * 3), *d_gu = zero_dev(sizeof(float) * n * 3);
          double *d_w = pre ? dup_dev(w, sizeof(double) * n) : NULL, *d_g = pre ? dup_dev(g, sizeof(double) * n * 3) : NULL;
          double *d_mm = pre && masks ? dup_dev(mm, sizeof(double) * n) : NULL;
          float *gu_c = calloc((size_t)n * 3, sizeof(float)), *gu_g = calloc((size_t)n * 3, sizeof(float));
          double *pc = calloc((size_t)nk * GR_METRIC_PARTIALS, sizeof(double));
          double *pg = calloc((size_t)nk * GR_METRIC_PARTIALS, sizeof(double));
          int64_t hc[24 * 24], hg[24 * 24];
          memset(hc, 0, sizeof hc);
          memset(hg, 0, sizeof hg);
          gr_metric_region rc, rg;
          memset(&rc, 0, sizeof rc);
          rc.z0 = z0;
          rc.nz = nz;
          rc.own0 = o0;
          rc.own1 = o1;
          rc.hist = hc;
          rc.partials = pc;
          rg = rc;
          rg.hist = hg;
          rg.partials = pg;
          if (pre) {
            rc.pre_w = w;
            rc.pre_g = g;
            rc.pre_mmask = masks ? mm : NULL;
            rg.pre_w = d_w;
            rg.pre_g = d_g;
            rg.pre_mmask = d_mm;
          }
          const float *mv_c = pre ? NULL : s->moving, *mm_c = pre || !masks ? NULL : s->mmask;
          const float *mv_g = pre ? NULL : d_moving, *mm_g = pre || !masks ? NULL : d_mmask;
          gr_metric_result resc, resg;
          rc.phase = rg.phase = GR_METRIC_PHASE_COUNT;
          GR_CHECK_OK(cpu->ops->metric_region(cpu, &spec, &rc, &s->fg, fw, masks ? fmw : NULL, &s->mg, mv_c, mm_c, &s->T,
                                              dw, &resc, gu_c));
          GR_CHECK_OK(gpu->ops->metric_region(gpu, &spec, &rg, &s->fg, d_f, masks ? d_fm : NULL, &s->mg, mv_g, mm_g,
                                              &s->T, d_disp, &resg, d_gu));
          const char *tag = names[ki];
          GR_CHECK(resc.n_valid == resg.n_valid, "%s masks %d pre %d win %d: COUNT N cuda %lld cpu %lld", tag, masks,
                   pre, win, (long long)resg.n_valid, (long long)resc.n_valid);
          if (spec.kind == GR_METRIC_MI)
            GR_CHECK(!memcmp(hc, hg, sizeof hc), "%s masks %d pre %d win %d: COUNT histograms differ", tag, masks, pre,
                     win);
          /* EVAL with N (and histogram) of this window standing for the global ones */
          rc.phase = rg.phase = GR_METRIC_PHASE_EVAL;
          rc.n_global = rg.n_global = resc.n_valid > 0 ? resc.n_valid : 1;
          memcpy(hg, hc, sizeof hc);
          GR_CHECK_OK(cpu->ops->metric_region(cpu, &spec, &rc, &s->fg, fw, masks ? fmw : NULL, &s->mg, mv_c, mm_c, &s->T,
                                              dw, &resc, gu_c));
          GR_CHECK_OK(gpu->ops->metric_region(gpu, &spec, &rg, &s->fg, d_f, masks ? d_fm : NULL, &s->mg, mv_g, mm_g,
                                              &s->T, d_disp, &resg, d_gu));
          get_dev(gu_g, d_gu, sizeof(float) * n * 3);
          double pr = 0.0, ar = 0.0, vr = 0.0;
          const int64_t pbad = cmp_f64(pg, pc, nk * GR_METRIC_PARTIALS, &pr);
          const int64_t abad = cmp_f64(resg.grad_affine, resc.grad_affine, 12, &ar);
          const int64_t vbad = cmp_f64(&resg.value, &resc.value, 1, &vr);
          const int sbad = rg.value_scale != rc.value_scale || rg.affine_scale != rc.affine_scale;
          /* grad_u on every stored plane (MSE/MI zero the halo, LNCC computes it on both) */
          double gmd = 0.0;
          const int64_t gbad = gp_compare(gu_g, gu_c, 3 * n, &gmd);
          const double gscale = fmax(1e-30, max_abs_f(gu_c, 3 * n));
          ++cases;
          const int bw = !pbad && !abad && !vbad && !sbad && !gbad;
          bitwise += bw;
          GR_CHECK(pr <= 1e-9 && ar <= 1e-9 && vr <= 1e-9 && !sbad && gmd <= 1e-6 * gscale,
                   "%s masks %d pre %d win %d: partials %lld differ (max rel %.3g), affine %lld (%.3g), value %.17g vs "
                   "%.17g, scales %s, grad_u %lld differ (max %.3g of %.3g)",
                   tag, masks, pre, win, (long long)pbad, pr, (long long)abad, ar, resg.value, resc.value,
                   sbad ? "differ" : "equal", (long long)gbad, gmd, gscale);
          if (!bw)
            fprintf(stderr, "  metric_region %s masks %d pre %d win %d: not bitwise (partials %lld, affine %lld, "
                            "value %lld, grad_u %lld)\n",
                    tag, masks, pre, win, (long long)pbad, (long long)abad, (long long)vbad, (long long)gbad);
          free_dev(d_f);
          free_dev(d_fm);
          free_dev(d_disp);
          free_dev(d_gu);
          free_dev(d_w);
          free_dev(d_g);
          free_dev(d_mm);
          free(fw);
          free(fmw);
          free(dw);
          free(w);
          free(g);
          free(mm);
          free(gu_c);
          free(gu_g);
          free(pc);
          free(pg);
        }
  fprintf(stderr, "metric_region: %d cases, %d bitwise equal to the CPU backend\n", cases, bitwise);
  free_dev(d_moving);
  free_dev(d_mmask);
}

/* ---- 2. registrations (as test_gp_register.c) -------------------------------------------- */
#define NCFG 3
static gr_image *fixed, *moving, *fmask, *mmask;
static gr_stage_config cfgs[NCFG][2];
static int nst[NCFG], use_fmask[NCFG], use_mmask[NCFG];
static gr_stage_result ref[NCFG][2], cpu_ref[NCFG][2], got[NCFG][2], prev[NCFG][2];
static int have_prev;

static void make_configs(void) {
  gp_cfg_rigid_greedy(cfgs[0]); /* fixed mask */
  nst[0] = 2;
  use_fmask[0] = 1;
  gp_cfg_greedy_mi(&cfgs[1][0]); /* moving mask */
  nst[1] = 1;
  use_mmask[1] = 1;
  gp_cfg_affine_syn(cfgs[2]); /* both masks */
  nst[2] = 2;
  use_fmask[2] = use_mmask[2] = 1;
}

static gr_status run_cfg(gr_backend *be, gr_comm *c, int k, gr_stage_result *out) {
  return gr_register(be, c, fixed, moving, use_fmask[k] ? fmask : NULL, use_mmask[k] ? mmask : NULL, NULL, cfgs[k],
                     nst[k], NULL, out);
}

/* Largest field difference in voxels, and relative to the largest displacement. */
static double field_diff(const gr_image *a, const gr_image *b, int64_t *nbad, double *rel) {
  const int64_t n = gr_image_nvox(a);
  double md = 0.0, mx = 0.0, mdmm = 0.0;
  *nbad = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int q = 0; q < 3; ++q) {
      const double d = fabs((double)a->data[q * n + i] - (double)b->data[q * n + i]);
      if (d != 0.0) ++*nbad;
      md = fmax(md, d / a->geom.spacing[q]);
      mdmm = fmax(mdmm, d);
      mx = fmax(mx, fabs((double)b->data[q * n + i]));
    }
  *rel = mdmm / fmax(1e-30, mx);
  return md;
}

/* Compare got[] with ref[] (CUDA unsharded); report the distance to the CPU too. */
static void compare_runs(int P, const char *mode) {
  for (int k = 0; k < NCFG; ++k)
    for (int q = 0; q < nst[k]; ++q) {
      const gr_stage_result *a = &got[k][q], *b = &ref[k][q], *c = &cpu_ref[k][q];
      double pmax = 0.0, pcpu = 0.0;
      int pbad = 0;
      for (int i = 0; i < 12; ++i) {
        const double d = fabs(a->params[i] - b->params[i]);
        pbad += d != 0.0;
        pmax = fmax(pmax, d / fmax(1.0, fabs(b->params[i])));
        pcpu = fmax(pcpu, fabs(a->params[i] - c->params[i]) / fmax(1.0, fabs(c->params[i])));
      }
      const double mrel = fabs(a->final_metric - b->final_metric) / fmax(1e-12, fabs(b->final_metric));
      int itbad = 0;
      for (int l = 0; l < GR_MAX_LEVELS; ++l) itbad += a->iterations_run[l] != b->iterations_run[l];
      GR_CHECK(pmax <= 1e-4 && mrel <= 1e-4, "%s P=%d cfg %d stage %d: params rel %.3g, metric rel %.3g", mode, P, k,
               q, pmax, mrel);
      double fd = 0.0, id = 0.0, frel = 0.0, irel = 0.0, fcpu = 0.0, crel = 0.0;
      int64_t fbad = 0, ibad = 0, cbad = 0;
      if (b->field) {
        GR_CHECK(a->field && a->inverse_field, "%s P=%d cfg %d: missing fields", mode, P, k);
        if (!a->field || !a->inverse_field) continue;
        fd = field_diff(a->field, b->field, &fbad, &frel);
        id = field_diff(a->inverse_field, b->inverse_field, &ibad, &irel);
        if (c->field) fcpu = field_diff(a->field, c->field, &cbad, &crel);
        GR_CHECK(fd <= 0.01 && id <= 0.01, "%s P=%d cfg %d stage %d: field differs by %.3g voxel, inverse by %.3g",
                 mode, P, k, q, fd, id);
      }
      const int meets = pmax <= 1e-5 && mrel <= 1e-5 && frel <= 1e-5 && irel <= 1e-5;
      fprintf(stderr,
              "%s P=%d cfg %d stage %d vs unsharded CUDA: %s, %s 1e-5 relative (params %d differ, max rel %.3g; "
              "metric %.10g rel %.3g; iterations %s; field: %lld values differ, max %.3g vox = %.3g rel; inverse "
              "%lld, %.3g vox = %.3g rel) | vs CPU unsharded: params rel %.3g, field max %.3g vox\n",
              mode, P, k, q, (pbad || fbad || ibad || mrel != 0.0) ? "not bitwise" : "BITWISE EQUAL",
              meets ? "meets" : "EXCEEDS", pbad, pmax, a->final_metric, mrel, itbad ? "differ" : "equal",
              (long long)fbad, fd, frel, (long long)ibad, id, irel, pcpu, fcpu);
      if (have_prev && prev[k][q].field && a->field) {
        int64_t pb = 0;
        double r = 0.0;
        field_diff(a->field, prev[k][q].field, &pb, &r);
        fprintf(stderr, "  P=%d vs previous shard count: %s (%lld field values differ)\n", P,
                pb == 0 && !memcmp(a->params, prev[k][q].params, sizeof a->params) ? "bitwise equal" : "not bitwise",
                (long long)pb);
      }
    }
  for (int k = 0; k < NCFG; ++k)
    for (int q = 0; q < nst[k]; ++q) {
      gr_stage_result_clear(&prev[k][q]);
      prev[k][q] = got[k][q];
      memset(&got[k][q], 0, sizeof got[k][q]);
    }
  have_prev = 1;
}

static gr_status mpi_shard(gr_comm *c, int me) {
  gr_status s = GR_OK;
  for (int k = 0; k < NCFG && s == GR_OK; ++k) {
    gr_stage_result r[2];
    memset(r, 0, sizeof r);
    s = run_cfg(gpu, c, k, r);
    for (int q = 0; q < nst[k]; ++q) {
      if (me == 0 && s == GR_OK) got[k][q] = r[q];
      else gr_stage_result_clear(&r[q]);
    }
  }
  return s;
}

/* --bench N: timings only (no checks), greedy LNCC and MI, one level of N^3
 * voxels, unsharded CUDA vs 2 and 4 local shards on the GPU. */
static int bench_iters = 10;
static int bench(int N, gr_comm *cm) {
  const double sp[3] = {1.0, 1.0, 1.0}, eu[3] = {0.02, -0.01, 0.03};
  gr_grid g;
  gr_geometry geom;
  gp_grid(N, N, N, sp, eu, &g, &geom);
  gr_image *f = NULL, *m = NULL;
  gr_image_create(&geom, 1, &f);
  gr_image_create(&geom, 1, &m);
  gp_fill(&g, f->data, 0.2);
  float *w = malloc(sizeof(float) * gp_nvox(&g) * 3);
  gp_field(&g, w, 3.0);
  GR_CHECK_OK(cpu->ops->resample(cpu, &g, m->data, &g, f->data, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  free(w);
  const gr_metric_kind kinds[2] = {GR_METRIC_LNCC, GR_METRIC_MI};
  for (int ki = 0; ki < 2; ++ki) {
    gr_stage_config c;
    gr_stage_config_defaults(GR_STAGE_GREEDY, &c);
    c.metric.kind = kinds[ki];
    c.levels = 1;
    c.shrink[0] = 1;
    c.sigma_vox[0] = 0.0;
    c.iterations[0] = bench_iters;
    const int Ps[3] = {1, 2, 4};
    for (int pi = 0; pi < (cm ? 1 : 3); ++pi) {
      gr_stage_result r;
      memset(&r, 0, sizeof r);
      /* comm given (mpirun): one shard per rank over it; else local shards on this GPU */
      if (cm) gr_register(gpu, cm, f, m, NULL, NULL, NULL, &c, 1, NULL, &r); /* warm-up */
      else gr_register_local_shards(gpu, Ps[pi], f, m, NULL, NULL, NULL, &c, 1, NULL, &r);
      gr_stage_result_clear(&r);
      const double t = gr_wall_seconds();
      if (cm) GR_CHECK_OK(gr_register(gpu, cm, f, m, NULL, NULL, NULL, &c, 1, NULL, &r));
      else GR_CHECK_OK(gr_register_local_shards(gpu, Ps[pi], f, m, NULL, NULL, NULL, &c, 1, NULL, &r));
      if (!cm || gr_comm_rank(cm) == 0)
        fprintf(stderr, "bench %d^3 greedy %s, %d iterations: %d shard(s) %s: %.3f s (metric %.8g)\n", N,
                ki == 0 ? "LNCC" : "MI", bench_iters, cm ? gr_comm_size(cm) : Ps[pi], cm ? (cm->ops->name) : "on one GPU",
                gr_wall_seconds() - t, r.final_metric);
      gr_stage_result_clear(&r);
    }
  }
  gr_image_destroy(f);
  gr_image_destroy(m);
  return 0;
}

int main(int argc, char **argv) {
  int mpi = 0, nccl = 0, bench_n = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--mpi")) mpi = 1;
    if (!strcmp(argv[i], "--nccl")) mpi = nccl = 1;
    if (!strcmp(argv[i], "--bench") && i + 1 < argc) bench_n = atoi(argv[++i]);
    if (!strcmp(argv[i], "--iters") && i + 1 < argc) bench_iters = atoi(argv[++i]);
  }
  if (gr_cuda_device_count() == 0) GR_SKIP("no CUDA device");
  gr_comm *world = NULL;
  int rank = 0, P = 1;
  if (mpi) {
    if (!gr_comm_mpi_available()) GR_SKIP("this build has no MPI");
    GR_CHECK_OK(gr_comm_mpi_world(&argc, &argv, &world));
    if (!world) return 1;
    rank = gr_comm_rank(world);
    P = gr_comm_size(world);
    if (nccl && (!gr_comm_nccl_available() || gr_cuda_device_count() < P)) {
      if (rank == 0)
        fprintf(stderr, "SKIPPED: NCCL needs libnccl and one GPU per rank (%d GPUs, %d ranks)\n",
                gr_cuda_device_count(), P);
      gr_comm_destroy(world);
      gr_comm_mpi_finalize();
      return 77;
    }
  }
  const int dev = mpi ? gr_comm_local_device() : 0;
  GR_CHECK_OK(gr_backend_cpu_create(0, &cpu));
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CUDA, dev < 0 ? 0 : dev, 0, &gpu));
  if (!cpu || !gpu) GR_TEST_RETURN();
  if (bench_n > 0) {
    gr_comm *c = world;
    if (nccl) {
      gr_comm *nc = NULL;
      GR_CHECK_OK(gr_comm_nccl_create(world, dev, &nc));
      if (nc) c = nc;
    }
    bench(bench_n, c);
    if (c) gr_comm_destroy(c);
    gr_backend_destroy(gpu);
    gr_backend_destroy(cpu);
    if (mpi) gr_comm_mpi_finalize();
    GR_TEST_RETURN();
  }
  double t0 = gr_wall_seconds();
  if (rank == 0) {
    gp_scene s;
    gp_scene_init(&s);
    test_slab(&s);
    test_metric_region(&s);
    /* Again with the windowed LNCC split into chunks of a few planes (a 1 MB
     * scratch budget; gigavoxel slabs get 4 GB chunks): the same checks. */
    setenv("GIGAREG_CUDA_REGION_CHUNK_MB", "1", 1);
    gr_backend *whole = gpu;
    gpu = NULL;
    GR_CHECK_OK(gr_backend_create(GR_DEVICE_CUDA, dev < 0 ? 0 : dev, 0, &gpu));
    unsetenv("GIGAREG_CUDA_REGION_CHUNK_MB");
    if (gpu) {
      fprintf(stderr, "metric_region with 1 MB LNCC chunks:\n");
      test_metric_region(&s);
      gr_backend_destroy(gpu);
    }
    gpu = whole;
    gp_scene_free(&s);
    fprintf(stderr, "kernel checks: %.2f s\n", gr_wall_seconds() - t0);
  }
  gp_make_reg_pair(cpu, &fixed, &moving, &fmask, &mmask);
  make_configs();
  if (rank == 0) {
    gr_comm *one = NULL;
    GR_CHECK_OK(gr_comm_local_create(&one));
    t0 = gr_wall_seconds();
    for (int k = 0; k < NCFG; ++k) GR_CHECK_OK(run_cfg(gpu, one, k, ref[k]));
    fprintf(stderr, "unsharded CUDA references: %.2f s\n", gr_wall_seconds() - t0);
    t0 = gr_wall_seconds();
    for (int k = 0; k < NCFG; ++k) GR_CHECK_OK(run_cfg(cpu, one, k, cpu_ref[k]));
    fprintf(stderr, "unsharded CPU references: %.2f s\n", gr_wall_seconds() - t0);
    gr_comm_destroy(one);
  }
  if (!mpi) {
    const int Ps[2] = {2, 3};
    for (int pi = 0; pi < 2; ++pi) {
      t0 = gr_wall_seconds();
      for (int k = 0; k < NCFG; ++k) {
        const gr_status s = gr_register_local_shards(gpu, Ps[pi], fixed, moving, use_fmask[k] ? fmask : NULL,
                                                     use_mmask[k] ? mmask : NULL, NULL, cfgs[k], nst[k], NULL, got[k]);
        GR_CHECK(s == GR_OK, "local shards P=%d cfg %d: %s: %s", Ps[pi], k, gr_strerror(s), gr_last_error());
      }
      fprintf(stderr, "CUDA, %d local shards: %.2f s\n", Ps[pi], gr_wall_seconds() - t0);
      compare_runs(Ps[pi], "cuda local-group");
    }
  } else {
    gr_comm *c = world;
    if (nccl) {
      gr_comm *nc = NULL;
      GR_CHECK_OK(gr_comm_nccl_create(world, dev, &nc));
      if (nc) c = nc; /* owns world now */
    }
    t0 = gr_wall_seconds();
    const gr_status s = mpi_shard(c, rank);
    GR_CHECK(s == GR_OK, "rank %d: %s: %s", rank, gr_strerror(s), gr_last_error());
    if (rank == 0) {
      fprintf(stderr, "CUDA, %d %s ranks: %.2f s\n", P, nccl ? "NCCL" : "MPI", gr_wall_seconds() - t0);
      if (s == GR_OK) compare_runs(P, nccl ? "cuda nccl" : "cuda mpi");
    }
    gr_comm_destroy(c);
  }
  for (int k = 0; k < NCFG; ++k)
    for (int q = 0; q < nst[k]; ++q) {
      gr_stage_result_clear(&ref[k][q]);
      gr_stage_result_clear(&cpu_ref[k][q]);
      gr_stage_result_clear(&got[k][q]);
      gr_stage_result_clear(&prev[k][q]);
    }
  gr_image_destroy(fixed);
  gr_image_destroy(moving);
  gr_image_destroy(fmask);
  gr_image_destroy(mmask);
  gr_backend_destroy(gpu);
  gr_backend_destroy(cpu);
  if (mpi) gr_comm_mpi_finalize();
  GR_TEST_RETURN();
}
#endif
