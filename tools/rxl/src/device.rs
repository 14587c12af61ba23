//! Split-driver devices as libxl sets them up (`libxl_device.c`, `libxl_disk.c`,
//! `libxl_nic.c`,
//! `docs/misc/xenstore-paths.pandoc`): the backend directory
//! `/local/domain/0/backend/<kind>/<domid>/<devid>` (dom0's, readable by the guest),
//! the frontend directory `/local/domain/<domid>/device/<kind>/<devid>` (the guest's,
//! readable by dom0), written in one transaction with the xenbus states at
//! `Initialising`; the hotplug work done first ([`crate::hotplug`]); then rxl waits
//! for dom0's backend driver to take the device (`InitWait`). Removal as libxl's:
//! gently (backend `online = 0`, state `Closing`; the frontend closes, the backend
//! follows to `Closed` and lets go), or by force for a domain being destroyed (the
//! frontend directory removed: the backend sees no frontend and lets go), then the
//! directories and the hotplug work undone.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::disk::DiskSpec;
use crate::hotplug;
use crate::nic::NicSpec;
use crate::xenstore::{Dir, Nodes, Xenstore};

/// xenbus states (`io/xenbus.h`).
pub const XENBUS_STATE_INITIALISING: u32 = 1;
/// The backend is ready for the frontend.
pub const XENBUS_STATE_INIT_WAIT: u32 = 2;
/// Closing.
pub const XENBUS_STATE_CLOSING: u32 = 5;
/// Closed.
pub const XENBUS_STATE_CLOSED: u32 = 6;

/// How long a backend gets to take or let go of a device (libxl's
/// `LIBXL_DESTROY_TIMEOUT` and `LIBXL_INIT_TIMEOUT` are 10 s).
const TIMEOUT: Duration = Duration::from_secs(10);

/// A virtual block device's kind in xenstore paths.
pub const VBD: &str = "vbd";
/// A virtual network interface's kind in xenstore paths.
pub const VIF: &str = "vif";

/// The backend directory of device `devid` of `kind` of domain `domid`.
pub fn backend_path(kind: &str, domid: u16, devid: u32) -> String {
    format!("/local/domain/0/backend/{kind}/{domid}/{devid}")
}

/// The frontend directory of device `devid` of `kind` of domain `domid`.
pub fn frontend_path(kind: &str, domid: u16, devid: u32) -> String {
    format!("/local/domain/{domid}/device/{kind}/{devid}")
}

/// Where dom0's kernel shows a backend device it drives.
fn backend_sysfs(kind: &str, domid: u16, devid: u32) -> String {
    format!("/sys/bus/xen-backend/devices/{kind}-{domid}-{devid}")
}

/// Checks the devices of a domain to be created: every disk target usable, every
/// bridge there (nothing is created otherwise).
pub fn check_devices(disks: &[DiskSpec], nics: &[NicSpec]) -> Result<(), String> {
    for disk in disks.iter().filter(|d| !d.target.is_empty()) {
        hotplug::check_target(&disk.target, disk.writable)?;
    }
    for nic in nics {
        hotplug::check_bridge(&nic.bridge)?;
    }
    Ok(())
}

/// The xenstore nodes of a disk's backend and frontend (libxl's
/// `device_disk_add`).
fn disk_nodes(domid: u16, disk: &DiskSpec, dev: &hotplug::LoopDevice) -> (Nodes, Nodes) {
    let devid = disk.devid();
    let back = vec![
        ("frontend", frontend_path(VBD, domid, devid)),
        ("frontend-id", domid.to_string()),
        ("params", disk.target.clone()),
        (
            "physical-device",
            format!("{:x}:{:x}", dev.major, dev.minor),
        ),
        ("physical-device-path", dev.path.clone()),
        ("online", "1".into()),
        ("removable", u8::from(disk.cdrom).to_string()),
        ("bootable", "1".into()),
        ("state", XENBUS_STATE_INITIALISING.to_string()),
        ("dev", disk.vdev.clone()),
        ("type", "phy".into()),
        ("mode", if disk.writable { "w" } else { "r" }.into()),
        (
            "device-type",
            if disk.cdrom { "cdrom" } else { "disk" }.into(),
        ),
        ("discard-enable", u8::from(disk.discard).to_string()),
        ("hotplug-status", "connected".into()),
    ];
    let front = vec![
        ("backend", backend_path(VBD, domid, devid)),
        ("backend-id", "0".into()),
        ("state", XENBUS_STATE_INITIALISING.to_string()),
        ("virtual-device", devid.to_string()),
        (
            "device-type",
            if disk.cdrom { "cdrom" } else { "disk" }.into(),
        ),
    ];
    (back, front)
}

/// Adds `disk` to domain `domid`: a loop device for its file, the xenstore
/// directories, and dom0's blkback taking it.
pub fn disk_add(xs: &mut Xenstore, domid: u16, disk: &DiskSpec) -> Result<(), String> {
    let devid = disk.devid();
    if xs
        .read(&format!("{}/state", backend_path(VBD, domid, devid)))
        .is_some()
    {
        return Err(format!("d{domid} already has a disk {}", disk.vdev));
    }
    hotplug::check_target(&disk.target, disk.writable)?;
    let dev = hotplug::loop_attach(&disk.target, disk.writable)?;
    let (back, front) = disk_nodes(domid, disk, &dev);
    add(xs, VBD, domid, devid, back, front).inspect_err(|_| {
        let _ = hotplug::loop_detach(&dev.path);
    })
}

/// Adds network interface `nic` to domain `domid` as device `devid`: the
/// xenstore directories, dom0's netback creating its interface, which joins the
/// bridge (the `vif-bridge` script's work), then `hotplug-status`.
pub fn nic_add(xs: &mut Xenstore, domid: u16, devid: u32, nic: &NicSpec) -> Result<(), String> {
    if xs
        .read(&format!("{}/state", backend_path(VIF, domid, devid)))
        .is_some()
    {
        return Err(format!("d{domid} already has a vif {devid}"));
    }
    hotplug::check_bridge(&nic.bridge)?;
    let (back, front) = nic_nodes(domid, devid, nic);
    add(xs, VIF, domid, devid, back, front)?;
    // netback answers InitWait before its interface exists.
    let ifname = format!("vif{domid}.{devid}");
    let net = format!("/sys/class/net/{ifname}");
    wait_until(|| Path::new(&net).exists());
    let online =
        hotplug::vif_online(&ifname, nic.vifname.as_deref(), &nic.bridge).and_then(|name| {
            let back = backend_path(VIF, domid, devid);
            xs.write(&format!("{back}/vifname"), &name)?;
            xs.write(&format!("{back}/hotplug-status"), "connected")
        });
    if let Err(e) = online {
        let _ = remove(xs, VIF, domid, devid, true);
        return Err(e);
    }
    Ok(())
}

/// Writes a device's backend and frontend directories (the backend dom0's and
/// readable by the guest, the frontend the guest's and readable by dom0) and
/// waits for dom0's backend driver to take the device (`InitWait`); undone on
/// failure.
fn add(
    xs: &mut Xenstore,
    kind: &str,
    domid: u16,
    devid: u32,
    back: Nodes,
    front: Nodes,
) -> Result<(), String> {
    let back_path = backend_path(kind, domid, devid);
    let front_path = frontend_path(kind, domid, devid);
    let dirs = [
        Dir {
            path: back_path.clone(),
            perms: vec!["n0".into(), format!("r{domid}")],
            nodes: back,
        },
        Dir {
            path: front_path.clone(),
            perms: vec![format!("n{domid}"), "r0".into()],
            nodes: front,
        },
    ];
    let undo = |xs: &mut Xenstore| {
        xs.rm(&front_path);
        xs.rm(&back_path);
        let sysfs = backend_sysfs(kind, domid, devid);
        wait_until(|| !Path::new(&sysfs).exists());
    };
    if let Err(e) = xs.write_dirs(&dirs) {
        undo(xs);
        return Err(e);
    }
    let state = wait_state(xs, &format!("{back_path}/state"), |s| {
        s >= XENBUS_STATE_INIT_WAIT
    });
    if state.is_none_or(|s| s != XENBUS_STATE_INIT_WAIT) {
        undo(xs);
        let driver = if kind == VBD {
            "xen-blkback"
        } else {
            "xen-netback"
        };
        return Err(format!(
            "dom0's backend did not take {kind} {devid} of d{domid} (state {}): is {driver} loaded?",
            state.map_or("unchanged".to_string(), |s| s.to_string())
        ));
    }
    Ok(())
}

/// The xenstore nodes of a network interface's backend and frontend (libxl's
/// `libxl__set_xenstore_nic` and the generic device nodes).
fn nic_nodes(domid: u16, devid: u32, nic: &NicSpec) -> (Nodes, Nodes) {
    let mut back = vec![
        ("frontend", frontend_path(VIF, domid, devid)),
        ("frontend-id", domid.to_string()),
        ("online", "1".into()),
        ("state", XENBUS_STATE_INITIALISING.to_string()),
        ("script", "vif-bridge (rxl)".into()),
        ("mac", nic.mac_text()),
        ("bridge", nic.bridge.clone()),
        ("handle", devid.to_string()),
        ("type", "vif".into()),
        ("mtu", "1500".into()),
    ];
    if let Some(ip) = &nic.ip {
        back.push(("ip", ip.clone()));
    }
    let front = vec![
        ("backend", backend_path(VIF, domid, devid)),
        ("backend-id", "0".into()),
        ("state", XENBUS_STATE_INITIALISING.to_string()),
        ("handle", devid.to_string()),
        ("mac", nic.mac_text()),
        ("mtu", "1500".into()),
    ];
    (back, front)
}

/// Polls `done` every 20 ms for at most [`TIMEOUT`]; whether it came true.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > TIMEOUT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the number at `path` satisfies `done`; the last value read, or
/// `None` if the node never held a number.
fn wait_state(xs: &mut Xenstore, path: &str, done: impl Fn(u32) -> bool) -> Option<u32> {
    let mut last = None;
    wait_until(|| {
        last = xs.read(path).and_then(|v| v.trim().parse().ok()).or(last);
        last.is_some_and(&done)
    });
    last
}

/// The devices of `kind` domain `domid` has (their ids).
pub fn devices(xs: &mut Xenstore, kind: &str, domid: u16) -> Vec<u32> {
    let mut ids: Vec<u32> = xs
        .directory(&format!("/local/domain/0/backend/{kind}/{domid}"))
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Removes device `devid` of `kind` from domain `domid`: gently unless `force`
/// (the guest is asked to close it; if it does not within the time-out, by force
/// as libxl falls back to), then its directories and its hotplug work.
pub fn remove(
    xs: &mut Xenstore,
    kind: &str,
    domid: u16,
    devid: u32,
    force: bool,
) -> Result<(), String> {
    let back = backend_path(kind, domid, devid);
    let front = frontend_path(kind, domid, devid);
    if xs.read(&format!("{back}/state")).is_none() {
        return Err(format!("d{domid} has no {kind} device {devid}"));
    }
    let sysfs = backend_sysfs(kind, domid, devid);
    let gone = |xs: &mut Xenstore| {
        !Path::new(&sysfs).exists()
            || xs.read(&format!("{back}/state")).as_deref()
                == Some(XENBUS_STATE_CLOSED.to_string().as_str())
    };
    let mut released = false;
    if !force {
        xs.write(&format!("{back}/online"), "0")?;
        xs.write(&format!("{back}/state"), &XENBUS_STATE_CLOSING.to_string())?;
        released = wait_until(|| gone(xs));
    }
    if !released {
        // No frontend any more: the backend lets go of the device.
        let _ = xs.write(&format!("{back}/online"), "0");
        xs.rm(&front);
        wait_until(|| !Path::new(&sysfs).exists());
    }
    let loop_dev = xs.read(&format!("{back}/physical-device-path"));
    // netback's interface may outlive its device by a moment.
    if let Some(ifname) = xs
        .read(&format!("{back}/vifname"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
    {
        let net = format!("/sys/class/net/{ifname}");
        wait_until(|| !Path::new(&net).exists());
    }
    xs.rm(&front);
    xs.rm(&back);
    if Path::new(&sysfs).exists() {
        return Err(format!(
            "dom0's backend still holds {kind} {devid} of d{domid} ({sysfs})"
        ));
    }
    if let Some(path) = loop_dev.filter(|p| p.starts_with("/dev/loop")) {
        hotplug::loop_detach(&path)?;
    }
    Ok(())
}

/// Removes every device of domain `domid` (by force: it is being destroyed);
/// the first failure, after trying them all.
pub fn remove_all(xs: &mut Xenstore, domid: u16) -> Result<(), String> {
    let mut result = Ok(());
    for kind in [VBD, VIF] {
        for devid in devices(xs, kind, domid) {
            if let Err(e) = remove(xs, kind, domid, devid, true) {
                result = result.and(Err(e));
            }
        }
        // The (now empty) per-domain backend directory.
        xs.rm(&format!("/local/domain/0/backend/{kind}/{domid}"));
    }
    result
}

/// The frontend's nodes `names` of a device, `-1` for those missing (as xl lists
/// them).
fn frontend_nodes<const N: usize>(
    xs: &mut Xenstore,
    kind: &str,
    domid: u16,
    devid: u32,
    names: [&str; N],
) -> [String; N] {
    let front = frontend_path(kind, domid, devid);
    names.map(|name| {
        xs.read(&format!("{front}/{name}"))
            .unwrap_or_else(|| "-1".into())
    })
}

/// `network-list`'s lines for domain `domid`, as xl prints them.
pub fn network_list(xs: &mut Xenstore, domid: u16) -> String {
    let mut out =
        String::from("Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path\n");
    for devid in devices(xs, VIF, domid) {
        let [be, mac, state, evtchn, tx, rx] = frontend_nodes(
            xs,
            VIF,
            domid,
            devid,
            [
                "backend-id",
                "mac",
                "state",
                "event-channel",
                "tx-ring-ref",
                "rx-ring-ref",
            ],
        );
        out.push_str(&format!(
            "{devid:<3} {be:<2} {mac:<17} {devid:<6} {state:<5} {evtchn:<6} {tx:>5}/{rx:<5}    {}\n",
            backend_path(VIF, domid, devid)
        ));
    }
    out
}

/// The device id of domain `domid`'s network interface with MAC address `mac`.
pub fn nic_by_mac(xs: &mut Xenstore, domid: u16, mac: &str) -> Option<u32> {
    let mac = mac.to_ascii_lowercase();
    devices(xs, VIF, domid).into_iter().find(|devid| {
        xs.read(&format!("{}/mac", backend_path(VIF, domid, *devid)))
            .is_some_and(|m| m.to_ascii_lowercase() == mac)
    })
}

/// The device id the next network interface of domain `domid` gets.
pub fn next_nic_devid(xs: &mut Xenstore, domid: u16) -> u32 {
    devices(xs, VIF, domid)
        .last()
        .map_or(0, |last| last.saturating_add(1))
}

/// `block-list`'s lines for domain `domid`, as xl prints them.
pub fn block_list(xs: &mut Xenstore, domid: u16) -> String {
    let mut out = String::from("Vdev  BE  handle state evt-ch ring-ref BE-path\n");
    for devid in devices(xs, VBD, domid) {
        let [be, state, evtchn, ring] = frontend_nodes(
            xs,
            VBD,
            domid,
            devid,
            ["backend-id", "state", "event-channel", "ring-ref"],
        );
        out.push_str(&format!(
            "{devid:<5} {be:<3} {domid:<6} {state:<5} {evtchn:<6} {ring:<8} {}\n",
            backend_path(VBD, domid, devid)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::parse_disk;

    #[test]
    fn disk_nodes_are_libxls() {
        let disk = parse_disk("format=raw, vdev=xvdb, access=ro, target=/images/b.img").unwrap();
        let dev = hotplug::LoopDevice {
            path: "/dev/loop3".into(),
            major: 7,
            minor: 3,
        };
        let (back, front) = disk_nodes(4, &disk, &dev);
        let (nback, nfront) = nic_nodes(
            4,
            1,
            &crate::nic::parse_nic("mac=00:16:3e:00:00:01, bridge=br9", || [0; 3]).unwrap(),
        );
        let get = |nodes: &[(&str, String)], k: &str| {
            nodes
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k}"))
        };
        assert_eq!(get(&back, "frontend"), "/local/domain/4/device/vbd/51728");
        assert_eq!(get(&back, "physical-device"), "7:3");
        assert_eq!(get(&back, "mode"), "r");
        assert_eq!(get(&back, "state"), "1");
        assert_eq!(get(&back, "params"), "/images/b.img");
        assert_eq!(
            get(&front, "backend"),
            "/local/domain/0/backend/vbd/4/51728"
        );
        assert_eq!(get(&front, "virtual-device"), "51728");
        assert_eq!(get(&front, "device-type"), "disk");
        assert_eq!(get(&nback, "frontend"), "/local/domain/4/device/vif/1");
        assert_eq!(get(&nback, "handle"), "1");
        assert_eq!(get(&nback, "bridge"), "br9");
        assert_eq!(get(&nfront, "mac"), "00:16:3e:00:00:01");
        assert_eq!(get(&nfront, "backend"), "/local/domain/0/backend/vif/4/1");
        // Major and minor are hexadecimal, as blkback parses them.
        let big = hotplug::LoopDevice {
            path: "/dev/loop300".into(),
            major: 259,
            minor: 300,
        };
        assert_eq!(
            get(&disk_nodes(4, &disk, &big).0, "physical-device"),
            "103:12c"
        );
    }
}
