//! Split drivers (issue 11): Linux's own backends in dom0 serve domUs, Linux's own
//! frontends in the domU use them, over rings in granted pages and event channels,
//! found through xenstore; rxl writes the devices' xenstore directories and does the
//! hotplug work (loop devices) as libxl and Xen's scripts do.
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! split_drivers`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rxen_tests::dom0::{
    assert_no_leak, boot_dom0, grant_teardowns, initramfs_with_modules, linux_domu_files, machine,
};
use rxen_tests::{modules_initramfs_with, rxen_dir, write_module};

/// A file of `len` bytes whose every byte is known (a simple sequence), so that a
/// reader can check all of it with one checksum.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

/// The MD5 of `bytes`, as busybox's `md5sum` prints it (host's `md5sum`).
fn md5(bytes: &[u8]) -> String {
    let dir = rxen_dir().join("test-modules");
    let path = dir.join(format!("md5-{}", std::process::id()));
    fs::write(&path, bytes).expect("write md5 input");
    let out = Command::new("md5sum")
        .arg(&path)
        .output()
        .expect("md5sum runs");
    let _ = fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("an md5")
        .to_string()
}

/// An ext4 image of 24 MiB (made by the host's `mkfs.ext4 -d`) holding
/// `pattern.txt` and `big.bin` (4 MiB of [`pattern`]).
fn ext4_image() -> PathBuf {
    let dir = rxen_dir().join("test-modules").join("ext4-root");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the image's root");
    fs::write(dir.join("pattern.txt"), "rxen-disk-pattern-0451\n").expect("write pattern");
    fs::write(dir.join("big.bin"), pattern(4 << 20)).expect("write big.bin");
    let image = rxen_dir().join("test-modules").join("disk-ext4.img");
    let _ = fs::remove_file(&image);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rxen", "-d"])
        .arg(&dir)
        .arg(&image)
        .arg("24M")
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .status()
        .expect("mkfs.ext4 (e2fsprogs) runs");
    assert!(status.success(), "mkfs.ext4 failed");
    image
}

/// Debian's Linux as a domU with a disk from dom0's blkback: `rxl create` with
/// `disk = [ 'format=raw, vdev=xvda, access=rw, target=...' ]` (an ext4 image file in
/// dom0, through a loop device rxl sets up); the domU's blkfront gives it `xvda`, it
/// mounts it, reads a known file (4 MiB, checked whole), writes one, unmounts.
/// `rxl block-attach` gives it a read-only `xvdb` at run time, whose first bytes it
/// reads; `rxl block-detach` takes it away again (the guest closes it). `rxl destroy`
/// with `xvda` still attached: blkback lets go of every grant, the loop device is
/// freed, the xenstore directories go. Created again, the domU finds the file it wrote
/// (nothing lost), and `rxl shutdown -w` ends it the same clean way. Bad configs (a
/// missing target, a block device as target) are refused before anything is created;
/// at run time, attaching over a vdev in use or a missing file, and detaching a disk
/// the domain does not have, are refused and change nothing.
#[test]
fn a_linux_domu_gets_a_disk_from_dom0s_blkback() {
    let domu_init = "\
echo rxen-domU: init is running
for i in $(seq 1 100); do test -b /dev/xvda && break; sleep 0.1; done
mkdir -p /mnt
mount -t ext4 /dev/xvda /mnt && echo rxen-domU: mounted xvda
echo rxen-domU: pattern $(cat /mnt/pattern.txt)
echo rxen-domU: big $(md5sum /mnt/big.bin | cut -d' ' -f1)
test -f /mnt/written.bin && echo rxen-domU: kept $(md5sum /mnt/written.bin | cut -d' ' -f1)
dd if=/dev/urandom of=/mnt/written.bin bs=64k count=32 2>/dev/null
echo rxen-domU: wrote $(md5sum /mnt/written.bin | cut -d' ' -f1)
umount /mnt && echo rxen-domU: unmounted
until test -b /dev/xvdb; do sleep 0.1; done
for i in $(seq 1 100); do test \"$(cat /sys/block/xvdb/size 2>/dev/null)\" -gt 0 2>/dev/null && break; sleep 0.1; done
echo rxen-domU: xvdb says $(head -c 19 /dev/xvdb 2>&1)
while test -b /dev/xvdb; do sleep 0.1; done
echo rxen-domU: xvdb gone
while true; do sleep 1; done
";
    let poweroff = write_module("disk-domu-poweroff", b"#!/bin/sh\n/bin/poweroff -f\n");
    let domu_initrd = modules_initramfs_with(
        &["xen-blkfront", "crc32c_generic", "ext4"],
        domu_init,
        &[("sbin/poweroff".to_string(), poweroff)],
    );
    let mut small = b"rxen-xvdb-pattern-7".to_vec();
    small.resize(1 << 20, 0);
    let small = write_module("disk-xvdb.img", &small);
    let script = "\
start_xenstored
rxenconsoled -i --log=guest &
log=/var/log/xen/console/guest-linux.log
waitlog() {
  for i in $(seq 1 900); do grep -q \"$1\" $log 2>/dev/null && return 0; sleep 0.2; done
  echo disk-test: timed out waiting for \"$1\"
}
state() {
  echo disk-test: $1: loops $(cat /sys/block/loop*/loop/backing_file 2>/dev/null | wc -l) \
backends $(ls /sys/bus/xen-backend/devices | wc -l) \
xenstore $(rxenstore ls /local/domain/0/backend 2>/dev/null | grep -c 'frontend =')
}
state start
leakcheck start
rxl create /etc/rxen/missing.cfg
echo disk-test: missing target exit $?
rxl create /etc/rxen/blockdev.cfg
echo disk-test: block device exit $?
rxl list | grep -c -v Name | sed 's/^/disk-test: domains after bad configs /'
rxl create /etc/rxen/linux.cfg
rxl block-list linux | sed 's/^/disk-test: list: /'
waitlog 'rxen-domU: unmounted'
rxl block-attach linux format=raw vdev=xvdb access=ro target=/images/xvdb.img
echo disk-test: attach exit $?
waitlog 'rxen-domU: xvdb says'
rxl block-list linux | sed 's/^/disk-test: attached: /'
rxl block-attach linux format=raw vdev=xvda access=ro target=/images/xvdb.img
echo disk-test: attach over xvda exit $?
rxl block-attach linux format=raw vdev=xvdc target=/images/nowhere.img
echo disk-test: attach missing target exit $?
rxl block-detach linux xvdp
echo disk-test: detach of no disk exit $?
rxl block-detach linux vda
echo disk-test: detach of a bad name exit $?
rxl block-detach linux xvdb
echo disk-test: detach exit $?
waitlog 'rxen-domU: xvdb gone'
state detached
rxl destroy linux
echo disk-test: destroy exit $?
state destroyed
rxl create /etc/rxen/linux.cfg
waitlog 'rxen-domU: kept'
rxl shutdown -w linux
echo disk-test: shutdown exit $?
state shut-down
sleep 1
leakcheck end
grep 'rxen-domU' $log | sed 's/^/domUlog: /'
echo disk-test: done
poweroff -f
";
    let config = "name = \"linux\"\ntype = \"pvh\"\nkernel = \"/guests/vmlinuz\"\nramdisk = \"/guests/initrd\"\ncmdline = \"console=hvc0\"\nmemory = 256\nvcpus = 2\ndisk = [ 'format=raw, vdev=xvda, access=rw, target=/images/disk.img' ]\n";
    let missing = config.replace("/images/disk.img", "/images/nowhere.img");
    let blockdev = config.replace("/images/disk.img", "/dev/loop7");
    let image = ext4_image();
    let initramfs = initramfs_with_modules(
        &["loop", "xen-blkback"],
        script,
        &[],
        &[
            ("linux.cfg", config.to_string()),
            ("missing.cfg", missing),
            ("blockdev.cfg", blockdev),
        ],
        [
            linux_domu_files(domu_initrd),
            vec![
                ("images/disk.img".to_string(), image),
                ("images/xvdb.img".to_string(), small),
            ],
        ]
        .concat(),
    );
    let out = boot_dom0(
        machine("split-drivers-disk").timeout(Duration::from_secs(600)),
        &initramfs,
    );
    let big = md5(&pattern(4 << 20));
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d0) disk-test: start: loops 0 backends 0 xenstore 0",
            "(d0) rxl: disk target /images/nowhere.img: No such file or directory",
            "(d0) disk-test: missing target exit 1",
            "(d0) rxl: disk target /dev/loop7 is a block device",
            "(d0) disk-test: block device exit 1",
            "(d0) disk-test: domains after bad configs 1",
            "(d0) Domain 1 \"linux\" created",
            "(d0) disk-test: list: 51712 0   1",
            "(d0) disk-test: attach exit 0",
            "(d0) disk-test: attached: 51728 0   1      4",
            "(d0) rxl: d1 already has a disk xvda",
            "(d0) disk-test: attach over xvda exit 1",
            "(d0) rxl: disk target /images/nowhere.img: No such file or directory",
            "(d0) disk-test: attach missing target exit 1",
            "(d0) rxl: d1 has no vbd device 51952",
            "(d0) disk-test: detach of no disk exit 1",
            "(d0) rxl: vda is not a virtual device name",
            "(d0) disk-test: detach of a bad name exit 1",
            "(d0) disk-test: detach exit 0",
            "(d0) disk-test: detached: loops 1 backends 1",
            "d1: destroyed by the control domain",
            "(d0) disk-test: destroy exit 0",
            "(d0) disk-test: destroyed: loops 0 backends 0 xenstore 0",
            "(d0) Domain 2 \"linux\" created",
            "(d0) disk-test: shutdown exit 0",
            "(d0) disk-test: shut-down: loops 0 backends 0 xenstore 0",
            "(d0) domUlog: rxen-domU: mounted xvda",
            "(d0) domUlog: rxen-domU: pattern rxen-disk-pattern-0451",
            &format!("(d0) domUlog: rxen-domU: big {big}"),
            "(d0) domUlog: rxen-domU: xvdb says rxen-xvdb-pattern-7",
            "(d0) domUlog: rxen-domU: xvdb gone",
            "(d0) domUlog: rxen-domU: mounted xvda",
            "(d0) disk-test: done",
        ])
        .assert_line_contains_all(&[
            "d1: destroyed by the control domain",
            " 0 frames not returned",
        ])
        .assert_contains("d2: shut down (poweroff)")
        .assert_line_contains_all(&[
            "d2: destroyed by the control domain",
            " 0 frames not returned",
        ])
        // The whole machine's memory is back.
        .assert_line_contains_all(&["d0: shut down (poweroff)", " 0 frames not returned"]);
    // blkback unmapped its ring and every persistent grant before each domU went:
    // what rxen still had to tear down is at most the console's and xenstore's rings
    // (rxenconsoled and rxenstored let go once they hear the domain died); dom0 had
    // nothing mapped at its own end.
    for (line, n) in grant_teardowns(&out) {
        assert!(
            n <= 2 && !line.contains("d0: "),
            "blkback left grants mapped: {line}"
        );
    }
    // dom0 maps no grant and holds no more event channels than before.
    assert_no_leak(&out, "start", "end");
    // What the first domU wrote, the second read back (the second may be shut down
    // before it writes a file of its own).
    let wrote: Vec<&str> = out
        .log
        .lines()
        .filter_map(|l| l.split("rxen-domU: wrote ").nth(1))
        .collect();
    let kept: Vec<&str> = out
        .log
        .lines()
        .filter_map(|l| l.split("rxen-domU: kept ").nth(1))
        .collect();
    assert!(
        !wrote.is_empty() && kept.len() == 1 && kept[0].trim() == wrote[0].trim(),
        "the file the first domU wrote (first of {wrote:?}) is not what the second found ({kept:?})"
    );
}

/// Debian's Linux as two domUs with network interfaces from dom0's netback: `vif =
/// [ 'mac=..., bridge=xenbr0' ]` (and one with xl's defaults, a generated MAC in Xen's
/// OUI and `xenbr0`, and `vifname=peer0`); rxl adds each backend interface
/// (`vif<domid>.0`, or renamed `peer0`) to the bridge as Xen's vif-bridge script does. The first domU pings dom0's bridge address with no
/// loss and sends 64 MiB of random data over TCP to dom0, which arrives intact (same
/// MD5); the second pings the first across the bridge. `network-attach` gives the first
/// a second interface at run time, which its netfront connects; `network-detach` (by
/// its MAC) takes it away; a disk attached to a domU without blkfront is detached by
/// force at once, or after rxl's wait when asked gently. Destroying both leaves no backend interface, no backend device and no
/// xenstore entry behind, and rxen gets every frame back. A bridge that does not exist
/// is refused before anything is created.
#[test]
fn linux_domus_get_networks_from_dom0s_netback() {
    let domu_init = "\
ip=$(sed 's/.*rxen_ip=\\([0-9.]*\\).*/\\1/' /proc/cmdline)
echo rxen-domU: init is running at $ip
for i in $(seq 1 100); do test -e /sys/class/net/eth0 && break; sleep 0.1; done
ip link set lo up
ip link set eth0 up
ip addr add $ip/24 dev eth0
echo rxen-domU: $ip mac $(cat /sys/class/net/eth0/address)
ping -c 5 -w 30 10.0.0.1 | grep 'packet loss' | sed \"s/^/rxen-domU: $ip dom0 ping: /\"
if [ $ip = 10.0.0.2 ]; then
  dd if=/dev/urandom of=/tmp/data bs=1M count=64 2>/dev/null
  echo rxen-domU: data $(md5sum /tmp/data | cut -d' ' -f1)
  nc -l -p 5000 -e cat /tmp/data &
  sleep 0.5
  echo rxen-domU: serving
  until test -e /sys/class/net/eth1; do sleep 0.1; done
  echo rxen-domU: eth1 appeared
else
  ping -c 5 -w 30 10.0.0.2 | grep 'packet loss' | sed \"s/^/rxen-domU: $ip peer ping: /\"
fi
while true; do sleep 1; done
";
    let domu_initrd = modules_initramfs_with(&["xen-netfront"], domu_init, &[]);
    let script = "\
start_xenstored
rxenconsoled -i --log=guest &
logs=/var/log/xen/console
waitlog() {
  for i in $(seq 1 900); do grep -q \"$2\" $logs/guest-$1.log 2>/dev/null && return 0; sleep 0.2; done
  echo net-test: timed out waiting for \"$2\"
}
state() {
  echo net-test: $1: vifs $(ls /sys/class/net | grep -c -e '^vif' -e '^peer0') \
backends $(ls /sys/bus/xen-backend/devices | wc -l) \
xenstore $(rxenstore ls /local/domain/0/backend 2>/dev/null | grep -c 'frontend =')
}
rxl create /etc/rxen/web.cfg
echo net-test: no bridge exit $?
ip link add xenbr0 type bridge
ip addr add 10.0.0.1/24 dev xenbr0
ip link set xenbr0 up
state start
leakcheck start
rxl create /etc/rxen/web.cfg
rxl network-list web | sed 's/^/net-test: list: /'
ls /sys/class/net/xenbr0/brif | sed 's/^/net-test: bridge port: /'
waitlog web 'rxen-domU: serving'
nc 10.0.0.2 5000 | md5sum | sed 's/^/net-test: received /'
rxl create /etc/rxen/peer.cfg
waitlog peer 'peer ping'
ls /sys/class/net/xenbr0/brif | sed 's/^/net-test: ports: /'
rxl network-attach web bridge=xenbr0
echo net-test: attach exit $?
waitlog web 'eth1 appeared'
for i in $(seq 1 100); do rxl network-list web | grep -q '^1 .* 4 ' && break; sleep 0.1; done
rxl network-list web | sed 's/^/net-test: attached: /'
rxl network-detach web $(rxl network-list web | awk '$1 == 1 {print $3}')
echo net-test: detach exit $?
rxl network-list web | sed 's/^/net-test: detached: /'
mkdir -p /tmp && dd if=/dev/zero of=/tmp/spare.img bs=1M count=4 2>/dev/null
rxl block-attach web 'format=raw, vdev=xvdc, access=ro, target=/tmp/spare.img'
echo net-test: blk attach exit $?
rxl block-list web | sed 's/^/net-test: blk: /'
t0=$(cut -d. -f1 /proc/uptime)
rxl block-detach --force web xvdc
echo net-test: forced detach exit $? after $(( $(cut -d. -f1 /proc/uptime) - t0 )) s
rxl block-attach web 'format=raw, vdev=xvdd, access=ro, target=/tmp/spare.img'
t0=$(cut -d. -f1 /proc/uptime)
rxl block-detach web xvdd
echo net-test: unanswered detach exit $? after $(( $(cut -d. -f1 /proc/uptime) - t0 )) s
echo net-test: blk left $(rxl block-list web | grep -c -v Vdev) loops $(cat /sys/block/loop*/loop/backing_file 2>/dev/null | wc -l)
rxl destroy peer
rxl destroy web
echo net-test: destroy exit $?
state destroyed
sleep 1
leakcheck end
cat $logs/guest-web.log $logs/guest-peer.log | grep 'rxen-domU' | sed 's/^/domUlog: /'
echo net-test: done
poweroff -f
";
    let config = |name: &str, ip: &str, vif: &str| {
        format!("name = \"{name}\"\ntype = \"pvh\"\nkernel = \"/guests/vmlinuz\"\nramdisk = \"/guests/initrd\"\ncmdline = \"console=hvc0 rxen_ip={ip}\"\nmemory = 256\nvcpus = 1\nvif = [ '{vif}' ]\n")
    };
    let initramfs = initramfs_with_modules(
        &["bridge", "xen-netback", "loop", "xen-blkback"],
        script,
        &[],
        &[
            (
                "web.cfg",
                config("web", "10.0.0.2", "mac=00:16:3e:0a:00:02, bridge=xenbr0"),
            ),
            ("peer.cfg", config("peer", "10.0.0.3", "vifname=peer0")),
        ],
        linux_domu_files(domu_initrd),
    );
    let out = boot_dom0(
        machine("split-drivers-net")
            .memory_mb(1536)
            .timeout(Duration::from_secs(600)),
        &initramfs,
    );
    out.assert_not_contains("FATAL TRAP")
        .assert_in_order(&[
            "(d0) rxl: bridge xenbr0 does not exist in dom0",
            "(d0) net-test: no bridge exit 1",
            "(d0) net-test: start: vifs 0 backends 0 xenstore 0",
            "(d0) Domain 1 \"web\" created",
            "(d0) net-test: list: 0   0  00:16:3e:0a:00:02 0",
            "(d0) net-test: bridge port: vif1.0",
            "(d0) net-test: received ",
            "(d0) Domain 2 \"peer\" created",
            "(d0) net-test: ports: peer0",
            "(d0) net-test: attach exit 0",
            "(d0) net-test: attached: 1   0  00:16:3e:",
            "(d0) net-test: detach exit 0",
            "(d0) net-test: blk attach exit 0",
            "(d0) net-test: blk: 51744 ",
            "(d0) net-test: forced detach exit 0 after ",
            "(d0) net-test: unanswered detach exit 0 after ",
            "(d0) net-test: blk left 0 loops 0",
            "(d0) net-test: destroy exit 0",
            "(d0) net-test: destroyed: vifs 0 backends 0 xenstore 0",
            "(d0) domUlog: rxen-domU: 10.0.0.2 mac 00:16:3e:0a:00:02",
            "(d0) domUlog: rxen-domU: 10.0.0.2 dom0 ping: 5 packets transmitted, 5 packets received, 0% packet loss",
            "(d0) domUlog: rxen-domU: eth1 appeared",
            "(d0) domUlog: rxen-domU: 10.0.0.3 mac 00:16:3e:",
            "(d0) domUlog: rxen-domU: 10.0.0.3 dom0 ping: 5 packets transmitted, 5 packets received, 0% packet loss",
            "(d0) domUlog: rxen-domU: 10.0.0.3 peer ping: 5 packets transmitted, 5 packets received, 0% packet loss",
            "(d0) net-test: done",
        ])
        .assert_line_contains_all(&["d1: destroyed by the control domain", " 0 frames not returned"])
        .assert_line_contains_all(&["d2: destroyed by the control domain", " 0 frames not returned"])
        .assert_line_contains_all(&["d0: shut down (poweroff)", " 0 frames not returned"]);
    // A disk the domU has no blkfront for (it loads netfront only): taken by force
    // at once, and taken after rxl's 10 s wait when the guest is asked and never
    // answers, as libxl falls back to; neither leaves a backend or a loop device.
    let seconds = |marker: &str| -> u64 {
        out.log
            .lines()
            .find_map(|l| l.split(marker).nth(1))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {marker:?} line"))
    };
    let forced = seconds("net-test: forced detach exit 0 after ");
    let unanswered = seconds("net-test: unanswered detach exit 0 after ");
    assert!(forced < 5, "a forced detach took {forced} s");
    assert!(
        (9..60).contains(&unanswered),
        "an unanswered detach took {unanswered} s (rxl waits 10 s)"
    );
    // The detached interface is gone from the list; the 64 MiB arrived intact.
    assert!(
        !out.log.contains("net-test: detached: 1 "),
        "vif 1 still listed after network-detach"
    );
    let after = |marker: &str| -> String {
        out.log
            .lines()
            .find_map(|l| l.split(marker).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| out.fail(&format!("no {marker:?} line")))
            .to_string()
    };
    assert_eq!(
        after("net-test: received "),
        after("rxen-domU: data "),
        "the data dom0 received is not what the domU sent"
    );
    // netback unmapped every grant; dom0's ports are what they were.
    assert_no_leak(&out, "start", "end");
}
