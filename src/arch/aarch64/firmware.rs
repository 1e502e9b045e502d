//! Calls from Cairn to the machine's own PSCI firmware (DEN0022), the SMC conduit at EL2.
//! On QEMU virt with virtualization=on, QEMU itself answers them.

use crate::dt::PsciMethod;
use crate::psci::fid;

/// Makes a PSCI call through `method`. SMCCC 1.0 lets the callee clobber x0-x17, so the
/// asm marks them all as such.
fn call(method: PsciMethod, function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    // SAFETY: a PSCI call changes no memory Cairn owns; the clobbers cover what SMCCC
    // 1.0 allows the firmware to change.
    unsafe {
        match method {
            PsciMethod::Smc => core::arch::asm!(
                "smc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
            ),
            PsciMethod::Hvc => core::arch::asm!(
                "hvc #0",
                inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _,
            ),
        }
    }
    x0 as i64
}

/// Starts the physical CPU `mpidr` at `entry` with x0 = `context`.
pub fn cpu_on(method: PsciMethod, mpidr: u64, entry: u64, context: u64) -> i64 {
    call(method, fid::CPU_ON_64, mpidr, entry, context)
}

/// Powers the machine off. Returns only if the firmware refuses.
pub fn system_off(method: PsciMethod) {
    call(method, fid::SYSTEM_OFF, 0, 0, 0);
}

/// Resets the machine. Returns only if the firmware refuses.
pub fn system_reset(method: PsciMethod) {
    call(method, fid::SYSTEM_RESET, 0, 0, 0);
}
