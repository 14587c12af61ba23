//! The platform side of grant tables: [`GrantPlatform`] over the machine's
//! domains, so that the core's grant-table code can reach the granting and
//! the mapping domain's memory (grant frames, RAM, nested page tables).

use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;

use rxen_abi::errno::{self, Errno};
use rxen_core::domain::DomId;
use rxen_core::grant_table::GrantPlatform;
use rxen_core::hypercall::GuestCopy;
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
                if let Some(domain) = self.domains.get_mut(&domid) {
                    domain.vcpus.iter_mut().for_each(|v| v.flush_tlb = true);
                }
                if !self.changed.contains(&domid) {
                    self.changed.push(domid);
                }
            }
        }
    }

    /// Host address of byte `offset` of `domid`'s frame `gfn`.
    fn host_address(&self, domid: DomId, gfn: u64, offset: u16, write: bool) -> Result<u64, Errno> {
        let memory = self.memory(domid).ok_or(errno::ESRCH)?;
        let gpa = gfn.checked_mul(4096).ok_or(errno::EINVAL)?;
        memory
            .host_address(gpa + offset as u64, write)
            .ok_or(errno::EFAULT)
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
    fn grant_frame(&self, domid: DomId, index: u32) -> Option<&[AtomicU32]> {
        self.memory(domid)?.grant_frame(index)
    }

    fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno> {
        self.memory_mut(domid)
            .ok_or(errno::ESRCH)?
            .grow_grant_frames(nr)
    }

    fn is_ram(&self, domid: DomId, gfn: u64) -> bool {
        self.memory(domid).is_some_and(|m| m.is_own_ram(gfn))
    }

    fn map_foreign(
        &mut self,
        mapper: DomId,
        dst: u64,
        granter: DomId,
        src: u64,
        readonly: bool,
    ) -> Result<(), Errno> {
        let hpa = self.host_address(granter, src, 0, false)?;
        self.memory_mut(mapper)
            .ok_or(errno::ESRCH)?
            .map_foreign(dst, hpa, readonly)?;
        self.npt_changed(mapper);
        Ok(())
    }

    fn unmap_foreign(&mut self, mapper: DomId, dst: u64) -> Result<(), Errno> {
        self.memory_mut(mapper)
            .ok_or(errno::ESRCH)?
            .unmap_foreign(dst)?;
        self.npt_changed(mapper);
        Ok(())
    }

    fn copy(
        &mut self,
        src: (DomId, u64, u16),
        dst: (DomId, u64, u16),
        len: u16,
    ) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        let from = self.host_address(src.0, src.1, src.2, false)?;
        let to = self.host_address(dst.0, dst.1, dst.2, true)?;
        if src.2 as usize + len as usize > 4096 || dst.2 as usize + len as usize > 4096 {
            return Err(errno::EINVAL);
        }
        // SAFETY: both ranges lie within one mapped (and, for the target,
        // writable) guest page each, checked above; they may overlap (a copy
        // within one page), which `copy` allows.
        unsafe { core::ptr::copy(from as *const u8, to as *mut u8, len as usize) };
        Ok(())
    }

    fn is_privileged(&self, domid: DomId) -> bool {
        match &self.caller {
            Some(caller) if caller.id == domid => caller.privileged,
            _ => self.domains.get(&domid).is_some_and(|d| d.core.privileged),
        }
    }
}
