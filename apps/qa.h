/* `gigareg -qa`: pictures to judge a registration by eye, written into -out:
 *   qa_checkerboard_before.png / _after.png  fixed and warped moving in alternating tiles
 *   qa_overlay_before.png / _after.png       fixed in magenta, moving in green (grey where they agree)
 *   qa_jacobian.png                          det of the deformable part's Jacobian; folds (<= 0) in red
 *   qa_metric.K.png                          loss per iteration, one panel per pyramid level of stage K
 * Slice pictures show axial, coronal and sagittal planes through the centre of
 * the fixed image, in radiological display (patient left on the right) with
 * physical aspect ratio, each panel GR_QA_PANEL pixels square. */
#ifndef GIGAREG_CLI_QA_H
#define GIGAREG_CLI_QA_H
#include "gigareg/gigareg.h"
#include "outputs.h"

#define GR_QA_PANEL 256

/* Per-iteration losses collected from the progress callback. */
typedef struct gr_qa_sample {
  int stage, level, iteration;
  double metric;
} gr_qa_sample;

typedef struct gr_qa_history {
  gr_qa_sample *v;
  int n, cap;
} gr_qa_history;

gr_status gr_qa_history_push(gr_qa_history *h, int stage, int level, int iteration, double metric);
void gr_qa_history_free(gr_qa_history *h);

typedef struct gr_qa_input {
  const gr_image *fixed;       /* on the fixed grid */
  const gr_image *before;      /* moving resampled onto the fixed grid without the registration (-t0 only) */
  const gr_image *after;       /* moving resampled through the whole result */
  const gr_image *jacobian;    /* det on the fixed grid, or NULL without a deformable stage */
  const gr_qa_history *history;
  int nstages;
  const char *stage_names[32];
  int levels[32];
} gr_qa_input;

/* Slice picture size (three panels and a title line). */
void gr_qa_slices_size(int *w, int *h);
/* Writes the pictures through the output folder's staging (published with the rest). */
gr_status gr_qa_write(const gr_qa_input *in, gr_outdir *out);
#endif
