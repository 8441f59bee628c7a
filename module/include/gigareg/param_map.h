/* elastix parameter map -> one GigaReg stage.
 *
 * Every key in the map ends up either honoured (mapped onto the stage or the
 * output configuration) or named in one warning line on `warn`; nothing is
 * dropped silently. Impossible values are GR_ERR_PARAM naming the file, key
 * and value. The full key table is docs/elastix-compatibility.md. */
#ifndef GIGAREG_PARAM_MAP_H
#define GIGAREG_PARAM_MAP_H

#include <stdio.h>
#include "gigareg/params.h"
#include "gigareg/registration.h"
#include "gigareg/elastix_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *stage (starting from gr_stage_config_defaults of the mapped kind) and
 * *out (starting from gr_output_config_defaults). origin names the file in
 * messages. warn may be NULL (warnings are then not printed). On error the
 * outputs are unspecified. */
gr_status gr_stage_config_from_params(const gr_param_map *m, const char *origin, gr_stage_config *stage,
                                      gr_output_config *out, FILE *warn);

/* FinalGridSpacingInPhysicalUnits is in mm, field smoothing in voxels: once the
 * fixed image is known, set field_sigma_vox = max(0.5, spacing_vox / 4) with
 * spacing_vox = final_grid_spacing_mm / (mean fixed spacing). No-op when
 * final_grid_spacing_mm is 0 or the stage is not deformable. The driver should
 * not otherwise coarsen the field for final_grid_spacing_mm. */
void gr_stage_config_resolve_grid_spacing(gr_stage_config *stage, const gr_geometry *fixed);

#ifdef __cplusplus
}
#endif
#endif
