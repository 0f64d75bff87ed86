#!/usr/bin/env bash
# Overhead of the picker inside Envoy: the same loopback load (16 endpoints, default GIE
# profile, ~4 KiB chat bodies) through plain Envoy (round robin to the same backends), Envoy with
# the Wasm picker and Envoy with the native picker, side by side in one run. Prints added
# latency (p50/p99), the throughput ratio and Envoy's CPU per request.
#
#   [BENCH_WORKLOAD=distinct|shared|constant|get|large] [BENCH_CONCURRENCY=1] [BENCH_HOP=1] [BENCH_EPP=1] \
#     scripts/bench-envoy.sh [seconds=15] [connections=16]
#
# BENCH_CONCURRENCY: Envoy worker threads (--concurrency) for every run. BENCH_ROUNDS (default 2):
# the three configurations run in turn that many times and each figure is the mean over rounds,
# so drift in the machine's speed during the run hits all three alike.
#
# BENCH_HOP=1 adds a third run, `picker-hop`: the kgateway deployment shape (envoy-config/deploy/
# kgateway), where a plain outer listener routes over loopback to the picker's own listener in
# the same Envoy (the overlay is merged with --config-yaml, as kgateway merges its bootstrap), so
# the difference to `picker` is the cost of the extra in-proxy hop.
#
# BENCH_KGW=1 adds `kgw-policy`: the configuration kgateway's own translator emits for an
# EndpointPickerPolicy (the kgateway/ controller build; the Wasm module in kgateway's listener,
# enabled on the route), rendered by kgateway/envoytest with the same 16 endpoints and picker
# JSON; compare it with `picker-hop` (the overlay) for the two kgateway deployments' costs.
#
# BENCH_EPP=1 adds `epp`: Envoy with llm-d-router's EPP over ext_proc (scripts/peers/: file
# discovery of the same 16 servers, the same default profile, bodies FULL_DUPLEX_STREAMED), the
# out-of-process picker this project replaces. Its CPU per request counts the EPP process (every
# thread) as well as Envoy's worker; the EPP is not pinned. Installs the EPP into target/peers.
#
# BENCH_FLOOR=1 adds `floor`: the native picker's Envoy configuration with the picker replaced by
# native/floor's dynamic-module filter, which only buffers the request body (when there is one)
# and adds x-gateway-destination-endpoint (the endpoints in turn), and Envoy's round robin as the fallback balancer (scripts/bench-load.sh
# floor_filter_yaml). Its difference to plain Envoy is what Envoy charges for any picker that is a
# dynamic-module filter routing by that header: the floor under the native picker's overhead.
# BENCH_FLOOR_ENDPOINTS (comma-separated host:port) gives the floor its own endpoints instead of all
# 16, e.g. the one endpoint the picker's prefix affinity sends a shared prompt to, so the floor
# also prices where requests go. FLOOR_SPIN_NS=N and FLOOR_TOUCH_LINES=N (exported) give the
# floor synthetic work per request — N ns of spinning, N random 8-byte writes into a 16 MiB
# table — to price a given cost in throughput (native/floor/src/lib.rs).
#
# BENCH_DIRECT=1 adds `native-direct`: the native configuration with `pool.scrape.transport:
# "direct"` (the module's own scrape thread instead of Envoy callouts from the main thread); its
# table adds the scraping CPU per request (main thread plus the scrape thread).
#
# BENCH_NATIVE_ALT=<dir> adds `native-alt`: the native configuration with the libendpoint_picker.so
# found in <dir> instead of dist/ (e.g. a profile-guided build, scripts/native-pgo.sh), so two builds
# of the module compare side by side in one run. BENCH_PICKER_ALT_EXTRA='<top-level JSON fields>'
# adds `native-alt` too, or gives it its own picker JSON (BENCH_PICKER_EXTRA's form), so two
# configurations compare side by side in one run: on a VM whose speed drifts by tens of percent
# between minutes, variants run in separate invocations cannot be told apart.
#
# Throughput: wrk with <connections> connections (the worker saturates). Latency: wrk with one
# connection (no queueing), so the p50/p99 difference is the time the picker adds per request.
#
# BENCH_PIN (default 1 with one Envoy worker on a machine with 2+ CPUs): Envoy runs on CPU 0, and
# wrk and the fake servers on CPU 1, so the load generator does not take CPU from the worker it
# measures (on 2 shared cores this roughly halves the run-to-run spread).
#
# BENCH_HALT_POLL_NS: on a KVM guest with the cpuidle-haltpoll driver, how long (ns) an idle vCPU
# polls before it halts (/sys/module/haltpoll/parameters/guest_halt_poll_ns), set for this run and
# put back on exit; needs root. The kernel's own default is 200000; some clouds ship 0, and then
# the vCPU halts (a VM exit) whenever Envoy waits, which on one connection is between every two
# requests: every request then most likely starts from caches the host has since reused, and the
# figure grows with the code and data each request touches rather than with its CPU (BENCHMARKS.md, "The
# one-connection p50 and the VM's idle halts"). The setting in force is printed with the results.
#
# Needs: make wasm envoy (done here), wrk (installed from Debian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
CONNS=${2:-16}
N=16
BASE_PORT=${BENCH_BASE_PORT:-18100}
LISTEN_PORT=$((BASE_PORT + 80))
ADMIN_PORT=$((BASE_PORT + 81))
INNER_PORT=$((BASE_PORT + 82))
WORK=$(mktemp -d)
PIDS=()
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_WAS=$(cat "$HALT_POLL" 2>/dev/null || true)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"
  if [ -n "${BENCH_HALT_POLL_NS:-}" ] && [ -n "$HALT_POLL_WAS" ]; then echo "$HALT_POLL_WAS" > "$HALT_POLL" 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ -n "${BENCH_HALT_POLL_NS:-}" ]; then
  [ -w "$HALT_POLL" ] || { echo "BENCH_HALT_POLL_NS: $HALT_POLL is not there or not writable (not a KVM guest with cpuidle-haltpoll, or not root)" >&2; exit 2; }
  echo "$BENCH_HALT_POLL_NS" > "$HALT_POLL"
fi
idle_setting() {
  local driver; driver=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)
  if [ -r "$HALT_POLL" ]; then echo "cpuidle $driver, guest_halt_poll_ns=$(cat "$HALT_POLL")"; else echo "cpuidle $driver"; fi
}
WORKERS=${BENCH_CONCURRENCY:-1}
PIN_ENVOY=() PIN_LOAD=()
if [ "${BENCH_PIN:-$([ "$WORKERS" = 1 ] && [ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}" = 1 ]; then
  PIN_ENVOY=(taskset -c 0) PIN_LOAD=(taskset -c 1)
fi

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
make -s wasm native envoy >/dev/null
# One cargo invocation for both: built apart, they enable different features of the filter crate,
# whose cdylib artifact has no per-feature file name, so each build undid the other (~2 min a run).
cargo build -q --release -p e2e --bin fake-model-server -p envoy-config --bin envoy-config
[ "${BENCH_EPP:-0}" = 1 ] && scripts/peers-install.sh epp
if [ "${BENCH_FLOOR:-0}" = 1 ]; then
  cargo build -q --release -p floor-filter
  mkdir -p "$WORK/floor" && cp target/release/libfloor_filter.so "$WORK/floor/"
fi

# shellcheck source=scripts/bench-load.sh
. scripts/bench-load.sh
start_fleet $N "$BASE_PORT" ${PIN_LOAD[@]+"${PIN_LOAD[@]}"}
# BENCH_PICKER_EXTRA: extra top-level fields (e.g. plugins/profiles) to compare variants;
# BENCH_POOL_EXTRA: extra fields of `pool` (e.g. ', "scrape": {"interval": "2s"}').
cat > "$WORK/picker.json" <<JSON
{"pool": {"cluster": "inference_pool", "endpoints": [$ENDPOINTS] ${BENCH_POOL_EXTRA:-}} ${BENCH_PICKER_EXTRA:-}}
JSON
# BENCH_DIRECT=1 (native-direct; BENCH_POOL_EXTRA must then not set `scrape`).
cat > "$WORK/picker-alt.json" <<JSON
{"pool": {"cluster": "inference_pool", "endpoints": [$ENDPOINTS] ${BENCH_POOL_EXTRA:-}} ${BENCH_PICKER_ALT_EXTRA-${BENCH_PICKER_EXTRA:-}}}
JSON
cat > "$WORK/picker-direct.json" <<JSON
{"pool": {"cluster": "inference_pool", "endpoints": [$ENDPOINTS], "scrape": {"transport": "direct"} ${BENCH_POOL_EXTRA:-}} ${BENCH_PICKER_EXTRA:-}}
JSON

# Workloads (BENCH_WORKLOAD, default distinct): see scripts/bench-load.sh.
WORKLOAD=${BENCH_WORKLOAD:-distinct}
write_workload "$WORKLOAD" "$WORK/chat.lua"

# The outer hop of picker-hop: kgateway's listener and its Static Backend cluster to the picker
# listener on loopback.
HOP_YAML="static_resources:
  listeners:
  - name: outer
    address: { socket_address: { address: 127.0.0.1, port_value: $LISTEN_PORT } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outer
          route_config: { virtual_hosts: [ { name: outer, domains: ['*'], routes: [ { match: { prefix: / }, route: { cluster: picker_loopback, timeout: 600s } } ] } ] }
          http_filters: [ { name: envoy.filters.http.router, typed_config: { '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ]
  clusters:
  - name: picker_loopback
    type: STATIC
    connect_timeout: 1s
    load_assignment: { cluster_name: picker_loopback, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $INNER_PORT } } } } ] } ] }
    circuit_breakers: { thresholds: [ { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 } ] }"

# The EPP's endpoints file and config, and Envoy's ext_proc configuration (scripts/peers/).
EPP_GRPC=$((BASE_PORT + 83))
if [ "${BENCH_EPP:-0}" = 1 ]; then
  echo "endpoints:" > "$WORK/endpoints.yaml"
  for i in $(seq 1 $N); do
    echo "- {name: pod-$i, address: \"127.0.0.1\", port: \"$((BASE_PORT + i))\"}" >> "$WORK/endpoints.yaml"
  done
  sed "s|@ENDPOINTS_FILE@|$WORK/endpoints.yaml|" scripts/peers/epp-config.yaml > "$WORK/epp-config.yaml"
  sed "s|@LISTEN@|$LISTEN_PORT|; s|@ADMIN@|$ADMIN_PORT|; s|@EPP_PORT@|$EPP_GRPC|g" scripts/peers/envoy-epp.yaml > "$WORK/envoy-epp.yaml"
fi

# kgateway's translation of an EndpointPickerPolicy for the same pool (Go, kgateway/envoytest).
if [ "${BENCH_KGW:-0}" = 1 ]; then
  (cd kgateway && KGATEWAY_BOOTSTRAP_OUT="$WORK/kgw-policy.json" KGATEWAY_PICKER_JSON="$WORK/picker.json" \
    KGATEWAY_LISTEN_PORT=$LISTEN_PORT KGATEWAY_ADMIN_PORT=$ADMIN_PORT PICKER_WASM="$PWD/../dist/endpoint_picker.wasm" \
    PICKER_NATIVE_DIR="$PWD/../dist" ENVOY_BIN="$PWD/../.venv/bin/envoy" \
    go test -count=1 -run TestRenderBootstrapForBenchmarks ./envoytest/ >"$WORK/kgw-render.log" 2>&1) ||
    { tail -20 "$WORK/kgw-render.log"; exit 1; }
fi

run() { # $1 = round-robin | picker (Wasm) | native | picker-hop | kgw-policy | epp
  local mode=$1 listen=$LISTEN_PORT extra=() build=() epp=""
  if [ "$1" = picker-hop ]; then mode=picker; listen=$INNER_PORT; extra=(--config-yaml "$HOP_YAML"); fi
  if [ "$1" = native ]; then mode=picker; build=(--native); fi
  local modules="$PWD/dist"
  if [ "$1" = floor ]; then mode=picker; build=(--native); modules="$WORK/floor"; fi
  local config="$WORK/picker.json"
  if [ "$1" = native-alt ]; then
    mode=picker; build=(--native); config="$WORK/picker-alt.json"
    [ -n "${BENCH_NATIVE_ALT:-}" ] && modules="$(cd "$BENCH_NATIVE_ALT" && pwd)"
  fi
  if [ "$1" = native-direct ]; then mode=picker; build=(--native); config="$WORK/picker-direct.json"; fi
  # No access log: the runs measure the picker, not Envoy's logging (same for every mode).
  if [ "$1" = epp ]; then
    target/peers/bin/epp --pool-name bench --pool-namespace bench --config-file "$WORK/epp-config.yaml" \
      --grpc-port $EPP_GRPC --grpc-health-port $((EPP_GRPC + 1)) --metrics-port $((EPP_GRPC + 2)) \
      --secure-serving=false >"$WORK/epp.log" 2>&1 &
    epp=$!
    cp "$WORK/envoy-epp.yaml" "$WORK/$1.yaml"
  elif [ "$1" = kgw-policy ]; then
    mode=picker
    cp "$WORK/kgw-policy.json" "$WORK/$1.yaml"
  else
    target/release/envoy-config render --mode "$mode" "${build[@]}" --access-log none --config "$config" --wasm dist/endpoint_picker.wasm \
      --listen 127.0.0.1:$listen --admin-port $ADMIN_PORT --out "$WORK/$1.yaml"
  fi
  [ "$1" = floor ] && floor_filter_yaml "$WORK/$1.yaml" "${BENCH_FLOOR_ENDPOINTS:-$(endpoint_list "$ENDPOINTS")}"
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$modules" ${PIN_ENVOY[@]+"${PIN_ENVOY[@]}"} .venv/bin/envoy -c "$WORK/$1.yaml" "${extra[@]}" --concurrency "$WORKERS" \
    --disable-hot-restart --log-level warn >"$WORK/$1.log" 2>&1 &
  local envoy=$!
  for _ in $(seq 1 100); do curl -sf localhost:$ADMIN_PORT/ready >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
  ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk -t1 -c"$CONNS" -d3s -s "$WORK/chat.lua" http://127.0.0.1:$LISTEN_PORT >/dev/null   # warm-up
  local before; before=$(thread_cpu $envoy)
  local epp_before=0; [ -n "$epp" ] && epp_before=$(proc_cpu $epp)
  # BENCH_PERF=1: hardware counters of Envoy's process over the throughput run (perf stat; a VM
  # may not expose them), and its page faults and context switches (software events, which
  # every VM has). BENCH_PERF=record: a cpu-clock profile of it, kept in
  # bench-results/perf/<run>.data (read with perf report -i).
  local perf=""
  if [ "${BENCH_PERF:-0}" = 1 ]; then
    perf stat -e cycles,instructions,cache-misses,dTLB-load-misses,dTLB-loads,page-faults,context-switches -p $envoy -o "$WORK/$1.$R.perf" &
    perf=$!
  elif [ "${BENCH_PERF:-0}" = record ]; then
    mkdir -p bench-results/perf
    perf record -q -e cpu-clock -F 2000 -g -p $envoy -o "bench-results/perf/$1.$R.data" 2>/dev/null &
    perf=$!
  fi
  ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/chat.lua" http://127.0.0.1:$LISTEN_PORT > "$WORK/$1.$R.wrk"
  local after; after=$(thread_cpu $envoy)
  if [ -n "$perf" ]; then kill -INT $perf; wait $perf 2>/dev/null || true; [ -f "$WORK/$1.$R.perf" ] && grep -E 'cycles|instructions|misses|loads|faults|switches' "$WORK/$1.$R.perf" | sed "s/^/$1 perf: /"; fi
  local epp_after=0; [ -n "$epp" ] && epp_after=$(proc_cpu $epp)
  local reqs; reqs=$(awk '/requests in/ {print $1}' "$WORK/$1.$R.wrk")
  # Latency without queueing: one connection, one request at a time.
  ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk -t1 -c1 -d"${SECS}s" --latency -s "$WORK/chat.lua" http://127.0.0.1:$LISTEN_PORT > "$WORK/$1.$R.lat"
  # Envoy CPU per request, by thread: the worker serves requests, the main thread runs the scraper
  # (the direct transport's own thread, when it is used).
  awk -v b="$before" -v a="$after" -v n="$reqs" -v m="$1" 'BEGIN {
    split(b, B, " "); split(a, A, " ");
    printf "%s envoy_cpu_us_per_request: worker=%.1f main=%.1f scrape=%.1f\n", m, (A[1]-B[1])*1e6/n, (A[2]-B[2])*1e6/n, (A[3]-B[3])*1e6/n }' | tee -a "$WORK/cpu.txt"
  if [ -n "$epp" ]; then
    awk -v b="$epp_before" -v a="$epp_after" -v n="$reqs" -v m="$1" 'BEGIN {
      printf "%s epp_process_cpu_us_per_request: %.1f\n", m, (a-b)*1e6/n }' | tee -a "$WORK/epp-cpu.txt"
    kill "$epp"; wait "$epp" 2>/dev/null || true
  fi
  # Upstream connections Envoy opened over the run, by cluster: placement that sends two requests
  # to one endpoint at once makes Envoy open another connection, a cost outside the filter.
  curl -s localhost:$ADMIN_PORT/stats | awk -F': ' -v m="$1" '/^cluster\.[^.]*\.upstream_cx_total:/ && $2 > 0 {
    split($1, c, "."); printf "%s upstream connections opened: %s %s\n", m, c[2], $2 }'
  # Where the requests went (the pool's hosts in /clusters, warm-up included): two
  # configurations that spread load differently also load the fleet and Envoy's upstream
  # connections differently, which is a cost outside the filter too.
  curl -s localhost:$ADMIN_PORT/clusters | awk -F'::' -v m="$1" '$1 == "inference_pool" && $3 == "rq_total" {
    n++; v = $4 + 0; s += v; q += v * v; if (n == 1 || v < lo) lo = v; if (v > hi) hi = v }
    END { if (n > 0 && s > 0) { mu = s / n; sd = sqrt(q / n - mu * mu);
      printf "%s requests per endpoint: %d endpoints, min %d, max %d, coefficient of variation %.2f\n", m, n, lo, hi, sd / mu } }'
  if [ "$mode" = picker ] && [ "$1" != floor ]; then
    curl -s localhost:$ADMIN_PORT/stats | grep -E 'endpoint_picker(\.|_)(picks|local_replies|fail_open)' | awk -F': ' '{s+=$2} END {print "picker stats: " s " picks+replies"}'
    curl -s localhost:$ADMIN_PORT/stats | grep -E 'local_replies' || true
  fi
  kill $envoy; wait $envoy 2>/dev/null || true
}

# CPU seconds used so far by Envoy's worker threads, by its main thread and by the native
# module's direct-transport scrape thread (`picker-scrape`): "worker main scrape".
thread_cpu() {
  local pid=$1 tck; tck=$(getconf CLK_TCK)
  awk -v t="$tck" -v main="$pid" '{ # /proc/<pid>/task/<tid>/stat: field 14 utime, 15 stime; 2 comm
    split(FILENAME, p, "/"); tid = p[5]; cpu = ($14 + $15) / t;
    if (tid == main) m += cpu; else if ($2 ~ /wrk:worker/) w += cpu; else if ($2 ~ /picker-scrape/) s += cpu }
    END { printf "%f %f %f", w, m, s }' /proc/$pid/task/*/stat
}

# CPU seconds used so far by every thread of a process.
proc_cpu() {
  awk -v t="$(getconf CLK_TCK)" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print (f[12] + f[13]) / t }' /proc/$1/stat
}

to_us() { # wrk latency like 812.00us / 1.23ms / 2.1s -> microseconds
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v+0 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v*1000 } else { sub(/s$/,"",v); print v*1000000 } }'
}

# BENCH_MODES: a subset of the three base runs (e.g. "round-robin native"); the table prints 0
# for a run left out.
read -r -a MODES <<< "${BENCH_MODES:-round-robin picker native}"
[ "${BENCH_HOP:-0}" = 1 ] && MODES+=(picker-hop)
[ "${BENCH_KGW:-0}" = 1 ] && MODES+=(kgw-policy)
[ "${BENCH_EPP:-0}" = 1 ] && MODES+=(epp)
[ "${BENCH_FLOOR:-0}" = 1 ] && MODES+=(floor)
# What native-alt changes, for its table's title ("" when there is no native-alt).
ALT=${BENCH_NATIVE_ALT:+the module from $BENCH_NATIVE_ALT}
[ -n "${BENCH_PICKER_ALT_EXTRA+set}" ] && ALT="${ALT:+$ALT, }its own picker JSON (BENCH_PICKER_ALT_EXTRA)"
[ -n "$ALT" ] && MODES+=(native-alt)
[ "${BENCH_DIRECT:-0}" = 1 ] && MODES+=(native-direct)
ROUNDS=${BENCH_ROUNDS:-2}
for R in $(seq 1 "$ROUNDS"); do for m in "${MODES[@]}"; do run "$m"; done; done
mean() { awk '{s+=$1; n++} END {if (n) printf "%.2f", s/n}'; }
for m in "${MODES[@]}"; do
  rps=$(cat "$WORK/$m".*.wrk | awk '/Requests\/sec/ {print $2}' | mean)
  p50=$(for f in "$WORK/$m".*.lat; do to_us "$(awk '$1=="50%" {print $2}' "$f")"; done | mean)
  p99=$(for f in "$WORK/$m".*.lat; do to_us "$(awk '$1=="99%" {print $2}' "$f")"; done | mean)
  errs=$(cat "$WORK/$m".*.wrk | awk '/Non-2xx|Socket errors/ {print}')
  # Latency under the throughput run's load (CONNS connections).
  lp50=$(for f in "$WORK/$m".*.wrk; do to_us "$(awk '$1=="50%" {print $2}' "$f")"; done | mean)
  lp99=$(for f in "$WORK/$m".*.wrk; do to_us "$(awk '$1=="99%" {print $2}' "$f")"; done | mean)
  echo "$m rps=$rps p50_us=$p50 p99_us=$p99 loaded_p50_us=$lp50 loaded_p99_us=$lp99 (mean of $ROUNDS rounds) ${errs}"
  eval "${m//-/_}_rps=$rps; ${m//-/_}_p50=$p50; ${m//-/_}_p99=$p99; ${m//-/_}_lp50=$lp50; ${m//-/_}_lp99=$lp99"
done
cpu() { awk -v m="$1" '$1==m {split($3,a,"="); print a[2]}' "$WORK/cpu.txt" | mean; }
awk -v wl="$WORKLOAD" -v secs="$SECS" -v w="$WORKERS" -v a="${round_robin_rps:-0}" -v b="${picker_rps:-0}" -v c="${native_rps:-0}" \
    -v p50a="${round_robin_p50:-0}" -v p50b="${picker_p50:-0}" -v p50c="${native_p50:-0}" \
    -v p99a="${round_robin_p99:-0}" -v p99b="${picker_p99:-0}" -v p99c="${native_p99:-0}" \
    -v ca="$(cpu round-robin)" -v cb="$(cpu picker)" -v cc="$(cpu native)" -v idle="$(idle_setting)" '
  # A mode left out of BENCH_MODES prints "not run" rather than zeros.
  function ratio(ran, v, base) { return ran ? sprintf("%.0f (%.1f %%)", v, 100*v/base) : "not run" }
  function added(ran, v, base, f) { return ran ? sprintf(f, v) " (" sprintf("%+" substr(f, 2), v-base) ")" : "not run" }
  BEGIN {
  printf "\nworkload %s, %d endpoints, %s s per run, Envoy --concurrency %s, mean of the rounds; %s\n", wl, 16, secs, w, idle
  printf "| | plain Envoy (round robin) | Envoy + Wasm picker | Envoy + native picker |\n|---|---|---|---|\n"
  printf "| throughput (req/s) | %.0f | %s | %s |\n", a, ratio(b > 0, b, a), ratio(c > 0, c, a)
  printf "| worker CPU per request (µs) | %.1f | %s | %s |\n", ca, added(b > 0, cb, ca, "%.1f"), added(c > 0, cc, ca, "%.1f")
  printf "| latency p50, 1 connection (µs) | %.0f | %s | %s |\n", p50a, added(b > 0, p50b, p50a, "%.0f"), added(c > 0, p50c, p50a, "%.0f")
  printf "| latency p99, 1 connection (µs) | %.0f | %s | %s |\n", p99a, added(b > 0, p99b, p99a, "%.0f"), added(c > 0, p99c, p99a, "%.0f")
}'
if [ "${BENCH_FLOOR:-0}" = 1 ]; then
  awk -v a="$round_robin_rps" -v f="$floor_rps" -v n="${native_rps:-0}" -v p50a="$round_robin_p50" -v p50f="$floor_p50" \
      -v p50n="${native_p50:-0}" -v p99a="$round_robin_p99" -v p99f="$floor_p99" -v p99n="${native_p99:-0}" -v ca="$(cpu round-robin)" -v cf="$(cpu floor)" -v cn="$(cpu native)" 'BEGIN {
    printf "\nthe floor: the native configuration with a filter that only buffers the body and adds the destination header (native/floor)\n"
    printf "| | plain Envoy (round robin) | + floor filter | + native picker |\n|---|---|---|---|\n"
    printf "| throughput (req/s) | %.0f | %.0f (%.1f %%) | %.0f (%.1f %%) |\n", a, f, 100*f/a, n, 100*n/a
    printf "| worker CPU per request (µs) | %.1f | %.1f (%+.1f) | %.1f (%+.1f) |\n", ca, cf, cf-ca, cn, cn-ca
    printf "| latency p50, 1 connection (µs) | %.0f | %.0f (%+.0f) | %.0f (%+.0f) |\n", p50a, p50f, p50f-p50a, p50n, p50n-p50a
    printf "| latency p99, 1 connection (µs) | %.0f | %.0f (%+.0f) | %.0f (%+.0f) |\n", p99a, p99f, p99f-p99a, p99n, p99n-p99a
  }'
fi
if [ -n "$ALT" ]; then
  awk -v a="$round_robin_rps" -v x="$native_alt_rps" -v n="${native_rps:-0}" -v p50a="$round_robin_p50" -v p50x="$native_alt_p50" \
      -v p50n="${native_p50:-0}" -v p99a="$round_robin_p99" -v p99x="$native_alt_p99" -v p99n="${native_p99:-0}" -v ca="$(cpu round-robin)" -v cx="$(cpu native-alt)" -v cn="$(cpu native)" -v dir="${BENCH_NATIVE_ALT:-dist/}" -v alt="$ALT" 'BEGIN {
    printf "\nnative-alt: the native configuration with %s\n", alt
    printf "| | plain Envoy (round robin) | + native picker (dist/) | + native-alt (module from %s) |\n|---|---|---|---|\n", dir
    printf "| throughput (req/s) | %.0f | %.0f (%.1f %%) | %.0f (%.1f %%) |\n", a, n, 100*n/a, x, 100*x/a
    printf "| worker CPU per request (µs) | %.1f | %.1f (%+.1f) | %.1f (%+.1f) |\n", ca, cn, cn-ca, cx, cx-ca
    printf "| latency p50, 1 connection (µs) | %.0f | %.0f (%+.0f) | %.0f (%+.0f) |\n", p50a, p50n, p50n-p50a, p50x, p50x-p50a
    printf "| latency p99, 1 connection (µs) | %.0f | %.0f (%+.0f) | %.0f (%+.0f) |\n", p99a, p99n, p99n-p99a, p99x, p99x-p99a
  }'
fi
if [ "${BENCH_HOP:-0}" = 1 ]; then
  awk -v a="$picker_rps" -v b="$picker_hop_rps" -v p50a="$picker_p50" -v p50b="$picker_hop_p50" -v p99a="$picker_p99" -v p99b="$picker_hop_p99" -v rr="$round_robin_rps" 'BEGIN {
    printf "\nkgateway shape (outer listener -> loopback -> picker listener) vs picker in the listener\n"
    printf "| | Envoy + picker | + loopback hop (kgateway) | difference |\n|---|---|---|---|\n"
    printf "| throughput (req/s) | %.0f | %.0f | ratio %.1f %% (%.1f %% of plain Envoy) |\n", a, b, 100*b/a, 100*b/rr
    printf "| latency p50, 1 connection (µs) | %.0f | %.0f | %+.0f µs |\n", p50a, p50b, p50b-p50a
    printf "| latency p99, 1 connection (µs) | %.0f | %.0f | %+.0f µs |\n", p99a, p99b, p99b-p99a
  }'
fi
if [ "${BENCH_KGW:-0}" = 1 ]; then
  hop_rps=${picker_hop_rps:-0}; hop_p50=${picker_hop_p50:-0}; hop_p99=${picker_hop_p99:-0}
  awk -v rr="$round_robin_rps" -v a="$picker_rps" -v k="$kgw_policy_rps" -v h="$hop_rps" \
      -v p50r="$round_robin_p50" -v p50a="$picker_p50" -v p50k="$kgw_policy_p50" -v p50h="$hop_p50" \
      -v p99r="$round_robin_p99" -v p99a="$picker_p99" -v p99k="$kgw_policy_p99" -v p99h="$hop_p99" \
      -v cr="$(cpu round-robin)" -v ca="$(cpu picker)" -v ck="$(cpu kgw-policy)" -v ch="$(cpu picker-hop)" 'BEGIN {
    printf "\nkgateway: EndpointPickerPolicy (filter in kgateway'"'"'s listener) vs the overlay (loopback hop), Wasm build\n"
    printf "| | plain Envoy (round robin) | picker in the listener (envoy-config render) | kgateway policy (our controller build) | kgateway overlay (loopback hop) |\n|---|---|---|---|---|\n"
    printf "| throughput (req/s) | %.0f | %.0f | %.0f (%.1f %% of plain) | %s |\n", rr, a, k, 100*k/rr, (h > 0 ? sprintf("%.0f (%.1f %% of plain)", h, 100*h/rr) : "not run (BENCH_HOP=1)")
    printf "| latency p50, 1 connection (µs) | %.0f | %.0f | %.0f (%+.0f) | %s |\n", p50r, p50a, p50k, p50k-p50r, (h > 0 ? sprintf("%.0f (%+.0f)", p50h, p50h-p50r) : "")
    printf "| latency p99, 1 connection (µs) | %.0f | %.0f | %.0f (%+.0f) | %s |\n", p99r, p99a, p99k, p99k-p99r, (h > 0 ? sprintf("%.0f (%+.0f)", p99h, p99h-p99r) : "")
    printf "| worker CPU per request (µs) | %.1f | %.1f | %.1f | %s |\n", cr, ca, ck, (h > 0 ? sprintf("%.1f", ch) : "")
  }'
fi
if [ "${BENCH_EPP:-0}" = 1 ]; then
  eppcpu=$(awk '{print $3}' "$WORK/epp-cpu.txt" | mean)
  awk -v wl="$WORKLOAD" -v c="$CONNS" -v a="$round_robin_rps" -v e="$epp_rps" -v n="$native_rps" \
      -v p50a="$round_robin_p50" -v p50e="$epp_p50" -v p50n="$native_p50" \
      -v p99a="$round_robin_p99" -v p99e="$epp_p99" -v p99n="$native_p99" \
      -v l50a="$round_robin_lp50" -v l50e="$epp_lp50" -v l50n="$native_lp50" \
      -v l99a="$round_robin_lp99" -v l99e="$epp_lp99" -v l99n="$native_lp99" \
      -v ca="$(cpu round-robin)" -v ce="$(cpu epp)" -v cn="$(cpu native)" -v ee="$eppcpu" 'BEGIN {
    printf "\nworkload %s: the out-of-process EPP (ext_proc) against the native picker\n", wl
    printf "| | plain Envoy (round robin) | Envoy + llm-d-router EPP (ext_proc) | Envoy + native picker |\n|---|---|---|---|\n"
    printf "| throughput (req/s, %d connections) | %.0f | %.0f (%.1f %%) | %.0f (%.1f %%) |\n", c, a, e, 100*e/a, n, 100*n/a
    printf "| CPU per request (µs): Envoy worker + EPP process | %.1f | %.1f + %.1f (%+.1f) | %.1f (%+.1f) |\n", ca, ce, ee, ce+ee-ca, cn, cn-ca
    printf "| latency p50 / p99, 1 connection (µs) | %.0f / %.0f | %.0f / %.0f (%+.0f / %+.0f) | %.0f / %.0f (%+.0f / %+.0f) |\n", p50a, p99a, p50e, p99e, p50e-p50a, p99e-p99a, p50n, p99n, p50n-p50a, p99n-p99a
    printf "| latency p50 / p99, %d connections (µs) | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f |\n", c, l50a, l99a, l50e, l99e, l50n, l99n
  }'
fi
if [ "${BENCH_DIRECT:-0}" = 1 ]; then
  scrape_cpu() { awk -v m="$1" '$1==m {split($4,a,"="); split($5,b,"="); print a[2]+b[2]}' "$WORK/cpu.txt" | mean; }
  awk -v a="$round_robin_rps" -v d="$native_direct_rps" -v n="${native_rps:-0}" -v p50a="$round_robin_p50" -v p50d="$native_direct_p50" \
      -v p50n="${native_p50:-0}" -v p99a="$round_robin_p99" -v p99d="$native_direct_p99" -v p99n="${native_p99:-0}" \
      -v ca="$(cpu round-robin)" -v cd="$(cpu native-direct)" -v cn="$(cpu native)" -v sn="$(scrape_cpu native)" -v sd="$(scrape_cpu native-direct)" 'BEGIN {
    printf "\nnative-direct: the native configuration with pool.scrape.transport \"direct\"\n"
    printf "| | plain Envoy (round robin) | + native picker (callouts) | + native picker (direct) |\n|---|---|---|---|\n"
    printf "| throughput (req/s) | %.0f | %.0f (%.1f %%) | %.0f (%.1f %%) |\n", a, n, 100*n/a, d, 100*d/a
    printf "| worker CPU per request (µs) | %.1f | %.1f (%+.1f) | %.1f (%+.1f) |\n", ca, cn, cn-ca, cd, cd-ca
    printf "| scraping CPU per request, main + scrape thread (µs) | 0 | %.2f | %.2f |\n", sn, sd
    printf "| latency p50, 1 connection (µs) | %.0f | %.0f (%+.0f) | %.0f (%+.0f) |\n", p50a, p50n, p50n-p50a, p50d, p50d-p50a
    printf "| latency p99, 1 connection (µs) | %.0f | %.0f (%+.0f) | %.0f (%+.0f) |\n", p99a, p99n, p99n-p99a, p99d, p99d-p99a
  }'
fi
