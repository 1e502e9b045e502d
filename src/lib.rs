//! Cairn: a Type-1 hypervisor for ARM64.
//!
//! The crate splits along one line: modules that only compute (SMCCC/PSCI decoding,
//! ESR decoding, page-table building, device-tree queries, guest placement) build on the
//! host and carry unit tests; the hardware layer (`arch::aarch64` system-register code,
//! the boot path, vCPU entry) builds only for the bare-metal target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod bootargs;
pub mod bundle;
pub mod dt;
pub mod event;
pub mod fwregs;
pub mod guest_dt;
pub mod guest_image;
pub mod mm;
pub mod platform;
pub mod smccc;
pub mod vcpu;
pub mod vgic;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod hyp;
#[cfg(target_os = "none")]
pub mod vm;
