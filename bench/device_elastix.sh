#!/bin/bash
# elastix with GigaReg components on the GPU machine (no ITK there): unpacks the bundle made by
# bench/pack_elastix_device.sh (.device/elastix-bundle/, .device/elastix-data/) and runs the
# ElastixModelZoo-style files of test/elastix/params with
#   (a) elastix      elastix's own components (CPU, random sampler as in the file)
#   (b) gr_cpu       GigaReg names (metric, resampler, resample interpolator), (GigaRegDevice "cpu")
#   (c) gr_cuda      GigaReg names, (GigaRegDevice "cuda")
#   (d) gr_cuda2     (c) plus (GigaRegNumberOfDevices 2) (two shards; both on GPU 0 with one GPU)
#   elastix_full     elastix's own metric with (ImageSampler "Full") for a few iterations: the
#                    per-iteration cost of the metric GigaReg evaluates (every voxel)
# reporting wall time per resolution and in total, peak host RSS (GNU time), peak GPU memory
# (nvidia-smi polling) and the agreement of the transforms (transformix -def all, mean endpoint
# error over the head; against the truth for known warps; TransformParameters of (c) vs (d)).
# Cases, each skipped when the time left is short:
#   1. chris_t1 /2 (1.76 mm) vs chris_PD: rigid MI, affine MI, affine + B-spline MI;
#      chris_t1 /2 warped by a known B-spline vs chris_t1 /2: B-spline NCC
#   2. 256^3: chris_t1 resampled to 256^3 warped by a known B-spline vs itself: B-spline MI,
#      elastix vs gr_cuda (EPE vs truth), gr_cuda2 (the shard field windows made on the GPU:
#      identical TransformParameters?), elastix_full for 3 iterations per resolution
#   3. BIG^3 (800^3 = 0.51 Gvox): chris_t1 resampled to BIG^3 vs the same shifted by (2, -1, 0.67) mm:
#      B-spline MI, gr_cuda (BIG_IT iterations per resolution); elastix_full 2 iterations per resolution
# Usage (repository root): bench/device_elastix.sh      env: OUT, DEADLINE (s, default 450),
#   CASES (default "1 2 3"), BIG (case 3's edge length, default 800), BIG_IT (GigaReg's iterations
#   per resolution in case 3, default 30; elastix_full always 2)
set -u
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=${DEADLINE:-450}
exec > >(tee "$OUT/device_elastix.log") 2>&1
stamp() { echo "[$(($(date +%s) - T0)) s] $*"; }
left() { local l=$((DEADLINE - ($(date +%s) - T0))); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo $l; }
elapsed() { echo $(($(date +%s) - T0)); }

B=/tmp/elxbundle
rm -rf "$B" && mkdir -p "$B"
xz -dc .device/elastix-bundle/elastix-bundle.tar.xz | tar -C "$B" -xf - || { echo "bundle missing"; exit 1; }
export LD_LIBRARY_PATH=$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
ELX=$B/bin/elastix TFX=$B/bin/transformix TOOL=$B/bin/elx_tool
TIMEV=(); [ -x "$B/bin/time" ] && TIMEV=("$B/bin/time" -v)
P=test/elastix/params
DATA=.device/elastix-data
W=/tmp/elxw
rm -rf "$W" && mkdir -p "$W"
stamp "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1); $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS"
"$ELX" --version | head -2

# params VARIANT SRC DST [MAXIT]: one parameter file of a variant
params() {
  local v=$1 src=$2 dst=$3 maxit=${4:-}
  case $v in
    elastix) cp "$src" "$dst" ;;
    elastix_full) sed -E -e 's/^\(ImageSampler "[A-Za-z]*"\)/(ImageSampler "Full")/' \
                         -e 's/^\(NewSamplesEveryIteration "true"\)/(NewSamplesEveryIteration "false")/' "$src" > "$dst" ;;
    gr_*) sed -E -e 's/^\(Metric "(Advanced[A-Za-z]*)"\)/(Metric "GigaReg\1")/' \
                 -e 's/^\(Resampler "DefaultResampler"\)/(Resampler "GigaRegResampler")/' \
                 -e 's/^\(ResampleInterpolator "FinalBSplineInterpolator"\)/(ResampleInterpolator "GigaRegResampleInterpolator")/' \
                 "$src" > "$dst"
          case $v in
            gr_cpu) echo '(GigaRegDevice "cpu")' >> "$dst" ;;
            gr_cuda) echo '(GigaRegDevice "cuda")' >> "$dst" ;;
            gr_cuda2) printf '(GigaRegDevice "cuda")\n(GigaRegNumberOfDevices 2)\n' >> "$dst" ;;
          esac ;;
  esac
  [ -n "$maxit" ] && sed -i -E "s/^\(MaximumNumberOfIterations .*/(MaximumNumberOfIterations $maxit)/" "$dst"
  [ -n "${NORESULT:-}" ] && { sed -i -E '/^\(WriteResultImage /d' "$dst"; echo '(WriteResultImage "false")' >> "$dst"; }
  [ -n "${RESULTFMT:-}" ] && sed -i -E "s/^\(ResultImageFormat .*/(ResultImageFormat \"$RESULTFMT\")/" "$dst"
  return 0
}

# run CASE VARIANT FIXED MOVING PARAMS(a,b) [MAXIT]: one elastix run (+ transformix -def all)
run() {
  local c=$1 v=$2 f=$3 m=$4 plist=$5 maxit=${6:-}
  local d=$W/$c/$v
  rm -rf "$d" && mkdir -p "$d"
  local args=() i=0 p
  IFS=, read -r -a pp <<< "$plist"
  for p in "${pp[@]}"; do params "$v" "$p" "$d/p$i.txt" "$maxit"; args+=(-p "$d/p$i.txt"); i=$((i + 1)); done
  local last=$((i - 1))
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$d/gpumem.txt" 2>/dev/null &
  local gp=$!
  local t0; t0=$(date +%s.%N)
  timeout "$(left ${RUNCAP:-240})" "${TIMEV[@]}" "$ELX" -f "$f" -m "$m" "${args[@]}" -out "$d" > "$d/stdout" 2> "$d/time.txt"
  local rc=$?
  local t1; t1=$(date +%s.%N)
  kill $gp 2>/dev/null; wait $gp 2>/dev/null
  local wall rss gpu res it
  wall=$(awk "BEGIN{printf \"%.1f\", $t1 - $t0}")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$d/time.txt")
  gpu=$(sort -n "$d/gpumem.txt" 2>/dev/null | tail -1)
  res=$(grep -h "Time spent in resolution" "$d/elastix.log" 2>/dev/null | awk '{printf "%s ", $(NF-1)}')
  it=$(grep -hE "^[0-9]+\s" "$d/IterationInfo.0.R"*.txt 2>/dev/null | wc -l)
  printf '%-22s %-12s rc %d wall %6s s  RSS %6s MiB  GPU mem %6s MiB  per resolution [s]: %s final metric %s\n' \
    "$c" "$v" $rc "$wall" "${rss:--}" "${gpu:--}" "$res" \
    "$(grep -h 'Final metric value' "$d/elastix.log" 2>/dev/null | tail -1 | awk '{print $NF}')"
  grep -h "GigaReg metric time\|GigaRegResampler: backend\|shards on" "$d/elastix.log" 2>/dev/null | sed 's/^ */      /'
  if [ $rc -ne 0 ]; then
    { grep -hiE "GigaReg|exception|description" "$d/elastix.log" 2>/dev/null | tail -4; tail -3 "$d/stdout"; } | sed 's/^/      | /'
    return 1
  fi
  [ -n "${NODEF:-}" ] && return 0
  mkdir -p "$d/tx"
  timeout "$(left 120)" "$TFX" -in "$m" -tp "$d/TransformParameters.$last.txt" -out "$d/tx" -def all > /dev/null 2>&1 \
    || echo "      transformix -def all failed on $v"
}
# epe CASE A B REF [TRUTH_DEF]
epe() {
  local c=$1 a=$2 b=$3 ref=$4
  local fa fb
  fa=$(ls "$W/$c/$a"/tx/deformationField.* 2>/dev/null | head -1); fb=$(ls "$W/$c/$b"/tx/deformationField.* 2>/dev/null | head -1)
  [ "$b" = truth ] && fb=$5
  [ -s "$fa" ] && [ -s "$fb" ] || return 0
  printf '      %-12s vs %-12s ' "$a" "$b"; "$TOOL" epe "$fa" "$fb" "$ref" 1e9
}
# result images of two variants (GigaRegResampler on cpu vs cuda, ...): elx_tool compare
cmp_result() {
  local c=$1 a=$2 b=$3 ref=$4 fa fb
  fa=$(ls "$W/$c/$a"/result.*.nii* 2>/dev/null | tail -1); fb=$(ls "$W/$c/$b"/result.*.nii* 2>/dev/null | tail -1)
  [ -n "$fa" ] && [ -n "$fb" ] || return 0
  printf '      result image %-8s vs %-8s ' "$a" "$b"; "$TOOL" compare "$fa" "$fb" "$ref" 1e9
}
# itms CASE VARIANT: mean of IterationInfo's last column (Time[ms]) in the last resolution
# Iteration 0's row also holds ASGD's automatic parameter estimation (seconds at 256^3), so it is
# left out of the mean and printed apart.
itms() {
  local f; f=$(ls "$W/$1/$2"/IterationInfo.*.R*.txt 2>/dev/null | sort | tail -1)
  [ -s "$f" ] && awk '$1 == "0" && $NF ~ /^[0-9.]+$/ { z = $NF }
    NR > 1 && $1 != "0" && $NF ~ /^[0-9.]+$/ { s += $NF; n++ }
    END { if (n) printf "%.1f (iteration 0: %.0f)", s / n, z; else print "-" }' "$f" || echo -
}
same_tp() {
  local c=$1 a=$2 b=$3 f
  f=$(ls "$W/$c/$a"/TransformParameters.*.txt 2>/dev/null | tail -1)
  [ -n "$f" ] && [ -s "$W/$c/$b/$(basename "$f")" ] || { echo "      $a / $b: no TransformParameters to compare"; return 0; }
  f=$(basename "$f")
  if diff <(grep '^(TransformParameters ' "$W/$c/$a/$f") <(grep '^(TransformParameters ' "$W/$c/$b/$f") > /dev/null 2>&1; then
    echo "      $a and $b: identical TransformParameters ($f)"
  else echo "      $a and $b: TransformParameters differ ($f)"; fi
}

CASES=${CASES:-1 2 3}
BIG=${BIG:-800}
BIG_IT=${BIG_IT:-30}
want() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }
# ---- 1. small pair ------------------------------------------------------------------------
if want 1; then
stamp "case 1: chris_t1 /2 vs chris_PD; B-spline NCC on a known warp"
"$TOOL" downsample "$DATA/chris_t1.nii.gz" "$W/t1.nii.gz" 2
cp "$DATA/chris_PD.nii.gz" "$W/pd.nii.gz"
"$TOOL" bspline-tp "$W/t1.nii.gz" "$W/truth_bspline.txt" 3.0 30
mkdir -p "$W/truth_tx"
"$TFX" -in "$W/t1.nii.gz" -tp "$W/truth_bspline.txt" -out "$W/truth_tx" -def all > /dev/null
cp "$W/truth_tx/result.nii.gz" "$W/t1_bspline.nii.gz"
for c in rigid_mi affine_mi affine_bspline_mi; do
  case $c in
    rigid_mi) pl=$P/rigid_mi.txt ;;
    affine_mi) pl=$P/affine_mi.txt ;;
    affine_bspline_mi) pl=$P/affine_mi.txt,$P/bspline_mi.txt ;;
  esac
  for v in elastix gr_cpu gr_cuda gr_cuda2; do
    [ "$(elapsed)" -lt 140 ] || { echo "  (skipped $c $v: time)"; continue; }
    run "$c" $v "$W/t1.nii.gz" "$W/pd.nii.gz" "$pl"
  done
  epe "$c" elastix gr_cuda "$W/t1.nii.gz"; epe "$c" gr_cpu gr_cuda "$W/t1.nii.gz"; same_tp "$c" gr_cuda gr_cuda2
  cmp_result "$c" gr_cuda gr_cpu "$W/t1.nii.gz"
done
c=bspline_ncc
for v in elastix gr_cpu gr_cuda; do
  [ "$(elapsed)" -lt 160 ] || { echo "  (skipped $c $v: time)"; continue; }
  run $c $v "$W/t1_bspline.nii.gz" "$W/t1.nii.gz" "$P/bspline_ncc.txt"
done
echo "      (gr_cuda2 not run for NCC: the core has no windowed NCC; GigaRegLocalNormalizedCorrelation shards)"
for v in elastix gr_cpu gr_cuda; do epe $c $v truth "$W/t1_bspline.nii.gz" "$W/truth_tx/deformationField.nii.gz"; done
epe $c elastix gr_cuda "$W/t1_bspline.nii.gz"
fi

# ---- 2. 256^3 -----------------------------------------------------------------------------
if want 2 && [ "$(elapsed)" -lt 200 ]; then
  stamp "case 2: 256^3 chris_t1 warped by a known B-spline vs itself, B-spline MI"
  "$TOOL" resize "$DATA/chris_t1.nii.gz" "$W/t1_256.nii" 256 256 256
  "$TOOL" bspline-tp "$W/t1_256.nii" "$W/truth256.txt" 3.0 30
  mkdir -p "$W/truth256_tx"
  sed -i -E 's/^\(ResultImageFormat .*/(ResultImageFormat "nii")/' "$W/truth256.txt"
  "$TFX" -in "$W/t1_256.nii" -tp "$W/truth256.txt" -out "$W/truth256_tx" -def all > /dev/null
  mv "$W/truth256_tx/result.nii" "$W/t1_256_bspline.nii"
  export RESULTFMT=nii
  c=bspline_mi_256
  RUNCAP=90 run $c gr_cuda "$W/t1_256_bspline.nii" "$W/t1_256.nii" "$P/bspline_mi.txt"
  NODEF=1 RUNCAP=90 run $c gr_cuda2 "$W/t1_256_bspline.nii" "$W/t1_256.nii" "$P/bspline_mi.txt"
  same_tp $c gr_cuda gr_cuda2
  RUNCAP=60 run $c elastix "$W/t1_256_bspline.nii" "$W/t1_256.nii" "$P/bspline_mi.txt"
  NODEF=1 RUNCAP=45 run $c elastix_full "$W/t1_256_bspline.nii" "$W/t1_256.nii" "$P/bspline_mi.txt" 3
  unset RESULTFMT
  for v in elastix gr_cuda; do epe $c $v truth "$W/t1_256_bspline.nii" "$W/truth256_tx/deformationField.nii"; done
  echo "      mean ms per iteration >= 1, last resolution (IterationInfo Time[ms]): elastix $(itms $c elastix), elastix_full $(itms $c elastix_full), gr_cuda $(itms $c gr_cuda), gr_cuda2 (2 shards, one GPU) $(itms $c gr_cuda2)"
fi

# ---- 3. BIG^3 (default 800^3 = 0.51 Gvox) -------------------------------------------------------
if want 3 && [ "$(elapsed)" -lt $((DEADLINE - 130)) ]; then
  stamp "case 3: ${BIG}^3 ($(awk "BEGIN{printf \"%.2f\", $BIG^3/1e9}") Gvox) chris_t1 vs shifted, B-spline MI on the GPU"
  "$TOOL" resize "$DATA/chris_t1.nii.gz" "$W/t1_big.nii" $BIG $BIG $BIG
  "$TOOL" resize "$DATA/chris_t1.nii.gz" "$W/t1_bigs.nii" $BIG $BIG $BIG - 2.0
  c=bspline_mi_$BIG
  NORESULT=1 NODEF=1 RUNCAP=$((DEADLINE - 60 - $(elapsed))) run $c gr_cuda "$W/t1_big.nii" "$W/t1_bigs.nii" "$P/bspline_mi.txt" $BIG_IT
  [ "$(elapsed)" -lt $((DEADLINE - 50)) ] && \
    NORESULT=1 NODEF=1 RUNCAP=$((DEADLINE - 15 - $(elapsed))) run $c elastix_full "$W/t1_big.nii" "$W/t1_bigs.nii" "$P/bspline_mi.txt" 2
  echo "      mean ms per iteration >= 1, last resolution: gr_cuda $(itms $c gr_cuda), elastix_full $(itms $c elastix_full)"
fi

# ---- summary --------------------------------------------------------------------------------
for f in "$W"/*/*/IterationInfo.0.R*.txt; do [ -s "$f" ] && mkdir -p "$OUT/iter" && cp "$f" "$OUT/iter/$(echo "${f#$W/}" | tr / _)"; done
for f in "$W"/*/*/elastix.log; do mkdir -p "$OUT/logs" && cp "$f" "$OUT/logs/$(echo "${f#$W/}" | tr / _)"; done
stamp "done"
