//! The emulated IO-APICs of a PVH dom0 (Xen's `arch/x86/hvm/vioapic.c`, as
//! Xen 4.17 sets it up for the hardware domain).
//!
//! There is one [`VIoApic`] per host IO-APIC, at the host's base address,
//! with the host's id, GSI base and pin count, and version `0x11` (so no
//! directed-EOI register: Linux ends a level interrupt by the local APIC's
//! EOI broadcast, or by switching the pin to edge and back, its
//! `eoi_ioapic_pin`). Registers: IOREGSEL at offset `0x00`, IOWIN at `0x10`
//! of a `0x100`-byte window; behind IOWIN the ID (`0x00`), version (`0x01`),
//! arbitration (`0x02`) registers and the 64-bit redirection entries from
//! `0x10`, two 32-bit halves each.
//!
//! Pure state: nothing here touches hardware. What the platform must do is
//! returned as [`Action`]s: bind a GSI when dom0 unmasks its pin, end the
//! physical interrupt (unmask the physical pin) when dom0 ends a level
//! interrupt, deliver a vector to dom0's local APICs when an unmasked pin
//! fires. Guest input never panics here: writes to registers that do not
//! exist are dropped and reported as [`Action::Ignored`], so the platform
//! can log them (rate-limited).
//!
//! Not wired yet: the hypervisor does not route dom0's accesses to the
//! IO-APIC pages here, nor does its vLAPIC (no TMR, no EOI broadcast today)
//! call [`VIoApics::eoi`]; a physical IO-APIC driver that applies the
//! actions is a later step of issue 10.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

use crate::mm::Gpa;
use crate::vlapic::DeliveryMode;

/// The version the emulated IO-APICs report (Xen's `VIOAPIC_VERSION_ID`):
/// an 82093AA-like IO-APIC without the EOI register.
pub const VIOAPIC_VERSION_ID: u32 = 0x11;
/// Bytes of MMIO each IO-APIC decodes (Xen's `VIOAPIC_MEM_LENGTH`).
pub const VIOAPIC_MEM_LENGTH: u64 = 0x100;
/// Offset of IOREGSEL in the window (`VIOAPIC_REG_SELECT`).
pub const VIOAPIC_REG_SELECT: u64 = 0x00;
/// Offset of IOWIN in the window (`VIOAPIC_REG_WINDOW`).
pub const VIOAPIC_REG_WINDOW: u64 = 0x10;
/// Offset of the EOI register of version 0x20 IO-APICs
/// (`VIOAPIC_REG_EOI`): not decoded by a version 0x11 one.
pub const VIOAPIC_REG_EOI: u64 = 0x40;
/// Indirect register: IO-APIC id.
pub const VIOAPIC_REG_APIC_ID: u32 = 0x00;
/// Indirect register: version and number of entries.
pub const VIOAPIC_REG_VERSION: u32 = 0x01;
/// Indirect register: arbitration id.
pub const VIOAPIC_REG_ARB_ID: u32 = 0x02;
/// Indirect register of the low half of redirection entry 0.
pub const VIOAPIC_REG_RTE0: u32 = 0x10;
/// Most pins an IO-APIC can have (the version register's 8-bit
/// "maximum redirection entry" field plus one).
pub const MAX_PINS: u32 = 256;

/// Redirection entry bits (the layout of Xen's `union vioapic_redir_entry`).
pub mod rte {
    /// Vector, bits 0-7.
    pub const VECTOR: u64 = 0xFF;
    /// Delivery mode, bits 8-10.
    pub const DELIVERY_MODE_SHIFT: u32 = 8;
    /// Logical destination mode.
    pub const DEST_LOGICAL: u64 = 1 << 11;
    /// Delivery status (read-only; always reads 0 here, as Xen's).
    pub const DELIVERY_STATUS: u64 = 1 << 12;
    /// Active-low polarity.
    pub const POLARITY_LOW: u64 = 1 << 13;
    /// Remote IRR (read-only): a level interrupt was accepted, no EOI yet.
    pub const REMOTE_IRR: u64 = 1 << 14;
    /// Level-triggered.
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    /// Masked.
    pub const MASK: u64 = 1 << 16;
    /// Destination, bits 56-63.
    pub const DEST_SHIFT: u32 = 56;
}

/// Trigger mode of a pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered (`VIOAPIC_EDGE_TRIG`).
    Edge,
    /// Level-triggered (`VIOAPIC_LEVEL_TRIG`).
    Level,
}

/// Polarity of a pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// Why a guest access or an event had no effect (for a log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// IOWIN accessed while IOREGSEL names no register of this IO-APIC.
    NoSuchRegister {
        /// The IO-APIC's id.
        id: u8,
        /// The value of IOREGSEL.
        ioregsel: u32,
    },
    /// A pin fired with a delivery mode Xen does not deliver (SMI, INIT,
    /// ExtINT, reserved).
    UnsupportedDelivery {
        /// The pin's GSI.
        gsi: u32,
        /// The RTE's delivery mode field (0-7).
        mode: u8,
    },
    /// A GSI no emulated IO-APIC has.
    NoSuchGsi(u32),
}

/// Something the platform must do for an emulated IO-APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// dom0 unmasked the pin of `gsi`: route the physical GSI (same number)
    /// to dom0 with this trigger mode and polarity (Xen's
    /// `vioapic_hwdom_map_gsi`). Comes on every unmask, as in Xen: a GSI
    /// already bound stays bound (Xen's `-EEXIST` from `mp_register_gsi`
    /// counts as success).
    Bind {
        /// The GSI.
        gsi: u32,
        /// Trigger mode dom0 programmed.
        trigger: Trigger,
        /// Polarity dom0 programmed.
        polarity: Polarity,
    },
    /// dom0 ended the level interrupt of `gsi` (EOI broadcast or the
    /// level-to-edge switch): end the physical interrupt, i.e. unmask the
    /// physical pin kept masked since it fired (Xen's `hvm_dpci_eoi`).
    /// Only for GSIs bound level-triggered: the platform ends an edge
    /// GSI's physical interrupt when it fires.
    EoiPhysical {
        /// The GSI.
        gsi: u32,
    },
    /// Deliver `vector` to the local APICs of dom0 that `dest` and
    /// `logical` select (Xen's `vioapic_deliver`; the platform matches the
    /// destination, as `vlapic_match_dest` / `vlapic_lowest_prio` do).
    Deliver {
        /// The GSI that fired.
        gsi: u32,
        /// The vector.
        vector: u8,
        /// Destination field (RTE bits 56-63).
        dest: u8,
        /// Logical (true) or physical destination mode.
        logical: bool,
        /// Fixed, lowest priority or NMI.
        mode: DeliveryMode,
        /// Level-triggered: the target's TMR bit is set, its EOI comes
        /// back through [`VIoApics::eoi`].
        level: bool,
    },
    /// Nothing was done; worth a (rate-limited) log line.
    Ignored(Ignored),
}

/// The actions of one access: at most two (an unmask binds and may
/// deliver; a level-to-edge switch may also end the physical interrupt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    slots: [Option<Action>; 2],
}

impl Actions {
    fn push(&mut self, action: Action) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some(action);
        }
    }

    /// The actions, in the order the platform must apply them.
    pub fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        self.slots.iter().flatten().copied()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

/// A host IO-APIC as the platform's driver found it (from the MADT and the
/// IO-APIC's version register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostIoApic {
    /// IO-APIC id (MADT).
    pub id: u8,
    /// Base address of its registers (MADT), also dom0's (1:1).
    pub base: Gpa,
    /// First GSI (MADT).
    pub gsi_base: u32,
    /// Number of pins (version register's maximum entry plus one).
    pub pins: u32,
}

/// Why a set of emulated IO-APICs cannot be built from the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VIoApicError {
    /// No pins, or more than [`MAX_PINS`].
    BadPinCount(HostIoApic),
    /// The GSI range or the register window overflows.
    OutOfRange(HostIoApic),
    /// Two IO-APICs share GSIs or register windows.
    Overlap(HostIoApic, HostIoApic),
}

/// One pin: its redirection entry and the state of its input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pin {
    /// The redirection entry, every bit dom0 wrote (as Xen keeps them).
    rte: u64,
    /// The line is asserted (level pins: Xen's `gsi_assert_count`).
    asserted: bool,
    /// The trigger the GSI was bound with, once dom0 unmasked it.
    bound: Option<Trigger>,
}

impl Pin {
    const RESET: Pin = Pin {
        rte: rte::MASK,
        asserted: false,
        bound: None,
    };

    fn masked(&self) -> bool {
        self.rte & rte::MASK != 0
    }

    fn trigger(&self) -> Trigger {
        if self.rte & rte::TRIGGER_LEVEL != 0 {
            Trigger::Level
        } else {
            Trigger::Edge
        }
    }

    fn polarity(&self) -> Polarity {
        if self.rte & rte::POLARITY_LOW != 0 {
            Polarity::Low
        } else {
            Polarity::High
        }
    }

    fn remote_irr(&self) -> bool {
        self.rte & rte::REMOTE_IRR != 0
    }

    /// What firing this pin delivers (Xen's `vioapic_deliver`).
    fn deliver(&self, gsi: u32) -> Action {
        let mode_bits = (self.rte >> rte::DELIVERY_MODE_SHIFT) & 7;
        let mode = match mode_bits {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            4 => DeliveryMode::Nmi,
            _ => {
                return Action::Ignored(Ignored::UnsupportedDelivery {
                    gsi,
                    mode: mode_bits as u8,
                })
            }
        };
        Action::Deliver {
            gsi,
            vector: (self.rte & rte::VECTOR) as u8,
            dest: (self.rte >> rte::DEST_SHIFT) as u8,
            logical: self.rte & rte::DEST_LOGICAL != 0,
            mode,
            level: self.trigger() == Trigger::Level,
        }
    }
}

/// One emulated IO-APIC (Xen's `struct hvm_vioapic`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VIoApic {
    base: Gpa,
    id: u8,
    gsi_base: u32,
    ioregsel: u32,
    pins: Vec<Pin>,
}

impl VIoApic {
    /// The emulated twin of the host IO-APIC `host`: every pin masked (Xen's
    /// `vioapic_reset`).
    pub fn new(host: HostIoApic) -> Result<Self, VIoApicError> {
        if host.pins == 0 || host.pins > MAX_PINS {
            return Err(VIoApicError::BadPinCount(host));
        }
        if host.gsi_base.checked_add(host.pins).is_none()
            || host.base.checked_add(VIOAPIC_MEM_LENGTH).is_none()
        {
            return Err(VIoApicError::OutOfRange(host));
        }
        Ok(Self {
            base: host.base,
            id: host.id,
            gsi_base: host.gsi_base,
            ioregsel: 0,
            pins: alloc::vec![Pin::RESET; host.pins as usize],
        })
    }

    /// Base address of the register window.
    pub fn base(&self) -> Gpa {
        self.base
    }

    /// The IO-APIC's id (as dom0 last wrote it: Xen keeps 4 bits).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// First GSI.
    pub fn gsi_base(&self) -> u32 {
        self.gsi_base
    }

    /// Number of pins.
    pub fn nr_pins(&self) -> u32 {
        // At most MAX_PINS (checked in new).
        self.pins.len() as u32
    }

    /// Whether `addr` is in the register window.
    pub fn contains(&self, addr: Gpa) -> bool {
        addr >= self.base && addr.0.wrapping_sub(self.base.0) < VIOAPIC_MEM_LENGTH
    }

    /// The pin of `gsi`, if this IO-APIC has it.
    fn pin_of(&self, gsi: u32) -> Option<usize> {
        let pin = gsi.checked_sub(self.gsi_base)?;
        (pin < self.nr_pins()).then_some(pin as usize)
    }

    /// The GSI of pin `pin` (pin < nr_pins, so no overflow: checked in new).
    fn gsi(&self, pin: usize) -> u32 {
        self.gsi_base.wrapping_add(pin as u32)
    }

    /// The redirection entry of `gsi`, if this IO-APIC has it.
    pub fn rte(&self, gsi: u32) -> Option<u64> {
        self.pins.get(self.pin_of(gsi)?).map(|p| p.rte)
    }

    /// A 32-bit read of the window at `addr` (Xen's `vioapic_read`: the
    /// access size is ignored, offsets other than IOREGSEL and IOWIN read 0).
    pub fn read(&self, addr: Gpa) -> u32 {
        match addr.0 & 0xFF {
            VIOAPIC_REG_SELECT => self.ioregsel,
            VIOAPIC_REG_WINDOW => self.read_indirect(),
            _ => 0,
        }
    }

    /// The register IOREGSEL selects (Xen's `vioapic_read_indirect`).
    fn read_indirect(&self) -> u32 {
        match self.ioregsel {
            VIOAPIC_REG_VERSION => {
                // nr_pins is 1..=256, so the maximum entry fits 8 bits.
                let max_entry = self.nr_pins().saturating_sub(1) & 0xFF;
                VIOAPIC_VERSION_ID | max_entry << 16
            }
            // Xen reads both through the 4-bit arbitration field.
            VIOAPIC_REG_APIC_ID | VIOAPIC_REG_ARB_ID => (u32::from(self.id) & 0xF) << 24,
            sel => match self.rte_index(sel) {
                Some((pin, high)) => {
                    let bits = self.pins.get(pin).map_or(0, |p| p.rte);
                    if high {
                        (bits >> 32) as u32
                    } else {
                        bits as u32
                    }
                }
                None => 0,
            },
        }
    }

    /// The pin and half an IOREGSEL value names, if it names an entry.
    fn rte_index(&self, ioregsel: u32) -> Option<(usize, bool)> {
        let pin = ioregsel.checked_sub(VIOAPIC_REG_RTE0)? / 2;
        (pin < self.nr_pins()).then_some((pin as usize, ioregsel & 1 != 0))
    }

    /// A write of `value` to the window at `addr` (Xen's `vioapic_write`).
    pub fn write(&mut self, addr: Gpa, value: u32) -> Actions {
        let mut out = Actions::default();
        match addr.0 & 0xFF {
            VIOAPIC_REG_SELECT => self.ioregsel = value,
            VIOAPIC_REG_WINDOW => self.write_indirect(value, &mut out),
            // Includes VIOAPIC_REG_EOI: absent in version 0x11.
            _ => {}
        }
        out
    }

    /// Xen's `vioapic_write_indirect`.
    fn write_indirect(&mut self, value: u32, out: &mut Actions) {
        match self.ioregsel {
            VIOAPIC_REG_VERSION | VIOAPIC_REG_ARB_ID => {}
            VIOAPIC_REG_APIC_ID => self.id = ((value >> 24) & 0xF) as u8,
            sel => match self.rte_index(sel) {
                Some((pin, high)) => self.write_rte(pin, high, value, out),
                None => out.push(Action::Ignored(Ignored::NoSuchRegister {
                    id: self.id,
                    ioregsel: sel,
                })),
            },
        }
    }

    /// Xen's `vioapic_write_redirent` for the hardware domain.
    fn write_rte(&mut self, pin: usize, high: bool, value: u32, out: &mut Actions) {
        let gsi = self.gsi(pin);
        let Some(p) = self.pins.get_mut(pin) else {
            return;
        };
        let old = *p;
        if high {
            // Only the destination lives there; every bit is kept.
            p.rte = (p.rte & 0xFFFF_FFFF) | u64::from(value) << 32;
        } else {
            // Delivery status reads 0 and remote IRR is dom0's to read only.
            let low = u64::from(value) & !(rte::DELIVERY_STATUS | rte::REMOTE_IRR);
            p.rte = (p.rte & !0xFFFF_FFFF) | low | (old.rte & rte::REMOTE_IRR);
        }
        let unmasked = !high && old.masked() && !p.masked();
        match p.trigger() {
            Trigger::Edge => {
                // A level pin switched to edge with an interrupt in service:
                // Linux's EOI of a version 0x11 IO-APIC (eoi_ioapic_pin).
                // Real IO-APICs clear remote IRR; Xen also ends the
                // physical interrupt.
                p.rte &= !rte::REMOTE_IRR;
                if old.remote_irr() && p.bound.is_some() {
                    p.asserted = false;
                    if p.bound == Some(Trigger::Level) {
                        out.push(Action::EoiPhysical { gsi });
                    }
                }
            }
            Trigger::Level => {}
        }
        if unmasked {
            // Bound before a possible delivery, as Xen binds after its
            // lock drops but before the physical line can fire.
            p.bound = Some(p.trigger());
            out.push(Action::Bind {
                gsi,
                trigger: p.trigger(),
                polarity: p.polarity(),
            });
        }
        if p.trigger() == Trigger::Level && !p.masked() && !p.remote_irr() && p.asserted {
            p.rte |= rte::REMOTE_IRR;
            out.push(p.deliver(gsi));
        }
    }

    /// The line of `gsi` goes active (Xen's `hvm_gsi_assert` and
    /// `vioapic_irq_positive_edge`): an edge pin delivers on every
    /// assertion, a level pin once until dom0's EOI. Masked pins deliver
    /// nothing; a level line stays asserted and delivers on unmask.
    fn assert_pin(&mut self, pin: usize) -> Option<Action> {
        let gsi = self.gsi(pin);
        let p = self.pins.get_mut(pin)?;
        match p.trigger() {
            Trigger::Edge => (!p.masked()).then(|| p.deliver(gsi)),
            Trigger::Level => {
                if p.asserted {
                    return None;
                }
                p.asserted = true;
                if p.masked() || p.remote_irr() {
                    return None;
                }
                p.rte |= rte::REMOTE_IRR;
                Some(p.deliver(gsi))
            }
        }
    }

    /// End of interrupt for `vector` (Xen's `vioapic_update_EOI`, for one
    /// IO-APIC).
    fn eoi(&mut self, vector: u8, out: &mut dyn FnMut(Action)) {
        let gsi_base = self.gsi_base;
        for (pin, p) in self.pins.iter_mut().enumerate() {
            if (p.rte & rte::VECTOR) as u8 != vector {
                continue;
            }
            let gsi = gsi_base.wrapping_add(pin as u32);
            p.rte &= !rte::REMOTE_IRR;
            if p.bound.is_some() {
                // hvm_dpci_eoi: the virtual line drops; the physical pin
                // fires again if the device still asserts it.
                p.asserted = false;
                if p.bound == Some(Trigger::Level) {
                    out(Action::EoiPhysical { gsi });
                }
            }
            if p.trigger() == Trigger::Level && !p.masked() && p.asserted {
                p.rte |= rte::REMOTE_IRR;
                out(p.deliver(gsi));
            }
        }
    }
}

/// The emulated IO-APICs of a domain (Xen's `d->arch.hvm.vioapic[]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VIoApics {
    apics: Vec<VIoApic>,
}

impl VIoApics {
    /// One emulated IO-APIC per host IO-APIC (Xen's `vioapic_init` for the
    /// hardware domain).
    pub fn for_hardware_domain(host: &[HostIoApic]) -> Result<Self, VIoApicError> {
        let mut apics: Vec<VIoApic> = Vec::with_capacity(host.len());
        for (i, h) in host.iter().enumerate() {
            let new = VIoApic::new(*h)?;
            for other in host.iter().take(i) {
                let gsis = |a: &HostIoApic| (a.gsi_base, a.gsi_base.wrapping_add(a.pins));
                let window = |a: &HostIoApic| (a.base.0, a.base.0.wrapping_add(VIOAPIC_MEM_LENGTH));
                let overlaps = |(s1, e1): (u64, u64), (s2, e2): (u64, u64)| s1 < e2 && s2 < e1;
                let (g1, g2) = (gsis(h), gsis(other));
                if overlaps(
                    (u64::from(g1.0), u64::from(g1.1)),
                    (u64::from(g2.0), u64::from(g2.1)),
                ) || overlaps(window(h), window(other))
                {
                    return Err(VIoApicError::Overlap(*other, *h));
                }
            }
            apics.push(new);
        }
        Ok(Self { apics })
    }

    /// The IO-APICs.
    pub fn apics(&self) -> &[VIoApic] {
        &self.apics
    }

    /// The IO-APIC whose window holds `addr` (Xen's `addr_vioapic`): the
    /// platform sends the access there, or elsewhere when there is none.
    pub fn at(&mut self, addr: Gpa) -> Option<&mut VIoApic> {
        self.apics.iter_mut().find(|a| a.contains(addr))
    }

    /// A read at `addr`, `None` if no IO-APIC decodes it.
    pub fn read(&mut self, addr: Gpa) -> Option<u32> {
        self.at(addr).map(|a| a.read(addr))
    }

    /// A write at `addr`, `None` if no IO-APIC decodes it.
    pub fn write(&mut self, addr: Gpa, value: u32) -> Option<Actions> {
        self.at(addr).map(|a| a.write(addr, value))
    }

    /// The IO-APIC and pin of `gsi` (Xen's `gsi_vioapic`).
    fn gsi_pin(&mut self, gsi: u32) -> Option<(&mut VIoApic, usize)> {
        self.apics
            .iter_mut()
            .find_map(|a| a.pin_of(gsi).map(|pin| (a, pin)))
    }

    /// The redirection entry of `gsi`.
    pub fn rte(&self, gsi: u32) -> Option<u64> {
        self.apics.iter().find_map(|a| a.rte(gsi))
    }

    /// The trigger mode dom0 programmed for `gsi` (Xen's
    /// `vioapic_get_trigger_mode`).
    pub fn trigger(&self, gsi: u32) -> Option<Trigger> {
        self.rte(gsi).map(|r| {
            if r & rte::TRIGGER_LEVEL != 0 {
                Trigger::Level
            } else {
                Trigger::Edge
            }
        })
    }

    /// The physical GSI fired (or, for a level line, is active): what to
    /// deliver to dom0, if anything.
    pub fn assert_gsi(&mut self, gsi: u32) -> Option<Action> {
        match self.gsi_pin(gsi) {
            Some((a, pin)) => a.assert_pin(pin),
            None => Some(Action::Ignored(Ignored::NoSuchGsi(gsi))),
        }
    }

    /// The line of `gsi` went inactive (Xen's `hvm_gsi_deassert`).
    pub fn deassert_gsi(&mut self, gsi: u32) {
        if let Some((a, pin)) = self.gsi_pin(gsi) {
            if let Some(p) = a.pins.get_mut(pin) {
                p.asserted = false;
            }
        }
    }

    /// dom0's local APIC ended a level-triggered `vector` (its EOI broadcast,
    /// Xen's `vioapic_update_EOI`): every pin with that vector, in every
    /// IO-APIC, has its remote IRR cleared; `out` gets the physical EOIs and
    /// the re-deliveries of lines still asserted. Bounded by the pins.
    pub fn eoi(&mut self, vector: u8, out: &mut dyn FnMut(Action)) {
        for a in &mut self.apics {
            a.eoi(vector, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU q35's one IO-APIC: id 0, at 0xFEC00000, GSIs 0-23.
    const Q35: HostIoApic = HostIoApic {
        id: 0,
        base: Gpa(0xFEC0_0000),
        gsi_base: 0,
        pins: 24,
    };
    const SEL: Gpa = Gpa(0xFEC0_0000);
    const WIN: Gpa = Gpa(0xFEC0_0010);

    fn q35() -> VIoApics {
        VIoApics::for_hardware_domain(&[Q35]).unwrap()
    }

    fn reg_read(v: &mut VIoApics, reg: u32) -> u32 {
        v.write(SEL, reg).unwrap();
        v.read(WIN).unwrap()
    }

    fn reg_write(v: &mut VIoApics, reg: u32, value: u32) -> Vec<Action> {
        assert!(v.write(SEL, reg).unwrap().is_empty());
        v.write(WIN, value).unwrap().iter().collect()
    }

    /// Programs `gsi` as Linux does (high half, then low half).
    fn program(v: &mut VIoApics, gsi: u32, low: u32, dest: u8) -> Vec<Action> {
        let reg = VIOAPIC_REG_RTE0 + 2 * gsi;
        assert!(reg_write(v, reg + 1, u32::from(dest) << 24).is_empty());
        reg_write(v, reg, low)
    }

    /// Low half of a PCI INTx RTE: level, active low, fixed, physical.
    fn level_low(vector: u8) -> u32 {
        u32::from(vector) | 1 << 13 | 1 << 15
    }

    fn eoi(v: &mut VIoApics, vector: u8) -> Vec<Action> {
        let mut out = Vec::new();
        v.eoi(vector, &mut |a| out.push(a));
        out
    }

    fn deliver(gsi: u32, vector: u8, dest: u8, level: bool) -> Action {
        Action::Deliver {
            gsi,
            vector,
            dest,
            logical: false,
            mode: DeliveryMode::Fixed,
            level,
        }
    }

    #[test]
    fn identity_registers_as_xen() {
        let mut v = q35();
        assert_eq!(reg_read(&mut v, VIOAPIC_REG_VERSION), 0x0017_0011);
        assert_eq!(reg_read(&mut v, VIOAPIC_REG_APIC_ID), 0);
        // The id is writable (4 bits, read back through ID and ARB).
        assert!(reg_write(&mut v, VIOAPIC_REG_APIC_ID, 0xFF00_0000).is_empty());
        assert_eq!(reg_read(&mut v, VIOAPIC_REG_APIC_ID), 0x0F00_0000);
        assert_eq!(reg_read(&mut v, VIOAPIC_REG_ARB_ID), 0x0F00_0000);
        // Version and arbitration writes are ignored.
        reg_write(&mut v, VIOAPIC_REG_VERSION, 0xFFFF_FFFF);
        reg_write(&mut v, VIOAPIC_REG_ARB_ID, 0);
        assert_eq!(reg_read(&mut v, VIOAPIC_REG_VERSION), 0x0017_0011);
        assert_eq!(reg_read(&mut v, VIOAPIC_REG_ARB_ID), 0x0F00_0000);
        // IOREGSEL reads back what was written, all 32 bits (as Xen).
        v.write(SEL, 0xDEAD_BEEF);
        assert_eq!(v.read(SEL), Some(0xDEAD_BEEF));
        // Offsets other than 0x00 and 0x10 read 0, writes do nothing
        // (0x40, the EOI register, is absent in version 0x11).
        for off in [0x4, 0x8, 0x20, 0x40, 0xFC] {
            assert_eq!(v.read(Gpa(0xFEC0_0000 + off)), Some(0));
        }
    }

    #[test]
    fn reset_state_every_pin_masked_edge() {
        let mut v = q35();
        for gsi in 0..24 {
            assert_eq!(reg_read(&mut v, 0x10 + 2 * gsi), 0x0001_0000);
            assert_eq!(reg_read(&mut v, 0x11 + 2 * gsi), 0);
            assert_eq!(v.trigger(gsi), Some(Trigger::Edge));
        }
        assert_eq!(v.rte(24), None);
        // A masked pin delivers nothing.
        assert_eq!(v.assert_gsi(4), None);
    }

    #[test]
    fn window_decodes_the_host_address_only() {
        let mut v = q35();
        assert!(v.read(Gpa(0xFEBF_FFFF)).is_none());
        assert!(v.read(Gpa(0xFEC0_0100)).is_none());
        assert!(v.write(Gpa(0xFEC0_1000), 1).is_none());
        assert!(v.read(Gpa(0xFEC0_00FF)).is_some());
    }

    #[test]
    fn read_only_bits_are_kept() {
        let mut v = q35();
        // dom0 tries to set delivery status and remote IRR.
        program(&mut v, 16, level_low(0x30) | 1 << 12 | 1 << 14 | 1 << 16, 1);
        assert_eq!(reg_read(&mut v, 0x30), level_low(0x30) | 1 << 16);
        // Remote IRR set by the IO-APIC survives a rewrite of the low half
        // that tries to clear it.
        program(&mut v, 16, level_low(0x30), 1);
        v.assert_gsi(16);
        assert_ne!(reg_read(&mut v, 0x30) & 1 << 14, 0);
        // (and the still asserted line is not delivered a second time).
        assert!(reg_write(&mut v, 0x30, level_low(0x30)).is_empty());
        assert_ne!(reg_read(&mut v, 0x30) & 1 << 14, 0);
        // The high half keeps every bit (only the destination means anything).
        reg_write(&mut v, 0x31, 0xFF12_3456);
        assert_eq!(reg_read(&mut v, 0x31), 0xFF12_3456);
        assert_eq!(v.rte(16).unwrap() >> 32, 0xFF12_3456);
    }

    #[test]
    fn unmask_binds_the_gsi_with_dom0s_trigger_and_polarity() {
        let mut v = q35();
        // Linux's SCI on q35: GSI 9, level, active high.
        let acts = program(&mut v, 9, 0x29 | 1 << 15, 0);
        assert_eq!(
            acts,
            [Action::Bind {
                gsi: 9,
                trigger: Trigger::Level,
                polarity: Polarity::High
            }]
        );
        // Rewriting an unmasked pin does not bind again; masking then
        // unmasking does (as Xen: every unmask).
        assert!(program(&mut v, 9, 0x29 | 1 << 15, 0).is_empty());
        assert!(program(&mut v, 9, 0x29 | 1 << 15 | 1 << 16, 0).is_empty());
        assert_eq!(program(&mut v, 9, 0x29 | 1 << 15, 0).len(), 1);
        // A high-half write never binds.
        v.write(SEL, 0x13);
        assert!(v.write(WIN, 0).unwrap().is_empty());
        // PCI INTx, level low.
        assert_eq!(
            program(&mut v, 19, level_low(0x41), 0),
            [Action::Bind {
                gsi: 19,
                trigger: Trigger::Level,
                polarity: Polarity::Low
            }]
        );
        // An edge ISA IRQ (i8042 on GSI 1).
        assert_eq!(
            program(&mut v, 1, 0x31, 0),
            [Action::Bind {
                gsi: 1,
                trigger: Trigger::Edge,
                polarity: Polarity::High
            }]
        );
    }

    #[test]
    fn edge_pin_delivers_each_assertion() {
        let mut v = q35();
        program(&mut v, 1, 0x31, 2);
        for _ in 0..3 {
            assert_eq!(v.assert_gsi(1), Some(deliver(1, 0x31, 2, false)));
        }
        // EOI of an edge vector changes nothing (no physical EOI: edge).
        assert!(eoi(&mut v, 0x31).is_empty());
    }

    #[test]
    fn level_pin_delivers_once_until_eoi_then_unmasks_the_physical_pin() {
        let mut v = q35();
        program(&mut v, 16, level_low(0x30), 1);
        assert_eq!(v.assert_gsi(16), Some(deliver(16, 0x30, 1, true)));
        assert_ne!(v.rte(16).unwrap() & rte::REMOTE_IRR, 0);
        // Still asserted, or asserted again, before the EOI: nothing.
        assert_eq!(v.assert_gsi(16), None);
        // The EOI broadcast clears remote IRR and ends the physical one.
        assert_eq!(eoi(&mut v, 0x30), [Action::EoiPhysical { gsi: 16 }]);
        assert_eq!(v.rte(16).unwrap() & rte::REMOTE_IRR, 0);
        // The device still asserts it: the physical pin fires again.
        assert_eq!(v.assert_gsi(16), Some(deliver(16, 0x30, 1, true)));
        // An EOI for another vector leaves it alone.
        assert!(eoi(&mut v, 0x31).is_empty());
        assert_ne!(v.rte(16).unwrap() & rte::REMOTE_IRR, 0);
    }

    #[test]
    fn linux_level_to_edge_eoi_trick() {
        // io_apic.c:eoi_ioapic_pin for version < 0x20: mask + edge, then
        // the original entry back.
        let mut v = q35();
        program(&mut v, 17, level_low(0x38), 0);
        assert!(v.assert_gsi(17).is_some());
        let acts = program(&mut v, 17, 0x38 | 1 << 13 | 1 << 16, 0);
        assert_eq!(acts, [Action::EoiPhysical { gsi: 17 }]);
        assert_eq!(v.rte(17).unwrap() & rte::REMOTE_IRR, 0);
        // Back to level and unmasked: a re-bind (unmask), no delivery as
        // the line dropped with the EOI.
        let acts = program(&mut v, 17, level_low(0x38), 0);
        assert_eq!(
            acts,
            [Action::Bind {
                gsi: 17,
                trigger: Trigger::Level,
                polarity: Polarity::Low
            }]
        );
        // The physical pin fires again: delivered.
        assert_eq!(v.assert_gsi(17), Some(deliver(17, 0x38, 0, true)));
        // Switching to edge without remote IRR set: no physical EOI.
        eoi(&mut v, 0x38);
        assert!(program(&mut v, 17, 0x38, 0).is_empty());
    }

    #[test]
    fn masked_level_line_delivers_on_unmask() {
        let mut v = q35();
        program(&mut v, 20, level_low(0x50) | 1 << 16, 0);
        assert_eq!(v.assert_gsi(20), None);
        let acts = program(&mut v, 20, level_low(0x50), 3);
        assert_eq!(
            acts,
            [
                Action::Bind {
                    gsi: 20,
                    trigger: Trigger::Level,
                    polarity: Polarity::Low
                },
                deliver(20, 0x50, 3, true)
            ]
        );
        // The line drops before unmask: nothing is delivered.
        program(&mut v, 21, level_low(0x51) | 1 << 16, 0);
        v.assert_gsi(21);
        v.deassert_gsi(21);
        assert_eq!(program(&mut v, 21, level_low(0x51), 0).len(), 1);
    }

    #[test]
    fn eoi_of_a_shared_vector_ends_every_pin_with_it() {
        let mut v = q35();
        program(&mut v, 16, level_low(0x60), 0);
        program(&mut v, 18, level_low(0x60), 0);
        v.assert_gsi(16);
        v.assert_gsi(18);
        assert_eq!(
            eoi(&mut v, 0x60),
            [
                Action::EoiPhysical { gsi: 16 },
                Action::EoiPhysical { gsi: 18 }
            ]
        );
    }

    #[test]
    fn delivery_modes_and_destinations() {
        let mut v = q35();
        // Lowest priority, logical destination 0x03.
        program(&mut v, 3, 0x40 | 1 << 8 | 1 << 11, 0x03);
        assert_eq!(
            v.assert_gsi(3),
            Some(Action::Deliver {
                gsi: 3,
                vector: 0x40,
                dest: 3,
                logical: true,
                mode: DeliveryMode::LowestPriority,
                level: false
            })
        );
        // NMI.
        program(&mut v, 5, 4 << 8, 0xFF);
        assert!(matches!(
            v.assert_gsi(5),
            Some(Action::Deliver {
                mode: DeliveryMode::Nmi,
                dest: 0xFF,
                ..
            })
        ));
        // SMI, reserved, INIT, ExtINT: dropped with a reason.
        for mode in [2u8, 3, 5, 6, 7] {
            program(&mut v, 6, u32::from(mode) << 8 | 0x20 | 1 << 16, 0);
            program(&mut v, 6, u32::from(mode) << 8 | 0x20, 0);
            assert_eq!(
                v.assert_gsi(6),
                Some(Action::Ignored(Ignored::UnsupportedDelivery {
                    gsi: 6,
                    mode
                }))
            );
        }
    }

    #[test]
    fn garbage_never_panics_and_is_reported() {
        let mut v = q35();
        // Registers past the last entry, and between ARB and RTE0.
        for sel in [0x03, 0x0F, 0x10 + 48, 0x40, 0xFF, 0xFFFF_FFFF, 0x8000_0010] {
            v.write(SEL, sel);
            assert_eq!(v.read(WIN), Some(0), "{sel:#x}");
            let acts: Vec<_> = v.write(WIN, 0).unwrap().iter().collect();
            assert_eq!(
                acts,
                [Action::Ignored(Ignored::NoSuchRegister {
                    id: 0,
                    ioregsel: sel
                })]
            );
        }
        // Unknown GSIs.
        assert_eq!(
            v.assert_gsi(24),
            Some(Action::Ignored(Ignored::NoSuchGsi(24)))
        );
        assert_eq!(
            v.assert_gsi(u32::MAX),
            Some(Action::Ignored(Ignored::NoSuchGsi(u32::MAX)))
        );
        v.deassert_gsi(u32::MAX);
        assert!(eoi(&mut v, 0).is_empty());
        // Every register, every value pattern, every offset.
        for sel in 0..0x40u32 {
            for value in [0, u32::MAX, 0x5555_5555, 0xAAAA_AAAA] {
                for off in 0..0x100u64 {
                    v.write(SEL, sel);
                    v.write(Gpa(0xFEC0_0000 + off), value);
                    v.read(Gpa(0xFEC0_0000 + off));
                }
            }
        }
        for gsi in 0..30 {
            v.assert_gsi(gsi);
        }
        for vector in 0..=255 {
            eoi(&mut v, vector);
        }
    }

    #[test]
    fn several_ioapics_as_on_servers() {
        let second = HostIoApic {
            id: 1,
            base: Gpa(0xFEC0_1000),
            gsi_base: 24,
            pins: 32,
        };
        let mut v = VIoApics::for_hardware_domain(&[Q35, second]).unwrap();
        assert_eq!(v.apics().len(), 2);
        v.write(Gpa(0xFEC0_1000), VIOAPIC_REG_VERSION);
        assert_eq!(v.read(Gpa(0xFEC0_1010)), Some(0x001F_0011));
        v.write(Gpa(0xFEC0_1000), VIOAPIC_REG_APIC_ID);
        assert_eq!(v.read(Gpa(0xFEC0_1010)), Some(0x0100_0000));
        // GSI 30 is pin 6 of the second one.
        v.write(Gpa(0xFEC0_1000), 0x10 + 12);
        let acts: Vec<_> = v.write(Gpa(0xFEC0_1010), 0x70).unwrap().iter().collect();
        assert_eq!(
            acts,
            [Action::Bind {
                gsi: 30,
                trigger: Trigger::Edge,
                polarity: Polarity::High
            }]
        );
        assert_eq!(v.assert_gsi(30), Some(deliver(30, 0x70, 0, false)));
        // The first one's selector is its own.
        assert_eq!(v.read(SEL), Some(0));
    }

    #[test]
    fn bad_host_descriptions_are_refused() {
        let bad = |pins, gsi_base, base| HostIoApic {
            id: 2,
            base: Gpa(base),
            gsi_base,
            pins,
        };
        assert!(matches!(
            VIoApic::new(bad(0, 0, 0xFEC0_0000)),
            Err(VIoApicError::BadPinCount(_))
        ));
        assert!(matches!(
            VIoApic::new(bad(257, 0, 0xFEC0_0000)),
            Err(VIoApicError::BadPinCount(_))
        ));
        assert!(VIoApic::new(bad(256, 0, 0xFEC0_0000)).is_ok());
        assert!(matches!(
            VIoApic::new(bad(24, u32::MAX - 10, 0xFEC0_0000)),
            Err(VIoApicError::OutOfRange(_))
        ));
        assert!(matches!(
            VIoApic::new(bad(24, 0, u64::MAX - 0x10)),
            Err(VIoApicError::OutOfRange(_))
        ));
        // Overlapping GSIs, overlapping windows.
        assert!(matches!(
            VIoApics::for_hardware_domain(&[Q35, bad(8, 20, 0xFEC0_1000)]),
            Err(VIoApicError::Overlap(..))
        ));
        assert!(matches!(
            VIoApics::for_hardware_domain(&[Q35, bad(8, 24, 0xFEC0_0080)]),
            Err(VIoApicError::Overlap(..))
        ));
        // 256 pins: the version register says 0xFF entries.
        let mut v = VIoApics::for_hardware_domain(&[bad(256, 0, 0xFEC0_0000)]).unwrap();
        v.write(SEL, VIOAPIC_REG_VERSION);
        assert_eq!(v.read(WIN), Some(0x00FF_0011));
        v.write(SEL, 0x10 + 2 * 255 + 1);
        v.write(WIN, 0xAB00_0000);
        assert_eq!(v.rte(255).unwrap() >> 56, 0xAB);
    }
}
