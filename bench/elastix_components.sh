#!/bin/bash
# elastix's own metric components vs their GigaReg versions: the same parameter file on the
# same pair, only the component names swapped ("gigareg": metric, resampler, resample interpolator), plus elastix's own metric with
# (ImageSampler "Full") ("elastix-full": every voxel, what the GigaReg metric evaluates). Reports wall time per resolution and in total
# (elastix.log), peak memory (/usr/bin/time -v), the final metric value and the agreement of
# the two transforms (mean endpoint error over the head, from transformix -def all).
#
#   bench/elastix_components.sh [BUILD_DIR] [DOWNSAMPLE] [PARAMS...]
#     BUILD_DIR   a GigaReg build with elastix components (default build-elx)
#     DOWNSAMPLE  box-downsampling factor of chris_t1 (fixed; default 2: 1.76 mm); chris_PD is
#                 the moving image as shipped
#     PARAMS      parameter files; "a.txt,b.txt" runs them as stages (elastix -p a -p b)
#                 (default: affine_mi.txt, and affine_mi.txt,bspline_mi.txt from test/elastix/params)
# env: GIGAREG_DEVICE (adds (GigaRegDevice "...") to the GigaReg run), OMP_NUM_THREADS.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-$here/build-elx}" && pwd)
F=${2:-2}
shift $(( $# > 2 ? 2 : $# )) || true
P=("$@")
q=$here/test/elastix/params
[ ${#P[@]} -gt 0 ] || P=("$q/affine_mi.txt" "$q/affine_mi.txt,$q/bspline_mi.txt")
ELX=$B/elastix-build/bin/elastix
TFX=${TFX:-$(command -v transformix)}
TOOL=$B/elx_tool
W=$B/bench-elastix
mkdir -p "$W"
"$TOOL" downsample "$here/test/data/chris_t1.nii.gz" "$W/t1.nii.gz" "$F"
fixed=$W/t1.nii.gz moving=$here/test/data/chris_PD.nii.gz
echo "fixed chris_t1 /$F, moving chris_PD; $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
for p in "${P[@]}"; do
  IFS=, read -r -a plist <<< "$p"
  n=$(for f in "${plist[@]}"; do basename "$f" .txt; done | paste -sd+)
  last=$(( ${#plist[@]} - 1 ))
  printf '\n== %s\n' "$n"
  for v in elastix elastix-full gigareg; do
    d=$W/$n-$v; rm -rf "$d" "$d-tx"; mkdir -p "$d" "$d-tx"
    args=()
    for i in "${!plist[@]}"; do
      if [ $v = gigareg ]; then
        sed -E -e 's/^\(Metric "(Advanced[A-Za-z]*)"\)/(Metric "GigaReg\1")/' \
               -e 's/^\(Resampler "DefaultResampler"\)/(Resampler "GigaRegResampler")/' \
               -e 's/^\(ResampleInterpolator "FinalBSplineInterpolator"\)/(ResampleInterpolator "GigaRegResampleInterpolator")/' \
               "${plist[$i]}" > "$d/params.$i.txt"
        [ -n "${GIGAREG_DEVICE:-}" ] && echo "(GigaRegDevice \"$GIGAREG_DEVICE\")" >> "$d/params.$i.txt"
      elif [ $v = elastix-full ]; then # elastix's own metric on every voxel, as the GigaReg metric evaluates
        sed -E -e 's/^\(ImageSampler "[A-Za-z]*"\)/(ImageSampler "Full")/' \
               -e 's/^\(NewSamplesEveryIteration "true"\)/(NewSamplesEveryIteration "false")/' "${plist[$i]}" > "$d/params.$i.txt"
      else
        cp "${plist[$i]}" "$d/params.$i.txt"
      fi
      args+=(-p "$d/params.$i.txt")
    done
    /usr/bin/time -v "$ELX" -f "$fixed" -m "$moving" "${args[@]}" -out "$d" > "$d/stdout" 2> "$d/time.txt"
    "$TFX" -in "$moving" -tp "$d/TransformParameters.$last.txt" -out "$d-tx" -def all > /dev/null
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$d/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$d/time.txt")
    res=$(grep -h "Time spent in resolution" "$d/elastix.log" | awk '{printf "%s ", $(NF-1)}')
    printf '%-12s wall %s  peak RSS %s MiB  per resolution [s]: %s\n' "$v" "$wall" "$rss" "$res"
    grep -h "GigaReg metric time" "$d/elastix.log" | sed 's/^ */             /' || true
  done
  printf 'agreement elastix-full vs gigareg: '
  "$TOOL" epe "$W/$n-elastix-full-tx/deformationField.nii.gz" "$W/$n-gigareg-tx/deformationField.nii.gz" "$fixed" 1e9 \
    "$W/$n-elastix-tx/result.nii.gz"
  printf 'agreement elastix vs gigareg:      '
  "$TOOL" epe "$W/$n-elastix-tx/deformationField.nii.gz" "$W/$n-gigareg-tx/deformationField.nii.gz" "$fixed" 1e9 \
    "$W/$n-elastix-tx/result.nii.gz"
done
