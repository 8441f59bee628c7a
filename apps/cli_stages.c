#include <string.h>
#include "cli_stages.h"

gr_status gr_cli_load_stage(const gr_cli_args *a, int k, FILE *warn, gr_stage_config *stage, gr_output_config *out) {
  gr_param_map *m = NULL;
  char origin[160];
  const char *name = a->params[k];
  gr_status s;
  if (a->param_text[k]) {
    /* Messages name the preset file as it is in the source tree (apps/params). */
    snprintf(origin, sizeof origin, "preset %s (apps/params/%s)", a->preset ? a->preset : "?", a->params[k]);
    name = origin;
    s = gr_param_map_parse(a->param_text[k], strlen(a->param_text[k]), name, &m);
  } else {
    s = gr_param_map_read(name, &m);
  }
  if (s == GR_OK) s = gr_stage_config_from_params(m, name, stage, out, warn);
  gr_param_map_destroy(m);
  /* --iterations caps every level (Slicer's "fast preview" control). */
  if (s == GR_OK && a->iterations > 0)
    for (int l = 0; l < stage->levels && l < GR_MAX_LEVELS; ++l)
      if (stage->iterations[l] > a->iterations) stage->iterations[l] = a->iterations;
  return s;
}
