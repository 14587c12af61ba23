//! Watches: one connection's registered (path, token) pairs and the rule deciding which
//! of them a change fires, and with which path the event is reported.

use crate::perms::Caller;
use crate::store::{canonicalize, domain_path, Fired, Match};
use crate::wire::XsError;

/// One registered watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Canonical watched path (or a special `@` name).
    pub path: String,
    /// The client's token, echoed in events.
    pub token: String,
    /// Bytes of the `/local/domain/<id>/` prefix to strip from event paths when the
    /// watch was registered with a relative path (0 otherwise).
    pub prefix_len: usize,
}

impl Watch {
    /// Builds a watch from a client path (relative paths resolve below the caller's home).
    pub fn new(caller: &Caller, path: &str, token: &str) -> Result<Self, XsError> {
        let relative = !path.starts_with('/') && !path.starts_with('@');
        let canonical = canonicalize(caller, path, true)?;
        Ok(Watch {
            path: canonical,
            token: token.to_string(),
            prefix_len: if relative {
                domain_path(caller.domid).len() + 1
            } else {
                0
            },
        })
    }

    /// The path to report for a change at canonical `name`.
    pub fn event_path<'a>(&self, name: &'a str) -> &'a str {
        name.get(self.prefix_len..).unwrap_or(name)
    }

    /// The path as the client registered it (for the initial event).
    pub fn client_path(&self) -> &str {
        self.event_path(&self.path)
    }

    /// Whether a change fires this watch.
    pub fn matches(&self, f: &Fired) -> bool {
        match f.kind {
            Match::Exact => f.path == self.path,
            Match::Subtree => is_child(&f.path, &self.path),
        }
    }
}

/// Whether `child` is `parent` or below it.
pub fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return child.starts_with('/');
    }
    match child.strip_prefix(parent) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A connection's watches.
#[derive(Debug, Clone, Default)]
pub struct WatchList {
    watches: Vec<Watch>,
}

impl WatchList {
    /// Adds a watch; `EEXIST` for a duplicate (same path and token).
    pub fn add(&mut self, w: Watch) -> Result<(), XsError> {
        if self
            .watches
            .iter()
            .any(|x| x.path == w.path && x.token == w.token)
        {
            return Err(XsError::Exist);
        }
        self.watches.push(w);
        Ok(())
    }

    /// Removes a watch; `ENOENT` if not registered.
    pub fn remove(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        let before = self.watches.len();
        self.watches
            .retain(|x| !(x.path == path && x.token == token));
        if self.watches.len() == before {
            Err(XsError::NoEnt)
        } else {
            Ok(())
        }
    }

    /// Drops every watch.
    pub fn clear(&mut self) {
        self.watches.clear();
    }

    /// Number of watches.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// The watches, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Watch> {
        self.watches.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Perms;

    fn fired(path: &str, kind: Match) -> Fired {
        Fired {
            path: path.into(),
            kind,
            perms: Perms::owner(0, 0),
            old_perms: None,
            parent_perms: None,
        }
    }

    #[test]
    fn child_rule() {
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(is_child("/x", "/"));
        assert!(!is_child("@introduceDomain", "/"));
    }

    #[test]
    fn relative_watch_reports_relative_paths() {
        let w = Watch::new(&Caller::guest(3), "device", "tok").unwrap();
        assert_eq!(w.path, "/local/domain/3/device");
        assert_eq!(w.client_path(), "device");
        let f = fired("/local/domain/3/device/vif/0", Match::Subtree);
        assert!(w.matches(&f));
        assert_eq!(w.event_path(&f.path), "device/vif/0");
        assert!(!w.matches(&fired("/local/domain/3/device/vif/0", Match::Exact)));
        assert!(w.matches(&fired("/local/domain/3/device", Match::Exact)));
        assert!(!w.matches(&fired("/local/domain/3/devices", Match::Subtree)));
    }

    #[test]
    fn list_errors() {
        let mut l = WatchList::default();
        let w = Watch::new(&Caller::DOM0, "/a", "t").unwrap();
        l.add(w.clone()).unwrap();
        assert_eq!(l.add(w), Err(XsError::Exist));
        assert_eq!(l.remove("/a", "u"), Err(XsError::NoEnt));
        l.remove("/a", "t").unwrap();
        assert!(l.is_empty());
        assert_eq!(Watch::new(&Caller::DOM0, "/a/", "t"), Err(XsError::Inval));
        assert!(Watch::new(&Caller::DOM0, "@releaseDomain", "t").is_ok());
    }
}
