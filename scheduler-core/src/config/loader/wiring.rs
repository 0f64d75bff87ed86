//! Stage 6: the saturation detector (`saturationDetector`, else `flowControl.saturationDetector`,
//! else the first `utilization-detector`, else a default one) and the request parsers (llm-d's
//! `requestHandler.parsers`, which wins over the deprecated top-level `parser`; else the first
//! parser configured; else `openai-parser`).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::config::{EndpointPickerConfig, PluginRefSpec};
use crate::error::{ConfigError, FieldPath};
use crate::plugin::Plugin;
use crate::plugins::{filter, parser};

use super::instantiate::Loader;

/// The saturation detector.
///
/// # Errors
/// A reference to an undefined plugin or to one that is not a saturation detector.
pub(super) fn saturation_detector(
    loader: &mut Loader<'_>,
    cfg: &EndpointPickerConfig,
    fc_detector: Option<&PluginRefSpec>,
) -> Result<Arc<dyn Plugin>, ConfigError> {
    let detector_ref = match (&cfg.saturation_detector, fc_detector) {
        (Some(r), _) => Some((r, FieldPath::key("saturationDetector"))),
        (None, Some(r)) => Some((
            r,
            FieldPath::key("flowControl").with_key("saturationDetector"),
        )),
        (None, None) => None,
    };
    let detector = match detector_ref {
        Some((r, at)) => {
            loader.resolve_ref(r.plugin_ref.as_deref(), at, "a saturation detector", |p| {
                p.as_saturation_detector().is_some()
            })?
        }
        None => match loader
            .plugins
            .iter()
            .find(|(_, p)| p.typed_name().type_name == filter::utilization_detector::TYPE)
        {
            Some((_, p)) => p.clone(),
            None => loader.implicit(
                filter::utilization_detector::TYPE,
                &FieldPath::key("saturationDetector"),
            )?,
        },
    };
    Ok(detector)
}

/// The parsers, in order (never empty).
///
/// # Errors
/// A reference to an undefined plugin or to one that is not a parser.
pub(super) fn parsers(
    loader: &mut Loader<'_>,
    cfg: &EndpointPickerConfig,
) -> Result<Vec<Arc<dyn Plugin>>, ConfigError> {
    let parser_refs: Vec<(Option<&str>, FieldPath)> = match (&cfg.request_handler, &cfg.parser) {
        (Some(h), _) if !h.parsers.is_empty() => h
            .parsers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.plugin_ref.as_deref(),
                    FieldPath::key("requestHandler")
                        .with_key("parsers")
                        .with_index(i),
                )
            })
            .collect(),
        (_, Some(r)) => alloc::vec![(r.plugin_ref.as_deref(), FieldPath::key("parser"))],
        _ => Vec::new(),
    };
    let mut parsers: Vec<Arc<dyn Plugin>> = Vec::new();
    for (r, at) in parser_refs {
        parsers.push(loader.resolve_ref(r, at, "a parser", |p| p.as_parser().is_some())?);
    }
    if parsers.is_empty() {
        parsers.push(
            match loader.plugins.iter().find(|(_, p)| p.as_parser().is_some()) {
                Some((_, p)) => p.clone(),
                None => loader.implicit(parser::openai::TYPE, &FieldPath::key("parser"))?,
            },
        );
    }
    Ok(parsers)
}
