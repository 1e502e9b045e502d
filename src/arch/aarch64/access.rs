//! A guest load or store to an emulated device, decoded once from the data-abort syndrome
//! and the guest's registers: what a device handler needs (address, width, the value
//! stored) and how a load completes (target register, sign extension, register width).
//! Nothing above this module reads syndrome bits.

use super::esr::DataAbort;

/// Register number 31 in a data-abort syndrome means XZR: reads as zero, writes vanish.
const XZR: usize = 31;

/// One decoded guest access to an emulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub ipa: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: usize,
    /// The register transferred (31 = XZR).
    pub register: usize,
    /// A load that sign-extends its value (SSE).
    pub sign_extend: bool,
    /// The register is an X register (SF), else a W register.
    pub sixty_four: bool,
    /// For a store, the value stored, truncated to `size`; None for a load.
    pub write: Option<u64>,
}

impl MmioAccess {
    /// Decodes a data abort with a valid syndrome (ISV, Arm ARM D24.2.40); None without one
    /// (LDP, STP, post-indexed or SIMD accesses leave nothing to emulate from).
    pub fn decode(ipa: u64, syndrome: DataAbort, regs: &[u64; 31]) -> Option<Self> {
        if !syndrome.syndrome_valid() {
            return None;
        }
        let size = syndrome.access_size();
        let register = syndrome.register();
        let stored = || if register == XZR { 0 } else { regs[register] & size_mask(size) };
        Some(MmioAccess {
            ipa,
            size,
            register,
            sign_extend: syndrome.sign_extend(),
            sixty_four: syndrome.sixty_four_bit_register(),
            write: syndrome.is_write().then(stored),
        })
    }

    /// The register write that completes a load of `value` from the device: sign-extended if
    /// the load asked for it, cut to a W register if it is one. None for XZR.
    pub fn load_result(&self, value: u64) -> Option<(usize, u64)> {
        if self.register == XZR {
            return None;
        }
        let mut v = value & size_mask(self.size);
        if self.sign_extend && self.size < 8 {
            let shift = 64 - self.size * 8;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !self.sixty_four {
            v &= u64::from(u32::MAX);
        }
        Some((self.register, v))
    }
}

fn size_mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
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
    fn decodes_a_word_write_with_its_value() {
        let mut regs = [0u64; 31];
        regs[5] = 0xFFFF_FFFF_1234_5678;
        let a = MmioAccess::decode(0x0800_0000, iss(2, false, 5, false, true), &regs).unwrap();
        assert_eq!((a.size, a.register, a.write), (4, 5, Some(0x1234_5678)));
    }

    #[test]
    fn sign_extends_byte_loads_to_x_and_w_registers() {
        let regs = [0u64; 31];
        let load = |s| MmioAccess::decode(0, s, &regs).unwrap();
        assert_eq!(load(iss(0, true, 3, true, false)).load_result(0x80), Some((3, 0xFFFF_FFFF_FFFF_FF80)));
        assert_eq!(load(iss(0, true, 4, false, false)).load_result(0x80), Some((4, 0xFFFF_FF80)));
        assert_eq!(load(iss(1, false, 6, true, false)).load_result(0x1_8000), Some((6, 0x8000)));
    }

    #[test]
    fn doubleword_and_xzr() {
        let regs = [7u64; 31];
        let a = MmioAccess::decode(0, iss(3, false, 31, true, false), &regs).unwrap();
        assert_eq!(a.load_result(42), None);
        let w = MmioAccess::decode(0, iss(3, false, 31, true, true), &regs).unwrap();
        assert_eq!(w.write, Some(0));
        let q = MmioAccess::decode(0, iss(3, false, 2, true, false), &regs).unwrap();
        assert_eq!(q.write, None);
        assert_eq!(q.load_result(u64::MAX), Some((2, u64::MAX)));
    }

    #[test]
    fn refuses_accesses_without_syndrome() {
        assert_eq!(MmioAccess::decode(0, DataAbort(0), &[0; 31]), None);
    }
}
