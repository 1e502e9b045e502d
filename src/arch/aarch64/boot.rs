//! The assembly entry (boot/entry.S, boot/vectors.S) and what it needs from Rust: stacks,
//! the Image header's size field and the symbols it calls.

use core::arch::global_asm;

use super::trap::{TrapFrame, FRAME_SIZE};
use crate::mm::MIB;

/// Physical CPUs Cairn supports (QEMU virt tests go up to -smp 8).
pub const MAX_CPUS: usize = 16;
/// EL2 stack per physical CPU.
pub const STACK_SIZE: usize = 64 * 1024;

/// The Image header's image_size: the memory Cairn claims from its load address. Cairn
/// needs far less (its image, BSS and heap; see `hyp::CAIRN_HEAP_SIZE`), but QEMU places
/// the host device tree right after this window, so claiming 254 MiB from QEMU virt's load
/// address 0x4020_0000 keeps 0x4800_0000-0x4FFF_FFFF free for guest-loader modules, as
/// Xen's dom0less examples lay them out. Cairn returns the unused part to guest RAM.
pub const LOAD_WINDOW: u64 = 254 * MIB;

#[repr(C, align(16))]
pub struct Stacks(pub [[u8; STACK_SIZE]; MAX_CPUS]);

/// Per-CPU EL2 stacks, in .bss. CPU n's stack top is `STACKS + (n + 1) * STACK_SIZE`.
pub static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// The top of logical CPU `cpu`'s EL2 stack.
pub fn stack_top(cpu: usize) -> usize {
    (&raw const STACKS) as usize + (cpu + 1) * STACK_SIZE
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == FRAME_SIZE);

global_asm!(
    include_str!("../../../boot/entry.S"),
    LOAD_WINDOW = const LOAD_WINDOW,
    STACK_SIZE = const STACK_SIZE,
    STACKS = sym STACKS,
    VECTORS = sym cairn_el2_vectors_symbol,
    PRIMARY_MAIN = sym crate::hyp::primary_main,
    SECONDARY_MAIN = sym crate::hyp::secondary_main,
    REFUSE_LOW_EL = sym crate::hyp::refuse_low_el,
);

global_asm!(
    include_str!("../../../boot/vectors.S"),
    FRAME_SIZE = const FRAME_SIZE,
    GUEST_HANDLER = sym super::trap::handle_guest_exception,
    HYP_HANDLER = sym super::trap::handle_hyp_exception,
);

extern "C" {
    /// The EL2 vector table in boot/vectors.S.
    #[link_name = "cairn_el2_vectors"]
    fn cairn_el2_vectors_symbol();
    /// Entry for secondary CPUs in boot/entry.S; x0 = logical CPU index.
    pub fn secondary_entry();
    /// Loads `frame` onto a fresh EL2 stack ending at `stack_top` and returns to the guest.
    fn cairn_enter_guest(frame: *const TrapFrame, stack_top: usize) -> !;
}

/// Where `enter_guest` stages a CPU's frame: off the stack it is about to reset, so the
/// copy to the stack top can never overlap its source.
static mut ENTRY_FRAMES: [TrapFrame; MAX_CPUS] = [TrapFrame::ZERO; MAX_CPUS];

/// Enters the guest described by `frame` on logical CPU `cpu`, discarding whatever the
/// EL2 stack held.
pub fn enter_guest(frame: &TrapFrame, cpu: usize) -> ! {
    // SAFETY: only CPU `cpu` touches ENTRY_FRAMES[cpu], and only here; the stack being
    // reset belongs to this CPU and nothing on it is live after this call, which never
    // returns.
    unsafe {
        let staged = &raw mut ENTRY_FRAMES[cpu];
        staged.write(*frame);
        cairn_enter_guest(staged, stack_top(cpu))
    }
}

/// The physical address secondary CPUs start at.
pub fn secondary_entry_address() -> u64 {
    secondary_entry as *const () as u64
}
