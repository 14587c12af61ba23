//! `xen/include/public/version.h` (`__HYPERVISOR_xen_version` sub-ops and
//! their argument types) and the interface version of `xen-compat.h`.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Major version reported by `XENVER_version` (Xen 4.17).
pub const XEN_MAJOR: u32 = 4;
/// Minor version reported by `XENVER_version`.
pub const XEN_MINOR: u32 = 17;
/// `__XEN_LATEST_INTERFACE_VERSION__` (xen-compat.h) of Xen 4.17: 0x00040e00.
/// Xen bumps it only on interface changes; 4.14 through 4.17 share it.
pub const XEN_LATEST_INTERFACE_VERSION: u32 = 0x0004_0e00;

/// The value `XENVER_version` returns: major in the top 16 bits, minor below.
pub const fn xen_version_word() -> u32 {
    (XEN_MAJOR << 16) | XEN_MINOR
}

/// `XENVER_version` (version.h): arg NULL; returns major:minor (16:16).
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion` (version.h): arg is a [`XenExtraversion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_compile_info` (version.h): arg is a [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// `XENVER_capabilities` (version.h): arg is a [`XenCapabilitiesInfo`].
pub const XENVER_CAPABILITIES: u32 = 3;
/// `XENVER_changeset` (version.h): arg is a [`XenChangesetInfo`].
pub const XENVER_CHANGESET: u32 = 4;
/// `XENVER_platform_parameters` (version.h): arg is a [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// `XENVER_get_features` (version.h): arg is a [`XenFeatureInfo`].
pub const XENVER_GET_FEATURES: u32 = 6;
/// `XENVER_pagesize` (version.h): arg NULL; returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
/// `XENVER_guest_handle` (version.h): arg is a [`XenDomainHandle`].
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// `XENVER_commandline` (version.h): arg is a [`XenCommandline`].
pub const XENVER_COMMANDLINE: u32 = 9;
/// `XENVER_build_id` (version.h): arg is a `xen_build_id` (len + buffer).
pub const XENVER_BUILD_ID: u32 = 10;

/// `XEN_EXTRAVERSION_LEN` (version.h).
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `XEN_CAPABILITIES_INFO_LEN` (version.h).
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `XEN_CHANGESET_INFO_LEN` (version.h).
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Size of `xen_commandline_t` (version.h).
pub const XEN_COMMANDLINE_LEN: usize = 1024;

/// Copies `s` into a zeroed byte array, truncating so a NUL always remains.
fn c_string<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = s.len().min(N.saturating_sub(1));
    out[..n].copy_from_slice(&s[..n]);
    out
}

/// `xen_extraversion_t` (version.h): `char[16]`, NUL-terminated.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenExtraversion(pub [u8; XEN_EXTRAVERSION_LEN]);

impl XenExtraversion {
    /// Builds one from a string, truncated to leave a terminating NUL.
    pub fn new(s: &str) -> Self {
        Self(c_string(s.as_bytes()))
    }
}

/// `struct xen_compile_info` (version.h): NUL-terminated build strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenCompileInfo {
    /// Compiler used.
    pub compiler: [u8; 64],
    /// User who built Xen.
    pub compile_by: [u8; 16],
    /// Build host's domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}

impl Default for XenCompileInfo {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// `xen_capabilities_info_t` (version.h): `char[1024]`, e.g. `"hvm-3.0-x86_64 "`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenCapabilitiesInfo(pub [u8; XEN_CAPABILITIES_INFO_LEN]);

impl XenCapabilitiesInfo {
    /// Builds one from a string, truncated to leave a terminating NUL.
    pub fn new(s: &str) -> Self {
        Self(c_string(s.as_bytes()))
    }
}

impl Default for XenCapabilitiesInfo {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// `xen_changeset_info_t` (version.h): `char[64]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenChangesetInfo(pub [u8; XEN_CHANGESET_INFO_LEN]);

impl XenChangesetInfo {
    /// Builds one from a string, truncated to leave a terminating NUL.
    pub fn new(s: &str) -> Self {
        Self(c_string(s.as_bytes()))
    }
}

impl Default for XenChangesetInfo {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// `struct xen_platform_parameters` (version.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenPlatformParameters {
    /// Start of the hypervisor's virtual address hole (`xen_ulong_t`).
    pub virt_start: u64,
}

/// `struct xen_feature_info` (version.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap to return.
    pub submap_idx: u32,
    /// OUT: the 32-bit submap (`XENFEAT_*` bits).
    pub submap: u32,
}

/// `xen_domain_handle_t` (xen.h): the domain's 16-byte UUID.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomainHandle(pub [u8; 16]);

/// `xen_commandline_t` (version.h): `char[1024]`, Xen's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenCommandline(pub [u8; XEN_COMMANDLINE_LEN]);

impl XenCommandline {
    /// Builds one from a string, truncated to leave a terminating NUL.
    pub fn new(s: &str) -> Self {
        Self(c_string(s.as_bytes()))
    }
}

impl Default for XenCommandline {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// Header of `struct xen_build_id` (version.h): `len` followed by `len` bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenBuildIdHeader {
    /// IN: size of the buffer that follows; OUT: bytes of build id written.
    pub len: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn version_word_packs_major_and_minor() {
        assert_eq!(xen_version_word(), 0x0004_0011);
        assert_eq!(XEN_LATEST_INTERFACE_VERSION, 0x0004_0e00);
    }

    #[test]
    fn sub_op_numbers() {
        assert_eq!(XENVER_VERSION, 0);
        assert_eq!(XENVER_GET_FEATURES, 6);
        assert_eq!(XENVER_PAGESIZE, 7);
        assert_eq!(XENVER_BUILD_ID, 10);
    }

    #[test]
    fn layouts() {
        // C: char arrays and a typedef'd uint8_t[16]; no padding.
        assert_layout!(XenExtraversion, size = 16, {});
        // C: compiler[64]@0, compile_by[16]@64, compile_domain[32]@80,
        // compile_date[32]@112; 144.
        assert_layout!(XenCompileInfo, size = 144, {
            compiler: 0, compile_by: 64, compile_domain: 80, compile_date: 112,
        });
        assert_layout!(XenCapabilitiesInfo, size = 1024, {});
        assert_layout!(XenChangesetInfo, size = 64, {});
        // C: xen_ulong_t virt_start; 8.
        assert_layout!(XenPlatformParameters, size = 8, { virt_start: 0 });
        // C: unsigned int submap_idx@0, uint32_t submap@4; 8.
        assert_layout!(XenFeatureInfo, size = 8, { submap_idx: 0, submap: 4 });
        assert_layout!(XenDomainHandle, size = 16, {});
        assert_layout!(XenCommandline, size = 1024, {});
        assert_layout!(XenBuildIdHeader, size = 4, { len: 0 });
    }

    #[test]
    fn strings_are_nul_terminated() {
        let e = XenExtraversion::new(".0-rxen-very-long-suffix");
        assert_eq!(e.0[15], 0);
        assert_eq!(&e.0[..3], b".0-");
        let c = XenCapabilitiesInfo::new("hvm-3.0-x86_64 ");
        assert_eq!(&c.0[..16], b"hvm-3.0-x86_64 \0");
    }
}
