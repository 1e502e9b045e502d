//! The Arm True Random Number Generator firmware interface (Arm DEN0098) for guests,
//! backed by the host's entropy source. Pure logic over an [`Entropy`] source, tested on
//! the host.

use super::call::Results;

/// TRNG function IDs (DEN0098 §2.1), standard secure service numbers 0x50-0x53.
pub const TRNG_VERSION: u32 = 0x8400_0050;
pub const TRNG_FEATURES: u32 = 0x8400_0051;
pub const TRNG_GET_UUID: u32 = 0x8400_0052;
pub const TRNG_RND32: u32 = 0x8400_0053;
pub const TRNG_RND64: u32 = 0xC400_0053;
/// The owner-4 function numbers that belong to TRNG.
pub const FUNCTION_NUMBERS: core::ops::RangeInclusive<u16> = 0x50..=0x5F;

/// TRNG return codes (DEN0098 §2.1.1).
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const NO_ENTROPY: i64 = -3;
}

/// TRNG 1.0: `major << 16 | minor`, bit 31 clear.
pub const VERSION_1_0: i64 = 1 << 16;
/// The most bits one call returns: three W registers for RND32, three X for RND64.
const RND32_MAX_BITS: u64 = 96;
const RND64_MAX_BITS: u64 = 192;

/// Cairn's TRNG implementation UUID, 5f2a1c3e-8d47-4b6a-9e0f-43a1b2c3d4e5, returned in
/// w0-w3 as four little-endian words of the UUID's bytes (DEN0098 §2.4).
pub const UUID: [u8; 16] =
    [0x5f, 0x2a, 0x1c, 0x3e, 0x8d, 0x47, 0x4b, 0x6a, 0x9e, 0x0f, 0x43, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5];

/// A source of true entropy: 64 bits a call, or None when it is exhausted or failed.
pub trait Entropy {
    fn available(&self) -> bool;
    fn next_u64(&self) -> Option<u64>;
}

/// Packs a UUID as SMCCC returns UIDs: register n holds bytes 4n..4n+3, little-endian.
pub fn uuid_registers(uuid: &[u8; 16]) -> [u64; 4] {
    let word =
        |n: usize| u64::from(u32::from_le_bytes([uuid[4 * n], uuid[4 * n + 1], uuid[4 * n + 2], uuid[4 * n + 3]]));
    [word(0), word(1), word(2), word(3)]
}

/// Answers a TRNG call. `bits` is the argument N from w1/x1.
pub fn call(function: u32, arg1: u64, entropy: &dyn Entropy) -> Results {
    if !entropy.available() {
        return Results::x0(ret::NOT_SUPPORTED);
    }
    match function {
        TRNG_VERSION => Results::x0(VERSION_1_0),
        TRNG_FEATURES => Results::x0(features(arg1 as u32)),
        TRNG_GET_UUID => {
            let r = uuid_registers(&UUID);
            Results::new(&r)
        }
        TRNG_RND32 => random(arg1 & u64::from(u32::MAX), RND32_MAX_BITS, 32, entropy),
        TRNG_RND64 => random(arg1, RND64_MAX_BITS, 64, entropy),
        _ => Results::x0(ret::NOT_SUPPORTED),
    }
}

fn features(queried: u32) -> i64 {
    match queried {
        TRNG_VERSION | TRNG_FEATURES | TRNG_GET_UUID | TRNG_RND32 | TRNG_RND64 => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

/// N random bits in x1-x3 (register width `width`), least significant in x3, unused high
/// bits zero (DEN0098 §2.5, §2.6).
fn random(n: u64, max: u64, width: u32, entropy: &dyn Entropy) -> Results {
    if n == 0 || n > max {
        return Results::x0(ret::INVALID_PARAMETERS);
    }
    let mut regs = [ret::SUCCESS as u64, 0, 0, 0];
    let mut remaining = n;
    // x3 first (bits 0..width), then x2, then x1.
    for reg in (1..=3).rev() {
        if remaining == 0 {
            break;
        }
        let Some(value) = entropy.next_u64() else { return Results::x0(ret::NO_ENTROPY) };
        let take = remaining.min(u64::from(width));
        let mask = if take == 64 { u64::MAX } else { (1u64 << take) - 1 };
        regs[reg] = value & mask;
        remaining -= take;
    }
    Results::new(&regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    struct Counter(Cell<u64>, bool);
    impl Entropy for Counter {
        fn available(&self) -> bool {
            self.1
        }
        fn next_u64(&self) -> Option<u64> {
            self.0.set(self.0.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
            Some(self.0.get() | 1 << 63)
        }
    }

    struct Exhausted;
    impl Entropy for Exhausted {
        fn available(&self) -> bool {
            true
        }
        fn next_u64(&self) -> Option<u64> {
            None
        }
    }

    fn source() -> Counter {
        Counter(Cell::new(7), true)
    }

    #[test]
    fn version_features_and_uuid() {
        let e = source();
        assert_eq!(call(TRNG_VERSION, 0, &e).registers(), [0x1_0000]);
        assert_eq!(call(TRNG_FEATURES, u64::from(TRNG_RND64), &e).registers(), [0]);
        assert_eq!(call(TRNG_FEATURES, 0x8400_0054, &e).registers(), [u64::MAX]);
        let uuid = call(TRNG_GET_UUID, 0, &e);
        assert_eq!(uuid.registers()[0], 0x3e1c_2a5f);
        assert!(uuid.registers().iter().all(|&w| w <= u64::from(u32::MAX)));
    }

    #[test]
    fn rnd64_fills_from_x3_up_and_zeroes_unused_bits() {
        let r = call(TRNG_RND64, 72, &source());
        let regs = r.registers();
        assert_eq!(regs[0], 0);
        assert_ne!(regs[3], 0);
        assert_eq!(regs[2] >> 8, 0, "only 8 bits in x2");
        assert_eq!(regs[1], 0);
    }

    #[test]
    fn rnd32_uses_w_registers() {
        let r = call(TRNG_RND32, 0xFFFF_FFFF_0000_0060, &source());
        let regs = r.registers();
        assert_eq!(regs[0], 0, "N is taken from w1 only: 96 bits");
        assert!(regs[1..].iter().all(|&w| w <= u64::from(u32::MAX) && w != 0));
    }

    #[test]
    fn bad_lengths_no_source_and_exhaustion() {
        assert_eq!(call(TRNG_RND64, 193, &source()).registers(), [ret::INVALID_PARAMETERS as u64]);
        assert_eq!(call(TRNG_RND32, 97, &source()).registers(), [ret::INVALID_PARAMETERS as u64]);
        assert_eq!(call(TRNG_RND64, 0, &source()).registers(), [ret::INVALID_PARAMETERS as u64]);
        assert_eq!(call(TRNG_VERSION, 0, &Counter(Cell::new(0), false)).registers(), [u64::MAX]);
        assert_eq!(call(TRNG_RND64, 64, &Exhausted).registers(), [ret::NO_ENTROPY as u64]);
    }

    #[test]
    fn output_is_not_constant() {
        let e = source();
        let a = call(TRNG_RND64, 192, &e);
        let b = call(TRNG_RND64, 192, &e);
        assert_ne!(a.registers(), b.registers());
    }
}
