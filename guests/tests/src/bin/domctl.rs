//! `domctl` and `sysctl` as Xen 4.17 serves them to the control domain (issue 13).
//! Command line: `role=dom0` (the default) or `role=domu`.
//!
//! As dom0, beside a domU started as `role=domu` (domain 1): a wrong interface
//! version is `-EACCES`; `physinfo`, `sched_id` and `getdomaininfolist` describe the
//! machine and both domains; `getdomaininfo` answers the next domain up and `-ESRCH`
//! past the last; pausing the domU stops its CPU time (and shows `paused`),
//! unpausing lets it run again; `max_mem` and `setdomainhandle` show in its info;
//! `destroydomain` makes it disappear. Before that, vCPU affinity on the two CPUs:
//! `SCHEDOP_pin_override` of its own vCPU (it then runs on that CPU; `-EBUSY` for a
//! second pin and for `setvcpuaffinity` unless forced; undone, the affinity before
//! is back) and `setvcpuaffinity` of its own and the domU's vCPU (each then runs
//! where it is pinned). Bad input: unpausing what is not paused,
//! pausing or destroying itself, an unknown command, an unmapped argument.
//!
//! With `alone=1` (dom0 with no other domain; also run on Xen 4.17 as the reference):
//! what needs no domU — the version, privilege and lookup answers, `physinfo`,
//! `sched_id` (credit, credit2 or RTDS), a list of one with dom0's own flags.
//!
//! Both ways, `gethvmcontext` and `sethvmcontext` of a domain created for it, as
//! libxc's `vcpu_hvm` starts a PVH domain: the size, `-ENOSPC` for a small buffer, the
//! records (HEADER, a CPU record per vCPU up, an MTRR record per vCPU, END; Xen has
//! more that rxen does not model), bad contexts refused, a libxc-shaped context that
//! brings vCPU 0 up at its entry, read back. The domain is destroyed, never unpaused.
//!
//! As a domU: every domctl and sysctl is `-EPERM` (after `-EACCES` for a wrong
//! version), and `SCHEDOP_pin_override` too, then it spins, printing nothing, until dom0 destroys it (an error
//! after 60 s).
#![no_main]
#![cfg_attr(target_os = "none", no_std)]

use rxen_guest::abi::domctl::*;
use rxen_guest::abi::hvm_save::*;
use rxen_guest::abi::sysctl::*;
use rxen_guest::abi::xen::{HYPERVISOR_DOMCTL, HYPERVISOR_SYSCTL};
use rxen_guest::control::{self, domctl, dop, info, max_vcpus, simple};
use rxen_guest::hypercall::{hypercall, mut_ptr};
use rxen_guest::time::{map_shared_info, now};
use rxen_guest::{check, check_eq, err, error, println, StartInfo};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

rxen_guest::entry!(main);

const EACCES: i64 = rxen_guest::abi::errno::EACCES.to_hypercall_ret();
const ESRCH: i64 = rxen_guest::abi::errno::ESRCH.to_hypercall_ret();
const EEXIST: i64 = rxen_guest::abi::errno::EEXIST.to_hypercall_ret();
const ENOENT: i64 = rxen_guest::abi::errno::ENOENT.to_hypercall_ret();
const ENODATA: i64 = rxen_guest::abi::errno::ENODATA.to_hypercall_ret();
/// An address no page table maps.
const UNMAPPED: u64 = 0x10_0000_0000;

fn sysctl(op: &mut XenSysctl) -> i64 {
    // SAFETY: the argument is a live, writable `xen_sysctl`.
    unsafe { hypercall(HYPERVISOR_SYSCTL, mut_ptr(op), 0, 0, 0, 0) }
}

fn sop(cmd: u32, arg: &[u8]) -> XenSysctl {
    let mut op = XenSysctl::new_zeroed();
    op.cmd = cmd;
    op.interface_version = XEN_SYSCTL_INTERFACE_VERSION;
    op.u[..arg.len()].copy_from_slice(arg);
    op
}

/// Spins until `ms` milliseconds of system time passed.
fn spin_ms(ms: u64) {
    let until = now() + ms * 1_000_000;
    while now() < until {
        core::hint::spin_loop();
    }
}

/// The domU's CPU time.
fn cpu_time(domain: u16) -> u64 {
    match info(domain) {
        Ok(i) if i.domain == domain => i.cpu_time,
        other => error!("getdomaininfo({domain}): {other:?}"),
    }
}

fn main(si: &StartInfo) {
    if map_shared_info() != 0 {
        error!("cannot map shared info");
    }
    match si.arg_value("role").unwrap_or("dom0") {
        "domu" => domu(),
        _ => dom0(si),
    }
}

fn domu() {
    let mut bad = dop(XEN_DOMCTL_GETDOMAININFO, 0, &[]);
    bad.interface_version = 0x14;
    check_eq!(domctl(&mut bad), EACCES, "domctl, wrong version");
    for cmd in [
        XEN_DOMCTL_GETDOMAININFO,
        XEN_DOMCTL_PAUSEDOMAIN,
        XEN_DOMCTL_DESTROYDOMAIN,
        XEN_DOMCTL_MAX_MEM,
    ] {
        check_eq!(simple(cmd, 0), err::EPERM, "domctl {cmd} from a domU");
    }
    for cmd in [XEN_SYSCTL_PHYSINFO, XEN_SYSCTL_GETDOMAININFOLIST] {
        check_eq!(
            sysctl(&mut sop(cmd, &[])),
            err::EPERM,
            "sysctl {cmd} from a domU"
        );
    }
    check_eq!(
        pin_override(0),
        err::EPERM,
        "SCHEDOP_pin_override from a domU"
    );
    println!("domctl: domU refused; spinning until destroyed");
    // Not for ever: a dom0 that failed would leave the machine running.
    spin_ms(60_000);
    error!("not destroyed within 60 s");
}

fn dom0(si: &StartInfo) {
    // Version first, then the rest.
    let mut bad = sop(XEN_SYSCTL_PHYSINFO, &[]);
    bad.interface_version = 0x14;
    check_eq!(sysctl(&mut bad), EACCES, "sysctl, wrong version");
    let mut bad = dop(XEN_DOMCTL_GETDOMAININFO, 0, &[]);
    bad.interface_version = 0x16;
    check_eq!(domctl(&mut bad), EACCES, "domctl, wrong version");
    check_eq!(
        // SAFETY: an unmapped argument; the hypervisor must refuse it.
        unsafe { hypercall(HYPERVISOR_DOMCTL, UNMAPPED, 0, 0, 0, 0) },
        err::EFAULT,
        "domctl at an unmapped address"
    );
    check_eq!(simple(999, 0), err::ENOSYS, "an unknown domctl on itself");
    check_eq!(
        simple(999, 7),
        ESRCH,
        "an unknown domctl on nobody: the target is looked up first"
    );
    check_eq!(
        simple(XEN_DOMCTL_PAUSEDOMAIN, 0),
        err::EINVAL,
        "pause itself"
    );
    check_eq!(
        simple(XEN_DOMCTL_UNPAUSEDOMAIN, 0),
        err::EINVAL,
        "unpause itself, not paused"
    );
    check_eq!(simple(XEN_DOMCTL_PAUSEDOMAIN, 7), ESRCH, "pause nobody");
    let alone = si.arg_u64("alone") == Some(1);
    let list = machine_checks(if alone { 1 } else { 2 });
    let d0 = list[0];
    println!(
        "domctl: d0: flags {:#x}, {} vCPU(s), emulation {:#x}, gpaddr_bits {}",
        d0.flags, d0.nr_online_vcpus, d0.arch_config.emulation_flags, d0.gpaddr_bits
    );
    check_eq!(d0.domain, 0, "dom0 first");
    check_eq!(
        d0.flags >> XEN_DOMINF_SHUTDOWNSHIFT,
        0xFFFF,
        "no shutdown code: Xen's ~0 in bits 16-31"
    );
    check!(
        d0.flags & XEN_DOMINF_RUNNING != 0 && d0.flags & XEN_DOMINF_HVM_GUEST != 0,
        "dom0 runs (it is the caller), HVM"
    );
    check_eq!(
        d0.arch_config.emulation_flags,
        XEN_X86_EMU_LAPIC | XEN_X86_EMU_IOAPIC | XEN_X86_EMU_VPCI,
        "a PVH dom0's emulation flags"
    );
    own_vcpu_and_scheduler();
    if alone {
        check_eq!(info(1).map(|i| i.domain), Err(ESRCH), "none past dom0");
        hvm_context();
        println!("domctl: done");
        return;
    }
    let d1 = list[1];
    check_eq!(d1.domain, 1, "then the domU");
    check_eq!(
        d1.arch_config.emulation_flags,
        XEN_X86_EMU_LAPIC,
        "a PVH domU: an emulated local APIC only"
    );
    println!(
        "domctl: d1 has {} pages (max {}), {} vCPU(s), flags {:#x}",
        d1.tot_pages, d1.max_pages, d1.nr_online_vcpus, d1.flags
    );
    pinning();
    control_domu();
}

/// `SCHEDOP_pin_override` of dom0's own vCPU (Xen's temporary pin) on `pcpu`, -1
/// to undo.
fn pin_override(pcpu: i32) -> i64 {
    let mut request = rxen_guest::abi::sched::SchedPinOverride { pcpu };
    // SAFETY: the argument is a live `sched_pin_override`.
    unsafe {
        hypercall(
            rxen_guest::abi::xen::HYPERVISOR_SCHED_OP,
            u64::from(rxen_guest::abi::sched::SCHEDOP_PIN_OVERRIDE),
            mut_ptr(&mut request),
            0,
            0,
            0,
        )
    }
}

/// `setvcpuaffinity` (`set`) or `getvcpuaffinity` of `domain`'s `vcpu` with
/// `flags` and one-byte maps (`hard`, `soft`): the maps after the call.
fn vcpu_affinity(
    domain: u16,
    vcpu: u32,
    set: bool,
    flags: u32,
    mut maps: [u8; 2],
) -> Result<[u8; 2], i64> {
    let map = |byte: &mut u8| XenctlBitmap {
        bitmap: mut_ptr(byte),
        nr_bits: 8,
        pad: 0,
    };
    let [hard, soft] = &mut maps;
    let request = XenDomctlVcpuaffinity {
        vcpu,
        flags,
        cpumap_hard: map(hard),
        cpumap_soft: map(soft),
    };
    let cmd = if set {
        XEN_DOMCTL_SETVCPUAFFINITY
    } else {
        XEN_DOMCTL_GETVCPUAFFINITY
    };
    match domctl(&mut dop(cmd, domain, request.as_bytes())) {
        0 => Ok(maps),
        e => Err(e),
    }
}

/// vCPU affinity on two CPUs: dom0 pins itself with `SCHEDOP_pin_override` (it then
/// runs on that CPU; a second pin is `-EBUSY`, so is its toolstack's re-pinning
/// unless forced; undone, the affinity before is back) and with
/// `setvcpuaffinity`; the domU's vCPU pinned to a CPU runs there.
fn pinning() {
    const BOTH: u32 = XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT;
    let get = |domain: u16| vcpu_affinity(domain, 0, false, BOTH, [0xEE; 2]);
    let cpu = |domain: u16| vcpu_info(domain, 0).map(|v| v.cpu);
    check_eq!(get(0), Ok([0b11, 0b11]), "dom0's vCPU 0: every CPU");
    check_eq!(pin_override(1), 0, "pin_override to CPU 1");
    check_eq!(
        cpu(0),
        Ok(1),
        "dom0's vCPU 0 runs on CPU 1 once pinned there"
    );
    check_eq!(get(0), Ok([0b10, 0b11]), "the pin is the hard affinity");
    check_eq!(pin_override(0), err::EBUSY, "a second pin_override");
    check_eq!(
        vcpu_affinity(0, 0, true, XEN_VCPUAFFINITY_HARD, [0b01, 0]),
        Err(err::EBUSY),
        "setvcpuaffinity while pinned"
    );
    check_eq!(pin_override(-1), 0, "pin_override undone");
    check_eq!(get(0), Ok([0b11, 0b11]), "the affinity before the pin");
    check_eq!(pin_override(-1), err::EINVAL, "undo with no pin");
    check_eq!(
        pin_override(2),
        err::EINVAL,
        "pin_override to a CPU not there"
    );
    check_eq!(pin_override(1), 0, "pin_override to CPU 1 again");
    check_eq!(
        vcpu_affinity(
            0,
            0,
            true,
            XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_FORCE,
            [0b01, 0]
        ),
        Ok([0b01, 0]),
        "forced setvcpuaffinity to CPU 0 (the pin undone)"
    );
    check_eq!(cpu(0), Ok(0), "dom0's vCPU 0 back on CPU 0");
    check_eq!(pin_override(-1), err::EINVAL, "the forced pin is gone");
    check_eq!(
        vcpu_affinity(0, 0, true, XEN_VCPUAFFINITY_HARD, [0b100, 0]),
        Err(err::EINVAL),
        "a hard affinity with no CPU of the machine"
    );
    check_eq!(
        vcpu_affinity(0, 0, true, XEN_VCPUAFFINITY_HARD, [0b11, 0]),
        Ok([0b11, 0]),
        "dom0 anywhere again"
    );
    // The spinning domU, pinned to one CPU then the other, runs there.
    for (mask, want) in [(0b10u8, 1u32), (0b01, 0)] {
        check_eq!(
            vcpu_affinity(1, 0, true, XEN_VCPUAFFINITY_HARD, [mask, 0]),
            Ok([mask, 0]),
            "the domU pinned"
        );
        spin_ms(50);
        check_eq!(cpu(1), Ok(want), "the domU on the CPU it is pinned to");
    }
    check_eq!(
        vcpu_affinity(1, 0, true, XEN_VCPUAFFINITY_HARD, [0b11, 0]),
        Ok([0b11, 0]),
        "the domU anywhere again"
    );
    println!("domctl: pinning done");
}

/// The running scheduler's id.
fn sched_id() -> u32 {
    let mut op = sop(XEN_SYSCTL_SCHED_ID, &[]);
    check_eq!(sysctl(&mut op), 0, "sched_id");
    u32::from_le_bytes(op.u[..4].try_into().unwrap())
}

/// `scheduler_op` `cmd` on `domain` with `params`: the answer's parameters.
fn sched_op(domain: u16, cmd: u32, params: &[u8]) -> Result<[u8; 16], i64> {
    let mut s = XenDomctlSchedulerOp {
        sched_id: sched_id(),
        cmd,
        u: [0; 16],
    };
    s.u[..params.len()].copy_from_slice(params);
    let mut op = dop(XEN_DOMCTL_SCHEDULER_OP, domain, s.as_bytes());
    match domctl(&mut op) {
        0 => Ok(XenDomctlSchedulerOp::read_from_prefix(&op.u).unwrap().0.u),
        e => Err(e),
    }
}

/// `getvcpuinfo` of `domain`'s `vcpu`.
fn vcpu_info(domain: u16, vcpu: u32) -> Result<XenDomctlGetvcpuinfo, i64> {
    let mut op = dop(XEN_DOMCTL_GETVCPUINFO, domain, &vcpu.to_le_bytes());
    match domctl(&mut op) {
        0 => Ok(XenDomctlGetvcpuinfo::read_from_prefix(&op.u).unwrap().0),
        e => Err(e),
    }
}

/// dom0's own vCPU and scheduling parameters (the same on Xen's credit2: weight
/// and cap have credit's layout).
fn own_vcpu_and_scheduler() {
    match vcpu_info(0, 0) {
        Ok(v) => {
            println!(
                "domctl: d0v0: online {} running {} cpu {} cpu_time {}",
                v.online, v.running, v.cpu, v.cpu_time
            );
            check!(
                v.online == 1 && v.running == 1 && v.cpu_time > 0,
                "dom0's vCPU 0 runs"
            );
        }
        Err(e) => error!("getvcpuinfo(0, 0): {e}"),
    }
    check_eq!(
        vcpu_info(0, 1).map(|v| v.vcpu),
        Err(err::EINVAL),
        "no vCPU 1"
    );
    match sched_op(0, XEN_DOMCTL_SCHEDOP_GETINFO, &[]) {
        Ok(u) => {
            let weight_cap = (
                u16::from_le_bytes([u[0], u[1]]),
                u16::from_le_bytes([u[2], u[3]]),
            );
            check_eq!(weight_cap, (256, 0), "dom0's weight and cap: the defaults");
        }
        Err(e) => error!("scheduler_op getinfo: {e}"),
    }
    let mut wrong = XenDomctlSchedulerOp {
        sched_id: 99,
        cmd: XEN_DOMCTL_SCHEDOP_GETINFO,
        u: [0; 16],
    };
    wrong.sched_id = if sched_id() == 8 { 5 } else { 8 };
    check_eq!(
        domctl(&mut dop(XEN_DOMCTL_SCHEDULER_OP, 0, wrong.as_bytes())),
        err::EINVAL,
        "scheduler_op naming another scheduler"
    );
}

/// Pool-0 as `xen-init-dom0` asks for it (`cpupool_op INFO(0)`, then `INFO(1)`):
/// every CPU in it, `nr_cpus` of them, and `domains` domains.
fn cpupool(nr_cpus: u32, domains: u32) {
    static mut MAP: [u8; 8] = [0xEE; 8];
    let pool = |id: u32| {
        let p = XenSysctlCpupoolOp {
            op: XEN_SYSCTL_CPUPOOL_OP_INFO,
            cpupool_id: id,
            cpumap: XenctlBitmap {
                bitmap: (&raw mut MAP) as u64,
                nr_bits: 32,
                pad: 0,
            },
            ..Default::default()
        };
        let mut op = sop(XEN_SYSCTL_CPUPOOL_OP, p.as_bytes());
        match sysctl(&mut op) {
            0 => Ok(XenSysctlCpupoolOp::read_from_prefix(&op.u).unwrap().0),
            e => Err(e),
        }
    };
    match pool(0) {
        Ok(p) => {
            // SAFETY: written by the hypervisor through the handle above.
            let map = unsafe { MAP };
            println!(
                "domctl: Pool-0: id {} sched {} n_dom {} cpumap {:02x?}",
                p.cpupool_id, p.sched_id, p.n_dom, map
            );
            check_eq!(p.cpupool_id, 0, "Pool-0");
            check_eq!(p.n_dom, domains, "its domains");
            let want = if nr_cpus >= 8 {
                0xFF
            } else {
                (1u8 << nr_cpus) - 1
            };
            check_eq!(
                (map[0], map[3], map[4]),
                (want, 0, 0xEE),
                "every CPU, a 4-byte map, nothing past it"
            );
        }
        Err(e) => error!("cpupool_op INFO(0): {e}"),
    }
    check_eq!(pool(1).map(|p| p.cpupool_id), Err(ENOENT), "no Pool-1");
}

/// `readconsole` as `xl dmesg` issues it: the history, then only what came after an
/// index (nothing: a guest's own lines are not kept, as on Xen without
/// `console_to_ring`).
fn dmesg() {
    static mut BUF: [u8; 16384] = [0; 16384];
    let read = |from: Option<u32>| {
        let r = XenSysctlReadconsole {
            incremental: from.is_some().into(),
            index: from.unwrap_or(0),
            buffer: (&raw mut BUF) as u64,
            count: 16384,
            ..Default::default()
        };
        let mut op = sop(XEN_SYSCTL_READCONSOLE, r.as_bytes());
        match sysctl(&mut op) {
            0 => Ok(XenSysctlReadconsole::read_from_prefix(&op.u).unwrap().0),
            e => Err(e),
        }
    };
    let first = match read(None) {
        Ok(r) => r,
        Err(e) => error!("readconsole: {e}"),
    };
    check!(first.count > 0, "a console history");
    // Guests' output stays out of the history unless `console_to_ring` (as on Xen):
    // nothing new since.
    println!("domctl: dmesg: {} bytes of history", first.count);
    match read(Some(first.index)) {
        Ok(r) => {
            check_eq!(
                (r.count, r.index),
                (0, first.index),
                "nothing after the index: a guest line is not kept"
            );
        }
        Err(e) => error!("readconsole incremental: {e}"),
    }
    // SAFETY: written by the hypervisor through the handle above.
    let buf = unsafe { core::slice::from_raw_parts((&raw const BUF).cast::<u8>(), 16384) };
    let text = &buf[..(first.count as usize).min(buf.len())];
    check!(
        !text.windows(14).any(|w| w == b"domctl: physin"),
        "no guest line in the history"
    );
    check!(
        text.windows(6).any(|w| w == b"(rxen)" || w == b"(XEN) "),
        "the hypervisor's own lines are"
    );
}

/// physinfo, sched_id and getdomaininfolist, which must list `domains` domains;
/// returns the list.
fn machine_checks(domains: u32) -> [XenDomctlGetdomaininfo; 4] {
    let mut op = sop(XEN_SYSCTL_PHYSINFO, &[]);
    check_eq!(sysctl(&mut op), 0, "physinfo");
    let p = XenSysctlPhysinfo::read_from_prefix(&op.u).unwrap().0;
    println!(
        "domctl: physinfo: {} CPUs, {} kHz, {} pages, {} free, caps {:#x}, hw_cap[0] {:#x}",
        p.nr_cpus, p.cpu_khz, p.total_pages, p.free_pages, p.capabilities, p.hw_cap[0]
    );
    check!(p.nr_cpus >= 1 && p.max_cpu_id == p.nr_cpus - 1, "CPUs");
    check!(p.cpu_khz > 100_000, "a TSC faster than 100 MHz");
    check!(
        p.total_pages > 0 && p.free_pages < p.total_pages,
        "host and free pages"
    );
    check!(
        p.capabilities & XEN_SYSCTL_PHYSCAP_GNTTAB_V1 != 0
            && p.capabilities & XEN_SYSCTL_PHYSCAP_HVM != 0,
        "hvm and gnttab_v1"
    );
    check!(p.hw_cap[0] & 1 != 0, "FPU in CPUID 1.EDX");
    cpupool(p.nr_cpus, domains);
    dmesg();
    let mut op = sop(XEN_SYSCTL_SCHED_ID, &[]);
    check_eq!(sysctl(&mut op), 0, "sched_id");
    let sched = u32::from_le_bytes(op.u[..4].try_into().unwrap());
    println!("domctl: scheduler {sched}");
    // rxen's default is credit (5), Xen 4.17's credit2 (6).
    check!(
        matches!(sched, XEN_SCHEDULER_CREDIT | 6 | XEN_SCHEDULER_RTDS),
        "a known scheduler"
    );

    static mut LIST: [XenDomctlGetdomaininfo; 4] = [XenDomctlGetdomaininfo {
        domain: 0xFFFF,
        pad0: 0,
        flags: 0,
        tot_pages: 0,
        max_pages: 0,
        outstanding_pages: 0,
        shr_pages: 0,
        paged_pages: 0,
        shared_info_frame: 0,
        cpu_time: 0,
        nr_online_vcpus: 0,
        max_vcpu_id: 0,
        ssidref: 0,
        handle: [0; 16],
        cpupool: 0,
        gpaddr_bits: 0,
        pad1: [0; 7],
        arch_config: XenArchDomainconfig {
            emulation_flags: 0,
            misc_flags: 0,
        },
    }; 4];
    let request = XenSysctlGetdomaininfolist {
        first_domain: 0,
        max_domains: 4,
        buffer: (&raw mut LIST) as u64,
        ..Default::default()
    };
    let mut op = sop(XEN_SYSCTL_GETDOMAININFOLIST, request.as_bytes());
    check_eq!(sysctl(&mut op), 0, "getdomaininfolist");
    let got = XenSysctlGetdomaininfolist::read_from_prefix(&op.u)
        .unwrap()
        .0;
    check_eq!(got.num_domains, domains, "the domains");
    // SAFETY: written by the hypervisor through the handle above.
    unsafe { LIST }
}

/// Pause, unpause, limits and destroy of the domU (domain 1).
fn control_domu() {
    check_eq!(info(1).map(|i| i.domain), Ok(1), "getdomaininfo(1)");
    check_eq!(info(2).map(|i| i.domain), Err(ESRCH), "none past the last");

    // Its weight and cap, as `xl sched-credit -d 1 -w 512 -c 60` sets them.
    let mut wc = [0u8; 4];
    wc[..2].copy_from_slice(&512u16.to_le_bytes());
    wc[2..].copy_from_slice(&60u16.to_le_bytes());
    check_eq!(
        sched_op(1, XEN_DOMCTL_SCHEDOP_PUTINFO, &wc).map(|_| ()),
        Ok(()),
        "putinfo"
    );
    check_eq!(
        sched_op(1, XEN_DOMCTL_SCHEDOP_GETINFO, &[]).map(|u| [u[0], u[1], u[2], u[3]]),
        Ok(wc),
        "weight 512, cap 60"
    );
    check!(
        vcpu_info(1, 0).is_ok_and(|v| v.online == 1),
        "the domU's vCPU 0 is online"
    );
    // The domU runs; paused, its CPU time stands still; unpaused, it goes on.
    let start = cpu_time(1);
    spin_ms(100);
    check!(cpu_time(1) > start, "the domU runs");
    check_eq!(simple(XEN_DOMCTL_PAUSEDOMAIN, 1), 0, "pause d1");
    check!(
        info(1).is_ok_and(|i| i.flags & XEN_DOMINF_PAUSED != 0),
        "d1 shows paused"
    );
    spin_ms(20);
    let paused_at = cpu_time(1);
    spin_ms(300);
    check_eq!(
        cpu_time(1),
        paused_at,
        "a paused domain's CPU time stands still"
    );
    check_eq!(simple(XEN_DOMCTL_PAUSEDOMAIN, 1), 0, "pause d1 twice");
    check_eq!(simple(XEN_DOMCTL_UNPAUSEDOMAIN, 1), 0, "unpause once");
    spin_ms(100);
    check_eq!(cpu_time(1), paused_at, "still paused once");
    check_eq!(simple(XEN_DOMCTL_UNPAUSEDOMAIN, 1), 0, "unpause d1");
    spin_ms(100);
    check!(cpu_time(1) > paused_at, "unpaused, d1 runs again");
    check_eq!(
        simple(XEN_DOMCTL_UNPAUSEDOMAIN, 1),
        err::EINVAL,
        "unpause what is not paused"
    );

    // max_mem and the handle.
    check_eq!(
        domctl(&mut dop(
            XEN_DOMCTL_MAX_MEM,
            1,
            &(8u64 * 1024).to_le_bytes()
        )),
        0,
        "max_mem 8 MiB"
    );
    check_eq!(
        domctl(&mut dop(XEN_DOMCTL_SETDOMAINHANDLE, 1, &[0xAB; 16])),
        0,
        "setdomainhandle"
    );
    let i = info(1).unwrap_or_default();
    check_eq!(
        (i.max_pages, i.handle),
        (2048, [0xAB; 16]),
        "max_pages and handle"
    );

    // Destroyed, it goes away.
    check_eq!(
        simple(XEN_DOMCTL_DESTROYDOMAIN, 0),
        err::EINVAL,
        "destroy itself"
    );
    check_eq!(simple(XEN_DOMCTL_DESTROYDOMAIN, 1), 0, "destroy d1");
    let until = now() + 5_000_000_000;
    while info(1).is_ok() && now() < until {
        spin_ms(10);
    }
    check_eq!(info(1).map(|i| i.domain), Err(ESRCH), "d1 is gone");
    check_eq!(
        simple(XEN_DOMCTL_DESTROYDOMAIN, 1),
        ESRCH,
        "destroy it again"
    );
    create_and_destroy();
    hvm_context();
    println!("domctl: done");
}

/// createdomain as libxl issues it for a PVH guest with 2 vCPUs, after `edit`.
fn create(requested: u16, edit: impl FnOnce(&mut XenDomctlCreatedomain)) -> Result<u16, i64> {
    control::create(requested, 2, edit)
}

/// createdomain as libxl issues it (PVH: hvm|hap, the local APIC emulated), with
/// bad configs first; max_vcpus; the new domain paused and empty; destroyed.
fn create_and_destroy() {
    check_eq!(
        create(0, |c| c.flags = XEN_DOMCTL_CDF_HAP),
        Err(err::EINVAL),
        "a PV guest"
    );
    check_eq!(create(0, |c| c.max_vcpus = 0), Err(err::EINVAL), "no vCPU");
    check_eq!(
        create(0, |c| c.arch.emulation_flags = 0x7FF),
        Err(err::EINVAL),
        "full HVM emulation"
    );
    check_eq!(
        create(0, |c| c.vmtrace_size = 1 << 20),
        Err(err::EINVAL),
        "vmtrace"
    );
    check_eq!(create(0x7FF0, |_| ()), Err(err::EINVAL), "a reserved id");
    // The rover starts at 0 and boot-time domains do not move it (as on Xen): 1,
    // or 2 if the destroyed d1 is not torn down yet (its id is taken until then,
    // as on Xen).
    let a = match create(0, |_| ()) {
        Ok(id @ (1 | 2)) => id,
        other => error!("createdomain: {other:?}, expected id 1 or 2"),
    };
    check_eq!(create(a, |_| ()), Err(EEXIST), "a taken id");
    let i = info(a).unwrap_or_default();
    check_eq!(
        (i.domain, i.tot_pages, i.nr_online_vcpus, i.max_vcpu_id),
        (a, 0, 0, u32::MAX),
        "born empty, no vCPU"
    );
    check!(i.flags & XEN_DOMINF_PAUSED != 0, "born paused");
    check_eq!(
        max_vcpus(a, 3),
        err::EINVAL,
        "max_vcpus other than createdomain's"
    );
    check_eq!(max_vcpus(a, 2), 0, "max_vcpus");
    check_eq!(max_vcpus(a, 2), 0, "max_vcpus again");
    let i = info(a).unwrap_or_default();
    check_eq!(
        (i.nr_online_vcpus, i.max_vcpu_id),
        (0, 1),
        "two vCPUs, down"
    );
    // Unpaused, nothing runs: no vCPU is up.
    check_eq!(
        simple(XEN_DOMCTL_UNPAUSEDOMAIN, a),
        0,
        "unpause the new domain"
    );
    spin_ms(50);
    check_eq!(cpu_time(a), 0, "no vCPU up, no CPU time");
    // The next one gets the next id; destroyed before max_vcpus.
    check_eq!(
        create(0, |c| c.max_vcpus = 1),
        Ok(a + 1),
        "the rover moves on"
    );
    check_eq!(
        simple(XEN_DOMCTL_DESTROYDOMAIN, a + 1),
        0,
        "destroy the second (no vCPU yet)"
    );
    check_eq!(simple(XEN_DOMCTL_DESTROYDOMAIN, a), 0, "destroy the first");
    // Not an id handed out before: the rover moved on.
    check_eq!(create(0, |c| c.max_vcpus = 1), Ok(a + 2), "then the next");
    check_eq!(
        simple(XEN_DOMCTL_DESTROYDOMAIN, a + 2),
        0,
        "destroy the third"
    );
    let until = now() + 5_000_000_000;
    while info(1).is_ok() && now() < until {
        spin_ms(10);
    }
    check_eq!(info(1).map(|i| i.domain), Err(ESRCH), "all gone");
    println!("domctl: created and destroyed three domains");
}

/// A context buffer (Xen's context for 2 vCPUs is a few KiB, rxen's 2616 bytes).
static mut CONTEXT: [u8; 32768] = [0; 32768];
/// A context to load.
static mut LOAD: [u8; 4096] = [0; 4096];

/// `gethvmcontext` of `domain` into [`CONTEXT`] (`size` bytes of it, or a null
/// buffer): the size answered, or the errno.
fn get_context(domain: u16, size: u32, null: bool) -> Result<u32, i64> {
    let c = XenDomctlHvmcontext {
        size,
        pad: 0,
        buffer: if null { 0 } else { (&raw mut CONTEXT) as u64 },
    };
    let mut op = dop(XEN_DOMCTL_GETHVMCONTEXT, domain, c.as_bytes());
    match domctl(&mut op) {
        0 => Ok(XenDomctlHvmcontext::read_from_prefix(&op.u).unwrap().0.size),
        e => Err(e),
    }
}

/// `sethvmcontext` of `domain` from `bytes`.
fn set_context(domain: u16, bytes: &[u8]) -> i64 {
    // SAFETY: this guest's only user of LOAD, single-threaded.
    let load = unsafe { core::slice::from_raw_parts_mut((&raw mut LOAD).cast::<u8>(), 4096) };
    load[..bytes.len()].copy_from_slice(bytes);
    let c = XenDomctlHvmcontext {
        size: bytes.len() as u32,
        pad: 0,
        buffer: (&raw mut LOAD) as u64,
    };
    domctl(&mut dop(XEN_DOMCTL_SETHVMCONTEXT, domain, c.as_bytes()))
}

/// The records of a context: typecode, instance and payload offset and length,
/// in order up to END (at most 64).
fn records(bytes: &[u8]) -> ([(u16, u16, usize, usize); 64], usize) {
    let mut out = [(0u16, 0u16, 0usize, 0usize); 64];
    let (mut at, mut n) = (0usize, 0usize);
    while n < out.len() {
        let Ok((d, _)) = HvmSaveDescriptor::read_from_prefix(&bytes[at.min(bytes.len())..]) else {
            error!("context: no descriptor at {at}");
        };
        let start = at + 8;
        let end = start + d.length as usize;
        check!(end <= bytes.len(), "a record within the context");
        out[n] = (d.typecode, d.instance, start, d.length as usize);
        n += 1;
        at = end;
        if d.typecode == HVM_SAVE_CODE_END {
            break;
        }
    }
    (out, n)
}

/// A context in `out`: the header `header` (descriptor and payload), then `body`,
/// then END; its length.
fn context(out: &mut [u8; 4096], header: &[u8], body: &[&[u8]]) -> usize {
    let mut at = 0;
    for part in [header].iter().chain(body.iter()) {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    out[at..at + 8].fill(0);
    at + 8
}

fn descriptor(typecode: u16, instance: u16, length: u32) -> HvmSaveDescriptor {
    HvmSaveDescriptor {
        typecode,
        instance,
        length,
    }
}

/// A bad context: what it is, its records after the header, the header, the errno.
type BadContext<'a> = (&'a str, &'a [&'a [u8]], &'a [u8], i64);

/// libxc's `vcpu_hvm` boot CPU: flat 32-bit protected mode at `rip`, EBX = `rbx`.
fn boot_cpu(rip: u64, rbx: u64) -> HvmHwCpu {
    let mut c = HvmHwCpu::new_zeroed();
    c.rip = rip;
    c.rbx = rbx;
    c.cr0 = 0x11;
    (c.cs_limit, c.ds_limit, c.es_limit, c.ss_limit, c.tr_limit) = (!0, !0, !0, !0, 0x67);
    (c.cs_arbytes, c.ds_arbytes, c.es_arbytes, c.ss_arbytes) = (0xC9B, 0xC93, 0xC93, 0xC93);
    c.tr_arbytes = 0x8B;
    (c.dr6, c.dr7) = (0xFFFF_0FF0, 0x400);
    c
}

/// The HVM context of a created domain with two vCPUs, as libxc's `vcpu_hvm`
/// handles it: size, full context, bad contexts, the boot context, read back.
fn hvm_context() {
    let d = match create(0, |_| ()) {
        Ok(id) => id,
        Err(e) => error!("createdomain: {e}"),
    };
    check_eq!(max_vcpus(d, 2), 0, "max_vcpus 2");
    check!(
        info(d).is_ok_and(|i| i.flags & XEN_DOMINF_PAUSED != 0),
        "born paused"
    );
    let size = match get_context(d, 0, true) {
        Ok(size) => size,
        Err(e) => error!("gethvmcontext size: {e}"),
    };
    check!(size > 40 && size as usize <= 32768, "a context size");
    check_eq!(
        get_context(d, 8, false),
        Err(err::ENOSPC),
        "gethvmcontext into 8 bytes"
    );
    check_eq!(
        get_context(0, 0, true),
        Err(err::EINVAL),
        "gethvmcontext of itself"
    );
    let written = match get_context(d, size, false) {
        Ok(n) => n,
        Err(e) => error!("gethvmcontext: {e}"),
    };
    check!(written <= size, "no more than the size");
    // SAFETY: written by the hypervisor through the handle above.
    let ctx = unsafe { core::slice::from_raw_parts((&raw const CONTEXT).cast::<u8>(), 32768) };
    let ctx = &ctx[..written as usize];
    let (recs, n) = records(ctx);
    let recs = &recs[..n];
    check_eq!(
        (recs[0].0, recs[0].3),
        (HVM_SAVE_CODE_HEADER, 24),
        "the header first"
    );
    let header = HvmSaveHeader::read_from_prefix(&ctx[8..]).unwrap().0;
    check_eq!(
        (header.magic, header.version),
        (HVM_FILE_MAGIC, HVM_FILE_VERSION),
        "Xen's magic and version"
    );
    check_eq!(recs[n - 1].0, HVM_SAVE_CODE_END, "END last");
    let count = |code: u16| recs.iter().filter(|r| r.0 == code).count();
    let mtrr: [u16; 2] = core::array::from_fn(|i| {
        recs.iter()
            .filter(|r| r.0 == HVM_SAVE_CODE_MTRR)
            .nth(i)
            .map_or(99, |r| r.1)
    });
    let others = n - 2 - count(HVM_SAVE_CODE_CPU) - count(HVM_SAVE_CODE_MTRR);
    println!(
        "domctl: hvmcontext: size {size}, {written} bytes: {} CPU, {} MTRR, {others} other",
        count(HVM_SAVE_CODE_CPU),
        count(HVM_SAVE_CODE_MTRR)
    );
    check_eq!(
        count(HVM_SAVE_CODE_CPU),
        0,
        "no CPU record: both vCPUs down"
    );
    check_eq!(mtrr, [0, 1], "an MTRR record per vCPU");
    let cpu_at = recs.iter().position(|r| r.0 == HVM_SAVE_CODE_CPU);
    let mtrr_at = recs.iter().position(|r| r.0 == HVM_SAVE_CODE_MTRR);
    check!(
        cpu_at.is_none_or(|c| mtrr_at.is_some_and(|m| c < m)),
        "CPU records before MTRR records"
    );

    // What libxc keeps: the header and vCPU 0's MTRR record.
    let header_bytes = &ctx[..32];
    let mtrr_rec = recs.iter().find(|r| r.0 == HVM_SAVE_CODE_MTRR).unwrap();
    let mut mtrr0 = HvmHwMtrr::read_from_prefix(&ctx[mtrr_rec.2..]).unwrap().0;
    mtrr0.msr_mtrr_def_type = MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE;
    let cpu = boot_cpu(0x10_0000, 0x2000);
    let cpu_d = descriptor(HVM_SAVE_CODE_CPU, 0, CPU_LENGTH);
    let mut buf = [0u8; 4096];

    // Bad contexts: refused, as Xen refuses them.
    let mut bad_magic = [0u8; 32];
    bad_magic.copy_from_slice(header_bytes);
    bad_magic[8] ^= 0xFF;
    let mut short_header = [0u8; 32];
    short_header.copy_from_slice(header_bytes);
    short_header[4] = 16;
    let mut no_et = cpu;
    no_et.cr0 = 1;
    let past = descriptor(HVM_SAVE_CODE_CPU, 0, 0x10_0000);
    let vcpu5 = descriptor(HVM_SAVE_CODE_CPU, 5, CPU_LENGTH);
    let unknown = descriptor(99, 0, 0);
    let len = context(&mut buf, header_bytes, &[cpu_d.as_bytes(), cpu.as_bytes()]);
    check_eq!(
        set_context(0, &buf[..len]),
        err::EINVAL,
        "sethvmcontext of itself"
    );
    let cases: [BadContext<'_>; 7] = [
        ("a bad magic", &[], &bad_magic, err::EINVAL),
        ("a short header", &[], &short_header, ENODATA),
        (
            "an unknown typecode",
            &[unknown.as_bytes()],
            header_bytes,
            err::EINVAL,
        ),
        (
            "a vCPU it does not have",
            &[vcpu5.as_bytes(), cpu.as_bytes()],
            header_bytes,
            err::EINVAL,
        ),
        (
            "CR0 without ET",
            &[cpu_d.as_bytes(), no_et.as_bytes()],
            header_bytes,
            err::EINVAL,
        ),
        (
            "a record past the end",
            &[past.as_bytes(), cpu.as_bytes()],
            header_bytes,
            err::EINVAL,
        ),
        ("no END", &[], header_bytes, ENODATA),
    ];
    for (what, body, header, want) in cases {
        let mut len = context(&mut buf, header, body);
        if what == "no END" {
            len -= 8;
        }
        check_eq!(
            set_context(d, &buf[..len]),
            want,
            "sethvmcontext with {what}"
        );
    }

    // As libxc 4.17: each vCPU's MTRR on its own, then the boot CPU.
    let mtrr1_d = descriptor(HVM_SAVE_CODE_MTRR, 1, MTRR_LENGTH);
    let len = context(
        &mut buf,
        header_bytes,
        &[mtrr1_d.as_bytes(), mtrr0.as_bytes()],
    );
    check_eq!(
        set_context(d, &buf[..len]),
        0,
        "sethvmcontext: vCPU 1's MTRR"
    );
    let mtrr0_d = descriptor(HVM_SAVE_CODE_MTRR, 0, MTRR_LENGTH);
    let len = context(
        &mut buf,
        header_bytes,
        &[
            cpu_d.as_bytes(),
            cpu.as_bytes(),
            mtrr0_d.as_bytes(),
            mtrr0.as_bytes(),
        ],
    );
    check_eq!(
        set_context(d, &buf[..len]),
        0,
        "sethvmcontext: the boot CPU"
    );
    check!(vcpu_info(d, 0).is_ok_and(|v| v.online == 1), "vCPU 0 is up");
    check!(
        vcpu_info(d, 1).is_ok_and(|v| v.online == 0),
        "vCPU 1 is still down"
    );

    // Read back.
    let written = match get_context(d, size, false) {
        Ok(n) => n,
        Err(e) => error!("gethvmcontext after the set: {e}"),
    };
    // SAFETY: written by the hypervisor through the handle above.
    let ctx = unsafe { core::slice::from_raw_parts((&raw const CONTEXT).cast::<u8>(), 32768) };
    let ctx = &ctx[..written as usize];
    let (recs, n) = records(ctx);
    let recs = &recs[..n];
    let cpus = recs.iter().filter(|r| r.0 == HVM_SAVE_CODE_CPU).count();
    check_eq!(cpus, 1, "one CPU record: vCPU 0's");
    let rec = recs.iter().find(|r| r.0 == HVM_SAVE_CODE_CPU).unwrap();
    let got = HvmHwCpu::read_from_prefix(&ctx[rec.2..]).unwrap().0;
    let rec = recs.iter().find(|r| r.0 == HVM_SAVE_CODE_MTRR).unwrap();
    let mtrr = HvmHwMtrr::read_from_prefix(&ctx[rec.2..]).unwrap().0;
    println!(
        "domctl: hvmcontext: vCPU 0 at rip {:#x} rbx {:#x} cr0 {:#x} cs {:#x}, MTRR default {:#x}",
        got.rip, got.rbx, got.cr0, got.cs_arbytes, mtrr.msr_mtrr_def_type
    );
    check_eq!(
        (got.rip, got.rbx, got.cr0, mtrr.msr_mtrr_def_type),
        (0x10_0000, 0x2000, 0x11, 0x806),
        "the boot state read back"
    );
    // Not unpaused (it has no memory): destroyed.
    check_eq!(simple(XEN_DOMCTL_DESTROYDOMAIN, d), 0, "destroy it");
    let until = now() + 5_000_000_000;
    while info(d).is_ok_and(|i| i.domain == d) && now() < until {
        spin_ms(10);
    }
    check!(info(d).is_err(), "it is gone");
    println!("domctl: hvmcontext: done");
}
