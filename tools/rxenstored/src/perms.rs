//! Node permissions: the `n0 r1 w2 b3` strings of the wire protocol and the rule that
//! decides what a caller may do with a node (Xen's `perm_for_conn`).
//!
//! The first entry names the owner and the access of every domain not listed; later
//! entries grant one domain `n`one, `r`ead, `w`rite or `b`oth.

use crate::wire::XsError;
use std::fmt;

/// Read access bit.
pub const READ: u8 = 1;
/// Write access bit.
pub const WRITE: u8 = 2;
/// Owner access bit (may change permissions).
pub const OWNER: u8 = 4;
/// `DOMID_ANY`: an entry matching every domain.
pub const DOMID_ANY: u32 = 0x7FF5;
/// Highest valid domain id in permission strings (`DOMID_FIRST_RESERVED` - 1, plus
/// the reserved ids that Xen also accepts here).
pub const DOMID_MAX: u32 = 0xFFFF;

/// One permission entry: a domain and its access (`READ`/`WRITE` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// Domain id.
    pub domid: u32,
    /// Access bits (`READ | WRITE`, possibly none).
    pub access: u8,
}

impl Perm {
    /// Parses one entry such as `r1`.
    pub fn parse(s: &str) -> Result<Self, XsError> {
        let mut chars = s.chars();
        let access = match chars.next() {
            Some('n') => 0,
            Some('r') => READ,
            Some('w') => WRITE,
            Some('b') => READ | WRITE,
            _ => return Err(XsError::Inval),
        };
        let digits = chars.as_str();
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(XsError::Inval);
        }
        let domid: u32 = digits.parse().map_err(|_| XsError::Inval)?;
        if domid > DOMID_MAX {
            return Err(XsError::Inval);
        }
        Ok(Perm { domid, access })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.access & (READ | WRITE) {
            0 => 'n',
            READ => 'r',
            WRITE => 'w',
            _ => 'b',
        };
        write!(f, "{c}{}", self.domid)
    }
}

/// A node's permission list; never empty (entry 0 is the owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perms(Vec<Perm>);

/// Who is asking: the identity a connection carries into every store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The caller's domain id (0 for dom0 sockets).
    pub domid: u32,
    /// Privileged callers (dom0 tools) bypass permissions and quotas.
    pub privileged: bool,
    /// A stub domain acting for `target` (set with `XS_SET_TARGET`).
    pub target: Option<u32>,
    /// Read-only connections may not modify anything (`EROFS`).
    pub readonly: bool,
}

impl Caller {
    /// A privileged read-write dom0 caller.
    pub const DOM0: Caller = Caller {
        domid: 0,
        privileged: true,
        target: None,
        readonly: false,
    };

    /// An unprivileged guest domain.
    pub fn guest(domid: u32) -> Caller {
        Caller {
            domid,
            privileged: false,
            target: None,
            readonly: false,
        }
    }

    fn matches(&self, domid: u32) -> bool {
        domid == self.domid || Some(domid) == self.target || domid == DOMID_ANY
    }
}

impl Perms {
    /// Permissions with only an owner entry.
    pub fn owner(domid: u32, others: u8) -> Self {
        Perms(vec![Perm {
            domid,
            access: others,
        }])
    }

    /// Builds from entries; `None` when empty.
    pub fn from_vec(v: Vec<Perm>) -> Option<Self> {
        (!v.is_empty()).then_some(Perms(v))
    }

    /// Parses the strings of a `SET_PERMS` request.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, XsError> {
        let v = items
            .iter()
            .map(|s| Perm::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Perms::from_vec(v).ok_or(XsError::Inval)
    }

    /// The entries.
    pub fn entries(&self) -> &[Perm] {
        &self.0
    }

    /// The owning domain.
    pub fn owner_id(&self) -> u32 {
        self.0[0].domid
    }

    /// Sets the owning domain, keeping the default access.
    pub fn set_owner(&mut self, domid: u32) {
        self.0[0].domid = domid;
    }

    /// The strings for a `GET_PERMS` reply.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.to_string()).collect()
    }

    /// What `caller` may do: a mask of `READ`, `WRITE`, `OWNER` (Xen's `perm_for_conn`).
    pub fn access_for(&self, caller: &Caller) -> u8 {
        let mask = if caller.readonly {
            READ
        } else {
            READ | WRITE | OWNER
        };
        if caller.privileged || caller.matches(self.0[0].domid) {
            return mask;
        }
        for p in &self.0[1..] {
            if caller.matches(p.domid) {
                return p.access & mask;
            }
        }
        self.0[0].access & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let p = Perms::parse(&["n0", "r1", "w2", "b3"]).unwrap();
        assert_eq!(p.to_strings(), vec!["n0", "r1", "w2", "b3"]);
        assert_eq!(p.owner_id(), 0);
        for bad in ["", "x1", "r", "r-1", "r1a", "r999999", "r65536"] {
            assert_eq!(Perm::parse(bad), Err(XsError::Inval), "{bad}");
        }
        assert!(Perms::parse::<&str>(&[]).is_err());
    }

    #[test]
    fn access_rules() {
        let p = Perms::parse(&["n5", "r1", "w2", "b3"]).unwrap();
        assert_eq!(p.access_for(&Caller::DOM0), READ | WRITE | OWNER);
        assert_eq!(p.access_for(&Caller::guest(5)), READ | WRITE | OWNER);
        assert_eq!(p.access_for(&Caller::guest(1)), READ);
        assert_eq!(p.access_for(&Caller::guest(2)), WRITE);
        assert_eq!(p.access_for(&Caller::guest(3)), READ | WRITE);
        assert_eq!(p.access_for(&Caller::guest(4)), 0);
        let mut stub = Caller::guest(9);
        stub.target = Some(5);
        assert_eq!(p.access_for(&stub), READ | WRITE | OWNER);
        let ro = Caller {
            readonly: true,
            ..Caller::DOM0
        };
        assert_eq!(p.access_for(&ro), READ);
        let any = Perms::parse(&["n0", "r32757"]).unwrap();
        assert_eq!(any.access_for(&Caller::guest(8)), READ);
    }
}
