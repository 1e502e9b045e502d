//! Cairn's console: the UART the device tree's stdout-path names, a PL011 or the BCM2835
//! mini UART (the Pi 4's GPIO 14/15 console), else the first PL011; shared with the
//! guest, which drives it directly. And the `log` backend that prefixes every line with
//! the CPU.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use crate::arch::aarch64::cpu;
use crate::dt::UartKind;

/// PL011 registers (Arm PrimeCell UART PL011 TRM, §3.2): data and flags.
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
/// UARTFR.TXFF: transmit FIFO full.
const UARTFR_TXFF: u32 = 1 << 5;

/// BCM2835 mini UART (BCM2711 ARM Peripherals §2.2.2), from its I/O register, which is
/// where its device-tree node points: AUX_MU_IO_REG, and AUX_MU_LSR_REG's
/// "transmitter empty" bit. The firmware (`enable_uart=1`) has enabled and clocked it.
const AUX_MU_IO: usize = 0x00;
const AUX_MU_LSR: usize = 0x14;
const AUX_MU_LSR_TX_EMPTY: u32 = 1 << 5;

/// The UART base address; 0 until the device tree has been read.
static UART_BASE: AtomicUsize = AtomicUsize::new(0);
/// Whether it is the mini UART rather than a PL011.
static MINI_UART: AtomicBool = AtomicBool::new(false);
/// Serialises whole lines between CPUs.
static LINE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

struct Uart {
    base: usize,
    mini: bool,
}

impl Uart {
    fn put(&self, byte: u8) {
        // (status register, bits that must be set, bits that must be clear, data register)
        let (status, set, clear, data) =
            if self.mini { (AUX_MU_LSR, AUX_MU_LSR_TX_EMPTY, 0, AUX_MU_IO) } else { (UARTFR, 0, UARTFR_TXFF, UARTDR) };
        let ready = |s: u32| s & set == set && s & clear == 0;
        // SAFETY: the base address came from the device tree's UART node and is mapped as
        // device memory; polling the status register then writing the data register is
        // both UARTs' transmit protocol.
        unsafe {
            while !ready(core::ptr::read_volatile((self.base + status) as *const u32)) {}
            core::ptr::write_volatile((self.base + data) as *mut u32, u32::from(byte));
        }
    }
}

impl Write for Uart {
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

pub fn init(base: usize, kind: UartKind) {
    MINI_UART.store(kind == UartKind::MiniUart, Ordering::Relaxed);
    UART_BASE.store(base, Ordering::Release);
}

fn uart() -> Option<Uart> {
    match UART_BASE.load(Ordering::Acquire) {
        0 => None,
        base => Some(Uart { base, mini: MINI_UART.load(Ordering::Relaxed) }),
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
