//! The PVH test guests (`guests/tests/src/bin/`) and how each run must end, shared by
//! `guests.rs` (on rxen) and `xen_reference.rs` (on the real Xen 4.17).
#![allow(dead_code)] // each test binary uses part of this module

use std::path::PathBuf;

use rxen_tests::write_module;

/// How a guest's run must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The guest prints `Test result: SUCCESS` and powers off.
    Success,
    /// The guest prints `Test result: SUCCESS` and then shuts down with this reason
    /// (`poweroff`, `reboot`, `crash`), which the hypervisor must report.
    Shutdown(&'static str),
    /// The guest triple-faults: the hypervisor reports it and, as Xen does (HVM
    /// shutdown action for a triple fault: `SHUTDOWN_reboot`), ends the domain as
    /// `reboot`.
    TripleFault,
}

/// One test guest.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The binary's name.
    pub name: &'static str,
    /// The guest's command line.
    pub args: &'static str,
    /// Whether it gets the second module (see [`initrd_module`]).
    pub initrd: bool,
    /// How it ends.
    pub end: End,
}

const fn case(name: &'static str) -> Case {
    Case {
        name,
        args: "",
        initrd: false,
        end: End::Success,
    }
}

/// Every test guest.
pub const CASES: &[Case] = &[
    Case {
        args: "rxen-test cmdline=ok",
        initrd: true,
        ..case("start_info")
    },
    case("xen_version"),
    case("console_io"),
    case("cpuid"),
    case("hypercall_page"),
    case("sched_op"),
    case("memory_op"),
    case("shared_info"),
    case("hvm_op"),
    case("platform_op"),
    Case {
        args: "role=dom0 alone=1",
        ..case("domctl")
    },
    case("vcpu_op"),
    case("timers"),
    case("multicall"),
    case("pvclock"),
    case("bad_input"),
    case("event_channel_bad_input"),
    case("evtchn_fifo"),
    case("evtchn_reset"),
    case("dom0_acpi"),
    case("ring3"),
    case("lapic"),
    case("x2apic"),
    case("bad_memory"),
    case("ctrl_regs"),
    Case {
        // Xen 4.17.5 under TCG crashes when a guest sets VIRT_SPEC_CTRL.SSBD (see the
        // guest); rxen offers VIRT_SSBD only where the CPU has SSBD.
        args: "virt_ssbd_set=no",
        ..case("spec_ctrl")
    },
    case("amd_msrs"),
    Case {
        end: End::Shutdown("poweroff"),
        ..case("shutdown_poweroff")
    },
    Case {
        end: End::Shutdown("reboot"),
        ..case("shutdown_reboot")
    },
    Case {
        end: End::Shutdown("crash"),
        ..case("shutdown_crash")
    },
    // SCHEDOP_shutdown_code(reboot) then poweroff: ends as reboot.
    Case {
        end: End::Shutdown("reboot"),
        ..case("shutdown_code")
    },
    Case {
        end: End::TripleFault,
        ..case("triple_fault")
    },
];

/// The case called `name`.
///
/// # Panics
/// If there is none.
pub fn find(name: &str) -> Case {
    *CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no guest case {name}"))
}

/// The second module of `start_info`: 4096 + 123 bytes starting `RXEN-TEST-MODULE`.
pub fn initrd_module() -> PathBuf {
    let mut data = b"RXEN-TEST-MODULE".to_vec();
    data.resize(4096 + 123, 0x5a);
    write_module("guest-initrd", &data)
}

/// The command line of the second module.
pub const INITRD_ARGS: &str = "initrd-arg";

/// Guests that need several domains (a peer, or other domains to compete with) and a
/// command line, or (`smp_ipi`, `init_sipi_xsave`) a second vCPU and `VCPUOP_initialise`, or (`domu_acpi`,
/// in `tests/domains.rs`; `console_ring`, `xs_ring`; `blk_hostile`, with disks from dom0's blkback, in
/// `tests/hostile_frontends.rs`) to be a domU, or (`dombuild`) another guest to start; their own
/// tests run them, not this single-dom0 suite.
pub const MULTI_DOMAIN: &[&str] = &[
    "evtchn_pingpong",
    "evtchn_deaf",
    "cpu_hog",
    "idle",
    "timer_spin",
    "rt_periodic",
    "smp_ipi",
    "grant_share",
    "grant_bench",
    "grant_hostile",
    "dom_exc",
    "fpu_switch",
    "domu_acpi",
    "hostile_bounded",
    "paging_pool",
    "init_sipi_xsave",
    "fuzz",
    "debug_regs",
    "dombuild",
    "console_ring",
    "xs_ring",
    "blk_hostile",
];

/// Every test binary in `guests/tests/src/bin` has a case (so a new guest is not
/// forgotten); benchmark guests (`bench_*`) and [`MULTI_DOMAIN`] guests are not tests
/// here.
pub fn assert_all_listed() {
    let dir = rxen_tests::workspace_root().join("guests/tests/src/bin");
    for entry in std::fs::read_dir(&dir).expect("guests/tests/src/bin") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name.starts_with("bench_") || MULTI_DOMAIN.contains(&name.as_str()) {
                continue;
            }
            assert!(
                CASES.iter().any(|c| c.name == name),
                "guest {name} has no case in tests/tests/guest_cases"
            );
        }
    }
}
