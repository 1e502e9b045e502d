//! Memory shared between CPUs, and between a CPU and its own interrupt handler.
//!
//! Test guests run with the MMU off, so every data access is Device-nGnRnE (Arm ARM,
//! "Behavior of a PE when stage 1 translation is disabled"). Exclusive accesses to such
//! memory need not work on real hardware, so nothing here uses read-modify-write atomics:
//! every slot has exactly one writer and uses ordinary loads and stores, which are
//! single-copy atomic when naturally aligned and at most 64 bits wide (Arm ARM B2.2.1).
//! A store is preceded by `dsb sy` and a load followed by one, so data written before a
//! flag is published is visible to whoever has read the flag.

use core::cell::UnsafeCell;
use core::mem::{align_of, size_of};

use crate::cpu;

/// The most CPUs a guest drives; QEMU virt's GICv2 has eight CPU interfaces.
pub const MAX_CPUS: usize = 8;

/// Widest access that is single-copy atomic when naturally aligned (Arm ARM B2.2.1).
const MAX_SINGLE_COPY_ATOMIC_BYTES: usize = 8;

/// Fails the build for a `T` that one load or store cannot move whole.
const fn assert_single_copy_atomic<T>() {
    let size = size_of::<T>();
    assert!(size <= MAX_SINGLE_COPY_ATOMIC_BYTES && size.is_power_of_two() && align_of::<T>() >= size);
}

fn load<T: Copy>(p: *const T) -> T {
    // SAFETY: callers pass a pointer into their own UnsafeCell, valid and aligned for T;
    // T moves in one access (assert_single_copy_atomic), so a concurrent store never tears.
    let value = unsafe { core::ptr::read_volatile(p) };
    cpu::dsb_sy();
    value
}

fn store<T: Copy>(p: *mut T, value: T) {
    cpu::dsb_sy();
    // SAFETY: as in `load`; callers are the location's only writer.
    unsafe { core::ptr::write_volatile(p, value) };
}

/// One value with a single writer, read by anyone.
pub struct Slot<T>(UnsafeCell<T>);

// SAFETY: a Slot is only accessed whole through single aligned loads and stores (see
// `load`/`store`), and every user keeps to one writer.
unsafe impl<T: Copy + Send> Sync for Slot<T> {}

impl<T: Copy> Slot<T> {
    pub const fn new(value: T) -> Self {
        const { assert_single_copy_atomic::<T>() };
        Slot(UnsafeCell::new(value))
    }

    pub fn get(&self) -> T {
        load(self.0.get())
    }

    /// Publishes `value`; only the slot's one writer may call this.
    pub fn set(&self, value: T) {
        store(self.0.get(), value)
    }
}

/// One slot per logical CPU (see [`cpu::index`]); each has a single writer, usually the
/// CPU it belongs to.
pub struct PerCpu<T>(UnsafeCell<[T; MAX_CPUS]>);

// SAFETY: as for Slot: every element is a separate single-writer location.
unsafe impl<T: Copy + Send> Sync for PerCpu<T> {}

impl<T: Copy> PerCpu<T> {
    pub const fn new(value: T) -> Self {
        const { assert_single_copy_atomic::<T>() };
        PerCpu(UnsafeCell::new([value; MAX_CPUS]))
    }

    fn element(&self, cpu: usize) -> *mut T {
        assert!(cpu < MAX_CPUS, "CPU index {cpu} out of range");
        // SAFETY: cpu < MAX_CPUS, so the element lies inside the array.
        unsafe { self.0.get().cast::<T>().add(cpu) }
    }

    pub fn get(&self, cpu: usize) -> T {
        load(self.element(cpu))
    }

    /// Writes CPU `cpu`'s slot; the caller must be that slot's only writer.
    pub fn set(&self, cpu: usize, value: T) {
        store(self.element(cpu), value)
    }

    /// The calling CPU's own slot.
    pub fn mine(&self) -> T {
        self.get(cpu::index())
    }

    pub fn set_mine(&self, value: T) {
        self.set(cpu::index(), value)
    }
}

/// A value the boot CPU sets before it starts any other CPU; read-only afterwards, so it
/// may be of any size.
pub struct BootOnce<T>(UnsafeCell<Option<T>>);

// SAFETY: written only by the boot CPU while no other CPU runs (enforced in `set`); every
// later access is a read.
unsafe impl<T: Copy + Send> Sync for BootOnce<T> {}

impl<T: Copy> BootOnce<T> {
    pub const fn new() -> Self {
        BootOnce(UnsafeCell::new(None))
    }

    /// Sets the value; panics unless called on the boot CPU before any other CPU started.
    pub fn set(&self, value: T) {
        assert!(cpu::index() == 0 && !crate::smp::secondaries_started(), "BootOnce set after another CPU started");
        // SAFETY: no other CPU runs yet (checked above), so nothing reads concurrently.
        unsafe { core::ptr::write_volatile(self.0.get(), Some(value)) };
        cpu::dsb_sy();
    }

    pub fn get(&self) -> Option<T> {
        // SAFETY: after `set`, the value never changes; before it, only the boot CPU runs.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
}

impl<T: Copy> Default for BootOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}
