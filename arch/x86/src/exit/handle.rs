//! The exits a vCPU's own state answers, served over [`ExitVcpu`] so that
//! the same code runs for any vendor and in host tests against a fake:
//! CPUID (Xen's `hvm_cpuid` path), XSETBV (`handle_xsetbv`), RDMSR/WRMSR
//! (`hvm_msr_{read,write}_intercept` over [`crate::msr_policy`]), port
//! I/O without a device model, and the register side of a hypercall and
//! of HLT. What needs the rest of the machine comes in as a parameter
//! ([`MsrEnv`], the host's CPUID) or goes back to the caller ([`IoEffect`],
//! [`HltKind`], a refused MSR access to log).

use crate::cpuid_policy::{self, CpuidContext};
use crate::ctrlreg::{cr4, guest_xcr0_ok};
use crate::msr::{MSR_X2APIC_FIRST, MSR_X2APIC_LAST};
use crate::msr_policy::{self, Gp, MsrCaps, MsrHost, WriteEffect};

use super::vcpu::{ExitVcpu, Gpr};
use super::IoAccess;

/// #UD.
pub const UD: u8 = 6;
/// #GP.
pub const GP: u8 = 13;

/// Port of Xen's HVM debug console (guest writes appear in the log).
pub const DEBUG_PORT: u16 = 0xE9;

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// Length of VMMCALL (and of VT-x's VMCALL).
const HYPERCALL_INSN_LEN: u64 = 3;

/// CPUID.1:ECX.OSXSAVE.
const CPUID1_ECX_OSXSAVE: u32 = 1 << 27;
/// CPUID.7.0:ECX.OSPKE.
const CPUID7_ECX_OSPKE: u32 = 1 << 4;

/// CPUID: the guest's view of leaf EAX, sub-leaf ECX (`host` answers for
/// the CPU), into EAX, EBX, ECX and EDX; OSXSAVE and OSPKE mirror the
/// guest's own CR4, not the host's.
pub fn cpuid(vcpu: &mut impl ExitVcpu, ctx: &CpuidContext, host: &dyn Fn(u32, u32) -> [u32; 4]) {
    let leaf = vcpu.gpr(Gpr::RAX) as u32;
    let subleaf = vcpu.gpr(Gpr::RCX) as u32;
    let [a, b, mut c, d] = cpuid_policy::guest_cpuid(leaf, subleaf, ctx, host);
    let guest_cr4 = vcpu.cr4();
    let mirror = |reg: u32, bit: u32, on: bool| if on { reg | bit } else { reg & !bit };
    match (leaf, subleaf) {
        (0x1, _) => c = mirror(c, CPUID1_ECX_OSXSAVE, guest_cr4 & cr4::OSXSAVE != 0),
        (0x7, 0) => c = mirror(c, CPUID7_ECX_OSPKE, guest_cr4 & cr4::PKE != 0),
        _ => {}
    }
    vcpu.set_gpr(Gpr::RAX, u64::from(a));
    vcpu.set_gpr(Gpr::RBX, u64::from(b));
    vcpu.set_gpr(Gpr::RCX, u64::from(c));
    vcpu.set_gpr(Gpr::RDX, u64::from(d));
    vcpu.advance_rip(2);
}

/// XSETBV of `value` to XCR `index`: only XCR0, only at CPL 0, only what
/// the guest's policy (`xcr0_max`) allows in a combination the CPU takes;
/// else #GP(0).
pub fn xsetbv(vcpu: &mut impl ExitVcpu, index: u32, value: u64, xcr0_max: u64) {
    if index != 0 || vcpu.cpl() != 0 || !guest_xcr0_ok(value, xcr0_max) {
        vcpu.inject_exception(GP, Some(0));
        return;
    }
    vcpu.set_xcr0(value);
    vcpu.advance_rip(3);
}

/// A hypercall's number (RAX) and five arguments (RDI, RSI, RDX, R10, R8):
/// the 64-bit register convention of Xen's `hvm_hypercall`, read in every
/// guest mode (Xen reads EBX, ECX, EDX, ESI, EDI from a 32-bit guest; rxen
/// does not yet).
pub fn hypercall_args(vcpu: &impl ExitVcpu) -> (u64, [u64; 5]) {
    let args = [Gpr::RDI, Gpr::RSI, Gpr::RDX, Gpr::R10, Gpr::R8].map(|reg| vcpu.gpr(reg));
    (vcpu.gpr(Gpr::RAX), args)
}

/// A hypercall done: RAX = `ret`, RIP past the instruction.
pub fn hypercall_return(vcpu: &mut impl ExitVcpu, ret: i64) {
    vcpu.advance_rip(HYPERCALL_INSN_LEN);
    vcpu.set_gpr(Gpr::RAX, ret as u64);
}

/// Xen's hypercall continuation: the new arguments go into the argument
/// registers, RAX keeps the hypercall number and RIP stays on the
/// instruction, which the guest executes again (after taking any interrupt
/// that is pending).
pub fn hypercall_continue(vcpu: &mut impl ExitVcpu, args: [u64; 5]) {
    for (reg, value) in [Gpr::RDI, Gpr::RSI, Gpr::RDX, Gpr::R10, Gpr::R8]
        .into_iter()
        .zip(args)
    {
        vcpu.set_gpr(reg, value);
    }
}

/// What a HLT asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HltKind {
    /// Interrupts off: the vCPU goes down (as on Xen).
    Down,
    /// Wait for an interrupt.
    Wait,
}

/// HLT: RIP moves past it; with RFLAGS.IF clear nothing can wake the vCPU.
pub fn hlt(vcpu: &mut impl ExitVcpu) -> HltKind {
    vcpu.advance_rip(1);
    if vcpu.rflags() & RFLAGS_IF == 0 {
        HltKind::Down
    } else {
        HltKind::Wait
    }
}

/// What the MSR exit needs from the rest of the machine.
pub trait MsrEnv {
    /// The TSC now.
    fn tsc(&self) -> u64;
    /// The local APIC's IA32_APIC_BASE.
    fn apic_base(&self) -> u64;
    /// A write of IA32_APIC_BASE; whether the local APIC took it.
    fn write_apic_base(&mut self, value: u64) -> bool;
    /// Fills the hypercall page at guest frame `gfn`; whether that worked.
    fn write_hypercall_page(&mut self, gfn: u64) -> bool;
    /// Issues an indirect branch prediction barrier.
    fn ibpb(&mut self);
    /// RDMSR of an x2APIC register MSR; `None` raises #GP.
    fn read_x2apic(&mut self, index: u32) -> Option<u64>;
    /// WRMSR of an x2APIC register MSR; whether the local APIC took it.
    fn write_x2apic(&mut self, index: u32, value: u64) -> bool;
}

/// [`MsrHost`] from the vCPU (PAT, EFER) and the machine (TSC, APIC).
struct Host<'a, V, E> {
    vcpu: &'a V,
    env: &'a E,
}

impl<V: ExitVcpu, E: MsrEnv> MsrHost for Host<'_, V, E> {
    fn tsc(&self) -> u64 {
        self.env.tsc()
    }
    fn apic_base(&self) -> u64 {
        self.env.apic_base()
    }
    fn pat(&self) -> u64 {
        self.vcpu.pat()
    }
    fn efer(&self) -> u64 {
        self.vcpu.efer()
    }
}

/// RDMSR (`write` None) or WRMSR of `index`: the x2APIC range goes to
/// the local APIC through `env`, everything else to [`msr_policy`], and
/// the vCPU and `env` carry out what it hands back; a read lands in
/// EDX:EAX (the upper halves of RAX and RDX cleared). A refused access
/// raises #GP(0), leaves RIP on the instruction and is returned for the
/// log.
pub fn msr<V: ExitVcpu, E: MsrEnv>(
    vcpu: &mut V,
    index: u32,
    write: Option<u64>,
    caps: &MsrCaps,
    env: &mut E,
) -> Result<(), Gp> {
    let x2apic = (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&index);
    let done = match write {
        Some(value) if x2apic => env.write_x2apic(index, value).then_some(()).ok_or(Gp),
        None if x2apic => env.read_x2apic(index).ok_or(Gp).map(|value| {
            vcpu.set_gpr(Gpr::RAX, value & 0xFFFF_FFFF);
            vcpu.set_gpr(Gpr::RDX, value >> 32);
        }),
        Some(value) => match msr_policy::write(index, value, vcpu.msrs_mut(), caps) {
            Ok(WriteEffect::None) => Ok(()),
            Ok(WriteEffect::Pat(pat)) => {
                vcpu.set_pat(pat);
                Ok(())
            }
            Ok(WriteEffect::Efer(efer)) => vcpu.write_efer(efer).then_some(()).ok_or(Gp),
            Ok(WriteEffect::ApicBase(base)) => env.write_apic_base(base).then_some(()).ok_or(Gp),
            Ok(WriteEffect::HypercallPage(gfn)) => {
                env.write_hypercall_page(gfn).then_some(()).ok_or(Gp)
            }
            Ok(WriteEffect::Ibpb) => {
                env.ibpb();
                Ok(())
            }
            Err(gp) => Err(gp),
        },
        None => {
            let host = Host {
                vcpu: &*vcpu,
                env: &*env,
            };
            msr_policy::read(index, vcpu.msrs(), caps, &host).map(|value| {
                vcpu.set_gpr(Gpr::RAX, value & 0xFFFF_FFFF);
                vcpu.set_gpr(Gpr::RDX, value >> 32);
            })
        }
    };
    match done {
        Ok(()) => vcpu.advance_rip(2),
        Err(Gp) => vcpu.inject_exception(GP, Some(0)),
    }
    done
}

/// What the caller does after a port access [`io`] served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEffect {
    /// Nothing more.
    None,
    /// A byte for the domain's debug console ([`DEBUG_PORT`]).
    DebugConsole(u8),
    /// An OUT of `value` (`size` bytes) to any other port, for the
    /// caller's own ports (dom0's ports, its ACPI sleep request).
    Out {
        /// The port.
        port: u16,
        /// Bytes written: 1, 2 or 4.
        size: u8,
        /// What was written (the low `size` bytes of RAX).
        value: u32,
    },
}

/// A port access, with no device model behind any port: an IN takes what
/// `read` returns for the port (the caller's own ports) or reads as an
/// empty bus ([`IoAccess::empty_bus_read`]), merged into RAX as the CPU
/// does ([`IoAccess::in_result`]); an OUT is a byte for [`DEBUG_PORT`]
/// (Xen's `hvm_print_line`) or goes back to the caller; string accesses
/// are skipped. RIP moves past the instruction.
pub fn io(
    vcpu: &mut impl ExitVcpu,
    io: &IoAccess,
    read: impl FnOnce(u16, u8) -> Option<u32>,
) -> IoEffect {
    let effect = if io.string {
        IoEffect::None
    } else if io.is_in {
        let rax = vcpu.gpr(Gpr::RAX);
        let value = match read(io.port, io.size) {
            Some(value) => io.in_result(rax, value),
            None => io.empty_bus_read(rax),
        };
        vcpu.set_gpr(Gpr::RAX, value);
        IoEffect::None
    } else {
        let rax = vcpu.gpr(Gpr::RAX);
        if io.port == DEBUG_PORT {
            IoEffect::DebugConsole(rax as u8)
        } else {
            let value = match io.size {
                1 => rax & 0xFF,
                2 => rax & 0xFFFF,
                _ => rax & 0xFFFF_FFFF,
            };
            IoEffect::Out {
                port: io.port,
                size: io.size,
                value: value as u32,
            }
        }
    };
    vcpu.set_rip(io.next_rip);
    effect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctrlreg::xcr0;
    use crate::msr::{MSR_EFER, MSR_IA32_APICBASE, MSR_IA32_CR_PAT, MSR_IA32_TSC};
    use crate::msr_policy::MsrState;

    /// A vCPU as plain fields.
    #[derive(Debug, Default)]
    struct Fake {
        gprs: [u64; 16],
        rip: u64,
        shadow: bool,
        rflags: u64,
        cpl: u8,
        cr4: u64,
        xcr0: u64,
        efer: u64,
        refuse_efer: bool,
        pat: u64,
        msrs: MsrState,
        injected: Option<(u8, Option<u32>)>,
    }

    impl ExitVcpu for Fake {
        fn gpr(&self, reg: Gpr) -> u64 {
            self.gprs[usize::from(reg.0.min(15))]
        }
        fn set_gpr(&mut self, reg: Gpr, value: u64) {
            self.gprs[usize::from(reg.0.min(15))] = value;
        }
        fn set_rip(&mut self, rip: u64) {
            self.rip = rip;
        }
        fn advance_rip(&mut self, len: u64) {
            self.rip += len;
            self.shadow = false;
        }
        fn rflags(&self) -> u64 {
            self.rflags
        }
        fn cpl(&self) -> u8 {
            self.cpl
        }
        fn cr4(&self) -> u64 {
            self.cr4
        }
        fn xcr0(&self) -> u64 {
            self.xcr0
        }
        fn set_xcr0(&mut self, value: u64) {
            self.xcr0 = value;
        }
        fn efer(&self) -> u64 {
            self.efer
        }
        fn write_efer(&mut self, value: u64) -> bool {
            if !self.refuse_efer {
                self.efer = value;
            }
            !self.refuse_efer
        }
        fn pat(&self) -> u64 {
            self.pat
        }
        fn set_pat(&mut self, value: u64) {
            self.pat = value;
        }
        fn msrs(&self) -> &MsrState {
            &self.msrs
        }
        fn msrs_mut(&mut self) -> &mut MsrState {
            &mut self.msrs
        }
        fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
            self.injected = Some((vector, error_code));
        }
    }

    fn vcpu() -> Fake {
        let mut v = Fake {
            rip: 0x1000,
            shadow: true,
            xcr0: xcr0::FP,
            efer: 0x500,
            pat: 0x0007_0406_0007_0406,
            ..Fake::default()
        };
        v.gprs = core::array::from_fn(|i| 0xDEAD_0000_0000_0000 | i as u64);
        v
    }

    const RAX: usize = 0;
    const RCX: usize = 1;
    const RDX: usize = 2;
    const RBX: usize = 3;

    fn ctx() -> CpuidContext {
        CpuidContext {
            vcpu_id: 1,
            domid: 7,
            tsc_khz: 2_000_000,
            nr_vcpus: 2,
            spec: Default::default(),
        }
    }

    /// A host CPU with every feature bit set, so that what the guest sees
    /// is what the policy and the guest's CR4 made of it.
    fn host(_leaf: u32, _sub: u32) -> [u32; 4] {
        [u32::MAX; 4]
    }

    #[test]
    fn cpuid_answers_in_four_registers_and_moves_past_the_instruction() {
        let mut v = vcpu();
        v.gprs[RAX] = 0xFFFF_FFFF_4000_0000; // upper half ignored
        cpuid(&mut v, &ctx(), &host);
        let sig = |r: usize| (v.gprs[r] as u32).to_le_bytes();
        assert_eq!(
            [sig(RBX), sig(RCX), sig(RDX)].concat(),
            b"XenVMMXenVMM",
            "Xen's signature"
        );
        // The upper halves are cleared, as CPUID does.
        for r in [RAX, RBX, RCX, RDX] {
            assert_eq!(v.gprs[r] >> 32, 0, "register {r}");
        }
        assert_eq!((v.rip, v.shadow, v.injected), (0x1002, false, None));
    }

    #[test]
    fn cpuid_osxsave_and_ospke_mirror_the_guests_cr4() {
        let leaf = |cr4_value: u64, leaf: u64, sub: u64| {
            let mut v = vcpu();
            v.cr4 = cr4_value;
            v.gprs[RAX] = leaf;
            v.gprs[RCX] = sub;
            cpuid(&mut v, &ctx(), &host);
            v.gprs[RCX] as u32
        };
        assert_eq!(leaf(0, 1, 0) & CPUID1_ECX_OSXSAVE, 0);
        assert_ne!(leaf(cr4::OSXSAVE, 1, 0) & CPUID1_ECX_OSXSAVE, 0);
        assert_eq!(leaf(cr4::OSXSAVE, 7, 0) & CPUID7_ECX_OSPKE, 0);
        assert_ne!(leaf(cr4::PKE, 7, 0) & CPUID7_ECX_OSPKE, 0);
        // Only sub-leaf 0 of leaf 7 has OSPKE: the others do not follow CR4.
        assert_eq!(leaf(cr4::PKE, 7, 1), leaf(0, 7, 1));
    }

    const MAX: u64 = xcr0::FP | xcr0::SSE | xcr0::YMM;

    #[test]
    fn xsetbv_loads_what_the_policy_allows() {
        let mut v = vcpu();
        xsetbv(&mut v, 0, MAX, MAX);
        assert_eq!(
            (v.xcr0, v.rip, v.shadow, v.injected),
            (MAX, 0x1003, false, None)
        );
    }

    #[test]
    fn xsetbv_refuses_with_gp_and_changes_nothing() {
        for (index, value, cpl) in [
            (1, xcr0::FP, 0),             // not XCR0
            (0, xcr0::FP, 3),             // not at CPL 0
            (0, xcr0::SSE, 0),            // no x87
            (0, xcr0::FP | xcr0::YMM, 0), // AVX without SSE
            (0, MAX | xcr0::OPMASK, 0),   // beyond the policy
            (u32::MAX, u64::MAX, 0),      // garbage
        ] {
            let mut v = vcpu();
            v.cpl = cpl;
            xsetbv(&mut v, index, value, MAX);
            assert_eq!(v.injected, Some((GP, Some(0))), "{index} {value:#x} {cpl}");
            assert_eq!((v.xcr0, v.rip), (xcr0::FP, 0x1000));
        }
    }

    /// The machine around the fake vCPU.
    #[derive(Debug, Default)]
    struct Env {
        refuse: bool,
        apic_base: u64,
        hypercall_page: Option<u64>,
        ibpbs: u32,
        x2apic_reads: alloc::vec::Vec<u32>,
        x2apic_writes: alloc::vec::Vec<(u32, u64)>,
    }

    impl MsrEnv for Env {
        fn tsc(&self) -> u64 {
            0x1234_5678_9ABC_DEF0
        }
        fn apic_base(&self) -> u64 {
            0xFEE0_0900
        }
        fn write_apic_base(&mut self, value: u64) -> bool {
            if !self.refuse {
                self.apic_base = value;
            }
            !self.refuse
        }
        fn write_hypercall_page(&mut self, gfn: u64) -> bool {
            if !self.refuse {
                self.hypercall_page = Some(gfn);
            }
            !self.refuse
        }
        fn ibpb(&mut self) {
            self.ibpbs += 1;
        }
        fn read_x2apic(&mut self, index: u32) -> Option<u64> {
            self.x2apic_reads.push(index);
            (!self.refuse).then_some(0x0000_0003_0000_0830)
        }
        fn write_x2apic(&mut self, index: u32, value: u64) -> bool {
            if !self.refuse {
                self.x2apic_writes.push((index, value));
            }
            !self.refuse
        }
    }

    /// The x2APIC range goes to the local APIC, whole (both halves), and
    /// nowhere else; what the APIC refuses is #GP.
    #[test]
    fn x2apic_msrs_go_to_the_local_apic() {
        let mut v = vcpu();
        let mut env = Env::default();
        v.gprs[RAX] = 0xFFFF_FFFF_0000_0000;
        assert_eq!(msr(&mut v, 0x830, None, &caps(), &mut env), Ok(()));
        assert_eq!((v.gprs[RDX], v.gprs[RAX], v.rip), (3, 0x830, 0x1002));
        assert_eq!(
            msr(&mut v, 0x8FF, Some(0x1_0000_0002), &caps(), &mut env),
            Ok(())
        );
        assert_eq!(env.x2apic_writes, [(0x8FF, 0x1_0000_0002)]);
        // Just outside the range: the policy's (#GP for both).
        for index in [0x7FF, 0x900] {
            v.rip = 0x1000;
            assert_eq!(msr(&mut v, index, None, &caps(), &mut env), Err(Gp));
        }
        assert_eq!(env.x2apic_reads, [0x830]);
        env.refuse = true;
        v.rip = 0x1000;
        let before = (v.gprs[RAX], v.gprs[RDX]);
        assert_eq!(msr(&mut v, 0x808, None, &caps(), &mut env), Err(Gp));
        assert_eq!(
            (v.gprs[RAX], v.gprs[RDX], v.rip),
            (before.0, before.1, 0x1000)
        );
        assert_eq!(v.injected, Some((GP, Some(0))));
        assert_eq!(msr(&mut v, 0x80B, Some(1), &caps(), &mut env), Err(Gp));
        assert_eq!(env.x2apic_writes.len(), 1);
    }

    fn caps() -> MsrCaps {
        MsrCaps {
            offer: crate::spec_ctrl::GuestOffer {
                ibpb: true,
                ..Default::default()
            },
            tsc_aux: false,
        }
    }

    fn rdmsr(v: &mut Fake, index: u32) -> Result<(), Gp> {
        v.gprs[RCX] = u64::from(index);
        msr(v, index, None, &caps(), &mut Env::default())
    }

    #[test]
    fn rdmsr_returns_edx_eax() {
        let mut v = vcpu();
        assert_eq!(rdmsr(&mut v, MSR_IA32_TSC), Ok(()));
        assert_eq!((v.gprs[RDX], v.gprs[RAX]), (0x1234_5678, 0x9ABC_DEF0));
        assert_eq!((v.rip, v.shadow, v.injected), (0x1002, false, None));
        // PAT and EFER from the vCPU, the APIC base from the machine.
        let read = |index| {
            let mut v = vcpu();
            rdmsr(&mut v, index).map(|()| (v.gprs[RDX] << 32) | v.gprs[RAX])
        };
        assert_eq!(read(MSR_IA32_CR_PAT), Ok(0x0007_0406_0007_0406));
        assert_eq!(read(MSR_EFER), Ok(0x500));
        assert_eq!(read(MSR_IA32_APICBASE), Ok(0xFEE0_0900));
    }

    #[test]
    fn a_refused_msr_access_raises_gp_and_stays_on_the_instruction() {
        let mut v = vcpu();
        let before = v.gprs;
        assert_eq!(rdmsr(&mut v, 0xC001_0011), Err(Gp));
        assert_eq!(v.injected, Some((GP, Some(0))));
        assert_eq!((v.rip, v.shadow), (0x1000, true));
        assert_eq!(v.gprs[RAX], before[RAX], "RAX untouched");
        assert_eq!(v.gprs[RDX], before[RDX], "RDX untouched");
        // An invalid PAT is not loaded.
        let mut v = vcpu();
        let pat = v.pat;
        let r = msr(
            &mut v,
            MSR_IA32_CR_PAT,
            Some(2),
            &caps(),
            &mut Env::default(),
        );
        assert_eq!((r, v.pat, v.rip), (Err(Gp), pat, 0x1000));
    }

    #[test]
    fn wrmsr_effects_are_carried_out_or_refused() {
        let mut v = vcpu();
        let mut env = Env::default();
        let w = |v: &mut Fake, env: &mut Env, index, value| {
            v.rip = 0x1000;
            v.injected = None;
            msr(v, index, Some(value), &caps(), env)
        };
        assert_eq!(
            w(&mut v, &mut env, MSR_IA32_CR_PAT, 0x0606_0606_0606_0606),
            Ok(())
        );
        assert_eq!((v.pat, v.rip), (0x0606_0606_0606_0606, 0x1002));
        assert_eq!(w(&mut v, &mut env, MSR_EFER, 0xD01), Ok(()));
        assert_eq!(v.efer, 0xD01);
        assert_eq!(w(&mut v, &mut env, MSR_IA32_APICBASE, 0xFEE0_0800), Ok(()));
        assert_eq!(env.apic_base, 0xFEE0_0800);
        let page = crate::cpuid_policy::HYPERCALL_PAGE_MSR;
        assert_eq!(w(&mut v, &mut env, page, 0x42_000), Ok(()));
        assert_eq!(env.hypercall_page, Some(0x42));
        assert_eq!(w(&mut v, &mut env, crate::msr::MSR_PRED_CMD, 1), Ok(()));
        assert_eq!(env.ibpbs, 1);
        // What the vCPU or the machine refuses is #GP, RIP stays.
        v.refuse_efer = true;
        env.refuse = true;
        for (index, value) in [
            (MSR_EFER, 0x501),
            (MSR_IA32_APICBASE, 0xFEE0_0000),
            (page, 0x43_000),
        ] {
            assert_eq!(w(&mut v, &mut env, index, value), Err(Gp), "{index:#x}");
            assert_eq!((v.rip, v.injected), (0x1000, Some((GP, Some(0)))));
        }
        assert_eq!(
            (v.efer, env.apic_base, env.hypercall_page),
            (0xD01, 0xFEE0_0800, Some(0x42))
        );
    }

    #[test]
    fn hypercalls_take_the_64_bit_registers_and_return_in_rax() {
        let mut v = vcpu();
        v.gprs[RAX] = 29; // sched_op
        let (rdi, rsi, r10, r8) = (7, 6, 10, 8);
        assert_eq!(
            hypercall_args(&v),
            (
                29,
                [
                    v.gprs[rdi],
                    v.gprs[rsi],
                    v.gprs[RDX],
                    v.gprs[r10],
                    v.gprs[r8]
                ]
            )
        );
        hypercall_return(&mut v, -22);
        assert_eq!(
            (v.gprs[RAX], v.rip, v.shadow),
            ((-22i64) as u64, 0x1003, false)
        );
    }

    #[test]
    fn a_continuation_reissues_the_same_hypercall() {
        let mut v = vcpu();
        v.gprs[RAX] = 12; // memory_op
        let before = v.gprs;
        hypercall_continue(&mut v, [1, 2, 3, 4, 5]);
        assert_eq!(hypercall_args(&v), (12, [1, 2, 3, 4, 5]));
        assert_eq!((v.rip, v.shadow), (0x1000, true), "RIP stays");
        // Nothing but the five argument registers changed.
        for r in [0, 1, 3, 4, 5, 9, 11, 12, 13, 14, 15] {
            assert_eq!(v.gprs[r], before[r], "register {r}");
        }
    }

    #[test]
    fn hlt_with_interrupts_off_takes_the_vcpu_down() {
        let mut v = vcpu();
        assert_eq!(hlt(&mut v), HltKind::Down);
        assert_eq!((v.rip, v.shadow), (0x1001, false));
        let mut v = vcpu();
        v.rflags = 0x202;
        assert_eq!(hlt(&mut v), HltKind::Wait);
        assert_eq!(v.rip, 0x1001);
    }

    fn access(port: u16, size: u8, is_in: bool, string: bool) -> IoAccess {
        IoAccess {
            port,
            size,
            is_in,
            string,
            rep: string,
            next_rip: 0x1002,
        }
    }

    #[test]
    fn in_reads_an_empty_bus_and_moves_to_the_next_rip() {
        for (size, rax) in [
            (1, 0xDEAD_0000_0000_00FF),
            (2, 0xDEAD_0000_0000_FFFF),
            (4, 0xFFFF_FFFF),
        ] {
            let mut v = vcpu();
            v.gprs[RAX] = 0xDEAD_0000_0000_0000;
            assert_eq!(
                io(&mut v, &access(0x71, size, true, false), |_, _| None),
                IoEffect::None
            );
            assert_eq!((v.gprs[RAX], v.rip), (rax, 0x1002), "size {size}");
        }
    }

    fn nothing(_: u16, _: u8) -> Option<u32> {
        None
    }

    #[test]
    fn in_from_a_port_the_caller_serves_takes_its_value() {
        for (size, rax) in [
            (1, 0xDEAD_0000_0000_0021),
            (2, 0xDEAD_0000_0000_4321),
            (4, 0x8765_4321),
        ] {
            let mut v = vcpu_with_rax(0xDEAD_0000_0000_0000);
            let mut asked = None;
            let read = |port, size| {
                asked = Some((port, size));
                Some(0x8765_4321)
            };
            assert_eq!(
                io(&mut v, &access(0x71, size, true, false), read),
                IoEffect::None
            );
            assert_eq!(asked, Some((0x71, size)));
            assert_eq!((v.gprs[RAX], v.rip), (rax, 0x1002), "size {size}");
        }
    }

    #[test]
    fn out_goes_to_the_debug_console_or_back_to_the_caller() {
        let mut v = vcpu();
        v.gprs[RAX] = 0x1234_5641;
        assert_eq!(
            io(&mut v, &access(DEBUG_PORT, 1, false, false), nothing),
            IoEffect::DebugConsole(b'A')
        );
        assert_eq!(v.rip, 0x1002);
        let out = |size| {
            io(
                &mut vcpu_with_rax(0xFFFF_FFFF_8765_4321),
                &access(0x604, size, false, false),
                nothing,
            )
        };
        assert_eq!(
            out(1),
            IoEffect::Out {
                port: 0x604,
                size: 1,
                value: 0x21
            }
        );
        assert_eq!(
            out(2),
            IoEffect::Out {
                port: 0x604,
                size: 2,
                value: 0x4321
            }
        );
        assert_eq!(
            out(4),
            IoEffect::Out {
                port: 0x604,
                size: 4,
                value: 0x8765_4321
            }
        );
    }

    fn vcpu_with_rax(rax: u64) -> Fake {
        let mut v = vcpu();
        v.gprs[RAX] = rax;
        v
    }

    #[test]
    fn string_io_is_skipped() {
        for (port, is_in) in [(DEBUG_PORT, false), (0x1F0, true), (0x1F0, false)] {
            let mut v = vcpu();
            let before = v.gprs;
            let read = |_, _| panic!("a string access is not read");
            assert_eq!(
                io(&mut v, &access(port, 2, is_in, true), read),
                IoEffect::None
            );
            assert_eq!((v.gprs, v.rip, v.injected), (before, 0x1002, None));
        }
    }
}
