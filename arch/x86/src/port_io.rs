//! Port I/O carried out on the hardware on behalf of the hardware domain
//! (dom0), for the ports the hypervisor traps to look at but that belong to
//! dom0 (PM1 control, reset, keyboard controller, RTC, PCI configuration).

use x86_64::instructions::port::Port;

/// Does dom0's `size`-byte (1, 2 or 4) access to `port` on the hardware:
/// an IN returns the value read, an OUT writes `value` and returns 0.
/// The caller's port policy decided that dom0 owns the port.
pub fn dom0_access(port: u16, size: u8, is_in: bool, value: u32) -> u32 {
    // SAFETY: the port belongs to dom0, which owns the machine's devices
    // (the policy keeps rxen's UART, the PIC, the PIT and the interrupt
    // controllers out); the hypervisor uses none of these ports after boot,
    // so the access changes nothing rxen relies on.
    unsafe {
        match (size, is_in) {
            (1, true) => u32::from(Port::<u8>::new(port).read()),
            (2, true) => u32::from(Port::<u16>::new(port).read()),
            (_, true) => Port::<u32>::new(port).read(),
            (1, false) => {
                Port::<u8>::new(port).write(value as u8);
                0
            }
            (2, false) => {
                Port::<u16>::new(port).write(value as u16);
                0
            }
            (_, false) => {
                Port::<u32>::new(port).write(value);
                0
            }
        }
    }
}
