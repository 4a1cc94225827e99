#!/usr/bin/env bash
# Downloads (here, on a Debian 12 development machine) the Debian packages
# that the trainer's build needs and a bare GPU machine may lack, into
# build-gpu-deps/ (ignored by git, like every /build*/ directory), so that a
# device run can carry them: bench/gpu/run.sh unpacks them into a private
# prefix (never into /) and points CMake and pkg-config there.
#
#   bash bench/gpu/fetch-deps.sh      # then carry build-gpu-deps to the GPU run
#
# Only the build's own dependencies: Abseil, nlohmann/json, PCRE2,
# sentencepiece (+ its protobuf-lite) and pkgconf. LibTorch, CUDA, CMake and
# Ninja come from the GPU machine's image.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=build-gpu-deps
mkdir -p "$dest"
pkgs=(libabsl-dev libabsl20220623 nlohmann-json3-dev libpcre2-dev libpcre2-8-0
      libsentencepiece-dev libsentencepiece0 libprotobuf-lite32
      pkgconf pkgconf-bin libpkgconf3)
(cd "$dest" && apt-get download "${pkgs[@]}")
du -sh "$dest"
ls "$dest"
