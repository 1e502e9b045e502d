//! Cairn's vendor-specific hypervisor service (SMCCC owner 6, DEN0028 §6.2): the general
//! queries that identify the hypervisor to a guest.

use super::call::Results;
use super::trng::uuid_registers;

/// Call UID and Revision (DEN0028 §6.2, the per-owner general queries 0xFF01 and 0xFF03).
pub const CALL_UID: u32 = 0x8600_FF01;
pub const REVISION: u32 = 0x8600_FF03;

/// Cairn's hypervisor UID, 8e1f4c2a-3b5d-4f60-a7c8-c41a1b4e2d90.
pub const UID: [u8; 16] =
    [0x8e, 0x1f, 0x4c, 0x2a, 0x3b, 0x5d, 0x4f, 0x60, 0xa7, 0xc8, 0xc4, 0x1a, 0x1b, 0x4e, 0x2d, 0x90];
/// Revision of Cairn's vendor service: 0.1 (major in x0, minor in x1).
pub const REVISION_MAJOR: u64 = 0;
pub const REVISION_MINOR: u64 = 1;

pub fn call(function: u32) -> Results {
    match function {
        CALL_UID => Results::new(&uuid_registers(&UID)),
        REVISION => Results::new(&[REVISION_MAJOR, REVISION_MINOR]),
        _ => Results::not_supported(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_and_revision() {
        assert_eq!(call(CALL_UID).registers(), [0x2a4c_1f8e, 0x604f_5d3b, 0x1ac4_c8a7, 0x902d_4e1b]);
        assert_eq!(call(REVISION).registers(), [0, 1]);
        assert_eq!(call(0x8600_FF00).registers(), [u64::MAX]);
    }
}
