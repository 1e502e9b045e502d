//! Where PSCI sends a CPU: this guest's own CPU_ON entry (the kit's starts only through
//! its own CPU_ON call, always the SMC64 ID over HVC) and the resume entry of a
//! powerdown CPU_SUSPEND, which continues the suspended caller as if the call had
//! returned. Both record the state the CPU arrived in: DEN0022 §6.4 (CPU_ON and resume
//! from powerdown) wants EL1h (CurrentEL = 1, SPSel = 1) with D, A, I and F masked,
//! x0 = context_id.

use core::arch::global_asm;

/// The CPU_ON context id carries the logical CPU index in its low byte
/// (guestkit::psci_entry); the rest is a generation number the boot CPU chooses, so each
/// start is told apart.
pub use guestkit::psci_entry::{share_vectors, CONTEXT_INDEX_MASK};

pub use guestkit::psci_entry::{CURRENT_EL_EL1, DAIF_ALL_MASKED, SPSEL_ELX};

guestkit::psci_secondary_entry!("psci_guest_secondary_entry", crate::smp::secondary_main);

/// How a CPU arrived at one of the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub x0: u64,
    pub daif: u64,
    pub current_el: u64,
    pub spsel: u64,
}

impl EntryState {
    /// Whether this is the state DEN0022 §6.4 prescribes, with x0 = `context`.
    pub fn is_psci_entry(&self, context: u64) -> bool {
        self.x0 == context
            && self.daif == DAIF_ALL_MASKED
            && self.current_el == CURRENT_EL_EL1
            && self.spsel == SPSEL_ELX
    }
}

/// The powerdown suspend's save area: x19-x30, SP, TPIDR_EL1, VBAR_EL1 and DAIF of the
/// caller, then DAIF, CurrentEL and SPSel at the resume entry, then the caller's x18. The
/// layout is the assembly's below.
#[repr(C, align(16))]
struct SaveArea([u64; SAVE_WORDS]);

const SAVE_WORDS: usize = 20;
const SAVE_ENTRY_DAIF: usize = 16;
const SAVE_ENTRY_CURRENT_EL: usize = 17;
const SAVE_ENTRY_SPSEL: usize = 18;
/// x18, the platform register, kept too in case the compiler does not treat it as
/// caller-saved.
const SAVE_X18: usize = 19;

/// Used by the boot CPU only, one suspend at a time.
static mut SAVE: SaveArea = SaveArea([0; SAVE_WORDS]);

global_asm!(
    r#"
    .section .text.psci_guest_entries, "ax"
    .balign 4

// psci_guest_powerdown_suspend(fid, power_state, use_smc, context) -> (x0, resumed)
// Saves what the caller needs kept, then makes CPU_SUSPEND with entry =
// psci_guest_resume_entry. A call that returns gives (status, 0); a resume at the entry
// gives (x0 found there, 1), back in the caller with its registers, stack, TPIDR_EL1,
// VBAR_EL1 and DAIF restored.
    .global psci_guest_powerdown_suspend
psci_guest_powerdown_suspend:
    adrp    x9, {SAVE}
    add     x9, x9, :lo12:{SAVE}
    stp     x19, x20, [x9, #0]
    stp     x21, x22, [x9, #16]
    stp     x23, x24, [x9, #32]
    stp     x25, x26, [x9, #48]
    stp     x27, x28, [x9, #64]
    stp     x29, x30, [x9, #80]
    mov     x10, sp
    mrs     x11, tpidr_el1
    stp     x10, x11, [x9, #96]
    mrs     x10, vbar_el1
    mrs     x11, daif
    stp     x10, x11, [x9, #112]
    str     x18, [x9, #{SAVE_X18} * 8]
    dsb     sy
    mov     x12, x2
    adrp    x2, psci_guest_resume_entry
    add     x2, x2, :lo12:psci_guest_resume_entry
    cbnz    x12, 1f
    hvc     #0
    b       2f
1:  smc     #0
2:  mov     x1, #0
    ret

    .global psci_guest_resume_entry
psci_guest_resume_entry:
    mrs     x12, daif
    mrs     x13, CurrentEL
    mrs     x14, SPSel
    adrp    x9, {SAVE}
    add     x9, x9, :lo12:{SAVE}
    stp     x12, x13, [x9, #{SAVE_ENTRY_DAIF} * 8]
    str     x14, [x9, #{SAVE_ENTRY_SPSEL} * 8]
    ldp     x10, x11, [x9, #112]
    msr     vbar_el1, x10
    msr     daif, x11
    ldp     x10, x11, [x9, #96]
    mov     sp, x10
    msr     tpidr_el1, x11
    ldr     x18, [x9, #{SAVE_X18} * 8]
    ldp     x19, x20, [x9, #0]
    ldp     x21, x22, [x9, #16]
    ldp     x23, x24, [x9, #32]
    ldp     x25, x26, [x9, #48]
    ldp     x27, x28, [x9, #64]
    ldp     x29, x30, [x9, #80]
    isb
    mov     x1, #1
    ret
"#,
    SAVE = sym SAVE,
    SAVE_ENTRY_DAIF = const SAVE_ENTRY_DAIF,
    SAVE_ENTRY_SPSEL = const SAVE_ENTRY_SPSEL,
    SAVE_X18 = const SAVE_X18,
);

// The resume entry stores DAIF and CurrentEL with one stp.
const _: () = assert!(SAVE_ENTRY_CURRENT_EL == SAVE_ENTRY_DAIF + 1);

/// What psci_guest_powerdown_suspend returns, in x0 and x1 (AAPCS64 returns a 16-byte
/// composite in x0-x1).
#[repr(C)]
struct Suspended {
    x0: u64,
    resumed: u64,
}

extern "C" {
    fn psci_guest_secondary_entry();
    fn psci_guest_resume_entry();
    fn psci_guest_powerdown_suspend(fid: u64, power_state: u64, use_smc: u64, context: u64) -> Suspended;
}

/// The physical address of the CPU_ON entry (the MMU is off: addresses are physical).
pub fn secondary_entry() -> u64 {
    psci_guest_secondary_entry as *const () as usize as u64
}

/// The physical address of the powerdown resume entry.
pub fn resume_entry() -> u64 {
    psci_guest_resume_entry as *const () as usize as u64
}

/// How a powerdown CPU_SUSPEND ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Powerdown {
    /// The call returned in line with this status.
    Returned(u64),
    /// The CPU resumed at the entry point, arriving like this.
    Resumed(EntryState),
}

/// CPU_SUSPEND(`power_state`, resume entry, `context`) through `fid` and the chosen
/// conduit, on the boot CPU, with IRQs masked (something must be armed to wake it).
pub fn powerdown_suspend(fid: u32, power_state: u64, smc: bool, context: u64) -> Powerdown {
    // SAFETY: the routine saves every callee-saved register, x18, SP, TPIDR_EL1, VBAR_EL1
    // and DAIF, and restores them all before returning through either path; otherwise it
    // changes at most x0-x17, which an AAPCS64 call may clobber. Memory (the stack
    // included) survives a powerdown of the CPU: only its registers are lost.
    let r = unsafe { psci_guest_powerdown_suspend(u64::from(fid), power_state, u64::from(smc), context) };
    if r.resumed == 0 {
        return Powerdown::Returned(r.x0);
    }
    // SAFETY: the resume entry wrote these words before returning here; nothing else
    // writes SAVE.
    let word = |i: usize| unsafe { core::ptr::read_volatile((&raw const SAVE.0).cast::<u64>().add(i)) };
    Powerdown::Resumed(EntryState {
        x0: r.x0,
        daif: word(SAVE_ENTRY_DAIF),
        current_el: word(SAVE_ENTRY_CURRENT_EL),
        spsel: word(SAVE_ENTRY_SPSEL),
    })
}
