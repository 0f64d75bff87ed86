#!/usr/bin/env bash
# Optional external check: GIE's benchmark tool, inference-perf, through the picker unchanged.
# Starts the quick start's fleet and Envoy (scripts/run.sh, RUN_* settings apply), builds a
# small tokenizer offline (no Hugging Face download), runs inference-perf's shared-prefix
# workload against Envoy and prints its request counts and latency summary.
#
#   PYTHON312=/path/to/python3.12 [IP_RATE=10] [IP_SECONDS=30] scripts/inference-perf.sh
#
# Needs Python >= 3.12 (inference-perf 0.7.0 requires it; Debian 12 ships 3.11: use pyenv,
# a container with 3.12, or a newer distribution). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON312:-$(command -v python3.12 || true)}
[ -n "$PY" ] || { echo "set PYTHON312 to a Python >= 3.12 interpreter" >&2; exit 2; }
RATE=${IP_RATE:-10}
SECS=${IP_SECONDS:-30}
PORT=${RUN_PORT:-8080}
VENV=.venv-inference-perf
WORK=$(mktemp -d)
RUN_PID=
cleanup() { [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

[ -x "$VENV/bin/inference-perf" ] || {
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check inference-perf==0.7.0
}

# A word-level tokenizer trained on a few lines of text: enough for inference-perf to generate
# prompts of exact token lengths (each token is a word, so decode-then-encode keeps the count)
# and to count tokens; nothing is downloaded.
"$VENV/bin/python" - "$WORK/tokenizer" <<'PYEOF'
import json, os, sys
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
text = [
    "the quick brown fox jumps over the lazy dog",
    "an endpoint picker routes each request to the model server with the best score",
    "prefix caching keeps the key value blocks of shared system prompts on one server",
] * 10
tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.train_from_iterator(text, trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
tok.save(os.path.join(out, "tokenizer.json"))
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>", "bos_token": "<s>",
           "eos_token": "</s>", "model_max_length": 131072}, open(os.path.join(out, "tokenizer_config.json"), "w"))
PYEOF

scripts/run.sh >"$WORK/run.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 600); do grep -q "Ctrl-C stops" "$WORK/run.log" 2>/dev/null && break; sleep 1; done
grep -q "Ctrl-C stops" "$WORK/run.log" || { cat "$WORK/run.log"; exit 1; }

cat >"$WORK/config.yml" <<YAML
load:
  type: constant
  stages:
  - rate: $RATE
    duration: $SECS
api:
  type: chat
  streaming: true
server:
  type: vllm
  model_name: meta-llama/Llama-3.1-8B-Instruct
  base_url: http://127.0.0.1:$PORT
  ignore_eos: true
tokenizer:
  pretrained_model_name_or_path: $WORK/tokenizer
data:
  type: shared_prefix
  shared_prefix:
    num_groups: 8
    num_prompts_per_group: 16
    system_prompt_len: 600
    question_len: 40
    output_len: 32
report:
  request_lifecycle:
    summary: true
storage:
  local_storage:
    path: $WORK/reports
YAML
(cd "$WORK" && HF_HUB_OFFLINE=1 "$ROOT/$VENV/bin/inference-perf" --config_file config.yml) | tail -20
summary=$(find "$WORK/reports" -name 'summary_lifecycle_metrics.json' | head -1)
"$VENV/bin/python" - "$summary" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
ok, fail = s["successes"]["count"], s["failures"]["count"]
lat = s["successes"]["latency"]
print(f"inference-perf through the picker: {ok} requests succeeded, {fail} failed; "
      f"TTFT p50 {lat['time_to_first_token']['median']:.3f} s, p90 {lat['time_to_first_token']['p90']:.3f} s")
sys.exit(1 if fail or not ok else 0)
PYEOF
