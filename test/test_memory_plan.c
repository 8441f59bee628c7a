#define _POSIX_C_SOURCE 200809L /* setenv */
/* Memory planner vs what the CPU backend measures: for each stage kind (and
 * masks, metrics, a deformable stage ending on a coarse level), the planner's
 * device peak, computed from geometry and stage configuration only, must be
 * within 10% of be->bytes_peak after a real gr_register; sharded runs (local
 * shards, one backend each) against the rank model within 15%. Plus: the rank
 * model shrinks per-rank memory, the budget override parses, and the check's error
 * quotes the planner's numbers. Small synthetic images: this is a unit test. */
#include <stdlib.h>
#include "gr_test.h"
#include "gigareg/grid_parallel.h"
#include "gigareg/memory_plan.h"

/* Smooth blobs on an oblique, anisotropic grid; `shift` moves them (mm). */
static gr_image *make_image(const int64_t n[3], const double sp[3], double shift) {
  gr_geometry g;
  gr_geometry_identity(&g, n[0], n[1], n[2]);
  const double a = 0.1;
  const double dir[9] = {cos(a), -sin(a), 0, sin(a), cos(a), 0, 0, 0, 1};
  memcpy(g.direction, dir, sizeof dir);
  for (int k = 0; k < 3; ++k) {
    g.spacing[k] = sp[k];
    g.origin[k] = -0.5 * (double)n[k] * sp[k];
  }
  gr_image *img = NULL;
  if (gr_image_create(&g, 1, &img) != GR_OK) return NULL;
  for (int64_t z = 0; z < n[2]; ++z)
    for (int64_t y = 0; y < n[1]; ++y)
      for (int64_t x = 0; x < n[0]; ++x) {
        const double idx[3] = {(double)x, (double)y, (double)z};
        double p[3];
        gr_geometry_index_to_phys(&g, idx, p);
        p[0] -= shift;
        const double r1 = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) / 400.0;
        const double r2 = ((p[0] - 8) * (p[0] - 8) + (p[1] + 5) * (p[1] + 5) + p[2] * p[2]) / 60.0;
        img->data[(z * n[1] + y) * n[0] + x] = (float)(100.0 * exp(-r1) + 60.0 * exp(-r2));
      }
  return img;
}

static gr_image *make_mask(const gr_image *img) {
  gr_image *m = NULL;
  if (gr_image_create(&img->geom, 1, &m) != GR_OK) return NULL;
  const int64_t n = gr_image_nvox(img);
  for (int64_t i = 0; i < n; ++i) m->data[i] = img->data[i] > 10.0f ? 1.0f : 0.0f;
  return m;
}

static void set_levels(gr_stage_config *c, int levels, const double *shrink, int iterations) {
  c->levels = levels;
  for (int l = 0; l < levels; ++l) {
    c->shrink[l] = shrink[l];
    c->sigma_vox[l] = 0.5 * shrink[l];
    c->iterations[l] = iterations;
  }
}

/* One registration measured against its plan. */
static void check_case(const char *name, const gr_image *f, const gr_image *m, const gr_image *fm, const gr_image *mm,
                       const gr_stage_config *stages, int nstages) {
  const int threads = 2;
  gr_backend *be = NULL;
  gr_comm *comm = NULL;
  GR_CHECK_OK(gr_backend_cpu_create(threads, &be));
  GR_CHECK_OK(gr_comm_local_create(&comm));
  if (!be || !comm) return;
  gr_stage_result res[4];
  memset(res, 0, sizeof res);
  gr_reg_options opt;
  memset(&opt, 0, sizeof opt);
  GR_CHECK_OK(gr_register(be, comm, f, m, fm, mm, NULL, stages, nstages, &opt, res));
  const size_t measured = be->bytes_peak;
  GR_CHECK(be->bytes_current == 0, "%s: %zu bytes still allocated after gr_register", name, be->bytes_current);

  gr_memory_plan *plan = malloc(sizeof *plan);
  gr_memory_plan_options po;
  gr_memory_plan_options_defaults(&po);
  po.threads = threads;
  po.fixed_mask = fm != NULL;
  po.moving_mask = mm != NULL;
  GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, stages, nstages, &po, plan));
  const double rel = fabs((double)plan->device_peak - (double)measured) / (double)measured;
  const gr_memory_phase *ph = &plan->phase[plan->device_peak_phase];
  printf("%-28s measured peak %10zu  planned %10zu  (%+.2f%%)  at stage %d: %s\n", name, measured, plan->device_peak,
         100.0 * ((double)plan->device_peak - (double)measured) / (double)measured, ph->stage, ph->label);
  GR_CHECK(rel <= 0.10, "%s: planned %zu vs measured %zu bytes (%.1f%% off)", name, plan->device_peak, measured,
           100.0 * rel);
  /* The breakdown adds up to the peak. */
  size_t sum = 0;
  for (int k = 0; k < GR_MEM_NKINDS; ++k) sum += ph->kind[k];
  GR_CHECK(sum == ph->device_peak, "%s: breakdown %zu != peak %zu", name, sum, ph->device_peak);
  /* Host + backend together is at least the backend alone plus the input images. */
  GR_CHECK(plan->total_peak >= plan->device_peak + (size_t)(gr_image_nvox(f) + gr_image_nvox(m)) * 4,
           "%s: total peak %zu too small", name, plan->total_peak);
  free(plan);
  for (int k = 0; k < nstages; ++k) gr_stage_result_clear(&res[k]);
  gr_comm_destroy(comm);
  gr_backend_destroy(be);
}

/* Grid Parallel: P shards as threads, one CPU backend each (a rank's own
 * memory), against the plan with ranks = P: the largest rank's peak within
 * 15% (the rank model: slabs with halos, the ring's two in-flight moving
 * slabs, the distributed metric's double accumulators, the fused sharded
 * update; it does not replay the pyramid's ring resampling step by step). */
typedef struct shard_job {
  const gr_image *f, *m;
  const gr_stage_config *stages;
  int nstages;
  size_t peak[8];
} shard_job;

static gr_status shard_fn(gr_comm *c, void *user) {
  shard_job *j = user;
  gr_backend *be = NULL;
  gr_status s = gr_backend_cpu_create(1, &be);
  if (s != GR_OK) return s;
  gr_stage_result res[4];
  memset(res, 0, sizeof res);
  gr_reg_options opt;
  memset(&opt, 0, sizeof opt);
  s = gr_register(be, c, j->f, j->m, NULL, NULL, NULL, j->stages, j->nstages, &opt, res);
  j->peak[gr_comm_rank(c)] = be->bytes_peak;
  for (int k = 0; k < j->nstages; ++k) gr_stage_result_clear(&res[k]);
  gr_backend_destroy(be);
  return s;
}

static void check_sharded(const char *name, const gr_image *f, const gr_image *m, const gr_stage_config *stages,
                          int nstages, int P) {
  shard_job j;
  memset(&j, 0, sizeof j);
  j.f = f;
  j.m = m;
  j.stages = stages;
  j.nstages = nstages;
  GR_CHECK_OK(gr_comm_local_group_run(P, shard_fn, &j));
  size_t measured = 0;
  for (int r = 0; r < P; ++r) measured = j.peak[r] > measured ? j.peak[r] : measured;
  gr_memory_plan *plan = malloc(sizeof *plan);
  gr_memory_plan_options po;
  gr_memory_plan_options_defaults(&po);
  po.threads = 1;
  po.ranks = P;
  GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, stages, nstages, &po, plan));
  const gr_memory_phase *ph = &plan->phase[plan->device_peak_phase];
  printf("%-28s %d ranks: largest rank's peak %10zu  planned %10zu  (%+.2f%%)  at stage %d: %s\n", name, P, measured,
         plan->device_peak, 100.0 * ((double)plan->device_peak - (double)measured) / (double)measured, ph->stage,
         ph->label);
  GR_CHECK(fabs((double)plan->device_peak - (double)measured) <= 0.15 * (double)measured,
           "%s, %d ranks: planned %zu vs measured %zu bytes", name, P, plan->device_peak, measured);
  free(plan);
}

/* Headers only: a gigavoxel-class geometry costs nothing to plan. */
static void test_ranks_and_check(const gr_stage_config *stages, int nstages) {
  gr_geometry fg, mg;
  gr_geometry_identity(&fg, 512, 512, 400);
  gr_geometry_identity(&mg, 500, 520, 380);
  gr_memory_plan *p1 = malloc(sizeof *p1), *p4 = malloc(sizeof *p4);
  gr_memory_plan_options o;
  gr_memory_plan_options_defaults(&o);
  o.threads = 2;
  GR_CHECK_OK(gr_memory_plan_compute(&fg, &mg, stages, nstages, &o, p1));
  o.ranks = 4;
  GR_CHECK_OK(gr_memory_plan_compute(&fg, &mg, stages, nstages, &o, p4));
  printf("512x512x400: one rank %zu bytes, 4 ranks %zu bytes each (halo %d planes)\n", p1->device_peak,
         p4->device_peak, p4->halo_planes);
  GR_CHECK(p4->device_peak < p1->device_peak / 2, "4 ranks: %zu per rank vs %zu for one", p4->device_peak,
           p1->device_peak);
  GR_CHECK(p4->halo_planes >= 2, "halo planes %d", p4->halo_planes);
  size_t halo = 0;
  for (int i = 0; i < p4->nphases; ++i) halo = p4->phase[i].kind[GR_MEM_HALO] > halo ? p4->phase[i].kind[GR_MEM_HALO] : halo;
  GR_CHECK(halo > 0, "no halo bytes with 4 ranks");
  /* The smallest rank count for a budget between the two fits and is > 1. */
  o.ranks = 1;
  const size_t budget = (gr_memory_plan_need(p1) + gr_memory_plan_need(p4)) / 2;
  const int n = gr_memory_plan_min_ranks(&fg, &mg, stages, nstages, &o, budget, 64);
  GR_CHECK(n >= 2 && n <= 4, "min ranks %d for budget %zu", n, budget);

  /* Budget override and the error message. */
  setenv("GIGAREG_MEMORY_LIMIT_BYTES", "1G", 1);
  gr_memory_budget b;
  GR_CHECK_OK(gr_memory_budget_query(GR_DEVICE_CPU, 0, &b));
  GR_CHECK(b.available == (size_t)1 << 30, "override gave %zu", b.available);
  const int n1g = gr_memory_plan_min_ranks(&fg, &mg, stages, nstages, &o, b.available, 4096);
  GR_CHECK(n1g > 4, "1 GiB needs %d ranks", n1g);
  const gr_status s = gr_memory_plan_check(p1, &b, NULL, n1g);
  GR_CHECK(s == GR_ERR_NOMEM, "check returned %d", (int)s);
  char need[64];
  snprintf(need, sizeof need, "(%zu bytes)", gr_memory_plan_need(p1));
  GR_CHECK(strstr(gr_last_error(), need) && strstr(gr_last_error(), "(1073741824 bytes)"), "message: %s", gr_last_error());
  printf("check message: %s\n", gr_last_error());
  setenv("GIGAREG_MEMORY_LIMIT_BYTES", "lots", 1);
  GR_CHECK(gr_memory_budget_query(GR_DEVICE_CPU, 0, &b) == GR_ERR_INVALID_ARG, "bad override accepted");
  unsetenv("GIGAREG_MEMORY_LIMIT_BYTES");
  free(p1);
  free(p4);
}

/* The small registrations above fit the real machine (MemAvailable). */
static void test_small_fits(const gr_image *f, const gr_image *m, const gr_stage_config *stages, int nstages) {
  gr_memory_budget b;
  GR_CHECK_OK(gr_memory_budget_query(GR_DEVICE_CPU, 0, &b));
  GR_CHECK(b.available > 0 && b.total >= b.available, "RAM %zu of %zu", b.available, b.total);
  gr_memory_plan *p = malloc(sizeof *p);
  gr_memory_plan_options o;
  gr_memory_plan_options_defaults(&o);
  GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, stages, nstages, &o, p));
  GR_CHECK_OK(gr_memory_plan_check(p, &b, NULL, 1));
  free(p);
}

/* On a CUDA build with a GPU: the planner's CUDA model against the backend's own
 * accounting (within 10%), and the pool the run left on the device as
 * cudaMemGetInfo sees it (the caching allocator keeps freed blocks until the
 * backend is destroyed). Skipped elsewhere. */
static void cuda_cases(void) {
  gr_backend *be = NULL;
  if (gr_backend_create(GR_DEVICE_CUDA, 0, 0, &be) != GR_OK) {
    printf("CUDA: %s -- CUDA checks skipped\n", gr_last_error());
    gr_clear_error();
    return;
  }
  gr_comm *comm = NULL;
  GR_CHECK_OK(gr_comm_local_create(&comm));
  /* The plan models what a run needs: LNCC's lean variant, which the backend
   * takes when its warped-image buffer does not fit (here it would). */
  setenv("GIGAREG_CUDA_LNCC_LEAN", "1", 1);
  const int64_t nf[3] = {192, 176, 128}, nm[3] = {200, 168, 120};
  const double sf[3] = {1.0, 1.0, 1.2}, sm[3] = {1.0, 1.05, 1.25};
  gr_image *f = make_image(nf, sf, 0.0), *m = make_image(nm, sm, 2.5);
  const double s421[3] = {4, 2, 1};
  /* the last two: 16-bit images, packed by the CUDA backend */
  gr_stage_config cfg[5];
  const gr_stage_kind kinds[5] = {GR_STAGE_RIGID, GR_STAGE_GREEDY, GR_STAGE_SYN, GR_STAGE_GREEDY, GR_STAGE_GREEDY};
  const gr_metric_kind metrics[5] = {GR_METRIC_MI, GR_METRIC_LNCC, GR_METRIC_LNCC, GR_METRIC_LNCC, GR_METRIC_MI};
  const char *names[5] = {"rigid", "greedy", "syn", "greedy LNCC 16-bit", "greedy MI 16-bit"};
  for (int k = 0; k < 5 && f && m && comm; ++k) {
    gr_stage_config_defaults(kinds[k], &cfg[k]);
    cfg[k].metric.kind = metrics[k];
    cfg[k].image_u16 = k >= 3;
    set_levels(&cfg[k], 3, s421, 5);
    gr_memory_budget b0, b1;
    GR_CHECK_OK(gr_memory_budget_query(GR_DEVICE_CUDA, 0, &b0));
    be->bytes_peak = be->bytes_current;
    gr_stage_result res;
    gr_reg_options opt;
    memset(&opt, 0, sizeof opt);
    GR_CHECK_OK(gr_register(be, comm, f, m, NULL, NULL, NULL, &cfg[k], 1, &opt, &res));
    GR_CHECK_OK(gr_memory_budget_query(GR_DEVICE_CUDA, 0, &b1));
    gr_stage_result_clear(&res);
    gr_memory_plan *plan = malloc(sizeof *plan);
    gr_memory_plan_options po;
    gr_memory_plan_options_defaults(&po);
    po.device = GR_DEVICE_CUDA;
    GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, &cfg[k], 1, &po, plan));
    const double measured = (double)be->bytes_peak, planned = (double)plan->device_peak;
    const double pool = b0.available > b1.available ? (double)(b0.available - b1.available) : 0.0;
    printf("CUDA %-18s measured peak %11.0f  planned %11.0f (%+.2f%%)  device free dropped by %11.0f (cudaMemGetInfo)\n",
           names[k], measured, planned, 100.0 * (planned - measured) / measured, pool);
    GR_CHECK(fabs(planned - measured) <= 0.10 * measured, "CUDA stage %d: planned %.0f vs measured %.0f", k, planned,
             measured);
    /* The drop in free device memory is the caching pool the run grew (blocks an
     * earlier case left cached are reused): it must not be wildly more than the plan. */
    GR_CHECK(pool <= 2.0 * planned + (64 << 20), "CUDA stage %d: %.0f bytes held for a %.0f-byte plan", k, pool, planned);
    free(plan);
  }
  gr_image_destroy(f);
  gr_image_destroy(m);
  if (comm) gr_comm_destroy(comm);
  gr_backend_destroy(be);
}

/* bfloat16 moments take 12 B per finest-level voxel off the plan's peak
 * (the finest level holds m and v at once), and a plan that does not fit says so. */
static void test_bf16_saving(const gr_image *f, const gr_image *m, const gr_stage_config *g32,
                             const gr_stage_config *g16) {
  gr_memory_plan *p32 = malloc(sizeof *p32), *p16 = malloc(sizeof *p16);
  gr_memory_plan_options po;
  gr_memory_plan_options_defaults(&po);
  GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, g32, 1, &po, p32));
  GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, g16, 1, &po, p16));
  const double saved = ((double)p32->device_peak - (double)p16->device_peak) / (double)gr_image_nvox(f);
  printf("bf16 moments: planned peak %zu -> %zu bytes (%.2f B per fixed voxel saved)\n", p32->device_peak,
         p16->device_peak, saved);
  GR_CHECK(saved > 11.9 && saved < 12.1, "bf16 moments save %.3f B/voxel in the plan, want 12", saved);
  GR_CHECK(p32->float_moment_stages == 1 && p16->float_moment_stages == 0, "float moment stages %d / %d",
           p32->float_moment_stages, p16->float_moment_stages);
  gr_memory_budget tiny = {GR_DEVICE_CPU, 0, p32->device_peak / 2, p32->device_peak / 2, "test"};
  GR_CHECK(gr_memory_plan_check(p32, &tiny, NULL, 0) == GR_ERR_NOMEM, "a plan twice the budget fits");
  GR_CHECK(strstr(gr_last_error(), "(GigaRegAdamMoments \"bfloat16\") saves 12 B") != NULL, "no bf16 hint: %s",
           gr_last_error());
  GR_CHECK(gr_memory_plan_check(p16, &tiny, NULL, 0) == GR_ERR_NOMEM, "a plan twice the budget fits");
  GR_CHECK(strstr(gr_last_error(), "GigaRegAdamMoments") == NULL, "bf16 hint with bf16 moments: %s", gr_last_error());
  free(p32);
  free(p16);
}

/* 16-bit images in a CUDA plan (headers only, no GPU needed): 4 B per
 * full-resolution voxel off a greedy LNCC or MI peak (both images at their
 * last use are packed, the float copies freed), nothing on the CPU (rounded
 * in place), and a CUDA plan that does not fit names the option. */
static void test_u16_saving(const gr_image *f, const gr_image *m, const gr_stage_config *greedy,
                            const gr_stage_config *greedy_mi) {
  gr_memory_plan *pf = malloc(sizeof *pf), *pu = malloc(sizeof *pu);
  for (int dev = 0; dev < 2; ++dev)
    for (int k = 0; k < 2; ++k) {
      gr_stage_config st = k ? *greedy_mi : *greedy;
      gr_memory_plan_options po;
      gr_memory_plan_options_defaults(&po);
      po.device = dev ? GR_DEVICE_CUDA : GR_DEVICE_CPU;
      st.image_u16 = 0;
      GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, &st, 1, &po, pf));
      st.image_u16 = 1;
      GR_CHECK_OK(gr_memory_plan_compute(&f->geom, &m->geom, &st, 1, &po, pu));
      const double saved = ((double)pf->device_peak - (double)pu->device_peak) / (double)gr_image_nvox(f);
      printf("16-bit images, %s %s plan: peak %zu -> %zu bytes (%.2f B per fixed voxel saved)\n", k ? "MI" : "LNCC",
             dev ? "CUDA" : "CPU", pf->device_peak, pu->device_peak, saved);
      /* the moving image is a little smaller than the fixed one here: 2 B/voxel for F + 2 x (nm / nf) for M */
      const double want = dev ? 2.0 + 2.0 * (double)gr_image_nvox(m) / (double)gr_image_nvox(f) : 0.0;
      GR_CHECK(fabs(saved - want) < 0.05, "16-bit images save %.3f B/voxel in the %s plan, want %.3f", saved,
               dev ? "CUDA" : "CPU", want);
      if (dev && k == 0) {
        gr_memory_budget tiny = {GR_DEVICE_CUDA, 0, pf->device_peak / 2, pf->device_peak / 2, "test"};
        GR_CHECK(gr_memory_plan_check(pf, &tiny, NULL, 0) == GR_ERR_NOMEM, "a plan twice the budget fits");
        GR_CHECK(strstr(gr_last_error(), "(GigaRegImageStorage \"uint16\") saves 4 B") != NULL, "no 16-bit hint: %s",
                 gr_last_error());
        GR_CHECK(gr_memory_plan_check(pu, &tiny, NULL, 0) == GR_ERR_NOMEM, "a plan twice the budget fits");
        GR_CHECK(strstr(gr_last_error(), "GigaRegImageStorage") == NULL, "16-bit hint with 16-bit images: %s",
                 gr_last_error());
      }
    }
  gr_clear_error();
  free(pf);
  free(pu);
}

int main(void) {
  const int64_t nf[3] = {44, 40, 30}, nm[3] = {48, 38, 26};
  const double sf[3] = {1.0, 1.1, 1.6}, sm[3] = {1.05, 1.2, 1.8};
  gr_image *f = make_image(nf, sf, 0.0), *m = make_image(nm, sm, 2.5);
  gr_image *fm = make_mask(f), *mm = make_mask(m);
  if (!f || !m || !fm || !mm) return 1;
  const double s421[3] = {4, 2, 1}, s21[2] = {2, 1}, s42[2] = {4, 2};

  gr_stage_config rigid, affine, greedy, syn, greedy_mi, syn_coarse, greedy_mse;
  gr_stage_config_defaults(GR_STAGE_RIGID, &rigid);
  set_levels(&rigid, 3, s421, 4);
  gr_stage_config_defaults(GR_STAGE_AFFINE, &affine);
  affine.metric.kind = GR_METRIC_LNCC;
  set_levels(&affine, 2, s21, 3);
  gr_stage_config_defaults(GR_STAGE_GREEDY, &greedy);
  greedy.metric.kind = GR_METRIC_LNCC;
  set_levels(&greedy, 2, s21, 3);
  gr_stage_config_defaults(GR_STAGE_SYN, &syn);
  syn.metric.kind = GR_METRIC_LNCC;
  set_levels(&syn, 2, s21, 3);
  gr_stage_config_defaults(GR_STAGE_GREEDY, &greedy_mi);
  greedy_mi.metric.kind = GR_METRIC_MI;
  set_levels(&greedy_mi, 3, s421, 3);
  gr_stage_config_defaults(GR_STAGE_SYN, &syn_coarse);
  syn_coarse.metric.kind = GR_METRIC_NCC;
  set_levels(&syn_coarse, 2, s42, 3);
  gr_stage_config_defaults(GR_STAGE_GREEDY, &greedy_mse);
  greedy_mse.metric.kind = GR_METRIC_MSE;
  set_levels(&greedy_mse, 2, s42, 2);

  check_case("rigid MI", f, m, NULL, NULL, &rigid, 1);
  check_case("affine LNCC + masks", f, m, fm, mm, &affine, 1);
  check_case("greedy LNCC", f, m, NULL, NULL, &greedy, 1);
  check_case("syn LNCC", f, m, NULL, NULL, &syn, 1);
  check_case("greedy MI + fixed mask", f, m, fm, NULL, &greedy_mi, 1);
  check_case("syn NCC ending at shrink 2", f, m, NULL, mm, &syn_coarse, 1);
  check_case("greedy MSE ending at shrink 2", f, m, NULL, NULL, &greedy_mse, 1);
  const gr_stage_config chain[3] = {rigid, affine, greedy};
  check_case("rigid -> affine -> greedy", f, m, fm, mm, chain, 3);
  gr_stage_config greedy16 = greedy, syn16 = syn;
  greedy16.adam_moments_bf16 = syn16.adam_moments_bf16 = 1;
  check_case("greedy LNCC, bf16 moments", f, m, NULL, NULL, &greedy16, 1);
  check_case("syn LNCC, bf16 moments", f, m, NULL, NULL, &syn16, 1);
  check_sharded("greedy LNCC, bf16 moments", f, m, &greedy16, 1, 2);
  /* 16-bit images on the CPU: rounded in place, or in copies where a later stage needs them unrounded */
  gr_stage_config u16[2] = {greedy, greedy_mi};
  u16[0].image_u16 = u16[1].image_u16 = 1;
  check_case("greedy LNCC, 16-bit images", f, m, NULL, NULL, u16, 1);
  check_case("greedy LNCC -> MI, 16-bit images", f, m, fm, NULL, u16, 2);
  check_sharded("greedy LNCC, 16-bit images", f, m, u16, 1, 2);
  test_bf16_saving(f, m, &greedy, &greedy16);
  test_u16_saving(f, m, &greedy, &greedy_mi);

  check_sharded("greedy LNCC", f, m, &greedy, 1, 2);
  check_sharded("greedy MI", f, m, &greedy_mi, 1, 3);
  check_sharded("syn LNCC", f, m, &syn, 1, 2);
  check_sharded("rigid -> affine -> greedy", f, m, chain, 3, 2);
  test_ranks_and_check(chain, 3);
  test_small_fits(f, m, chain, 3);
  cuda_cases();
  gr_image_destroy(f);
  gr_image_destroy(m);
  gr_image_destroy(fm);
  gr_image_destroy(mm);
  GR_TEST_RETURN();
}
