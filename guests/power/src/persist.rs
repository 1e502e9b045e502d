//! Memory that survives a system reset, and memory that a reset must put back.
//!
//! Cairn's reset (src/vm.rs, `Vm::restore_images`) copies back the kernel image (the
//! bytes of the guest-loader module: this guest's text and data, not its BSS), the initrd
//! and the device tree, and nothing else. So:
//! - [`Area`] lives in guest RAM just past this guest's footprint (`__guest_end`, which
//!   includes the BSS), where no reset writes: it carries the boot generation, the check
//!   tallies and the counters across resets. The boot CPU checks at every boot that the
//!   device tree puts it in RAM and clear of the device tree itself.
//! - [`IN_IMAGE`] lives in `.data`, inside the image: a reset puts it back to
//!   [`PRISTINE`]. A CPU that writes it after Cairn restored the image leaves a mark the
//!   next boot sees.
//!
//! Every field has one writer at a time (see guestkit::shared); the MMU is off, so every
//! access goes to memory.

use core::fmt;

use guestkit::shared::{PerCpu, Slot};

/// "POWERGST": the area holds a previous boot's state.
const MAGIC: u64 = 0x504F_5745_5247_5354;
/// The area starts on the first page boundary past the guest's footprint.
const AREA_ALIGN: usize = 4096;
/// What [`IN_IMAGE`] holds in the image; not zero, so it lives in `.data`, not `.bss`.
pub const PRISTINE: u64 = 0x1A6E_1A6E_1A6E_1A6E;

/// Written by each counting CPU alongside its counter.
pub static IN_IMAGE: PerCpu<u64> = PerCpu::new(PRISTINE);

/// Survives resets. The writers are named per field.
#[repr(C)]
pub struct Area {
    /// [`MAGIC`] once the first boot has set the area up (boot CPU).
    magic: Slot<u64>,
    /// Boots so far, this one included (boot CPU, first thing at each boot).
    pub generation: Slot<u64>,
    /// The stage the previous boot started, as an index into the plan (boot CPU).
    pub stage: Slot<u64>,
    /// The generation whose stage has made, or is about to make, its system event call:
    /// the "reset requested" flag (the stage's caller).
    pub requested: Slot<u64>,
    /// How often the stage's system event call returned, and its last x0 (the caller).
    pub returned: Slot<u64>,
    pub returned_x0: Slot<u64>,
    /// Counting CPUs (bit n for CPU n) that did not get going before the call (the caller).
    pub stalled: Slot<u64>,
    /// Set while the boot CPU makes SYSTEM_RESET2 calls that must not reset (boot CPU).
    pub invalid_reset2_pending: Slot<u64>,
    /// Check tallies over every boot (boot CPU).
    pub passed: Slot<u64>,
    pub failed: Slot<u64>,
    /// The storm's CPU_ON calls: how many, how many succeeded, how many answered neither
    /// SUCCESS nor ALREADY_ON before the event was requested and the last such answer
    /// (the storming CPU).
    pub storm_calls: Slot<u64>,
    pub storm_successes: Slot<u64>,
    pub storm_unexpected: Slot<u64>,
    pub storm_unexpected_x0: Slot<u64>,
    /// Each counting CPU's counter just before the call (the caller).
    pub before: PerCpu<u64>,
    /// Each counting CPU's counter (that CPU).
    pub count: PerCpu<u64>,
    /// The counter of a CPU at the last iteration it ran while the generation was not its
    /// own, that is after a later boot had begun: 0 if that never happened (that CPU).
    pub late: PerCpu<u64>,
}

impl Area {
    const fn new() -> Area {
        Area {
            magic: Slot::new(0),
            generation: Slot::new(0),
            stage: Slot::new(0),
            requested: Slot::new(0),
            returned: Slot::new(0),
            returned_x0: Slot::new(0),
            stalled: Slot::new(0),
            invalid_reset2_pending: Slot::new(0),
            passed: Slot::new(0),
            failed: Slot::new(0),
            storm_calls: Slot::new(0),
            storm_successes: Slot::new(0),
            storm_unexpected: Slot::new(0),
            storm_unexpected_x0: Slot::new(0),
            before: PerCpu::new(0),
            count: PerCpu::new(0),
            late: PerCpu::new(0),
        }
    }

    /// Every field back to zero but the magic, which marks the area set up.
    fn clear(&self) {
        let words = [
            &self.generation,
            &self.stage,
            &self.requested,
            &self.returned,
            &self.returned_x0,
            &self.stalled,
            &self.invalid_reset2_pending,
            &self.passed,
            &self.failed,
            &self.storm_calls,
            &self.storm_successes,
            &self.storm_unexpected,
            &self.storm_unexpected_x0,
        ];
        for w in words {
            w.set(0);
        }
        for cpu in 0..guestkit::shared::MAX_CPUS {
            self.before.set(cpu, 0);
            self.count.set(cpu, 0);
            self.late.set(cpu, 0);
        }
        self.magic.set(MAGIC);
    }
}

/// Stands in for the area when the device tree leaves no room for it: nothing survives a
/// reset then, and the boot CPU skips every stage that needs it.
static FALLBACK: Area = Area::new();

extern "C" {
    /// The end of the guest's footprint, BSS included (guests/kit/guest.ld).
    static __guest_end: u8;
}

/// Why the area cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum Unusable {
    NoDeviceTree,
    NotInRam { base: usize, size: usize },
    OverlapsDeviceTree { base: usize, dtb: usize, dtb_size: usize },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unusable::NoDeviceTree => write!(f, "no device tree to check the area against"),
            Unusable::NotInRam { base, size } => {
                write!(f, "{base:#x}+{size:#x} is not inside one /memory region")
            }
            Unusable::OverlapsDeviceTree { base, dtb, dtb_size } => {
                write!(f, "{base:#x} overlaps the device tree at {dtb:#x}+{dtb_size:#x}")
            }
        }
    }
}

/// What the boot CPU found at this boot.
pub struct Found {
    pub area: &'static Area,
    /// Whether the area is in guest RAM and survives resets.
    pub persistent: bool,
    /// Whether a previous boot left its state there (this boot follows a reset).
    pub after_reset: bool,
    /// Why the area is not persistent, if it is not.
    pub unusable: Option<Unusable>,
}

/// Finds the area past the guest's footprint and checks it against the device tree.
/// Call on the boot CPU before any other CPU runs.
pub fn locate(dtb: usize) -> Found {
    // Only the symbol's address is taken: it marks the end of the footprint.
    let end = core::ptr::addr_of!(__guest_end) as usize;
    let base = end.next_multiple_of(AREA_ALIGN);
    let size = core::mem::size_of::<Area>();
    match check_place(dtb, base, size) {
        Err(why) => Found { area: &FALLBACK, persistent: false, after_reset: false, unusable: Some(why) },
        Ok(()) => {
            // SAFETY: [base, base + size) is guest RAM outside the image, its BSS and the
            // device tree (check_place), aligned for Area, and used by nothing else. Every
            // field is made of u64 cells, for which any bit pattern is a valid value.
            let area = unsafe { &*(base as *const Area) };
            let after_reset = area.magic.get() == MAGIC;
            if !after_reset {
                area.clear();
            }
            Found { area, persistent: true, after_reset, unusable: None }
        }
    }
}

fn check_place(dtb: usize, base: usize, size: usize) -> Result<(), Unusable> {
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.map_err(|_| Unusable::NoDeviceTree)?;
    let in_ram = fdt.memory().regions().any(|r| {
        let start = r.starting_address as usize;
        r.size.is_some_and(|len| start <= base && base + size <= start + len)
    });
    if !in_ram {
        return Err(Unusable::NotInRam { base, size });
    }
    let dtb_size = fdt.total_size();
    if base < dtb + dtb_size && dtb < base + size {
        return Err(Unusable::OverlapsDeviceTree { base, dtb, dtb_size });
    }
    Ok(())
}
