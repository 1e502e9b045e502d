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
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
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

/// Answers a PSCI call (DEN0022 §5). Functions not implemented answer NOT_SUPPORTED, as
/// a PSCI implementation must for optional functions (§5.1).
pub fn call(fid: FunctionId, call: &Call, vm: &dyn VmFirmware) -> Outcome {
    let ret = |code: i64| Outcome::Return(Results::x0(code));
    match fid.0 {
        fid::PSCI_VERSION => ret(i64::from(vm.psci_version().encode())),
        fid::CPU_ON_32 | fid::CPU_ON_64 => ret(vm.cpu_on(call.arg(1), call.arg(2), call.arg(3))),
        fid::CPU_OFF => Outcome::CpuOff,
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => ret(vm.affinity_info(call.arg(1), call.arg(2))),
        // No trusted OS lives below Cairn's guests (DEN0022 §5.9: 2 = not present).
        fid::MIGRATE_INFO_TYPE => ret(MIGRATE_INFO_NO_TRUSTED_OS),
        fid::SYSTEM_OFF => Outcome::SystemOff,
        fid::SYSTEM_RESET => Outcome::SystemReset,
        fid::PSCI_FEATURES if vm.psci_version() >= Version::V1_0 => ret(features(call.arg(1) as u32)),
        _ => ret(ret::NOT_SUPPORTED),
    }
}

/// MIGRATE_INFO_TYPE: "Trusted OS is either not present or does not require migration".
pub const MIGRATE_INFO_NO_TRUSTED_OS: i64 = 2;

/// PSCI_FEATURES (DEN0022 §5.15): 0 for each implemented function, NOT_SUPPORTED for the
/// rest. Linux enables SYSTEM_SUSPEND and SYSTEM_RESET2 on any other answer, so those
/// stay -1 until they work.
fn features(queried: u32) -> i64 {
    match queried {
        fid::PSCI_VERSION
        | fid::CPU_ON_32
        | fid::CPU_ON_64
        | fid::CPU_OFF
        | fid::AFFINITY_INFO_32
        | fid::AFFINITY_INFO_64
        | fid::MIGRATE_INFO_TYPE
        | fid::SYSTEM_OFF
        | fid::SYSTEM_RESET
        | fid::PSCI_FEATURES
        | crate::smccc::SMCCC_VERSION => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
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
