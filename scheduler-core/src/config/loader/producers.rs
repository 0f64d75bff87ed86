//! Stage 7: data producers. Every key a plugin consumes that no plugin produces gets the
//! registry's default producer (which must produce it); then producers are ordered so each runs
//! after the producers of every key it consumes (a cycle is an error).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::error::{ConfigError, ConfigErrorKind as K, FieldPath};
use crate::plugin::{DataKey, Plugin};

use super::instantiate::Loader;

/// Adds the default producers and returns every producer in dependency order.
///
/// # Errors
/// A consumed key with no producer and no registered default, a default producer that does not
/// produce its key, a dependency cycle.
pub(super) fn complete_and_order(
    loader: &mut Loader<'_>,
) -> Result<Vec<Arc<dyn Plugin>>, ConfigError> {
    let registry = loader.registry;
    for _ in 0..=registry.entries().len() {
        let missing: Vec<DataKey> = missing_keys(&loader.plugins);
        if missing.is_empty() {
            break;
        }
        for key in missing {
            let entry = registry.default_producer(key).ok_or_else(|| {
                ConfigError::invalid(
                    FieldPath::key("plugins"),
                    format!(
                        "no plugin produces data '{key}' and no default producer is registered"
                    ),
                )
            })?;
            let p = loader.implicit(entry.type_name, &FieldPath::key("plugins"))?;
            if !p.produces().contains(&key) {
                return Err(ConfigError::invalid(
                    FieldPath::key("plugins"),
                    format!(
                        "default producer '{}' does not produce its registered data '{key}'",
                        entry.type_name
                    ),
                ));
            }
        }
    }
    order_producers(&loader.plugins)
}

fn missing_keys(plugins: &[(String, Arc<dyn Plugin>)]) -> Vec<DataKey> {
    let mut missing: Vec<DataKey> = Vec::new();
    for (_, p) in plugins {
        for &k in p.consumes() {
            let produced = plugins.iter().any(|(_, q)| q.produces().contains(&k));
            if !produced && !missing.contains(&k) {
                missing.push(k);
            }
        }
    }
    missing
}

/// Orders data producers so that each runs after the producers of every key it consumes.
fn order_producers(
    plugins: &[(String, Arc<dyn Plugin>)],
) -> Result<Vec<Arc<dyn Plugin>>, ConfigError> {
    let mut pending: Vec<Arc<dyn Plugin>> = plugins
        .iter()
        .filter(|(_, p)| p.as_data_producer().is_some())
        .map(|(_, p)| p.clone())
        .collect();
    let mut ordered: Vec<Arc<dyn Plugin>> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|p| {
            p.consumes().iter().all(|k| {
                // Every other pending producer of k must already be placed.
                !pending
                    .iter()
                    .any(|q| !Arc::ptr_eq(q, p) && q.produces().contains(k))
            })
        });
        match ready {
            Some(i) => ordered.push(pending.remove(i)),
            None => {
                let names: Vec<String> = pending
                    .iter()
                    .map(|p| p.typed_name().name.clone())
                    .collect();
                return Err(ConfigError::new(
                    FieldPath::key("plugins"),
                    K::DataDependencyCycle(names.join(" -> ")),
                ));
            }
        }
    }
    Ok(ordered)
}
