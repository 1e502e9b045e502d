//! A vCPU's floating-point and vector registers: FP/SIMD (V0-V31, FPCR, FPSR), SVE (Z0-Z31,
//! P0-P15, FFR, ZCR_EL1) where the CPU has it, and SME (SVCR, SMCR_EL1, TPIDR2_EL0, and the
//! ZA array while PSTATE.ZA is set) where it has that, as one list of 64-bit words for a
//! snapshot (vcpu::saved carries them as Cairn's FP coprocessor).
//!
//! Cairn is built soft-float and never touches these registers itself, so while a vCPU is
//! loaded on a CPU they hold exactly the guest's values; reading them needs no lazy
//! switching. Vectors are saved at the longest length EL2 has (ZCR_EL2 and SMCR_EL2 as
//! Cairn set them), a superset of what the guest's own length reaches. ZT0 (SME2) is not
//! saved: SMCR_EL2.EZT0 stays 0, so no guest can use it.
//!
//! Layout (Arm ARM DDI 0487 §A1.4 for the register files): [`HEADER`], FPSR, FPCR,
//! ZCR_EL1, SVCR, SMCR_EL1, TPIDR2_EL0, then either V0-V31 (two words each) or Z0-Z31, P0-P15
//! and, outside streaming mode, FFR; then ZA, row by row, if PSTATE.ZA was set.

/// Word 0: what the rest holds. Bit 0: Z/P registers instead of V registers; bit 1:
/// FFR after the P registers; bit 2: the ZA array at the end; bits 16-31: the vector
/// length of the Z/P registers in bytes; bits 32-47: the streaming vector length.
pub const HEADER: usize = 0;
const FLAG_Z: u64 = 1 << 0;
const FLAG_FFR: u64 = 1 << 1;
const FLAG_ZA: u64 = 1 << 2;
const VL_SHIFT: u64 = 16;
const SVL_SHIFT: u64 = 32;
const LENGTH_MASK: u64 = 0xFFFF;
/// FPSR, FPCR, ZCR_EL1, SVCR, SMCR_EL1, TPIDR2_EL0 follow the header.
const CONTROL_WORDS: usize = 6;
const REGS_START: usize = 1 + CONTROL_WORDS;
/// 32 V registers of 128 bits.
const V_WORDS: usize = 32 * 2;
const BYTES_PER_WORD: usize = 8;

/// Where each part of a saved state lies, in words: pure, so its arithmetic is tested on
/// the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub z: bool,
    pub ffr: bool,
    pub za: bool,
    /// The Z registers' length in bytes (0 without them).
    pub vl: usize,
    /// The streaming vector length in bytes (0 without SME).
    pub svl: usize,
}

impl Layout {
    pub fn header(&self) -> u64 {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        flag(self.z, FLAG_Z)
            | flag(self.ffr, FLAG_FFR)
            | flag(self.za, FLAG_ZA)
            | (self.vl as u64 & LENGTH_MASK) << VL_SHIFT
            | (self.svl as u64 & LENGTH_MASK) << SVL_SHIFT
    }

    pub fn from_header(h: u64) -> Self {
        Layout {
            z: h & FLAG_Z != 0,
            ffr: h & FLAG_FFR != 0,
            za: h & FLAG_ZA != 0,
            vl: ((h >> VL_SHIFT) & LENGTH_MASK) as usize,
            svl: ((h >> SVL_SHIFT) & LENGTH_MASK) as usize,
        }
    }

    /// The registers' words: V, or Z (32 × VL bytes) and P (16 × VL/8 bytes).
    fn vector_words(&self) -> usize {
        if self.z {
            (32 * self.vl + 16 * self.vl / 8).div_ceil(BYTES_PER_WORD)
        } else {
            V_WORDS
        }
    }

    fn ffr_words(&self) -> usize {
        if self.ffr {
            (self.vl / 8).div_ceil(BYTES_PER_WORD)
        } else {
            0
        }
    }

    fn za_words(&self) -> usize {
        if self.za {
            (self.svl * self.svl).div_ceil(BYTES_PER_WORD)
        } else {
            0
        }
    }

    /// Where P0 lies (with Z registers).
    pub fn p_at(&self) -> usize {
        REGS_START + 32 * self.vl / BYTES_PER_WORD
    }

    pub fn ffr_at(&self) -> usize {
        REGS_START + self.vector_words()
    }

    pub fn za_at(&self) -> usize {
        self.ffr_at() + self.ffr_words()
    }

    /// The whole state's length in words.
    pub fn words(&self) -> usize {
        self.za_at() + self.za_words()
    }

    /// Whether a saved state of `words` words could have been written by this layout.
    pub fn fits(&self, words: usize) -> bool {
        words == self.words() && (!self.z || self.vl.is_multiple_of(16)) && (!self.za || self.svl > 0)
    }
}

/// `saved` with every register word replaced by `with` (the header and controls kept, so
/// it still loads): what the save/restore self-test writes over the registers before
/// putting the real ones back.
pub fn scrambled(saved: &[u64], with: u64) -> alloc::vec::Vec<u64> {
    saved.iter().enumerate().map(|(n, &w)| if n < REGS_START { w } else { with }).collect()
}

#[cfg(target_os = "none")]
mod machine {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// SVCR.SM (bit 0) and SVCR.ZA (bit 1), Arm ARM §D23.2.167.
    const SVCR_SM: u64 = 1 << 0;
    const SVCR_ZA: u64 = 1 << 1;

    /// Which of the vector extensions this CPU has.
    #[derive(Clone, Copy, Debug)]
    struct Extensions {
        sve: bool,
        sme: bool,
    }
    use aarch64_cpu::registers::{Readable, ID_AA64PFR0_EL1, ID_AA64PFR1_EL1};

    /// ID_AA64PFR0_EL1.SVE [35:32] and ID_AA64PFR1_EL1.SME [27:24] (Arm ARM §D23.2.79-80).
    const PFR0_SVE_SHIFT: u64 = 32;
    const PFR1_SME_SHIFT: u64 = 24;
    const ID_FIELD: u64 = 0xF;

    fn extensions() -> Extensions {
        Extensions {
            sve: (ID_AA64PFR0_EL1.get() >> PFR0_SVE_SHIFT) & ID_FIELD != 0,
            sme: (ID_AA64PFR1_EL1.get() >> PFR1_SME_SHIFT) & ID_FIELD != 0,
        }
    }

    macro_rules! read_sysreg {
        ($name:literal) => {{
            let v: u64;
            // SAFETY: reading a register the CPU implements (the caller checked the
            // extension) has no side effect.
            unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
            v
        }};
    }

    macro_rules! write_sysreg {
        ($name:literal, $v:expr) => {{
            let v: u64 = $v;
            // SAFETY: the register belongs to the guest, which is not running on this CPU
            // now; Cairn itself does not use FP/SIMD or vectors.
            unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nomem, nostack)) };
        }};
    }

    // Generic encodings (Arm ARM §D23): FPSR S3_3_C4_C4_1, FPCR S3_3_C4_C4_0, ZCR_EL1
    // S3_0_C1_C2_0, SVCR S3_3_C4_C2_2, SMCR_EL1 S3_0_C1_C2_6, TPIDR2_EL0 S3_3_C13_C0_5.

    /// The FP/SIMD, SVE and SME state of the vCPU loaded on this CPU.
    pub fn save() -> Vec<u64> {
        let ext = extensions();
        let svcr = if ext.sme { read_sysreg!("S3_3_C4_C2_2") } else { 0 };
        let streaming = svcr & SVCR_SM != 0;
        let z = ext.sve || streaming;
        let layout = Layout {
            z,
            ffr: ext.sve && !streaming,
            za: svcr & SVCR_ZA != 0,
            vl: if z { vector_length() } else { 0 },
            svl: if ext.sme { streaming_vector_length() } else { 0 },
        };
        let mut out = vec![0u64; layout.words()];
        out[HEADER] = layout.header();
        out[1] = read_sysreg!("S3_3_C4_C4_1");
        out[2] = read_sysreg!("S3_3_C4_C4_0");
        out[3] = if ext.sve { read_sysreg!("S3_0_C1_C2_0") } else { 0 };
        out[4] = svcr;
        out[5] = if ext.sme { read_sysreg!("S3_0_C1_C2_6") } else { 0 };
        out[6] = if ext.sme { read_sysreg!("S3_3_C13_C0_5") } else { 0 };
        let regs = out[REGS_START..].as_mut_ptr();
        // SAFETY: `out` has room for every part `layout` names (Layout::words), and each
        // store below writes only that part; the instructions exist (checked above).
        unsafe {
            if layout.z {
                store_z(regs);
            } else {
                store_v(regs);
            }
            if layout.ffr {
                let p0 = out[layout.p_at()..].as_ptr();
                store_ffr(out[layout.ffr_at()..].as_mut_ptr(), p0);
            }
            if layout.za {
                store_za(out[layout.za_at()..].as_mut_ptr());
            }
        }
        out
    }

    /// Loads a state [`save`] gave on this CPU (or one of the same CPU type). False, and
    /// nothing changed, if it does not fit this CPU.
    pub fn restore(saved: &[u64]) -> bool {
        let ext = extensions();
        let Some(&header) = saved.first() else { return false };
        let layout = Layout::from_header(header);
        let svcr = saved.get(4).copied().unwrap_or(0);
        let streaming = svcr & SVCR_SM != 0;
        let fits = layout.fits(saved.len())
            && layout.z == (ext.sve || streaming)
            && (!layout.z || layout.vl == if streaming { streaming_vector_length() } else { vector_length() })
            && (!layout.za || (ext.sme && layout.svl == streaming_vector_length()))
            && layout.ffr == (ext.sve && !streaming)
            && (ext.sme || svcr == 0);
        if !fits {
            return false;
        }
        if ext.sme {
            // SVCR first: entering or leaving streaming mode, or turning ZA on, zeroes the
            // registers it concerns (Arm ARM §B1.4.7).
            write_sysreg!("S3_3_C4_C2_2", svcr);
            isb();
        }
        let regs = saved[REGS_START..].as_ptr();
        // SAFETY: `saved` holds every part `layout` names, checked against this CPU's
        // lengths above; FFR goes in before the P registers, which it passes through.
        unsafe {
            if layout.ffr {
                load_ffr(saved[layout.ffr_at()..].as_ptr());
            }
            if layout.z {
                load_z(regs);
            } else {
                load_v(regs);
            }
            if layout.za {
                load_za(saved[layout.za_at()..].as_ptr());
            }
        }
        write_sysreg!("S3_3_C4_C4_1", saved[1]);
        write_sysreg!("S3_3_C4_C4_0", saved[2]);
        if ext.sve {
            write_sysreg!("S3_0_C1_C2_0", saved[3]);
        }
        if ext.sme {
            write_sysreg!("S3_0_C1_C2_6", saved[5]);
            write_sysreg!("S3_3_C13_C0_5", saved[6]);
        }
        isb();
        true
    }

    fn isb() {
        // SAFETY: a barrier.
        unsafe { core::arch::asm!("isb", options(nomem, nostack)) };
    }

    /// The current vector length in bytes (streaming when PSTATE.SM is set).
    fn vector_length() -> usize {
        let vl: u64;
        // SAFETY: RDVL only reads; the caller knows SVE, or streaming mode, is there.
        unsafe { core::arch::asm!(".arch_extension sve", "rdvl {}, #1", out(reg) vl, options(nomem, nostack)) };
        vl as usize
    }

    /// The streaming vector length in bytes.
    fn streaming_vector_length() -> usize {
        let svl: u64;
        // SAFETY: RDSVL only reads; the caller knows SME is there.
        unsafe { core::arch::asm!(".arch_extension sme", "rdsvl {}, #1", out(reg) svl, options(nomem, nostack)) };
        svl as usize
    }

    /// `$op` (stp or ldp) on V0-V31 in pairs, stepping `{p}` on.
    macro_rules! v_pairs {
        ($op:literal) => {
            concat!(
                ".arch_extension fp\n.arch_extension simd\n",
                v_pairs!(@ $op, 0 1, 2 3, 4 5, 6 7, 8 9, 10 11, 12 13, 14 15),
                v_pairs!(@ $op, 16 17, 18 19, 20 21, 22 23, 24 25, 26 27, 28 29, 30 31),
            )
        };
        (@ $op:literal, $($a:literal $b:literal),*) => {
            concat!($($op, " q", $a, ", q", $b, ", [{p}], #32\n"),*)
        };
    }

    /// `$op` (str or ldr) on Z0-Z31 then P0-P15, each at its index times the vector
    /// (or predicate) length from `{p}`.
    macro_rules! z_and_p {
        ($op:literal) => {
            concat!(
                ".arch_extension sve\n",
                z_and_p!(@ $op, z, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                z_and_p!(@ $op, z, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
                // Past the 32 Z registers: ADDVL's immediate reaches 31 at most.
                "addvl {p}, {p}, #16\naddvl {p}, {p}, #16\n",
                z_and_p!(@ $op, p, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            )
        };
        (@ $op:literal, $r:ident, $($n:literal),*) => {
            concat!($($op, " ", stringify!($r), $n, ", [{p}, #", $n, ", mul vl]\n"),*)
        };
    }

    /// `$op` (str or ldr) on every row of ZA, SVL bytes each, from `{p}` on (Arm ARM:
    /// STR and LDR (array vector)).
    macro_rules! za_rows {
        ($op:literal) => {
            concat!(
                ".arch_extension sme\n",
                "rdsvl {svl}, #1\n",
                "mov w12, #0\n",
                "2:\n",
                $op,
                " za[w12, 0], [{p}]\n",
                "add {p}, {p}, {svl}\n",
                "add w12, w12, #1\n",
                "cmp x12, {svl}\n",
                "b.lo 2b\n",
            )
        };
    }

    /// # Safety
    /// `p` must have room for 32 × 16 bytes.
    unsafe fn store_v(p: *mut u64) {
        // SAFETY: the caller vouches for the room.
        unsafe { core::arch::asm!(v_pairs!("stp"), p = inout(reg) p => _, options(nostack)) };
    }

    /// # Safety
    /// `p` must hold 32 × 16 bytes.
    unsafe fn load_v(p: *const u64) {
        // SAFETY: the caller vouches for the contents.
        unsafe { core::arch::asm!(v_pairs!("ldp"), p = inout(reg) p => _, options(nostack)) };
    }

    /// # Safety
    /// `p` must have room for the Z and P registers at the current vector length.
    unsafe fn store_z(p: *mut u64) {
        // SAFETY: the caller vouches for the room.
        unsafe { core::arch::asm!(z_and_p!("str"), p = inout(reg) p => _, options(nostack)) };
    }

    /// # Safety
    /// `p` must hold the Z and P registers at the current vector length.
    unsafe fn load_z(p: *const u64) {
        // SAFETY: the caller vouches for the contents.
        unsafe { core::arch::asm!(z_and_p!("ldr"), p = inout(reg) p => _, options(nostack)) };
    }

    /// Stores FFR through P0, then puts back P0 from where store_z saved it.
    ///
    /// # Safety
    /// `p` must have room for one predicate at the current vector length and `p0` hold
    /// the saved P0; SVE outside streaming mode.
    unsafe fn store_ffr(p: *mut u64, p0: *const u64) {
        // SAFETY: the caller vouches for the room, the saved P0 and the mode.
        unsafe {
            core::arch::asm!(
                ".arch_extension sve",
                "rdffr p0.b",
                "str p0, [{p}]",
                "ldr p0, [{p0}]",
                p = in(reg) p,
                p0 = in(reg) p0,
                options(nostack),
            )
        };
    }

    /// Loads FFR through P0, which load_z then overwrites.
    ///
    /// # Safety
    /// As for [`store_ffr`], with `p` holding the predicate.
    unsafe fn load_ffr(p: *const u64) {
        // SAFETY: the caller vouches for the contents and the mode.
        unsafe {
            core::arch::asm!(
                ".arch_extension sve",
                "ldr p0, [{p}]",
                "wrffr p0.b",
                p = in(reg) p,
                options(nostack),
            )
        };
    }

    /// # Safety
    /// `p` must have room for SVL × SVL bytes; PSTATE.ZA set.
    unsafe fn store_za(p: *mut u64) {
        // SAFETY: the caller vouches for the room and the mode.
        unsafe {
            core::arch::asm!(za_rows!("str"), p = inout(reg) p => _, svl = out(reg) _, out("x12") _, options(nostack))
        };
    }

    /// # Safety
    /// `p` must hold SVL × SVL bytes; PSTATE.ZA set.
    unsafe fn load_za(p: *const u64) {
        // SAFETY: the caller vouches for the contents and the mode.
        unsafe {
            core::arch::asm!(za_rows!("ldr"), p = inout(reg) p => _, svl = out(reg) _, out("x12") _, options(nostack))
        };
    }
}

#[cfg(target_os = "none")]
pub use machine::{restore, save};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips() {
        let l = Layout { z: true, ffr: true, za: true, vl: 256, svl: 64 };
        assert_eq!(Layout::from_header(l.header()), l);
    }

    #[test]
    fn plain_fp_is_the_controls_and_thirty_two_v_registers() {
        let l = Layout { z: false, ffr: false, za: false, vl: 0, svl: 0 };
        assert_eq!(l.words(), 1 + 6 + 64);
        assert!(l.fits(71) && !l.fits(70));
    }

    #[test]
    fn sve_at_512_bits_with_ffr_and_za() {
        // VL 64 bytes: Z 32 × 64 = 2048, P 16 × 8 = 128 bytes; FFR 8; ZA at SVL 32: 1024.
        let l = Layout { z: true, ffr: true, za: true, vl: 64, svl: 32 };
        assert_eq!(l.ffr_at(), 7 + (2048 + 128) / 8);
        assert_eq!(l.za_at(), l.ffr_at() + 1);
        assert_eq!(l.words(), l.za_at() + 1024 / 8);
    }

    #[test]
    fn the_shortest_vectors_round_predicates_up_to_words() {
        // VL 16 bytes: P registers are 2 bytes each (32 in all), FFR 2 bytes: one word.
        let l = Layout { z: true, ffr: true, za: false, vl: 16, svl: 0 };
        assert_eq!(l.ffr_at(), 7 + (512 + 32) / 8);
        assert_eq!(l.words(), l.ffr_at() + 1);
        assert!(!Layout { vl: 24, ..l }.fits(Layout { vl: 24, ..l }.words()));
    }
}
