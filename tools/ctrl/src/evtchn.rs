//! Event channels from user space (Xen's libxenevtchn): `/dev/xen/evtchn`. Binding
//! (to a VIRQ, to another domain's port, or a new port offered to a domain) gives a
//! local port; `read` returns the ports that fired, each masked until written back
//! (`unmask`); `notify` sends on a port. Closing the file unbinds everything.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::call::privcmd_ioctl;
use crate::{Error, Result};

/// `_IOC(_IOC_NONE, 'E', nr, size)`.
const fn evtchn_ioctl(nr: u64, size: usize) -> u64 {
    privcmd_ioctl(nr, size) & !0xff00 | ((b'E' as u64) << 8)
}

/// `IOCTL_EVTCHN_BIND_VIRQ`.
pub const IOCTL_EVTCHN_BIND_VIRQ: u64 = evtchn_ioctl(0, 4);
/// `IOCTL_EVTCHN_BIND_INTERDOMAIN`.
pub const IOCTL_EVTCHN_BIND_INTERDOMAIN: u64 = evtchn_ioctl(1, 8);
/// `IOCTL_EVTCHN_BIND_UNBOUND_PORT`.
pub const IOCTL_EVTCHN_BIND_UNBOUND_PORT: u64 = evtchn_ioctl(2, 4);
/// `IOCTL_EVTCHN_UNBIND`.
pub const IOCTL_EVTCHN_UNBIND: u64 = evtchn_ioctl(3, 4);
/// `IOCTL_EVTCHN_NOTIFY`.
pub const IOCTL_EVTCHN_NOTIFY: u64 = evtchn_ioctl(4, 4);

nix::ioctl_readwrite_bad!(ioctl_bind_virq, IOCTL_EVTCHN_BIND_VIRQ, u32);
nix::ioctl_readwrite_bad!(
    ioctl_bind_interdomain,
    IOCTL_EVTCHN_BIND_INTERDOMAIN,
    [u32; 2]
);
nix::ioctl_readwrite_bad!(ioctl_bind_unbound, IOCTL_EVTCHN_BIND_UNBOUND_PORT, u32);
nix::ioctl_readwrite_bad!(ioctl_unbind, IOCTL_EVTCHN_UNBIND, u32);
nix::ioctl_readwrite_bad!(ioctl_notify, IOCTL_EVTCHN_NOTIFY, u32);

/// An open `/dev/xen/evtchn`.
#[derive(Debug)]
pub struct Evtchn {
    file: File,
}

impl Evtchn {
    /// Opens the device.
    pub fn open() -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/evtchn")
            .map_err(|e| Error::io(e, "open /dev/xen/evtchn"))?;
        Ok(Self { file })
    }

    fn call(
        &self,
        what: &str,
        f: unsafe fn(i32, *mut u32) -> nix::Result<i32>,
        arg: &mut u32,
    ) -> Result<u32> {
        // SAFETY: `arg` is the one `unsigned int` these ioctls take.
        unsafe { f(self.file.as_raw_fd(), arg) }
            .map(|port| port as u32)
            .map_err(|e| Error::new(e as i32, what))
    }

    /// Binds VIRQ `virq` (a global one: `VIRQ_DOM_EXC`...): the local port.
    pub fn bind_virq(&self, virq: u32) -> Result<u32> {
        self.call("bind VIRQ", ioctl_bind_virq, &mut { virq })
    }

    /// Binds to `port` of domain `domain`: the local port.
    pub fn bind_interdomain(&self, domain: u32, port: u32) -> Result<u32> {
        let mut arg = [domain, port];
        // SAFETY: a `struct ioctl_evtchn_bind_interdomain`.
        unsafe { ioctl_bind_interdomain(self.file.as_raw_fd(), &mut arg) }
            .map(|p| p as u32)
            .map_err(|e| Error::new(e as i32, format!("bind to d{domain} port {port}")))
    }

    /// A new port offered to `domain`.
    pub fn bind_unbound(&self, domain: u32) -> Result<u32> {
        self.call("bind an unbound port", ioctl_bind_unbound, &mut { domain })
    }

    /// Unbinds local `port`.
    pub fn unbind(&self, port: u32) -> Result<()> {
        self.call("unbind", ioctl_unbind, &mut { port }).map(|_| ())
    }

    /// Sends an event on local `port`.
    pub fn notify(&self, port: u32) -> Result<()> {
        self.call("notify", ioctl_notify, &mut { port }).map(|_| ())
    }

    /// Waits for a port to fire (blocking read) and returns it; it stays masked
    /// until [`Evtchn::unmask`].
    pub fn pending(&mut self) -> Result<u32> {
        let mut port = [0u8; 4];
        self.file
            .read_exact(&mut port)
            .map_err(|e| Error::io(e, "read /dev/xen/evtchn"))?;
        Ok(u32::from_ne_bytes(port))
    }

    /// Unmasks `port` after its event was handled.
    pub fn unmask(&mut self, port: u32) -> Result<()> {
        self.file
            .write_all(&port.to_ne_bytes())
            .map_err(|e| Error::io(e, "write /dev/xen/evtchn"))
    }
}

impl AsFd for Evtchn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_linuxs() {
        assert_eq!(IOCTL_EVTCHN_BIND_VIRQ, 0x0004_4500);
        assert_eq!(IOCTL_EVTCHN_BIND_INTERDOMAIN, 0x0008_4501);
        assert_eq!(IOCTL_EVTCHN_NOTIFY, 0x0004_4504);
    }
}
