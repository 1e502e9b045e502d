//! A vCPU's power-state machine (DEN0022 §5.5-§5.7 and §5.19; guest-firmware-interfaces.md
//! §4): every transition a vCPU's power state can make, in one place. The caller holds the
//! vCPU's lock around each call; this module only decides.

use crate::smccc::psci::ret;

/// A vCPU's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Runs guest code, or will as soon as its physical CPU picks up a pending start
    /// (a CPU_ON is accepted the moment it returns SUCCESS: DEN0022 §5.6).
    Runnable,
    /// Off: CPU_OFF, never started, or stopped by a system event.
    Stopped,
    /// In a CPU_SUSPEND powerdown state or SYSTEM_SUSPEND: its context is gone and it
    /// resumes at the suspend call's entry point on a wake-up event.
    Suspended,
    /// Halted in WFI (a trapped WFI or a CPU_SUSPEND standby state): it continues after
    /// the instruction on a wake-up event, context intact.
    Halted,
}

impl PowerState {
    /// What AFFINITY_INFO reports: a suspended or halted core is ON (DEN0022 §5.7.2).
    pub fn is_on(self) -> bool {
        self != PowerState::Stopped
    }

    /// The wire value of the MP state in a saved vCPU.
    pub fn encode(self) -> u64 {
        match self {
            PowerState::Runnable => 0,
            PowerState::Stopped => 1,
            PowerState::Suspended => 2,
            PowerState::Halted => 3,
        }
    }

    pub fn decode(value: u64) -> Option<Self> {
        Some(match value {
            0 => PowerState::Runnable,
            1 => PowerState::Stopped,
            2 => PowerState::Suspended,
            3 => PowerState::Halted,
            _ => return None,
        })
    }
}

/// Where a start (CPU_ON, a reset, a powerdown resume) sends the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub entry: u64,
    pub context: u64,
    /// SCTLR_EL1.EE for the started vCPU: CPU_ON gives the caller's (DEN0022 §6.4).
    pub big_endian: bool,
}

/// How a vCPU waits for a wake-up event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// WFI or a standby power state: [`PowerState::Halted`].
    Halt,
    /// A powerdown power state or SYSTEM_SUSPEND: [`PowerState::Suspended`].
    Suspend,
}

/// A vCPU's power state and the start waiting for its physical CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Power {
    state: PowerState,
    start: Option<Start>,
    /// A wake-up event that is not an interrupt (a CPU_ON aimed at a suspended vCPU) ends
    /// the current wait.
    wake: bool,
}

impl Default for Power {
    fn default() -> Self {
        Power::new()
    }
}

impl Power {
    /// A vCPU that has never run: STOPPED.
    pub const fn new() -> Self {
        Power { state: PowerState::Stopped, start: None, wake: false }
    }

    pub fn state(&self) -> PowerState {
        self.state
    }

    pub fn pending_start(&self) -> Option<Start> {
        self.start
    }

    /// CPU_ON (DEN0022 §5.6): a STOPPED vCPU becomes RUNNABLE at once, so a racing CPU_ON
    /// gets ALREADY_ON and AFFINITY_INFO reports ON, and starts at `start` when its CPU
    /// picks it up. A vCPU that is on answers ALREADY_ON; one that is suspended also takes
    /// the call as a wake-up event (its core is woken, as a firmware would on a CPU_ON to
    /// a core in a powerdown state). `halting`: a system event is stopping the VM.
    pub fn power_on(&mut self, start: Start, halting: bool) -> Result<(), i64> {
        if halting {
            return Err(ret::INTERNAL_FAILURE);
        }
        match self.state {
            PowerState::Stopped => {
                self.state = PowerState::Runnable;
                self.start = Some(start);
                Ok(())
            }
            PowerState::Suspended => {
                self.wake = true;
                Err(ret::ALREADY_ON)
            }
            PowerState::Runnable | PowerState::Halted => Err(ret::ALREADY_ON),
        }
    }

    /// CPU_OFF, or a system event stopping the vCPU: from any state, with any pending
    /// start dropped.
    pub fn power_off(&mut self) {
        *self = Power::new();
    }

    /// A reset of the VM starts this vCPU again even though a system event is under way
    /// (the event itself is the caller).
    pub fn restart(&mut self, start: Start) {
        *self = Power { state: PowerState::Runnable, start: Some(start), wake: false };
    }

    /// The physical CPU takes the pending start, if the vCPU is still meant to run.
    pub fn take_start(&mut self) -> Option<Start> {
        match self.state {
            PowerState::Runnable => self.start.take(),
            _ => None,
        }
    }

    /// Whether the guest context on this CPU is finished: the vCPU was stopped, or a start
    /// is waiting to replace it.
    pub fn must_leave_guest(&self) -> bool {
        self.state == PowerState::Stopped || self.start.is_some()
    }

    /// A running vCPU begins to wait. Returns false (and changes nothing) if it is not
    /// RUNNABLE any more, e.g. a system event stopped it on the way here.
    pub fn begin_wait(&mut self, how: Wait) -> bool {
        if self.state != PowerState::Runnable || self.start.is_some() {
            return false;
        }
        self.state = match how {
            Wait::Halt => PowerState::Halted,
            Wait::Suspend => PowerState::Suspended,
        };
        self.wake = false;
        true
    }

    /// Whether a non-interrupt wake-up event has arrived for the current wait.
    pub fn wake_requested(&self) -> bool {
        self.wake
    }

    /// The wait is over: RUNNABLE again, unless the vCPU was stopped meanwhile. Returns
    /// whether the vCPU continues in the guest.
    pub fn end_wait(&mut self) -> bool {
        self.wake = false;
        match self.state {
            PowerState::Halted | PowerState::Suspended => {
                self.state = PowerState::Runnable;
                true
            }
            PowerState::Runnable => true,
            PowerState::Stopped => false,
        }
    }

    /// The MP state in a saved vCPU.
    pub fn save(&self) -> (PowerState, Option<Start>) {
        (self.state, self.start)
    }

    /// Puts back a saved MP state exactly: a STOPPED or SUSPENDED vCPU stays so and does
    /// not start running because of the restore; only a saved pending start (a CPU_ON
    /// accepted before the save) starts it.
    pub fn restore(&mut self, state: PowerState, start: Option<Start>) {
        let start = if state == PowerState::Runnable { start } else { None };
        *self = Power { state, start, wake: false };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Start = Start { entry: 0x4008_0000, context: 7, big_endian: false };
    const OTHER: Start = Start { entry: 0x4009_0000, context: 9, big_endian: true };

    fn running() -> Power {
        let mut p = Power::new();
        p.power_on(START, false).unwrap();
        assert_eq!(p.take_start(), Some(START));
        p
    }

    #[test]
    fn cpu_on_makes_a_stopped_vcpu_runnable_at_once_and_exactly_once() {
        let mut p = Power::new();
        assert_eq!(p.state(), PowerState::Stopped);
        assert_eq!(p.power_on(START, false), Ok(()));
        assert_eq!(p.state(), PowerState::Runnable);
        assert!(p.state().is_on(), "AFFINITY_INFO reports ON before the vCPU enters the guest");
        assert_eq!(p.power_on(OTHER, false), Err(ret::ALREADY_ON));
        assert_eq!(p.take_start(), Some(START), "the first CPU_ON's entry point wins");
        assert_eq!(p.take_start(), None);
    }

    #[test]
    fn cpu_on_during_a_system_event_fails_without_starting_anything() {
        let mut p = Power::new();
        assert_eq!(p.power_on(START, true), Err(ret::INTERNAL_FAILURE));
        assert_eq!(p.state(), PowerState::Stopped);
    }

    #[test]
    fn cpu_off_stops_from_every_state_and_drops_a_pending_start() {
        for how in [None, Some(Wait::Halt), Some(Wait::Suspend)] {
            let mut p = running();
            if let Some(how) = how {
                assert!(p.begin_wait(how));
            }
            p.power_off();
            assert_eq!(p.state(), PowerState::Stopped);
            assert!(p.must_leave_guest());
            assert!(!p.end_wait(), "a stopped vCPU does not continue after its wait");
        }
        let mut p = Power::new();
        p.power_on(START, false).unwrap();
        p.power_off();
        assert_eq!(p.take_start(), None, "CPU_OFF racing a CPU_ON leaves nothing to start");
    }

    #[test]
    fn waits_are_halted_or_suspended_and_count_as_on() {
        let mut p = running();
        assert!(p.begin_wait(Wait::Halt));
        assert_eq!(p.state(), PowerState::Halted);
        assert!(p.state().is_on());
        assert_eq!(p.power_on(OTHER, false), Err(ret::ALREADY_ON));
        assert!(!p.wake_requested(), "CPU_ON is not a wake-up event for a WFI");
        assert!(p.end_wait());
        assert_eq!(p.state(), PowerState::Runnable);

        assert!(p.begin_wait(Wait::Suspend));
        assert_eq!(p.state(), PowerState::Suspended);
        assert_eq!(p.power_on(OTHER, false), Err(ret::ALREADY_ON));
        assert!(p.wake_requested(), "CPU_ON wakes a suspended core");
        assert_eq!(p.pending_start(), None, "and does not replace its resume entry point");
        assert!(p.end_wait());
        assert!(!p.wake_requested());
    }

    #[test]
    fn a_vcpu_that_must_leave_does_not_begin_a_wait() {
        let mut p = Power::new();
        assert!(!p.begin_wait(Wait::Halt), "a stopped vCPU cannot halt");
        p.power_on(START, false).unwrap();
        assert!(!p.begin_wait(Wait::Halt), "a pending start comes first");
        assert_eq!(p.state(), PowerState::Runnable);
    }

    #[test]
    fn restore_keeps_stopped_and_suspended_vcpus_where_they_were() {
        for state in [PowerState::Stopped, PowerState::Suspended, PowerState::Halted] {
            let mut p = running();
            p.restore(state, Some(START));
            assert_eq!(p.state(), state);
            assert_eq!(p.take_start(), None, "{state:?}: a restore must not start the vCPU");
        }
        let mut p = Power::new();
        p.restore(PowerState::Runnable, Some(START));
        assert_eq!(p.take_start(), Some(START), "an accepted CPU_ON survives a save/restore");
    }

    #[test]
    fn mp_state_wire_values_round_trip() {
        for s in [PowerState::Runnable, PowerState::Stopped, PowerState::Suspended, PowerState::Halted] {
            assert_eq!(PowerState::decode(s.encode()), Some(s));
        }
        assert_eq!(PowerState::decode(4), None);
    }
}
