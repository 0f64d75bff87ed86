//! The Envoy snippets every rendering shares: the scraper bootstrap extension, the picker's
//! Wasm plugin configuration and the `override_host` load-balancing policy. Plain Envoy
//! ([`crate::render`]), the file-based xDS resources ([`crate::xds`]) and every gateway manifest
//! ([`crate::deploy`]) embed these exact texts, so they cannot drift apart.
//!
//! Each function returns YAML starting at column 0; [`indent`] places it.

use std::fmt::Write as _;

/// Root id of the scraper role (the module's `runner::SCRAPER_ROOT_ID`).
pub const SCRAPER_ROOT_ID: &str = "metrics-scraper";
/// Root id of the HTTP filter role (the module's `runner::PICKER_ROOT_ID`).
pub const PICKER_ROOT_ID: &str = "endpoint-picker";
/// The request header the picker sets and the pool cluster honours.
pub const DESTINATION_HEADER: &str = "x-gateway-destination-endpoint";
/// The HTTP filter's type URL.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Where a VM's code comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// A file on the proxy's disk.
    Local(String),
}

impl Code {
    fn yaml(&self) -> String {
        match self {
            Code::Local(path) => format!("{{ local: {{ filename: \"{path}\" }} }}"),
        }
    }
}

/// How one VM is identified and loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    /// `vm_id`; `None` leaves it unset (Istio's WasmPlugin never sets one). The scraper and the
    /// filter must use the same value: proxy-wasm shared data is keyed by vm_id.
    pub vm_id: Option<String>,
    /// The module.
    pub code: Code,
}

/// Indents every non-empty line of `text` by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    let mut out = String::with_capacity(text.len() + text.lines().count() * n);
    for line in text.lines() {
        if !line.is_empty() {
            out.push_str(&pad);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn vm_config(vm: &Vm) -> String {
    let mut out = String::from("vm_config:\n");
    match &vm.vm_id {
        Some(id) => {
            let _ = writeln!(
                out,
                "  vm_id: \"{id}\"  # scraper and filter share it: shared data is per vm_id"
            );
        }
        None => {
            out.push_str("  # vm_id unset on purpose: it must equal the filter's (empty) vm_id\n")
        }
    }
    out.push_str("  runtime: envoy.wasm.runtime.v8\n");
    let _ = writeln!(out, "  code: {}", vm.code.yaml());
    out
}

fn string_value(picker_json: &str) -> String {
    format!(
        "configuration:\n  \"@type\": type.googleapis.com/google.protobuf.StringValue\n  value: |\n{}",
        indent(picker_json, 4)
    )
}

/// The `bootstrap_extensions` list item that runs the metrics scraper: a `WasmService` with
/// `singleton: true` (one instance per Envoy process, on the main thread) and root id
/// [`SCRAPER_ROOT_ID`]. `picker_json` is the pretty-printed picker configuration.
pub fn scraper_extension(vm: &Vm, picker_json: &str) -> String {
    format!(
        r#"- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: {SCRAPER_ROOT_ID}
      root_id: {SCRAPER_ROOT_ID}
{vm}{cfg}"#,
        vm = indent(&vm_config(vm), 6),
        cfg = indent(&string_value(picker_json), 6),
    )
}

/// The picker's `PluginConfig` (the `config:` mapping of an `envoy.filters.http.wasm`):
/// root id [`PICKER_ROOT_ID`], `allow_on_headers_stop_iteration: true` (without it Envoy 1.40
/// never hands the body to a filter that paused on the headers) and `failure_policy:
/// FAIL_RELOAD` (a VM that traps is replaced; FAIL_OPEN would skip the picker and let a
/// client-supplied destination header steer the request).
pub fn picker_plugin_config(vm: &Vm, picker_json: &str) -> String {
    format!(
        r#"name: {PICKER_ROOT_ID}
root_id: {PICKER_ROOT_ID}
# Body-based picking: pause in the headers phase and still receive the body (Envoy 1.40+).
allow_on_headers_stop_iteration: true
# A VM that traps is replaced; requests meanwhile get 503 (never skip the picker).
failure_policy: FAIL_RELOAD
{vm}{cfg}"#,
        vm = vm_config(vm),
        cfg = string_value(picker_json),
    )
}

/// The picker HTTP filter's `typed_config` (an `envoy.filters.http.wasm` `Wasm` message).
pub fn picker_typed_config(vm: &Vm, picker_json: &str) -> String {
    format!(
        "\"@type\": {WASM_FILTER_TYPE}\nconfig:\n{}",
        indent(&picker_plugin_config(vm, picker_json), 2)
    )
}

/// The HTTP filter's type URL in the native build.
pub const NATIVE_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The name of the native module: Envoy loads `lib<name>.so` from
/// `$ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const NATIVE_MODULE_NAME: &str = "endpoint_picker";

/// Which build of the picker a configuration loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Module {
    /// The proxy-wasm module, run by V8 (one VM per worker).
    Wasm(Vm),
    /// A native dynamic module `lib<name>.so` (one state for the process), by library name:
    /// [`NATIVE_MODULE_NAME`] for the stock module.
    Native(String),
}

impl Module {
    /// The `bootstrap_extensions` list item that runs the metrics scraper.
    pub fn scraper_extension(&self, picker_json: &str) -> String {
        match self {
            Module::Wasm(vm) => scraper_extension(vm, picker_json),
            Module::Native(name) => format!(
                r#"- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    # lib{name}.so, loaded once per process; do_not_close keeps it mapped.
    dynamic_module_config: {{ name: {name}, do_not_close: true }}
    extension_name: {SCRAPER_ROOT_ID}
    extension_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: |
{json}"#,
                json = indent(picker_json, 8)
            ),
        }
    }

    /// The HTTP filter extension's name in an `http_filters` list.
    pub fn filter_name(&self) -> &'static str {
        match self {
            Module::Wasm(_) => "envoy.filters.http.wasm",
            Module::Native(_) => "envoy.filters.http.dynamic_modules",
        }
    }

    /// The HTTP filter's type URL (for ECDS `type_urls`).
    pub fn filter_type_url(&self) -> &'static str {
        match self {
            Module::Wasm(_) => WASM_FILTER_TYPE,
            Module::Native(_) => NATIVE_FILTER_TYPE,
        }
    }

    /// The picker HTTP filter's `typed_config`.
    pub fn filter_typed_config(&self, picker_json: &str) -> String {
        match self {
            Module::Wasm(vm) => picker_typed_config(vm, picker_json),
            Module::Native(name) => format!(
                r#""@type": {NATIVE_FILTER_TYPE}
# The same library as the scraper: both share the process's memory (snapshot, scheduler state).
dynamic_module_config: {{ name: {name}, do_not_close: true }}
filter_name: {PICKER_ROOT_ID}
filter_config:
  "@type": type.googleapis.com/google.protobuf.StringValue
  value: |
{json}"#,
                json = indent(picker_json, 4)
            ),
        }
    }
}

/// A `load_balancing_policy` block: `override_host` reading [`DESTINATION_HEADER`] (an ordered
/// `ip:port` list; each retry takes the next entry, and only cluster members can be chosen),
/// with `fallback` (an Envoy LB policy extension short name: `round_robin`, `least_request`)
/// when the header is absent or names no member.
pub fn override_host_policy(fallback: &str) -> String {
    let message = match fallback {
        "least_request" => "least_request.v3.LeastRequest",
        _ => "round_robin.v3.RoundRobin",
    };
    override_host_with(&format!(
        r#"name: envoy.load_balancing_policies.{fallback}
typed_config:
  "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.{message}
"#
    ))
}

/// Name of the native module's load-balancing policy (`lb_policy_name`).
pub const POOL_MEMBERSHIP_POLICY: &str = "pool-membership";

/// [`override_host_policy`] for the native build: the fallback is the module's
/// [`POOL_MEMBERSHIP_POLICY`] (round robin over healthy hosts), which also reports the cluster's
/// hosts to the scraper, so a pool without `pool.endpoints` follows the cluster (EDS, DNS).
pub fn override_host_policy_native(module_name: &str) -> String {
    override_host_with(&format!(
        r#"# The module's balancer: reports the cluster's hosts to the picker (the pool follows EDS/DNS)
# and round-robins requests that carry no destination.
name: envoy.load_balancing_policies.dynamic_modules
typed_config:
  "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.dynamic_modules.v3.DynamicModulesLoadBalancerConfig
  dynamic_module_config: {{ name: {module_name}, do_not_close: true }}
  lb_policy_name: {POOL_MEMBERSHIP_POLICY}
"#
    ))
}

fn override_host_with(fallback_extension: &str) -> String {
    format!(
        r#"load_balancing_policy:
  policies:
  - typed_extension_config:
      name: envoy.load_balancing_policies.override_host
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost
        override_host_sources:
        - header: {DESTINATION_HEADER}
        fallback_policy:
          policies:
          - typed_extension_config:
{}"#,
        indent(fallback_extension, 14)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indent_skips_empty_lines() {
        assert_eq!(indent("a\n\n b\n", 2), "  a\n\n   b\n");
    }

    #[test]
    fn unset_vm_id_is_omitted_not_empty() {
        let vm = Vm {
            vm_id: None,
            code: Code::Local("/m.wasm".into()),
        };
        let s = scraper_extension(&vm, "{}");
        assert!(!s.contains("vm_id:"), "{s}");
        assert!(s.contains("filename: \"/m.wasm\""));
    }
}
