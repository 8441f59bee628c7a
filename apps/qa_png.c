#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qa_png.h"
#ifdef GIGAREG_HAVE_PNG
#include <png.h>
#endif

gr_status gr_rgb_create(int w, int h, gr_color fill, gr_rgb *out) {
  memset(out, 0, sizeof *out);
  if (w <= 0 || h <= 0) return gr_error(GR_ERR_INVALID_ARG, "QA image of %d x %d pixels", w, h);
  out->px = malloc((size_t)w * (size_t)h * 3);
  if (!out->px) return gr_error(GR_ERR_NOMEM, "cannot allocate a %d x %d QA image", w, h);
  out->w = w;
  out->h = h;
  for (size_t i = 0; i < (size_t)w * (size_t)h; ++i) {
    out->px[3 * i] = fill.r;
    out->px[3 * i + 1] = fill.g;
    out->px[3 * i + 2] = fill.b;
  }
  return GR_OK;
}

void gr_rgb_free(gr_rgb *img) {
  free(img->px);
  img->px = NULL;
  img->w = img->h = 0;
}

#ifdef GIGAREG_HAVE_PNG
int gr_png_available(void) { return 1; }

/* libpng reports errors through a callback that must not return; it jumps back
 * to gr_png_write with the message kept here (libpng's default would print it
 * on stderr, which breaks the one-error-line rule). */
typedef struct png_err {
  char msg[200];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_err *e = png_get_error_ptr(png);
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* warnings (e.g. about chunk order) do not make the picture wrong */
}

gr_status gr_png_write(const char *path, const gr_rgb *img) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return gr_error(GR_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  png_err err;
  err.msg[0] = '\0';
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    fclose(fp);
    return gr_error(GR_ERR_NOMEM, "libpng: cannot start writing '%s'", path);
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    fclose(fp);
    return gr_error(GR_ERR_IO, "cannot write '%s': libpng: %s", path, err.msg);
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img->h; ++y) png_write_row(png, img->px + (size_t)y * (size_t)img->w * 3);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  if (fclose(fp) != 0) return gr_error(GR_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return GR_OK;
}
#else
int gr_png_available(void) { return 0; }

gr_status gr_png_write(const char *path, const gr_rgb *img) {
  (void)img;
  return gr_error(GR_ERR_UNSUPPORTED,
                  "cannot write '%s': this gigareg was built without libpng, so -qa is unavailable "
                  "(install libpng-dev and rebuild)", path);
}
#endif
