//! `rxen-guest`: a small `no_std` runtime for PVH test guests of rxen (and of Xen).
//!
//! A test guest is an ELF linked at 1 MiB (`guests/runtime/link.ld`) whose
//! `XEN_ELFNOTE_PHYS32_ENTRY` note points at the runtime's 32-bit entry. The runtime
//! identity-maps the low 4 GiB, enters long mode, loads a GDT (kernel and user segments,
//! TSS) and an IDT (exceptions print vector, RIP and error code and report ERROR),
//! installs Xen's hypercall page, and calls the test's `main`:
//!
//! ```ignore
//! #![no_main]
//! #![cfg_attr(target_os = "none", no_std)]
//! use rxen_guest::{check_eq, entry, StartInfo};
//! entry!(main);
//! fn main(_si: &StartInfo) {
//!     check_eq!(rxen_guest::hypercall::console_write(b"hi\n"), 3);
//! }
//! ```
//!
//! After `main` returns the runtime prints `Test result: SUCCESS` (or `FAILURE` if a
//! [`check!`] failed) and shuts the domain down with `SHUTDOWN_poweroff`; exceptions and
//! panics print `Test result: ERROR` and shut down with `SHUTDOWN_crash`.
//!
//! Everything that touches the machine only runs on bare metal
//! (`target_os = "none"`); the rest builds and is unit-tested on the host.
#![no_std]
#![warn(missing_docs)]

#[cfg(target_os = "none")]
pub mod boot;
/// Host stand-ins for the bare-metal-only parts of [`boot`](self::boot), so that test
/// guests compile on the host; they are never called there.
#[cfg(not(target_os = "none"))]
pub mod boot {
    /// Bare metal only.
    pub fn load_empty_idt() {
        unreachable!("test guests run only on bare metal")
    }
    /// Bare metal only.
    pub fn user_vmmcall(_op: u64, _a1: u64, _a2: u64) -> i64 {
        unreachable!("test guests run only on bare metal")
    }
    /// Bare metal only.
    pub fn user_page_call(_op: u64, _a1: u64, _a2: u64) -> Option<i64> {
        unreachable!("test guests run only on bare metal")
    }
    /// As on bare metal.
    pub const MAX_VCPUS: usize = 4;
    /// The host is "vCPU 0".
    pub fn current_vcpu() -> u32 {
        0
    }
    /// Bare metal only.
    pub fn secondary_context(
        _vcpu: u32,
        _main: fn(u32),
    ) -> Option<rxen_abi::hvm_vcpu::VcpuHvmContext> {
        unreachable!("test guests run only on bare metal")
    }
    /// The parts of the bare-metal trap frame a hook looks at.
    pub struct TrapFrame {
        /// The vector.
        pub vector: u64,
        /// The error code.
        pub error: u64,
        /// Where the guest resumes.
        pub rip: u64,
    }
    /// As on bare metal.
    pub type TrapHook = fn(&mut TrapFrame) -> bool;
    /// Bare metal only.
    pub fn set_trap_hook(_hook: Option<TrapHook>) {
        unreachable!("test guests run only on bare metal")
    }
}
pub mod acpi;
pub mod console;
pub mod control;
pub mod cpu;
pub mod events;
pub mod grant;
pub mod hypercall;
pub mod report;
pub mod smp;
pub mod start_info;
pub mod time;
pub mod xen;
pub mod xenstore;

pub use report::{report, TestResult};
pub use start_info::StartInfo;

/// Re-export of the ABI crate, for guests.
pub use rxen_abi as abi;

/// Xen errno values as hypercall return values (negated), from `rxen_abi::errno`.
pub mod err {
    use rxen_abi::errno;

    /// `-EPERM`.
    pub const EPERM: i64 = errno::EPERM.to_hypercall_ret();
    /// `-ENOENT`.
    pub const ENOENT: i64 = errno::ENOENT.to_hypercall_ret();
    /// `-ESRCH`.
    pub const ESRCH: i64 = errno::ESRCH.to_hypercall_ret();
    /// `-EFAULT`.
    pub const EFAULT: i64 = errno::EFAULT.to_hypercall_ret();
    /// `-ENXIO`.
    pub const ENXIO: i64 = errno::ENXIO.to_hypercall_ret();
    /// `-EBUSY`.
    pub const EBUSY: i64 = errno::EBUSY.to_hypercall_ret();
    /// `-EEXIST`.
    pub const EEXIST: i64 = errno::EEXIST.to_hypercall_ret();
    /// `-EINVAL`.
    pub const EINVAL: i64 = errno::EINVAL.to_hypercall_ret();
    /// `-ENOSPC`.
    pub const ENOSPC: i64 = errno::ENOSPC.to_hypercall_ret();
    /// `-ENOSYS`.
    pub const ENOSYS: i64 = errno::ENOSYS.to_hypercall_ret();
    /// `-EOPNOTSUPP`.
    pub const EOPNOTSUPP: i64 = errno::EOPNOTSUPP.to_hypercall_ret();
    /// `-ETIME`.
    pub const ETIME: i64 = errno::ETIME.to_hypercall_ret();
}

/// Declares the test's entry: `entry!(main)` with `fn main(si: &StartInfo)`.
///
/// The binary must be `#![no_main]` (and `no_std` on bare metal); on the host, where
/// test guests are only compiled, the macro defines an empty C `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The test entry the runtime calls.
        #[cfg(target_os = "none")]
        #[no_mangle]
        pub fn rxen_guest_main(si: &$crate::StartInfo) {
            $main(si)
        }

        /// On the host the guest is only compiled: an empty C `main` (the binary is
        /// `#![no_main]`, so that the test's own `fn main(&StartInfo)` can keep its name).
        #[cfg(not(target_os = "none"))]
        #[export_name = "main"]
        pub extern "C" fn __rxen_guest_host_main(_argc: i32, _argv: *const *const u8) -> i32 {
            let _: fn(&$crate::StartInfo) = $main;
            0
        }
    };
}
