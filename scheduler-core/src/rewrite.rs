//! Model rewrites (GIE's InferenceModelRewrite): a request for one model is sent as another,
//! chosen by weight among a rule's targets — traffic splitting between model versions or LoRA
//! adapters, canary rollouts.
//!
//! Which rule applies to a request's model, as GIE's model-rewrite store decides it: a rule
//! naming the model exactly wins over a generic rule (one with no matches); among exact rules
//! the oldest object's wins, then the first in its list; among generic rules likewise. Objects
//! are listed oldest first in the configuration (GIE orders them by creation time). The rule's
//! target is drawn with probability weight / sum of weights (all weights unset: equal shares).
//! A rule applies after the `x-llm-d-model-name-rewrite` header (older name
//! `x-gateway-model-name-rewrite`): it overrides that header, as in GIE
//! (docs/SOURCES.md#gie-model-rewrite).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::config::rewrite::ModelRewriteSpec;
use crate::error::{ConfigError, FieldPath};
use crate::rng::Rng;

/// Largest weight GIE's CRD accepts.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// One rule ready to draw from.
#[derive(Debug)]
struct Rule {
    /// The object it came from.
    rewrite: Arc<str>,
    /// (cumulative weight, model): the draw takes the first whose cumulative weight exceeds a
    /// number below the total.
    targets: Vec<(u64, String)>,
}

impl Rule {
    fn draw(&self, rng: &mut dyn Rng) -> Option<&str> {
        let total = self.targets.last()?.0;
        let x = rng.below(usize::try_from(total).ok()?) as u64;
        self.targets
            .iter()
            .find(|(cum, _)| x < *cum)
            .map(|(_, m)| m.as_str())
    }
}

/// Every configured rule, by precedence. Empty when none is configured (no cost per request).
#[derive(Debug, Default)]
pub struct ModelRewrites {
    /// (model, rule) for rules that name models, in precedence order.
    exact: Vec<(String, Arc<Rule>)>,
    /// Rules without matches, in precedence order.
    generic: Vec<Arc<Rule>>,
}

/// A rewrite decision: the object whose rule applied and the model chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite<'a> {
    /// The InferenceModelRewrite's name.
    pub rewrite: &'a Arc<str>,
    /// The model the request is sent as.
    pub target: &'a str,
}

impl ModelRewrites {
    /// The rules of `specs` (oldest object first).
    ///
    /// # Errors
    /// At the offending field of `inferenceModelRewrites`: an empty or duplicate name, a rule
    /// without targets, an empty model, a match type other than `Exact`, a weight outside
    /// 1..=1,000,000, or weights set on only some targets of a rule.
    pub fn from_specs(specs: &[ModelRewriteSpec]) -> Result<Self, ConfigError> {
        let mut out = ModelRewrites::default();
        let mut names: Vec<&str> = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = FieldPath::key("inferenceModelRewrites").with_index(i);
            if spec.name.is_empty() || names.contains(&spec.name.as_str()) {
                return Err(ConfigError::invalid(
                    at.with_key("name"),
                    "each model rewrite needs a name of its own",
                ));
            }
            names.push(&spec.name);
            let name: Arc<str> = Arc::from(spec.name.as_str());
            for (j, r) in spec.rules.iter().enumerate() {
                let at = at.clone().with_key("rules").with_index(j);
                if r.targets.is_empty() {
                    return Err(ConfigError::invalid(
                        at.with_key("targets"),
                        "a rule needs at least one target",
                    ));
                }
                let weighted = r.targets.iter().filter(|t| t.weight.is_some()).count();
                if weighted != 0 && weighted != r.targets.len() {
                    return Err(ConfigError::invalid(
                        at.with_key("targets"),
                        "set weight on every target of a rule or on none",
                    ));
                }
                let mut cum = 0u64;
                let mut targets = Vec::with_capacity(r.targets.len());
                for (k, t) in r.targets.iter().enumerate() {
                    let at = at.clone().with_key("targets").with_index(k);
                    if t.model_rewrite.is_empty() {
                        return Err(ConfigError::invalid(
                            at.with_key("modelRewrite"),
                            "modelRewrite must name a model",
                        ));
                    }
                    let w = t.weight.unwrap_or(1);
                    if !(1..=MAX_WEIGHT).contains(&w) {
                        return Err(ConfigError::invalid(
                            at.with_key("weight"),
                            "weight must be between 1 and 1000000",
                        ));
                    }
                    cum += u64::from(w);
                    targets.push((cum, t.model_rewrite.clone()));
                }
                let rule = Arc::new(Rule {
                    rewrite: name.clone(),
                    targets,
                });
                if r.matches.is_empty() {
                    out.generic.push(rule);
                    continue;
                }
                for (k, m) in r.matches.iter().enumerate() {
                    let at = at
                        .clone()
                        .with_key("matches")
                        .with_index(k)
                        .with_key("model");
                    if m.model.kind.as_deref().is_some_and(|t| t != "Exact") {
                        return Err(ConfigError::invalid(
                            at.with_key("type"),
                            "the only match type is Exact",
                        ));
                    }
                    if m.model.value.is_empty() {
                        return Err(ConfigError::invalid(
                            at.with_key("value"),
                            "a match names a model",
                        ));
                    }
                    out.exact.push((m.model.value.clone(), rule.clone()));
                }
            }
        }
        Ok(out)
    }

    /// True when no rule is configured.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.generic.is_empty()
    }

    /// The rule for a request for `model`: the first exact rule naming it, else the first
    /// generic rule.
    fn rule_for(&self, model: &str) -> Option<&Arc<Rule>> {
        self.exact
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, r)| r)
            .or_else(|| self.generic.first())
    }

    /// Whether a rule applies to a request for `model`: [`Self::choose`] then draws a target.
    pub fn applies_to(&self, model: &str) -> bool {
        self.rule_for(model).is_some()
    }

    /// The rule that applies to a request for `model`, and the target drawn with `rng`; `None`
    /// when no rule applies.
    pub fn choose(&self, model: &str, rng: &mut dyn Rng) -> Option<Rewrite<'_>> {
        let rule = self.rule_for(model)?;
        Some(Rewrite {
            rewrite: &rule.rewrite,
            target: rule.draw(rng)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use alloc::string::ToString;

    fn rules(json: &str) -> Result<ModelRewrites, ConfigError> {
        let specs: Vec<ModelRewriteSpec> = serde_json::from_str(json).unwrap();
        ModelRewrites::from_specs(&specs)
    }

    #[test]
    fn exact_beats_generic_and_older_beats_newer() {
        let r = rules(
            r#"[
              {"name": "catch-all", "rules": [{"targets": [{"modelRewrite": "fallback"}]}]},
              {"name": "old", "rules": [
                 {"matches": [{"model": {"value": "llama"}}], "targets": [{"modelRewrite": "llama-v1"}]}]},
              {"name": "new", "rules": [
                 {"matches": [{"model": {"type": "Exact", "value": "llama"}}, {"model": {"value": "mistral"}}],
                  "targets": [{"modelRewrite": "v2"}]}]}
            ]"#,
        )
        .unwrap();
        let mut rng = SplitMix64::new(1);
        let pick = |m: &str, rng: &mut SplitMix64| {
            r.choose(m, rng)
                .map(|c| (String::from(&**c.rewrite), String::from(c.target)))
        };
        assert_eq!(
            pick("llama", &mut rng),
            Some(("old".into(), "llama-v1".into()))
        );
        assert_eq!(pick("mistral", &mut rng), Some(("new".into(), "v2".into())));
        assert_eq!(
            pick("other", &mut rng),
            Some(("catch-all".into(), "fallback".into()))
        );
        assert!(ModelRewrites::default().choose("llama", &mut rng).is_none());
    }

    #[test]
    fn targets_are_drawn_by_weight() {
        let r = rules(
            r#"[{"name": "canary", "rules": [{"matches": [{"model": {"value": "m"}}],
                "targets": [{"modelRewrite": "stable", "weight": 90}, {"modelRewrite": "canary", "weight": 10}]}]}]"#,
        )
        .unwrap();
        let mut rng = SplitMix64::new(7);
        let canary = (0..10_000)
            .filter(|_| r.choose("m", &mut rng).unwrap().target == "canary")
            .count();
        assert!((800..1200).contains(&canary), "{canary} of 10000");
        // Unweighted: equal shares.
        let r = rules(
            r#"[{"name": "ab", "rules": [{"targets": [{"modelRewrite": "a"}, {"modelRewrite": "b"}]}]}]"#,
        )
        .unwrap();
        let a = (0..10_000)
            .filter(|_| r.choose("x", &mut rng).unwrap().target == "a")
            .count();
        assert!((4_500..5_500).contains(&a), "{a} of 10000");
    }

    #[test]
    fn invalid_rules_name_their_field() {
        let err = |json: &str| rules(json).unwrap_err().to_string();
        assert!(err(r#"[{"name": "", "rules": []}]"#).starts_with("inferenceModelRewrites[0].name"));
        assert!(
            err(r#"[{"name": "a", "rules": []}, {"name": "a", "rules": []}]"#)
                .starts_with("inferenceModelRewrites[1].name")
        );
        assert!(err(r#"[{"name": "a", "rules": [{"targets": []}]}]"#)
            .starts_with("inferenceModelRewrites[0].rules[0].targets"));
        assert!(err(r#"[{"name": "a", "rules": [{"targets": [{"modelRewrite": "x", "weight": 1}, {"modelRewrite": "y"}]}]}]"#)
            .contains("every target"));
        assert!(err(
            r#"[{"name": "a", "rules": [{"targets": [{"modelRewrite": "x", "weight": 0}]}]}]"#
        )
        .starts_with("inferenceModelRewrites[0].rules[0].targets[0].weight"));
        assert!(err(r#"[{"name": "a", "rules": [{"matches": [{"model": {"type": "Prefix", "value": "m"}}], "targets": [{"modelRewrite": "x"}]}]}]"#)
            .starts_with("inferenceModelRewrites[0].rules[0].matches[0].model.type"));
    }
}
