//! What the GIC architecture fixes, for everything that deals with a GIC (the physical
//! GIC's driver, the device-tree reader, the virtual GIC): its versions and how its
//! interrupt IDs divide. Pure, built everywhere.

/// A GIC architecture version Cairn drives (the GIC node's `compatible` names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// INTIDs 0-15 are SGIs, 16-31 PPIs, 32 and up SPIs (IHI 0069H §2.2.1).
pub const SGIS: u32 = 16;
pub const PRIVATE_IRQS: u32 = 32;
/// The largest SPI INTID plus one a GIC can have (IHI 0069H §2.2.1): 1020-1023 are
/// special.
pub const MAX_IRQS: u32 = 1020;
