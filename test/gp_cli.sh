#!/usr/bin/env bash
# Grid Parallel through the gigareg CLI: the same registration (rigid MI ->
# greedy MI) on the CPU backend (test/gp_cuda_cli.sh does the GPU runs) with one
# shard, with -shards 3 (threads) and, when given an mpiexec, under mpiexec -n 2,
# both with whole images on every rank and with -slabs (slab reads: offset
# reads of the .nii, rank-0 scatter of the .nrrd and of the .nii.gz mask; slab
# writes: offsets into the .mha fields and result, rank-0 gather for .nii.gz).
# Every output file must be byte-identical to the single-shard run
# (TransformParameters up to the output folder name).
#   gp_cli.sh BIN_DIR INPUTS SCRATCH [MPIEXEC [MPIEXEC_FLAGS...]]
set -u
bin=$1; in=$2; scratch=$3; shift 3
gr=$bin/gigareg
rm -rf "$scratch"; mkdir -p "$scratch"
fail() { echo "FAIL [gp_cli]: $*" >&2; exit 1; }
F=$in/t1.nii.gz; M=$in/t1_warped.nrrd
# shorter schedules than the CLI suite's files: this test is about equality
sed 's/(MaximumNumberOfIterations .*)/(MaximumNumberOfIterations 25 15)/' "$in/rigid.txt" >"$scratch/rigid.txt"
sed 's/(MaximumNumberOfIterations .*)/(MaximumNumberOfIterations 12 6)/' "$in/greedy.txt" >"$scratch/greedy.txt"
run() { local out=$1; shift; "$@" -f "$F" -m "$M" -p "$scratch/rigid.txt" -p "$scratch/greedy.txt" -out "$scratch/$out" -q -threads 1 -device cpu \
          || fail "run '$out' failed"; }
# -slabs runs: an uncompressed fixed image (offset reads) and a fixed mask
runs() { local out=$1; shift; "$@" -f "$in/t1.nii" -m "$M" -fMask "$in/t1_mask.nii.gz" -p "$scratch/rigid.txt" -p "$scratch/greedy.txt" \
          -out "$scratch/$out" -q -threads 1 -device cpu || fail "run '$out' failed"; }
same() { # same DIR_A DIR_B
  local n=0
  for f in "$scratch/$1"/*; do
    b=$(basename "$f")
    [ -e "$scratch/$2/$b" ] || fail "$2 lacks $b"
    case $b in elastix.log) # the peak-memory line differs by design (shards share one backend here)
                 diff <(grep -v "^peak backend memory" "$f") <(grep -v "^peak backend memory" "$scratch/$2/$b") >/dev/null \
                   || fail "$b differs ($1 vs $2)";;
               TransformParameters*) diff <(sed "s#/$1/#/X/#g" "$f") <(sed "s#/$2/#/X/#g" "$scratch/$2/$b") >/dev/null || fail "$b differs ($1 vs $2)";;
               *) cmp -s "$f" "$scratch/$2/$b" || fail "$b differs ($1 vs $2)";; esac
    n=$((n + 1))
  done
  [ "$(ls "$scratch/$1" | wc -l)" -eq "$(ls "$scratch/$2" | wc -l)" ] || fail "$2 has other files than $1"
  echo "ok: $2 == $1 ($n files byte-identical)"
}
run one "$gr"
run shards3 "$gr" -shards 3
same one shards3
if [ $# -gt 0 ]; then
  run mpi2 "$@" "$gr"
  same one mpi2
  runs one_nii "$gr"
  runs mpi2_slabs "$@" "$gr" -slabs
  same one_nii mpi2_slabs
  ls "$scratch/mpi2_slabs" | grep -q inverseDeformationField.1.mha || fail "-slabs wrote no inverse field"
  # -comm-stats: one line per rank with the messages it sent (halos, ring slabs), rank 0's in elastix.log
  "$@" "$gr" -f "$F" -m "$M" -p "$scratch/greedy.txt" -out "$scratch/stats" -q -threads 1 -device cpu -comm-stats \
    2>"$scratch/stats.err" || fail "-comm-stats run failed"
  n=$(grep -c "^gigareg: communication: rank [01] of 2 (mpi): point-to-point [0-9.]* MB in [1-9][0-9]* messages" "$scratch/stats.err")
  [ "$n" -eq 2 ] || fail "-comm-stats: expected one line per rank with messages, got: $(cat "$scratch/stats.err")"
  grep -q "^communication: rank 0 of 2" "$scratch/stats/elastix.log" || fail "-comm-stats: nothing in elastix.log"
  echo "ok: -comm-stats: $(grep -m1 "rank 0" "$scratch/stats.err")"
fi
