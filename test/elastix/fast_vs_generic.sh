#!/bin/bash
# The B-spline fast path of the GigaReg metrics (own cubic B-spline evaluation, also after a
# linear initial transform) against the generic path through elastix's TransformPoint /
# EvaluateJacobianWithImageGradientProduct (GIGAREG_ELX_GENERIC=1): one registration each.
# The first 10 iterations of the last stage's first resolution must print the same metric value
# and gradient norm (6 decimals); the final TransformParameters agree within TOL (relative L2:
# 200 iterations amplify the different rounding of the two evaluation orders).
#   fast_vs_generic.sh NAME FIXED MOVING TOL P1 [P2 ...]   (elastix parameter files, run as stages
#   with the metric names swapped to the GigaReg ones)
# env: ELX, WORK
set -euo pipefail
name=$1 fixed=$2 moving=$3 tol=$4; shift 4
W="$WORK/$name"
rm -rf "$W"; mkdir -p "$W/fast" "$W/generic"
args=(); i=0
for f in "$@"; do
  sed -E 's/^\(Metric "(Advanced[A-Za-z]*)"\)/(Metric "GigaReg\1")/' "$f" > "$W/params.$i.txt"
  args+=(-p "$W/params.$i.txt"); i=$((i + 1))
done
set -- "${args[@]}"
GIGAREG_ELX_GENERIC=0 "$ELX" -f "$fixed" -m "$moving" "$@" -out "$W/fast" > "$W/fast.stdout" 2>&1 \
  || { tail -20 "$W/fast/elastix.log"; exit 1; }
GIGAREG_ELX_GENERIC=1 "$ELX" -f "$fixed" -m "$moving" "$@" -out "$W/generic" > "$W/generic.stdout" 2>&1 \
  || { tail -20 "$W/generic/elastix.log"; exit 1; }
last=$(ls "$W/fast" | grep -c '^TransformParameters\.[0-9]*\.txt$'); last=$((last - 1))
tp() { grep '^(TransformParameters ' "$1" | sed -e 's/^(TransformParameters //' -e 's/)$//' | tr ' ' '\n'; }
for v in fast generic; do
  printf '%-8s %s\n' "$v" "$(grep -h 'GigaReg metric time' "$W/$v/elastix.log" | tail -1)"
done
it() { awk 'NR >= 2 && NR <= 11 {print $1, $2, $5}' "$1"; }
if ! diff <(it "$W/fast/IterationInfo.$last.R0.txt") <(it "$W/generic/IterationInfo.$last.R0.txt"); then
  echo "fast and generic paths differ in the first iterations"; exit 1
fi
echo "first 10 iterations: identical metric values and gradient norms"
paste <(tp "$W/fast/TransformParameters.$last.txt") <(tp "$W/generic/TransformParameters.$last.txt") |
  awk -v tol="$tol" '{d = $1 - $2; s += d * d; n += $1 * $1}
    END {r = n > 0 ? sqrt(s / n) : 0; printf "fast vs generic B-spline parameters: relative L2 difference %.2e (tolerance %g)\n", r, tol; exit r <= tol ? 0 : 1}'
