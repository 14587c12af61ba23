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

/// The host's conf1 mechanism (`0xCF8`/`0xCFC`): one latch for the whole
/// machine, so every configuration access rxen makes for dom0 sets it and
/// uses it under this lock.
static CONF1: spin::Mutex<()> = spin::Mutex::new(());

fn conf1_address(bdf: u16, reg: u16) -> u32 {
    (1 << 31) | u32::from(bdf) << 8 | u32::from(reg & 0xFC)
}

/// Reads `size` (1, 2 or 4) bytes at register `reg` (below 0x100, aligned
/// to the size) of function `bdf` of segment 0 through conf1.
pub fn pci_conf1_read(bdf: u16, reg: u16, size: u8) -> u32 {
    let _latch = CONF1.lock();
    dom0_access(0xCF8, 4, false, conf1_address(bdf, reg));
    dom0_access(0xCFC | (reg & 3), size, true, 0)
}

/// Writes the low `size` bytes of `value` at register `reg` of `bdf`
/// through conf1 (as [`pci_conf1_read`]).
pub fn pci_conf1_write(bdf: u16, reg: u16, size: u8, value: u32) {
    let _latch = CONF1.lock();
    dom0_access(0xCF8, 4, false, conf1_address(bdf, reg));
    dom0_access(0xCFC | (reg & 3), size, false, value);
}
