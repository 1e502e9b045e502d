//! A guest's general-purpose registers, PC and PSTATE as boot/vectors.S saves them at an
//! exit and restores them at entry. Pure data, so the exit policy above it builds and is
//! tested on the host.

/// The frame's size in bytes, as boot/vectors.S lays it out.
pub const FRAME_SIZE: usize = 16 * 17;
/// Where in the frame boot/vectors.S keeps the run loop's stack pointer while the guest runs.
pub const HOST_SP_OFFSET: usize = core::mem::offset_of!(TrapFrame, host_sp);

/// SPSR_ELx.M[4]: the exception came from AArch32 state.
const SPSR_M_AARCH32: u64 = 1 << 4;

/// A guest's (or, for a fault in Cairn, Cairn's own) general-purpose registers, PC and
/// PSTATE at the time of the exception. 16-byte aligned: while the guest runs, SP_EL2 points
/// just past it, and the exception vector builds the next frame in its place.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    host_sp: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == FRAME_SIZE);

impl TrapFrame {
    pub const ZERO: TrapFrame = TrapFrame { x: [0; 31], elr: 0, spsr: 0, host_sp: 0 };

    pub fn new(pc: u64, pstate: u64) -> Self {
        TrapFrame { elr: pc, spsr: pstate, ..Self::ZERO }
    }

    pub fn caller_is_aarch32(&self) -> bool {
        self.spsr & SPSR_M_AARCH32 != 0
    }
}
