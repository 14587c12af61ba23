//! dom0's I/O ports (Xen's `dom0_setup_permissions` and `setup_io_bitmap`):
//! a 1:1 dom0 reaches the machine's ports directly, but for those
//! [`rxen_core::ioport_policy`] traps: the legacy PIC and PIT and the ACPI PM
//! timer (denied: read all ones), rxen's UART (denied), the debug console,
//! and the ports rxen watches or mediates (PM1 control, reset, keyboard
//! controller, RTC, PCI configuration), whose accesses it carries out on the
//! hardware itself after looking at them.

use rxen_core::ioport_policy::{HostPorts, IoPortPolicy};
use rxen_x86::frame::HostFrames;
use spin::Once;

/// The policy and dom0's I/O permission map (12 KiB, physically contiguous,
/// a bit per port: set = intercepted).
struct Dom0Ports {
    policy: IoPortPolicy,
    iopm: u64,
}

static DOM0: Once<Option<Dom0Ports>> = Once::new();

/// Builds dom0's policy and permission map from the host's facts: rxen's
/// UART at `uart` and the FADT's ports. None when memory runs out (dom0's
/// ports then stay all trapped).
pub fn init(uart: Option<u16>) {
    DOM0.call_once(|| {
        let pm = crate::acpi::pm_ports();
        let policy = IoPortPolicy::new(&HostPorts {
            uart,
            pm_timer: pm.pm_timer,
            pm1a_control: pm.pm1a_control,
            pm1b_control: pm.pm1b_control,
            disabled: alloc::vec::Vec::new(),
        });
        let mut iopm: HostFrames = crate::memory::alloc_owned(3)?;
        let bytes = iopm.as_bytes_mut();
        bytes.fill(0);
        for range in policy.trapped() {
            for port in range {
                if let Some(byte) = bytes.get_mut(usize::from(port / 8)) {
                    *byte |= 1 << (port % 8);
                }
            }
        }
        // Kept for the hypervisor's lifetime.
        Some(Dom0Ports {
            policy,
            iopm: iopm.into_raw().0,
        })
    });
}

/// dom0's I/O permission map, if built.
pub fn dom0_iopm() -> Option<u64> {
    DOM0.get()?.as_ref().map(|d| d.iopm)
}

/// What dom0's `size`-byte access to `port` does (`None`: no policy, every
/// port trapped and emulated as an empty bus).
pub fn policy(port: u16, size: u8) -> Option<rxen_core::ioport_policy::PortPolicy> {
    Some(DOM0.get()?.as_ref()?.policy.policy(port, size))
}
