//! The work Xen's hotplug scripts do in dom0 (`tools/hotplug/Linux/block`), done
//! here in Rust: a file that backs a guest's disk gets a loop device, whose
//! major:minor blkback opens; when the disk goes, the loop device is let go.
//!
//! The loop device reads and writes its file through dom0's page cache (no direct
//! I/O): with dom0's RAM mapped 1:1 and no IOMMU, no device ever DMAs into the
//! guest's grant-mapped pages, which sit at dom0 addresses that are not their frames.
//!
//! A guest's network interface: netback creates `vif<domid>.<devid>` in dom0; as
//! Xen's `vif-bridge` script, rxl adds it to its bridge and brings it up. Guest
//! traffic stays inside dom0's bridge (no device DMAs into granted pages).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

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

/// `struct ifreq`: an interface name, then a union (an index, flags, a name).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Result<Self, String> {
        let mut req = IfReq {
            name: [0; 16],
            data: [0; 24],
        };
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 15 {
            return Err(format!("{name} is not an interface name"));
        }
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }
}

// <linux/sockios.h>
nix::ioctl_read_bad!(siocgifflags, 0x8913, IfReq);
nix::ioctl_write_ptr_bad!(siocsifflags, 0x8914, IfReq);
nix::ioctl_write_ptr_bad!(siocsifname, 0x8923, IfReq);
nix::ioctl_write_ptr_bad!(siocbraddif, 0x89a2, IfReq);
/// `IFF_UP`.
const IFF_UP: i16 = 1;

/// Whether dom0 has the bridge `bridge`.
pub fn bridge_exists(bridge: &str) -> bool {
    !bridge.contains('/') && Path::new(&format!("/sys/class/net/{bridge}/bridge")).is_dir()
}

/// Checks that the bridge a vif is to join exists (before anything is created)
/// and has no physical port: without an IOMMU, a NIC would DMA from the guest's
/// grant-mapped pages at dom0 addresses that are not their frames.
pub fn check_bridge(bridge: &str) -> Result<(), String> {
    if !bridge_exists(bridge) {
        return Err(format!(
            "bridge {bridge} does not exist in dom0 (create it first, e.g. \
             `ip link add {bridge} type bridge; ip link set {bridge} up`)"
        ));
    }
    let ports = fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .map_err(|e| format!("ports of {bridge}: {e}"))?;
    for port in ports.flatten() {
        let name = port.file_name().to_string_lossy().into_owned();
        let subsystem = fs::read_link(format!("/sys/class/net/{name}/device/subsystem"));
        if let Ok(subsystem) = subsystem {
            if !subsystem.ends_with("xen-backend") {
                return Err(format!(
                    "bridge {bridge} has the physical port {name}: rxen has no IOMMU yet, \
                     so the NIC's DMA would miss guest pages that dom0 maps by grant"
                ));
            }
        }
    }
    Ok(())
}

/// Xen's `vif-bridge` script's work for the backend interface `ifname` that
/// netback created: renamed to `vifname` if asked, added to `bridge`, brought up.
/// Returns the interface's final name.
pub fn vif_online(ifname: &str, vifname: Option<&str>, bridge: &str) -> Result<String, String> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    check_bridge(bridge)?;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let fd = sock.as_raw_fd();
    let mut name = ifname.to_string();
    if let Some(new) = vifname.filter(|n| *n != ifname) {
        let mut req = IfReq::new(&name)?;
        let bytes = new.as_bytes();
        if bytes.is_empty() || bytes.len() > 15 {
            return Err(format!("{new} is not an interface name"));
        }
        req.data[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: SIOCSIFNAME reads a `struct ifreq`, which `req` is.
        unsafe { siocsifname(fd, &req) }.map_err(|e| format!("rename {name} to {new}: {e}"))?;
        name = new.to_string();
    }
    let index: i32 = fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| format!("no interface {name}"))?;
    let mut req = IfReq::new(bridge)?;
    req.data[..4].copy_from_slice(&index.to_ne_bytes());
    // SAFETY: SIOCBRADDIF reads a `struct ifreq` (the bridge, an index).
    unsafe { siocbraddif(fd, &req) }.map_err(|e| format!("add {name} to {bridge}: {e}"))?;
    let mut req = IfReq::new(&name)?;
    // SAFETY: SIOCGIFFLAGS fills in a `struct ifreq`, which `req` is.
    unsafe { siocgifflags(fd, &mut req) }.map_err(|e| format!("flags of {name}: {e}"))?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | IFF_UP;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: SIOCSIFFLAGS reads a `struct ifreq`.
    unsafe { siocsifflags(fd, &req) }.map_err(|e| format!("bring {name} up: {e}"))?;
    Ok(name)
}
