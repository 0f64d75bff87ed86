//! The one place that turns an error into a local reply: status plus an OpenAI-style JSON body
//! `{"error":{"message":…,"type":…,"code":…}}`, or for a gRPC request (vLLM's gRPC API) the
//! gRPC status that HTTP status stands for and the message.

use scheduler_core::RequestError;

/// A local reply to send instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u32,
    /// JSON body.
    pub body: String,
    /// The error message alone (a gRPC reply's `grpc-message`).
    pub message: String,
    /// Send `Retry-After` (flow control's 429s: the queue is full or the wait timed out).
    pub retry: bool,
    /// The value of [`DROPPED_REASON_HEADER`] ([`dropped_reason`]), if the error has one.
    pub dropped_reason: Option<&'static str>,
}

/// Response header naming why a request was dropped (llm-d-router's), e.g. `evicted`.
pub const DROPPED_REASON_HEADER: &str = "x-llm-d-request-dropped-reason";

/// llm-d-router's [`DROPPED_REASON_HEADER`] value for the errors it labels (its admission,
/// director and scheduler): a refusal for load — queue full, or every endpoint filtered out —
/// is `rejected-saturated`; a queue wait that ran out `rejected-ttl-expired`; no endpoint at all
/// `rejected-no-endpoints`; a request cut short in flight `evicted`. Other errors carry none
/// (upstream's legacy sheddable drop has none either).
pub fn dropped_reason(err: &RequestError) -> Option<&'static str> {
    match err {
        RequestError::QueueFull | RequestError::NoTargetEndpoint(_) => Some("rejected-saturated"),
        RequestError::QueueTimeout => Some("rejected-ttl-expired"),
        RequestError::NoCandidates => Some("rejected-no-endpoints"),
        RequestError::Evicted => Some("evicted"),
        _ => None,
    }
}

impl Reply {
    /// The reply for `err`; status and type come from [`RequestError::status`] and
    /// [`RequestError::error_type`].
    pub fn from_error(err: &RequestError) -> Reply {
        let message = err.to_string();
        let body = serde_json::json!({
            "error": {
                "message": message,
                "type": err.error_type(),
                "code": err.code(),
            }
        });
        Reply {
            status: u32::from(err.status()),
            body: body.to_string(),
            message,
            retry: matches!(err, RequestError::QueueFull | RequestError::QueueTimeout),
            dropped_reason: dropped_reason(err),
        }
    }

    /// The gRPC status code for this reply's HTTP status, chosen by meaning (gRPC's status
    /// codes: 3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 13 INTERNAL, 14 UNAVAILABLE, 5 NOT_FOUND,
    /// 9 FAILED_PRECONDITION, 2 UNKNOWN): a bad request is the caller's error, not INTERNAL as
    /// gRPC's generic HTTP mapping would have it; 429 is a quota or queue limit; 503 no endpoint
    /// now; 412 a conditional decode whose endpoint holds no prefix.
    pub fn grpc_status(&self) -> u32 {
        match self.status {
            400 | 422 => 3,
            404 => 5,
            412 => 9,
            413 | 429 => 8,
            502..=504 => 14,
            500 => 13,
            _ => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_and_escaped() {
        let r = Reply::from_error(&RequestError::InvalidJson("bad \"quote\"\n".into()));
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(
            v["error"]["message"],
            "error unmarshaling request body: bad \"quote\"\n"
        );
        assert_eq!(
            r.message,
            "error unmarshaling request body: bad \"quote\"\n"
        );
        assert_eq!(r.grpc_status(), 3);
    }

    #[test]
    fn grpc_status_by_meaning() {
        for (err, want) in [
            (RequestError::NoSnapshot, 14),
            (RequestError::BodyTooLarge(10), 8),
            (RequestError::QueueFull, 8),
            (RequestError::MissingPrompt("text"), 3),
            (RequestError::PreconditionFailed, 9),
        ] {
            assert_eq!(Reply::from_error(&err).grpc_status(), want, "{err:?}");
        }
    }

    #[test]
    fn drops_are_labelled_as_llm_d_labels_them() {
        for (err, want) in [
            (RequestError::QueueFull, Some("rejected-saturated")),
            (
                RequestError::NoTargetEndpoint("all filtered".into()),
                Some("rejected-saturated"),
            ),
            (RequestError::QueueTimeout, Some("rejected-ttl-expired")),
            (RequestError::NoCandidates, Some("rejected-no-endpoints")),
            (RequestError::Evicted, Some("evicted")),
            (RequestError::Saturated, None),
            (RequestError::MissingModel, None),
        ] {
            assert_eq!(Reply::from_error(&err).dropped_reason, want, "{err:?}");
        }
    }
}
