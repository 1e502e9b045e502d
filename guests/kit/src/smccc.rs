//! SMCCC calls from a guest, through either conduit, with every register visible so tests
//! can check what the hypervisor preserved.

/// PSCI SYSTEM_OFF (DEN0022 §5.1.9).
pub const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
/// PSCI CPU_ON, SMC64 form (DEN0022 §5.1.4): x1 = target MPIDR, x2 = entry point
/// (physical address), x3 = context id, which the new CPU finds in x0.
pub const PSCI_CPU_ON_64: u64 = 0xC400_0003;

/// Registers x0-x17 before and after a call.
pub type Regs = [u64; 18];

macro_rules! call_with {
    ($insn:literal, $r:ident) => {
        // SAFETY: an SMCCC call changes at most x0-x17, all of which are declared here.
        unsafe {
            core::arch::asm!(
                $insn,
                inout("x0") $r[0], inout("x1") $r[1], inout("x2") $r[2], inout("x3") $r[3],
                inout("x4") $r[4], inout("x5") $r[5], inout("x6") $r[6], inout("x7") $r[7],
                inout("x8") $r[8], inout("x9") $r[9], inout("x10") $r[10], inout("x11") $r[11],
                inout("x12") $r[12], inout("x13") $r[13], inout("x14") $r[14], inout("x15") $r[15],
                inout("x16") $r[16], inout("x17") $r[17],
            )
        }
    };
}

/// `hvc #0` with x0-x17 as given; returns x0-x17 after the call.
pub fn hvc(mut r: Regs) -> Regs {
    call_with!("hvc #0", r);
    r
}

/// `smc #0` with x0-x17 as given.
pub fn smc(mut r: Regs) -> Regs {
    call_with!("smc #0", r);
    r
}

/// `hvc #0x1234`: SMCCC ignores the HVC immediate.
pub fn hvc_imm_1234(mut r: Regs) -> Regs {
    call_with!("hvc #0x1234", r);
    r
}

/// `smc #1`: a non-zero SMC immediate is reserved.
pub fn smc_imm_1(mut r: Regs) -> Regs {
    call_with!("smc #1", r);
    r
}

/// A call with only x0 (and x1-x3) set, through HVC; returns x0.
pub fn hvc0(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut r = [0; 18];
    r[..4].copy_from_slice(&[fid, a1, a2, a3]);
    hvc(r)[0]
}

pub fn smc0(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut r = [0; 18];
    r[..4].copy_from_slice(&[fid, a1, a2, a3]);
    smc(r)[0]
}

/// Starts the CPU with affinity `mpidr` at `entry` with x0 = `context`, through PSCI
/// CPU_ON over HVC; returns the PSCI status (0 on success, negative on error).
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> i64 {
    hvc0(PSCI_CPU_ON_64, mpidr, entry, context) as i64
}

/// Powers the VM off through PSCI; never returns.
pub fn system_off() -> ! {
    hvc0(PSCI_SYSTEM_OFF, 0, 0, 0);
    crate::println!("CAIRN-TEST SYSTEM_OFF returned");
    loop {
        // SAFETY: waiting for an event has no side effects.
        unsafe { core::arch::asm!("wfe") };
    }
}
