//! The in-tree plugins, one file each, and [`BUILTINS`]: the single table that registers them
//! with their stability. Changing a plugin's maturity, deprecating it or turning it into a
//! tombstone is a one-line change here.

pub mod admitter;
pub mod conformance;
pub mod datalayer;
pub mod filter;
pub mod flow_control;
pub mod parser;
pub mod picker;
pub mod producer;
pub mod profile;
pub mod request;
pub mod scorer;

#[cfg(test)]
pub(crate) mod testing;

use serde::Deserialize;

use crate::plugin::registry::RegistryEntry as E;
use crate::plugin::TOKENIZED_PROMPT;
use crate::plugins::producer::approx_prefix_cache::PREFIX_CACHE_MATCH_INFO;
use crate::plugins::producer::inflight_load::INFLIGHT_LOAD;
use crate::plugins::producer::mm_embeddings_cache::MM_ENCODER_CACHE_MATCH_INFO;
use crate::plugins::producer::predicted_latency::LATENCY_PREDICTION_INFO;

/// Parameters of a plugin that takes none: any field is an "unknown field" error.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Every in-tree plugin type. Alpha types need their gate in `featureGates`; Beta types can be
/// turned off with `"<gate>=false"`.
#[rustfmt::skip]
pub const BUILTINS: &[E] = &[
    // scorers
    E::stable(scorer::queue::TYPE, scorer::queue::factory),
    E::stable(scorer::kv_cache_utilization::TYPE, scorer::kv_cache_utilization::factory),
    E::stable(scorer::prefix_cache::TYPE, scorer::prefix_cache::factory),
    E::stable(scorer::lora_affinity::TYPE, scorer::lora_affinity::factory),
    E::beta(scorer::running_requests::TYPE, "runningRequestsSizeScorer", scorer::running_requests::factory),
    E::beta(scorer::token_load::TYPE, "tokenLoadScorer", scorer::token_load::factory),
    E::beta(scorer::load_aware::TYPE, "loadAwareScorer", scorer::load_aware::factory),
    E::beta(scorer::session_affinity::TYPE, "sessionAffinityScorer", scorer::session_affinity::factory),
    E::alpha(scorer::active_request::TYPE, "activeRequestScorer", scorer::active_request::factory),
    E::beta(scorer::no_hit_lru::TYPE, "noHitLruScorer", scorer::no_hit_lru::factory),
    E::beta(scorer::context_length_aware::TYPE, "contextLengthAware", scorer::context_length_aware::factory),
    E::alpha(scorer::prefix_rendezvous::TYPE, "prefixRendezvousScorer", scorer::prefix_rendezvous::factory),
    E::beta(scorer::mm_embeddings_cache::TYPE, "mmEmbeddingsCache", scorer::mm_embeddings_cache::factory),
    E::alpha(scorer::endpoint_attribute::TYPE, "endpointAttribute", scorer::endpoint_attribute::factory),
    E::alpha(scorer::header_label_affinity::TYPE, "headerLabelAffinity", scorer::header_label_affinity::factory),
    E::alpha(scorer::topology_affinity::TYPE, "topologyAffinity", scorer::topology_affinity::factory),
    E::beta(scorer::latency::TYPE, "predictedLatency", scorer::latency::factory),
    E::beta(scorer::precise_prefix_cache::TYPE, "precisePrefixCache", scorer::precise_prefix_cache::factory)
        .deprecated("use 'precise-prefix-cache-producer' with 'prefix-cache-scorer' (prefixMatchInfoProducerName: precise-prefix-cache-producer)"),
    // filters
    E::stable(filter::utilization_detector::TYPE, filter::utilization_detector::factory),
    E::beta(filter::concurrency_detector::TYPE, "concurrencyDetector", filter::concurrency_detector::factory),
    E::beta(filter::label_selector::TYPE, "labelSelectorFilter", filter::label_selector::factory),
    E::beta(filter::role::DECODE_TYPE, "pdRoleFilters", filter::role::decode_factory),
    E::beta(filter::role::PREFILL_TYPE, "pdRoleFilters", filter::role::prefill_factory),
    E::beta(filter::role::ENCODE_TYPE, "pdRoleFilters", filter::role::encode_factory),
    E::alpha(filter::prefix_cache_affinity::TYPE, "prefixCacheAffinityFilter", filter::prefix_cache_affinity::factory),
    E::alpha(filter::endpoint_attribute::TYPE, "endpointAttribute", filter::endpoint_attribute::factory),
    E::alpha(filter::session_affinity::TYPE, "sessionAffinityFilter", filter::session_affinity::factory),
    E::alpha(filter::topology_affinity::TYPE, "topologyAffinity", filter::topology_affinity::factory),
    E::alpha(filter::utilization::TYPE, "utilizationFilter", filter::utilization::factory),
    E::beta(filter::slo_headroom_tier::TYPE, "predictedLatency", filter::slo_headroom_tier::factory),
    // pickers
    E::stable(picker::max_score::TYPE, picker::max_score::factory),
    E::stable(picker::random::TYPE, picker::random::factory),
    E::beta(picker::weighted_random::TYPE, "weightedRandomPicker", picker::weighted_random::factory),
    // profile handlers and deciders
    E::stable(profile::single::TYPE, profile::single::factory),
    E::beta(profile::disagg::TYPE, "disaggregatedServing", profile::disagg::factory),
    E::beta(profile::pd_decider::PREFIX_BASED_TYPE, "disaggregatedServing", profile::pd_decider::prefix_based_factory),
    E::beta(profile::pd_decider::ALWAYS_TYPE, "disaggregatedServing", profile::pd_decider::always_factory),
    E::beta(profile::mm_decider::TYPE, "disaggregatedServing", profile::mm_decider::factory),
    E::alpha(profile::header::TYPE, "headerProfileHandler", profile::header::factory),
    // GIE conformance-test plugins
    E::beta(conformance::header_filter::TYPE, "conformanceTesting", conformance::header_filter::factory),
    E::beta(conformance::served_verifier::TYPE, "conformanceTesting", conformance::served_verifier::factory),
    // admitters
    E::beta(admitter::probabilistic::TYPE, "probabilisticAdmitter", admitter::probabilistic::factory),
    E::beta(admitter::latency_slo::TYPE, "predictedLatency", admitter::latency_slo::factory),
    // request-header processors
    E::alpha(request::agent_identity::TYPE, "agentIdentity", request::agent_identity::factory),
    // screeners
    E::alpha(request::rollout_screener::TYPE, "disaggregatedSetRollout", request::rollout_screener::factory),
    // response reporters
    E::beta(request::attribute_reporter::TYPE, "requestAttributeReporter", request::attribute_reporter::factory),
    // data producers
    E::stable(producer::approx_prefix_cache::TYPE, producer::approx_prefix_cache::factory).default_producer_for(PREFIX_CACHE_MATCH_INFO),
    E::beta(producer::precise_prefix_cache::TYPE, "precisePrefixCache", producer::precise_prefix_cache::factory),
    E::beta(producer::token::TYPE, "precisePrefixCache", producer::token::factory).default_producer_for(TOKENIZED_PROMPT),
    E::beta(producer::token::ALIAS, "precisePrefixCache", producer::token::factory)
        .deprecated("'tokenizer' is the older name of 'token-producer' (same parameters)"),
    E::beta(producer::mm_embeddings_cache::TYPE, "mmEmbeddingsCache", producer::mm_embeddings_cache::factory).default_producer_for(MM_ENCODER_CACHE_MATCH_INFO),
    E::beta(producer::inflight_load::TYPE, "inflightLoadProducer", producer::inflight_load::factory).default_producer_for(INFLIGHT_LOAD),
    E::beta(producer::predicted_latency::TYPE, "predictedLatency", producer::predicted_latency::factory).default_producer_for(LATENCY_PREDICTION_INFO),
    E::beta(producer::session_id::TYPE, "sessionIdProducer", producer::session_id::factory),
    E::alpha(producer::burst_prefix_cache::TYPE, "burstPrefixCache", producer::burst_prefix_cache::factory),
    E::alpha(producer::p2p_source::TYPE, "p2pSourceProducer", producer::p2p_source::factory),
    // parsers
    E::stable(parser::openai::TYPE, parser::openai::factory),
    E::beta(parser::passthrough::TYPE, "passthroughParser", parser::passthrough::factory),
    E::beta(parser::anthropic::TYPE, "anthropicParser", parser::anthropic::factory),
    E::beta(parser::vllm_http::TYPE, "vllmHttpParser", parser::vllm_http::factory),
    E::beta(parser::sglang_http::TYPE, "sglangHttpParser", parser::sglang_http::factory),
    E::beta(parser::vertexai::TYPE, "vertexaiParser", parser::vertexai::factory),
    E::beta(parser::vllm_grpc::TYPE, "vllmgrpcParser", parser::vllm_grpc::factory),
    // flow-control policies (used when the `flowControl` gate is on)
    E::stable(flow_control::fcfs::TYPE, flow_control::fcfs::factory),
    E::stable(flow_control::edf::TYPE, flow_control::edf::factory),
    E::stable(flow_control::slo_deadline::TYPE, flow_control::slo_deadline::factory),
    E::stable(flow_control::global_strict::TYPE, flow_control::global_strict::factory),
    E::stable(flow_control::round_robin::TYPE, flow_control::round_robin::factory),
    E::beta(flow_control::program_aware::TYPE, "programAwareFairness", flow_control::program_aware::factory),
    E::stable(flow_control::static_usage_limit::TYPE, flow_control::static_usage_limit::factory),
    E::alpha(flow_control::priority_holdback::TYPE, "priorityHoldbackPolicy", flow_control::priority_holdback::factory),
    E::alpha(flow_control::soft_reflective_ceiling::TYPE, "softReflectiveCeilingPolicy", flow_control::soft_reflective_ceiling::factory),
    // data layer
    E::stable(datalayer::metrics_source::TYPE, datalayer::metrics_source::factory),
    E::stable(datalayer::core_metrics_extractor::TYPE, datalayer::core_metrics_extractor::factory),
    E::beta(datalayer::file_discovery::TYPE, "fileDiscovery", datalayer::file_discovery::factory),
    E::beta(datalayer::endpoint_notification_source::TYPE, "precisePrefixCache", datalayer::endpoint_notification_source::factory),
    E::beta(datalayer::models::SOURCE_TYPE, "modelsDataSource", datalayer::models::source_factory),
    E::beta(datalayer::models::EXTRACTOR_TYPE, "modelsDataSource", datalayer::models::extractor_factory),
    E::alpha(datalayer::dcgm::SOURCE_TYPE, "dcgm", datalayer::dcgm::source_factory),
    E::alpha(datalayer::dcgm::EXTRACTOR_TYPE, "dcgm", datalayer::dcgm::extractor_factory),
    E::alpha(datalayer::topology_extractor::TYPE, "topologyAffinity", datalayer::topology_extractor::factory),
    // llm-d's multi-cluster variants (endpoints are clusters)
    E::alpha(datalayer::multicluster::DISCOVERY_TYPE, "multiCluster", datalayer::multicluster::discovery_factory),
    E::alpha(datalayer::multicluster::SOURCE_TYPE, "multiCluster", datalayer::multicluster::source_factory),
    E::alpha(datalayer::multicluster::EXTRACTOR_TYPE, "multiCluster", datalayer::multicluster::extractor_factory),
    E::alpha(scorer::multicluster::KV_TYPE, "multiCluster", scorer::multicluster::kv_factory),
    E::alpha(scorer::multicluster::QUEUE_TYPE, "multiCluster", scorer::multicluster::queue_factory),
    E::alpha(filter::session_affinity::MULTICLUSTER_TYPE, "multiCluster", filter::session_affinity::multicluster_factory),
    E::alpha("multicluster-prefix-cache-scorer", "multiCluster", scorer::prefix_cache::factory),
    E::alpha("multicluster-approx-prefix-cache-producer", "multiCluster", producer::approx_prefix_cache::factory),
    // deprecated aliases
    E::beta("by-label-selector", "labelSelectorFilter", filter::label_selector::factory)
        .deprecated("'by-label-selector' is deprecated; use 'label-selector-filter' (same parameters)"),
    E::beta(filter::by_label::TYPE, "labelSelectorFilter", filter::by_label::factory)
        .deprecated("use 'label-selector-filter' for label filtering or 'decode-filter'/'prefill-filter'/'encode-filter' for roles"),
    // deprecated aliases llm-d still loads (built as their replacement)
    E::beta(profile::legacy::PD_TYPE, "disaggregatedServing", profile::legacy::pd_factory)
        .deprecated("use 'disagg-profile-handler' (profiles.decode / profiles.prefill, deciders.prefill); loaded as one"),
    E::beta(profile::legacy::PREFILL_HEADER_TYPE, "disaggregatedServing", profile::legacy::prefill_header_factory)
        .deprecated("'disagg-profile-handler' sets the x-prefiller-host-port header itself; this plugin does nothing, remove it"),
    E::beta(profile::legacy::DISAGG_HEADERS_TYPE, "disaggregatedServing", profile::legacy::disagg_headers_factory)
        .deprecated("'disagg-profile-handler' sets the x-prefiller-host-port header itself; this plugin does nothing, remove it"),
    E::stable(profile::legacy::DATA_PARALLEL_TYPE, profile::legacy::data_parallel_factory)
        .deprecated("use 'single-profile-handler': each data-parallel rank is its own endpoint (ip:port) here, so primaryPort is not needed; loaded as one"),
    // upstream types not built here: a clear error instead of "not registered"
    E::not_built("thunder-agent", NEWER_LLMD),
    E::not_built("dp-rank-header-handler", NEWER_LLMD),
    E::not_built("k8s-notification-source", K8S_WATCH),
    E::not_built("sheddable-eviction-filter", IN_FLIGHT_EVICTION),
    E::not_built("priority-then-time-eviction-order-policy", IN_FLIGHT_EVICTION),
];

/// Why llm-d's Kubernetes watch source is missing.
const K8S_WATCH: &str = "it watches a Kubernetes API group/version/kind for out-of-tree extractors written in Go; this engine runs inside Envoy with no API-server client, and no built-in extractor reads such events (endpoint-notification-source, which follows the pool, is built)";
/// Why llm-d's in-flight eviction policies are not plugin types here.
const IN_FLIGHT_EVICTION: &str = "llm-d's runner builds its own instance of these two for flowControl.enableEviction and never reads one configured under plugins; here flowControl.enableEviction applies the same two rules (only sheddable requests, priority < 0; lowest priority, then the newest, first) without a plugin instance, so leave this entry out of plugins";

/// Why the newest llm-d-router types are missing.
const NEWER_LLMD: &str = "added to llm-d-router after the llm-d version this engine follows (see README, 'What does not')";

impl crate::plugin::Registry {
    /// A registry holding every in-tree plugin type ([`BUILTINS`]). Defined here, next to the
    /// table, so the contracts in `plugin/` name no implementation.
    pub fn with_builtins() -> Self {
        let mut r = crate::plugin::Registry::new();
        for e in BUILTINS {
            // The built-in table is checked by a unit test; a duplicate there is skipped here
            // rather than taking the module down.
            if let Err(err) = r.register(*e) {
                log::error!("built-in registry table: {err}");
            }
        }
        r
    }
}
