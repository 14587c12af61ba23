//! Rust mirrors of Xen's public guest ABI (`xen/include/public/`, Xen 4.17).
//!
//! This crate is the one source of truth for numbers and layouts shared by the
//! hypervisor, the test guests and the dom0 tools. It grows with each feature;
//! every structure added here carries size and field-offset tests.
#![no_std]

pub mod errno;
pub mod version;
