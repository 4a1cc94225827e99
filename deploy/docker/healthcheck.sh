#!/bin/bash
# ftune-healthcheck [HOST:PORT] [PATH]
#
# Container health check without curl or wget (the images carry neither):
# sends "GET PATH" over bash's /dev/tcp and exits 0 when the answer is
# "200", 1 otherwise (connection refused, other status, no answer within
# 5 s). Defaults: $FTUNE_HEALTH_ADDRESS or 127.0.0.1:9090, $FTUNE_HEALTH_PATH
# or /readyz. The scheduler and worker serve /healthz and /readyz on their
# --metrics_address (docs/metrics.md).
set -u
address=${1:-${FTUNE_HEALTH_ADDRESS:-127.0.0.1:9090}}
path=${2:-${FTUNE_HEALTH_PATH:-/readyz}}
host=${address%:*}
port=${address##*:}

if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "ftune-healthcheck: cannot connect to $address" >&2
  exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' \
  "$path" "$address" >&3
status=""
IFS=$' \t\r' read -r -t 5 _ status _ <&3 || true
exec 3<&-
if [[ $status == 200 ]]; then
  exit 0
fi
echo "ftune-healthcheck: GET http://$address$path: status '${status:-none}'" >&2
exit 1
