//! Typed guest handles: Xen's `XEN_GUEST_HANDLE(T)`, a guest linear
//! address that says what it points at. [`GuestHandle::read`] and
//! [`GuestHandle::write`] copy one `T` through the platform's
//! [`GuestCopy`]; [`GuestHandle::offset`] steps through an array of `T`
//! with checked arithmetic (an address that wraps is `-EFAULT`, as an
//! unmapped one is). The handle itself is only a number: every access goes
//! through the guest's page tables and may fault.

use core::marker::PhantomData;

use rxen_abi::errno::{self, Errno};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::platform::GuestCopy;

/// A guest linear address of a `T` (or of the first of an array of `T`).
pub struct GuestHandle<T> {
    addr: u64,
    _points_at: PhantomData<fn() -> T>,
}

// Not derived: those would require `T: Clone` etc.
impl<T> Clone for GuestHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for GuestHandle<T> {}

impl<T> core::fmt::Debug for GuestHandle<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GuestHandle({:#x})", self.addr)
    }
}

impl<T> PartialEq for GuestHandle<T> {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
    }
}
impl<T> Eq for GuestHandle<T> {}

impl<T> GuestHandle<T> {
    /// The handle at guest linear address `addr` (as the guest passed it).
    pub const fn new(addr: u64) -> Self {
        Self {
            addr,
            _points_at: PhantomData,
        }
    }

    /// The guest linear address.
    pub const fn addr(self) -> u64 {
        self.addr
    }

    /// Xen's `guest_handle_add_offset`: the handle of element `index` of
    /// an array of `T` starting here (`-EFAULT` if the address overflows).
    pub fn offset(self, index: u64) -> Result<Self, Errno> {
        let size = core::mem::size_of::<T>() as u64;
        index
            .checked_mul(size)
            .and_then(|bytes| self.addr.checked_add(bytes))
            .map(Self::new)
            .ok_or(errno::EFAULT)
    }

    /// The handle of the `U` at byte `at` within the `T` (Xen's
    /// `guest_handle_cast` of a field): `-EFAULT` if the address overflows.
    pub fn field<U>(self, at: usize) -> Result<GuestHandle<U>, Errno> {
        self.addr
            .checked_add(at as u64)
            .map(GuestHandle::new)
            .ok_or(errno::EFAULT)
    }
}

impl<T: FromBytes + IntoBytes> GuestHandle<T> {
    /// Xen's `copy_from_guest`: reads the `T` (`-EFAULT` if unmapped).
    pub fn read(self, mem: &mut (impl GuestCopy + ?Sized)) -> Result<T, Errno> {
        let mut value = T::new_zeroed();
        mem.copy_in(self.addr, value.as_mut_bytes())?;
        Ok(value)
    }
}

impl<T: IntoBytes + Immutable> GuestHandle<T> {
    /// Xen's `copy_to_guest`: writes `value` (`-EFAULT` if unmapped or
    /// read-only).
    pub fn write(self, mem: &mut (impl GuestCopy + ?Sized), value: &T) -> Result<(), Errno> {
        mem.copy_out(self.addr, value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{FakeEnv, BAD, MEM};

    #[test]
    fn read_write_and_offset() {
        let mut env = FakeEnv::new();
        let list = GuestHandle::<u64>::new(0x100);
        list.offset(2).unwrap().write(&mut env, &0xAB).unwrap();
        assert_eq!(env.get::<u64>(0x110), 0xAB);
        assert_eq!(GuestHandle::<u64>::new(0x110).read(&mut env), Ok(0xAB));
        assert_eq!(list.offset(2).unwrap().addr(), 0x110);
        let field = list.field::<u32>(4).unwrap();
        field.write(&mut env, &7).unwrap();
        assert_eq!(env.get::<u32>(0x104), 7);
    }

    #[test]
    fn wrapping_and_unmapped_addresses_fault() {
        let mut env = FakeEnv::new();
        let top = GuestHandle::<u64>::new(u64::MAX - 7);
        assert_eq!(top.offset(1), Err(errno::EFAULT));
        assert_eq!(
            GuestHandle::<u64>::new(8).offset(u64::MAX),
            Err(errno::EFAULT)
        );
        assert_eq!(top.field::<u8>(8), Err(errno::EFAULT));
        assert_eq!(
            GuestHandle::<u64>::new(BAD).read(&mut env),
            Err(errno::EFAULT)
        );
        let last = GuestHandle::<u64>::new(MEM as u64 - 4);
        assert_eq!(last.write(&mut env, &1), Err(errno::EFAULT));
    }
}
