//! Where a machine's RAM goes once a VM is built, as one console line: what the guest
//! gets, what Cairn keeps for itself (its image and heap, with the heap's live bytes) and
//! the pristine copies of the guest's images a reset restarts from.

use core::fmt;

use super::{KIB, MIB};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUse {
    /// Guest RAM, bytes.
    pub guest: u64,
    /// Cairn's own region (image, BSS and heap, rounded out to 2 MiB blocks), bytes.
    pub cairn: u64,
    /// Cairn's image and BSS, bytes.
    pub image: u64,
    /// The heap's size, and the bytes allocated from it: the host device tree copy, page
    /// tables, the VM, its vCPUs, vGIC model and device tree.
    pub heap: u64,
    pub heap_in_use: u64,
    /// The reserve holding pristine copies of the guest's kernel and initramfs, bytes.
    pub pristine: u64,
    /// The VM's snapshot slot (`cairn.snapshot`), bytes.
    pub snapshot: u64,
    /// RAM no VM got and Cairn does not use (what contiguous guest RAM leaves over, such
    /// as the piece below Cairn's image), bytes.
    pub unused: u64,
}

/// Bytes as KiB, rounded up: a non-empty allocation never shows as 0.
fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(KIB)
}

impl fmt::Display for MemoryUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory: guest {} MiB; Cairn {} MiB (image {} KiB, heap {} MiB with {} KiB in use); pristine images {} MiB; snapshot slot {} MiB; unused {} MiB",
            self.guest / MIB,
            self.cairn / MIB,
            kib(self.image),
            self.heap / MIB,
            kib(self.heap_in_use),
            self.pristine / MIB,
            self.snapshot / MIB,
            self.unused / MIB
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn one_line_in_the_units_a_reader_compares() {
        let usage = MemoryUse {
            guest: 988 * MIB,
            cairn: 34 * MIB,
            image: 400 * KIB + 1,
            heap: 32 * MIB,
            heap_in_use: 1536 * KIB,
            pristine: 40 * MIB,
            snapshot: 0,
            unused: 2 * MIB,
        };
        assert_eq!(
            format!("{usage}"),
            "memory: guest 988 MiB; Cairn 34 MiB (image 401 KiB, heap 32 MiB with 1536 KiB in use); pristine images 40 MiB; snapshot slot 0 MiB; unused 2 MiB"
        );
    }
}
