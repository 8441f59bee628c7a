#!/bin/bash
# One parameter file run twice on one pair: elastix's own components, then the same file with
# only the component names swapped to their GigaReg versions (sed: Metric, Resampler,
# ResampleInterpolator). Both TransformParameters files
# are applied by transformix (-def all and a resampled moving image); the two deformation
# fields must agree: mean endpoint error over the head <= TOL mm.
#   run_pair.sh NAME PARAMS FIXED MOVING TOL [TRUTH_DEF|-]
# PARAMS: one file, or several separated by commas (elastix -p a -p b: each stage starts from
# the previous one's transform; the last TransformParameters file is compared).
# env COVER=1: compare only inside the moving image's field of view (chris_PD covers a slab of
# the head; outside it the B-spline is unconstrained by the data).
# env: ELX (elastix with GigaReg components), TFX (transformix), TOOL (elx_tool), WORK
# With TRUTH_DEF (a known warp's field) both runs are also compared to the truth (printed).
# env AAL (mricron-data's aal.nii.gz label atlas, in the moving image's physical space): both final
# TransformParameters files, set to FinalBSplineInterpolationOrder 0, warp the labels through
# transformix; the mean Dice (116 AAL labels) between the two warped label maps must be >= DICE_MIN
# (env, default 0.9). With TRUTH_DEF, the truth's TransformParameters file (TRUTH_DEF with
# _def.nii.gz replaced by .txt) warps them too: each run's Dice against these fixed-space labels is
# printed and the GigaReg run's must be >= that of elastix's run minus DICE_MARGIN (env, default 0.02).
set -euo pipefail
name=$1 params=$2 fixed=$3 moving=$4 tol=$5 truth=${6:-} cover=${COVER:-}
[ "$truth" = - ] && truth=
W="$WORK/$name"
rm -rf "$W"; mkdir -p "$W"
IFS=, read -r -a plist <<< "$params"
pe=() pg=()
for i in "${!plist[@]}"; do
  sed -E -e 's/^\(Metric "(Advanced[A-Za-z]*)"\)/(Metric "GigaReg\1")/' \
         -e 's/^\(Resampler "DefaultResampler"\)/(Resampler "GigaRegResampler")/' \
         -e 's/^\(ResampleInterpolator "FinalBSplineInterpolator"\)/(ResampleInterpolator "GigaRegResampleInterpolator")/' \
         "${plist[$i]}" > "$W/params_gigareg.$i.txt"
  cp "${plist[$i]}" "$W/params_elastix.$i.txt"
  grep -q '(Metric "GigaReg' "$W/params_gigareg.$i.txt" || { echo "no metric name to swap in ${plist[$i]}"; exit 2; }
  pe+=(-p "$W/params_elastix.$i.txt"); pg+=(-p "$W/params_gigareg.$i.txt")
done
last=$(( ${#plist[@]} - 1 ))
for v in elastix gigareg; do
  mkdir -p "$W/$v" "$W/$v-tx"
  t0=$(date +%s.%N)
  if [ $v = elastix ]; then pp=("${pe[@]}"); else pp=("${pg[@]}"); fi
  "$ELX" -f "$fixed" -m "$moving" "${pp[@]}" -out "$W/$v" > "$W/$v.stdout" 2>&1 \
    || { tail -30 "$W/$v/elastix.log"; echo "elastix ($v) failed"; exit 1; }
  t1=$(date +%s.%N)
  "$TFX" -in "$moving" -tp "$W/$v/TransformParameters.$last.txt" -out "$W/$v-tx" -def all > /dev/null 2>&1 \
    || { tail -20 "$W/$v-tx/transformix.log"; echo "transformix ($v) failed"; exit 1; }
  test -s "$W/$v-tx/result.nii.gz" && test -s "$W/$v-tx/deformationField.nii.gz"
  printf '%-8s elastix wall %.1f s   final metric %s\n' "$v" "$(awk "BEGIN{print $t1 - $t0}")" \
    "$(grep -h 'Final metric value' "$W/$v/elastix.log" | tail -1 | awk '{print $NF}')"
done
grep -q "GigaReg metric" "$W/gigareg/elastix.log" || { echo "the GigaReg component did not run"; exit 1; }
grep -q "GigaRegResampler: backend" "$W/gigareg/elastix.log" || { echo "the GigaReg resampler did not run"; exit 1; }
if [ -n "$truth" ]; then
  for v in elastix gigareg; do
    printf 'vs truth, %-8s ' "$v"; "$TOOL" epe "$W/$v-tx/deformationField.nii.gz" "$truth" "$fixed" 1e9
  done
fi
printf 'elastix vs GigaReg: '
"$TOOL" epe "$W/elastix-tx/deformationField.nii.gz" "$W/gigareg-tx/deformationField.nii.gz" "$fixed" "$tol" \
  ${cover:+"$W/elastix-tx/result.nii.gz"}
if [ -n "${AAL:-}" ]; then
  [ -s "$AAL" ] || { echo "AAL atlas $AAL missing"; exit 1; }
  lab=() # label maps: elastix gigareg [truth]
  tps=("$W/elastix/TransformParameters.$last.txt" "$W/gigareg/TransformParameters.$last.txt")
  [ -n "$truth" ] && tps+=("${truth%_def.nii.gz}.txt")
  for i in "${!tps[@]}"; do
    d="$W/aal.$i"; mkdir -p "$d"
    sed -E -e 's/^\(FinalBSplineInterpolationOrder .*/(FinalBSplineInterpolationOrder 0)/' \
           -e 's/^\(ResultImagePixelType .*/(ResultImagePixelType "short")/' \
           -e 's/^\(ResultImageFormat .*/(ResultImageFormat "nii.gz")/' "${tps[$i]}" > "$d/tp.txt"
    "$TFX" -in "$AAL" -tp "$d/tp.txt" -out "$d" > /dev/null 2>&1 \
      || { tail -20 "$d/transformix.log"; echo "transformix (labels) failed"; exit 1; }
    lab+=("$d/result.nii.gz")
  done
  printf 'AAL labels warped by elastix vs GigaReg transforms: '
  "$TOOL" dice "${lab[0]}" "${lab[1]}" 1 "${DICE_MIN:-0.9}"
  if [ -n "$truth" ]; then
    de=$("$TOOL" dice "${lab[2]}" "${lab[0]}" 1 | awk '{print $NF}')
    dg=$("$TOOL" dice "${lab[2]}" "${lab[1]}" 1 | awk '{print $NF}')
    echo "AAL Dice vs the labels warped by the known transform (fixed space): elastix $de, GigaReg $dg"
    awk -v e="$de" -v g="$dg" -v m="${DICE_MARGIN:-0.02}" 'BEGIN { exit !(g >= e - m) }' \
      || { echo "GigaReg's AAL Dice vs the truth is more than ${DICE_MARGIN:-0.02} below elastix's"; exit 1; }
  fi
fi
