//! One dispatcher for every SMCCC call a guest makes, through HVC or a trapped SMC.
//!
//! The arch layer turns the trap into a [`Call`] (conduit already normalised: a trapped
//! SMC has had its PC advanced), this module routes it by owning entity and returns an
//! [`Outcome`]; the arch layer writes the result registers back in one place. Nothing here
//! touches hardware, so every rule is unit-tested on the host.

use super::call::{Call, Conduit, Outcome, Results, VmFirmware};
use super::psci::{self, service};
use super::sdei::{self, state::Answer as SdeiAnswer};
use super::{
    ret, trng, vendor, FunctionId, Owner, CAIRN_SMCCC_VERSION, SMCCC_ARCH_FEATURES, SMCCC_ARCH_SOC_ID,
    SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION,
};

/// The Arm-architecture calls only the machine's firmware can answer.
const FIRMWARE_ARCH_CALLS: [u32; 4] =
    [SMCCC_ARCH_SOC_ID, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2, SMCCC_ARCH_WORKAROUND_3];

/// What the machine itself provides: entropy, and the firmware's answers for the calls
/// only it can make (Spectre workarounds, SoC ID).
pub trait Host: trng::Entropy {
    /// The firmware's SMCCC_ARCH_FEATURES answer for `fid` (-1 when it cannot tell).
    fn arch_feature(&self, fid: u32) -> i64;
    /// Makes the call in the firmware and returns its x0-x3.
    fn forward(&self, fid: u32, arg1: u64) -> [u64; 4];
}

/// Routes a call by owning entity (DEN0028 §2.5, table 2-1) to the service that owns it.
/// Any call no service claims is answered NOT_SUPPORTED: never skipped, never an UNDEF
/// (DEN0028 §7.1; the history is in guest-firmware-interfaces.md §1.5).
pub fn dispatch(call: &Call, vm: &dyn VmFirmware, host: &dyn Host) -> Outcome {
    let fid = call.function_id();
    // SMC #imm with a non-zero immediate is reserved (DEN0028 §2.9): answer -1
    // without decoding further.
    if call.conduit == Conduit::Smc && call.imm != 0 {
        return Outcome::Return(Results::not_supported());
    }
    // An AArch32 caller cannot use the SMC64 convention (DEN0028 §2.5).
    if fid.is_64bit() && call.caller_aarch32 {
        return Outcome::Return(Results::not_supported());
    }
    if !fid.is_fast() || !fid.reserved_bits_clear() {
        return Outcome::Return(Results::not_supported());
    }
    match fid.owner() {
        Owner::Arch => Outcome::Return(arch_call(fid, call, host)),
        Owner::StandardSecure if psci::FUNCTION_NUMBERS.contains(&fid.number()) => service::call(fid, call, vm),
        Owner::StandardSecure if trng::FUNCTION_NUMBERS.contains(&fid.number()) && vm.trng_enabled() => {
            Outcome::Return(trng::call(fid.0, call.x[1], host))
        }
        Owner::StandardSecure if sdei::FUNCTION_NUMBERS.contains(&fid.number()) => sdei_call(fid, call, vm),
        Owner::VendorHypervisor if vm.vendor_hyp_enabled() => Outcome::Return(vendor::call(fid.0, call.arg(1), vm)),
        _ => Outcome::Return(Results::not_supported()),
    }
}

/// SDEI (DEN0054), for a VM that has it; NOT_SUPPORTED for one that has not, as KVM
/// answers. Both the SMC64 IDs the specification gives and their SMC32 forms are taken,
/// a 32-bit caller's arguments cut to 32 bits.
fn sdei_call(fid: FunctionId, call: &Call, vm: &dyn VmFirmware) -> Outcome {
    let args = [call.arg(1), call.arg(2), call.arg(3), call.arg(4), call.arg(5)];
    match vm.sdei_call(call.vcpu, fid.number(), args) {
        Some(SdeiAnswer::Value(v)) => Outcome::Return(Results::x0(v)),
        Some(SdeiAnswer::Resume) => Outcome::SdeiResume,
        None => Outcome::Return(Results::not_supported()),
    }
}

/// Arm-architecture calls (owner 0, DEN0028 §7).
fn arch_call(fid: FunctionId, call: &Call, host: &dyn Host) -> Results {
    match fid.0 {
        SMCCC_VERSION => Results::x0(i64::from(CAIRN_SMCCC_VERSION)),
        SMCCC_ARCH_FEATURES => Results::x0(arch_feature(call.arg(1) as u32, host)),
        // A workaround or SoC-ID call goes to the firmware only when the firmware said it
        // implements it: the guest then gets exactly the physical CPU's mitigation.
        f if FIRMWARE_ARCH_CALLS.contains(&f) && host.arch_feature(f) >= 0 => {
            let regs = host.forward(f, call.arg(1));
            if f == SMCCC_ARCH_SOC_ID {
                Results::x0(regs[0] as i64)
            } else {
                Results::x0(ret::SUCCESS)
            }
        }
        _ => Results::not_supported(),
    }
}

/// SMCCC_ARCH_FEATURES(fid) (DEN0028 §7.3): >= 0 when the queried function is
/// implemented. For the workarounds the answer is the firmware's, so a guest never hears
/// "unaffected" (1 or -2) on a vulnerable host, nor of a mitigation that is not there.
fn arch_feature(queried: u32, host: &dyn Host) -> i64 {
    match queried {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => ret::SUCCESS,
        f if FIRMWARE_ARCH_CALLS.contains(&f) => host.arch_feature(f),
        _ => ret::NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::psci::fid;

    struct TestVm;
    impl VmFirmware for TestVm {
        fn psci_version(&self) -> psci::Version {
            psci::Version::V1_1
        }
        fn has_vcpu(&self, _: u64) -> bool {
            true
        }
        fn cpu_on(&self, _: u64, _: u64, _: u64) -> i64 {
            0
        }
        fn affinity_info(&self, _: u64, _: u64) -> i64 {
            1
        }
        fn is_guest_ram(&self, addr: u64) -> bool {
            (0x4000_0000..0x8000_0000).contains(&addr)
        }
        fn others_off(&self, _: usize) -> bool {
            true
        }
        fn set_exit_status(&self, _: u8) {}
    }

    struct TestHost;
    impl trng::Entropy for TestHost {
        fn available(&self) -> bool {
            true
        }
        fn next_u64(&self) -> Option<u64> {
            Some(0x1234_5678_9ABC_DEF0)
        }
    }
    impl Host for TestHost {
        fn arch_feature(&self, fid: u32) -> i64 {
            if fid == SMCCC_ARCH_WORKAROUND_1 {
                0
            } else {
                ret::NOT_SUPPORTED
            }
        }
        fn forward(&self, _: u32, _: u64) -> [u64; 4] {
            [0; 4]
        }
    }

    fn dispatch(call: &Call, vm: &dyn VmFirmware) -> Outcome {
        super::dispatch(call, vm, &TestHost)
    }

    fn call(conduit: Conduit, imm: u16, x0: u64) -> Call {
        Call { conduit, imm, caller_aarch32: false, vcpu: 0, x: [x0, 0, 0, 0, 0, 0, 0, 0] }
    }

    fn x0_of(outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Return(r) => r.registers()[0],
            other => panic!("expected a return, got {other:?}"),
        }
    }

    #[test]
    fn psci_version_through_both_conduits() {
        for conduit in [Conduit::Hvc, Conduit::Smc] {
            let out = dispatch(&call(conduit, 0, fid::PSCI_VERSION.into()), &TestVm);
            assert_eq!(x0_of(out), 0x1_0001);
        }
    }

    #[test]
    fn smccc_version_is_1_1() {
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, 0x8000_0000), &TestVm)), 0x1_0001);
    }

    #[test]
    fn unknown_ids_answer_minus_one_sign_extended() {
        for id in [0x8300_0000u64, 0xC600_1234, 0x8400_001F, 0xB000_0001, 0x0100_0000, 0xC000_7777] {
            assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, id), &TestVm)), u64::MAX, "{id:#x}");
        }
    }

    #[test]
    fn smc_with_nonzero_immediate_is_refused_but_hvc_immediate_is_ignored() {
        let id = u64::from(fid::PSCI_VERSION);
        assert_eq!(x0_of(dispatch(&call(Conduit::Smc, 1, id), &TestVm)), u64::MAX);
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0x1234, id), &TestVm)), 0x1_0001);
    }

    #[test]
    fn upper_half_of_x0_is_ignored() {
        let id = 0xFFFF_FFFF_0000_0000 | u64::from(fid::PSCI_VERSION);
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, id), &TestVm)), 0x1_0001);
    }

    #[test]
    fn smc64_from_aarch32_is_not_supported() {
        let mut c = call(Conduit::Hvc, 0, 0xC400_0003);
        c.caller_aarch32 = true;
        assert_eq!(x0_of(dispatch(&c, &TestVm)), u64::MAX);
    }

    #[test]
    fn yielding_calls_and_reserved_bits_are_not_supported() {
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, 0x0400_0000), &TestVm)), u64::MAX);
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, 0x8401_0000), &TestVm)), u64::MAX);
    }

    #[test]
    fn system_off_powers_the_vm_off() {
        assert_eq!(dispatch(&call(Conduit::Smc, 0, fid::SYSTEM_OFF.into()), &TestVm), Outcome::SystemOff);
    }

    #[test]
    fn results_write_only_x0() {
        let out = dispatch(&call(Conduit::Hvc, 0, 0x8000_0000), &TestVm);
        match out {
            Outcome::Return(r) => assert_eq!(r.registers().len(), 1),
            _ => panic!(),
        }
    }

    #[test]
    fn workarounds_follow_the_firmware() {
        let mut c = call(Conduit::Hvc, 0, u64::from(SMCCC_ARCH_FEATURES));
        c.x[1] = u64::from(SMCCC_ARCH_WORKAROUND_1);
        assert_eq!(x0_of(dispatch(&c, &TestVm)), 0);
        c.x[1] = u64::from(SMCCC_ARCH_WORKAROUND_2);
        assert_eq!(x0_of(dispatch(&c, &TestVm)), u64::MAX);
        assert_eq!(x0_of(dispatch(&call(Conduit::Smc, 0, SMCCC_ARCH_WORKAROUND_1.into()), &TestVm)), 0);
        assert_eq!(x0_of(dispatch(&call(Conduit::Smc, 0, SMCCC_ARCH_WORKAROUND_3.into()), &TestVm)), u64::MAX);
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, SMCCC_ARCH_SOC_ID.into()), &TestVm)), u64::MAX);
    }

    #[test]
    fn trng_and_vendor_services_are_routed_and_can_be_switched_off() {
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, trng::TRNG_VERSION.into()), &TestVm)), 0x1_0000);
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, vendor::CALL_UID.into()), &TestVm)), 0x2a4c_1f8e);
        struct Off;
        impl VmFirmware for Off {
            fn psci_version(&self) -> psci::Version {
                psci::Version::V1_1
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
                false
            }
            fn others_off(&self, _: usize) -> bool {
                false
            }
            fn set_exit_status(&self, _: u8) {}
            fn trng_enabled(&self) -> bool {
                false
            }
            fn vendor_hyp_enabled(&self) -> bool {
                false
            }
        }
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, trng::TRNG_VERSION.into()), &Off)), u64::MAX);
        assert_eq!(x0_of(dispatch(&call(Conduit::Hvc, 0, vendor::CALL_UID.into()), &Off)), u64::MAX);
    }

    #[test]
    fn thirty_two_bit_calls_see_only_w_arguments() {
        let mut c = call(Conduit::Hvc, 0, 0x8000_0001);
        c.x[1] = 0xFFFF_FFFF_8000_0000;
        assert_eq!(c.arg(1), 0x8000_0000);
        assert_eq!(x0_of(dispatch(&c, &TestVm)), 0);
    }
}
