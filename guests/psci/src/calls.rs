//! Calls through either conduit, and turning their answers into checks.

use core::fmt::{self, Display, Write};

use guestkit::smccc::{self, Regs};
use guestkit::Checks;

use guestkit::spec::psci;

/// How the guest calls: `hvc #0`, the conduit the device tree names, or `smc #0`, which
/// Cairn traps (HCR_EL2.TSC) and must answer the same way (guest-firmware-interfaces.md
/// §1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

impl Conduit {
    pub const BOTH: [Conduit; 2] = [Conduit::Hvc, Conduit::Smc];

    /// Makes the call with x0-x17 as given; returns x0-x17 afterwards.
    pub fn call(self, regs: Regs) -> Regs {
        match self {
            Conduit::Hvc => smccc::hvc(regs),
            Conduit::Smc => smccc::smc(regs),
        }
    }

    /// A call with up to three arguments; returns x0.
    pub fn call3(self, fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
        self.call(regs(fid, &[a1, a2, a3]))[0]
    }

    pub fn call0(self, fid: u32) -> u64 {
        self.call3(fid, 0, 0, 0)
    }
}

impl Display for Conduit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        })
    }
}

/// What x4-x17 hold going into a call, so a caller can tell whether they survived.
pub const fn marker(reg: usize) -> u64 {
    const MARKER: u64 = 0x5EED_0000_0000_0000;
    MARKER | (reg as u64) << 8 | reg as u64
}

/// x0 = `fid`, x1.. = `args`, x4-x17 = [`marker`] values (x1-x3 zero beyond `args`).
pub fn regs(fid: u32, args: &[u64]) -> Regs {
    let mut r: Regs = core::array::from_fn(marker);
    r[0] = u64::from(fid);
    for (i, reg) in r.iter_mut().enumerate().take(4).skip(1) {
        *reg = args.get(i - 1).copied().unwrap_or(0);
    }
    r
}

/// Whether x4-x17 came back as [`regs`] set them (SMCCC 1.1: the callee may change only
/// x0-x3, DEN0028 §2.6).
pub fn preserved_x4_to_x17(after: &Regs) -> bool {
    after.iter().enumerate().skip(4).all(|(i, &r)| r == marker(i))
}

/// A returned status or value as a test log should show it: small values in signed
/// decimal, with the PSCI name where one exists, anything else in hex.
#[derive(Clone, Copy)]
pub struct Code(pub u64);

impl Code {
    pub fn of(value: i64) -> Code {
        Code(value as u64)
    }
}

/// Magnitudes printed in decimal rather than hex.
const SMALL: i64 = 0xFFFF;

impl Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0 as i64;
        if !(-SMALL..=SMALL).contains(&v) {
            return write!(f, "{:#x}", self.0);
        }
        let name = match v {
            psci::SUCCESS => "SUCCESS",
            psci::NOT_SUPPORTED => "NOT_SUPPORTED",
            psci::INVALID_PARAMETERS => "INVALID_PARAMETERS",
            psci::DENIED => "DENIED",
            psci::ALREADY_ON => "ALREADY_ON",
            psci::ON_PENDING => "ON_PENDING",
            psci::INTERNAL_FAILURE => "INTERNAL_FAILURE",
            psci::NOT_PRESENT => "NOT_PRESENT",
            psci::DISABLED => "DISABLED",
            psci::INVALID_ADDRESS => "INVALID_ADDRESS",
            _ => return write!(f, "{v}"),
        };
        write!(f, "{v} ({name})")
    }
}

pub use guestkit::text::Text;

/// One check over every function ID in `fids` through both conduits: each answer must
/// be `want` (all 64 bits of x0, so negative codes must be sign-extended). The detail
/// lists every answer. Returns whether the check passed.
pub fn expect_all(
    t: &mut Checks,
    name: impl Display,
    fids: &[u32],
    want: i64,
    mut call: impl FnMut(u32, Conduit) -> u64,
) -> bool {
    expect_where(t, name, fids, |got| got == want as u64, format_args!("{}", Code::of(want)), &mut call)
}

/// As [`expect_all`], with any answer `accept` takes; `wanted` says what that is.
pub fn expect_where(
    t: &mut Checks,
    name: impl Display,
    fids: &[u32],
    accept: impl Fn(u64) -> bool,
    wanted: fmt::Arguments<'_>,
    mut call: impl FnMut(u32, Conduit) -> u64,
) -> bool {
    let mut detail = Text::new();
    let mut ok = true;
    for &fid in fids {
        for conduit in Conduit::BOTH {
            let got = call(fid, conduit);
            ok &= accept(got);
            let _ = write!(detail, "{fid:#x} {conduit}: {}; ", Code(got));
        }
    }
    t.check(name, ok, format_args!("{detail}expected {wanted}"));
    ok
}
