#!/usr/bin/env bash
# Compile check of the trainer against LibTorch 2.x headers, for machines
# that build it against Debian 12's LibTorch 1.13 (CI included; docs/gpu.md).
# The headers are Debian trixie's libtorch-dev and libtorch-cuda-dev, unpacked
# by scripts/fetch-libtorch2.sh (scripts/install-deps.sh runs it).
#
# <torch/torch.h> is precompiled once per variant (below), then every
# trainer translation unit is syntax-checked with g++ -fsyntax-only,
# -std=c++17 and the defines LibTorch's CMake config gives its users (read
# from the unpacked package), warnings as errors:
#   1. against the CPU headers: worker/train/*.cc, worker/train/nn/*.cc,
#      worker/train/objectives/*.cc, worker/train_main.cc,
#      worker/train/text/*.cc that include LibTorch, and the trainer's tests
#      (tests/worker/train/*.cc);
#   2. as a -DFTUNE_WITH_CUDA=ON build compiles them, with FTUNE_WITH_CUDA=1
#      against the CUDA package's headers and the CUDA toolkit's
#      (/usr/local/cuda/include): the LibTorch glue worker/train/cuda/*.cc,
#      nf4_cuda_torch_check.cc, and every trainer file with FTUNE_WITH_CUDA
#      branches (torch_compat.cc, distributed.cc, nf4.cc).
# The trainer's sources of a variant are checked as one unit (a file that
# includes them all; each alone should that fail), the tests one by one.
# Each check also fails if any LibTorch header came from elsewhere (the
# installed 1.13 headers in /usr/include), so a header missing from 2.x
# cannot hide. Version differences belong in worker/train/torch_compat.{h,cc}
# (worker/train/cuda/cuda_compat.h for the CUDA glue).
# Without the headers it prints that it skipped and exits 0 (77 with
# --ctest, so ctest reports it as skipped); without CUDA headers it skips
# part 2 only.
#
# Usage: scripts/check-libtorch2.sh [--ctest]
#   FTUNE_LIBTORCH2_DIR  the unpacked packages (default /opt/ftune/libtorch2)
#   NVCC                 its toolkit's include/ is used (default /usr/local/cuda/bin/nvcc)
#   FTUNE_CHECK_JOBS     parallel compiles (default 2)
#   FTUNE_CHECK_LIBTORCH2_DIR  scratch directory (default: a new temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
skip_code=0
[[ ${1:-} == --ctest ]] && skip_code=77
lt2=${FTUNE_LIBTORCH2_DIR:-/opt/ftune/libtorch2}
version_h=torch/csrc/api/include/torch/version.h
if [[ ! -f $lt2/cpu/usr/include/$version_h ]]; then
  echo "check-libtorch2: skipped (no LibTorch 2 headers in $lt2; scripts/fetch-libtorch2.sh)"
  exit "$skip_code"
fi
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
cuda_include=$(dirname "$nvcc")/../include
jobs=${FTUNE_CHECK_JOBS:-2}
work=${FTUNE_CHECK_LIBTORCH2_DIR:-$(mktemp -d)}
[[ -n ${FTUNE_CHECK_LIBTORCH2_DIR:-} ]] || trap 'rm -rf "$work"' EXIT
rm -rf "$work/cmd" "$work/out"
mkdir -p "$work/cmd" "$work/out"

# "libtorch-dev 2.6.0+dfsg-7" (fetch-libtorch2.sh's stamp), else torch/version.h's.
torch_version() {
  if [[ -f $1/.ftune-version ]]; then
    cut -d' ' -f1,2 "$1/.ftune-version"
  else
    awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH)/ { v = v sep $3; sep = "." }
         END { print "LibTorch", v }' "$1/usr/include/$version_h"
  fi
}
# The -D flags a CMake build against this package gets: the imported
# targets' INTERFACE_COMPILE_DEFINITIONS and TORCH_CXX_FLAGS.
torch_defines() {
  grep -ho 'INTERFACE_COMPILE_DEFINITIONS "[^"$]*"' \
    "$1"/usr/lib/*/cmake/Caffe2/Caffe2Targets.cmake | cut -d'"' -f2 |
    tr ';' '\n' | sed -n 's/^./-D&/p'
  sed -n 's/.*set(TORCH_CXX_FLAGS "\(.*\)").*/\1/p' "$1"/usr/lib/*/cmake/Torch/TorchConfig.cmake
}
# g++ flags against one unpacked package: base_flags VARIANT ARRAY_NAME.
base_flags() {
  local inc=$lt2/$1/usr/include
  local -n flags=$2
  flags=(-std=c++17 -fsyntax-only -Wall -Wextra -Werror -I.
         -isystem "$inc/torch/csrc/api/include" -isystem "$inc"
         -DFTUNE_BIN_DIR=\"/nonexistent/bin\" "-DFTUNE_SOURCE_DIR=\"$PWD\""
         -DFTUNE_VERSION=\"check\")
  local d
  for d in $(torch_defines "$lt2/$1") $(pkg-config --cflags absl_status 2>/dev/null || true); do
    flags+=("$d")
  done
}

# One small script per translation unit: compile (writing the list of
# headers it read), fail if any LibTorch header came from outside $lt2, then
# mark success.
n=0
add_check() {  # add_check VARIANT FILE FLAGS...
  local variant=$1 file=$2
  shift 2
  n=$((n + 1))
  local out=$work/out/$n
  {
    echo "set -euo pipefail"
    printf '%q ' "${CXX:-g++}" "$@" -MD -MF "$out.d" "$file"
    printf '>%q 2>&1\n' "$out.log"
    printf "grep -oE '[^ \\\\]+' %q | grep -E '/(torch|ATen|c10|caffe2)/' | grep -v %q >%q || true\n" \
      "$out.d" "^$lt2/" "$out.leak"
    printf 'if [[ -s %q ]]; then echo %q; cat %q; exit 1; fi >>%q\n' \
      "$out.leak" "LibTorch headers from outside $lt2:" "$out.leak" "$out.log"
    printf 'touch %q\n' "$out.ok"
  } >"$work/cmd/$n.sh"
  echo "$variant $file" >"$out.name"
}

# <torch/torch.h> precompiled once per variant with that variant's flags
# and force-included (-include) into every file, so that each file does not
# parse LibTorch's headers again (most of the time of a check); loading it
# still costs about 10 s a unit, so the trainer's sources go in one unit
# (add_files below). The
# precompiled header's own compile goes through the same checks (warnings,
# headers from outside $lt2). Should GCC find it unusable, it reads the
# header instead: slower, same result.
pch_flags() {  # pch_flags VARIANT ARRAY_NAME: the flags to build it with.
  local -n from=$2
  local -n to=pch_build_flags
  to=()
  local f
  for f in "${from[@]}"; do [[ $f == -fsyntax-only ]] || to+=("$f"); done
  mkdir -p "$work/pch/$1"
  echo '#include <torch/torch.h>' >"$work/pch/$1/torch_pch.h"
  to+=(-x c++-header -o "$work/pch/$1/torch_pch.h.gch")
}

cpu_flags=()
base_flags cpu cpu_flags
pch_flags cpu cpu_flags
add_check cpu "$work/pch/cpu/torch_pch.h" "${pch_build_flags[@]}"
cpu_files=(worker/train/*.cc worker/train/nn/*.cc worker/train/objectives/*.cc
  worker/train_main.cc tests/worker/train/*.cc)
for f in worker/train/text/*.cc; do
  grep -qE '#include [<"](torch/|ATen/|c10/|worker/train/torch_compat\.h)' "$f" && cpu_files+=("$f")
done

cuda_note="skipped (no $cuda_include/cuda_runtime_api.h)"
cuda_files=()
if [[ ! -f $lt2/cuda/usr/include/$version_h ]]; then
  cuda_note="skipped (no libtorch-cuda-dev headers in $lt2/cuda)"
elif [[ -f $cuda_include/cuda_runtime_api.h ]]; then
  cuda_flags=()
  base_flags cuda cuda_flags
  cuda_flags+=(-isystem "$(cd "$cuda_include" && pwd)" -DFTUNE_WITH_CUDA=1)
  pch_flags cuda cuda_flags
  add_check cuda "$work/pch/cuda/torch_pch.h" "${pch_build_flags[@]}"
  mapfile -t cuda_files < <(grep -l 'FTUNE_WITH_CUDA' worker/train/*.cc)
  cuda_files=(worker/train/cuda/*.cc tests/worker/train/cuda/*.cc "${cuda_files[@]}")
fi
n_pch=$n

# The trainer's own sources of a variant are checked together, as one
# translation unit that includes them all ("unity"): most of a check's time
# is loading the precompiled header (about 10 s a unit), so one unit for
# the ~30 sources instead of one each saves minutes. Should the batch fail
# (an incompatibility, or two files' internal names clashing once put
# together), each of its files is checked alone afterwards and only those
# results count. Test files clash by design (each defines its own helpers)
# and are checked one by one.
batch_files=()   # batch_files[check number]="file file ..."
add_files() {  # add_files VARIANT FLAGS_ARRAY_NAME FILE...
  local variant=$1
  local -n fl=$2
  shift 2
  local unity=() f
  for f in "$@"; do
    if [[ $f == tests/* ]]; then
      add_check "$variant" "$f" "${fl[@]}" -include "$work/pch/$variant/torch_pch.h"
    else
      unity+=("$f")
    fi
  done
  ((${#unity[@]} > 0)) || return 0
  mkdir -p "$work/unity"
  local u=$work/unity/$variant.cc
  printf '#include "%s"\n' "${unity[@]}" >"$u"
  add_check "$variant" "$u" "${fl[@]}" -include "$work/pch/$variant/torch_pch.h"
  batch_files[n]="${unity[*]}"
}
add_files cpu cpu_flags "${cpu_files[@]}"
if ((${#cuda_files[@]} > 0)); then
  add_files cuda cuda_flags "${cuda_files[@]}"
  cuda_note="${#cuda_files[@]} files with FTUNE_WITH_CUDA=1 against $(torch_version "$lt2/cuda") and $(basename "$(cd "$cuda_include/.." && pwd -P)") headers"
fi

# The precompiled headers first (together), then the files.
start=$SECONDS
for ((i = 1; i <= n_pch; i++)); do echo "$work/cmd/$i.sh"; done |
  xargs -P "$jobs" -n 1 bash || true
for ((i = n_pch + 1; i <= n; i++)); do echo "$work/cmd/$i.sh"; done |
  xargs -P "$jobs" -n 1 bash || true
# A failed batch: its files alone, and their results instead of its own.
n_first=$n
skip=()
for i in "${!batch_files[@]}"; do
  [[ -f $work/out/$i.ok ]] && continue
  skip[i]=1
  echo "check-libtorch2: the batch $(cat "$work/out/$i.name") failed; checking its files one by one:" >&2
  head -20 "$work/out/$i.log" >&2
  variant=$(cut -d' ' -f1 "$work/out/$i.name")
  [[ $variant == cpu ]] && flags_name=cpu_flags || flags_name=cuda_flags
  declare -n bf=$flags_name
  for f in ${batch_files[i]}; do
    add_check "$variant" "$f" "${bf[@]}" -include "$work/pch/$variant/torch_pch.h"
  done
  unset -n bf
done
for ((i = n_first + 1; i <= n; i++)); do echo "$work/cmd/$i.sh"; done |
  xargs -P "$jobs" -n 1 bash || true
failed=0
for ((i = 1; i <= n; i++)); do
  [[ -n ${skip[i]:-} ]] && continue
  if [[ ! -f $work/out/$i.ok ]]; then
    failed=$((failed + 1))
    echo "check-libtorch2: FAILED: $(cat "$work/out/$i.name")" >&2
    head -40 "$work/out/$i.log" >&2
  fi
done
if ((${#skip[@]} > 0 && failed == 0)); then
  echo "check-libtorch2: WARNING: every file passes alone but not together (internal names that clash above?): rename them so the batch passes again (it saves minutes)" >&2
fi
summary="${#cpu_files[@]} files against $(torch_version "$lt2/cpu"); CUDA: $cuda_note ($((SECONDS - start)) s)"
if ((failed > 0)); then
  echo "check-libtorch2: $failed FAILED; $summary" >&2
  exit 1
fi
echo "check-libtorch2: all clean: $summary"
