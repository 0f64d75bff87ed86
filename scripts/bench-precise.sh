#!/usr/bin/env bash
# Precise prefix cache (issue 15): the demo's shared-prefix workload and fleet (4 model-sim
# servers that tokenise with a real Hugging Face tokenizer and publish vLLM's KV-cache events),
# sent by one client that spreads its requests over 2 Envoy replicas with 4 workers each
# (native build), for:
#   round-robin   Envoy round robin (2 replicas)
#   approx        the picker, GIE's default profile: approximate prefix cache (2 replicas)
#   precise       the same weights with the precise prefix cache: token-producer +
#                 precise-prefix-cache-producer feeding prefix-cache-scorer (2 replicas)
#   approx-1      the approximate picker with 1 replica (4 workers, one index): the reference
# The hit rate is measured from the servers' own counters. Prints a table relative to the
# approximate picker at 2 replicas and to approx-1. Not part of `make test`; ~5 min.
#
#   scripts/bench-precise.sh        (BENCH_SECONDS / BENCH_QPS / BENCH_WORKERS / BENCH_GPU_BLOCKS /
#                                    BENCH_GROUPS / BENCH_SPECULATIVE / BENCH_SPECULATIVE_TTL override;
#                                    BENCH_OUT names the results directory)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-45}
QPS=${BENCH_QPS:-22}
WORKERS=${BENCH_WORKERS:-4}
N=4
BASE_PORT=${BENCH_BASE_PORT:-18800}
KV_PORT=${BENCH_KV_PORT:-18899}
GPU_BLOCKS=${BENCH_GPU_BLOCKS:-1000}
NGROUPS=${BENCH_GROUPS:-16}
# llm-d's speculative indexing: the pick counts as holding the prompt until the server reports
# it (or the TTL passes), so a group's next requests follow its first while it is prefilling.
SPECULATIVE=${BENCH_SPECULATIVE:-true}
SPECULATIVE_TTL=${BENCH_SPECULATIVE_TTL:-5s}
# BENCH_PRECISE_RV=<weight> adds prefix-rendezvous-scorer to the precise profile (where a prefix
# no server holds yet lands: the same server from every replica, within a bounded load).
PRECISE_RV=${BENCH_PRECISE_RV:-0}
RV_PLUGIN=""; RV_REF=""
if [ "$PRECISE_RV" != "0" ]; then
  RV_PLUGIN=', {"type": "prefix-rendezvous-scorer"}'
  RV_REF=", {\"pluginRef\": \"prefix-rendezvous-scorer\", \"weight\": $PRECISE_RV}"
fi
# BENCH_PRECISE_ACTIVE=<weight> adds llm-d's active-request-scorer (requests this replica has in
# flight to each server, exact and shared by its workers) to the precise profile.
PRECISE_ACTIVE=${BENCH_PRECISE_ACTIVE:-0}
if [ "$PRECISE_ACTIVE" != "0" ]; then
  RV_PLUGIN+=', {"type": "active-request-scorer"}'
  RV_REF+=", {\"pluginRef\": \"active-request-scorer\", \"weight\": $PRECISE_ACTIVE}"
fi
# BENCH_POLICIES: which of round-robin, approx, precise, approx-1 to run (default all four).
POLICIES=${BENCH_POLICIES:-round-robin approx precise approx-1}
OUT=${BENCH_OUT:-bench-results/precise}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

make -s native envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config -p prompt-tokenizer
target/release/make-test-tokenizer "$WORK/tokenizer"

# The demo's fleet and workload (scripts/demo.sh); every server on its own loopback IP so one
# KV-event port serves them all (the picker dials <endpoint IP>:socketPort).
SIM_ARGS=(--num-gpu-blocks "$GPU_BLOCKS" --max-num-seqs 64 --max-num-batched-tokens 4096 --tokenizer "$WORK/tokenizer")
# loadgen's "tokens" are 4 characters of text; the test tokenizer makes ~1 token of each
# ~8-character word, so twice the demo's figures give the demo's token counts (~1,200 + 60).
LOAD_ARGS=(--workload shared-prefix --groups "$NGROUPS" --prompts-per-group 32 --system-tokens 2400
           --question-tokens 120 --output-tokens 32 --qps "$QPS" --duration "$SECS" --seed 7)
ip_of() { echo "127.0.0.$((10 + $1))"; }

endpoints=""; metrics=""
for i in $(seq 1 $N); do
  endpoints+="{\"address\": \"$(ip_of "$i"):$((BASE_PORT + i))\"},"
  metrics+="http://$(ip_of "$i"):$((BASE_PORT + i))/metrics,"
done
POOL="\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}"
echo "{$POOL}" > "$WORK/approx.json"
cat > "$WORK/precise.json" <<JSON
{$POOL,
 "plugins": [
   {"type": "token-producer", "parameters": {"modelName": "test/tiny-chat", "tokenizerPath": "$WORK/tokenizer"}},
   {"type": "precise-prefix-cache-producer", "parameters": {
     "tokenProcessorConfig": {"blockSize": 16},
     "speculativeIndexing": $SPECULATIVE, "speculativeTTL": "$SPECULATIVE_TTL",
     "kvEventsConfig": {"podDiscoveryConfig": {"socketPort": $KV_PORT}}}},
   {"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"},
   {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}}$RV_PLUGIN],
 "schedulingProfiles": [{"name": "default", "plugins": [
   {"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
   {"pluginRef": "prefix-cache-scorer", "weight": 3}$RV_REF]}]}
JSON

start_sims() {
  SIM_PIDS=()
  for i in $(seq 1 $N); do
    target/release/model-sim --listen "$(ip_of "$i"):$((BASE_PORT + i))" --name sim-$i "${SIM_ARGS[@]}" \
      --kv-events-endpoint "tcp://$(ip_of "$i"):$KV_PORT" >/dev/null 2>&1 &
    SIM_PIDS+=($!); PIDS+=($!)
  done
  for i in $(seq 1 $N); do
    for _ in $(seq 1 50); do curl -sf "$(ip_of "$i"):$((BASE_PORT + i))/metrics" >/dev/null && break; sleep 0.1; done
  done
}

run_policy() { # $1 name, $2 label, $3 mode, $4 picker json, $5 replicas
  start_sims
  local targets="" envoys=() admins=()
  for r in $(seq 1 "$5"); do
    local listen=$((BASE_PORT + 80 + 2 * r)) admin=$((BASE_PORT + 81 + 2 * r))
    target/release/envoy-config render --mode "$3" --native --config "$4" \
      --listen 127.0.0.1:$listen --admin-port $admin --out "$WORK/$1-$r.yaml"
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/$1-$r.yaml" --concurrency "$WORKERS" \
      --disable-hot-restart --log-level warn >"$WORK/$1-$r.log" 2>&1 &
    envoys+=($!); PIDS+=($!); admins+=($admin)
    for _ in $(seq 1 100); do curl -sf localhost:$admin/ready >/dev/null 2>&1 && break; sleep 0.1; done
    targets+="http://127.0.0.1:$listen,"
  done
  sleep 2
  echo "== $2: $5 replica(s) x $WORKERS workers, $QPS req/s for $SECS s =="
  target/release/loadgen run --target "${targets%,}" "${LOAD_ARGS[@]}" --label "$2" \
    --sim-metrics "${metrics%,}" --json "$OUT/$1.json" --quiet
  for a in "${admins[@]}"; do
    curl -s "localhost:$a/stats" | grep -E "kv_index|kv_events" | sed "s/^/  replica :$a /" || true
  done
  kill "${envoys[@]}" "${SIM_PIDS[@]}" 2>/dev/null || true
  wait "${envoys[@]}" "${SIM_PIDS[@]}" 2>/dev/null || true
}

wants() { [[ " $POLICIES " == *" $1 "* ]]; }
wants round-robin && run_policy round-robin "Envoy round robin" round-robin "$WORK/approx.json" 2
wants approx && run_policy approx "picker, approximate prefix cache" picker "$WORK/approx.json" 2
wants precise && run_policy precise "picker, precise prefix cache (KV events)" picker "$WORK/precise.json" 2
wants approx-1 && run_policy approx-1 "picker, approximate, 1 replica" picker "$WORK/approx.json" 1

RAN=()
for p in round-robin approx precise approx-1; do wants "$p" && RAN+=("$OUT/$p.json"); done
target/release/loadgen report --markdown "$OUT/results.md" --svg "$OUT/ttft.svg" "${RAN[@]}"
python3 - "$OUT" $POLICIES <<'PY'
import json, sys
out, ran = sys.argv[1], sys.argv[2:]
def get(n):
    try:
        return json.load(open(f"{out}/{n}.json")) if n in ran else {}
    except OSError:
        return {}
def ms(d, q):
    return 1000 * ((d.get("ttft") or {}).get(q) or 0)  # the JSON holds seconds
a, one = get("approx"), get("approx-1")
print("\n| policy | replicas | prefix-cache hit rate (vs approx, 1 replica) | TTFT p90 ms (× approx, 2 replicas) | TTFT p99 ms | requests/s |")
print("|---|---|---|---|---|---|")
for n, reps in (("round-robin", 2), ("approx", 2), ("precise", 2), ("approx-1", 1)):
    if n not in ran:
        continue
    d = get(n)
    hr, ref = d.get("prefix_cache_hit_rate") or 0, one.get("prefix_cache_hit_rate") or 0
    print(f"| {d.get('label', n)} | {reps} | {100*hr:.1f} % ({hr - ref:+.3f}) | "
          f"{ms(d, 'p90'):.0f} ({ms(d, 'p90')/ms(a, 'p90') if ms(a, 'p90') else 0:.2f}×) | "
          f"{ms(d, 'p99'):.0f} | {d.get('requests_per_s', 0):.1f} |")
PY
