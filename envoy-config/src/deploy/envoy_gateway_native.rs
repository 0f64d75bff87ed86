//! Envoy Gateway v1.8+ with the native module: the `.so` comes from its OCI image as an image
//! volume and is registered in the EnvoyProxy's `dynamicModules` allowlist; the picker filter is
//! an EnvoyExtensionPolicy `dynamicModule` entry; the scraper, which no Envoy Gateway API can
//! add, goes in through the bootstrap merge, as for the Wasm build.
//!
//! The coupling to know: the filter Envoy Gateway configures (from the allowlist entry's local
//! path) and the bootstrap scraper (loaded by name through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`)
//! must resolve to the same file, so Envoy maps the library once and both share its memory (the
//! snapshot the scraper publishes is what the filter reads). Both point at
//! `/opt/llm-picker/libendpoint_picker.so` here. There is no vm_id to keep in step.
//!
//! The pool is the route's cluster: the BackendTrafficPolicy sets the load balancer to the
//! module's `pool-membership` policy (`loadBalancer.type: DynamicModule`, Envoy Gateway v1.9) under
//! `endpointOverride`, and the picker JSON carries no `pool.endpoints`, so the picker follows the
//! Service's endpoints as Envoy Gateway pushes them (EDS): scaling the model servers needs no
//! re-render, and there are no pod IPs in the manifests.

use super::envoy_gateway::{
    eg_documents, patch_policy, route_cluster, traffic_policy_with, ENVOY_IMAGE, ROUTE,
};
use super::DeployInput;
use super::{bootstrap_addition, indent};
use super::{
    module_mount, module_volume, picker_json, tokenizer_mount, tokenizer_volume, MODULE_DIR,
};
use crate::blocks::{Module, NATIVE_MODULE_NAME, PICKER_ROOT_ID, POOL_MEMBERSHIP_POLICY};

/// Name of the EnvoyExtensionPolicy.
pub const POLICY: &str = "llm-picker";
/// The logical module name in the EnvoyProxy allowlist.
pub const MODULE: &str = "endpoint-picker";

pub(super) fn render(input: &DeployInput) -> Result<String, String> {
    let ns = &input.namespace;
    let gw = &input.gateway;
    let image = &input.image;
    // The pool follows the route's cluster (EDS): the JSON lists no endpoints.
    let mut input = input.clone();
    if let Some(pool) = input
        .picker
        .get_mut("pool")
        .and_then(serde_json::Value::as_object_mut)
    {
        pool.remove("endpoints");
    }
    let input = &input;
    let prepared = picker_json(input, &route_cluster(ns))?;
    let json = &prepared.json;
    let buffer_limit = prepared.buffer_limit;
    let listener = format!("{ns}/{gw}/http");
    let picker: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let config_yaml = serde_json::to_string_pretty(&picker).map_err(|e| e.to_string())?;

    let (proxy_comment, env, bootstrap) = if input.filter_only {
        (
            "# The proxy: Envoy 1.40 and the native module mounted from its OCI image, registered for\n\
             # EnvoyExtensionPolicies. Filter-only mode: no bootstrap change; the filter configuration\n\
             # scrapes the pool itself, through the route's cluster.\n",
            String::new(),
            String::new(),
        )
    } else {
        let bootstrap = bootstrap_addition(&Module::Native(NATIVE_MODULE_NAME.into()), json, "");
        (
            "# The proxy: Envoy 1.40, the native module mounted from its OCI image, registered for\n\
             # EnvoyExtensionPolicies, and the scraper in the bootstrap.\n",
            format!(
                "env:\n# Where the bootstrap scraper finds lib{NATIVE_MODULE_NAME}.so by name.\n- name: ENVOY_DYNAMIC_MODULES_SEARCH_PATH\n  value: {MODULE_DIR}\n"
            ),
            format!(
                "  bootstrap:\n    type: Merge\n    value: |\n{}",
                indent(&bootstrap, 6)
            ),
        )
    };
    let proxy = format!(
        r#"{proxy_comment}apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata:
  name: llm-proxy
  namespace: {ns}
spec:
  dynamicModules:
  - name: {MODULE}
    # Keep the library mapped: the scraper and every worker's filter share its memory.
    doNotClose: true
    source:
      type: Local
      local:
        path: {MODULE_DIR}/lib{NATIVE_MODULE_NAME}.so
  provider:
    type: Kubernetes
    kubernetes:
      envoyDeployment:
        container:
          image: {ENVOY_IMAGE}
{env}          volumeMounts:
{mount}        pod:
          volumes:
          # An image volume (Kubernetes 1.33+): the OCI image `make oci` builds in dist/oci-native,
          # one file libendpoint_picker.so.
{volume}{bootstrap}"#,
        env = indent(&env, 10),
        mount = indent(&format!("{}{}", module_mount(), tokenizer_mount(input)), 10),
        volume = indent(
            &format!("{}{}", module_volume(image), tokenizer_volume(input)),
            10
        ),
    );
    let extension = format!(
        r#"# The picker filter on the route: the module's `{PICKER_ROOT_ID}` filter with the picker JSON.
# Editing `config` reconfigures it through xDS, without a restart. No pool.endpoints: the pool is
# the route's Service endpoints, reported by the module's load balancer.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata:
  name: {POLICY}
  namespace: {ns}
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: {ROUTE}
  dynamicModule:
  - name: {MODULE}
    filterName: {PICKER_ROOT_ID}
    config:
{config}"#,
        config = indent(&config_yaml, 6),
    );
    let patch = patch_policy(
        input,
        &listener,
        "# Buffer long prompts (Envoy Gateway's default listener limit is 32 KiB) and bound how long a\n\
         # client may take to send its request. Requires `extensionApis.enableEnvoyPatchPolicy: true`.\n",
        "",
        buffer_limit,
    );
    let header = format!(
        "# Endpoint picker (native module) on Envoy Gateway v1.8+. Rendered by `envoy-config deploy --gateway envoy-gateway-native{}`\n# from envoy-config/deploy/picker.json; re-render instead of editing. See README.md.\n",
        if input.filter_only { " --filter-only" } else { "" }
    );
    Ok(eg_documents(
        &header,
        input,
        proxy,
        extension,
        traffic_policy_with(
            input,
            "# Send each request to the endpoint the picker wrote in {DESTINATION_HEADER} (Envoy's\n\
             # override_host load balancer) among the route's Service endpoints. Under it, the module's\n\
             # pool-membership balancer reports those endpoints to the picker (the pool follows EDS) and\n\
             # round-robins requests without the header (FailOpen). Retries go to another endpoint.\n",
            &format!(
                "type: DynamicModule\ndynamicModule:\n  name: {MODULE}\n  lbPolicyName: {POOL_MEMBERSHIP_POLICY}\n"
            ),
        ),
        patch,
    ))
}
