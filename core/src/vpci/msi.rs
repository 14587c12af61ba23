//! MSI of dom0's devices (Xen's `drivers/vpci/msi.c` and
//! `arch/x86/hvm/vmsi.c`: `vpci_msi_arch_enable`, `vpci_msi_arch_update`).
//!
//! dom0 programs a device's MSI capability with its own message: its
//! vector, its local APIC as destination. That message means nothing to the
//! host, so dom0 only ever sees it in a copy: the capability's control,
//! address and data registers read back what dom0 wrote, while the device
//! holds the message rxen chose (a host vector, a host CPU) and is enabled
//! only while rxen has bound that vector. An interrupt on the host vector is
//! then delivered as dom0's message ([`Vpci::binding`]).
//!
//! As Xen's vPCI, everything else in the configuration space is the
//! device's own: the per-vector mask and pending bits too. Unlike Xen
//! 4.17 (for now): one vector per device (the capability reads "1 vector
//! capable", so dom0 asks for one), and the MSI-X capability is left out of
//! the capability list (its table is not mediated yet), so that drivers fall
//! back to MSI.
// Guest input is decoded here: no unchecked arithmetic, no indexing that can
// panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::collections::BTreeMap;

use super::msix::Msix;
use super::{ConfigAccess, Sbdf};

/// Capability ID of MSI.
pub const PCI_CAP_ID_MSI: u8 = 0x05;
/// Capability ID of MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Vendor ID register.
const PCI_VENDOR_ID: u16 = 0x00;
/// Status register; bit 4: the capability list exists.
const PCI_STATUS: u16 = 0x06;
const PCI_STATUS_CAP_LIST: u32 = 1 << 4;
/// Header type register (bits 0-6: layout).
const PCI_HEADER_TYPE: u16 = 0x0E;
/// Pointer to the first capability (header types 0 and 1).
const PCI_CAPABILITY_LIST: u16 = 0x34;
/// At most this many capabilities are followed (Linux's and Xen's
/// `PCI_FIND_CAP_TTL`): a looping list ends.
const CAP_TTL: usize = 48;

/// MSI control: MSI enable.
const MSI_ENABLE: u8 = 1 << 0;
/// MSI control: 64-bit address capable.
const MSI_64BIT: u32 = 1 << 7;
/// The control bits of the low byte that dom0 sees in its copy: enable,
/// multiple message capable (the device's) and multiple message enable.
const MSI_CONTROL_VIRTUAL: u8 = 0x7F;
/// The most vectors a function's MSI can ask for, as a power of two (32).
const MSI_MAX_LOG2: u8 = 5;

/// The configuration space of the machine, as the platform reaches it.
pub trait ConfigSpace {
    /// Reads `size` (1, 2 or 4) bytes at `reg` of `sbdf`.
    fn read(&mut self, sbdf: Sbdf, reg: u16, size: u8) -> u32;
    /// Writes the low `size` bytes of `value` at `reg` of `sbdf`.
    fn write(&mut self, sbdf: Sbdf, reg: u16, size: u8, value: u32);
    /// The end of the device memory the platform can reach for an MSI-X
    /// table (4 GiB unless it maps device memory above).
    fn device_memory_end(&self) -> u64 {
        1 << 32
    }
}

/// An MSI message: what a device writes, where (Intel SDM vol. 3 §11.11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (bits 12-19 destination, bit 2 logical mode).
    pub address: u64,
    /// Message data (bits 0-7 vector, 8-10 delivery mode, 15 level).
    pub data: u16,
}

impl MsiMessage {
    /// A fixed, edge-triggered message to physical APIC `apic_id`.
    pub fn fixed(apic_id: u8, vector: u8) -> Self {
        Self {
            address: 0xFEE0_0000 | u64::from(apic_id) << 12,
            data: u16::from(vector),
        }
    }

    /// The vector.
    pub fn vector(&self) -> u8 {
        self.data.to_le_bytes()[0]
    }

    /// The delivery mode (0 fixed, 1 lowest priority, 4 NMI...).
    pub fn delivery_mode(&self) -> u8 {
        self.data.to_le_bytes()[1] & 7
    }

    /// The destination APIC ID (or logical destination).
    pub fn dest(&self) -> u8 {
        ((self.address >> 12) & 0xFF) as u8
    }

    /// Logical destination mode.
    pub fn logical(&self) -> bool {
        self.address & (1 << 2) != 0
    }

    /// Whether the address is in the interrupt range (`0xFEEx_xxxx`).
    pub fn is_interrupt(&self) -> bool {
        self.address & !0xF_FFFF == 0xFEE0_0000
    }
}

/// Where a function's MSI capability is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MsiCap {
    /// Offset of the capability (dword aligned, at most 0xFC).
    pos: u16,
    /// 64-bit address capable.
    is64: bool,
}

impl MsiCap {
    fn control(&self) -> u16 {
        self.pos.wrapping_add(2)
    }
    fn address(&self) -> u16 {
        self.pos.wrapping_add(4)
    }
    fn data(&self) -> u16 {
        self.pos.wrapping_add(if self.is64 { 12 } else { 8 })
    }
}

/// One function's MSI state: dom0's copy and what the device holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MsiState {
    cap: MsiCap,
    /// Multiple message capable: the device can send 2^capable vectors
    /// (at most [`MSI_MAX_LOG2`]).
    capable: u8,
    /// dom0's message, enable bit and multiple message enable (2^mme
    /// vectors, at most 2^capable: clamped when dom0 writes it).
    guest: MsiMessage,
    enabled: bool,
    mme: u8,
    /// The message the device holds, whether it is enabled, and its
    /// multiple message enable (rxen's: 2^host_mme host vectors from the
    /// message's, aligned as the device sets the low data bits).
    host: MsiMessage,
    host_enabled: bool,
    host_mme: u8,
}

impl MsiState {
    /// The host vectors rxen enabled the device with: (first, count).
    fn host_vectors(&self) -> Option<(u8, u8)> {
        self.host_enabled
            .then(|| (self.host.vector(), 1u8 << self.host_mme))
    }

    /// dom0's message for host vector `vector`, if it is one of the
    /// device's: message `k` of a multiple-message MSI carries dom0's data
    /// with its low bits set to `k` (PCI's rule for the data register).
    fn guest_message(&self, vector: u8) -> Option<MsiMessage> {
        let (first, count) = self.host_vectors()?;
        let k = vector.checked_sub(first).filter(|&k| k < count)?;
        let low = u16::from(count).saturating_sub(1);
        Some(MsiMessage {
            address: self.guest.address,
            data: (self.guest.data & !low) | u16::from(k),
        })
    }
}

/// A change of dom0's MSI of one function, for the platform to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiEvent {
    /// dom0 enabled MSI with this message: bind a host vector and
    /// [`Vpci::program_host`] it.
    Enable(MsiMessage),
    /// dom0 changed its message while enabled (a new vector or CPU): the
    /// binding delivers the new one.
    Update(MsiMessage),
    /// dom0 disabled MSI: unbind.
    Disable,
    /// dom0 changed how many vectors its enabled MSI sends: unbind, then
    /// bind as many as it asks for now with this message.
    Rebind(MsiMessage),
    /// MSI-X went off with host vectors bound: [`Msix::release`] them.
    MsixOff,
    /// A BAR write moved the MSI-X table or PBA: whatever dom0 had mapped
    /// on their new pages ([`Msix::trapped_pages`]) must be unmapped, so
    /// that its accesses there are trapped again.
    MsixMoved,
}

/// One function as dom0 sees it: the bytes of its configuration space that
/// are dom0's copy rather than the device's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Device {
    msi: Option<MsiState>,
    /// The MSI-X capability, when its table is reachable (else hidden).
    msix: Option<Msix>,
    /// The capability pointer that leads to MSI-X and the MSI-X
    /// capability's own next pointer, which dom0 reads there instead.
    hide_msix: Option<(u16, u8)>,
}

/// One emulated byte: which bits are dom0's copy, their value in the copy
/// and on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VirtualByte {
    mask: u8,
    guest: u8,
    host: u8,
}

fn byte_of(value: u64, index: u16) -> u8 {
    value
        .to_le_bytes()
        .get(usize::from(index))
        .copied()
        .unwrap_or(0)
}

fn with_byte(value: u64, index: u16, byte: u8) -> u64 {
    let mut bytes = value.to_le_bytes();
    if let Some(b) = bytes.get_mut(usize::from(index)) {
        *b = byte;
    }
    u64::from_le_bytes(bytes)
}

impl Device {
    /// Walks the capability list of `sbdf`; `None` if no function answers.
    fn discover(hw: &mut dyn ConfigSpace, sbdf: Sbdf) -> Option<Self> {
        if hw.read(sbdf, PCI_VENDOR_ID, 2) == 0xFFFF {
            return None;
        }
        let mut device = Self::default();
        let header = hw.read(sbdf, PCI_HEADER_TYPE, 1) & 0x7F;
        if hw.read(sbdf, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST == 0 || header > 1 {
            return Some(device);
        }
        let mut pointer_reg = PCI_CAPABILITY_LIST;
        // `& 0xFC`: the value fits a byte, dword aligned.
        let mut pos = (hw.read(sbdf, pointer_reg, 1) & 0xFC) as u16;
        for _ in 0..CAP_TTL {
            if pos < 0x40 {
                break;
            }
            let header = hw.read(sbdf, pos, 2);
            let [id, next, ..] = header.to_le_bytes();
            let next = next & 0xFC;
            match id {
                PCI_CAP_ID_MSI if device.msi.is_none() => {
                    let control = hw.read(sbdf, pos.wrapping_add(2), 2);
                    let cap = MsiCap {
                        pos,
                        is64: control & MSI_64BIT != 0,
                    };
                    // What the device holds now (nothing bound yet).
                    let message = MsiMessage {
                        address: u64::from(hw.read(sbdf, cap.address(), 4))
                            | if cap.is64 {
                                u64::from(hw.read(sbdf, pos.wrapping_add(8), 4)) << 32
                            } else {
                                0
                            },
                        data: (hw.read(sbdf, cap.data(), 2) & 0xFFFF) as u16,
                    };
                    let [low, _, _, _] = control.to_le_bytes();
                    let enabled = low & MSI_ENABLE != 0;
                    device.msi = Some(MsiState {
                        cap,
                        capable: ((low >> 1) & 7).min(MSI_MAX_LOG2),
                        guest: message,
                        enabled: false,
                        mme: 0,
                        host: message,
                        host_enabled: enabled,
                        host_mme: ((low >> 4) & 7).min(MSI_MAX_LOG2),
                    });
                }
                PCI_CAP_ID_MSIX if device.hide_msix.is_none() && device.msix.is_none() => {
                    match Msix::discover(hw, sbdf, pos) {
                        Some(msix) => device.msix = Some(msix),
                        None => device.hide_msix = Some((pointer_reg, next)),
                    }
                }
                _ => {}
            }
            pointer_reg = pos.wrapping_add(1);
            pos = u16::from(next);
        }
        Some(device)
    }

    /// The emulated bits of byte `reg`, if any.
    fn virtual_byte(&self, reg: u16) -> Option<VirtualByte> {
        if let Some((pointer, next)) = self.hide_msix {
            if reg == pointer {
                return Some(VirtualByte {
                    mask: 0xFF,
                    guest: next,
                    host: next,
                });
            }
        }
        let msi = self.msi.as_ref()?;
        let cap = msi.cap;
        if reg == cap.control() {
            // The device's capability, dom0's or rxen's enable and count.
            let capable = msi.capable << 1;
            return Some(VirtualByte {
                mask: MSI_CONTROL_VIRTUAL,
                guest: u8::from(msi.enabled) | capable | msi.mme << 4,
                host: u8::from(msi.host_enabled) | capable | msi.host_mme << 4,
            });
        }
        let address_bytes = if cap.is64 { 8 } else { 4 };
        if let Some(i) = reg
            .checked_sub(cap.address())
            .filter(|&i| i < address_bytes)
        {
            return Some(VirtualByte {
                mask: 0xFF,
                guest: byte_of(msi.guest.address, i),
                host: byte_of(msi.host.address, i),
            });
        }
        if let Some(i) = reg.checked_sub(cap.data()).filter(|&i| i < 2) {
            return Some(VirtualByte {
                mask: 0xFF,
                guest: byte_of(u64::from(msi.guest.data), i),
                host: byte_of(u64::from(msi.host.data), i),
            });
        }
        None
    }

    /// Stores dom0's bits `value & mask` of byte `reg` in its copy.
    fn store(&mut self, reg: u16, value: u8) {
        let Some(msi) = self.msi.as_mut() else {
            return;
        };
        let cap = msi.cap;
        let address_bytes = if cap.is64 { 8 } else { 4 };
        if reg == cap.control() {
            // More vectors than the device can send are as many as it can.
            msi.enabled = value & MSI_ENABLE != 0;
            msi.mme = ((value >> 4) & 7).min(msi.capable);
        } else if let Some(i) = reg
            .checked_sub(cap.address())
            .filter(|&i| i < address_bytes)
        {
            msi.guest.address = with_byte(msi.guest.address, i, value);
        } else if let Some(i) = reg.checked_sub(cap.data()).filter(|&i| i < 2) {
            msi.guest.data = with_byte(u64::from(msi.guest.data), i, value) as u16;
        }
    }
}

/// The bytes of a `size`-byte access at `reg`: (offset in the value, register).
fn bytes(reg: u16, size: u8) -> impl Iterator<Item = (u32, u16)> {
    (0..u32::from(size.min(4))).map(move |i| (i.wrapping_mul(8), reg.wrapping_add(i as u16)))
}

/// dom0's mediated configuration space: the functions whose bytes differ
/// from the device's, found on first access (Xen's `vpci_add_handlers`).
#[derive(Debug, Default)]
pub struct Vpci {
    devices: BTreeMap<Sbdf, Device>,
}

impl Vpci {
    /// An empty mediation (no function looked at yet).
    pub fn new() -> Self {
        Self::default()
    }

    fn device(&mut self, hw: &mut dyn ConfigSpace, sbdf: Sbdf) -> Option<&mut Device> {
        match self.devices.entry(sbdf) {
            alloc::collections::btree_map::Entry::Occupied(e) => Some(e.into_mut()),
            alloc::collections::btree_map::Entry::Vacant(e) => {
                Some(e.insert(Device::discover(hw, sbdf)?))
            }
        }
    }

    /// dom0's configuration read: the device's bytes, with dom0's copy
    /// where there is one (Xen's `vpci_read`).
    pub fn read(&mut self, hw: &mut dyn ConfigSpace, access: ConfigAccess) -> u32 {
        let value = hw.read(access.sbdf, access.reg, access.size);
        let Some(device) = self.device(hw, access.sbdf) else {
            return value;
        };
        bytes(access.reg, access.size).fold(value, |value, (shift, reg)| {
            match device.virtual_byte(reg) {
                Some(v) => {
                    let mask = u32::from(v.mask) << shift;
                    (value & !mask) | (u32::from(v.guest & v.mask) << shift)
                }
                None => value,
            }
        })
    }

    /// dom0's configuration write of `value` (Xen's `vpci_write`): dom0's
    /// bits go to its copy, the rest to the device (with rxen's values in
    /// place of dom0's). Returns the MSI change the platform acts on.
    pub fn write(
        &mut self,
        hw: &mut dyn ConfigSpace,
        access: ConfigAccess,
        value: u32,
    ) -> Option<MsiEvent> {
        let Some(device) = self.device(hw, access.sbdf) else {
            hw.write(access.sbdf, access.reg, access.size, value);
            return None;
        };
        let before = device.msi;
        let mut forward = value;
        for (shift, reg) in bytes(access.reg, access.size) {
            let Some(v) = device.virtual_byte(reg) else {
                continue;
            };
            let byte = (value >> shift) as u8;
            let mask = u32::from(v.mask) << shift;
            forward = (forward & !mask) | (u32::from(v.host & v.mask) << shift);
            // Only dom0's bits of the byte: the rest is the device's.
            device.store(reg, (byte & v.mask) | (v.guest & !v.mask));
        }
        hw.write(access.sbdf, access.reg, access.size, forward);
        if let Some(msix) = device.msix.as_mut() {
            if msix.config_written(hw, access.sbdf, access.reg) {
                return Some(MsiEvent::MsixMoved);
            }
            let control = msix.control_reg();
            let covers = access.reg <= control.wrapping_add(1)
                && control < access.reg.wrapping_add(u16::from(access.size));
            if covers
                && hw.read(access.sbdf, control, 2) & super::msix::MSIX_ENABLE == 0
                && msix.has_vectors()
            {
                return Some(MsiEvent::MsixOff);
            }
        }
        let (Some(before), Some(after)) = (before, device.msi) else {
            return None;
        };
        match (before.enabled, after.enabled) {
            (false, true) => Some(MsiEvent::Enable(after.guest)),
            (true, false) => Some(MsiEvent::Disable),
            (true, true) if before.mme != after.mme => Some(MsiEvent::Rebind(after.guest)),
            (true, true) if before.guest != after.guest => Some(MsiEvent::Update(after.guest)),
            _ => None,
        }
    }

    /// Programs the device's MSI with rxen's `message` and enables it, or
    /// disables it (`None`). The message is written while MSI is off; the
    /// device sends as many vectors as dom0 enabled
    /// ([`Vpci::guest_msi_vectors`]), which the platform allocated from
    /// `message`'s, aligned.
    pub fn program_host(
        &mut self,
        hw: &mut dyn ConfigSpace,
        sbdf: Sbdf,
        message: Option<MsiMessage>,
    ) {
        let Some(msi) = self.devices.get_mut(&sbdf).and_then(|d| d.msi.as_mut()) else {
            return;
        };
        let cap = msi.cap;
        // Enable and multiple message enable off.
        let control = hw.read(sbdf, cap.control(), 2) & !0x71;
        hw.write(sbdf, cap.control(), 2, control);
        msi.host_enabled = false;
        let Some(message) = message else {
            return;
        };
        hw.write(sbdf, cap.address(), 4, message.address as u32);
        if cap.is64 {
            hw.write(
                sbdf,
                cap.pos.wrapping_add(8),
                4,
                (message.address >> 32) as u32,
            );
        }
        hw.write(sbdf, cap.data(), 2, u32::from(message.data));
        hw.write(
            sbdf,
            cap.control(),
            2,
            control | u32::from(MSI_ENABLE) | u32::from(msi.mme) << 4,
        );
        msi.host = message;
        msi.host_enabled = true;
        msi.host_mme = msi.mme;
    }

    /// The function whose MSI rxen enabled with host vector `vector`, and
    /// dom0's message to deliver for it.
    pub fn binding(&self, vector: u8) -> Option<(Sbdf, MsiMessage)> {
        self.devices.iter().find_map(|(sbdf, d)| {
            let msi = d.msi.as_ref().and_then(|msi| msi.guest_message(vector));
            let message = msi.or_else(|| d.msix.as_ref()?.binding(vector))?;
            Some((*sbdf, message))
        })
    }

    /// The MSI-X table of `sbdf`, if it has one rxen mediates.
    pub fn msix_mut(&mut self, sbdf: Sbdf) -> Option<&mut Msix> {
        self.devices.get_mut(&sbdf)?.msix.as_mut()
    }

    /// The function whose MSI-X table or PBA is on the page of
    /// host-physical `addr` (dom0's accesses there are trapped).
    pub fn msix_at(&self, addr: u64) -> Option<Sbdf> {
        self.devices
            .iter()
            .find(|(_, d)| d.msix.as_ref().is_some_and(|m| m.traps(addr)))
            .map(|(sbdf, _)| *sbdf)
    }

    /// The host vectors rxen enabled `sbdf`'s MSI with, if any: (first,
    /// count).
    pub fn host_vectors(&self, sbdf: Sbdf) -> Option<(u8, u8)> {
        self.devices.get(&sbdf)?.msi.as_ref()?.host_vectors()
    }

    /// How many vectors dom0 enabled `sbdf`'s MSI with (multiple message
    /// enable; 1 without MSI).
    pub fn guest_msi_vectors(&self, sbdf: Sbdf) -> u8 {
        self.devices
            .get(&sbdf)
            .and_then(|d| d.msi.as_ref())
            .map_or(1, |msi| 1 << msi.mme)
    }

    /// dom0's MSI message of `sbdf` and whether dom0 enabled it.
    pub fn guest_msi(&self, sbdf: Sbdf) -> Option<(MsiMessage, bool)> {
        let msi = self.devices.get(&sbdf)?.msi.as_ref()?;
        Some((msi.guest, msi.enabled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A machine's configuration space in memory; every write is logged.
    #[derive(Default)]
    struct FakeConfig {
        functions: BTreeMap<Sbdf, [u8; 256]>,
        writes: Vec<(Sbdf, u16, u8, u32)>,
    }

    impl ConfigSpace for FakeConfig {
        fn read(&mut self, sbdf: Sbdf, reg: u16, size: u8) -> u32 {
            let Some(space) = self.functions.get(&sbdf) else {
                return u32::MAX >> (32 - 8 * u32::from(size));
            };
            (0..size as usize).fold(0, |v, i| {
                v | u32::from(space[(reg as usize + i) & 0xFF]) << (8 * i)
            })
        }
        fn write(&mut self, sbdf: Sbdf, reg: u16, size: u8, value: u32) {
            self.writes.push((sbdf, reg, size, value));
            if let Some(space) = self.functions.get_mut(&sbdf) {
                for i in 0..size as usize {
                    space[(reg as usize + i) & 0xFF] = (value >> (8 * i)) as u8;
                }
            }
        }
    }

    const AHCI: Sbdf = Sbdf {
        seg: 0,
        bus: 0,
        dev: 0x1F,
        func: 2,
    };

    fn put(space: &mut [u8; 256], reg: usize, bytes: &[u8]) {
        space[reg..reg + bytes.len()].copy_from_slice(bytes);
    }

    /// A function with the capabilities `caps` (id, offset, control) chained
    /// in order from 0x34.
    fn function(caps: &[(u8, u8, u16)]) -> [u8; 256] {
        let mut space = [0u8; 256];
        put(&mut space, 0, &[0x86, 0x80, 0x22, 0x29]);
        put(&mut space, 6, &[0x10, 0x00]);
        space[0x34] = caps.first().map_or(0, |c| c.1);
        for (i, &(id, pos, control)) in caps.iter().enumerate() {
            let next = caps.get(i + 1).map_or(0, |c| c.1);
            put(&mut space, pos as usize, &[id, next]);
            put(&mut space, pos as usize + 2, &control.to_le_bytes());
        }
        space
    }

    fn machine(caps: &[(u8, u8, u16)]) -> FakeConfig {
        let mut hw = FakeConfig::default();
        hw.functions.insert(AHCI, function(caps));
        hw
    }

    fn at(reg: u16, size: u8) -> ConfigAccess {
        ConfigAccess {
            sbdf: AHCI,
            reg,
            size,
        }
    }

    /// Linux's `msi_capability_init` on a 64-bit MSI capability at 0x80
    /// that can do 16 vectors, enabling one: its message goes to its copy
    /// only, and the device is enabled only with rxen's message.
    #[test]
    fn dom0s_message_stays_in_its_copy() {
        // Control: 64-bit, multiple message capable = 16 (4 << 1).
        let mut hw = machine(&[(0x01, 0x40, 0), (PCI_CAP_ID_MSI, 0x80, 0x0088)]);
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0x80, 2)), 0x0005);
        assert_eq!(vpci.read(&mut hw, at(0x82, 2)), 0x0088, "16 capable, off");
        assert_eq!(vpci.write(&mut hw, at(0x84, 4), 0xFEE0_1000), None);
        assert_eq!(vpci.write(&mut hw, at(0x88, 4), 0), None);
        assert_eq!(vpci.write(&mut hw, at(0x8C, 2), 0x0041), None);
        // dom0 reads back its own message...
        assert_eq!(vpci.read(&mut hw, at(0x84, 4)), 0xFEE0_1000);
        assert_eq!(vpci.read(&mut hw, at(0x8C, 2)), 0x0041);
        // ...which never reached the device.
        assert_eq!(hw.read(AHCI, 0x84, 4), 0);
        assert_eq!(hw.read(AHCI, 0x8C, 2), 0);
        // Enable, one vector.
        let event = vpci.write(&mut hw, at(0x82, 2), 0x0089);
        let guest = MsiMessage {
            address: 0xFEE0_1000,
            data: 0x41,
        };
        assert_eq!(event, Some(MsiEvent::Enable(guest)));
        assert_eq!(hw.read(AHCI, 0x82, 2) & 0x71, 0, "device still off");
        assert_eq!(vpci.read(&mut hw, at(0x82, 2)), 0x0089, "dom0 sees it on");
        assert_eq!(vpci.binding(0x30), None);
        // rxen binds host vector 0x30 on APIC 0.
        vpci.program_host(&mut hw, AHCI, Some(MsiMessage::fixed(0, 0x30)));
        assert_eq!(hw.read(AHCI, 0x84, 4), 0xFEE0_0000);
        assert_eq!(hw.read(AHCI, 0x88, 4), 0);
        assert_eq!(hw.read(AHCI, 0x8C, 2), 0x30);
        assert_eq!(hw.read(AHCI, 0x82, 2) & 0x71, 1, "device on");
        assert_eq!(vpci.binding(0x30), Some((AHCI, guest)));
        assert_eq!(vpci.binding(0x31), None);
        assert_eq!(vpci.host_vectors(AHCI), Some((0x30, 1)));
        assert_eq!(vpci.guest_msi(AHCI), Some((guest, true)));
        // dom0's view is unchanged, whole capability read as dwords.
        assert_eq!(vpci.read(&mut hw, at(0x80, 4)), 0x0089_0005);
        assert_eq!(vpci.read(&mut hw, at(0x84, 4)), 0xFEE0_1000);
        assert_eq!(vpci.read(&mut hw, at(0x8C, 4)), 0x0041);
        // A control write that keeps it on (Linux's INTx/mask updates) and
        // leaves rxen's enable on the device.
        assert_eq!(vpci.write(&mut hw, at(0x82, 2), 0x0089), None);
        assert_eq!(hw.read(AHCI, 0x82, 2) & 1, 1);
        // A move to vCPU 1 with another vector, byte by byte.
        assert_eq!(
            vpci.write(&mut hw, at(0x85, 1), 0x20),
            Some(MsiEvent::Update(MsiMessage {
                address: 0xFEE0_2000,
                data: 0x41
            }))
        );
        let moved = MsiMessage {
            address: 0xFEE0_2000,
            data: 0x51,
        };
        assert_eq!(
            vpci.write(&mut hw, at(0x8C, 1), 0x51),
            Some(MsiEvent::Update(moved))
        );
        assert_eq!(vpci.binding(0x30), Some((AHCI, moved)));
        assert_eq!(hw.read(AHCI, 0x84, 4), 0xFEE0_0000, "device keeps rxen's");
        // Disable.
        assert_eq!(
            vpci.write(&mut hw, at(0x82, 2), 0x0080),
            Some(MsiEvent::Disable)
        );
        vpci.program_host(&mut hw, AHCI, None);
        assert_eq!(hw.read(AHCI, 0x82, 2) & 1, 0);
        assert_eq!(vpci.binding(0x30), None);
        assert_eq!(vpci.host_vectors(AHCI), None);
        // The device never held dom0's vectors.
        assert!(hw
            .writes
            .iter()
            .all(|&(_, reg, _, value)| !(reg == 0x8C && [0x41, 0x51].contains(&(value & 0xFF)))));
    }

    /// Multiple-message MSI (Xen's vPCI `msi.c`): dom0 enables 4 of 16
    /// vectors; rxen's aligned block of 4 host vectors maps onto dom0's
    /// data with its low bits the message number; more than the device can
    /// send is as many as it can; a changed count while on is a rebind.
    #[test]
    fn multiple_messages_map_block_to_block() {
        let mut hw = machine(&[(PCI_CAP_ID_MSI, 0x80, 0x0088)]);
        let mut vpci = Vpci::new();
        vpci.write(&mut hw, at(0x84, 4), 0xFEE0_0000);
        vpci.write(&mut hw, at(0x8C, 2), 0x0060);
        let guest = MsiMessage {
            address: 0xFEE0_0000,
            data: 0x60,
        };
        // MME = 2: four vectors.
        assert_eq!(
            vpci.write(&mut hw, at(0x82, 2), 0x00A9),
            Some(MsiEvent::Enable(guest))
        );
        assert_eq!(vpci.guest_msi_vectors(AHCI), 4);
        assert_eq!(vpci.read(&mut hw, at(0x82, 2)), 0x00A9);
        vpci.program_host(&mut hw, AHCI, Some(MsiMessage::fixed(0, 0x40)));
        assert_eq!(hw.read(AHCI, 0x82, 2) & 0x71, 0x21, "device on, 4 vectors");
        assert_eq!(hw.read(AHCI, 0x8C, 2), 0x40);
        assert_eq!(vpci.host_vectors(AHCI), Some((0x40, 4)));
        for k in 0..4u8 {
            let (sbdf, message) = vpci.binding(0x40 + k).expect("bound");
            assert_eq!(sbdf, AHCI);
            assert_eq!(message.vector(), 0x60 + k, "message {k}");
        }
        assert_eq!(vpci.binding(0x3F), None);
        assert_eq!(vpci.binding(0x44), None);
        // dom0's data with low bits set: they are the message number's.
        vpci.write(&mut hw, at(0x8C, 2), 0x0063);
        assert_eq!(vpci.binding(0x40).map(|(_, m)| m.vector()), Some(0x60));
        assert_eq!(vpci.binding(0x43).map(|(_, m)| m.vector()), Some(0x63));
        // MME = 7 while on: as many as the device can (16), a rebind.
        assert_eq!(
            vpci.write(&mut hw, at(0x82, 1), 0xF9),
            Some(MsiEvent::Rebind(MsiMessage {
                address: 0xFEE0_0000,
                data: 0x63
            }))
        );
        assert_eq!(vpci.guest_msi_vectors(AHCI), 16);
        assert_eq!(
            vpci.read(&mut hw, at(0x82, 1)),
            0xC9,
            "MME 4 (16) read back"
        );
        vpci.program_host(&mut hw, AHCI, Some(MsiMessage::fixed(0, 0x50)));
        assert_eq!(vpci.host_vectors(AHCI), Some((0x50, 16)));
        assert_eq!(hw.read(AHCI, 0x82, 2) & 0x71, 0x41);
        // A device that can send one: MME is always 0.
        let mut hw = machine(&[(PCI_CAP_ID_MSI, 0x80, 0x0080)]);
        let mut vpci = Vpci::new();
        vpci.write(&mut hw, at(0x82, 2), 0x00F1);
        assert_eq!(vpci.read(&mut hw, at(0x82, 2)), 0x0081);
        assert_eq!(vpci.guest_msi_vectors(AHCI), 1);
    }

    /// A 32-bit capability: data right after the address; the dword after
    /// the data is the device's.
    #[test]
    fn a_32_bit_capability_has_its_data_at_8() {
        let mut hw = machine(&[(PCI_CAP_ID_MSI, 0x50, 0x0000)]);
        hw.functions.get_mut(&AHCI).unwrap()[0x5C] = 0x77;
        let mut vpci = Vpci::new();
        vpci.write(&mut hw, at(0x54, 4), 0xFEE0_0000);
        vpci.write(&mut hw, at(0x58, 2), 0x0033);
        assert_eq!(vpci.read(&mut hw, at(0x58, 4)), 0x0033);
        assert_eq!(vpci.read(&mut hw, at(0x5C, 1)), 0x77);
        assert_eq!(
            vpci.write(&mut hw, at(0x50, 4), 0x0001_0000),
            Some(MsiEvent::Enable(MsiMessage {
                address: 0xFEE0_0000,
                data: 0x33
            }))
        );
        // The capability ID and next bytes of that dword went to the device.
        assert_eq!(hw.read(AHCI, 0x50, 2), 0);
        vpci.program_host(&mut hw, AHCI, Some(MsiMessage::fixed(1, 0x31)));
        assert_eq!(hw.read(AHCI, 0x54, 4), 0xFEE0_1000);
        assert_eq!(hw.read(AHCI, 0x58, 2), 0x31);
        assert_eq!(hw.read(AHCI, 0x5C, 1), 0x77);
    }

    /// MSI-X is left out of the list, wherever it is.
    #[test]
    fn msix_is_skipped_in_the_capability_list() {
        let mut hw = machine(&[
            (0x01, 0x40, 0),
            (PCI_CAP_ID_MSIX, 0x50, 0x0003),
            (PCI_CAP_ID_MSI, 0x60, 0),
        ]);
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0x34, 1)), 0x40);
        assert_eq!(vpci.read(&mut hw, at(0x40, 2)), 0x6001, "PM's next: MSI");
        assert_eq!(vpci.read(&mut hw, at(0x40, 4)) & 0xFFFF, 0x6001);
        // First in the list: the list pointer skips it.
        let mut hw = machine(&[(PCI_CAP_ID_MSIX, 0x48, 0x0003), (0x10, 0x70, 0)]);
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0x34, 4)), 0x70);
        // Alone: the list is empty.
        let mut hw = machine(&[(PCI_CAP_ID_MSIX, 0x48, 0x0003)]);
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0x34, 1)), 0);
        // A write there does not un-hide it.
        vpci.write(&mut hw, at(0x34, 1), 0x48);
        assert_eq!(vpci.read(&mut hw, at(0x34, 1)), 0);
    }

    /// Hostile or broken lists: a loop, a pointer into the header, a
    /// missing function. Nothing hangs, nothing is emulated.
    #[test]
    fn broken_capability_lists_end() {
        let mut hw = machine(&[(0x01, 0x40, 0)]);
        hw.functions.get_mut(&AHCI).unwrap()[0x41] = 0x40; // loops on itself
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0x40, 2)), 0x4001);
        let mut hw = machine(&[(PCI_CAP_ID_MSI, 0x40, 0)]);
        hw.functions.get_mut(&AHCI).unwrap()[0x34] = 0x10; // into the header
        let mut vpci = Vpci::new();
        assert_eq!(vpci.write(&mut hw, at(0x42, 2), 1), None);
        assert_eq!(hw.read(AHCI, 0x42, 2), 1, "not emulated: written through");
        // No capability list bit: none looked at.
        let mut hw = machine(&[(PCI_CAP_ID_MSI, 0x40, 0)]);
        hw.functions.get_mut(&AHCI).unwrap()[6] = 0;
        let mut vpci = Vpci::new();
        assert_eq!(vpci.write(&mut hw, at(0x42, 2), 1), None);
        // No function: all ones, writes go nowhere, nothing cached.
        let mut hw = FakeConfig::default();
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0x34, 4)), u32::MAX);
        assert_eq!(vpci.write(&mut hw, at(0x82, 2), 1), None);
        assert!(vpci.devices.is_empty());
        // A capability at the very end of the space.
        let mut hw = machine(&[(PCI_CAP_ID_MSI, 0xFC, 0x0080)]);
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, at(0xFC, 4)) >> 16, 0x0080);
        vpci.write(&mut hw, at(0xFE, 2), 0x0081);
        assert!(vpci.guest_msi(AHCI).is_some_and(|(_, on)| on));
    }

    #[test]
    fn messages_decode() {
        let m = MsiMessage {
            address: 0xFEE0_3004,
            data: 0x8141,
        };
        assert_eq!(
            (m.vector(), m.delivery_mode(), m.dest(), m.logical()),
            (0x41, 1, 3, true)
        );
        assert!(m.is_interrupt());
        assert!(!MsiMessage {
            address: 0x1_FEE0_0000,
            data: 0
        }
        .is_interrupt());
        assert_eq!(MsiMessage::fixed(0xFF, 0xEF).dest(), 0xFF);
    }
}
