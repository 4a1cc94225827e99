#!/usr/bin/env bash
# The README's demo: a complete fine-tuning job on this machine.
#
# Installs what is missing, builds, makes sure the demo base model exists
# (scripts/get-model.sh has ftune-train pretrain it once, about 10 minutes on
# 2 idle cores; then cached in .cache/models/), then starts ftune-scheduler
# and one CPU ftune-worker on free local ports, and plays operator and tenant
# with ftunectl: tenant + API key, dataset upload (examples/debian-sections:
# a Debian package's section from its name, summary and dependencies, as
# JSON), a LoRA job evaluated at step 0 and as it trains (held-out loss,
# exact match, format match), watched to the end. Prints the sample answers
# before and after training, the evaluations, where the adapter was
# published, then stops everything.
#
#   FTUNE_DEMO_KEEP=1   keep the work directory (logs, database, storage)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
scripts/install-deps.sh
scripts/build.sh build

model_name=debian-llama-9m
model_dir=$repo/.cache/models/$model_name
if [[ ! -f $model_dir/pretrain_recipe.json ]]; then
  echo "== building the demo base model (once; cached in $model_dir)"
  # get-model.sh reads Debian's package descriptions (apt's Translation-en).
  if ! ls /var/lib/apt/lists/*Translation-en* >/dev/null 2>&1; then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -q -o Acquire::Languages=en
  fi
  scripts/get-model.sh "$model_dir"
fi

work=$(mktemp -d /tmp/ftune-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ ${FTUNE_DEMO_KEEP:-0} == 1 ]]; then
    echo "== kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

bin=$repo/build/bin
storage=$work/storage
mkdir -p "$storage/models"
# Shared storage holds the base models; link the cached one in.
ln -s "$model_dir" "$storage/models/$model_name"
cat >"$work/scheduler.json" <<EOF
{"models": [{"name": "$model_name"}]}
EOF
# Throw-away credentials (docs/operations.md "Credentials").
head -c 24 /dev/urandom | base64 >"$work/admin.key"
head -c 24 /dev/urandom | base64 >"$work/worker.key"

wait_for_line() {  # FILE PREFIX PID -> the rest of the first line with PREFIX
  for _ in $(seq 300); do
    if grep -q "^$2" "$1" 2>/dev/null; then
      sed -n "s/^$2//p" "$1" | head -1
      return 0
    fi
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "demo: $1 never printed $2; see the logs in $work" >&2
  FTUNE_DEMO_KEEP=1
  return 1
}

echo "== starting ftune-scheduler (log: $work/scheduler.log)"
"$bin/ftune-scheduler" --grpc_address=127.0.0.1:0 --db="$work/sched.db" \
  --metrics_address=127.0.0.1:0 \
  --storage_root="$storage" --config="$work/scheduler.json" \
  --admin_key_file="$work/admin.key" --worker_key_file="$work/worker.key" \
  >"$work/scheduler.out" 2>"$work/scheduler.log" &
pids+=($!)
address=$(wait_for_line "$work/scheduler.out" grpc_address= "${pids[0]}")
export FTUNE_ADDRESS=$address

echo "== starting ftune-worker, one CPU slot (log: $work/worker.log)"
"$bin/ftune-worker" --scheduler="$address" --storage_root="$storage" \
  --worker_key_file="$work/worker.key" --trainer="$bin/ftune-train" \
  --work_dir="$work/worker" --cpu_slots=1 --gpus=none --metrics_address=127.0.0.1:0 \
  >"$work/worker.out" 2>"$work/worker.log" &
pids+=($!)
worker_id=$(wait_for_line "$work/worker.out" worker_id= "${pids[1]}")
echo "   registered as $worker_id"

ctl() { "$bin/ftunectl" "$@"; }

echo "== operator: a tenant and its API key"
tenant=$(ctl --api-key-file "$work/admin.key" tenants create demo-team)
echo "   tenant $tenant"
ctl --api-key-file "$work/admin.key" --output json \
  keys create --tenant "$tenant" --description demo >"$work/key.json"
/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"])' \
  "$work/key.json" >"$work/tenant.key"
export FTUNE_API_KEY_FILE=$work/tenant.key

data=examples/debian-sections
echo "== tenant: upload the dataset ($data)"
train=$(ctl files upload $data/train.jsonl)
eval=$(ctl files upload $data/eval.jsonl --purpose validation)
echo "   training file $train, validation file $eval"

echo "== tenant: create a LoRA job"
ctl models list
job=$(ctl jobs create --model "$model_name" --training-file "$train" \
  --validation-file "$eval" --method lora --lora-rank 8 --lora-alpha 16 \
  --target-modules all-linear --epochs 2 --learning-rate 5e-3 \
  --lr-scheduler cosine --warmup-steps 4 --batch-size 4 --max-seq-length 256 \
  --packing --eval-every-steps 12 --checkpoint-every-steps 24 \
  --eval-on-start --eval-samples 3 --sample-max-new-tokens 12 \
  --eval-task-examples 64 --task-max-new-tokens 12 \
  --eval-pattern '^\{"section": "[a-z0-9-]+"\}$' --select-best-by exact_match \
  --seed 1 --gpus 0 --cpu-threads 2 --suffix demo)
echo "   job $job"

echo "== tenant: watch it to the end"
ctl jobs watch "$job"

echo "== what the model answers: before training (step 0) and after"
ctl jobs samples "$job"

echo "== held-out evaluations: step 0 is the base model (--eval-on-start)"
ctl --output json jobs metrics "$job" --all | /usr/bin/python3 -c '
import json, sys
points = [p for p in json.load(sys.stdin).get("metrics", []) if "evalLoss" in p]
for p in points:
    t = p.get("evalTask", {})
    print("  step %4s  eval_loss %.4f  exact_match %.3f  pattern_match %.3f  (%s examples)" % (
        p.get("step", "0"), p["evalLoss"], t.get("exactMatch", 0), t.get("patternMatch", 0),
        t.get("examples", "?")))
if len(points) > 1:
    a, b = points[0], points[-1]
    ta, tb = a.get("evalTask", {}), b.get("evalTask", {})
    print("  before -> after: exact_match %.1f%% -> %.1f%%, format (pattern_match) %.1f%% -> %.1f%%, "
          "held-out loss %.3f -> %.3f nats/token" % (
              100 * ta.get("exactMatch", 0), 100 * tb.get("exactMatch", 0),
              100 * ta.get("patternMatch", 0), 100 * tb.get("patternMatch", 0),
              a["evalLoss"], b["evalLoss"]))
'

echo "== tenant: try the tuned adapter, then the base model, on held-out prompts (adapters try)"
prompts=$work/try-prompts.jsonl
# Two held-out prompts (the validation file's first lines), the answers left out.
head -2 $data/eval.jsonl |
  /usr/bin/python3 -c 'import json,sys
for l in sys.stdin: print(json.dumps({"prompt": json.loads(l)["prompt"]}))' >"$prompts"
ctl adapters try "$job" --prompts "$prompts" --max-new-tokens 12
ctl adapters try "$job" --base --prompts "$prompts" --max-new-tokens 12

echo "== result"
ctl jobs get "$job"
adapter=$(ctl --output json jobs get "$job" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["adapter"]["path"])')
echo "adapter published at $storage/$adapter:"
ls -l "$storage/$adapter"
echo "== demo finished"
