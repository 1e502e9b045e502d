//! Secondary CPUs: which exist (the device tree's /cpus), and starting them through PSCI
//! CPU_ON with the kit's secondary entry in entry.S.
//!
//! Logical CPU 0 is the boot CPU; the others are numbered 1.. in device-tree order. A
//! secondary enters `kit_secondary_entry` with x0 = its logical index (the CPU_ON context
//! id), takes its own stack, sets TPIDR_EL1 and VBAR_EL1, and calls the function the boot
//! CPU gave [`start`], on that CPU, with the index.

use crate::shared::{PerCpu, Slot, MAX_CPUS};
use crate::{cpu, smccc};

/// The CPUs the device tree lists, boot CPU first.
#[derive(Clone, Copy, Debug)]
pub struct Cpus {
    mpidr: [u64; MAX_CPUS],
    count: usize,
    /// CPUs beyond MAX_CPUS the kit cannot drive.
    pub ignored: usize,
}

impl Cpus {
    pub fn count(&self) -> usize {
        self.count
    }

    /// The affinity of logical CPU `index`.
    pub fn mpidr(&self, index: usize) -> u64 {
        self.mpidr[index]
    }

    /// Logical indices of every CPU but the boot CPU.
    pub fn secondaries(&self) -> core::ops::Range<usize> {
        1..self.count
    }
}

/// Reads /cpus from the device tree at `dtb`. The CPU running this is logical CPU 0.
pub fn cpus(dtb: usize) -> Cpus {
    let boot = cpu::mpidr();
    let mut cpus = Cpus { mpidr: [0; MAX_CPUS], count: 1, ignored: 0 };
    cpus.mpidr[0] = boot;
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else { return cpus };
    for node in fdt.cpus() {
        let mpidr = node.ids().first() as u64 & cpu::MPIDR_AFFINITY_MASK;
        if mpidr == boot {
            continue;
        }
        if cpus.count == MAX_CPUS {
            cpus.ignored += 1;
            continue;
        }
        cpus.mpidr[cpus.count] = mpidr;
        cpus.count += 1;
    }
    cpus
}

/// What each secondary runs, set by the boot CPU before CPU_ON.
static MAIN: PerCpu<Option<fn(usize)>> = PerCpu::new(None);
/// Set once the boot CPU has asked for a secondary; from then on [`crate::shared::BootOnce`]
/// values are frozen.
static STARTED: Slot<bool> = Slot::new(false);

pub fn secondaries_started() -> bool {
    STARTED.get()
}

extern "C" {
    /// The secondary entry in entry.S.
    fn kit_secondary_entry();
}

/// Starts logical CPU `index` (affinity `mpidr`) running `main(index)`; returns the PSCI
/// status of CPU_ON (0 on success). Only the boot CPU starts CPUs.
pub fn start(index: usize, mpidr: u64, main: fn(usize)) -> i64 {
    assert!(cpu::index() == 0, "only the boot CPU starts others");
    assert!((1..MAX_CPUS).contains(&index), "logical CPU {index} out of range");
    STARTED.set(true);
    MAIN.set(index, Some(main));
    // With the MMU off, virtual and physical addresses are the same, so the symbol's
    // runtime address is the physical entry point CPU_ON wants.
    let entry = kit_secondary_entry as *const () as usize as u64;
    smccc::cpu_on(mpidr, entry, index as u64)
}

/// A secondary's Rust entry, called from entry.S on its own stack with x0 = its index.
pub(crate) extern "C" fn secondary_start(index: usize) -> ! {
    if let Some(main) = MAIN.get(index) {
        main(index);
    }
    cpu::park()
}
