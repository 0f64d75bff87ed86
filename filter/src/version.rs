//! What build this is: reported in the startup log and `inference_extension_info`.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the module was built from (`git rev-parse --short=12 HEAD` at build time;
/// `unknown` outside a checkout).
pub const COMMIT: &str = match option_env!("ENDPOINT_PICKER_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
/// The tag or branch built (`git describe --tags --always`; `unknown` outside a checkout).
pub const BUILD_REF: &str = match option_env!("ENDPOINT_PICKER_BUILD_REF") {
    Some(c) => c,
    None => "unknown",
};
