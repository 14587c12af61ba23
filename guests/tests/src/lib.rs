//! PVH test guests for rxen, validated against the real Xen 4.17: one binary per test
//! in `src/bin/`, each printing `Test result: SUCCESS|FAILURE|ERROR|SKIP` and shutting
//! down. This library only holds helpers shared by several guests.
#![no_std]
