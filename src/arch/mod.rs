//! Architecture support. Cairn runs only on AArch64; the pure parts of this layer (ESR
//! decoding, descriptor formats) build everywhere so the host tests cover them.

pub mod aarch64;
