//! Bounded waits. Every wait gives up after a timeout, so a lost interrupt or a vCPU that
//! never answers becomes a failed figure instead of a hang.
//!
//! Waits for the other vCPU use [`relax`] (`yield`): with `-icount`, QEMU runs every vCPU
//! in one thread, round-robin, and switches to the next one at a YIELD; without it a
//! vCPU spinning for the other would use up its whole time slice (tens of milliseconds
//! of guest time) before the other vCPU ran at all. YIELD is a hint that never traps
//! (unlike WFE, which Cairn traps), so it does not add exits to what is measured.

use core::arch::asm;

use guestkit::time;

/// A spin-wait hint: lets another vCPU sharing the host thread run.
pub fn relax() {
    // SAFETY: YIELD only hints that this CPU is waiting; it has no architectural effect.
    // No `nomem`: the loops around it reread memory the other vCPU writes.
    unsafe { asm!("yield", options(nostack, preserves_flags)) };
}

/// Polls `done` until it holds or `timeout_us` has passed; returns the last `done()`.
/// For waits on this vCPU's own events (its timer, its interrupts).
pub fn spin(timeout_us: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = time::now().saturating_add(time::ticks(timeout_us));
    loop {
        if done() {
            return true;
        }
        if time::now() >= deadline {
            return done();
        }
    }
}

/// As [`spin`], yielding between polls: for waits on another vCPU.
pub fn for_other(timeout_us: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = time::now().saturating_add(time::ticks(timeout_us));
    loop {
        if done() {
            return true;
        }
        if time::now() >= deadline {
            return done();
        }
        relax();
    }
}

/// Lets `us` microseconds pass, yielding to other vCPUs meanwhile.
pub fn delay_us(us: u64) {
    for_other(us, || false);
}
