//! What the platform (the hypervisor crate, or a test fake) provides to the
//! core's hypercall and event code, as narrow traits, one per kind of
//! service: guest memory ([`GuestCopy`], [`GuestAccess`]), the clock
//! ([`Clock`]), the console ([`Console`]), facts about the host
//! ([`HostInfo`]), the host's PCI devices ([`HostPci`]), changes to the
//! caller's physical map ([`Physmap`]) and the other domains of the machine
//! ([`Domains`]). [`GuestEnv`] is their
//! sum and nothing more.
//!
//! No method has a default body: a platform that lacks a service says so
//! explicitly in its implementation (and with Xen's errno), it cannot
//! forget one and compile.
//!
//! Memory the guest shares with the hypervisor is never a `&mut [u8]`: it
//! is seen only as [`SharedPage`] views (atomic words) — the shared-info
//! page, a registered `vcpu_info`, FIFO event words and control blocks —
//! because another vCPU writes it while we look.

use alloc::vec::Vec;

use rxen_abi::errno::Errno;
use rxen_abi::hvm_save::{HvmHwCpu, HvmHwMtrr};

use crate::domain::{DomId, Domain, GuestMemRegion};
use crate::grant_table::{GrantPlatform, GrantTables};
use crate::mm::{Gfn, Gpa};
use crate::pci::PciRegistry;
use crate::shared_page::SharedPage;
use crate::time::TimeScale;

/// Copies between the hypervisor and the calling vCPU's linear memory (the
/// guest's own page tables): all that reading and writing hypercall
/// arguments needs.
pub trait GuestCopy {
    /// Copies from guest linear memory (`-EFAULT` if unmapped).
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies to guest linear memory (`-EFAULT` if unmapped or read-only).
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno>;
}

/// The calling domain's memory beyond argument copies: guest-physical
/// copies and the views of pages the guest shares with the hypervisor.
pub trait GuestAccess: GuestCopy {
    /// Writes guest-physical memory (a plain copy: for memory the guest
    /// does not share with the hypervisor at that moment).
    fn write_guest_phys(&mut self, gpa: Gpa, buf: &[u8]) -> Result<(), Errno>;
    /// Reads guest-physical memory.
    fn read_guest_phys(&mut self, gpa: Gpa, buf: &mut [u8]) -> Result<(), Errno>;
    /// Runs `f` once on the domain's shared-info page (mapped into the
    /// guest or not), which the guest's vCPUs may be writing meanwhile.
    fn shared_info(&mut self, f: &mut dyn FnMut(SharedPage<'_>));
    /// Runs `f` once on guest frame `gfn` of the domain's own RAM (a
    /// registered `vcpu_info`, FIFO event words and control blocks), which the guest's vCPUs may be writing
    /// meanwhile: `-EFAULT` if `gfn` is not (or no longer) the domain's
    /// own RAM.
    fn guest_page(&mut self, gfn: Gfn, f: &mut dyn FnMut(SharedPage<'_>)) -> Result<(), Errno>;
}

/// System time and the guest's view of it.
pub trait Clock {
    /// System time in nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// The guest's TSC now and the system time at that instant.
    fn time_snapshot(&self) -> (u64, u64);
    /// The TSC-to-ns scale.
    fn time_scale(&self) -> TimeScale;
    /// Wall-clock time (seconds, nanoseconds) at system time 0.
    fn wallclock_base(&self) -> (u64, u32);
    /// Sets the wall-clock time at system time 0 for the whole machine
    /// (`XENPF_settime`: the control domain keeps the clock).
    fn set_wallclock_base(&mut self, sec: u64, nsec: u32);
}

/// The hypervisor console, as guests reach it.
pub trait Console {
    /// Writes guest console output (the platform prefixes the domain).
    fn console_write(&mut self, domid: DomId, text: &[u8]);
    /// Reads pending console input.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// The guest notified the hypervisor's console backend: take what it
    /// wrote to its PV console ring. Returns whether anything was taken (the
    /// guest is then notified back, as xenconsoled does).
    fn console_ring_kick(&mut self, domid: DomId) -> bool;
    /// Runs `f` on the console history ([`crate::conring::ConRing`]).
    fn with_conring(&mut self, f: &mut dyn FnMut(&mut crate::conring::ConRing));
    /// `XEN_SYSCTL_debug_keys`: presses `keys` as if typed on the hypervisor's
    /// console (their output goes to the console history). Without debug keys:
    /// `-ENOSYS`.
    fn debug_keys(&mut self, keys: &[u8]) -> Result<(), rxen_abi::errno::Errno> {
        let _ = keys;
        Err(rxen_abi::errno::ENOSYS)
    }
}

/// Facts about the host that hypercalls report.
pub trait HostInfo {
    /// The hypervisor command line (XENVER_commandline).
    fn hypervisor_cmdline(&self) -> &str;
    /// The host's memory map (XENMEM_machine_memory_map).
    fn host_memory_map(&self) -> Vec<GuestMemRegion>;
    /// The highest host RAM page + 1.
    fn host_max_page(&self) -> u64;
    /// Physical CPU `cpu` (the hypervisor's CPU number), if present.
    fn physical_cpu(&self, cpu: u32) -> Option<PhysicalCpu>;
    /// The highest physical CPU number present.
    fn max_present_cpu(&self) -> u32;
    /// Machine-wide figures for `XEN_SYSCTL_physinfo` and `sched_id`.
    fn machine_facts(&self) -> MachineFacts;
}

/// Machine-wide figures the control domain asks for (`sysctl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// CPUs online.
    pub nr_cpus: u32,
    /// The TSC's frequency in kHz.
    pub cpu_khz: u32,
    /// Host RAM in pages.
    pub total_pages: u64,
    /// Pages the hypervisor has free.
    pub free_pages: u64,
    /// The CPU's feature words in Xen's featureset order.
    pub hw_cap: [u32; 8],
    /// The scheduler (`XEN_SCHEDULER_*`).
    pub sched_id: u32,
    /// Guest-physical address bits of a domain.
    pub gpaddr_bits: u8,
    /// The host's CPUID leaf 1 EAX (family, model, stepping).
    pub cpuid_1_eax: u32,
    /// CR4 bits a guest may set (its CPUID policy's).
    pub guest_cr4_valid: u64,
    /// EFER bits a guest may set (its CPUID policy's).
    pub guest_efer_valid: u64,
}

/// A physical CPU, as `XENPF_get_cpuinfo` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysicalCpu {
    /// Its local APIC ID.
    pub apic_id: u32,
    /// Its ACPI processor ID.
    pub acpi_id: u32,
    /// Whether it runs (was brought up).
    pub online: bool,
}

/// The host's PCI devices as the control domain reports them
/// (`physdev_op`); one registry for the machine.
pub trait HostPci {
    /// Runs `f` on the machine's [`PciRegistry`].
    fn with_pci(&mut self, f: &mut dyn FnMut(&mut PciRegistry));
}

/// The changes hypercalls make to the calling domain's physical map (its
/// nested page tables).
pub trait Physmap {
    /// Maps the domain's shared-info page at `gfn` in its physical map.
    fn map_shared_info(&mut self, gfn: Gfn) -> Result<(), Errno>;
    /// Maps frame `index` of the domain's grant table (one it has, placed
    /// by [`crate::grant_table::GrantTable::add_to_physmap`]) at `gfn` in
    /// its physical map.
    fn map_grant_frame(&mut self, index: u32, gfn: Gfn) -> Result<(), Errno>;
    /// Gives the domain `pages` zeroed frames of RAM from `gfn`
    /// (`XENMEM_populate_physmap`; the core checked `max_pages`): `-EBUSY`
    /// if a page of the range is mapped, `-ENOMEM`, `-EINVAL` beyond the
    /// guest-physical space, `-EPERM` for a 1:1 dom0. Nothing is left of a
    /// range that failed.
    fn populate(&mut self, gfn: Gfn, pages: u64) -> Result<(), Errno>;
    /// Gives the domain `pages` frames that it cannot reach
    /// (`XENMEM_increase_reservation` of a translated domain, as Xen: they
    /// count in its pages and go back only when it is destroyed; the core
    /// checked `max_pages`): `-ENOMEM`. Nothing is kept of a call that
    /// failed.
    fn allocate_unmapped(&mut self, pages: u64) -> Result<(), Errno>;
    /// Removes the foreign page [`Domains::map_foreign_gmfn`] mapped at
    /// `gfn`, putting back what was there (`XENMEM_remove_from_physmap`):
    /// `-ENOENT` where nothing is mapped, `-EINVAL` for any other page.
    fn remove_foreign_gmfn(&mut self, gfn: Gfn) -> Result<(), Errno>;
}

/// The machine's other domains, as a hypercall of one domain reaches them.
pub trait Domains {
    /// Runs `f` on another domain `domid` (never the caller) with an
    /// environment over that domain's memory; `-ESRCH` if there is none.
    fn with_domain(
        &mut self,
        domid: DomId,
        f: &mut dyn FnMut(&mut Domain, &mut dyn GuestEnv),
    ) -> Result<(), Errno>;
    /// Lends `f` every domain's grant table and the grant platform over
    /// the machine's memory, for a grant operation of `caller` (whose
    /// linear memory the platform copies arguments from). Whatever `f`
    /// changed in other domains' physical maps is flushed from their TLBs
    /// before this returns. Returns false, without calling `f`, where there
    /// are no grant tables.
    fn with_grants(
        &mut self,
        caller: DomId,
        f: &mut dyn FnMut(&mut dyn GrantTables, &mut dyn GrantPlatform),
    ) -> bool;
    /// The ids of the machine's other domains (never the caller's).
    fn other_domains(&self) -> Vec<DomId>;
    /// Takes RAM back from domain `target`, the caller or another
    /// (`XENMEM_decrease_reservation`, checked by the core): the 2^`order`
    /// pages from each frame of `gfns` are unmapped and freed, stopping at
    /// the first page that is not the domain's own RAM, that another
    /// domain reaches (a pinned grant, a foreign map) or that cannot be
    /// removed. Returns the extents done and the pages freed (a partly done
    /// extent counts its pages, not itself, as Xen). Frames are freed only
    /// once no vCPU of the target can reach them through its TLB.
    fn decrease_reservation(&mut self, target: DomId, gfns: &[u64], order: u32) -> (u64, u64);
    /// Maps `frame` of domain `owner` (another domain, not being
    /// destroyed: `-ESRCH`) writable at the caller's `gfn`
    /// (`XENMAPSPACE_gmfn_foreign` and `XENMEM_acquire_resource`, checked
    /// by the core): `-EINVAL` if the owner has no such frame or `gfn` is
    /// beyond the guest-physical space, `-ENXIO` over another foreign page
    /// (as Xen 4.17). The mapping lasts until removed or until the owner is
    /// destroyed.
    fn map_foreign(&mut self, owner: DomId, frame: ForeignFrame, gfn: Gfn) -> Result<(), Errno>;
    /// Creates an empty domain (`XEN_DOMCTL_createdomain`, checked by the
    /// core): id `requested`, or one from Xen's rover when 0
    /// ([`crate::domain::allocate_domid`]); born paused, no memory, no vCPU.
    fn create_domain(&mut self, requested: DomId, config: &DomainConfig) -> Result<DomId, Errno>;
    /// Whether a vCPU of domain `domid` (never the caller) is on a CPU now
    /// (false if there is no such domain).
    fn domain_on_cpu(&self, domid: DomId) -> bool;
    /// The registers of vCPU `vcpu` of domain `domid` (never the caller),
    /// which is not on a CPU, as Xen's `hvm_save_cpu_ctxt` gives them;
    /// `-ESRCH` if there is no such domain, `-ENOENT` no such vCPU,
    /// `-EBUSY` while it is on a CPU.
    fn save_hvm_cpu(&mut self, domid: DomId, vcpu: u32, cpu: &mut HvmHwCpu) -> Result<(), Errno>;
    /// The PAT and MTRRs of that vCPU, as Xen's `hvm_save_mtrr_msr` gives
    /// them (errnos as [`Domains::save_hvm_cpu`]).
    fn save_hvm_mtrr(&mut self, domid: DomId, vcpu: u32, mtrr: &mut HvmHwMtrr)
        -> Result<(), Errno>;
    /// Loads a CPU record the core checked ([`crate::hvm_save::check_cpu`])
    /// into vCPU `vcpu` of domain `domid` (never the caller), which is not on
    /// a CPU (errnos as [`Domains::save_hvm_cpu`]). The core marks the vCPU
    /// up.
    fn load_hvm_cpu(&mut self, domid: DomId, vcpu: u32, cpu: &HvmHwCpu) -> Result<(), Errno>;
    /// Loads what rxen keeps of an MTRR record into that vCPU (errnos as
    /// [`Domains::save_hvm_cpu`]).
    fn load_hvm_mtrr(
        &mut self,
        domid: DomId,
        vcpu: u32,
        mtrr: &crate::hvm_save::MtrrLoad,
    ) -> Result<(), Errno>;
    /// Domain `domid`'s scheduling parameters, if the scheduler knows it.
    fn sched_params(&self, domid: DomId) -> Option<crate::sched::SchedParams>;
    /// The hard and soft affinity of vCPU `vcpu` of domain `domid`
    /// (`-ESRCH` if the scheduler does not know that vCPU).
    fn vcpu_affinity(&self, domid: DomId, vcpu: u32) -> Result<crate::sched::Affinity, Errno>;
    /// Sets the hard and/or soft affinity of that vCPU
    /// ([`crate::sched::Scheduler::set_affinity`]'s rules and errnos); the
    /// affinity now in force.
    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu: u32,
        hard: Option<crate::sched::CpuMask>,
        soft: Option<crate::sched::CpuMask>,
    ) -> Result<crate::sched::Affinity, Errno>;
    /// Changes domain `domid`'s scheduling parameters (`-EINVAL` for values
    /// the scheduler refuses, `-ESRCH` for a domain it does not know).
    fn set_sched_params(
        &mut self,
        domid: DomId,
        params: crate::sched::SchedParams,
    ) -> Result<(), Errno>;
}

/// A frame of another domain the control domain maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignFrame {
    /// The owner's RAM at this guest frame.
    Ram(Gfn),
    /// Frame `n` of the owner's grant table (shared entries).
    GrantTable(u32),
}

/// What the control domain asks of a domain it creates (the checked
/// `xen_domctl_createdomain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// vCPUs it may have.
    pub max_vcpus: u32,
    /// Its highest event-channel port.
    pub max_evtchn_port: u32,
    /// Grant-table frames (`None`: the machine's default).
    pub max_grant_frames: Option<u32>,
    /// Maptrack frames (`None`: the machine's default).
    pub max_maptrack_frames: Option<u32>,
    /// Its 16-byte handle.
    pub handle: [u8; 16],
}

/// Runs `f` on domain `id` with an environment over its memory, whichever
/// it is: the calling `domain` itself (with its own `env`) or another
/// domain the registry ([`Domains::with_domain`]) lends beside it, so that
/// an operation on "the target domain" has one path for both. `-ESRCH` if
/// there is no such domain.
pub fn lend_domain<R>(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    id: DomId,
    f: impl FnOnce(&mut Domain, &mut dyn GuestEnv) -> R,
) -> Result<R, Errno> {
    if id == domain.id {
        return Ok(f(domain, env));
    }
    let mut f = Some(f);
    let mut result = None;
    env.with_domain(id, &mut |other, other_env| {
        if let Some(f) = f.take() {
            result = Some(f(other, other_env));
        }
    })?;
    result.ok_or(rxen_abi::errno::ESRCH)
}

/// Everything the platform provides for one calling vCPU: the sum of the
/// narrow traits, with no method of its own. Implemented for every type
/// that implements them all.
pub trait GuestEnv: GuestAccess + Clock + Console + HostInfo + HostPci + Physmap + Domains {}

impl<T: GuestAccess + Clock + Console + HostInfo + HostPci + Physmap + Domains + ?Sized> GuestEnv
    for T
{
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{peer, two_domains};
    use rxen_abi::errno;

    #[test]
    fn lend_domain_lends_the_caller_or_another_domain() {
        let (mut d, mut env) = two_domains();
        assert_eq!(lend_domain(&mut d, &mut env, 1, |d, _| d.id), Ok(1));
        assert_eq!(lend_domain(&mut d, &mut env, 2, |d, _| d.id), Ok(2));
        assert_eq!(
            lend_domain(&mut d, &mut env, 3, |d, _| d.id),
            Err(errno::ESRCH)
        );
        // The other domain's environment is its own memory.
        lend_domain(&mut d, &mut env, 2, |_, e| e.copy_out(0x10, &[7]))
            .unwrap()
            .unwrap();
        assert_eq!(peer(&mut env).1.mem[0x10], 7);
        assert_eq!(env.mem[0x10], 0);
    }
}
