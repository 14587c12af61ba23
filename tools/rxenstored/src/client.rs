//! A small synchronous xenstore client, over a Unix socket or the guest end of a ring.
//! Used by the tests and the benchmark; it speaks the same protocol as libxenstore
//! (watch events arriving between a request and its reply are queued).

use crate::ring::GuestRing;
use crate::wire::{encode, join_strings, split_strings, FrameDecoder, Message, MsgType, XsError};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A client-side failure.
#[derive(Debug)]
pub enum ClientError {
    /// The daemon answered with `XS_ERROR`.
    Xs(XsError),
    /// Transport failure, timeout or malformed reply.
    Io(io::Error),
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl ClientError {
    /// The xenstore error, if that is what this is.
    pub fn xs(&self) -> Option<XsError> {
        match self {
            ClientError::Xs(e) => Some(*e),
            ClientError::Io(_) => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Xs(e) => write!(f, "{e}"),
            ClientError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A byte transport to the daemon.
pub trait Link {
    /// Sends all bytes.
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// Receives some bytes, waiting at most `timeout`; `Ok(0)` on timeout.
    fn recv(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> io::Result<usize>;
}

impl Link for UnixStream {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> io::Result<usize> {
        self.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut b = [0u8; 8192];
        match self.read(&mut b) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "daemon closed",
            )),
            Ok(n) => {
                buf.extend_from_slice(&b[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

impl Link for GuestRing {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if GuestRing::send(self, data, Duration::from_secs(10)) {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::TimedOut, "request ring full"))
        }
    }
    fn recv(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.recv_available();
            if !got.is_empty() {
                buf.extend_from_slice(&got);
                return Ok(got.len());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(0);
            }
            self.wait((deadline - now).min(Duration::from_millis(20)));
        }
    }
}

/// The dom0 kernel's xenstore device (`/dev/xen/xenbus`): the same messages on a
/// file, carried over the kernel's own ring.
pub struct XenbusDev(std::fs::File);

impl XenbusDev {
    /// The kernel's device path.
    pub const PATH: &'static str = "/dev/xen/xenbus";

    /// Opens the device.
    pub fn open(path: &Path) -> io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(XenbusDev(f))
    }
}

impl Link for XenbusDev {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(0);
        }
        let mut b = [0u8; 8192];
        let n = self.0.read(&mut b)?;
        buf.extend_from_slice(&b[..n]);
        Ok(n)
    }
}

/// A xenstore client over some [`Link`].
pub struct Client<L: Link> {
    link: L,
    dec: FrameDecoder,
    events: VecDeque<(String, String)>,
    next_req: u32,
    /// How long to wait for a reply.
    pub timeout: Duration,
}

impl Client<UnixStream> {
    /// Connects to a daemon socket.
    pub fn connect(path: &Path) -> io::Result<Self> {
        Ok(Client::new(UnixStream::connect(path)?))
    }
}

fn parse_event(m: &Message) -> Option<(String, String)> {
    let v = split_strings(&m.payload)?;
    (v.len() >= 2).then(|| (v[0].to_string(), v[1].to_string()))
}

impl<L: Link> Client<L> {
    /// Wraps a link.
    pub fn new(link: L) -> Self {
        Client {
            link,
            dec: FrameDecoder::new(),
            events: VecDeque::new(),
            next_req: 1,
            timeout: Duration::from_secs(10),
        }
    }

    /// The underlying link.
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    fn recv_message(&mut self, deadline: Instant) -> Result<Option<Message>> {
        loop {
            match self.dec.next_message() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()).into())
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut buf = Vec::new();
            self.link.recv(&mut buf, deadline - now)?;
            self.dec.push(&buf);
        }
    }

    /// Sends raw bytes (malformed-input tests).
    pub fn send_raw(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.link.send(data)?)
    }

    /// Receives the next non-event message (raw).
    pub fn recv_reply(&mut self) -> Result<Message> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.recv_message(deadline)? {
                None => return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply").into()),
                Some(m) if m.hdr.ty == MsgType::WatchEvent as u32 => {
                    if let Some(e) = parse_event(&m) {
                        self.events.push_back(e);
                    }
                }
                Some(m) => return Ok(m),
            }
        }
    }

    /// Sends one request and waits for its reply; `XS_ERROR` becomes `Err(Xs(..))`.
    pub fn request(&mut self, ty: MsgType, tx: u32, payload: &[u8]) -> Result<Vec<u8>> {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        self.link.send(&encode(ty as u32, req, tx, payload))?;
        let m = self.recv_reply()?;
        if m.hdr.req_id != req || m.hdr.tx_id != tx {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "ids not echoed").into());
        }
        if m.hdr.ty == MsgType::Error as u32 {
            let name = split_strings(&m.payload)
                .and_then(|v| v.first().and_then(|s| XsError::from_name(s)))
                .unwrap_or(XsError::Inval);
            return Err(ClientError::Xs(name));
        }
        if m.hdr.ty != ty as u32 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong reply type").into());
        }
        Ok(m.payload)
    }

    /// `XS_READ`.
    pub fn read(&mut self, tx: u32, path: &str) -> Result<Vec<u8>> {
        self.request(MsgType::Read, tx, &join_strings(&[path]))
    }

    /// `XS_WRITE`.
    pub fn write(&mut self, tx: u32, path: &str, value: &[u8]) -> Result<()> {
        let mut p = join_strings(&[path]);
        p.extend_from_slice(value);
        self.request(MsgType::Write, tx, &p).map(drop)
    }

    /// `XS_MKDIR`.
    pub fn mkdir(&mut self, tx: u32, path: &str) -> Result<()> {
        self.request(MsgType::Mkdir, tx, &join_strings(&[path]))
            .map(drop)
    }

    /// `XS_RM`.
    pub fn rm(&mut self, tx: u32, path: &str) -> Result<()> {
        self.request(MsgType::Rm, tx, &join_strings(&[path]))
            .map(drop)
    }

    /// `XS_DIRECTORY`.
    pub fn directory(&mut self, tx: u32, path: &str) -> Result<Vec<String>> {
        let p = self.request(MsgType::Directory, tx, &join_strings(&[path]))?;
        Ok(split_strings(&p)
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect())
    }

    /// `XS_GET_PERMS`.
    pub fn get_perms(&mut self, tx: u32, path: &str) -> Result<Vec<String>> {
        let p = self.request(MsgType::GetPerms, tx, &join_strings(&[path]))?;
        Ok(split_strings(&p)
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect())
    }

    /// `XS_SET_PERMS`.
    pub fn set_perms(&mut self, tx: u32, path: &str, perms: &[&str]) -> Result<()> {
        let mut v = vec![path];
        v.extend_from_slice(perms);
        self.request(MsgType::SetPerms, tx, &join_strings(&v))
            .map(drop)
    }

    /// `XS_WATCH`.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<()> {
        self.request(MsgType::Watch, 0, &join_strings(&[path, token]))
            .map(drop)
    }

    /// `XS_UNWATCH`.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<()> {
        self.request(MsgType::Unwatch, 0, &join_strings(&[path, token]))
            .map(drop)
    }

    /// `XS_TRANSACTION_START`: the new transaction id.
    pub fn tx_start(&mut self) -> Result<u32> {
        let p = self.request(MsgType::TransactionStart, 0, b"\0")?;
        split_strings(&p)
            .and_then(|v| v.first().and_then(|s| s.parse().ok()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad tx id").into())
    }

    /// `XS_TRANSACTION_END`.
    pub fn tx_end(&mut self, tx: u32, commit: bool) -> Result<()> {
        let arg = if commit { "T" } else { "F" };
        self.request(MsgType::TransactionEnd, tx, &join_strings(&[arg]))
            .map(drop)
    }

    /// `XS_INTRODUCE`.
    pub fn introduce(&mut self, domid: u32, mfn: u64, port: u32) -> Result<()> {
        let v = [domid.to_string(), mfn.to_string(), port.to_string()];
        self.request(MsgType::Introduce, 0, &join_strings(&v))
            .map(drop)
    }

    /// `XS_RELEASE`.
    pub fn release(&mut self, domid: u32) -> Result<()> {
        self.request(MsgType::Release, 0, &join_strings(&[domid.to_string()]))
            .map(drop)
    }

    /// The next watch event (path, token), waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<(String, String)>> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv_message(deadline)? {
                None => return Ok(None),
                Some(m) if m.hdr.ty == MsgType::WatchEvent as u32 => {
                    if let Some(e) = parse_event(&m) {
                        return Ok(Some(e));
                    }
                }
                Some(_) => {
                    return Err(
                        io::Error::new(io::ErrorKind::InvalidData, "unexpected reply").into(),
                    )
                }
            }
        }
    }
}
