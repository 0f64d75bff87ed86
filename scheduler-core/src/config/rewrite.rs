//! `inferenceModelRewrites`: GIE's InferenceModelRewrite objects (v1alpha2) in the picker's
//! configuration, each its name and its `spec` fields, oldest first. The field names are the
//! CRD's, so a rewrite's spec can be copied in unchanged.

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;
use serde_json::Value;

/// One InferenceModelRewrite.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelRewriteSpec {
    /// The object's name: the `model_rewrite_name` label of
    /// `inference_extension_model_rewrite_decisions_total`.
    pub name: String,
    /// The InferencePool the object belongs to; accepted and not read (the picker serves one
    /// pool).
    #[serde(default)]
    pub pool_ref: Option<Value>,
    /// Rules in order; the first that matches a request's model applies.
    pub rules: Vec<RewriteRuleSpec>,
}

/// One rule: which requests (by model) and the weighted models they are sent as.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RewriteRuleSpec {
    /// Any of these matches (logical OR); empty: every request (a generic rule).
    #[serde(default)]
    pub matches: Vec<RewriteMatchSpec>,
    /// The models to send a matching request as (at least one).
    #[serde(default)]
    pub targets: Vec<TargetModelSpec>,
}

/// One match criterion.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RewriteMatchSpec {
    /// The request body's `model`.
    pub model: ModelMatchSpec,
}

/// How a request's model is matched.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelMatchSpec {
    /// `Exact` (the default and only value).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The model name.
    pub value: String,
}

/// One weighted target.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetModelSpec {
    /// Share of the rule's requests: weight / sum of the rule's weights; 1..=1,000,000, set on
    /// every target of the rule or on none (then the targets share equally).
    #[serde(default)]
    pub weight: Option<u32>,
    /// The model name the request is sent as.
    pub model_rewrite: String,
}
