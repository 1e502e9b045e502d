//! The physical GIC behind the virtual one: the [`HwBacking`] through which the
//! distributor model forwards the guest's settings for interrupts a real device (or the
//! CPU's own timers) raises, over the arch layer's [`Gic`].

use crate::arch::aarch64::cpu;
use crate::arch::aarch64::gic::{self, Gic};
use crate::vgic::dist::HwBacking;

/// Forwarding for the virtual GIC, which names physical (logical) CPUs to it.
pub struct PhysicalBacking<'a>(pub &'a Gic);

impl PhysicalBacking<'_> {
    fn is_this_cpu(pcpu: usize) -> bool {
        pcpu == cpu::current()
    }
}

impl HwBacking for PhysicalBacking<'_> {
    fn is_hw(&self, intid: u32) -> bool {
        gic::is_guest_interrupt(intid) && intid < self.0.nr_irqs()
    }

    fn set_enabled(&mut self, vcpu: usize, intid: u32, enabled: bool) {
        self.0.set_enabled(vcpu, intid, enabled);
    }

    fn set_pending(&mut self, vcpu: usize, intid: u32, pending: bool) {
        self.0.set_pending(vcpu, intid, pending);
    }

    fn pending(&self, vcpu: usize, intid: u32) -> bool {
        self.0.pending(vcpu, intid)
    }

    fn set_active(&mut self, vcpu: usize, intid: u32, active: bool) {
        self.0.set_active(vcpu, intid, active);
    }

    fn active(&self, vcpu: usize, intid: u32) -> bool {
        self.0.active(vcpu, intid)
    }

    fn set_edge_triggered(&mut self, intid: u32, edge: bool) {
        self.0.set_edge_triggered(intid, edge);
    }

    fn listed(&self, vcpu: usize, intid: u32) -> (bool, bool) {
        if Self::is_this_cpu(vcpu) {
            crate::vgic::gic_cpu::listed_state(intid)
        } else {
            (false, false)
        }
    }

    fn route(&mut self, intid: u32, vcpu: usize) {
        self.0.route(intid, vcpu);
    }
}
