//! Reading ACPI tables in the guest's own memory (the `domu_acpi` and `dom0_acpi`
//! guests): bytes at a guest-physical address, little-endian fields, the checksum.

/// `len` bytes of memory at guest-physical `addr`.
///
/// The runtime identity-maps the guest's low 4 GiB; the caller reads only what
/// the tables it follows point at (bare metal only: on the host this is never called).
pub fn bytes(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: the domain's memory below 4 GiB is identity-mapped by the runtime and
    // the tables it reads are not written while it looks at them; the callers bound
    // `addr` and `len` by the tables' own lengths (checked for sense first).
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// The little-endian 32-bit field at `at` of `b`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The little-endian 64-bit field at `at` of `b`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

/// The byte sum of `b` (0 for a table whose checksum is right).
pub fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian_and_the_sum_wraps() {
        let b = [0x78, 0x56, 0x34, 0x12, 0xEF, 0xCD, 0xAB, 0x89];
        assert_eq!(u32_at(&b, 0), 0x1234_5678);
        assert_eq!(u64_at(&b, 0), 0x89AB_CDEF_1234_5678);
        assert_eq!(sum(&[0xFF, 0x02]), 1);
        assert_eq!(sum(&[]), 0);
    }
}
