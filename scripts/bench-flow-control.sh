#!/usr/bin/env bash
# Flow control under overload (issue 12): a simulated fleet (4 model-sim servers, batch of 8,
# 20 ms steps) behind Envoy with the native picker, offered twice its capacity by three clients
# at once:
#   high    priority 10 (objective `critical`), 10 % of the fleet's capacity
#   big     tenant `tenant-big`, priority 0, 10/11 of the remaining 190 %
#   small   tenant `tenant-small`, priority 0, 1/11 of it (below its fair half of the band)
# with flow control off (GIE's default admission: everything is sent), and on
# (`flowControl` gate; `concurrency-detector` at the batch size as the saturation detector and
# as a filter in the profile, so a released request goes to a server with a free batch slot and
# the servers keep no queue of their own; round-robin fairness in the default band; 10 s
# queue-wait budget), with one ceiling for both bands (`on`: static-usage-limit-policy) and with
# llm-d's priority-holdback-policy (`on-holdback`: the lower band stops at 75 % of the slots;
# `on-holdback-50`: at 50 %).
#
# BENCH_FC_MODES picks the runs (default: off on on-holdback on-holdback-50). Two more show
# in-flight eviction: in `on-batch` and `on-evict` both tenants' requests are sheddable
# (objective `batch`, priority -1) under one ceiling; `on-evict` adds `enableEviction`, so a
# waiting high-priority request has a batch request at a server cut short (429 `evicted`, or a
# reset stream once its response has begun, counted as an error by loadgen) instead of waiting
# for a slot to free.
#
# First it measures the fleet's capacity (one server in a closed loop with one client per batch
# slot, times the number of servers) and the high
# band's unloaded TTFT (alone at 10 % of capacity). It prints one table: high-priority TTFT p90
# against its unloaded value, each tenant's served share of what it asked for, goodput, 429s.
# Not part of `make test`; ~8 min.
#
#   scripts/bench-flow-control.sh     (BENCH_SECONDS / BENCH_WORKERS override)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-30}
WORKERS=${BENCH_WORKERS:-2}
N=4
SEQS=8
BASE_PORT=${BENCH_BASE_PORT:-18900}
OUT=bench-results/flow-control
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

SIM_ARGS=(--num-gpu-blocks 4000 --max-num-seqs $SEQS --step-base-ms 20)
LOAD_ARGS=(--workload shared-prefix --groups 8 --prompts-per-group 64 --system-tokens 400
           --question-tokens 50 --output-tokens 24 --quiet)

make -s native envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config

endpoints=""
for i in $(seq 1 $N); do endpoints+="{\"address\": \"127.0.0.1:$((BASE_PORT + i))\"},"; done
POOL="\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}"
OBJECTIVES='"inferenceObjectives": [{"name": "critical", "priority": 10}, {"name": "batch", "priority": -1}]'
echo "{$POOL, $OBJECTIVES}" > "$WORK/off.json"
on_config() { # $1 maxConcurrency per endpoint, $2 usage-limit plugin, $3 more flowControl fields
cat <<JSON
{$POOL, $OBJECTIVES,
 "featureGates": ["flowControl"],
 "plugins": [{"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"}, {"type": "prefix-cache-scorer"},
             {"type": "concurrency-detector", "parameters": {"maxConcurrency": $1}},
             {"type": "round-robin-fairness-policy"}, $2],
 "saturationDetector": {"pluginRef": "concurrency-detector"},
 "schedulingProfiles": [{"name": "default", "plugins": [
   {"pluginRef": "concurrency-detector"},
   {"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
   {"pluginRef": "prefix-cache-scorer", "weight": 3}]}],
 "flowControl": {"defaultRequestTTL": "10s", "usageLimitPolicyPluginRef": "usage-limit",
                 "defaultPriorityBand": {"fairnessPolicyRef": "round-robin-fairness-policy"}${3:-}}}
JSON
}
STATIC='{"type": "static-usage-limit-policy", "name": "usage-limit"}'
# llm-d's priority-holdback-policy: the lower band stops at 75 % (or 50 %) of the slots, the rest
# stays free for the higher band.
holdback() { echo "{\"type\": \"priority-holdback-policy\", \"name\": \"usage-limit\", \"parameters\": {\"minCeiling\": $1}}"; }
on_config $SEQS "$STATIC" > "$WORK/on.json"
on_config $SEQS "$(holdback 0.75)" > "$WORK/on-holdback.json"
on_config $SEQS "$(holdback 0.5)" > "$WORK/on-holdback-50.json"
on_config $SEQS "$STATIC" > "$WORK/on-batch.json"
on_config $SEQS "$STATIC" ', "enableEviction": true' > "$WORK/on-evict.json"
MODES=(${BENCH_FC_MODES:-off on on-holdback on-holdback-50})

LISTEN=$((BASE_PORT + 80)); ADMIN=$((BASE_PORT + 81))
start() { # $1 picker json
  SIM_PIDS=()
  for i in $(seq 1 $N); do
    target/release/model-sim --listen 127.0.0.1:$((BASE_PORT + i)) --name sim-$i "${SIM_ARGS[@]}" >/dev/null 2>&1 &
    SIM_PIDS+=($!); PIDS+=($!)
  done
  for i in $(seq 1 $N); do
    for _ in $(seq 1 50); do curl -sf "127.0.0.1:$((BASE_PORT + i))/metrics" >/dev/null && break; sleep 0.1; done
  done
  target/release/envoy-config render --mode picker --native --config "$1" \
    --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency "$WORKERS" \
    --disable-hot-restart --log-level warn >"$WORK/envoy.log" 2>&1 &
  ENVOY=$!; PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
}
stop() {
  kill "$ENVOY" "${SIM_PIDS[@]}" 2>/dev/null || true
  wait "$ENVOY" "${SIM_PIDS[@]}" 2>/dev/null || true
}
load() { # $1 out name, $2 qps, $3.. extra args
  local name=$1 qps=$2; shift 2
  target/release/loadgen run --target "http://127.0.0.1:$LISTEN" "${LOAD_ARGS[@]}" --qps "$qps" \
    --duration "$SECS" --label "$name" --json "$OUT/$name.json" "$@" >/dev/null
}

echo "== capacity: one server, closed loop with $SEQS clients (its batch), 20 s; x $N servers =="
start "$WORK/off.json"
target/release/loadgen run --target "http://127.0.0.1:$((BASE_PORT + 1))" "${LOAD_ARGS[@]}" \
  --concurrency $SEQS --duration 20 --label capacity --json "$OUT/capacity.json" >/dev/null
CAP=$(python3 -c "import json; print(round($N * json.load(open('$OUT/capacity.json'))['requests_per_s'], 2))")
HIGH=$(python3 -c "print(round(0.1 * $CAP, 2))")
BIG=$(python3 -c "print(round(1.9 * $CAP * 10 / 11, 2))")
SMALL=$(python3 -c "print(round(1.9 * $CAP / 11, 2))")
echo "capacity $CAP req/s; offered: high $HIGH, big $BIG, small $SMALL req/s (total $(python3 -c "print(round($HIGH + $BIG + $SMALL, 1))"))"

echo "== unloaded: the high band alone at $HIGH req/s =="
load unloaded "$HIGH" --seed 11 --header "x-gateway-inference-objective: critical"
stop

for mode in "${MODES[@]}"; do
  echo "== overload, flow control $mode: 3 clients, $SECS s =="
  start "$WORK/$mode.json"
  tenant=()
  case $mode in on-batch|on-evict) tenant=(--header "x-gateway-inference-objective: batch") ;; esac
  load "$mode-high" "$HIGH" --seed 11 --header "x-gateway-inference-objective: critical" &
  a=$!
  load "$mode-big" "$BIG" --seed 12 --header "x-gateway-inference-fairness-id: tenant-big" ${tenant[@]+"${tenant[@]}"} &
  b=$!
  load "$mode-small" "$SMALL" --seed 13 --header "x-gateway-inference-fairness-id: tenant-small" ${tenant[@]+"${tenant[@]}"} &
  c=$!
  wait $a $b $c
  # The picker's own view: how long each band's requests waited in the queue, and evictions.
  curl -s "localhost:$ADMIN/stats/prometheus" | grep 'flow_control_request_queue_duration_seconds_bucket\|flow_control_revocations' \
    > "$OUT/$mode-queue.txt" || true
  stop
done

python3 - "$OUT" "$CAP" "${MODES[@]}" <<'PY'
import json, sys
out, cap, modes = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
def get(n):
    return json.load(open(f"{out}/{n}.json"))
unloaded = get("unloaded")["ttft"]["p90"] * 1000
print(f"\nFleet capacity {cap:.1f} req/s; high band unloaded TTFT p90 {unloaded:.0f} ms.\n")
import re
def queue_p90_ms(mode, priority):
    # p90 of the Dispatched queue waits of a band, from the cumulative buckets (upper bound, ms).
    buckets = []
    try:
        for line in open(f"{out}/{mode}-queue.txt"):
            if f'priority="{priority}"' in line and 'outcome="Dispatched"' in line:
                le = re.search(r'le="([^"]+)"', line).group(1)
                buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    except OSError:
        return None
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, c in buckets if c >= 0.9 * total) * 1000
def evicted(mode):
    n = 0
    try:
        for line in open(f"{out}/{mode}-queue.txt"):
            if "revocations_issued_total" in line and not line.startswith("#"):
                n += float(line.split()[-1])
    except OSError:
        pass
    return int(n)
print("| flow control | high TTFT p90 ms (× unloaded) | high queue wait p90 ms (picker) | high served | big tenant served / asked | small tenant served / asked | goodput req/s (all) | 429s | errors | evicted |")
print("|---|---|---|---|---|---|---|---|---|---|")
for mode in modes:
    h, b, s = get(f"{mode}-high"), get(f"{mode}-big"), get(f"{mode}-small")
    p90 = h["ttft"]["p90"] * 1000
    frac = lambda d: f"{d['served']}/{d['requests']} ({100 * d['served'] / max(d['requests'], 1):.0f} %)"
    good = sum(d["goodput_rps"] for d in (h, b, s))
    rej = sum(d.get("rejected_429", 0) for d in (h, b, s))
    q = queue_p90_ms(mode, 10)
    qs = "—" if q is None else f"≤ {q:g}"
    err = sum(d.get("errors", 0) - d.get("rejected_429", 0) for d in (h, b, s))
    print(f"| {mode} | {p90:.0f} ({p90 / unloaded:.2f}×) | {qs} | {frac(h)} | {frac(b)} | {frac(s)} | {good:.1f} | {rej} | {err} | {evicted(mode)} |")
PY
