//! Stage 7: the `flowControl` section, when the `flowControl` feature gate is on, resolved into
//! [`FlowControl`] (llm-d-router `config/loader/flowcontrol.go`, in our words):
//! - `maxBytes`, `maxRequests`: Kubernetes quantities, global limits (0 or absent: none);
//! - `defaultRequestTTL` (Go duration, default 60 s, `0s`: no limit) and `noEndpointRequestTTL`
//!   (default: the same);
//! - `priorityBands[]` `{priority, maxBytes, maxRequests, fairnessPolicyRef, orderingPolicyRef}`
//!   and the templates `defaultPriorityBand` / `defaultNegativePriorityBand` for priorities no band
//!   names; a band's missing limits default to 5000 requests and 1,000,000,000 bytes, its policies
//!   to `global-strict-fairness-policy` and `fcfs-ordering-policy`;
//! - `usageLimitPolicyPluginRef` (default `static-usage-limit-policy`).
//!
//! The three default policies are created when no plugin of that name exists (upstream's
//! `ensureFlowControlLayer`). `saturationDetector` is read by the wiring stage. `enableEviction`
//! (bool, default false) turns on in-flight eviction, paced by how the chosen detector sees freed
//! capacity ([`crate::flowcontrol::eviction`]). Unknown keys are warned and ignored.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde_json::Value;

use crate::config::duration::parse_duration_ms;
use crate::config::EndpointPickerConfig;
use crate::error::{ConfigError, FieldPath};
use crate::flowcontrol::eviction::Sensor;
use crate::flowcontrol::quantity::parse_quantity;
use crate::flowcontrol::settings::{
    BandSettings, FlowControl, DEFAULT_BAND_MAX_BYTES, DEFAULT_BAND_MAX_REQUESTS,
    DEFAULT_REQUEST_TTL_MS,
};
use crate::plugin::Plugin;
use crate::plugins::filter::concurrency_detector;
use crate::plugins::flow_control::{fcfs, global_strict, static_usage_limit};

use super::instantiate::Loader;

const KEYS: &[&str] = &[
    "maxBytes",
    "maxRequests",
    "defaultRequestTTL",
    "noEndpointRequestTTL",
    "defaultPriorityBand",
    "defaultNegativePriorityBand",
    "priorityBands",
    "usageLimitPolicyPluginRef",
    "saturationDetector",
    "enableEviction",
];
const BAND_KEYS: &[&str] = &[
    "priority",
    "maxBytes",
    "maxRequests",
    "fairnessPolicyRef",
    "orderingPolicyRef",
];

/// True when `featureGates` turns `flowControl` on.
pub(super) fn gate_on(cfg: &EndpointPickerConfig) -> bool {
    cfg.feature_gates
        .entries()
        .map(|e| e.iter().any(|(g, on, _)| g == "flowControl" && *on))
        .unwrap_or(false)
}

/// The flow-control settings, or `None` when the gate is off.
///
/// # Errors
/// A malformed limit, duration, band or policy reference; two bands of one priority.
pub(super) fn build(
    loader: &mut Loader<'_>,
    cfg: &EndpointPickerConfig,
    detector: &dyn Plugin,
) -> Result<Option<Arc<FlowControl>>, ConfigError> {
    if !gate_on(cfg) {
        return Ok(None);
    }
    let at = FieldPath::key("flowControl");
    let empty = Value::Object(serde_json::Map::new());
    let fc = cfg.flow_control.as_ref().unwrap_or(&empty);
    if !fc.is_object() && !fc.is_null() {
        return Err(ConfigError::invalid(at, "must be an object"));
    }
    warn_unknown(loader, fc, KEYS, &at);
    let eviction = match fc.get("enableEviction") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(
            if detector.typed_name().type_name == concurrency_detector::TYPE {
                Sensor::Leading
            } else {
                Sensor::Scraped
            },
        ),
        Some(_) => {
            return Err(ConfigError::invalid(
                at.clone().with_key("enableEviction"),
                "must be a boolean",
            ))
        }
    };
    let max_requests = quantity(fc, "maxRequests", &at)?;
    let max_bytes = quantity(fc, "maxBytes", &at)?;
    let request_ttl_ms = duration(fc, "defaultRequestTTL", &at)?.unwrap_or(DEFAULT_REQUEST_TTL_MS);
    let no_endpoint_ttl_ms = duration(fc, "noEndpointRequestTTL", &at)?.unwrap_or(request_ttl_ms);

    let default_fairness = by_name_or_default(loader, global_strict::TYPE, &at)?;
    let default_ordering = by_name_or_default(loader, fcfs::TYPE, &at)?;
    let usage_limit = match fc.get("usageLimitPolicyPluginRef").and_then(Value::as_str) {
        Some(r) if !r.is_empty() => resolve(
            loader,
            r,
            at.clone().with_key("usageLimitPolicyPluginRef"),
            "a usage-limit policy",
            |p| p.as_usage_limit_policy().is_some(),
        )?,
        _ => by_name_or_default(loader, static_usage_limit::TYPE, &at)?,
    };
    let defaults = BandSettings {
        priority: 0,
        max_requests: DEFAULT_BAND_MAX_REQUESTS,
        max_bytes: DEFAULT_BAND_MAX_BYTES,
        fairness: default_fairness,
        ordering: default_ordering,
    };
    let default_band = match fc.get("defaultPriorityBand") {
        Some(b) => band(
            loader,
            b,
            &defaults,
            &at.clone().with_key("defaultPriorityBand"),
        )?,
        None => defaults.clone(),
    };
    let default_negative_band = match fc.get("defaultNegativePriorityBand") {
        Some(b) => Some(band(
            loader,
            b,
            &defaults,
            &at.clone().with_key("defaultNegativePriorityBand"),
        )?),
        None => None,
    };
    let mut bands: Vec<BandSettings> = Vec::new();
    if let Some(list) = fc.get("priorityBands") {
        let Some(list) = list.as_array() else {
            return Err(ConfigError::invalid(
                at.with_key("priorityBands"),
                "must be a list",
            ));
        };
        for (i, b) in list.iter().enumerate() {
            let path = at.clone().with_key("priorityBands").with_index(i);
            let s = band(loader, b, &defaults, &path)?;
            if bands.iter().any(|o| o.priority == s.priority) {
                return Err(ConfigError::invalid(
                    path.with_key("priority"),
                    format!("a band for priority {} is already defined", s.priority),
                ));
            }
            bands.push(s);
        }
    }
    Ok(Some(Arc::new(FlowControl {
        max_requests,
        max_bytes,
        request_ttl_ms,
        no_endpoint_ttl_ms,
        bands,
        default_band,
        default_negative_band,
        usage_limit,
        eviction,
    })))
}

fn warn_unknown(loader: &mut Loader<'_>, v: &Value, known: &[&str], at: &FieldPath) {
    if let Some(m) = v.as_object() {
        for k in m.keys().filter(|k| !known.contains(&k.as_str())) {
            loader.warn(format!(
                "{}: unknown field, ignored",
                at.clone().with_key(k)
            ));
        }
    }
}

fn quantity(v: &Value, key: &str, at: &FieldPath) -> Result<u64, ConfigError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(q) => parse_quantity(q).ok_or_else(|| {
            ConfigError::invalid(
                at.clone().with_key(key),
                format!("'{q}' is not a non-negative quantity (e.g. 100, \"1k\", \"1Gi\")"),
            )
        }),
    }
}

fn duration(v: &Value, key: &str, at: &FieldPath) -> Result<Option<u64>, ConfigError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_duration_ms(s).map(Some).ok_or_else(|| {
            ConfigError::invalid(
                at.clone().with_key(key),
                format!("'{s}' is not a duration (e.g. \"30s\", \"500ms\")"),
            )
        }),
        Some(_) => Err(ConfigError::invalid(
            at.clone().with_key(key),
            "must be a duration string (e.g. \"30s\")",
        )),
    }
}

fn by_name_or_default(
    loader: &mut Loader<'_>,
    type_name: &str,
    at: &FieldPath,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    match loader.by_name(type_name) {
        Some(p) => Ok(p),
        None => loader.implicit(type_name, at),
    }
}

fn resolve(
    loader: &Loader<'_>,
    name: &str,
    path: FieldPath,
    expected: &'static str,
    ok: impl Fn(&dyn Plugin) -> bool,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p = loader.by_name(name).ok_or_else(|| {
        ConfigError::invalid(
            path.clone(),
            format!("plugin '{name}' is not defined in 'plugins'"),
        )
    })?;
    if !ok(p.as_ref()) {
        return Err(ConfigError::invalid(
            path,
            format!("plugin '{name}' is not {expected}"),
        ));
    }
    Ok(p)
}

fn band(
    loader: &mut Loader<'_>,
    v: &Value,
    defaults: &BandSettings,
    at: &FieldPath,
) -> Result<BandSettings, ConfigError> {
    if !v.is_object() {
        return Err(ConfigError::invalid(at.clone(), "must be an object"));
    }
    warn_unknown(loader, v, BAND_KEYS, at);
    let priority = match v.get("priority") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| {
                ConfigError::invalid(at.clone().with_key("priority"), "must be an integer")
            })?,
    };
    let or_default = |q: u64, d: u64| if q == 0 { d } else { q };
    let policy = |loader: &Loader<'_>,
                  key: &str,
                  default: &Arc<dyn Plugin>,
                  expected: &'static str,
                  ok: fn(&dyn Plugin) -> bool|
     -> Result<Arc<dyn Plugin>, ConfigError> {
        match v.get(key).and_then(Value::as_str) {
            Some(r) if !r.is_empty() => resolve(loader, r, at.clone().with_key(key), expected, ok),
            _ => Ok(default.clone()),
        }
    };
    Ok(BandSettings {
        priority,
        max_requests: or_default(quantity(v, "maxRequests", at)?, defaults.max_requests),
        max_bytes: or_default(quantity(v, "maxBytes", at)?, defaults.max_bytes),
        fairness: policy(
            loader,
            "fairnessPolicyRef",
            &defaults.fairness,
            "a fairness policy",
            |p| p.as_fairness_policy().is_some(),
        )?,
        ordering: policy(
            loader,
            "orderingPolicyRef",
            &defaults.ordering,
            "an ordering policy",
            |p| p.as_ordering_policy().is_some(),
        )?,
    })
}
