# Shared by scripts/bench-peers.sh and scripts/bench-replicas.sh (sourced, not run): picker JSON
# for GIE's default profile (queue-scorer 2, kv-cache-utilization-scorer 2, prefix-cache-scorer 3)
# plus extra scorers.
#
# default_profile_with POOL [TYPE:WEIGHT[:PARAMS]]...: prints the picker JSON with POOL (the
#   `"pool": {...}` member, as text) and each extra scorer TYPE at WEIGHT, with PARAMS (a JSON
#   object) as its parameters when given.
default_profile_with() {
  local pool=$1; shift
  local plugins='{"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer"}, {"type": "prefix-cache-scorer"}'
  local refs='{"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "kv-cache-utilization-scorer", "weight": 2}, {"pluginRef": "prefix-cache-scorer", "weight": 3}'
  local spec type rest weight params
  for spec in "$@"; do
    type=${spec%%:*} rest=${spec#*:}
    weight=${rest%%:*} params=""
    [ "$rest" != "$weight" ] && [ -n "${rest#*:}" ] && params=", \"parameters\": ${rest#*:}"
    plugins+=", {\"type\": \"$type\"$params}"
    refs+=", {\"pluginRef\": \"$type\", \"weight\": $weight}"
  done
  echo "{$pool, \"plugins\": [$plugins], \"schedulingProfiles\": [{\"name\": \"default\", \"plugins\": [$refs]}]}"
}
