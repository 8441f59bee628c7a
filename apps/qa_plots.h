/* Drawing into RGB buffers (lines, boxes, a 5x7 bitmap font) and the
 * metric-versus-iteration plot of `gigareg -qa`. */
#ifndef GIGAREG_CLI_QA_PLOTS_H
#define GIGAREG_CLI_QA_PLOTS_H
#include "qa_png.h"

void gr_draw_line(gr_rgb *img, double x0, double y0, double x1, double y1, gr_color c, int thick);
void gr_draw_rect(gr_rgb *img, int x0, int y0, int x1, int y1, gr_color c);      /* outline, inclusive */
void gr_fill_rect(gr_rgb *img, int x0, int y0, int x1, int y1, gr_color c);      /* inclusive */
/* Text in a 5x7 font (6 x 8 pixel cells at scale 1); lower case is drawn as upper case,
 * characters without a glyph as blanks. Returns the width drawn. */
int gr_draw_text(gr_rgb *img, int x, int y, const char *text, gr_color c, int scale);
int gr_text_width(const char *text, int scale);

/* One pyramid level's loss per iteration. */
typedef struct gr_metric_series {
  const double *values;
  int n;
  int level, nlevels;
} gr_metric_series;

#define GR_QA_PLOT_W 320
#define GR_QA_PLOT_H 240
#define GR_QA_GAP 4
#define GR_QA_TITLE 16
/* Size of the picture for `nlevels` panels. */
void gr_metric_plot_size(int nlevels, int *w, int *h);
/* Panels side by side, one per level, with a title line. */
gr_status gr_metric_plot(const gr_metric_series *levels, int nlevels, const char *title, gr_rgb *out);
#endif
