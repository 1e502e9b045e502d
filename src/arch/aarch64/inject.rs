//! Delivering synchronous exceptions to a guest at EL1, as the hardware would have
//! (Arm ARM D1.10: exception entry). Used when a guest does something Cairn refuses:
//! an undefined trapped instruction, an access outside its memory; and to enter an
//! address as an exception would (SDEI's COMPLETE_AND_RESUME).

use aarch64_cpu::registers::{Readable, Writeable, ELR_EL1, ESR_EL1, FAR_EL1, SPSR_EL1, VBAR_EL1};

use super::frame::TrapFrame;

/// ESR_ELx.EC values (Arm ARM table D24-2) and IL (bit 25).
const EC_UNKNOWN: u64 = 0x00;
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
const EC_INSTRUCTION_ABORT_SAME: u64 = 0x21;
const EC_DATA_ABORT_LOWER: u64 = 0x24;
const EC_DATA_ABORT_SAME: u64 = 0x25;
const EC_SHIFT: u64 = 26;
const ESR_IL: u64 = 1 << 25;
/// Fault status: synchronous external abort, not on a table walk.
const FSC_SYNC_EXTERNAL_ABORT: u64 = 0x10;

/// SPSR.M[3:0] values and the DAIF mask bits.
const MODE_MASK: u64 = 0xF;
const MODE_EL0T: u64 = 0b0000;
const MODE_EL1T: u64 = 0b0100;
const PSTATE_EL1H: u64 = 0b0101;
const PSTATE_DAIF: u64 = 0xF << 6;

/// Vector offsets from VBAR_EL1 for a synchronous exception (Arm ARM D1.10.2).
const VECTOR_CURRENT_SP0: u64 = 0x000;
const VECTOR_CURRENT_SPX: u64 = 0x200;
const VECTOR_LOWER_AARCH64: u64 = 0x400;
const VECTOR_LOWER_AARCH32: u64 = 0x600;
/// SPSR.M[4]: the exception came from AArch32 state (only EL0 can be, under HCR_EL2.RW).
const MODE_AARCH32: u64 = 1 << 4;

fn from_el0(frame: &TrapFrame) -> bool {
    frame.spsr & MODE_AARCH32 != 0 || frame.spsr & MODE_MASK == MODE_EL0T
}

fn enter_el1(frame: &mut TrapFrame, esr: u64, far: Option<u64>) {
    let offset = match frame.spsr & MODE_MASK {
        _ if frame.spsr & MODE_AARCH32 != 0 => VECTOR_LOWER_AARCH32,
        MODE_EL0T => VECTOR_LOWER_AARCH64,
        MODE_EL1T => VECTOR_CURRENT_SP0,
        _ => VECTOR_CURRENT_SPX,
    };
    ELR_EL1.set(frame.elr);
    SPSR_EL1.set(frame.spsr);
    ESR_EL1.set(esr);
    if let Some(far) = far {
        FAR_EL1.set(far);
    }
    frame.elr = VBAR_EL1.get() + offset;
    frame.spsr = PSTATE_EL1H | PSTATE_DAIF;
}

/// An undefined-instruction exception at the guest's PC.
pub fn undefined_instruction(frame: &mut TrapFrame) {
    enter_el1(frame, (EC_UNKNOWN << EC_SHIFT) | ESR_IL, None);
}

/// A synchronous external abort for a data access to `va`.
pub fn data_abort(frame: &mut TrapFrame, va: u64) {
    let ec = if from_el0(frame) { EC_DATA_ABORT_LOWER } else { EC_DATA_ABORT_SAME };
    enter_el1(frame, (ec << EC_SHIFT) | ESR_IL | FSC_SYNC_EXTERNAL_ABORT, Some(va));
}

/// A synchronous external abort for an instruction fetch from `va`.
pub fn instruction_abort(frame: &mut TrapFrame, va: u64) {
    let ec = if from_el0(frame) { EC_INSTRUCTION_ABORT_LOWER } else { EC_INSTRUCTION_ABORT_SAME };
    enter_el1(frame, (ec << EC_SHIFT) | ESR_IL | FSC_SYNC_EXTERNAL_ABORT, Some(va));
}

/// Enters `address` at EL1h with every exception masked, as an exception taken from the
/// frame's context would: ELR_EL1 and SPSR_EL1 get that context's PC and PSTATE (SDEI
/// EVENT_COMPLETE_AND_RESUME, DEN0054 §5.1.6).
pub fn enter_as_exception(frame: &mut TrapFrame, address: u64) {
    ELR_EL1.set(frame.elr);
    SPSR_EL1.set(frame.spsr);
    frame.elr = address;
    frame.spsr = PSTATE_EL1H | PSTATE_DAIF;
}
