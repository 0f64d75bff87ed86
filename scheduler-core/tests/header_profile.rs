//! `header-profile-handler` through the real loader and director: one picker serving the
//! encode, prefill and decode stages of a disaggregated pipeline, the stage named per call by
//! a request header (llm-d's coordinator model), as the plugin's upstream README configures it.

use scheduler_core::model::endpoint::Endpoint;
use scheduler_core::plugin::RequestState;
use scheduler_core::rng::SplitMix64;
use scheduler_core::{load, EndpointPicker, Registry, RequestError};

/// Two endpoints per role, addressed 10.0.<role>.<i>.
fn fleet() -> Vec<Endpoint> {
    let mut eps = vec![];
    for (r, role) in ["encode", "prefill", "decode"].iter().enumerate() {
        for i in 0..2 {
            eps.push(Endpoint::new(format!("10.0.{r}.{i}:8000")).with_label("llm-d.ai/role", role));
        }
    }
    eps
}

fn role_of(eps: &[Endpoint], addr: &str) -> String {
    eps.iter()
        .find(|e| e.address == addr)
        .and_then(|e| e.label("llm-d.ai/role"))
        .unwrap_or("?")
        .to_string()
}

/// The README's example, with `handler_params` as the handler's parameters and `profiles` the
/// stages configured.
fn picker(handler_params: &str, profiles: &[&str]) -> EndpointPicker {
    let profiles: Vec<String> = profiles
        .iter()
        .map(|p| format!(r#"{{"name": "{p}", "plugins": [{{"pluginRef": "{p}-filter"}}]}}"#))
        .collect();
    let cfg = format!(
        r#"{{"plugins": [
            {{"type": "encode-filter"}}, {{"type": "prefill-filter"}}, {{"type": "decode-filter"}},
            {{"type": "header-profile-handler", "parameters": {handler_params}}}],
          "schedulingProfiles": [{}]}}"#,
        profiles.join(",")
    );
    load(&cfg, &Registry::with_builtins())
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// The role of the endpoint one request is sent to, with these request headers.
fn role_for(p: &EndpointPicker, headers: &[(&str, &str)]) -> Result<String, RequestError> {
    let eps = fleet();
    let hs = headers.iter().map(|&(k, v)| (k.into(), v.into())).collect();
    let req = p
        .parse_request("/v1/completions", br#"{"model":"m","prompt":"hello"}"#, hs)
        .unwrap();
    let mut state = RequestState::new();
    let r = p.schedule(&req, &eps, 1, &mut SplitMix64::new(7), &mut state)?;
    assert!(
        r.headers.is_empty(),
        "one stage per call: no prefiller header"
    );
    Ok(role_of(&eps, &p.destination(&r, &eps)))
}

#[test]
fn the_header_names_the_stage_and_a_missing_header_runs_the_default() {
    let p = picker("{}", &["encode", "prefill", "decode"]);
    for stage in ["encode", "prefill", "decode"] {
        assert_eq!(role_for(&p, &[("epp-profile", stage)]).unwrap(), stage);
    }
    // Surrounding blanks are trimmed; a missing or blank header runs `decode`.
    assert_eq!(
        role_for(&p, &[("epp-profile", " prefill ")]).unwrap(),
        "prefill"
    );
    assert_eq!(role_for(&p, &[]).unwrap(), "decode");
    assert_eq!(role_for(&p, &[("epp-profile", "  ")]).unwrap(), "decode");
}

#[test]
fn an_unknown_stage_is_a_bad_request_that_names_it() {
    let p = picker("{}", &["encode", "prefill", "decode"]);
    let err = role_for(&p, &[("epp-profile", "Prefill")]).unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("'Prefill'") && msg.contains("epp-profile"),
        "{msg}"
    );
}

#[test]
fn header_name_and_default_profile_are_configurable() {
    let p = picker(
        r#"{"headerName": "X-Stage", "defaultProfile": "prefill"}"#,
        &["prefill", "decode"],
    );
    assert_eq!(role_for(&p, &[]).unwrap(), "prefill");
    assert_eq!(role_for(&p, &[("x-stage", "decode")]).unwrap(), "decode");
    // The old header means nothing now.
    assert_eq!(
        role_for(&p, &[("epp-profile", "decode")]).unwrap(),
        "prefill"
    );
}

#[test]
fn one_configured_profile_always_runs() {
    let p = picker("{}", &["prefill"]);
    assert_eq!(
        role_for(&p, &[("epp-profile", "decode")]).unwrap(),
        "prefill"
    );
    assert_eq!(role_for(&p, &[]).unwrap(), "prefill");
}

#[test]
fn a_default_profile_that_is_not_configured_is_reported() {
    // At load, as a warning (upstream loads such a config too)...
    let cfg = r#"{"plugins": [{"type": "encode-filter"}, {"type": "prefill-filter"},
        {"type": "header-profile-handler"}],
        "schedulingProfiles": [{"name": "encode", "plugins": [{"pluginRef": "encode-filter"}]},
                               {"name": "prefill", "plugins": [{"pluginRef": "prefill-filter"}]}]}"#;
    let (_, report) = load(cfg, &Registry::with_builtins()).unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("defaultProfile 'decode' is not a configured")),
        "{:?}",
        report.warnings
    );
    // ... and on each request that needs it.
    let p = picker(r#"{"defaultProfile": "decode"}"#, &["encode", "prefill"]);
    let err = role_for(&p, &[]).unwrap_err();
    assert_eq!(err.status(), 429);
    assert!(err.to_string().contains("defaultProfile 'decode'"), "{err}");
    assert_eq!(
        role_for(&p, &[("epp-profile", "encode")]).unwrap(),
        "encode"
    );
}

#[test]
fn an_unknown_parameter_is_warned_and_dropped() {
    let cfg = r#"{"plugins": [{"type": "decode-filter"},
        {"type": "header-profile-handler", "parameters": {"header": "x"}}],
        "schedulingProfiles": [{"name": "decode", "plugins": [{"pluginRef": "decode-filter"}]}]}"#;
    let (_, report) = load(cfg, &Registry::with_builtins()).unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("header")),
        "{:?}",
        report.warnings
    );
}
