//! The `flowControl` section, resolved (by `config/loader/flow_control.rs`) into limits, TTLs and
//! per-band policies.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::flowcontrol::eviction::Sensor;
use crate::plugin::{FairnessPolicy, OrderingPolicy, Plugin, UsageLimitPolicy};

/// A band's request limit when the config gives none (llm-d-router `registry/config.go`).
pub const DEFAULT_BAND_MAX_REQUESTS: u64 = 5000;
/// A band's byte limit when the config gives none.
pub const DEFAULT_BAND_MAX_BYTES: u64 = 1_000_000_000;
/// The queue-wait budget when the config gives none (ms).
pub const DEFAULT_REQUEST_TTL_MS: u64 = 60_000;

/// One priority band's limits and policies.
#[derive(Clone)]
pub struct BandSettings {
    /// The priority it serves (higher is served first).
    pub priority: i32,
    /// Most requests queued in the band.
    pub max_requests: u64,
    /// Most request-body bytes queued in the band.
    pub max_bytes: u64,
    /// Chooses the band's next flow (a plugin with [`Plugin::as_fairness_policy`]).
    pub fairness: Arc<dyn Plugin>,
    /// Orders each flow's requests (a plugin with [`Plugin::as_ordering_policy`]).
    pub ordering: Arc<dyn Plugin>,
}

impl BandSettings {
    /// The band's fairness policy (the loader checked the plugin is one).
    pub fn fairness(&self) -> Option<&dyn FairnessPolicy> {
        self.fairness.as_fairness_policy()
    }
    /// The band's ordering policy.
    pub fn ordering(&self) -> Option<&dyn OrderingPolicy> {
        self.ordering.as_ordering_policy()
    }
}

/// The flow-control layer's settings.
#[derive(Clone)]
pub struct FlowControl {
    /// Most requests queued over all bands (0: no global limit).
    pub max_requests: u64,
    /// Most request-body bytes queued over all bands (0: no global limit).
    pub max_bytes: u64,
    /// Queue-wait budget while the pool has endpoints (ms; 0: none).
    pub request_ttl_ms: u64,
    /// Queue-wait budget while the pool has no endpoints (ms; 0: none).
    pub no_endpoint_ttl_ms: u64,
    /// The configured bands.
    pub bands: Vec<BandSettings>,
    /// Template for a priority no band names.
    pub default_band: BandSettings,
    /// Template for a negative priority no band names (else [`Self::default_band`]).
    pub default_negative_band: Option<BandSettings>,
    /// Sets each band's saturation ceiling (a plugin with [`Plugin::as_usage_limit_policy`]).
    pub usage_limit: Arc<dyn Plugin>,
    /// In-flight eviction (`enableEviction`), with how the saturation detector sees freed
    /// capacity; `None` when off.
    pub eviction: Option<Sensor>,
}

impl FlowControl {
    /// The settings of the band for `priority`: the configured one, else a copy of the matching
    /// template with that priority.
    pub fn band_for(&self, priority: i32) -> BandSettings {
        if let Some(b) = self.bands.iter().find(|b| b.priority == priority) {
            return b.clone();
        }
        let template = match &self.default_negative_band {
            Some(n) if priority < 0 => n,
            _ => &self.default_band,
        };
        BandSettings {
            priority,
            ..template.clone()
        }
    }

    /// The usage-limit policy.
    pub fn usage_limit(&self) -> Option<&dyn UsageLimitPolicy> {
        self.usage_limit.as_usage_limit_policy()
    }
}
