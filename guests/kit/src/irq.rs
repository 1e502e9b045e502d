//! IRQ handling: the IRQ vector acknowledges the interrupt at the GIC, calls the handler
//! the CPU registered with the INTID, then ends it (priority drop and deactivation, as
//! EOImode 0 does both). Handlers run with PSTATE.I set, so they never nest.

use crate::shared::PerCpu;
use crate::{cpu, gic, println, smccc};

/// An interrupt handler; gets the acknowledged INTID.
pub type Handler = fn(intid: u32);

static HANDLERS: PerCpu<Option<Handler>> = PerCpu::new(None);
/// IRQ exceptions each CPU has taken, spurious ones included.
static TAKEN: PerCpu<u32> = PerCpu::new(0);
/// More IRQs than any test guest takes by far. Beyond it, an interrupt that never goes
/// away (one a hypervisor keeps signalling, even if only spurious INTIDs can be
/// acknowledged) would starve the guest forever, so the kit reports it and stops.
const IRQ_STORM_LIMIT: u32 = 100_000;

/// IRQ exceptions the calling CPU has taken, spurious ones included.
pub fn taken() -> u32 {
    TAKEN.mine()
}

/// Registers `handler` for IRQs taken on the calling CPU.
pub fn set_handler(handler: Handler) {
    HANDLERS.set_mine(Some(handler));
}

/// Called from the IRQ vector.
pub(crate) fn dispatch() {
    let ack = gic::acknowledge();
    guard_against_storm(ack.intid());
    if ack.is_special() {
        // Spurious: the interrupt went away (or another CPU took it) between the signal
        // and the acknowledge. Special INTIDs take no EOI (IHI 0069H §2.2.1, IHI 0048B §3.4.2).
        return;
    }
    match HANDLERS.mine() {
        Some(handler) => handler(ack.intid()),
        None => {
            println!("CAIRN-TEST unexpected IRQ: INTID {} on CPU {} with no handler", ack.intid(), cpu::index());
            println!("CAIRN-TEST result: fail (unexpected IRQ)");
            smccc::system_off();
        }
    }
    gic::end_of_interrupt(ack);
}

fn guard_against_storm(intid: u32) {
    let taken = TAKEN.mine() + 1;
    TAKEN.set_mine(taken);
    if taken > IRQ_STORM_LIMIT {
        println!("CAIRN-TEST IRQ storm: {taken} IRQs on CPU {}, the last acknowledged as INTID {intid}", cpu::index());
        println!("CAIRN-TEST result: fail (IRQ storm)");
        smccc::system_off();
    }
}
