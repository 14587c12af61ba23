//! `xen/include/public/elfnote.h`: the `XEN_ELFNOTE_*` note types a guest
//! kernel carries in notes named "Xen" (e.g. the PVH entry point).

/// `XEN_ELFNOTE_INFO` (elfnote.h): NAME=VALUE pair (always ignored).
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// `XEN_ELFNOTE_ENTRY` (elfnote.h): virtual entry point (numeric).
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// `XEN_ELFNOTE_HYPERCALL_PAGE` (elfnote.h): virtual address of the hypercall page.
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// `XEN_ELFNOTE_VIRT_BASE` (elfnote.h): virtual address the image is mapped at.
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// `XEN_ELFNOTE_PADDR_OFFSET` (elfnote.h): offset of ELF paddrs from VIRT_BASE.
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// `XEN_ELFNOTE_XEN_VERSION` (elfnote.h): Xen version expected (string).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// `XEN_ELFNOTE_GUEST_OS` (elfnote.h): guest OS name (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// `XEN_ELFNOTE_GUEST_VERSION` (elfnote.h): guest OS version (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// `XEN_ELFNOTE_LOADER` (elfnote.h): loader type, e.g. "generic" (string).
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// `XEN_ELFNOTE_PAE_MODE` (elfnote.h): PAE mode (string).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// `XEN_ELFNOTE_FEATURES` (elfnote.h): required/optional features (string).
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// `XEN_ELFNOTE_BSD_SYMTAB` (elfnote.h): load the BSD symbol table (string).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// `XEN_ELFNOTE_HV_START_LOW` (elfnote.h): lowest hypervisor hole address (PAE).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// `XEN_ELFNOTE_L1_MFN_VALID` (elfnote.h): mask/value pairs for valid L1 MFNs.
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// `XEN_ELFNOTE_SUSPEND_CANCEL` (elfnote.h): suspend cancellation supported.
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// `XEN_ELFNOTE_INIT_P2M` (elfnote.h): virtual address of the initial P2M.
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// `XEN_ELFNOTE_MOD_START_PFN` (elfnote.h): kernel accepts a PFN `mod_start`.
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// `XEN_ELFNOTE_SUPPORTED_FEATURES` (elfnote.h): bitmap of `XENFEAT_*`.
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// `XEN_ELFNOTE_PHYS32_ENTRY` (elfnote.h): 32-bit physical PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `XEN_ELFNOTE_MAX` (elfnote.h): highest guest note type.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_ENTRY;
/// `XEN_ELFNOTE_CRASH_INFO` (elfnote.h): crash dump note.
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
/// `XEN_ELFNOTE_CRASH_REGS` (elfnote.h): crash dump registers note.
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// `XEN_ELFNOTE_DUMPCORE_NONE` (elfnote.h): xen dump-core none note.
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
/// `XEN_ELFNOTE_DUMPCORE_HEADER` (elfnote.h): xen dump-core header note.
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
/// `XEN_ELFNOTE_DUMPCORE_XEN_VERSION` (elfnote.h): xen dump-core version note.
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
/// `XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION` (elfnote.h): dump-core format version.
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(XEN_ELFNOTE_ENTRY, 1);
        assert_eq!(XEN_ELFNOTE_HYPERCALL_PAGE, 2);
        assert_eq!(XEN_ELFNOTE_PHYS32_ENTRY, 18);
        assert_eq!(XEN_ELFNOTE_MAX, 18);
        assert_eq!(XEN_ELFNOTE_CRASH_INFO, 0x1000001);
        assert_eq!(XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION, 0x2000003);
    }
}
