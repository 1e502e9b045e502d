//! AArch64 at EL2. The modules without a `cfg` are pure (decoding, hardware formats,
//! architectural constants, machine limits) and build everywhere, so the host tests cover
//! them and the layers above can use them; the rest touches system registers and builds
//! only for the bare-metal target.

pub mod access;
pub mod context;
pub mod esr;
pub mod exit;
pub mod fpsimd;
pub mod frame;
pub mod gicarch;
pub mod limits;
pub mod lr;
pub mod memattr;
pub mod mpidr;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod copy;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod fastpath;
#[cfg(target_os = "none")]
pub mod firmware;
#[cfg(target_os = "none")]
pub mod gic;
#[cfg(target_os = "none")]
pub mod gicd;
#[cfg(target_os = "none")]
pub mod gicv2;
#[cfg(target_os = "none")]
pub mod gicv3;
#[cfg(target_os = "none")]
pub mod inject;
#[cfg(target_os = "none")]
pub mod mmio;
#[cfg(target_os = "none")]
pub mod mmu;
#[cfg(target_os = "none")]
pub mod semihosting;
#[cfg(target_os = "none")]
pub mod trap;
