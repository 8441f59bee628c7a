/* Translation / rigid (Euler) / affine stages. The stage's transform T_k(p) is
 * applied after the chain `pre` of -t0 and the earlier stages (elastix's
 * composition: T_current(T_initial(x))), so the sampler sees M = T_k(p) o pre. Parameters are optimised in scaled units
 * (rotations and matrix entries times the fixed image radius) so one unit is
 * about one millimetre of motion for every parameter: the step length then has
 * one meaning for all of them, like elastix's automatic scales. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "registration/reg_internal.h"

typedef struct linear_model {
  gr_stage_kind kind;
  int n;
  double center[3];
  double scale[12];
} linear_model;

static void model_init(const gr_stage_config *cfg, const gr_geometry *fg, linear_model *m) {
  memset(m, 0, sizeof *m);
  m->kind = cfg->kind;
  m->n = cfg->kind == GR_STAGE_TRANSLATION ? 3 : cfg->kind == GR_STAGE_RIGID ? 6 : 12;
  gr_geometry_center(fg, m->center);
  double r2 = 0.0;
  for (int a = 0; a < 3; ++a) {
    const double half = 0.5 * (double)(fg->size[a] - 1) * fg->spacing[a];
    r2 += half * half;
  }
  const double radius = sqrt(r2) > 1.0 ? sqrt(r2) : 1.0;
  for (int k = 0; k < m->n; ++k) m->scale[k] = 1.0;
  if (m->kind == GR_STAGE_RIGID)
    for (int k = 0; k < 3; ++k) m->scale[k] = radius;
  if (m->kind == GR_STAGE_AFFINE)
    for (int k = 0; k < 9; ++k) m->scale[k] = radius;
}

static void identity_params(const linear_model *m, double p[12]) {
  memset(p, 0, sizeof(double) * 12);
  if (m->kind == GR_STAGE_AFFINE) p[0] = p[4] = p[8] = 1.0;
}

static void params_to_affine(const linear_model *m, const double p[12], gr_affine *T) {
  if (m->kind == GR_STAGE_RIGID) {
    gr_euler_to_affine(p, m->center, T);
  } else if (m->kind == GR_STAGE_AFFINE) {
    gr_affine_params_to_affine(p, m->center, T);
  } else {
    gr_affine_identity(T);
    for (int i = 0; i < 3; ++i) T->m[i * 4 + 3] = p[i];
  }
}

/* dT/dp_k as 3x4 matrices. */
static void params_jacobian(const linear_model *m, const double p[12], double dT[12][12]) {
  memset(dT, 0, sizeof(double) * 144);
  if (m->kind == GR_STAGE_RIGID) {
    double dM[6][12];
    gr_euler_affine_jacobian(p, m->center, dM);
    memcpy(dT, dM, sizeof dM);
    return;
  }
  const int off = m->kind == GR_STAGE_AFFINE ? 9 : 0;
  if (m->kind == GR_STAGE_AFFINE) {
    for (int r = 0; r < 3; ++r)
      for (int cc = 0; cc < 3; ++cc) {
        dT[r * 3 + cc][r * 4 + cc] = 1.0;
        dT[r * 3 + cc][r * 4 + 3] = -m->center[cc];
      }
  }
  for (int i = 0; i < 3; ++i) dT[off + i][i * 4 + 3] = 1.0;
}

/* d loss / d p from d loss / d M with M = T(p) o pre (homogeneous 4x4 product):
 * d loss / d T = (d loss / d M) pre^T, then the parameter Jacobian. */
static void chain_gradient(const linear_model *m, const double p[12], const gr_affine *pre,
                           const double gM[12], double gp[12]) {
  /* M = [A_T A_p | A_T t_p + t_T]:  d loss / d A_T[r][c] = sum_j gM[r][j] A_p[c][j] + gM[r][3] t_p[c]
   * (row c of pre, i.e. pre^T), and d loss / d t_T = the translation part of gM. */
  double gT[12];
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 4; ++c) {
      double s = 0.0;
      for (int j = 0; j < 4; ++j) s += gM[r * 4 + j] * (c == 3 ? (j == 3 ? 1.0 : 0.0) : pre->m[c * 4 + j]);
      gT[r * 4 + c] = s;
    }
  }
  double dT[12][12];
  params_jacobian(m, p, dT);
  for (int k = 0; k < m->n; ++k) {
    double s = 0.0;
    for (int e = 0; e < 12; ++e) s += gT[e] * dT[k][e];
    gp[k] = s;
  }
}

/* Centre-of-mass sums of planes [z0, z1) (data: those planes) of an image:
 * per plane w, w x, w y, w z over voxels with w > 0, then the planes added in
 * order. A sharded run gathers every rank's planes and adds them in the same
 * order (gr_sum_plane_partials), so both give the same bits. */
static void com_planes(const gr_geometry *g, const float *data, int64_t z0, int64_t z1, double *part) {
  const int64_t nx = g->size[0], ny = g->size[1];
  for (int64_t z = z0; z < z1; ++z) {
    double *p = part + (z - z0) * 4;
    p[0] = p[1] = p[2] = p[3] = 0.0;
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const double w = data[((z - z0) * ny + y) * nx + x];
        if (w <= 0.0) continue;
        const double idx[3] = {(double)x, (double)y, (double)z};
        double ph[3];
        gr_geometry_index_to_phys(g, idx, ph);
        p[0] += w;
        for (int a = 0; a < 3; ++a) p[1 + a] += w * ph[a];
      }
  }
}

static gr_status center_of_mass(gr_reg_ctx *c, const gr_geometry *g, const float *data, int64_t z0, int64_t z1,
                                double out[3]) {
  double *part = malloc(sizeof(double) * 4 * (size_t)(z1 > z0 ? z1 - z0 : 1));
  if (!part) return gr_error(GR_ERR_NOMEM, "centre of mass: %lld planes", (long long)(z1 - z0));
  com_planes(g, data, z0, z1, part);
  double tot[4] = {0.0, 0.0, 0.0, 0.0};
  gr_status s = GR_OK;
  if (c->gp) {
    s = gr_sum_plane_partials(c->comm, g->size[2], part, 4, tot);
  } else {
    for (int64_t z = 0; z < z1 - z0; ++z)
      for (int q = 0; q < 4; ++q) tot[q] += part[z * 4 + q];
  }
  free(part);
  if (s != GR_OK) return s;
  if (tot[0] <= 0.0) return gr_error(GR_ERR_EMPTY, "centre-of-mass initialisation: image has no positive intensities");
  for (int a = 0; a < 3; ++a) out[a] = tot[1 + a] / tot[0];
  return GR_OK;
}

/* Translation that moves pre(fixed centre) onto the moving centre (of geometry or mass). */
static gr_status initial_translation(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre,
                                     double t[3]) {
  double cf[3], cm[3];
  if (cfg->init == GR_INIT_CENTER_OF_MASS) {
    gr_status s;
    if (c->gp) {
      s = center_of_mass(c, c->fixed_geom, c->gp->fixed_raw, c->gp->fz0, c->gp->fz1, cf);
      if (s == GR_OK) s = center_of_mass(c, c->moving_geom, c->gp->moving_raw, c->gp->mz0, c->gp->mz1, cm);
    } else {
      s = center_of_mass(c, c->fixed_geom, c->fixed->data, 0, c->fixed_geom->size[2], cf);
      if (s == GR_OK) s = center_of_mass(c, c->moving_geom, c->moving->data, 0, c->moving_geom->size[2], cm);
    }
    if (s != GR_OK) return s;
  } else {
    gr_geometry_center(c->fixed_geom, cf);
    gr_geometry_center(c->moving_geom, cm);
  }
  double from[3];
  gr_affine_apply(pre, cf, from);
  for (int a = 0; a < 3; ++a) t[a] = cm[a] - from[a];
  return GR_OK;
}

static double norm(const double *g, int n) {
  double s = 0.0;
  for (int k = 0; k < n; ++k) s += g[k] * g[k];
  return sqrt(s);
}

/* One level: regular-step gradient descent (step halves when the gradient turns)
 * or Adam, on the scaled parameters. Returns the last loss. */
static gr_status run_level(gr_reg_ctx *c, const gr_stage_config *cfg, const linear_model *m, const gr_affine *pre,
                           const gr_level *lv, int level, double p[12], double *loss, int *iters) {
  gr_metric_spec spec = cfg->metric;
  spec.want_affine_grad = 1;
  spec.want_field_grad = 0;
  spec.fixed_min = spec.moving_min = 0.0;
  spec.fixed_max = spec.moving_max = 1.0;
  double minsp = lv->fgeom.spacing[0];
  for (int a = 1; a < 3; ++a) if (lv->fgeom.spacing[a] < minsp) minsp = lv->fgeom.spacing[a];
  double step = cfg->learning_rate[level] > 0 ? cfg->learning_rate[level] : minsp;
  const double min_step = 5e-3 * minsp; /* 0.005 voxel: well under the 0.2-voxel accuracy target, and a third fewer full-resolution iterations */
  double gprev[12] = {0}, am[12] = {0}, av[12] = {0};
  const int nit = cfg->iterations[level];
  *iters = 0;
  for (int it = 0; it < nit; ++it) {
    gr_affine T, M;
    params_to_affine(m, p, &T);
    gr_affine_compose(&T, pre, &M);
    gr_metric_result res;
    /* Sharded, the level metric normalises every rank's voxels by the global N
     * and adds the per-plane gradient parts of all ranks in plane order, so
     * res is already the global mean (no per-rank means to re-weight). */
    gr_status s = gr_level_metric(c, lv, &spec, &M, NULL, &res, NULL);
    if (s != GR_OK) return s;
    *loss = res.value;
    gr_report(c, level, cfg->levels, it, nit, res.value);
    *iters = it + 1;
    double gp[12], g[12];
    chain_gradient(m, p, pre, res.grad_affine, gp);
    for (int k = 0; k < m->n; ++k) g[k] = gp[k] / m->scale[k];
    const double gn = norm(g, m->n);
    if (!(gn > 0.0)) break;
    if (cfg->optimizer == GR_OPT_GD) {
      double dot = 0.0;
      for (int k = 0; k < m->n; ++k) dot += g[k] * gprev[k];
      if (it > 0 && dot < 0.0) step *= 0.5;
      if (step < min_step) break;
      for (int k = 0; k < m->n; ++k) {
        p[k] -= step * (g[k] / gn) / m->scale[k];
        gprev[k] = g[k];
      }
    } else {
      const double b1 = cfg->adam_beta1, b2 = cfg->adam_beta2;
      const double lr = step * (1.0 - (double)it / nit) + min_step;
      for (int k = 0; k < m->n; ++k) {
        am[k] = b1 * am[k] + (1 - b1) * g[k];
        av[k] = b2 * av[k] + (1 - b2) * g[k] * g[k];
        const double mh = am[k] / (1 - pow(b1, it + 1)), vh = av[k] / (1 - pow(b2, it + 1));
        p[k] -= lr * mh / (sqrt(vh) + 1e-12) / m->scale[k];
      }
    }
  }
  return GR_OK;
}

gr_status gr_stage_linear(gr_reg_ctx *c, const gr_stage_config *cfg, const gr_affine *pre, gr_stage_result *r) {
  linear_model m;
  model_init(cfg, c->fixed_geom, &m);
  double p[12];
  identity_params(&m, p);
  if (cfg->init != GR_INIT_NONE) {
    const int off = m.kind == GR_STAGE_TRANSLATION ? 0 : m.kind == GR_STAGE_RIGID ? 3 : 9;
    gr_status s = initial_translation(c, cfg, pre, p + off);
    if (s != GR_OK) return s;
  }
  double loss = 0.0;
  for (int l = 0; l < cfg->levels; ++l) {
    gr_level lv;
    /* Sharded: LNCC windows need 2r planes of halo; MI and MSE are per voxel. */
    const int halo = cfg->metric.kind == GR_METRIC_LNCC ? 2 * (cfg->metric.lncc_radius > 0 ? cfg->metric.lncc_radius : 2) : 0;
    gr_status s = gr_level_build(c, cfg, l, halo, &lv);
    if (s != GR_OK) return s;
    s = run_level(c, cfg, &m, pre, &lv, l, p, &loss, &r->iterations_run[l]);
    gr_level_release(c->be, &lv);
    if (s != GR_OK) return s;
  }
  r->kind = cfg->kind;
  r->nparams = m.n;
  memcpy(r->center, m.center, sizeof m.center);
  memcpy(r->params, p, sizeof(double) * 12);
  r->final_metric = loss;
  return GR_OK;
}
