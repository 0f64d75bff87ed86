//! llm-d's conditional decode (RFC 7240 `Prefer: if-available`): a request carrying it goes to
//! the endpoint chosen only when that endpoint already holds some of its prompt's prefix, as the
//! cycle's prefix lookup found it; otherwise the picker answers 412 and records nothing.

use scheduler_core::{
    load, Endpoint, EndpointPicker, Registry, RequestError, RequestState, SplitMix64,
};

const NOW_MS: u64 = 1_000_000;

fn pool() -> Vec<Endpoint> {
    (1..=3)
        .map(|i| {
            let mut e = Endpoint::new(format!("10.0.0.{i}:8000"));
            e.metrics.update_time_ms = NOW_MS - 10;
            e
        })
        .collect()
}

/// Schedules a completion of `prompt` with `headers`: the endpoint chosen, or the error.
fn route(
    picker: &EndpointPicker,
    pool: &[Endpoint],
    prompt: &str,
    headers: &[(&str, &str)],
) -> Result<String, RequestError> {
    let body = serde_json::json!({"model": "m", "prompt": prompt}).to_string();
    let headers = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    let req = picker.parse_request("/v1/completions", body.as_bytes(), headers)?;
    let r = picker.schedule(
        &req,
        pool,
        NOW_MS,
        &mut SplitMix64::new(7),
        &mut RequestState::new(),
    )?;
    Ok(picker.destination(&r, pool))
}

#[test]
fn a_conditional_decode_goes_only_where_the_prefix_is_cached() {
    // GIE's default profile: the approximate prefix producer and scorer among its plugins.
    let (picker, _) = load("{}", &Registry::with_builtins()).unwrap();
    let pool = pool();
    let cached = "You are a support agent for the billing team. ".repeat(40);
    let other = "Translate the following paragraph into French. ".repeat(40);
    let prefer = [("prefer", "if-available")];

    // Nothing was routed yet: no endpoint holds the prompt, so 412, as llm-d-router answers.
    let err = route(&picker, &pool, &cached, &prefer).unwrap_err();
    assert_eq!(err, RequestError::PreconditionFailed);
    assert_eq!(err.status(), 412);
    // The refused request was recorded nowhere: asking again is refused again.
    assert_eq!(
        route(&picker, &pool, &cached, &prefer),
        Err(RequestError::PreconditionFailed)
    );

    // Routed without the preference, the prompt is now believed held where it went; the
    // conditional decode of the same prompt goes there (other tokens beside it, any case).
    let held_at = route(&picker, &pool, &cached, &[]).unwrap();
    for value in [
        "if-available",
        "respond-async, If-Available; wait=1",
        " IF-AVAILABLE ",
    ] {
        let went = route(
            &picker,
            &pool,
            &format!("{cached} Question?"),
            &[("prefer", value)],
        );
        assert_eq!(went.as_deref(), Ok(held_at.as_str()), "Prefer: {value}");
    }
    // A prompt no endpoint holds is still refused; another preference alone is not a condition.
    assert_eq!(
        route(&picker, &pool, &other, &prefer),
        Err(RequestError::PreconditionFailed)
    );
    assert!(route(&picker, &pool, &other, &[("prefer", "respond-async")]).is_ok());
}
