//! Emulation of guest accesses to guest-physical addresses with no RAM
//! behind them: an emulated device (the local APIC) or nothing, where, as on
//! Xen, reads return all ones and writes are dropped ([`Unbacked`]); and of
//! writes to read-only grant mappings, which Xen drops ([`DiscardWrites`]).
//! The faulting instruction is fetched through the guest's page tables and
//! decoded (QEMU gives no decode assists); only moves are emulated, anything
//! else is reported so the domain can be crashed.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use rxen_core::mm::Gpa;
use rxen_x86::svm::guest_walk::PagingRegs;
use rxen_x86::svm::vmcb::{save, Vmcb};
use rxen_x86::svm::GuestRegs;

use super::memory::GuestMemory;
use super::regs::{advance_rip, read_gpr, write_gpr, Gpr};

/// Why an access could not be emulated.
#[derive(Debug)]
pub enum EmulationError {
    /// The instruction bytes could not be read.
    Fetch,
    /// Not an instruction we emulate.
    Unsupported(Mnemonic),
}

impl core::fmt::Display for EmulationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Fetch => f.write_str("instruction not readable or not decodable"),
            Self::Unsupported(mnemonic) => write!(f, "{mnemonic:?} is not emulated"),
        }
    }
}

/// The guest's paging registers from its VMCB.
/// The paging registers of vCPU `v` of `vcpus`, or paging off if there is
/// no such vCPU (a created domain before `max_vcpus`): guest-linear is
/// guest-physical then.
pub fn vcpu_paging_regs(vcpus: &[super::vcpu::SvmVcpu], v: usize) -> PagingRegs {
    vcpus.get(v).map_or(
        PagingRegs {
            cr0: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
        },
        |vcpu| paging_regs(&vcpu.vmcb),
    )
}

/// The guest's paging registers in `vmcb`.
pub fn paging_regs(vmcb: &Vmcb) -> PagingRegs {
    PagingRegs {
        cr0: vmcb.read64(save::CR0),
        cr3: vmcb.read64(save::CR3),
        cr4: vmcb.read64(save::CR4),
        efer: vmcb.read64(save::EFER),
    }
}

/// The bytes at the guest's CS:RIP (up to 15), how many could be read, and
/// the code size in bits.
pub(super) fn fetch(
    vmcb: &Vmcb,
    memory: &GuestMemory,
) -> Result<([u8; 15], usize, u32), EmulationError> {
    let cs = vmcb.segment(save::CS);
    let rip = vmcb.read64(save::RIP);
    let long_mode =
        vmcb.read64(save::EFER) & rxen_x86::ctrlreg::efer::LMA != 0 && cs.attrib & (1 << 9) != 0;
    let linear = if long_mode {
        rip
    } else {
        cs.base.wrapping_add(rip) & 0xFFFF_FFFF
    };
    let regs = paging_regs(vmcb);
    let mut bytes = [0u8; 15];
    // Fetch up to the end of the page first, then the rest if it is mapped.
    let first = (4096 - (linear % 4096) as usize).min(15);
    memory
        .read_linear(&regs, linear, &mut bytes[..first])
        .map_err(|_| EmulationError::Fetch)?;
    let mut len = first;
    if first < 15
        && memory
            .read_linear(&regs, linear + first as u64, &mut bytes[first..])
            .is_ok()
    {
        len = 15;
    }
    let bitness: u32 = if long_mode {
        64
    } else if cs.attrib & (1 << 10) != 0 {
        32
    } else {
        16
    };
    Ok((bytes, len, bitness))
}

/// Whether the guest's next instruction (at RIP) is one that always exits
/// to the hypervisor here: HLT or VMMCALL (both intercepted). False when it
/// cannot be read.
pub fn next_instruction_exits(vmcb: &Vmcb, memory: &GuestMemory) -> bool {
    match fetch(vmcb, memory) {
        Ok((bytes, len, _)) => {
            (len >= 1 && bytes[0] == 0xF4) || (len >= 3 && bytes[..3] == [0x0F, 0x01, 0xD9])
        }
        Err(_) => false,
    }
}

/// (GPR, width in bytes, high byte?) of an iced register.
pub(super) fn gpr_of(register: Register) -> Option<(Gpr, u32, bool)> {
    let full = register.full_register();
    let index = match full {
        Register::RAX => 0,
        Register::RCX => 1,
        Register::RDX => 2,
        Register::RBX => 3,
        Register::RSP => 4,
        Register::RBP => 5,
        Register::RSI => 6,
        Register::RDI => 7,
        Register::R8 => 8,
        Register::R9 => 9,
        Register::R10 => 10,
        Register::R11 => 11,
        Register::R12 => 12,
        Register::R13 => 13,
        Register::R14 => 14,
        Register::R15 => 15,
        _ => return None,
    };
    let high = matches!(
        register,
        Register::AH | Register::CH | Register::DH | Register::BH
    );
    Some((Gpr(index), register.size() as u32, high))
}

/// Writes `value` (of the register's width) into `register` with x86's
/// rules: 32-bit writes zero the upper half, 8/16-bit writes keep the rest.
pub(super) fn set_register(
    vmcb: &mut Vmcb,
    regs: &mut GuestRegs,
    register: Register,
    value: u64,
) -> bool {
    let Some((gpr, width, high)) = gpr_of(register) else {
        return false;
    };
    let old = read_gpr(vmcb, regs, gpr);
    let new = match (width, high) {
        (1, true) => (old & !0xFF00) | ((value & 0xFF) << 8),
        (1, false) => (old & !0xFF) | (value & 0xFF),
        (2, _) => (old & !0xFFFF) | (value & 0xFFFF),
        (4, _) => value & 0xFFFF_FFFF,
        _ => value,
    };
    write_gpr(vmcb, regs, gpr, new);
    true
}

fn ones(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (bytes * 8)) - 1
    }
}

/// A device behind guest-physical addresses: what loads read and where
/// stores go. `size` is the access width in bytes (1, 2, 4 or 8).
pub trait Mmio {
    /// A load of `size` bytes at `gpa`.
    fn read(&mut self, gpa: u64, size: u32) -> u64;
    /// A store of `value` (`size` bytes) at `gpa`.
    fn write(&mut self, gpa: u64, size: u32, value: u64);
}

/// Nothing there: reads are all ones, writes are dropped.
pub struct Unbacked;

impl Mmio for Unbacked {
    fn read(&mut self, _gpa: u64, size: u32) -> u64 {
        ones(size as usize)
    }

    fn write(&mut self, _gpa: u64, _size: u32, _value: u64) {}
}

/// A read-only page (a read-only grant mapping): loads read it, stores are
/// dropped, as Xen's write-discard pages.
pub struct DiscardWrites<'a> {
    /// The memory the page is mapped in.
    pub memory: &'a GuestMemory,
}

impl Mmio for DiscardWrites<'_> {
    fn read(&mut self, gpa: u64, size: u32) -> u64 {
        let mut bytes = [0u8; 8];
        let len = (size as usize).min(8);
        match self.memory.read_phys(Gpa(gpa), &mut bytes[..len]) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => ones(len),
        }
    }

    fn write(&mut self, _gpa: u64, _size: u32, _value: u64) {}
}

/// The value a store's source operand (a register or an immediate) holds.
fn store_value(vmcb: &Vmcb, regs: &GuestRegs, instruction: &Instruction) -> Option<u64> {
    match instruction.op1_kind() {
        OpKind::Register => {
            let (gpr, _, high) = gpr_of(instruction.op1_register())?;
            let value = read_gpr(vmcb, regs, gpr);
            Some(if high { value >> 8 } else { value })
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate8to32
        | OpKind::Immediate32to64 => Some(instruction.immediate(1)),
        _ => None,
    }
}

/// Sign-extends the low `bytes` bytes of `value`.
fn sign_extend(value: u64, bytes: usize) -> u64 {
    if bytes >= 8 {
        return value;
    }
    let shift = 64 - bytes * 8;
    (((value << shift) as i64) >> shift) as u64
}

/// Emulates the instruction at RIP that touched guest-physical `gpa`, which
/// `device` serves. Returns the decoded instruction on success (for
/// logging).
pub fn mmio_access(
    vmcb: &mut Vmcb,
    regs: &mut GuestRegs,
    memory: &GuestMemory,
    gpa: u64,
    device: &mut dyn Mmio,
) -> Result<Instruction, EmulationError> {
    let (bytes, len, bitness) = fetch(vmcb, memory)?;
    let mut decoder = Decoder::with_ip(
        bitness,
        &bytes[..len],
        vmcb.read64(save::RIP),
        DecoderOptions::NONE,
    );
    let instruction = decoder.decode();
    if instruction.is_invalid() {
        return Err(EmulationError::Fetch);
    }
    let mnemonic = instruction.mnemonic();
    let memory_size = instruction.memory_size().size();
    let size = memory_size as u32;
    let handled = match mnemonic {
        Mnemonic::Mov if instruction.op0_kind() == OpKind::Memory => {
            match store_value(vmcb, regs, &instruction) {
                Some(value) => {
                    device.write(gpa, size, value & ones(memory_size));
                    true
                }
                None => false,
            }
        }
        Mnemonic::Mov | Mnemonic::Movzx if instruction.op1_kind() == OpKind::Memory => {
            let value = device.read(gpa, size) & ones(memory_size);
            set_register(vmcb, regs, instruction.op0_register(), value)
        }
        Mnemonic::Movsx | Mnemonic::Movsxd if instruction.op1_kind() == OpKind::Memory => {
            let value = sign_extend(device.read(gpa, size), memory_size);
            set_register(vmcb, regs, instruction.op0_register(), value)
        }
        _ => false,
    };
    if !handled {
        return Err(EmulationError::Unsupported(mnemonic));
    }
    advance_rip(vmcb, instruction.len() as u64);
    Ok(instruction)
}
