#!/usr/bin/env bash
# cpu_vs_elastix: gigareg's CLI against Debian's elastix 5.0.1 on the same pair, stages and
# iteration counts, on the CPU. A benchmark, not a CTest test.
#
#   bash bench/cpu_vs_elastix.sh [--shrink S] [--threads N] [--timeout SEC] [--out DIR] [--no-build]
#                                [--all-iterations] [--repeat N]
#
#   --shrink S     downsampling of ch2 (1 = full 181x217x181 1 mm, 7.1 Mvox; default 2)
#   --threads N    threads for every tool (default 2)
#   --timeout SEC  per-run wall-clock limit; a run past it is killed and reported (default 900)
#   --out DIR      work folder (default build-bench/cpu_vs_elastix/shrinkS)
#   --no-build     use the existing build-bench binaries
#   --repeat N     run every registration N times in a row and report the fastest wall time
#                  (all N in brackets); the machine is shared, so single timings are noisy.
#                  Outputs are deterministic (elastix's sampler has a fixed seed), so accuracy
#                  comes from the last repetition (default 1)
#   --all-iterations  one more gigareg run: the elastix file plus (GigaRegConvergenceWindow 1000),
#                  so gigareg's convergence test never stops a level and it runs all 500
#                  iterations per level like elastix does (slow: dense metric on every voxel)
#
# Steps: build (cmake + ninja, CUDA off), make_bench_pair (ch2 + AAL, known smooth warp +
# small rigid offset, true field), then sequentially:
#   elastix   -p bench/params/elastix_bspline_mi.txt, then transformix -def all (field)
#   gigareg   -p bench/params/elastix_bspline_mi.txt (the same file, unchanged)
#   gigareg   -p apps/params/greedy_mi.txt
#   gigareg   -p apps/params/greedy_lncc.txt
# each under /usr/bin/time -v (wall time, user+sys CPU, peak RSS) with the 1-minute load average noted
# before and after (the machine is shared), then bench_eval on the resulting field (and on the
# true field itself: the reference row, whose Dice is the ceiling of the label protocol).
# Prints a markdown table; DIR keeps every output, log and the table (table.md).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-bench"
SHRINK=2 THREADS=2 TIMEOUT=900 OUT="" BUILD_IT=1 ALL_ITERS=0 REPEAT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --shrink) SHRINK=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD_IT=0; shift ;;
    --all-iterations) ALL_ITERS=1; shift ;;
    --repeat) REPEAT=$2; shift 2 ;;
    *) echo "usage: $0 [--shrink S] [--threads N] [--timeout SEC] [--out DIR] [--no-build] [--all-iterations] [--repeat N]" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || OUT="$BUILD/cpu_vs_elastix/shrink$SHRINK"
[ "$REPEAT" -ge 1 ] 2>/dev/null || { echo "--repeat needs a positive integer" >&2; exit 2; }

die() { echo "cpu_vs_elastix: $*" >&2; exit 1; }
for t in elastix transformix /usr/bin/time timeout; do
  command -v "$t" >/dev/null || die "'$t' not found (apt-get install elastix time coreutils)"
done
[ -f /usr/share/mricron/templates/ch2.nii.gz ] || die "mricron-data is not installed"

if [ "$BUILD_IT" = 1 ]; then
  (cd "$ROOT" && cmake -S . -B build-bench -G Ninja -DGIGAREG_USE_CUDA=OFF >/dev/null && ninja -C build-bench >/dev/null) ||
    die "build failed"
fi
GIGAREG="$BUILD/bin/gigareg" MAKE_PAIR="$BUILD/bench/make_bench_pair" EVAL="$BUILD/bench/bench_eval"
for b in "$GIGAREG" "$MAKE_PAIR" "$EVAL"; do [ -x "$b" ] || die "missing $b"; done

mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
cd "$OUT" || exit 1
rm -rf runs && mkdir runs
"$MAKE_PAIR" --shrink "$SHRINK" "$OUT" | tee pair.txt || die "make_bench_pair failed"

load1() { cut -d' ' -f1 /proc/loadavg; }
# "h:mm:ss" or "m:ss.ss" -> seconds
wall_of() { sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" |
            awk -F: '{ s = 0; for (i = 1; i <= NF; ++i) s = s * 60 + $i; printf "%.1f", s }'; }
cpu_of() { awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ { s += $2 } END { printf "%.1f", s }' "$1"; }
rss_of() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }
val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }

# run NAME OUTDIR CMD... : REPEAT times (OUTDIR emptied before each), each under
# /usr/bin/time -v around `timeout`; files runs/NAME.rI.{time,stdout,stderr}. runs/NAME.meas gets
# "rc wall rss load_before load_after cpu walls" of the fastest successful repetition
# (rss: the largest of all; walls: every repetition's wall time). Stops at the first failure.
run() {
  local name=$1 outdir=$2; shift 2
  local i rc=0 best="" walls="" rssmax=0
  for ((i = 1; i <= REPEAT; ++i)); do
    rm -rf "$outdir" && mkdir -p "$outdir"
    local before; before=$(load1)
    local f="runs/$name.r$i"
    echo "cpu_vs_elastix: running $name ($i/$REPEAT, load $before): $*" >&2
    /usr/bin/time -v -o "$f.time" timeout "$TIMEOUT" "$@" >"$f.stdout" 2>"$f.stderr"
    rc=$?
    local w c r; w=$(wall_of "$f.time") c=$(cpu_of "$f.time") r=$(rss_of "$f.time")
    echo "cpu_vs_elastix: $name: rc $rc, $w s wall, $c s CPU, $r MB (load after $(load1))" >&2
    walls="$walls${walls:+,}$w"
    [ "${r:-0}" -gt "$rssmax" ] && rssmax=$r
    local line="$rc $w $r $before $(load1) $c"
    if [ "$rc" != 0 ]; then best=$line; break; fi
    if [ -z "$best" ] || awk -v a="$w" -v b="$(echo "$best" | cut -d' ' -f2)" 'BEGIN { exit !(a < b) }'; then best=$line; fi
  done
  ln -sf "$name.r$((i > REPEAT ? REPEAT : i)).stderr" "runs/$name.stderr"
  read -r b_rc b_w _ b_lb b_la b_c <<<"$best"
  echo "$b_rc $b_w $rssmax $b_lb $b_la $b_c $walls" >"runs/$name.meas"
  return $rc
}

# Iterations run per level: elastix's IterationInfo files, gigareg's elastix.log.
iters_elastix() { local s=""; for f in "$1"/IterationInfo.0.R*.txt; do [ -f "$f" ] && s="$s$(($(wc -l <"$f") - 1))/"; done; echo "${s%/}"; }
iters_gigareg() { awk -F'\t' '$1 ~ /^[0-9]+$/ && NF == 4 { c[$2]++; if ($2 + 1 > n) n = $2 + 1 }
                  END { for (l = 0; l < n; ++l) printf "%s%d", l ? "/" : "", c[l] }' "$1/elastix.log" 2>/dev/null; }

ROWS=()
# row TOOL PARAMS NAME FIELD ITERS [EXTRA_SECONDS_NOTE]
row() {
  local tool=$1 params=$2 name=$3 field=$4 iters=$5 note=${6:-} cnote=${7:-}
  read -r rc wall rss lb la cpu walls <"runs/$name.meas"
  [ "$REPEAT" -gt 1 ] && wall="$wall [${walls//,/, }]"
  local e="runs/$name.eval"
  if [ "$rc" = 0 ] && [ -f "$field" ] && "$EVAL" "$field" true_field.mha fixed.nii.gz labels_fixed.nii.gz labels_moving.nii.gz >"$e" 2>"runs/$name.eval.err"; then
    ROWS+=("| $tool | \`$params\` | $wall$note | $cpu$cnote | $rss | $lb / $la | $iters | $(val "$e" epe_mean) | $(val "$e" epe_median) | $(val "$e" epe_p95) | $(val "$e" dice_gen_before) / $(val "$e" dice_gen_after) | $(val "$e" dice_mean_before) / $(val "$e" dice_mean_after) | $(val "$e" jac_min) |")
  else
    local why="failed (rc $rc)"
    [ "$rc" = 124 ] && why="killed after ${TIMEOUT} s"
    [ "$rc" = 0 ] && why="evaluation failed: $(tail -1 "runs/$name.eval.err" 2>/dev/null)"
    ROWS+=("| $tool | \`$params\` | $wall | $cpu | $rss | $lb / $la | $iters | $why | | | | | |")
  fi
}

EPAR="$ROOT/bench/params/elastix_bspline_mi.txt"

# (a) elastix, then transformix for its deformation field (timed separately).
run elastix runs/elastix elastix -f fixed.nii.gz -m moving.nii.gz -p "$EPAR" -out runs/elastix -threads "$THREADS"
if [ -f runs/elastix/TransformParameters.0.txt ]; then
  run transformix runs/elastix_def transformix -def all -tp runs/elastix/TransformParameters.0.txt -out runs/elastix_def -threads "$THREADS"
else
  echo "1 0 0 $(load1) $(load1) 0 0" >runs/transformix.meas
fi
EFIELD=$(ls runs/elastix_def/deformationField.* 2>/dev/null | grep -v '\.raw$' | head -1)
read -r _ twall _ _ _ tcpu _ <runs/transformix.meas
row "elastix 5.0.1" "bench/params/elastix_bspline_mi.txt" elastix "${EFIELD:-missing}" "$(iters_elastix runs/elastix)" \
    " (+${twall} transformix -def)" " (+${tcpu})"

# (b) gigareg with the same file; (c) gigareg presets.
for spec in "gigareg_bspline:$EPAR:bench/params/elastix_bspline_mi.txt" \
            "gigareg_greedy_mi:$ROOT/apps/params/greedy_mi.txt:apps/params/greedy_mi.txt" \
            "gigareg_greedy_lncc:$ROOT/apps/params/greedy_lncc.txt:apps/params/greedy_lncc.txt"; do
  IFS=: read -r name pfile plabel <<<"$spec"
  run "$name" "runs/$name" "$GIGAREG" -f fixed.nii.gz -m moving.nii.gz -p "$pfile" -out "runs/$name" -threads "$THREADS"
  row gigareg "$plabel" "$name" "runs/$name/deformationField.0.mha" "$(iters_gigareg "runs/$name")"
done
if [ "$ALL_ITERS" = 1 ]; then
  { cat "$EPAR"; echo '(GigaRegConvergenceWindow 1000)'; } >elastix_bspline_mi_all_iterations.txt
  run gigareg_bspline_all runs/gigareg_bspline_all "$GIGAREG" -f fixed.nii.gz -m moving.nii.gz -p elastix_bspline_mi_all_iterations.txt \
      -out runs/gigareg_bspline_all -threads "$THREADS"
  row gigareg "elastix_bspline_mi.txt + (GigaRegConvergenceWindow 1000)" gigareg_bspline_all \
      runs/gigareg_bspline_all/deformationField.0.mha "$(iters_gigareg runs/gigareg_bspline_all)"
fi

# Reference: the true field itself (EPE 0; its Dice is the ceiling of nearest-neighbour label warping).
if "$EVAL" true_field.mha true_field.mha fixed.nii.gz labels_fixed.nii.gz labels_moving.nii.gz >runs/truth.eval 2>&1; then
  e=runs/truth.eval
  ROWS+=("| true field (reference) | \`true_field.mha\` | | | | | | 0 | 0 | 0 | $(val "$e" dice_gen_before) / $(val "$e" dice_gen_after) | $(val "$e" dice_mean_before) / $(val "$e" dice_mean_after) | $(val "$e" jac_min) |")
fi

{
  echo "Pair: $(head -1 pair.txt | sed 's/^make_bench_pair: //')"
  echo "True displacement inside the head: $(sed -n 's/.*true |d| inside the head: //p' pair.txt)"
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads per tool: $THREADS"
  [ "$REPEAT" -gt 1 ] && echo "Each registration ran $REPEAT times in a row: wall s is the fastest run [all runs]; CPU s and load are that run's; peak RSS the largest."
  echo
  echo "| tool | params | wall s | CPU s (user+sys) | peak RSS MB | load 1-min before / after | iterations per level (coarse->fine) | mean EPE (voxel) | median EPE | p95 EPE | generalised Dice before / after | mean label Dice before / after | min det J |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "gigareg warnings on bench/params/elastix_bspline_mi.txt:"
  echo '```'
  grep -E '^(warning|gigareg: (warning|error))' runs/gigareg_bspline.stderr
  echo '```'
  for n in elastix transformix gigareg_bspline gigareg_greedy_mi gigareg_greedy_lncc gigareg_bspline_all; do
    [ -f "runs/$n.meas" ] || continue
    read -r rc _ <"runs/$n.meas"
    [ "$rc" = 0 ] || { echo "$n exited with $rc; last lines of its stderr:"; tail -5 "runs/$n.stderr"; }
    grep -h -iE '^gigareg: error|segmentation|abort|assert' "runs/$n.stderr" 2>/dev/null
  done
} >table.md
cat table.md
