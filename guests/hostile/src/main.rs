//! Test guest: a guest that misbehaves on purpose, to show Cairn answers every bad access
//! with what the architecture lets a guest expect and keeps running. From the boot vCPU,
//! with the others left off:
//! - loads, stores and instruction fetches outside guest memory come back as synchronous
//!   external aborts (the load, store or fetch is refused; nothing else happens);
//! - accesses to the emulated GIC that leave no syndrome to emulate them from (LDP, STP, a
//!   post-indexed load) abort too, without writing any register;
//! - every offset of the distributor and of every redistributor frame (GICv3), read at
//!   every width and then written with all ones and with zeros, either completes or
//!   aborts, and the identification registers read the same afterwards;
//! - SGIs sent with every target field set (GICD_SGIR, ICC_SGI1R_EL1) start no vCPU that
//!   is off;
//! - after all of it, Cairn still answers PSCI_VERSION; once the guest sets its GIC up
//!   again, an SGI to itself and its virtual timer are each taken exactly once; and
//!   SYSTEM_OFF ends the machine.
//!
//! Not here: data cache maintenance by VA outside memory, which Cairn lets complete (see
//! `Exit::CacheMaintenance`). QEMU's TCG never faults on it, so no guest under QEMU can
//! tell; the decoding is unit-tested instead.
#![no_std]
#![no_main]

use core::arch::asm;

use guestkit::gic::{self, Frame, Gic, SgiTarget, Version};
use guestkit::shared::Slot;
use guestkit::spec::psci;
use guestkit::{catch_exception, catch_fetch, cpu, guest_main, irq, smccc, smp, time, timer, Caught, Checks};

const NAME: &str = "hostile";
/// Unmapped in stage 2 on every machine Cairn runs on (128 GiB: past QEMU virt's and the
/// Pi 4's RAM and devices, inside their IPA space).
const UNMAPPED_IPA: usize = 0x20_0000_0000;
/// ESR_EL1.EC of an instruction and a data abort taken at EL1 (Arm ARM D24.2.40).
const EC_INSTRUCTION_ABORT_SAME_EL: u64 = 0x21;
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
/// FSC: synchronous external abort, not on a translation table walk.
const FSC_EXTERNAL_ABORT: u64 = 0x10;
/// A value no register of this guest holds by chance.
const CANARY: u64 = 0xC0FF_EE00_DEAD_BEEF;
/// The distributor's identification registers: GICD_TYPER and GICD_IIDR sit at the same
/// offsets in GICv2 (IHI 0048B §4.1.2) and GICv3 (IHI 0069H §12.8).
const GICD_TYPER: usize = 0x0004;
const GICD_IIDR: usize = 0x0008;
/// GICv3: each CPU's redistributor is two 64 KiB frames, RD_base and SGI_base
/// (IHI 0069H §12.10).
const GICR_STRIDE: usize = 0x2_0000;
/// GICD_SGIR (GICv2, IHI 0048B §4.3.15), write-only.
const GICD_SGIR: usize = 0x0F00;
/// ICC_SGI1R_EL1 with every field set: IRM = 1 (every PE but self), all of Aff3..1, RS and
/// the target list, and INTID 15 (IHI 0069H §12.2.23).
const SGI1R_EVERY_FIELD: u64 = u64::MAX;
/// ICC_SGI1R_EL1 with IRM = 0 and a full target list in affinity 0.0.0: every vCPU that
/// exists among Aff0 0-15.
const SGI1R_EVERY_LISTED_CPU: u64 = 0xFFFF;

/// PSCI 1.1, the version Cairn offers by default (`major << 16 | minor`, DEN0022 §5.1.1).
const PSCI_1_1: u64 = 0x1_0001;
/// Clear-pending registers of the private interrupts: GICD_ICPENDR0 (GICv2) and
/// GICR_ICPENDR0 in SGI_base (GICv3) at the same offset, and GICv2's GICD_CPENDSGIR0-3,
/// one byte of source CPUs per SGI (IHI 0048B §4.3.7, §4.3.13; IHI 0069H §12.11.17).
const ICPENDR0: usize = 0x0280;
const GICD_CPENDSGIR: [usize; 4] = [0x0F10, 0x0F14, 0x0F18, 0x0F1C];
/// GICv3: SGI_base, the second frame of a redistributor.
const GICR_SGI_BASE: usize = 0x1_0000;
/// The SGI the recovery check sends itself, and how long it waits for each interrupt.
const RECOVERY_SGI: u32 = 1;
const RECOVERY_TIMEOUT_US: u64 = 1_000_000;
const TIMER_DELAY_US: u64 = 1_000;
/// How long to keep watching for a duplicate delivery.
const SETTLE_US: u64 = 20_000;
/// Access widths, in bytes.
const WIDTHS: [usize; 4] = [1, 2, 4, 8];

fn external_abort(caught: &Caught, ec: u64) -> bool {
    caught.class() == ec && caught.fault_status() == FSC_EXTERNAL_ABORT
}

fn load(addr: usize, width: usize) -> Option<Caught> {
    catch_exception(|| {
        // SAFETY: a single load from a device register or an unmapped address; it either
        // completes (reads of the GIC have no side effects) or aborts and is skipped.
        unsafe {
            match width {
                1 => asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) _),
                2 => asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = out(reg) _),
                4 => asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) _),
                _ => asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) _),
            }
        }
    })
}

fn store(addr: usize, width: usize, value: u64) -> Option<Caught> {
    catch_exception(|| {
        // SAFETY: a single store to the emulated GIC or an unmapped address; this guest's
        // own memory is never the target.
        unsafe {
            match width {
                1 => asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value),
                2 => asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value),
                4 => asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value),
                _ => asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value),
            }
        }
    })
}

/// How the accesses of a sweep ended.
#[derive(Default)]
struct Tally {
    completed: u32,
    aborted: u32,
    /// The first access that ended any other way: its address, width and exception.
    wrong: Option<(usize, usize, Caught)>,
}

impl Tally {
    fn record(&mut self, addr: usize, width: usize, outcome: Option<Caught>) {
        match outcome {
            None => self.completed += 1,
            Some(c) if external_abort(&c, EC_DATA_ABORT_SAME_EL) => self.aborted += 1,
            Some(c) => {
                self.wrong.get_or_insert((addr, width, c));
            }
        }
    }

    fn check(&self, t: &mut Checks, name: &str) {
        t.check(
            name,
            self.wrong.is_none() && self.completed > 0,
            format_args!(
                "{} completed, {} aborted, first other outcome {:x?}",
                self.completed, self.aborted, self.wrong
            ),
        );
        t.note(format_args!("{name}: {} accesses completed, {} aborted", self.completed, self.aborted));
    }
}

fn outside_memory(t: &mut Checks) {
    let load = load(UNMAPPED_IPA, 8);
    t.check(
        "load-outside-memory-aborts",
        load.is_some_and(|c| external_abort(&c, EC_DATA_ABORT_SAME_EL) && c.far == UNMAPPED_IPA as u64),
        format_args!("caught {load:x?}"),
    );
    let store = store(UNMAPPED_IPA, 4, CANARY);
    t.check(
        "store-outside-memory-aborts",
        store.is_some_and(|c| external_abort(&c, EC_DATA_ABORT_SAME_EL)),
        format_args!("caught {store:x?}"),
    );
    let fetch = catch_fetch(UNMAPPED_IPA);
    t.check(
        "fetch-outside-memory-aborts",
        fetch.is_some_and(|c| external_abort(&c, EC_INSTRUCTION_ABORT_SAME_EL) && c.far == UNMAPPED_IPA as u64),
        format_args!("caught {fetch:x?}"),
    );
}

/// LDP, STP and a post-indexed load of the distributor: the abort must leave every
/// register the instruction names as it was.
fn no_syndrome(t: &mut Checks, gicd: usize) {
    let (mut first, mut second) = (CANARY, CANARY);
    let ldp = catch_exception(|| {
        // SAFETY: an LDP of two distributor registers, which Cairn cannot emulate.
        unsafe { asm!("ldp {a:w}, {b:w}, [{p}]", p = in(reg) gicd, a = inout(reg) first, b = inout(reg) second) }
    });
    t.check(
        "ldp-of-the-gic-aborts-and-writes-nothing",
        ldp.is_some_and(|c| external_abort(&c, EC_DATA_ABORT_SAME_EL)) && first == CANARY && second == CANARY,
        format_args!("caught {ldp:x?}, registers {first:#x} {second:#x}"),
    );
    let stp = catch_exception(|| {
        // SAFETY: an STP of zeros to two distributor registers, which Cairn cannot emulate.
        unsafe { asm!("stp xzr, xzr, [{p}]", p = in(reg) gicd) }
    });
    t.check(
        "stp-to-the-gic-aborts",
        stp.is_some_and(|c| external_abort(&c, EC_DATA_ABORT_SAME_EL)),
        format_args!("caught {stp:x?}"),
    );
    let mut base = gicd + GICD_TYPER;
    let mut value = CANARY;
    let post_indexed = catch_exception(|| {
        // SAFETY: a post-indexed load of GICD_TYPER; the writeback leaves no syndrome.
        unsafe { asm!("ldr {v:w}, [{p}], #4", p = inout(reg) base, v = inout(reg) value) }
    });
    t.check(
        "post-indexed-load-of-the-gic-aborts-without-writeback",
        post_indexed.is_some_and(|c| external_abort(&c, EC_DATA_ABORT_SAME_EL))
            && base == gicd + GICD_TYPER
            && value == CANARY,
        format_args!("caught {post_indexed:x?}, base {base:#x}, value {value:#x}"),
    );
    let fetch = catch_fetch(gicd);
    t.check(
        "fetch-from-the-gic-aborts",
        fetch.is_some_and(|c| external_abort(&c, EC_INSTRUCTION_ABORT_SAME_EL)),
        format_args!("caught {fetch:x?}"),
    );
}

/// Every offset of `frame`, at every width, read; then written with all ones and zeros.
fn sweep(frame: Frame, widths: &[usize]) -> (Tally, Tally) {
    let (mut reads, mut writes) = (Tally::default(), Tally::default());
    for &width in widths {
        for addr in (frame.base..frame.base + frame.size).step_by(width) {
            reads.record(addr, width, load(addr, width));
        }
    }
    for &width in widths {
        for addr in (frame.base..frame.base + frame.size).step_by(width) {
            writes.record(addr, width, store(addr, width, u64::MAX));
            writes.record(addr, width, store(addr, width, 0));
        }
    }
    (reads, writes)
}

/// The redistributors of every vCPU, as one frame (GICv3).
fn redistributors(gic: &Gic, cpus: usize) -> Frame {
    let region = gic.redistributors[0];
    Frame { base: region.base, size: region.size.min(cpus * GICR_STRIDE) }
}

fn read32(addr: usize) -> u32 {
    // SAFETY: an identification register of the distributor: read-only, no side effects.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn gic_sweeps(t: &mut Checks, gic: &Gic, cpus: usize) {
    let gicd = gic.distributor.base;
    let identify = || [read32(gicd + GICD_TYPER), read32(gicd + GICD_IIDR), gic::arch_rev()];
    let identity = identify();
    let (reads, writes) = sweep(gic.distributor, &WIDTHS);
    reads.check(t, "every-distributor-read-completes-or-aborts");
    writes.check(t, "every-distributor-write-completes-or-aborts");
    if gic.version == Version::V3 {
        let (reads, writes) = sweep(redistributors(gic, cpus), &WIDTHS[2..]);
        reads.check(t, "every-redistributor-read-completes-or-aborts");
        writes.check(t, "every-redistributor-write-completes-or-aborts");
    }
    let after = identify();
    t.check(
        "gic-identification-unchanged-by-the-writes",
        after == identity,
        format_args!("TYPER, IIDR, ArchRev {identity:x?} became {after:x?}"),
    );
}

fn hostile_sgis(gic: &Gic) {
    match gic.version {
        Version::V2 => {
            // GICD_SGIR with TargetListFilter 0b11 (reserved) and every other bit set, then
            // with filter 0b01 (every CPU but self).
            for value in [u32::MAX, 0x0100_000F] {
                store(gic.distributor.base + GICD_SGIR, 4, value.into());
            }
        }
        Version::V3 => {
            for value in [SGI1R_EVERY_FIELD, SGI1R_EVERY_LISTED_CPU] {
                // SAFETY: ICC_SGI1R_EL1 only generates SGIs.
                unsafe { asm!("msr S3_0_C12_C11_5, {}", in(reg) value) };
            }
        }
    }
}

fn still_served(t: &mut Checks, cpus: &smp::Cpus) {
    for index in cpus.secondaries() {
        let state = smccc::hvc0(psci::AFFINITY_INFO_64.into(), cpus.mpidr(index), 0, 0) as i64;
        t.check(
            format_args!("cpu{index}-still-off-after-hostile-sgis"),
            state == psci::AFFINITY_OFF,
            format_args!("AFFINITY_INFO {state}"),
        );
    }
    t.check_eq("psci-version-still-answered", smccc::hvc0(psci::PSCI_VERSION.into(), 0, 0, 0), PSCI_1_1);
}

/// The virtual timer's INTID, from the device tree; set before IRQs are unmasked.
static TIMER_INTID: Slot<u32> = Slot::new(timer::DEFAULT_VIRTUAL_TIMER_INTID);
/// What the handler took: the recovery SGI, the timer, anything else.
static TAKEN_SGI: Slot<u32> = Slot::new(0);
static TAKEN_TIMER: Slot<u32> = Slot::new(0);
static TAKEN_OTHER: Slot<u32> = Slot::new(0);

fn on_irq(intid: u32) {
    let count = match intid {
        RECOVERY_SGI => &TAKEN_SGI,
        _ if intid == TIMER_INTID.get() => {
            timer::stop();
            &TAKEN_TIMER
        }
        _ => &TAKEN_OTHER,
    };
    count.set(count.get() + 1);
}

/// Clears whatever the sweeps left pending among this CPU's private interrupts (SGIs
/// pending from every source, on GICv2).
fn clear_private_pending(gic: &Gic) {
    match gic.version {
        Version::V2 => {
            let gicd = gic.distributor.base;
            for offset in GICD_CPENDSGIR.into_iter().chain([ICPENDR0]) {
                store(gicd + offset, 4, u32::MAX.into());
            }
        }
        Version::V3 => {
            store(gic.redistributors[0].base + GICR_SGI_BASE + ICPENDR0, 4, u32::MAX.into());
        }
    }
}

/// After the sweeps and the hostile SGIs, the guest sets its GIC up again as at boot: the
/// vGIC must deliver as if nothing had happened.
fn recovers(t: &mut Checks, dtb: usize) {
    let gic = gic::init(dtb).and_then(|gic| gic::init_cpu().map(|()| gic));
    let Some(gic) = t.check_ok("gic-set-up-again-after-the-sweeps", gic) else { return };
    clear_private_pending(&gic);
    TIMER_INTID.set(timer::virtual_timer_intid(dtb).unwrap_or(timer::DEFAULT_VIRTUAL_TIMER_INTID));
    irq::set_handler(on_irq);
    gic::enable(RECOVERY_SGI);
    gic::enable(TIMER_INTID.get());
    cpu::unmask_irqs();
    gic::send_sgi(RECOVERY_SGI, SgiTarget::Myself);
    time::wait_until(RECOVERY_TIMEOUT_US, || TAKEN_SGI.get() > 0);
    timer::arm_after_us(TIMER_DELAY_US);
    time::wait_until(RECOVERY_TIMEOUT_US, || TAKEN_TIMER.get() > 0);
    time::delay_us(SETTLE_US);
    cpu::mask_irqs();
    let taken = [TAKEN_SGI.get(), TAKEN_TIMER.get(), TAKEN_OTHER.get()];
    t.check(
        "sgi-and-timer-each-taken-once-after-the-sweeps",
        taken == [1, 1, 0],
        format_args!("SGI {RECOVERY_SGI}, timer, other INTIDs taken {taken:?} times"),
    );
}

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    let cpus = smp::cpus(dtb);
    outside_memory(&mut t);
    let Some(gic) = t.check_ok("gic-found", gic::init(dtb)) else {
        t.finish_and_power_off();
    };
    no_syndrome(&mut t, gic.distributor.base);
    gic_sweeps(&mut t, &gic, cpus.count());
    hostile_sgis(&gic);
    still_served(&mut t, &cpus);
    recovers(&mut t, dtb);
    t.finish_and_power_off();
}

guest_main!(run);
