//! Time from the virtual counter (CNTVCT_EL0 at CNTFRQ_EL0 Hz), for timeouts and delays.
//! Every wait in a test guest is bounded, so a missing interrupt shows up as a failed
//! check instead of a hang.

use core::arch::asm;

const MICROS_PER_SECOND: u64 = 1_000_000;

/// The virtual count. The `isb` stops the read from being taken early (Arm ARM,
/// "Reading the counter": counter reads may otherwise occur out of order).
pub fn now() -> u64 {
    let count: u64;
    // SAFETY: reading the virtual counter has no side effects.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) count, options(nomem, nostack, preserves_flags)) };
    count
}

/// Counter ticks per second.
pub fn frequency() -> u64 {
    let hz: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack, preserves_flags)) };
    hz
}

/// Ticks in `us` microseconds.
pub fn ticks(us: u64) -> u64 {
    us.saturating_mul(frequency()) / MICROS_PER_SECOND
}

/// Microseconds in `ticks` counter ticks.
pub fn micros(ticks: u64) -> u64 {
    ticks.saturating_mul(MICROS_PER_SECOND) / frequency().max(1)
}

/// Waits until `done()` or until `timeout_us` has passed; returns the last `done()`.
pub fn wait_until(timeout_us: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = now().saturating_add(ticks(timeout_us));
    loop {
        if done() {
            return true;
        }
        if now() >= deadline {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// Busy-waits for `us` microseconds.
pub fn delay_us(us: u64) {
    wait_until(us, || false);
}
