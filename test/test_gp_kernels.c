/* Grid Parallel kernels on one process: sample_slab summed over a partition of
 * the input planes equals the whole-grid sampler, compose and invert step,
 * and metric_region on presampled values equals the fused metric, bit for bit
 * (compared with ==, so only the sign of a zero may differ). */
#include "gp_test.h"

static gr_backend *be;

static void test_resample(const gp_scene *s) {
  const int64_t nf = gp_nvox(&s->fg), nm = gp_nvox(&s->mg);
  float *ref = malloc(sizeof(float) * nf * 3), *got = malloc(sizeof(float) * nf * 3);
  double *acc = malloc(sizeof(double) * nf * 3);
  float *in3 = malloc(sizeof(float) * nm * 3);
  for (int q = 0; q < 3; ++q)
    for (int64_t v = 0; v < nm; ++v) in3[q * nm + v] = s->moving[v] * (float)(1 + q) - 0.1f * q;
  for (int interp = 0; interp < 2; ++interp)
    for (int bnd = 0; bnd < 2; ++bnd)
      for (int nc = 1; nc <= 3; nc += 2)
        for (int win = 0; win < 2; ++win) {
          /* whole window, or planes [5, 12) of the fixed grid */
          const int64_t z0 = win ? 5 : 0, nz = win ? 7 : s->fg.n[2], nxy = s->fg.n[0] * s->fg.n[1];
          GR_CHECK_OK(be->ops->resample(be, &s->fg, ref, &s->mg, in3, nc, &s->T, s->disp, (gr_interp)interp,
                                        (gr_boundary)bnd));
          gr_slab_sample a = {0};
          a.out_grid = &s->fg;
          a.out_z0 = z0;
          a.out_nz = nz;
          a.T = &s->T;
          a.disp = NULL;
          float *dwin = malloc(sizeof(float) * nz * nxy * 3);
          for (int q = 0; q < 3; ++q) memcpy(dwin + q * nz * nxy, s->disp + q * nf + z0 * nxy, sizeof(float) * nz * nxy);
          a.disp = dwin;
          a.in_grid = &s->mg;
          a.ncomp = nc;
          a.interp = (gr_interp)interp;
          a.boundary = (gr_boundary)bnd;
          a.acc = acc;
          gp_ring_by_hand(be, &a, in3, nm);
          GR_CHECK_OK(be->ops->slab_finalize(be, nz * nxy * nc, acc, NULL, 1.0, got));
          int64_t bad = 0;
          double md = 0;
          for (int q = 0; q < nc; ++q) bad += gp_compare(got + q * nz * nxy, ref + q * nf + z0 * nxy, nz * nxy, &md);
          GR_CHECK(bad == 0, "resample interp %d boundary %d ncomp %d window %d: %lld voxels differ (max %g)", interp,
                   bnd, nc, win, (long long)bad, md);
          /* the bounds pre-pass covers every plane a point reads */
          gr_slab_sample b = a;
          b.acc = NULL;
          GR_CHECK_OK(be->ops->sample_slab(be, &b));
          GR_CHECK(b.need_z0 >= 0 && b.need_z1 <= s->mg.n[2] && b.need_z1 > b.need_z0, "bounds [%lld, %lld)",
                   (long long)b.need_z0, (long long)b.need_z1);
          int64_t cuts[2] = {b.need_z0, b.need_z1};
          gr_slab_sample c = a;
          memset(acc, 0, sizeof(double) * nz * nxy * nc);
          c.in_z0 = cuts[0];
          c.in_nz = cuts[1] - cuts[0];
          c.in = in3 + cuts[0] * s->mg.n[0] * s->mg.n[1];
          c.in_comp_stride = nm;
          GR_CHECK_OK(be->ops->sample_slab(be, &c));
          GR_CHECK_OK(be->ops->slab_finalize(be, nz * nxy * nc, acc, NULL, 1.0, got));
          bad = 0;
          for (int q = 0; q < nc; ++q) bad += gp_compare(got + q * nz * nxy, ref + q * nf + z0 * nxy, nz * nxy, &md);
          GR_CHECK(bad == 0, "bounds-restricted slab misses %lld voxels (interp %d boundary %d)", (long long)bad, interp,
                   bnd);
          free(dwin);
        }
  free(ref);
  free(got);
  free(acc);
  free(in3);
}

static void test_compose_invert(const gp_scene *s) {
  const int64_t n = gp_nvox(&s->fg);
  float *u = malloc(sizeof(float) * n * 3), *st = malloc(sizeof(float) * n * 3);
  float *ref = malloc(sizeof(float) * n * 3), *got = malloc(sizeof(float) * n * 3);
  double *acc = malloc(sizeof(double) * n * 3);
  gp_field(&s->fg, u, 6.0);
  for (int64_t i = 0; i < 3 * n; ++i) st[i] = 0.3f * s->disp[i]; /* a step of ~1 voxel */
  GR_CHECK_OK(be->ops->compose(be, &s->fg, u, st, ref));
  gr_slab_sample a = {0};
  a.out_grid = &s->fg;
  a.out_nz = s->fg.n[2];
  a.disp = st;
  a.same_grid = 1;
  a.in_grid = &s->fg;
  a.ncomp = 3;
  a.interp = GR_INTERP_LINEAR;
  a.boundary = GR_BOUNDARY_CLAMP;
  a.acc = acc;
  gp_ring_by_hand(be, &a, u, n);
  GR_CHECK_OK(be->ops->slab_finalize(be, 3 * n, acc, st, 1.0, got));
  double md = 0;
  int64_t bad = gp_compare(got, ref, 3 * n, &md);
  GR_CHECK(bad == 0, "compose: %lld values differ (max %g)", (long long)bad, md);
  /* one fixed-point step of the inverse: -u(x - u(x)) */
  GR_CHECK_OK(be->ops->invert(be, &s->fg, u, ref, 1));
  for (int64_t i = 0; i < 3 * n; ++i) st[i] = -u[i];
  gp_ring_by_hand(be, &a, u, n);
  GR_CHECK_OK(be->ops->slab_finalize(be, 3 * n, acc, NULL, -1.0, got));
  bad = gp_compare(got, ref, 3 * n, &md);
  GR_CHECK(bad == 0, "invert step: %lld values differ (max %g)", (long long)bad, md);
  free(u);
  free(st);
  free(ref);
  free(got);
  free(acc);
}

static void test_metrics(const gp_scene *s) {
  const int64_t nf = gp_nvox(&s->fg), nm = gp_nvox(&s->mg);
  float *gref = malloc(sizeof(float) * nf * 3), *ggot = malloc(sizeof(float) * nf * 3);
  double *w = malloc(sizeof(double) * nf), *g = malloc(sizeof(double) * nf * 3), *mm = malloc(sizeof(double) * nf);
  double *partials = malloc(sizeof(double) * s->fg.n[2] * GR_METRIC_PARTIALS);
  int64_t hist[64 * 64];
  const gr_metric_kind kinds[3] = {GR_METRIC_LNCC, GR_METRIC_MI, GR_METRIC_MSE};
  for (int ki = 0; ki < 3; ++ki)
    for (int masks = 0; masks < 2; ++masks)
      for (int pre = 0; pre < 2; ++pre) {
        gr_metric_spec spec = {0};
        spec.kind = kinds[ki];
        spec.lncc_radius = 2;
        spec.mi_bins = 24;
        spec.fixed_min = spec.moving_min = 0.0;
        spec.fixed_max = spec.moving_max = 1.0;
        spec.want_field_grad = 1;
        spec.want_affine_grad = 1;
        const float *fm = masks ? s->fmask : NULL, *mmk = masks ? s->mmask : NULL;
        gr_metric_result ref, r;
        GR_CHECK_OK(be->ops->metric(be, &spec, &s->fg, s->fixed, fm, &s->mg, s->moving, mmk, &s->T, s->disp, &ref, gref));
        gr_metric_region reg = {0};
        reg.z0 = 0;
        reg.nz = s->fg.n[2];
        reg.own0 = 0;
        reg.own1 = s->fg.n[2];
        reg.hist = hist;
        reg.partials = partials;
        if (pre) {
          gr_slab_sample a = {0};
          a.out_grid = &s->fg;
          a.out_nz = s->fg.n[2];
          a.T = &s->T;
          a.disp = s->disp;
          a.in_grid = &s->mg;
          a.ncomp = 1;
          a.interp = GR_INTERP_LINEAR;
          a.boundary = GR_BOUNDARY_ZERO;
          a.acc = w;
          a.acc_grad = g;
          gp_ring_by_hand(be, &a, s->moving, nm);
          if (mmk) {
            a.acc = mm;
            a.acc_grad = NULL;
            a.interp = GR_INTERP_NEAREST;
            gp_ring_by_hand(be, &a, mmk, nm);
          }
          reg.pre_w = w;
          reg.pre_g = g;
          reg.pre_mmask = mmk ? mm : NULL;
        }
        reg.phase = GR_METRIC_PHASE_COUNT;
        GR_CHECK_OK(be->ops->metric_region(be, &spec, &reg, &s->fg, s->fixed, fm, &s->mg, pre ? NULL : s->moving,
                                           pre ? NULL : mmk, &s->T, s->disp, &r, ggot));
        GR_CHECK(r.n_valid == ref.n_valid, "count %lld vs %lld", (long long)r.n_valid, (long long)ref.n_valid);
        reg.phase = GR_METRIC_PHASE_EVAL;
        reg.n_global = r.n_valid;
        GR_CHECK_OK(be->ops->metric_region(be, &spec, &reg, &s->fg, s->fixed, fm, &s->mg, pre ? NULL : s->moving,
                                           pre ? NULL : mmk, &s->T, s->disp, &r, ggot));
        double tot[GR_METRIC_PARTIALS] = {0};
        for (int64_t k = 0; k < s->fg.n[2]; ++k)
          for (int q = 0; q < GR_METRIC_PARTIALS; ++q) tot[q] += partials[k * GR_METRIC_PARTIALS + q];
        const double value = spec.kind == GR_METRIC_MI ? r.value : reg.value_scale * tot[0];
        GR_CHECK(value == ref.value, "kind %d masks %d pre %d: value %.17g vs %.17g", (int)spec.kind, masks, pre, value,
                 ref.value);
        int aff_bad = 0;
        for (int q = 0; q < 12; ++q) aff_bad += reg.affine_scale * tot[1 + q] != ref.grad_affine[q];
        GR_CHECK(aff_bad == 0, "kind %d masks %d pre %d: %d affine-gradient entries differ", (int)spec.kind, masks, pre,
                 aff_bad);
        double md = 0;
        const int64_t bad = gp_compare(ggot, gref, 3 * nf, &md);
        GR_CHECK(bad == 0, "kind %d masks %d pre %d: %lld gradient values differ (max %g)", (int)spec.kind, masks, pre,
                 (long long)bad, md);
      }
  free(gref);
  free(ggot);
  free(w);
  free(g);
  free(mm);
  free(partials);
}

int main(void) {
  GR_CHECK_OK(gr_backend_cpu_create(0, &be));
  gp_scene s;
  gp_scene_init(&s);
  test_resample(&s);
  test_compose_invert(&s);
  test_metrics(&s);
  gp_scene_free(&s);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
