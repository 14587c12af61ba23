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
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

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
/// The creator ID of every table.
pub const CREATOR_ID: &[u8; 4] = b"RXEN";
/// The creator revision of every table.
pub const CREATOR_REVISION: u32 = 1;

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

/// Byte sum complement: the value that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// Sets the checksum byte at `at` so that `table` sums to zero.
fn seal_at(table: &mut [u8], at: usize) {
    put(table, at, &[0]);
    let sum = checksum(table);
    put(table, at, &[sum]);
}

/// Sets the checksum byte (offset 9) of the table in `table`.
fn seal(table: &mut [u8]) {
    seal_at(table, 9);
}

/// A table header for `signature`, `length` bytes long, checksum left 0.
fn header(signature: &[u8; 4], length: usize, revision: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(length);
    t.extend_from_slice(signature);
    t.extend_from_slice(&(length as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&CREATOR_REVISION.to_le_bytes());
    t
}

/// Writes `v` at `at` in `t`. Every caller's offset is a fixed layout
/// position inside a table it sized itself (the tests read each back), so
/// the write always fits; one that did not would be a bug, caught in debug
/// builds and otherwise dropped rather than panicking.
fn put(t: &mut [u8], at: usize, v: &[u8]) {
    let dst = at.checked_add(v.len()).and_then(|end| t.get_mut(at..end));
    debug_assert!(dst.is_some(), "ACPI table write past its end");
    if let Some(dst) = dst {
        dst.copy_from_slice(v);
    }
}

fn put_u16(t: &mut [u8], at: usize, v: u16) {
    put(t, at, &v.to_le_bytes());
}

fn put_u32(t: &mut [u8], at: usize, v: u32) {
    put(t, at, &v.to_le_bytes());
}

fn put_u64(t: &mut [u8], at: usize, v: u64) {
    put(t, at, &v.to_le_bytes());
}

/// An AML package length for a package whose contents (after the encoded
/// length itself) are `body` bytes.
fn aml_pkg_length(body: usize) -> Vec<u8> {
    // The encoded length counts its own bytes: one byte of 6 bits alone, or
    // a first byte of 4 bits followed by `extra` whole bytes (1 to 3), so a
    // total below 1 << (4 + 8 * extra).
    for (extra, limit) in [
        (0usize, 0x40usize),
        (1, 1 << 12),
        (2, 1 << 20),
        (3, 1 << 28),
    ] {
        let Some(total) = body.checked_add(1).and_then(|t| t.checked_add(extra)) else {
            break;
        };
        if total < limit {
            if extra == 0 {
                return alloc::vec![total as u8];
            }
            let mut out = alloc::vec![((extra as u8) << 6) | (total & 0xF) as u8];
            for shift in [4, 12, 20].into_iter().take(extra) {
                out.push((total >> shift) as u8);
            }
            return out;
        }
    }
    unreachable!("AML package too large")
}

/// The AML of `\_SB` with one processor device per vCPU.
fn dsdt_body(nr_vcpus: u32) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut devices = Vec::new();
    for vcpu in 0..nr_vcpus {
        let mut dev = Vec::new();
        // Name "Cxxx" (three hex digits).
        dev.push(b'C');
        for shift in [8, 4, 0] {
            // Masked to 0..=15: the lookup always hits.
            let digit = HEX.get((vcpu as usize >> shift) & 0xF);
            dev.push(digit.copied().unwrap_or(b'0'));
        }
        // Name (_HID, "ACPI0007")
        dev.push(0x08);
        dev.extend_from_slice(b"_HID");
        dev.push(0x0D);
        dev.extend_from_slice(b"ACPI0007\0");
        // Name (_UID, vcpu)
        dev.push(0x08);
        dev.extend_from_slice(b"_UID");
        match vcpu {
            0 => dev.push(0x00),
            1 => dev.push(0x01),
            2..=0xFF => dev.extend_from_slice(&[0x0A, vcpu as u8]),
            _ => {
                dev.push(0x0B);
                dev.extend_from_slice(&(vcpu as u16).to_le_bytes());
            }
        }
        // DeviceOp (ExtOpPrefix 0x5B, 0x82), PkgLength, the rest.
        devices.extend_from_slice(&[0x5B, 0x82]);
        devices.extend(aml_pkg_length(dev.len()));
        devices.extend(dev);
    }
    // Scope (\_SB) { devices }
    let mut scope_body = Vec::new();
    scope_body.extend_from_slice(b"\\_SB_");
    scope_body.extend(devices);
    let mut aml = alloc::vec![0x10];
    aml.extend(aml_pkg_length(scope_body.len()));
    aml.extend(scope_body);
    aml
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
    // Sizes are small (at most MAX_VCPUS processors) but `base` is the
    // caller's: every sum is checked, an overflow is a bad placement.
    let add = |a: usize, b: usize| a.checked_add(b).ok_or(AcpiError::Placement(base));
    let align = |at: usize| at.next_multiple_of(16);
    let xsdt_len = HEADER_LEN + 2 * 8;
    let dsdt_aml = dsdt_body(nr_vcpus);
    let dsdt_len = add(HEADER_LEN, dsdt_aml.len())?;
    let madt_entries = (nr_vcpus as usize)
        .checked_mul(8)
        .ok_or(AcpiError::Placement(base))?;
    let madt_len = add(HEADER_LEN + 8, madt_entries)?;

    let xsdt_off = align(RSDP_LEN);
    let fadt_off = align(add(xsdt_off, xsdt_len)?);
    let dsdt_off = align(add(fadt_off, FADT_LEN)?);
    let madt_off = align(add(dsdt_off, dsdt_len)?);
    let total = add(madt_off, madt_len)?;
    match base.checked_add(total as u64) {
        Some(end) if end <= 1 << 32 => {}
        _ => return Err(AcpiError::Placement(base)),
    }
    // Below 4 GiB, checked just above.
    let at = |off: usize| base.saturating_add(off as u64);

    // RSDP.
    let mut rsdp = Vec::with_capacity(RSDP_LEN);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0);
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2);
    rsdp.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    rsdp.extend_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    rsdp.extend_from_slice(&at(xsdt_off).to_le_bytes());
    rsdp.extend_from_slice(&[0; 4]); // extended checksum, reserved
    if let Some(v1) = rsdp.get_mut(..20) {
        seal_at(v1, 8);
    }
    seal_at(&mut rsdp, 32);

    // XSDT.
    let mut xsdt = header(b"XSDT", xsdt_len, 1);
    xsdt.extend_from_slice(&at(fadt_off).to_le_bytes());
    xsdt.extend_from_slice(&at(madt_off).to_le_bytes());
    seal(&mut xsdt);

    // FADT: everything fixed-hardware absent.
    let mut fadt = header(b"FACP", FADT_LEN, FADT_REVISION.0);
    fadt.resize(FADT_LEN, 0);
    put_u32(&mut fadt, 40, at(dsdt_off) as u32); // DSDT
    put_u16(
        &mut fadt,
        109,
        BOOT_ARCH_VGA_NOT_PRESENT | BOOT_ARCH_CMOS_RTC_NOT_PRESENT,
    );
    put_u32(
        &mut fadt,
        112,
        FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_HW_REDUCED_ACPI,
    );
    put(&mut fadt, 131, &[FADT_REVISION.1]);
    put_u64(&mut fadt, 140, at(dsdt_off)); // X_DSDT
                                           // Hypervisor vendor identity (8 bytes).
    put(&mut fadt, 268, b"XenVMM\0\0");
    seal(&mut fadt);

    // DSDT.
    let mut dsdt = header(b"DSDT", dsdt_len, DSDT_REVISION);
    dsdt.extend(dsdt_aml);
    seal(&mut dsdt);

    // MADT: no PC-AT 8259s, one enabled local APIC per vCPU.
    let mut madt = header(b"APIC", madt_len, MADT_REVISION);
    madt.extend_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    madt.extend_from_slice(&0u32.to_le_bytes());
    for vcpu in 0..nr_vcpus {
        madt.extend_from_slice(&[0, 8, vcpu as u8, apic_id(vcpu)]);
        madt.extend_from_slice(&1u32.to_le_bytes());
    }
    seal(&mut madt);

    let mut bytes = alloc::vec![0u8; total];
    for (off, table) in [
        (0, &rsdp),
        (xsdt_off, &xsdt),
        (fadt_off, &fadt),
        (dsdt_off, &dsdt),
        (madt_off, &madt),
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
        assert_ne!(u32_at(fadt, 112) & FADT_HW_REDUCED_ACPI, 0);
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

    #[test]
    fn aml_package_lengths() {
        assert_eq!(aml_pkg_length(0), [1]);
        assert_eq!(aml_pkg_length(62), [63]);
        // 63 + 2 = 65 = 0x41: one extra byte.
        assert_eq!(aml_pkg_length(63), [0x41, 0x04]);
        // 4093 + 2 = 0xFFF is the most one extra byte holds; 4094 + 3 = 0x1001.
        assert_eq!(aml_pkg_length(4093), [0x4F, 0xFF]);
        assert_eq!(aml_pkg_length(4094), [0x81, 0x00, 0x01]);
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
