//! The flow-control layer (GIE v1.5.0 / llm-d-router `pkg/epp/flowcontrol`, enabled by the
//! `flowControl` feature gate): instead of answering a sheddable request 429 when the pool is
//! saturated and sending everything else through, requests wait in the proxy in priority bands
//! and fair per-flow queues and are released as capacity returns.
//!
//! - [`settings`]: the `flowControl` config section resolved into bands, limits and policies.
//! - [`quantity`]: Kubernetes resource quantities (`"1Gi"`, `"500M"`, `100`), as the section
//!   writes its limits.
//! - [`queues`]: the queues and the dispatch cycle, host-independent; each host keeps one
//!   [`queues::FlowQueues`] (process-wide in the native module, per worker VM in Wasm) and wakes
//!   the requests it releases.
//!
//! Semantics, in our words (read from llm-d-router's `controller/internal/processor.go`,
//! `registry/config.go` and the policy plugins; docs/SOURCES.md#flow-control):
//! - A request's flow is (fairness id, priority). The fairness id is the request header
//!   `x-llm-d-inference-fairness-id` (older name `x-gateway-inference-fairness-id`), else
//!   `default-flow`; the priority is its InferenceObjective's.
//! - Admission: the request is refused (429 `queue_full`) when it would take the queued requests
//!   or bytes over the global `maxRequests`/`maxBytes` or its band's (a band defaults to 5000
//!   requests and 1,000,000,000 bytes; 0 means "default", not "none").
//! - Dispatch cycle: saturation is asked of the saturation detector; the usage-limit policy gives
//!   each band a ceiling; bands are visited from the highest priority down, and at the first band
//!   whose ceiling the saturation reaches the cycle stops (a lower band never overtakes a higher
//!   one that is blocked). In a band the fairness policy picks a flow and the ordering policy its
//!   head, which is released. A cycle releases one request; the hosts run cycles until nothing is
//!   released.
//! - A request waits at most its TTL (`defaultRequestTTL`, default 60 s; `0s` = no limit), counted
//!   from when it entered the queue, then gets 429 `queue_timeout`. While the pool has no
//!   endpoints the budget is `noEndpointRequestTTL` (default: the same), counted from when the pool
//!   emptied, and expiry gives 503. A request refused while the pool is empty gets 503 too.
//! - Sheddable requests (priority < 0) are queued like any other, not refused at once.
//! - With `enableEviction`, sheddable requests already sent to a server may be cut short when
//!   higher-priority requests wait on a saturated pool ([`eviction`]).

pub mod eviction;
pub mod quantity;
pub mod queues;
pub mod settings;

pub use queues::{Admission, FlowKey, FlowQueues, Released, Ticket};
pub use settings::{BandSettings, FlowControl};

/// Request header naming the request's flow (tenant).
pub const FAIRNESS_ID_HEADER: &str = "x-llm-d-inference-fairness-id";
/// The older name of [`FAIRNESS_ID_HEADER`], still read.
pub const OLD_FAIRNESS_ID_HEADER: &str = "x-gateway-inference-fairness-id";
/// The flow of a request that names none.
pub const DEFAULT_FAIRNESS_ID: &str = "default-flow";
/// Cycle-state key of the request's fairness id (a `String`), put there before the producers
/// run when flow control is on, for plugins that account per flow (`program-aware-fairness`).
pub const FAIRNESS_ID: crate::plugin::DataKey = "FairnessID";
