//! What the hypervisor keeps of the host's ACPI tables after boot: the
//! FADT's PM1 control ports, through which a dom0 powers the machine off
//! (Linux as a PVH dom0 writes SLP_TYP|SLP_EN there itself: Xen's
//! `xen_acpi_sleep_register` is PV-only), the PM timer port, and the RSDP
//! dom0's own tables are built from ([`rxen_core::dom0_acpi`]).

use rxen_x86::acpi::PmPorts;
use rxen_x86::bootinfo::AcpiRoot;
use rxen_x86::printk;
use spin::Once;

static PM_PORTS: Once<PmPorts> = Once::new();
/// The host RSDP's address, when the boot gave (or the BIOS search found)
/// one: where dom0's tables are built from.
static RSDP: Once<Option<u64>> = Once::new();

/// The host's RSDP, if known.
pub fn rsdp() -> Option<u64> {
    RSDP.get().copied().flatten()
}

/// Host-physical memory below 4 GiB, read through the hypervisor's
/// identity map (the firmware's tables live there).
pub struct HostPhys;

impl rxen_core::dom0_acpi::HostMemory for HostPhys {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if addr
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > 1 << 32)
        {
            return false;
        }
        // SAFETY: the hypervisor's page tables identity-map the low 4 GiB
        // (checked above); the firmware's ACPI tables and the BIOS area are
        // read, never written, and belong to no domain's RAM.
        let frame = unsafe { rxen_x86::frame::FrameRef::new(addr, buf.len()) };
        frame.read(0, buf).is_ok()
    }
}

/// The host's IO-APICs, as dom0's emulated ones copy them.
static IOAPICS: Once<alloc::vec::Vec<rxen_core::vioapic::HostIoApic>> = Once::new();

/// The host's IO-APICs (none before [`init`]).
pub fn host_ioapics() -> &'static [rxen_core::vioapic::HostIoApic] {
    IOAPICS.get().map_or(&[], |v| v.as_slice())
}

/// Reads the FADT's ports, the MADT's IO-APICs, and keeps the RSDP's address.
pub fn init(root: AcpiRoot) {
    IOAPICS.call_once(|| {
        let found = rxen_x86::acpi::madt_ioapics(root).unwrap_or_default();
        found
            .iter()
            .filter(|io| u64::from(io.address) < (1 << 32) - 0x20)
            .map(|io| {
                let apic = rxen_x86::ioapic::IoApic::new(u64::from(io.address));
                let pins = apic.pins();
                // Every pin masked until rxen binds it for dom0.
                for pin in 0..pins {
                    apic.mask(pin, true);
                }
                printk!(
                    "IO-APIC {}: {} pins, GSI {}-{} at {:#x}",
                    io.id,
                    pins,
                    io.gsi_base,
                    io.gsi_base.saturating_add(pins).saturating_sub(1),
                    io.address
                );
                rxen_core::vioapic::HostIoApic {
                    id: io.id,
                    base: rxen_core::mm::Gpa(u64::from(io.address)),
                    gsi_base: io.gsi_base,
                    pins,
                }
            })
            .collect()
    });
    RSDP.call_once(|| match root {
        AcpiRoot::Rsdp(address) => Some(address),
        _ => None,
    });
    let ports = rxen_x86::acpi::pm_ports(root).unwrap_or_else(|error| {
        printk!("ACPI: no usable FADT ({:?})", error.0);
        PmPorts::default()
    });
    if let Some(port) = ports.pm1a_control {
        printk!("ACPI: PM1a control port {port:#x}");
    }
    PM_PORTS.call_once(|| ports);
}

/// The host's PM ports (none before [`init`]).
pub fn pm_ports() -> PmPorts {
    PM_PORTS.get().copied().unwrap_or_default()
}

/// `SLP_EN` in a PM1 control register: enter the sleep state of `SLP_TYP`.
pub const SLP_EN: u16 = 1 << 13;

/// Whether a write of `value` to `port` by dom0 asks the machine to sleep
/// or power off: `SLP_EN` written to a PM1 control port.
pub fn is_sleep_request(port: u16, value: u16) -> bool {
    let ports = pm_ports();
    value & SLP_EN != 0 && (ports.pm1a_control == Some(port) || ports.pm1b_control == Some(port))
}
