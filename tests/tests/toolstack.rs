//! The toolstack in dom0 (issue 13): Debian's Linux as dom0 with its own Xen drivers
//! (`xen-privcmd`) and rxen's tools (`rxl`, built static by `cargo xtask build` into
//! `target/rxen/dom0/`) creates, lists and destroys domains through the hypervisor's
//! domctl, sysctl and memory_op, as Xen's `xl` does.
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! toolstack`.

use std::path::PathBuf;
use std::time::Duration;

use rxen_tests::{debian_kernel, dom0_tool, guest, modules_initramfs_with, write_module, Qemu};

/// dom0's kernel command line.
const DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen loglevel=8 ignore_loglevel";

fn machine(name: &str) -> Qemu {
    Qemu::new(name)
        .memory_mb(1024)
        .append("console=com1 loglvl=all guest_loglvl=all isa_debug_exit dom0_mem=256M")
        .timeout(Duration::from_secs(240))
}

/// A config file for the test guest `guest` (in `/guests/` of dom0's initramfs).
fn guest_config(name: &str, guest: &str, extra: &str) -> String {
    format!(
        "# {name}: rxen's test guest {guest}\nname = \"{name}\"\ntype = \"pvh\"\nkernel = \"/guests/{guest}\"\nmemory = 16\nvcpus = 1\n{extra}"
    )
}

/// The initramfs: busybox, xen-privcmd, rxl, the test guests `guests` and the files
/// `etc` (in `/etc/rxen/`), with `script` after the modules are loaded.
fn initramfs(script: &str, guests: &[&str], etc: &[(&str, String)]) -> PathBuf {
    let mut files = vec![("bin/rxl".to_string(), dom0_tool("rxl"))];
    for g in guests {
        files.push((format!("guests/{g}"), guest(g)));
    }
    for (name, text) in etc {
        let path = write_module(&format!("toolstack-{name}"), text.as_bytes());
        files.push((format!("etc/rxen/{name}"), path));
    }
    modules_initramfs_with(&["xen-privcmd"], script, &files)
}

/// `rxl` in Linux dom0 drives the hypervisor: `info` and `list` describe the machine
/// and dom0; `create` builds a PVH domU from a config file (the pvclock test guest:
/// its ELF image loaded through foreign maps, its grant table seeded, its vCPU set
/// with sethvmcontext), which runs, reports SUCCESS and powers off; `list` shows it,
/// then shut down (kept, as Xen keeps it for the toolstack); `destroy` removes it and
/// every frame comes back; `dmesg` reads the hypervisor's console. Bad configs are
/// refused with the file, line and reason, and nothing is created.
#[test]
fn rxl_in_dom0_creates_lists_and_destroys_a_domain() {
    let script = "\
echo rxl-test: privcmd $(ls /dev/xen)
rxl info
rxl list
rxl create /etc/rxen/pvclock.cfg
for i in $(seq 1 150); do rxl list | grep -q '^pvclock .*s-' && break; sleep 0.2; done
rxl list
rxl destroy pvclock
sleep 0.5
rxl list
rxl create /etc/rxen/bad.cfg
echo rxl-test: bad config exit $?
rxl create /etc/rxen/missing-kernel.cfg
echo rxl-test: missing kernel exit $?
rxl list | grep -c -v Name | sed 's/^/rxl-test: domains after /'
rxl dmesg | grep -c 'created by d0' | sed 's/^/rxl-test: dmesg creations /'
echo rxl-test: done
poweroff -f
";
    let etc = [
        ("pvclock.cfg", guest_config("pvclock", "pvclock", "")),
        (
            "bad.cfg",
            guest_config("bad", "pvclock", "vcpus = \"many\"\n"),
        ),
        (
            "missing-kernel.cfg",
            guest_config("nokernel", "no-such-guest", ""),
        ),
    ];
    let initramfs = initramfs(script, &["pvclock"], &etc);
    let out = machine("toolstack-rxl")
        .module(debian_kernel(), DOM0_ARGS)
        .module(&initramfs, "")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxl-test: privcmd")
        .assert_line_contains_all(&["(d0) nr_cpus", ": 1"])
        .assert_line_contains_all(&["(d0) virt_caps", "hvm hap"])
        .assert_line_contains_all(&["(d0) Domain-0", " 0 ", "r-----"])
        .assert_in_order(&[
            "(d0) Parsing config from /etc/rxen/pvclock.cfg",
            "created by d0: paused, no memory, 1 vCPU(s) to come",
            "d1v0: HVM context loaded by d0",
            "(d0) Domain 1 \"pvclock\" created (console port",
            "(d1) Test result: SUCCESS",
            "d1: shut down (poweroff); kept for its toolstack to destroy",
            "d1: destroyed by the control domain; ",
            "(d0) rxl: /etc/rxen/bad.cfg:7: vcpus must be a number",
            "(d0) rxl-test: bad config exit 1",
            "(d0) rxl: /guests/no-such-guest: No such file or directory",
            "(d0) rxl-test: missing kernel exit 1",
            "(d0) rxl-test: domains after 1",
            "(d0) rxl-test: dmesg creations 1",
            "(d0) rxl-test: done",
        ])
        .assert_line_contains_all(&["(d0) pvclock", " 1 ", "16", "s-"])
        .assert_contains("d1: destroyed by the control domain; ")
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ])
        .assert_count("created by d0", 1);
}
