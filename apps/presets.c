/* --preset NAME: a chain of the embedded apps/params files (what SlicerElastix
 * users know as "generic rigid" / "generic (all)" presets). Deformable presets
 * start with rigid and affine stages because the greedy/SyN stages assume
 * the images are already roughly aligned. */
#include <string.h>
#include "cli_args.h"

typedef struct preset {
  const char *name;
  const char *files[4];
} preset;

static const preset presets[] = {
    {"rigid", {"rigid_mi.txt", NULL}},
    {"affine", {"rigid_mi.txt", "affine_mi.txt", NULL}},
    {"deformable-lncc", {"rigid_mi.txt", "affine_mi.txt", "greedy_lncc.txt", NULL}},
    {"deformable-mi", {"rigid_mi.txt", "affine_mi.txt", "greedy_mi.txt", NULL}},
    {"syn-lncc", {"rigid_mi.txt", "affine_mi.txt", "syn_lncc.txt", NULL}},
};

const char *gr_preset_name(int i) {
  return i >= 0 && i < (int)(sizeof presets / sizeof presets[0]) ? presets[i].name : NULL;
}

static const char *embedded_text(const char *file) {
  for (int i = 0; i < gr_embedded_param_count; ++i)
    if (!strcmp(gr_embedded_params[i].name, file)) return gr_embedded_params[i].text;
  return NULL;
}

int gr_preset_stages(const char *name, const char **names, const char **texts, int max) {
  for (size_t p = 0; p < sizeof presets / sizeof presets[0]; ++p) {
    if (strcmp(presets[p].name, name) != 0) continue;
    int n = 0;
    for (int k = 0; k < 4 && presets[p].files[k] && n < max; ++k) {
      const char *t = embedded_text(presets[p].files[k]);
      if (!t) return 0; /* a preset file missing from apps/params: a build error, reported as unknown */
      names[n] = presets[p].files[k];
      texts[n++] = t;
    }
    return n;
  }
  return 0;
}
