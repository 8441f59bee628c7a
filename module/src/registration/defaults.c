#include <string.h>
#include "gigareg/registration.h"

/* Defaults that work on brain MRI without tuning (ANTs/FireANTs-like for the
 * deformable stages, elastix-like pyramids for the linear ones). */
void gr_stage_config_defaults(gr_stage_kind kind, gr_stage_config *c) {
  memset(c, 0, sizeof *c);
  c->kind = kind;
  const int deformable = (kind == GR_STAGE_GREEDY || kind == GR_STAGE_SYN);
  c->metric.kind = deformable ? GR_METRIC_LNCC : GR_METRIC_MI;
  c->metric.lncc_radius = 2;
  c->metric.mi_bins = 32;
  c->levels = 3;
  const double shrink[3] = {4, 2, 1};
  const int it_lin[3] = {200, 150, 100};
  const int it_def[3] = {200, 100, 50};
  for (int l = 0; l < 3; ++l) {
    c->shrink[l] = shrink[l];
    c->sigma_vox[l] = deformable ? 0.5 * (shrink[l] - 1.0) : 0.5 * shrink[l];
    c->iterations[l] = deformable ? it_def[l] : it_lin[l];
    c->learning_rate[l] = deformable ? 0.25 : 0.0; /* 0 = derive from the level's voxel size */
  }
  c->optimizer = deformable ? GR_OPT_ADAM : GR_OPT_GD;
  c->grad_sigma_vox = 1.0;
  /* Greedy composes every step into one field, so noise in textureless regions
   * accumulates: sigma 1.0 halved the endpoint error of test_reg_deformable
   * (0.53 -> 0.32 voxel). SyN's two half-way fields are each moved half as far
   * and keep FireANTs' 0.5. */
  c->field_sigma_vox = kind == GR_STAGE_SYN ? 0.5 : 1.0;
  c->adam_beta1 = 0.9;
  c->adam_beta2 = 0.99;
  c->adam_eps = 1e-8;
  c->convergence_window = 10;
  c->convergence_tol = deformable ? 1e-5 : 1e-6;
  c->init = GR_INIT_GEOMETRIC_CENTER;
  c->final_grid_spacing_mm = 0.0;
  c->shards = 0;
}
