//! An interactive QEMU boot: the serial console on QEMU's stdin/stdout, waits for text on
//! it with a timeout, lines typed into it, and the exit status at the end.
//!
//! ```ignore
//! let mut s = Boot::new("linux-smp2").linux().smp(2).spawn();
//! s.wait_for("CAIRN-GUEST: linux up");
//! s.wait_for_shell();
//! let cpus = s.sh("grep -c ^processor /proc/cpuinfo");
//! s.send_line("poweroff -f");
//! s.expect_exit(0);
//! ```
//!
//! The log keeps the serial output without carriage returns, NULs and terminal escapes.
//! Every wait gives up after the session's timeout (180 s unless `Boot::wait_timeout`
//! says otherwise), kills QEMU and panics with the log path and the end of the log. The
//! serial output is written to `target/test-logs/<name>.log` as it arrives (so
//! `tail -f` works during a run) and the log is closed with QEMU's exit, stderr and
//! command line when the session ends, however it ends (the `Drop` impl kills a QEMU
//! that is still running).

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::hang;
use super::regex::Regex;

/// Default for each wait of a session.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(180);
/// Lines of the log shown in a failure message.
const EXCERPT_LINES: usize = 60;

/// Something to wait for on the serial console.
pub trait Pattern {
    /// The leftmost match in `hay[from..]`, as byte offsets into `hay`.
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)>;
    /// Where the next search may start once `hay[from..]` has no match (more output will
    /// be appended to `hay`).
    fn resume_at(&self, hay: &[u8], from: usize) -> usize;
    fn describe(&self) -> String;
}

impl Pattern for &str {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        let needle = self.as_bytes();
        if needle.is_empty() {
            return Some((from, from));
        }
        hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| (from + i, from + i + needle.len()))
    }

    fn resume_at(&self, hay: &[u8], from: usize) -> usize {
        from.max((hay.len() + 1).saturating_sub(self.len()))
    }

    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

impl Pattern for String {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        self.as_str().find_in(hay, from)
    }

    fn resume_at(&self, hay: &[u8], from: usize) -> usize {
        self.as_str().resume_at(hay, from)
    }

    fn describe(&self) -> String {
        self.as_str().describe()
    }
}

impl Pattern for &String {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        self.as_str().find_in(hay, from)
    }

    fn resume_at(&self, hay: &[u8], from: usize) -> usize {
        self.as_str().resume_at(hay, from)
    }

    fn describe(&self) -> String {
        self.as_str().describe()
    }
}

impl Pattern for &Regex {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        self.find_bytes(hay, from)
    }

    /// A regex matches within a line: only the last, unfinished line can still match.
    fn resume_at(&self, hay: &[u8], from: usize) -> usize {
        from.max(hay.iter().rposition(|&c| c == b'\n').map_or(0, |n| n + 1))
    }

    fn describe(&self) -> String {
        format!("regex {self}")
    }
}

impl Pattern for Regex {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        (&self).find_in(hay, from)
    }

    fn resume_at(&self, hay: &[u8], from: usize) -> usize {
        (&self).resume_at(hay, from)
    }

    fn describe(&self) -> String {
        (&self).describe()
    }
}

/// What Cairn's log lines start with (src/console.rs).
const CAIRN_LINE: &[u8] = b"cairn[cpu";

/// What the console's switch announcements start with (src/conmux.rs).
const SWITCH_LINE: &[u8] = b"*** input to ";
/// The longest VM name (src/partition.rs), which prefixes other VMs' lines as `[NAME] `.
const MAX_VM_NAME: usize = 15;

/// The length of the console line from another writer at the start of `text`, up to and
/// including its newline, or `None` when `text` does not start with one or the line is not
/// complete yet. Other writers are the guest kernel (`[` seconds `] ...`), Cairn's log
/// (`cairn[cpuN] ...`) and, with several VMs, the other VMs (`[NAME] ...`) and the
/// console's own announcements. They all reach the UART while the shell's output waits in
/// the guest's tty buffer, so their lines land anywhere in what the shell prints, even
/// inside a word (`rc=0[    3.718682] PM: suspend exit`).
fn interleaved_line(text: &[u8]) -> Option<usize> {
    let newline = text.iter().position(|&c| c == b'\n')?;
    let line = &text[..newline];
    let kernel = || {
        let rest = line.strip_prefix(b"[")?;
        let stamp = rest.iter().position(|&c| c == b']')?;
        (stamp > 0 && rest[..stamp].iter().all(|&c| c == b' ' || c == b'.' || c.is_ascii_digit())).then_some(())
    };
    let other_vm = || {
        let rest = line.strip_prefix(b"[")?;
        let name = rest.iter().position(|&c| c == b']')?;
        let named = (1..=MAX_VM_NAME).contains(&name)
            && rest[..name].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        (named && rest.get(name + 1) == Some(&b' ')).then_some(())
    };
    let ours = line.starts_with(CAIRN_LINE) || line.starts_with(SWITCH_LINE);
    (ours || kernel().is_some() || other_vm().is_some()).then_some(newline + 1)
}

/// `at` moved past any complete interleaved lines (see `interleaved_line`) that start there.
fn past_interleaved_lines(hay: &[u8], mut at: usize) -> usize {
    while let Some(skip) = hay.get(at..).and_then(interleaved_line) {
        at += skip;
    }
    at
}

/// `text` told apart by writer: the stream with the complete interleaved lines taken out
/// (so a line they landed in the middle of is whole again), and those lines.
pub fn split_writers(text: &str) -> (String, Vec<String>) {
    let bytes = text.as_bytes();
    let (mut kept, mut lines) = (Vec::with_capacity(bytes.len()), Vec::new());
    let mut at = 0;
    while at < bytes.len() {
        match interleaved_line(&bytes[at..]) {
            Some(len) => {
                lines.push(String::from_utf8_lossy(&bytes[at..at + len]).into_owned());
                at += len;
            }
            None => {
                kept.push(bytes[at]);
                at += 1;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), lines)
}

/// `text` without the complete interleaved lines in it, wherever they start.
pub fn without_interleaved_lines(text: &str) -> String {
    split_writers(text).0
}

/// A marker the shell prints, matched even when other writers' lines are interleaved with
/// it. The marker must not contain `[`.
pub struct ShellMarker<'a>(pub &'a str);

impl ShellMarker<'_> {
    /// Where a match starting at `start` ends, if the marker is there.
    fn match_at(&self, hay: &[u8], start: usize) -> Option<usize> {
        let mut at = start;
        for (i, &want) in self.0.as_bytes().iter().enumerate() {
            if i > 0 {
                at = past_interleaved_lines(hay, at);
            }
            (*hay.get(at)? == want).then_some(())?;
            at += 1;
        }
        Some(at)
    }
}

impl Pattern for ShellMarker<'_> {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        (from..hay.len()).find_map(|start| self.match_at(hay, start).map(|end| (start, end)))
    }

    /// A match may span any number of interleaved lines: every search starts at `from` again.
    fn resume_at(&self, _hay: &[u8], from: usize) -> usize {
        from
    }

    fn describe(&self) -> String {
        format!("{:?} (with interleaved lines between)", self.0)
    }
}

/// The exit status a command's end marker (`rc=`) is followed by: the digits that come
/// next, past any interleaved lines, ended by any other byte (such a line may follow
/// the digits before their newline).
pub struct ExitStatus;

impl Pattern for ExitStatus {
    fn find_in(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        let start = past_interleaved_lines(hay, from);
        let digits = hay.get(start..)?.iter().take_while(|c| c.is_ascii_digit()).count();
        let ended = start + digits < hay.len();
        (digits > 0 && ended).then_some((start, start + digits))
    }

    /// The status directly follows the marker: every search starts there again.
    fn resume_at(&self, _hay: &[u8], from: usize) -> usize {
        from
    }

    fn describe(&self) -> String {
        "an exit status".into()
    }
}

/// A running QEMU with its serial console attached to the test.
pub struct Session {
    pub name: String,
    pub log_path: PathBuf,
    /// Time allowed for each wait.
    pub timeout: Duration,
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: Receiver<Vec<u8>>,
    stderr: Option<JoinHandle<String>>,
    /// Every byte of serial output so far, carriage returns removed.
    out: Vec<u8>,
    /// Where the next wait starts looking: the end of the last match.
    pos: usize,
    eof: bool,
    file: Option<File>,
    started: Instant,
    /// `Some(code)` once QEMU has exited (`Some(None)`: killed by a signal).
    status: Option<Option<i32>>,
    killed_after: Option<Duration>,
    finished: bool,
    seq: u32,
    esc: Esc,
    /// Where the CPUs were when a wait gave up (hang.rs).
    hang: Option<String>,
}

/// Where `append` is in a terminal escape sequence.
#[derive(Clone, Copy)]
enum Esc {
    None,
    Start,
    Csi,
}

impl Session {
    /// Starts `cmd` with piped stdio; the log goes to `log_path`.
    pub fn start(name: &str, mut cmd: Command, log_path: PathBuf, timeout: Duration) -> Session {
        let command = format!("{cmd:?}");
        std::fs::create_dir_all(log_path.parent().unwrap()).unwrap();
        let file = File::create(&log_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-aarch64 starts (scripts/setup-host installs it)");
        let started = Instant::now();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        Session {
            name: name.into(),
            log_path,
            timeout,
            command,
            stdin: child.stdin.take(),
            child,
            chunks,
            stderr: Some(stderr),
            out: Vec::new(),
            pos: 0,
            eof: false,
            file: Some(file),
            started,
            status: None,
            killed_after: None,
            finished: false,
            seq: 0,
            esc: Esc::None,
            hang: None,
        }
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The whole serial log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    /// A position in the log, for `log_since`.
    pub fn mark(&self) -> usize {
        self.out.len()
    }

    /// `wait_for`, looking from `mark` (an earlier `mark()`) on rather than from the end
    /// of the last match: for a line that may have come before others already waited for.
    pub fn wait_for_since(&mut self, mark: usize, pattern: impl Pattern) -> String {
        self.pos = self.pos.min(mark);
        self.wait_for(pattern)
    }

    pub fn log_since(&self, mark: usize) -> String {
        String::from_utf8_lossy(&self.out[mark.min(self.out.len())..]).into_owned()
    }

    /// The last lines of the log, for failure messages.
    pub fn excerpt(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let skip = lines.len().saturating_sub(EXCERPT_LINES);
        let mut s = String::new();
        if skip > 0 {
            s.push_str(&format!("[... {skip} earlier lines in the log file ...]\n"));
        }
        s.push_str(&lines[skip..].join("\n"));
        s
    }

    /// The log path and the end of the log, to append to an assertion message.
    pub fn context(&self) -> String {
        format!(
            "\n  serial log: {} ({:.1} s since QEMU started)\n--- end of the serial log ---\n{}\n---",
            self.log_path.display(),
            self.elapsed().as_secs_f64(),
            self.excerpt()
        )
    }

    /// Ends the session and panics with `msg` and the context.
    pub fn fail(&mut self, msg: &str) -> ! {
        self.finish();
        let cpus = self.hang.as_ref().map_or(String::new(), |h| format!("\n--- CPUs when the test gave up ---\n{h}"));
        panic!("{}: {msg}{}{cpus}", self.name, self.context())
    }

    /// Asks QEMU, still running, where its CPUs are (hang.rs), for the failure message
    /// and the log.
    fn note_where_cpus_are(&mut self) {
        let report = match hang::ask_registers(&hang::monitor_socket(&self.name)) {
            Ok(answer) => hang::report(&answer, &String::from_utf8_lossy(&self.out)),
            Err(e) => e,
        };
        self.hang = Some(report);
    }

    /// Adds output to the log without carriage returns, NUL bytes and terminal escape
    /// sequences (the shell's cursor-position queries), which only garble the log file.
    fn append(&mut self, chunk: &[u8]) {
        let mut clean = Vec::with_capacity(chunk.len());
        for &c in chunk {
            self.esc = match (self.esc, c) {
                (Esc::None, 0x1b) => Esc::Start,
                (Esc::None, b'\r' | 0) => Esc::None,
                (Esc::None, c) => {
                    clean.push(c);
                    Esc::None
                }
                (Esc::Start, b'[') => Esc::Csi,
                // A CSI sequence ends with a byte in 0x40..=0x7e.
                (Esc::Csi, 0x20..=0x3f) => Esc::Csi,
                (Esc::Start | Esc::Csi, _) => Esc::None,
            };
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(&clean);
        }
        self.out.extend_from_slice(&clean);
    }

    /// Takes in output until `deadline`; false once the deadline passed or QEMU closed its
    /// output.
    fn pump(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.chunks.recv_timeout(wait) {
            Ok(chunk) => {
                self.append(&chunk);
                // Take in whatever else is already there before searching again.
                while let Ok(more) = self.chunks.try_recv() {
                    self.append(&more);
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
        }
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let status = self.child.wait().ok().and_then(|s| s.code());
            self.status = Some(status);
            self.killed_after = Some(self.elapsed());
        }
    }

    fn reap(&mut self) -> Option<i32> {
        if self.status.is_none() {
            let status = self.child.wait().expect("wait for qemu");
            self.status = Some(status.code());
        }
        self.status.unwrap()
    }

    /// Closes the log: kills QEMU if it still runs, takes in the rest of its output and
    /// writes its exit, stderr and command line after the serial output.
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.status = Some(status.code()),
                _ => self.kill(),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pump(deadline) {}
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let how = match (self.killed_after, self.status) {
            (Some(t), _) => format!("killed by the test harness after {:.1} s", t.as_secs_f64()),
            (None, Some(Some(code))) => {
                format!("exited with status {code} after {:.1} s", self.elapsed().as_secs_f64())
            }
            (None, _) => "ended by a signal".into(),
        };
        if let Some(f) = &mut self.file {
            let _ = write!(
                f,
                "\n--- qemu {how} ---\n--- qemu stderr ---\n{stderr}\n--- qemu command ---\n{}\n",
                self.command
            );
            if let Some(cpus) = &self.hang {
                let _ = write!(f, "--- CPUs when the test gave up ---\n{cpus}");
            }
        }
        self.file = None;
    }

    /// Waits for `pattern` after the previous match; returns the matched text and moves
    /// past it.
    pub fn wait_for(&mut self, pattern: impl Pattern) -> String {
        let timeout = self.timeout;
        self.wait_for_within(pattern, timeout)
    }

    /// `wait_for` with its own time limit.
    pub fn wait_for_within(&mut self, pattern: impl Pattern, timeout: Duration) -> String {
        let what = pattern.describe();
        self.wait(pattern, timeout, &what)
    }

    /// Waits for `pattern`; failure messages say that the test was waiting for `what`.
    fn wait(&mut self, pattern: impl Pattern, timeout: Duration, what: &str) -> String {
        let deadline = Instant::now() + timeout;
        let mut from = self.pos;
        loop {
            if let Some((s, e)) = pattern.find_in(&self.out, from) {
                self.pos = e;
                return String::from_utf8_lossy(&self.out[s..e]).into_owned();
            }
            from = pattern.resume_at(&self.out, from);
            if !self.pump(deadline) {
                if self.eof {
                    let status = self.reap();
                    let status = status.map_or("none: killed by a signal".into(), |c| c.to_string());
                    self.fail(&format!("QEMU exited (status {status}) while waiting for {what}"));
                }
                if Instant::now() >= deadline {
                    self.note_where_cpus_are();
                    self.kill();
                    self.fail(&format!("timed out after {} s waiting for {what} (QEMU killed)", timeout.as_secs()));
                }
            }
        }
    }

    /// Whether `pattern` shows up (after the previous match) within `timeout`; unlike
    /// `wait_for` it neither fails nor kills QEMU when it does not.
    pub fn saw_within(&mut self, pattern: impl Pattern, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut from = self.pos;
        loop {
            if let Some((_, e)) = pattern.find_in(&self.out, from) {
                self.pos = e;
                return true;
            }
            from = pattern.resume_at(&self.out, from);
            if !self.pump(deadline) && (self.eof || Instant::now() >= deadline) {
                return false;
            }
        }
    }

    /// Types `text` into the serial console as is.
    pub fn send(&mut self, text: &str) {
        let sent = match &mut self.stdin {
            Some(stdin) => stdin.write_all(text.as_bytes()).and_then(|_| stdin.flush()).is_ok(),
            None => false,
        };
        if !sent {
            let status = self.child.try_wait().ok().flatten().map(|s| s.code());
            self.fail(&format!("cannot type {text:?} into the console: QEMU is gone (status {status:?})"));
        }
    }

    /// Types one line (a newline is added).
    pub fn send_line(&mut self, line: &str) {
        self.send(&format!("{line}\n"));
    }

    /// Waits for a root shell's prompt (`# `) after the previous match.
    pub fn wait_for_shell(&mut self) {
        self.wait_for("# ");
    }

    /// Runs `cmd` (one line) in the guest's shell and returns its output (stdout and stderr,
    /// with any kernel messages printed meanwhile) and exit status. The command is
    /// bracketed by marker lines whose typed form differs from their output, so the shell's
    /// echo of what was typed is never taken for output. The kernel's and Cairn's lines may
    /// come between the markers' characters (see `ShellMarker`).
    pub fn sh_status(&mut self, cmd: &str) -> (i32, String) {
        self.seq += 1;
        let n = self.seq;
        let begin = format!("CMD-BEGIN-{n}-\n");
        let end = format!("CMD-END-{n}- rc=");
        // Both streams reach the console; a command ending in `&` needs no `;`.
        let cmd = cmd.trim_end();
        let sep = if cmd.ends_with('&') && !cmd.ends_with("&&") { " " } else { "; " };
        self.send_line(&format!("echo CMD-BEGIN-{n}''-; {cmd}{sep}echo CMD-END-{n}''- rc=$?"));
        let what = format!("the guest command {cmd:?} to finish");
        let timeout = self.timeout;
        self.wait(ShellMarker(&begin), timeout, &what);
        let start = self.pos;
        let matched = self.wait(ShellMarker(&end), timeout, &what);
        let output = String::from_utf8_lossy(&self.out[start..self.pos - matched.len()]).into_owned();
        let rc = self.wait(ExitStatus, timeout, &what);
        (rc.parse().unwrap(), output)
    }

    /// Runs `cmd` in the guest's shell and returns its output; fails unless it exits 0.
    pub fn sh(&mut self, cmd: &str) -> String {
        let (rc, output) = self.sh_status(cmd);
        if rc != 0 {
            self.fail(&format!("guest command {cmd:?} exited with status {rc}; its output:\n{output}"));
        }
        output
    }

    /// Runs `cmd` like `sh` and returns what the command itself printed, trimmed: without
    /// the kernel's and Cairn's lines interleaved with it. For a value to parse or compare; not
    /// for commands that print kernel log lines themselves (`dmesg`).
    pub fn sh_value(&mut self, cmd: &str) -> String {
        without_interleaved_lines(&self.sh(cmd)).trim().to_owned()
    }

    /// Waits for QEMU to exit (taking in the rest of its output) and returns its status
    /// (`None`: killed by a signal); kills it and fails after the timeout.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(status) = self.status {
                return status;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status.code());
                self.finish();
                return status.code();
            }
            if Instant::now() >= deadline {
                self.kill();
                self.fail(&format!("QEMU did not exit within {} s", self.timeout.as_secs()));
            }
            self.pump(
                Instant::now() + Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())),
            );
            if self.eof {
                // Output closed: QEMU is exiting; give it a moment.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Waits for QEMU to exit and fails unless its status is `code`.
    pub fn expect_exit(&mut self, code: i32) {
        let status = self.wait_exit();
        if status != Some(code) {
            self.fail(&format!("expected QEMU to exit with status {code}, got {status:?}"));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}
