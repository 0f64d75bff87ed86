//! `envoy-config`: validate an endpoint-picker configuration offline, or render a complete
//! Envoy configuration for it.
//!
//! ```text
//! envoy-config validate picker.json
//! envoy-config render --config picker.json --wasm dist/endpoint_picker.wasm --listen 0.0.0.0:8080 --admin-port 9901
//! envoy-config render --config picker.json --xds-dir /etc/picker-xds --out envoy.yaml   # pool changes without restart
//! envoy-config xds --config picker.json --dir /etc/picker-xds                            # ...the change itself
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use envoy_config::deploy::{self, DeployInput, Gateway};
use envoy_config::limits::Limits;
use envoy_config::render::{module, render, AccessLog, Mode, RenderInput};

#[derive(Parser)]
#[command(
    version,
    about = "Validate endpoint-picker configurations and render Envoy configurations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a picker JSON with exactly the errors the module would log in Envoy.
    Validate {
        /// The picker configuration (JSON or YAML, `-` for stdin): the module's JSON, or a bare
        /// GIE/llm-d EndpointPickerConfig (whose GIE part is checked alone).
        config: String,
    },
    /// Print the JSON Schema of the picker configuration (the committed
    /// `envoy-config/picker.schema.json` is this output).
    Schema,
    /// Turn GIE's InferenceObjective and InferenceModelRewrite manifests (YAML, several
    /// documents per file) into the picker configuration's `inferenceObjectives` and
    /// `inferenceModelRewrites`, which upstream's EPP reads from the cluster instead. Prints the
    /// picker JSON with them (`--into`), or the two fields alone; the result is validated.
    Objects {
        /// Manifest files (`-` for stdin).
        #[arg(required = true)]
        manifests: Vec<String>,
        /// Keep only the objects whose `spec.poolRef.name` is this pool.
        #[arg(long)]
        pool: Option<String>,
        /// A picker configuration (JSON or YAML) to put them into.
        #[arg(long)]
        into: Option<String>,
    },
    /// Render a complete Envoy configuration (YAML) for a picker JSON.
    Render {
        /// The picker configuration (JSON or YAML, `-` for stdin). A bare EndpointPickerConfig
        /// gets `pool.cluster: inference_pool`; its endpoints then come from `--xds-dir` (EDS), or from
        /// the endpoints file of its `file-discovery` plugin (llm-d's discovery without Kubernetes).
        #[arg(long)]
        config: String,
        /// Path of the .wasm module. It must exist (made absolute in the output, so the
        /// configuration works from any directory) unless `--module-elsewhere`.
        #[arg(long, default_value = "dist/endpoint_picker.wasm")]
        wasm: String,
        /// The module is where Envoy will run, not here (another machine or a container
        /// image): render `--wasm` as given, unchecked.
        #[arg(long)]
        module_elsewhere: bool,
        /// Listener address for inference traffic.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Admin port (bound to 127.0.0.1).
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
        /// The inference listener's access log (one JSON line per request with the pick):
        /// `stdout`, `none`, or a file path.
        #[arg(long, default_value = "stdout")]
        access_log: String,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<String>,
        /// `picker`, or a plain-Envoy baseline over the same endpoints: `round-robin`,
        /// `least-request`.
        #[arg(long, default_value = "picker")]
        mode: String,
        /// Serve the picker filter (ECDS) and the pool's members (EDS) from files in this
        /// directory, which Envoy watches: a pool change is then `envoy-config xds`, with no
        /// restart. The files are written too.
        #[arg(long)]
        xds_dir: Option<PathBuf>,
        /// Render the native dynamic module instead of the Wasm module: `--native` for
        /// libendpoint_picker.so, `--native NAME` for libNAME.so (found through
        /// $ENVOY_DYNAMIC_MODULES_SEARCH_PATH).
        #[arg(long, num_args = 0..=1, default_missing_value = envoy_config::blocks::NATIVE_MODULE_NAME)]
        native: Option<String>,
        /// No bootstrap scraper: the picker filter scrapes the pool itself, so the HTTP filter
        /// is the whole deployment (Wasm: a worker's standby scraper; native: the filter
        /// configuration's scraper).
        #[arg(long)]
        filter_only: bool,
        /// A further path prefix to route to the model servers (repeatable; by default only the
        /// inference API paths are routed and everything else gets a 404). `/` routes all.
        #[arg(long = "route-prefix")]
        route_prefixes: Vec<String>,
        /// Seconds a client has to send its whole request, body included.
        #[arg(long, default_value_t = Limits::default().request_timeout_s)]
        request_timeout: u64,
        /// Seconds a client has to send its request headers.
        #[arg(long, default_value_t = Limits::default().request_headers_timeout_s)]
        request_headers_timeout: u64,
        /// Downstream connections Envoy accepts across all listeners.
        #[arg(long, default_value_t = Limits::default().max_connections)]
        max_connections: u64,
        /// Heap size (bytes) the overload manager measures pressure against.
        #[arg(long, default_value_t = Limits::default().max_heap_bytes)]
        max_heap_bytes: u64,
    },
    /// Render the Kubernetes manifests for a gateway (envoy-gateway, istio, kgateway,
    /// envoy-gateway-native, istio-native).
    Deploy {
        /// `envoy-gateway`, `istio`, `kgateway`, `envoy-gateway-native` or `istio-native`.
        #[arg(long)]
        gateway: String,
        /// The picker configuration (JSON or YAML, `-` for stdin); pool.endpoints are pod IPs
        /// (the native sets follow the Service instead, so a bare EndpointPickerConfig works).
        #[arg(long)]
        config: String,
        /// OCI image holding plugin.wasm (`make oci`).
        #[arg(long)]
        image: String,
        /// Namespace of the resources.
        #[arg(long, default_value = "llm")]
        namespace: String,
        /// The model servers' Service and port.
        #[arg(long, default_value = "vllm")]
        service: String,
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// No bootstrap change (Envoy Gateway and Istio, both builds): the picker filter scrapes
        /// the pool itself, through the serving cluster, so the filter attachment and the cluster
        /// patch are the whole deployment. kgateway's set always needs its overlay.
        #[arg(long)]
        filter_only: bool,
        /// OCI image with the model's tokenizer.json and tokenizer_config.json at its root
        /// (native sets, precise prefix cache): mounted at /opt/llm-tokenizer, where every
        /// token-producer without a tokenizerPath is pointed.
        #[arg(long)]
        tokenizer_image: Option<String>,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<String>,
    },
    /// Replace pool.endpoints with the ready pods of Kubernetes EndpointSlices (the JSON of
    /// `kubectl get endpointslices -l kubernetes.io/service-name=<svc> -o json`); prints the
    /// picker JSON. Re-render and apply the filter configuration: no proxy restart.
    Pool {
        /// The picker configuration (JSON).
        #[arg(long)]
        config: String,
        /// The EndpointSlice list (JSON, `-` for stdin).
        #[arg(long)]
        endpoint_slices: String,
        /// The Service port's name (needed when the slices have several ports).
        #[arg(long)]
        port_name: Option<String>,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<String>,
    },
    /// Validate Kubernetes manifests offline against CRD schemas (strict: unknown fields fail).
    Check {
        /// Directory of CRD YAML files (searched recursively).
        #[arg(long, default_value = "envoy-config/deploy/crds")]
        crds: PathBuf,
        /// Manifest files (multi-document YAML).
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
    },
    /// (Re)write the ECDS and EDS files of a `render --xds-dir` configuration. Envoy applies
    /// them in place: new endpoints are scraped and picked without a restart.
    Xds {
        /// The picker configuration (JSON, `-` for stdin).
        #[arg(long)]
        config: String,
        /// Path of the .wasm module as Envoy will see it.
        #[arg(long, default_value = "dist/endpoint_picker.wasm")]
        wasm: String,
        /// The directory given to `render --xds-dir`.
        #[arg(long)]
        dir: PathBuf,
        /// The filter configuration is for a native module (`--native [NAME]`, as for render).
        #[arg(long, num_args = 0..=1, default_missing_value = envoy_config::blocks::NATIVE_MODULE_NAME)]
        native: Option<String>,
    },
}

fn write_out(out: Option<String>, text: &str) -> Result<(), String> {
    match out {
        Some(path) => std::fs::write(&path, text).map_err(|e| format!("{path}: {e}")),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// A picker configuration, JSON or YAML, with a `pool` section (`pool.cluster`
/// `inference_pool` added to a bare EndpointPickerConfig, and its `file-discovery` file's
/// endpoints).
fn read_config(path: &str) -> Result<serde_json::Value, String> {
    let doc = envoy_config::document::parse(path, &read(path)?)?;
    envoy_config::document::with_pool_and_discovery(doc, "inference_pool")
}

fn read_json(path: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(&read(path)?).map_err(|e| format!("{path}: {e}"))
}

fn read(path: &str) -> Result<String, String> {
    if path == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Schema => {
            let schema = scheduler_core::config::schema::json_schema();
            let text = serde_json::to_string_pretty(&schema).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        Command::Objects {
            manifests,
            pool,
            into,
        } => {
            let files = manifests
                .iter()
                .map(|m| Ok((m.clone(), read(m)?)))
                .collect::<Result<Vec<_>, String>>()?;
            let objects = envoy_config::objects::read_all(&files, pool.as_deref())?;
            for (kind, name, why) in &objects.skipped {
                eprintln!("skipped {kind} '{name}': {why}");
            }
            let base = match &into {
                Some(path) => envoy_config::document::parse(path, &read(path)?)?,
                None => serde_json::json!({}),
            };
            let doc = envoy_config::objects::merge_into(base, &objects);
            // The loader's own checks (weights, match types, names), at the field's path.
            for w in envoy_config::validate::validate_document(&doc)? {
                eprintln!("warning: {w}");
            }
            let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            println!("{text}");
            Ok(())
        }
        Command::Validate { config } => {
            let doc = envoy_config::document::parse(&config, &read(&config)?)?;
            let warnings = envoy_config::validate::validate_document(&doc)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            if envoy_config::document::has_pool(&doc) {
                println!("{config}: valid");
            } else {
                println!("{config}: valid (an EndpointPickerConfig without a pool section)");
            }
            Ok(())
        }
        Command::Render {
            config,
            wasm,
            module_elsewhere,
            listen,
            admin_port,
            access_log,
            out,
            mode,
            xds_dir,
            native,
            filter_only,
            route_prefixes,
            request_timeout,
            request_headers_timeout,
            max_connections,
            max_heap_bytes,
        } => {
            let mode = match mode.as_str() {
                "picker" => Mode::Picker,
                "round-robin" => Mode::RoundRobin,
                "least-request" => Mode::LeastRequest,
                other => {
                    return Err(format!(
                        "unknown mode '{other}' (picker, round-robin, least-request)"
                    ))
                }
            };
            let picker = read_config(&config)?;
            let limits = Limits {
                request_headers_timeout_s: request_headers_timeout,
                request_timeout_s: request_timeout,
                max_connections,
                max_heap_bytes,
                extra_prefixes: route_prefixes,
                extra_paths: Vec::new(),
            };
            let input = |picker: serde_json::Value, wasm_path: String| RenderInput {
                picker,
                wasm_path,
                listen,
                admin_port,
                mode,
                xds_dir: xds_dir.clone(),
                limits: limits.clone(),
                access_log: AccessLog::parse(&access_log),
                native: native.clone(),
                filter_only,
            };
            // The configuration's own errors first, then the module's.
            let mut yaml = render(&input(picker.clone(), wasm.clone()))?;
            let wasm = if matches!(mode, Mode::Picker) && !module_elsewhere {
                let checked = check_module(&wasm, native.as_deref())?;
                if checked != wasm {
                    yaml = render(&input(picker.clone(), checked.clone()))?;
                }
                checked
            } else {
                wasm
            };
            if let (Some(dir), Mode::Picker) = (&xds_dir, mode) {
                envoy_config::xds::write(dir, &module(&wasm, native.as_deref()), &picker)?;
            }
            write_out(out, &yaml)
        }
        Command::Deploy {
            gateway,
            config,
            image,
            namespace,
            service,
            port,
            filter_only,
            tokenizer_image,
            out,
        } => {
            let gateway = Gateway::parse(&gateway)?;
            let mut input = DeployInput::example(read_config(&config)?, &image);
            input.namespace = namespace;
            input.service = service;
            input.port = port;
            input.filter_only = filter_only;
            input.tokenizer_image = tokenizer_image;
            write_out(out, &deploy::render(gateway, &input)?)
        }
        Command::Pool {
            config,
            endpoint_slices,
            port_name,
            out,
        } => {
            let picker = envoy_config::slices::pool_from_slices(
                &read_json(&config)?,
                &read(&endpoint_slices)?,
                port_name.as_deref(),
            )?;
            let text = serde_json::to_string_pretty(&picker).map_err(|e| e.to_string())?;
            write_out(out, &format!("{text}\n"))
        }
        Command::Check { crds, manifests } => {
            let set = envoy_config::crd::CrdSet::load_dir(&crds)?;
            let mut failures = Vec::new();
            for path in &manifests {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let docs = envoy_config::crd::documents(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                for doc in &docs {
                    if let Err(errors) = set.validate(doc) {
                        failures.extend(
                            errors
                                .into_iter()
                                .map(|e| format!("{}: {e}", path.display())),
                        );
                    }
                }
                println!("{}: {} documents checked", path.display(), docs.len());
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("\n"))
            }
        }
        Command::Xds {
            config,
            wasm,
            dir,
            native,
        } => {
            envoy_config::xds::write(
                &dir,
                &module(&wasm, native.as_deref()),
                &read_json(&config)?,
            )?;
            println!("{}: picker filter and pool members written", dir.display());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The module a rendered configuration loads must exist: the `.wasm` file (returned as an
/// absolute path), or for the native build `lib<name>.so` in `$ENVOY_DYNAMIC_MODULES_SEARCH_PATH`
/// when that is set (Envoy finds the module only through it; without it a note says so).
fn check_module(wasm: &str, native: Option<&str>) -> Result<String, String> {
    if let Some(name) = native {
        let file = format!("lib{name}.so");
        match std::env::var_os("ENVOY_DYNAMIC_MODULES_SEARCH_PATH") {
            Some(dir) if !Path::new(&dir).join(&file).is_file() => {
                return Err(format!(
                    "{file} is not in ENVOY_DYNAMIC_MODULES_SEARCH_PATH={} (build it with `make native`; it lands in dist/), or pass --module-elsewhere",
                    Path::new(&dir).display()
                ))
            }
            Some(_) => {}
            None => eprintln!(
                "note: Envoy loads {file} from $ENVOY_DYNAMIC_MODULES_SEARCH_PATH; start it with that set (e.g. to the absolute path of dist/)"
            ),
        }
        return Ok(wasm.to_string());
    }
    std::fs::canonicalize(wasm)
        .map(|p| p.display().to_string())
        .map_err(|e| {
            format!(
                "the Wasm module '{wasm}' cannot be read ({e}): build it with `make wasm` (dist/endpoint_picker.wasm), or pass --module-elsewhere when it lives where Envoy runs"
            )
        })
}
