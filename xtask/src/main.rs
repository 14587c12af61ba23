//! `cargo xtask`: rxen's build, run and test driver.
//!
//! - `cargo xtask build` builds the hypervisor image into `target/rxen/rxen` and the PVH
//!   test guests into `target/rxen/guests/<name>`.
//! - `cargo xtask run [--smp N] [--append ARGS] [--timeout SECS]` boots it in QEMU with two
//!   demo modules and streams the serial console.
//! - `cargo xtask bench` measures rxen against the real Xen 4.17 in one run.
//! - `cargo xtask test [-- CARGO-TEST-ARGS]` installs what the tests need, builds the image
//!   and runs `cargo test --workspace`.

mod bench;
mod deps;
mod image;
mod run;

use std::env;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{self, Command};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build                    build the hypervisor image into target/rxen/rxen and the
                           test guests into target/rxen/guests/
  run [options]            build, then boot the image in QEMU with two demo modules
      --smp N              number of CPUs (default 2)
      --append ARGS        extra hypervisor command-line arguments
      --timeout SECS       kill QEMU after SECS seconds (default 300)
      --shell              dom0 ends in a shell on the serial console
  test [-- ARGS]           install host tools, build, run
                           `cargo test --workspace --no-fail-fast ARGS`
  bench [SECTION...]       build, then measure rxen against Xen 4.17 and QEMU
                           without a hypervisor; SECTION is one of hypercall,
                           many-domains, parallel, domains, fuzz, linux, dom0,
                           xenstore, toolstack, devices (default: all)
  help                     print this message";

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        process::exit(2);
    };
    match command.as_str() {
        "build" => {
            no_extra_args(rest);
            deps::ensure_rust_target();
            let path = image::build();
            let guests = image::build_guests();
            let tools = image::build_dom0_tools();
            println!("{}", path.display());
            println!("{}", guests.display());
            println!("{}", tools.display());
        }
        "run" => {
            let options = run::Options::parse(rest).unwrap_or_else(|e| usage_error(&e));
            process::exit(run::run(&options));
        }
        "test" => {
            let extra = match rest.split_first() {
                None => &[][..],
                Some((dashdash, extra)) if dashdash == "--" => extra,
                Some(_) => usage_error("`test` takes its cargo test arguments after `--`"),
            };
            process::exit(test(extra));
        }
        "bench" => {
            if let Some(bad) = rest.iter().find(|r| !bench::SECTIONS.contains(&r.as_str())) {
                usage_error(&format!("unknown benchmark section `{bad}`"));
            }
            deps::ensure_rust_target();
            deps::ensure_packages(deps::Task::Test);
            build_everything();
            process::exit(bench::bench(rest));
        }
        "help" | "-h" | "--help" => println!("{USAGE}"),
        other => usage_error(&format!("unknown command `{other}`")),
    }
}

fn no_extra_args(rest: &[String]) {
    if let Some(arg) = rest.first() {
        usage_error(&format!("unexpected argument `{arg}`"));
    }
}

fn usage_error(message: &str) -> ! {
    eprintln!("xtask: {message}\n\n{USAGE}");
    process::exit(2);
}

/// `cargo xtask test`: ensure the tools, build the image, run every test in the workspace.
fn test(extra: &[String]) -> i32 {
    deps::ensure_rust_target();
    deps::ensure_packages(deps::Task::Test);
    build_everything();
    let mut cmd = cargo_command();
    // --no-fail-fast: report every failing test binary, not only the first.
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .current_dir(workspace_root());
    eprintln!("xtask: running {}", display_command(&cmd));
    match cmd.status() {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            1
        }
    }
}

/// Builds what the tests and benchmarks boot: the image, the test guests and
/// dom0's tools.
fn build_everything() {
    let path = image::build();
    eprintln!("xtask: image at {}", path.display());
    let guests = image::build_guests();
    eprintln!("xtask: test guests in {}", guests.display());
    let tools = image::build_dom0_tools();
    eprintln!("xtask: dom0 tools in {}", tools.display());
}

/// The root of the Cargo workspace (the parent of the `xtask` package).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The workspace's own `target` directory, where `target/rxen/` lives.
///
/// This is always `<root>/target`, even when `CARGO_TARGET_DIR` points elsewhere, so that
/// the integration tests find the image at a fixed place.
pub fn repo_target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// `target/rxen`: the image, demo modules, ISO images and test logs.
pub fn rxen_dir() -> PathBuf {
    repo_target_dir().join("rxen")
}

/// A `cargo` command: the same cargo that runs xtask, if known.
pub fn cargo_command() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Prints `message` and exits xtask with status 1.
pub fn fail(message: &str) -> ! {
    eprintln!("xtask: {message}");
    process::exit(1);
}

/// Runs `cmd`, exiting xtask with an error if it cannot start or fails.
pub fn run_checked(cmd: &mut Command) {
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!("xtask: `{}` failed: {status}", display_command(cmd));
            process::exit(status.code().filter(|&c| c != 0).unwrap_or(1));
        }
        Err(e) => {
            eprintln!("xtask: cannot run `{}`: {e}", display_command(cmd));
            process::exit(1);
        }
    }
}

/// A shell-like rendering of `cmd`, quoted so that it can be pasted into a shell.
pub fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes one word for a POSIX shell if it needs quoting.
pub fn shell_quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(OsStr::new("-m")), "-m");
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_quote(OsStr::new("")), "''");
    }

    #[test]
    fn root_has_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("xtask").is_dir());
    }
}
