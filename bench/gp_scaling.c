/* gp_scaling: Grid Parallel scaling evidence (not a test).
 *
 * Part 1, measured on this machine (CPU backend, one thread per shard): a
 * greedy registration (one level, fixed iteration counts, LNCC r2 and MI) of
 * an n^3 synthetic pair whose moving image is the fixed one warped by a smooth
 * displacement of up to 4 voxels, sharded over P = 1, 2, 4, 8 local shards.
 * Every shard runs on its own backend and its communicator is wrapped by a
 * counter, so the table shows per-rank peak backend memory and the bytes each
 * rank sends per iteration (point-to-point: halos and ring-sampler slabs;
 * collectives: reductions and per-plane partials). Per-iteration figures are
 * the difference of a run with K2 and one with K1 iterations, divided by
 * K2 - K1, which removes the set-up and the final gathers.
 *
 * Part 2, modelled: strong scaling (1024^3 on P GPUs) and weak scaling (512^3
 * per GPU, slabs stacked along z) to 8 and 64 GPUs from a measured
 * single-GPU time per voxel (bench_gpu: ms per iteration per Gvox at 512^3,
 * passed on the command line) and the measured bytes per plane voxel of part
 * 1: per iteration a rank computes its s = n / P planes plus the 2h halo
 * planes the kernels recompute, and sends its halo + ring bytes over NVLink
 * (450 GB/s per direction, 8 GPUs per node) or, between nodes, InfiniBand
 * (50 GB/s), with a per-message latency. Two bounds: no overlap (compute +
 * communication) and full overlap (the larger of the two).
 *
 * Usage: gp_scaling [n=64] [lncc_ms_per_gvox=340] [mi_ms_per_gvox=230] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_common.h"
#include "gigareg/grid_parallel.h"

#define MAX_P 8

/* ---- the pair ------------------------------------------------------------------------ */
static void make_pair(int n, gr_image **fixed, gr_image **moving) {
  gr_geometry g;
  gr_geometry_identity(&g, n, n, n);
  BENCH_TRY(gr_image_create(&g, 1, fixed));
  BENCH_TRY(gr_image_create(&g, 1, moving));
  gr_image *w = NULL;
  BENCH_TRY(gr_image_create(&g, 3, &w));
  const int64_t nv = gr_image_nvox(*fixed);
  const double k = 2.0 * 3.14159265358979323846 / n;
  for (int64_t z = 0; z < n; ++z)
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        const int64_t i = (z * n + y) * n + x;
        (*fixed)->data[i] = (float)(0.5 + 0.2 * sin(3 * k * x) * cos(2 * k * y) + 0.2 * sin(4 * k * z + 1.0) +
                                    0.1 * cos(5 * k * (x + y + z)));
        for (int c = 0; c < 3; ++c) /* up to 4 voxels, crossing slab borders along z */
          w->data[c * nv + i] = (float)(4.0 * sin(k * (x + 2 * c)) * sin(k * (y + 1)) * cos(k * (z + c)));
      }
  gr_backend *be = NULL;
  BENCH_TRY(gr_backend_cpu_create(0, &be));
  gr_grid gg;
  BENCH_TRY(gr_grid_from_geometry(&g, &gg));
  BENCH_TRY(be->ops->resample(be, &gg, (*moving)->data, &gg, (*fixed)->data, 1, NULL, w->data, GR_INTERP_LINEAR,
                              GR_BOUNDARY_CLAMP));
  gr_backend_destroy(be);
  gr_image_destroy(w);
}

/* ---- part 1: one sharded run ----------------------------------------------------------- */
typedef struct shard_stat {
  size_t peak;
  int64_t p2p_bytes, p2p_msgs, coll_bytes;
} shard_stat;

typedef struct job {
  const gr_image *fixed, *moving;
  gr_stage_config cfg;
  shard_stat st[MAX_P];
} job;

static gr_status shard_run(gr_comm *c, void *user) {
  job *j = user;
  const int r = gr_comm_rank(c);
  gr_backend *be = NULL;
  gr_status s = gr_backend_cpu_create(1, &be);
  if (s != GR_OK) return s;
  gr_comm *wc = NULL; /* counts what this rank sends (gigareg/comm.h gr_comm_stats) */
  s = gr_comm_stats_create(c, 0, &wc);
  if (s != GR_OK) {
    gr_backend_destroy(be);
    return s;
  }
  gr_stage_result res;
  memset(&res, 0, sizeof res);
  const gr_reg_options opt = {0};
  s = gr_register(be, wc, j->fixed, j->moving, NULL, NULL, NULL, &j->cfg, 1, &opt, &res);
  gr_comm_stats cs;
  gr_comm_stats_get(wc, &cs);
  j->st[r].peak = be->bytes_peak;
  j->st[r].p2p_bytes = cs.p2p_bytes;
  j->st[r].p2p_msgs = cs.p2p_msgs;
  j->st[r].coll_bytes = cs.coll_bytes;
  gr_stage_result_clear(&res);
  gr_comm_destroy(wc);
  gr_backend_destroy(be);
  return s;
}

static void run(const gr_image *f, const gr_image *m, gr_metric_kind kind, int P, int iters, shard_stat out[MAX_P]) {
  job *j = calloc(1, sizeof *j);
  j->fixed = f;
  j->moving = m;
  gr_stage_config_defaults(GR_STAGE_GREEDY, &j->cfg);
  j->cfg.metric.kind = kind;
  j->cfg.metric.lncc_radius = 2;
  j->cfg.metric.mi_bins = 32;
  j->cfg.levels = 1;
  j->cfg.shrink[0] = 1;
  j->cfg.sigma_vox[0] = 0;
  j->cfg.iterations[0] = iters;
  j->cfg.convergence_window = 100000; /* fixed iteration counts */
  if (P == 1) {
    gr_comm *c = NULL;
    BENCH_TRY(gr_comm_local_create(&c));
    BENCH_TRY(shard_run(c, j));
    gr_comm_destroy(c);
  } else {
    BENCH_TRY(gr_comm_local_group_run(P, shard_run, j));
  }
  memcpy(out, j->st, sizeof j->st);
  free(j);
}

/* ---- part 2: the model ------------------------------------------------------------------ */
typedef struct link_model {
  double nvlink_gbs, ib_gbs, latency_s;
  int gpus_per_node;
} link_model;

/* One iteration on P GPUs of an nx * ny * nz grid: compute of s + 2h planes,
 * `bpv` bytes per plane voxel sent by an interior rank in `msgs` messages. */
static void model(const link_model *L, double ms_per_gvox, double nx, double ny, double nz, int P, int h, double bpv,
                  double msgs, double *t_compute, double *t_comm) {
  const double A = nx * ny, s = nz / P;
  const double planes = P == 1 ? nz : s + 2.0 * h;
  *t_compute = ms_per_gvox * 1e-3 * planes * A / 1e9;
  if (P == 1) {
    *t_comm = 0.0;
    return;
  }
  /* a slab's two neighbours: inside a node over NVLink; the node's edge ranks talk over InfiniBand */
  const double bw = (P > L->gpus_per_node ? L->ib_gbs : L->nvlink_gbs) * 1e9;
  *t_comm = bpv * A / bw + msgs * L->latency_s;
}

int main(int argc, char **argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 64;
  const double lncc_ms = argc > 2 ? atof(argv[2]) : 340.0, mi_ms = argc > 3 ? atof(argv[3]) : 230.0;
  const int K1 = 2, K2 = 8;
  const int Ps[] = {1, 2, 4, 8};
  gr_image *f = NULL, *m = NULL;
  make_pair(n, &f, &m);
  const gr_metric_kind kinds[2] = {GR_METRIC_LNCC, GR_METRIC_MI};
  const char *names[2] = {"LNCC r2", "MI 32 bins"};
  double bpv_interior[2] = {0, 0}, msgs_interior[2] = {0, 0};
  printf("## Grid Parallel scaling (bench/gp_scaling, %d^3 synthetic pair, deformation up to 4 voxels)\n\n", n);
  printf("Part 1, measured: CPU backend, P local shards (one thread and one backend each), greedy, one level.\n");
  printf("Per-iteration bytes = (run with %d iterations - run with %d) / %d.\n\n", K2, K1, K2 - K1);
  printf("| loss | P | peak backend MB, largest rank | of P = 1 | ideal 1/P | p2p bytes/iter, interior rank | "
         "messages/iter | collective bytes/iter | p2p bytes per plane voxel |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int q = 0; q < 2; ++q) {
    double peak1 = 0.0;
    for (size_t pi = 0; pi < sizeof Ps / sizeof Ps[0]; ++pi) {
      const int P = Ps[pi];
      shard_stat a[MAX_P], b[MAX_P];
      run(f, m, kinds[q], P, K1, a);
      run(f, m, kinds[q], P, K2, b);
      size_t peak = 0;
      for (int r = 0; r < P; ++r) peak = b[r].peak > peak ? b[r].peak : peak;
      if (P == 1) peak1 = (double)peak;
      const int ri = P > 2 ? 1 : 0; /* an interior rank where there is one */
      const double p2p = (double)(b[ri].p2p_bytes - a[ri].p2p_bytes) / (K2 - K1);
      const double msgs = (double)(b[ri].p2p_msgs - a[ri].p2p_msgs) / (K2 - K1);
      const double coll = (double)(b[ri].coll_bytes - a[ri].coll_bytes) / (K2 - K1);
      const double bpv = p2p / ((double)n * n);
      if (P == 4) {
        bpv_interior[q] = bpv;
        msgs_interior[q] = msgs;
      }
      printf("| %s | %d | %.1f | %.2f | %.2f | %.0f | %.0f | %.0f | %.1f |\n", names[q], P, peak / 1e6, peak / peak1,
             1.0 / P, p2p, msgs, coll, bpv);
      fflush(stdout);
    }
  }
  gr_image_destroy(f);
  gr_image_destroy(m);

  /* The halo of a greedy LNCC r2 level (shard_ops: LNCC 2r, smoothing supports, compose reach): ~6 planes. */
  const int h = 6;
  const link_model L = {450.0, 50.0, 10e-6, 8};
  const double ms[2] = {lncc_ms, mi_ms};
  printf("\nPart 2, modelled from %s ms/iter/Gvox (LNCC) and %s ms/iter/Gvox (MI) measured on one H100 at 512^3,\n",
         argc > 2 ? argv[2] : "340", argc > 3 ? argv[3] : "230");
  printf("the bytes per plane voxel of an interior rank above (P = 4), halo h = %d planes recomputed,\n", h);
  printf("NVLink %.0f GB/s within nodes of %d GPUs, InfiniBand %.0f GB/s beyond, %.0f us per message.\n\n",
         L.nvlink_gbs, L.gpus_per_node, L.ib_gbs, L.latency_s * 1e6);
  const int Pm[] = {1, 2, 4, 8, 16, 32, 64};
  for (int q = 0; q < 2; ++q) {
    printf("| %s | P | strong 1024^3: ms/iter (no overlap / overlap) | efficiency (no overlap / overlap) | "
           "weak 512^3 per GPU: ms/iter (no overlap / overlap) | efficiency |\n|---|---|---|---|---|---|\n",
           names[q]);
    double s1 = 0.0, w1 = 0.0;
    for (size_t pi = 0; pi < sizeof Pm / sizeof Pm[0]; ++pi) {
      const int P = Pm[pi];
      double tc, tm, wc, wm;
      model(&L, ms[q], 1024, 1024, 1024, P, h, bpv_interior[q], msgs_interior[q], &tc, &tm);
      model(&L, ms[q], 512, 512, 512.0 * P, P, h, bpv_interior[q], msgs_interior[q], &wc, &wm);
      const double sn = tc + tm, so = tc > tm ? tc : tm, wn = wc + wm, wo = wc > wm ? wc : wm;
      if (P == 1) {
        s1 = sn;
        w1 = wn;
      }
      printf("| | %d | %.1f / %.1f | %.0f%% / %.0f%% | %.1f / %.1f | %.0f%% / %.0f%% |\n", P, 1e3 * sn, 1e3 * so,
             100.0 * s1 / (P * sn), 100.0 * s1 / (P * so), 1e3 * wn, 1e3 * wo, 100.0 * w1 / wn, 100.0 * w1 / wo);
    }
    printf("\n");
  }
  return 0;
}
