#!/usr/bin/env bash
# The dashboard as a picture of real data: 4 simulated model servers (model-sim), Envoy 1.40
# with the native picker (4 workers), Debian's Prometheus scraping Envoy with the committed
# dashboards/ configuration, the demo's shared-prefix workload for SNAP_SECONDS and one
# malformed request a second (for the error panels). Then
# scripts/dashboard_snapshot.py runs every panel query of dashboards/endpoint-picker.json over
# the run against that Prometheus and draws docs/dashboard.svg (matplotlib in .venv), and
# checks that every expression of GIE's dashboard in dashboards/gie-v1.5.0-queries.txt (the
# model servers' vllm:* series included: Prometheus scrapes them too) returns series.
#
#   [SNAP_SECONDS=90] [SNAP_QPS=20] scripts/dashboard-snapshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SNAP_SECONDS:-90}
QPS=${SNAP_QPS:-20}
N=4
BASE=${SNAP_BASE_PORT:-18700}
LISTEN=$((BASE + 80)); ADMIN=$((BASE + 81)); PROM=$((BASE + 82))
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

make -s native envoy prometheus >/dev/null
cargo build -q --release -p model-sim -p loadgen -p envoy-config
.venv/bin/pip install --quiet --disable-pip-version-check matplotlib==3.11.2

endpoints=""; metrics=""
for i in $(seq 1 $N); do
  target/release/model-sim --listen 127.0.0.1:$((BASE + i)) --name sim-$i \
    --num-gpu-blocks 1000 --max-num-seqs 64 --max-num-batched-tokens 4096 >/dev/null 2>&1 &
  PIDS+=($!)
  endpoints+="{\"address\": \"127.0.0.1:$((BASE + i))\"},"
  metrics+="http://127.0.0.1:$((BASE + i))/metrics,"
done
echo "{\"pool\": {\"cluster\": \"inference_pool\", \"endpoints\": [${endpoints%,}]}}" > "$WORK/picker.json"
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$ROOT/dist"
target/release/envoy-config render --native --config "$WORK/picker.json" \
  --listen 127.0.0.1:$LISTEN --admin-port $ADMIN --out "$WORK/envoy.yaml"
.venv/bin/envoy -c "$WORK/envoy.yaml" --concurrency 4 --disable-hot-restart --log-level warn \
  >"$WORK/envoy.log" 2>&1 &
PIDS+=($!)
# The committed scrape configuration, pointed at this Envoy and sped up.
sed -e "s/127.0.0.1:9901/127.0.0.1:$ADMIN/" -e 's/scrape_interval: 15s/scrape_interval: 2s/' \
    -e 's/evaluation_interval: 15s/evaluation_interval: 2s/' \
    -e "s|- recording-rules.yaml|- $ROOT/dashboards/recording-rules.yaml|" \
    -e "s|- alerts.yaml|- $ROOT/dashboards/alerts.yaml|" \
    dashboards/prometheus-scrape.yaml > "$WORK/prometheus.yml"
# The model servers' own pages too: GIE's dashboard reads vLLM's series beside the picker's.
targets=""
for i in $(seq 1 $N); do targets+="\"127.0.0.1:$((BASE + i))\","; done
cat >> "$WORK/prometheus.yml" <<YAML
- job_name: model-servers
  static_configs:
  - targets: [${targets%,}]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address=127.0.0.1:$PROM >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf localhost:$ADMIN/ready >/dev/null 2>&1 && curl -sf localhost:$PROM/-/ready >/dev/null 2>&1 && break; sleep 0.2; done

start=$(date +%s)
# One malformed request a second beside the load, so the error panels have something to show.
( while sleep 1; do curl -s -o /dev/null "127.0.0.1:$LISTEN/v1/completions" \
    -H 'content-type: application/json' -d '{not json'; done ) &
PIDS+=($!)
target/release/loadgen run --target "http://127.0.0.1:$LISTEN" --workload shared-prefix --groups 16 \
  --prompts-per-group 32 --system-tokens 1200 --question-tokens 60 --output-tokens 32 \
  --qps "$QPS" --duration "$SECS" --seed 7 --label picker --sim-metrics "${metrics%,}" \
  --json "$WORK/load.json"
sleep 6   # the last flush, scrape and rule evaluation
end=$(date +%s)
.venv/bin/python scripts/dashboard_snapshot.py --prometheus "http://127.0.0.1:$PROM" \
  --dashboard dashboards/endpoint-picker.json --start "$start" --end "$end" --out docs/dashboard.svg \
  --check dashboards/gie-v1.5.0-queries.txt ${SNAP_PNG:+--png "$SNAP_PNG"}
