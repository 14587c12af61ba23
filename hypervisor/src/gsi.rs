//! The host's GSIs bound to dom0 (Xen's `mp_register_gsi` and
//! `pirq_guest_bind` for a PVH hardware domain, reduced): when dom0
//! unmasks a pin of its emulated IO-APIC, the host pin of the same GSI gets
//! a host vector, dom0's trigger mode and polarity and this CPU's local
//! APIC, unmasked. An interrupt on that vector is then asserted on dom0's
//! pin (`schedule.rs`); a level-triggered pin stays masked from its
//! interrupt entry until dom0's EOI ([`end`]).

use alloc::collections::BTreeMap;

use rxen_core::vioapic::{Polarity, Trigger};
use rxen_x86::ioapic::{self, IoApic, RTE_ACTIVE_LOW, RTE_LEVEL};
use spin::Mutex;

/// A bound GSI.
#[derive(Clone, Copy, Debug)]
struct Binding {
    vector: u8,
    apic: IoApic,
    pin: u32,
    level: bool,
}

/// The bindings by GSI; a leaf lock (taken under the machine lock).
static BINDINGS: Mutex<BTreeMap<u32, Binding>> = Mutex::new(BTreeMap::new());

/// Why a GSI cannot be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// No host IO-APIC has this GSI.
    NoSuchGsi,
    /// Every device vector is taken.
    NoVector,
}

/// Binds (or re-binds with new modes) `gsi` for dom0 and unmasks its host
/// pin; returns the host vector.
pub fn bind(gsi: u32, trigger: Trigger, polarity: Polarity) -> Result<u8, BindError> {
    let (apic, pin) = crate::acpi::host_ioapics()
        .iter()
        .find_map(|a| {
            let pin = gsi.checked_sub(a.gsi_base).filter(|&p| p < a.pins)?;
            Some((IoApic::new(a.base.0), pin))
        })
        .ok_or(BindError::NoSuchGsi)?;
    let mut bindings = BINDINGS.lock();
    let vector = match bindings.get(&gsi) {
        Some(b) => b.vector,
        None => rxen_x86::irq::alloc_vector().ok_or(BindError::NoVector)?,
    };
    let level = trigger == Trigger::Level;
    bindings.insert(
        gsi,
        Binding {
            vector,
            apic,
            pin,
            level,
        },
    );
    ioapic::set_level_source(vector, level.then_some((apic, pin)));
    let mut rte = u64::from(vector) | u64::from(rxen_x86::apic::id()) << 56;
    if level {
        rte |= RTE_LEVEL;
    }
    if polarity == Polarity::Low {
        rte |= RTE_ACTIVE_LOW;
    }
    apic.set_rte(pin, rte);
    Ok(vector)
}

/// The GSI bound to host vector `vector`, if any.
pub fn gsi_of(vector: u8) -> Option<u32> {
    BINDINGS
        .lock()
        .iter()
        .find_map(|(gsi, b)| (b.vector == vector).then_some(*gsi))
}

/// dom0 ended `gsi`'s level interrupt: its host pin, masked since the
/// interrupt came, is unmasked (a line still asserted fires again).
pub fn end(gsi: u32) {
    if let Some(b) = BINDINGS.lock().get(&gsi).filter(|b| b.level) {
        b.apic.mask(b.pin, false);
    }
}
