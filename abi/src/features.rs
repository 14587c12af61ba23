//! `xen/include/public/features.h`: the `XENFEAT_*` bit numbers reported by
//! `XENVER_get_features` (bit `n % 32` of submap `n / 32`).

/// `XENFEAT_writable_page_tables` (features.h).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables` (features.h).
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap` (features.h): the guest sees its own
/// physical address space (HVM/PVH).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel` (features.h): kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb` (features.h).
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad` (features.h).
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist` (features.h).
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits` (features.h).
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector` (features.h): HVM callback vector supported.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock` (features.h): pvclock is safe on HVM.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs` (features.h): HVM guests can use pirqs.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0` (features.h): operation as dom0 is supported.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_grant_map_identity` (features.h): grants also mapped at pfn = mfn.
/// Deprecated: 4.17's header has this define inside a comment; the number
/// stays reserved.
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported` (features.h).
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported` (features.h; Arm only).
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted` (features.h).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped` (features.h).
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped` (features.h).
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_NR_SUBMAPS` (features.h): number of 32-bit feature submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(XENFEAT_AUTO_TRANSLATED_PHYSMAP, 2);
        assert_eq!(XENFEAT_HVM_CALLBACK_VECTOR, 8);
        assert_eq!(XENFEAT_DIRECT_MAPPED, 17);
        assert_eq!(XENFEAT_NR_SUBMAPS, 1);
        // Every feature fits in the submaps.
        const { assert!(XENFEAT_DIRECT_MAPPED < 32 * XENFEAT_NR_SUBMAPS) };
    }
}
