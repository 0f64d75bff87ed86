#!/usr/bin/env bash
# The demo: 4 simulated model servers, Envoy, and one shared-prefix workload run three times —
# Envoy round robin, Envoy least request, Envoy with the endpoint picker (default GIE profile) —
# then a comparison table and a TTFT chart (demo-results/ttft.svg).
#
#   scripts/demo.sh            (make demo runs this; DEMO_SECONDS / DEMO_QPS override)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${DEMO_SECONDS:-45}
QPS=${DEMO_QPS:-22}
N=4
BASE_PORT=${DEMO_BASE_PORT:-18600}
LISTEN=$((BASE_PORT + 80))
ADMIN=$((BASE_PORT + 81))
OUT=demo-results
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Simulated fleet: a small KV cache per server, so a server cannot hold every group's system
# prompt (round robin makes each server see all of them) but the fleet can when each group
# sticks to one server.
SIM_ARGS=(--num-gpu-blocks 1000 --max-num-seqs 64 --max-num-batched-tokens 4096)
# Workload: 16 groups x 32 questions, 1200-token system prompts, 60-token questions, 32 outputs.
LOAD_ARGS=(--workload shared-prefix --groups 16 --prompts-per-group 32 --system-tokens 1200
           --question-tokens 60 --output-tokens 32 --qps "$QPS" --duration "$SECS" --seed 7)

echo "== building (first run installs the wasm toolchain and Envoy) =="
make -s wasm envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config

endpoints=""; metrics=""
for i in $(seq 1 $N); do
  endpoints+="{\"address\": \"127.0.0.1:$((BASE_PORT + i))\"},"
  metrics+="http://127.0.0.1:$((BASE_PORT + i))/metrics,"
done
echo "{\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}}" > "$WORK/picker.json"

start_sims() {
  SIM_PIDS=()
  for i in $(seq 1 $N); do
    target/release/model-sim --listen 127.0.0.1:$((BASE_PORT + i)) --name sim-$i "${SIM_ARGS[@]}" >/dev/null 2>&1 &
    SIM_PIDS+=($!); PIDS+=($!)
  done
  for i in $(seq 1 $N); do
    for _ in $(seq 1 50); do curl -sf "127.0.0.1:$((BASE_PORT + i))/metrics" >/dev/null && break; sleep 0.1; done
  done
}

run_policy() { # $1 mode, $2 label
  start_sims   # fresh servers: every policy starts with cold caches
  target/release/envoy-config render --mode "$1" --config "$WORK/picker.json" --wasm dist/endpoint_picker.wasm \
    --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/$1.yaml"
  .venv/bin/envoy -c "$WORK/$1.yaml" --concurrency 1 --disable-hot-restart --log-level warn >"$WORK/$1.log" 2>&1 &
  local envoy=$!; PIDS+=($envoy)
  for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
  echo "== $2: $QPS req/s for $SECS s =="
  target/release/loadgen run --target http://127.0.0.1:$LISTEN "${LOAD_ARGS[@]}" --label "$2" \
    --sim-metrics "${metrics%,}" --json "$OUT/$1.json"
  kill $envoy "${SIM_PIDS[@]}" 2>/dev/null || true
  wait $envoy "${SIM_PIDS[@]}" 2>/dev/null || true
}

# DEMO_POLICIES picks a subset (e.g. "round-robin" for a capacity sweep).
POLICIES=${DEMO_POLICIES:-round-robin least-request picker}
for p in $POLICIES; do
  case $p in
    round-robin) run_policy round-robin "Envoy round robin" ;;
    least-request) run_policy least-request "Envoy least request" ;;
    picker) run_policy picker "Envoy + endpoint picker" ;;
  esac
done
[ "$POLICIES" = "round-robin least-request picker" ] || exit 0

echo
echo "== results: shared-prefix workload, $N simulated servers, $QPS req/s offered =="
target/release/loadgen report --svg "$OUT/ttft.svg" --markdown "$OUT/results.md" \
  "$OUT/round-robin.json" "$OUT/least-request.json" "$OUT/picker.json"
