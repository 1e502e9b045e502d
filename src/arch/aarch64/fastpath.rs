//! The hypercall fast path: per physical CPU, the SMCCC calls whose answer is fixed for the
//! life of the VM running there (PSCI_VERSION, SMCCC_VERSION, the vendor service's
//! revision), each with that answer. boot/vectors.S answers them straight from the
//! exception vector, saving two register pairs instead of the whole trap frame; any other
//! exit takes the full path. The answers come from the one dispatcher (vcpu::runtime
//! installs them when the vCPU starts), and the VM's firmware registers are frozen once
//! it has run (fwregs), so both paths always agree.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::limits::MAX_CPUS;

/// Calls the fast path knows per CPU.
pub const FAST_CALLS: usize = 3;
/// Result registers an answer can hold (x0-x3, SMCCC 1.1 §2.6).
const MAX_RESULTS: usize = 4;

/// One answered call, as boot/vectors.S reads it: function ID (W0), how many result
/// registers the answer writes (0: empty slot), then x0-x3.
#[repr(C)]
pub struct FastAnswer {
    fid: AtomicU32,
    count: AtomicU32,
    regs: [AtomicU64; MAX_RESULTS],
}

/// Byte sizes boot/vectors.S walks the table with.
pub const ANSWER_SIZE: usize = core::mem::size_of::<FastAnswer>();
pub const CPU_BLOCK_SIZE: usize = ANSWER_SIZE * FAST_CALLS;
const _: () = assert!(ANSWER_SIZE == 40, "boot/vectors.S reads fid at 0, count at 4, x0-x3 from 8");

#[no_mangle]
pub static CAIRN_FAST_CALLS: [[FastAnswer; FAST_CALLS]; MAX_CPUS] = [const {
    [const { FastAnswer { fid: AtomicU32::new(0), count: AtomicU32::new(0), regs: [const { AtomicU64::new(0) }; 4] } };
        FAST_CALLS]
}; MAX_CPUS];

/// Sets CPU `cpu`'s answers (up to [`FAST_CALLS`]; results beyond x3 are not cached).
/// Called on that CPU while no guest runs on it.
pub fn install(cpu: usize, answers: &[(u32, &[u64])]) {
    let Some(block) = CAIRN_FAST_CALLS.get(cpu) else { return };
    clear(cpu);
    for (slot, (fid, results)) in block.iter().zip(answers.iter().filter(|(_, r)| r.len() <= MAX_RESULTS)) {
        slot.fid.store(*fid, Ordering::Relaxed);
        for (reg, &v) in slot.regs.iter().zip(results.iter()) {
            reg.store(v, Ordering::Relaxed);
        }
        slot.count.store(results.len() as u32, Ordering::Release);
    }
}

/// Forgets CPU `cpu`'s answers: every call takes the full path.
pub fn clear(cpu: usize) {
    for slot in CAIRN_FAST_CALLS.get(cpu).into_iter().flatten() {
        slot.count.store(0, Ordering::Release);
    }
}
