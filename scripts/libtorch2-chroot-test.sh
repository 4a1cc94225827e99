#!/usr/bin/env bash
# Builds and tests the trainer against a real LibTorch 2.x: Debian trixie's
# libtorch-dev (2.6 at the time of writing) in a minimal trixie chroot. Opt-in,
# not in CI (it downloads about 700 MB into the chroot the first time and
# takes about 10 minutes on two cores, a rerun after a small change about
# 1; docs/gpu.md). Needs root: debootstrap,
# chroot and bind mounts.
#
#   1. debootstraps a minbase trixie root (once; reused when present) and
#      installs the trainer's build and test dependencies in it: LibTorch
#      2.x, Abseil, nlohmann/json, PCRE2, sentencepiece, GoogleTest, CMake,
#      Ninja, OpenBLAS, and python3-torch for the reference scripts the
#      tests run;
#   2. bind-mounts this repository read-only at /src/ftune inside it and
#      builds the trainer-only configuration (-DFTUNE_BUILD_SERVICES=OFF:
#      ftune-train, train_test, train_binary_test, text_data_test, the
#      text and common tests) with Ninja into /var/tmp/ftune-lt2/NAME-HASH
#      inside the root, one per checkout path (kept, so a rerun builds
#      incrementally);
#   3. runs the trainer's ctest tests (every test of train_test,
#      train_binary_test and text_data_test, and bench_smoke);
#   4. runs `ftune-train bench` and prints its tokens_per_s line.
#
# Usage: scripts/libtorch2-chroot-test.sh [extra ctest args...]
#   FTUNE_TRIXIE_ROOT     the chroot (default /var/cache/ftune/trixie-root)
#   FTUNE_DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   FTUNE_JOBS            build and test jobs (default 2)
#   FTUNE_BENCH_ARGS      ftune-train bench flags (default "--steps 3")
#   FTUNE_CMAKE_ARGS      extra CMake arguments (e.g. -DFTUNE_WERROR=ON)
# Remove the root (after this script has exited, so nothing is mounted) to
# start from scratch: rm -rf /var/cache/ftune/trixie-root
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${FTUNE_TRIXIE_ROOT:-/var/cache/ftune/trixie-root}
mirror=${FTUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
jobs=${FTUNE_JOBS:-2}
bench_args=${FTUNE_BENCH_ARGS:---steps 3}
suite=trixie
if [[ $(id -u) -ne 0 ]]; then
  echo "libtorch2-chroot: needs root (debootstrap, chroot, mounts)" >&2
  exit 1
fi
start=$SECONDS
log() { echo "libtorch2-chroot: [$((SECONDS - start))s] $*"; }

# Anything mounted at or below a directory (a root left mounted by a killed
# run must never be deleted).
mounted_under() { awk -v d="$1" '$2 == d || index($2, d "/") == 1 { f = 1 } END { exit !f }' /proc/self/mounts; }

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends debootstrap ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap; }
fi

if [[ ! -f $root/.ftune-debootstrap-done ]]; then
  for d in "$root" "$root.partial"; do
    if mounted_under "$d"; then
      echo "libtorch2-chroot: something is mounted under $d; unmount it first" >&2
      exit 1
    fi
  done
  rm -rf "$root" "$root.partial"
  mkdir -p "$(dirname "$root")"
  log "debootstrap $suite into $root (minbase)"
  debootstrap --variant=minbase "$suite" "$root.partial" "$mirror" >"$(dirname "$root")/debootstrap.log" 2>&1 || {
    tail -20 "$(dirname "$root")/debootstrap.log" >&2
    exit 1
  }
  mv "$root.partial" "$root"
  touch "$root/.ftune-debootstrap-done"
fi

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true
  done
}
trap cleanup EXIT
mount_at() {  # mount_at TARGET mount-args...
  local target=$1
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounts+=("$target")
}
if mounted_under "$root"; then
  echo "libtorch2-chroot: $root is in use (mounted); another run?" >&2
  exit 1
fi
mount_at "$root/proc" -t proc proc
mount_at "$root/sys" -t sysfs sysfs
mount_at "$root/dev" --bind /dev
mount_at "$root/src/ftune" --bind "$repo"
mount -o remount,bind,ro "$root/src/ftune"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive "$@"
}

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libopenblas0-openmp libgloo-dev
  libabsl-dev nlohmann-json3-dev libpcre2-dev libsentencepiece-dev
  libgtest-dev libgmock-dev
  python3 python3-torch
)
missing=()
for p in "${packages[@]}"; do
  in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  log "installing in the chroot: ${missing[*]}"
  in_root apt-get update -q >/dev/null
  in_root apt-get install -y -q --no-install-recommends "${missing[@]}" >"$root/var/tmp/ftune-apt.log" 2>&1 || {
    tail -30 "$root/var/tmp/ftune-apt.log" >&2
    exit 1
  }
  in_root apt-get clean
fi
# One build directory per checkout: Ninja compares times, not contents, so
# two trees must not share one.
build=/var/tmp/ftune-lt2/$(basename "$repo")-$(printf %s "$repo" | sha256sum | cut -c1-8)
torch_version=$(in_root dpkg-query -W -f='${Version}' libtorch-dev)
log "LibTorch $torch_version, $(in_root g++ --version | head -1), $(in_root cmake --version | head -1)"

mkdir -p "$root$build"
log "configuring and building (Ninja -j$jobs) in $root$build"
# shellcheck disable=SC2086  # FTUNE_CMAKE_ARGS is a list of arguments
in_root cmake -S /src/ftune -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTUNE_BUILD_SERVICES=OFF \
  -DFTUNE_BUILD_TRAINER=ON -DFTUNE_BUILD_TESTS=ON -DFTUNE_BUILD_BENCH=ON \
  ${FTUNE_CMAKE_ARGS:-} >"$root$build/configure.log" 2>&1 || {
  cat "$root$build/configure.log" >&2
  exit 1
}
in_root cmake --build "$build" -j "$jobs" >"$root$build/build.log" 2>&1 || {
  grep -B2 -A20 -m5 'error' "$root$build/build.log" >&2 || tail -50 "$root$build/build.log" >&2
  echo "libtorch2-chroot: build failed; full log: $root$build/build.log" >&2
  exit 1
}
warnings=$(grep -c 'warning:' "$root$build/build.log" || true)
log "built; $warnings compiler warnings (log: $root$build/build.log)"

# The trainer's tests: every gtest suite of its three test binaries, as
# gtest_discover_tests names them ("Suite.Test", "Prefix/Suite.Test/0").
suites=$(for t in train_test train_binary_test text_data_test; do
  in_root "$build/tests/$t" --gtest_list_tests | awk '/^[^ ]/ { print $1 }'
done | sed 's/\./\\./g' | sort -u | paste -sd'|')
log "running the trainer's ctest tests"
in_root ctest --test-dir "$build" --output-on-failure -j "$jobs" \
  -R "^(($suites)|bench_smoke$)" "$@"

log "ftune-train bench $bench_args"
# shellcheck disable=SC2086  # FTUNE_BENCH_ARGS is a list of flags
bench_out=$(in_root "$build/bin/ftune-train" bench $bench_args 2>&1)
echo "$bench_out"
grep -o 'tokens_per_s=[0-9.]*' <<<"$bench_out" >/dev/null || {
  echo "libtorch2-chroot: bench printed no tokens_per_s" >&2
  exit 1
}
log "done: LibTorch $torch_version, $(grep -o 'tokens_per_s=[0-9.]*' <<<"$bench_out" | tail -1)"
