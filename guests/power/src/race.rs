//! CPU_ON racing CPU_OFF (DEN0022 §5.5-5.7, guest-firmware-interfaces.md §4 and §8.5-8.7).
//!
//! Each round ([`DEFAULT_ROUNDS`] of them) picks a target secondary k in turn, off at the
//! start; for [`HAMMER_US`] the boot CPU calls CPU_ON on k as fast as it can, while k,
//! each time it is started, reports in (bumps its entry count, records the context) and
//! turns itself off at once with CPU_OFF. So calls land while k is starting, running, and
//! in the middle of turning off, many times a round. Then the boot CPU waits for
//! AFFINITY_INFO to say OFF. What must hold:
//! - every answer is SUCCESS (k was off) or ALREADY_ON (k was on): never another code
//!   (Cairn marks the target on under its lock at once, so never ON_PENDING either), and
//!   the round's first call, made while k is off for sure, is SUCCESS;
//! - AFFINITY_INFO says OFF within a bounded time after the round;
//! - k ran exactly once per SUCCESS: its entry count rose by the number of SUCCESSes (a
//!   start lost, or one taken twice, shows here), and its last entry had the context of
//!   the last SUCCESS;
//! - CPU_OFF never returned (and every entry was in DEN0022 §6.4's state, which main.rs
//!   checks for every secondary).
//!
//! With `race-load=N` in the bootargs, the last N secondaries are no targets but spin in
//! the guest for the whole race: with more busy vCPUs than host cores, the host preempts
//! the target's thread at random points, which widens whatever window Cairn leaves open.

use core::fmt::Write;

use guestkit::shared::{Slot, MAX_CPUS};
use guestkit::smp::Cpus;
use guestkit::time;

use crate::calls::{self, Code, AFFINITY_OFF, ALREADY_ON, SUCCESS};
use crate::entry::{self, Context, Job};
use crate::jobs::{self, ENTRIES, LAST_CONTEXT, OFF_RETURNS, OFF_RETURN_X0};
use crate::report::{Report, Text};

/// Rounds, one target per round in turn, unless the bootargs say otherwise
/// (`race-rounds=`).
pub const DEFAULT_ROUNDS: u64 = 200;
/// How long the boot CPU keeps calling CPU_ON in a round: k goes through many on/off
/// cycles meanwhile.
const HAMMER_US: u64 = 2_000;
/// How long AFFINITY_INFO may keep saying ON once the calls stopped: a bounded time, as
/// Linux's cpu_die polling assumes (guest-firmware-interfaces.md §8.7).
const OFF_TIMEOUT_US: u64 = 5_000_000;
/// How long the boot CPU waits after the last round before it counts entries once more,
/// so a late second run of a start would be seen.
const SETTLE_US: u64 = 20_000;
/// The context tag: round above the attempt within the round.
const ATTEMPT_BITS: u32 = 24;

/// The first thing that went wrong of a kind, for the failure detail.
struct First {
    text: Text,
    set: bool,
}

impl First {
    fn new() -> First {
        First { text: Text::new(), set: false }
    }

    fn record(&mut self, what: core::fmt::Arguments<'_>) {
        if !self.set {
            self.set = true;
            let _ = self.text.write_fmt(what);
        }
    }
}

#[derive(Default)]
struct Tally {
    successes: u64,
    already_on: u64,
    first_not_success: u64,
    unexpected: u64,
    never_off: u64,
    wrong_runs: u64,
    wrong_context: u64,
}

/// Set by the boot CPU when the race is over: the load CPUs stop spinning.
static LOAD_DONE: Slot<bool> = Slot::new(false);

/// A load CPU's job: spins in the guest, trapping nothing, until the race is over.
pub fn load_job() -> ! {
    while !LOAD_DONE.get() {
        core::hint::spin_loop();
    }
    jobs::off()
}

pub fn run(r: &mut Report, cpus: &Cpus, rounds: u64, load: usize) {
    let secondaries = cpus.secondaries();
    let load = load.min(secondaries.len().saturating_sub(1));
    let targets = secondaries.start..secondaries.end - load;
    if targets.is_empty() {
        r.note(format_args!("one vCPU: no CPU_ON/CPU_OFF race"));
        return;
    }
    let loaders = targets.end..secondaries.end;
    for l in loaders.clone() {
        let x0 = calls::cpu_on(cpus.mpidr(l), entry::secondary_entry(), Context::new(l, Job::Load, 0).encode());
        r.check(format_args!("cpu-on-off-race-load-cpu{l}-starts"), x0 == SUCCESS, {
            format_args!("CPU_ON returned {}", Code::of(x0))
        });
    }
    let mut t = Tally::default();
    let mut lost = [false; MAX_CPUS];
    let (mut answers, mut offs, mut runs, mut contexts) = (First::new(), First::new(), First::new(), First::new());
    let off_returns_before: u64 = targets.clone().map(|k| OFF_RETURNS.get(k)).sum();
    let entries_before: [u64; MAX_CPUS] = core::array::from_fn(|k| ENTRIES.get(k));
    let mut successes = [0u64; MAX_CPUS];
    for round in 0..rounds {
        let k = targets.start + (round as usize) % targets.len();
        if lost[k] {
            continue;
        }
        let mpidr = cpus.mpidr(k);
        let context = |attempt: u64| Context::new(k, Job::Race, round << ATTEMPT_BITS | attempt).encode();
        let base = ENTRIES.get(k);
        let (mut round_successes, mut last, mut attempt) = (0, 0, 0);
        let deadline = time::now() + time::ticks(HAMMER_US);
        loop {
            let x0 = calls::cpu_on(mpidr, entry::secondary_entry(), context(attempt));
            match x0 {
                SUCCESS => {
                    round_successes += 1;
                    last = context(attempt);
                }
                ALREADY_ON if attempt > 0 => t.already_on += 1,
                other if attempt == 0 => {
                    t.first_not_success += 1;
                    answers.record(format_args!("round {round}: CPU_ON of off cpu{k} returned {}", Code::of(other)));
                }
                other => {
                    t.unexpected += 1;
                    answers.record(format_args!("round {round}: CPU_ON of cpu{k} returned {}", Code::of(other)));
                }
            }
            attempt += 1;
            if time::now() >= deadline {
                break;
            }
        }
        t.successes += round_successes;
        successes[k] += round_successes;
        if !time::wait_until(OFF_TIMEOUT_US, || calls::affinity_info(mpidr) == AFFINITY_OFF) {
            t.never_off += 1;
            lost[k] = true;
            offs.record(format_args!("round {round}: cpu{k} still ON {OFF_TIMEOUT_US} us after the calls stopped"));
            continue;
        }
        let ran = ENTRIES.get(k) - base;
        if ran != round_successes {
            t.wrong_runs += 1;
            runs.record(format_args!("round {round}: cpu{k} ran {ran} times for {round_successes} SUCCESSes"));
        }
        let seen = LAST_CONTEXT.get(k);
        if round_successes > 0 && seen != last {
            t.wrong_context += 1;
            contexts.record(format_args!(
                "round {round}: cpu{k} last ran with context {seen:#x}, the last SUCCESS gave {last:#x}"
            ));
        }
    }
    LOAD_DONE.set(true);
    let load_off = loaders
        .clone()
        .all(|l| time::wait_until(OFF_TIMEOUT_US, || calls::affinity_info(cpus.mpidr(l)) == AFFINITY_OFF));
    r.check("cpu-on-off-race-load-cpus-off-at-the-end", load_off, format_args!("one is still ON"));
    time::delay_us(SETTLE_US);
    let mut late = Text::new();
    for k in targets.clone().filter(|&k| !lost[k]) {
        let ran = ENTRIES.get(k) - entries_before[k];
        if ran != successes[k] {
            let _ = write!(late, "cpu{k} ran {ran} times for {} SUCCESSes; ", successes[k]);
        }
    }
    let off_returns: u64 = targets.clone().map(|k| OFF_RETURNS.get(k)).sum::<u64>() - off_returns_before;
    let off_x0 = targets.clone().map(|k| OFF_RETURN_X0.get(k)).find(|&x| x != 0).unwrap_or(0);

    r.note(format_args!(
        "CPU_ON/CPU_OFF race: {rounds} rounds of {HAMMER_US} us, {} SUCCESSes ({} of them restarts of a CPU \
         that had just turned itself off), {} ALREADY_ON",
        t.successes,
        t.successes.saturating_sub(rounds),
        t.already_on
    ));
    r.check(
        "cpu-on-off-race-first-cpu-on-of-an-off-cpu-succeeds",
        t.first_not_success == 0,
        format_args!("{} rounds; first: {}", t.first_not_success, answers.text),
    );
    r.check(
        "cpu-on-off-race-answers-success-or-already-on",
        t.unexpected == 0,
        format_args!("{} other answers; first: {}", t.unexpected, answers.text),
    );
    r.check(
        "cpu-on-off-race-affinity-info-off-after-each-round",
        t.never_off == 0,
        format_args!("{} rounds; first: {}", t.never_off, offs.text),
    );
    r.check(
        "cpu-on-off-race-one-run-per-success",
        t.wrong_runs == 0,
        format_args!("{} rounds; first: {}", t.wrong_runs, runs.text),
    );
    r.check(
        "cpu-on-off-race-last-run-has-the-last-success-context",
        t.wrong_context == 0,
        format_args!("{} rounds; first: {}", t.wrong_context, contexts.text),
    );
    r.check(
        "cpu-on-off-race-no-run-after-the-rounds",
        late.is_empty(),
        format_args!("{SETTLE_US} us after the last round: {late}"),
    );
    r.check(
        "cpu-on-off-race-cpu-off-never-returns",
        off_returns == 0,
        format_args!("CPU_OFF returned {off_returns} times (x0 {})", Code(off_x0)),
    );
}
