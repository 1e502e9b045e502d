//! A vCPU's EL1/EL0 system registers and timers: which registers a vCPU owns (the list
//! every saved state and every load follows, and its length), and, on the bare-metal
//! target, reading and writing them as the hardware holds them while the vCPU is loaded on
//! this CPU, in the order `for_each_saved_sysreg!` gives.

/// Calls `$m!` with every EL1/EL0 system register a vCPU owns and its (op0, op1, CRn, CRm,
/// op2) encoding (Arm ARM DDI 0487 §D23), in restore order: the virtual counter offset
/// before the timers, each timer's compare value before its control register.
#[macro_export]
macro_rules! for_each_saved_sysreg {
    ($m:ident) => {
        $m! {
            SCTLR_EL1 = (3, 0, 1, 0, 0),
            CPACR_EL1 = (3, 0, 1, 0, 2),
            TTBR0_EL1 = (3, 0, 2, 0, 0),
            TTBR1_EL1 = (3, 0, 2, 0, 1),
            TCR_EL1 = (3, 0, 2, 0, 2),
            SPSR_EL1 = (3, 0, 4, 0, 0),
            ELR_EL1 = (3, 0, 4, 0, 1),
            SP_EL0 = (3, 0, 4, 1, 0),
            SP_EL1 = (3, 4, 4, 1, 0),
            AFSR0_EL1 = (3, 0, 5, 1, 0),
            AFSR1_EL1 = (3, 0, 5, 1, 1),
            ESR_EL1 = (3, 0, 5, 2, 0),
            FAR_EL1 = (3, 0, 6, 0, 0),
            PAR_EL1 = (3, 0, 7, 4, 0),
            MAIR_EL1 = (3, 0, 10, 2, 0),
            AMAIR_EL1 = (3, 0, 10, 3, 0),
            VBAR_EL1 = (3, 0, 12, 0, 0),
            CONTEXTIDR_EL1 = (3, 0, 13, 0, 1),
            TPIDR_EL1 = (3, 0, 13, 0, 4),
            CNTKCTL_EL1 = (3, 0, 14, 1, 0),
            CSSELR_EL1 = (3, 2, 0, 0, 0),
            TPIDR_EL0 = (3, 3, 13, 0, 2),
            TPIDRRO_EL0 = (3, 3, 13, 0, 3),
            MDSCR_EL1 = (2, 0, 0, 2, 2),
            CNTVOFF_EL2 = (3, 4, 14, 0, 3),
            CNTV_CVAL_EL0 = (3, 3, 14, 3, 2),
            CNTV_CTL_EL0 = (3, 3, 14, 3, 1),
            CNTP_CVAL_EL0 = (3, 3, 14, 2, 2),
            CNTP_CTL_EL0 = (3, 3, 14, 2, 1),
        }
    };
}

macro_rules! sysreg_count {
    ($($name:ident = ($op0:expr, $op1:expr, $crn:expr, $crm:expr, $op2:expr)),* $(,)?) => {
        /// How many system registers a vCPU owns (and a saved vCPU holds).
        pub const SYSREGS: usize = [$(stringify!($name)),*].len();
    };
}
crate::for_each_saved_sysreg!(sysreg_count);

#[cfg(target_os = "none")]
macro_rules! accessors {
    ($($name:ident = ($op0:expr, $op1:expr, $crn:expr, $crm:expr, $op2:expr)),* $(,)?) => {
        /// Reads every saved system register of the vCPU loaded on this CPU.
        pub fn read_sysregs() -> [u64; SYSREGS] {
            let mut out = [0u64; SYSREGS];
            let mut slots = out.iter_mut();
            $(
                let v: u64;
                // SAFETY: reading an EL1/EL0 register (or CNTVOFF_EL2) at EL2 has no side
                // effect.
                unsafe { core::arch::asm!(concat!("mrs {}, ", stringify!($name)), out(reg) v) };
                if let Some(slot) = slots.next() {
                    *slot = v;
                }
            )*
            out
        }

        /// Writes every saved system register back. Cairn runs at EL2 with the EL1
        /// regime inactive, so nothing here changes how Cairn itself executes.
        pub fn write_sysregs(values: &[u64; SYSREGS]) {
            let mut values = values.iter();
            $(
                let v = values.next().copied().unwrap_or(0);
                // SAFETY: the registers belong to the guest, which is not running; they
                // take effect at the next ERET to EL1.
                unsafe { core::arch::asm!(concat!("msr ", stringify!($name), ", {}"), in(reg) v) };
            )*
            // SAFETY: synchronises the writes before anything (a timer) acts on them.
            unsafe { core::arch::asm!("isb") };
        }
    };
}
#[cfg(target_os = "none")]
crate::for_each_saved_sysreg!(accessors);
