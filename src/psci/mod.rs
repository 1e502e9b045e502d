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

/// Answers a PSCI call (DEN0022 §5). Functions not yet implemented answer
/// NOT_SUPPORTED, as a PSCI implementation must for optional functions (§5.1).
pub fn call(fid: FunctionId, _call: &Call, vm: &dyn VmFirmware) -> Outcome {
    match fid.0 {
        fid::PSCI_VERSION => Outcome::Return(Results::x0(i64::from(vm.psci_version().encode()))),
        fid::SYSTEM_OFF => Outcome::SystemOff,
        _ => Outcome::Return(Results::x0(ret::NOT_SUPPORTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_encoding_matches_den0022() {
        assert_eq!(Version::V0_2.encode(), 0x2);
        assert_eq!(Version::V1_0.encode(), 0x1_0000);
        assert_eq!(Version::V1_1.encode(), 0x1_0001);
        assert!(Version::V0_2 < Version::V1_0);
    }
}
