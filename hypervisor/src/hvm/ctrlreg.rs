//! Guest writes to CR0 and CR4 (intercepted, as Xen intercepts them) and to
//! EFER (through the MSR exit): the instruction is decoded (QEMU gives no
//! decode assists), the new value checked by Xen's rules against the
//! guest's CPUID policy (`rxen_x86::ctrlreg`), and either loaded into the
//! VMCB or refused with #GP. So no value a guest picks can make VMRUN fail
//! (which would end the domain as VMEXIT_INVALID).

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use rxen_core::log::RateLimit;
use rxen_x86::ctrlreg::{self, cr0, efer, CrState, GuestFeatures, Refused};
use rxen_x86::svm::vmcb::{save, Vmcb};
use spin::Once;

use super::emulate::{fetch, gpr_of};
use super::memory::GuestMemory;
use super::regs::{advance_rip, read_gpr};
use super::vcpu::SvmVcpu;

/// EFER.SVME, which must stay set in the VMCB (and which guests never see).
const EFER_SVME: u64 = efer::SVME;

/// The features of the guest CPUID policy (the same for every domain).
pub fn guest_features() -> &'static GuestFeatures {
    static FEATURES: Once<GuestFeatures> = Once::new();
    FEATURES.call_once(|| {
        let ctx = rxen_x86::cpuid_policy::CpuidContext {
            vcpu_id: 0,
            domid: 0,
            tsc_khz: 0,
            nr_vcpus: 1,
            spec: rxen_x86::spec_ctrl::active().offer(),
        };
        let host = |leaf: u32, sub: u32| {
            let r = raw_cpuid::cpuid!(leaf, sub);
            [r.eax, r.ebx, r.ecx, r.edx]
        };
        GuestFeatures::from_cpuid(&|leaf, sub| {
            rxen_x86::cpuid_policy::guest_cpuid(leaf, sub, &ctx, &host)
        })
    })
}

/// The state a write is judged against, from the VMCB.
fn state(vmcb: &Vmcb) -> CrState {
    CrState {
        cr0: vmcb.read64(save::CR0),
        cr3: vmcb.read64(save::CR3),
        cr4: vmcb.read64(save::CR4),
        efer: vmcb.read64(save::EFER) & !EFER_SVME,
        cs_l: vmcb.segment(save::CS).attrib & (1 << 9) != 0,
    }
}

/// Refused writes logged so far (rate limit).
static REFUSED_LOGGED: RateLimit = RateLimit::new();

fn refuse(vcpu: &mut SvmVcpu, domid: u16, v: usize, what: &str, value: u64, why: Refused) {
    if REFUSED_LOGGED.allow() {
        rxen_x86::log!(
            Info,
            "d{domid}v{v}: {what} write {value:#x} refused ({why:?}): #GP"
        );
    }
    vcpu.inject_exception(13, Some(0));
}

/// Why a CR write exit could not be served (the domain is crashed).
#[derive(Debug)]
pub struct Undecodable;

/// Serves a CR0 (`cr` = 0) or CR4 (`cr` = 4) write exit of vCPU `v`.
#[inline(never)]
pub fn write_cr(
    vcpu: &mut SvmVcpu,
    memory: &GuestMemory,
    domid: u16,
    v: usize,
    cr: u8,
) -> Result<(), Undecodable> {
    let (bytes, len, bitness) = fetch(&vcpu.vmcb, memory).map_err(|_| Undecodable)?;
    let rip = vcpu.vmcb.read64(save::RIP);
    let instruction = Decoder::with_ip(bitness, &bytes[..len], rip, DecoderOptions::NONE).decode();
    if instruction.is_invalid() {
        return Err(Undecodable);
    }
    if vcpu.vmcb.cpl() != 0 {
        // The CPU checks the privilege before the intercept; in case not.
        vcpu.inject_exception(13, Some(0));
        return Ok(());
    }
    let old = match cr {
        0 => vcpu.vmcb.read64(save::CR0),
        _ => vcpu.vmcb.read64(save::CR4),
    };
    let target = if cr == 0 {
        Register::CR0
    } else {
        Register::CR4
    };
    let value = match instruction.mnemonic() {
        Mnemonic::Mov
            if instruction.op0_register() == target
                && instruction.op1_kind() == OpKind::Register =>
        {
            let (gpr, _, _) = gpr_of(instruction.op1_register()).ok_or(Undecodable)?;
            let value = read_gpr(&vcpu.vmcb, &vcpu.regs, gpr);
            // Outside 64-bit mode the operand is 32 bits.
            if bitness == 64 {
                value
            } else {
                value & 0xFFFF_FFFF
            }
        }
        Mnemonic::Clts if cr == 0 => old & !cr0::TS,
        Mnemonic::Lmsw if cr == 0 => {
            let source = match instruction.op0_kind() {
                OpKind::Register => {
                    let (gpr, _, _) = gpr_of(instruction.op0_register()).ok_or(Undecodable)?;
                    read_gpr(&vcpu.vmcb, &vcpu.regs, gpr)
                }
                OpKind::Memory => {
                    lmsw_operand(&vcpu.vmcb, &vcpu.regs, memory, &instruction).ok_or(Undecodable)?
                }
                _ => return Err(Undecodable),
            };
            // LMSW loads MP, EM and TS and can set PE but not clear it.
            (old & !0xE) | (source & 0xF) | (old & cr0::PE)
        }
        // Not the instruction that exited (another vCPU rewrote the code
        // meanwhile): run it again.
        _ => return Ok(()),
    };
    let state = state(&vcpu.vmcb);
    if cr == 0 {
        match ctrlreg::set_cr0(value, &state) {
            Ok((cr0, efer)) => {
                vcpu.vmcb.write64(save::CR0, cr0);
                vcpu.vmcb.write64(save::EFER, efer | EFER_SVME);
            }
            Err(why) => {
                refuse(vcpu, domid, v, "CR0", value, why);
                return Ok(());
            }
        }
    } else {
        match ctrlreg::set_cr4(value, &state, guest_features()) {
            Ok(cr4) => vcpu.vmcb.write64(save::CR4, cr4),
            Err(why) => {
                refuse(vcpu, domid, v, "CR4", value, why);
                return Ok(());
            }
        }
    }
    // Paging may have changed: the guest's TLB entries go.
    vcpu.flush_tlb = true;
    advance_rip(&mut vcpu.vmcb, instruction.len() as u64);
    Ok(())
}

/// The 16-bit memory operand of `LMSW m16`.
fn lmsw_operand(
    vmcb: &Vmcb,
    regs: &rxen_x86::svm::GuestRegs,
    memory: &GuestMemory,
    instruction: &iced_x86::Instruction,
) -> Option<u64> {
    let address = instruction.virtual_address(0, 0, |register, _, _| {
        let segment = match register {
            Register::ES => Some(save::ES),
            Register::CS => Some(save::CS),
            Register::SS => Some(save::SS),
            Register::DS => Some(save::DS),
            Register::FS => Some(save::FS),
            Register::GS => Some(save::GS),
            _ => None,
        };
        if let Some(offset) = segment {
            return Some(vmcb.segment(offset).base);
        }
        let (gpr, width, _) = gpr_of(register)?;
        let value = read_gpr(vmcb, regs, gpr);
        Some(match width {
            2 => value & 0xFFFF,
            4 => value & 0xFFFF_FFFF,
            _ => value,
        })
    })?;
    let mut bytes = [0u8; 2];
    memory
        .read_linear(&super::emulate::paging_regs(vmcb), address, &mut bytes)
        .ok()?;
    Some(u64::from(u16::from_le_bytes(bytes)))
}

/// A WRMSR to EFER by vCPU `v`: loaded (SVME kept on) or refused with #GP.
/// Returns whether it was loaded.
pub fn write_efer(vcpu: &mut SvmVcpu, domid: u16, v: usize, value: u64) -> bool {
    match ctrlreg::set_efer(value, &state(&vcpu.vmcb), guest_features()) {
        Ok((new, clear_cs_l)) => {
            vcpu.vmcb.write64(save::EFER, new | EFER_SVME);
            if clear_cs_l {
                // As Xen: the guest stays in compatibility mode until it
                // reloads CS itself, so VMRUN does not see LME with CS.L.
                let mut cs = vcpu.vmcb.segment(save::CS);
                cs.attrib &= !(1 << 9);
                vcpu.vmcb.set_segment(save::CS, cs);
            }
            true
        }
        Err(why) => {
            if REFUSED_LOGGED.allow() {
                rxen_x86::log!(
                    Info,
                    "d{domid}v{v}: EFER write {value:#x} refused ({why:?}): #GP"
                );
            }
            false
        }
    }
}

/// Drops from a VCPUOP_initialise state the control register bits the
/// guest's policy does not allow (Xen refuses such a state with -EINVAL;
/// the core's check does not know the CPU policy), so that VMRUN accepts
/// what is left.
pub fn sanitize_initial(vmcb: &mut Vmcb) {
    let features = guest_features();
    let cr0_value = vmcb.read64(save::CR0) & 0xFFFF_FFFF;
    let mut cr0_value = (cr0_value
        & (cr0::PE
            | cr0::MP
            | cr0::EM
            | cr0::TS
            | cr0::NE
            | cr0::WP
            | cr0::AM
            | cr0::NW
            | cr0::CD
            | cr0::PG))
        | cr0::ET;
    if cr0_value & (cr0::NW | cr0::CD) == cr0::NW {
        cr0_value &= !cr0::NW;
    }
    vmcb.write64(save::CR0, cr0_value);
    let cr4 = vmcb.read64(save::CR4) & features.cr4_valid_bits();
    vmcb.write64(save::CR4, cr4);
    let mut allowed = efer::LME | efer::LMA | EFER_SVME;
    for (has, bit) in [
        (features.syscall, efer::SCE),
        (features.nx, efer::NXE),
        (features.ffxsr, efer::FFXSE),
    ] {
        if has {
            allowed |= bit;
        }
    }
    let efer_value = vmcb.read64(save::EFER) & allowed;
    vmcb.write64(save::EFER, efer_value);
}
