#!/usr/bin/env bash
# Builds ftune and runs the whole test suite. The README's test command.
# Installs missing Debian packages first (scripts/install-deps.sh).
#
# Usage: scripts/test.sh [ctest args...]     e.g. scripts/test.sh -R Sha256
#   FTUNE_SANITIZE=1  also build the services with ASan+UBSan into build-sanitize/
#                     and run their tests there (the default in CI, CI=true).
#   FTUNE_FUZZ=1      also build the libFuzzer harnesses with clang into
#                     build-fuzz/ and fuzz each for 10 s (scripts/fuzz.sh; the
#                     default in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
jobs=${FTUNE_TEST_JOBS:-$(nproc)}
ctest --test-dir build --output-on-failure -j "$jobs" "$@"

default_sanitize=0
[[ ${CI:-} == true ]] && default_sanitize=1
if [[ ${FTUNE_SANITIZE:-$default_sanitize} == 1 ]]; then
  FTUNE_BUILD_TYPE=Sanitize scripts/build.sh build-sanitize -DFTUNE_BUILD_TRAINER=OFF -DFTUNE_BUILD_BENCH=OFF
  # The lint, documentation and deployment-file checks compare text and
  # configuration (they passed in build/ above); the sanitizers add nothing
  # to them, so they are not run again here.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-sanitize --output-on-failure -j "$jobs" \
    -E '^(clang_format_check|docs\.|deploy_files\.)' "$@"
fi

default_fuzz=0
[[ ${CI:-} == true ]] && default_fuzz=1
if [[ ${FTUNE_FUZZ:-$default_fuzz} == 1 ]]; then
  scripts/fuzz.sh
fi
