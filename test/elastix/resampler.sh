#!/bin/bash
# GigaRegResampler / GigaRegResampleInterpolator against elastix's DefaultResampler /
# FinalBSplineInterpolator on the same transform.
#   resampler.sh NAME TP MOVING ORDER TOL MINEQ PARAMS
# 1. transformix of this build applies the TransformParameters file TP (its fixed grid) to MOVING
#    twice: with elastix's resampler and interpolator (FinalBSplineInterpolationOrder ORDER) and
#    with the GigaReg names; the two result images must agree over the head of the fixed image
#    (elx_tool compare: mean |difference| <= TOL of the intensity range, a fraction >= MINEQ of the
#    voxels equal to 1e-4 of it). DefaultPixelValue 7 checks the outside rule.
# 2. elastix runs PARAMS (GigaReg metric, resampler and interpolator, ORDER) on FIXED = the TP's
#    fixed image (WORK/t1.nii.gz) and MOVING: its TransformParameters.0.txt must name the standard
#    components, and Debian's transformix must reproduce result.0 from it (same tolerances).
# env: ELX, TFXB (transformix of this build), TFX (Debian's transformix), TOOL, WORK
set -euo pipefail
name=$1 tp=$2 moving=$3 order=$4 tol=$5 mineq=$6 params=$7
W="$WORK/$name"
fixed="$WORK/t1.nii.gz"
rm -rf "$W"; mkdir -p "$W"
set_keys() { # FILE RESAMPLER INTERPOLATOR: the resampling keys replaced
  grep -vE '^\((Resampler|ResampleInterpolator|FinalBSplineInterpolationOrder|DefaultPixelValue|ResultImagePixelType|ResultImageFormat) ' "$1"
  printf '(Resampler "%s")\n(ResampleInterpolator "%s")\n(FinalBSplineInterpolationOrder %s)\n' "$2" "$3" "$order"
  printf '(DefaultPixelValue 7)\n(ResultImagePixelType "float")\n(ResultImageFormat "nii.gz")\n'
}
set_keys "$tp" DefaultResampler FinalBSplineInterpolator > "$W/tp_elastix.txt"
set_keys "$tp" GigaRegResampler GigaRegResampleInterpolator > "$W/tp_gigareg.txt"
for v in elastix gigareg; do
  mkdir -p "$W/tx_$v"
  "$TFXB" -in "$moving" -tp "$W/tp_$v.txt" -out "$W/tx_$v" > "$W/tx_$v.stdout" 2>&1 \
    || { tail -20 "$W/tx_$v/transformix.log"; echo "transformix ($v) failed"; exit 1; }
done
grep -h "GigaRegResampler: backend" "$W/tx_gigareg/transformix.log" || { echo "GigaRegResampler did not run"; exit 1; }
printf 'transformix, DefaultResampler vs GigaRegResampler (order %s): ' "$order"
"$TOOL" compare "$W/tx_gigareg/result.nii.gz" "$W/tx_elastix/result.nii.gz" "$fixed" "$tol" "$mineq"

# 2. inside elastix; the written file is applied by Debian's transformix
set_keys "$params" GigaRegResampler GigaRegResampleInterpolator \
  | sed -E 's/^\(Metric "(Advanced[A-Za-z]*)"\)/(Metric "GigaReg\1")/; s/^\(MaximumNumberOfIterations .*/(MaximumNumberOfIterations 30)/' \
  > "$W/params.txt"
mkdir -p "$W/elx" "$W/elx_tx"
"$ELX" -f "$fixed" -m "$moving" -p "$W/params.txt" -out "$W/elx" > "$W/elx.stdout" 2>&1 \
  || { tail -30 "$W/elx/elastix.log"; echo "elastix failed"; exit 1; }
grep -h "GigaRegResampler: backend" "$W/elx/elastix.log" || { echo "GigaRegResampler did not run in elastix"; exit 1; }
grep -q '^(Resampler "DefaultResampler")' "$W/elx/TransformParameters.0.txt" \
  && grep -q '^(ResampleInterpolator "FinalBSplineInterpolator")' "$W/elx/TransformParameters.0.txt" \
  && grep -q "^(FinalBSplineInterpolationOrder $order)" "$W/elx/TransformParameters.0.txt" \
  || { echo "TransformParameters.0.txt does not name the standard resampling components"; exit 1; }
"$TFX" -in "$moving" -tp "$W/elx/TransformParameters.0.txt" -out "$W/elx_tx" > /dev/null 2>&1 \
  || { tail -20 "$W/elx_tx/transformix.log"; echo "Debian transformix failed on the written file"; exit 1; }
printf 'elastix result.0 (GigaRegResampler) vs Debian transformix on TransformParameters.0.txt: '
"$TOOL" compare "$W/elx/result.0.nii.gz" "$W/elx_tx/result.nii.gz" "$fixed" "$tol" "$mineq"
