//! The PSCI calls this guest makes (Arm DEN0022), named after the specification, and how
//! their answers are shown in the log. The numbers come from guestkit::spec, the guests'
//! own copy of the specifications, not from Cairn's tables.

use core::fmt;

use guestkit::smccc;

/// The PSCI function IDs this guest uses (guestkit::spec, DEN0022 §5.1).
pub mod fid {
    pub use guestkit::spec::psci::{
        AFFINITY_INFO_64, CPU_OFF, CPU_ON_64, CPU_SUSPEND_32, CPU_SUSPEND_64, SYSTEM_OFF, SYSTEM_RESET,
        SYSTEM_RESET2_32, SYSTEM_RESET2_64,
    };
}

/// PSCI return codes and AFFINITY_INFO results (DEN0022 §5.2.2, §5.7.2).
pub use guestkit::spec::psci::{
    AFFINITY_OFF, AFFINITY_ON, ALREADY_ON, DENIED, INTERNAL_FAILURE, INVALID_ADDRESS, INVALID_PARAMETERS,
    NOT_SUPPORTED, ON_PENDING, SUCCESS,
};
/// AFFINITY_INFO's lowest_affinity_level 0: the target names exactly one core.
const AFFINITY_LEVEL_CORE: u64 = 0;

/// CPU_SUSPEND power_state, original format (DEN0022 §5.4.2.1): StateType [16] is 0 for
/// standby or retention, 1 for powerdown; StateID 0, PowerLevel 0 (the core).
pub const POWER_STATE_STANDBY: u64 = 0;
pub const POWER_STATE_POWERDOWN: u64 = 1 << 16;

/// SYSTEM_RESET2 reset_type (DEN0022 §5.17.1): bit 31 clear is architectural, where only
/// 0 (SYSTEM_WARM_RESET) is defined; bit 31 set is vendor-specific.
pub const RESET_TYPE_WARM: u64 = 0;
pub const RESET_TYPE_VENDOR_FIRST: u64 = 1 << 31;
/// Architectural types DEN0022 leaves undefined: the first and the last of the range.
pub const RESET_TYPE_UNDEFINED_ARCHITECTURAL: [u64; 2] = [1, 0x7FFF_FFFF];

/// How the guest calls: `hvc #0`, the conduit the device tree names, or `smc #0`, which
/// Cairn traps and must answer the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    pub const BOTH: [Conduit; 2] = [Conduit::Hvc, Conduit::Smc];

    /// A call with up to three arguments; returns x0.
    pub fn call3(self, fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
        match self {
            Conduit::Hvc => smccc::hvc0(u64::from(fid), a1, a2, a3),
            Conduit::Smc => smccc::smc0(u64::from(fid), a1, a2, a3),
        }
    }
}

impl fmt::Display for Conduit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        })
    }
}

/// CPU_ON (SMC64, through HVC): starts the core with affinity `mpidr` at `entry` with
/// x0 = `context`. Returns the PSCI status.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    Conduit::Hvc.call3(fid::CPU_ON_64, mpidr, entry, context) as i64
}

/// AFFINITY_INFO for one core: AFFINITY_ON, AFFINITY_OFF or an error.
pub fn affinity_info(mpidr: u64) -> i64 {
    Conduit::Hvc.call3(fid::AFFINITY_INFO_64, mpidr, AFFINITY_LEVEL_CORE, 0) as i64
}

/// CPU_OFF for the calling core; returns x0 only if the call returns, which it must not
/// on success (DEN0022 §5.5).
pub fn cpu_off() -> u64 {
    Conduit::Hvc.call3(fid::CPU_OFF, 0, 0, 0)
}

/// A returned status as a test log should show it: the PSCI name where one exists, small
/// values in signed decimal, anything else in hex.
#[derive(Clone, Copy)]
pub struct Code(pub u64);

impl Code {
    pub fn of(value: i64) -> Code {
        Code(value as u64)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Values shown in decimal; anything larger in magnitude is shown in hex.
        const SMALL: i64 = 0xFFFF;
        let v = self.0 as i64;
        let name = match v {
            SUCCESS => "SUCCESS",
            NOT_SUPPORTED => "NOT_SUPPORTED",
            INVALID_PARAMETERS => "INVALID_PARAMETERS",
            DENIED => "DENIED",
            ALREADY_ON => "ALREADY_ON",
            ON_PENDING => "ON_PENDING",
            INTERNAL_FAILURE => "INTERNAL_FAILURE",
            INVALID_ADDRESS => "INVALID_ADDRESS",
            _ if (-SMALL..=SMALL).contains(&v) => return write!(f, "{v}"),
            _ => return write!(f, "{:#x}", self.0),
        };
        write!(f, "{v} ({name})")
    }
}
