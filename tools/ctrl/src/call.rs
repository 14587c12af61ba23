//! Hypercalls from user space (Xen's libxencall): `IOCTL_PRIVCMD_HYPERCALL` on
//! `/dev/xen/privcmd`, which the dom0 kernel issues for us. The hypervisor reads and
//! writes the arguments at their user addresses while the kernel waits, so they live
//! in [`Buffer`]s: pages of `/dev/xen/hypercall` (privcmd-buf), which the kernel keeps
//! resident, as libxencall does; where that device is missing, locked anonymous
//! pages.

use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use nix::sys::mman::{mlock, mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::{Error, Result};

/// `struct privcmd_hypercall` (Linux's `include/uapi/xen/privcmd.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivcmdHypercall {
    /// The hypercall number.
    pub op: u64,
    /// Its five arguments.
    pub arg: [u64; 5],
}

/// `_IOC(dir, 'P', nr, size)` of Linux's privcmd ioctls (`_IOC_NONE` is 0).
pub const fn privcmd_ioctl(nr: u64, size: usize) -> u64 {
    ((size as u64) << 16) | ((b'P' as u64) << 8) | nr
}

/// `IOCTL_PRIVCMD_HYPERCALL`.
pub const IOCTL_PRIVCMD_HYPERCALL: u64 = privcmd_ioctl(0, std::mem::size_of::<PrivcmdHypercall>());

nix::ioctl_readwrite_bad!(ioctl_hypercall, IOCTL_PRIVCMD_HYPERCALL, PrivcmdHypercall);

/// Page size of the dom0 kernel (x86).
pub const PAGE_SIZE: usize = 4096;

/// The control domain's hypercall channel.
#[derive(Debug)]
pub struct Xencall {
    privcmd: File,
    buffers: Option<File>,
}

impl Xencall {
    /// Opens `/dev/xen/privcmd` (and `/dev/xen/hypercall` for buffers, if there).
    pub fn open() -> Result<Self> {
        let privcmd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/privcmd")
            .map_err(|e| Error::io(e, "open /dev/xen/privcmd"))?;
        let buffers = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/hypercall")
            .ok();
        Ok(Self { privcmd, buffers })
    }

    /// The privcmd device (foreign maps are made on it too).
    pub fn privcmd(&self) -> &File {
        &self.privcmd
    }

    /// Issues hypercall `op` with `args` and returns what it returned (Xen's
    /// errno as [`Error`] when negative).
    ///
    /// # Safety
    /// Every argument the hypercall takes as an address must point into a live
    /// [`Buffer`] of the right size: the hypervisor writes there.
    pub unsafe fn hypercall(&self, op: u64, args: [u64; 5], what: &str) -> Result<i64> {
        let mut call = PrivcmdHypercall { op, arg: args };
        // SAFETY: a valid `privcmd_hypercall`; the caller vouches for the
        // addresses it carries.
        match unsafe { ioctl_hypercall(self.privcmd.as_raw_fd(), &mut call) } {
            Ok(ret) => Ok(i64::from(ret)),
            Err(errno) => Err(Error::new(errno as i32, what)),
        }
    }

    /// A zeroed buffer of at least `len` bytes (whole pages) for hypercall
    /// arguments.
    pub fn buffer(&self, len: usize) -> Result<Buffer> {
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let size = NonZeroUsize::new(pages * PAGE_SIZE).ok_or_else(|| Error::new(22, "buffer"))?;
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        let ptr = match &self.buffers {
            // SAFETY: a new shared mapping of privcmd-buf's pages; nothing else
            // refers to the range.
            Some(dev) => unsafe { mmap(None, size, prot, MapFlags::MAP_SHARED, dev, 0) },
            // SAFETY: a new private anonymous mapping.
            None => unsafe { mmap_anonymous(None, size, prot, MapFlags::MAP_PRIVATE) },
        }
        .map_err(|e| Error::new(e as i32, "mmap a hypercall buffer"))?;
        let buffer = Buffer {
            ptr,
            len: size.get(),
        };
        if self.buffers.is_none() {
            // SAFETY: the range is the mapping just made.
            unsafe { mlock(ptr, size.get()) }.map_err(|e| Error::new(e as i32, "mlock"))?;
        }
        // Touch every page: resident before the hypervisor looks.
        // SAFETY: the mapping is `len` writable bytes, owned by `buffer`.
        unsafe { std::ptr::write_bytes(ptr.as_ptr().cast::<u8>(), 0, buffer.len) };
        Ok(buffer)
    }

    /// A buffer holding `value`, its address for a hypercall argument.
    pub fn buffer_with<T: IntoBytes + Immutable>(&self, value: &T) -> Result<Buffer> {
        let mut buffer = self.buffer(std::mem::size_of_val(value))?;
        buffer.bytes_mut()[..size_of_val(value)].copy_from_slice(value.as_bytes());
        Ok(buffer)
    }
}

/// Pages the hypervisor may read and write during a hypercall.
#[derive(Debug)]
pub struct Buffer {
    ptr: NonNull<std::ffi::c_void>,
    len: usize,
}

impl Buffer {
    /// Its address (a hypercall argument).
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped for this buffer's lifetime; the hypervisor
        // writes them only during a hypercall, which borrows nothing from here.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len) }
    }

    /// Its bytes, to fill.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) }
    }

    /// The `T` at byte `offset`.
    pub fn read<T: FromBytes>(&self, offset: usize) -> T {
        T::read_from_prefix(&self.bytes()[offset..])
            .map(|(value, _)| value)
            .unwrap_or_else(|_| T::new_zeroed())
    }

    /// Writes `value` at byte `offset`.
    pub fn write<T: IntoBytes + Immutable>(&mut self, offset: usize, value: &T) {
        let bytes = value.as_bytes();
        self.bytes_mut()[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the mapping this buffer made, not used after this.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_linuxs() {
        assert_eq!(std::mem::size_of::<PrivcmdHypercall>(), 48);
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
    }
}
