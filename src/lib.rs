//! Cairn: a Type-1 hypervisor for ARM64.
//!
//! The crate splits along one line: the policy (SMCCC/PSCI, the VM and vCPU models, the
//! exit policy, the virtual GIC, page-table building, device trees, guest placement)
//! builds on the host and carries unit tests, reaching the machine only through `hw`,
//! which is a fake there; the hardware layer (`arch::aarch64` system-register code, the
//! boot path, the run loop that enters guests) builds only for the bare-metal target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod bootargs;
pub mod bundle;
pub mod conmux;
pub mod dt;
pub mod event;
pub mod fwregs;
pub mod guest_dt;
pub mod guest_image;
#[cfg(any(test, target_os = "none"))]
pub mod hw;
#[cfg(any(test, target_os = "none"))]
pub mod manage;
pub mod mm;
pub mod partition;
pub mod platform;
#[cfg(any(test, target_os = "none"))]
pub mod policy;
pub mod prompt;
pub mod smccc;
pub mod vcpu;
pub mod verdict;
pub mod vgic;
pub mod vuart;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod hyp;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(any(test, target_os = "none"))]
pub mod vm;
