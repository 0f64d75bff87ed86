#!/usr/bin/env bash
# The demo: 4 simulated model servers, Envoy with 4 workers, and one shared-prefix workload run
# against Envoy round robin, Envoy least request, Envoy with the Wasm picker and Envoy with the
# native picker (default GIE profile), plus the native picker with 1 worker (the reference for
# how much prefix affinity the 4 workers keep), plus 2 Wasm-picker replicas with
# prefix-rendezvous-scorer behind one client (prefix affinity with no state shared between
# replicas or workers) — then a comparison table and a TTFT chart (demo-results/ttft.svg).
#
#   scripts/demo.sh            (make demo runs this; DEMO_SECONDS / DEMO_QPS / DEMO_WORKERS override)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${DEMO_SECONDS:-45}
QPS=${DEMO_QPS:-22}
WORKERS=${DEMO_WORKERS:-4}
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
make -s wasm native envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config

endpoints=""; metrics=""
for i in $(seq 1 $N); do
  endpoints+="{\"address\": \"127.0.0.1:$((BASE_PORT + i))\"},"
  metrics+="http://127.0.0.1:$((BASE_PORT + i))/metrics,"
done
echo "{\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}}" > "$WORK/picker.json"
# The default profile plus prefix-rendezvous-scorer (scripts/bench-replicas.sh, BENCHMARKS.md).
cat > "$WORK/rendezvous.json" <<JSON
{"pool": {"cluster": "inference_pool", "endpoints": [${endpoints%,}]},
 "plugins": [{"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"},
             {"type": "prefix-cache-scorer"}, {"type": "prefix-rendezvous-scorer"}],
 "schedulingProfiles": [{"name": "default", "plugins": [
   {"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
   {"pluginRef": "prefix-cache-scorer", "weight": 3}, {"pluginRef": "prefix-rendezvous-scorer", "weight": 2}]}]}
JSON

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

run_policy() { # $1 name, $2 label, $3 envoy-config mode, $4 workers, $5 extra render flag,
               # $6 picker JSON (default picker.json), $7 replicas (default 1)
  start_sims   # fresh servers: every policy starts with cold caches
  local targets="" envoys=()
  for r in $(seq 1 "${7:-1}"); do
    local listen=$((LISTEN + 2 * (r - 1))) admin=$((ADMIN + 2 * (r - 1)))
    target/release/envoy-config render --mode "$3" ${5:-} --config "${6:-$WORK/picker.json}" --wasm dist/endpoint_picker.wasm \
      --listen 127.0.0.1:$listen --admin-port $admin --out "$WORK/$1-$r.yaml"
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/$1-$r.yaml" --concurrency "$4" \
      --disable-hot-restart --log-level warn >"$WORK/$1-$r.log" 2>&1 &
    envoys+=($!); PIDS+=($!)
    for _ in $(seq 1 100); do curl -sf localhost:$admin/ready >/dev/null 2>&1 && break; sleep 0.1; done
    targets+="http://127.0.0.1:$listen,"
  done
  sleep 1
  echo "== $2 (${7:-1} x $4 workers): $QPS req/s for $SECS s =="
  target/release/loadgen run --target "${targets%,}" "${LOAD_ARGS[@]}" --label "$2" \
    --sim-metrics "${metrics%,}" --json "$OUT/$1.json"
  kill "${envoys[@]}" "${SIM_PIDS[@]}" 2>/dev/null || true
  wait "${envoys[@]}" "${SIM_PIDS[@]}" 2>/dev/null || true
}

# DEMO_POLICIES picks a subset (e.g. "round-robin" for a capacity sweep).
ALL="round-robin least-request picker native native-1w replicas"
POLICIES=${DEMO_POLICIES:-$ALL}
for p in $POLICIES; do
  case $p in
    round-robin) run_policy round-robin "Envoy round robin" round-robin "$WORKERS" ;;
    least-request) run_policy least-request "Envoy least request" least-request "$WORKERS" ;;
    picker) run_policy picker "Envoy + picker (Wasm)" picker "$WORKERS" ;;
    native) run_policy native "Envoy + picker (native)" picker "$WORKERS" --native ;;
    native-1w) run_policy native-1w "native picker, 1 worker" picker 1 --native ;;
    replicas) run_policy replicas "2 Wasm replicas + rendezvous" picker "$WORKERS" "" "$WORK/rendezvous.json" 2 ;;
  esac
done
[ "$POLICIES" = "$ALL" ] || exit 0

echo
echo "== results: shared-prefix workload, $N simulated servers, Envoy with $WORKERS workers, $QPS req/s offered =="
target/release/loadgen report --svg "$OUT/ttft.svg" --markdown "$OUT/results.md" \
  "$OUT/round-robin.json" "$OUT/least-request.json" "$OUT/picker.json" "$OUT/native.json" "$OUT/native-1w.json" \
  "$OUT/replicas.json"
# How much prefix affinity the workers keep: one shared scheduler state (native) vs one per
# worker (Wasm), against the native picker with a single worker.
python3 - "$OUT" "$WORKERS" <<'PY'
import json, sys
out, w = sys.argv[1], sys.argv[2]
rate = lambda n: json.load(open(f"{out}/{n}.json")).get("prefix_cache_hit_rate") or 0.0
one = rate("native-1w")
for n, label in (("native", "native"), ("picker", "Wasm"), ("replicas", "2-replica Wasm (+ prefix-rendezvous-scorer)")):
    r = rate(n)
    print(f"prefix-cache hit rate, {label} picker with {w} workers: {100*r:.1f} % = "
          f"{(100*r/one if one else 0):.1f} % of the native picker with 1 worker ({100*one:.1f} %)")
PY
