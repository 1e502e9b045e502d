//! Cairn's console: the UART the device tree's stdout-path names, a PL011 or the BCM2835
//! mini UART (the Pi 4's GPIO 14/15 console), else the first PL011. A PL011 console is
//! Cairn's alone: each VM gets a virtual UART (`vm::uart`), whose output comes out here
//! and which receives what is typed, taken from the PL011's receive interrupt at EL2.
//! The mini UART is still shared with the guest, which drives it directly. And the `log`
//! backend that prefixes every line with the CPU.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::arch::aarch64::{cpu, gic};
use crate::conmux::{Input, Mux, Target, TypedQueue, TYPED_CAPACITY};
use crate::dt::UartKind;
use crate::manage::{self, Answer, Control};
use crate::prompt::LineEditor;
use crate::vm::uart::SerialPort;

/// PL011 registers (Arm PrimeCell UART PL011 TRM, §3.2): data and flags.
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
/// UARTFR.TXFF: transmit FIFO full; UARTFR.RXFE: receive FIFO empty.
const UARTFR_TXFF: u32 = 1 << 5;
const UARTFR_RXFE: u32 = 1 << 4;
/// UARTIMSC (§3.3.10): the receive and receive-timeout interrupt masks (set = enabled).
const UARTIMSC: usize = 0x038;
const UARTIMSC_RXIM: u32 = 1 << 4;
const UARTIMSC_RTIM: u32 = 1 << 6;

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

impl Uart {
    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: a PL011 register of the console's frame, mapped as device memory at EL2.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as read_reg; the registers written are UARTIMSC's, Cairn's alone.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// The next received byte, if the PL011's receive FIFO holds one.
    fn get(&self) -> Option<u8> {
        if self.read_reg(UARTFR) & UARTFR_RXFE != 0 {
            return None;
        }
        Some(self.read_reg(UARTDR) as u8)
    }

    /// Turns the receive and receive-timeout interrupts on: Cairn reads what is typed.
    fn enable_receive_interrupts(&self) {
        self.write_reg(UARTIMSC, UARTIMSC_RXIM | UARTIMSC_RTIM);
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

/// Prints one line, whole, even with several CPUs printing at once; once VMs share the
/// line, through the mux, which starts it on a fresh line.
pub fn print_line(args: fmt::Arguments<'_>) {
    let Some(mut uart) = uart() else { return };
    let _guard = LINE_LOCK.lock();
    let mut shared = SHARED.lock();
    match shared.as_mut() {
        Some(sh) => sh.mux.cairn_line(&alloc::format!("{args}"), &mut raw_sink(&uart)),
        None => {
            let _ = uart.write_fmt(args);
            let _ = uart.write_str("\n");
        }
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

/// The console once VMs have serial ports: their ports, in VM order, the mux that shares
/// the line between them and Cairn (crate::conmux), and each VM's typed input waiting for
/// room in its UART's FIFO.
struct Shared {
    ports: Vec<Arc<SerialPort>>,
    mux: Mux,
    typed: Vec<TypedQueue>,
    /// Cairn's own prompt, the target after the VMs (crate::prompt, crate::manage).
    editor: LineEditor,
}

static SHARED: spin::Mutex<Option<Shared>> = spin::Mutex::new(None);

/// Writes bytes to the UART as they are (the mux decides line breaks).
fn raw_sink(uart: &Uart) -> impl FnMut(&[u8]) + '_ {
    move |bytes: &[u8]| bytes.iter().for_each(|&b| uart.put(b))
}

/// Gives each VM its console through its serial port, named as the mux shows it. With
/// several VMs, says where the input goes.
pub fn attach(ports: Vec<(Arc<SerialPort>, &str)>) {
    let names: Vec<&str> = ports.iter().map(|(_, n)| *n).collect();
    let mut mux = Mux::new(&names, true);
    let _line = LINE_LOCK.lock();
    if let (Some(uart), true) = (uart(), names.len() > 1) {
        mux.announce(&mut raw_sink(&uart));
    }
    let typed = ports.iter().map(|_| TypedQueue::default()).collect();
    let ports = ports.into_iter().map(|(p, _)| p).collect();
    *SHARED.lock() = Some(Shared { ports, mux, typed, editor: LineEditor::new() });
}

/// Takes the PL011's receive interrupt (`intid`) for Cairn, on the boot CPU, so typed
/// input reaches the VMs' virtual UARTs. Only for a PL011 console.
pub fn take_input(intid: u32) {
    let Some(uart) = uart().filter(|u| !u.mini) else { return };
    gic::claim_spi(intid, 0, pass_input);
    uart.enable_receive_interrupts();
}

/// What carries out a prompt command that changes a VM's life (run::control), set at boot.
static CONTROL: spin::Once<fn(Control) -> String> = spin::Once::new();

/// Has `carry_out` do what `stop`, `start` and `reset` at the prompt ask.
pub fn on_control(carry_out: fn(Control) -> String) {
    CONTROL.call_once(|| carry_out);
}

/// The PL011's receive interrupt: every typed byte goes through the mux (three Ctrl-A
/// move the input) to the queue of the VM with the input, and from there into its UART's
/// FIFO as it has room, or to Cairn's prompt. The PL011 is always read empty, so the
/// console always answers. A command that stops or starts a VM runs after the console's
/// locks are let go: it waits for other CPUs, which may be printing.
fn pass_input() {
    let Some(control) = take_typed() else { return };
    let Some(uart) = uart() else { return };
    let outcome = match CONTROL.get() {
        Some(carry_out) => carry_out(control),
        None => String::from("not available on this machine"),
    };
    let _line = LINE_LOCK.lock();
    if let Some(sh) = SHARED.lock().as_mut() {
        sh.answer(&[outcome], &uart);
    }
}

/// Takes what was typed; returns a control the prompt asked for, if any (the rest of the
/// typed bytes wait in the PL011 until it is carried out).
fn take_typed() -> Option<Control> {
    let uart = uart()?;
    let _line = LINE_LOCK.lock();
    let mut shared = SHARED.lock();
    let Some(sh) = shared.as_mut() else {
        while uart.get().is_some() {} // nobody listens: drop it, or the line never falls
        return None;
    };
    let mut control = None;
    let mut touched = 0u64;
    while control.is_none() {
        let Some(byte) = uart.get() else { break };
        match sh.mux.input(byte, &mut raw_sink(&uart)) {
            Input::Deliver { to: Target::Vm(slot), bytes, len } => {
                if let Some(queue) = sh.typed.get_mut(slot) {
                    queue.push(&bytes[..len]);
                    touched |= 1 << slot.min(63);
                }
            }
            Input::Deliver { to: Target::Prompt, bytes, len } => {
                for &b in &bytes[..len] {
                    control = control.or_else(|| sh.at_prompt(b, &uart));
                }
            }
            Input::Switched if sh.mux.focus() == Target::Prompt => sh.show_prompt(&uart),
            _ => {}
        }
    }
    for slot in 0..sh.ports.len() {
        if touched & (1 << slot.min(63)) != 0 {
            sh.pass_on(slot, &uart);
        }
    }
    control
}

impl Shared {
    /// A byte typed at Cairn's prompt: edits the line; a whole line is answered, then the
    /// prompt comes again. The answers read the VMs' state and print nothing else, so
    /// they run here, under the console's lock.
    fn at_prompt(&mut self, byte: u8, uart: &Uart) -> Option<Control> {
        let (editor, mux) = (&mut self.editor, &mut self.mux);
        let mut sink = |bytes: &[u8]| mux.prompt_output(bytes, &mut raw_sink(uart));
        let line = editor.feed(byte, &mut sink)?;
        match manage::answer(&line) {
            Answer::Lines(lines) => {
                self.answer(&lines, uart);
                None
            }
            Answer::Control(control) => Some(control),
        }
    }

    /// Prints `lines` at the prompt, then the prompt again.
    fn answer(&mut self, lines: &[String], uart: &Uart) {
        let (editor, mux) = (&mut self.editor, &mut self.mux);
        let mut sink = |bytes: &[u8]| mux.prompt_output(bytes, &mut raw_sink(uart));
        for line in lines {
            sink(line.as_bytes());
            sink(b"\r\n");
        }
        editor.prompt(&mut sink);
    }

    /// Prints the prompt (and the line typed so far), the prompt having the input again.
    fn show_prompt(&mut self, uart: &Uart) {
        let (editor, mux) = (&mut self.editor, &mut self.mux);
        editor.prompt(&mut |bytes: &[u8]| mux.prompt_output(bytes, &mut raw_sink(uart)));
    }

    /// Moves VM `slot`'s typed bytes into its UART's FIFO while it has room; says so in
    /// one line if bytes were dropped because it was not reading.
    fn pass_on(&mut self, slot: usize, uart: &Uart) {
        let (Some(port), Some(queue)) = (self.ports.get(slot), self.typed.get_mut(slot)) else { return };
        queue.drain(|b| port.receive(b));
        if queue.overrun_started() {
            let line = alloc::format!(
                "cairn: vm{} is not reading its console: what is typed for it past {TYPED_CAPACITY} bytes is dropped",
                port.vm
            );
            self.mux.cairn_line(&line, &mut raw_sink(uart));
        }
    }

    fn slot_of(&self, vm: usize) -> Option<usize> {
        self.ports.iter().position(|p| p.vm == vm)
    }
}

/// VM `vm`'s UART transmitted `byte`.
pub fn vm_output(vm: usize, byte: u8) {
    let Some(uart) = uart() else { return };
    let _line = LINE_LOCK.lock();
    let mut shared = SHARED.lock();
    match shared.as_mut() {
        Some(sh) => {
            if let Some(slot) = sh.slot_of(vm) {
                sh.mux.output(slot, byte, &mut raw_sink(&uart));
            }
        }
        None => uart.put(byte),
    }
}

/// VM `vm`'s UART has room for input again: pass on what waits for it.
pub fn vm_input_room(vm: usize) {
    let Some(uart) = uart() else { return };
    let _line = LINE_LOCK.lock();
    if let Some(sh) = SHARED.lock().as_mut() {
        if let Some(slot) = sh.slot_of(vm).filter(|&s| !sh.typed[s].is_empty()) {
            sh.pass_on(slot, &uart);
        }
    }
}

/// VM `vm` runs again (a `start` at the prompt): the mux offers it the input again.
pub fn vm_back(vm: usize) {
    if let Some(sh) = SHARED.lock().as_mut() {
        if let Some(slot) = sh.slot_of(vm) {
            sh.mux.set_present(slot, true);
        }
    }
}

/// VM `vm` is gone: the input moves on from it if it had it and another VM runs, and the
/// mux skips it.
pub fn vm_gone(vm: usize) {
    let Some(uart) = uart() else { return };
    let _line = LINE_LOCK.lock();
    if let Some(sh) = SHARED.lock().as_mut() {
        if let Some(slot) = sh.slot_of(vm) {
            sh.mux.set_present(slot, false);
            sh.typed[slot] = TypedQueue::default();
            // Not after the last VM: the machine powers off, or the prompt's `stop` took it
            // and the prompt still has the input.
            if sh.mux.focus() == Target::Vm(slot) && sh.mux.another_vm_present() {
                sh.mux.switch(&mut raw_sink(&uart));
                if sh.mux.focus() == Target::Prompt {
                    sh.show_prompt(&uart);
                }
            }
        }
    }
}
