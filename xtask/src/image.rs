//! Building the hypervisor image.

use std::env;
use std::fs;
use std::path::PathBuf;

use crate::deps::TARGET;
use crate::{
    cargo_command, display_command, repo_target_dir, run_checked, rxen_dir, workspace_root,
};

/// The Cargo target directory the child `cargo build` writes to.
///
/// Honours `CARGO_TARGET_DIR` (relative paths are relative to the current directory, as
/// cargo does), else the workspace's `target/`.
fn cargo_target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                env::current_dir().expect("current directory").join(dir)
            }
        }
        _ => repo_target_dir(),
    }
}

/// Builds the `rxen` package for the bare-metal target and copies the binary to
/// `target/rxen/rxen`. Exits xtask on failure; returns the image path.
pub fn build() -> PathBuf {
    let mut cmd = cargo_command();
    cmd.args(["build", "-p", "rxen", "--release", "--target", TARGET])
        .current_dir(workspace_root());
    eprintln!("xtask: {}", display_command(&cmd));
    run_checked(&mut cmd);

    let built = cargo_target_dir().join(TARGET).join("release").join("rxen");
    let out_dir = rxen_dir();
    fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| crate::fail(&format!("cannot create {}: {e}", out_dir.display())));
    let image = out_dir.join("rxen");
    fs::copy(&built, &image).unwrap_or_else(|e| {
        crate::fail(&format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            image.display()
        ))
    });
    image
}
