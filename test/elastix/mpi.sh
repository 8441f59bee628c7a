#!/bin/bash
# elastix with GigaReg components under mpirun: R ranks split every metric evaluation's fixed
# voxels (R x GigaRegNumberOfDevices shards) and reduce exactly, so
#  - every rank ends with the same transform (rank 0 in OUT, rank r in OUT/rank<r>/), and
#  - it is the one-process run's with as many shards (GigaRegNumberOfDevices R), bit for bit,
#  - and transformix applies rank 0's file.
#   mpi.sh NAME PARAMS FIXED MOVING R "KEY LINES"
# env: ELX, TFX, WORK, MPIEXEC
set -euo pipefail
name=$1 params=$2 fixed=$3 moving=$4 r=$5 keys=$6
W="$WORK/$name"
rm -rf "$W"; mkdir -p "$W/one" "$W/mpi"
. "$(dirname "$0")/keys.sh"
params_with_keys "$params" "$keys" "$W/p.txt"
{ cat "$W/p.txt"; echo "(GigaRegNumberOfDevices $r)"; } > "$W/pn.txt"
export OMP_NUM_THREADS=1
"$ELX" -f "$fixed" -m "$moving" -p "$W/pn.txt" -out "$W/one" > "$W/stdout_one" 2>&1 \
  || { tail -30 "$W/one/elastix.log"; echo "one-process elastix failed"; exit 1; }
flags=()
"$MPIEXEC" --version 2>&1 | grep -qE "Open MPI|OpenRTE" && flags+=(--oversubscribe) # 2 ranks on a 1-core runner
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 900 \
  "$MPIEXEC" "${flags[@]}" -n "$r" "$ELX" -f "$fixed" -m "$moving" -p "$W/p.txt" -out "$W/mpi" > "$W/stdout_mpi" 2>&1 \
  || { tail -30 "$W/stdout_mpi"; tail -20 "$W/mpi/elastix.log"; echo "mpirun elastix failed"; exit 1; }
grep -q "$r shards over $r MPI ranks" "$W/mpi/elastix.log" || { echo "the MPI ranks did not shard the metric"; exit 1; }
tp() { grep '^(TransformParameters ' "$1/TransformParameters.0.txt"; }
for q in $(seq 1 $((r - 1))); do
  [ -f "$W/mpi/rank$q/TransformParameters.0.txt" ] || { echo "rank $q wrote no TransformParameters in mpi/rank$q"; exit 1; }
  diff <(tp "$W/mpi") <(tp "$W/mpi/rank$q") > /dev/null || { echo "ranks 0 and $q end with different transforms"; exit 1; }
  if grep -q "rank $q" "$W/mpi/elastix.log"; then echo "rank $q wrote into rank 0's elastix.log"; exit 1; fi
done
if diff <(tp "$W/one") <(tp "$W/mpi") > /dev/null; then
  echo "$r MPI ranks and one process with $r shards: identical TransformParameters"
else
  echo "$r MPI ranks and one process with $r shards differ:"; tp "$W/one" | cut -c1-200; tp "$W/mpi" | cut -c1-200
  exit 1
fi
# the rank-0 file is an ordinary elastix transform
"$TFX" -in "$moving" -tp "$W/mpi/TransformParameters.0.txt" -out "$W/mpi" > "$W/stdout_tfx" 2>&1 \
  || { tail -20 "$W/stdout_tfx"; echo "transformix failed on rank 0's TransformParameters"; exit 1; }
ls "$W/mpi"/result.* > /dev/null 2>&1 || { echo "transformix wrote no result"; exit 1; }
echo "transformix applied rank 0's TransformParameters"
