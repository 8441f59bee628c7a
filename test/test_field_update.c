/* gr_field_update with a backend that offers the optional fused ops
 * (smooth_to, adam_moments_smoothed) must leave bitwise the field and moments
 * that the plain sequence leaves. The CUDA backend implements those ops with
 * fused kernels (checked against the unfused ops in test_cuda_vs_cpu on a
 * GPU); here a wrapper around the CPU backend implements them by their
 * definitions, so what this checks on every machine is the driver's use of
 * them (field_ops.c: which buffer is smoothed into which, the gradient's
 * smoothing skipped before the moments, u keeping its buffer), over several
 * steps, float and bfloat16 moments, greedy and SyN sigmas. */
#include <stdint.h>
#include "gr_test.h"
#include "registration/reg_internal.h"

/* The CPU backend with the two optional ops, counting their calls. */
typedef struct wrapped {
  gr_backend be; /* first: the ops receive &wrapped.be */
  gr_backend *inner;
  gr_backend_ops ops;
  int n_smooth_to, n_moments_smoothed;
} wrapped;

static gr_status w_smooth_to(gr_backend *be, const gr_grid *g, const float *src, float *dst, int ncomp,
                             const double sigma_vox[3]) {
  wrapped *w = (wrapped *)be;
  ++w->n_smooth_to;
  const size_t bytes = (size_t)(g->n[0] * g->n[1] * g->n[2]) * (size_t)ncomp * sizeof(float);
  gr_status s = w->inner->ops->copy(w->inner, dst, src, bytes);
  return s == GR_OK ? w->inner->ops->smooth(w->inner, g, dst, ncomp, sigma_vox) : s;
}

static gr_status w_moments_smoothed(gr_backend *be, const gr_grid *g, float *grad, const double sigma_vox[3],
                                    gr_moments mom, double b1, double b2, double eps, int t, double *max_vox) {
  wrapped *w = (wrapped *)be;
  ++w->n_moments_smoothed;
  gr_status s = w->inner->ops->smooth(w->inner, g, grad, 3, sigma_vox);
  return s == GR_OK ? w->inner->ops->adam_moments(w->inner, g, grad, mom, b1, b2, eps, t, max_vox) : s;
}

static void wrap(gr_backend *inner, wrapped *w) {
  memset(w, 0, sizeof *w);
  w->inner = inner;
  w->ops = *inner->ops;
  w->ops.smooth_to = w_smooth_to;
  w->ops.adam_moments_smoothed = w_moments_smoothed;
  w->be = *inner;
  w->be.ops = &w->ops;
}

static void fill(float *x, int64_t n, uint32_t seed, float scale) {
  uint32_t s = seed;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    x[i] = scale * ((float)((s >> 8) & 0xffff) / 65536.0f - 0.5f);
  }
}

/* steps of gr_field_update on backend be from the same start; the final u and moments */
static void run(gr_backend *be, gr_comm *comm, const gr_stage_config *cfg, const gr_grid *g, int steps,
                float *u_out, unsigned char *m_out, unsigned char *v_out) {
  const int64_t n = g->n[0] * g->n[1] * g->n[2];
  const size_t fb = (size_t)n * 3 * sizeof(float), mb = gr_moment_bytes(n, cfg->adam_moments_bf16);
  gr_reg_ctx c;
  memset(&c, 0, sizeof c);
  c.be = be;
  c.comm = comm;
  gr_field_opt o;
  GR_CHECK_OK(gr_field_opt_init(be, n, !gr_field_update_fused(be), cfg->adam_moments_bf16, &o));
  float *u = be->ops->alloc(be, fb), *scratch = be->ops->alloc(be, fb), *h = malloc(fb);
  GR_CHECK(u && scratch && h, "allocation");
  fill(h, 3 * n, 11u, 0.5f);
  GR_CHECK_OK(be->ops->upload(be, u, h, fb));
  for (int k = 0; k < steps; ++k) {
    fill(h, 3 * n, 100u + (uint32_t)k, 2.0f);
    GR_CHECK_OK(be->ops->upload(be, o.grad, h, fb));
    GR_CHECK_OK(gr_field_update(&c, cfg, g, &o, &u, &scratch, 0.5));
  }
  GR_CHECK_OK(be->ops->download(be, u_out, u, fb));
  GR_CHECK_OK(be->ops->download(be, m_out, o.mom.m, mb));
  GR_CHECK_OK(be->ops->download(be, v_out, o.mom.v, mb));
  gr_field_opt_free(be, &o);
  be->ops->free(be, u);
  be->ops->free(be, scratch);
  free(h);
}

int main(void) {
  gr_backend *cpu = NULL;
  GR_CHECK_OK(gr_backend_create(GR_DEVICE_CPU, 0, 0, &cpu));
  gr_comm *comm = NULL;
  GR_CHECK_OK(gr_comm_local_create(&comm));
  const int64_t dims[2][3] = {{24, 20, 18}, {17, 13, 11}};
  for (int gi = 0; gi < 2; ++gi)
    for (int kind = 0; kind < 2; ++kind)
      for (int bf = 0; bf < 2; ++bf) {
        gr_geometry geo;
        gr_geometry_identity(&geo, dims[gi][0], dims[gi][1], dims[gi][2]);
        geo.spacing[1] = 1.5;
        gr_grid g;
        gr_grid_from_geometry(&geo, &g);
        gr_stage_config cfg;
        gr_stage_config_defaults(kind ? GR_STAGE_SYN : GR_STAGE_GREEDY, &cfg);
        cfg.adam_moments_bf16 = bf;
        const int64_t n = dims[gi][0] * dims[gi][1] * dims[gi][2];
        const size_t fb = (size_t)n * 3 * sizeof(float), mb = gr_moment_bytes(n, bf);
        float *ua = malloc(fb), *ub = malloc(fb);
        unsigned char *ma = malloc(mb), *mb2 = malloc(mb), *va = malloc(mb), *vb = malloc(mb);
        run(cpu, comm, &cfg, &g, 4, ua, ma, va);
        wrapped w;
        wrap(cpu, &w);
        run(&w.be, comm, &cfg, &g, 4, ub, mb2, vb);
        int64_t du = 0, dm = 0;
        for (int64_t i = 0; i < 3 * n; ++i) du += memcmp(&ua[i], &ub[i], sizeof(float)) != 0;
        for (size_t i = 0; i < mb; ++i) dm += (ma[i] != mb2[i]) + (va[i] != vb[i]);
        printf("%lldx%lldx%lld %s, %s moments: smooth_to %d calls, adam_moments_smoothed %d calls; "
               "u %lld of %lld values differ, m/v %lld bytes differ\n",
               (long long)dims[gi][0], (long long)dims[gi][1], (long long)dims[gi][2], kind ? "SyN sigmas" : "greedy",
               bf ? "bfloat16" : "float", w.n_smooth_to, w.n_moments_smoothed, (long long)du, (long long)(3 * n),
               (long long)dm);
        GR_CHECK(w.n_smooth_to == 4 && w.n_moments_smoothed == 4, "the driver did not use the optional ops");
        GR_CHECK(du == 0 && dm == 0, "the optional ops changed the update");
        free(ua);
        free(ub);
        free(ma);
        free(mb2);
        free(va);
        free(vb);
      }
  gr_comm_destroy(comm);
  gr_backend_destroy(cpu);
  GR_TEST_RETURN();
}
