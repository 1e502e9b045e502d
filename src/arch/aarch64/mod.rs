//! AArch64 at EL2. `esr` and `exit` are pure decoding and build everywhere; the rest
//! touches system registers and builds only for the bare-metal target.

pub mod esr;
pub mod exit;
pub mod limits;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod context;
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
pub mod trap;
