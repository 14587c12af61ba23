//! `cargo xtask run`: the main demo. rxen boots in QEMU without dom0 and runs three
//! domUs side by side: two test guests that ping-pong over an interdomain event channel,
//! and Debian's own Linux kernel (fetched once with `apt-get download`) with two vCPUs
//! and a busybox initramfs whose `/init` reports what it sees through the PV console and
//! powers off. The serial console is streamed; rxen stops when the last domain ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::deps::{self, Task};
use crate::{display_command, fail, image};

/// Arguments the hypervisor always gets from `cargo xtask run`.
pub const BASE_APPEND: &str = "console=com1 loglvl=all isa_debug_exit";

/// The value the hypervisor writes to the isa-debug-exit port on a normal stop.
pub const EXIT_NORMAL: u8 = 0x10;
/// The value the hypervisor writes to the isa-debug-exit port on a fault or panic.
pub const EXIT_CRASH: u8 = 0x11;

/// Options of `cargo xtask run`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Extra hypervisor command-line arguments, after [`BASE_APPEND`].
    pub append: String,
    /// Kill QEMU after this long.
    pub timeout: Duration,
}

impl Options {
    /// Parses `--smp N`, `--append ARGS` and `--timeout SECS` (also as `--opt=value`).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            smp: 2,
            append: String::new(),
            timeout: Duration::from_secs(300),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| iter.next().cloned())
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match name {
                "--smp" => {
                    let v = value()?;
                    options.smp = v
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("bad --smp value `{v}`"))?;
                }
                "--append" => options.append = value()?,
                "--timeout" => {
                    let v = value()?;
                    let secs: u64 = v
                        .parse()
                        .map_err(|_| format!("bad --timeout value `{v}`"))?;
                    options.timeout = Duration::from_secs(secs);
                }
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }

    /// The full hypervisor command line.
    pub fn cmdline(&self) -> String {
        if self.append.trim().is_empty() {
            format!("{BASE_APPEND} {DEMO_APPEND}")
        } else {
            format!("{BASE_APPEND} {DEMO_APPEND} {}", self.append.trim())
        }
    }
}

/// The demo Linux domU's `/init`.
const DEMO_INIT: &str = "#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo
echo rxen demo: Linux $(uname -r) is running as a PVH domU of rxen
echo rxen demo: $(nproc) vCPUs, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
echo rxen demo: memory $(grep MemTotal /proc/meminfo)
echo rxen demo: powering off
poweroff -f
";

/// The demo's modules: the ping-pong pair, then Linux and its initramfs.
fn demo_modules() -> Vec<(PathBuf, &'static str)> {
    let guests = image::build_guests();
    let pingpong = guests.join("evtchn_pingpong");
    vec![
        (pingpong.clone(), "role=server peer=2 rounds=500"),
        (pingpong, "role=client peer=1 rounds=500"),
        (rxen_tests::debian_kernel(), "console=hvc0 loglevel=4"),
        (rxen_tests::busybox_initramfs(DEMO_INIT), ""),
    ]
}

/// The domUs of the demo: d1 and d2 ping-pong, d3 is Linux with two vCPUs.
pub const DEMO_APPEND: &str = "dom0less domu=0,mem=16M domu=1,mem=16M domu=2+3,mem=256M,vcpus=2";

/// Builds the QEMU command line for `image` with the given modules.
fn qemu_command(image: &Path, options: &Options, modules: &[(PathBuf, &str)]) -> Command {
    let initrd = modules
        .iter()
        .map(|(path, args)| {
            let path = path.to_string_lossy();
            assert!(
                !path.contains([',', ' ']),
                "module path {path:?} must not contain commas or spaces"
            );
            // QEMU's -initrd splits modules at ',' and unescapes ",," to ','.
            format!("{path} {}", args.replace(',', ",,"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel", "tcg", "-cpu", "max", "-machine", "q35", "-m", "512M",
    ])
    .arg("-smp")
    .arg(options.smp.to_string())
    .args(["-display", "none", "-no-reboot", "-serial", "stdio"])
    .args(["-monitor", "none"])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .arg("-kernel")
    .arg(image)
    .arg("-append")
    .arg(options.cmdline())
    .arg("-initrd")
    .arg(initrd);
    cmd
}

/// `cargo xtask run`: returns the process exit status for xtask.
pub fn run(options: &Options) -> i32 {
    deps::ensure_rust_target();
    deps::ensure_packages(Task::Run);
    let image = image::build();
    let modules = demo_modules();
    let mut cmd = qemu_command(&image, options, &modules);
    println!("{}", display_command(&cmd));
    // stdin is not QEMU's: with -serial stdio on a terminal QEMU would switch it to raw mode.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| fail(&format!("cannot start qemu-system-x86_64: {e}")));

    let deadline = Instant::now() + options.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                fail(&format!("waiting for QEMU failed: {e}"));
            }
        }
    };
    let (message, code) = describe(status.map(|s| s.code()), options.timeout);
    println!("\nxtask: {message}");
    code
}

/// Turns QEMU's exit (`None` = timed out, `Some(None)` = killed by a signal) into the
/// message to print and xtask's exit status.
fn describe(status: Option<Option<i32>>, timeout: Duration) -> (String, i32) {
    let normal = i32::from(EXIT_NORMAL) << 1 | 1;
    let crash = i32::from(EXIT_CRASH) << 1 | 1;
    match status {
        None => (
            format!("timed out after {} s; QEMU killed", timeout.as_secs()),
            1,
        ),
        Some(Some(code)) if code == normal => ("rxen stopped normally".to_string(), 0),
        Some(Some(code)) if code == crash => ("rxen crashed".to_string(), 1),
        Some(Some(code)) => (format!("QEMU exited with status {code}"), 1),
        Some(None) => ("QEMU was killed by a signal".to_string(), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_defaults() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!(o.smp, 2);
        assert_eq!(o.timeout, Duration::from_secs(300));
        assert_eq!(o.cmdline(), format!("{BASE_APPEND} {DEMO_APPEND}"));
    }

    #[test]
    fn parse_options() {
        let o = Options::parse(&strings(&[
            "--smp",
            "4",
            "--append=dom0_mem=256M noreboot",
            "--timeout",
            "5",
        ]))
        .unwrap();
        assert_eq!(o.smp, 4);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(
            o.cmdline(),
            format!("{BASE_APPEND} {DEMO_APPEND} dom0_mem=256M noreboot")
        );
        assert!(Options::parse(&strings(&["--smp"])).is_err());
        assert!(Options::parse(&strings(&["--smp", "0"])).is_err());
        assert!(Options::parse(&strings(&["--bogus"])).is_err());
    }

    #[test]
    fn exit_statuses() {
        let t = Duration::from_secs(1);
        assert_eq!(describe(Some(Some(33)), t).1, 0);
        assert_eq!(describe(Some(Some(35)), t).0, "rxen crashed");
        assert_ne!(describe(None, t).1, 0);
        assert_ne!(describe(Some(Some(0)), t).1, 0);
        assert_ne!(describe(Some(None), t).1, 0);
    }

    #[test]
    fn initrd_joins_modules() {
        let o = Options::parse(&[]).unwrap();
        let cmd = qemu_command(
            Path::new("/x/rxen"),
            &o,
            &[("/a/k".into(), "x=1,2"), ("/a/i".into(), "")],
        );
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i + 1], "/a/k x=1,,2,/a/i ");
    }
}
