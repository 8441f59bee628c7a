#!/bin/sh
# Regenerate elastix-5.0.1-trimmed.tar.xz from the unmodified upstream elastix 5.0.1
# source tarball (Apache-2.0; https://github.com/SuperElastix/elastix/archive/5.0.1.tar.gz).
#   sh elastix/third_party/trim.sh /path/to/elastix-5.0.1.tar.gz [out.tar.xz]
# Nothing is edited: folders are only removed. Kept: the build system, Common/ (minus
# OpenCL and GoogleTest folders), Core/ (minus GoogleTest), LICENSE, NOTICE, README.md and
# the component folders listed in KEEP (what GigaReg's tests and the ElastixModelZoo-style
# parameter files use). Removed: Testing/, dox/ (except the example files its CMakeLists copies), tools/, every other component folder
# (Optimizers/StandardGradientDescent keeps its headers, which AdaptiveStochasticGradientDescent
# includes, but not its CMakeLists.txt, so it is not built as a component).
set -eu
src=${1:?usage: trim.sh elastix-5.0.1.tar.gz [out.tar.xz]}
here=$(cd "$(dirname "$0")" && pwd)
out=${2:-$here/elastix-5.0.1-trimmed.tar.xz}
KEEP="Registrations/MultiResolutionRegistration
Transforms/EulerTransform Transforms/AdvancedAffineTransform Transforms/AdvancedBSplineTransform
Interpolators/BSplineInterpolator Interpolators/LinearInterpolator
ResampleInterpolators/BSplineResampleInterpolator
Resamplers/MyStandardResampler
FixedImagePyramids/FixedSmoothingPyramid FixedImagePyramids/FixedRecursivePyramid
MovingImagePyramids/MovingSmoothingPyramid MovingImagePyramids/MovingRecursivePyramid
ImageSamplers/Full ImageSamplers/RandomCoordinate
Optimizers/AdaptiveStochasticGradientDescent
Metrics/AdvancedMattesMutualInformation Metrics/AdvancedNormalizedCorrelation Metrics/AdvancedMeanSquares"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$src" -C "$tmp"
e="$tmp/elastix-5.0.1"
test -f "$e/CMakeLists.txt"
# dox/: elastix's CMakeLists copies dox/example* into the build tree unconditionally; keep those.
find "$e/dox" -mindepth 1 -maxdepth 1 ! -name example ! -name example.bat ! -name exampleinput -exec rm -rf {} +
rm -rf "$e/Testing" "$e/tools" "$e/Common/OpenCL" "$e/Common/GTesting" "$e/Core/Main/GTesting"
for d in "$e"/Components/*/*/; do
  rel=${d#"$e"/Components/}; rel=${rel%/}
  case " $(echo $KEEP) " in
    *" $rel "*) ;;
    *) if [ "$rel" = Optimizers/StandardGradientDescent ]; then
         find "$d" -type f ! -name 'itk*' -delete
       else
         rm -rf "$d"
       fi ;;
  esac
done
# Reproducible archive: sorted names, fixed owner and mtime.
(cd "$tmp" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2020-01-01 00:00:00Z' \
   -cf - elastix-5.0.1 | xz -9e -T1 > "$out.tmp")
mv "$out.tmp" "$out"
echo "wrote $out ($(du -k "$out" | cut -f1) KiB)"
