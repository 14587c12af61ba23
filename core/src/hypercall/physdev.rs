//! `physdev_op` (Xen's arch/x86/physdev.c and hvm/hypercall.c's
//! `hvm_physdev_op`): what a PVH domain may ask about physical devices.
//! A PVH domain has no PIRQs (no `XENFEAT_hvm_pirqs`), so the PIRQ
//! sub-ops are `-ENOSYS`, as on Xen; the control domain reports the PCI
//! devices and MMCONFIG regions it finds ([`crate::pci::PciRegistry`]);
//! everything else is `-ENOSYS`.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::physdev::*;

use super::Ctx;
use super::{from_result, Outcome};
use crate::guest_handle::GuestHandle;

/// `physdev_op(cmd, arg)`. Xen takes `int cmd`.
pub(super) fn do_physdev_op(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(physdev_op(ctx, args[0] as u32, args[1]))
}

fn physdev_op(ctx: &mut Ctx<'_>, cmd: u32, arg: u64) -> Result<i64, Errno> {
    // hvm_physdev_op: the PCI reports only from the hardware domain.
    let reports = matches!(
        cmd,
        PHYSDEVOP_PCI_MMCFG_RESERVED
            | PHYSDEVOP_PCI_DEVICE_ADD
            | PHYSDEVOP_PCI_DEVICE_REMOVE
            | PHYSDEVOP_DBGP_OP
    );
    if !reports || !ctx.domain.privileged {
        return Err(errno::ENOSYS);
    }
    let mut result = Ok(());
    match cmd {
        PHYSDEVOP_PCI_MMCFG_RESERVED => {
            let r = GuestHandle::<PhysdevPciMmcfgReserved>::new(arg).read(ctx.env)?;
            ctx.env.with_pci(&mut |pci| {
                result = pci.mmcfg_reserved(r.address, r.segment, r.start_bus, r.end_bus, r.flags)
            });
        }
        PHYSDEVOP_PCI_DEVICE_ADD => {
            let add = GuestHandle::<PhysdevPciDeviceAdd>::new(arg).read(ctx.env)?;
            if add.flags & XEN_PCI_DEV_PXM != 0 {
                // The proximity domain follows in `optarr[0]`; rxen has one
                // NUMA node, but Xen reads it, and faults if it is not there.
                GuestHandle::<u32>::new(arg)
                    .field::<u32>(core::mem::size_of::<PhysdevPciDeviceAdd>())?
                    .read(ctx.env)?;
            }
            let physfn =
                (add.flags & XEN_PCI_DEV_VIRTFN != 0).then_some((add.physfn_bus, add.physfn_devfn));
            ctx.env
                .with_pci(&mut |pci| result = pci.add_device(add.seg, add.bus, add.devfn, physfn));
        }
        PHYSDEVOP_PCI_DEVICE_REMOVE => {
            let dev = GuestHandle::<PhysdevPciDevice>::new(arg).read(ctx.env)?;
            ctx.env
                .with_pci(&mut |pci| result = pci.remove_device(dev.seg, dev.bus, dev.devfn));
        }
        // PHYSDEVOP_dbgp_op: there is no EHCI debug port, which Xen's
        // `dbgp_op` answers with 0 (after reading the argument).
        _ => {
            GuestHandle::<[u8; 8]>::new(arg).read(ctx.env)?;
        }
    }
    result.map(|()| 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::dispatch;
    use crate::test_support::{two_domains, FakeEnv};
    use rxen_abi::xen::HYPERVISOR_PHYSDEV_OP;
    use zerocopy::IntoBytes;

    const ARG_AT: u64 = 0x900;

    fn call(d: &mut crate::domain::Domain, env: &mut FakeEnv, cmd: u32, arg: &[u8]) -> i64 {
        env.mem[ARG_AT as usize..][..arg.len()].copy_from_slice(arg);
        let mut ctx = Ctx::new(d, 0, env);
        dispatch(
            &mut ctx,
            HYPERVISOR_PHYSDEV_OP,
            [cmd as u64, ARG_AT, 0, 0, 0],
            0,
        )
        .ret
    }

    fn dom0() -> (crate::domain::Domain, FakeEnv) {
        let (mut d, env) = two_domains();
        d.privileged = true;
        (d, env)
    }

    fn add(bus: u8, devfn: u8, flags: u32) -> PhysdevPciDeviceAdd {
        PhysdevPciDeviceAdd {
            bus,
            devfn,
            flags,
            ..Default::default()
        }
    }

    #[test]
    fn dom0_reports_its_pci_devices() {
        let (mut d, mut env) = dom0();
        for devfn in [0x00, 0x08, 0x10, 0xF8, 0xFA] {
            assert_eq!(
                call(
                    &mut d,
                    &mut env,
                    PHYSDEVOP_PCI_DEVICE_ADD,
                    add(0, devfn, 0).as_bytes()
                ),
                0
            );
        }
        assert_eq!(env.pci.nr_devices(), 5);
        let dev = PhysdevPciDevice {
            seg: 0,
            bus: 0,
            devfn: 0x08,
        };
        assert_eq!(
            call(
                &mut d,
                &mut env,
                PHYSDEVOP_PCI_DEVICE_REMOVE,
                dev.as_bytes()
            ),
            0
        );
        assert_eq!(
            call(
                &mut d,
                &mut env,
                PHYSDEVOP_PCI_DEVICE_REMOVE,
                dev.as_bytes()
            ),
            errno::ENODEV.to_hypercall_ret()
        );
        assert_eq!(env.pci.nr_devices(), 4);
        // A virtual function brings its physical function.
        let mut vf = add(2, 0x11, XEN_PCI_DEV_VIRTFN);
        vf.physfn_bus = 2;
        vf.physfn_devfn = 0x10;
        assert_eq!(
            call(&mut d, &mut env, PHYSDEVOP_PCI_DEVICE_ADD, vf.as_bytes()),
            0
        );
        assert!(env.pci.is_present(0, 2, 0x10));
        // A segment the firmware does not describe.
        let mut far = add(0, 0, 0);
        far.seg = 7;
        assert_eq!(
            call(&mut d, &mut env, PHYSDEVOP_PCI_DEVICE_ADD, far.as_bytes()),
            errno::ENODEV.to_hypercall_ret()
        );
    }

    #[test]
    fn mmcfg_reserved_checks_the_mcfg_region() {
        let (mut d, mut env) = dom0();
        let mut r = PhysdevPciMmcfgReserved {
            address: 0xB000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 255,
            flags: XEN_PCI_MMCFG_RESERVED,
        };
        assert_eq!(
            call(&mut d, &mut env, PHYSDEVOP_PCI_MMCFG_RESERVED, r.as_bytes()),
            0
        );
        assert!(env.pci.mmcfg_usable(0, 0));
        r.address = 0xE000_0000;
        assert_eq!(
            call(&mut d, &mut env, PHYSDEVOP_PCI_MMCFG_RESERVED, r.as_bytes()),
            errno::EIO.to_hypercall_ret()
        );
        r.flags = 0x80;
        assert_eq!(
            call(&mut d, &mut env, PHYSDEVOP_PCI_MMCFG_RESERVED, r.as_bytes()),
            errno::EINVAL.to_hypercall_ret()
        );
    }

    #[test]
    fn a_domu_and_the_pirq_ops_get_enosys() {
        let (mut d, mut env) = two_domains();
        for cmd in [
            PHYSDEVOP_PCI_DEVICE_ADD,
            PHYSDEVOP_PCI_MMCFG_RESERVED,
            PHYSDEVOP_PCI_DEVICE_REMOVE,
            PHYSDEVOP_DBGP_OP,
        ] {
            assert_eq!(
                call(&mut d, &mut env, cmd, add(0, 8, 0).as_bytes()),
                errno::ENOSYS.to_hypercall_ret()
            );
        }
        assert_eq!(env.pci.nr_devices(), 0);
        d.privileged = true;
        for cmd in [
            PHYSDEVOP_EOI,
            PHYSDEVOP_MAP_PIRQ,
            PHYSDEVOP_UNMAP_PIRQ,
            PHYSDEVOP_IRQ_STATUS_QUERY,
            PHYSDEVOP_GET_FREE_PIRQ,
            0,
            u32::MAX,
        ] {
            assert_eq!(
                call(&mut d, &mut env, cmd, &[]),
                errno::ENOSYS.to_hypercall_ret()
            );
        }
    }

    #[test]
    fn unmapped_arguments_fault_and_change_nothing() {
        let (mut d, mut env) = dom0();
        for cmd in [
            PHYSDEVOP_PCI_DEVICE_ADD,
            PHYSDEVOP_PCI_MMCFG_RESERVED,
            PHYSDEVOP_PCI_DEVICE_REMOVE,
            PHYSDEVOP_DBGP_OP,
        ] {
            let mut ctx = Ctx::new(&mut d, 0, &mut env);
            let ret = dispatch(
                &mut ctx,
                HYPERVISOR_PHYSDEV_OP,
                [cmd as u64, u64::MAX - 2, 0, 0, 0],
                0,
            )
            .ret;
            assert_eq!(ret, errno::EFAULT.to_hypercall_ret());
        }
        // XEN_PCI_DEV_PXM with the optarr beyond the guest's memory.
        let at = crate::test_support::MEM as u64 - 12;
        let bytes = add(0, 8, XEN_PCI_DEV_PXM);
        env.mem[at as usize..].copy_from_slice(bytes.as_bytes());
        let mut ctx = Ctx::new(&mut d, 0, &mut env);
        let ret = dispatch(
            &mut ctx,
            HYPERVISOR_PHYSDEV_OP,
            [PHYSDEVOP_PCI_DEVICE_ADD as u64, at, 0, 0, 0],
            0,
        )
        .ret;
        assert_eq!(ret, errno::EFAULT.to_hypercall_ret());
        assert_eq!(env.pci.nr_devices(), 0);
    }
}
