#!/usr/bin/env bash
# Routing by predicted latency on a mixed fleet: 4 model-sim servers, two fast and two slow
# (BENCH_SLOW times the step costs: a fleet of two GPU generations), behind Envoy with the native
# picker (2 workers). One client offers the shared-prefix workload at BENCH_LOAD (default 0.7)
# of the fleet's capacity, measured first as the sum of each server's own closed-loop rate.
# Policies (BENCH_POLICIES, default all):
#   round-robin   Envoy's own balancer
#   default       GIE's default profile (queue 2, KV cache 2, prefix 3)
#   latency       llm-d's predicted-latency profile as its Helm chart ships it
#                 (config/charts/routerlib: predicted-latency-producer, prefix-cache-affinity
#                 filters with the predictor's TTFT as load gate, slo-headroom-tier-filter,
#                 latency-scorer, weighted-random-picker), the model learnt in the proxy
#   latency-max   latency-scorer + max-score-picker alone
# Prints TTFT/E2E percentiles, the share of requests the fast servers took and the prefix-cache
# hit rate (from the servers). Not part of `make test`; ~6 min.
#
#   scripts/bench-latency.sh     (BENCH_SECONDS, BENCH_SLOW, BENCH_LOAD, BENCH_POLICIES,
#                                 BENCH_MODULE_DIR: where libendpoint_picker.so is, default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-40}
SLOW=${BENCH_SLOW:-3}
LOAD=${BENCH_LOAD:-0.7}
N=4
BASE_PORT=${BENCH_BASE_PORT:-19300}
OUT=bench-results/latency
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

FAST_ARGS=(--num-gpu-blocks 4000 --max-num-seqs 16 --step-base-ms 10 --prefill-ms-per-token 0.05)
SLOW_ARGS=(--num-gpu-blocks 4000 --max-num-seqs 16
           --step-base-ms "$(python3 -c "print(10 * $SLOW)")"
           --prefill-ms-per-token "$(python3 -c "print(0.05 * $SLOW)")")
LOAD_ARGS=(--workload shared-prefix --groups 16 --prompts-per-group 64 --system-tokens 800
           --question-tokens 60 --output-tokens 24 --quiet)

make -s native envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config

endpoints=""
for i in $(seq 1 $N); do endpoints+="{\"address\": \"127.0.0.1:$((BASE_PORT + i))\"},"; done
POOL="\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}"
echo "{$POOL}" > "$WORK/default.json"
cat > "$WORK/latency.json" <<JSON
{$POOL,
 "plugins": [
   {"type": "predicted-latency-producer"},
   {"name": "strict-affinity-filter", "type": "prefix-cache-affinity-filter",
    "parameters": {"affinityThreshold": 0.99, "ttftSource": "latencyPredictor", "maxTTFTPenaltyMs": 5000}},
   {"name": "loose-affinity-filter", "type": "prefix-cache-affinity-filter",
    "parameters": {"affinityThreshold": 0.80, "ttftSource": "latencyPredictor", "maxTTFTPenaltyMs": 5000}},
   {"type": "latency-scorer"}, {"type": "weighted-random-picker"},
   {"type": "slo-headroom-tier-filter"}, {"type": "latency-slo-admitter"}],
 "schedulingProfiles": [{"name": "default", "plugins": [
   {"pluginRef": "predicted-latency-producer"}, {"pluginRef": "strict-affinity-filter"},
   {"pluginRef": "slo-headroom-tier-filter"}, {"pluginRef": "loose-affinity-filter"},
   {"pluginRef": "latency-scorer"}, {"pluginRef": "weighted-random-picker"}]}]}
JSON
cat > "$WORK/latency-max.json" <<JSON
{$POOL,
 "plugins": [{"type": "latency-scorer"}, {"type": "max-score-picker"}],
 "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "latency-scorer"}, {"pluginRef": "max-score-picker"}]}]}
JSON
POLICIES=(${BENCH_POLICIES:-round-robin default latency latency-max})

LISTEN=$((BASE_PORT + 80)); ADMIN=$((BASE_PORT + 81))
start_sims() {
  SIM_PIDS=()
  for i in $(seq 1 $N); do
    local args=("${FAST_ARGS[@]}")
    [ "$i" -gt $((N / 2)) ] && args=("${SLOW_ARGS[@]}")
    target/release/model-sim --listen 127.0.0.1:$((BASE_PORT + i)) --name sim-$i "${args[@]}" >/dev/null 2>&1 &
    SIM_PIDS+=($!); PIDS+=($!)
  done
  for i in $(seq 1 $N); do
    for _ in $(seq 1 50); do curl -sf "127.0.0.1:$((BASE_PORT + i))/metrics" >/dev/null && break; sleep 0.1; done
  done
}
start_envoy() { # $1 policy
  local mode=(--mode picker --native --config "$WORK/$1.json")
  [ "$1" = round-robin ] && mode=(--mode round-robin --config "$WORK/default.json")
  target/release/envoy-config render "${mode[@]}" --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH="${BENCH_MODULE_DIR:-$PWD/dist}" .venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency 2 \
    --disable-hot-restart --log-level warn >"$WORK/envoy.log" 2>&1 &
  ENVOY=$!; PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
}
stop() { kill "$ENVOY" "${SIM_PIDS[@]}" 2>/dev/null || true; wait "$ENVOY" "${SIM_PIDS[@]}" 2>/dev/null || true; }
sims() { for i in $(seq 1 $N); do printf 'http://127.0.0.1:%s/metrics,' $((BASE_PORT + i)); done | sed 's/,$//'; }

echo "== capacity: each server alone, closed loop with 16 clients, 15 s =="
start_sims
CAP=0
for i in $(seq 1 $N); do
  target/release/loadgen run --target "http://127.0.0.1:$((BASE_PORT + i))" "${LOAD_ARGS[@]}" \
    --concurrency 16 --duration 15 --label "capacity-$i" --json "$OUT/capacity-$i.json" >/dev/null
  CAP=$(python3 -c "import json; print($CAP + json.load(open('$OUT/capacity-$i.json'))['requests_per_s'])")
done
kill "${SIM_PIDS[@]}" 2>/dev/null || true; wait "${SIM_PIDS[@]}" 2>/dev/null || true
QPS=$(python3 -c "print(round($LOAD * $CAP, 2))")
echo "fleet capacity $(python3 -c "print(round($CAP, 1))") req/s (slow servers ${SLOW}x the step cost); offered $QPS req/s"

for p in "${POLICIES[@]}"; do
  echo "== $p: $SECS s at $QPS req/s =="
  start_sims
  start_envoy "$p"
  target/release/loadgen run --target "http://127.0.0.1:$LISTEN" "${LOAD_ARGS[@]}" --qps "$QPS" \
    --duration "$SECS" --seed 5 --sim-metrics "$(sims)" --label "$p" --json "$OUT/$p.json" >/dev/null
  stop
done

python3 - "$OUT" "$N" "${POLICIES[@]}" <<'PY'
import json, sys
out, n, policies = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
fast = {f"sim-{i}" for i in range(1, n // 2 + 1)}
print("\n| policy | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | E2E p90 ms | fast servers' share | prefix-cache hit rate | errors |")
print("|---|---|---|---|---|---|---|---|")
for p in policies:
    d = json.load(open(f"{out}/{p}.json"))
    share = d.get("share_per_endpoint") or {}
    total = sum(share.values()) or 1
    fs = sum(v for k, v in share.items() if k in fast) / total
    hit = d.get("prefix_cache_hit_rate")
    hit = "—" if hit is None else f"{100 * hit:.1f} %"
    print(f"| {p} | {1000 * d['ttft']['p50']:.0f} | {1000 * d['ttft']['p90']:.0f} | {1000 * d['ttft']['p99']:.0f} | "
          f"{1000 * d['e2e']['p90']:.0f} | {100 * fs:.0f} % | {hit} | {d['errors']} |")
PY
