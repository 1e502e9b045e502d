//! The virtual GIC: a per-VM distributor model ([`dist`]), the list-register placement
//! policy ([`lr`]; the list registers' hardware format is `arch::aarch64::lr`) and the
//! runtime that feeds a CPU's list registers ([`runtime`]), all pure and host-tested;
//! `gic_cpu` runs the runtime on the machine's GIC and `physical` forwards the model's
//! settings for real interrupts to it.

pub mod dist;
#[cfg(target_os = "none")]
pub mod gic_cpu;
pub mod lr;
#[cfg(target_os = "none")]
pub mod physical;
pub mod runtime;

/// The positions of the bits set in `mask`, lowest first: target lists, candidate
/// interrupts and list registers in use are all walked this way, touching only the bits
/// that are set.
pub(crate) fn set_bits(mut mask: u64) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        let bit = (mask != 0).then(|| mask.trailing_zeros())?;
        mask &= mask - 1;
        Some(bit)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_bits_walks_the_set_bits_lowest_first() {
        assert_eq!(super::set_bits(0).count(), 0);
        let bits: alloc::vec::Vec<u32> = super::set_bits(0x8000_0000_0000_0105).collect();
        assert_eq!(bits, [0, 2, 8, 63]);
    }
}
