//! QEMU test harness for rxen.
