//! The modules' OCI images (`make oci`, `scripts/oci-image.sh`) have the layout Envoy Gateway's
//! and Istio's image fetchers and a Kubernetes image volume expect (the Wasm OCI "compat"
//! variant): an OCI image layout whose tag names one image manifest with exactly one
//! `application/vnd.oci.image.layer.v1.tar+gzip` layer holding exactly one regular file —
//! `plugin.wasm`, or `libendpoint_picker.so` for the native module — byte-identical to the built
//! module; every blob matches its descriptor's digest
//! and size; the config's diff_id is the uncompressed layer's digest. Building it again gives the
//! same digest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

fn layout(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::repo_root().join(default))
}

fn tag() -> String {
    std::env::var("OCI_TAG").unwrap_or_else(|_| "v0.1.0".into())
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The blob a descriptor names, after checking its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256(&bytes), digest, "blob content matches its digest");
    assert_eq!(
        bytes.len() as u64,
        descriptor["size"].as_u64().unwrap(),
        "size"
    );
    bytes
}

/// The manifest digest the tag points at.
fn manifest_digest(layout: &Path, tag: &str) -> (Value, String) {
    let layout_file: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout_file["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tagged: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .collect();
    assert_eq!(tagged.len(), 1, "one manifest for tag {tag}");
    let d = tagged[0].clone();
    assert_eq!(d["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let digest = d["digest"].as_str().unwrap().to_string();
    (d, digest)
}

#[test]
fn image_is_one_layer_with_plugin_wasm_and_reproducible() {
    check_image(
        &layout("OCI_LAYOUT", "dist/oci"),
        "plugin.wasm",
        &e2e::wasm_path(),
        b"\0asm",
    );
}

#[test]
fn native_image_is_one_layer_with_the_shared_library_and_reproducible() {
    check_image(
        &layout("OCI_NATIVE_LAYOUT", "dist/oci-native"),
        "libendpoint_picker.so",
        &e2e::native_dir().join("libendpoint_picker.so"),
        b"\x7fELF",
    );
}

/// Checks the image at `layout`: one layer with the single file `file` equal to `module`
/// (which starts with `magic`), and the same digest when packed again.
fn check_image(layout: &Path, file: &str, module_path: &Path, magic: &[u8]) {
    let layout = layout.to_path_buf();
    let tag = tag();
    let (descriptor, digest) = manifest_digest(&layout, &tag);
    let manifest: Value = serde_json::from_slice(&blob(&layout, &descriptor)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "exactly one layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let compressed = blob(&layout, &layers[0]);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        sha256(&tar_bytes),
        "diff_id is the uncompressed layer's digest"
    );

    let mut files = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        assert!(
            entry.header().entry_type().is_file(),
            "{path} is a regular file"
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.push((path, content));
    }
    assert_eq!(
        files.len(),
        1,
        "exactly one file: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(files[0].0.trim_start_matches("./"), file);
    let module = std::fs::read(module_path).unwrap();
    assert!(files[0].1 == module, "{file} is the built module");
    assert_eq!(&module[..magic.len()], magic);

    // Reproducible: the same module packed again gives the same manifest digest.
    let again = std::env::temp_dir().join(format!("oci-again-{}-{file}", std::process::id()));
    let out = Command::new(e2e::repo_root().join("scripts/oci-image.sh"))
        .arg(module_path)
        .arg(&again)
        .arg(&tag)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, digest_again) = manifest_digest(&again, &tag);
    let _ = std::fs::remove_dir_all(&again);
    assert_eq!(digest, digest_again, "same module, same image digest");
    println!("OCI image of {file} {tag}: {digest} (rebuilt: identical)");
}
