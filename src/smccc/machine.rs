//! The machine behind the SMCCC dispatcher: its firmware's answers for the calls only it
//! can make, and the CPU's entropy source, over the arch layer's firmware calls
//! (`arch::aarch64::firmware`) and random number generator. Bare-metal target only.

use super::dispatch::Host;
use super::ret;
use super::trng::Entropy;
use crate::arch::aarch64::{cpu, firmware};

/// The machine's firmware and entropy source, as the SMCCC dispatcher sees them.
pub struct MachineFirmware;

impl Entropy for MachineFirmware {
    fn available(&self) -> bool {
        cpu::has_rng()
    }

    /// RNDRSS: a random number from a freshly reseeded generator (FEAT_RNG), so every
    /// value comes from the true entropy source.
    fn next_u64(&self) -> Option<u64> {
        cpu::random_reseeded()
    }
}

impl Host for MachineFirmware {
    fn arch_feature(&self, fid: u32) -> i64 {
        firmware::arch_feature(fid)
    }

    /// Without a firmware to pass it to, the call answers NOT_SUPPORTED.
    fn forward(&self, fid: u32, arg1: u64) -> [u64; 4] {
        [firmware::forward(fid, arg1).unwrap_or(ret::NOT_SUPPORTED) as u64, 0, 0, 0]
    }
}
