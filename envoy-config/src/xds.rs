//! File-based xDS for the picker: the filter's configuration as an ECDS resource and the pool's
//! members as an EDS resource, in a directory Envoy watches (`watched_directory`). Rewriting
//! them changes the pool without a restart:
//!
//! 1. the EDS file adds the new endpoint to the serving cluster;
//! 2. the ECDS file reloads the picker filter in place (no listener drain); its new
//!    configuration publishes the member list in shared data, and the scraper (a bootstrap
//!    extension, which xDS cannot change) starts scraping the new endpoint
//!    ([`scheduler_core::membership`]).
//!
//! [`write`] writes each file to a temporary name and renames it into place (the "move" Envoy's
//! directory watch reacts to), EDS first, so a new endpoint is a cluster member before the
//! picker can choose it. A Kubernetes ConfigMap mounted as a directory is updated the same way
//! (an atomic symlink swap), so the same files work from a ConfigMap.

use std::path::Path;

use serde_json::Value;

use crate::blocks::{indent, Module, PICKER_ROOT_ID};
use crate::render::{lb_endpoints, prepare, Prepared};

/// File name of the ECDS resource (the picker filter's `TypedExtensionConfig`).
pub const ECDS_FILE: &str = "picker.ecds.yaml";
/// File name of the EDS resource (the pool cluster's `ClusterLoadAssignment`).
pub const EDS_FILE: &str = "pool.eds.yaml";

/// The ECDS file: a discovery response with one `TypedExtensionConfig` named
/// [`PICKER_ROOT_ID`] (the HCM filter that points at it must carry the same name).
///
/// # Errors
/// The module's configuration error text for an invalid `pool` section.
pub fn ecds_resource(module: &Module, picker: &Value) -> Result<String, String> {
    Ok(ecds_document(module, &prepare(picker)?.json))
}

/// [`ecds_resource`] for an already prepared (pretty-printed, validated) picker JSON.
pub fn ecds_document(module: &Module, picker_json: &str) -> String {
    format!(
        "# The endpoint-picker filter's configuration (ECDS). Rendered by `envoy-config`.\nresources:\n- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: {PICKER_ROOT_ID}\n  typed_config:\n{}",
        indent(&module.filter_typed_config(picker_json), 4)
    )
}

/// The EDS file: a discovery response with the `ClusterLoadAssignment` of `pool.cluster`,
/// one member per `pool.endpoints[]`.
///
/// # Errors
/// The module's configuration error text for an invalid `pool` section.
pub fn eds_resource(picker: &Value) -> Result<String, String> {
    eds_document(&prepare(picker)?)
}

fn eds_document(p: &Prepared) -> Result<String, String> {
    Ok(format!(
        "# The pool's members (EDS). Rendered by `envoy-config`.\nresources:\n- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: {}\n  endpoints:\n  - lb_endpoints:\n{}",
        p.config.pool.cluster,
        indent(&lb_endpoints(&p.config)?, 4)
    ))
}

fn replace(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    // The temporary file lives in the same directory (a rename across file systems is a copy)
    // under a name Envoy does not read.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| format!("{}/{name}: {e}", dir.display()))
}

/// Writes (or atomically replaces) both files in `dir`: EDS first, then ECDS. A picker JSON
/// without `pool.endpoints` leaves the pool to whoever writes the EDS file (the native build
/// follows the cluster's hosts): an existing EDS file is kept, a missing one is written empty so
/// Envoy can start.
///
/// # Errors
/// A configuration error, or the file system's error with the path.
pub fn write(dir: &Path, module: &Module, picker: &Value) -> Result<(), String> {
    let p = prepare(picker)?;
    let ecds = ecds_document(module, &p.json);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !p.config.pool.endpoints.is_empty() || !dir.join(EDS_FILE).exists() {
        replace(dir, EDS_FILE, &eds_document(&p)?)?;
    }
    replace(dir, ECDS_FILE, &ecds)
}

/// Writes (or atomically replaces) only the EDS file: `cluster`'s members are `hosts`. This is
/// what an xDS server does when a Deployment scales; with the native build and no
/// `pool.endpoints`, the picker follows it.
///
/// # Errors
/// The file system's error with the path.
pub fn write_eds(dir: &Path, cluster: &str, hosts: &[std::net::SocketAddr]) -> Result<(), String> {
    let mut members = String::new();
    for h in hosts {
        members.push_str(&format!(
            "- endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }} }}\n",
            h.ip(),
            h.port()
        ));
    }
    if members.is_empty() {
        members.push_str("[]  # no endpoints\n");
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    replace(
        dir,
        EDS_FILE,
        &format!(
            "# The pool's members (EDS).\nresources:\n- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: {cluster}\n  endpoints:\n  - lb_endpoints:\n{}",
            indent(&members, 4)
        ),
    )
}
