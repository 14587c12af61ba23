//! The Xen interface version rxen implements (`xen/include/public/xen-compat.h`).

/// Major version reported by `XENVER_version` (Xen 4.17).
pub const XEN_MAJOR: u32 = 4;
/// Minor version reported by `XENVER_version`.
pub const XEN_MINOR: u32 = 17;
/// `__XEN_LATEST_INTERFACE_VERSION__` of Xen 4.17.
pub const XEN_LATEST_INTERFACE_VERSION: u32 = 0x0004_0011;

/// The value `XENVER_version` returns: major in the top 16 bits, minor below.
pub const fn xen_version_word() -> u32 {
    (XEN_MAJOR << 16) | XEN_MINOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_word_packs_major_and_minor() {
        assert_eq!(xen_version_word(), 0x0004_0011);
        assert_eq!(xen_version_word(), XEN_LATEST_INTERFACE_VERSION);
    }
}
