//! Another domain's grants mapped into this process (Xen's libxengnttab):
//! `/dev/xen/gntdev`. `IOCTL_GNTDEV_MAP_GRANT_REF` makes the dom0 kernel map the
//! grants (`GNTTABOP_map_grant_ref`) and returns an offset to `mmap`; dropping the
//! [`GrantMapping`] unmaps them.

use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::call::{privcmd_ioctl, PAGE_SIZE};
use crate::{Error, Result};

/// `struct ioctl_gntdev_map_grant_ref` with one grant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntdevMapGrantRef {
    /// Grants (1).
    pub count: u32,
    /// Padding.
    pub pad: u32,
    /// OUT: the offset to mmap.
    pub index: u64,
    /// The granting domain.
    pub domid: u32,
    /// The grant reference.
    pub gref: u32,
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GntdevUnmapGrantRef {
    /// The offset the map returned.
    pub index: u64,
    /// Pages.
    pub count: u32,
    /// Padding.
    pub pad: u32,
}

/// `_IOC(_IOC_NONE, 'G', nr, size)`.
const fn gntdev_ioctl(nr: u64, size: usize) -> u64 {
    privcmd_ioctl(nr, size) & !0xff00 | ((b'G' as u64) << 8)
}

/// `IOCTL_GNTDEV_MAP_GRANT_REF`.
pub const IOCTL_GNTDEV_MAP_GRANT_REF: u64 = gntdev_ioctl(0, size_of::<GntdevMapGrantRef>());
/// `IOCTL_GNTDEV_UNMAP_GRANT_REF`.
pub const IOCTL_GNTDEV_UNMAP_GRANT_REF: u64 = gntdev_ioctl(1, size_of::<GntdevUnmapGrantRef>());

nix::ioctl_readwrite_bad!(ioctl_map, IOCTL_GNTDEV_MAP_GRANT_REF, GntdevMapGrantRef);
nix::ioctl_readwrite_bad!(
    ioctl_unmap,
    IOCTL_GNTDEV_UNMAP_GRANT_REF,
    GntdevUnmapGrantRef
);

/// An open `/dev/xen/gntdev`.
#[derive(Debug)]
pub struct Gnttab {
    file: File,
}

impl Gnttab {
    /// Opens the device.
    pub fn open() -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/gntdev")
            .map_err(|e| Error::io(e, "open /dev/xen/gntdev"))?;
        Ok(Self { file })
    }

    /// Maps grant `gref` of domain `domid`, writable.
    pub fn map(&self, domid: u16, gref: u32) -> Result<GrantMapping<'_>> {
        let mut request = GntdevMapGrantRef {
            count: 1,
            domid: u32::from(domid),
            gref,
            ..Default::default()
        };
        let what = || format!("map grant {gref} of d{domid}");
        // SAFETY: a `struct ioctl_gntdev_map_grant_ref` with `count` (1) grants.
        unsafe { ioctl_map(self.file.as_raw_fd(), &mut request) }
            .map_err(|e| Error::new(e as i32, what()))?;
        let len = NonZeroUsize::new(PAGE_SIZE).ok_or_else(|| Error::new(22, what()))?;
        // SAFETY: a new shared mapping of the grant gntdev just mapped, at the
        // offset it returned.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &self.file,
                request.index as i64,
            )
        };
        match ptr {
            Ok(ptr) => Ok(GrantMapping {
                gnttab: self,
                ptr,
                index: request.index,
            }),
            Err(e) => {
                self.unmap(request.index);
                Err(Error::new(e as i32, format!("mmap {}", what())))
            }
        }
    }

    fn unmap(&self, index: u64) {
        let mut request = GntdevUnmapGrantRef {
            index,
            count: 1,
            pad: 0,
        };
        // SAFETY: a `struct ioctl_gntdev_unmap_grant_ref` for a map of ours.
        let _ = unsafe { ioctl_unmap(self.file.as_raw_fd(), &mut request) };
    }
}

/// One grant mapped into this process.
#[derive(Debug)]
pub struct GrantMapping<'a> {
    gnttab: &'a Gnttab,
    ptr: NonNull<std::ffi::c_void>,
    index: u64,
}

impl GrantMapping<'_> {
    /// The page's address in this process (another domain writes it
    /// concurrently: reach it with volatile or atomic accesses).
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }
}

impl Drop for GrantMapping<'_> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        let _ = unsafe { munmap(self.ptr, PAGE_SIZE) };
        self.gnttab.unmap(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_ioctl_numbers_are_linuxs() {
        assert_eq!(size_of::<GntdevMapGrantRef>(), 24);
        assert_eq!(size_of::<GntdevUnmapGrantRef>(), 16);
        assert_eq!(IOCTL_GNTDEV_MAP_GRANT_REF, 0x0018_4700);
        assert_eq!(IOCTL_GNTDEV_UNMAP_GRANT_REF, 0x0010_4701);
    }
}
