//! `platform_op` (Xen's arch/x86/platform_hypercall.c): the control
//! domain's operations on the hardware platform. rxen serves what a PVH
//! dom0's Linux issues: the wall clock (`XENPF_settime32`/`settime64`, which
//! must succeed or Linux retries on every tick), physical CPU information
//! (`XENPF_get_cpuinfo`) and firmware information (`XENPF_firmware_info`:
//! rxen has no BIOS disk, EDID or EFI facts, so it answers as Xen does on a
//! machine without them). Every other command is `-ENOSYS`, Xen's answer
//! for an unknown one; of those Xen implements (MTRR memtypes, microcode,
//! power management, CPU hotplug, `resource_op`, `get_symbol`...) none is
//! needed to run dom0, and Linux's callers take the error.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::platform::*;

use super::shared_info::write_wallclock;
use super::Ctx;
use super::{from_result, read_prefix, write_prefix, Outcome};
use crate::guest_handle::GuestHandle;
use crate::platform::lend_domain;

/// Nanoseconds in a second.
const NS_PER_SEC: u128 = 1_000_000_000;

/// `platform_op(op)`.
pub(super) fn do_platform_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(platform_op(ctx, args[0]))
}

fn platform_op(ctx: &mut Ctx<'_>, arg: u64) -> Result<i64, Errno> {
    let handle = GuestHandle::<XenPlatformOp>::new(arg);
    let mut op = handle.read(ctx.env)?;
    if op.interface_version != XENPF_INTERFACE_VERSION {
        return Err(errno::EACCES);
    }
    // Xen's XSM_PRIV check: the control domain only.
    if !ctx.domain.privileged {
        return Err(errno::EPERM);
    }
    match op.cmd {
        XENPF_SETTIME32 => {
            let t = read_prefix::<XenpfSettime32>(&op.u);
            settime(ctx, u64::from(t.secs), t.nsecs, t.system_time)?;
            Ok(0)
        }
        XENPF_SETTIME64 => {
            let t = read_prefix::<XenpfSettime64>(&op.u);
            if t.mbz != 0 {
                return Err(errno::EINVAL);
            }
            settime(ctx, t.secs, t.nsecs, t.system_time)?;
            Ok(0)
        }
        XENPF_GET_CPUINFO => {
            let mut info = read_prefix::<XenpfPcpuinfo>(&op.u);
            match ctx.env.physical_cpu(info.xen_cpuid) {
                Some(cpu) => {
                    info.apic_id = cpu.apic_id;
                    info.acpi_id = cpu.acpi_id;
                    info.flags = if cpu.online { XEN_PCPU_FLAGS_ONLINE } else { 0 };
                }
                None => info.flags = XEN_PCPU_FLAGS_INVALID,
            }
            info.max_present = ctx.env.max_present_cpu();
            write_prefix(&mut op.u, &info);
            handle.write(ctx.env, &op)?;
            Ok(0)
        }
        XENPF_FIRMWARE_INFO => {
            let info = read_prefix::<XenpfFirmwareInfo>(&op.u);
            match info.type_ {
                // No BIOS disk (EDD) or EDID facts were gathered at boot.
                XEN_FW_DISK_INFO | XEN_FW_DISK_MBR_SIGNATURE | XEN_FW_VBEDDC_INFO => {
                    Err(errno::ESRCH)
                }
                // rxen is not booted through EFI.
                XEN_FW_EFI_INFO => Err(errno::ENOSYS),
                XEN_FW_KBD_SHIFT_FLAGS if info.index != 0 => Err(errno::ESRCH),
                XEN_FW_KBD_SHIFT_FLAGS => {
                    // No shift key held at boot, as far as rxen knows.
                    let at = 8 + XENPF_FIRMWARE_INFO_ANSWER_AT;
                    handle.field::<u8>(at)?.write(ctx.env, &0)?;
                    Ok(0)
                }
                _ => Err(errno::EINVAL),
            }
        }
        _ => Err(errno::ENOSYS),
    }
}

/// Xen's `do_settime`: the wall clock reads `secs`.`nsecs` when system time
/// is `system_time`; every domain's shared-info page gets the new wall
/// clock. Xen computes this modulo 2^64 whatever dom0 passes; rxen refuses
/// with `-EINVAL` a time before system time 0 or beyond 2^64 seconds.
fn settime(ctx: &mut Ctx<'_>, secs: u64, nsecs: u32, system_time: u64) -> Result<(), Errno> {
    // At most 2^64 * 10^9 + 2^32: fits in 128 bits.
    let at_zero = u128::from(secs)
        .saturating_mul(NS_PER_SEC)
        .saturating_add(u128::from(nsecs))
        .checked_sub(u128::from(system_time))
        .ok_or(errno::EINVAL)?;
    let sec = u64::try_from(at_zero / NS_PER_SEC).map_err(|_| errno::EINVAL)?;
    // Below 10^9: fits.
    let nsec = (at_zero % NS_PER_SEC) as u32;
    ctx.env.set_wallclock_base(sec, nsec);
    write_wallclock(ctx.env);
    for id in ctx.env.other_domains() {
        // A domain that went away meanwhile has no clock to update.
        let _ = lend_domain(ctx.domain, ctx.env, id, |_, env| write_wallclock(env));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::dispatch;
    use crate::test_support::{two_domains, FakeEnv};
    use rxen_abi::xen::{SharedInfo, HYPERVISOR_PLATFORM_OP};
    use zerocopy::FromZeros;
    use zerocopy::IntoBytes;

    const OP_AT: u64 = 0x800;

    fn op(cmd: u32, arg: &[u8]) -> XenPlatformOp {
        let mut op = XenPlatformOp::new_zeroed();
        op.cmd = cmd;
        op.interface_version = XENPF_INTERFACE_VERSION;
        op.u[..arg.len()].copy_from_slice(arg);
        op
    }

    fn call(d: &mut crate::domain::Domain, env: &mut FakeEnv, op: &XenPlatformOp) -> i64 {
        env.mem[OP_AT as usize..][..op.as_bytes().len()].copy_from_slice(op.as_bytes());
        let mut ctx = Ctx::new(d, 0, env);
        dispatch(&mut ctx, HYPERVISOR_PLATFORM_OP, [OP_AT, 0, 0, 0, 0], 0).ret
    }

    fn wallclock(env: &FakeEnv) -> (u32, u32, u32) {
        let page = crate::shared_page::SharedPage::new(&env.shared_info);
        let at = |off| {
            let mut word = [0u8; 4];
            assert!(page.read(off, &mut word));
            u32::from_le_bytes(word)
        };
        (
            at(core::mem::offset_of!(SharedInfo, wc_sec)),
            at(core::mem::offset_of!(SharedInfo, wc_nsec)),
            at(core::mem::offset_of!(SharedInfo, wc_sec_hi)),
        )
    }

    fn dom0() -> (crate::domain::Domain, FakeEnv) {
        let (mut d, env) = two_domains();
        d.privileged = true;
        (d, env)
    }

    #[test]
    fn settime64_sets_the_wall_clock_of_every_domain() {
        let (mut d, mut env) = dom0();
        env.now = 5_000_000_000;
        let t = XenpfSettime64 {
            secs: 1_800_000_000,
            nsecs: 250,
            mbz: 0,
            system_time: 2_000_000_100,
        };
        assert_eq!(
            call(&mut d, &mut env, &op(XENPF_SETTIME64, t.as_bytes())),
            0
        );
        // At system time 0 the clock read 2 s and 100 ns less.
        assert_eq!(env.wallclock, (1_799_999_998, 150));
        assert_eq!(wallclock(&env), (1_799_999_998, 150, 0));
        // The other domain's shared info too.
        let (_, peer) = crate::test_support::peer(&mut env);
        assert_eq!(wallclock(peer), (1_799_999_998, 150, 0));
    }

    #[test]
    fn settime32_and_a_time_beyond_32_bits_of_seconds() {
        let (mut d, mut env) = dom0();
        let t = XenpfSettime32 {
            secs: 100,
            nsecs: 0,
            system_time: 0,
        };
        assert_eq!(
            call(&mut d, &mut env, &op(XENPF_SETTIME32, t.as_bytes())),
            0
        );
        assert_eq!(env.wallclock, (100, 0));
        let t = XenpfSettime64 {
            secs: 5 << 32,
            ..Default::default()
        };
        assert_eq!(
            call(&mut d, &mut env, &op(XENPF_SETTIME64, t.as_bytes())),
            0
        );
        assert_eq!(wallclock(&env), (0, 0, 5));
    }

    #[test]
    fn bad_settime_arguments_are_refused_and_change_nothing() {
        let (mut d, mut env) = dom0();
        let before = env.wallclock;
        let t = XenpfSettime64 {
            mbz: 1,
            ..Default::default()
        };
        assert_eq!(
            call(&mut d, &mut env, &op(XENPF_SETTIME64, t.as_bytes())),
            errno::EINVAL.to_hypercall_ret()
        );
        // Before system time 0, or too far for 64-bit seconds.
        for (secs, nsecs, system_time) in [(1, 0, 2_000_000_000), (u64::MAX, u32::MAX, 0)] {
            let t = XenpfSettime64 {
                secs,
                nsecs,
                system_time,
                ..Default::default()
            };
            assert_eq!(
                call(&mut d, &mut env, &op(XENPF_SETTIME64, t.as_bytes())),
                errno::EINVAL.to_hypercall_ret()
            );
        }
        assert_eq!(env.wallclock, before);
    }

    #[test]
    fn only_the_control_domain_and_the_right_version() {
        let (mut d, mut env) = two_domains();
        let t = XenpfSettime64::default();
        assert_eq!(
            call(&mut d, &mut env, &op(XENPF_SETTIME64, t.as_bytes())),
            errno::EPERM.to_hypercall_ret()
        );
        d.privileged = true;
        let mut bad = op(XENPF_SETTIME64, t.as_bytes());
        bad.interface_version = 0x0300_0000;
        assert_eq!(
            call(&mut d, &mut env, &bad),
            errno::EACCES.to_hypercall_ret()
        );
        // An unmapped argument.
        let mut ctx = Ctx::new(&mut d, 0, &mut env);
        let ret = dispatch(
            &mut ctx,
            HYPERVISOR_PLATFORM_OP,
            [u64::MAX - 8, 0, 0, 0, 0],
            0,
        )
        .ret;
        assert_eq!(ret, errno::EFAULT.to_hypercall_ret());
        // Unknown and unimplemented commands.
        for cmd in [0, XENPF_GET_DOM0_CONSOLE, XENPF_MICROCODE_UPDATE, u32::MAX] {
            assert_eq!(
                call(&mut d, &mut env, &op(cmd, &[])),
                errno::ENOSYS.to_hypercall_ret()
            );
        }
    }

    #[test]
    fn get_cpuinfo_reports_present_cpus_and_flags_the_others() {
        let (mut d, mut env) = dom0();
        let read = |env: &FakeEnv| {
            let mut op = XenPlatformOp::new_zeroed();
            op.as_mut_bytes()
                .copy_from_slice(&env.mem[OP_AT as usize..][..136]);
            read_prefix::<XenpfPcpuinfo>(&op.u)
        };
        for cpu in 0..2 {
            let q = XenpfPcpuinfo {
                xen_cpuid: cpu,
                ..Default::default()
            };
            assert_eq!(
                call(&mut d, &mut env, &op(XENPF_GET_CPUINFO, q.as_bytes())),
                0
            );
            let info = read(&env);
            assert_eq!(info.xen_cpuid, cpu);
            assert_eq!(info.flags, XEN_PCPU_FLAGS_ONLINE);
            assert_eq!(info.apic_id, cpu * 2);
            assert_eq!(info.acpi_id, cpu);
            assert_eq!(info.max_present, 1);
        }
        for cpu in [2, u32::MAX] {
            let q = XenpfPcpuinfo {
                xen_cpuid: cpu,
                apic_id: 77,
                ..Default::default()
            };
            assert_eq!(
                call(&mut d, &mut env, &op(XENPF_GET_CPUINFO, q.as_bytes())),
                0
            );
            let info = read(&env);
            assert_eq!(info.flags, XEN_PCPU_FLAGS_INVALID);
            assert_eq!(info.max_present, 1);
        }
    }

    #[test]
    fn firmware_info_answers_as_xen_without_bios_facts() {
        let (mut d, mut env) = dom0();
        let ask = |type_, index| XenpfFirmwareInfo { type_, index };
        let cases = [
            (ask(XEN_FW_DISK_INFO, 0), errno::ESRCH.to_hypercall_ret()),
            (
                ask(XEN_FW_DISK_MBR_SIGNATURE, 0),
                errno::ESRCH.to_hypercall_ret(),
            ),
            (ask(XEN_FW_VBEDDC_INFO, 0), errno::ESRCH.to_hypercall_ret()),
            (ask(XEN_FW_EFI_INFO, 0), errno::ENOSYS.to_hypercall_ret()),
            (
                ask(XEN_FW_KBD_SHIFT_FLAGS, 1),
                errno::ESRCH.to_hypercall_ret(),
            ),
            (ask(0, 0), errno::EINVAL.to_hypercall_ret()),
            (ask(99, 0), errno::EINVAL.to_hypercall_ret()),
        ];
        for (info, ret) in cases {
            assert_eq!(
                call(&mut d, &mut env, &op(XENPF_FIRMWARE_INFO, info.as_bytes())),
                ret,
                "{info:?}"
            );
        }
        let mut q = op(
            XENPF_FIRMWARE_INFO,
            ask(XEN_FW_KBD_SHIFT_FLAGS, 0).as_bytes(),
        );
        q.u[XENPF_FIRMWARE_INFO_ANSWER_AT] = 0xAA;
        assert_eq!(call(&mut d, &mut env, &q), 0);
        let mut flags = [0u8];
        flags[0] = env.mem[OP_AT as usize + 8 + XENPF_FIRMWARE_INFO_ANSWER_AT];
        assert_eq!(flags, [0]);
    }
}
