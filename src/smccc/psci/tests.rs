//! PSCI's table of every function and error path per version, through the one SMCCC
//! dispatcher as a guest's call goes, and the definitions' own checks.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::hw::{Hardware, Hw};
use crate::smccc::call::{Call, Conduit, Outcome};
use crate::smccc::dispatch::dispatch;
use crate::vm::testing::vm_with_on;
use crate::vm::Vm;

/// What a row expects: a value in x0, or an action.
#[derive(Debug, PartialEq)]
enum Want {
    X0(i64),
    Is(Outcome),
}
use Want::{Is, X0};

const ENTRY: u64 = 0x4800_0000;
const V01: Version = Version::V0_1;
const V02: Version = Version::V0_2;
const V10: Version = Version::V1_0;
const V11: Version = Version::V1_1;
const BOOT_ONLY: [bool; 4] = [true, false, false, false];
const ALL_ON: [bool; 4] = [true; 4];

/// (version, vCPUs on, function, x1-x3) -> expected.
type Row = (Version, [bool; 4], u32, [u64; 3], Want);

fn rows() -> Vec<Row> {
    vec![
        // PSCI_VERSION exists from 0.2.
        (V01, BOOT_ONLY, fid::PSCI_VERSION, [0; 3], X0(ret::NOT_SUPPORTED)),
        (V02, BOOT_ONLY, fid::PSCI_VERSION, [0; 3], X0(0x2)),
        (V10, BOOT_ONLY, fid::PSCI_VERSION, [0; 3], X0(0x1_0000)),
        (V11, BOOT_ONLY, fid::PSCI_VERSION, [0; 3], X0(0x1_0001)),
        // CPU_ON: success, already on, bad MPIDR, bad entry; the codes older versions lack.
        (V11, BOOT_ONLY, fid::CPU_ON_64, [1, ENTRY, 7], X0(ret::SUCCESS)),
        (V11, BOOT_ONLY, fid::CPU_ON_32, [0xFFFF_FFFF_0000_0002, ENTRY, 7], X0(ret::SUCCESS)),
        (V11, ALL_ON, fid::CPU_ON_64, [1, ENTRY, 7], X0(ret::ALREADY_ON)),
        (V01, ALL_ON, fid::CPU_ON_64, [1, ENTRY, 7], X0(ret::INVALID_PARAMETERS)),
        (V11, BOOT_ONLY, fid::CPU_ON_64, [9, ENTRY, 7], X0(ret::INVALID_PARAMETERS)),
        (V11, BOOT_ONLY, fid::CPU_ON_64, [1 << 24 | 1, ENTRY, 7], X0(ret::INVALID_PARAMETERS)),
        (V11, BOOT_ONLY, fid::CPU_ON_64, [1, 0x1000, 7], X0(ret::INVALID_ADDRESS)),
        (V02, BOOT_ONLY, fid::CPU_ON_64, [1, 0x1000, 7], X0(ret::INVALID_PARAMETERS)),
        (V01, BOOT_ONLY, fid::CPU_ON_32, [1, ENTRY, 7], X0(ret::NOT_SUPPORTED)),
        // CPU_OFF stops the caller.
        (V11, ALL_ON, fid::CPU_OFF, [0; 3], Is(Outcome::CpuOff)),
        (V01, ALL_ON, fid::CPU_OFF, [0; 3], Is(Outcome::CpuOff)),
        // AFFINITY_INFO at levels 0-3, a bad level, nothing matching.
        (V11, BOOT_ONLY, fid::AFFINITY_INFO_64, [0, 0, 0], X0(AFFINITY_ON)),
        (V11, BOOT_ONLY, fid::AFFINITY_INFO_64, [2, 0, 0], X0(AFFINITY_OFF)),
        (V11, BOOT_ONLY, fid::AFFINITY_INFO_32, [2, 1, 0], X0(AFFINITY_ON)),
        (V11, BOOT_ONLY, fid::AFFINITY_INFO_64, [2, 3, 0], X0(AFFINITY_ON)),
        (V11, BOOT_ONLY, fid::AFFINITY_INFO_64, [2, 4, 0], X0(ret::INVALID_PARAMETERS)),
        (V11, BOOT_ONLY, fid::AFFINITY_INFO_64, [0x100, 0, 0], X0(ret::INVALID_PARAMETERS)),
        (V01, BOOT_ONLY, fid::AFFINITY_INFO_64, [0, 0, 0], X0(ret::NOT_SUPPORTED)),
        // CPU_SUSPEND: standby, powerdown, reserved bits, a bad entry.
        (V11, ALL_ON, fid::CPU_SUSPEND_64, [0, 0, 0], Is(Outcome::CpuSuspend(Suspend::Standby))),
        (
            V11,
            ALL_ON,
            fid::CPU_SUSPEND_64,
            [1 << 16, ENTRY, 5],
            Is(Outcome::CpuSuspend(Suspend::Powerdown { entry: ENTRY, context: 5 })),
        ),
        (V11, ALL_ON, fid::CPU_SUSPEND_64, [1 << 17, 0, 0], X0(ret::INVALID_PARAMETERS)),
        (V11, ALL_ON, fid::CPU_SUSPEND_32, [1 << 31, 0, 0], X0(ret::INVALID_PARAMETERS)),
        (V11, ALL_ON, fid::CPU_SUSPEND_64, [1 << 16, 0x10, 0], X0(ret::INVALID_ADDRESS)),
        // No trusted OS to migrate.
        (V11, ALL_ON, fid::MIGRATE_INFO_TYPE, [0; 3], X0(MIGRATE_INFO_NO_TRUSTED_OS)),
        (V11, ALL_ON, fid::MIGRATE_64, [1, 0, 0], X0(ret::NOT_SUPPORTED)),
        (V11, ALL_ON, fid::MIGRATE_INFO_UP_CPU_64, [0; 3], X0(ret::NOT_SUPPORTED)),
        // System events.
        (V02, ALL_ON, fid::SYSTEM_OFF, [0; 3], Is(Outcome::SystemOff)),
        (V01, ALL_ON, fid::SYSTEM_OFF, [0; 3], X0(ret::NOT_SUPPORTED)),
        (V02, ALL_ON, fid::SYSTEM_RESET, [0; 3], Is(Outcome::SystemReset)),
        (V11, ALL_ON, fid::SYSTEM_RESET2_64, [0, 9, 0], Is(Outcome::SystemReset2 { reset_type: 0, cookie: 9 })),
        (
            V11,
            ALL_ON,
            fid::SYSTEM_RESET2_32,
            [0x8000_0001, 9, 0],
            Is(Outcome::SystemReset2 { reset_type: 0x8000_0001, cookie: 9 }),
        ),
        (V11, ALL_ON, fid::SYSTEM_RESET2_64, [1, 0, 0], X0(ret::INVALID_PARAMETERS)),
        (V10, ALL_ON, fid::SYSTEM_RESET2_64, [0, 0, 0], X0(ret::NOT_SUPPORTED)),
        (
            V10,
            BOOT_ONLY,
            fid::SYSTEM_SUSPEND_64,
            [ENTRY, 3, 0],
            Is(Outcome::SystemSuspend { entry: ENTRY, context: 3 }),
        ),
        (V10, ALL_ON, fid::SYSTEM_SUSPEND_64, [ENTRY, 3, 0], X0(ret::DENIED)),
        (V10, BOOT_ONLY, fid::SYSTEM_SUSPEND_32, [0x10, 3, 0], X0(ret::INVALID_ADDRESS)),
        (V02, BOOT_ONLY, fid::SYSTEM_SUSPEND_64, [ENTRY, 3, 0], X0(ret::NOT_SUPPORTED)),
        // PSCI_FEATURES.
        (V02, ALL_ON, fid::PSCI_FEATURES, [u64::from(fid::CPU_ON_64), 0, 0], X0(ret::NOT_SUPPORTED)),
        (V10, ALL_ON, fid::PSCI_FEATURES, [u64::from(fid::CPU_SUSPEND_64), 0, 0], X0(0)),
        (V10, ALL_ON, fid::PSCI_FEATURES, [u64::from(fid::SYSTEM_SUSPEND_32), 0, 0], X0(0)),
        (V10, ALL_ON, fid::PSCI_FEATURES, [u64::from(fid::SYSTEM_RESET2_64), 0, 0], X0(ret::NOT_SUPPORTED)),
        (V11, ALL_ON, fid::PSCI_FEATURES, [u64::from(fid::SYSTEM_RESET2_64), 0, 0], X0(0)),
        (V11, ALL_ON, fid::PSCI_FEATURES, [0x8000_0000, 0, 0], X0(0)),
        (V11, ALL_ON, fid::PSCI_FEATURES, [u64::from(fid::MIGRATE_64), 0, 0], X0(ret::NOT_SUPPORTED)),
        (V11, ALL_ON, fid::PSCI_FEATURES, [0x8400_001F, 0, 0], X0(ret::NOT_SUPPORTED)),
    ]
}

fn run(vm: &Vm, conduit: Conduit, function: u32, args: [u64; 3]) -> Want {
    let mut x = [0u64; 8];
    x[0] = u64::from(function);
    x[1..4].copy_from_slice(&args);
    let call = Call { conduit, imm: 0, caller_aarch32: false, vcpu: 0, x };
    match dispatch(&call, vm, Hw::firmware()) {
        Outcome::Return(res) => X0(res.registers()[0] as i64),
        other => Is(other),
    }
}

#[test]
fn every_function_and_error_path_per_version() {
    for (n, (version, on, function, args, want)) in rows().into_iter().enumerate() {
        for conduit in [Conduit::Hvc, Conduit::Smc] {
            let vm = vm_with_on(version, &on);
            let got = run(&vm, conduit, function, args);
            assert_eq!(got, want, "row {n}: {version:?} {conduit:?} fid {function:#x} args {args:x?}");
        }
    }
}

#[test]
fn cpu_on_counts_as_on_at_once() {
    let vm = vm_with_on(V11, &BOOT_ONLY);
    assert_eq!(run(&vm, Conduit::Hvc, fid::CPU_ON_64, [3, ENTRY, 0]), X0(ret::SUCCESS));
    assert_eq!(run(&vm, Conduit::Smc, fid::AFFINITY_INFO_64, [3, 0, 0]), X0(AFFINITY_ON));
    assert_eq!(run(&vm, Conduit::Smc, fid::CPU_ON_64, [3, ENTRY, 0]), X0(ret::ALREADY_ON));
}

#[test]
fn affinity_masks_per_level() {
    assert_eq!(affinity_mask(0), Some(0xFF_00FF_FFFF));
    assert_eq!(affinity_mask(1).map(|m| 0x0102 & m), Some(0x0100));
    assert_eq!(affinity_mask(4), None);
}

#[test]
fn version_encoding_matches_den0022() {
    assert_eq!(Version::V0_2.encode(), 0x2);
    assert_eq!(Version::V1_0.encode(), 0x1_0000);
    assert_eq!(Version::V1_1.encode(), 0x1_0001);
    assert!(Version::V0_2 < Version::V1_0);
}
