//! Serving a vCPU's exits, as Xen serves them for a PVH guest, and what
//! the scheduler loop does around each entry: timers, upcall injection,
//! the end of a domain. What a guest must not do crashes that guest only.

use rxen_core::domain::ShutdownReason;
use rxen_core::hypercall::{self, Next};
use rxen_core::i8254;
use rxen_core::ioport_policy::{DenyReason, PortPolicy};
use rxen_core::log::RateLimit;
use rxen_core::mm::{Gfn, Gpa};
use rxen_core::vlapic::WriteEffect;
use rxen_x86::cpuid_policy::CpuidContext;
use rxen_x86::exit::handle::{self as exit_handle, HltKind, IoEffect, MsrEnv};
use rxen_x86::exit::{Exit, IoAccess, NestedFault};
use rxen_x86::msr_policy::{Gp, MsrCaps};
use rxen_x86::svm::exit::{self as svm_exit, ExitInfo};
use rxen_x86::svm::vmcb::{control, save};
use rxen_x86::{apic, log, printk};

use super::emulate;
use super::env::{write_console, Env};
use super::regs::{advance_rip, ExitView};
use super::vlapic;
use super::HvmDomain;

/// What of the rest of the machine an exit's handler may reach.
pub enum Others<'a> {
    /// Nothing: the exit stays within its domain ([`is_local_exit`]).
    Own,
    /// Everything: the machine is held exclusively.
    Machine(super::World<'a>),
    /// With the machine held shared, one other domain at a time under its
    /// exit lock: an event send ([`is_peer_send`]).
    Peers(super::Peers<'a>),
}

/// Runs `f` on the domain's core state with the hypercall environment of
/// vCPU `v` (its memory, paging registers and console, and the other
/// domains when given). If the nested page table changed, every vCPU of the
/// domain has stopped using its old TLB entries when this returns (those
/// running on other CPUs are made to flush now, see `tlb`).
fn with_env<R>(
    domain: &mut HvmDomain,
    v: usize,
    others: Others,
    f: impl FnOnce(&mut rxen_core::domain::Domain, &mut Env) -> R,
) -> R {
    let HvmDomain {
        core,
        memory,
        vcpus,
        console,
        running_on,
        ..
    } = domain;
    let mut env = Env {
        memory,
        paging: emulate::vcpu_paging_regs(vcpus, v),
        console,
        npt_changed: false,
        privileged: core.privileged,
        domid: core.id,
        others: None,
        peers: None,
        peer_busy: false,
    };
    match others {
        Others::Own => {}
        Others::Machine(world) => env.others = Some(world),
        Others::Peers(peers) => env.peers = Some(peers),
    }
    let result = f(core, &mut env);
    if env.npt_changed && super::tlb::flush_domain(core.id, vcpus, running_on) {
        // No vCPU reaches the frames the domain gave back any more.
        env.memory.free_released();
    }
    result
}

/// Runs `f` on the domain's core state with an environment over its memory
/// (as seen by vCPU 0) and the other domains: for work that is not one
/// vCPU's, such as tearing the domain down.
pub fn with_domain_env<R>(
    domain: &mut HvmDomain,
    world: super::World,
    f: impl FnOnce(&mut rxen_core::domain::Domain, &mut Env) -> R,
) -> R {
    with_env(domain, 0, Others::Machine(world), f)
}

/// The callback vector of HVM_PARAM_CALLBACK_IRQ (type 2), for a vCPU
/// without a per-vCPU upcall vector (that one is raised through the local
/// APIC when events become pending, as on Xen).
fn callback_vector(domain: &HvmDomain, v: usize) -> Option<u8> {
    if domain.core.vcpus[v].upcall_vector.is_some() {
        return None;
    }
    let via = domain.core.hvm_params[rxen_abi::hvm::HVM_PARAM_CALLBACK_IRQ as usize];
    (via >> 56 == 2 && via as u8 >= 0x10).then_some(via as u8)
}

/// Whether vCPU `v` has an upcall pending that it has not masked.
pub fn upcall_pending(domain: &mut HvmDomain, v: usize) -> bool {
    with_env(domain, v, Others::Own, |core, env| {
        hypercall::upcall_pending(core, v, env)
    })
}

/// Whether a CPU running vCPU `v` must be made to exit for it: an upcall
/// raised since the vCPU last entered its guest (`Vcpu::kick`; one already
/// offered waits in the guest's VMCB until it can be taken, and an event
/// while it waits adds nothing, as on Xen) or an interrupt its local APIC
/// lets through.
pub fn kick_due(domain: &HvmDomain, v: usize) -> bool {
    let state = &domain.core.vcpus[v];
    state.kick || state.lapic.has_pending()
}

/// Injects what vCPU `v` should take before it runs: the callback vector
/// while an upcall is pending, as Xen does (it is re-raised until the guest
/// clears `evtchn_upcall_pending`), or what its local APIC delivers; or
/// asks for an interrupt window when the guest cannot take it now. Every
/// entry into the guest comes through here, so a kick due for the vCPU is
/// done with.
pub fn inject_upcall(domain: &mut HvmDomain, v: usize) {
    domain.core.vcpus[v].kick = false;
    let callback = callback_vector(domain, v).filter(|_| upcall_pending(domain, v));
    vlapic::inject(domain, v, callback);
}

/// What an exit handler decided.
pub enum Flow {
    /// Back into the guest (once the scheduler picks the vCPU again).
    Continue,
    /// SCHEDOP_yield: let others run first.
    Yield,
    /// The domain ends for this reason.
    End(ShutdownReason),
    /// Not served: an event send served beside other CPUs found its peer
    /// taken (`Env::peer_busy`). Nothing was done and the guest's registers
    /// are as it left them, so the exit can be served again with the machine
    /// held exclusively (or the guest makes the call again).
    Retry,
}

/// Records how the domain ends (the first shutdown wins) and prints what
/// is left of its console line.
pub fn end(domain: &mut HvmDomain, reason: ShutdownReason) -> ShutdownReason {
    let reason = domain.core.shut_down(reason);
    domain.flush_console();
    reason
}

/// Fires the due timers of the domain's vCPUs (only those with one due)
/// and checks its watchdogs; returns a shutdown if a watchdog expired.
pub fn expire_timers(domain: &mut HvmDomain, now: u64) -> Option<ShutdownReason> {
    for v in 0..domain.vcpus.len() {
        if domain.core.vcpus[v]
            .next_deadline()
            .is_some_and(|due| due <= now)
        {
            with_env(domain, v, Others::Own, |core, env| {
                hypercall::expire_timers(core, v, now, env)
            });
        }
    }
    if watchdog_due(domain, now) {
        printk!("d{}: watchdog timeout", domain.core.id);
        return Some(ShutdownReason::Watchdog);
    }
    None
}

/// Whether a watchdog of the domain has run out.
fn watchdog_due(domain: &HvmDomain, now: u64) -> bool {
    domain
        .core
        .watchdogs
        .iter()
        .flatten()
        .any(|(_, deadline)| *deadline <= now)
}

/// The earliest time something of the domain is due: a vCPU timer, the end
/// of a timed block, a local APIC timer or a watchdog.
pub fn next_due(domain: &HvmDomain) -> Option<u64> {
    let timers = domain.core.vcpus.iter().filter_map(|v| v.next_deadline());
    timers.chain(next_watchdog(domain)).min()
}

/// The earliest watchdog of the domain.
pub fn next_watchdog(domain: &HvmDomain) -> Option<u64> {
    domain
        .core
        .watchdogs
        .iter()
        .flatten()
        .map(|(_, at)| *at)
        .min()
}

/// The exits that may return straight into the guest: those whose handlers
/// touch only the calling domain (what they may do to the domain's other
/// vCPUs the scheduler checks; what a hypercall may do to other domains
/// goes through the environment, which then asks for a pass). Not INTR (a
/// host interrupt may have brought anything), HLT (it blocks), the ends of
/// a domain, and the rare rest.
pub const FAST_EXITS: [u64; 6] = {
    use rxen_x86::svm::vmcb::exit;
    [
        exit::VMMCALL,
        exit::CPUID,
        exit::MSR,
        exit::IOIO,
        exit::NPF,
        exit::VINTR,
    ]
};

/// Whether the exit `vcpu` just took is served with its domain alone: one of
/// [`FAST_EXITS`], and for a hypercall (its number in RAX) one the core
/// serves without the other domains ([`hypercall::is_local`]). The caller may
/// then serve it without the rest of the machine (`world` [`Others::Own`] in
/// [`handle_exit`]). Reads only the vCPU's VMCB.
pub fn is_local_exit(vcpu: &super::vcpu::SvmVcpu) -> bool {
    match vcpu.vmcb.read64(control::EXIT_CODE) {
        rxen_x86::svm::vmcb::exit::VMMCALL => hypercall::is_local(vcpu.vmcb.read64(save::RAX)),
        code => FAST_EXITS.contains(&code),
    }
}

/// Whether the exit `vcpu` just took is an event send
/// ([`hypercall::reaches_one_peer`]), which may be served with the machine
/// held shared, reaching the peer under its exit lock (`world`
/// [`Others::Peers`] in [`handle_exit`]). Reads only the vCPU's VMCB and
/// registers.
pub fn is_peer_send(vcpu: &super::vcpu::SvmVcpu) -> bool {
    vcpu.vmcb.read64(control::EXIT_CODE) == rxen_x86::svm::vmcb::exit::VMMCALL
        && hypercall::reaches_one_peer(vcpu.vmcb.read64(save::RAX), vcpu.regs.rdi)
}

/// Serves the exit vCPU `v` just took; `world` is the rest of the machine,
/// as far as the exit may reach it ([`Others`]). Kept a
/// function of its own (`linker.ld` places it among the code every exit
/// runs); the handlers of the exits a null hypercall or an event never
/// takes are not inlined into it, so that its stack frame stays small.
#[inline(never)]
pub fn handle_exit(domain: &mut HvmDomain, v: usize, world: Others) -> Flow {
    // Whether the guest took the interrupt offered at entry, before any
    // handler looks at the APIC (an EOI of it, say).
    vlapic::reconcile_offer(domain, v);
    let vcpu = &mut domain.vcpus[v];
    // The interrupt shadow holds until the guest has gone past its
    // instruction (an exit there may not show it again under QEMU).
    let rip = vcpu.vmcb.read64(save::RIP);
    let shadow = vcpu.vmcb.read64(control::INTERRUPT_SHADOW) & 1 != 0;
    vcpu.shadow_rip = (shadow || vcpu.shadow_rip == Some(rip)).then_some(rip);
    let vmcb = &mut vcpu.vmcb;
    // An event whose delivery the exit interrupted is delivered again.
    let interrupted = vmcb.read64(control::EXIT_INT_INFO);
    if interrupted & (1 << 31) != 0 {
        vmcb.write64(control::EVENT_INJ, interrupted);
    }
    let info = ExitInfo {
        code: vmcb.read64(control::EXIT_CODE),
        info1: vmcb.read64(control::EXIT_INFO1),
        info2: vmcb.read64(control::EXIT_INFO2),
        rax: vmcb.read64(save::RAX),
        rcx: vcpu.regs.rcx,
        rdx: vcpu.regs.rdx,
    };
    match svm_exit::decode(&info) {
        Exit::Interrupt => Flow::Continue,
        Exit::InterruptWindow => {
            // The interrupt window is open: drop the request, inject next.
            domain.vcpus[v].close_interrupt_window();
            Flow::Continue
        }
        Exit::Cpuid => {
            cpuid(domain, v);
            Flow::Continue
        }
        Exit::Hypercall => hypercall_exit(domain, v, world),
        Exit::Hlt => hlt(domain, v),
        Exit::Io(io) => ioio(domain, v, io),
        Exit::Msr { index, write } => {
            msr(domain, v, index, write);
            Flow::Continue
        }
        Exit::NestedPageFault(fault) => nested_page_fault(domain, v, fault),
        Exit::Xsetbv { index, value } => {
            let view = &mut ExitView {
                vcpu: &mut domain.vcpus[v],
                domid: domain.core.id,
                v,
            };
            exit_handle::xsetbv(view, index, value, rxen_x86::xsave::guest_xcr0_max());
            Flow::Continue
        }
        Exit::CrWrite(cr) => {
            let id = domain.core.id;
            let HvmDomain { memory, vcpus, .. } = domain;
            match super::ctrlreg::write_cr(&mut vcpus[v], memory, id, v, cr) {
                Ok(()) => Flow::Continue,
                Err(_) => {
                    let why =
                        alloc::format!("write to CR{cr} by an instruction rxen cannot decode");
                    report_guest_failure(domain, v, &why);
                    Flow::End(ShutdownReason::Crash)
                }
            }
        }
        Exit::DebugRegister(code) => debug_register(domain, v, code),
        Exit::Invd => {
            advance_rip(&mut domain.vcpus[v].vmcb, 2);
            Flow::Continue
        }
        Exit::VirtualizationInstruction => {
            // SVM is not offered to guests (CPUID hides it): #UD.
            domain.vcpus[v].inject_exception(exit_handle::UD, None);
            Flow::Continue
        }
        Exit::TripleFault => {
            // As Xen: report the registers, then take the domain's triple
            // fault action (HVM_PARAM_TRIPLE_FAULT_REASON, reboot by default).
            report_guest_failure(domain, v, "triple fault");
            let action =
                domain.core.hvm_params[rxen_abi::hvm::HVM_PARAM_TRIPLE_FAULT_REASON as usize];
            Flow::End(ShutdownReason::from_code(action as u32))
        }
        Exit::InvalidState => {
            // Guest control-register writes are checked on the way in, so
            // this is rxen's bug, not the guest's; still only this domain
            // ends.
            let why = match domain.vcpus[v].vmcb.read64(control::EXIT_INFO1) {
                rxen_x86::svm::HOST_STATE_REFUSED => {
                    "not entered: its VMCB holds the host's state: crashing the domain"
                }
                rxen_x86::svm::HOST_STATE_AT_EXIT => {
                    "the exit left the host's state in its VMCB: crashing the domain"
                }
                _ => "VMRUN refused the guest state (VMEXIT_INVALID): crashing the domain",
            };
            report_guest_failure(domain, v, why);
            Flow::End(ShutdownReason::Crash)
        }
        Exit::Unknown(other) => {
            report_guest_failure(domain, v, &alloc::format!("unhandled exit code {other:#x}"));
            Flow::End(ShutdownReason::Crash)
        }
    }
}

/// Prints why the domain ends and its registers; the caller says how it
/// ends (the exit flow records the shutdown).
#[inline(never)]
fn report_guest_failure(domain: &mut HvmDomain, v: usize, why: &str) {
    domain.flush_console();
    let vcpu = &domain.vcpus[v];
    let (vmcb, r) = (&vcpu.vmcb, &vcpu.regs);
    let id = domain.core.id;
    printk!("d{id}v{v}: {why}; guest state:");
    printk!(
        "d{id}v{v}: RIP {:04x}:{:016x} RFLAGS {:016x} CPL {}",
        vmcb.segment(save::CS).selector,
        vmcb.read64(save::RIP),
        vmcb.read64(save::RFLAGS),
        vmcb.cpl()
    );
    printk!(
        "d{id}v{v}: RAX {:016x} RBX {:016x} RCX {:016x} RDX {:016x}",
        vmcb.read64(save::RAX),
        r.rbx,
        r.rcx,
        r.rdx
    );
    printk!(
        "d{id}v{v}: RSI {:016x} RDI {:016x} RBP {:016x} RSP {:016x}",
        r.rsi,
        r.rdi,
        r.rbp,
        vmcb.read64(save::RSP)
    );
    printk!(
        "d{id}v{v}: R8  {:016x} R9  {:016x} R10 {:016x} R11 {:016x}",
        r.r8,
        r.r9,
        r.r10,
        r.r11
    );
    printk!(
        "d{id}v{v}: R12 {:016x} R13 {:016x} R14 {:016x} R15 {:016x}",
        r.r12,
        r.r13,
        r.r14,
        r.r15
    );
    printk!(
        "d{id}v{v}: CR0 {:016x} CR2 {:016x} CR3 {:016x} CR4 {:016x} EFER {:016x}",
        vmcb.read64(save::CR0),
        vmcb.read64(save::CR2),
        vmcb.read64(save::CR3),
        vmcb.read64(save::CR4),
        vmcb.read64(save::EFER)
    );
    for (n, (code, rip, cpu)) in vcpu.trail.recent() {
        printk!("d{id}v{v}: exit #{n}: code {code:#x} at RIP {rip:#x} on CPU{cpu}");
    }
    let regs = super::emulate::paging_regs(vmcb);
    for (name, linear) in [
        ("RIP", vmcb.read64(save::RIP)),
        ("CR2", vmcb.read64(save::CR2)),
    ] {
        let (entries, n) = rxen_x86::svm::guest_walk::long_mode_entries(&regs, linear, &|gpa| {
            domain.memory.read_u64(Gpa(gpa))
        });
        if n > 0 {
            printk!(
                "d{id}v{v}: page walk of {name} {linear:#x}: {:x?}",
                &entries[..n]
            );
        } else if regs.cr0 & rxen_x86::ctrlreg::cr0::PG != 0 {
            printk!("d{id}v{v}: page walk of {name} {linear:#x}: the PML4 is not RAM");
        }
    }
    printk!(
        "d{id}v{v}: exit {:#x} info1 {:#x} info2 {:#x} intinfo {:#x}",
        vmcb.read64(control::EXIT_CODE),
        vmcb.read64(control::EXIT_INFO1),
        vmcb.read64(control::EXIT_INFO2),
        vmcb.read64(control::EXIT_INT_INFO)
    );
    let (gdtr, idtr, tr) = (
        vmcb.segment(save::GDTR),
        vmcb.segment(save::IDTR),
        vmcb.segment(save::TR),
    );
    printk!(
        "d{id}v{v}: GDTR {:#x}/{:#x} IDTR {:#x}/{:#x} TR {:#x} base {:#x} limit {:#x} attr {:#x}",
        gdtr.base,
        gdtr.limit,
        idtr.base,
        idtr.limit,
        tr.selector,
        tr.base,
        tr.limit,
        tr.attrib
    );
    // An event whose delivery failed: its gate in the guest's IDT (16 bytes
    // in long mode), as the guest's page tables map it.
    let event = vmcb.read64(control::EXIT_INT_INFO);
    if event & (1 << 31) != 0 {
        let vector = event & 0xff;
        let gate_at = idtr.base.wrapping_add(vector * 16);
        let read = |gpa: u64| domain.memory.read_u64(Gpa(gpa));
        let words = rxen_x86::svm::guest_walk::translate(&regs, gate_at, false, &read)
            .ok()
            .and_then(|gpa| Some((read(gpa)?, read(gpa.checked_add(8)?)?)));
        match words {
            Some((low, high)) => {
                printk!("d{id}v{v}: IDT gate {vector:#x} at {gate_at:#x}: {low:#018x} {high:#018x}")
            }
            None => printk!("d{id}v{v}: IDT gate {vector:#x} at {gate_at:#x}: not readable"),
        }
    }
}

/// CPUID, served by [`exit_handle::cpuid`] with this CPU's answers.
#[inline(never)]
fn cpuid(domain: &mut HvmDomain, v: usize) {
    let nr_vcpus = domain.core.vcpus.len() as u32;
    let domid = domain.core.id;
    let vcpu = &mut domain.vcpus[v];
    let ctx = CpuidContext {
        spec: rxen_x86::spec_ctrl::active().offer(),
        vcpu_id: v as u32,
        domid,
        tsc_khz: apic::tsc_per_ms() as u32,
        nr_vcpus,
    };
    // Leaf 0xD's sizes depend on XCR0: ask the CPU with the guest's loaded.
    let guest_xcr0 = vcpu.xcr0;
    let host = |leaf: u32, sub: u32| {
        let r = if leaf == 0xD {
            let host_xcr0 = rxen_x86::xsave::load_guest_xcr0(guest_xcr0);
            let r = raw_cpuid::cpuid!(leaf, sub);
            let _ = rxen_x86::xsave::restore_host_xcr0(host_xcr0, guest_xcr0);
            r
        } else {
            raw_cpuid::cpuid!(leaf, sub)
        };
        [r.eax, r.ebx, r.ecx, r.edx]
    };
    exit_handle::cpuid(&mut ExitView { vcpu, domid, v }, &ctx, &host);
}

/// A hypercall: the registers through [`exit_handle`], the work by core's
/// dispatch.
fn hypercall_exit(domain: &mut HvmDomain, v: usize, world: Others) -> Flow {
    let domid = domain.core.id;
    let vcpu = &mut domain.vcpus[v];
    let (nr, args) = exit_handle::hypercall_args(&ExitView { vcpu, domid, v });
    let cpl = domain.vcpus[v].vmcb.cpl();
    let (outcome, busy) = with_env(domain, v, world, |core, env| {
        let outcome = hypercall::dispatch(&mut hypercall::Ctx::new(core, v, env), nr, args, cpl);
        (outcome, env.peer_busy)
    });
    if busy {
        // The core's continuation of the same call: nothing to write.
        return Flow::Retry;
    }
    let view = &mut ExitView {
        vcpu: &mut domain.vcpus[v],
        domid,
        v,
    };
    if let Next::Continuation { args } = outcome.next {
        exit_handle::hypercall_continue(view, args);
        return Flow::Continue;
    }
    exit_handle::hypercall_return(view, outcome.ret);
    match outcome.next {
        Next::Continue => Flow::Continue,
        Next::Yield => Flow::Yield,
        Next::Block(deadline) => {
            domain.core.vcpus[v].blocked = Some(deadline);
            Flow::Continue
        }
        Next::Shutdown(reason) => Flow::End(reason),
        Next::Continuation { .. } => Flow::Continue,
    }
}

fn hlt(domain: &mut HvmDomain, v: usize) -> Flow {
    let view = &mut ExitView {
        vcpu: &mut domain.vcpus[v],
        domid: domain.core.id,
        v,
    };
    if exit_handle::hlt(view) == HltKind::Down {
        // As Xen: HLT with interrupts off takes the vCPU down; with no vCPU
        // left up the domain is powered off.
        domain.core.vcpus[v].up = false;
        if domain.core.vcpus.iter().all(|vcpu| !vcpu.up) {
            printk!(
                "d{}: all vCPUs offline (HLT with interrupts disabled): powering off",
                domain.core.id
            );
            return Flow::End(ShutdownReason::Poweroff);
        }
        return Flow::Continue;
    }
    // An interrupt the APIC already holds, or an unmasked upcall with a
    // callback vector to deliver it, ends the halt at once (Xen's hvm_hlt
    // blocks as SCHEDOP_block, which does not sleep while
    // `local_events_need_delivery`, i.e. `hvm_vcpu_has_pending_irq`).
    let upcall = callback_vector(domain, v).is_some() && upcall_pending(domain, v);
    if domain.core.vcpus[v].lapic.has_pending() || upcall {
        return Flow::Continue;
    }
    let deadline = domain.core.vcpus[v].next_deadline();
    domain.core.vcpus[v].blocked = Some(deadline);
    Flow::Continue
}

/// Port I/O: [`exit_handle::io`] (an empty bus, the debug console port,
/// the emulated PIT channel 2, dom0's own ports read on the hardware); what
/// it hands back is done here.
#[inline(never)]
fn ioio(domain: &mut HvmDomain, v: usize, io: IoAccess) -> Flow {
    let direct = domain.memory.is_direct();
    let HvmDomain {
        core,
        memory,
        vcpus,
        console,
        pci,
        pit,
        running_on,
        ..
    } = domain;
    // A 1:1 dom0's trapped ports: what the policy says (the others do not
    // exit, see `ioports`); the ports dom0 owns are served on the hardware,
    // the PCI configuration ports through its vPCI.
    let policy = direct
        .then(|| crate::ioports::policy(io.port, io.size))
        .flatten();
    let owned = matches!(
        policy,
        Some(PortPolicy::Watched(_) | PortPolicy::Rtc | PortPolicy::Passthrough)
    );
    if let Some(PortPolicy::Denied(why @ (DenyReason::RxenUart | DenyReason::Disabled))) = policy {
        if OWN_PORTS_LOGGED.allow() {
            log!(
                Info,
                "d{}: {} port {:#x} ({} bytes) denied ({why:?}): reads all ones, writes dropped",
                core.id,
                if io.is_in { "read of" } else { "write to" },
                io.port,
                io.size
            );
        }
    }
    let mut pci = pci.as_mut().filter(|_| {
        matches!(
            policy,
            Some(PortPolicy::PciConfigAddress | PortPolicy::PciConfigData)
        )
    });
    // PIT channel 2 for every domain, in place of dom0's denied hardware
    // PIT: rxen's addition, so that Linux's TSC calibration ends at once
    // (Xen gives PVH guests no PIT, see `rxen_core::i8254`).
    let vpit = match policy {
        Some(p) => p == PortPolicy::Pit,
        None => i8254::handles(io.port, io.size),
    };
    let now = if vpit { crate::time::now_ns() } else { 0 };
    let id = core.id;
    let view = &mut ExitView {
        vcpu: &mut vcpus[v],
        domid: id,
        v,
    };
    let read = |port, size| match pci.as_deref_mut() {
        Some(pci) => Some(super::vpci::port_access(pci, id, port, size, true, 0)),
        None if vpit => Some(u32::from(pit.read(port, now))),
        None => owned.then(|| rxen_x86::port_io::dom0_access(port, size, true, 0)),
    };
    match exit_handle::io(view, &io, read) {
        IoEffect::None => {}
        IoEffect::DebugConsole(byte) => {
            // As Xen's hvm_print_line: a line ends at its newline or at
            // DOMAIN_PBUF_SIZE - 1 characters, so a flood holds no memory.
            write_console(core.id, console, &[byte]);
        }
        IoEffect::Out { port, size, value } => {
            // dom0 powering the machine off through ACPI (PM1 control,
            // SLP_EN): the hypervisor ends with it, as Xen halts the host
            // when its hardware domain powers off.
            let value16 = value as u16;
            if core.privileged && size >= 2 && crate::acpi::is_sleep_request(port, value16) {
                printk!(
                    "d{}: ACPI sleep request (SLP_TYP {}) on port {:#x}: powering off",
                    core.id,
                    (value16 >> 10) & 7,
                    port
                );
                return Flow::End(ShutdownReason::Poweroff);
            }
            if let Some(pci) = pci {
                super::vpci::port_access(pci, id, port, size, false, value);
                if super::vpci::unmap_moved_msix(pci, memory) {
                    super::tlb::flush_domain(id, vcpus, running_on);
                }
            } else if vpit {
                // Truncation intended: a one-byte port.
                pit.write(port, value as u8, now);
            } else if owned {
                rxen_x86::port_io::dom0_access(port, size, false, value);
            }
        }
    }
    Flow::Continue
}

/// A MOV to or from a debug register, emulated on the vCPU's own copy.
#[inline(never)]
fn debug_register(domain: &mut HvmDomain, v: usize, code: u64) -> Flow {
    let HvmDomain { memory, vcpus, .. } = domain;
    let vcpu = &mut vcpus[v];
    match super::debugreg::mov_dr(&mut vcpu.vmcb, &mut vcpu.regs, &mut vcpu.dr, memory) {
        Ok(Ok(())) => Flow::Continue,
        Ok(Err(super::debugreg::DrFault::GeneralProtection)) => {
            vcpu.inject_exception(exit_handle::GP, Some(0));
            Flow::Continue
        }
        Ok(Err(super::debugreg::DrFault::InvalidOpcode)) => {
            vcpu.inject_exception(exit_handle::UD, None);
            Flow::Continue
        }
        Err(_) => {
            let why = alloc::format!("debug register access (exit {code:#x}) rxen cannot decode");
            report_guest_failure(domain, v, &why);
            Flow::End(ShutdownReason::Crash)
        }
    }
}

/// What the MSR exit needs of the machine: the TSC, the vCPU's local
/// APIC, the guest's memory for the hypercall page, the IBPB.
struct MsrMachine<'a> {
    lapic: &'a mut rxen_core::vlapic::Vlapic,
    memory: &'a mut super::memory::GuestMemory,
    hypercall_page: &'a mut Option<u64>,
    /// What an x2APIC write asks of the domain, carried out after the exit.
    lapic_effect: WriteEffect,
}

impl MsrEnv for MsrMachine<'_> {
    fn tsc(&self) -> u64 {
        apic::rdtsc()
    }
    fn apic_base(&self) -> u64 {
        self.lapic.base_msr()
    }
    fn write_apic_base(&mut self, value: u64) -> bool {
        self.lapic.write_base_msr(value)
    }
    fn write_hypercall_page(&mut self, gfn: u64) -> bool {
        let ok = write_hypercall_page(self.memory, gfn);
        if ok {
            *self.hypercall_page = Some(gfn);
        }
        ok
    }
    fn ibpb(&mut self) {
        rxen_x86::spec_ctrl::ibpb();
    }
    fn read_x2apic(&mut self, index: u32) -> Option<u64> {
        self.lapic.read_x2apic(index, crate::time::now_ns())
    }
    fn write_x2apic(&mut self, index: u32, value: u64) -> bool {
        let effect = self.lapic.write_x2apic(index, value, crate::time::now_ns());
        if let Some(effect) = effect {
            self.lapic_effect = effect;
        }
        effect.is_some()
    }
}

fn has_tsc_aux() -> bool {
    *super::vcpu::HAS_TSC_AUX.call_once(rxen_x86::cpu::has_tsc_aux)
}

/// RDMSR/WRMSR: [`exit_handle::msr`] over [`rxen_x86::msr_policy`] (as
/// Xen's guest_{rd,wr}msr, the speculation MSRs as far as the guest is
/// offered them), with what it hands back (PAT, EFER, the APIC base, the
/// hypercall page, an IBPB) done by the vCPU and [`MsrMachine`]. A refused
/// access raises #GP and is logged.
#[inline(never)]
fn msr(domain: &mut HvmDomain, v: usize, index: u32, write: Option<u64>) {
    let caps = MsrCaps {
        offer: rxen_x86::spec_ctrl::active().offer(),
        tsc_aux: has_tsc_aux(),
    };
    let HvmDomain {
        core,
        vcpus,
        memory,
        hypercall_page,
        ..
    } = domain;
    let view = &mut ExitView {
        vcpu: &mut vcpus[v],
        domid: core.id,
        v,
    };
    let machine = &mut MsrMachine {
        lapic: &mut core.vcpus[v].lapic,
        memory,
        hypercall_page,
        lapic_effect: WriteEffect::None,
    };
    if let Err(Gp) = exit_handle::msr(view, index, write, &caps, machine) {
        log!(
            Info,
            "d{}v{v}: {} of unhandled MSR {index:#x}: #GP",
            core.id,
            if write.is_some() { "write" } else { "read" }
        );
    }
    let effect = machine.lapic_effect;
    vlapic::carry_out(domain, v, effect);
}

/// Fills the page at `gfn` with one stub per hypercall: `mov eax, n;
/// vmmcall; ret`, 32 bytes apart, as Xen does on AMD; `iret` (23), which
/// HVM guests must not use, is `ud2`.
fn write_hypercall_page(memory: &mut super::memory::GuestMemory, gfn: u64) -> bool {
    let mut page = [0xCCu8; 4096];
    for n in 0..128u32 {
        let stub = &mut page[n as usize * 32..n as usize * 32 + 9];
        if n as u64 == rxen_abi::xen::HYPERVISOR_IRET {
            stub[..2].copy_from_slice(&[0x0F, 0x0B]);
            continue;
        }
        stub[0] = 0xB8;
        stub[1..5].copy_from_slice(&n.to_le_bytes());
        stub[5..8].copy_from_slice(&[0x0F, 0x01, 0xD9]);
        stub[8] = 0xC3;
    }
    Gfn(gfn)
        .gpa()
        .is_some_and(|gpa| memory.write_phys(gpa, &page).is_ok())
}

/// Counts unbacked accesses, to rate-limit their log lines.
static UNBACKED_LOGGED: RateLimit = RateLimit::new();

/// Writes to read-only grant mappings logged so far (rate limit).
static GRANT_RO_LOGGED: RateLimit = RateLimit::new();

#[inline(never)]
fn nested_page_fault(domain: &mut HvmDomain, v: usize, npf: NestedFault) -> Flow {
    let HvmDomain {
        memory,
        vcpus,
        core,
        ..
    } = domain;
    let vcpu = &mut vcpus[v];
    let (gpa, fault, write) = (npf.gpa, npf.raw, npf.write);
    if memory.host_address(Gpa(gpa), write).is_some() {
        // The access is allowed now: the nested page table changed between
        // the fault and this exit being served (another vCPU mapped or
        // unmapped a grant meanwhile). As Xen for a spurious fault: retry
        // the instruction against the current mapping.
        return Flow::Continue;
    }
    if write && memory.is_foreign(Gpa(gpa).gfn()) {
        // As Xen (a read-only grant mapping is a write-discard type): the
        // instruction is emulated with its write dropped, and the guest
        // goes on; what cannot be emulated gets #GP. A fault in the guest's
        // own page walk (bit 33) is not the instruction's access: #GP.
        if GRANT_RO_LOGGED.allow() {
            log!(
                Warning,
                "d{}v{v}: write to read-only grant mapping at {gpa:#x} dropped",
                core.id
            );
        }
        let emulated = !npf.in_guest_walk
            && emulate::mmio_access(
                &mut vcpu.vmcb,
                &mut vcpu.regs,
                memory,
                gpa,
                &mut emulate::DiscardWrites { memory },
            )
            .is_ok();
        if !emulated {
            vcpu.inject_exception(exit_handle::GP, Some(0));
        }
        return Flow::Continue;
    }
    if memory.host_address(Gpa(gpa), false).is_some() {
        // Only grant mappings are read-only: nothing else gets here.
        let why = alloc::format!("write to read-only guest page {gpa:#x} (NPF {fault:#x})");
        report_guest_failure(domain, v, &why);
        return Flow::End(ShutdownReason::Crash);
    }
    if vlapic::is_lapic_page(domain, v, gpa) {
        return lapic_access(domain, v, gpa);
    }
    if domain
        .vioapics
        .as_mut()
        .is_some_and(|apics| apics.at(Gpa(gpa)).is_some())
    {
        return ioapic_access(domain, v, gpa);
    }
    if domain.pci.is_some() {
        if let Some(region) = crate::pci::with(|r| r.mcfg_region_at(gpa)) {
            return ecam_access(domain, v, gpa, region);
        }
    }
    if let Some(sbdf) = domain.pci.as_ref().and_then(|p| p.msix_at(gpa)) {
        return msix_access(domain, v, gpa, sbdf);
    }
    if domain.memory.is_direct()
        && crate::memory::is_device_memory(gpa)
        && domain.memory.map_identity(Gpa(gpa)).is_ok()
    {
        // A 1:1 dom0 reaches the machine's device memory directly: mapped
        // now, the instruction runs again.
        return Flow::Continue;
    }
    let HvmDomain {
        memory,
        vcpus,
        core,
        ..
    } = domain;
    let vcpu = &mut vcpus[v];
    match emulate::mmio_access(
        &mut vcpu.vmcb,
        &mut vcpu.regs,
        memory,
        gpa,
        &mut emulate::Unbacked,
    ) {
        Ok(_) => {
            if UNBACKED_LOGGED.allow() {
                let kind = if write {
                    "write dropped"
                } else {
                    "read as all ones"
                };
                printk!(
                    "d{}v{v}: access to unbacked guest-physical {gpa:#x}: {kind}",
                    core.id
                );
            }
            Flow::Continue
        }
        Err(error) => cannot_emulate(domain, v, gpa, "unbacked guest-physical", error),
    }
}

/// dom0's emulated IO-APICs' registers, as MMIO (32-bit accesses; others
/// read all ones and are dropped).
struct IoApicPage<'a> {
    apics: &'a mut rxen_core::vioapic::VIoApics,
    domid: rxen_core::domain::DomId,
    /// Interrupts to deliver after the access (an unmask of an asserted
    /// line).
    deliveries: alloc::vec::Vec<rxen_core::vioapic::Action>,
}

/// Odd IO-APIC accesses logged so far (rate limit).
static IOAPIC_LOGGED: RateLimit = RateLimit::new();

/// dom0's accesses to ports rxen keeps (its UART, `dom0_ioports_disable=`)
/// logged so far (rate limit).
static OWN_PORTS_LOGGED: RateLimit = RateLimit::new();

impl emulate::Mmio for IoApicPage<'_> {
    fn read(&mut self, gpa: u64, size: u32) -> u64 {
        if size != 4 {
            return u64::MAX;
        }
        self.apics.read(Gpa(gpa)).map_or(u64::MAX, u64::from)
    }

    fn write(&mut self, gpa: u64, size: u32, value: u64) {
        use rxen_core::vioapic::Action;
        if size != 4 {
            return;
        }
        let Some(actions) = self.apics.write(Gpa(gpa), value as u32) else {
            return;
        };
        for action in actions.iter() {
            match action {
                // The host pin of the same GSI is bound to dom0.
                Action::Bind {
                    gsi,
                    trigger,
                    polarity,
                } => match crate::gsi::bind(gsi, trigger, polarity) {
                    Ok(vector) => log!(
                        Info,
                        "d{}: IO-APIC pin of GSI {gsi} unmasked ({trigger:?}, {polarity:?}): host vector {vector:#x}",
                        self.domid
                    ),
                    Err(why) => log!(
                        Info,
                        "d{}: IO-APIC pin of GSI {gsi} unmasked ({trigger:?}, {polarity:?}): not routed ({why:?})",
                        self.domid
                    ),
                },
                Action::Deliver { .. } => self.deliveries.push(action),
                Action::Ignored(why) if IOAPIC_LOGGED.allow() => log!(
                    Info,
                    "d{}: IO-APIC write at {gpa:#x} ignored: {why:?}",
                    self.domid
                ),
                _ => {}
            }
        }
    }
}

/// An access to dom0's emulated IO-APIC registers at `gpa`.
fn ioapic_access(domain: &mut HvmDomain, v: usize, gpa: u64) -> Flow {
    let HvmDomain {
        memory,
        vcpus,
        core,
        vioapics,
        ..
    } = domain;
    let Some(apics) = vioapics.as_mut() else {
        return Flow::Continue;
    };
    let vcpu = &mut vcpus[v];
    let mut page = IoApicPage {
        apics,
        domid: core.id,
        deliveries: alloc::vec::Vec::new(),
    };
    match emulate::mmio_access(&mut vcpu.vmcb, &mut vcpu.regs, memory, gpa, &mut page) {
        Ok(_) => {
            for action in core::mem::take(&mut page.deliveries) {
                vlapic::deliver_ioapic(domain, action);
            }
            Flow::Continue
        }
        Err(error) => cannot_emulate(domain, v, gpa, "the IO-APIC", error),
    }
}

/// Whether dom0 touched an ECAM window yet (logged once).
static ECAM_SEEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// dom0's access to an ECAM window at `gpa`: through its vPCI.
fn ecam_access(
    domain: &mut HvmDomain,
    v: usize,
    gpa: u64,
    region: rxen_core::pci::McfgRegion,
) -> Flow {
    let HvmDomain {
        memory,
        vcpus,
        core,
        pci,
        ..
    } = domain;
    let Some(pci) = pci.as_mut() else {
        return Flow::Continue;
    };
    if !ECAM_SEEN.swap(true, core::sync::atomic::Ordering::Relaxed) {
        printk!(
            "d{}: ECAM window at {:#x} (segment {}, buses {:#x}-{:#x}): mediated, first access at {gpa:#x}",
            core.id,
            region.address,
            region.segment,
            region.start_bus,
            region.end_bus
        );
    }
    let vcpu = &mut vcpus[v];
    let mut window = super::vpci::EcamWindow {
        pci,
        id: core.id,
        region,
    };
    match emulate::mmio_access(&mut vcpu.vmcb, &mut vcpu.regs, memory, gpa, &mut window) {
        Ok(_) => {
            if super::vpci::unmap_moved_msix(pci, memory) {
                super::tlb::flush_domain(core.id, vcpus, &domain.running_on);
            }
            Flow::Continue
        }
        Err(error) => cannot_emulate(domain, v, gpa, "ECAM", error),
    }
}

/// dom0's access to the page of an MSI-X table or PBA at `gpa`.
fn msix_access(domain: &mut HvmDomain, v: usize, gpa: u64, sbdf: rxen_core::vpci::Sbdf) -> Flow {
    let HvmDomain {
        memory,
        vcpus,
        core,
        pci,
        ..
    } = domain;
    let Some(pci) = pci.as_mut() else {
        return Flow::Continue;
    };
    let vcpu = &mut vcpus[v];
    let mut window = super::vpci::MsixWindow {
        pci,
        id: core.id,
        sbdf,
    };
    match emulate::mmio_access(&mut vcpu.vmcb, &mut vcpu.regs, memory, gpa, &mut window) {
        Ok(_) => Flow::Continue,
        Err(error) => cannot_emulate(domain, v, gpa, "an MSI-X table", error),
    }
}

/// Crashes the domain whose vCPU `v` accessed `what` at `gpa` with an
/// instruction rxen cannot emulate (`error`), with a report.
fn cannot_emulate(
    domain: &mut HvmDomain,
    v: usize,
    gpa: u64,
    what: &str,
    error: emulate::EmulationError,
) -> Flow {
    let why = alloc::format!(
        "access to {what} at {gpa:#x} by an instruction rxen cannot emulate ({error})"
    );
    report_guest_failure(domain, v, &why);
    Flow::End(ShutdownReason::Crash)
}

/// An access to vCPU `v`'s local APIC page at `gpa`.
fn lapic_access(domain: &mut HvmDomain, v: usize, gpa: u64) -> Flow {
    let HvmDomain {
        memory,
        vcpus,
        core,
        ..
    } = domain;
    let vcpu = &mut vcpus[v];
    let mut page = vlapic::LapicPage {
        lapic: &mut core.vcpus[v].lapic,
        now: crate::time::now_ns(),
        effect: WriteEffect::None,
    };
    match emulate::mmio_access(&mut vcpu.vmcb, &mut vcpu.regs, memory, gpa, &mut page) {
        Ok(_) => {
            let effect = page.effect;
            vlapic::carry_out(domain, v, effect);
            Flow::Continue
        }
        Err(error) => cannot_emulate(domain, v, gpa, "the local APIC", error),
    }
}
