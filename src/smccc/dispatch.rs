//! One dispatcher for every SMCCC call a guest makes, through HVC or a trapped SMC.
//!
//! The arch layer turns the trap into a [`Call`] (conduit already normalised: a trapped
//! SMC has had its PC advanced), this module routes it by owning entity and returns an
//! [`Outcome`]; the arch layer writes the result registers back in one place. Nothing here
//! touches hardware, so every rule is unit-tested on the host.

use super::{ret, FunctionId, Owner, CAIRN_SMCCC_VERSION, SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use crate::psci;

/// How the guest called: HVC is the conduit Cairn advertises; SMC is trapped by
/// HCR_EL2.TSC and answered the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

/// A guest's call as the arch layer saw it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub conduit: Conduit,
    /// The instruction's 16-bit immediate (ESR_EL2.ISS[15:0]).
    pub imm: u16,
    /// Whether the caller runs in AArch32 state.
    pub caller_aarch32: bool,
    /// x0-x7 at the time of the call.
    pub x: [u64; 8],
}

impl Call {
    pub fn function_id(&self) -> FunctionId {
        FunctionId::from_x0(self.x[0])
    }

    /// Argument `n` (1-7) as the function's convention defines it: a 32-bit function
    /// uses only W1-W7, so the upper halves are discarded (DEN0028 §2.7).
    pub fn arg(&self, n: usize) -> u64 {
        if self.function_id().is_64bit() {
            self.x[n]
        } else {
            self.x[n] & u64::from(u32::MAX)
        }
    }
}

/// The result registers a call writes: x0 and, for some calls, x1-x3. Registers beyond
/// `len` are left exactly as the guest had them (SMCCC 1.1 preserves x4-x17, and a
/// function writes only the results it defines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Results {
    regs: [u64; 4],
    len: usize,
}

impl Results {
    /// A single result in x0. Negative codes are sign-extended to 64 bits (DEN0028 §7.1).
    pub fn x0(value: i64) -> Self {
        Results { regs: [value as u64, 0, 0, 0], len: 1 }
    }

    pub fn not_supported() -> Self {
        Self::x0(ret::NOT_SUPPORTED)
    }

    /// The registers to write, x0 first.
    pub fn registers(&self) -> &[u64] {
        &self.regs[..self.len]
    }
}

/// What a call asks of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write the results and return to the guest.
    Return(Results),
    /// PSCI SYSTEM_OFF: the VM is powered off and never returns from the call.
    SystemOff,
    /// PSCI SYSTEM_RESET: the VM restarts from its pristine images.
    SystemReset,
    /// PSCI SYSTEM_RESET2 with an accepted reset type.
    SystemReset2 { reset_type: u32, cookie: u64 },
    /// PSCI CPU_SUSPEND with a valid power state.
    CpuSuspend(psci::Suspend),
    /// PSCI CPU_OFF: the calling vCPU stops.
    CpuOff,
}

/// What the dispatcher needs to know about the calling VM.
pub trait VmFirmware {
    /// The PSCI version this VM was given.
    fn psci_version(&self) -> psci::Version;
    /// PSCI CPU_ON for the vCPU with affinity `target` (DEN0022 §5.6): a PSCI return code.
    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> i64;
    /// PSCI AFFINITY_INFO (DEN0022 §5.7): ON (0), OFF (1) or a PSCI error code.
    fn affinity_info(&self, target: u64, lowest_level: u64) -> i64;
    /// Whether `addr` is in the VM's RAM (PSCI entry points must be).
    fn is_guest_ram(&self, addr: u64) -> bool;
}

/// Routes a call by owning entity (DEN0028 §2.5, table 2-1) to the service that owns it.
/// Any call no service claims is answered NOT_SUPPORTED: never skipped, never an UNDEF
/// (DEN0028 §7.1; the history is in guest-firmware-interfaces.md §1.5).
pub fn dispatch(call: &Call, vm: &dyn VmFirmware) -> Outcome {
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
        Owner::Arch => Outcome::Return(arch_call(fid, call)),
        Owner::StandardSecure if psci::FUNCTION_NUMBERS.contains(&fid.number()) => psci::call(fid, call, vm),
        _ => Outcome::Return(Results::not_supported()),
    }
}

/// Arm-architecture calls (owner 0, DEN0028 §7).
fn arch_call(fid: FunctionId, call: &Call) -> Results {
    match fid.0 {
        SMCCC_VERSION => Results::x0(i64::from(CAIRN_SMCCC_VERSION)),
        SMCCC_ARCH_FEATURES => Results::x0(arch_feature(call.arg(1) as u32)),
        _ => Results::not_supported(),
    }
}

/// SMCCC_ARCH_FEATURES(fid): >= 0 when the queried function is implemented
/// (DEN0028 §7.3). The workaround calls come with the PSCI/SMCCC issue.
fn arch_feature(queried: u32) -> i64 {
    match queried {
        SMCCC_VERSION | SMCCC_ARCH_FEATURES => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psci::fid;

    struct TestVm;
    impl VmFirmware for TestVm {
        fn psci_version(&self) -> psci::Version {
            psci::Version::V1_1
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
    }

    fn call(conduit: Conduit, imm: u16, x0: u64) -> Call {
        Call { conduit, imm, caller_aarch32: false, x: [x0, 0, 0, 0, 0, 0, 0, 0] }
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
    fn thirty_two_bit_calls_see_only_w_arguments() {
        let mut c = call(Conduit::Hvc, 0, 0x8000_0001);
        c.x[1] = 0xFFFF_FFFF_8000_0000;
        assert_eq!(c.arg(1), 0x8000_0000);
        assert_eq!(x0_of(dispatch(&c, &TestVm)), 0);
    }
}
