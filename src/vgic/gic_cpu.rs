//! The vGIC runtime ([`runtime`]) on the machine's GIC: the [`CpuInterface`] of the
//! physical GIC as the calling CPU sees it, each physical CPU's queue of forwarded
//! interrupts, and the entry points the vCPU code calls, each of which finds the GIC and
//! the CPU's queue and runs the runtime's logic on them. Bare-metal only; the arch layer
//! knows nothing of it.

use crate::arch::aarch64::cpu;
use crate::arch::aarch64::gic::{self, Gic};
use crate::arch::aarch64::gicarch::PRIVATE_IRQS;
use crate::arch::aarch64::limits::MAX_CPUS;
use crate::arch::aarch64::lr::ListReg;
use crate::vgic::dist::VGic;
use crate::vgic::runtime::{self, Acked, CpuInterface, HwQueue};

fn from_arch(acked: gic::Acked) -> Acked {
    Acked { raw: acked.raw, intid: acked.intid }
}

fn to_arch(acked: Acked) -> gic::Acked {
    gic::Acked { raw: acked.raw, intid: acked.intid }
}

/// The GIC as the calling CPU sees it: its CPU interface's registers, its private
/// interrupts' redistributor frame. Implemented on `Gic` itself, not on a wrapper that
/// names the CPU: the runtime then holds a plain `&Gic`, whose variant the compiler reads
/// once per loop instead of once per register access (a wrapper cost the interrupt exit
/// path about 15 instructions).
impl CpuInterface for Gic {
    const MAINTENANCE_IRQ: u32 = gic::MAINTENANCE_IRQ;

    fn list_registers(&self) -> usize {
        Gic::list_registers(self)
    }

    fn empty_lrs(&self) -> u64 {
        Gic::empty_lrs(self)
    }

    fn read_lr(&self, n: usize) -> ListReg {
        Gic::read_lr(self, n)
    }

    fn write_lr(&self, n: usize, lr: &ListReg) {
        Gic::write_lr(self, n, lr);
    }

    fn set_underflow_interrupt(&self, on: bool) {
        Gic::set_underflow_interrupt(self, on);
    }

    fn ack(&self) -> Option<Acked> {
        Gic::ack(self).map(from_arch)
    }

    fn eoi(&self, acked: Acked) {
        Gic::eoi(self, to_arch(acked));
    }

    fn deactivate(&self, acked: Acked) {
        Gic::deactivate(self, to_arch(acked));
    }

    fn deactivate_forwarded(&self, intid: u32) {
        Gic::deactivate_forwarded(self, intid);
    }

    fn is_guest_interrupt(&self, intid: u32) -> bool {
        gic::is_guest_interrupt(intid)
    }

    fn silence_own(&self, intid: u32) {
        // Cairn's timer fires once, at a VM's deadline: the run loop sees the counter past
        // it (Vm::timed_out), so the timer is done.
        if intid == gic::HYP_TIMER_IRQ {
            cpu::disarm_hyp_timer();
        } else if intid >= PRIVATE_IRQS {
            gic::own_interrupt(intid);
        }
    }

    fn line_pending(&self, intid: u32) -> bool {
        match self {
            Gic::V2(g) => g.pending(intid),
            Gic::V3(g) => g.pending(cpu::current(), intid),
        }
    }
}

static HW_QUEUES: [spin::Mutex<HwQueue>; MAX_CPUS] = [const { spin::Mutex::new(HwQueue::new()) }; MAX_CPUS];

/// The GIC and logical CPU `cpu`'s queue; None before the GIC is set up.
fn on(cpu: usize) -> Option<(&'static Gic, &'static spin::Mutex<HwQueue>)> {
    Some((gic::get()?, &HW_QUEUES[cpu]))
}

/// [`runtime::take_physical_interrupts`] on logical CPU `cpu`, the calling one.
pub fn take_physical_interrupts(cpu: usize) {
    if let Some((gic, queue)) = on(cpu) {
        runtime::take_physical_interrupts(gic, queue);
    }
}

/// [`runtime::flush`] of `vcpu`'s interrupts into the list registers of `cpu`, the
/// calling CPU, which runs it. Returns whether an interrupt bound to an SDEI event fired.
#[must_use]
pub fn flush(vgic: &spin::Mutex<VGic>, vcpu: usize, cpu: usize) -> bool {
    on(cpu).is_some_and(|(gic, queue)| runtime::flush(gic, queue, vgic, vcpu))
}

/// [`runtime::reset_cpu`] on logical CPU `cpu`, the calling one. The guest's own PPIs
/// are made inactive as well: one held for an SDEI handler that a reset cut short sits in
/// no list register or queue, and would never fire again.
pub fn reset_cpu(cpu: usize) {
    if let Some((gic, queue)) = on(cpu) {
        runtime::reset_cpu(gic, queue);
        for ppi in gic::GUEST_PPIS {
            gic.set_active(cpu, ppi, false);
        }
    }
}

/// [`runtime::listed_state`] in the calling CPU's list registers.
pub fn listed_state(intid: u32) -> (bool, bool) {
    gic::get().map_or((false, false), |gic| runtime::listed_state(gic, intid))
}

/// [`runtime::pending_interrupt`] for `vcpu`, which runs on `cpu`, the calling CPU,
/// retiring level-sensitive forwarded interrupts whose line has dropped.
pub fn pending_interrupt(vgic: &spin::Mutex<VGic>, vcpu: usize, cpu: usize) -> Option<u32> {
    let (gic, queue) = on(cpu)?;
    runtime::pending_interrupt(gic, queue, vgic, vcpu)
}
