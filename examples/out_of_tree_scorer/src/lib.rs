//! An endpoint-picker module with one out-of-tree scorer, `label-preference-scorer`: 1.0 for
//! endpoints whose label `key` equals `value`, else 0. Everything else is the stock module. It
//! builds both ways: for wasm32 the proxy-wasm module (`out_of_tree_scorer.wasm`), on the host
//! the native dynamic module (`libout_of_tree_scorer.so`); the glue is a few lines each below.

use std::sync::Arc;

use scheduler_core::plugin::registry::{parse_params, Handle, RegistryEntry};
use scheduler_core::plugin::{CycleContext, Plugin, Scorer, TypedName};
use scheduler_core::ConfigError;

/// Plugin type name.
pub const TYPE: &str = "label-preference-scorer";

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    key: String,
    value: String,
}

/// Scores 1.0 where the endpoint's label `key` is `value`.
pub struct LabelPreferenceScorer {
    typed_name: TypedName,
    key: String,
    value: String,
}

impl Plugin for LabelPreferenceScorer {
    fn typed_name(&self) -> &TypedName {
        &self.typed_name
    }
    fn as_scorer(&self) -> Option<&dyn Scorer> {
        Some(self)
    }
}

impl Scorer for LabelPreferenceScorer {
    fn score(&self, cx: &CycleContext<'_>, candidates: &[usize], scores: &mut [f64]) {
        for (s, &i) in scores.iter_mut().zip(candidates) {
            let hit = cx.endpoint(i).and_then(|e| e.label(&self.key)) == Some(self.value.as_str());
            *s = if hit { 1.0 } else { 0.0 };
        }
    }
}

fn factory(
    name: &str,
    params: Option<&serde_json::Value>,
    _: &Handle<'_>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let p: Params = parse_params(params)?;
    Ok(Arc::new(LabelPreferenceScorer {
        typed_name: TypedName::new(TYPE, name),
        key: p.key,
        value: p.value,
    }))
}

/// The registry entry: Alpha, behind the `labelPreferenceScorer` gate.
pub const ENTRY: RegistryEntry = RegistryEntry::alpha(TYPE, "labelPreferenceScorer", factory);

#[cfg(target_arch = "wasm32")]
mod entry {
    #![allow(missing_docs)]
    proxy_wasm::main! {{
        endpoint_picker_filter::runner::run(crate::registry());
    }}
}

fn registry() -> scheduler_core::Registry {
    let mut registry = scheduler_core::Registry::with_builtins();
    if let Err(e) = registry.register(crate::ENTRY) {
        log::error!("{e}");
    }
    registry
}

#[cfg(not(target_arch = "wasm32"))]
endpoint_picker_native::module!(crate::registry);
