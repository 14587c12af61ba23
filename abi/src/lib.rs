//! Rust mirrors of Xen's public guest ABI (`xen/include/public/`, Xen 4.17).
//!
//! This crate is the one source of truth for numbers and layouts shared by the
//! hypervisor, the test guests and the dom0 tools. Layouts are those of an
//! x86_64 guest (PVH/HVM, 64-bit): `unsigned long`, `xen_ulong_t`,
//! `xen_pfn_t` and guest handles are all 8 bytes. Every structure is
//! `#[repr(C)]`, spells out C's implicit padding as explicit fields, derives
//! the `zerocopy` traits so it can be copied from and to guest memory without
//! `unsafe`, and carries size and field-offset tests.
//!
//! Constant names are the C names in upper case without leading underscores
//! (`__HYPERVISOR_xen_version` is [`xen::HYPERVISOR_XEN_VERSION`]); C's
//! bit-number macros (`_GTF_readonly`) get a `_SHIFT` suffix
//! ([`grant_table::GTF_READONLY_SHIFT`]).
#![no_std]
#![forbid(unsafe_code)]

pub mod blkif;
pub mod console;
pub mod cpuid;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod hvm_save;
pub mod hvm_vcpu;
pub mod memory;
pub mod physdev;
pub mod platform;
pub mod ring;
pub mod sched;
pub mod start_info;
pub mod sysctl;
pub mod vcpu;
pub mod version;
pub mod xen;

/// Asserts a type's size and the offsets of the named fields (test helper).
#[cfg(test)]
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr, { $($field:ident : $off:expr),* $(,)? }) => {{
        assert_eq!(core::mem::size_of::<$ty>(), $size, "size of {}", stringify!($ty));
        $(
            assert_eq!(
                core::mem::offset_of!($ty, $field),
                $off,
                "offset of {}.{}",
                stringify!($ty),
                stringify!($field)
            );
        )*
    }};
}
#[cfg(test)]
pub(crate) use assert_layout;
