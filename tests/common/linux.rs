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

/// Lines typed into the guest's shell and echoed back, and their length: well within
/// busybox's line-editing limit (1024) with the harness's markers around them.
pub const CONSOLE_LINES: u64 = 5;
pub const CONSOLE_LINE_LEN: usize = 800;

/// Line `n` of the console check: letters and digits from a fixed pseudo-random sequence,
/// so nothing in it means anything to the shell and a dropped or repeated character shows.
pub fn console_line(n: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Knuth's MMIX linear congruential generator.
    let mut state = n.wrapping_add(1);
    (0..CONSOLE_LINE_LEN)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ALPHABET[(state >> 33) as usize % ALPHABET.len()] as char
        })
        .collect()
}

/// Types console line `n` into the shell as an `echo`; returns what was typed and what
/// came back.
pub fn echo_console_line(s: &mut Session, n: u64) -> (String, String) {
    let line = console_line(n);
    let echoed = s.sh_value(&format!("echo {line}"));
    (line, echoed)
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
