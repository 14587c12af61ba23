//! dom0's PCI configuration space through rxen (Xen's vPCI for a PVH
//! hardware domain, `arch/x86/hvm/io.c` and `drivers/vpci/`): dom0's
//! `0xCF8` latch is its own ([`Cf8Latch`]), each access to `0xCFC-0xCFF`
//! and to the MCFG's ECAM windows ([`EcamWindow`], never mapped into dom0)
//! is carried out on the host (conf1 under one lock, or ECAM), through
//! [`Vpci`], which keeps dom0's MSI messages in a copy. When dom0 enables a
//! device's MSI, a host vector is bound ([`rxen_x86::irq`]) and the device
//! programmed with it; an interrupt on that vector is delivered as dom0's
//! message to its local APICs ([`deliver`]).

use rxen_abi::xen::DomId;
use rxen_core::pci::McfgRegion;
use rxen_core::vlapic::DeliveryMode;
use rxen_core::vpci::{
    Cf8Latch, ConfigAccess, ConfigSpace, DeviceMemory, MsiEvent, MsiMessage, MsixChange, PortRead,
    Sbdf, Vpci,
};
use rxen_x86::{log, printk};

use super::HvmDomain;

/// dom0's conf1 latch and mediated configuration space.
#[derive(Debug, Default)]
pub struct Dom0Pci {
    latch: Cf8Latch,
    vpci: Vpci,
    /// The function whose MSI-X table or PBA the last configuration write
    /// moved ([`unmap_moved_msix`] unmaps dom0's pages there).
    moved: Option<Sbdf>,
}

/// After dom0's configuration access: if it moved a function's MSI-X table
/// or PBA (a BAR write), unmaps what dom0 had mapped on their new pages (it
/// touched that device memory before), so that its accesses there trap
/// again, as Xen keeps them out of a hardware domain's p2m. True if the
/// nested page table changed: the caller flushes dom0's TLBs.
pub fn unmap_moved_msix(pci: &mut Dom0Pci, memory: &mut super::memory::GuestMemory) -> bool {
    let Some(msix) = pci.moved.take().and_then(|sbdf| pci.vpci.msix_mut(sbdf)) else {
        return false;
    };
    let mut changed = false;
    for page in msix.trapped_pages() {
        changed |= memory.unmap_identity(rxen_core::mm::Gpa(page));
    }
    changed
}

impl Dom0Pci {
    /// The host vector's binding: the function and dom0's message.
    pub fn binding(&self, vector: u8) -> Option<(Sbdf, MsiMessage)> {
        self.vpci.binding(vector)
    }

    /// The function whose MSI-X table or PBA is on `gpa`'s page.
    pub fn msix_at(&self, gpa: u64) -> Option<Sbdf> {
        self.vpci.msix_at(gpa)
    }
}

/// The host's device memory (an MSI-X table's page), through the platform's
/// checked accessors.
struct HostMemory;

impl DeviceMemory for HostMemory {
    fn read(&mut self, addr: u64, size: u32) -> u64 {
        rxen_x86::pci::device_read(addr, size)
    }

    fn write(&mut self, addr: u64, size: u32, value: u64) {
        rxen_x86::pci::device_write(addr, size, value);
    }
}

/// dom0's accesses to the page(s) of a function's MSI-X table and PBA, as
/// MMIO (Xen's `msix_read` / `msix_write`): its entries are a copy, an
/// unmasked entry gets a host vector.
pub struct MsixWindow<'a> {
    /// dom0's vPCI.
    pub pci: &'a mut Dom0Pci,
    /// dom0's id.
    pub id: DomId,
    /// The function.
    pub sbdf: Sbdf,
}

impl super::emulate::Mmio for MsixWindow<'_> {
    fn read(&mut self, gpa: u64, size: u32) -> u64 {
        match self.pci.vpci.msix_mut(self.sbdf) {
            Some(msix) => msix.read(&mut HostMemory, gpa, size),
            None => u64::MAX,
        }
    }

    fn write(&mut self, gpa: u64, size: u32, value: u64) {
        let (id, sbdf) = (self.id, self.sbdf);
        let Some(msix) = self.pci.vpci.msix_mut(sbdf) else {
            return;
        };
        match msix.write(&mut HostMemory, gpa, size, value) {
            Some(MsixChange::Unmask { entry, guest }) => {
                let vector = match msix.vector(entry) {
                    Some(vector) => vector,
                    None => {
                        let Some(vector) = rxen_x86::irq::alloc_vector() else {
                            printk!("d{id}: {sbdf}: MSI-X entry {entry} left masked: no free host vector");
                            return;
                        };
                        printk!(
                            "d{id}: {sbdf}: MSI-X entry {entry} {} on host vector {vector:#x}",
                            describe(&guest, 1)
                        );
                        vector
                    }
                };
                let host = MsiMessage::fixed(rxen_x86::apic::id(), vector);
                msix.program(&mut HostMemory, entry, host);
            }
            Some(MsixChange::Mask { entry }) => msix.mask(&mut HostMemory, entry),
            None => {}
        }
    }
}

/// The host's configuration space: conf1 for the registers below 0x100 of
/// segment 0, the MCFG's ECAM windows for the rest.
struct HostConfig;

impl ConfigSpace for HostConfig {
    fn read(&mut self, sbdf: Sbdf, reg: u16, size: u8) -> u32 {
        if sbdf.seg == 0 && reg <= 0xFF {
            return rxen_x86::pci::pci_conf1_read(sbdf.bdf(), reg, size);
        }
        match crate::pci::with(|r| r.ecam_address(sbdf, reg)) {
            Some(address) => rxen_x86::pci::ecam_read(address, size),
            None => u32::MAX,
        }
    }

    fn write(&mut self, sbdf: Sbdf, reg: u16, size: u8, value: u32) {
        if sbdf.seg == 0 && reg <= 0xFF {
            rxen_x86::pci::pci_conf1_write(sbdf.bdf(), reg, size, value);
        } else if let Some(address) = crate::pci::with(|r| r.ecam_address(sbdf, reg)) {
            rxen_x86::pci::ecam_write(address, size, value);
        }
    }

    fn device_memory_end(&self) -> u64 {
        rxen_x86::pci::device_limit()
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
        config_write(pci, id, access, value);
    }
    0
}

/// dom0's configuration write, and what it does to MSI.
fn config_write(pci: &mut Dom0Pci, id: DomId, access: ConfigAccess, value: u32) {
    if let Some(event) = pci.vpci.write(&mut HostConfig, access, value) {
        msi_event(id, pci, access.sbdf, event);
    }
}

/// dom0's accesses to an ECAM window of the MCFG table, as MMIO (Xen's
/// `vpci_mmcfg_read` / `vpci_mmcfg_write`): decoded to a configuration
/// access of 1, 2 or 4 bytes (8 as two of 4) and served like conf1's.
/// Anything else reads all ones and is dropped.
pub struct EcamWindow<'a> {
    /// dom0's vPCI.
    pub pci: &'a mut Dom0Pci,
    /// dom0's id.
    pub id: DomId,
    /// The window.
    pub region: McfgRegion,
}

impl super::emulate::Mmio for EcamWindow<'_> {
    fn read(&mut self, gpa: u64, size: u32) -> u64 {
        if size == 8 {
            let high = gpa
                .checked_add(4)
                .map_or(u64::from(u32::MAX), |g| self.read(g, 4));
            return self.read(gpa, 4) | high << 32;
        }
        match self.region.decode(gpa, size as u8) {
            Some(access) => u64::from(self.pci.vpci.read(&mut HostConfig, access)),
            None => u64::MAX >> (64 - 8 * size.clamp(1, 8)),
        }
    }

    fn write(&mut self, gpa: u64, size: u32, value: u64) {
        if size == 8 {
            self.write(gpa, 4, value & 0xFFFF_FFFF);
            if let Some(g) = gpa.checked_add(4) {
                self.write(g, 4, value >> 32);
            }
            return;
        }
        if let Some(access) = self.region.decode(gpa, size as u8) {
            config_write(self.pci, self.id, access, value as u32);
        }
    }
}

/// Binds or unbinds host vectors for dom0's MSI change of `sbdf`.
fn msi_event(id: DomId, pci: &mut Dom0Pci, sbdf: Sbdf, event: MsiEvent) {
    match event {
        MsiEvent::Enable(message) => msi_bind(id, pci, sbdf, message),
        MsiEvent::Rebind(message) => {
            msi_unbind(id, pci, sbdf);
            msi_bind(id, pci, sbdf, message);
        }
        MsiEvent::Update(message) => {
            log!(Debug, "d{id}: {sbdf}: MSI now {}", describe(&message, 1))
        }
        MsiEvent::MsixMoved => pci.moved = Some(sbdf),
        MsiEvent::MsixOff => {
            if let Some(msix) = pci.vpci.msix_mut(sbdf) {
                let vectors = msix.release(&mut HostMemory);
                for &vector in &vectors {
                    rxen_x86::irq::free_vector(vector);
                }
                printk!(
                    "d{id}: {sbdf}: MSI-X off, {} host vector(s) freed",
                    vectors.len()
                );
            }
        }
        MsiEvent::Disable => msi_unbind(id, pci, sbdf),
    }
}

/// dom0 enabled `sbdf`'s MSI with `message`: as many host vectors as it
/// asked for (an aligned block for a multiple-message MSI), the device
/// programmed with the first.
fn msi_bind(id: DomId, pci: &mut Dom0Pci, sbdf: Sbdf, message: MsiMessage) {
    let count = pci.vpci.guest_msi_vectors(sbdf);
    let Some(first) = rxen_x86::irq::alloc_vectors(count) else {
        printk!("d{id}: {sbdf}: MSI left off: no {count} free host vector(s)");
        return;
    };
    let host = MsiMessage::fixed(rxen_x86::apic::id(), first);
    pci.vpci.program_host(&mut HostConfig, sbdf, Some(host));
    printk!(
        "d{id}: {sbdf}: MSI {} on host vector {}",
        describe(&message, count),
        vector_range(first, count)
    );
}

/// dom0's `message` for the log: "vector V (+n-1) to logical|physical APIC
/// D", for `count` vectors from V.
fn describe(message: &MsiMessage, count: u8) -> alloc::string::String {
    alloc::format!(
        "vector {:#x}{} to {} APIC {:#x}",
        message.vector(),
        if count > 1 {
            alloc::format!(" (+{})", count - 1)
        } else {
            alloc::string::String::new()
        },
        if message.logical() {
            "logical"
        } else {
            "physical"
        },
        message.dest()
    )
}

/// `count` host vectors from `first` for the log: "0x38" or "0x38-0x3b".
fn vector_range(first: u8, count: u8) -> alloc::string::String {
    match count {
        0 | 1 => alloc::format!("{first:#x}"),
        n => alloc::format!("{first:#x}-{:#x}", first.saturating_add(n - 1)),
    }
}

/// dom0 disabled `sbdf`'s MSI (or changes its count): the device off, its
/// host vectors freed.
fn msi_unbind(id: DomId, pci: &mut Dom0Pci, sbdf: Sbdf) {
    let vectors = pci.vpci.host_vectors(sbdf);
    pci.vpci.program_host(&mut HostConfig, sbdf, None);
    if let Some((first, count)) = vectors {
        for vector in first..first.saturating_add(count) {
            rxen_x86::irq::free_vector(vector);
        }
        printk!(
            "d{id}: {sbdf}: MSI off, host vector {} freed",
            vector_range(first, count)
        );
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
