//! The assembly entry (boot/entry.S, boot/vectors.S) and what it needs from Rust: stacks,
//! the Image header's size field and the frame layout. The Rust functions the assembly
//! calls (cairn_primary_main, cairn_secondary_main, cairn_refuse_low_el,
//! cairn_hyp_exception) are bound by name at link time, so this layer names nothing of
//! the layers above it.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::frame::{FRAME_SIZE, HOST_SP_OFFSET};
use super::limits::MAX_CPUS;
use crate::mm::MIB;

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

global_asm!(
    include_str!("../../../boot/entry.S"),
    LOAD_WINDOW = const LOAD_WINDOW,
    STACK_SIZE = const STACK_SIZE,
    STACKS = sym STACKS,
    VECTORS = sym cairn_el2_vectors_symbol,
    SPIN_TABLE_MPIDRS = sym SPIN_TABLE_MPIDRS,
    MAX_CPUS = const MAX_CPUS,
);

global_asm!(
    include_str!("../../../boot/vectors.S"),
    FRAME_SIZE = const FRAME_SIZE,
    HOST_SP = const HOST_SP_OFFSET,
    FAST_TABLE = sym super::fastpath::CAIRN_FAST_CALLS,
    ANSWER_SIZE = const super::fastpath::ANSWER_SIZE,
    CPU_BLOCK_SIZE = const super::fastpath::CPU_BLOCK_SIZE,
    FAST_CALLS = const super::fastpath::FAST_CALLS,
);

extern "C" {
    /// The EL2 vector table in boot/vectors.S.
    #[link_name = "cairn_el2_vectors"]
    fn cairn_el2_vectors_symbol();
    /// Entry for secondary CPUs in boot/entry.S; x0 = logical CPU index.
    pub fn secondary_entry();
    /// Entry for secondary CPUs released from a spin table; no argument.
    fn spin_table_entry();
}

/// A slot of [`SPIN_TABLE_MPIDRS`] no CPU has.
const NO_CPU: u64 = u64::MAX;

/// Each logical CPU's MPIDR affinity, for CPUs released from a spin table to find their
/// logical number (boot/entry.S reads it with the MMU off).
static SPIN_TABLE_MPIDRS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(NO_CPU) }; MAX_CPUS];

/// Releases logical CPU `logical` (MPIDR affinity `mpidr`) waiting on the spin table at
/// `release_addr`: it jumps to Cairn's spin-table entry (Linux's arm64 booting.rst
/// spin-table protocol: write the entry, clean it to memory, SEV).
pub fn release_from_spin_table(logical: usize, mpidr: u64, release_addr: u64) {
    let Some(slot) = SPIN_TABLE_MPIDRS.get(logical) else { return };
    slot.store(mpidr, Ordering::Release);
    super::mmu::clean_dcache_range(
        SPIN_TABLE_MPIDRS.as_ptr() as u64,
        core::mem::size_of_val(&SPIN_TABLE_MPIDRS) as u64,
    );
    let entry = spin_table_entry as *const () as u64;
    // SAFETY: `release_addr` is the CPU's cpu-release-addr from the device tree, a u64 in
    // RAM that the firmware's spin loop polls and that Cairn's identity map covers.
    unsafe { core::ptr::write_volatile(release_addr as *mut u64, entry) };
    super::mmu::clean_dcache_range(release_addr, core::mem::size_of::<u64>() as u64);
    // SAFETY: barriers and an event; the waiting CPU re-reads the release address.
    unsafe { core::arch::asm!("dsb sy", "sev") };
}

/// The physical address secondary CPUs start at.
pub fn secondary_entry_address() -> u64 {
    secondary_entry as *const () as u64
}
