//! Why a guest left: the arch layer turns each trap into one [`Exit`], decoded once, and
//! the policy in `vcpu` acts on it without looking at syndrome bits again.

use super::esr::{DataAbort, Esr, ExceptionClass};

/// The SMCCC conduit (DEN0028 §2): the instruction a call is made with. For a guest's
/// call, HVC is the conduit Cairn advertises and SMC is trapped by HCR_EL2.TSC and
/// answered the same way; for Cairn's own calls to the machine's firmware, it is what the
/// device tree's `/psci` node names as its `method` (firmware.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An SMCCC call. For SMC the PC has already been moved past the instruction, so both
    /// conduits look alike from here on.
    Hypercall { conduit: Conduit, imm: u16 },
    /// A trapped WFI or WFE; `len` is the instruction's size (2 for a 16-bit T32 one).
    WaitFor { wfe: bool, len: u64 },
    /// A data access to an IPA that stage 2 does not map; `len` is the instruction's size.
    DataAbort { ipa: u64, va: Option<u64>, syndrome: DataAbort, len: u64 },
    /// A data cache maintenance instruction by VA (DC CIVAC, DC IVAC, ...) on an IPA that
    /// stage 2 does not map; `len` is the instruction's size.
    CacheMaintenance { ipa: u64, len: u64 },
    /// The guest's own stage-1 table walk read an IPA that stage 2 does not map (S1PTW):
    /// translation tables must be in memory, and the syndrome describes the instruction,
    /// not the walk, so there is no device access to emulate.
    TableWalk { ipa: u64, va: Option<u64> },
    /// An instruction fetch from an IPA that stage 2 does not map.
    InstructionAbort { ipa: u64, va: u64 },
    /// A trapped system-register access (MSR/MRS).
    SysReg { reg: SysRegId, write: bool, rt: usize },
    /// A physical interrupt arrived while the guest ran.
    Interrupt,
    /// An SError (asynchronous external abort) taken from the guest (HCR_EL2.AMO routes
    /// them to EL2): Cairn cannot attribute it to an instruction, so the VM crashes.
    SError { esr: Esr },
    /// Anything else: reported to the guest as an undefined instruction.
    Unhandled { esr: Esr },
}

/// A system register by its encoding (Op0, Op1, CRn, CRm, Op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegId {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
}

/// ICC_SGI1R_EL1 (S3_0_C12_C11_5): a GICv3 guest sends group-1 SGIs through it, and it
/// traps to EL2 while HCR_EL2.IMO is set (IHI 0069H §12.2.23).
pub const ICC_SGI1R_EL1: SysRegId = SysRegId { op0: 3, op1: 0, crn: 12, crm: 11, op2: 5 };
/// ICC_ASGI1R_EL1 (S3_1_C12_C11_6) and ICC_SGI0R_EL1 (S3_2_C12_C11_7): the other SGI
/// generation registers, which trap likewise.
pub const ICC_ASGI1R_EL1: SysRegId = SysRegId { op0: 3, op1: 1, crn: 12, crm: 11, op2: 6 };
pub const ICC_SGI0R_EL1: SysRegId = SysRegId { op0: 3, op1: 2, crn: 12, crm: 11, op2: 7 };

/// Decodes the ISS of a trapped MSR/MRS (Arm ARM D24.2.40, EC 0x18): Op0 [21:20],
/// Op2 [19:17], Op1 [16:14], CRn [13:10], Rt [9:5], CRm [4:1], Direction [0] (1 = read).
fn sysreg(iss: u32) -> Exit {
    let field = |shift: u32, bits: u32| ((iss >> shift) & ((1 << bits) - 1)) as u8;
    Exit::SysReg {
        reg: SysRegId { op0: field(20, 2), op1: field(14, 3), crn: field(10, 4), crm: field(1, 4), op2: field(17, 3) },
        write: iss & 1 == 0,
        rt: field(5, 5) as usize,
    }
}

/// HPFAR_EL2.FIPA holds IPA bits [51:12] in bits [43:4] (Arm ARM D24.2.66).
fn ipa_from_hpfar(hpfar: u64, far: u64) -> u64 {
    ((hpfar >> 4) & 0xFF_FFFF_FFFF) << 12 | (far & 0xFFF)
}

/// A data abort from a cache maintenance instruction or the guest's own table walk: off
/// the MMIO path, which never sees one.
#[cold]
fn not_a_device_access(syndrome: DataAbort, ipa: u64, va: Option<u64>, len: u64) -> Exit {
    if syndrome.stage1_walk() {
        Exit::TableWalk { ipa, va }
    } else {
        Exit::CacheMaintenance { ipa, len }
    }
}

/// Classifies a synchronous exception from the guest.
pub fn classify_sync(esr: Esr, far: u64, hpfar: u64) -> Exit {
    match esr.class() {
        ExceptionClass::Hvc64 => Exit::Hypercall { conduit: Conduit::Hvc, imm: esr.call_immediate() },
        ExceptionClass::Smc64 => Exit::Hypercall { conduit: Conduit::Smc, imm: esr.call_immediate() },
        ExceptionClass::WfiWfe => Exit::WaitFor { wfe: esr.iss() & 1 != 0, len: esr.instruction_len() },
        ExceptionClass::DataAbortLower => {
            let syndrome = esr.data_abort();
            let ipa = ipa_from_hpfar(hpfar, far);
            let len = esr.instruction_len();
            let va = (!syndrome.far_not_valid()).then_some(far);
            if syndrome.not_a_device_access() {
                return not_a_device_access(syndrome, ipa, va, len);
            }
            Exit::DataAbort { ipa, va, syndrome, len }
        }
        ExceptionClass::InstructionAbortLower => Exit::InstructionAbort { ipa: ipa_from_hpfar(hpfar, far), va: far },
        ExceptionClass::SysReg64 => sysreg(esr.iss()),
        _ => Exit::Unhandled { esr },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvc_and_smc_become_hypercalls() {
        assert_eq!(classify_sync(Esr(0x5A00_0000), 0, 0), Exit::Hypercall { conduit: Conduit::Hvc, imm: 0 });
        assert_eq!(classify_sync(Esr(0x5E00_0001), 0, 0), Exit::Hypercall { conduit: Conduit::Smc, imm: 1 });
    }

    #[test]
    fn data_abort_carries_the_ipa() {
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 24));
        let exit = classify_sync(esr, 0xFFFF_0000_1234_5678, 0x0123_4560);
        match exit {
            Exit::DataAbort { ipa, va, .. } => {
                assert_eq!(ipa, 0x1_2345_6678);
                assert_eq!(va, Some(0xFFFF_0000_1234_5678));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cache_maintenance_is_told_from_a_load_or_store() {
        const CM: u64 = 1 << 8;
        const S1PTW: u64 = 1 << 7;
        const WNR: u64 = 1 << 6;
        let dc_civac = Esr((0x24 << 26) | (1 << 25) | CM | WNR);
        let exit = classify_sync(dc_civac, 0x40, 0x0800_0000 >> 8);
        assert_eq!(exit, Exit::CacheMaintenance { ipa: 0x0800_0040, len: 4 });
        // Its stage-1 walk faulting is a table-walk fault like any other.
        let walk = Esr(dc_civac.0 | S1PTW);
        assert!(matches!(classify_sync(walk, 0, 0), Exit::TableWalk { .. }));
    }

    #[test]
    fn a_table_walk_fault_is_never_a_device_access_even_with_a_syndrome() {
        const S1PTW: u64 = 1 << 7;
        const ISV: u64 = 1 << 24;
        let load = Esr((0x24 << 26) | (1 << 25) | ISV | S1PTW);
        let exit = classify_sync(load, 0x10, 0x0800_0000 >> 8);
        assert_eq!(exit, Exit::TableWalk { ipa: 0x0800_0010, va: Some(0x10) });
    }

    #[test]
    fn wfe_is_told_from_wfi() {
        assert_eq!(classify_sync(Esr((0x01 << 26) | (1 << 25) | 1), 0, 0), Exit::WaitFor { wfe: true, len: 4 });
        assert_eq!(classify_sync(Esr(0x01 << 26), 0, 0), Exit::WaitFor { wfe: false, len: 2 });
    }

    #[test]
    fn decodes_an_icc_sgi1r_write() {
        // msr ICC_SGI1R_EL1, x3: Op0 3, Op2 5, Op1 0, CRn 12, Rt 3, CRm 11, write
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let exit = classify_sync(Esr((0x18 << 26) | (1 << 25) | iss), 0, 0);
        assert_eq!(exit, Exit::SysReg { reg: ICC_SGI1R_EL1, write: true, rt: 3 });
    }

    #[test]
    fn everything_else_is_unhandled() {
        assert!(matches!(classify_sync(Esr(0), 0, 0), Exit::Unhandled { .. }));
    }
}
