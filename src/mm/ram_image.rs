//! A VM's RAM packed into its snapshot slot: a map with one bit per 4 KiB page, then only
//! the pages that are not all zero, in order. A guest that has touched little of its RAM
//! needs little room; restoring writes every page (the zero ones as zeroes), so RAM comes
//! back exactly as it was. Pure: it works on slices, which the bare-metal side makes from
//! the identity-mapped RAM and slot.
//!
//! Slot layout, in 64-bit words: [`MAGIC`], the RAM size in bytes, the pages stored, then
//! the map (one bit per page, page n at word n / 64, bit n % 64), then the pages.

pub const PAGE: usize = 4096;
const WORD: usize = 8;
const BITS_PER_WORD: usize = 64;
/// "CAIRNRAM": marks a slot that holds an image.
const MAGIC: u64 = u64::from_le_bytes(*b"CAIRNRAM");
const HEADER_WORDS: usize = 3;

/// What a stored image takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Pages that are not all zero, and so are in the slot.
    pub pages: usize,
    /// Bytes of the slot in use.
    pub bytes: usize,
}

/// Why an image is not stored (the slot is left as it was) or not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The RAM's non-zero pages need `needed` bytes; the slot has `room`.
    NoRoom { needed: usize, room: usize },
    /// The slot holds no image of RAM this size.
    NoImage,
}

fn map_words(ram: usize) -> usize {
    (ram / PAGE).div_ceil(BITS_PER_WORD)
}

fn pages_at(ram: usize) -> usize {
    (HEADER_WORDS + map_words(ram)) * WORD
}

fn is_zero(page: &[u8]) -> bool {
    // Whole words at a time: the scan covers all of a VM's RAM.
    page.chunks_exact(WORD).all(|w| w == [0u8; WORD])
}

/// The bytes an image of `ram` takes in a slot.
pub fn needed(ram: &[u8]) -> Stored {
    let pages = ram.chunks_exact(PAGE).filter(|p| !is_zero(p)).count();
    Stored { pages, bytes: pages_at(ram.len()) + pages * PAGE }
}

/// Packs `ram` (a whole number of pages) into `slot`, if it fits; else the slot is not
/// touched.
pub fn store(ram: &[u8], slot: &mut [u8]) -> Result<Stored, Error> {
    let stored = needed(ram);
    if stored.bytes > slot.len() {
        return Err(Error::NoRoom { needed: stored.bytes, room: slot.len() });
    }
    let (head, pages) = slot.split_at_mut(pages_at(ram.len()));
    head.fill(0);
    put_word(head, 0, MAGIC);
    put_word(head, 1, ram.len() as u64);
    put_word(head, 2, stored.pages as u64);
    let mut out = pages.chunks_exact_mut(PAGE);
    for (n, page) in ram.chunks_exact(PAGE).enumerate() {
        if is_zero(page) {
            continue;
        }
        let word = HEADER_WORDS + n / BITS_PER_WORD;
        put_word(head, word, word_at(head, word) | 1 << (n % BITS_PER_WORD));
        if let Some(dst) = out.next() {
            dst.copy_from_slice(page);
        }
    }
    Ok(stored)
}

/// Unpacks the image in `slot` into `ram`, which must be the size it was stored from;
/// else `ram` is not touched. Calls `written` with the offset of each page written (for
/// cache maintenance); zero pages are written as zeroes.
pub fn load(slot: &[u8], ram: &mut [u8], mut written: impl FnMut(usize)) -> Result<Stored, Error> {
    let image = check(slot, ram.len())?;
    let start = pages_at(ram.len());
    let mut stored = slot[start..].chunks_exact(PAGE);
    for (n, page) in ram.chunks_exact_mut(PAGE).enumerate() {
        let in_slot = word_at(slot, HEADER_WORDS + n / BITS_PER_WORD) & 1 << (n % BITS_PER_WORD) != 0;
        match in_slot.then(|| stored.next()).flatten() {
            Some(src) => page.copy_from_slice(src),
            None => page.fill(0),
        }
        written(n * PAGE);
    }
    Ok(image)
}

/// Whether `slot` holds a whole image of `ram` bytes of RAM, and what it takes.
pub fn check(slot: &[u8], ram: usize) -> Result<Stored, Error> {
    let start = pages_at(ram);
    if slot.len() < start || word_at(slot, 0) != MAGIC || word_at(slot, 1) != ram as u64 {
        return Err(Error::NoImage);
    }
    let count = word_at(slot, 2) as usize;
    let mapped: u32 = (0..map_words(ram)).map(|w| word_at(slot, HEADER_WORDS + w).count_ones()).sum();
    if mapped as usize != count || start + count * PAGE > slot.len() {
        return Err(Error::NoImage);
    }
    Ok(Stored { pages: count, bytes: start + count * PAGE })
}

fn word_at(bytes: &[u8], n: usize) -> u64 {
    let mut w = [0u8; WORD];
    w.copy_from_slice(&bytes[n * WORD..(n + 1) * WORD]);
    u64::from_le_bytes(w)
}

fn put_word(bytes: &mut [u8], n: usize, value: u64) {
    bytes[n * WORD..(n + 1) * WORD].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// 200 pages, a few of them written.
    fn ram() -> Vec<u8> {
        let mut ram = vec![0u8; 200 * PAGE];
        for (n, byte) in [(0, 1u8), (63, 2), (64, 3), (130, 4), (199, 5)] {
            ram[n * PAGE + 17] = byte;
        }
        ram[130 * PAGE + PAGE - 1] = 9;
        ram
    }

    #[test]
    fn only_non_zero_pages_take_room() {
        let r = ram();
        let s = needed(&r);
        assert_eq!(s.pages, 5);
        // 3 header words and 4 map words (200 bits), then 5 pages.
        assert_eq!(s.bytes, 7 * 8 + 5 * PAGE);
    }

    #[test]
    fn an_image_round_trips_over_other_contents() {
        let r = ram();
        let mut slot = vec![0xAAu8; 8 * PAGE];
        assert_eq!(store(&r, &mut slot).unwrap().pages, 5);
        let mut back = vec![0x55u8; r.len()];
        let mut written = 0;
        load(&slot, &mut back, |_| written += 1).unwrap();
        assert!(back == r, "every page as stored, zero pages zeroed");
        assert_eq!(written, 200);
    }

    #[test]
    fn a_slot_too_small_is_left_alone() {
        let r = ram();
        let mut slot = vec![0xAAu8; 5 * PAGE];
        assert_eq!(store(&r, &mut slot), Err(Error::NoRoom { needed: 7 * 8 + 5 * PAGE, room: 5 * PAGE }));
        assert!(slot.iter().all(|&b| b == 0xAA));
    }

    #[test]
    fn an_empty_or_foreign_slot_loads_nothing() {
        let mut back = vec![7u8; 4 * PAGE];
        assert_eq!(load(&[0u8; PAGE], &mut back, |_| {}), Err(Error::NoImage));
        let mut slot = vec![0u8; 4 * PAGE];
        store(&vec![1u8; 2 * PAGE], &mut slot).unwrap();
        assert_eq!(load(&slot, &mut back, |_| {}), Err(Error::NoImage), "stored from 2 pages, not 4");
        assert!(back.iter().all(|&b| b == 7));
    }
}
