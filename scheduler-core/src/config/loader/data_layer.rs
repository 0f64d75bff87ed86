//! Stage 6 (continued): the data layer. Without `dataLayer`, or with one that lists no
//! sources, the first metrics source and extractor configured are used, else the defaults (llm-d
//! injects its default source); `injectDefaults: false` with no sources turns metrics off. The
//! scraper reads one metrics page per endpoint, so a second metrics source is ignored with a
//! warning; llm-d's `discovery`, `peerDiscovery` and cross-replica sync are accepted and
//! ignored with a warning.

use alloc::format;

use crate::config::EndpointPickerConfig;
use crate::error::{ConfigError, FieldPath};
use alloc::sync::Arc;

use crate::parse::engine::MetricsExtractor;
use crate::plugin::{MetricsDataSource, Plugin, SharedExtractor};
use crate::plugins::datalayer::metrics_source::MetricsSourceParams;
use alloc::vec::Vec;

use super::instantiate::Loader;

/// The metrics source (none: metrics collection off), the extractor, and the page sources
/// wired in `dataLayer.sources` (second pages per endpoint, e.g. DCGM).
pub(super) type DataLayer = (
    Option<MetricsSourceParams>,
    SharedExtractor,
    Vec<Arc<dyn Plugin>>,
);

/// The page settings of a metrics source.
fn params_of(s: &dyn MetricsDataSource) -> MetricsSourceParams {
    MetricsSourceParams {
        scheme: s.scheme().into(),
        path: s.path().into(),
        insecure_skip_verify: s.insecure_skip_verify(),
        port: s.port(),
        interval: s.interval().map(Into::into),
        ..MetricsSourceParams::default()
    }
}

/// The built-in extractor (vLLM, SGLang, TensorRT-LLM names).
fn default_extractor() -> SharedExtractor {
    Arc::new(MetricsExtractor::default())
}

/// Resolves the data layer.
///
/// # Errors
/// A reference to an undefined plugin or to one of the wrong kind.
pub(super) fn data_layer(
    loader: &mut Loader<'_>,
    cfg: &EndpointPickerConfig,
) -> Result<DataLayer, ConfigError> {
    if let Some(dl) = &cfg.data_layer {
        let path = FieldPath::key("dataLayer");
        if let Some(d) = &dl.discovery {
            let at = path.clone().with_key("discovery");
            let p = loader.resolve_ref(
                d.plugin_ref.as_deref(),
                at.clone(),
                "an endpoint discovery plugin",
                |p| p.endpoint_discovery_file().is_some(),
            )?;
            let file = p.endpoint_discovery_file().unwrap_or_default();
            loader.warn(format!(
                "{at}: the proxy takes its pool from the `pool` section or the Envoy cluster; `envoy-config render` reads '{file}' into pool.endpoints when the config has no `pool`"
            ));
        }
        for (set, field, why) in [
            (
                dl.peer_discovery.is_some(),
                "peerDiscovery",
                "every proxy runs its own picker",
            ),
            (
                dl.cross_replica_syncer_plugin_ref.is_some(),
                "crossReplicaSyncerPluginRef",
                "every proxy runs its own picker",
            ),
            (
                dl.cross_replica_sync_interval.is_some(),
                "crossReplicaSyncInterval",
                "every proxy runs its own picker",
            ),
        ] {
            if set {
                let at = path.clone().with_key(field);
                loader.warn(format!("{at}: ignored: {why}"));
            }
        }
    }
    let first_source = || {
        loader
            .plugins
            .iter()
            .find_map(|(_, p)| p.as_metrics_source().map(params_of))
    };
    let first_extractor = || {
        loader
            .plugins
            .iter()
            .find_map(|(_, p)| p.as_metrics_extractor())
    };
    let Some(dl) = &cfg.data_layer else {
        return Ok((
            Some(first_source().unwrap_or_default()),
            first_extractor().unwrap_or_else(default_extractor),
            Vec::new(),
        ));
    };
    if dl.sources.is_empty() {
        // llm-d injects the default metrics source unless `injectDefaults: false` (a
        // `dataLayer` holding only `discovery`, as its file-discovery configs do, still scrapes).
        if dl.inject_defaults == Some(false) {
            log::warn!("dataLayer has no sources and injectDefaults is false: endpoint metrics will not be collected");
            return Ok((
                None,
                first_extractor().unwrap_or_else(default_extractor),
                Vec::new(),
            ));
        }
        return Ok((
            Some(first_source().unwrap_or_default()),
            first_extractor().unwrap_or_else(default_extractor),
            Vec::new(),
        ));
    }
    let mut source = None;
    let mut extractor = None;
    let mut pages: Vec<Arc<dyn Plugin>> = Vec::new();
    for (i, s) in dl.sources.iter().enumerate() {
        let path = FieldPath::key("dataLayer")
            .with_key("sources")
            .with_index(i);
        let p = loader.resolve_ref(s.plugin_ref.as_deref(), path.clone(), "a DataSource", |p| {
            p.as_metrics_source().is_some()
                || p.is_endpoint_notification_source()
                || p.as_page_source().is_some()
        })?;
        if let Some(page) = p.as_page_source() {
            if s.extractors.is_empty() {
                loader.warn(format!(
                    "{path}: '{}' has no extractor wired: its page is not fetched",
                    p.typed_name().name
                ));
                continue;
            }
            for (j, e) in s.extractors.iter().enumerate() {
                let epath = path.clone().with_key("extractors").with_index(j);
                loader.resolve_ref(
                    e.plugin_ref.as_deref(),
                    epath,
                    "an extractor of this source",
                    |x| page.accepts_extractor(x.typed_name().type_name),
                )?;
            }
            if page.enabled() && !pages.iter().any(|q| Arc::ptr_eq(q, &p)) {
                pages.push(p.clone());
            }
            continue;
        }
        if p.is_endpoint_notification_source() {
            // Its extractors hear of membership changes through `pool_changed`; only check
            // that each one exists.
            for (j, e) in s.extractors.iter().enumerate() {
                let epath = path.clone().with_key("extractors").with_index(j);
                loader.resolve_ref(
                    e.plugin_ref.as_deref(),
                    epath,
                    "an endpoint extractor",
                    |_| true,
                )?;
            }
            continue;
        }
        if source.is_some() {
            loader.warn(format!(
                "{path}: a second metrics source is ignored: the scraper reads one metrics page per endpoint"
            ));
            continue;
        }
        source = p.as_metrics_source().map(params_of);
        for (j, e) in s.extractors.iter().enumerate() {
            let epath = path.clone().with_key("extractors").with_index(j);
            let p = loader.resolve_ref(e.plugin_ref.as_deref(), epath, "an Extractor", |p| {
                p.as_metrics_extractor().is_some()
            })?;
            if extractor.is_none() {
                extractor = p.as_metrics_extractor();
            }
        }
    }
    if source.is_none() {
        // Only notification sources listed: the metrics page is still read as if no dataLayer
        // had been given (llm-d's precise-prefix perf config lists only the notification
        // source yet scores KV-cache utilisation).
        let fallback = loader
            .plugins
            .iter()
            .find_map(|(_, p)| p.as_metrics_source().map(params_of));
        let first = loader
            .plugins
            .iter()
            .find_map(|(_, p)| p.as_metrics_extractor());
        return Ok((
            Some(fallback.unwrap_or_default()),
            extractor.or(first).unwrap_or_else(default_extractor),
            pages,
        ));
    }
    Ok((source, extractor.unwrap_or_else(default_extractor), pages))
}
