//! The platform side of grant tables: [`GrantPlatform`] over the machine's
//! domains, so that the core's grant-table code can reach the granting and
//! the mapping domain's memory (grant frames, RAM, nested page tables).
//!
//! Machine frames ([`Mfn`]) are host frame numbers (host memory is
//! identity-mapped). A granted frame is the granter's RAM, which is freed
//! only when the granter is destroyed, after every mapping of it is gone
//! and the mappers' TLBs are flushed ([`Platform::flush_changed`]).

use alloc::vec::Vec;
use rxen_core::shared_page::SharedPage;

use rxen_abi::errno::{self, Errno};
use rxen_core::domain::DomId;
use rxen_core::grant_table::{GrantPlatform, Mfn};
use rxen_core::hypercall::GuestCopy;
use rxen_core::mm::Gfn;
use rxen_x86::frame::{FrameRef, PAGE_SIZE};
use rxen_x86::svm::guest_walk::PagingRegs;

use super::memory::GuestMemory;
use super::DomainTable;

/// The calling domain, which is not in the domain table while it is served.
pub struct Caller<'a> {
    /// Its ID.
    pub id: DomId,
    /// Whether it is the control domain.
    pub privileged: bool,
    /// Its memory.
    pub memory: &'a mut GuestMemory,
    /// The calling vCPU's paging registers (to copy arguments).
    pub paging: PagingRegs,
}

/// Grant operations on the machine: the caller (if any) and every other
/// live domain.
pub struct Platform<'a> {
    /// The domain making the hypercall.
    pub caller: Option<Caller<'a>>,
    /// The other domains.
    pub domains: &'a mut DomainTable,
    /// Set when the caller's nested page table changed.
    pub caller_npt_changed: bool,
    /// Other domains whose nested page table changed (their vCPUs must
    /// flush their TLBs).
    pub changed: Vec<DomId>,
}

impl<'a> Platform<'a> {
    /// A platform over `domains`, serving `caller`.
    pub fn new(caller: Option<Caller<'a>>, domains: &'a mut DomainTable) -> Self {
        Self {
            caller,
            domains,
            caller_npt_changed: false,
            changed: Vec::new(),
        }
    }

    fn memory(&self, domid: DomId) -> Option<&GuestMemory> {
        match &self.caller {
            Some(caller) if caller.id == domid => Some(&*caller.memory),
            _ => self
                .domains
                .get(&domid)
                .filter(|d| d.dying.is_none())
                .map(|d| &d.memory),
        }
    }

    fn memory_mut(&mut self, domid: DomId) -> Option<&mut GuestMemory> {
        match &mut self.caller {
            Some(caller) if caller.id == domid => Some(&mut *caller.memory),
            _ => self
                .domains
                .get_mut(&domid)
                .filter(|d| d.dying.is_none())
                .map(|d| &mut d.memory),
        }
    }

    fn npt_changed(&mut self, domid: DomId) {
        match &self.caller {
            Some(caller) if caller.id == domid => self.caller_npt_changed = true,
            _ => {
                if !self.changed.contains(&domid) {
                    // At most one entry per domain: bounded by the table.
                    if self.changed.try_reserve(1).is_ok() {
                        self.changed.push(domid);
                    } else if let Some(domain) = self.domains.get_mut(&domid) {
                        super::tlb::flush_domain(domid, &mut domain.vcpus, &domain.running_on);
                    }
                }
            }
        }
    }

    /// Makes every domain (other than the caller) whose nested page table
    /// lost or changed a mapping stop using its old TLB entries, on every
    /// CPU, before this returns. Returns false if a CPU did not acknowledge
    /// (see `tlb`).
    pub fn flush_changed(&mut self) -> bool {
        let mut done = true;
        for domid in core::mem::take(&mut self.changed) {
            if let Some(domain) = self.domains.get_mut(&domid) {
                done &= super::tlb::flush_domain(domid, &mut domain.vcpus, &domain.running_on);
            }
        }
        done
    }
}

impl GuestCopy for Platform<'_> {
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let caller = self.caller.as_ref().ok_or(errno::EFAULT)?;
        caller.memory.read_linear(&caller.paging, addr, buf)
    }

    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        let caller = self.caller.as_mut().ok_or(errno::EFAULT)?;
        caller.memory.write_linear(&caller.paging, addr, buf)
    }
}

impl GrantPlatform for Platform<'_> {
    fn grant_frame(&self, domid: DomId, index: u32) -> Option<SharedPage<'_>> {
        self.memory(domid)?.grant_frame(index)
    }

    fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno> {
        self.memory_mut(domid)
            .ok_or(errno::ESRCH)?
            .grow_grant_frames(nr)
    }

    fn ram_frame(&self, domid: DomId, gfn: u64) -> Option<Mfn> {
        let hpa = self.memory(domid)?.ram_frame(Gfn(gfn))?;
        Some(hpa.mfn())
    }

    fn map_foreign(
        &mut self,
        mapper: DomId,
        dst: u64,
        mfn: Mfn,
        readonly: bool,
    ) -> Result<u64, Errno> {
        let hpa = mfn.hpa().ok_or(errno::EINVAL)?;
        let restore =
            self.memory_mut(mapper)
                .ok_or(errno::ESRCH)?
                .map_foreign(Gfn(dst), hpa, readonly)?;
        self.npt_changed(mapper);
        Ok(restore)
    }

    fn unmap_foreign(&mut self, mapper: DomId, dst: u64, restore: u64) -> Result<(), Errno> {
        self.memory_mut(mapper)
            .ok_or(errno::ESRCH)?
            .unmap_foreign(Gfn(dst), restore)?;
        self.npt_changed(mapper);
        Ok(())
    }

    fn copy(&mut self, src: (Mfn, u16), dst: (Mfn, u16), len: u16) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        if src.1 as usize + len as usize > 4096 || dst.1 as usize + len as usize > 4096 {
            return Err(errno::EINVAL);
        }
        let hpa = |mfn: Mfn| mfn.0.checked_mul(4096).ok_or(errno::EINVAL);
        let (from, to) = (hpa(src.0)?, hpa(dst.0)?);
        // SAFETY: both frames are RAM of live domains, found by the core
        // through `ram_frame` (its own or a pinned grant's) under the
        // machine lock, so neither is freed during the copy; host memory is
        // identity-mapped; the views only copy.
        let (from, to) = unsafe { (FrameRef::new(from, PAGE_SIZE), FrameRef::new(to, PAGE_SIZE)) };
        from.copy_to(src.1.into(), &to, dst.1.into(), len.into())
            .map_err(|_| errno::EINVAL)
    }

    fn is_privileged(&self, domid: DomId) -> bool {
        match &self.caller {
            Some(caller) if caller.id == domid => caller.privileged,
            _ => self.domains.get(&domid).is_some_and(|d| d.core.privileged),
        }
    }
}
