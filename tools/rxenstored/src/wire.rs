//! The xenstore wire protocol of Xen's `xs_wire.h`: message types, the 16-byte
//! `xsd_sockmsg` header, the error names, and a streaming frame decoder.
//!
//! This module owns everything about bytes on the wire and nothing about their meaning.

use std::fmt;

/// Size of the `struct xsd_sockmsg` header: four little-endian `u32`s.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`: the largest payload either side may send.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: longest absolute path (below `/local/domain/N/`).
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: longest relative path.
pub const REL_PATH_MAX: usize = 2048;

/// A xenstore message type (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT` (daemon to client only).
    WatchEvent = 15,
    /// `XS_ERROR` (daemon to client only).
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (20 was `XS_RESTRICT`, removed).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
}

impl MsgType {
    /// Decodes a wire type number; `None` for numbers this daemon does not know.
    pub fn from_u32(v: u32) -> Option<Self> {
        use MsgType::*;
        Some(match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }

    /// The name Xen's logs use for this type.
    pub fn name(self) -> &'static str {
        use MsgType::*;
        match self {
            Control => "CONTROL",
            Directory => "DIRECTORY",
            Read => "READ",
            GetPerms => "GET_PERMS",
            Watch => "WATCH",
            Unwatch => "UNWATCH",
            TransactionStart => "TRANSACTION_START",
            TransactionEnd => "TRANSACTION_END",
            Introduce => "INTRODUCE",
            Release => "RELEASE",
            GetDomainPath => "GET_DOMAIN_PATH",
            Write => "WRITE",
            Mkdir => "MKDIR",
            Rm => "RM",
            SetPerms => "SET_PERMS",
            WatchEvent => "WATCH_EVENT",
            Error => "ERROR",
            IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            Resume => "RESUME",
            SetTarget => "SET_TARGET",
            ResetWatches => "RESET_WATCHES",
            DirectoryPart => "DIRECTORY_PART",
        }
    }
}

/// An error as xenstore sends it: the errno *name* in an `XS_ERROR` payload.
///
/// Only the names in `xs_wire.h`'s `xsd_errors[]` table are used, because clients
/// translate the string back through that table (anything else becomes `EINVAL`).
/// Quota violations are therefore sent as `ENOSPC`, as Xen's daemons do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsError {
    /// Invalid argument.
    Inval,
    /// Permission denied.
    Acces,
    /// Already exists (duplicate watch).
    Exist,
    /// Is a directory.
    IsDir,
    /// No such node, transaction or domain.
    NoEnt,
    /// Out of memory.
    NoMem,
    /// Quota exceeded (Xen's `EQUOTA` is `ENOSPC` on the wire).
    NoSpc,
    /// I/O error or internal inconsistency.
    Io,
    /// Directory not empty.
    NotEmpty,
    /// Unknown operation.
    NoSys,
    /// Write attempted on a read-only connection.
    RoFs,
    /// Busy (nested transaction).
    Busy,
    /// Transaction conflict: retry.
    Again,
    /// Already connected.
    IsConn,
    /// Reply or argument too large.
    TooBig,
    /// Operation not permitted (changing a node's owner).
    Perm,
}

impl XsError {
    /// The errno name as written on the wire (without the NUL).
    pub fn name(self) -> &'static str {
        use XsError::*;
        match self {
            Inval => "EINVAL",
            Acces => "EACCES",
            Exist => "EEXIST",
            IsDir => "EISDIR",
            NoEnt => "ENOENT",
            NoMem => "ENOMEM",
            NoSpc => "ENOSPC",
            Io => "EIO",
            NotEmpty => "ENOTEMPTY",
            NoSys => "ENOSYS",
            RoFs => "EROFS",
            Busy => "EBUSY",
            Again => "EAGAIN",
            IsConn => "EISCONN",
            TooBig => "E2BIG",
            Perm => "EPERM",
        }
    }

    /// Parses an `XS_ERROR` payload's name (as a client would).
    pub fn from_name(s: &str) -> Option<Self> {
        use XsError::*;
        [
            Inval, Acces, Exist, IsDir, NoEnt, NoMem, NoSpc, Io, NotEmpty, NoSys, RoFs, Busy,
            Again, IsConn, TooBig, Perm,
        ]
        .into_iter()
        .find(|e| e.name() == s)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for XsError {}

/// The decoded `struct xsd_sockmsg` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Raw message type number (may be unknown).
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0: none), echoed in the reply.
    pub tx_id: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// Decodes a header from 16 little-endian bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            ty: w(0),
            req_id: w(4),
            tx_id: w(8),
            len: w(12),
        }
    }

    /// Encodes the header as 16 little-endian bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.ty.to_le_bytes());
        out[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        out[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out
    }
}

/// One complete message: header plus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header (its `len` equals `payload.len()`).
    pub hdr: Header,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Message {
    /// Builds a message; the header length is taken from the payload.
    pub fn new(ty: u32, req_id: u32, tx_id: u32, payload: Vec<u8>) -> Self {
        Message {
            hdr: Header {
                ty,
                req_id,
                tx_id,
                len: payload.len() as u32,
            },
            payload,
        }
    }

    /// Serialises the message (header then payload).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self.hdr.ty, self.hdr.req_id, self.hdr.tx_id, &self.payload)
    }
}

/// Serialises one message.
pub fn encode(ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &Header {
            ty,
            req_id,
            tx_id,
            len: payload.len() as u32,
        }
        .encode(),
    );
    out.extend_from_slice(payload);
    out
}

/// Why a byte stream cannot be decoded any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A header announced more than [`PAYLOAD_MAX`] bytes: the peer broke the protocol
    /// and the stream cannot be resynchronised (Xen drops such a connection).
    TooLong(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong(n) => write!(f, "payload length {n} exceeds {PAYLOAD_MAX}"),
        }
    }
}

/// Incremental decoder: feed it bytes as they arrive, take out whole messages.
#[derive(Debug, Default, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    failed: Option<DecodeError>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet consumed as a message.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// How many more bytes are wanted to complete the current message (at least 1).
    pub fn wanted(&self) -> usize {
        if self.buf.len() < HEADER_LEN {
            return HEADER_LEN - self.buf.len();
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        let len = Header::decode(&h).len as usize;
        (HEADER_LEN + len.min(PAYLOAD_MAX))
            .saturating_sub(self.buf.len())
            .max(1)
    }

    /// Takes the next complete message, `Ok(None)` if more bytes are needed.
    /// Once an error is returned, every later call returns it too.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        let hdr = Header::decode(&h);
        if hdr.len as usize > PAYLOAD_MAX {
            let e = DecodeError::TooLong(hdr.len);
            self.failed = Some(e);
            return Err(e);
        }
        let total = HEADER_LEN + hdr.len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Message { hdr, payload }))
    }
}

/// Splits a payload into its NUL-terminated strings. Returns `None` unless the payload
/// is non-empty and ends in NUL; every string must be valid UTF-8 (paths and tokens
/// are ASCII in practice).
pub fn split_strings(payload: &[u8]) -> Option<Vec<&str>> {
    if payload.last() != Some(&0) {
        return None;
    }
    payload[..payload.len() - 1]
        .split(|&b| b == 0)
        .map(|s| std::str::from_utf8(s).ok())
        .collect()
}

/// Joins strings as a payload: each one followed by a NUL.
pub fn join_strings<S: AsRef<str>>(parts: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_ref().as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            ty: 2,
            req_id: 0xdead_beef,
            tx_id: 7,
            len: 12,
        };
        assert_eq!(Header::decode(&h.encode()), h);
        assert_eq!(&h.encode()[0..4], &[2, 0, 0, 0]);
    }

    #[test]
    fn decoder_handles_split_and_joined_frames() {
        let mut bytes = encode(2, 1, 0, b"/a\0");
        bytes.extend(encode(11, 2, 0, b"/a\0value"));
        let mut d = FrameDecoder::new();
        for b in &bytes {
            d.push(&[*b]);
        }
        let m1 = d.next_message().unwrap().unwrap();
        let m2 = d.next_message().unwrap().unwrap();
        assert_eq!(m1.payload, b"/a\0");
        assert_eq!(m2.hdr.req_id, 2);
        assert_eq!(d.next_message().unwrap(), None);
    }

    #[test]
    fn decoder_rejects_oversized_and_stays_failed() {
        let mut d = FrameDecoder::new();
        d.push(
            &Header {
                ty: 2,
                req_id: 0,
                tx_id: 0,
                len: 4097,
            }
            .encode(),
        );
        assert_eq!(d.next_message(), Err(DecodeError::TooLong(4097)));
        d.push(&encode(2, 1, 0, b"/\0"));
        assert!(d.next_message().is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(split_strings(b"a\0b\0"), Some(vec!["a", "b"]));
        assert_eq!(split_strings(b"a\0\0"), Some(vec!["a", ""]));
        assert_eq!(split_strings(b"a"), None);
        assert_eq!(split_strings(b""), None);
        assert_eq!(join_strings(&["x", "y"]), b"x\0y\0");
        assert_eq!(XsError::from_name("EAGAIN"), Some(XsError::Again));
        assert_eq!(MsgType::from_u32(20), None);
        assert_eq!(MsgType::from_u32(22), Some(MsgType::DirectoryPart));
    }
}
