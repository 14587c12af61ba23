//! Hypercall dispatch and the handlers of the core hypercalls: xen_version,
//! console_io, sched_op, memory_op, hvm_op, vcpu_op, set_timer_op and
//! multicall. Every argument comes from the guest and is validated here;
//! every failure is a Xen errno, never a panic.
//!
//! The platform gives access to the calling guest through [`GuestEnv`]:
//! copies by guest linear address (the guest's own page tables), the clock,
//! the console and the few changes to the nested page tables that
//! hypercalls make.

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU32;

use rxen_abi::errno::{self, Errno};
use rxen_abi::{hvm, memory, sched, vcpu, version, xen};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

use crate::domain::{DomId, Domain, GuestMemRegion, ShutdownReason};
use crate::event_channel::PortState;
use crate::event_fifo;
use crate::shared_page::SharedPage;
use crate::time::RunstateKind;
use rxen_abi::hvm_vcpu::{VcpuHvmContext, VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B};

/// `DOMID_SELF`.
const DOMID_SELF: DomId = 0x7FF0;
/// `MEMOP_CMD_MASK`: the low bits of a memory_op command.
const MEMOP_CMD_MASK: u64 = 0x3F;
/// Most ports SCHEDOP_poll takes.
const MAX_POLL_PORTS: u32 = 128;
/// Xen's `STIME_DELTA_MAX`: the longest period or timer delta it takes.
pub const STIME_DELTA_MAX: u64 = u64::MAX >> 2;
/// Shortest period of VCPUOP_set_periodic_timer (Xen's `MILLISECS(1)`).
const MIN_PERIODIC_NS: u64 = 1_000_000;
/// set_timer_op: a timeout this far ahead or more (about 13 days) is a
/// guest's wrapped jiffies, as Xen reads it.
const HUGE_TIMEOUT_NS: u64 = 1 << 50;
/// set_timer_op: where Xen puts a huge or negative timeout instead.
const HUGE_TIMEOUT_RETRY_NS: u64 = 100_000_000;
/// Largest console write copied per chunk.
const CONSOLE_CHUNK: usize = 256;
/// Most bytes of a console write emitted per exit; the rest continues
/// (Xen's `guest_console_write` preempts between its 127-byte chunks).
pub const CONSOLE_WRITE_BATCH: u64 = 4096;
/// Most multicall entries run per exit; the rest continues (Xen checks for
/// preemption before every entry but the first).
pub const MULTICALL_BATCH: u64 = 64;

/// What the platform provides to hypercall handlers for the calling vCPU.
pub trait GuestEnv {
    /// Copies from the guest's linear address `addr`.
    fn copy_from_guest(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies to the guest's linear address `addr`.
    fn copy_to_guest(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Writes guest-physical memory (a plain copy: for memory the guest
    /// does not share with the hypervisor at that moment).
    fn write_guest_phys(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Reads guest-physical memory.
    fn read_guest_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Runs `f` once on the domain's shared-info page (mapped into the
    /// guest or not), which the guest's vCPUs may be writing meanwhile.
    fn shared_info(&mut self, f: &mut dyn FnMut(SharedPage<'_>));
    /// Runs `f` once on guest frame `gfn` of the domain's own RAM (a
    /// registered `vcpu_info`), which the guest's vCPUs may be writing
    /// meanwhile: `-EFAULT` if `gfn` is not (or no longer) the domain's
    /// own RAM.
    fn guest_page(&mut self, gfn: u64, f: &mut dyn FnMut(SharedPage<'_>)) -> Result<(), Errno>;
    /// System time in nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// The guest's TSC now and the system time at that instant.
    fn time_snapshot(&self) -> (u64, u64);
    /// The TSC-to-ns scale.
    fn time_scale(&self) -> crate::time::TimeScale;
    /// Wall-clock time (seconds, nanoseconds) at system time 0.
    fn wallclock_base(&self) -> (u64, u32);
    /// Writes guest console output (the platform prefixes the domain).
    fn console_write(&mut self, domid: DomId, text: &[u8]);
    /// Reads pending console input.
    fn console_read(&mut self, buf: &mut [u8]) -> usize;
    /// Maps the domain's shared-info page at `gfn` in its physical map.
    fn map_shared_info(&mut self, gfn: u64) -> Result<(), Errno>;
    /// The hypervisor command line (XENVER_commandline).
    fn hypervisor_cmdline(&self) -> &str;
    /// The host's memory map (XENMEM_machine_memory_map).
    fn host_memory_map(&self) -> Vec<GuestMemRegion>;
    /// The highest host RAM page + 1.
    fn host_max_page(&self) -> u64;
    /// Runs `f` on another domain `domid` (never the caller) with an
    /// environment over that domain's memory; `-ESRCH` if there is none.
    fn with_domain(
        &mut self,
        domid: DomId,
        f: &mut dyn FnMut(&mut Domain, &mut dyn GuestEnv),
    ) -> Result<(), Errno> {
        let _ = (domid, f);
        Err(errno::ESRCH)
    }
    /// `grant_table_op(cmd, arg, count)` of domain `caller`: the platform
    /// runs [`crate::grant_table::grant_table_op`] with the machine's grant
    /// tables and memory (`-ENOSYS` where there are none).
    fn grant_table_op(
        &mut self,
        caller: DomId,
        cmd: u32,
        arg: u64,
        count: u32,
    ) -> Result<crate::grant_table::Progress, Errno> {
        let _ = (caller, cmd, arg, count);
        Err(errno::ENOSYS)
    }
    /// The guest notified the hypervisor's console backend: take what it
    /// wrote to its PV console ring. Returns whether anything was taken (the
    /// guest is then notified back, as xenconsoled does).
    fn console_ring_kick(&mut self, domid: DomId) -> bool {
        let _ = domid;
        false
    }
    /// XENMEM_add_to_physmap, space `XENMAPSPACE_grant_table`: maps grant
    /// frame `idx` of `caller` at `gpfn` (through
    /// [`crate::grant_table::GrantTable::add_to_physmap`]).
    fn map_grant_frame(&mut self, caller: DomId, idx: u64, gpfn: u64) -> Result<(), Errno> {
        let _ = (caller, idx, gpfn);
        Err(errno::EINVAL)
    }
    /// Runs `f` on the aligned 32-bit word of guest-physical memory at
    /// `gpa`, which the guest may be writing at the same time (FIFO event
    /// words and control blocks): `-EFAULT` if `gpa` is not 4-byte aligned
    /// or not the domain's RAM.
    fn guest_atomic_u32(&mut self, gpa: u64, f: &mut dyn FnMut(&AtomicU32)) -> Result<(), Errno> {
        let _ = (gpa, f);
        Err(errno::EFAULT)
    }
}

/// What the vCPU does after the hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Return to the guest.
    Continue,
    /// Give up the CPU, then continue.
    Yield,
    /// Block until an event or the deadline (system time).
    Block(Option<u64>),
    /// The domain shut down.
    Shutdown(ShutdownReason),
    /// Xen's `hypercall_create_continuation`: the hypercall stopped after a
    /// bounded amount of work. The platform puts `args` into the guest's
    /// argument registers and leaves its instruction pointer on the
    /// hypercall instruction, so that the guest issues the same hypercall
    /// again with these arguments (after any interrupt it takes first);
    /// the outcome's `ret` is not the guest's result and is not written.
    Continuation {
        /// The hypercall's five arguments for the next round.
        args: [u64; 5],
    },
}

/// The result of a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Value for the guest's RAX.
    pub ret: i64,
    /// What happens next.
    pub next: Next,
}

impl Outcome {
    /// Re-issue the hypercall with `args` (its number stays in RAX).
    fn continuation(nr: u64, args: [u64; 5]) -> Self {
        Self {
            ret: nr as i64,
            next: Next::Continuation { args },
        }
    }

    fn value(ret: i64) -> Self {
        Self {
            ret,
            next: Next::Continue,
        }
    }

    fn error(e: Errno) -> Self {
        Self::value(e.to_hypercall_ret())
    }
}

fn from_result(result: Result<i64, Errno>) -> Outcome {
    match result {
        Ok(value) => Outcome::value(value),
        Err(e) => Outcome::error(e),
    }
}

/// Copies between the hypervisor and the calling vCPU's linear memory: all
/// that reading and writing hypercall arguments needs. Every [`GuestEnv`]
/// is one; other environments (the grant-table platform) can be one too.
pub trait GuestCopy {
    /// Copies from guest linear memory (`-EFAULT` if unmapped).
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies to guest linear memory (`-EFAULT` if unmapped or read-only).
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno>;
}

impl<E: GuestEnv + ?Sized> GuestCopy for E {
    fn copy_in(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.copy_from_guest(addr, buf)
    }
    fn copy_out(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
        self.copy_to_guest(addr, buf)
    }
}

/// Reads a `T` from guest linear address `addr`.
pub fn read_guest<T: FromBytes + IntoBytes>(
    env: &mut (impl GuestCopy + ?Sized),
    addr: u64,
) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    env.copy_in(addr, value.as_mut_bytes())?;
    Ok(value)
}

/// Writes `value` to guest linear address `addr`.
pub fn write_guest<T: IntoBytes + Immutable>(
    env: &mut (impl GuestCopy + ?Sized),
    addr: u64,
    value: &T,
) -> Result<(), Errno> {
    env.copy_out(addr, value.as_bytes())
}

/// Runs hypercall `nr` with `args` for vCPU `vcpu` of `domain`, called at
/// privilege level `cpl`.
pub fn dispatch(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    nr: u64,
    args: [u64; 5],
    cpl: u8,
) -> Outcome {
    if cpl != 0 {
        return Outcome::error(errno::EPERM);
    }
    if vcpu >= domain.vcpus.len() {
        return Outcome::error(errno::EINVAL);
    }
    match nr {
        // Xen takes `unsigned int nr_calls`.
        xen::HYPERVISOR_MULTICALL => multicall(domain, vcpu, env, args),
        _ => call(domain, vcpu, env, nr, args),
    }
}

fn call(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    nr: u64,
    args: [u64; 5],
) -> Outcome {
    match nr {
        xen::HYPERVISOR_XEN_VERSION => from_result(xen_version(domain, env, args[0], args[1])),
        xen::HYPERVISOR_CONSOLE_IO => console_io(domain, env, args),
        xen::HYPERVISOR_SCHED_OP => sched_op(domain, vcpu, env, args[0], args[1]),
        xen::HYPERVISOR_MEMORY_OP => from_result(memory_op(domain, env, args[0], args[1])),
        xen::HYPERVISOR_HVM_OP => from_result(hvm_op(domain, env, args[0], args[1])),
        xen::HYPERVISOR_VCPU_OP => {
            let running = domain.shutdown.is_none();
            let outcome = from_result(vcpu_op(domain, vcpu, env, args[0], args[1], args[2]));
            match domain.shutdown {
                // VCPUOP_down of the last vCPU powered the domain off.
                Some(reason) if running => Outcome {
                    ret: outcome.ret,
                    next: Next::Shutdown(reason),
                },
                _ => outcome,
            }
        }
        xen::HYPERVISOR_EVENT_CHANNEL_OP => {
            from_result(event_channel_op(domain, env, args[0], args[1]))
        }
        // Xen takes `unsigned int cmd, ..., unsigned int count`.
        xen::HYPERVISOR_GRANT_TABLE_OP => {
            use crate::grant_table::Progress;
            match env.grant_table_op(domain.id, args[0] as u32, args[1], args[2] as u32) {
                Ok(Progress::Done(ret)) => Outcome::value(ret),
                // A preempted batch: the same command on the rest.
                Ok(Progress::More { arg, count }) => {
                    let mut next = args;
                    next[1] = arg;
                    next[2] = u64::from(count);
                    Outcome::continuation(nr, next)
                }
                Err(e) => Outcome::error(e),
            }
        }
        xen::HYPERVISOR_SET_TIMER_OP => {
            set_timer_op(domain, vcpu, env, args[0]);
            Outcome::value(0)
        }
        xen::HYPERVISOR_MULTICALL => Outcome::error(errno::EINVAL),
        // No VM assist type is valid for HVM/PVH guests: every request is
        // -EINVAL, as on Xen.
        xen::HYPERVISOR_VM_ASSIST => Outcome::error(errno::EINVAL),
        _ => Outcome::error(errno::ENOSYS),
    }
}

/// `multicall(call_list, nr_calls)`: each entry's result is written back;
/// a shutdown ends the batch. At most [`MULTICALL_BATCH`] entries run per
/// exit, then the multicall continues with `call_list` advanced and
/// `nr_calls` reduced, as Xen's `do_multicall` does when preempted. An
/// entry that itself continues has its arguments rewritten in the guest's
/// list and the multicall continues at that entry (Xen copies the sub-call
/// continuation back the same way). An entry that blocks ends the batch:
/// the vCPU blocks and the rest of the list runs when it wakes (in Xen the
/// block raises the scheduler softirq, which preempts the multicall).
fn multicall(domain: &mut Domain, vcpu: usize, env: &mut dyn GuestEnv, args: [u64; 5]) -> Outcome {
    let (list, count) = (args[0], args[1] as u32 as u64);
    let entry_size = core::mem::size_of::<xen::MulticallEntry>() as u64;
    // Entry `index`'s address (`index` < 2^32: the product cannot overflow).
    let entry_at = |index: u64| list.checked_add(index * entry_size);
    // The multicall's own continuation: the list from entry `index` on.
    let rest = |index: u64| match entry_at(index) {
        Some(at) => {
            let mut next = args;
            next[0] = at;
            next[1] = count - index;
            Outcome::continuation(xen::HYPERVISOR_MULTICALL, next)
        }
        None => Outcome::error(errno::EFAULT),
    };
    for index in 0..count {
        if index == MULTICALL_BATCH {
            return rest(index);
        }
        let Some(addr) = entry_at(index) else {
            return Outcome::error(errno::EFAULT);
        };
        let mut entry: xen::MulticallEntry = match read_guest(env, addr) {
            Ok(entry) => entry,
            Err(e) => return Outcome::error(e),
        };
        let args = [
            entry.args[0],
            entry.args[1],
            entry.args[2],
            entry.args[3],
            entry.args[4],
        ];
        // A nested multicall is refused per entry, as Xen does.
        let outcome = call(domain, vcpu, env, entry.op, args);
        if let Next::Continuation { args } = outcome.next {
            // The entry continues: its new arguments go back to the list,
            // and the multicall resumes at this entry.
            entry.args[..5].copy_from_slice(&args);
            if let Err(e) = write_guest(env, addr, &entry) {
                return Outcome::error(e);
            }
            return rest(index);
        }
        entry.result = outcome.ret as u64;
        if let Err(e) = write_guest(env, addr, &entry) {
            return Outcome::error(e);
        }
        let more = index + 1 < count;
        match outcome.next {
            Next::Continue | Next::Continuation { .. } => {}
            Next::Shutdown(_) => {
                return Outcome {
                    ret: 0,
                    next: outcome.next,
                }
            }
            Next::Block(deadline) if more => {
                domain.vcpus[vcpu].blocked = Some(deadline);
                return rest(index + 1);
            }
            Next::Yield if more => return rest(index + 1),
            other => {
                return Outcome {
                    ret: 0,
                    next: other,
                }
            }
        }
    }
    Outcome::value(0)
}

fn copy_str(dst: &mut [u8], text: &str) {
    let n = text.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&text.as_bytes()[..n]);
}

/// Feature bits of submap 0 for a PVH/HVM guest, as Xen 4.17 sets them.
pub fn feature_submap0(domain: &Domain) -> u32 {
    use rxen_abi::features::*;
    let mut bits = (1 << XENFEAT_WRITABLE_PAGE_TABLES)
        | (1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP)
        | (1 << XENFEAT_HVM_CALLBACK_VECTOR)
        | (1 << XENFEAT_HVM_SAFE_PVCLOCK)
        | (1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED)
        | (1 << XENFEAT_NOT_DIRECT_MAPPED);
    if domain.privileged {
        bits |= 1 << XENFEAT_DOM0;
    }
    bits
}

fn xen_version(domain: &Domain, env: &mut dyn GuestEnv, cmd: u64, arg: u64) -> Result<i64, Errno> {
    // Xen takes `int cmd`: the upper half of the register is ignored.
    match cmd as u32 {
        version::XENVER_VERSION => Ok(rxen_abi::version::xen_version_word() as i64),
        version::XENVER_EXTRAVERSION => {
            let mut extra = version::XenExtraversion::default();
            copy_str(&mut extra.0, "-rxen");
            write_guest(env, arg, &extra).map(|_| 0)
        }
        version::XENVER_COMPILE_INFO => {
            let mut info = version::XenCompileInfo::new_zeroed();
            copy_str(&mut info.compiler, "rustc");
            copy_str(&mut info.compile_by, "rxen");
            copy_str(&mut info.compile_domain, "rxen.invalid");
            copy_str(&mut info.compile_date, env!("CARGO_PKG_VERSION"));
            write_guest(env, arg, &info).map(|_| 0)
        }
        version::XENVER_CAPABILITIES => {
            let mut caps = version::XenCapabilitiesInfo::new_zeroed();
            copy_str(&mut caps.0, "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
            write_guest(env, arg, &caps).map(|_| 0)
        }
        version::XENVER_CHANGESET => {
            let mut changeset = version::XenChangesetInfo::new_zeroed();
            copy_str(
                &mut changeset.0,
                concat!("rxen ", env!("CARGO_PKG_VERSION")),
            );
            write_guest(env, arg, &changeset).map(|_| 0)
        }
        version::XENVER_PLATFORM_PARAMETERS => {
            let params = version::XenPlatformParameters {
                virt_start: 0xFFFF_8000_0000_0000,
            };
            write_guest(env, arg, &params).map(|_| 0)
        }
        version::XENVER_GET_FEATURES => {
            let mut info: version::XenFeatureInfo = read_guest(env, arg)?;
            if info.submap_idx >= rxen_abi::features::XENFEAT_NR_SUBMAPS {
                return Err(errno::EINVAL);
            }
            info.submap = feature_submap0(domain);
            write_guest(env, arg, &info).map(|_| 0)
        }
        version::XENVER_PAGESIZE => Ok(4096),
        version::XENVER_GUEST_HANDLE => {
            let handle = version::XenDomainHandle(domain.handle);
            write_guest(env, arg, &handle).map(|_| 0)
        }
        version::XENVER_COMMANDLINE => {
            if !domain.privileged {
                return Err(errno::EPERM);
            }
            let mut line = version::XenCommandline::new_zeroed();
            let text = alloc::string::String::from(env.hypervisor_cmdline());
            copy_str(&mut line.0, &text);
            write_guest(env, arg, &line).map(|_| 0)
        }
        _ => Err(errno::ENOSYS),
    }
}

/// `console_io(cmd, count, buffer)`. Xen takes `unsigned int` for both
/// `cmd` and `count`. A write emits at most [`CONSOLE_WRITE_BATCH`] bytes per
/// exit and continues with the rest, as Xen's `guest_console_write` does;
/// the part before a fault is written, then the call fails with -EFAULT.
fn console_io(domain: &Domain, env: &mut dyn GuestEnv, args: [u64; 5]) -> Outcome {
    let (cmd, count, buffer) = (args[0] as u32, args[1] as u32 as u64, args[2]);
    match cmd {
        xen::CONSOLEIO_WRITE => {
            let mut done = 0u64;
            let mut chunk = [0u8; CONSOLE_CHUNK];
            while done < count {
                let Some(at) = buffer.checked_add(done) else {
                    return Outcome::error(errno::EFAULT);
                };
                if done == CONSOLE_WRITE_BATCH {
                    let mut next = args;
                    next[1] = count - done;
                    next[2] = at;
                    return Outcome::continuation(xen::HYPERVISOR_CONSOLE_IO, next);
                }
                let n = (count - done).min(CONSOLE_CHUNK as u64) as usize;
                if let Err(e) = env.copy_from_guest(at, &mut chunk[..n]) {
                    return Outcome::error(e);
                }
                env.console_write(domain.id, &chunk[..n]);
                done += n as u64;
            }
            Outcome::value(0)
        }
        xen::CONSOLEIO_READ => {
            if !domain.privileged {
                return Outcome::error(errno::EPERM);
            }
            let mut data = vec![0u8; count.min(4096) as usize];
            let n = env.console_read(&mut data);
            from_result(env.copy_to_guest(buffer, &data[..n]).map(|_| n as i64))
        }
        _ => Outcome::error(errno::ENOSYS),
    }
}

fn sched_op(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    cmd: u64,
    arg: u64,
) -> Outcome {
    // Xen takes `int cmd`.
    match cmd as u32 {
        sched::SCHEDOP_YIELD => Outcome {
            ret: 0,
            next: Next::Yield,
        },
        sched::SCHEDOP_BLOCK => {
            // As Xen's do_block: event delivery on, and no sleep if an event
            // is already waiting.
            set_upcall_mask(domain, vcpu, env, 0);
            domain.vcpus[vcpu].poll_ports.clear();
            if upcall_pending(domain, vcpu, env) {
                Outcome::value(0)
            } else {
                Outcome {
                    ret: 0,
                    next: Next::Block(None),
                }
            }
        }
        sched::SCHEDOP_SHUTDOWN => match read_guest::<sched::SchedShutdown>(env, arg) {
            Ok(request) => {
                let reason = domain.shut_down(ShutdownReason::from_code(request.reason));
                Outcome {
                    ret: 0,
                    next: Next::Shutdown(reason),
                }
            }
            Err(e) => Outcome::error(e),
        },
        sched::SCHEDOP_SHUTDOWN_CODE => match read_guest::<sched::SchedShutdown>(env, arg) {
            Ok(request) => {
                domain.shutdown_code = Some(request.reason as u8);
                Outcome::value(0)
            }
            Err(e) => Outcome::error(e),
        },
        sched::SCHEDOP_POLL => match poll(domain, vcpu, env, arg) {
            Ok(Some(deadline)) => Outcome {
                ret: 0,
                next: Next::Block(deadline),
            },
            Ok(None) => Outcome::value(0),
            Err(e) => Outcome::error(e),
        },
        sched::SCHEDOP_REMOTE_SHUTDOWN => {
            match read_guest::<sched::SchedRemoteShutdown>(env, arg) {
                Err(e) => Outcome::error(e),
                Ok(_) if !domain.privileged => Outcome::error(errno::EPERM),
                Ok(request) if request.domain_id == domain.id => {
                    let reason = domain.shut_down(ShutdownReason::from_code(request.reason));
                    Outcome {
                        ret: 0,
                        next: Next::Shutdown(reason),
                    }
                }
                Ok(_) => Outcome::error(errno::ESRCH),
            }
        }
        sched::SCHEDOP_WATCHDOG => from_result(watchdog(domain, env, arg)),
        _ => {
            let _ = vcpu;
            Outcome::error(errno::ENOSYS)
        }
    }
}

/// Validates a `sched_poll`; returns the deadline (None: wait forever).
/// SCHEDOP_poll, as Xen's `do_poll`: -EINVAL for too many ports or a port
/// beyond the ABI's range; no sleep when an upcall is due or a polled port
/// is already pending; otherwise the vCPU blocks until one of the ports
/// becomes pending (masked or not), any event is delivered to it, or the
/// timeout passes. Returns the block's deadline, or None when it returns at
/// once.
fn poll(
    domain: &mut Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    arg: u64,
) -> Result<Option<Option<u64>>, Errno> {
    let request: sched::SchedPoll = read_guest(env, arg)?;
    if request.nr_ports > MAX_POLL_PORTS {
        return Err(errno::EINVAL);
    }
    let mut bytes = [0u8; MAX_POLL_PORTS as usize * 4];
    let bytes = &mut bytes[..request.nr_ports as usize * 4];
    env.copy_from_guest(request.ports, bytes)?;
    // Kept while the vCPU blocks: a heap allocation, which may fail.
    let mut ports: Vec<u32> = Vec::new();
    ports
        .try_reserve_exact(request.nr_ports as usize)
        .map_err(|_| errno::ENOMEM)?;
    ports.extend(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    if ports.iter().any(|&port| port >= domain.events.max_ports()) {
        return Err(errno::EINVAL);
    }
    if upcall_pending(domain, vcpu, env) {
        return Ok(None);
    }
    for &port in &ports {
        let pending = if domain.events.is_fifo() {
            event_fifo::is_pending(&domain.events, env, port)
        } else {
            with_shared_info(env, |page| crate::event_channel::is_pending(&page, port))
                .unwrap_or(false)
        };
        if pending {
            return Ok(None);
        }
    }
    domain.vcpus[vcpu].poll_ports = ports;
    Ok(Some((request.timeout != 0).then_some(request.timeout)))
}

/// Ends the poll of every vCPU of `domain` that waits on `port` (Xen's
/// `evtchn_check_pollers`).
fn wake_pollers(domain: &mut Domain, port: u32) {
    for v in domain.vcpus.iter_mut() {
        if v.blocked.is_some() && v.poll_ports.contains(&port) {
            v.blocked = None;
            v.poll_ports.clear();
        }
    }
}

fn watchdog(domain: &mut Domain, env: &mut dyn GuestEnv, arg: u64) -> Result<i64, Errno> {
    let request: sched::SchedWatchdog = read_guest(env, arg)?;
    let now = env.now_ns();
    let timeout_ns = request.timeout as u64 * crate::time::NSEC_PER_SEC;
    if request.id == 0 {
        let slot = domain
            .watchdogs
            .iter()
            .position(Option::is_none)
            .ok_or(errno::ENOSPC)?;
        domain.watchdogs[slot] = Some((timeout_ns, now + timeout_ns));
        return Ok(slot as i64 + 1);
    }
    let slot = (request.id as usize)
        .checked_sub(1)
        .filter(|s| *s < domain.watchdogs.len())
        .ok_or(errno::EINVAL)?;
    if domain.watchdogs[slot].is_none() {
        return Err(errno::EINVAL);
    }
    domain.watchdogs[slot] = (request.timeout != 0).then_some((timeout_ns, now + timeout_ns));
    Ok(0)
}

/// Resolves a `domid_t` argument to the caller itself.
fn own_domain(domain: &Domain, domid: DomId) -> Result<(), Errno> {
    if domid == DOMID_SELF || domid == domain.id {
        Ok(())
    } else if domain.privileged {
        Err(errno::ESRCH)
    } else {
        Err(errno::EPERM)
    }
}

fn memory_op(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    cmd: u64,
    arg: u64,
) -> Result<i64, Errno> {
    let op = (cmd & MEMOP_CMD_MASK) as u32;
    match op {
        memory::XENMEM_CURRENT_RESERVATION | memory::XENMEM_MAXIMUM_RESERVATION => {
            let mut domid = [0u8; 2];
            env.copy_from_guest(arg, &mut domid)?;
            own_domain(domain, u16::from_le_bytes(domid))?;
            Ok(if op == memory::XENMEM_CURRENT_RESERVATION {
                domain.tot_pages as i64
            } else {
                domain.max_pages as i64
            })
        }
        memory::XENMEM_MAXIMUM_RAM_PAGE => Ok(env.host_max_page() as i64),
        memory::XENMEM_MAXIMUM_GPFN => {
            let end = domain
                .memory_map
                .iter()
                .map(|r| r.addr.saturating_add(r.size))
                .max()
                .unwrap_or(0);
            Ok((end / 4096).saturating_sub(1) as i64)
        }
        memory::XENMEM_MEMORY_MAP => {
            let entries: Vec<GuestMemRegion> = domain.memory_map.clone();
            copy_memory_map(env, arg, &entries)
        }
        memory::XENMEM_MACHINE_MEMORY_MAP => {
            if !domain.privileged {
                return Err(errno::EPERM);
            }
            let entries = env.host_memory_map();
            copy_memory_map(env, arg, &entries)
        }
        memory::XENMEM_ADD_TO_PHYSMAP => {
            let request: memory::XenAddToPhysmap = read_guest(env, arg)?;
            own_domain(domain, request.domid)?;
            match request.space {
                memory::XENMAPSPACE_SHARED_INFO => {
                    if request.idx != 0 {
                        return Err(errno::EINVAL);
                    }
                    env.map_shared_info(request.gpfn)?;
                    write_shared_info_time(domain, env);
                    Ok(0)
                }
                memory::XENMAPSPACE_GRANT_TABLE => env
                    .map_grant_frame(domain.id, request.idx, request.gpfn)
                    .map(|_| 0),
                _ => Err(errno::EINVAL),
            }
        }
        _ => Err(errno::ENOSYS),
    }
}

/// XENMEM_memory_map / machine_memory_map: copies at most `nr_entries`
/// entries and writes back how many it copied.
fn copy_memory_map(
    env: &mut dyn GuestEnv,
    arg: u64,
    entries: &[GuestMemRegion],
) -> Result<i64, Errno> {
    let mut map: memory::XenMemoryMap = read_guest(env, arg)?;
    if entries.is_empty() {
        return Err(errno::ENOSYS);
    }
    let n = (map.nr_entries as usize).min(entries.len());
    for (index, region) in entries.iter().take(n).enumerate() {
        let entry = memory::E820Entry {
            addr: region.addr,
            size: region.size,
            type_: region.kind,
        };
        let at = map
            .buffer
            .checked_add(index as u64 * core::mem::size_of::<memory::E820Entry>() as u64);
        write_guest(env, at.ok_or(errno::EFAULT)?, &entry)?;
    }
    map.nr_entries = n as u32;
    write_guest(env, arg, &map).map(|_| 0)
}

/// May a guest set HVM param `index` on itself (Xen's hvm_allow_set_param)?
fn guest_may_set_param(index: u32) -> bool {
    matches!(
        index,
        hvm::HVM_PARAM_CALLBACK_IRQ
            | hvm::HVM_PARAM_VM86_TSS
            | hvm::HVM_PARAM_VM86_TSS_SIZED
            | hvm::HVM_PARAM_ACPI_IOPORTS_LOCATION
            | hvm::HVM_PARAM_VM_GENERATION_ID_ADDR
            | hvm::HVM_PARAM_STORE_EVTCHN
            | hvm::HVM_PARAM_CONSOLE_EVTCHN
            | hvm::HVM_PARAM_X87_FIP_WIDTH
    )
}

/// May a guest read HVM param `index` of itself (Xen's hvm_allow_get_param)?
fn guest_may_get_param(index: u32) -> bool {
    guest_may_set_param(index)
        || matches!(
            index,
            hvm::HVM_PARAM_STORE_PFN | hvm::HVM_PARAM_CONSOLE_PFN | hvm::HVM_PARAM_ALTP2M
        )
}

fn hvm_op(domain: &mut Domain, env: &mut dyn GuestEnv, cmd: u64, arg: u64) -> Result<i64, Errno> {
    // Xen takes `unsigned long op`: a value above 32 bits is no operation.
    let cmd = u32::try_from(cmd).map_err(|_| errno::ENOSYS)?;
    match cmd {
        hvm::HVMOP_SET_PARAM | hvm::HVMOP_GET_PARAM => {
            let mut param: hvm::XenHvmParam = read_guest(env, arg)?;
            own_domain(domain, param.domid)?;
            // NESTEDHVM is refused outright (Xen: nested virtualization of a
            // PVH domain cannot be changed or read by it).
            if param.index >= hvm::HVM_NR_PARAMS || param.index == hvm::HVM_PARAM_NESTEDHVM {
                return Err(errno::EINVAL);
            }
            if cmd == hvm::HVMOP_SET_PARAM {
                if !guest_may_set_param(param.index) {
                    return Err(errno::EPERM);
                }
                domain.hvm_params[param.index as usize] = param.value;
                Ok(0)
            } else {
                if !guest_may_get_param(param.index) {
                    return Err(errno::EPERM);
                }
                param.value = domain.hvm_params[param.index as usize];
                write_guest(env, arg, &param).map(|_| 0)
            }
        }
        hvm::HVMOP_PAGETABLE_DYING => {
            let request: hvm::XenHvmPagetableDying = read_guest(env, arg)?;
            if request.domid != DOMID_SELF && request.domid != domain.id {
                return Err(errno::EINVAL);
            }
            // A shadow-paging hint: with nested paging (HAP) Xen 4.17 refuses
            // it with -EINVAL.
            Err(errno::EINVAL)
        }
        hvm::HVMOP_GET_TIME => {
            let now = env.now_ns();
            write_guest(env, arg, &now).map(|_| 0)
        }
        hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
            let request: hvm::XenHvmEvtchnUpcallVector = read_guest(env, arg)?;
            if request.vector < 0x10 {
                return Err(errno::EINVAL);
            }
            let vcpu = domain
                .vcpus
                .get_mut(request.vcpu as usize)
                .ok_or(errno::ENOENT)?;
            vcpu.upcall_vector = Some(request.vector);
            // An upcall already pending is raised on the new vector.
            let target = request.vcpu as usize;
            if upcall_pending(domain, target, env) {
                domain.vcpus[target].lapic.set_irq(request.vector);
            }
            Ok(0)
        }
        _ => Err(errno::ENOSYS),
    }
}

/// Checks a `vcpu_hvm_context` the way Xen's `arch_set_info_hvm_guest`
/// does in substance: a known mode; in 64-bit mode paging, PAE and long
/// mode on and a canonical RIP; in 32-bit mode protected mode and present
/// code, data and stack segments.
fn check_hvm_context(context: &VcpuHvmContext) -> Result<(), Errno> {
    const CR0_PE: u64 = 1;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME: u64 = 1 << 8;
    const AR_PRESENT: u16 = 1 << 7;
    const AR_CODE: u16 = 1 << 3;
    match context.mode {
        VCPU_HVM_MODE_64B => {
            let r = context.x86_64();
            let canonical = (r.rip as i64) << 16 >> 16 == r.rip as i64;
            let ok = r.cr0 & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG
                && r.cr4 & CR4_PAE != 0
                && r.efer & EFER_LME != 0
                && canonical;
            ok.then_some(()).ok_or(errno::EINVAL)
        }
        VCPU_HVM_MODE_32B => {
            let r = context.x86_32();
            let data_ok = |ar: u16| ar & AR_PRESENT != 0 && ar & AR_CODE == 0;
            let ok = r.cr0 as u64 & CR0_PE != 0
                && r.cs_ar & AR_PRESENT != 0
                && r.cs_ar & AR_CODE != 0
                && data_ok(r.ds_ar)
                && data_ok(r.ss_ar)
                && data_ok(r.es_ar);
            ok.then_some(()).ok_or(errno::EINVAL)
        }
        _ => Err(errno::EINVAL),
    }
}

fn vcpu_op(
    domain: &mut Domain,
    current: usize,
    env: &mut dyn GuestEnv,
    cmd: u64,
    vcpuid: u64,
    arg: u64,
) -> Result<i64, Errno> {
    // Xen takes `int cmd, unsigned int vcpuid`.
    let target = vcpuid as u32 as usize;
    if target >= domain.vcpus.len() {
        return Err(errno::ENOENT);
    }
    let now = env.now_ns();
    match cmd as u32 {
        vcpu::VCPUOP_IS_UP => Ok(domain.vcpus[target].up as i64),
        vcpu::VCPUOP_INITIALISE => {
            // As Xen: a vCPU gets its initial state once.
            if domain.vcpus[target].initialised {
                return Err(errno::EEXIST);
            }
            let context: VcpuHvmContext = read_guest(env, arg)?;
            check_hvm_context(&context)?;
            let v = &mut domain.vcpus[target];
            v.initialised = true;
            v.pending_context = Some(context);
            Ok(0)
        }
        vcpu::VCPUOP_UP => {
            let v = &mut domain.vcpus[target];
            if !v.initialised {
                return Err(errno::EINVAL);
            }
            v.up = true;
            Ok(0)
        }
        vcpu::VCPUOP_DOWN => {
            if !domain.vcpus[target].up {
                return Ok(0);
            }
            // As Xen: the last vCPU going down powers the domain off.
            let others_up = domain
                .vcpus
                .iter()
                .enumerate()
                .any(|(i, v)| i != target && v.up);
            if !others_up {
                domain.shut_down(ShutdownReason::Poweroff);
                return Ok(0);
            }
            let v = &mut domain.vcpus[target];
            v.up = false;
            v.blocked = None;
            Ok(0)
        }
        vcpu::VCPUOP_GET_RUNSTATE_INFO => {
            let info = runstate_info(&domain.vcpus[target], now);
            write_guest(env, arg, &info).map(|_| 0)
        }
        vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            let area: vcpu::VcpuRegisterRunstateMemoryArea = read_guest(env, arg)?;
            let info = runstate_info(&domain.vcpus[target], now);
            if area.addr != 0 {
                // Xen ignores a failed first write; so do we.
                let _ = write_guest(env, area.addr, &info);
            }
            domain.vcpus[target].runstate_area = (area.addr != 0).then_some(area.addr);
            Ok(0)
        }
        vcpu::VCPUOP_SET_PERIODIC_TIMER => {
            let request: vcpu::VcpuSetPeriodicTimer = read_guest(env, arg)?;
            // As Xen: at least 1 ms, at most STIME_DELTA_MAX (a longer
            // period would overflow the expiry arithmetic).
            if request.period_ns < MIN_PERIODIC_NS || request.period_ns > STIME_DELTA_MAX {
                return Err(errno::EINVAL);
            }
            // Xen: the first tick is due at once.
            domain.vcpus[target].periodic = Some((request.period_ns, now));
            Ok(0)
        }
        vcpu::VCPUOP_STOP_PERIODIC_TIMER => {
            domain.vcpus[target].periodic = None;
            Ok(0)
        }
        vcpu::VCPUOP_SET_SINGLESHOT_TIMER => {
            if target != current {
                return Err(errno::EINVAL);
            }
            let request: vcpu::VcpuSetSingleshotTimer = read_guest(env, arg)?;
            // Xen 4.17.7 no longer answers -ETIME for VCPU_SSHOTTMR_future with
            // a time in the past: the timer fires at once.
            domain.vcpus[target].singleshot_deadline = Some(request.timeout_abs_ns);
            Ok(0)
        }
        vcpu::VCPUOP_STOP_SINGLESHOT_TIMER => {
            if target != current {
                return Err(errno::EINVAL);
            }
            domain.vcpus[target].singleshot_deadline = None;
            Ok(0)
        }
        vcpu::VCPUOP_REGISTER_VCPU_INFO => {
            let request: vcpu::VcpuRegisterVcpuInfo = read_guest(env, arg)?;
            let size = core::mem::size_of::<xen::VcpuInfo>() as u64;
            if request.offset as u64 > 4096 - size {
                return Err(errno::ENXIO);
            }
            if domain.vcpus[target].vcpu_info_gpa.is_some() {
                return Err(errno::EINVAL);
            }
            if !domain.gfn_is_ram(request.mfn) {
                return Err(errno::EINVAL);
            }
            let gpa = request.mfn * 4096 + request.offset as u64;
            env.write_guest_phys(gpa, xen::VcpuInfo::new_zeroed().as_bytes())?;
            domain.vcpus[target].vcpu_info_gpa = Some(gpa);
            write_vcpu_time(domain, target, env);
            Ok(0)
        }
        _ => Err(errno::ENOSYS),
    }
}

fn runstate_info(vcpu: &crate::domain::Vcpu, now: u64) -> vcpu::VcpuRunstateInfo {
    let mut info = vcpu::VcpuRunstateInfo::new_zeroed();
    info.state = vcpu.runstate.state as i32;
    info.state_entry_time = vcpu.runstate.entry_time;
    info.time = vcpu.runstate.times_at(now);
    info
}

/// `set_timer_op(timeout)`: 0 stops the single-shot timer; a negative
/// timeout or one 2^50 ns or more ahead fires in 100 ms instead, as Xen
/// does for Linux's wrapped jiffies.
fn set_timer_op(domain: &mut Domain, vcpu: usize, env: &mut dyn GuestEnv, timeout: u64) {
    let now = env.now_ns();
    domain.vcpus[vcpu].singleshot_deadline = if timeout == 0 {
        None
    } else if (timeout as i64) < 0 || timeout.saturating_sub(now) >= HUGE_TIMEOUT_NS {
        Some(now.saturating_add(HUGE_TIMEOUT_RETRY_NS))
    } else {
        Some(timeout)
    };
}

/// Where a vCPU's `vcpu_info` lives.
#[derive(Clone, Copy)]
enum VcpuInfoAt {
    /// At this byte offset of the shared-info page (the default for vCPUs
    /// below 32).
    SharedInfo(usize),
    /// At this guest-physical address (VCPUOP_register_vcpu_info).
    Guest(u64),
}

fn vcpu_info_at(domain: &Domain, vcpu: usize) -> Option<VcpuInfoAt> {
    if let Some(gpa) = domain.vcpus.get(vcpu)?.vcpu_info_gpa {
        return Some(VcpuInfoAt::Guest(gpa));
    }
    (vcpu < xen::XEN_LEGACY_MAX_VCPUS).then(|| {
        VcpuInfoAt::SharedInfo(
            core::mem::offset_of!(xen::SharedInfo, vcpu_info)
                + vcpu * core::mem::size_of::<xen::VcpuInfo>(),
        )
    })
}

/// Runs `f` once on the domain's shared-info page; `None` only from a
/// platform that broke that promise.
pub(crate) fn with_shared_info<R>(
    env: &mut dyn GuestEnv,
    f: impl FnOnce(SharedPage<'_>) -> R,
) -> Option<R> {
    let (mut f, mut result) = (Some(f), None);
    env.shared_info(&mut |page| {
        if let Some(f) = f.take() {
            result = Some(f(page));
        }
    });
    result
}

/// Runs `f` on the page holding vCPU `vcpu`'s `vcpu_info` and the byte
/// offset of the `vcpu_info` in it; `None` when the vCPU has none (or its
/// registered frame is gone).
fn with_vcpu_info<R>(
    domain: &Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    f: impl FnOnce(SharedPage<'_>, usize) -> R,
) -> Option<R> {
    match vcpu_info_at(domain, vcpu)? {
        VcpuInfoAt::SharedInfo(base) => with_shared_info(env, |page| f(page, base)),
        VcpuInfoAt::Guest(gpa) => {
            // Registration keeps the whole vcpu_info inside one page.
            let (mut f, mut result) = (Some(f), None);
            let at = (gpa % 4096) as usize;
            env.guest_page(gpa / 4096, &mut |page| {
                if let Some(f) = f.take() {
                    result = Some(f(page, at));
                }
            })
            .ok()?;
            result
        }
    }
}

/// Writes `bytes` at `offset` of vCPU `vcpu`'s `vcpu_info` (changing no
/// other byte of it).
fn vcpu_info_write(
    domain: &Domain,
    vcpu: usize,
    env: &mut dyn GuestEnv,
    offset: usize,
    bytes: &[u8],
) {
    with_vcpu_info(domain, vcpu, env, |page, base| {
        page.write(base + offset, bytes)
    });
}

/// Publishes the pvclock of vCPU `vcpu` with the odd/even version protocol.
pub fn write_vcpu_time(domain: &Domain, vcpu: usize, env: &mut dyn GuestEnv) {
    let at = core::mem::offset_of!(xen::VcpuInfo, time);
    let (tsc, system_time) = env.time_snapshot();
    let scale = env.time_scale();
    let time = xen::VcpuTimeInfo {
        version: 0,
        pad0: 0,
        tsc_timestamp: tsc,
        system_time,
        tsc_to_system_mul: scale.mul_frac,
        tsc_shift: scale.shift,
        flags: xen::XEN_PVCLOCK_TSC_STABLE_BIT,
        pad1: [0; 2],
    };
    // Version odd while updating, even when done; the guest retries on odd.
    let version = next_version();
    vcpu_info_write(domain, vcpu, env, at, &(version - 1).to_le_bytes());
    vcpu_info_write(domain, vcpu, env, at + 4, &time.as_bytes()[4..]);
    vcpu_info_write(domain, vcpu, env, at, &version.to_le_bytes());
}

/// Even version numbers handed out for pvclock and wall-clock updates.
static VERSION_COUNTER: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

fn next_version() -> u32 {
    VERSION_COUNTER
        .fetch_add(2, core::sync::atomic::Ordering::Relaxed)
        .wrapping_add(2)
        .max(2)
}

/// Publishes the wall clock and every vCPU's time in the shared-info page.
pub fn write_shared_info_time(domain: &Domain, env: &mut dyn GuestEnv) {
    let (sec, nsec) = env.wallclock_base();
    let version_at = core::mem::offset_of!(xen::SharedInfo, wc_version);
    let version = next_version();
    with_shared_info(env, |page| {
        page.store_u32(version_at, version - 1);
        page.store_u32(core::mem::offset_of!(xen::SharedInfo, wc_sec), sec as u32);
        page.store_u32(core::mem::offset_of!(xen::SharedInfo, wc_nsec), nsec);
        page.store_u32(
            core::mem::offset_of!(xen::SharedInfo, wc_sec_hi),
            (sec >> 32) as u32,
        );
        page.store_u32(version_at, version);
    });
    for vcpu in 0..domain.vcpus.len() {
        write_vcpu_time(domain, vcpu, env);
    }
}

/// Fires expired timers of vCPU `vcpu` at `now`, raising VIRQ_TIMER for
/// them (which wakes the vCPU if the VIRQ is bound, as on Xen), and ends a
/// poll whose deadline passed. As Xen stops a periodic timer while its vCPU
/// is not running, a blocked vCPU's periodic timer waits until it runs.
/// Returns whether a timer fired.
pub fn expire_timers(domain: &mut Domain, vcpu: usize, now: u64, env: &mut dyn GuestEnv) -> bool {
    let Some(v) = domain.vcpus.get_mut(vcpu) else {
        return false;
    };
    let mut fired = false;
    if v.singleshot_deadline.is_some_and(|d| d <= now) {
        v.singleshot_deadline = None;
        fired = true;
    }
    if let (Some((period, next)), None) = (v.periodic, v.blocked) {
        if next <= now {
            // Missed periods are skipped; the period is never 0 (checked
            // when set) and the sum saturates rather than wrap into the
            // past, which would fire the timer on every pass.
            let missed = (now - next) / period.max(1) + 1;
            let due = missed
                .checked_mul(period)
                .and_then(|skip| next.checked_add(skip))
                .unwrap_or(u64::MAX);
            v.periodic = Some((period, due));
            fired = true;
        }
    }
    if let Some(Some(deadline)) = v.blocked {
        if deadline <= now {
            v.blocked = None;
        }
    }
    // The local APIC's timer: its vector ends a block (HLT).
    if v.lapic.expire_timer(now) && v.lapic.has_pending() {
        v.blocked = None;
    }
    if fired {
        raise_virq(domain, vcpu, xen::VIRQ_TIMER, env);
    }
    fired
}

/// Raises `virq` on vCPU `vcpu` if the domain bound it.
pub fn raise_virq(domain: &mut Domain, vcpu: usize, virq: u32, env: &mut dyn GuestEnv) {
    if let Some(port) = domain.events.virq_port(virq, vcpu as u32) {
        deliver(domain, port, env);
    }
}

/// Byte offset of `evtchn_upcall_pending` in a `vcpu_info`.
const UPCALL_PENDING_AT: usize = core::mem::offset_of!(xen::VcpuInfo, evtchn_upcall_pending);
/// Byte offset of `evtchn_upcall_mask` in a `vcpu_info`.
const UPCALL_MASK_AT: usize = core::mem::offset_of!(xen::VcpuInfo, evtchn_upcall_mask);
/// Byte offset of `evtchn_pending_sel` in a `vcpu_info`.
const PENDING_SEL_AT: usize = core::mem::offset_of!(xen::VcpuInfo, evtchn_pending_sel);

/// Whether vCPU `vcpu` has an upcall pending that it has not masked.
pub fn upcall_pending(domain: &Domain, vcpu: usize, env: &mut dyn GuestEnv) -> bool {
    with_vcpu_info(domain, vcpu, env, |page, base| {
        page.load_u8(base + UPCALL_PENDING_AT).unwrap_or(0) != 0
            && page.load_u8(base + UPCALL_MASK_AT).unwrap_or(0) == 0
    })
    .unwrap_or(false)
}

fn set_upcall_mask(domain: &Domain, vcpu: usize, env: &mut dyn GuestEnv, value: u8) {
    with_vcpu_info(domain, vcpu, env, |page, base| {
        page.store_u8(base + UPCALL_MASK_AT, value)
    });
}

/// Tells vCPU `vcpu` that selector word `word` has events, as Xen's
/// `evtchn_2l_set_pending`: the selector bit with one atomic operation and,
/// when it was clear, `evtchn_upcall_pending` and the end of its block.
fn notify(domain: &mut Domain, vcpu: usize, word: usize, env: &mut dyn GuestEnv) {
    let was_set = with_vcpu_info(domain, vcpu, env, |page, base| {
        page.test_and_set_bit(base + PENDING_SEL_AT, word)
    })
    .flatten();
    if was_set != Some(true) {
        mark_events_pending(domain, vcpu, env);
    }
}

/// Sets `evtchn_upcall_pending` of vCPU `vcpu` (one atomic bit operation,
/// as Xen's `vcpu_mark_events_pending`; all the FIFO ABI signals) and ends
/// its block.
fn mark_events_pending(domain: &mut Domain, vcpu: usize, env: &mut dyn GuestEnv) {
    let was_pending = with_vcpu_info(domain, vcpu, env, |page, base| {
        page.test_and_set_bit(base + UPCALL_PENDING_AT, 0)
    })
    .flatten()
    .unwrap_or(false);
    if let Some(v) = domain.vcpus.get_mut(vcpu) {
        v.blocked = None;
        // As Xen's hvm_assert_evtchn_irq: the per-vCPU upcall vector is an
        // edge-triggered interrupt of the local APIC, raised when
        // `evtchn_upcall_pending` goes from 0 to 1 (the guest EOIs it).
        if let (Some(vector), false) = (v.upcall_vector, was_pending) {
            v.lapic.set_irq(vector);
        }
    }
}

/// Sets `port` pending and notifies its vCPU unless it is masked, with the
/// domain's ABI (2-level bitmap or FIFO queues).
fn deliver(domain: &mut Domain, port: u32, env: &mut dyn GuestEnv) {
    let Some(p) = domain.events.port(port) else {
        return;
    };
    wake_pollers(domain, port);
    if domain.events.is_fifo() {
        if let Some(vcpu) = event_fifo::set_pending(&mut domain.events, env, port) {
            mark_events_pending(domain, vcpu as usize, env);
        }
        return;
    }
    let word = with_shared_info(env, |page| crate::event_channel::set_pending(&page, port));
    if let Some(word) = word.flatten() {
        notify(domain, p.vcpu as usize, word, env);
    }
}

/// As Xen looks up the target of an operation on `target`'s channels: the
/// caller itself, or (for a privileged caller only) an existing domain;
/// `-ESRCH` for no such domain comes before `-EPERM`.
fn other_domain_access(
    domain: &Domain,
    env: &mut dyn GuestEnv,
    target: DomId,
) -> Result<(), Errno> {
    if target == domain.id {
        return Ok(());
    }
    env.with_domain(target, &mut |_, _| {})?;
    if domain.privileged {
        Ok(())
    } else {
        Err(errno::EPERM)
    }
}

/// EVTCHNOP_bind_interdomain: connects a new local port to `remote_port`
/// of `remote_dom`, which must be unbound and offered to the caller
/// (`-EINVAL` otherwise; `-ESRCH` for no such domain). As Xen, the new
/// local port starts pending: notifications sent to the unbound port
/// before the bind are not lost.
fn bind_interdomain(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    remote_dom: DomId,
    remote_port: u32,
) -> Result<u32, Errno> {
    let me = domain.id;
    let remote_dom = if remote_dom == DOMID_SELF {
        me
    } else {
        remote_dom
    };
    let local = if remote_dom == me {
        domain.events.check_offered(remote_port, me)?;
        let local = domain.events.bind_interdomain(me, remote_port)?;
        domain.events.connect(remote_port, me, local)?;
        local
    } else {
        let mut offered = Err(errno::EINVAL);
        env.with_domain(remote_dom, &mut |d, _| {
            offered = d.events.check_offered(remote_port, me)
        })?;
        offered?;
        let local = domain.events.bind_interdomain(remote_dom, remote_port)?;
        let mut connected = Err(errno::ESRCH);
        let _ = env.with_domain(remote_dom, &mut |d, _| {
            connected = d.events.connect(remote_port, me, local)
        });
        if let Err(e) = connected {
            let _ = domain.events.close(local);
            return Err(e);
        }
        local
    };
    deliver(domain, local, env);
    Ok(local)
}

/// The local end `port` of a channel to (`remote_dom`, `remote_port`)
/// closed: the remote end becomes unbound for this domain again.
fn disconnect_remote(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    port: u32,
    remote_dom: DomId,
    remote_port: u32,
) {
    let me = domain.id;
    if remote_dom == me {
        domain.events.disconnect(remote_port, me, port);
    } else {
        let _ = env.with_domain(remote_dom, &mut |d, _| {
            d.events.disconnect(remote_port, me, port)
        });
    }
}

/// A closed port has nothing pending, with the domain's ABI (Xen's
/// `evtchn_port_clear_pending` on close).
fn clear_pending(domain: &mut Domain, env: &mut dyn GuestEnv, port: u32) {
    if domain.events.is_fifo() {
        event_fifo::clear_pending(&mut domain.events, env, port);
    } else {
        with_shared_info(env, |page| crate::event_channel::clear_pending(&page, port));
    }
}

/// EVTCHNOP_reset (Xen's `evtchn_reset`): closes every port (the peers of
/// interdomain channels see their ends unbound again, nothing stays
/// pending) and returns to the 2-level ABI.
pub fn reset_event_channels(domain: &mut Domain, env: &mut dyn GuestEnv) {
    let mut next = domain.events.next_allocated(0);
    while let Some(port) = next {
        next = domain.events.next_allocated(port);
        let Ok(state) = domain.events.close(port) else {
            continue;
        };
        clear_pending(domain, env, port);
        if let PortState::Interdomain {
            remote_dom,
            remote_port,
        } = state
        {
            disconnect_remote(domain, env, port, remote_dom, remote_port);
        }
    }
    domain.events.leave_fifo();
}

/// Notifies a domain's PV console port (bound to the hypervisor's console
/// backend) that input arrived in its ring; nothing without such a port.
pub fn notify_console(domain: &mut Domain, env: &mut dyn GuestEnv) {
    let mut console = domain.events.next_allocated(0);
    while let Some(port) = console {
        if domain.events.port(port).map(|p| p.state) == Some(PortState::Console) {
            break;
        }
        console = domain.events.next_allocated(port);
    }
    if let Some(port) = console {
        deliver(domain, port, env);
    }
}

/// Closes every interdomain channel of a domain that is going away, so
/// that its peers see their ends unbound (Xen's `evtchn_destroy`).
pub fn close_interdomain_channels(domain: &mut Domain, env: &mut dyn GuestEnv) {
    let mut next = domain.events.next_interdomain(0);
    while let Some((port, remote_dom, remote_port)) = next {
        next = domain.events.next_interdomain(port);
        let _ = domain.events.close(port);
        disconnect_remote(domain, env, port, remote_dom, remote_port);
    }
}

fn event_channel_op(
    domain: &mut Domain,
    env: &mut dyn GuestEnv,
    cmd: u64,
    arg: u64,
) -> Result<i64, Errno> {
    use rxen_abi::event_channel as ev;
    // Xen takes `int cmd` and copies the argument in before anything else.
    match cmd as u32 {
        ev::EVTCHNOP_BIND_VIRQ => {
            let mut op: ev::EvtchnBindVirq = read_guest(env, arg)?;
            op.port = domain.events.bind_virq(op.virq, op.vcpu)?;
            write_guest(env, arg, &op).map(|_| 0)
        }
        ev::EVTCHNOP_BIND_IPI => {
            let mut op: ev::EvtchnBindIpi = read_guest(env, arg)?;
            op.port = domain.events.bind_ipi(op.vcpu)?;
            write_guest(env, arg, &op).map(|_| 0)
        }
        ev::EVTCHNOP_ALLOC_UNBOUND => {
            let mut op: ev::EvtchnAllocUnbound = read_guest(env, arg)?;
            let target = if op.dom == DOMID_SELF {
                domain.id
            } else {
                op.dom
            };
            // Xen: only a privileged domain allocates in another domain.
            other_domain_access(domain, env, target)?;
            let remote = if op.remote_dom == DOMID_SELF {
                domain.id
            } else {
                op.remote_dom
            };
            op.port = if target == domain.id {
                domain.events.alloc_unbound(remote)?
            } else {
                let mut port = Err(errno::ESRCH);
                env.with_domain(target, &mut |d, _| port = d.events.alloc_unbound(remote))?;
                port?
            };
            write_guest(env, arg, &op).map(|_| 0)
        }
        ev::EVTCHNOP_BIND_INTERDOMAIN => {
            let mut op: ev::EvtchnBindInterdomain = read_guest(env, arg)?;
            op.local_port = bind_interdomain(domain, env, op.remote_dom, op.remote_port)?;
            write_guest(env, arg, &op).map(|_| 0)
        }
        ev::EVTCHNOP_CLOSE => {
            let op: ev::EvtchnClose = read_guest(env, arg)?;
            let state = domain.events.close(op.port)?;
            clear_pending(domain, env, op.port);
            if let PortState::Interdomain {
                remote_dom,
                remote_port,
            } = state
            {
                disconnect_remote(domain, env, op.port, remote_dom, remote_port);
            }
            Ok(0)
        }
        ev::EVTCHNOP_SEND => {
            let op: ev::EvtchnSend = read_guest(env, arg)?;
            let port = domain.events.port(op.port).ok_or(errno::EINVAL)?;
            match port.state {
                PortState::Ipi => deliver(domain, op.port, env),
                PortState::Console => {
                    if env.console_ring_kick(domain.id) {
                        deliver(domain, op.port, env);
                    }
                }
                PortState::Virq(_) => return Err(errno::EINVAL),
                PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } if remote_dom == domain.id => deliver(domain, remote_port, env),
                PortState::Interdomain {
                    remote_dom,
                    remote_port,
                } => {
                    // A channel is torn down before its peer goes away; a
                    // vanished peer drops the event, as a closed port would.
                    let _ = env.with_domain(remote_dom, &mut |d, e| deliver(d, remote_port, e));
                }
                // Xen drops a send on an unbound port silently.
                PortState::Unbound { .. } | PortState::Free => {}
            }
            Ok(0)
        }
        ev::EVTCHNOP_STATUS => {
            let mut op: ev::EvtchnStatus = read_guest(env, arg)?;
            let target = if op.dom == DOMID_SELF {
                domain.id
            } else {
                op.dom
            };
            other_domain_access(domain, env, target)?;
            let port = if target == domain.id {
                domain.events.port(op.port)
            } else {
                let mut port = None;
                env.with_domain(target, &mut |d, _| port = d.events.port(op.port))?;
                port
            };
            op.vcpu = port.map(|p| p.vcpu).unwrap_or(0);
            op.u = [0; 8];
            op.status = match port.map(|p| p.state) {
                None => {
                    let limit = if target == domain.id {
                        domain.events.max_ports()
                    } else {
                        let mut limit = ev::EVTCHN_2L_NR_CHANNELS;
                        env.with_domain(target, &mut |d, _| limit = d.events.max_ports())?;
                        limit
                    };
                    if op.port >= limit {
                        return Err(errno::EINVAL);
                    }
                    ev::EVTCHNSTAT_CLOSED
                }
                Some(PortState::Unbound { remote }) => {
                    op.u[..2].copy_from_slice(&remote.to_le_bytes());
                    ev::EVTCHNSTAT_UNBOUND
                }
                Some(PortState::Virq(virq)) => {
                    op.u[..4].copy_from_slice(&virq.to_le_bytes());
                    ev::EVTCHNSTAT_VIRQ
                }
                Some(PortState::Ipi) => ev::EVTCHNSTAT_IPI,
                Some(PortState::Console) => {
                    // Connected to the hypervisor, port 0.
                    op.u[..2].copy_from_slice(&xen::DOMID_XEN.to_le_bytes());
                    ev::EVTCHNSTAT_INTERDOMAIN
                }
                Some(PortState::Interdomain {
                    remote_dom,
                    remote_port,
                }) => {
                    // `u.interdomain`: domid_t dom, 2 bytes of padding, port.
                    op.u[..2].copy_from_slice(&remote_dom.to_le_bytes());
                    op.u[4..].copy_from_slice(&remote_port.to_le_bytes());
                    ev::EVTCHNSTAT_INTERDOMAIN
                }
                Some(PortState::Free) => ev::EVTCHNSTAT_CLOSED,
            };
            write_guest(env, arg, &op).map(|_| 0)
        }
        ev::EVTCHNOP_UNMASK => {
            let op: ev::EvtchnUnmask = read_guest(env, arg)?;
            let port = domain.events.port(op.port).ok_or(errno::EINVAL)?;
            if domain.events.is_fifo() {
                if let Some(vcpu) = event_fifo::unmask(&mut domain.events, env, op.port) {
                    mark_events_pending(domain, vcpu as usize, env);
                }
            } else if let Some(Some(word)) =
                with_shared_info(env, |page| crate::event_channel::unmask(&page, op.port))
            {
                notify(domain, port.vcpu as usize, word, env);
            }
            Ok(0)
        }
        ev::EVTCHNOP_BIND_VCPU => {
            let op: ev::EvtchnBindVcpu = read_guest(env, arg)?;
            domain.events.bind_vcpu(op.port, op.vcpu).map(|_| 0)
        }
        // Physical IRQs and reset come later: the argument is still
        // checked first.
        ev::EVTCHNOP_BIND_PIRQ => {
            read_guest::<ev::EvtchnBindPirq>(env, arg).and(Err(errno::ENOSYS))
        }
        ev::EVTCHNOP_RESET => {
            let op: ev::EvtchnReset = read_guest(env, arg)?;
            let target = if op.dom == DOMID_SELF {
                domain.id
            } else {
                op.dom
            };
            if target != domain.id {
                other_domain_access(domain, env, target)?;
                // Xen resets another domain's channels only while its
                // controller has it paused; rxen cannot pause a domain yet.
                return Err(errno::EINVAL);
            }
            reset_event_channels(domain, env);
            Ok(0)
        }
        ev::EVTCHNOP_INIT_CONTROL => {
            let mut op: ev::EvtchnInitControl = read_guest(env, arg)?;
            // Xen fills in link_bits before it checks anything, but copies
            // the structure back only on success.
            op.link_bits = event_fifo::LINK_BITS;
            let ram = domain.gfn_is_ram(op.control_gfn);
            event_fifo::init_control(
                &mut domain.events,
                env,
                op.vcpu,
                op.control_gfn,
                op.offset,
                ram,
            )?;
            write_guest(env, arg, &op).map(|_| 0)
        }
        ev::EVTCHNOP_EXPAND_ARRAY => {
            let op: ev::EvtchnExpandArray = read_guest(env, arg)?;
            let ram = domain.gfn_is_ram(op.array_gfn);
            for vcpu in event_fifo::expand_array(&mut domain.events, env, op.array_gfn, ram)? {
                mark_events_pending(domain, vcpu as usize, env);
            }
            Ok(0)
        }
        ev::EVTCHNOP_SET_PRIORITY => {
            let op: ev::EvtchnSetPriority = read_guest(env, arg)?;
            event_fifo::set_priority(&mut domain.events, op.port, op.priority).map(|_| 0)
        }
        _ => Err(errno::ENOSYS),
    }
}

/// Marks the running state of a vCPU at `now` (for runstate accounting).
pub fn set_runstate(domain: &mut Domain, vcpu: usize, state: RunstateKind, now: u64) {
    if let Some(v) = domain.vcpus.get_mut(vcpu) {
        if v.runstate.state != state {
            v.runstate.change(state, now);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::time::TimeScale;

    /// A guest whose linear and physical addresses are the same 64 KiB.
    pub(crate) struct FakeEnv {
        pub(crate) mem: Vec<u8>,
        console: Vec<u8>,
        now: u64,
        shared_info_at: Option<u64>,
        pub(crate) shared_info:
            Box<[core::sync::atomic::AtomicU64; crate::shared_page::PAGE_WORDS]>,
        /// Another domain with its own memory, for interdomain calls.
        pub(crate) peer: Option<Box<(Domain, FakeEnv)>>,
        /// Console backend kicks seen, and whether the backend takes output.
        console_kicks: u32,
        console_takes: bool,
    }

    pub(crate) const MEM: usize = 64 * 1024;

    impl FakeEnv {
        pub(crate) fn new() -> Self {
            Self {
                mem: vec![0; MEM],
                console: Vec::new(),
                now: 1_000_000,
                shared_info_at: None,
                shared_info: Box::new(crate::shared_page::zeroed_words()),
                peer: None,
                console_kicks: 0,
                console_takes: false,
            }
        }

        fn range(&self, addr: u64, len: usize) -> Result<core::ops::Range<usize>, Errno> {
            let start = usize::try_from(addr).map_err(|_| errno::EFAULT)?;
            let end = start.checked_add(len).ok_or(errno::EFAULT)?;
            if end > self.mem.len() {
                return Err(errno::EFAULT);
            }
            Ok(start..end)
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

    impl GuestEnv for FakeEnv {
        fn copy_from_guest(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
            let range = self.range(addr, buf.len())?;
            buf.copy_from_slice(&self.mem[range]);
            Ok(())
        }
        fn copy_to_guest(&mut self, addr: u64, buf: &[u8]) -> Result<(), Errno> {
            let range = self.range(addr, buf.len())?;
            self.mem[range].copy_from_slice(buf);
            Ok(())
        }
        fn write_guest_phys(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Errno> {
            self.copy_to_guest(gpa, buf)
        }
        fn read_guest_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Errno> {
            self.copy_from_guest(gpa, buf)
        }
        fn shared_info(&mut self, f: &mut dyn FnMut(SharedPage<'_>)) {
            f(SharedPage::new(&self.shared_info));
        }
        fn guest_page(&mut self, gfn: u64, f: &mut dyn FnMut(SharedPage<'_>)) -> Result<(), Errno> {
            let range = self.range(gfn.checked_mul(4096).ok_or(errno::EFAULT)?, 4096)?;
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
            (1_700_000_000, 5)
        }
        fn console_write(&mut self, _domid: DomId, text: &[u8]) {
            self.console.extend_from_slice(text);
        }
        fn console_read(&mut self, _buf: &mut [u8]) -> usize {
            0
        }
        fn map_shared_info(&mut self, gfn: u64) -> Result<(), Errno> {
            self.shared_info_at = Some(gfn * 4096);
            Ok(())
        }
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
        fn with_domain(
            &mut self,
            domid: DomId,
            f: &mut dyn FnMut(&mut Domain, &mut dyn GuestEnv),
        ) -> Result<(), Errno> {
            match self.peer.as_deref_mut() {
                Some((d, env)) if d.id == domid => {
                    f(d, env);
                    Ok(())
                }
                _ => Err(errno::ESRCH),
            }
        }
        fn console_ring_kick(&mut self, _domid: DomId) -> bool {
            self.console_kicks += 1;
            self.console_takes
        }
        fn guest_atomic_u32(
            &mut self,
            gpa: u64,
            f: &mut dyn FnMut(&AtomicU32),
        ) -> Result<(), Errno> {
            if !gpa.is_multiple_of(4) {
                return Err(errno::EFAULT);
            }
            let range = self.range(gpa, 4)?;
            let ptr = self.mem[range].as_mut_ptr();
            if !(ptr as usize).is_multiple_of(4) {
                return Err(errno::EFAULT);
            }
            // SAFETY: four bytes of `self.mem`, 4-byte aligned (checked),
            // exclusively borrowed for the call.
            f(unsafe { AtomicU32::from_ptr(ptr.cast()) });
            Ok(())
        }
    }

    pub(crate) fn domu() -> Domain {
        let mut d = Domain::new(1, false, 16, 2, 0);
        d.memory_map = vec![GuestMemRegion {
            addr: 0,
            size: MEM as u64,
            kind: 1,
        }];
        d
    }

    fn call(d: &mut Domain, env: &mut FakeEnv, nr: u64, args: [u64; 5]) -> Outcome {
        dispatch(d, 0, env, nr, args, 0)
    }

    pub(crate) fn ret(e: Errno) -> i64 {
        e.to_hypercall_ret()
    }

    /// Issues hypercall `nr` as the platform does: again with the new
    /// arguments for as long as it continues. Returns the final outcome and
    /// the arguments of every round after the first.
    fn call_to_end(
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

    const BAD: u64 = 0xdead_0000_0000;

    #[test]
    fn user_mode_and_unknown_calls() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let out = dispatch(&mut d, 0, &mut env, xen::HYPERVISOR_XEN_VERSION, [0; 5], 3);
        assert_eq!(out.ret, ret(errno::EPERM));
        for nr in [1u64, 23, 42, 127, 128, u64::MAX] {
            assert_eq!(
                call(&mut d, &mut env, nr, [0; 5]).ret,
                ret(errno::ENOSYS),
                "hypercall {nr}"
            );
        }
        assert_eq!(
            call(&mut d, &mut env, xen::HYPERVISOR_VM_ASSIST, [0, 0, 0, 0, 0]).ret,
            ret(errno::EINVAL)
        );
        assert_eq!(
            dispatch(&mut d, 7, &mut env, xen::HYPERVISOR_XEN_VERSION, [0; 5], 0).ret,
            ret(errno::EINVAL)
        );
    }

    #[test]
    fn xen_version_answers_and_rejects() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_XEN_VERSION;
        assert_eq!(call(&mut d, &mut env, nr, [0; 5]).ret, 0x0004_0011);
        // The upper half of cmd is ignored (int cmd).
        assert_eq!(
            call(&mut d, &mut env, nr, [1 << 32, 0, 0, 0, 0]).ret,
            0x0004_0011
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [version::XENVER_PAGESIZE as u64, 0, 0, 0, 0]
            )
            .ret,
            4096
        );
        let caps = call(
            &mut d,
            &mut env,
            nr,
            [version::XENVER_CAPABILITIES as u64, 0x100, 0, 0, 0],
        );
        assert_eq!(caps.ret, 0);
        assert!(env.mem[0x100..0x140].starts_with(b"hvm-3.0-x86_32 "));
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [version::XENVER_EXTRAVERSION as u64, BAD, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        // Feature submaps: 0 known, anything else -EINVAL and untouched.
        env.put(
            0x200,
            &version::XenFeatureInfo {
                submap_idx: 0,
                submap: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [version::XENVER_GET_FEATURES as u64, 0x200, 0, 0, 0]
            )
            .ret,
            0
        );
        let info: version::XenFeatureInfo = env.get(0x200);
        assert_eq!(info.submap, feature_submap0(&d));
        assert_eq!(
            info.submap & (1 << rxen_abi::features::XENFEAT_DOM0),
            0,
            "a domU is not dom0"
        );
        env.put(
            0x200,
            &version::XenFeatureInfo {
                submap_idx: 1,
                submap: 0x1234,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [version::XENVER_GET_FEATURES as u64, 0x200, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        assert_eq!(env.get::<version::XenFeatureInfo>(0x200).submap, 0x1234);
        // The command line is for the control domain only.
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [version::XENVER_COMMANDLINE as u64, 0x400, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [99, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn console_io_copies_checks_and_refuses() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        env.mem[0x300..0x305].copy_from_slice(b"hello");
        let nr = xen::HYPERVISOR_CONSOLE_IO;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [xen::CONSOLEIO_WRITE as u64, 5, 0x300, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.console, b"hello");
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [xen::CONSOLEIO_WRITE as u64, 5, BAD, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        // A count running past the end of guest memory faults after the part that exists.
        let (huge, _) = call_to_end(
            &mut d,
            &mut env,
            nr,
            [xen::CONSOLEIO_WRITE as u64, u64::MAX, 0x300, 0, 0],
        );
        assert_eq!(huge.ret, ret(errno::EFAULT));
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [xen::CONSOLEIO_READ as u64, 5, 0x300, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [2, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn sched_op_shutdown_poll_and_watchdog() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_SCHED_OP;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_YIELD as u64, 0, 0, 0, 0]
            )
            .next,
            Next::Yield
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_SHUTDOWN as u64, BAD, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(d.shutdown, None, "a bad pointer shuts nothing down");
        // Too many ports.
        env.put(
            0x500,
            &sched::SchedPoll {
                ports: 0x600,
                nr_ports: 129,
                ..sched::SchedPoll::new_zeroed()
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_POLL as u64, 0x500, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        // No ports, a timeout: block until then.
        env.put(
            0x500,
            &sched::SchedPoll {
                ports: 0x600,
                nr_ports: 0,
                timeout: 5_000_000,
                ..sched::SchedPoll::new_zeroed()
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_POLL as u64, 0x500, 0, 0, 0]
            )
            .next,
            Next::Block(Some(5_000_000))
        );
        // Watchdogs: two slots, then -ENOSPC; an unknown id is -EINVAL.
        env.put(0x700, &sched::SchedWatchdog { id: 0, timeout: 10 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            1
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            2
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            ret(errno::ENOSPC)
        );
        env.put(0x700, &sched::SchedWatchdog { id: 9, timeout: 0 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_WATCHDOG as u64, 0x700, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        // Shutdown with an odd code: accepted as a byte, first one wins.
        env.put(0x800, &sched::SchedShutdown { reason: 3 });
        let out = call(
            &mut d,
            &mut env,
            nr,
            [sched::SCHEDOP_SHUTDOWN as u64, 0x800, 0, 0, 0],
        );
        assert_eq!(out.next, Next::Shutdown(ShutdownReason::Crash));
        // A domU cannot shut down others.
        env.put(
            0x900,
            &sched::SchedRemoteShutdown {
                domain_id: 0,
                _pad0: [0; 2],
                reason: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [sched::SCHEDOP_REMOTE_SHUTDOWN as u64, 0x900, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
    }

    #[test]
    fn memory_op_maps_and_reservations() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.memory_map.push(GuestMemRegion {
            addr: 0x10_0000,
            size: 0x1000,
            kind: 2,
        });
        let nr = xen::HYPERVISOR_MEMORY_OP;
        // A buffer for one entry gets one entry, and nr_entries says so.
        env.put(
            0x100,
            &memory::XenMemoryMap {
                nr_entries: 1,
                _pad0: [0; 4],
                buffer: 0x200,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.get::<memory::XenMemoryMap>(0x100).nr_entries, 1);
        let first: memory::E820Entry = env.get(0x200);
        assert_eq!({ first.size }, MEM as u64);
        env.put(
            0x100,
            &memory::XenMemoryMap {
                nr_entries: 8,
                _pad0: [0; 4],
                buffer: BAD,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        // Reservations of self; of another domain: -EPERM for a domU.
        env.put(0x300, &0x7FF0u16);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_CURRENT_RESERVATION as u64, 0x300, 0, 0, 0]
            )
            .ret,
            16
        );
        env.put(0x300, &0u16);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MAXIMUM_RESERVATION as u64, 0x300, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_MACHINE_MEMORY_MAP as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        // Shared info: idx must be 0; the page is mapped and the wall clock published.
        let mut xatp = memory::XenAddToPhysmap::new_zeroed();
        xatp.domid = 0x7FF0;
        xatp.space = memory::XENMAPSPACE_SHARED_INFO;
        xatp.idx = 1;
        xatp.gpfn = 8;
        env.put(0x400, &xatp);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_ADD_TO_PHYSMAP as u64, 0x400, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        xatp.idx = 0;
        env.put(0x400, &xatp);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [memory::XENMEM_ADD_TO_PHYSMAP as u64, 0x400, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.shared_info_at, Some(0x8000));
        let mut info = xen::SharedInfo::new_zeroed();
        info.as_mut_bytes()
            .copy_from_slice(&env.si_bytes()[..core::mem::size_of::<xen::SharedInfo>()]);
        assert_ne!(info.wc_version, 0, "the wall clock was published");
        assert_eq!(
            info.wc_version % 2,
            0,
            "wall clock version is even when published"
        );
        assert_eq!(info.wc_sec, 1_700_000_000);
        assert_eq!(info.vcpu_info[0].time.version % 2, 0);
        assert_eq!(info.vcpu_info[0].time.system_time, env.now);
        assert_eq!(
            call(&mut d, &mut env, nr, [63, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn hvm_params_follow_xens_rules() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_HVM_OP;
        let mut param = hvm::XenHvmParam {
            domid: 0x7FF0,
            pad: 0,
            index: hvm::HVM_PARAM_CALLBACK_IRQ,
            value: 2 << 56 | 0xf3,
        };
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_SET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        param.value = 0;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(env.get::<hvm::XenHvmParam>(0x100).value, 2 << 56 | 0xf3);
        // Only the toolstack sets the console page; a guest gets -EPERM.
        param.index = hvm::HVM_PARAM_CONSOLE_PFN;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_SET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        param.index = hvm::HVM_NR_PARAMS;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        param.index = hvm::HVM_PARAM_CALLBACK_IRQ;
        param.domid = 0;
        env.put(0x100, &param);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_GET_PARAM as u64, 0x100, 0, 0, 0]
            )
            .ret,
            ret(errno::EPERM)
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [hvm::HVMOP_SET_PARAM as u64, BAD, 0, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [1 << 32, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn vcpu_op_validates_every_argument() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_VCPU_OP;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_IS_UP as u64, 0, 0, 0, 0]
            )
            .ret,
            1
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_IS_UP as u64, 1, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_IS_UP as u64, 2, 0, 0, 0]
            )
            .ret,
            ret(errno::ENOENT)
        );
        env.put(0x100, &vcpu::VcpuSetPeriodicTimer { period_ns: 999_999 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_SET_PERIODIC_TIMER as u64, 0, 0x100, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x100,
            &vcpu::VcpuSetSingleshotTimer {
                timeout_abs_ns: 10,
                flags: vcpu::VCPU_SSHOTTMR_FUTURE,
                _pad0: [0; 4],
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_SET_SINGLESHOT_TIMER as u64, 0, 0x100, 0, 0]
            )
            .ret,
            0
        );
        assert!(
            expire_timers(&mut d, 0, env.now, &mut env),
            "a timer set in the past fires at once"
        );
        // Single-shot timers are for the calling vCPU only.
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_SET_SINGLESHOT_TIMER as u64, 1, 0x100, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 3,
                offset: 4096 - 32,
                rsvd: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            ret(errno::ENXIO)
        );
        let initialise = [vcpu::VCPUOP_INITIALISE as u64, 0, 0x200, 0, 0];
        assert_eq!(
            call(&mut d, &mut env, nr, initialise).ret,
            ret(errno::EEXIST)
        );
        let up = [vcpu::VCPUOP_UP as u64, 0, 0, 0, 0];
        assert_eq!(call(&mut d, &mut env, nr, up).ret, 0);
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 1000,
                offset: 0,
                rsvd: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 3,
                offset: 64,
                rsvd: 0,
            },
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0]
            )
            .ret,
            ret(errno::EINVAL),
            "only once"
        );
        let time: xen::VcpuTimeInfo =
            env.get(3 * 4096 + 64 + core::mem::offset_of!(xen::VcpuInfo, time) as u64);
        assert_eq!(time.version % 2, 0);
        assert_eq!(time.system_time, env.now);
        // Runstate: vCPU 0 was runnable since 0; times add up to now.
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_GET_RUNSTATE_INFO as u64, 0, 0x300, 0, 0]
            )
            .ret,
            0
        );
        let info: vcpu::VcpuRunstateInfo = env.get(0x300);
        assert_eq!(info.time.iter().sum::<u64>(), env.now);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [vcpu::VCPUOP_GET_RUNSTATE_INFO as u64, 0, BAD, 0, 0]
            )
            .ret,
            ret(errno::EFAULT)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [77, 0, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn multicall_writes_each_result_and_refuses_nesting() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let mut entries = [xen::MulticallEntry::new_zeroed(); 3];
        entries[0].op = xen::HYPERVISOR_XEN_VERSION;
        entries[1].op = xen::HYPERVISOR_MULTICALL;
        entries[2].op = xen::HYPERVISOR_XEN_VERSION;
        entries[2].args[0] = version::XENVER_EXTRAVERSION as u64;
        entries[2].args[1] = BAD;
        env.put(0x1000, &entries);
        let out = call(
            &mut d,
            &mut env,
            xen::HYPERVISOR_MULTICALL,
            [0x1000, 3, 0, 0, 0],
        );
        assert_eq!(out.ret, 0);
        let back: [xen::MulticallEntry; 3] = env.get(0x1000);
        assert_eq!(back[0].result, 0x0004_0011);
        assert_eq!(back[1].result as i64, ret(errno::EINVAL));
        assert_eq!(back[2].result as i64, ret(errno::EFAULT));
        // A list running off guest memory faults.
        assert_eq!(
            call_to_end(
                &mut d,
                &mut env,
                xen::HYPERVISOR_MULTICALL,
                [0x1000, u32::MAX as u64, 0, 0, 0]
            )
            .0
            .ret,
            ret(errno::EFAULT)
        );
        // The count is `unsigned int`: 2^32 + 1 is one call.
        let one = [0x1000, (1 << 32) + 1, 0, 0, 0];
        assert_eq!(
            call(&mut d, &mut env, xen::HYPERVISOR_MULTICALL, one).ret,
            0
        );
    }

    #[test]
    fn a_console_write_continues_after_each_batch() {
        // Defect 4: a write of any length ran to its end in one exit.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        env.mem[0x2000..0x2000 + text.len()].copy_from_slice(&text);
        let nr = xen::HYPERVISOR_CONSOLE_IO;
        let write = xen::CONSOLEIO_WRITE as u64;
        let first = call(&mut d, &mut env, nr, [write, 10_000, 0x2000, 7, 8]);
        let batch = CONSOLE_WRITE_BATCH;
        assert_eq!(
            first.next,
            Next::Continuation {
                args: [write, 10_000 - batch, 0x2000 + batch, 7, 8]
            }
        );
        assert_eq!(env.console.len() as u64, batch, "one batch per exit");
        let (last, rounds) = call_to_end(
            &mut d,
            &mut env,
            nr,
            [write, 10_000 - batch, 0x2000 + batch, 0, 0],
        );
        assert_eq!(last, Outcome::value(0));
        assert_eq!(rounds.len(), 1, "10000 bytes: three exits in all");
        assert_eq!(env.console, text);
        // Xen takes `unsigned int count`: 2^32 + 5 writes five bytes.
        env.console.clear();
        let out = call(&mut d, &mut env, nr, [write, (1 << 32) + 5, 0x2000, 0, 0]);
        assert_eq!(out, Outcome::value(0));
        assert_eq!(env.console, b"abcde");
        // 1 GiB from a 64 KiB guest: what exists is written, then -EFAULT,
        // each exit bounded.
        env.console.clear();
        let (out, rounds) = call_to_end(&mut d, &mut env, nr, [write, 1 << 30, 0, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
        assert_eq!(env.console.len(), MEM);
        assert_eq!(rounds.len() as u64, MEM as u64 / batch);
        // A buffer at the top of the address space faults, never wraps.
        let top = u64::MAX - 100;
        let (out, _) = call_to_end(&mut d, &mut env, nr, [write, 1 << 20, top, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
    }

    #[test]
    fn a_multicall_continues_after_each_batch() {
        // Defect 4: 2^32 - 1 entries ran in one exit.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let list = 0x1000u64;
        let mut entries = vec![xen::MulticallEntry::new_zeroed(); 200];
        for e in &mut entries {
            e.op = xen::HYPERVISOR_XEN_VERSION;
            e.result = 0xAAAA;
        }
        for (i, e) in entries.iter().enumerate() {
            env.put(list + 64 * i as u64, e);
        }
        let nr = xen::HYPERVISOR_MULTICALL;
        let first = call(&mut d, &mut env, nr, [list, 200, 5, 6, 7]);
        assert_eq!(
            first.next,
            Next::Continuation {
                args: [list + 64 * MULTICALL_BATCH, 200 - MULTICALL_BATCH, 5, 6, 7]
            }
        );
        let result = |env: &FakeEnv, i: u64| env.get::<xen::MulticallEntry>(list + 64 * i).result;
        assert_eq!(result(&env, MULTICALL_BATCH - 1), 0x0004_0011);
        assert_eq!(result(&env, MULTICALL_BATCH), 0xAAAA, "not run yet");
        let (last, rounds) = call_to_end(
            &mut d,
            &mut env,
            nr,
            [list + 64 * MULTICALL_BATCH, 200 - MULTICALL_BATCH, 0, 0, 0],
        );
        assert_eq!(last, Outcome::value(0));
        assert_eq!(rounds.len(), 2, "200 entries: four exits in all");
        assert!((0..200).all(|i| result(&env, i) == 0x0004_0011));
        // 2^32 - 1 entries: the list runs off the guest's memory after at
        // most 1024 of them; -EFAULT, each exit bounded.
        let (out, rounds) = call_to_end(&mut d, &mut env, nr, [list, u32::MAX as u64, 0, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
        let entries_in_memory = (MEM as u64 - list) / 64;
        assert_eq!(rounds.len() as u64, entries_in_memory / MULTICALL_BATCH);
        assert_eq!(rounds[0][1], u32::MAX as u64 - MULTICALL_BATCH);
        // A list at the top of the address space faults, never wraps.
        let top = u64::MAX - 64 * 10;
        let (out, _) = call_to_end(&mut d, &mut env, nr, [top, 100, 0, 0, 0]);
        assert_eq!(out.ret, ret(errno::EFAULT));
    }

    #[test]
    fn a_continuing_entry_resumes_the_multicall_at_that_entry() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let text: Vec<u8> = (0..10_000u32).map(|i| b'A' + (i % 26) as u8).collect();
        env.mem[0x4000..0x4000 + text.len()].copy_from_slice(&text);
        let list = 0x1000u64;
        let mut entries = [xen::MulticallEntry::new_zeroed(); 3];
        entries[0].op = xen::HYPERVISOR_XEN_VERSION;
        entries[1].op = xen::HYPERVISOR_CONSOLE_IO;
        entries[1].args[..3].copy_from_slice(&[xen::CONSOLEIO_WRITE as u64, 10_000, 0x4000]);
        entries[2].op = xen::HYPERVISOR_XEN_VERSION;
        env.put(list, &entries);
        let nr = xen::HYPERVISOR_MULTICALL;
        let first = call(&mut d, &mut env, nr, [list, 3, 0, 0, 0]);
        assert_eq!(
            first.next,
            Next::Continuation {
                args: [list + 64, 2, 0, 0, 0]
            },
            "the multicall resumes at the entry that continues"
        );
        let entry: xen::MulticallEntry = env.get(list + 64);
        assert_eq!(entry.op, xen::HYPERVISOR_CONSOLE_IO);
        let batch = CONSOLE_WRITE_BATCH;
        assert_eq!(
            entry.args[..3],
            [xen::CONSOLEIO_WRITE as u64, 10_000 - batch, 0x4000 + batch],
            "the entry's arguments are its continuation's"
        );
        let (last, rounds) = call_to_end(&mut d, &mut env, nr, [list + 64, 2, 0, 0, 0]);
        assert_eq!(last, Outcome::value(0));
        assert_eq!(rounds.len(), 1);
        assert_eq!(env.console, text);
        let back: [xen::MulticallEntry; 3] = env.get(list);
        assert_eq!(
            [back[0].result, back[1].result, back[2].result],
            [0x0004_0011, 0, 0x0004_0011]
        );
    }

    #[test]
    fn a_blocking_entry_ends_the_multicall_round() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let list = 0x1000u64;
        let mut entries = [xen::MulticallEntry::new_zeroed(); 2];
        entries[0].op = xen::HYPERVISOR_SCHED_OP;
        entries[0].args[0] = sched::SCHEDOP_BLOCK as u64;
        entries[1].op = xen::HYPERVISOR_XEN_VERSION;
        entries[1].result = 0xAAAA;
        env.put(list, &entries);
        let nr = xen::HYPERVISOR_MULTICALL;
        let out = call(&mut d, &mut env, nr, [list, 2, 0, 0, 0]);
        assert_eq!(
            out.next,
            Next::Continuation {
                args: [list + 64, 1, 0, 0, 0]
            }
        );
        assert_eq!(d.vcpus[0].blocked, Some(None), "the vCPU blocks first");
        assert_eq!(env.get::<xen::MulticallEntry>(list + 64).result, 0xAAAA);
        // Blocking in the last entry blocks with the multicall's result.
        let out = call(&mut d, &mut env, nr, [list, 1, 0, 0, 0]);
        assert_eq!(out.next, Next::Block(None));
        assert_eq!(out.ret, 0);
    }

    #[test]
    fn periodic_timers_take_xens_range_and_never_wrap() {
        // Defect 9: a period near 2^64 wrapped the expiry into the past, so
        // the timer fired on every pass.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_VCPU_OP;
        let set = [vcpu::VCPUOP_SET_PERIODIC_TIMER as u64, 0, 0x100, 0, 0];
        for (period_ns, expected) in [
            (u64::MAX, ret(errno::EINVAL)),
            (u64::MAX - 1_000_000, ret(errno::EINVAL)),
            (STIME_DELTA_MAX + 1, ret(errno::EINVAL)),
            (999_999, ret(errno::EINVAL)),
            (1_000_000, 0),
            (STIME_DELTA_MAX, 0),
        ] {
            env.put(0x100, &vcpu::VcpuSetPeriodicTimer { period_ns });
            assert_eq!(
                call(&mut d, &mut env, nr, set).ret,
                expected,
                "{period_ns:#x}"
            );
        }
        // The longest period: one tick now, the next one far ahead.
        let now = env.now;
        assert!(expire_timers(&mut d, 0, now, &mut env));
        assert_eq!(
            d.vcpus[0].periodic,
            Some((STIME_DELTA_MAX, now + STIME_DELTA_MAX))
        );
        assert!(!expire_timers(&mut d, 0, now + 1, &mut env));
        // Even a period past the limit (not settable) saturates, never wraps.
        d.vcpus[0].periodic = Some((u64::MAX - 5, now));
        assert!(expire_timers(&mut d, 0, now, &mut env));
        assert!(!expire_timers(&mut d, 0, now + 1, &mut env));
        assert_eq!(d.vcpus[0].periodic, Some((u64::MAX - 5, u64::MAX)));
    }

    #[test]
    fn set_timer_op_moves_huge_timeouts_to_100_ms_as_xen() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_SET_TIMER_OP;
        let now = env.now;
        for (timeout, deadline) in [
            (now + 5, Some(now + 5)),
            (5, Some(5)),
            (0, None),
            (u64::MAX, Some(now + 100_000_000)),
            (1 << 63, Some(now + 100_000_000)),
            (now + (1 << 50), Some(now + 100_000_000)),
            (now + (1 << 50) - 1, Some(now + (1 << 50) - 1)),
        ] {
            assert_eq!(call(&mut d, &mut env, nr, [timeout, 0, 0, 0, 0]).ret, 0);
            assert_eq!(d.vcpus[0].singleshot_deadline, deadline, "{timeout:#x}");
        }
    }

    #[test]
    fn timers_raise_virq_timer_and_wake_only_through_it() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.vcpus[0].periodic = Some((10, 100));
        d.vcpus[0].singleshot_deadline = Some(150);
        assert!(!expire_timers(&mut d, 0, 99, &mut env));
        assert!(expire_timers(&mut d, 0, 135, &mut env));
        assert_eq!(
            d.vcpus[0].periodic,
            Some((10, 140)),
            "missed periods are skipped, not replayed"
        );
        // Blocked, VIRQ_TIMER not bound: the single-shot fires but wakes nothing (Xen).
        d.vcpus[0].blocked = Some(None);
        assert!(expire_timers(&mut d, 0, 150, &mut env));
        assert_eq!(d.vcpus[0].blocked, Some(None));
        // Bound: the event is pending, the upcall flagged, the vCPU woken.
        let port = d.events.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        d.vcpus[0].singleshot_deadline = Some(160);
        // The periodic timer is stopped while the vCPU is blocked (Xen).
        assert!(expire_timers(&mut d, 0, 200, &mut env));
        assert_eq!(d.vcpus[0].periodic, Some((10, 140)));
        assert_eq!(d.vcpus[0].blocked, None);
        assert!(crate::event_channel::is_pending(&env.si(), port));
        assert!(upcall_pending(&d, 0, &mut env));
    }

    #[test]
    fn the_upcall_vector_is_an_edge_of_the_local_apic() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        d.vcpus[0].upcall_vector = Some(0xF3);
        d.vcpus[0].lapic.write(crate::vlapic::reg::SVR, 0x1FF, 0);
        let port = d.events.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        d.vcpus[0].singleshot_deadline = Some(10);
        d.vcpus[0].blocked = Some(None);
        assert!(expire_timers(&mut d, 0, 10, &mut env));
        assert!(crate::event_channel::is_pending(&env.si(), port));
        assert_eq!(d.vcpus[0].blocked, None, "the event ends the block");
        assert_eq!(d.vcpus[0].lapic.pending_vector(), Some(0xF3));
        d.vcpus[0].lapic.acknowledge(0xF3);
        // Still pending (the guest has not cleared evtchn_upcall_pending): no new edge.
        d.vcpus[0].singleshot_deadline = Some(20);
        assert!(expire_timers(&mut d, 0, 20, &mut env));
        assert!(!d.vcpus[0].lapic.requested(0xF3));
        assert!(d.vcpus[0].lapic.in_service(0xF3));
    }

    #[test]
    fn the_local_apic_timer_ends_a_halt() {
        use crate::vlapic::reg;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let lapic = &mut d.vcpus[0].lapic;
        lapic.write(reg::SVR, 0x1FF, 0);
        lapic.write(reg::TIMER_DIVIDE, 0xB, 0);
        lapic.write(reg::LVT_TIMER, 0x40, 0);
        lapic.write(reg::TIMER_INITIAL, 500, 100);
        assert_eq!(d.vcpus[0].next_deadline(), Some(600));
        d.vcpus[0].blocked = Some(Some(10_000));
        assert!(!expire_timers(&mut d, 0, 599, &mut env));
        assert!(d.vcpus[0].blocked.is_some());
        assert!(
            !expire_timers(&mut d, 0, 600, &mut env),
            "no Xen timer fired"
        );
        assert_eq!(d.vcpus[0].blocked, None);
        assert_eq!(d.vcpus[0].lapic.pending_vector(), Some(0x40));
    }

    #[test]
    fn event_channel_ops_check_arguments_first() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let nr = xen::HYPERVISOR_EVENT_CHANNEL_OP;
        for cmd in [
            ev::EVTCHNOP_BIND_INTERDOMAIN,
            ev::EVTCHNOP_BIND_VIRQ,
            ev::EVTCHNOP_CLOSE,
            ev::EVTCHNOP_SEND,
        ] {
            assert_eq!(
                call(&mut d, &mut env, nr, [cmd as u64, BAD, 0, 0, 0]).ret,
                ret(errno::EFAULT)
            );
        }
        env.put(0x100, &ev::EvtchnBindIpi { vcpu: 0, port: 0 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_BIND_IPI as u64, 0x100, 0, 0, 0]
            )
            .ret,
            0
        );
        let port = env.get::<ev::EvtchnBindIpi>(0x100).port;
        // Send on the IPI: pending, upcall flagged; blocking then returns at once.
        env.put(0x200, &ev::EvtchnSend { port });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_SEND as u64, 0x200, 0, 0, 0]
            )
            .ret,
            0
        );
        assert!(upcall_pending(&d, 0, &mut env));
        let block = call(
            &mut d,
            &mut env,
            xen::HYPERVISOR_SCHED_OP,
            [sched::SCHEDOP_BLOCK as u64, 0, 0, 0, 0],
        );
        assert_eq!(block.next, Next::Continue);
        // Sending on a port that is not open, or on a VIRQ, is refused.
        env.put(0x200, &ev::EvtchnSend { port: 999 });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_SEND as u64, 0x200, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        env.put(0x300, &ev::EvtchnClose { port });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_CLOSE as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_CLOSE as u64, 0x300, 0, 0, 0]
            )
            .ret,
            ret(errno::EINVAL)
        );
        assert_eq!(
            call(&mut d, &mut env, nr, [99, 0x300, 0, 0, 0]).ret,
            ret(errno::ENOSYS)
        );
    }

    #[test]
    fn unmask_notifies_a_registered_vcpu_info() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        // vcpu_info registered at frame 3, offset 64.
        env.put(
            0x200,
            &vcpu::VcpuRegisterVcpuInfo {
                mfn: 3,
                offset: 64,
                rsvd: 0,
            },
        );
        let register = [vcpu::VCPUOP_REGISTER_VCPU_INFO as u64, 0, 0x200, 0, 0];
        assert_eq!(
            call(&mut d, &mut env, xen::HYPERVISOR_VCPU_OP, register).ret,
            0
        );
        let port = d.events.bind_ipi(0).unwrap();
        // Masked: a send only sets the pending bit.
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, port as usize);
        env.put(0x300, &ev::EvtchnSend { port });
        let nr = xen::HYPERVISOR_EVENT_CHANNEL_OP;
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_SEND as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        assert!(!upcall_pending(&d, 0, &mut env));
        // Unmasking delivers it into the registered area: selector and upcall flag.
        env.put(0x300, &ev::EvtchnUnmask { port });
        assert_eq!(
            call(
                &mut d,
                &mut env,
                nr,
                [ev::EVTCHNOP_UNMASK as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        let info: xen::VcpuInfo = env.get(3 * 4096 + 64);
        assert_eq!(info.evtchn_upcall_pending, 1);
        assert_eq!(info.evtchn_pending_sel, 1, "selector bit of word 0");
        assert!(upcall_pending(&d, 0, &mut env));
        // Nothing landed in the shared-info page's own vcpu_info slot.
        let slot = core::mem::offset_of!(xen::SharedInfo, vcpu_info);
        assert_eq!(env.si().load_u8(slot), Some(0));
    }

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

    pub(crate) fn peer(env: &mut FakeEnv) -> &mut (Domain, FakeEnv) {
        env.peer.as_deref_mut().unwrap()
    }

    #[test]
    fn interdomain_channel_connects_sends_both_ways_and_closes() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        // Domain 2 offers a port to domain 1.
        let (d2, env2) = peer(&mut env);
        let alloc = ev::EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 1,
            port: 0,
        };
        assert_eq!(evtchn(d2, env2, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc), 0);
        let offered: ev::EvtchnAllocUnbound = env2.get(0x300);
        assert_eq!(offered.port, 1);
        // Domain 1 binds to it: its new port starts pending, as on Xen.
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: offered.port,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        assert_eq!(local, 1);
        assert!(crate::event_channel::is_pending(&env.si(), local));
        env.si_clear();
        // Binding the same remote port again: it is no longer unbound.
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            ret(errno::EINVAL)
        );
        // 1 -> 2 lands on the peer's port and wakes it.
        peer(&mut env).0.vcpus[0].blocked = Some(None);
        let send = ev::EvtchnSend { port: local };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_SEND, &send), 0);
        let (d2, env2) = peer(&mut env);
        assert!(crate::event_channel::is_pending(&env2.si(), offered.port));
        assert_eq!(d2.vcpus[0].blocked, None, "the event ended the block");
        assert!(!crate::event_channel::is_pending(&env.si(), local));
        // The peer's end points back at ours (its sends take the same path).
        assert_eq!(
            peer(&mut env).0.events.port(offered.port).map(|p| p.state),
            Some(PortState::Interdomain {
                remote_dom: 1,
                remote_port: local
            })
        );
        // Status shows the other end.
        let status = ev::EvtchnStatus {
            dom: DOMID_SELF,
            port: local,
            ..Default::default()
        };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &status), 0);
        let status: ev::EvtchnStatus = env.get(0x300);
        assert_eq!(status.status, ev::EVTCHNSTAT_INTERDOMAIN);
        assert_eq!(status.u[..2], 2u16.to_le_bytes());
        assert_eq!(status.u[4..], offered.port.to_le_bytes());
        // Closing our end makes the peer's end unbound for us again.
        let close = ev::EvtchnClose { port: local };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert_eq!(
            peer(&mut env).0.events.check_offered(offered.port, 1),
            Ok(())
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_SEND,
                &ev::EvtchnSend { port: local }
            ),
            ret(errno::EINVAL),
            "a closed port"
        );
    }

    #[test]
    fn interdomain_abuse_gets_xen_errnos() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let bind = |remote_dom, remote_port| ev::EvtchnBindInterdomain {
            remote_dom,
            remote_port,
            ..Default::default()
        };
        // No such domain; a port never offered; a port offered to someone else.
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(9, 1)
            ),
            ret(errno::ESRCH)
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, 60)
            ),
            ret(errno::EINVAL)
        );
        let (d2, env2) = peer(&mut env);
        let port = d2.events.alloc_unbound(3).unwrap();
        let ipi = d2.events.bind_ipi(0).unwrap();
        let _ = env2;
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, port)
            ),
            ret(errno::EINVAL)
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, ipi)
            ),
            ret(errno::EINVAL),
            "an IPI port is not offered"
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_BIND_INTERDOMAIN,
                &bind(2, u32::MAX)
            ),
            ret(errno::EINVAL)
        );
        // An unprivileged domain allocates only in itself.
        let alloc = ev::EvtchnAllocUnbound {
            dom: 2,
            remote_dom: 1,
            port: 0,
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc),
            ret(errno::EPERM)
        );
        // No such domain comes first (-ESRCH), for alloc_unbound and status.
        let nowhere = ev::EvtchnAllocUnbound {
            dom: 9,
            remote_dom: 1,
            port: 0,
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &nowhere),
            ret(errno::ESRCH)
        );
        let theirs = ev::EvtchnStatus {
            dom: 2,
            port,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &theirs),
            ret(errno::EPERM)
        );
        let nowhere = ev::EvtchnStatus { dom: 9, ..theirs };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &nowhere),
            ret(errno::ESRCH)
        );
        // Nothing failed half-way: no local port was left allocated.
        assert_eq!(d1.events.port(1), None);
        // A privileged domain may allocate in another one.
        d1.privileged = true;
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc),
            0
        );
        let made = env.get::<ev::EvtchnAllocUnbound>(0x300).port;
        assert_eq!(peer(&mut env).0.events.check_offered(made, 1), Ok(()));
        // ... and read the status of another domain's port.
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_STATUS, &theirs), 0);
        let status: ev::EvtchnStatus = env.get(0x300);
        assert_eq!(status.status, ev::EVTCHNSTAT_UNBOUND);
        assert_eq!(status.u[..2], 3u16.to_le_bytes(), "offered to domain 3");
    }

    #[test]
    fn loopback_channel_and_teardown() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let own = d1.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: DOMID_SELF,
            remote_port: own,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        env.si_clear();
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_SEND,
                &ev::EvtchnSend { port: local }
            ),
            0
        );
        assert!(crate::event_channel::is_pending(&env.si(), own));
        // A channel to the peer, then domain 1 goes away: the peer's end is
        // unbound again.
        let theirs = peer(&mut env).0.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: theirs,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        assert_eq!(
            peer(&mut env).0.events.check_offered(theirs, 1),
            Err(errno::EINVAL)
        );
        close_interdomain_channels(&mut d1, &mut env);
        assert_eq!(peer(&mut env).0.events.check_offered(theirs, 1), Ok(()));
        assert!(d1.events.interdomain_ports().is_empty());
    }

    #[test]
    fn closing_a_two_level_port_clears_its_pending_bit() {
        use rxen_abi::event_channel as ev;
        // Xen's evtchn_close calls evtchn_port_clear_pending: a port
        // allocated again must not start pending (issue 14, defect 11).
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, port as usize);
        let send = ev::EvtchnSend { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_SEND, &send), 0);
        assert!(crate::event_channel::is_pending(&env.si(), port));
        let close = ev::EvtchnClose { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert!(!crate::event_channel::is_pending(&env.si(), port));
        assert_eq!(d.events.bind_ipi(0), Ok(port), "reused");
        assert!(!crate::event_channel::is_pending(&env.si(), port));
    }

    #[test]
    fn reset_from_fifo_leaves_only_two_level_ports() {
        use rxen_abi::event_channel as ev;
        // Issue 14, defect 2, the exact sequence: FIFO, ports far past 4096,
        // EVTCHNOP_reset back to 2-level, allocate again, unmask the port
        // past the bitmaps. Before the fix the freed FIFO ports stayed
        // allocatable and the unmask indexed past the shared-info page
        // (a host panic).
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let init = ev::EvtchnInitControl {
            control_gfn: 1,
            offset: 0,
            vcpu: 0,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_INIT_CONTROL, &init),
            0
        );
        let high = 5_000;
        for expected in 1..=high {
            assert_eq!(d.events.bind_ipi(0), Ok(expected));
        }
        let reset = ev::EvtchnReset { dom: DOMID_SELF };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_RESET, &reset), 0);
        assert!(!d.events.is_fifo());
        assert_eq!(
            d.events.port_limit(),
            ev::EVTCHN_2L_NR_CHANNELS,
            "table shrunk"
        );
        for expected in 1..ev::EVTCHN_2L_NR_CHANNELS {
            assert_eq!(d.events.bind_ipi(0), Ok(expected));
        }
        assert_eq!(
            d.events.bind_ipi(0),
            Err(errno::ENOSPC),
            "2-level ports only"
        );
        for port in [ev::EVTCHN_2L_NR_CHANNELS, high - 1, high] {
            let unmask = ev::EvtchnUnmask { port };
            assert_eq!(
                evtchn(&mut d, &mut env, ev::EVTCHNOP_UNMASK, &unmask),
                ret(errno::EINVAL)
            );
            let status = ev::EvtchnStatus {
                dom: DOMID_SELF,
                port,
                ..Default::default()
            };
            assert_eq!(
                evtchn(&mut d, &mut env, ev::EVTCHNOP_STATUS, &status),
                ret(errno::EINVAL)
            );
        }
        // The last 2-level port works as any other.
        let last = ev::EVTCHN_2L_NR_CHANNELS - 1;
        let send = ev::EvtchnSend { port: last };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_SEND, &send), 0);
        assert!(crate::event_channel::is_pending(&env.si(), last));
    }

    #[test]
    fn a_global_virq_moved_to_another_vcpu_is_still_bound_once() {
        use rxen_abi::event_channel as ev;
        // Issue 14, defect 12b: Xen's evtchn_bind_vcpu only changes the
        // notified vCPU of a global VIRQ; the binding stays on vCPU 0, so a
        // second EVTCHNOP_bind_virq is -EEXIST.
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let bind = ev::EvtchnBindVirq {
            virq: xen::VIRQ_CONSOLE,
            vcpu: 0,
            port: 0,
        };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VIRQ, &bind), 0);
        let port = env.get::<ev::EvtchnBindVirq>(0x300).port;
        let to_1 = ev::EvtchnBindVcpu { port, vcpu: 1 };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VCPU, &to_1), 0);
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VIRQ, &bind),
            ret(errno::EEXIST),
            "bound once"
        );
        assert_eq!(d.events.virq_port(xen::VIRQ_CONSOLE, 0), Some(port));
        assert_eq!(d.events.port(port).map(|p| p.vcpu), Some(1));
        // Raised (as the platform raises global VIRQs, through vCPU 0), it
        // notifies vCPU 1.
        raise_virq(&mut d, 0, xen::VIRQ_CONSOLE, &mut env);
        assert!(upcall_pending(&d, 1, &mut env));
        assert!(!upcall_pending(&d, 0, &mut env));
        // Closed, it can be bound again.
        let close = ev::EvtchnClose { port };
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_CLOSE, &close), 0);
        assert_eq!(d.events.virq_port(xen::VIRQ_CONSOLE, 0), None);
        assert_eq!(evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VIRQ, &bind), 0);
        // IPIs do not move (Xen: -EINVAL), per-vCPU VIRQs neither.
        let ipi = d.events.bind_ipi(0).unwrap();
        let move_ipi = ev::EvtchnBindVcpu { port: ipi, vcpu: 1 };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VCPU, &move_ipi),
            ret(errno::EINVAL)
        );
        let bad_vcpu = ev::EvtchnBindVcpu { port: ipi, vcpu: 9 };
        assert_eq!(
            evtchn(&mut d, &mut env, ev::EVTCHNOP_BIND_VCPU, &bad_vcpu),
            ret(errno::ENOENT)
        );
    }

    #[test]
    fn ports_stop_at_the_domains_max_event_channels() {
        use rxen_abi::event_channel as ev;
        // Xen's evtchn_allocate_port: `port > d->max_evtchn_port` is
        // -ENOSPC, whatever the ABI; the table never grows past it.
        for fifo in [false, true] {
            let (mut d, mut env) = (domu(), FakeEnv::new());
            d.events.set_max_port(1023);
            if fifo {
                let init = ev::EvtchnInitControl {
                    control_gfn: 1,
                    offset: 0,
                    vcpu: 0,
                    ..Default::default()
                };
                assert_eq!(
                    evtchn(&mut d, &mut env, ev::EVTCHNOP_INIT_CONTROL, &init),
                    0
                );
            }
            for expected in 1..=1023 {
                assert_eq!(d.events.bind_ipi(0), Ok(expected));
            }
            let alloc = ev::EvtchnAllocUnbound {
                dom: DOMID_SELF,
                remote_dom: DOMID_SELF,
                port: 0,
            };
            for _ in 0..10_000 {
                assert_eq!(
                    evtchn(&mut d, &mut env, ev::EVTCHNOP_ALLOC_UNBOUND, &alloc),
                    ret(errno::ENOSPC)
                );
            }
            assert_eq!(d.events.port_limit(), 1024, "bounded table");
            let status = ev::EvtchnStatus {
                dom: DOMID_SELF,
                port: 1024,
                ..Default::default()
            };
            assert_eq!(
                evtchn(&mut d, &mut env, ev::EVTCHNOP_STATUS, &status),
                ret(errno::EINVAL)
            );
        }
    }

    #[test]
    fn reset_closes_every_port_and_unbinds_the_peers() {
        use rxen_abi::event_channel as ev;
        let (mut d1, mut env) = two_domains();
        let timer = d1.events.bind_virq(xen::VIRQ_TIMER, 0).unwrap();
        let ipi = d1.events.bind_ipi(1).unwrap();
        let theirs = peer(&mut env).0.events.alloc_unbound(1).unwrap();
        let bind = ev::EvtchnBindInterdomain {
            remote_dom: 2,
            remote_port: theirs,
            ..Default::default()
        };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_BIND_INTERDOMAIN, &bind),
            0
        );
        let local = env.get::<ev::EvtchnBindInterdomain>(0x300).local_port;
        assert!(crate::event_channel::is_pending(&env.si(), local));
        // Another domain's channels: not while it runs (Xen: only paused).
        let other = ev::EvtchnReset { dom: 2 };
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_RESET, &other),
            ret(errno::EPERM),
            "unprivileged"
        );
        d1.privileged = true;
        assert_eq!(
            evtchn(&mut d1, &mut env, ev::EVTCHNOP_RESET, &other),
            ret(errno::EINVAL),
            "not paused"
        );
        assert_eq!(
            evtchn(
                &mut d1,
                &mut env,
                ev::EVTCHNOP_RESET,
                &ev::EvtchnReset { dom: 9 }
            ),
            ret(errno::ESRCH)
        );
        let own = ev::EvtchnReset { dom: DOMID_SELF };
        assert_eq!(evtchn(&mut d1, &mut env, ev::EVTCHNOP_RESET, &own), 0);
        for port in [timer, ipi, local] {
            assert_eq!(d1.events.port(port), None, "port {port} closed");
        }
        assert!(!crate::event_channel::is_pending(&env.si(), local));
        assert_eq!(peer(&mut env).0.events.check_offered(theirs, 1), Ok(()));
        // Everything binds again from port 1.
        assert_eq!(d1.events.bind_virq(xen::VIRQ_TIMER, 0), Ok(1));
        assert!(!d1.events.is_fifo());
    }

    #[test]
    fn the_console_port_kicks_the_backend_and_is_answered() {
        use rxen_abi::event_channel as ev;
        let mut d = domu();
        let port = d.events.bind_console().unwrap();
        let mut env = FakeEnv::new();
        let send = |d: &mut Domain, env: &mut FakeEnv| {
            env.put(0x300, &ev::EvtchnSend { port });
            call(
                d,
                env,
                xen::HYPERVISOR_EVENT_CHANNEL_OP,
                [ev::EVTCHNOP_SEND as u64, 0x300, 0, 0, 0],
            )
            .ret
        };
        // The backend found nothing to take: no answer.
        assert_eq!(send(&mut d, &mut env), 0);
        assert_eq!(env.console_kicks, 1);
        assert!(!crate::event_channel::is_pending(&env.si(), port));
        // It took output: the guest is notified back on the same port.
        env.console_takes = true;
        assert_eq!(send(&mut d, &mut env), 0);
        assert_eq!(env.console_kicks, 2);
        assert!(crate::event_channel::is_pending(&env.si(), port));
        // Status: interdomain, to the hypervisor.
        let status = ev::EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        };
        env.put(0x300, &status);
        assert_eq!(
            call(
                &mut d,
                &mut env,
                xen::HYPERVISOR_EVENT_CHANNEL_OP,
                [ev::EVTCHNOP_STATUS as u64, 0x300, 0, 0, 0]
            )
            .ret,
            0
        );
        let status: ev::EvtchnStatus = env.get(0x300);
        assert_eq!(status.status, ev::EVTCHNSTAT_INTERDOMAIN);
        assert_eq!(status.u[..2], xen::DOMID_XEN.to_le_bytes());
    }

    #[test]
    fn poll_without_heap_is_enomem_not_a_crash() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let port = d.events.bind_ipi(0).unwrap();
        env.put(0x500, &port);
        env.put(
            0x400,
            &sched::SchedPoll {
                ports: 0x500,
                nr_ports: 1,
                timeout: 5_000_000,
                ..sched::SchedPoll::new_zeroed()
            },
        );
        let args = [sched::SCHEDOP_POLL as u64, 0x400, 0, 0, 0];
        let out = crate::test_alloc::failing_allocations(|| {
            call(&mut d, &mut env, xen::HYPERVISOR_SCHED_OP, args)
        });
        assert_eq!(out, Outcome::error(errno::ENOMEM));
        assert!(d.vcpus[0].poll_ports.is_empty());
        // With a heap, the same call blocks.
        let out = call(&mut d, &mut env, xen::HYPERVISOR_SCHED_OP, args);
        assert_eq!(out.next, Next::Block(Some(5_000_000)));
        assert_eq!(d.vcpus[0].poll_ports, [port]);
    }

    #[test]
    fn poll_waits_for_its_ports_even_masked() {
        use rxen_abi::event_channel as ev;
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let a = d.events.bind_ipi(0).unwrap();
        let b = d.events.bind_ipi(0).unwrap();
        let poll = |d: &mut Domain, env: &mut FakeEnv, ports: &[u32], timeout: u64| {
            for (i, p) in ports.iter().enumerate() {
                env.put(0x500 + 4 * i as u64, p);
            }
            env.put(
                0x400,
                &sched::SchedPoll {
                    ports: 0x500,
                    nr_ports: ports.len() as u32,
                    timeout,
                    ..sched::SchedPoll::new_zeroed()
                },
            );
            call(
                d,
                env,
                xen::HYPERVISOR_SCHED_OP,
                [sched::SCHEDOP_POLL as u64, 0x400, 0, 0, 0],
            )
        };
        // Nothing pending: the vCPU blocks until the timeout.
        let out = poll(&mut d, &mut env, &[a], 5_000_000);
        assert_eq!(
            out,
            Outcome {
                ret: 0,
                next: Next::Block(Some(5_000_000))
            }
        );
        d.vcpus[0].blocked = Some(Some(5_000_000));
        // A send on the polled port, masked, ends the poll; no upcall.
        let mask_at = core::mem::offset_of!(xen::SharedInfo, evtchn_mask);
        env.si().test_and_set_bit(mask_at, a as usize);
        env.put(0x300, &ev::EvtchnSend { port: a });
        call(
            &mut d,
            &mut env,
            xen::HYPERVISOR_EVENT_CHANNEL_OP,
            [ev::EVTCHNOP_SEND as u64, 0x300, 0, 0, 0],
        );
        assert_eq!(d.vcpus[0].blocked, None, "the polled port woke it");
        assert!(!upcall_pending(&d, 0, &mut env));
        // Already pending: returns at once.
        assert_eq!(poll(&mut d, &mut env, &[b, a], 0), Outcome::value(0));
        // A send on another port does not end a poll on `b`... unless it is
        // delivered as an upcall (it is not masked): any event ends it.
        assert_eq!(
            poll(&mut d, &mut env, &[b], 0),
            Outcome {
                ret: 0,
                next: Next::Block(None)
            }
        );
        // Bad input.
        assert_eq!(poll(&mut d, &mut env, &[4096], 0).ret, ret(errno::EINVAL));
        assert_eq!(
            poll(&mut d, &mut env, &[1; 129], 0).ret,
            ret(errno::EINVAL),
            "too many ports"
        );
    }
}
