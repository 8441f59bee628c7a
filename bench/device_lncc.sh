#!/bin/bash
# LNCC fast path on the GPU machine, in one call (cwd = repository root; the
# git-ignored .device/ travels with it and holds Debian nifticlib .debs):
# build, test_cuda_vs_cpu (fp32 LNCC, double LNCC, exact LNCC), bench_gpu with
# the fp32 LNCC and the double-kernel baseline in the same run, Nsight Compute
# on the hot kernels of one greedy LNCC and one greedy MI iteration at 256^3,
# optionally ctest and compute-sanitizer. Logs under $OUT; a short summary last.
# Usage: bench/device_lncc.sh [quick|full|check] [deadline_s]
#   check: build two targets, test, sanitizers (no bench, no ncu)
#   quick: build two targets, test (with the registrations), bench 512^3 (fp32 vs double), ncu
#   full:  build all, test, bench 128..1024 (fp32) + 128..512 (double), ncu, ctest subset, sanitizers
set -u
MODE=${1:-quick}
DEADLINE=${2:-290}
. bench/device_common.sh
stamp "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1); nvcc $(nvcc --version | grep -o 'release [0-9.]*')"

B=build-device
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/tmp/nifti/usr \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DGIGAREG_USE_MPI=OFF -DGIGAREG_USE_CUDA=ON > "$OUT/build.log" 2>&1
if [ "$MODE" = full ]; then ninja -C $B -j "$(nproc)" >> "$OUT/build.log" 2>&1
else ninja -C $B -j "$(nproc)" test_cuda_vs_cpu bench_gpu >> "$OUT/build.log" 2>&1; fi
BUILD_RC=$?
grep -E "warning|error" "$OUT/build.log" | grep -v "^--" | head -20
stamp "build rc=$BUILD_RC"
if [ $BUILD_RC -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi
# register use / spills of the fast kernel
cuobjdump -res-usage $B/CMakeFiles/gigareg.dir/module/cuda/cuda_lncc_fast.cu.o 2>/dev/null | grep -A1 "lncc_fast_kernel" |
  grep -o "REG:[0-9]*\|STACK:[0-9]*\|SHARED:[0-9]*\|LOCAL:[0-9]*" | paste -sd' ' | cut -c1-400 > "$OUT/resusage.txt"

(cd $B && timeout "$(left 100)" ./test/test_cuda_vs_cpu > "$OUT/cuda_test.log" 2>&1; echo "exit $?" >> "$OUT/cuda_test.log")
stamp "test_cuda_vs_cpu: $(tail -1 "$OUT/cuda_test.log")"

if [ "$MODE" = check ]; then # A/B of the batched running-sum loads at 512^3 (LNCC r3 + MI)
  GR_BENCH_MIN_SIZE=512 GR_BENCH_SKIP_R2=1 timeout "$(left 30)" ./$B/bench/bench_gpu 512 10 > "$OUT/bench.log" 2> "$OUT/bench_progress.log"
  stamp "bench fp32 (batched) rc=$?"
  GR_BENCH_MIN_SIZE=512 GR_BENCH_SKIP_R2=1 GIGAREG_CUDA_LNCC_NOBATCH=1 timeout "$(left 30)" ./$B/bench/bench_gpu 512 10 > "$OUT/bench_double.log" 2> "$OUT/bench_double_progress.log"
  stamp "bench fp32 (no batch) rc=$?"
elif [ "$MODE" = full ]; then
  timeout "$(left 90)" ./$B/bench/bench_gpu 1024 20 > "$OUT/bench.log" 2> "$OUT/bench_progress.log"
  stamp "bench fp32 rc=$?"
  GIGAREG_CUDA_LNCC=double timeout "$(left 45)" ./$B/bench/bench_gpu 512 10 > "$OUT/bench_double.log" 2> "$OUT/bench_double_progress.log"
  stamp "bench double rc=$?"
  GR_BENCH_MIN_SIZE=512 GR_BENCH_SKIP_R2=1 GIGAREG_CUDA_LNCC_TY=8 timeout "$(left 20)" ./$B/bench/bench_gpu 512 10 > "$OUT/bench_ty8.log" 2> "$OUT/bench_ty8_progress.log"
  stamp "bench fp32 TY=8 rc=$?"
else
  GR_BENCH_MIN_SIZE=512 timeout "$(left 40)" ./$B/bench/bench_gpu 512 10 > "$OUT/bench.log" 2> "$OUT/bench_progress.log"
  stamp "bench fp32 rc=$?"
  GR_BENCH_MIN_SIZE=512 GIGAREG_CUDA_LNCC=double timeout "$(left 40)" ./$B/bench/bench_gpu 512 10 > "$OUT/bench_double.log" 2> "$OUT/bench_double_progress.log"
  stamp "bench double rc=$?"
fi

# Nsight Compute: the hot kernels at 256^3 (LNCC r3, LNCC r2, MI; 3 warm-up + 1 iteration each)
if [ "$MODE" != check ] && command -v ncu > /dev/null && [ "$(left 60)" -gt 30 ]; then
  GR_BENCH_MIN_SIZE=256 GR_BENCH_SKIP_R2=1 timeout "$(left 80)" ncu --csv --page raw \
    -k regex:"lncc_fast|lncc_fused|lncc_warp|mi_hist|mi_grad|smooth|adam_kernel|warp_field|resample_kernel" \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --metrics dram__bytes.sum.per_second,dram__bytes.sum,gpu__time_duration.sum \
    -c 200 ./$B/bench/bench_gpu 256 1 > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
  stamp "ncu rc=$? ($(wc -l < "$OUT/ncu.csv") lines)"
fi

SAN_CAP=40; [ "$MODE" = check ] && SAN_CAP=75
if [ "$MODE" = full ] || [ "$MODE" = check ]; then
  [ "$MODE" = full ] && (cd $B && OMP_NUM_THREADS=4 timeout "$(left 60)" ctest -j4 --timeout 60 -R "cuda|lncc|metric|greedy" > "$OUT/ctest.log" 2>&1)
  [ "$MODE" = full ] && stamp "ctest done"
  device_sanitizers $B $SAN_CAP
fi

echo "================ summary ================"
cat "$OUT/resusage.txt" | cut -c1-300
[ -f "$OUT/ctest.log" ] && grep -E "tests passed|tests failed|\(Failed\)|Timeout" "$OUT/ctest.log" | head -10
grep -E "CHECK failed|check\(s\) failed|greedy LNCC:|SKIPPED|^exit|exact LNCC|LNCC.*(rel err|rel L2|bitwise|grad_affine)" "$OUT/cuda_test.log" | grep -v "\[double\]" | cut -c1-120 | head -40
echo "--- bench ---"
[ -f "$OUT/bench.log" ] && grep -E "^\| (128|256|512|768|896|1024)" "$OUT/bench.log" | head -14
[ -f "$OUT/bench_double.log" ] && grep -E "^\| " "$OUT/bench_double.log" | grep -E "LNCC" | head -6 | sed 's/^/B /'
[ -f "$OUT/sanitizer.log" ] && grep -E "ERROR SUMMARY|RACECHECK SUMMARY|exit|Invalid|Race" "$OUT/sanitizer.log" | head -12
[ -f "$OUT/bench_ty8.log" ] && grep -E "^\| 512" "$OUT/bench_ty8.log" | sed 's/^/TY8 /'
[ -f "$OUT/ncu.csv" ] && python3 bench/ncu_summary.py "$OUT/ncu.csv" > "$OUT/ncu_summary.md" 2>&1 && cut -c1-160 "$OUT/ncu_summary.md" | head -16
stamp "done"
