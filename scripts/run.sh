#!/usr/bin/env bash
# Quick start: builds what is missing, starts a small simulated fleet (model-sim, vLLM-like) and
# Envoy 1.40 with the picker in front of it, prints a curl that works, and keeps running until
# Ctrl-C (then stops everything it started).
#
#   [RUN_BUILD=native|wasm] [RUN_SERVERS=3] [RUN_PORT=8080] [RUN_ADMIN_PORT=9901] \
#     [RUN_BASE_PORT=18000] scripts/run.sh        (or: make run)
#
# The model servers listen on 127.0.0.1:RUN_BASE_PORT+1…; Envoy on 127.0.0.1:RUN_PORT, its admin
# (stats, /stats/prometheus) on 127.0.0.1:RUN_ADMIN_PORT. Everything lives in a temporary
# directory printed at start (picker.json, envoy.yaml, the logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${RUN_BUILD:-native}
N=${RUN_SERVERS:-3}
PORT=${RUN_PORT:-8080}
ADMIN=${RUN_ADMIN_PORT:-9901}
BASE=${RUN_BASE_PORT:-18000}
MODEL=meta-llama/Llama-3.1-8B-Instruct   # what model-sim serves by default
case "$BUILD" in
  native) MODULE_TARGET=native ;;
  wasm) MODULE_TARGET=wasm ;;
  *) echo "RUN_BUILD must be native or wasm" >&2; exit 2 ;;
esac

echo "== building what is missing (the first run on a fresh machine takes a few minutes)"
make -s "$MODULE_TARGET" envoy >/dev/null
cargo build -q --release -p model-sim -p envoy-config

WORK=$(mktemp -d /tmp/endpoint-picker-run.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

endpoints=""
for i in $(seq 1 "$N"); do
  "$ROOT/target/release/model-sim" --listen "127.0.0.1:$((BASE + i))" --name "sim-$i" \
    >"$WORK/model-sim-$i.log" 2>&1 &
  PIDS+=($!)
  endpoints+="{\"address\": \"127.0.0.1:$((BASE + i))\"},"
done
cat >"$WORK/picker.json" <<JSON
{
  "pool": {"cluster": "inference_pool", "endpoints": [${endpoints%,}], "debug": true}
}
JSON
render=(--config "$WORK/picker.json" --listen "127.0.0.1:$PORT" --admin-port "$ADMIN" --out "$WORK/envoy.yaml")
if [ "$BUILD" = native ]; then
  export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$ROOT/dist"
  "$ROOT/target/release/envoy-config" render --native "${render[@]}"
else
  "$ROOT/target/release/envoy-config" render --wasm "$ROOT/dist/endpoint_picker.wasm" "${render[@]}"
fi
"$ROOT/.venv/bin/envoy" -c "$WORK/envoy.yaml" --disable-hot-restart --log-level info \
  >"$WORK/envoy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$ADMIN/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "127.0.0.1:$ADMIN/ready" >/dev/null || { echo "Envoy did not start; see $WORK/envoy.log" >&2; tail -20 "$WORK/envoy.log" >&2; exit 1; }

cat <<TXT

Envoy with the $BUILD picker is on 127.0.0.1:$PORT, in front of $N simulated model servers
serving $MODEL. Working files and logs: $WORK

  curl -s 127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -H 'x-endpoint-picker-debug: 1' -D - \\
    -d '{"model": "$MODEL", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}'

The x-endpoint-picker-debug response header explains the pick; GIE-named metrics are at
  curl -s 127.0.0.1:$ADMIN/stats/prometheus | grep -E '^(inference_|endpoint_picker_|envoy_dynamicmodulescustom_)'
Ctrl-C stops Envoy and the model servers.
TXT
wait "${PIDS[@]}"
