#!/usr/bin/env bash
# Profile-guided build of the native module (`make native`): LLVM lays out and inlines the code
# by how often each branch ran in a training run, so a request's path through the picker is
# short, straight and packed into few cache lines. The picker's cost per request inside Envoy is
# mostly cache lines (BENCHMARKS.md, "Profile-guided build"), which is what this buys.
#
#   scripts/native-pgo.sh OUT.so
#
# 1. builds the module instrumented (-Cprofile-generate) in target/pgo-gen;
# 2. trains it: one Envoy 1.40 (2 workers) with the module and GIE's default profile in front of
#    16 fake-model-servers, wrk sending a mix of the request shapes the picker serves — chat with
#    a shared system prompt, every prompt new, streamed chat, completions, `GET /v1/models`;
#    Envoy writes the counters when it exits (the profiler runtime's exit hook);
# 3. merges them with the toolchain's llvm-profdata (rustup component `llvm-tools`, installed
#    here when missing) and builds the module again with -Cprofile-use in target/pgo-use.
#
# Any failure in 1–3 falls back to the plain build (printed loudly; exit 0), so a machine that
# cannot train still gets a working module. NATIVE_PGO=0 skips the training (the plain build).
# Needs: the release tools (fake-model-server, envoy-config), Envoy in .venv (make envoy), wrk
# (installed from Debian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/native-pgo.sh OUT.so}
CARGO=${CARGO:-cargo}
PKG=endpoint-picker-native-module
SECS=${PGO_SECONDS:-3}

plain() {
  $CARGO build --quiet --profile native -p $PKG
  cp target/native/libendpoint_picker.so "$OUT"
}
if [ "${NATIVE_PGO:-1}" = 0 ]; then plain; exit 0; fi

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
fallback() { echo "native-pgo: $1; building without a profile" >&2; plain; exit 0; }

SYSROOT=$(rustc --print sysroot)
PROFDATA="$SYSROOT/lib/rustlib/$(rustc -vV | awk '/^host:/ {print $2}')/bin/llvm-profdata"
[ -x "$PROFDATA" ] || rustup component add llvm-tools >/dev/null 2>&1 || true
[ -x "$PROFDATA" ] || fallback "no llvm-profdata in the toolchain (rustup component llvm-tools)"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } ||
  fallback "no wrk"

# 1. Instrumented build. Build scripts and proc macros are instrumented too and write their own
#    counters while cargo runs, so the directory is emptied before training.
RAW="$PWD/target/pgo-gen/profraw"
RUSTFLAGS="-Cprofile-generate=$RAW" $CARGO build --quiet --profile native -p $PKG --target-dir target/pgo-gen ||
  fallback "the instrumented build failed"
rm -rf "$RAW"; mkdir -p "$RAW"
mkdir -p "$WORK/modules"
cp target/pgo-gen/native/libendpoint_picker.so "$WORK/modules/"

# 2. Training.
$CARGO build --quiet --release -p e2e --bin fake-model-server
$CARGO build --quiet --release -p envoy-config --bin envoy-config
# shellcheck source=scripts/bench-load.sh
. scripts/bench-load.sh
BASE_PORT=${PGO_BASE_PORT:-18600}
LISTEN_PORT=$((BASE_PORT + 80))
ADMIN_PORT=$((BASE_PORT + 81))
start_fleet 16 "$BASE_PORT"
echo "{\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [$ENDPOINTS]}}" > "$WORK/picker.json"
target/release/envoy-config render --mode picker --native --access-log none --config "$WORK/picker.json" \
  --listen 127.0.0.1:$LISTEN_PORT --admin-port $ADMIN_PORT --out "$WORK/envoy.yaml"
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$WORK/modules" .venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency 2 \
  --disable-hot-restart --log-level warn >"$WORK/envoy.log" 2>&1 &
ENVOY=$!
PIDS+=($ENVOY)
for _ in $(seq 1 100); do curl -sf localhost:$ADMIN_PORT/ready >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf localhost:$ADMIN_PORT/ready >/dev/null || fallback "Envoy with the instrumented module did not start ($(tail -3 "$WORK/envoy.log"))"
sleep 1
# The mix: shares roughly as a chat fleet sees them (the workloads of scripts/bench-load.sh, plus
# streaming and completions, which those workloads do not send).
cat > "$WORK/mix.lua" <<'LUA'
local filler = string.rep("You are a helpful assistant for the billing team. ", 78)
local n = 0
request = function()
  n = n + 1
  local k = n % 10
  if k == 9 then return wrk.format("GET", "/v1/models") end
  local head = (k == 7) and (n .. " ") or ""
  local stream = (k == 5 or k == 6) and ',"stream":true,"stream_options":{"include_usage":true}' or ""
  if k == 8 then
    local body = '{"model":"meta-llama/Llama-3.1-8B-Instruct","max_tokens":16,"prompt":"' .. filler
      .. 'Question number ' .. n .. '"}'
    return wrk.format("POST", "/v1/completions", {["Content-Type"] = "application/json"}, body)
  end
  local body = '{"model":"meta-llama/Llama-3.1-8B-Instruct","max_tokens":16' .. stream
    .. ',"messages":[{"role":"system","content":"' .. head .. filler .. '"},{"role":"user","content":"Question number '
    .. n .. ': what is my balance?"}]}'
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, body)
end
LUA
wrk -t1 -c16 -d"${SECS}s" -s "$WORK/mix.lua" http://127.0.0.1:$LISTEN_PORT > "$WORK/wrk.txt" ||
  fallback "the training load failed"
wrk -t1 -c1 -d1s -s "$WORK/mix.lua" http://127.0.0.1:$LISTEN_PORT >> "$WORK/wrk.txt" || true
kill -TERM $ENVOY
wait $ENVOY 2>/dev/null || true
echo "native-pgo: trained on $(awk '/requests in/ {s += $1} END {print s}' "$WORK/wrk.txt") requests"

# 3. Merge, and the optimised build.
ls "$RAW"/*.profraw >/dev/null 2>&1 || fallback "Envoy wrote no profile"
"$PROFDATA" merge -o "$WORK/picker.profdata" "$RAW"/*.profraw || fallback "llvm-profdata merge failed"
mkdir -p target/pgo-use
cp "$WORK/picker.profdata" target/pgo-use/picker.profdata
RUSTFLAGS="-Cprofile-use=$PWD/target/pgo-use/picker.profdata" \
  $CARGO build --quiet --profile native -p $PKG --target-dir target/pgo-use 2>"$WORK/build.log" ||
  { cat "$WORK/build.log" >&2; fallback "the profile-guided build failed"; }
cp target/pgo-use/native/libendpoint_picker.so "$OUT"
echo "native-pgo: $OUT built with the profile"
