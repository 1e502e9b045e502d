//! Benchmark guest: what guest operations cost under Cairn, in virtual-counter ticks per
//! operation, averaged over many iterations. The same image runs natively (QEMU at EL1,
//! no Cairn), where QEMU's own PSCI answers HVC and its GIC model needs no traps; the
//! difference between the two is Cairn's share. scripts/bench runs both and tabulates.
//!
//! Figures (see each function for exactly what is timed):
//! - `hvc-psci-version`, `smc-psci-version`: SMCCC round trips of PSCI_VERSION;
//! - `hvc-vendor-revision`: Cairn's vendor Revision query, the cheapest exit there is
//!   (natively NOT_SUPPORTED, still a round trip);
//! - `gicd-typer-read`: a read of an emulated distributor register (MMIO emulation);
//! - `icc-sgi1r-write` (GICv3) or `gicd-sgir-write` (GICv2): an SGI-generation write with
//!   an empty target list, a trap with no delivery;
//! - `timer-irq-latency`: virtual timer expiry until the guest's handler runs;
//! - `timer-eoi`: the guest's EOI of the timer interrupt;
//! - `virtual-ipi`: an SGI from vCPU 0 until its handler runs on a running vCPU 1;
//! - `wfi-wake`: an SGI from vCPU 0 until vCPU 1, asleep in WFI, runs again.
//!
//! With QEMU's `-icount shift=0` the counter advances one tick per instruction executed
//! (by any vCPU, at any EL), so the figures are instruction counts and repeatable; without
//! it they are host wall-clock time and vary from run to run.
//!
//! Output: a `CAIRN-BENCH-INFO` line (counter frequency, GIC, vCPUs, whether Cairn answers
//! its vendor Call UID), then per figure its `CAIRN-BENCH` line (figure.rs) and a check
//! that it was measured and is positive, then the kit's result line and PSCI SYSTEM_OFF.
//! A figure the platform cannot offer natively (SMC with nothing at EL2/EL3 to answer it)
//! is a note there, but a failed check under Cairn.
#![no_std]
#![no_main]

mod exits;
mod figure;
mod interrupts;
mod pair;
mod sdei;
mod wait;

use guestkit::gic::{self, DEFAULT_PRIORITY};
use guestkit::shared::MAX_CPUS;
use guestkit::{guest_main, irq, println, smp, time, timer, Checks};

use figure::{Failure, Missing, Samples};
use pair::{Peer, PeerError};

const NAME: &str = "bench";

/// Iterations per figure. The exits cost a few thousand instructions each under Cairn;
/// the two-vCPU figures also pay for QEMU switching between the vCPUs, so they run fewer.
const EXIT_ITERATIONS: u32 = 1000;
const TIMER_ITERATIONS: u32 = 1000;
const EOI_ITERATIONS: u32 = 1000;
const IPI_ITERATIONS: u32 = 1000;
const WFI_ITERATIONS: u32 = 1000;
/// How far ahead of "now" the latency figure arms the timer: long enough to be in the
/// spin loop when it fires.
const TIMER_LEAD_US: u64 = 5;
/// Time for vCPU 1 to settle into its idle WFI before anything is timed.
const PEER_SETTLE_US: u64 = 1_000;

/// Whether a figure may be missing: only for a reason the platform explains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IfUnavailable {
    Fail,
    Note,
}

/// Prints the figure's line and records its check.
fn report(t: &mut Checks, name: &str, result: Result<Samples, Missing>, if_unavailable: IfUnavailable) {
    figure::print(name, &result);
    match result {
        Ok(samples) => t.check(
            format_args!("{name}-measured"),
            samples.is_positive(),
            format_args!("0 ticks over {} iterations", samples.iterations()),
        ),
        Err(Missing::Unavailable(why)) if if_unavailable == IfUnavailable::Note => {
            t.note(format_args!("{name} not measured: {why}"))
        }
        Err(missing) => t.check(format_args!("{name}-measured"), false, format_args!("{missing}")),
    }
}

/// Whether the hypervisor answering HVC is Cairn (its vendor Call UID); natively QEMU
/// answers NOT_SUPPORTED.
fn under_cairn() -> bool {
    exits::probe(|| exits::hvc(exits::VENDOR_HYP_CALL_UID)) == Some(exits::CAIRN_UID_REGISTERS)
}

fn run(dtb: usize) {
    let mut t = Checks::new(NAME);
    let gic = gic::init(dtb).and_then(|gic| gic::init_cpu().map(|()| gic));
    let Some(gic) = t.check_ok("gic-init", gic) else { t.finish_and_power_off() };
    let intid = timer::virtual_timer_intid(dtb).unwrap_or(timer::DEFAULT_VIRTUAL_TIMER_INTID);
    interrupts::TIMER_INTID.set(intid);
    irq::set_handler(interrupts::on_irq);
    gic::set_priority(intid, DEFAULT_PRIORITY);
    gic::enable(intid);

    let cpus = smp::cpus(dtb);
    let cairn = under_cairn();
    let hypervisor = if cairn { "cairn" } else { "none" };
    println!(
        "CAIRN-BENCH-INFO counter_hz={} gic={} vcpus={} hypervisor={hypervisor}",
        time::frequency(),
        gic.version,
        cpus.count()
    );
    t.note(format_args!(
        "{gic}, {} vCPUs, counter at {} Hz, hypervisor: {hypervisor}",
        cpus.count(),
        time::frequency()
    ));
    // Natively nothing answers SMC; under Cairn every call must work.
    let exits_missing = if cairn { IfUnavailable::Fail } else { IfUnavailable::Note };

    // vCPU 1 first, so it idles in WFI (adding nothing) while vCPU 0 times the rest.
    let mut peer = Peer::start(&cpus);
    match &peer {
        Ok(_) => t.check("peer-vcpu-ready", true, format_args!("")),
        Err(PeerError::OnlyOneVcpu) => t.note(format_args!("one vCPU: no two-vCPU figures")),
        Err(e) => t.check("peer-vcpu-ready", false, format_args!("{e}")),
    }
    wait::delay_us(PEER_SETTLE_US);

    report(&mut t, "hvc-psci-version", exits::hvc_psci_version(EXIT_ITERATIONS), exits_missing);
    report(&mut t, "smc-psci-version", exits::smc_psci_version(EXIT_ITERATIONS), exits_missing);
    report(&mut t, "hvc-vendor-revision", exits::hvc_vendor_revision(EXIT_ITERATIONS), exits_missing);
    report(&mut t, "gicd-typer-read", exits::gicd_typer_read(EXIT_ITERATIONS), IfUnavailable::Fail);
    report(&mut t, exits::sgi_write_name(gic.version), exits::sgi_write(EXIT_ITERATIONS), IfUnavailable::Fail);
    report(
        &mut t,
        "timer-irq-latency",
        interrupts::timer_latency(TIMER_ITERATIONS, TIMER_LEAD_US),
        IfUnavailable::Fail,
    );
    report(&mut t, "timer-eoi", interrupts::timer_eoi(EOI_ITERATIONS), IfUnavailable::Fail);
    report(&mut t, "sdei-event-round-trip", sdei::event_round_trip(EXIT_ITERATIONS), IfUnavailable::Note);

    let (ipi, wfi) = match &mut peer {
        Ok(peer) => (peer.virtual_ipi(IPI_ITERATIONS), peer.wfi_wake(WFI_ITERATIONS)),
        Err(PeerError::OnlyOneVcpu) => {
            let why = Missing::Unavailable("one vCPU");
            (Err(why), Err(why))
        }
        Err(_) => (Err(Failure::NoSecondVcpu.into()), Err(Failure::NoSecondVcpu.into())),
    };
    report(&mut t, "virtual-ipi", ipi, IfUnavailable::Note);
    report(&mut t, "wfi-wake", wfi, IfUnavailable::Note);

    let stray: [u32; MAX_CPUS] = core::array::from_fn(|cpu| interrupts::STRAY.get(cpu));
    t.check("no-stray-interrupts", stray.iter().all(|&n| n == 0), format_args!("unexpected IRQs per vCPU {stray:?}"));
    t.finish_and_power_off();
}

guest_main!(run);
