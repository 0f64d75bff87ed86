//! Envoy Gateway v1.9+: EnvoyProxy (bootstrap Merge with the scraper, the module as an image
//! volume, Envoy 1.40), EnvoyExtensionPolicy (the picker filter), BackendTrafficPolicy
//! (`endpointOverride` on the destination header), EnvoyPatchPolicy (body buffering and
//! FAIL_RELOAD, which the EnvoyExtensionPolicy API does not expose), Gateway, HTTPRoute and the
//! model servers' Service.
//!
//! With `filter_only` the EnvoyProxy only pins the Envoy image: no bootstrap merge, no volume
//! (Envoy Gateway pulls the module's image itself), and the picker scrapes through the route's
//! cluster.
//!
//! The coupling to know (bootstrap mode): Envoy Gateway gives the filter's VM the fixed id
//! `envoyextensionpolicy/<namespace>/<policy name>/wasm/<index>`, and shared data is keyed by
//! vm_id, so the scraper in the bootstrap must carry exactly that id. Renaming, moving or
//! reordering the policy breaks the link (the picker then answers 503: no snapshot).

use super::DeployInput;
use super::{bootstrap_addition, documents, gateway, http_route, indent, model_service};
use super::{module_mount, module_vm, module_volume, namespace, picker_json, service_backend};
use crate::blocks::{Module, DESTINATION_HEADER, PICKER_ROOT_ID};
use crate::limits::Limits;

/// Name of the EnvoyExtensionPolicy (part of the derived vm_id).
pub const POLICY: &str = "llm-picker";
/// Name of the HTTPRoute.
pub const ROUTE: &str = "llm";
/// The Envoy image (Envoy Gateway v1.9 defaults to 1.39; body-based picking is tested on 1.40).
pub const ENVOY_IMAGE: &str = "docker.io/envoyproxy/envoy:distroless-v1.40.0";

/// The vm_id Envoy Gateway derives for `wasm[0]` of EnvoyExtensionPolicy `<ns>/<POLICY>`.
pub fn vm_id(namespace: &str) -> String {
    format!("envoyextensionpolicy/{namespace}/{POLICY}/wasm/0")
}

/// The HTTP filter name Envoy Gateway gives that Wasm extension.
pub fn filter_name(namespace: &str) -> String {
    format!("envoy.filters.http.wasm/{}", vm_id(namespace))
}

/// The cluster Envoy Gateway builds for rule 0 of the HTTPRoute.
pub fn route_cluster(namespace: &str) -> String {
    format!("httproute/{namespace}/{ROUTE}/rule/0")
}

pub(super) fn render(input: &DeployInput) -> Result<String, String> {
    let ns = &input.namespace;
    let gw = &input.gateway;
    let image = &input.image;
    let vm_id = vm_id(ns);
    let prepared = picker_json(input, &route_cluster(ns))?;
    let json = &prepared.json;
    let buffer_limit = prepared.buffer_limit;
    // Envoy Gateway v1.9 names listeners <gateway ns>/<gateway>/<listener>; with
    // XDSNameSchemeV2 (the default from v1.10) the name is tcp-<port>.
    let listener = format!("{ns}/{gw}/http");
    let filter = filter_name(ns);

    // The EnvoyProxy's common part: the Envoy 1.40 image.
    let proxy_head = format!(
        r#"apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata:
  name: llm-proxy
  namespace: {ns}
spec:
  provider:
    type: Kubernetes
    kubernetes:
      envoyDeployment:
        container:
          image: {ENVOY_IMAGE}
"#
    );
    let proxy = if input.filter_only {
        format!(
            "# The proxy: Envoy 1.40 and nothing else (filter-only mode: no bootstrap change). The picker filter\n\
             # pulls its module from the OCI image and scrapes the pool itself, through the route's cluster.\n{proxy_head}"
        )
    } else {
        let bootstrap = bootstrap_addition(&Module::Wasm(module_vm(Some(&vm_id))), json, "");
        format!(
            r#"# The proxy: Envoy 1.40, the module mounted from its OCI image, and the scraper in the bootstrap.
{proxy_head}          volumeMounts:
{mount}        pod:
          volumes:
          # An image volume (Kubernetes 1.33+): the OCI image `make oci` builds, one file plugin.wasm.
{volume}  bootstrap:
    type: Merge
    # vm_id must equal the one Envoy Gateway derives for wasm[0] of EnvoyExtensionPolicy
    # {ns}/{POLICY}: shared data (the metrics snapshot) is keyed by vm_id.
    value: |
{bootstrap}"#,
            bootstrap = indent(&bootstrap, 6),
            mount = indent(&module_mount(), 10),
            volume = indent(&module_volume(image), 10),
        )
    };
    let extension = format!(
        r#"# The picker filter on the route. Editing `config` (e.g. pool.endpoints) reconfigures it through
# xDS, without a restart: the filter publishes the new member list and the scraper follows it.
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
  wasm:
  - name: {PICKER_ROOT_ID}
    rootID: {PICKER_ROOT_ID}
    code:
      type: Image
      image:
        url: {image}
    # Never skip the picker: a failed VM answers 503 instead of letting a client-supplied
    # destination header steer the request.
    failOpen: false
    config:
{config}"#,
        config = indent(json, 6),
    );
    let wasm_ops = format!(
        r#"- type: type.googleapis.com/envoy.config.listener.v3.Listener
  name: {listener}
  operation:
    op: add
    jsonPath: "..http_filters[?(@.name=='{filter}')].typed_config.config"
    path: /allow_on_headers_stop_iteration
    value: true
- type: type.googleapis.com/envoy.config.listener.v3.Listener
  name: {listener}
  operation:
    op: add
    jsonPath: "..http_filters[?(@.name=='{filter}')].typed_config.config"
    path: /failure_policy
    value: FAIL_RELOAD
"#
    );
    let patch = patch_policy(
        input,
        &listener,
        "# Body-based picking (the `model` field, prefix affinity on the prompt) needs\n\
         # allow_on_headers_stop_iteration, and FAIL_RELOAD replaces a VM that traps; the\n\
         # EnvoyExtensionPolicy API exposes neither (Envoy Gateway #8382), so patch them in. Also raise\n\
         # the listener's buffer limit (Envoy Gateway's default is 32 KiB) above the picker's\n\
         # bodyLimitBytes so long prompts are buffered, and bound how long a client may take to send\n\
         # its request. Requires `extensionApis.enableEnvoyPatchPolicy: true` in the Envoy Gateway\n\
         # configuration.\n",
        &wasm_ops,
        buffer_limit,
    );
    let header = format!(
        "# Endpoint picker on Envoy Gateway v1.9+. Rendered by `envoy-config deploy --gateway envoy-gateway{}`\n# from envoy-config/deploy/picker.json; re-render instead of editing. See README.md.\n",
        if input.filter_only { " --filter-only" } else { "" }
    );
    Ok(eg_documents(
        &header,
        input,
        proxy,
        extension,
        traffic_policy(input),
        patch,
    ))
}

/// The BackendTrafficPolicy of the Wasm set: least request with `endpointOverride` on the
/// destination header, and retries on another endpoint.
pub(super) fn traffic_policy(input: &DeployInput) -> String {
    traffic_policy_with(
        input,
        "# Send each request to the endpoint the picker wrote in {DESTINATION_HEADER} (Envoy's\n\
         # override_host load balancer). Only endpoints of the route's Service can be chosen; without the\n\
         # header (FailOpen) least request picks. Retries go to another endpoint.\n",
        "type: LeastRequest\n",
    )
}

/// A BackendTrafficPolicy on the route: `endpointOverride` on the destination header over the
/// load balancer `lb` (fields of `loadBalancer`, column 0), retries on another endpoint.
pub(super) fn traffic_policy_with(input: &DeployInput, comment: &str, lb: &str) -> String {
    let ns = &input.namespace;
    let comment = comment.replace("{DESTINATION_HEADER}", DESTINATION_HEADER);
    format!(
        r#"{comment}apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata:
  name: llm-pool
  namespace: {ns}
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: {ROUTE}
  loadBalancer:
{lb}    endpointOverride:
      extractFrom:
      - header: {DESTINATION_HEADER}
  retry:
    numRetries: 2
    retryOn:
      triggers: [connect-failure, reset, refused-stream]
      httpStatusCodes: [500, 502, 503]
"#,
        lb = indent(lb, 4)
    )
}

/// The EnvoyPatchPolicy on the Gateway's listener: `first_ops` (JSON patch list items, column
/// 0), then the buffer limit above `bodyLimitBytes` and the request and header timeouts.
pub(super) fn patch_policy(
    input: &DeployInput,
    listener: &str,
    comment: &str,
    first_ops: &str,
    buffer_limit: u64,
) -> String {
    let limits = Limits::default();
    format!(
        r#"{comment}apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyPatchPolicy
metadata:
  name: llm-picker-body
  namespace: {ns}
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: {gw}
  type: JSONPatch
  jsonPatches:
{first}  - type: type.googleapis.com/envoy.config.listener.v3.Listener
    name: {listener}
    operation:
      op: add
      path: /per_connection_buffer_limit_bytes
      value: {buffer_limit}
  # The picker buffers bodies: a client must send its headers and its whole request in time.
  - type: type.googleapis.com/envoy.config.listener.v3.Listener
    name: {listener}
    operation:
      op: add
      jsonPath: "..filters[?(@.name=='envoy.filters.network.http_connection_manager')].typed_config"
      path: /request_headers_timeout
      value: {headers_timeout}s
  - type: type.googleapis.com/envoy.config.listener.v3.Listener
    name: {listener}
    operation:
      op: add
      jsonPath: "..filters[?(@.name=='envoy.filters.network.http_connection_manager')].typed_config"
      path: /request_timeout
      value: {request_timeout}s
"#,
        ns = input.namespace,
        gw = input.gateway,
        first = indent(first_ops, 2),
        headers_timeout = limits.request_headers_timeout_s,
        request_timeout = limits.request_timeout_s,
    )
}

/// Every document of an Envoy Gateway set, in apply order: the namespace, `proxy` (EnvoyProxy),
/// the GatewayClass, Gateway and HTTPRoute, the model servers' Service, `extension`
/// (EnvoyExtensionPolicy), `traffic` (BackendTrafficPolicy) and `patch` (EnvoyPatchPolicy).
pub(super) fn eg_documents(
    header: &str,
    input: &DeployInput,
    proxy: String,
    extension: String,
    traffic: String,
    patch: String,
) -> String {
    let class = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: llm-eg
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
"#
    .to_string();
    let gateway = gateway(
        input,
        "llm-eg",
        ("gateway.envoyproxy.io", "EnvoyProxy", "llm-proxy"),
    );
    let route = http_route(input, ROUTE, "", &service_backend(input));
    documents(
        header,
        &[
            namespace(input),
            proxy,
            class,
            gateway,
            route,
            model_service(input, &input.service, false),
            extension,
            traffic,
            patch,
        ],
    )
}
