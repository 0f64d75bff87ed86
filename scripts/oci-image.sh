#!/usr/bin/env bash
# Packs the module into an OCI image layout, reproducibly, with umoci (Debian package).
#
#   scripts/oci-image.sh dist/endpoint_picker.wasm dist/oci v0.1.0
#   scripts/oci-image.sh dist/libendpoint_picker.so dist/oci-native v0.1.0 libendpoint_picker.so
#
# The layout is the Wasm OCI "compat" variant that Envoy Gateway's and Istio's image fetchers
# read and a Kubernetes image volume mounts: one image manifest, one
# application/vnd.oci.image.layer.v1.tar+gzip layer holding a single file, /plugin.wasm (or, for
# the native module, /libendpoint_picker.so: the fourth argument names the file).
# Reproducible: the file's mtime, owner and mode, the config's `created` and the history entry
# are fixed, so the same module always gives the same digest. Prints the manifest digest.
# Push it with e.g. `skopeo copy oci:dist/oci:v0.1.0 docker://registry.example.com/...:v0.1.0`.
set -euo pipefail

wasm=${1:?module .wasm or .so}
out=${2:?output layout directory}
tag=${3:-latest}
file=${4:-plugin.wasm}
case "$file" in *.so) title=endpoint-picker-native ;; *) title=endpoint-picker-wasm ;; esac
epoch=1970-01-01T00:00:00Z

if ! command -v umoci >/dev/null 2>&1; then
  echo "oci-image: installing umoci from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq umoci >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci config --no-history --image "$out:$tag" --created "$epoch" --os linux --architecture amd64 \
  --author "endpoint-picker" --config.label org.opencontainers.image.title=$title
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
install -m 0644 "$wasm" "$work/bundle/rootfs/$file"
touch -h -d "@0" "$work/bundle/rootfs/$file" "$work/bundle/rootfs"
umoci repack --image "$out:$tag" --history.created "$epoch" \
  --history.created_by "scripts/oci-image.sh ($file)" "$work/bundle"
umoci gc --layout "$out"
python3 - "$out" "$tag" <<'PY'
import json, sys
index = json.load(open(f"{sys.argv[1]}/index.json"))
m = [d for d in index["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]]
print(f"{sys.argv[1]}:{sys.argv[2]} {m[0]['digest']}")
PY
