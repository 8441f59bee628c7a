#!/bin/bash
# Packs elastix + transformix with the GigaReg components (a CUDA build of the core) for the GPU
# machine, which has no ITK and no package registry (docs/elastix.md "GPU machine"):
#
#   bench/pack_elastix_device.sh [CUDA_BUILD] [TOOL_BUILD]
#     CUDA_BUILD  a build with -DGIGAREG_USE_CUDA=ON -DGIGAREG_USE_ELASTIX=ON (default build-elxcuda:
#                   cmake -S . -B build-elxcuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DGIGAREG_USE_CUDA=ON \
#                     -DGIGAREG_USE_ELASTIX=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGIGAREG_USE_MPI=OFF \
#                     -DGIGAREG_USE_NCCL=OFF -DGIGAREG_USE_ITK=OFF -DGIGAREG_BUILD_TESTS=OFF)
#     TOOL_BUILD  a build whose elx_tool (test/elastix/elx_tool.c) is taken along (default build-elx)
#
# Writes .device/elastix-bundle/elastix-bundle.tar.xz (git-ignored): bin/{elastix,transformix,
# elx_tool,time} and lib/ with every shared library they load except the system's C runtime and
# the GPU driver (libc, libm, libdl, libpthread, librt, ld-linux, libstdc++, libgcc_s, libcuda,
# libnvidia*: the GPU machine has gcc 13's and driver 580's, newer than this Debian's), plus
# .device/elastix-data/{chris_t1,chris_PD}.nii.gz (from /work/shared/data or test/data).
# Checks that every library resolves inside the bundle and that elastix/transformix start with an
# empty environment. bench/device_elastix.sh runs it on the GPU machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
CB=$(cd "${1:-$here/build-elxcuda}" && pwd)
TB=$(cd "${2:-$here/build-elx}" && pwd)
out=$here/.device/elastix-bundle
data=$here/.device/elastix-data
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$out" "$data"
cp "$CB/elastix-build/bin/elastix" "$CB/elastix-build/bin/transformix" "$stage/bin/"
cp "$TB/elx_tool" "$stage/bin/"
[ -x /usr/bin/time ] && cp /usr/bin/time "$stage/bin/time"
strip --strip-unneeded "$stage"/bin/* 2>/dev/null || true
skip='^(libc|libm|libdl|libpthread|librt|ld-linux[-a-z0-9_]*|libstdc\+\+|libgcc_s|libcuda|libnvidia[-a-z0-9_]*)\.so'
for exe in "$stage"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    [ -e "$stage/lib/$name" ] || cp -L "$path" "$stage/lib/$name"
  done
done
# every library resolves inside the bundle (or is a skipped system one)
missing=$(for f in "$stage"/bin/* "$stage"/lib/*; do LD_LIBRARY_PATH="$stage/lib" ldd "$f" 2>/dev/null; done \
  | awk '/=>/ {print $1, $3}' | grep -vE "$stage/lib/" | awk '{print $1}' | grep -vE "$skip" | sort -u || true)
[ -z "$missing" ] || { echo "libraries outside the bundle: $missing"; exit 1; }
env -i LD_LIBRARY_PATH="$stage/lib" "$stage/bin/elastix" --version
env -i LD_LIBRARY_PATH="$stage/lib" "$stage/bin/transformix" --version > /dev/null
env -i LD_LIBRARY_PATH="$stage/lib" "$stage/bin/elastix" --help | grep "elastix registers" > /dev/null || { echo "elastix --help failed"; exit 1; }
echo "$(ls "$stage/lib" | wc -l) libraries, $(du -sh "$stage" | cut -f1) uncompressed"
tar -C "$stage" -cf - bin lib | xz -T2 -6 > "$out/elastix-bundle.tar.xz"
ls -la "$out/elastix-bundle.tar.xz"
src=/work/shared/data; [ -s "$src/chris_t1.nii.gz" ] || src=$here/test/data
cp "$src/chris_t1.nii.gz" "$src/chris_PD.nii.gz" "$data/"
du -sh "$here/.device"
