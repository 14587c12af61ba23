//! dom0's PCI configuration space through rxen (Xen's vPCI for a PVH
//! hardware domain, `arch/x86/hvm/io.c` and `drivers/vpci/`): dom0's
//! `0xCF8` latch is its own ([`Cf8Latch`]), each access to `0xCFC-0xCFF` is
//! carried out on the host's conf1 ports under one lock, through
//! [`Vpci`], which keeps dom0's MSI messages in a copy. When dom0 enables a
//! device's MSI, a host vector is bound ([`rxen_x86::irq`]) and the device
//! programmed with it; an interrupt on that vector is delivered as dom0's
//! message to its local APICs ([`deliver`]).

use rxen_abi::xen::DomId;
use rxen_core::vlapic::DeliveryMode;
use rxen_core::vpci::{Cf8Latch, ConfigSpace, MsiEvent, MsiMessage, PortRead, Sbdf, Vpci};
use rxen_x86::{log, printk};

use super::HvmDomain;

/// dom0's conf1 latch and mediated configuration space.
#[derive(Debug, Default)]
pub struct Dom0Pci {
    latch: Cf8Latch,
    vpci: Vpci,
}

impl Dom0Pci {
    /// The host vector's binding: the function and dom0's message.
    pub fn binding(&self, vector: u8) -> Option<(Sbdf, MsiMessage)> {
        self.vpci.binding(vector)
    }
}

/// The host's configuration space, segment 0, through conf1.
struct HostConfig;

impl ConfigSpace for HostConfig {
    fn read(&mut self, sbdf: Sbdf, reg: u16, size: u8) -> u32 {
        if sbdf.seg != 0 || reg > 0xFF {
            return u32::MAX;
        }
        rxen_x86::port_io::pci_conf1_read(sbdf.bdf(), reg, size)
    }

    fn write(&mut self, sbdf: Sbdf, reg: u16, size: u8, value: u32) {
        if sbdf.seg == 0 && reg <= 0xFF {
            rxen_x86::port_io::pci_conf1_write(sbdf.bdf(), reg, size, value);
        }
    }
}

/// dom0's `size`-byte access to conf1 port `port` (`0xCF8`, `0xCFC-0xCFF`):
/// the value of a read, 0 for a write.
pub fn port_access(
    pci: &mut Dom0Pci,
    id: DomId,
    port: u16,
    size: u8,
    is_in: bool,
    value: u32,
) -> u32 {
    if is_in {
        return match pci.latch.read(port, size) {
            PortRead::Value(v) => v,
            PortRead::Config(access) => pci.vpci.read(&mut HostConfig, access),
        };
    }
    if let Some((access, value)) = pci.latch.write(port, size, value) {
        if let Some(event) = pci.vpci.write(&mut HostConfig, access, value) {
            msi_event(id, pci, access.sbdf, event);
        }
    }
    0
}

/// Binds or unbinds a host vector for dom0's MSI change of `sbdf`.
fn msi_event(id: DomId, pci: &mut Dom0Pci, sbdf: Sbdf, event: MsiEvent) {
    match event {
        MsiEvent::Enable(message) => {
            let Some(vector) = rxen_x86::irq::alloc_vector() else {
                printk!("d{id}: {sbdf}: MSI left off: no free host vector");
                return;
            };
            let host = MsiMessage::fixed(rxen_x86::apic::id(), vector);
            pci.vpci.program_host(&mut HostConfig, sbdf, Some(host));
            printk!(
                "d{id}: {sbdf}: MSI vector {:#x} to {} APIC {:#x} on host vector {vector:#x}",
                message.vector(),
                if message.logical() {
                    "logical"
                } else {
                    "physical"
                },
                message.dest()
            );
        }
        MsiEvent::Update(message) => log!(
            Debug,
            "d{id}: {sbdf}: MSI now vector {:#x} to {} APIC {:#x}",
            message.vector(),
            if message.logical() {
                "logical"
            } else {
                "physical"
            },
            message.dest()
        ),
        MsiEvent::Disable => {
            let vector = pci.vpci.host_vector(sbdf);
            pci.vpci.program_host(&mut HostConfig, sbdf, None);
            if let Some(vector) = vector {
                rxen_x86::irq::free_vector(vector);
                printk!("d{id}: {sbdf}: MSI off, host vector {vector:#x} freed");
            }
        }
    }
}

/// Delivers dom0's MSI `message` to its local APICs (Xen's
/// `vmsi_deliver`: fixed and lowest priority; the other modes are refused).
pub fn deliver(domain: &mut HvmDomain, message: MsiMessage) {
    let mode = match message.delivery_mode() {
        0 => DeliveryMode::Fixed,
        1 => DeliveryMode::LowestPriority,
        other => {
            log!(
                Info,
                "d{}: MSI with delivery mode {other} dropped",
                domain.core.id
            );
            return;
        }
    };
    if !message.is_interrupt() || message.vector() < 16 {
        log!(
            Info,
            "d{}: MSI to {:#x} vector {} dropped",
            domain.core.id,
            message.address,
            message.vector()
        );
        return;
    }
    super::vlapic::deliver_device(
        domain,
        message.dest(),
        message.logical(),
        mode,
        message.vector(),
        false,
    );
}
