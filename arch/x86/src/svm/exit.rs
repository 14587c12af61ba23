//! SVM's exit information (EXITCODE, EXITINFO1/2 of the VMCB, AMD APM vol. 2
//! §15.6, 15.9-15.11, 15.25.6) decoded into the vendor-neutral
//! [`crate::exit::Exit`]. Pure: the host tests feed raw values.

use rxen_core::exit_stats::ExitReason;

use super::vmcb::exit;
use crate::exit::{Exit, IoAccess, NestedFault};

/// The exit fields [`decode`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// EXITCODE.
    pub code: u64,
    /// EXITINFO1.
    pub info1: u64,
    /// EXITINFO2.
    pub info2: u64,
    /// The guest's RAX (in the VMCB).
    pub rax: u64,
    /// The guest's RCX.
    pub rcx: u64,
    /// The guest's RDX.
    pub rdx: u64,
}

/// EXITINFO1 of IOIO: IN.
const IOIO_IN: u64 = 1 << 0;
/// EXITINFO1 of IOIO: string instruction.
const IOIO_STR: u64 = 1 << 2;
/// EXITINFO1 of IOIO: REP prefix.
const IOIO_REP: u64 = 1 << 3;
/// EXITINFO1 of NPF: a write access.
const NPF_WRITE: u64 = 1 << 1;
/// EXITINFO1 of NPF: the fault was in the guest's page walk.
const NPF_IN_WALK: u64 = 1 << 33;

/// Decodes one exit.
pub fn decode(e: &ExitInfo) -> Exit {
    let edx_eax = (e.rdx << 32) | (e.rax & 0xFFFF_FFFF);
    match e.code {
        exit::INTR | exit::NMI => Exit::Interrupt,
        exit::VINTR => Exit::InterruptWindow,
        exit::CPUID => Exit::Cpuid,
        exit::VMMCALL => Exit::Hypercall,
        exit::HLT => Exit::Hlt,
        exit::IOIO => Exit::Io(IoAccess {
            port: (e.info1 >> 16) as u16,
            // SZ8, SZ16, SZ32 in bits 4-6.
            size: match (e.info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            },
            is_in: e.info1 & IOIO_IN != 0,
            string: e.info1 & IOIO_STR != 0,
            rep: e.info1 & IOIO_REP != 0,
            next_rip: e.info2,
        }),
        exit::MSR => Exit::Msr {
            index: e.rcx as u32,
            write: (e.info1 & 1 != 0).then_some(edx_eax),
        },
        exit::NPF => Exit::NestedPageFault(NestedFault {
            gpa: e.info2,
            write: e.info1 & NPF_WRITE != 0,
            in_guest_walk: e.info1 & NPF_IN_WALK != 0,
            raw: e.info1,
        }),
        exit::XSETBV => Exit::Xsetbv {
            index: e.rcx as u32,
            value: edx_eax,
        },
        exit::WRITE_CR0 => Exit::CrWrite(0),
        exit::WRITE_CR4 => Exit::CrWrite(4),
        code @ exit::DR_READ..=0x3F => Exit::DebugRegister(code),
        exit::INVD => Exit::Invd,
        exit::VMRUN
        | exit::VMLOAD
        | exit::VMSAVE
        | exit::STGI
        | exit::CLGI
        | exit::SKINIT
        | exit::INVLPGA
        | exit::MONITOR
        | exit::MWAIT => Exit::VirtualizationInstruction,
        exit::SHUTDOWN => Exit::TripleFault,
        exit::INVALID | exit::INVALID_32 => Exit::InvalidState,
        other => Exit::Unknown(other),
    }
}

/// The row of the exit accounting ([`rxen_core::exit_stats`]) that exit
/// code `code` counts in: one match on the code, nothing decoded.
pub fn reason(code: u64) -> ExitReason {
    match code {
        exit::VMMCALL => ExitReason::Hypercall,
        exit::CPUID => ExitReason::Cpuid,
        exit::NPF => ExitReason::NestedPageFault,
        exit::IOIO => ExitReason::Io,
        exit::MSR => ExitReason::Msr,
        exit::INTR | exit::NMI => ExitReason::Interrupt,
        exit::VINTR => ExitReason::InterruptWindow,
        exit::HLT => ExitReason::Hlt,
        exit::WRITE_CR0 | exit::WRITE_CR4 | exit::XSETBV => ExitReason::Registers,
        exit::DR_READ..=0x3F => ExitReason::Registers,
        _ => ExitReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_count_under_their_reason() {
        let cases = [
            (exit::VMMCALL, ExitReason::Hypercall),
            (exit::CPUID, ExitReason::Cpuid),
            (exit::NPF, ExitReason::NestedPageFault),
            (exit::IOIO, ExitReason::Io),
            (exit::MSR, ExitReason::Msr),
            (exit::INTR, ExitReason::Interrupt),
            (exit::NMI, ExitReason::Interrupt),
            (exit::VINTR, ExitReason::InterruptWindow),
            (exit::HLT, ExitReason::Hlt),
            (exit::WRITE_CR0, ExitReason::Registers),
            (exit::XSETBV, ExitReason::Registers),
            (exit::DR_READ + 7, ExitReason::Registers),
            (exit::INVD, ExitReason::Other),
            (exit::SHUTDOWN, ExitReason::Other),
            (exit::INVALID, ExitReason::Other),
        ];
        for (code, want) in cases {
            assert_eq!(reason(code), want, "exit code {code:#x}");
        }
    }

    fn info(code: u64, info1: u64, info2: u64) -> ExitInfo {
        ExitInfo {
            code,
            info1,
            info2,
            rax: 0xAAAA_BBBB_1111_2222,
            rcx: 0xFFFF_FFFF_C000_0080,
            rdx: 0x3333_4444,
        }
    }

    #[test]
    fn io_exits_decode_port_size_direction_and_next_rip() {
        // OUT dx, al to 0xE9 (SZ8), next RIP 0x1003.
        let out = decode(&info(exit::IOIO, 0x00E9_0010, 0x1003));
        assert_eq!(
            out,
            Exit::Io(IoAccess {
                port: 0xE9,
                size: 1,
                is_in: false,
                string: false,
                rep: false,
                next_rip: 0x1003
            })
        );
        // REP INSW from 0x1F0.
        let ins = decode(&info(exit::IOIO, 0x01F0_002D, 0x2000));
        let Exit::Io(io) = ins else { panic!("{ins:?}") };
        assert_eq!(
            (io.port, io.size, io.is_in, io.string, io.rep),
            (0x1F0, 2, true, true, true)
        );
        // IN eax from 0xCFC.
        let Exit::Io(io) = decode(&info(exit::IOIO, 0x0CFC_0041, 0)) else {
            panic!()
        };
        assert_eq!((io.port, io.size, io.is_in), (0xCFC, 4, true));
        // Garbage size bits read as a 4-byte access, never a panic.
        let Exit::Io(io) = decode(&info(exit::IOIO, u64::MAX, 0)) else {
            panic!()
        };
        assert_eq!((io.port, io.size), (0xFFFF, 4));
    }

    #[test]
    fn msr_and_xsetbv_take_ecx_and_edx_eax() {
        assert_eq!(
            decode(&info(exit::MSR, 0, 0)),
            Exit::Msr {
                index: 0xC000_0080,
                write: None
            }
        );
        assert_eq!(
            decode(&info(exit::MSR, 1, 0)),
            Exit::Msr {
                index: 0xC000_0080,
                write: Some(0x3333_4444_1111_2222)
            }
        );
        assert_eq!(
            decode(&info(exit::XSETBV, 0, 0)),
            Exit::Xsetbv {
                index: 0xC000_0080,
                value: 0x3333_4444_1111_2222
            }
        );
    }

    #[test]
    fn nested_page_faults_say_where_and_how() {
        let Exit::NestedPageFault(f) = decode(&info(exit::NPF, (1 << 33) | 0b111, 0xFEE0_0300))
        else {
            panic!()
        };
        assert_eq!((f.gpa, f.write, f.in_guest_walk), (0xFEE0_0300, true, true));
        let Exit::NestedPageFault(f) = decode(&info(exit::NPF, 0b100, 0x1000)) else {
            panic!()
        };
        assert!(!f.write && !f.in_guest_walk);
    }

    #[test]
    fn the_other_exits() {
        let d = |code| decode(&info(code, 0, 0));
        assert_eq!(d(exit::INTR), Exit::Interrupt);
        assert_eq!(d(exit::NMI), Exit::Interrupt);
        assert_eq!(d(exit::VINTR), Exit::InterruptWindow);
        assert_eq!(d(exit::CPUID), Exit::Cpuid);
        assert_eq!(d(exit::VMMCALL), Exit::Hypercall);
        assert_eq!(d(exit::HLT), Exit::Hlt);
        assert_eq!(d(exit::WRITE_CR0), Exit::CrWrite(0));
        assert_eq!(d(exit::WRITE_CR4), Exit::CrWrite(4));
        assert_eq!(d(exit::DR_READ + 3), Exit::DebugRegister(exit::DR_READ + 3));
        assert_eq!(
            d(exit::DR_WRITE + 7),
            Exit::DebugRegister(exit::DR_WRITE + 7)
        );
        assert_eq!(d(exit::INVD), Exit::Invd);
        for code in [
            exit::VMRUN,
            exit::VMLOAD,
            exit::STGI,
            exit::SKINIT,
            exit::MWAIT,
        ] {
            assert_eq!(d(code), Exit::VirtualizationInstruction);
        }
        assert_eq!(d(exit::SHUTDOWN), Exit::TripleFault);
        assert_eq!(d(exit::INVALID), Exit::InvalidState);
        assert_eq!(d(exit::INVALID_32), Exit::InvalidState);
        assert_eq!(d(exit::WBINVD), Exit::Unknown(exit::WBINVD));
        assert_eq!(d(u64::MAX - 5), Exit::Unknown(u64::MAX - 5));
    }
}
