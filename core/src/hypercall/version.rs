//! `xen_version` (Xen's common/version.c): the version, build facts, the
//! feature bits and the hypervisor command line.
// Guest input is parsed here: no unchecked arithmetic, no indexing that
// can panic (tests exempt).
#![cfg_attr(
    not(test),
    deny(clippy::arithmetic_side_effects, clippy::indexing_slicing)
)]

use rxen_abi::errno::{self, Errno};
use rxen_abi::version;
use zerocopy::FromZeros;

use super::Ctx;
use super::{from_result, Outcome};
use crate::domain::Domain;
use crate::guest_handle::GuestHandle;

/// Copies `text` into `dst`, leaving at least one NUL at the end.
fn copy_str(dst: &mut [u8], text: &str) {
    let n = text.len().min(dst.len().saturating_sub(1));
    if let (Some(dst), Some(src)) = (dst.get_mut(..n), text.as_bytes().get(..n)) {
        dst.copy_from_slice(src);
    }
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

/// `xen_version(cmd, arg)`.
pub(super) fn do_xen_version(ctx: &mut Ctx<'_>, args: [u64; 5]) -> Outcome {
    from_result(xen_version(ctx, args[0], args[1]))
}

fn xen_version(ctx: &mut Ctx<'_>, cmd: u64, arg: u64) -> Result<i64, Errno> {
    let (domain, env) = (&*ctx.domain, &mut *ctx.env);
    // Xen takes `int cmd`: the upper half of the register is ignored.
    match cmd as u32 {
        version::XENVER_VERSION => Ok(rxen_abi::version::xen_version_word() as i64),
        version::XENVER_EXTRAVERSION => {
            let mut extra = version::XenExtraversion::default();
            copy_str(&mut extra.0, "-rxen");
            GuestHandle::new(arg).write(env, &extra).map(|_| 0)
        }
        version::XENVER_COMPILE_INFO => {
            let mut info = version::XenCompileInfo::new_zeroed();
            copy_str(&mut info.compiler, "rustc");
            copy_str(&mut info.compile_by, "rxen");
            copy_str(&mut info.compile_domain, "rxen.invalid");
            copy_str(&mut info.compile_date, env!("CARGO_PKG_VERSION"));
            GuestHandle::new(arg).write(env, &info).map(|_| 0)
        }
        version::XENVER_CAPABILITIES => {
            let mut caps = version::XenCapabilitiesInfo::new_zeroed();
            copy_str(&mut caps.0, "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
            GuestHandle::new(arg).write(env, &caps).map(|_| 0)
        }
        version::XENVER_CHANGESET => {
            let mut changeset = version::XenChangesetInfo::new_zeroed();
            copy_str(
                &mut changeset.0,
                concat!("rxen ", env!("CARGO_PKG_VERSION")),
            );
            GuestHandle::new(arg).write(env, &changeset).map(|_| 0)
        }
        version::XENVER_PLATFORM_PARAMETERS => {
            let params = version::XenPlatformParameters {
                virt_start: 0xFFFF_8000_0000_0000,
            };
            GuestHandle::new(arg).write(env, &params).map(|_| 0)
        }
        version::XENVER_GET_FEATURES => {
            let mut info = GuestHandle::<version::XenFeatureInfo>::new(arg).read(env)?;
            if info.submap_idx >= rxen_abi::features::XENFEAT_NR_SUBMAPS {
                return Err(errno::EINVAL);
            }
            info.submap = feature_submap0(domain);
            GuestHandle::new(arg).write(env, &info).map(|_| 0)
        }
        version::XENVER_PAGESIZE => Ok(4096),
        version::XENVER_GUEST_HANDLE => {
            let handle = version::XenDomainHandle(domain.handle);
            GuestHandle::new(arg).write(env, &handle).map(|_| 0)
        }
        version::XENVER_COMMANDLINE => {
            if !domain.privileged {
                return Err(errno::EPERM);
            }
            let mut line = version::XenCommandline::new_zeroed();
            let text = alloc::string::String::from(env.hypervisor_cmdline());
            copy_str(&mut line.0, &text);
            GuestHandle::new(arg).write(env, &line).map(|_| 0)
        }
        _ => Err(errno::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{call, domu, ret, FakeEnv, BAD};
    use rxen_abi::xen;

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
}
