//! Grant tables, version 1, for auto-translated (HVM/PVH) guests: the
//! behaviour of Xen's `xen/common/grant_table.c` as guests see it.
//!
//! This module owns, per domain, the grant-table bookkeeping: how many
//! shared grant frames the table has and where the guest mapped them, the
//! active entries (pins of granted references by the one domain using
//! them), and the maptrack (the handles of the grant mappings a domain has
//! made of other domains' grants). It decides every grant-table operation:
//! `GNTTABOP_setup_table`, `query_size`, `set_version`, `get_version`,
//! `map_grant_ref`, `unmap_grant_ref`, `unmap_and_replace`, `copy`,
//! `swap_grant_ref`, and the
//! `XENMEM_add_to_physmap` space `XENMAPSPACE_grant_table`, with Xen's
//! errnos and `GNTST_*` statuses, and it tears a domain's mappings down both
//! ways when the domain is destroyed.
//!
//! The hypervisor owns the memory. Through [`GrantPlatform`] it provides the
//! shared grant frames (read and updated here with atomic operations, as
//! the granting guest writes them concurrently), answers whether a frame is
//! RAM, and changes nested page tables and copies bytes on request. Every
//! check is made here, before the platform is asked.
//!
//! All frame numbers are guest frame numbers (gfns); a mapping's `host_addr`
//! is a guest-physical address of the mapping domain. Grant entries are
//! `grant_entry_v1` (8 bytes, 512 per 4 KiB frame): the first 32-bit word
//! holds `flags` (low half) and `domid` (high half), the second `frame`.
//!
//! Choices, where Xen leaves room or rxen differs:
//! - A table starts with one frame ([`INITIAL_NR_FRAMES`], as Xen's
//!   `gnttab_grow_table` on domain creation) and grows up to its
//!   `max_frames` through setup_table or add_to_physmap.
//! - Only v1 exists: `set_version(2)` is `-ENOSYS`, Xen's answer when v2
//!   is not allowed ("behave as before set_version was introduced"); any
//!   other version but 1 is `-EINVAL`.
//! - Entry checks that fail in Xen's `_set_status` (not `GTF_permit_access`,
//!   granted to another domain, write access to a `GTF_readonly` grant, a
//!   reference pinned by another domain) give `GNTST_general_error`, as in
//!   Xen; only a non-gref foreign frame in a copy is
//!   `GNTST_permission_denied`.
//! - `dev_bus_addr` of a map is 0 (Xen reports the machine address; rxen
//!   does not disclose it).
//! - Unmapping checks `host_addr` against the gfn recorded in the handle
//!   (Xen checks the p2m entry at that gfn holds the same frame); as in
//!   Xen, a `host_addr` of 0 unmaps nothing and succeeds.
//! - Mapping a grant at a gfn that already holds a grant mapping fails with
//!   `GNTST_general_error` (Xen crashes the domain).
//! - Destroying a domain ([`release_domain`]) unmaps both the mappings it
//!   made and those other domains made of its grants; Xen leaves the
//!   latter until the mappers unmap them. Their handles become unused.
//! - A whole batch runs in one call (no continuations); elements are read
//!   one at a time, so an absurd `count` allocates nothing and ends at the
//!   first element that cannot be read (`-EFAULT`).
//! - Not supported (`-ENOSYS`): `GNTTABOP_transfer`, `dump_table`,
//!   `get_status_frames` (v2 only), `cache_flush` (Arm only in Xen).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

use rxen_abi::errno::{self, Errno};
use rxen_abi::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabGetVersion, GnttabMapGrantRef, GnttabQuerySize,
    GnttabSetVersion, GnttabSetupTable, GnttabSwapGrantRef, GnttabUnmapAndReplace,
    GnttabUnmapGrantRef, GrantHandle, GrantRef, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
    GNTMAP_APPLICATION_MAP, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP,
    GNTMAP_READONLY, GNTST_BAD_COPY_ARG, GNTST_BAD_DOMAIN, GNTST_BAD_GNTREF, GNTST_BAD_HANDLE,
    GNTST_BAD_PAGE, GNTST_BAD_VIRT_ADDR, GNTST_EAGAIN, GNTST_GENERAL_ERROR, GNTST_NO_SPACE,
    GNTST_OKAY, GNTST_PERMISSION_DENIED, GNTTABOP_CACHE_FLUSH, GNTTABOP_COPY, GNTTABOP_GET_VERSION,
    GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_SETUP_TABLE, GNTTABOP_SET_VERSION,
    GNTTABOP_SWAP_GRANT_REF, GNTTABOP_UNMAP_AND_REPLACE, GNTTABOP_UNMAP_GRANT_REF,
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_TYPE_MASK, GTF_WRITING,
};
use rxen_abi::xen::{DOMID_FIRST_RESERVED, DOMID_SELF};

use crate::domain::DomId;
use crate::hypercall::{read_guest, write_guest, GuestCopy};

/// Bytes in a page and a grant frame.
pub const PAGE_SIZE: u32 = 4096;
/// v1 grant entries per grant frame (4096 / 8).
pub const ENTRIES_PER_FRAME: u32 = PAGE_SIZE / 8;
/// 32-bit words per grant frame, as [`GrantPlatform::grant_frame`] gives them.
pub const WORDS_PER_FRAME: usize = (PAGE_SIZE / 4) as usize;
/// Frames a table has from its creation (Xen's `INITIAL_NR_GRANT_FRAMES`).
pub const INITIAL_NR_FRAMES: u32 = 1;
/// Default most grant frames per domain (Xen's `gnttab_max_frames`).
pub const DEFAULT_MAX_FRAMES: u32 = 64;
/// Maptrack entries per maptrack frame in Xen (4096 / 16).
pub const MAPTRACK_PER_FRAME: u32 = 256;
/// Default most mappings a domain holds: Xen's `gnttab_max_maptrack_frames`
/// (1024) frames of [`MAPTRACK_PER_FRAME`] entries.
pub const DEFAULT_MAX_MAPTRACK: u32 = 1024 * MAPTRACK_PER_FRAME;
/// The gfn setup_table reports for a grant frame not in the guest's
/// physmap (Xen's `INVALID_M2P_ENTRY`).
pub const INVALID_GFN: u64 = u64::MAX;
/// Low bits of a grant_table_op command that select the sub-op; the rest
/// is continuation state that guests may pass only to cache_flush.
pub const GNTTABOP_CMD_MASK: u32 = (1 << 12) - 1;

/// Times a grant entry update is retried when the guest changes the entry
/// under it, before giving up (as Xen).
const SET_STATUS_RETRIES: u32 = 4;
/// The `flags` word bits this module sets in a granter's entry.
const IN_USE: u16 = GTF_READING | GTF_WRITING;

/// What the hypervisor provides: the shared grant frames, the guests'
/// memory and nested page tables, and domain privilege. It only moves bytes
/// and page-table entries; every check is made by this module first.
pub trait GrantPlatform: GuestCopy {
    /// Grant frame `index` of `domid`'s table as [`WORDS_PER_FRAME`]
    /// native-endian words, if the frame exists. The granting guest writes
    /// these concurrently, hence atomics.
    fn grant_frame(&self, domid: DomId, index: u32) -> Option<&[AtomicU32]>;
    /// Allocates zeroed grant frames for `domid` until it has `nr` (`-ENOMEM`
    /// when memory runs out; frames already there stay).
    fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno>;
    /// Whether `gfn` is ordinary, writable RAM of `domid` (can be granted,
    /// or be a copy's own frame).
    fn is_ram(&self, domid: DomId, gfn: u64) -> bool;
    /// Maps `granter`'s `src` at `mapper`'s `dst` (a foreign grant mapping),
    /// read-only or writable; the frame must stay allocated while mapped.
    fn map_foreign(
        &mut self,
        mapper: DomId,
        dst: u64,
        granter: DomId,
        src: u64,
        readonly: bool,
    ) -> Result<(), Errno>;
    /// Removes the grant mapping at `mapper`'s `dst`.
    fn unmap_foreign(&mut self, mapper: DomId, dst: u64) -> Result<(), Errno>;
    /// Copies `len` bytes from (domain, gfn, offset) `src` to `dst`; both
    /// frames were checked to be RAM and the ranges to lie within a page.
    fn copy(
        &mut self,
        src: (DomId, u64, u16),
        dst: (DomId, u64, u16),
        len: u16,
    ) -> Result<(), Errno>;
    /// Whether `domid` is the control domain (may act on other domains'
    /// tables: setup_table, query_size, get_version).
    fn is_privileged(&self, domid: DomId) -> bool;
}

/// The grant tables of all domains, by domain id. Operations take at most
/// one table at a time, so one container serves both sides of a mapping,
/// including a domain granting to itself.
pub trait GrantTables {
    /// The table of `domid`, if that domain exists (and has a table).
    fn table(&mut self, domid: DomId) -> Option<&mut GrantTable>;
}

impl GrantTables for BTreeMap<DomId, GrantTable> {
    fn table(&mut self, domid: DomId) -> Option<&mut GrantTable> {
        self.get_mut(&domid)
    }
}

/// A granted reference in use (Xen's `active_grant_entry`): pinned by maps
/// and, during a copy, by the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveEntry {
    /// The one domain using the grant.
    pub user: DomId,
    /// The granter's frame, fixed while the entry is pinned.
    pub gfn: u64,
    /// Read-only pins.
    pub readers: u32,
    /// Writable pins.
    pub writers: u32,
}

/// A grant mapping (Xen's maptrack entry), found by its handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The granting domain.
    pub granter: DomId,
    /// The grant reference in the granter's table.
    pub gref: GrantRef,
    /// Mapped read-only.
    pub readonly: bool,
    /// Where it is mapped in the mapping domain's physmap.
    pub gfn: u64,
}

/// Where to put a grant frame for `XENMEM_add_to_physmap`
/// (`XENMAPSPACE_grant_table`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantFrameMap {
    /// The grant frame to map.
    pub index: u32,
    /// The gfn to map it at.
    pub gfn: u64,
    /// Where the frame was mapped before: remove it there (Xen moves it).
    pub previous_gfn: Option<u64>,
}

/// One domain's grant table.
#[derive(Debug)]
pub struct GrantTable {
    domid: DomId,
    version: u32,
    max_frames: u32,
    /// Per grant frame in use, the gfn where the guest mapped it.
    frame_gfns: Vec<Option<u64>>,
    /// Pinned references.
    active: BTreeMap<GrantRef, ActiveEntry>,
    /// gfn -> number of active entries pinning it.
    pinned_gfns: BTreeMap<u64, u32>,
    /// Handle -> mapping (None: free or being set up).
    maptrack: Vec<Option<Mapping>>,
    /// Free handles below `maptrack.len()`.
    free_handles: Vec<GrantHandle>,
    /// Mapping gfn -> handle.
    by_gfn: BTreeMap<u64, GrantHandle>,
    max_maptrack: u32,
}

impl GrantTable {
    /// The table of `domid` with [`INITIAL_NR_FRAMES`] frames (allocated
    /// through `platform`), growing to at most `max_frames`, holding at most
    /// `max_maptrack` mappings. `max_frames` below 1 is `-EINVAL`.
    pub fn new(
        domid: DomId,
        max_frames: u32,
        max_maptrack: u32,
        platform: &mut dyn GrantPlatform,
    ) -> Result<Self, Errno> {
        if max_frames < INITIAL_NR_FRAMES {
            return Err(errno::EINVAL);
        }
        let mut table = Self {
            domid,
            version: 1,
            max_frames,
            frame_gfns: Vec::new(),
            active: BTreeMap::new(),
            pinned_gfns: BTreeMap::new(),
            maptrack: Vec::new(),
            free_handles: Vec::new(),
            by_gfn: BTreeMap::new(),
            max_maptrack,
        };
        table.grow(platform, INITIAL_NR_FRAMES)?;
        Ok(table)
    }

    /// The owning domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The grant table version (always 1).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Grant frames in use.
    pub fn nr_frames(&self) -> u32 {
        self.frame_gfns.len() as u32
    }

    /// Most grant frames.
    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Grant entries in use (frames times [`ENTRIES_PER_FRAME`]).
    pub fn nr_entries(&self) -> u32 {
        self.nr_frames().saturating_mul(ENTRIES_PER_FRAME)
    }

    /// Where grant frame `index` is mapped in the guest, if it is.
    pub fn frame_gfn(&self, index: u32) -> Option<u64> {
        self.frame_gfns.get(index as usize).copied().flatten()
    }

    /// The active entry of `gref`, if it is pinned.
    pub fn active(&self, gref: GrantRef) -> Option<ActiveEntry> {
        self.active.get(&gref).copied()
    }

    /// The mapping `handle` stands for, if it is in use.
    pub fn mapping(&self, handle: GrantHandle) -> Option<Mapping> {
        self.maptrack.get(handle as usize).copied().flatten()
    }

    /// Mappings this domain holds.
    pub fn nr_mappings(&self) -> usize {
        self.by_gfn.len()
    }

    /// Whether this domain's frame `gfn` is granted and in use by another
    /// domain (mapped or being copied): it must not be freed or reused
    /// until unmapped (ask before XENMEM_decrease_reservation and the like).
    pub fn frame_in_use(&self, gfn: u64) -> bool {
        self.pinned_gfns.contains_key(&gfn)
    }

    /// Whether this domain has a grant mapping at its `gfn` (such a gfn is
    /// not RAM of this domain; it goes away only by unmapping).
    pub fn has_mapping_at(&self, gfn: u64) -> bool {
        self.by_gfn.contains_key(&gfn)
    }

    /// `GNTTABOP_set_version`: 1 is accepted (no change); 2 is `-ENOSYS`
    /// (v2 is not offered, Xen's answer then); anything else `-EINVAL`.
    pub fn set_version(&mut self, version: u32) -> Result<(), Errno> {
        match version {
            1 => Ok(()),
            2 => Err(errno::ENOSYS),
            _ => Err(errno::EINVAL),
        }
    }

    /// `XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`, for this table's
    /// own domain: grows the table so frame `idx` exists (up to
    /// `max_frames`), records that it is now at `gpfn`, and says what the
    /// hypervisor must map. In v1 the status-frame bit of `idx`
    /// (`XENMAPIDX_grant_table_status`) is no special case, so such an
    /// index is beyond the table: `-EINVAL`, as is any index the table
    /// cannot grow to. If the hypervisor then fails to map the frame it
    /// calls [`GrantTable::forget_frame_gfn`].
    pub fn add_to_physmap(
        &mut self,
        platform: &mut dyn GrantPlatform,
        idx: u64,
        gpfn: u64,
    ) -> Result<GrantFrameMap, Errno> {
        let index = u32::try_from(idx).map_err(|_| errno::EINVAL)?;
        if index >= self.nr_frames() && index < self.max_frames {
            // A failure shows as the frame still missing.
            let _ = self.grow(platform, index + 1);
        }
        if index >= self.nr_frames() {
            return Err(errno::EINVAL);
        }
        // Whatever grant frame was at gpfn is replaced there.
        self.forget_frame_gfn(gpfn);
        let previous_gfn = self.frame_gfns[index as usize].replace(gpfn);
        Ok(GrantFrameMap {
            index,
            gfn: gpfn,
            previous_gfn,
        })
    }

    /// `GNTTABOP_swap_grant_ref`, one element: swaps entries `a` and `b`
    /// of this (the caller's own) table. Both must be in the table
    /// (`GNTST_bad_gntref`) and not in use (`GNTST_eagain`); swapping an
    /// entry with itself does nothing.
    pub fn swap_grant_ref(
        &mut self,
        platform: &dyn GrantPlatform,
        a: GrantRef,
        b: GrantRef,
    ) -> Result<(), i16> {
        if a >= self.nr_entries() || b >= self.nr_entries() {
            return Err(GNTST_BAD_GNTREF);
        }
        if a == b {
            return Ok(());
        }
        if self.active.contains_key(&a) || self.active.contains_key(&b) {
            return Err(GNTST_EAGAIN);
        }
        let (a_header, a_frame) =
            entry_words(platform, self.domid, a).ok_or(GNTST_GENERAL_ERROR)?;
        let (b_header, b_frame) =
            entry_words(platform, self.domid, b).ok_or(GNTST_GENERAL_ERROR)?;
        let a_entry = (
            a_header.load(Ordering::Acquire),
            a_frame.load(Ordering::Acquire),
        );
        let b_entry = (
            b_header.load(Ordering::Acquire),
            b_frame.load(Ordering::Acquire),
        );
        a_frame.store(b_entry.1, Ordering::Release);
        a_header.store(b_entry.0, Ordering::Release);
        b_frame.store(a_entry.1, Ordering::Release);
        b_header.store(a_entry.0, Ordering::Release);
        Ok(())
    }

    /// Records that no grant frame is mapped at `gfn` any more (the
    /// hypervisor replaced or removed what was there).
    pub fn forget_frame_gfn(&mut self, gfn: u64) {
        for slot in self.frame_gfns.iter_mut() {
            if *slot == Some(gfn) {
                *slot = None;
            }
        }
    }

    /// Grows to `nr` frames (no-op if it has them); beyond `max_frames` is
    /// `-EINVAL`.
    fn grow(&mut self, platform: &mut dyn GrantPlatform, nr: u32) -> Result<(), Errno> {
        if nr > self.max_frames {
            return Err(errno::EINVAL);
        }
        if nr <= self.nr_frames() {
            return Ok(());
        }
        platform.grow_grant_frames(self.domid, nr)?;
        self.frame_gfns.resize(nr as usize, None);
        Ok(())
    }

    /// Takes a free handle, if the maptrack has room; it stays unused
    /// until [`GrantTable::set_mapping`] or [`GrantTable::free_handle`].
    fn alloc_handle(&mut self) -> Option<GrantHandle> {
        if let Some(handle) = self.free_handles.pop() {
            return Some(handle);
        }
        if self.maptrack.len() >= self.max_maptrack as usize {
            return None;
        }
        self.maptrack.push(None);
        Some(self.maptrack.len() as GrantHandle - 1)
    }

    fn set_mapping(&mut self, handle: GrantHandle, mapping: Mapping) {
        if let Some(slot) = self.maptrack.get_mut(handle as usize) {
            *slot = Some(mapping);
            self.by_gfn.insert(mapping.gfn, handle);
        }
    }

    /// Frees `handle`, returning the mapping it held.
    fn free_handle(&mut self, handle: GrantHandle) -> Option<Mapping> {
        let slot = self.maptrack.get_mut(handle as usize)?;
        let mapping = slot.take();
        if let Some(m) = mapping {
            self.by_gfn.remove(&m.gfn);
        }
        self.free_handles.push(handle);
        mapping
    }

    /// Frees the handles of every mapping `take` selects, returning them.
    fn take_mappings(&mut self, mut take: impl FnMut(&Mapping) -> bool) -> Vec<Mapping> {
        let handles: Vec<GrantHandle> = self
            .maptrack
            .iter()
            .enumerate()
            .filter(|(_, m)| m.as_ref().is_some_and(&mut take))
            .map(|(h, _)| h as GrantHandle)
            .collect();
        handles
            .into_iter()
            .filter_map(|h| self.free_handle(h))
            .collect()
    }

    /// Pins `gref` for `user` (a map or a copy), read-only or writable,
    /// setting `GTF_reading`/`GTF_writing` in the entry as needed. Returns
    /// the granted frame.
    fn pin(
        &mut self,
        platform: &dyn GrantPlatform,
        gref: GrantRef,
        user: DomId,
        readonly: bool,
    ) -> Result<u64, i16> {
        if gref >= self.nr_entries() {
            return Err(GNTST_BAD_GNTREF);
        }
        let current = self.active.get(&gref).copied();
        if let Some(act) = current {
            let count = if readonly { act.readers } else { act.writers };
            if act.user != user || count == u32::MAX {
                return Err(GNTST_GENERAL_ERROR);
            }
        }
        let (header, frame) = entry_words(platform, self.domid, gref).ok_or(GNTST_GENERAL_ERROR)?;
        let needs_status = match current {
            None => true,
            Some(act) => !readonly && act.writers == 0,
        };
        if needs_status {
            set_status(header, user, readonly, current.is_some())?;
        }
        let mut act = match current {
            Some(act) => act,
            None => {
                let gfn = u64::from(frame.load(Ordering::Acquire));
                if !platform.is_ram(self.domid, gfn) {
                    let clear = if readonly { GTF_READING } else { IN_USE };
                    header.fetch_and(!u32::from(clear), Ordering::AcqRel);
                    return Err(GNTST_BAD_PAGE);
                }
                *self.pinned_gfns.entry(gfn).or_insert(0) += 1;
                ActiveEntry {
                    user,
                    gfn,
                    readers: 0,
                    writers: 0,
                }
            }
        };
        if readonly {
            act.readers += 1;
        } else {
            act.writers += 1;
        }
        self.active.insert(gref, act);
        Ok(act.gfn)
    }

    /// Drops one pin of `gref`, clearing `GTF_writing` when no writable
    /// pin is left and `GTF_reading` when no pin is.
    fn unpin(&mut self, platform: &dyn GrantPlatform, gref: GrantRef, readonly: bool) {
        let Some(mut act) = self.active.get(&gref).copied() else {
            return;
        };
        if readonly {
            act.readers = act.readers.saturating_sub(1);
        } else {
            act.writers = act.writers.saturating_sub(1);
        }
        let idle = act.readers == 0 && act.writers == 0;
        let mut clear = 0;
        if idle {
            clear |= GTF_READING;
        }
        if !readonly && act.writers == 0 {
            clear |= GTF_WRITING;
        }
        if clear != 0 {
            if let Some((header, _)) = entry_words(platform, self.domid, gref) {
                header.fetch_and(!u32::from(clear), Ordering::AcqRel);
            }
        }
        if idle {
            self.active.remove(&gref);
            if let Some(count) = self.pinned_gfns.get_mut(&act.gfn) {
                *count -= 1;
                if *count == 0 {
                    self.pinned_gfns.remove(&act.gfn);
                }
            }
        } else {
            self.active.insert(gref, act);
        }
    }
}

/// The two words of `domid`'s entry `gref`: flags+domid, frame.
fn entry_words(
    platform: &dyn GrantPlatform,
    domid: DomId,
    gref: GrantRef,
) -> Option<(&AtomicU32, &AtomicU32)> {
    let frame = platform.grant_frame(domid, gref / ENTRIES_PER_FRAME)?;
    let at = (gref % ENTRIES_PER_FRAME) as usize * 2;
    Some((frame.get(at)?, frame.get(at + 1)?))
}

/// Marks a v1 entry in use by `user` (`GTF_reading`, and `GTF_writing` for
/// write access) with a compare-and-exchange, so that a guest revoking the
/// grant at the same time either sees the marks or wins. An entry not yet
/// pinned must grant access to `user`; write access needs a grant that is
/// not read-only.
fn set_status(header: &AtomicU32, user: DomId, readonly: bool, pinned: bool) -> Result<(), i16> {
    let mut current = header.load(Ordering::Acquire);
    for _ in 0..=SET_STATUS_RETRIES {
        let flags = current as u16;
        let domid = (current >> 16) as u16;
        if !pinned && ((flags & GTF_TYPE_MASK) != GTF_PERMIT_ACCESS || domid != user) {
            return Err(GNTST_GENERAL_ERROR);
        }
        let mut new = flags | GTF_READING;
        if !readonly {
            if flags & GTF_READONLY != 0 {
                return Err(GNTST_GENERAL_ERROR);
            }
            new |= GTF_WRITING;
        }
        let new = (current & 0xFFFF_0000) | u32::from(new);
        match header.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
    Err(GNTST_GENERAL_ERROR)
}

/// The domain `dom` names for `caller` (DOMID_SELF is the caller).
fn resolve(caller: DomId, dom: DomId) -> DomId {
    if dom == DOMID_SELF {
        caller
    } else {
        dom
    }
}

/// `GNTTABOP_setup_table` for `dom` (DOMID_SELF or a domain the caller may
/// act on): grows the table to `nr_frames` and returns the gfn of each of
/// its first `nr_frames` frames, [`INVALID_GFN`] for a frame the guest has
/// not mapped with add_to_physmap (as Xen reports for translated guests).
pub fn setup_table(
    caller: DomId,
    dom: DomId,
    nr_frames: u32,
    tables: &mut dyn GrantTables,
    platform: &mut dyn GrantPlatform,
) -> Result<Vec<u64>, i16> {
    let target = resolve(caller, dom);
    let privileged = platform.is_privileged(caller);
    let table = tables.table(target).ok_or(GNTST_BAD_DOMAIN)?;
    if target != caller && !privileged {
        return Err(GNTST_PERMISSION_DENIED);
    }
    if nr_frames > table.max_frames {
        return Err(GNTST_GENERAL_ERROR);
    }
    table
        .grow(platform, nr_frames)
        .map_err(|_| GNTST_GENERAL_ERROR)?;
    Ok((0..nr_frames)
        .map(|i| table.frame_gfn(i).unwrap_or(INVALID_GFN))
        .collect())
}

/// `GNTTABOP_query_size` for `dom`: (frames in use, most frames).
pub fn query_size(
    caller: DomId,
    dom: DomId,
    tables: &mut dyn GrantTables,
    platform: &dyn GrantPlatform,
) -> Result<(u32, u32), i16> {
    let target = resolve(caller, dom);
    let table = tables.table(target).ok_or(GNTST_BAD_DOMAIN)?;
    if target != caller && !platform.is_privileged(caller) {
        return Err(GNTST_PERMISSION_DENIED);
    }
    Ok((table.nr_frames(), table.max_frames))
}

/// `GNTTABOP_get_version` for `dom`: `-ESRCH` if it does not exist,
/// `-EPERM` if the caller may not look at it.
pub fn get_version(
    caller: DomId,
    dom: DomId,
    tables: &mut dyn GrantTables,
    platform: &dyn GrantPlatform,
) -> Result<u32, Errno> {
    let target = resolve(caller, dom);
    let table = tables.table(target).ok_or(errno::ESRCH)?;
    if target != caller && !platform.is_privileged(caller) {
        return Err(errno::EPERM);
    }
    Ok(table.version)
}

/// `GNTTABOP_map_grant_ref`, one element: maps `op.dom`'s grant `op.ref_`
/// at the caller's gfn `op.host_addr >> 12` and returns its handle, or a
/// `GNTST_*` status. Only `GNTMAP_host_map`, optionally with
/// `GNTMAP_readonly`, is possible for a translated guest.
pub fn map_grant_ref(
    caller: DomId,
    op: &GnttabMapGrantRef,
    tables: &mut dyn GrantTables,
    platform: &mut dyn GrantPlatform,
) -> Result<GrantHandle, i16> {
    let flags = op.flags;
    if flags & (GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP) == 0 {
        return Err(GNTST_BAD_GNTREF);
    }
    if flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return Err(GNTST_GENERAL_ERROR);
    }
    let granter = op.dom;
    if granter >= DOMID_FIRST_RESERVED || tables.table(granter).is_none() {
        return Err(GNTST_BAD_DOMAIN);
    }
    let readonly = flags & GNTMAP_READONLY != 0;
    let gfn = op.host_addr >> 12;

    let handle = tables
        .table(caller)
        .ok_or(GNTST_GENERAL_ERROR)?
        .alloc_handle()
        .ok_or(GNTST_NO_SPACE)?;
    let free = |tables: &mut dyn GrantTables| {
        if let Some(table) = tables.table(caller) {
            table.free_handle(handle);
        }
    };

    let pinned = match tables.table(granter) {
        Some(table) => table.pin(platform, op.ref_, caller, readonly),
        None => Err(GNTST_BAD_DOMAIN),
    };
    let src = match pinned {
        Ok(src) => src,
        Err(status) => {
            free(tables);
            return Err(status);
        }
    };

    let occupied = tables
        .table(caller)
        .is_none_or(|table| table.has_mapping_at(gfn));
    let mapped = if flags & !(GNTMAP_HOST_MAP | GNTMAP_READONLY) != 0 || occupied {
        Err(GNTST_GENERAL_ERROR)
    } else {
        platform
            .map_foreign(caller, gfn, granter, src, readonly)
            .map_err(|_| GNTST_GENERAL_ERROR)
    };
    if let Err(status) = mapped {
        if let Some(table) = tables.table(granter) {
            table.unpin(platform, op.ref_, readonly);
        }
        free(tables);
        return Err(status);
    }
    if let Some(table) = tables.table(caller) {
        table.set_mapping(
            handle,
            Mapping {
                granter,
                gref: op.ref_,
                readonly,
                gfn,
            },
        );
    }
    Ok(handle)
}

/// `GNTTABOP_unmap_grant_ref`, one element: removes the caller's mapping
/// `handle`, which must be mapped at `host_addr` (its gfn); a `host_addr`
/// of 0 unmaps nothing and succeeds, as in Xen.
pub fn unmap_grant_ref(
    caller: DomId,
    host_addr: u64,
    handle: GrantHandle,
    tables: &mut dyn GrantTables,
    platform: &mut dyn GrantPlatform,
) -> Result<(), i16> {
    let table = tables.table(caller).ok_or(GNTST_GENERAL_ERROR)?;
    let mapping = table.mapping(handle).ok_or(GNTST_BAD_HANDLE)?;
    if host_addr == 0 {
        return Ok(());
    }
    if host_addr >> 12 != mapping.gfn {
        return Err(GNTST_GENERAL_ERROR);
    }
    platform
        .unmap_foreign(caller, mapping.gfn)
        .map_err(|_| GNTST_GENERAL_ERROR)?;
    table.free_handle(handle);
    if let Some(granter) = tables.table(mapping.granter) {
        granter.unpin(platform, mapping.gref, mapping.readonly);
    }
    Ok(())
}

/// One side of a copy, claimed: the frame and, for a grant, what to unpin.
#[derive(Clone, Copy)]
struct Claim {
    domid: DomId,
    gfn: u64,
    gref: Option<GrantRef>,
    readonly: bool,
}

/// Checks who one side of a copy names: a frame only of DOMID_SELF, a
/// grant of any existing domain.
fn copy_domain(
    caller: DomId,
    ptr: &GnttabCopyPtr,
    is_gref: bool,
    tables: &mut dyn GrantTables,
) -> Result<DomId, i16> {
    if ptr.domid != DOMID_SELF && !is_gref {
        return Err(GNTST_PERMISSION_DENIED);
    }
    let domid = resolve(caller, ptr.domid);
    if tables.table(domid).is_none() {
        return Err(GNTST_BAD_DOMAIN);
    }
    Ok(domid)
}

/// Claims one side of a copy: pins the grant (for the caller) or checks
/// the caller's own frame is RAM.
fn claim(
    caller: DomId,
    domid: DomId,
    ptr: &GnttabCopyPtr,
    is_gref: bool,
    readonly: bool,
    tables: &mut dyn GrantTables,
    platform: &dyn GrantPlatform,
) -> Result<Claim, i16> {
    if is_gref {
        let table = tables.table(domid).ok_or(GNTST_BAD_DOMAIN)?;
        let gfn = table.pin(platform, ptr.gref(), caller, readonly)?;
        Ok(Claim {
            domid,
            gfn,
            gref: Some(ptr.gref()),
            readonly,
        })
    } else if platform.is_ram(domid, ptr.gmfn()) {
        Ok(Claim {
            domid,
            gfn: ptr.gmfn(),
            gref: None,
            readonly,
        })
    } else {
        Err(GNTST_BAD_PAGE)
    }
}

fn release(claim: Claim, tables: &mut dyn GrantTables, platform: &dyn GrantPlatform) {
    if let (Some(gref), Some(table)) = (claim.gref, tables.table(claim.domid)) {
        table.unpin(platform, gref, claim.readonly);
    }
}

/// `GNTTABOP_copy`, one element: copies `op.len` bytes between grants made
/// to the caller (`GNTCOPY_*_gref`) and the caller's own frames
/// (DOMID_SELF). The grants are pinned (and marked read/written in their
/// entries) for the duration of the copy. A zero length is a no-op.
pub fn copy(
    caller: DomId,
    op: &GnttabCopy,
    tables: &mut dyn GrantTables,
    platform: &mut dyn GrantPlatform,
) -> Result<(), i16> {
    if op.len == 0 {
        return Ok(());
    }
    let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
    let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
    let src_dom = copy_domain(caller, &op.source, src_gref, tables)?;
    let dst_dom = copy_domain(caller, &op.dest, dst_gref, tables)?;
    let src = claim(
        caller, src_dom, &op.source, src_gref, true, tables, platform,
    )?;
    let dst = match claim(caller, dst_dom, &op.dest, dst_gref, false, tables, platform) {
        Ok(dst) => dst,
        Err(status) => {
            release(src, tables, platform);
            return Err(status);
        }
    };
    let len = u32::from(op.len);
    let result = if u32::from(op.source.offset) + len > PAGE_SIZE
        || u32::from(op.dest.offset) + len > PAGE_SIZE
    {
        Err(GNTST_BAD_COPY_ARG)
    } else {
        platform
            .copy(
                (src.domid, src.gfn, op.source.offset),
                (dst.domid, dst.gfn, op.dest.offset),
                op.len,
            )
            .map_err(|_| GNTST_GENERAL_ERROR)
    };
    release(dst, tables, platform);
    release(src, tables, platform);
    result
}

/// Tears down the grant mappings of a domain being destroyed, both ways:
/// those it made of others' grants (unmapped from its physmap, the
/// granters' pins dropped and their `GTF_reading`/`GTF_writing` cleared)
/// and those other domains made of its grants (unmapped from the mappers'
/// physmaps, their handles freed). Returns how many mappings went. The
/// hypervisor then drops the table and frees the grant frames.
pub fn release_domain(
    domid: DomId,
    tables: &mut dyn GrantTables,
    platform: &mut dyn GrantPlatform,
) -> usize {
    let Some(table) = tables.table(domid) else {
        return 0;
    };
    let own = table.take_mappings(|_| true);
    let mut released = own.len();
    for m in own {
        let _ = platform.unmap_foreign(domid, m.gfn);
        if let Some(granter) = tables.table(m.granter) {
            granter.unpin(platform, m.gref, m.readonly);
        }
    }
    let users: BTreeSet<DomId> = match tables.table(domid) {
        Some(table) => table.active.values().map(|a| a.user).collect(),
        None => return released,
    };
    for user in users {
        let Some(mapper) = tables.table(user) else {
            continue;
        };
        let gone = mapper.take_mappings(|m| m.granter == domid);
        released += gone.len();
        for m in gone {
            let _ = platform.unmap_foreign(user, m.gfn);
        }
    }
    if let Some(table) = tables.table(domid) {
        let active = core::mem::take(&mut table.active);
        table.pinned_gfns.clear();
        for gref in active.keys() {
            if let Some((header, _)) = entry_words(platform, domid, *gref) {
                header.fetch_and(!u32::from(IN_USE), Ordering::AcqRel);
            }
        }
    }
    released
}

/// Guest address of element `index` of an array at `base`.
fn element(base: u64, index: u32, size: usize) -> Result<u64, Errno> {
    (size as u64)
        .checked_mul(u64::from(index))
        .and_then(|offset| base.checked_add(offset))
        .ok_or(errno::EFAULT)
}

fn status_of(result: Result<(), i16>) -> i16 {
    result.err().unwrap_or(GNTST_OKAY)
}

/// `__HYPERVISOR_grant_table_op(cmd, arg, count)` for `caller`: reads the
/// argument (array) from guest memory, runs the sub-op and writes back the
/// results as Xen does (the whole element for map and query_size, only the
/// status field for unmap, copy and setup_table, only `version` for
/// get_version, the current version for set_version; only the status for
/// swap_grant_ref). Per-element failures
/// are `GNTST_*` statuses; the return value is Xen's: 0 or a negative
/// errno. A negative `count` (as `int`) is `-EINVAL`, as are continuation
/// bits in `cmd`; setup_table and query_size take a `count` of 1; unknown
/// or unsupported sub-ops are `-ENOSYS`, as is any call from a domain
/// without a grant table.
pub fn grant_table_op(
    caller: DomId,
    cmd: u32,
    arg: u64,
    count: u32,
    tables: &mut dyn GrantTables,
    platform: &mut dyn GrantPlatform,
) -> Result<i64, Errno> {
    if (count as i32) < 0 {
        return Err(errno::EINVAL);
    }
    let op = cmd & GNTTABOP_CMD_MASK;
    if op != GNTTABOP_CACHE_FLUSH && cmd & !GNTTABOP_CMD_MASK != 0 {
        return Err(errno::EINVAL);
    }
    if tables.table(caller).is_none() {
        return Err(errno::ENOSYS);
    }
    match op {
        GNTTABOP_MAP_GRANT_REF => {
            for i in 0..count {
                let at = element(arg, i, size_of::<GnttabMapGrantRef>())?;
                let mut m: GnttabMapGrantRef = read_guest(platform, at)?;
                match map_grant_ref(caller, &m, tables, platform) {
                    Ok(handle) => {
                        m.status = GNTST_OKAY;
                        m.handle = handle;
                        m.dev_bus_addr = 0;
                    }
                    Err(status) => m.status = status,
                }
                write_guest(platform, at, &m)?;
            }
            Ok(0)
        }
        GNTTABOP_UNMAP_GRANT_REF => {
            for i in 0..count {
                let at = element(arg, i, size_of::<GnttabUnmapGrantRef>())?;
                let u: GnttabUnmapGrantRef = read_guest(platform, at)?;
                let result = unmap_grant_ref(caller, u.host_addr, u.handle, tables, platform);
                let status_at = at + offset_of!(GnttabUnmapGrantRef, status) as u64;
                write_guest(platform, status_at, &status_of(result))?;
            }
            Ok(0)
        }
        GNTTABOP_UNMAP_AND_REPLACE => {
            for i in 0..count {
                let at = element(arg, i, size_of::<GnttabUnmapAndReplace>())?;
                let u: GnttabUnmapAndReplace = read_guest(platform, at)?;
                // A translated guest cannot put another mapping in place.
                let result = if u.new_addr != 0 {
                    Err(GNTST_GENERAL_ERROR)
                } else {
                    unmap_grant_ref(caller, u.host_addr, u.handle, tables, platform)
                };
                let status_at = at + offset_of!(GnttabUnmapAndReplace, status) as u64;
                write_guest(platform, status_at, &status_of(result))?;
            }
            Ok(0)
        }
        GNTTABOP_COPY => {
            for i in 0..count {
                let at = element(arg, i, size_of::<GnttabCopy>())?;
                let c: GnttabCopy = read_guest(platform, at)?;
                let result = copy(caller, &c, tables, platform);
                let status_at = at + offset_of!(GnttabCopy, status) as u64;
                write_guest(platform, status_at, &status_of(result))?;
            }
            Ok(0)
        }
        GNTTABOP_SWAP_GRANT_REF => {
            for i in 0..count {
                let at = element(arg, i, size_of::<GnttabSwapGrantRef>())?;
                let w: GnttabSwapGrantRef = read_guest(platform, at)?;
                let table = tables.table(caller).ok_or(errno::ENOSYS)?;
                let result = table.swap_grant_ref(platform, w.ref_a, w.ref_b);
                let status_at = at + offset_of!(GnttabSwapGrantRef, status) as u64;
                write_guest(platform, status_at, &status_of(result))?;
            }
            Ok(0)
        }
        GNTTABOP_SETUP_TABLE => {
            if count != 1 {
                return Err(errno::EINVAL);
            }
            let s: GnttabSetupTable = read_guest(platform, arg)?;
            let status = match setup_table(caller, s.dom, s.nr_frames, tables, platform) {
                Ok(frames) => {
                    let mut status = GNTST_OKAY;
                    for (i, gfn) in frames.iter().enumerate() {
                        let written = element(s.frame_list, i as u32, size_of::<u64>())
                            .and_then(|at| write_guest(platform, at, gfn));
                        if written.is_err() {
                            status = GNTST_BAD_VIRT_ADDR;
                            break;
                        }
                    }
                    status
                }
                Err(status) => status,
            };
            let status_at = arg + offset_of!(GnttabSetupTable, status) as u64;
            write_guest(platform, status_at, &status).map(|_| 0)
        }
        GNTTABOP_QUERY_SIZE => {
            if count != 1 {
                return Err(errno::EINVAL);
            }
            let mut q: GnttabQuerySize = read_guest(platform, arg)?;
            match query_size(caller, q.dom, tables, platform) {
                Ok((nr, max)) => {
                    q.nr_frames = nr;
                    q.max_nr_frames = max;
                    q.status = GNTST_OKAY;
                }
                Err(status) => q.status = status,
            }
            write_guest(platform, arg, &q).map(|_| 0)
        }
        GNTTABOP_SET_VERSION => {
            let mut v: GnttabSetVersion = read_guest(platform, arg)?;
            let table = tables.table(caller).ok_or(errno::ENOSYS)?;
            let result = table.set_version(v.version);
            v.version = table.version();
            write_guest(platform, arg, &v)?;
            result.map(|_| 0)
        }
        GNTTABOP_GET_VERSION => {
            let g: GnttabGetVersion = read_guest(platform, arg)?;
            let version = get_version(caller, g.dom, tables, platform)?;
            let version_at = arg + offset_of!(GnttabGetVersion, version) as u64;
            write_guest(platform, version_at, &version).map(|_| 0)
        }
        _ => Err(errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::tests::MEM;
    use crate::hypercall::GuestEnv;
    use alloc::vec;
    use rxen_abi::grant_table::GNTST_BAD_DOMAIN;

    /// Guest memory pages, grant frames and foreign mappings, by domain.
    struct Fake {
        ram: BTreeMap<(DomId, u64), Vec<u8>>,
        frames: BTreeMap<DomId, Vec<Vec<AtomicU32>>>,
        /// (mapper, gfn) -> (granter, gfn, readonly).
        foreign: BTreeMap<(DomId, u64), (DomId, u64, bool)>,
        /// Most grant frames the fake can allocate per domain.
        frame_limit: u32,
        /// Highest gfn a foreign mapping may use.
        max_gfn: u64,
    }

    const DOM0: DomId = 0;
    const FRONT: DomId = 1;
    const BACK: DomId = 2;
    const OTHER: DomId = 3;
    const RAM_PAGES: u64 = 16;
    const MAP_AT: u64 = 0x100;

    impl Fake {
        fn new() -> Self {
            let mut ram = BTreeMap::new();
            for d in DOM0..=OTHER {
                for gfn in 0..RAM_PAGES {
                    ram.insert((d, gfn), vec![0u8; PAGE_SIZE as usize]);
                }
            }
            Self {
                ram,
                frames: BTreeMap::new(),
                foreign: BTreeMap::new(),
                frame_limit: 8,
                max_gfn: 0x1000,
            }
        }

        fn words(&self, d: DomId, gref: GrantRef) -> (&AtomicU32, &AtomicU32) {
            entry_words(self, d, gref).expect("entry exists")
        }

        /// Writes `d`'s entry `gref` as a guest would.
        fn grant(&self, d: DomId, gref: GrantRef, to: DomId, gfn: u32, flags: u16) {
            let (header, frame) = self.words(d, gref);
            frame.store(gfn, Ordering::Release);
            header.store(u32::from(flags) | u32::from(to) << 16, Ordering::Release);
        }

        fn flags(&self, d: DomId, gref: GrantRef) -> u16 {
            self.words(d, gref).0.load(Ordering::Acquire) as u16
        }

        fn page(&self, d: DomId, gfn: u64) -> &[u8] {
            &self.ram[&(d, gfn)]
        }

        fn page_mut(&mut self, d: DomId, gfn: u64) -> &mut [u8] {
            self.ram.get_mut(&(d, gfn)).expect("RAM page")
        }

        /// A guest write to its gfn, through a grant mapping if there is one.
        fn write_via(&mut self, d: DomId, gfn: u64, at: usize, data: &[u8]) -> Result<(), ()> {
            let (owner, frame) = match self.foreign.get(&(d, gfn)) {
                Some(&(_, _, true)) => return Err(()),
                Some(&(granter, src, false)) => (granter, src),
                None => (d, gfn),
            };
            let page = self.ram.get_mut(&(owner, frame)).ok_or(())?;
            page[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    impl GrantPlatform for Fake {
        fn grant_frame(&self, domid: DomId, index: u32) -> Option<&[AtomicU32]> {
            self.frames
                .get(&domid)?
                .get(index as usize)
                .map(|f| f.as_slice())
        }
        fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno> {
            if nr > self.frame_limit {
                return Err(errno::ENOMEM);
            }
            let frames = self.frames.entry(domid).or_default();
            while frames.len() < nr as usize {
                frames.push((0..WORDS_PER_FRAME).map(|_| AtomicU32::new(0)).collect());
            }
            Ok(())
        }
        fn is_ram(&self, domid: DomId, gfn: u64) -> bool {
            self.ram.contains_key(&(domid, gfn))
        }
        fn map_foreign(
            &mut self,
            mapper: DomId,
            dst: u64,
            granter: DomId,
            src: u64,
            readonly: bool,
        ) -> Result<(), Errno> {
            if dst > self.max_gfn || self.foreign.contains_key(&(mapper, dst)) {
                return Err(errno::EINVAL);
            }
            self.foreign.insert((mapper, dst), (granter, src, readonly));
            Ok(())
        }
        fn unmap_foreign(&mut self, mapper: DomId, dst: u64) -> Result<(), Errno> {
            self.foreign
                .remove(&(mapper, dst))
                .map(|_| ())
                .ok_or(errno::EINVAL)
        }
        fn copy(
            &mut self,
            src: (DomId, u64, u16),
            dst: (DomId, u64, u16),
            len: u16,
        ) -> Result<(), Errno> {
            let (s, d, n) = (src.2 as usize, dst.2 as usize, len as usize);
            let data = self.ram.get(&(src.0, src.1)).ok_or(errno::EINVAL)?[s..s + n].to_vec();
            self.ram.get_mut(&(dst.0, dst.1)).ok_or(errno::EINVAL)?[d..d + n]
                .copy_from_slice(&data);
            Ok(())
        }
        fn is_privileged(&self, domid: DomId) -> bool {
            domid == DOM0
        }
    }

    type Tables = BTreeMap<DomId, GrantTable>;

    fn setup_with(max_maptrack: u32) -> (Fake, Tables) {
        let mut fake = Fake::new();
        let mut tables = Tables::new();
        for d in DOM0..=OTHER {
            tables.insert(d, GrantTable::new(d, 4, max_maptrack, &mut fake).unwrap());
        }
        (fake, tables)
    }

    fn setup() -> (Fake, Tables) {
        setup_with(16)
    }

    fn map_op(dom: DomId, gref: GrantRef, gfn: u64, flags: u32) -> GnttabMapGrantRef {
        GnttabMapGrantRef {
            host_addr: gfn << 12,
            flags,
            ref_: gref,
            dom,
            ..Default::default()
        }
    }

    fn map(
        fake: &mut Fake,
        tables: &mut Tables,
        mapper: DomId,
        granter: DomId,
        gref: GrantRef,
        gfn: u64,
        flags: u32,
    ) -> Result<GrantHandle, i16> {
        map_grant_ref(mapper, &map_op(granter, gref, gfn, flags), tables, fake)
    }

    const RW: u32 = GNTMAP_HOST_MAP;
    const RO: u32 = GNTMAP_HOST_MAP | GNTMAP_READONLY;

    #[test]
    fn map_write_through_read_back_unmap() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 10, BACK, 5, GTF_PERMIT_ACCESS);
        let h = map(&mut fake, &mut tables, BACK, FRONT, 10, MAP_AT, RW).unwrap();
        assert_eq!(fake.foreign[&(BACK, MAP_AT)], (FRONT, 5, false));
        assert_eq!(
            fake.flags(FRONT, 10),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
            "the granter sees its page in use for writing"
        );
        assert!(tables[&FRONT].frame_in_use(5));
        assert!(tables[&BACK].has_mapping_at(MAP_AT));
        fake.write_via(BACK, MAP_AT, 100, b"hello").unwrap();
        assert_eq!(&fake.page(FRONT, 5)[100..105], b"hello");

        assert_eq!(
            unmap_grant_ref(BACK, MAP_AT << 12, h, &mut tables, &mut fake),
            Ok(())
        );
        assert_eq!(fake.flags(FRONT, 10), GTF_PERMIT_ACCESS);
        assert!(fake.foreign.is_empty());
        assert!(!tables[&FRONT].frame_in_use(5));
        assert_eq!(tables[&FRONT].active(10), None);
        assert_eq!(tables[&BACK].nr_mappings(), 0);
    }

    #[test]
    fn read_only_grants_map_only_read_only() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 3, BACK, 7, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 3, MAP_AT, RW),
            Err(GNTST_GENERAL_ERROR),
            "Xen's answer to write-pinning a read-only grant"
        );
        assert_eq!(fake.flags(FRONT, 3), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert!(fake.foreign.is_empty());
        let h = map(&mut fake, &mut tables, BACK, FRONT, 3, MAP_AT, RO).unwrap();
        assert_eq!(fake.foreign[&(BACK, MAP_AT)], (FRONT, 7, true));
        assert_eq!(
            fake.flags(FRONT, 3),
            GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING
        );
        assert!(fake.write_via(BACK, MAP_AT, 0, b"x").is_err());
        unmap_grant_ref(BACK, MAP_AT << 12, h, &mut tables, &mut fake).unwrap();
        assert_eq!(fake.flags(FRONT, 3), GTF_PERMIT_ACCESS | GTF_READONLY);
    }

    #[test]
    fn only_grants_made_to_the_mapper_map() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 4, OTHER, 5, GTF_PERMIT_ACCESS);
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 4, MAP_AT, RO),
            Err(GNTST_GENERAL_ERROR)
        );
        assert_eq!(fake.flags(FRONT, 4), GTF_PERMIT_ACCESS, "untouched");
        fake.grant(FRONT, 5, BACK, 5, GTF_ACCEPT_TRANSFER_FOR_TEST);
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 5, MAP_AT, RO),
            Err(GNTST_GENERAL_ERROR),
            "not a permit_access entry"
        );
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 6, MAP_AT, RO),
            Err(GNTST_GENERAL_ERROR),
            "an invalid (zero) entry"
        );

        // A reference in use by one domain cannot be used by another, even
        // if the granter rewrites the entry meanwhile.
        fake.grant(FRONT, 7, BACK, 5, GTF_PERMIT_ACCESS);
        let h = map(&mut fake, &mut tables, BACK, FRONT, 7, MAP_AT, RO).unwrap();
        fake.grant(FRONT, 7, OTHER, 5, GTF_PERMIT_ACCESS | GTF_READING);
        assert_eq!(
            map(&mut fake, &mut tables, OTHER, FRONT, 7, MAP_AT, RO),
            Err(GNTST_GENERAL_ERROR)
        );
        let copy_op = GnttabCopy {
            source: GnttabCopyPtr {
                u: 7,
                domid: FRONT,
                ..Default::default()
            },
            dest: GnttabCopyPtr {
                u: 1,
                domid: DOMID_SELF,
                ..Default::default()
            },
            len: 8,
            flags: GNTCOPY_SOURCE_GREF,
            ..Default::default()
        };
        assert_eq!(
            copy(OTHER, &copy_op, &mut tables, &mut fake),
            Err(GNTST_GENERAL_ERROR),
            "nor copied by another"
        );
        assert_eq!(tables[&FRONT].active(7).unwrap().user, BACK);
        unmap_grant_ref(BACK, MAP_AT << 12, h, &mut tables, &mut fake).unwrap();
    }

    /// `GTF_accept_transfer`: a grant type that cannot be mapped.
    const GTF_ACCEPT_TRANSFER_FOR_TEST: u16 = rxen_abi::grant_table::GTF_ACCEPT_TRANSFER;

    #[test]
    fn bad_requests_get_xen_statuses() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        let entries = tables[&FRONT].nr_entries();
        assert_eq!(entries, ENTRIES_PER_FRAME);
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, entries, MAP_AT, RW),
            Err(GNTST_BAD_GNTREF),
            "reference beyond the table"
        );
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, u32::MAX, MAP_AT, RW),
            Err(GNTST_BAD_GNTREF)
        );
        assert_eq!(
            map(&mut fake, &mut tables, BACK, 9, 1, MAP_AT, RW),
            Err(GNTST_BAD_DOMAIN)
        );
        assert_eq!(
            map(&mut fake, &mut tables, BACK, DOMID_SELF, 1, MAP_AT, RW),
            Err(GNTST_BAD_DOMAIN),
            "map names the granter by id"
        );
        assert_eq!(
            map(
                &mut fake,
                &mut tables,
                BACK,
                FRONT,
                1,
                MAP_AT,
                GNTMAP_READONLY
            ),
            Err(GNTST_BAD_GNTREF),
            "neither host nor device map"
        );
        for flags in [
            GNTMAP_DEVICE_MAP | RW,
            GNTMAP_APPLICATION_MAP | RW,
            GNTMAP_CONTAINS_PTE | RW,
            1 << 16 | RW,
        ] {
            assert_eq!(
                map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, flags),
                Err(GNTST_GENERAL_ERROR),
                "flags {flags:#x} impossible for a translated guest"
            );
        }
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);

        fake.grant(FRONT, 2, BACK, 0x9999, GTF_PERMIT_ACCESS);
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 2, MAP_AT, RW),
            Err(GNTST_BAD_PAGE),
            "the granted frame is not RAM"
        );
        assert_eq!(fake.flags(FRONT, 2), GTF_PERMIT_ACCESS, "marks undone");

        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 1, 0x2000, RW),
            Err(GNTST_GENERAL_ERROR),
            "the platform refuses host_addr"
        );
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS, "pins undone");
        assert_eq!(tables[&FRONT].active(1), None);
        assert_eq!(tables[&BACK].nr_mappings(), 0);
        assert!(fake.foreign.is_empty());

        let h = map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RW).unwrap();
        assert_eq!(h, 0, "the failed attempts freed their handle");
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RO),
            Err(GNTST_GENERAL_ERROR),
            "a gfn holding a grant mapping"
        );
        assert_eq!(tables[&FRONT].active(1).unwrap().readers, 0);
    }

    #[test]
    fn handles_belong_to_their_domain() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        let h = map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RW).unwrap();
        assert_eq!(
            unmap_grant_ref(OTHER, MAP_AT << 12, h, &mut tables, &mut fake),
            Err(GNTST_BAD_HANDLE),
            "another domain's handle means nothing"
        );
        assert_eq!(
            unmap_grant_ref(BACK, MAP_AT << 12, h + 1, &mut tables, &mut fake),
            Err(GNTST_BAD_HANDLE)
        );
        assert_eq!(
            unmap_grant_ref(BACK, MAP_AT << 12, u32::MAX, &mut tables, &mut fake),
            Err(GNTST_BAD_HANDLE)
        );
        assert_eq!(
            unmap_grant_ref(BACK, (MAP_AT + 1) << 12, h, &mut tables, &mut fake),
            Err(GNTST_GENERAL_ERROR),
            "host_addr must be where the handle maps"
        );
        assert_eq!(
            unmap_grant_ref(BACK, 0, h, &mut tables, &mut fake),
            Ok(()),
            "host_addr 0 unmaps nothing, as in Xen"
        );
        assert!(fake.foreign.contains_key(&(BACK, MAP_AT)));
        assert_eq!(
            unmap_grant_ref(BACK, (MAP_AT << 12) | 0x123, h, &mut tables, &mut fake),
            Ok(()),
            "the offset within the page does not matter"
        );
        assert_eq!(
            unmap_grant_ref(BACK, MAP_AT << 12, h, &mut tables, &mut fake),
            Err(GNTST_BAD_HANDLE),
            "unmapping twice"
        );
        assert!(fake.foreign.is_empty());
    }

    #[test]
    fn pins_count_read_and_write_mappings_separately() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        let ro = map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RO).unwrap();
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS | GTF_READING);
        let rw = map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT + 1, RW).unwrap();
        assert_eq!(
            fake.flags(FRONT, 1),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        let act = tables[&FRONT].active(1).unwrap();
        assert_eq!(
            (act.user, act.gfn, act.readers, act.writers),
            (BACK, 5, 1, 1)
        );
        unmap_grant_ref(BACK, (MAP_AT + 1) << 12, rw, &mut tables, &mut fake).unwrap();
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS | GTF_READING);
        unmap_grant_ref(BACK, MAP_AT << 12, ro, &mut tables, &mut fake).unwrap();
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);
    }

    #[test]
    fn a_domain_may_map_its_own_grant() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, FRONT, 5, GTF_PERMIT_ACCESS);
        let h = map(&mut fake, &mut tables, FRONT, FRONT, 1, MAP_AT, RW).unwrap();
        fake.write_via(FRONT, MAP_AT, 0, b"me").unwrap();
        assert_eq!(&fake.page(FRONT, 5)[..2], b"me");
        unmap_grant_ref(FRONT, MAP_AT << 12, h, &mut tables, &mut fake).unwrap();
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);
    }

    fn gref_ptr(domid: DomId, gref: GrantRef, offset: u16) -> GnttabCopyPtr {
        GnttabCopyPtr {
            u: u64::from(gref),
            domid,
            offset,
            ..Default::default()
        }
    }

    fn gfn_ptr(domid: DomId, gfn: u64, offset: u16) -> GnttabCopyPtr {
        GnttabCopyPtr {
            u: gfn,
            domid,
            offset,
            ..Default::default()
        }
    }

    fn copy_op(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> GnttabCopy {
        GnttabCopy {
            source,
            dest,
            len,
            flags,
            ..Default::default()
        }
    }

    #[test]
    fn copy_in_both_directions() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 20, BACK, 6, GTF_PERMIT_ACCESS);
        fake.page_mut(FRONT, 6)[10..15].copy_from_slice(b"front");
        let from_grant = copy_op(
            gref_ptr(FRONT, 20, 10),
            gfn_ptr(DOMID_SELF, 3, 4000),
            5,
            GNTCOPY_SOURCE_GREF,
        );
        assert_eq!(copy(BACK, &from_grant, &mut tables, &mut fake), Ok(()));
        assert_eq!(&fake.page(BACK, 3)[4000..4005], b"front");

        fake.page_mut(BACK, 4)[..4].copy_from_slice(b"back");
        let to_grant = copy_op(
            gfn_ptr(DOMID_SELF, 4, 0),
            gref_ptr(FRONT, 20, 4092),
            4,
            GNTCOPY_DEST_GREF,
        );
        assert_eq!(copy(BACK, &to_grant, &mut tables, &mut fake), Ok(()));
        assert_eq!(&fake.page(FRONT, 6)[4092..], b"back");
        assert_eq!(
            fake.flags(FRONT, 20),
            GTF_PERMIT_ACCESS,
            "a copy marks the entry only while it runs"
        );
        assert_eq!(tables[&FRONT].active(20), None);

        // Grant to grant, one domain's own grant through DOMID_SELF.
        fake.grant(BACK, 30, BACK, 8, GTF_PERMIT_ACCESS);
        let both = copy_op(
            gref_ptr(FRONT, 20, 10),
            gref_ptr(DOMID_SELF, 30, 0),
            5,
            GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF,
        );
        assert_eq!(copy(BACK, &both, &mut tables, &mut fake), Ok(()));
        assert_eq!(&fake.page(BACK, 8)[..5], b"front");

        // While mapped read-only by the copier, the grant stays marked.
        fake.grant(FRONT, 21, BACK, 7, GTF_PERMIT_ACCESS);
        let h = map(&mut fake, &mut tables, BACK, FRONT, 21, MAP_AT, RO).unwrap();
        let into_mapped = copy_op(gfn_ptr(DOMID_SELF, 4, 0), gref_ptr(FRONT, 21, 0), 4, 2);
        assert_eq!(copy(BACK, &into_mapped, &mut tables, &mut fake), Ok(()));
        assert_eq!(&fake.page(FRONT, 7)[..4], b"back");
        assert_eq!(fake.flags(FRONT, 21), GTF_PERMIT_ACCESS | GTF_READING);
        unmap_grant_ref(BACK, MAP_AT << 12, h, &mut tables, &mut fake).unwrap();
    }

    #[test]
    fn copy_checks_each_side() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 20, BACK, 6, GTF_PERMIT_ACCESS | GTF_READONLY);
        fake.grant(FRONT, 21, OTHER, 6, GTF_PERMIT_ACCESS);
        let own = gfn_ptr(DOMID_SELF, 3, 0);
        let cases = [
            (
                copy_op(own, gref_ptr(FRONT, 20, 0), 8, GNTCOPY_DEST_GREF),
                GNTST_GENERAL_ERROR,
                "writing through a read-only grant",
            ),
            (
                copy_op(gref_ptr(FRONT, 21, 0), own, 8, GNTCOPY_SOURCE_GREF),
                GNTST_GENERAL_ERROR,
                "a grant made to another domain",
            ),
            (
                copy_op(gfn_ptr(FRONT, 6, 0), own, 8, 0),
                GNTST_PERMISSION_DENIED,
                "a foreign frame without a grant",
            ),
            (
                copy_op(own, gfn_ptr(BACK, 4, 0), 8, 0),
                GNTST_PERMISSION_DENIED,
                "frames only through DOMID_SELF, even one's own",
            ),
            (
                copy_op(gref_ptr(9, 0, 0), own, 8, GNTCOPY_SOURCE_GREF),
                GNTST_BAD_DOMAIN,
                "no such domain",
            ),
            (
                copy_op(gref_ptr(FRONT, 4096, 0), own, 8, GNTCOPY_SOURCE_GREF),
                GNTST_BAD_GNTREF,
                "reference beyond the table",
            ),
            (
                copy_op(gfn_ptr(DOMID_SELF, 0x5000, 0), own, 8, 0),
                GNTST_BAD_PAGE,
                "own frame not RAM",
            ),
            (
                copy_op(gref_ptr(FRONT, 20, 4090), own, 8, GNTCOPY_SOURCE_GREF),
                GNTST_BAD_COPY_ARG,
                "source crosses the page end",
            ),
            (
                copy_op(own, gfn_ptr(DOMID_SELF, 4, 4089), 8, 0),
                GNTST_BAD_COPY_ARG,
                "destination crosses the page end",
            ),
            (
                copy_op(own, gfn_ptr(DOMID_SELF, 4, 0), 4097, 0),
                GNTST_BAD_COPY_ARG,
                "longer than a page",
            ),
            (
                copy_op(own, gfn_ptr(DOMID_SELF, 4, u16::MAX), u16::MAX, 0),
                GNTST_BAD_COPY_ARG,
                "no overflow",
            ),
        ];
        for (op, status, why) in cases {
            assert_eq!(
                copy(BACK, &op, &mut tables, &mut fake),
                Err(status),
                "{why}"
            );
        }
        assert_eq!(fake.flags(FRONT, 20), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(fake.flags(FRONT, 21), GTF_PERMIT_ACCESS);
        assert_eq!(tables[&FRONT].active(20), None, "no pin left behind");
        let nothing = copy_op(gfn_ptr(FRONT, 6, 9999), gfn_ptr(9, 0, 9999), 0, 0);
        assert_eq!(
            copy(BACK, &nothing, &mut tables, &mut fake),
            Ok(()),
            "a zero length is not checked, as in Xen"
        );
        let read = copy_op(gref_ptr(FRONT, 20, 4088), own, 8, GNTCOPY_SOURCE_GREF);
        assert_eq!(
            copy(BACK, &read, &mut tables, &mut fake),
            Ok(()),
            "reading a read-only grant, up to the page end"
        );
    }

    #[test]
    fn setup_table_and_query_size() {
        let (mut fake, mut tables) = setup();
        assert_eq!(
            query_size(FRONT, DOMID_SELF, &mut tables, &fake),
            Ok((1, 4))
        );
        assert_eq!(
            setup_table(FRONT, DOMID_SELF, 3, &mut tables, &mut fake),
            Ok(vec![INVALID_GFN; 3]),
            "frames not in the physmap have no gfn"
        );
        assert_eq!(tables[&FRONT].nr_entries(), 3 * ENTRIES_PER_FRAME);
        assert_eq!(query_size(FRONT, FRONT, &mut tables, &fake), Ok((3, 4)));
        let placed = tables
            .get_mut(&FRONT)
            .unwrap()
            .add_to_physmap(&mut fake, 1, 0x200)
            .unwrap();
        assert_eq!(placed.index, 1);
        assert_eq!(
            setup_table(FRONT, FRONT, 2, &mut tables, &mut fake),
            Ok(vec![INVALID_GFN, 0x200])
        );
        assert_eq!(
            setup_table(FRONT, FRONT, 1, &mut tables, &mut fake),
            Ok(vec![INVALID_GFN]),
            "a smaller request does not shrink"
        );
        assert_eq!(query_size(FRONT, FRONT, &mut tables, &fake), Ok((3, 4)));
        assert_eq!(
            setup_table(FRONT, DOMID_SELF, 5, &mut tables, &mut fake),
            Err(GNTST_GENERAL_ERROR),
            "beyond max_frames"
        );
        assert_eq!(
            setup_table(FRONT, BACK, 1, &mut tables, &mut fake),
            Err(GNTST_PERMISSION_DENIED)
        );
        assert_eq!(
            query_size(FRONT, BACK, &mut tables, &fake),
            Err(GNTST_PERMISSION_DENIED)
        );
        assert_eq!(
            query_size(FRONT, 9, &mut tables, &fake),
            Err(GNTST_BAD_DOMAIN)
        );
        assert_eq!(
            query_size(DOM0, FRONT, &mut tables, &fake),
            Ok((3, 4)),
            "the control domain may look"
        );
        fake.frame_limit = 3;
        assert_eq!(
            setup_table(FRONT, DOMID_SELF, 4, &mut tables, &mut fake),
            Err(GNTST_GENERAL_ERROR),
            "out of memory"
        );
        assert_eq!(get_version(FRONT, DOMID_SELF, &mut tables, &fake), Ok(1));
        assert_eq!(get_version(FRONT, 9, &mut tables, &fake), Err(errno::ESRCH));
        assert_eq!(
            get_version(FRONT, BACK, &mut tables, &fake),
            Err(errno::EPERM)
        );
    }

    #[test]
    fn only_version_1() {
        let (_fake, mut tables) = setup();
        let t = tables.get_mut(&FRONT).unwrap();
        assert_eq!(t.set_version(1), Ok(()));
        assert_eq!(t.set_version(2), Err(errno::ENOSYS));
        assert_eq!(t.set_version(0), Err(errno::EINVAL));
        assert_eq!(t.set_version(3), Err(errno::EINVAL));
        assert_eq!(t.version(), 1);
    }

    #[test]
    fn add_to_physmap_grant_frames() {
        let mut fake = Fake::new();
        fake.frame_limit = 3;
        let mut t = GrantTable::new(FRONT, 4, 16, &mut fake).unwrap();
        assert_eq!(
            t.add_to_physmap(&mut fake, 0, 0x300),
            Ok(GrantFrameMap {
                index: 0,
                gfn: 0x300,
                previous_gfn: None
            })
        );
        assert_eq!(
            t.add_to_physmap(&mut fake, 2, 0x302).map(|m| m.index),
            Ok(2)
        );
        assert_eq!(t.nr_frames(), 3, "grown to make the index valid");
        assert_eq!(
            t.add_to_physmap(&mut fake, 0, 0x310),
            Ok(GrantFrameMap {
                index: 0,
                gfn: 0x310,
                previous_gfn: Some(0x300)
            }),
            "moving a frame"
        );
        assert_eq!(
            t.add_to_physmap(&mut fake, 1, 0x310)
                .map(|m| m.previous_gfn),
            Ok(None)
        );
        assert_eq!(t.frame_gfn(0), None, "replaced at 0x310 by frame 1");
        assert_eq!(t.frame_gfn(1), Some(0x310));
        assert_eq!(
            t.add_to_physmap(&mut fake, 3, 0x303),
            Err(errno::EINVAL),
            "the platform is out of frames"
        );
        assert_eq!(t.add_to_physmap(&mut fake, 4, 0x304), Err(errno::EINVAL));
        assert_eq!(
            t.add_to_physmap(&mut fake, 0x8000_0000, 0x304),
            Err(errno::EINVAL),
            "no status frames in v1"
        );
        assert_eq!(
            t.add_to_physmap(&mut fake, 1 << 32, 0x304),
            Err(errno::EINVAL)
        );
        t.forget_frame_gfn(0x310);
        assert_eq!(t.frame_gfn(1), None);
        assert!(GrantTable::new(FRONT, 0, 16, &mut fake).is_err());
    }

    #[test]
    fn releasing_the_granter_tears_down_every_mapping() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        fake.grant(FRONT, 2, OTHER, 6, GTF_PERMIT_ACCESS | GTF_READONLY);
        fake.grant(BACK, 9, FRONT, 7, GTF_PERMIT_ACCESS);
        fake.grant(BACK, 10, BACK, 8, GTF_PERMIT_ACCESS);
        let back_h = map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RW).unwrap();
        map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT + 1, RO).unwrap();
        let own_h = map(&mut fake, &mut tables, BACK, BACK, 10, MAP_AT + 2, RW).unwrap();
        map(&mut fake, &mut tables, OTHER, FRONT, 2, MAP_AT, RO).unwrap();
        map(&mut fake, &mut tables, FRONT, BACK, 9, MAP_AT, RW).unwrap();
        assert_eq!(fake.foreign.len(), 5);

        assert_eq!(release_domain(FRONT, &mut tables, &mut fake), 4);
        assert_eq!(
            fake.foreign.keys().copied().collect::<Vec<_>>(),
            vec![(BACK, MAP_AT + 2)],
            "only the mapping not involving the released domain is left"
        );
        assert_eq!(fake.flags(BACK, 9), GTF_PERMIT_ACCESS, "its map of BACK");
        assert_eq!(tables[&BACK].active(9), None);
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);
        assert_eq!(fake.flags(FRONT, 2), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert!(!tables[&FRONT].frame_in_use(5));
        assert_eq!(tables[&OTHER].nr_mappings(), 0);
        assert_eq!(tables[&BACK].nr_mappings(), 1);
        assert_eq!(
            unmap_grant_ref(BACK, MAP_AT << 12, back_h, &mut tables, &mut fake),
            Err(GNTST_BAD_HANDLE),
            "the mapper's handle is gone"
        );
        assert_eq!(
            unmap_grant_ref(BACK, (MAP_AT + 2) << 12, own_h, &mut tables, &mut fake),
            Ok(())
        );
        tables.remove(&FRONT);
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RW),
            Err(GNTST_BAD_DOMAIN)
        );
        assert!(fake.foreign.is_empty());
    }

    #[test]
    fn releasing_the_mapper_drops_its_pins() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        fake.grant(OTHER, 1, BACK, 5, GTF_PERMIT_ACCESS);
        map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RW).unwrap();
        map(&mut fake, &mut tables, BACK, OTHER, 1, MAP_AT + 1, RO).unwrap();
        assert_eq!(release_domain(BACK, &mut tables, &mut fake), 2);
        assert!(fake.foreign.is_empty());
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);
        assert_eq!(fake.flags(OTHER, 1), GTF_PERMIT_ACCESS);
        assert!(!tables[&FRONT].frame_in_use(5));
        assert!(!tables[&OTHER].frame_in_use(5));
        assert_eq!(release_domain(9, &mut tables, &mut fake), 0);
    }

    #[test]
    fn maptrack_exhaustion_is_a_status() {
        let (mut fake, mut tables) = setup_with(2);
        for gref in 1..=3 {
            fake.grant(FRONT, gref, BACK, 5, GTF_PERMIT_ACCESS);
        }
        let first = map(&mut fake, &mut tables, BACK, FRONT, 1, MAP_AT, RO).unwrap();
        map(&mut fake, &mut tables, BACK, FRONT, 2, MAP_AT + 1, RO).unwrap();
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 3, MAP_AT + 2, RO),
            Err(GNTST_NO_SPACE)
        );
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 999, MAP_AT + 2, RO),
            Err(GNTST_NO_SPACE),
            "the handle is taken before the reference is looked at, as in Xen"
        );
        assert_eq!(fake.flags(FRONT, 3), GTF_PERMIT_ACCESS);
        unmap_grant_ref(BACK, MAP_AT << 12, first, &mut tables, &mut fake).unwrap();
        assert_eq!(
            map(&mut fake, &mut tables, BACK, FRONT, 3, MAP_AT + 2, RO),
            Ok(first),
            "a freed handle is reused"
        );
    }

    #[test]
    fn swap_grant_ref_swaps_idle_entries() {
        let (mut fake, mut tables) = setup();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        fake.grant(FRONT, 2, OTHER, 6, GTF_PERMIT_ACCESS | GTF_READONLY);
        let t = tables.get_mut(&FRONT).unwrap();
        assert_eq!(t.swap_grant_ref(&fake, 1, 2), Ok(()));
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(fake.words(FRONT, 1).1.load(Ordering::Relaxed), 6);
        assert_eq!(fake.words(FRONT, 2).1.load(Ordering::Relaxed), 5);
        assert_eq!(t.swap_grant_ref(&fake, 1, 1), Ok(()));
        assert_eq!(t.swap_grant_ref(&fake, 1, 512), Err(GNTST_BAD_GNTREF));
        let h = map(&mut fake, &mut tables, BACK, FRONT, 2, MAP_AT, RW).unwrap();
        let t = tables.get_mut(&FRONT).unwrap();
        assert_eq!(
            t.swap_grant_ref(&fake, 2, 1),
            Err(GNTST_EAGAIN),
            "a mapped entry stays put"
        );
        unmap_grant_ref(BACK, MAP_AT << 12, h, &mut tables, &mut fake).unwrap();

        let mut env = Env::new();
        let swaps = [
            GnttabSwapGrantRef {
                ref_a: 1,
                ref_b: 2,
                status: 99,
                ..Default::default()
            },
            GnttabSwapGrantRef {
                ref_a: 1,
                ref_b: 9999,
                ..Default::default()
            },
        ];
        env.put(0x1000, &swaps);
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_SWAP_GRANT_REF,
                0x1000,
                2,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        let out: [GnttabSwapGrantRef; 2] = env.get(0x1000);
        assert_eq!(
            [out[0].status, out[1].status],
            [GNTST_OKAY, GNTST_BAD_GNTREF]
        );
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS, "swapped back");
    }

    /// The caller's guest memory: the hypercall layer's fake guest.
    use crate::hypercall::tests::FakeEnv as Env;

    fn op(
        caller: DomId,
        cmd: u32,
        arg: u64,
        count: u32,
        env: &mut Env,
        tables: &mut Tables,
        fake: &mut Fake,
    ) -> Result<i64, Errno> {
        grant_table_op(caller, cmd, arg, count, tables, &mut Both { env, fake })
    }

    /// The fake platform with the fake guest memory of the caller.
    struct Both<'a> {
        env: &'a mut Env,
        fake: &'a mut Fake,
    }

    impl GuestCopy for Both<'_> {
        fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
            self.env.copy_from_guest(addr, buf)
        }
        fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
            self.env.copy_to_guest(addr, buf)
        }
    }

    impl GrantPlatform for Both<'_> {
        fn grant_frame(&self, domid: DomId, index: u32) -> Option<&[AtomicU32]> {
            self.fake.grant_frame(domid, index)
        }
        fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno> {
            self.fake.grow_grant_frames(domid, nr)
        }
        fn is_ram(&self, domid: DomId, gfn: u64) -> bool {
            self.fake.is_ram(domid, gfn)
        }
        fn map_foreign(
            &mut self,
            mapper: DomId,
            dst: u64,
            granter: DomId,
            src: u64,
            readonly: bool,
        ) -> Result<(), Errno> {
            self.fake.map_foreign(mapper, dst, granter, src, readonly)
        }
        fn unmap_foreign(&mut self, mapper: DomId, dst: u64) -> Result<(), Errno> {
            self.fake.unmap_foreign(mapper, dst)
        }
        fn copy(
            &mut self,
            src: (DomId, u64, u16),
            dst: (DomId, u64, u16),
            len: u16,
        ) -> Result<(), Errno> {
            self.fake.copy(src, dst, len)
        }
        fn is_privileged(&self, domid: DomId) -> bool {
            self.fake.is_privileged(domid)
        }
    }

    /// The fake platform alone has no caller memory.
    impl GuestCopy for Fake {
        fn copy_in(&mut self, _addr: u64, _buf: &mut [u8]) -> Result<(), Errno> {
            Err(errno::EFAULT)
        }
        fn copy_out(&mut self, _addr: u64, _buf: &[u8]) -> Result<(), Errno> {
            Err(errno::EFAULT)
        }
    }

    #[test]
    fn dispatcher_map_and_unmap_arrays() {
        let (mut fake, mut tables) = setup();
        let mut env = Env::new();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        let maps = [
            map_op(FRONT, 1, MAP_AT, RW),
            GnttabMapGrantRef {
                handle: 0xAAAA,
                ..map_op(FRONT, 2, MAP_AT + 1, RW)
            },
            map_op(FRONT, 1, MAP_AT + 2, RO),
        ];
        env.put(0x1000, &maps);
        assert_eq!(
            op(
                BACK,
                GNTTABOP_MAP_GRANT_REF,
                0x1000,
                3,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        let out: [GnttabMapGrantRef; 3] = env.get(0x1000);
        assert_eq!(
            (out[0].status, out[0].handle, out[0].dev_bus_addr),
            (0, 0, 0)
        );
        assert_eq!(
            (out[1].status, out[1].handle),
            (GNTST_GENERAL_ERROR, 0xAAAA),
            "a failed element keeps its handle field"
        );
        assert_eq!((out[2].status, out[2].handle), (0, 1));
        assert_eq!(fake.foreign.len(), 2);

        let unmaps = [
            GnttabUnmapGrantRef {
                host_addr: MAP_AT << 12,
                handle: 0,
                status: 99,
                ..Default::default()
            },
            GnttabUnmapGrantRef {
                host_addr: MAP_AT << 12,
                handle: 7,
                ..Default::default()
            },
            GnttabUnmapGrantRef {
                host_addr: (MAP_AT + 2) << 12,
                handle: 1,
                ..Default::default()
            },
        ];
        env.put(0x2000, &unmaps);
        assert_eq!(
            op(
                BACK,
                GNTTABOP_UNMAP_GRANT_REF,
                0x2000,
                3,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        let out: [GnttabUnmapGrantRef; 3] = env.get(0x2000);
        assert_eq!(
            [out[0].status, out[1].status, out[2].status],
            [GNTST_OKAY, GNTST_BAD_HANDLE, GNTST_OKAY]
        );
        assert_eq!(out[1].handle, 7, "only the status is written back");
        assert!(fake.foreign.is_empty());
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);

        let replace = GnttabUnmapAndReplace {
            host_addr: MAP_AT << 12,
            new_addr: 0x5000,
            handle: 0,
            ..Default::default()
        };
        env.put(0x3000, &replace);
        assert_eq!(
            op(
                BACK,
                GNTTABOP_UNMAP_AND_REPLACE,
                0x3000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        assert_eq!(
            env.get::<GnttabUnmapAndReplace>(0x3000).status,
            GNTST_GENERAL_ERROR
        );
    }

    #[test]
    fn dispatcher_batched_copy_statuses_are_independent() {
        let (mut fake, mut tables) = setup();
        let mut env = Env::new();
        fake.grant(FRONT, 1, BACK, 5, GTF_PERMIT_ACCESS);
        fake.page_mut(FRONT, 5)[..3].copy_from_slice(b"abc");
        let copies = [
            copy_op(gref_ptr(FRONT, 1, 0), gfn_ptr(DOMID_SELF, 2, 0), 3, 1),
            copy_op(gref_ptr(FRONT, 1, 4095), gfn_ptr(DOMID_SELF, 2, 0), 3, 1),
            copy_op(gref_ptr(FRONT, 1, 0), gfn_ptr(DOMID_SELF, 2, 100), 3, 1),
        ];
        env.put(0x1000, &copies);
        assert_eq!(
            op(
                BACK,
                GNTTABOP_COPY,
                0x1000,
                3,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        let out: [GnttabCopy; 3] = env.get(0x1000);
        assert_eq!(
            [out[0].status, out[1].status, out[2].status],
            [GNTST_OKAY, GNTST_BAD_COPY_ARG, GNTST_OKAY]
        );
        assert_eq!(&fake.page(BACK, 2)[..3], b"abc");
        assert_eq!(&fake.page(BACK, 2)[100..103], b"abc");
        assert_eq!(fake.flags(FRONT, 1), GTF_PERMIT_ACCESS);
    }

    #[test]
    fn dispatcher_table_ops() {
        let (mut fake, mut tables) = setup();
        let mut env = Env::new();
        let setup_arg = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 2,
            status: 99,
            frame_list: 0x2000,
            ..Default::default()
        };
        env.put(0x1000, &setup_arg);
        env.put(0x2000, &[7u64; 3]);
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_SETUP_TABLE,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        assert_eq!(env.get::<GnttabSetupTable>(0x1000).status, GNTST_OKAY);
        assert_eq!(env.get::<[u64; 3]>(0x2000), [INVALID_GFN, INVALID_GFN, 7]);
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_SETUP_TABLE,
                0x1000,
                2,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Err(errno::EINVAL)
        );
        env.put(
            0x1000,
            &GnttabSetupTable {
                frame_list: (MEM - 8) as u64,
                ..setup_arg
            },
        );
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_SETUP_TABLE,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        assert_eq!(
            env.get::<GnttabSetupTable>(0x1000).status,
            GNTST_BAD_VIRT_ADDR,
            "the frame list runs off guest memory"
        );

        env.put(
            0x1000,
            &GnttabQuerySize {
                dom: DOMID_SELF,
                status: 99,
                ..Default::default()
            },
        );
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_QUERY_SIZE,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        let q: GnttabQuerySize = env.get(0x1000);
        assert_eq!((q.nr_frames, q.max_nr_frames, q.status), (2, 4, GNTST_OKAY));

        env.put(0x1000, &GnttabSetVersion { version: 2 });
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_SET_VERSION,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Err(errno::ENOSYS)
        );
        assert_eq!(env.get::<GnttabSetVersion>(0x1000).version, 1);
        env.put(0x1000, &GnttabSetVersion { version: 1 });
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_SET_VERSION,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        env.put(
            0x1000,
            &GnttabGetVersion {
                dom: DOMID_SELF,
                pad: 0,
                version: 0,
            },
        );
        assert_eq!(
            op(
                FRONT,
                GNTTABOP_GET_VERSION,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Ok(0)
        );
        assert_eq!(env.get::<GnttabGetVersion>(0x1000).version, 1);
    }

    #[test]
    fn dispatcher_rejects_bad_calls_without_panicking() {
        let (mut fake, mut tables) = setup();
        let mut env = Env::new();
        for (cmd, count, want) in [
            (GNTTABOP_MAP_GRANT_REF, 0x8000_0000, Err(errno::EINVAL)),
            (GNTTABOP_COPY, u32::MAX, Err(errno::EINVAL)),
            (GNTTABOP_MAP_GRANT_REF | 1 << 12, 1, Err(errno::EINVAL)),
            (
                rxen_abi::grant_table::GNTTABOP_TRANSFER,
                1,
                Err(errno::ENOSYS),
            ),
            (GNTTABOP_CACHE_FLUSH | 1 << 12, 1, Err(errno::ENOSYS)),
            (99, 1, Err(errno::ENOSYS)),
            (GNTTABOP_MAP_GRANT_REF, 0, Ok(0)),
        ] {
            assert_eq!(
                op(BACK, cmd, 0x1000, count, &mut env, &mut tables, &mut fake),
                want,
                "cmd {cmd:#x} count {count:#x}"
            );
        }
        // An absurd count ends at the end of guest memory, having handled
        // (and answered) every element up to there.
        assert_eq!(
            op(
                BACK,
                GNTTABOP_UNMAP_GRANT_REF,
                0,
                0x7FFF_FFFF,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Err(errno::EFAULT)
        );
        assert_eq!(env.get::<GnttabUnmapGrantRef>(24).status, GNTST_BAD_HANDLE);
        assert_eq!(
            op(
                BACK,
                GNTTABOP_MAP_GRANT_REF,
                u64::MAX - 8,
                2,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Err(errno::EFAULT)
        );
        assert_eq!(
            op(
                9,
                GNTTABOP_QUERY_SIZE,
                0x1000,
                1,
                &mut env,
                &mut tables,
                &mut fake
            ),
            Err(errno::ENOSYS),
            "a caller without a grant table"
        );
    }
}
