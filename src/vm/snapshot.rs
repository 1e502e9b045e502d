//! A VM's snapshot, as `save` at Cairn's prompt takes it and `restore` puts it back: every
//! vCPU's saved state (registers, FP/SIMD and vector state, list registers, MP state,
//! firmware pseudo-registers), the virtual GIC's distributor and redistributor model, the
//! virtual UART, the VM's firmware settings and SDEI state, its virtual clock and whether
//! it was paused.
//! Its RAM goes to the slot Cairn reserved for it (`cairn.snapshot`, packed by
//! [`crate::mm::ram_image`]); the rest is small and lives on Cairn's heap.
//!
//! A save is asynchronous: each vCPU's state lives in its own CPU's registers, so the VM is
//! paused and each vCPU hands its state over from wherever its CPU holds it
//! ([`Saving`]); the last one in finishes the save.

use alloc::vec::Vec;

use crate::fwregs::VmFirmwareState;
use crate::mm::ram_image::Stored;
use crate::smccc::sdei::state::SdeiState;
use crate::vcpu::saved::VcpuState;
use crate::vcpu::PowerState;
use crate::vgic::dist::VGic;
use crate::vuart::VirtualUart;

/// What `restore` puts back.
#[derive(Clone)]
pub struct VmSnapshot {
    pub vcpus: Vec<VcpuState>,
    pub vgic: VGic,
    pub uart: Option<VirtualUart>,
    pub firmware: VmFirmwareState,
    /// Its SDEI state (registrations, masks, handlers running), if it has SDEI.
    pub sdei: Option<SdeiState>,
    /// The guest's virtual counter when it was taken.
    pub virtual_now: u64,
    /// Whether the VM was paused (it comes back so).
    pub paused: bool,
    /// What its RAM took in the slot.
    pub ram: Stored,
}

/// Where a save is.
pub enum SavePhase {
    /// Its vCPUs hand over their states.
    Gathering(Saving),
    /// Every state is in; the last vCPU's CPU takes the RAM and the rest.
    Finishing,
}

/// A save being finished: what a stop, reset or restore meets until it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaveFinishing;

/// A save under way: the vCPUs' states as they come in.
pub struct Saving {
    states: Vec<Option<VcpuState>>,
    /// Whether the VM was paused before the save (else it resumes after).
    pub was_paused: bool,
}

impl Saving {
    pub fn new(vcpus: usize, was_paused: bool) -> Self {
        Saving { states: (0..vcpus).map(|_| None).collect(), was_paused }
    }

    /// Takes vCPU `vcpu`'s state; true once every vCPU's is in.
    pub fn deliver(&mut self, vcpu: usize, state: VcpuState) -> bool {
        if let Some(slot) = self.states.get_mut(vcpu) {
            *slot = Some(state);
        }
        self.states.iter().all(Option::is_some)
    }

    /// The states, in vCPU order, once all are in.
    pub fn into_states(self) -> Option<Vec<VcpuState>> {
        self.states.into_iter().collect()
    }
}

/// How a vCPU comes back from its saved state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comeback {
    /// It was off, or had only a pending start (a CPU_ON it had not taken): its MP state
    /// alone is put back.
    MpStateOnly,
    /// It had a live context: its CPU takes a start and enters from the saved registers.
    Context,
}

/// How a vCPU saved as `state` comes back, by its MP state: off, or RUNNABLE with a start
/// it had not taken, it has no context; RUNNABLE otherwise, or SUSPENDED (its resume entry
/// as its start), it has one.
pub fn comeback(state: &VcpuState) -> Comeback {
    match (state.power, state.start) {
        (PowerState::Stopped, _) | (PowerState::Runnable, Some(_)) => Comeback::MpStateOnly,
        _ => Comeback::Context,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::Start;

    #[test]
    fn a_save_completes_with_the_last_vcpu() {
        let mut s = Saving::new(3, false);
        let state = |pc| VcpuState { pc, ..VcpuState::empty(4) };
        assert!(!s.deliver(2, state(2)));
        assert!(!s.deliver(0, state(0)));
        assert!(!s.deliver(7, state(7)), "no such vCPU");
        assert!(s.deliver(1, state(1)));
        let pcs: Vec<u64> = s.into_states().unwrap().iter().map(|v| v.pc).collect();
        assert_eq!(pcs, [0, 1, 2]);
    }

    #[test]
    fn only_a_vcpu_with_a_context_enters_from_it() {
        let start = Some(Start { entry: 0x4008_0000, context: 0, big_endian: false });
        let with = |power, start| comeback(&VcpuState { power, start, ..VcpuState::empty(4) });
        assert_eq!(with(PowerState::Stopped, None), Comeback::MpStateOnly);
        assert_eq!(with(PowerState::Runnable, start), Comeback::MpStateOnly, "a CPU_ON not yet taken");
        assert_eq!(with(PowerState::Runnable, None), Comeback::Context);
        assert_eq!(with(PowerState::Suspended, start), Comeback::Context, "resumes at its start");
    }
}
