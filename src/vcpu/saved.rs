//! A vCPU's complete saved state, and its wire form: a list of `(id, value)` registers in
//! the style of KVM's `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG`, so one format carries the
//! general registers, the EL1 system registers, the timers, the vGIC CPU interface, the
//! vCPU's private interrupts, its MP state, the firmware pseudo-registers (fwregs), its
//! FP/SIMD and vector registers and its SDEI state.
//!
//! IDs: general registers use KVM's `KVM_REG_ARM_CORE` numbering (offset in `struct
//! kvm_regs` / 4) and system registers KVM's `ARM64_SYS_REG` encoding (op0, op1, CRn, CRm,
//! op2), so a reader who knows KVM's register list knows these; the vGIC, the private
//! interrupt state and the MP state, which KVM carries through other ioctls, use Cairn's
//! own coprocessor numbers below.

use alloc::vec::Vec;

use crate::arch::aarch64::context::SYSREGS;
use crate::arch::aarch64::lr::VgicCpu;
use crate::fwregs::reg::{KVM_REG_ARM64, KVM_REG_ARM_COPROC_SHIFT, KVM_REG_SIZE_U64};
use crate::vcpu::power::{PowerState, Start};

macro_rules! sysreg_ids {
    ($($name:ident = ($op0:expr, $op1:expr, $crn:expr, $crm:expr, $op2:expr)),* $(,)?) => {
        /// The saved system registers' IDs, in [`for_each_saved_sysreg`] order.
        pub const SYSREG_IDS: &[u64] = &[$(sys_reg_id($op0, $op1, $crn, $crm, $op2)),*];
        /// Their names, for messages.
        pub const SYSREG_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}
crate::for_each_saved_sysreg!(sysreg_ids);
const _: () = assert!(SYSREG_IDS.len() == SYSREGS);

const fn coproc(n: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | n << KVM_REG_ARM_COPROC_SHIFT
}

/// KVM_REG_ARM_CORE: `struct kvm_regs` fields by offset / 4 (x0-x30, sp, pc, pstate).
const CORE: u64 = coproc(0x0010);
/// KVM_REG_ARM64_SYSREG.
const SYSREG: u64 = coproc(0x0013);
/// Cairn: the vGIC CPU interface (list registers, active priorities, VMCR).
const VGIC_CPU: u64 = coproc(0x00C0);
/// Cairn: the vCPU's private interrupts (SGIs, PPIs) in the distributor model.
const VGIC_PRIVATE: u64 = coproc(0x00C1);
/// Cairn: the MP state (KVM_GET_MP_STATE, plus the start a CPU_ON left pending).
const MP: u64 = coproc(0x00C2);
/// Cairn: the FP/SIMD, SVE and SME registers as arch::aarch64::fpsimd lays them out, one
/// 64-bit word per index (KVM carries them as 128-bit and 2048-bit core and SVE registers,
/// which this list's 64-bit values cannot).
const FP: u64 = coproc(0x00C3);
/// Cairn: the vCPU's SDEI state as crate::smccc::sdei::state lays it out (masked, its
/// private events, the handlers running), one 64-bit word per index.
const SDEI: u64 = coproc(0x00C4);
/// The firmware pseudo-registers' coprocessors (fwregs): 0x0014 and 0x0016.
const FW_COPROCS: [u64; 2] = [coproc(0x0014), coproc(0x0016)];
const COPROC_MASK: u64 = 0xFFFF_FFFF_FFFF_0000;

pub const fn sys_reg_id(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    SYSREG | op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}

/// `struct kvm_regs` offsets / 4: regs[31] at 0, sp at 62, pc at 64, pstate at 66.
const CORE_X0: u64 = 0;
/// KVM's `sp` (SP_EL0): Cairn carries it with the system registers instead.
const CORE_SP: u64 = 62;
const CORE_PC: u64 = 64;
const CORE_PSTATE: u64 = 66;
const VGIC_VMCR: u64 = 0x100;
const VGIC_APR0: u64 = 0x101;
const VGIC_APR1: u64 = 0x102;
/// Private-interrupt entries: one per INTID 0-31, then the GICR_WAKER sleep bit.
pub const PRIVATE_ENTRIES: usize = 33;
const MP_STATE: u64 = 0;
const MP_ENTRY: u64 = 1;
const MP_CONTEXT: u64 = 2;
const MP_FLAGS: u64 = 3;
const MP_FLAG_START: u64 = 1 << 0;
const MP_FLAG_BIG_ENDIAN: u64 = 1 << 1;

/// Everything a vCPU is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuState {
    pub x: [u64; 31],
    pub pc: u64,
    pub pstate: u64,
    /// In [`SYSREG_IDS`] order.
    pub sys: [u64; SYSREGS],
    pub vgic: VgicCpu,
    /// The distributor model's entries for this vCPU's private interrupts.
    pub private: [u64; PRIVATE_ENTRIES],
    pub power: PowerState,
    pub start: Option<Start>,
    /// The firmware pseudo-registers as `(id, value)` (fwregs::VcpuFirmwareRegs::save).
    pub firmware: Vec<(u64, u64)>,
    /// The FP/SIMD, SVE and SME registers (arch::aarch64::fpsimd); empty when a state
    /// leaves them as they are (the save/restore self-test, a vCPU that was off).
    pub fp: Vec<u64>,
    /// Its SDEI state (smccc::sdei::state::SdeiState::save_vcpu); empty without SDEI.
    pub sdei: Vec<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An ID this format does not have.
    UnknownRegister(u64),
    /// A register the state needs is not in the list.
    Missing(u64),
    /// A value no register of that ID can hold.
    BadValue(u64),
}

impl VcpuState {
    pub fn empty(list_registers: usize) -> Self {
        VcpuState {
            x: [0; 31],
            pc: 0,
            pstate: 0,
            sys: [0; SYSREGS],
            vgic: VgicCpu { lrs: alloc::vec![0; list_registers], ..VgicCpu::default() },
            private: [0; PRIVATE_ENTRIES],
            power: PowerState::Stopped,
            start: None,
            firmware: Vec::new(),
            fp: Vec::new(),
            sdei: Vec::new(),
        }
    }

    /// The wire form.
    pub fn to_registers(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(64 + self.vgic.lrs.len() + PRIVATE_ENTRIES + self.firmware.len());
        out.extend(self.x.iter().enumerate().map(|(n, &v)| (CORE | (CORE_X0 + 2 * n as u64), v)));
        out.push((CORE | CORE_PC, self.pc));
        out.push((CORE | CORE_PSTATE, self.pstate));
        out.extend(SYSREG_IDS.iter().copied().zip(self.sys.iter().copied()));
        out.extend(self.vgic.lrs.iter().enumerate().map(|(n, &v)| (VGIC_CPU | n as u64, v)));
        out.push((VGIC_CPU | VGIC_VMCR, self.vgic.vmcr));
        out.push((VGIC_CPU | VGIC_APR0, self.vgic.apr[0]));
        out.push((VGIC_CPU | VGIC_APR1, self.vgic.apr[1]));
        out.extend(self.private.iter().enumerate().map(|(n, &v)| (VGIC_PRIVATE | n as u64, v)));
        let start = self.start.unwrap_or(Start { entry: 0, context: 0, big_endian: false });
        let flags = if self.start.is_some() { MP_FLAG_START } else { 0 }
            | if start.big_endian { MP_FLAG_BIG_ENDIAN } else { 0 };
        out.push((MP | MP_STATE, self.power.encode()));
        out.push((MP | MP_ENTRY, start.entry));
        out.push((MP | MP_CONTEXT, start.context));
        out.push((MP | MP_FLAGS, flags));
        out.extend(self.firmware.iter().copied());
        out.extend(self.fp.iter().enumerate().map(|(n, &v)| (FP | n as u64, v)));
        out.extend(self.sdei.iter().enumerate().map(|(n, &v)| (SDEI | n as u64, v)));
        out
    }

    /// Parses the wire form for a vCPU with `list_registers` list registers. Every register
    /// of the format must be present exactly as [`VcpuState::to_registers`] writes them.
    pub fn from_registers(regs: &[(u64, u64)], list_registers: usize) -> Result<Self, Error> {
        let get = |id: u64| regs.iter().find(|(i, _)| *i == id).map(|&(_, v)| v).ok_or(Error::Missing(id));
        let mut s = VcpuState::empty(list_registers);
        for (n, x) in s.x.iter_mut().enumerate() {
            *x = get(CORE | (CORE_X0 + 2 * n as u64))?;
        }
        s.pc = get(CORE | CORE_PC)?;
        s.pstate = get(CORE | CORE_PSTATE)?;
        for (v, &id) in s.sys.iter_mut().zip(SYSREG_IDS) {
            *v = get(id)?;
        }
        for (n, lr) in s.vgic.lrs.iter_mut().enumerate() {
            *lr = get(VGIC_CPU | n as u64)?;
        }
        s.vgic.vmcr = get(VGIC_CPU | VGIC_VMCR)?;
        s.vgic.apr = [get(VGIC_CPU | VGIC_APR0)?, get(VGIC_CPU | VGIC_APR1)?];
        for (n, p) in s.private.iter_mut().enumerate() {
            *p = get(VGIC_PRIVATE | n as u64)?;
        }
        let state = get(MP | MP_STATE)?;
        s.power = PowerState::decode(state).ok_or(Error::BadValue(MP | MP_STATE))?;
        let flags = get(MP | MP_FLAGS)?;
        if flags & !(MP_FLAG_START | MP_FLAG_BIG_ENDIAN) != 0 {
            return Err(Error::BadValue(MP | MP_FLAGS));
        }
        s.start = (flags & MP_FLAG_START != 0).then_some(Start {
            entry: get(MP | MP_ENTRY)?,
            context: get(MP | MP_CONTEXT)?,
            big_endian: flags & MP_FLAG_BIG_ENDIAN != 0,
        });
        for &(id, value) in regs {
            if FW_COPROCS.contains(&(id & COPROC_MASK)) {
                s.firmware.push((id, value));
            } else if let Some(words) = s.words_of(id & COPROC_MASK) {
                // In order, from word 0: the words' meaning depends on their position.
                if id & !COPROC_MASK != words.len() as u64 {
                    return Err(Error::UnknownRegister(id));
                }
                words.push(value);
            } else if !s.knows(id, list_registers) {
                return Err(Error::UnknownRegister(id));
            }
        }
        Ok(s)
    }

    /// The word lists the coprocessor `coproc` carries, if it is one of them.
    fn words_of(&mut self, coproc: u64) -> Option<&mut Vec<u64>> {
        match coproc {
            FP => Some(&mut self.fp),
            SDEI => Some(&mut self.sdei),
            _ => None,
        }
    }

    fn knows(&self, id: u64, list_registers: usize) -> bool {
        let index = id & !COPROC_MASK;
        match id & COPROC_MASK {
            CORE => index <= CORE_PSTATE && index.is_multiple_of(2) && index != CORE_SP,
            SYSREG => SYSREG_IDS.contains(&id),
            VGIC_CPU => index < list_registers as u64 || (VGIC_VMCR..=VGIC_APR1).contains(&index),
            VGIC_PRIVATE => index < PRIVATE_ENTRIES as u64,
            MP => index <= MP_FLAGS,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwregs::reg;

    fn sample() -> VcpuState {
        let mut s = VcpuState::empty(4);
        for (n, x) in s.x.iter_mut().enumerate() {
            *x = 0x1111_0000 + n as u64;
        }
        s.pc = 0x4008_1234;
        s.pstate = 0x3C5;
        for (n, v) in s.sys.iter_mut().enumerate() {
            *v = 0xA000 + n as u64;
        }
        s.vgic = VgicCpu { lrs: alloc::vec![1, 2, 3, 4], vmcr: 0xF000_0001, apr: [0x8000_0000, 0] };
        for (n, p) in s.private.iter_mut().enumerate() {
            *p = n as u64 * 3;
        }
        s.power = PowerState::Suspended;
        s.firmware = alloc::vec![(reg::PSCI_VERSION, 0x1_0000), (reg::STD_BMAP, 1)];
        s.fp = (0..71).map(|n| 0xF000 + n).collect();
        s.sdei = (0..101).map(|n| 0x5DE1_0000 + n).collect();
        s
    }

    #[test]
    fn the_wire_form_round_trips_every_field() {
        let s = sample();
        let regs = s.to_registers();
        assert_eq!(VcpuState::from_registers(&regs, 4), Ok(s.clone()));
        let mut on = s;
        on.power = PowerState::Runnable;
        on.start = Some(Start { entry: 0x4000_0000, context: 5, big_endian: true });
        assert_eq!(VcpuState::from_registers(&on.to_registers(), 4), Ok(on));
    }

    #[test]
    fn ids_follow_kvm_where_kvm_has_them() {
        let regs = sample().to_registers();
        // KVM: x1 is core offset 8 / 4 = 2; pc 256 / 4 = 64.
        assert!(regs.contains(&(0x6030_0000_0010_0002, 0x1111_0001)));
        assert!(regs.iter().any(|&(id, v)| id == 0x6030_0000_0010_0040 && v == 0x4008_1234));
        // KVM: ARM64_SYS_REG(3, 0, 1, 0, 0) is SCTLR_EL1 = 0x6030_0000_0013_c080.
        assert_eq!(SYSREG_IDS[0], 0x6030_0000_0013_C080);
        assert_eq!(SYSREG_NAMES[0], "SCTLR_EL1");
        assert!(regs.contains(&(reg::PSCI_VERSION, 0x1_0000)), "fwregs keep their KVM IDs");
    }

    #[test]
    fn a_missing_or_unknown_register_is_refused() {
        let mut regs = sample().to_registers();
        let gone = regs.remove(40);
        assert_eq!(VcpuState::from_registers(&regs, 4), Err(Error::Missing(gone.0)));
        let mut regs = sample().to_registers();
        regs.push((0x6030_0000_00C0_0009, 0));
        assert_eq!(VcpuState::from_registers(&regs, 4), Err(Error::UnknownRegister(0x6030_0000_00C0_0009)));
        let mut regs = sample().to_registers();
        let mp = regs.iter_mut().find(|(id, _)| *id == MP | MP_STATE).unwrap();
        mp.1 = 9;
        assert_eq!(VcpuState::from_registers(&regs, 4), Err(Error::BadValue(MP | MP_STATE)));
    }

    #[test]
    fn fp_words_come_in_order() {
        let mut regs = sample().to_registers();
        let at = regs.iter().position(|&(id, _)| id == FP | 3).unwrap();
        regs.swap(at, at + 1);
        assert_eq!(VcpuState::from_registers(&regs, 4), Err(Error::UnknownRegister(FP | 4)));
    }

    #[test]
    fn a_saved_stopped_vcpu_carries_no_start() {
        let mut s = sample();
        s.power = PowerState::Stopped;
        let back = VcpuState::from_registers(&s.to_registers(), 4).unwrap();
        assert_eq!((back.power, back.start), (PowerState::Stopped, None));
    }
}
