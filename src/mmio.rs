//! Emulated MMIO: turning a stage-2 data abort into a register access and completing it.
//! Pure logic (the syndrome and the guest's registers in, the new register value out), so
//! every decoding rule is unit-tested on the host.

use crate::arch::aarch64::esr::DataAbort;

/// Register number 31 in a data-abort syndrome means XZR: reads as zero, writes vanish.
const XZR: usize = 31;

/// One decoded guest access to an emulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub ipa: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: usize,
    pub write: bool,
    /// The register transferred (31 = XZR).
    pub register: usize,
    sign_extend: bool,
    sixty_four: bool,
}

/// Why an access cannot be emulated: the guest gets an abort instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// ISV = 0: the instruction (e.g. LDP, a post-indexed or SIMD access) left no syndrome
    /// to emulate it from (Arm ARM D24.2.40, ISV).
    NoSyndrome,
}

impl Access {
    pub fn decode(ipa: u64, syndrome: DataAbort) -> Result<Self, DecodeError> {
        if !syndrome.syndrome_valid() {
            return Err(DecodeError::NoSyndrome);
        }
        Ok(Access {
            ipa,
            size: syndrome.access_size(),
            write: syndrome.is_write(),
            register: syndrome.register(),
            sign_extend: syndrome.sign_extend(),
            sixty_four: syndrome.sixty_four_bit_register(),
        })
    }

    fn size_mask(&self) -> u64 {
        if self.size >= 8 {
            u64::MAX
        } else {
            (1u64 << (self.size * 8)) - 1
        }
    }

    /// The value a write stores, truncated to the access size.
    pub fn write_value(&self, regs: &[u64; 31]) -> u64 {
        let value = if self.register == XZR { 0 } else { regs[self.register] };
        value & self.size_mask()
    }

    /// Completes a read: `value` from the device, sign-extended if the load asked for it
    /// (SSE) and cut to a W register if SF is clear, written to the target register.
    pub fn complete_read(&self, regs: &mut [u64; 31], value: u64) {
        if self.register == XZR {
            return;
        }
        let mut v = value & self.size_mask();
        if self.sign_extend && self.size < 8 {
            let shift = 64 - self.size * 8;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !self.sixty_four {
            v &= u64::from(u32::MAX);
        }
        regs[self.register] = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a data-abort ISS: ISV, SAS, SSE, SRT, SF, WnR.
    fn iss(size_log2: u32, sse: bool, reg: u32, sf: bool, write: bool) -> DataAbort {
        DataAbort(
            (1 << 24)
                | (size_log2 << 22)
                | (u32::from(sse) << 21)
                | (reg << 16)
                | (u32::from(sf) << 15)
                | (u32::from(write) << 6),
        )
    }

    #[test]
    fn decodes_a_word_write() {
        let a = Access::decode(0x0800_0000, iss(2, false, 5, false, true)).unwrap();
        assert_eq!((a.size, a.write, a.register), (4, true, 5));
        let mut regs = [0u64; 31];
        regs[5] = 0xFFFF_FFFF_1234_5678;
        assert_eq!(a.write_value(&regs), 0x1234_5678);
    }

    #[test]
    fn sign_extends_byte_loads_to_x_and_w_registers() {
        let mut regs = [0u64; 31];
        Access::decode(0, iss(0, true, 3, true, false)).unwrap().complete_read(&mut regs, 0x80);
        assert_eq!(regs[3], 0xFFFF_FFFF_FFFF_FF80);
        Access::decode(0, iss(0, true, 4, false, false)).unwrap().complete_read(&mut regs, 0x80);
        assert_eq!(regs[4], 0xFFFF_FF80);
        Access::decode(0, iss(1, false, 6, true, false)).unwrap().complete_read(&mut regs, 0x1_8000);
        assert_eq!(regs[6], 0x8000);
    }

    #[test]
    fn doubleword_and_xzr() {
        let mut regs = [7u64; 31];
        let a = Access::decode(0, iss(3, false, 31, true, false)).unwrap();
        a.complete_read(&mut regs, 42);
        assert_eq!(regs, [7u64; 31]);
        let w = Access::decode(0, iss(3, false, 31, true, true)).unwrap();
        assert_eq!(w.write_value(&regs), 0);
        let q = Access::decode(0, iss(3, false, 2, true, false)).unwrap();
        q.complete_read(&mut regs, u64::MAX);
        assert_eq!(regs[2], u64::MAX);
    }

    #[test]
    fn refuses_accesses_without_syndrome() {
        assert_eq!(Access::decode(0, DataAbort(0)), Err(DecodeError::NoSyndrome));
    }
}
