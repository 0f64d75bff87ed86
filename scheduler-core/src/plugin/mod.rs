//! Plugin contracts (GIE `framework/interface/`): the one [`Plugin`] trait, the extension-point
//! traits of the scheduling and request-control layers, per-cycle and per-request state, and the
//! registry with stability levels.
//!
//! A plugin type implements [`Plugin`] and then every extension point it means to fill, exposed
//! through the `as_*` accessors (which return `None` by default). One configured instance is
//! built once and shared (`Arc`) by every profile and hook that uses it.

pub mod data_layer;
pub mod expressions;
pub mod flow_control;
pub mod kv_events;
pub mod registry;
pub mod request_control;
pub mod scheduling;
pub mod state;
pub mod tokens;

use alloc::string::String;
use core::fmt;

use serde::Deserialize;

pub use data_layer::{EndpointPageSource, MetricsDataSource, MetricsExtraction, SharedExtractor};
pub use expressions::{CompiledExpression, ExprValue, ExpressionCompiler};
pub use flow_control::{FairnessPolicy, FlowHead, OrderingPolicy, QueuedRequest, UsageLimitPolicy};
pub use kv_events::{KvEventCounters, KvEventFormat, KvEventSink, KvEventsSettings};
pub use registry::{Factory, Handle, Registry, RegistryEntry};
pub use request_control::{
    Admitter, AttributeReporter, BatchWindow, DataProducer, FlowIdentity, PreRequest,
    ProduceContext, ReportedAttribute, RequestParser, ResponseBody, ResponseHeader,
    SaturationDetector, Screener,
};
pub use scheduling::{
    CycleContext, Filter, PdDecider, Picker, ProfileHandler, ProfileResults, ScoredEndpoint,
    Scorer, ScorerCategory,
};
pub use state::{CycleState, DataKey, RequestState};
pub use tokens::{
    PromptTokenizer, Services, TokenizedPrompt, TokenizerProvider, TokenizerSpec, TOKENIZED_PROMPT,
};

/// Maturity of a plugin type (plugin lifecycle proposal, GIE PR #2684).
///
/// Ordered `Alpha < Beta < Stable`. Alpha types need their feature gate enabled; Beta types are
/// on by default and can be turned off by their gate; Stable types are always available.
/// Deprecation is a message on a registry entry, not a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Stability {
    /// Off by default; no compatibility guarantee.
    Alpha,
    /// On by default; config schema stable.
    Beta,
    /// Always available; fully backward compatible.
    Stable,
}

impl fmt::Display for Stability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stability::Alpha => "Alpha",
            Stability::Beta => "Beta",
            Stability::Stable => "Stable",
        })
    }
}

/// A plugin's type (registry key, e.g. `queue-scorer`) and instance name. Displays as `name/type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedName {
    /// The registered type name.
    pub type_name: &'static str,
    /// The instance name from the config (defaults to the type name).
    pub name: String,
}

impl TypedName {
    /// A typed name.
    pub fn new(type_name: &'static str, name: &str) -> Self {
        TypedName {
            type_name,
            name: name.into(),
        }
    }
}

impl fmt::Display for TypedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.type_name)
    }
}

/// The base of every plugin. Implement [`Plugin::typed_name`] and the accessors of the extension
/// points the type fills; the rest default to "not this kind".
pub trait Plugin: Send + Sync {
    /// Type and instance name.
    fn typed_name(&self) -> &TypedName;

    /// This plugin as a filter.
    fn as_filter(&self) -> Option<&dyn Filter> {
        None
    }
    /// This plugin as a scorer.
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        None
    }
    /// This plugin as a picker.
    fn as_picker(&self) -> Option<&dyn Picker> {
        None
    }
    /// This plugin as the profile handler.
    fn as_profile_handler(&self) -> Option<&dyn ProfileHandler> {
        None
    }
    /// This plugin as a prefill/decode decider (referenced by `disagg-profile-handler`).
    fn as_pd_decider(&self) -> Option<&dyn PdDecider> {
        None
    }
    /// This plugin as a data producer.
    fn as_data_producer(&self) -> Option<&dyn DataProducer> {
        None
    }
    /// This plugin as a batch window (the host holds requests to place them together).
    fn as_batch_window(&self) -> Option<&dyn BatchWindow> {
        None
    }
    /// This plugin as an admitter.
    fn as_admitter(&self) -> Option<&dyn Admitter> {
        None
    }
    /// This plugin as a source of flow identities (fairness ids).
    fn as_flow_identity(&self) -> Option<&dyn FlowIdentity> {
        None
    }
    /// This plugin as a screener (runs once before the profiles).
    fn as_screener(&self) -> Option<&dyn Screener> {
        None
    }
    /// This plugin as a PreRequest hook.
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        None
    }
    /// This plugin as a response-header hook.
    fn as_response_header(&self) -> Option<&dyn ResponseHeader> {
        None
    }
    /// This plugin as a response-body hook.
    fn as_response_body(&self) -> Option<&dyn ResponseBody> {
        None
    }
    /// This plugin as a reporter of request attributes to the proxy (e.g.
    /// `request-attribute-reporter`).
    fn as_attribute_reporter(&self) -> Option<&dyn AttributeReporter> {
        None
    }
    /// This plugin as a saturation detector.
    fn as_saturation_detector(&self) -> Option<&dyn SaturationDetector> {
        None
    }
    /// This plugin as the request parser.
    fn as_parser(&self) -> Option<&dyn RequestParser> {
        None
    }
    /// This plugin as a flow-control ordering policy.
    fn as_ordering_policy(&self) -> Option<&dyn OrderingPolicy> {
        None
    }
    /// This plugin as a flow-control fairness policy.
    fn as_fairness_policy(&self) -> Option<&dyn FairnessPolicy> {
        None
    }
    /// This plugin as a flow-control usage-limit policy.
    fn as_usage_limit_policy(&self) -> Option<&dyn UsageLimitPolicy> {
        None
    }
    /// Data keys this plugin reads from the cycle state (drives default-producer creation).
    fn consumes(&self) -> &'static [DataKey] {
        &[]
    }
    /// Data keys this plugin writes into the cycle state.
    fn produces(&self) -> &'static [DataKey] {
        &[]
    }
    /// The pool's membership changed; `addresses` are the endpoints now in it. Plugins that
    /// keep per-endpoint state drop what belongs to endpoints that left.
    fn pool_changed(&self, addresses: &[&str]) {
        let _ = addresses;
    }
    /// Blocks held by this plugin's prefix index over all endpoints, for a plugin that keeps
    /// one (GIE's `inference_extension_prefix_indexer_size`). `None` by default.
    fn prefix_index_blocks(&self) -> Option<usize> {
        None
    }
    /// This plugin as a receiver of the model servers' KV-cache events (e.g.
    /// `precise-prefix-cache-producer`).
    fn as_kv_event_sink(&self) -> Option<&dyn KvEventSink> {
        None
    }
    /// True for a data source that only announces endpoints joining and leaving (llm-d's
    /// `endpoint-notification-source`); its extractors get [`Plugin::pool_changed`].
    fn is_endpoint_notification_source(&self) -> bool {
        false
    }
    /// For an endpoint-discovery plugin (llm-d's `dataLayer.discovery`, e.g. `file-discovery`):
    /// the file it reads endpoints from. The proxy takes its pool from `pool` or the Envoy
    /// cluster; host tools may read the file into `pool.endpoints`.
    fn endpoint_discovery_file(&self) -> Option<&str> {
        None
    }
    /// This plugin as a source of a second per-endpoint page (e.g. `dcgm-data-source`).
    fn as_page_source(&self) -> Option<&dyn EndpointPageSource> {
        None
    }
    /// This plugin as a metrics source of the data layer (e.g. `metrics-data-source`).
    fn as_metrics_source(&self) -> Option<&dyn MetricsDataSource> {
        None
    }
    /// This plugin as a metrics extractor of the data layer (e.g. `core-metrics-extractor`).
    fn as_metrics_extractor(&self) -> Option<SharedExtractor> {
        None
    }
}
