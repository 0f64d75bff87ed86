# Shared by scripts/bench-envoy.sh and scripts/bench-envoy-instructions.sh (sourced, not run):
# the fleet of fake model servers and the wrk workloads both benchmarks send.
#
# start_fleet N BASE_PORT [command prefix...]: starts N fake-model-servers on BASE_PORT+1..N
#   (each PID appended to PIDS) and sets ENDPOINTS to their JSON list (no brackets).
# write_workload NAME FILE: writes the wrk script of workload NAME to FILE; ~4 KiB chat bodies:
#   distinct: a counter at the front, so every request has its own prefix (worst case for the
#             prefix index: 64 new blocks recorded per request);
#   shared:   one ~3.9 KiB system prompt, then a per-request question (typical chat traffic);
#   get:      GET /v1/models, no body (the filter's fixed per-request cost);
#   large:    a ~220 KB system prompt and a per-request question (GIE #2928's long-prompt case).

start_fleet() {
  local n=$1 base=$2 i port
  shift 2
  ENDPOINTS=""
  for i in $(seq 1 "$n"); do
    port=$((base + i))
    "$@" target/release/fake-model-server --listen 127.0.0.1:$port --name pod-$i >/dev/null 2>&1 &
    PIDS+=($!)
    ENDPOINTS+="{\"address\": \"127.0.0.1:$port\"},"
  done
  ENDPOINTS=${ENDPOINTS%,}
}

write_workload() {
  local front back repeat=78
  case "$1" in
    distinct) front='n .. " " ..'; back='"What is my balance?"' ;;
    shared)   front=''; back='"Question number " .. n .. ": what is my balance?"' ;;
    large)    front=''; back='"Question number " .. n .. ": what is my balance?"'; repeat=4400 ;;
    get) echo 'request = function() return wrk.format("GET", "/v1/models") end' > "$2"; return ;;
    *) echo "unknown BENCH_WORKLOAD $1" >&2; return 2 ;;
  esac
  cat > "$2" <<LUA
local filler = string.rep("You are a helpful assistant for the billing team. ", $repeat)
local n = 0
request = function()
  n = n + 1
  local body = '{"model":"meta-llama/Llama-3.1-8B-Instruct","max_tokens":16,"messages":[{"role":"system","content":"'
    .. $front filler .. '"},{"role":"user","content":' .. '"' .. $back .. '"' .. '}]}'
  return wrk.format("POST", "/v1/chat/completions", {["Content-Type"] = "application/json"}, body)
end
LUA
}

# Puts native/floor's dynamic-module filter (libfloor_filter.so: adds one request header, nothing
# else) in front of the router of a rendered Envoy config, in place ($1). Envoy must find the
# library on $ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
floor_filter_yaml() {
  python3 - "$1" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
router = "          - name: envoy.filters.http.router\n"
floor = ("          - name: envoy.filters.http.dynamic_modules\n"
         "            typed_config:\n"
         "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\n"
         "              dynamic_module_config: { name: floor_filter, do_not_close: true }\n"
         "              filter_name: floor\n")
if text.count(router) != 1:
    sys.exit("floor_filter_yaml: expected one router filter in " + path)
open(path, "w").write(text.replace(router, floor + router))
PY
}
