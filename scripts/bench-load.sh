# Shared by scripts/bench-envoy.sh and scripts/bench-envoy-instructions.sh (sourced, not run):
# the fleet of fake model servers and the wrk workloads both benchmarks send.
#
# start_fleet N BASE_PORT [command prefix...]: starts N fake-model-servers on BASE_PORT+1..N
#   (each PID appended to PIDS) and sets ENDPOINTS to their JSON list (no brackets).
# write_workload NAME FILE: writes the wrk script of workload NAME to FILE; ~4 KiB chat bodies:
#   distinct: a counter at the front, so every request has its own prefix (worst case for the
#             prefix index: 64 new blocks recorded per request);
#   shared:   one ~3.9 KiB system prompt, then a per-request question (typical chat traffic);
#   constant: the shared workload's body with one fixed question (every block already recorded);
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
    constant) front=''; back='"Question number 1: what is my balance?"' ;;
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

# Turns a native-picker render ($1, in place) into the floor under it: the same listener, routes
# and cluster (override_host on x-gateway-destination-endpoint), with the picker filter replaced
# by native/floor's filter (adds that header, valued $2, and does nothing else), no bootstrap
# scraper, and Envoy's round robin as the cluster's fallback balancer. Envoy must find
# libfloor_filter.so on $ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
floor_filter_yaml() {
  python3 - "$1" "$2" <<'PY'
import re, sys
path, value = sys.argv[1], sys.argv[2]
text = open(path).read()
def swap(pattern, replacement):
    global text
    text, n = re.subn(pattern, replacement, text, count=1, flags=re.S | re.M)
    if n != 1:
        sys.exit("floor_filter_yaml: %s not found in %s" % (pattern[:60], path))
# The scraper (a top-level block up to the next top-level key).
swap(r"^bootstrap_extensions:\n.*?(?=^[A-Za-z_])", "")
# The picker filter, up to the router.
swap(r"^( +)- name: envoy\.filters\.http\.dynamic_modules\n.*?(?=^\1- name: envoy\.filters\.http\.router)",
     lambda m: (
         f"{m.group(1)}- name: envoy.filters.http.dynamic_modules\n"
         f"{m.group(1)}  typed_config:\n"
         f"{m.group(1)}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\n"
         f"{m.group(1)}    dynamic_module_config: {{ name: floor_filter, do_not_close: true }}\n"
         f"{m.group(1)}    filter_name: floor\n"
         f"{m.group(1)}    filter_config: {{ \"@type\": type.googleapis.com/google.protobuf.StringValue, value: \"{value}\" }}\n"))
# The module's fallback balancer.
swap(r"^( +)name: envoy\.load_balancing_policies\.dynamic_modules\n.*?lb_policy_name: [\w-]+\n",
     lambda m: (
         f"{m.group(1)}name: envoy.load_balancing_policies.round_robin\n"
         f"{m.group(1)}typed_config:\n"
         f"{m.group(1)}  \"@type\": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin\n"))
open(path, "w").write(text)
PY
}

# "a,b,c": the addresses of an ENDPOINTS JSON list ({"address": "a"},...).
endpoint_list() {
  echo "$1" | grep -o '"address": "[^"]*"' | cut -d'"' -f4 | paste -sd, -
}
