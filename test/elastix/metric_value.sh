#!/bin/bash
# Metric value and derivative of a GigaReg metric against elastix's own, on the same
# parameters: ImageSampler Full, linear interpolation, one resolution at the input grid.
# Iteration 0 of IterationInfo.0.R0.txt holds the metric value at the initial transform and
# the norm of its derivative (both runs use the same scales and transform). With one
# iteration from the identity (zero parameters: Euler, B-spline) and the same fixed gain,
# the final TransformParameters are -gain * derivative, so their relative L2 difference
# compares the whole derivative vector (direction and size) with elastix's analytic one.
#   metric_value.sh METRIC TRANSFORM FIXED MOVING VALUE_RTOL GRAD_RTOL [SP_A]
# (SP_A: the optimizer gain, chosen so that the one step is resolvable in 6 decimals)
# env: ELX, WORK, PARAMS (test/elastix/params); FMASK / MMASK: fixed / moving masks (-fMask, -mMask)
set -euo pipefail
metric=$1 transform=$2 fixed=$3 moving=$4 vtol=$5 gtol=$6 spa=${7:-0.001}
W="$WORK/value_${metric}_${transform}${FMASK:+_fmask}${MMASK:+_mmask}"
masks=()
[ -n "${FMASK:-}" ] && masks+=(-fMask "$FMASK")
[ -n "${MMASK:-}" ] && masks+=(-mMask "$MMASK")
rm -rf "$W"; mkdir -p "$W"
declare -A val grad
for v in elastix gigareg; do
  m=$metric; [ $v = gigareg ] && m=GigaReg$metric
  sed -e "s/@METRIC@/$m/" -e "s/@TRANSFORM@/$transform/" -e "s/(SP_a .*)/(SP_a $spa)/" "$PARAMS/value_full.txt" > "$W/p_$v.txt"
  # Euler: rotation scales that make the one-step rotations resolvable in the 6 written decimals
  [ "$transform" = EulerTransform ] && echo '(Scales 10 10 10 1 1 1)' >> "$W/p_$v.txt"
  mkdir -p "$W/$v"
  "$ELX" -f "$fixed" -m "$moving" "${masks[@]}" -p "$W/p_$v.txt" -out "$W/$v" > "$W/$v.stdout" 2>&1 \
    || { tail -30 "$W/$v/elastix.log"; echo "elastix ($v) failed"; exit 1; }
  row=$(awk '$1 == "0" {print; exit}' "$W/$v/IterationInfo.0.R0.txt")
  val[$v]=$(echo "$row" | awk '{print $2}')
  grad[$v]=$(echo "$row" | awk '{print $5}')
  echo "$v: iteration 0: metric ${val[$v]}  |gradient| ${grad[$v]}"
done
tp() { grep '^(TransformParameters ' "$1" | sed -e 's/^(TransformParameters //' -e 's/)$//' | tr ' ' '\n'; }
paste <(tp "$W/elastix/TransformParameters.0.txt") <(tp "$W/gigareg/TransformParameters.0.txt") > "$W/params.tsv"
pdiff=$(awk '{d = $1 - $2; s += d * d; n += $1 * $1} END {print (n > 0 ? sqrt(s / n) : 0)}' "$W/params.tsv")
echo "relative L2 difference of the parameter steps (-gain * derivative): $pdiff"
awk -v p="$pdiff" -v gt="$gtol" 'BEGIN { exit (p <= gt) ? 0 : 1 }' || { echo "derivative differs"; exit 1; }
awk -v a="${val[elastix]}" -v b="${val[gigareg]}" -v ga="${grad[elastix]}" -v gb="${grad[gigareg]}" \
    -v vt="$vtol" -v gt="$gtol" 'BEGIN {
  dv = (a - b); if (dv < 0) dv = -dv; sa = a < 0 ? -a : a; rv = dv / (sa > 1e-12 ? sa : 1e-12)
  dg = (ga - gb); if (dg < 0) dg = -dg; rg = dg / (ga > 1e-12 ? ga : 1e-12)
  printf "relative difference: value %.2e (tolerance %g), |gradient| %.2e (tolerance %g)\n", rv, vt, rg, gt
  exit (rv <= vt && rg <= gt) ? 0 : 1 }'
