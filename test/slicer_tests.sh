#!/usr/bin/env bash
# Slicer entry point, memory planner and -qa, one case per CTest test:
#   slicer_tests.sh CASE BIN_DIR INPUTS SCRATCH PYTHON CHECKER
# Inputs come from make_cli_inputs (the cli fixture). PYTHON runs
# test/slicer_check.py (stdlib + numpy + nibabel: independent of our readers).
set -u
case_=$1; bin=$2; in=$3; scratch=$4/$1; py=$5; check=$6
gr=$bin/gigareg
rm -rf "$scratch"; mkdir -p "$scratch"
fail() { echo "FAIL [$case_]: $*" >&2; exit 1; }
F=$in/t1.nii.gz; M=$in/t1_warped.nrrd
# The field checks read our outputs with nibabel (an independent reader); without it
# (e.g. the GPU machine) those cases are reported as skipped, not passed.
case $case_ in run|tfm)
  "$py" -c "import numpy, nibabel" 2>/dev/null || { echo "SKIPPED: $py has no numpy/nibabel"; exit 77; } ;;
esac

case $case_ in
  xml)
    "$gr" --xml >"$scratch/module.xml" 2>"$scratch/err" || fail "--xml failed"
    [ ! -s "$scratch/err" ] || fail "--xml wrote to stderr: $(cat "$scratch/err")"
    if command -v xmllint >/dev/null; then
      xmllint --noout "$scratch/module.xml" || fail "xmllint: not well-formed"
    fi
    "$gr" --help >"$scratch/help.txt" || fail "--help failed"
    "$py" "$check" xml "$scratch/module.xml" "$scratch/help.txt" || fail "module description breaks the Execution Model rules"
    ;;
  run)
    # Exactly what Slicer runs: long flags in the XML's order, defaults passed, temp output files.
    out=$scratch/slicer_tmp; mkdir -p "$out"
    "$gr" --fixed "$F" --moving "$M" --preset deformable-lncc --device cpu --iterations 8 --threads 0 \
          --outputVolume "$out/outputVolume.nrrd" --outputTransform "$out/outputTransform.nii.gz" \
          >"$scratch/stdout" 2>"$scratch/stderr" || { cat "$scratch/stderr"; fail "Slicer-style run failed"; }
    [ ! -s "$scratch/stderr" ] || { cat "$scratch/stderr"; fail "stderr not empty (Slicer reports that as an error)"; }
    [ -f "$out/outputVolume.nrrd" ] && [ -f "$out/outputTransform.nii.gz" ] || fail "outputs missing: $(ls "$out")"
    [ "$(ls -A "$out" | wc -l)" -eq 2 ] || fail "stray files next to the outputs: $(ls -A "$out")"
    "$py" "$check" progress "$scratch/stdout" || fail "progress lines"
    "$py" "$check" field "$out/outputTransform.nii.gz" "$M" "$out/outputVolume.nrrd" || fail "output transform"
    "$bin/img_compare" "$F" "$out/outputVolume.nrrd" 1 "$F" >"$scratch/after.txt"
    "$bin/img_compare" "$F" "$M" 1 "$F" >"$scratch/before.txt"
    before=$(sed 's/.*= \([0-9.]*\).*/\1/' "$scratch/before.txt"); after=$(sed 's/.*= \([0-9.]*\).*/\1/' "$scratch/after.txt")
    echo "fixed vs moving $before, fixed vs output volume $after"
    awk -v a="$after" -v b="$before" 'BEGIN{exit !(a < 0.8*b)}' || fail "the registration did not help"
    ;;
  tfm)
    # Linear presets can hand Slicer an ITK affine (.tfm), fixed -> moving in LPS.
    "$gr" --preset affine --iterations 20 --fixed "$F" --moving "$M" --outputVolume "$scratch/vol.nrrd" \
          --outputTransform "$scratch/tx.tfm" -q || fail "run failed"
    "$py" "$check" tfm "$scratch/tx.tfm" "$M" "$scratch/vol.nrrd" || fail ".tfm does not reproduce the volume"
    ;;
  bad_transform)
    # A deformable result cannot go into a .tfm: refused before registering, one error line, nothing written.
    "$gr" --preset deformable-mi --fixed "$F" --moving "$M" --outputVolume "$scratch/vol.nrrd" \
          --outputTransform "$scratch/tx.tfm" >"$scratch/stdout" 2>"$scratch/err" && fail "accepted"
    [ "$(grep -c 'gigareg: error:' "$scratch/err")" -eq 1 ] && grep -q "tx.tfm" "$scratch/err" || { cat "$scratch/err"; fail "error line"; }
    [ -z "$(ls -A "$scratch" | grep -v '^stdout$\|^err$')" ] || fail "left files: $(ls -A "$scratch")"
    ;;
  plan)
    # --plan reads headers only, and its peak is what the run then measures (CPU backend).
    "$gr" --plan -f "$F" -m "$M" -p "$in/rigid.txt" -p "$in/greedy.txt" -threads 2 >"$scratch/plan.txt" 2>"$scratch/err" \
      || { cat "$scratch/err"; fail "--plan failed"; }
    cat "$scratch/plan.txt"
    for w in "stage 1 greedy level 2/2" optimizer halo "peak backend memory" "CPU RAM" fits; do
      grep -q "$w" "$scratch/plan.txt" || fail "plan lacks '$w'"
    done
    planned=$(sed -n 's/^peak backend memory: .*(\([0-9]*\) bytes).*/\1/p' "$scratch/plan.txt")
    "$gr" -f "$F" -m "$M" -p "$in/rigid.txt" -p "$in/greedy.txt" -threads 2 -out "$scratch/o" -q || fail "run failed"
    measured=$(sed -n 's/^peak backend memory: \([0-9]*\) bytes/\1/p' "$scratch/o/elastix.log")
    echo "planned $planned bytes, measured $measured bytes"
    awk -v p="$planned" -v m="$measured" 'BEGIN{d=p-m; if(d<0)d=-d; exit !(m>0 && d<=0.1*m)}' || fail "plan off by more than 10%"
    # Several ranks: per-rank need falls, halos appear.
    "$gr" --plan -f "$F" -m "$M" -p "$in/rigid.txt" -p "$in/greedy.txt" -np 4 >"$scratch/plan4.txt" || fail "-np 4"
    p4=$(sed -n 's/^peak backend memory: .*(\([0-9]*\) bytes).*/\1/p' "$scratch/plan4.txt")
    [ "$p4" -lt "$planned" ] || fail "4 ranks need $p4 >= $planned"
    grep -q "4 ranks" "$scratch/plan4.txt" || fail "rank count not shown"
    # the bfloat16-moment what-if needs less than the plan itself
    p16=$(sed -n 's/^  bfloat16 Adam moments.*: \([0-9.]*\) \([KMG]i*B\).*/\1 \2/p' "$scratch/plan.txt")
    [ -n "$p16" ] || fail "no bfloat16 moments what-if"
    ;;
  memory_limit)
    # A machine too small for the run (simulated): one error line with the planner's
    # numbers, before anything is allocated or written.
    out=$scratch/out
    # (4 MiB: the run needs ~11 MiB in one process, ~3.7 MiB per rank with 8 ranks)
    GIGAREG_MEMORY_LIMIT_BYTES=4M "$gr" -f "$F" -m "$M" -p "$in/rigid.txt" -p "$in/greedy.txt" -out "$out" \
      --outputVolume "$scratch/vol.nrrd" 2>"$scratch/err" >/dev/null && fail "run succeeded with 4 MiB"
    cat "$scratch/err"
    [ "$(grep -c 'gigareg: error:' "$scratch/err")" -eq 1 ] || fail "expected one error line"
    [ "$(wc -l <"$scratch/err")" -eq 1 ] || fail "more than one line on stderr"
    grep -q "memory planner needs .* ([0-9]* bytes)" "$scratch/err" && grep -q "(4194304 bytes) are available" "$scratch/err" \
      && grep -q "GIGAREG_MEMORY_LIMIT_BYTES" "$scratch/err" && grep -q "at its peak in " "$scratch/err" \
      || fail "error does not quote the planner's numbers"
    grep -q "ranks (Grid Parallel slabs) would fit" "$scratch/err" || fail "no rank count suggested"
    grep -q '(GigaRegAdamMoments "bfloat16") saves 12 B' "$scratch/err" || fail "no bfloat16 moments suggested"
    [ ! -e "$out" ] || fail "output folder left: $(ls -A "$out")"
    [ ! -e "$scratch/vol.nrrd" ] && [ -z "$(ls -A "$scratch" | grep -v '^err$')" ] || fail "files left: $(ls -A "$scratch")"
    ;;
  memory_bf16)
    # A machine too small for float Adam moments but big enough with bfloat16 ones (SyN: two
    # fields, two optimizer states, so its level outweighs the outputs): the run
    # switches by itself, says so once, and succeeds; the plan's numbers decide the limit.
    printf '(Transform "GigaRegSyNTransform")\n(Metric "GigaRegLocalNormalizedCorrelation")\n(NumberOfResolutions 1)\n(ImagePyramidSchedule 1 1 1)\n(MaximumNumberOfIterations 2)\n(WriteResultImage "false")\n' >"$scratch/g1.txt"
    "$gr" --plan -f "$F" -m "$M" -p "$scratch/g1.txt" -threads 2 >"$scratch/plan.txt" || fail "--plan failed"
    need32=$(sed -n 's/^peak of backend + host: .*(\([0-9]*\) bytes).*/\1/p' "$scratch/plan.txt")
    need16=$(sed -n 's/^  bfloat16 Adam moments.*: .* (\([0-9]*\) bytes).*/\1/p' "$scratch/plan.txt")
    echo "need with float moments $need32 bytes, with bfloat16 $need16 bytes"
    [ -n "$need32" ] && [ -n "$need16" ] && [ "$need16" -lt "$need32" ] || { cat "$scratch/plan.txt"; fail "bfloat16 does not lower this plan"; }
    limit=$(( (need32 + need16) / 2 ))
    GIGAREG_MEMORY_LIMIT_BYTES=$limit "$gr" -f "$F" -m "$M" -p "$scratch/g1.txt" -threads 2 -out "$scratch/o" \
      2>"$scratch/err" >/dev/null || { cat "$scratch/err"; fail "run failed at $limit bytes"; }
    cat "$scratch/err"
    [ "$(grep -c 'storing them as bfloat16' "$scratch/err")" -eq 1 ] || fail "no single note about the switch"
    [ -s "$scratch/o/deformationField.0.nii.gz" ] || [ -n "$(ls "$scratch/o" | grep -i deformation)" ] || fail "no field written"
    # the same limit with -q: no note; a limit below the bfloat16 need still fails with the planner's numbers
    GIGAREG_MEMORY_LIMIT_BYTES=$limit "$gr" -f "$F" -m "$M" -p "$scratch/g1.txt" -threads 2 -out "$scratch/o2" -q \
      2>"$scratch/err2" >/dev/null || fail "-q run failed"
    [ ! -s "$scratch/err2" ] || fail "-q printed: $(cat "$scratch/err2")"
    GIGAREG_MEMORY_LIMIT_BYTES=$(( need16 / 2 )) "$gr" -f "$F" -m "$M" -p "$scratch/g1.txt" -out "$scratch/o3" \
      2>"$scratch/err3" >/dev/null && fail "run succeeded below the bfloat16 need"
    grep -q "memory planner needs" "$scratch/err3" || fail "no planner error: $(cat "$scratch/err3")"
    ;;
  qa)
    "$gr" -f "$F" -m "$M" -p "$in/rigid.txt" -p "$in/greedy.txt" --iterations 15 -out "$scratch/o" -qa -q \
      || fail "-qa run failed"
    for f in checkerboard_before checkerboard_after overlay_before overlay_after jacobian; do
      "$py" "$check" png "$scratch/o/qa_$f.png" 776 272 || fail "qa_$f.png"
    done
    # rigid.txt and greedy.txt have two levels each: two 320-pixel panels and a 4-pixel gap.
    for k in 0 1; do "$py" "$check" png "$scratch/o/qa_metric.$k.png" 644 256 || fail "qa_metric.$k.png"; done
    "$py" "$check" differ "$scratch/o/qa_checkerboard_before.png" "$scratch/o/qa_checkerboard_after.png" 0.05 \
      || fail "after-checkerboard equals before"
    "$py" "$check" differ "$scratch/o/qa_overlay_before.png" "$scratch/o/qa_overlay_after.png" 0.05 || fail "overlays"
    ;;
  *) fail "unknown case" ;;
esac
echo ok
