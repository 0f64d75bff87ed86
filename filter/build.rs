//! Records the git commit and ref the module is built from (see `src/version.rs`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    if let Some(c) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=ENDPOINT_PICKER_COMMIT={c}");
    }
    if let Some(r) = git(&["describe", "--tags", "--always", "--dirty"]) {
        println!("cargo:rustc-env=ENDPOINT_PICKER_BUILD_REF={r}");
    }
    // Re-run when HEAD moves (a commit, a checkout) or the index changes (dirty state).
    for p in ["../.git/HEAD", "../.git/index", "../.git/refs"] {
        println!("cargo:rerun-if-changed={p}");
    }
}
