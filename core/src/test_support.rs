//! The fake platform the core's unit tests run on: [`FakeEnv`], a guest
//! whose linear and physical addresses are the same 64 KiB of memory, with
//! its own shared-info page, console and clock, and optionally a second
//! domain beside it for interdomain calls and optionally grant tables
//! ([`FakeGrants`]); and the helpers that issue
//! hypercalls the way the platform does. Every module's tests (and the
//! property tests in `fuzz_tests`) use this one copy.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use rxen_abi::errno::{self, Errno};
use rxen_abi::xen;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::domain::{DomId, Domain, GuestMemRegion};
use crate::grant_table::{GrantPlatform, GrantTable, GrantTables, Mfn};
use crate::hypercall::{dispatch, Ctx, Next, Outcome};
use crate::mm::{Gfn, Gpa};
use crate::pci::{McfgRegion, PciRegistry};
use crate::platform::{
    Clock, Console, Domains, GuestAccess, GuestCopy, GuestEnv, HostInfo, HostPci, PhysicalCpu,
    Physmap,
};
use crate::shared_page::SharedPage;
use crate::time::TimeScale;

/// A guest whose linear and physical addresses are the same 64 KiB.
pub(crate) struct FakeEnv {
    /// The guest's memory, [`MEM`] bytes.
    pub(crate) mem: Vec<u8>,
    /// What the guest wrote with console_io.
    pub(crate) console: Vec<u8>,
    /// System time (ns).
    pub(crate) now: u64,
    /// Where XENMAPSPACE_shared_info put the shared-info page.
    pub(crate) shared_info_at: Option<u64>,
    /// The shared-info page.
    pub(crate) shared_info: Box<[core::sync::atomic::AtomicU64; crate::shared_page::PAGE_WORDS]>,
    /// Another domain with its own memory, for interdomain calls.
    pub(crate) peer: Option<Box<(Domain, FakeEnv)>>,
    /// Whether `with_domain` answers `ERESTART` (another CPU holds the peer).
    pub(crate) peer_busy: bool,
    /// Console backend kicks seen, and whether the backend takes output.
    pub(crate) console_kicks: u32,
    pub(crate) console_takes: bool,
    /// The machine's grant tables, if it has them.
    pub(crate) grants: Option<Box<FakeGrants>>,
    /// Grant frames mapped into the physical map: (frame index, gfn).
    pub(crate) grant_frames_mapped: Vec<(u32, u64)>,
    /// Whether the physical map refuses grant frames.
    pub(crate) refuse_grant_frames: bool,
    /// Wall-clock time at system time 0 (seconds, nanoseconds).
    pub(crate) wallclock: (u64, u32),
    /// The machine's PCI registry (q35's one MCFG window).
    pub(crate) pci: PciRegistry,
    /// The console history.
    pub(crate) conring: Box<crate::conring::ConRing>,
    /// The debug keys pressed through `XEN_SYSCTL_debug_keys`.
    pub(crate) debug_keys: Vec<u8>,
    /// The scheduler `machine_facts` reports (credit unless a test says).
    pub(crate) sched_id: u32,
    /// Scheduling parameters by domain (what the scheduler knows).
    pub(crate) sched: BTreeMap<DomId, crate::sched::SchedParams>,
    /// vCPU affinities the fake scheduler knows (of its 2 pCPUs).
    pub(crate) affinity: BTreeMap<(DomId, u32), crate::sched::Affinity>,
    /// The domain-id rover, and the configs of the domains created.
    pub(crate) rover: DomId,
    pub(crate) created: Vec<(DomId, crate::platform::DomainConfig)>,
    /// Frames given by populate_physmap, and how many more it may give.
    pub(crate) populated: alloc::collections::BTreeSet<u64>,
    /// Frames given by `allocate_unmapped` (XENMEM_increase_reservation).
    pub(crate) unmapped: u64,
    pub(crate) populate_left: u64,
    /// Foreign pages mapped by gmfn: gfn -> (owner, owner's gfn).
    pub(crate) foreign: BTreeMap<u64, (DomId, u64)>,
    /// Frames another domain maps (decrease_reservation stops there).
    pub(crate) busy: alloc::collections::BTreeSet<u64>,
    /// The "hardware" state of other domains' vCPUs (registers, PAT and
    /// MTRR default type), by domain and vCPU; absent: all zero.
    pub(crate) hvm: BTreeMap<(DomId, u32), (rxen_abi::hvm_save::HvmHwCpu, (u64, u64))>,
    /// Whether a vCPU of the peer is on a CPU.
    pub(crate) peer_on_cpu: bool,
    /// Calls of a [`Domains`] method: the hypercall reached beyond its
    /// domain (see `hypercall::LOCAL_HYPERCALLS`).
    pub(crate) reached: core::cell::Cell<u32>,
}

/// Grant tables and their frames, for [`FakeEnv`]: the caller's table and
/// frames live here; the caller's memory is the fake's.
#[derive(Default)]
pub(crate) struct FakeGrants {
    pub(crate) tables: BTreeMap<DomId, GrantTable>,
    frames:
        BTreeMap<DomId, Vec<Box<[core::sync::atomic::AtomicU64; crate::shared_page::PAGE_WORDS]>>>,
}

impl FakeGrants {
    /// Grant tables for `domids`, at most `max_frames` frames each.
    pub(crate) fn new(domids: &[DomId], max_frames: u32) -> Box<Self> {
        let mut grants = Box::new(Self::default());
        for &id in domids {
            let mut lend = GrantLend {
                mem: &mut Vec::new(),
                frames: &mut grants.frames,
            };
            let table = GrantTable::new(id, max_frames, 1, &mut lend).unwrap();
            grants.tables.insert(id, table);
        }
        grants
    }
}

/// The grant platform a [`FakeEnv`] lends: the caller's memory and every
/// domain's grant frames (no RAM to grant).
struct GrantLend<'a> {
    mem: &'a mut Vec<u8>,
    frames: &'a mut BTreeMap<
        DomId,
        Vec<Box<[core::sync::atomic::AtomicU64; crate::shared_page::PAGE_WORDS]>>,
    >,
}

impl GuestCopy for GrantLend<'_> {
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let range = mem_range(self.mem, addr, buf.len())?;
        buf.copy_from_slice(&self.mem[range]);
        Ok(())
    }
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        let range = mem_range(self.mem, addr, buf.len())?;
        self.mem[range].copy_from_slice(buf);
        Ok(())
    }
}

impl GrantPlatform for GrantLend<'_> {
    fn grant_frame(&self, domid: DomId, index: u32) -> Option<crate::shared_page::SharedPage<'_>> {
        self.frames
            .get(&domid)?
            .get(index as usize)
            .map(|f| crate::shared_page::SharedPage::new(f))
    }
    fn grow_grant_frames(&mut self, domid: DomId, nr: u32) -> Result<(), Errno> {
        let frames = self.frames.entry(domid).or_default();
        while frames.len() < nr as usize {
            frames.push(Box::new(crate::shared_page::zeroed_words()));
        }
        Ok(())
    }
    fn ram_frame(&self, _domid: DomId, _gfn: u64) -> Option<Mfn> {
        None
    }
    fn map_foreign(&mut self, _: DomId, _: u64, _: Mfn, _: bool) -> Result<u64, Errno> {
        Err(errno::EINVAL)
    }
    fn unmap_foreign(&mut self, _: DomId, _: u64, _: u64) -> Result<(), Errno> {
        Err(errno::EINVAL)
    }
    fn copy(&mut self, _: (Mfn, u16), _: (Mfn, u16), _: u16) -> Result<(), Errno> {
        Err(errno::EINVAL)
    }
    fn is_privileged(&self, _domid: DomId) -> bool {
        false
    }
}

fn mem_range(mem: &[u8], addr: u64, len: usize) -> Result<core::ops::Range<usize>, Errno> {
    let start = usize::try_from(addr).map_err(|_| errno::EFAULT)?;
    let end = start.checked_add(len).ok_or(errno::EFAULT)?;
    if end > mem.len() {
        return Err(errno::EFAULT);
    }
    Ok(start..end)
}

/// Bytes of guest memory in a [`FakeEnv`].
pub(crate) const MEM: usize = 64 * 1024;

/// [`FakeEnv::foreign`]'s mark of a grant frame mapped by number.
pub(crate) const GRANT_FRAME_TAG: u64 = 1 << 63;

impl FakeEnv {
    pub(crate) fn new() -> Self {
        Self {
            mem: vec![0; MEM],
            console: Vec::new(),
            now: 1_000_000,
            shared_info_at: None,
            shared_info: Box::new(crate::shared_page::zeroed_words()),
            peer: None,
            peer_busy: false,
            console_kicks: 0,
            console_takes: false,
            grants: None,
            grant_frames_mapped: Vec::new(),
            refuse_grant_frames: false,
            wallclock: (1_700_000_000, 5),
            conring: Box::new(crate::conring::ConRing::new()),
            debug_keys: Vec::new(),
            sched_id: rxen_abi::sysctl::XEN_SCHEDULER_CREDIT,
            sched: BTreeMap::new(),
            affinity: BTreeMap::new(),
            rover: 0,
            created: Vec::new(),
            populated: Default::default(),
            unmapped: 0,
            populate_left: u64::MAX,
            foreign: BTreeMap::new(),
            busy: Default::default(),
            hvm: BTreeMap::new(),
            peer_on_cpu: false,
            reached: core::cell::Cell::new(0),
            pci: PciRegistry::new(&[McfgRegion {
                address: 0xB000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 255,
            }]),
        }
    }

    /// `-ESRCH` unless `domid` is the peer, `-ENOENT` unless it has vCPU
    /// `vcpu`, `-EBUSY` while the peer is on a CPU.
    fn fake_vcpu(&self, domid: DomId, vcpu: u32) -> Result<(), Errno> {
        let (d, _) = self
            .peer
            .as_deref()
            .filter(|p| p.0.id == domid)
            .ok_or(errno::ESRCH)?;
        if vcpu as usize >= d.vcpus.len() {
            return Err(errno::ENOENT);
        }
        if self.peer_on_cpu {
            return Err(errno::EBUSY);
        }
        Ok(())
    }

    fn range(&self, addr: u64, len: usize) -> Result<core::ops::Range<usize>, Errno> {
        mem_range(&self.mem, addr, len)
    }

    /// The shared-info page.
    pub(crate) fn si(&self) -> SharedPage<'_> {
        SharedPage::new(&self.shared_info)
    }

    /// A copy of the shared-info page's bytes.
    pub(crate) fn si_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; 4096];
        assert!(self.si().read(0, &mut bytes));
        bytes
    }

    /// Zeroes the shared-info page.
    pub(crate) fn si_clear(&self) {
        for at in (0..4096).step_by(8) {
            self.si().store(at, 0);
        }
    }

    pub(crate) fn put<T: IntoBytes + Immutable>(&mut self, addr: u64, value: &T) {
        let range = self.range(addr, value.as_bytes().len()).unwrap();
        self.mem[range].copy_from_slice(value.as_bytes());
    }

    pub(crate) fn get<T: FromBytes + IntoBytes + Immutable>(&self, addr: u64) -> T {
        let mut value = T::new_zeroed();
        let range = self.range(addr, value.as_bytes().len()).unwrap();
        value.as_mut_bytes().copy_from_slice(&self.mem[range]);
        value
    }
}

impl GuestCopy for FakeEnv {
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let range = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.mem[range]);
        Ok(())
    }
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        let range = self.range(addr, buf.len())?;
        self.mem[range].copy_from_slice(buf);
        Ok(())
    }
}

impl GuestAccess for FakeEnv {
    fn write_guest_phys(&mut self, gpa: Gpa, buf: &[u8]) -> Result<(), Errno> {
        self.copy_out(gpa.0, buf)
    }
    fn read_guest_phys(&mut self, gpa: Gpa, buf: &mut [u8]) -> Result<(), Errno> {
        self.copy_in(gpa.0, buf)
    }
    fn shared_info(&mut self, f: &mut dyn FnMut(SharedPage<'_>)) {
        f(SharedPage::new(&self.shared_info));
    }
    fn guest_page(&mut self, gfn: Gfn, f: &mut dyn FnMut(SharedPage<'_>)) -> Result<(), Errno> {
        let range = self.range(gfn.gpa().ok_or(errno::EFAULT)?.0, 4096)?;
        let ptr = self.mem[range].as_mut_ptr();
        if !(ptr as usize).is_multiple_of(8) {
            return Err(errno::EFAULT);
        }
        // SAFETY: 4096 bytes of `self.mem`, 8-byte aligned (checked),
        // exclusively borrowed for the call.
        let words = unsafe { &*ptr.cast::<[core::sync::atomic::AtomicU64; 512]>() };
        f(SharedPage::new(words));
        Ok(())
    }
}

impl Clock for FakeEnv {
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn time_snapshot(&self) -> (u64, u64) {
        (self.now * 2, self.now)
    }
    fn time_scale(&self) -> TimeScale {
        TimeScale::from_hz(2_000_000_000)
    }
    fn wallclock_base(&self) -> (u64, u32) {
        self.wallclock
    }
    fn set_wallclock_base(&mut self, sec: u64, nsec: u32) {
        self.wallclock = (sec, nsec);
        if let Some((_, peer)) = self.peer.as_deref_mut() {
            peer.wallclock = (sec, nsec);
        }
    }
}

impl Console for FakeEnv {
    fn with_conring(&mut self, f: &mut dyn FnMut(&mut crate::conring::ConRing)) {
        f(&mut self.conring);
    }
    fn debug_keys(&mut self, keys: &[u8]) -> Result<(), rxen_abi::errno::Errno> {
        self.debug_keys.extend_from_slice(keys);
        Ok(())
    }
    fn console_write(&mut self, _domid: DomId, text: &[u8]) {
        self.console.extend_from_slice(text);
    }
    fn console_read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
    fn console_ring_kick(&mut self, _domid: DomId) -> bool {
        self.console_kicks += 1;
        self.console_takes
    }
}

impl HostInfo for FakeEnv {
    fn hypervisor_cmdline(&self) -> &str {
        "console=com1"
    }
    fn host_memory_map(&self) -> Vec<GuestMemRegion> {
        vec![GuestMemRegion {
            addr: 0,
            size: 1 << 30,
            kind: 1,
        }]
    }
    fn host_max_page(&self) -> u64 {
        1 << 18
    }
    /// Two CPUs, APIC IDs 0 and 2.
    fn physical_cpu(&self, cpu: u32) -> Option<PhysicalCpu> {
        (cpu < 2).then(|| PhysicalCpu {
            apic_id: cpu * 2,
            acpi_id: cpu,
            online: true,
        })
    }
    fn max_present_cpu(&self) -> u32 {
        1
    }
    fn machine_facts(&self) -> crate::platform::MachineFacts {
        crate::platform::MachineFacts {
            nr_cpus: 2,
            cpu_khz: 2_000_000,
            total_pages: 1 << 18,
            free_pages: 1000,
            hw_cap: [1, 2, 3, 4, 5, 6, 7, 8],
            sched_id: self.sched_id,
            gpaddr_bits: 48,
            cpuid_1_eax: 0x00A0_0F11,
            // VME..PCE, OSFXSR, OSXMMEXCPT, OSXSAVE.
            guest_cr4_valid: 0x1FF | (3 << 9) | (1 << 18),
            // SCE, LME, LMA, NXE.
            guest_efer_valid: 1 | (1 << 8) | (1 << 10) | (1 << 11),
        }
    }
}

impl HostPci for FakeEnv {
    fn with_pci(&mut self, f: &mut dyn FnMut(&mut PciRegistry)) {
        f(&mut self.pci);
    }
}

impl Physmap for FakeEnv {
    fn map_shared_info(&mut self, gfn: Gfn) -> Result<(), Errno> {
        self.shared_info_at = Some(gfn.0 * 4096);
        Ok(())
    }
    fn map_grant_frame(&mut self, index: u32, gfn: Gfn) -> Result<(), Errno> {
        if self.refuse_grant_frames {
            return Err(errno::ENOMEM);
        }
        self.grant_frames_mapped.push((index, gfn.0));
        Ok(())
    }
    /// The fake's guest-physical space is the populated frames (its `mem`
    /// is reached by linear address only).
    fn populate(&mut self, gfn: Gfn, pages: u64) -> Result<(), Errno> {
        let end = gfn.0.checked_add(pages).ok_or(errno::EINVAL)?;
        if self.populated.range(gfn.0..end).next().is_some() {
            return Err(errno::EBUSY);
        }
        if self.populate_left < pages {
            return Err(errno::ENOMEM);
        }
        self.populate_left -= pages;
        self.populated.extend(gfn.0..end);
        Ok(())
    }
    /// Unmapped frames come from the same budget as populated ones.
    fn allocate_unmapped(&mut self, pages: u64) -> Result<(), Errno> {
        if self.populate_left < pages {
            return Err(errno::ENOMEM);
        }
        self.populate_left -= pages;
        self.unmapped += pages;
        Ok(())
    }
    fn remove_foreign_gmfn(&mut self, gfn: Gfn) -> Result<(), Errno> {
        match self.foreign.remove(&gfn.0) {
            Some(_) => Ok(()),
            None if self.populated.contains(&gfn.0) => Err(errno::EINVAL),
            None => Err(errno::ENOENT),
        }
    }
}

impl Domains for FakeEnv {
    fn with_domain(
        &mut self,
        domid: DomId,
        f: &mut dyn FnMut(&mut Domain, &mut dyn GuestEnv),
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        if self.peer_busy {
            return Err(errno::ERESTART);
        }
        match self.peer.as_deref_mut() {
            Some((d, env)) if d.id == domid => {
                f(d, env);
                Ok(())
            }
            _ => Err(errno::ESRCH),
        }
    }
    fn with_grants(
        &mut self,
        _caller: DomId,
        f: &mut dyn FnMut(&mut dyn GrantTables, &mut dyn GrantPlatform),
    ) -> bool {
        self.reached.set(self.reached.get() + 1);
        let Some(grants) = self.grants.as_deref_mut() else {
            return false;
        };
        let mut lend = GrantLend {
            mem: &mut self.mem,
            frames: &mut grants.frames,
        };
        f(&mut grants.tables, &mut lend);
        true
    }
    fn other_domains(&self) -> Vec<DomId> {
        self.reached.set(self.reached.get() + 1);
        self.peer.iter().map(|p| p.0.id).collect()
    }
    /// The fake's RAM is its populated frames; those in `busy` are mapped
    /// by another domain.
    fn decrease_reservation(&mut self, target: DomId, gfns: &[u64], order: u32) -> (u64, u64) {
        self.reached.set(self.reached.get() + 1);
        let busy = self.busy.clone();
        let populated = if self.peer.as_ref().is_some_and(|p| p.0.id == target) {
            &mut self.peer.as_deref_mut().unwrap().1.populated
        } else {
            &mut self.populated
        };
        let (mut done, mut freed) = (0, 0);
        for &gfn in gfns {
            for page in gfn..gfn + (1 << order) {
                if busy.contains(&page) || !populated.remove(&page) {
                    return (done, freed);
                }
                freed += 1;
            }
            done += 1;
        }
        (done, freed)
    }
    /// The peer's RAM is its populated frames; its grant frames those the
    /// machine's grant tables gave it. Recorded as (owner, frame): RAM by
    /// gfn, grant frame `n` as `GRANT_FRAME_TAG | n`.
    fn map_foreign(
        &mut self,
        owner: DomId,
        frame: crate::platform::ForeignFrame,
        gfn: Gfn,
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        use crate::platform::ForeignFrame;
        let (_, env) = self
            .peer
            .as_deref()
            .filter(|(d, _)| d.id == owner && !d.destroy_requested)
            .ok_or(errno::ESRCH)?;
        let recorded = match frame {
            ForeignFrame::Ram(owner_gfn) => {
                env.populated.contains(&owner_gfn.0).then_some(owner_gfn.0)
            }
            ForeignFrame::GrantTable(n) => self
                .grants
                .as_ref()
                .and_then(|g| g.frames.get(&owner))
                .is_some_and(|frames| (n as usize) < frames.len())
                .then_some(GRANT_FRAME_TAG | u64::from(n)),
        }
        .ok_or(errno::EINVAL)?;
        if self.foreign.contains_key(&gfn.0) {
            return Err(errno::ENXIO);
        }
        self.foreign.insert(gfn.0, (owner, recorded));
        Ok(())
    }
    /// Domain 0 (the caller in the control tests) and the peer exist; a
    /// created domain becomes the peer if there is none.
    fn create_domain(
        &mut self,
        requested: DomId,
        config: &crate::platform::DomainConfig,
    ) -> Result<DomId, Errno> {
        self.reached.set(self.reached.get() + 1);
        let peer = self.peer.as_ref().map(|p| p.0.id);
        let id = crate::domain::allocate_domid(requested, &mut self.rover, |id| {
            id == 0 || Some(id) == peer
        })?;
        if self.peer.is_none() {
            let d = Domain::created(id, config.max_vcpus, config.max_evtchn_port, self.now);
            self.peer = Some(Box::new((d, FakeEnv::new())));
        }
        self.created.push((id, *config));
        Ok(id)
    }
    fn sched_params(&self, domid: DomId) -> Option<crate::sched::SchedParams> {
        self.reached.set(self.reached.get() + 1);
        self.sched.get(&domid).copied()
    }
    fn vcpu_affinity(&self, domid: DomId, vcpu: u32) -> Result<crate::sched::Affinity, Errno> {
        self.reached.set(self.reached.get() + 1);
        self.affinity
            .get(&(domid, vcpu))
            .copied()
            .ok_or(errno::ESRCH)
    }
    fn set_vcpu_affinity(
        &mut self,
        domid: DomId,
        vcpu: u32,
        hard: Option<crate::sched::CpuMask>,
        soft: Option<crate::sched::CpuMask>,
    ) -> Result<crate::sched::Affinity, Errno> {
        self.reached.set(self.reached.get() + 1);
        let known = self.affinity.get_mut(&(domid, vcpu)).ok_or(errno::ESRCH)?;
        known.set(hard, soft, 2)?;
        Ok(*known)
    }
    fn domain_on_cpu(&self, domid: DomId) -> bool {
        self.reached.set(self.reached.get() + 1);
        self.peer_on_cpu && self.peer.as_ref().is_some_and(|p| p.0.id == domid)
    }
    fn save_hvm_cpu(
        &mut self,
        domid: DomId,
        vcpu: u32,
        cpu: &mut rxen_abi::hvm_save::HvmHwCpu,
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        self.fake_vcpu(domid, vcpu)?;
        *cpu = self
            .hvm
            .get(&(domid, vcpu))
            .map(|s| s.0)
            .unwrap_or_default();
        Ok(())
    }
    fn save_hvm_mtrr(
        &mut self,
        domid: DomId,
        vcpu: u32,
        mtrr: &mut rxen_abi::hvm_save::HvmHwMtrr,
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        self.fake_vcpu(domid, vcpu)?;
        let (pat, def_type) = self
            .hvm
            .get(&(domid, vcpu))
            .map(|s| s.1)
            .unwrap_or_default();
        *mtrr = rxen_abi::hvm_save::HvmHwMtrr {
            msr_pat_cr: pat,
            msr_mtrr_def_type: def_type,
            ..Default::default()
        };
        Ok(())
    }
    fn load_hvm_cpu(
        &mut self,
        domid: DomId,
        vcpu: u32,
        cpu: &rxen_abi::hvm_save::HvmHwCpu,
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        self.fake_vcpu(domid, vcpu)?;
        self.hvm.entry((domid, vcpu)).or_default().0 = *cpu;
        Ok(())
    }
    fn load_hvm_mtrr(
        &mut self,
        domid: DomId,
        vcpu: u32,
        mtrr: &crate::hvm_save::MtrrLoad,
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        self.fake_vcpu(domid, vcpu)?;
        let state = &mut self.hvm.entry((domid, vcpu)).or_default().1;
        if let Some(pat) = mtrr.pat {
            state.0 = pat;
        }
        if let Some(def_type) = mtrr.def_type {
            state.1 = def_type;
        }
        Ok(())
    }
    /// Credit's and RTDS's rules: weight 1..=65535, budget within the period,
    /// periods from 100 µs to 10 s.
    fn set_sched_params(
        &mut self,
        domid: DomId,
        params: crate::sched::SchedParams,
    ) -> Result<(), Errno> {
        self.reached.set(self.reached.get() + 1);
        let known = self.sched.get_mut(&domid).ok_or(errno::ESRCH)?;
        if params.weight == 0
            || params.budget_us > params.period_us
            || !(100..=10_000_000).contains(&params.period_us)
        {
            return Err(errno::EINVAL);
        }
        *known = params;
        Ok(())
    }
}

/// splitmix64: the deterministic generator of the property tests.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Domain 1, unprivileged, 2 vCPUs, its RAM the fake's [`MEM`] bytes.
pub(crate) fn domu() -> Domain {
    let mut d = Domain::new(1, false, 16, 2, 0);
    d.memory_map = vec![GuestMemRegion {
        addr: 0,
        size: MEM as u64,
        kind: 1,
    }];
    d
}

/// Hypercall `nr` from vCPU 0 in kernel mode.
pub(crate) fn call(d: &mut Domain, env: &mut FakeEnv, nr: u64, args: [u64; 5]) -> Outcome {
    dispatch(&mut Ctx::new(d, 0, env), nr, args, 0)
}

/// What the guest sees in RAX for `e`.
pub(crate) fn ret(e: Errno) -> i64 {
    e.to_hypercall_ret()
}

/// Issues hypercall `nr` as the platform does: again with the new
/// arguments for as long as it continues. Returns the final outcome and
/// the arguments of every round after the first.
pub(crate) fn call_to_end(
    d: &mut Domain,
    env: &mut FakeEnv,
    nr: u64,
    mut args: [u64; 5],
) -> (Outcome, Vec<[u64; 5]>) {
    let mut rounds = Vec::new();
    loop {
        let out = call(d, env, nr, args);
        match out.next {
            Next::Continuation { args: next } => {
                assert_eq!(out.ret, nr as i64, "a continuation keeps the number in RAX");
                assert!(rounds.len() < 1 << 20, "the hypercall never ends");
                rounds.push(next);
                args = next;
            }
            _ => return (out, rounds),
        }
    }
}

/// A guest address the fake does not map.
pub(crate) const BAD: u64 = 0xdead_0000_0000;

/// event_channel_op `cmd` with `op` copied to guest address 0x300;
/// returns RAX.
pub(crate) fn evtchn(
    d: &mut Domain,
    env: &mut FakeEnv,
    cmd: u32,
    op: &(impl IntoBytes + Immutable),
) -> i64 {
    let bytes = op.as_bytes();
    env.mem[0x300..0x300 + bytes.len()].copy_from_slice(bytes);
    call(
        d,
        env,
        xen::HYPERVISOR_EVENT_CHANNEL_OP,
        [cmd as u64, 0x300, 0, 0, 0],
    )
    .ret
}

/// Domain 1 calling, with domain 2 (unprivileged) beside it.
pub(crate) fn two_domains() -> (Domain, FakeEnv) {
    let mut env = FakeEnv::new();
    let mut peer = domu();
    peer.id = 2;
    env.peer = Some(Box::new((peer, FakeEnv::new())));
    (domu(), env)
}

/// The domain beside the caller, with its memory.
pub(crate) fn peer(env: &mut FakeEnv) -> &mut (Domain, FakeEnv) {
    env.peer.as_deref_mut().unwrap()
}

/// Tables built in a buffer, as the `acpi` crate maps them: physical
/// address `base` is the buffer's first byte (for the ACPI builders' tests).
#[derive(Clone)]
pub(crate) struct InBuffer {
    pub(crate) base: u64,
    pub(crate) ptr: usize,
    pub(crate) len: usize,
}

impl acpi::AcpiHandler for InBuffer {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> acpi::PhysicalMapping<Self, T> {
        let off = physical_address - self.base as usize;
        assert!(off + size <= self.len, "mapping outside the tables");
        // SAFETY: in the buffer (checked above), which outlives the test's
        // use of the tables.
        unsafe {
            acpi::PhysicalMapping::new(
                physical_address,
                core::ptr::NonNull::new((self.ptr + off) as *mut T).unwrap(),
                size,
                size,
                self.clone(),
            )
        }
    }

    fn unmap_physical_region<T>(_region: &acpi::PhysicalMapping<Self, T>) {}
}
