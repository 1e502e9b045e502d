//! The virtual GIC: a per-VM distributor model ([`dist`]) and list-register encoding
//! ([`lr`]), both pure; the runtime glue that feeds list registers lives with the vCPU.

pub mod dist;
pub mod lr;
#[cfg(target_os = "none")]
pub mod runtime;
