//! Check 5, `reset_storm`: the VM resets itself N times (PSCI SYSTEM_RESET, DEN0022
//! §5.1.10) before it runs the other checks, so they see a VM that has been through
//! resets. The boot count lives in RAM a reset does not touch: the last page of R, well
//! above the device tree Cairn places at the start of R's last 2 MiB block (like
//! guests/power, whose area is just past its image). Cairn restores the kernel image from
//! a pristine copy at every reset, so a marker inside the image ([`IN_IMAGE`]) must read
//! pristine at every boot; and R itself must be the same range at every boot.
//!
//! A magic value tells a boot after a reset from a cold one. The last boot clears it, so a
//! reboot of the whole machine (QEMU keeps RAM across a machine reset) starts over.

use guestkit::shared::Slot;
use guestkit::spec::psci;
use guestkit::{println, smccc, Checks};

use crate::layout::{Layout, Range, PAGE};

/// "ISOLSTRM": the area holds a previous boot's count.
const MAGIC: u64 = 0x4953_4F4C_5354_524D;
/// What [`IN_IMAGE`] holds in a pristine image; not zero, so it is in `.data`, not `.bss`.
const PRISTINE: u64 = 0x1A6E_5EED_1A6E_5EED;

/// Inside the image: every boot writes its number here, and a reset must put it back.
static IN_IMAGE: Slot<u64> = Slot::new(PRISTINE);

/// Survives resets; written only by the boot vCPU.
#[repr(C)]
struct Area {
    magic: Slot<u64>,
    /// Boots so far, this one included.
    boots: Slot<u64>,
    /// R as the first boot saw it.
    ram_start: Slot<u64>,
    ram_end: Slot<u64>,
    /// Boots that found [`IN_IMAGE`] not pristine, or R moved.
    dirty_images: Slot<u64>,
    moved_ram: Slot<u64>,
    /// SYSTEM_RESET calls that returned.
    returned: Slot<u64>,
}

impl Area {
    fn start_over(&self, ram: Range) {
        for word in [&self.boots, &self.dirty_images, &self.moved_ram, &self.returned] {
            word.set(0);
        }
        self.ram_start.set(ram.start);
        self.ram_end.set(ram.end);
        self.magic.set(MAGIC);
    }
}

/// How the storm went, for the last boot's report.
pub struct Storm {
    /// Resets asked for (`resets=`): the checks run at boot `resets` (the first boot
    /// counts, so resets - 1 resets happen).
    target: u64,
    boots: u64,
    dirty_images: u64,
    moved_ram: u64,
    returned: u64,
    /// Why there was no storm.
    unusable: Option<&'static str>,
}

/// Where the area goes: the last page of R, clear of the image and the device tree.
fn place(layout: &Layout) -> Result<&'static Area, &'static str> {
    let ram = layout.ram;
    if ram.size() < PAGE {
        return Err("no RAM in the device tree");
    }
    let page = Range::sized(ram.end - PAGE, PAGE);
    if page.overlaps(&layout.image) || page.overlaps(&layout.dtb) {
        return Err("the last page of RAM holds the image or the device tree");
    }
    // SAFETY: the page is this VM's RAM, clear of its image (and so of its stacks and BSS)
    // and of its device tree, page-aligned, and used by nothing else; Area is u64 cells,
    // for which any bit pattern is a value.
    Ok(unsafe { &*(page.start as *const Area) })
}

/// Counts this boot; below `target` boots, prints a line and resets the VM (and returns
/// only if SYSTEM_RESET does). Call first thing, on the boot vCPU alone.
pub fn boot(layout: &Layout, target: u64) -> Storm {
    let area = match place(layout) {
        Ok(area) => area,
        Err(why) => {
            return Storm { target, boots: 1, dirty_images: 0, moved_ram: 0, returned: 0, unusable: Some(why) };
        }
    };
    if area.magic.get() != MAGIC {
        area.start_over(layout.ram);
    }
    let boots = area.boots.get() + 1;
    area.boots.set(boots);
    if IN_IMAGE.get() != PRISTINE {
        area.dirty_images.set(area.dirty_images.get() + 1);
    }
    IN_IMAGE.set(boots);
    if Range::new(area.ram_start.get(), area.ram_end.get()) != layout.ram {
        area.moved_ram.set(area.moved_ram.get() + 1);
    }
    if boots < target {
        println!("isolation: reset {boots}");
        smccc::hvc0(psci::SYSTEM_RESET.into(), 0, 0, 0);
        area.returned.set(area.returned.get() + 1);
    }
    let storm = Storm {
        target,
        boots,
        dirty_images: area.dirty_images.get(),
        moved_ram: area.moved_ram.get(),
        returned: area.returned.get(),
        unusable: None,
    };
    // The last boot: a later cold boot of the same RAM must count from the start.
    area.magic.set(0);
    storm
}

/// Records `reset_storm`.
pub fn report(t: &mut Checks, s: &Storm) {
    let reached = s.boots == s.target.max(1);
    t.check(
        "reset_storm",
        s.unusable.is_none() && reached && s.dirty_images == 0 && s.moved_ram == 0 && s.returned == 0,
        format_args!(
            "boot {} of {}; {} boots found the image not restored, {} found R moved, SYSTEM_RESET returned {} \
             times{}{}",
            s.boots,
            s.target,
            s.dirty_images,
            s.moved_ram,
            s.returned,
            if s.unusable.is_some() { "; no storm: " } else { "" },
            s.unusable.unwrap_or("")
        ),
    );
    t.note(format_args!("reset_storm: the checks ran at boot {} after {} resets", s.boots, s.boots - 1));
}
