#!/bin/bash
# One elastix run with a GigaReg metric on a pair with a known warp; the result (applied by
# transformix -def all) must be within TOL mm (mean endpoint error over the head) of the truth.
#   run_one.sh NAME PARAMS FIXED MOVING TRUTH_DEF TOL "KEY LINES"
# The metric of PARAMS is replaced by the KEY LINES (e.g. '(Metric "GigaRegLocalNormalizedCorrelation")').
# env: ELX, TFX, TOOL, WORK
set -euo pipefail
name=$1 params=$2 fixed=$3 moving=$4 truth=$5 tol=$6 keys=$7
W="$WORK/$name"
rm -rf "$W"; mkdir -p "$W/out" "$W/tx"
. "$(dirname "$0")/keys.sh"
params_with_keys "$params" "$keys" "$W/params.txt"
t0=$(date +%s.%N)
"$ELX" -f "$fixed" -m "$moving" -p "$W/params.txt" -out "$W/out" > "$W/stdout" 2>&1 \
  || { tail -30 "$W/out/elastix.log"; echo "elastix failed"; exit 1; }
t1=$(date +%s.%N)
grep -q "GigaReg metric" "$W/out/elastix.log" || { echo "no GigaReg metric ran"; exit 1; }
"$TFX" -in "$moving" -tp "$W/out/TransformParameters.0.txt" -out "$W/tx" -def all > /dev/null 2>&1
printf 'elastix wall %.1f s; vs truth: ' "$(awk "BEGIN{print $t1 - $t0}")"
"$TOOL" epe "$W/tx/deformationField.nii.gz" "$truth" "$fixed" "$tol"
