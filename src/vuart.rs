//! A virtual Arm SBSA Generic UART: the PL011 subset a guest's console runs on, owned by
//! Cairn so a VM has a UART of its own without touching the machine's. This module is the
//! register model only (pure, host-tested): the run loop hands it the guest's accesses to
//! the frame, sends what the guest transmits to the console, feeds it input, and drives the
//! UART's interrupt line from [`VirtualUart::irq_level`].
//!
//! What a guest sees: Linux's `amba-pl011` (`arm,sbsa-uart`: 32-bit accesses, fixed line
//! settings, a 32-byte FIFO) and its earlycon (which may write UARTDR a byte at a time).
//! The registers the SBSA Generic UART defines (Arm DEN0029, Appendix B "Generic UART":
//! UARTDR, UARTRSR/ECR, UARTFR, UARTIMSC, UARTRIS, UARTMIS, UARTICR) behave as the PL011 TRM
//! (Arm DDI 0183G, r1p5) says; the line and baud registers a full PL011 driver programs are
//! kept and read back but change nothing, since no bits travel on a wire. Transmit is
//! immediate (the TX FIFO is always empty) unless the caller applies back-pressure with
//! [`VirtualUart::set_tx_blocked`]; receive goes through a 32-entry FIFO that refuses
//! input when full, so nothing typed is lost.

/// Guest-visible size of the UART's register frame (one 4 KiB page).
pub const FRAME_SIZE: u64 = 0x1000;
/// The receive FIFO depth the guest sees (SBSA: 32).
pub const RX_FIFO_DEPTH: usize = 32;

// Register offsets, DDI 0183G §3.2 Table 3-1.
const UARTDR: u64 = 0x000;
const UARTRSR_ECR: u64 = 0x004;
const UARTFR: u64 = 0x018;
const UARTILPR: u64 = 0x020;
const UARTIBRD: u64 = 0x024;
const UARTFBRD: u64 = 0x028;
const UARTLCR_H: u64 = 0x02C;
const UARTCR: u64 = 0x030;
const UARTIFLS: u64 = 0x034;
const UARTIMSC: u64 = 0x038;
const UARTRIS: u64 = 0x03C;
const UARTMIS: u64 = 0x040;
const UARTICR: u64 = 0x044;
const UARTDMACR: u64 = 0x048;
const UARTPERIPHID0: u64 = 0xFE0;
const UARTPCELLID3: u64 = 0xFFC;

/// UARTPeriphID0-3 then UARTPCellID0-3 (§3.3.15-3.3.16): part 0x011, designer Arm (0x41),
/// revision 3 (r1p5), and the PrimeCell signature 0xB105F00D.
const ID_BYTES: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

// UARTFR bits (§3.3.3). CTS, DSR, DCD and RI stay 0: there are no modem lines.
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFF: u32 = 1 << 6;
const FR_TXFE: u32 = 1 << 7;

// Interrupt bits, shared by UARTIMSC, UARTRIS, UARTMIS and UARTICR (§3.3.10-3.3.13).
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;
/// UARTIMSC implements bits 10:0 (RIMIM..OEIM).
const IMSC_MASK: u32 = 0x7FF;

// The widths of the registers that are only stored (§3.3.4-3.3.9); the rest read as zero.
const ILPR_MASK: u32 = 0xFF;
const IBRD_MASK: u32 = 0xFFFF;
const FBRD_MASK: u32 = 0x3F;
const LCR_H_MASK: u32 = 0xFF;
const CR_MASK: u32 = 0xFFFF;
const IFLS_MASK: u32 = 0x3F;

/// UARTCR at reset: TXE and RXE set, UARTEN clear (§3.3.8).
const CR_RESET: u32 = 0x300;
/// UARTIFLS at reset: both trigger levels at 1/2 (§3.3.9).
const IFLS_RESET: u32 = 0x12;
/// UARTIFLS.RXIFLSEL, bits 5:3.
const IFLS_RXIFLSEL_SHIFT: u32 = 3;
const IFLS_RXIFLSEL_MASK: u32 = 0b111;
/// The receive trigger levels RXIFLSEL selects, in eighths of the FIFO: 1/8, 1/4, 1/2, 3/4,
/// 7/8. The reserved encodings (0b101-0b111) act as the reset level, 1/2.
const RX_TRIGGER_EIGHTHS: [usize; 5] = [1, 2, 4, 6, 7];
const RX_TRIGGER_RESET_EIGHTHS: usize = 4;
const EIGHTHS: usize = 8;

const DATA_MASK: u32 = 0xFF;
const WORD_BYTES: u8 = 4;
const BYTE_IN_WORD: u64 = 0b11;
const BITS_PER_BYTE: u64 = 8;

/// The receive FIFO: a ring, so the struct stays `const`-constructible without `alloc`.
#[derive(Clone, Debug)]
struct RxFifo {
    bytes: [u8; RX_FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl RxFifo {
    const fn new() -> Self {
        Self { bytes: [0; RX_FIFO_DEPTH], head: 0, len: 0 }
    }

    fn push(&mut self, byte: u8) -> bool {
        if self.len == RX_FIFO_DEPTH {
            return false;
        }
        self.bytes[(self.head + self.len) % RX_FIFO_DEPTH] = byte;
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % RX_FIFO_DEPTH;
        self.len -= 1;
        Some(byte)
    }
}

/// One guest's UART: its registers, its receive FIFO and its transmit back-pressure.
#[derive(Clone, Debug)]
pub struct VirtualUart {
    rx: RxFifo,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    tx_blocked: bool,
    /// The guest wrote TXIC to UARTICR since its last UARTDR write (or the last unblock).
    tx_interrupt_cleared: bool,
}

impl Default for VirtualUart {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualUart {
    /// The power-on state: FIFO empty, interrupts masked, reset values of §3.2.
    pub const fn new() -> Self {
        Self {
            rx: RxFifo::new(),
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            tx_blocked: false,
            tx_interrupt_cleared: false,
        }
    }

    /// Back to the power-on state (a VM reset); buffered input is dropped.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// A guest read of `width` bytes (1, 2 or 4) at `offset` within the frame: the addressed
    /// bytes of the 32-bit register. Other widths and offsets past the frame read as zero.
    /// Any read of UARTDR pops the receive FIFO, as the bus read of the register would.
    pub fn read(&mut self, offset: u64, width: u8) -> u32 {
        let Some(mask) = width_mask(width) else { return 0 };
        if offset >= FRAME_SIZE {
            return 0;
        }
        let byte = offset & BYTE_IN_WORD;
        (self.read_register(offset - byte) >> (byte * BITS_PER_BYTE)) & mask
    }

    /// A guest write; returns Some(byte) when the guest transmitted a byte (a write to
    /// UARTDR) that must go to the console. UARTDR takes writes of any width (earlycon may
    /// use byte stores); other registers only take aligned 32-bit writes, as the SBSA UART
    /// requires. A write while blocked still returns its byte: output is never dropped, even
    /// from a driver that does not look at TXFF (Linux's TX interrupt handler writes up to
    /// fifosize/2 = 16 bytes without reading UARTFR), so the caller should unblock only with
    /// room for such a burst.
    pub fn write(&mut self, offset: u64, width: u8, value: u32) -> Option<u8> {
        width_mask(width)?;
        if offset == UARTDR {
            return Some(self.transmit(value));
        }
        if width == WORD_BYTES && offset & BYTE_IN_WORD == 0 {
            self.write_register(offset, value);
        }
        None
    }

    /// Input for the guest: pushes `byte` into the receive FIFO; false (byte not taken) when
    /// the FIFO is full, so the caller keeps it (back-pressure, nothing is lost).
    pub fn receive(&mut self, byte: u8) -> bool {
        self.rx.push(byte)
    }

    /// Free room in the receive FIFO.
    pub fn rx_room(&self) -> usize {
        RX_FIFO_DEPTH - self.rx.len
    }

    /// The UART's interrupt output: (UARTRIS & UARTIMSC) != 0 (UARTINTR, §3.4.6,
    /// level-sensitive).
    pub fn irq_level(&self) -> bool {
        self.masked_interrupts() != 0
    }

    /// Back-pressure on output: while blocked, UARTFR.TXFF reads 1, TXFE 0, BUSY 1 and
    /// TXRIS 0 so the guest waits; unblocking re-raises TXRIS (so a driver waiting on the TX
    /// interrupt continues).
    pub fn set_tx_blocked(&mut self, blocked: bool) {
        if self.tx_blocked && !blocked {
            self.tx_interrupt_cleared = false;
        }
        self.tx_blocked = blocked;
    }

    fn read_register(&mut self, register: u64) -> u32 {
        match register {
            // Bits 11:8 (error flags) are always 0: no byte arrives broken.
            UARTDR => self.rx.pop().map_or(0, u32::from),
            UARTFR => self.flags(),
            UARTILPR => self.ilpr,
            UARTIBRD => self.ibrd,
            UARTFBRD => self.fbrd,
            UARTLCR_H => self.lcr_h,
            UARTCR => self.cr,
            UARTIFLS => self.ifls,
            UARTIMSC => self.imsc,
            UARTRIS => self.raw_interrupts(),
            UARTMIS => self.masked_interrupts(),
            UARTPERIPHID0..=UARTPCELLID3 => ID_BYTES[((register - UARTPERIPHID0) / u64::from(WORD_BYTES)) as usize],
            // No receive errors, ICR is write-only, no DMA.
            UARTRSR_ECR | UARTICR | UARTDMACR => 0,
            // Reserved space reads as zero.
            _ => 0,
        }
    }

    fn write_register(&mut self, register: u64, value: u32) {
        match register {
            UARTILPR => self.ilpr = value & ILPR_MASK,
            UARTIBRD => self.ibrd = value & IBRD_MASK,
            UARTFBRD => self.fbrd = value & FBRD_MASK,
            UARTLCR_H => self.lcr_h = value & LCR_H_MASK,
            // UARTEN/TXE/RXE are not enforced: earlycon writes without enabling the UART,
            // and the SBSA UART is always enabled.
            UARTCR => self.cr = value & CR_MASK,
            UARTIFLS => self.ifls = value & IFLS_MASK,
            UARTIMSC => self.imsc = value & IMSC_MASK,
            UARTICR => self.clear_interrupts(value),
            // UARTECR clears errors there never are; no DMA.
            UARTRSR_ECR | UARTDMACR => {}
            // Read-only registers and reserved space ignore writes.
            _ => {}
        }
    }

    fn transmit(&mut self, value: u32) -> u8 {
        // Writing the FIFO lifts it above the TX trigger level for a moment (§3.4.3): a
        // cleared TXRIS comes back once the byte is (at once) sent.
        self.tx_interrupt_cleared = false;
        (value & DATA_MASK) as u8
    }

    /// UARTICR (§3.3.13). Only TXIC has an effect: RXRIS and RTRIS are levels that follow
    /// the FIFO, which the driver drains, so clearing them would only hide waiting input;
    /// the modem and error interrupts never assert.
    fn clear_interrupts(&mut self, value: u32) {
        if value & INT_TX != 0 {
            self.tx_interrupt_cleared = true;
        }
    }

    /// UARTFR (§3.3.3): the RX bits from the FIFO; TX always empty and idle unless blocked.
    fn flags(&self) -> u32 {
        let mut flags = if self.tx_blocked { FR_TXFF | FR_BUSY } else { FR_TXFE };
        if self.rx.len == 0 {
            flags |= FR_RXFE;
        }
        if self.rx.len == RX_FIFO_DEPTH {
            flags |= FR_RXFF;
        }
        flags
    }

    /// UARTRIS (§3.3.11, §3.4.2-3.4.4), all three as levels. RTRIS asserts as soon as data
    /// waits: an emulated UART has no idle line to time, and without it a driver with the
    /// 1/2 trigger would never see a single typed character. TXRIS holds while output is
    /// not blocked, since the TX FIFO is always drained at once (at/below any trigger).
    fn raw_interrupts(&self) -> u32 {
        let mut raw = 0;
        if self.rx.len >= self.rx_trigger_level() {
            raw |= INT_RX;
        }
        if self.rx.len > 0 {
            raw |= INT_RT;
        }
        if !self.tx_blocked && !self.tx_interrupt_cleared {
            raw |= INT_TX;
        }
        raw
    }

    /// UARTMIS (§3.3.12).
    fn masked_interrupts(&self) -> u32 {
        self.raw_interrupts() & self.imsc
    }

    /// How many bytes UARTIFLS.RXIFLSEL asks for before RXRIS asserts (§3.3.9).
    fn rx_trigger_level(&self) -> usize {
        let select = ((self.ifls >> IFLS_RXIFLSEL_SHIFT) & IFLS_RXIFLSEL_MASK) as usize;
        let eighths = RX_TRIGGER_EIGHTHS.get(select).copied().unwrap_or(RX_TRIGGER_RESET_EIGHTHS);
        RX_FIFO_DEPTH * eighths / EIGHTHS
    }
}

/// The value mask of an access `width` bytes wide; None for widths the bus cannot make.
fn width_mask(width: u8) -> Option<u32> {
    match width {
        1 => Some(u32::from(u8::MAX)),
        2 => Some(u32::from(u16::MAX)),
        4 => Some(u32::MAX),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn read32(uart: &mut VirtualUart, offset: u64) -> u32 {
        uart.read(offset, WORD_BYTES)
    }

    fn write32(uart: &mut VirtualUart, offset: u64, value: u32) -> Option<u8> {
        uart.write(offset, WORD_BYTES, value)
    }

    fn fill(uart: &mut VirtualUart, count: usize) {
        (0..count).for_each(|i| assert!(uart.receive(i as u8)));
    }

    #[test]
    fn powers_on_with_the_trm_reset_values() {
        let mut uart = VirtualUart::new();
        assert_eq!(read32(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
        assert_eq!(read32(&mut uart, UARTCR), CR_RESET);
        assert_eq!(read32(&mut uart, UARTIFLS), IFLS_RESET);
        assert_eq!(read32(&mut uart, UARTIMSC), 0);
        assert_eq!(read32(&mut uart, UARTRIS), INT_TX);
        assert_eq!(read32(&mut uart, UARTMIS), 0);
        assert_eq!(read32(&mut uart, UARTDR), 0);
        assert!(!uart.irq_level());
        assert_eq!(uart.rx_room(), RX_FIFO_DEPTH);
    }

    #[test]
    fn a_byte_written_to_dr_goes_to_the_console() {
        let mut uart = VirtualUart::new();
        assert_eq!(write32(&mut uart, UARTDR, 0x1234_5641), Some(b'A'));
        assert_eq!(uart.write(UARTDR, 1, u32::from(b'b')), Some(b'b'));
        assert_eq!(write32(&mut uart, UARTIMSC, INT_RX), None);
    }

    #[test]
    fn received_bytes_pop_from_dr_in_order_and_a_full_fifo_refuses_more() {
        let mut uart = VirtualUart::new();
        fill(&mut uart, RX_FIFO_DEPTH);
        assert_eq!(read32(&mut uart, UARTFR) & (FR_RXFE | FR_RXFF), FR_RXFF);
        assert!(!uart.receive(0xEE));
        assert_eq!(uart.rx_room(), 0);
        let drained: Vec<u32> = (0..RX_FIFO_DEPTH).map(|_| read32(&mut uart, UARTDR)).collect();
        assert_eq!(drained, (0..RX_FIFO_DEPTH as u32).collect::<Vec<_>>());
        assert_eq!(read32(&mut uart, UARTFR) & (FR_RXFE | FR_RXFF), FR_RXFE);
    }

    #[test]
    fn rx_interrupt_asserts_at_the_ifls_trigger_level() {
        for (select, level) in [(0, 4), (1, 8), (2, 16), (3, 24), (4, 28), (7, 16)] {
            let mut uart = VirtualUart::new();
            write32(&mut uart, UARTIFLS, select << IFLS_RXIFLSEL_SHIFT);
            fill(&mut uart, level - 1);
            assert_eq!(read32(&mut uart, UARTRIS) & INT_RX, 0, "RXIFLSEL {select}");
            fill(&mut uart, 1);
            assert_eq!(read32(&mut uart, UARTRIS) & INT_RX, INT_RX, "RXIFLSEL {select}");
        }
    }

    #[test]
    fn one_waiting_byte_asserts_the_receive_timeout_and_icr_leaves_it() {
        let mut uart = VirtualUart::new();
        write32(&mut uart, UARTIMSC, INT_RT | INT_RX);
        assert!(uart.receive(b'x'));
        assert_eq!(read32(&mut uart, UARTMIS), INT_RT);
        write32(&mut uart, UARTICR, INT_RT | INT_RX);
        assert!(uart.irq_level(), "RTRIS follows the FIFO, not ICR");
        assert_eq!(read32(&mut uart, UARTDR), u32::from(b'x'));
        assert!(!uart.irq_level());
    }

    #[test]
    fn irq_follows_imsc_and_txic_clears_until_the_next_dr_write() {
        let mut uart = VirtualUart::new();
        write32(&mut uart, UARTIMSC, u32::MAX);
        assert_eq!(read32(&mut uart, UARTIMSC), IMSC_MASK);
        assert!(uart.irq_level());
        write32(&mut uart, UARTICR, INT_TX);
        assert!(!uart.irq_level());
        assert_eq!(read32(&mut uart, UARTRIS), 0);
        write32(&mut uart, UARTDR, u32::from(b'z'));
        assert_eq!(read32(&mut uart, UARTMIS), INT_TX);
        write32(&mut uart, UARTIMSC, INT_RX);
        assert!(!uart.irq_level());
    }

    #[test]
    fn blocked_output_reads_full_and_busy_and_unblocking_raises_tx() {
        let mut uart = VirtualUart::new();
        write32(&mut uart, UARTIMSC, INT_TX);
        uart.set_tx_blocked(true);
        assert_eq!(read32(&mut uart, UARTFR), FR_TXFF | FR_BUSY | FR_RXFE);
        assert_eq!(read32(&mut uart, UARTRIS) & INT_TX, 0);
        assert!(!uart.irq_level());
        write32(&mut uart, UARTICR, INT_TX);
        uart.set_tx_blocked(false);
        assert_eq!(read32(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
        assert!(uart.irq_level());
    }

    #[test]
    fn id_registers_read_as_a_pl011_r1p5() {
        let mut uart = VirtualUart::new();
        let ids: Vec<u32> = (UARTPERIPHID0..=UARTPCELLID3).step_by(4).map(|o| read32(&mut uart, o)).collect();
        assert_eq!(ids, ID_BYTES);
        assert_eq!(read32(&mut uart, UARTPERIPHID0 - u64::from(WORD_BYTES)), 0);
        assert_eq!(read32(&mut uart, FRAME_SIZE), 0);
    }

    #[test]
    fn sub_word_reads_return_the_addressed_bytes_and_sub_word_writes_are_ignored() {
        let mut uart = VirtualUart::new();
        assert_eq!(uart.read(UARTCR + 1, 1), CR_RESET >> 8);
        assert_eq!(uart.read(UARTCR, 2), CR_RESET);
        assert_eq!(uart.read(UARTFR, 1), FR_TXFE | FR_RXFE);
        uart.write(UARTIMSC, 1, INT_RX);
        uart.write(UARTIBRD + 1, WORD_BYTES, 0xFF);
        assert_eq!(read32(&mut uart, UARTIMSC), 0);
        assert_eq!(read32(&mut uart, UARTIBRD), 0);
        write32(&mut uart, UARTIBRD, 0x1_0027);
        assert_eq!(read32(&mut uart, UARTIBRD), 0x27);
        assert_eq!(uart.read(UARTDR, 8), 0);
    }

    #[test]
    fn reset_drops_input_and_masks_interrupts() {
        let mut uart = VirtualUart::new();
        write32(&mut uart, UARTIMSC, INT_RT);
        write32(&mut uart, UARTLCR_H, 0x70);
        fill(&mut uart, 3);
        uart.set_tx_blocked(true);
        uart.reset();
        assert_eq!(uart.rx_room(), RX_FIFO_DEPTH);
        assert_eq!(read32(&mut uart, UARTIMSC), 0);
        assert_eq!(read32(&mut uart, UARTLCR_H), 0);
        assert_eq!(read32(&mut uart, UARTFR), FR_TXFE | FR_RXFE);
        assert!(!uart.irq_level());
    }

    /// Linux's pl011_int: acknowledge what it can, read while UARTFR says data waits.
    fn linux_interrupt(uart: &mut VirtualUart, typed: &mut Vec<u8>) {
        while uart.irq_level() {
            let status = read32(uart, UARTMIS);
            write32(uart, UARTICR, status & !(INT_TX | INT_RT | INT_RX));
            while read32(uart, UARTFR) & FR_RXFE == 0 {
                typed.push(read32(uart, UARTDR) as u8);
            }
        }
    }

    #[test]
    fn linux_startup_then_typing_delivers_every_byte_in_order() {
        let mut uart = VirtualUart::new();
        fill(&mut uart, 5); // Typed before the driver started: drained by its startup.
        write32(&mut uart, UARTICR, IMSC_MASK);
        write32(&mut uart, UARTICR, INT_RT | INT_RX);
        for _ in 0..2 * RX_FIFO_DEPTH {
            if read32(&mut uart, UARTFR) & FR_RXFE != 0 {
                break;
            }
            read32(&mut uart, UARTDR);
        }
        write32(&mut uart, UARTIMSC, INT_RT | INT_RX);
        assert!(!uart.irq_level());

        const TYPED: u32 = 800;
        const BATCH: usize = RX_FIFO_DEPTH + RX_FIFO_DEPTH / 2; // More than fits: back-pressure.
        let input: Vec<u8> = (0..TYPED).map(|i| (i * 7 % 251) as u8).collect();
        let (mut pending, mut typed) = (&input[..], Vec::new());
        while !pending.is_empty() {
            let batch = pending.len().min(BATCH);
            let taken = pending[..batch].iter().take_while(|&&b| uart.receive(b)).count();
            pending = &pending[taken..];
            linux_interrupt(&mut uart, &mut typed);
        }
        assert_eq!(typed, input);
    }
}
