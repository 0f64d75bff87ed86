#!/usr/bin/env bash
# Installs the peers scripts/bench-peers.sh runs beside the picker, pinned, by name from their
# registries, into target/peers/ (bin/ and a Python venv). Idempotent; prints nothing when all
# are present. Arguments pick some: llm-d-inference-sim, epp, routers (default: all three).
#   - llm-d-router's EPP (the reference endpoint picker; GIE's EPP moved there in GIE v1.6) and
#     llm-d-inference-sim (llm-d's vLLM simulator): Go modules, `go install`.
#   - sglang-router and vllm-router: PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
LLMD_ROUTER=v0.10.0
# The module zip's SHA-256 as the Go module proxy served it on 2026-12-03 (used only when the
# proxy serves the zip but not the version's .info, so `go install` cannot resolve it).
LLMD_ROUTER_ZIP_SHA256=9524db96c27fb21544c0ab0cf68b0b5f4092a0a43f2ef0121583daa639181946
LLMD_SIM=v0.10.2
SGLANG_ROUTER=0.3.2
VLLM_ROUTER=0.1.17
PEERS=$PWD/target/peers
BIN=$PEERS/bin
mkdir -p "$BIN"
export GOBIN=$BIN GOFLAGS=-mod=mod
WANT=" ${*:-llm-d-inference-sim epp routers} "
wants() { [[ $WANT == *" $1 "* ]]; }

# A Go command at an exact version. `go install mod/cmd@v` first; a proxy that refuses the module's
# version list (seen here: the deprecation lookup gets 403) still serves the version itself, so
# then require it from a scratch module and install from there.
go_install() { # $1 module, $2 package path inside it, $3 version
  go install "$1/$2@$3" 2>/dev/null && return 0
  local scratch
  scratch=$(mktemp -d)
  (cd "$scratch" && go mod init peers.local/scratch >/dev/null 2>&1 &&
     go get "$1/$2@$3" >/dev/null 2>&1 && go install "$1/$2")
  local rc=$?
  rm -rf "$scratch"
  return $rc
}

if wants llm-d-inference-sim && [ ! -x "$BIN/llm-d-inference-sim" ]; then
  echo "installing llm-d-inference-sim $LLMD_SIM (go install; a few minutes)"
  go_install github.com/llm-d/llm-d-inference-sim cmd/llm-d-inference-sim "$LLMD_SIM"
fi

if wants epp && [ ! -x "$BIN/epp" ]; then
  echo "installing llm-d-router's EPP $LLMD_ROUTER (go install; a few minutes)"
  if ! go_install github.com/llm-d/llm-d-router cmd/epp "$LLMD_ROUTER"; then
    # The proxy here serves this module's zip but not its .info/.mod: build the zip, checked
    # against the pinned digest, with its own go.mod and go.sum.
    src=$(mktemp -d)
    proxy=$(go env GOPROXY); proxy=${proxy%%,*}
    curl -fsS -o "$src/m.zip" "${proxy:-https://proxy.golang.org}/github.com/llm-d/llm-d-router/@v/$LLMD_ROUTER.zip"
    echo "$LLMD_ROUTER_ZIP_SHA256  $src/m.zip" | sha256sum -c --quiet
    (cd "$src" && unzip -q m.zip && cd "github.com/llm-d/llm-d-router@$LLMD_ROUTER" &&
       CGO_ENABLED=0 go build -o "$BIN/epp" ./cmd/epp)
    rm -rf "$src"
  fi
fi

if wants routers && { [ ! -x "$PEERS/venv/bin/vllm-router" ] ||
   ! "$PEERS/venv/bin/python" -c 'import sglang_router' 2>/dev/null; }; then
  echo "installing sglang-router $SGLANG_ROUTER and vllm-router $VLLM_ROUTER (PyPI)"
  python3 -m venv "$PEERS/venv"
  "$PEERS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "sglang-router==$SGLANG_ROUTER" "vllm-router==$VLLM_ROUTER"
fi
