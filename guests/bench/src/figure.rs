//! What a measurement produces and how it is printed.
//!
//! One line per figure, for scripts/bench and tests/bench.rs to parse:
//!
//! ```text
//! CAIRN-BENCH <name> ticks=<avg> ns=<avg> iterations=<n> [min_ticks=<t> max_ticks=<t>]
//! CAIRN-BENCH <name> unavailable: <why>
//! CAIRN-BENCH <name> failed: <what went wrong>
//! ```
//!
//! `ticks` are virtual-counter ticks (CNTVCT_EL0) per operation, `ns` the same converted
//! with CNTFRQ_EL0; both are averages with two decimals. Figures timed one operation at a
//! time also give the smallest and largest single sample.

use core::fmt;

use guestkit::{println, time};

/// Decimal places of the printed averages.
const HUNDREDTHS: u128 = 100;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Samples of one figure, in counter ticks.
#[derive(Clone, Copy, Debug)]
pub struct Samples {
    total: u64,
    iterations: u32,
    /// Smallest and largest single sample, when operations were timed one by one.
    range: Option<(u64, u64)>,
}

impl Samples {
    /// `total` ticks over `iterations` operations timed as one batch.
    pub fn batch(total: u64, iterations: u32) -> Self {
        Samples { total, iterations, range: None }
    }

    /// No samples yet; add them with [`Samples::add`].
    pub fn one_by_one() -> Self {
        Samples { total: 0, iterations: 0, range: None }
    }

    pub fn add(&mut self, ticks: u64) {
        self.total = self.total.saturating_add(ticks);
        self.iterations += 1;
        self.range = Some(match self.range {
            None => (ticks, ticks),
            Some((min, max)) => (min.min(ticks), max.max(ticks)),
        });
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The average in hundredths of a tick.
    fn ticks_x100(&self) -> u128 {
        u128::from(self.total) * HUNDREDTHS / u128::from(self.iterations.max(1))
    }

    /// The average in hundredths of a nanosecond.
    fn nanos_x100(&self) -> u128 {
        let hz = u128::from(time::frequency().max(1));
        u128::from(self.total) * NANOS_PER_SECOND * HUNDREDTHS / (hz * u128::from(self.iterations.max(1)))
    }

    /// Measured at all, and more than nothing per operation.
    pub fn is_positive(&self) -> bool {
        self.iterations > 0 && self.total > 0
    }
}

/// A number in hundredths, printed with two decimals.
struct Hundredths(u128);

impl fmt::Display for Hundredths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / HUNDREDTHS, self.0 % HUNDREDTHS)
    }
}

/// Why a figure has no value.
#[derive(Clone, Copy, Debug)]
pub enum Missing {
    /// The platform does not offer what the figure measures (e.g. SMC without EL3 or a
    /// hypervisor to answer it); only acceptable natively.
    Unavailable(&'static str),
    /// Something went wrong while measuring.
    Failed(Failure),
}

#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// A wait for the other vCPU, an interrupt or a timer ran out at this iteration.
    TimedOut { what: &'static str, iteration: u32 },
    /// Another interrupt was acknowledged than the one expected.
    WrongInterrupt { intid: u32, expected: u32 },
    /// The figure needs a second vCPU that is not there or did not come up.
    NoSecondVcpu,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::TimedOut { what, iteration } => write!(f, "timed out waiting for {what} at iteration {iteration}"),
            Failure::WrongInterrupt { intid, expected } => {
                write!(f, "acknowledged INTID {intid}, expected {expected}")
            }
            Failure::NoSecondVcpu => write!(f, "no second vCPU ready"),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Unavailable(why) => write!(f, "unavailable: {why}"),
            Missing::Failed(failure) => write!(f, "failed: {failure}"),
        }
    }
}

impl From<Failure> for Missing {
    fn from(failure: Failure) -> Self {
        Missing::Failed(failure)
    }
}

/// Prints the figure's line.
pub fn print(name: &str, result: &Result<Samples, Missing>) {
    match result {
        Ok(s) => match s.range {
            Some((min, max)) => println!(
                "CAIRN-BENCH {name} ticks={} ns={} iterations={} min_ticks={min} max_ticks={max}",
                Hundredths(s.ticks_x100()),
                Hundredths(s.nanos_x100()),
                s.iterations
            ),
            None => println!(
                "CAIRN-BENCH {name} ticks={} ns={} iterations={}",
                Hundredths(s.ticks_x100()),
                Hundredths(s.nanos_x100()),
                s.iterations
            ),
        },
        Err(missing) => println!("CAIRN-BENCH {name} {missing}"),
    }
}
