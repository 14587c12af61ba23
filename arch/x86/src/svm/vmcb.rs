//! The VMCB (AMD APM vol. 2, appendix B): a 4 KiB page with the control
//! area at 0x000 and the state-save area at 0x400. Fields are accessed by
//! offset through typed accessors, so the layout is stated once here.

/// Offsets into the control area.
pub mod control {
    /// CR read intercepts (low 16 bits) and CR write intercepts (high 16).
    pub const INTERCEPT_CR: usize = 0x000;
    /// DR read intercepts (low 16 bits) and DR write intercepts (high 16).
    pub const INTERCEPT_DR: usize = 0x004;
    /// Exception intercept bitmap.
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    /// Miscellaneous intercepts, vector 3 (INTR ... SHUTDOWN).
    pub const INTERCEPT_MISC1: usize = 0x00C;
    /// Miscellaneous intercepts, vector 4 (VMRUN ... XSETBV).
    pub const INTERCEPT_MISC2: usize = 0x010;
    /// Physical address of the I/O permission map.
    pub const IOPM_BASE_PA: usize = 0x040;
    /// Physical address of the MSR permission map.
    pub const MSRPM_BASE_PA: usize = 0x048;
    /// Added to the TSC while the guest runs.
    pub const TSC_OFFSET: usize = 0x050;
    /// Guest ASID (u32).
    pub const GUEST_ASID: usize = 0x058;
    /// TLB control (u8).
    pub const TLB_CONTROL: usize = 0x05C;
    /// Virtual interrupt control (V_TPR, V_IRQ, V_INTR_MASKING, vector).
    pub const V_INTR: usize = 0x060;
    /// Interrupt shadow.
    pub const INTERRUPT_SHADOW: usize = 0x068;
    /// Exit code.
    pub const EXIT_CODE: usize = 0x070;
    /// Exit information 1.
    pub const EXIT_INFO1: usize = 0x078;
    /// Exit information 2.
    pub const EXIT_INFO2: usize = 0x080;
    /// Event that was being delivered when the exit happened.
    pub const EXIT_INT_INFO: usize = 0x088;
    /// Nested paging enable (bit 0).
    pub const NP_ENABLE: usize = 0x090;
    /// Event to inject at the next VMRUN.
    pub const EVENT_INJ: usize = 0x0A8;
    /// Nested page table root.
    pub const N_CR3: usize = 0x0B0;
    /// VMCB clean bits.
    pub const CLEAN_BITS: usize = 0x0C0;
    /// Next RIP (only with NRIPS, which QEMU lacks).
    pub const NEXT_RIP: usize = 0x0C8;
}

/// Offsets into the state-save area.
pub mod save {
    /// ES segment (selector u16, attrib u16, limit u32, base u64).
    pub const ES: usize = 0x400;
    /// CS segment.
    pub const CS: usize = 0x410;
    /// SS segment.
    pub const SS: usize = 0x420;
    /// DS segment.
    pub const DS: usize = 0x430;
    /// FS segment.
    pub const FS: usize = 0x440;
    /// GS segment.
    pub const GS: usize = 0x450;
    /// GDTR (limit, base).
    pub const GDTR: usize = 0x460;
    /// LDTR segment.
    pub const LDTR: usize = 0x470;
    /// IDTR (limit, base).
    pub const IDTR: usize = 0x480;
    /// TR segment.
    pub const TR: usize = 0x490;
    /// Current privilege level (u8).
    pub const CPL: usize = 0x4CB;
    /// EFER.
    pub const EFER: usize = 0x4D0;
    /// CR4.
    pub const CR4: usize = 0x548;
    /// CR3.
    pub const CR3: usize = 0x550;
    /// CR0.
    pub const CR0: usize = 0x558;
    /// DR7.
    pub const DR7: usize = 0x560;
    /// DR6.
    pub const DR6: usize = 0x568;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// RIP.
    pub const RIP: usize = 0x578;
    /// RSP.
    pub const RSP: usize = 0x5D8;
    /// RAX.
    pub const RAX: usize = 0x5F8;
    /// STAR.
    pub const STAR: usize = 0x600;
    /// LSTAR.
    pub const LSTAR: usize = 0x608;
    /// CSTAR.
    pub const CSTAR: usize = 0x610;
    /// SFMASK.
    pub const SFMASK: usize = 0x618;
    /// KernelGsBase.
    pub const KERNEL_GS_BASE: usize = 0x620;
    /// SYSENTER_CS.
    pub const SYSENTER_CS: usize = 0x628;
    /// SYSENTER_ESP.
    pub const SYSENTER_ESP: usize = 0x630;
    /// SYSENTER_EIP.
    pub const SYSENTER_EIP: usize = 0x638;
    /// CR2.
    pub const CR2: usize = 0x640;
    /// Guest PAT (with nested paging).
    pub const G_PAT: usize = 0x668;
}

/// Exit codes (APM vol. 2, table C-1) rxen handles.
pub mod exit {
    /// Write to CR0 (MOV, CLTS, LMSW).
    pub const WRITE_CR0: u64 = 0x10;
    /// Write to CR4.
    pub const WRITE_CR4: u64 = 0x14;
    /// MOV from DRn (exit code DR_READ + n).
    pub const DR_READ: u64 = 0x20;
    /// MOV to DRn (exit code DR_WRITE + n).
    pub const DR_WRITE: u64 = 0x30;
    /// First exception exit (vector n is EXCP_BASE + n).
    pub const EXCP_BASE: u64 = 0x40;
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// Virtual interrupt window open (V_IRQ taken).
    pub const VINTR: u64 = 0x64;
    /// INIT.
    pub const INIT: u64 = 0x63;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// INVLPGA.
    pub const INVLPGA: u64 = 0x7A;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7C;
    /// Task switch.
    pub const TASK_SWITCH: u64 = 0x7D;
    /// Triple fault.
    pub const SHUTDOWN: u64 = 0x7F;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// VMLOAD.
    pub const VMLOAD: u64 = 0x82;
    /// VMSAVE.
    pub const VMSAVE: u64 = 0x83;
    /// STGI.
    pub const STGI: u64 = 0x84;
    /// CLGI.
    pub const CLGI: u64 = 0x85;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
    /// RDTSCP.
    pub const RDTSCP: u64 = 0x87;
    /// ICEBP.
    pub const ICEBP: u64 = 0x88;
    /// WBINVD.
    pub const WBINVD: u64 = 0x89;
    /// MONITOR.
    pub const MONITOR: u64 = 0x8A;
    /// MWAIT.
    pub const MWAIT: u64 = 0x8B;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8D;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN consistency check failed.
    pub const INVALID: u64 = u64::MAX;
    /// The same as QEMU 7.2 stores it (its exit code is 32 bits wide).
    pub const INVALID_32: u64 = 0xFFFF_FFFF;
}

/// One segment register as the VMCB stores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Attributes: access byte in bits 0-7, AVL/L/DB/G in bits 8-11.
    pub attrib: u16,
    /// Limit (byte granular, already expanded).
    pub limit: u32,
    /// Base.
    pub base: u64,
}

/// A VMCB page, owned by one vCPU.
#[repr(C, align(4096))]
pub struct Vmcb(pub [u8; 4096]);

impl Vmcb {
    /// A zeroed VMCB.
    pub const fn zeroed() -> Self {
        Self([0; 4096])
    }

    /// Reads the u64 at `offset`.
    pub fn read64(&self, offset: usize) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.0[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    }

    /// Writes the u64 at `offset`.
    pub fn write64(&mut self, offset: usize, value: u64) {
        self.0[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Reads the u32 at `offset`.
    pub fn read32(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&self.0[offset..offset + 4]);
        u32::from_le_bytes(bytes)
    }

    /// Writes the u32 at `offset`.
    pub fn write32(&mut self, offset: usize, value: u32) {
        self.0[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Reads the segment at `offset`.
    pub fn segment(&self, offset: usize) -> Segment {
        let word = self.read32(offset);
        Segment {
            selector: word as u16,
            attrib: (word >> 16) as u16,
            limit: self.read32(offset + 4),
            base: self.read64(offset + 8),
        }
    }

    /// Writes the segment at `offset`.
    pub fn set_segment(&mut self, offset: usize, segment: Segment) {
        self.write32(
            offset,
            segment.selector as u32 | (segment.attrib as u32) << 16,
        );
        self.write32(offset + 4, segment.limit);
        self.write64(offset + 8, segment.base);
    }

    /// The guest's current privilege level.
    pub fn cpl(&self) -> u8 {
        self.0[save::CPL]
    }

    /// Sets the CPL.
    pub fn set_cpl(&mut self, cpl: u8) {
        self.0[save::CPL] = cpl;
    }

    /// Sets the TLB control byte.
    pub fn set_tlb_control(&mut self, value: u8) {
        self.0[control::TLB_CONTROL] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_area_offsets_match_the_apm() {
        assert_eq!(save::ES, 0x400);
        assert_eq!(save::TR - save::ES, 9 * 16);
        assert_eq!(save::RIP, 0x578);
        assert_eq!(save::RAX, 0x5F8);
        assert_eq!(save::G_PAT, 0x668);
    }

    #[test]
    fn segment_round_trips() {
        let mut vmcb = Vmcb::zeroed();
        let segment = Segment {
            selector: 0x10,
            attrib: 0xc93,
            limit: 0xffff_ffff,
            base: 0x1234,
        };
        vmcb.set_segment(save::DS, segment);
        assert_eq!(vmcb.segment(save::DS), segment);
        assert_eq!(vmcb.read32(save::DS), 0x0c93_0010);
    }
}
