//! Envoy refuses an invalid picker configuration, and its log carries the scheduler-core error
//! with the field path, the same text the offline CLI prints.

use e2e::{Backend, Env, StartOptions};
use serde_json::json;

#[test]
fn envoy_refuses_an_invalid_config_with_the_field_path_in_its_log() {
    let backends = vec![Backend::spawn("pod-a")];
    let picker = json!({
        "pool": {"cluster": "inference_pool", "endpoints": [{"address": backends[0].addr.to_string()}]},
        "plugins": [{"type": "queue-scorer"}],
        "schedulingProfiles": [{"name": "default", "plugins": [{"pluginRef": "queue-scorer"}, {"pluginRef": "kv-scorer"}]}]
    });
    // The renderer validates too, so render a valid document and break it in the YAML, as a
    // hand-edited envoy.yaml would be.
    let valid = {
        let mut p = picker.clone();
        p["schedulingProfiles"][0]["plugins"]
            .as_array_mut()
            .unwrap()
            .pop();
        p
    };
    let opts = StartOptions {
        edit_yaml: Some(Box::new(|y: String| {
            y.replace(r#""pluginRef": "queue-scorer""#, r#""pluginRef": "foo""#)
        })),
        wait_for_scrape: false,
        ..StartOptions::default()
    };
    let err = match Env::start_with(backends, valid, opts) {
        Ok(_) => panic!("Envoy accepted an invalid configuration"),
        Err(log) => log,
    };
    assert!(
        err.contains("schedulingProfiles[0].plugins[0].pluginRef: undefined plugin 'foo'"),
        "{err}"
    );

    // The CLI prints the same text for the same mistake.
    let cli = envoy_config::validate::validate(&picker.to_string()).unwrap_err();
    assert_eq!(
        cli,
        "schedulingProfiles[0].plugins[1].pluginRef: undefined plugin 'kv-scorer'"
    );
}

/// llm-d's EPP configuration for running without Kubernetes (`file-discovery` plus its default
/// profile, the one `make bench-peers` gives the EPP) becomes a working Envoy: its endpoints
/// file is the pool.
#[test]
fn an_llm_d_file_discovery_config_routes_to_the_files_endpoints() {
    let backends = vec![e2e::Backend::spawn("fd-a"), e2e::Backend::spawn("fd-b")];
    let dir = std::env::temp_dir().join(format!("e2e-file-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("endpoints.yaml");
    let mut eps = String::from("endpoints:\n");
    for b in &backends {
        eps.push_str(&format!(
            "- name: {}\n  address: {}\n  port: \"{}\"\n",
            b.name,
            b.addr.ip(),
            b.addr.port()
        ));
    }
    std::fs::write(&file, eps).unwrap();
    let text = std::fs::read_to_string(e2e::repo_root().join("scripts/peers/epp-config.yaml"))
        .unwrap()
        .replace("@ENDPOINTS_FILE@", &file.display().to_string());
    let doc = envoy_config::document::parse("epp-config.yaml", &text).unwrap();
    let picker = envoy_config::document::with_pool_and_discovery(doc, "inference_pool").unwrap();
    assert_eq!(
        picker["pool"]["endpoints"].as_array().map(Vec::len),
        Some(2)
    );
    let env = e2e::Env::start_with(backends, picker, e2e::StartOptions::default())
        .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"));
    let mut served = std::collections::HashSet::new();
    for i in 0..12 {
        let r = env.post(
            "/v1/completions",
            &format!(r#"{{"model":"m","prompt":"request {i} with its own text"}}"#),
            &[],
        );
        assert_eq!(r.status, 200, "{r:?}");
        served.insert(r.header("x-inference-pod").unwrap_or_default().to_string());
    }
    assert!(
        served.iter().all(|s| s == "fd-a" || s == "fd-b"),
        "{served:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A metrics source with `scheme: https` loads (GIE's `metrics-data-source` parameter): the
/// rendered Envoy configuration gives the cluster the scraper fetches through an upstream TLS
/// context — the pool's own cluster, or the scrape-only cluster when metrics have their own
/// port — verifying certificates against the system CA bundle only without
/// `insecureSkipVerify`; Envoy 1.40 accepts each render (`--mode validate`), for both builds.
#[test]
fn an_https_metrics_source_renders_a_tls_scrape_cluster_envoy_accepts() {
    let dir = std::env::temp_dir().join(format!("e2e-https-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (metrics_port, skip_verify, native) in [
        (None, true, false),
        (None, false, true),
        (Some(9443), false, false),
        (Some(9443), true, true),
    ] {
        let mut endpoint = json!({"address": "127.0.0.1:8443"});
        if let Some(p) = metrics_port {
            endpoint["metricsPort"] = json!(p);
        }
        let picker = json!({
            "pool": {"cluster": "inference_pool", "endpoints": [endpoint]},
            "plugins": [{"type": "metrics-data-source",
                         "parameters": {"scheme": "https", "insecureSkipVerify": skip_verify}}],
            "dataLayer": {"sources": [{"pluginRef": "metrics-data-source"}]}
        });
        let yaml = envoy_config::render::render(&envoy_config::render::RenderInput {
            picker,
            wasm_path: e2e::wasm_path().display().to_string(),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_port: 0,
            mode: envoy_config::render::Mode::Picker,
            xds_dir: None,
            limits: envoy_config::limits::Limits::default(),
            access_log: envoy_config::render::AccessLog::None,
            native: native.then(|| "endpoint_picker".to_string()),
            filter_only: false,
        })
        .unwrap();
        let case = format!(
            "metricsPort {metrics_port:?}, insecureSkipVerify {skip_verify}, native {native}"
        );
        // The TLS context sits on the cluster the scraper uses, and only there.
        let clusters = &yaml[yaml.find("  clusters:").unwrap()..];
        let tls_in = |name: &str| {
            let at = clusters.find(&format!("- name: {name}")).unwrap();
            let rest = &clusters[at + 1..];
            let end = rest.find("\n  - name: ").map_or(rest.len(), |e| e);
            rest[..end].contains("envoy.transport_sockets.tls")
        };
        match metrics_port {
            None => assert!(tls_in("inference_pool"), "{case}:\n{yaml}"),
            Some(_) => {
                assert!(tls_in("endpoint_picker_metrics"), "{case}:\n{yaml}");
                assert!(!tls_in("inference_pool"), "{case}:\n{yaml}");
            }
        }
        assert_eq!(
            yaml.contains("trusted_ca: { filename: /etc/ssl/certs/ca-certificates.crt }"),
            !skip_verify,
            "{case}:\n{yaml}"
        );
        let file = dir.join("envoy.yaml");
        std::fs::write(&file, &yaml).unwrap();
        if let Err(text) = e2e::envoy_validate(&[std::ffi::OsStr::new("-c"), file.as_os_str()]) {
            panic!("{case}: envoy --mode validate:\n{text}\n{yaml}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Serves `backend` over TLS on a loopback port: a second Envoy terminating TLS with a
/// self-signed certificate made by `openssl` for 127.0.0.1. Returns the process, its address
/// and its admin port.
fn tls_front(
    dir: &std::path::Path,
    backend: std::net::SocketAddr,
) -> (std::process::Child, String, u16) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
    let (port, admin) = (e2e::free_port(), e2e::free_port());
    let yaml = format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: tls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: "{cert}" }}
              private_key: {{ filename: "{key}" }}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: tls
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: backend }} }}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: "{ip}", port_value: {bport} }} }} }}
"#,
        cert = cert.display(),
        key = key.display(),
        ip = backend.ip(),
        bport = backend.port(),
    );
    let cfg = dir.join("front.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let child = std::process::Command::new(e2e::envoy_bin())
        .args(["--base-id", &port.to_string(), "--log-level", "warn", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the TLS front");
    let start = std::time::Instant::now();
    while ureq::get(&format!("http://127.0.0.1:{admin}/ready"))
        .call()
        .is_err()
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "TLS front not ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, format!("127.0.0.1:{port}"), admin)
}

/// A model server reachable only over TLS, with `scheme: https` on the metrics source: the
/// picker scrapes it and routes to it through the TLS cluster the renderer adds, and the
/// server's side counts the TLS handshakes.
#[test]
fn a_model_server_behind_tls_is_scraped_and_served_over_https() {
    let dir = std::env::temp_dir().join(format!("e2e-tls-front-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let backend = Backend::spawn("pod-tls");
    let (mut front, address, front_admin) = tls_front(&dir, backend.addr);
    let picker = json!({
        "pool": {"cluster": "inference_pool", "endpoints": [{"address": address}]},
        "plugins": [
            {"type": "metrics-data-source", "parameters": {"scheme": "https"}},
            {"type": "queue-scorer"}, {"type": "max-score-picker"}
        ],
        "dataLayer": {"sources": [{"pluginRef": "metrics-data-source"}]},
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}]}]
    });
    // Waits until the endpoint was scraped (over TLS: the front speaks nothing else).
    let env = Env::start_with(vec![backend], picker, StartOptions::default());
    let env = match env {
        Ok(e) => e,
        Err(log) => {
            let _ = front.kill();
            panic!("{log}");
        }
    };
    let r = env.complete("meta-llama/Llama-3.1-8B-Instruct", "over TLS", &[]);
    let handshakes = ureq::get(&format!(
        "http://127.0.0.1:{front_admin}/stats?filter=ssl.handshake"
    ))
    .call()
    .ok()
    .and_then(|r| r.into_string().ok())
    .unwrap_or_default();
    let _ = front.kill();
    let _ = front.wait();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "pod-tls");
    let n: u64 = handshakes
        .lines()
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok())
        .sum();
    assert!(n >= 1, "TLS handshakes at the server: {handshakes}");
}
