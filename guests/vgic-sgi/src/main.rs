//! Test guest: SGIs between vCPUs.
//!
//! vCPU 0 starts every other vCPU the device tree lists (PSCI CPU_ON); each brings up its
//! GIC CPU interface, enables the SGIs, unmasks IRQs and reports ready. Then vCPU 0
//! - sends SGIs to each other vCPU in turn, one at a time: the target takes each exactly
//!   once and nobody else takes any,
//! - sends SGIs to all but itself: every other vCPU takes each once, vCPU 0 none,
//! - has each other vCPU wait in WFI with PSTATE.I set, and sends it an SGI: WFI must
//!   wake (it does for masked interrupts too) with ISR_EL1.I set and the handler not yet
//!   run; once the target unmasks, it takes the SGI.
//!
//! Each vCPU counts what it takes in its own slots; vCPU 0 reads them (see kit::shared).
#![no_std]
#![no_main]

use guestkit::gic::{self, SgiTarget};
use guestkit::shared::{PerCpu, MAX_CPUS};
use guestkit::smp::{self, Cpus};
use guestkit::{cpu, guest_main, irq, time, Checks};

const NAME: &str = "vgic-sgi";
/// SGIs there are (INTIDs 0-15).
const SGI_COUNT: usize = 16;
const SGI_UNICAST: u32 = 1;
const SGI_BROADCAST: u32 = 2;
const SGI_WAKE: u32 = 3;
const SGIS_USED: [u32; 3] = [SGI_UNICAST, SGI_BROADCAST, SGI_WAKE];
/// SGIs each target gets, one at a time, in the unicast and broadcast checks.
const ROUNDS: u32 = 4;

/// How long a vCPU may take to start and report, or an SGI to be taken.
const START_TIMEOUT_US: u64 = 2_000_000;
const DELIVERY_TIMEOUT_US: u64 = 1_000_000;
/// How long to keep watching for a late or duplicate delivery.
const SETTLE_US: u64 = 20_000;
/// How long vCPU 0 waits after a target says it is about to WFI before sending the SGI,
/// so the target is asleep by then.
const WFI_ENTRY_US: u64 = 50_000;

/// A vCPU's progress, in its own STATE slot.
const STATE_OFF: u32 = 0;
const STATE_READY: u32 = 1;
const STATE_GIC_FAILED: u32 = 2;
const STATE_IN_WFI: u32 = 3;
const STATE_WOKE: u32 = 4;
/// vCPU 0's request to a target, in the target's COMMAND slot.
const COMMAND_NONE: u32 = 0;
const COMMAND_WFI_MASKED: u32 = 1;

/// Written by each vCPU for itself: SGIs taken per INTID, other INTIDs taken.
static TAKEN: [PerCpu<u32>; SGI_COUNT] = [const { PerCpu::new(0) }; SGI_COUNT];
static STRAY: PerCpu<u32> = PerCpu::new(0);
static STATE: PerCpu<u32> = PerCpu::new(STATE_OFF);
/// The masked-WFI report: WFI returns before ISR_EL1.I read 1, and wake SGIs taken while
/// PSTATE.I was set (must be 0).
static WFI_RETURNS: PerCpu<u32> = PerCpu::new(0);
static TAKEN_WHILE_MASKED: PerCpu<u32> = PerCpu::new(0);
/// Written by vCPU 0 for each target.
static COMMAND: PerCpu<u32> = PerCpu::new(COMMAND_NONE);

fn on_irq(intid: u32) {
    match TAKEN.get(intid as usize) {
        Some(count) => count.set_mine(count.mine() + 1),
        None => STRAY.set_mine(STRAY.mine() + 1),
    }
}

/// Brings up this vCPU's GIC side and takes the test SGIs from now on.
fn enable_sgis() -> Result<(), gic::GicError> {
    gic::init_cpu()?;
    irq::set_handler(on_irq);
    SGIS_USED.iter().for_each(|&sgi| gic::enable(sgi));
    cpu::unmask_irqs();
    Ok(())
}

/// What every vCPU but 0 runs.
fn secondary(_index: usize) {
    if enable_sgis().is_err() {
        STATE.set_mine(STATE_GIC_FAILED);
        return;
    }
    STATE.set_mine(STATE_READY);
    while COMMAND.mine() != COMMAND_WFI_MASKED {
        core::hint::spin_loop();
    }
    wait_in_masked_wfi();
    loop {
        core::hint::spin_loop();
    }
}

/// Sleeps in WFI with PSTATE.I set until ISR_EL1.I shows an IRQ pending, reports, then
/// unmasks to take it.
fn wait_in_masked_wfi() {
    cpu::mask_irqs();
    let before = TAKEN[SGI_WAKE as usize].mine();
    STATE.set_mine(STATE_IN_WFI);
    let mut returns = 0;
    while !cpu::irq_pending() {
        cpu::wfi();
        returns += 1;
    }
    WFI_RETURNS.set_mine(returns);
    TAKEN_WHILE_MASKED.set_mine(TAKEN[SGI_WAKE as usize].mine() - before);
    STATE.set_mine(STATE_WOKE);
    cpu::unmask_irqs();
}

/// SGI `sgi` taken so far by each vCPU.
fn taken(sgi: u32) -> [u32; MAX_CPUS] {
    core::array::from_fn(|cpu| TAKEN[sgi as usize].get(cpu))
}

/// Starts every secondary; returns which reported ready.
fn start_secondaries(t: &mut Checks, cpus: &Cpus) -> [bool; MAX_CPUS] {
    let mut ready = [false; MAX_CPUS];
    for i in cpus.secondaries() {
        let status = smp::start(i, cpus.mpidr(i), secondary);
        t.check(
            format_args!("cpu{i}-psci-cpu-on"),
            status == 0,
            format_args!("CPU_ON(MPIDR {:#x}) returned {status}", cpus.mpidr(i)),
        );
        if status != 0 {
            continue;
        }
        time::wait_until(START_TIMEOUT_US, || STATE.get(i) != STATE_OFF);
        let state = STATE.get(i);
        ready[i] = state == STATE_READY;
        let why = if state == STATE_OFF { "never reported in" } else { "its GIC CPU interface failed to come up" };
        t.check(format_args!("cpu{i}-gic-ready"), ready[i], format_args!("cpu{i} {why}"));
    }
    ready
}

/// SGIs to `target`, one at a time: `target` takes each, nobody else any.
fn unicast(t: &mut Checks, target: usize) {
    let before = taken(SGI_UNICAST);
    for round in 1..=ROUNDS {
        gic::send_sgi(SGI_UNICAST, SgiTarget::Cpu(target));
        if !time::wait_until(DELIVERY_TIMEOUT_US, || TAKEN[SGI_UNICAST as usize].get(target) >= before[target] + round)
        {
            break;
        }
    }
    time::delay_us(SETTLE_US);
    let after = taken(SGI_UNICAST);
    let expected: [u32; MAX_CPUS] = core::array::from_fn(|cpu| before[cpu] + if cpu == target { ROUNDS } else { 0 });
    t.check(
        format_args!("sgi-to-cpu{target}-taken-once-each"),
        after == expected,
        format_args!("taken per vCPU {after:?}, expected {expected:?} after {ROUNDS} SGIs"),
    );
}

/// SGIs to all but self: every ready secondary takes each, vCPU 0 none.
fn broadcast(t: &mut Checks, ready: &[bool; MAX_CPUS]) {
    let before = taken(SGI_BROADCAST);
    for round in 1..=ROUNDS {
        gic::send_sgi(SGI_BROADCAST, SgiTarget::AllButSelf);
        let all_took =
            || (0..MAX_CPUS).filter(|&c| ready[c]).all(|c| TAKEN[SGI_BROADCAST as usize].get(c) >= before[c] + round);
        if !time::wait_until(DELIVERY_TIMEOUT_US, all_took) {
            break;
        }
    }
    time::delay_us(SETTLE_US);
    let after = taken(SGI_BROADCAST);
    let expected: [u32; MAX_CPUS] = core::array::from_fn(|cpu| before[cpu] + if ready[cpu] { ROUNDS } else { 0 });
    t.check(
        "sgi-all-but-self-taken-once-each",
        after == expected,
        format_args!("taken per vCPU {after:?}, expected {expected:?} after {ROUNDS} SGIs"),
    );
}

/// `target` sleeps in WFI with IRQs masked; an SGI must wake it.
fn masked_wfi_wakes(t: &mut Checks, target: usize) {
    let before = TAKEN[SGI_WAKE as usize].get(target);
    COMMAND.set(target, COMMAND_WFI_MASKED);
    let asleep = time::wait_until(START_TIMEOUT_US, || STATE.get(target) == STATE_IN_WFI);
    time::delay_us(WFI_ENTRY_US);
    gic::send_sgi(SGI_WAKE, SgiTarget::Cpu(target));
    let woke = time::wait_until(DELIVERY_TIMEOUT_US, || STATE.get(target) == STATE_WOKE);
    let returns = WFI_RETURNS.get(target);
    let while_masked = TAKEN_WHILE_MASKED.get(target);
    t.check(
        format_args!("cpu{target}-masked-wfi-wakes-on-sgi"),
        asleep && woke && returns >= 1 && while_masked == 0,
        format_args!(
            "reached WFI: {asleep}, woke with ISR_EL1.I set: {woke}, WFI returns: {returns} (0: the SGI \
             arrived before WFI), taken while masked: {while_masked}"
        ),
    );
    let took = time::wait_until(DELIVERY_TIMEOUT_US, || TAKEN[SGI_WAKE as usize].get(target) == before + 1);
    time::delay_us(SETTLE_US);
    t.check(
        format_args!("cpu{target}-wake-sgi-taken-after-unmask"),
        took && TAKEN[SGI_WAKE as usize].get(target) == before + 1,
        format_args!("taken {} times", TAKEN[SGI_WAKE as usize].get(target) - before),
    );
}

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    let gic = gic::init(dtb);
    let Some(gic) = t.check_ok("gic-init", gic) else { t.finish_and_power_off() };
    let expected_rev = match gic.version {
        gic::Version::V2 => 2..=2,
        gic::Version::V3 => 3..=4,
    };
    let rev = gic::arch_rev();
    t.check("gic-pidr2-arch-rev", expected_rev.contains(&rev), format_args!("ArchRev {rev} for {}", gic.version));
    if t.check_ok("cpu0-gic-ready", enable_sgis()).is_none() {
        t.finish_and_power_off();
    }
    let cpus = smp::cpus(dtb);
    t.note(format_args!("{gic}, {} vCPUs ({} beyond the kit's {MAX_CPUS} ignored)", cpus.count(), cpus.ignored));
    t.check("has-secondary-vcpus", cpus.count() >= 2, format_args!("the device tree lists {} CPU(s)", cpus.count()));

    let ready = start_secondaries(&mut t, &cpus);
    let targets = || (1..MAX_CPUS).filter(|&c| ready[c]);
    for target in targets() {
        unicast(&mut t, target);
    }
    if targets().next().is_some() {
        broadcast(&mut t, &ready);
    }
    for target in targets() {
        masked_wfi_wakes(&mut t, target);
    }

    let stray: [u32; MAX_CPUS] = core::array::from_fn(|cpu| STRAY.get(cpu));
    t.check("no-stray-interrupts", stray.iter().all(|&n| n == 0), format_args!("non-SGI IRQs per vCPU {stray:?}"));
    t.finish_and_power_off();
}

guest_main!(run);
