/* Sharded registration equals the single-process registration: a rigid (MI,
 * centre-of-mass start) -> greedy LNCC chain with a fixed mask, and a greedy MI
 * stage with a moving mask, over 2-3 pyramid levels, on a pair related by an
 * affine and a smooth deformation of several voxels (points cross slab borders
 * by several planes). Local groups P = 2, 3, 4, 8 (8 slabs of 30 planes: the
 * coarsest level has one or two planes per shard), or one MPI run (--mpi).
 * Expected: identical parameters and fields (bitwise); the test reports the
 * largest differences and fails above 1e-5 relative (parameters, metric) or
 * 0.01 voxel (fields). The greedy MI stage stores its Adam moments as
 * bfloat16 (GigaRegAdamMoments), the others as float. Also: one greedy LNCC update (two evaluations), and an
 * affine LNCC -> SyN LNCC chain with both masks. */
#include "gp_test.h"
#include "gigareg/registration.h"
#include "registration/reg_internal.h"

#define NCFG 4
static gr_backend *be;
static gr_image *fixed, *moving, *fmask, *mmask;
static gr_stage_config cfgs[NCFG][2];
static int nst[NCFG];
static int use_fmask[NCFG], use_mmask[NCFG];
static gr_stage_result ref[NCFG][2];

typedef struct shard_out {
  gr_stage_result res[NCFG][2];
} shard_out;
static shard_out got;

static void make_configs(void) {
  gp_cfg_rigid_greedy(cfgs[0]); /* fixed mask */
  nst[0] = 2;
  use_fmask[0] = 1;
  gp_cfg_greedy_mi(&cfgs[1][0]); /* moving mask */
  cfgs[1][0].adam_moments_bf16 = 1; /* the sharded update reads bfloat16 moments on the points */
  nst[1] = 1;
  use_mmask[1] = 1;
  /* 2: one greedy LNCC iteration at full resolution (field sigma 0: halos from the exchange alone) */
  gr_stage_config_defaults(GR_STAGE_GREEDY, &cfgs[2][0]);
  cfgs[2][0].metric.kind = GR_METRIC_LNCC;
  cfgs[2][0].levels = 1;
  cfgs[2][0].shrink[0] = 1;
  cfgs[2][0].sigma_vox[0] = 0.0;
  cfgs[2][0].iterations[0] = 2; /* the second evaluation sees the field after one update */
  cfgs[2][0].field_sigma_vox = 0.0;
  nst[2] = 1;
  gp_cfg_affine_syn(cfgs[3]); /* LNCC windows across slab borders in a linear stage; both masks */
  nst[3] = 2;
  use_fmask[3] = use_mmask[3] = 1;
}

static gr_status run_cfg(gr_comm *c, int k, gr_stage_result *out) {
  return gr_register(be, c, fixed, moving, use_fmask[k] ? fmask : NULL, use_mmask[k] ? mmask : NULL, NULL, cfgs[k],
                     nst[k], NULL, out);
}

static gr_status shard_fn(gr_comm *c, void *user) {
  (void)user;
  const int me = gr_comm_rank(c);
  gr_status s = GR_OK;
  for (int k = 0; k < NCFG && s == GR_OK; ++k) {
    gr_stage_result r[2];
    s = run_cfg(c, k, r);
    for (int q = 0; q < nst[k]; ++q) {
      if (me == 0 && s == GR_OK) got.res[k][q] = r[q];
      else gr_stage_result_clear(&r[q]);
    }
  }
  return s;
}

static double field_diff_vox(const gr_image *a, const gr_image *b, int64_t *nbad) {
  const int64_t n = gr_image_nvox(a);
  double md = 0.0;
  *nbad = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int q = 0; q < 3; ++q) {
      const double d = fabs((double)a->data[q * n + i] - (double)b->data[q * n + i]) / a->geom.spacing[q];
      if (d != 0.0) ++*nbad;
      if (d > md) md = d;
    }
  return md;
}

static void check(void *user, int P, const char *mode) {
  (void)user;
  for (int k = 0; k < NCFG; ++k)
    for (int q = 0; q < nst[k]; ++q) {
      const gr_stage_result *a = &got.res[k][q], *b = &ref[k][q];
      int pbad = 0;
      double pmax = 0.0;
      for (int i = 0; i < 12; ++i) {
        const double d = fabs(a->params[i] - b->params[i]);
        pbad += d != 0.0;
        pmax = fmax(pmax, d / fmax(1.0, fabs(b->params[i])));
      }
      const double mrel = fabs(a->final_metric - b->final_metric) / fmax(1e-12, fabs(b->final_metric));
      int itbad = 0;
      for (int l = 0; l < GR_MAX_LEVELS; ++l) itbad += a->iterations_run[l] != b->iterations_run[l];
      GR_CHECK(pmax <= 1e-5 && mrel <= 1e-5 && itbad == 0, "%s P=%d cfg %d stage %d: params rel %g, metric rel %g, %d levels ran other iteration counts",
               mode, P, k, q, pmax, mrel, itbad);
      double fmaxd = 0.0, imaxd = 0.0;
      int64_t fbad = 0, ibad = 0;
      if (b->field) {
        GR_CHECK(a->field && a->inverse_field, "%s P=%d cfg %d: missing fields", mode, P, k);
        if (!a->field || !a->inverse_field) continue;
        fmaxd = field_diff_vox(a->field, b->field, &fbad);
        imaxd = field_diff_vox(a->inverse_field, b->inverse_field, &ibad);
        GR_CHECK(fmaxd <= 0.01 && imaxd <= 0.01, "%s P=%d cfg %d stage %d: field differs by %g voxel, inverse by %g",
                 mode, P, k, q, fmaxd, imaxd);
      }
      fprintf(stderr, "%s P=%d cfg %d stage %d: %s (params %d differ, max rel %.3g; metric %.10g rel diff %.3g; "
                      "field values differing %lld, max %.3g vox; inverse %lld, max %.3g vox)\n",
              mode, P, k, q, (pbad || fbad || ibad || mrel != 0.0) ? "within tolerance" : "bitwise equal", pbad,
              pmax, a->final_metric, mrel, (long long)fbad, fmaxd, (long long)ibad, imaxd);
      gr_stage_result_clear(&got.res[k][q]);
    }
}

int main(int argc, char **argv) {
  const int mpi = gp_mpi_mode(argc, argv);
  GR_CHECK_OK(gr_backend_cpu_create(1, &be));
  gp_make_reg_pair(be, &fixed, &moving, &fmask, &mmask);
  make_configs();
  gr_comm *one = NULL;
  GR_CHECK_OK(gr_comm_local_create(&one));
  int rank0 = 1;
  if (mpi && gr_comm_mpi_available()) {
#ifdef GIGAREG_HAVE_MPI
    int init = 0;
    MPI_Initialized(&init);
    if (!init) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &init);
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    rank0 = r == 0;
#endif
  }
  const double t0 = gr_wall_seconds();
  for (int k = 0; k < NCFG && rank0; ++k) {
    GR_CHECK_OK(run_cfg(one, k, ref[k]));
    for (int q = 0; q < nst[k]; ++q) {
      const gr_stage_result *r = &ref[k][q];
      double mx = 0.0;
      if (r->field)
        for (int64_t i = 0; i < 3 * gr_image_nvox(r->field); ++i) mx = fmax(mx, fabs(r->field->data[i]));
      fprintf(stderr, "reference cfg %d stage %d: iterations %d/%d/%d, metric %.6g, max |u| %.3f mm\n", k, q,
              r->iterations_run[0], r->iterations_run[1], r->iterations_run[2], r->final_metric, mx);
    }
  }
  if (rank0) fprintf(stderr, "single-process references: %.2f s\n", gr_wall_seconds() - t0);
  gr_comm_destroy(one);
  const int Ps[] = {2, 3, 4, 8};
  const double t1 = gr_wall_seconds();
  gp_run(mpi, shard_fn, check, NULL, Ps, 4);
  if (rank0) fprintf(stderr, "sharded runs: %.2f s\n", gr_wall_seconds() - t1);
  for (int k = 0; k < NCFG; ++k)
    for (int q = 0; q < nst[k]; ++q) gr_stage_result_clear(&ref[k][q]);
  gp_finish(mpi);
  gr_image_destroy(fixed);
  gr_image_destroy(moving);
  gr_image_destroy(fmask);
  gr_image_destroy(mmask);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
