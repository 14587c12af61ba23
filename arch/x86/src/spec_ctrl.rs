//! Speculative-execution hygiene for SVM guests, as Xen's `spec_ctrl.c`
//! does on AMD; each measure has a `spec-ctrl=` option to turn it off, and
//! is used only where CPUID says the CPU has what it needs. Which CPU bug
//! each covers:
//!
//! - **Spectre v2 / Branch Target Injection** (CVE-2017-5715), guest against
//!   guest: an IBPB (indirect branch prediction barrier, MSR_PRED_CMD) when a
//!   CPU switches to a vCPU of another domain than the last one it ran
//!   (`ibpb`, on by default where the CPU has IBPB), so no domain's training
//!   of the indirect branch predictor steers another's. `ibpb-entry`
//!   (default off, costly) issues one on every #VMEXIT, so a guest's training
//!   cannot steer the hypervisor's indirect branches either (Xen uses it on
//!   AMD parts that need it against Branch Type Confusion).
//! - **SpectreRSB / ret2spec** (CVE-2018-15572): the return stack buffer is
//!   overwritten with 32 harmless entries on every #VMEXIT, before the
//!   hypervisor's first `ret` (`rsb`, Xen's `rsb-hvm`; always available), so
//!   guest-made return predictions cannot steer the hypervisor's returns.
//! - **MSR_SPEC_CTRL virtualization** (`msr-sc`): a guest may set IBRS,
//!   STIBP (Spectre v2 within itself) and SSBD (Speculative Store Bypass,
//!   Spectre v4, CVE-2018-3639) for itself. The value is per vCPU, loaded
//!   just before VMRUN and replaced by the hypervisor's own value right after
//!   #VMEXIT (both with GIF clear), so one guest's choice neither weakens nor
//!   slows the hypervisor or another guest. MSR_VIRT_SPEC_CTRL.SSBD (AMD's
//!   hypervisor interface for SSBD) is offered on top and folded into the
//!   same value (or, when rxen itself runs on a hypervisor offering only
//!   VIRT_SSBD, written around VMRUN). Without `msr-sc` guests are not
//!   offered these MSRs (CPUID hides them; accesses take #GP).
//! - The hypervisor's own SPEC_CTRL value (`ibrs`, `ssbd`, both off by
//!   default as in Xen on AMD) is in force whenever rxen runs.
//!
//! Under QEMU's TCG the CPU offers none of IBPB, IBRS, STIBP or SSBD, so
//! there only the RSB overwrite is active; the boot log says what is
//! (Xen's "Speculative mitigation facilities" lines).

use core::sync::atomic::{AtomicU32, Ordering};

use alloc::string::String;
use rxen_core::cmdline::SpecCtrl;
use spin::Once;

use crate::cpu::MAX_CPUS;

use crate::msr::{MSR_PRED_CMD, MSR_SPEC_CTRL, MSR_VIRT_SPEC_CTRL};
/// SPEC_CTRL.IBRS.
pub const SPEC_CTRL_IBRS: u64 = 1 << 0;
/// SPEC_CTRL.STIBP.
pub const SPEC_CTRL_STIBP: u64 = 1 << 1;
/// SPEC_CTRL.SSBD (also VIRT_SPEC_CTRL.SSBD).
pub const SPEC_CTRL_SSBD: u64 = 1 << 2;
/// PRED_CMD.IBPB.
pub const PRED_CMD_IBPB: u64 = 1;

/// CPUID 7.0 EDX: IBRSB (MSR_SPEC_CTRL.IBRS and MSR_PRED_CMD).
pub const L7_EDX_IBRSB: u32 = 1 << 26;
/// CPUID 7.0 EDX: STIBP.
pub const L7_EDX_STIBP: u32 = 1 << 27;
/// CPUID 7.0 EDX: SSBD in MSR_SPEC_CTRL.
pub const L7_EDX_SSBD: u32 = 1 << 31;
/// CPUID 8000_0008 EBX: IBPB.
pub const EXT8_EBX_IBPB: u32 = 1 << 12;
/// CPUID 8000_0008 EBX: IBRS.
pub const EXT8_EBX_IBRS: u32 = 1 << 14;
/// CPUID 8000_0008 EBX: STIBP.
pub const EXT8_EBX_STIBP: u32 = 1 << 15;
/// CPUID 8000_0008 EBX: IBRS always on, STIBP always on, IBRS preferred,
/// IBRS same mode (hints that only mean something with IBRS offered).
pub const EXT8_EBX_IBRS_HINTS: u32 = 0xF << 16;
/// CPUID 8000_0008 EBX: AMD_SSBD (SSBD in MSR_SPEC_CTRL).
pub const EXT8_EBX_AMD_SSBD: u32 = 1 << 24;
/// CPUID 8000_0008 EBX: VIRT_SSBD (MSR_VIRT_SPEC_CTRL).
pub const EXT8_EBX_VIRT_SSBD: u32 = 1 << 25;

/// What the CPU offers (CPUID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facilities {
    /// MSR_PRED_CMD.IBPB.
    pub ibpb: bool,
    /// MSR_SPEC_CTRL.IBRS.
    pub ibrs: bool,
    /// MSR_SPEC_CTRL.STIBP.
    pub stibp: bool,
    /// MSR_SPEC_CTRL.SSBD.
    pub ssbd: bool,
    /// MSR_VIRT_SPEC_CTRL.SSBD (offered by a hypervisor below rxen).
    pub virt_ssbd: bool,
}

impl Facilities {
    /// From CPUID leaf 7.0 EDX and leaf 8000_0008 EBX (0 where absent).
    pub fn from_cpuid(l7_edx: u32, ext8_ebx: u32) -> Self {
        Facilities {
            ibpb: l7_edx & L7_EDX_IBRSB != 0 || ext8_ebx & EXT8_EBX_IBPB != 0,
            ibrs: l7_edx & L7_EDX_IBRSB != 0 || ext8_ebx & EXT8_EBX_IBRS != 0,
            stibp: l7_edx & L7_EDX_STIBP != 0 || ext8_ebx & EXT8_EBX_STIBP != 0,
            ssbd: l7_edx & L7_EDX_SSBD != 0 || ext8_ebx & EXT8_EBX_AMD_SSBD != 0,
            virt_ssbd: ext8_ebx & EXT8_EBX_VIRT_SSBD != 0,
        }
    }

    /// Whether MSR_SPEC_CTRL exists.
    pub fn spec_ctrl_msr(&self) -> bool {
        self.ibrs || self.stibp || self.ssbd
    }

    /// This CPU's facilities.
    pub fn detect() -> Self {
        let max = raw_cpuid::cpuid!(0).eax;
        let max_ext = raw_cpuid::cpuid!(0x8000_0000).eax;
        let l7_edx = if max >= 7 {
            raw_cpuid::cpuid!(7, 0).edx
        } else {
            0
        };
        let ext8_ebx = if max_ext >= 0x8000_0008 {
            raw_cpuid::cpuid!(0x8000_0008).ebx
        } else {
            0
        };
        Self::from_cpuid(l7_edx, ext8_ebx)
    }
}

/// The mitigations in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Active {
    /// What the CPU has.
    pub hw: Facilities,
    /// RSB overwrite on #VMEXIT.
    pub rsb: bool,
    /// IBPB on switching to another domain.
    pub ibpb_ctxt: bool,
    /// IBPB on every #VMEXIT.
    pub ibpb_entry: bool,
    /// MSR_SPEC_CTRL virtualized for guests.
    pub msr_sc: bool,
    /// The hypervisor's MSR_SPEC_CTRL value.
    pub host_spec_ctrl: u64,
}

impl Active {
    /// Chooses the mitigations for `hw` from the options (unset ones take
    /// their defaults; anything the CPU lacks stays off).
    pub fn choose(hw: Facilities, opts: &SpecCtrl) -> Self {
        let msr = hw.spec_ctrl_msr();
        let mut host = 0;
        if hw.ibrs && opts.ibrs == Some(true) {
            host |= SPEC_CTRL_IBRS;
        }
        if hw.ssbd && opts.ssbd == Some(true) {
            host |= SPEC_CTRL_SSBD;
        }
        Active {
            hw,
            rsb: opts.rsb.unwrap_or(true),
            ibpb_ctxt: hw.ibpb && opts.ibpb.unwrap_or(true),
            ibpb_entry: hw.ibpb && opts.ibpb_entry.unwrap_or(false),
            msr_sc: msr && opts.msr_sc.unwrap_or(true),
            host_spec_ctrl: host,
        }
    }

    /// What guests are offered.
    pub fn offer(&self) -> GuestOffer {
        GuestOffer {
            ibpb: self.hw.ibpb,
            spec_ctrl: self.msr_sc && self.hw.ibrs,
            stibp: self.msr_sc && self.hw.stibp,
            ssbd: self.msr_sc && self.hw.ssbd,
            virt_ssbd: self.msr_sc && (self.hw.ssbd || self.hw.virt_ssbd),
        }
    }

    /// The boot report, as Xen prints it (without the "(XEN)" prefix).
    pub fn report(&self) -> [String; 4] {
        use core::fmt::Write;
        let flag = |on: bool, name: &str| {
            if on {
                alloc::format!(" {name}")
            } else {
                String::new()
            }
        };
        let mut hw = String::new();
        let _ = write!(
            hw,
            "  Hardware features:{}{}{}{}{}",
            flag(self.hw.ibpb, "IBPB"),
            flag(self.hw.ibrs, "IBRS"),
            flag(self.hw.stibp, "STIBP"),
            flag(self.hw.ssbd, "SSBD"),
            flag(self.hw.virt_ssbd, "VIRT_SSBD"),
        );
        if hw.ends_with(':') {
            hw.push_str(" None");
        }
        let msr = if self.hw.spec_ctrl_msr() {
            alloc::format!(
                "SPEC_CTRL: IBRS{} SSBD{}",
                if self.host_spec_ctrl & SPEC_CTRL_IBRS != 0 {
                    '+'
                } else {
                    '-'
                },
                if self.host_spec_ctrl & SPEC_CTRL_SSBD != 0 {
                    '+'
                } else {
                    '-'
                },
            )
        } else {
            String::from("SPEC_CTRL: No")
        };
        let mut xen = alloc::format!(
            "  Xen settings: {msr}, Other:{}{}",
            flag(self.ibpb_ctxt, "IBPB-ctxt"),
            flag(self.ibpb_entry, "IBPB-entry"),
        );
        if xen.ends_with(':') {
            xen.push_str(" None");
        }
        let offer = self.offer();
        let mut hvm = alloc::format!(
            "  Support for HVM VMs:{}{}{}",
            flag(offer.spec_ctrl || offer.ssbd, "MSR_SPEC_CTRL"),
            flag(offer.virt_ssbd, "MSR_VIRT_SPEC_CTRL"),
            flag(self.rsb, "RSB"),
        );
        if hvm.ends_with(':') {
            hvm.push_str(" None");
        }
        [
            String::from("Speculative mitigation facilities:"),
            hw,
            xen,
            hvm,
        ]
    }
}

/// What guests are offered (CPUID and the MSRs behind it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestOffer {
    /// MSR_PRED_CMD.IBPB (8000_0008 EBX IBPB).
    pub ibpb: bool,
    /// MSR_SPEC_CTRL with IBRS (and STIBP, which is safe to set where the
    /// CPU lacks it) (8000_0008 EBX IBRS; 7.0 EDX IBRSB on Intel).
    pub spec_ctrl: bool,
    /// STIBP enumerated.
    pub stibp: bool,
    /// SPEC_CTRL.SSBD (AMD_SSBD).
    pub ssbd: bool,
    /// MSR_VIRT_SPEC_CTRL.SSBD (VIRT_SSBD).
    pub virt_ssbd: bool,
}

impl GuestOffer {
    /// SPEC_CTRL bits a guest may set (Xen's `msr_spec_ctrl_valid_bits`).
    pub fn spec_ctrl_valid_bits(&self) -> u64 {
        SPEC_CTRL_IBRS | SPEC_CTRL_STIBP | if self.ssbd { SPEC_CTRL_SSBD } else { 0 }
    }

    /// Filters CPUID leaf 7.0 EDX.
    pub fn filter_l7_edx(&self, edx: u32) -> u32 {
        let mut edx = edx;
        if !self.spec_ctrl {
            edx &= !L7_EDX_IBRSB;
        }
        if !self.stibp {
            edx &= !L7_EDX_STIBP;
        }
        if !self.ssbd {
            edx &= !L7_EDX_SSBD;
        }
        edx
    }

    /// Filters CPUID leaf 8000_0008 EBX.
    pub fn filter_ext8_ebx(&self, ebx: u32) -> u32 {
        let mut ebx = ebx & !EXT8_EBX_VIRT_SSBD;
        if !self.ibpb {
            ebx &= !EXT8_EBX_IBPB;
        }
        if !self.spec_ctrl {
            ebx &= !(EXT8_EBX_IBRS | EXT8_EBX_IBRS_HINTS);
        }
        if !self.stibp {
            ebx &= !EXT8_EBX_STIBP;
        }
        if !self.ssbd {
            ebx &= !EXT8_EBX_AMD_SSBD;
        }
        if self.virt_ssbd {
            ebx |= EXT8_EBX_VIRT_SSBD;
        }
        ebx
    }
}

static ACTIVE: Once<Active> = Once::new();

/// Chooses the mitigations once, at boot, from the command line.
pub fn init(opts: &SpecCtrl) -> &'static Active {
    ACTIVE.call_once(|| Active::choose(Facilities::detect(), opts))
}

/// The mitigations in force (all off before [`init`]).
pub fn active() -> Active {
    ACTIVE.get().copied().unwrap_or_default()
}

/// Puts the hypervisor's SPEC_CTRL value in force on this CPU (each CPU
/// at start-up, after [`init`]).
pub fn init_this_cpu() {
    let active = active();
    if active.hw.spec_ctrl_msr() {
        wrmsr(MSR_SPEC_CTRL, active.host_spec_ctrl);
    }
}

/// Issues an IBPB (the CPU must have it).
pub fn ibpb() {
    wrmsr(MSR_PRED_CMD, PRED_CMD_IBPB);
}

/// The domain each CPU last ran a vCPU of (u32::MAX: none yet).
static LAST_DOMAIN: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

/// CPU `cpu` is about to run a vCPU of domain `domid`: an IBPB if the last
/// domain it ran was another one (`ibpb`). Returns whether it issued one.
pub fn switch_to_domain(cpu: usize, domid: u16) -> bool {
    let Some(last) = LAST_DOMAIN.get(cpu) else {
        return false;
    };
    let previous = last.swap(u32::from(domid), Ordering::Relaxed);
    if previous != u32::from(domid) && previous != u32::MAX && active().ibpb_ctxt {
        ibpb();
        return true;
    }
    false
}

/// Writes `value` to `msr`; only for the MSRs of this module, which the
/// caller has checked the CPU has.
fn wrmsr(msr: u32, value: u64) {
    // SAFETY: callers only write SPEC_CTRL, PRED_CMD or VIRT_SPEC_CTRL,
    // after CPUID said they exist, with bits CPUID enumerates.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) };
}

/// Writes the guest's MSR_VIRT_SPEC_CTRL (only where the CPU has VIRT_SSBD
/// and not SSBD in SPEC_CTRL, i.e. under another hypervisor).
pub fn write_virt_spec_ctrl(value: u64) {
    wrmsr(MSR_VIRT_SPEC_CTRL, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN2: Facilities = Facilities {
        ibpb: true,
        ibrs: true,
        stibp: true,
        ssbd: true,
        virt_ssbd: false,
    };

    #[test]
    fn cpuid_bits() {
        assert_eq!(Facilities::from_cpuid(0, 0), Facilities::default());
        let hw = Facilities::from_cpuid(0, EXT8_EBX_IBPB | EXT8_EBX_IBRS | EXT8_EBX_AMD_SSBD);
        assert!(hw.ibpb && hw.ibrs && hw.ssbd && !hw.stibp && !hw.virt_ssbd);
        let intel = Facilities::from_cpuid(L7_EDX_IBRSB, 0);
        assert!(intel.ibpb && intel.ibrs);
    }

    #[test]
    fn defaults_and_spec_ctrl_no() {
        let a = Active::choose(ZEN2, &SpecCtrl::default());
        assert!(a.rsb && a.ibpb_ctxt && a.msr_sc && !a.ibpb_entry);
        assert_eq!(a.host_spec_ctrl, 0);
        let off = Active::choose(ZEN2, &SpecCtrl::OFF);
        assert!(!off.rsb && !off.ibpb_ctxt && !off.msr_sc && !off.ibpb_entry);
        assert_eq!(off.offer().spec_ctrl_valid_bits() & SPEC_CTRL_SSBD, 0);
        assert_eq!(off.offer().filter_ext8_ebx(u32::MAX) & 0x0300_C000, 0);
        // Nothing the CPU lacks is used, whatever the options say.
        let forced = SpecCtrl {
            ibpb: Some(true),
            ibpb_entry: Some(true),
            msr_sc: Some(true),
            ibrs: Some(true),
            ssbd: Some(true),
            rsb: None,
        };
        let tcg = Active::choose(Facilities::default(), &forced);
        assert!(tcg.rsb && !tcg.ibpb_ctxt && !tcg.ibpb_entry && !tcg.msr_sc);
        assert_eq!(tcg.host_spec_ctrl, 0);
        assert_eq!(Active::choose(ZEN2, &forced).host_spec_ctrl, 5);
    }

    #[test]
    fn guest_view() {
        let offer = Active::choose(ZEN2, &SpecCtrl::default()).offer();
        assert!(offer.virt_ssbd);
        assert_eq!(offer.spec_ctrl_valid_bits(), 7);
        let ebx = offer.filter_ext8_ebx(EXT8_EBX_IBPB | EXT8_EBX_IBRS | EXT8_EBX_AMD_SSBD);
        assert_eq!(ebx & EXT8_EBX_VIRT_SSBD, EXT8_EBX_VIRT_SSBD);
        let none = Active::choose(Facilities::default(), &SpecCtrl::default()).offer();
        assert_eq!(none.filter_ext8_ebx(u32::MAX) & 0x030F_D000, 0);
        assert_eq!(none.filter_l7_edx(u32::MAX) & 0x8C00_0000, 0);
    }

    #[test]
    fn report_lines() {
        let r = Active::choose(ZEN2, &SpecCtrl::default()).report();
        assert_eq!(r[0], "Speculative mitigation facilities:");
        assert_eq!(r[1], "  Hardware features: IBPB IBRS STIBP SSBD");
        assert_eq!(
            r[2],
            "  Xen settings: SPEC_CTRL: IBRS- SSBD-, Other: IBPB-ctxt"
        );
        assert_eq!(
            r[3],
            "  Support for HVM VMs: MSR_SPEC_CTRL MSR_VIRT_SPEC_CTRL RSB"
        );
        let r = Active::choose(Facilities::default(), &SpecCtrl::OFF).report();
        assert_eq!(r[1], "  Hardware features: None");
        assert_eq!(r[2], "  Xen settings: SPEC_CTRL: No, Other: None");
        assert_eq!(r[3], "  Support for HVM VMs: None");
    }
}
