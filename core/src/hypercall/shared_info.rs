//! The shared-info page and each vCPU's `vcpu_info` (in the shared-info
//! page or registered by VCPUOP_register_vcpu_info): the wall clock and the
//! pvclock time (Xen's arch/x86/time.c), and the upcall flag and mask.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::xen;
use zerocopy::IntoBytes;

use super::GuestEnv;
use crate::domain::Domain;
use crate::mm::Gpa;
use crate::shared_page::SharedPage;

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
            // vcpu < XEN_LEGACY_MAX_VCPUS: within the page.
            core::mem::offset_of!(xen::SharedInfo, vcpu_info)
                .wrapping_add(vcpu.wrapping_mul(core::mem::size_of::<xen::VcpuInfo>())),
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
pub(crate) fn with_vcpu_info<R>(
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
            let at = Gpa(gpa).page_offset() as usize;
            env.guest_page(Gpa(gpa).gfn(), &mut |page| {
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
        page.write(base.saturating_add(offset), bytes)
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
    // Versions are even and at least 2 (next_version).
    vcpu_info_write(
        domain,
        vcpu,
        env,
        at,
        &version.wrapping_sub(1).to_le_bytes(),
    );
    let after_version = time.as_bytes().get(4..).unwrap_or(&[]);
    vcpu_info_write(domain, vcpu, env, at.wrapping_add(4), after_version);
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
    write_wallclock(env);
    for vcpu in 0..domain.vcpus.len() {
        write_vcpu_time(domain, vcpu, env);
    }
}

/// Publishes the wall clock in the shared-info page (Xen's
/// `update_domain_wallclock_time`).
pub(crate) fn write_wallclock(env: &mut dyn GuestEnv) {
    let (sec, nsec) = env.wallclock_base();
    let version_at = core::mem::offset_of!(xen::SharedInfo, wc_version);
    let version = next_version();
    with_shared_info(env, |page| {
        page.store_u32(version_at, version.wrapping_sub(1));
        page.store_u32(core::mem::offset_of!(xen::SharedInfo, wc_sec), sec as u32);
        page.store_u32(core::mem::offset_of!(xen::SharedInfo, wc_nsec), nsec);
        page.store_u32(
            core::mem::offset_of!(xen::SharedInfo, wc_sec_hi),
            (sec >> 32) as u32,
        );
        page.store_u32(version_at, version);
    });
}

/// Byte offset of `evtchn_upcall_pending` in a `vcpu_info`.
pub(crate) const UPCALL_PENDING_AT: usize =
    core::mem::offset_of!(xen::VcpuInfo, evtchn_upcall_pending);

/// Byte offset of `evtchn_upcall_mask` in a `vcpu_info`.
const UPCALL_MASK_AT: usize = core::mem::offset_of!(xen::VcpuInfo, evtchn_upcall_mask);

/// Byte offset of `evtchn_pending_sel` in a `vcpu_info`.
pub(crate) const PENDING_SEL_AT: usize = core::mem::offset_of!(xen::VcpuInfo, evtchn_pending_sel);

/// Whether vCPU `vcpu` has an upcall pending that it has not masked.
pub fn upcall_pending(domain: &Domain, vcpu: usize, env: &mut dyn GuestEnv) -> bool {
    with_vcpu_info(domain, vcpu, env, |page, base| {
        page.load_u8(base.saturating_add(UPCALL_PENDING_AT))
            .unwrap_or(0)
            != 0
            && page
                .load_u8(base.saturating_add(UPCALL_MASK_AT))
                .unwrap_or(0)
                == 0
    })
    .unwrap_or(false)
}

pub(super) fn set_upcall_mask(domain: &Domain, vcpu: usize, env: &mut dyn GuestEnv, value: u8) {
    with_vcpu_info(domain, vcpu, env, |page, base| {
        page.store_u8(base.saturating_add(UPCALL_MASK_AT), value)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{domu, FakeEnv};
    use crate::time::TimeScale;
    use zerocopy::FromBytes;

    fn shared_info(env: &FakeEnv) -> xen::SharedInfo {
        let bytes = env.si_bytes();
        xen::SharedInfo::read_from_prefix(&bytes).unwrap().0
    }

    /// The pvclock FakeEnv's clock gives: TSC twice the system time, 2 GHz.
    fn assert_pvclock(time: &xen::VcpuTimeInfo, now: u64) {
        assert!(
            time.version != 0 && time.version.is_multiple_of(2),
            "published"
        );
        assert_eq!((time.system_time, time.tsc_timestamp), (now, now * 2));
        let scale = TimeScale::from_hz(2_000_000_000);
        assert_eq!(
            (time.tsc_to_system_mul, time.tsc_shift),
            (scale.mul_frac, scale.shift)
        );
        assert_ne!(time.flags & xen::XEN_PVCLOCK_TSC_STABLE_BIT, 0);
    }

    #[test]
    fn the_wall_clock_and_every_vcpus_time_are_published() {
        let (d, mut env) = (domu(), FakeEnv::new());
        write_shared_info_time(&d, &mut env);
        let si = shared_info(&env);
        assert!(si.wc_version != 0 && si.wc_version.is_multiple_of(2));
        assert_eq!((si.wc_sec, si.wc_sec_hi, si.wc_nsec), (1_700_000_000, 0, 5));
        for vcpu in 0..d.vcpus.len() {
            assert_pvclock(&si.vcpu_info[vcpu].time, env.now);
        }
        assert_eq!(si.vcpu_info[2].time.version, 0, "no third vCPU");
    }

    #[test]
    fn a_registered_vcpu_info_replaces_the_shared_info_slot() {
        let (mut d, mut env) = (domu(), FakeEnv::new());
        let gpa = 3 * 4096 + 64;
        d.vcpus[1].vcpu_info_gpa = Some(gpa);
        write_vcpu_time(&d, 1, &mut env);
        let info: xen::VcpuInfo = env.get(gpa);
        assert_pvclock(&info.time, env.now);
        assert_eq!(shared_info(&env).vcpu_info[1].time.version, 0);
        // The upcall flag and mask are read and written there too.
        assert!(!upcall_pending(&d, 1, &mut env));
        env.put(gpa + UPCALL_PENDING_AT as u64, &1u8);
        assert!(upcall_pending(&d, 1, &mut env));
        set_upcall_mask(&d, 1, &mut env, 1);
        assert_eq!(env.get::<u8>(gpa + UPCALL_MASK_AT as u64), 1);
        assert!(!upcall_pending(&d, 1, &mut env), "masked");
        assert!(!upcall_pending(&d, 0, &mut env), "vCPU 0 untouched");
    }
}
