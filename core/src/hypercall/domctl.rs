//! `domctl` (Xen's common/domctl.c): the control domain's operations on one
//! domain. rxen serves, with Xen 4.17's interface version (0x15), structure
//! layouts, errnos and privilege rule (a wrong version is `-EACCES` before
//! anything else; a domain other than the control domain gets `-EPERM`):
//! - `getdomaininfo`: the first domain whose id is at least the one asked
//!   (Xen's quirk, which tools use to walk the list), `-ESRCH` past the last;
//! - `pausedomain` / `unpausedomain`: the controller's pause count (not of
//!   the caller itself: `-EINVAL`; unpausing a domain not paused: `-EINVAL`);
//! - `destroydomain`: the domain is torn down at the hypervisor's next
//!   scheduling pass (its vCPUs stop at once) and never rebuilt;
//! - `max_mem` (KiB, as Xen: lowering it below the current size is allowed)
//!   and `setdomainhandle`;
//! - `getvcpuinfo` and `scheduler_op` (credit's weight and cap, RTDS's
//!   period, budget and extra time; see [`scheduler_op`]);
//! - `setvcpuaffinity` and `getvcpuaffinity`: a vCPU's hard and soft
//!   affinity ([`crate::sched::affinity`]), as Xen's `vcpu_affinity_domctl`
//!   (see [`vcpu_affinity`]);
//! - `createdomain` (checked as Xen's `sanitise_domain_config`, for PVH
//!   guests on nested paging): an empty domain, born paused, with an id from
//!   Xen's rover; `max_vcpus` (the number createdomain gave) creates its
//!   vCPUs, all down;
//! - `gethvmcontext` and `sethvmcontext` (as libxc's `vcpu_hvm` uses them to
//!   start a PVH domain it built): the HEADER, CPU and MTRR records of Xen's
//!   save format ([`crate::hvm_save`]; the records rxen does not model —
//!   LAPIC, IOAPIC, PIT, CPU_XSAVE... — are neither saved nor loaded), not
//!   of the caller itself (`-EINVAL`). Xen pauses the target meanwhile; rxen
//!   instead answers `-EBUSY` while a vCPU of the target is on a CPU (a
//!   domain just created, or paused, never is).
//!
//! The target domain is looked up first (`-ESRCH`), as Xen does, for every
//! command but `createdomain` and `getdomaininfo`. Every other command is
//! `-ENOSYS` (a created domain's memory is filled through `memory_op` and
//! foreign maps, not here).
//! `shared_info_frame` is reported as 0: rxen does not hand host frame
//! numbers to guests.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use alloc::vec::Vec;

use rxen_abi::domctl::*;
use rxen_abi::errno::{self, Errno};

use super::{from_result, read_prefix, write_prefix, Ctx, Outcome};
use crate::domain::{DomId, Domain};
use crate::guest_handle::GuestHandle;
use crate::platform::{lend_domain, DomainConfig, MachineFacts};
use crate::time::RunstateKind;
use zerocopy::IntoBytes;

/// `domctl(op)`.
pub(super) fn do_domctl(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(domctl(ctx, args[0]))
}

fn domctl(ctx: &mut Ctx<'_>, arg: u64) -> Result<i64, Errno> {
    let handle = GuestHandle::<XenDomctl>::new(arg);
    let mut op = handle.read(ctx.env)?;
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return Err(errno::EACCES);
    }
    if !ctx.domain.privileged {
        return Err(errno::EPERM);
    }
    let target = op.domain;
    let caller = ctx.domain.id;
    // Xen looks the target up before the command: every command but
    // createdomain and getdomaininfo needs an existing one.
    if !matches!(op.cmd, XEN_DOMCTL_CREATEDOMAIN | XEN_DOMCTL_GETDOMAININFO) {
        on_domain(ctx, target, |_| Ok(0))?;
    }
    match op.cmd {
        XEN_DOMCTL_CREATEDOMAIN => {
            let config = check_create(&read_prefix::<XenDomctlCreatedomain>(&op.u))?;
            let id = ctx.env.create_domain(target, &config)?;
            op.domain = id;
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_DOMCTL_MAX_VCPUS => {
            let max = read_prefix::<u32>(&op.u);
            if target == caller {
                return Err(errno::EINVAL);
            }
            let now = ctx.env.now_ns();
            on_domain(ctx, target, |d| {
                // As createdomain said (Xen 4.17: this creates them).
                if max != d.max_vcpus {
                    return Err(errno::EINVAL);
                }
                d.create_vcpus(now);
                Ok(0)
            })
        }
        XEN_DOMCTL_GETVCPUINFO => {
            let mut request = read_prefix::<XenDomctlGetvcpuinfo>(&op.u);
            let now = ctx.env.now_ns();
            on_domain(ctx, target, |d| {
                if request.vcpu >= d.max_vcpus {
                    return Err(errno::EINVAL);
                }
                let v = d.vcpus.get(request.vcpu as usize).ok_or(errno::ESRCH)?;
                request.online = v.up.into();
                request.blocked = v.blocked.is_some().into();
                request.running = (v.runstate.state == RunstateKind::Running).into();
                request.cpu_time = v.runstate.times_at(now).first().copied().unwrap_or(0);
                request.cpu = v.processor;
                Ok(0)
            })?;
            write_prefix(&mut op.u, &request);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_DOMCTL_SETVCPUAFFINITY | XEN_DOMCTL_GETVCPUAFFINITY => {
            // As Xen: the bitmaps are written back, not the domctl.
            let request = read_prefix::<XenDomctlVcpuaffinity>(&op.u);
            vcpu_affinity(ctx, target, op.cmd == XEN_DOMCTL_SETVCPUAFFINITY, &request)?;
            Ok(0)
        }
        XEN_DOMCTL_SCHEDULER_OP => {
            let mut request = read_prefix::<XenDomctlSchedulerOp>(&op.u);
            scheduler_op(ctx, target, &mut request)?;
            write_prefix(&mut op.u, &request);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_DOMCTL_GETDOMAININFO => {
            let info = first_info_from(ctx, target)?;
            op.domain = info.domain;
            write_prefix(&mut op.u, &info);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XEN_DOMCTL_PAUSEDOMAIN => {
            if target == caller {
                return Err(errno::EINVAL);
            }
            on_domain(ctx, target, |d| {
                d.controller_pause_count = d
                    .controller_pause_count
                    .checked_add(1)
                    .ok_or(errno::EOVERFLOW)?;
                Ok(0)
            })
        }
        XEN_DOMCTL_UNPAUSEDOMAIN => on_domain(ctx, target, |d| {
            d.controller_pause_count = d
                .controller_pause_count
                .checked_sub(1)
                .ok_or(errno::EINVAL)?;
            Ok(0)
        }),
        XEN_DOMCTL_DESTROYDOMAIN => {
            if target == caller {
                return Err(errno::EINVAL);
            }
            on_domain(ctx, target, |d| {
                d.destroy_requested = true;
                Ok(0)
            })
        }
        XEN_DOMCTL_MAX_MEM => {
            let request = read_prefix::<XenDomctlMaxMem>(&op.u);
            // Xen keeps max_pages in an unsigned int.
            let pages = (request.max_memkb >> 2).min(u64::from(u32::MAX));
            on_domain(ctx, target, |d| {
                d.max_pages = pages;
                Ok(0)
            })
        }
        XEN_DOMCTL_GETHVMCONTEXT => {
            let mut request = read_prefix::<XenDomctlHvmcontext>(&op.u);
            let result = gethvmcontext(ctx, target, &mut request);
            // Xen copies the argument back whatever the outcome.
            write_prefix(&mut op.u, &request);
            handle.write(ctx.env, &op)?;
            result.map(|()| 0)
        }
        XEN_DOMCTL_SETHVMCONTEXT => {
            let request = read_prefix::<XenDomctlHvmcontext>(&op.u);
            sethvmcontext(ctx, target, &request).map(|()| 0)
        }
        XEN_DOMCTL_SETDOMAINHANDLE => {
            let handle = read_prefix::<[u8; 16]>(&op.u);
            on_domain(ctx, target, |d| {
                d.handle = handle;
                Ok(0)
            })
        }
        _ => Err(errno::ENOSYS),
    }
}

/// `XEN_DOMCTL_scheduler_op` on domain `id`, as Xen's `sched_adjust`: the
/// caller names the running scheduler (else `-EINVAL`); `getinfo` fills in
/// the domain's parameters, `putinfo` changes them (credit: a weight of 0
/// and a cap of 0xffff leave each as it was; RTDS: period and budget in µs,
/// neither 0, and the extra-time flag), refused with `-EINVAL` where the
/// scheduler refuses the values. Per-vCPU parameters: `-EINVAL` under
/// credit (as Xen); RTDS's are per domain in rxen: `-EOPNOTSUPP`.
fn scheduler_op(ctx: &mut Ctx<'_>, id: DomId, op: &mut XenDomctlSchedulerOp) -> Result<(), Errno> {
    use rxen_abi::sysctl::{XEN_SCHEDULER_CREDIT, XEN_SCHEDULER_RTDS};
    let running = ctx.env.machine_facts().sched_id;
    if op.sched_id != running {
        return Err(errno::EINVAL);
    }
    let mut params = ctx.env.sched_params(id).ok_or(errno::ESRCH)?;
    match (op.cmd, running) {
        (XEN_DOMCTL_SCHEDOP_GETINFO, XEN_SCHEDULER_CREDIT) => {
            op.u = [0; 16];
            let credit = XenDomctlSchedCredit {
                weight: params.weight,
                cap: params.cap,
            };
            write_prefix(&mut op.u, &credit);
            Ok(())
        }
        (XEN_DOMCTL_SCHEDOP_GETINFO, XEN_SCHEDULER_RTDS) => {
            op.u = [0; 16];
            let rtds = XenDomctlSchedRtds {
                period: params.period_us,
                budget: params.budget_us,
                flags: if params.extratime {
                    XEN_DOMCTL_SCHEDRT_EXTRA
                } else {
                    0
                },
            };
            write_prefix(&mut op.u, &rtds);
            Ok(())
        }
        (XEN_DOMCTL_SCHEDOP_PUTINFO, XEN_SCHEDULER_CREDIT) => {
            let credit = read_prefix::<XenDomctlSchedCredit>(&op.u);
            if credit.weight != 0 {
                params.weight = credit.weight;
            }
            if credit.cap != u16::MAX {
                params.cap = credit.cap;
            }
            ctx.env.set_sched_params(id, params)
        }
        (XEN_DOMCTL_SCHEDOP_PUTINFO, XEN_SCHEDULER_RTDS) => {
            let rtds = read_prefix::<XenDomctlSchedRtds>(&op.u);
            if rtds.period == 0 || rtds.budget == 0 {
                return Err(errno::EINVAL);
            }
            params.period_us = rtds.period;
            params.budget_us = rtds.budget;
            params.extratime = rtds.flags & XEN_DOMCTL_SCHEDRT_EXTRA != 0;
            ctx.env.set_sched_params(id, params)
        }
        (XEN_DOMCTL_SCHEDOP_PUTVCPUINFO | XEN_DOMCTL_SCHEDOP_GETVCPUINFO, XEN_SCHEDULER_RTDS) => {
            Err(errno::EOPNOTSUPP)
        }
        _ => Err(errno::EINVAL),
    }
}

/// Most bytes rxen zero-fills at the end of a caller's `xenctl_bitmap`
/// (Xen fills all of them, however large the caller says its map is): 8192
/// CPUs' worth, more than any Xen build supports.
const XENCTL_BITMAP_MAX_BYTES: usize = 1024;

/// `XEN_DOMCTL_{set,get}vcpuaffinity` of vCPU `request.vcpu` of domain
/// `id`, as Xen's `vcpu_affinity_domctl`: `-EINVAL` for a vCPU beyond
/// `max_vcpus`, `-ESRCH` for one not created yet, `-EINVAL` for no flag at
/// all or a null map of one asked for (other flag bits are ignored, as Xen
/// does). Setting reads both maps first (`-EFAULT`
/// changes nothing), sets them together (a hard affinity with no online
/// pCPU: `-EINVAL`, nothing changed) and writes back what is in force: the
/// hard affinity on the online pCPUs, the soft one within it. Getting
/// writes the maps asked for. While `SCHEDOP_pin_override` holds the vCPU,
/// setting is `-EBUSY` unless `XEN_VCPUAFFINITY_FORCE` undoes that pin first
/// (its saved hard affinity back).
fn vcpu_affinity(
    ctx: &mut Ctx<'_>,
    id: DomId,
    set: bool,
    request: &XenDomctlVcpuaffinity,
) -> Result<(), Errno> {
    use crate::sched::CpuMask;
    let vcpu = request.vcpu;
    on_domain(ctx, id, |d| {
        if vcpu >= d.max_vcpus {
            return Err(errno::EINVAL);
        }
        d.vcpus.get(vcpu as usize).ok_or(errno::ESRCH)?;
        Ok(0)
    })?;
    let (hard, soft) = (
        request.flags & XEN_VCPUAFFINITY_HARD != 0,
        request.flags & XEN_VCPUAFFINITY_SOFT != 0,
    );
    if request.flags == 0
        || (hard && request.cpumap_hard.bitmap == 0)
        || (soft && request.cpumap_soft.bitmap == 0)
    {
        return Err(errno::EINVAL);
    }
    let nr_cpus = ctx.env.machine_facts().nr_cpus as usize;
    let maps = [(hard, &request.cpumap_hard), (soft, &request.cpumap_soft)];
    // Only the hardware domain pins itself (SCHEDOP_pin_override), and only
    // the control domain (the same one) gets here: its own vCPU.
    let own = (id == ctx.domain.id)
        .then(|| ctx.domain.vcpus.get_mut(vcpu as usize))
        .flatten()
        .filter(|v| v.pin_override.is_some());
    if let (true, Some(v)) = (set, own) {
        if request.flags & XEN_VCPUAFFINITY_FORCE == 0 {
            return Err(errno::EBUSY);
        }
        super::sched_op::undo_pin_override(id, vcpu, v, &mut *ctx.env)?;
    }
    let affinity = if set {
        let mut read = [None, None];
        for (slot, (wanted, map)) in read.iter_mut().zip(maps) {
            if wanted {
                let mut bytes = [0u8; 8];
                let n = CpuMask::xenctl_copy_bytes(map.nr_bits, nr_cpus);
                let bytes = bytes.get_mut(..n).ok_or(errno::EINVAL)?;
                ctx.env.copy_in(map.bitmap, bytes)?;
                *slot = Some(CpuMask::from_xenctl(bytes, map.nr_bits, nr_cpus));
            }
        }
        ctx.env.set_vcpu_affinity(id, vcpu, read[0], read[1])?
    } else {
        ctx.env.vcpu_affinity(id, vcpu)?
    };
    let online = CpuMask::all(nr_cpus);
    let (hard_map, soft_map) = if set {
        (
            affinity.hard.and(online),
            affinity.effective_soft().and(online),
        )
    } else {
        (affinity.hard, affinity.soft)
    };
    for ((wanted, map), mask) in maps.into_iter().zip([hard_map, soft_map]) {
        if wanted {
            let bytes = mask.to_xenctl(map.nr_bits, nr_cpus, XENCTL_BITMAP_MAX_BYTES);
            ctx.env.copy_out(map.bitmap, &bytes)?;
        }
    }
    Ok(())
}

/// `XEN_DOMCTL_gethvmcontext` of domain `target` into `request`'s buffer
/// ([`crate::hvm_save`]): with a null buffer only the size (as Xen's
/// `hvm_save_size`: every vCPU counted up); `-ENOSPC` for a smaller
/// buffer; otherwise the records and, in `size`, the bytes written. Not of
/// the caller itself (`-EINVAL`, as Xen, which cannot pause it); `-EBUSY`
/// while a vCPU of the target is on a CPU (Xen pauses the domain instead).
fn gethvmcontext(
    ctx: &mut Ctx<'_>,
    target: DomId,
    request: &mut XenDomctlHvmcontext,
) -> Result<(), Errno> {
    use crate::hvm_save::{descriptor, header, save_size};
    use rxen_abi::hvm_save::*;
    if target == ctx.domain.id {
        return Err(errno::EINVAL);
    }
    let up: Vec<bool> = lend_domain(ctx.domain, ctx.env, target, |d, _| {
        d.vcpus.iter().map(|v| v.up).collect()
    })?;
    let size = save_size(up.len() as u32);
    if request.buffer == 0 {
        request.size = size;
        return Ok(());
    }
    if request.size < size {
        return Err(errno::ENOSPC);
    }
    if ctx.env.domain_on_cpu(target) {
        return Err(errno::EBUSY);
    }
    let facts = ctx.env.machine_facts();
    let mut out = ContextWriter {
        buffer: request.buffer,
        written: 0,
    };
    out.record(
        ctx,
        &descriptor(HVM_SAVE_CODE_HEADER, 0, HEADER_LENGTH),
        header(facts.cpuid_1_eax, facts.cpu_khz).as_bytes(),
    )?;
    // As Xen: no CPU record of a vCPU that is down.
    let mut cpu = HvmHwCpu::default();
    for (v, _) in (0u32..).zip(&up).filter(|(_, &up)| up) {
        ctx.env.save_hvm_cpu(target, v, &mut cpu)?;
        out.record(
            ctx,
            &descriptor(HVM_SAVE_CODE_CPU, v, CPU_LENGTH),
            cpu.as_bytes(),
        )?;
    }
    let mut mtrr = HvmHwMtrr::default();
    for (v, _) in (0u32..).zip(&up) {
        ctx.env.save_hvm_mtrr(target, v, &mut mtrr)?;
        out.record(
            ctx,
            &descriptor(HVM_SAVE_CODE_MTRR, v, MTRR_LENGTH),
            mtrr.as_bytes(),
        )?;
    }
    out.record(ctx, &descriptor(HVM_SAVE_CODE_END, 0, 0), &[])?;
    request.size = out.written;
    Ok(())
}

/// Writes context records one after another into a caller's buffer.
struct ContextWriter {
    buffer: u64,
    written: u32,
}

impl ContextWriter {
    fn put(&mut self, ctx: &mut Ctx<'_>, bytes: &[u8]) -> Result<(), Errno> {
        let addr = self
            .buffer
            .checked_add(u64::from(self.written))
            .ok_or(errno::EFAULT)?;
        ctx.env.copy_out(addr, bytes)?;
        self.written = u32::try_from(bytes.len())
            .ok()
            .and_then(|n| self.written.checked_add(n))
            .ok_or(errno::EFAULT)?;
        Ok(())
    }

    fn record(
        &mut self,
        ctx: &mut Ctx<'_>,
        desc: &rxen_abi::hvm_save::HvmSaveDescriptor,
        payload: &[u8],
    ) -> Result<(), Errno> {
        self.put(ctx, desc.as_bytes())?;
        self.put(ctx, payload)
    }
}

/// `XEN_DOMCTL_sethvmcontext` of domain `target` from `request`'s buffer,
/// as Xen's `hvm_load`: checked whole first ([`crate::hvm_save::check`];
/// nothing applied of a bad context); then every vCPU goes down and each
/// one with a CPU record gets its registers and comes up, initialised;
/// MTRR records set the PAT and MTRR default type. Not of the caller itself
/// (`-EINVAL`); a context over [`crate::hvm_save::MAX_CONTEXT`] bytes is
/// `-ENOMEM` before anything is allocated; `-EBUSY` (after the checks)
/// while a vCPU of the target is on a CPU.
fn sethvmcontext(
    ctx: &mut Ctx<'_>,
    target: DomId,
    request: &XenDomctlHvmcontext,
) -> Result<(), Errno> {
    use crate::hvm_save::{check, for_each_record, read_cpu, CpuPolicy, Record, MAX_CONTEXT};
    if target == ctx.domain.id {
        return Err(errno::EINVAL);
    }
    if request.size > MAX_CONTEXT {
        return Err(errno::ENOMEM);
    }
    let size = request.size as usize;
    let mut blob = Vec::new();
    blob.try_reserve_exact(size).map_err(|_| errno::ENOMEM)?;
    blob.resize(size, 0);
    ctx.env.copy_in(request.buffer, &mut blob)?;
    let nr_vcpus = lend_domain(ctx.domain, ctx.env, target, |d, _| d.vcpus.len() as u32)?;
    let facts = ctx.env.machine_facts();
    let policy = CpuPolicy {
        cr4_valid: facts.guest_cr4_valid,
        efer_valid: facts.guest_efer_valid,
        maxphysaddr: facts.gpaddr_bits,
    };
    check(&blob, nr_vcpus, &policy)?;
    if ctx.env.domain_on_cpu(target) {
        return Err(errno::EBUSY);
    }
    let mut loaded = alloc::vec![false; nr_vcpus as usize];
    let env = &mut *ctx.env;
    for_each_record(&blob, nr_vcpus, &policy, &mut |record| match record {
        Record::Cpu(v, payload) => {
            env.load_hvm_cpu(target, v, &read_cpu(payload)?)?;
            if let Some(flag) = loaded.get_mut(v as usize) {
                *flag = true;
            }
            Ok(())
        }
        Record::Mtrr(v, mtrr) => env.load_hvm_mtrr(target, v, &mtrr),
    })?;
    lend_domain(ctx.domain, ctx.env, target, |d, _| {
        for (v, &loaded) in d.vcpus.iter_mut().zip(&loaded) {
            v.up = loaded;
            v.blocked = None;
            if loaded {
                v.initialised = true;
                // The record replaces any VCPUOP_initialise state.
                v.pending_context = None;
            }
        }
    })
}

/// Most vCPUs a created domain may have (Xen's `HVM_MAX_VCPUS`).
pub const MAX_VCPUS: u32 = 128;

/// The `createdomain` flags rxen takes: a PVH guest on nested paging (HVM
/// without device models is not served), optionally a xenstore domain.
const CREATE_FLAGS: u32 =
    XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP | XEN_DOMCTL_CDF_OOS_OFF | XEN_DOMCTL_CDF_XS_DOMAIN;

/// Xen's `sanitise_domain_config` for what rxen can build: `-EINVAL` for a
/// PV guest (no `hvm` flag), no `hap`, flags rxen has no use for (IOMMU,
/// nested virtualization, vPMU, S3 integrity), emulation other than a PVH
/// guest's (the local APIC alone), 0 or more than [`MAX_VCPUS`] vCPUs, a
/// processor-trace buffer, IOMMU options, a grant version other than 1 (or
/// 0, the default) or other grant options; `-ENOENT` for a CPU pool other
/// than 0.
fn check_create(c: &XenDomctlCreatedomain) -> Result<DomainConfig, Errno> {
    let pvh = XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP;
    if c.flags & !CREATE_FLAGS != 0 || c.flags & pvh != pvh {
        return Err(errno::EINVAL);
    }
    if c.arch.emulation_flags != XEN_X86_EMU_LAPIC || c.iommu_opts != 0 || c.vmtrace_size != 0 {
        return Err(errno::EINVAL);
    }
    if c.max_vcpus == 0 || c.max_vcpus > MAX_VCPUS {
        return Err(errno::EINVAL);
    }
    if c.grant_opts & !XEN_DOMCTL_GRANT_VERSION_MASK != 0 || c.grant_opts > 1 {
        return Err(errno::EINVAL);
    }
    if c.cpupool_id != 0 {
        return Err(errno::ENOENT);
    }
    // A negative frame count asks for the machine's default.
    Ok(DomainConfig {
        max_vcpus: c.max_vcpus,
        max_evtchn_port: c.max_evtchn_port,
        max_grant_frames: u32::try_from(c.max_grant_frames).ok(),
        max_maptrack_frames: u32::try_from(c.max_maptrack_frames).ok(),
        handle: c.handle,
    })
}

/// Runs `f` on domain `id` (the caller or another); `-ESRCH` if there is
/// none, or it is being destroyed.
fn on_domain(
    ctx: &mut Ctx<'_>,
    id: DomId,
    f: impl FnOnce(&mut Domain) -> Result<i64, Errno>,
) -> Result<i64, Errno> {
    lend_domain(ctx.domain, ctx.env, id, |d, _| {
        if d.destroy_requested {
            Err(errno::ESRCH)
        } else {
            f(d)
        }
    })?
}

/// The machine's domain ids (the caller's and the others'), ascending.
pub(super) fn domain_ids(ctx: &mut Ctx<'_>) -> Vec<DomId> {
    let mut ids = ctx.env.other_domains();
    ids.push(ctx.domain.id);
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `getdomaininfo` of domain `id`, if it exists and is not being destroyed,
/// at system time `now` with the machine's `facts` (both taken once by a
/// caller that walks several domains).
pub(super) fn info_of(
    ctx: &mut Ctx<'_>,
    id: DomId,
    facts: &MachineFacts,
    now: u64,
) -> Option<XenDomctlGetdomaininfo> {
    lend_domain(ctx.domain, ctx.env, id, |d, _| {
        (!d.destroy_requested).then(|| domain_info(d, facts, now))
    })
    .ok()
    .flatten()
}

/// The info of the first domain whose id is at least `from` (Xen's
/// `getdomaininfo` walks on to the next one); `-ESRCH` past the last.
fn first_info_from(ctx: &mut Ctx<'_>, from: DomId) -> Result<XenDomctlGetdomaininfo, Errno> {
    let (facts, now) = (ctx.env.machine_facts(), ctx.env.now_ns());
    domain_ids(ctx)
        .into_iter()
        .filter(|&id| id >= from)
        .find_map(|id| info_of(ctx, id, &facts, now))
        .ok_or(errno::ESRCH)
}

/// Xen's `getdomaininfo` of `d` at system time `now`.
pub fn domain_info(d: &Domain, facts: &MachineFacts, now: u64) -> XenDomctlGetdomaininfo {
    let online = d.vcpus.iter().filter(|v| v.up);
    let nr_online = online.clone().count();
    let running = d
        .vcpus
        .iter()
        .any(|v| v.runstate.state == RunstateKind::Running);
    let blocked = nr_online > 0 && !running && online.clone().all(|v| v.blocked.is_some());
    let cpu_time = d.vcpus.iter().fold(0u64, |sum, v| {
        let times = v.runstate.times_at(now);
        sum.saturating_add(times.first().copied().unwrap_or(0))
    });
    let mut flags = XEN_DOMINF_HVM_GUEST | XEN_DOMINF_HAP;
    if d.shutdown.is_some() {
        flags |= XEN_DOMINF_SHUTDOWN;
    }
    // Xen ORs in `shutdown_code << 16`, which is ~0 until the domain shuts
    // down: bits 16-31 are all set for a domain that has not (as Xen 4.17
    // reports dom0: flags 0xffff0122).
    let code = d.shutdown.map_or(u32::MAX, |r| u32::from(r.code()));
    flags |= code.wrapping_shl(XEN_DOMINF_SHUTDOWNSHIFT);
    if d.destroy_requested {
        flags |= XEN_DOMINF_DYING;
    }
    if d.controller_pause_count > 0 {
        flags |= XEN_DOMINF_PAUSED;
    }
    if blocked {
        flags |= XEN_DOMINF_BLOCKED;
    }
    if running {
        flags |= XEN_DOMINF_RUNNING;
    }
    // A PVH domU has an emulated local APIC; a PVH dom0 also IO-APICs and
    // PCI config space (Xen's create flags for each).
    let emulation_flags = if d.privileged {
        XEN_X86_EMU_LAPIC | XEN_X86_EMU_IOAPIC | XEN_X86_EMU_VPCI
    } else {
        XEN_X86_EMU_LAPIC
    };
    XenDomctlGetdomaininfo {
        domain: d.id,
        flags,
        tot_pages: d.tot_pages,
        max_pages: d.max_pages,
        cpu_time,
        nr_online_vcpus: nr_online as u32,
        max_vcpu_id: (d.vcpus.len() as u32).checked_sub(1).unwrap_or(u32::MAX),
        handle: d.handle,
        gpaddr_bits: facts.gpaddr_bits,
        arch_config: XenArchDomainconfig {
            emulation_flags,
            misc_flags: 0,
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{call, peer, ret, two_domains, FakeEnv, BAD};
    use rxen_abi::xen::HYPERVISOR_DOMCTL;
    use zerocopy::{FromBytes, IntoBytes};

    const AT: u64 = 0x400;

    fn op(cmd: u32, domain: DomId) -> XenDomctl {
        XenDomctl {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u: [0; XEN_DOMCTL_UNION_SIZE],
        }
    }

    fn domctl(d: &mut Domain, env: &mut FakeEnv, op: &XenDomctl) -> i64 {
        env.put(AT, op);
        call(d, env, HYPERVISOR_DOMCTL, [AT, 0, 0, 0, 0]).ret
    }

    fn info(env: &FakeEnv) -> XenDomctlGetdomaininfo {
        let op: XenDomctl = env.get(AT);
        XenDomctlGetdomaininfo::read_from_prefix(&op.u).unwrap().0
    }

    /// dom0 (privileged, id 0) calling, with domain 2 beside it.
    fn dom0_and_domu() -> (Domain, FakeEnv) {
        let (mut d, env) = two_domains();
        d.id = 0;
        d.privileged = true;
        (d, env)
    }

    #[test]
    fn version_first_then_privilege() {
        let (mut d, mut env) = two_domains();
        let mut bad = op(XEN_DOMCTL_GETDOMAININFO, 1);
        bad.interface_version = 0x14;
        assert_eq!(domctl(&mut d, &mut env, &bad), ret(errno::EACCES));
        let good = op(XEN_DOMCTL_GETDOMAININFO, 1);
        assert_eq!(domctl(&mut d, &mut env, &good), ret(errno::EPERM));
        assert_eq!(
            call(&mut d, &mut env, HYPERVISOR_DOMCTL, [BAD, 0, 0, 0, 0]).ret,
            ret(errno::EFAULT)
        );
        let (mut d0, mut env) = dom0_and_domu();
        assert_eq!(domctl(&mut d0, &mut env, &op(9999, 2)), ret(errno::ENOSYS));
        // The target is looked up first, as Xen does.
        assert_eq!(domctl(&mut d0, &mut env, &op(9999, 5)), ret(errno::ESRCH));
    }

    #[test]
    fn getdomaininfo_answers_the_next_domain_and_esrch_past_the_last() {
        let (mut d, mut env) = dom0_and_domu();
        env.now = 5_000;
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 0)),
            0
        );
        let i = info(&env);
        assert_eq!(i.domain, 0);
        assert_eq!(env.get::<XenDomctl>(AT).domain, 0);
        assert_eq!(
            i.arch_config.emulation_flags,
            XEN_X86_EMU_LAPIC | XEN_X86_EMU_IOAPIC | XEN_X86_EMU_VPCI
        );
        // Domain 1 does not exist: the answer is domain 2.
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 1)),
            0
        );
        let i = info(&env);
        assert_eq!((i.domain, env.get::<XenDomctl>(AT).domain), (2, 2));
        assert_eq!(i.tot_pages, 16);
        assert_eq!((i.nr_online_vcpus, i.max_vcpu_id), (1, 1));
        assert_eq!(i.arch_config.emulation_flags, XEN_X86_EMU_LAPIC);
        assert_eq!(i.flags & XEN_DOMINF_HVM_GUEST, XEN_DOMINF_HVM_GUEST);
        assert_eq!(i.flags & (XEN_DOMINF_PAUSED | XEN_DOMINF_SHUTDOWN), 0);
        assert_eq!(
            i.flags >> XEN_DOMINF_SHUTDOWNSHIFT,
            0xFFFF,
            "no shutdown code yet"
        );
        peer(&mut env).0.shutdown = Some(crate::domain::ShutdownReason::Crash);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 2)),
            0
        );
        let flags = info(&env).flags;
        assert_eq!(flags & XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWN);
        assert_eq!(flags >> XEN_DOMINF_SHUTDOWNSHIFT, 3, "SHUTDOWN_crash");
        peer(&mut env).0.shutdown = None;
        assert_eq!(i.gpaddr_bits, 48);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 3)),
            ret(errno::ESRCH)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 0xFFFF)),
            ret(errno::ESRCH)
        );
    }

    #[test]
    fn cpu_time_counts_running_time_only() {
        let (mut d, mut env) = dom0_and_domu();
        let v = &mut peer(&mut env).0.vcpus[0];
        v.runstate.change(RunstateKind::Running, 1_000);
        v.runstate.change(RunstateKind::Runnable, 4_000);
        v.runstate.change(RunstateKind::Running, 10_000);
        env.now = 12_000;
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 2)),
            0
        );
        let i = info(&env);
        assert_eq!(i.cpu_time, 3_000 + 2_000);
        assert_eq!(i.flags & XEN_DOMINF_RUNNING, XEN_DOMINF_RUNNING);
        assert_eq!(i.flags & XEN_DOMINF_BLOCKED, 0);
    }

    #[test]
    fn pause_counts_and_unpause_below_zero_is_einval() {
        let (mut d, mut env) = dom0_and_domu();
        assert_eq!(domctl(&mut d, &mut env, &op(XEN_DOMCTL_PAUSEDOMAIN, 2)), 0);
        assert_eq!(domctl(&mut d, &mut env, &op(XEN_DOMCTL_PAUSEDOMAIN, 2)), 0);
        assert_eq!(peer(&mut env).0.controller_pause_count, 2);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 2)),
            0
        );
        assert_eq!(info(&env).flags & XEN_DOMINF_PAUSED, XEN_DOMINF_PAUSED);
        for _ in 0..2 {
            assert_eq!(
                domctl(&mut d, &mut env, &op(XEN_DOMCTL_UNPAUSEDOMAIN, 2)),
                0
            );
        }
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_UNPAUSEDOMAIN, 2)),
            ret(errno::EINVAL)
        );
        assert_eq!(peer(&mut env).0.controller_pause_count, 0);
        // Not itself; not a domain that is not there.
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_PAUSEDOMAIN, 0)),
            ret(errno::EINVAL)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_PAUSEDOMAIN, 7)),
            ret(errno::ESRCH)
        );
        peer(&mut env).0.controller_pause_count = u32::MAX;
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_PAUSEDOMAIN, 2)),
            ret(errno::EOVERFLOW)
        );
    }

    #[test]
    fn destroy_marks_the_domain_and_hides_it() {
        let (mut d, mut env) = dom0_and_domu();
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_DESTROYDOMAIN, 0)),
            ret(errno::EINVAL)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_DESTROYDOMAIN, 2)),
            0
        );
        assert!(peer(&mut env).0.destroy_requested);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 1)),
            ret(errno::ESRCH)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_DESTROYDOMAIN, 2)),
            ret(errno::ESRCH)
        );
    }

    fn create(requested: DomId, edit: impl FnOnce(&mut XenDomctlCreatedomain)) -> XenDomctl {
        let mut c = XenDomctlCreatedomain {
            flags: XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP,
            max_vcpus: 2,
            max_evtchn_port: 1023,
            max_grant_frames: -1,
            max_maptrack_frames: 1024,
            grant_opts: 1,
            arch: XenArchDomainconfig {
                emulation_flags: XEN_X86_EMU_LAPIC,
                misc_flags: 0,
            },
            ..Default::default()
        };
        edit(&mut c);
        let mut o = op(XEN_DOMCTL_CREATEDOMAIN, requested);
        o.u[..64].copy_from_slice(c.as_bytes());
        o
    }

    #[test]
    fn createdomain_checks_the_config_as_xen() {
        let mut d = crate::test_support::domu();
        d.id = 0;
        d.privileged = true;
        let mut env = FakeEnv::new();
        let bad: [&dyn Fn(&mut XenDomctlCreatedomain); 10] = [
            &|c| c.flags = XEN_DOMCTL_CDF_HAP,
            &|c| c.flags = XEN_DOMCTL_CDF_HVM,
            &|c| c.flags |= XEN_DOMCTL_CDF_IOMMU,
            &|c| c.flags |= 1 << 20,
            &|c| c.arch.emulation_flags = 0x7FF,
            &|c| c.max_vcpus = 0,
            &|c| c.max_vcpus = MAX_VCPUS + 1,
            &|c| c.vmtrace_size = 4096,
            &|c| c.grant_opts = 2,
            &|c| c.iommu_opts = 1,
        ];
        for edit in bad {
            assert_eq!(
                domctl(&mut d, &mut env, &create(0, edit)),
                ret(errno::EINVAL)
            );
        }
        assert_eq!(
            domctl(&mut d, &mut env, &create(0, |c| c.cpupool_id = 3)),
            ret(errno::ENOENT)
        );
        assert!(env.created.is_empty(), "nothing created");
        // Good: an id from the rover, written back; born paused, empty.
        assert_eq!(
            domctl(&mut d, &mut env, &create(0, |c| c.handle = [9; 16])),
            0
        );
        assert_eq!(env.get::<XenDomctl>(AT).domain, 1);
        let (id, config) = env.created[0];
        assert_eq!(id, 1);
        assert_eq!(config.max_vcpus, 2);
        assert_eq!(config.max_grant_frames, None, "-1: the default");
        assert_eq!(config.max_maptrack_frames, Some(1024));
        assert_eq!(config.handle, [9; 16]);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 1)),
            0
        );
        let i = info(&env);
        assert_eq!(
            (i.tot_pages, i.nr_online_vcpus, i.max_vcpu_id),
            (0, 0, u32::MAX)
        );
        assert_eq!(i.flags & XEN_DOMINF_PAUSED, XEN_DOMINF_PAUSED);
        // A taken or reserved id.
        assert_eq!(
            domctl(&mut d, &mut env, &create(1, |_| ())),
            ret(errno::EEXIST)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &create(0x7FF0, |_| ())),
            ret(errno::EINVAL)
        );
    }

    #[test]
    fn max_vcpus_creates_what_createdomain_said() {
        let mut d = crate::test_support::domu();
        d.id = 0;
        d.privileged = true;
        let mut env = FakeEnv::new();
        assert_eq!(domctl(&mut d, &mut env, &create(0, |c| c.max_vcpus = 3)), 0);
        let max = |n: u32| {
            let mut o = op(XEN_DOMCTL_MAX_VCPUS, 1);
            o.u[..4].copy_from_slice(&n.to_le_bytes());
            o
        };
        assert_eq!(domctl(&mut d, &mut env, &max(2)), ret(errno::EINVAL));
        assert_eq!(domctl(&mut d, &mut env, &max(u32::MAX)), ret(errno::EINVAL));
        assert_eq!(domctl(&mut d, &mut env, &max(3)), 0);
        assert_eq!(peer(&mut env).0.vcpus.len(), 3);
        assert_eq!(domctl(&mut d, &mut env, &max(3)), 0, "again: nothing more");
        assert_eq!(peer(&mut env).0.vcpus.len(), 3);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 1)),
            0
        );
        assert_eq!((info(&env).nr_online_vcpus, info(&env).max_vcpu_id), (0, 2));
        // Not of itself.
        let mut own = max(2);
        own.domain = 0;
        assert_eq!(domctl(&mut d, &mut env, &own), ret(errno::EINVAL));
    }

    #[test]
    fn getvcpuinfo_reports_each_vcpu() {
        let (mut d, mut env) = dom0_and_domu();
        {
            let v = &mut peer(&mut env).0.vcpus[0];
            v.processor = 1;
            v.runstate.change(RunstateKind::Running, 1_000);
        }
        env.now = 4_000;
        let ask = |vcpu: u32| {
            let mut o = op(XEN_DOMCTL_GETVCPUINFO, 2);
            o.u[..4].copy_from_slice(&vcpu.to_le_bytes());
            o
        };
        assert_eq!(domctl(&mut d, &mut env, &ask(0)), 0);
        let o: XenDomctl = env.get(AT);
        let i = XenDomctlGetvcpuinfo::read_from_prefix(&o.u).unwrap().0;
        assert_eq!((i.online, i.blocked, i.running), (1, 0, 1));
        assert_eq!((i.cpu_time, i.cpu), (3_000, 1));
        // vCPU 1 exists, down; vCPU 2 is past max_vcpus.
        assert_eq!(domctl(&mut d, &mut env, &ask(1)), 0);
        let o: XenDomctl = env.get(AT);
        let i = XenDomctlGetvcpuinfo::read_from_prefix(&o.u).unwrap().0;
        assert_eq!((i.online, i.running, i.cpu_time), (0, 0, 0));
        assert_eq!(domctl(&mut d, &mut env, &ask(2)), ret(errno::EINVAL));
        assert_eq!(domctl(&mut d, &mut env, &ask(u32::MAX)), ret(errno::EINVAL));
    }

    /// Where the affinity tests' bitmaps live.
    const HARD_AT: u64 = 0x1000;
    const SOFT_AT: u64 = 0x2000;

    use rxen_abi::sysctl::XenctlBitmap;

    fn affinity_op(
        cmd: u32,
        vcpu: u32,
        flags: u32,
        hard: (u64, u32),
        soft: (u64, u32),
    ) -> XenDomctl {
        let a = XenDomctlVcpuaffinity {
            vcpu,
            flags,
            cpumap_hard: XenctlBitmap {
                bitmap: hard.0,
                nr_bits: hard.1,
                pad: 0,
            },
            cpumap_soft: XenctlBitmap {
                bitmap: soft.0,
                nr_bits: soft.1,
                pad: 0,
            },
        };
        let mut o = op(cmd, 2);
        o.u[..40].copy_from_slice(a.as_bytes());
        o
    }

    #[test]
    fn vcpu_affinity_as_xen() {
        use crate::sched::{Affinity, CpuMask};
        const BOTH: u32 = XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT;
        const SET: u32 = XEN_DOMCTL_SETVCPUAFFINITY;
        const GET: u32 = XEN_DOMCTL_GETVCPUAFFINITY;
        let (mut d, mut env) = dom0_and_domu();
        let maps = ((HARD_AT, 32), (SOFT_AT, 32));
        // FORCE alone (Xen: undo a temporary pin) is valid and changes nothing.
        for v in 0..2 {
            env.affinity.insert((2, v), Affinity::all(2));
        }
        let force = affinity_op(SET, 0, XEN_VCPUAFFINITY_FORCE, maps.0, maps.1);
        assert_eq!(domctl(&mut d, &mut env, &force), 0);
        assert_eq!(env.affinity[&(2, 0)], Affinity::all(2));
        env.affinity.clear();
        // Beyond max_vcpus (2): EINVAL; a vCPU the scheduler does not know: ESRCH.
        let get = affinity_op(GET, 2, BOTH, maps.0, maps.1);
        assert_eq!(domctl(&mut d, &mut env, &get), ret(errno::EINVAL));
        let get = affinity_op(GET, 1, BOTH, maps.0, maps.1);
        assert_eq!(domctl(&mut d, &mut env, &get), ret(errno::ESRCH));
        for v in 0..2 {
            env.affinity.insert((2, v), Affinity::all(2));
        }
        // Both maps of a new vCPU: every pCPU (2), then zeros to the caller's 32 bits.
        env.mem[HARD_AT as usize..][..8].fill(0xEE);
        env.mem[SOFT_AT as usize..][..8].fill(0xEE);
        assert_eq!(domctl(&mut d, &mut env, &get), 0);
        assert_eq!(env.mem[HARD_AT as usize..][..5], [0b11, 0, 0, 0, 0xEE]);
        assert_eq!(env.mem[SOFT_AT as usize..][..5], [0b11, 0, 0, 0, 0xEE]);
        // No flag, or a null map asked for: EINVAL.
        for bad in [
            affinity_op(GET, 1, 0, maps.0, maps.1),
            affinity_op(SET, 1, XEN_VCPUAFFINITY_HARD, (0, 8), maps.1),
            affinity_op(GET, 1, XEN_VCPUAFFINITY_SOFT, maps.0, (0, 8)),
        ] {
            assert_eq!(domctl(&mut d, &mut env, &bad), ret(errno::EINVAL));
        }
        // Pin vCPU 0 to pCPU 1 (pCPUs 5 and 9 do not exist and are dropped):
        // written back as in force.
        env.mem[HARD_AT as usize..][..2].copy_from_slice(&[0b0010_0010, 0b10]);
        let pin = affinity_op(SET, 0, XEN_VCPUAFFINITY_HARD, (HARD_AT, 16), maps.1);
        assert_eq!(domctl(&mut d, &mut env, &pin), 0);
        assert_eq!(env.mem[HARD_AT as usize..][..2], [0b10, 0]);
        assert_eq!(env.affinity[&(2, 0)].hard, CpuMask::from_bits(0b10));
        // A hard affinity with no pCPU there: EINVAL, nothing changes.
        env.mem[HARD_AT as usize] = 0b100;
        assert_eq!(domctl(&mut d, &mut env, &pin), ret(errno::EINVAL));
        assert_eq!(env.affinity[&(2, 0)].hard, CpuMask::from_bits(0b10));
        // The caller's 1-bit map names pCPU 0 only, whatever its byte says.
        env.mem[HARD_AT as usize] = 0b11;
        let one_bit = affinity_op(SET, 1, XEN_VCPUAFFINITY_HARD, (HARD_AT, 1), maps.1);
        assert_eq!(domctl(&mut d, &mut env, &one_bit), 0);
        assert_eq!(env.affinity[&(2, 1)].hard, CpuMask::from_bits(0b01));
        assert_eq!(env.mem[HARD_AT as usize], 0b01);
        // Soft affinity pCPU 0 for vCPU 0 (pinned to 1): kept, reported in force
        // as nothing (outside the hard affinity), and read back as set.
        env.mem[SOFT_AT as usize] = 0b01;
        let soft = affinity_op(SET, 0, XEN_VCPUAFFINITY_SOFT, maps.0, (SOFT_AT, 8));
        assert_eq!(domctl(&mut d, &mut env, &soft), 0);
        assert_eq!(env.mem[SOFT_AT as usize], 0);
        let get0 = affinity_op(GET, 0, BOTH, maps.0, maps.1);
        assert_eq!(domctl(&mut d, &mut env, &get0), 0);
        assert_eq!(env.mem[HARD_AT as usize], 0b10);
        assert_eq!(env.mem[SOFT_AT as usize], 0b01);
        // A map the caller cannot read: EFAULT before anything changes.
        env.mem[HARD_AT as usize] = 0b01;
        let fault = affinity_op(SET, 0, BOTH, (HARD_AT, 8), (BAD, 8));
        assert_eq!(domctl(&mut d, &mut env, &fault), ret(errno::EFAULT));
        assert_eq!(env.affinity[&(2, 0)].hard, CpuMask::from_bits(0b10));
        // A huge map on get: the first KiB is written (zeros after the pCPUs), no more.
        env.mem[SOFT_AT as usize..][..1100].fill(0xEE);
        let huge = affinity_op(GET, 0, XEN_VCPUAFFINITY_SOFT, maps.0, (SOFT_AT, u32::MAX));
        assert_eq!(domctl(&mut d, &mut env, &huge), 0);
        assert_eq!(env.mem[SOFT_AT as usize], 0b01);
        assert!(env.mem[SOFT_AT as usize + 1..][..1023]
            .iter()
            .all(|b| *b == 0));
        assert_eq!(env.mem[SOFT_AT as usize + 1024], 0xEE);
        // A map of 0 bits reads as no pCPU: EINVAL for the hard affinity.
        let none = affinity_op(SET, 0, XEN_VCPUAFFINITY_HARD, (HARD_AT, 0), maps.1);
        assert_eq!(domctl(&mut d, &mut env, &none), ret(errno::EINVAL));
    }

    fn sched_op(sched_id: u32, cmd: u32, params: &[u8]) -> XenDomctl {
        let mut s = XenDomctlSchedulerOp {
            sched_id,
            cmd,
            u: [0; 16],
        };
        s.u[..params.len()].copy_from_slice(params);
        let mut o = op(XEN_DOMCTL_SCHEDULER_OP, 2);
        o.u[..24].copy_from_slice(s.as_bytes());
        o
    }

    fn sched_answer(env: &FakeEnv) -> [u8; 16] {
        let o: XenDomctl = env.get(AT);
        XenDomctlSchedulerOp::read_from_prefix(&o.u).unwrap().0.u
    }

    #[test]
    fn scheduler_op_credit_as_xen() {
        use rxen_abi::sysctl::{XEN_SCHEDULER_CREDIT, XEN_SCHEDULER_RTDS};
        let (mut d, mut env) = dom0_and_domu();
        // Not known to the scheduler yet.
        let get = sched_op(XEN_SCHEDULER_CREDIT, XEN_DOMCTL_SCHEDOP_GETINFO, &[]);
        assert_eq!(domctl(&mut d, &mut env, &get), ret(errno::ESRCH));
        env.sched.insert(2, crate::sched::SchedParams::default());
        assert_eq!(domctl(&mut d, &mut env, &get), 0);
        assert_eq!(sched_answer(&env)[..4], [0, 1, 0, 0], "weight 256, cap 0");
        // Weight 512, cap 50; then weight 0 and cap 0xffff change nothing.
        let put = |w: u16, c: u16| {
            let mut b = [0u8; 4];
            b[..2].copy_from_slice(&w.to_le_bytes());
            b[2..].copy_from_slice(&c.to_le_bytes());
            sched_op(XEN_SCHEDULER_CREDIT, XEN_DOMCTL_SCHEDOP_PUTINFO, &b)
        };
        assert_eq!(domctl(&mut d, &mut env, &put(512, 50)), 0);
        assert_eq!(domctl(&mut d, &mut env, &put(0, 0xFFFF)), 0);
        let p = env.sched[&2];
        assert_eq!((p.weight, p.cap), (512, 50));
        // The wrong scheduler named; per-vCPU ops under credit; a bad command.
        let rtds = sched_op(XEN_SCHEDULER_RTDS, XEN_DOMCTL_SCHEDOP_GETINFO, &[]);
        assert_eq!(domctl(&mut d, &mut env, &rtds), ret(errno::EINVAL));
        let vcpu = sched_op(XEN_SCHEDULER_CREDIT, XEN_DOMCTL_SCHEDOP_GETVCPUINFO, &[]);
        assert_eq!(domctl(&mut d, &mut env, &vcpu), ret(errno::EINVAL));
        let bad = sched_op(XEN_SCHEDULER_CREDIT, 77, &[]);
        assert_eq!(domctl(&mut d, &mut env, &bad), ret(errno::EINVAL));
    }

    #[test]
    fn scheduler_op_rtds_as_xen() {
        use rxen_abi::sysctl::XEN_SCHEDULER_RTDS;
        let (mut d, mut env) = dom0_and_domu();
        env.sched_id = XEN_SCHEDULER_RTDS;
        env.sched.insert(2, crate::sched::SchedParams::default());
        let get = sched_op(XEN_SCHEDULER_RTDS, XEN_DOMCTL_SCHEDOP_GETINFO, &[]);
        assert_eq!(domctl(&mut d, &mut env, &get), 0);
        let rtds = XenDomctlSchedRtds::read_from_prefix(&sched_answer(&env))
            .unwrap()
            .0;
        assert_eq!(
            (rtds.period, rtds.budget, rtds.flags),
            (10_000, 4_000, XEN_DOMCTL_SCHEDRT_EXTRA)
        );
        let put = |period: u32, budget: u32, flags: u32| {
            let r = XenDomctlSchedRtds {
                period,
                budget,
                flags,
            };
            sched_op(XEN_SCHEDULER_RTDS, XEN_DOMCTL_SCHEDOP_PUTINFO, r.as_bytes())
        };
        assert_eq!(domctl(&mut d, &mut env, &put(20_000, 5_000, 0)), 0);
        let p = env.sched[&2];
        assert_eq!(
            (p.period_us, p.budget_us, p.extratime),
            (20_000, 5_000, false)
        );
        // Zero period or budget (Xen), a budget over the period (the scheduler).
        assert_eq!(
            domctl(&mut d, &mut env, &put(0, 5_000, 0)),
            ret(errno::EINVAL)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &put(20_000, 0, 0)),
            ret(errno::EINVAL)
        );
        assert_eq!(
            domctl(&mut d, &mut env, &put(1_000, 5_000, 0)),
            ret(errno::EINVAL)
        );
        assert_eq!(env.sched[&2].period_us, 20_000, "unchanged by the refusals");
        let vcpu = sched_op(XEN_SCHEDULER_RTDS, XEN_DOMCTL_SCHEDOP_PUTVCPUINFO, &[]);
        assert_eq!(domctl(&mut d, &mut env, &vcpu), ret(errno::EOPNOTSUPP));
    }

    #[test]
    fn max_mem_and_handle() {
        let (mut d, mut env) = dom0_and_domu();
        let mut m = op(XEN_DOMCTL_MAX_MEM, 2);
        m.u[..8].copy_from_slice(&(256u64 * 1024).to_le_bytes());
        assert_eq!(domctl(&mut d, &mut env, &m), 0);
        assert_eq!(peer(&mut env).0.max_pages, 65536);
        m.u[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(domctl(&mut d, &mut env, &m), 0);
        assert_eq!(peer(&mut env).0.max_pages, u64::from(u32::MAX));
        let mut h = op(XEN_DOMCTL_SETDOMAINHANDLE, 2);
        h.u[..16].copy_from_slice(&[7; 16]);
        assert_eq!(domctl(&mut d, &mut env, &h), 0);
        assert_eq!(
            domctl(&mut d, &mut env, &op(XEN_DOMCTL_GETDOMAININFO, 2)),
            0
        );
        assert_eq!(info(&env).handle, [7; 16]);
        assert_eq!(info(&env).max_pages, u64::from(u32::MAX));
    }

    /// A get or set of domain `domain`'s HVM context with buffer `buffer`
    /// of `size` bytes.
    fn hvmcontext(cmd: u32, domain: DomId, size: u32, buffer: u64) -> XenDomctl {
        let mut o = op(cmd, domain);
        let c = XenDomctlHvmcontext {
            size,
            pad: 0,
            buffer,
        };
        o.u[..16].copy_from_slice(c.as_bytes());
        o
    }

    fn answered_size(env: &FakeEnv) -> u32 {
        let o: XenDomctl = env.get(AT);
        XenDomctlHvmcontext::read_from_prefix(&o.u).unwrap().0.size
    }

    /// The records of a context: (typecode, instance, payload).
    fn parse(bytes: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
        use rxen_abi::hvm_save::HvmSaveDescriptor;
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Ok((d, after)) = HvmSaveDescriptor::read_from_prefix(rest) {
            let (payload, next) = after.split_at(d.length as usize);
            out.push((d.typecode, d.instance, payload.to_vec()));
            rest = next;
            if d.typecode == 0 {
                break;
            }
        }
        out
    }

    const BUF: u64 = 0x1000;

    #[test]
    fn gethvmcontext_sizes_refuses_small_buffers_and_saves_in_xens_order() {
        use rxen_abi::hvm_save::*;
        let (mut d, mut env) = dom0_and_domu();
        peer(&mut env).0.vcpus[1].up = true;
        for (v, rip) in [(0u32, 0x1111u64), (1, 0x2222)] {
            let cpu = HvmHwCpu {
                rip,
                cr0: 0x11,
                ..Default::default()
            };
            env.hvm
                .insert((2, v), (cpu, (0x0007_0406_0007_0406, 0xC06)));
        }
        // Size query: a null buffer.
        let get = |size: u32, buffer: u64| hvmcontext(XEN_DOMCTL_GETHVMCONTEXT, 2, size, buffer);
        assert_eq!(domctl(&mut d, &mut env, &get(0, 0)), 0);
        let size = answered_size(&env);
        assert_eq!(size, 8 + 24 + 2 * (8 + 1032) + 2 * (8 + 240) + 8);
        // Too small a buffer: -ENOSPC, nothing written.
        assert_eq!(
            domctl(&mut d, &mut env, &get(size - 1, BUF)),
            ret(errno::ENOSPC)
        );
        assert!(env.mem[BUF as usize..][..64].iter().all(|&b| b == 0));
        // HEADER, CPU 0 and 1, MTRR 0 and 1, END; the size written.
        assert_eq!(domctl(&mut d, &mut env, &get(size + 100, BUF)), 0);
        assert_eq!(answered_size(&env), size);
        let records = parse(&env.mem[BUF as usize..][..size as usize]);
        let order: Vec<(u16, u16)> = records.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(order, [(1, 0), (2, 0), (2, 1), (14, 0), (14, 1), (0, 0)]);
        let h = HvmSaveHeader::read_from_bytes(&records[0].2).unwrap();
        assert_eq!(
            (h.magic, h.version, h.cpuid, h.gtsc_khz),
            (HVM_FILE_MAGIC, 1, 0x00A0_0F11, 2_000_000)
        );
        let cpu1 = HvmHwCpu::read_from_bytes(&records[2].2).unwrap();
        assert_eq!(cpu1.rip, 0x2222);
        let mtrr = HvmHwMtrr::read_from_bytes(&records[3].2).unwrap();
        assert_eq!(mtrr.msr_mtrr_def_type, 0xC06);
        // A vCPU that is down has no CPU record (as Xen); the size query
        // still counts it.
        peer(&mut env).0.vcpus[1].up = false;
        assert_eq!(domctl(&mut d, &mut env, &get(size, BUF)), 0);
        assert_eq!(answered_size(&env), size - (8 + 1032));
        let records = parse(&env.mem[BUF as usize..][..(size - 1040) as usize]);
        let order: Vec<(u16, u16)> = records.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(order, [(1, 0), (2, 0), (14, 0), (14, 1), (0, 0)]);
        // Not of itself; not while a vCPU runs; not of nobody.
        assert_eq!(
            domctl(
                &mut d,
                &mut env,
                &hvmcontext(XEN_DOMCTL_GETHVMCONTEXT, 0, 0, 0)
            ),
            ret(errno::EINVAL)
        );
        env.peer_on_cpu = true;
        assert_eq!(domctl(&mut d, &mut env, &get(size, BUF)), ret(errno::EBUSY));
        assert_eq!(
            domctl(
                &mut d,
                &mut env,
                &hvmcontext(XEN_DOMCTL_GETHVMCONTEXT, 5, 0, 0)
            ),
            ret(errno::ESRCH)
        );
    }

    /// A libxc-shaped context: HEADER, CPU 0 (entry `rip`, start info in
    /// EBX), MTRR 0 (write-back, enabled), END.
    fn libxc_context(rip: u64, rbx: u64) -> Vec<u8> {
        use crate::hvm_save::tests::{blob, boot_cpu};
        use rxen_abi::hvm_save::*;
        let mtrr = HvmHwMtrr {
            msr_pat_cr: 0x0007_0406_0007_0406,
            msr_mtrr_def_type: MTRR_TYPE_WRBACK | MTRR_DEF_TYPE_ENABLE,
            ..Default::default()
        };
        blob(&[
            (HVM_SAVE_CODE_CPU, 0, boot_cpu(rip, rbx).as_bytes()),
            (HVM_SAVE_CODE_MTRR, 0, mtrr.as_bytes()),
        ])
    }

    fn set_from(env: &mut FakeEnv, domain: DomId, bytes: &[u8]) -> XenDomctl {
        env.mem[BUF as usize..][..bytes.len()].copy_from_slice(bytes);
        hvmcontext(XEN_DOMCTL_SETHVMCONTEXT, domain, bytes.len() as u32, BUF)
    }

    #[test]
    fn sethvmcontext_brings_vcpu0_up_as_libxc_asks() {
        let (mut d, mut env) = dom0_and_domu();
        {
            let v = &mut peer(&mut env).0.vcpus;
            v[0].up = false;
            v[0].initialised = false;
            v[1].up = true;
        }
        let set = set_from(&mut env, 2, &libxc_context(0x10_0000, 0x7000));
        assert_eq!(domctl(&mut d, &mut env, &set), 0);
        let (cpu, (pat, def_type)) = env.hvm[&(2, 0)];
        assert_eq!(
            (cpu.rip, cpu.rbx, cpu.cs_arbytes),
            (0x10_0000, 0x7000, 0xC9B)
        );
        assert_eq!((pat, def_type), (0x0007_0406_0007_0406, 0x806));
        let v = &peer(&mut env).0.vcpus;
        assert!(v[0].up && v[0].initialised);
        assert!(
            !v[1].up,
            "every vCPU without a CPU record goes down, as on Xen"
        );
        // What was set is what a get gives back.
        assert_eq!(
            domctl(
                &mut d,
                &mut env,
                &hvmcontext(XEN_DOMCTL_GETHVMCONTEXT, 2, 0x4000, BUF)
            ),
            0
        );
        let size = answered_size(&env) as usize;
        let records = parse(&env.mem[BUF as usize..][..size]);
        let cpu = rxen_abi::hvm_save::HvmHwCpu::read_from_bytes(&records[1].2).unwrap();
        assert_eq!((records[1].0, cpu.rip, cpu.rbx), (2, 0x10_0000, 0x7000));
        // And it loads again as it came.
        let again = env.mem[BUF as usize..][..size].to_vec();
        let set = set_from(&mut env, 2, &again);
        assert_eq!(domctl(&mut d, &mut env, &set), 0);
        // libxc 4.17 sends each vCPU's MTRR on its own (no CPU record):
        // every vCPU goes down until the boot CPU's context comes.
        let mtrr_only = crate::hvm_save::tests::blob(&[(
            14,
            1,
            rxen_abi::hvm_save::HvmHwMtrr::default().as_bytes(),
        )]);
        let set = set_from(&mut env, 2, &mtrr_only);
        assert_eq!(domctl(&mut d, &mut env, &set), 0);
        assert!(!peer(&mut env).0.vcpus[0].up);
    }

    #[test]
    fn sethvmcontext_refuses_bad_contexts_and_applies_nothing() {
        use crate::hvm_save::tests::{blob, boot_cpu};
        let (mut d, mut env) = dom0_and_domu();
        let good = libxc_context(0x10_0000, 0x7000);
        let cpu = boot_cpu(0x10_0000, 0);
        let mut bad_magic = good.clone();
        bad_magic[8] ^= 0xFF;
        let mut bad_version = good.clone();
        bad_version[12] = 2;
        let mut past_end = good.clone();
        past_end[36..40].copy_from_slice(&0x1_0000u32.to_le_bytes());
        let mut long_cpu = good.clone();
        long_cpu[36..40].copy_from_slice(&1040u32.to_le_bytes());
        let no_end = good[..good.len() - 8].to_vec();
        let mut bad_cr0 = cpu;
        bad_cr0.cr0 = 1;
        let mut bad_efer = cpu;
        bad_efer.msr_efer = 1 << 10;
        let cases: [(Vec<u8>, Errno); 11] = [
            (bad_magic, errno::EINVAL),
            (bad_version, errno::EINVAL),
            (good[..20].to_vec(), errno::ENODATA),
            (no_end, errno::ENODATA),
            (past_end, errno::EINVAL),
            (long_cpu, errno::EINVAL),
            (blob(&[(99, 0, &[0; 16])]), errno::EINVAL),
            (blob(&[(5, 0, &[0; 8])]), errno::EINVAL),
            (blob(&[(2, 2, cpu.as_bytes())]), errno::EINVAL),
            (blob(&[(2, 0, bad_cr0.as_bytes())]), errno::EINVAL),
            (
                blob(&[(2, 0, cpu.as_bytes()), (2, 0, bad_efer.as_bytes())]),
                errno::EINVAL,
            ),
        ];
        for (bytes, want) in cases {
            let set = set_from(&mut env, 2, &bytes);
            assert_eq!(domctl(&mut d, &mut env, &set), ret(want), "{bytes:x?}");
            assert!(env.hvm.is_empty(), "nothing loaded");
            let v = &peer(&mut env).0.vcpus;
            assert!(v[0].up && !v[1].up, "no vCPU changed");
        }
        // Too big to take: refused before anything is read.
        let huge = hvmcontext(XEN_DOMCTL_SETHVMCONTEXT, 2, u32::MAX, BUF);
        assert_eq!(domctl(&mut d, &mut env, &huge), ret(errno::ENOMEM));
        let unmapped = hvmcontext(XEN_DOMCTL_SETHVMCONTEXT, 2, good.len() as u32, BAD);
        assert_eq!(domctl(&mut d, &mut env, &unmapped), ret(errno::EFAULT));
        // Not its own; not while a vCPU of the target runs.
        let own = set_from(&mut env, 0, &good);
        assert_eq!(domctl(&mut d, &mut env, &own), ret(errno::EINVAL));
        env.peer_on_cpu = true;
        let set = set_from(&mut env, 2, &good);
        assert_eq!(domctl(&mut d, &mut env, &set), ret(errno::EBUSY));
        assert!(env.hvm.is_empty());
        // A domU may not.
        let (mut domu, mut env) = two_domains();
        let set = set_from(&mut env, 2, &good);
        assert_eq!(domctl(&mut domu, &mut env, &set), ret(errno::EPERM));
    }
}
