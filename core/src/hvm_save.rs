//! The HVM context of `XEN_DOMCTL_gethvmcontext` / `sethvmcontext` (Xen's
//! arch/x86/hvm/save.c, with the record checks of hvm.c's
//! `hvm_load_cpu_ctxt`, svm.c's `svm_vmcb_restore` and mtrr.c's
//! `hvm_load_mtrr_msr`), as pure logic over bytes: the size and layout of
//! what rxen saves, and the walk and checks of a context to load.
//!
//! rxen saves and loads the `HEADER`, one `CPU` record per vCPU that is up
//! and one `MTRR` record per vCPU (as Xen's `hvm_save` orders them), then
//! `END`. Records Xen also saves for a PVH domain but rxen does not model
//! (LAPIC, LAPIC_REGS, the IRQ routing, CPU_XSAVE, VMCE_VCPU, TSC_ADJUST,
//! CPU_MSR...) are neither saved nor loaded: a context carrying them is
//! refused with `-EINVAL`, as Xen refuses a typecode it has no handler for,
//! rather than half restored.
//!
//! A context is checked whole before anything of it is applied (as Xen
//! after 4.17 does in two passes; 4.17 applied records as it went and left
//! a bad context half loaded with every vCPU down).
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::hvm_save::*;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// The largest context `sethvmcontext` takes (bigger ones are refused with
/// `-ENOMEM` before anything is allocated, as Xen's failing `xmalloc`):
/// room for the header, a CPU and an MTRR record for 128 vCPUs, and slack.
pub const MAX_CONTEXT: u32 = 256 * 1024;

/// Bytes of a context of a domain with `nr_vcpus` vCPUs, all up (Xen's
/// `hvm_save_size`: `gethvmcontext` with a null buffer).
pub fn save_size(nr_vcpus: u32) -> u32 {
    let per_vcpu = (DESCRIPTOR_LENGTH + CPU_LENGTH) + (DESCRIPTOR_LENGTH + MTRR_LENGTH);
    let fixed = DESCRIPTOR_LENGTH + HEADER_LENGTH + DESCRIPTOR_LENGTH;
    nr_vcpus
        .checked_mul(per_vcpu)
        .and_then(|n| n.checked_add(fixed))
        .unwrap_or(u32::MAX)
}

/// What the guest's CPU policy allows in a loaded CPU record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPolicy {
    /// CR4 bits the guest may set (Xen's `hvm_cr4_guest_valid_bits`).
    pub cr4_valid: u64,
    /// EFER bits the guest may set (SCE, LME/LMA, NXE, FFXSE as its CPUID
    /// has them; SVME never: no nested virtualization).
    pub efer_valid: u64,
    /// Guest-physical address bits (CR3 above them is refused).
    pub maxphysaddr: u8,
}

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_AM: u64 = 1 << 18;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
/// CR0 bits a guest may have (Xen's complement of
/// `HVM_CR0_GUEST_RESERVED_BITS`).
const CR0_VALID: u64 = CR0_PE
    | CR0_MP
    | CR0_EM
    | CR0_TS
    | CR0_ET
    | CR0_NE
    | CR0_WP
    | CR0_AM
    | CR0_NW
    | CR0_CD
    | CR0_PG;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// The CPU record of payload `bytes` as Xen's `hvm_load_entry_zeroextend`
/// reads it: a shorter record is zero-extended (one of the pre-3.4 length
/// has its tail moved into place) and then counts as having its FPU state,
/// as `_hvm_hw_fix_cpu` says; a longer one is `-EINVAL`.
pub fn read_cpu(bytes: &[u8]) -> Result<HvmHwCpu, Errno> {
    let mut cpu = HvmHwCpu::new_zeroed();
    let full = CPU_LENGTH as usize;
    if bytes.len() > full {
        return Err(errno::EINVAL);
    }
    cpu.as_mut_bytes()
        .get_mut(..bytes.len())
        .ok_or(errno::EINVAL)?
        .copy_from_slice(bytes);
    if bytes.len() == full {
        return Ok(cpu);
    }
    if bytes.len() == HVM_HW_CPU_COMPAT_LENGTH as usize {
        // The compat layout has no msr_tsc_aux: tsc, the pending event
        // and its error code sit 8 bytes early.
        let (tsc, event) = (cpu.msr_tsc_aux, cpu.tsc);
        cpu.msr_tsc_aux = 0;
        cpu.tsc = tsc;
        cpu.pending_event = event as u32;
        cpu.error_code = (event >> 32) as u32;
    }
    cpu.flags = XEN_X86_FPU_INITIALISED;
    Ok(cpu)
}

/// `pending_event`'s valid bit.
const EVENT_VALID: u32 = 1 << 31;
/// `pending_event`'s error-code-valid bit.
const EVENT_ERROR_VALID: u32 = 1 << 11;

/// The event type of `pending_event` (bits 8-10).
fn event_type(event: u32) -> u32 {
    (event >> 8) & 7
}

/// Xen's `hvm_event_needs_reinjection`: whether a pending event is injected
/// again on load (external interrupts, NMIs, hardware exceptions other than
/// the trap-like #BP and #OF; software interrupts are raised again by
/// their instruction).
pub fn event_needs_reinjection(event: u32) -> bool {
    let vector = event & 0xFF;
    match event_type(event) {
        0 | 2 => true,
        3 => vector != 3 && vector != 4,
        _ => false,
    }
}

/// Xen's checks of a CPU record (`hvm_load_cpu_ctxt`, then
/// `svm_vmcb_restore`'s of the pending event): `-EINVAL` for non-zero
/// padding, a CR0 with reserved bits, without ET or with PG but not PE, CR4
/// bits the policy does not allow, an EFER with bits it does not allow or
/// LMA without LME and PG, a CR3 above the guest's physical address bits,
/// unknown flags, a TSC_AUX over 32 bits, a pending event of a reserved
/// type or with reserved bits or an error code over 16 bits.
pub fn check_cpu(cpu: &HvmHwCpu, policy: &CpuPolicy) -> Result<(), Errno> {
    let bad_cr0 =
        cpu.cr0 & !CR0_VALID != 0 || cpu.cr0 & CR0_ET == 0 || cpu.cr0 & (CR0_PE | CR0_PG) == CR0_PG;
    let bad_efer = cpu.msr_efer & !policy.efer_valid != 0
        || (cpu.msr_efer & EFER_LMA != 0
            && (cpu.msr_efer & EFER_LME == 0 || cpu.cr0 & CR0_PG == 0));
    let bad_cr3 = cpu
        .cr3
        .checked_shr(u32::from(policy.maxphysaddr))
        .unwrap_or(0)
        != 0;
    let event = cpu.pending_event;
    let bad_event = event & EVENT_VALID != 0
        && (matches!(event_type(event), 1 | 5..=7)
            || event & 0x7FFF_F000 != 0
            || (event & EVENT_ERROR_VALID != 0 && cpu.error_code > 0xFFFF));
    let bad = cpu.pad0 != 0
        || bad_cr0
        || cpu.cr4 & !policy.cr4_valid != 0
        || bad_efer
        || bad_cr3
        || cpu.flags & !XEN_X86_FPU_INITIALISED != 0
        || cpu.msr_tsc_aux > u64::from(u32::MAX)
        || bad_event;
    if bad {
        Err(errno::EINVAL)
    } else {
        Ok(())
    }
}

/// What rxen keeps of an MTRR record: the default type and the PAT, each
/// only if valid (Xen's `mtrr_def_type_msr_set` and `hvm_set_guest_pat`
/// ignore invalid values and the load still succeeds). rxen has no MTRR
/// emulation: the ranges are accepted and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MtrrLoad {
    /// IA32_MTRR_DEF_TYPE, if valid.
    pub def_type: Option<u64>,
    /// IA32_PAT, if valid.
    pub pat: Option<u64>,
}

/// Whether `ty` is an MTRR memory type (UC, WC, WT, WP, WB).
fn mtrr_type(ty: u64) -> bool {
    matches!(ty, 0 | 1 | 4 | 5 | 6)
}

/// Xen's checks of an MTRR record (`hvm_load_mtrr_msr`): the exact length
/// and at most [`MTRR_VCNT`] variable ranges (`-EINVAL`); then what of it
/// rxen keeps.
pub fn check_mtrr(bytes: &[u8]) -> Result<MtrrLoad, Errno> {
    let mtrr = HvmHwMtrr::read_from_bytes(bytes).map_err(|_| errno::EINVAL)?;
    if mtrr.msr_mtrr_cap & 0xFF > MTRR_VCNT as u64 {
        return Err(errno::EINVAL);
    }
    let def = mtrr.msr_mtrr_def_type;
    let def_ok = mtrr_type(def & 0xFF) && def & !0xCFF == 0;
    let pat_ok = mtrr
        .msr_pat_cr
        .to_le_bytes()
        .iter()
        .all(|&b| mtrr_type(u64::from(b)) || b == 7);
    Ok(MtrrLoad {
        def_type: def_ok.then_some(def),
        pat: pat_ok.then_some(mtrr.msr_pat_cr),
    })
}

/// One checked record of a context to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A CPU record for vCPU `.0` (its payload, checked).
    Cpu(u32, &'a [u8]),
    /// What rxen keeps of the MTRR record of vCPU `.0`.
    Mtrr(u32, MtrrLoad),
}

/// Checks context `blob` for a domain with `nr_vcpus` vCPUs, as Xen's
/// `hvm_load` does. Errnos as Xen 4.17's: a missing or malformed header or
/// no `END` before the bytes run out, `-ENODATA`; a wrong magic or version,
/// `-EINVAL`; a typecode rxen does not load, a record running past the
/// bytes, a vCPU the domain does not have, or a bad record, `-EINVAL`.
pub fn check(blob: &[u8], nr_vcpus: u32, policy: &CpuPolicy) -> Result<(), Errno> {
    for_each_record(blob, nr_vcpus, policy, &mut |_| Ok(()))
}

/// Calls `visit` on each record of `blob` in order, each checked first
/// (call [`check`] before, so that nothing is applied of a bad context).
pub fn for_each_record(
    blob: &[u8],
    nr_vcpus: u32,
    policy: &CpuPolicy,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let (desc, rest) = HvmSaveDescriptor::read_from_prefix(blob).map_err(|_| errno::ENODATA)?;
    if desc.typecode != HVM_SAVE_CODE_HEADER || desc.length != HEADER_LENGTH {
        return Err(errno::ENODATA);
    }
    let (header, mut rest) = HvmSaveHeader::read_from_prefix(rest).map_err(|_| errno::ENODATA)?;
    if header.magic != HVM_FILE_MAGIC || header.version != HVM_FILE_VERSION {
        return Err(errno::EINVAL);
    }
    loop {
        let (desc, after) =
            HvmSaveDescriptor::read_from_prefix(rest).map_err(|_| errno::ENODATA)?;
        if desc.typecode == HVM_SAVE_CODE_END {
            return Ok(());
        }
        if !matches!(desc.typecode, HVM_SAVE_CODE_CPU | HVM_SAVE_CODE_MTRR) {
            return Err(errno::EINVAL);
        }
        let vcpu = u32::from(desc.instance);
        if vcpu >= nr_vcpus {
            return Err(errno::EINVAL);
        }
        let length = usize::try_from(desc.length).map_err(|_| errno::EINVAL)?;
        let payload = after.get(..length).ok_or(errno::EINVAL)?;
        rest = after.get(length..).ok_or(errno::EINVAL)?;
        let record = if desc.typecode == HVM_SAVE_CODE_CPU {
            check_cpu(&read_cpu(payload)?, policy)?;
            Record::Cpu(vcpu, payload)
        } else {
            Record::Mtrr(vcpu, check_mtrr(payload)?)
        };
        visit(record)?;
    }
}

/// The header rxen saves: Xen's magic and version, an unknown changeset,
/// the host's CPUID leaf 1 EAX and the guest's TSC frequency.
pub fn header(cpuid_1_eax: u32, gtsc_khz: u32) -> HvmSaveHeader {
    HvmSaveHeader {
        magic: HVM_FILE_MAGIC,
        version: HVM_FILE_VERSION,
        changeset: u64::MAX,
        cpuid: cpuid_1_eax,
        gtsc_khz,
    }
}

/// A record's descriptor.
pub fn descriptor(typecode: u16, instance: u32, length: u32) -> HvmSaveDescriptor {
    HvmSaveDescriptor {
        typecode,
        instance: instance as u16,
        length,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec::Vec;

    pub(crate) const POLICY: CpuPolicy = CpuPolicy {
        // VME..PCE, OSFXSR, OSXMMEXCPT, FSGSBASE, OSXSAVE, SMEP, SMAP.
        cr4_valid: 0x1_FF | (3 << 9) | (1 << 16) | (1 << 18) | (3 << 20),
        // SCE, LME, LMA, NXE, FFXSE.
        efer_valid: 1 | (1 << 8) | (1 << 10) | (1 << 11) | (1 << 14),
        maxphysaddr: 48,
    };

    /// A record (descriptor and payload) into `out`.
    pub(crate) fn push(out: &mut Vec<u8>, typecode: u16, instance: u16, payload: &[u8]) {
        out.extend_from_slice(
            HvmSaveDescriptor {
                typecode,
                instance,
                length: payload.len() as u32,
            }
            .as_bytes(),
        );
        out.extend_from_slice(payload);
    }

    /// libxc's `vcpu_hvm` boot CPU: 32-bit flat protected mode at `rip`,
    /// EBX = `rbx`.
    pub(crate) fn boot_cpu(rip: u64, rbx: u64) -> HvmHwCpu {
        HvmHwCpu {
            rip,
            rbx,
            cr0: CR0_PE | CR0_ET,
            cs_limit: !0,
            ds_limit: !0,
            es_limit: !0,
            ss_limit: !0,
            tr_limit: 0x67,
            cs_arbytes: 0xC9B,
            ds_arbytes: 0xC93,
            es_arbytes: 0xC93,
            ss_arbytes: 0xC93,
            tr_arbytes: 0x8B,
            dr6: 0xFFFF_0FF0,
            dr7: 0x400,
            ..Default::default()
        }
    }

    /// HEADER + `records` + END.
    pub(crate) fn blob(records: &[(u16, u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        push(
            &mut out,
            HVM_SAVE_CODE_HEADER,
            0,
            header(0x00A0_0F11, 2_000_000).as_bytes(),
        );
        for (code, instance, payload) in records {
            push(&mut out, *code, *instance, payload);
        }
        push(&mut out, HVM_SAVE_CODE_END, 0, &[]);
        out
    }

    fn records(b: &[u8], nr_vcpus: u32) -> Result<Vec<(bool, u32)>, Errno> {
        let mut seen = Vec::new();
        check(b, nr_vcpus, &POLICY)?;
        for_each_record(b, nr_vcpus, &POLICY, &mut |r| {
            seen.push(match r {
                Record::Cpu(v, _) => (true, v),
                Record::Mtrr(v, _) => (false, v),
            });
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn a_libxc_context_loads() {
        let cpu = boot_cpu(0x10_0000, 0x2000);
        let mtrr = HvmHwMtrr {
            msr_pat_cr: 0x0007_0406_0007_0406,
            msr_mtrr_def_type: MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE,
            ..Default::default()
        };
        let b = blob(&[
            (HVM_SAVE_CODE_CPU, 0, cpu.as_bytes()),
            (HVM_SAVE_CODE_MTRR, 1, mtrr.as_bytes()),
        ]);
        assert_eq!(records(&b, 2), Ok(alloc::vec![(true, 0), (false, 1)]));
        assert_eq!(
            check_mtrr(mtrr.as_bytes()),
            Ok(MtrrLoad {
                def_type: Some(0x806),
                pat: Some(0x0007_0406_0007_0406)
            })
        );
        assert_eq!(save_size(2), 8 + 24 + 2 * (8 + 1032) + 2 * (8 + 240) + 8);
    }

    #[test]
    fn bad_contexts_apply_nothing() {
        let good = boot_cpu(0x10_0000, 0);
        let cpu = good.as_bytes();
        let mut bad_magic = blob(&[]);
        bad_magic[8] ^= 1;
        let mut short_header = blob(&[]);
        short_header[4] = 16;
        let mut no_end = blob(&[(HVM_SAVE_CODE_CPU, 0, cpu)]);
        no_end.truncate(no_end.len() - 8);
        let mut past_end = blob(&[(HVM_SAVE_CODE_CPU, 0, cpu)]);
        past_end[32 + 4..32 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let cases: [(&[u8], Errno); 7] = [
            (&[], errno::ENODATA),
            (&bad_magic, errno::EINVAL),
            (&short_header, errno::ENODATA),
            (&no_end, errno::ENODATA),
            (&past_end, errno::EINVAL),
            (&blob(&[(HVM_SAVE_CODE_LAPIC, 0, &[0; 8])]), errno::EINVAL),
            (&blob(&[(99, 0, &[])]), errno::EINVAL),
        ];
        for (b, want) in cases {
            assert_eq!(records(b, 2), Err(want));
        }
        // A good record first, then a vCPU the domain does not have.
        let b = blob(&[(HVM_SAVE_CODE_CPU, 0, cpu), (HVM_SAVE_CODE_CPU, 2, cpu)]);
        assert_eq!(check(&b, 2, &POLICY), Err(errno::EINVAL));
        assert_eq!(check(&b, 3, &POLICY), Ok(()));
        // Longer than the record: -EINVAL; an MTRR record of the wrong
        // length or with too many ranges too.
        let mut long = cpu.to_vec();
        long.push(0);
        assert_eq!(
            records(&blob(&[(HVM_SAVE_CODE_CPU, 0, &long)]), 2),
            Err(errno::EINVAL)
        );
        let mtrr = HvmHwMtrr {
            msr_mtrr_cap: 9,
            ..Default::default()
        };
        assert_eq!(
            records(&blob(&[(HVM_SAVE_CODE_MTRR, 0, mtrr.as_bytes())]), 2),
            Err(errno::EINVAL)
        );
        assert_eq!(
            records(&blob(&[(HVM_SAVE_CODE_MTRR, 0, &[0; 232])]), 2),
            Err(errno::EINVAL)
        );
    }

    #[test]
    fn cpu_checks_as_xen() {
        let good = boot_cpu(0x10_0000, 0);
        assert_eq!(check_cpu(&good, &POLICY), Ok(()));
        let long_mode = HvmHwCpu {
            cr0: CR0_PE | CR0_ET | CR0_PG,
            cr4: 1 << 5,
            msr_efer: EFER_LME | EFER_LMA,
            cr3: 0x1000,
            ..good
        };
        assert_eq!(check_cpu(&long_mode, &POLICY), Ok(()));
        let bad: [&dyn Fn(&mut HvmHwCpu); 12] = [
            &|c| c.pad0 = 1,
            &|c| c.cr0 = CR0_PE,
            &|c| c.cr0 |= 1 << 6,
            &|c| c.cr0 |= 1 << 32,
            &|c| c.cr0 = CR0_ET | CR0_PG,
            &|c| c.cr4 = 1 << 12,
            &|c| c.msr_efer = 1 << 12,
            &|c| c.msr_efer = EFER_LMA,
            &|c| c.cr3 = 1 << 48,
            &|c| c.flags = 2,
            &|c| c.msr_tsc_aux = 1 << 32,
            &|c| c.pending_event = EVENT_VALID | (1 << 8),
        ];
        for edit in bad {
            let mut c = good;
            edit(&mut c);
            assert_eq!(check_cpu(&c, &POLICY), Err(errno::EINVAL), "{c:?}");
        }
        let mut c = good;
        c.pending_event = EVENT_VALID | EVENT_ERROR_VALID | (3 << 8) | 13;
        c.error_code = 0x1_0000;
        assert_eq!(check_cpu(&c, &POLICY), Err(errno::EINVAL));
        c.error_code = 0;
        assert_eq!(check_cpu(&c, &POLICY), Ok(()));
        assert!(event_needs_reinjection(c.pending_event));
        assert!(!event_needs_reinjection(EVENT_VALID | (3 << 8) | 3));
    }

    #[test]
    fn short_cpu_records_are_zero_extended() {
        let mut full = boot_cpu(0x1234, 0);
        full.msr_tsc_aux = 7;
        full.tsc = 0x55;
        full.pending_event = EVENT_VALID | 0x20;
        full.error_code = 9;
        // The compat layout: no tsc_aux, no flags.
        let mut compat = full.as_bytes()[..1000].to_vec();
        compat.extend_from_slice(&0x55u64.to_le_bytes());
        compat.extend_from_slice(&(EVENT_VALID | 0x20).to_le_bytes());
        compat.extend_from_slice(&9u32.to_le_bytes());
        let c = read_cpu(&compat).unwrap();
        assert_eq!(
            (c.msr_tsc_aux, c.tsc, c.pending_event, c.error_code, c.flags),
            (0, 0x55, EVENT_VALID | 0x20, 9, XEN_X86_FPU_INITIALISED)
        );
        assert_eq!(c.rip, 0x1234);
        assert_eq!(read_cpu(full.as_bytes()), Ok(full));
        assert_eq!(read_cpu(&[0; 1033]), Err(errno::EINVAL));
    }

    #[test]
    fn mtrr_keeps_valid_values_only() {
        let m = HvmHwMtrr {
            msr_pat_cr: 0x0202_0202_0202_0202,
            msr_mtrr_def_type: 0x807,
            ..Default::default()
        };
        assert_eq!(check_mtrr(m.as_bytes()), Ok(MtrrLoad::default()));
    }
}
