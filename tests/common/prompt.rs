//! Cairn's console as a user drives it: three Ctrl-A move the input between the VMs and
//! Cairn's prompt, and the prompt answers each line typed.

use super::{re, Session, ShellMarker};

/// Three Ctrl-A: the console's switch (src/conmux.rs).
pub const SWITCH: &str = "\x01\x01\x01";

/// Cairn's prompt (src/prompt.rs).
pub const PROMPT: &str = "cairn> ";
/// What the console says when the input goes to Cairn's prompt.
pub const TO_PROMPT: &str = "Cairn (cairn> )";
/// Targets the input cycles through at most: the VMs of these tests and the prompt.
pub const MAX_TARGETS: usize = 3;

/// Moves the input on (three Ctrl-A at a time) until the console says it went to
/// `target` (`vm1 (beta)`, or TO_PROMPT). The console also moves the input by itself
/// when the VM that has it goes away, and that line can cross ours; so after each switch
/// the test lets the console settle and goes by the last line it printed.
pub fn switch_to(s: &mut Session, target: &str) {
    let wanted = format!("*** input to {target};");
    for _ in 0..MAX_TARGETS + 1 {
        let before = s.mark();
        s.send(SWITCH);
        s.wait_for_since(before, re(r"\*\*\* input to [^;]*;"));
        std::thread::sleep(SWITCH_SETTLE);
        if current_input(&s.log()).as_deref() == Some(wanted.as_str()) {
            if target == TO_PROMPT {
                s.wait_for(ShellMarker(PROMPT));
            }
            return;
        }
    }
    s.fail(&format!("the input never went to {target}"));
}

/// How long a switch is given for a crossing line of the console's own to show.
pub const SWITCH_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The last `*** input to ...;` line in `log`: where the input is now.
pub fn current_input(log: &str) -> Option<String> {
    let at = log.rfind("*** input to ")?;
    let end = at + log[at..].find(';')?;
    Some(log[at..=end].to_string())
}

/// Types `command` at Cairn's prompt (which has the input) and returns its answer: the
/// lines up to the next prompt.
pub fn at_prompt(s: &mut Session, command: &str) -> String {
    let start = s.mark();
    s.send_line(command);
    s.wait_for(ShellMarker(PROMPT));
    s.log_since(start).trim_end_matches(PROMPT).to_string()
}
