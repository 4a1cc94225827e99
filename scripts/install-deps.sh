#!/usr/bin/env bash
# Installs every Debian 12 package ftune needs to build, test and run its demo.
# Idempotent: installs only what is missing (no apt-get update when nothing is).
# Works as root or through sudo. Usage: scripts/install-deps.sh
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates clang-format
  # LibTorch 2 headers for the compile check (scripts/fetch-libtorch2.sh)
  curl xz-utils gpgv
  # services: gRPC, protobuf, Abseil, SQLite, HTTP for /metrics
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libsqlite3-dev sqlite3 libcivetweb-dev
  # webhook delivery (server/webhook): libcurl and OpenSSL's HMAC
  libcurl4-openssl-dev libssl-dev
  # header-only and text processing
  nlohmann-json3-dev libpcre2-dev libre2-dev libsentencepiece-dev libyaml-cpp-dev
  # tests
  libgtest-dev libgmock-dev googletest
  # fuzzing (scripts/fuzz.sh): clang 14 with libFuzzer and the sanitizer runtimes
  clang-14 libclang-rt-14-dev libfuzzer-14-dev
  # trainer: LibTorch (CPU) with OpenBLAS (Debian's reference BLAS is ~35x slower).
  # The pthread variant is the system's libblas.so.3; the trainer binaries
  # link the OpenMP variant, which shares LibTorch's OpenMP pool (worker/train/
  # CMakeLists.txt explains why).
  libtorch-dev libopenblas0-pthread libopenblas0-openmp libopenblas-dev
  # c10d's ProcessGroupGloo header includes Gloo's (multi-rank training,
  # docs/distributed.md); libtorch links libgloo0 already
  libgloo-dev
  # reference implementations and clients used by tests
  python3 python3-torch python3-numpy python3-grpcio python3-protobuf python3-yaml
  # the demo model's pretraining (scripts/get-model.sh)
  python3-sentencepiece
  # test certificates for TLS/mTLS tests
  openssl
  # the curl examples of docs/openai-compat.md, run by the docs test
  jq
  # observability tests (promtool, a real Prometheus server)
  prometheus
  # deployment checks: docker-compose config, YAML lint
  docker-compose yamllint
)

# The Node.js client example needs node and npm. A machine that already has
# both (for instance from NodeSource, whose nodejs bundles npm and conflicts
# with Debian's npm package) keeps them; otherwise take Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: need root or sudo to install packages" >&2; exit 1
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi

# LibTorch finds BLAS through the libblas.so.3 alternative: make sure it is
# OpenBLAS (pthread variant), whatever else the machine has installed.
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
if [[ -e $openblas ]]; then
  current=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 || true)
  if [[ $current != "$openblas" ]]; then
    $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$openblas"
  fi
fi

# The Node.js client example's packages (examples/node/package-lock.json):
# `npm ci` when node_modules is missing or older than the lock file.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node_example=$repo/examples/node
if [[ -f $node_example/package-lock.json ]] &&
   [[ ! -d $node_example/node_modules ||
      $node_example/package-lock.json -nt $node_example/node_modules ]]; then
  echo "install-deps: npm ci in examples/node"
  (cd "$node_example" && npm ci --ignore-scripts --no-audit --no-fund </dev/null)
  touch "$node_example/node_modules"  # Newer than the lock file now.
fi

# LibTorch 2.x headers (Debian trixie's, unpacked into /opt/ftune/libtorch2,
# not installed) for the ctest libtorch2_compile_check (docs/gpu.md).
# Downloads only when trixie has a new version. Optional: without them that
# check reports itself skipped, so a mirror outage does not stop the build.
"$repo/scripts/fetch-libtorch2.sh" ||
  echo "install-deps: WARNING: no LibTorch 2 headers; libtorch2_compile_check will be skipped" >&2
