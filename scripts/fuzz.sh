#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz) with clang-14 into their own
# small build directory and fuzzes each one for a bounded time
# (docs/operations.md "Fuzzing"). CI runs it with the default 10 s each.
#
# Usage: scripts/fuzz.sh [--seconds N] [ctest args...]
#   scripts/fuzz.sh                              # every harness, 10 s each
#   scripts/fuzz.sh --seconds 3600 -R 'fuzz\.dataset$'   # one, for an hour
#   FTUNE_FUZZ_BUILD_DIR  build directory (default build-fuzz)
#   FTUNE_JOBS            parallel compile jobs and fuzzers (default: nproc)
# What a fuzzer adds to the corpus stays in $FTUNE_FUZZ_BUILD_DIR/fuzz/corpus;
# a crash leaves its input as $FTUNE_FUZZ_BUILD_DIR/fuzz/<name>-crash-*: fix
# the bug and add that file to tests/fuzz/corpus/<name>/ (every build then
# replays it: ctest fuzz_replay.<name>).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=10
if [[ ${1:-} == --seconds ]]; then
  seconds=$2
  shift 2
fi
dir=${FTUNE_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${FTUNE_JOBS:-$(nproc)}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 "${launcher[@]}" \
  -DFTUNE_BUILD_FUZZERS=ON -DFTUNE_BUILD_TRAINER=OFF -DFTUNE_BUILD_BENCH=OFF \
  -DFTUNE_FUZZ_SECONDS="$seconds" >/dev/null
cmake --build "$dir" --target fuzzers -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$dir" -L fuzz --output-on-failure -j "$jobs" "$@"
