//! Virtual CPUs. The power-state machine ([`power`]) and the saved-state format
//! ([`saved`]) are pure and host-tested; [`runtime`] runs vCPUs on their physical CPUs and
//! acts on their exits.

pub mod power;
pub mod saved;

#[cfg(target_os = "none")]
mod runtime;

pub use power::{PowerState, Start};
#[cfg(target_os = "none")]
pub use runtime::*;
