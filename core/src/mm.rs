//! Typed frame numbers and addresses, as Xen's typesafe `gfn_t` and `mfn_t`
//! (`xen/include/xen/mm-frame.h`, `typesafe.h`): a guest frame, a guest-physical
//! address, a machine (host) frame and a host-physical address are four
//! types, so one is never passed where another is meant. Conversions that
//! can overflow on a guest's value are checked.
// Guest or firmware input is parsed here: no unchecked arithmetic, no
// indexing that can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use core::fmt;

/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// A guest frame number (Xen's `gfn_t`): a page of a domain's
    /// guest-physical address space.
    Gfn
);
address_type!(
    /// A guest-physical address (what the guest's page tables and the
    /// nested page table's input are made of).
    Gpa
);
address_type!(
    /// A machine frame number (Xen's `mfn_t`): a host page.
    Mfn
);
address_type!(
    /// A host-physical address (Xen's `paddr_t` of a machine address).
    Hpa
);

impl Gfn {
    /// The frame's first byte, if that is an address (`None` when a
    /// guest's frame number overflows one).
    pub fn gpa(self) -> Option<Gpa> {
        self.0.checked_mul(PAGE_SIZE).map(Gpa)
    }
}

impl Gpa {
    /// The frame this address is in.
    pub fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }

    /// The offset of this address in its page.
    pub fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }

    /// The address `bytes` further on, if there is one.
    pub fn checked_add(self, bytes: u64) -> Option<Gpa> {
        self.0.checked_add(bytes).map(Gpa)
    }
}

impl Mfn {
    /// The frame's first byte, if that is an address.
    pub fn hpa(self) -> Option<Hpa> {
        self.0.checked_mul(PAGE_SIZE).map(Hpa)
    }
}

impl Hpa {
    /// The frame this address is in.
    pub fn mfn(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }

    /// The address `bytes` further on, if there is one.
    pub fn checked_add(self, bytes: u64) -> Option<Hpa> {
        self.0.checked_add(bytes).map(Hpa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_addresses_convert_both_ways() {
        assert_eq!(Gfn(0x12).gpa(), Some(Gpa(0x12000)));
        assert_eq!(Gpa(0x12345).gfn(), Gfn(0x12));
        assert_eq!(Gpa(0x12345).page_offset(), 0x345);
        assert_eq!(Mfn(7).hpa(), Some(Hpa(0x7000)));
        assert_eq!(Hpa(0x7fff).mfn(), Mfn(7));
    }

    #[test]
    fn a_guest_frame_number_too_large_for_an_address_is_none() {
        assert_eq!(Gfn(u64::MAX).gpa(), None);
        assert_eq!(Gfn(1 << 52).gpa(), None);
        assert_eq!(Gfn((1 << 52) - 1).gpa(), Some(Gpa(u64::MAX - 0xFFF)));
        assert_eq!(Mfn(u64::MAX >> 11).hpa(), None);
        assert_eq!(Gpa(u64::MAX).checked_add(1), None);
        assert_eq!(Hpa(1).checked_add(1), Some(Hpa(2)));
    }

    #[test]
    fn formats_as_hex() {
        extern crate alloc;
        assert_eq!(alloc::format!("{}", Gfn(0xab)), "0xab");
        assert_eq!(alloc::format!("{:x}", Hpa(0xab)), "ab");
        assert_eq!(alloc::format!("{:#x}", Gpa(0xab)), "0xab");
    }
}
