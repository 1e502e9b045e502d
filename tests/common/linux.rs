//! What the Linux tests share: the initramfs marker line (scripts/initramfs-init), waiting
//! for it and the shell, and named checks that report every failure of one boot at once.

use super::regex::{re, Regex};
use super::session::Session;

/// What the guest's /init prints once Linux is up, followed by `(<n> CPUs)`.
pub const MARKER: &str = "CAIRN-GUEST: linux up";

/// The marker line with its CPU count.
pub fn marker() -> Regex {
    re(&format!(r"{MARKER} \(\d+ CPUs\)"))
}

/// Waits for the marker line and the shell prompt after it; returns the CPU count the
/// marker reports.
pub fn wait_for_linux(s: &mut Session) -> usize {
    let marker = s.wait_for(marker());
    s.wait_for_shell();
    marker.trim_start_matches(|c: char| !c.is_ascii_digit()).split(' ').next().unwrap().parse().unwrap()
}

/// Named checks of one boot: each is printed as it is made (cargo test shows the lines
/// of a failed test) and the test fails at the end listing every failed one, so one boot
/// tells everything that is wrong.
pub struct Checks {
    failed: Vec<String>,
}

impl Checks {
    pub fn new() -> Self {
        Checks { failed: Vec::new() }
    }

    pub fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            println!("check {name}: ok");
        } else {
            let detail = detail();
            println!("check {name}: FAIL\n{detail}");
            self.failed.push(format!("{name}:\n{detail}"));
        }
    }

    pub fn finish(self, s: &mut Session) {
        if !self.failed.is_empty() {
            let list = self.failed.join("\n\n");
            s.fail(&format!("{} check(s) failed:\n\n{list}\n", self.failed.len()));
        }
    }
}

/// Indents command output inside a failure message.
pub fn block(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}
