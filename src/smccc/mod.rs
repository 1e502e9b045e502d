//! The SMC Calling Convention (Arm DEN0028): function-ID layout, return codes and the
//! Arm-architecture calls, here; the types the services share ([`call`]), the one
//! dispatcher ([`dispatch`]) and the services it routes to: PSCI ([`psci`]), TRNG
//! ([`trng`]) and Cairn's vendor service ([`vendor`]). Pure logic, tested on the host; the
//! machine's own firmware behind the dispatcher is [`machine`] (bare-metal target only).
//!
//! This file's definitions import nothing, so the arch layer's calls to the machine's
//! firmware (`arch::aarch64::firmware`) use the same function IDs.

pub mod call;
pub mod dispatch;
#[cfg(target_os = "none")]
pub mod machine;
pub mod psci;
pub mod sdei;
pub mod trng;
pub mod vendor;

/// Bit 31 of a function ID: 1 for a fast (atomic) call (DEN0028 §2.5).
pub const FAST_CALL: u32 = 1 << 31;
/// Bit 30 of a function ID: 1 for the SMC64/HVC64 convention (DEN0028 §2.5).
pub const CONVENTION_64: u32 = 1 << 30;
const OWNER_SHIFT: u32 = 24;
const OWNER_MASK: u32 = 0x3F;
/// Bits 23:16 must be zero in SMCCC 1.1 fast calls (DEN0028 §2.5); bit 16 only gains a
/// meaning (the SVE live-state hint) in SMCCC 1.3, which Cairn does not advertise.
const RESERVED_MASK: u32 = 0x00FF_0000;
const FUNCTION_MASK: u32 = 0xFFFF;

/// SMCCC return codes (DEN0028 §7.1), as the signed values guests compare against.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const NOT_REQUIRED: i64 = -2;
    pub const INVALID_PARAMETER: i64 = -3;
}

/// Arm-architecture calls (owner 0, DEN0028 §7).
pub const SMCCC_VERSION: u32 = 0x8000_0000;
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// Arm-architecture calls beyond VERSION and FEATURES (DEN0028 §7.4-7.6): the Spectre
/// workarounds and SoC identification, which only the machine's firmware can answer.
pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;

/// SMCCC_VERSION encodes `major << 16 | minor` (DEN0028 §7.2).
pub const fn version(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

/// The SMCCC version Cairn implements: 1.1, under which a callee may change only
/// x0-x3 and must preserve x4-x17 (DEN0028 §2.6).
pub const CAIRN_SMCCC_VERSION: u32 = version(1, 1);

/// The owning entity of a call: bits 29:24 of the function ID (DEN0028 §2.5, table 2-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Arch,
    Cpu,
    SiliconProvider,
    Oem,
    StandardSecure,
    StandardHypervisor,
    VendorHypervisor,
    Other(u8),
}

/// A decoded SMCCC function identifier. Only W0 carries it: the upper half of X0 is
/// ignored (DEN0028 §2.5; Xen had to fix this twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId(pub u32);

impl FunctionId {
    /// Takes the function ID from a guest's X0, dropping bits 63:32.
    pub fn from_x0(x0: u64) -> Self {
        FunctionId(x0 as u32)
    }

    pub fn is_fast(self) -> bool {
        self.0 & FAST_CALL != 0
    }

    pub fn is_64bit(self) -> bool {
        self.0 & CONVENTION_64 != 0
    }

    pub fn owner(self) -> Owner {
        match (self.0 >> OWNER_SHIFT) & OWNER_MASK {
            0 => Owner::Arch,
            1 => Owner::Cpu,
            2 => Owner::SiliconProvider,
            3 => Owner::Oem,
            4 => Owner::StandardSecure,
            5 => Owner::StandardHypervisor,
            6 => Owner::VendorHypervisor,
            other => Owner::Other(other as u8),
        }
    }

    /// The function number, bits 15:0.
    pub fn number(self) -> u16 {
        (self.0 & FUNCTION_MASK) as u16
    }

    /// Whether bits 23:16 are zero, as SMCCC 1.1 fast calls require.
    pub fn reserved_bits_clear(self) -> bool {
        self.0 & RESERVED_MASK == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fields_of_psci_cpu_on_smc64() {
        let fid = FunctionId(0xC400_0003);
        assert!(fid.is_fast());
        assert!(fid.is_64bit());
        assert_eq!(fid.owner(), Owner::StandardSecure);
        assert_eq!(fid.number(), 3);
        assert!(fid.reserved_bits_clear());
    }

    #[test]
    fn function_id_comes_from_w0_only() {
        assert_eq!(FunctionId::from_x0(0xDEAD_BEEF_8400_0000), FunctionId(0x8400_0000));
    }

    #[test]
    fn owners_map_per_table_2_1() {
        assert_eq!(FunctionId(SMCCC_VERSION).owner(), Owner::Arch);
        assert_eq!(FunctionId(0x8600_FF01).owner(), Owner::VendorHypervisor);
        assert_eq!(FunctionId(0xC500_0020).owner(), Owner::StandardHypervisor);
        assert_eq!(FunctionId(0xB000_0000).owner(), Owner::Other(0x30));
    }

    #[test]
    fn reserved_bits_are_detected() {
        assert!(!FunctionId(0x8401_0000).reserved_bits_clear());
        assert!(!FunctionId(0x8480_0000).reserved_bits_clear());
    }

    #[test]
    fn version_encoding() {
        assert_eq!(CAIRN_SMCCC_VERSION, 0x1_0001);
    }
}
