//! The host's ACPI tables (through the `acpi` crate): the CPUs of the MADT
//! and the PCI ECAM windows of the MCFG.

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use rxen_core::pci::McfgRegion;

use crate::bootinfo::AcpiRoot;

/// Physical memory is identity-mapped, so mapping is the identity.
#[derive(Clone, Copy)]
struct IdentityMap;

impl AcpiHandler for IdentityMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        // SAFETY: the hypervisor's page tables identity-map all RAM and the
        // ACPI regions; the caller (the acpi crate) guarantees that a `T`
        // lives at `physical_address`, which is therefore non-null.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new_unchecked(physical_address as *mut T),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Searches the BIOS areas (EBDA, 0xE0000-0xFFFFF) for the RSDP. Must run
/// while page 0 (which holds the EBDA pointer) is still mapped, i.e. on the
/// boot page tables.
pub fn find_rsdp_on_bios() -> Option<u64> {
    // SAFETY: the boot tables identity-map the first MiB, where the search
    // reads; the crate checks signatures and checksums.
    let mapping = unsafe { acpi::rsdp::Rsdp::search_for_on_bios(IdentityMap) }.ok()?;
    Some(mapping.physical_start() as u64)
}

/// One CPU listed in the MADT.
#[derive(Clone, Copy, Debug)]
pub struct MadtCpu {
    /// Its local APIC ID.
    pub apic_id: u32,
    /// ACPI processor UID.
    pub processor_uid: u32,
}

/// Why the CPU list could not be read.
#[derive(Debug)]
pub struct AcpiFailure(pub acpi::AcpiError);

/// The host's ACPI tables from `root`.
fn tables(root: AcpiRoot) -> Result<AcpiTables<IdentityMap>, AcpiFailure> {
    // SAFETY: the addresses come from the loader or the BIOS search; the
    // acpi crate validates signatures and checksums before using a table.
    unsafe {
        match root {
            AcpiRoot::SearchBios => AcpiTables::search_for_rsdp_bios(IdentityMap),
            AcpiRoot::Rsdp(address) => AcpiTables::from_rsdp(IdentityMap, address as usize),
            AcpiRoot::Sdt { revision, address } => {
                AcpiTables::from_rsdt(IdentityMap, revision, address as usize)
            }
        }
    }
    .map_err(AcpiFailure)
}

/// The ECAM windows of the MCFG table (none without one).
pub fn mcfg_regions(root: AcpiRoot) -> Result<Vec<McfgRegion>, AcpiFailure> {
    let tables = tables(root)?;
    let mcfg = match tables.find_table::<Mcfg>() {
        Ok(mcfg) => mcfg,
        Err(acpi::AcpiError::TableMissing(_)) => return Ok(Vec::new()),
        Err(error) => return Err(AcpiFailure(error)),
    };
    Ok(mcfg
        .get()
        .entries()
        .iter()
        .map(|e| McfgRegion {
            address: e.base_address,
            segment: e.pci_segment_group,
            start_bus: e.bus_number_start,
            end_bus: e.bus_number_end,
        })
        .collect())
}

/// The ACPI fixed-hardware I/O ports of the FADT the hypervisor watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmPorts {
    /// PM1a control (SLP_TYP, SLP_EN: how the OS powers the machine off).
    pub pm1a_control: Option<u16>,
    /// PM1b control, if the machine has one.
    pub pm1b_control: Option<u16>,
    /// The PM timer.
    pub pm_timer: Option<u16>,
}

/// The FADT's PM1 control and PM timer ports (those in I/O space).
pub fn pm_ports(root: AcpiRoot) -> Result<PmPorts, AcpiFailure> {
    use acpi::address::{AddressSpace, GenericAddress};
    use acpi::fadt::Fadt;
    let io = |a: GenericAddress| {
        (a.address_space == AddressSpace::SystemIo)
            .then(|| u16::try_from(a.address).ok())
            .flatten()
    };
    let tables = tables(root)?;
    let fadt = tables.find_table::<Fadt>().map_err(AcpiFailure)?;
    let fadt = fadt.get();
    Ok(PmPorts {
        pm1a_control: fadt.pm1a_control_block().ok().and_then(io),
        pm1b_control: fadt.pm1b_control_block().ok().flatten().and_then(io),
        pm_timer: fadt.pm_timer_block().ok().flatten().and_then(io),
    })
}

/// One IO-APIC of the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtIoApic {
    /// Its id.
    pub id: u8,
    /// Its registers' physical address.
    pub address: u32,
    /// Its first GSI.
    pub gsi_base: u32,
}

/// The MADT's IO-APICs.
pub fn madt_ioapics(root: AcpiRoot) -> Result<Vec<MadtIoApic>, AcpiFailure> {
    let tables = tables(root)?;
    let madt = tables.find_table::<Madt>().map_err(AcpiFailure)?;
    Ok(madt
        .get()
        .entries()
        .filter_map(|entry| match entry {
            MadtEntry::IoApic(io) => Some(MadtIoApic {
                id: io.io_apic_id,
                address: io.io_apic_address,
                gsi_base: io.global_system_interrupt_base,
            }),
            _ => None,
        })
        .collect())
}

/// Lists the enabled (or online-capable) CPUs of the MADT, boot CPU included.
pub fn madt_cpus(root: AcpiRoot) -> Result<Vec<MadtCpu>, AcpiFailure> {
    let tables = tables(root)?;
    let madt = tables.find_table::<Madt>().map_err(AcpiFailure)?;
    let mut cpus = Vec::new();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(lapic) => {
                let flags = lapic.flags;
                if flags & 0b11 != 0 {
                    cpus.push(MadtCpu {
                        apic_id: lapic.apic_id as u32,
                        processor_uid: lapic.processor_id as u32,
                    });
                }
            }
            MadtEntry::LocalX2Apic(x2apic) => {
                let (flags, id, uid) = (x2apic.flags, x2apic.x2apic_id, x2apic.processor_uid);
                if flags & 0b11 != 0 {
                    cpus.push(MadtCpu {
                        apic_id: id,
                        processor_uid: uid,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(cpus)
}
