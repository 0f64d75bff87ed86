//! The native module's ABI against the Envoy binary it runs in. Envoy only logs a warning when a
//! module's ABI version differs from its own, so a callback we declare that this Envoy does not
//! export would fail only at load time (or worse, a changed signature would be undefined
//! behaviour): every `envoy_dynamic_module_callback_*` symbol `libendpoint_picker.so` leaves
//! undefined must be exported by the Envoy executable (`nm -D`), and the module must load and
//! answer a request in that Envoy (the rest of the suite with `E2E_BUILD=native`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Envoy executable itself (`.venv/bin/envoy` is a Python launcher for it).
fn envoy_executable() -> PathBuf {
    let launcher = e2e::envoy_bin();
    let venv = launcher
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
        .unwrap_or(launcher)
}

/// `nm -D` symbols of `file`: defined ones, or with `undefined` the undefined ones.
fn symbols(file: &Path, undefined: bool) -> BTreeSet<String> {
    let flag = if undefined {
        "--undefined-only"
    } else {
        "--defined-only"
    };
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(file)
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with("envoy_dynamic_module_"))
        .map(String::from)
        .collect()
}

#[test]
fn every_callback_the_module_uses_is_exported_by_this_envoy() {
    let so = e2e::native_dir().join("libendpoint_picker.so");
    let envoy = envoy_executable();
    let needed = symbols(&so, true);
    let exported = symbols(&envoy, false);
    assert!(
        needed.len() >= 20,
        "the module calls Envoy through its callbacks: {needed:?}"
    );
    let missing: Vec<_> = needed.difference(&exported).collect();
    println!(
        "{} callbacks used by {}, all among the {} Envoy exports",
        needed.len(),
        so.display(),
        exported.len()
    );
    assert!(
        missing.is_empty(),
        "callbacks this Envoy ({}) does not export: {missing:?}",
        envoy.display()
    );
    // The hooks Envoy looks up in the module are defined by it.
    let hooks = symbols(&so, false);
    for h in [
        "envoy_dynamic_module_on_program_init",
        "envoy_dynamic_module_on_http_filter_config_new",
        "envoy_dynamic_module_on_http_filter_request_body",
        "envoy_dynamic_module_on_bootstrap_extension_timer_fired",
        "envoy_dynamic_module_on_bootstrap_extension_http_callout_done",
    ] {
        assert!(hooks.contains(h), "{h} not exported by the module");
    }
}
