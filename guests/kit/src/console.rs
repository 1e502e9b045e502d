//! The guest's console: the PL011 (or SBSA generic UART, the PL011 subset a hypervisor's
//! virtual UART offers) that the device tree's `/chosen/stdout-path` names, or else the
//! first of them, or else the BCM2835 mini UART (a Raspberry Pi VM given only that).

use core::fmt::{self, Write};

/// Compatibles of the UARTs this console drives: a PL011 and the SBSA generic UART, whose
/// data and flag registers are the PL011's.
const PL011_LIKE: [&str; 2] = ["arm,pl011", "arm,sbsa-uart"];
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTFR_TXFF: u32 = 1 << 5;
/// The BCM2835 auxiliary mini UART (BCM2711 ARM Peripherals §2.2.2), from its I/O
/// register where its node's `reg` points: data, and AUX_MU_LSR_REG's "transmitter
/// empty" bit.
const MINI_UART: &str = "brcm,bcm2835-aux-uart";
const AUX_MU_IO: usize = 0x00;
const AUX_MU_LSR: usize = 0x14;
const AUX_MU_LSR_TX_EMPTY: u32 = 1 << 5;

static mut UART_BASE: usize = 0;
static mut MINI: bool = false;

pub fn init_from_device_tree(dtb: usize) {
    // SAFETY: the hypervisor hands over a device tree in x0 per the boot protocol.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else { return };
    // stdout-path may name a UART that is not a PL011 (the Pi 4's names its mini UART).
    let is_pl011 =
        |n: &fdt::node::FdtNode<'_, '_>| n.compatible().is_some_and(|c| c.all().any(|s| PL011_LIKE.contains(&s)));
    let node = fdt.chosen().stdout().filter(is_pl011).or_else(|| fdt.find_compatible(&PL011_LIKE));
    let mini = node.is_none();
    let node = node.or_else(|| fdt.find_compatible(&[MINI_UART]));
    let base = node.and_then(|n| crate::dt::reg_address(&fdt, &n, 0)).map(|a| a as usize);
    // SAFETY: single-threaded start-up, before anything prints.
    unsafe {
        UART_BASE = base.unwrap_or(0);
        MINI = mini;
    }
}

/// UARTFR.RXFE: the receive FIFO is empty (PL011 TRM §3.3.3).
const UARTFR_RXFE: u32 = 1 << 4;

/// Waits until a byte is typed on the console (a PL011 or SBSA UART), and returns it;
/// None at once when the console cannot receive (none, or the mini UART).
pub fn read_byte() -> Option<u8> {
    // SAFETY: written once at start-up.
    let (base, mini) = unsafe { (UART_BASE, MINI) };
    if base == 0 || mini {
        return None;
    }
    // SAFETY: the base comes from the device tree's UART node; the guest's MMU is off, so
    // the accesses are device accesses; reading UARTDR pops the byte the flags announce.
    unsafe {
        while core::ptr::read_volatile((base + UARTFR) as *const u32) & UARTFR_RXFE != 0 {}
        Some(core::ptr::read_volatile((base + UARTDR) as *const u32) as u8)
    }
}

/// A byte from the console if one is waiting, without waiting for one.
pub fn try_read_byte() -> Option<u8> {
    // SAFETY: written once at start-up.
    let (base, mini) = unsafe { (UART_BASE, MINI) };
    if base == 0 || mini {
        return None;
    }
    // SAFETY: as in read_byte; UARTDR is read only when the flags announce a byte.
    unsafe {
        if core::ptr::read_volatile((base + UARTFR) as *const u32) & UARTFR_RXFE != 0 {
            return None;
        }
        Some(core::ptr::read_volatile((base + UARTDR) as *const u32) as u8)
    }
}

/// Writes to the PL011; silently drops output when there is none.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: UART_BASE is written once at start-up.
        let base = unsafe { UART_BASE };
        if base == 0 {
            return Ok(());
        }
        // SAFETY: written once at start-up.
        let mini = unsafe { MINI };
        // (status register, bits that must be set, bits that must be clear, data register)
        let (status, set, clear, data) =
            if mini { (AUX_MU_LSR, AUX_MU_LSR_TX_EMPTY, 0, AUX_MU_IO) } else { (UARTFR, 0, UARTFR_TXFF, UARTDR) };
        for b in s.bytes() {
            // SAFETY: the base comes from the device tree's UART node; the guest's MMU is
            // off, so the access is a device access.
            unsafe {
                while {
                    let s = core::ptr::read_volatile((base + status) as *const u32);
                    s & set != set || s & clear != 0
                } {}
                core::ptr::write_volatile((base + data) as *mut u32, u32::from(b));
            }
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Console, $($arg)*);
    }};
}
