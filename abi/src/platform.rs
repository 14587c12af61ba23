//! `xen/include/public/platform.h`: `__HYPERVISOR_platform_op`, the hardware
//! platform operations of the control domain (wall-clock time, physical CPU
//! information, firmware information...).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XENPF_INTERFACE_VERSION` (platform.h): what `interface_version` must be.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;

/// `XENPF_settime32` (platform.h): arg is a [`XenpfSettime32`].
pub const XENPF_SETTIME32: u32 = 17;
/// `XENPF_add_memtype` (platform.h).
pub const XENPF_ADD_MEMTYPE: u32 = 31;
/// `XENPF_del_memtype` (platform.h).
pub const XENPF_DEL_MEMTYPE: u32 = 32;
/// `XENPF_read_memtype` (platform.h).
pub const XENPF_READ_MEMTYPE: u32 = 33;
/// `XENPF_microcode_update` (platform.h).
pub const XENPF_MICROCODE_UPDATE: u32 = 35;
/// `XENPF_platform_quirk` (platform.h).
pub const XENPF_PLATFORM_QUIRK: u32 = 39;
/// `XENPF_get_cpu_version` (platform.h).
pub const XENPF_GET_CPU_VERSION: u32 = 48;
/// `XENPF_efi_runtime_call` (platform.h).
pub const XENPF_EFI_RUNTIME_CALL: u32 = 49;
/// `XENPF_firmware_info` (platform.h): arg is a [`XenpfFirmwareInfo`].
pub const XENPF_FIRMWARE_INFO: u32 = 50;
/// `XENPF_enter_acpi_sleep` (platform.h).
pub const XENPF_ENTER_ACPI_SLEEP: u32 = 51;
/// `XENPF_get_cpuinfo` (platform.h): arg is a [`XenpfPcpuinfo`].
pub const XENPF_GET_CPUINFO: u32 = 55;
/// `XENPF_settime64` (platform.h): arg is a [`XenpfSettime64`].
pub const XENPF_SETTIME64: u32 = 62;
/// `XENPF_get_symbol` (platform.h).
pub const XENPF_GET_SYMBOL: u32 = 63;
/// `XENPF_get_dom0_console` (platform.h; after 4.17).
pub const XENPF_GET_DOM0_CONSOLE: u32 = 64;

/// `XEN_FW_DISK_INFO` (platform.h): BIOS int 13h disk information.
pub const XEN_FW_DISK_INFO: u32 = 1;
/// `XEN_FW_DISK_MBR_SIGNATURE` (platform.h).
pub const XEN_FW_DISK_MBR_SIGNATURE: u32 = 2;
/// `XEN_FW_VBEDDC_INFO` (platform.h): EDID from int 10h.
pub const XEN_FW_VBEDDC_INFO: u32 = 3;
/// `XEN_FW_EFI_INFO` (platform.h).
pub const XEN_FW_EFI_INFO: u32 = 4;
/// `XEN_FW_KBD_SHIFT_FLAGS` (platform.h): int 16h shift flags.
pub const XEN_FW_KBD_SHIFT_FLAGS: u32 = 5;

/// `XEN_PCPU_FLAGS_ONLINE` (platform.h).
pub const XEN_PCPU_FLAGS_ONLINE: u32 = 1;
/// `XEN_PCPU_FLAGS_INVALID` (platform.h): no such physical CPU.
pub const XEN_PCPU_FLAGS_INVALID: u32 = 2;

/// Bytes of the union `u` of [`XenPlatformOp`] (its `pad[128]`).
pub const XENPF_UNION_SIZE: usize = 128;

/// `struct xen_platform_op` (platform.h), 136 bytes: the command, the
/// interface version and the command's argument (a union, kept as bytes;
/// the typed views below are read from and written to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct XenPlatformOp {
    /// `cmd`: a `XENPF_*`.
    pub cmd: u32,
    /// `interface_version`: [`XENPF_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// `u`: the command's argument.
    pub u: [u8; XENPF_UNION_SIZE],
}

/// `struct xenpf_settime32` (platform.h), 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenpfSettime32 {
    /// Seconds since the epoch at `system_time`.
    pub secs: u32,
    /// Nanoseconds.
    pub nsecs: u32,
    /// The system time the wall-clock time is for.
    pub system_time: u64,
}

/// `struct xenpf_settime64` (platform.h), 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenpfSettime64 {
    /// Seconds since the epoch at `system_time`.
    pub secs: u64,
    /// Nanoseconds.
    pub nsecs: u32,
    /// Must be zero.
    pub mbz: u32,
    /// The system time the wall-clock time is for.
    pub system_time: u64,
}

/// `struct xenpf_pcpuinfo` (platform.h), 20 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenpfPcpuinfo {
    /// IN: the physical CPU (Xen's CPU number).
    pub xen_cpuid: u32,
    /// OUT: the highest CPU number present.
    pub max_present: u32,
    /// OUT: `XEN_PCPU_FLAGS_*`.
    pub flags: u32,
    /// OUT: its local APIC ID.
    pub apic_id: u32,
    /// OUT: its ACPI processor ID.
    pub acpi_id: u32,
}

/// The head of `struct xenpf_firmware_info` (platform.h): what is asked;
/// the answer (a union) follows at offset 8.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenpfFirmwareInfo {
    /// `XEN_FW_*`.
    pub type_: u32,
    /// Which item of that type.
    pub index: u32,
}

/// Offset of `u.firmware_info.u.kbd_shift_flags` in the platform op's union.
pub const XENPF_FIRMWARE_INFO_ANSWER_AT: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn layouts_match_platform_h() {
        assert_layout!(XenPlatformOp, size = 136, { cmd: 0, interface_version: 4, u: 8 });
        assert_eq!(core::mem::align_of::<XenPlatformOp>(), 8);
        assert_layout!(XenpfSettime32, size = 16, { secs: 0, nsecs: 4, system_time: 8 });
        assert_layout!(XenpfSettime64, size = 24, { secs: 0, nsecs: 8, mbz: 12, system_time: 16 });
        assert_layout!(XenpfPcpuinfo, size = 20, {
            xen_cpuid: 0, max_present: 4, flags: 8, apic_id: 12, acpi_id: 16,
        });
        assert_layout!(XenpfFirmwareInfo, size = 8, { type_: 0, index: 4 });
    }
}
