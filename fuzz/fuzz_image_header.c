/* libFuzzer target for the image readers (NIfTI-1/2, MetaImage, NRRD headers
 * and data): the first input byte picks the format, the rest becomes the file.
 * Any input must give GR_OK or a clean error, never a crash, hang or leak. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include "gigareg/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const ext[] = {".nii", ".mha", ".nrrd", ".nii.gz", ".nhdr"};
  if (size < 1) return 0;
  char path[256];
  snprintf(path, sizeof path, "/tmp/gigareg-fuzz-%ld%s", (long)getpid(), ext[data[0] % 5]);
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data + 1, 1, size - 1, f);
  fclose(f);
  gr_image *img = NULL;
  if (gr_image_read(path, &img) == GR_OK) gr_image_destroy(img);
  gr_geometry g;
  int nc = 0;
  gr_pixel_type t;
  (void)gr_image_read_header(path, &g, &nc, &t);
  unlink(path);
  return 0;
}
