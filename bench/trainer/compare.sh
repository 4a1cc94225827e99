#!/usr/bin/env bash
# Side-by-side trainer throughput: `ftune-train bench` against the eager
# PyTorch LoRA loop of bench/peer_lora.py, same shape, same machine, runs
# interleaved so that a change in machine load hits every variant alike.
#
#   bench/trainer/compare.sh [--rounds N] [--steps N] [--build DIR]
#
# Variants:
#   ftune fp32          ftune-train bench (its defaults: OpenMP OpenBLAS,
#                       GOMP_SPINCOUNT=10000, see worker/train/runtime.h)
#   ftune bf16          the same with --dtype bf16 (fp32 LoRA weights/AdamW)
#   peer fp32           python3 bench/peer_lora.py as a user runs it
#   peer fp32 tuned     the peer with ftune's runtime settings (OpenMP
#                       OpenBLAS via LD_LIBRARY_PATH, GOMP_SPINCOUNT=10000,
#                       and glibc malloc keeping freed memory through its
#                       MALLOC_* variables, as KeepFreedMemoryInProcess does)
#   peer bf16 autocast  the peer under torch.autocast("cpu", bfloat16)
#   ftune full fp32     ftune-train bench --method full: every weight trained
#                       (docs/trainer.md#full-fine-tuning)
#   peer full fp32      bench/peer_lora.py --full 1: the eager PyTorch full
#                       fine-tune of the same shape (all parameters, AdamW)
# Prints one line per run and, at the end, the median tokens/s per variant
# and each variant's ratio to its peer ("peer fp32", or "peer full fp32" for
# the full variants), with the peak memory of the last ftune run of each.
# Exit 1 if a run fails.
set -euo pipefail
rounds=3 steps=4 build=build
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--steps N] [--build DIR]" >&2; exit 2 ;;
  esac
done
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
train=$build/bin/ftune-train
[[ -x $train ]] || { echo "compare: $train not built" >&2; exit 2; }
py=/usr/bin/python3
omp_blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() {  # name, command...
  local name=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  local text tps mem
  text=$("$@" 2>/dev/null)
  tps=$(sed -n 's/^tokens_per_s=//p' <<<"$text" | tail -1)
  mem=$(sed -n 's/^peak_memory_bytes=//p' <<<"$text" | tail -1)
  [[ -n $tps ]] || { echo "compare: $name failed" >&2; exit 1; }
  printf '%-20s round=%d load1=%s tokens_per_s=%s peak_memory_bytes=%s\n' \
    "$name" "$r" "$load" "$tps" "${mem:--}"
  printf '%s\t%s\t%s\n' "$name" "$tps" "${mem:--}" >>"$out"
}

for ((r = 1; r <= rounds; r++)); do
  run "ftune fp32" "$train" bench --steps "$steps" --warmup 1
  run "peer fp32" "$py" bench/peer_lora.py --steps "$steps" --warmup 1
  run "ftune bf16" "$train" bench --steps "$steps" --warmup 1 --dtype bf16
  run "peer fp32 tuned" env LD_LIBRARY_PATH=$omp_blas GOMP_SPINCOUNT=10000 \
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1 MALLOC_TOP_PAD_=$((64 << 20)) \
    "$py" bench/peer_lora.py --steps "$steps" --warmup 1
  run "peer bf16 autocast" "$py" bench/peer_lora.py --steps "$steps" \
    --warmup 1 --bf16 1
  run "ftune full fp32" "$train" bench --steps "$steps" --warmup 1 \
    --method full
  run "peer full fp32" "$py" bench/peer_lora.py --steps "$steps" --warmup 1 \
    --full 1
done

echo "median tokens/s over $rounds rounds (stories15M shape, seq 256, batch 8, rank 8, 2 threads):"
"$py" - "$out" <<'PY'
import statistics, sys
runs, mem = {}, {}
for line in open(sys.argv[1]):
    name, tps, peak = line.rstrip("\n").split("\t")
    runs.setdefault(name, []).append(float(tps))
    mem[name] = peak
med = {k: statistics.median(v) for k, v in runs.items()}
for k, v in med.items():
    peer = "peer full fp32" if "full" in k else "peer fp32"
    peak = "" if mem[k] == "-" else f"  peak {int(mem[k]) / 2**20:.0f} MiB"
    print(f"  {k:<20} {v:8.1f}  ({v / med[peer]:.2f}x {peer}){peak}")
PY
