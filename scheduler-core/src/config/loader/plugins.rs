//! Stage 3: every configured plugin, in order: type present, name unique, then
//! [`Loader::instantiate`]. A plugin that names one defined later in the list (llm-d's samples
//! put a profile handler before its deciders) is built once the rest exist. A
//! `prefix-cache-scorer`'s parameters configure the `approx-prefix-cache-producer` created for
//! it when the config lists none (GIE v1.5.0 `configloader.go` `instantiatePlugins`;
//! docs/SOURCES.md#gie-config-loading).

use alloc::string::String;
use alloc::vec::Vec;

use crate::config::PluginSpec;
use crate::error::{ConfigError, ConfigErrorKind as K, FieldPath};

use super::instantiate::Loader;

/// Builds every plugin of `specs` into `loader`.
///
/// # Errors
/// The first plugin that cannot be built.
pub(super) fn instantiate_all(
    loader: &mut Loader<'_>,
    specs: &[PluginSpec],
) -> Result<(), ConfigError> {
    let mut deferred: Vec<(usize, String, String)> = Vec::new();
    let forwarding = forwarding_scorer(specs);
    for (i, spec) in specs.iter().enumerate() {
        let path = FieldPath::key("plugins").with_index(i);
        let type_name = spec.type_name.as_deref().filter(|t| !t.is_empty());
        let name = spec.name.as_deref().filter(|n| !n.is_empty()).or(type_name);
        let Some(t) = type_name else {
            return Err(ConfigError::new(
                path.with_key("type"),
                K::MissingPluginType {
                    name: name.unwrap_or("").into(),
                },
            ));
        };
        let name = name.unwrap_or(t);
        if loader.by_name(name).is_some() {
            return Err(ConfigError::new(
                path.with_key("name"),
                K::DuplicatePluginName(name.into()),
            ));
        }
        // A plugin that names another defined later in the list (llm-d's samples put a
        // profile handler before its deciders) is built once the rest exist.
        // The scorer whose parameters configure the producer created for it keeps only its
        // own; the rest are the producer's, not parameters it ignores.
        let own;
        let params = match (&forwarding, spec.parameters.as_ref()) {
            (Some((at, _)), Some(v)) if *at == i => {
                own = own_scorer_params(v);
                Some(&own)
            }
            (_, v) => v,
        };
        match loader.instantiate(t, name, params, &path, false) {
            Ok(p) => loader.plugins.push((name.into(), p)),
            Err(e) if matches!(e.kind, K::UndefinedPluginRef(_)) => {
                deferred.push((i, String::from(t), String::from(name)));
            }
            Err(e) => return Err(e),
        }
    }
    while !deferred.is_empty() {
        let before = deferred.len();
        let mut last_err = None;
        for (i, t, name) in core::mem::take(&mut deferred) {
            let path = FieldPath::key("plugins").with_index(i);
            let params = specs.get(i).and_then(|s| s.parameters.as_ref());
            match loader.instantiate(&t, &name, params, &path, false) {
                Ok(p) => loader.plugins.push((name, p)),
                Err(e) if matches!(e.kind, K::UndefinedPluginRef(_)) => {
                    last_err = Some(e);
                    deferred.push((i, t, name));
                }
                Err(e) => return Err(e),
            }
        }
        if deferred.len() == before {
            if let Some(e) = last_err {
                return Err(e);
            }
        }
    }

    // GIE: a `prefix-cache-scorer`'s parameters configure the `approx-prefix-cache-producer`
    // created for it when the config lists none (GIE v1.5.0 `configloader.go`
    // `instantiatePlugins`; docs/SOURCES.md#gie-config-loading). Not when they name the
    // producer to read (llm-d's `prefixMatchInfoProducerName`): those are the scorer's own, and
    // an approximate producer built from them would run on every request for nothing (a
    // precise-prefix config would pay for both indexes).
    if !loader.plugins.iter().any(|(_, p)| {
        p.typed_name().type_name == crate::plugins::producer::approx_prefix_cache::TYPE
    }) {
        if let Some((i, params)) = forwarding {
            let path = FieldPath::key("plugins").with_index(i);
            let t = crate::plugins::producer::approx_prefix_cache::TYPE;
            // The scorer's own parameters stay with the scorer.
            let mut params = params.clone();
            if let Some(m) = params.as_object_mut() {
                for k in crate::plugins::scorer::prefix_cache::OWN_PARAMS {
                    m.remove(k);
                }
            }
            let p = loader.instantiate(t, t, Some(&params), &path, true)?;
            loader.plugins.push((t.into(), p));
        }
    }

    Ok(())
}

/// The `prefix-cache-scorer` whose parameters configure the `approx-prefix-cache-producer`
/// created for it (index and parameters): the first one with parameters that do not name a
/// producer, when the list has no approximate producer.
fn forwarding_scorer(specs: &[PluginSpec]) -> Option<(usize, &serde_json::Value)> {
    use crate::plugins::producer::approx_prefix_cache;
    let has_producer = specs.iter().any(|s| {
        s.type_name
            .as_deref()
            .is_some_and(|t| t.ends_with(approx_prefix_cache::TYPE))
    });
    if has_producer {
        return None;
    }
    specs.iter().enumerate().find_map(|(i, s)| {
        let params = s.parameters.as_ref()?;
        let names_producer = params.get("prefixMatchInfoProducerName").is_some();
        (s.type_name.as_deref() == Some(crate::plugins::scorer::prefix_cache::TYPE)
            && !names_producer)
            .then_some((i, params))
    })
}

/// The members of `params` that are `prefix-cache-scorer`'s own.
fn own_scorer_params(params: &serde_json::Value) -> serde_json::Value {
    let mut own = params.clone();
    if let Some(m) = own.as_object_mut() {
        m.retain(|k, _| crate::plugins::scorer::prefix_cache::OWN_PARAMS.contains(&k.as_str()));
    }
    own
}
