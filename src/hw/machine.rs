//! The real machine behind [`Hardware`]: the arch layer's GIC, system registers and
//! firmware calls.

use aarch64_cpu::registers::{Readable, VBAR_EL1};

use super::Hardware;
use crate::arch::aarch64::{cpu, gic};
use crate::console;
use crate::smccc::dispatch::Host;
use crate::smccc::machine::MachineFirmware;
use crate::vgic::dist::HwBacking;
use crate::vgic::physical::PhysicalBacking;

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
        cpu::el1_big_endian()
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

    fn serial_out(vm: usize, byte: u8) {
        console::vm_output(vm, byte);
    }

    fn serial_room(vm: usize) {
        console::vm_input_room(vm);
    }

    fn settle() {
        let end = cpu::counter() + cpu::counter_frequency() / SETTLE_DIVISOR;
        while cpu::counter() < end {
            core::hint::spin_loop();
        }
    }
}

/// How long a kicked CPU is given to exit: a tenth of a millisecond (the counter's
/// frequency divided by this), some thousand instructions of an exit path even under QEMU.
const SETTLE_DIVISOR: u64 = 10_000;
