//! CPU_ON, CPU_OFF and AFFINITY_INFO across the VM's vCPUs (DEN0022 §5.5-5.7).
//!
//! The boot CPU starts each secondary at this guest's own entry (entry.rs) with a context
//! id that names the start; the secondary records how it arrived and then waits for
//! orders in its slot: turn itself off through a given conduit, or join a race of
//! CPU_ONs on one stopped target. Every slot has one writer (see guestkit::shared).

use core::fmt::{Display, Write};

use guestkit::shared::{BootOnce, PerCpu, Slot, MAX_CPUS};
use guestkit::smp::Cpus;
use guestkit::{cpu, time, Checks};

use crate::calls::{expect_all, regs, Code, Conduit, Text};
use crate::dt::{PsciIds, Ram, Version};
use crate::entry::{self, EntryState, CONTEXT_INDEX_MASK};
use guestkit::spec::psci;

/// How long a started CPU may take to report in, or an ordered one to act. Generous:
/// the tests run several QEMUs at once on two host cores.
const START_TIMEOUT_US: u64 = 5_000_000;
/// How long AFFINITY_INFO may keep saying ON after the CPU called CPU_OFF: a bounded
/// time, as Linux's cpu_die polling assumes (guest-firmware-interfaces.md §8.7).
const OFF_TIMEOUT_US: u64 = 5_000_000;
/// Under 0.1 there is no AFFINITY_INFO: how long to give a CPU_OFF before looking at the
/// CPU_OFF call not having returned.
const OFF_SETTLE_US: u64 = 20_000;
/// Under 0.1, how often CPU_ON of a CPU just ordered off is retried while it still
/// answers INVALID_PARAMETERS (0.1's ALREADY_ON): the only way 0.1 shows a CPU is off.
const RETRY_US: u64 = 1_000;
/// Under 0.1, how long the race target gets to be off for sure before the race.
const RACE_SETTLE_US: u64 = 100_000;
/// Bits 63:32 set in every argument of a 32-bit CPU_ON, which must use only W1-W3
/// (DEN0028 §2.6).
const UPPER_HALF_GARBAGE: u64 = 0xA5A5_A5A5_0000_0000;
/// Context ids carry a generation above the CPU index (which entry.rs reads).
const CONTEXT_GENERATION_SHIFT: u32 = CONTEXT_INDEX_MASK.count_ones();

/// An order: a sequence number above an action.
const ACTION_MASK: u64 = 0xFF;
const ORDER_SEQ_SHIFT: u32 = ACTION_MASK.count_ones();
const ACTION_NONE: u64 = 0;
const ACTION_OFF_HVC: u64 = 1;
const ACTION_OFF_SMC: u64 = 2;
const ACTION_RACE_HVC: u64 = 3;
const ACTION_RACE_SMC: u64 = 4;

// Written by each secondary for itself.
/// The context id it found in x0 at the entry, written last.
static REPORT: PerCpu<u64> = PerCpu::new(0);
static ENTRY_DAIF: PerCpu<u64> = PerCpu::new(0);
static ENTRY_EL: PerCpu<u64> = PerCpu::new(0);
static ENTRY_SPSEL: PerCpu<u64> = PerCpu::new(0);
/// The sequence number of the OFF order it is about to obey (set just before CPU_OFF).
static GOING_OFF: PerCpu<u64> = PerCpu::new(0);
/// The sequence number of the race it waits to start.
static ARMED: PerCpu<u64> = PerCpu::new(0);
/// The sequence number of the last order it finished, and that order's x0.
static DONE: PerCpu<u64> = PerCpu::new(0);
static RESULT: PerCpu<u64> = PerCpu::new(0);

// Written by the boot CPU.
static ORDER: PerCpu<u64> = PerCpu::new(ACTION_NONE);
static RACE_TARGET: PerCpu<u64> = PerCpu::new(0);
static RACE_CONTEXT: PerCpu<u64> = PerCpu::new(0);
/// The sequence number of the race that may start now.
static GO: Slot<u64> = Slot::new(0);

/// The PSCI IDs secondaries call: CPU_ON (for races) and CPU_OFF.
#[derive(Clone, Copy)]
struct SecondaryIds {
    cpu_on: u32,
    cpu_off: u32,
}
static SECONDARY_IDS: BootOnce<SecondaryIds> = BootOnce::new();

fn conduit_of(action: u64) -> Conduit {
    match action {
        ACTION_OFF_SMC | ACTION_RACE_SMC => Conduit::Smc,
        _ => Conduit::Hvc,
    }
}

/// A secondary's Rust entry, from psci_guest_secondary_entry with what it found there.
pub extern "C" fn secondary_main(context: u64, daif: u64, current_el: u64, spsel: u64) -> ! {
    ENTRY_DAIF.set_mine(daif);
    ENTRY_EL.set_mine(current_el);
    ENTRY_SPSEL.set_mine(spsel);
    REPORT.set_mine(context);
    let Some(ids) = SECONDARY_IDS.get() else { cpu::park() };
    let mut last = ORDER.mine();
    loop {
        let order = ORDER.mine();
        let action = order & ACTION_MASK;
        if order == last || action == ACTION_NONE {
            core::hint::spin_loop();
            continue;
        }
        last = order;
        let seq = order >> ORDER_SEQ_SHIFT;
        let conduit = conduit_of(action);
        let result = match action {
            ACTION_OFF_HVC | ACTION_OFF_SMC => {
                GOING_OFF.set_mine(seq);
                // Does not return on success (DEN0022 §5.5).
                conduit.call0(ids.cpu_off)
            }
            ACTION_RACE_HVC | ACTION_RACE_SMC => {
                let (target, context) = (RACE_TARGET.mine(), RACE_CONTEXT.mine());
                ARMED.set_mine(seq);
                while GO.get() != seq {
                    core::hint::spin_loop();
                }
                conduit.call3(ids.cpu_on, target, entry::secondary_entry(), context)
            }
            _ => u64::MAX,
        };
        RESULT.set_mine(result);
        DONE.set_mine(seq);
    }
}

/// The boot CPU's view of the secondaries.
pub struct Smp {
    cpus: Cpus,
    ids: PsciIds,
    version: Version,
    ram: Ram,
    /// Believed on (the boot CPU always is).
    on: [bool; MAX_CPUS],
    /// Started somewhere this guest cannot follow (Cairn accepted a CPU_ON it should have
    /// refused, or the CPU never reported): left alone from then on.
    lost: [bool; MAX_CPUS],
    /// Under 0.1: ordered off, and not yet seen off (see RETRY_US).
    stopping: [bool; MAX_CPUS],
    generation: u64,
    seq: u64,
}

impl Smp {
    /// Call on the boot CPU before any other CPU runs.
    pub fn new(cpus: Cpus, ids: PsciIds, version: Version, ram: Ram) -> Smp {
        SECONDARY_IDS.set(SecondaryIds { cpu_on: ids.cpu_on.first(), cpu_off: ids.cpu_off });
        entry::share_vectors();
        let mut on = [false; MAX_CPUS];
        on[0] = true;
        Smp { cpus, ids, version, ram, on, lost: [false; MAX_CPUS], stopping: [false; MAX_CPUS], generation: 0, seq: 0 }
    }

    fn next_context(&mut self, index: usize) -> u64 {
        self.generation += 1;
        self.generation << CONTEXT_GENERATION_SHIFT | index as u64
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// ALREADY_ON as this version reports it: INVALID_PARAMETERS under 0.1, which lacks
    /// the code (DEN0022 §5.2.2; KVM and Xen map it the same way).
    fn already_on(&self) -> i64 {
        if self.version == Version::V0_1 {
            psci::INVALID_PARAMETERS
        } else {
            psci::ALREADY_ON
        }
    }

    /// INVALID_ADDRESS arrived in PSCI 1.0; earlier versions say INVALID_PARAMETERS.
    fn invalid_address(&self) -> i64 {
        if self.version >= Version::V1_0 {
            psci::INVALID_ADDRESS
        } else {
            psci::INVALID_PARAMETERS
        }
    }

    fn usable(&self) -> impl Iterator<Item = usize> + '_ {
        self.cpus.secondaries().filter(|&i| !self.lost[i])
    }

    /// Starts secondary `i` through `fid` and `conduit` and checks it arrives as DEN0022
    /// §6.4 says. 32-bit forms get garbage in the upper halves of x1-x3.
    fn start(&mut self, t: &mut Checks, i: usize, fid: u32, conduit: Conduit) -> bool {
        let context = self.next_context(i);
        ORDER.set(i, self.next_seq() << ORDER_SEQ_SHIFT | ACTION_NONE);
        let mpidr = self.cpus.mpidr(i);
        let high = if fid & guestkit::spec::smccc::CONVENTION_64 == 0 { UPPER_HALF_GARBAGE } else { 0 };
        let call = regs(fid, &[mpidr | high, entry::secondary_entry() | high, context | high]);
        let mut got = conduit.call(call)[0];
        if core::mem::take(&mut self.stopping[i]) {
            let deadline = time::now() + time::ticks(OFF_TIMEOUT_US);
            while got == psci::INVALID_PARAMETERS as u64 && time::now() < deadline {
                time::delay_us(RETRY_US);
                got = conduit.call(call)[0];
            }
        }
        let started = got == psci::SUCCESS as u64;
        t.check(
            format_args!("cpu-on-cpu{i}-{conduit}-{fid:#x}"),
            started,
            format_args!("CPU_ON(MPIDR {mpidr:#x}) returned {}", Code(got)),
        );
        if !started {
            return false;
        }
        self.on[i] = true;
        let reported = time::wait_until(START_TIMEOUT_US, || REPORT.get(i) == context);
        let state = EntryState {
            x0: REPORT.get(i),
            daif: ENTRY_DAIF.get(i),
            current_el: ENTRY_EL.get(i),
            spsel: ENTRY_SPSEL.get(i),
        };
        t.check(
            format_args!("cpu{i}-enters-el1h-daif-masked-x0-context-{conduit}"),
            reported && state.is_psci_entry(context),
            format_args!("reported in: {reported}; arrived with {state:x?}; context id {context:#x}"),
        );
        if !reported {
            self.lost[i] = true;
        }
        reported
    }

    /// Orders secondary `i` off through `conduit`; checks CPU_OFF does not return and,
    /// from 0.2, that AFFINITY_INFO reports OFF within a bounded time.
    fn stop(&mut self, t: &mut Checks, i: usize, conduit: Conduit) {
        let seq = self.next_seq();
        let action = if conduit == Conduit::Hvc { ACTION_OFF_HVC } else { ACTION_OFF_SMC };
        ORDER.set(i, seq << ORDER_SEQ_SHIFT | action);
        let going = time::wait_until(START_TIMEOUT_US, || GOING_OFF.get(i) == seq);
        let mpidr = self.cpus.mpidr(i);
        let (off, waited) = if self.version >= Version::V0_2 {
            let start = time::now();
            let off = time::wait_until(OFF_TIMEOUT_US, || {
                conduit.call3(psci::AFFINITY_INFO_64, mpidr, 0, 0) == psci::AFFINITY_OFF as u64
            });
            (off, time::micros(time::now() - start))
        } else {
            time::delay_us(OFF_SETTLE_US);
            (true, OFF_SETTLE_US)
        };
        let returned = DONE.get(i) == seq;
        let mut detail = Text::new();
        let _ = write!(detail, "got the order: {going}; CPU_OFF returned: ");
        let _ = if returned { write!(detail, "{}", Code(RESULT.get(i))) } else { write!(detail, "no") };
        let _ = if self.version >= Version::V0_2 {
            write!(detail, "; AFFINITY_INFO OFF: {off} after {waited} us")
        } else {
            write!(detail, "; checked {waited} us later (0.1 has no AFFINITY_INFO)")
        };
        t.check(format_args!("cpu-off-cpu{i}-{conduit}"), going && off && !returned, format_args!("{detail}"));
        if off && !returned {
            self.on[i] = false;
            self.stopping[i] = self.version < Version::V0_2;
        } else {
            self.lost[i] = true;
        }
    }

    /// AFFINITY_INFO's answer for `target` at `level` given who is on: ON if any vCPU
    /// whose affinity fields at and above the level match is on, OFF if none, and
    /// INVALID_PARAMETERS for a bad level or a target matching no vCPU (DEN0022 §5.7).
    fn expected_affinity(&self, target: u64, level: u64) -> i64 {
        let Some(&mask) = psci::AFFINITY_LEVEL_MASKS.get(level as usize) else { return psci::INVALID_PARAMETERS };
        let mut matching = (0..self.cpus.count()).filter(|&c| self.cpus.mpidr(c) & mask == target & mask).peekable();
        if matching.peek().is_none() {
            psci::INVALID_PARAMETERS
        } else if matching.any(|c| self.on[c]) {
            psci::AFFINITY_ON
        } else {
            psci::AFFINITY_OFF
        }
    }

    /// AFFINITY_INFO for every vCPU at levels 0-3, both widths, both conduits.
    fn affinity_snapshot(&self, t: &mut Checks, when: &str) {
        for c in 0..self.cpus.count() {
            let target = self.cpus.mpidr(c);
            let mut wrong = Text::new();
            for level in 0..=psci::MAX_AFFINITY_LEVEL {
                let want = self.expected_affinity(target, level);
                for fid in [psci::AFFINITY_INFO_64, psci::AFFINITY_INFO_32] {
                    for conduit in Conduit::BOTH {
                        let got = conduit.call3(fid, target, level, 0);
                        if got != want as u64 {
                            let _ = write!(wrong, "level {level} {fid:#x} {conduit}: {} not {}; ", Code(got), {
                                Code::of(want)
                            });
                        }
                    }
                }
            }
            let state = if self.on[c] { "on" } else { "off" };
            t.check(
                format_args!("affinity-info-cpu{c}-{state}-levels-0-3-{when}"),
                wrong.is_empty(),
                format_args!("{wrong}"),
            );
        }
    }

    /// An Aff0 value no vCPU in the boot CPU's cluster has, and an Aff1 value no vCPU
    /// has: affinities that match nothing.
    fn nonexistent_affinities(&self) -> (Option<u64>, Option<u64>) {
        const AFF0: u64 = 0xFF;
        const AFF1_SHIFT: u32 = 8;
        const AFF1: u64 = 0xFF << AFF1_SHIFT;
        let boot = self.cpus.mpidr(0);
        let exists = |m: u64, mask: u64| (0..self.cpus.count()).any(|c| self.cpus.mpidr(c) & mask == m & mask);
        let aff0 = (0..=AFF0).rev().map(|a| boot & !AFF0 | a).find(|&m| !exists(m, psci::AFFINITY_LEVEL_MASKS[0]));
        let aff1 = (0..=AFF0)
            .rev()
            .map(|a| boot & !AFF1 | a << AFF1_SHIFT)
            .find(|&m| !exists(m, psci::AFFINITY_LEVEL_MASKS[1]));
        (aff0, aff1)
    }

    /// AFFINITY_INFO's refusals: level 4, and targets that match no vCPU.
    fn affinity_refusals(&self, t: &mut Checks) {
        let fids = [psci::AFFINITY_INFO_64, psci::AFFINITY_INFO_32];
        let boot = self.cpus.mpidr(0);
        let level4 = psci::MAX_AFFINITY_LEVEL + 1;
        expect_all(t, "affinity-info-level-4-invalid-parameters", &fids, psci::INVALID_PARAMETERS, |fid, c| {
            c.call3(fid, boot, level4, 0)
        });
        let (aff0, aff1) = self.nonexistent_affinities();
        if let Some(m) = aff0 {
            expect_all(t, "affinity-info-no-such-cpu-invalid-parameters", &fids, psci::INVALID_PARAMETERS, |fid, c| {
                c.call3(fid, m, 0, 0)
            });
        }
        if let Some(m) = aff1 {
            expect_all(
                t,
                "affinity-info-level-1-no-such-cluster-invalid-parameters",
                &fids,
                psci::INVALID_PARAMETERS,
                |fid, c| c.call3(fid, m, 1, 0),
            );
        }
    }

    /// CPU_ON on vCPUs that are already on: each running secondary and the caller itself.
    fn already_on_checks(&mut self, t: &mut Checks) {
        let want = self.already_on();
        let fids = self.ids.cpu_on;
        let running: [bool; MAX_CPUS] = core::array::from_fn(|c| self.on[c] && !self.lost[c]);
        for c in (0..self.cpus.count()).filter(|&c| running[c]) {
            let mpidr = self.cpus.mpidr(c);
            let context = self.next_context(c);
            let who = if c == 0 { "self" } else { "running" };
            let mut accepted = false;
            expect_all(t, format_args!("cpu-on-{who}-cpu{c}-already-on"), fids.all(), want, |fid, conduit| {
                let got = conduit.call3(fid, mpidr, entry::secondary_entry(), context);
                accepted |= got == psci::SUCCESS as u64;
                got
            });
            // Cairn may have restarted it: its state is unknown from here on.
            self.lost[c] |= accepted && c != 0;
        }
    }

    /// CPU_ON with parameters PSCI must refuse, on stopped vCPUs.
    fn refusals(&mut self, t: &mut Checks) {
        let fids = self.ids.cpu_on;
        let entry = entry::secondary_entry();
        let (aff0, _) = self.nonexistent_affinities();
        if let Some(m) = aff0 {
            let context = self.next_context(0);
            expect_all(t, "cpu-on-no-such-cpu-invalid-parameters", fids.all(), psci::INVALID_PARAMETERS, |fid, c| {
                c.call3(fid, m, entry, context)
            });
        }
        let Some(i) = self.usable().find(|&i| !self.on[i]) else {
            t.note(format_args!("no stopped secondary vCPU: CPU_ON's refusals of a bad MPIDR or entry not checked"));
            return;
        };
        let mpidr = self.cpus.mpidr(i);
        let context = self.next_context(i);
        let bits_31_24 = [mpidr | psci::BAD_TARGET_BITS_31_24, entry, context];
        let name = format_args!("cpu-on-cpu{i}-mpidr-bit-24-invalid-parameters");
        self.expect_refused(t, i, name, fids.all(), psci::INVALID_PARAMETERS, bits_31_24);
        // Bits 63:40 reach CPU_ON only through an SMC64 ID.
        if fids.first() & guestkit::spec::smccc::CONVENTION_64 != 0 {
            let bits_63_40 = [mpidr | psci::BAD_TARGET_BITS_63_40, entry, context];
            let name = format_args!("cpu-on-cpu{i}-mpidr-bit-40-invalid-parameters");
            self.expect_refused(t, i, name, &[fids.first()], psci::INVALID_PARAMETERS, bits_63_40);
        }
        let want = self.invalid_address();
        for bad in self.ram.outside().into_iter().flatten() {
            let name = format_args!("cpu-on-cpu{i}-entry-{bad:#x}-outside-ram-refused");
            self.expect_refused(t, i, name, fids.all(), want, [mpidr, bad, context]);
        }
    }

    /// CPU_ON(`args`) through each of `fids` and both conduits must answer `want`. Once
    /// Cairn accepts one (SUCCESS), secondary `i` runs somewhere this guest cannot follow:
    /// it is lost, and no later check uses it.
    fn expect_refused(
        &mut self,
        t: &mut Checks,
        i: usize,
        name: impl Display,
        fids: &[u32],
        want: i64,
        args: [u64; 3],
    ) {
        if self.lost[i] {
            return;
        }
        let mut accepted = false;
        expect_all(t, name, fids, want, |fid, c| {
            let got = c.call3(fid, args[0], args[1], args[2]);
            accepted |= got == psci::SUCCESS as u64;
            got
        });
        self.lost[i] |= accepted;
    }

    /// Every usable secondary CPU_ONs one stopped target at once, the boot CPU too:
    /// exactly one may succeed, the rest must get ALREADY_ON (Cairn marks the target on
    /// under its lock at once, so never ON_PENDING).
    fn race(&mut self, t: &mut Checks) {
        const MIN_VCPUS: usize = 4;
        let usable = self.usable().filter(|&i| !self.on[i]).count();
        if usable + 1 < MIN_VCPUS {
            t.note(format_args!(
                "racing CPU_ONs skipped: {usable} usable secondary vCPUs, the race needs {MIN_VCPUS} vCPUs in all"
            ));
            return;
        }
        // The secondary stopped longest ago: under 0.1 nothing but time says it is off.
        let Some(target) = self.usable().find(|&i| !self.on[i]) else { return };
        let racers: [Option<usize>; MAX_CPUS] = {
            let mut it = self.usable().filter(|&i| i != target && !self.on[i]);
            core::array::from_fn(|_| it.next())
        };
        let racers = || racers.iter().flatten().copied();
        for r in racers() {
            if !self.start(t, r, self.ids.cpu_on.first(), Conduit::Hvc) {
                t.note(format_args!("racing CPU_ONs skipped: cpu{r} did not start"));
                return;
            }
        }
        if core::mem::take(&mut self.stopping[target]) {
            time::delay_us(RACE_SETTLE_US);
        }
        ORDER.set(target, self.next_seq() << ORDER_SEQ_SHIFT | ACTION_NONE);
        let race = self.next_seq();
        let target_mpidr = self.cpus.mpidr(target);
        let mut contexts = [0u64; MAX_CPUS];
        for (k, r) in racers().enumerate() {
            contexts[r] = self.next_context(target);
            RACE_TARGET.set(r, target_mpidr);
            RACE_CONTEXT.set(r, contexts[r]);
            let action = if k % 2 == 0 { ACTION_RACE_HVC } else { ACTION_RACE_SMC };
            ORDER.set(r, race << ORDER_SEQ_SHIFT | action);
        }
        let armed = time::wait_until(START_TIMEOUT_US, || racers().all(|r| ARMED.get(r) == race));
        contexts[0] = self.next_context(target);
        GO.set(race);
        let mine = Conduit::Hvc.call3(self.ids.cpu_on.first(), target_mpidr, entry::secondary_entry(), contexts[0]);
        let done = time::wait_until(START_TIMEOUT_US, || racers().all(|r| DONE.get(r) == race));
        let mut results = [None; MAX_CPUS];
        results[0] = Some(mine);
        for r in racers() {
            results[r] = Some(RESULT.get(r));
        }
        let wins = results.iter().flatten().filter(|&&x| x == psci::SUCCESS as u64).count();
        let losses = results.iter().flatten().filter(|&&x| x == self.already_on() as u64).count();
        let racing = results.iter().flatten().count();
        let mut detail = Text::new();
        for (c, r) in results.iter().enumerate() {
            if let Some(r) = r {
                let _ = write!(detail, "cpu{c}: {}; ", Code(*r));
            }
        }
        t.check(
            format_args!("cpu-on-race-{racing}-callers-one-success-rest-already-on"),
            armed && done && wins == 1 && losses == racing - 1,
            format_args!("all armed: {armed}, all done: {done}; {detail}expected one SUCCESS, the rest {}", {
                Code::of(self.already_on())
            }),
        );
        if wins == 0 {
            self.lost[target] = true;
        } else {
            self.on[target] = true;
            let winner = results.iter().position(|r| *r == Some(psci::SUCCESS as u64)).unwrap_or(0);
            let reported = time::wait_until(START_TIMEOUT_US, || REPORT.get(target) == contexts[winner]);
            t.check(
                "cpu-on-race-target-runs-with-winners-context",
                reported,
                format_args!("cpu{target} reported context {:#x}; cpu{winner}'s was {:#x}", REPORT.get(target), {
                    contexts[winner]
                }),
            );
            if reported {
                self.stop(t, target, Conduit::Smc);
            } else {
                self.lost[target] = true;
            }
        }
        for r in racers() {
            self.stop(t, r, Conduit::Hvc);
        }
    }

    /// Every check of this module, leaving every secondary off.
    pub fn run(&mut self, t: &mut Checks) {
        let count = self.cpus.count();
        let mut mpidrs = Text::new();
        for c in 0..count {
            let _ = write!(mpidrs, " cpu{c}={:#x}", self.cpus.mpidr(c));
        }
        t.note(format_args!("{count} vCPUs (MPIDR affinity):{mpidrs}"));
        // Round 1: SMC64 CPU_ON (the device tree's under 0.1) over HVC.
        for i in self.cpus.secondaries() {
            self.start(t, i, self.ids.cpu_on.first(), Conduit::Hvc);
        }
        self.already_on_checks(t);
        if self.version >= Version::V0_2 {
            self.affinity_snapshot(t, "all-started");
        }
        for i in self.usable().filter(|&i| self.on[i]).collect_array().into_iter().flatten() {
            self.stop(t, i, Conduit::Hvc);
        }
        if self.version >= Version::V0_2 {
            self.affinity_snapshot(t, "all-stopped");
            self.affinity_refusals(t);
        }
        self.refusals(t);
        // Round 2: SMC32 CPU_ON (with garbage in the upper halves) over SMC.
        for i in self.usable().filter(|&i| !self.on[i]).collect_array().into_iter().flatten() {
            if self.start(t, i, self.ids.cpu_on.last(), Conduit::Smc) {
                self.stop(t, i, Conduit::Smc);
            }
        }
        self.race(t);
    }

    /// Starts one secondary and leaves it running, so SYSTEM_OFF has another vCPU to stop.
    pub fn leave_one_running(&mut self, t: &mut Checks) {
        let stopped = self.usable().find(|&i| !self.on[i]);
        if let Some(i) = stopped {
            self.start(t, i, self.ids.cpu_on.first(), Conduit::Hvc);
        }
    }
}

/// Up to MAX_CPUS items of an iterator in a fixed array, for lists that must not borrow.
trait CollectArray<T> {
    fn collect_array(self) -> [Option<T>; MAX_CPUS];
}

impl<T, I: Iterator<Item = T>> CollectArray<T> for I {
    fn collect_array(mut self) -> [Option<T>; MAX_CPUS] {
        core::array::from_fn(|_| self.next())
    }
}
