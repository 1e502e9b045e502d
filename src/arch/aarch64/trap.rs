//! Entering the guest and leaving it: [`run_guest`] runs the guest from a frame until its
//! next exit and returns that exit decoded ([`Exit`]); the run loop above decides what to do
//! with it. Also the last resort for an exception taken at EL2 itself.

use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};

use super::esr::Esr;
use super::exit::{classify_sync, Exit};
use super::frame::TrapFrame;

/// Exception kinds, as the vectors pass them in x1 and cairn_run_guest returns them.
pub const KIND_SYNC: u64 = 0;
const KIND_IRQ: u64 = 1;
const KIND_FIQ: u64 = 2;
const KIND_SERROR: u64 = 3;

extern "C" {
    /// boot/vectors.S: enters the guest from `frame` and returns the kind of the exception
    /// that ended its run, the guest's registers saved back into `frame`.
    fn cairn_run_guest(frame: *mut TrapFrame) -> u64;
}

/// Runs the guest from `frame` until it exits, and says why. The registers in `frame` are
/// the guest's again when this returns. Hypercalls the fast path answers (fastpath.rs)
/// never come back here.
#[inline(always)]
pub fn run_guest(frame: &mut TrapFrame) -> Exit {
    // SAFETY: `frame` is a valid, 16-byte aligned TrapFrame the caller owns for the whole
    // call; cairn_run_guest preserves the caller's callee-saved registers and stack, and this
    // CPU's exception vectors (boot/vectors.S) bring the guest's next exit back here.
    let kind = unsafe { cairn_run_guest(frame) };
    match kind {
        KIND_SYNC => classify_sync(Esr(ESR_EL2.get()), FAR_EL2.get(), HPFAR_EL2.get(), frame),
        KIND_IRQ | KIND_FIQ => Exit::Interrupt,
        KIND_SERROR => Exit::SError { esr: Esr(ESR_EL2.get()) },
        _ => Exit::Unhandled { esr: Esr(ESR_EL2.get()) },
    }
}

/// The syndrome and fault address of the exception being taken, for a fault report.
pub fn fault_syndrome() -> (Esr, u64) {
    (Esr(ESR_EL2.get()), FAR_EL2.get())
}
