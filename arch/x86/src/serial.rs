//! The 16550 UART behind `console=com1` and `com1=<baud>,<DPS>,<io-base>`.
//!
//! Written here rather than taken from a crate because Xen's options need the
//! baud rate, the line format and the I/O base to be configurable.

pub use rxen_core::cmdline::Parity;
use x86_64::instructions::port::Port;

/// Input clock of a PC UART: 1.8432 MHz / 16.
const UART_BASE_BAUD: u32 = 115_200;

/// Line settings for one UART.
#[derive(Clone, Copy, Debug)]
pub struct SerialSettings {
    /// I/O port base (0x3f8 for COM1).
    pub io_base: u16,
    /// Baud rate; `None` keeps what the firmware programmed.
    pub baud: Option<u32>,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
}

impl Default for SerialSettings {
    fn default() -> Self {
        Self {
            io_base: 0x3f8,
            baud: Some(115_200),
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        }
    }
}

/// One 16550 UART, polled (no interrupts); the console drains its
/// transmit ring into it while it reports room.
pub struct Serial {
    base: u16,
}

impl Serial {
    /// Programs the UART with `settings` and returns it.
    pub fn init(settings: &SerialSettings) -> Self {
        let serial = Self {
            base: settings.io_base,
        };
        let lcr_format = lcr_bits(settings);
        serial.out(1, 0x00); // IER: no interrupts
        if let Some(baud) = settings.baud.filter(|b| *b > 0 && *b <= UART_BASE_BAUD) {
            let divisor = (UART_BASE_BAUD / baud).max(1) as u16;
            serial.out(3, 0x80); // DLAB
            serial.out(0, (divisor & 0xff) as u8);
            serial.out(1, (divisor >> 8) as u8);
        }
        serial.out(3, lcr_format);
        serial.out(2, 0xC7); // FIFO on, cleared, 14-byte threshold
        serial.out(4, 0x03); // DTR | RTS
        serial
    }

    fn out(&self, reg: u16, value: u8) {
        let mut port = Port::<u8>::new(self.base + reg);
        // SAFETY: the port belongs to the UART that the command line named;
        // writing its registers has no effect on memory.
        unsafe { port.write(value) }
    }

    fn read(&self, reg: u16) -> u8 {
        let mut port = Port::<u8>::new(self.base + reg);
        // SAFETY: as in `out`; reading a UART register has no memory effect.
        unsafe { port.read() }
    }

    /// Sends one byte, waiting (bounded) for the transmitter to be ready.
    pub fn put_byte(&self, byte: u8) {
        for _ in 0..100_000 {
            if self.read(5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.out(0, byte);
    }

    /// Whether the transmitter holding register (and FIFO) is empty: the
    /// UART takes a FIFO's worth of bytes now.
    pub fn tx_empty(&self) -> bool {
        self.read(5) & 0x20 != 0
    }

    /// Sends one byte without looking at the transmitter (the caller saw
    /// it empty and sends at most a FIFO's worth).
    pub fn put_byte_now(&self, byte: u8) {
        self.out(0, byte);
    }

    /// Returns a received byte, if any.
    pub fn try_get_byte(&self) -> Option<u8> {
        (self.read(5) & 0x01 != 0).then(|| self.read(0))
    }
}

fn lcr_bits(settings: &SerialSettings) -> u8 {
    let data = settings.data_bits.clamp(5, 8) - 5;
    let stop = if settings.stop_bits >= 2 { 0x04 } else { 0 };
    let parity = match settings.parity {
        Parity::None => 0x00,
        Parity::Odd => 0x08,
        Parity::Even => 0x18,
        Parity::Mark => 0x28,
        Parity::Space => 0x38,
    };
    data | stop | parity
}
