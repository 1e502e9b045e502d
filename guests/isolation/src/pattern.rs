//! Check 2, `no_foreign_pattern`: the other VM (Linux, in the multi-VM test) fills pages of
//! its own memory with the 16-byte pattern "CAIRN-FOREIGN-PG". If any byte of its RAM were
//! mapped into this VM, the pattern would show up here: the guest scans all of R but its
//! own image, and every page outside R that the probe found readable, at every 16-byte
//! aligned offset.
//!
//! Device pages are not scanned: they are registers, not memory, and reading them has
//! effects (GICC_IAR acknowledges an interrupt, a UART's data register pops its FIFO).
//!
//! The guest must not carry the pattern itself, or it would find its own copy: the needle
//! is stored XOR-ed with a mask and unmasked at run time into registers, and the image is
//! skipped anyway.
//!
//! The same scan looks at the start of every page of R for boot images that are not its
//! own: an arm64 Image, a flattened device tree or a cpio archive (an initramfs) other than
//! its own image, its own device tree and its own initrd. Where the loader put another
//! VM's modules (or the machine's device tree, with every VM's command line) inside this
//! VM's RAM, Cairn must not leave them there for it to read.

use core::hint::black_box;

use guestkit::{catch_exception, time, Checks};

use crate::layout::{Layout, Range, PAGE};
use crate::probe::Probed;

/// The pattern is 16 bytes, written at 16-byte aligned offsets.
const STRIDE: u64 = 16;
const HALF: u64 = 8;
/// What the needle is XOR-ed with in the image.
const MASK: u64 = 0x5AA5_C33C_9669_0FF0;
/// The needle, each 8-byte half little-endian (as a 64-bit load sees it) and masked. Only
/// the masked values are in the image: the string is used at compile time alone.
const MASKED_NEEDLE: [u64; 2] = masked(*b"CAIRN-FOREIGN-PG");
const MICROS_PER_MILLI: u64 = 1_000;

/// An arm64 Image has "ARM\x64" at byte 0x38 of its header (Linux's
/// Documentation/arch/arm64/booting.rst).
const IMAGE_MAGIC_OFFSET: u64 = 0x38;
const IMAGE_MAGIC: u32 = u32::from_le_bytes(*b"ARM\x64");
/// A flattened device tree starts with 0xd00dfeed, big-endian (DT spec v0.4 §5.2).
const FDT_MAGIC: u32 = 0xD00D_FEED;
/// A cpio archive in the "newc" format an initramfs uses starts with "070701".
const CPIO_MAGIC: u64 = u64::from_le_bytes(*b"070701\0\0");
const CPIO_MAGIC_MASK: u64 = (1 << 48) - 1;
/// How much of a found Image is compared with this guest's own, to tell a stale copy of
/// itself from another VM's kernel.
const IMAGE_COMPARED: u64 = PAGE;

const fn masked(pattern: [u8; 16]) -> [u64; 2] {
    let mut halves = [0u64; 2];
    let mut i = 0;
    while i < 16 {
        halves[i / 8] |= (pattern[i] as u64) << (8 * (i % 8));
        i += 1;
    }
    [halves[0] ^ MASK, halves[1] ^ MASK]
}

/// The needle, unmasked at run time; `black_box` keeps the compiler from folding it back
/// into a constant in the image.
fn needle() -> [u64; 2] {
    let mask = black_box(MASK);
    [MASKED_NEEDLE[0] ^ mask, MASKED_NEEDLE[1] ^ mask]
}

/// Where the pattern was found.
#[derive(Default)]
struct Found {
    count: u64,
    first: Option<u64>,
}

impl Found {
    fn add(&mut self, addr: u64) {
        self.count += 1;
        self.first.get_or_insert(addr);
    }
}

/// Scans `range` of this VM's own RAM; every load completes.
fn scan_own(range: Range, needle: [u64; 2], found: &mut Found) -> u64 {
    let start = range.start.next_multiple_of(STRIDE);
    for addr in (start..range.end.saturating_sub(HALF)).step_by(STRIDE as usize) {
        // SAFETY: addr and addr + 8 lie in R, this VM's RAM, 8-byte aligned; reading RAM
        // has no side effects.
        let first = unsafe { core::ptr::read_volatile(addr as *const u64) };
        // SAFETY: as above.
        if first == needle[0] && unsafe { core::ptr::read_volatile((addr + HALF) as *const u64) } == needle[1] {
            found.add(addr);
        }
    }
    range.end.saturating_sub(start)
}

/// One 64-bit load that may abort.
fn load_caught(addr: u64) -> Option<u64> {
    let mut value = 0;
    let caught = catch_exception(|| {
        // SAFETY: a single load of a page the probe read; should it abort after all,
        // catch_exception skips it.
        unsafe { core::arch::asm!("ldr {v}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack)) }
    });
    caught.is_none().then_some(value)
}

/// Scans a readable page outside R, every load guarded.
fn scan_foreign(page: u64, needle: [u64; 2], found: &mut Found) {
    for addr in (page..page + PAGE).step_by(STRIDE as usize) {
        let (Some(a), Some(b)) = (load_caught(addr), load_caught(addr + HALF)) else { return };
        if [a, b] == needle {
            found.add(addr);
        }
    }
}

/// What kind of boot image a page starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BootImage {
    Kernel,
    DeviceTree,
    Initramfs,
}

fn read_u32(addr: u64) -> u32 {
    // SAFETY: addr lies in R, this VM's RAM, 4-byte aligned; reading RAM has no effects.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn read_u64(addr: u64) -> u64 {
    // SAFETY: as for read_u32, 8-byte aligned.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// The boot image `page` (in R) starts with, if any.
fn boot_image_at(page: u64) -> Option<BootImage> {
    if read_u32(page + IMAGE_MAGIC_OFFSET) == IMAGE_MAGIC {
        Some(BootImage::Kernel)
    } else if u32::from_be(read_u32(page)) == FDT_MAGIC {
        Some(BootImage::DeviceTree)
    } else if read_u64(page) & CPIO_MAGIC_MASK == CPIO_MAGIC {
        Some(BootImage::Initramfs)
    } else {
        None
    }
}

/// Whether the Image at `page` begins as this guest's own image does (a stale copy of the
/// guest's own module, where Cairn moved it within R).
fn same_as_own(page: u64, own: Range) -> bool {
    (0..IMAGE_COMPARED.min(own.size())).step_by(HALF as usize).all(|o| read_u64(page + o) == read_u64(own.start + o))
}

/// The first boot image in R that is not this guest's own, and how many there are.
fn foreign_boot_images(layout: &Layout) -> (u32, Option<(u64, BootImage)>) {
    let (mut count, mut first) = (0, None);
    for page in (layout.ram.start..layout.ram.end).step_by(PAGE as usize) {
        let own = match boot_image_at(page) {
            None => continue,
            Some(BootImage::Kernel) => page == layout.image.start || same_as_own(page, layout.image),
            Some(BootImage::DeviceTree) => page == layout.dtb.start,
            Some(BootImage::Initramfs) => layout.initrd.is_some_and(|r| r.start == page),
        };
        if !own {
            count += 1;
            first = first.or(boot_image_at(page).map(|kind| (page, kind)));
        }
    }
    (count, first)
}

/// Runs the scan and records `no_foreign_pattern`.
pub fn run(t: &mut Checks, layout: &Layout, probed: &Probed) {
    let needle = needle();
    let mut found = Found::default();
    let started = time::now();
    let (ram, image) = (layout.ram, layout.image);
    let below = Range::new(ram.start, image.start.clamp(ram.start, ram.end));
    let above = Range::new(image.end.clamp(ram.start, ram.end), ram.end);
    let mut scanned = scan_own(below, needle, &mut found) + scan_own(above, needle, &mut found);
    for &page in probed.foreign_pages() {
        scan_foreign(page, needle, &mut found);
        scanned += PAGE;
    }
    let (images, first_image) = foreign_boot_images(layout);
    let ms = time::micros(time::now() - started) / MICROS_PER_MILLI;
    t.check(
        "no_foreign_pattern",
        found.count == 0 && images == 0,
        format_args!(
            "the foreign pattern is at {} places, the first at {:x?}; {images} boot images in R not its own, the \
             first {first_image:x?}",
            found.count, found.first
        ),
    );
    t.note(format_args!(
        "no_foreign_pattern: scanned {scanned} bytes ({} readable pages outside R) in {ms} ms, image {:#x}..{:#x} \
         skipped",
        probed.foreign_pages().len(),
        image.start,
        image.end
    ));
}
