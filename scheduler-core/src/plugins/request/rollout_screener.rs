//! `disaggregatedset-rollout-screener` (llm-d, Alpha): during a rollout of a disaggregated
//! deployment (a `DisaggregatedSet`: prefill and decode pods of one version share a revision
//! label), keeps every request on one revision, so a prefill pod never hands its KV cache to a
//! decode pod of another version (llm-d-router `screener/disaggregatedsetrollout`, in our words).
//!
//! Once per request, before any profile (a [`Screener`]):
//! 1. **Coverage.** Endpoints matching `scope.labelSelector` are counted by revision
//!    (`revisionLabelKey`) and role (`roleLabelKey`). A revision with no endpoint for one of
//!    `requireRoles.values` cannot serve and gets no traffic.
//! 2. **Weights.** `sum`: a revision weighs the number of its endpoints over the required roles.
//!    `max-role`: the required role with the most endpoints over all covered revisions (the
//!    first listed wins a tie) is chosen once, and each revision weighs its endpoints of that
//!    role. `disabled`: no coverage check and no choice.
//! 3. **Choice.** Unless the request carries a `strict` selector's header, one covered revision
//!    is drawn with those weights and only its endpoints stay candidates; with a strict header
//!    only the covered revisions stay, and the header narrows them.
//! 4. **Strict selectors.** For each `headerSelectors` entry with `mode: strict` whose header
//!    the request carries, only endpoints whose `labelKey` equals it stay.
//!
//! No candidate left fails the request (503): the screener never crosses revisions. Every
//! selector (strict or `prefer`) also copies the serving endpoint's `labelKey` into the response
//! header `headerName`, so a client (or a second picker) can pin its next request. Upstream
//! counts Ready pods from Kubernetes pod events; here the counts come from the pool snapshot
//! (the endpoints the proxy can reach, with their labels). Upstream's two metrics are not
//! exported.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::error::{ConfigError, FieldPath};
use crate::model::response::ResponseInfo;
use crate::model::result::SchedulingResult;
use crate::parse::label_selector::{self, LabelSelector};
use crate::plugin::registry::{parse_params, Handle};
use crate::plugin::{
    CycleContext, Plugin, PreRequest, RequestState, ResponseHeader, Screener, TypedName,
};
use crate::rng::Rng;

/// Plugin type name.
pub const TYPE: &str = "disaggregatedset-rollout-screener";
/// Default label naming a pod's revision.
pub const DEFAULT_REVISION_LABEL: &str = "disaggregatedset.x-k8s.io/revision";
/// Default label naming a pod's role.
pub const DEFAULT_ROLE_LABEL: &str = "disaggregatedset.x-k8s.io/role";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Params {
    scope: Scope,
    header_selectors: Vec<HeaderSelector>,
    revision_gating: Option<Gating>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Scope {
    label_selector: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HeaderSelector {
    #[serde(default)]
    name: String,
    #[serde(default)]
    header_name: String,
    #[serde(default)]
    label_key: String,
    #[serde(default)]
    mode: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct Gating {
    revision_label_key: String,
    role_label_key: String,
    mode: String,
    require_roles: Option<RequireRoles>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RequireRoles {
    values: Vec<String>,
}

/// How revisions are weighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatingMode {
    /// Endpoints over all required roles.
    Sum,
    /// Endpoints of the globally largest required role.
    MaxRole,
    /// No coverage check or choice.
    Disabled,
}

/// Builds a [`RolloutScreener`].
///
/// # Errors
/// Upstream's checks: `scope.labelSelector` missing or invalid; a selector without `name`,
/// `headerName` or `labelKey`, with a mode other than `strict`/`prefer`, or a duplicate name
/// or header; `revisionGating` missing; a mode other than `sum`/`max-role`/`disabled`;
/// `requireRoles.values` missing, empty, with an empty or duplicate role (for `sum`/`max-role`).
pub fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    let scope_at = FieldPath::key("scope").with_key("labelSelector");
    if p.scope.label_selector.is_empty() {
        return Err(ConfigError::invalid(scope_at, "is required"));
    }
    let scope = label_selector::parse(&p.scope.label_selector)
        .map_err(|e| ConfigError::invalid(scope_at, format!("not a valid label selector: {e}")))?;
    let mut selectors: Vec<HeaderSelector> = Vec::new();
    for (i, s) in p.header_selectors.iter().enumerate() {
        let at = |f: &str| FieldPath::key("headerSelectors").with_index(i).with_key(f);
        for (f, v) in [
            ("name", &s.name),
            ("headerName", &s.header_name),
            ("labelKey", &s.label_key),
        ] {
            if v.is_empty() {
                return Err(ConfigError::invalid(at(f), "is required"));
            }
        }
        if s.mode != "strict" && s.mode != "prefer" {
            return Err(ConfigError::invalid(
                at("mode"),
                format!("'{}' must be one of strict|prefer", s.mode),
            ));
        }
        let mut s = s.clone();
        s.header_name = s.header_name.to_ascii_lowercase();
        if selectors.iter().any(|o| o.name == s.name) {
            return Err(ConfigError::invalid(
                at("name"),
                format!("duplicate name '{}'", s.name),
            ));
        }
        if selectors.iter().any(|o| o.header_name == s.header_name) {
            return Err(ConfigError::invalid(
                at("headerName"),
                format!("duplicate headerName '{}'", s.header_name),
            ));
        }
        selectors.push(s);
    }
    let gating_at = FieldPath::key("revisionGating");
    let g = p
        .revision_gating
        .ok_or_else(|| ConfigError::invalid(gating_at.clone(), "is required"))?;
    let mode = match g.mode.as_str() {
        "sum" => GatingMode::Sum,
        "max-role" => GatingMode::MaxRole,
        "disabled" => GatingMode::Disabled,
        other => {
            return Err(ConfigError::invalid(
                gating_at.with_key("mode"),
                format!("'{other}' must be one of sum|max-role|disabled"),
            ))
        }
    };
    let mut roles: Vec<String> = Vec::new();
    if mode != GatingMode::Disabled {
        let at = gating_at.clone().with_key("requireRoles");
        let rr = g.require_roles.ok_or_else(|| {
            ConfigError::invalid(
                at.clone(),
                format!("is required when revisionGating.mode={}", g.mode),
            )
        })?;
        if rr.values.is_empty() {
            return Err(ConfigError::invalid(
                at.with_key("values"),
                "must contain at least one role",
            ));
        }
        for (i, r) in rr.values.iter().enumerate() {
            if r.is_empty() || roles.contains(r) {
                return Err(ConfigError::invalid(
                    at.clone().with_key("values").with_index(i),
                    "must be a non-empty role listed once",
                ));
            }
            roles.push(r.clone());
        }
    }
    let or_default = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
    Ok(Arc::new(RolloutScreener {
        typed_name: TypedName::new(TYPE, name),
        scope,
        selectors,
        mode,
        roles,
        revision_label: or_default(g.revision_label_key, DEFAULT_REVISION_LABEL),
        role_label: or_default(g.role_label_key, DEFAULT_ROLE_LABEL),
    }))
}

/// See the module docs.
pub struct RolloutScreener {
    typed_name: TypedName,
    scope: LabelSelector,
    selectors: Vec<HeaderSelector>,
    mode: GatingMode,
    /// Required roles, in configuration order (tie-break of `max-role`).
    roles: Vec<String>,
    revision_label: String,
    role_label: String,
}

impl RolloutScreener {
    /// The traffic share (0..1) of each covered revision over `endpoints` (pool order
    /// irrelevant); revisions missing a required role are absent. Empty when gating is off.
    pub fn shares(&self, endpoints: &[crate::model::endpoint::Endpoint]) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if self.mode == GatingMode::Disabled {
            return out;
        }
        // revision → count per required role (same order as `roles`).
        let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for e in endpoints {
            if !self.scope.matches(|k| e.label(k)) {
                continue;
            }
            let (Some(rev), Some(role)) =
                (e.label(&self.revision_label), e.label(&self.role_label))
            else {
                continue;
            };
            if rev.is_empty() {
                continue;
            }
            if let Some(ri) = self.roles.iter().position(|r| r == role) {
                let c = counts
                    .entry(rev)
                    .or_insert_with(|| alloc::vec![0; self.roles.len()]);
                if let Some(n) = c.get_mut(ri) {
                    *n += 1;
                }
            }
        }
        counts.retain(|_, c| c.iter().all(|&n| n > 0));
        let weights: Vec<(&str, u64)> = match self.mode {
            GatingMode::MaxRole => {
                let mut dominant = 0usize;
                let mut best: Option<u64> = None;
                for ri in 0..self.roles.len() {
                    let total: u64 = counts
                        .values()
                        .map(|c| c.get(ri).copied().unwrap_or(0))
                        .sum();
                    if best.is_none_or(|b| total > b) {
                        best = Some(total);
                        dominant = ri;
                    }
                }
                counts
                    .iter()
                    .map(|(r, c)| (*r, c.get(dominant).copied().unwrap_or(0)))
                    .collect()
            }
            _ => counts.iter().map(|(r, c)| (*r, c.iter().sum())).collect(),
        };
        let total: u64 = weights.iter().map(|(_, w)| w).sum();
        if total > 0 {
            for (r, w) in weights {
                out.insert(r.to_string(), w as f64 / total as f64);
            }
        }
        out
    }
}

impl Plugin for RolloutScreener {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_screener(&self) -> Option<&dyn Screener> {
        Some(self)
    }
    fn as_pre_request(&self) -> Option<&dyn PreRequest> {
        (!self.selectors.is_empty()).then_some(self as &dyn PreRequest)
    }
    fn as_response_header(&self) -> Option<&dyn ResponseHeader> {
        (!self.selectors.is_empty()).then_some(self as &dyn ResponseHeader)
    }
}

impl Screener for RolloutScreener {
    fn screen(&self, cx: &CycleContext<'_>, candidates: &mut Vec<usize>, rng: &mut dyn Rng) {
        let label = |i: usize, key: &str| cx.endpoints.get(i).and_then(|e| e.label(key));
        if self.mode != GatingMode::Disabled {
            let shares = self.shares(cx.endpoints);
            // Covered revisions present among the candidates, in name order (as upstream).
            let mut present: Vec<(&str, f64)> = shares
                .iter()
                .filter(|(rev, share)| {
                    **share > 0.0
                        && candidates
                            .iter()
                            .any(|&i| label(i, &self.revision_label) == Some(rev.as_str()))
                })
                .map(|(r, s)| (r.as_str(), *s))
                .collect();
            present.sort_by(|a, b| a.0.cmp(b.0));
            let strict_header = self.selectors.iter().any(|s| {
                s.mode == "strict"
                    && cx
                        .request
                        .header(&s.header_name)
                        .is_some_and(|v| !v.is_empty())
            });
            let chosen: Option<&str> = if strict_header || present.is_empty() {
                None
            } else {
                let total: f64 = present.iter().map(|(_, s)| s).sum();
                let x = rng.next_f64() * total;
                let mut acc = 0.0;
                let mut pick = present.last().map(|(r, _)| *r);
                for (r, s) in &present {
                    acc += s;
                    if x < acc {
                        pick = Some(*r);
                        break;
                    }
                }
                pick
            };
            candidates.retain(|&i| {
                let rev = label(i, &self.revision_label);
                rev.is_some_and(|r| present.iter().any(|(p, _)| *p == r))
                    && chosen.is_none_or(|c| rev == Some(c))
            });
        }
        for s in self.selectors.iter().filter(|s| s.mode == "strict") {
            let Some(want) = cx.request.header(&s.header_name).filter(|v| !v.is_empty()) else {
                continue;
            };
            candidates.retain(|&i| label(i, &s.label_key) == Some(want));
            if candidates.is_empty() {
                log::debug!(
                    "{TYPE} '{}': strict header {} = '{want}' matched no endpoint",
                    self.typed_name.name,
                    s.header_name
                );
                return;
            }
        }
    }
}

/// The headers to stamp for each target endpoint of the request, by address.
struct Stamps(Vec<(String, Vec<(String, String)>)>);

impl PreRequest for RolloutScreener {
    fn pre_request(
        &self,
        cx: &CycleContext<'_>,
        result: &SchedulingResult,
        state: &mut RequestState,
    ) {
        let Some(primary) = result.primary() else {
            return;
        };
        let stamps = primary
            .targets
            .iter()
            .filter_map(|&t| cx.endpoints.get(t))
            .map(|e| {
                let headers = self
                    .selectors
                    .iter()
                    .filter_map(|s| {
                        e.label(&s.label_key)
                            .filter(|v| !v.is_empty())
                            .map(|v| (s.header_name.clone(), v.to_string()))
                    })
                    .collect();
                (e.address.clone(), headers)
            })
            .collect();
        state.put(&self.typed_name.name, Stamps(stamps));
    }
}

impl ResponseHeader for RolloutScreener {
    fn response_header(
        &self,
        state: &mut RequestState,
        response: &ResponseInfo<'_>,
        out: &mut Vec<(String, String)>,
    ) {
        let Some(Stamps(stamps)) = state.take::<Stamps>(&self.typed_name.name) else {
            return;
        };
        let served = match response.served_endpoint {
            Some(a) => stamps.into_iter().find(|(addr, _)| addr == a),
            None => stamps.into_iter().next(),
        };
        if let Some((_, headers)) = served {
            out.extend(headers);
        }
    }
}
