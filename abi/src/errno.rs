//! Xen's errno values (`xen/include/public/errno.h`), returned negated by hypercalls.

/// A Xen errno value (positive; hypercalls return its negation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Errno(pub i32);

impl Errno {
    /// The value a hypercall returns in RAX for this error.
    pub const fn to_hypercall_ret(self) -> i64 {
        -(self.0 as i64)
    }
}

/// Operation not permitted.
pub const EPERM: Errno = Errno(1);
/// No such file or directory.
pub const ENOENT: Errno = Errno(2);
/// No such process (no such domain).
pub const ESRCH: Errno = Errno(3);
/// Interrupted system call.
pub const EINTR: Errno = Errno(4);
/// I/O error.
pub const EIO: Errno = Errno(5);
/// No such device or address.
pub const ENXIO: Errno = Errno(6);
/// Argument list too long.
pub const E2BIG: Errno = Errno(7);
/// Try again.
pub const EAGAIN: Errno = Errno(11);
/// Out of memory.
pub const ENOMEM: Errno = Errno(12);
/// Permission denied.
pub const EACCES: Errno = Errno(13);
/// Bad address.
pub const EFAULT: Errno = Errno(14);
/// Device or resource busy.
pub const EBUSY: Errno = Errno(16);
/// File exists.
pub const EEXIST: Errno = Errno(17);
/// Cross-device link.
pub const EXDEV: Errno = Errno(18);
/// No such device.
pub const ENODEV: Errno = Errno(19);
/// Invalid argument.
pub const EINVAL: Errno = Errno(22);
/// No space left on device.
pub const ENOSPC: Errno = Errno(28);
/// Math result not representable.
pub const ERANGE: Errno = Errno(34);
/// Function not implemented.
pub const ENOSYS: Errno = Errno(38);
/// Operation not supported.
pub const EOPNOTSUPP: Errno = Errno(95);
/// Connection timed out.
pub const ETIMEDOUT: Errno = Errno(110);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_xen_errno_h() {
        assert_eq!(EPERM.0, 1);
        assert_eq!(ESRCH.0, 3);
        assert_eq!(EFAULT.0, 14);
        assert_eq!(EINVAL.0, 22);
        assert_eq!(ENOSYS.0, 38);
        assert_eq!(EOPNOTSUPP.0, 95);
        assert_eq!(ENOSYS.to_hypercall_ret(), -38);
    }
}
