//! The Power State Coordination Interface (Arm DEN0022) as Cairn presents it to guests:
//! function IDs, return codes, versions, which functions each version has and what a
//! suspend asks for. Pure definitions that import nothing, so the arch layer's calls to
//! the machine's own firmware can use [`fid`]; answering a guest's call is [`service`].

pub mod service;
#[cfg(test)]
mod tests;

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

/// What CPU_SUSPEND asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suspend {
    /// Context kept; the call returns SUCCESS after a wake-up event.
    Standby,
    /// Context lost; on wake-up the vCPU resumes at `entry` with x0 = `context`.
    Powerdown { entry: u64, context: u64 },
}

/// MIGRATE_INFO_TYPE: "Trusted OS is either not present or does not require migration".
pub const MIGRATE_INFO_NO_TRUSTED_OS: i64 = 2;

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
