//! A fake machine for host tests: every kick is recorded, the caller's endianness and
//! vector base are settable, the firmware knows no workaround and has no entropy, and the
//! GIC forwards nothing. State is per test thread.

use core::cell::{Cell, RefCell};
use std::thread_local;
use std::vec::Vec;

use super::Hardware;
use crate::smccc::dispatch::Host;
use crate::smccc::ret;
use crate::smccc::trng::Entropy;
use crate::vgic::dist::HwBacking;

pub struct Fake;

thread_local! {
    static KICKS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    static BIG_ENDIAN: Cell<bool> = const { Cell::new(false) };
    static VECTOR_BASE: Cell<u64> = const { Cell::new(0) };
    static SERIAL: RefCell<Vec<(usize, u8)>> = const { RefCell::new(Vec::new()) };
    static SERIAL_ROOM: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl Fake {
    /// The physical CPUs kicked since the last call, in order.
    pub fn take_kicks() -> Vec<usize> {
        KICKS.with(|k| core::mem::take(&mut *k.borrow_mut()))
    }

    /// What the VMs' virtual UARTs transmitted since the last call, as (VM, byte).
    pub fn take_serial() -> Vec<(usize, u8)> {
        SERIAL.with(|s| core::mem::take(&mut *s.borrow_mut()))
    }

    /// The VMs whose UARTs reported room for input since the last call.
    pub fn take_serial_room() -> Vec<usize> {
        SERIAL_ROOM.with(|s| core::mem::take(&mut *s.borrow_mut()))
    }

    pub fn set_big_endian(big: bool) {
        BIG_ENDIAN.with(|b| b.set(big));
    }

    pub fn set_vector_base(vbar: u64) {
        VECTOR_BASE.with(|v| v.set(vbar));
    }
}

/// Firmware with nothing to say: SMCCC 1.0, no workarounds, no RNG.
struct NoFirmware;

impl Entropy for NoFirmware {
    fn available(&self) -> bool {
        false
    }

    fn next_u64(&self) -> Option<u64> {
        None
    }
}

impl Host for NoFirmware {
    fn arch_feature(&self, _fid: u32) -> i64 {
        ret::NOT_SUPPORTED
    }

    fn forward(&self, _fid: u32, _arg1: u64) -> [u64; 4] {
        [ret::NOT_SUPPORTED as u64, 0, 0, 0]
    }
}

/// A GIC with no physical interrupt the guest owns.
struct NoPhysicalInterrupts;

impl HwBacking for NoPhysicalInterrupts {
    fn is_hw(&self, _intid: u32) -> bool {
        false
    }
    fn set_enabled(&mut self, _vcpu: usize, _intid: u32, _enabled: bool) {}
    fn set_pending(&mut self, _vcpu: usize, _intid: u32, _pending: bool) {}
    fn pending(&self, _vcpu: usize, _intid: u32) -> bool {
        false
    }
    fn set_active(&mut self, _vcpu: usize, _intid: u32, _active: bool) {}
    fn active(&self, _vcpu: usize, _intid: u32) -> bool {
        false
    }
    fn set_edge_triggered(&mut self, _intid: u32, _edge: bool) {}
    fn route(&mut self, _intid: u32, _vcpu: usize) {}
}

impl Hardware for Fake {
    fn kick(pcpu: usize) {
        KICKS.with(|k| k.borrow_mut().push(pcpu));
    }

    fn caller_big_endian() -> bool {
        BIG_ENDIAN.with(Cell::get)
    }

    fn guest_vector_base() -> u64 {
        VECTOR_BASE.with(Cell::get)
    }

    fn firmware() -> &'static dyn Host {
        &NoFirmware
    }

    fn with_gic<R>(f: impl FnOnce(&mut dyn HwBacking) -> R) -> Option<R> {
        Some(f(&mut NoPhysicalInterrupts))
    }

    fn serial_out(vm: usize, byte: u8) {
        SERIAL.with(|s| s.borrow_mut().push((vm, byte)));
    }

    fn serial_room(vm: usize) {
        SERIAL_ROOM.with(|s| s.borrow_mut().push(vm));
    }

    fn settle() {}
}
