//! An emulated local APIC per vCPU, as Xen's vlapic presents it to HVM/PVH
//! guests: the register file, interrupt priorities (IRR, ISR, TPR, PPR),
//! EOI, the timer (one-shot and periodic, counting at a 1 GHz bus clock
//! divided by the divide configuration) and the decoding of interrupt
//! commands (ICR), in xAPIC mode (the register page) and in x2APIC mode
//! (the MSRs from [`X2APIC_MSR_FIRST`], with Xen's `guest_rdmsr_x2apic` /
//! `guest_wrmsr_x2apic` rules: which registers exist, which bits are
//! reserved, the self-IPI register; IA32_APIC_BASE's mode changes as
//! `guest_wrmsr_apic_base`). Pure state: the platform maps the page at the
//! APIC base, injects what [`Vlapic::pending_vector`] offers and carries out
//! the commands [`Vlapic::write`] returns.
//!
//! x2APIC IDs: the vCPU's APIC ID, as in xAPIC mode and CPUID leaf 1 (Xen
//! gives vCPU n the ID 2n in both modes; rxen gives it n throughout), the
//! logical ID derived from it (cluster `id >> 4`, bit `id & 15`).
//!
//! Not emulated: the TSC-deadline timer (hidden), error reporting (ESR
//! reads 0), the thermal, performance and LINT pins (their LVTs are only
//! stored; CMCI is not kept), remote read, SMI, and writes to the APIC ID
//! (ignored in xAPIC mode, #GP in x2APIC mode).
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

/// Default physical base of the APIC page.
pub const DEFAULT_BASE: u64 = 0xFEE0_0000;
/// IA32_APIC_BASE: bootstrap processor.
pub const BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE: x2APIC mode.
pub const BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE: APIC globally enabled.
pub const BASE_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE: the base address bits (Xen's `APIC_BASE_ADDR_MASK`).
pub const BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// The first x2APIC MSR (`MSR_X2APIC_FIRST`): register offset `o` of the
/// page is MSR `0x800 + o / 16`.
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// The last MSR of the x2APIC range (`MSR_X2APIC_LAST`).
pub const X2APIC_MSR_LAST: u32 = 0x8FF;

/// Register offsets in the APIC page.
pub mod reg {
    #![allow(missing_docs)]
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const APR: u32 = 0x90;
    pub const PPR: u32 = 0xA0;
    pub const EOI: u32 = 0xB0;
    pub const RRD: u32 = 0xC0;
    pub const LDR: u32 = 0xD0;
    pub const DFR: u32 = 0xE0;
    pub const SVR: u32 = 0xF0;
    pub const ISR: u32 = 0x100;
    pub const TMR: u32 = 0x180;
    pub const IRR: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const ICR_LO: u32 = 0x300;
    pub const ICR_HI: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PERF: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
    /// x2APIC only: corrected machine-check interrupt LVT (MSR 0x82F).
    pub const CMCI: u32 = 0x2F0;
    /// x2APIC only: the self-IPI register (MSR 0x83F), write-only.
    pub const SELF_IPI: u32 = 0x3F0;
}

/// The version register: version 0x14 (integrated APIC), highest LVT 5
/// (six LVT entries), as Xen's vlapic.
pub const VERSION: u32 = 0x0005_0014;
/// LVT mask bit.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT timer: periodic mode.
pub const TIMER_PERIODIC: u32 = 1 << 17;
/// Bits an x2APIC write may set in every LVT (Xen's `LVT_MASK`: vector,
/// delivery status, mask).
const X2_LVT: u64 = 0xFF | (1 << 12) | LVT_MASKED as u64;
/// ... and in an LVT with a delivery mode (`APIC_MODE_MASK`).
const X2_LVT_MODE: u64 = X2_LVT | 0x700;
/// ... in LINT0/LINT1 (Xen's `LINT_MASK`: polarity, remote IRR, trigger).
const X2_LINT: u64 = X2_LVT_MODE | (1 << 13) | (1 << 14) | (1 << 15);
/// ... in the timer's LVT (`APIC_TIMER_MODE_MASK`, bits 17-18).
const X2_LVT_TIMER: u64 = X2_LVT | (3 << 17);
/// Bits an x2APIC ICR write may set in its low half (vector, delivery
/// mode, destination mode, level, trigger, shorthand).
const X2_ICR_LOW: u64 = 0xFF | 0x700 | (1 << 11) | (1 << 14) | (1 << 15) | (3 << 18);
/// SVR bits an x2APIC write may set (vector, enable, focus disabled; no
/// directed EOI, which the version register does not offer).
const X2_SVR: u64 = 0xFF | SVR_ENABLE as u64 | (1 << 9);
/// ICR: the "self" destination shorthand.
const SHORTHAND_SELF: u32 = 1 << 18;
/// SVR: APIC software enable.
pub const SVR_ENABLE: u32 = 1 << 8;
/// Nanoseconds per bus clock tick (Xen's vlapic: a 1 GHz bus).
pub const BUS_CYCLE_NS: u64 = 1;
/// Shortest interval between two ticks of a periodic timer (Xen's
/// `create_periodic_time`: "Periodic timer must be at least 0.1ms").
pub const MIN_TIMER_PERIOD_NS: u64 = 100_000;

/// Bits of each LVT that software may write, in [`reg::LVT_TIMER`] order.
const LVT_WRITABLE: [u32; 6] = [
    0xFF | LVT_MASKED | TIMER_PERIODIC,         // timer
    0x7FF | LVT_MASKED,                         // thermal
    0x7FF | LVT_MASKED,                         // performance counters
    0x7FF | (1 << 13) | (1 << 15) | LVT_MASKED, // LINT0
    0x7FF | (1 << 13) | (1 << 15) | LVT_MASKED, // LINT1
    0xFF | LVT_MASKED,                          // error
];

/// Delivery mode of an interrupt command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Fixed vector.
    Fixed,
    /// Lowest priority (delivered as fixed to the first target).
    LowestPriority,
    /// System management interrupt (not emulated).
    Smi,
    /// Non-maskable interrupt.
    Nmi,
    /// INIT (assert); an INIT level de-assert is [`DeliveryMode::InitDeassert`].
    Init,
    /// INIT level de-assert: no effect on modern processors.
    InitDeassert,
    /// Start-up IPI with the vector's page.
    Startup,
    /// Reserved modes.
    Reserved,
}

/// Destination shorthand of an interrupt command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// The destination field.
    None,
    /// The sender only.
    SelfOnly,
    /// Every APIC, the sender included.
    All,
    /// Every APIC but the sender.
    AllButSelf,
}

/// A decoded interrupt command (ICR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icr {
    /// Vector (the page number for a start-up IPI).
    pub vector: u8,
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Logical (true) or physical destination mode.
    pub logical: bool,
    /// Destination shorthand.
    pub shorthand: Shorthand,
    /// Destination: ICR bits 56-63 in xAPIC mode, 32-63 in x2APIC mode.
    pub dest: u32,
}

impl Icr {
    /// Decodes the low and high halves of the ICR in xAPIC mode.
    pub fn decode(low: u32, high: u32) -> Self {
        Self::decode_to(low, high >> 24)
    }

    /// Decodes the 64-bit ICR of x2APIC mode (a 32-bit destination).
    pub fn decode_x2apic(icr: u64) -> Self {
        Self::decode_to(icr as u32, (icr >> 32) as u32)
    }

    fn decode_to(low: u32, dest: u32) -> Self {
        let level_assert = low & (1 << 14) != 0;
        let level_triggered = low & (1 << 15) != 0;
        let mode = match (low >> 8) & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 if level_triggered && !level_assert => DeliveryMode::InitDeassert,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::Startup,
            _ => DeliveryMode::Reserved,
        };
        let shorthand = match (low >> 18) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::All,
            _ => Shorthand::AllButSelf,
        };
        Self {
            vector: low as u8,
            mode,
            logical: low & (1 << 11) != 0,
            shorthand,
            dest,
        }
    }
}

/// What a register write asks of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing beyond the register.
    None,
    /// Send this interrupt command (ICR low was written).
    SendIpi(Icr),
    /// The timer was (re)programmed or stopped: its deadline changed.
    TimerChanged,
    /// An EOI ended this level-triggered vector (its TMR bit was set): the
    /// IO-APIC that sent it gets the EOI broadcast.
    EoiLevel(u8),
}

/// One 256-bit vector register (ISR, TMR, IRR) as eight 32-bit words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorBits([u32; 8]);

impl VectorBits {
    /// Sets bit `v`.
    pub fn set(&mut self, v: u8) {
        if let Some(word) = self.0.get_mut(usize::from(v / 32)) {
            *word |= 1 << (v % 32);
        }
    }

    /// Clears bit `v`.
    pub fn clear(&mut self, v: u8) {
        if let Some(word) = self.0.get_mut(usize::from(v / 32)) {
            *word &= !(1 << (v % 32));
        }
    }

    /// Whether bit `v` is set.
    pub fn test(&self, v: u8) -> bool {
        self.word(usize::from(v / 32)) & (1 << (v % 32)) != 0
    }

    /// The highest set bit.
    pub fn highest(&self) -> Option<u8> {
        (0..8u8).rev().find_map(|i| {
            let word = self.word(usize::from(i));
            // Below 256: word i holds vectors 32i..32i+31.
            (word != 0).then(|| {
                i.wrapping_mul(32)
                    .wrapping_add(31u8.wrapping_sub(word.leading_zeros() as u8))
            })
        })
    }

    /// Word `i` (0-7) as the register at offset `base + 0x10 * i` reads.
    pub fn word(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct Vlapic {
    /// IA32_APIC_BASE (base, enable, BSP).
    base_msr: u64,
    id: u8,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: VectorBits,
    irr: VectorBits,
    /// Trigger mode of the requested and in-service vectors (set: level).
    tmr: VectorBits,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; 6],
    timer_initial: u32,
    timer_divide: u32,
    /// When the current timer period started (system time, ns).
    timer_start: u64,
    /// When the running timer next fires (None: stopped).
    timer_deadline: Option<u64>,
    /// An NMI waiting to be injected.
    nmi_pending: bool,
    /// INIT received: the vCPU waits for a start-up IPI.
    pub wait_for_sipi: bool,
}

impl Vlapic {
    /// The APIC of the vCPU with APIC ID `id` after power-up (the bootstrap
    /// processor's has `bsp`): enabled at the default base, software
    /// disabled, every LVT masked.
    pub fn new(id: u8, bsp: bool) -> Self {
        let mut lapic = Self {
            base_msr: DEFAULT_BASE | BASE_ENABLE | if bsp { BASE_BSP } else { 0 },
            id,
            tpr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            isr: VectorBits::default(),
            irr: VectorBits::default(),
            tmr: VectorBits::default(),
            icr_low: 0,
            icr_high: 0,
            lvt: [0; 6],
            timer_initial: 0,
            timer_divide: 0,
            timer_start: 0,
            timer_deadline: None,
            nmi_pending: false,
            wait_for_sipi: false,
        };
        lapic.reset();
        lapic
    }

    /// The register state after INIT (or power-up): everything but the ID
    /// and the base MSR.
    pub fn reset(&mut self) {
        self.tpr = 0;
        // INIT keeps x2APIC mode, whose logical ID is fixed.
        self.ldr = if self.x2apic_mode() {
            self.x2apic_ldr()
        } else {
            0
        };
        self.dfr = 0xFFFF_FFFF;
        self.svr = 0xFF;
        self.isr = VectorBits::default();
        self.irr = VectorBits::default();
        self.tmr = VectorBits::default();
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; 6];
        self.timer_initial = 0;
        self.timer_divide = 0;
        self.timer_deadline = None;
        self.nmi_pending = false;
        self.wait_for_sipi = false;
    }

    /// The APIC ID.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// IA32_APIC_BASE as the guest reads it.
    pub fn base_msr(&self) -> u64 {
        self.base_msr
    }

    /// The physical base of the register page.
    pub fn base(&self) -> u64 {
        self.base_msr & !0xFFF & ((1 << 52) - 1)
    }

    /// Whether the APIC is globally enabled (IA32_APIC_BASE bit 11).
    pub fn hw_enabled(&self) -> bool {
        self.base_msr & BASE_ENABLE != 0
    }

    /// Whether the APIC is enabled globally and by software (SVR bit 8).
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.svr & SVR_ENABLE != 0
    }

    /// Whether the APIC is in x2APIC mode (IA32_APIC_BASE enable and EXTD).
    pub fn x2apic_mode(&self) -> bool {
        self.base_msr & (BASE_ENABLE | BASE_EXTD) == BASE_ENABLE | BASE_EXTD
    }

    /// Whether the APIC is in xAPIC mode (enabled, EXTD clear).
    pub fn xapic_mode(&self) -> bool {
        self.base_msr & (BASE_ENABLE | BASE_EXTD) == BASE_ENABLE
    }

    /// The logical ID x2APIC mode derives from the APIC ID (cluster in bits
    /// 16-31, one bit of 16 below).
    fn x2apic_ldr(&self) -> u32 {
        let id = u32::from(self.id);
        ((id & !0xF) << 12) | (1 << (id & 0xF))
    }

    /// A write to IA32_APIC_BASE, as Xen's `guest_wrmsr_apic_base`; `false`
    /// for a value refused with #GP: reserved bits, an xAPIC-mode base other
    /// than the default (relocation is not supported, as on Xen), EXTD set
    /// while enabling or disabling (disabled to x2APIC directly, or x2APIC
    /// to disabled without clearing EXTD), or EXTD changed while not in
    /// xAPIC mode (x2APIC back to xAPIC; EXTD alone while disabled).
    /// Disabling resets the APIC; it comes back enabled in its power-up
    /// state. Entering x2APIC mode keeps the registers and derives the
    /// logical ID.
    pub fn write_base_msr(&mut self, value: u64) -> bool {
        if value & !(BASE_ADDR_MASK | BASE_ENABLE | BASE_BSP | BASE_EXTD) != 0 {
            return false;
        }
        if value & (BASE_ENABLE | BASE_EXTD) == BASE_ENABLE
            && value & BASE_ADDR_MASK != DEFAULT_BASE
        {
            return false;
        }
        let changed = self.base_msr ^ value;
        if changed & BASE_ENABLE != 0 {
            if value & BASE_EXTD != 0 {
                return false;
            }
        } else if changed & BASE_EXTD != 0 && !self.xapic_mode() {
            return false;
        }
        self.base_msr = value;
        if changed & BASE_ENABLE != 0 && value & BASE_ENABLE == 0 {
            self.reset();
        }
        if self.x2apic_mode() {
            self.ldr = self.x2apic_ldr();
        }
        true
    }

    /// The processor priority: the TPR, or the class of the highest
    /// in-service vector if that is higher.
    pub fn ppr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from);
        if self.tpr & 0xF0 >= isrv & 0xF0 {
            self.tpr & 0xFF
        } else {
            isrv & 0xF0
        }
    }

    /// The arbitration priority (SDM's P6-family definition).
    fn apr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from);
        let irrv = self.irr.highest().map_or(0, u32::from);
        let tpr = self.tpr & 0xFF;
        if tpr & 0xF0 >= irrv & 0xF0 && tpr & 0xF0 > isrv & 0xF0 {
            tpr
        } else {
            (tpr & 0xF0).max(isrv & 0xF0).max(irrv & 0xF0)
        }
    }

    /// Marks vector `vector` requested (edge-triggered). Vectors below 16
    /// are illegal and dropped, as is anything while the APIC is globally
    /// disabled. Returns whether the vector is now requested.
    pub fn set_irq(&mut self, vector: u8) -> bool {
        if vector < 16 || !self.hw_enabled() {
            return false;
        }
        self.irr.set(vector);
        true
    }

    /// Marks vector `vector` requested with its trigger mode (an IO-APIC's
    /// level-triggered pin sets the TMR bit; its EOI is then
    /// [`WriteEffect::EoiLevel`]). As [`Vlapic::set_irq`] otherwise.
    pub fn set_irq_trigger(&mut self, vector: u8, level: bool) -> bool {
        if !self.set_irq(vector) {
            return false;
        }
        if level {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
        true
    }

    /// Requests an NMI.
    pub fn set_nmi(&mut self) {
        self.nmi_pending = true;
    }

    /// Takes a pending NMI.
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi_pending)
    }

    /// Whether an NMI waits.
    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending
    }

    /// The highest requested vector the processor priority lets through,
    /// if the APIC is enabled.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let vector = self.irr.highest()?;
        (u32::from(vector) & 0xF0 > self.ppr() & 0xF0).then_some(vector)
    }

    /// Whether anything can be delivered (a vector or an NMI).
    pub fn has_pending(&self) -> bool {
        self.nmi_pending || self.pending_vector().is_some()
    }

    /// The processor takes `vector`: it moves from IRR to ISR.
    pub fn acknowledge(&mut self, vector: u8) {
        self.irr.clear(vector);
        self.isr.set(vector);
    }

    /// End of interrupt: the highest in-service vector is done. Returns it.
    pub fn eoi(&mut self) -> Option<u8> {
        let vector = self.isr.highest()?;
        self.isr.clear(vector);
        Some(vector)
    }

    /// Whether `vector` is in service.
    pub fn in_service(&self, vector: u8) -> bool {
        self.isr.test(vector)
    }

    /// Whether `vector` is requested.
    pub fn requested(&self, vector: u8) -> bool {
        self.irr.test(vector)
    }

    /// Whether this APIC is a destination of `dest` in physical (`logical`
    /// false) or logical mode. xAPIC mode: `0xFF` is every APIC, logical
    /// destinations follow the DFR's flat or cluster model (on the low 8
    /// bits). x2APIC mode: `0xFFFF_FFFF` is every APIC, a logical
    /// destination is a cluster (bits 16-31) and a bitmap of its members
    /// (as Xen's `vlapic_match_dest`).
    pub fn accepts(&self, dest: u32, logical: bool) -> bool {
        if self.x2apic_mode() {
            return dest == u32::MAX
                || if logical {
                    self.ldr >> 16 == dest >> 16 && self.ldr & dest & 0xFFFF != 0
                } else {
                    dest == u32::from(self.id)
                };
        }
        if !logical {
            return dest == 0xFF || dest == u32::from(self.id);
        }
        let dest = dest as u8;
        if dest == 0xFF {
            return true;
        }
        let logical_id = (self.ldr >> 24) as u8;
        if self.dfr >> 28 == 0xF {
            logical_id & dest != 0
        } else {
            logical_id >> 4 == dest >> 4 && logical_id & dest & 0xF != 0
        }
    }

    /// The timer divisor (1 to 128) from the divide configuration.
    pub fn timer_divisor(&self) -> u64 {
        let code = (self.timer_divide & 3) | ((self.timer_divide >> 1) & 4);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    /// One timer period in ns.
    fn timer_period(&self) -> u64 {
        u64::from(self.timer_initial)
            .saturating_mul(self.timer_divisor())
            .saturating_mul(BUS_CYCLE_NS)
    }

    /// When the timer fires next (system time), if it runs.
    pub fn timer_deadline(&self) -> Option<u64> {
        self.timer_deadline
    }

    /// The current count at `now`.
    pub fn timer_current(&self, now: u64) -> u32 {
        let Some(deadline) = self.timer_deadline else {
            return 0;
        };
        let left = deadline.saturating_sub(now);
        let ticks = left
            .checked_div(self.timer_divisor().saturating_mul(BUS_CYCLE_NS))
            .unwrap_or(0);
        ticks.min(u64::from(self.timer_initial)) as u32
    }

    /// Fires the timer if it is due at `now`: requests the LVT timer vector
    /// unless masked, then re-arms a periodic timer (skipping missed
    /// periods) or stops a one-shot one. Returns whether a vector was
    /// requested.
    pub fn expire_timer(&mut self, now: u64) -> bool {
        let Some(deadline) = self.timer_deadline.filter(|&d| d <= now) else {
            return false;
        };
        let lvt = self.lvt[0];
        let period = self.timer_period();
        if lvt & TIMER_PERIODIC != 0 && period > 0 {
            // As Xen's periodic timers: at least 100 µs apart, however
            // short the programmed period (the first tick is not delayed).
            let period = period.max(MIN_TIMER_PERIOD_NS);
            let missed = now
                .saturating_sub(deadline)
                .checked_div(period)
                .unwrap_or(0);
            self.timer_start = deadline.saturating_add(missed.saturating_mul(period));
            self.timer_deadline = Some(self.timer_start.saturating_add(period));
        } else {
            self.timer_deadline = None;
        }
        lvt & LVT_MASKED == 0 && self.set_irq(lvt as u8)
    }

    fn lvt_index(offset: u32) -> Option<usize> {
        (reg::LVT_TIMER..=reg::LVT_ERROR)
            .contains(&offset)
            .then(|| (offset.wrapping_sub(reg::LVT_TIMER) / 0x10) as usize)
    }

    /// Reads the 32-bit register at `offset` (16-byte aligned; other
    /// offsets and write-only registers read 0) at system time `now`.
    pub fn read(&self, offset: u32, now: u64) -> u32 {
        let vector_word = |base: u32| (offset.wrapping_sub(base) / 0x10) as usize;
        match offset {
            reg::ID => u32::from(self.id) << 24,
            reg::VERSION => VERSION,
            reg::TPR => self.tpr,
            reg::APR => self.apr(),
            reg::PPR => self.ppr(),
            reg::LDR => self.ldr,
            reg::DFR => self.dfr,
            reg::SVR => self.svr,
            0x100..=0x170 if offset.is_multiple_of(0x10) => self.isr.word(vector_word(reg::ISR)),
            0x180..=0x1F0 if offset.is_multiple_of(0x10) => self.tmr.word(vector_word(reg::TMR)),
            0x200..=0x270 if offset.is_multiple_of(0x10) => self.irr.word(vector_word(reg::IRR)),
            reg::ICR_LO => self.icr_low,
            reg::ICR_HI => self.icr_high,
            reg::TIMER_INITIAL => self.timer_initial,
            reg::TIMER_CURRENT => self.timer_current(now),
            reg::TIMER_DIVIDE => self.timer_divide,
            _ => match Self::lvt_index(offset) {
                Some(i) if offset.is_multiple_of(0x10) => self.lvt.get(i).copied().unwrap_or(0),
                _ => 0,
            },
        }
    }

    /// Writes `value` to the 32-bit register at `offset` at system time
    /// `now`; read-only and unknown registers ignore writes.
    pub fn write(&mut self, offset: u32, value: u32, now: u64) -> WriteEffect {
        match offset {
            reg::TPR => self.tpr = value & 0xFF,
            reg::EOI => {
                if let Some(vector) = self.eoi().filter(|&v| self.tmr.test(v)) {
                    self.tmr.clear(vector);
                    return WriteEffect::EoiLevel(vector);
                }
            }
            reg::LDR => self.ldr = value & 0xFF00_0000,
            reg::DFR => self.dfr = value | 0x0FFF_FFFF,
            reg::SVR => {
                self.svr = value & 0x3FF;
                if self.svr & SVR_ENABLE == 0 {
                    for lvt in &mut self.lvt {
                        *lvt |= LVT_MASKED;
                    }
                }
            }
            reg::ESR => {}
            reg::ICR_LO => {
                // Delivery is immediate: the status bit always reads idle.
                self.icr_low = value & 0x000C_CFFF;
                return WriteEffect::SendIpi(Icr::decode(self.icr_low, self.icr_high));
            }
            reg::ICR_HI => self.icr_high = value & 0xFF00_0000,
            reg::TIMER_INITIAL => {
                self.timer_initial = value;
                self.timer_start = now;
                let period = self.timer_period();
                self.timer_deadline = (period > 0).then(|| now.saturating_add(period));
                return WriteEffect::TimerChanged;
            }
            reg::TIMER_DIVIDE => self.timer_divide = value & 0xB,
            _ => {
                if let Some(i) = Self::lvt_index(offset).filter(|_| offset.is_multiple_of(0x10)) {
                    let mut lvt = value & LVT_WRITABLE.get(i).copied().unwrap_or(0);
                    if self.svr & SVR_ENABLE == 0 {
                        lvt |= LVT_MASKED;
                    }
                    if let Some(slot) = self.lvt.get_mut(i) {
                        *slot = lvt;
                    }
                }
            }
        }
        WriteEffect::None
    }

    /// The register offset of x2APIC MSR `msr` (`None` outside the range).
    fn x2apic_offset(msr: u32) -> Option<u32> {
        (X2APIC_MSR_FIRST..=X2APIC_MSR_LAST)
            .contains(&msr)
            .then(|| msr.wrapping_sub(X2APIC_MSR_FIRST) << 4)
    }

    /// RDMSR of x2APIC MSR `msr` at system time `now`, as Xen's
    /// `guest_rdmsr_x2apic`: `None` (#GP) outside x2APIC mode and for what
    /// is not a readable register (APR, DFR, EOI, remote read, ICR's upper
    /// half, the self-IPI register, anything unassigned). The ID reads
    /// whole, the ICR as one 64-bit register.
    pub fn read_x2apic(&self, msr: u32, now: u64) -> Option<u64> {
        if !self.x2apic_mode() {
            return None;
        }
        let offset = Self::x2apic_offset(msr)?;
        match offset {
            reg::ID => Some(u64::from(self.id)),
            reg::ICR_LO => Some(u64::from(self.icr_high) << 32 | u64::from(self.icr_low)),
            reg::CMCI => Some(0),
            reg::VERSION
            | reg::TPR
            | reg::PPR
            | reg::LDR
            | reg::SVR
            | reg::ESR
            | reg::LVT_TIMER..=reg::LVT_ERROR
            | reg::TIMER_INITIAL
            | reg::TIMER_CURRENT
            | reg::TIMER_DIVIDE
            | reg::ISR..=0x270 => Some(u64::from(self.read(offset, now))),
            _ => None,
        }
    }

    /// WRMSR of `value` to x2APIC MSR `msr` at system time `now`, as Xen's
    /// `guest_wrmsr_x2apic`: `None` (#GP) outside x2APIC mode, for a
    /// register that is read-only or absent, for reserved bits set, and for
    /// EOI and ESR written with anything but 0. The ICR is written whole
    /// (the command goes out), the self-IPI register sends its vector to
    /// this APIC (and reads back in the ICR, as on Xen).
    pub fn write_x2apic(&mut self, msr: u32, value: u64, now: u64) -> Option<WriteEffect> {
        if !self.x2apic_mode() {
            return None;
        }
        let offset = Self::x2apic_offset(msr)?;
        let writable = match offset {
            reg::TPR | reg::SELF_IPI => 0xFF,
            reg::SVR => X2_SVR,
            reg::LVT_TIMER => X2_LVT_TIMER,
            reg::LVT_THERMAL | reg::LVT_PERF | reg::CMCI => X2_LVT_MODE,
            reg::LVT_LINT0 | reg::LVT_LINT1 => X2_LINT,
            reg::LVT_ERROR => X2_LVT,
            // As Xen: not checked, the register takes the low 32 bits.
            reg::TIMER_INITIAL => u64::MAX,
            reg::TIMER_DIVIDE => 0xB,
            reg::ICR_LO => X2_ICR_LOW | 0xFFFF_FFFF << 32,
            reg::EOI | reg::ESR => 0,
            _ => return None,
        };
        if value & !writable != 0 {
            return None;
        }
        Some(match offset {
            reg::CMCI => WriteEffect::None,
            reg::ICR_LO => {
                self.icr_low = value as u32;
                self.icr_high = (value >> 32) as u32;
                WriteEffect::SendIpi(Icr::decode_x2apic(value))
            }
            reg::SELF_IPI => {
                self.icr_low = SHORTHAND_SELF | value as u32;
                WriteEffect::SendIpi(Icr::decode_x2apic(u64::from(self.icr_low)))
            }
            _ => self.write(offset, value as u32, now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Vlapic {
        let mut l = Vlapic::new(3, false);
        l.write(reg::SVR, SVR_ENABLE | 0xFF, 0);
        l
    }

    /// A level-triggered vector shows in the TMR and its EOI asks for the
    /// IO-APIC's; an edge one (even the same vector later) does not.
    #[test]
    fn level_vectors_end_with_an_eoi_broadcast() {
        let mut l = enabled();
        assert!(l.set_irq_trigger(0x61, true));
        assert_eq!(l.read(reg::TMR + 0x30, 0), 1 << 1);
        let v = l.pending_vector().expect("pending");
        l.acknowledge(v);
        assert_eq!(l.write(reg::EOI, 0, 0), WriteEffect::EoiLevel(0x61));
        assert_eq!(l.read(reg::TMR + 0x30, 0), 0);
        assert!(l.set_irq_trigger(0x61, false));
        l.acknowledge(0x61);
        assert_eq!(l.write(reg::EOI, 0, 0), WriteEffect::None);
        // An EOI with nothing in service ends nothing.
        assert_eq!(l.write(reg::EOI, 0, 0), WriteEffect::None);
        // Illegal vectors are not requested, TMR untouched.
        assert!(!l.set_irq_trigger(3, true));
        assert_eq!(l.read(reg::TMR, 0), 0);
    }

    #[test]
    fn reset_state() {
        let l = Vlapic::new(2, true);
        assert_eq!(l.read(reg::ID, 0), 2 << 24);
        assert_eq!(l.read(reg::VERSION, 0), 0x50014);
        assert_eq!(l.read(reg::SVR, 0), 0xFF);
        assert_eq!(l.read(reg::DFR, 0), 0xFFFF_FFFF);
        for off in (reg::LVT_TIMER..=reg::LVT_ERROR).step_by(0x10) {
            assert_eq!(l.read(off, 0), LVT_MASKED);
        }
        assert_eq!(l.base_msr(), 0xFEE0_0000 | BASE_ENABLE | BASE_BSP);
        assert!(!l.enabled(), "software disabled at reset");
    }

    #[test]
    fn priority_and_eoi() {
        let mut l = enabled();
        assert!(l.set_irq(0x31));
        assert!(l.set_irq(0x52));
        assert_eq!(l.pending_vector(), Some(0x52));
        l.acknowledge(0x52);
        assert_eq!(l.read(reg::ISR + 0x20, 0), 1 << (0x52 - 64));
        assert_eq!(l.read(reg::PPR, 0), 0x50);
        // 0x31 is below the in-service class; 0x5F is in it: both wait.
        assert_eq!(l.pending_vector(), None);
        l.set_irq(0x5F);
        assert_eq!(l.pending_vector(), None);
        l.set_irq(0x60);
        assert_eq!(l.pending_vector(), Some(0x60));
        l.acknowledge(0x60);
        assert_eq!(l.write(reg::EOI, 0, 0), WriteEffect::None);
        assert!(!l.in_service(0x60) && l.in_service(0x52));
        l.write(reg::EOI, 0, 0);
        assert_eq!(l.read(reg::ISR + 0x20, 0), 0);
        assert_eq!(l.pending_vector(), Some(0x5F));
    }

    #[test]
    fn tpr_masks_classes_at_or_below_it() {
        let mut l = enabled();
        l.write(reg::TPR, 0x45, 0);
        l.set_irq(0x4F);
        assert_eq!(l.pending_vector(), None);
        assert_eq!(l.read(reg::PPR, 0), 0x45);
        assert_eq!(l.read(reg::APR, 0), 0x45);
        l.set_irq(0x50);
        assert_eq!(l.pending_vector(), Some(0x50));
        l.write(reg::TPR, 0, 0);
        assert_eq!(l.read(reg::IRR + 0x20, 0), (1 << 15) | (1 << 16));
    }

    #[test]
    fn nothing_is_delivered_while_software_disabled() {
        let mut l = Vlapic::new(0, true);
        assert!(l.set_irq(0x40));
        assert_eq!(l.pending_vector(), None);
        l.write(reg::SVR, 0x1FF, 0);
        assert_eq!(l.pending_vector(), Some(0x40));
        assert!(!l.set_irq(5), "vectors below 16 are illegal");
    }

    #[test]
    fn lvts_stay_masked_while_software_disabled() {
        let mut l = Vlapic::new(0, true);
        l.write(reg::LVT_TIMER, 0x30, 0);
        assert_eq!(l.read(reg::LVT_TIMER, 0), 0x30 | LVT_MASKED);
        l.write(reg::SVR, 0x1FF, 0);
        l.write(reg::LVT_TIMER, 0xFFFF_FF30, 0);
        assert_eq!(
            l.read(reg::LVT_TIMER, 0),
            0x30 | LVT_MASKED | TIMER_PERIODIC
        );
        l.write(reg::SVR, 0xFF, 0);
        assert_ne!(l.read(reg::LVT_TIMER, 0) & LVT_MASKED, 0);
    }

    #[test]
    fn one_shot_timer() {
        let mut l = enabled();
        l.write(reg::TIMER_DIVIDE, 0x3, 0); // divide by 16
        assert_eq!(l.timer_divisor(), 16);
        l.write(reg::LVT_TIMER, 0x40, 0);
        assert_eq!(
            l.write(reg::TIMER_INITIAL, 1000, 100),
            WriteEffect::TimerChanged
        );
        assert_eq!(l.timer_deadline(), Some(100 + 16_000));
        assert_eq!(l.read(reg::TIMER_CURRENT, 100), 1000);
        assert_eq!(l.read(reg::TIMER_CURRENT, 100 + 8_000), 500);
        assert!(!l.expire_timer(100 + 15_999));
        assert!(l.expire_timer(100 + 16_000));
        assert_eq!(l.timer_deadline(), None);
        assert_eq!(l.read(reg::TIMER_CURRENT, 100 + 20_000), 0);
        assert_eq!(l.pending_vector(), Some(0x40));
        l.write(reg::TIMER_INITIAL, 0, 0);
        assert_eq!(l.timer_deadline(), None, "a zero count stops the timer");
    }

    #[test]
    fn periodic_timer_skips_missed_periods() {
        let mut l = enabled();
        l.write(reg::TIMER_DIVIDE, 0xB, 0); // divide by 1
        l.write(reg::LVT_TIMER, TIMER_PERIODIC | 0x41, 0);
        l.write(reg::TIMER_INITIAL, 1_000_000, 0);
        assert!(l.expire_timer(1_000_000));
        assert_eq!(l.timer_deadline(), Some(2_000_000));
        assert_eq!(l.read(reg::TIMER_CURRENT, 1_500_000), 500_000);
        assert!(l.expire_timer(5_550_000));
        assert_eq!(l.timer_deadline(), Some(6_000_000));
    }

    #[test]
    fn a_periodic_timer_ticks_at_most_every_100_microseconds() {
        // Defect 9: a 1 ns period re-armed the timer 1 ns ahead, so it was due
        // on every pass of the scheduling loop (a storm of exits and vectors).
        let mut l = enabled();
        l.write(reg::TIMER_DIVIDE, 0xB, 0); // divide by 1
        l.write(reg::LVT_TIMER, TIMER_PERIODIC | 0x41, 0);
        l.write(reg::TIMER_INITIAL, 1, 1_000);
        assert_eq!(
            l.timer_deadline(),
            Some(1_001),
            "the first tick is not delayed"
        );
        assert!(l.expire_timer(1_001));
        assert_eq!(l.timer_deadline(), Some(1_001 + MIN_TIMER_PERIOD_NS));
        l.acknowledge(0x41);
        l.eoi();
        assert!(!l.expire_timer(1_002), "not due again 1 ns later");
        // However late the pass, one tick, and the next 100 µs on.
        assert!(l.expire_timer(10_000_000));
        let next = l.timer_deadline().unwrap();
        assert!(next > 10_000_000 && next <= 10_000_000 + MIN_TIMER_PERIOD_NS);
        // The largest programmable period is unchanged.
        l.write(reg::TIMER_DIVIDE, 0xA, 0); // divide by 128
        l.write(reg::TIMER_INITIAL, u32::MAX, 0);
        assert!(l.expire_timer(128 * u64::from(u32::MAX)));
        assert_eq!(l.timer_deadline(), Some(256 * u64::from(u32::MAX)));
    }

    #[test]
    fn masked_timer_requests_nothing() {
        let mut l = enabled();
        l.write(reg::LVT_TIMER, LVT_MASKED | 0x40, 0);
        l.write(reg::TIMER_INITIAL, 10, 0);
        assert!(!l.expire_timer(1_000));
        assert_eq!(l.pending_vector(), None);
    }

    #[test]
    fn icr_decoding() {
        let mut l = enabled();
        l.write(reg::ICR_HI, 0x0312_3456, 0);
        assert_eq!(l.read(reg::ICR_HI, 0), 0x0300_0000);
        let effect = l.write(reg::ICR_LO, 0x0000_4830 | (1 << 12), 0);
        assert_eq!(
            effect,
            WriteEffect::SendIpi(Icr {
                vector: 0x30,
                mode: DeliveryMode::Fixed,
                logical: true,
                shorthand: Shorthand::None,
                dest: 3,
            })
        );
        assert_eq!(l.read(reg::ICR_LO, 0) & (1 << 12), 0, "always idle");
        let self_ipi = Icr::decode(0x0004_00F1, 0);
        assert_eq!(self_ipi.shorthand, Shorthand::SelfOnly);
        assert_eq!(Icr::decode(0x000C_0000, 0).shorthand, Shorthand::AllButSelf);
        assert_eq!(Icr::decode(0x0008_0400, 0).mode, DeliveryMode::Nmi);
        assert_eq!(Icr::decode(0x0000_C500, 0).mode, DeliveryMode::Init);
        assert_eq!(Icr::decode(0x0000_8500, 0).mode, DeliveryMode::InitDeassert);
        let sipi = Icr::decode(0x0000_0699, 0x0100_0000);
        assert_eq!(
            (sipi.mode, sipi.vector, sipi.dest),
            (DeliveryMode::Startup, 0x99, 1)
        );
    }

    #[test]
    fn destinations() {
        let mut l = enabled();
        assert!(l.accepts(3, false) && !l.accepts(2, false) && l.accepts(0xFF, false));
        l.write(reg::LDR, 0x0800_0000 | 0xFFFF, 0);
        assert_eq!(l.read(reg::LDR, 0), 0x0800_0000);
        assert!(l.accepts(0x0C, true) && !l.accepts(0x03, true));
        // Cluster model: cluster 0 in the high nibble, member bits below.
        l.write(reg::DFR, 0x0FFF_FFFF, 0);
        l.write(reg::LDR, 0x2400_0000, 0);
        assert_eq!(l.read(reg::DFR, 0), 0x0FFF_FFFF);
        assert!(l.accepts(0x24, true) && l.accepts(0x2C, true));
        assert!(!l.accepts(0x14, true) && !l.accepts(0x22, true));
    }

    #[test]
    fn base_msr_rules() {
        let mut l = Vlapic::new(0, true);
        let base = l.base_msr();
        assert!(!l.write_base_msr(0xFED0_0000 | BASE_ENABLE | BASE_BSP));
        assert!(!l.write_base_msr(base | 1 << 9), "reserved bit");
        assert!(!l.write_base_msr(base | 1 << 52), "reserved bit");
        // The BSP flag is the guest's to change, as on Xen.
        assert!(l.write_base_msr(base & !BASE_BSP));
        assert!(l.write_base_msr(base));
        l.write(reg::SVR, 0x1FF, 0);
        l.set_irq(0x80);
        assert!(l.write_base_msr(base & !BASE_ENABLE));
        assert!(!l.hw_enabled() && !l.set_irq(0x81));
        assert!(l.write_base_msr(base));
        assert_eq!(l.read(reg::SVR, 0), 0xFF, "reset by the disable");
        assert_eq!(l.read(reg::IRR + 0x40, 0), 0);
    }

    fn x2apic(id: u8) -> Vlapic {
        let mut l = Vlapic::new(id, false);
        l.write(reg::SVR, SVR_ENABLE | 0xFF, 0);
        assert!(l.write_base_msr(l.base_msr() | BASE_EXTD));
        l
    }

    /// MSR of the register at `offset`.
    fn msr(offset: u32) -> u32 {
        X2APIC_MSR_FIRST + offset / 0x10
    }

    /// IA32_APIC_BASE's mode changes: xAPIC to x2APIC and x2APIC to
    /// disabled only, as the SDM and Xen's `guest_wrmsr_apic_base`.
    #[test]
    fn x2apic_mode_changes() {
        let mut l = enabled();
        let base = l.base_msr();
        l.write(reg::LDR, 0x0800_0000, 0);
        l.write(reg::TPR, 0x20, 0);
        assert!(l.xapic_mode() && !l.x2apic_mode());
        assert_eq!(
            l.read_x2apic(msr(reg::TPR), 0),
            None,
            "no MSRs in xAPIC mode"
        );
        assert!(l.write_base_msr(base | BASE_EXTD));
        assert!(l.x2apic_mode() && !l.xapic_mode());
        // The registers stay; the logical ID is the ID's (3: cluster 0, bit 3).
        assert_eq!(l.read_x2apic(msr(reg::TPR), 0), Some(0x20));
        assert_eq!(l.read_x2apic(msr(reg::LDR), 0), Some(1 << 3));
        // Back to xAPIC, or disabled with EXTD still set: #GP.
        assert!(!l.write_base_msr(base));
        assert!(!l.write_base_msr((base | BASE_EXTD) & !BASE_ENABLE));
        // x2APIC mode does not check the base (no page to place).
        assert!(l.write_base_msr(0xFED0_0000 | BASE_ENABLE | BASE_EXTD));
        assert!(l.write_base_msr(base | BASE_EXTD));
        // Disabled: reset; from there not straight to x2APIC, nor EXTD alone.
        assert!(l.write_base_msr(base & !BASE_ENABLE));
        assert!(!l.hw_enabled() && !l.x2apic_mode());
        assert!(!l.write_base_msr(base | BASE_EXTD));
        assert!(!l.write_base_msr((base | BASE_EXTD) & !BASE_ENABLE));
        assert!(l.write_base_msr(base));
        assert_eq!(l.read(reg::LDR, 0), 0, "xAPIC again, reset");
        assert_eq!(l.read(reg::TPR, 0), 0);
        // An INIT in x2APIC mode keeps the mode and its logical ID.
        let mut l = x2apic(0x13);
        l.reset();
        assert!(l.x2apic_mode());
        assert_eq!(l.read_x2apic(msr(reg::LDR), 0), Some(1 << 16 | 1 << 3));
    }

    #[test]
    fn x2apic_reads() {
        let mut l = x2apic(0x25);
        assert_eq!(l.read_x2apic(msr(reg::ID), 0), Some(0x25), "the ID whole");
        assert_eq!(
            l.read_x2apic(msr(reg::VERSION), 0),
            Some(u64::from(VERSION))
        );
        assert_eq!(l.read_x2apic(msr(reg::LDR), 0), Some(2 << 16 | 1 << 5));
        assert_eq!(l.read_x2apic(msr(reg::SVR), 0), Some(0x1FF));
        assert_eq!(
            l.read_x2apic(msr(reg::LVT_TIMER), 0),
            Some(u64::from(LVT_MASKED))
        );
        assert_eq!(l.read_x2apic(msr(reg::CMCI), 0), Some(0));
        l.set_irq(0x61);
        assert_eq!(l.read_x2apic(msr(reg::IRR + 0x30), 0), Some(1 << 1));
        // Not readable: APR, EOI, remote read, DFR, ICR2, SELF_IPI, holes, past
        // the last register, outside the range.
        for offset in [
            reg::APR,
            reg::EOI,
            reg::RRD,
            reg::DFR,
            reg::ICR_HI,
            reg::SELF_IPI,
        ] {
            assert_eq!(l.read_x2apic(msr(offset), 0), None, "{offset:#x}");
        }
        for m in [0x801, 0x804, 0x829, 0x83A, 0x840, 0x8FF, 0x7FF, 0x900] {
            assert_eq!(l.read_x2apic(m, 0), None, "{m:#x}");
        }
        // The ICR as one 64-bit register.
        assert!(l
            .write_x2apic(msr(reg::ICR_LO), 0x0000_0007_0000_4030, 0)
            .is_some());
        assert_eq!(
            l.read_x2apic(msr(reg::ICR_LO), 0),
            Some(0x0000_0007_0000_4030)
        );
    }

    #[test]
    fn x2apic_writes() {
        let mut l = x2apic(2);
        let w = |l: &mut Vlapic, offset: u32, value: u64| l.write_x2apic(msr(offset), value, 0);
        assert_eq!(w(&mut l, reg::TPR, 0x30), Some(WriteEffect::None));
        assert_eq!(l.read_x2apic(msr(reg::PPR), 0), Some(0x30));
        assert_eq!(w(&mut l, reg::TPR, 0x130), None, "TPR reserved bits");
        assert_eq!(w(&mut l, reg::TPR, 1 << 32), None, "upper half reserved");
        // EOI and ESR take only 0.
        l.set_irq(0x80);
        l.acknowledge(0x80);
        assert_eq!(w(&mut l, reg::EOI, 1), None);
        assert!(l.in_service(0x80));
        assert_eq!(w(&mut l, reg::EOI, 0), Some(WriteEffect::None));
        assert!(!l.in_service(0x80));
        assert_eq!(w(&mut l, reg::ESR, 4), None);
        assert_eq!(w(&mut l, reg::ESR, 0), Some(WriteEffect::None));
        // Read-only and absent registers.
        for offset in [
            reg::ID,
            reg::VERSION,
            reg::PPR,
            reg::LDR,
            reg::DFR,
            reg::APR,
            reg::ISR,
            reg::TMR,
            reg::IRR,
            reg::TIMER_CURRENT,
            reg::ICR_HI,
            0x10,
        ] {
            assert_eq!(w(&mut l, offset, 0), None, "{offset:#x}");
        }
        assert_eq!(l.write_x2apic(0x900, 0, 0), None);
        // LVTs: reserved bits refused, the timer's mode bits taken.
        assert_eq!(w(&mut l, reg::LVT_TIMER, 0x700), None, "no delivery mode");
        assert_eq!(w(&mut l, reg::LVT_TIMER, 1 << 19), None);
        assert_eq!(
            w(&mut l, reg::LVT_TIMER, u64::from(TIMER_PERIODIC | 0x40)),
            Some(WriteEffect::None)
        );
        assert_eq!(w(&mut l, reg::LVT_LINT0, 0x8700), Some(WriteEffect::None));
        assert_eq!(w(&mut l, reg::LVT_ERROR, 0x400), None);
        assert_eq!(
            w(&mut l, reg::SVR, 0x1000),
            None,
            "directed EOI not offered"
        );
        assert_eq!(w(&mut l, reg::TIMER_DIVIDE, 0x4), None);
        assert_eq!(w(&mut l, reg::TIMER_DIVIDE, 0xB), Some(WriteEffect::None));
        assert_eq!(
            w(&mut l, reg::TIMER_INITIAL, 1000),
            Some(WriteEffect::TimerChanged)
        );
        assert_eq!(l.timer_deadline(), Some(1000));
        // The ICR: a 32-bit destination, reserved low bits refused (the
        // delivery status, bit 13, bits 16-17, 20-31).
        for bit in [12, 13, 16, 17, 20, 31] {
            assert_eq!(w(&mut l, reg::ICR_LO, 0x30 | 1 << bit), None, "bit {bit}");
        }
        assert_eq!(
            w(&mut l, reg::ICR_LO, 0x0001_0002_0000_0831),
            Some(WriteEffect::SendIpi(Icr {
                vector: 0x31,
                mode: DeliveryMode::Fixed,
                logical: true,
                shorthand: Shorthand::None,
                dest: 0x0001_0002,
            }))
        );
        // Self IPI: the vector only.
        assert_eq!(w(&mut l, reg::SELF_IPI, 0x100), None);
        let Some(WriteEffect::SendIpi(icr)) = w(&mut l, reg::SELF_IPI, 0x45) else {
            panic!("self IPI");
        };
        assert_eq!(
            (icr.vector, icr.mode, icr.shorthand),
            (0x45, DeliveryMode::Fixed, Shorthand::SelfOnly)
        );
        // Nothing in xAPIC mode.
        let mut x = enabled();
        assert_eq!(x.write_x2apic(msr(reg::TPR), 0, 0), None);
        assert_eq!(x.write_x2apic(msr(reg::EOI), 0, 0), None);
    }

    #[test]
    fn x2apic_destinations() {
        let l = x2apic(0x13);
        assert!(l.accepts(0x13, false) && l.accepts(u32::MAX, false) && l.accepts(u32::MAX, true));
        assert!(!l.accepts(0xFF, false), "0xFF is an ID in x2APIC mode");
        assert!(!l.accepts(0x0113, false));
        // Cluster 1, member bit 3.
        assert!(l.accepts(0x0001_0008, true) && l.accepts(0x0001_FFFF, true));
        assert!(!l.accepts(0x0000_0008, true) && !l.accepts(0x0001_0004, true));
    }

    #[test]
    fn vector_bits() {
        let mut b = VectorBits::default();
        assert_eq!(b.highest(), None);
        b.set(255);
        b.set(16);
        assert_eq!(b.highest(), Some(255));
        b.clear(255);
        assert_eq!(b.highest(), Some(16));
        assert!(b.test(16) && !b.test(17));
    }
}
