//! Self-tests of the harness against real QEMU, with no hypervisor: a tiny flat kernel
//! (generated here, with both a multiboot v1 and a multiboot2 header) prints a message on
//! COM1 and then writes to the isa-debug-exit port or halts forever.
//!
//! When these pass and the boot tests fail, the fault is in the hypervisor, not in QEMU,
//! GRUB or the harness.

use std::path::PathBuf;
use std::time::Duration;

use rxen_tests::{grub_iso_with_kernel, write_module, Qemu, Status, EXIT_CRASH, EXIT_NORMAL};

/// Where the tiny kernel is loaded (and linked).
const LOAD: u32 = 0x10_0000;
/// File offset of the multiboot2 header (8-byte aligned, after the 32-byte v1 header).
const MB2_OFFSET: u32 = 32;
/// File offset of the code.
const CODE_OFFSET: u32 = 0x80;

/// A flat 32-bit kernel loaded at 1 MiB that prints `message` on COM1, then writes
/// `exit` to port 0xf4 (QEMU exits) or, with `None`, halts forever.
fn tiny_kernel(name: &str, message: &str, exit: Option<u8>) -> PathBuf {
    build_tiny_kernel(name, message, exit, false)
}

/// [`tiny_kernel`], optionally printing first the command line of multiboot (v1) module 0
/// (so only for QEMU's `-kernel` with at least one module).
fn build_tiny_kernel(name: &str, message: &str, exit: Option<u8>, mod0_cmdline: bool) -> PathBuf {
    let mut image = Vec::new();
    let push = |image: &mut Vec<u8>, v: u32| image.extend_from_slice(&v.to_le_bytes());

    // Multiboot v1 header with the address fields (flag 16): QEMU's -kernel loader.
    let (magic, flags) = (0x1BAD_B002u32, 1u32 << 16);
    for v in [magic, flags, 0u32.wrapping_sub(magic.wrapping_add(flags))] {
        push(&mut image, v);
    }
    // header_addr, load_addr, load_end_addr (0: whole file), bss_end_addr, entry_addr.
    for v in [LOAD, LOAD, 0, 0, LOAD + CODE_OFFSET] {
        push(&mut image, v);
    }
    assert_eq!(image.len() as u32, MB2_OFFSET);

    // Multiboot2 header: address tag, entry address tag, end tag (GRUB's multiboot2).
    let mb2_len = 16 + 24 + 16 + 8;
    let mb2_magic = 0xE852_50D6u32;
    for v in [
        mb2_magic,
        0,
        mb2_len,
        0u32.wrapping_sub(mb2_magic.wrapping_add(mb2_len)),
    ] {
        push(&mut image, v);
    }
    for v in [2, 24, LOAD + MB2_OFFSET, LOAD, 0, 0] {
        push(&mut image, v); // type 2, flags 0, size 24
    }
    for v in [3, 12, LOAD + CODE_OFFSET, 0] {
        push(&mut image, v); // type 3, size 12, padded to 8
    }
    for v in [0, 8] {
        push(&mut image, v);
    }
    assert!(image.len() as u32 <= CODE_OFFSET);
    image.resize(CODE_OFFSET as usize, 0);

    // The code; the message follows it.
    let mut code: Vec<u8> = vec![0x66, 0xBA, 0xF8, 0x03]; // mov dx, 0x3f8
    if mod0_cmdline {
        // mov esi, [ebx + 24] (mods_addr); mov esi, [esi + 8] (module 0's cmdline)
        code.extend_from_slice(&[0x8B, 0x73, 0x18, 0x8B, 0x76, 0x08]);
        // L: lodsb; test al, al; jz done; out dx, al; jmp L
        code.extend_from_slice(&[0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8]);
    }
    code.push(0xBE); // mov esi, imm32 (patched below)
    let msg_fixup = code.len();
    code.extend_from_slice(&[0; 4]);
    // L: lodsb; test al, al; jz done; out dx, al; jmp L
    code.extend_from_slice(&[0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8]);
    if let Some(v) = exit {
        // mov al, v; mov dx, 0xf4; out dx, al
        code.extend_from_slice(&[0xB0, v, 0x66, 0xBA, 0xF4, 0x00, 0xEE]);
    }
    code.extend_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]); // cli; H: hlt; jmp H
    let msg_addr = LOAD + CODE_OFFSET + code.len() as u32;
    code[msg_fixup..msg_fixup + 4].copy_from_slice(&msg_addr.to_le_bytes());
    image.extend_from_slice(&code);
    image.extend_from_slice(message.as_bytes());
    image.push(0);
    write_module(name, &image)
}

#[test]
fn normal_debug_exit_and_modules() {
    let kernel = build_tiny_kernel(
        "tiny-normal",
        "\r\n(XEN) tiny kernel up\r\nDONE\r\n",
        Some(EXIT_NORMAL),
        true,
    );
    let m = write_module("tiny-module", b"module");
    let out = Qemu::new("harness_normal_debug_exit")
        .kernel(&kernel)
        .append("console=com1 isa_debug_exit")
        .module(&m, "a=1,b=2 c")
        .module(&m, "")
        .timeout(Duration::from_secs(60))
        .run();
    // QEMU's -initrd needs ",," for a comma; the harness escapes it.
    out.assert_contains("tiny-module a=1,b=2 c\n")
        .assert_contains("(XEN) tiny kernel up\nDONE\n")
        .assert_count("tiny kernel up", 1)
        .assert_normal_stop();
    assert!(out.log_path.is_file());
}

#[test]
fn crash_debug_exit_on_two_cpus() {
    let kernel = tiny_kernel("tiny-crash", "boom\n", Some(EXIT_CRASH));
    Qemu::new("harness_crash_debug_exit")
        .kernel(&kernel)
        .smp(2)
        .run()
        .assert_contains("boom")
        .assert_crash_stop();
}

#[test]
fn hang_times_out() {
    let kernel = tiny_kernel("tiny-hang", "hanging\n", None);
    let out = Qemu::new("harness_hang_times_out")
        .kernel(&kernel)
        .timeout(Duration::from_secs(5))
        .run();
    assert_eq!(out.status, Status::TimedOut, "{}", out.tail(20));
    out.assert_contains("hanging");
}

#[test]
fn stop_marker_ends_run_early() {
    let kernel = tiny_kernel("tiny-marker", "booting\nREADY marker\n", None);
    let out = Qemu::new("harness_stop_marker")
        .kernel(&kernel)
        .stop_on("READY")
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(out.status, Status::StopMarker, "{}", out.tail(20));
    assert!(out.elapsed < Duration::from_secs(30));
}

#[test]
fn failing_assertion_shows_the_tail() {
    let kernel = tiny_kernel("tiny-tail", "line one\nline two\n", Some(EXIT_NORMAL));
    let out = Qemu::new("harness_failing_assertion").kernel(&kernel).run();
    let err = std::panic::catch_unwind(|| {
        out.assert_contains("never printed");
    })
    .unwrap_err();
    let msg = err.downcast_ref::<String>().expect("a formatted panic");
    assert!(msg.contains("does not contain \"never printed\""), "{msg}");
    assert!(msg.contains("line one\nline two"), "{msg}");
    assert!(msg.contains("normal stop"), "{msg}");
}

#[test]
fn grub_iso_boots_multiboot2() {
    let kernel = tiny_kernel(
        "tiny-grub",
        "(XEN) tiny kernel via GRUB\n",
        Some(EXIT_NORMAL),
    );
    let m = write_module("tiny-grub-module", b"module");
    let iso = grub_iso_with_kernel(
        "harness_grub",
        &kernel,
        "console=com1 isa_debug_exit",
        &[(m, "arg1 arg2".into())],
    );
    Qemu::new("harness_grub_iso")
        .cdrom(&iso)
        .timeout(Duration::from_secs(120))
        .run()
        .assert_contains("tiny kernel via GRUB")
        .assert_normal_stop();
}
