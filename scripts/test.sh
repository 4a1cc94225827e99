#!/usr/bin/env bash
# Builds ftune and runs the whole test suite. The README's test command.
# Installs missing Debian packages first (scripts/install-deps.sh).
#
# Usage: scripts/test.sh [ctest args...]     e.g. scripts/test.sh -R Sha256
#   FTUNE_SANITIZE=1  also build the services with ASan+UBSan into build-sanitize/
#                     and run their tests there (the default in CI, CI=true).
#   FTUNE_FUZZ=1      also build the libFuzzer harnesses with clang and fuzz
#                     each for 10 s (the default in CI). With FTUNE_SANITIZE=1
#                     both use one clang tree, build-sanitize/; alone, it is
#                     scripts/fuzz.sh's build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
jobs=${FTUNE_TEST_JOBS:-$(nproc)}
ctest --test-dir build --output-on-failure -j "$jobs" "$@"

default_sanitize=0
default_fuzz=0
if [[ ${CI:-} == true ]]; then
  default_sanitize=1
  default_fuzz=1
fi
sanitize=${FTUNE_SANITIZE:-$default_sanitize}
fuzz=${FTUNE_FUZZ:-$default_fuzz}

# Both: one tree serves the two, so the services are compiled once more,
# not twice: clang-14 (libFuzzer needs it), ASan+UBSan at -O1 with
# libFuzzer's coverage in every target. scripts/fuzz.sh keeps its own tree
# for long runs by hand.
one_tree=0
[[ $sanitize == 1 && $fuzz == 1 ]] && one_tree=1
if [[ $sanitize == 1 ]]; then
  args=(-DFTUNE_BUILD_TRAINER=OFF -DFTUNE_BUILD_BENCH=OFF)
  if [[ $one_tree == 1 ]]; then
    args+=(-DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
           -DFTUNE_BUILD_FUZZERS=ON)
  fi
  FTUNE_BUILD_TYPE=Sanitize scripts/build.sh build-sanitize "${args[@]}"
  # The lint, documentation and deployment-file checks compare text and
  # configuration (they passed in build/ above); the sanitizers add nothing
  # to them, so they are not run again here. The fuzzers run next.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-sanitize --output-on-failure -j "$jobs" -LE fuzz \
    -E '^(clang_format_check|docs\.|deploy_files\.)' "$@"
fi

if [[ $fuzz == 1 ]]; then
  if [[ $one_tree == 1 ]]; then
    # Each harness fuzzes for 10 s from its corpus (docs/operations.md).
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-sanitize -L fuzz --output-on-failure -j "$jobs" "$@"
  else
    scripts/fuzz.sh
  fi
fi
