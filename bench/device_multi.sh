#!/bin/bash
# Multi-GPU Grid Parallel run on the GPU machine (issue 9; cwd = repository
# root, the git-ignored .device/ travels with it and holds nifticlib .debs).
# Builds with CUDA + MPI + NCCL (once: a warm machine keeps build-multi/),
# runs the GPU Grid Parallel tests (MG_TESTS=1, default; MG_TESTS_RE, default
# "gp_cuda", picks them: "cuda" adds test_cuda_vs_cpu), the one-GPU benchmark
# (MG_BENCH, below), then
# bench/multi_gpu.sh on every GPU of the machine. Logs under $OUT.
#   bench/device_multi.sh "SIZE[:NZ] ..." [single_gpu_max_size]
set -u
SIZES=${1:-512}
SMAX=${2:-1024}
. bench/device_common.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
G=$(nvidia-smi -L | wc -l)
stamp "$G GPU(s): $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1

B=build-multi
if [ ! -x $B/bin/gigareg ]; then
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/tmp/nifti/usr \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DGIGAREG_USE_CUDA=ON -DGIGAREG_USE_MPI=ON > "$OUT/build.log" 2>&1 &&
    ninja -C $B -j "$(nproc)" >> "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  grep -E "NCCL|MPI|CUDA" "$OUT/build.log" | grep -- "--" | head -6
fi
stamp "build done"

if [ "${MG_TESTS:-1}" = 1 ]; then
  (cd $B && OMP_NUM_THREADS=4 timeout 300 ctest -R "${MG_TESTS_RE:-gp_cuda}" -V --timeout 280 > "$OUT/ctest_gp.log" 2>&1)
  grep -E "metric_region:|local shards|NCCL ranks|MPI ranks|bitwise|CHECK|FAIL|tests passed|Passed|Failed|Skipped" \
    "$OUT/ctest_gp.log" | grep -v "^[0-9]*: *$" | tail -24
  stamp "GPU Grid Parallel tests done"
fi

# MG_BENCH="512 1145": one-GPU bench_gpu at those sizes (10 iterations, LNCC r3 and MI), with the
# Adam moments in bfloat16 (GR_BENCH_BF16=1) and, at the first size only, in float for comparison
if [ -n "${MG_BENCH:-}" ]; then
  first=${MG_BENCH%% *}
  GR_BENCH_SKIP_R2=1 GR_BENCH_SIZES="$first" timeout 120 $B/bench/bench_gpu 4096 10 > "$OUT/bench_float.log" 2> "$OUT/bench_float.err"
  GR_BENCH_SKIP_R2=1 GR_BENCH_BF16=1 GR_BENCH_SIZES="$MG_BENCH" timeout 240 $B/bench/bench_gpu 4096 10 > "$OUT/bench_bf16.log" 2> "$OUT/bench_bf16.err"
  grep -E "^\| [0-9]" "$OUT/bench_float.log" "$OUT/bench_bf16.log" | head -20
  stamp "bench done"
fi

W=/tmp/mg
bench/multi_gpu.sh $B $W "$G" "$SIZES" "$SMAX" 2>&1 | tee "$OUT/multi_gpu_$(echo "$SIZES" | tr ' :' '_x').log"
stamp "multi-GPU runs done"
