//! The work Xen's hotplug scripts do in dom0 (`tools/hotplug/Linux/block`), done
//! here in Rust: a file that backs a guest's disk gets a loop device, whose
//! major:minor blkback opens; when the disk goes, the loop device is let go.
//!
//! The loop device reads and writes its file through dom0's page cache (no direct
//! I/O): with dom0's RAM mapped 1:1 and no IOMMU, no device ever DMAs into the
//! guest's grant-mapped pages, which sit at dom0 addresses that are not their frames.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// `/dev/loop-control`.
const LOOP_CONTROL: &str = "/dev/loop-control";

// <linux/loop.h>
nix::ioctl_none_bad!(loop_ctl_get_free, 0x4c82);
nix::ioctl_write_int_bad!(loop_set_fd, 0x4c00);
nix::ioctl_none_bad!(loop_clr_fd, 0x4c01);

/// A loop device set up for a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: String,
    /// Its device number.
    pub major: u32,
    /// Its device number's minor part.
    pub minor: u32,
}

/// Checks a disk's target before anything is created: it must be a regular file
/// (readable, and writable for a writable disk). A block device is refused: with no
/// IOMMU, its DMA would bypass the grant mappings (see the module comment).
pub fn check_target(target: &str, writable: bool) -> Result<(), String> {
    let meta = fs::metadata(target).map_err(|e| format!("disk target {target}: {e}"))?;
    if meta.file_type().is_block_device() {
        return Err(format!(
            "disk target {target} is a block device: rxen has no IOMMU yet, so a physical \
             disk's DMA could reach guest pages that dom0 maps by grant; use an image file"
        ));
    }
    if !meta.is_file() {
        return Err(format!("disk target {target} is not a regular file"));
    }
    OpenOptions::new()
        .read(true)
        .write(writable)
        .open(target)
        .map(drop)
        .map_err(|e| format!("disk target {target}: {e}"))
}

/// Attaches `target` to a free loop device (read-only unless `writable`).
pub fn loop_attach(target: &str, writable: bool) -> Result<LoopDevice, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(target)
        .map_err(|e| format!("{target}: {e}"))?;
    let control = File::open(LOOP_CONTROL)
        .map_err(|e| format!("{LOOP_CONTROL}: {e} (is the loop module loaded?)"))?;
    // Another process may take the free device first: ask again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is open.
        let n = unsafe { loop_ctl_get_free(control.as_raw_fd()) }
            .map_err(|e| format!("LOOP_CTL_GET_FREE: {e}"))?;
        let path = format!("/dev/loop{n}");
        let dev = match OpenOptions::new().read(true).write(writable).open(&path) {
            Ok(dev) => dev,
            Err(e) => return Err(format!("{path}: {e}")),
        };
        // SAFETY: LOOP_SET_FD takes a file descriptor by value; both are open.
        match unsafe { loop_set_fd(dev.as_raw_fd(), file.as_raw_fd()) } {
            Ok(_) => {
                let rdev = dev.metadata().map_err(|e| format!("{path}: {e}"))?.rdev();
                return Ok(LoopDevice {
                    path,
                    major: nix::sys::stat::major(rdev) as u32,
                    minor: nix::sys::stat::minor(rdev) as u32,
                });
            }
            Err(nix::errno::Errno::EBUSY) => continue,
            Err(e) => return Err(format!("LOOP_SET_FD {path}: {e}")),
        }
    }
    Err("no free loop device".to_string())
}

/// Lets the loop device `path` go: it is detached now, or (Linux's autoclear) as
/// soon as its last user, blkback, closes it.
pub fn loop_detach(path: &str) -> Result<(), String> {
    if !path.starts_with("/dev/loop") {
        return Err(format!("{path} is not a loop device"));
    }
    let dev = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: LOOP_CLR_FD takes no argument; the fd is open.
    match unsafe { loop_clr_fd(dev.as_raw_fd()) } {
        // ENXIO: not attached (any more).
        Ok(_) | Err(nix::errno::Errno::ENXIO) => Ok(()),
        Err(e) => Err(format!("LOOP_CLR_FD {path}: {e}")),
    }
}
