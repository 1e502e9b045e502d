//! Cairn's console: the PL011 UART the device tree names (shared with the guest, which
//! drives it directly), and the `log` backend that prefixes every line with the CPU.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use crate::arch::aarch64::cpu;

/// PL011 registers (Arm PrimeCell UART PL011 TRM, §3.2): data and flags.
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
/// UARTFR.TXFF: transmit FIFO full.
const UARTFR_TXFF: u32 = 1 << 5;

/// The PL011 base address; 0 until the device tree has been read.
static UART_BASE: AtomicUsize = AtomicUsize::new(0);
/// Serialises whole lines between CPUs.
static LINE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

struct Pl011(usize);

impl Pl011 {
    fn put(&self, byte: u8) {
        // SAFETY: the base address came from the device tree's PL011 node and is mapped
        // as device memory; polling FR then writing DR is the PL011's transmit protocol.
        unsafe {
            while core::ptr::read_volatile((self.0 + UARTFR) as *const u32) & UARTFR_TXFF != 0 {}
            core::ptr::write_volatile((self.0 + UARTDR) as *mut u32, u32::from(byte));
        }
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

pub fn init(base: usize) {
    UART_BASE.store(base, Ordering::Release);
}

fn uart() -> Option<Pl011> {
    match UART_BASE.load(Ordering::Acquire) {
        0 => None,
        base => Some(Pl011(base)),
    }
}

/// Prints one line, whole, even with several CPUs printing at once.
pub fn print_line(args: fmt::Arguments<'_>) {
    if let Some(mut uart) = uart() {
        let _guard = LINE_LOCK.lock();
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\n");
    }
}

/// Prints without taking the line lock: for fault reports, where the faulting CPU may
/// hold it.
pub fn print_line_unlocked(args: fmt::Arguments<'_>) {
    if let Some(mut uart) = uart() {
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\n");
    }
}

struct CpuLogger;

impl Log for CpuLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            print_line(format_args!("cairn[cpu{}] {:<5} {}", cpu::current(), record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: CpuLogger = CpuLogger;

pub fn init_logging(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
