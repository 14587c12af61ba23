//! Debian's Linux as dom0 (issue 10): the hypervisor builds it from the first module,
//! it runs the busybox initramfs's `/init` on hvc0 (console_io), finds what a
//! control domain finds, and powers off through ACPI (PM1 control, SLP_EN), which
//! ends the hypervisor.
//!
//! Run with `cargo xtask test`, or `cargo xtask build && cargo test -p rxen-tests --test
//! dom0`.

use std::time::Duration;

use rxen_tests::{busybox_initramfs, debian_kernel, Qemu};

/// dom0's kernel command line.
const DOM0_ARGS: &str = "console=hvc0 earlyprintk=xen loglevel=8 ignore_loglevel";

/// dom0's `/init`: what it is and what it sees, then power off.
const INIT_SCRIPT: &str = "#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo rxen-dom0: init is running
echo rxen-dom0: cpus $(nproc)
echo rxen-dom0: caps $(cat /sys/hypervisor/properties/capabilities 2>/dev/null)
echo rxen-dom0: features $(cat /sys/hypervisor/properties/features 2>/dev/null)
echo rxen-dom0: memtotal $(grep MemTotal /proc/meminfo)
mount -t devtmpfs dev /dev
echo rxen-dom0: pci $(ls /sys/bus/pci/devices)
echo rxen-dom0: host bridge $(cat /sys/bus/pci/devices/0000:00:00.0/vendor) $(cat /sys/bus/pci/devices/0000:00:00.0/device)
echo rxen-dom0: reset vector $(busybox devmem 0xffff0 8)
echo rxen-dom0: date $(date +%s)
echo rxen-dom0: done
poweroff -f
";

fn machine(name: &str) -> Qemu {
    Qemu::new(name)
        .memory_mb(1024)
        .append("console=com1 loglvl=all guest_loglvl=all isa_debug_exit dom0_mem=256M")
        .timeout(Duration::from_secs(180))
}

/// The value after `key ` on dom0's `/init` line for `key`.
fn value<'a>(out: &'a rxen_tests::Outcome, key: &str) -> &'a str {
    let marker = format!("(d0) rxen-dom0: {key} ");
    out.log
        .lines()
        .find_map(|l| l.split_once(&marker).map(|(_, v)| v.trim()))
        .unwrap_or_else(|| out.fail(&format!("no {marker:?} line")))
}

/// Linux boots as dom0 and reaches `/init`; it knows it is the control domain
/// (XENFEAT_dom0 in the features the hypervisor reports) and its wall clock is the
/// RTC's (the host's date, give or take the boot). Its RAM is the host's at the same
/// addresses (1:1) from 16 MiB, where Linux loads; what the hypervisor keeps is
/// unusable in its memory map; the machine's device memory is its own: it finds the
/// PCI devices through the host's ECAM (MMCONFIG) and reads the BIOS ROM. It
/// calibrates against the emulated PIT channel 2 without spinning. Its
/// poweroff writes SLP_EN to the FADT's PM1a control port, which ends dom0 and the
/// machine.
#[test]
fn debian_linux_boots_as_dom0() {
    let initramfs = busybox_initramfs(INIT_SCRIPT);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = machine("dom0-linux-boot")
        .module(debian_kernel(), DOM0_ARGS)
        .module(&initramfs, "")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_line_contains_all(&["d0: ACPI sleep request", "powering off"])
        .assert_contains("d0: shut down (poweroff)")
        .assert_normal_stop()
        .assert_contains("(d0) rxen-dom0: init is running")
        .assert_line_contains_all(&["(d0) [", "Booting kernel on Xen PVH"])
        .assert_contains("(d0) rxen-dom0: caps hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64")
        // Every MSR it reads without a fixup is answered, as on Xen (issue 12).
        .assert_not_contains("unchecked MSR access error");
    out.assert_contains("dom0: RAM 0x1000000 - 0x11000000 (1:1)")
        // Its own ACPI tables in its last page below 4 GiB: a new RSDP and XSDT
        // of the host's tables, and a MADT of its vCPU; the host's HPET hidden.
        .assert_contains("d0: ACPI tables at 0x10fff000")
        .assert_line_contains_all(&[
            "(d0) [",
            "ACPI: RSDP 0x0000000010FFF000 000024 (v02 BOCHS )",
        ])
        .assert_line_contains_all(&["(d0) [", "ACPI: XSDT 0x0000000010FFF030"])
        .assert_line_contains_all(&["(d0) [", "ACPI: APIC 0x0000000010FFF"])
        .assert_line_contains_all(&["(d0) [", "ACPI: FACP 0x"])
        .assert_line_contains_all(&["(d0) [", "ACPI: MCFG 0x"])
        .assert_not_contains("ACPI: HPET 0x")
        // An emulated IO-APIC at the host's address, as Xen's (version 0x11); dom0
        // unmasks the SCI's pin (GSI 9, level), and the host's pin is bound to it.
        .assert_contains("IO-APIC 0: 24 pins, GSI 0-23 at 0xfec00000")
        .assert_line_contains_all(&[
            "(d0) [",
            "IOAPIC[0]: apic_id 0, version 17, address 0xfec00000, GSI 0-23",
        ])
        .assert_not_contains("registers return all ones")
        // Its ECAM accesses go through rxen's vPCI.
        .assert_contains("d0: ECAM window at 0xb0000000 (segment 0, buses 0x0-0xff): mediated")
        .assert_contains("d0: IO-APIC pin of GSI 9 unmasked (Level, High): host vector 0x")
        // Its I/O ports are the machine's (the RTC, the keyboard controller) but
        // those rxen keeps, as Xen: the PM timer (read as all ones, so Linux
        // refuses it) and rxen's own UART (no ttyS0 at 0x3f8 for dom0).
        .assert_contains("d0: I/O ports: the machine's, but those rxen traps")
        .assert_line_contains_all(&["(d0) [", "rtc_cmos 00:04: registered as rtc0"])
        .assert_line_contains_all(&["(d0) [", "serio: i8042 KBD port at 0x60,0x64"])
        .assert_line_contains_all(&["(d0) [", "PM-Timer failed consistency check"])
        .assert_not_contains("ttyS0 at I/O 0x3f8")
        .assert_line_contains_all(&["(d0) [", "smpboot: Allowing 1 CPUs, 0 hotplug CPUs"])
        .assert_line_contains_all(&[
            "(d0) [",
            "BIOS-e820: [mem 0x0000000000100000-0x0000000000ffffff] unusable",
        ])
        .assert_line_contains_all(&[
            "(d0) [",
            "BIOS-e820: [mem 0x0000000001000000-0x0000000010ffefff] usable",
        ])
        .assert_line_contains_all(&[
            "(d0) [",
            "BIOS-e820: [mem 0x0000000010fff000-0x0000000010ffffff] ACPI data",
        ])
        .assert_line_contains_all(&["(d0) [", "pci 0000:00:00.0: [8086:29c0]"])
        .assert_contains("(d0) rxen-dom0: host bridge 0x8086 0x29c0");
    // The host's PIT stays rxen's, but dom0 gets the emulated channel 2, so its
    // TSC calibration ends at once instead of spinning 100,000 port exits (3-4 s of
    // its clock under TCG); see linux.rs.
    let pit = out.kernel_time("(d0) [", "tsc: Fast TSC calibration ");
    assert!(pit < 0.25, "dom0's PIT calibration ended at {pit} s");
    let pci = value(&out, "pci");
    for device in ["0000:00:00.0", "0000:00:1f.0"] {
        assert!(pci.contains(device), "dom0 does not list {device}: {pci}");
    }
    // The BIOS's reset vector (a far jump, 0xEA) is the host's ROM, seen 1:1.
    assert_eq!(value(&out, "reset vector"), "0xEA");
    let features = u32::from_str_radix(value(&out, "features"), 16)
        .unwrap_or_else(|_| out.fail("features are not hex"));
    assert!(
        features & (1 << 11) != 0,
        "XENFEAT_dom0 missing: {features:#x}"
    );
    let date: u64 = value(&out, "date")
        .parse()
        .unwrap_or_else(|_| out.fail("date is not a number"));
    assert!(
        date + 600 > started && date < started + 600,
        "dom0's date {date} is not the host's {started}"
    );
}

/// A boot-time domU beside the 1:1 dom0: its RAM comes from the frame allocator, out
/// of dom0's; both run, and the domU gives every frame back.
#[test]
fn a_domu_runs_beside_a_linux_dom0() {
    let initramfs = busybox_initramfs(INIT_SCRIPT);
    let out = machine("dom0-linux-and-domu")
        .append("domu=2,mem=16M")
        .module(debian_kernel(), DOM0_ARGS)
        .module(&initramfs, "")
        .module(rxen_tests::guest("platform_op"), "")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("dom0: RAM 0x1000000 - 0x11000000 (1:1)")
        .assert_contains("(d1) control domain: false")
        .assert_contains("(d1) Test result: SUCCESS")
        .assert_line_contains_all(&["d1: shut down (poweroff)", " 0 frames not returned"])
        .assert_contains("(d0) rxen-dom0: done")
        .assert_contains("d0: shut down (poweroff)")
        .assert_normal_stop();
}

/// `dom0_max_vcpus=2` on a machine with two CPUs: dom0's MADT lists two local APICs
/// and Linux runs on both vCPUs (its second started by INIT/SIPI into its own low
/// memory, 1:1). QEMU runs its CPUs on one thread here: with several, QEMU crashes
/// when Linux sizes the PCI BARs while the other CPU runs.
///
/// This test was ignored while it failed intermittently (2 of 3 runs under host load):
/// Linux died of recursive page faults in its entry trampoline. QEMU's VMRUN leaves an
/// injected INTR pending in the emulated CPU and delivers it a second time at the
/// handler's first instruction when that CPU is next asked to exit (the other vCPU's
/// turn); from user mode (busybox's CPUID loop exits there) the second entry runs on the
/// user's GS. Interrupts are now offered as virtual interrupts (V_IRQ), which QEMU
/// delivers once: 12 of 12 runs under the same load passed.
#[test]
fn linux_dom0_runs_on_two_vcpus() {
    let initramfs = busybox_initramfs(INIT_SCRIPT);
    let out = machine("dom0-linux-2vcpus")
        .smp(2)
        .single_threaded_tcg()
        .append("dom0_max_vcpus=2")
        .module(debian_kernel(), DOM0_ARGS)
        .module(&initramfs, "")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("MADT with 2 local APIC(s)")
        .assert_line_contains_all(&["(d0) [", "smpboot: Allowing 2 CPUs, 0 hotplug CPUs"])
        .assert_contains("(d0) rxen-dom0: cpus 2")
        .assert_contains("d0: shut down (poweroff)")
        .assert_normal_stop();
}

/// A scratch file of `len` bytes under `target/rxen/tmp` holding a known pattern (a
/// xorshift sequence seeded by `seed`).
fn pattern_file(name: &str, len: usize, seed: u64) -> std::path::PathBuf {
    let dir = rxen_tests::rxen_dir().join("tmp");
    std::fs::create_dir_all(&dir).expect("cannot create target/rxen/tmp");
    let path = dir.join(format!("{name}-{}.img", std::process::id()));
    let mut x = seed | 1;
    let bytes: Vec<u8> = (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(&path, bytes).expect("cannot write the disk image");
    path
}

/// The MD5 of the first `len` bytes of `path`, by the host's `md5sum`.
fn host_md5(path: &std::path::Path, len: usize) -> String {
    let bytes = std::fs::read(path).expect("cannot read the image");
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run md5sum");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes[..len])
        .expect("cannot feed md5sum");
    let out = child.wait_with_output().expect("md5sum failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// dom0 drives the machine's disks and NICs with Debian's own modules: q35's AHCI
/// (`ahci`, MSI), an NVMe disk (`nvme`, MSI-X, its table in BAR 0 beside the
/// doorbells), a VMware vmxnet3 (`vmxnet3`, MSI-X), an Intel e1000 (`e1000`, INTx
/// through the IO-APIC) on a second user network. Each MSI or MSI-X entry, programmed
/// by dom0 with its own vector, is bound by rxen to a host vector and delivered to dom0
/// as dom0's. dom0 reads both disks' known patterns (their MD5s are the host's), writes a
/// block that lands in the SATA image (DMA into dom0's 1:1 RAM both ways), and pings
/// each network's gateway with no loss.
#[test]
fn dom0_drives_disks_and_nics_with_msi_msix_and_intx() {
    const READ: usize = 4 << 20;
    const MARK: &str = "rxen-dom0-wrote-this-block";
    let image = pattern_file("dom0-sata", 8 << 20, 0x5EED_D15C);
    let nvme = pattern_file("dom0-nvme", 8 << 20, 0x0E1F_0A55);
    let virtio = pattern_file("dom0-virtio", 8 << 20, 0x7172_7105);
    let script = format!(
        "for i in $(seq 1 100); do test -e /sys/block/sda && break; sleep 0.1; done
echo rxen-dom0: disk $(cat /sys/block/sda/size)
echo rxen-dom0: md5 $(dd if=/dev/sda bs=65536 count={} 2>/dev/null | md5sum)
echo {MARK} | dd of=/dev/sda bs=512 seek={} conv=sync,fsync 2>/dev/null
sync
echo rxen-dom0: irq $(grep -i ahci /proc/interrupts)
for i in $(seq 1 100); do test -e /sys/block/vda && break; sleep 0.1; done
echo rxen-dom0: virtio md5 $(dd if=/dev/vda bs=65536 count={} 2>/dev/null | md5sum)
echo {MARK} | dd of=/dev/vda bs=512 seek={} conv=sync,fsync 2>/dev/null
echo 3 > /proc/sys/vm/drop_caches
echo rxen-dom0: virtio readback $(dd if=/dev/vda bs=512 skip={} count=1 2>/dev/null | head -c {})
echo rxen-dom0: virtio irq $(grep -c 'PCI-MSI.*virtio' /proc/interrupts)
echo rxen-dom0: clocksources $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)
cat > /tmp/dhcp.sh <<'SCRIPT'
#!/bin/sh
if test \"$1\" = bound; then
  ip addr add $ip/${{mask:-24}} dev $interface
  echo rxen-dom0: dhcp $interface $ip router $router > /dev/console
fi
SCRIPT
chmod +x /tmp/dhcp.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -s /tmp/dhcp.sh >/dev/null 2>&1
echo rxen-dom0: ping $(ping -c 4 -W 5 10.0.2.2 | grep 'packets transmitted')
echo rxen-dom0: nic irq $(grep -c 'PCI-MSI.*eth0' /proc/interrupts) $(grep 'eth0-rxtx' /proc/interrupts)
for i in $(seq 1 100); do test -e /sys/block/nvme0n1 && break; sleep 0.1; done
echo rxen-dom0: nvme md5 $(dd if=/dev/nvme0n1 bs=65536 count={} 2>/dev/null | md5sum)
echo rxen-dom0: nvme irq $(grep -c 'PCI-MSI.*nvme0q' /proc/interrupts)
ip link set eth1 up
ip addr add 10.0.3.15/24 dev eth1
echo rxen-dom0: intx ping $(ping -c 4 -W 5 10.0.3.2 | grep 'packets transmitted')
echo rxen-dom0: intx irq $(grep 'IO-APIC.*fasteoi.*eth1' /proc/interrupts)
echo rxen-dom0: config sizes $(for d in /sys/bus/pci/devices/*; do echo $(basename $d)=$(wc -c < $d/config); done)
echo rxen-dom0: done
poweroff -f
",
        READ / 65536,
        READ / 512,
        READ / 65536,
        READ / 512,
        READ / 512,
        MARK.len(),
        READ / 65536,
    );
    let initramfs = rxen_tests::modules_initramfs(
        &[
            "ahci",
            "sd_mod",
            "nvme",
            "virtio_pci",
            "virtio_blk",
            "vmxnet3",
            "e1000",
        ],
        &script,
    );
    let out = machine("dom0-sata-ethernet-msi")
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=disk0,format=raw",
            image.display()
        ))
        .arg("-device")
        .arg("ide-hd,drive=disk0,bus=ide.0")
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=disk1,format=raw",
            nvme.display()
        ))
        .arg("-device")
        .arg("nvme,serial=rxen-nvme,drive=disk1")
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=disk2,format=raw",
            virtio.display()
        ))
        .arg("-device")
        .arg("virtio-blk-pci,drive=disk2")
        .arg("-nic")
        .arg("user,model=vmxnet3")
        .arg("-nic")
        .arg("user,model=e1000,net=10.0.3.0/24")
        .module(debian_kernel(), DOM0_ARGS)
        .module(&initramfs, "")
        .run();
    let written = std::fs::read(&image).expect("cannot read the image back");
    let expected = host_md5(&image, READ);
    let expected_nvme = host_md5(&nvme, READ);
    let expected_virtio = host_md5(&virtio, READ);
    let virtio_written = std::fs::read(&virtio).expect("cannot read the virtio image back");
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_file(&nvme);
    let _ = std::fs::remove_file(&virtio);
    out.assert_not_contains("FATAL TRAP")
        // QEMU loads the 4.8 MB initramfs right after the kernel, into the 16 MiB
        // where dom0's Linux loads: rxen moves it away and dom0 is still 1:1.
        .assert_line_contains_all(&["Module 1: moved to", "out of dom0's kernel window"])
        .assert_contains("dom0: RAM 0x1000000 - 0x11000000 (1:1)")
        .assert_contains("(d0) rxen-dom0: done")
        .assert_contains("d0: shut down (poweroff)")
        .assert_normal_stop()
        .assert_line_contains_all(&["d0: 0000:00:1f.2: MSI vector", "on host vector"])
        .assert_line_contains_all(&["(d0) [", "ahci 0000:00:1f.2: AHCI"]);
    assert_eq!(value(&out, "disk"), "16384", "dom0's disk has 8 MiB");
    let md5 = value(&out, "md5");
    assert!(
        md5.starts_with(&expected),
        "dom0 read {md5}, the image holds {expected}"
    );
    assert_eq!(
        &written[READ..READ + MARK.len()],
        MARK.as_bytes(),
        "dom0's write did not reach the image"
    );
    // The controller's interrupts reached dom0 (Linux counts them per CPU).
    let irq = value(&out, "irq");
    let count: u64 = irq
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| out.fail(&format!("no interrupt count in {irq:?}")));
    assert!(count > 0, "no AHCI interrupt reached dom0: {irq}");
    assert!(irq.contains("PCI-MSI"), "AHCI is not on MSI: {irq}");
    out.assert_line_contains_all(&["(d0) [", "vmxnet3 0000:00:02.0 eth0: NIC Link is Up"])
        .assert_line_contains_all(&["d0: 0000:00:02.0: MSI-X entry 0 vector", "on host vector"])
        .assert_line_contains_all(&["(d0) [", "vmxnet3 0000:00:02.0 eth0: intr type 3"]);
    assert_eq!(
        value(&out, "ping"),
        "4 packets transmitted, 4 packets received, 0% packet loss"
    );
    // eth0 on MSI-X (type 3): its queue vector took the ping's interrupts.
    let nic = value(&out, "nic irq");
    let rxtx: u64 = nic
        .split_whitespace()
        .nth(2)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| out.fail(&format!("no eth0-rxtx count in {nic:?}")));
    assert!(
        rxtx >= 4,
        "eth0's MSI-X queue vector took {rxtx} interrupts: {nic}"
    );
    // The NVMe disk: MSI-X with its table in BAR 0 beside the doorbells.
    out.assert_line_contains_all(&["d0: 0000:00:04.0: MSI-X entry 0 vector", "on host vector"]);
    let nvme_md5 = value(&out, "nvme md5");
    assert!(
        nvme_md5.starts_with(&expected_nvme),
        "dom0 read {nvme_md5} from the NVMe disk, the image holds {expected_nvme}"
    );
    let queues: u32 = value(&out, "nvme irq")
        .parse()
        .unwrap_or_else(|_| out.fail("no NVMe interrupt count"));
    assert!(
        queues >= 2,
        "NVMe has {queues} MSI-X vectors (admin and I/O queues)"
    );
    // The virtio disk (virtio-pci's MSI-X in BAR 1): the pattern, a block written,
    // caches dropped, read back from the disk, and found in the image.
    let virtio_md5 = value(&out, "virtio md5");
    assert!(
        virtio_md5.starts_with(&expected_virtio),
        "dom0 read {virtio_md5} from the virtio disk, the image holds {expected_virtio}"
    );
    assert_eq!(value(&out, "virtio readback"), MARK);
    assert_eq!(&virtio_written[READ..READ + MARK.len()], MARK.as_bytes());
    let virtio_irqs: u32 = value(&out, "virtio irq")
        .parse()
        .unwrap_or_else(|_| out.fail("no virtio interrupt count"));
    assert!(virtio_irqs >= 1, "virtio-blk has no MSI-X vector");
    // Xen's PV clock is there; Linux prefers the TSC in dom0 (`xen_time_init`
    // rates the xen clocksource 275 in the initial domain, on Xen as here).
    assert!(
        value(&out, "clocksources")
            .split_whitespace()
            .any(|c| c == "xen"),
        "no xen clocksource"
    );
    // dom0 gets its address from QEMU's DHCP server.
    assert_eq!(value(&out, "dhcp"), "eth0 10.0.2.15 router 10.0.2.2");
    // The e1000 has no MSI: its INTx line (a level-triggered GSI) reaches dom0
    // through the host IO-APIC pin rxen bound when dom0 unmasked its own, masked
    // from each interrupt until dom0's EOI.
    out.assert_line_contains_all(&["d0: IO-APIC pin of GSI", "(Level, High): host vector"]);
    assert_eq!(
        value(&out, "intx ping"),
        "4 packets transmitted, 4 packets received, 0% packet loss"
    );
    let intx = value(&out, "intx irq");
    let count: u64 = intx
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| out.fail(&format!("no interrupt count in {intx:?}")));
    assert!(count >= 4, "eth1 took {count} interrupts: {intx}");
    // The vmxnet3 is PCI Express: Linux reads its extended configuration space
    // (above register 0xFF, only through ECAM), which rxen mediates.
    out.assert_contains("d0: ECAM window at 0xb0000000 (segment 0, buses 0x0-0xff): mediated");
    let sizes = value(&out, "config sizes");
    assert!(
        sizes.contains("0000:00:02.0=4096") && sizes.contains("0000:00:1f.2=256"),
        "configuration space sizes: {sizes}"
    );
}

/// A 64-bit BAR above 4 GiB: dom0 moves its NVMe disk's BAR 0 (the MSI-X table and
/// PBA are in it, beside the doorbells) to 4 GiB, has Linux find the device again there
/// (remove and rescan: the BAR is inside q35's 64-bit window), and drives it with
/// MSI-X. rxen traps the table at its new place (device memory above 4 GiB, which its
/// own page tables map with 1 GiB pages), binds each entry to a host vector and
/// delivers dom0's; dom0 reads the disk's known pattern.
#[test]
fn dom0_drives_an_nvme_disk_whose_bar_is_above_4_gib() {
    const READ: usize = 1 << 20;
    const NVME: &str = "/sys/bus/pci/devices/0000:00:06.0";
    let nvme = pattern_file("dom0-nvme-high", 4 << 20, 0x4B1C_0A55);
    let modules = rxen_tests::debian_modules(&["nvme"]);
    let mut insmod = String::new();
    let mut files = Vec::new();
    for module in &modules {
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        insmod.push_str(&format!("insmod /lib/modules/{name}\n"));
        files.push((format!("lib/modules/{name}"), module.clone()));
    }
    let script = format!(
        "echo -ne '\\x00\\x00' | dd of={NVME}/config bs=2 seek=2 conv=notrunc 2>/dev/null
echo -ne '\\x04\\x00\\x00\\x00' | dd of={NVME}/config bs=4 seek=4 conv=notrunc 2>/dev/null
echo -ne '\\x01\\x00\\x00\\x00' | dd of={NVME}/config bs=4 seek=5 conv=notrunc 2>/dev/null
echo 1 > {NVME}/remove
echo 1 > /sys/bus/pci/rescan
echo rxen-dom0: nvme bar $(head -n 1 {NVME}/resource)
{insmod}for i in $(seq 1 100); do test -e /sys/block/nvme0n1 && break; sleep 0.1; done
echo rxen-dom0: nvme md5 $(dd if=/dev/nvme0n1 bs=65536 count={} 2>/dev/null | md5sum)
echo rxen-dom0: nvme irq $(grep -c 'PCI-MSI.*nvme0q' /proc/interrupts)
echo rxen-dom0: done
poweroff -f
",
        READ / 65536
    );
    let initramfs = rxen_tests::modules_initramfs_with(&[], &script, &files);
    let out = machine("dom0-nvme-above-4g")
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=disk1,format=raw",
            nvme.display()
        ))
        .arg("-device")
        .arg("nvme,serial=rxen-nvme,drive=disk1,addr=6")
        .module(debian_kernel(), DOM0_ARGS)
        .module(&initramfs, "")
        .run();
    let expected = host_md5(&nvme, READ);
    let _ = std::fs::remove_file(&nvme);
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxen-dom0: done")
        .assert_normal_stop()
        .assert_line_contains_all(&["d0: 0000:00:06.0: MSI-X entry 0 vector", "on host vector"]);
    // Linux keeps or reassigns it in the 64-bit window, above 4 GiB either way.
    let bar = value(&out, "nvme bar");
    let start = u64::from_str_radix(
        bar.split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap_or(0);
    assert!(start >= 1 << 32, "BAR 0 after the rescan: {bar}");
    let md5 = value(&out, "nvme md5");
    assert!(
        md5.starts_with(&expected),
        "dom0 read {md5} from the NVMe disk, the image holds {expected}"
    );
    let queues: u32 = value(&out, "nvme irq")
        .parse()
        .unwrap_or_else(|_| out.fail("nvme irq is not a number"));
    assert!(
        queues >= 1,
        "NVMe MSI-X vectors in /proc/interrupts: {queues}"
    );
}

/// dom0 misbehaves, as root in its own userspace can: it reads and writes rxen's UART
/// through `/dev/port`, selects an IO-APIC register that does not exist and writes it,
/// sends interrupt commands the local APIC does not emulate, enables the AHCI's MSI with
/// a garbage message and too many vectors through sysfs, and reads ECAM with 8-byte and
/// unaligned accesses. Each gets a log line or the hardware's answer; rxen stays up, dom0
/// keeps running and powers off. It also moves a virtio NIC's MSI-X table (BAR 1, no
/// driver bound) onto a page of device memory it had touched before (so rxen had mapped
/// it): its writes to the table there are still rxen's to see (the page is unmapped when
/// the BAR moves), and its unmasked entry is bound to a host vector. And it enables a
/// USB controller's multiple-message MSI (4 of its 16 vectors, no driver bound): rxen
/// binds an aligned block of 4 host vectors, and frees them when dom0 turns MSI off.
#[test]
fn dom0_bad_input_gets_a_log_line_not_a_crash() {
    const AHCI: &str = "/sys/bus/pci/devices/0000:00:1f.2/config";
    const NIC: &str = "/sys/bus/pci/devices/0000:00:05.0/config";
    const USB: &str = "/sys/bus/pci/devices/0000:00:07.0/config";
    let script = format!(
        "#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
echo rxen-dom0: uart lsr $(dd if=/dev/port bs=1 skip=1021 count=1 2>/dev/null | od -An -tx1)
echo -n X | dd of=/dev/port bs=1 seek=1016 2>/dev/null
busybox devmem 0xfec00000 32 0x50
busybox devmem 0xfec00010 32 0x30
echo rxen-dom0: ioapic pin 32 $(busybox devmem 0xfec00010 32)
busybox devmem 0xfee00300 32 0x40700
busybox devmem 0xfee00300 32 0x40200
echo -ne '\x78\x56\x34\x12' | dd of={AHCI} bs=1 seek=132 conv=notrunc 2>/dev/null
echo -ne '\x71\x00' | dd of={AHCI} bs=1 seek=130 conv=notrunc 2>/dev/null
echo rxen-dom0: msi control $(dd if={AHCI} bs=1 skip=130 count=1 2>/dev/null | od -An -tx1)
echo rxen-dom0: msi address $(dd if={AHCI} bs=4 skip=33 count=1 2>/dev/null | od -An -tx4)
dd if=/dev/zero of={AHCI} bs=1 seek=130 count=2 conv=notrunc 2>/dev/null
echo rxen-dom0: ecam 64 $(busybox devmem 0xb00fa000 64)
echo rxen-dom0: ecam unaligned $(busybox devmem 0xb00fa001 16)
echo rxen-dom0: free page $(busybox devmem 0xf0000000 32)
echo -ne '\\x01\\x00' | dd of={NIC} bs=2 seek=2 conv=notrunc 2>/dev/null
echo -ne '\\x00\\x00\\x00\\xf0' | dd of={NIC} bs=4 seek=5 conv=notrunc 2>/dev/null
echo -ne '\\x07\\x00' | dd of={NIC} bs=2 seek=2 conv=notrunc 2>/dev/null
echo rxen-dom0: msix bar $(dd if={NIC} bs=4 skip=5 count=1 2>/dev/null | od -An -tx4)
busybox devmem 0xf0000000 32 0xfee00000
busybox devmem 0xf0000008 32 0x4055
busybox devmem 0xf000000c 32 0
echo rxen-dom0: msix entry 0 data $(busybox devmem 0xf0000008 32)
byte() {{ dd if=$1 bs=1 skip=$2 count=1 2>/dev/null | od -An -tu1 | tr -d ' '; }}
m=$(byte {USB} 52)
while [ \"$m\" -ne 0 ] && [ \"$(byte {USB} $m)\" -ne 5 ]; do m=$(byte {USB} $((m + 1))); done
echo rxen-dom0: usb msi at $m
echo -ne '\\x00\\x00\\xe0\\xfe' | dd of={USB} bs=4 seek=$(((m + 4) / 4)) conv=notrunc 2>/dev/null
echo -ne '\\x60\\x00' | dd of={USB} bs=2 seek=$(((m + 12) / 2)) conv=notrunc 2>/dev/null
echo -ne '\\x21' | dd of={USB} bs=1 seek=$((m + 2)) conv=notrunc 2>/dev/null
echo rxen-dom0: usb msi control $(byte {USB} $((m + 2)))
echo -ne '\\x00' | dd of={USB} bs=1 seek=$((m + 2)) conv=notrunc 2>/dev/null
echo rxen-dom0: still here
poweroff -f
"
    );
    let initramfs = busybox_initramfs(&script);
    // `iomem=relaxed`: /dev/mem reaches the MMIO ranges Linux's drivers claimed;
    // `nox2apic`: the local APIC stays in xAPIC mode, so the interrupt commands above
    // go through its page (in x2APIC mode, which Linux takes otherwise, the page is
    // not decoded; the `x2apic` guest covers the MSRs).
    let out = machine("dom0-bad-input")
        .module(
            debian_kernel(),
            &format!("{DOM0_ARGS} iomem=relaxed nox2apic"),
        )
        .module(&initramfs, "")
        .arg("-device")
        .arg("nec-usb-xhci,addr=7,msi=on,msix=off")
        .arg("-device")
        .arg("virtio-net-pci,addr=5,netdev=n0")
        .arg("-netdev")
        .arg("user,id=n0")
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_contains("(d0) rxen-dom0: still here")
        .assert_contains("d0: shut down (poweroff)")
        .assert_normal_stop()
        // rxen's UART: denied with a line, reads all ones.
        .assert_contains("d0: read of port 0x3fd (1 bytes) denied (RxenUart)")
        .assert_contains("d0: write to port 0x3f8 (1 bytes) denied (RxenUart)")
        // An IO-APIC register past the last pin.
        .assert_line_contains_all(&["d0: IO-APIC write at 0xfec00010 ignored", "NoSuchRegister"])
        // Interrupt commands the local APIC does not emulate.
        .assert_contains("interrupt command Reserved not emulated")
        .assert_contains("interrupt command Smi not emulated")
        // The garbage MSI is bound (the device holds rxen's message) and let go.
        .assert_line_contains_all(&["d0: 0000:00:1f.2: MSI vector", "on host vector"])
        .assert_line_contains_all(&["d0: 0000:00:1f.2: MSI off, host vector", "freed"])
        // The moved MSI-X table: dom0's unmasked entry 0 is rxen's to bind.
        .assert_line_contains_all(&[
            "d0: 0000:00:05.0: MSI-X entry 0 vector 0x55 to physical APIC",
            "on host vector",
        ]);
    // The USB controller's MSI: 4 vectors from dom0's 0x60 on 4 aligned host ones,
    // dom0 reading back 16 capable (MMC 4), 4 enabled (MME 2), on, 64-bit; then off.
    out.assert_line_contains_all(&[
        "d0: 0000:00:07.0: MSI vector 0x60 (+3) to physical APIC 0x0 on host vector",
    ])
    .assert_line_contains_all(&["d0: 0000:00:07.0: MSI off, host vector", "freed"]);
    assert_eq!(
        value(&out, "usb msi control"),
        (0x80 | 0x20 | 0x08 | 1).to_string()
    );
    let bound = out.lines_containing("d0: 0000:00:07.0: MSI vector 0x60 (+3)")[0]
        .split("on host vector ")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let first = u8::from_str_radix(
        bound
            .split('-')
            .next()
            .unwrap_or("")
            .trim_start_matches("0x"),
        16,
    )
    .unwrap_or_else(|_| out.fail(&format!("host vectors {bound:?}")));
    assert_eq!(first % 4, 0, "an aligned block: {bound}");
    assert!(
        bound.ends_with(&format!("-{:#x}", first + 3)),
        "4 vectors: {bound}"
    );
    // The page was read (so mapped) before the BAR moved there; then the table is
    // dom0's copy.
    value(&out, "free page");
    assert_eq!(value(&out, "msix bar"), "f0000000");
    assert_eq!(value(&out, "msix entry 0 data"), "0x00004055");
    assert_eq!(value(&out, "uart lsr"), "ff");
    // A register past the last pin reads 0, as Xen's `vioapic_read_indirect`.
    assert_eq!(value(&out, "ioapic pin 32"), "0x00000000");
    // dom0 sees its own address back, one vector (MMC 0) and MME refused (0).
    assert_eq!(value(&out, "msi address"), "12345678");
    let control = u8::from_str_radix(value(&out, "msi control"), 16)
        .unwrap_or_else(|_| out.fail("msi control is not hex"));
    assert_eq!(control & 0x7F, 0x01, "MSI control {control:#x}");
    // ECAM: an 8-byte read is two 4-byte ones (vendor 8086, device 2922 below);
    // an unaligned one reads all ones.
    let ecam = u64::from_str_radix(value(&out, "ecam 64").trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| out.fail("ecam 64 is not hex"));
    assert_eq!(ecam & 0xFFFF_FFFF, 0x2922_8086);
    assert_eq!(value(&out, "ecam unaligned"), "0xFFFF");
}

/// GRUB 2 boots rxen (`multiboot2`) with Debian's kernel and the initramfs as modules
/// (`module2`), as on hardware: dom0 is built 1:1 from them and reaches `/init`, and
/// its poweroff ends the machine.
#[test]
fn grub_boots_rxen_with_a_linux_dom0() {
    let initramfs = busybox_initramfs(INIT_SCRIPT);
    let iso = rxen_tests::grub_iso(
        "grub-dom0-linux",
        "console=com1 loglvl=all guest_loglvl=all isa_debug_exit dom0_mem=256M",
        &[
            (debian_kernel(), DOM0_ARGS.to_string()),
            (initramfs, String::new()),
        ],
    );
    let out = Qemu::new("grub-dom0-linux")
        .cdrom(&iso)
        .memory_mb(1024)
        .timeout(Duration::from_secs(180))
        .run();
    out.assert_not_contains("FATAL TRAP")
        .assert_line_contains_all(&["Bootloader: GRUB 2", "(Multiboot2)"])
        .assert_contains("dom0: RAM 0x1000000 - 0x11000000 (1:1)")
        .assert_contains("(d0) rxen-dom0: init is running")
        .assert_contains("(d0) rxen-dom0: done")
        .assert_contains("d0: shut down (poweroff)")
        .assert_normal_stop();
}
