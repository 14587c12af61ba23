//! What the tests of dom0's toolstack share: a machine with Debian's Linux as dom0,
//! its initramfs with rxen's dom0 tools and Xen's drivers, and the start of its init
//! (xenfs, devpts, rxenstored).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{debian_kernel, dom0_tool, guest, modules_initramfs_with, write_module, Outcome, Qemu};

/// dom0's kernel command line.
pub const DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen loglevel=8 ignore_loglevel";

/// A machine for dom0 (1 GiB, 256 MiB of it dom0's, the hypervisor's console at
/// full verbosity, 240 s unless the test says otherwise).
pub fn machine(name: &str) -> Qemu {
    Qemu::new(name)
        .memory_mb(1024)
        .append("console=com1 loglvl=all guest_loglvl=all isa_debug_exit dom0_mem=256M")
        .timeout(Duration::from_secs(240))
}

/// Boots `machine` with Debian's kernel as dom0 ([`DOM0_ARGS`]) and `initramfs`.
pub fn boot_dom0(machine: Qemu, initramfs: &Path) -> Outcome {
    machine
        .module(debian_kernel(), DOM0_ARGS)
        .module(initramfs, "")
        .run()
}

/// The files a Linux domU config names (`/guests/vmlinuz`: Debian's kernel,
/// `/guests/initrd`: `initrd`), for dom0's initramfs.
pub fn linux_domu_files(initrd: PathBuf) -> Vec<(String, PathBuf)> {
    vec![
        ("guests/vmlinuz".to_string(), debian_kernel()),
        ("guests/initrd".to_string(), initrd),
    ]
}

/// What every dom0 here does first, as a dom0's init does: xenfs on `/proc/xen`,
/// devpts (for console ptys), and `start_xenstored [options]`, which starts rxenstored
/// and waits for its socket. `leakcheck <label>` prints what rxen's `g` and `e` debug
/// keys say of dom0 (the grants of others it maps, its event channels in use) as
/// `leak-check: <label>: ...`, for [`assert_no_leak`].
pub const DOM0_PRELUDE: &str = "\
mkdir -p /proc/xen /var/run/xenstored /var/log/xen/console /var/lib/xen /dev/pts
mount -t xenfs xenfs /proc/xen
mount -t devpts devpts /dev/pts
leakcheck() {
  rxl debug-keys ge
  sleep 0.5
  echo \"leak-check: $1: $(rxl dmesg | grep 'd0: grant table' | tail -n 1 | sed 's/.*frames, //; s/ (.*//') / $(rxl dmesg | grep 'd0: event channels' | tail -n 1 | sed 's/.*: \\([0-9]* ports in use\\).*/\\1/')\"
}
start_xenstored() {
  rxenstored \"$@\" &
  for i in $(seq 1 50); do test -S /var/run/xenstored/socket && break; sleep 0.1; done
}
";

/// A config file for the test guest `guest` (in `/guests/` of dom0's initramfs).
pub fn guest_config(name: &str, guest: &str, extra: &str) -> String {
    format!(
        "# {name}: rxen's test guest {guest}\nname = \"{name}\"\ntype = \"pvh\"\nkernel = \"/guests/{guest}\"\nmemory = 16\nvcpus = 1\n{extra}"
    )
}

/// The initramfs: busybox, xen-privcmd, xen-evtchn, xen-gntdev, xenfs, rxl,
/// rxenconsoled, rxenstored, rxenstore, the test guests `guests` and the files `etc`
/// (in `/etc/rxen/`), with [`DOM0_PRELUDE`] and `script` after the modules are loaded.
pub fn initramfs(script: &str, guests: &[&str], etc: &[(&str, String)]) -> PathBuf {
    initramfs_with(script, guests, etc, Vec::new())
}

/// [`initramfs`] with more files (path in the archive, file on the host).
pub fn initramfs_with(
    script: &str,
    guests: &[&str],
    etc: &[(&str, String)],
    more: Vec<(String, PathBuf)>,
) -> PathBuf {
    initramfs_with_modules(&[], script, guests, etc, more)
}

/// [`initramfs_with`] with Debian's kernel modules `modules` loaded too (after Xen's).
pub fn initramfs_with_modules(
    modules: &[&str],
    script: &str,
    guests: &[&str],
    etc: &[(&str, String)],
    more: Vec<(String, PathBuf)>,
) -> PathBuf {
    let mut files = more;
    files.extend([
        ("bin/rxl".to_string(), dom0_tool("rxl")),
        ("bin/rxenconsoled".to_string(), dom0_tool("rxenconsoled")),
        ("bin/rxenstored".to_string(), dom0_tool("rxenstored")),
        ("bin/rxenstore".to_string(), dom0_tool("rxenstore")),
    ]);
    for g in guests {
        files.push((format!("guests/{g}"), guest(g)));
    }
    for (name, text) in etc {
        let path = write_module(&format!("toolstack-{name}"), text.as_bytes());
        files.push((format!("etc/rxen/{name}"), path));
    }
    let mut names = vec!["xen-privcmd", "xen-evtchn", "xen-gntdev", "xenfs"];
    names.extend_from_slice(modules);
    modules_initramfs_with(&names, &[DOM0_PRELUDE, script].concat(), &files)
}

/// The hypervisor's `dN: <n> grant mappings torn down` lines (what it still had to
/// unmap when a domain died): each line with its count (`u32::MAX` if unreadable).
pub fn grant_teardowns(out: &Outcome) -> Vec<(&str, u32)> {
    out.lines_containing("grant mappings torn down")
        .into_iter()
        .map(|line| {
            let n = line
                .split(": ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(u32::MAX);
            (line, n)
        })
        .collect()
}

/// Asserts that dom0's `leakcheck` lines `before` and `after` (see [`DOM0_PRELUDE`])
/// are the same and that dom0 then maps no other domain's grant: every grant mapping
/// and event channel the domUs in between needed is gone.
pub fn assert_no_leak(out: &Outcome, before: &str, after: &str) {
    let line = |label: &str| -> String {
        let marker = format!("leak-check: {label}: ");
        out.log
            .lines()
            .find_map(|l| l.split(&marker).nth(1))
            .unwrap_or_else(|| out.fail(&format!("no {marker:?} line")))
            .trim()
            .to_string()
    };
    let (b, a) = (line(before), line(after));
    if !a.starts_with("0 entries in use by others, 0 mappings of others' grants / ") {
        out.fail(&format!("dom0 still maps grants or holds entries: {a:?}"));
    }
    if a != b {
        out.fail(&format!("dom0's grants and ports went from {b:?} to {a:?}"));
    }
}
