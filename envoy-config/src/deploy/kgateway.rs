//! kgateway v2.3+: no kgateway policy can attach a Wasm filter (TrafficPolicy, ListenerPolicy
//! and GatewayExtension have no such field in any release up to v2.4.3), so the picker runs in
//! a listener of its own inside the same Envoy, on loopback, and kgateway routes to it:
//!
//! ```text
//! client -> kgateway listener (kgateway's HTTPRoute + TrafficPolicies)
//!        -> Static Backend 127.0.0.1:18080 -> picker listener (endpoint-picker filter)
//!        -> llm_pool (STRICT_DNS over the headless Service, override_host) -> model server
//! ```
//!
//! The scraper, the picker listener and the pool cluster are a bootstrap overlay that
//! `GatewayParameters.spec.kube.envoyContainer.extraArgs: ["-c", overlay]` loads under
//! kgateway's own bootstrap (kgateway's `--config-yaml` is merged over it; lists are
//! concatenated). The picker's configuration is an ECDS file in a second ConfigMap that Envoy
//! watches: `kubectl apply` of a new pool list reaches the running proxy without a restart.

use std::net::SocketAddr;

use super::{bootstrap_addition, documents, gateway, http_route, indent, model_service};
use super::{module_mount, module_vm, module_volume, namespace, picker_json, DeployInput};
use crate::blocks::Module;
use crate::blocks::{override_host_policy, PICKER_ROOT_ID, WASM_FILTER_TYPE};
use crate::limits::Limits;
use crate::render::{listener, pool_cluster, AccessLog, VM_ID};
use crate::xds::{ecds_document, ECDS_FILE};

/// The picker listener's loopback address (the Static Backend points here).
pub const PICKER_LISTENER: &str = "127.0.0.1:18080";
/// The pool cluster in the overlay.
pub const POOL_CLUSTER: &str = "llm_pool";
/// Where the overlay ConfigMap is mounted.
pub const OVERLAY_DIR: &str = "/etc/llm-picker/overlay";
/// Where the ECDS ConfigMap is mounted (Envoy watches this directory).
pub const XDS_DIR: &str = "/etc/llm-picker/xds";

/// The headless Service whose DNS name lists every model server pod.
pub fn headless_service(input: &DeployInput) -> String {
    format!("{}-headless", input.service)
}

pub(super) fn render(input: &DeployInput) -> Result<String, String> {
    let ns = &input.namespace;
    let gw = &input.gateway;
    let image = &input.image;
    let prepared = picker_json(input, POOL_CLUSTER)?;
    let json = &prepared.json;
    let vm = module_vm(Some(VM_ID));
    let headless = headless_service(input);
    let listen: SocketAddr = PICKER_LISTENER
        .parse()
        .map_err(|_| "bad listener address")?;
    let filter = format!(
        r#"# The picker's configuration is the watched ECDS file: updating the ConfigMap reconfigures
# it in place, and the scraper follows the new pool.endpoints.
- name: {PICKER_ROOT_ID}
  config_discovery:
    config_source:
      path_config_source:
        path: {XDS_DIR}/{ECDS_FILE}
        watched_directory: {{ path: {XDS_DIR} }}
    type_urls: ["{WASM_FILTER_TYPE}"]
"#
    );
    let members = format!(
        r#"# Every pod behind the headless Service (pool.endpoints must list the same pod IPs).
type: STRICT_DNS
dns_lookup_family: V4_ONLY
connect_timeout: 1s
load_assignment:
  cluster_name: {POOL_CLUSTER}
  endpoints:
  - lb_endpoints:
    - endpoint: {{ address: {{ socket_address: {{ address: {headless}.{ns}.svc.cluster.local, port_value: {port} }} }} }}
"#,
        port = input.port,
    );
    let mut limits = Limits {
        extra_paths: super::parser_routes(input),
        ..Limits::default()
    };
    if super::h2c(input) {
        limits
            .extra_prefixes
            .push(crate::render::VLLM_GRPC_PREFIX.into());
    }
    let members = if super::h2c(input) {
        format!("{members}{}", crate::render::h2c_protocol_options())
    } else {
        members
    };
    let pool = pool_cluster(
        POOL_CLUSTER,
        &members,
        &override_host_policy("least_request"),
    );
    let overlay = format!(
        "{}  listeners:\n{}",
        bootstrap_addition(&Module::Wasm(vm.clone()), json, &pool),
        indent(
            &listener(
                "llm_picker",
                listen,
                prepared.buffer_limit,
                &filter,
                POOL_CLUSTER,
                &limits,
                &AccessLog::Stdout
            ),
            2
        ),
    );
    let overlay_map = format!(
        r#"# The bootstrap overlay: scraper, picker listener on loopback, pool cluster. Loaded with
# `envoy -c` under kgateway's bootstrap (only at proxy start).
apiVersion: v1
kind: ConfigMap
metadata:
  name: llm-picker-overlay
  namespace: {ns}
data:
  overlay.yaml: |
{overlay}"#,
        overlay = indent(&overlay, 4),
    );
    let xds_map = format!(
        r#"# The picker filter's configuration (ECDS), watched by Envoy: apply a new version (for example
# with more pool.endpoints) and the running proxy picks it up, no restart.
apiVersion: v1
kind: ConfigMap
metadata:
  name: llm-picker-xds
  namespace: {ns}
data:
  {ECDS_FILE}: |
{ecds}"#,
        ecds = indent(&ecds_document(&Module::Wasm(vm.clone()), json), 4),
    );
    let params = format!(
        r#"# kgateway's proxy with the overlay (kgateway 2.3+: extraArgs). The proxy image must be built
# on Envoy 1.40+ (body-based picking); kgateway 2.4 ships Envoy 1.38.
apiVersion: gateway.kgateway.dev/v1alpha1
kind: GatewayParameters
metadata:
  name: {gw}
  namespace: {ns}
spec:
  kube:
    envoyContainer:
      extraArgs: ["-c", "{OVERLAY_DIR}/overlay.yaml"]
      extraVolumeMounts:
      - name: llm-picker-overlay
        mountPath: {OVERLAY_DIR}
        readOnly: true
      - name: llm-picker-xds
        mountPath: {XDS_DIR}
        readOnly: true
{mount}    podTemplate:
      extraVolumes:
      - name: llm-picker-overlay
        configMap:
          name: llm-picker-overlay
      - name: llm-picker-xds
        configMap:
          name: llm-picker-xds
{volume}"#,
        mount = indent(&module_mount(), 6),
        volume = indent(&module_volume(image), 6),
    );
    let gateway = gateway(
        input,
        "kgateway",
        ("gateway.kgateway.dev", "GatewayParameters", gw),
    );
    let backend = format!(
        r#"# The picker listener inside the same proxy.
apiVersion: gateway.kgateway.dev/v1alpha1
kind: Backend
metadata:
  name: llm-picker-loopback
  namespace: {ns}
spec:
  type: Static
  static:
    hosts:
    - host: {host}
      port: {port}
"#,
        host = listen.ip(),
        port = listen.port(),
    );
    let route = http_route(
        input,
        "llm",
        "# kgateway policies (TrafficPolicy: timeouts, auth, rate limits...) attach to this route: the\n# outer hop. The picker decides on the inner one.\n",
        "- group: gateway.kgateway.dev\n  kind: Backend\n  name: llm-picker-loopback\n",
    );
    Ok(documents(
        "# Endpoint picker with kgateway v2.3+ (GatewayParameters overlay + Static Backend). Rendered by\n# `envoy-config deploy --gateway kgateway` from envoy-config/deploy/picker.json; re-render instead\n# of editing. See README.md.\n",
        &[
            namespace(input),
            overlay_map,
            xds_map,
            params,
            gateway,
            backend,
            route,
            model_service(input, &headless, true),
        ],
    ))
}
