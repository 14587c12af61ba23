//! Boot tests: the hypervisor comes up under QEMU (multiboot via `-kernel`, and multiboot2
//! via GRUB), reports its command line, modules, CPUs and SVM features, warns about unknown
//! options, and stops cleanly or with a crash report.
//!
//! Run with `cargo xtask test` (which builds the image first), or
//! `cargo xtask build && cargo test -p rxen-tests --test boot`.

use std::path::PathBuf;
use std::time::Duration;

use rxen_tests::{grub_iso, write_module, Outcome, Qemu, Status};

/// Hypervisor arguments every test passes.
const BASE_ARGS: &str = "console=com1 loglvl=all isa_debug_exit";
/// Command lines of the two demo modules.
const DOM0_ARGS: &str = "dom0-arg1 root=/dev/xvda";
const INITRD_ARGS: &str = "initrd-arg";
/// Sizes of the two demo modules (not page multiples, to catch rounding).
const DOM0_SIZE: usize = 12_345;
const INITRD_SIZE: usize = 4_321;

/// A module of `size` bytes: a text header naming it, then a byte pattern.
fn module(name: &str, size: usize) -> PathBuf {
    let mut data = format!("rxen test module {name}\n").into_bytes();
    data.extend(
        (0..)
            .map(|i: u32| (i % 251) as u8)
            .take(size.saturating_sub(data.len())),
    );
    data.truncate(size);
    write_module(name, &data)
}

/// The two demo modules: a "dom0 kernel" and an "initrd".
fn demo_modules() -> [(PathBuf, String); 2] {
    [
        (module("boot-dom0", DOM0_SIZE), DOM0_ARGS.to_string()),
        (module("boot-initrd", INITRD_SIZE), INITRD_ARGS.to_string()),
    ]
}

/// A `-kernel` boot of the image with `BASE_ARGS` plus `extra` args.
fn boot(name: &str, extra: &str) -> Qemu {
    let q = Qemu::new(name)
        .append(BASE_ARGS)
        .timeout(Duration::from_secs(60));
    if extra.is_empty() {
        q
    } else {
        q.append(extra)
    }
}

/// What every successful boot prints before it looks at modules.
#[track_caller]
fn assert_came_up(out: &Outcome, cpus: u32) {
    out.assert_contains("(rxen) ")
        .assert_contains("rxen version")
        .assert_contains(&format!("Brought up {cpus} CPUs"))
        .assert_contains("SVM enabled")
        .assert_contains("Hardware Assisted Paging (HAP) detected")
        .assert_not_contains("FATAL TRAP");
}

/// The module lines for the demo modules, with their sizes and cooked command lines.
#[track_caller]
fn assert_demo_modules(out: &Outcome) {
    out.assert_line_contains_all(&[
        "Module 0: 0x",
        &format!("({DOM0_SIZE} bytes)"),
        &format!("cmdline '{DOM0_ARGS}'"),
    ])
    .assert_line_contains_all(&[
        "Module 1: 0x",
        &format!("({INITRD_SIZE} bytes)"),
        &format!("cmdline '{INITRD_ARGS}'"),
    ])
    .assert_count("Module 2:", 0);
}

/// The run ended through the debug-exit port (normal stop or a reported crash), not by
/// hanging or a triple fault.
#[track_caller]
fn assert_debug_exit(out: &Outcome) {
    if !matches!(out.status, Status::DebugExit(_)) {
        out.fail("expected the hypervisor to stop through isa-debug-exit");
    }
}

#[test]
fn multiboot_two_modules_smp1() {
    let [(dom0, dom0_args), (initrd, initrd_args)] = demo_modules();
    let out = boot("multiboot_two_modules_smp1", "")
        .smp(1)
        .module(&dom0, &dom0_args)
        .module(&initrd, &initrd_args)
        .run();
    assert_came_up(&out, 1);
    // The cooked command line: without the image's file name that QEMU puts first.
    out.assert_contains("Bootloader: qemu (Multiboot1)")
        .assert_contains(&format!("Command line: {BASE_ARGS}"))
        .assert_in_order(&["rxen version", "Command line:", "Module 0:", "Module 1:"]);
    for line in out.lines_containing("Command line:") {
        if line.contains("/rxen") {
            out.fail("the command line still contains the image's file name");
        }
    }
    assert_demo_modules(&out);
    // The placeholder "dom0 kernel" is not a real kernel: the hypervisor may refuse it, but
    // it must end the run itself.
    assert_debug_exit(&out);
}

#[test]
fn smp2() {
    let out = boot("smp2", "").smp(2).run();
    assert_came_up(&out, 2);
    out.assert_normal_stop();
}

#[test]
fn smp4() {
    let out = boot("smp4", "")
        .smp(4)
        .timeout(Duration::from_secs(120))
        .run();
    assert_came_up(&out, 4);
    out.assert_normal_stop();
}

#[test]
fn no_module_stops_cleanly() {
    let out = boot("no_module_stops_cleanly", "").run();
    assert_came_up(&out, 1);
    out.assert_contains("No dom0 kernel module")
        .assert_count("Module 0:", 0)
        .assert_not_contains("Panic on CPU")
        .assert_normal_stop();
}

#[test]
fn unknown_option_warns_and_boots() {
    let out = boot("unknown_option_warns_and_boots", "frobnicate=1").run();
    out.assert_contains("unknown option 'frobnicate'")
        .assert_in_order(&["unknown option 'frobnicate'", "Brought up 1 CPUs"]);
    assert_came_up(&out, 1);
    out.assert_contains("No dom0 kernel module")
        .assert_normal_stop();
}

#[test]
fn crash_test_page_fault() {
    let out = boot("crash_test_page_fault", "crash_test=page-fault").run();
    out.assert_contains("rxen version")
        .assert_contains("FATAL TRAP")
        .assert_contains("Page fault")
        .assert_contains("RIP:")
        .assert_contains("RSP:")
        .assert_contains("CR2:")
        .assert_contains("Stack trace")
        .assert_in_order(&["FATAL TRAP", "RIP:", "Stack trace"])
        .assert_crash_stop();
}

#[test]
fn crash_test_panic() {
    let out = boot("crash_test_panic", "crash_test=panic").run();
    out.assert_contains("rxen version")
        .assert_contains("Panic on CPU")
        .assert_not_contains("FATAL TRAP")
        .assert_crash_stop();
}

#[test]
fn grub_multiboot2_two_modules() {
    let modules = demo_modules();
    let iso = grub_iso("grub_multiboot2_two_modules", BASE_ARGS, &modules);
    let out = Qemu::new("grub_multiboot2_two_modules")
        .cdrom(&iso)
        .smp(1)
        .timeout(Duration::from_secs(120))
        .run();
    assert_came_up(&out, 1);
    out.assert_line_contains_all(&["Bootloader: GRUB 2", "(Multiboot2)"])
        .assert_contains(&format!("Command line: {BASE_ARGS}"))
        .assert_in_order(&["rxen version", "Command line:", "Module 0:", "Module 1:"]);
    for line in out.lines_containing("Command line:") {
        if line.contains("/boot/rxen") {
            out.fail("the command line still contains the image's file name");
        }
    }
    assert_demo_modules(&out);
    assert_debug_exit(&out);
}

#[test]
fn crash_on_secondary_cpu_stops_the_machine() {
    let out = boot("crash_on_secondary_cpu", "crash_test=invalid-opcode@1")
        .smp(2)
        .run();
    out.assert_contains("FATAL TRAP on CPU 1: vector = 6 (Invalid opcode)")
        .assert_contains("RIP:")
        .assert_contains("Stack trace")
        .assert_not_contains("FATAL TRAP on CPU 0")
        .assert_crash_stop();
}

#[test]
fn noreboot_keeps_the_machine_halted_after_a_crash() {
    // No isa_debug_exit: the hypervisor must halt and say so, and QEMU keeps running.
    let out = Qemu::new("noreboot_halts")
        .append("console=com1 noreboot crash_test=divide-error")
        .stop_on("Manual reset required")
        .timeout(Duration::from_secs(60))
        .run();
    out.assert_contains("FATAL TRAP on CPU 0: vector = 0 (Divide error)")
        .assert_contains("Manual reset required ('noreboot' specified)")
        .assert_status(Status::StopMarker);
}

#[test]
fn crash_without_noreboot_reboots() {
    // QEMU runs with -no-reboot, so the reboot ends it with status 0.
    let out = Qemu::new("crash_reboots")
        .append("console=com1 crash_test=general-protection")
        .timeout(Duration::from_secs(60))
        .run();
    out.assert_contains("FATAL TRAP on CPU 0: vector = 13 (General protection fault)")
        .assert_in_order(&["FATAL TRAP", "Reboot in five seconds..."])
        .assert_status(Status::Exited(0));
}

#[test]
fn cpu_without_svm_is_refused() {
    let out = boot("cpu_without_svm", "").cpu("qemu64,-svm").run();
    out.assert_contains("SVM not available: the CPU does not support AMD SVM")
        .assert_not_contains("Brought up")
        .assert_crash_stop();
}

#[test]
fn malformed_option_values_warn_and_keep_defaults() {
    let out = boot(
        "malformed_option_values",
        "com1=fast,9z9 loglvl=loud dom0_mem=lots maxcpus=many crash_test=explode",
    )
    .smp(2)
    .run();
    for option in ["com1", "loglvl", "dom0_mem", "maxcpus", "crash_test"] {
        out.assert_line_contains_all(&["Warning:", option]);
    }
    assert_came_up(&out, 2);
    out.assert_normal_stop();
}

#[test]
fn loglvl_filters_messages() {
    // "Page tables:" is an info message: hidden at Xen's default level, shown with loglvl=all.
    let quiet = Qemu::new("loglvl_default")
        .append("console=com1 isa_debug_exit")
        .run();
    quiet
        .assert_contains("Brought up 1 CPUs")
        .assert_not_contains("Page tables:")
        .assert_normal_stop();
    let loud = boot("loglvl_all", "").run();
    loud.assert_contains("Page tables:").assert_normal_stop();
}

#[test]
fn maxcpus_limits_the_cpus_brought_up() {
    let out = boot("maxcpus", "maxcpus=2")
        .smp(4)
        .timeout(Duration::from_secs(120))
        .run();
    assert_came_up(&out, 2);
    out.assert_contains("maxcpus=2: not starting APIC ID")
        .assert_normal_stop();
}

#[test]
fn grub_empty_module_is_reported_and_skipped() {
    let empty = write_module("empty-module", &[]);
    let initrd = module("grub-empty-initrd", INITRD_SIZE);
    let iso = grub_iso(
        "grub_empty_module",
        BASE_ARGS,
        &[
            (empty, "empty".to_string()),
            (initrd, INITRD_ARGS.to_string()),
        ],
    );
    let out = Qemu::new("grub_empty_module")
        .cdrom(&iso)
        .timeout(Duration::from_secs(120))
        .run();
    assert_came_up(&out, 1);
    out.assert_line_contains_all(&["Module 0:", "is empty: ignored"])
        .assert_line_contains_all(&["Module 1:", &format!("({INITRD_SIZE} bytes)")])
        .assert_not_contains("Panic on CPU");
    assert_debug_exit(&out);
}

/// The speculation mitigations in force are reported at boot as Xen reports them
/// ("Speculative mitigation facilities"), and `spec-ctrl=no` (or `spec-ctrl=rsb=no`)
/// turns them off. Under QEMU's TCG the CPU offers no IBPB/IBRS/STIBP/SSBD, so only the
/// RSB overwrite on #VMEXIT is on by default; a guest runs the same either way.
#[test]
fn spec_ctrl_mitigations_are_reported_and_can_be_turned_off() {
    for (name, args, hvm) in [
        ("spec_ctrl_default", "", "  Support for HVM VMs: RSB"),
        (
            "spec_ctrl_no",
            "spec-ctrl=no",
            "  Support for HVM VMs: None",
        ),
        (
            "spec_ctrl_rsb_no",
            "spec-ctrl=rsb=no",
            "  Support for HVM VMs: None",
        ),
    ] {
        let out = boot(name, args)
            .module(rxen_tests::guest("spec_ctrl"), "")
            .run();
        assert_came_up(&out, 1);
        out.assert_in_order(&[
            "Speculative mitigation facilities:",
            "  Hardware features: None",
            "  Xen settings: SPEC_CTRL: No, Other: None",
            hvm,
            "Brought up 1 CPUs",
        ])
        .assert_not_contains("bad value")
        .assert_contains("(d0) spec_ctrl: offered ibrs=false ibpb=false ssbd=false virt_ssbd=false")
        .assert_contains("(d0) Test result: SUCCESS")
        .assert_normal_stop();
    }
}
