/* Grid Parallel building blocks across shards (local group P = 2, 3, 4, or one
 * MPI run with --mpi): halo-exchanged Gaussian smoothing, the ring sampler and
 * the distributed LNCC / MI / MSE (value, N, affine and field gradients) equal
 * the single-process kernels, bit for bit, on oblique grids with displacements
 * that carry points across several slabs. */
#include "gp_test.h"

static gr_backend *be;

typedef struct shared {
  gr_grid fg, mg;
  float *fixed, *moving, *fmask, *mmask, *disp, *field;
  gr_affine T;
  /* outputs gathered by shard 0 */
  float *smooth_out, *ring_out, *grad_out;
  gr_metric_result res[3][2];
  int64_t ring_bytes;
  int64_t ring_skipped;
} shared;

static const gr_metric_kind kinds[3] = {GR_METRIC_LNCC, GR_METRIC_MI, GR_METRIC_MSE};

static gr_metric_spec spec_of(gr_metric_kind k) {
  gr_metric_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.kind = k;
  spec.lncc_radius = 2;
  spec.mi_bins = 24;
  spec.fixed_max = spec.moving_max = 1.0;
  spec.want_field_grad = spec.want_affine_grad = 1;
  return spec;
}

/* Copy planes [z0, z1) of each of ncomp planes of a whole grid (nvox voxels) into a packed block. */
static float *take_planes(const float *src, int ncomp, int64_t nvox, int64_t nxy, int64_t z0, int64_t z1) {
  const int64_t m = (z1 - z0) * nxy;
  float *out = malloc(sizeof(float) * (size_t)(m * ncomp));
  for (int q = 0; q < ncomp; ++q) memcpy(out + q * m, src + q * nvox + z0 * nxy, sizeof(float) * (size_t)m);
  return out;
}

static gr_status shard_fn(gr_comm *c, void *user) {
  shared *S = user;
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  const int64_t nf = gp_nvox(&S->fg), nxy = S->fg.n[0] * S->fg.n[1];
  gr_shard fs;
  gr_status s = gr_shard_init(&S->fg, P, me, 6, &fs); /* 6 >= ceil(3 * 2.0) and >= 2 r */
  if (s != GR_OK) return s;
  const int64_t off = gr_shard_own_offset(&fs);
  float *whole = malloc(sizeof(float) * nf * 3);
  float *own = malloc(sizeof(float) * fs.nown * 3);

  /* 1) smoothing of a 3-component field: owned planes only are filled; the halo
   * starts as NaN, so a missing exchange shows. */
  float *u = take_planes(S->field, 3, nf, nxy, fs.ext0, fs.ext1);
  for (int q = 0; q < 3; ++q)
    for (int64_t v = 0; v < fs.nloc; ++v)
      if (v < off || v >= off + fs.nown) u[q * fs.nloc + v] = NAN;
  const double sig[3] = {1.0, 1.5, 2.0};
  s = gr_shard_smooth(be, c, &fs, u, 3, sig);
  for (int q = 0; q < 3; ++q) memcpy(own + q * fs.nown, u + q * fs.nloc + off, sizeof(float) * fs.nown);
  if (s == GR_OK) s = gr_gather_slabs(c, &fs.global, own, 3, fs.nown, whole);
  if (s == GR_OK && me == 0) memcpy(S->smooth_out, whole, sizeof(float) * nf * 3);
  free(u);

  /* 2) ring sampler: the moving image at A (x + u(x)) + t on the stored planes. */
  int64_t mz0, mz1;
  gr_decomp_slab(S->mg.n[2], P, me, &mz0, &mz1);
  const int64_t mxy = S->mg.n[0] * S->mg.n[1], nm = gp_nvox(&S->mg);
  float *mov = take_planes(S->moving, 1, nm, mxy, mz0, mz1);
  float *mmask = take_planes(S->mmask, 1, nm, mxy, mz0, mz1);
  float *fix = take_planes(S->fixed, 1, nf, nxy, fs.ext0, fs.ext1);
  float *fmask = take_planes(S->fmask, 1, nf, nxy, fs.ext0, fs.ext1);
  float *disp = take_planes(S->disp, 3, nf, nxy, fs.ext0, fs.ext1);
  double *acc = malloc(sizeof(double) * fs.nloc);
  float *out = malloc(sizeof(float) * fs.nloc);
  if (s == GR_OK) {
    gr_slab_sample pts;
    memset(&pts, 0, sizeof pts);
    pts.out_grid = &fs.global;
    pts.out_z0 = fs.ext0;
    pts.out_nz = fs.ext1 - fs.ext0;
    pts.T = &S->T;
    pts.disp = disp;
    pts.interp = GR_INTERP_LINEAR;
    pts.boundary = GR_BOUNDARY_ZERO;
    pts.acc = acc;
    const gr_ring_image img = {&S->mg, mov, 1, (mz1 - mz0) * mxy};
    gr_ring_stats st;
    s = gr_ring_sample(be, c, &img, &pts, &st);
    if (s == GR_OK) s = be->ops->slab_finalize(be, fs.nloc, acc, NULL, 1.0, out);
    if (s == GR_OK) s = gr_gather_slabs(c, &fs.global, out + off, 1, fs.nown, whole);
    if (s == GR_OK && me == 0) {
      memcpy(S->ring_out, whole, sizeof(float) * nf);
      S->ring_bytes = st.bytes_received;
      S->ring_skipped = st.steps_skipped;
    }
  }

  /* 3) distributed metrics, without and with masks. */
  float *grad = malloc(sizeof(float) * fs.nloc * 3);
  for (int ki = 0; ki < 3 && s == GR_OK; ++ki)
    for (int masks = 0; masks < 2 && s == GR_OK; ++masks) {
      const gr_metric_spec spec = spec_of(kinds[ki]);
      gr_dist_metric_args a = {&spec, &fs, fix, masks ? fmask : NULL, &S->mg, mov, masks ? mmask : NULL, &S->T, disp};
      gr_metric_result r;
      s = gr_dist_metric(be, c, &a, &r, grad, NULL);
      for (int q = 0; q < 3 && s == GR_OK; ++q) memcpy(own + q * fs.nown, grad + q * fs.nloc + off, sizeof(float) * fs.nown);
      if (s == GR_OK) s = gr_gather_slabs(c, &fs.global, own, 3, fs.nown, whole);
      if (s == GR_OK && me == 0) {
        S->res[ki][masks] = r;
        memcpy(S->grad_out + (ki * 2 + masks) * nf * 3, whole, sizeof(float) * nf * 3);
      }
    }
  free(grad);
  free(acc);
  free(out);
  free(mov);
  free(mmask);
  free(fix);
  free(fmask);
  free(disp);
  free(whole);
  free(own);
  return s;
}

static shared S;
static float *ref_smooth, *ref_ring, *ref_grad;
static gr_metric_result ref_res[3][2];

static void check(void *user, int P, const char *mode) {
  (void)user;
  const int64_t nf = gp_nvox(&S.fg);
  double md = 0;
  int64_t bad = gp_compare(S.smooth_out, ref_smooth, 3 * nf, &md);
  GR_CHECK(bad == 0, "%s P=%d: smoothing: %lld values differ (max %g)", mode, P, (long long)bad, md);
  bad = gp_compare(S.ring_out, ref_ring, nf, &md);
  GR_CHECK(bad == 0, "%s P=%d: ring sampler: %lld values differ (max %g)", mode, P, (long long)bad, md);
  for (int ki = 0; ki < 3; ++ki)
    for (int masks = 0; masks < 2; ++masks) {
      const gr_metric_result *a = &S.res[ki][masks], *b = &ref_res[ki][masks];
      GR_CHECK(a->value == b->value && a->n_valid == b->n_valid, "%s P=%d kind %d masks %d: value %.17g vs %.17g, N %lld vs %lld",
               mode, P, (int)kinds[ki], masks, a->value, b->value, (long long)a->n_valid, (long long)b->n_valid);
      int affbad = 0;
      for (int q = 0; q < 12; ++q) affbad += a->grad_affine[q] != b->grad_affine[q];
      GR_CHECK(affbad == 0, "%s P=%d kind %d masks %d: %d affine-gradient entries differ", mode, P, (int)kinds[ki],
               masks, affbad);
      bad = gp_compare(S.grad_out + (ki * 2 + masks) * nf * 3, ref_grad + (ki * 2 + masks) * nf * 3, 3 * nf, &md);
      GR_CHECK(bad == 0, "%s P=%d kind %d masks %d: %lld field-gradient values differ (max %g)", mode, P,
               (int)kinds[ki], masks, (long long)bad, md);
    }
  fprintf(stderr, "%s P=%d: smoothing, ring sampler (%lld bytes received by rank 0, %lld steps skipped), "
                  "LNCC/MI/MSE with and without masks: %s\n",
          mode, P, (long long)S.ring_bytes, (long long)S.ring_skipped, gr_test_failures ? "FAILED" : "bitwise equal");
}

int main(int argc, char **argv) {
  const int mpi = gp_mpi_mode(argc, argv);
  GR_CHECK_OK(gr_backend_cpu_create(1, &be)); /* one OpenMP thread per shard: shards are the parallelism */
  const double fsp[3] = {1.1, 0.9, 1.3}, feu[3] = {0.05, -0.08, 0.12};
  const double msp[3] = {1.0, 1.2, 1.05}, meu[3] = {-0.1, 0.04, -0.06};
  gp_grid(24, 20, 26, fsp, feu, &S.fg, NULL);
  gp_grid(22, 19, 24, msp, meu, &S.mg, NULL);
  const int64_t nf = gp_nvox(&S.fg), nm = gp_nvox(&S.mg);
  S.fixed = malloc(sizeof(float) * nf);
  S.fmask = malloc(sizeof(float) * nf);
  S.disp = malloc(sizeof(float) * nf * 3);
  S.field = malloc(sizeof(float) * nf * 3);
  S.moving = malloc(sizeof(float) * nm);
  S.mmask = malloc(sizeof(float) * nm);
  gp_fill(&S.fg, S.fixed, 0.3);
  gp_fill(&S.mg, S.moving, 0.9);
  gp_field(&S.fg, S.disp, 5.0); /* up to ~5 mm: points cross slab borders by several planes */
  gp_field(&S.fg, S.field, 2.0);
  for (int64_t v = 0; v < nf; ++v) S.fmask[v] = (v % 7) != 3 ? 1.0f : 0.0f;
  for (int64_t v = 0; v < nm; ++v) S.mmask[v] = (v % 5) != 1 ? 1.0f : 0.0f;
  const double p[6] = {0.06, -0.04, 0.09, 1.2, -0.8, 2.1}, c[3] = {0.5, -0.3, 0.2};
  gr_euler_to_affine(p, c, &S.T);
  S.smooth_out = malloc(sizeof(float) * nf * 3);
  S.ring_out = malloc(sizeof(float) * nf);
  S.grad_out = malloc(sizeof(float) * nf * 3 * 6);

  /* single-process references */
  ref_smooth = malloc(sizeof(float) * nf * 3);
  ref_ring = malloc(sizeof(float) * nf);
  ref_grad = malloc(sizeof(float) * nf * 3 * 6);
  memcpy(ref_smooth, S.field, sizeof(float) * nf * 3);
  const double sig[3] = {1.0, 1.5, 2.0};
  GR_CHECK_OK(be->ops->smooth(be, &S.fg, ref_smooth, 3, sig));
  GR_CHECK_OK(be->ops->resample(be, &S.fg, ref_ring, &S.mg, S.moving, 1, &S.T, S.disp, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO));
  for (int ki = 0; ki < 3; ++ki)
    for (int masks = 0; masks < 2; ++masks) {
      const gr_metric_spec spec = spec_of(kinds[ki]);
      GR_CHECK_OK(be->ops->metric(be, &spec, &S.fg, S.fixed, masks ? S.fmask : NULL, &S.mg, S.moving,
                                  masks ? S.mmask : NULL, &S.T, S.disp, &ref_res[ki][masks],
                                  ref_grad + (ki * 2 + masks) * nf * 3));
    }
  const int Ps[] = {2, 3, 4, 5};
  gp_run(mpi, shard_fn, check, &S, Ps, 4);
  gp_finish(mpi);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
