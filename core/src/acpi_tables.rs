//! The ACPI tables of a PVH domU, built as Xen's toolstack gives them to a
//! PVH guest: a hardware-reduced platform with local APICs and nothing else.
//!
//! [`build`] lays out, for a buffer that will sit at a given guest-physical
//! address:
//!
//! | offset (16-byte aligned) | table | contents |
//! |---|---|---|
//! | 0 | RSDP | revision 2, the XSDT's address, both checksums |
//! | next | XSDT | the FADT and the MADT |
//! | next | FADT | revision 6.0, `HW_REDUCED_ACPI`, no VGA, no CMOS RTC, the DSDT |
//! | next | DSDT | `\_SB` with one processor device (`ACPI0007`) per vCPU |
//! | next | MADT | local APIC at 0xFEE00000, one enabled local APIC per vCPU |
//!
//! Every vCPU's APIC ID is its vCPU number, what its CPUID leaf 1 EBX[31:24]
//! reports; its ACPI processor UID is the vCPU number too (the `_UID` of its
//! processor device). Local APIC entries carry 8-bit IDs, and 0xFF is the
//! broadcast ID, so there are at most [`MAX_VCPUS`] vCPUs.
//!
//! The tables and the DSDT's AML are built with rust-vmm's `acpi_tables`
//! crate (what Cloud Hypervisor uses); this module checks the vCPU count and
//! the placement before calling it (the crate asserts on what it cannot
//! encode), lays the tables out, and sets what the crate does not: the
//! FADT's fields (its builder's are public) and the MADT's revision (the
//! crate's is always 1). Every table's creator ID and revision are the
//! crate's ([`CREATOR_ID`], [`CREATOR_REVISION`]).
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use ::acpi_tables::aml::{Device, Name, Path, Scope};
use ::acpi_tables::fadt::{FADTBuilder, Flags};
use ::acpi_tables::madt::{EnabledStatus, LocalInterruptController, ProcessorLocalApic, MADT};
use ::acpi_tables::rsdp::Rsdp;
use ::acpi_tables::sdt::Sdt;
use ::acpi_tables::xsdt::XSDT;
use ::acpi_tables::Aml;
use alloc::vec::Vec;

/// Where a domU's ACPI tables go: the top of the legacy hole, below 1 MiB (the
/// hypervisor's boot-time builder and the toolstack both put them there).
pub const ACPI_TABLES_BASE: u64 = 0xFC000;
/// The size of the area kept for them (the memory map's ACPI entry).
pub const ACPI_TABLES_SIZE: u64 = 0x10_0000 - ACPI_TABLES_BASE;
/// The start of the legacy hole (VGA memory, option ROMs, BIOS).
const LEGACY_HOLE: u64 = 0xA0000;

/// The guest's memory map: RAM below the legacy hole, the hole (reserved;
/// with `acpi`, its top [`ACPI_TABLES_SIZE`] bytes are ACPI, where the tables
/// go), RAM above. The hole is backed by the domain's memory but is not
/// counted as RAM.
pub fn guest_memory_map(memory_bytes: u64, acpi: bool) -> Vec<crate::domain::GuestMemRegion> {
    let mut map = Vec::new();
    map.push(crate::domain::GuestMemRegion {
        addr: 0,
        size: LEGACY_HOLE,
        kind: 1,
    });
    let reserved_end = if acpi { ACPI_TABLES_BASE } else { 0x10_0000 };
    map.push(crate::domain::GuestMemRegion {
        addr: LEGACY_HOLE,
        size: reserved_end.saturating_sub(LEGACY_HOLE),
        kind: 2,
    });
    if acpi {
        map.push(crate::domain::GuestMemRegion {
            addr: ACPI_TABLES_BASE,
            size: ACPI_TABLES_SIZE,
            kind: 3,
        });
    }
    if memory_bytes > 0x10_0000 {
        map.push(crate::domain::GuestMemRegion {
            addr: 0x10_0000,
            size: memory_bytes.saturating_sub(0x10_0000),
            kind: 1,
        });
    }
    map
}

/// The most vCPUs the tables describe (APIC IDs 0 to 254).
pub const MAX_VCPUS: u32 = 255;

/// The local APIC's guest-physical address, as the MADT gives it.
pub const LAPIC_ADDRESS: u32 = 0xFEE0_0000;

/// The OEM ID of every table (and the RSDP).
pub const OEM_ID: &[u8; 6] = b"Xen   ";
/// The OEM table ID of every table.
pub const OEM_TABLE_ID: &[u8; 8] = b"HVM     ";
/// The creator ID of every table: the `acpi_tables` crate's, which it
/// writes in the XSDT and MADT headers with no way to change it ("RVAT").
pub const CREATOR_ID: &[u8; 4] = &::acpi_tables::CREATOR_ID;
/// The creator revision of every table: the crate's (bytes 0, 0, 0, 1).
pub const CREATOR_REVISION: u32 = u32::from_le_bytes(::acpi_tables::CREATOR_REVISION);

/// FADT flags: WBINVD works.
pub const FADT_WBINVD: u32 = 1 << 0;
/// FADT flags: no fixed-feature power button.
pub const FADT_PWR_BUTTON: u32 = 1 << 4;
/// FADT flags: no fixed-feature sleep button.
pub const FADT_SLP_BUTTON: u32 = 1 << 5;
/// FADT flags: a hardware-reduced ACPI platform.
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// FADT IA-PC boot architecture flags: VGA not present.
pub const BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
/// FADT IA-PC boot architecture flags: CMOS RTC not present.
pub const BOOT_ARCH_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// The size of the common table header.
pub const HEADER_LEN: usize = 36;
/// The size of a revision 2 RSDP.
pub const RSDP_LEN: usize = 36;
/// The size of a revision 6 FADT.
pub const FADT_LEN: usize = 276;
/// The FADT's revision (major) and minor version: ACPI 6.0.
pub const FADT_REVISION: (u8, u8) = (6, 0);
/// The MADT's revision (ACPI 6.0).
pub const MADT_REVISION: u8 = 4;
/// The DSDT's revision (2: 64-bit AML integers).
pub const DSDT_REVISION: u8 = 2;

/// Why no tables were built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No vCPU, or more than [`MAX_VCPUS`].
    VcpuCount(u32),
    /// The base address is not 16-byte aligned, or the tables would not
    /// end below 4 GiB (the FADT's 32-bit DSDT field must hold it).
    Placement(u64),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::VcpuCount(n) => write!(f, "{n} vCPUs: ACPI tables describe 1 to {MAX_VCPUS}"),
            Self::Placement(at) => write!(f, "ACPI tables cannot be placed at {at:#x}"),
        }
    }
}

/// A built table set: the bytes to copy to `base`, and where each table is.
#[derive(Clone, Debug)]
pub struct AcpiTables {
    /// Guest-physical address of `bytes[0]`.
    pub base: u64,
    /// The tables, back to back.
    pub bytes: Vec<u8>,
    /// Guest-physical address of the RSDP (for `hvm_start_info.rsdp_paddr`).
    pub rsdp: u64,
    /// Guest-physical address of the XSDT.
    pub xsdt: u64,
    /// Guest-physical address of the FADT.
    pub fadt: u64,
    /// Guest-physical address of the DSDT.
    pub dsdt: u64,
    /// Guest-physical address of the MADT.
    pub madt: u64,
}

/// The APIC ID of vCPU `vcpu` (CPUID leaf 1 EBX[31:24] reports the vCPU number).
pub fn apic_id(vcpu: u32) -> u8 {
    vcpu as u8
}

/// The OEM revision of every table.
const OEM_REVISION: u32 = 1;

/// The bytes of a table (or any AML object) built by the crate.
pub(crate) fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Sets the checksum byte at `at` so that `bytes` sum to zero.
pub(crate) fn fix_checksum(bytes: &mut [u8], at: usize) {
    if let Some(slot) = bytes.get_mut(at) {
        *slot = 0;
    }
    let sum = bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b));
    if let Some(slot) = bytes.get_mut(at) {
        *slot = 0u8.wrapping_sub(sum);
    }
}

/// Sets the revision (offset 8) of the table in `table` and its checksum
/// (offset 9) again: the crate's MADT is always revision 1.
pub(crate) fn set_revision(table: &mut [u8], revision: u8) {
    if let Some(slot) = table.get_mut(8) {
        *slot = revision;
    }
    fix_checksum(table, 9);
}

/// Writes `v` at `at` in `t`. Every caller's offset is a table's position
/// in a buffer sized for them all (the tests read each back), so the write
/// always fits; one that did not would be a bug, caught in debug builds and
/// otherwise dropped rather than panicking.
fn put(t: &mut [u8], at: usize, v: &[u8]) {
    let dst = at.checked_add(v.len()).and_then(|end| t.get_mut(at..end));
    debug_assert!(dst.is_some(), "ACPI table write past its end");
    if let Some(dst) = dst {
        dst.copy_from_slice(v);
    }
}

/// The AML of `\_SB` with one processor device per vCPU (at most
/// [`MAX_VCPUS`]: the device names `C000` to `C0FE` have four characters).
fn dsdt_body(nr_vcpus: u32) -> Vec<u8> {
    let hid = Name::new(Path::new("_HID"), &"ACPI0007");
    let uids: Vec<Name> = (0..nr_vcpus)
        .map(|vcpu| Name::new(Path::new("_UID"), &vcpu))
        .collect();
    let devices: Vec<Device> = uids
        .iter()
        .zip(0..nr_vcpus)
        .map(|(uid, vcpu)| {
            let name = alloc::format!("C{:03X}", vcpu & 0xFFF);
            Device::new(Path::new(&name), alloc::vec![&hid as &dyn Aml, uid])
        })
        .collect();
    let children: Vec<&dyn Aml> = devices.iter().map(|d| d as &dyn Aml).collect();
    bytes_of(&Scope::new(Path::new("\\_SB_"), children))
}

/// Builds the tables for `nr_vcpus` vCPUs, to be placed at `base`
/// (16-byte aligned, below 4 GiB).
pub fn build(base: u64, nr_vcpus: u32) -> Result<AcpiTables, AcpiError> {
    if nr_vcpus == 0 || nr_vcpus > MAX_VCPUS {
        return Err(AcpiError::VcpuCount(nr_vcpus));
    }
    if !base.is_multiple_of(16) {
        return Err(AcpiError::Placement(base));
    }
    // The tables that do not hold addresses, for a vCPU count checked above
    // (the crate asserts on what it cannot encode: nothing here).
    // DSDT: \_SB with the processor devices.
    let mut dsdt = Sdt::new(
        *b"DSDT",
        HEADER_LEN as u32,
        DSDT_REVISION,
        *OEM_ID,
        *OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&dsdt_body(nr_vcpus));
    let dsdt = dsdt.as_slice();
    // MADT: no PC-AT 8259s (flags 0), one enabled local APIC per vCPU.
    let mut madt = MADT::new(
        *OEM_ID,
        *OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_ADDRESS),
    );
    for vcpu in 0..nr_vcpus {
        madt.add_structure(ProcessorLocalApic::new(
            vcpu as u8,
            apic_id(vcpu),
            EnabledStatus::Enabled,
        ));
    }
    let mut madt = bytes_of(&madt);
    set_revision(&mut madt, MADT_REVISION);

    // Sizes are small (at most MAX_VCPUS processors) but `base` is the
    // caller's: every sum is checked, an overflow is a bad placement.
    let add = |a: usize, b: usize| a.checked_add(b).ok_or(AcpiError::Placement(base));
    let align = |at: usize| at.next_multiple_of(16);
    let xsdt_len = HEADER_LEN + 2 * 8;
    let xsdt_off = align(RSDP_LEN);
    let fadt_off = align(add(xsdt_off, xsdt_len)?);
    let dsdt_off = align(add(fadt_off, FADT_LEN)?);
    let madt_off = align(add(dsdt_off, dsdt.len())?);
    let total = add(madt_off, madt.len())?;
    match base.checked_add(total as u64) {
        Some(end) if end <= 1 << 32 => {}
        _ => return Err(AcpiError::Placement(base)),
    }
    // Below 4 GiB, checked just above.
    let at = |off: usize| base.saturating_add(off as u64);

    // FADT: everything fixed-hardware absent; the DSDT in both fields.
    let mut fadt = FADTBuilder::new(*OEM_ID, *OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::HwReducedAcpi);
    (fadt.major_version, fadt.fadt_minor_version) = FADT_REVISION;
    fadt.dsdt = (at(dsdt_off) as u32).into();
    fadt.x_dsdt = at(dsdt_off).into();
    fadt.iapc_boot_arch = (BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT).into();
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"XenVMM\0\0").into();
    let fadt = bytes_of(&fadt.finalize());

    let mut xsdt = XSDT::new(*OEM_ID, *OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(at(fadt_off));
    xsdt.add_entry(at(madt_off));
    let xsdt = bytes_of(&xsdt);

    let rsdp = bytes_of(&Rsdp::new(*OEM_ID, at(xsdt_off)));
    debug_assert_eq!(
        (rsdp.len(), xsdt.len(), fadt.len()),
        (RSDP_LEN, xsdt_len, FADT_LEN)
    );

    let mut bytes = alloc::vec![0u8; total];
    for (off, table) in [
        (0, &rsdp[..]),
        (xsdt_off, &xsdt[..]),
        (fadt_off, &fadt[..]),
        (dsdt_off, dsdt),
        (madt_off, &madt[..]),
    ] {
        put(&mut bytes, off, table);
    }
    Ok(AcpiTables {
        base,
        bytes,
        rsdp: base,
        xsdt: at(xsdt_off),
        fadt: at(fadt_off),
        dsdt: at(dsdt_off),
        madt: at(madt_off),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::InBuffer;

    const BASE: u64 = 0xFC000;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }
    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    /// The table at guest-physical `addr`, checked: in the buffer, signature,
    /// length, checksum, OEM fields.
    fn table<'a>(t: &'a AcpiTables, addr: u64, signature: &[u8; 4]) -> &'a [u8] {
        let off = (addr - t.base) as usize;
        assert_eq!(&t.bytes[off..off + 4], signature);
        let len = u32_at(&t.bytes, off + 4) as usize;
        assert!(len >= HEADER_LEN && off + len <= t.bytes.len());
        let bytes = &t.bytes[off..off + len];
        assert_eq!(
            sum(bytes),
            0,
            "{} checksum",
            core::str::from_utf8(signature).unwrap()
        );
        assert_eq!(&bytes[10..16], OEM_ID);
        assert_eq!(&bytes[16..24], OEM_TABLE_ID);
        assert_eq!(&bytes[28..32], CREATOR_ID);
        assert_eq!(u32_at(bytes, 32), CREATOR_REVISION);
        bytes
    }

    /// Walks RSDP -> XSDT -> FADT -> DSDT and the MADT; returns the MADT's
    /// (processor UID, APIC ID, flags) entries.
    fn parse(t: &AcpiTables) -> Vec<(u8, u8, u32)> {
        assert_eq!(t.rsdp, t.base);
        let rsdp = &t.bytes[..RSDP_LEN];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0, "RSDP checksum");
        assert_eq!(sum(rsdp), 0, "RSDP extended checksum");
        assert_eq!(rsdp[15], 2, "RSDP revision");
        assert_eq!(u32_at(rsdp, 20), RSDP_LEN as u32);
        assert_eq!(u64_at(rsdp, 24), t.xsdt);

        let xsdt = table(t, t.xsdt, b"XSDT");
        assert_eq!(xsdt.len(), HEADER_LEN + 16);
        let pointers: Vec<u64> = (HEADER_LEN..xsdt.len())
            .step_by(8)
            .map(|at| u64_at(xsdt, at))
            .collect();
        assert_eq!(pointers, [t.fadt, t.madt]);

        let fadt = table(t, t.fadt, b"FACP");
        assert_eq!(fadt.len(), FADT_LEN);
        assert_eq!((fadt[8], fadt[131]), FADT_REVISION);
        assert_eq!(u32_at(fadt, 40) as u64, t.dsdt);
        assert_eq!(u64_at(fadt, 140), t.dsdt);
        assert_eq!(
            u32_at(fadt, 112),
            FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_HW_REDUCED_ACPI
        );
        assert_eq!(&fadt[268..276], b"XenVMM\0\0", "hypervisor vendor identity");
        assert_eq!(u32_at(fadt, 76), 0, "no PM timer");
        assert_eq!(u16_at(fadt, 46), 0, "no SCI");
        assert_eq!(
            u16_at(fadt, 109),
            BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT
        );

        let dsdt = table(t, t.dsdt, b"DSDT");
        assert_eq!(dsdt[8], DSDT_REVISION);

        let madt = table(t, t.madt, b"APIC");
        assert_eq!(madt[8], MADT_REVISION);
        assert_eq!(u32_at(madt, 36), LAPIC_ADDRESS);
        assert_eq!(u32_at(madt, 40), 0, "no PC-AT 8259s");
        let mut entries = Vec::new();
        let mut at = 44;
        while at < madt.len() {
            assert_eq!(madt[at], 0, "local APIC entry");
            assert_eq!(madt[at + 1], 8);
            entries.push((madt[at + 2], madt[at + 3], u32_at(madt, at + 4)));
            at += 8;
        }
        assert_eq!(at, madt.len());
        // No two tables overlap.
        let mut spans = [
            (t.rsdp, RSDP_LEN as u64),
            (t.xsdt, xsdt.len() as u64),
            (t.fadt, fadt.len() as u64),
            (t.dsdt, dsdt.len() as u64),
            (t.madt, madt.len() as u64),
        ];
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
        }
        entries
    }

    #[test]
    fn tables_for_1_2_8_and_255_vcpus() {
        for n in [1, 2, 8, 255] {
            let t = build(BASE, n).unwrap();
            let entries = parse(&t);
            let expected: Vec<(u8, u8, u32)> = (0..n).map(|v| (v as u8, v as u8, 1)).collect();
            assert_eq!(entries, expected, "{n} vCPUs");
            assert!(t.bytes.len() <= 0x4000, "{n} vCPUs fit in 16 KiB");
        }
    }

    #[test]
    fn vcpu_count_and_placement_are_checked() {
        assert_eq!(build(BASE, 0).unwrap_err(), AcpiError::VcpuCount(0));
        assert_eq!(build(BASE, 256).unwrap_err(), AcpiError::VcpuCount(256));
        assert_eq!(
            build(BASE + 8, 1).unwrap_err(),
            AcpiError::Placement(BASE + 8)
        );
        assert_eq!(
            build(0xFFFF_FF00, 1).unwrap_err(),
            AcpiError::Placement(0xFFFF_FF00)
        );
        let high = build(0xFC00_0000, 4).unwrap();
        parse(&high);
    }

    #[test]
    fn a_base_near_the_top_of_the_address_space_is_refused() {
        // base + size wraps around: refused, not placed at a wrapped address.
        let top = !15u64;
        assert_eq!(build(top, 1).unwrap_err(), AcpiError::Placement(top));
        assert_eq!(
            build(top - 0x100, 255).unwrap_err(),
            AcpiError::Placement(top - 0x100)
        );
    }

    /// The crate encodes AML package lengths as the ACPI spec says (and as
    /// rxen's own encoder did): the length counts its own bytes, one byte
    /// up to 63, then a 4-bit lead byte and 1 to 3 more.
    #[test]
    fn aml_package_lengths() {
        struct Raw(usize);
        impl Aml for Raw {
            fn to_aml_bytes(&self, sink: &mut dyn ::acpi_tables::AmlSink) {
                sink.vec(&alloc::vec![0xA5; self.0]);
            }
        }
        // The package length of a Scope whose contents (after the encoded
        // length) are `body` bytes: its 5-byte path and raw filler.
        let pkg_length = |body: usize| {
            let raw = Raw(body - 5);
            let aml = bytes_of(&Scope::new(
                Path::new("\\_SB_"),
                alloc::vec![&raw as &dyn Aml],
            ));
            assert_eq!(aml[0], 0x10, "ScopeOp");
            let len = aml.len() - 1 - body;
            aml[1..1 + len].to_vec()
        };
        assert_eq!(pkg_length(5), [6]);
        assert_eq!(pkg_length(62), [63]);
        // 63 + 2 = 65 = 0x41: one extra byte.
        assert_eq!(pkg_length(63), [0x41, 0x04]);
        // 4093 + 2 = 0xFFF is the most one extra byte holds; 4094 + 3 = 0x1001.
        assert_eq!(pkg_length(4093), [0x4F, 0xFF]);
        assert_eq!(pkg_length(4094), [0x81, 0x00, 0x01]);
    }

    /// The DSDT body: `Scope (\_SB)` whose package holds one `Device` per
    /// vCPU, each with `_HID` "ACPI0007" and `_UID` = the vCPU number.
    #[test]
    fn dsdt_lists_processor_devices() {
        fn pkg(aml: &[u8]) -> (usize, usize) {
            let extra = (aml[0] >> 6) as usize;
            let mut len = if extra == 0 {
                aml[0] as usize & 0x3F
            } else {
                aml[0] as usize & 0xF
            };
            for i in 0..extra {
                len |= (aml[1 + i] as usize) << (4 + 8 * i);
            }
            (len, 1 + extra)
        }
        for n in [1u32, 3, 100] {
            let aml = dsdt_body(n);
            assert_eq!(aml[0], 0x10, "ScopeOp");
            let (len, enc) = pkg(&aml[1..]);
            assert_eq!(1 + len, aml.len(), "scope package spans the body");
            let mut at = 1 + enc;
            assert_eq!(&aml[at..at + 5], b"\\_SB_");
            at += 5;
            let mut uids = Vec::new();
            while at < aml.len() {
                assert_eq!(&aml[at..at + 2], &[0x5B, 0x82], "DeviceOp");
                let (len, enc) = pkg(&aml[at + 2..]);
                let dev = &aml[at + 2 + enc..at + 2 + len];
                assert_eq!(dev[0], b'C');
                assert_eq!(&dev[4..10], b"\x08_HID\x0D");
                assert_eq!(&dev[10..19], b"ACPI0007\0");
                assert_eq!(&dev[19..24], b"\x08_UID");
                uids.push(match dev[24] {
                    0 | 1 => dev[24] as u32,
                    0x0A => dev[25] as u32,
                    op => panic!("unexpected op {op:#x}"),
                });
                at += 2 + len;
            }
            assert_eq!(at, aml.len());
            assert_eq!(uids, (0..n).collect::<Vec<_>>());
        }
    }

    /// The `acpi` crate (what arch/x86 reads the host's tables with) accepts
    /// the tables too.
    #[test]
    fn acpi_crate_reads_the_tables() {
        for n in [1u32, 2, 8] {
            let t = build(BASE, n).unwrap();
            let handler = InBuffer {
                base: t.base,
                ptr: t.bytes.as_ptr() as usize,
                len: t.bytes.len(),
            };
            // SAFETY: the handler maps into `t.bytes`, alive for the block.
            let tables = unsafe { acpi::AcpiTables::from_rsdp(handler, t.rsdp as usize) }.unwrap();
            let fadt = tables.find_table::<acpi::fadt::Fadt>().unwrap();
            fadt.validate().unwrap();
            assert!({ fadt.flags }.system_is_hw_reduced_acpi());
            assert!({ fadt.iapc_boot_arch }.dont_probe_vga());
            assert_eq!(fadt.dsdt_address().unwrap() as u64, t.dsdt);
            assert!(fadt.pm_timer_block().unwrap().is_none());
            let dsdt = tables.dsdt().unwrap();
            assert_eq!(dsdt.address as u64, t.dsdt + HEADER_LEN as u64);
            let madt = tables.find_table::<acpi::madt::Madt>().unwrap();
            assert!(!madt.get().supports_8259());
            let lapics: Vec<(u8, u8, u32)> = madt
                .get()
                .entries()
                .map(|e| match e {
                    acpi::madt::MadtEntry::LocalApic(l) => (l.processor_id, l.apic_id, l.flags),
                    _ => panic!("only local APICs"),
                })
                .collect();
            let expected: Vec<(u8, u8, u32)> = (0..n).map(|v| (v as u8, v as u8, 1)).collect();
            assert_eq!(lapics, expected);
        }
    }
}
