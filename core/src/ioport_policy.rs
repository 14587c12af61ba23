//! Which I/O ports a PVH dom0 reaches directly, which the hypervisor
//! emulates or mediates, and which it denies (Xen's
//! `arch/x86/dom0_build.c:dom0_setup_permissions` and
//! `arch/x86/setup.c:setup_io_bitmap`, with issue 10's additions).
//!
//! As Xen: every port passes through to the hardware (its intercept bit
//! clear) except
//! * the PIC (`0x20-0x21`, `0xA0-0xA1`), the PIT's channels 0 and 1
//!   (`0x40-0x41`, and `0x42`, `0x43`, `0x61` but for single bytes), the
//!   ACPI PM timer (4 ports from the FADT), rxen's own UART (8 ports) and
//!   `dom0_ioports_disable=` ranges: denied, reads return all ones and
//!   writes are dropped (so `0x21` and `0xA1` read `0xFF`, which Linux's
//!   `probe_8259A` takes for "no PIC");
//! * `0xCF8`: a 4-byte access is the vPCI address latch; `0xCFC-0xCFF`: the
//!   vPCI data window (Xen's `vpci_portio_accept`);
//! * `0x70-0x71`: the RTC/CMOS, mediated, 1-byte accesses only
//!   (`hvm/rtc.c:hw_rtc_io`);
//! * `0xE9`: the HVM debug console (1-byte);
//! * `0x42`, `0x43`, `0x61` (1-byte): rxen's emulated PIT channel 2
//!   ([`crate::i8254`]). **Deviation from Xen**, which denies them to a
//!   PVH dom0 too: Linux's `quick_pit_calibrate` spins 100,000 port reads
//!   against an absent PIT, seconds of boot under emulation. rxen uses the
//!   host's PIT only while it boots itself (calibrating its TSC), so the
//!   hardware's PIT stays denied and dom0 gets the model.
//!
//! An access that a handler does not take whole, or that touches any
//! trapped port without a handler, is denied (Xen's null handler): for
//! example a 2-byte access at `0x1F`, or a 2-byte access at `0xCF8`.
//!
//! rxen's addition (issue 10, the machine's life cycle): the FADT's PM1a /
//! PM1b control ports, the reset control port `0xCF9` and the keyboard
//! controller's command port `0x64` are [`PortPolicy::Watched`]: trapped,
//! carried out on the hardware by the platform, which ends rxen when dom0
//! powers off or resets the machine through them. Xen passes them through.
//!
//! Not wired yet: the hypervisor's I/O intercept handling does not consult
//! this table today, nor builds the I/O permission map from
//! [`IoPortPolicy::is_trapped`].
// Firmware input (FADT ports) is used here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;
use core::ops::RangeInclusive;

/// PCI configuration address port (conf1).
pub const PCI_CONF_ADDRESS: u16 = 0xCF8;
/// First PCI configuration data port.
pub const PCI_CONF_DATA: u16 = 0xCFC;
/// RTC/CMOS index port (`RTC_PORT(0)`).
pub const RTC_PORT0: u16 = 0x70;
/// Xen's HVM debug console port (`XEN_HVM_DEBUGCONS_IOPORT`).
pub const XEN_HVM_DEBUGCONS_IOPORT: u16 = 0xE9;
/// Reset control register (Intel PIIX/ICH; QEMU q35).
pub const RESET_CONTROL: u16 = 0xCF9;
/// i8042 keyboard controller command/status port.
pub const KBD_COMMAND: u16 = 0x64;

/// Why a port is denied to dom0 (for the log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The 8259A PICs.
    Pic,
    /// The 8254 PIT and port 0x61.
    Pit,
    /// The ACPI PM timer.
    PmTimer,
    /// rxen's serial console.
    RxenUart,
    /// Listed in `dom0_ioports_disable=`.
    Disabled,
    /// The access touches a trapped port but no handler takes it whole
    /// (wrong size, straddles handlers, past port 0xFFFF).
    Unhandled,
}

/// Ports rxen watches to follow the machine's life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// ACPI PM1a or PM1b control (SLP_TYP/SLP_EN: sleep, poweroff).
    Pm1Control,
    /// Reset control `0xCF9`.
    ResetControl,
    /// Keyboard controller command port `0x64` (`0xFE` pulses reset).
    KeyboardController,
}

/// What happens to a dom0 access to an I/O port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortPolicy {
    /// Straight to the hardware: the intercept bits are clear.
    Passthrough,
    /// Reads return all ones, writes are dropped.
    Denied(DenyReason),
    /// The vPCI address latch (4-byte access to `0xCF8`).
    PciConfigAddress,
    /// The vPCI data window (`0xCFC-0xCFF`; the access's size and alignment
    /// are vPCI's to check).
    PciConfigData,
    /// The RTC/CMOS (1-byte access to `0x70` or `0x71`), mediated.
    Rtc,
    /// The debug console (1-byte access to `0xE9`): writes are console
    /// output, reads return all ones.
    DebugConsole,
    /// The emulated PIT channel 2 and port `0x61` (1-byte accesses to
    /// `0x42`, `0x43`, `0x61`, [`crate::i8254`]).
    Pit,
    /// Trapped and carried out on the hardware, watched.
    Watched(Watch),
}

/// The host facts the policy is built from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPorts {
    /// Base of rxen's UART (`com1=` / the console), 8 ports.
    pub uart: Option<u16>,
    /// The FADT's PM timer block (4 ports), if in I/O space.
    pub pm_timer: Option<u16>,
    /// The FADT's PM1a control block (2 ports).
    pub pm1a_control: Option<u16>,
    /// The FADT's PM1b control block (2 ports).
    pub pm1b_control: Option<u16>,
    /// `dom0_ioports_disable=` ranges.
    pub disabled: Vec<RangeInclusive<u16>>,
}

/// One trapped range and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Deny(RangeInclusive<u16>, DenyReason),
    Watch(RangeInclusive<u16>, Watch),
    /// Trapped for a handler that [`IoPortPolicy::policy`] matches itself.
    Handler(RangeInclusive<u16>),
}

impl Entry {
    fn range(&self) -> &RangeInclusive<u16> {
        match self {
            Entry::Deny(r, _) | Entry::Watch(r, _) | Entry::Handler(r) => r,
        }
    }
}

/// `len` ports from `base`, clamped at port 0xFFFF (firmware may name a
/// block at the top of the space).
fn block(base: u16, len: u16) -> RangeInclusive<u16> {
    base..=base.saturating_add(len.saturating_sub(1))
}

/// The I/O port policy of a PVH dom0 on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoPortPolicy {
    /// First match wins: rxen's UART, then the handlers, then the rest.
    entries: Vec<Entry>,
}

impl IoPortPolicy {
    /// The policy on a host with these facts.
    pub fn new(host: &HostPorts) -> Self {
        let mut entries = Vec::new();
        if let Some(base) = host.uart {
            entries.push(Entry::Deny(block(base, 8), DenyReason::RxenUart));
        }
        entries.push(Entry::Handler(PCI_CONF_ADDRESS..=PCI_CONF_ADDRESS));
        entries.push(Entry::Handler(block(PCI_CONF_DATA, 4)));
        entries.push(Entry::Handler(block(RTC_PORT0, 2)));
        entries.push(Entry::Handler(
            XEN_HVM_DEBUGCONS_IOPORT..=XEN_HVM_DEBUGCONS_IOPORT,
        ));
        entries.push(Entry::Deny(0x20..=0x21, DenyReason::Pic));
        entries.push(Entry::Deny(0xA0..=0xA1, DenyReason::Pic));
        entries.push(Entry::Deny(0x40..=0x41, DenyReason::Pit));
        entries.push(Entry::Handler(
            crate::i8254::PIT_CH2..=crate::i8254::PIT_MODE,
        ));
        entries.push(Entry::Handler(
            crate::i8254::SPEAKER_PORT..=crate::i8254::SPEAKER_PORT,
        ));
        if let Some(base) = host.pm_timer {
            entries.push(Entry::Deny(block(base, 4), DenyReason::PmTimer));
        }
        for r in &host.disabled {
            if r.start() <= r.end() {
                entries.push(Entry::Deny(r.clone(), DenyReason::Disabled));
            }
        }
        for base in [host.pm1a_control, host.pm1b_control].into_iter().flatten() {
            entries.push(Entry::Watch(block(base, 2), Watch::Pm1Control));
        }
        entries.push(Entry::Watch(
            RESET_CONTROL..=RESET_CONTROL,
            Watch::ResetControl,
        ));
        entries.push(Entry::Watch(
            KBD_COMMAND..=KBD_COMMAND,
            Watch::KeyboardController,
        ));
        Self { entries }
    }

    /// The first entry holding `port`.
    fn entry(&self, port: u16) -> Option<&Entry> {
        self.entries.iter().find(|e| e.range().contains(&port))
    }

    /// Whether accesses to `port` must be intercepted (its bit in the I/O
    /// permission map is set).
    pub fn is_trapped(&self, port: u16) -> bool {
        self.entry(port).is_some()
    }

    /// What a `size`-byte access at `port` does.
    pub fn policy(&self, port: u16, size: u8) -> PortPolicy {
        if !matches!(size, 1 | 2 | 4) {
            return PortPolicy::Denied(DenyReason::Unhandled);
        }
        // The last port touched; past 0xFFFF nothing takes the access.
        let Some(last) = port.checked_add(u16::from(size).saturating_sub(1)) else {
            return PortPolicy::Denied(DenyReason::Unhandled);
        };
        let first = self.entry(port);
        // rxen's UART first: nothing of it reaches dom0.
        if let Some(Entry::Deny(_, DenyReason::RxenUart)) = first {
            return PortPolicy::Denied(DenyReason::RxenUart);
        }
        let touches_uart = (port..=last)
            .any(|p| matches!(self.entry(p), Some(Entry::Deny(_, DenyReason::RxenUart))));
        if !touches_uart {
            // The handlers, each taking only what Xen's accepts.
            match (port, size) {
                (PCI_CONF_ADDRESS, 4) => return PortPolicy::PciConfigAddress,
                (0xCFC..=0xCFF, _) => return PortPolicy::PciConfigData,
                (0x70 | 0x71, 1) => return PortPolicy::Rtc,
                (XEN_HVM_DEBUGCONS_IOPORT, 1) => return PortPolicy::DebugConsole,
                _ if crate::i8254::handles(port, size) => return PortPolicy::Pit,
                _ => {}
            }
        }
        match first {
            None if (port..=last).all(|p| !self.is_trapped(p)) => PortPolicy::Passthrough,
            Some(Entry::Deny(r, why)) if r.contains(&last) => PortPolicy::Denied(*why),
            Some(Entry::Watch(r, what)) if r.contains(&last) => PortPolicy::Watched(*what),
            // A trapped port the access does not fit, or a handler's port
            // with a size it does not take.
            Some(Entry::Deny(_, why)) if !touches_uart => PortPolicy::Denied(*why),
            _ if touches_uart => PortPolicy::Denied(DenyReason::RxenUart),
            _ => PortPolicy::Denied(DenyReason::Unhandled),
        }
    }

    /// The trapped ranges (first match wins where they overlap), for
    /// building the I/O permission map and for the boot log.
    pub fn trapped(&self) -> impl Iterator<Item = RangeInclusive<u16>> + '_ {
        self.entries.iter().map(|e| e.range().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU q35 with SeaBIOS: PM base 0x600 (PM1a event 0x600, control
    /// 0x604, timer 0x608), rxen's console on COM1.
    fn q35() -> IoPortPolicy {
        IoPortPolicy::new(&HostPorts {
            uart: Some(0x3F8),
            pm_timer: Some(0x608),
            pm1a_control: Some(0x604),
            pm1b_control: None,
            disabled: Vec::new(),
        })
    }

    use PortPolicy::*;

    #[test]
    fn denied_as_xen() {
        let p = q35();
        for (port, why) in [
            (0x20, DenyReason::Pic),
            (0x21, DenyReason::Pic),
            (0xA0, DenyReason::Pic),
            (0xA1, DenyReason::Pic),
            (0x40, DenyReason::Pit),
            (0x41, DenyReason::Pit),
            (0x608, DenyReason::PmTimer),
            (0x60B, DenyReason::PmTimer),
            (0x3F8, DenyReason::RxenUart),
            (0x3FF, DenyReason::RxenUart),
        ] {
            assert_eq!(p.policy(port, 1), Denied(why), "{port:#x}");
            assert!(p.is_trapped(port));
        }
        // The PM timer as Linux reads it.
        assert_eq!(p.policy(0x608, 4), Denied(DenyReason::PmTimer));
    }

    #[test]
    fn emulated_and_mediated() {
        let p = q35();
        assert_eq!(p.policy(0xCF8, 4), PciConfigAddress);
        for port in 0xCFC..=0xCFF {
            for size in [1, 2, 4] {
                assert_eq!(p.policy(port, size), PciConfigData);
            }
        }
        assert_eq!(p.policy(0x70, 1), Rtc);
        assert_eq!(p.policy(0x71, 1), Rtc);
        assert_eq!(p.policy(0xE9, 1), DebugConsole);
        // rxen's PIT channel 2, single bytes only (Xen: denied).
        for port in [0x42, 0x43, 0x61] {
            assert_eq!(p.policy(port, 1), PortPolicy::Pit, "{port:#x}");
            assert!(p.is_trapped(port));
            assert_eq!(p.policy(port, 2), Denied(DenyReason::Unhandled));
        }
        assert_eq!(p.policy(0x41, 2), Denied(DenyReason::Pit));
        assert_eq!(p.policy(0x604, 2), Watched(Watch::Pm1Control));
        assert_eq!(p.policy(0xCF9, 1), Watched(Watch::ResetControl));
        assert_eq!(p.policy(0x64, 1), Watched(Watch::KeyboardController));
    }

    #[test]
    fn everything_else_passes_through() {
        let p = q35();
        // Keyboard data, POST delay, IDE, the PM1 event block, fw_cfg, the
        // QEMU ACPI hotplug ports, COM2, a virtio legacy BAR, the top.
        for port in [
            0x60, 0x80, 0x1F0, 0x600, 0x602, 0x510, 0xAE00, 0x2F8, 0xC000, 0xFFFF,
        ] {
            assert_eq!(p.policy(port, 1), Passthrough, "{port:#x}");
            assert!(!p.is_trapped(port));
        }
        assert_eq!(p.policy(0xC000, 4), Passthrough);
        // 0xCF9-0xCFB are not trapped by Xen, but 0xCF9 is watched here;
        // 0xCFA/0xCFB pass.
        assert_eq!(p.policy(0xCFA, 2), Passthrough);
        // Only these few ports are trapped at all.
        let trapped = (0..=0xFFFFu16).filter(|&x| p.is_trapped(x)).count();
        assert_eq!(trapped, 2 + 2 + 4 + 1 + 4 + 8 + 1 + 4 + 2 + 1 + 2 + 1 + 1);
    }

    #[test]
    fn partial_and_odd_accesses_are_denied() {
        let p = q35();
        // Straddling a denied range from a free port.
        assert_eq!(p.policy(0x1F, 2), Denied(DenyReason::Unhandled));
        assert_eq!(p.policy(0x3F6, 4), Denied(DenyReason::RxenUart));
        // 0xCF8 with a size other than 4 (conf2 probes): null handler.
        assert_eq!(p.policy(0xCF8, 1), Denied(DenyReason::Unhandled));
        assert_eq!(p.policy(0xCF8, 2), Denied(DenyReason::Unhandled));
        // RTC with 2 or 4 bytes, debug console with 2.
        assert_eq!(p.policy(0x70, 2), Denied(DenyReason::Unhandled));
        assert_eq!(p.policy(0x6F, 2), Denied(DenyReason::Unhandled));
        assert_eq!(p.policy(0xE9, 2), Denied(DenyReason::Unhandled));
        assert_eq!(p.policy(0xE8, 2), Denied(DenyReason::Unhandled));
        // A PM1 control access reaching past its block.
        assert_eq!(p.policy(0x604, 4), Denied(DenyReason::Unhandled));
        // Sizes that do not exist, and the top of the space.
        for size in [0, 3, 5, 8, 255] {
            assert_eq!(p.policy(0x80, size), Denied(DenyReason::Unhandled));
        }
        assert_eq!(p.policy(0xFFFF, 2), Denied(DenyReason::Unhandled));
        assert_eq!(p.policy(0xFFFE, 4), Denied(DenyReason::Unhandled));
    }

    #[test]
    fn rxens_uart_wins_over_everything() {
        // A console UART placed over the RTC and the PCI ports (garbage, but
        // from the command line).
        let p = IoPortPolicy::new(&HostPorts {
            uart: Some(0x6E),
            ..HostPorts::default()
        });
        assert_eq!(p.policy(0x70, 1), Denied(DenyReason::RxenUart));
        assert_eq!(p.policy(0x6D, 2), Denied(DenyReason::RxenUart));
        let p = IoPortPolicy::new(&HostPorts {
            uart: Some(0xCF8),
            ..HostPorts::default()
        });
        assert_eq!(p.policy(0xCF8, 4), Denied(DenyReason::RxenUart));
        assert_eq!(p.policy(0xCFC, 4), Denied(DenyReason::RxenUart));
        assert_eq!(p.policy(0xCF4, 4), Passthrough);
        assert_eq!(p.policy(0xCF6, 4), Denied(DenyReason::RxenUart));
    }

    #[test]
    fn garbage_host_facts() {
        // Blocks at the top of the port space, an inverted disable range, a
        // disable range covering everything.
        let p = IoPortPolicy::new(&HostPorts {
            uart: Some(0xFFFC),
            pm_timer: Some(0xFFFE),
            pm1a_control: Some(0xFFFF),
            pm1b_control: Some(0),
            #[allow(clippy::reversed_empty_ranges)]
            disabled: alloc::vec![0x500..=0x400],
        });
        assert_eq!(p.policy(0xFFFF, 1), Denied(DenyReason::RxenUart));
        assert_eq!(p.policy(0x0, 2), Watched(Watch::Pm1Control));
        assert_eq!(p.policy(0x450, 1), Passthrough);
        let all = IoPortPolicy::new(&HostPorts {
            disabled: alloc::vec![0..=0xFFFF],
            ..HostPorts::default()
        });
        assert_eq!(all.policy(0x80, 1), Denied(DenyReason::Disabled));
        // The handlers still take their accesses (as Xen's do).
        assert_eq!(all.policy(0xCF8, 4), PciConfigAddress);
        let q35 = q35();
        for port in 0..=0xFFFF {
            for size in 0..=8 {
                all.policy(port, size);
                q35.policy(port, size);
            }
        }
    }

    #[test]
    fn dom0_ioports_disable() {
        let p = IoPortPolicy::new(&HostPorts {
            disabled: alloc::vec![0x2F8..=0x2FF],
            ..HostPorts::default()
        });
        assert_eq!(p.policy(0x2F8, 1), Denied(DenyReason::Disabled));
        assert_eq!(p.policy(0x2FC, 4), Denied(DenyReason::Disabled));
        assert_eq!(p.policy(0x2F7, 1), Passthrough);
        assert_eq!(p.policy(0x2F6, 4), Denied(DenyReason::Unhandled));
    }
}
