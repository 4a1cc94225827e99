#!/usr/bin/env bash
# The README's demo: installs what is missing, builds, starts a scheduler on a
# free local port and shows it answering through ftunectl, then stops it.
# Later parts extend this to a full fine-tuning job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build

work=$(mktemp -d /tmp/ftune-demo.XXXXXX)
sched_pid=""
cleanup() {
  if [[ -n $sched_pid ]] && kill -0 "$sched_pid" 2>/dev/null; then
    kill -TERM "$sched_pid"; wait "$sched_pid" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting ftune-scheduler (logs: $work/scheduler.log)"
# A throw-away admin credential (docs/operations.md "Credentials").
head -c 24 /dev/urandom | base64 >"$work/admin.key"
build/bin/ftune-scheduler --grpc_address=127.0.0.1:0 --db="$work/sched.db" \
  --storage_root="$work/storage" --admin_key_file="$work/admin.key" >"$work/scheduler.out" 2>"$work/scheduler.log" &
sched_pid=$!
for _ in $(seq 100); do
  grep -q '^grpc_address=' "$work/scheduler.out" 2>/dev/null && break
  kill -0 "$sched_pid" 2>/dev/null || { cat "$work/scheduler.log"; exit 1; }
  sleep 0.1
done
endpoint=$(sed -n 's/^grpc_address=//p' "$work/scheduler.out")
[[ -n $endpoint ]] || { echo "scheduler did not report its address" >&2; exit 1; }

echo "== ftunectl --endpoint $endpoint status"
build/bin/ftunectl --endpoint "$endpoint" status

echo "== stopping the scheduler (SIGTERM)"
kill -TERM "$sched_pid"; wait "$sched_pid"; sched_pid=""
echo "== demo finished"
