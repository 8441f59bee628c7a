#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qa.h"
#include "qa_plots.h"

gr_status gr_qa_history_push(gr_qa_history *h, int stage, int level, int iteration, double metric) {
  if (h->n == h->cap) {
    const int cap = h->cap ? 2 * h->cap : 1024;
    gr_qa_sample *v = realloc(h->v, sizeof *v * (size_t)cap);
    if (!v) return gr_error(GR_ERR_NOMEM, "QA metric history: out of memory");
    h->v = v;
    h->cap = cap;
  }
  h->v[h->n++] = (gr_qa_sample){stage, level, iteration, metric};
  return GR_OK;
}

void gr_qa_history_free(gr_qa_history *h) {
  free(h->v);
  memset(h, 0, sizeof *h);
}

void gr_qa_slices_size(int *w, int *h) {
  *w = 3 * GR_QA_PANEL + 2 * GR_QA_GAP;
  *h = GR_QA_TITLE + GR_QA_PANEL;
}

/* ---- sampling planes through the fixed grid ------------------------------------------ */

/* Display axes in LPS: screen x, screen y (down). Radiological: patient left on
 * the screen's right; anterior / superior at the top; sagittal with anterior left. */
typedef struct view {
  const char *name;
  double ex[3], ey[3];
  const char *left, *right, *top;
} view;

static const view views[3] = {
    {"AXIAL", {1, 0, 0}, {0, 1, 0}, "R", "L", "A"},
    {"CORONAL", {1, 0, 0}, {0, 0, -1}, "R", "L", "S"},
    {"SAGITTAL", {0, 1, 0}, {0, 0, -1}, "A", "P", "S"},
};

typedef struct plane {
  gr_grid grid;
  double c[3], uc, vc, umid, vmid, scale; /* pixels per mm */
  const view *v;
} plane;

static double dot3(const double a[3], const double b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

static gr_status plane_init(const gr_geometry *g, const view *v, plane *p) {
  gr_status s = gr_grid_from_geometry(g, &p->grid);
  if (s != GR_OK) return s;
  p->v = v;
  gr_geometry_center(g, p->c);
  double umin = INFINITY, umax = -INFINITY, vmin = INFINITY, vmax = -INFINITY;
  for (int corner = 0; corner < 8; ++corner) { /* voxel-corner bounding box, projected */
    const double idx[3] = {(corner & 1) ? g->size[0] - 0.5 : -0.5, (corner & 2) ? g->size[1] - 0.5 : -0.5,
                           (corner & 4) ? g->size[2] - 0.5 : -0.5};
    double x[3];
    gr_geometry_index_to_phys(g, idx, x);
    umin = fmin(umin, dot3(x, v->ex));
    umax = fmax(umax, dot3(x, v->ex));
    vmin = fmin(vmin, dot3(x, v->ey));
    vmax = fmax(vmax, dot3(x, v->ey));
  }
  p->uc = dot3(p->c, v->ex);
  p->vc = dot3(p->c, v->ey);
  p->umid = 0.5 * (umin + umax);
  p->vmid = 0.5 * (vmin + vmax);
  p->scale = fmin(GR_QA_PANEL / (umax - umin), GR_QA_PANEL / (vmax - vmin));
  return GR_OK;
}

/* Continuous fixed-grid index of panel pixel (px, py); 0 when outside the image. */
static int plane_index(const plane *p, int px, int py, double idx[3]) {
  const double u = p->umid + ((double)px + 0.5 - 0.5 * GR_QA_PANEL) / p->scale;
  const double w = p->vmid + ((double)py + 0.5 - 0.5 * GR_QA_PANEL) / p->scale;
  double x[3];
  for (int a = 0; a < 3; ++a) x[a] = p->c[a] + (u - p->uc) * p->v->ex[a] + (w - p->vc) * p->v->ey[a];
  const double *m = p->grid.p2i;
  for (int r = 0; r < 3; ++r) {
    idx[r] = m[r * 4] * x[0] + m[r * 4 + 1] * x[1] + m[r * 4 + 2] * x[2] + m[r * 4 + 3];
    if (idx[r] < -0.5 || idx[r] > (double)p->grid.n[r] - 0.5) return 0;
  }
  return 1;
}

/* Trilinear, clamped to the grid (the index is within half a voxel of it). */
static double sample(const gr_image *img, const double idx[3]) {
  const int64_t *n = img->geom.size;
  int64_t i0[3];
  double f[3];
  for (int a = 0; a < 3; ++a) {
    double c = idx[a] < 0 ? 0 : idx[a] > (double)(n[a] - 1) ? (double)(n[a] - 1) : idx[a];
    i0[a] = (int64_t)floor(c);
    if (i0[a] >= n[a] - 1) i0[a] = n[a] > 1 ? n[a] - 2 : 0;
    f[a] = n[a] > 1 ? c - (double)i0[a] : 0.0;
  }
  double v = 0.0;
  for (int k = 0; k < 8; ++k) {
    int64_t j[3];
    double w = 1.0;
    for (int a = 0; a < 3; ++a) {
      const int hi = (k >> a) & 1;
      j[a] = i0[a] + (n[a] > 1 ? hi : 0);
      w *= hi ? f[a] : 1.0 - f[a];
    }
    if (w == 0.0) continue;
    v += w * img->data[(j[2] * n[1] + j[1]) * n[0] + j[0]];
  }
  return v;
}

/* ---- intensity windows ------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* 0.5th..99.5th percentile over a regular subsample (robust to hot voxels). */
static gr_status window_of(const gr_image *img, double *lo, double *hi) {
  const int64_t n = gr_image_nvox(img);
  const int64_t stride = n > 262144 ? n / 262144 : 1, m = (n + stride - 1) / stride;
  float *v = malloc(sizeof(float) * (size_t)m);
  if (!v) return gr_error(GR_ERR_NOMEM, "QA: out of memory");
  for (int64_t i = 0; i < m; ++i) v[i] = img->data[i * stride];
  qsort(v, (size_t)m, sizeof(float), cmp_float);
  *lo = v[(int64_t)(0.005 * (double)(m - 1))];
  *hi = v[(int64_t)(0.995 * (double)(m - 1))];
  if (!(*hi > *lo)) *hi = *lo + 1.0;
  free(v);
  return GR_OK;
}

static unsigned char to_byte(double v, double lo, double hi) {
  const double t = (v - lo) / (hi - lo);
  return (unsigned char)(t <= 0 ? 0 : t >= 1 ? 255 : (int)(255.0 * t + 0.5));
}

/* ---- pictures ---------------------------------------------------------------------- */

typedef enum qa_mode { QA_CHECKER, QA_OVERLAY, QA_JACOBIAN } qa_mode;

typedef struct qa_ctx {
  const gr_qa_input *in;
  double flo, fhi, mlo, mhi;
  plane planes[3];
} qa_ctx;

static const gr_color outside = {24, 24, 32};

static gr_color jac_color(double det, double fixed01) {
  if (!(det > 0.0)) return (gr_color){235, 0, 0}; /* fold: the one saturated red in the picture */
  double t = log2(det);
  t = t < -1 ? -1 : t > 1 ? 1 : t;
  const double to[3] = {t < 0 ? 40 : 235, t < 0 ? 90 : 185, t < 0 ? 230 : 0}; /* blue: shrinks, yellow: grows */
  const double a = fabs(t), shade = 0.55 + 0.45 * fixed01;                  /* anatomy underneath */
  gr_color c;
  c.r = (unsigned char)(shade * ((1 - a) * 255 + a * to[0]));
  c.g = (unsigned char)(shade * ((1 - a) * 255 + a * to[1]));
  c.b = (unsigned char)(shade * ((1 - a) * 255 + a * to[2]));
  return c;
}

static void draw_panel(const qa_ctx *q, gr_rgb *img, int ox, int oy, const plane *p, qa_mode mode,
                       const gr_image *moving) {
  const int tile = GR_QA_PANEL / 8;
  for (int py = 0; py < GR_QA_PANEL; ++py)
    for (int px = 0; px < GR_QA_PANEL; ++px) {
      double idx[3];
      gr_color c = outside;
      if (plane_index(p, px, py, idx)) {
        const unsigned char f = to_byte(sample(q->in->fixed, idx), q->flo, q->fhi);
        if (mode == QA_JACOBIAN) {
          c = jac_color(sample(q->in->jacobian, idx), f / 255.0);
        } else {
          const unsigned char m = to_byte(sample(moving, idx), q->mlo, q->mhi);
          if (mode == QA_OVERLAY) c = (gr_color){f, m, f};
          else c = (((px / tile) + (py / tile)) & 1) ? (gr_color){m, m, m} : (gr_color){f, f, f};
        }
      }
      gr_rgb_put(img, ox + px, oy + py, c);
    }
  const gr_color label = {255, 210, 0};
  gr_draw_text(img, ox + 4, oy + 4, p->v->name, label, 1);
  gr_draw_text(img, ox + 3, oy + GR_QA_PANEL / 2 - 4, p->v->left, label, 1);
  gr_draw_text(img, ox + GR_QA_PANEL - 9, oy + GR_QA_PANEL / 2 - 4, p->v->right, label, 1);
  gr_draw_text(img, ox + GR_QA_PANEL / 2 - 3, oy + 4, p->v->top, label, 1);
}

static gr_status slices_png(const qa_ctx *q, gr_outdir *out, const char *name, const char *title, qa_mode mode,
                            const gr_image *moving) {
  int w, h;
  gr_qa_slices_size(&w, &h);
  gr_rgb img;
  gr_status s = gr_rgb_create(w, h, (gr_color){255, 255, 255}, &img);
  if (s != GR_OK) return s;
  gr_draw_text(&img, 4, 4, title, (gr_color){0, 0, 0}, 1);
  for (int v = 0; v < 3; ++v) draw_panel(q, &img, v * (GR_QA_PANEL + GR_QA_GAP), GR_QA_TITLE, &q->planes[v], mode, moving);
  char path[4400];
  s = gr_png_write(gr_outdir_stage(out, name, path, sizeof path), &img);
  gr_rgb_free(&img);
  return s;
}

static gr_status metric_pngs(const gr_qa_input *in, gr_outdir *out) {
  const gr_qa_history *h = in->history;
  gr_status s = GR_OK;
  for (int k = 0; k < in->nstages && s == GR_OK; ++k) {
    const int nl = in->levels[k] > 0 ? in->levels[k] : 1;
    double *vals = malloc(sizeof(double) * (size_t)(h->n > 0 ? h->n : 1));
    gr_metric_series *ser = calloc((size_t)nl, sizeof *ser);
    int *start = calloc((size_t)nl, sizeof *start);
    if (!vals || !ser || !start) s = gr_error(GR_ERR_NOMEM, "QA: out of memory");
    int used = 0;
    for (int l = 0; s == GR_OK && l < nl; ++l) { /* samples arrive in order; a level's are contiguous */
      start[l] = used;
      for (int i = 0; i < h->n; ++i)
        if (h->v[i].stage == k && h->v[i].level == l) vals[used++] = h->v[i].metric;
      ser[l] = (gr_metric_series){vals + start[l], used - start[l], l, nl};
    }
    if (s == GR_OK) {
      char title[128], name[64], path[4400];
      snprintf(title, sizeof title, "STAGE %d %s: LOSS (METRIC TO MINIMISE) PER ITERATION", k, in->stage_names[k]);
      snprintf(name, sizeof name, "qa_metric.%d.png", k);
      gr_rgb img;
      s = gr_metric_plot(ser, nl, title, &img);
      if (s == GR_OK) s = gr_png_write(gr_outdir_stage(out, name, path, sizeof path), &img);
      gr_rgb_free(&img);
    }
    free(vals);
    free(ser);
    free(start);
  }
  return s;
}

gr_status gr_qa_write(const gr_qa_input *in, gr_outdir *out) {
  qa_ctx q;
  memset(&q, 0, sizeof q);
  q.in = in;
  gr_status s = window_of(in->fixed, &q.flo, &q.fhi);
  /* One window for both moving pictures, from the registered one, so before and after compare fairly. */
  if (s == GR_OK) s = window_of(in->after, &q.mlo, &q.mhi);
  for (int v = 0; s == GR_OK && v < 3; ++v) s = plane_init(&in->fixed->geom, &views[v], &q.planes[v]);
  if (s == GR_OK)
    s = slices_png(&q, out, "qa_checkerboard_before.png", "CHECKERBOARD BEFORE REGISTRATION: FIXED / MOVING TILES",
                   QA_CHECKER, in->before);
  if (s == GR_OK)
    s = slices_png(&q, out, "qa_checkerboard_after.png", "CHECKERBOARD AFTER REGISTRATION: FIXED / WARPED MOVING TILES",
                   QA_CHECKER, in->after);
  if (s == GR_OK)
    s = slices_png(&q, out, "qa_overlay_before.png", "OVERLAY BEFORE: FIXED MAGENTA, MOVING GREEN, GREY WHERE ALIGNED",
                   QA_OVERLAY, in->before);
  if (s == GR_OK)
    s = slices_png(&q, out, "qa_overlay_after.png", "OVERLAY AFTER: FIXED MAGENTA, WARPED MOVING GREEN, GREY WHERE ALIGNED",
                   QA_OVERLAY, in->after);
  if (s == GR_OK && in->jacobian) {
    const int64_t n = gr_image_nvox(in->jacobian);
    int64_t folds = 0;
    double mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      const double d = in->jacobian->data[i];
      folds += !(d > 0.0);
      mn = fmin(mn, d);
      mx = fmax(mx, d);
    }
    char title[160];
    snprintf(title, sizeof title, "JACOBIAN DET: BLUE <1, WHITE 1, YELLOW >1, RED <=0 FOLDS %lld (%.3f%%)  MIN %.3f MAX %.3f",
             (long long)folds, 100.0 * (double)folds / (double)n, mn, mx);
    s = slices_png(&q, out, "qa_jacobian.png", title, QA_JACOBIAN, NULL);
  }
  if (s == GR_OK) s = metric_pngs(in, out);
  return s;
}
