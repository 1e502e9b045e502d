//! The real machine behind [`Hardware`]: the arch layer's GIC, system registers and
//! firmware calls.

use aarch64_cpu::registers::{Readable, SCTLR_EL1, VBAR_EL1};

use super::Hardware;
use crate::arch::aarch64::{cpu, gic};
use crate::smccc::dispatch::Host;
use crate::smccc::machine::MachineFirmware;
use crate::vgic::dist::HwBacking;
use crate::vgic::physical::PhysicalBacking;

/// SCTLR_EL1.EE: exceptions (and the MMU's table walks) at EL1 are big-endian.
const SCTLR_EL1_EE: u64 = 1 << 25;

pub struct Machine;

impl Hardware for Machine {
    #[inline(always)]
    fn kick(pcpu: usize) {
        if pcpu != cpu::current() {
            if let Some(g) = gic::get() {
                g.kick(pcpu);
            }
        }
    }

    fn caller_big_endian() -> bool {
        SCTLR_EL1.get() & SCTLR_EL1_EE != 0
    }

    fn guest_vector_base() -> u64 {
        VBAR_EL1.get()
    }

    fn firmware() -> &'static dyn Host {
        &MachineFirmware
    }

    #[inline(always)]
    fn with_gic<R>(f: impl FnOnce(&mut dyn HwBacking) -> R) -> Option<R> {
        gic::get().map(|g| f(&mut PhysicalBacking(g)))
    }
}
