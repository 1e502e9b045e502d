//! Where PSCI sends a secondary CPU: this guest's own entry, used for CPU_ON and for the
//! resume from a powerdown CPU_SUSPEND alike. The context id names the CPU, the job it is
//! to do and a tag (a round, a boot generation) so every start is told apart. The entry
//! records the state the CPU arrived in, which DEN0022 §6.4 fixes for both cases: EL1h
//! (CurrentEL = 1, SPSel = 1) with D, A, I and F masked, x0 = context_id.

use core::arch::global_asm;

use guestkit::shared::MAX_CPUS;

/// Context id layout: logical CPU index [7:0], job [15:8], tag [63:16].
const INDEX_MASK: u64 = 0xFF;
const JOB_SHIFT: u32 = 8;
const JOB_MASK: u64 = 0xFF;
const TAG_SHIFT: u32 = 16;

/// DAIF with D, A, I and F all set, as `mrs daif` shows it (Arm ARM, DAIF).
const DAIF_ALL_MASKED: u64 = 0xF << 6;
/// CurrentEL.EL [3:2] for EL1.
const CURRENT_EL_EL1: u64 = 1 << 2;
/// SPSel = 1: SP_ELx, the "h" of EL1h.
const SPSEL_ELX: u64 = 1;

/// Secondary CPUs count, call and take the odd interrupt: little stack.
const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// Logical CPU n (1..MAX_CPUS) runs on STACKS[n - 1], whose top is STACKS + n * STACK_SIZE.
/// Every entry starts again at the top: nothing survives a CPU_OFF or a powerdown.
static mut STACKS: [Stack; MAX_CPUS - 1] = [const { Stack([0; STACK_SIZE]) }; MAX_CPUS - 1];

/// The kit's EL1 vector table, for secondaries to install: the boot CPU copies its
/// VBAR_EL1 here before it starts any other CPU.
static mut VECTORS: u64 = 0;

global_asm!(
    r#"
    .section .text.power_guest_entry, "ax"
    .balign 4

// x0 = context id, whose low byte is the logical index (1..MAX_CPUS-1). Takes that CPU's
// stack, sets TPIDR_EL1 (the kit's CPU index) and VBAR_EL1, then calls
// secondary_main(context, daif, current_el, spsel) as found on entry. Any other index
// parks.
    .global power_guest_secondary_entry
power_guest_secondary_entry:
    mrs     x1, daif
    mrs     x2, CurrentEL
    mrs     x3, SPSel
    and     x9, x0, #{INDEX_MASK}
    cbz     x9, 9f
    cmp     x9, #{MAX_CPUS}
    b.hs    9f
    adrp    x10, {STACKS}
    add     x10, x10, :lo12:{STACKS}
    mov     x11, #{STACK_SIZE}
    madd    x10, x9, x11, x10
    mov     sp, x10
    msr     tpidr_el1, x9
    adrp    x10, {VECTORS}
    add     x10, x10, :lo12:{VECTORS}
    ldr     x10, [x10]
    msr     vbar_el1, x10
    isb
    bl      {SECONDARY_MAIN}
9:  wfe
    b       9b
"#,
    INDEX_MASK = const INDEX_MASK,
    MAX_CPUS = const MAX_CPUS,
    STACKS = sym STACKS,
    STACK_SIZE = const STACK_SIZE,
    VECTORS = sym VECTORS,
    SECONDARY_MAIN = sym crate::jobs::secondary_main,
);

extern "C" {
    fn power_guest_secondary_entry();
}

/// The physical address of the entry (the MMU is off: addresses are physical).
pub fn secondary_entry() -> u64 {
    power_guest_secondary_entry as *const () as usize as u64
}

/// Publishes this CPU's VBAR_EL1 for the secondaries. Call on the boot CPU before
/// starting any.
pub fn share_vectors() {
    let vbar: u64;
    // SAFETY: reading VBAR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, vbar_el1", out(reg) vbar, options(nomem, nostack, preserves_flags)) };
    // SAFETY: only the boot CPU writes VECTORS, before any secondary runs and reads it.
    unsafe { core::ptr::write_volatile(&raw mut VECTORS, vbar) };
    guestkit::cpu::dsb_sy();
}

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
