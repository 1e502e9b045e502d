//! Cairn's vendor-specific hypervisor service (SMCCC owner 6, DEN0028 §6.2): the general
//! queries that identify the hypervisor to a guest, and EXIT_STATUS, the status a guest
//! asks its VM to end with (crate::verdict).

use super::call::{Results, VmFirmware};
use super::psci::ret;
use super::trng::uuid_registers;
use crate::verdict::status::GUEST_MAX;

/// Call UID and Revision (DEN0028 §6.2, the per-owner general queries 0xFF01 and 0xFF03).
pub const CALL_UID: u32 = 0x8600_FF01;
pub const REVISION: u32 = 0x8600_FF03;
/// EXIT_STATUS(x1 = status): Cairn's function 1 of owner 6, fast, SMC32 (DEN0028 §2.5
/// function ID layout: bit 31 fast, bit 30 clear for SMC32, owner 6 in bits 29:24). Records
/// 0-63 as the VM's status (SUCCESS); anything larger is INVALID_PARAMETERS, -2 as PSCI
/// numbers it (DEN0022 §5.2.2; SMCCC's own -2 would read NOT_REQUIRED).
pub const EXIT_STATUS: u32 = 0x8600_0001;

/// Cairn's hypervisor UID, 8e1f4c2a-3b5d-4f60-a7c8-c41a1b4e2d90.
pub const UID: [u8; 16] =
    [0x8e, 0x1f, 0x4c, 0x2a, 0x3b, 0x5d, 0x4f, 0x60, 0xa7, 0xc8, 0xc4, 0x1a, 0x1b, 0x4e, 0x2d, 0x90];
/// Revision of Cairn's vendor service: 0.2 (major in x0, minor in x1); 0.2 added
/// EXIT_STATUS.
pub const REVISION_MAJOR: u64 = 0;
pub const REVISION_MINOR: u64 = 2;

/// One vendor call; `arg1` is x1 as the calling convention gives it (SMC32: W1).
pub fn call(function: u32, arg1: u64, vm: &dyn VmFirmware) -> Results {
    match function {
        CALL_UID => Results::new(&uuid_registers(&UID)),
        REVISION => Results::new(&[REVISION_MAJOR, REVISION_MINOR]),
        EXIT_STATUS => exit_status(arg1, vm),
        _ => Results::not_supported(),
    }
}

fn exit_status(status: u64, vm: &dyn VmFirmware) -> Results {
    match u8::try_from(status) {
        Ok(s) if s <= GUEST_MAX => {
            vm.set_exit_status(s);
            Results::x0(ret::SUCCESS)
        }
        _ => Results::x0(ret::INVALID_PARAMETERS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use core::cell::Cell;

    use crate::smccc::psci::Version;

    /// A VM that only remembers the status it was given.
    #[derive(Default)]
    struct StatusVm(Cell<Option<u8>>);
    impl VmFirmware for StatusVm {
        fn psci_version(&self) -> Version {
            Version::V1_1
        }
        fn has_vcpu(&self, _: u64) -> bool {
            true
        }
        fn cpu_on(&self, _: u64, _: u64, _: u64) -> i64 {
            0
        }
        fn affinity_info(&self, _: u64, _: u64) -> i64 {
            0
        }
        fn is_guest_ram(&self, _: u64) -> bool {
            true
        }
        fn others_off(&self, _: usize) -> bool {
            true
        }
        fn set_exit_status(&self, status: u8) {
            self.0.set(Some(status));
        }
    }

    #[test]
    fn uid_and_revision() {
        let vm = StatusVm::default();
        assert_eq!(call(CALL_UID, 0, &vm).registers(), [0x2a4c_1f8e, 0x604f_5d3b, 0x1ac4_c8a7, 0x902d_4e1b]);
        assert_eq!(call(REVISION, 0, &vm).registers(), [0, 2]);
        assert_eq!(call(0x8600_FF00, 0, &vm).registers(), [u64::MAX]);
    }

    #[test]
    fn exit_status_records_0_to_63_only() {
        let vm = StatusVm::default();
        assert_eq!(call(EXIT_STATUS, 5, &vm).registers(), [0]);
        assert_eq!(vm.0.get(), Some(5));
        assert_eq!(call(EXIT_STATUS, 63, &vm).registers(), [0]);
        assert_eq!(vm.0.get(), Some(63));
        for refused in [64, 255, 256, u64::MAX] {
            assert_eq!(call(EXIT_STATUS, refused, &vm).registers(), [ret::INVALID_PARAMETERS as u64], "{refused}");
            assert_eq!(vm.0.get(), Some(63), "nothing recorded for {refused}");
        }
        assert_eq!(call(EXIT_STATUS, 0, &vm).registers(), [0]);
        assert_eq!(vm.0.get(), Some(0));
    }
}
