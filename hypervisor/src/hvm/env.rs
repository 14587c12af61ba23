//! The platform side of hypercalls: the core's platform traits
//! ([`rxen_core::platform`], summed up as [`GuestEnv`]) for one vCPU of an
//! [`HvmDomain`](super::HvmDomain), over its memory and paging registers.

use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::hvm_save::{HvmHwCpu, HvmHwMtrr};
use rxen_core::console::GuestConsole;
use rxen_core::domain::{DomId, GuestMemRegion};
use rxen_core::grant_table::{GrantPlatform, GrantTables};
use rxen_core::mm::{Gfn, Gpa};
use rxen_core::platform::{
    Clock, Console, Domains, ForeignFrame, GuestAccess, GuestCopy, GuestEnv, HostInfo, HostPci,
    PhysicalCpu, Physmap,
};
use rxen_core::shared_page::SharedPage;
use rxen_core::time::TimeScale;
use rxen_x86::printk;
use rxen_x86::svm::guest_walk::PagingRegs;

use super::grant::{Caller, Platform};
use super::memory::GuestMemory;

/// Hypercall environment of one vCPU.
pub struct Env<'a> {
    /// The domain's memory.
    pub memory: &'a mut GuestMemory,
    /// The calling vCPU's paging registers.
    pub paging: PagingRegs,
    /// The domain's console output (partial line, budget).
    pub console: &'a mut GuestConsole,
    /// Set when the nested page table changed (TLB flush needed).
    pub npt_changed: bool,
    /// Whether the domain is the control domain.
    pub privileged: bool,
    /// The domain's id.
    pub domid: DomId,
    /// The rest of the machine (for interdomain operations), if the caller
    /// can reach it.
    pub others: Option<super::World<'a>>,
    /// Without `others`: the other domains one at a time, for an event send
    /// served with the machine held shared.
    pub peers: Option<super::Peers<'a>>,
    /// Set when `peers` could not lend a domain (another CPU holds it): the
    /// call answered `ERESTART` before doing anything.
    pub peer_busy: bool,
}

impl GuestCopy for Env<'_> {
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.memory.read_linear(&self.paging, addr, buf)
    }

    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.memory.write_linear(&self.paging, addr, buf)
    }
}

impl GuestAccess for Env<'_> {
    fn write_guest_phys(&mut self, gpa: Gpa, buf: &[u8]) -> Result<(), Errno> {
        self.memory.write_phys(gpa, buf)
    }

    fn read_guest_phys(&mut self, gpa: Gpa, buf: &mut [u8]) -> Result<(), Errno> {
        self.memory.read_phys(gpa, buf)
    }

    fn shared_info(&mut self, f: &mut dyn FnMut(SharedPage<'_>)) {
        f(self.memory.shared_info_page());
    }

    fn guest_page(&mut self, gfn: Gfn, f: &mut dyn FnMut(SharedPage<'_>)) -> Result<(), Errno> {
        // Only the domain's own RAM: not a foreign or grant frame mapped
        // over it since the page was registered.
        f(self.memory.own_page(gfn).ok_or(errno::EFAULT)?);
        Ok(())
    }
}

impl Clock for Env<'_> {
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }

    fn time_snapshot(&self) -> (u64, u64) {
        let tsc = rxen_x86::apic::rdtsc();
        (tsc, crate::time::system_time_at(tsc))
    }

    fn time_scale(&self) -> TimeScale {
        crate::time::scale()
    }

    fn wallclock_base(&self) -> (u64, u32) {
        crate::time::wallclock_base()
    }

    fn set_wallclock_base(&mut self, sec: u64, nsec: u32) {
        crate::time::set_wallclock_base(sec, nsec);
    }
}

impl Console for Env<'_> {
    fn console_write(&mut self, domid: DomId, text: &[u8]) {
        write_console(domid, self.console, text);
    }

    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        crate::console_input::read_dom0(buf)
    }

    fn with_conring(&mut self, f: &mut dyn FnMut(&mut rxen_core::conring::ConRing)) {
        rxen_x86::console::with_conring(f);
    }

    fn debug_keys(&mut self, keys: &[u8]) -> Result<(), rxen_abi::errno::Errno> {
        crate::schedule::press_keys(keys)
    }

    fn console_ring_kick(&mut self, domid: DomId) -> bool {
        let mut bytes = [0u8; rxen_abi::console::XENCONS_OUT_SIZE];
        let Some(page) = self.memory.console_page() else {
            return false;
        };
        let len = rxen_core::console_ring::take_output(page, &mut bytes);
        if len == 0 {
            return false;
        }
        self.console_write(domid, &bytes[..len]);
        true
    }
}

impl Physmap for Env<'_> {
    fn map_shared_info(&mut self, gfn: Gfn) -> Result<(), Errno> {
        if gfn.0 >= self.memory.ram_bytes.max(1 << 32) / 4096 {
            return Err(errno::EINVAL);
        }
        self.memory.map_shared_info(gfn)?;
        self.npt_changed = true;
        Ok(())
    }

    fn map_grant_frame(&mut self, index: u32, gfn: Gfn) -> Result<(), Errno> {
        self.memory.map_grant_frame(index, gfn)?;
        self.npt_changed = true;
        Ok(())
    }

    fn populate(&mut self, gfn: Gfn, pages: u64) -> Result<(), Errno> {
        // Only empty pages are filled: no TLB holds a translation to flush,
        // unless a failure took back pages this call had mapped.
        let result = self.memory.populate(gfn, pages);
        self.npt_changed |= result.is_err();
        result
    }

    fn allocate_unmapped(&mut self, pages: u64) -> Result<(), Errno> {
        self.memory.allocate_unmapped(pages)
    }

    fn remove_foreign_gmfn(&mut self, gfn: Gfn) -> Result<(), Errno> {
        self.memory.unmap_foreign_gmfn(gfn)?;
        self.npt_changed = true;
        Ok(())
    }
}

impl HostInfo for Env<'_> {
    fn hypervisor_cmdline(&self) -> &str {
        crate::start::hypervisor_cmdline()
    }

    fn host_memory_map(&self) -> Vec<GuestMemRegion> {
        crate::memory::host_memory_map()
    }

    fn host_max_page(&self) -> u64 {
        crate::memory::host_max_page()
    }

    fn physical_cpu(&self, cpu: u32) -> Option<PhysicalCpu> {
        let (apic_id, acpi_id, online) = rxen_x86::cpu::present(cpu as usize)?;
        Some(PhysicalCpu {
            apic_id: u32::from(apic_id),
            acpi_id,
            online,
        })
    }

    fn max_present_cpu(&self) -> u32 {
        rxen_x86::cpu::max_present()
    }

    fn machine_facts(&self) -> rxen_core::platform::MachineFacts {
        let total_pages = crate::memory::host_memory_map()
            .iter()
            .filter(|r| r.kind == 1)
            .map(|r| r.size / 4096)
            .sum();
        rxen_core::platform::MachineFacts {
            nr_cpus: rxen_x86::cpu::online_count(),
            cpu_khz: (rxen_x86::apic::tsc_per_ms().min(u64::from(u32::MAX))) as u32,
            total_pages,
            free_pages: crate::memory::free_frame_count(),
            hw_cap: rxen_x86::cpu::featureset(),
            sched_id: crate::schedule::sched_id(),
            // Nested paging with four levels, as Xen's HAP: at most 48 bits.
            gpaddr_bits: rxen_x86::cpu::phys_addr_bits().min(48),
            cpuid_1_eax: raw_cpuid::cpuid!(1, 0).eax,
            guest_cr4_valid: super::ctrlreg::guest_features().cr4_valid_bits(),
            guest_efer_valid: guest_efer_valid(),
        }
    }
}

impl HostPci for Env<'_> {
    fn with_pci(&mut self, f: &mut dyn FnMut(&mut rxen_core::pci::PciRegistry)) {
        crate::pci::with(|registry| f(registry));
    }
}

/// Xen's domain-id rover: the last id handed out by `createdomain`.
static DOMID_ROVER: spin::Mutex<DomId> = spin::Mutex::new(0);

impl Domains for Env<'_> {
    fn with_domain(
        &mut self,
        domid: DomId,
        f: &mut dyn FnMut(&mut rxen_core::domain::Domain, &mut dyn GuestEnv),
    ) -> Result<(), Errno> {
        // No pass unless the domain changed as the scheduler sees it (see
        // the end): most calls send an event to a vCPU already awake, and a
        // vCPU woken on another CPU needs only that CPU's pass.
        let Some(world) = self.others.as_mut() else {
            let peers = self.peers.as_ref().ok_or(errno::ESRCH)?;
            let lent = lend_peer(peers, domid, f);
            self.peer_busy |= lent == Err(errno::ERESTART);
            return lent;
        };
        let domain = world.domains.get_mut(&domid).ok_or(errno::ESRCH)?;
        if domain.dying.is_some() {
            return Err(errno::ESRCH);
        }
        let due = super::exits::next_due(domain);
        let result = with_lent_domain(domid, domain, f);
        if super::exits::next_due(domain) != due {
            // Its CPUs arm their timers again if they must (this one by a pass).
            crate::schedule::kick_timer_owners(domain, None);
        }
        if result.is_err()
            || !crate::schedule::settle_lent(
                &mut *world.sched,
                domid,
                domain,
                crate::time::now_ns(),
            )
        {
            crate::schedule::need_pass_here();
        }
        result
    }

    fn domain_on_cpu(&self, domid: DomId) -> bool {
        self.others
            .as_ref()
            .and_then(|world| world.domains.get(&domid))
            .is_some_and(|d| d.running_on.iter().any(Option::is_some))
    }

    fn save_hvm_cpu(&mut self, domid: DomId, vcpu: u32, cpu: &mut HvmHwCpu) -> Result<(), Errno> {
        self.idle_vcpu(domid, vcpu)?.save_hw_cpu(cpu);
        Ok(())
    }

    fn save_hvm_mtrr(
        &mut self,
        domid: DomId,
        vcpu: u32,
        mtrr: &mut HvmHwMtrr,
    ) -> Result<(), Errno> {
        self.idle_vcpu(domid, vcpu)?.save_mtrr(mtrr);
        Ok(())
    }

    fn load_hvm_cpu(&mut self, domid: DomId, vcpu: u32, cpu: &HvmHwCpu) -> Result<(), Errno> {
        self.idle_vcpu(domid, vcpu)?.load_hw_cpu(cpu);
        printk!(
            "d{domid}v{vcpu}: HVM context loaded by d{}: rip {:#x}, cr0 {:#x}",
            self.domid,
            cpu.rip,
            cpu.cr0
        );
        Ok(())
    }

    fn load_hvm_mtrr(
        &mut self,
        domid: DomId,
        vcpu: u32,
        mtrr: &rxen_core::hvm_save::MtrrLoad,
    ) -> Result<(), Errno> {
        self.idle_vcpu(domid, vcpu)?.load_mtrr(mtrr);
        Ok(())
    }

    fn sched_params(&self, domid: DomId) -> Option<rxen_core::sched::SchedParams> {
        self.others.as_ref()?.sched.params(domid)
    }

    fn set_sched_params(
        &mut self,
        domid: DomId,
        params: rxen_core::sched::SchedParams,
    ) -> Result<(), Errno> {
        let world = reach(&mut self.others).ok_or(errno::ESRCH)?;
        world.sched.set_params(domid, params)
    }

    fn vcpu_affinity(&self, domid: DomId, vcpu: u32) -> Result<rxen_core::sched::Affinity, Errno> {
        let world = self.others.as_ref().ok_or(errno::ESRCH)?;
        world
            .sched
            .affinity(rxen_core::sched::VcpuRef {
                domain: domid,
                vcpu,
            })
            .ok_or(errno::ESRCH)
    }

    /// The scheduler leaves the pCPUs to reschedule in its tickles, which
    /// the pass this exit makes (`reach`) kicks.
    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu: u32,
        hard: Option<rxen_core::sched::CpuMask>,
        soft: Option<rxen_core::sched::CpuMask>,
    ) -> Result<rxen_core::sched::Affinity, Errno> {
        let world = reach(&mut self.others).ok_or(errno::ESRCH)?;
        let r = rxen_core::sched::VcpuRef {
            domain: domid,
            vcpu,
        };
        world.sched.set_affinity(r, hard, soft)?;
        world.sched.affinity(r).ok_or(errno::ESRCH)
    }

    fn create_domain(
        &mut self,
        requested: DomId,
        config: &rxen_core::platform::DomainConfig,
    ) -> Result<DomId, Errno> {
        let caller = self.domid;
        let world = reach(&mut self.others).ok_or(errno::EPERM)?;
        let id = {
            let mut rover = DOMID_ROVER.lock();
            rxen_core::domain::allocate_domid(requested, &mut rover, |id| {
                id == caller || world.domains.contains_key(&id)
            })?
        };
        let domain = super::create_empty(id, config).map_err(|why| {
            printk!("d{id}: cannot create the domain: {why}");
            errno::ENOMEM
        })?;
        world.domains.insert(id, alloc::boxed::Box::new(domain));
        crate::schedule::note_control_change();
        printk!(
            "d{id}: created by d{caller}: paused, no memory, {} vCPU(s) to come",
            config.max_vcpus
        );
        Ok(id)
    }

    fn with_grants(
        &mut self,
        caller: DomId,
        f: &mut dyn FnMut(&mut dyn GrantTables, &mut dyn GrantPlatform),
    ) -> bool {
        let Some(world) = self.others.as_mut() else {
            return false;
        };
        let mut platform = Platform::new(
            Some(Caller {
                id: caller,
                privileged: self.privileged,
                memory: &mut *self.memory,
                paging: self.paging,
            }),
            &mut *world.domains,
        );
        f(&mut *world.grants, &mut platform);
        // Other mappers stop using unmapped frames now; the caller's vCPUs
        // when the exit is done (see `exits::with_env`), before it returns.
        platform.flush_changed();
        self.npt_changed |= platform.caller_npt_changed;
        true
    }

    fn map_foreign(&mut self, owner: DomId, frame: ForeignFrame, gfn: Gfn) -> Result<(), Errno> {
        let world = self.others.as_mut().ok_or(errno::ESRCH)?;
        let domain = world
            .domains
            .get(&owner)
            .filter(|d| d.dying.is_none() && !d.core.destroy_requested)
            .ok_or(errno::ESRCH)?;
        // The owner's RAM and grant frames stay allocated until the owner
        // is torn down, which revokes this mapping first (`schedule`).
        let hpa = match frame {
            ForeignFrame::Ram(owner_gfn) => domain.memory.ram_frame(owner_gfn),
            ForeignFrame::GrantTable(index) => domain.memory.grant_frame_address(index),
        }
        .ok_or(errno::EINVAL)?;
        self.memory.map_foreign_gmfn(gfn, hpa)?;
        self.npt_changed = true;
        Ok(())
    }

    fn decrease_reservation(&mut self, target: DomId, gfns: &[u64], order: u32) -> (u64, u64) {
        let caller = self.domid;
        let Some(world) = self.others.as_mut() else {
            return (0, 0);
        };
        // The frames other domains reach: the target's pinned grants and
        // every page mapped by number (foreign) anywhere.
        let mut busy: Vec<u64> = Vec::new();
        if let Some(table) = world.grants.get(&target) {
            if table.pinned_frames(&mut busy).is_err() {
                return (0, 0);
            }
        }
        let mut complete = true;
        let mut collect = |memory: &GuestMemory| {
            memory.npt.for_each_foreign_gmfn(&mut |_, hpa| {
                if busy.try_reserve(1).is_ok() {
                    busy.push(hpa.0);
                } else {
                    complete = false;
                }
            });
        };
        for (&id, domain) in world.domains.iter() {
            if id != target {
                collect(&domain.memory);
            }
        }
        if target != caller {
            collect(self.memory);
        }
        if !complete {
            return (0, 0);
        }
        busy.sort_unstable();
        let memory = if target == caller {
            &mut *self.memory
        } else {
            match world.domains.get_mut(&target) {
                Some(d) if d.dying.is_none() && !d.core.destroy_requested => &mut d.memory,
                _ => return (0, 0),
            }
        };
        let (mut done, mut freed) = (0, 0);
        'extents: for &gfn in gfns {
            for page in 0..1u64 << order {
                let Some(gfn) = gfn.checked_add(page).map(Gfn) else {
                    break 'extents;
                };
                let Some(hpa) = memory.ram_frame(gfn) else {
                    break 'extents;
                };
                if busy.binary_search(&hpa.0).is_ok() || memory.take_ram(gfn).is_err() {
                    break 'extents;
                }
                freed += 1;
            }
            done += 1;
        }
        if freed > 0 {
            if target == caller {
                // Freed after this exit's flush (`exits::with_env`).
                self.npt_changed = true;
            } else if let Some(d) = world.domains.get_mut(&target) {
                if super::tlb::flush_domain(target, &mut d.vcpus, &d.running_on) {
                    d.memory.free_released();
                }
            }
        }
        (done, freed)
    }

    fn other_domains(&self) -> Vec<DomId> {
        self.others
            .as_ref()
            .map(|world| world.domains.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// [`Domains::with_domain`]'s work on `domain` (id `domid`), lent to `f`.
/// [`Domains::with_domain`] with the machine held shared (an event send,
/// `exits::is_peer_send`): domain `domid` is reached under its exit lock,
/// taken only if it is free (`ERESTART` otherwise, which the caller notes in
/// `Env::peer_busy`: it holds its own domain's lock, and the peer's holder
/// may be a send the other way, so it does not wait). The rest is as with the machine held exclusively:
/// a vCPU the event woke goes to the scheduler and its CPU is kicked; what
/// needs a pass (anything [`crate::schedule::settle_lent`] cannot settle)
/// gets this CPU's, and a quiet domain left other than its record says is
/// stirred so that the pass looks at it.
fn lend_peer(
    peers: &super::Peers<'_>,
    domid: DomId,
    f: &mut dyn FnMut(&mut rxen_core::domain::Domain, &mut dyn GuestEnv),
) -> Result<(), Errno> {
    let shared = peers.domains.lend_shared(&domid).ok_or(errno::ESRCH)?;
    let Some(_held) = shared.lock.try_lock() else {
        return Err(errno::ERESTART);
    };
    // SAFETY: the entry's own boxed domain (`DomainTable::lend_shared`),
    // which stays in the table while the machine is held shared. With the
    // domain's exit lock held, no other CPU reaches it: its local exits and
    // other CPUs' sends take that lock, and everything else that reaches a
    // domain holds the machine exclusively, which waits for this shared hold.
    // A vCPU of it running on another CPU is in its guest (its VMCB and
    // registers are not touched here).
    let domain = unsafe { &mut *shared.ptr.as_ptr() };
    if domain.dying.is_some() {
        return Err(errno::ESRCH);
    }
    let due = super::exits::next_due(domain);
    let result = with_lent_domain(domid, domain, f);
    let moved = super::exits::next_due(domain) != due;
    if moved {
        crate::schedule::kick_timer_owners(domain, None);
    }
    let settled = result.is_ok() && {
        let mut sched = peers.sched.lock();
        crate::schedule::settle_lent(&mut **sched, domid, domain, crate::time::now_ns())
    };
    if !settled {
        crate::schedule::need_pass_here();
    }
    if shared.quiet && (moved || !settled) {
        shared.stir();
    }
    result
}

fn with_lent_domain(
    domid: DomId,
    domain: &mut super::HvmDomain,
    f: &mut dyn FnMut(&mut rxen_core::domain::Domain, &mut dyn GuestEnv),
) -> Result<(), Errno> {
    let super::HvmDomain {
        core,
        memory,
        vcpus,
        console,
        running_on,
        sched_runnable,
        ..
    } = domain;
    let mut env = Env {
        memory,
        paging: super::emulate::vcpu_paging_regs(vcpus, 0),
        console,
        npt_changed: false,
        privileged: core.privileged,
        domid,
        others: None,
        peers: None,
        peer_busy: false,
    };
    f(core, &mut env);
    if env.npt_changed && super::tlb::flush_domain(domid, vcpus, running_on) {
        env.memory.free_released();
    }
    // XEN_DOMCTL_destroydomain and max_vcpus: the next scheduling pass
    // ends the domain, or hands the scheduler the new vCPUs.
    if core.destroy_requested || vcpus.len() < core.vcpus.len() {
        crate::schedule::note_control_change();
    }
    // max_vcpus created vCPUs in the core: their SVM state now.
    while vcpus.len() < core.vcpus.len() {
        let asid = super::asid_of(domid);
        let Some(vcpu) = super::vcpu::SvmVcpu::new_pvh(0, 0, memory.npt.root(), asid) else {
            // Out of memory: the core forgets the vCPUs that got no SVM
            // state, and the caller gets -ENOMEM (it may try again).
            core.vcpus.truncate(vcpus.len());
            return Err(errno::ENOMEM);
        };
        vcpus.push(vcpu);
        running_on.push(None);
        sched_runnable.push(false);
    }
    Ok(())
}

/// The rest of the machine (`others` of an [`Env`]), to change what the
/// scheduler decides on (a domain created, a scheduler parameter set,
/// another domain's vCPU state): this CPU makes a scheduling pass after the
/// exit (no straight return into the guest). What changes only memory (grant
/// operations, foreign mappings, another domain's reservation) needs none;
/// [`Domains::with_domain`] asks for one when the domain changed as the
/// scheduler sees it.
fn reach<'w, 'a>(others: &'w mut Option<super::World<'a>>) -> Option<&'w mut super::World<'a>> {
    let world = others.as_mut()?;
    crate::schedule::need_pass_here();
    Some(world)
}

impl Env<'_> {
    /// The SVM state of vCPU `vcpu` of another live domain `domid`, which no
    /// CPU runs: its VMCB is free to read and write under the machine lock
    /// (and its FPU state is in memory: a CPU keeps a vCPU's FPU registers
    /// only while it runs it). `-ESRCH` no such domain, `-ENOENT` no such
    /// vCPU, `-EBUSY` on a CPU now.
    fn idle_vcpu(&mut self, domid: DomId, vcpu: u32) -> Result<&mut super::vcpu::SvmVcpu, Errno> {
        let world = reach(&mut self.others).ok_or(errno::ESRCH)?;
        let domain = world.domains.get_mut(&domid).ok_or(errno::ESRCH)?;
        if domain.dying.is_some() {
            return Err(errno::ESRCH);
        }
        let v = vcpu as usize;
        match domain.running_on.get(v) {
            None => Err(errno::ENOENT),
            Some(Some(_)) => Err(errno::EBUSY),
            Some(None) => domain.vcpus.get_mut(v).ok_or(errno::ENOENT),
        }
    }
}

/// The EFER bits a guest may set: SCE, LME/LMA, NXE and FFXSE as its
/// CPUID policy has them (SVME never: no nested virtualization).
fn guest_efer_valid() -> u64 {
    use rxen_x86::ctrlreg::efer;
    let f = super::ctrlreg::guest_features();
    [
        (f.syscall, efer::SCE),
        (f.lm, efer::LME | efer::LMA),
        (f.nx, efer::NXE),
        (f.ffxsr, efer::FFXSE),
    ]
    .iter()
    .filter(|(has, _)| *has)
    .fold(0, |bits, (_, bit)| bits | bit)
}

/// Takes console output of domain `domid` (console_io, its PV console
/// ring or port 0xE9): complete lines go to the hypervisor console within
/// the domain's budget.
pub fn write_console(domid: DomId, console: &mut GuestConsole, text: &[u8]) {
    let limited = rxen_x86::console::guest_output_limited();
    console.write(
        text,
        crate::time::now_ns(),
        limited,
        &mut |line, dropped| {
            rxen_x86::console::print_guest_line(domid, line, dropped);
        },
    );
}

/// Prints the domain's partial console line and what it had dropped.
pub fn flush_console(domid: DomId, console: &mut GuestConsole) {
    let limited = rxen_x86::console::guest_output_limited();
    console.flush(crate::time::now_ns(), limited, &mut |line, dropped| {
        rxen_x86::console::print_guest_line(domid, line, dropped);
    });
}
