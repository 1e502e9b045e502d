//! The guest's console: the PL011 (or SBSA generic UART, the PL011 subset a hypervisor's
//! virtual UART offers) that the device tree's `/chosen/stdout-path` names, or else the
//! first of them.

use core::fmt::{self, Write};

/// Compatibles of the UARTs this console drives: a PL011 and the SBSA generic UART, whose
/// data and flag registers are the PL011's.
const PL011_LIKE: [&str; 2] = ["arm,pl011", "arm,sbsa-uart"];
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTFR_TXFF: u32 = 1 << 5;

static mut UART_BASE: usize = 0;

pub fn init_from_device_tree(dtb: usize) {
    // SAFETY: the hypervisor hands over a device tree in x0 per the boot protocol.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else { return };
    // stdout-path may name a UART that is not a PL011 (the Pi 4's names its mini UART).
    let is_pl011 =
        |n: &fdt::node::FdtNode<'_, '_>| n.compatible().is_some_and(|c| c.all().any(|s| PL011_LIKE.contains(&s)));
    let node = fdt.chosen().stdout().filter(is_pl011).or_else(|| fdt.find_compatible(&PL011_LIKE));
    let base = node.and_then(|n| crate::dt::reg_address(&fdt, &n, 0)).map(|a| a as usize);
    // SAFETY: single-threaded start-up, before anything prints.
    unsafe { UART_BASE = base.unwrap_or(0) };
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
        for b in s.bytes() {
            // SAFETY: the base comes from the device tree's PL011 node; the guest's MMU is
            // off, so the access is a device access.
            unsafe {
                while core::ptr::read_volatile((base + UARTFR) as *const u32) & UARTFR_TXFF != 0 {}
                core::ptr::write_volatile((base + UARTDR) as *mut u32, u32::from(b));
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
