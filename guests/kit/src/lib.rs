//! The kit Cairn's bare-metal test guests are built from: the arm64 Image entry, a PL011
//! console found through the device tree, EL1 exception vectors that report anything
//! unexpected, SMCCC calls through HVC and SMC, and the result protocol the test harness
//! reads from the serial log:
//!
//! ```text
//! CAIRN-TEST <guest> check <name>: ok
//! CAIRN-TEST <guest> check <name>: FAIL <detail>
//! CAIRN-TEST <guest> result: pass|fail (N passed, M failed)
//! ```
#![no_std]

pub mod console;
pub mod smccc;

use core::arch::global_asm;
use core::fmt::Write;

pub use console::Console;

const STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

static mut STACK: Stack = Stack([0; STACK_SIZE]);

global_asm!(
    include_str!("../entry.S"),
    STACK = sym STACK,
    STACK_SIZE = const STACK_SIZE,
    START = sym start,
    HANDLER = sym exception,
);

extern "Rust" {
    /// The guest's main, defined with [`guest_main!`].
    fn guest_main(dtb: usize);
}

/// Declares the guest's main function: `guest_main!(run);` with `fn run(dtb: usize)`.
#[macro_export]
macro_rules! guest_main {
    ($f:path) => {
        #[no_mangle]
        fn guest_main(dtb: usize) {
            $f(dtb)
        }
    };
}

extern "C" fn start(dtb: usize) -> ! {
    console::init_from_device_tree(dtb);
    // SAFETY: guest_main is defined by the binary through guest_main!.
    unsafe { guest_main(dtb) };
    println!("CAIRN-TEST guest returned from main without powering off");
    smccc::system_off();
}

/// The registers an exception saved, as the vectors in entry.S lay them out.
#[repr(C)]
pub struct ExceptionFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

/// What the last expected exception looked like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caught {
    pub esr: u64,
    pub far: u64,
}

static mut EXPECTING: bool = false;
static mut CAUGHT: Option<Caught> = None;

/// Runs `f`, which is expected to take one synchronous exception; the faulting instruction
/// is skipped. Returns what was caught, or None if `f` ran without an exception.
pub fn catch_exception(f: impl FnOnce()) -> Option<Caught> {
    // SAFETY: test guests run single-threaded on one vCPU; these statics are only touched
    // here and in the exception handler that interrupts this very function.
    unsafe {
        EXPECTING = true;
        CAUGHT = None;
        core::arch::asm!("dsb sy", "isb");
        f();
        EXPECTING = false;
        core::ptr::read_volatile(&raw const CAUGHT)
    }
}

extern "C" fn exception(frame: &mut ExceptionFrame, kind: u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading the EL1 syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", out(reg) esr);
        core::arch::asm!("mrs {}, far_el1", out(reg) far);
    }
    // SAFETY: see catch_exception.
    unsafe {
        if kind == 0 && EXPECTING {
            EXPECTING = false;
            CAUGHT = Some(Caught { esr, far });
            frame.elr += 4;
            return;
        }
    }
    const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
    println!(
        "CAIRN-TEST unexpected {} exception: ESR_EL1={esr:#x} FAR_EL1={far:#x} ELR_EL1={:#x}",
        KINDS[kind as usize & 3],
        frame.elr
    );
    println!("CAIRN-TEST result: fail (unexpected exception)");
    smccc::system_off();
}

/// Tallies checks and prints the protocol lines.
pub struct Checks {
    guest: &'static str,
    passed: u32,
    failed: u32,
}

impl Checks {
    pub fn new(guest: &'static str) -> Self {
        println!("CAIRN-TEST {guest} start");
        Checks { guest, passed: 0, failed: 0 }
    }

    /// Records one check; `detail` explains a failure.
    pub fn check(&mut self, name: impl core::fmt::Display, ok: bool, detail: core::fmt::Arguments<'_>) {
        if ok {
            self.passed += 1;
            println!("CAIRN-TEST {} check {name}: ok", self.guest);
        } else {
            self.failed += 1;
            println!("CAIRN-TEST {} check {name}: FAIL {detail}", self.guest);
        }
    }

    /// Checks that `actual == expected`, printing both in hex on failure.
    pub fn check_eq(&mut self, name: impl core::fmt::Display, actual: u64, expected: u64) {
        self.check(name, actual == expected, format_args!("got {actual:#x}, expected {expected:#x}"));
    }

    /// Prints the result line; returns whether every check passed.
    pub fn finish(self) -> bool {
        let verdict = if self.failed == 0 { "pass" } else { "fail" };
        println!("CAIRN-TEST {} result: {verdict} ({} passed, {} failed)", self.guest, self.passed, self.failed);
        self.failed == 0
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Console, "CAIRN-TEST guest panic: {info}");
    println!("CAIRN-TEST result: fail (panic)");
    smccc::system_off();
}
