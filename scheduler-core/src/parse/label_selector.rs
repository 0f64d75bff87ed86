//! Kubernetes label selectors in their string form (`app=vllm,tier!=cache,env in (a,b),!legacy`),
//! as `kubectl -l` and llm-d's `scope.labelSelector` take them: comma-separated requirements,
//! all of which must hold. Forms: `k=v`, `k==v`, `k!=v`, `k in (v1,v2)`, `k notin (v1,v2)`,
//! `k` (exists), `!k` (does not exist). An empty selector matches everything. `k!=v` and
//! `notin` also match endpoints without the label, as in Kubernetes.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v` / `k==v` / `k in (…)`: the label is one of the values.
    In(String, Vec<String>),
    /// `k!=v` / `k notin (…)`: the label is absent or none of the values.
    NotIn(String, Vec<String>),
    /// `k`: the label is present.
    Exists(String),
    /// `!k`: the label is absent.
    DoesNotExist(String),
}

/// A parsed selector (all requirements must hold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

impl LabelSelector {
    /// True when labels looked up by `label` satisfy every requirement.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => label(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key '{k}'"))
    }
}

fn values(list: &str) -> Result<Vec<String>, String> {
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised value list, got '{}'", list.trim()))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

/// Parses the string form of a label selector.
///
/// # Errors
/// A message naming the requirement that does not parse.
pub fn parse(selector: &str) -> Result<LabelSelector, String> {
    let mut reqs = Vec::new();
    if selector.trim().is_empty() {
        return Ok(LabelSelector(reqs));
    }
    for part in split_top(selector) {
        let p = part.trim();
        if p.is_empty() {
            return Err("empty requirement".into());
        }
        let r = if let Some((k, v)) = p.split_once("!=") {
            Requirement::NotIn(key(k)?, alloc::vec![v.trim().to_string()])
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            Requirement::In(key(k)?, alloc::vec![v.trim().to_string()])
        } else if let Some(i) = p.find(" notin ") {
            let (k, rest) = p.split_at(i);
            Requirement::NotIn(
                key(k)?,
                values(rest.trim_start().trim_start_matches("notin"))?,
            )
        } else if let Some(i) = p.find(" in ") {
            let (k, rest) = p.split_at(i);
            Requirement::In(key(k)?, values(rest.trim_start().trim_start_matches("in"))?)
        } else if let Some(k) = p.strip_prefix('!') {
            Requirement::DoesNotExist(key(k)?)
        } else {
            Requirement::Exists(key(p)?)
        };
        reqs.push(r);
    }
    Ok(LabelSelector(reqs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sel: &str, labels: &[(&str, &str)]) -> bool {
        let s = parse(sel).unwrap();
        s.matches(|k| labels.iter().find(|(x, _)| *x == k).map(|(_, v)| *v))
    }

    #[test]
    fn forms() {
        let l = [
            ("app", "vllm"),
            ("disaggregatedset.x-k8s.io/name", "my-set"),
        ];
        assert!(m("disaggregatedset.x-k8s.io/name=my-set", &l));
        assert!(m("app==vllm,disaggregatedset.x-k8s.io/name=my-set", &l));
        assert!(!m("app=sglang", &l));
        assert!(m("app!=sglang", &l) && m("tier!=x", &l));
        assert!(m("app in (sglang, vllm)", &l) && !m("app notin (vllm)", &l));
        assert!(m("app", &l) && !m("tier", &l) && m("!tier", &l) && !m("!app", &l));
        assert!(m("", &l));
    }

    #[test]
    fn errors() {
        for bad in ["app=v,", "a b=c", "app in vllm", "=x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
