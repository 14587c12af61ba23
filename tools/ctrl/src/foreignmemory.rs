//! Another domain's frames mapped into this process (Xen's libxenforeignmemory):
//! an address range is reserved with `mmap` on `/dev/xen/privcmd`, then privcmd
//! fills it with `IOCTL_PRIVCMD_MMAPBATCH_V2` (the owner's frames by number; the dom0
//! kernel asks the hypervisor with `XENMEM_add_to_physmap_batch`,
//! `XENMAPSPACE_gmfn_foreign`) or `IOCTL_PRIVCMD_MMAP_RESOURCE` (a resource of the
//! owner's, such as its grant table: `XENMEM_acquire_resource`). Unmapping gives
//! the pages back (`XENMEM_remove_from_physmap`).

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::call::{privcmd_ioctl, PAGE_SIZE};
use crate::{Error, Result};

/// `struct privcmd_mmapbatch_v2`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PrivcmdMmapbatchV2 {
    /// Pages.
    pub num: u32,
    /// The owner.
    pub dom: u16,
    /// Where in this process (from the privcmd mmap).
    pub addr: u64,
    /// The owner's frame numbers.
    pub arr: *const u64,
    /// One errno per page (0 or negative).
    pub err: *mut i32,
}

/// `struct privcmd_mmap_resource`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivcmdMmapResource {
    /// The owner.
    pub dom: u16,
    /// `XENMEM_resource_*`.
    pub type_: u32,
    /// The resource's id.
    pub id: u32,
    /// Its first frame.
    pub idx: u32,
    /// Frames.
    pub num: u64,
    /// Where in this process (0: the size query).
    pub addr: u64,
}

/// `IOCTL_PRIVCMD_MMAPBATCH_V2`.
pub const IOCTL_PRIVCMD_MMAPBATCH_V2: u64 =
    privcmd_ioctl(4, std::mem::size_of::<PrivcmdMmapbatchV2>());
/// `IOCTL_PRIVCMD_MMAP_RESOURCE`.
pub const IOCTL_PRIVCMD_MMAP_RESOURCE: u64 =
    privcmd_ioctl(7, std::mem::size_of::<PrivcmdMmapResource>());

nix::ioctl_readwrite_bad!(
    ioctl_mmapbatch_v2,
    IOCTL_PRIVCMD_MMAPBATCH_V2,
    PrivcmdMmapbatchV2
);
nix::ioctl_readwrite_bad!(
    ioctl_mmap_resource,
    IOCTL_PRIVCMD_MMAP_RESOURCE,
    PrivcmdMmapResource
);

/// A range of this process that maps another domain's frames.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<std::ffi::c_void>,
    len: usize,
}

impl Mapping {
    /// Reserves `pages` pages of privcmd's address space.
    fn reserve(privcmd: &File, pages: usize) -> Result<Self> {
        let len =
            NonZeroUsize::new(pages * PAGE_SIZE).ok_or_else(|| Error::new(22, "map no page"))?;
        // SAFETY: a new shared mapping of the privcmd device: privcmd's own VMA,
        // filled only by the ioctls below.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                privcmd,
                0,
            )
        }
        .map_err(|e| Error::new(e as i32, "mmap /dev/xen/privcmd"))?;
        Ok(Self {
            ptr,
            len: len.get(),
        })
    }

    /// The mapped bytes. Another domain's memory: it may change under us.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes mapped for this value's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) }
    }

    /// Its address in this process.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made; privcmd unmaps the frames.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// Maps `dom`'s frames `gfns` (in order) into this process; each page's result
/// (0 or a negative errno) in the second value. The call fails as a whole only
/// if privcmd refuses it.
pub fn map(privcmd: &File, dom: u16, gfns: &[u64]) -> Result<(Mapping, Vec<i32>)> {
    let mapping = Mapping::reserve(privcmd, gfns.len())?;
    let mut errs = vec![0i32; gfns.len()];
    let mut batch = PrivcmdMmapbatchV2 {
        num: u32::try_from(gfns.len()).map_err(|_| Error::new(22, "too many pages"))?,
        dom,
        addr: mapping.addr(),
        arr: gfns.as_ptr(),
        err: errs.as_mut_ptr(),
    };
    // SAFETY: the arrays hold `num` entries and the range was reserved on this
    // privcmd file for `num` pages.
    let rc = unsafe { ioctl_mmapbatch_v2(privcmd.as_raw_fd(), &mut batch) };
    match rc {
        // ENOENT: some pages failed (paged out on Xen); their errs say why.
        Ok(_) | Err(nix::errno::Errno::ENOENT) => Ok((mapping, errs)),
        Err(e) => Err(Error::new(e as i32, format!("map d{dom}'s frames"))),
    }
}

/// Maps frames `idx..idx + num` of resource (`type_`, `id`) of `dom`.
pub fn map_resource(
    privcmd: &File,
    dom: u16,
    type_: u32,
    id: u32,
    idx: u32,
    num: usize,
) -> Result<Mapping> {
    let mapping = Mapping::reserve(privcmd, num)?;
    let mut request = PrivcmdMmapResource {
        dom,
        type_,
        id,
        idx,
        num: num as u64,
        addr: mapping.addr(),
    };
    // SAFETY: a valid request for the range just reserved on this file.
    unsafe { ioctl_mmap_resource(privcmd.as_raw_fd(), &mut request) }
        .map_err(|e| Error::new(e as i32, format!("map resource {type_}/{id} of d{dom}")))?;
    Ok(mapping)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_ioctl_numbers_are_linuxs() {
        assert_eq!(std::mem::size_of::<PrivcmdMmapbatchV2>(), 32);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapbatchV2, addr), 8);
        assert_eq!(std::mem::size_of::<PrivcmdMmapResource>(), 32);
        assert_eq!(std::mem::offset_of!(PrivcmdMmapResource, num), 16);
        assert_eq!(IOCTL_PRIVCMD_MMAPBATCH_V2, 0x0020_5004);
        assert_eq!(IOCTL_PRIVCMD_MMAP_RESOURCE, 0x0020_5007);
    }
}
