//! `HYPERVISOR_platform_op` and `HYPERVISOR_physdev_op` as the control domain issues
//! them (Linux's PVH dom0: `XENPF_settime64`, `XENPF_get_cpuinfo`,
//! `XENPF_firmware_info`, the PCI reports), with bad arguments; and what an
//! unprivileged domain gets (`-EPERM`, `-ENOSYS`), so the guest is meaningful as dom0
//! and as a domU.
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use core::ptr::{addr_of, read_volatile};

use rxen_guest::abi::physdev::*;
use rxen_guest::abi::platform::*;
use rxen_guest::abi::start_info::SIF_INITDOMAIN;
use rxen_guest::abi::xen::{HYPERVISOR_PHYSDEV_OP, HYPERVISOR_PLATFORM_OP};
use rxen_guest::hypercall::{hypercall, mut_ptr, ptr};
use rxen_guest::time::{map_shared_info, shared_info};
use rxen_guest::{check_eq, err, println, StartInfo};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// `-ENODEV` and `-EACCES` as hypercall returns.
const ENODEV: i64 = rxen_guest::abi::errno::ENODEV.to_hypercall_ret();
const EACCES: i64 = rxen_guest::abi::errno::EACCES.to_hypercall_ret();

rxen_guest::entry!(main);

/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn platform_op(op: &mut XenPlatformOp) -> i64 {
    // SAFETY: the argument is a live, writable `xen_platform_op`.
    unsafe { hypercall(HYPERVISOR_PLATFORM_OP, mut_ptr(op), 0, 0, 0, 0) }
}

fn physdev_op<T>(cmd: u32, arg: &T) -> i64 {
    // SAFETY: the argument is a live structure of the sub-op's type.
    unsafe { hypercall(HYPERVISOR_PHYSDEV_OP, u64::from(cmd), ptr(arg), 0, 0, 0) }
}

fn op(cmd: u32, arg: &[u8]) -> XenPlatformOp {
    let mut op = XenPlatformOp::new_zeroed();
    op.cmd = cmd;
    op.interface_version = XENPF_INTERFACE_VERSION;
    op.u[..arg.len()].copy_from_slice(arg);
    op
}

/// The wall clock in the shared-info page: (seconds, nanoseconds).
fn wallclock() -> (u64, u32) {
    let si = shared_info();
    // SAFETY: the page is mapped; fields read volatile as the hypervisor writes them.
    unsafe {
        let sec = read_volatile(addr_of!((*si).wc_sec));
        let hi = read_volatile(addr_of!((*si).wc_sec_hi));
        let nsec = read_volatile(addr_of!((*si).wc_nsec));
        ((u64::from(hi) << 32) | u64::from(sec), nsec)
    }
}

fn settime(secs: u64, nsecs: u32, mbz: u32, system_time: u64) -> i64 {
    let t = XenpfSettime64 {
        secs,
        nsecs,
        mbz,
        system_time,
    };
    platform_op(&mut op(XENPF_SETTIME64, t.as_bytes()))
}

fn main(si: &StartInfo) {
    check_eq!(map_shared_info(), 0, "add_to_physmap shared_info");
    let dom0 = si.flags() & SIF_INITDOMAIN != 0;
    println!("control domain: {dom0}");
    let before = wallclock();
    let mut cpu0 = op(XENPF_GET_CPUINFO, XenpfPcpuinfo::default().as_bytes());
    let add = PhysdevPciDeviceAdd {
        devfn: 0x08,
        ..Default::default()
    };
    if !dom0 {
        check_eq!(settime(1, 0, 0, 0), err::EPERM, "settime64 from a domU");
        check_eq!(
            platform_op(&mut cpu0),
            err::EPERM,
            "get_cpuinfo from a domU"
        );
        check_eq!(wallclock(), before, "the wall clock is unchanged");
        check_eq!(
            physdev_op(PHYSDEVOP_PCI_DEVICE_ADD, &add),
            err::ENOSYS,
            "pci_device_add from a domU"
        );
        return;
    }

    // XENPF_settime64: the wall clock reads 2030-03-17 at system time 0.
    check_eq!(settime(1_900_000_000, 250, 0, 0), 0, "settime64");
    check_eq!(wallclock(), (1_900_000_000, 250), "the new wall clock");
    // With a system time: the base is what the clock read at system time 0.
    check_eq!(
        settime(1_900_000_010, 0, 0, 4_000_000_000),
        0,
        "settime64 at 4 s"
    );
    check_eq!(wallclock(), (1_900_000_006, 0), "base moved back 4 s");
    // XENPF_settime32 too.
    let t32 = XenpfSettime32 {
        secs: 2_000_000_000,
        nsecs: 7,
        system_time: 0,
    };
    check_eq!(
        platform_op(&mut op(XENPF_SETTIME32, t32.as_bytes())),
        0,
        "settime32"
    );
    check_eq!(wallclock(), (2_000_000_000, 7), "settime32's clock");
    // Bad ones change nothing.
    check_eq!(settime(5, 0, 1, 0), err::EINVAL, "settime64 with mbz set");
    // (A time before the epoch is -EINVAL on rxen; Xen 4.17 computes it modulo 2^64:
    // host-tested in rxen-core, not checked here, where both must pass.)
    let mut old = op(XENPF_SETTIME64, &[]);
    old.interface_version = 0x0300_0000;
    check_eq!(platform_op(&mut old), EACCES, "old interface version");
    // SAFETY: an unmapped argument; the hypervisor must fault it.
    let rc = unsafe { hypercall(HYPERVISOR_PLATFORM_OP, UNMAPPED, 0, 0, 0, 0) };
    check_eq!(rc, err::EFAULT, "unmapped platform_op");
    check_eq!(wallclock(), (2_000_000_000, 7), "still settime32's clock");
    // Put the real time back (the RTC's, as read at boot).
    check_eq!(settime(before.0, before.1, 0, 0), 0, "settime64 back");

    // XENPF_get_cpuinfo: CPU 0 is online; a CPU that is not there is flagged.
    check_eq!(platform_op(&mut cpu0), 0, "get_cpuinfo(0)");
    let info = XenpfPcpuinfo::read_from_prefix(&cpu0.u)
        .map(|(i, _)| i)
        .unwrap_or_default();
    println!("cpu 0: {info:?}");
    check_eq!(info.flags, XEN_PCPU_FLAGS_ONLINE, "cpu 0 online");
    let mut far = op(
        XENPF_GET_CPUINFO,
        XenpfPcpuinfo {
            xen_cpuid: 4096,
            ..Default::default()
        }
        .as_bytes(),
    );
    check_eq!(platform_op(&mut far), 0, "get_cpuinfo(4096)");
    let info = XenpfPcpuinfo::read_from_prefix(&far.u)
        .map(|(i, _)| i)
        .unwrap_or_default();
    check_eq!(info.flags, XEN_PCPU_FLAGS_INVALID, "cpu 4096 invalid");

    // XENPF_firmware_info: not booted through EFI.
    let efi = XenpfFirmwareInfo {
        type_: XEN_FW_EFI_INFO,
        index: 0,
    };
    check_eq!(
        platform_op(&mut op(XENPF_FIRMWARE_INFO, efi.as_bytes())),
        err::ENOSYS,
        "firmware_info EFI"
    );
    check_eq!(
        platform_op(&mut op(XENPF_GET_DOM0_CONSOLE, &[])),
        err::ENOSYS,
        "get_dom0_console (not in 4.17)"
    );

    // physdev_op: the PCI reports.
    check_eq!(
        physdev_op(PHYSDEVOP_PCI_DEVICE_ADD, &add),
        0,
        "pci_device_add 00:01.0"
    );
    check_eq!(physdev_op(PHYSDEVOP_PCI_DEVICE_ADD, &add), 0, "again");
    let dev = PhysdevPciDevice {
        seg: 0,
        bus: 0,
        devfn: 0x08,
    };
    check_eq!(
        physdev_op(PHYSDEVOP_PCI_DEVICE_REMOVE, &dev),
        0,
        "pci_device_remove"
    );
    check_eq!(
        physdev_op(PHYSDEVOP_PCI_DEVICE_REMOVE, &dev),
        ENODEV,
        "remove it twice"
    );
    // (A segment the firmware does not describe is -ENODEV on rxen, which keeps one
    // bitmap per MCFG segment; Xen 4.17 allocates it: host-tested in rxen-core.)
    let bad = PhysdevPciMmcfgReserved {
        flags: 0x80,
        ..Default::default()
    };
    check_eq!(
        physdev_op(PHYSDEVOP_PCI_MMCFG_RESERVED, &bad),
        err::EINVAL,
        "mmcfg_reserved with unknown flags"
    );
    check_eq!(
        physdev_op(PHYSDEVOP_MAP_PIRQ, &add),
        err::ENOSYS,
        "no PIRQs for PVH"
    );
    // SAFETY: an unmapped argument; the hypervisor must fault it.
    let rc = unsafe {
        hypercall(
            HYPERVISOR_PHYSDEV_OP,
            u64::from(PHYSDEVOP_PCI_DEVICE_ADD),
            UNMAPPED,
            0,
            0,
            0,
        )
    };
    check_eq!(rc, err::EFAULT, "unmapped pci_device_add");
}
