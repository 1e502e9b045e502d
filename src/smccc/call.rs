//! The types every SMCCC service shares: a guest's [`Call`] as the arch layer saw it, the
//! [`Results`] it writes back, the [`Outcome`] the hypervisor acts on, and what a service
//! may ask of the calling VM ([`VmFirmware`]). The dispatcher and the services (PSCI,
//! TRNG, the vendor service) all build on these; this module imports none of them but
//! PSCI's definitions.

pub use crate::arch::aarch64::exit::Conduit;

use super::psci::{Suspend, Version};
use super::sdei::state::Answer as SdeiAnswer;
use super::{ret, FunctionId};

/// A guest's call as the arch layer saw it.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub conduit: Conduit,
    /// The instruction's 16-bit immediate (ESR_EL2.ISS[15:0]).
    pub imm: u16,
    /// Whether the caller runs in AArch32 state.
    pub caller_aarch32: bool,
    /// The calling vCPU's index in its VM.
    pub vcpu: usize,
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
    /// Results in x0 onwards (at most four registers).
    pub fn new(values: &[u64]) -> Self {
        let len = values.len().min(4);
        let mut regs = [0; 4];
        regs[..len].copy_from_slice(&values[..len]);
        Results { regs, len }
    }

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
    CpuSuspend(Suspend),
    /// PSCI SYSTEM_SUSPEND from the last vCPU on: sleep, then resume at `entry`.
    SystemSuspend { entry: u64, context: u64 },
    /// PSCI CPU_OFF: the calling vCPU stops.
    CpuOff,
    /// SDEI EVENT_COMPLETE[_AND_RESUME]: the context the event's handler interrupted
    /// comes back (its VM's SDEI state holds it).
    SdeiResume,
}

/// What the dispatcher needs to know about the calling VM.
pub trait VmFirmware {
    /// The PSCI version this VM was given.
    fn psci_version(&self) -> Version;
    /// Whether the VM has a vCPU with MPIDR affinity `target`.
    fn has_vcpu(&self, target: u64) -> bool;
    /// PSCI CPU_ON for the vCPU with affinity `target` (DEN0022 §5.6), whose entry point
    /// the PSCI service has already checked: SUCCESS, ALREADY_ON or ON_PENDING.
    fn cpu_on(&self, target: u64, entry: u64, context: u64) -> i64;
    /// PSCI AFFINITY_INFO (DEN0022 §5.7): ON (0), OFF (1) or a PSCI error code.
    fn affinity_info(&self, target: u64, lowest_level: u64) -> i64;
    /// Whether `addr` is in the VM's RAM (PSCI entry points must be).
    fn is_guest_ram(&self, addr: u64) -> bool;
    /// Whether every vCPU but `caller` is off.
    fn others_off(&self, caller: usize) -> bool;
    /// Whether the VM's service bitmaps (firmware pseudo-registers) leave TRNG on.
    fn trng_enabled(&self) -> bool {
        true
    }
    /// Whether they leave Cairn's vendor hypervisor service (UID, revision) on.
    fn vendor_hyp_enabled(&self) -> bool {
        true
    }
    /// Records the status (0-63, already checked) the guest asks its VM to end with
    /// (Cairn's vendor EXIT_STATUS call).
    fn set_exit_status(&self, status: u8);
    /// SDEI function `number` from vCPU `vcpu` with arguments x1-x5, if the VM has SDEI.
    fn sdei_call(&self, _vcpu: usize, _number: u16, _args: [u64; 5]) -> Option<SdeiAnswer> {
        None
    }
}
