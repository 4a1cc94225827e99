#!/usr/bin/env bash
# Generates the Python messages and gRPC stubs of ftune.v1 from the .proto
# files of this checkout.
#
# Usage: examples/python/generate_stubs.sh [OUT_DIR]
#   OUT_DIR defaults to examples/python/gen (git-ignored). The modules land
#   in OUT_DIR/ftune/v1/*_pb2.py and *_pb2_grpc.py; ftune_example.py takes
#   the directory as --stubs.
#
# It uses Debian's protoc (protobuf-compiler) with the gRPC Python plugin of
# protobuf-compiler-grpc: both match python3-protobuf / python3-grpcio.
# `python3 -m grpc_tools.protoc` from Debian 12's python3-grpc-tools bundles
# protoc 3.5, which predates proto3 `optional` fields, so it cannot compile
# these protos; with a newer grpcio-tools (pip) the equivalent command is
#   python3 -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT proto/ftune/v1/*.proto
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
out=${1:-$here/gen}
plugin=${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}
if [[ -z $plugin ]]; then
  echo "generate_stubs: grpc_python_plugin not found (Debian: protobuf-compiler-grpc)" >&2
  exit 2
fi

mkdir -p "$out"
protoc \
  --proto_path="$proto_root" \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  "$proto_root"/ftune/v1/*.proto
echo "generate_stubs: wrote $out/ftune/v1"
