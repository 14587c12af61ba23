//! `cargo xtask run`: the main demo. rxen boots in QEMU with Debian's own Linux kernel
//! (fetched once with `apt-get download`) as dom0, which owns the machine's virtio disk
//! and NIC with Debian's own modules: it reads the disk, gets an address from QEMU's
//! DHCP server and pings the gateway, and reports it all on its console. Beside it run
//! two boot-time domUs, test guests that ping-pong over an interdomain event channel.
//! Then dom0 starts the toolstack (rxenstored, rxenconsoled) and `rxl create`s the same
//! Linux kernel as a PVH domU with two vCPUs, a disk (an image file in dom0, served
//! by dom0's blkback) and a network interface (dom0's netback, on the bridge xenbr0),
//! whose `/init` reads its disk, pings dom0 and powers off; dom0 shows `rxl list`,
//! the devices and the domU's console log. dom0 then powers the
//! machine off, or with `--shell` gives a shell on the serial console (`rxl` works
//! there; `poweroff -f` ends it). The serial console is streamed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::deps::{self, Task};
use crate::{display_command, fail, image};

/// Arguments the hypervisor always gets from `cargo xtask run`.
pub const BASE_APPEND: &str = "console=com1 loglvl=all isa_debug_exit";

/// The value the hypervisor writes to the isa-debug-exit port on a normal stop.
pub const EXIT_NORMAL: u8 = 0x10;
/// The value the hypervisor writes to the isa-debug-exit port on a fault or panic.
pub const EXIT_CRASH: u8 = 0x11;

/// Options of `cargo xtask run`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Extra hypervisor command-line arguments, after [`BASE_APPEND`].
    pub append: String,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// dom0 ends in a shell on the serial console instead of powering off.
    pub shell: bool,
}

impl Options {
    /// Parses `--smp N`, `--append ARGS` and `--timeout SECS` (also as `--opt=value`).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            smp: 2,
            append: String::new(),
            timeout: Duration::from_secs(300),
            shell: false,
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| iter.next().cloned())
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match name {
                "--shell" if inline.is_none() => options.shell = true,
                "--smp" => {
                    let v = value()?;
                    options.smp = v
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("bad --smp value `{v}`"))?;
                }
                "--append" => options.append = value()?,
                "--timeout" => {
                    let v = value()?;
                    let secs: u64 = v
                        .parse()
                        .map_err(|_| format!("bad --timeout value `{v}`"))?;
                    options.timeout = Duration::from_secs(secs);
                }
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }

    /// The full hypervisor command line.
    pub fn cmdline(&self) -> String {
        if self.append.trim().is_empty() {
            format!("{BASE_APPEND} {DEMO_APPEND}")
        } else {
            format!("{BASE_APPEND} {DEMO_APPEND} {}", self.append.trim())
        }
    }
}

/// The demo Linux domU's `/init` (after its modules: blkfront, netfront).
const DEMO_INIT: &str = "echo
echo rxen demo: Linux $(uname -r) is running as a PVH domU of rxen
echo rxen demo: $(nproc) vCPUs, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
echo rxen demo: memory $(grep MemTotal /proc/meminfo)
for i in $(seq 1 100); do test -b /dev/xvda && test -e /sys/class/net/eth0 && break; sleep 0.1; done
echo rxen demo: its disk xvda, served by the blkback of dom0, says: $(head -c 48 /dev/xvda)
ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
echo rxen demo: its eth0 $(cat /sys/class/net/eth0/address), served by the netback of dom0, pings dom0: $(ping -c 3 -w 20 10.0.0.1 | grep 'packets transmitted')
echo rxen demo: powering off
poweroff -f
";

/// dom0's modules for the toolstack and the split drivers (with what they need):
/// the Xen devices the toolstack uses, and the backends with loop devices and the
/// bridge. The demo adds the virtio disk and NIC.
pub const DOM0_XEN_MODULES: [&str; 8] = [
    "xen-privcmd",
    "xen-evtchn",
    "xen-gntdev",
    "xenfs",
    "loop",
    "xen-blkback",
    "bridge",
    "xen-netback",
];

/// A domU's modules for the split drivers: the frontends.
pub const DOMU_MODULES: [&str; 2] = ["xen-blkfront", "xen-netfront"];

/// The demo domU's config for `rxl create`.
const DEMO_DOMU_CFG: &str = "name = \"linux\"
type = \"pvh\"
kernel = \"/guests/vmlinuz\"
ramdisk = \"/guests/initrd\"
cmdline = \"console=hvc0 loglevel=4\"
memory = 256
vcpus = 2
disk = [ 'format=raw, vdev=xvda, access=rw, target=/var/lib/xen/images/linux.img' ]
vif = [ 'bridge=xenbr0' ]
";

/// dom0's `/init` after its modules: what it owns, DHCP, a ping, then a shell or poweroff.
const DOM0_INIT: &str = "for i in $(seq 1 100); do test -e /sys/block/vda && break; sleep 0.1; done
echo
echo rxen demo: Linux $(uname -r) is dom0, the control domain, on $(nproc) vCPU
echo rxen demo: dom0 owns the PCI devices $(ls /sys/bus/pci/devices)
echo rxen demo: its disk vda says: $(head -c 64 /dev/vda)
cat > /tmp/dhcp.sh <<'SCRIPT'
#!/bin/sh
if test \"$1\" = bound; then
  ip addr add $ip/${mask:-24} dev $interface
  echo rxen demo: DHCP gave $interface $ip, gateway $router > /dev/console
fi
SCRIPT
chmod +x /tmp/dhcp.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -s /tmp/dhcp.sh >/dev/null 2>&1
echo rxen demo: ping the gateway: $(ping -c 3 -W 5 10.0.2.2 | grep 'packets transmitted')
echo rxen demo: device interrupts in dom0:
grep -E 'PCI-MSI|IO-APIC' /proc/interrupts
echo rxen demo: starting the toolstack in dom0: rxenstored, rxenconsoled
mkdir -p /proc/xen /var/run/xenstored /dev/pts
mount -t xenfs xenfs /proc/xen
mount -t devpts devpts /dev/pts
rxenstored &
for i in $(seq 1 50); do test -S /var/run/xenstored/socket && break; sleep 0.1; done
rxenconsoled -i --log=guest &
echo rxen demo: a disk image and a bridge for the domU: xenbr0 at 10.0.0.1
mkdir -p /var/lib/xen/images
echo 'Hello from the image file dom0 serves the domU.' > /var/lib/xen/images/linux.img
dd if=/dev/zero bs=1M count=8 >> /var/lib/xen/images/linux.img 2>/dev/null
ip link add xenbr0 type bridge
ip addr add 10.0.0.1/24 dev xenbr0
ip link set xenbr0 up
echo rxen demo: rxl create /etc/rxen/linux.cfg
rxl create /etc/rxen/linux.cfg
rxl list
rxl block-list linux
rxl network-list linux
log=/var/log/xen/console/guest-linux.log
for i in $(seq 1 900); do grep -q 'rxen demo: powering off' $log 2>/dev/null && break; sleep 0.2; done
echo rxen demo: the console of the domU, as rxenconsoled logged it:
grep 'rxen demo' $log
sleep 1
echo rxen demo: rxl list after the domU powered off:
rxl list
if test -n \"$demo_shell\"; then
  echo \"rxen demo: a dom0 shell on the serial console (poweroff -f ends the machine)\"
  sh -i
  echo rxen demo: the shell ended with status $?
fi
sleep 5
echo rxen demo: dom0 powers the machine off
poweroff -f
";

/// The demo's modules: dom0's kernel and initramfs (with the dom0 tools, and the
/// Linux domU's kernel, initramfs and config for `rxl create`), then the ping-pong
/// pair.
fn demo_modules(shell: bool) -> Vec<(PathBuf, String)> {
    let guests = image::build_guests();
    let tools = image::build_dom0_tools();
    let pingpong = guests.join("evtchn_pingpong");
    let kernel = rxen_tests::debian_kernel();
    let mut files: Vec<(String, PathBuf)> = ["rxl", "rxenstored", "rxenstore", "rxenconsoled"]
        .iter()
        .map(|t| (format!("bin/{t}"), tools.join(t)))
        .collect();
    files.push(("guests/vmlinuz".to_string(), kernel.clone()));
    files.push((
        "guests/initrd".to_string(),
        rxen_tests::modules_initramfs_with(&DOMU_MODULES, DEMO_INIT, &[]),
    ));
    files.push((
        "etc/rxen/linux.cfg".to_string(),
        rxen_tests::write_module("demo-linux.cfg", DEMO_DOMU_CFG.as_bytes()),
    ));
    let dom0_modules = [
        &["virtio_pci", "virtio_blk", "virtio_net"][..],
        &DOM0_XEN_MODULES,
    ]
    .concat();
    let dom0_initramfs = rxen_tests::modules_initramfs_with(&dom0_modules, DOM0_INIT, &files);
    let dom0_args = if shell {
        "console=hvc0 loglevel=4 demo_shell=1"
    } else {
        "console=hvc0 loglevel=4"
    };
    vec![
        (kernel.clone(), dom0_args.to_string()),
        (dom0_initramfs, String::new()),
        (
            pingpong.clone(),
            "role=server peer=2 rounds=500".to_string(),
        ),
        (pingpong, "role=client peer=1 rounds=500".to_string()),
    ]
}

/// The boot-time domUs beside dom0: d1 and d2 ping-pong (dom0 creates d3 with rxl).
pub const DEMO_APPEND: &str = "dom0_mem=256M domu=2,mem=16M domu=3,mem=16M";

/// The demo's virtio disk: a small image whose first bytes dom0 prints.
fn demo_disk() -> PathBuf {
    let dir = rxen_tests::rxen_dir().join("cache");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("demo-disk.img");
    let mut data = b"Hello from the virtio disk that dom0 owns on rxen.\n".to_vec();
    data.resize(4 << 20, 0);
    if let Err(e) = std::fs::write(&path, data) {
        fail(&format!("cannot write {}: {e}", path.display()));
    }
    path
}

/// Builds the QEMU command line for `image` with the given modules.
fn qemu_command(
    image: &Path,
    options: &Options,
    modules: &[(PathBuf, String)],
    disk: &Path,
) -> Command {
    let initrd = modules
        .iter()
        .map(|(path, args)| {
            let path = path.to_string_lossy();
            assert!(
                !path.contains([',', ' ']),
                "module path {path:?} must not contain commas or spaces"
            );
            // QEMU's -initrd splits modules at ',' and unescapes ",," to ','.
            format!("{path} {}", args.replace(',', ",,"))
        })
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("qemu-system-x86_64");
    // One host thread for all virtual CPUs: QEMU's multi-threaded TCG crashes
    // (SIGSEGV) when dom0's Linux sizes a PCI BAR while another virtual CPU runs.
    cmd.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-machine",
        "q35",
        "-m",
        "1024M",
    ])
    .arg("-smp")
    .arg(options.smp.to_string())
    .args(["-display", "none", "-no-reboot", "-serial", "stdio"])
    .args(["-monitor", "none"])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .arg("-kernel")
    .arg(image)
    .arg("-append")
    .arg(options.cmdline())
    .arg("-initrd")
    .arg(initrd)
    .arg("-drive")
    .arg(format!(
        "file={},if=none,id=disk,format=raw",
        disk.display()
    ))
    .args(["-device", "virtio-blk-pci,drive=disk"])
    .args(["-nic", "user,model=virtio-net-pci"]);
    cmd
}

/// `cargo xtask run`: returns the process exit status for xtask.
pub fn run(options: &Options) -> i32 {
    deps::ensure_rust_target();
    deps::ensure_packages(Task::Run);
    let image = image::build();
    let modules = demo_modules(options.shell);
    let mut cmd = qemu_command(&image, options, &modules, &demo_disk());
    println!("{}", display_command(&cmd));
    // stdin is QEMU's only for the dom0 shell: with -serial stdio on a terminal QEMU
    // switches it to raw mode.
    let stdin = if options.shell {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| fail(&format!("cannot start qemu-system-x86_64: {e}")));

    let deadline = Instant::now() + options.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                fail(&format!("waiting for QEMU failed: {e}"));
            }
        }
    };
    let (message, code) = describe(status.map(|s| s.code()), options.timeout);
    println!("\nxtask: {message}");
    code
}

/// Turns QEMU's exit (`None` = timed out, `Some(None)` = killed by a signal) into the
/// message to print and xtask's exit status.
fn describe(status: Option<Option<i32>>, timeout: Duration) -> (String, i32) {
    let normal = i32::from(EXIT_NORMAL) << 1 | 1;
    let crash = i32::from(EXIT_CRASH) << 1 | 1;
    match status {
        None => (
            format!("timed out after {} s; QEMU killed", timeout.as_secs()),
            1,
        ),
        Some(Some(code)) if code == normal => ("rxen stopped normally".to_string(), 0),
        Some(Some(code)) if code == crash => ("rxen crashed".to_string(), 1),
        Some(Some(code)) => (format!("QEMU exited with status {code}"), 1),
        Some(None) => ("QEMU was killed by a signal".to_string(), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_defaults() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!(o.smp, 2);
        assert_eq!(o.timeout, Duration::from_secs(300));
        assert_eq!(o.cmdline(), format!("{BASE_APPEND} {DEMO_APPEND}"));
    }

    #[test]
    fn parse_options() {
        let o = Options::parse(&strings(&[
            "--smp",
            "4",
            "--append=dom0_mem=256M noreboot",
            "--timeout",
            "5",
        ]))
        .unwrap();
        assert_eq!(o.smp, 4);
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(
            o.cmdline(),
            format!("{BASE_APPEND} {DEMO_APPEND} dom0_mem=256M noreboot")
        );
        assert!(Options::parse(&strings(&["--smp"])).is_err());
        assert!(Options::parse(&strings(&["--smp", "0"])).is_err());
        assert!(Options::parse(&strings(&["--bogus"])).is_err());
        assert!(Options::parse(&strings(&["--shell"])).unwrap().shell);
        assert!(!Options::parse(&[]).unwrap().shell);
        assert!(Options::parse(&strings(&["--shell=1"])).is_err());
    }

    #[test]
    fn exit_statuses() {
        let t = Duration::from_secs(1);
        assert_eq!(describe(Some(Some(33)), t).1, 0);
        assert_eq!(describe(Some(Some(35)), t).0, "rxen crashed");
        assert_ne!(describe(None, t).1, 0);
        assert_ne!(describe(Some(Some(0)), t).1, 0);
        assert_ne!(describe(Some(None), t).1, 0);
    }

    #[test]
    fn initrd_joins_modules() {
        let o = Options::parse(&[]).unwrap();
        let cmd = qemu_command(
            Path::new("/x/rxen"),
            &o,
            &[
                ("/a/k".into(), "x=1,2".into()),
                ("/a/i".into(), String::new()),
            ],
            Path::new("/d.img"),
        );
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        let i = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[i + 1], "/a/k x=1,,2,/a/i ");
    }
}
