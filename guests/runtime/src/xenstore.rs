//! A guest's own xenstore connection (`public/io/xs_wire.h`): the ring page and event
//! channel the toolstack gave it (`HVM_PARAM_STORE_PFN`, `HVM_PARAM_STORE_EVTCHN`),
//! one request at a time, each reply waited for (blocking on events). Requests:
//! `XS_READ`, `XS_WRITE`, `XS_DIRECTORY`; paths without a leading `/` are relative to
//! the guest's `/local/domain/<id>`, as the daemon resolves them.
//!
//! Waiting needs the shared-info page mapped and timer events set up
//! ([`crate::time::map_shared_info`], [`crate::events::set_up_timer_events`]); a
//! daemon that does not answer within [`TIMEOUT_NS`] ends the test with ERROR.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::events::{send, wait_until};
use crate::hypercall::hvm_get_param;
use crate::xen::hvm;

/// `XS_DIRECTORY`.
pub const XS_DIRECTORY: u32 = 1;
/// `XS_READ`.
pub const XS_READ: u32 = 2;
/// `XS_WRITE`.
pub const XS_WRITE: u32 = 11;
/// `XS_ERROR`: the reply's payload is an errno name (`"ENOENT\0"`).
pub const XS_ERROR: u32 = 16;

/// How long a request may wait for room in the ring or for its reply.
pub const TIMEOUT_NS: u64 = 10_000_000_000;

/// `struct xenstore_domain_interface`: `req[1024]`, `rsp[1024]`, then `req_cons`,
/// `req_prod`, `rsp_cons`, `rsp_prod`.
const RING: u32 = 1024;
const RSP: usize = 1024;
const REQ_CONS: usize = 2048;
const REQ_PROD: usize = 2052;
const RSP_CONS: usize = 2056;
const RSP_PROD: usize = 2060;

/// `struct xsd_sockmsg` (type, request id, transaction id, payload length), as the
/// bytes on the ring.
pub fn header(ty: u32, req_id: u32, len: u32) -> [u8; 16] {
    let mut msg = [0u8; 16];
    for (i, v) in [ty, req_id, 0, len].iter().enumerate() {
        msg[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    msg
}

/// The type, request id and payload length of a `struct xsd_sockmsg`.
pub fn parse_header(msg: &[u8; 16]) -> (u32, u32, u32) {
    let word =
        |i: usize| u32::from_le_bytes([msg[4 * i], msg[4 * i + 1], msg[4 * i + 2], msg[4 * i + 3]]);
    (word(0), word(1), word(3))
}

/// A request the daemon refused: the errno name of its `XS_ERROR` reply (`ENOENT`,
/// `EACCES`, ...), or `"reply"` for a reply of another type than the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    name: [u8; 16],
    len: usize,
}

impl Error {
    fn new(bytes: &[u8]) -> Error {
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        let len = bytes.len().min(16);
        let mut name = [0u8; 16];
        name[..len].copy_from_slice(&bytes[..len]);
        Error { name, len }
    }

    /// The errno name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.name[..self.len]).unwrap_or("?")
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guest's connection to xenstore.
pub struct Store {
    base: *mut u8,
    pfn: u64,
    port: u32,
    next_id: u32,
}

impl Store {
    /// Connects over the ring and port of `HVM_PARAM_STORE_PFN`/`_EVTCHN` (the page
    /// must be identity-mapped, i.e. below 4 GiB) and unmasks the port; ends the test
    /// with ERROR if there are none.
    pub fn connect() -> Store {
        let (Ok(pfn), Ok(port)) = (
            hvm_get_param(hvm::PARAM_STORE_PFN),
            hvm_get_param(hvm::PARAM_STORE_EVTCHN),
        ) else {
            crate::error!("no xenstore params");
        };
        if pfn == 0 || pfn >= 1 << 20 {
            crate::error!("xenstore page {pfn:#x}: none, or beyond the identity map");
        }
        if crate::events::unmask(port as u32) != 0 {
            crate::error!("cannot unmask the xenstore port");
        }
        Store {
            base: (pfn * 4096) as *mut u8,
            pfn,
            port: port as u32,
            next_id: 1,
        }
    }

    /// The ring's guest frame.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// The event channel to the daemon.
    pub fn port(&self) -> u32 {
        self.port
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: an aligned index word of the mapped ring page, shared with the
        // daemon: atomic accesses only.
        unsafe { AtomicU32::from_ptr(self.base.add(at).cast()) }
    }

    fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
        if !wait_until(TIMEOUT_NS, || done(self)) {
            crate::error!(
                "xenstore: no {what} within {} s",
                TIMEOUT_NS / 1_000_000_000
            );
        }
    }

    /// Sends one request (`ty`, `payload`) and copies its reply's payload into
    /// `reply`: the reply's type and length. A reply longer than `reply` ends the test
    /// with ERROR.
    pub fn request(&mut self, ty: u32, payload: &[u8], reply: &mut [u8]) -> (u32, usize) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let msg = header(ty, id, payload.len() as u32);
        for bytes in [&msg[..], payload] {
            for &b in bytes {
                self.wait("room in the request ring", |s| {
                    s.index(REQ_PROD)
                        .load(Ordering::Relaxed)
                        .wrapping_sub(s.index(REQ_CONS).load(Ordering::Acquire))
                        < RING
                });
                let prod = self.index(REQ_PROD).load(Ordering::Relaxed);
                // SAFETY: inside the ring page's `req` array.
                unsafe { self.base.add((prod % RING) as usize).write_volatile(b) };
                self.index(REQ_PROD)
                    .store(prod.wrapping_add(1), Ordering::Release);
            }
        }
        send(self.port);
        let mut head = [0u8; 16];
        self.take(&mut head);
        let (rty, rid, len) = parse_header(&head);
        let len = len as usize;
        crate::check_eq!(rid, id, "the xenstore reply's request id");
        if len > reply.len() {
            crate::error!("xenstore: a reply of {len} bytes");
        }
        self.take(&mut reply[..len]);
        (rty, len)
    }

    /// Takes `out.len()` bytes of the response ring, waiting for them.
    fn take(&mut self, out: &mut [u8]) {
        for b in out.iter_mut() {
            self.wait("reply", |s| {
                s.index(RSP_PROD).load(Ordering::Acquire)
                    != s.index(RSP_CONS).load(Ordering::Relaxed)
            });
            let cons = self.index(RSP_CONS).load(Ordering::Relaxed);
            // SAFETY: inside the ring page's `rsp` array.
            *b = unsafe { self.base.add(RSP + (cons % RING) as usize).read_volatile() };
            self.index(RSP_CONS)
                .store(cons.wrapping_add(1), Ordering::Release);
        }
        send(self.port);
    }

    /// A request whose payload is `parts` one after the other (at most 256 bytes).
    fn request_parts(
        &mut self,
        ty: u32,
        parts: &[&[u8]],
        reply: &mut [u8],
    ) -> Result<usize, Error> {
        let mut payload = [0u8; 256];
        let mut len = 0;
        for part in parts {
            if len + part.len() > payload.len() {
                crate::error!("xenstore: a request of more than {} bytes", payload.len());
            }
            payload[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        let (rty, n) = self.request(ty, &payload[..len], reply);
        match rty {
            XS_ERROR => Err(Error::new(&reply[..n])),
            t if t == ty => Ok(n),
            _ => Err(Error::new(b"reply")),
        }
    }

    /// `XS_READ` of `path` into `out`: the value's length.
    pub fn read(&mut self, path: &str, out: &mut [u8]) -> Result<usize, Error> {
        self.request_parts(XS_READ, &[path.as_bytes(), b"\0"], out)
    }

    /// `XS_READ` of `path` as a decimal number (`None` if absent or not a number).
    pub fn read_u64(&mut self, path: &str) -> Option<u64> {
        let mut buf = [0u8; 24];
        let n = self.read(path, &mut buf).ok()?;
        crate::start_info::parse_u64(core::str::from_utf8(&buf[..n]).ok()?)
    }

    /// `XS_WRITE` of `value` at `path`.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        let mut ok = [0u8; 8];
        self.request_parts(XS_WRITE, &[path.as_bytes(), b"\0", value], &mut ok)
            .map(|_| ())
    }

    /// `XS_DIRECTORY` of `path` into `out`: the children's names, each ended by a NUL;
    /// the bytes used.
    pub fn directory(&mut self, path: &str, out: &mut [u8]) -> Result<usize, Error> {
        self.request_parts(XS_DIRECTORY, &[path.as_bytes(), b"\0"], out)
    }
}

/// The names of an `XS_DIRECTORY` reply.
pub fn names(reply: &[u8]) -> impl Iterator<Item = &str> {
    reply
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| core::str::from_utf8(n).unwrap_or("?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = header(XS_WRITE, 7, 300);
        assert_eq!(&h[..4], &[11, 0, 0, 0]);
        assert_eq!(&h[8..12], &[0; 4]);
        assert_eq!(parse_header(&h), (XS_WRITE, 7, 300));
    }

    #[test]
    fn errors_and_names() {
        assert_eq!(Error::new(b"ENOENT\0").as_str(), "ENOENT");
        assert_eq!(Error::new(b"").as_str(), "");
        assert_eq!(names(b"51712\x0051728\0").count(), 2);
        assert_eq!(names(b"51712\x0051728\0").nth(1), Some("51728"));
        assert_eq!(names(b"").count(), 0);
    }
}
