#!/bin/bash
# Test inputs of the elastix-component tests (CTest fixture elastix_data).
#   prepare.sh WORK
# env: TFX (transformix), TOOL (elx_tool), DATA (test/data)
#   WORK/t1.nii.gz          chris_t1 box-downsampled x3 (2.64 mm, 62x85x63)
#   WORK/t1_affine.nii.gz   t1 warped by a known affine  (truth: WORK/truth_affine.txt)
#   WORK/t1_bspline.nii.gz  t1 warped by a known B-spline (truth: WORK/truth_bspline.txt)
#   WORK/pd.nii.gz          chris_PD as shipped (the multimodal moving image)
#   WORK/t1_mask.nii.gz     head mask of t1 (> 20% of its max); WORK/pd_mask.nii.gz the same for pd
set -euo pipefail
W=$1
mkdir -p "$W"
"$TOOL" downsample "$DATA/chris_t1.nii.gz" "$W/t1.nii.gz" 3
cp "$DATA/chris_PD.nii.gz" "$W/pd.nii.gz"
"$TOOL" mask "$W/t1.nii.gz" "$W/t1_mask.nii.gz" 0.2
"$TOOL" mask "$W/pd.nii.gz" "$W/pd_mask.nii.gz" 0.2
"$TOOL" affine-tp "$W/t1.nii.gz" "$W/truth_affine.txt"
"$TOOL" bspline-tp "$W/t1.nii.gz" "$W/truth_bspline.txt" 3.0 30
for k in affine bspline; do
  rm -rf "$W/tx_$k"; mkdir -p "$W/tx_$k"
  "$TFX" -in "$W/t1.nii.gz" -tp "$W/truth_$k.txt" -out "$W/tx_$k" -def all > /dev/null
  cp "$W/tx_$k/result.nii.gz" "$W/t1_$k.nii.gz"
  cp "$W/tx_$k/deformationField.nii.gz" "$W/truth_${k}_def.nii.gz"
done
echo "test inputs ready in $W"
