//! Xen's errno values (`xen/include/public/errno.h`), returned negated by
//! hypercalls. The values are x86 Linux's; every name errno.h defines is here,
//! including the aliases (`EWOULDBLOCK`, `EDEADLOCK`) and the two it marks
//! `__XEN__`-only.

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
/// No such process.
pub const ESRCH: Errno = Errno(3);
/// Interrupted system call (`__XEN__` only, internal).
pub const EINTR: Errno = Errno(4);
/// I/O error.
pub const EIO: Errno = Errno(5);
/// No such device or address.
pub const ENXIO: Errno = Errno(6);
/// Arg list too long.
pub const E2BIG: Errno = Errno(7);
/// Exec format error.
pub const ENOEXEC: Errno = Errno(8);
/// Bad file number.
pub const EBADF: Errno = Errno(9);
/// No child processes.
pub const ECHILD: Errno = Errno(10);
/// Try again.
pub const EAGAIN: Errno = Errno(11);
/// Operation would block (alias of EAGAIN).
pub const EWOULDBLOCK: Errno = Errno(11);
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
/// Not a directory.
pub const ENOTDIR: Errno = Errno(20);
/// Is a directory.
pub const EISDIR: Errno = Errno(21);
/// Invalid argument.
pub const EINVAL: Errno = Errno(22);
/// File table overflow.
pub const ENFILE: Errno = Errno(23);
/// Too many open files.
pub const EMFILE: Errno = Errno(24);
/// No space left on device.
pub const ENOSPC: Errno = Errno(28);
/// Read-only file system.
pub const EROFS: Errno = Errno(30);
/// Too many links.
pub const EMLINK: Errno = Errno(31);
/// Math argument out of domain of func.
pub const EDOM: Errno = Errno(33);
/// Math result not representable.
pub const ERANGE: Errno = Errno(34);
/// Resource deadlock would occur.
pub const EDEADLK: Errno = Errno(35);
/// Resource deadlock would occur (alias of EDEADLK).
pub const EDEADLOCK: Errno = Errno(35);
/// File name too long.
pub const ENAMETOOLONG: Errno = Errno(36);
/// No record locks available.
pub const ENOLCK: Errno = Errno(37);
/// Function not implemented.
pub const ENOSYS: Errno = Errno(38);
/// Directory not empty.
pub const ENOTEMPTY: Errno = Errno(39);
/// No data available.
pub const ENODATA: Errno = Errno(61);
/// Timer expired.
pub const ETIME: Errno = Errno(62);
/// Not a data message.
pub const EBADMSG: Errno = Errno(74);
/// Value too large for defined data type.
pub const EOVERFLOW: Errno = Errno(75);
/// Illegal byte sequence.
pub const EILSEQ: Errno = Errno(84);
/// Interrupted system call should be restarted (`__XEN__` only, internal).
pub const ERESTART: Errno = Errno(85);
/// Socket operation on non-socket.
pub const ENOTSOCK: Errno = Errno(88);
/// Message too large.
pub const EMSGSIZE: Errno = Errno(90);
/// Operation not supported on transport endpoint.
pub const EOPNOTSUPP: Errno = Errno(95);
/// Address already in use.
pub const EADDRINUSE: Errno = Errno(98);
/// Cannot assign requested address.
pub const EADDRNOTAVAIL: Errno = Errno(99);
/// No buffer space available.
pub const ENOBUFS: Errno = Errno(105);
/// Transport endpoint is already connected.
pub const EISCONN: Errno = Errno(106);
/// Transport endpoint is not connected.
pub const ENOTCONN: Errno = Errno(107);
/// Connection timed out.
pub const ETIMEDOUT: Errno = Errno(110);
/// Connection refused.
pub const ECONNREFUSED: Errno = Errno(111);

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
        assert_eq!(ETIME.0, 62);
        assert_eq!(ERESTART.0, 85);
        assert_eq!(EOPNOTSUPP.0, 95);
        assert_eq!(ECONNREFUSED.0, 111);
        assert_eq!(EWOULDBLOCK, EAGAIN);
        assert_eq!(EDEADLOCK, EDEADLK);
        assert_eq!(ENOSYS.to_hypercall_ret(), -38);
    }
}
