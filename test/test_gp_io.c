/* Distributed I/O: every rank reads only its planes (offset reads for .nii,
 * .mha, .mhd; rank 0 reads and scatters .nii.gz and .nrrd), writes its planes
 * into one file (.mha, .nii at offsets; .nii.gz gathered to rank 0), and a
 * registration from slab inputs writes its field in slabs. Slab-written files
 * must be byte-identical to gr_image_write of the whole image, and slab reads
 * equal whole reads. Local groups P = 2, 3, 4, or one MPI run (--mpi). */
#include <sys/stat.h>
#include "gp_test.h"
#include "gigareg/registration.h"

static gr_backend *be;
static gr_image *scalar, *vec, *lab, *fixed, *moving;
static char dir[512];
static const char *const in_ext[] = {"nii", "mha", "mhd", "nii.gz", "nrrd"};
#define NIN 5
static const char *const out_ext[] = {"mha", "nii", "nii.gz"};
#define NOUT 3
static gr_image *ref_field;
static gr_stage_config cfg;

typedef struct io_out {
  int P;
  gr_image *gathered[3][NIN]; /* shard 0: slabs read, gathered */
  gr_status status;
} io_out;
static io_out O;

static gr_image **images(int k) { return k == 0 ? &scalar : k == 1 ? &vec : &lab; }

static void path_of(char *buf, size_t n, const char *what, int k, const char *ext, int P) {
  snprintf(buf, n, "%s/%s%d_P%d.%s", dir, what, k, P, ext);
}

static gr_status gather_image(gr_comm *c, const gr_image *slab, const gr_geometry *whole, gr_image **out) {
  gr_grid g;
  gr_status s = gr_grid_from_geometry(whole, &g);
  if (s == GR_OK) s = gr_image_create(whole, slab->ncomp, out);
  if (s == GR_OK) s = gr_gather_slabs(c, &g, slab->data, slab->ncomp, gr_image_nvox(slab), (*out)->data);
  return s;
}

static gr_status shard_fn(gr_comm *c, void *user) {
  (void)user;
  const int P = gr_comm_size(c), me = gr_comm_rank(c);
  gr_status s = GR_OK;
  char p[1024];
  /* reads */
  for (int k = 0; k < 3 && s == GR_OK; ++k)
    for (int e = 0; e < NIN && s == GR_OK; ++e) {
      path_of(p, sizeof p, "in", k, in_ext[e], 0);
      gr_image *slab = NULL, *all = NULL;
      gr_geometry whole;
      s = gr_read_image_slab(c, p, &slab, &whole, NULL);
      if (s == GR_OK) s = gather_image(c, slab, &whole, &all);
      if (s == GR_OK && me == 0) O.gathered[k][e] = all;
      else gr_image_destroy(all);
      gr_image_destroy(slab);
    }
  /* writes: this rank's planes of the whole images */
  for (int k = 0; k < 3 && s == GR_OK; ++k)
    for (int e = 0; e < NOUT && s == GR_OK; ++e) {
      const gr_image *img = *images(k);
      int64_t z0, z1;
      gr_decomp_slab(img->geom.size[2], P, me, &z0, &z1);
      gr_image *slab = NULL;
      gr_geometry sg;
      gr_geometry_slab(&img->geom, z0, z1, &sg);
      s = gr_image_create(&sg, img->ncomp, &slab);
      const int64_t nxy = img->geom.size[0] * img->geom.size[1], m = (z1 - z0) * nxy;
      for (int q = 0; q < img->ncomp && s == GR_OK; ++q)
        memcpy(slab->data + q * m, img->data + q * gr_image_nvox(img) + z0 * nxy, sizeof(float) * (size_t)m);
      path_of(p, sizeof p, "out", k, out_ext[e], P);
      if (s == GR_OK) s = gr_write_image_slabs(c, p, &img->geom, slab, img->src_type);
      gr_image_destroy(slab);
    }
  /* registration from slab inputs, field written in slabs */
  gr_slab_inputs in;
  memset(&in, 0, sizeof in);
  gr_image *fs = NULL, *ms = NULL;
  path_of(p, sizeof p, "fixed", 0, "nii", 0);
  if (s == GR_OK) s = gr_read_image_slab(c, p, &fs, &in.fixed_geom, NULL);
  path_of(p, sizeof p, "moving", 0, "mha", 0);
  if (s == GR_OK) s = gr_read_image_slab(c, p, &ms, &in.moving_geom, NULL);
  in.fixed = fs;
  in.moving = ms;
  gr_stage_result r;
  if (s == GR_OK) s = gr_register_slabs(be, c, &in, NULL, &cfg, 1, NULL, &r);
  path_of(p, sizeof p, "field", 0, "mha", P);
  if (s == GR_OK) s = gr_write_image_slabs(c, p, &in.fixed_geom, r.field, GR_PIXEL_F32);
  if (s == GR_OK) gr_stage_result_clear(&r);
  gr_image_destroy(fs);
  gr_image_destroy(ms);
  return s;
}

static int same_file(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb;
  while (same) {
    const int ca = fgetc(fa), cb = fgetc(fb);
    if (ca != cb) same = 0;
    if (ca == EOF || cb == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static void check(void *user, int P, const char *mode) {
  (void)user;
  char p[1024], q[1024];
  for (int k = 0; k < 3; ++k)
    for (int e = 0; e < NIN; ++e) {
      gr_image *ref = NULL, *got = O.gathered[k][e];
      path_of(p, sizeof p, "in", k, in_ext[e], 0);
      GR_CHECK_OK(gr_image_read(p, &ref));
      GR_CHECK(got && ref && gr_geometry_same(&got->geom, &ref->geom) && got->ncomp == ref->ncomp, "%s P=%d %s: geometry",
               mode, P, p);
      if (got && ref) {
        double md = 0;
        const int64_t bad = gp_compare(got->data, ref->data, gr_image_nvox(ref) * ref->ncomp, &md);
        GR_CHECK(bad == 0, "%s P=%d %s: %lld voxels differ from the whole read", mode, P, p, (long long)bad);
      }
      gr_image_destroy(ref);
      gr_image_destroy(got);
      O.gathered[k][e] = NULL;
    }
  for (int k = 0; k < 3; ++k)
    for (int e = 0; e < NOUT; ++e) {
      path_of(p, sizeof p, "out", k, out_ext[e], P);
      path_of(q, sizeof q, "whole", k, out_ext[e], 0);
      GR_CHECK(same_file(p, q), "%s P=%d: %s is not byte-identical to %s", mode, P, p, q);
      remove(p);
    }
  path_of(p, sizeof p, "field", 0, "mha", P);
  path_of(q, sizeof q, "field", 0, "mha", 0);
  GR_CHECK(same_file(p, q), "%s P=%d: slab-written field %s differs from the single-process field %s", mode, P, p, q);
  remove(p);
  fprintf(stderr, "%s P=%d: slab reads (.nii .mha .mhd offset reads; .nii.gz .nrrd scattered), slab writes "
                  "(.mha .nii at offsets, .nii.gz gathered) and the slab-input registration's field: %s\n",
          mode, P, gr_test_failures ? "FAILED" : "identical");
}

int main(int argc, char **argv) {
  const int mpi = gp_mpi_mode(argc, argv);
  GR_CHECK_OK(gr_backend_cpu_create(1, &be));
  snprintf(dir, sizeof dir, "%s/gp_io", GR_TEST_TMP_DIR);
  mkdir(dir, 0777);
  const double sp[3] = {1.1, 0.95, 1.3}, eu[3] = {0.1, -0.05, 0.2};
  gr_grid g;
  gr_geometry geom;
  gp_grid(21, 17, 23, sp, eu, &g, &geom);
  gr_image_create(&geom, 1, &scalar);
  gr_image_create(&geom, 3, &vec);
  gr_image_create(&geom, 1, &lab);
  gp_fill(&g, scalar->data, 0.7);
  gp_field(&g, vec->data, 3.0);
  for (int64_t v = 0; v < gp_nvox(&g); ++v) lab->data[v] = (float)((v * 7) % 300 - 100);
  scalar->src_type = vec->src_type = GR_PIXEL_F32;
  lab->src_type = GR_PIXEL_I16;
  gr_image_create(&geom, 1, &fixed);
  gr_image_create(&geom, 1, &moving);
  gp_fill(&g, fixed->data, 0.2);
  float *w = malloc(sizeof(float) * 3 * gp_nvox(&g));
  gp_field(&g, w, 2.5);
  be->ops->resample(be, &g, moving->data, &g, fixed->data, 1, NULL, w, GR_INTERP_LINEAR, GR_BOUNDARY_ZERO);
  free(w);
  fixed->src_type = moving->src_type = GR_PIXEL_F32;
  gr_stage_config_defaults(GR_STAGE_GREEDY, &cfg);
  cfg.metric.kind = GR_METRIC_LNCC;
  cfg.levels = 2;
  cfg.shrink[0] = 2, cfg.shrink[1] = 1;
  cfg.sigma_vox[0] = 1.0, cfg.sigma_vox[1] = 0.5;
  cfg.iterations[0] = 6, cfg.iterations[1] = 3;

  int rank0 = 1;
#ifdef GIGAREG_HAVE_MPI
  if (mpi) {
    int init = 0, r = 0;
    MPI_Initialized(&init);
    if (!init) MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &init);
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    rank0 = r == 0;
  }
#endif
  char p[1024];
  if (rank0) { /* inputs and single-process references, written once */
    for (int k = 0; k < 3; ++k) {
      for (int e = 0; e < NIN; ++e) {
        path_of(p, sizeof p, "in", k, in_ext[e], 0);
        GR_CHECK_OK(gr_image_write(p, *images(k), GR_PIXEL_UNKNOWN));
      }
      for (int e = 0; e < NOUT; ++e) {
        path_of(p, sizeof p, "whole", k, out_ext[e], 0);
        GR_CHECK_OK(gr_image_write(p, *images(k), GR_PIXEL_UNKNOWN));
      }
    }
    path_of(p, sizeof p, "fixed", 0, "nii", 0);
    GR_CHECK_OK(gr_image_write(p, fixed, GR_PIXEL_F32));
    path_of(p, sizeof p, "moving", 0, "mha", 0);
    GR_CHECK_OK(gr_image_write(p, moving, GR_PIXEL_F32));
    gr_comm *one = NULL;
    GR_CHECK_OK(gr_comm_local_create(&one));
    /* the reference registers what the files hold (NIfTI stores its geometry in float) */
    gr_image *fr = NULL, *mr = NULL;
    path_of(p, sizeof p, "fixed", 0, "nii", 0);
    GR_CHECK_OK(gr_image_read(p, &fr));
    path_of(p, sizeof p, "moving", 0, "mha", 0);
    GR_CHECK_OK(gr_image_read(p, &mr));
    gr_stage_result r;
    GR_CHECK_OK(gr_register(be, one, fr, mr, NULL, NULL, NULL, &cfg, 1, NULL, &r));
    gr_image_destroy(fr);
    gr_image_destroy(mr);
    path_of(p, sizeof p, "field", 0, "mha", 0);
    GR_CHECK_OK(gr_image_write(p, r.field, GR_PIXEL_F32));
    gr_stage_result_clear(&r);
    gr_comm_destroy(one);
  }
#ifdef GIGAREG_HAVE_MPI
  if (mpi) MPI_Barrier(MPI_COMM_WORLD); /* the inputs exist before any rank reads */
#endif
  (void)ref_field;
  const int Ps[] = {2, 3, 4};
  gp_run(mpi, shard_fn, check, NULL, Ps, 3);
  gp_finish(mpi);
  gr_image_destroy(scalar);
  gr_image_destroy(vec);
  gr_image_destroy(lab);
  gr_image_destroy(fixed);
  gr_image_destroy(moving);
  gr_backend_destroy(be);
  GR_TEST_RETURN();
}
