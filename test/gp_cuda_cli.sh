#!/usr/bin/env bash
# Grid Parallel on the CUDA backend through the gigareg CLI: the registration of
# gp_cli.sh (rigid MI -> greedy MI) with -device cuda, run with one shard, with
# -shards 3 (threads sharing the GPU) and, when given an mpiexec, under
# mpiexec -n 2 with -comm mpi (host staging) and, with two GPUs or more, with
# -comm nccl. Output images and fields must agree with the one-shard run within
# a mean relative difference of 1e-6 (img_compare; bitwise is not expected: the
# sharded metric reductions add in plane order, the unsharded GPU metric in
# blocks); transform parameter files must be identical up to the folder name and
# their parameter values, which must agree within 1e-6 relative.
# Exit 77 without a GPU.
#   gp_cuda_cli.sh BIN_DIR INPUTS SCRATCH [MPIEXEC [MPIEXEC_FLAGS...]]
set -u
bin=$1; in=$2; scratch=$3; shift 3
gr=$bin/gigareg; cmpimg=$bin/img_compare
command -v nvidia-smi >/dev/null && ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU') || ngpu=0
[ "${ngpu:-0}" -ge 1 ] || { echo "SKIPPED: no GPU"; exit 77; }
rm -rf "$scratch"; mkdir -p "$scratch"
fail() { echo "FAIL [gp_cuda_cli]: $*" >&2; exit 1; }
F=$in/t1.nii.gz; M=$in/t1_warped.nrrd
sed 's/(MaximumNumberOfIterations .*)/(MaximumNumberOfIterations 25 15)/' "$in/rigid.txt" >"$scratch/rigid.txt"
sed 's/(MaximumNumberOfIterations .*)/(MaximumNumberOfIterations 12 6)/' "$in/greedy.txt" >"$scratch/greedy.txt"
run() { local out=$1; shift; "$@" -f "$F" -m "$M" -p "$scratch/rigid.txt" -p "$scratch/greedy.txt" -out "$scratch/$out" -q -device cuda \
          || fail "run '$out' failed"; }
close() { # close DIR_A DIR_B
  local n=0
  for f in "$scratch/$1"/*; do
    b=$(basename "$f")
    [ -e "$scratch/$2/$b" ] || fail "$2 lacks $b"
    case $b in
      *.nii|*.nii.gz|*.mha|*.nrrd)
        r=$("$cmpimg" "$f" "$scratch/$2/$b" 1e-6 2>&1) || fail "$b differs ($1 vs $2): $r"
        echo "  $2/$b: $r";;
      TransformParameters*) # identical up to the folder name and the parameter values, which agree within 1e-6
        diff <(sed "s#/$1/#/X/#g" "$f" | grep -v '^(TransformParameters ') \
             <(sed "s#/$2/#/X/#g" "$scratch/$2/$b" | grep -v '^(TransformParameters ') >/dev/null \
          || fail "$b differs ($1 vs $2) beyond its parameter values"
        paste <(grep '^(TransformParameters ' "$f" | tr -d '()' | tr ' ' '\n' | tail -n +2) \
              <(grep '^(TransformParameters ' "$scratch/$2/$b" | tr -d '()' | tr ' ' '\n' | tail -n +2) |
          awk -v f="$b" '{ d = $1 - $2; if (d < 0) d = -d; s = ($2 < 0 ? -$2 : $2); if (s < 1) s = 1;
                           if (d / s > m) m = d / s } END { printf "  %s: parameters max rel diff %.3g\n", f, m;
                           exit (m > 1e-6) }' \
          || fail "$b: parameters differ by more than 1e-6 relative ($1 vs $2)";;
    esac
    n=$((n + 1))
  done
  echo "ok: $2 ~ $1 ($n files)"
}
run one "$gr"
run shards3 "$gr" -shards 3
close one shards3
if [ $# -gt 0 ]; then
  run mpi2 "$@" "$gr" -comm mpi
  close one mpi2
  if [ "$ngpu" -ge 2 ]; then
    run nccl2 "$@" "$gr" -comm nccl
    close one nccl2
  else
    echo "note: one GPU: -comm nccl not run (NCCL needs one GPU per rank)"
  fi
fi
