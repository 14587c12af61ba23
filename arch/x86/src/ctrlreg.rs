//! Which control-register, EFER and XCR0 values a guest may load, by Xen's
//! rules (`xen/arch/x86/hvm/hvm.c`: `hvm_set_cr0`, `hvm_set_cr4`,
//! `hvm_cr4_guest_valid_bits`, `hvm_set_efer`/`hvm_efer_valid`;
//! `xen/arch/x86/xstate.c`: `valid_xcr0`, `handle_xsetbv`), judged against
//! the features the guest's CPUID policy shows it. A write these rules
//! refuse gets #GP in the guest and never reaches the VMCB or XCR0, so
//! neither VMRUN nor rxen's own `XSETBV` can fail on a guest's choice.
//! Pure logic, tested on the host.

use crate::cpuid_policy::Regs;

/// CR0 bits.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// Emulation.
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type (hard-wired to 1).
    pub const ET: u64 = 1 << 4;
    /// Numeric error.
    pub const NE: u64 = 1 << 5;
    /// Write protect.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    /// Virtual-8086 mode extensions.
    pub const VME: u64 = 1 << 0;
    /// Protected-mode virtual interrupts.
    pub const PVI: u64 = 1 << 1;
    /// Time stamp disable.
    pub const TSD: u64 = 1 << 2;
    /// Debugging extensions.
    pub const DE: u64 = 1 << 3;
    /// Page size extensions.
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Machine-check enable.
    pub const MCE: u64 = 1 << 6;
    /// Page global enable.
    pub const PGE: u64 = 1 << 7;
    /// Performance counter enable.
    pub const PCE: u64 = 1 << 8;
    /// OS FXSAVE/FXRSTOR support.
    pub const OSFXSR: u64 = 1 << 9;
    /// OS unmasked SIMD exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// User-mode instruction prevention.
    pub const UMIP: u64 = 1 << 11;
    /// 5-level paging.
    pub const LA57: u64 = 1 << 12;
    /// VMX enable (Intel only).
    pub const VMXE: u64 = 1 << 13;
    /// SMX enable (Intel only).
    pub const SMXE: u64 = 1 << 14;
    /// RDFSBASE and friends.
    pub const FSGSBASE: u64 = 1 << 16;
    /// Process-context identifiers.
    pub const PCIDE: u64 = 1 << 17;
    /// XSAVE and XCR0.
    pub const OSXSAVE: u64 = 1 << 18;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
    /// Protection keys for user pages.
    pub const PKE: u64 = 1 << 22;
    /// Control-flow enforcement.
    pub const CET: u64 = 1 << 23;
}

/// EFER bits.
pub mod efer {
    /// SYSCALL/SYSRET.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// SVM enable.
    pub const SVME: u64 = 1 << 12;
    /// Fast FXSAVE/FXRSTOR.
    pub const FFXSE: u64 = 1 << 14;
    /// Bits Xen 4.17 knows (`EFER_KNOWN_MASK`; LMSLE is not among them).
    pub const KNOWN: u64 = SCE | LME | LMA | NXE | SVME | FFXSE;
}

/// XCR0 components.
pub mod xcr0 {
    /// x87 state.
    pub const FP: u64 = 1 << 0;
    /// SSE state.
    pub const SSE: u64 = 1 << 1;
    /// Upper halves of the YMM registers (AVX).
    pub const YMM: u64 = 1 << 2;
    /// MPX bound registers.
    pub const BNDREGS: u64 = 1 << 3;
    /// MPX configuration and status.
    pub const BNDCSR: u64 = 1 << 4;
    /// AVX-512 opmask registers.
    pub const OPMASK: u64 = 1 << 5;
    /// Upper halves of ZMM0-15.
    pub const ZMM: u64 = 1 << 6;
    /// ZMM16-31.
    pub const HI_ZMM: u64 = 1 << 7;
    /// Protection-key rights register.
    pub const PKRU: u64 = 1 << 9;
    /// Lightweight profiling (AMD).
    pub const LWP: u64 = 1 << 62;
}

/// The features of a guest's CPUID policy that decide which control
/// register bits it may set (Xen's `struct cpu_policy` fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the CPUID feature of the same name
pub struct GuestFeatures {
    pub vme: bool,
    pub de: bool,
    pub pse: bool,
    pub tsc: bool,
    pub pae: bool,
    pub mce: bool,
    pub pge: bool,
    pub mca: bool,
    pub fxsr: bool,
    pub sse: bool,
    pub pcid: bool,
    pub xsave: bool,
    pub avx: bool,
    pub fsgsbase: bool,
    pub smep: bool,
    pub mpx: bool,
    pub avx512f: bool,
    pub smap: bool,
    pub umip: bool,
    pub pku: bool,
    pub cet_ss: bool,
    pub cet_ibt: bool,
    pub syscall: bool,
    pub nx: bool,
    pub ffxsr: bool,
    pub lm: bool,
    pub svm: bool,
    pub vmx: bool,
}

fn bit(reg: u32, n: u32) -> bool {
    reg & (1 << n) != 0
}

impl GuestFeatures {
    /// Reads the features from the guest's view of CPUID (`leaf`, `subleaf`
    /// -> registers).
    pub fn from_cpuid(cpuid: &dyn Fn(u32, u32) -> Regs) -> Self {
        let max_basic = cpuid(0, 0)[0];
        let max_ext = cpuid(0x8000_0000, 0)[0];
        let [_, _, c1, d1] = if max_basic >= 1 { cpuid(1, 0) } else { [0; 4] };
        let [_, b7, c7, d7] = if max_basic >= 7 { cpuid(7, 0) } else { [0; 4] };
        let [_, _, ce, de] = if max_ext >= 0x8000_0001 {
            cpuid(0x8000_0001, 0)
        } else {
            [0; 4]
        };
        Self {
            vme: bit(d1, 1),
            de: bit(d1, 2),
            pse: bit(d1, 3),
            tsc: bit(d1, 4),
            pae: bit(d1, 6),
            mce: bit(d1, 7),
            pge: bit(d1, 13),
            mca: bit(d1, 14),
            fxsr: bit(d1, 24),
            sse: bit(d1, 25),
            pcid: bit(c1, 17),
            xsave: bit(c1, 26),
            avx: bit(c1, 28),
            vmx: bit(c1, 5),
            fsgsbase: bit(b7, 0),
            smep: bit(b7, 7),
            mpx: bit(b7, 14),
            avx512f: bit(b7, 16),
            smap: bit(b7, 20),
            umip: bit(c7, 2),
            pku: bit(c7, 3),
            cet_ss: bit(c7, 7),
            cet_ibt: bit(d7, 20),
            svm: bit(ce, 2),
            syscall: bit(de, 11),
            nx: bit(de, 20),
            ffxsr: bit(de, 25),
            lm: bit(de, 29),
        }
    }

    /// The CR4 bits the guest may set (Xen's `hvm_cr4_guest_valid_bits`,
    /// without nested virtualization: VMXE never).
    pub fn cr4_valid_bits(&self) -> u64 {
        let on = |cond: bool, bits: u64| if cond { bits } else { 0 };
        on(self.vme, cr4::VME | cr4::PVI)
            | on(self.tsc, cr4::TSD)
            | on(self.de, cr4::DE)
            | on(self.pse, cr4::PSE)
            | on(self.pae, cr4::PAE)
            | on(self.mce || self.mca, cr4::MCE)
            | on(self.pge, cr4::PGE)
            | cr4::PCE
            | on(self.fxsr, cr4::OSFXSR)
            | on(self.sse, cr4::OSXMMEXCPT)
            | on(self.umip, cr4::UMIP)
            | on(self.fsgsbase, cr4::FSGSBASE)
            | on(self.pcid, cr4::PCIDE)
            | on(self.xsave, cr4::OSXSAVE)
            | on(self.smep, cr4::SMEP)
            | on(self.smap, cr4::SMAP)
            | on(self.pku, cr4::PKE)
            | on(self.cet_ss || self.cet_ibt, cr4::CET)
    }

    /// The XCR0 components the guest may enable (Xen's
    /// `recalculate_xstate`): x87 and SSE with XSAVE, and each further
    /// component with the feature that uses it, within what the host
    /// supports (`host_xcr0`, CPUID 0xD.0 EDX:EAX). LWP, whose MSRs rxen
    /// does not virtualize, is never offered.
    pub fn xcr0_max(&self, host_xcr0: u64) -> u64 {
        if !self.xsave {
            return 0;
        }
        let on = |cond: bool, bits: u64| if cond { bits } else { 0 };
        let wanted = xcr0::FP
            | xcr0::SSE
            | on(self.avx, xcr0::YMM)
            | on(self.mpx, xcr0::BNDREGS | xcr0::BNDCSR)
            | on(self.avx512f, xcr0::OPMASK | xcr0::ZMM | xcr0::HI_ZMM)
            | on(self.pku, xcr0::PKRU);
        wanted & host_xcr0
    }
}

/// Whether XCR0 = `value` is architecturally consistent (Xen's
/// `valid_xcr0`): x87 set; YMM needs SSE; the three AVX-512 components all
/// or none, and they need YMM; MPX's two together.
pub fn valid_xcr0(value: u64) -> bool {
    const AVX512: u64 = xcr0::OPMASK | xcr0::ZMM | xcr0::HI_ZMM;
    if value & xcr0::FP == 0 {
        return false;
    }
    if value & xcr0::YMM != 0 && value & xcr0::SSE == 0 {
        return false;
    }
    if value & AVX512 != 0 && (value & xcr0::YMM == 0 || value & AVX512 != AVX512) {
        return false;
    }
    (value & xcr0::BNDREGS == 0) == (value & xcr0::BNDCSR == 0)
}

/// Whether a guest whose policy allows `max` may set XCR0 = `value`
/// (Xen's `handle_xsetbv`).
pub fn guest_xcr0_ok(value: u64, max: u64) -> bool {
    value & !max == 0 && valid_xcr0(value)
}

/// Why a control-register write is refused (the guest gets #GP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Bits 63:32 of CR0 set.
    Cr0HighBits,
    /// CR0.PG without CR0.PE.
    PagingWithoutProtection,
    /// CR0.NW without CR0.CD.
    NotWriteThroughWithoutCacheDisable,
    /// CR0.PG on with EFER.LME but CR4.PAE off.
    LongModeWithoutPae,
    /// CR0.PG off in 64-bit code.
    PagingOffIn64BitCode,
    /// CR0.PG off with CR4.PCIDE on.
    PagingOffWithPcid,
    /// CR0.WP off with CR4.CET on, or CET on without WP.
    CetWithoutWp,
    /// A CR4 bit the policy does not allow, or a reserved bit.
    Cr4Reserved,
    /// CR4.PAE off in long mode.
    PaeOffInLongMode,
    /// CR4.PCIDE on outside long mode or with CR3[11:0] set.
    PcidNotAllowedNow,
    /// An EFER bit unknown, or a feature the policy does not have.
    EferReserved,
    /// EFER.LME changed while paging is on.
    LmeWithPaging,
}

/// The guest's state a control-register write is judged against.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrState {
    /// Current CR0.
    pub cr0: u64,
    /// Current CR3.
    pub cr3: u64,
    /// Current CR4.
    pub cr4: u64,
    /// Current EFER.
    pub efer: u64,
    /// Whether CS is a 64-bit code segment (CS.L).
    pub cs_l: bool,
}

/// A CR0 write (Xen's `hvm_set_cr0`): the value to load (reserved low bits
/// cleared, ET set, as Xen does) and the new EFER (LMA follows PG when LME
/// is set), or why it is refused. Xen lets NW without CD through and its
/// VMRUN then fails; rxen refuses it with #GP as the SDM and APM say.
pub fn set_cr0(value: u64, state: &CrState) -> Result<(u64, u64), Refused> {
    use cr0::*;
    if value >> 32 != 0 {
        return Err(Refused::Cr0HighBits);
    }
    let value = (value & (PE | MP | EM | TS | ET | NE | WP | AM | NW | CD | PG)) | ET;
    if value & (PE | PG) == PG {
        return Err(Refused::PagingWithoutProtection);
    }
    if value & (NW | CD) == NW {
        return Err(Refused::NotWriteThroughWithoutCacheDisable);
    }
    if value & WP == 0 && state.cr4 & cr4::CET != 0 {
        return Err(Refused::CetWithoutWp);
    }
    let mut efer = state.efer;
    let old = state.cr0;
    if value & PG != 0 && old & PG == 0 {
        if efer & efer::LME != 0 {
            if state.cr4 & cr4::PAE == 0 {
                return Err(Refused::LongModeWithoutPae);
            }
            efer |= efer::LMA;
        }
    } else if value & PG == 0 && old & PG != 0 {
        if efer & efer::LME != 0 && state.cs_l {
            return Err(Refused::PagingOffIn64BitCode);
        }
        if state.cr4 & cr4::PCIDE != 0 {
            return Err(Refused::PagingOffWithPcid);
        }
        efer &= !efer::LMA;
    }
    Ok((value, efer))
}

/// A CR4 write (Xen's `hvm_set_cr4`).
pub fn set_cr4(value: u64, state: &CrState, features: &GuestFeatures) -> Result<u64, Refused> {
    if value & !features.cr4_valid_bits() != 0 {
        return Err(Refused::Cr4Reserved);
    }
    let long_mode = state.efer & efer::LMA != 0;
    if value & cr4::PAE == 0 && long_mode {
        return Err(Refused::PaeOffInLongMode);
    }
    if value & cr4::CET != 0 && state.cr0 & cr0::WP == 0 {
        return Err(Refused::CetWithoutWp);
    }
    if value & cr4::PCIDE != 0
        && state.cr4 & cr4::PCIDE == 0
        && (!long_mode || state.cr3 & 0xFFF != 0)
    {
        return Err(Refused::PcidNotAllowedNow);
    }
    Ok(value)
}

/// An EFER write by WRMSR (Xen's `hvm_set_efer` with `hvm_efer_valid`):
/// the value to load (LMA kept from the current state, SVME never, since
/// rxen offers no nested virtualization) and whether CS.L must be cleared
/// (LME newly set: the guest stays in compatibility mode until it reloads
/// CS, as Xen does), or why it is refused.
pub fn set_efer(
    value: u64,
    state: &CrState,
    features: &GuestFeatures,
) -> Result<(u64, bool), Refused> {
    use efer::*;
    let value = value & !LMA;
    let refused = value & !KNOWN != 0
        || (value & SCE != 0 && !features.syscall)
        || (value & LME != 0 && !features.lm)
        || (value & NXE != 0 && !features.nx)
        || value & SVME != 0
        || (value & FFXSE != 0 && !features.ffxsr);
    if refused {
        return Err(Refused::EferReserved);
    }
    if (value ^ state.efer) & LME != 0 && state.cr0 & cr0::PG != 0 {
        return Err(Refused::LmeWithPaging);
    }
    let clear_cs_l = value & LME != 0 && state.efer & LME == 0 && state.cs_l;
    Ok((value | (state.efer & LMA), clear_cs_l))
}

/// The CR4 bits the host takes over from the guest it enters
/// ([`host_cr4_for`]).
pub const HOST_MIRRORED: u64 = cr4::PSE | cr4::PGE | cr4::SMEP | cr4::SMAP;

/// The host's CR4 for entering a guest whose CR4 is `guest`: `host` with the
/// [`HOST_MIRRORED`] bits the CPU has (`supported`) as the guest has them,
/// every other bit as the host has it. None of these bits changes what rxen
/// does: its page tables hold no user and no global pages, and long mode
/// ignores PSE. But an emulated CPU that drops its whole TLB when one of
/// them changes (QEMU's `cpu_x86_update_cr4`) otherwise does so at every
/// VMRUN and every #VMEXIT of a guest that sets them (Linux sets all four),
/// beside the flush the CR3 switch costs anyway.
pub fn host_cr4_for(host: u64, guest: u64, supported: u64) -> u64 {
    let mirrored = HOST_MIRRORED & supported;
    (host & !mirrored) | (guest & mirrored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AMD CPU with everything of interest but UMIP, PKU and CET.
    fn features() -> GuestFeatures {
        GuestFeatures {
            vme: true,
            de: true,
            pse: true,
            tsc: true,
            pae: true,
            mce: true,
            pge: true,
            mca: true,
            fxsr: true,
            sse: true,
            pcid: false,
            xsave: true,
            avx: true,
            fsgsbase: true,
            smep: true,
            mpx: false,
            avx512f: true,
            smap: true,
            umip: false,
            pku: false,
            cet_ss: false,
            cet_ibt: false,
            syscall: true,
            nx: true,
            ffxsr: true,
            lm: true,
            svm: false,
            vmx: false,
        }
    }

    #[test]
    fn xcr0_rules_are_xens() {
        assert!(valid_xcr0(xcr0::FP));
        assert!(valid_xcr0(0x7));
        assert!(valid_xcr0(0xE7));
        assert!(!valid_xcr0(0), "x87 must be set");
        assert!(!valid_xcr0(xcr0::SSE | xcr0::YMM), "x87 must be set");
        assert!(!valid_xcr0(xcr0::FP | xcr0::YMM), "AVX needs SSE");
        // The AVX-512 components all or none (Zen 4: a lone OPMASK made
        // rxen's own XSETBV fault), and only with AVX.
        assert!(!valid_xcr0(0x7 | xcr0::OPMASK));
        assert!(!valid_xcr0(0x7 | xcr0::OPMASK | xcr0::ZMM));
        assert!(!valid_xcr0(0x3 | 0xE0), "AVX-512 needs AVX");
        assert!(!valid_xcr0(0x3 | xcr0::BNDREGS), "MPX halves together");
        assert!(valid_xcr0(0x3 | xcr0::BNDREGS | xcr0::BNDCSR));
    }

    #[test]
    fn xcr0_is_limited_to_the_policy() {
        let host = 0x2E7 | xcr0::LWP | (1 << 17) | (1 << 18);
        let max = features().xcr0_max(host);
        assert_eq!(max, 0xE7, "no PKRU without PKU, never LWP or AMX");
        assert!(guest_xcr0_ok(0xE7, max));
        assert!(
            !guest_xcr0_ok(0x207, max),
            "PKRU the host has, the guest not"
        );
        assert!(!guest_xcr0_ok(0x7 | xcr0::LWP, max));
        assert!(!guest_xcr0_ok(0x7 | (1 << 17) | (1 << 18), max));
        let no_avx512 = GuestFeatures {
            avx512f: false,
            ..features()
        };
        assert_eq!(no_avx512.xcr0_max(host), 0x7);
        let no_xsave = GuestFeatures {
            xsave: false,
            ..features()
        };
        assert!(!guest_xcr0_ok(1, no_xsave.xcr0_max(host)));
    }

    #[test]
    fn cr4_bits_follow_the_policy() {
        let f = features();
        let state = CrState {
            cr0: cr0::PE | cr0::PG | cr0::WP,
            cr4: cr4::PAE,
            efer: efer::LME | efer::LMA,
            ..CrState::default()
        };
        let linux = cr4::PAE | cr4::PGE | cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::OSXSAVE;
        assert_eq!(set_cr4(linux, &state, &f), Ok(linux));
        for bad in [
            cr4::UMIP,
            cr4::VMXE,
            cr4::SMXE,
            cr4::LA57,
            cr4::PKE,
            cr4::CET,
            cr4::PCIDE,
            1 << 15,
            1 << 19,
            1 << 24,
            1 << 32,
        ] {
            assert_eq!(
                set_cr4(linux | bad, &state, &f),
                Err(Refused::Cr4Reserved),
                "{bad:#x}"
            );
        }
        let umip = GuestFeatures { umip: true, ..f };
        assert!(set_cr4(linux | cr4::UMIP, &state, &umip).is_ok());
        assert_eq!(
            set_cr4(cr4::PGE, &state, &f),
            Err(Refused::PaeOffInLongMode)
        );
        let pcid = GuestFeatures { pcid: true, ..f };
        let cr3_low = CrState {
            cr3: 0x1001,
            ..state
        };
        assert_eq!(
            set_cr4(linux | cr4::PCIDE, &cr3_low, &pcid),
            Err(Refused::PcidNotAllowedNow)
        );
        assert!(set_cr4(linux | cr4::PCIDE, &state, &pcid).is_ok());
    }

    #[test]
    fn cr0_rules() {
        use cr0::*;
        let protected = CrState {
            cr0: PE | ET,
            ..CrState::default()
        };
        assert_eq!(
            set_cr0(PE | (1 << 32), &protected),
            Err(Refused::Cr0HighBits)
        );
        assert_eq!(
            set_cr0(PG, &protected),
            Err(Refused::PagingWithoutProtection)
        );
        assert_eq!(
            set_cr0(PE | NW, &protected),
            Err(Refused::NotWriteThroughWithoutCacheDisable)
        );
        assert_eq!(
            set_cr0(PE | NW | CD, &protected),
            Ok((PE | ET | NW | CD, 0))
        );
        // Reserved low bits are dropped and ET forced on, as Xen does.
        assert_eq!(set_cr0(PE | (1 << 7), &protected), Ok((PE | ET, 0)));
        // Entering long mode sets LMA, and needs PAE.
        let lme = CrState {
            efer: efer::LME,
            ..protected
        };
        assert_eq!(set_cr0(PE | PG, &lme), Err(Refused::LongModeWithoutPae));
        let pae = CrState {
            cr4: cr4::PAE,
            ..lme
        };
        assert_eq!(
            set_cr0(PE | PG, &pae),
            Ok((PE | ET | PG, efer::LME | efer::LMA))
        );
        // Leaving paging in 64-bit code is refused; in compatibility code it
        // clears LMA.
        let long = CrState {
            cr0: PE | ET | PG,
            efer: efer::LME | efer::LMA,
            cs_l: true,
            ..pae
        };
        assert_eq!(set_cr0(PE, &long), Err(Refused::PagingOffIn64BitCode));
        let compat = CrState {
            cs_l: false,
            ..long
        };
        assert_eq!(set_cr0(PE, &compat), Ok((PE | ET, efer::LME)));
    }

    #[test]
    fn efer_rules() {
        let f = features();
        let state = CrState {
            cr0: cr0::PE,
            ..CrState::default()
        };
        let ok = efer::SCE | efer::LME | efer::NXE;
        assert_eq!(set_efer(ok, &state, &f), Ok((ok, false)));
        assert_eq!(set_efer(efer::SVME, &state, &f), Err(Refused::EferReserved));
        assert_eq!(set_efer(1 << 13, &state, &f), Err(Refused::EferReserved));
        assert_eq!(set_efer(1 << 63, &state, &f), Err(Refused::EferReserved));
        let no_nx = GuestFeatures { nx: false, ..f };
        assert_eq!(
            set_efer(efer::NXE, &state, &no_nx),
            Err(Refused::EferReserved)
        );
        // LMA written by the guest is ignored (kept from the state).
        assert_eq!(set_efer(efer::LMA, &state, &f), Ok((0, false)));
        let paging = CrState {
            cr0: cr0::PE | cr0::PG,
            ..state
        };
        assert_eq!(
            set_efer(efer::LME, &paging, &f),
            Err(Refused::LmeWithPaging)
        );
        let cs_l = CrState {
            cs_l: true,
            ..state
        };
        assert_eq!(set_efer(efer::LME, &cs_l, &f), Ok((efer::LME, true)));
    }

    #[test]
    fn the_host_takes_the_guests_paging_bits_and_keeps_its_own() {
        let host = cr4::PAE | cr4::OSXSAVE | cr4::OSFXSR;
        let linux = cr4::PAE | cr4::PSE | cr4::PGE | cr4::SMEP | cr4::SMAP | cr4::OSXSAVE;
        let all = HOST_MIRRORED;
        // Entering Linux: the four bits on, the host's own kept (OSFXSR),
        // nothing else of the guest's taken (its OSXSAVE is the host's too).
        let entering_linux = host_cr4_for(host, linux, all);
        assert_eq!(
            entering_linux,
            host | cr4::PSE | cr4::PGE | cr4::SMEP | cr4::SMAP
        );
        // Then a guest with PAE alone: the four go again.
        assert_eq!(host_cr4_for(entering_linux, cr4::PAE, all), host);
        // A guest's other bits never reach the host.
        let odd = cr4::PAE | cr4::VME | cr4::TSD | cr4::PCIDE | cr4::FSGSBASE | cr4::LA57;
        assert_eq!(host_cr4_for(host, odd, all), host);
        // Bits the CPU lacks are never set, whatever the guest holds.
        assert_eq!(
            host_cr4_for(host, linux, cr4::PGE | cr4::PSE),
            host | cr4::PGE | cr4::PSE
        );
        // A host that has a bit the CPU lacks (cannot happen) keeps it.
        assert_eq!(host_cr4_for(host | cr4::SMEP, 0, 0), host | cr4::SMEP);
    }
}
