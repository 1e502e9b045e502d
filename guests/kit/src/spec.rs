//! Function IDs, arguments and return codes the test guests call with and expect, named
//! after the specifications: PSCI (Arm DEN0022), the SMC Calling Convention (Arm DEN0028)
//! and the TRNG firmware interface (Arm DEN0098). The guests keep their own copy on
//! purpose: they check Cairn against the specifications, not against Cairn's own tables.

/// SMCCC function-ID layout (DEN0028 §2.5): bit 31 fast call, bit 30 SMC64/HVC64, owning
/// entity in bits 29:24, function number in bits 15:0.
pub mod smccc {
    pub const FAST_CALL: u32 = 1 << 31;
    pub const CONVENTION_64: u32 = 1 << 30;
    pub const OWNER_SHIFT: u32 = 24;
    /// Owning entities 0-63 (DEN0028 §2.5, table 2-1).
    pub const OWNERS: core::ops::Range<u32> = 0..64;
    /// A function number no owner allocates: the per-owner general queries sit at
    /// 0xFF00-0xFF03, and no service Cairn implements goes anywhere near 0xFEFE.
    pub const UNALLOCATED_FUNCTION_NUMBER: u32 = 0xFEFE;

    /// Arm Architecture calls (owner 0, DEN0028 §7).
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// Spectre-v2, SSBD and Spectre-BHB firmware workarounds (DEN0028 §7.5-7.7).
    pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
    pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;
    /// SMCCC_VERSION for 1.1: `major << 16 | minor` (DEN0028 §7.2).
    pub const VERSION_1_1: u64 = 0x1_0001;

    /// SMCCC return codes (DEN0028 §7.1): an unknown function answers NOT_SUPPORTED, -1
    /// sign-extended to the whole of X0.
    pub const NOT_SUPPORTED: i64 = -1;
    pub const NOT_REQUIRED: i64 = -2;
    /// SMCCC_ARCH_FEATURES for a workaround (DEN0028 §7.5.2, §7.7.2): the PE does not
    /// need it.
    pub const WORKAROUND_UNAFFECTED: i64 = 1;
    pub const SUCCESS: i64 = 0;

    /// Vendor-specific hypervisor service (owner 6) general queries (DEN0028 §6.2).
    pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
    pub const VENDOR_HYP_REVISION: u32 = 0x8600_FF03;
    /// Cairn's own vendor call EXIT_STATUS(x1 = status 0-63): fast, SMC32, owner 6,
    /// function 1 (Cairn's README, "CI verdicts").
    pub const VENDOR_HYP_EXIT_STATUS: u32 = 0x8600_0001;
}

/// PSCI function IDs (DEN0022 §5.1, table 5-1): 0x8400_00nn in the SMC32 convention,
/// 0xC400_00nn in SMC64.
pub mod psci {
    /// Function number 0 of PSCI's range in each convention.
    pub const BASE_32: u32 = 0x8400_0000;
    pub const BASE_64: u32 = 0xC400_0000;
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON_32: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xC400_0003;
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    pub const MIGRATE_32: u32 = 0x8400_0005;
    pub const MIGRATE_64: u32 = 0xC400_0005;
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    pub const MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
    pub const MIGRATE_INFO_UP_CPU_64: u32 = 0xC400_0007;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const PSCI_FEATURES: u32 = 0x8400_000A;
    pub const NODE_HW_STATE_64: u32 = 0xC400_000D;
    pub const SYSTEM_SUSPEND_32: u32 = 0x8400_000E;
    pub const SYSTEM_SUSPEND_64: u32 = 0xC400_000E;
    pub const PSCI_SET_SUSPEND_MODE: u32 = 0x8400_000F;
    pub const PSCI_STAT_RESIDENCY_64: u32 = 0xC400_0010;
    pub const PSCI_STAT_COUNT_64: u32 = 0xC400_0011;
    pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
    pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;
    pub const MEM_PROTECT_CHECK_RANGE_64: u32 = 0xC400_0014;
    /// PSCI owns function numbers 0x00-0x1F of the standard secure service (DEN0028
    /// §6.1); the last one PSCI 1.3 allocates is SYSTEM_OFF2, 0x15.
    pub const FIRST_UNALLOCATED: u32 = 0x16;
    pub const LAST_OF_RANGE: u32 = 0x1F;

    /// PSCI return codes (DEN0022 §5.2.2). PSCI 0.1 has only the first four;
    /// INVALID_ADDRESS came with 1.0.
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const DENIED: i64 = -3;
    pub const ALREADY_ON: i64 = -4;
    pub const ON_PENDING: i64 = -5;
    pub const INTERNAL_FAILURE: i64 = -6;
    pub const NOT_PRESENT: i64 = -7;
    pub const DISABLED: i64 = -8;
    pub const INVALID_ADDRESS: i64 = -9;

    /// AFFINITY_INFO results (DEN0022 §5.7.2).
    pub const AFFINITY_ON: i64 = 0;
    pub const AFFINITY_OFF: i64 = 1;
    /// AFFINITY_INFO's lowest_affinity_level goes up to 3 (Aff3) on AArch64 (§5.7.1).
    pub const MAX_AFFINITY_LEVEL: u64 = 3;
    /// The affinity fields compared at lowest_affinity_level 0-3: level L ignores the
    /// fields below Aff<L> (§5.7.1).
    pub const AFFINITY_LEVEL_MASKS: [u64; 4] = [0xFF_00FF_FFFF, 0xFF_00FF_FF00, 0xFF_00FF_0000, 0xFF_0000_0000];

    /// MIGRATE_INFO_TYPE: "Trusted OS is either not present or does not require
    /// migration" (DEN0022 §5.9.2).
    pub const MIGRATE_INFO_NO_TRUSTED_OS: i64 = 2;

    /// CPU_SUSPEND power_state, original format (DEN0022 §5.4.2.1): StateID [15:0],
    /// StateType [16] (0 standby or retention, 1 powerdown), PowerLevel [25:24]; the other
    /// bits are reserved and must be zero.
    pub const POWER_STATE_STANDBY: u64 = 0;
    pub const POWER_STATE_POWERDOWN: u64 = 1 << 16;
    /// Reserved bits: 17 (in the run 23:17) and 31, which stays reserved in the extended
    /// format too.
    pub const POWER_STATE_RESERVED_BITS: [u64; 2] = [1 << 17, 1 << 31];
    /// PSCI_FEATURES(CPU_SUSPEND) flags (DEN0022 §5.15.2): bit 1 set means the extended
    /// power_state format, in which the reserved bits differ.
    pub const FEATURES_CPU_SUSPEND_EXTENDED_FORMAT: i64 = 1 << 1;

    /// SYSTEM_RESET2 reset_type (DEN0022 §5.17.1): bit 31 clear is architectural, and
    /// only 0 (SYSTEM_WARM_RESET) is defined there, so 1 is invalid.
    pub const RESET_TYPE_UNDEFINED_ARCHITECTURAL: u64 = 1;
    pub const RESET_TYPE_LAST_ARCHITECTURAL: u64 = 0x7FFF_FFFF;

    /// CPU_ON's target_cpu (DEN0022 §5.6.1): Aff3 [39:32], Aff2 [23:16], Aff1 [15:8],
    /// Aff0 [7:0]; bits 31:24 and 63:40 must be zero.
    pub const BAD_TARGET_BITS_31_24: u64 = 1 << 24;
    pub const BAD_TARGET_BITS_63_40: u64 = 1 << 40;
}

/// The Arm TRNG firmware interface (DEN0098 §2), function numbers 0x50-0x53 of the
/// standard secure service.
pub mod trng {
    pub const TRNG_VERSION: u32 = 0x8400_0050;
    pub const TRNG_FEATURES: u32 = 0x8400_0051;
    pub const TRNG_GET_UUID: u32 = 0x8400_0052;
    pub const TRNG_RND32: u32 = 0x8400_0053;
    pub const TRNG_RND64: u32 = 0xC400_0053;
    /// An unallocated TRNG function number (DEN0098 §2.1 allocates 0x50-0x53).
    pub const TRNG_UNALLOCATED: u32 = 0x8400_0054;
    /// TRNG 1.0 (DEN0098 §2.2).
    pub const VERSION_1_0: u64 = 0x1_0000;
    /// The most bits one call returns (DEN0098 §2.5, §2.6): three W or three X registers.
    pub const RND32_MAX_BITS: u64 = 96;
    pub const RND64_MAX_BITS: u64 = 192;
    /// TRNG return codes (DEN0098 §2.1.1).
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
}

/// SDEI_VERSION (Arm DEN0054 §5.1.1), in the standard secure range right after PSCI.
pub const SDEI_VERSION: u32 = 0xC400_0020;
