/* Grid Parallel with slab inputs and failures:
 *  - gr_register_slabs (each rank passes only its slabs, gets its field slab
 *    back) stitched together equals the single-process registration, also
 *    with one shard (the sharded code path at N = 1);
 *  - a NaN in one rank's slab makes every rank fail with that rank's message
 *    (agreed error, no rank left waiting);
 *  - (local group only) an allocation failure on one shard in the middle of a
 *    stage stops every shard: no deadlock, the root cause is reported.
 *    Under MPI a rank-local failure ends in MPI_Abort, so that case is not run. */
#include "gp_test.h"
#include "gigareg/registration.h"

static gr_backend *be;
static gr_image *fixed, *moving;
static gr_stage_config cfg;
static gr_stage_result ref;
static const gr_backend_ops *cpu_ops;
static gr_backend_ops failing_ops;

#define MAXP 8
typedef struct job {
  int nan_rank;       /* rank whose fixed slab gets a NaN (-1: none) */
  int fail_rank;      /* rank whose allocations fail after `fail_after` (-1: none, -2: the last rank) */
  int fail_after;
  gr_status status[MAXP];
  char msg[MAXP][256];
  gr_image *field;    /* stitched field (whole grid) */
  gr_image *inverse;
} job;

/* Allocation that fails once the countdown in be->impl runs out (the CPU backend has no impl state). */
static void *failing_alloc(gr_backend *b, size_t bytes) {
  int *left = b->impl;
  if (left && (*left)-- <= 0) {
    gr_error(GR_ERR_NOMEM, "injected allocation failure (%zu bytes)", bytes);
    return NULL;
  }
  return cpu_ops->alloc(b, bytes);
}

static gr_image *slab_copy(const gr_image *img, int P, int rank, int64_t *z0out) {
  int64_t z0, z1;
  gr_decomp_slab(img->geom.size[2], P, rank, &z0, &z1);
  gr_geometry g;
  gr_geometry_slab(&img->geom, z0, z1, &g);
  gr_image *s = NULL;
  gr_image_create(&g, 1, &s);
  const int64_t nxy = img->geom.size[0] * img->geom.size[1];
  memcpy(s->data, img->data + z0 * nxy, sizeof(float) * (size_t)((z1 - z0) * nxy));
  *z0out = z0;
  return s;
}

static gr_status shard_fn(gr_comm *c, void *user) {
  job *j = user;
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  int64_t fz0, mz0;
  gr_slab_inputs in;
  memset(&in, 0, sizeof in);
  in.fixed_geom = fixed->geom;
  in.moving_geom = moving->geom;
  gr_image *fs = slab_copy(fixed, P, me, &fz0), *ms = slab_copy(moving, P, me, &mz0);
  if (me == j->nan_rank) fs->data[5] = NAN;
  in.fixed = fs;
  in.moving = ms;
  gr_backend *mybe = be, fb;
  int left = j->fail_after;
  if (me == j->fail_rank || (j->fail_rank == -2 && me == P - 1)) {
    fb = *be;
    fb.ops = &failing_ops;
    fb.impl = &left;
    mybe = &fb;
  }
  gr_stage_result r;
  const gr_status s = gr_register_slabs(mybe, c, &in, NULL, &cfg, 1, NULL, &r);
  j->status[me] = s;
  snprintf(j->msg[me], sizeof j->msg[me], "%s", s == GR_OK ? "" : gr_last_error());
  if (s == GR_OK && j->field) {
    /* stitch this rank's slab into the whole field (disjoint planes: no race) */
    const int64_t n = gr_image_nvox(fixed), nxy = fixed->geom.size[0] * fixed->geom.size[1];
    const int64_t m = gr_image_nvox(r.field);
    int ok = r.field->geom.size[2] * nxy == m && fabs(r.field->geom.origin[2] - fs->geom.origin[2]) < 1e-9;
    for (int q = 0; q < 3 && ok; ++q) {
      memcpy(j->field->data + q * n + fz0 * nxy, r.field->data + q * m, sizeof(float) * (size_t)m);
      memcpy(j->inverse->data + q * n + fz0 * nxy, r.inverse_field->data + q * m, sizeof(float) * (size_t)m);
    }
    if (!ok) j->status[me] = GR_ERR_MISMATCH;
  }
  if (s == GR_OK) gr_stage_result_clear(&r);
  gr_image_destroy(fs);
  gr_image_destroy(ms);
  /* the group runner must not abort: the statuses are what this test checks */
  return GR_OK;
}

static job J;
static int scenario;

static void check(void *user, int P, const char *mode) {
  (void)user;
  if (scenario == 0) {
    for (int r = 0; r < P && mode[0] == 'l'; ++r)
      GR_CHECK(J.status[r] == GR_OK, "%s P=%d rank %d: %s", mode, P, r, J.msg[r]);
    if (mode[0] != 'l') return; /* MPI: rank 0 holds only its own slab */
    int64_t bad = 0;
    double md = 0, mi = 0;
    bad += gp_compare(J.field->data, ref.field->data, 3 * gr_image_nvox(fixed), &md);
    bad += gp_compare(J.inverse->data, ref.inverse_field->data, 3 * gr_image_nvox(fixed), &mi);
    GR_CHECK(bad == 0, "%s P=%d: stitched slab fields differ in %lld values (max %g / %g mm)", mode, P, (long long)bad, md, mi);
    fprintf(stderr, "%s P=%d: gr_register_slabs stitched fields %s\n", mode, P, bad ? "DIFFER" : "bitwise equal");
  } else if (scenario == 1) {
    const int lim = mode[0] == 'l' ? P : 1;
    for (int r = 0; r < lim; ++r) {
      GR_CHECK(J.status[r] == GR_ERR_NONFINITE && strstr(J.msg[r], "fixed image") != NULL,
               "%s P=%d rank %d: expected the NaN error, got %s: %s", mode, P, r, gr_strerror(J.status[r]), J.msg[r]);
      if (r != 1) GR_CHECK(strstr(J.msg[r], "rank 1") != NULL, "rank %d's message does not name rank 1: %s", r, J.msg[r]);
    }
    fprintf(stderr, "%s P=%d: NaN on rank 1 -> every rank: %s\n", mode, P, J.msg[0]);
  } else {
    int nomem = 0, comm = 0;
    for (int r = 0; r < P; ++r) {
      nomem += J.status[r] == GR_ERR_NOMEM;
      comm += J.status[r] == GR_ERR_COMM;
    }
    GR_CHECK(nomem == 1 && comm == P - 1, "P=%d: %d NOMEM, %d COMM (expected 1 and %d)", P, nomem, comm, P - 1);
    fprintf(stderr, "%s P=%d: allocation failure on rank %d -> rank 0 says: %s\n", mode, P, P - 1, J.msg[0]);
  }
}

int main(int argc, char **argv) {
  const int mpi = gp_mpi_mode(argc, argv);
  GR_CHECK_OK(gr_backend_cpu_create(1, &be));
  cpu_ops = be->ops;
  failing_ops = *be->ops;
  failing_ops.alloc = failing_alloc;
  const double sp[3] = {1.0, 1.1, 1.2}, eu[3] = {0.02, 0.05, -0.04};
  gr_grid g;
  gr_geometry geom;
  gp_grid(30, 28, 26, sp, eu, &g, &geom);
  gr_image_create(&geom, 1, &fixed);
  gr_image_create(&geom, 1, &moving);
  gp_fill(&g, fixed->data, 0.2);
  float *w = malloc(sizeof(float) * 3 * gp_nvox(&g));
  gp_field(&g, w, 3.0);
  be->ops->resample(be, &g, moving->data, &g, fixed->data, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  free(w);
  gr_stage_config_defaults(GR_STAGE_GREEDY, &cfg);
  cfg.metric.kind = GR_METRIC_LNCC;
  cfg.levels = 2;
  cfg.shrink[0] = 2, cfg.shrink[1] = 1;
  cfg.sigma_vox[0] = 1.0, cfg.sigma_vox[1] = 0.5;
  cfg.iterations[0] = 8, cfg.iterations[1] = 4;
  gr_comm *one = NULL;
  GR_CHECK_OK(gr_comm_local_create(&one));
  GR_CHECK_OK(gr_register(be, one, fixed, moving, NULL, NULL, NULL, &cfg, 1, NULL, &ref));
  gr_comm_destroy(one);
  gr_image_create(&geom, 3, &J.field);
  gr_image_create(&geom, 3, &J.inverse);

  const int Ps[] = {2, 3, 4}, Ps1[] = {1, 2, 3, 4}; /* 1: the sharded code path with one shard */
  J.nan_rank = J.fail_rank = -1;
  scenario = 0;
  gp_run(mpi, shard_fn, check, &J, Ps1, 4);
  gr_image_destroy(J.field);
  gr_image_destroy(J.inverse);
  J.field = J.inverse = NULL;
  J.nan_rank = 1;
  scenario = 1;
  gp_run(mpi, shard_fn, check, &J, Ps, 3);
  if (!mpi) {
    J.nan_rank = -1;
    J.fail_rank = -2;
    J.fail_after = 40; /* well inside the first level's iterations */
    scenario = 2;
    gp_run(mpi, shard_fn, check, &J, Ps, 3);
  }
  gr_stage_result_clear(&ref);
  gp_finish(mpi);
  gr_image_destroy(fixed);
  gr_image_destroy(moving);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
