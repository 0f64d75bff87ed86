#!/usr/bin/env bash
# Soak: many requests at high concurrency through Envoy with the picker against 4 simulators.
# Reports client errors (any non-200 is counted: the simulators never fail, so every error is
# the picker's or Envoy's), Envoy's RSS and the Wasm VMs' linear memory after warm-up and at
# the end, and the picker's local replies.
#
#   scripts/soak.sh [requests=100000] [concurrency=256]
set -euo pipefail
cd "$(dirname "$0")/.."
REQS=${1:-100000}
CONC=${2:-256}
N=4
BASE_PORT=${SOAK_BASE_PORT:-18700}
LISTEN=$((BASE_PORT + 80))
ADMIN=$((BASE_PORT + 81))
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

make -s wasm envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config

endpoints=""
for i in $(seq 1 $N); do
  # Fast simulated servers: 1 ms steps, so Envoy and the picker are the bottleneck.
  target/release/model-sim --listen 127.0.0.1:$((BASE_PORT + i)) --name sim-$i --step-base-ms 1 \
    --prefill-ms-per-token 0.001 --decode-ms-per-seq 0.001 --context-ms-per-token 0 >/dev/null 2>&1 &
  PIDS+=($!)
  endpoints+="{\"address\": \"127.0.0.1:$((BASE_PORT + i))\"},"
done
echo "{\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}}" > "$WORK/picker.json"
target/release/envoy-config render --config "$WORK/picker.json" --wasm dist/endpoint_picker.wasm \
  --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
.venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency 2 --disable-hot-restart --log-level warn >"$WORK/envoy.log" 2>&1 &
ENVOY=$!; PIDS+=($ENVOY)
for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1

mem() { # "envoy_rss_kib picker_vm_bytes scraper_vm_bytes"
  local rss; rss=$(awk '/VmRSS/ {print $2}' /proc/$ENVOY/status)
  local s; s=$(curl -s localhost:$ADMIN/stats)
  echo "$rss $(echo "$s" | awk -F': ' '/vm_memory_bytes.picker/ {print $2}') $(echo "$s" | awk -F': ' '/vm_memory_bytes.scraper/ {print $2}')"
}
LOAD=(--target http://127.0.0.1:$LISTEN --workload shared-prefix --groups 16 --prompts-per-group 64
      --system-tokens 200 --question-tokens 20 --output-tokens 4 --concurrency "$CONC" --duration 3600 --quiet)
target/release/loadgen run "${LOAD[@]}" --requests 5000 --label warmup >/dev/null
read -r rss0 vm0 sc0 <<<"$(mem)"
start=$(date +%s.%N)
target/release/loadgen run "${LOAD[@]}" --requests "$REQS" --label soak --json "$WORK/soak.json" >/dev/null
end=$(date +%s.%N)
read -r rss1 vm1 sc1 <<<"$(mem)"
errors=$(python3 -c "import json;print(json.load(open('$WORK/soak.json'))['errors'])")
requests=$(python3 -c "import json;print(json.load(open('$WORK/soak.json'))['requests'])")
replies=$(curl -s localhost:$ADMIN/stats | awk -F': ' '/local_replies|fail_open/ {s+=$2} END {print s+0}')
reloads=$(curl -s localhost:$ADMIN/stats | awk -F': ' '/vm_reload_success|vm_reload_failure/ {s+=$2} END {print s+0}')
awk -v r="$requests" -v e="$errors" -v t0="$start" -v t1="$end" -v c="$CONC" -v a="$rss0" -v b="$rss1" \
    -v va="$vm0" -v vb="$vm1" -v sa="$sc0" -v sb="$sc1" -v lr="$replies" -v rl="$reloads" 'BEGIN {
  printf "soak: %d requests at concurrency %d in %.1f s (%.0f req/s): %d client errors, %d local replies, %d VM reloads\n", r, c, t1-t0, r/(t1-t0), e, lr, rl
  printf "| | after warm-up | after soak |\n|---|---|---|\n"
  printf "| Envoy RSS (MiB) | %.1f | %.1f |\n", a/1024, b/1024
  printf "| picker VM linear memory (MiB) | %.1f | %.1f |\n", va/1048576, vb/1048576
  printf "| scraper VM linear memory (MiB) | %.1f | %.1f |\n", sa/1048576, sb/1048576
}'
[ "$errors" = 0 ] && [ "$reloads" = 0 ]
