#!/usr/bin/env bash
# Prefix affinity across gateway replicas (issue 10): the demo's shared-prefix workload and
# simulated fleet (4 model-sim servers), sent by one client that spreads its requests over
# 2 Envoy replicas with 4 workers each, for:
#   round-robin   Envoy round robin (2 replicas)
#   picker        the native picker, GIE's default profile (2 replicas)
#   rendezvous    the same plus prefix-rendezvous-scorer, weight BENCH_RV_WEIGHT (2 replicas)
#   ceiling       the native picker with 1 replica and 1 worker (one prefix index, no drift)
# and, when named in BENCH_POLICIES (default: the four above):
#   nohit         the default profile plus no-hit-lru-scorer (weight 2): cold requests go to
#                 the server that took one least recently (each replica keeps its own list)
#   rendezvous-nohit  both scorers added
# and prints a table with the prefix-cache hit rate and TTFT of each, relative to the ceiling,
# how many servers each prefix group was sent to on average (1.00: cached once in the fleet), and
# the busiest server's share of the requests. A run whose BENCH_POLICIES leave out `ceiling`
# compares against the results directory's last ceiling, and only when that ceiling was measured
# under the same workload and fleet (kept in ceiling.workload); otherwise its ratios are left out.
# BENCH_BUILD=wasm runs the picker rows with the Wasm module (one prefix index per worker VM,
# so workers drift apart as well as replicas). Not part of `make test`; ~5 min.
#
#   [BENCH_BUILD=native|wasm] scripts/bench-replicas.sh
#   (BENCH_SECONDS / BENCH_QPS / BENCH_WORKERS / BENCH_RV_WEIGHT / BENCH_POLICIES override;
#   BENCH_RV_PARAMS: the rendezvous scorer's parameters as JSON, e.g. '{"loadFactor": 1.0}')
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-45}
QPS=${BENCH_QPS:-22}
WORKERS=${BENCH_WORKERS:-4}
RV_WEIGHT=${BENCH_RV_WEIGHT:-2}
RV_PARAMS=${BENCH_RV_PARAMS:-}
BUILD=${BENCH_BUILD:-native}
POLICIES=${BENCH_POLICIES:-round-robin picker rendezvous ceiling}
case "$BUILD" in
  native) BUILD_FLAG=(--native) ;;
  wasm) BUILD_FLAG=() ;;
  *) echo "BENCH_BUILD is native or wasm" >&2; exit 2 ;;
esac
N=4
BASE_PORT=${BENCH_BASE_PORT:-18700}
OUT=bench-results/replicas-${BENCH_BUILD:-native}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# The demo's fleet and workload (scripts/demo.sh).
SIM_ARGS=(--num-gpu-blocks 1000 --max-num-seqs 64 --max-num-batched-tokens 4096)
LOAD_ARGS=(--workload shared-prefix --groups 16 --prompts-per-group 32 --system-tokens 1200
           --question-tokens 60 --output-tokens 32 --qps "$QPS" --duration "$SECS" --seed 7)
# BENCH_LOAD_EXTRA: more loadgen arguments, e.g. "--zipf 1.2" (skewed group popularity).
read -r -a LOAD_EXTRA <<< "${BENCH_LOAD_EXTRA:-}"
LOAD_ARGS+=(${LOAD_EXTRA[@]+"${LOAD_EXTRA[@]}"})

make -s native wasm envoy >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config

endpoints=""; metrics=""
for i in $(seq 1 $N); do
  endpoints+="{\"address\": \"127.0.0.1:$((BASE_PORT + i))\"},"
  metrics+="http://127.0.0.1:$((BASE_PORT + i))/metrics,"
done
POOL="\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}"
echo "{$POOL}" > "$WORK/default.json"

# shellcheck source=scripts/bench-profile.sh
. scripts/bench-profile.sh
RV="prefix-rendezvous-scorer:$RV_WEIGHT:$RV_PARAMS"
default_profile_with "$POOL" "$RV" > "$WORK/rendezvous.json"
default_profile_with "$POOL" no-hit-lru-scorer:2 > "$WORK/nohit.json"
default_profile_with "$POOL" "$RV" no-hit-lru-scorer:2 > "$WORK/rendezvous-nohit.json"

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

run_policy() { # $1 name, $2 label, $3 mode, $4 picker json, $5 replicas, $6 workers
  start_sims
  local targets="" envoys=()
  for r in $(seq 1 "$5"); do
    local listen=$((BASE_PORT + 80 + 2 * r)) admin=$((BASE_PORT + 81 + 2 * r))
    target/release/envoy-config render --mode "$3" "${BUILD_FLAG[@]}" --wasm dist/endpoint_picker.wasm --config "$4" \
      --listen 127.0.0.1:$listen --admin-port $admin --out "$WORK/$1-$r.yaml"
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/$1-$r.yaml" --concurrency "$6" \
      --disable-hot-restart --log-level warn >"$WORK/$1-$r.log" 2>&1 &
    envoys+=($!); PIDS+=($!)
    for _ in $(seq 1 100); do curl -sf localhost:$admin/ready >/dev/null 2>&1 && break; sleep 0.1; done
    targets+="http://127.0.0.1:$listen,"
  done
  sleep 1
  echo "== $2 ($BUILD): $5 replica(s) x $6 worker(s), $QPS req/s for $SECS s =="
  target/release/loadgen run --target "${targets%,}" "${LOAD_ARGS[@]}" --label "$2" \
    --sim-metrics "${metrics%,}" --json "$OUT/$1.json" --quiet
  kill "${envoys[@]}" "${SIM_PIDS[@]}" 2>/dev/null || true
  wait "${envoys[@]}" "${SIM_PIDS[@]}" 2>/dev/null || true
}

jsons=()
for p in $POLICIES; do
  case $p in
    round-robin) run_policy round-robin "Envoy round robin" round-robin "$WORK/default.json" 2 "$WORKERS" ;;
    picker) run_policy picker "picker (default profile)" picker "$WORK/default.json" 2 "$WORKERS" ;;
    rendezvous) run_policy rendezvous "picker + prefix-rendezvous-scorer" picker "$WORK/rendezvous.json" 2 "$WORKERS" ;;
    nohit) run_policy nohit "picker + no-hit-lru-scorer" picker "$WORK/nohit.json" 2 "$WORKERS" ;;
    rendezvous-nohit) run_policy rendezvous-nohit "picker + prefix-rendezvous + no-hit-lru" picker "$WORK/rendezvous-nohit.json" 2 "$WORKERS" ;;
    ceiling) run_policy ceiling "picker, 1 replica x 1 worker" picker "$WORK/default.json" 1 1 ;;
    *) echo "unknown policy $p" >&2; exit 2 ;;
  esac
  jsons+=("$OUT/$p.json")
done
# What the ceiling was measured under (workload and fleet): a later run without `ceiling` compares
# against it only when its own workload is the same.
WORKLOAD_SIG="${SIM_ARGS[*]} | ${LOAD_ARGS[*]}"
case " $POLICIES " in *" ceiling "*) echo "$WORKLOAD_SIG" > "$OUT/ceiling.workload" ;; esac

target/release/loadgen report --markdown "$OUT/results.md" --svg "$OUT/ttft.svg" "${jsons[@]}"
python3 - "$OUT" "$POLICIES" "$WORKLOAD_SIG" <<'PY'
import json, sys
out, policies, workload = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def get(n):
    return json.load(open(f"{out}/{n}.json"))
def ms(d, q):
    return 1000 * ((d.get("ttft") or {}).get(q) or 0)  # the JSON holds seconds
import os
c = get("ceiling") if os.path.exists(f"{out}/ceiling.json") else {}
if c and "ceiling" not in policies:
    import time
    age = (time.time() - os.path.getmtime(f"{out}/ceiling.json")) / 3600
    try:
        ceiling_workload = open(f"{out}/ceiling.workload").read().strip()
    except OSError:
        ceiling_workload = None
    if ceiling_workload != workload:
        print(f"\nnote: no ceiling run this time, and {out}/ceiling.json was measured under another "
              f"workload ({ceiling_workload or 'not recorded'}); ratios left out (run with ceiling)")
        c = {}
    else:
        print(f"\nnote: no ceiling run this time; ratios are against {out}/ceiling.json, {age:.1f} h old")
print("\n| policy | prefix-cache hit rate (% of ceiling) | TTFT p90 ms (× ceiling) | TTFT p99 ms (× ceiling) | requests/s | servers per prefix group | busiest server's share |")
print("|---|---|---|---|---|---|---|")
for n in policies:
    d = get(n)
    hr, chr_ = d.get("prefix_cache_hit_rate") or 0, c.get("prefix_cache_hit_rate") or 0
    def ratio(a, b, fmt):
        return format(a / b, fmt) if b else "—"
    print(f"| {d.get('label', n)} | {100*hr:.1f} % ({ratio(100*hr, chr_, '.1f')} %) | "
          f"{ms(d, 'p90'):.0f} ({ratio(ms(d, 'p90'), ms(c, 'p90'), '.2f')}×) | "
          f"{ms(d, 'p99'):.0f} ({ratio(ms(d, 'p99'), ms(c, 'p99'), '.2f')}×) | {d.get('requests_per_s', 0):.1f} | "
          f"{d.get('endpoints_per_prefix') or 0:.2f} | {100*max((d.get('share_per_endpoint') or {'': 0}).values()):.0f} % |")
PY
