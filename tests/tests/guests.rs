//! Every PVH test guest booted as dom0 on rxen: the guest's checks must all pass
//! (`Test result: SUCCESS`), and the hypervisor must report how the domain ended.
//!
//! The contract (what the real Xen does, see `xen_reference.rs`, adapted to rxen's
//! log and exit statuses, see README): rxen builds dom0 from module 0 as Xen builds a
//! PVH dom0, prints dom0's console output with a `(d0) ` prefix, logs
//! `d0: shut down (<reason>)` when the domain ends, rebuilds it on reboot
//! (`d0: rebooting`), and when the last domain has ended leaves QEMU through
//! isa-debug-exit: 0x10 after a poweroff, 0x12 after any other end (a guest crash is
//! not a hypervisor crash, 0x11).
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! guests`.

mod guest_cases;

use std::time::Duration;

use guest_cases::{find, initrd_module, End, INITRD_ARGS};
use rxen_tests::{guest, Outcome, Qemu, Status};

/// isa-debug-exit value when the last domain ended other than by poweroff.
const EXIT_DOMAIN_END: u8 = 0x12;

/// Hypervisor arguments of every guest run.
const APPEND: &str = "console=com1 loglvl=all isa_debug_exit dom0_mem=64M";

/// Boots the guest `name` as dom0 on rxen and checks how it ended.
fn run(name: &str) -> Outcome {
    run_on(name, 1)
}

/// As [`run`], on a machine with `cpus` physical CPUs.
fn run_on(name: &str, cpus: u32) -> Outcome {
    let case = find(name);
    let mut q = Qemu::new(&format!("guest-{name}-smp{cpus}"))
        .smp(cpus)
        .append(APPEND)
        .timeout(Duration::from_secs(120))
        .module(guest(name), case.args);
    if case.initrd {
        q = q.module(initrd_module(), INITRD_ARGS);
    }
    // A rebooted dom0 is rebuilt and runs again: stop at the rebuild.
    let reboots = matches!(case.end, End::Shutdown("reboot") | End::TripleFault);
    if reboots {
        q = q.stop_on("d0: rebooting");
    }
    let out = q.run();
    out.assert_not_contains("FATAL TRAP")
        .assert_not_contains("(d0) FAIL ")
        .assert_not_contains("(d0) EXCEPTION")
        .assert_not_contains("(d0) PANIC");
    match case.end {
        End::Success | End::Shutdown("poweroff") => {
            out.assert_contains("(d0) Test result: SUCCESS")
                .assert_contains("d0: shut down (poweroff)")
                .assert_normal_stop();
        }
        End::Shutdown(reason) => {
            out.assert_contains("(d0) Test result: SUCCESS")
                .assert_contains(&format!("d0: shut down ({reason})"));
        }
        End::TripleFault => {
            // Xen: "d0v0 Triple fault - invoking HVM shutdown action 1", i.e. the
            // domain is shut down as `reboot` (HVM_PARAM_TRIPLE_FAULT_REASON's default),
            // not crashed.
            out.assert_contains("(d0) triple_fault: loading an empty IDT")
                .assert_line_contains_all(&["d0", "riple fault"])
                // The report shows the descriptor tables and the gate of the
                // event whose delivery failed (#UD, in the empty IDT).
                .assert_line_contains_all(&["d0v0: GDTR ", " IDTR 0x0/0x0 TR "])
                .assert_contains("d0v0: IDT gate 0x6 at 0x60: ")
                .assert_contains("d0: shut down (reboot)")
                .assert_not_contains("Test result:");
        }
    }
    if reboots {
        out.assert_status(Status::StopMarker);
    } else if case.end == End::Shutdown("crash") {
        out.assert_status(Status::DebugExit(EXIT_DOMAIN_END));
    }
    out
}

/// The same guests on two physical CPUs (dom0 on the boot CPU, the other idle):
/// time, hypercalls and the life cycle must not depend on the CPU count.
#[test]
fn on_two_physical_cpus() {
    for name in [
        "xen_version",
        "pvclock",
        "vcpu_op",
        "shutdown_crash",
        "bad_memory",
    ] {
        run_on(name, 2).assert_contains("Brought up 2 CPUs");
    }
}

/// `dom0_max_vcpus=` sizes dom0 (vCPU 0 runs; the others wait for VCPUOP_up), capped
/// by the CPUs there are.
#[test]
fn dom0_max_vcpus_sizes_dom0() {
    let out = Qemu::new("guest-dom0_max_vcpus")
        .smp(2)
        .append(APPEND)
        .append("dom0_max_vcpus=1-4")
        .module(guest("xen_version"), "")
        .run();
    out.assert_line_contains_all(&["d0: PVH domain: 64 MiB", "2 vCPU(s)"])
        .assert_contains("(d0) Test result: SUCCESS")
        .assert_normal_stop();
}

/// INIT/SIPI of a vCPU whose saved FPU image has AVX state (issue 14, defect 6): the
/// vCPU restarts in real mode with XCR0 = x87 and runs; before the fix the hypervisor's
/// XRSTOR of the old image faulted (a host crash). dom0 with two vCPUs on two CPUs.
#[test]
fn init_sipi_xsave() {
    let out = Qemu::new("guest-init_sipi_xsave")
        .smp(2)
        .append(APPEND)
        .append("dom0_max_vcpus=2")
        .timeout(Duration::from_secs(120))
        .module(guest("init_sipi_xsave"), "")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_not_contains("(d0) FAIL ")
        .assert_line_contains_all(&["d0: PVH domain: 64 MiB", "2 vCPU(s)"])
        .assert_contains("d0v1: started by v0 in real mode at 0x8000")
        .assert_contains("(d0) init_sipi_xsave: vCPU 1 restarted in real mode and halted")
        .assert_contains("(d0) Test result: SUCCESS")
        .assert_normal_stop();
}

/// x2APIC IPIs between dom0's two vCPUs (physical and logical destinations, each
/// delivered once) and a race of IPIs against mode changes, the vCPUs on two physical
/// CPUs (`xen_reference::x2apic_between_two_vcpus` runs it on Xen).
#[test]
fn x2apic_between_two_vcpus() {
    let out = Qemu::new("guest-x2apic-2vcpus")
        .smp(2)
        .append(APPEND)
        .append("dom0_max_vcpus=2")
        .timeout(Duration::from_secs(120))
        .module(guest("x2apic"), "")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_not_contains("(d0) FAIL ")
        .assert_line_contains_all(&["d0: PVH domain: 64 MiB", "2 vCPU(s)"])
        .assert_contains("(d0) x2apic: vCPU 1 has x2APIC ID 0x1")
        .assert_line_contains_all(&["(d0) x2apic: ", "IPIs sent during 50 mode cycles"])
        .assert_contains("(d0) Test result: SUCCESS")
        .assert_normal_stop();
}

/// The platform_op guest as an unprivileged domain: platform_op is `-EPERM`, the PCI
/// reports of physdev_op `-ENOSYS`, and the wall clock does not move.
#[test]
fn platform_op_from_a_domu() {
    let out = Qemu::new("guest-platform_op-domu")
        .append(APPEND)
        .append("dom0less domu=0")
        .module(guest("platform_op"), "")
        .run();
    out.assert_not_contains("(d1) FAIL ")
        .assert_contains("(d1) control domain: false")
        .assert_contains("(d1) Test result: SUCCESS")
        .assert_contains("d1: shut down (poweroff)");
}

#[test]
fn every_guest_has_a_case() {
    guest_cases::assert_all_listed();
}

macro_rules! guest_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

guest_tests!(
    dom0_acpi,
    start_info,
    xen_version,
    console_io,
    cpuid,
    hypercall_page,
    sched_op,
    memory_op,
    shared_info,
    hvm_op,
    platform_op,
    domctl,
    vcpu_op,
    timers,
    event_channel_bad_input,
    evtchn_fifo,
    evtchn_reset,
    multicall,
    pvclock,
    bad_input,
    ring3,
    lapic,
    x2apic,
    bad_memory,
    ctrl_regs,
    spec_ctrl,
    amd_msrs,
    shutdown_poweroff,
    shutdown_reboot,
    shutdown_crash,
    shutdown_code,
    triple_fault,
);
