//! The arm64 Linux `Image` format and boot protocol (Linux
//! Documentation/arch/arm64/booting.rst), used to place a guest kernel and its device
//! tree in guest RAM. Pure logic, tested on the host.

use crate::mm::{align_down, align_up, Region, MIB};

/// "ARM\x64" at offset 0x38, little-endian (booting.rst §4).
pub const IMAGE_MAGIC: u32 = 0x644D_5241;
const MAGIC_OFFSET: usize = 0x38;
const TEXT_OFFSET_OFFSET: usize = 0x08;
const IMAGE_SIZE_OFFSET: usize = 0x10;
const FLAGS_OFFSET: usize = 0x18;
pub const HEADER_SIZE: usize = 0x40;
/// A kernel's base must be 2 MiB aligned; the image sits text_offset above it.
pub const KERNEL_BASE_ALIGN: u64 = 2 * MIB;
/// Images with image_size == 0 predate v3.17 and use this text_offset (booting.rst §4).
const LEGACY_TEXT_OFFSET: u64 = 0x80000;
/// flags bit 0: big-endian kernel.
const FLAG_BIG_ENDIAN: u64 = 1 << 0;
/// flags bit 3: the image may sit anywhere in RAM, not only near its base.
const FLAG_PLACE_ANYWHERE: u64 = 1 << 3;
/// The device tree must be 8-byte aligned and at most 2 MiB (booting.rst §2).
pub const DTB_ALIGN: u64 = 8;
pub const DTB_MAX_SIZE: u64 = 2 * MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    /// Bytes the kernel needs from its load address, BSS included; 0 if unknown.
    pub image_size: u64,
    pub flags: u64,
}

impl ImageHeader {
    pub fn big_endian(&self) -> bool {
        self.flags & FLAG_BIG_ENDIAN != 0
    }

    pub fn place_anywhere(&self) -> bool {
        self.flags & FLAG_PLACE_ANYWHERE != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    TooShort,
    BadMagic,
    /// No 2 MiB-aligned place in guest RAM holds the kernel without touching the other
    /// modules.
    NoRoom,
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

pub fn parse_header(bytes: &[u8]) -> Result<ImageHeader, ImageError> {
    if bytes.len() < HEADER_SIZE {
        return Err(ImageError::TooShort);
    }
    let magic = u32::from_le_bytes([
        bytes[MAGIC_OFFSET],
        bytes[MAGIC_OFFSET + 1],
        bytes[MAGIC_OFFSET + 2],
        bytes[MAGIC_OFFSET + 3],
    ]);
    if magic != IMAGE_MAGIC {
        return Err(ImageError::BadMagic);
    }
    let image_size = le64(bytes, IMAGE_SIZE_OFFSET);
    let text_offset = if image_size == 0 { LEGACY_TEXT_OFFSET } else { le64(bytes, TEXT_OFFSET_OFFSET) };
    Ok(ImageHeader { text_offset, image_size, flags: le64(bytes, FLAGS_OFFSET) })
}

/// Where a kernel runs: its load address (also the entry point) and the memory it
/// occupies there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPlacement {
    pub entry: u64,
    pub footprint: Region,
    /// True when the module already sits at `entry` and needs no copy.
    pub in_place: bool,
}

/// Chooses where the kernel in `module` runs. In place when the loader already put it at
/// a 2 MiB-aligned base plus text_offset with room for its whole footprint; otherwise
/// the lowest such place in `guest_ram` that overlaps neither `avoid` nor the module.
pub fn place_kernel(
    module: Region,
    header: &ImageHeader,
    guest_ram: &[Region],
    avoid: &[Region],
) -> Result<KernelPlacement, ImageError> {
    let footprint_size = align_up(header.image_size.max(module.size), 4096);
    let fits = |load: u64, skip_module: bool| {
        let footprint = Region::new(load, footprint_size);
        guest_ram.iter().any(|r| r.contains_region(&footprint))
            && avoid.iter().all(|a| !a.overlaps(&footprint))
            && (skip_module || !module.overlaps(&footprint))
    };
    let aligned_in_place = (module.base.wrapping_sub(header.text_offset)).is_multiple_of(KERNEL_BASE_ALIGN);
    if aligned_in_place && header.place_anywhere() && fits(module.base, true) {
        return Ok(KernelPlacement {
            entry: module.base,
            footprint: Region::new(module.base, footprint_size),
            in_place: true,
        });
    }
    for ram in guest_ram {
        let mut base = align_up(ram.base, KERNEL_BASE_ALIGN);
        while base + header.text_offset + footprint_size <= ram.end() {
            let load = base + header.text_offset;
            if fits(load, false) {
                return Ok(KernelPlacement {
                    entry: load,
                    footprint: Region::new(load, footprint_size),
                    in_place: false,
                });
            }
            base += KERNEL_BASE_ALIGN;
        }
    }
    Err(ImageError::NoRoom)
}

/// The lowest 2 MiB-aligned place in `ram` for `size` bytes clear of `avoid` (an initrd
/// the loader put outside its VM's RAM: anywhere in RAM will do, booting.rst).
pub fn place_low(size: u64, ram: Region, avoid: &[Region]) -> Option<u64> {
    let mut base = align_up(ram.base, KERNEL_BASE_ALIGN);
    while base.checked_add(size)? <= ram.end() {
        let slot = Region::new(base, size);
        if avoid.iter().all(|a| !a.overlaps(&slot)) {
            return Some(base);
        }
        base += KERNEL_BASE_ALIGN;
    }
    None
}

/// Chooses where the guest's device tree goes: as high in guest RAM as possible, clear
/// of `avoid`, so it never sits in a kernel's way.
pub fn place_dtb(size: u64, guest_ram: &[Region], avoid: &[Region]) -> Option<u64> {
    if size > DTB_MAX_SIZE {
        return None;
    }
    for ram in guest_ram.iter().rev() {
        let mut addr = align_down(ram.end().checked_sub(DTB_MAX_SIZE)?, DTB_MAX_SIZE);
        while addr >= ram.base {
            let slot = Region::new(addr, align_up(size, DTB_ALIGN));
            if avoid.iter().all(|a| !a.overlaps(&slot)) {
                return Some(addr);
            }
            addr = addr.checked_sub(DTB_MAX_SIZE)?;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(text_offset: u64, image_size: u64, flags: u64) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[TEXT_OFFSET_OFFSET..TEXT_OFFSET_OFFSET + 8].copy_from_slice(&text_offset.to_le_bytes());
        h[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&image_size.to_le_bytes());
        h[FLAGS_OFFSET..FLAGS_OFFSET + 8].copy_from_slice(&flags.to_le_bytes());
        h[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(b"ARM\x64");
        h
    }

    const RAM: [Region; 1] = [Region::new(0x4220_0000, 0xC000_0000 - 0x4220_0000)];

    #[test]
    fn parses_header_and_legacy_default() {
        let h = parse_header(&header_bytes(0, 0x200_0000, 0xA)).unwrap();
        assert_eq!(h, ImageHeader { text_offset: 0, image_size: 0x200_0000, flags: 0xA });
        assert!(h.place_anywhere());
        assert!(!h.big_endian());
        assert_eq!(parse_header(&header_bytes(0x1234, 0, 0)).unwrap().text_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(parse_header(&[0u8; HEADER_SIZE]), Err(ImageError::BadMagic));
        assert_eq!(parse_header(&[0u8; 8]), Err(ImageError::TooShort));
    }

    #[test]
    fn runs_in_place_when_aligned() {
        let h = parse_header(&header_bytes(0, 0x280_0000, 0xA)).unwrap();
        let p = place_kernel(Region::new(0x4800_0000, 0x200_0000), &h, &RAM, &[]).unwrap();
        assert!(p.in_place);
        assert_eq!(p.entry, 0x4800_0000);
        assert_eq!(p.footprint, Region::new(0x4800_0000, 0x280_0000));
    }

    #[test]
    fn moves_when_bss_would_overrun_the_ramdisk() {
        let h = parse_header(&header_bytes(0, 0x400_0000, 0xA)).unwrap();
        let ramdisk = Region::new(0x4A00_0000, 0x10_0000);
        let p = place_kernel(Region::new(0x4800_0000, 0x200_0000), &h, &RAM, &[ramdisk]).unwrap();
        assert!(!p.in_place);
        assert_eq!(p.entry, 0x4220_0000);
        assert!(!p.footprint.overlaps(&ramdisk));
    }

    #[test]
    fn honours_text_offset_when_moving() {
        let h = parse_header(&header_bytes(0x8_0000, 0x10_0000, 0xA)).unwrap();
        let p = place_kernel(Region::new(0x4810_0000, 0x10_0000), &h, &RAM, &[]).unwrap();
        assert_eq!(p.entry % KERNEL_BASE_ALIGN, 0x8_0000);
        assert!(!p.in_place);
    }

    #[test]
    fn dtb_goes_high_and_clear() {
        let kernel = Region::new(0xBFE0_0000, 0x1000);
        assert_eq!(place_dtb(0x2000, &RAM, &[]), Some(0xBFE0_0000));
        assert_eq!(place_dtb(0x2000, &RAM, &[kernel]), Some(0xBFC0_0000));
        assert_eq!(place_dtb(3 * MIB, &RAM, &[]), None);
    }
}
