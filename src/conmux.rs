//! The serial-console multiplexer: Cairn owns the one physical UART and each VM has a
//! virtual one, so this module decides where typed bytes go and how every VM's output,
//! and Cairn's own log, share the line. It is the pure part, host-tested; the caller
//! feeds it bytes and gives it a sink that writes to the physical UART.
//!
//! Input goes to one target at a time. Ctrl-A pressed three times in a row moves it to
//! the next target and prints a line saying where it went, Xen's console-switch
//! convention, which people who run hypervisors already know. Until the next byte shows
//! whether a Ctrl-A starts a switch it is held back, so a lone Ctrl-A (screen's or emacs'
//! key) reaches the VM only with the byte typed after it. Output from the focused VM
//! passes through raw, so full-screen programs and line editing work; every other VM's
//! output is cut into lines prefixed `[NAME] `, so the logs of several VMs booting at once
//! can be read apart. A switch announcement always starts at column 0: if the raw stream
//! stopped mid-line, the mux ends that line first. Prefixed lines and Cairn's own lines
//! do not break the focused VM's line: they land where its output stands, as a guest
//! kernel's own messages land in the middle of what its shell prints, and the focused
//! VM's stream reaches the terminal byte for byte, with nothing inserted into it but
//! whole lines.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The longest line buffered for an unfocused VM; a longer one is emitted in pieces.
pub const LINE_CAPACITY: usize = 256;
/// Ctrl-A, the switch key.
pub const CTRL_A: u8 = 0x01;
/// How many Ctrl-A in a row switch the input (Xen's convention).
pub const SWITCH_PRESSES: usize = 3;

/// What the announcement says when the input reaches Cairn's own prompt.
const PROMPT_ANNOUNCEMENT: &str = "*** input to Cairn (cairn> ); Ctrl-A three times to switch";
const CRLF: &[u8] = b"\r\n";

/// Where typed input goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The VM with this index, in the order of the names given to [`Mux::new`].
    Vm(usize),
    /// Cairn's management prompt, the target after the last VM when there is one.
    Prompt,
}

/// What to do with one typed byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Deliver `bytes[..len]` to the target, in order: the Ctrl-A held back (none, one
    /// or two) and then the byte typed.
    Deliver { to: Target, bytes: [u8; SWITCH_PRESSES], len: usize },
    /// The third Ctrl-A in a row moved the input; the mux has already printed the line
    /// saying where to.
    Switched,
    /// A Ctrl-A, held until the next byte shows whether it is part of a switch.
    Held,
}

impl Input {
    /// The bytes to deliver; empty unless this is [`Input::Deliver`].
    pub fn bytes(&self) -> &[u8] {
        match self {
            Input::Deliver { bytes, len, .. } => &bytes[..*len],
            Input::Switched | Input::Held => &[],
        }
    }
}

/// The physical line: whether the cursor is at column 0, so the mux knows when a line it
/// makes must first end the raw output's line. Only '\n' counts: after a bare '\r' the
/// line still holds text a new line would overwrite.
struct Column {
    at_start: bool,
}

impl Column {
    fn emit(&mut self, bytes: &[u8], sink: &mut dyn FnMut(&[u8])) {
        if let Some(&last) = bytes.last() {
            sink(bytes);
            self.at_start = last == b'\n';
        }
    }

    /// Emits `parts` as one line of its own, starting at column 0.
    fn line(&mut self, parts: &[&[u8]], sink: &mut dyn FnMut(&[u8])) {
        if !self.at_start {
            self.emit(CRLF, sink);
        }
        self.inserted(parts, sink);
    }

    /// Emits `parts` and a line break where the raw stream stands, leaving the column
    /// where it was: what follows continues the interrupted line.
    fn inserted(&mut self, parts: &[&[u8]], sink: &mut dyn FnMut(&[u8])) {
        let at_start = self.at_start;
        for part in parts {
            self.emit(part, sink);
        }
        self.emit(CRLF, sink);
        self.at_start = at_start;
    }
}

/// One VM's side of the mux: its name as shown, whether it is there, and the line it
/// is part-way through while unfocused.
struct VmConsole {
    prefix: String,
    announcement: String,
    present: bool,
    line: [u8; LINE_CAPACITY],
    len: usize,
    /// A '\r' not yet stored: if a '\n' follows it ends the line ("\r\n") and is dropped,
    /// which also keeps a full buffer from being split just before a line's "\r\n".
    cr_held: bool,
}

impl VmConsole {
    fn new(vm: usize, name: &str) -> Self {
        VmConsole {
            prefix: format!("[{name}] "),
            announcement: format!("*** input to vm{vm} ({name}); Ctrl-A three times to switch"),
            present: true,
            line: [0; LINE_CAPACITY],
            len: 0,
            cr_held: false,
        }
    }

    /// The line buffered so far.
    fn text(&self) -> &[u8] {
        &self.line[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
        self.cr_held = false;
    }
}

/// The console multiplexer. Everything it prints goes through the `sink` passed to
/// each call; it allocates only in [`Mux::new`].
pub struct Mux {
    vms: Vec<VmConsole>,
    with_prompt: bool,
    focus: Target,
    /// Ctrl-A typed in a row so far (fewer than SWITCH_PRESSES), held back from the target.
    ctrl_a: usize,
    column: Column,
}

impl Mux {
    /// A mux for VMs with these names (vm0, vm1, ... in this order), with Cairn's prompt
    /// as the last target when `with_prompt`. The input starts on vm0 (on the prompt if
    /// there are no VMs).
    pub fn new(names: &[&str], with_prompt: bool) -> Self {
        assert!(!names.is_empty() || with_prompt, "a console mux needs a target");
        let vms = names.iter().enumerate().map(|(vm, name)| VmConsole::new(vm, name)).collect();
        let focus = if names.is_empty() { Target::Prompt } else { Target::Vm(0) };
        Mux { vms, with_prompt, focus, ctrl_a: 0, column: Column { at_start: true } }
    }

    /// Where typed input goes now.
    pub fn focus(&self) -> Target {
        self.focus
    }

    /// Takes one typed byte. A Ctrl-A is held until the next byte: the third in a row
    /// switches the input ([`Input::Switched`], the announcement already printed), and any
    /// other byte is delivered after the Ctrl-A held before it.
    pub fn input(&mut self, byte: u8, sink: &mut dyn FnMut(&[u8])) -> Input {
        if byte == CTRL_A {
            self.ctrl_a += 1;
            if self.ctrl_a < SWITCH_PRESSES {
                return Input::Held;
            }
            self.switch(sink);
            return Input::Switched;
        }
        // The held Ctrl-A were typed before this byte, so they go first.
        let mut bytes = [CTRL_A; SWITCH_PRESSES];
        bytes[self.ctrl_a] = byte;
        let len = self.ctrl_a + 1;
        self.ctrl_a = 0;
        Input::Deliver { to: self.focus, bytes, len }
    }

    /// Moves the input to the next target that is present, wrapping, and prints where it
    /// went; with no other target present the input stays, and the line is still printed
    /// so the user sees the keys were taken. A partial line the new focus had buffered is
    /// emitted after the announcement, so its raw output goes on from a fresh line.
    pub fn switch(&mut self, sink: &mut dyn FnMut(&[u8])) {
        // Ctrl-A held for the old target are not delivered to the new one.
        self.ctrl_a = 0;
        self.focus = self.next_target();
        self.announce(sink);
        if let Target::Vm(vm) = self.focus {
            self.flush(vm, sink);
        }
    }

    /// Prints the "*** input to ..." line for the current focus (at boot, when there are
    /// several targets, so the user knows where typing goes and how to move it).
    pub fn announce(&mut self, sink: &mut dyn FnMut(&[u8])) {
        let text = match self.focus {
            Target::Vm(vm) => self.vms[vm].announcement.as_bytes(),
            Target::Prompt => PROMPT_ANNOUNCEMENT.as_bytes(),
        };
        self.column.line(&[text], sink);
    }

    /// Takes one byte VM `vm` wrote to its UART. The focused VM's bytes go out as they
    /// are; any other VM's are cut into lines prefixed with its name.
    pub fn output(&mut self, vm: usize, byte: u8, sink: &mut dyn FnMut(&[u8])) {
        if self.focus == Target::Vm(vm) {
            self.column.emit(&[byte], sink);
            return;
        }
        // A '\r' is held until the next byte: right before '\n' (Linux's "\r\n") it is
        // dropped, as the mux ends every line with its own "\r\n"; otherwise it is text.
        let cr_held = core::mem::take(&mut self.vms[vm].cr_held);
        if byte == b'\n' {
            return self.emit_line(vm, sink);
        }
        if cr_held {
            self.store(vm, b'\r', sink);
        }
        if byte == b'\r' {
            self.vms[vm].cr_held = true;
        } else {
            self.store(vm, byte, sink);
        }
    }

    /// Output of Cairn's prompt, which has the input: raw, like a focused VM's.
    pub fn prompt_output(&mut self, bytes: &[u8], sink: &mut dyn FnMut(&[u8])) {
        self.column.emit(bytes, sink);
    }

    /// Prints one of Cairn's own lines (the caller has prefixed it `cairn[cpuN]`) where
    /// the focused VM's output stands.
    pub fn cairn_line(&mut self, line: &str, sink: &mut dyn FnMut(&[u8])) {
        self.column.inserted(&[line.as_bytes()], sink);
    }

    /// Whether three Ctrl-A would move the input anywhere: another VM is present (or the
    /// prompt is a target).
    pub fn can_switch(&self) -> bool {
        self.next_target() != self.focus
    }

    /// Whether a VM other than the focused target is present.
    pub fn another_vm_present(&self) -> bool {
        self.vms.iter().enumerate().any(|(i, vm)| vm.present && self.focus != Target::Vm(i))
    }

    /// Marks VM `vm` present or gone (powered off). Switching skips a VM that is gone,
    /// but the focus does not move by itself when the focused VM goes: the user moves
    /// it, and meanwhile typed bytes are still delivered to it for the caller to drop. A
    /// partial line it left stays buffered until it prints again or gains the focus.
    pub fn set_present(&mut self, vm: usize, present: bool) {
        self.vms[vm].present = present;
    }

    /// Adds a byte to an unfocused VM's line; a full line is emitted first, prefixed and
    /// ended, so nothing is lost and the buffer stays bounded. Emitting it only when the
    /// next byte arrives keeps a line of exactly LINE_CAPACITY bytes whole.
    fn store(&mut self, vm: usize, byte: u8, sink: &mut dyn FnMut(&[u8])) {
        if self.vms[vm].len == LINE_CAPACITY {
            self.emit_line(vm, sink);
        }
        let console = &mut self.vms[vm];
        console.line[console.len] = byte;
        console.len += 1;
    }

    /// Emits VM `vm`'s partial line, if it has one; a held '\r' is dropped, as a line
    /// break follows it.
    fn flush(&mut self, vm: usize, sink: &mut dyn FnMut(&[u8])) {
        if self.vms[vm].len > 0 {
            self.emit_line(vm, sink);
        }
        self.vms[vm].clear();
    }

    /// Emits `[NAME] ` and the buffered text as a line of its own, even if empty (a VM's
    /// blank line stays a blank line), and empties the buffer.
    fn emit_line(&mut self, vm: usize, sink: &mut dyn FnMut(&[u8])) {
        let console = &self.vms[vm];
        self.column.inserted(&[console.prefix.as_bytes(), console.text()], sink);
        self.vms[vm].clear();
    }

    /// The target after the focus that is present (the prompt always is), or the focus
    /// itself when no other is.
    fn next_target(&self) -> Target {
        let count = self.vms.len() + usize::from(self.with_prompt);
        let current = match self.focus {
            Target::Vm(vm) => vm,
            Target::Prompt => self.vms.len(),
        };
        (1..count)
            .map(|step| (current + step) % count)
            .map(|index| if index < self.vms.len() { Target::Vm(index) } else { Target::Prompt })
            .find(|&target| self.is_present(target))
            .unwrap_or(self.focus)
    }

    fn is_present(&self, target: Target) -> bool {
        match target {
            Target::Vm(vm) => self.vms[vm].present,
            Target::Prompt => true,
        }
    }
}

/// How much typed input waits for a VM that does not read it yet: a pasted line and
/// more. Beyond it, bytes for that VM are dropped (as a UART overruns), so the console
/// never stops reading and three Ctrl-A always get through.
pub const TYPED_CAPACITY: usize = 1024;

/// Typed bytes on their way to one VM, in order, bounded.
pub struct TypedQueue {
    bytes: alloc::collections::VecDeque<u8>,
    /// Set when bytes were dropped, until the VM reads again: one line per overrun.
    overrun: Overrun,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overrun {
    None,
    /// Bytes were dropped; not said yet.
    Started,
    /// Said; quiet until the VM makes room.
    Said,
}

impl Default for TypedQueue {
    fn default() -> Self {
        TypedQueue { bytes: alloc::collections::VecDeque::with_capacity(TYPED_CAPACITY), overrun: Overrun::None }
    }
}

impl TypedQueue {
    /// Queues `bytes`; returns how many did not fit and were dropped.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let room = TYPED_CAPACITY - self.bytes.len();
        let taken = bytes.len().min(room);
        self.bytes.extend(&bytes[..taken]);
        let dropped = bytes.len() - taken;
        if dropped > 0 && self.overrun == Overrun::None {
            self.overrun = Overrun::Started;
        }
        dropped
    }

    /// Hands queued bytes to `accept`, oldest first, until it refuses one (which stays).
    pub fn drain(&mut self, mut accept: impl FnMut(u8) -> bool) {
        let before = self.bytes.len();
        while let Some(&b) = self.bytes.front() {
            if !accept(b) {
                break;
            }
            self.bytes.pop_front();
        }
        if self.bytes.len() < before {
            self.overrun = Overrun::None; // it reads again
        }
    }

    /// Whether bytes started being dropped since the VM last read: true once per overrun.
    pub fn overrun_started(&mut self) -> bool {
        let started = self.overrun == Overrun::Started;
        if started {
            self.overrun = Overrun::Said;
        }
        started
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the terminal receives while `f` runs.
    fn seen(mux: &mut Mux, f: impl FnOnce(&mut Mux, &mut dyn FnMut(&[u8]))) -> String {
        let mut out = Vec::new();
        f(mux, &mut |bytes: &[u8]| out.extend_from_slice(bytes));
        String::from_utf8(out).unwrap()
    }

    /// Types `keys`; returns what each did and what the terminal showed.
    fn type_keys(mux: &mut Mux, keys: &[u8]) -> (Vec<Input>, String) {
        let mut inputs = Vec::new();
        let shown = seen(mux, |mux, sink| inputs.extend(keys.iter().map(|&key| mux.input(key, sink))));
        (inputs, shown)
    }

    /// VM `vm` writes `bytes`; returns what the terminal showed.
    fn prints(mux: &mut Mux, vm: usize, bytes: &[u8]) -> String {
        seen(mux, |mux, sink| bytes.iter().for_each(|&b| mux.output(vm, b, sink)))
    }

    fn switch_line(vm: usize, name: &str) -> String {
        format!("*** input to vm{vm} ({name}); Ctrl-A three times to switch\r\n")
    }

    #[test]
    fn three_ctrl_a_switch_and_say_where() {
        let mut mux = Mux::new(&["alpine", "debian"], false);
        let (inputs, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!(inputs, [Input::Held, Input::Held, Input::Switched]);
        assert_eq!(shown, switch_line(1, "debian"));
        assert_eq!(mux.focus(), Target::Vm(1));
        let (inputs, _) = type_keys(&mut mux, b"l");
        assert_eq!(inputs, [Input::Deliver { to: Target::Vm(1), bytes: [b'l', CTRL_A, CTRL_A], len: 1 }]);
        assert_eq!(inputs[0].bytes(), b"l");
    }

    #[test]
    fn one_or_two_ctrl_a_reach_the_vm_before_the_next_byte() {
        let mut mux = Mux::new(&["a", "b"], false);
        let (inputs, shown) = type_keys(&mut mux, &[CTRL_A, b'x', CTRL_A, CTRL_A, b'x']);
        let delivered: Vec<&[u8]> = inputs.iter().map(Input::bytes).collect();
        assert_eq!(delivered, [&[][..], &[CTRL_A, b'x'], &[], &[], &[CTRL_A, CTRL_A, b'x']]);
        assert!(inputs.iter().all(|i| matches!(i, Input::Held | Input::Deliver { to: Target::Vm(0), .. })));
        assert_eq!((shown.as_str(), mux.focus()), ("", Target::Vm(0)));
        // Six in a row switch twice.
        type_keys(&mut mux, &[CTRL_A; 2 * SWITCH_PRESSES]);
        assert_eq!(mux.focus(), Target::Vm(0));
    }

    #[test]
    fn cycling_wraps_and_skips_absent_vms() {
        let mut lone = Mux::new(&["a", "b"], false);
        assert!(lone.can_switch());
        lone.set_present(1, false);
        assert!(!lone.can_switch(), "nowhere to go once the other VM is gone");
        assert!(!lone.another_vm_present());
        let mut mux = Mux::new(&["a", "b", "c"], false);
        mux.set_present(1, false);
        let mut order = Vec::new();
        for _ in 0..3 {
            type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
            order.push(mux.focus());
        }
        assert_eq!(order, [Target::Vm(2), Target::Vm(0), Target::Vm(2)]);
        // The focused VM going away leaves the focus; switching moves it on.
        mux.set_present(2, false);
        assert_eq!(mux.focus(), Target::Vm(2));
        assert_eq!(type_keys(&mut mux, b"q").0[0].bytes(), b"q");
        let (_, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!((mux.focus(), shown), (Target::Vm(0), switch_line(0, "a")));
    }

    #[test]
    fn the_prompt_comes_after_the_vms() {
        let mut mux = Mux::new(&["a"], true);
        let (_, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!(shown, "*** input to Cairn (cairn> ); Ctrl-A three times to switch\r\n");
        assert_eq!(type_keys(&mut mux, &[CTRL_A, b'h']).0[1].bytes(), &[CTRL_A, b'h']);
        assert!(matches!(type_keys(&mut mux, b"h").0[0], Input::Deliver { to: Target::Prompt, .. }));
        type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!(mux.focus(), Target::Vm(0));
    }

    #[test]
    fn one_vm_still_prints_the_line() {
        let mut mux = Mux::new(&["solo"], false);
        let (inputs, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!((inputs[2], shown, mux.focus()), (Input::Switched, switch_line(0, "solo"), Target::Vm(0)));
        let shown = seen(&mut mux, |mux, sink| mux.announce(sink));
        assert_eq!(shown, switch_line(0, "solo"));
    }

    #[test]
    fn focused_output_passes_through_raw() {
        let mut mux = Mux::new(&["a", "b"], false);
        let raw = b"\x1b[1mboot\x1b[0m\r\nprogress 50%\rprogress 99%\r\r\n# ";
        assert_eq!(prints(&mut mux, 0, raw).as_bytes(), raw);
    }

    #[test]
    fn unfocused_lines_are_prefixed() {
        let mut mux = Mux::new(&["a", "b"], false);
        assert_eq!(prints(&mut mux, 1, b"Booting Linux\r\n"), "[b] Booting Linux\r\n");
        assert_eq!(prints(&mut mux, 1, b"plain\n\n"), "[b] plain\r\n[b] \r\n");
        assert_eq!(prints(&mut mux, 1, b"cr\r\r\nmid\rline\n"), "[b] cr\r\r\n[b] mid\rline\r\n");
        assert_eq!(prints(&mut mux, 1, b"no end yet"), "", "a partial line waits");
        assert_eq!(prints(&mut mux, 1, b"\n"), "[b] no end yet\r\n");
    }

    #[test]
    fn a_long_unfocused_line_is_split_without_loss() {
        let mut mux = Mux::new(&["a", "b"], false);
        let line: Vec<u8> = (0..300).map(|i| b'a' + (i % 26) as u8).collect();
        let shown = prints(&mut mux, 1, &line);
        let (first, rest) = line.split_at(LINE_CAPACITY);
        assert_eq!(shown, format!("[b] {}\r\n", core::str::from_utf8(first).unwrap()));
        assert_eq!(prints(&mut mux, 1, b"\r\n"), format!("[b] {}\r\n", core::str::from_utf8(rest).unwrap()));
        // A line of exactly LINE_CAPACITY bytes and its "\r\n" stay one line.
        let shown = prints(&mut mux, 1, &[&line[..LINE_CAPACITY], b"\r\n"].concat());
        assert_eq!(shown, format!("[b] {}\r\n", core::str::from_utf8(first).unwrap()));
    }

    #[test]
    fn switching_flushes_partial_lines() {
        let mut mux = Mux::new(&["a", "b"], false);
        prints(&mut mux, 1, b"login: ");
        assert_eq!(prints(&mut mux, 0, b"# ls"), "# ls");
        // Leaving vm0 mid-line ends its line; vm1's prompt shows, and its echo starts afresh.
        let (_, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!(shown, format!("\r\n{}[b] login: \r\n", switch_line(1, "b")));
        assert_eq!(prints(&mut mux, 1, b"root"), "root");
        // vm0's output is now prefixed, and lands where vm1's line stands; switching back
        // after a whole line adds no break.
        assert_eq!(prints(&mut mux, 0, b"\r\n"), "[a] \r\n");
        prints(&mut mux, 1, b"\r\n");
        let (_, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!(shown, switch_line(0, "a"));
    }

    #[test]
    fn cairn_lines_and_other_vms_lines_do_not_break_the_focused_line() {
        let mut mux = Mux::new(&["a", "b"], false);
        let line = "cairn[cpu0] INFO  vm1 powered off";
        assert_eq!(seen(&mut mux, |mux, sink| mux.cairn_line(line, sink)), format!("{line}\r\n"));
        prints(&mut mux, 0, b"# ");
        assert_eq!(seen(&mut mux, |mux, sink| mux.cairn_line(line, sink)), format!("{line}\r\n"));
        assert_eq!(prints(&mut mux, 1, b"hi\n"), "[b] hi\r\n");
        // The focused VM's line is still open: a switch ends it before saying where input goes.
        let (_, shown) = type_keys(&mut mux, &[CTRL_A; SWITCH_PRESSES]);
        assert_eq!(shown, format!("\r\n{}", switch_line(1, "b")));
    }

    #[test]
    fn typed_input_waits_in_order_and_overflow_is_dropped_and_counted() {
        let mut q = TypedQueue::default();
        assert_eq!(q.push(b"abc"), 0);
        let mut got = Vec::new();
        q.drain(|b| {
            if got.len() < 2 {
                got.push(b);
                true
            } else {
                false
            }
        });
        assert_eq!(got, b"ab", "a refused byte stays for later");
        q.drain(|b| {
            got.push(b);
            true
        });
        assert_eq!(got, b"abc");
        assert!(q.is_empty());
        let fill = [b'x'; TYPED_CAPACITY];
        assert_eq!(q.push(&fill), 0);
        assert!(!q.overrun_started());
        assert_eq!(q.push(b"yz"), 2, "past its capacity, bytes are dropped");
        assert!(q.overrun_started());
        assert_eq!(q.push(b"more"), 4);
        assert!(!q.overrun_started(), "said once per overrun");
        q.drain(|_| true);
        q.push(&fill);
        q.push(b"again");
        assert!(q.overrun_started(), "once the VM has read, a new overrun is said again");
    }
}
