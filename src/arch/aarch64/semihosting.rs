//! Arm semihosting from EL2 (Arm "Semihosting for AArch32 and AArch64", version 3.0): the
//! one trap QEMU's `-semihosting-config enable=on` answers, used to end QEMU with a status
//! (crate::verdict). Without semihosting, `HLT #0xF000` is an undefined instruction: the
//! probe runs it where Cairn's EL2 exception handler knows to step over it.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// SYS_ERRNO (operation 0x13 of the semihosting specification): harmless, returns the
/// host's last errno.
const SYS_ERRNO: u64 = 0x13;
/// SYS_EXIT (operation 0x18): on AArch64, x1 points at a two-word parameter block.
const SYS_EXIT: u64 = 0x18;
/// ADP_Stopped_ApplicationExit, a SYS_EXIT reason code: an exit with a status, which
/// AArch64 gives as the block's second word (the subcode).
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;
/// What the probe returns when the HLT was undefined: no errno is ever this.
const PROBE_UNDEFINED: u64 = u64::MAX;
/// The A64 instruction size: the handler steps over the probe's HLT.
const A64_INSTRUCTION: u64 = 4;

// The probe: SYS_ERRNO through `HLT #0xF000` (the specification's A64 semihosting trap). The label
// on the HLT lets the EL2 exception handler recognise it (probe_fault).
global_asm!(
    ".section .text.semihosting, \"ax\"",
    ".global cairn_semihosting_probe",
    "cairn_semihosting_probe:",
    "    mov     x1, #0",
    ".global cairn_semihosting_probe_hlt",
    "cairn_semihosting_probe_hlt:",
    "    hlt     #0xF000",
    "    ret",
);

extern "C" {
    /// x0 = the operation; returns the semihosting result, or what the handler put in x0.
    fn cairn_semihosting_probe(op: u64) -> u64;
    static cairn_semihosting_probe_hlt: u8;
}

/// Set while the probe runs, so an undefined HLT anywhere else stays a fatal fault.
static PROBING: AtomicBool = AtomicBool::new(false);

/// Whether QEMU answers semihosting calls made at EL2. Boot CPU only, once, before any
/// other CPU runs.
pub fn available() -> bool {
    PROBING.store(true, Ordering::SeqCst);
    // SAFETY: the probe changes only x0/x1 (a call clobbers both) and traps to QEMU or,
    // undefined, to the EL2 vector, which steps over it (probe_fault) while PROBING.
    let result = unsafe { cairn_semihosting_probe(SYS_ERRNO) };
    PROBING.store(false, Ordering::SeqCst);
    result != PROBE_UNDEFINED
}

/// Called by the EL2 exception handler for a synchronous exception at `elr`: if it is the
/// probe's HLT, undefined because QEMU has no semihosting, returns where to resume and
/// the probe's x0; else None (a real fault).
pub fn probe_fault(elr: u64) -> Option<(u64, u64)> {
    let hlt = &raw const cairn_semihosting_probe_hlt as u64;
    (PROBING.load(Ordering::SeqCst) && elr == hlt).then_some((elr + A64_INSTRUCTION, PROBE_UNDEFINED))
}

/// Ends QEMU with `status` (SYS_EXIT, ADP_Stopped_ApplicationExit). Only after
/// [`available`] said yes: it does not return then.
pub fn exit(status: u8) -> ! {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, u64::from(status)];
    // SAFETY: QEMU reads the block through Cairn's identity map and exits; the call
    // changes no register but x0.
    unsafe {
        core::arch::asm!("hlt #0xF000", inout("x0") SYS_EXIT => _, in("x1") block.as_ptr(), options(nostack));
    }
    loop {
        super::cpu::wait_for_event();
    }
}
