#!/usr/bin/env bash
# Installs what benchmarks/serving_bench.py compares against, outside the project's own
# environment: the load generators (wrk for HTTP/1.1, h2load for gRPC over HTTP/2; neither is
# Python, so the client is not the bottleneck) and one venv per peer Python model server, each with the
# project's TensorFlow pins so every server runs the very same SavedModel code.
#
#   bash benchmarks/peers/setup.sh            # everything (needs root for apt-get)
#   PEERS_DIR=/elsewhere bash benchmarks/peers/setup.sh kserve mlserver
#
# Not run in CI: the benchmark is a script for people, not a test.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PEERS_DIR="${PEERS_DIR:-/work/peers}"
PYTHON="${PYTHON:-$(readlink -f "$REPO/.venv/bin/python" 2>/dev/null || readlink -f /work/main/.venv/bin/python)}"  # the project's Python 3.10
# The newest releases that run beside TensorFlow 2.16's protobuf<5 (kserve 0.16+ wants
# protobuf 6; mlserver 1.7.x ships protos generated for protobuf 5 and fails to import).
KSERVE_VERSION="${KSERVE_VERSION:-0.15.2}"
MLSERVER_VERSION="${MLSERVER_VERSION:-1.6.1}"

# TensorFlow as the project pins it, so the peers load the model with the same code.
pin() { grep -i -E "^$1==" "$REPO/requirements.lock"; }
TF_PINS=("$(pin tensorflow)" "$(pin tf_keras)")

load_generators() {
  # wrk: HTTP/1.1 with a Lua body; h2load: HTTP/2, sends a pre-built gRPC message.
  if ! command -v wrk >/dev/null || ! command -v h2load >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk nghttp2-client
  fi
}

peer_venv() {  # name, packages...
  local name="$1"; shift
  local venv="$PEERS_DIR/$name/venv"
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
  fi
  "$venv/bin/pip" install -q "$@" "${TF_PINS[@]}"
  "$venv/bin/pip" check
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(load_generators kserve mlserver)
for target in "${targets[@]}"; do
  case "$target" in
    load_generators) load_generators ;;
    kserve) peer_venv kserve "kserve==$KSERVE_VERSION" ;;
    # uvloop 0.22+ raises in the asyncio.get_event_loop() that mlserver 1.6 workers call.
    mlserver) peer_venv mlserver "mlserver==$MLSERVER_VERSION" uvloop==0.19.0 ;;
    *) echo "unknown target $target (load_generators, kserve, mlserver)" >&2; exit 2 ;;
  esac
  echo "ready: $target"
done
