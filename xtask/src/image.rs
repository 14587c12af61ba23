//! Building the hypervisor image.

use std::env;
use std::fs;
use std::path::PathBuf;

use crate::deps::{DOM0_TARGET, TARGET};
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

/// Cargo profile of the hypervisor image (the workspace's `Cargo.toml`:
/// release with whole-program LTO).
const HYPERVISOR_PROFILE: &str = "hypervisor";

/// Builds the `rxen` package for the bare-metal target and copies the binary to
/// `target/rxen/rxen`. Exits xtask on failure; returns the image path.
pub fn build() -> PathBuf {
    let mut cmd = cargo_command();
    cmd.args(["build", "-p", "rxen", "--profile", HYPERVISOR_PROFILE])
        .args(["--target", TARGET])
        .current_dir(workspace_root());
    eprintln!("xtask: {}", display_command(&cmd));
    run_checked(&mut cmd);

    let built = cargo_target_dir()
        .join(TARGET)
        .join(HYPERVISOR_PROFILE)
        .join("rxen");
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

/// The test guests' package and where their sources are (one binary per file).
const GUESTS_PACKAGE: &str = "rxen-test-guests";

/// Names of the test guests: the files in `guests/tests/src/bin/`.
pub fn guest_names() -> Vec<String> {
    let dir = workspace_root().join("guests/tests/src/bin");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| crate::fail(&format!("cannot list {}: {e}", dir.display())))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// Builds the PVH test guests (release, bare-metal target) and copies each to
/// `target/rxen/guests/<name>`. Exits xtask on failure; returns the directory.
pub fn build_guests() -> PathBuf {
    let mut cmd = cargo_command();
    cmd.args([
        "build",
        "-p",
        GUESTS_PACKAGE,
        "--release",
        "--target",
        TARGET,
    ])
    .current_dir(workspace_root());
    eprintln!("xtask: {}", display_command(&cmd));
    run_checked(&mut cmd);

    let built = cargo_target_dir().join(TARGET).join("release");
    let out_dir = rxen_dir().join("guests");
    fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| crate::fail(&format!("cannot create {}: {e}", out_dir.display())));
    for name in guest_names() {
        let from = built.join(&name);
        let to = out_dir.join(&name);
        fs::copy(&from, &to).unwrap_or_else(|e| {
            crate::fail(&format!(
                "cannot copy {} to {}: {e}",
                from.display(),
                to.display()
            ))
        });
    }
    out_dir
}

/// The dom0 tools: (package, binary), built as static binaries.
pub const DOM0_TOOLS: &[(&str, &str)] = &[
    ("rxl", "rxl"),
    ("rxenconsoled", "rxenconsoled"),
    ("rxenstored", "rxenstored"),
    ("rxenstored", "rxenstore"),
];

/// Builds the dom0 tools ([`DOM0_TOOLS`]) as static Linux binaries (release,
/// [`DOM0_TARGET`]) and copies each to `target/rxen/dom0/<name>`, ready to be put
/// into any dom0. Exits xtask on failure; returns the directory.
pub fn build_dom0_tools() -> PathBuf {
    let mut cmd = cargo_command();
    // Small binaries for an initramfs: no debug information.
    cmd.args(["build", "--release", "--target", DOM0_TARGET])
        .args(["--config", "profile.release.strip=\"debuginfo\""]);
    let mut packages: Vec<&str> = DOM0_TOOLS.iter().map(|(p, _)| *p).collect();
    packages.dedup();
    for package in packages {
        cmd.args(["-p", package]);
    }
    cmd.current_dir(workspace_root());
    eprintln!("xtask: {}", display_command(&cmd));
    run_checked(&mut cmd);
    let built = cargo_target_dir().join(DOM0_TARGET).join("release");
    let out_dir = rxen_dir().join("dom0");
    fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| crate::fail(&format!("cannot create {}: {e}", out_dir.display())));
    for (_, name) in DOM0_TOOLS {
        let (from, to) = (built.join(name), out_dir.join(name));
        fs::copy(&from, &to).unwrap_or_else(|e| {
            crate::fail(&format!(
                "cannot copy {} to {}: {e}",
                from.display(),
                to.display()
            ))
        });
    }
    out_dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_listed() {
        let names = guest_names();
        assert!(names.iter().any(|n| n == "xen_version"), "{names:?}");
        assert!(names.windows(2).all(|w| w[0] < w[1]));
    }
}
