/* RGB raster buffers and their PNG files (libpng), for `gigareg -qa`. Kept in
 * the application: the core library has no business drawing pictures. */
#ifndef GIGAREG_CLI_QA_PNG_H
#define GIGAREG_CLI_QA_PNG_H
#include "gigareg/gigareg.h"

typedef struct gr_rgb {
  int w, h;
  unsigned char *px; /* w * h * 3, row-major from the top */
} gr_rgb;

typedef struct gr_color {
  unsigned char r, g, b;
} gr_color;

gr_status gr_rgb_create(int w, int h, gr_color fill, gr_rgb *out);
void gr_rgb_free(gr_rgb *img);
static inline void gr_rgb_put(gr_rgb *img, int x, int y, gr_color c) {
  if (x < 0 || y < 0 || x >= img->w || y >= img->h) return;
  unsigned char *p = img->px + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

/* 1 when this gigareg was built with libpng. */
int gr_png_available(void);
/* 8-bit RGB PNG. GR_ERR_UNSUPPORTED naming libpng when built without it. */
gr_status gr_png_write(const char *path, const gr_rgb *img);
#endif
