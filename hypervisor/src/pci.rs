//! The machine's PCI registry ([`rxen_core::pci::PciRegistry`]): the host's
//! MCFG windows, read at boot, and the devices the control domain reports.

use rxen_core::pci::PciRegistry;
use rxen_x86::bootinfo::AcpiRoot;
use rxen_x86::printk;
use spin::{Mutex, Once};

/// The registry; a leaf lock (taken under the machine lock, see
/// `schedule.rs`).
static PCI: Once<Mutex<PciRegistry>> = Once::new();

/// Reads the host's MCFG table.
pub fn init(root: AcpiRoot) {
    let regions = rxen_x86::acpi::mcfg_regions(root).unwrap_or_else(|error| {
        printk!("ACPI: unusable MCFG ({:?}): no PCI MMCONFIG", error.0);
        alloc::vec::Vec::new()
    });
    for r in &regions {
        printk!(
            "PCI: MMCONFIG segment {:04x} buses {:02x}-{:02x} at {:#x}",
            r.segment,
            r.start_bus,
            r.end_bus,
            r.address
        );
    }
    let windows: alloc::vec::Vec<(u64, u64)> = regions
        .iter()
        .filter_map(|r| Some((r.address, r.window_len()?)))
        .collect();
    rxen_x86::pci::set_ecam_windows(&windows);
    PCI.call_once(|| Mutex::new(PciRegistry::new(&regions)));
}

/// Runs `f` on the registry (an empty one before [`init`]).
pub fn with<R>(f: impl FnOnce(&mut PciRegistry) -> R) -> R {
    let registry = PCI.call_once(|| Mutex::new(PciRegistry::new(&[])));
    f(&mut registry.lock())
}
