//! The one seam between the policy (the VM model, the exit policy, the virtual GIC's
//! devices) and the machine: what only hardware can do for them, as one [`Hardware`]
//! trait. [`Hw`] is the real machine on the bare-metal target (`machine`) and a fake that
//! records what the policy asked for on the host (`fake`), so the same policy code runs in
//! host unit tests, the way Hafnium tests its core against a fake arch. A type chosen at
//! build time, not a trait object: the exit path pays nothing for the seam.

use crate::smccc::dispatch::Host;
use crate::vgic::dist::HwBacking;

pub trait Hardware {
    /// Makes physical CPU `pcpu` look at its vCPU: the kick SGI ends its WFI, whether it
    /// idles at EL2 or runs the guest. Nothing when `pcpu` is this CPU.
    fn kick(pcpu: usize);
    /// Whether the guest on this CPU runs big-endian at EL1 (SCTLR_EL1.EE): what a CPU_ON
    /// target or a resumed powerdown starts with (DEN0022 §6.4).
    fn caller_big_endian() -> bool;
    /// The guest's exception vector base on this CPU (VBAR_EL1).
    fn guest_vector_base() -> u64;
    /// The machine's firmware and entropy source, for the SMCCC calls only they can answer.
    fn firmware() -> &'static dyn Host;
    /// Runs `f` on the physical GIC's forwarding of the guest's interrupts; None without a
    /// GIC.
    fn with_gic<R>(f: impl FnOnce(&mut dyn HwBacking) -> R) -> Option<R>;
    /// Passes `byte`, which VM `vm`'s virtual UART transmitted, to the console.
    fn serial_out(vm: usize, byte: u8);
    /// VM `vm`'s virtual UART has room for typed input again.
    fn serial_room(vm: usize);
    /// Waits long enough for a kicked CPU to leave its guest and note where it was.
    fn settle();
}

#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
pub use machine::Machine as Hw;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
pub use fake::Fake as Hw;
