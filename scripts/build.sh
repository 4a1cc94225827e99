#!/usr/bin/env bash
# Configures and builds ftune into a build directory (default: build/).
# Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
#   FTUNE_BUILD_TYPE   CMake build type (default RelWithDebInfo; Sanitize = ASan+UBSan)
#   FTUNE_JOBS         parallel compile jobs (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
jobs=${FTUNE_JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE="${FTUNE_BUILD_TYPE:-RelWithDebInfo}" "$@"
cmake --build "$build_dir" -j "$jobs"
