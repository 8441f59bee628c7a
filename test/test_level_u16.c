/* 16-bit level images (GigaRegImageStorage "uint16", pyramid.c level_quantize).
 * The CPU backend has no pack_u16: the driver rounds its float level images to
 * the 16-bit grid. A backend with pack_u16 (CUDA) gets packed images, the float
 * copies freed. Both must give the same registration bit for bit. Here a
 * wrapper around the CPU backend offers pack_u16 by its definition and reads
 * the packed images back as floats in its metric (on the host, outside the
 * backend's accounting), so on every machine this checks the driver's side:
 * which buffers are packed, copied or freed (a level that borrows the
 * full-resolution images, with or without the in-place smoothing of the run's
 * last level; two stages, where the first must leave the full-resolution
 * images unrounded for the second), that the packed images reach the metric,
 * and that the peak drops by the 4 bytes per voxel of the pair. The CUDA
 * metric's reading of packed images is checked against float images in
 * test_cuda_vs_cpu (GPU); the accuracy of 16-bit images in test_reg_deformable. */
#include <stdint.h>
#include "reg_fixtures.h"
#include "kernels/u16.h"

typedef struct wrapped {
  gr_backend be; /* first: the ops receive &wrapped.be */
  gr_backend *inner;
  gr_backend_ops ops;
  int n_pack, n_metric_u16;
} wrapped;

static gr_status w_pack(gr_backend *be, int64_t n, const float *src, uint16_t *dst) {
  ((wrapped *)be)->n_pack++;
  for (int64_t i = 0; i < n; ++i) dst[i] = gr_u16_quantize(src[i]);
  return GR_OK;
}

static float *unpacked(const uint16_t *q, const gr_grid *g) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2];
  float *f = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; f && i < n; ++i) f[i] = gr_u16_value(q[i]);
  return f;
}

static gr_status w_metric(gr_backend *be, const gr_metric_spec *spec, const gr_grid *fg, const float *fixed,
                          const float *fmask, const gr_grid *mg, const float *moving, const float *mmask,
                          const gr_affine *T, const float *disp, gr_metric_result *res, float *grad_u) {
  wrapped *w = (wrapped *)be;
  gr_metric_spec s = *spec;
  float *f = spec->fixed_u16 ? unpacked(spec->fixed_u16, fg) : NULL;
  float *m = spec->moving_u16 ? unpacked(spec->moving_u16, mg) : NULL;
  if (f || m) w->n_metric_u16++;
  s.fixed_u16 = s.moving_u16 = NULL;
  const gr_status st = w->inner->ops->metric(be, &s, fg, f ? f : fixed, fmask, mg, m ? m : moving, mmask, T, disp,
                                             res, grad_u);
  free(f);
  free(m);
  return st;
}

static void wrap(gr_backend *inner, wrapped *w) {
  memset(w, 0, sizeof *w);
  w->inner = inner;
  w->ops = *inner->ops;
  w->ops.pack_u16 = w_pack;
  w->ops.metric = w_metric;
  w->be = *inner;
  w->be.ops = &w->ops;
}

static void stage(gr_stage_kind kind, gr_metric_kind metric, int u16, int iters, gr_stage_config *c) {
  gr_stage_config_defaults(kind, c);
  c->metric.kind = metric;
  c->image_u16 = u16;
  for (int l = 0; l < c->levels; ++l) c->iterations[l] = iters;
}

/* One run; the final field (caller frees) and the backend's peak bytes. */
static gr_image *run(gr_backend *be, gr_comm *comm, const gr_image *f, const gr_image *m, const gr_stage_config *st,
                     int n, size_t *peak) {
  gr_stage_result res[2];
  gr_reg_options opt = {0};
  be->bytes_peak = be->bytes_current;
  const gr_status s = gr_register(be, comm, f, m, NULL, NULL, NULL, st, n, &opt, res);
  GR_CHECK(s == GR_OK, "registration: %s", gr_last_error());
  *peak = be->bytes_peak;
  gr_image *out = NULL;
  if (s == GR_OK) {
    out = res[n - 1].field;
    res[n - 1].field = NULL;
  }
  for (int k = 0; s == GR_OK && k < n; ++k) gr_stage_result_clear(&res[k]);
  return out;
}

static int64_t differing(const gr_image *a, const gr_image *b) {
  if (!a || !b) return -1;
  const int64_t n = gr_image_nvox(a) * 3;
  int64_t d = 0;
  for (int64_t i = 0; i < n; ++i) d += memcmp(&a->data[i], &b->data[i], sizeof(float)) != 0;
  return d;
}

/* Rounded (plain CPU) vs packed (wrapped): bitwise the same field; the packed
 * run's peak 4 B per voxel lower than the rounded one's, which exceeds the
 * float images' peak by `copy_bytes` per voxel (a full-resolution level whose
 * images a later stage needs unrounded rounds a copy of them: 8 for the pair). */
static void check_case(gr_backend *cpu, gr_comm *comm, const char *label, const gr_image *f, const gr_image *m,
                       const gr_stage_config *st, int n, int copy_bytes) {
  wrapped w;
  wrap(cpu, &w);
  size_t p_round = 0, p_pack = 0, p_float = 0;
  gr_image *a = run(cpu, comm, f, m, st, n, &p_round);
  gr_image *b = run(&w.be, comm, f, m, st, n, &p_pack);
  gr_stage_config plain[2];
  for (int k = 0; k < n; ++k) {
    plain[k] = st[k];
    plain[k].image_u16 = 0;
  }
  gr_image *c = run(cpu, comm, f, m, plain, n, &p_float);
  const int64_t nd = differing(a, b), nf = differing(a, c);
  const double nvox = (double)gr_image_nvox(f);
  fprintf(stderr, "%-34s rounded vs packed: %lld of %lld differ; vs float images: %lld differ; peak float %zu, "
                  "rounded %zu, packed %zu (%.2f B/voxel less); %d packs, %d metric calls on packed images\n",
          label, (long long)nd, (long long)(nvox * 3), (long long)nf, p_float, p_round, p_pack,
          ((double)p_round - (double)p_pack) / nvox, w.n_pack, w.n_metric_u16);
  GR_CHECK(nd == 0, "%s: packed and rounded 16-bit images give different fields (%lld values)", label, (long long)nd);
  GR_CHECK(nf > 0, "%s: 16-bit rounding changed nothing (is it applied?)", label);
  GR_CHECK(w.n_pack > 0 && w.n_metric_u16 > 0, "%s: packed images never reached the metric", label);
  GR_CHECK((double)p_round - (double)p_pack >= 3.5 * nvox, "%s: packed peak %zu vs rounded %zu", label, p_pack,
           p_round);
  GR_CHECK((double)p_round <= (double)p_float + (copy_bytes + 0.05) * nvox,
           "%s: rounding costs %.2f B/voxel (expected %d)", label, ((double)p_round - (double)p_float) / nvox, copy_bytes);
  gr_image_destroy(a);
  gr_image_destroy(b);
  gr_image_destroy(c);
}

int main(void) {
  gr_backend *be = NULL;
  gr_comm *comm = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(2, &be));
  GR_CHECK_OK(gr_comm_local_create(&comm));
  char path[512];
  gr_image *t1 = fx_load(be, gr_test_path(path, sizeof path, GR_TEST_DATA_DIR, "chris_t1.nii.gz"), 4.0);
  if (!t1) GR_SKIP("chris_t1 missing");
  gr_image *w = fx_smooth_field(&t1->geom, 1.5, 3);
  gr_image *mv = fx_warp_field(be, t1, w, GR_INTERP_LINEAR);

  gr_stage_config st[2];
  stage(GR_STAGE_GREEDY, GR_METRIC_LNCC, 1, 6, &st[0]);
  check_case(be, comm, "greedy LNCC (borrowed, last)", t1, mv, st, 1, 0);
  stage(GR_STAGE_GREEDY, GR_METRIC_MI, 1, 6, &st[0]);
  st[0].sigma_vox[st[0].levels - 1] = 0.5; /* smoothed in place at the last level */
  check_case(be, comm, "greedy MI (smoothed in place)", t1, mv, st, 1, 0);
  stage(GR_STAGE_GREEDY, GR_METRIC_LNCC, 1, 4, &st[0]);
  stage(GR_STAGE_GREEDY, GR_METRIC_MI, 1, 4, &st[1]);
  check_case(be, comm, "greedy LNCC -> greedy MI", t1, mv, st, 2, 8);
  stage(GR_STAGE_SYN, GR_METRIC_LNCC, 1, 4, &st[0]); /* SyN resamples its images: rounded, never packed */
  {
    wrapped wr;
    wrap(be, &wr);
    size_t p = 0;
    gr_image *a = run(&wr.be, comm, t1, mv, st, 1, &p), *b = run(be, comm, t1, mv, st, 1, &p);
    const int64_t nd = differing(a, b);
    fprintf(stderr, "%-34s wrapped vs plain: %lld differ, %d packs\n", "syn LNCC (rounded only)", (long long)nd,
            wr.n_pack);
    GR_CHECK(nd == 0 && wr.n_pack == 0, "SyN with 16-bit images: %lld values differ, %d packs", (long long)nd,
             wr.n_pack);
    gr_image_destroy(a);
    gr_image_destroy(b);
  }
  gr_image_destroy(w);
  gr_image_destroy(mv);
  gr_image_destroy(t1);

  gr_comm_destroy(comm);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
