//! The calls a toolstack makes on domains (Xen's libxenctrl, `xc_*`): `domctl` and
//! `sysctl` with Xen 4.17's interface versions, reservations and memory maps of
//! another domain (`memory_op`), HVM parameters and context, and event channels
//! offered to a new domain. Each copies its argument into a hypercall buffer, makes
//! the call through [`Xencall`] and copies the answer back.

use rxen_abi::domctl::*;
use rxen_abi::event_channel::{EvtchnAllocUnbound, EVTCHNOP_ALLOC_UNBOUND};
use rxen_abi::hvm::{XenHvmParam, HVMOP_GET_PARAM, HVMOP_SET_PARAM};
use rxen_abi::memory::{
    E820Entry, XenForeignMemoryMap, XenMemoryMap, XenMemoryReservation, XENMEM_POPULATE_PHYSMAP,
    XENMEM_SET_MEMORY_MAP,
};
use rxen_abi::sysctl::*;
use rxen_abi::xen::{
    DomId, HYPERVISOR_DOMCTL, HYPERVISOR_EVENT_CHANNEL_OP, HYPERVISOR_HVM_OP, HYPERVISOR_MEMORY_OP,
    HYPERVISOR_SYSCTL,
};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

use crate::call::Xencall;
use crate::{Error, Result};

/// A domain as `getdomaininfo` describes it.
pub type DomainInfo = XenDomctlGetdomaininfo;

/// The toolstack's handle on the hypervisor.
#[derive(Debug)]
pub struct Xc {
    call: Xencall,
}

impl Xc {
    /// Opens the hypercall channel.
    pub fn open() -> Result<Self> {
        Ok(Self {
            call: Xencall::open()?,
        })
    }

    /// The hypercall channel (its privcmd file makes foreign maps).
    pub fn call(&self) -> &Xencall {
        &self.call
    }

    /// Issues hypercall `op` with `value` in a buffer as its argument number `at`
    /// (others: `args`), and copies the buffer back into `value`.
    fn with_arg<T: FromBytes + IntoBytes + Immutable>(
        &self,
        op: u64,
        mut args: [u64; 5],
        at: usize,
        value: &mut T,
        what: &str,
    ) -> Result<i64> {
        let buffer = self.call.buffer_with(value)?;
        args[at] = buffer.addr();
        // SAFETY: the only address argument is the buffer, sized for `T`.
        let ret = unsafe { self.call.hypercall(op, args, what) };
        *value = buffer.read(0);
        ret
    }

    /// `domctl(op)`.
    pub fn domctl(&self, op: &mut XenDomctl, what: &str) -> Result<()> {
        self.with_arg(HYPERVISOR_DOMCTL, [0; 5], 0, op, what)
            .map(|_| ())
    }

    /// `sysctl(op)`.
    pub fn sysctl(&self, op: &mut XenSysctl, what: &str) -> Result<()> {
        self.with_arg(HYPERVISOR_SYSCTL, [0; 5], 0, op, what)
            .map(|_| ())
    }

    fn dop(cmd: u32, domain: DomId, arg: &[u8]) -> XenDomctl {
        XenDomctl::new(cmd, domain, arg)
    }

    fn sop(cmd: u32, arg: &[u8]) -> XenSysctl {
        let mut op = XenSysctl::new_zeroed();
        op.cmd = cmd;
        op.interface_version = XEN_SYSCTL_INTERFACE_VERSION;
        op.u[..arg.len()].copy_from_slice(arg);
        op
    }

    /// `createdomain` of a PVH guest (hvm and hap, the local APIC emulated, as
    /// libxl asks) with `max_vcpus` and `handle`: its id.
    pub fn create_pvh(&self, max_vcpus: u32, handle: [u8; 16]) -> Result<DomId> {
        let config = XenDomctlCreatedomain {
            handle,
            ..XenDomctlCreatedomain::pvh(max_vcpus)
        };
        let mut op = Self::dop(XEN_DOMCTL_CREATEDOMAIN, 0, config.as_bytes());
        self.domctl(&mut op, "createdomain")?;
        Ok(op.domain)
    }

    /// A domctl without argument on `domain`.
    fn simple(&self, cmd: u32, domain: DomId, what: &str) -> Result<()> {
        self.domctl(
            &mut Self::dop(cmd, domain, &[]),
            &format!("{what} d{domain}"),
        )
    }

    /// `max_vcpus`: creates the domain's vCPUs.
    pub fn max_vcpus(&self, domain: DomId, n: u32) -> Result<()> {
        let mut op = Self::dop(XEN_DOMCTL_MAX_VCPUS, domain, &n.to_le_bytes());
        self.domctl(&mut op, "max_vcpus")
    }

    /// `getvcpuinfo` of `vcpu` of `domain` (`None` past its last vCPU).
    pub fn vcpu_info(&self, domain: DomId, vcpu: u32) -> Result<Option<XenDomctlGetvcpuinfo>> {
        let mut op = Self::dop(XEN_DOMCTL_GETVCPUINFO, domain, &vcpu.to_le_bytes());
        match self.domctl(&mut op, "getvcpuinfo") {
            Ok(()) => Ok(XenDomctlGetvcpuinfo::read_from_prefix(&op.u)
                .ok()
                .map(|(info, _)| info)),
            Err(e) if e.errno == 22 || e.errno == 3 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `setvcpuaffinity` of `vcpu` of `domain`: the hard and/or soft affinity
    /// as pCPU bit masks (bit n: pCPU n; None leaves it); the two in force
    /// after it, as the hypervisor reports them (the soft one within the hard).
    pub fn set_vcpu_affinity(
        &self,
        domain: DomId,
        vcpu: u32,
        hard: Option<u64>,
        soft: Option<u64>,
    ) -> Result<(u64, u64)> {
        let flags =
            hard.map_or(0, |_| XEN_VCPUAFFINITY_HARD) | soft.map_or(0, |_| XEN_VCPUAFFINITY_SOFT);
        self.affinity_op(
            XEN_DOMCTL_SETVCPUAFFINITY,
            domain,
            vcpu,
            flags,
            [hard.unwrap_or(0), soft.unwrap_or(0)],
        )
    }

    /// `getvcpuaffinity` of `vcpu` of `domain`: its hard and soft affinity as
    /// pCPU bit masks.
    pub fn vcpu_affinity(&self, domain: DomId, vcpu: u32) -> Result<(u64, u64)> {
        let flags = XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT;
        self.affinity_op(XEN_DOMCTL_GETVCPUAFFINITY, domain, vcpu, flags, [0, 0])
    }

    /// A vcpuaffinity domctl with two 64-bit maps in one hypercall buffer.
    fn affinity_op(
        &self,
        cmd: u32,
        domain: DomId,
        vcpu: u32,
        flags: u32,
        maps: [u64; 2],
    ) -> Result<(u64, u64)> {
        let mut buffer = self.call.buffer(16)?;
        buffer.bytes_mut()[..16].copy_from_slice(maps.as_bytes());
        let map = |offset: u64| rxen_abi::sysctl::XenctlBitmap {
            bitmap: buffer.addr() + offset,
            nr_bits: 64,
            pad: 0,
        };
        let request = XenDomctlVcpuaffinity {
            vcpu,
            flags,
            cpumap_hard: map(0),
            cpumap_soft: map(8),
        };
        let mut op = Self::dop(cmd, domain, request.as_bytes());
        self.domctl(&mut op, "vcpuaffinity")?;
        Ok((buffer.read::<u64>(0), buffer.read::<u64>(8)))
    }

    /// `max_mem` in KiB.
    pub fn max_mem(&self, domain: DomId, kib: u64) -> Result<()> {
        let mut op = Self::dop(XEN_DOMCTL_MAX_MEM, domain, &kib.to_le_bytes());
        self.domctl(&mut op, "max_mem")
    }

    /// `pausedomain`.
    pub fn pause(&self, domain: DomId) -> Result<()> {
        self.simple(XEN_DOMCTL_PAUSEDOMAIN, domain, "pause")
    }

    /// `unpausedomain`.
    pub fn unpause(&self, domain: DomId) -> Result<()> {
        self.simple(XEN_DOMCTL_UNPAUSEDOMAIN, domain, "unpause")
    }

    /// `destroydomain`.
    pub fn destroy(&self, domain: DomId) -> Result<()> {
        self.simple(XEN_DOMCTL_DESTROYDOMAIN, domain, "destroy")
    }

    /// `getdomaininfo` of exactly `domain` (`None` if there is none).
    pub fn domain_info(&self, domain: DomId) -> Result<Option<DomainInfo>> {
        let mut op = Self::dop(XEN_DOMCTL_GETDOMAININFO, domain, &[]);
        match self.domctl(&mut op, "getdomaininfo") {
            Ok(()) => {
                let info = DomainInfo::read_from_prefix(&op.u)
                    .map(|(info, _)| info)
                    .map_err(|_| Error::new(5, "getdomaininfo"))?;
                Ok((info.domain == domain).then_some(info))
            }
            Err(e) if e.errno == 3 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every domain (`getdomaininfolist`), ascending ids.
    pub fn domains(&self) -> Result<Vec<DomainInfo>> {
        const BATCH: usize = 64;
        let mut all = Vec::new();
        let mut first = 0u16;
        loop {
            let mut buffer = self.call.buffer(BATCH * size_of::<DomainInfo>())?;
            let list = XenSysctlGetdomaininfolist {
                first_domain: first,
                max_domains: BATCH as u32,
                buffer: buffer.addr(),
                ..Default::default()
            };
            let mut op = Self::sop(XEN_SYSCTL_GETDOMAININFOLIST, list.as_bytes());
            self.sysctl(&mut op, "getdomaininfolist")?;
            let got = XenSysctlGetdomaininfolist::read_from_prefix(&op.u)
                .map(|(l, _)| l.num_domains as usize)
                .unwrap_or(0)
                .min(BATCH);
            let bytes = buffer.bytes_mut();
            for i in 0..got {
                all.push(
                    DomainInfo::read_from_prefix(&bytes[i * size_of::<DomainInfo>()..])
                        .map(|(info, _)| info)
                        .map_err(|_| Error::new(5, "getdomaininfolist"))?,
                );
            }
            match all.last() {
                Some(last) if got == BATCH && last.domain < u16::MAX => first = last.domain + 1,
                _ => return Ok(all),
            }
        }
    }

    /// `xen_version(cmd)` into a buffer of `len` bytes: the call's return value and
    /// the buffer's bytes up to the first NUL (the string sub-ops).
    pub fn xen_version(&self, cmd: u32, len: usize) -> Result<(i64, String)> {
        let buffer = self.call.buffer(len.max(1))?;
        let arg = if len == 0 { 0 } else { buffer.addr() };
        // SAFETY: the only address argument is the buffer, `len` bytes or more.
        let ret = unsafe {
            self.call.hypercall(
                rxen_abi::xen::HYPERVISOR_XEN_VERSION,
                [u64::from(cmd), arg, 0, 0, 0],
                "xen_version",
            )
        }?;
        let bytes = &buffer.bytes()[..len];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(len);
        Ok((ret, String::from_utf8_lossy(&bytes[..end]).into_owned()))
    }

    /// `sched_id`: the scheduler (`XEN_SCHEDULER_*`).
    pub fn sched_id(&self) -> Result<u32> {
        let mut op = Self::sop(XEN_SYSCTL_SCHED_ID, &[]);
        self.sysctl(&mut op, "sched_id")?;
        Ok(u32::from_le_bytes([op.u[0], op.u[1], op.u[2], op.u[3]]))
    }

    /// `scheduler_op` on `domain`: `cmd` (`XEN_DOMCTL_SCHEDOP_getinfo` or
    /// `putinfo`) with the scheduler's parameters `params` (credit's or RTDS's
    /// structure), which a getinfo fills.
    pub fn sched_op(
        &self,
        domain: DomId,
        sched_id: u32,
        cmd: u32,
        params: &mut [u8; 16],
    ) -> Result<()> {
        let op = XenDomctlSchedulerOp {
            sched_id,
            cmd,
            u: *params,
        };
        let mut d = Self::dop(XEN_DOMCTL_SCHEDULER_OP, domain, op.as_bytes());
        self.domctl(&mut d, "scheduler_op")?;
        if let Ok((back, _)) = XenDomctlSchedulerOp::read_from_prefix(&d.u) {
            *params = back.u;
        }
        Ok(())
    }

    /// `physinfo`.
    pub fn physinfo(&self) -> Result<XenSysctlPhysinfo> {
        let mut op = Self::sop(XEN_SYSCTL_PHYSINFO, &[]);
        self.sysctl(&mut op, "physinfo")?;
        XenSysctlPhysinfo::read_from_prefix(&op.u)
            .map(|(info, _)| info)
            .map_err(|_| Error::new(5, "physinfo"))
    }

    /// `readconsole`: the hypervisor's console history (cleared after if
    /// `clear`).
    pub fn readconsole(&self, clear: bool) -> Result<String> {
        const SIZE: usize = 64 * 1024;
        let buffer = self.call.buffer(SIZE)?;
        let request = XenSysctlReadconsole {
            clear: u8::from(clear),
            buffer: buffer.addr(),
            count: SIZE as u32,
            ..Default::default()
        };
        let mut op = Self::sop(XEN_SYSCTL_READCONSOLE, request.as_bytes());
        self.sysctl(&mut op, "readconsole")?;
        let count = XenSysctlReadconsole::read_from_prefix(&op.u)
            .map(|(r, _)| r.count as usize)
            .unwrap_or(0)
            .min(SIZE);
        Ok(String::from_utf8_lossy(&buffer.bytes()[..count]).into_owned())
    }

    /// `debug_keys`: presses `keys` on the hypervisor's console (their output
    /// goes to its history: [`Xc::readconsole`]).
    pub fn debug_keys(&self, keys: &[u8]) -> Result<()> {
        let mut buffer = self.call.buffer(keys.len().max(1))?;
        buffer.bytes_mut()[..keys.len()].copy_from_slice(keys);
        let request = XenSysctlDebugKeys {
            keys: buffer.addr(),
            nr_keys: keys.len() as u32,
            pad: 0,
        };
        let mut op = Self::sop(XEN_SYSCTL_DEBUG_KEYS, request.as_bytes());
        self.sysctl(&mut op, "debug_keys")
    }

    /// `XENMEM_populate_physmap` for `domain`: an extent of 2^`order` pages at
    /// each of `gfns`; the number of extents done.
    pub fn populate_physmap(&self, domain: DomId, gfns: &[u64], order: u32) -> Result<usize> {
        let mut list = self.call.buffer(size_of_val(gfns))?;
        list.bytes_mut()[..size_of_val(gfns)].copy_from_slice(gfns.as_bytes());
        let mut r = XenMemoryReservation {
            extent_start: list.addr(),
            nr_extents: gfns.len() as u64,
            extent_order: order,
            mem_flags: 0,
            domid: domain,
            _pad0: [0; 6],
        };
        let done = self.with_arg(
            HYPERVISOR_MEMORY_OP,
            [u64::from(XENMEM_POPULATE_PHYSMAP), 0, 0, 0, 0],
            1,
            &mut r,
            "populate_physmap",
        )?;
        Ok(usize::try_from(done).unwrap_or(0))
    }

    /// `XENMEM_set_memory_map` of `domain`.
    pub fn set_memory_map(&self, domain: DomId, entries: &[E820Entry]) -> Result<()> {
        let mut list = self.call.buffer(size_of_val(entries))?;
        list.bytes_mut()[..size_of_val(entries)].copy_from_slice(entries.as_bytes());
        let mut map = XenForeignMemoryMap {
            domid: domain,
            _pad0: [0; 6],
            map: XenMemoryMap {
                nr_entries: entries.len() as u32,
                _pad0: [0; 4],
                buffer: list.addr(),
            },
        };
        self.with_arg(
            HYPERVISOR_MEMORY_OP,
            [u64::from(XENMEM_SET_MEMORY_MAP), 0, 0, 0, 0],
            1,
            &mut map,
            "set_memory_map",
        )
        .map(|_| ())
    }

    /// `HVMOP_set_param` of `domain`.
    pub fn set_hvm_param(&self, domain: DomId, index: u32, value: u64) -> Result<()> {
        let mut param = XenHvmParam {
            domid: domain,
            pad: 0,
            index,
            value,
        };
        self.with_arg(
            HYPERVISOR_HVM_OP,
            [u64::from(HVMOP_SET_PARAM), 0, 0, 0, 0],
            1,
            &mut param,
            "HVMOP_set_param",
        )
        .map(|_| ())
    }

    /// `HVMOP_get_param` of `domain`.
    pub fn hvm_param(&self, domain: DomId, index: u32) -> Result<u64> {
        let mut param = XenHvmParam {
            domid: domain,
            pad: 0,
            index,
            value: 0,
        };
        self.with_arg(
            HYPERVISOR_HVM_OP,
            [u64::from(HVMOP_GET_PARAM), 0, 0, 0, 0],
            1,
            &mut param,
            "HVMOP_get_param",
        )?;
        Ok(param.value)
    }

    /// `EVTCHNOP_alloc_unbound`: a port of `domain` offered to `remote`.
    pub fn alloc_unbound(&self, domain: DomId, remote: DomId) -> Result<u32> {
        let mut op = EvtchnAllocUnbound {
            dom: domain,
            remote_dom: remote,
            port: 0,
        };
        self.with_arg(
            HYPERVISOR_EVENT_CHANNEL_OP,
            [u64::from(EVTCHNOP_ALLOC_UNBOUND), 0, 0, 0, 0],
            1,
            &mut op,
            "EVTCHNOP_alloc_unbound",
        )?;
        Ok(op.port)
    }

    /// `gethvmcontext`: the whole HVM context of `domain`.
    pub fn hvm_context(&self, domain: DomId) -> Result<Vec<u8>> {
        let mut op = Self::dop(XEN_DOMCTL_GETHVMCONTEXT, domain, &[0; 16]);
        self.domctl(&mut op, "gethvmcontext (size)")?;
        let size = XenDomctlHvmcontext::read_from_prefix(&op.u)
            .map(|(c, _)| c.size as usize)
            .unwrap_or(0);
        let buffer = self.call.buffer(size)?;
        let ask = XenDomctlHvmcontext {
            size: size as u32,
            pad: 0,
            buffer: buffer.addr(),
        };
        let mut op = Self::dop(XEN_DOMCTL_GETHVMCONTEXT, domain, ask.as_bytes());
        self.domctl(&mut op, "gethvmcontext")?;
        let got = XenDomctlHvmcontext::read_from_prefix(&op.u)
            .map(|(c, _)| c.size as usize)
            .unwrap_or(0)
            .min(size);
        Ok(buffer.bytes()[..got].to_vec())
    }

    /// `sethvmcontext` of `domain` with `context`.
    pub fn set_hvm_context(&self, domain: DomId, context: &[u8]) -> Result<()> {
        let mut buffer = self.call.buffer(context.len())?;
        buffer.bytes_mut()[..context.len()].copy_from_slice(context);
        let set = XenDomctlHvmcontext {
            size: context.len() as u32,
            pad: 0,
            buffer: buffer.addr(),
        };
        let mut op = Self::dop(XEN_DOMCTL_SETHVMCONTEXT, domain, set.as_bytes());
        self.domctl(&mut op, "sethvmcontext")
    }
}
