#!/usr/bin/env bash
# make bench-peers: the picker side by side with the field, on one fleet and one workload at a
# time, in one run. Not part of make test (it takes ~30 min and installs the peers).
#
# Policies (PEERS_POLICIES):
#   round-robin, least-request   Envoy's own load balancers
#   epp                          Envoy + llm-d-router's EPP over ext_proc (file discovery, its
#                                default profile: scripts/peers/epp-config.yaml)
#   sglang, vllm                 SGLang's and vLLM's routers, policy cache_aware
#   wasm, native                 Envoy + this picker (default profile), Wasm and native builds
#   native-rendezvous            the native picker with prefix-rendezvous-scorer added to the
#                                default profile (where a new prefix lands; not in the default list)
#   native-nohit                 the native picker with no-hit-lru-scorer (weight 2) added to the
#                                default profile: cold requests spread over the servers that took
#                                one least recently (llm-d's scorer; not in the default list)
#   native-lora, epp-lora        the native picker and the EPP with lora-affinity-scorer (weight
#                                2) added to the default profile (GIE's scorer; not in either's
#                                default profile), for the lora workload
# Workloads (PEERS_WORKLOADS): shared16 / shared32 (the demo's shared-prefix workload with 16 or
#   32 groups), zipf (16 groups, Zipf(1.2) popularity: the top group is ~35 % of the traffic),
#   multiturn (16 chats growing by a question and an answer per turn), lora (shared16 over the
#   base model and two LoRA adapters, one adapter loaded at a time per server).
# Fleets (PEERS_FLEETS): model-sim (this repo's simulator) and llmd-sim (llm-d-inference-sim
#   with its KV-cache simulation on), 4 servers each, restarted for every run (cold caches).
# Envoy runs with PEERS_WORKERS workers (4); every run offers PEERS_QPS (22) requests/s of
# Poisson arrivals for PEERS_SECONDS (30) s. Figures per run: TTFT / TPOT / E2E percentiles,
# goodput (TTFT ≤ 500 ms and TPOT ≤ 50 ms), the servers' prefix-cache hit rate, share per
# server, and the CPU the routing processes used (Envoy + EPP, or the router) per request.
# Output: bench-results/peers/<fleet>-<workload>-<policy>.json, one table
# (bench-results/peers/results.md) and one TTFT chart per fleet and workload. The report covers
# every saved run of the fleets, workloads and policies named, so runs made apart (e.g. one
# fleet at a time) land in one table; PEERS_REPORT_ONLY=1 only rewrites the report.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${PEERS_SECONDS:-30}
QPS=${PEERS_QPS:-22}
WORKERS=${PEERS_WORKERS:-4}
FLEETS=${PEERS_FLEETS:-model-sim llmd-sim}
WORKLOADS=${PEERS_WORKLOADS:-shared16 shared32 zipf multiturn lora}
POLICIES=${PEERS_POLICIES:-round-robin least-request epp sglang vllm wasm native}
N=4
BASE=${PEERS_BASE_PORT:-19600}
LISTEN=$((BASE + 80)) ADMIN=$((BASE + 81)) EPP_GRPC=$((BASE + 82)) SIDE=$((BASE + 83))
MODEL=meta-llama/Llama-3.1-8B-Instruct
ADAPTERS=sql-lora,chat-lora
OUT=bench-results/peers
PEERS=$PWD/target/peers
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

if [ -z "${PEERS_REPORT_ONLY:-}" ]; then
  echo "== building and installing (first run installs the wasm toolchain, Envoy and the peers) =="
  make -s wasm native envoy >/dev/null
  cargo build -q --release -p model-sim -p loadgen -p envoy-config
  # Only the peers the chosen policies and fleets run (the EPP's `go install` takes minutes).
  needs=()
  [[ " $POLICIES " == *" epp"* ]] && needs+=(epp)
  [[ " $POLICIES " == *" sglang "* || " $POLICIES " == *" vllm "* ]] && needs+=(routers)
  [[ " $FLEETS " == *" llmd-sim "* ]] && needs+=(llm-d-inference-sim)
  if [ ${#needs[@]} -gt 0 ]; then scripts/peers-install.sh "${needs[@]}"; fi
fi

endpoints="" metrics="" workers="" epp_endpoints="endpoints:"
for i in $(seq 1 $N); do
  port=$((BASE + i))
  endpoints+="{\"address\": \"127.0.0.1:$port\"},"
  metrics+="http://127.0.0.1:$port/metrics,"
  workers+="http://127.0.0.1:$port "
  epp_endpoints+=$'\n'"- {name: sim-$i, address: \"127.0.0.1\", port: \"$port\"}"
done
echo "{\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}}" > "$WORK/picker.json"
# shellcheck source=scripts/bench-profile.sh
. scripts/bench-profile.sh
POOL="\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}"
default_profile_with "$POOL" prefix-rendezvous-scorer:2 > "$WORK/rendezvous.json"
default_profile_with "$POOL" no-hit-lru-scorer:2 > "$WORK/nohit.json"
default_profile_with "$POOL" lora-affinity-scorer:2 > "$WORK/lora.json"
echo "$epp_endpoints" > "$WORK/endpoints.yaml"
sed "s|@ENDPOINTS_FILE@|$WORK/endpoints.yaml|" scripts/peers/epp-config.yaml > "$WORK/epp.yaml"
# epp-lora: the same profile plus lora-affinity-scorer, weight 2.
sed -e 's|^- type: max-score-picker|- type: lora-affinity-scorer\n- type: max-score-picker|' \
  -e 's|^  - {pluginRef: max-score-picker}|  - {pluginRef: lora-affinity-scorer, weight: 2}\n  - {pluginRef: max-score-picker}|' \
  "$WORK/epp.yaml" > "$WORK/epp-lora.yaml"
sed "s|@LISTEN@|$LISTEN|; s|@ADMIN@|$ADMIN|; s|@EPP_PORT@|$EPP_GRPC|g" scripts/peers/envoy-epp.yaml > "$WORK/envoy-epp.yaml"

start_fleet() { # $1 fleet
  FLEET_PIDS=()
  for i in $(seq 1 $N); do
    local port=$((BASE + i))
    case $1 in
      model-sim)
        target/release/model-sim --listen 127.0.0.1:$port --name sim-$i --num-gpu-blocks 1000 \
          --max-num-seqs 64 --max-num-batched-tokens 4096 --lora "$ADAPTERS" --max-loras 1 >/dev/null 2>&1 & ;;
      llmd-sim)
        # Timing close to model-sim's defaults: ~0.2 ms per uncached prompt token, ~8 ms per
        # output token, slower when the batch is full; the same KV size and batch limit.
        POD_IP=127.0.0.1 "$PEERS/bin/llm-d-inference-sim" --port $port --model "$MODEL" \
          --force-dummy-tokenizer --zmq-endpoint "" --enable-kvcache --kv-cache-size 1000 \
          --block-size 16 --max-num-seqs 64 --max-model-len 32768 --prefill-overhead 6ms \
          --prefill-time-per-token 200us --inter-token-latency 8ms --time-factor-under-load 2 \
          --lora-modules '{"name":"sql-lora","path":"/adapters/sql"}' '{"name":"chat-lora","path":"/adapters/chat"}' \
          --max-loras 1 --seed $i >/dev/null 2>&1 & ;;
    esac
    FLEET_PIDS+=($!); PIDS+=($!)
  done
  for i in $(seq 1 $N); do
    for _ in $(seq 1 100); do curl -sf "127.0.0.1:$((BASE + i))/metrics" >/dev/null && break; sleep 0.1; done
  done
}

wait_port() { # $1 URL that answers 2xx when the policy is ready
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "not ready: $1" >&2; return 1
}

load_args() { # $1 workload
  shared() { # $1 generator, $2 groups
    echo --workload "$1" --groups "$2" --prompts-per-group 32 --system-tokens 1200 \
      --question-tokens 60 --output-tokens 32
  }
  case $1 in
    shared16) shared shared-prefix 16 ;;
    shared32) shared shared-prefix 32 ;;
    zipf) echo "$(shared shared-prefix 16)" --zipf 1.2 ;;
    multiturn) echo --workload multi-turn --sessions 16 --system-tokens 1200 --question-tokens 60 --output-tokens 32 ;;
    lora) echo "$(shared lora-mix 16)" --models "$MODEL,$ADAPTERS" ;;
  esac
}

label_of() {
  case $1 in
    round-robin) echo "Envoy round robin" ;; least-request) echo "Envoy least request" ;;
    epp) echo "Envoy + llm-d-router EPP (ext_proc)" ;; sglang) echo "SGLang router cache_aware" ;;
    vllm) echo "vLLM router cache_aware" ;; wasm) echo "Envoy + picker (Wasm)" ;;
    native) echo "Envoy + picker (native)" ;;
    native-rendezvous) echo "Envoy + picker (native) + prefix-rendezvous" ;;
    native-nohit) echo "Envoy + picker (native) + no-hit-lru" ;;
    native-lora) echo "Envoy + picker (native) + lora-affinity" ;;
    epp-lora) echo "Envoy + llm-d-router EPP (ext_proc) + lora-affinity" ;;
  esac
}

run_one() { # $1 fleet, $2 workload, $3 policy
  start_fleet "$1"
  local cpu=() ready="http://127.0.0.1:$ADMIN/ready"
  case $3 in
    round-robin|least-request|wasm|native|native-rendezvous|native-nohit|native-lora)
      local mode=$3 flag="" cfg=$WORK/picker.json
      case $3 in
        wasm) mode=picker ;; native) mode=picker flag=--native ;;
        native-rendezvous) mode=picker flag=--native cfg=$WORK/rendezvous.json ;;
        native-nohit) mode=picker flag=--native cfg=$WORK/nohit.json ;;
        native-lora) mode=picker flag=--native cfg=$WORK/lora.json ;;
      esac
      target/release/envoy-config render --mode "$mode" $flag --config "$cfg" \
        --wasm dist/endpoint_picker.wasm --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
      ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency "$WORKERS" \
        --disable-hot-restart --log-level warn >"$WORK/proxy.log" 2>&1 &
      cpu+=($!); PIDS+=($!) ;;
    epp|epp-lora)
      "$PEERS/bin/epp" --pool-name bench --pool-namespace bench --config-file "$WORK/$3.yaml" \
        --grpc-port $EPP_GRPC --grpc-health-port $SIDE --metrics-port $((SIDE + 1)) --secure-serving=false \
        >"$WORK/epp.log" 2>&1 &
      cpu+=($!); PIDS+=($!)
      .venv/bin/envoy -c "$WORK/envoy-epp.yaml" --concurrency "$WORKERS" --disable-hot-restart --log-level warn \
        >"$WORK/proxy.log" 2>&1 &
      cpu+=($!); PIDS+=($!) ;;
    sglang)
      "$PEERS/venv/bin/python" -m sglang_router.launch_router --host 127.0.0.1 --port $LISTEN \
        --worker-urls $workers --policy cache_aware --prometheus-host 127.0.0.1 --prometheus-port $SIDE \
        >"$WORK/proxy.log" 2>&1 &
      cpu+=($!); PIDS+=($!); ready="http://127.0.0.1:$LISTEN/v1/models" ;;
    vllm)
      "$PEERS/venv/bin/vllm-router" --host 127.0.0.1 --port $LISTEN --worker-urls $workers \
        --policy cache_aware --prometheus-host 127.0.0.1 --prometheus-port $SIDE \
        >"$WORK/proxy.log" 2>&1 &
      cpu+=($!); PIDS+=($!); ready="http://127.0.0.1:$LISTEN/v1/models" ;;
  esac
  wait_port "$ready"
  sleep 2   # the pickers' first scrape of the servers
  local name="$1-$2-$3"
  echo "== $name: $QPS req/s for $SECS s =="
  # shellcheck disable=SC2046
  target/release/loadgen run --target "http://127.0.0.1:$LISTEN" $(load_args "$2") --qps "$QPS" \
    --duration "$SECS" --seed 7 --label "$(label_of "$3")" --sim-metrics "${metrics%,}" --quiet \
    --cpu-pids "$(IFS=,; echo "${cpu[*]}")" --json "$OUT/$name.json" | tail -n 1
  kill "${cpu[@]}" "${FLEET_PIDS[@]}" 2>/dev/null || true
  wait "${cpu[@]}" "${FLEET_PIDS[@]}" 2>/dev/null || true
}

if [ -z "${PEERS_REPORT_ONLY:-}" ]; then
  for f in $FLEETS; do
    for w in $WORKLOADS; do
      for p in $POLICIES; do run_one "$f" "$w" "$p"; done
    done
  done
fi

{
  echo "# Side by side with the field ($(date -u +%Y-%m-%d), $N servers per fleet, Envoy $WORKERS workers, $QPS req/s for $SECS s per run)"
  echo
  echo "Goodput counts requests with TTFT ≤ 500 ms and TPOT ≤ 50 ms. Router CPU is the CPU time of"
  echo "the routing processes (Envoy, Envoy + EPP, or the router) during the run, per request."
  echo
  echo "Versions: Envoy $(.venv/bin/envoy --version 2>/dev/null | grep -o '/[0-9]*\.[0-9]*\.[0-9]*/' | head -1 | tr -d /);" \
    "llm-d-router EPP v0.10.0; llm-d-inference-sim v0.10.2; sglang-router 0.3.2; vllm-router 0.1.17;" \
    "the picker at $(git rev-parse --short HEAD). Command: \`make bench-peers\` (scripts/bench-peers.sh)."
  for f in $FLEETS; do
    for w in $WORKLOADS; do
      files=()
      for p in $POLICIES; do [ -f "$OUT/$f-$w-$p.json" ] && files+=("$OUT/$f-$w-$p.json"); done
      [ ${#files[@]} -gt 0 ] || continue
      echo
      echo "## $f, $w"
      echo
      target/release/loadgen report --svg "$OUT/$f-$w.svg" "${files[@]}" | grep -v '^chart:'
      echo
      echo "Chart: \`$f-$w.svg\`."
    done
  done
  echo
  echo "## The picker against the best peer (TTFT p90 ratio, goodput ratio; target ≤ 0.8× and ≥ 1×)"
  echo
  python3 - "$OUT" "$FLEETS" "$WORKLOADS" "$POLICIES" <<'PY'
import json, os, sys
out, fleets, workloads, policies = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
ours = [p for p in ("native", "native-rendezvous", "native-nohit", "native-lora", "wasm") if p in policies]
peers = [p for p in policies if p not in ours]
print("| fleet | workload | best peer by TTFT p90 | its p90 (ms) | " + " | ".join(f"{p} p90 (ms) / ratio / goodput ratio" for p in ours) + " |")
print("|---|---|---|---|" + "---|" * len(ours))
for f in fleets:
    for w in workloads:
        runs = {}
        for p in policies:
            path = f"{out}/{f}-{w}-{p}.json"
            if os.path.exists(path):
                runs[p] = json.load(open(path))
        cand = [p for p in peers if p in runs and runs[p]["errors"] <= 0.01 * max(runs[p]["requests"], 1)]
        if not cand:
            continue
        best = min(cand, key=lambda p: runs[p]["ttft"]["p90"])
        b = runs[best]
        cells = []
        for p in ours:
            if p not in runs:
                cells.append("-"); continue
            r = runs[p]
            g = r.get("goodput_rps", 0) / b["goodput_rps"] if b.get("goodput_rps") else float("nan")
            cells.append(f"{1e3*r['ttft']['p90']:.0f} / {r['ttft']['p90']/b['ttft']['p90']:.2f}× / {g:.2f}×")
        print(f"| {f} | {w} | {b['label']} | {1e3*b['ttft']['p90']:.0f} | " + " | ".join(cells) + " |")
PY
} > "$OUT/results.md"
cat "$OUT/results.md"
