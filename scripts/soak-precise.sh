#!/usr/bin/env bash
# Soak of the precise prefix cache (issue 15): many chat requests through Envoy (native build,
# 4 workers) with token-producer + precise-prefix-cache-producer, against 4 fast model-sim
# servers with small KV caches that publish their KV events, so the servers store and evict
# blocks all the time. Reports the index's size (keys, approximate bytes) and Envoy's RSS after
# warm-up and at the end, the event counters, and client errors.
#
#   scripts/soak-precise.sh [requests=100000] [concurrency=64]
set -euo pipefail
cd "$(dirname "$0")/.."
REQS=${1:-100000}
CONC=${2:-64}
N=4
BASE_PORT=${SOAK_BASE_PORT:-18900}
KV_PORT=$((BASE_PORT + 99))
LISTEN=$((BASE_PORT + 80))
ADMIN=$((BASE_PORT + 81))
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

make -s native envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config -p prompt-tokenizer
target/release/make-test-tokenizer "$WORK/tokenizer"
ip_of() { echo "127.0.0.$((30 + $1))"; }

endpoints=""
for i in $(seq 1 $N); do
  # Fast servers with 2,000 blocks each: the workload's prefixes do not fit, so they churn.
  target/release/model-sim --listen "$(ip_of "$i"):$((BASE_PORT + i))" --name sim-$i --step-base-ms 1 \
    --prefill-ms-per-token 0.001 --decode-ms-per-seq 0.001 --context-ms-per-token 0 --num-gpu-blocks 2000 \
    --tokenizer "$WORK/tokenizer" --kv-events-endpoint "tcp://$(ip_of "$i"):$KV_PORT" >/dev/null 2>&1 &
  PIDS+=($!)
  endpoints+="{\"address\": \"$(ip_of "$i"):$((BASE_PORT + i))\"},"
done
cat > "$WORK/picker.json" <<JSON
{"pool": {"cluster": "inference_pool", "endpoints": [${endpoints%,}]},
 "plugins": [
   {"type": "token-producer", "parameters": {"modelName": "test/tiny-chat", "tokenizerPath": "$WORK/tokenizer"}},
   {"type": "precise-prefix-cache-producer", "parameters": {
     "tokenProcessorConfig": {"blockSize": 16},
     "indexerConfig": {"kvBlockIndexConfig": {"inMemoryConfig": {"size": 65536}}},
     "kvEventsConfig": {"podDiscoveryConfig": {"socketPort": $KV_PORT}}}},
   {"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"},
   {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}}],
 "schedulingProfiles": [{"name": "default", "plugins": [
   {"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
   {"pluginRef": "prefix-cache-scorer", "weight": 3}]}]}
JSON
target/release/envoy-config render --native --config "$WORK/picker.json" \
  --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency 4 \
  --disable-hot-restart --log-level warn >"$WORK/envoy.log" 2>&1 &
ENVOY=$!; PIDS+=($ENVOY)
for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && break; sleep 0.1; done
sleep 2

stat() { curl -s localhost:$ADMIN/stats | awk -F': ' -v k="$1" '$1 ~ k"$" {s+=$2} END {print s+0}'; }
mem() { echo "$(awk '/VmRSS/ {print $2}' /proc/$ENVOY/status) $(stat kv_index.keys) $(stat kv_index.bytes)"; }
# 256 prefix groups x 400 system tokens: ~2.5x what the 4 servers can hold.
LOAD=(--target http://127.0.0.1:$LISTEN --workload shared-prefix --groups 256 --prompts-per-group 64
      --system-tokens 400 --question-tokens 20 --output-tokens 4 --concurrency "$CONC" --duration 3600 --quiet)
target/release/loadgen run "${LOAD[@]}" --requests 5000 --label warmup >/dev/null
read -r rss0 keys0 bytes0 <<<"$(mem)"
start=$(date +%s.%N)
target/release/loadgen run "${LOAD[@]}" --requests "$REQS" --label soak --json "$WORK/soak.json" >/dev/null
end=$(date +%s.%N)
sleep 1
read -r rss1 keys1 bytes1 <<<"$(mem)"
errors=$(python3 -c "import json;print(json.load(open('$WORK/soak.json'))['errors'])")
requests=$(python3 -c "import json;print(json.load(open('$WORK/soak.json'))['requests'])")
awk -v r="$requests" -v e="$errors" -v t0="$start" -v t1="$end" -v c="$CONC" -v a="$rss0" -v b="$rss1" \
    -v ka="$keys0" -v kb="$keys1" -v ba="$bytes0" -v bb="$bytes1" 'BEGIN {
  printf "precise soak: %d requests at concurrency %d in %.1f s (%.0f req/s): %d client errors\n", r, c, t1-t0, r/(t1-t0), e
  printf "| | after warm-up | after soak |\n|---|---|---|\n"
  printf "| Envoy RSS | %.1f MiB | %.1f MiB |\n", a/1024, b/1024
  printf "| index keys (cap 65,536) | %d | %d |\n", ka, kb
  printf "| index bytes (approx.) | %.2f MiB | %.2f MiB |\n", ba/1048576, bb/1048576
}'
curl -s localhost:$ADMIN/stats | grep -E "kv_events|kv_index" | sed 's/^/  /'
