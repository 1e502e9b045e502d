//! Where PSCI sends a secondary CPU: this guest's own entry, used for CPU_ON and for the
//! resume from a powerdown CPU_SUSPEND alike. The context id names the CPU, the job it is
//! to do and a tag (a round, a boot generation) so every start is told apart. The entry
//! records the state the CPU arrived in, which DEN0022 §6.4 fixes for both cases: EL1h
//! (CurrentEL = 1, SPSel = 1) with D, A, I and F masked, x0 = context_id.

/// Context id layout: logical CPU index [7:0] (guestkit::psci_entry), job [15:8], tag
/// [63:16].
const INDEX_MASK: u64 = guestkit::psci_entry::CONTEXT_INDEX_MASK;
const JOB_SHIFT: u32 = 8;
const JOB_MASK: u64 = 0xFF;
const TAG_SHIFT: u32 = 16;

use guestkit::psci_entry::{CURRENT_EL_EL1, DAIF_ALL_MASKED, SPSEL_ELX};

guestkit::psci_secondary_entry!("power_guest_secondary_entry", crate::jobs::secondary_main);

extern "C" {
    fn power_guest_secondary_entry();
}

/// The physical address of the entry (the MMU is off: addresses are physical).
pub fn secondary_entry() -> u64 {
    power_guest_secondary_entry as *const () as usize as u64
}

pub use guestkit::psci_entry::share_vectors;

/// What a secondary is started to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Job {
    /// Report in and turn itself off at once (the CPU_ON/CPU_OFF race).
    Race = 1,
    /// Arm the timer and suspend in a powerdown state, resuming as `Resumed`.
    Suspend = 2,
    /// Back from the powerdown suspend: report in and turn off.
    Resumed = 3,
    /// Count in memory that survives a reset until a system event stops it.
    Count = 4,
    /// Count too, and keep making CPU_ON calls on another counting CPU.
    Storm = 5,
    /// Make this stage's system event call, the other CPUs counting.
    Event = 6,
    /// Spin in the guest while the CPU_ON/CPU_OFF race runs, to load the host.
    Load = 7,
}

impl Job {
    const ALL: [Job; 7] = [Job::Race, Job::Suspend, Job::Resumed, Job::Count, Job::Storm, Job::Event, Job::Load];

    fn from_bits(bits: u64) -> Option<Job> {
        Job::ALL.into_iter().find(|j| *j as u64 == bits)
    }
}

/// A CPU_ON or resume context id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub index: usize,
    pub job: Job,
    pub tag: u64,
}

impl Context {
    pub fn new(index: usize, job: Job, tag: u64) -> Context {
        Context { index, job, tag }
    }

    pub fn encode(self) -> u64 {
        self.tag << TAG_SHIFT | (self.job as u64) << JOB_SHIFT | self.index as u64
    }

    pub fn decode(raw: u64) -> Option<Context> {
        let job = Job::from_bits(raw >> JOB_SHIFT & JOB_MASK)?;
        Some(Context { index: (raw & INDEX_MASK) as usize, job, tag: raw >> TAG_SHIFT })
    }
}

/// Whether a CPU arrived at the entry in the state DEN0022 §6.4 prescribes (x0 is
/// compared by the caller, who knows which context to expect).
pub fn arrived_as_psci_says(daif: u64, current_el: u64, spsel: u64) -> bool {
    daif == DAIF_ALL_MASKED && current_el == CURRENT_EL_EL1 && spsel == SPSEL_ELX
}
