//! Kubernetes manifests for the gateways people run Envoy under: Envoy Gateway (the reference
//! target), Istio and kgateway. Each set is rendered from one picker JSON with the same
//! snippets as plain Envoy's `envoy.yaml` ([`crate::blocks`]), so a manifest cannot drift from
//! what the end-to-end tests run. The committed sets live in `envoy-config/deploy/<gateway>/`
//! and a test keeps them equal to this renderer's output.
//!
//! What differs per gateway is only where each piece is attached (see
//! `docs/SOURCES.md#gateway-attach`, and each set's README):
//!
//! | piece | Envoy Gateway | Istio | kgateway |
//! |---|---|---|---|
//! | scraper (bootstrap) | `EnvoyProxy.spec.bootstrap` Merge | `ISTIO_BOOTSTRAP_OVERRIDE` ConfigMap | `GatewayParameters` `extraArgs: [-c, overlay]` |
//! | picker filter | `EnvoyExtensionPolicy.wasm[]` + `EnvoyPatchPolicy` | `EnvoyFilter` EXTENSION_CONFIG + HTTP_FILTER | overlay listener on loopback, ECDS from a ConfigMap |
//! | honour the header | `BackendTrafficPolicy.loadBalancer.endpointOverride` | `EnvoyFilter` CLUSTER patch | overlay cluster |
//! | shared vm_id | EG's derived `envoyextensionpolicy/<ns>/<name>/wasm/0` | ours (`endpoint-picker`) | ours |

mod envoy_gateway;
mod envoy_gateway_native;
mod istio;
mod kgateway;

use serde_json::Value;

use crate::blocks::{indent, Code, Module, Vm};
use crate::limits::{Limits, INFERENCE_PATHS, INFERENCE_PREFIXES};
use crate::render::{metrics_cluster, prepare, Prepared, METRICS_CLUSTER};

/// Where the module's OCI image is mounted in the proxy pod (a Kubernetes image volume).
pub const MODULE_DIR: &str = "/opt/llm-picker";
/// The module's file inside the image (the Wasm OCI "compat" layout: one layer, one file).
pub const MODULE_FILE: &str = "/opt/llm-picker/plugin.wasm";

/// Where a tokenizer's OCI image is mounted in the proxy pod (`--tokenizer-image`): the
/// directory `token-producer`'s `tokenizerPath` names (`tokenizer.json`, `tokenizer_config.json`).
pub const TOKENIZER_DIR: &str = "/opt/llm-tokenizer";

/// A gateway to render manifests for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gateway {
    /// Envoy Gateway v1.9+.
    EnvoyGateway,
    /// Istio 1.30+ (Gateway API gateways).
    Istio,
    /// kgateway v2.3+ (`GatewayParameters.extraArgs`).
    Kgateway,
    /// Envoy Gateway v1.8+ with the native module (`dynamicModules`).
    EnvoyGatewayNative,
    /// Istio 1.30+ with the native module (EnvoyFilter, the `.so` from an image volume).
    IstioNative,
}

impl Gateway {
    /// Every gateway, in documentation order.
    pub const ALL: [Gateway; 5] = [
        Gateway::EnvoyGateway,
        Gateway::Istio,
        Gateway::Kgateway,
        Gateway::EnvoyGatewayNative,
        Gateway::IstioNative,
    ];

    /// The CLI and directory name (`envoy-gateway`, `istio`, `kgateway`).
    pub fn name(self) -> &'static str {
        match self {
            Gateway::EnvoyGateway => "envoy-gateway",
            Gateway::Istio => "istio",
            Gateway::Kgateway => "kgateway",
            Gateway::EnvoyGatewayNative => "envoy-gateway-native",
            Gateway::IstioNative => "istio-native",
        }
    }

    /// Parses [`Self::name`].
    ///
    /// # Errors
    /// The list of known names.
    pub fn parse(s: &str) -> Result<Gateway, String> {
        Gateway::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown gateway '{s}' (envoy-gateway, istio, kgateway, envoy-gateway-native, istio-native)"
                )
            })
    }
}

/// The gateways with a filter-only set (`--filter-only`): every one but kgateway.
pub const FILTER_ONLY: [Gateway; 4] = [
    Gateway::EnvoyGateway,
    Gateway::Istio,
    Gateway::EnvoyGatewayNative,
    Gateway::IstioNative,
];

/// What to render.
#[derive(Clone, Debug)]
pub struct DeployInput {
    /// The picker JSON; `pool.endpoints` are the model server pods (`podIP:port`).
    pub picker: Value,
    /// Namespace of every namespaced resource.
    pub namespace: String,
    /// Name of the Gateway.
    pub gateway: String,
    /// Name of the model servers' Service.
    pub service: String,
    /// The model servers' port.
    pub port: u16,
    /// OCI image holding `plugin.wasm` (`make oci` builds it).
    pub image: String,
    /// Filter-only mode: no bootstrap change at all. The picker filter runs the metrics scraper
    /// itself (Wasm: the standby scraper in each worker's VM, one elected through the shared-data
    /// lease; native: the filter configuration's scraper), and scrapes go through the serving
    /// cluster, whose `override_host` policy already honours the destination header. Refused
    /// for endpoints whose metrics port differs from the serving port (that needs the
    /// bootstrap's ORIGINAL_DST scrape cluster). What the bootstrap also carried and is then
    /// left to the gateway: the overload manager's limits and the Wasm stats' tag extraction.
    pub filter_only: bool,
    /// OCI image holding the model's `tokenizer.json` and `tokenizer_config.json` at its root
    /// (native sets only; the precise prefix cache tokenises in the proxy): mounted at
    /// [`TOKENIZER_DIR`], and every `token-producer` (or `tokenizer`) plugin without a
    /// `tokenizerPath` is pointed there.
    pub tokenizer_image: Option<String>,
}

impl DeployInput {
    /// The documented example: namespace `llm`, Gateway `llm-gw`, Service `vllm` on 8000.
    pub fn example(picker: Value, image: &str) -> DeployInput {
        DeployInput {
            picker,
            namespace: "llm".into(),
            gateway: "llm-gw".into(),
            service: "vllm".into(),
            port: 8000,
            image: image.into(),
            filter_only: false,
            tokenizer_image: None,
        }
    }
}

/// Renders the manifests of `gateway` (one multi-document YAML file).
///
/// # Errors
/// The module's configuration error text for an invalid picker JSON; a tokenizer image for a
/// Wasm set, or for a picker JSON with no `token-producer`.
pub fn render(gateway: Gateway, input: &DeployInput) -> Result<String, String> {
    let native = matches!(gateway, Gateway::EnvoyGatewayNative | Gateway::IstioNative);
    if input.tokenizer_image.is_some() && !native {
        return Err(format!(
            "--tokenizer-image: only the native module tokenises in the proxy (precise prefix cache); render envoy-gateway-native or istio-native instead of {}",
            gateway.name()
        ));
    }
    match gateway {
        Gateway::EnvoyGateway => envoy_gateway::render(input),
        Gateway::Istio => istio::render(input),
        Gateway::Kgateway if input.filter_only => Err("kgateway has no policy that attaches a filter to its own listeners: its set is the loopback overlay, a bootstrap change by construction (see envoy-config/deploy/kgateway/README.md for the controller build that needs none)".into()),
        Gateway::Kgateway => kgateway::render(input),
        Gateway::EnvoyGatewayNative => envoy_gateway_native::render(input),
        Gateway::IstioNative => istio::render_native(input),
    }
}

/// The picker JSON with `pool.cluster` set to the gateway's serving cluster and scrapes sent
/// through the bootstrap's own ORIGINAL_DST cluster ([`METRICS_CLUSTER`]), validated and
/// pretty-printed. Scraping through a cluster of our own keeps it independent of the control plane's
/// cluster names and of when its EDS learns a new pod. In filter-only mode there is no bootstrap
/// cluster: scrapes go through the serving cluster (same port).
fn picker_json(input: &DeployInput, cluster: &str) -> Result<Prepared, String> {
    let mut picker = input.picker.clone();
    if input.tokenizer_image.is_some() {
        point_tokenizers_at_the_mount(&mut picker)?;
    }
    let pool = picker
        .get_mut("pool")
        .and_then(Value::as_object_mut)
        .ok_or("the picker JSON has no pool section")?;
    pool.insert("cluster".into(), Value::String(cluster.into()));
    if input.filter_only {
        pool.remove("metricsCluster");
    } else {
        pool.insert(
            "metricsCluster".into(),
            Value::String(METRICS_CLUSTER.into()),
        );
    }
    let prepared = prepare(&picker)?;
    if input.filter_only && prepared.separate_metrics {
        return Err("filter-only mode scrapes through the serving cluster, so every endpoint's metrics must be on its serving port over the same protocol; with pool.metricsPort, a separate metrics address or pool.appProtocol kubernetes.io/h2c (metrics over HTTP/1.1), deploy without --filter-only (the bootstrap adds a scrape cluster)".into());
    }
    Ok(prepared)
}

/// Sets `tokenizerPath` to [`TOKENIZER_DIR`] on every `token-producer` / `tokenizer` plugin that
/// has none (a path the user set is kept).
///
/// # Errors
/// When the picker JSON has no such plugin: the mounted tokenizer would go unused.
fn point_tokenizers_at_the_mount(picker: &mut Value) -> Result<(), String> {
    let mut found = false;
    let plugins = picker
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for plugin in plugins {
        let kind = plugin.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "token-producer" && kind != "tokenizer" {
            continue;
        }
        found = true;
        let Some(p) = plugin.as_object_mut() else {
            continue;
        };
        let params = p
            .entry("parameters")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(params) = params.as_object_mut() {
            params
                .entry("tokenizerPath")
                .or_insert_with(|| Value::String(TOKENIZER_DIR.into()));
        }
    }
    if found {
        Ok(())
    } else {
        Err("--tokenizer-image: the picker JSON has no token-producer plugin to use it (the precise prefix cache's producer)".into())
    }
}

/// The tokenizer image as a pod volume (column 0), when there is one.
fn tokenizer_volume(input: &DeployInput) -> String {
    input.tokenizer_image.as_ref().map_or(String::new(), |image| {
        format!("- name: llm-tokenizer\n  image:\n    reference: {image}\n    pullPolicy: IfNotPresent\n")
    })
}

/// Its mount at [`TOKENIZER_DIR`] (column 0), when there is one.
fn tokenizer_mount(input: &DeployInput) -> String {
    if input.tokenizer_image.is_some() {
        format!("- name: llm-tokenizer\n  mountPath: {TOKENIZER_DIR}\n  readOnly: true\n")
    } else {
        String::new()
    }
}

/// The bootstrap addition every gateway needs (column 0): the scraper extension and the
/// scrape cluster (over TLS when the metrics source's scheme is https), after `clusters` (more
/// cluster list items, column 0).
fn bootstrap_addition(module: &Module, json: &str, clusters: &str) -> String {
    let tls = serde_json::from_str(json)
        .ok()
        .and_then(|v| crate::render::prepare(&v).ok())
        .and_then(|p| p.metrics_tls)
        .map(crate::render::upstream_tls)
        .unwrap_or_default();
    format!(
        "bootstrap_extensions:\n{}{}{}static_resources:\n  clusters:\n{}{}",
        module.scraper_extension(json),
        Limits::default().overload_manager(false),
        endpoint_picker_filter::telemetry::stats_config_yaml(),
        indent(clusters, 2),
        indent(&metrics_cluster(&tls), 2)
    )
}

fn module_vm(vm_id: Option<&str>) -> Vm {
    Vm {
        vm_id: vm_id.map(String::from),
        code: Code::Local(MODULE_FILE.into()),
    }
}

/// A `Service` for the model servers (`selector: app: <service>`); `headless` for a
/// STRICT_DNS cluster that must see every pod IP.
fn model_service(input: &DeployInput, name: &str, headless: bool) -> String {
    let cluster_ip = if headless { "  clusterIP: None\n" } else { "" };
    format!(
        r#"# The model servers (your vLLM / SGLang / TensorRT-LLM Deployment, labelled app: {svc}).
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
{cluster_ip}  selector:
    app: {svc}
  ports:
  - name: http
    port: {port}
    targetPort: {port}
    appProtocol: {protocol}
"#,
        svc = input.service,
        ns = input.namespace,
        port = input.port,
        protocol = service_app_protocol(input),
    )
}

/// True when the pool's model servers speak gRPC over HTTP/2 without TLS
/// (`pool.appProtocol: kubernetes.io/h2c`).
/// The exact paths the picker's parsers need routed beyond the OpenAI API
/// ([`crate::render::Prepared::parser_routes`]); none when the picker JSON does not prepare.
fn parser_routes(input: &DeployInput) -> Vec<String> {
    crate::render::prepare(&input.picker)
        .map(|p| p.parser_routes)
        .unwrap_or_default()
}

fn h2c(input: &DeployInput) -> bool {
    input
        .picker
        .pointer("/pool/appProtocol")
        .and_then(Value::as_str)
        == Some(H2C)
}

const H2C: &str = "kubernetes.io/h2c";

/// The `appProtocol` of the model servers' Service port: Envoy Gateway and Istio dial a
/// `kubernetes.io/h2c` port over HTTP/2 (gRPC model servers), an `http` one over HTTP/1.1.
fn service_app_protocol(input: &DeployInput) -> &'static str {
    if h2c(input) {
        H2C
    } else {
        "http"
    }
}

/// The image volume holding the module (a `volumes` list item, column 0).
fn module_volume(image: &str) -> String {
    format!(
        "- name: llm-picker-module\n  image:\n    reference: {image}\n    pullPolicy: IfNotPresent\n"
    )
}

/// Its mount at [`MODULE_DIR`] (a `volumeMounts` list item, column 0).
fn module_mount() -> String {
    format!("- name: llm-picker-module\n  mountPath: {MODULE_DIR}\n  readOnly: true\n")
}

/// A Gateway with one HTTP listener on port 80, its infrastructure parameters in
/// `(group, kind, name)`.
fn gateway(input: &DeployInput, class: &str, parameters: (&str, &str, &str)) -> String {
    let (group, kind, name) = parameters;
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {gw}
  namespace: {ns}
spec:
  gatewayClassName: {class}
  infrastructure:
    parametersRef:
      group: {group}
      kind: {kind}
      name: {name}
  listeners:
  - name: http
    protocol: HTTP
    port: 80
"#,
        gw = input.gateway,
        ns = input.namespace,
    )
}

/// The HTTPRoute `<name>`: `/v1/` to `backend` (a `backendRefs` list item, column 0), with a
/// 600 s request timeout, after `comment` (`#` lines or empty).
fn http_route(input: &DeployInput, name: &str, comment: &str, backend: &str) -> String {
    format!(
        r#"{comment}apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: {ns}
spec:
  parentRefs:
  - name: {gw}
  rules:
  # Only the inference API reaches the model servers (not /metrics or admin paths).
  - matches:
{matches}    backendRefs:
{backend}    timeouts:
      request: 600s
"#,
        gw = input.gateway,
        ns = input.namespace,
        backend = indent(backend, 4),
        matches = indent(&route_matches(input), 4),
    )
}

/// HTTPRoute `matches` (column 0) for [`INFERENCE_PATHS`] and the parsers' own paths (Exact),
/// [`INFERENCE_PREFIXES`], and vLLM's gRPC service for an h2c pool.
fn route_matches(input: &DeployInput) -> String {
    let mut out = String::new();
    for p in INFERENCE_PATHS {
        out.push_str(&format!("- path: {{ type: Exact, value: {p} }}\n"));
    }
    for p in parser_routes(input) {
        if !INFERENCE_PATHS.contains(&p.as_str()) {
            out.push_str(&format!("- path: {{ type: Exact, value: {p} }}\n"));
        }
    }
    for p in INFERENCE_PREFIXES {
        out.push_str(&format!("- path: {{ type: PathPrefix, value: {p} }}\n"));
    }
    if h2c(input) {
        let service = crate::render::VLLM_GRPC_PREFIX.trim_end_matches('/');
        out.push_str(&format!(
            "- path: {{ type: PathPrefix, value: {service} }}\n"
        ));
    }
    out
}

/// A `backendRefs` item for the model servers' Service.
fn service_backend(input: &DeployInput) -> String {
    format!("- name: {}\n  port: {}\n", input.service, input.port)
}

fn namespace(input: &DeployInput) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
        input.namespace
    )
}

/// Joins documents with `---` separators after a header comment.
fn documents(header: &str, docs: &[String]) -> String {
    let mut out = String::from(header);
    for d in docs {
        out.push_str("---\n");
        out.push_str(d);
    }
    out
}
