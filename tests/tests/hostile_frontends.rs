//! Hostile frontends (issue 11, bad input): a domU that speaks the split-driver
//! protocols itself and feeds dom0's Linux backends garbage. The backends' own checks
//! must turn it away (disconnect, halt the ring, error responses), dom0 and rxen must
//! carry on, and rxen must have nothing to say about it: what a guest writes into its
//! rings and grant references is between it and its backend.
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! hostile_frontends`.

use std::time::Duration;

use rxen_tests::dom0::{boot_dom0, grant_teardowns, guest_config, initramfs_with_modules, machine};
use rxen_tests::{write_module, Outcome};

/// What sector 0 of the third disk begins with.
const SECTOR0_TEXT: &str = "rxen-hostile-sector-0";

/// The third disk's image (1 MiB): [`SECTOR0_TEXT`], then a known sequence.
fn image_c() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    bytes[..SECTOR0_TEXT.len()].copy_from_slice(SECTOR0_TEXT.as_bytes());
    bytes[SECTOR0_TEXT.len()] = b'\n';
    bytes
}

/// FNV-1a (32 bits), as the guest computes it.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The hypervisor's own lines about domain `d` that only tell its life: created,
/// context loaded, shut down, paging pool, grant mappings torn down, destroyed.
fn lifecycle_line(line: &str, d: u32) -> bool {
    let Some(rest) = line
        .strip_prefix("(rxen) ")
        .and_then(|r| r.strip_prefix(&format!("d{d}")))
    else {
        return false;
    };
    [
        ": created by d0",
        "v0: HVM context lo",
        ": shut down (poweroff)",
        ": paging pool:",
        ": destroyed by the control domain",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
        || (rest.starts_with(": ") && rest.ends_with(" grant mappings torn down"))
}

/// Asserts that from domain `d`'s creation to its destruction the hypervisor printed
/// no line of its own (guest output, `(rxen) (dN) ...`, aside) but those of `d`'s life
/// cycle: no error, warning or note about what `d` did or about what dom0's backend
/// did with `d`'s grants and rings.
fn assert_quiet_about(out: &Outcome, d: u32) {
    let created = format!("(rxen) d{d}: created by d0");
    let destroyed = format!("(rxen) d{d}: destroyed by the control domain");
    let Some(start) = out.log.find(&created) else {
        out.fail(&format!("no {created:?}"));
    };
    let Some(len) = out.log[start..].find(&destroyed) else {
        out.fail(&format!("no {destroyed:?}"));
    };
    let own: Vec<&str> = out.log[start..start + len]
        .lines()
        .filter(|l| l.starts_with("(rxen) ") && !l.starts_with("(rxen) (d"))
        .filter(|l| !lifecycle_line(l, d))
        .collect();
    if !own.is_empty() {
        out.fail(&format!(
            "rxen said something of its own while d{d} ran: {own:#?}"
        ));
    }
}

/// A test guest (`blk_hostile`) with three disks (files in dom0, loop devices, dom0's
/// Debian blkback) attacks one disk per phase: rings blkback cannot use (grant
/// references never made, a ring granted read-only or to another domain, an event
/// channel that does not exist; blkback gives up on the device each time, and after
/// the frontend starts again, offers it anew), a producer index 10000 past the
/// responses (blkback halts the ring: no response, not even to a good request after
/// it), then bad requests on a good ring (grants never made or read-only for a read,
/// 0/12/255 segments, sectors outside the page or the disk, an unknown operation, a
/// full ring of them at once; indirect requests whose page of segments is not granted,
/// with too many segments or an unknown operation), each answered with its error; grants wiped while
/// blkback has them mapped (two CPUs, so that the guest can catch blkback in the act)
/// are still answered; a good read of sector 0 returns the image's data, and the
/// device closes with every grant given back. dom0 carries on: `rxl destroy` frees the loop devices and the backends (including
/// the halted one), a second guest reads the same disk, and neither domain leaves a
/// frame behind. rxen logs nothing of its own about any of it.
#[test]
fn blkback_turns_away_a_hostile_frontend_and_rxen_stays_quiet() {
    let script = "\
start_xenstored
state() {
  echo hostile-test: $1: loops $(cat /sys/block/loop*/loop/backing_file 2>/dev/null | wc -l) \
backends $(ls /sys/bus/xen-backend/devices | wc -l) \
xenstore $(rxenstore ls /local/domain/0/backend 2>/dev/null | grep -c 'frontend =')
}
waitshut() {
  for i in $(seq 1 1500); do rxl list | grep -q \"^$1 .*s-\" && return 0; sleep 0.2; done
  echo hostile-test: $1 did not shut down
}
state start
rxl create /etc/rxen/hostile.cfg
echo hostile-test: create exit $?
waitshut hostile
state hostile-ended
rxl destroy hostile
echo hostile-test: destroy exit $?
state destroyed
rxl create /etc/rxen/good.cfg
echo hostile-test: good create exit $?
waitshut good
rxl destroy good
echo hostile-test: good destroy exit $?
state good-destroyed
rxl list | grep -c -v Name | sed 's/^/hostile-test: domains /'
echo hostile-test: done
poweroff -f
";
    let disk = |vdev: &str, access: &str, file: &str| {
        format!("'format=raw, vdev={vdev}, access={access}, target=/images/{file}'")
    };
    let hostile = guest_config(
        "hostile",
        "blk_hostile",
        &format!(
            "on_poweroff = \"preserve\"\ndisk = [ {}, {}, {} ]\n",
            disk("xvda", "rw", "a.img"),
            disk("xvdb", "rw", "b.img"),
            disk("xvdc", "rw", "c.img"),
        ),
    );
    let good = guest_config(
        "good",
        "blk_hostile",
        &format!(
            "on_poweroff = \"preserve\"\ncmdline = \"good\"\ndisk = [ {} ]\n",
            disk("xvda", "ro", "c.img")
        ),
    );
    let image = image_c();
    let zeros = vec![0u8; 1 << 20];
    let initramfs = initramfs_with_modules(
        &["loop", "xen-blkback"],
        script,
        &["blk_hostile"],
        &[("hostile.cfg", hostile), ("good.cfg", good)],
        vec![
            (
                "images/a.img".to_string(),
                write_module("hostile-a.img", &zeros),
            ),
            (
                "images/b.img".to_string(),
                write_module("hostile-b.img", &zeros),
            ),
            (
                "images/c.img".to_string(),
                write_module("hostile-c.img", &image),
            ),
        ],
    );
    // One host thread for both virtual CPUs: under QEMU's multi-threaded TCG this test
    // failed about one run in 15-20 (the guest dying on a callback delivery whose IDT
    // reads fault, or the machine resetting), the rare failure the README describes,
    // which 120 single-threaded runs of a two-CPU ping-pong never showed.
    let out = boot_dom0(
        machine("hostile-frontends-blk")
            .smp(2)
            .single_threaded_tcg()
            .timeout(Duration::from_secs(600)),
        &initramfs,
    );
    let sector0 = format!(
        "sector 0 begins {SECTOR0_TEXT:?}, fnv1a {:#010x}",
        fnv1a(&image[..4096])
    );
    out.assert_not_contains("FATAL TRAP")
        .assert_not_contains("Test result: FAILURE")
        .assert_not_contains("Test result: ERROR")
        .assert_in_order(&[
            "(d0) hostile-test: start: loops 0 backends 0 xenstore 0",
            "(rxen) d1: created by d0",
            "(d1) blk_hostile: 3 disk(s)",
            // Phase 1: blkback cannot use the ring and gives up on the device, each
            // time (Linux's message: its errno, or the negated GNTST_* status of the
            // map, which are Xen's: bad_gntref -3 for a reference beyond the table,
            // general_error -1 for an entry that does not grant a writable page to
            // dom0; -EINVAL for a port that does not exist).
            "vbd vbd-1-51712: 3 mapping in shared page 4000 from domain 1",
            "(d1) blk_hostile: xvda: ring-ref 4000 (beyond the table): backend state Some(5)",
            "vbd vbd-1-51712: 1 mapping in shared page 300 from domain 1",
            "(d1) blk_hostile: xvda: ring-ref 300 (never granted): backend state Some(5)",
            "vbd vbd-1-51712: 1 mapping in shared page 12 from domain 1",
            "(d1) blk_hostile: xvda: ring-ref 12 (granted read-only): backend state Some(5)",
            "vbd vbd-1-51712: 1 mapping in shared page 13 from domain 1",
            "(d1) blk_hostile: xvda: ring-ref 13 (granted to d7): backend state Some(5)",
            "vbd vbd-1-51712: 22 mapping ring-ref port 4000",
            "(d1) blk_hostile: xvda: event-channel 4000 (no such port): backend state Some(5)",
            "(d1) blk_hostile: xvda: ring grants released [true, true, true]",
            // Phase 2: blkback halts the ring.
            "(d1) blk_hostile: xvdb: ring-ref 8 port ",
            "(d1) blk_hostile: xvdb: req_prod 10000 with rsp_prod 0: no response",
            "(d1) blk_hostile: xvdb: good request after it: no response; backend state Some(4)",
            // Phase 3: an error response for each bad request.
            "(d1) blk_hostile: xvdc: ring-ref 9 port ",
            "(d1) blk_hostile: xvdc: read into gref 4000 (beyond the table): status -1",
            "(d1) blk_hostile: xvdc: read into gref 300 (never granted): status -1",
            "(d1) blk_hostile: xvdc: read into a read-only grant: status -1",
            "(d1) blk_hostile: xvdc: read, good segment then gref 4000: status -1",
            "(d1) blk_hostile: xvdc: read with 0 segments: status -1",
            "(d1) blk_hostile: xvdc: read with 12 segments: status -1",
            "(d1) blk_hostile: xvdc: read with 255 segments: status -1",
            "(d1) blk_hostile: xvdc: read of sectors 5..3 of a page: status -1",
            "(d1) blk_hostile: xvdc: read of sector 8 of a page: status -1",
            "(d1) blk_hostile: xvdc: read beyond the disk: status -1",
            "(d1) blk_hostile: xvdc: operation 77: status -2",
            "(d1) blk_hostile: xvdc: 32 bad reads at once: 32 error responses",
            // Indirect requests: bad pages of segments, counts and operations.
            "(d1) blk_hostile: xvdc: the backend offers 256 indirect segments",
            "(d1) blk_hostile: xvdc: indirect read, segments in gref 4000: status -1",
            "(d1) blk_hostile: xvdc: indirect read, segments in gref 300: status -1",
            "(d1) blk_hostile: xvdc: indirect read with 0 segments: status -1",
            "(d1) blk_hostile: xvdc: indirect read with 4096 segments: status -1",
            "(d1) blk_hostile: xvdc: indirect read, one segment more than offered: status -1",
            "(d1) blk_hostile: xvdc: indirect operation 77: status -1",
            "(d1) blk_hostile: xvdc: indirect read of sector 0: status 0",
            "(d1) blk_hostile: xvdc: grant wiped under the backend: ",
            "(d1) blk_hostile: xvdc: read of sector 0: status 0",
            &format!("(d1) blk_hostile: xvdc: {sector0}"),
            "grants released [true, true, true]",
            "(d1) Test result: SUCCESS",
            "(rxen) d1: shut down (poweroff)",
            // The three backends are still there (closed, halted, closed) ...
            "(d0) hostile-test: hostile-ended: loops 3 backends 3 xenstore 3",
            // ... until rxl destroy takes them away, the halted one too.
            "(d0) hostile-test: destroy exit 0",
            "(d0) hostile-test: destroyed: loops 0 backends 0 xenstore 0",
            "(rxen) d2: created by d0",
            "(d2) blk_hostile: 1 disk(s)",
            "(d2) blk_hostile: xvda: read of sector 0: status 0",
            &format!("(d2) blk_hostile: xvda: {sector0}"),
            "(d2) Test result: SUCCESS",
            "(rxen) d2: shut down (poweroff)",
            "(d0) hostile-test: good destroy exit 0",
            "(d0) hostile-test: good-destroyed: loops 0 backends 0 xenstore 0",
            "(d0) hostile-test: domains 1",
            "(d0) hostile-test: done",
        ])
        .assert_contains("(d0) hostile-test: create exit 0")
        .assert_contains("(d0) hostile-test: good create exit 0")
        // Each wiped grant was answered (Xen's rule: a mapping holds the page, wiping the
        // entry does not take it back; how many rounds caught it mapped is timing).
        .assert_line_contains_all(&[
            "(d1) blk_hostile: xvdc: grant wiped under the backend: ",
            " of 10 caught mapped, 10 answered",
        ])
        // Linux's own check of the producer index.
        .assert_line_contains_all(&[
            "(d0) ",
            "Frontend provided bogus ring requests (10000 - 0 = 10000)",
            "Halting ring processing",
        ])
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ])
        .assert_line_contains_all(&[
            "d2: destroyed by the control domain",
            " 0 frames not returned",
        ])
        .assert_line_contains_all(&["d0: shut down (poweroff)", " 0 frames not returned"]);
    assert_quiet_about(&out, 1);
    assert_quiet_about(&out, 2);
    // blkback let go of every ring and data grant, the halted ring's too: what rxen
    // tore down at destroy is at most rxenstored's mapping of the xenstore ring (no
    // console daemon runs here).
    for (line, n) in grant_teardowns(&out) {
        assert!(
            n <= 1 && !line.contains("d0: "),
            "grants left mapped: {line}"
        );
    }
    // dom0's kernel met no bug: the one warning Linux 6.1 prints is its own, in the
    // error path of a ring it could not map (xen_blkif_disconnect finds the request
    // pool it just freed; the same splat shows under Xen, e.g. xen-devel, "xen-blkback:
    // ... mapping ring-ref port"), not a sign of anything rxen did.
    out.assert_not_contains("BUG:").assert_not_contains("Oops");
    for line in out.lines_containing("WARNING: ") {
        assert!(
            line.contains("xen_blkif_disconnect"),
            "dom0 warned about something else: {line}"
        );
    }
}

/// The quiet check can fail: a line of rxen's own about the domain, or about dom0,
/// between the domain's creation and its destruction is caught; life-cycle lines,
/// guest output and lines outside the window are not.
#[test]
fn the_quiet_check_catches_rxen_speaking() {
    let log = "\
(rxen) d0: before
(rxen) d1: created by d0: paused, no memory, 1 vCPU(s) to come
(rxen) d1v0: HVM context loaded by d0: rip 0x100000, cr0 0x11
(rxen) (d1) guest talk
(rxen) (d0) dom0 talk
(rxen) d1: shut down (poweroff); kept for its toolstack to destroy
(rxen) d1: 1 grant mappings torn down
(rxen) d1: paging pool: at most 7 of 256 pages used, 0 requests refused
(rxen) d1: destroyed by the control domain; 4356 frames returned, 0 frames not returned
(rxen) d0: after
";
    assert_quiet_about(&Outcome::new("quiet", log, rxen_tests::Status::TimedOut), 1);
    for noise in [
        "(rxen) d1v0: write of unhandled MSR 0x1234: #GP\n",
        "(rxen) d0v0: grant map of d1's ref 4000 refused\n",
        "(rxen) grant table: something\n",
    ] {
        let noisy = log.replace("(rxen) (d1) guest talk\n", noise);
        let caught = std::panic::catch_unwind(|| {
            assert_quiet_about(
                &Outcome::new("noisy", &noisy, rxen_tests::Status::TimedOut),
                1,
            )
        });
        assert!(caught.is_err(), "not caught: {noise}");
    }
    assert!(!lifecycle_line("(rxen) d1: created by d0", 2));
    assert!(!lifecycle_line("(rxen) d12: created by d0", 1));
}
