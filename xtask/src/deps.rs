//! Host dependencies: the Rust target and the Debian packages the tasks need.
//!
//! Every external tool is one row of [`REQUIREMENTS`]; to need another tool, add a row.

use std::env;
use std::path::Path;
use std::process::{self, Command};

use crate::{run_checked, workspace_root};

/// The Rust target the hypervisor image is built for.
pub const TARGET: &str = "x86_64-unknown-none";
/// The target of the dom0 tools: static Linux binaries that run in any dom0.
pub const DOM0_TARGET: &str = "x86_64-unknown-linux-musl";

/// Which task needs a requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// `cargo xtask run`: booting the image in QEMU.
    Run,
    /// `cargo xtask test`: the integration tests (QEMU, GRUB ISO images, ...).
    Test,
}

/// How to tell that a requirement is present.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    /// An executable with this name is on `PATH`.
    Command(&'static str),
    /// This file or directory exists.
    Path(&'static str),
}

impl Check {
    /// Whether the requirement is present on this machine.
    pub fn is_met(self) -> bool {
        match self {
            Check::Command(name) => find_in_path(name),
            Check::Path(path) => Path::new(path).exists(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Check::Command(name) | Check::Path(name) => name,
        }
    }
}

/// One host requirement: what to check, which Debian package provides it, who needs it.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    /// The check that tells whether it is installed.
    pub check: Check,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// The tasks that need it.
    pub needed_by: &'static [Task],
}

const RUN_AND_TEST: &[Task] = &[Task::Run, Task::Test];
const TEST_ONLY: &[Task] = &[Task::Test];

/// Everything the tasks need from the host, and the Debian package that provides each.
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        check: Check::Command("qemu-system-x86_64"),
        package: "qemu-system-x86",
        needed_by: RUN_AND_TEST,
    },
    Requirement {
        // rxenstored's compatibility tests drive Xen's own clients.
        check: Check::Command("xenstore-read"),
        package: "xenstore-utils",
        needed_by: TEST_ONLY,
    },
    Requirement {
        check: Check::Command("grub-mkrescue"),
        package: "grub-common",
        needed_by: TEST_ONLY,
    },
    Requirement {
        check: Check::Path("/usr/lib/grub/i386-pc"),
        package: "grub-pc-bin",
        needed_by: TEST_ONLY,
    },
    Requirement {
        check: Check::Command("xorriso"),
        package: "xorriso",
        needed_by: TEST_ONLY,
    },
    Requirement {
        check: Check::Command("mformat"),
        package: "mtools",
        needed_by: TEST_ONLY,
    },
    Requirement {
        // The split-driver tests give a domU an ext4 image (`mkfs.ext4 -d`).
        check: Check::Path("/sbin/mkfs.ext4"),
        package: "e2fsprogs",
        needed_by: TEST_ONLY,
    },
];

/// Whether an executable called `name` is on `PATH`.
pub fn find_in_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Makes sure `rustup` has the hypervisor's target and the dom0 tools' installed.
pub fn ensure_rust_target() {
    for target in [TARGET, DOM0_TARGET] {
        ensure_one_target(target);
    }
}

fn ensure_one_target(target: &str) {
    let root = workspace_root();
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&root)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let installed = String::from_utf8_lossy(&out.stdout);
            if installed.lines().any(|l| l.trim() == target) {
                return;
            }
            eprintln!("xtask: installing the Rust target {target}");
            let mut cmd = Command::new("rustup");
            cmd.args(["target", "add", target]).current_dir(&root);
            run_checked(&mut cmd);
        }
        Ok(out) => eprintln!(
            "xtask: warning: `rustup target list --installed` failed ({}); assuming {target} is available",
            out.status
        ),
        Err(e) => eprintln!(
            "xtask: warning: cannot run rustup ({e}); assuming {target} is available"
        ),
    }
}

/// The Debian packages missing for `task`, each listed once, in table order.
pub fn missing_packages(task: Task) -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = Vec::new();
    for req in REQUIREMENTS.iter().filter(|r| r.needed_by.contains(&task)) {
        if !req.check.is_met() && !missing.contains(&req.package) {
            eprintln!(
                "xtask: missing {} (package {})",
                req.check.describe(),
                req.package
            );
            missing.push(req.package);
        }
    }
    missing
}

/// Installs the Debian packages `task` needs, or tells the user how to and exits.
pub fn ensure_packages(task: Task) {
    let missing = missing_packages(task);
    if missing.is_empty() {
        return;
    }
    if !is_root() {
        eprintln!("xtask: some host tools are missing; install them with:");
        eprintln!(
            "    sudo apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        process::exit(1);
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    if !apt_install(&missing) {
        eprintln!("xtask: apt-get install failed; running apt-get update and retrying");
        let mut update = Command::new("apt-get");
        update
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_checked(&mut update);
        if !apt_install(&missing) {
            eprintln!("xtask: apt-get install {} failed", missing.join(" "));
            process::exit(1);
        }
    }
    let still = missing_packages(task);
    if !still.is_empty() {
        eprintln!(
            "xtask: still missing after installation: {}",
            still.join(" ")
        );
        process::exit(1);
    }
}

fn apt_install(packages: &[&str]) -> bool {
    Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_has_qemu() {
        for task in [Task::Run, Task::Test] {
            assert!(REQUIREMENTS
                .iter()
                .any(|r| r.package == "qemu-system-x86" && r.needed_by.contains(&task)));
        }
    }

    #[test]
    fn path_lookup() {
        assert!(find_in_path("sh"));
        assert!(!find_in_path("no-such-command-rxen-xtask"));
    }
}
