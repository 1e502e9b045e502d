//! The kit Cairn's bare-metal test guests are built from: the arm64 Image entry, a PL011
//! console found through the device tree, EL1 exception vectors that report anything
//! unexpected, SMCCC calls through HVC and SMC, secondary CPUs started through PSCI
//! CPU_ON ([`smp`]), the GIC ([`gic`]) with an IRQ path that calls a handler per CPU
//! ([`irq`]), the virtual timer ([`timer`]), bounded waits ([`time`]), single-writer
//! memory shared between CPUs ([`shared`]), and the result protocol the test harness
//! reads from the serial log:
//!
//! ```text
//! CAIRN-TEST <guest> check <name>: ok
//! CAIRN-TEST <guest> check <name>: FAIL <detail>
//! CAIRN-TEST <guest> result: pass|fail (N passed, M failed)
//! ```
//!
//! Guests run with the MMU off: every data access is Device-nGnRnE and there are no
//! atomics (see [`shared`]). Only the boot CPU prints, so lines never interleave.
#![no_std]

pub mod console;
pub mod cpu;
pub mod dt;
pub mod gic;
pub mod irq;
mod mmio;
pub mod psci_entry;
pub mod shared;
pub mod smccc;
pub mod smp;
pub mod spec;
pub mod text;
pub mod time;
pub mod timer;

use core::arch::global_asm;
use core::fmt::Write;

pub use console::Console;
use shared::{PerCpu, MAX_CPUS};

const STACK_SIZE: usize = 64 * 1024;
/// Secondary CPUs do little but take interrupts.
const SECONDARY_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

static mut STACK: Stack<STACK_SIZE> = Stack([0; STACK_SIZE]);
/// Logical CPU n (1..MAX_CPUS) runs on SECONDARY_STACKS[n - 1].
static mut SECONDARY_STACKS: [Stack<SECONDARY_STACK_SIZE>; MAX_CPUS - 1] =
    [const { Stack([0; SECONDARY_STACK_SIZE]) }; MAX_CPUS - 1];

global_asm!(
    include_str!("../entry.S"),
    STACK = sym STACK,
    STACK_SIZE = const STACK_SIZE,
    SECONDARY_STACKS = sym SECONDARY_STACKS,
    SECONDARY_STACK_SIZE = const SECONDARY_STACK_SIZE,
    MAX_CPUS = const MAX_CPUS,
    START = sym start,
    SECONDARY_START = sym smp::secondary_start,
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

/// ESR_EL1 (Arm ARM D24.2.40): EC [31:26]; for aborts, the fault status code [5:0].
const EC_SHIFT: u64 = 26;
const EC_MASK: u64 = 0x3F;
const FSC_MASK: u64 = 0x3F;
/// ESR_EL1.EC of an instruction abort from EL0 and from EL1.
const EC_INSTRUCTION_ABORTS: [u64; 2] = [0x20, 0x21];

impl Caught {
    /// The exception class (ESR_EL1.EC).
    pub fn class(&self) -> u64 {
        (self.esr >> EC_SHIFT) & EC_MASK
    }

    /// The fault status code of an abort (ESR_EL1.ISS.DFSC / IFSC).
    pub fn fault_status(&self) -> u64 {
        self.esr & FSC_MASK
    }

    fn is_instruction_abort(&self) -> bool {
        EC_INSTRUCTION_ABORTS.contains(&self.class())
    }
}

// Per CPU, written only by that CPU (in catch_exception and its exception handler).
static EXPECTING: PerCpu<bool> = PerCpu::new(false);
static CAUGHT: PerCpu<bool> = PerCpu::new(false);
static CAUGHT_ESR: PerCpu<u64> = PerCpu::new(0);
static CAUGHT_FAR: PerCpu<u64> = PerCpu::new(0);

/// Runs `f`, which is expected to take one synchronous exception; the faulting instruction
/// is skipped, or for an instruction abort, execution goes on at the link register (see
/// [`catch_fetch`]). Returns what was caught, or None if `f` ran without an exception.
/// Works on every CPU independently.
pub fn catch_exception(f: impl FnOnce()) -> Option<Caught> {
    CAUGHT.set_mine(false);
    EXPECTING.set_mine(true);
    cpu::isb();
    f();
    EXPECTING.set_mine(false);
    CAUGHT.mine().then(|| Caught { esr: CAUGHT_ESR.mine(), far: CAUGHT_FAR.mine() })
}

/// Branches with link to `target`, expecting the fetch to abort; the handler resumes at the
/// link register, as if the branch had returned. Returns what was caught.
pub fn catch_fetch(target: usize) -> Option<Caught> {
    catch_exception(|| {
        // SAFETY: the fetch is meant to fault, and the handler returns through x30 to the
        // instruction after the branch; if `target` did run, it would be code returning
        // through x30 under the C ABI, which the clobbers declare.
        unsafe { core::arch::asm!("blr {target}", target = in(reg) target, out("x30") _, clobber_abi("C")) }
    })
}

/// Exception kinds, as entry.S passes them: the vector's offset within its group of four.
const KIND_SYNCHRONOUS: u64 = 0;
const KIND_IRQ: u64 = 1;
/// Every AArch64 instruction is four bytes.
const INSTRUCTION_SIZE: u64 = 4;

extern "C" fn exception(frame: &mut ExceptionFrame, kind: u64) {
    if kind == KIND_IRQ {
        irq::dispatch();
        return;
    }
    let (esr, far): (u64, u64);
    // SAFETY: reading the EL1 syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", out(reg) esr);
        core::arch::asm!("mrs {}, far_el1", out(reg) far);
    }
    if kind == KIND_SYNCHRONOUS && EXPECTING.mine() {
        EXPECTING.set_mine(false);
        CAUGHT_ESR.set_mine(esr);
        CAUGHT_FAR.set_mine(far);
        CAUGHT.set_mine(true);
        let fetch = Caught { esr, far }.is_instruction_abort();
        frame.elr = if fetch { frame.x[30] } else { frame.elr + INSTRUCTION_SIZE };
        return;
    }
    const KINDS: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];
    println!(
        "CAIRN-TEST unexpected {} exception on CPU {}: ESR_EL1={esr:#x} FAR_EL1={far:#x} ELR_EL1={:#x}",
        KINDS[kind as usize & 3],
        cpu::index(),
        frame.elr
    );
    println!("CAIRN-TEST result: fail (unexpected exception)");
    smccc::system_off();
}

/// Tallies checks and prints the protocol lines. Used on the boot CPU only.
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

    /// Records `result` as a check; returns the value if it is Ok.
    pub fn check_ok<T, E: core::fmt::Display>(
        &mut self,
        name: impl core::fmt::Display,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.check(name, true, format_args!(""));
                Some(value)
            }
            Err(e) => {
                self.check(name, false, format_args!("{e}"));
                None
            }
        }
    }

    /// Prints an informational line that is neither a check nor a verdict.
    pub fn note(&self, what: core::fmt::Arguments<'_>) {
        println!("CAIRN-TEST {} note: {what}", self.guest);
    }

    /// Prints the result line and powers the VM off.
    pub fn finish_and_power_off(self) -> ! {
        self.finish();
        smccc::system_off();
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
