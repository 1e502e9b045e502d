//! The machine limits Cairn is built for, in one place: everything sized per physical CPU
//! (EL2 stacks, per-CPU tables, the vCPUs of a VM) takes its size from here.

/// Physical CPUs Cairn supports (QEMU virt tests go up to -smp 8). CPUs beyond it stay
/// off, and a VM has at most this many vCPUs (one per physical CPU).
pub const MAX_CPUS: usize = 16;
