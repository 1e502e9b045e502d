//! The Power State Coordination Interface (Arm DEN0022) as Cairn presents it to guests:
//! function IDs, return codes and versions. Pure logic, tested on the host.

/// PSCI function IDs (DEN0022 §5.1, table 5-1). 32-bit IDs are 0x8400_00nn, the
/// SMC64 forms 0xC400_00nn; several functions have no SMC64 form at all.
pub mod fid {
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON_32: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xC400_0003;
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    pub const MIGRATE_32: u32 = 0x8400_0005;
    pub const MIGRATE_64: u32 = 0xC400_0005;
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    pub const MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
    pub const MIGRATE_INFO_UP_CPU_64: u32 = 0xC400_0007;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const PSCI_FEATURES: u32 = 0x8400_000A;
    pub const SYSTEM_SUSPEND_32: u32 = 0x8400_000E;
    pub const SYSTEM_SUSPEND_64: u32 = 0xC400_000E;
    pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
    pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;
}

/// The owner-4 function numbers that belong to PSCI (DEN0028 §6.1: 0x00-0x1F).
pub const FUNCTION_NUMBERS: core::ops::RangeInclusive<u16> = 0x00..=0x1F;

/// PSCI return codes (DEN0022 §5.2.2).
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const DENIED: i64 = -3;
    pub const ALREADY_ON: i64 = -4;
    pub const ON_PENDING: i64 = -5;
    pub const INTERNAL_FAILURE: i64 = -6;
    pub const NOT_PRESENT: i64 = -7;
    pub const DISABLED: i64 = -8;
    pub const INVALID_ADDRESS: i64 = -9;
}

/// A PSCI version, `major << 16 | minor` on the wire (DEN0022 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const V0_1: Version = Version { major: 0, minor: 1 };
    pub const V0_2: Version = Version { major: 0, minor: 2 };
    pub const V1_0: Version = Version { major: 1, minor: 0 };
    pub const V1_1: Version = Version { major: 1, minor: 1 };

    /// The encoding PSCI_VERSION returns; bit 31 is always zero.
    pub const fn encode(self) -> u32 {
        (self.major as u32) << 16 | self.minor as u32
    }
}

/// The version a VM gets unless it is configured otherwise.
pub const DEFAULT_VERSION: Version = Version::V1_1;

use crate::smccc::dispatch::{Call, Outcome, Results, VmFirmware};
use crate::smccc::FunctionId;

/// Whether `function` exists in PSCI `version` (DEN0022 §5.1, table 5-1 "Introduced in";
/// for 0.1, the functions whose IDs Cairn publishes in the guest device tree).
pub fn exists_in(function: u32, version: Version) -> bool {
    use fid::*;
    if version == Version::V0_1 {
        return matches!(function, CPU_SUSPEND_64 | CPU_OFF | CPU_ON_64 | MIGRATE_64);
    }
    let since = match function {
        PSCI_VERSION
        | CPU_SUSPEND_32
        | CPU_SUSPEND_64
        | CPU_OFF
        | CPU_ON_32
        | CPU_ON_64
        | AFFINITY_INFO_32
        | AFFINITY_INFO_64
        | MIGRATE_32
        | MIGRATE_64
        | MIGRATE_INFO_TYPE
        | MIGRATE_INFO_UP_CPU_32
        | MIGRATE_INFO_UP_CPU_64
        | SYSTEM_OFF
        | SYSTEM_RESET => Version::V0_2,
        PSCI_FEATURES | SYSTEM_SUSPEND_32 | SYSTEM_SUSPEND_64 => Version::V1_0,
        SYSTEM_RESET2_32 | SYSTEM_RESET2_64 => Version::V1_1,
        _ => return false,
    };
    version >= since
}

/// PSCI 0.1 defines only SUCCESS, NOT_SUPPORTED, INVALID_PARAMETERS and DENIED, and
/// INVALID_ADDRESS arrived in 1.0: codes a version lacks are reported as
/// INVALID_PARAMETERS, as KVM and Xen do.
fn code_for(version: Version, code: i64) -> i64 {
    match code {
        ret::ALREADY_ON if version == Version::V0_1 => ret::INVALID_PARAMETERS,
        ret::INVALID_ADDRESS if version < Version::V1_0 => ret::INVALID_PARAMETERS,
        _ => code,
    }
}

/// CPU_SUSPEND's power_state parameter in the original format (DEN0022 §5.4.2.1):
/// StateID [15:0], StateType [16] (1 = powerdown), PowerLevel [25:24]; the other bits are
/// reserved and must be zero.
const POWER_STATE_RESERVED: u64 = !0x0301_FFFF & 0xFFFF_FFFF;
const POWER_STATE_TYPE_POWERDOWN: u64 = 1 << 16;

/// What CPU_SUSPEND asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suspend {
    /// Context kept; the call returns SUCCESS after a wake-up event.
    Standby,
    /// Context lost; on wake-up the vCPU resumes at `entry` with x0 = `context`.
    Powerdown { entry: u64, context: u64 },
}

/// SYSTEM_RESET2 reset types (DEN0022 §5.17): bit 31 clear is architectural, where only
/// SYSTEM_WARM_RESET (0) exists; bit 31 set is vendor-specific.
const RESET_TYPE_VENDOR: u64 = 1 << 31;
const SYSTEM_WARM_RESET: u64 = 0;

/// Answers a PSCI call (DEN0022 §5) for the VM's PSCI version. Functions the version does
/// not have, and optional ones Cairn does not implement, answer NOT_SUPPORTED (§5.1).
pub fn call(fid: FunctionId, call: &Call, vm: &dyn VmFirmware) -> Outcome {
    let version = vm.psci_version();
    let ret = |code: i64| Outcome::Return(Results::x0(code_for(version, code)));
    if !exists_in(fid.0, version) {
        return ret(ret::NOT_SUPPORTED);
    }
    match fid.0 {
        fid::PSCI_VERSION => ret(i64::from(version.encode())),
        fid::CPU_ON_32 | fid::CPU_ON_64 => ret(vm.cpu_on(call.arg(1), call.arg(2), call.arg(3))),
        fid::CPU_OFF => Outcome::CpuOff,
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => cpu_suspend(call, vm, version),
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => ret(vm.affinity_info(call.arg(1), call.arg(2))),
        // No trusted OS lives below Cairn's guests: nothing to migrate (§5.8-5.10).
        fid::MIGRATE_32 | fid::MIGRATE_64 | fid::MIGRATE_INFO_UP_CPU_32 | fid::MIGRATE_INFO_UP_CPU_64 => {
            ret(ret::NOT_SUPPORTED)
        }
        fid::MIGRATE_INFO_TYPE => ret(MIGRATE_INFO_NO_TRUSTED_OS),
        fid::SYSTEM_OFF => Outcome::SystemOff,
        fid::SYSTEM_RESET => Outcome::SystemReset,
        fid::SYSTEM_RESET2_32 | fid::SYSTEM_RESET2_64 => {
            let reset_type = call.arg(1) & u64::from(u32::MAX);
            if reset_type & RESET_TYPE_VENDOR == 0 && reset_type != SYSTEM_WARM_RESET {
                return ret(ret::INVALID_PARAMETERS);
            }
            Outcome::SystemReset2 { reset_type: reset_type as u32, cookie: call.arg(2) }
        }
        fid::SYSTEM_SUSPEND_32 | fid::SYSTEM_SUSPEND_64 => system_suspend(call, vm),
        fid::PSCI_FEATURES => ret(features(call.arg(1) as u32, version, call.caller_aarch32)),
        _ => ret(ret::NOT_SUPPORTED),
    }
}

fn cpu_suspend(call: &Call, vm: &dyn VmFirmware, version: Version) -> Outcome {
    let power_state = call.arg(1);
    let invalid = |code| Outcome::Return(Results::x0(code_for(version, code)));
    if power_state & POWER_STATE_RESERVED != 0 {
        return invalid(ret::INVALID_PARAMETERS);
    }
    if power_state & POWER_STATE_TYPE_POWERDOWN == 0 {
        return Outcome::CpuSuspend(Suspend::Standby);
    }
    let entry = call.arg(2);
    if !entry.is_multiple_of(4) || !vm.is_guest_ram(entry) {
        return invalid(ret::INVALID_ADDRESS);
    }
    Outcome::CpuSuspend(Suspend::Powerdown { entry, context: call.arg(3) })
}

/// SYSTEM_SUSPEND (DEN0022 §5.19): only the last vCPU standing may suspend the system
/// (DENIED otherwise, §5.19.2); the entry point must be in guest RAM (INVALID_ADDRESS). On
/// success the call does not return: the VM sleeps until a wake-up event and resumes at
/// `entry` with x0 = `context`.
fn system_suspend(call: &Call, vm: &dyn VmFirmware) -> Outcome {
    let entry = call.arg(1);
    if !entry.is_multiple_of(4) || !vm.is_guest_ram(entry) {
        return Outcome::Return(Results::x0(ret::INVALID_ADDRESS));
    }
    if !vm.others_off(call.vcpu) {
        return Outcome::Return(Results::x0(ret::DENIED));
    }
    Outcome::SystemSuspend { entry, context: call.arg(2) }
}

/// MIGRATE_INFO_TYPE: "Trusted OS is either not present or does not require migration".
pub const MIGRATE_INFO_NO_TRUSTED_OS: i64 = 2;

/// PSCI_FEATURES (DEN0022 §5.15): 0 for each implemented function (for CPU_SUSPEND its
/// flags: original power_state format, platform-coordinated mode only), NOT_SUPPORTED for
/// the rest. An AArch32 caller cannot use SMC64 functions.
fn features(queried: u32, version: Version, caller_aarch32: bool) -> i64 {
    if queried == crate::smccc::SMCCC_VERSION {
        return ret::SUCCESS;
    }
    let smc64 = queried & crate::smccc::CONVENTION_64 != 0;
    if !exists_in(queried, version) || (smc64 && caller_aarch32) {
        return ret::NOT_SUPPORTED;
    }
    match queried {
        fid::MIGRATE_32 | fid::MIGRATE_64 | fid::MIGRATE_INFO_UP_CPU_32 | fid::MIGRATE_INFO_UP_CPU_64 => {
            ret::NOT_SUPPORTED
        }
        _ => ret::SUCCESS,
    }
}

/// AFFINITY_INFO values (DEN0022 §5.7.2).
pub const AFFINITY_ON: i64 = 0;
pub const AFFINITY_OFF: i64 = 1;
/// AFFINITY_INFO's lowest_affinity_level goes up to 3 (Aff3).
const MAX_AFFINITY_LEVEL: u64 = 3;
/// The affinity fields compared at each lowest_affinity_level: all four at level 0,
/// Aff3-Aff1 at level 1, Aff3-Aff2 at level 2, Aff3 at level 3.
const AFFINITY_LEVEL_MASKS: [u64; 4] = [0xFF_00FF_FFFF, 0xFF_00FF_FF00, 0xFF_00FF_0000, 0xFF_0000_0000];

/// The mask AFFINITY_INFO compares with at `level`, or None for an invalid level.
pub fn affinity_mask(level: u64) -> Option<u64> {
    (level <= MAX_AFFINITY_LEVEL).then(|| AFFINITY_LEVEL_MASKS[level as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::dispatch::{dispatch, Conduit, Host};
    use crate::smccc::trng::Entropy;
    use core::cell::RefCell;
    use std::vec;
    use std::vec::Vec;

    /// A VM of four vCPUs (MPIDRs 0-3) whose power states each row sets up.
    struct FakeVm {
        version: Version,
        on: RefCell<Vec<bool>>,
    }

    const RAM: core::ops::Range<u64> = 0x4000_0000..0x8000_0000;

    impl VmFirmware for FakeVm {
        fn psci_version(&self) -> Version {
            self.version
        }
        fn cpu_on(&self, target: u64, entry: u64, _context: u64) -> i64 {
            let mut on = self.on.borrow_mut();
            let valid = target & !0xFF_00FF_FFFF == 0;
            let Some(slot) = on.get_mut(target as usize).filter(|_| valid) else { return ret::INVALID_PARAMETERS };
            if !RAM.contains(&entry) {
                return ret::INVALID_ADDRESS;
            }
            if *slot {
                return ret::ALREADY_ON;
            }
            *slot = true;
            ret::SUCCESS
        }
        fn affinity_info(&self, target: u64, level: u64) -> i64 {
            let Some(mask) = affinity_mask(level) else { return ret::INVALID_PARAMETERS };
            let on = self.on.borrow();
            let matching: Vec<bool> =
                on.iter().enumerate().filter(|(m, _)| *m as u64 & mask == target & mask).map(|(_, o)| *o).collect();
            if matching.is_empty() {
                ret::INVALID_PARAMETERS
            } else if matching.iter().any(|o| *o) {
                AFFINITY_ON
            } else {
                AFFINITY_OFF
            }
        }
        fn is_guest_ram(&self, addr: u64) -> bool {
            RAM.contains(&addr)
        }
        fn others_off(&self, caller: usize) -> bool {
            self.on.borrow().iter().enumerate().all(|(i, on)| i == caller || !on)
        }
    }

    struct NoHost;
    impl Entropy for NoHost {
        fn available(&self) -> bool {
            false
        }
        fn next_u64(&self) -> Option<u64> {
            None
        }
    }
    impl Host for NoHost {
        fn arch_feature(&self, _: u32) -> i64 {
            ret::NOT_SUPPORTED
        }
        fn forward(&self, _: u32, _: u64) -> [u64; 4] {
            [u64::MAX, 0, 0, 0]
        }
    }

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

    fn run(vm: &FakeVm, conduit: Conduit, function: u32, args: [u64; 3]) -> Want {
        let mut x = [0u64; 8];
        x[0] = u64::from(function);
        x[1..4].copy_from_slice(&args);
        let call = Call { conduit, imm: 0, caller_aarch32: false, vcpu: 0, x };
        match dispatch(&call, vm, &NoHost) {
            Outcome::Return(res) => X0(res.registers()[0] as i64),
            other => Is(other),
        }
    }

    #[test]
    fn every_function_and_error_path_per_version() {
        for (n, (version, on, function, args, want)) in rows().into_iter().enumerate() {
            for conduit in [Conduit::Hvc, Conduit::Smc] {
                let vm = FakeVm { version, on: RefCell::new(on.to_vec()) };
                let got = run(&vm, conduit, function, args);
                assert_eq!(got, want, "row {n}: {version:?} {conduit:?} fid {function:#x} args {args:x?}");
            }
        }
    }

    #[test]
    fn cpu_on_counts_as_on_at_once() {
        let vm = FakeVm { version: V11, on: RefCell::new(BOOT_ONLY.to_vec()) };
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
}
