//! An SVM vCPU: its VMCB (set up for the PVH entry state of pvh.pandoc),
//! the shared I/O and MSR permission maps, the MSR policy, event injection
//! and the XCR0 the guest chose. Writes to CR0 and CR4 exit (as on Xen) so
//! that `ctrlreg` can check them before they reach the VMCB.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, Ordering};
use rxen_x86::msr_policy::MsrState;

use rxen_abi::hvm_save::{HvmHwCpu, HvmHwMtrr, XEN_X86_FPU_INITIALISED};
use rxen_abi::hvm_vcpu::{VcpuHvmContext, VCPU_HVM_MODE_64B};
use rxen_core::hvm_save::{event_needs_reinjection, MtrrLoad};

use rxen_x86::ctrlreg::{cr0, efer};
use rxen_x86::msr;
use rxen_x86::svm::vmcb::{control, save, Segment, Vmcb};
use rxen_x86::svm::{EntryCtl, GuestRegs};
use spin::Once;

/// Misc intercepts (vector 3): INTR, NMI, CPUID, INVD, HLT, INVLPGA, IOIO,
/// MSR, SHUTDOWN.
const INTERCEPT_MISC1: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 18)
    | (1 << 22)
    | (1 << 24)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 31);
/// Misc intercepts (vector 4): VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI,
/// SKINIT, MONITOR, MWAIT, XSETBV.
const INTERCEPT_MISC2: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 10)
    | (1 << 11)
    | (1 << 13);

/// CR intercepts: writes to CR0 and CR4 (bits 16 + n of the vector).
const INTERCEPT_CR: u32 = (1 << 16) | (1 << 20);

/// MSRs the guest reads and writes without an exit: they live in the VMCB
/// and are switched by VMLOAD/VMSAVE (syscall, FS/GS bases, SYSENTER).
const PASSTHROUGH_MSRS: [u32; 10] = [
    msr::MSR_STAR,
    msr::MSR_LSTAR,
    msr::MSR_CSTAR,
    msr::MSR_SYSCALL_MASK,
    msr::MSR_FS_BASE,
    msr::MSR_GS_BASE,
    msr::MSR_SHADOW_GS_BASE,
    msr::MSR_IA32_SYSENTER_CS,
    msr::MSR_IA32_SYSENTER_ESP,
    msr::MSR_IA32_SYSENTER_EIP,
];

/// Whether the CPU has MSR_TSC_AUX (asked once).
pub static HAS_TSC_AUX: Once<bool> = Once::new();

/// Power-on PAT value.
pub const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
const EFER_SVME: u64 = efer::SVME;
const EFER_LMA: u64 = efer::LMA;

/// The permission maps shared by all vCPUs (read-only after creation).
struct PermissionMaps {
    iopm: u64,
    msrpm: u64,
}

static MAPS: Once<Option<PermissionMaps>> = Once::new();

/// Clears the read and write intercept bits of `msr` in the MSR map.
fn pass_through(msrpm: &mut [u8], msr: u32) {
    let (base, index) = match msr {
        0..=0x1FFF => (0usize, msr as usize),
        0xC000_0000..=0xC000_1FFF => (0x800, (msr - 0xC000_0000) as usize),
        0xC001_0000..=0xC001_1FFF => (0x1000, (msr - 0xC001_0000) as usize),
        _ => return,
    };
    let shift = (index % 4) * 2;
    if let Some(byte) = msrpm.get_mut(base + index / 4) {
        *byte &= !(0b11 << shift);
    }
}

/// Allocates the shared permission maps (at boot, so that they are not
/// counted against the first domain). Returns whether that worked.
pub fn init_permission_maps() -> bool {
    maps().is_some()
}

fn maps() -> Option<&'static PermissionMaps> {
    MAPS.call_once(|| {
        // The IOPM is 12 KiB, the MSRPM 8 KiB; both physically contiguous.
        let mut iopm = crate::memory::alloc_owned(3)?;
        let mut msrpm = crate::memory::alloc_owned(2)?;
        iopm.as_bytes_mut().fill(0xFF);
        msrpm.as_bytes_mut().fill(0xFF);
        for msr in PASSTHROUGH_MSRS {
            pass_through(msrpm.as_bytes_mut(), msr);
        }
        // Kept for the hypervisor's lifetime.
        Some(PermissionMaps {
            iopm: iopm.into_raw().0,
            msrpm: msrpm.into_raw().0,
        })
    })
    .as_ref()
}

/// One virtual CPU on SVM.
pub struct SvmVcpu {
    /// Its VMCB (page-aligned, identity-mapped).
    pub vmcb: Box<Vmcb>,
    /// General registers outside the VMCB.
    pub regs: GuestRegs,
    /// The guest's XCR0.
    pub xcr0: u64,
    /// Whether the next VMRUN must flush the guest's TLB entries.
    pub flush_tlb: bool,
    /// FPU/SSE/AVX state while the vCPU is off its CPU.
    pub fpu: rxen_x86::xsave::FpuState,
    /// The guest's MSRs the hypervisor keeps (MTRR default type, TSC_AUX,
    /// loaded into the CPU before VMRUN where the CPU has it, SPEC_CTRL, in
    /// the CPU only while it runs, VIRT_SPEC_CTRL).
    pub msrs: MsrState,
    /// The guest's DR0-DR3 (DR6 and DR7 are in the VMCB).
    pub dr: crate::hvm::debugreg::DebugRegs,
    /// The RIP of an instruction in the interrupt shadow of an STI or MOV
    /// SS, as an exit reported it, until the guest has gone past it: QEMU's
    /// VMRUN does not load the VMCB's shadow bit, so the next exit there
    /// may no longer show it (see [`super::vlapic::inject`]).
    pub shadow_rip: Option<u64>,
    /// The interrupt offered to the guest as a virtual interrupt (V_IRQ)
    /// at the last entry: its vector and whether it is the callback vector
    /// (no APIC acknowledge). The next exit finds out whether it was taken
    /// ([`super::vlapic::reconcile_offer`]).
    pub virq_offer: Option<(u8, bool)>,
    /// The CPU inside VMRUN with this vCPU (its index + 1), 0 when none:
    /// a second CPU entering it would share its VMCB, a scheduler bug that
    /// stops the machine at once rather than corrupt the guest.
    entered: AtomicU32,
    /// The vCPU's last exits, for the report when its domain fails.
    pub trail: ExitTrail,
}

/// How many exits an [`ExitTrail`] keeps.
const TRAIL_LEN: usize = 4;

/// A vCPU's last [`TRAIL_LEN`] exits: exit code, the guest's RIP at the
/// exit, and the CPU it ran on.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitTrail {
    exits: [(u64, u64, u32); TRAIL_LEN],
    next: usize,
    count: u64,
}

impl ExitTrail {
    fn record(&mut self, code: u64, rip: u64, cpu: usize) {
        self.exits[self.next] = (code, rip, cpu as u32);
        self.next = (self.next + 1) % TRAIL_LEN;
        self.count = self.count.saturating_add(1);
    }

    /// The exits kept, oldest first, with the number of each.
    pub fn recent(&self) -> impl Iterator<Item = (u64, (u64, u64, u32))> + '_ {
        let kept = self.count.min(TRAIL_LEN as u64);
        (0..kept).map(move |i| {
            let n = self.count - kept + i;
            (n, self.exits[(n % TRAIL_LEN as u64) as usize])
        })
    }
}

fn segment(selector: u16, attrib: u16, limit: u32) -> Segment {
    Segment {
        selector,
        attrib,
        limit,
        base: 0,
    }
}

impl SvmVcpu {
    /// The interrupt window asked for opened: stop asking (clear V_IRQ and
    /// the VINTR intercept); what is pending is injected before the next
    /// entry.
    /// Uses the I/O permission map at host-physical `iopm` (12 KiB,
    /// physically contiguous, kept for the hypervisor's lifetime).
    pub fn set_iopm(&mut self, iopm: u64) {
        self.vmcb.write64(control::IOPM_BASE_PA, iopm);
    }

    pub fn close_interrupt_window(&mut self) {
        let v_intr = self.vmcb.read64(control::V_INTR);
        self.vmcb.write64(control::V_INTR, v_intr & !(1 << 8));
        let misc1 = self.vmcb.read32(control::INTERCEPT_MISC1);
        self.vmcb
            .write32(control::INTERCEPT_MISC1, misc1 & !(1 << 4));
    }

    /// A vCPU about to enter a PVH kernel at `entry` with EBX = `start_info`
    /// (32-bit flat protected mode, paging off), in the NPT rooted at `ncr3`,
    /// tagged with `asid`.
    pub fn new_pvh(entry: u32, start_info: u64, ncr3: u64, asid: u32) -> Option<Self> {
        let maps = maps()?;
        let mut vmcb = Box::new(Vmcb::zeroed());
        vmcb.write32(control::INTERCEPT_CR, INTERCEPT_CR);
        vmcb.write32(control::INTERCEPT_MISC1, INTERCEPT_MISC1);
        vmcb.write32(control::INTERCEPT_MISC2, INTERCEPT_MISC2);
        // Every MOV to or from a debug register (see `debugreg`).
        vmcb.write32(control::INTERCEPT_DR, u32::MAX);
        vmcb.write64(control::IOPM_BASE_PA, maps.iopm);
        vmcb.write64(control::MSRPM_BASE_PA, maps.msrpm);
        vmcb.write32(control::GUEST_ASID, asid);
        // V_INTR_MASKING: physical interrupts follow the host's IF.
        vmcb.write64(control::V_INTR, 1 << 24);
        vmcb.write64(control::NP_ENABLE, 1);
        vmcb.write64(control::N_CR3, ncr3);

        // pvh.pandoc: flat 4 GiB code (exec/read) and data (read/write)
        // segments, a busy 32-bit TSS, CR0.PE only, paging off.
        vmcb.set_segment(save::CS, segment(0x08, 0xC9B, 0xFFFF_FFFF));
        for offset in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            vmcb.set_segment(offset, segment(0x10, 0xC93, 0xFFFF_FFFF));
        }
        vmcb.set_segment(save::TR, segment(0x18, 0x08B, 0x67));
        vmcb.set_segment(save::LDTR, segment(0, 0x082, 0xFFFF));
        vmcb.set_segment(save::GDTR, segment(0, 0, 0));
        vmcb.set_segment(save::IDTR, segment(0, 0, 0));
        vmcb.set_cpl(0);
        vmcb.write64(save::EFER, EFER_SVME);
        vmcb.write64(save::CR0, cr0::PE | cr0::ET);
        vmcb.write64(save::CR4, 0);
        vmcb.write64(save::CR3, 0);
        vmcb.write64(save::DR6, 0xFFFF_0FF0);
        vmcb.write64(save::DR7, 0x400);
        vmcb.write64(save::RFLAGS, 0x2);
        vmcb.write64(save::RIP, entry as u64);
        vmcb.write64(save::RSP, 0);
        vmcb.write64(save::RAX, 0);
        vmcb.write64(save::G_PAT, DEFAULT_PAT);
        let regs = GuestRegs {
            rbx: start_info,
            ..GuestRegs::default()
        };
        Some(Self {
            vmcb,
            regs,
            xcr0: 1,
            flush_tlb: true,
            fpu: rxen_x86::xsave::FpuState::new(crate::memory::alloc_owned)?,
            // Enabled, write-back.
            msrs: MsrState {
                mtrr_def_type: 0x806,
                ..MsrState::default()
            },
            dr: Default::default(),
            shadow_rip: None,
            virq_offer: None,
            entered: AtomicU32::new(0),
            trail: ExitTrail::default(),
        })
    }

    /// Loads the initial state a guest gave with VCPUOP_initialise (already
    /// checked by the core): registers, control registers and, in 64-bit
    /// mode, flat long-mode segments as Xen sets them. The vCPU starts
    /// afresh: XCR0 = x87 and the FPU in its initial state. Control
    /// register bits the guest's policy does not allow are dropped, so that
    /// VMRUN cannot refuse the state.
    pub fn load_hvm_context(&mut self, context: &VcpuHvmContext) {
        self.xcr0 = 1;
        self.fpu.reset();
        let vmcb = &mut self.vmcb;
        if context.mode == VCPU_HVM_MODE_64B {
            let r = context.x86_64();
            vmcb.set_segment(save::CS, segment(0x08, 0xA9B, 0xFFFF_FFFF));
            for offset in [save::DS, save::ES, save::SS, save::FS, save::GS] {
                vmcb.set_segment(offset, segment(0x10, 0xC93, 0xFFFF_FFFF));
            }
            vmcb.set_segment(save::TR, segment(0x18, 0x08B, 0x67));
            vmcb.write64(save::EFER, r.efer | EFER_LMA | EFER_SVME);
            vmcb.write64(save::CR0, r.cr0);
            vmcb.write64(save::CR3, r.cr3);
            vmcb.write64(save::CR4, r.cr4);
            vmcb.write64(save::RFLAGS, r.rflags | 2);
            vmcb.write64(save::RIP, r.rip);
            vmcb.write64(save::RSP, r.rsp);
            vmcb.write64(save::RAX, r.rax);
            self.regs = GuestRegs {
                rbx: r.rbx,
                rcx: r.rcx,
                rdx: r.rdx,
                rsi: r.rsi,
                rdi: r.rdi,
                rbp: r.rbp,
                ..GuestRegs::default()
            };
        } else {
            let r = context.x86_32();
            let seg = |base: u32, limit: u32, ar: u16| Segment {
                selector: 0,
                attrib: ar,
                limit,
                base: base as u64,
            };
            vmcb.set_segment(save::CS, seg(r.cs_base, r.cs_limit, r.cs_ar));
            vmcb.set_segment(save::DS, seg(r.ds_base, r.ds_limit, r.ds_ar));
            vmcb.set_segment(save::SS, seg(r.ss_base, r.ss_limit, r.ss_ar));
            vmcb.set_segment(save::ES, seg(r.es_base, r.es_limit, r.es_ar));
            vmcb.set_segment(save::FS, seg(r.ds_base, r.ds_limit, r.ds_ar));
            vmcb.set_segment(save::GS, seg(r.ds_base, r.ds_limit, r.ds_ar));
            if r.tr_ar != 0 {
                vmcb.set_segment(save::TR, seg(r.tr_base, r.tr_limit, r.tr_ar));
            }
            vmcb.write64(save::EFER, r.efer | EFER_SVME);
            vmcb.write64(save::CR0, r.cr0 as u64);
            vmcb.write64(save::CR3, r.cr3 as u64);
            vmcb.write64(save::CR4, r.cr4 as u64);
            vmcb.write64(save::RFLAGS, r.eflags as u64 | 2);
            vmcb.write64(save::RIP, r.eip as u64);
            vmcb.write64(save::RSP, r.esp as u64);
            vmcb.write64(save::RAX, r.eax as u64);
            self.regs = GuestRegs {
                rbx: r.ebx as u64,
                rcx: r.ecx as u64,
                rdx: r.edx as u64,
                rsi: r.esi as u64,
                rdi: r.edi as u64,
                rbp: r.ebp as u64,
                ..GuestRegs::default()
            };
        }
        vmcb.set_cpl(0);
        crate::hvm::ctrlreg::sanitize_initial(vmcb);
        self.flush_tlb = true;
    }

    /// The vCPU (off its CPU) as Xen's `hvm_save_cpu_ctxt` saves it: all
    /// registers from the VMCB and `regs`, DR0-DR3, the FPU's FXSAVE image,
    /// TSC_AUX, the host TSC (rxen does not offset the guest's) and an
    /// event about to be injected that must be injected again.
    pub fn save_hw_cpu(&self, c: &mut HvmHwCpu) {
        let vmcb = &self.vmcb;
        let r = &self.regs;
        *c = HvmHwCpu {
            fpu_regs: self.fpu.fxsave_image(),
            rax: vmcb.read64(save::RAX),
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rbp: r.rbp,
            rsi: r.rsi,
            rdi: r.rdi,
            rsp: vmcb.read64(save::RSP),
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: vmcb.read64(save::RIP),
            rflags: vmcb.read64(save::RFLAGS),
            cr0: vmcb.read64(save::CR0),
            cr2: vmcb.read64(save::CR2),
            cr3: vmcb.read64(save::CR3),
            cr4: vmcb.read64(save::CR4),
            dr0: self.dr.0[0],
            dr1: self.dr.0[1],
            dr2: self.dr.0[2],
            dr3: self.dr.0[3],
            dr6: vmcb.read64(save::DR6),
            dr7: vmcb.read64(save::DR7),
            sysenter_cs: vmcb.read64(save::SYSENTER_CS),
            sysenter_esp: vmcb.read64(save::SYSENTER_ESP),
            sysenter_eip: vmcb.read64(save::SYSENTER_EIP),
            shadow_gs: vmcb.read64(save::KERNEL_GS_BASE),
            msr_lstar: vmcb.read64(save::LSTAR),
            msr_star: vmcb.read64(save::STAR),
            msr_cstar: vmcb.read64(save::CSTAR),
            msr_syscall_mask: vmcb.read64(save::SFMASK),
            msr_efer: vmcb.read64(save::EFER) & !EFER_SVME,
            msr_tsc_aux: self.msrs.tsc_aux,
            tsc: rxen_x86::apic::rdtsc(),
            flags: XEN_X86_FPU_INITIALISED,
            ..HvmHwCpu::default()
        };
        let segments: [(usize, &mut u32, &mut u32, &mut u64, &mut u32); 8] = [
            (
                save::CS,
                &mut c.cs_sel,
                &mut c.cs_limit,
                &mut c.cs_base,
                &mut c.cs_arbytes,
            ),
            (
                save::DS,
                &mut c.ds_sel,
                &mut c.ds_limit,
                &mut c.ds_base,
                &mut c.ds_arbytes,
            ),
            (
                save::ES,
                &mut c.es_sel,
                &mut c.es_limit,
                &mut c.es_base,
                &mut c.es_arbytes,
            ),
            (
                save::FS,
                &mut c.fs_sel,
                &mut c.fs_limit,
                &mut c.fs_base,
                &mut c.fs_arbytes,
            ),
            (
                save::GS,
                &mut c.gs_sel,
                &mut c.gs_limit,
                &mut c.gs_base,
                &mut c.gs_arbytes,
            ),
            (
                save::SS,
                &mut c.ss_sel,
                &mut c.ss_limit,
                &mut c.ss_base,
                &mut c.ss_arbytes,
            ),
            (
                save::TR,
                &mut c.tr_sel,
                &mut c.tr_limit,
                &mut c.tr_base,
                &mut c.tr_arbytes,
            ),
            (
                save::LDTR,
                &mut c.ldtr_sel,
                &mut c.ldtr_limit,
                &mut c.ldtr_base,
                &mut c.ldtr_arbytes,
            ),
        ];
        for (offset, sel, limit, base, attr) in segments {
            let s = vmcb.segment(offset);
            (*sel, *limit, *base, *attr) = (s.selector.into(), s.limit, s.base, s.attrib.into());
        }
        let idtr = vmcb.segment(save::IDTR);
        (c.idtr_limit, c.idtr_base) = (idtr.limit, idtr.base);
        let gdtr = vmcb.segment(save::GDTR);
        (c.gdtr_limit, c.gdtr_base) = (gdtr.limit, gdtr.base);
        let event = vmcb.read64(control::EVENT_INJ);
        if event & (1 << 31) != 0 && event_needs_reinjection(event as u32) {
            c.pending_event = event as u32;
            c.error_code = (event >> 32) as u32;
        }
    }

    /// Loads a CPU record the core checked (Xen's `hvm_load_cpu_ctxt` and
    /// `svm_load_vmcb_ctxt`) into the vCPU, which is off its CPU: every
    /// register, segment and MSR the record has and the VMCB keeps; the
    /// FPU from its FXSAVE image if the record says it holds one, else
    /// reset; an event to inject again; the PAT reset (an MTRR record sets
    /// it). The TSC is not loaded (rxen does not offset the guest's).
    /// Control register bits VMRUN would refuse are dropped, as for
    /// VCPUOP_initialise.
    pub fn load_hw_cpu(&mut self, c: &HvmHwCpu) {
        // Older Xen saved VMX attributes unpacked: fold them (as Xen does).
        let attr = |a: u32| -> u16 {
            let a = if a & 0xF000 != 0 && a & 0x0F00 == 0 {
                (a & 0xFF) | ((a >> 4) & 0xF00)
            } else {
                a
            };
            (a & 0xFFF) as u16
        };
        let seg = |sel: u32, limit: u32, base: u64, ar: u32| Segment {
            selector: sel as u16,
            attrib: attr(ar),
            limit,
            base,
        };
        let vmcb = &mut self.vmcb;
        vmcb.set_segment(save::CS, seg(c.cs_sel, c.cs_limit, c.cs_base, c.cs_arbytes));
        vmcb.set_segment(save::DS, seg(c.ds_sel, c.ds_limit, c.ds_base, c.ds_arbytes));
        vmcb.set_segment(save::ES, seg(c.es_sel, c.es_limit, c.es_base, c.es_arbytes));
        vmcb.set_segment(save::FS, seg(c.fs_sel, c.fs_limit, c.fs_base, c.fs_arbytes));
        vmcb.set_segment(save::GS, seg(c.gs_sel, c.gs_limit, c.gs_base, c.gs_arbytes));
        vmcb.set_segment(save::SS, seg(c.ss_sel, c.ss_limit, c.ss_base, c.ss_arbytes));
        vmcb.set_segment(save::TR, seg(c.tr_sel, c.tr_limit, c.tr_base, c.tr_arbytes));
        vmcb.set_segment(
            save::LDTR,
            seg(c.ldtr_sel, c.ldtr_limit, c.ldtr_base, c.ldtr_arbytes),
        );
        vmcb.set_segment(save::IDTR, seg(0, c.idtr_limit, c.idtr_base, 0));
        vmcb.set_segment(save::GDTR, seg(0, c.gdtr_limit, c.gdtr_base, 0));
        // The CPL is SS's DPL.
        vmcb.set_cpl(((attr(c.ss_arbytes) >> 5) & 3) as u8);
        vmcb.write64(save::CR0, c.cr0 | cr0::ET);
        vmcb.write64(save::CR2, c.cr2);
        vmcb.write64(save::CR3, c.cr3);
        vmcb.write64(save::CR4, c.cr4);
        vmcb.write64(save::EFER, c.msr_efer | EFER_SVME);
        // VMRUN refuses DR6 and DR7 with upper bits set.
        vmcb.write64(save::DR6, c.dr6 & 0xFFFF_FFFF);
        vmcb.write64(save::DR7, c.dr7 & 0xFFFF_FFFF);
        vmcb.write64(save::RFLAGS, c.rflags | 2);
        vmcb.write64(save::RIP, c.rip);
        vmcb.write64(save::RSP, c.rsp);
        vmcb.write64(save::RAX, c.rax);
        vmcb.write64(save::SYSENTER_CS, c.sysenter_cs);
        vmcb.write64(save::SYSENTER_ESP, c.sysenter_esp);
        vmcb.write64(save::SYSENTER_EIP, c.sysenter_eip);
        vmcb.write64(save::KERNEL_GS_BASE, c.shadow_gs);
        vmcb.write64(save::LSTAR, c.msr_lstar);
        vmcb.write64(save::STAR, c.msr_star);
        vmcb.write64(save::CSTAR, c.msr_cstar);
        vmcb.write64(save::SFMASK, c.msr_syscall_mask);
        vmcb.write64(save::G_PAT, DEFAULT_PAT);
        let event = u64::from(c.pending_event);
        let inject = if event & (1 << 31) != 0 && event_needs_reinjection(c.pending_event) {
            if event & (1 << 11) != 0 {
                event | u64::from(c.error_code) << 32
            } else {
                event
            }
        } else {
            0
        };
        vmcb.write64(control::EVENT_INJ, inject);
        vmcb.write64(control::INTERRUPT_SHADOW, 0);
        let v_intr = vmcb.read64(control::V_INTR);
        vmcb.write64(control::V_INTR, v_intr & !(1 << 8));
        let misc1 = vmcb.read32(control::INTERCEPT_MISC1);
        vmcb.write32(control::INTERCEPT_MISC1, misc1 & !(1 << 4));
        crate::hvm::ctrlreg::sanitize_initial(vmcb);
        self.shadow_rip = None;
        self.virq_offer = None;
        self.regs = GuestRegs {
            rbx: c.rbx,
            rcx: c.rcx,
            rdx: c.rdx,
            rsi: c.rsi,
            rdi: c.rdi,
            rbp: c.rbp,
            r8: c.r8,
            r9: c.r9,
            r10: c.r10,
            r11: c.r11,
            r12: c.r12,
            r13: c.r13,
            r14: c.r14,
            r15: c.r15,
        };
        self.dr = crate::hvm::debugreg::DebugRegs([c.dr0, c.dr1, c.dr2, c.dr3]);
        self.msrs.tsc_aux = c.msr_tsc_aux;
        if c.flags & XEN_X86_FPU_INITIALISED != 0 {
            // x87 and SSE, so that the restore loads both from the image.
            self.xcr0 = 3;
            self.fpu.load_fxsave_image(&c.fpu_regs);
        } else {
            self.xcr0 = 1;
            self.fpu.reset();
        }
        self.flush_tlb = true;
    }

    /// The PAT and MTRRs as Xen's `hvm_save_mtrr_msr` saves them: rxen
    /// has no variable or fixed ranges (MTRRcap reads 0), only the default
    /// type the guest wrote.
    pub fn save_mtrr(&self, m: &mut HvmHwMtrr) {
        *m = HvmHwMtrr {
            msr_pat_cr: self.vmcb.read64(save::G_PAT),
            msr_mtrr_def_type: self.msrs.mtrr_def_type,
            ..HvmHwMtrr::default()
        };
    }

    /// Loads what rxen keeps of an MTRR record (values the core found
    /// valid).
    pub fn load_mtrr(&mut self, m: &MtrrLoad) {
        if let Some(pat) = m.pat {
            self.vmcb.write64(save::G_PAT, pat);
        }
        if let Some(def_type) = m.def_type {
            self.msrs.mtrr_def_type = def_type;
        }
    }

    /// The state after INIT and a start-up IPI with vector `vector`: real
    /// mode at CS selector `vector << 8` (base `vector << 12`), IP 0, as the
    /// SDM and APM give it (CR0 = ET, 64 KiB segments, no pending event).
    pub fn start_real_mode(&mut self, vector: u8) {
        let vmcb = &mut self.vmcb;
        let real = |selector: u16, attrib: u16| Segment {
            selector,
            attrib,
            limit: 0xFFFF,
            base: u64::from(selector) << 4,
        };
        vmcb.set_segment(save::CS, real(u16::from(vector) << 8, 0x9B));
        for offset in [save::DS, save::ES, save::SS, save::FS, save::GS] {
            vmcb.set_segment(offset, real(0, 0x93));
        }
        vmcb.set_segment(save::TR, real(0, 0x8B));
        vmcb.set_segment(save::LDTR, real(0, 0x82));
        vmcb.set_segment(save::GDTR, real(0, 0));
        vmcb.set_segment(save::IDTR, real(0, 0));
        vmcb.set_cpl(0);
        vmcb.write64(save::EFER, EFER_SVME);
        vmcb.write64(save::CR0, cr0::ET);
        vmcb.write64(save::CR3, 0);
        vmcb.write64(save::CR4, 0);
        vmcb.write64(save::DR6, 0xFFFF_0FF0);
        vmcb.write64(save::DR7, 0x400);
        vmcb.write64(save::RFLAGS, 0x2);
        vmcb.write64(save::RIP, 0);
        vmcb.write64(save::RSP, 0);
        vmcb.write64(save::RAX, 0);
        vmcb.write64(save::G_PAT, DEFAULT_PAT);
        vmcb.write64(control::EVENT_INJ, 0);
        vmcb.write64(control::INTERRUPT_SHADOW, 0);
        self.shadow_rip = None;
        self.virq_offer = None;
        let v_intr = vmcb.read64(control::V_INTR);
        vmcb.write64(control::V_INTR, v_intr & !(1 << 8));
        let misc1 = vmcb.read32(control::INTERCEPT_MISC1);
        vmcb.write32(control::INTERCEPT_MISC1, misc1 & !(1 << 4));
        self.regs = GuestRegs::default();
        self.dr = Default::default();
        // As Xen's hvm_vcpu_reset_state: XCR0 = x87 and an empty XSAVE
        // image (XRSTOR with XCR0 = 1 faults on an image that still has
        // the AVX state the vCPU saved before).
        self.xcr0 = 1;
        self.fpu.reset();
        self.msrs.mtrr_def_type = 0x806;
        self.flush_tlb = true;
    }

    /// Queues exception `vector` (with `error_code` if it has one) for the
    /// next VMRUN.
    pub fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        let mut event = vector as u64 | (3 << 8) | (1 << 31);
        if let Some(code) = error_code {
            event |= (1 << 11) | ((code as u64) << 32);
        }
        self.vmcb.write64(control::EVENT_INJ, event);
    }

    /// What the entry path does about speculation for this vCPU: its
    /// SPEC_CTRL value (with VIRT_SPEC_CTRL.SSBD folded in where the CPU has
    /// SSBD in SPEC_CTRL) and the mitigations in force (see `spec_ctrl`).
    fn entry_ctl(&self, active: &rxen_x86::spec_ctrl::Active) -> EntryCtl {
        let mut guest = self.msrs.spec_ctrl;
        if active.hw.ssbd {
            guest |= self.msrs.virt_spec_ctrl & rxen_x86::spec_ctrl::SPEC_CTRL_SSBD;
        }
        let mut flags = 0;
        if active.msr_sc && guest != active.host_spec_ctrl {
            flags |= EntryCtl::SWITCH_SPEC_CTRL;
        }
        if active.rsb {
            flags |= EntryCtl::OVERWRITE_RSB;
        }
        if active.ibpb_entry {
            flags |= EntryCtl::IBPB_ON_EXIT;
        }
        EntryCtl {
            guest_spec_ctrl: guest,
            host_spec_ctrl: active.host_spec_ctrl,
            flags,
        }
    }

    /// Runs the guest until the next exit, with the guest's XCR0 loaded.
    pub fn run(&mut self) {
        // Another CPU may have asked this one to flush (see `tlb`).
        let cpu = rxen_x86::cpu::current_index();
        let flush = crate::hvm::tlb::enter(cpu) | core::mem::take(&mut self.flush_tlb);
        self.vmcb.set_tlb_control(if flush { 1 } else { 0 });
        let host_xcr0 = rxen_x86::xsave::load_guest_xcr0(self.xcr0);
        self.dr.load_if_armed(&self.vmcb);
        if *HAS_TSC_AUX.call_once(rxen_x86::cpu::has_tsc_aux) {
            rxen_x86::cpu::load_tsc_aux(self.msrs.tsc_aux as u32);
        }
        let active = rxen_x86::spec_ctrl::active();
        let ctl = self.entry_ctl(&active);
        // Only under a hypervisor that offers VIRT_SSBD without SSBD in
        // SPEC_CTRL (`spec_ctrl`): the guest's choice around VMRUN.
        let virt_ssbd = active.msr_sc && !active.hw.ssbd && self.msrs.virt_spec_ctrl != 0;
        if virt_ssbd {
            rxen_x86::spec_ctrl::write_virt_spec_ctrl(self.msrs.virt_spec_ctrl);
        }
        let me = cpu as u32 + 1;
        if let Err(other) =
            self.entered
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
        {
            panic!("CPU{cpu} entering a vCPU that CPU{} is running", other - 1);
        }
        // Interrupts go on inside, between CLGI and VMRUN.
        rxen_x86::svm::run(&mut self.vmcb, &mut self.regs, &ctl);
        self.entered.store(0, Ordering::Release);
        self.trail.record(
            self.vmcb.read64(control::EXIT_CODE),
            self.vmcb.read64(save::RIP),
            cpu,
        );
        if virt_ssbd {
            rxen_x86::spec_ctrl::write_virt_spec_ctrl(0);
        }
        crate::hvm::tlb::exit(cpu);
        x86_64::instructions::interrupts::disable();
        self.xcr0 = rxen_x86::xsave::restore_host_xcr0(host_xcr0, self.xcr0);
    }
}
