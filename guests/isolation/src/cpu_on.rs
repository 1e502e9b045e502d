//! Check 4, `cpu_on_storm`: PSCI CPU_ON (SMC64, through HVC) on MPIDRs 0-7, over and over.
//! A VM's PSCI knows only its own vCPUs: for one of them the answer is SUCCESS, ALREADY_ON
//! or ON_PENDING (the caller itself: ALREADY_ON only), and for any other MPIDR, another
//! VM's vCPU or none at all, INVALID_PARAMETERS (DEN0022 §5.6.2). A started vCPU enters
//! [`off_entry`], which turns it off again at once, so the calls land while it starts,
//! runs and stops.
//!
//! Assumes PSCI 0.2 or later (Cairn's default is 1.1): PSCI 0.1 has no ALREADY_ON.

use guestkit::smp::Cpus;
use guestkit::spec::psci;
use guestkit::{cpu, smccc, time, Checks};

/// Calls per MPIDR.
const ITERATIONS: u32 = 2000;
/// MPIDR Aff0 values 0-7: every CPU QEMU virt's GICv2 can have, and more than the VM has.
const MPIDRS: u64 = 8;
/// How long the started vCPUs get to be OFF again afterwards.
const OFF_TIMEOUT_US: u64 = 5_000_000;
/// AFFINITY_INFO's lowest affinity level 0: exactly the core named (DEN0022 §5.7.1).
const AFFINITY_LEVEL_CORE: u64 = 0;

// The entry CPU_ON sends vCPUs to: CPU_OFF at once (and again, should it ever return).
// It needs no stack and touches no memory. DEN0022 §6.4: the vCPU arrives at EL1 with
// x0 = the context id, which it ignores.
core::arch::global_asm!(
    "    .section .text.isolation_off_entry, \"ax\"",
    "    .balign 4",
    "    .global isolation_off_entry",
    "isolation_off_entry:",
    "    movz    x0, #{LOW}",
    "    movk    x0, #{HIGH}, lsl #16",
    "    hvc     #0",
    "    b       isolation_off_entry",
    LOW = const psci::CPU_OFF & 0xFFFF,
    HIGH = const psci::CPU_OFF >> 16,
);

extern "C" {
    fn isolation_off_entry();
}

/// The entry's physical address (the MMU is off: addresses are physical).
fn off_entry() -> u64 {
    isolation_off_entry as *const () as usize as u64
}

/// How the calls were answered.
#[derive(Default, Debug)]
struct Tally {
    success: u32,
    already_on: u32,
    on_pending: u32,
    invalid_parameters: u32,
    unexpected: u32,
    /// The first unexpected answer: MPIDR and x0.
    first_unexpected: Option<(u64, i64)>,
}

impl Tally {
    fn record(&mut self, mpidr: u64, answer: i64, own: bool, me: bool) {
        let expected = match answer {
            psci::SUCCESS => own && !me,
            psci::ALREADY_ON => own,
            psci::ON_PENDING => own && !me,
            psci::INVALID_PARAMETERS => !own,
            _ => false,
        };
        if !expected {
            self.unexpected += 1;
            self.first_unexpected.get_or_insert((mpidr, answer));
            return;
        }
        match answer {
            psci::SUCCESS => self.success += 1,
            psci::ALREADY_ON => self.already_on += 1,
            psci::ON_PENDING => self.on_pending += 1,
            _ => self.invalid_parameters += 1,
        }
    }
}

fn is_own(cpus: &Cpus, mpidr: u64) -> bool {
    (0..cpus.count()).any(|k| cpus.mpidr(k) == mpidr)
}

/// Waits until every secondary is OFF; returns how many are not.
fn wait_all_off(cpus: &Cpus) -> usize {
    let on = || {
        let state = |k| smccc::hvc0(psci::AFFINITY_INFO_64.into(), cpus.mpidr(k), AFFINITY_LEVEL_CORE, 0) as i64;
        cpus.secondaries().filter(|&k| state(k) != psci::AFFINITY_OFF).count()
    };
    time::wait_until(OFF_TIMEOUT_US, || on() == 0);
    on()
}

/// Runs the storm and records `cpu_on_storm`.
pub fn run(t: &mut Checks, cpus: &Cpus) {
    let me = cpu::mpidr();
    let entry = off_entry();
    let mut tally = Tally::default();
    for _ in 0..ITERATIONS {
        for mpidr in 0..MPIDRS {
            let answer = smccc::cpu_on(mpidr, entry, mpidr);
            tally.record(mpidr, answer, is_own(cpus, mpidr), mpidr == me);
        }
    }
    let still_on = wait_all_off(cpus);
    t.check(
        "cpu_on_storm",
        tally.unexpected == 0 && still_on == 0,
        format_args!("{tally:?}; {still_on} of its secondaries still not OFF after {OFF_TIMEOUT_US} us"),
    );
    t.note(format_args!(
        "cpu_on_storm: {} vCPUs; {} calls: {} SUCCESS, {} ALREADY_ON, {} ON_PENDING, {} INVALID_PARAMETERS, {} other",
        cpus.count(),
        ITERATIONS as u64 * MPIDRS,
        tally.success,
        tally.already_on,
        tally.on_pending,
        tally.invalid_parameters,
        tally.unexpected
    ));
}
