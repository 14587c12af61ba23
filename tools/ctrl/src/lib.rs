//! The control domain's library: what Xen's toolstack libraries do, over the devices
//! Linux gives a dom0 (`/dev/xen/privcmd`, `/dev/xen/hypercall`):
//! - [`call`]: hypercalls from user space (Xen's libxencall), with argument buffers
//!   the kernel keeps resident;
//! - [`foreignmemory`]: another domain's frames mapped into this process (Xen's
//!   libxenforeignmemory: privcmd's `MMAPBATCH_V2` and `MMAP_RESOURCE`);
//! - [`xc`]: `domctl`, `sysctl`, `memory_op` and the other calls a toolstack makes
//!   on domains (Xen's libxenctrl), typed with the ABI crate's structures;
//! - [`evtchn`]: event channels (Xen's libxenevtchn, `/dev/xen/evtchn`);
//! - [`gnttab`]: other domains' grants mapped here (Xen's libxengnttab,
//!   `/dev/xen/gntdev`).
//!
//! Errors are Xen's errno values ([`Error`]): Linux's privcmd hands back the
//! hypervisor's negative return as the ioctl's errno.

pub mod call;
pub mod evtchn;
pub mod foreignmemory;
pub mod gnttab;
pub mod xc;

use std::fmt;

/// A failed call: the Xen errno the hypervisor (or Linux) answered, and what was
/// being done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The errno value (positive; Xen's and Linux's numbers agree for these).
    pub errno: i32,
    /// What failed, for messages.
    pub what: String,
}

impl Error {
    /// An error `errno` while doing `what`.
    pub fn new(errno: i32, what: impl Into<String>) -> Self {
        Self {
            errno,
            what: what.into(),
        }
    }

    /// From an I/O error of a device call.
    pub fn io(err: std::io::Error, what: impl Into<String>) -> Self {
        Self::new(err.raw_os_error().unwrap_or(libc_eio()), what)
    }
}

/// `EIO`, for errors that carry no errno.
const fn libc_eio() -> i32 {
    5
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {text}", self.what)
    }
}

impl std::error::Error for Error {}

/// A result of this library.
pub type Result<T> = std::result::Result<T, Error>;
