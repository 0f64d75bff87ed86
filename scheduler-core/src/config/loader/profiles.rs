//! Stages 4 and 5: scheduling profiles (names present and unique, references defined, weights
//! finite and ≥ 0; none → one `default` profile with every filter, scorer and picker in list
//! order), exactly one profile handler (a lone profile gets `single-profile-handler`), and a
//! picker for each profile (the first configured, else `max-score-picker`).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::config::defaults::DEFAULT_PROFILE;
use crate::config::ProfileSpec;
use crate::error::{ConfigError, ConfigErrorKind as K, FieldPath};
use crate::plugin::Plugin;
use crate::plugins::{picker, profile};
use crate::scheduler::SchedulerProfile;

use super::instantiate::Loader;

/// The profiles, their names in order, and the profile handler.
pub(super) type Profiles = (Vec<SchedulerProfile>, Vec<String>, Arc<dyn Plugin>);

/// Builds the profiles of `specs`.
///
/// # Errors
/// A missing or duplicate name, an undefined reference, a bad weight, no or several profile
/// handlers, several pickers in one profile.
pub(super) fn build(
    loader: &mut Loader<'_>,
    mut specs: Vec<ProfileSpec>,
) -> Result<Profiles, ConfigError> {
    if specs.is_empty() {
        specs.push(ProfileSpec {
            name: Some(DEFAULT_PROFILE.into()),
            plugins: loader
                .plugins
                .iter()
                .filter(|(_, p)| {
                    p.as_filter().is_some() || p.as_scorer().is_some() || p.as_picker().is_some()
                })
                .map(|(n, _)| crate::config::ProfilePluginSpec {
                    plugin_ref: Some(n.clone()),
                    weight: None,
                })
                .collect(),
        });
    }
    let mut names: Vec<String> = Vec::new();
    for (i, p) in specs.iter().enumerate() {
        let path = FieldPath::key("schedulingProfiles").with_index(i);
        let name = p.name.as_deref().filter(|n| !n.is_empty()).ok_or_else(|| {
            ConfigError::new(path.clone().with_key("name"), K::MissingProfileName(i))
        })?;
        if names.iter().any(|n| n == name) {
            return Err(ConfigError::new(
                path.with_key("name"),
                K::DuplicateProfileName(name.into()),
            ));
        }
        names.push(name.into());
        for (j, r) in p.plugins.iter().enumerate() {
            let rpath = path.clone().with_key("plugins").with_index(j);
            loader.resolve_ref(r.plugin_ref.as_deref(), rpath.clone(), "plugin", |_| true)?;
            if let Some(w) = r.weight {
                if !(w.is_finite() && w >= 0.0) {
                    return Err(ConfigError::invalid(
                        rpath.with_key("weight"),
                        "weight must be a finite number ≥ 0",
                    ));
                }
            }
        }
    }

    // 5. Profile handler and pickers.
    let handlers: Vec<usize> = loader
        .plugins
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| p.as_profile_handler().is_some())
        .map(|(i, _)| i)
        .collect();
    let profiles_path = FieldPath::key("schedulingProfiles");
    let handler = match handlers.as_slice() {
        [] if specs.len() == 1 => loader.implicit(profile::single::TYPE, &profiles_path)?,
        [] => return Err(ConfigError::new(profiles_path, K::NoProfileHandler)),
        [only] => loader
            .plugins
            .get(*only)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| ConfigError::new(profiles_path.clone(), K::NoProfileHandler))?,
        [_, second, ..] => {
            return Err(ConfigError::new(
                FieldPath::key("plugins").with_index(*second),
                K::MultipleProfileHandlers,
            ))
        }
    };
    if let Some(h) = handler.as_profile_handler() {
        for w in h.check_profiles(&names) {
            loader.warn(alloc::format!(
                "{profiles_path}: {}: {w}",
                handler.typed_name()
            ));
        }
    }
    if handler.typed_name().type_name == profile::single::TYPE && specs.len() > 1 {
        return Err(ConfigError::new(
            profiles_path,
            K::SingleProfileHandlerMultipleProfiles,
        ));
    }

    let mut profiles = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = FieldPath::key("schedulingProfiles").with_index(i);
        let name = names.get(i).cloned().unwrap_or_default();
        let (mut filters, mut scorers, mut picker_slot) =
            (Vec::new(), Vec::new(), None::<Arc<dyn Plugin>>);
        for (j, r) in spec.plugins.iter().enumerate() {
            let rpath = path.clone().with_key("plugins").with_index(j);
            let p =
                loader.resolve_ref(r.plugin_ref.as_deref(), rpath.clone(), "plugin", |_| true)?;
            if p.as_filter().is_some() {
                filters.push(p.clone());
            }
            if p.as_scorer().is_some() {
                scorers.push((p.clone(), r.weight.unwrap_or(1.0)));
            }
            if p.as_picker().is_some() {
                if picker_slot.is_some() {
                    return Err(ConfigError::new(
                        rpath.with_key("pluginRef"),
                        K::MultiplePickers {
                            profile: name.clone(),
                        },
                    ));
                }
                picker_slot = Some(p);
            }
        }
        let picker = match picker_slot {
            Some(p) => p,
            None => match loader.plugins.iter().find(|(_, p)| p.as_picker().is_some()) {
                Some((_, p)) => p.clone(),
                None => loader.implicit(picker::max_score::TYPE, &path)?,
            },
        };
        profiles.push(SchedulerProfile {
            name,
            filters,
            scorers,
            picker,
        });
    }

    Ok((profiles, names, handler))
}
