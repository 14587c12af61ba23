//! The legacy 8259 interrupt controllers. The firmware leaves them on
//! vectors 8-15, on top of the CPU exceptions; rxen moves them to
//! [`PIC_VECTOR_BASE`] and masks every line, as Xen does once the local
//! APIC is in use.

use x86_64::instructions::port::Port;

/// First vector of the remapped master PIC (the slave follows at +8).
pub const PIC_VECTOR_BASE: u8 = 0x20;

/// Remaps both PICs away from the exception vectors and masks all lines.
pub fn disable_legacy_pic() {
    let mut master_cmd = Port::<u8>::new(0x20);
    let mut master_data = Port::<u8>::new(0x21);
    let mut slave_cmd = Port::<u8>::new(0xA0);
    let mut slave_data = Port::<u8>::new(0xA1);
    // SAFETY: these are the PC's 8259 ports; the ICW sequence below only
    // changes the PICs' vector base and masks, which no one else uses.
    unsafe {
        master_cmd.write(0x11); // ICW1: init, expect ICW4
        slave_cmd.write(0x11);
        master_data.write(PIC_VECTOR_BASE); // ICW2: vector base
        slave_data.write(PIC_VECTOR_BASE + 8);
        master_data.write(0x04); // ICW3: slave on IRQ2
        slave_data.write(0x02);
        master_data.write(0x01); // ICW4: 8086 mode
        slave_data.write(0x01);
        master_data.write(0xFF); // mask everything
        slave_data.write(0xFF);
    }
}
