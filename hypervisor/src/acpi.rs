//! What the hypervisor keeps of the host's ACPI tables after boot: the
//! FADT's PM1 control ports, through which a dom0 powers the machine off
//! (Linux as a PVH dom0 writes SLP_TYP|SLP_EN there itself: Xen's
//! `xen_acpi_sleep_register` is PV-only), and the PM timer port.

use rxen_x86::acpi::PmPorts;
use rxen_x86::bootinfo::AcpiRoot;
use rxen_x86::printk;
use spin::Once;

static PM_PORTS: Once<PmPorts> = Once::new();

/// Reads the FADT's ports.
pub fn init(root: AcpiRoot) {
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
