#!/bin/bash
# Multi-GPU Grid Parallel runs of the gigareg CLI (issue 9), on the GPU machine:
#   bench/multi_gpu.sh BUILD_DIR WORK_DIR G "SIZE[:NZ] ..." [single_gpu_max_size]
# For each size: an analytic pair (bench/make_synthetic_pair), then greedy LNCC
# (same modality, bench/params/multi_gpu_lncc.txt) and greedy MI (multimodal,
# bench/params/multi_gpu_mi.txt), 3-level pyramid, each under
# `mpirun -np G ... -comm nccl` and then on one GPU (sizes up to single_gpu_max_size). Prints wall
# time, per-level ms per iteration (from progress-line timestamps), peak memory
# per GPU (nvidia-smi, 200 ms samples) and the field difference single vs G GPUs.
# The G-GPU runs pass -slabs (each rank reads and writes only its slabs; no rank
# holds a whole image). Environment: MG_LOSSES (default "lncc mi"), MG_TIMEOUT
# (seconds per run, default 400), MG_ONLY=multi|single (only the G-GPU or the
# one-GPU runs), MG_BF16=1 (bfloat16 Adam moments in every run: 1024^3 on one
# 80 GB card needs them), MG_U16=1 (16-bit images: GigaRegImageStorage "uint16").
set -u
B=$1; W=$2; G=$3; SIZES=$4; SMAX=${5:-768}
GR=$B/bin/gigareg
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$W"

# ms per iteration per level from the progress lines ("... level L/N iteration I/M ... elapsed Es ...")
per_level() { tr '\r' '\n' < "$1" | sed -n 's/.*level \([0-9]*\)\/[0-9]* iteration \([0-9]*\)\/[0-9]* .*elapsed \([0-9.]*\)s.*/\1 \2 \3/p' |
  awk '{ L=$1; if (!(L in t0)) { t0[L]=$3; i0[L]=$2 } t1[L]=$3; i1[L]=$2 }
  END { for (L in t0) if (i1[L] > i0[L]) printf "level %s: %.1f ms/it over %d it; ", L, 1000*(t1[L]-t0[L])/(i1[L]-i0[L]), i1[L]-i0[L]; print "" }'; }

run_one() { # label outdir cmd...
  local label=$1 out=$2; shift 2
  rm -rf "$out"; mkdir -p "$out"
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 > "$out.mem" 2>/dev/null &
  local smi=$!
  local t0=$(date +%s.%N)
  timeout "${MG_TIMEOUT:-400}" "$@" -out "$out" 2> "$out.err" > "$out.log"
  local rc=$?
  local t1=$(date +%s.%N)
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  local mem=$(awk -F', ' '{ if ($2 > m[$1]) m[$1] = $2 } END { for (g in m) printf "gpu%s %.1f GB ", g, m[g]/1024 }' "$out.mem")
  printf "%-28s rc=%d wall %s s  peak %s\n" "$label" $rc "$(awk -v a=$t0 -v b=$t1 "BEGIN { printf \"%.1f\", b - a }")" "$mem"
  echo "   $(per_level "$out.err")"
  grep -h "gigareg: communication:" "$out.err" | sed 's/^gigareg: /   /'
  echo "   $(grep -h "peak backend memory" "$out"/elastix*.log 2>/dev/null | head -2 | tr '\n' ' ') (rank 0's allocations; nvidia-smi adds the context and the pool's cached blocks)"
  [ $rc -ne 0 ] && tail -5 "$out.err"
  return $rc
}

for S in $SIZES; do
  N=${S%%:*}; NZ=${S#*:}; [ "$NZ" = "$S" ] && NZ=$N
  D=$W/pair_${N}x${NZ}
  mkdir -p "$D"
  [ -f "$D/fixed.nii" ] || $B/bench/make_synthetic_pair "$N" "$D" "$NZ" || exit 1
  for loss in ${MG_LOSSES:-lncc mi}; do
    if [ $loss = lncc ]; then M=$D/moving_uni.nii; P=bench/params/multi_gpu_lncc.txt; else M=$D/moving_multi.nii; P=bench/params/multi_gpu_mi.txt; fi
    if [ "${MG_BF16:-0}" = 1 ]; then # bfloat16 Adam moments in every run (so 1 GPU and G GPUs do the same arithmetic)
      { cat "$P"; echo '(GigaRegAdamMoments "bfloat16")'; } > "$W/params_${loss}_bf16.txt"; P=$W/params_${loss}_bf16.txt
    fi
    if [ "${MG_U16:-0}" = 1 ]; then # 16-bit images in every run
      { cat "$P"; echo '(GigaRegImageStorage "uint16")'; } > "$W/params_${loss}_u16.txt"; P=$W/params_${loss}_u16.txt
    fi
    echo "== ${N}x${N}x${NZ} $loss"
    [ "${MG_ONLY:-}" != single ] && run_one "$G GPUs (NCCL)" "$D/out_${loss}_$G" mpirun --oversubscribe -np "$G" $GR -f "$D/fixed.nii" -m "$M" -p $P -comm nccl -slabs -comm-stats
    if [ "${MG_ONLY:-}" != multi ] && [ "$N" -le "$SMAX" ] && [ "$NZ" -le "$SMAX" ]; then
      run_one "1 GPU" "$D/out_${loss}_1" $GR -f "$D/fixed.nii" -m "$M" -p $P -device cuda:0
    fi
    if [ -f "$D/out_${loss}_1/deformationField.0.mha" ] && [ -f "$D/out_${loss}_$G/deformationField.0.mha" ]; then
      echo -n "   field 1 GPU vs $G GPUs: mean |diff| / range: "
      $B/bin/img_compare "$D/out_${loss}_1/deformationField.0.mha" "$D/out_${loss}_$G/deformationField.0.mha" 1e-5; echo " (rc $?)"
    fi
    [ -n "${MG_KEEP:-}" ] || rm -f "$D"/out_${loss}_*/*.mha "$D"/out_${loss}_*/*.nii* # keep the disk free for the next size
  done
done
