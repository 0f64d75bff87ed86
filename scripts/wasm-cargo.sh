#!/usr/bin/env bash
# Runs `cargo <args>` for wasm32-unknown-unknown with whatever toolchain can build it here.
#
# 1. rustup with the wasm32-unknown-unknown target installed (most machines): plain cargo.
# 2. Otherwise Debian's rustc-web/cargo-web/rust-web-src/lld (rustc 1.96 with matching std
#    sources): std is rebuilt from source with -Zbuild-std, RUSTC_BOOTSTRAP=1 unlocks that flag
#    on the stable compiler, and lld's wasm-ld links. The packages are installed on first use
#    (needs root and the Debian mirror), because rustup cannot download the wasm32 std here.
set -euo pipefail

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  exec cargo "$@" --target wasm32-unknown-unknown
fi

need=()
[ -x /usr/bin/rustc ] && /usr/bin/rustc --version 2>/dev/null | grep -q . || need+=(rustc-web)
[ -x /usr/bin/cargo ] || need+=(cargo-web)
[ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
command -v wasm-ld >/dev/null 2>&1 || need+=(lld)
if [ ${#need[@]} -gt 0 ]; then
  echo "wasm-cargo: installing ${need[*]} from Debian (rustup has no wasm32 target here)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq rustc-web cargo-web rust-web-src lld >&2
fi

export RUSTC=/usr/bin/rustc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
# Debian's cargo and rustup's cargo must not share artefacts (different rustc versions).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/wasm-debian}"
exec /usr/bin/cargo "$@" --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
