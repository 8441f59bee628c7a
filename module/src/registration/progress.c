#include <stdlib.h>
#include <time.h>
#include "registration/reg_internal.h"

double gr_wall_seconds(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gr_status gr_history_init(gr_history *h, int cap) {
  h->n = 0;
  h->cap = cap > 0 ? cap : 1;
  h->v = malloc(sizeof(double) * (size_t)h->cap);
  return h->v ? GR_OK : gr_error(GR_ERR_NOMEM, "history allocation failed");
}

void gr_history_free(gr_history *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}

void gr_history_push(gr_history *h, double v) {
  if (h->n < h->cap) h->v[h->n++] = v;
}

int gr_history_converged(const gr_history *h, int window, double tol) {
  if (window < 2 || h->n < window) return 0;
  const double *y = h->v + (h->n - window);
  double mx = 0.5 * (window - 1), my = 0.0;
  for (int i = 0; i < window; ++i) my += y[i];
  my /= window;
  double sxy = 0.0, sxx = 0.0;
  for (int i = 0; i < window; ++i) {
    sxy += (i - mx) * (y[i] - my);
    sxx += (i - mx) * (i - mx);
  }
  const double slope = sxy / sxx;
  const double scale = my < 0 ? -my : my;
  return slope >= -tol * (scale > 1e-12 ? scale : 1e-12);
}

gr_status gr_level_iterate(gr_reg_ctx *c, const gr_stage_config *cfg, int l, const gr_level_steps *steps,
                           gr_stage_result *r, double *loss) {
  gr_history h = {0};
  gr_status s = gr_history_init(&h, cfg->iterations[l] + 1);
  for (int it = 0; s == GR_OK && it < cfg->iterations[l]; ++it) {
    s = steps->evaluate(steps->user, loss);
    if (s != GR_OK) break;
    gr_report(c, l, cfg->levels, it, cfg->iterations[l], *loss);
    r->iterations_run[l] = it + 1;
    gr_history_push(&h, *loss);
    if (gr_history_converged(&h, cfg->convergence_window, cfg->convergence_tol)) break;
    if (steps->update) s = steps->update(steps->user);
  }
  gr_history_free(&h);
  return s;
}

void gr_report(gr_reg_ctx *c, int level, int nlevels, int it, int nit, double metric) {
  const gr_reg_options *o = c->opt;
  if (!o) return;
  if (o->log)
    fprintf(o->log, "%d\t%d\t%d\t%.10g\n", c->stage, level, it, metric);
  if (!o->progress) return;
  gr_progress_info info;
  info.stage = c->stage;
  info.nstages = c->nstages;
  info.level = level;
  info.nlevels = nlevels;
  info.iteration = it;
  info.niterations = nit;
  info.metric = metric;
  info.elapsed_s = gr_wall_seconds() - c->t0;
  /* Rough ETA: coarse levels cost ~1/8 of the next finer one, so weight by 8^level. */
  double done = 0.0, total = 0.0;
  for (int l = 0; l < nlevels; ++l) {
    double w = 1.0;
    for (int k = 0; k < l; ++k) w *= 8.0;
    total += w;
    if (l < level) done += w;
    else if (l == level && nit > 0) done += w * (double)(it + 1) / nit;
  }
  const double frac = ((double)c->stage + done / total) / (double)c->nstages;
  info.eta_s = frac > 1e-3 ? info.elapsed_s * (1.0 - frac) / frac : -1.0;
  o->progress(o->progress_user, &info);
}
