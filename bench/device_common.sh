# Sourced by the GPU-machine scripts (device_run.sh, device_lncc.sh,
# device_multi.sh; cwd = repository root, .device/ carried with the Debian
# nifticlib .debs). Defines OUT, T0, DEADLINE (seconds; set before sourcing to
# change it), stamp (a line with the seconds since start), left CAP (the
# smaller of CAP and the seconds before the deadline, at least 1),
# device_sanitizers BUILD_DIR CAP (memcheck and racecheck on a small
# test_cuda_vs_cpu case), and prepares the environment: nifticlib unpacked
# under /tmp/nifti, CUDA on PATH.
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=${DEADLINE:-500}
stamp() { echo "[$(($(date +%s) - T0)) s] $*"; }
left() { local l=$((DEADLINE - ($(date +%s) - T0))); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo $l; }

rm -rf /tmp/nifti && mkdir -p /tmp/nifti
for d in .device/debs/*.deb; do dpkg -x "$d" /tmp/nifti; done
export LD_LIBRARY_PATH=/tmp/nifti/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH

# memcheck: out-of-bounds accesses; racecheck: shared-memory hazards
device_sanitizers() {
  local B=$1 cap=$2
  command -v compute-sanitizer > /dev/null || return 0
  (cd "$B" && GR_CUDA_TEST_SHRINK=6 GR_CUDA_TEST_NO_REG=1 timeout "$(left "$cap")" compute-sanitizer --tool memcheck \
     --print-limit 20 ./test/test_cuda_vs_cpu > "$OUT/sanitizer.log" 2>&1; echo "memcheck exit $?" >> "$OUT/sanitizer.log")
  (cd "$B" && GR_CUDA_TEST_SHRINK=8 GR_CUDA_TEST_NO_REG=1 timeout "$(left $((cap + 20)))" compute-sanitizer --tool racecheck \
     --print-limit 20 ./test/test_cuda_vs_cpu >> "$OUT/sanitizer.log" 2>&1; echo "racecheck exit $?" >> "$OUT/sanitizer.log")
  stamp "sanitizers: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|exit' "$OUT/sanitizer.log" | tr '\n' ' ')"
}
