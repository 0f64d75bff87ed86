//! The Envoy snippets embedded in the gateway manifests (`envoy-config/deploy/`) are valid
//! Envoy 1.40 configuration: each is put where its gateway puts it, inside a full bootstrap
//! shaped like the one that gateway generates, and the result passes `envoy --mode validate`.
//!
//! - Envoy Gateway: the EnvoyExtensionPolicy becomes the Wasm HTTP filter Envoy Gateway emits
//!   (its derived name and vm_id), the BackendTrafficPolicy the route cluster's override_host
//!   policy; the EnvoyPatchPolicy's JSON patches are applied to that listener (each must match);
//!   the EnvoyProxy bootstrap `value` is merged with `--config-yaml` (a proto merge, as Envoy
//!   Gateway's `type: Merge`).
//! - Istio: the EnvoyFilter's EXTENSION_CONFIG goes before the router inline (and, for
//!   validation, the HTTP_FILTER patch as written, ECDS over ADS, in a second listener), its
//!   CLUSTER and LISTENER MERGE patches are merged into Istio-shaped resources, and
//!   the bootstrap override is merged with `--config-yaml`, as `ISTIO_BOOTSTRAP_OVERRIDE` is.
//! - kgateway: the overlay is loaded with `-c` under a kgateway-shaped bootstrap given with
//!   `--config-yaml`, exactly as `envoyinit` runs Envoy with `extraArgs`, and the ECDS
//!   ConfigMap's file sits in the watched directory.
//!
//! The module path in the manifests (the image volume) is replaced by the built module's.
//!
//! Then each set runs: rendered by the same renderer for model servers on loopback, assembled
//! the same way, started for real, and a chat completion is routed through it to a model server
//! (which proves the scraper and the filter share data under the gateway's vm_id, that the
//! patches enable body-based picking, and that the cluster honours the destination header). For
//! kgateway the headless Service's DNS name is replaced by the backends' addresses (STATIC).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::Backend;
use envoy_config::crd::documents;
use envoy_config::deploy::{DeployInput, Gateway, MODULE_FILE};
use serde_json::{json, Value};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

fn manifests(gateway: &str) -> Vec<Value> {
    let path = e2e::repo_root().join(format!("envoy-config/deploy/{gateway}/manifests.yaml"));
    documents(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("no {kind} {name:?}"))
}

fn local_module(text: &str) -> String {
    text.replace(MODULE_FILE, &e2e::wasm_path().display().to_string())
}

fn work_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("deploy-envoy-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `envoy --mode validate` with `args`; Envoy's output on failure.
fn envoy_validate(assembled: &Assembled) {
    if let Err(text) = e2e::envoy_validate(&assembled.args) {
        panic!("envoy --mode validate {:?} failed:\n{text}", assembled.args);
    }
    let _ = std::fs::remove_dir_all(&assembled.dir);
}

fn socket(address: &str, port: u64) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

/// The pool members of a picker JSON as `lb_endpoints`.
fn lb_endpoints(picker: &Value) -> Value {
    let members: Vec<Value> = picker["pool"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (ip, port) = e["address"].as_str().unwrap().rsplit_once(':').unwrap();
            json!({"endpoint": {"address": socket(ip, port.parse().unwrap())}})
        })
        .collect();
    json!([{"lb_endpoints": members}])
}

fn hcm(name: &str, cluster: &str, filters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters.push(
        json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
    );
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "600s"}}]}]},
        "http_filters": http_filters}})
}

fn listener(name: &str, port: u64, network_filter: Value) -> Value {
    json!({"name": name, "address": socket("127.0.0.1", port),
           "filter_chains": [{"filters": [network_filter]}]})
}

fn admin(port: u64) -> Value {
    json!({"address": socket("127.0.0.1", port)})
}

/// An Envoy command line assembled from a manifest set, and the ports it serves on.
struct Assembled {
    args: Vec<String>,
    dir: PathBuf,
}

/// Ports for an assembled config: 0 (any) for validation, free ones to run it.
#[derive(Clone, Copy)]
struct Ports {
    admin: u64,
    inference: u64,
    /// kgateway's picker listener on loopback.
    inner: u64,
}

const VALIDATE: Ports = Ports {
    admin: 0,
    inference: 0,
    inner: 0,
};

/// Proto-merge-like: objects merge recursively, lists are appended, scalars replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b.iter().cloned()),
        (slot, v) => *slot = v.clone(),
    }
}

/// Applies one EnvoyPatchPolicy operation as Envoy Gateway does: with `jsonPath`, `path` is
/// relative to every node the JSONPath selects (at least one must match); without it, `path` is
/// a JSON pointer from the resource's root.
fn apply_patch(resource: &mut Value, op: &Value) {
    let path = op["path"].as_str().unwrap();
    let targets: Vec<String> = match op["jsonPath"].as_str() {
        Some(jp) => {
            let jp = if jp.starts_with('$') {
                jp.to_string()
            } else {
                format!("${jp}")
            };
            let query = serde_json_path::JsonPath::parse(&jp).expect("JSONPath parses");
            let hits: Vec<String> = query
                .query_located(resource)
                .locations()
                .map(|l| format!("{}{path}", l.to_json_pointer()))
                .collect();
            assert!(!hits.is_empty(), "jsonPath {jp} matches nothing");
            hits
        }
        None => vec![path.to_string()],
    };
    for target in targets {
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": op["op"], "path": target, "value": op["value"]}
        ]))
        .unwrap();
        json_patch::patch(resource, &patch).expect("patch applies");
    }
}

/// The route's cluster (override_host on the BackendTrafficPolicy's header over its load
/// balancer type, `members` the Service's endpoints as `lb_endpoints`) and the Gateway's listener
/// with `filter` before the router, after the EnvoyPatchPolicy's operations: what Envoy Gateway
/// generates for either set.
fn eg_cluster_and_listener(
    docs: &[Value],
    ports: Ports,
    ns: &str,
    filter: Value,
    members: &Value,
) -> (Value, Value) {
    let route = find(docs, "HTTPRoute", None);
    let cluster_name = format!(
        "httproute/{ns}/{}/rule/0",
        route["metadata"]["name"].as_str().unwrap()
    );
    let btp = find(docs, "BackendTrafficPolicy", None);
    let lb = &btp["spec"]["loadBalancer"];
    let header = &lb["endpointOverride"]["extractFrom"][0]["header"];
    // What Envoy Gateway's translator makes of `loadBalancer.type`: the fallback under
    // override_host. A DynamicModule balancer is loaded like the filter: by library name.
    let fallback = match lb["type"].as_str() {
        Some("LeastRequest") => {
            json!({"name": "envoy.load_balancing_policies.least_request", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"}})
        }
        Some("DynamicModule") => {
            json!({"name": "envoy.load_balancing_policies.dynamic_modules", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.dynamic_modules.v3.DynamicModulesLoadBalancerConfig",
            "dynamic_module_config": {"name": "endpoint_picker", "do_not_close": true},
            "lb_policy_name": lb["dynamicModule"]["lbPolicyName"]}})
        }
        other => panic!("unexpected loadBalancer.type {other:?}"),
    };
    let cluster = json!({"name": cluster_name, "type": "STATIC", "connect_timeout": "10s",
        "load_assignment": {"cluster_name": cluster_name, "endpoints": members},
        "load_balancing_policy": {"policies": [{"typed_extension_config": {
            "name": "envoy.load_balancing_policies.override_host", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
                "override_host_sources": [{"header": header}],
                "fallback_policy": {"policies": [{"typed_extension_config": fallback}]}}}}]}});
    let gw = find(docs, "Gateway", None);
    let listener_name = format!("{ns}/{}/http", gw["metadata"]["name"].as_str().unwrap());
    let mut l = listener(
        &listener_name,
        ports.inference,
        hcm("http", &cluster_name, vec![filter]),
    );
    l["per_connection_buffer_limit_bytes"] = json!(32768); // Envoy Gateway's default
    let epp = find(docs, "EnvoyPatchPolicy", None);
    for p in epp["spec"]["jsonPatches"].as_array().unwrap() {
        assert_eq!(
            p["type"],
            "type.googleapis.com/envoy.config.listener.v3.Listener"
        );
        assert_eq!(
            p["name"],
            listener_name.as_str(),
            "patch targets the Gateway's listener"
        );
        apply_patch(&mut l, &p["operation"]);
    }
    (cluster, l)
}

/// Envoy Gateway's xDS for the native manifests: the `dynamicModule` filter as Envoy Gateway
/// configures it from the EnvoyExtensionPolicy and the EnvoyProxy allowlist entry (the library
/// loaded by name from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`, where the test puts the built
/// module), the same cluster and patches as the Wasm set, plus the bootstrap merge with the
/// native scraper.
fn assemble_envoy_gateway_native(docs: &[Value], ports: Ports, members: &Value) -> Assembled {
    let eep = find(docs, "EnvoyExtensionPolicy", None);
    let ns = eep["metadata"]["namespace"].as_str().unwrap();
    let module = &eep["spec"]["dynamicModule"][0];
    let proxy = find(docs, "EnvoyProxy", None);
    let allowed = &proxy["spec"]["dynamicModules"][0];
    assert_eq!(
        allowed["name"], module["name"],
        "the policy names an allowed module"
    );
    assert_eq!(allowed["doNotClose"], true);
    let path = allowed["source"]["local"]["path"].as_str().unwrap();
    assert!(path.ends_with("/libendpoint_picker.so"), "{path}");
    let filter = json!({"name": "envoy.filters.http.dynamic_modules", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"name": "endpoint_picker", "do_not_close": true},
        "filter_name": module["filterName"],
        "filter_config": {"@type": STRING_VALUE, "value": module["config"].to_string()}}});
    assert!(
        module["config"]["pool"].get("endpoints").is_none(),
        "the native set's pool is the route's cluster"
    );
    assert_eq!(
        find(docs, "BackendTrafficPolicy", None)["spec"]["loadBalancer"]["type"],
        "DynamicModule"
    );
    let (cluster, l) = eg_cluster_and_listener(docs, ports, ns, filter, members);
    assert!(l["per_connection_buffer_limit_bytes"].as_u64().unwrap() > 4 << 20);
    let dir = work_dir("eg-native");
    let base = dir.join("base.json");
    let bootstrap = json!({"admin": admin(ports.admin), "static_resources": {"listeners": [l], "clusters": [cluster]}});
    std::fs::write(&base, bootstrap.to_string()).unwrap();
    let mut args = vec!["-c".into(), base.display().to_string()];
    // Filter-only sets merge nothing into the bootstrap.
    if !proxy["spec"]["bootstrap"].is_null() {
        assert_eq!(proxy["spec"]["bootstrap"]["type"], "Merge");
        let merged = proxy["spec"]["bootstrap"]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            merged.contains("envoy.bootstrap.dynamic_modules"),
            "{merged}"
        );
        args.extend(["--config-yaml".into(), merged]);
    }
    Assembled { args, dir }
}

/// Envoy Gateway's xDS for the manifests, as a bootstrap, plus the EnvoyProxy merge.
fn assemble_envoy_gateway(docs: &[Value], ports: Ports, members: &Value) -> Assembled {
    let eep = find(docs, "EnvoyExtensionPolicy", None);
    let ns = eep["metadata"]["namespace"].as_str().unwrap();
    let policy = eep["metadata"]["name"].as_str().unwrap();
    let wasm = &eep["spec"]["wasm"][0];
    // What Envoy Gateway's translator emits for wasm[0] of this policy.
    let vm_id = format!("envoyextensionpolicy/{ns}/{policy}/wasm/0");
    let filter = json!({"name": format!("envoy.filters.http.wasm/{vm_id}"), "typed_config": {
        "@type": WASM_TYPE, "config": {
            "name": vm_id, "root_id": wasm["rootID"],
            "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": e2e::wasm_path()}}},
            "configuration": {"@type": STRING_VALUE, "value": wasm["config"].to_string()},
            "fail_open": wasm["failOpen"]}}});
    let (cluster, l) = eg_cluster_and_listener(docs, ports, ns, filter, members);
    let config = &l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        ["typed_config"]["config"];
    assert_eq!(config["allow_on_headers_stop_iteration"], true);
    assert_eq!(config["failure_policy"], "FAIL_RELOAD");
    assert!(l["per_connection_buffer_limit_bytes"].as_u64().unwrap() > 4 << 20);

    let dir = work_dir("eg");
    let base = dir.join("base.json");
    let bootstrap = json!({"admin": admin(ports.admin), "static_resources": {"listeners": [l], "clusters": [cluster]}});
    std::fs::write(&base, bootstrap.to_string()).unwrap();
    let proxy = find(docs, "EnvoyProxy", None);
    let mut args = vec!["-c".into(), base.display().to_string()];
    // Filter-only sets merge nothing into the bootstrap.
    if !proxy["spec"]["bootstrap"].is_null() {
        assert_eq!(proxy["spec"]["bootstrap"]["type"], "Merge");
        let merged = local_module(proxy["spec"]["bootstrap"]["value"].as_str().unwrap());
        assert!(
            merged.contains(&format!("vm_id: \"{vm_id}\"")),
            "scraper shares the derived vm_id"
        );
        args.extend(["--config-yaml".into(), merged]);
    }
    Assembled { args, dir }
}

/// Istio's xDS for the manifests (EnvoyFilter patches applied), plus the bootstrap override.
/// `with_ads`: also add a listener whose filter is the HTTP_FILTER patch exactly as written
/// (`config_discovery` over ADS) and the ADS client Istio's bootstrap has (validation only: no
/// istiod answers it). `members`: the Service's endpoints (`lb_endpoints`) istiod would push;
/// `None` takes them from the picker JSON.
fn assemble_istio(
    docs: &[Value],
    ports: Ports,
    with_ads: bool,
    members: Option<&Value>,
) -> Assembled {
    let ef = find(docs, "EnvoyFilter", None);
    let patches = ef["spec"]["configPatches"].as_array().unwrap();
    let patch = |apply: &str| -> &Value {
        patches
            .iter()
            .find(|p| p["applyTo"] == apply)
            .unwrap_or_else(|| panic!("no {apply} patch"))
    };
    let ext = &patch("EXTENSION_CONFIG")["patch"]["value"];
    let http = &patch("HTTP_FILTER")["patch"];
    assert_eq!(http["operation"], "INSERT_BEFORE");
    assert_eq!(
        http["value"]["name"], ext["name"],
        "the HTTP filter names the extension config"
    );
    assert_eq!(
        patch("HTTP_FILTER")["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    let mut typed = ext["typed_config"].clone();
    // Wasm: the module file as the pod mounts it → the built module; native: the library is
    // found by name through ENVOY_DYNAMIC_MODULES_SEARCH_PATH (set for every Envoy here).
    let picker_text = if typed["config"].is_object() {
        typed["config"]["vm_config"]["code"]["local"]["filename"] = json!(e2e::wasm_path());
        typed["config"]["configuration"]["value"].clone()
    } else {
        typed["filter_config"]["value"].clone()
    };
    let picker: Value = serde_json::from_str(picker_text.as_str().unwrap()).unwrap();
    let filter = json!({"name": ext["name"], "typed_config": typed});

    // Istio's cluster for the Service, then the CLUSTER MERGE patch.
    let cluster_patch = patch("CLUSTER");
    let svc = cluster_patch["match"]["cluster"]["service"]
        .as_str()
        .unwrap();
    let port = cluster_patch["match"]["cluster"]["portNumber"]
        .as_u64()
        .unwrap();
    let cluster_name = format!("outbound|{port}||{svc}");
    assert_eq!(picker["pool"]["cluster"], cluster_name.as_str());
    let mut cluster = json!({"name": cluster_name, "type": "STATIC", "connect_timeout": "10s",
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {"cluster_name": cluster_name,
            "endpoints": members.cloned().unwrap_or_else(|| lb_endpoints(&picker))}});
    assert_eq!(cluster_patch["patch"]["operation"], "MERGE");
    merge(&mut cluster, &cluster_patch["patch"]["value"]);

    // The NETWORK_FILTER MERGE patch (request timeouts) onto the connection manager.
    let mut network = hcm("http", &cluster_name, vec![filter]);
    let nf = patch("NETWORK_FILTER");
    assert_eq!(nf["patch"]["operation"], "MERGE");
    assert_eq!(
        nf["match"]["listener"]["filterChain"]["filter"]["name"],
        network["name"]
    );
    merge(&mut network, &nf["patch"]["value"]);
    let mut l = listener("0.0.0.0_80", ports.inference, network);
    merge(&mut l, &patch("LISTENER")["patch"]["value"]);

    let dir = work_dir("istio");
    let base = dir.join("base.json");
    let mut bootstrap = json!({"node": {"id": "router~10.0.0.1~llm-gw.llm~llm.svc.cluster.local", "cluster": "llm-gw.llm"},
        "admin": admin(ports.admin), "static_resources": {"listeners": [l], "clusters": [cluster]}});
    if with_ads {
        let ecds = listener(
            "ecds",
            0,
            hcm("ecds", &cluster_name, vec![http["value"].clone()]),
        );
        merge(
            &mut bootstrap,
            &json!({
                "dynamic_resources": {"ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}},
                "static_resources": {"listeners": [ecds], "clusters": [{"name": "xds-grpc",
                    "type": "STATIC", "connect_timeout": "1s",
                    "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}}},
                    "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [
                        {"endpoint": {"address": socket("127.0.0.1", 15010)}}]}]}}]}}),
        );
    }
    std::fs::write(&base, bootstrap.to_string()).unwrap();
    let mut args = vec!["-c".into(), base.display().to_string()];
    let options = find(docs, "ConfigMap", Some("llm-gw-options"));
    let deployment = options["data"]["deployment"].as_str().unwrap();
    // Filter-only sets have no override.
    match docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "llm-picker-bootstrap")
    {
        Some(cm) => {
            let (key, text) = cm["data"].as_object().unwrap().iter().next().unwrap();
            assert!(
                deployment.contains(&format!("/{key}")),
                "ISTIO_BOOTSTRAP_OVERRIDE points at the override file"
            );
            args.extend(["--config-yaml".into(), local_module(text.as_str().unwrap())]);
        }
        None => assert!(!deployment.contains("ISTIO_BOOTSTRAP_OVERRIDE")),
    }
    Assembled { args, dir }
}

/// kgateway's bootstrap (`--config-yaml`) over the overlay (`-c`), the ECDS ConfigMap mounted.
/// `members`: replace the headless Service's DNS member by these addresses (to run it).
fn assemble_kgateway(docs: &[Value], ports: Ports, members: Option<&Value>) -> Assembled {
    let params = find(docs, "GatewayParameters", None);
    let args = params["spec"]["kube"]["envoyContainer"]["extraArgs"]
        .as_array()
        .unwrap();
    assert_eq!(args[0], "-c");
    let overlay_path = Path::new(args[1].as_str().unwrap());
    let overlay_cm = find(docs, "ConfigMap", Some("llm-picker-overlay"));
    let xds_cm = find(docs, "ConfigMap", Some("llm-picker-xds"));
    let mounts = params["spec"]["kube"]["envoyContainer"]["extraVolumeMounts"]
        .as_array()
        .unwrap();
    let mount_of = |volume: &str| -> String {
        mounts.iter().find(|m| m["name"] == volume).unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        overlay_path.parent().unwrap(),
        Path::new(&mount_of("llm-picker-overlay"))
    );
    let xds_mount = mount_of("llm-picker-xds");

    // The mounted ConfigMaps, under a temporary directory.
    let dir = work_dir("kgateway");
    let xds_dir = dir.join("xds");
    std::fs::create_dir_all(&xds_dir).unwrap();
    for (file, text) in xds_cm["data"].as_object().unwrap() {
        std::fs::write(xds_dir.join(file), local_module(text.as_str().unwrap())).unwrap();
    }
    let overlay_text = overlay_cm["data"][overlay_path.file_name().unwrap().to_str().unwrap()]
        .as_str()
        .unwrap();
    let backend = find(docs, "Backend", None);
    let host = &backend["spec"]["static"]["hosts"][0];
    let inner_port = match ports.inner {
        0 => host["port"].as_u64().unwrap(),
        p => p,
    };
    let mut overlay_text = local_module(overlay_text)
        .replace(&xds_mount, xds_dir.to_str().unwrap())
        .replace(
            &format!("port_value: {} }}", host["port"]),
            &format!("port_value: {inner_port} }}"),
        );
    if let Some(members) = members {
        let mut v = documents(&overlay_text).unwrap().remove(0);
        let pool = v["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["type"] == "STRICT_DNS")
            .expect("the pool cluster");
        pool["type"] = json!("STATIC");
        pool["load_assignment"]["endpoints"] = members.clone();
        overlay_text = v.to_string();
    }
    let overlay = dir.join("overlay.yaml");
    std::fs::write(&overlay, overlay_text).unwrap();

    // kgateway's side: its listener routes to the Static Backend (the picker listener).
    let backend_cluster = "backend_llm_llm-picker-loopback_0";
    let base = json!({"node": {"id": "gloo-kube-gateway-api~llm~llm-llm-gw", "cluster": "llm-gw"},
        "admin": admin(ports.admin),
        "static_resources": {
            "listeners": [listener("listener~80", ports.inference, hcm("http", backend_cluster, vec![]))],
            "clusters": [{"name": backend_cluster, "type": "STATIC", "connect_timeout": "5s",
                "load_assignment": {"cluster_name": backend_cluster, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": socket(host["host"].as_str().unwrap(), inner_port)}}]}]}}]}});
    Assembled {
        args: vec![
            "-c".into(),
            overlay.display().to_string(),
            "--config-yaml".into(),
            base.to_string(),
        ],
        dir,
    }
}

#[test]
fn envoy_gateway_snippets_form_a_valid_envoy_config() {
    let docs = manifests("envoy-gateway");
    let picker = &find(&docs, "EnvoyExtensionPolicy", None)["spec"]["wasm"][0]["config"];
    envoy_validate(&assemble_envoy_gateway(
        &docs,
        VALIDATE,
        &lb_endpoints(picker),
    ));
}

#[test]
fn istio_snippets_form_a_valid_envoy_config() {
    envoy_validate(&assemble_istio(&manifests("istio"), VALIDATE, true, None));
}

#[test]
fn kgateway_overlay_forms_a_valid_envoy_config_under_a_kgateway_bootstrap() {
    envoy_validate(&assemble_kgateway(&manifests("kgateway"), VALIDATE, None));
}

/// A running Envoy, killed on drop.
struct Running {
    child: Child,
    log: PathBuf,
    admin: u64,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Running {
    fn start(a: Assembled, admin: u64) -> Running {
        let log = a.dir.join("envoy.log");
        let child = Command::new(e2e::envoy_bin())
            .args(&a.args)
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", e2e::native_dir())
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "info",
            ])
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn envoy");
        Running {
            child,
            log,
            admin,
            dir: a.dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stat(&self, name: &str) -> u64 {
        ureq::get(&format!(
            "http://127.0.0.1:{}/stats?filter={name}",
            self.admin
        ))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|t| {
            t.lines()
                .filter_map(|l| l.split_once(": "))
                .find(|(n, _)| n.ends_with(name))
                .and_then(|(_, v)| v.trim().parse().ok())
        })
        .unwrap_or(0)
    }
}

/// Renders `gateway`'s manifests for three model servers on loopback, assembles and starts
/// them, and routes one chat completion to the least-loaded server.
fn runs_and_routes(gateway: Gateway) {
    runs_and_routes_with(gateway, false);
}

/// [`runs_and_routes`]; `filter_only`: the set rendered with `--filter-only` (no bootstrap
/// change: the filter scrapes through the serving cluster).
fn runs_and_routes_with(gateway: Gateway, filter_only: bool) {
    let backends: Vec<Backend> = ["pod-a", "pod-b", "pod-c"]
        .iter()
        .map(|n| Backend::spawn(n))
        .collect();
    backends[0].set(json!({"waiting": 9, "kv": 0.9}));
    backends[1].set(json!({"waiting": 0, "kv": 0.1}));
    backends[2].set(json!({"waiting": 9, "kv": 0.9}));
    let mut picker: Value = serde_json::from_str(
        &std::fs::read_to_string(e2e::repo_root().join("envoy-config/deploy/picker.json")).unwrap(),
    )
    .unwrap();
    picker["pool"]["endpoints"] = backends
        .iter()
        .map(|b| json!({"address": b.addr.to_string(), "labels": {"engine-type": "vllm"}}))
        .collect();
    picker["pool"]["debug"] = json!(true);
    let mut input = DeployInput::example(picker.clone(), "registry.example.com/picker:test");
    input.filter_only = filter_only;
    let docs = documents(&envoy_config::deploy::render(gateway, &input).unwrap()).unwrap();
    if filter_only {
        assert!(
            docs.iter().all(|d| d["spec"].get("bootstrap").is_none()),
            "no bootstrap merge"
        );
    }
    let ports = Ports {
        admin: e2e::free_port().into(),
        inference: e2e::free_port().into(),
        inner: e2e::free_port().into(),
    };
    let assembled = match gateway {
        Gateway::EnvoyGateway => assemble_envoy_gateway(&docs, ports, &lb_endpoints(&picker)),
        Gateway::Istio => assemble_istio(&docs, ports, false, Some(&lb_endpoints(&picker))),
        Gateway::Kgateway => assemble_kgateway(&docs, ports, Some(&lb_endpoints(&picker))),
        Gateway::EnvoyGatewayNative => {
            assemble_envoy_gateway_native(&docs, ports, &lb_endpoints(&picker))
        }
        Gateway::IstioNative => assemble_istio(&docs, ports, false, Some(&lb_endpoints(&picker))),
    };
    let envoy = Running::start(assembled, ports.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    while envoy.stat("endpoint_picker.scrape.success") < 3 {
        assert!(
            Instant::now() < deadline,
            "{}: never scraped\n{}",
            gateway.name(),
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let body = json!({"model": "meta-llama/Llama-3.1-8B-Instruct",
        "messages": [{"role": "user", "content": "Which gateway is this?"}]});
    let r = ureq::post(&format!(
        "http://127.0.0.1:{}/v1/chat/completions",
        ports.inference
    ))
    .set("content-type", "application/json")
    .set("x-endpoint-picker-debug", "1")
    .timeout(Duration::from_secs(10))
    .send_string(&body.to_string())
    .unwrap_or_else(|e| panic!("{}: {e}\n{}", gateway.name(), envoy.log()));
    assert_eq!(r.status(), 200);
    let debug = r
        .header("x-endpoint-picker-debug")
        .unwrap_or("")
        .to_string();
    assert_eq!(
        r.header("x-inference-pod"),
        Some("pod-b"),
        "{}: the least-loaded server serves (debug: {debug})",
        gateway.name()
    );
    assert!(
        debug.contains("picked="),
        "{}: the picker decided: {debug}",
        gateway.name()
    );
    println!("{}: routed to pod-b; {debug}", gateway.name());
}

#[test]
fn envoy_gateway_set_runs_and_routes() {
    runs_and_routes(Gateway::EnvoyGateway);
}

#[test]
fn istio_set_runs_and_routes() {
    runs_and_routes(Gateway::Istio);
}

#[test]
fn kgateway_set_runs_and_routes() {
    runs_and_routes(Gateway::Kgateway);
}

#[test]
fn envoy_gateway_native_set_runs_and_routes() {
    runs_and_routes(Gateway::EnvoyGatewayNative);
}

#[test]
fn istio_native_set_runs_and_routes() {
    runs_and_routes(Gateway::IstioNative);
}

#[test]
fn envoy_gateway_filter_only_set_runs_and_routes() {
    runs_and_routes_with(Gateway::EnvoyGateway, true);
}

#[test]
fn istio_filter_only_set_runs_and_routes() {
    runs_and_routes_with(Gateway::Istio, true);
}

#[test]
fn envoy_gateway_native_filter_only_set_runs_and_routes() {
    runs_and_routes_with(Gateway::EnvoyGatewayNative, true);
}

#[test]
fn istio_native_filter_only_set_runs_and_routes() {
    runs_and_routes_with(Gateway::IstioNative, true);
}

#[test]
fn filter_only_sets_form_valid_envoy_configs() {
    let docs = manifests("envoy-gateway-filter-only");
    let picker = &find(&docs, "EnvoyExtensionPolicy", None)["spec"]["wasm"][0]["config"];
    envoy_validate(&assemble_envoy_gateway(
        &docs,
        VALIDATE,
        &lb_endpoints(picker),
    ));
    envoy_validate(&assemble_istio(
        &manifests("istio-filter-only"),
        VALIDATE,
        true,
        None,
    ));
}
