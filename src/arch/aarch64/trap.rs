//! The Rust side of the EL2 vectors: the saved guest context and the two handlers the
//! vectors call.

use super::esr::Esr;
use super::exit::{classify_sync, Exit};
use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};

/// The frame boot/vectors.S builds on the EL2 stack for every exception.
pub const FRAME_SIZE: usize = 16 * 17;

/// Exception kinds, as the vectors pass them in x1.
const KIND_SYNC: u64 = 0;
const KIND_IRQ: u64 = 1;
const KIND_FIQ: u64 = 2;
const KIND_SERROR: u64 = 3;

/// SPSR_ELx.M[4]: the exception came from AArch32 state.
const SPSR_M_AARCH32: u64 = 1 << 4;

/// A guest's (or, for a fault in Cairn, Cairn's own) general-purpose registers, PC and
/// PSTATE at the time of the exception. The layout matches boot/vectors.S.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

impl TrapFrame {
    pub const ZERO: TrapFrame = TrapFrame { x: [0; 31], elr: 0, spsr: 0, _pad: 0 };

    pub fn new(pc: u64, pstate: u64) -> Self {
        TrapFrame { elr: pc, spsr: pstate, ..Self::ZERO }
    }

    pub fn caller_is_aarch32(&self) -> bool {
        self.spsr & SPSR_M_AARCH32 != 0
    }

    /// Moves the guest's PC past the trapped instruction.
    pub fn skip_instruction(&mut self, esr: Esr) {
        self.elr = self.elr.wrapping_add(esr.instruction_len());
    }
}

/// Called by the vectors for every exception from a guest.
pub(super) extern "C" fn handle_guest_exception(frame: &mut TrapFrame, kind: u64) {
    let exit = match kind {
        KIND_SYNC => {
            let esr = Esr(ESR_EL2.get());
            let exit = classify_sync(esr, FAR_EL2.get(), HPFAR_EL2.get());
            // A trapped SMC leaves ELR_EL2 at the SMC itself (unlike HVC, which is an
            // exception taken after it): step over it first so both conduits look the
            // same to everything that follows (guest-firmware-interfaces.md §0.1).
            if let Exit::Hypercall { conduit: super::exit::Conduit::Smc, .. } = exit {
                frame.skip_instruction(esr);
            }
            exit
        }
        KIND_IRQ | KIND_FIQ => Exit::Interrupt,
        KIND_SERROR => Exit::SError { esr: Esr(ESR_EL2.get()) },
        _ => Exit::Unhandled { esr: Esr(ESR_EL2.get()) },
    };
    crate::vcpu::handle_exit(frame, exit);
}

/// Called by the vectors for an exception taken from EL2 itself.
pub(super) extern "C" fn handle_hyp_exception(frame: &mut TrapFrame, kind: u64) {
    crate::hyp::hyp_fault(frame, kind, Esr(ESR_EL2.get()), FAR_EL2.get());
}
