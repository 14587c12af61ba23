//! The toolstack in dom0 (issue 13): Debian's Linux as dom0 with its own Xen drivers
//! (`xen-privcmd`) and rxen's tools (`rxl`, built static by `cargo xtask build` into
//! `target/rxen/dom0/`) creates, lists and destroys domains through the hypervisor's
//! domctl, sysctl and memory_op, as Xen's `xl` does.
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! toolstack`.

use std::path::PathBuf;
use std::time::Duration;

use rxen_tests::dom0::{
    assert_no_leak, boot_dom0, guest_config, initramfs, initramfs_with, linux_domu_files, machine,
};
use rxen_tests::{busybox_initramfs, debian_kernel, write_module};

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
rxl sched-credit -d pvclock -w 512 -c 50
rxl sched-credit | sed 's/^/rxl-test: credit: /'
rxl sched-credit -d pvclock -w 0
echo rxl-test: weight 0 exit $?
rxl mem-max pvclock 64
rxl list -l | grep max_pages | sed 's/^/rxl-test: long: /'
rxl top -b -d 1 -i 2 | sed 's/^/rxl-test: top: /'
stty rows 12 cols 100 < /dev/hvc0
setsid -c rxl top -d 1 -i 2 < /dev/hvc0 > /dev/hvc0 2>&1
status=$?
echo
echo rxl-test: live top exit $status
rxl top -d 1 -i 1 < /dev/null > /dev/null 2>&1
echo rxl-test: top without a terminal exit $?
rxl vcpu-list | sed 's/^/rxl-test: vcpus: /'
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
        (
            "pvclock.cfg",
            guest_config("pvclock", "pvclock", "on_poweroff = \"preserve\"\n"),
        ),
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
    let out = boot_dom0(machine("toolstack-rxl"), &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxl-test: privcmd")
        .assert_line_contains_all(&["(d0) nr_cpus", ": 1"])
        .assert_line_contains_all(&["(d0) virt_caps", "hvm hap"])
        .assert_line_contains_all(&["(d0) xen_version", ": 4.17-rxen"])
        .assert_line_contains_all(&["(d0) xen_caps", "hvm-3.0-x86_64"])
        .assert_line_contains_all(&["(d0) xen_scheduler", ": credit"])
        .assert_line_contains_all(&["(d0) xen_commandline", "dom0_mem=256M"])
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
        // The credit scheduler's parameters, set and listed (Xen's default 256 for
        // dom0); weight 0 leaves the weight as it is, as in Xen.
        .assert_line_contains_all(&["(d0) rxl-test: credit: Domain-0", " 0 ", " 256 "])
        .assert_line_contains_all(&["(d0) rxl-test: credit: pvclock", " 1 ", " 512 ", " 50"])
        .assert_contains("(d0) rxl-test: weight 0 exit 0")
        // mem-max 64 MiB: max_pages 16384 (+1 MiB of slack is create's only).
        .assert_line_contains_all(&["(d0) rxl-test: long:", "max_pages 16384"])
        // xentop's view, twice: dom0 busy, the domU shut down with its 16 MiB.
        .assert_count(
            "NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) VCPUS",
            2,
        )
        .assert_line_contains_all(&["(d0) rxl-test: top:", " pvclock ---s--", " 65536 "])
        // dom0's one vCPU runs vcpu-list itself; the shut-down domU's is neither
        // running nor blocked (and still online, as Xen reports it).
        .assert_line_contains_all(&["(d0) rxl-test: vcpus: Domain-0", " 0     0     0   r--"])
        .assert_line_contains_all(&["(d0) rxl-test: vcpus: pvclock", " 1     0     0   ---"])
        .assert_contains("d1: destroyed by the control domain; ")
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ])
        .assert_count("created by d0", 1)
        .assert_contains("(d0) rxl-test: live top exit 0")
        .assert_contains("(d0) rxl-test: top without a terminal exit 0");
    // The live screen (ratatui) on dom0's console, a real terminal of 12 x 100: what it
    // wrote, with the console's line breaks taken out (rxen's console drops the ESC
    // bytes of the control sequences, the rest stays). It enters the alternate screen,
    // draws the summary and the table (heading reversed) with both domains, and
    // restores the terminal; without a terminal it prints plain tables.
    let screen: String = out
        .log
        .lines()
        .filter_map(|l| l.strip_prefix("(rxen) (d0) "))
        .collect();
    let start = screen
        .find("[?1049h")
        .expect("the live screen was not entered");
    let end = screen[start..]
        .find("[?1049l")
        .map(|n| start + n)
        .expect("the terminal was not restored");
    let drawn = &screen[start..end];
    for part in [
        "rxl",
        "top",
        "domains:",
        "shutdown",
        "Mem:",
        "[7mNAME",
        "MAXMEM(k)",
        "Domain-0",
        "r-----",
        "pvclock",
        "---s--",
        "65536",
    ] {
        assert!(
            drawn.contains(part),
            "no {part:?} on the live screen: {drawn:?}"
        );
    }
}

/// vCPU affinity on two CPUs, as `xl vcpu-pin` and `cpus=` set it: a spinning domU
/// created with `cpus = "1"` is seen only on CPU 1, re-pinned to CPU 0 while it runs
/// it is seen only there; `vcpu-list` shows the affinities as xl does (`all / all`,
/// `0 / 1` after `vcpu-pin <d> <v> - <soft>`); dom0's two vCPUs start pinned one per
/// CPU (`dom0_vcpus_pin`, Xen's option) and dom0 re-pins its own vCPU; a pCPU or vCPU that does not exist, or nothing to set, is refused; a config
/// naming a pCPU the machine lacks fails the build and leaves no domain.
#[test]
fn rxl_pins_vcpus_to_cpus() {
    let script = "\
samples() {
  for i in 1 2 3 4 5 6; do rxl vcpu-list hog | awk '$1 == \"hog\" {print $4}'; sleep 0.3; done | sort | uniq -c | tr -s ' \\n' ' '
}
rxl create /etc/rxen/hog.cfg
for i in $(seq 1 100); do rxl vcpu-list hog | grep -q 'r--' && break; sleep 0.1; done
echo pin-test: on 1: $(samples)
rxl vcpu-list | sed 's/^/pin-test: list: /'
rxl vcpu-pin hog 0 0
echo pin-test: pin exit $?
# It moves when CPU 0 next schedules (dom0's vCPU 0 may hold it a moment).
for i in $(seq 1 100); do rxl vcpu-list hog | awk '$1 == \"hog\" {print $4}' | grep -qx 0 && break; sleep 0.1; done
echo pin-test: on 0: $(samples)
rxl vcpu-pin hog all 2
echo pin-test: no such pCPU exit $?
rxl vcpu-pin hog 1 0
echo pin-test: no such vCPU exit $?
rxl vcpu-pin hog 0 - -
echo pin-test: nothing exit $?
rxl vcpu-pin hog 0 - 1
echo pin-test: soft exit $?
rxl vcpu-pin Domain-0 0 1
echo pin-test: dom0 exit $?
rxl vcpu-list | sed 's/^/pin-test: after: /'
rxl vcpu-pin hog all all all
rxl vcpu-pin Domain-0 all all
echo pin-test: unpinned: $(rxl vcpu-list hog | grep -c 'all / all')
rxl destroy hog
rxl create /etc/rxen/nowhere.cfg
echo pin-test: missing pCPU exit $?
rxl list | grep -c -v Name | sed 's/^/pin-test: domains /'
echo pin-test: done
poweroff -f
";
    let hog = |name: &str, cpus: &str| {
        guest_config(
            name,
            "cpu_hog",
            &format!("cmdline = \"until_ms=900000\"\ncpus = \"{cpus}\"\n"),
        )
    };
    let etc = [
        ("hog.cfg", hog("hog", "1")),
        ("nowhere.cfg", hog("nowhere", "0,7")),
    ];
    let initramfs = initramfs(script, &["cpu_hog"], &etc);
    // One host thread for both CPUs: QEMU's multi-threaded TCG crashes when dom0's
    // Linux sizes a PCI BAR while the other CPU runs (see `single_threaded_tcg`).
    let machine = machine("toolstack-pin")
        .smp(2)
        .single_threaded_tcg()
        .append("dom0_max_vcpus=2 dom0_vcpus_pin");
    let out = boot_dom0(machine, &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d0) pin-test: on 1: 6 1",
            "(d0) pin-test: pin exit 0",
            "(d0) pin-test: on 0: 6 0",
            "(d0) rxl: pCPU 2 does not exist (this machine has 2)",
            "(d0) pin-test: no such pCPU exit 1",
            "(d0) rxl: hog has no vCPU 1",
            "(d0) pin-test: no such vCPU exit 1",
            "(d0) rxl: nothing to set: both affinities are `-`",
            "(d0) pin-test: nothing exit 1",
            "(d0) pin-test: soft exit 0",
            "(d0) pin-test: dom0 exit 0",
            "(d0) pin-test: unpinned: 1",
            "d1: destroyed by the control domain",
            "(d0) rxl: cpus: pCPU 7 does not exist (this machine has 2)",
            "(d0) pin-test: missing pCPU exit 1",
            "(d0) pin-test: domains 1",
            "(d0) pin-test: done",
        ])
        .assert_contains("Affinity (Hard / Soft)")
        // As created: hard 1; dom0's vCPU n on CPU n (dom0_vcpus_pin).
        .assert_line_contains_all(&["(d0) pin-test: list: hog", " 1     0     1   ", " 1 / all"])
        .assert_line_contains_all(&[
            "(d0) pin-test: list: Domain-0",
            " 0     0     0 ",
            " 0 / all",
        ])
        .assert_line_contains_all(&[
            "(d0) pin-test: list: Domain-0",
            " 0     1     1 ",
            " 1 / all",
        ])
        // Re-pinned to 0, preferring 1; dom0's vCPU 0 pinned to 1.
        .assert_line_contains_all(&["(d0) pin-test: after: hog", " 0     0   ", " 0 / 1"])
        .assert_line_contains_all(&[
            "(d0) pin-test: after: Domain-0",
            " 0     0     1 ",
            " 1 / all",
        ])
        .assert_count("d2: destroyed by the control domain", 1);
}

/// rxenconsoled in dom0 serves the PV console of a domU that rxl created: it maps
/// the ring through grant reference 0 (gntdev), binds the console port (evtchn) and
/// logs every line to `/var/log/xen/console/guest-<name>.log` as xenconsoled
/// `--log=guest` does; the guest writes several rings' worth with flow control, so
/// the daemon must keep up. After the domain is destroyed the daemon drops it and a
/// second domain of the same name is served again.
#[test]
fn rxenconsoled_logs_a_domus_console_ring() {
    let script = "\
rxenconsoled -i --log=guest &
for round in 1 2; do
  rxl create /etc/rxen/ring.cfg
  for i in $(seq 1 150); do rxl list | grep -q '^ring .*s-' && break; sleep 0.2; done
  sleep 0.5
  rxl destroy ring
  sleep 0.5
done
grep -c 'console_ring: line' /var/log/xen/console/guest-ring.log | sed 's/^/rxl-test: logged lines /'
sed 's/^/ringlog: /' /var/log/xen/console/guest-ring.log | tail -n 3
echo rxl-test: done
poweroff -f
";
    let etc = [(
        "ring.cfg",
        guest_config("ring", "console_ring", "on_poweroff = \"preserve\"\n"),
    )];
    let initramfs = initramfs(script, &["console_ring"], &etc);
    let out = boot_dom0(machine("toolstack-consoled"), &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d1) console_ring: ring at gfn 0xfefff",
            "(d1) console_ring: 50 lines consumed by the backend",
            "(d1) Test result: SUCCESS",
            "d1: destroyed by the control domain; ",
            "(d2) console_ring: 50 lines consumed by the backend",
            "(d2) Test result: SUCCESS",
            "d2: destroyed by the control domain; ",
            "(d0) rxl-test: logged lines 100",
            "(d0) ringlog: console_ring: line 48 of 50",
            "(d0) ringlog: console_ring: line 49 of 50",
            "(d0) ringlog: console_ring: line 50 of 50",
            "(d0) rxl-test: done",
        ])
        // The two domUs, then dom0 (the last: the whole machine is checked).
        .assert_count(" 0 frames not returned", 3);
}

/// Debian's own Linux as a domU that rxl builds in dom0 (a bzImage unpacked by rxl,
/// its busybox initramfs as the ramdisk, 2 vCPUs, ACPI tables as for a boot-time
/// domU): it boots to `/init`, whose output on `hvc0` reaches rxenconsoled's log
/// through the PV console ring; it powers off, stays shut down until `rxl destroy`,
/// and every frame comes back. `rxl pause` stops it (its heartbeat stops, `list`
/// shows `p`) and `rxl unpause` lets it go on.
#[test]
fn rxl_creates_a_linux_domu() {
    let domu_init = "#!/bin/sh
mount -t proc proc /proc
echo rxen-domU: init is running
echo rxen-domU: cpus $(nproc)
echo rxen-domU: memtotal $(grep MemTotal /proc/meminfo)
for i in $(seq 1 40); do echo rxen-domU: beat $i; sleep 0.1; done
poweroff -f
";
    let domu_initrd = busybox_initramfs(domu_init);
    let script = "\
rxenconsoled -i --log=guest &
rxl create /etc/rxen/linux.cfg
log=/var/log/xen/console/guest-linux.log
beats() { grep -c 'rxen-domU: beat' $log 2>/dev/null || echo 0; }
for i in $(seq 1 600); do [ $(beats) -ge 3 ] && break; sleep 0.2; done
rxl pause linux
rxl list | grep '^linux' | sed 's/^/rxl-test: paused: /'
sleep 0.5; a=$(beats); sleep 2; b=$(beats)
echo rxl-test: beats while paused $a $b
rxl unpause linux
sleep 2; c=$(beats)
[ $c -gt $b ] && echo rxl-test: beats again after unpause
for i in $(seq 1 600); do rxl list | grep -q '^linux .*s-' && break; sleep 0.5; done
rxl list
sed 's/^/domUlog: /' /var/log/xen/console/guest-linux.log | grep 'rxen-domU'
rxl destroy linux
echo rxl-test: done
poweroff -f
";
    let config = "name = \"linux\"\ntype = \"pvh\"\nkernel = \"/guests/vmlinuz\"\nramdisk = \"/guests/initrd\"\ncmdline = \"console=hvc0 earlyprintk=xen\"\nmemory = 256\nvcpus = 2\non_poweroff = \"preserve\"\n";
    let initramfs = initramfs_with(
        script,
        &[],
        &[("linux.cfg", config.to_string())],
        linux_domu_files(domu_initrd),
    );
    let out = boot_dom0(
        machine("toolstack-linux-domu").timeout(Duration::from_secs(480)),
        &initramfs,
    );
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d0) Domain 1 \"linux\" created",
            "(d1) [",
            "(d0) rxl-test: beats again after unpause",
            "d1: shut down (poweroff); kept for its toolstack to destroy",
            "(d0) domUlog: rxen-domU: init is running",
            "(d0) domUlog: rxen-domU: cpus 2",
            "(d0) domUlog: rxen-domU: beat 40",
            "d1: destroyed by the control domain; ",
            "(d0) rxl-test: done",
        ])
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ]);
    // Paused (`p`); blocked (`b`) too when both its vCPUs were idle, as Xen's
    // getdomaininfo reports it.
    let paused = out
        .log
        .lines()
        .find(|l| l.contains("(d0) rxl-test: paused: linux"))
        .unwrap_or_else(|| out.fail("no paused line"));
    assert!(
        paused.contains(" --p--- ") || paused.contains(" -bp--- "),
        "not shown paused: {paused}"
    );
    // Not one heartbeat while paused.
    let line = out
        .log
        .lines()
        .find(|l| l.contains("rxl-test: beats while paused"))
        .unwrap_or_else(|| out.fail("no beats-while-paused line"));
    let counts: Vec<&str> = line.split_whitespace().rev().take(2).collect();
    assert_eq!(counts[0], counts[1], "the domU ran while paused: {line}");
}

/// Two domUs at once, created and destroyed by rxl ten times over (some still
/// running when destroyed, with rxenconsoled mapping their consoles): nothing
/// leaks. Every destroy returns all the domain's frames, and when dom0 ends last the
/// whole machine's memory is back (the hypervisor checks it against the boot); dom0's
/// grant mappings and event channels are what they were before the loop (rxen's `g`
/// and `e` debug keys, pressed with `rxl debug-keys`).
#[test]
fn rxl_create_and_destroy_in_a_loop_leaks_nothing() {
    let script = "\
rxenconsoled -i --log=guest &
leakcheck start
for round in $(seq 1 10); do
  rxl create /etc/rxen/a.cfg >/dev/null
  rxl create /etc/rxen/b.cfg >/dev/null
  sleep 0.2
  rxl destroy a
  rxl destroy b
done
sleep 0.5
rxl list | grep -c -v Name | sed 's/^/rxl-test: domains after /'
leakcheck end
echo rxl-test: done
poweroff -f
";
    let etc = [
        (
            "a.cfg",
            guest_config("a", "console_ring", "cmdline = \"lines=1000\"\n"),
        ),
        ("b.cfg", guest_config("b", "pvclock", "")),
    ];
    let initramfs = initramfs(script, &["console_ring", "pvclock"], &etc);
    let out = boot_dom0(machine("toolstack-loop"), &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxl-test: domains after 1")
        .assert_contains("(d0) rxl-test: done")
        .assert_count("created by d0: paused, no memory", 20)
        .assert_count(": destroyed by the control domain; ", 20)
        // 20 domUs, then dom0 (the whole machine checked against the boot).
        .assert_count(" 0 frames not returned", 21)
        .assert_count("frames not returned", 21)
        .assert_line_contains_all(&["d0: shut down (poweroff)", " 0 frames not returned"]);
    // rxenconsoled unmapped every console ring and closed every port it bound.
    assert_no_leak(&out, "start", "end");
}

/// What happens when a domain shuts down is its config's, acted on by the process
/// `rxl create` leaves behind (as xl's, logging to `/var/log/xen/rxl-<name>.log`): by default a powered-off domain is
/// destroyed; `on_reboot = "restart"` builds it again each time it reboots (three
/// times at least here, until that process is stopped); `on_crash = "preserve"`
/// leaves it, shown crashed (`c`) in `rxl list`.
#[test]
fn rxl_acts_on_shutdown_as_configured() {
    let script = "\
rxl create /etc/rxen/off.cfg
rxl create /etc/rxen/again.cfg
rxl create /etc/rxen/crash.cfg
sleep 6
killall rxl
sleep 0.5
rxl list | sed 's/^/rxl-test: list: /'
cat /var/log/xen/rxl-off.log /var/log/xen/rxl-again.log /var/log/xen/rxl-crash.log | sed 's/^/rxl-log: /'
rxl destroy again
rxl destroy crash
echo rxl-test: done
poweroff -f
";
    let etc = [
        ("off.cfg", guest_config("off", "pvclock", "")),
        (
            "again.cfg",
            guest_config("again", "shutdown_reboot", "on_reboot = \"restart\"\n"),
        ),
        (
            "crash.cfg",
            guest_config("crash", "shutdown_crash", "on_crash = \"preserve\"\n"),
        ),
    ];
    let initramfs = initramfs(
        script,
        &["pvclock", "shutdown_reboot", "shutdown_crash"],
        &etc,
    );
    let out = boot_dom0(machine("toolstack-on-shutdown"), &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxl-log: Domain 1 \"off\" shut down (poweroff)")
        .assert_contains("d1: destroyed by the control domain; ")
        .assert_in_order(&[
            "\"again\" shut down (reboot)",
            "\"again\" created",
            "\"again\" shut down (reboot)",
            "\"again\" created",
        ])
        .assert_contains("(d0) rxl-log: Domain 3 \"crash\" shut down (crash)")
        .assert_line_contains_all(&["(d0) rxl-test: list: crash", "----c-"])
        .assert_not_contains("(d0) rxl-test: list: off")
        .assert_contains("(d0) rxl-test: done");
    let again = out.log.matches("\"again\" created").count();
    assert!(again >= 3, "again was built {again} times");
}

/// rxenstored in dom0, started as Xen's init script starts xenstored: it maps the ring
/// the dom0 kernel allocated (`/proc/xen/xsd_kva`), binds the kernel's port
/// (`/proc/xen/xsd_port`, a same-domain binding) and writes what xen-init-dom0 writes.
/// The kernel's xenbus connects: `/dev/xen/xenbus` reads `Domain-0`, a socket write is
/// read back through it and the other way round, a watch set on the socket fires for a
/// write through the kernel. rxl creates a domU and, as libxl, writes its xenstore
/// directory (its name, its store ring) and introduces it (the daemon maps its ring
/// through grant reference 1 and binds its port; introducing it again is accepted):
/// `@introduceDomain` fires; it shuts down and is destroyed: `@releaseDomain` fires for
/// each. An introduce of a domain that does not
/// exist is refused.
#[test]
fn rxenstored_serves_dom0s_kernel_and_a_domu() {
    let script = "\
echo xs-test: xenfs $(ls /proc/xen) port $(cat /proc/xen/xsd_port)
start_xenstored --log-level info
for i in $(seq 1 50); do rxenstore --xenbus read /local/domain/0/name >/tmp/name 2>/tmp/err && break; sleep 0.2; done
cat /tmp/err
echo xs-test: xenbus name $(cat /tmp/name)
echo xs-test: xenbus domid $(rxenstore --xenbus read /local/domain/0/domid)
rxenstore write /test/a from-socket
echo xs-test: xenbus reads $(rxenstore --xenbus read /test/a)
rxenstore --xenbus write /test/b from-xenbus
echo xs-test: socket reads $(rxenstore read /test/b)
rxenstore watch -n 2 /test/w >/tmp/watch &
sleep 0.5
rxenstore --xenbus write /test/w/x 1
sleep 0.5
sed 's/^/xs-test: watch /' /tmp/watch
rxenstore ls /local/domain/0 | sed 's/^/xs-ls: /'
rxenconsoled -i --log=none &
rxenstore watch -n 2 @introduceDomain >/tmp/intro &
rxenstore watch -n 3 @releaseDomain >/tmp/release &
sleep 0.5
rxl create /etc/rxen/ring.cfg
rxenstore read /local/domain/1/name | sed 's/^/xs-test: rxl wrote name /'
rxenstore read /local/domain/1/store/ring-ref | sed 's/^/xs-test: rxl wrote store ring-ref /'
rxenstore introduce 1
echo xs-test: introduce exit $?
sleep 0.5
sed 's/^/xs-test: intro /' /tmp/intro
rxenstore introduce 42 1 5
echo xs-test: introduce d42 exit $?
for i in $(seq 1 150); do rxl list | grep -q '^ring .*s-' && break; sleep 0.2; done
sleep 1
rxl destroy ring
sleep 1.5
sed 's/^/xs-test: release /' /tmp/release
echo xs-test: done
poweroff -f
";
    let etc = [(
        "ring.cfg",
        guest_config("ring", "console_ring", "on_poweroff = \"preserve\"\n"),
    )];
    let initramfs = initramfs(script, &["console_ring"], &etc);
    let out = boot_dom0(machine("toolstack-xenstored"), &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d0) xs-test: xenfs",
            "(d0) xs-test: xenbus name Domain-0",
            "(d0) xs-test: xenbus domid 0",
            "(d0) xs-test: xenbus reads from-socket",
            "(d0) xs-test: socket reads from-xenbus",
            "(d0) xs-test: watch /test/w",
            "(d0) xs-test: watch /test/w/x",
            "(d0) xs-test: rxl wrote name ring",
            "(d0) xs-test: rxl wrote store ring-ref 1044476",
            "(d0) xs-test: introduce exit 0",
            "(d0) xs-test: intro @introduceDomain",
            "(d0) xs-test: intro @introduceDomain",
            "(d0) xs-test: introduce d42 exit 1",
            "d1: destroyed by the control domain; ",
            "(d0) xs-test: release @releaseDomain",
            "(d0) xs-test: release @releaseDomain",
            "(d0) xs-test: release @releaseDomain",
            "(d0) xs-test: done",
        ])
        // The kernel's xenbus wrote its control features through the ring.
        .assert_contains("(d0) xs-ls:  feature-poweroff = \"1\"")
        .assert_contains("(d1) Test result: SUCCESS")
        .assert_contains("dom1: Gone: released")
        // The daemons' grant maps of the destroyed domU unmap cleanly afterwards (an
        // orphaned handle, as Xen's lingering granter): no warning from gntdev.
        .assert_not_contains("gntdev.c");
}

/// The control plane with Linux on both sides: rxenstored and rxenconsoled in dom0;
/// rxl creates Debian's Linux as a domU with a xenstore page. Its xenbus connects
/// (dom0 reads the `control/feature-poweroff` its kernel wrote); `rxl mem-set` to
/// half its memory makes its balloon driver give pages back
/// (`XENMEM_decrease_reservation`), which `rxl list` shows; `rxl shutdown -w` asks
/// it through `control/shutdown`, it powers off, and rxl waits until it is gone.
#[test]
fn a_linux_domu_with_xenstore_balloons_and_shuts_down_on_request() {
    let domu_init = "#!/bin/sh
mount -t proc proc /proc
echo rxen-domU: init is running
while true; do sleep 1; done
";
    let poweroff = write_module("domu-sbin-poweroff", b"#!/bin/sh\n/bin/poweroff -f\n");
    let domu_initrd =
        rxen_tests::busybox_initramfs_with(domu_init, &[("sbin/poweroff".to_string(), poweroff)]);
    let script = "\
start_xenstored
rxenconsoled -i --log=guest &
rxl create /etc/rxen/linux.cfg
log=/var/log/xen/console/guest-linux.log
for i in $(seq 1 600); do grep -q 'rxen-domU: init is running' $log 2>/dev/null && break; sleep 0.2; done
for i in $(seq 1 100); do [ \"$(rxenstore read /local/domain/1/control/feature-poweroff 2>/dev/null)\" = 1 ] && break; sleep 0.2; done
echo xs-test: feature-poweroff $(rxenstore read /local/domain/1/control/feature-poweroff)
rxl list | grep '^linux' | sed 's/^/xs-test: before: /'
rxl mem-set linux 128
for i in $(seq 1 300); do rxl list | grep -q '^linux  *1  *1[23][0-9] ' && break; sleep 0.2; done
rxl list | grep '^linux' | sed 's/^/xs-test: after mem-set: /'
rxl shutdown -w linux
echo xs-test: shutdown exit $?
rxl list | grep -c '^linux' | sed 's/^/xs-test: linux domains left /'
sleep 0.5
rxenstore read /local/domain/1/name >/dev/null 2>&1 || echo xs-test: /local/domain/1 gone from xenstore
grep 'rxen-domU' $log | sed 's/^/domUlog: /'
echo xs-test: done
poweroff -f
";
    let config = "name = \"linux\"\ntype = \"pvh\"\nkernel = \"/guests/vmlinuz\"\nramdisk = \"/guests/initrd\"\ncmdline = \"console=hvc0\"\nmemory = 256\nvcpus = 2\n";
    let initramfs = initramfs_with(
        script,
        &[],
        &[("linux.cfg", config.to_string())],
        linux_domu_files(domu_initrd),
    );
    let out = boot_dom0(
        machine("toolstack-linux-xenstore").timeout(Duration::from_secs(480)),
        &initramfs,
    );
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d0) Domain 1 \"linux\" created",
            "(d0) xs-test: feature-poweroff 1",
            "(d0) xs-test: before: linux",
            "(d0) xs-test: after mem-set: linux",
            "(d0) Domain 1 has been destroyed.",
            "(d0) xs-test: shutdown exit 0",
            "(d0) xs-test: linux domains left 0",
            "(d0) xs-test: /local/domain/1 gone from xenstore",
            "(d0) domUlog: rxen-domU: init is running",
            "(d0) xs-test: done",
        ])
        // Its /init loops for ever: only the requested poweroff (the kernel runs
        // /sbin/poweroff) ended it.
        .assert_contains("d1: shut down (poweroff)")
        // dom0 ends last: the whole machine's memory is back, ballooned pages too.
        .assert_line_contains_all(&["d0: shut down (poweroff)", " 0 frames not returned"])
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ]);
    // The balloon gave back half of the 256 MiB.
    let mem = |marker: &str| -> u64 {
        let line = out
            .log
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| out.fail(&format!("no {marker:?} line")));
        let words: Vec<&str> = line
            .split(marker)
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        words
            .get(2)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| out.fail(&format!("no memory in {line:?}")))
    };
    let (before, after) = (mem("xs-test: before: "), mem("xs-test: after mem-set: "));
    assert!(
        (250..=260).contains(&before),
        "memory before mem-set: {before} MiB"
    );
    assert!(
        (120..=140).contains(&after),
        "memory after mem-set 128: {after} MiB"
    );
}

/// `rxl console` attaches to a domU's console through the pty rxenconsoled gives it
/// (its path in xenstore's `console/tty`, as xenconsoled): what the guest wrote
/// comes out, a line typed goes into the guest's input ring and the guest says it
/// back (on its console and through console_io), and CTRL-] detaches.
#[test]
fn rxl_console_attaches_to_a_domus_console() {
    let script = "\
start_xenstored
rxenconsoled -i --log=guest &
rxl create /etc/rxen/echo.cfg
sleep 1
(sleep 2; echo hello-from-dom0; sleep 2; printf '\\035') | rxl console echo > /tmp/con.out
echo rxl-test: console exit $?
grep 'console_ring: ' /tmp/con.out | tail -n 3 | sed 's/^/con: /'
echo rxl-test: tty $(rxenstore read /local/domain/1/console/tty)
echo rxl-test: done
poweroff -f
";
    let etc = [(
        "echo.cfg",
        guest_config(
            "echo",
            "console_ring",
            "cmdline = \"echo=1 wait_ms=60000\"\non_poweroff = \"preserve\"\n",
        ),
    )];
    let initramfs = initramfs(script, &["console_ring"], &etc);
    let out = boot_dom0(machine("toolstack-console"), &initramfs);
    out.assert_not_contains("FATAL TRAP").assert_in_order(&[
        "(d1) console_ring: 50 lines consumed by the backend",
        "(d1) console_ring: got hello-from-dom0",
        "(d1) Test result: SUCCESS",
        "(d0) rxl-test: console exit 0",
        "(d0) con: console_ring: line 50 of 50",
        "(d0) con: console_ring: type a line",
        "(d0) con: console_ring: you typed hello-from-dom0",
        "(d0) rxl-test: tty /dev/pts/",
        "(d0) rxl-test: done",
    ]);
}

/// Debian's `xenstore-*` tools (the host's, with the libraries `ldd` names) for
/// dom0's initramfs: (path in the archive, file on the host).
fn debian_xenstore_utils() -> Vec<(String, PathBuf)> {
    let tool = PathBuf::from("/usr/bin/xenstore");
    assert!(
        tool.is_file(),
        "Debian's xenstore-utils are missing (cargo xtask test installs them)"
    );
    let mut files: Vec<(String, PathBuf)> = ["read", "write", "ls", "exists", "rm", "list"]
        .iter()
        .map(|t| (format!("bin/xenstore-{t}"), tool.clone()))
        .collect();
    files.extend(rxen_tests::shared_libraries(&tool, None));
    files
}

/// Xen's own tools against rxen: Debian's C `xenstore-*` tools (libxenstore) in dom0
/// talk to rxenstored over its socket, and over `/dev/xen/xenbus` through dom0's
/// kernel ring: what they write rxen's client reads and the other way round; they
/// list dom0's directory and read a domU's name that rxl wrote.
#[test]
fn debians_xenstore_tools_work_with_rxenstored_in_dom0() {
    let script = "\
start_xenstored
xenstore-write /tool/a from-xen-tools
echo xs-c: xenstore-read $(xenstore-read /tool/a)
echo xs-c: rxenstore reads $(rxenstore read /tool/a)
rxenstore write /tool/b from-rxenstore
echo xs-c: xenstore-read of rxenstore $(xenstore-read /tool/b)
xenstore-ls /local/domain/0 | sed 's/^/xs-c-ls: /'
echo xs-c: through the kernel $(XENSTORED_PATH=/dev/xen/xenbus xenstore-read /local/domain/0/name)
rxl create /etc/rxen/ring.cfg
echo xs-c: domU name $(xenstore-read /local/domain/1/name)
xenstore-exists /local/domain/1/store/ring-ref && echo xs-c: store ring-ref exists
xenstore-rm /tool/a
xenstore-exists /tool/a || echo xs-c: removed
echo xs-c: done
poweroff -f
";
    let etc = [(
        "ring.cfg",
        guest_config("ring", "console_ring", "on_poweroff = \"preserve\"\n"),
    )];
    let initramfs = initramfs_with(script, &["console_ring"], &etc, debian_xenstore_utils());
    let out = boot_dom0(machine("toolstack-xenstore-utils"), &initramfs);
    out.assert_not_contains("FATAL TRAP").assert_in_order(&[
        "(d0) xs-c: xenstore-read from-xen-tools",
        "(d0) xs-c: rxenstore reads from-xen-tools",
        "(d0) xs-c: xenstore-read of rxenstore from-rxenstore",
        "(d0) xs-c-ls: name = \"Domain-0\"",
        "(d0) xs-c: through the kernel Domain-0",
        "(d0) xs-c: domU name ring",
        "(d0) xs-c: store ring-ref exists",
        "(d0) xs-c: removed",
        "(d0) xs-c: done",
    ]);
}

/// Xen's own console daemon against rxen: Debian's Xen 4.17 `xenconsoled` (C,
/// libxenctrl, libxengnttab, libxenevtchn) in dom0 finds a domU rxl created through
/// xenstore (`@introduceDomain`, `console/ring-ref` and `port`), maps its ring (grant
/// reference 0), binds its port and logs every line it writes with `--log=guest`, as
/// it does on Xen: it speaks only the ABI.
#[test]
fn debians_xenconsoled_serves_a_domus_console() {
    let script = "\
start_xenstored
xenconsoled -i --log=guest --log-dir=/var/log/xen/console &
sleep 1
rxl create /etc/rxen/ring.cfg
for i in $(seq 1 150); do rxl list | grep -q '^ring .*s-' && break; sleep 0.2; done
sleep 1
grep -c 'console_ring: line' /var/log/xen/console/guest-ring.log | sed 's/^/xc-test: logged lines /'
tail -n 1 /var/log/xen/console/guest-ring.log | sed 's/^/xc-log: /'
echo xc-test: done
poweroff -f
";
    let etc = [(
        "ring.cfg",
        guest_config("ring", "console_ring", "on_poweroff = \"preserve\"\n"),
    )];
    let mut more = debian_xenstore_utils();
    more.extend(rxen_tests::debian_xenconsoled());
    let initramfs = initramfs_with(script, &["console_ring"], &etc, more);
    let out = boot_dom0(machine("toolstack-xenconsoled"), &initramfs);
    out.assert_not_contains("FATAL TRAP").assert_in_order(&[
        "(d1) console_ring: 50 lines consumed by the backend",
        "(d1) Test result: SUCCESS",
        "(d0) xc-test: logged lines 50",
        "(d0) xc-log: console_ring: line 50 of 50",
        "(d0) xc-test: done",
    ]);
}

/// Destroying a domain while rxl is still building it (populating, mapping and
/// writing its Linux kernel) ends the build with an error, leaves no half-built
/// domain and no frame behind; the machine's memory is whole when dom0 ends.
#[test]
fn destroying_a_domain_while_rxl_builds_it_leaks_nothing() {
    let script = "\
rxl create /etc/rxen/linux.cfg > /tmp/create.out 2>&1 &
for i in $(seq 1 100); do rxl list | grep -q '^(null) *1 ' && break; sleep 0.05; done
rxl destroy 1
echo rxl-test: destroy exit $?
wait
sed 's/^/create: /' /tmp/create.out
rxl list | grep -c -v Name | sed 's/^/rxl-test: domains after /'
echo rxl-test: done
poweroff -f
";
    let config =
        "name = \"linux\"\ntype = \"pvh\"\nkernel = \"/guests/vmlinuz\"\nmemory = 256\nvcpus = 2\n";
    let initramfs = initramfs_with(
        script,
        &[],
        &[("linux.cfg", config.to_string())],
        vec![("guests/vmlinuz".to_string(), debian_kernel())],
    );
    let out = boot_dom0(machine("toolstack-destroy-while-building"), &initramfs);
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxl-test: destroy exit 0")
        .assert_line_contains_all(&["(d0) create: rxl: ", "d1"])
        .assert_contains("(d0) rxl-test: domains after 1")
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ])
        .assert_line_contains_all(&["d0: shut down (poweroff)", " 0 frames not returned"])
        .assert_not_contains("(d0) Domain 1 \"linux\" created");
}

/// A domU's own xenstore ring, served by rxenstored in dom0: the guest (built by rxl,
/// which wrote its directory and introduced it) writes and reads back nodes under its
/// `data/` 200 times over its ring, each reply waited for on its event channel; a
/// node of dom0's is refused with `EACCES`. It prints the round trips per second.
#[test]
fn a_domu_talks_to_rxenstored_over_its_ring() {
    let script = "\
start_xenstored
rxl create /etc/rxen/xs.cfg
for i in $(seq 1 300); do rxl list | grep -q '^xs .*s-' && break; sleep 0.2; done
echo xs-test: last value $(rxenstore read /local/domain/1/data/xs-ring/7)
echo xs-test: done
poweroff -f
";
    let etc = [(
        "xs.cfg",
        guest_config("xs", "xs_ring", "on_poweroff = \"preserve\"\n"),
    )];
    let initramfs = initramfs(script, &["xs_ring"], &etc);
    let out = boot_dom0(machine("toolstack-xs-ring"), &initramfs);
    out.assert_not_contains("FATAL TRAP").assert_in_order(&[
        "(d1) xs_ring: ring at gfn 0xfeffc",
        "(d1) xs_ring: 200 round trips in ",
        "(d1) Test result: SUCCESS",
        // The last write to node 7 was round 199 (199 % 16 == 7).
        "(d0) xs-test: last value value-199",
        "(d0) xs-test: done",
    ]);
}
