#!/bin/bash
# (GigaRegNumberOfDevices N): the fixed grid split into N z-slab shards whose sums are reduced
# in a fixed order must give the same registration as one shard: identical TransformParameters.
#   devices.sh NAME PARAMS FIXED MOVING N "KEY LINES"
# env: ELX, WORK; GIGAREG_ELX_TEST_SLOTS=k: k CPU backends in threads play k GPUs
set -euo pipefail
name=$1 params=$2 fixed=$3 moving=$4 n=$5 keys=$6
W="$WORK/$name"
rm -rf "$W"; mkdir -p "$W/d1" "$W/dn"
. "$(dirname "$0")/keys.sh"
params_with_keys "$params" "$keys" "$W/p1.txt"
{ cat "$W/p1.txt"; echo "(GigaRegNumberOfDevices $n)"; } > "$W/pn.txt"
for d in 1 n; do
  "$ELX" -f "$fixed" -m "$moving" -p "$W/p$d.txt" -out "$W/d$d" > "$W/stdout$d" 2>&1 \
    || { tail -30 "$W/d$d/elastix.log"; echo "elastix failed"; exit 1; }
done
grep -q "$n shards" "$W/dn/elastix.log" || { echo "sharded evaluation did not run"; exit 1; }
if [ -n "${GIGAREG_ELX_TEST_SLOTS:-}" ]; then # the threaded multi-backend path (CPU backends as GPUs)
  grep -h "CPU backends in threads" "$W/dn/elastix.log" || { echo "the threaded multi-backend path did not run"; exit 1; }
fi
if diff <(grep '^(TransformParameters ' "$W/d1/TransformParameters.0.txt") \
        <(grep '^(TransformParameters ' "$W/dn/TransformParameters.0.txt") > /dev/null; then
  echo "1 shard and $n shards: identical TransformParameters"
else
  echo "1 shard and $n shards differ:"; grep -h '^(TransformParameters ' "$W"/d*/TransformParameters.0.txt | cut -c1-200
  exit 1
fi
