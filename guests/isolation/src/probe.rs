//! Check 1, `ram_is_its_own`: one 32-bit load at the start of each probed page, sorted
//! into readable and aborting, against what the guest's own device tree gives it.
//!
//! Probing all 4 GiB page by page would take a trap per page under TCG, so the guest probes
//! - every page of the device window [0x0800_0000, 0x0A00_0000), where it may read only its
//!   GIC frames (the distributor; GICv3 its own redistributors, 128 KiB per vCPU; GICv2
//!   the CPU interface), its UART page and frames its device tree lists: everything else
//!   (the GIC's ITS or virtualization frames, other vCPUs' redistributors, other VMs'
//!   devices) must abort;
//! - in [0x4000_0000, 0x1_0000_0000), the first and the last page of every 2 MiB block
//!   (each VM's RAM is whole 2 MiB blocks), and every page of the blocks just below and
//!   just above R: the pages of R must read, every other page must abort (other VMs' RAM,
//!   Cairn's own memory and the pristine copies of the images).
//!
//! An abort must be the synchronous external data abort Cairn injects: ESR_EL1.EC 0x25
//! with DFSC 0x10 and FAR_EL1 the address loaded.

use core::arch::asm;
use core::fmt::Write;

use guestkit::gic::Version;
use guestkit::text::Text;
use guestkit::{catch_exception, println, time, Caught, Checks};

use crate::layout::{Layout, Range, Ranges, DEVICE_WINDOW, PAGE, RAM_WINDOW};

/// Cairn gives each VM whole 2 MiB blocks of RAM (its partition's RAM granule).
const BLOCK: u64 = 2 * 1024 * 1024;
/// The distributor is one 64 KiB frame (IHI 0069H §12.8, IHI 0048B §4.1.2); a GICv3
/// redistributor is two, RD_base and SGI_base (IHI 0069H §12.10).
const GICD_SIZE: u64 = 0x1_0000;
const GICR_SIZE_PER_VCPU: u64 = 0x2_0000;
/// ESR_EL1.EC of a data abort taken without a change in exception level, and the DFSC of
/// a synchronous external abort not on a translation table walk (Arm ARM D24.2.40).
const EC_DATA_ABORT_SAME_EL: u64 = 0x25;
const FSC_EXTERNAL_ABORT: u64 = 0x10;
/// Readable pages outside R the pattern scan looks at (there should be none).
pub const MAX_FOREIGN: usize = 64;
/// Unexpected outcomes quoted in a failure's detail.
const MAX_QUOTED: u32 = 6;
const MICROS_PER_MILLI: u64 = 1_000;

/// What a probed page should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Readable,
    Aborts,
    /// A frame the device tree lists but Cairn may leave unbacked (GICv2's CPU interface
    /// beyond what the hardware's virtual interface implements, a passed-through device).
    Either,
}

/// How one load ended.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Read,
    Aborted,
    /// Any other exception, or an abort with the wrong syndrome or address.
    Other(Caught),
}

/// What the probe found; the pattern scan reads the foreign pages again.
pub struct Probed {
    pub pages: u32,
    pub readable: u32,
    pub aborted: u32,
    /// Readable pages in the RAM window outside R (the first [`MAX_FOREIGN`]).
    pub foreign: [u64; MAX_FOREIGN],
    pub foreign_len: usize,
    /// Listed-but-optional device pages that aborted.
    optional_aborted: u32,
    readable_but_must_abort: u32,
    aborted_but_must_read: u32,
    other_exceptions: u32,
    quoted: Text,
    quotes: u32,
}

impl Probed {
    fn new() -> Probed {
        Probed {
            pages: 0,
            readable: 0,
            aborted: 0,
            foreign: [0; MAX_FOREIGN],
            foreign_len: 0,
            optional_aborted: 0,
            readable_but_must_abort: 0,
            aborted_but_must_read: 0,
            other_exceptions: 0,
            quoted: Text::new(),
            quotes: 0,
        }
    }

    pub fn foreign_pages(&self) -> &[u64] {
        &self.foreign[..self.foreign_len]
    }

    fn quote(&mut self, what: core::fmt::Arguments<'_>) {
        if self.quotes < MAX_QUOTED {
            let _ = write!(self.quoted, "{what}; ");
        }
        self.quotes += 1;
    }

    fn record(&mut self, ram: Range, page: u64, expect: Expect, outcome: Outcome) {
        self.pages += 1;
        match outcome {
            Outcome::Read => self.readable += 1,
            Outcome::Aborted => self.aborted += 1,
            Outcome::Other(c) => {
                self.other_exceptions += 1;
                self.quote(format_args!("{page:#x}: ESR_EL1 {:#x} FAR_EL1 {:#x}", c.esr, c.far));
                return;
            }
        }
        match (expect, outcome) {
            (Expect::Aborts, Outcome::Read) => {
                self.readable_but_must_abort += 1;
                self.quote(format_args!("{page:#x} readable"));
                if RAM_WINDOW.contains(page) && !ram.contains(page) && self.foreign_len < MAX_FOREIGN {
                    self.foreign[self.foreign_len] = page;
                    self.foreign_len += 1;
                }
            }
            (Expect::Readable, Outcome::Aborted) => {
                self.aborted_but_must_read += 1;
                self.quote(format_args!("{page:#x} aborts"));
            }
            (Expect::Either, Outcome::Aborted) => self.optional_aborted += 1,
            _ => {}
        }
    }

    fn ok(&self) -> bool {
        self.readable_but_must_abort == 0 && self.aborted_but_must_read == 0 && self.other_exceptions == 0
    }
}

/// The pages the guest must be able to read, and those it may, in the device window.
struct Allowed {
    must: [Range; 3],
    may: Ranges,
    /// GICv2: the whole CPU interface frame the device tree lists.
    gicc: Range,
}

impl Allowed {
    fn of(layout: &Layout) -> Allowed {
        let mut must = [Range::default(); 3];
        let mut gicc = Range::default();
        if let Some(gic) = layout.gic {
            must[0] = Range::sized(gic.distributor.base as u64, GICD_SIZE);
            must[1] = match gic.version {
                Version::V3 => {
                    Range::sized(gic.redistributors[0].base as u64, GICR_SIZE_PER_VCPU * layout.cpus.count() as u64)
                }
                // The first page of GICC holds every register Linux uses but GICC_DIR.
                Version::V2 => Range::sized(gic.cpu_interface.base as u64, PAGE),
            };
            if gic.version == Version::V2 {
                gicc = Range::sized(gic.cpu_interface.base as u64, gic.cpu_interface.size as u64).pages();
            }
        }
        must[2] = layout.uart.unwrap_or_default();
        Allowed { must, may: layout.devices, gicc }
    }

    fn expect(&self, ram: Range, page: u64) -> Expect {
        if ram.contains(page) {
            Expect::Readable
        } else if RAM_WINDOW.contains(page) {
            Expect::Aborts
        } else if self.must.iter().any(|r| r.contains(page)) {
            Expect::Readable
        } else if self.gicc.contains(page) || self.may.contains(page) {
            Expect::Either
        } else {
            Expect::Aborts
        }
    }
}

/// One 32-bit load at `addr`.
fn load(addr: u64) -> Outcome {
    let caught = catch_exception(|| {
        // SAFETY: a single load, of RAM or of a device register whose read has no effect
        // that matters to this guest (a page's first register: GICD_CTLR, GICR_CTLR,
        // GICC_CTLR, a UART's or RTC's data register), or of an address Cairn answers with
        // an abort, which catch_exception skips.
        unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) _, options(nostack)) }
    });
    match caught {
        None => Outcome::Read,
        Some(c) if c.class() == EC_DATA_ABORT_SAME_EL && c.fault_status() == FSC_EXTERNAL_ABORT && c.far == addr => {
            Outcome::Aborted
        }
        Some(c) => Outcome::Other(c),
    }
}

/// Calls `f` on every page to probe, in ascending order.
fn for_each_probe(ram: Range, mut f: impl FnMut(u64)) {
    for page in (DEVICE_WINDOW.start..DEVICE_WINDOW.end).step_by(PAGE as usize) {
        f(page);
    }
    let below = (ram.start & !(BLOCK - 1)).wrapping_sub(BLOCK);
    let above = ram.end.next_multiple_of(BLOCK);
    for block in (RAM_WINDOW.start..RAM_WINDOW.end).step_by(BLOCK as usize) {
        if block == below || block == above {
            for page in (block..block + BLOCK).step_by(PAGE as usize) {
                f(page);
            }
        } else {
            f(block);
            f(block + BLOCK - PAGE);
        }
    }
}

/// Runs the probe and records `ram_is_its_own`.
pub fn run(t: &mut Checks, layout: &Layout) -> Probed {
    let allowed = Allowed::of(layout);
    let ram = layout.ram;
    let mut probed = Probed::new();
    let started = time::now();
    for_each_probe(ram, |page| probed.record(ram, page, allowed.expect(ram, page), load(page)));
    let ticks = time::now() - started;
    let one_region = layout.ram_regions == 1 && ram.size() != 0;
    t.check(
        "ram_is_its_own",
        probed.ok() && one_region,
        format_args!(
            "{} pages probed, {} readable, {} aborted: {} readable that must abort, {} aborting that must read, \
             {} other exceptions; {} memory regions; {}",
            probed.pages,
            probed.readable,
            probed.aborted,
            probed.readable_but_must_abort,
            probed.aborted_but_must_read,
            probed.other_exceptions,
            layout.ram_regions,
            probed.quoted
        ),
    );
    t.note(format_args!(
        "ram_is_its_own: R = {:#x}..{:#x}; {} pages probed, {} readable, {} aborted ({} listed device pages \
         aborted, allowed)",
        ram.start, ram.end, probed.pages, probed.readable, probed.aborted, probed.optional_aborted
    ));
    println!("isolation: probed {} pages, {} readable", probed.pages, probed.readable);
    println!(
        "isolation: probe took {} ms ({ticks} ticks at {} Hz)",
        time::micros(ticks) / MICROS_PER_MILLI,
        time::frequency()
    );
    probed
}
