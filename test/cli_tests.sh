#!/usr/bin/env bash
# CLI behaviour tests, one case per CTest test:  cli_tests.sh CASE BIN_DIR INPUTS SCRATCH
set -u
case_=$1; bin=$2; in=$3; scratch=$4/$1
gr=$bin/gigareg
rm -rf "$scratch"; mkdir -p "$scratch"
fail() { echo "FAIL [$case_]: $*" >&2; exit 1; }

# A bad input must fail with exactly one "gigareg: error:" line naming `expect`,
# exit non-zero, and leave nothing in -out (which it must not even create).
expect_error() {
  local expect=$1; shift
  local out=$scratch/out
  "$gr" "$@" -out "$out" 2>"$scratch/err" >/dev/null
  local rc=$?
  [ $rc -ne 0 ] || fail "exit code 0 for bad input"
  [ $rc -lt 128 ] || fail "crashed (exit $rc)"
  local nerr; nerr=$(grep -c "gigareg: error:" "$scratch/err")
  [ "$nerr" -eq 1 ] || { cat "$scratch/err" >&2; fail "expected one error line, got $nerr"; }
  grep -q -- "$expect" "$scratch/err" || { cat "$scratch/err" >&2; fail "error line does not mention '$expect'"; }
  [ ! -e "$out" ] || fail "output folder was left behind: $(ls -A "$out")"
  # An existing output folder stays empty as well.
  mkdir -p "$out"
  "$gr" "$@" -out "$out" -q 2>/dev/null >/dev/null && fail "second run succeeded"
  [ -z "$(ls -A "$out")" ] || fail "partial output left in existing -out: $(ls -A "$out")"
  echo "ok: $(cat "$scratch/err")"
}

F=$in/t1.nii.gz; M=$in/t1_warped.nrrd; P=$in/rigid.txt
case $case_ in
  missing_file)        expect_error "nonexistent.nii.gz" -f "$in/nonexistent.nii.gz" -m "$M" -p "$P" ;;
  truncated_file)      expect_error "truncated.nii" -f "$in/truncated.nii" -m "$M" -p "$P" ;;
  corrupt_header)      expect_error "corrupt.mha" -f "$F" -m "$in/corrupt.mha" -p "$P" ;;
  image_2d)            expect_error "image2d.mha" -f "$in/image2d.mha" -m "$M" -p "$P" ;;
  zero_spacing)        expect_error "zero_spacing.mha" -f "$in/zero_spacing.mha" -m "$M" -p "$P" ;;
  nan_voxels)          expect_error "NaN" -f "$in/nan.nii" -m "$M" -p "$P" ;;
  empty_mask)          expect_error "mask is empty" -f "$F" -m "$M" -p "$P" -fMask "$in/empty_mask.nii.gz" ;;
  mask_grid_mismatch)  expect_error "mask grid" -f "$F" -m "$M" -p "$P" -fMask "$in/wrong_grid_mask.nii.gz" ;;
  param_syntax)        expect_error "bad_syntax.txt" -f "$F" -m "$M" -p "$in/bad_syntax.txt" ;;
  negative_iterations) expect_error "MaximumNumberOfIterations" -f "$F" -m "$M" -p "$in/negative_iterations.txt" ;;
  unknown_transform)   expect_error "WarpDriveTransform" -f "$F" -m "$M" -p "$in/unknown_transform.txt" ;;
  missing_param_file)  expect_error "nope.txt" -f "$F" -m "$M" -p "$in/nope.txt" ;;
  unknown_option)      expect_error "-bogus" -f "$F" -m "$M" -p "$P" -bogus 1 ;;
  quiet)
    "$gr" -f "$F" -m "$M" -p "$P" -out "$scratch/o" -q 2>"$scratch/err" || fail "run failed"
    [ ! -s "$scratch/err" ] || { cat "$scratch/err"; fail "-q printed on stderr"; }
    "$gr" -f "$F" -m "$M" -p "$P" -out "$scratch/o2" 2>"$scratch/err2" || fail "run failed"
    grep -q "level .* iteration .* metric .* ETA" "$scratch/err2" || fail "no progress lines without -q"
    echo ok ;;
  deterministic)
    for r in 1 2; do
      "$gr" -f "$F" -m "$M" -p "$P" -p "$in/greedy.txt" -out "$scratch/r$r" -q -seed 42 || fail "run $r failed"
    done
    for f in "$scratch"/r1/*; do
      b=$(basename "$f")
      [ "$b" = "elastix.log" ] && continue
      case $b in TransformParameters*) diff <(sed 's#/r1/#/rX/#g' "$f") <(sed 's#/r2/#/rX/#g' "$scratch/r2/$b") >/dev/null || fail "$b differs";;
                 *) cmp -s "$f" "$scratch/r2/$b" || fail "$b differs between identical runs";; esac
    done
    diff "$scratch/r1/elastix.log" "$scratch/r2/elastix.log" >/dev/null || fail "metric log differs"
    echo "ok: $(ls "$scratch/r1" | tr '\n' ' ')" ;;
  transformix_roundtrip)
    command -v transformix >/dev/null || { echo "SKIPPED: transformix not installed"; exit 77; }
    "$gr" -f "$F" -m "$M" -p "$P" -p "$in/greedy.txt" -out "$scratch/o" -q || fail "registration failed"
    for f in TransformParameters.0.txt TransformParameters.1.txt deformationField.1.mha result.1.mha; do
      [ -f "$scratch/o/$f" ] || fail "missing $f"
    done
    transformix -in "$M" -tp "$scratch/o/TransformParameters.1.txt" -out "$scratch/o" >"$scratch/tx.log" 2>&1 \
      || { tail -20 "$scratch/tx.log"; fail "transformix failed"; }
    [ -f "$scratch/o/result.mha" ] || fail "transformix wrote no result.mha"
    # transformix's resampling of our transform reproduces our own result image
    "$bin/img_compare" "$scratch/o/result.1.mha" "$scratch/o/result.mha" 0.001 "$F" || fail "transformix result differs from ours"
    # and the registration helped: the result is closer to the fixed image than the moving image was
    before=$("$bin/img_compare" "$F" "$M" 1 "$F" | sed 's/.*= \([0-9.]*\).*/\1/')
    after=$("$bin/img_compare" "$F" "$scratch/o/result.mha" 1 "$F" | sed 's/.*= \([0-9.]*\).*/\1/')
    echo "fixed vs moving $before, fixed vs transformix result $after"
    awk -v a="$after" -v b="$before" 'BEGIN{exit !(a < 0.7*b)}' || fail "registration did not reduce the difference enough"
    echo ok ;;
  masks)
    "$gr" -f "$F" -m "$M" -p "$P" -fMask "$in/t1_mask.nii.gz" -mMask "$in/t1_mask.nii.gz" -out "$scratch/o" -q \
      || fail "masked registration failed"
    [ -f "$scratch/o/TransformParameters.0.txt" ] && [ -f "$scratch/o/result.0.nii.gz" ] || fail "missing outputs"
    echo ok ;;
  t0)
    "$gr" -f "$F" -m "$M" -p "$P" -out "$scratch/a" -q || fail "first run failed"
    "$gr" -f "$F" -m "$M" -p "$P" -t0 "$scratch/a/TransformParameters.0.txt" -out "$scratch/b" -q || fail "-t0 run failed"
    grep -q "InitialTransformParametersFileName \"$scratch/a/TransformParameters.0.txt\"" "$scratch/b/TransformParameters.0.txt" \
      || fail "-t0 file not chained"
    if command -v transformix >/dev/null; then
      transformix -in "$M" -tp "$scratch/b/TransformParameters.0.txt" -out "$scratch/b" >/dev/null 2>&1 || fail "transformix failed on the -t0 chain"
      "$bin/img_compare" "$scratch/b/result.0.nii.gz" "$scratch/b/result.nii.gz" 0.001 "$F" || fail "chained result differs"
    fi
    echo ok ;;
  *) fail "unknown case" ;;
esac
