#!/bin/bash
# The one script to run on the GPU machine (cwd = repository root; the
# git-ignored .device/ travels with it and holds Debian nifticlib .debs).
# Builds with CUDA for sm_90, runs every test (CTest), the GPU benchmark and
# two compute-sanitizer checks on a small case, and writes under $OUT:
#   ctest.log, cuda_test.log, bench.log, sanitizer.log, gpu.txt, build.log
# The last lines printed are a short summary (the device tool returns the tail).
# Usage: bench/device_run.sh [bench_max_size] [bench_iterations]
set -u
BMAX=${1:-1024}
BITER=${2:-20}
. bench/device_common.sh
nvidia-smi -q > "$OUT/gpu.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv >> "$OUT/gpu.txt" 2>&1
stamp "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1); nvcc $(nvcc --version | grep -o 'release [0-9.]*')"

# ---- build ----------------------------------------------------------------------------
B=build-device
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/tmp/nifti/usr \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DGIGAREG_USE_MPI=OFF -DGIGAREG_USE_CUDA=ON > "$OUT/build.log" 2>&1 &&
  ninja -C $B -j "$(nproc)" >> "$OUT/build.log" 2>&1
BUILD_RC=$?
grep -E "warning|error" "$OUT/build.log" | grep -v "^--" | head -20
stamp "build rc=$BUILD_RC"
if [ $BUILD_RC -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi

# ---- the CUDA comparison first and alone (it times registrations) --------------------
(cd $B && timeout "$(left 180)" ./test/test_cuda_vs_cpu > "$OUT/cuda_test.log" 2>&1; echo "exit $?" >> "$OUT/cuda_test.log")
stamp "test_cuda_vs_cpu: $(tail -1 "$OUT/cuda_test.log")"

# ---- benchmark ------------------------------------------------------------------------
timeout "$(left 150)" ./$B/bench/bench_gpu "$BMAX" "$BITER" > "$OUT/bench.log" 2> "$OUT/bench_progress.log"
stamp "bench rc=$?"

# ---- every test (CTest; the CUDA one again, as CTest sees it) --------------------------
# -j4 x 4 OpenMP threads: 16 cores without oversubscription (with each test
# spinning 16 threads, six parallel tests slowed each other down tenfold).
(cd $B && OMP_NUM_THREADS=4 timeout "$(left 240)" ctest -j4 --timeout 240 > "$OUT/ctest.log" 2>&1)
stamp "ctest done"

# ---- sanitizers on a small case --------------------------------------------------------
device_sanitizers $B 60

# ---- summary --------------------------------------------------------------------------
echo "================ summary ================"
grep -E "tests passed|tests failed|Not Run|\*\*\*Failed|Skipped|\(Failed\)|Timeout" "$OUT/ctest.log" | head -20
echo "--- test_cuda_vs_cpu (failures and key lines) ---"
grep -E "CHECK failed|check\(s\) failed|bitwise|registration|greedy LNCC:|rigid MI:|SKIPPED|exit" "$OUT/cuda_test.log" | head -30
grep -E "LNCC.*grad_u|MI T1/PD oblique grad " "$OUT/cuda_test.log" | head -4
echo "--- bench ---"
cat "$OUT/bench.log"
tail -3 "$OUT/bench_progress.log"
stamp "done"
