//! MSI-X of dom0's devices (Xen's `drivers/vpci/msix.c`): the MSI-X table
//! lives in a memory BAR of the device, so dom0's accesses to the page(s)
//! holding it are trapped and emulated, as Xen's vPCI traps them. dom0's
//! entries (address, data, mask bit) are a copy; the device's entries hold
//! rxen's messages and stay masked until dom0 unmasks its copy
//! ([`MsixChange::Unmask`]), when rxen binds a host vector and programs the
//! entry. Everything else on those pages (the PBA, other registers sharing
//! the page) is the device's, read and written through. The capability's
//! control register is the device's too (enable, function mask): with the
//! device's entries holding only rxen's messages, dom0 turning it on or off
//! can only start or stop rxen's vectors.
//!
//! A table rxen cannot reach (in an I/O BAR, a BAR above 4 GiB or not
//! assigned) is not offered: the capability is then left out of dom0's
//! capability list ([`super::msi`]), as before MSI-X existed here.
// Guest input is decoded here: no unchecked arithmetic, no indexing that can
// panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

use super::msi::{ConfigSpace, MsiMessage};
use super::Sbdf;

/// Bytes per table entry.
const ENTRY_SIZE: u64 = 16;
/// Entry offsets: message address low, high, data, vector control.
const ENTRY_ADDRESS_LO: u64 = 0;
const ENTRY_ADDRESS_HI: u64 = 4;
const ENTRY_DATA: u64 = 8;
const ENTRY_CTRL: u64 = 12;
/// Vector control bit 0: masked.
const CTRL_MASKED: u32 = 1;
/// Message control: enable (bit 15).
pub const MSIX_ENABLE: u32 = 1 << 15;
/// Message control: table size - 1 (bits 0-10).
const MSIX_SIZE_MASK: u32 = 0x7FF;
/// The first BAR register; BAR `n` is at `0x10 + 4n`.
const PCI_BAR0: u16 = 0x10;
/// The BAR registers end here.
const PCI_BAR_END: u16 = 0x28;

/// The device memory around dom0's tables, as the platform reaches it.
pub trait DeviceMemory {
    /// Reads `size` (1, 2, 4 or 8) bytes at host-physical `addr`.
    fn read(&mut self, addr: u64, size: u32) -> u64;
    /// Writes the low `size` bytes of `value` at host-physical `addr`.
    fn write(&mut self, addr: u64, size: u32, value: u64);
}

/// One table entry: dom0's copy and what rxen put in the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    guest: MsiMessage,
    /// dom0's mask bit (set at reset).
    masked: bool,
    /// The host vector bound to this entry, kept until MSI-X is disabled.
    vector: Option<u8>,
}

/// A change of one entry, for the platform to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixChange {
    /// dom0 unmasked entry `entry` (or changed it while unmasked): bind a
    /// host vector if it has none and [`Msix::program`] the device's entry.
    Unmask {
        /// The entry.
        entry: u16,
        /// dom0's message for it.
        guest: MsiMessage,
    },
    /// dom0 masked entry `entry`: mask the device's ([`Msix::mask`]).
    Mask {
        /// The entry.
        entry: u16,
    },
}

/// A function's MSI-X capability and table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msix {
    /// Offset of the capability.
    pos: u16,
    /// Table BAR and offset; PBA BAR and offset.
    table_bir: u8,
    table_offset: u32,
    pba_bir: u8,
    pba_offset: u32,
    /// Where the table and the PBA are now (from the BARs).
    table: u64,
    pba: u64,
    entries: Vec<Entry>,
}

/// The address memory BAR `bir` of `sbdf` decodes now, if it is a memory BAR
/// with an address (below 4 GiB, or a 64-bit BAR anywhere).
fn bar_address(hw: &mut dyn ConfigSpace, sbdf: Sbdf, bir: u8) -> Option<u64> {
    if bir > 5 {
        return None;
    }
    let reg = PCI_BAR0.checked_add(u16::from(bir).checked_mul(4)?)?;
    let low = hw.read(sbdf, reg, 4);
    if low & 1 != 0 {
        return None; // I/O BAR
    }
    let high = if low & 0b110 == 0b100 {
        if bir == 5 {
            return None;
        }
        hw.read(sbdf, reg.checked_add(4)?, 4)
    } else {
        0
    };
    let address = u64::from(high) << 32 | u64::from(low & !0xF);
    (address != 0).then_some(address)
}

impl Msix {
    /// The MSI-X capability at `pos` of `sbdf`, if its table and PBA are in
    /// memory BARs rxen can reach.
    pub fn discover(hw: &mut dyn ConfigSpace, sbdf: Sbdf, pos: u16) -> Option<Self> {
        let control = hw.read(sbdf, pos.checked_add(2)?, 2);
        let table = hw.read(sbdf, pos.checked_add(4)?, 4);
        let pba = hw.read(sbdf, pos.checked_add(8)?, 4);
        let size = (control & MSIX_SIZE_MASK).checked_add(1)?;
        let mut msix = Self {
            pos,
            table_bir: (table & 7) as u8,
            table_offset: table & !7,
            pba_bir: (pba & 7) as u8,
            pba_offset: pba & !7,
            table: 0,
            pba: 0,
            entries: alloc::vec![
                Entry {
                    masked: true,
                    ..Entry::default()
                };
                size as usize
            ],
        };
        msix.locate(hw, sbdf).then_some(msix)
    }

    /// Finds the table and the PBA from the BARs; false if one is not
    /// reachable (then nothing is trapped: the addresses are 0).
    fn locate(&mut self, hw: &mut dyn ConfigSpace, sbdf: Sbdf) -> bool {
        let table = bar_address(hw, sbdf, self.table_bir)
            .and_then(|b| b.checked_add(u64::from(self.table_offset)));
        let pba = bar_address(hw, sbdf, self.pba_bir)
            .and_then(|b| b.checked_add(u64::from(self.pba_offset)));
        // Both where the platform reaches device memory.
        let end = hw.device_memory_end();
        let pba_end = pba.and_then(|p| p.checked_add(self.pba_bytes()));
        match (table, pba) {
            (Some(table), Some(pba))
                if self.table_end(table).is_some_and(|e| e <= end)
                    && pba_end.is_some_and(|e| e <= end) =>
            {
                self.table = table;
                self.pba = pba;
                true
            }
            _ => {
                self.table = 0;
                self.pba = 0;
                false
            }
        }
    }

    /// The PBA's size: a bit per entry, in whole quadwords.
    fn pba_bytes(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(64).saturating_mul(8)
    }

    fn table_end(&self, table: u64) -> Option<u64> {
        table.checked_add((self.entries.len() as u64).checked_mul(ENTRY_SIZE)?)
    }

    /// dom0 wrote `size` bytes at `reg` of the function: a BAR write moves
    /// the table (as Xen's `bar_write` updates the MSI-X regions). True if
    /// the table or the PBA is now somewhere else: the platform must then
    /// unmap whatever dom0 mapped on their pages ([`Msix::trapped_pages`]),
    /// or its accesses there would not be trapped.
    pub fn config_written(&mut self, hw: &mut dyn ConfigSpace, sbdf: Sbdf, reg: u16) -> bool {
        if !(PCI_BAR0..PCI_BAR_END).contains(&reg) {
            return false;
        }
        let before = (self.table, self.pba);
        self.locate(hw, sbdf);
        (self.table, self.pba) != before && self.table != 0
    }

    /// The pages holding the table, then those holding the PBA (at most 9
    /// and 2: 2048 entries of 16 bytes, 256 bytes of pending bits, either
    /// across a page boundary), none while they are not reachable.
    pub fn trapped_pages(&self) -> impl Iterator<Item = u64> {
        let ranges = (self.table != 0).then(|| self.page_ranges());
        ranges
            .into_iter()
            .flatten()
            .flat_map(|pages| pages.step_by(4096))
    }

    /// The first and last page of the table and of the PBA.
    fn page_ranges(&self) -> [core::ops::RangeInclusive<u64>; 2] {
        let last = |start: u64, bytes: u64| start.saturating_add(bytes).saturating_sub(1) & !0xFFF;
        let table_bytes = (self.entries.len() as u64).saturating_mul(ENTRY_SIZE);
        [
            self.table & !0xFFF..=last(self.table, table_bytes),
            self.pba & !0xFFF..=last(self.pba, self.pba_bytes()),
        ]
    }

    /// The control register's offset.
    pub fn control_reg(&self) -> u16 {
        self.pos.wrapping_add(2)
    }

    /// Whether host-physical `addr` is on a page holding the table or the
    /// PBA (the pages dom0's accesses to which are trapped).
    pub fn traps(&self, addr: u64) -> bool {
        if self.table == 0 {
            return false;
        }
        let page = addr & !0xFFF;
        self.page_ranges().iter().any(|pages| pages.contains(&page))
    }

    /// The table entry and field of `addr`, if it is in the table.
    fn entry_at(&self, addr: u64) -> Option<(usize, u64)> {
        let offset = addr.checked_sub(self.table)?;
        let index = usize::try_from(offset / ENTRY_SIZE).ok()?;
        (index < self.entries.len()).then_some((index, offset % ENTRY_SIZE))
    }

    /// dom0's `size`-byte read at `addr` on a trapped page (Xen's
    /// `msix_read`): its copy for the table, the device's elsewhere.
    pub fn read(&self, mem: &mut dyn DeviceMemory, addr: u64, size: u32) -> u64 {
        let Some((index, field)) = self.entry_at(addr) else {
            return mem.read(addr, size);
        };
        let Some(entry) = self.entries.get(index) else {
            return u64::MAX;
        };
        let address = entry.guest.address;
        let ctrl = u64::from(entry.masked);
        match (field, size) {
            (ENTRY_ADDRESS_LO, 4) => address & 0xFFFF_FFFF,
            (ENTRY_ADDRESS_LO, 8) => address,
            (ENTRY_ADDRESS_HI, 4) => address >> 32,
            (ENTRY_DATA, 4) => u64::from(entry.guest.data),
            (ENTRY_DATA, 8) => u64::from(entry.guest.data) | ctrl << 32,
            (ENTRY_CTRL, 4) => ctrl,
            // Unaligned or odd sizes: all ones, as Xen.
            _ => u64::MAX >> (64u32.saturating_sub(size.saturating_mul(8))),
        }
    }

    /// dom0's `size`-byte write of `value` at `addr` on a trapped page
    /// (Xen's `msix_write`): its copy for the table, the device's elsewhere.
    pub fn write(
        &mut self,
        mem: &mut dyn DeviceMemory,
        addr: u64,
        size: u32,
        value: u64,
    ) -> Option<MsixChange> {
        let Some((index, field)) = self.entry_at(addr) else {
            mem.write(addr, size, value);
            return None;
        };
        let entry = self.entries.get_mut(index)?;
        let before = *entry;
        let low = value & 0xFFFF_FFFF;
        match (field, size) {
            (ENTRY_ADDRESS_LO, 4) => {
                entry.guest.address = entry.guest.address & !0xFFFF_FFFF | low;
            }
            (ENTRY_ADDRESS_LO, 8) => entry.guest.address = value,
            (ENTRY_ADDRESS_HI, 4) => {
                entry.guest.address = entry.guest.address & 0xFFFF_FFFF | low << 32;
            }
            (ENTRY_DATA, 4) => entry.guest.data = (value & 0xFFFF) as u16,
            (ENTRY_DATA, 8) => {
                entry.guest.data = (value & 0xFFFF) as u16;
                entry.masked = (value >> 32) as u32 & CTRL_MASKED != 0;
            }
            (ENTRY_CTRL, 4) => entry.masked = low as u32 & CTRL_MASKED != 0,
            _ => return None,
        }
        let entry_index = u16::try_from(index).ok()?;
        match (before.masked, entry.masked) {
            (_, false) if before != *entry => Some(MsixChange::Unmask {
                entry: entry_index,
                guest: entry.guest,
            }),
            (false, true) => Some(MsixChange::Mask { entry: entry_index }),
            _ => None,
        }
    }

    /// Programs entry `entry` of the device with rxen's `message` on host
    /// vector `message.vector()` and unmasks it: masked while it changes.
    pub fn program(&mut self, mem: &mut dyn DeviceMemory, entry: u16, message: MsiMessage) {
        let Some(e) = self.entries.get_mut(usize::from(entry)) else {
            return;
        };
        e.vector = Some(message.vector());
        let Some(base) =
            (u64::from(entry).checked_mul(ENTRY_SIZE)).and_then(|o| self.table.checked_add(o))
        else {
            return;
        };
        let at = |field: u64| base.wrapping_add(field);
        mem.write(at(ENTRY_CTRL), 4, u64::from(CTRL_MASKED));
        mem.write(at(ENTRY_ADDRESS_LO), 4, message.address & 0xFFFF_FFFF);
        mem.write(at(ENTRY_ADDRESS_HI), 4, message.address >> 32);
        mem.write(at(ENTRY_DATA), 4, u64::from(message.data));
        mem.write(at(ENTRY_CTRL), 4, 0);
    }

    /// Masks entry `entry` of the device.
    pub fn mask(&mut self, mem: &mut dyn DeviceMemory, entry: u16) {
        let base = u64::from(entry)
            .checked_mul(ENTRY_SIZE)
            .and_then(|o| self.table.checked_add(o));
        if let (Some(base), true) = (base, usize::from(entry) < self.entries.len()) {
            mem.write(base.wrapping_add(ENTRY_CTRL), 4, u64::from(CTRL_MASKED));
        }
    }

    /// The host vector of entry `entry`, if one is bound.
    pub fn vector(&self, entry: u16) -> Option<u8> {
        self.entries.get(usize::from(entry))?.vector
    }

    /// Whether any entry has a host vector bound.
    pub fn has_vectors(&self) -> bool {
        self.entries.iter().any(|e| e.vector.is_some())
    }

    /// dom0's message of the entry bound to host `vector`.
    pub fn binding(&self, vector: u8) -> Option<MsiMessage> {
        self.entries
            .iter()
            .find(|e| e.vector == Some(vector))
            .map(|e| e.guest)
    }

    /// MSI-X was disabled: every device entry masked, the host vectors
    /// handed back (for the platform to free).
    pub fn release(&mut self, mem: &mut dyn DeviceMemory) -> Vec<u8> {
        let mut vectors = Vec::new();
        for i in 0..self.entries.len() {
            let Some(vector) = self.entries.get_mut(i).and_then(|e| e.vector.take()) else {
                continue;
            };
            vectors.push(vector);
            if let Ok(i) = u16::try_from(i) {
                self.mask(mem, i);
            }
        }
        vectors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpci::{ConfigAccess, MsiEvent, Vpci};
    use alloc::collections::BTreeMap;

    /// One function's configuration space and the device memory, in memory.
    struct Fake {
        config: [u8; 256],
        memory: BTreeMap<u64, u8>,
        memory_writes: usize,
        /// What the platform reaches (0: the default, 4 GiB).
        device_end: u64,
    }

    const DEV: Sbdf = Sbdf {
        seg: 0,
        bus: 0,
        dev: 3,
        func: 0,
    };
    const BAR1: u64 = 0xFEBD_1000;

    impl ConfigSpace for Fake {
        fn read(&mut self, sbdf: Sbdf, reg: u16, size: u8) -> u32 {
            if sbdf != DEV {
                return u32::MAX;
            }
            (0..size as usize).fold(0, |v, i| {
                v | u32::from(self.config[(reg as usize + i) & 0xFF]) << (8 * i)
            })
        }
        fn write(&mut self, _: Sbdf, reg: u16, size: u8, value: u32) {
            for i in 0..size as usize {
                self.config[(reg as usize + i) & 0xFF] = (value >> (8 * i)) as u8;
            }
        }
        fn device_memory_end(&self) -> u64 {
            match self.device_end {
                0 => 1 << 32,
                end => end,
            }
        }
    }

    impl DeviceMemory for Fake {
        fn read(&mut self, addr: u64, size: u32) -> u64 {
            (0..u64::from(size)).fold(0, |v, i| {
                v | u64::from(*self.memory.get(&(addr + i)).unwrap_or(&0)) << (8 * i)
            })
        }
        fn write(&mut self, addr: u64, size: u32, value: u64) {
            self.memory_writes += 1;
            for i in 0..u64::from(size) {
                self.memory.insert(addr + i, (value >> (8 * i)) as u8);
            }
        }
    }

    /// A virtio-pci-like function: MSI-X at 0x98 with 3 entries, table at
    /// offset 0 of BAR 1 (32-bit memory), PBA at 0x800 of it.
    fn virtio() -> Fake {
        let mut config = [0u8; 256];
        config[0..4].copy_from_slice(&[0xF4, 0x1A, 0x42, 0x10]);
        config[6] = 0x10;
        config[0x14..0x18].copy_from_slice(&(BAR1 as u32).to_le_bytes());
        config[0x34] = 0x98;
        config[0x98..0xA4].copy_from_slice(&[0x11, 0, 2, 0, 1, 0, 0, 0, 0x01, 0x08, 0, 0]);
        let mut fake = Fake {
            config,
            memory: BTreeMap::new(),
            memory_writes: 0,
            device_end: 0,
        };
        // The device's reset state: every entry masked.
        for i in 0..3 {
            DeviceMemory::write(&mut fake, BAR1 + 16 * i + 12, 4, 1);
        }
        fake.memory_writes = 0;
        fake
    }

    fn config(reg: u16, size: u8) -> ConfigAccess {
        ConfigAccess {
            sbdf: DEV,
            reg,
            size,
        }
    }

    /// Linux's msix_capability_init and an interrupt's life: dom0's entry is
    /// a copy, the device holds rxen's, masked until dom0 unmasks.
    #[test]
    fn dom0s_entries_stay_in_its_copy() {
        let mut hw = virtio();
        let mut vpci = Vpci::new();
        // The capability is in the list (no longer hidden).
        assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0x98);
        assert_eq!(vpci.msix_at(BAR1 + 0x10), Some(DEV));
        assert_eq!(vpci.msix_at(BAR1 + 0xFFF), Some(DEV), "the PBA's page too");
        assert_eq!(vpci.msix_at(BAR1 + 0x1000), None);
        // Enable with the function masked (the device's own register).
        assert_eq!(vpci.write(&mut hw, config(0x9A, 2), 0xC002), None);
        assert_eq!(hw.config[0x9B], 0xC0);
        let mut probe = virtio();
        let msix = vpci.msix_mut(DEV).expect("MSI-X");
        // dom0 writes entry 1 (address, data), masked: nothing for rxen.
        assert_eq!(msix.write(&mut probe, BAR1 + 0x10, 4, 0xFEE0_1000), None);
        assert_eq!(msix.write(&mut probe, BAR1 + 0x14, 4, 0), None);
        assert_eq!(msix.write(&mut probe, BAR1 + 0x18, 4, 0x41), None);
        assert_eq!(probe.memory_writes, 0, "nothing reached the device");
        assert_eq!(msix.read(&mut probe, BAR1 + 0x10, 4), 0xFEE0_1000);
        assert_eq!(msix.read(&mut probe, BAR1 + 0x18, 4), 0x41);
        assert_eq!(msix.read(&mut probe, BAR1 + 0x1C, 4), 1, "masked");
        // Unmask: rxen binds.
        let guest = MsiMessage {
            address: 0xFEE0_1000,
            data: 0x41,
        };
        assert_eq!(
            msix.write(&mut probe, BAR1 + 0x1C, 4, 0),
            Some(MsixChange::Unmask { entry: 1, guest })
        );
        msix.program(&mut probe, 1, MsiMessage::fixed(0, 0x33));
        assert_eq!(DeviceMemory::read(&mut probe, BAR1 + 0x10, 4), 0xFEE0_0000);
        assert_eq!(DeviceMemory::read(&mut probe, BAR1 + 0x18, 4), 0x33);
        assert_eq!(
            DeviceMemory::read(&mut probe, BAR1 + 0x1C, 4),
            0,
            "unmasked"
        );
        assert_eq!(msix.vector(1), Some(0x33));
        assert_eq!(
            msix.read(&mut probe, BAR1 + 0x18, 4),
            0x41,
            "dom0 sees its own"
        );
        assert_eq!(vpci.binding(0x33), Some((DEV, guest)));
        let msix = vpci.msix_mut(DEV).expect("MSI-X");
        // Linux's affinity change: mask, new message, unmask.
        assert_eq!(
            msix.write(&mut probe, BAR1 + 0x1C, 4, 1),
            Some(MsixChange::Mask { entry: 1 })
        );
        msix.mask(&mut probe, 1);
        assert_eq!(DeviceMemory::read(&mut probe, BAR1 + 0x1C, 4), 1);
        assert_eq!(msix.write(&mut probe, BAR1 + 0x10, 8, 0xFEE0_2000), None);
        let moved = MsiMessage {
            address: 0xFEE0_2000,
            data: 0x41,
        };
        assert_eq!(
            msix.write(&mut probe, BAR1 + 0x18, 8, 0x51),
            Some(MsixChange::Unmask {
                entry: 1,
                guest: MsiMessage {
                    data: 0x51,
                    ..moved
                }
            })
        );
        // A change while unmasked is an Unmask again (the host vector stays); writing
        // what is there already is nothing.
        assert_eq!(msix.write(&mut probe, BAR1 + 0x14, 4, 0), None);
        assert_eq!(
            msix.write(&mut probe, BAR1 + 0x18, 4, 0x61),
            Some(MsixChange::Unmask {
                entry: 1,
                guest: MsiMessage {
                    data: 0x61,
                    ..moved
                }
            })
        );
        assert_eq!(msix.vector(1), Some(0x33));
        // Odd accesses to the table: all ones, nothing stored.
        assert_eq!(msix.read(&mut probe, BAR1 + 0x10, 2), 0xFFFF);
        assert_eq!(msix.write(&mut probe, BAR1 + 0x11, 1, 0xAA), None);
        assert_eq!(msix.read(&mut probe, BAR1 + 0x10, 4), 0xFEE0_2000);
        // The PBA and the rest of the page are the device's.
        DeviceMemory::write(&mut probe, BAR1 + 0x800, 8, 0b10);
        assert_eq!(msix.read(&mut probe, BAR1 + 0x800, 8), 0b10);
        assert_eq!(msix.write(&mut probe, BAR1 + 0x900, 4, 7), None);
        assert_eq!(DeviceMemory::read(&mut probe, BAR1 + 0x900, 4), 7);
        // Past the last entry is not the table.
        assert_eq!(msix.write(&mut probe, BAR1 + 0x30, 4, 9), None);
        assert_eq!(DeviceMemory::read(&mut probe, BAR1 + 0x30, 4), 9);
        // Disabling MSI-X hands the vectors back, entries masked.
        assert_eq!(
            vpci.write(&mut hw, config(0x9A, 2), 0x0002),
            Some(MsiEvent::MsixOff)
        );
        let msix = vpci.msix_mut(DEV).expect("MSI-X");
        assert_eq!(msix.release(&mut probe), [0x33]);
        assert_eq!(DeviceMemory::read(&mut probe, BAR1 + 0x1C, 4), 1);
        assert_eq!(vpci.binding(0x33), None);
        // With nothing bound, turning it off asks nothing.
        assert_eq!(vpci.write(&mut hw, config(0x9A, 2), 0x0002), None);
    }

    /// A BAR moved by dom0 moves the trapped pages; tables rxen cannot
    /// reach (I/O BAR, above 4 GiB, unassigned) leave MSI-X hidden.
    #[test]
    fn tables_follow_their_bar_or_stay_hidden() {
        let mut hw = virtio();
        let mut vpci = Vpci::new();
        assert_eq!(vpci.msix_at(BAR1), None, "not looked at yet");
        vpci.read(&mut hw, config(0, 4));
        assert_eq!(vpci.msix_at(BAR1), Some(DEV));
        let pages: Vec<u64> = vpci.msix_mut(DEV).expect("MSI-X").trapped_pages().collect();
        assert!(pages.iter().all(|p| *p == BAR1), "{pages:x?}");
        // A move is reported, with the new pages to unmap.
        assert_eq!(
            vpci.write(&mut hw, config(0x14, 4), 0xFE00_0000),
            Some(MsiEvent::MsixMoved)
        );
        assert_eq!(vpci.msix_at(BAR1), None);
        assert_eq!(vpci.msix_at(0xFE00_0010), Some(DEV));
        let pages: Vec<u64> = vpci.msix_mut(DEV).expect("MSI-X").trapped_pages().collect();
        assert!(pages.contains(&0xFE00_0000) && pages.iter().all(|p| *p == 0xFE00_0000));
        // The same value again, or another register, moves nothing.
        assert_eq!(vpci.write(&mut hw, config(0x14, 4), 0xFE00_0000), None);
        assert_eq!(vpci.write(&mut hw, config(0x10, 4), 0xC041), None);
        // Sizing (all ones) leaves nothing trapped below 4 GiB's end.
        vpci.write(&mut hw, config(0x14, 4), 0xFFFF_FFFF);
        assert_eq!(vpci.msix_at(0xFE00_0010), None);
        assert_eq!(
            vpci.msix_mut(DEV).expect("MSI-X").trapped_pages().count(),
            0
        );
        for (bar, value) in [
            (0x14u16, 0xC001u32), // I/O BAR
            (0x14, 0),            // unassigned
        ] {
            let mut hw = virtio();
            hw.config[bar as usize..bar as usize + 4].copy_from_slice(&value.to_le_bytes());
            let mut vpci = Vpci::new();
            assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0, "hidden: {value:#x}");
        }
        // A 64-bit BAR above 4 GiB: hidden where the platform reaches only
        // the low 4 GiB, trapped where it maps device memory above.
        let mut hw = virtio();
        hw.config[0x14..0x18].copy_from_slice(&0xFEBD_1004u32.to_le_bytes());
        hw.config[0x18..0x1C].copy_from_slice(&1u32.to_le_bytes());
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0, "hidden above 4 GiB");
        hw.device_end = 1 << 40;
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0x98, "reachable");
        assert_eq!(vpci.msix_at(0x1_FEBD_1000), Some(DEV));
        // Moved to the last page the platform reaches: the PBA (offset 0x800)
        // still fits; one page up, neither is reachable.
        assert_eq!(
            vpci.write(&mut hw, config(0x18, 4), 0xFF),
            Some(MsiEvent::MsixMoved)
        );
        assert_eq!(vpci.msix_at(0xFF_FEBD_1800), Some(DEV));
        vpci.write(&mut hw, config(0x14, 4), 0xFFFF_F004);
        assert_eq!(vpci.msix_at(0xFF_FFFF_F000), Some(DEV));
        vpci.write(&mut hw, config(0x18, 4), 0x100);
        assert_eq!(vpci.msix_at(0x100_FFFF_F000), None);
        assert_eq!(
            vpci.msix_mut(DEV).expect("MSI-X").trapped_pages().count(),
            0
        );
        // The same BAR below 4 GiB is fine.
        hw.config[0x18..0x1C].copy_from_slice(&0u32.to_le_bytes());
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0x98);
        // A table BIR past the last BAR.
        let mut hw = virtio();
        hw.config[0x9C] = 7;
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0);
    }

    /// The largest table (2048 entries) at the top of 4 GiB fits; one
    /// running past it does not.
    #[test]
    fn a_table_must_end_below_4_gib() {
        let mut hw = virtio();
        hw.config[0x9A..0x9C].copy_from_slice(&0x07FFu16.to_le_bytes());
        hw.config[0x14..0x18].copy_from_slice(&0xFFFF_8000u32.to_le_bytes());
        let mut vpci = Vpci::new();
        assert_eq!(
            vpci.read(&mut hw, config(0x34, 1)),
            0x98,
            "2048 × 16 bytes end at 4 GiB"
        );
        // Its 8 pages are all trapped, and no page past 4 GiB (PBA at offset
        // 0x800 of BAR 1, on the table's first page).
        let pages: Vec<u64> = vpci.msix_mut(DEV).expect("MSI-X").trapped_pages().collect();
        let want: Vec<u64> = (0..8).map(|i| 0xFFFF_8000 + i * 4096).collect();
        assert!(want.iter().all(|p| pages.contains(p)), "{pages:x?}");
        assert!(pages.iter().all(|p| want.contains(p)), "{pages:x?}");
        hw.config[0x9C] = 0x11; // offset 0x10 of BAR 1: past the end
        let mut vpci = Vpci::new();
        assert_eq!(vpci.read(&mut hw, config(0x34, 1)), 0);
    }
}
