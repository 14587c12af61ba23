//! QEMU test harness for rxen.
//!
//! Integration tests (in `tests/tests/`) boot the hypervisor image built by
//! `cargo xtask build` (at `target/rxen/rxen`) in QEMU, capture the serial console, and
//! assert on it:
//!
//! ```no_run
//! use rxen_tests::{write_module, Qemu};
//! use std::time::Duration;
//!
//! let dom0 = write_module("example-dom0", b"not really a kernel");
//! let out = Qemu::new("example")
//!     .append("console=com1 isa_debug_exit")
//!     .module(&dom0, "root=/dev/xvda")
//!     .smp(2)
//!     .timeout(Duration::from_secs(60))
//!     .run();
//! out.assert_contains("rxen version").assert_normal_stop();
//! ```
//!
//! The hypervisor ends a run by writing to QEMU's `isa-debug-exit` port (0xf4): 0x10 on a
//! normal stop ([`EXIT_NORMAL`]), 0x11 on a fault or panic ([`EXIT_CRASH`]). Every run's
//! full log goes to `target/rxen/test-logs/<name>.log`, and every failing assertion panics
//! with the reason and the end of the log.
//!
//! Environment: `RXEN_QEMU` overrides the QEMU binary; `RXEN_TEST_ECHO=1` echoes the
//! serial console to stderr while a test runs (use with `--nocapture`).

#![warn(missing_docs)]

pub mod dom0;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Value the hypervisor writes to the isa-debug-exit port when it stops normally.
pub const EXIT_NORMAL: u8 = 0x10;
/// Value the hypervisor writes to the isa-debug-exit port on a fatal fault or panic.
pub const EXIT_CRASH: u8 = 0x11;
/// How many lines of the log a failing assertion shows.
pub const TAIL_LINES: usize = 60;
/// The QEMU binary, unless `RXEN_QEMU` names another.
pub const QEMU: &str = "qemu-system-x86_64";

/// The root of the Cargo workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives one level below the workspace root")
        .to_path_buf()
}

/// `target/rxen`: where `cargo xtask build` puts the image, and where the harness puts
/// modules, ISO images and logs.
pub fn rxen_dir() -> PathBuf {
    workspace_root().join("target").join("rxen")
}

/// The hypervisor image, `target/rxen/rxen`.
///
/// # Panics
/// If the image has not been built.
pub fn image() -> PathBuf {
    let path = rxen_dir().join("rxen");
    if !path.is_file() {
        panic!(
            "no hypervisor image at {}: run `cargo xtask build` first (or use `cargo xtask test`)",
            path.display()
        );
    }
    path
}

/// A PVH test guest built by `cargo xtask build`, `target/rxen/guests/<name>`.
///
/// # Panics
/// If the guest has not been built.
pub fn guest(name: &str) -> PathBuf {
    let path = rxen_dir().join("guests").join(name);
    if !path.is_file() {
        panic!(
            "no test guest at {}: run `cargo xtask build` first (or use `cargo xtask test`)",
            path.display()
        );
    }
    path
}

/// The Debian package that holds the reference Xen.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";

/// The QEMU options a Xen reference run needs besides `-kernel`: a CPU with SVM and
/// nested paging, and an emulated IOMMU (Xen refuses a PVH dom0 without one).
pub const XEN_QEMU_ARGS: &[&str] = &["-device", "intel-iommu,intremap=on"];

/// Xen's command line for the reference runs: a PVH dom0 with 64 MiB, no reboot.
pub const XEN_APPEND: &str =
    "console=com1 dom0=pvh dom0_mem=64M iommu=1 noreboot loglvl=all guest_loglvl=all";

/// The real Xen 4.17 hypervisor (Debian's `xen-hypervisor-4.17-amd64`, gunzipped: a
/// multiboot ELF32 QEMU's `-kernel` boots), cached at `target/rxen/cache/xen-4.17/xen`
/// (or `$RXEN_XEN` if set). Fetched on first use with `apt-get download` and unpacked
/// with `dpkg -x`; safe to call from parallel tests.
///
/// # Panics
/// If it cannot be fetched or unpacked (the message says what failed).
pub fn xen_image() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os("RXEN_XEN") {
        return PathBuf::from(path);
    }
    let dir = rxen_dir().join("cache").join("xen-4.17");
    let xen = dir.join("xen");
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if xen.is_file() {
        return xen;
    }
    let work = dir.join(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    create_dir(&work);
    let deb = apt_download(&work, XEN_PACKAGE);
    run_in(&work, Command::new("dpkg").arg("-x").arg(&deb).arg("root"));
    let gz = work.join("root/boot/xen-4.17-amd64.gz");
    let elf = run_in(&work, Command::new("gzip").arg("-dc").arg(&gz));
    let tmp = dir.join(format!(".xen.{}", std::process::id()));
    fs::write(&tmp, elf).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    fs::rename(&tmp, &xen).unwrap_or_else(|e| panic!("cannot rename to {}: {e}", xen.display()));
    let _ = fs::remove_dir_all(&work);
    xen
}

/// Runs `cmd` in `dir` and returns its standard output.
///
/// # Panics
/// If it cannot be started or fails (its output is part of the message).
fn run_in(dir: &Path, cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.stdout
}

/// `apt-get download`s `package` into the empty directory `work` and returns the `.deb`.
fn apt_download(work: &Path, package: &str) -> PathBuf {
    run_in(work, Command::new("apt-get").args(["download", package]));
    fs::read_dir(work)
        .expect("cannot list the download directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("apt-get download {package} left no .deb"))
}

/// The package `linux-image-amd64` depends on (e.g. `linux-image-6.1.0-48-amd64`),
/// after an `apt-get update` if the package lists do not know it yet.
pub fn debian_kernel_package() -> String {
    let depends = || {
        let out = Command::new("apt-cache")
            .args(["depends", DEBIAN_KERNEL_META])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                let name = line.trim().strip_prefix("Depends:")?.trim();
                let name = name.trim_start_matches('<').trim_end_matches('>');
                name.starts_with("linux-image-").then(|| name.to_string())
            })
    };
    if let Some(name) = depends() {
        return name;
    }
    run_in(&rxen_dir(), Command::new("apt-get").args(["update", "-q"]));
    depends().unwrap_or_else(|| panic!("apt-cache depends {DEBIAN_KERNEL_META} names no kernel"))
}

/// The metapackage whose dependency is Debian's current kernel.
pub const DEBIAN_KERNEL_META: &str = "linux-image-amd64";

/// Debian's current kernel as Debian ships it (a bzImage with an xz payload), cached at
/// `target/rxen/cache/linux/vmlinuz-<version>` (or `$RXEN_LINUX` if set). Fetched on
/// first use: the package `linux-image-amd64` depends on is `apt-get download`ed and its
/// `boot/vmlinuz-*` taken out (only that member is unpacked: the modules are ~400 MiB
/// and not needed). Later calls return the cached file at once; delete the directory
/// to fetch a newer kernel. Safe to call from parallel tests.
///
/// # Panics
/// If it cannot be fetched or unpacked (the message says what failed).
pub fn debian_kernel() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os("RXEN_LINUX") {
        return PathBuf::from(path);
    }
    let dir = rxen_dir().join("cache").join("linux");
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cached = |dir: &Path| {
        fs::read_dir(dir).ok()?.find_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?;
            (name.starts_with("vmlinuz-") && p.is_file()).then_some(p)
        })
    };
    if let Some(path) = cached(&dir) {
        return path;
    }
    let package = debian_kernel_package();
    let work = dir.join(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    create_dir(&work);
    let deb = apt_download(&work, &package);
    // dpkg-deb piped into tar: only boot/vmlinuz-* reaches the disk (the modules are
    // ~400 MiB).
    run_in(
        &work,
        Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x --wildcards './boot/vmlinuz-*'",
            deb.display()
        )),
    );
    let kernel =
        cached(&work.join("boot")).unwrap_or_else(|| panic!("{package} has no boot/vmlinuz-*"));
    let path = dir.join(kernel.file_name().expect("a file name"));
    fs::rename(&kernel, &path)
        .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
    let _ = fs::remove_dir_all(&work);
    path
}

/// Debian's kernel modules `names` and every module they depend on, from the package of
/// the kernel [`debian_kernel`] returns, in an order `insmod` can load them (dependencies
/// first). Each is cached at `target/rxen/cache/linux/modules-<version>/<name>.ko`; on
/// first use the package is `apt-get download`ed once more and only the modules needed are
/// unpacked. Safe to call from parallel tests.
///
/// # Panics
/// If the kernel's version cannot be told from its file name, the package cannot be
/// fetched, or a module (or one it depends on) is not in it.
pub fn debian_modules(names: &[&str]) -> Vec<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let kernel = debian_kernel();
    let version = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_else(|| panic!("no version in {}", kernel.display()))
        .to_string();
    let dir = rxen_dir()
        .join("cache")
        .join("linux")
        .join(format!("modules-{version}"));
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    create_dir(&dir);
    // The package, fetched at most once per call that misses a module.
    let mut package: Option<(PathBuf, Vec<String>)> = None;
    let mut order: Vec<String> = Vec::new();
    let mut visiting: Vec<String> = Vec::new();
    fn key(name: &str) -> String {
        name.replace('-', "_")
    }
    fn visit(
        name: &str,
        dir: &Path,
        version: &str,
        package: &mut Option<(PathBuf, Vec<String>)>,
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) {
        let name = key(name);
        if order.contains(&name) || visiting.contains(&name) {
            return;
        }
        visiting.push(name.clone());
        let path = dir.join(format!("{name}.ko"));
        if !path.is_file() {
            let (deb, members) = package.get_or_insert_with(|| {
                let work = dir.join(format!("tmp-{}", std::process::id()));
                let _ = fs::remove_dir_all(&work);
                create_dir(&work);
                let deb = apt_download(&work, &format!("linux-image-{version}"));
                let list = run_in(&work, Command::new("dpkg-deb").arg("-c").arg(&deb));
                let members = String::from_utf8_lossy(&list)
                    .lines()
                    .filter_map(|l| l.split_whitespace().last())
                    .filter(|m| m.ends_with(".ko"))
                    .map(str::to_string)
                    .collect();
                (deb, members)
            });
            let member = members
                .iter()
                .find(|m| {
                    m.rsplit('/')
                        .next()
                        .and_then(|f| f.strip_suffix(".ko"))
                        .is_some_and(|f| key(f) == name)
                })
                .unwrap_or_else(|| panic!("no module {name} in linux-image-{version}"))
                .clone();
            let work = deb.parent().expect("the download directory").to_path_buf();
            run_in(
                &work,
                Command::new("sh").arg("-c").arg(format!(
                    "dpkg-deb --fsys-tarfile '{}' | tar -x '{member}'",
                    deb.display()
                )),
            );
            fs::rename(work.join(&member), &path)
                .unwrap_or_else(|e| panic!("cannot move {member}: {e}"));
        }
        let bytes =
            fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        // The `depends=` string of the module's .modinfo section.
        let depends = bytes
            .split(|&b| b == 0)
            .find_map(|field| field.strip_prefix(b"depends="))
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        for dep in depends.split(',').filter(|d| !d.is_empty()) {
            visit(dep, dir, version, package, order, visiting);
        }
        visiting.retain(|v| *v != name);
        order.push(name);
    }
    for name in names {
        visit(
            name,
            &dir,
            &version,
            &mut package,
            &mut order,
            &mut visiting,
        );
    }
    if let Some((deb, _)) = package {
        if let Some(work) = deb.parent() {
            let _ = fs::remove_dir_all(work);
        }
    }
    order
        .iter()
        .map(|name| dir.join(format!("{name}.ko")))
        .collect()
}

/// A [`busybox_initramfs_with`] whose `/init` mounts `/proc`, `/sys` and a devtmpfs on
/// `/dev`, loads Debian's modules `names` and those they depend on ([`debian_modules`],
/// carried in `/lib/modules`) in order, then runs the shell lines `script`.
///
/// # Panics
/// As [`debian_modules`] and [`busybox_initramfs_with`].
pub fn modules_initramfs(names: &[&str], script: &str) -> PathBuf {
    modules_initramfs_with(names, script, &[])
}

/// [`modules_initramfs`] with the files `extra` too (as [`busybox_initramfs_with`]).
///
/// # Panics
/// As [`modules_initramfs`].
pub fn modules_initramfs_with(
    names: &[&str],
    script: &str,
    extra: &[(String, PathBuf)],
) -> PathBuf {
    let mut init = String::from(
        "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs dev /dev\n",
    );
    let mut files = extra.to_vec();
    for module in debian_modules(names) {
        let name = file_name(&module);
        init.push_str(&format!("insmod /lib/modules/{name}\n"));
        files.push((format!("lib/modules/{name}"), module));
    }
    init.push_str(script);
    busybox_initramfs_with(&init, &files)
}

/// Debian's packages that hold Xen 4.17's `xenconsoled` and the libraries it needs
/// beyond what `xenstore-utils` brings.
pub const XENCONSOLED_PACKAGES: &[&str] = &[
    "xen-utils-4.17",
    "libxenmisc4.17",
    "libxenevtchn1",
    "libxengnttab1",
    "libxenforeignmemory1",
    "libxencall1",
    "libxentoollog1",
    "libxendevicemodel1",
];

/// Debian's Xen 4.17 `xenconsoled` for a dom0 initramfs: the program as
/// `bin/xenconsoled` and every library `ldd` names, under the paths the dynamic
/// loader searches, as (path in the archive, file on the host). The packages
/// ([`XENCONSOLED_PACKAGES`]) are fetched with `apt-get download` once and unpacked
/// into `target/rxen/cache/xen-utils/`.
///
/// # Panics
/// If they cannot be fetched or unpacked, or `ldd` cannot resolve a library.
pub fn debian_xenconsoled() -> Vec<(String, PathBuf)> {
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = rxen_dir().join("cache").join("xen-utils");
    let root = dir.join("root");
    let program = root.join("usr/lib/xen-4.17/bin/xenconsoled");
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !program.is_file() {
        let work = dir.join(format!("tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        for package in XENCONSOLED_PACKAGES {
            let one = work.join(package);
            create_dir(&one);
            let deb = apt_download(&one, package);
            run_in(&dir, Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
        }
        let _ = fs::remove_dir_all(&work);
    }
    let libs = root.join("usr/lib/x86_64-linux-gnu");
    let mut files = vec![("bin/xenconsoled".to_string(), program.clone())];
    files.extend(shared_libraries(&program, Some(&libs)));
    files
}

/// The shared libraries `program` needs (`ldd`, looking in `lib_path` first), each
/// with where it goes in an initramfs (`lib64/` for the loader,
/// `lib/x86_64-linux-gnu/` for the others).
///
/// # Panics
/// If `ldd` cannot run or a library is not found.
pub fn shared_libraries(program: &Path, lib_path: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut ldd = Command::new("ldd");
    ldd.arg(program);
    if let Some(libs) = lib_path {
        ldd.env("LD_LIBRARY_PATH", libs);
    }
    let out = ldd
        .output()
        .unwrap_or_else(|e| panic!("cannot run ldd: {e}"));
    let mut files = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.contains("not found") {
            panic!("{}: {}", program.display(), line.trim());
        }
        // "libx.so.4 => /lib/x86_64-linux-gnu/libx.so.4 (0x...)" or the loader's
        // "/lib64/ld-linux-x86-64.so.2 (0x...)".
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        let Some(path) = path else { continue };
        let path = PathBuf::from(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let at = if name.starts_with("ld-linux") {
            format!("lib64/{name}")
        } else {
            format!("lib/x86_64-linux-gnu/{name}")
        };
        files.push((at, path));
    }
    files
}

/// The dom0 tool `name` (`rxl`...), as `cargo xtask build` leaves it in
/// `target/rxen/dom0/`.
///
/// # Panics
/// If it is not there (run `cargo xtask build` first).
pub fn dom0_tool(name: &str) -> PathBuf {
    let path = rxen_dir().join("dom0").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build` first",
        path.display()
    );
    path
}

/// The Debian package whose `/bin/busybox` goes into [`busybox_initramfs`].
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// Debian's statically linked busybox, cached at `target/rxen/cache/busybox/busybox`
/// (fetched with `apt-get download busybox-static` and `dpkg -x` on first use).
///
/// # Panics
/// If it cannot be fetched or unpacked.
pub fn busybox() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = rxen_dir().join("cache").join("busybox");
    let path = dir.join("busybox");
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if path.is_file() {
        return path;
    }
    let work = dir.join(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    create_dir(&work);
    let deb = apt_download(&work, BUSYBOX_PACKAGE);
    run_in(&work, Command::new("dpkg").arg("-x").arg(&deb).arg("root"));
    fs::rename(work.join("root/bin/busybox"), &path)
        .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
    let _ = fs::remove_dir_all(&work);
    path
}

/// The commands [`busybox_initramfs`] links to busybox in `/bin`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "uname", "cat", "poweroff", "reboot", "sleep", "mount", "ls", "dmesg", "grep",
    "cut", "nproc", "head", "insmod", "dd", "md5sum", "ip", "ping", "sync", "seq", "test", "wc",
    "basename",
];

/// An initramfs (a cpio archive in the "newc" format, uncompressed) with Debian's static
/// busybox as `/bin/busybox`, links to it for [`BUSYBOX_APPLETS`], `/dev/console`,
/// empty `/proc`, `/sys` and `/tmp`, and `init_script` as `/init`. Cached at
/// `target/rxen/cache/initramfs/<hash of the script and the applets>.cpio`.
///
/// # Panics
/// If busybox cannot be fetched or the archive cannot be written.
pub fn busybox_initramfs(init_script: &str) -> PathBuf {
    busybox_initramfs_with(init_script, &[])
}

/// [`busybox_initramfs`] with the files `extra` too: each `(path in the archive, file on
/// the host)`, e.g. kernel modules under `lib/modules/`. Their directories are created;
/// files under `bin/`, `sbin/`, `lib/` and `lib64/` are executable.
///
/// # Panics
/// As [`busybox_initramfs`], or if a file of `extra` cannot be read.
pub fn busybox_initramfs_with(init_script: &str, extra: &[(String, PathBuf)]) -> PathBuf {
    let dir = rxen_dir().join("cache").join("initramfs");
    let extra: Vec<(&str, Vec<u8>)> = extra
        .iter()
        .map(|(name, file)| {
            let bytes =
                fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            (name.as_str(), bytes)
        })
        .collect();
    // The key covers the script, the applets and the extra files, so that a
    // change of any makes a new archive.
    // v4: programs and libraries (bin/, sbin/, lib/, lib64/) are executable.
    let mut keyed = format!("v4\0{init_script}\0{}", BUSYBOX_APPLETS.join(" ")).into_bytes();
    for (name, bytes) in &extra {
        keyed.extend_from_slice(name.as_bytes());
        keyed.extend_from_slice(&fnv1a(bytes).to_le_bytes());
    }
    let key = fnv1a(&keyed);
    let path = dir.join(format!("{key:016x}.cpio"));
    if path.is_file() {
        return path;
    }
    let busybox = fs::read(busybox()).expect("cannot read busybox");
    let mut cpio = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.entry(d, 0o040755, 0, b"");
    }
    cpio.entry("dev/console", 0o020600, (5 << 8) | 1, b"");
    cpio.entry("bin/busybox", 0o100755, 0, &busybox);
    for applet in BUSYBOX_APPLETS {
        cpio.entry(&format!("bin/{applet}"), 0o120777, 0, b"busybox");
    }
    cpio.entry("init", 0o100755, 0, init_script.as_bytes());
    let mut dirs: Vec<String> = Vec::new();
    for (name, bytes) in &extra {
        let mut parent = String::new();
        for part in name
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent = if parent.is_empty() {
                part.to_string()
            } else {
                format!("{parent}/{part}")
            };
            if !dirs.contains(&parent)
                && !["bin", "dev", "proc", "sys", "tmp"].contains(&parent.as_str())
            {
                cpio.entry(&parent, 0o040755, 0, b"");
                dirs.push(parent.clone());
            }
        }
        // Programs (under bin/ and sbin/) and shared libraries and the dynamic
        // loader (under lib/ and lib64/) are executable; other files are data.
        let mode = if ["bin/", "sbin/", "lib/", "lib64/"]
            .iter()
            .any(|dir| name.starts_with(dir))
        {
            0o100755
        } else {
            0o100644
        };
        cpio.entry(name, mode, 0, bytes);
    }
    create_dir(&dir);
    let tmp = dir.join(format!(
        ".{}.{:?}",
        std::process::id(),
        thread::current().id()
    ));
    fs::write(&tmp, cpio.finish())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
    path
}

/// 64-bit FNV-1a: a hash that stays the same across Rust versions (for cache keys).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A cpio archive in the "newc" format (magic `070701`), as the kernel unpacks an
/// initramfs.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    /// Adds an entry; `rdev` is `major << 8 | minor` for device nodes.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) {
        self.next_inode += 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, b"");
        self.bytes
    }
}

impl Qemu {
    /// A run of the real Xen 4.17 ([`xen_image`]) with [`XEN_APPEND`] on
    /// `-cpu EPYC,+svm,+npt` with an emulated IOMMU, for reference runs of test guests
    /// (add the guest with [`Qemu::module`]). Xen halts but QEMU keeps running after
    /// dom0 ends: use [`Qemu::stop_on`].
    pub fn xen(name: &str) -> Qemu {
        let mut q = Qemu::new(name)
            .kernel(xen_image())
            .cpu("EPYC,+svm,+npt")
            .append(XEN_APPEND);
        for a in XEN_QEMU_ARGS {
            q = q.arg(*a);
        }
        q
    }
}

/// Writes `contents` to `target/rxen/test-modules/<name>` (atomically, so that tests
/// running in parallel may share a module) and returns its path.
///
/// # Panics
/// If `name` is not a plain file name without commas or spaces, or on I/O errors.
pub fn write_module(name: &str, contents: &[u8]) -> PathBuf {
    assert!(
        !name.is_empty() && !name.contains(['/', ',', ' ']),
        "module name {name:?} must be a plain file name without commas or spaces"
    );
    let dir = rxen_dir().join("test-modules");
    create_dir(&dir);
    let path = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.{}.{:?}",
        std::process::id(),
        thread::current().id()
    ));
    fs::write(&tmp, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
    path
}

/// Builds a BIOS GRUB rescue ISO that boots the image with `multiboot2` and loads each
/// module with `module2`, and returns the ISO's path (`target/rxen/iso/<name>/<name>.iso`).
///
/// GRUB talks on the first serial port, so its output appears in the test log before the
/// hypervisor's. Each module is copied to `/boot/<file name>` on the ISO.
///
/// # Panics
/// If the image is missing, a module file is missing, two modules share a file name, or
/// `grub-mkrescue` fails (its output is part of the message).
pub fn grub_iso(name: &str, kernel_args: &str, modules: &[(PathBuf, String)]) -> PathBuf {
    grub_iso_with_kernel(name, &image(), kernel_args, modules)
}

/// [`grub_iso`] with another multiboot2 kernel than the rxen image (it is still installed
/// as `/boot/rxen`).
///
/// # Panics
/// As [`grub_iso`].
pub fn grub_iso_with_kernel(
    name: &str,
    kernel: &Path,
    kernel_args: &str,
    modules: &[(PathBuf, String)],
) -> PathBuf {
    let dir = rxen_dir().join("iso").join(sanitize(name));
    let tree = dir.join("tree");
    if tree.exists() {
        fs::remove_dir_all(&tree)
            .unwrap_or_else(|e| panic!("cannot clean {}: {e}", tree.display()));
    }
    let boot = tree.join("boot");
    create_dir(&boot.join("grub"));
    copy(kernel, &boot.join("rxen"));

    let cfg = grub_cfg(kernel_args, modules);
    let mut seen = Vec::new();
    for (path, _) in modules {
        let file = file_name(path);
        assert!(!seen.contains(&file), "two modules are called {file:?}");
        copy(path, &boot.join(&file));
        seen.push(file);
    }
    fs::write(boot.join("grub").join("grub.cfg"), cfg).expect("cannot write grub.cfg");

    let iso = dir.join(format!("{}.iso", sanitize(name)));
    let _ = fs::remove_file(&iso);
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&tree)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run grub-mkrescue ({e}): install grub-common, grub-pc-bin, xorriso and mtools (`cargo xtask test` does)")
        });
    if !output.status.success() || !iso.is_file() {
        panic!(
            "grub-mkrescue failed ({}) building {}:\n{}{}",
            output.status,
            iso.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    iso
}

/// The grub.cfg text [`grub_iso`] writes.
pub fn grub_cfg(kernel_args: &str, modules: &[(PathBuf, String)]) -> String {
    let mut cfg = String::from(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         set timeout=0\n\
         menuentry \"rxen\" {\n",
    );
    cfg += &format!("    multiboot2 /boot/rxen {kernel_args}\n");
    for (path, args) in modules {
        cfg += &format!("    module2 /boot/{} {args}\n", file_name(path));
    }
    cfg += "    boot\n}\n";
    cfg
}

fn file_name(path: &Path) -> String {
    let name = path
        .file_name()
        .unwrap_or_else(|| panic!("module path {} has no file name", path.display()))
        .to_string_lossy()
        .into_owned();
    assert!(
        !name.contains([' ', '"', '\'']),
        "module file name {name:?} must not contain spaces or quotes"
    );
    name
}

fn create_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}

/// `name` with every character that is awkward in a file name replaced by `_`.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

/// How a QEMU run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The guest wrote this value to the isa-debug-exit port (QEMU exited with
    /// `(value << 1) | 1`). Exit status 1 is ambiguous (value 0, or a QEMU error) and is
    /// reported as `Exited(1)`.
    DebugExit(u8),
    /// QEMU exited on its own with this status (0: e.g. guest shutdown with `-no-reboot`).
    Exited(i32),
    /// QEMU was killed by a signal the harness did not send.
    Signaled,
    /// The time-out expired; the harness killed QEMU.
    TimedOut,
    /// The stop marker ([`Qemu::stop_on`]) appeared; the harness killed QEMU.
    StopMarker,
}

impl Status {
    /// Decodes QEMU's exit status (`None` if it was killed by a signal).
    pub fn from_exit_code(code: Option<i32>) -> Status {
        match code {
            None => Status::Signaled,
            Some(c) if (3..=255).contains(&c) && c & 1 == 1 => Status::DebugExit((c >> 1) as u8),
            Some(c) => Status::Exited(c),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::DebugExit(EXIT_NORMAL) => {
                write!(f, "debug exit {EXIT_NORMAL:#x} (normal stop)")
            }
            Status::DebugExit(EXIT_CRASH) => write!(f, "debug exit {EXIT_CRASH:#x} (crash)"),
            Status::DebugExit(v) => write!(f, "debug exit {v:#x}"),
            Status::Exited(c) => write!(f, "QEMU exited with status {c}"),
            Status::Signaled => write!(f, "QEMU killed by a signal"),
            Status::TimedOut => write!(f, "timed out (QEMU killed)"),
            Status::StopMarker => write!(f, "stop marker seen (QEMU killed)"),
        }
    }
}

/// What a QEMU run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The serial console (QEMU's stdout), lossily decoded, with `\r\n` turned into `\n`.
    pub log: String,
    /// QEMU's own messages (stderr).
    pub stderr: String,
    /// How the run ended.
    pub status: Status,
    /// The test name given to [`Qemu::new`].
    pub name: String,
    /// Where the full log was written.
    pub log_path: PathBuf,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// An outcome built from parts (for tests of assertions; [`Qemu::run`] makes real ones).
    pub fn new(name: &str, log: &str, status: Status) -> Outcome {
        Outcome {
            log: log.to_string(),
            stderr: String::new(),
            status,
            name: name.to_string(),
            log_path: PathBuf::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The last `n` lines of the serial log.
    pub fn tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Whether the serial log contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.log.contains(needle)
    }

    /// The lines of the serial log that contain `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains(needle)).collect()
    }

    /// On each line containing `needle`, the number that starts the first
    /// word after `after` (lines without one are left out).
    pub fn numbers_after(&self, needle: &str, after: &str) -> Vec<u64> {
        self.lines_containing(needle)
            .iter()
            .filter_map(|l| {
                l.split(after)
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// How many lines of the serial log contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines_containing(needle).len()
    }

    /// The kernel timestamp (seconds, Linux's `[    1.234567]`) of the
    /// first line containing both `prefix` (a domain's, e.g. `"(d1) ["`)
    /// and `needle`; fails the test if there is none.
    #[track_caller]
    pub fn kernel_time(&self, prefix: &str, needle: &str) -> f64 {
        self.log
            .lines()
            .filter(|l| l.contains(needle))
            .find_map(|l| {
                let (_, rest) = l.split_once(prefix)?;
                rest.split_once(']')?.0.trim().parse().ok()
            })
            .unwrap_or_else(|| {
                self.fail(&format!("no timestamped {prefix:?} line with {needle:?}"))
            })
    }

    /// Panics with `reason`, the run's status and the end of the log.
    #[track_caller]
    pub fn fail(&self, reason: &str) -> ! {
        let mut msg = format!(
            "test `{}`: {reason}\nstatus: {} after {:.1} s\n",
            self.name,
            self.status,
            self.elapsed.as_secs_f64()
        );
        if !self.log_path.as_os_str().is_empty() {
            msg += &format!("full log: {}\n", self.log_path.display());
        }
        msg += &format!("---- last {TAIL_LINES} lines of the serial log ----\n");
        let last = self.tail(TAIL_LINES);
        if !last.is_empty() {
            msg += &last;
            msg.push('\n');
        }
        msg += "---- end of serial log ----\n";
        if !self.stderr.trim().is_empty() {
            msg += &format!("---- QEMU stderr ----\n{}\n", tail(&self.stderr, 20));
        }
        panic!("{msg}");
    }

    /// Asserts that the serial log contains `needle`.
    #[track_caller]
    pub fn assert_contains(&self, needle: &str) -> &Self {
        if !self.contains(needle) {
            self.fail(&format!("the serial log does not contain {needle:?}"));
        }
        self
    }

    /// Asserts that the serial log does not contain `needle`.
    #[track_caller]
    pub fn assert_not_contains(&self, needle: &str) -> &Self {
        if let Some(line) = self.log.lines().find(|l| l.contains(needle)) {
            self.fail(&format!(
                "the serial log contains {needle:?}, in line {line:?}"
            ));
        }
        self
    }

    /// Asserts that some single line contains every one of `needles`.
    #[track_caller]
    pub fn assert_line_contains_all(&self, needles: &[&str]) -> &Self {
        if !self
            .log
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
        {
            self.fail(&format!(
                "no line of the serial log contains all of {needles:?}"
            ));
        }
        self
    }

    /// Asserts that exactly `n` lines of the serial log contain `needle`.
    #[track_caller]
    pub fn assert_count(&self, needle: &str, n: usize) -> &Self {
        let found = self.count_lines(needle);
        if found != n {
            self.fail(&format!(
                "expected {n} lines containing {needle:?}, found {found}"
            ));
        }
        self
    }

    /// Asserts that `needles` appear in the serial log in this order.
    #[track_caller]
    pub fn assert_in_order(&self, needles: &[&str]) -> &Self {
        let mut rest = self.log.as_str();
        for needle in needles {
            match rest.find(needle) {
                Some(i) => rest = &rest[i + needle.len()..],
                None => self.fail(&format!(
                    "expected {needles:?} in this order; {needle:?} is missing or out of order"
                )),
            }
        }
        self
    }

    /// Asserts that the run ended with `status`.
    #[track_caller]
    pub fn assert_status(&self, status: Status) -> &Self {
        if self.status != status {
            self.fail(&format!("expected the run to end with {status}"));
        }
        self
    }

    /// Asserts that the hypervisor stopped normally (debug exit [`EXIT_NORMAL`]).
    #[track_caller]
    pub fn assert_normal_stop(&self) -> &Self {
        self.assert_status(Status::DebugExit(EXIT_NORMAL))
    }

    /// Asserts that the hypervisor reported a crash (debug exit [`EXIT_CRASH`]).
    #[track_caller]
    pub fn assert_crash_stop(&self) -> &Self {
        self.assert_status(Status::DebugExit(EXIT_CRASH))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What QEMU boots.
#[derive(Clone, Debug)]
enum Boot {
    /// `-kernel`; `None` means [`image()`].
    Kernel(Option<PathBuf>),
    /// `-cdrom` with `-boot d`.
    Cdrom(PathBuf),
}

/// A QEMU run under construction. See the [crate docs](crate) for an example.
///
/// Always passes `-accel tcg` (see `default_accel`), `-display none -no-reboot -serial stdio -monitor none` and the
/// isa-debug-exit device at port 0xf4, so the serial console is the only thing on stdout.
#[derive(Clone, Debug)]
#[must_use = "a Qemu builder does nothing until .run()"]
pub struct Qemu {
    name: String,
    boot: Boot,
    append: Option<String>,
    modules: Vec<(PathBuf, String)>,
    smp: u32,
    memory_mb: u32,
    cpu: String,
    machine: String,
    accel: String,
    timeout: Duration,
    extra: Vec<OsString>,
    stop_on: Option<String>,
    /// Bytes typed on the serial port once the log shows a marker, in order.
    inputs: Vec<(String, Vec<u8>)>,
}

/// `-accel` of every run: single-threaded TCG (`tcg,thread=single`, the virtual CPUs
/// taking turns on one host thread), unless the environment says
/// `RXEN_TEST_TCG=multi` (plain `tcg`: QEMU's multi-threaded TCG for more than one
/// CPU). Under multi-threaded TCG a rare failure that looks like the emulator's
/// (README, Limits) ends about one two-CPU run in a few hundred, and one full suite
/// run in five.
fn default_accel() -> String {
    match std::env::var("RXEN_TEST_TCG").as_deref() {
        Ok("multi") => "tcg".into(),
        _ => "tcg,thread=single".into(),
    }
}

impl Qemu {
    /// A run for the test `name` (names the log file): boots [`image()`] on `-cpu max`,
    /// `-machine q35`, 1 CPU, 512 MiB, with a 60 s time-out.
    pub fn new(name: &str) -> Qemu {
        Qemu {
            name: name.to_string(),
            boot: Boot::Kernel(None),
            append: None,
            modules: Vec::new(),
            smp: 1,
            memory_mb: 512,
            cpu: "max".into(),
            machine: "q35".into(),
            accel: default_accel(),
            timeout: Duration::from_secs(60),
            extra: Vec::new(),
            stop_on: None,
            inputs: Vec::new(),
        }
    }

    /// Runs the virtual CPUs on one host thread (`-accel tcg,thread=single`), even
    /// where `RXEN_TEST_TCG=multi` asks otherwise: QEMU's multi-threaded TCG (seen
    /// with 7.2 and 10.0) crashes (SIGSEGV) when a guest moves a PCI BAR (Linux sizing
    /// BARs) while another virtual CPU runs.
    pub fn single_threaded_tcg(mut self) -> Qemu {
        self.accel = "tcg,thread=single".into();
        self
    }

    /// Boots `path` with `-kernel` instead of the rxen image.
    pub fn kernel(mut self, path: impl Into<PathBuf>) -> Qemu {
        self.boot = Boot::Kernel(Some(path.into()));
        self
    }

    /// Boots the ISO image `path` (`-cdrom`, `-boot d`) instead of a `-kernel`.
    pub fn cdrom(mut self, path: impl Into<PathBuf>) -> Qemu {
        self.boot = Boot::Cdrom(path.into());
        self
    }

    /// Appends `args` to the kernel command line (`-append`), space-separated.
    pub fn append(mut self, args: &str) -> Qemu {
        self.append = Some(match self.append.take() {
            Some(old) if !old.is_empty() => format!("{old} {args}"),
            _ => args.to_string(),
        });
        self
    }

    /// Adds a multiboot module with command line `args` (all modules go into one
    /// `-initrd "path1 args1,path2 args2"`; commas in `args` are escaped for QEMU).
    ///
    /// # Panics
    /// If `path` contains a comma or a space (QEMU's `-initrd` cannot express those).
    pub fn module(mut self, path: impl Into<PathBuf>, args: &str) -> Qemu {
        let path = path.into();
        let s = path.to_string_lossy();
        assert!(
            !s.is_empty() && !s.contains([',', ' ']),
            "module path {s:?} must not be empty or contain commas or spaces"
        );
        self.modules.push((path, args.to_string()));
        self
    }

    /// The number of CPUs (`-smp`).
    pub fn smp(mut self, cpus: u32) -> Qemu {
        self.smp = cpus;
        self
    }

    /// Guest memory in MiB (`-m`).
    pub fn memory_mb(mut self, mb: u32) -> Qemu {
        self.memory_mb = mb;
        self
    }

    /// The CPU model (`-cpu`), default `max`.
    pub fn cpu(mut self, cpu: &str) -> Qemu {
        self.cpu = cpu.to_string();
        self
    }

    /// The machine type (`-machine`), default `q35`.
    pub fn machine(mut self, machine: &str) -> Qemu {
        self.machine = machine.to_string();
        self
    }

    /// Kill QEMU after this long (the outcome is then [`Status::TimedOut`]).
    pub fn timeout(mut self, timeout: Duration) -> Qemu {
        self.timeout = timeout;
        self
    }

    /// An extra QEMU argument, passed as is.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Qemu {
        self.extra.push(arg.into());
        self
    }

    /// Stop the run (outcome [`Status::StopMarker`]) as soon as a complete serial line
    /// contains `marker`.
    pub fn stop_on(mut self, marker: &str) -> Qemu {
        self.stop_on = Some(marker.to_string());
        self
    }

    /// Types `bytes` on the serial port (QEMU's standard input) once the log contains
    /// `marker` (after the previous input was typed).
    pub fn type_after(mut self, marker: &str, bytes: &[u8]) -> Qemu {
        self.inputs.push((marker.to_string(), bytes.to_vec()));
        self
    }

    /// The `-initrd` value for the modules, or `None` if there are none.
    pub fn initrd_arg(&self) -> Option<String> {
        if self.modules.is_empty() {
            return None;
        }
        Some(
            self.modules
                .iter()
                .map(|(path, args)| {
                    let path = path.to_string_lossy();
                    if args.is_empty() {
                        path.into_owned()
                    } else {
                        // QEMU splits at ',' and turns ",," back into ','.
                        format!("{path} {}", args.replace(',', ",,"))
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// The QEMU arguments this run uses (without the program name).
    ///
    /// # Panics
    /// If a `-kernel` boot has no image, or a `-cdrom` boot has an append line or modules.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-accel");
        push(&self.accel);
        push("-cpu");
        push(&self.cpu);
        push("-machine");
        push(&self.machine);
        push("-m");
        push(&format!("{}M", self.memory_mb));
        push("-smp");
        push(&self.smp.to_string());
        for s in [
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-monitor",
            "none",
        ] {
            push(s);
        }
        push("-device");
        push("isa-debug-exit,iobase=0xf4,iosize=0x04");
        match &self.boot {
            Boot::Kernel(kernel) => {
                a.push("-kernel".into());
                a.push(kernel.clone().unwrap_or_else(image).into());
                if let Some(append) = &self.append {
                    a.push("-append".into());
                    a.push(append.into());
                }
                if let Some(initrd) = self.initrd_arg() {
                    a.push("-initrd".into());
                    a.push(initrd.into());
                }
            }
            Boot::Cdrom(iso) => {
                assert!(
                    self.append.is_none() && self.modules.is_empty(),
                    "a -cdrom boot takes its command line and modules from the ISO (see grub_iso)"
                );
                a.push("-cdrom".into());
                a.push(iso.into());
                a.push("-boot".into());
                a.push("d".into());
            }
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Runs QEMU until it exits, the time-out expires, or the stop marker appears; always
    /// kills and reaps QEMU; writes the log to `target/rxen/test-logs/<name>.log`.
    ///
    /// # Panics
    /// If QEMU cannot be started (or the image is missing).
    pub fn run(&self) -> Outcome {
        let program = std::env::var_os("RXEN_QEMU").unwrap_or_else(|| QEMU.into());
        self.run_program(&program)
    }

    /// [`Qemu::run`] with an explicit QEMU binary.
    fn run_program(&self, program: &std::ffi::OsStr) -> Outcome {
        let args = self.args();
        let command_line = std::iter::once(program)
            .chain(args.iter().map(OsString::as_os_str))
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("[{}] {command_line}", self.name);

        let start = Instant::now();
        let spawn = || {
            Command::new(program)
                .args(&args)
                .stdin(if self.inputs.is_empty() {
                    Stdio::null()
                } else {
                    Stdio::piped()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        };
        // A program written just now (the harness self-tests' fake QEMUs) can be
        // "busy" for a moment: another test thread's fork may still hold the
        // writer's descriptor until its exec. Tried again for up to a second.
        let mut attempt = spawn();
        for _ in 0..100 {
            match &attempt {
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                    thread::sleep(Duration::from_millis(10));
                    attempt = spawn();
                }
                _ => break,
            }
        }
        let child = attempt.unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): install qemu-system-x86 (`cargo xtask test` does)",
                program.to_string_lossy()
            )
        });
        let mut guard = ChildGuard(child);
        let echo = std::env::var_os("RXEN_TEST_ECHO").is_some_and(|v| v != "0" && !v.is_empty());
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            reader(guard.0.stdout.take(), Arc::clone(&stdout), echo),
            reader(guard.0.stderr.take(), Arc::clone(&stderr), false),
        ];

        let deadline = start + self.timeout;
        let mut checked = 0; // bytes of stdout already searched for the stop marker
        let mut stdin = guard.0.stdin.take();
        let mut inputs = self.inputs.iter();
        let mut next_input = inputs.next();
        let status = loop {
            if let Some((marker, bytes)) = next_input {
                let seen =
                    String::from_utf8_lossy(&stdout.lock().unwrap()).contains(marker.as_str());
                if seen {
                    if let Some(pipe) = stdin.as_mut() {
                        use std::io::Write;
                        // Slowly, as a person types: the UART holds one byte.
                        for &b in bytes {
                            let _ = pipe.write_all(&[b]).and_then(|()| pipe.flush());
                            thread::sleep(Duration::from_millis(30));
                        }
                    }
                    next_input = inputs.next();
                }
            }
            match guard.0.try_wait() {
                Ok(Some(exit)) => break Status::from_exit_code(exit.code()),
                Ok(None) => {}
                Err(e) => panic!("waiting for QEMU failed: {e}"),
            }
            if let Some(marker) = &self.stop_on {
                let buf = stdout.lock().unwrap();
                let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                if complete > checked {
                    // Re-scan from the start of the last incomplete line.
                    let from = buf[..checked]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    let found =
                        String::from_utf8_lossy(&buf[from..complete]).contains(marker.as_str());
                    checked = complete;
                    if found {
                        break Status::StopMarker;
                    }
                }
            }
            if Instant::now() >= deadline {
                break Status::TimedOut;
            }
            thread::sleep(Duration::from_millis(20));
        };
        guard.kill_and_reap();
        for r in readers {
            let _ = r.join();
        }
        let elapsed = start.elapsed();

        let log = decode(&stdout.lock().unwrap());
        let stderr = decode(&stderr.lock().unwrap());
        let log_dir = rxen_dir().join("test-logs");
        let log_path = log_dir.join(format!("{}.log", sanitize(&self.name)));
        let file = format!(
            "# {command_line}\n# status: {status} after {:.1} s\n{log}{}\n---- QEMU stderr ----\n{stderr}",
            elapsed.as_secs_f64(),
            if log.ends_with('\n') || log.is_empty() { "" } else { "\n" },
        );
        if let Err(e) = fs::create_dir_all(&log_dir).and_then(|()| fs::write(&log_path, file)) {
            eprintln!("[{}] cannot write {}: {e}", self.name, log_path.display());
        }
        eprintln!(
            "[{}] {status} after {:.1} s; log in {}",
            self.name,
            elapsed.as_secs_f64(),
            log_path.display()
        );
        Outcome {
            log,
            stderr,
            status,
            name: self.name.clone(),
            log_path,
            elapsed,
        }
    }
}

/// Kills and reaps QEMU when dropped, so that no test leaves a QEMU behind, even when it
/// panics.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill_and_reap(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// A thread that copies `pipe` into `buf` until end of file.
fn reader(
    pipe: Option<impl Read + Send + 'static>,
    buf: Arc<Mutex<Vec<u8>>>,
    echo: bool,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    if echo {
                        let _ = io::stderr().write_all(&chunk[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

/// Lossy UTF-8 with `\r\n` (and stray `\r`) normalised to `\n`.
fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace("\r\n", "\n")
        .replace('\r', "\n")
}

/// Quotes `s` for a POSIX shell if needed (for printing command lines).
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_newc_layout() {
        let mut cpio = Cpio::default();
        cpio.entry("init", 0o100755, 0, b"#!/bin/sh\n");
        let bytes = cpio.finish();
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001"); // inode
        assert_eq!(&bytes[14..22], b"000081ed"); // mode
        assert_eq!(&bytes[54..62], b"0000000a"); // file size
        assert_eq!(&bytes[94..102], b"00000005"); // name size with the NUL
        assert_eq!(&bytes[110..115], b"init\0");
        // Header (110) + name (5) padded to 116, then the data.
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn status_decoding() {
        assert_eq!(
            Status::from_exit_code(Some(33)),
            Status::DebugExit(EXIT_NORMAL)
        );
        assert_eq!(
            Status::from_exit_code(Some(35)),
            Status::DebugExit(EXIT_CRASH)
        );
        assert_eq!(Status::from_exit_code(Some(3)), Status::DebugExit(1));
        assert_eq!(Status::from_exit_code(Some(255)), Status::DebugExit(0x7f));
        assert_eq!(Status::from_exit_code(Some(1)), Status::Exited(1));
        assert_eq!(Status::from_exit_code(Some(0)), Status::Exited(0));
        assert_eq!(Status::from_exit_code(Some(2)), Status::Exited(2));
        assert_eq!(Status::from_exit_code(None), Status::Signaled);
    }

    #[test]
    fn initrd_joining() {
        let q = Qemu::new("t")
            .module("/a/dom0", "dom0-arg1 root=/dev/xvda")
            .module("/a/initrd", "")
            .module("/a/third", "x=1,2");
        assert_eq!(
            q.initrd_arg().unwrap(),
            "/a/dom0 dom0-arg1 root=/dev/xvda,/a/initrd,/a/third x=1,,2"
        );
        assert_eq!(Qemu::new("t").initrd_arg(), None);
    }

    #[test]
    #[should_panic(expected = "must not be empty or contain commas or spaces")]
    fn module_path_with_comma() {
        let _ = Qemu::new("t").module("/a,b", "");
    }

    #[test]
    #[should_panic(expected = "must not be empty or contain commas or spaces")]
    fn module_path_with_space() {
        let _ = Qemu::new("t").module("/a b", "");
    }

    #[test]
    fn command_line() {
        let q = Qemu::new("t")
            .kernel("/k")
            .append("console=com1")
            .append("isa_debug_exit")
            .module("/m", "a")
            .smp(4)
            .memory_mb(256)
            .cpu("EPYC,+svm,+npt")
            .arg("-d")
            .arg("int");
        let args: Vec<String> = q
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with(&format!("-accel {} -cpu EPYC", default_accel())));
        assert!(joined.contains(" -cpu EPYC,+svm,+npt -machine q35 -m 256M -smp 4"));
        assert!(joined.contains("-serial stdio -monitor none"));
        assert!(joined.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(args.windows(2).any(|w| w == ["-kernel", "/k"]));
        assert!(args
            .windows(2)
            .any(|w| w == ["-append", "console=com1 isa_debug_exit"]));
        assert!(args.windows(2).any(|w| w == ["-initrd", "/m a"]));
        assert!(joined.ends_with("-d int"));
        assert_eq!(args.iter().filter(|a| *a == "stdio").count(), 1);
    }

    #[test]
    fn cdrom_command_line() {
        let args: Vec<String> = Qemu::new("t")
            .cdrom("/x.iso")
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-cdrom", "/x.iso"]));
        assert!(!args.iter().any(|a| a == "-kernel"));
    }

    #[test]
    #[should_panic(expected = "a -cdrom boot")]
    fn cdrom_with_modules() {
        let _ = Qemu::new("t").cdrom("/x.iso").module("/m", "").args();
    }

    #[test]
    fn tail_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 3), "");
        let o = Outcome::new("t", "x\ny\nz", Status::TimedOut);
        assert_eq!(o.tail(1), "z");
    }

    #[test]
    fn decode_normalises_newlines() {
        assert_eq!(decode(b"a\r\nb\rc\xffd"), "a\nb\nc\u{fffd}d");
    }

    fn sample() -> Outcome {
        Outcome::new(
            "sample",
            "(XEN) rxen version 0.1\n(XEN) Module 0: 0x1000 - 0x2000 (4096 bytes) cmdline 'a'\n(XEN) Module 1: x\n",
            Status::DebugExit(EXIT_NORMAL),
        )
    }

    #[test]
    fn passing_assertions() {
        sample()
            .assert_contains("rxen version")
            .assert_not_contains("FATAL")
            .assert_count("Module ", 2)
            .assert_in_order(&["rxen version", "Module 0", "Module 1"])
            .assert_line_contains_all(&["Module 0", "cmdline 'a'"])
            .assert_normal_stop();
    }

    #[test]
    fn failure_message_has_reason_status_and_tail() {
        let err = std::panic::catch_unwind(|| {
            sample().assert_contains("Brought up 2 CPUs");
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("test `sample`"), "{msg}");
        assert!(
            msg.contains("does not contain \"Brought up 2 CPUs\""),
            "{msg}"
        );
        assert!(msg.contains("normal stop"), "{msg}");
        assert!(msg.contains("(XEN) Module 1: x"), "{msg}");
    }

    #[test]
    #[should_panic(expected = "expected the run to end with debug exit 0x11 (crash)")]
    fn crash_assertion_fails_on_normal_stop() {
        sample().assert_crash_stop();
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn order_assertion() {
        sample().assert_in_order(&["Module 1", "Module 0"]);
    }

    #[test]
    fn grub_cfg_text() {
        let cfg = grub_cfg(
            "console=com1 isa_debug_exit",
            &[
                ("/t/dom0".into(), "root=/dev/xvda".into()),
                ("/t/initrd".into(), "x".into()),
            ],
        );
        assert!(cfg.starts_with("serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\nset timeout=0\n"));
        assert!(cfg.contains("    multiboot2 /boot/rxen console=com1 isa_debug_exit\n"));
        assert!(cfg.contains(
            "    module2 /boot/dom0 root=/dev/xvda\n    module2 /boot/initrd x\n    boot\n}"
        ));
    }

    #[test]
    fn sanitized_names() {
        assert_eq!(sanitize("boot::smp 2"), "boot__smp_2");
        assert_eq!(sanitize(""), "unnamed");
    }

    /// A fake "QEMU" (a shell script that ignores its arguments), to check capture, exit
    /// decoding, stop markers, time-outs and log files without a hypervisor.
    fn fake_qemu(name: &str, script: &str) -> (Qemu, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = rxen_dir().join("harness-selftest");
        create_dir(&dir);
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        (
            Qemu::new(&format!("harness-selftest-{name}")).kernel("/dev/null"),
            path,
        )
    }

    #[test]
    fn fake_run_debug_exit() {
        let (q, prog) = fake_qemu("exit", "printf '(XEN) hello\\r\\n'; echo oops >&2; exit 33");
        let out = q.run_program(prog.as_os_str());
        out.assert_contains("(XEN) hello\n").assert_normal_stop();
        assert_eq!(out.stderr.trim(), "oops");
        let file = fs::read_to_string(&out.log_path).unwrap();
        assert!(
            file.contains("(XEN) hello") && file.contains("oops"),
            "{file}"
        );
    }

    #[test]
    fn fake_run_timeout_kills() {
        let (q, prog) = fake_qemu("hang", "echo started; exec sleep 30");
        let out = q
            .timeout(Duration::from_millis(500))
            .run_program(prog.as_os_str());
        assert_eq!(out.status, Status::TimedOut);
        assert!(out.elapsed < Duration::from_secs(10));
        out.assert_contains("started");
    }

    #[test]
    fn fake_run_stop_marker() {
        let (q, prog) = fake_qemu(
            "marker",
            "printf 'one\\ntwo: Ready'; sleep 0.3; printf ' now\\n'; exec sleep 30",
        );
        let out = q.stop_on("Ready now").run_program(prog.as_os_str());
        assert_eq!(out.status, Status::StopMarker);
        assert!(out.elapsed < Duration::from_secs(10));
        out.assert_contains("two: Ready now");
    }

    #[test]
    fn fake_run_plain_exit() {
        let (q, prog) = fake_qemu("plain", "exit 1");
        assert_eq!(q.run_program(prog.as_os_str()).status, Status::Exited(1));
    }
}
