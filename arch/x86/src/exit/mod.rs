//! Why a vCPU left the guest, in vendor-neutral terms: the vendor code
//! (`svm/`, and a `vmx/` sibling for Intel VT-x later) decodes its exit
//! information into an [`Exit`], and the hypervisor's HVM layer handles
//! `Exit`s without knowing the vendor. The exits a vCPU's own state
//! answers (CPUID, XSETBV, MSR, port I/O) are served here too, over the
//! [`ExitVcpu`] trait (`vcpu.rs`, `handle.rs`), so that they run in host
//! tests against a fake vCPU.

pub mod handle;
pub mod vcpu;

pub use vcpu::{ExitVcpu, Gpr};

/// A port I/O access that exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// The port.
    pub port: u16,
    /// Bytes per transfer: 1, 2 or 4.
    pub size: u8,
    /// IN (else OUT).
    pub is_in: bool,
    /// INS/OUTS.
    pub string: bool,
    /// With a REP prefix.
    pub rep: bool,
    /// The instruction after the access.
    pub next_rip: u64,
}

impl IoAccess {
    /// RAX after an IN of this size read `value`, as the CPU merges it: an
    /// 8- or 16-bit IN keeps the rest of RAX, a 32-bit one zeroes the
    /// upper half.
    pub fn in_result(&self, rax: u64, value: u32) -> u64 {
        let mask = match self.size {
            1 => 0xFF,
            2 => 0xFFFF,
            _ => return u64::from(value),
        };
        (rax & !mask) | (u64::from(value) & mask)
    }

    /// What an IN of this size reads from a port with nothing behind it
    /// (all ones in the access size), merged into `rax`.
    pub fn empty_bus_read(&self, rax: u64) -> u64 {
        self.in_result(rax, u32::MAX)
    }
}

/// A nested (second-stage) page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NestedFault {
    /// The guest-physical address.
    pub gpa: u64,
    /// A write access.
    pub write: bool,
    /// The fault hit the guest's own page walk, not the instruction's
    /// access.
    pub in_guest_walk: bool,
    /// The vendor's raw fault information (for reports).
    pub raw: u64,
}

/// One exit, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A physical interrupt or NMI arrived (the host handles it).
    Interrupt,
    /// The guest can take an interrupt now (the window asked for opened).
    InterruptWindow,
    /// CPUID.
    Cpuid,
    /// A hypercall instruction (VMMCALL; VMCALL on Intel).
    Hypercall,
    /// HLT.
    Hlt,
    /// IN/OUT/INS/OUTS.
    Io(IoAccess),
    /// RDMSR (`write` None) or WRMSR of EDX:EAX.
    Msr {
        /// ECX.
        index: u32,
        /// The value written, for WRMSR.
        write: Option<u64>,
    },
    /// A nested page fault.
    NestedPageFault(NestedFault),
    /// XSETBV of EDX:EAX to XCR `index`.
    Xsetbv {
        /// ECX.
        index: u32,
        /// EDX:EAX.
        value: u64,
    },
    /// A write to CR0 or CR4 (`cr` is 0 or 4) to be emulated.
    CrWrite(u8),
    /// A MOV to or from a debug register, the vendor's exit code kept for
    /// the decoder and reports.
    DebugRegister(u64),
    /// INVD.
    Invd,
    /// A virtualization instruction the guest is not offered (#UD).
    VirtualizationInstruction,
    /// The guest triple-faulted.
    TripleFault,
    /// The CPU refused the guest state on entry.
    InvalidState,
    /// Anything else: the vendor's exit code.
    Unknown(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(size: u8) -> IoAccess {
        IoAccess {
            port: 0x21,
            size,
            is_in: true,
            string: false,
            rep: false,
            next_rip: 0,
        }
    }

    #[test]
    fn an_empty_bus_reads_all_ones_in_the_access_size() {
        let rax = 0x1122_3344_5566_7788;
        assert_eq!(io(1).empty_bus_read(rax), 0x1122_3344_5566_77FF);
        assert_eq!(io(2).empty_bus_read(rax), 0x1122_3344_5566_FFFF);
        assert_eq!(io(4).empty_bus_read(rax), 0xFFFF_FFFF);
    }

    #[test]
    fn an_in_merges_as_the_cpu_does() {
        let rax = 0x1122_3344_5566_7788;
        assert_eq!(io(1).in_result(rax, 0xAABB_CCDD), 0x1122_3344_5566_77DD);
        assert_eq!(io(2).in_result(rax, 0xAABB_CCDD), 0x1122_3344_5566_CCDD);
        assert_eq!(io(4).in_result(rax, 0xAABB_CCDD), 0xAABB_CCDD);
    }
}
