/* Shared pieces of the Grid Parallel tests: deterministic oblique scenes with
 * large displacements, and a runner that executes a per-shard function either
 * on local-group threads (P = 2, 3, 4, ...) or, with "--mpi" under mpirun, once
 * per MPI rank. Checks run on the main thread (local group) or rank 0 (MPI),
 * after the shards finished, so GR_CHECK never runs concurrently. */
#ifndef GP_TEST_H
#define GP_TEST_H
#include "gr_test.h"
#include "gigareg/grid_parallel.h"
#include "parallel/gp.h"
#ifdef GIGAREG_HAVE_MPI
#include "gigareg/comm_mpi.h"
#endif

static uint64_t gp_rng __attribute__((unused)) = 0x9e3779b97f4a7c15ull;
static inline double gp_urand(void) {
  gp_rng ^= gp_rng >> 12;
  gp_rng ^= gp_rng << 25;
  gp_rng ^= gp_rng >> 27;
  return (double)((gp_rng * 0x2545f4914f6cdd1dull) >> 11) * (1.0 / 9007199254740992.0);
}

static inline int64_t gp_nvox(const gr_grid *g) { return g->n[0] * g->n[1] * g->n[2]; }

/* Oblique, anisotropic grid centred near the origin. */
static inline void gp_grid(int64_t nx, int64_t ny, int64_t nz, const double sp[3], const double eu[3], gr_grid *g,
                    gr_geometry *geom_out) {
  gr_geometry geom;
  gr_geometry_identity(&geom, nx, ny, nz);
  const double p[6] = {eu[0], eu[1], eu[2], 0, 0, 0}, zero[3] = {0, 0, 0};
  gr_affine R;
  gr_euler_to_affine(p, zero, &R);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) geom.direction[r * 3 + c] = R.m[r * 4 + c];
  for (int a = 0; a < 3; ++a) geom.spacing[a] = sp[a];
  for (int r = 0; r < 3; ++r) {
    double s = 0.0;
    for (int a = 0; a < 3; ++a) s += geom.direction[r * 3 + a] * sp[a] * 0.5 * (double)(geom.size[a] - 1);
    geom.origin[r] = -s + 0.37 * (r + 1);
  }
  gr_grid_from_geometry(&geom, g);
  if (geom_out) *geom_out = geom;
}

/* Smooth texture in physical space (values in ~[0, 1]). */
static inline double gp_texture(const double p[3], double phase) {
  return 0.5 + 0.2 * sin(0.35 * p[0] + phase) * cos(0.27 * p[1] - 0.5 * phase) +
         0.15 * sin(0.22 * p[2] + 0.3 * p[0]) + 0.1 * exp(-(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) / 60.0);
}

static inline void gp_fill(const gr_grid *g, float *img, double phase) {
  const int64_t nx = g->n[0], ny = g->n[1], nz = g->n[2];
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        double p[3];
        for (int r = 0; r < 3; ++r) p[r] = g->i2p[r * 4] * i + g->i2p[r * 4 + 1] * j + g->i2p[r * 4 + 2] * k + g->i2p[r * 4 + 3];
        img[(k * ny + j) * nx + i] = (float)gp_texture(p, phase);
      }
}

/* Displacement (mm) of amplitude amp_mm, smooth, with a z-shear that moves
 * points across several slabs. */
static inline void gp_field(const gr_grid *g, float *u, double amp_mm) {
  const int64_t nx = g->n[0], ny = g->n[1], nz = g->n[2], n = nx * ny * nz;
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const double x = (double)i / nx, y = (double)j / ny, z = (double)k / nz;
        const int64_t v = (k * ny + j) * nx + i;
        u[v] = (float)(amp_mm * 0.4 * sin(6.0 * y + 1.0) * cos(3.0 * z));
        u[n + v] = (float)(amp_mm * 0.5 * sin(5.0 * x + 2.0 * z));
        u[2 * n + v] = (float)(amp_mm * (0.8 * sin(4.0 * x + 3.0 * y) + 0.3 * cos(7.0 * z)));
      }
}

/* Float arrays equal as numbers (== : -0 and +0 agree); returns the count of mismatches
 * and the largest absolute difference. */
static inline int64_t gp_compare(const float *a, const float *b, int64_t n, double *maxdiff) {
  int64_t bad = 0;
  double md = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      ++bad;
      const double d = fabs((double)a[i] - (double)b[i]);
      if (d > md || d != d) md = d;
    }
  }
  if (maxdiff) *maxdiff = md;
  return bad;
}

/* ---- runner --------------------------------------------------------------------- */
typedef gr_status (*gp_shard_fn)(gr_comm *c, void *user);
typedef void (*gp_check_fn)(void *user, int P, const char *mode);

static inline int gp_mpi_mode(int argc, char **argv) {
  for (int i = 1; i < argc; ++i)
    if (!strcmp(argv[i], "--mpi")) return 1;
  return 0;
}

/* Local groups of each size in Ps, or (mpi) one run on MPI_COMM_WORLD. Returns
 * 0 on success (also on ranks > 0 under MPI, whose checks are skipped). */
static inline int gp_run(int mpi, gp_shard_fn fn, gp_check_fn check, void *user, const int *Ps, int nP) {
  if (mpi) {
#ifdef GIGAREG_HAVE_MPI
    gr_comm *c = NULL;
    GR_CHECK_OK(gr_comm_mpi_world(NULL, NULL, &c));
    if (!c) return 1;
    const int rank = gr_comm_rank(c), P = gr_comm_size(c);
    const gr_status s = fn(c, user);
    GR_CHECK(s == GR_OK, "rank %d: %s: %s", rank, gr_strerror(s), gr_last_error());
    if (rank == 0 && s == GR_OK) check(user, P, "mpi");
    gr_comm_destroy(c);
    return 0;
#else
    GR_SKIP("this build has no MPI");
#endif
  }
  for (int k = 0; k < nP; ++k) {
    const gr_status s = gr_comm_local_group_run(Ps[k], fn, user);
    GR_CHECK(s == GR_OK, "P=%d: %s: %s", Ps[k], gr_strerror(s), gr_last_error());
    if (s == GR_OK) check(user, Ps[k], "local-group");
  }
  return 0;
}

static inline void gp_finish(int mpi) {
  if (mpi) gr_comm_mpi_finalize();
}
/* The small oblique scene of the windowed-kernel tests (test_gp_kernels, test_gp_cuda):
 * fixed/moving grids with different spacings and directions, masks, a several-voxel
 * displacement and an Euler transform. */
typedef struct gp_scene {
  gr_grid fg, mg;
  float *fixed, *moving, *fmask, *mmask, *disp;
  gr_affine T;
} gp_scene;

static inline void gp_scene_init(gp_scene *s) {
  const double fsp[3] = {1.1, 0.9, 1.3}, feu[3] = {0.05, -0.08, 0.12};
  const double msp[3] = {1.0, 1.2, 1.05}, meu[3] = {-0.1, 0.04, -0.06};
  gp_grid(23, 19, 17, fsp, feu, &s->fg, NULL);
  gp_grid(21, 18, 20, msp, meu, &s->mg, NULL);
  const int64_t nf = gp_nvox(&s->fg), nm = gp_nvox(&s->mg);
  s->fixed = malloc(sizeof(float) * nf);
  s->fmask = malloc(sizeof(float) * nf);
  s->disp = malloc(sizeof(float) * nf * 3);
  s->moving = malloc(sizeof(float) * nm);
  s->mmask = malloc(sizeof(float) * nm);
  gp_fill(&s->fg, s->fixed, 0.3);
  gp_fill(&s->mg, s->moving, 0.9);
  gp_field(&s->fg, s->disp, 4.0); /* several voxels: corners spread over several slabs */
  for (int64_t v = 0; v < nf; ++v) s->fmask[v] = (v % 7) != 3 ? 1.0f : 0.0f;
  for (int64_t v = 0; v < nm; ++v) s->mmask[v] = (v % 5) != 1 ? 1.0f : 0.0f;
  const double p[6] = {0.06, -0.04, 0.09, 1.2, -0.8, 2.1}, c[3] = {0.5, -0.3, 0.2};
  gr_euler_to_affine(p, c, &s->T);
}

/* Cuts of nz planes into uneven slabs (one-plane slabs included): slabs
 * [cuts[i], cuts[i+1]) for i < n - 1, n returned. */
static inline int gp_make_cuts(int64_t nz, int64_t *cuts) {
  int n = 0;
  cuts[n++] = 0;
  const int64_t steps[] = {3, 1, 7, 2, 5, 1, 4};
  for (int k = 0; cuts[n - 1] < nz; k = (k + 1) % 7) {
    const int64_t next = cuts[n - 1] + steps[k];
    cuts[n++] = next < nz ? next : nz;
  }
  return n;
}

/* The ring sampler by hand: sample_slab summed over the cuts of the input
 * planes, in reverse order (the sum must not depend on which slab comes
 * first), on backend `be`. `in` is the whole input (ncomp planes of in_nvox)
 * in that backend's memory; a->acc (and acc_grad) too, zeroed here. */
static inline void gp_ring_by_hand(gr_backend *be, gr_slab_sample *a, const float *in, int64_t in_nvox) {
  int64_t cuts[64];
  const int n = gp_make_cuts(a->in_grid->n[2], cuts);
  const int64_t nxy = a->in_grid->n[0] * a->in_grid->n[1];
  const int64_t npts = a->out_grid->n[0] * a->out_grid->n[1] * a->out_nz;
  GR_CHECK_OK(be->ops->fill(be, (float *)a->acc, 0.0f, 2 * npts * a->ncomp)); /* doubles: 2 floats of +0 each */
  if (a->acc_grad) GR_CHECK_OK(be->ops->fill(be, (float *)a->acc_grad, 0.0f, 2 * npts * 3));
  for (int i = n - 2; i >= 0; --i) {
    a->in_z0 = cuts[i];
    a->in_nz = cuts[i + 1] - cuts[i];
    a->in = in + cuts[i] * nxy;
    a->in_comp_stride = in_nvox;
    GR_CHECK_OK(be->ops->sample_slab(be, a));
  }
}

static inline void gp_scene_free(gp_scene *s) {
  free(s->fixed);
  free(s->fmask);
  free(s->disp);
  free(s->moving);
  free(s->mmask);
}


/* The registration pair of test_gp_register and test_gp_cuda: an oblique grid,
 * a textured head-like blob (zero outside, so the centre of mass means something),
 * masks, and a moving image related by an Euler transform and a 3.5 mm smooth
 * deformation (points cross slab borders by several planes), on another intensity
 * scale (MI). `be` is a CPU backend (host buffers). */
static inline void gp_make_reg_pair(gr_backend *be, gr_image **fixed, gr_image **moving, gr_image **fmask,
                                    gr_image **mmask) {
  const double sp[3] = {1.2, 1.0, 1.1}, eu[3] = {0.04, -0.03, 0.06};
  gr_grid g;
  gr_geometry geom;
  gp_grid(36, 32, 30, sp, eu, &g, &geom);
  gr_image_create(&geom, 1, fixed);
  gr_image_create(&geom, 1, moving);
  gr_image_create(&geom, 1, fmask);
  gr_image_create(&geom, 1, mmask);
  const int64_t n = gp_nvox(&g);
  /* a head-like blob with texture, zero outside (so centre of mass is meaningful) */
  for (int64_t k = 0; k < g.n[2]; ++k)
    for (int64_t j = 0; j < g.n[1]; ++j)
      for (int64_t i = 0; i < g.n[0]; ++i) {
        double p[3];
        for (int r = 0; r < 3; ++r) p[r] = g.i2p[r * 4] * i + g.i2p[r * 4 + 1] * j + g.i2p[r * 4 + 2] * k + g.i2p[r * 4 + 3];
        const double r2 = p[0] * p[0] / 250.0 + p[1] * p[1] / 180.0 + p[2] * p[2] / 160.0;
        const int64_t v = (k * g.n[1] + j) * g.n[0] + i;
        (*fixed)->data[v] = (float)(r2 < 1.0 ? 100.0 * (gp_texture(p, 0.4) + 0.3 * (1.0 - r2)) : 2.0);
        (*fmask)->data[v] = r2 < 1.2 ? 1.0f : 0.0f;
        (*mmask)->data[v] = r2 < 1.3 ? 1.0f : 0.0f;
      }
  /* moving(y) = fixed(x) with y = A(x + w(x)) + t approximately: sample fixed at y - w, then shift */
  float *w = malloc(sizeof(float) * n * 3);
  gp_field(&g, w, 3.5);
  gr_affine T;
  const double prm[6] = {0.03, -0.02, 0.05, 1.5, -1.0, 2.0}, c[3] = {0, 0, 0};
  gr_euler_to_affine(prm, c, &T);
  be->ops->resample(be, &g, (*moving)->data, &g, (*fixed)->data, 1, &T, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  for (int64_t v = 0; v < n; ++v) (*moving)->data[v] = 0.8f * (*moving)->data[v] + 5.0f; /* other intensity scale (MI) */
  free(w);
}


/* Stage chains of the sharded-registration tests. */
static inline void gp_cfg_rigid_greedy(gr_stage_config c[2]) { /* rigid MI (COM init) -> greedy LNCC, 3 levels */
  gr_stage_config_defaults(GR_STAGE_RIGID, &c[0]);
  c[0].init = GR_INIT_CENTER_OF_MASS;
  c[0].metric.kind = GR_METRIC_MI;
  c[0].levels = 2;
  c[0].shrink[0] = 2, c[0].shrink[1] = 1;
  c[0].sigma_vox[0] = 1.0, c[0].sigma_vox[1] = 0.5;
  c[0].iterations[0] = 12, c[0].iterations[1] = 6;
  gr_stage_config_defaults(GR_STAGE_GREEDY, &c[1]);
  c[1].metric.kind = GR_METRIC_LNCC;
  c[1].levels = 3;
  const double sh[3] = {4, 2, 1};
  const int it[3] = {12, 8, 4};
  for (int l = 0; l < 3; ++l) {
    c[1].shrink[l] = sh[l];
    c[1].sigma_vox[l] = 0.5 * sh[l];
    c[1].iterations[l] = it[l];
  }
}

static inline void gp_cfg_greedy_mi(gr_stage_config *c) { /* greedy MI, 2 levels, 0.6-voxel steps */
  gr_stage_config_defaults(GR_STAGE_GREEDY, c);
  c->metric.kind = GR_METRIC_MI;
  c->metric.mi_bins = 24;
  c->levels = 2;
  c->shrink[0] = 2, c->shrink[1] = 1;
  c->sigma_vox[0] = 1.0, c->sigma_vox[1] = 0.0;
  c->iterations[0] = 10, c->iterations[1] = 5;
  c->learning_rate[0] = c->learning_rate[1] = 0.6;
}

static inline void gp_cfg_affine_syn(gr_stage_config c[2]) { /* affine LNCC -> SyN LNCC */
  gr_stage_config_defaults(GR_STAGE_AFFINE, &c[0]);
  c[0].metric.kind = GR_METRIC_LNCC;
  c[0].levels = 2;
  c[0].shrink[0] = 2, c[0].shrink[1] = 1;
  c[0].sigma_vox[0] = 1.0, c[0].sigma_vox[1] = 0.5;
  c[0].iterations[0] = 10, c[0].iterations[1] = 5;
  gr_stage_config_defaults(GR_STAGE_SYN, &c[1]);
  c[1].metric.kind = GR_METRIC_LNCC;
  c[1].levels = 2;
  c[1].shrink[0] = 2, c[1].shrink[1] = 1;
  c[1].sigma_vox[0] = 1.0, c[1].sigma_vox[1] = 0.5;
  c[1].iterations[0] = 8, c[1].iterations[1] = 4;
}

#endif
