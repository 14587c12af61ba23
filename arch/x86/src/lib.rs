//! The x86_64 platform layer of rxen: boot entries, CPU tables, serial, APIC, SMP.
#![no_std]
