//! What the exit policy decides for one exit, for the run loop to carry out. An [`Action`]
//! names every way an exit can end: back to the guest (with the result registers written
//! and the PC stepped over the trapped instruction, both done by the loop in one place), a
//! wait, a powerdown, an exception injected into the guest, the vCPU or the whole VM
//! stopping or resetting.

use crate::event::SystemEvent;
use crate::vcpu::Start;

/// General-purpose registers the resumed guest gets: `len` consecutive ones from `first`
/// (x0-x3 for an SMCCC call's results, one register for an emulated load).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    first: u8,
    len: u8,
    values: [u64; 4],
}

impl Writes {
    pub const NONE: Writes = Writes { first: 0, len: 0, values: [0; 4] };

    /// `values` (at most four) into x0 onwards.
    pub fn from_x0(values: &[u64]) -> Self {
        let len = values.len().min(4);
        let mut w = Writes { first: 0, len: len as u8, values: [0; 4] };
        w.values[..len].copy_from_slice(&values[..len]);
        w
    }

    /// One register; `None` writes nothing (a load into XZR).
    pub fn one(write: Option<(usize, u64)>) -> Self {
        match write {
            Some((reg, value)) => Writes { first: reg as u8, len: 1, values: [value, 0, 0, 0] },
            None => Writes::NONE,
        }
    }

    /// Writes them into the guest's registers. Unrolled with constant indices, so the
    /// compiler keeps a resumed exit's writes in registers rather than in memory.
    #[inline(always)]
    pub fn apply(&self, x: &mut [u64; 31]) {
        let first = usize::from(self.first);
        for i in 0..self.values.len() {
            if i < usize::from(self.len) {
                if let Some(r) = x.get_mut(first + i) {
                    *r = self.values[i];
                }
            }
        }
    }
}

/// Back to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pub writes: Writes,
    /// Step the PC over the trapped instruction (the exit completed it).
    pub step: bool,
    /// The exit may have made an interrupt pending for this vCPU: refill its list
    /// registers before resuming. (Anything another CPU makes pending for it comes with a
    /// kick, a physical interrupt that makes it exit again.)
    pub refill: bool,
}

impl Resume {
    /// The instruction completed with no result and nothing new pending.
    pub const STEP: Resume = Resume { writes: Writes::NONE, step: true, refill: false };
}

/// An exception Cairn makes the guest take, as the hardware would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// A synchronous external abort on a data access to `far`.
    DataAbort { far: u64 },
    /// A synchronous external abort on an instruction fetch from `far`.
    InstructionAbort { far: u64 },
    /// An undefined-instruction exception.
    Undefined,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Resume(Resume),
    /// A physical interrupt ended the run: acknowledge the CPU's pending interrupts, queue
    /// the guest's, and resume with the list registers refilled.
    TakeInterrupts,
    /// WFI or a CPU_SUSPEND standby state: block (HALTED) until a wake-up event, then
    /// resume as `then` (its step and refill are implied).
    Halt {
        then: Writes,
    },
    /// A CPU_SUSPEND powerdown state (`system` false) or SYSTEM_SUSPEND (true): block
    /// (SUSPENDED) until a wake-up event, then start at `resume` in the state CPU_ON gives
    /// (DEN0022 §5.4.3, §5.19.1, §6.4).
    Suspend {
        resume: Start,
        system: bool,
    },
    Inject(Injection),
    /// PSCI CPU_OFF: this vCPU stops; its CPU idles until a CPU_ON starts it again.
    PowerOff,
    /// SYSTEM_OFF or a crash: every vCPU of the VM stops, the event is recorded, the VM is
    /// gone (and with the last VM, the machine powers off).
    StopVm(SystemEvent),
    /// SYSTEM_RESET(2): every vCPU stops and the VM restarts from its pristine images.
    ResetVm(SystemEvent),
    /// SDEI EVENT_COMPLETE[_AND_RESUME]: the context the handler interrupted comes back
    /// from the VM's SDEI state instead of the call returning.
    SdeiResume,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_in_consecutive_registers() {
        let mut x = [9u64; 31];
        Writes::from_x0(&[1, 2]).apply(&mut x);
        assert_eq!(&x[..3], &[1, 2, 9]);
        Writes::one(Some((30, 7))).apply(&mut x);
        assert_eq!(x[30], 7);
        Writes::one(None).apply(&mut x);
        // At most four results (x0-x3): a fifth value is dropped.
        Writes::from_x0(&[1, 2, 3, 4, 5]).apply(&mut x);
        assert_eq!(&x[..5], &[1, 2, 3, 4, 9]);
    }
}
