//! `envoy-config`: validate an endpoint-picker configuration offline, or render a complete
//! Envoy configuration for it.
//!
//! ```text
//! envoy-config validate picker.json
//! envoy-config render --config picker.json --wasm dist/endpoint_picker.wasm --listen 0.0.0.0:8080 --admin-port 9901
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use envoy_config::render::{render, Mode, RenderInput};
use envoy_config::validate::validate;

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
        /// The picker configuration (JSON, `-` for stdin).
        config: String,
    },
    /// Render a complete Envoy configuration (YAML) for a picker JSON.
    Render {
        /// The picker configuration (JSON, `-` for stdin).
        #[arg(long)]
        config: String,
        /// Path of the .wasm module as Envoy will see it.
        #[arg(long, default_value = "dist/endpoint_picker.wasm")]
        wasm: String,
        /// Listener address for inference traffic.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Admin port (bound to 127.0.0.1).
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
        /// Output file (default stdout).
        #[arg(long)]
        out: Option<String>,
        /// `picker`, or a plain-Envoy baseline over the same endpoints: `round-robin`,
        /// `least-request`.
        #[arg(long, default_value = "picker")]
        mode: String,
    },
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
        Command::Validate { config } => {
            let warnings = validate(&read(&config)?)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("{config}: valid");
            Ok(())
        }
        Command::Render {
            config,
            wasm,
            listen,
            admin_port,
            out,
            mode,
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
            let picker: serde_json::Value =
                serde_json::from_str(&read(&config)?).map_err(|e| format!("{config}: {e}"))?;
            let yaml = render(&RenderInput {
                picker,
                wasm_path: wasm,
                listen,
                admin_port,
                mode,
            })?;
            match out {
                Some(path) => std::fs::write(&path, yaml).map_err(|e| format!("{path}: {e}")),
                None => {
                    print!("{yaml}");
                    Ok(())
                }
            }
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
