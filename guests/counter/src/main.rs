//! Test guest: counts, for Cairn's `pause`, `save` and `restore`.
//!
//! Every vCPU counts ticks of its EL1 virtual timer, one each [`TICK_US`] of virtual time,
//! sleeping in WFI in between. Each keeps its count three ways: in RAM, in FP/SIMD
//! register V8 (both halves), and, where the CPU has SVE, in every 64-bit lane of Z9 (so
//! a restore that brought back only the low 128 bits shows). At every tick a vCPU checks
//! that the registers still hold the count before it counts on: a snapshot or a pause
//! that lost FP or vector state prints `counter: vcpuN lost ...`.
//!
//! vCPU 0 prints `count N (vcpu1 M ...)` at every tick; typing `q` powers the VM off
//! (SYSTEM_OFF). Timer deadlines follow one another in virtual time, so a paused VM, whose
//! virtual counter stands still, goes on counting where it was.
#![no_std]
#![no_main]

use guestkit::gic::{self, DEFAULT_PRIORITY};
use guestkit::shared::PerCpu;
use guestkit::shared::MAX_CPUS;
use guestkit::smp;
use guestkit::{cpu, guest_main, irq, println, smccc, time, timer};

/// One tick, in microseconds of virtual time.
const TICK_US: u64 = 100_000;
/// How long a secondary may take to come up.
const START_TIMEOUT_US: u64 = 1_000_000;
/// The key that powers the VM off.
const QUIT: u8 = b'q';

/// Each vCPU's count, in RAM.
static COUNT: PerCpu<u64> = PerCpu::new(0);
/// Each vCPU's next timer deadline (virtual counter).
static DEADLINE: PerCpu<u64> = PerCpu::new(0);
/// Timer interrupts each vCPU has taken and not yet counted.
static TICKS: PerCpu<u64> = PerCpu::new(0);
/// Set by a vCPU once it counts.
static UP: PerCpu<bool> = PerCpu::new(false);
/// A vCPU's lost registers, found at a tick: how many times, and what V8 and Z9 held
/// the latest time.
static LOST: PerCpu<u64> = PerCpu::new(0);
static LOST_V8: PerCpu<u64> = PerCpu::new(0);
static LOST_Z9: PerCpu<u64> = PerCpu::new(0);

static TIMER_INTID: guestkit::shared::Slot<u32> = guestkit::shared::Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);

/// CPACR_EL1.FPEN [21:20] and ZEN [17:16] = 0b11: FP/SIMD and SVE at EL1 without traps
/// (Arm ARM D24.2.33).
const CPACR_FPEN_ZEN: u64 = (0b11 << 20) | (0b11 << 16);
/// ID_AA64PFR0_EL1.SVE [35:32].
const PFR0_SVE_SHIFT: u64 = 32;
/// ZCR_EL1.LEN [3:0] all ones: the longest vector EL2 allows.
const ZCR_LEN_MAX: u64 = 0xF;

fn has_sve() -> bool {
    let pfr0: u64;
    // SAFETY: reading an ID register.
    unsafe { core::arch::asm!("mrs {}, ID_AA64PFR0_EL1", out(reg) pfr0) };
    (pfr0 >> PFR0_SVE_SHIFT) & 0xF != 0
}

/// Lets this vCPU use FP/SIMD (and SVE, at its longest vectors).
fn enable_fp() {
    // SAFETY: CPACR_EL1 only controls traps of this vCPU's own FP and vector instructions.
    unsafe {
        core::arch::asm!("mrs {t}, CPACR_EL1", "orr {t}, {t}, {bits}", "msr CPACR_EL1, {t}", "isb", t = out(reg) _, bits = in(reg) CPACR_FPEN_ZEN)
    };
    if has_sve() {
        // SAFETY: SVE is implemented and enabled above; ZCR_EL1 (S3_0_C1_C2_0) sets its length.
        unsafe { core::arch::asm!("msr S3_0_C1_C2_0, {}", "isb", in(reg) ZCR_LEN_MAX) };
    }
}

/// Puts `count` in both halves of V8 and every lane of Z9. The kit is soft-float: nothing
/// else of the guest touches these registers.
fn keep_in_registers(count: u64) {
    // SAFETY: writes only V8, which no other code of this guest uses.
    unsafe {
        core::arch::asm!(".arch_extension fp", ".arch_extension simd", "fmov d8, {c}", "mov v8.d[1], {c}", c = in(reg) count)
    };
    if has_sve() {
        // SAFETY: writes only Z9 (whose low half V9 no other code uses); SVE is on.
        unsafe { core::arch::asm!(".arch_extension sve", "dup z9.d, {}", in(reg) count) };
    }
}

/// What the registers hold: V8's two halves if they agree (else `u64::MAX`), and Z9's last
/// lane (V8's value without SVE).
fn registers() -> (u64, u64) {
    let (low, high): (u64, u64);
    // SAFETY: reads V8.
    unsafe {
        core::arch::asm!(".arch_extension fp", ".arch_extension simd", "fmov {l}, d8", "mov {h}, v8.d[1]", l = out(reg) low, h = out(reg) high)
    };
    let v8 = if low == high { low } else { u64::MAX };
    if !has_sve() {
        return (v8, v8);
    }
    let last: u64;
    // SAFETY: reads Z9 through a predicate it sets up itself (P1, unused elsewhere).
    unsafe { core::arch::asm!(".arch_extension sve", "ptrue p1.d", "lastb {}, p1, z9.d", out(reg) last) };
    (v8, last)
}

fn on_irq(intid: u32) {
    if intid == TIMER_INTID.get() {
        let next = DEADLINE.mine() + time::ticks(TICK_US);
        DEADLINE.set_mine(next);
        timer::arm_at(next);
        TICKS.set_mine(TICKS.mine() + 1);
    }
}

/// Sets up this vCPU's timer and counts forever; vCPU 0 also prints and reads keys.
fn count(index: usize) {
    enable_fp();
    keep_in_registers(0);
    if gic::init_cpu().is_err() {
        println!("counter: vcpu{index}: no GIC");
        return;
    }
    irq::set_handler(on_irq);
    gic::set_priority(TIMER_INTID.get(), DEFAULT_PRIORITY);
    gic::enable(TIMER_INTID.get());
    let first = time::now() + time::ticks(TICK_US);
    DEADLINE.set_mine(first);
    timer::arm_at(first);
    UP.set_mine(true);
    cpu::unmask_irqs();
    loop {
        cpu::wfi();
        if index == 0 && guestkit::console::try_read_byte() == Some(QUIT) {
            println!("counter: quit");
            smccc::system_off();
        }
        while TICKS.mine() > 0 {
            cpu::mask_irqs();
            TICKS.set_mine(TICKS.mine() - 1);
            cpu::unmask_irqs();
            tick(index);
        }
    }
}

/// One tick: the registers must hold the count so far; then it goes up by one.
fn tick(index: usize) {
    let n = COUNT.mine();
    let (v8, z9) = registers();
    if (v8, z9) != (n, n) {
        LOST_V8.set_mine(v8);
        LOST_Z9.set_mine(z9);
        LOST.set_mine(LOST.mine() + 1);
        keep_in_registers(n);
    }
    let n = n + 1;
    COUNT.set_mine(n);
    keep_in_registers(n);
    if index == 0 {
        report(n);
    }
}

fn report(n: u64) {
    for cpu in 0..MAX_CPUS {
        let lost = LOST.get(cpu);
        if lost > 0 {
            let (v8, z9) = (LOST_V8.get(cpu), LOST_Z9.get(cpu));
            println!("counter: vcpu{cpu} lost its registers {lost} times, the latest V8 {v8:#x} and Z9 {z9:#x}");
        }
    }
    let mut line = guestkit::text::Text::new();
    for cpu in (1..MAX_CPUS).filter(|&c| UP.get(c)) {
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" vcpu{cpu} {}", COUNT.get(cpu)));
    }
    println!("count {n} ({}{})", if has_sve() { "SVE" } else { "FP" }, line.as_str());
}

fn run(dtb: usize) {
    if gic::init(dtb).is_err() {
        println!("counter: no GIC in the device tree");
        smccc::system_off();
    }
    if let Some(intid) = timer::virtual_timer_intid(dtb) {
        TIMER_INTID.set(intid);
    }
    let cpus = smp::cpus(dtb);
    for i in cpus.secondaries() {
        if smp::start(i, cpus.mpidr(i), count) == 0 {
            time::wait_until(START_TIMEOUT_US, || UP.get(i));
        }
    }
    println!("counter: {} vCPUs count every {} ms; q powers off", cpus.count(), TICK_US / 1000);
    count(0);
    smccc::system_off();
}

guest_main!(run);
