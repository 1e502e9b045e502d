//! The result protocol of the kit (guestkit::Checks), with the tallies kept in the
//! persistent area so the verdict at the last boot covers every boot:
//!
//! ```text
//! CAIRN-TEST power start: boot <n>
//! CAIRN-TEST power check <name>: ok
//! CAIRN-TEST power check <name>: FAIL <detail>
//! CAIRN-TEST power note: <text>
//! CAIRN-TEST power result: pass|fail (N passed, M failed)
//! ```
//!
//! Only the boot CPU reports.

use core::fmt::{Arguments, Display};

use guestkit::println;

use crate::persist::Area;

pub const NAME: &str = "power";

pub struct Report {
    area: &'static Area,
}

impl Report {
    pub fn new(area: &'static Area) -> Report {
        Report { area }
    }

    pub fn check(&mut self, name: impl Display, ok: bool, detail: Arguments<'_>) {
        if ok {
            self.area.passed.set(self.area.passed.get() + 1);
            println!("CAIRN-TEST {NAME} check {name}: ok");
        } else {
            self.area.failed.set(self.area.failed.get() + 1);
            println!("CAIRN-TEST {NAME} check {name}: FAIL {detail}");
        }
    }

    /// Checks that `actual == expected`, printing both on failure.
    pub fn check_eq(&mut self, name: impl Display, actual: u64, expected: u64) {
        self.check(name, actual == expected, format_args!("got {actual:#x}, expected {expected:#x}"));
    }

    pub fn note(&self, what: Arguments<'_>) {
        println!("CAIRN-TEST {NAME} note: {what}");
    }

    /// Prints the verdict over every boot; returns whether everything passed.
    pub fn finish(&self) -> bool {
        let (passed, failed) = (self.area.passed.get(), self.area.failed.get());
        let verdict = if failed == 0 { "pass" } else { "fail" };
        println!("CAIRN-TEST {NAME} result: {verdict} ({passed} passed, {failed} failed)");
        failed == 0
    }
}

pub use guestkit::text::Text;
