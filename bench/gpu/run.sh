#!/usr/bin/env bash
# The GPU check and benchmark, as one script for a GPU host (docs/gpu.md):
# run from the repository root with $OUT set to an output directory, on a
# machine with python3 + PyTorch 2.x (CUDA), transformers and peft, nvcc,
# CMake and Ninja; no network needed. Finishes in about 9 minutes at most
# (FTUNE_GPU_BUDGET_S, default 540 s); every phase is time-boxed and skipped,
# with the reason, when it cannot run.
#
#   OUT=/tmp/out bash bench/gpu/run.sh
#
# Phases:
#   env     GPU, driver, torch, nvcc, cmake versions
#   deps    the trainer's build dependencies (Abseil, nlohmann/json, PCRE2,
#           sentencepiece, pkg-config): from the system, or from the Debian
#           packages that bench/gpu/fetch-deps.sh put in build-gpu-deps/
#           (unpacked into /tmp/ftune-deps, never into /); names what is
#           missing
#   build   ftune-train and nf4_cuda_torch_check against the Python
#           install's LibTorch with -DFTUNE_WITH_CUDA=ON (in the background,
#           niced, while the next two phases use the GPU)
#   kernel  tests/worker/train/cuda/nf4_kernels_test.cu built with nvcc and
#           run: kernels vs an independent CPU reference, bit for bit
#   peft    bench/gpu/peft_peer.py: HF transformers + PEFT LoRA, same shape
#   glue    nf4_cuda_torch_check: DequantizeCuda() vs nf4.cc's Dequantize()
#   ftune   ftune-train bench --device cuda (only if the binary has the
#           flag), LoRA and then QLoRA
#
# Output: one key=value line per figure on stdout and in $OUT/summary.txt
# (keys prefixed by phase); logs in $OUT/*.log (at most 8 files in all).
# Shape: TinyLlama-1.1B (hidden 2048, 22 layers, 32 heads, 4 KV heads,
# MLP 5632, vocab 32000), seq FTUNE_GPU_SEQ (1024) x batch FTUNE_GPU_BATCH
# (8), LoRA rank 8 on all linear projections.
set -uo pipefail
shopt -s extglob
cd "$(dirname "$0")/../.."
root=$PWD
OUT=${OUT:-$root/build-gpu-out}
mkdir -p "$OUT"
summary=$OUT/summary.txt
: >"$summary"
t0=$(date +%s)
budget=${FTUNE_GPU_BUDGET_S:-540}
seq=${FTUNE_GPU_SEQ:-1024}
batch=${FTUNE_GPU_BATCH:-8}
steps=${FTUNE_GPU_STEPS:-10}
warmup=${FTUNE_GPU_WARMUP:-3}
py=${PYTHON:-python3}
jobs=${FTUNE_JOBS:-$(nproc)}
scratch=/tmp/ftune-gpu
build=$scratch/build
mkdir -p "$scratch"

kv() { echo "$1=$2" | tee -a "$summary"; }
note() { echo "# $*" | tee -a "$summary"; }
left() { echo $((budget - ($(date +%s) - t0))); }
# Copies the key=value lines of a log into the summary under a prefix.
harvest() {
  local prefix=$1 log=$2
  grep -E '^[A-Za-z_][A-Za-z0-9_.]*=' "$log" | sed "s/^/$prefix./" | tee -a "$summary"
}
# Seconds for a phase: at most $1, and never past the budget minus $2.
box() {
  local want=$1 reserve=${2:-0} l
  l=$(($(left) - reserve))
  ((l < want)) && want=$l
  ((want < 1)) && want=1
  echo "$want"
}

# --- env ---------------------------------------------------------------------
note "ftune GPU run $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
kv env.gpu "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '_' || echo none)"
kv env.python "$(command -v "$py" || echo none)"
kv env.torch "$("$py" -c 'import torch;print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null | tr ' ' '_' || echo none)"
nvcc=${CUDACXX:-}
for c in "$(command -v nvcc || true)" /usr/local/cuda/bin/nvcc; do
  [[ -z $nvcc && -n $c && -x $c ]] && nvcc=$c
done
kv env.nvcc "${nvcc:-none}"
[[ -n $nvcc ]] && kv env.nvcc_version "$("$nvcc" --version | tail -1 | tr ' ' '_')"
kv env.cmake "$(cmake --version 2>/dev/null | head -1 | awk '{print $3}' || echo none)"
kv env.ninja "$(ninja --version 2>/dev/null || echo none)"
kv env.cxx "$(g++ -dumpfullversion 2>/dev/null || echo none)"
kv env.cores "$(nproc)"

# The shape, as a Hugging Face config.json (read by both benches).
cfg=$scratch/config.json
cat >"$cfg" <<'EOF'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 2048,
  "intermediate_size": 5632,
  "num_hidden_layers": 22,
  "num_attention_heads": 32,
  "num_key_value_heads": 4,
  "vocab_size": 32000,
  "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": 2
}
EOF
kv shape "tinyllama-1.1b seq=$seq batch=$batch rank=8 steps=$steps warmup=$warmup"

# --- deps ----------------------------------------------------------------------
deps_prefix=
pkg_config=$(command -v pkg-config || command -v pkgconf || true)
if compgen -G 'build-gpu-deps/*.deb' >/dev/null; then
  deps_prefix=/tmp/ftune-deps
  rm -rf "$deps_prefix" && mkdir -p "$deps_prefix"
  for f in build-gpu-deps/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" "$deps_prefix"
    else
      (d=$(mktemp -d) && cd "$d" && ar x "$root/$f" && tar -xf data.tar.* -C "$deps_prefix" && rm -rf "$d")
    fi
  done
  lib=$deps_prefix/usr/lib/x86_64-linux-gnu
  # Only the carried .pc files, their paths moved under the prefix.
  export PKG_CONFIG_LIBDIR=$lib/pkgconfig:$deps_prefix/usr/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$deps_prefix
  if [[ -z $pkg_config ]]; then
    pkg_config=$deps_prefix/pkg-config
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$lib" "$deps_prefix/usr/bin/pkgconf" >"$pkg_config"
    chmod +x "$pkg_config"
  fi
  note "deps: unpacked $(ls build-gpu-deps/*.deb | wc -l) carried packages into $deps_prefix"
fi
missing=()
[[ -n $nvcc ]] || missing+=(nvcc)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja)
command -v g++ >/dev/null || missing+=(g++)
"$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || missing+=(torch-with-cuda)
has_cmake_pkg() {  # NAME: a <NAME>Config.cmake under the prefix or the system
  local d
  for d in ${deps_prefix:+$deps_prefix/usr} /usr /usr/local; do
    compgen -G "$d/lib/x86_64-linux-gnu/cmake/$1*/$1Config.cmake" >/dev/null && return 0
    compgen -G "$d/lib/cmake/$1*/$1Config.cmake" >/dev/null && return 0
    compgen -G "$d/share/cmake/$1*/$1Config.cmake" >/dev/null && return 0
  done
  return 1
}
has_cmake_pkg absl || missing+=(absl)
has_cmake_pkg nlohmann_json || missing+=(nlohmann_json)
if [[ -z $pkg_config ]]; then
  missing+=(pkg-config)
else
  "$pkg_config" --exists libpcre2-8 || missing+=(pcre2)
  "$pkg_config" --exists sentencepiece || missing+=(sentencepiece)
fi
if ((${#missing[@]} > 0)); then
  kv deps.missing "$(IFS=,; echo "${missing[*]}")"
  [[ " ${missing[*]} " == *" "@(absl|nlohmann_json|pcre2|sentencepiece|pkg-config)" "* ]] &&
    note "deps: run bench/gpu/fetch-deps.sh on the development machine and carry build-gpu-deps/"
else
  kv deps.missing none
fi

# --- build (background) -----------------------------------------------------------
build_pid=
build_log=$OUT/build.log
can_build=1
for m in "${missing[@]}"; do
  case $m in absl | nlohmann_json | pcre2 | sentencepiece | pkg-config | nvcc | cmake | ninja | g++ | torch-with-cuda) can_build=0 ;; esac
done
if ((can_build)); then
  torch_prefix=$("$py" -c 'import torch;print(torch.utils.cmake_prefix_path)')
  prefix_path="$torch_prefix${deps_prefix:+;$deps_prefix/usr}"
  set -m  # the build gets its own process group, so a timeout stops all of it
  (
    set -o pipefail
    b0=$(date +%s)
    nice -n 10 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFTUNE_BUILD_SERVICES=OFF -DFTUNE_BUILD_TESTS=OFF -DFTUNE_BUILD_BENCH=OFF \
      -DFTUNE_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
      -DCMAKE_PREFIX_PATH="$prefix_path" -DPKG_CONFIG_EXECUTABLE="$pkg_config" &&
      nice -n 10 cmake --build "$build" -j "$jobs" --target ftune-train nf4_cuda_torch_check
    rc=$?
    echo "build_rc=$rc build_seconds=$(($(date +%s) - b0))"
    exit $rc
  ) >"$build_log" 2>&1 &
  build_pid=$!
  set +m
  note "build: started in the background (log build.log)"
else
  kv build skipped_missing_deps
fi

# --- kernel test -------------------------------------------------------------------
kernel_log=$OUT/kernel_test.log
if [[ -n $nvcc ]]; then
  (
    "$nvcc" -std=c++17 -O2 -I. -gencode arch=compute_90,code=sm_90 \
      -gencode arch=compute_80,code=compute_80 -o "$scratch/nf4_kernels_test" \
      tests/worker/train/cuda/nf4_kernels_test.cu worker/train/cuda/nf4_kernels.cu &&
      timeout "$(box 120 300)" "$scratch/nf4_kernels_test"
  ) >"$kernel_log" 2>&1
  kv kernel.rc $?
  harvest kernel "$kernel_log"
  tail -3 "$kernel_log"
else
  kv kernel skipped_no_nvcc
fi

# --- PEFT peer ----------------------------------------------------------------------
peft_log=$OUT/peft.log
if "$py" -c 'import torch, transformers, peft' 2>/dev/null; then
  PYTHONUNBUFFERED=1 timeout "$(box 180 240)" "$py" bench/gpu/peft_peer.py \
    --config "$cfg" --seq "$seq" --batch "$batch" --rank 8 --steps "$steps" \
    --warmup "$warmup" >"$peft_log" 2>&1
  kv peft.rc $?
  harvest peft "$peft_log"
else
  kv peft skipped_no_transformers_or_peft
fi

# --- wait for the build ------------------------------------------------------------
built=0
if [[ -n $build_pid ]]; then
  while kill -0 "$build_pid" 2>/dev/null && (($(left) > 150)); do sleep 2; done
  if kill -0 "$build_pid" 2>/dev/null; then
    kill -- "-$build_pid" 2>/dev/null || kill "$build_pid"
    kv build timed_out
  fi
  wait "$build_pid"
  rc=$?
  kv build.rc $rc
  harvest build <(grep -E '^build_' "$build_log" | tr ' ' '\n')
  ((rc == 0)) && built=1
  ((rc == 0)) || grep -E 'CMake Error|error:|Could not find|FAILED' "$build_log" | head -15 | sed 's/^/# /' | tee -a "$summary"
fi
ftune_env=(env "LD_LIBRARY_PATH=${deps_prefix:+$deps_prefix/usr/lib/x86_64-linux-gnu:}${LD_LIBRARY_PATH:-}")

# --- glue check ---------------------------------------------------------------------
if ((built)); then
  glue_log=$OUT/glue_check.log
  timeout "$(box 60 60)" "${ftune_env[@]}" "$build/tests/nf4_cuda_torch_check" >"$glue_log" 2>&1
  kv glue.rc $?
  tail -3 "$glue_log" | sed 's/^/# /' | tee -a "$summary"
fi

# --- ftune-train bench -------------------------------------------------------------
# ftune-train ignores flags it does not know, so ask the source whether the
# bench takes --device before running a 1B shape that would land on the CPU.
if ((built)); then
  if grep -q '"device"' worker/train_main.cc; then
    extra=()
    grep -q '"dtype"' worker/train_main.cc && extra+=(--dtype bf16)
    ftune_log=$OUT/ftune_bench.log
    : >"$ftune_log"
    for variant in lora qlora; do
      (($(left) > 30)) || { kv "ftune_$variant" skipped_out_of_time; continue; }
      flags=()
      [[ $variant == qlora ]] && flags+=(--qlora)
      echo "### $variant" >>"$ftune_log"
      timeout "$(box 200 10)" "${ftune_env[@]}" "$build/bin/ftune-train" bench \
        --config "$cfg" --seq "$seq" --batch "$batch" --rank 8 --steps "$steps" \
        --warmup "$warmup" --device cuda "${extra[@]}" "${flags[@]}" \
        >"$scratch/ftune_$variant.out" 2>>"$ftune_log"
      kv "ftune_$variant.rc" $?
      cat "$scratch/ftune_$variant.out" >>"$ftune_log"
      harvest "ftune_$variant" "$scratch/ftune_$variant.out"
    done
  else
    kv ftune skipped_no_device_flag
    note "ftune-train bench has no --device flag in this tree yet"
  fi
fi

kv total_seconds $(($(date +%s) - t0))
# Keep the logs small enough to come back.
for f in "$OUT"/*.log; do
  [[ -f $f ]] && (($(stat -c %s "$f") > 4000000)) && tail -c 4000000 "$f" >"$f.tmp" && mv "$f.tmp" "$f"
done
exit 0
