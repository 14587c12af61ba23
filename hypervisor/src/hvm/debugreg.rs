//! Debug registers (issue 14, defect 10). The VMCB holds a vCPU's DR6 and
//! DR7, which VMRUN and #VMEXIT switch; DR0-DR3 it does not hold. rxen
//! intercepts every MOV to or from a debug register and emulates it on the
//! vCPU's own copy ([`DebugRegs`]), so a guest never reads what another
//! guest left in the CPU's DR0-DR3. The addresses are loaded into the CPU
//! just before VMRUN while the vCPU's DR7 arms a breakpoint, so breakpoints
//! work and follow the vCPU; #VMEXIT disarms them for the hypervisor (APM
//! vol. 2, 15.7.1), and another vCPU runs with its own DR7.
//!
//! Xen (`svm_dr_access`) instead stops intercepting after the first access
//! and saves DR0-DR3 when the vCPU is descheduled. Emulating every access
//! costs an exit per MOV DR, which guests do rarely (debuggers, `perf`);
//! and under QEMU's TCG it is what keeps one guest's breakpoints out of the
//! hypervisor and other guests: a breakpoint a guest arms with its own MOV
//! to DR7 stays armed in QEMU across #VMEXIT and VMRUN.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use rxen_x86::svm::vmcb::{save, Vmcb};
use rxen_x86::svm::GuestRegs;

use super::emulate::{fetch, gpr_of, set_register};
use super::memory::GuestMemory;
use super::regs::{advance_rip, read_gpr};

/// DR6 bits a MOV can change: B0-B3, BD, BS, BT.
const DR6_WRITABLE: u64 = 0xE00F;
/// DR6 bits that read as one (AMD: 4-11 and 16-31).
const DR6_FIXED_1: u64 = 0xFFFF_0FF0;
/// DR7 bits a MOV can change: L0-G3, LE, GE, GD, R/W and LEN fields.
const DR7_WRITABLE: u64 = 0xFFFF_23FF;
/// DR7 bit that reads as one.
const DR7_FIXED_1: u64 = 0x400;
/// DR7's enable bits (L0, G0 ... L3, G3).
const DR7_ENABLES: u64 = 0xFF;
/// CR4.DE: DR4/DR5 are not aliases of DR6/DR7 but #UD.
const CR4_DE: u64 = rxen_x86::ctrlreg::cr4::DE;

/// A vCPU's breakpoint addresses (DR0-DR3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugRegs(pub [u64; 4]);

impl DebugRegs {
    /// Loads the addresses into this CPU if the vCPU's DR7 arms any
    /// breakpoint (called just before VMRUN, interrupts off).
    pub fn load_if_armed(&self, vmcb: &Vmcb) {
        if vmcb.read64(save::DR7) & DR7_ENABLES != 0 {
            rxen_x86::cpu::load_debug_addresses(&self.0);
        }
    }
}

/// What the guest gets for a MOV DR it may not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrFault {
    /// #GP(0): CPL > 0, or reserved bits in a DR6/DR7 value.
    GeneralProtection,
    /// #UD: DR4/DR5 with CR4.DE, or DR8-DR15.
    InvalidOpcode,
}

/// Why a MOV DR could not be emulated at all (the domain is crashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undecodable;

/// Emulates the MOV to or from a debug register at the guest's RIP
/// (exit code `DR_READ + n` or `DR_WRITE + n`): reads come from the VMCB
/// (DR6, DR7) or `dr` (DR0-DR3), writes go there. Advances RIP on success.
pub fn mov_dr(
    vmcb: &mut Vmcb,
    regs: &mut GuestRegs,
    dr: &mut DebugRegs,
    memory: &GuestMemory,
) -> Result<Result<(), DrFault>, Undecodable> {
    let (bytes, len, bitness) = fetch(vmcb, memory).map_err(|_| Undecodable)?;
    let rip = vmcb.read64(save::RIP);
    let instruction = Decoder::with_ip(bitness, &bytes[..len], rip, DecoderOptions::NONE).decode();
    if instruction.is_invalid()
        || instruction.mnemonic() != Mnemonic::Mov
        || instruction.op0_kind() != OpKind::Register
        || instruction.op1_kind() != OpKind::Register
    {
        return Err(Undecodable);
    }
    let (to_dr, dr_reg, gpr) = match (instruction.op0_register(), instruction.op1_register()) {
        (d, g) if is_dr(d) => (true, d, g),
        (g, d) if is_dr(d) => (false, d, g),
        _ => return Err(Undecodable),
    };
    if vmcb.cpl() != 0 {
        return Ok(Err(DrFault::GeneralProtection));
    }
    let cr4 = vmcb.read64(save::CR4);
    let n = dr_index(dr_reg);
    let n = match n {
        0..=3 | 6 | 7 => n,
        4 | 5 if cr4 & CR4_DE == 0 => n + 2,
        _ => return Ok(Err(DrFault::InvalidOpcode)),
    };
    let Some((gpr_index, width, _)) = gpr_of(gpr) else {
        return Err(Undecodable);
    };
    if to_dr {
        let mut value = read_gpr(vmcb, regs, gpr_index);
        if width == 4 {
            value &= 0xFFFF_FFFF;
        }
        match n {
            0..=3 => dr.0[n] = value,
            6 | 7 if value >> 32 != 0 => return Ok(Err(DrFault::GeneralProtection)),
            6 => vmcb.write64(save::DR6, (value & DR6_WRITABLE) | DR6_FIXED_1),
            _ => vmcb.write64(save::DR7, (value & DR7_WRITABLE) | DR7_FIXED_1),
        }
    } else {
        let value = match n {
            0..=3 => dr.0[n],
            6 => vmcb.read64(save::DR6),
            _ => vmcb.read64(save::DR7),
        };
        if !set_register(vmcb, regs, gpr, value) {
            return Err(Undecodable);
        }
    }
    advance_rip(vmcb, instruction.len() as u64);
    Ok(Ok(()))
}

fn is_dr(register: Register) -> bool {
    (Register::DR0 as u32..=Register::DR15 as u32).contains(&(register as u32))
}

fn dr_index(register: Register) -> usize {
    (register as u32).saturating_sub(Register::DR0 as u32) as usize
}
