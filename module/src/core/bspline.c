/* gr_bspline_prepare (backend.h): the inverse of the voxel -> control-index map,
 * which bounds each control point's support in voxels (bspline_grad's gather). */
#include <math.h>
#include "gigareg/backend.h"
#include "gigareg/status.h"

gr_status gr_bspline_prepare(gr_bspline *bs) {
  if (!bs) return gr_error(GR_ERR_INVALID_ARG, "gr_bspline_prepare: NULL B-spline");
  for (int a = 0; a < 3; ++a)
    if (bs->size[a] < 4)
      return gr_error(GR_ERR_INVALID_ARG, "B-spline grid: %lld control points along axis %d (a cubic B-spline needs >= 4)",
                      (long long)bs->size[a], a);
  const double *m = bs->cA;
  const double a00 = m[0], a01 = m[1], a02 = m[2], a10 = m[4], a11 = m[5], a12 = m[6], a20 = m[8], a21 = m[9],
               a22 = m[10];
  const double c00 = a11 * a22 - a12 * a21, c01 = a02 * a21 - a01 * a22, c02 = a01 * a12 - a02 * a11;
  const double c10 = a12 * a20 - a10 * a22, c11 = a00 * a22 - a02 * a20, c12 = a02 * a10 - a00 * a12;
  const double c20 = a10 * a21 - a11 * a20, c21 = a01 * a20 - a00 * a21, c22 = a00 * a11 - a01 * a10;
  const double det = a00 * c00 + a01 * c10 + a02 * c20;
  /* relative to the rows' lengths, so that a scaled grid is not "singular" */
  const double r0 = sqrt(a00 * a00 + a01 * a01 + a02 * a02), r1 = sqrt(a10 * a10 + a11 * a11 + a12 * a12),
               r2 = sqrt(a20 * a20 + a21 * a21 + a22 * a22);
  if (!(fabs(det) > 1e-12 * r0 * r1 * r2) || !isfinite(det))
    return gr_error(GR_ERR_INVALID_ARG, "B-spline grid: the voxel -> control-index map is singular (det %g)", det);
  const double inv[9] = {c00 / det, c01 / det, c02 / det, c10 / det, c11 / det, c12 / det, c20 / det, c21 / det, c22 / det};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) bs->iA[r * 4 + c] = inv[r * 3 + c];
    bs->iA[r * 4 + 3] = -(inv[r * 3] * m[3] + inv[r * 3 + 1] * m[7] + inv[r * 3 + 2] * m[11]);
  }
  return GR_OK;
}
