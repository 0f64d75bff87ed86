//! The one place that turns an error into a local reply: status plus an OpenAI-style JSON body
//! `{"error":{"message":…,"type":…,"code":…}}`.

use scheduler_core::RequestError;

/// A local reply to send instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u32,
    /// JSON body.
    pub body: String,
    /// Send `Retry-After` (flow control's 429s: the queue is full or the wait timed out).
    pub retry: bool,
}

impl Reply {
    /// The reply for `err`; status and type come from [`RequestError::status`] and
    /// [`RequestError::error_type`].
    pub fn from_error(err: &RequestError) -> Reply {
        let body = serde_json::json!({
            "error": {
                "message": err.to_string(),
                "type": err.error_type(),
                "code": err.code(),
            }
        });
        Reply {
            status: u32::from(err.status()),
            body: body.to_string(),
            retry: matches!(err, RequestError::QueueFull | RequestError::QueueTimeout),
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
    }
}
