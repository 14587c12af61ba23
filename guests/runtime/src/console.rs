//! Console output through `HYPERVISOR_console_io(CONSOLEIO_write)`.
//!
//! A PVH guest gets no emulated UART from Xen, so the console hypercall is the only
//! output. Xen prints a hardware domain's console output raw on its serial console (a
//! domU's goes to its console ring or, with `guest_loglvl`, prefixed with `(dN)`).
//! Each [`print!`](crate::print) formats into a stack buffer and writes it in as few
//! hypercalls as possible, so lines from one call are not split.

use core::fmt;

/// The buffer size of one [`Writer`].
pub const BUF: usize = 256;

/// Formats into a fixed buffer and calls `sink` when it fills up and when flushed.
pub struct Writer<F: FnMut(&[u8])> {
    buf: [u8; BUF],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8])> Writer<F> {
    /// A writer that hands full buffers to `sink`.
    pub fn new(sink: F) -> Self {
        Writer {
            buf: [0; BUF],
            len: 0,
            sink,
        }
    }

    /// Hands what is buffered to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8])> fmt::Write for Writer<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == BUF {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Writes `args` to the Xen console (used by the print macros).
pub fn print(args: fmt::Arguments) {
    let mut w = Writer::new(|bytes| {
        crate::hypercall::console_write(bytes);
    });
    let _ = fmt::write(&mut w, args);
    w.flush();
}

/// Prints to the Xen console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the Xen console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// A `fmt::Write` into a byte slice (truncates silently), for building strings without
/// allocation.
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    /// A writer into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, len: 0 }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// The text of a NUL-terminated byte buffer (up to the first NUL, or all of it), or
/// `"<not UTF-8>"`.
pub fn c_str(buf: &[u8]) -> &str {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    core::str::from_utf8(&buf[..end]).unwrap_or("<not UTF-8>")
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::fmt::Write;
    use std::vec::Vec;

    #[test]
    fn writer_chunks_and_flushes() {
        let mut out: Vec<Vec<u8>> = Vec::new();
        {
            let mut w = Writer::new(|b: &[u8]| out.push(b.to_vec()));
            for _ in 0..300 {
                w.write_str("x").unwrap();
            }
            w.flush();
            w.flush();
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), BUF);
        assert_eq!(out[1].len(), 300 - BUF);
    }

    #[test]
    fn slice_writer_truncates() {
        let mut buf = [0u8; 4];
        let mut w = SliceWriter::new(&mut buf);
        write!(w, "hello").unwrap();
        assert_eq!(w.as_bytes(), b"hell");
    }

    #[test]
    fn c_strings() {
        assert_eq!(c_str(b"abc\0def"), "abc");
        assert_eq!(c_str(b"abc"), "abc");
        assert_eq!(c_str(b"\xff\0"), "<not UTF-8>");
    }
}
