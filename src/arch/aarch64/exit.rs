//! Why a guest left: the arch layer turns each trap into one [`Exit`], decoded once, and
//! the policy in `vcpu` acts on it without looking at syndrome bits again.

use super::esr::{DataAbort, Esr, ExceptionClass};
use crate::smccc::dispatch::Conduit;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An SMCCC call. For SMC the PC has already been moved past the instruction, so both
    /// conduits look alike from here on.
    Hypercall { conduit: Conduit, imm: u16 },
    /// A trapped WFI or WFE.
    WaitFor { wfe: bool },
    /// A data access to an IPA that stage 2 does not map.
    DataAbort { ipa: u64, va: Option<u64>, syndrome: DataAbort },
    /// An instruction fetch from an IPA that stage 2 does not map.
    InstructionAbort { ipa: u64, va: u64 },
    /// A physical interrupt arrived while the guest ran.
    Interrupt,
    /// Anything else: reported to the guest as an undefined instruction.
    Unhandled { esr: Esr },
}

/// HPFAR_EL2.FIPA holds IPA bits [51:12] in bits [43:4] (Arm ARM D24.2.66).
fn ipa_from_hpfar(hpfar: u64, far: u64) -> u64 {
    ((hpfar >> 4) & 0xFF_FFFF_FFFF) << 12 | (far & 0xFFF)
}

/// Classifies a synchronous exception from the guest.
pub fn classify_sync(esr: Esr, far: u64, hpfar: u64) -> Exit {
    match esr.class() {
        ExceptionClass::Hvc64 => Exit::Hypercall { conduit: Conduit::Hvc, imm: esr.call_immediate() },
        ExceptionClass::Smc64 => Exit::Hypercall { conduit: Conduit::Smc, imm: esr.call_immediate() },
        ExceptionClass::WfiWfe => Exit::WaitFor { wfe: esr.iss() & 1 != 0 },
        ExceptionClass::DataAbortLower => {
            let syndrome = esr.data_abort();
            let va = (!syndrome.far_not_valid()).then_some(far);
            Exit::DataAbort { ipa: ipa_from_hpfar(hpfar, far), va, syndrome }
        }
        ExceptionClass::InstructionAbortLower => Exit::InstructionAbort { ipa: ipa_from_hpfar(hpfar, far), va: far },
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
    fn wfe_is_told_from_wfi() {
        assert_eq!(classify_sync(Esr((0x01 << 26) | 1), 0, 0), Exit::WaitFor { wfe: true });
        assert_eq!(classify_sync(Esr(0x01 << 26), 0, 0), Exit::WaitFor { wfe: false });
    }

    #[test]
    fn everything_else_is_unhandled() {
        assert!(matches!(classify_sync(Esr(0), 0, 0), Exit::Unhandled { .. }));
    }
}
