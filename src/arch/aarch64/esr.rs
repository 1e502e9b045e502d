//! Decoding of the Exception Syndrome Register (Arm ARM D24.2.40, ESR_EL2), done once per
//! trap so that the rest of Cairn sees a named reason, never raw bits.

/// Bits 31:26: the exception class.
const EC_SHIFT: u32 = 26;
const EC_MASK: u64 = 0x3F;
/// Bit 25: instruction length, 1 for a 32-bit instruction.
const IL_BIT: u64 = 1 << 25;
/// Bits 24:0: the instruction-specific syndrome.
const ISS_MASK: u64 = 0x1FF_FFFF;

/// The exception class codes the exit path decodes (Arm ARM table D24-2), for matching the
/// raw EC without converting it to [`ExceptionClass`] first.
pub mod ec {
    pub const WFI_WFE: u8 = 0x01;
    pub const HVC64: u8 = 0x16;
    pub const SMC64: u8 = 0x17;
    pub const SYSREG64: u8 = 0x18;
    pub const INSTRUCTION_ABORT_LOWER: u8 = 0x20;
    pub const DATA_ABORT_LOWER: u8 = 0x24;
}

/// The exception classes Cairn handles or reports by name (Arm ARM table D24-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfiWfe,
    SimdFp,
    Hvc32,
    Smc32,
    Hvc64,
    Smc64,
    SysReg64,
    Sve,
    InstructionAbortLower,
    InstructionAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    SError,
    Brk64,
    Other(u8),
}

impl ExceptionClass {
    pub fn from_code(code: u8) -> Self {
        match code {
            0x00 => Self::Unknown,
            ec::WFI_WFE => Self::WfiWfe,
            0x07 => Self::SimdFp,
            0x12 => Self::Hvc32,
            0x13 => Self::Smc32,
            ec::HVC64 => Self::Hvc64,
            ec::SMC64 => Self::Smc64,
            ec::SYSREG64 => Self::SysReg64,
            0x19 => Self::Sve,
            ec::INSTRUCTION_ABORT_LOWER => Self::InstructionAbortLower,
            0x21 => Self::InstructionAbortSame,
            0x22 => Self::PcAlignment,
            ec::DATA_ABORT_LOWER => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2F => Self::SError,
            0x3C => Self::Brk64,
            other => Self::Other(other),
        }
    }

    /// A short human name for fault reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason (undefined instruction)",
            Self::WfiWfe => "WFI/WFE",
            Self::SimdFp => "SIMD/FP access",
            Self::Hvc32 => "HVC (AArch32)",
            Self::Smc32 => "SMC (AArch32)",
            Self::Hvc64 => "HVC",
            Self::Smc64 => "SMC",
            Self::SysReg64 => "system register access",
            Self::Sve => "SVE access",
            Self::InstructionAbortLower => "instruction abort from a lower EL",
            Self::InstructionAbortSame => "instruction abort at EL2",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLower => "data abort from a lower EL",
            Self::DataAbortSame => "data abort at EL2",
            Self::SpAlignment => "SP alignment fault",
            Self::SError => "SError",
            Self::Brk64 => "BRK instruction",
            Self::Other(_) => "other",
        }
    }
}

/// A raw ESR value with accessors for its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    pub fn class_code(self) -> u8 {
        ((self.0 >> EC_SHIFT) & EC_MASK) as u8
    }

    pub fn class(self) -> ExceptionClass {
        ExceptionClass::from_code(self.class_code())
    }

    /// The trapped instruction's length in bytes (2 only for T32 16-bit instructions).
    pub fn instruction_len(self) -> u64 {
        if self.0 & IL_BIT != 0 {
            4
        } else {
            2
        }
    }

    pub fn iss(self) -> u32 {
        (self.0 & ISS_MASK) as u32
    }

    /// The 16-bit immediate of an HVC or SMC (ISS[15:0]).
    pub fn call_immediate(self) -> u16 {
        self.iss() as u16
    }

    pub fn data_abort(self) -> DataAbort {
        DataAbort(self.iss())
    }
}

/// Data-abort ISS bits CM [8] and S1PTW [7] (Arm ARM D24.2.40).
const CM: u32 = 1 << 8;
const S1PTW: u32 = 1 << 7;

/// The ISS of a data abort (Arm ARM D24.2.40, "ISS encoding for an exception from a Data
/// Abort").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort(pub u32);

impl DataAbort {
    /// ISV: the syndrome below (size, register, sign extension) is valid.
    pub fn syndrome_valid(self) -> bool {
        self.0 & (1 << 24) != 0
    }

    /// SAS: access size in bytes.
    pub fn access_size(self) -> usize {
        1 << ((self.0 >> 22) & 0b11)
    }

    /// SSE: a load that sign-extends.
    pub fn sign_extend(self) -> bool {
        self.0 & (1 << 21) != 0
    }

    /// SRT: the register transferred (31 means XZR).
    pub fn register(self) -> usize {
        ((self.0 >> 16) & 0x1F) as usize
    }

    /// SF: the register is 64 bits wide.
    pub fn sixty_four_bit_register(self) -> bool {
        self.0 & (1 << 15) != 0
    }

    /// WnR: the access was a write.
    pub fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// CM: a cache maintenance (DC by VA) or address translation instruction caused the
    /// abort, not a load or store; WnR then reads as 1 and ISV as 0.
    pub fn cache_maintenance(self) -> bool {
        self.0 & CM != 0
    }

    /// S1PTW: the fault hit the guest's own stage-1 table walk, so the IPA is that of a
    /// translation table entry and the rest of the syndrome describes the instruction,
    /// not the walk.
    pub fn stage1_walk(self) -> bool {
        self.0 & S1PTW != 0
    }

    /// CM or S1PTW: not a load or store the guest's code made, so never a device access
    /// to emulate. One test keeps both off the MMIO path.
    pub fn not_a_device_access(self) -> bool {
        self.0 & (CM | S1PTW) != 0
    }

    /// FnV: FAR is not valid.
    pub fn far_not_valid(self) -> bool {
        self.0 & (1 << 10) != 0
    }

    /// DFSC: the fault status code.
    pub fn status_code(self) -> u8 {
        (self.0 & 0x3F) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hvc_with_immediate() {
        // EC 0x16, IL=1, imm16 0x1234
        let esr = Esr(0x5A00_1234);
        assert_eq!(esr.class(), ExceptionClass::Hvc64);
        assert_eq!(esr.call_immediate(), 0x1234);
        assert_eq!(esr.instruction_len(), 4);
    }

    #[test]
    fn decodes_smc_trap() {
        assert_eq!(Esr(0x5E00_0000).class(), ExceptionClass::Smc64);
    }

    #[test]
    fn decodes_data_abort_syndrome() {
        // ISV, SAS=word, SRT=x3, WnR, DFSC=translation fault level 1 (0x05)
        let iss = (1 << 24) | (0b10 << 22) | (3 << 16) | (1 << 6) | 0x05;
        let esr = Esr((0x24 << 26) | (1 << 25) | iss);
        assert_eq!(esr.class(), ExceptionClass::DataAbortLower);
        let da = esr.data_abort();
        assert!(da.syndrome_valid());
        assert_eq!(da.access_size(), 4);
        assert_eq!(da.register(), 3);
        assert!(da.is_write());
        assert!(!da.sign_extend());
        assert_eq!(da.status_code(), 0x05);
    }

    #[test]
    fn unknown_classes_keep_their_code() {
        assert_eq!(Esr(0x3F << 26).class(), ExceptionClass::Other(0x3F));
        assert_eq!(Esr(0).class().name(), "unknown reason (undefined instruction)");
    }
}
