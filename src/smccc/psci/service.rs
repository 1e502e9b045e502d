//! PSCI as guests see it, per version (DEN0022 §5): one SMCCC service of the dispatcher,
//! answering a call for the calling VM's PSCI version. Pure logic, tested on the host
//! (psci/tests.rs, through the dispatcher).

use super::{exists_in, fid, ret, Suspend, Version, MIGRATE_INFO_NO_TRUSTED_OS};
use crate::smccc::call::{Call, Outcome, Results, VmFirmware};
use crate::smccc::{FunctionId, CONVENTION_64, SMCCC_VERSION};

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
        fid::CPU_ON_32 | fid::CPU_ON_64 => ret(cpu_on(call, vm)),
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

/// CPU_ON (DEN0022 §5.6): a target that is no vCPU of the VM is INVALID_PARAMETERS, an
/// entry point it cannot start at INVALID_ADDRESS (§5.6.2), checked in that order; the VM
/// decides the rest (SUCCESS, ALREADY_ON, ON_PENDING).
fn cpu_on(call: &Call, vm: &dyn VmFirmware) -> i64 {
    let (target, entry, context) = (call.arg(1), call.arg(2), call.arg(3));
    if !vm.has_vcpu(target) {
        return ret::INVALID_PARAMETERS;
    }
    if !valid_entry_point(vm, entry) {
        return ret::INVALID_ADDRESS;
    }
    vm.cpu_on(target, entry, context)
}

/// Where a vCPU may be sent by CPU_ON, or resume from CPU_SUSPEND powerdown or
/// SYSTEM_SUSPEND: an AArch64 entry point is an A64 instruction's address, 4-byte aligned
/// (a Thumb bit set in it is INVALID_ADDRESS, as TF-A and Xen answer), in the VM's own
/// memory; anything else is INVALID_ADDRESS (DEN0022 §5.4.2, §5.6.2, §5.19.2;
/// guest-firmware-interfaces.md §2.2). The one owner of this rule.
fn valid_entry_point(vm: &dyn VmFirmware, entry: u64) -> bool {
    const A64_ENTRY_ALIGN: u64 = 4;
    entry.is_multiple_of(A64_ENTRY_ALIGN) && vm.is_guest_ram(entry)
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
    if !valid_entry_point(vm, entry) {
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
    if !valid_entry_point(vm, entry) {
        return Outcome::Return(Results::x0(ret::INVALID_ADDRESS));
    }
    if !vm.others_off(call.vcpu) {
        return Outcome::Return(Results::x0(ret::DENIED));
    }
    Outcome::SystemSuspend { entry, context: call.arg(2) }
}

/// PSCI_FEATURES (DEN0022 §5.15): 0 for each implemented function (for CPU_SUSPEND its
/// flags: original power_state format, platform-coordinated mode only), NOT_SUPPORTED for
/// the rest. An AArch32 caller cannot use SMC64 functions.
fn features(queried: u32, version: Version, caller_aarch32: bool) -> i64 {
    if queried == SMCCC_VERSION {
        return ret::SUCCESS;
    }
    let smc64 = queried & CONVENTION_64 != 0;
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
