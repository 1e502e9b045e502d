//! Why a guest left: the arch layer turns each trap into one [`Exit`], decoded once from
//! the syndrome and the guest's registers, and the policy above acts on it without looking
//! at syndrome bits again.

use super::access::MmioAccess;
use super::esr::{ec, DataAbort, Esr};
use super::frame::TrapFrame;

/// The SMCCC conduit (DEN0028 §2): the instruction a call is made with. For a guest's
/// call, HVC is the conduit Cairn advertises and SMC is trapped by HCR_EL2.TSC and
/// answered the same way; for Cairn's own calls to the machine's firmware, it is what the
/// device tree's `/psci` node names as its `method` (firmware.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

/// The size of an exception vector table: 16 entries of 0x80 bytes (Arm ARM D1.10.2).
pub const VECTOR_TABLE_SIZE: u64 = 0x800;

/// The size of an A64 instruction: MSR/MRS and SMC traps are always A64 from AArch64.
const A64_INSTRUCTION: u64 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An SMCCC call through HVC (the guest's PC is already past it: HVC is taken after the
    /// instruction) or a trapped SMC (the PC is still at it, Arm ARM D1.10.1).
    Hypercall { conduit: Conduit, imm: u16 },
    /// A trapped WFI or WFE; `len` is the instruction's size (2 for a 16-bit T32 one).
    WaitFor { wfe: bool, len: u64 },
    /// A load or store to an IPA that stage 2 does not map, with a syndrome to emulate it
    /// from; `len` is the instruction's size.
    Mmio { access: MmioAccess, va: Option<u64>, len: u64 },
    /// A load or store to an IPA that stage 2 does not map that left no syndrome (LDP, STP,
    /// writeback, SIMD): nothing can emulate it.
    UndecodableAccess { ipa: u64, va: Option<u64> },
    /// A data cache maintenance instruction by VA (DC CIVAC, DC IVAC, ...) on an IPA that
    /// stage 2 does not map; `len` is the instruction's size.
    CacheMaintenance { ipa: u64, len: u64 },
    /// The guest's own stage-1 table walk read an IPA that stage 2 does not map (S1PTW):
    /// translation tables must be in memory, and the syndrome describes the instruction,
    /// not the walk, so there is no device access to emulate.
    TableWalk { ipa: u64, va: Option<u64> },
    /// An instruction fetch from an IPA that stage 2 does not map.
    InstructionAbort { ipa: u64, va: u64 },
    /// A trapped system-register access (MSR/MRS): `write` holds the value an MSR writes.
    SysReg { reg: SysRegId, rt: usize, write: Option<u64> },
    /// A physical interrupt arrived while the guest ran.
    Interrupt,
    /// An SError (asynchronous external abort) taken from the guest (HCR_EL2.AMO routes
    /// them to EL2): Cairn cannot attribute it to an instruction, so the VM crashes.
    SError { esr: Esr },
    /// Anything else: reported to the guest as an undefined instruction.
    Unhandled { esr: Esr },
}

impl Exit {
    /// How far the guest's PC must move to step over the trapped instruction when the exit
    /// completes it: 0 where the exception was taken after the instruction (HVC) or where
    /// nothing was trapped.
    pub fn step_len(&self) -> u64 {
        match *self {
            Exit::Hypercall { conduit: Conduit::Smc, .. } | Exit::SysReg { .. } => A64_INSTRUCTION,
            Exit::WaitFor { len, .. } | Exit::Mmio { len, .. } | Exit::CacheMaintenance { len, .. } => len,
            _ => 0,
        }
    }
}

/// A system register by its encoding (Op0, Op1, CRn, CRm, Op2), kept as the trapped
/// MSR/MRS syndrome's own bits for them (ISS with Rt and the direction cleared), so telling
/// registers apart costs one comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SysRegId(u32);

/// Where Op0, Op2, Op1, CRn and CRm sit in a trapped MSR/MRS ISS (Arm ARM D24.2.40, EC
/// 0x18): Op0 [21:20], Op2 [19:17], Op1 [16:14], CRn [13:10], Rt [9:5], CRm [4:1],
/// Direction [0] (1 = read).
const ISS_OP0_SHIFT: u32 = 20;
const ISS_OP2_SHIFT: u32 = 17;
const ISS_OP1_SHIFT: u32 = 14;
const ISS_CRN_SHIFT: u32 = 10;
const ISS_RT_SHIFT: u32 = 5;
const ISS_CRM_SHIFT: u32 = 1;
const ISS_RT_MASK: u32 = 0x1F;
const ISS_READ: u32 = 1;
/// The ISS bits that name the register.
const ISS_REGISTER_MASK: u32 = !((ISS_RT_MASK << ISS_RT_SHIFT) | ISS_READ) & ((1 << 22) - 1);

impl SysRegId {
    pub const fn new(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> Self {
        SysRegId(
            op0 << ISS_OP0_SHIFT
                | op2 << ISS_OP2_SHIFT
                | op1 << ISS_OP1_SHIFT
                | crn << ISS_CRN_SHIFT
                | crm << ISS_CRM_SHIFT,
        )
    }

    fn field(self, shift: u32, bits: u32) -> u32 {
        (self.0 >> shift) & ((1 << bits) - 1)
    }
}

/// Shown as the assembler names an unnamed register: S<op0>_<op1>_C<n>_C<m>_<op2>.
impl core::fmt::Debug for SysRegId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.field(ISS_OP0_SHIFT, 2),
            self.field(ISS_OP1_SHIFT, 3),
            self.field(ISS_CRN_SHIFT, 4),
            self.field(ISS_CRM_SHIFT, 4),
            self.field(ISS_OP2_SHIFT, 3)
        )
    }
}

/// ICC_SGI1R_EL1 (S3_0_C12_C11_5): a GICv3 guest sends group-1 SGIs through it, and it
/// traps to EL2 while HCR_EL2.IMO is set (IHI 0069H §12.2.23).
pub const ICC_SGI1R_EL1: SysRegId = SysRegId::new(3, 0, 12, 11, 5);
/// ICC_ASGI1R_EL1 (S3_1_C12_C11_6) and ICC_SGI0R_EL1 (S3_2_C12_C11_7): the other SGI
/// generation registers, which trap likewise.
pub const ICC_ASGI1R_EL1: SysRegId = SysRegId::new(3, 1, 12, 11, 6);
pub const ICC_SGI0R_EL1: SysRegId = SysRegId::new(3, 2, 12, 11, 7);

/// Decodes the ISS of a trapped MSR/MRS (the layout above).
fn sysreg(iss: u32, regs: &[u64; 31]) -> Exit {
    let rt = ((iss >> ISS_RT_SHIFT) & ISS_RT_MASK) as usize;
    let is_write = iss & ISS_READ == 0;
    Exit::SysReg {
        reg: SysRegId(iss & ISS_REGISTER_MASK),
        rt,
        // Rt = 31 is XZR for MSR.
        write: is_write.then(|| regs.get(rt).copied().unwrap_or(0)),
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

/// Classifies a synchronous exception from the guest whose registers are in `frame`.
/// Matches the raw class code: every full-path exit goes through here.
pub fn classify_sync(esr: Esr, far: u64, hpfar: u64, frame: &TrapFrame) -> Exit {
    match esr.class_code() {
        ec::HVC64 => Exit::Hypercall { conduit: Conduit::Hvc, imm: esr.call_immediate() },
        ec::SMC64 => Exit::Hypercall { conduit: Conduit::Smc, imm: esr.call_immediate() },
        ec::WFI_WFE => Exit::WaitFor { wfe: esr.iss() & 1 != 0, len: esr.instruction_len() },
        ec::DATA_ABORT_LOWER => {
            let syndrome = esr.data_abort();
            let ipa = ipa_from_hpfar(hpfar, far);
            let len = esr.instruction_len();
            let va = (!syndrome.far_not_valid()).then_some(far);
            if syndrome.not_a_device_access() {
                return not_a_device_access(syndrome, ipa, va, len);
            }
            match MmioAccess::decode(ipa, syndrome, &frame.x) {
                Some(access) => Exit::Mmio { access, va, len },
                None => Exit::UndecodableAccess { ipa, va },
            }
        }
        ec::INSTRUCTION_ABORT_LOWER => Exit::InstructionAbort { ipa: ipa_from_hpfar(hpfar, far), va: far },
        ec::SYSREG64 => sysreg(esr.iss(), &frame.x),
        _ => Exit::Unhandled { esr },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: TrapFrame = TrapFrame::ZERO;

    #[test]
    fn hvc_and_smc_become_hypercalls() {
        assert_eq!(classify_sync(Esr(0x5A00_0000), 0, 0, &F), Exit::Hypercall { conduit: Conduit::Hvc, imm: 0 });
        assert_eq!(classify_sync(Esr(0x5E00_0001), 0, 0, &F), Exit::Hypercall { conduit: Conduit::Smc, imm: 1 });
    }

    #[test]
    fn data_abort_carries_the_ipa() {
        let esr = Esr((0x24 << 26) | (1 << 25) | (1 << 24));
        let exit = classify_sync(esr, 0xFFFF_0000_1234_5678, 0x0123_4560, &F);
        match exit {
            Exit::Mmio { access, va, len } => {
                assert_eq!(access.ipa, 0x1_2345_6678);
                assert_eq!(va, Some(0xFFFF_0000_1234_5678));
                assert_eq!(len, 4);
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
        let exit = classify_sync(dc_civac, 0x40, 0x0800_0000 >> 8, &F);
        assert_eq!(exit, Exit::CacheMaintenance { ipa: 0x0800_0040, len: 4 });
        // Its stage-1 walk faulting is a table-walk fault like any other.
        let walk = Esr(dc_civac.0 | S1PTW);
        assert!(matches!(classify_sync(walk, 0, 0, &F), Exit::TableWalk { .. }));
    }

    #[test]
    fn a_table_walk_fault_is_never_a_device_access_even_with_a_syndrome() {
        const S1PTW: u64 = 1 << 7;
        const ISV: u64 = 1 << 24;
        let load = Esr((0x24 << 26) | (1 << 25) | ISV | S1PTW);
        let exit = classify_sync(load, 0x10, 0x0800_0000 >> 8, &F);
        assert_eq!(exit, Exit::TableWalk { ipa: 0x0800_0010, va: Some(0x10) });
    }

    #[test]
    fn wfe_is_told_from_wfi() {
        assert_eq!(classify_sync(Esr((0x01 << 26) | (1 << 25) | 1), 0, 0, &F), Exit::WaitFor { wfe: true, len: 4 });
        assert_eq!(classify_sync(Esr(0x01 << 26), 0, 0, &F), Exit::WaitFor { wfe: false, len: 2 });
    }

    #[test]
    fn decodes_an_icc_sgi1r_write() {
        // msr ICC_SGI1R_EL1, x3: Op0 3, Op2 5, Op1 0, CRn 12, Rt 3, CRm 11, write
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        let mut frame = TrapFrame::ZERO;
        frame.x[3] = 0x1234;
        let exit = classify_sync(Esr((0x18 << 26) | (1 << 25) | iss), 0, 0, &frame);
        assert_eq!(exit, Exit::SysReg { reg: ICC_SGI1R_EL1, rt: 3, write: Some(0x1234) });
        assert_eq!(exit.step_len(), 4);
        assert_eq!(alloc::format!("{ICC_SGI1R_EL1:?}"), "S3_0_C12_C11_5");
    }

    #[test]
    fn a_load_without_syndrome_cannot_be_emulated() {
        let ldp = Esr((0x24 << 26) | (1 << 25));
        let exit = classify_sync(ldp, 0x10, 0x0800_0000 >> 8, &F);
        assert_eq!(exit, Exit::UndecodableAccess { ipa: 0x0800_0010, va: Some(0x10) });
        assert_eq!(exit.step_len(), 0);
    }

    #[test]
    fn only_completed_instructions_step_the_pc() {
        let hvc = classify_sync(Esr(0x5A00_0000), 0, 0, &F);
        let smc = classify_sync(Esr(0x5E00_0000), 0, 0, &F);
        assert_eq!((hvc.step_len(), smc.step_len()), (0, 4), "HVC is taken after the instruction, SMC at it");
        assert_eq!(classify_sync(Esr(0x01 << 26), 0, 0, &F).step_len(), 2);
        assert_eq!(Exit::Interrupt.step_len(), 0);
    }

    #[test]
    fn everything_else_is_unhandled() {
        assert!(matches!(classify_sync(Esr(0), 0, 0, &F), Exit::Unhandled { .. }));
    }
}
