//! SDEI, the Software Delegated Exception Interface (Arm DEN0054, version 1.1), offered to
//! guests per VM (`cairn.sdei=on`): events that reach a vCPU even while it has its
//! interrupts masked, entered like an exception at EL1 and ended with EVENT_COMPLETE.
//!
//! This file has the interface: function IDs, return codes, the version word, the event
//! numbers Cairn offers, and one entry point that answers a call against a VM's SDEI
//! state ([`state`]); both are pure and host-tested (`tests`). The run loop delivers what
//! [`state::SdeiState::dispatch`] names and applies what EVENT_COMPLETE gives back.
//!
//! Events: event 0 is private, normal priority and signalled by EVENT_SIGNAL (§5.1.14);
//! INTERRUPT_BIND (§5.1.12) gives out event numbers from two pools, private events for
//! PPIs and shared events for SPIs, numbered from [`BOUND_PRIVATE_BASE`] and
//! [`BOUND_SHARED_BASE`]; the first [`CRITICAL_SLOTS`] of each pool are critical
//! priority, so a guest that binds several interrupts gets both kinds, as TF-A's
//! platforms give out both from their dynamic event tables.

pub mod state;
#[cfg(test)]
mod tests;

use core::ops::RangeInclusive;

/// SDEI function numbers (bits 15:0 of the IDs 0xC400_0020-0xC400_0032, DEN0054 §5.1),
/// owned by the standard secure service (owner 4) alongside PSCI and TRNG.
pub const FUNCTION_NUMBERS: RangeInclusive<u16> = 0x20..=0x32;

pub mod fid {
    pub const VERSION: u16 = 0x20;
    pub const EVENT_REGISTER: u16 = 0x21;
    pub const EVENT_ENABLE: u16 = 0x22;
    pub const EVENT_DISABLE: u16 = 0x23;
    pub const EVENT_CONTEXT: u16 = 0x24;
    pub const EVENT_COMPLETE: u16 = 0x25;
    pub const EVENT_COMPLETE_AND_RESUME: u16 = 0x26;
    pub const EVENT_UNREGISTER: u16 = 0x27;
    pub const EVENT_STATUS: u16 = 0x28;
    pub const EVENT_GET_INFO: u16 = 0x29;
    pub const EVENT_ROUTING_SET: u16 = 0x2A;
    pub const PE_MASK: u16 = 0x2B;
    pub const PE_UNMASK: u16 = 0x2C;
    pub const INTERRUPT_BIND: u16 = 0x2D;
    pub const INTERRUPT_RELEASE: u16 = 0x2E;
    pub const EVENT_SIGNAL: u16 = 0x2F;
    pub const FEATURES: u16 = 0x30;
    pub const PRIVATE_RESET: u16 = 0x31;
    pub const SHARED_RESET: u16 = 0x32;
}

/// SDEI return codes (DEN0054 §5.2; Linux's `include/uapi/linux/arm_sdei.h`).
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const DENIED: i64 = -3;
    pub const PENDING: i64 = -5;
    pub const OUT_OF_RESOURCE: i64 = -10;
}

/// SDEI_VERSION (§5.1.1): major in bits 62:48, minor in 47:32, the vendor's code in
/// 31:0. Cairn implements 1.1; its vendor code is "CAIR".
pub const VERSION_MAJOR: u64 = 1;
pub const VERSION_MINOR: u64 = 1;
pub const VENDOR_CODE: u64 = u32::from_be_bytes(*b"CAIR") as u64;
const MAJOR_SHIFT: u64 = 48;
const MINOR_SHIFT: u64 = 32;

pub const fn version_word() -> u64 {
    VERSION_MAJOR << MAJOR_SHIFT | VERSION_MINOR << MINOR_SHIFT | VENDOR_CODE
}

/// The software-signalled event (§4.1.1).
pub const EVENT_0: u32 = 0;
/// Event numbers INTERRUPT_BIND gives for PPIs (private events) and SPIs (shared).
pub const BOUND_PRIVATE_BASE: u32 = 0x100;
pub const BOUND_SHARED_BASE: u32 = 0x200;
/// Slots in each pool, at most: FEATURES(BIND_SLOTS) reports what a VM may use.
pub const BIND_SLOTS: u32 = 8;
/// The first slots of each pool are critical priority, the rest normal.
pub const CRITICAL_SLOTS: u32 = 2;

/// EVENT_REGISTER and EVENT_ROUTING_SET flags (§5.1.2): bit 0 is the routing mode.
pub const FLAG_ROUTE_PE: u64 = 1;
/// EVENT_STATUS bits (§5.1.9).
pub const STATUS_REGISTERED: i64 = 1 << 0;
pub const STATUS_ENABLED: i64 = 1 << 1;
pub const STATUS_RUNNING: i64 = 1 << 2;
/// EVENT_GET_INFO's info values (§5.1.10).
pub mod info {
    pub const TYPE: u64 = 0;
    pub const SIGNALED: u64 = 1;
    pub const PRIORITY: u64 = 2;
    pub const ROUTING_MODE: u64 = 3;
    pub const ROUTING_AFFINITY: u64 = 4;
}
/// FEATURES (§5.1.15): 0 asks for the bind slots (private in 15:0, shared in 31:16), 1
/// whether entry points may be relative (no).
pub const FEATURE_BIND_SLOTS: u64 = 0;
pub const FEATURE_RELATIVE_ENTRY: u64 = 1;
const SHARED_SLOTS_SHIFT: u64 = 16;

/// FEATURES(BIND_SLOTS) with `slots` of each kind.
pub const fn bind_slots_word(slots: u32) -> i64 {
    (slots as i64) << SHARED_SLOTS_SHIFT | slots as i64
}

/// EVENT_CONTEXT reads the interrupted x0-x17 (§5.1.4).
pub const CONTEXT_REGISTERS: usize = 18;
