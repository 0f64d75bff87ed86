//! Harness for the end-to-end tests: model-server processes and a real Envoy 1.40 with the
//! endpoint-picker module, all on loopback, started per test and killed on drop.
//!
//! Envoy comes from `ENVOY_BIN` (default `<repo>/.venv/bin/envoy`, installed by `make`), the
//! module from `PICKER_WASM` (default `<repo>/dist/endpoint_picker.wasm`). The Envoy
//! configuration is rendered by `envoy-config` from the picker JSON, as a user would.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A picker JSON (without `pool`) with flow control on (`flow_control` is its `flowControl`
/// section) in which one request in flight saturates an endpoint (`concurrency-detector`,
/// `maxConcurrency` 1), so the next one waits; objectives `critical` (priority 10) and `batch`
/// (-1, sheddable).
pub fn one_in_flight_picker(flow_control: Value) -> Value {
    json!({
        "featureGates": ["flowControl"],
        "plugins": [
            {"type": "concurrency-detector", "parameters": {"maxConcurrency": 1}},
            {"type": "queue-scorer"},
            {"type": "max-score-picker"}
        ],
        "saturationDetector": {"pluginRef": "concurrency-detector"},
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "queue-scorer"}, {"pluginRef": "max-score-picker"}
        ]}],
        "inferenceObjectives": [
            {"name": "critical", "priority": 10},
            {"name": "batch", "priority": -1}
        ],
        "flowControl": flow_control
    })
}

/// A real upstream `EndpointPickerConfig` document of `scheduler-core/testdata/upstream/`
/// (`file`), parsed as it is, ready to give the picker.
pub fn upstream_config(file: &str) -> Value {
    let path = repo_root()
        .join("scheduler-core/testdata/upstream")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    envoy_config::document::parse(file, &text).unwrap_or_else(|e| panic!("parsing {file}: {e}"))
}

/// The Envoy binary.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"))
}

/// The module under test.
pub fn wasm_path() -> PathBuf {
    std::env::var_os("PICKER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist/endpoint_picker.wasm"))
}

/// True when the suite runs against the native dynamic module (`E2E_BUILD=native`) instead of
/// the Wasm module: every [`Env`] then loads `libendpoint_picker.so`.
pub fn native() -> bool {
    std::env::var("E2E_BUILD").is_ok_and(|b| b == "native")
}

/// The directory holding `libendpoint_picker.so` (`PICKER_NATIVE_DIR`, default `<repo>/dist`).
pub fn native_dir() -> PathBuf {
    std::env::var_os("PICKER_NATIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist"))
}

/// The fake model-server binary: `FAKE_MODEL_SERVER`, else next to the test executable's
/// directory (`target/<profile>/fake-model-server`, built with the tests).
pub fn fake_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKE_MODEL_SERVER") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    profile_dir.join("fake-model-server")
}

/// The `model-sim` binary: `MODEL_SIM`, else `target/<profile>/model-sim` (built by
/// `make e2e` before the suites run).
pub fn model_sim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MODEL_SIM") {
        return PathBuf::from(p);
    }
    fake_server_bin().with_file_name("model-sim")
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    // Never the same port twice in one test process. The port is free only until its user
    // binds it, and the tests of one binary run in parallel: another test's `free_port` could
    // be handed the same port in between, hold it for a moment, and a server that failed to
    // bind would look started to `wait_for_port` (seen once: a backend refusing connections
    // right after it "started").
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut seen = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut port = 0;
    for _ in 0..64 {
        port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && !seen.contains(&port) {
            break;
        }
    }
    seen.push(port);
    port
}

/// Runs `envoy --mode validate` with `args` (the native module found in [`native_dir`]).
///
/// # Errors
/// Envoy's output when it refuses the configuration.
pub fn envoy_validate<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<(), String> {
    let out = Command::new(envoy_bin())
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_dir())
        .args(["--mode", "validate", "--log-level", "warn"])
        .args(args)
        .output()
        .map_err(|e| format!("run envoy: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("OK") {
        Ok(())
    } else {
        Err(text)
    }
}

fn wait_for_port(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        // A connection to itself does not count: the ports handed out are in the ephemeral
        // range, so while nothing listens yet, Linux can pick the same port as the source of
        // a connect attempt and join the socket to itself ("simultaneous open"). That made a
        // server that was still starting look started (seen in CI: its first request refused,
        // each time the first run after a rebuild, when the binary starts slowly).
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            if s.local_addr().ok() != s.peer_addr().ok() {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A fake model-server process.
pub struct Backend {
    /// Name in `x-inference-pod`.
    pub name: String,
    /// Listen address.
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Where the process's standard error goes (read when it stops answering).
    stderr_log: Option<PathBuf>,
}

impl Backend {
    /// Starts one on a port the kernel picks when the server binds (`--listen 127.0.0.1:0`); the
    /// server prints the address it bound, which is read back here. No port is chosen ahead of
    /// the bind, so no other process can take it in between (a chosen port is only free until
    /// someone binds it; that race once left a backend that looked started but had exited).
    pub fn spawn(name: &str) -> Backend {
        Backend::spawn_on(name, "127.0.0.1")
    }

    /// [`Backend::spawn`] on another loopback IP (`127.0.0.2`, …: Linux answers the whole
    /// 127/8 on `lo`), for tests where endpoints must differ by IP, not only by port.
    pub fn spawn_on(name: &str, ip: &str) -> Backend {
        let mut cmd = Command::new(fake_server_bin());
        cmd.args(["--listen", &format!("{ip}:0"), "--name", name]);
        let (mut child, log) = launch(name, cmd, Stdio::piped());
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let mut out = std::io::BufReader::new(out);
                let _ = std::io::BufRead::read_line(&mut out, &mut line);
                let _ = tx.send(line);
                // Drained until the server exits, so a later print never meets a closed pipe.
                let _ = std::io::copy(&mut out, &mut std::io::sink());
            } else {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "backend {name} did not start (printed {line:?}); its stderr:\n{}",
                    read_log(&log)
                )
            });
        Backend::running(name, addr, child, log)
    }

    /// Starts `cmd`, a model server that listens on `addr`, and waits until it accepts
    /// connections (its standard output is discarded, its standard error kept in a file that
    /// a failing [`Backend::set`] prints).
    pub fn spawn_command(name: &str, addr: SocketAddr, cmd: Command) -> Backend {
        let (child, log) = launch(name, cmd, Stdio::null());
        assert!(
            wait_for_port(addr, Duration::from_secs(10)),
            "backend {name} did not start; its stderr:\n{}",
            read_log(&log)
        );
        Backend::running(name, addr, child, log)
    }

    /// A started server `child` named `name`, listening on `addr`, its stderr in `log`.
    fn running(name: &str, addr: SocketAddr, child: Child, log: PathBuf) -> Backend {
        Backend {
            name: name.into(),
            addr,
            child: Some(child),
            stderr_log: Some(log),
        }
    }

    /// Pins its metrics and behaviour (fields of the fake server's `FakeState`).
    pub fn set(&self, state: Value) {
        // A refused connection is tried again for a moment (seen once right after start on a
        // loaded machine); a server that stays away fails the test with what it printed.
        let mut tries = 0;
        loop {
            let r = ureq::post(&format!("http://{}/admin/state", self.addr))
                .set("content-type", "application/json")
                .send_string(&state.to_string());
            match r {
                Ok(_) => return,
                Err(ureq::Error::Transport(_)) if tries < 10 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "admin/state of {}: {e}; its stderr:\n{}",
                    self.name,
                    self.stderr_log.as_deref().map(read_log).unwrap_or_default()
                ),
            }
        }
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
        if let Some(p) = self.stderr_log.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Spawns model server `name` from `cmd` with `stdout`, its standard error going to a fresh
/// file (returned with the child).
fn launch(name: &str, mut cmd: Command, stdout: Stdio) -> (Child, PathBuf) {
    let log = stderr_log_path(name);
    let child = cmd
        .stdout(stdout)
        .stderr(log_file(&log))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn model server {name}: {e}"));
    (child, log)
}

/// What a child wrote to its log file `path` so far (empty when unreadable).
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A fresh file for a model server's standard error, in the temporary directory.
fn stderr_log_path(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "e2e-backend-{}-{n}-{}.stderr",
        std::process::id(),
        name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    ))
}

/// `path` created for a child's output; the output is discarded when it cannot be.
fn log_file(path: &Path) -> Stdio {
    std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
}

/// An HTTP response as the tests read it.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Resp {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The server that answered (`x-inference-pod`).
    pub fn pod(&self) -> &str {
        self.header("x-inference-pod").unwrap_or("")
    }
    /// The endpoint the picker chose (`picked=<ip:port>` in the `x-endpoint-picker-debug`
    /// response header, which [`Env::post`] asks for), for servers that do not name themselves.
    pub fn picked(&self) -> &str {
        self.header("x-endpoint-picker-debug")
            .and_then(|d| d.strip_prefix("picked="))
            .and_then(|d| d.split(' ').next())
            .unwrap_or("")
    }
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn to_resp(r: ureq::Response) -> Resp {
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .filter_map(|n| {
            r.header(&n)
                .map(|v| (n.to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let mut body = String::new();
    let _ = r.into_reader().take(64 << 20).read_to_string(&mut body);
    Resp {
        status,
        headers,
        body,
    }
}

/// What to start.
pub struct EnvSpec {
    /// Backend names (one process each).
    pub backends: Vec<String>,
    /// Labels per backend (same order), merged into `pool.endpoints[].labels`.
    pub labels: Vec<Value>,
    /// Fields merged into the top level of the picker JSON (plugins, profiles, …).
    pub picker: Value,
    /// Fields merged into `pool`.
    pub pool: Value,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// The module to load (default [`wasm_path`]).
    pub wasm: Option<PathBuf>,
    /// The native module to load instead, by library name, when the suite runs against the
    /// native build (default `endpoint_picker`).
    pub native_module: Option<String>,
}

impl Default for EnvSpec {
    fn default() -> Self {
        EnvSpec {
            backends: vec!["pod-a".into(), "pod-b".into(), "pod-c".into()],
            labels: vec![],
            picker: json!({}),
            pool: json!({}),
            concurrency: 2,
            wasm: None,
            native_module: None,
        }
    }
}

/// How to start Envoy.
pub struct StartOptions {
    /// Worker threads.
    pub concurrency: u32,
    /// Module path.
    pub wasm: PathBuf,
    /// Rewrites the rendered YAML before Envoy reads it (e.g. to smuggle in a bad config).
    pub edit_yaml: Option<Box<dyn Fn(String) -> String>>,
    /// Wait until every endpoint was scraped once.
    pub wait_for_scrape: bool,
    /// Serve the picker filter and the pool's members from watched files (ECDS + EDS,
    /// `envoy-config render --xds-dir`), so [`Env::update_pool`] can change them live.
    pub xds: bool,
    /// Downstream limits of the rendered configuration.
    pub limits: envoy_config::limits::Limits,
    /// Load this native module (library name) instead of the Wasm one (default:
    /// `endpoint_picker` when [`native`], else none).
    pub native: Option<String>,
    /// Render without the bootstrap scraper (`envoy-config render --filter-only`).
    pub filter_only: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            concurrency: 2,
            wasm: wasm_path(),
            edit_yaml: None,
            wait_for_scrape: true,
            xds: false,
            limits: envoy_config::limits::Limits::default(),
            native: native().then(|| "endpoint_picker".to_string()),
            filter_only: false,
        }
    }
}

/// Backends plus a running Envoy with the picker.
pub struct Env {
    /// The model servers, in pool order.
    pub backends: Vec<Backend>,
    /// Envoy's inference listener.
    pub listen: SocketAddr,
    /// Envoy's admin port.
    pub admin_port: u16,
    /// The picker JSON Envoy was given.
    pub picker_json: Value,
    dir: PathBuf,
    wasm: PathBuf,
    xds_dir: Option<PathBuf>,
    native: Option<String>,
    envoy: Option<Child>,
}

/// Sets every field of the object `from` in the object `into` (one level, replacing).
pub fn merge(into: &mut Value, from: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

impl Env {
    /// Starts the backends and Envoy, and waits until every endpoint has been scraped.
    pub fn start(spec: EnvSpec) -> Env {
        let backends: Vec<Backend> = spec.backends.iter().map(|n| Backend::spawn(n)).collect();
        Self::start_over(backends, spec)
    }

    /// [`Env::start`] over already-running model servers (any implementation), in pool order;
    /// `spec.backends` is not used.
    pub fn start_over(backends: Vec<Backend>, spec: EnvSpec) -> Env {
        let endpoints: Vec<Value> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut labels = json!({"engine-type": "vllm"});
                if let Some(l) = spec.labels.get(i) {
                    merge(&mut labels, l);
                }
                json!({"address": b.addr.to_string(), "labels": labels})
            })
            .collect();
        let mut pool = json!({"cluster": "inference_pool", "endpoints": endpoints, "debug": true});
        merge(&mut pool, &spec.pool);
        let mut picker = json!({"pool": pool});
        merge(&mut picker, &spec.picker);
        let defaults = StartOptions::default();
        let opts = StartOptions {
            concurrency: spec.concurrency,
            wasm: spec.wasm.unwrap_or_else(wasm_path),
            native: defaults
                .native
                .as_ref()
                .and(spec.native_module)
                .or(defaults.native.clone()),
            ..defaults
        };
        Self::start_with(backends, picker, opts)
            .unwrap_or_else(|log| panic!("envoy did not start:\n{log}"))
    }

    /// Starts Envoy for `picker` over already-running `backends`; `Err` carries Envoy's log when
    /// it exits during start-up (e.g. it refused the configuration).
    ///
    /// The listener and admin ports are free when chosen but are bound only when Envoy starts,
    /// so a test running in parallel can take one first; Envoy then exits with "Address already
    /// in use", and the start is retried on new ports (up to three times).
    pub fn start_with(
        mut backends: Vec<Backend>,
        picker: Value,
        opts: StartOptions,
    ) -> Result<Env, String> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(backends, &picker, &opts) {
                Ok(env) => return Ok(env),
                Err((log, back)) if attempts < 3 && log.contains("Address already in use") => {
                    backends = back;
                }
                Err((log, _)) => return Err(log),
            }
        }
    }

    /// One start attempt; on failure, Envoy's log and the backends back.
    fn try_start(
        backends: Vec<Backend>,
        picker: &Value,
        opts: &StartOptions,
    ) -> Result<Env, (String, Vec<Backend>)> {
        let fail = |mut env: Env| {
            let log = env.log();
            (log, std::mem::take(&mut env.backends))
        };
        let concurrency = opts.concurrency;
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin_port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "e2e-envoy-{}-{}",
            std::process::id(),
            listen.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let wasm_path = opts.wasm.display().to_string();
        let xds_dir = opts.xds.then(|| dir.join("xds"));
        if let Some(x) = &xds_dir {
            if let Err(e) = envoy_config::xds::write(
                x,
                &envoy_config::render::module(&wasm_path, opts.native.as_deref()),
                picker,
            ) {
                return Err((e, backends));
            }
        }
        let yaml = envoy_config::render::render(&envoy_config::render::RenderInput {
            picker: picker.clone(),
            wasm_path,
            listen,
            admin_port,
            mode: envoy_config::render::Mode::Picker,
            xds_dir: xds_dir.clone(),
            limits: opts.limits.clone(),
            access_log: envoy_config::render::AccessLog::File(dir.join("access.log")),
            native: opts.native.clone(),
            filter_only: opts.filter_only,
        });
        let yaml = match yaml {
            Ok(y) => y,
            Err(e) => return Err((e, backends)),
        };
        let yaml = match &opts.edit_yaml {
            Some(f) => f(yaml),
            None => yaml,
        };
        let cfg = dir.join("envoy.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let log = dir.join("envoy.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&cfg)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--disable-hot-restart",
                "--log-level",
                "info",
            ])
            .arg("--log-path")
            .arg(&log)
            .args(["--file-flush-interval-msec", "50"])
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn envoy");
        let mut env = Env {
            backends,
            listen,
            admin_port,
            picker_json: picker.clone(),
            dir,
            wasm: opts.wasm.clone(),
            xds_dir,
            native: opts.native.clone(),
            envoy: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = env.envoy.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    std::thread::sleep(Duration::from_millis(200));
                    return Err(fail(env));
                }
            }
            let ready = ureq::get(&format!("http://127.0.0.1:{admin_port}/ready"))
                .timeout(Duration::from_secs(1))
                .call()
                .is_ok();
            if ready
                && (!opts.wait_for_scrape
                    || env.stat("endpoint_picker.scrape.success").unwrap_or(0)
                        >= env.backends.len() as u64)
            {
                // One more tick so the snapshot with every endpoint is published.
                std::thread::sleep(Duration::from_millis(150));
                return Ok(env);
            }
            if Instant::now() > deadline {
                let (log, backends) = fail(env);
                return Err((format!("timed out waiting for Envoy\n{log}"), backends));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rewrites the watched ECDS and EDS files for `picker` (an Env started with
    /// [`StartOptions::xds`]); Envoy applies them without a restart.
    pub fn update_pool(&mut self, picker: Value) {
        let dir = self
            .xds_dir
            .as_ref()
            .expect("started with StartOptions::xds");
        let module =
            envoy_config::render::module(&self.wasm.display().to_string(), self.native.as_deref());
        envoy_config::xds::write(dir, &module, &picker).expect("write xds files");
        self.picker_json = picker;
    }

    /// Rewrites only the watched EDS file (an Env started with [`StartOptions::xds`]): the pool
    /// cluster's members become `hosts`, as an xDS server would announce a scaled Deployment.
    pub fn set_cluster_hosts(&self, hosts: &[SocketAddr]) {
        let dir = self
            .xds_dir
            .as_ref()
            .expect("started with StartOptions::xds");
        let cluster = self.picker_json["pool"]["cluster"]
            .as_str()
            .unwrap_or("inference_pool");
        envoy_config::xds::write_eds(dir, cluster, hosts).expect("write the EDS file");
    }

    /// Envoy's process id, while it runs (`None` once it exited).
    pub fn envoy_pid(&mut self) -> Option<u32> {
        let c = self.envoy.as_mut()?;
        match c.try_wait() {
            Ok(None) => Some(c.id()),
            _ => None,
        }
    }

    /// Asks Envoy to exit (admin `POST /quitquitquit`) and waits up to `within` for it: its exit
    /// status, or `None` while it still runs (then dropping the `Env` kills it). This runs the
    /// module's shutdown hooks; which destroy hooks Envoy calls on the way out is not checked.
    pub fn quit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = ureq::post(&format!(
            "http://127.0.0.1:{}/quitquitquit",
            self.admin_port
        ))
        .timeout(Duration::from_secs(5))
        .call();
        let child = self.envoy.as_mut()?;
        let deadline = std::time::Instant::now() + within;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return None,
            }
        }
    }

    /// The listener's access log so far (one JSON line per request).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// POSTs `body` to `path` through Envoy with extra `headers`.
    pub fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req =
            ureq::post(&format!("http://{}{path}", self.listen)).timeout(Duration::from_secs(30));
        req = req.set("content-type", "application/json");
        // Test clients ask for the explanation (the config allows it: `pool.debug`).
        req = req.set("x-endpoint-picker-debug", "1");
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_string(body) {
            Ok(r) => to_resp(r),
            Err(ureq::Error::Status(_, r)) => to_resp(r),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    /// A completions request for `model` with `prompt`.
    pub fn complete(&self, model: &str, prompt: &str, headers: &[(&str, &str)]) -> Resp {
        let body = json!({"model": model, "prompt": prompt, "max_tokens": 3}).to_string();
        self.post("/v1/completions", &body, headers)
    }

    /// Sends raw HTTP/1.1 request bytes to Envoy's listener and reads the response
    /// (`Connection: close` must be in the request).
    pub fn raw(&self, request: &[u8]) -> Resp {
        use std::io::Write;
        let mut s = TcpStream::connect(self.listen).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        s.write_all(request).expect("write");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Resp {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// GETs `path` through Envoy.
    pub fn get(&self, path: &str) -> Resp {
        match ureq::get(&format!("http://{}{path}", self.listen))
            .timeout(Duration::from_secs(30))
            .call()
        {
            Ok(r) => to_resp(r),
            Err(ureq::Error::Status(_, r)) => to_resp(r),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// Envoy's admin `/stats` text.
    pub fn stats(&self) -> String {
        ureq::get(&format!("http://127.0.0.1:{}/stats", self.admin_port))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default()
    }

    /// A stat whose name ends with `suffix` (custom Wasm stats carry a `wasmcustom.` prefix,
    /// the native module's `dynamicmodulescustom.`, and its labelled stats are shown as
    /// `<name>.<label>.<value>`, read here as `<name>.<value>` like the Wasm build's names);
    /// several matches are summed.
    pub fn stat(&self, suffix: &str) -> Option<u64> {
        let mut found = None;
        for line in self.stats().lines() {
            if let Some((name, value)) = line.split_once(": ") {
                let name = unlabel(name);
                let name = name.as_str();
                if name == suffix || name.ends_with(&format!(".{suffix}")) {
                    if let Ok(v) = value.trim().parse::<u64>() {
                        *found.get_or_insert(0) += v;
                    }
                }
            }
        }
        found
    }

    /// The sum of every stat whose name contains `part` (e.g. every `endpoint_picker.picks.*`).
    pub fn stat_sum(&self, part: &str) -> u64 {
        self.stats()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| unlabel(n).contains(part))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    }

    /// Envoy's `/stats/prometheus` text.
    pub fn prometheus(&self) -> String {
        ureq::get(&format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.admin_port
        ))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default()
    }

    /// The backend that is `name`.
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .expect("backend")
    }

    /// Waits (polling every 20 ms, up to `within`) until `f` holds; returns the time it took.
    /// Waits until the request counts the module aggregates in memory (picks, local replies and
    /// the GIE families in the native build) have reached Envoy's stats: they are flushed at most
    /// once a second, on a request or the scraper's tick. The Wasm build counts picks and
    /// replies at once, so there this returns immediately.
    pub fn settle_stats(&self) {
        if native() {
            std::thread::sleep(Duration::from_millis(1500));
        }
    }

    pub fn wait_until(
        &self,
        within: Duration,
        mut f: impl FnMut(&Env) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if f(self) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits until the picker's snapshot reflects freshly pinned metrics (two scrape ticks).
    pub fn settle(&self) {
        let before = self.stat("endpoint_picker.snapshot.publishes").unwrap_or(0);
        self.wait_until(Duration::from_secs(5), |e| {
            e.stat("endpoint_picker.snapshot.publishes").unwrap_or(0) >= before + 3
        });
    }
}

/// The picks and local-reply series under one name in both builds: `…endpoint_picker.picks.<ip:port>.<profile>`
/// and `…endpoint_picker.local_replies.<status>`. The Wasm build writes labels into the stat
/// name (`endpoint_picker_picks;endpoint=<ip:port>;profile=<p>`), the native build shows its
/// labels as `endpoint_picker_picks.endpoint.<ip:port>.profile.<p>` in `/stats`.
fn unlabel(name: &str) -> String {
    name.replacen(
        "endpoint_picker_local_replies;status=",
        "endpoint_picker.local_replies.",
        1,
    )
    .replacen(
        "endpoint_picker_local_replies.status.",
        "endpoint_picker.local_replies.",
        1,
    )
    .replacen(
        "endpoint_picker_picks;endpoint=",
        "endpoint_picker.picks.",
        1,
    )
    .replacen(
        "endpoint_picker_picks.endpoint.",
        "endpoint_picker.picks.",
        1,
    )
    .replacen(";profile=", ".", 1)
    .replacen(".profile.", ".", 1)
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.envoy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three fake model servers (`pod-a`, `pod-b`, `pod-c`) and the picker JSON for them
/// (`pool.cluster` `inference_pool`, `engine-type: vllm` labels), with `pool_extra` merged into
/// `pool`: for tests that start Envoy with [`Env::start_with`].
pub fn three_backends(pool_extra: Value) -> (Vec<Backend>, Value) {
    let backends: Vec<Backend> = ["pod-a", "pod-b", "pod-c"]
        .iter()
        .map(|n| Backend::spawn(n))
        .collect();
    let endpoints: Vec<Value> = backends
        .iter()
        .map(|b| json!({"address": b.addr.to_string(), "labels": {"engine-type": "vllm"}}))
        .collect();
    let mut pool = json!({"cluster": "inference_pool", "endpoints": endpoints});
    merge(&mut pool, &pool_extra);
    (backends, json!({ "pool": pool }))
}

/// Time until `pod` stops receiving completions for `model` (none for 500 ms), polling every
/// 20 ms; `None` when it still receives some after `within`.
pub fn time_until_no_traffic(
    env: &Env,
    model: &str,
    pod: &str,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut last_seen = Duration::ZERO;
    while start.elapsed() < within {
        if env.complete(model, "probe", &[]).pod() == pod {
            last_seen = start.elapsed();
        } else if start.elapsed() > last_seen + Duration::from_millis(500) {
            return Some(last_seen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
