//! Flow-control policy contracts (GIE / llm-d `framework/interface/flowcontrol/plugins.go`): how a
//! priority band orders the requests of one flow ([`OrderingPolicy`]), which flow of a band is
//! served next ([`FairnessPolicy`]), and the saturation ceiling each band dispatches under
//! ([`UsageLimitPolicy`]). The queues themselves are [`crate::flowcontrol`].

/// What an ordering or fairness policy may read of one queued request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuedRequest {
    /// When the request entered the queue, ms since the Unix epoch.
    pub enqueued_ms: u64,
    /// Its queue-wait budget (ms; 0 = none).
    pub ttl_ms: u64,
    /// When the request arrived at the proxy, ms since the Unix epoch.
    pub received_ms: u64,
    /// Its TTFT objective from `x-llm-d-slo-ttft-ms` (or the older `x-slo-ttft-ms`), ms.
    pub slo_ttft_ms: Option<u64>,
    /// Request body size, bytes.
    pub bytes: u64,
    /// Arrival order within the controller (ties between equal times).
    pub seq: u64,
}

/// Orders the requests of one flow: [`OrderingPolicy::less`] is true when `a` goes before `b`.
pub trait OrderingPolicy {
    /// True when `a` should be dispatched before `b`.
    fn less(&self, a: &QueuedRequest, b: &QueuedRequest) -> bool;
    /// True when the order is arrival order (the queue's head is its oldest request), so the
    /// queue need not be searched.
    fn is_fifo(&self) -> bool {
        false
    }
}

/// One flow of a band as a fairness policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct FlowHead<'a> {
    /// The flow's fairness id.
    pub id: &'a str,
    /// Its next request by the band's ordering policy (`None`: the flow is empty).
    pub head: Option<&'a QueuedRequest>,
}

/// Chooses which flow of a priority band is served next.
pub trait FairnessPolicy {
    /// The index in `flows` of the flow to serve, or `None` when every flow is empty. `cursor`
    /// is this band's policy state (the last flow served, for round robin); `ordering` compares
    /// heads across flows.
    fn pick(
        &self,
        flows: &[FlowHead<'_>],
        ordering: &dyn OrderingPolicy,
        cursor: &mut Option<alloc::string::String>,
    ) -> Option<usize>;
}

/// Sets the saturation ceiling under which each priority band may dispatch.
pub trait UsageLimitPolicy {
    /// Writes one ceiling (saturation, fraction where 1.0 is the detector's "saturated") per
    /// entry of `priorities` (highest first) into `ceilings` (same length, preset to 1.0).
    fn ceilings(&self, saturation: f64, priorities: &[i32], ceilings: &mut [f64]);
}
