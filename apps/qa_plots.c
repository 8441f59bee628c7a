#include <math.h>
#include <stdio.h>
#include <string.h>
#include "qa_plots.h"

/* ---- primitives ------------------------------------------------------------------ */

void gr_fill_rect(gr_rgb *img, int x0, int y0, int x1, int y1, gr_color c) {
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) gr_rgb_put(img, x, y, c);
}

void gr_draw_rect(gr_rgb *img, int x0, int y0, int x1, int y1, gr_color c) {
  for (int x = x0; x <= x1; ++x) {
    gr_rgb_put(img, x, y0, c);
    gr_rgb_put(img, x, y1, c);
  }
  for (int y = y0; y <= y1; ++y) {
    gr_rgb_put(img, x0, y, c);
    gr_rgb_put(img, x1, y, c);
  }
}

/* Steps of at most half a pixel along the longer axis: no gaps, no diagonal jaggies worse than one pixel. */
void gr_draw_line(gr_rgb *img, double x0, double y0, double x1, double y1, gr_color c, int thick) {
  const double dx = x1 - x0, dy = y1 - y0;
  const double len = fmax(fabs(dx), fabs(dy));
  const int steps = (int)ceil(2.0 * len) + 1;
  for (int i = 0; i <= steps; ++i) {
    const double t = steps ? (double)i / steps : 0.0;
    const int x = (int)floor(x0 + t * dx + 0.5), y = (int)floor(y0 + t * dy + 0.5);
    for (int a = 0; a < thick; ++a)
      for (int b = 0; b < thick; ++b) gr_rgb_put(img, x + a - thick / 2, y + b - thick / 2, c);
  }
}

/* ---- 5x7 font: rows top to bottom, bit 4 = leftmost column ------------------------ */

typedef struct glyph {
  char ch;
  unsigned char rows[7];
} glyph;

static const glyph font[] = {
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}}, {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
};

static const unsigned char *glyph_rows(char ch) {
  if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
  for (size_t i = 0; i < sizeof font / sizeof font[0]; ++i)
    if (font[i].ch == ch) return font[i].rows;
  return NULL;
}

int gr_text_width(const char *text, int scale) { return (int)strlen(text) * 6 * scale; }

int gr_draw_text(gr_rgb *img, int x, int y, const char *text, gr_color c, int scale) {
  int cx = x;
  for (const char *p = text; *p; ++p, cx += 6 * scale) {
    const unsigned char *rows = glyph_rows(*p);
    if (!rows) continue;
    for (int r = 0; r < 7; ++r)
      for (int col = 0; col < 5; ++col)
        if (rows[r] & (0x10 >> col)) gr_fill_rect(img, cx + col * scale, y + r * scale, cx + col * scale + scale - 1,
                                                  y + r * scale + scale - 1, c);
  }
  return cx - x;
}

/* ---- metric plot ------------------------------------------------------------------- */

void gr_metric_plot_size(int nlevels, int *w, int *h) {
  const int n = nlevels > 0 ? nlevels : 1;
  *w = n * GR_QA_PLOT_W + (n - 1) * GR_QA_GAP;
  *h = GR_QA_TITLE + GR_QA_PLOT_H;
}

static void fmt_value(double v, char *buf, size_t n) {
  if (v == 0.0 || (fabs(v) >= 1e-3 && fabs(v) < 1e5)) snprintf(buf, n, "%.4g", v);
  else snprintf(buf, n, "%.2e", v);
}

static void plot_panel(gr_rgb *img, int ox, int oy, const gr_metric_series *s) {
  const gr_color bg = {250, 250, 250}, axis = {60, 60, 60}, grid = {215, 215, 215}, line = {20, 90, 200},
                 text = {30, 30, 30}, dot = {200, 60, 20};
  gr_fill_rect(img, ox, oy, ox + GR_QA_PLOT_W - 1, oy + GR_QA_PLOT_H - 1, bg);
  /* Plot area inside margins for the labels. */
  const int L = ox + 56, R = ox + GR_QA_PLOT_W - 10, T = oy + 22, B = oy + GR_QA_PLOT_H - 24;
  char label[64];
  snprintf(label, sizeof label, "LEVEL %d/%d", s->level + 1, s->nlevels);
  gr_draw_text(img, ox + (GR_QA_PLOT_W - gr_text_width(label, 1)) / 2, oy + 6, label, text, 1);
  if (s->n <= 0) {
    gr_draw_text(img, L + 10, (T + B) / 2, "NO ITERATIONS", text, 1);
    gr_draw_rect(img, L, T, R, B, axis);
    return;
  }
  double lo = s->values[0], hi = s->values[0];
  for (int i = 1; i < s->n; ++i) {
    lo = fmin(lo, s->values[i]);
    hi = fmax(hi, s->values[i]);
  }
  if (!(hi > lo)) { /* flat: give the line a visible band */
    const double pad = fabs(lo) > 0 ? 0.01 * fabs(lo) : 1e-6;
    lo -= pad;
    hi += pad;
  }
  const double span = hi - lo;
  lo -= 0.05 * span;
  hi += 0.05 * span;
  const int last = s->n > 1 ? s->n - 1 : 1;
  for (int g = 1; g < 4; ++g) { /* horizontal grid at quarters */
    const int y = B - (B - T) * g / 4;
    gr_draw_line(img, L + 1, y, R - 1, y, grid, 1);
  }
  gr_draw_rect(img, L, T, R, B, axis);
  double px = 0, py = 0;
  for (int i = 0; i < s->n; ++i) {
    const double x = L + (double)(R - L) * i / last;
    const double y = B - (double)(B - T) * (s->values[i] - lo) / (hi - lo);
    if (i > 0) gr_draw_line(img, px, py, x, y, line, 2);
    px = x;
    py = y;
  }
  gr_fill_rect(img, (int)px - 2, (int)py - 2, (int)px + 2, (int)py + 2, dot); /* where it stopped */
  char v[32];
  fmt_value(hi, v, sizeof v);
  gr_draw_text(img, ox + 2, T - 3, v, text, 1);
  fmt_value(lo, v, sizeof v);
  gr_draw_text(img, ox + 2, B - 4, v, text, 1);
  fmt_value(s->values[s->n - 1], v, sizeof v);
  snprintf(label, sizeof label, "LAST %s", v);
  gr_draw_text(img, R - gr_text_width(label, 1) - 4, T + 4, label, dot, 1);
  gr_draw_text(img, L - 2, B + 6, "0", text, 1);
  snprintf(label, sizeof label, "%d", s->n - 1);
  gr_draw_text(img, R - gr_text_width(label, 1) + 2, B + 6, label, text, 1);
  gr_draw_text(img, (L + R - gr_text_width("ITERATION", 1)) / 2, B + 6, "ITERATION", text, 1);
}

gr_status gr_metric_plot(const gr_metric_series *levels, int nlevels, const char *title, gr_rgb *out) {
  int w, h;
  gr_metric_plot_size(nlevels, &w, &h);
  const gr_color white = {255, 255, 255};
  gr_status s = gr_rgb_create(w, h, white, out);
  if (s != GR_OK) return s;
  const gr_color text = {0, 0, 0};
  gr_draw_text(out, 4, 4, title, text, 1);
  for (int l = 0; l < nlevels; ++l) plot_panel(out, l * (GR_QA_PLOT_W + GR_QA_GAP), GR_QA_TITLE, &levels[l]);
  return GR_OK;
}
