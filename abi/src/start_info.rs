//! `xen/include/public/arch-x86/hvm/start_info.h`: the PVH boot ABI (the
//! `hvm_start_info` block whose address is in `%ebx` at the
//! `XEN_ELFNOTE_PHYS32_ENTRY` entry point), plus the `SIF_*` flags of xen.h
//! that its `flags` field uses.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use crate::xen::{
    SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_MULTIBOOT_MOD, SIF_PM_MASK, SIF_PRIVILEGED,
    SIF_VIRT_P2M_4TOOLS,
};

/// `XEN_HVM_START_MAGIC_VALUE` (start_info.h): "xEn3" with the 0x80 bit of
/// the "E" set.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `XEN_HVM_MEMMAP_TYPE_RAM` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
/// `XEN_HVM_MEMMAP_TYPE_ACPI` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
/// `XEN_HVM_MEMMAP_TYPE_NVS` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
/// `XEN_HVM_MEMMAP_TYPE_UNUSABLE` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
/// `XEN_HVM_MEMMAP_TYPE_DISABLED` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
/// `XEN_HVM_MEMMAP_TYPE_PMEM` (start_info.h).
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// `struct hvm_start_info` (start_info.h), version 1 layout (56 bytes;
/// version 0 ends before `memmap_paddr`, at 32 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of this structure (0 or 1).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Physical address of [`HvmMemmapTableEntry`] array (version >= 1).
    pub memmap_paddr: u64,
    /// Number of memory map entries (0: none given; version >= 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry` (start_info.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// Physical address of the module's command line.
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry` (start_info.h).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmMemmapTableEntry {
    /// Base address of the region.
    pub addr: u64,
    /// Size of the region in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`.
    pub type_: u32,
    /// Must be zero for version 1.
    pub reserved: u32,
}

impl From<crate::memory::E820Entry> for HvmMemmapTableEntry {
    /// The start info's 24-byte entry for one 20-byte packed entry of
    /// `XENMEM_memory_map` (the `XEN_HVM_MEMMAP_TYPE_*` values are the e820
    /// types).
    fn from(e: crate::memory::E820Entry) -> Self {
        Self {
            addr: e.addr,
            size: e.size,
            type_: e.type_,
            reserved: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assert_layout;

    #[test]
    fn magic() {
        assert_eq!(
            XEN_HVM_START_MAGIC_VALUE.to_le_bytes(),
            [0x78, 0xc5, 0x6e, 0x33]
        );
        assert_eq!(
            &(XEN_HVM_START_MAGIC_VALUE & !0x8000).to_le_bytes(),
            b"xEn3"
        );
        assert_eq!(SIF_INITDOMAIN, 2);
        assert_eq!(SIF_VIRT_P2M_4TOOLS, 16);
    }

    #[test]
    fn layouts() {
        // C: four u32 @0/4/8/12, u64 modlist@16, cmdline@24, rsdp@32,
        // memmap_paddr@40, u32 memmap_entries@48, u32 reserved@52; 56.
        assert_layout!(HvmStartInfo, size = 56, {
            magic: 0, version: 4, flags: 8, nr_modules: 12, modlist_paddr: 16,
            cmdline_paddr: 24, rsdp_paddr: 32, memmap_paddr: 40,
            memmap_entries: 48, reserved: 52,
        });
        // C: four u64; 32.
        assert_layout!(HvmModlistEntry, size = 32, {
            paddr: 0, size: 8, cmdline_paddr: 16, reserved: 24,
        });
        // C: u64 addr@0, u64 size@8, u32 type@16, u32 reserved@20; 24.
        assert_layout!(HvmMemmapTableEntry, size = 24, {
            addr: 0, size: 8, type_: 16, reserved: 20,
        });
    }

    #[test]
    fn e820_entry_converts() {
        let e = crate::memory::E820Entry {
            addr: 0x10_0000,
            size: 0x20_0000,
            type_: crate::memory::E820_UNUSABLE,
        };
        assert_eq!(
            HvmMemmapTableEntry::from(e),
            HvmMemmapTableEntry {
                addr: 0x10_0000,
                size: 0x20_0000,
                type_: XEN_HVM_MEMMAP_TYPE_UNUSABLE,
                reserved: 0,
            }
        );
    }
}
