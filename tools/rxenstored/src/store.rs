//! The store: a tree of nodes (value, permissions, ordered children, generation),
//! path canonicalisation, permission checks with Xen's errno-hiding rule, per-domain
//! node quotas, and transactions with per-node conflict detection.
//!
//! Watches are not kept here: every modifying operation returns the [`Fired`] records
//! that the daemon matches against the connections' watches.

use crate::perms::{Caller, Perms, OWNER, READ, WRITE};
use crate::wire::{XsError, REL_PATH_MAX};
use std::collections::HashMap;

/// Name of the special node watched for domain introductions.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Name of the special node watched for domain releases.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The value (arbitrary bytes).
    pub value: Vec<u8>,
    /// The permissions.
    pub perms: Perms,
    /// Child names, in creation order (as Xen lists them).
    pub children: Vec<String>,
    /// Generation: changes whenever the node (value, perms or child list) changes.
    pub gen: u64,
}

impl Node {
    fn new(perms: Perms) -> Self {
        Node {
            value: Vec::new(),
            perms,
            children: Vec::new(),
            gen: 0,
        }
    }

    /// Bytes of the child list as sent on the wire (each name NUL-terminated).
    pub fn children_len(&self) -> usize {
        self.children.iter().map(|c| c.len() + 1).sum()
    }

    /// The size Xen's node-size quota applies to.
    pub fn acc_size(&self) -> usize {
        self.value.len() + self.children_len() + 4 * self.perms.entries().len()
    }
}

/// Per-domain limits applied to unprivileged callers (dom0 is unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own.
    pub max_nodes: usize,
    /// Largest node (value, child list and permissions) in bytes.
    pub max_node_size: usize,
    /// Watches per connection.
    pub max_watches: usize,
    /// Open transactions per connection.
    pub max_transactions: usize,
    /// Permission entries per node.
    pub max_perms: usize,
}

impl Default for Quotas {
    /// Xen's defaults.
    fn default() -> Self {
        Quotas {
            max_nodes: 1000,
            max_node_size: 2048,
            max_watches: 128,
            max_transactions: 10,
            max_perms: 5,
        }
    }
}

/// How a change matches watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// Watches on the path or any ancestor fire.
    Subtree,
    /// Only watches on exactly this path fire (descendants of a removed node).
    Exact,
}

/// A change that may fire watches, with the permissions needed to decide who may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Canonical path that changed.
    pub path: String,
    /// Matching rule.
    pub kind: Match,
    /// The node's permissions (after the change, or at removal).
    pub perms: Perms,
    /// Permissions before a `SET_PERMS`, so watchers losing access still hear of it.
    pub old_perms: Option<Perms>,
    /// The parent's permissions: readable parent also permits the event.
    pub parent_perms: Option<Perms>,
}

impl Fired {
    /// Whether `caller` may receive this event (Xen's `watch_permitted`).
    pub fn permitted(&self, caller: &Caller) -> bool {
        let readable = |p: &Perms| p.access_for(caller) & READ != 0;
        readable(&self.perms)
            || self.old_perms.as_ref().is_some_and(readable)
            || self.parent_perms.as_ref().is_some_and(readable)
    }
}

/// An open transaction, isolated as in Xen (`access_node`): every node it accesses is
/// copied at first access, later accesses see that copy or the transaction's own
/// changes, never another connection's; the commit fails with `EAGAIN` if any accessed
/// node's generation changed meanwhile. Nodes it never accessed are not checked.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// Each accessed node as first seen (`None`: it did not exist).
    accessed: HashMap<String, Option<Node>>,
    /// The transaction's changes (`None`: removed), applied at commit.
    overlay: HashMap<String, Option<Node>>,
    owned_delta: HashMap<u32, i64>,
    events: Vec<Fired>,
}

impl Transaction {
    /// Number of nodes this transaction has touched (read or written).
    pub fn touched(&self) -> usize {
        self.accessed.len()
    }
}

/// The tree and its accounting.
#[derive(Debug, Clone)]
pub struct Store {
    nodes: HashMap<String, Node>,
    gen: u64,
    owned: HashMap<u32, usize>,
    /// Limits for unprivileged domains.
    pub quotas: Quotas,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(Quotas::default())
    }
}

/// Parent path of a canonical path other than `/`.
pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The home directory of a domain: `/local/domain/<domid>`.
pub fn domain_path(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

fn valid_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@'))
}

/// Turns a client path into a canonical one (Xen's `canonicalize`): relative paths are
/// taken below the caller's `/local/domain/<id>`; special `@` names only where allowed.
pub fn canonicalize(caller: &Caller, path: &str, allow_special: bool) -> Result<String, XsError> {
    if path.is_empty() || !valid_chars(path) || (path.starts_with('@') && !allow_special) {
        return Err(XsError::Inval);
    }
    let name = if path.starts_with('/') || path.starts_with('@') {
        path.to_string()
    } else {
        format!("{}/{}", domain_path(caller.domid), path)
    };
    if (name.ends_with('/') && name != "/") || name.contains("//") {
        return Err(XsError::Inval);
    }
    if !caller.privileged {
        let local_off = local_prefix_len(&name);
        if name.len() - local_off > REL_PATH_MAX {
            return Err(XsError::Inval);
        }
    }
    Ok(name)
}

/// Length of a leading `/local/domain/<n>/`, or 0.
fn local_prefix_len(name: &str) -> usize {
    const P: &str = "/local/domain/";
    let Some(rest) = name.strip_prefix(P) else {
        return 0;
    };
    let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 5 || rest.as_bytes().get(digits) != Some(&b'/') {
        return 0;
    }
    P.len() + digits + 1
}

/// Access to the tree, directly or through a transaction's overlay.
struct View<'a> {
    store: &'a mut Store,
    tx: Option<&'a mut Transaction>,
}

impl View<'_> {
    fn get(&mut self, path: &str) -> Option<Node> {
        match self.tx.as_deref_mut() {
            None => self.store.nodes.get(path).cloned(),
            Some(tx) => {
                if let Some(n) = tx.overlay.get(path).or_else(|| tx.accessed.get(path)) {
                    return n.clone();
                }
                let n = self.store.nodes.get(path).cloned();
                tx.accessed.insert(path.to_string(), n.clone());
                n
            }
        }
    }

    /// A node's permissions as the caller sees them, without recording an access: for
    /// the parent's permissions in watch events (Xen looks at the parent only when it
    /// fires the event, so writing a node does not access its parent).
    fn peek_perms(&self, path: &str) -> Option<Perms> {
        let n = match self.tx.as_deref() {
            Some(tx) => match tx.overlay.get(path).or_else(|| tx.accessed.get(path)) {
                Some(n) => n.as_ref(),
                None => self.store.nodes.get(path),
            },
            None => self.store.nodes.get(path),
        };
        n.map(|n| n.perms.clone())
    }

    /// Records a first access by a change (the operations read a node before changing
    /// it, so this only matters if one does not).
    fn observe(&mut self, path: &str) {
        if let Some(tx) = self.tx.as_deref_mut() {
            if !tx.accessed.contains_key(path) {
                let n = self.store.nodes.get(path).cloned();
                tx.accessed.insert(path.to_string(), n);
            }
        }
    }

    fn put(&mut self, path: &str, mut node: Node) {
        self.observe(path);
        // Every change takes a fresh generation, in a transaction too (as Xen's global
        // counter), so `XS_DIRECTORY_PART` sees a transaction's own changes.
        self.store.gen += 1;
        node.gen = self.store.gen;
        match self.tx.as_deref_mut() {
            None => {
                self.store.nodes.insert(path.to_string(), node);
            }
            Some(tx) => {
                tx.overlay.insert(path.to_string(), Some(node));
            }
        }
    }

    fn del(&mut self, path: &str) {
        self.observe(path);
        match self.tx.as_deref_mut() {
            None => {
                self.store.nodes.remove(path);
            }
            Some(tx) => {
                tx.overlay.insert(path.to_string(), None);
            }
        }
    }

    fn owned(&self, domid: u32) -> i64 {
        let base = self.store.owned.get(&domid).copied().unwrap_or(0) as i64;
        base + self
            .tx
            .as_deref()
            .and_then(|t| t.owned_delta.get(&domid).copied())
            .unwrap_or(0)
    }

    fn adjust_owned(&mut self, domid: u32, delta: i64) {
        match self.tx.as_deref_mut() {
            None => {
                let e = self.store.owned.entry(domid).or_insert(0);
                *e = (*e as i64 + delta).max(0) as usize;
            }
            Some(tx) => *tx.owned_delta.entry(domid).or_insert(0) += delta,
        }
    }

    fn fire(&mut self, events: &mut Vec<Fired>, f: Fired) {
        match self.tx.as_deref_mut() {
            None => events.push(f),
            Some(tx) => tx.events.push(f),
        }
    }

    /// Xen's `get_node` + `errno_from_parents`: a missing or forbidden node reports
    /// `EACCES` unless the nearest existing ancestor grants some of `perm`.
    fn get_checked(&mut self, caller: &Caller, name: &str, perm: u8) -> Result<Node, XsError> {
        let err = match self.get(name) {
            Some(n) if n.perms.access_for(caller) & perm == perm => return Ok(n),
            Some(_) => XsError::Acces,
            None => XsError::NoEnt,
        };
        if name.starts_with('@') {
            return Err(err);
        }
        let mut p = name;
        while p != "/" {
            p = parent_of(p);
            if let Some(n) = self.get(p) {
                return if n.perms.access_for(caller) & perm != 0 {
                    Err(err)
                } else {
                    Err(XsError::Acces)
                };
            }
        }
        Err(XsError::Acces)
    }
}

impl Store {
    /// A fresh store with Xen's initial nodes: `/`, `/tool`, `/tool/xenstored` and the
    /// special `@introduceDomain` and `@releaseDomain`, all owned by dom0.
    pub fn new(quotas: Quotas) -> Self {
        let mut s = Store {
            nodes: HashMap::new(),
            gen: 0,
            owned: HashMap::new(),
            quotas,
        };
        let dom0 = || Perms::owner(0, 0);
        let mut root = Node::new(dom0());
        root.children.push("tool".into());
        let mut tool = Node::new(dom0());
        tool.children.push("xenstored".into());
        for (p, n) in [
            ("/", root),
            ("/tool", tool),
            ("/tool/xenstored", Node::new(dom0())),
            (INTRODUCE_DOMAIN, Node::new(dom0())),
            (RELEASE_DOMAIN, Node::new(dom0())),
        ] {
            s.insert_raw(p.to_string(), n);
        }
        s
    }

    /// An empty store (no nodes at all), to be filled by [`Store::insert_raw`] when
    /// restoring saved state.
    pub fn empty(quotas: Quotas) -> Self {
        Store {
            nodes: HashMap::new(),
            gen: 0,
            owned: HashMap::new(),
            quotas,
        }
    }

    /// Inserts a node as is (used for the initial tree and restoring state), giving it a
    /// fresh generation and counting it for its owner.
    pub fn insert_raw(&mut self, path: String, mut node: Node) {
        self.gen += 1;
        node.gen = self.gen;
        *self.owned.entry(node.perms.owner_id()).or_insert(0) += 1;
        if let Some(old) = self.nodes.insert(path, node) {
            if let Some(c) = self.owned.get_mut(&old.perms.owner_id()) {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// Every node, unordered (for saving state and checks).
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the store has no nodes (never true after [`Store::new`]).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node at a canonical path, without permission checks.
    pub fn get_raw(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Nodes owned by `domid`.
    pub fn owned_by(&self, domid: u32) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn view<'a>(&'a mut self, tx: Option<&'a mut Transaction>) -> View<'a> {
        View { store: self, tx }
    }

    fn check_size(&self, caller: &Caller, node: &Node) -> Result<(), XsError> {
        if !caller.privileged && node.acc_size() > self.quotas.max_node_size {
            return Err(XsError::NoSpc);
        }
        Ok(())
    }

    /// `XS_READ`: the value of a node.
    pub fn read(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
    ) -> Result<Vec<u8>, XsError> {
        let name = canonicalize(caller, path, false)?;
        Ok(self.view(tx).get_checked(caller, &name, READ)?.value)
    }

    /// `XS_DIRECTORY` / `XS_DIRECTORY_PART`: the generation and child names of a node.
    pub fn directory(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
    ) -> Result<(u64, Vec<String>), XsError> {
        let name = canonicalize(caller, path, false)?;
        let n = self.view(tx).get_checked(caller, &name, READ)?;
        Ok((n.gen, n.children))
    }

    /// `XS_GET_PERMS`: a node's permissions (special `@` nodes allowed).
    pub fn get_perms(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
    ) -> Result<Perms, XsError> {
        let name = canonicalize(caller, path, true)?;
        Ok(self.view(tx).get_checked(caller, &name, READ)?.perms)
    }

    /// `XS_WRITE`: sets a value, creating the node and missing ancestors.
    pub fn write(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
        value: &[u8],
    ) -> Result<Vec<Fired>, XsError> {
        let name = canonicalize(caller, path, false)?;
        let quotas = self.quotas;
        let mut v = self.view(tx);
        let mut events = Vec::new();
        match v.get_checked(caller, &name, WRITE) {
            Ok(mut node) => {
                node.value = value.to_vec();
                v.store.check_size(caller, &node)?;
                let parent_perms = v.peek_perms(parent_of(&name));
                let perms = node.perms.clone();
                v.put(&name, node);
                v.fire(
                    &mut events,
                    Fired {
                        path: name,
                        kind: Match::Subtree,
                        perms,
                        old_perms: None,
                        parent_perms,
                    },
                );
            }
            Err(XsError::NoEnt) => create(&mut v, caller, &quotas, &name, value, &mut events)?,
            Err(e) => return Err(e),
        }
        Ok(events)
    }

    /// `XS_MKDIR`: creates an empty node (and ancestors); an existing node is fine.
    pub fn mkdir(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
    ) -> Result<Vec<Fired>, XsError> {
        let name = canonicalize(caller, path, false)?;
        let quotas = self.quotas;
        let mut v = self.view(tx);
        let mut events = Vec::new();
        match v.get_checked(caller, &name, WRITE) {
            Ok(_) => {}
            Err(XsError::NoEnt) => create(&mut v, caller, &quotas, &name, b"", &mut events)?,
            Err(e) => return Err(e),
        }
        Ok(events)
    }

    /// `XS_RM`: removes a node and its subtree. A missing node whose parent exists is
    /// not an error (as in Xen).
    pub fn rm(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
    ) -> Result<Vec<Fired>, XsError> {
        let name = canonicalize(caller, path, false)?;
        let mut v = self.view(tx);
        let mut events = Vec::new();
        let node = match v.get_checked(caller, &name, WRITE) {
            Ok(n) => n,
            Err(XsError::NoEnt) => {
                return if name != "/" && v.get(parent_of(&name)).is_some() {
                    Ok(events)
                } else {
                    Err(XsError::NoEnt)
                };
            }
            Err(e) => return Err(e),
        };
        if name == "/" {
            return Err(XsError::Inval);
        }
        let pname = parent_of(&name).to_string();
        let mut parent = v.get(&pname).ok_or(XsError::Io)?;
        // Depth-first walk: collect the subtree, then delete children before parents.
        let mut order = Vec::new();
        let mut stack = vec![(name.clone(), node)];
        while let Some((p, n)) = stack.pop() {
            for c in &n.children {
                let cp = child_path(&p, c);
                if let Some(cn) = v.get(&cp) {
                    stack.push((cp, cn));
                }
            }
            order.push((p, n));
        }
        let parent_perms = parent.perms.clone();
        for (p, n) in order.into_iter().rev() {
            v.del(&p);
            v.adjust_owned(n.perms.owner_id(), -1);
            let kind = if p == name {
                Match::Subtree
            } else {
                Match::Exact
            };
            v.fire(
                &mut events,
                Fired {
                    path: p,
                    kind,
                    perms: n.perms,
                    old_perms: None,
                    parent_perms: Some(parent_perms.clone()),
                },
            );
        }
        let base = basename(&name);
        parent.children.retain(|c| c != base);
        v.put(&pname, parent);
        Ok(events)
    }

    /// `XS_SET_PERMS`: replaces a node's permissions (owner or privileged callers;
    /// unprivileged callers may not give the node away).
    pub fn set_perms(
        &mut self,
        tx: Option<&mut Transaction>,
        caller: &Caller,
        path: &str,
        perms: Perms,
    ) -> Result<Vec<Fired>, XsError> {
        if !caller.privileged && perms.entries().len() > self.quotas.max_perms {
            return Err(XsError::NoSpc);
        }
        let name = canonicalize(caller, path, true)?;
        let mut v = self.view(tx);
        let mut node = v.get_checked(caller, &name, WRITE | OWNER)?;
        if !caller.privileged && perms.owner_id() != node.perms.owner_id() {
            return Err(XsError::Perm);
        }
        let old = std::mem::replace(&mut node.perms, perms.clone());
        v.adjust_owned(old.owner_id(), -1);
        v.adjust_owned(perms.owner_id(), 1);
        let parent_perms = if name.starts_with('@') || name == "/" {
            None
        } else {
            v.peek_perms(parent_of(&name))
        };
        v.put(&name, node);
        let mut events = Vec::new();
        v.fire(
            &mut events,
            Fired {
                path: name,
                kind: Match::Subtree,
                perms,
                old_perms: Some(old),
                parent_perms,
            },
        );
        Ok(events)
    }

    /// Starts a transaction.
    pub fn tx_start(&self) -> Transaction {
        Transaction::default()
    }

    /// Commits a transaction: `EAGAIN` if any node it accessed changed (or appeared, or
    /// went away) since its first access, `ENOSPC` if it would push an unprivileged
    /// caller over its node quota. On success returns the watch events queued during
    /// the transaction.
    pub fn tx_commit(&mut self, tx: Transaction, caller: &Caller) -> Result<Vec<Fired>, XsError> {
        for (p, n) in &tx.accessed {
            if self.nodes.get(p).map(|n| n.gen) != n.as_ref().map(|n| n.gen) {
                return Err(XsError::Again);
            }
        }
        if !caller.privileged {
            let d = tx.owned_delta.get(&caller.domid).copied().unwrap_or(0);
            if d > 0 && self.owned_by(caller.domid) as i64 + d > self.quotas.max_nodes as i64 {
                return Err(XsError::NoSpc);
            }
        }
        for (p, n) in tx.overlay {
            match n {
                Some(mut n) => {
                    self.gen += 1;
                    n.gen = self.gen;
                    self.nodes.insert(p, n);
                }
                None => {
                    self.nodes.remove(&p);
                }
            }
        }
        for (d, delta) in tx.owned_delta {
            let e = self.owned.entry(d).or_insert(0);
            *e = (*e as i64 + delta).max(0) as usize;
        }
        Ok(merge_events(tx.events))
    }

    /// Checks the tree's invariants (every listed child exists and every node is listed
    /// by its parent, owner counts add up). Returns a description of the first problem.
    pub fn check(&self) -> Result<(), String> {
        if !self.nodes.contains_key("/") {
            return Err("no root".into());
        }
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for (p, n) in &self.nodes {
            *counts.entry(n.perms.owner_id()).or_insert(0) += 1;
            for c in &n.children {
                if !self.nodes.contains_key(&child_path(p, c)) {
                    return Err(format!("{p} lists missing child {c}"));
                }
            }
            if p != "/" && !p.starts_with('@') {
                let parent = self
                    .nodes
                    .get(parent_of(p))
                    .ok_or_else(|| format!("{p} has no parent"))?;
                if !parent.children.iter().any(|c| c == basename(p)) {
                    return Err(format!("{p} not listed by its parent"));
                }
            }
        }
        for (d, c) in &counts {
            if self.owned_by(*d) != *c {
                return Err(format!(
                    "dom{d} owns {c} nodes, counted {}",
                    self.owned_by(*d)
                ));
            }
        }
        Ok(())
    }
}

/// A transaction's events as Xen fires them at commit (`queue_watches`): one per node,
/// in the order of the first change, matching the subtree if any change did. A node
/// whose permissions changed keeps its first ones as old permissions, so watchers who
/// could read it before or after hear of it.
fn merge_events(events: Vec<Fired>) -> Vec<Fired> {
    if events.len() < 2 {
        return events;
    }
    let mut out: Vec<Fired> = Vec::with_capacity(events.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for f in events {
        match at.get(&f.path) {
            None => {
                at.insert(f.path.clone(), out.len());
                out.push(f);
            }
            Some(&i) => {
                let o = &mut out[i];
                o.kind = o.kind.min(f.kind);
                if o.perms != f.perms {
                    let first = std::mem::replace(&mut o.perms, f.perms);
                    o.old_perms.get_or_insert(first);
                }
                if f.parent_perms.is_some() {
                    o.parent_perms = f.parent_perms;
                }
            }
        }
    }
    out
}

/// Xen's `create_node`: creates `name` and any missing ancestors, inheriting the
/// nearest existing ancestor's permissions (unprivileged creators become the owner).
fn create(
    v: &mut View<'_>,
    caller: &Caller,
    quotas: &Quotas,
    name: &str,
    value: &[u8],
    events: &mut Vec<Fired>,
) -> Result<(), XsError> {
    let mut missing = vec![name.to_string()];
    let mut p = parent_of(name).to_string();
    let mut parent = loop {
        if let Some(n) = v.get(&p) {
            break n;
        }
        if p == "/" {
            return Err(XsError::Io);
        }
        missing.push(p.clone());
        p = parent_of(&p).to_string();
    };
    if !caller.privileged && v.owned(caller.domid) + missing.len() as i64 > quotas.max_nodes as i64
    {
        return Err(XsError::NoSpc);
    }
    let mut first_parent = parent.clone();
    first_parent
        .children
        .push(basename(&missing[missing.len() - 1]).to_string());
    v.store.check_size(caller, &first_parent)?;
    let mut leaf = Node::new(parent.perms.clone());
    leaf.value = value.to_vec();
    v.store.check_size(caller, &leaf)?;

    let mut parent_path = p;
    let mut last_parent_perms = parent.perms.clone();
    for path in missing.iter().rev() {
        parent.children.push(basename(path).to_string());
        let mut perms = parent.perms.clone();
        if !caller.privileged {
            perms.set_owner(caller.domid);
        }
        last_parent_perms = parent.perms.clone();
        v.put(&parent_path, parent);
        v.adjust_owned(perms.owner_id(), 1);
        parent = Node::new(perms);
        parent_path = path.clone();
    }
    parent.value = value.to_vec();
    let perms = parent.perms.clone();
    v.put(&parent_path, parent);
    v.fire(
        events,
        Fired {
            path: name.to_string(),
            kind: Match::Subtree,
            perms,
            old_perms: None,
            parent_perms: Some(last_parent_perms),
        },
    );
    Ok(())
}
