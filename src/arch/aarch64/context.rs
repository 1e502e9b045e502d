//! A vCPU's EL1/EL0 system registers and timers as the hardware holds them while the vCPU
//! is loaded on this CPU: read and written in the order `for_each_saved_sysreg!` gives.

use crate::vcpu::saved::SYSREGS;

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
crate::for_each_saved_sysreg!(accessors);
