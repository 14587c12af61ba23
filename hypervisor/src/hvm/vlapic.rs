//! The local APIC of PVH vCPUs on SVM, as Xen's vlapic: the register page
//! at the APIC base served through the MMIO emulator (x2APIC mode's MSRs
//! are served by the MSR exit, `exits::msr`), interrupt commands to
//! the domain's other vCPUs (fixed, NMI, INIT, start-up), and the injection
//! of what the APIC lets through. The register logic is the core's
//! [`rxen_core::vlapic`].

use rxen_core::vlapic::{DeliveryMode, Icr, Shorthand, Vlapic, WriteEffect};
use rxen_x86::svm::vmcb::{control, save};
use rxen_x86::{log, printk};

use super::emulate::Mmio;
use super::HvmDomain;

/// The register page of one vCPU's APIC as an MMIO device.
pub struct LapicPage<'a> {
    /// The APIC.
    pub lapic: &'a mut Vlapic,
    /// System time of the access.
    pub now: u64,
    /// What the write asks of the domain, carried out after the access
    /// ([`carry_out`]).
    pub effect: WriteEffect,
}

/// Accesses other than aligned 32-bit ones logged so far (rate limit).
static ODD_ACCESSES: rxen_core::log::RateLimit = rxen_core::log::RateLimit::new();

fn odd_access(gpa: u64, size: u32, write: bool) {
    if ODD_ACCESSES.allow() {
        log!(
            Info,
            "vlapic: {size}-byte {} at {gpa:#x} ignored",
            if write { "write" } else { "read" }
        );
    }
}

impl Mmio for LapicPage<'_> {
    fn read(&mut self, gpa: u64, size: u32) -> u64 {
        let offset = (gpa & 0xFFF) as u32;
        let within = offset & 0xF;
        if within + size > 4 {
            odd_access(gpa, size, false);
            return 0;
        }
        // Narrow reads of a register see its bytes.
        let value = self.lapic.read(offset & !0xF, self.now) >> (within * 8);
        u64::from(value)
    }

    fn write(&mut self, gpa: u64, size: u32, value: u64) {
        let offset = (gpa & 0xFFF) as u32;
        if size != 4 || offset & 0xF != 0 {
            odd_access(gpa, size, true);
            return;
        }
        self.effect = self.lapic.write(offset, value as u32, self.now);
    }
}

/// Whether `gpa` is in the register page of vCPU `v`'s APIC: enabled
/// and in xAPIC mode (in x2APIC mode the page is not decoded and reads as
/// unbacked memory, as Xen's `vlapic_range`).
pub fn is_lapic_page(domain: &HvmDomain, v: usize, gpa: u64) -> bool {
    let lapic = &domain.core.vcpus[v].lapic;
    lapic.xapic_mode() && gpa & !0xFFF == lapic.base()
}

/// Carries out what a register write of vCPU `v`'s APIC (through the page
/// or an x2APIC MSR) asks of the domain: an interrupt command, the EOI of a
/// level-triggered vector.
pub fn carry_out(domain: &mut HvmDomain, v: usize, effect: WriteEffect) {
    match effect {
        WriteEffect::SendIpi(icr) => send_ipi(domain, v, icr),
        WriteEffect::EoiLevel(vector) => eoi_level(domain, vector),
        WriteEffect::TimerChanged | WriteEffect::None => {}
    }
}

/// Carries out interrupt command `icr` of vCPU `from`: the targets of the
/// same domain get the interrupt (and wake up), or INIT and start-up.
pub fn send_ipi(domain: &mut HvmDomain, from: usize, icr: Icr) {
    let id = domain.core.id;
    for t in 0..domain.core.vcpus.len() {
        let lapic = &domain.core.vcpus[t].lapic;
        let target = match icr.shorthand {
            Shorthand::None => lapic.accepts(icr.dest, icr.logical),
            Shorthand::SelfOnly => t == from,
            Shorthand::All => true,
            Shorthand::AllButSelf => t != from,
        };
        if !target {
            continue;
        }
        let vcpu = &mut domain.core.vcpus[t];
        match icr.mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if vcpu.lapic.enabled() && vcpu.lapic.set_irq(icr.vector) {
                    vcpu.blocked = None;
                }
                if icr.mode == DeliveryMode::LowestPriority {
                    // Lowest priority: one target (the first that matches).
                    return;
                }
            }
            DeliveryMode::Nmi => {
                vcpu.lapic.set_nmi();
                vcpu.blocked = None;
            }
            DeliveryMode::Init => {
                if vcpu.up || t == from {
                    log!(
                        Info,
                        "d{id}v{from}: INIT to running vCPU {t} ignored (not emulated)"
                    );
                    continue;
                }
                vcpu.lapic.reset();
                vcpu.lapic.wait_for_sipi = true;
            }
            DeliveryMode::Startup => {
                if vcpu.up || !vcpu.lapic.wait_for_sipi || domain.running_on[t].is_some() {
                    continue;
                }
                vcpu.lapic.wait_for_sipi = false;
                vcpu.up = true;
                vcpu.initialised = true;
                vcpu.blocked = None;
                vcpu.pending_context = None;
                domain.vcpus[t].start_real_mode(icr.vector);
                printk!(
                    "d{id}v{t}: started by v{from} in real mode at {:#x}",
                    u32::from(icr.vector) << 12
                );
            }
            DeliveryMode::InitDeassert => {}
            DeliveryMode::Smi | DeliveryMode::Reserved => {
                log!(
                    Info,
                    "d{id}v{from}: interrupt command {:?} not emulated",
                    icr.mode
                );
            }
        }
    }
}

/// Delivers a device interrupt (an MSI, an IO-APIC pin) to the local APICs
/// of `domain` that `dest` and `logical` select: fixed to each, lowest
/// priority to the first, NMI (Xen's `vmsi_deliver`, `vioapic_deliver`).
/// A level-triggered vector is marked in the TMR (its EOI comes back as
/// [`WriteEffect::EoiLevel`]). Targets blocked in HLT wake up.
pub fn deliver_device(
    domain: &mut HvmDomain,
    dest: u8,
    logical: bool,
    mode: DeliveryMode,
    vector: u8,
    level: bool,
) {
    for vcpu in &mut domain.core.vcpus {
        if !vcpu.lapic.accepts(u32::from(dest), logical) {
            continue;
        }
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if vcpu.lapic.enabled() && vcpu.lapic.set_irq_trigger(vector, level) {
                    vcpu.blocked = None;
                }
                if mode == DeliveryMode::LowestPriority {
                    return;
                }
            }
            DeliveryMode::Nmi => {
                vcpu.lapic.set_nmi();
                vcpu.blocked = None;
            }
            _ => return,
        }
    }
}

/// dom0's local APIC ended level-triggered `vector`: its emulated IO-APICs
/// clear the remote IRR of the pins with that vector (Xen's
/// `vioapic_update_EOI`), whose host pins are unmasked; a line still
/// asserted is delivered again.
pub fn eoi_level(domain: &mut HvmDomain, vector: u8) {
    use rxen_core::vioapic::Action;
    let Some(apics) = domain.vioapics.as_mut() else {
        return;
    };
    let mut again = alloc::vec::Vec::new();
    apics.eoi(vector, &mut |action| match action {
        Action::EoiPhysical { gsi } => crate::gsi::end(gsi),
        Action::Deliver { .. } => again.push(action),
        _ => {}
    });
    for action in again {
        deliver_ioapic(domain, action);
    }
}

/// Carries out an emulated IO-APIC's delivery.
pub fn deliver_ioapic(domain: &mut HvmDomain, action: rxen_core::vioapic::Action) {
    if let rxen_core::vioapic::Action::Deliver {
        vector,
        dest,
        logical,
        mode,
        level,
        ..
    } = action
    {
        deliver_device(domain, dest, logical, mode, vector, level);
    }
}

/// V_INTR (int_ctl) bits: V_IRQ, V_INTR_PRIO (16-19), V_IGN_TPR (20), and
/// the vector (V_INTR_VECTOR, the next 32-bit word).
const V_IRQ: u64 = 1 << 8;
const V_INTR_PRIO_SHIFT: u64 = 16;
const V_IGN_TPR: u64 = 1 << 20;
const V_INTR_VECTOR_SHIFT: u64 = 32;

/// Offers `vector` as a virtual interrupt (V_IRQ): the CPU delivers it as
/// soon as the guest can take it (RFLAGS.IF set, no interrupt shadow),
/// ignoring V_TPR (the vLAPIC already chose it over its PPR).
///
/// Why not EVENT_INJ for external interrupts: QEMU's VMRUN (7.2 to 10.0,
/// `helper_vmrun`) delivers an injected INTR and leaves it in
/// `exception_index`, so the next exit request of the emulated CPU
/// (another vCPU's turn, a kick) delivers it a second time, at the first
/// instruction of the handler with interrupts off. From user mode that
/// second entry runs on the user's GS and Linux dies of recursive page
/// faults in its entry trampoline. Virtual interrupts go through QEMU's
/// interrupt path, which delivers once.
fn offer(vmcb: &mut rxen_x86::svm::vmcb::Vmcb, vector: u8) {
    let v_intr =
        vmcb.read64(control::V_INTR) & !(0xFF << V_INTR_VECTOR_SHIFT) & !(0xF << V_INTR_PRIO_SHIFT);
    vmcb.write64(
        control::V_INTR,
        v_intr
            | V_IRQ
            | V_IGN_TPR
            | u64::from(vector >> 4) << V_INTR_PRIO_SHIFT
            | u64::from(vector) << V_INTR_VECTOR_SHIFT,
    );
    let misc1 = vmcb.read32(control::INTERCEPT_MISC1);
    vmcb.write32(control::INTERCEPT_MISC1, misc1 & !(1 << 4));
}

/// Asks for an exit as soon as the guest can take an interrupt (V_IRQ at
/// top priority ignoring V_TPR, and the VINTR intercept).
fn request_window(vmcb: &mut rxen_x86::svm::vmcb::Vmcb) {
    let v_intr = vmcb.read64(control::V_INTR);
    vmcb.write64(
        control::V_INTR,
        v_intr | V_IRQ | (0xF << V_INTR_PRIO_SHIFT) | V_IGN_TPR,
    );
    let misc1 = vmcb.read32(control::INTERCEPT_MISC1);
    vmcb.write32(control::INTERCEPT_MISC1, misc1 | (1 << 4));
}

/// Withdraws a request for an interrupt window or an offered interrupt.
fn clear_window(vmcb: &mut rxen_x86::svm::vmcb::Vmcb) {
    let v_intr = vmcb.read64(control::V_INTR);
    vmcb.write64(control::V_INTR, v_intr & !V_IRQ);
    let misc1 = vmcb.read32(control::INTERCEPT_MISC1);
    vmcb.write32(control::INTERCEPT_MISC1, misc1 & !(1 << 4));
}

/// At an exit of vCPU `v`, before anything else looks at its APIC: the
/// interrupt offered at the last entry was taken (V_IRQ cleared by the
/// CPU: an APIC vector goes in service now) or is withdrawn (the next
/// entry offers what is pending then).
pub fn reconcile_offer(domain: &mut HvmDomain, v: usize) {
    let vcpu = &mut domain.vcpus[v];
    let Some((vector, callback)) = vcpu.virq_offer.take() else {
        return;
    };
    if vcpu.vmcb.read64(control::V_INTR) & V_IRQ == 0 {
        if !callback {
            domain.core.vcpus[v].lapic.acknowledge(vector);
        }
    } else {
        clear_window(&mut vcpu.vmcb);
    }
}

/// Injects what vCPU `v` should take now: an NMI, else the callback vector
/// of HVM_PARAM_CALLBACK_IRQ while an upcall is pending (`callback`, which
/// does not go through the APIC, as on Xen), else the highest vector the
/// APIC lets through (it goes in service). When the guest cannot take an
/// interrupt now, an interrupt window is requested instead.
///
/// The interrupt shadow of an STI (or MOV SS) is kept across the entry by
/// the hypervisor itself: QEMU's VMRUN does not load the VMCB's interrupt
/// shadow, so a window requested while the guest is in one opens one
/// instruction early, before the instruction the STI protects. A guest
/// that checks for events with interrupts off and then sleeps with
/// `sti; hlt` or `sti; vmmcall` (SCHEDOP_block) would then take the
/// upcall just before it sleeps and sleep with nothing left to wake it (a
/// lost wake-up: issue 14, defect 14). When that instruction is HLT or
/// VMMCALL, which exit anyway, nothing is injected or requested now: the
/// exit right after it does (and does not block with the upcall pending).
pub fn inject(domain: &mut HvmDomain, v: usize, callback: Option<u8>) {
    let vcpu = &mut domain.vcpus[v];
    let rip = vcpu.vmcb.read64(save::RIP);
    let shadow = vcpu.vmcb.read64(control::INTERRUPT_SHADOW) & 1 != 0;
    let busy = vcpu.vmcb.read64(control::EVENT_INJ) & (1 << 31) != 0;
    let lapic = &domain.core.vcpus[v].lapic;
    let wanted = callback.is_some() || lapic.nmi_pending() || lapic.pending_vector().is_some();
    if (shadow || vcpu.shadow_rip == Some(rip))
        && wanted
        && !busy
        && super::emulate::next_instruction_exits(&vcpu.vmcb, &domain.memory)
    {
        // No window either (one requested earlier would open at once).
        clear_window(&mut vcpu.vmcb);
        return;
    }
    let lapic = &mut domain.core.vcpus[v].lapic;
    let vmcb = &mut domain.vcpus[v].vmcb;
    if lapic.nmi_pending() {
        if !busy && !shadow {
            lapic.take_nmi();
            vmcb.write64(control::EVENT_INJ, 2 | (2 << 8) | (1 << 31));
        } else {
            request_window(vmcb);
        }
        return;
    }
    let vector = callback.or_else(|| lapic.pending_vector());
    let Some(vector) = vector else {
        return;
    };
    // Offered as a virtual interrupt, taken when the guest can (after an
    // event being injected now, once interrupts are on); the next exit
    // looks whether it was (`reconcile_offer`).
    offer(vmcb, vector);
    domain.vcpus[v].virq_offer = Some((vector, callback.is_some()));
}
