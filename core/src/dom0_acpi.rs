//! The ACPI tables a PVH dom0 gets, as Xen 4.17 builds them
//! (`arch/x86/hvm/dom0_build.c`: `pvh_setup_acpi_madt`, `pvh_setup_acpi_xsdt`,
//! `pvh_setup_acpi`): the host's own tables, reached through a new RSDP and
//! XSDT, with a new MADT.
//!
//! - MADT: the host MADT's header (revision at most 4), the local APIC at
//!   0xFEE00000, flags 0 (no 8259: dom0 gets no PIC), the host's IO-APICs and
//!   interrupt source overrides as they are, and one enabled local APIC per
//!   dom0 vCPU, APIC ID and processor UID the vCPU number (as rxen's emulated
//!   local APIC and CPUID leaf 1 number them; Xen numbers them 2n and uses
//!   x2APIC entries, which Linux reads the same way).
//! - XSDT (revision 1): the new MADT first, then the host tables dom0 may
//!   see (`FACP SSDT PSDT SBST MCFG SLIC MSDM WDAT FPDT S3PT`, the DSDT and
//!   FACS coming through the FADT); the others (the host MADT, DMAR, IVRS,
//!   HPET, SRAT, SLIT, WAET, ...) hidden. Built from the host's XSDT, or from
//!   its RSDT's 32-bit entries on a machine without one (QEMU's q35: RSDP
//!   revision 0), as Xen does from 4.20.
//! - RSDP (revision 2): the host's OEM ID, the new XSDT.
//!
//! The host's tables are read through [`HostMemory`] and parsed here; every
//! length, count and checksum is checked, and what does not check out is an
//! error, never a panic. The host tables stay where they are: dom0 reaches
//! them 1:1.
//!
//! The new tables are built with rust-vmm's `acpi_tables` crate, given only
//! what was checked and bounded (the crate asserts on what it cannot
//! encode). The crate has no MADT interrupt source override: one is defined
//! here as the crate defines its structures. Its MADT is always revision 1:
//! the host's (at most 4) is set afterwards. The XSDT's and MADT's creator
//! ID and revision are the crate's (`RVAT`, bytes 0, 0, 0, 1).
// Firmware input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

#[cfg(test)]
use crate::acpi_tables::fix_checksum;
use crate::acpi_tables::{bytes_of, set_revision};
use ::acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use ::acpi_tables::rsdp::Rsdp;
use ::acpi_tables::xsdt::XSDT;
use ::acpi_tables::{Aml, AmlSink};
use alloc::vec::Vec;
use zerocopy::byteorder::{LE, U16, U32};
use zerocopy::{Immutable, IntoBytes};

/// Reads host-physical memory.
pub trait HostMemory {
    /// Fills `buf` from host-physical `addr`; false if that is not readable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

/// Why dom0's tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dom0AcpiError {
    /// No valid RSDP at the given address.
    BadRsdp,
    /// The RSDT/XSDT is unreadable or fails its checks.
    BadRoot,
    /// The host has no usable MADT.
    NoMadt,
    /// More than the tables can describe (vCPUs, IO-APICs, entries).
    TooMany,
}

impl core::fmt::Display for Dom0AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadRsdp => "no valid RSDP",
            Self::BadRoot => "the RSDT/XSDT is not valid",
            Self::NoMadt => "the host has no valid MADT",
            Self::TooMany => "too many entries",
        })
    }
}

/// The tables, to be placed at `base` in dom0's memory (an ACPI range of
/// its memory map).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Acpi {
    /// Where the bytes go (guest-physical = host-physical for dom0).
    pub base: u64,
    /// RSDP, XSDT and MADT, at `base`.
    pub bytes: Vec<u8>,
    /// The RSDP's address (for `hvm_start_info.rsdp_paddr`).
    pub rsdp: u64,
    /// The host tables the new ones lead to, as (address, length): the
    /// allowed tables of the XSDT and the FADT's DSDT and FACS. A dom0 whose
    /// RAM is not 1:1 needs them mapped at their host addresses (as Xen
    /// identity-maps the ACPI regions into a PVH dom0).
    pub host_tables: Vec<(u64, u32)>,
}

/// The most bytes of a host table listed in [`Dom0Acpi::host_tables`] (a
/// DSDT of a big machine is a few hundred KiB).
const MAX_HOST_TABLE: u32 = 4 << 20;

/// The signature and length of the table (or FACS) at `addr`, if readable
/// and at most [`MAX_HOST_TABLE`] long.
fn host_table(mem: &dyn HostMemory, addr: u64) -> Option<([u8; 4], u32)> {
    let mut header = [0u8; 8];
    if addr == 0 || !mem.read(addr, &mut header) {
        return None;
    }
    let [s0, s1, s2, s3, ..] = header;
    let len = u32_at(&header, 4)?;
    (8..=MAX_HOST_TABLE)
        .contains(&len)
        .then_some(([s0, s1, s2, s3], len))
}

/// The host tables `allowed` leads to: each, and the DSDT and FACS of the
/// FADT among them (the 64-bit addresses when set, else the 32-bit ones).
fn host_tables(mem: &dyn HostMemory, allowed: &[u64]) -> Vec<(u64, u32)> {
    let mut tables = Vec::new();
    for &at in allowed {
        let Some((signature, len)) = host_table(mem, at) else {
            continue;
        };
        tables.push((at, len));
        if &signature != b"FACP" {
            continue;
        }
        let Some(fadt) = read_table(mem, at, 4096) else {
            continue;
        };
        let pick = |wide: usize, narrow: usize| {
            u64_at(&fadt, wide)
                .filter(|&a| a != 0)
                .or_else(|| u32_at(&fadt, narrow).map(u64::from))
        };
        // FIRMWARE_CTRL at 36, DSDT at 40; X_FIRMWARE_CTRL at 132, X_DSDT at 140.
        for address in [pick(132, 36), pick(140, 40)].into_iter().flatten() {
            tables.extend(host_table(mem, address).map(|(_, len)| (address, len)));
        }
    }
    tables
}

/// Signatures of the host tables dom0 sees (Xen's
/// `pvh_acpi_xsdt_table_allowed`).
const ALLOWED: [&[u8; 4]; 10] = [
    b"FACP", b"SSDT", b"PSDT", b"SBST", b"MCFG", b"SLIC", b"MSDM", b"WDAT", b"FPDT", b"S3PT",
];
/// The common table header's size.
const HEADER: usize = 36;
/// Most entries read from a root table, and most IO-APICs and overrides
/// copied (far beyond real machines; bounds the work and the output).
const MAX_ENTRIES: usize = 256;
/// Most vCPUs (8-bit APIC IDs, 0xFF being broadcast).
pub const MAX_VCPUS: u32 = 255;
/// Largest host MADT read.
const MAX_MADT: usize = 64 * 1024;

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A whole table at `addr`, its length and checksum checked, at most `max`
/// bytes.
fn read_table(mem: &dyn HostMemory, addr: u64, max: usize) -> Option<Vec<u8>> {
    let mut header = [0u8; HEADER];
    if !mem.read(addr, &mut header) {
        return None;
    }
    let len = u32_at(&header, 4)? as usize;
    if !(HEADER..=max).contains(&len) {
        return None;
    }
    let mut table = alloc::vec![0u8; len];
    (mem.read(addr, &mut table) && checksum_ok(&table)).then_some(table)
}

/// A table's signature, read without the rest.
fn signature(mem: &dyn HostMemory, addr: u64) -> Option<[u8; 4]> {
    let mut sig = [0u8; 4];
    mem.read(addr, &mut sig).then_some(sig)
}

/// What the host's RSDP and root table give.
struct HostRoot {
    /// The tables the root table lists.
    entries: Vec<u64>,
    /// The RSDP's OEM ID.
    oem: [u8; 6],
    /// The root table (for its OEM fields).
    table: Vec<u8>,
}

/// Reads the host's RSDP and its root table (the XSDT, else the RSDT).
fn host_root(mem: &dyn HostMemory, rsdp_at: u64) -> Result<HostRoot, Dom0AcpiError> {
    let mut rsdp = [0u8; 36];
    if !mem.read(rsdp_at, &mut rsdp[..20]) || rsdp.get(..8) != Some(b"RSD PTR ") {
        return Err(Dom0AcpiError::BadRsdp);
    }
    if !checksum_ok(rsdp.get(..20).unwrap_or(&[1])) {
        return Err(Dom0AcpiError::BadRsdp);
    }
    let mut oem = [0u8; 6];
    oem.copy_from_slice(rsdp.get(9..15).ok_or(Dom0AcpiError::BadRsdp)?);
    let revision = rsdp.get(15).copied().unwrap_or(0);
    let xsdt = if revision >= 2 {
        if !mem.read(rsdp_at, &mut rsdp) || !checksum_ok(&rsdp) {
            return Err(Dom0AcpiError::BadRsdp);
        }
        u64_at(&rsdp, 24).filter(|&a| a != 0)
    } else {
        None
    };
    let (root_at, entry_size) = match xsdt {
        Some(at) => (at, 8),
        None => (
            u64::from(u32_at(&rsdp, 16).ok_or(Dom0AcpiError::BadRsdp)?),
            4,
        ),
    };
    let max = HEADER.saturating_add(MAX_ENTRIES.saturating_mul(entry_size));
    let root = read_table(mem, root_at, max).ok_or(Dom0AcpiError::BadRoot)?;
    let expected: &[u8; 4] = if entry_size == 8 { b"XSDT" } else { b"RSDT" };
    if root.get(..4) != Some(&expected[..]) {
        return Err(Dom0AcpiError::BadRoot);
    }
    let entries = root
        .get(HEADER..)
        .unwrap_or(&[])
        .chunks_exact(entry_size)
        .map(|e| {
            if entry_size == 8 {
                u64_at(e, 0).unwrap_or(0)
            } else {
                u64::from(u32_at(e, 0).unwrap_or(0))
            }
        })
        .filter(|&a| a != 0)
        .collect();
    Ok(HostRoot {
        entries,
        oem,
        table: root,
    })
}

/// The OEM ID, OEM table ID and OEM revision of a host table header
/// (`read_table` checked it holds a whole header).
fn oem_fields(host: &[u8]) -> ([u8; 6], [u8; 8], u32) {
    let mut oem_id = [b' '; 6];
    let mut oem_table_id = [b' '; 8];
    if let Some(id) = host.get(10..16) {
        oem_id.copy_from_slice(id);
    }
    if let Some(id) = host.get(16..24) {
        oem_table_id.copy_from_slice(id);
    }
    (oem_id, oem_table_id, u32_at(host, 24).unwrap_or(0))
}

/// A MADT Interrupt Source Override (type 2), which the `acpi_tables` crate
/// does not have: built as the crate builds its own MADT structures.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    kind: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: U32<LE>,
    flags: U16<LE>,
}

impl Aml for InterruptSourceOverride {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// A host MADT entry dom0's MADT copies.
enum HostEntry {
    IoApic(IoApic),
    Override(InterruptSourceOverride),
}

/// The host MADT entry `entry` (one whole entry: its length byte is the
/// slice's length) as dom0 gets it, if dom0 gets it: IO-APICs and
/// interrupt source overrides.
fn host_entry(entry: &[u8]) -> Option<HostEntry> {
    match *entry {
        [1, 12, id, _reserved, ..] => Some(HostEntry::IoApic(IoApic::new(
            id,
            u32_at(entry, 4)?,
            u32_at(entry, 8)?,
        ))),
        [2, 10, bus, source, _, _, _, _, f0, f1] => {
            Some(HostEntry::Override(InterruptSourceOverride {
                kind: 2,
                length: 10,
                bus,
                source,
                gsi: u32_at(entry, 4)?.into(),
                flags: u16::from_le_bytes([f0, f1]).into(),
            }))
        }
        _ => None,
    }
}

/// Builds dom0's RSDP, XSDT and MADT from the host's tables (RSDP at host
/// `rsdp_at`) for `vcpus` vCPUs, to sit at `base`.
pub fn build(
    mem: &dyn HostMemory,
    rsdp_at: u64,
    vcpus: u32,
    base: u64,
) -> Result<Dom0Acpi, Dom0AcpiError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(Dom0AcpiError::TooMany);
    }
    let HostRoot {
        entries,
        oem,
        table: root,
    } = host_root(mem, rsdp_at)?;
    // The host MADT, and the tables dom0 may see, in the host's order.
    let mut madt = None;
    let mut allowed = Vec::new();
    for &at in &entries {
        let Some(sig) = signature(mem, at) else {
            continue;
        };
        if &sig == b"APIC" && madt.is_none() {
            madt = read_table(mem, at, MAX_MADT);
        } else if ALLOWED.contains(&&sig) {
            allowed.push(at);
        }
    }
    let host_madt = madt.ok_or(Dom0AcpiError::NoMadt)?;
    // The host's IO-APICs (type 1) and interrupt source overrides (type 2).
    let mut copied = Vec::new();
    let mut at = 44usize;
    while let Some(&[_, len]) = host_madt.get(at..at.saturating_add(2)) {
        let len = usize::from(len);
        let Some(entry) = host_madt
            .get(at..at.saturating_add(len))
            .filter(|_| len >= 2)
        else {
            break;
        };
        if let Some(entry) = host_entry(entry) {
            if copied.len() >= MAX_ENTRIES {
                return Err(Dom0AcpiError::TooMany);
            }
            copied.push(entry);
        }
        at = at.saturating_add(len);
    }
    // Everything is bounded now (vCPUs, copied entries, allowed tables):
    // the crate, which asserts on what it cannot encode, is given no more.
    let xsdt_at = 48usize; // after the RSDP, 16-byte aligned
    let base_of = |offset: usize| base.saturating_add(offset as u64);

    // MADT: the host's OEM fields, flags 0 (no PCAT_COMPAT), the local
    // APICs, then the host's entries in its order.
    let (oem_id, oem_table_id, oem_revision) = oem_fields(&host_madt);
    let mut new_madt = MADT::new(
        oem_id,
        oem_table_id,
        oem_revision,
        LocalInterruptController::Address(0xFEE0_0000),
    );
    for v in 0..vcpus {
        // Processor UID and APIC ID the vCPU number (below 255, checked).
        new_madt.add_structure(ProcessorLocalApic::new(
            v as u8,
            v as u8,
            EnabledStatus::Enabled,
        ));
    }
    for entry in copied {
        match entry {
            HostEntry::IoApic(e) => new_madt.add_structure(e),
            HostEntry::Override(e) => new_madt.add_structure(e),
        }
    }
    let mut new_madt = bytes_of(&new_madt);
    let revision = host_madt.get(8).copied().unwrap_or(1).min(4);
    set_revision(&mut new_madt, revision);

    // XSDT (revision 1): the new MADT, then the allowed host tables.
    let (oem_id, oem_table_id, oem_revision) = oem_fields(&root);
    let mut xsdt = XSDT::new(oem_id, oem_table_id, oem_revision);
    let xsdt_len = HEADER.saturating_add(8usize.saturating_mul(allowed.len().saturating_add(1)));
    let madt_at = xsdt_at.saturating_add(xsdt_len).next_multiple_of(16);
    xsdt.add_entry(base_of(madt_at));
    for &table in &allowed {
        xsdt.add_entry(table);
    }
    let xsdt = bytes_of(&xsdt);
    debug_assert_eq!(xsdt.len(), xsdt_len);

    // RSDP revision 2: the host's OEM ID, the new XSDT.
    let rsdp = bytes_of(&Rsdp::new(oem, base_of(xsdt_at)));

    let mut bytes = alloc::vec![0u8; madt_at.saturating_add(new_madt.len())];
    for (at, table) in [(0, &rsdp), (xsdt_at, &xsdt), (madt_at, &new_madt)] {
        if let Some(dst) = bytes.get_mut(at..at.saturating_add(table.len())) {
            dst.copy_from_slice(table);
        }
    }
    Ok(Dom0Acpi {
        base,
        bytes,
        rsdp: base,
        host_tables: host_tables(mem, &allowed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::InBuffer;
    use alloc::collections::BTreeMap;

    /// Host memory made of tables at addresses.
    #[derive(Default)]
    struct Host(BTreeMap<u64, Vec<u8>>);

    impl HostMemory for Host {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            for (&at, bytes) in &self.0 {
                if addr >= at && addr - at + buf.len() as u64 <= bytes.len() as u64 {
                    let off = (addr - at) as usize;
                    buf.copy_from_slice(&bytes[off..off + buf.len()]);
                    return true;
                }
            }
            false
        }
    }

    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = sig.to_vec();
        t.extend_from_slice(&((HEADER + body.len()) as u32).to_le_bytes());
        t.push(1);
        t.push(0);
        t.extend_from_slice(b"BOCHS BXPC    ");
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(b"BXPC");
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(body);
        fix_checksum(&mut t, 9);
        t
    }

    const RSDP_AT: u64 = 0xF59E0;
    const RSDT_AT: u64 = 0x3FFE_22E1;
    const FACP_AT: u64 = 0x3FFE_20D9;
    const APIC_AT: u64 = 0x3FFE_21CD;
    const HPET_AT: u64 = 0x3FFE_2245;
    const MCFG_AT: u64 = 0x3FFE_227D;
    const WAET_AT: u64 = 0x3FFE_22B9;
    const BASE: u64 = 0x10FF_F000;

    /// The host MADT of QEMU q35 with one CPU: a local APIC, the IO-APIC,
    /// five overrides and a local APIC NMI.
    fn host_madt() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
        body.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]);
        for (src, gsi, flags) in [
            (0u8, 2u32, 0u16),
            (5, 5, 0xD),
            (9, 9, 0xD),
            (10, 10, 0xD),
            (11, 11, 0xD),
        ] {
            body.extend_from_slice(&[2, 10, 0, src]);
            body.extend_from_slice(&gsi.to_le_bytes());
            body.extend_from_slice(&flags.to_le_bytes());
        }
        body.extend_from_slice(&[4, 6, 0xFF, 0, 0, 1]);
        table(b"APIC", &body)
    }

    fn q35() -> Host {
        q35_at(
            RSDP_AT,
            RSDT_AT,
            [FACP_AT, APIC_AT, HPET_AT, MCFG_AT, WAET_AT],
        )
    }

    /// The q35 host's tables, at `rsdp_at`, `rsdt_at` and `[FACP, APIC,
    /// HPET, MCFG, WAET]`.
    fn q35_at(rsdp_at: u64, rsdt_at: u64, tables: [u64; 5]) -> Host {
        let [facp_at, apic_at, hpet_at, mcfg_at, waet_at] = tables;
        let mut h = Host::default();
        let mut rsdp = b"RSD PTR ".to_vec();
        rsdp.push(0);
        rsdp.extend_from_slice(b"BOCHS ");
        rsdp.push(0);
        rsdp.extend_from_slice(&(rsdt_at as u32).to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        h.0.insert(rsdp_at, rsdp);
        let mut entries = Vec::new();
        for at in tables {
            entries.extend_from_slice(&(at as u32).to_le_bytes());
        }
        h.0.insert(rsdt_at, table(b"RSDT", &entries));
        h.0.insert(facp_at, table(b"FACP", &[0; 80]));
        h.0.insert(apic_at, host_madt());
        h.0.insert(hpet_at, table(b"HPET", &[0; 20]));
        h.0.insert(mcfg_at, table(b"MCFG", &[0; 24]));
        h.0.insert(waet_at, table(b"WAET", &[0; 4]));
        h
    }

    /// The host tables a dom0 without 1:1 RAM needs mapped: the allowed ones,
    /// and the FADT's DSDT (X_DSDT over DSDT) and FACS; none of the hidden ones.
    #[test]
    fn the_host_tables_behind_dom0s_are_listed() {
        const DSDT_AT: u64 = 0x3FFE_0040;
        const FACS_AT: u64 = 0x3FFE_0000;
        let t = build(&q35(), RSDP_AT, 1, BASE).unwrap();
        // The q35 FADT here has no DSDT or FACS.
        assert_eq!(t.host_tables, [(FACP_AT, 116), (MCFG_AT, 60)]);
        let mut host = q35();
        let mut body = alloc::vec![0u8; 208];
        body[0..4].copy_from_slice(&(FACS_AT as u32).to_le_bytes()); // FIRMWARE_CTRL
        body[4..8].copy_from_slice(&0x1234_5000u32.to_le_bytes()); // DSDT (stale)
        body[104..112].copy_from_slice(&DSDT_AT.to_le_bytes()); // X_DSDT
        host.0.insert(FACP_AT, table(b"FACP", &body));
        let mut facs = b"FACS".to_vec();
        facs.extend_from_slice(&64u32.to_le_bytes());
        facs.resize(64, 0);
        host.0.insert(FACS_AT, facs);
        host.0.insert(DSDT_AT, table(b"DSDT", &[0x10; 300]));
        let t = build(&host, RSDP_AT, 1, BASE).unwrap();
        assert_eq!(
            t.host_tables,
            [(FACP_AT, 244), (FACS_AT, 64), (DSDT_AT, 336), (MCFG_AT, 60)]
        );
        // A DSDT that claims to be huge is left out.
        host.0.insert(DSDT_AT, {
            let mut t = table(b"DSDT", &[0; 4]);
            t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
            t
        });
        let t = build(&host, RSDP_AT, 1, BASE).unwrap();
        assert!(!t.host_tables.iter().any(|(at, _)| *at == DSDT_AT));
    }

    #[test]
    fn dom0_gets_an_xsdt_of_the_allowed_host_tables_and_a_new_madt() {
        let t = build(&q35(), RSDP_AT, 2, BASE).unwrap();
        assert_eq!(t.rsdp, BASE);
        // RSDP: revision 2, host OEM, both checksums.
        assert_eq!(&t.bytes[..8], b"RSD PTR ");
        assert_eq!(&t.bytes[9..15], b"BOCHS ");
        assert_eq!(t.bytes[15], 2);
        assert!(checksum_ok(&t.bytes[..20]) && checksum_ok(&t.bytes[..36]));
        let xsdt_at = u64_at(&t.bytes, 24).unwrap();
        let xsdt = &t.bytes[(xsdt_at - BASE) as usize..];
        assert_eq!(&xsdt[..4], b"XSDT");
        let len = u32_at(xsdt, 4).unwrap() as usize;
        assert!(checksum_ok(&xsdt[..len]));
        let entries: Vec<u64> = xsdt[HEADER..len]
            .chunks(8)
            .map(|e| u64_at(e, 0).unwrap())
            .collect();
        // The new MADT, then FACP and MCFG; HPET, WAET and the host MADT hidden.
        assert_eq!(entries[1..], [FACP_AT, MCFG_AT]);
        let madt = &t.bytes[(entries[0] - BASE) as usize..];
        assert_eq!(&madt[..4], b"APIC");
        let mlen = u32_at(madt, 4).unwrap() as usize;
        assert!(checksum_ok(&madt[..mlen]));
        assert_eq!(u32_at(madt, 36), Some(0xFEE0_0000));
        assert_eq!(u32_at(madt, 40), Some(0), "no PCAT_COMPAT");
        // Two local APICs, the IO-APIC, five overrides; no NMI entry.
        let mut kinds = Vec::new();
        let mut at = 44;
        while at < mlen {
            kinds.push((madt[at], madt[at + 2], madt[at + 3]));
            at += madt[at + 1] as usize;
        }
        assert_eq!(at, mlen);
        assert_eq!(
            kinds,
            [
                (0, 0, 0),
                (0, 1, 1),
                (1, 0, 0),
                (2, 0, 0),
                (2, 0, 5),
                (2, 0, 9),
                (2, 0, 10),
                (2, 0, 11)
            ]
        );
    }

    #[test]
    fn the_acpi_crate_reads_dom0s_tables() {
        let host = q35();
        let t = build(&host, RSDP_AT, 4, BASE).unwrap();
        // Only the new tables are in this buffer: check them alone (the XSDT's
        // host entries point outside it, so the crate is given the MADT).
        let handler = InBuffer {
            base: t.base,
            ptr: t.bytes.as_ptr() as usize,
            len: t.bytes.len(),
        };
        let madt_at = {
            let xsdt_at = u64_at(&t.bytes, 24).unwrap();
            u64_at(&t.bytes, (xsdt_at - BASE) as usize + HEADER).unwrap()
        };
        // SAFETY: as above.
        let mapping = unsafe {
            acpi::AcpiHandler::map_physical_region::<acpi::madt::Madt>(
                &handler,
                madt_at as usize,
                core::mem::size_of::<acpi::madt::Madt>(),
            )
        };
        let madt = mapping.get();
        assert!(!madt.supports_8259());
        let lapics = madt
            .entries()
            .filter(|e| matches!(e, acpi::madt::MadtEntry::LocalApic(_)))
            .count();
        assert_eq!(lapics, 4);
    }

    /// The `acpi` crate walks dom0's tables from the new RSDP, with the
    /// host's tables in the same memory: the XSDT lists the new MADT, the
    /// FADT and the MCFG (the host MADT, HPET and WAET hidden), and the MADT
    /// has the vCPUs' local APICs, the host's IO-APIC and its overrides.
    #[test]
    fn the_acpi_crate_walks_dom0s_tables_from_the_rsdp() {
        use acpi::madt::MadtEntry;
        const HOST: u64 = 0x1000_0000;
        let h = q35_at(
            HOST,
            HOST + 0x40,
            [0x100, 0x200, 0x300, 0x400, 0x500].map(|off| HOST + off),
        );
        let base = HOST + 0x1000;
        let t = build(&h, HOST, 4, base).unwrap();
        // Host memory: the host's tables, then dom0's.
        let mut mem = alloc::vec![0u8; 0x2000];
        for (&at, bytes) in &h.0 {
            let off = (at - HOST) as usize;
            mem[off..off + bytes.len()].copy_from_slice(bytes);
        }
        mem[0x1000..0x1000 + t.bytes.len()].copy_from_slice(&t.bytes);
        let handler = InBuffer {
            base: HOST,
            ptr: mem.as_ptr() as usize,
            len: mem.len(),
        };
        // SAFETY: the handler maps into `mem`, alive for the block.
        let tables = unsafe { acpi::AcpiTables::from_rsdp(handler, t.rsdp as usize) }.unwrap();
        assert_eq!(tables.revision(), 2);
        let signatures: Vec<[u8; 4]> = tables
            .headers()
            .map(|h| h.signature.as_str().as_bytes().try_into().unwrap())
            .collect();
        assert_eq!(signatures, [*b"APIC", *b"FACP", *b"MCFG"]);
        assert!(tables.find_table::<acpi::hpet::HpetTable>().is_err());
        let madt = tables.find_table::<acpi::madt::Madt>().unwrap();
        // The new MADT, not the host's.
        assert_eq!(madt.physical_start() as u64, {
            let xsdt = (u64_at(&t.bytes, 24).unwrap() - base) as usize;
            u64_at(&t.bytes, xsdt + HEADER).unwrap()
        });
        let madt = madt.get();
        assert!(!madt.supports_8259());
        assert_eq!({ madt.header.revision }, 1, "the host's revision");
        assert_eq!(&madt.header.oem_id, b"BOCHS ");
        let mut lapics = Vec::new();
        let mut io_apics = Vec::new();
        let mut overrides = Vec::new();
        for entry in madt.entries() {
            match entry {
                MadtEntry::LocalApic(l) => lapics.push((l.processor_id, l.apic_id, { l.flags })),
                MadtEntry::IoApic(io) => io_apics.push((io.io_apic_id, { io.io_apic_address }, {
                    io.global_system_interrupt_base
                })),
                MadtEntry::InterruptSourceOverride(o) => {
                    overrides.push((o.bus, o.irq, { o.global_system_interrupt }, { o.flags }))
                }
                _ => panic!("unexpected MADT entry"),
            }
        }
        assert_eq!(lapics, [(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 3, 1)]);
        assert_eq!(io_apics, [(0, 0xFEC0_0000, 0)]);
        assert_eq!(
            overrides,
            [
                (0, 0, 2, 0),
                (0, 5, 5, 0xD),
                (0, 9, 9, 0xD),
                (0, 10, 10, 0xD),
                (0, 11, 11, 0xD)
            ]
        );
    }

    /// A host MADT of revision 5 gives dom0 a revision 4 MADT (the crate's
    /// is 1: set afterwards, the checksum with it).
    #[test]
    fn dom0s_madt_revision_is_the_hosts_at_most_4() {
        for (host, expected) in [(1u8, 1u8), (3, 3), (4, 4), (5, 4)] {
            let mut h = q35();
            let madt = h.0.get_mut(&APIC_AT).unwrap();
            madt[8] = host;
            fix_checksum(madt, 9);
            let t = build(&h, RSDP_AT, 1, BASE).unwrap();
            let xsdt = (u64_at(&t.bytes, 24).unwrap() - BASE) as usize;
            let at = (u64_at(&t.bytes, xsdt + HEADER).unwrap() - BASE) as usize;
            let len = u32_at(&t.bytes, at + 4).unwrap() as usize;
            assert_eq!(t.bytes[at + 8], expected, "host revision {host}");
            assert!(checksum_ok(&t.bytes[at..at + len]));
        }
    }

    #[test]
    fn an_xsdt_host_is_read_through_its_xsdt() {
        let mut h = q35();
        let mut entries = Vec::new();
        for at in [APIC_AT, FACP_AT, 0x1_2345_6000u64] {
            entries.extend_from_slice(&at.to_le_bytes());
        }
        h.0.insert(0x3FFE_3000, table(b"XSDT", &entries));
        let mut rsdp = b"RSD PTR ".to_vec();
        rsdp.push(0);
        rsdp.extend_from_slice(b"OEMOEM");
        rsdp.push(2);
        rsdp.extend_from_slice(&(RSDT_AT as u32).to_le_bytes());
        rsdp.extend_from_slice(&36u32.to_le_bytes());
        rsdp.extend_from_slice(&0x3FFE_3000u64.to_le_bytes());
        rsdp.extend_from_slice(&[0; 4]);
        fix_checksum(&mut rsdp[..20], 8);
        fix_checksum(&mut rsdp, 32);
        h.0.insert(0xE0000, rsdp);
        let t = build(&h, 0xE0000, 1, BASE).unwrap();
        assert_eq!(&t.bytes[9..15], b"OEMOEM");
        let xsdt = &t.bytes[48..];
        let len = u32_at(xsdt, 4).unwrap() as usize;
        // The unreadable third entry is skipped; FACP kept.
        assert_eq!(u64_at(xsdt, HEADER + 8), Some(FACP_AT));
        assert_eq!(len, HEADER + 16);
    }

    #[test]
    fn bad_host_tables_are_errors_not_panics() {
        // No RSDP, a bad checksum, a root that is not one.
        assert_eq!(build(&q35(), 0x1234, 1, BASE), Err(Dom0AcpiError::BadRsdp));
        let mut h = q35();
        h.0.get_mut(&RSDP_AT).unwrap()[8] ^= 1;
        assert_eq!(build(&h, RSDP_AT, 1, BASE), Err(Dom0AcpiError::BadRsdp));
        let mut h = q35();
        h.0.get_mut(&RSDT_AT).unwrap()[20] ^= 1;
        assert_eq!(build(&h, RSDP_AT, 1, BASE), Err(Dom0AcpiError::BadRoot));
        // A root whose length runs past the memory, or is absurd.
        let mut h = q35();
        let rsdt = h.0.get_mut(&RSDT_AT).unwrap();
        rsdt[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(build(&h, RSDP_AT, 1, BASE), Err(Dom0AcpiError::BadRoot));
        // No MADT.
        let mut h = q35();
        h.0.remove(&APIC_AT);
        assert_eq!(build(&h, RSDP_AT, 1, BASE), Err(Dom0AcpiError::NoMadt));
        // A MADT whose entries lie about their lengths: stops, no panic.
        let mut h = q35();
        let mut body = 0xFEE0_0000u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&[1, 200, 0, 0, 1, 0, 0, 0, 2, 0, 9, 9]);
        h.0.insert(APIC_AT, table(b"APIC", &body));
        let t = build(&h, RSDP_AT, 1, BASE).unwrap();
        assert!(!t.bytes.is_empty());
        // vCPU counts the tables cannot describe.
        assert_eq!(build(&q35(), RSDP_AT, 0, BASE), Err(Dom0AcpiError::TooMany));
        assert_eq!(
            build(&q35(), RSDP_AT, 256, BASE),
            Err(Dom0AcpiError::TooMany)
        );
        assert!(build(&q35(), RSDP_AT, 255, BASE).is_ok());
    }

    #[test]
    fn a_madt_with_thousands_of_io_apics_is_refused() {
        let mut h = q35();
        let mut body = 0xFEE0_0000u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 4]);
        for i in 0..1000u32 {
            body.extend_from_slice(&[1, 12, i as u8, 0]);
            body.extend_from_slice(&(0xFEC0_0000u32 + i * 0x1000).to_le_bytes());
            body.extend_from_slice(&(i * 24).to_le_bytes());
        }
        // Far from the other tables, which it would cover.
        h.0.remove(&APIC_AT);
        h.0.insert(0x5000_0000, table(b"APIC", &body));
        let mut entries = Vec::new();
        for at in [FACP_AT, 0x5000_0000] {
            entries.extend_from_slice(&(at as u32).to_le_bytes());
        }
        h.0.insert(RSDT_AT, table(b"RSDT", &entries));
        assert_eq!(build(&h, RSDP_AT, 1, BASE), Err(Dom0AcpiError::TooMany));
    }
}
