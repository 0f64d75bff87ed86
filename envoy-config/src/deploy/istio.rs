//! Istio 1.30+ with a Gateway API gateway: the scraper through a bootstrap override
//! (`ISTIO_BOOTSTRAP_OVERRIDE`, set on the gateway Deployment by the options ConfigMap that
//! `Gateway.spec.infrastructure.parametersRef` names), and one EnvoyFilter that adds the picker
//! filter (EXTENSION_CONFIG, delivered by ECDS, + HTTP_FILTER before the router) and makes the
//! Service's cluster honour the destination header (CLUSTER patch: `override_host`).
//!
//! With `filter_only` there is no override at all: the picker filter scrapes the pool itself
//! through the Service's cluster, and the options ConfigMap only mounts the module.
//!
//! Why not WasmPlugin: it cannot set `allow_on_headers_stop_iteration`, so the picker would never
//! see the body (the `model` field, the prompt). EnvoyFilter `applyTo: BOOTSTRAP` has not worked
//! since Istio 1.21, hence the override file. Never route to an InferencePool from this module:
//! Istio's InferencePool clusters read the destination from dynamic metadata, which a Wasm
//! filter cannot write.

use super::DeployInput;
use super::MODULE_DIR;
use super::{bootstrap_addition, documents, gateway, http_route, indent, model_service};
use super::{module_mount, module_vm, module_volume, namespace, picker_json, service_backend};
use super::{tokenizer_mount, tokenizer_volume};
use crate::blocks::{
    override_host_policy, override_host_policy_native, Module, NATIVE_MODULE_NAME, PICKER_ROOT_ID,
};
use crate::limits::Limits;
use crate::render::VM_ID;

/// Where the bootstrap override is mounted in the gateway pod.
pub const OVERRIDE_DIR: &str = "/etc/llm-picker/bootstrap";
/// The override file's name in its ConfigMap.
pub const OVERRIDE_FILE: &str = "custom_bootstrap.yaml";

/// The ECDS name of the picker filter.
pub fn filter_name(namespace: &str) -> String {
    format!("{namespace}.{PICKER_ROOT_ID}")
}

/// The cluster Istio builds for the Service.
pub fn service_cluster(input: &DeployInput) -> String {
    format!(
        "outbound|{}||{}.{}.svc.cluster.local",
        input.port, input.service, input.namespace
    )
}

pub(super) fn render(input: &DeployInput) -> Result<String, String> {
    // The filter comes from our EnvoyFilter, so we choose the vm_id; the scraper uses the same.
    render_module(input, &Module::Wasm(module_vm(Some(VM_ID))))
}

/// The same set with the native module: `libendpoint_picker.so` from its OCI image (image
/// volume), found by name through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` by both the bootstrap
/// scraper and the filter, so they share the library's memory. The Service cluster's fallback
/// balancer is the module's `pool-membership` policy and the picker JSON lists no endpoints: the
/// pool is the Service's endpoints as istiod pushes them (EDS).
pub(super) fn render_native(input: &DeployInput) -> Result<String, String> {
    let mut input = input.clone();
    if let Some(pool) = input
        .picker
        .get_mut("pool")
        .and_then(serde_json::Value::as_object_mut)
    {
        pool.remove("endpoints");
    }
    render_module(&input, &Module::Native(NATIVE_MODULE_NAME.into()))
}

fn render_module(input: &DeployInput, module: &Module) -> Result<String, String> {
    let ns = &input.namespace;
    let gw = &input.gateway;
    let image = &input.image;
    let prepared = picker_json(input, &service_cluster(input))?;
    let json = &prepared.json;
    let native = matches!(module, Module::Native(_));
    let search_path = if native {
        format!(
            "# Where Envoy finds lib{NATIVE_MODULE_NAME}.so by name.\n- name: ENVOY_DYNAMIC_MODULES_SEARCH_PATH\n  value: {MODULE_DIR}\n"
        )
    } else {
        String::new()
    };
    let filter = filter_name(ns);
    let host = format!("{}.{ns}.svc.cluster.local", input.service);

    let (override_map, override_env, override_mount, override_volume) = if input.filter_only {
        (None, String::new(), String::new(), String::new())
    } else {
        let bootstrap = bootstrap_addition(module, json, "");
        (
            Some(format!(
                r#"# The scraper: merged into the gateway's bootstrap (Envoy --config-yaml) at start-up.
apiVersion: v1
kind: ConfigMap
metadata:
  name: llm-picker-bootstrap
  namespace: {ns}
data:
  {OVERRIDE_FILE}: |
{bootstrap}"#,
                bootstrap = indent(&bootstrap, 4),
            )),
            format!("- name: ISTIO_BOOTSTRAP_OVERRIDE\n  value: {OVERRIDE_DIR}/{OVERRIDE_FILE}\n"),
            format!(
                "- name: llm-picker-bootstrap\n  mountPath: {OVERRIDE_DIR}\n  readOnly: true\n"
            ),
            "- name: llm-picker-bootstrap\n  configMap:\n    name: llm-picker-bootstrap\n"
                .to_string(),
        )
    };
    let env = format!("{override_env}{search_path}");
    let env = if env.is_empty() {
        String::new()
    } else {
        format!("env:\n{env}")
    };
    let options = format!(
        r#"# Gateway deployment options (strategic merge into the istio-proxy container): {what}module, mounted from its OCI image (an image volume, Kubernetes 1.33+).
apiVersion: v1
kind: ConfigMap
metadata:
  name: {gw}-options
  namespace: {ns}
data:
  deployment: |
    spec:
      template:
        spec:
          containers:
          - name: istio-proxy
{env}            volumeMounts:
{override_mount}{mount}          volumes:
{override_volume}{volume}"#,
        what = if input.filter_only {
            "the\n# "
        } else {
            "the bootstrap\n# override and the "
        },
        env = indent(&env, 12),
        override_mount = indent(&override_mount, 12),
        override_volume = indent(&override_volume, 10),
        mount = indent(&format!("{}{}", module_mount(), tokenizer_mount(input)), 12),
        volume = indent(
            &format!("{}{}", module_volume(image), tokenizer_volume(input)),
            10
        ),
    );
    let gateway = gateway(
        input,
        "istio",
        ("\"\"", "ConfigMap", &format!("{gw}-options")),
    );
    let route = http_route(
        input,
        "llm",
        "# A plain Service backend, never an InferencePool (see README.md).\n",
        &service_backend(input),
    );
    let envoy_filter = format!(
        r#"# The picker filter and the cluster that honours its header. Editing the picker JSON here
# reconfigures the filter through ECDS without a restart; the scraper follows the new
# pool.endpoints.
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: llm-picker
  namespace: {ns}
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: {gw}
  configPatches:
  - applyTo: EXTENSION_CONFIG
    patch:
      operation: ADD
      value:
        name: {filter}
        typed_config:
{typed}  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: {filter}
        config_discovery:
          config_source:
            ads: {{}}
          type_urls:
          - {type_url}
  - applyTo: CLUSTER
    match:
      context: GATEWAY
      cluster:
        service: {host}
        portNumber: {port}
    patch:
      operation: MERGE
      value:
        lb_policy: CLUSTER_PROVIDED
{lb}  # Buffer bodies up to above the picker's bodyLimitBytes, so long prompts reach it.
  - applyTo: LISTENER
    match:
      context: GATEWAY
    patch:
      operation: MERGE
      value:
        per_connection_buffer_limit_bytes: {buffer_limit}
  # The picker buffers bodies: a client must send its headers and its whole request in time.
  - applyTo: NETWORK_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
{timeouts}"#,
        timeouts = indent(&Limits::default().hcm_timeouts(), 10),
        typed = indent(&module.filter_typed_config(json), 10),
        type_url = module.filter_type_url(),
        lb = indent(
            &match module {
                Module::Native(name) => override_host_policy_native(name),
                Module::Wasm(_) => override_host_policy("least_request"),
            },
            8
        ),
        port = input.port,
        buffer_limit = prepared.buffer_limit,
    );
    let flag = if input.filter_only {
        " --filter-only"
    } else {
        ""
    };
    let header = if native {
        format!("# Endpoint picker (native module) on Istio 1.30+ (Gateway API). Rendered by `envoy-config deploy --gateway istio-native{flag}`\n# from envoy-config/deploy/picker.json; re-render instead of editing. See README.md.\n")
    } else {
        format!("# Endpoint picker on Istio 1.30+ (Gateway API). Rendered by `envoy-config deploy --gateway istio{flag}`\n# from envoy-config/deploy/picker.json; re-render instead of editing. See README.md.\n")
    };
    let mut docs = vec![namespace(input)];
    docs.extend(override_map);
    docs.extend([
        options,
        gateway,
        route,
        model_service(input, &input.service, false),
        envoy_filter,
    ]);
    Ok(documents(&header, &docs))
}
