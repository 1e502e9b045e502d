//! Cairn's management prompt, `cairn> `: the line editor that turns typed bytes into lines,
//! the parser that turns lines into [`Command`]s, and the text of every answer. It executes
//! nothing: the caller resolves VMs, acts, gathers what to show, and writes the lines this
//! module formats. Pure logic, tested on the host.
//!
//! The bytes come from the console multiplexer ([`crate::conmux`]): its `Input::Deliver`
//! with `to: Target::Prompt`, once the user has moved the input there with Ctrl-A three
//! times. They are whatever a terminal sends, so the editor must survive anything: it keeps
//! printable ASCII only, swallows escape sequences (arrow keys and other function keys,
//! terminal reports) without echoing them, and never lets a line grow past [`MAX_LINE`].
//!
//! The commands borrow from the tools people who run hypervisors already know. `list`
//! prints Xen's `xl list` table (Name, ID, vCPUs, memory, the positional state flags
//! `r b p s c`), with a last-event column in place of CPU time. `get` and `set` name KVM's
//! firmware pseudo-registers ([`crate::fwregs`]) the way KVM's documentation does, lower
//! case and without the `KVM_REG_ARM_` prefix: `KVM_REG_ARM_PSCI_VERSION` is
//! `psci-version`, `KVM_REG_ARM_STD_HYP_BMAP` is `std-hyp-bmap`.
//!
//! Every command gets at least one line of answer; a line the parser cannot use gets one
//! line saying what is wrong and the usage line ([`error_lines`]), never silence. Lines are
//! returned without line endings: the caller ends each with `"\r\n"`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::SplitAsciiWhitespace;

use log::LevelFilter;

use crate::event::EventLog;
use crate::fwregs::{self, Wa2Level, WaLevel};
use crate::smccc::psci::Version;

/// What the prompt prints before the user's line.
pub const PROMPT: &str = "cairn> ";
/// The longest line the editor keeps; characters typed past it are refused with a bell.
pub const MAX_LINE: usize = 120;

/// The control bytes the editor knows.
pub mod key {
    /// Ctrl-C: abandon the line.
    pub const CTRL_C: u8 = 0x03;
    /// BEL: rung when a character is refused; also ends a terminal's string sequence.
    pub const BEL: u8 = 0x07;
    /// Backspace (Ctrl-H): erase one character.
    pub const BACKSPACE: u8 = 0x08;
    /// Line feed: Enter, as some terminals send it.
    pub const LF: u8 = b'\n';
    /// Carriage return: Enter; a line feed right after it is part of the same Enter.
    pub const CR: u8 = b'\r';
    /// Ctrl-U: erase the whole line.
    pub const CTRL_U: u8 = 0x15;
    /// Escape: starts a sequence that is swallowed whole.
    pub const ESC: u8 = 0x1B;
    /// DEL: what most terminals send for the backspace key; erases one character.
    pub const DEL: u8 = 0x7F;
    /// The first printable ASCII character, space.
    pub const FIRST_PRINTABLE: u8 = 0x20;
    /// The last printable ASCII character, `~`.
    pub const LAST_PRINTABLE: u8 = 0x7E;
}

/// What erasing one character shows: back, blank it, back again.
const ERASE: &[u8] = b"\x08 \x08";
/// What Ctrl-C shows before the new prompt.
const INTERRUPTED: &[u8] = b"^C\r\n";
/// A line break on the terminal.
const CRLF: &[u8] = b"\r\n";

/// Escape sequences (ECMA-48 §5.3-§5.6), by the byte after ESC and the bytes that end them.
mod escape {
    /// ESC `[` starts a control sequence (CSI): arrow keys `ESC [ A`, `ESC [ 1 ; 5 C`.
    pub const CSI: u8 = b'[';
    /// ESC `O` starts a single shift 3 (SS3): arrow and function keys in application mode,
    /// `ESC O A`, `ESC O P`; one more byte ends it.
    pub const SS3: u8 = b'O';
    /// The bytes after ESC that open a string (DCS, SOS, OSC, PM, APC), which runs until
    /// BEL or ST (`ESC \`): terminal reports such as an OSC colour answer.
    pub const STRINGS: &[u8] = b"PX]^_";
    /// Intermediate bytes, which a sequence may hold before its final byte.
    pub const INTERMEDIATE: core::ops::RangeInclusive<u8> = 0x20..=0x2F;
    /// The final bytes of a control sequence.
    pub const CSI_FINAL: core::ops::RangeInclusive<u8> = 0x40..=0x7E;
    /// The final bytes of any other escape sequence.
    pub const FINAL: core::ops::RangeInclusive<u8> = 0x30..=0x7E;
}

/// Where the editor stands in an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    /// Not in one: printable bytes are text.
    None,
    /// ESC seen; the next byte says what kind of sequence follows.
    Start,
    /// In a control sequence, until a byte in [`escape::CSI_FINAL`].
    Csi,
    /// After ESC `O`: the next byte ends it.
    Ss3,
    /// After ESC and intermediate bytes, until a byte in [`escape::FINAL`].
    Intermediate,
    /// In a string, until BEL or `ESC \`.
    String,
}

impl Escape {
    /// The state after printable byte `byte` inside a sequence.
    fn next(self, byte: u8) -> Escape {
        match self {
            Escape::None => Escape::None,
            Escape::Start => match byte {
                escape::CSI => Escape::Csi,
                escape::SS3 => Escape::Ss3,
                b if escape::STRINGS.contains(&b) => Escape::String,
                b if escape::INTERMEDIATE.contains(&b) => Escape::Intermediate,
                _ => Escape::None,
            },
            Escape::Csi if escape::CSI_FINAL.contains(&byte) => Escape::None,
            Escape::Intermediate if escape::FINAL.contains(&byte) => Escape::None,
            Escape::Ss3 => Escape::None,
            state @ (Escape::Csi | Escape::Intermediate | Escape::String) => state,
        }
    }
}

/// The prompt's line editor: it keeps the line being typed and echoes what the user should
/// see. Only printable ASCII enters the line, so a finished line is plain text of at most
/// [`MAX_LINE`] characters.
///
/// Keys: Enter (`\r`, `\n`, or `\r\n` as one) finishes the line; backspace (0x08) and DEL
/// (0x7F) erase one character; Ctrl-U erases the line; Ctrl-C abandons it and prints a new
/// prompt. Every other control byte, every byte above 0x7E, and every escape sequence
/// (ESC and what follows, up to the sequence's final byte) is ignored and not echoed. A
/// control byte ends an escape sequence it interrupts and then acts, so Enter and Ctrl-C
/// always work, even after a stray ESC.
#[derive(Debug)]
pub struct LineEditor {
    line: String,
    escape: Escape,
    /// The last byte was a CR: a LF now belongs to the same Enter.
    after_cr: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub fn new() -> Self {
        LineEditor { line: String::with_capacity(MAX_LINE), escape: Escape::None, after_cr: false }
    }

    /// The line typed so far.
    pub fn pending(&self) -> &str {
        &self.line
    }

    /// Prints the prompt and the line typed so far: after an answer, and when the prompt
    /// regains the input. An escape sequence cut short by a switch away is forgotten; a CR
    /// just typed is not, so the LF of a `\r\n` that arrives after the answer is still
    /// part of the same Enter.
    pub fn prompt(&mut self, sink: &mut dyn FnMut(&[u8])) {
        self.escape = Escape::None;
        sink(PROMPT.as_bytes());
        if !self.line.is_empty() {
            sink(self.line.as_bytes());
        }
    }

    /// Takes one typed byte, echoing to `sink`. Returns the line when Enter finishes it (an
    /// empty one included); the line break is echoed, the next prompt is the caller's, after
    /// its answer.
    pub fn feed(&mut self, byte: u8, sink: &mut dyn FnMut(&[u8])) -> Option<String> {
        let after_cr = core::mem::take(&mut self.after_cr);
        match byte {
            key::FIRST_PRINTABLE..=key::LAST_PRINTABLE => self.printable(byte, sink),
            key::LF if after_cr => {}
            0..key::FIRST_PRINTABLE | key::DEL => {
                // A control ends any escape sequence it interrupts; ESC starts a new one.
                self.escape = if byte == key::ESC { Escape::Start } else { Escape::None };
                return self.control(byte, sink);
            }
            // Not ASCII: UTF-8 or line noise. It also ends an escape sequence.
            _ => self.escape = Escape::None,
        }
        None
    }

    fn printable(&mut self, byte: u8, sink: &mut dyn FnMut(&[u8])) {
        if self.escape != Escape::None {
            self.escape = self.escape.next(byte);
        } else if self.line.len() == MAX_LINE {
            sink(&[key::BEL]);
        } else {
            self.line.push(char::from(byte));
            sink(&[byte]);
        }
    }

    fn control(&mut self, byte: u8, sink: &mut dyn FnMut(&[u8])) -> Option<String> {
        match byte {
            key::CR | key::LF => {
                self.after_cr = byte == key::CR;
                sink(CRLF);
                return Some(core::mem::replace(&mut self.line, String::with_capacity(MAX_LINE)));
            }
            key::BACKSPACE | key::DEL => self.erase(1, sink),
            key::CTRL_U => self.erase(self.line.len(), sink),
            key::CTRL_C => {
                self.line.clear();
                sink(INTERRUPTED);
                self.prompt(sink);
            }
            _ => {}
        }
        None
    }

    /// Erases up to `count` characters from the end of the line, on screen too.
    fn erase(&mut self, count: usize, sink: &mut dyn FnMut(&[u8])) {
        for _ in 0..count {
            if self.line.pop().is_none() {
                break;
            }
            sink(ERASE);
        }
    }
}

/// A VM as the user names it: by its ID, the number `list` shows, or by its name. The
/// caller resolves it, and answers [`no_vm_line`] when nothing matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmRef {
    Id(usize),
    Name(String),
}

impl VmRef {
    /// A word of decimal digits is an ID; anything else, a too large number included, is a
    /// name.
    pub fn parse(word: &str) -> Self {
        let digits = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
        match word.parse() {
            Ok(id) if digits => VmRef::Id(id),
            _ => VmRef::Name(word.into()),
        }
    }
}

impl fmt::Display for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmRef::Id(id) => write!(f, "{id}"),
            VmRef::Name(name) => f.write_str(name),
        }
    }
}

/// A firmware pseudo-register, by the name `get` and `set` use (KVM's, see the module
/// documentation); [`FwReg::id`] is the register ID [`crate::fwregs`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwReg {
    PsciVersion,
    Workaround1,
    Workaround2,
    Workaround3,
    StdBmap,
    StdHypBmap,
    VendorHypBmap,
}

impl FwReg {
    /// Every register, in [`fwregs::reg_list`] order.
    pub const ALL: [FwReg; 7] = [
        FwReg::PsciVersion,
        FwReg::Workaround1,
        FwReg::Workaround2,
        FwReg::Workaround3,
        FwReg::StdBmap,
        FwReg::StdHypBmap,
        FwReg::VendorHypBmap,
    ];

    /// The name typed at the prompt.
    pub const fn name(self) -> &'static str {
        match self {
            FwReg::PsciVersion => "psci-version",
            FwReg::Workaround1 => "smccc-arch-workaround-1",
            FwReg::Workaround2 => "smccc-arch-workaround-2",
            FwReg::Workaround3 => "smccc-arch-workaround-3",
            FwReg::StdBmap => "std-bmap",
            FwReg::StdHypBmap => "std-hyp-bmap",
            FwReg::VendorHypBmap => "vendor-hyp-bmap",
        }
    }

    /// The KVM register ID.
    pub const fn id(self) -> u64 {
        match self {
            FwReg::PsciVersion => fwregs::reg::PSCI_VERSION,
            FwReg::Workaround1 => fwregs::reg::SMCCC_ARCH_WORKAROUND_1,
            FwReg::Workaround2 => fwregs::reg::SMCCC_ARCH_WORKAROUND_2,
            FwReg::Workaround3 => fwregs::reg::SMCCC_ARCH_WORKAROUND_3,
            FwReg::StdBmap => fwregs::reg::STD_BMAP,
            FwReg::StdHypBmap => fwregs::reg::STD_HYP_BMAP,
            FwReg::VendorHypBmap => fwregs::reg::VENDOR_HYP_BMAP,
        }
    }

    /// What it holds, for `help`.
    const fn about(self) -> &'static str {
        match self {
            FwReg::PsciVersion => "the PSCI version the guest sees (X.Y)",
            FwReg::Workaround1 => "Spectre-v2 mitigation level the host offers",
            FwReg::Workaround2 => "SSBD mitigation level the host offers",
            FwReg::Workaround3 => "Spectre-BHB mitigation level the host offers",
            FwReg::StdBmap => "Arm standard services on (bit 0: TRNG)",
            FwReg::StdHypBmap => "Arm standard hypervisor services on",
            FwReg::VendorHypBmap => "vendor hypervisor services on (bit 0: UID, revision)",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        FwReg::ALL.into_iter().find(|reg| reg.name() == name)
    }
}

/// What a prompt line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    List,
    Info(VmRef),
    Pause(VmRef),
    Resume(VmRef),
    Reset(VmRef),
    Stop(VmRef),
    Start(VmRef),
    Save(VmRef),
    Restore(VmRef),
    Get(VmRef, FwReg),
    Set(VmRef, FwReg, u64),
    /// The system-event log of one VM, or of every VM.
    Events(Option<VmRef>),
    Log(LevelFilter),
}

/// One command's usage: its name, its arguments as the usage line spells them, and what
/// it does.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage {
    pub name: &'static str,
    pub args: &'static str,
    pub about: &'static str,
}

impl Usage {
    /// `usage: NAME ARGS`.
    pub fn line(&self) -> String {
        format!("usage: {}", self.synopsis())
    }

    fn synopsis(&self) -> String {
        if self.args.is_empty() {
            self.name.into()
        } else {
            format!("{} {}", self.name, self.args)
        }
    }
}

/// What is wrong with a command's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// An argument is missing: its name in the usage line (`VM`, `REG`, `VALUE`, `LEVEL`).
    Missing(&'static str),
    /// A word after the last argument the command takes.
    Extra(String),
    /// Not a register name ([`FwReg::from_name`]).
    UnknownReg(String),
    /// A VALUE that is not a number (or, for psci-version, a supported `X.Y`).
    BadValue(FwReg, String),
    /// Not a log level.
    BadLevel(String),
}

/// Why a line is not a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but blanks: not an error to report, just a new prompt.
    Empty,
    /// The first word is no command's name.
    Unknown(String),
    /// The command exists but its arguments are wrong.
    Usage(&'static Usage, Problem),
}

/// The log levels `log` takes, as its description and errors list them.
const LEVEL_NAMES: &str = "off, error, warn, info, debug, trace";

/// How one command's arguments are read.
type ArgParser = fn(&mut Args<'_>) -> Result<Command, Problem>;

/// Every command, in the order `help` lists them, with its argument parser.
const COMMANDS: [(Usage, ArgParser); 14] = [
    (Usage { name: "help", args: "", about: "these lines" }, |_| Ok(Command::Help)),
    (Usage { name: "list", args: "", about: "every VM: name, ID, vCPUs, memory, state, last event" }, |_| {
        Ok(Command::List)
    }),
    (Usage { name: "info", args: "VM", about: "a VM's CPUs, memory, devices, PSCI version and events" }, |a| {
        Ok(Command::Info(a.vm()?))
    }),
    (Usage { name: "pause", args: "VM", about: "stop running a VM's vCPUs" }, |a| Ok(Command::Pause(a.vm()?))),
    (Usage { name: "resume", args: "VM", about: "run a paused VM again" }, |a| Ok(Command::Resume(a.vm()?))),
    (Usage { name: "reset", args: "VM", about: "restart a VM, as its own SYSTEM_RESET would" }, |a| {
        Ok(Command::Reset(a.vm()?))
    }),
    (Usage { name: "stop", args: "VM", about: "power a VM off" }, |a| Ok(Command::Stop(a.vm()?))),
    (Usage { name: "start", args: "VM", about: "boot a VM that is off" }, |a| Ok(Command::Start(a.vm()?))),
    (Usage { name: "save", args: "VM", about: "save a VM's state" }, |a| Ok(Command::Save(a.vm()?))),
    (Usage { name: "restore", args: "VM", about: "bring a VM back to its saved state" }, |a| {
        Ok(Command::Restore(a.vm()?))
    }),
    (Usage { name: "get", args: "VM REG", about: "read a firmware register" }, |a| Ok(Command::Get(a.vm()?, a.reg()?))),
    (Usage { name: "set", args: "VM REG VALUE", about: "write a firmware register (VALUE: decimal or 0x-hex)" }, |a| {
        let (vm, reg) = (a.vm()?, a.reg()?);
        Ok(Command::Set(vm, reg, a.value(reg)?))
    }),
    (Usage { name: "events", args: "[VM]", about: "the system events of every VM, or of one" }, |a| {
        Ok(Command::Events(a.optional_vm()))
    }),
    (Usage { name: "log", args: "LEVEL", about: "Cairn's log level: off, error, warn, info, debug, trace" }, |a| {
        Ok(Command::Log(a.level()?))
    }),
];

/// Every command's usage, in the order `help` lists them.
pub fn commands() -> impl Iterator<Item = &'static Usage> {
    COMMANDS.iter().map(|(usage, _)| usage)
}

/// The usage of the command called `name`.
pub fn usage(name: &str) -> Option<&'static Usage> {
    commands().find(|usage| usage.name == name)
}

/// The words after a command's name.
struct Args<'a> {
    words: SplitAsciiWhitespace<'a>,
}

impl<'a> Args<'a> {
    fn next(&mut self, what: &'static str) -> Result<&'a str, Problem> {
        self.words.next().ok_or(Problem::Missing(what))
    }

    fn vm(&mut self) -> Result<VmRef, Problem> {
        self.next("VM").map(VmRef::parse)
    }

    fn optional_vm(&mut self) -> Option<VmRef> {
        self.words.next().map(VmRef::parse)
    }

    fn reg(&mut self) -> Result<FwReg, Problem> {
        let word = self.next("REG")?;
        FwReg::from_name(word).ok_or_else(|| Problem::UnknownReg(word.into()))
    }

    fn value(&mut self, reg: FwReg) -> Result<u64, Problem> {
        let word = self.next("VALUE")?;
        parse_value(reg, word).ok_or_else(|| Problem::BadValue(reg, word.into()))
    }

    /// A log level as `log::LevelFilter` spells it (any case), as the `loglevel=` bootarg
    /// takes it ([`crate::bootargs::log_level`]).
    fn level(&mut self) -> Result<LevelFilter, Problem> {
        let word = self.next("LEVEL")?;
        word.parse().map_err(|_| Problem::BadLevel(word.into()))
    }

    /// Succeeds if no word is left.
    fn end(mut self) -> Result<(), Problem> {
        match self.words.next() {
            Some(word) => Err(Problem::Extra(word.into())),
            None => Ok(()),
        }
    }
}

/// A register VALUE: decimal, `0x` hex, or for psci-version a supported `X.Y`
/// ([`fwregs::parse_psci_version`]), which gives its PSCI_VERSION encoding.
fn parse_value(reg: FwReg, word: &str) -> Option<u64> {
    if reg == FwReg::PsciVersion && word.contains('.') {
        return fwregs::parse_psci_version(word).ok().map(|version| u64::from(version.encode()));
    }
    parse_number(word)
}

/// Decimal digits, or `0x`/`0X` and hex digits; no sign, no blanks, at most 64 bits.
fn parse_number(word: &str) -> Option<u64> {
    let (digits, radix) = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (word, 10),
    };
    let valid = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    valid.then(|| u64::from_str_radix(digits, radix).ok()).flatten()
}

/// Parses one prompt line. Words are separated by blanks; the first names the command.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let mut words = line.split_ascii_whitespace();
    let name = words.next().ok_or(ParseError::Empty)?;
    let (usage, parser) =
        COMMANDS.iter().find(|(usage, _)| usage.name == name).ok_or_else(|| ParseError::Unknown(name.into()))?;
    let mut args = Args { words };
    let command = parser(&mut args).and_then(|command| args.end().map(|()| command));
    command.map_err(|problem| ParseError::Usage(usage, problem))
}

/// A word the user typed, quoted for an answer; anything not printable ASCII (which the
/// editor never lets through, but `parse` may be given any text) shows as `?`.
fn quoted(word: &str) -> String {
    let shown: String = word.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
    format!("`{shown}`")
}

/// The answer to a line that is not a command: none for an empty line (the caller just
/// prompts again); otherwise what is wrong, then the usage line (for an unknown command,
/// the list of commands).
pub fn error_lines(error: &ParseError) -> Vec<String> {
    match error {
        ParseError::Empty => Vec::new(),
        ParseError::Unknown(name) => {
            let names: Vec<&str> = commands().map(|usage| usage.name).collect();
            alloc::vec![format!("unknown command {}", quoted(name)), format!("commands: {}", names.join(" "))]
        }
        ParseError::Usage(usage, problem) => {
            alloc::vec![format!("{}: {}", usage.name, problem_text(problem)), usage.line()]
        }
    }
}

fn problem_text(problem: &Problem) -> String {
    match problem {
        Problem::Missing(what) => format!("no {what} given"),
        Problem::Extra(word) => format!("unexpected {}", quoted(word)),
        Problem::UnknownReg(word) => format!("unknown register {}; help lists the registers", quoted(word)),
        Problem::BadValue(FwReg::PsciVersion, word) => {
            let versions: Vec<&str> = fwregs::SUPPORTED_PSCI_VERSIONS.iter().map(|&(name, _)| name).collect();
            format!("bad value {} for psci-version: decimal, 0x-hex or {}", quoted(word), versions.join(", "))
        }
        Problem::BadValue(reg, word) => format!("bad value {} for {}: decimal or 0x-hex", quoted(word), reg.name()),
        Problem::BadLevel(word) => format!("unknown level {}; levels: {LEVEL_NAMES}", quoted(word)),
    }
}

/// `help`: every command with its arguments and a one-line description, then what the
/// arguments mean and each register's name.
pub fn help_lines() -> Vec<String> {
    let width = commands().map(|usage| usage.synopsis().len()).max().unwrap_or(0);
    let mut lines: Vec<String> =
        commands().map(|usage| format!("{:width$}  {}", usage.synopsis(), usage.about)).collect();
    lines.push("VM: a VM's name, or its ID as list shows it".into());
    lines.push("REG, a firmware pseudo-register (KVM's names):".into());
    let width = FwReg::ALL.iter().map(|reg| reg.name().len()).max().unwrap_or(0);
    lines.extend(FwReg::ALL.iter().map(|reg| format!("  {:width$}  {}", reg.name(), reg.about())));
    lines
}

/// A VM's state, as `list` flags it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    /// A vCPU runs guest code.
    Running,
    /// Every vCPU waits: in WFI, suspended, or off while the VM is not.
    Blocked,
    /// Paused from the prompt.
    Paused,
    /// The guest shut down (or was stopped).
    ShutDown,
    /// Stopped by a guest fault Cairn cannot handle.
    Crashed,
}

/// `xl list`'s state flags, one position each, in the order of [`VmState`].
const STATE_FLAGS: &[u8; 5] = b"rbpsc";
/// The filler for a flag that is not set.
const NO_FLAG: char = '-';

impl VmState {
    /// The letter at its position among `-----`, as `xl list` shows state: `r----`
    /// running, `-b---` blocked, `--p--` paused, `---s-` shut down, `----c` crashed.
    pub fn flags(self) -> String {
        let set = self as usize;
        STATE_FLAGS.iter().enumerate().map(|(i, &flag)| if i == set { char::from(flag) } else { NO_FLAG }).collect()
    }
}

/// What `list` shows of one VM; the caller gathers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSummary {
    pub id: usize,
    pub name: String,
    pub vcpus: usize,
    pub mem_mib: u64,
    pub state: VmState,
    /// The latest system event, short (its `SystemEvent::kind`, say); None before any.
    pub last_event: Option<String>,
}

const LIST_HEADER: [&str; 6] = ["Name", "ID", "vCPUs", "Mem(MiB)", "State", "Last event"];
/// What the last-event column shows for a VM that has had none.
const NO_EVENT: &str = "-";

/// `list`: a header and one line per VM, columns aligned as in `xl list` (text left,
/// numbers right). Only the header when there are no VMs.
pub fn list_lines(vms: &[VmSummary]) -> Vec<String> {
    let rows = vms.iter().map(|vm| {
        let event = vm.last_event.as_deref().unwrap_or(NO_EVENT);
        [
            vm.name.clone(),
            vm.id.to_string(),
            vm.vcpus.to_string(),
            vm.mem_mib.to_string(),
            vm.state.flags(),
            event.into(),
        ]
    });
    let header = LIST_HEADER.map(String::from);
    let table: Vec<[String; 6]> = core::iter::once(header).chain(rows).collect();
    let width = |column: usize| table.iter().map(|row| row[column].len()).max().unwrap_or(0);
    let [name_w, id_w, vcpus_w, mem_w, state_w] = [0, 1, 2, 3, 4].map(width);
    table
        .iter()
        .map(|[name, id, vcpus, mem, state, event]| {
            format!("{name:<name_w$}  {id:>id_w$}  {vcpus:>vcpus_w$}  {mem:>mem_w$}  {state:<state_w$}  {event}")
        })
        .collect()
}

/// One vCPU as `info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Its index in the VM (`vcpuN`).
    pub vcpu: usize,
    /// The physical CPU it runs on.
    pub pcpu: usize,
    /// Its power state in a word: `runnable`, `off`, `suspended`, `wfi`.
    pub power: &'static str,
    /// The guest PC it last left at.
    pub pc: u64,
}

/// One range of a VM's memory, as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRange {
    pub base: u64,
    pub size: u64,
}

/// What `info` shows of one VM; the caller gathers it.
#[derive(Debug)]
pub struct VmInfo<'a> {
    pub summary: VmSummary,
    pub vcpus: Vec<VcpuInfo>,
    pub memory: Vec<MemRange>,
    /// One line per device, as the caller words it (`pl011 UART at 0x9000000, SPI 1`).
    pub devices: Vec<String>,
    pub psci: Version,
    /// Its snapshot slot, if it has one.
    pub snapshot: Option<SnapshotInfo>,
    pub events: &'a EventLog,
}

/// A VM's snapshot slot and what it holds.
#[derive(Debug)]
pub struct SnapshotInfo {
    pub slot: MemRange,
    /// The snapshot in it: its RAM in use (bytes), and whether the VM was paused.
    pub saved: Option<(u64, bool)>,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// A size in the largest of MiB, KiB and bytes that divides it.
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b != 0 && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b != 0 && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// Where PSCI_VERSION keeps the major version (DEN0022 §5.1.1); the minor is below it.
const PSCI_MAJOR_SHIFT: u32 = 16;

/// The version a PSCI_VERSION value names, any version: 32 bits, `major << 16 | minor`.
fn decode_psci_version(value: u64) -> Option<Version> {
    let value = u32::try_from(value).ok()?;
    let major = u16::try_from(value >> PSCI_MAJOR_SHIFT).ok()?;
    let minor = u16::try_from(value & ((1 << PSCI_MAJOR_SHIFT) - 1)).ok()?;
    Some(Version { major, minor })
}

fn psci_text(version: Version) -> String {
    format!("PSCI {}.{}", version.major, version.minor)
}

/// `info VM`: a heading line, then the vCPUs, memory, devices and events, indented.
pub fn info_lines(vm: &VmInfo<'_>) -> Vec<String> {
    let s = &vm.summary;
    let mut lines = alloc::vec![format!(
        "{} (ID {}): {}, {} vCPU{}, {} MiB, {}",
        s.name,
        s.id,
        s.state.flags(),
        s.vcpus,
        if s.vcpus == 1 { "" } else { "s" },
        s.mem_mib,
        psci_text(vm.psci)
    )];
    for cpu in &vm.vcpus {
        lines.push(format!("  vcpu{} on cpu{}: {}, PC {:#x}", cpu.vcpu, cpu.pcpu, cpu.power, cpu.pc));
    }
    for range in &vm.memory {
        let last = range.base.saturating_add(range.size.saturating_sub(1));
        lines.push(format!("  memory {:#x}-{:#x} ({})", range.base, last, size_text(range.size)));
    }
    lines.extend(vm.devices.iter().map(|device| format!("  device {device}")));
    lines.push(snapshot_line(vm.snapshot.as_ref()));
    lines.push(format!("  {}", events_heading("events", vm.events)));
    lines.extend(vm.events.recent().map(|event| format!("    {event}")));
    lines
}

/// `info`'s line on the VM's snapshot slot.
fn snapshot_line(snapshot: Option<&SnapshotInfo>) -> String {
    let Some(s) = snapshot else { return String::from("  no snapshot slot (cairn.snapshot=on gives one)") };
    let last = s.slot.base.saturating_add(s.slot.size.saturating_sub(1));
    let holds = match s.saved {
        None => String::from("empty"),
        Some((ram, paused)) => {
            format!(
                "a snapshot with {} of RAM in use, taken {}",
                size_text(ram),
                if paused { "paused" } else { "running" }
            )
        }
    };
    format!("  snapshot slot {:#x}-{last:#x} ({}): {holds}", s.slot.base, size_text(s.slot.size))
}

/// `NAME: no system events` or `NAME: N system events` (`, the latest 32:` when the log
/// dropped older ones).
fn events_heading(name: &str, log: &EventLog) -> String {
    let kept = log.recent().count() as u64;
    match log.total() {
        0 => format!("{name}: no system events"),
        1 => format!("{name}: 1 system event"),
        total if total > kept => format!("{name}: {total} system events, the latest {kept}:"),
        total => format!("{name}: {total} system events"),
    }
}

/// `events [VM]`: for each VM given (name, log), a heading and its events, oldest first.
/// `no VMs` when there are none.
pub fn events_lines(vms: &[(&str, &EventLog)]) -> Vec<String> {
    if vms.is_empty() {
        return alloc::vec!["no VMs".into()];
    }
    let mut lines = Vec::new();
    for (name, log) in vms {
        lines.push(events_heading(name, log));
        lines.extend(log.recent().map(|event| format!("  {event}")));
    }
    lines
}

/// What a register value means, when it is a level or a version; None for a bitmap.
fn value_meaning(reg: FwReg, value: u64) -> Option<String> {
    match reg {
        FwReg::PsciVersion => decode_psci_version(value).map(psci_text),
        FwReg::Workaround1 | FwReg::Workaround3 => WaLevel::decode(value).map(|level| wa_text(level).into()),
        FwReg::Workaround2 => {
            let level = Wa2Level::decode(value & fwregs::WA_LEVEL_MASK)?;
            let enabled = value & fwregs::WA2_ENABLED != 0;
            let stray = value & !(fwregs::WA_LEVEL_MASK | fwregs::WA2_ENABLED) != 0;
            (!stray).then(|| format!("{}{}", wa2_text(level), if enabled { ", ENABLED" } else { "" }))
        }
        FwReg::StdBmap | FwReg::StdHypBmap | FwReg::VendorHypBmap => None,
    }
}

/// KVM's name of a WORKAROUND_1/3 level.
fn wa_text(level: WaLevel) -> &'static str {
    match level {
        WaLevel::NotAvail => "NOT_AVAIL",
        WaLevel::Avail => "AVAIL",
        WaLevel::NotRequired => "NOT_REQUIRED",
    }
}

/// KVM's name of a WORKAROUND_2 level.
fn wa2_text(level: Wa2Level) -> &'static str {
    match level {
        Wa2Level::NotAvail => "NOT_AVAIL",
        Wa2Level::Unknown => "UNKNOWN",
        Wa2Level::Avail => "AVAIL",
        Wa2Level::NotRequired => "NOT_REQUIRED",
    }
}

fn value_text(reg: FwReg, value: u64) -> String {
    match value_meaning(reg, value) {
        Some(meaning) => format!("{value:#x} ({meaning})"),
        None => format!("{value:#x}"),
    }
}

/// `get`'s answer: `REG = VALUE (meaning)`, e.g. `psci-version = 0x10001 (PSCI 1.1)`.
pub fn get_line(reg: FwReg, value: u64) -> String {
    format!("{} = {}", reg.name(), value_text(reg, value))
}

/// The errno name KVM's SET_ONE_REG would fail with.
fn errno_name(error: fwregs::Error) -> &'static str {
    match error {
        fwregs::Error::NoEntry => "ENOENT",
        fwregs::Error::Invalid => "EINVAL",
        fwregs::Error::Busy => "EBUSY",
    }
}

/// `set`'s answer, from what the register write returned.
pub fn set_line(reg: FwReg, value: u64, result: fwregs::Result<()>) -> String {
    match result {
        Ok(()) => format!("{} = {}", reg.name(), value_text(reg, value)),
        Err(error) => format!("set {} {value:#x}: {error} ({})", reg.name(), errno_name(error)),
    }
}

/// `log`'s answer.
pub fn log_line(level: LevelFilter) -> String {
    format!("log level: {}", level.as_str().to_ascii_lowercase())
}

/// The answer when a [`VmRef`] matches no VM.
pub fn no_vm_line(vm: &VmRef) -> String {
    match vm {
        VmRef::Id(id) => format!("no VM with ID {id}; list shows the VMs"),
        VmRef::Name(name) => format!("no VM {}; list shows the VMs", quoted(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SystemEvent;
    use alloc::vec;

    /// Types `keys` into `editor`; returns the lines Enter finished and what the terminal
    /// showed.
    fn type_keys(editor: &mut LineEditor, keys: &[u8]) -> (Vec<String>, Vec<u8>) {
        let mut echo = Vec::new();
        let mut lines = Vec::new();
        for &key in keys {
            lines.extend(editor.feed(key, &mut |bytes: &[u8]| echo.extend_from_slice(bytes)));
        }
        (lines, echo)
    }

    /// Types `keys` into a new editor; returns the finished lines and the echo as text.
    fn typed(keys: &[u8]) -> (Vec<String>, String, LineEditor) {
        let mut editor = LineEditor::new();
        let (lines, echo) = type_keys(&mut editor, keys);
        (lines, String::from_utf8(echo).unwrap(), editor)
    }

    /// What a terminal may be sent: printable ASCII and the controls the editor echoes.
    fn is_echo_byte(byte: u8) -> bool {
        matches!(byte, key::FIRST_PRINTABLE..=key::LAST_PRINTABLE | key::CR | key::LF | key::BACKSPACE | key::BEL)
    }

    #[test]
    fn typing_is_echoed_and_enter_finishes_the_line() {
        let (lines, echo, editor) = typed(b"list\r");
        assert_eq!(lines, ["list"]);
        assert_eq!(echo, "list\r\n");
        assert_eq!(editor.pending(), "");
    }

    #[test]
    fn cr_lf_is_one_enter_and_each_enter_alone_is_a_line() {
        let (lines, echo, _) = typed(b"a\r\nb\nc\r\r\n\n");
        assert_eq!(lines, ["a", "b", "c", "", ""]);
        assert_eq!(echo, "a\r\nb\r\nc\r\n\r\n\r\n");
    }

    #[test]
    fn the_lf_of_cr_lf_after_the_answer_is_not_another_line() {
        let mut editor = LineEditor::new();
        assert_eq!(type_keys(&mut editor, b"list\r").0, ["list"]);
        let mut shown = Vec::new();
        editor.prompt(&mut |bytes| shown.extend_from_slice(bytes));
        let (lines, echo) = type_keys(&mut editor, b"\nhelp\r\n");
        assert_eq!(lines, ["help"]);
        assert_eq!(echo, b"help\r\n");
        assert_eq!(shown, PROMPT.as_bytes());
    }

    #[test]
    fn prompt_shows_the_line_typed_so_far() {
        let (_, _, mut editor) = typed(b"info li");
        let mut shown = Vec::new();
        editor.prompt(&mut |bytes| shown.extend_from_slice(bytes));
        assert_eq!(shown, b"cairn> info li");
        let (lines, _) = type_keys(&mut editor, b"nux\r");
        assert_eq!(lines, ["info linux"]);
    }

    #[test]
    fn backspace_and_del_erase_one_character() {
        let (lines, echo, _) = typed(b"lisx\x7ft\x08t\r");
        assert_eq!(lines, ["list"]);
        assert_eq!(echo, "lisx\x08 \x08t\x08 \x08t\r\n");
    }

    #[test]
    fn backspace_at_the_start_of_the_line_shows_nothing() {
        let (lines, echo, editor) = typed(b"\x7f\x08\x7fa\x7f\x7f");
        assert!(lines.is_empty());
        assert_eq!(echo, "a\x08 \x08");
        assert_eq!(editor.pending(), "");
    }

    #[test]
    fn ctrl_c_abandons_the_line_and_prompts_again() {
        let (lines, echo, editor) = typed(b"reset linux\x03");
        assert!(lines.is_empty());
        assert_eq!(echo, "reset linux^C\r\ncairn> ");
        assert_eq!(editor.pending(), "");
        let (lines, echo, _) = typed(b"stop\x03help\r");
        assert_eq!(lines, ["help"]);
        assert_eq!(echo, "stop^C\r\ncairn> help\r\n");
    }

    #[test]
    fn ctrl_u_erases_the_line() {
        let (lines, echo, _) = typed(b"abc\x15list\r");
        assert_eq!(lines, ["list"]);
        assert_eq!(echo, "abc\x08 \x08\x08 \x08\x08 \x08list\r\n");
        let (_, echo, _) = typed(b"\x15");
        assert_eq!(echo, "");
    }

    #[test]
    fn escape_sequences_are_swallowed_whole() {
        let keys: &[&[u8]] = &[
            b"l\x1b[A",                   // up arrow
            b"i\x1bOB",                   // down arrow, application mode
            b"s\x1b[1;5C",                // Ctrl-right
            b"t\x1b[3~",                  // delete key
            b" \x1b]11;rgb:00/00/00\x07", // OSC colour report, ended by BEL
            b"v\x1b]0;title\x1b\\",       // OSC ended by ST
            b"m\x1bx",                    // Alt-x
            b"0\x1b(B",                   // charset designation
            b"\r",
        ];
        let (lines, echo, _) = typed(&keys.concat());
        assert_eq!(lines, ["list vm0"]);
        assert_eq!(echo, "list vm0\r\n");
    }

    #[test]
    fn controls_cut_escape_sequences_short() {
        // A stray ESC does not swallow Enter, Ctrl-C or backspace.
        assert_eq!(typed(b"list\x1b\r").0, ["list"]);
        assert_eq!(typed(b"ab\x1b[12\x03").1, "ab^C\r\ncairn> ");
        assert_eq!(typed(b"ab\x1b[\x7fc\r").0, ["ac"]);
        // A new prompt forgets a sequence cut by a switch away.
        let (_, _, mut editor) = typed(b"x\x1b[");
        editor.prompt(&mut |_| {});
        assert_eq!(type_keys(&mut editor, b"y\r").0, ["xy"]);
    }

    #[test]
    fn every_byte_alone_is_echoed_only_if_printable() {
        for byte in 0..=u8::MAX {
            let (lines, echo, editor) = typed(&[byte]);
            let expected = match byte {
                key::FIRST_PRINTABLE..=key::LAST_PRINTABLE => String::from(char::from(byte)),
                key::CR | key::LF => "\r\n".into(),
                key::CTRL_C => "^C\r\ncairn> ".into(),
                _ => String::new(),
            };
            assert_eq!(echo, expected, "byte {byte:#04x}");
            assert_eq!(lines.len(), usize::from(byte == key::CR || byte == key::LF), "byte {byte:#04x}");
            assert!(editor.pending().len() <= 1);
        }
    }

    #[test]
    fn binary_garbage_keeps_the_editor_sane() {
        let all: Vec<u8> = (0..=u8::MAX).collect();
        // A simple LCG for repeatable noise.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (seed >> 56) as u8
            })
            .collect();
        let mut editor = LineEditor::new();
        for keys in [&all[..], &all.iter().rev().copied().collect::<Vec<_>>()[..], &noise[..]] {
            let (lines, echo) = type_keys(&mut editor, keys);
            assert!(echo.iter().all(|&b| is_echo_byte(b)));
            for line in lines.iter().map(String::as_str).chain([editor.pending()]) {
                assert!(line.len() <= MAX_LINE);
                assert!(line.bytes().all(|b| (key::FIRST_PRINTABLE..=key::LAST_PRINTABLE).contains(&b)));
            }
        }
        // Still usable afterwards.
        let (lines, _) = type_keys(&mut editor, b"\x03help\r");
        assert_eq!(lines, ["help"]);
    }

    #[test]
    fn a_long_line_is_capped_with_bells_and_stays_usable() {
        let name = "x".repeat(495);
        let keys = format!("info {name}");
        assert_eq!(keys.len(), 500);
        let (lines, echo, mut editor) = typed(keys.as_bytes());
        assert!(lines.is_empty());
        let bells = "\x07".repeat(500 - MAX_LINE);
        assert_eq!(echo, format!("{}{bells}", &keys[..MAX_LINE]));
        assert_eq!(editor.pending(), &keys[..MAX_LINE]);
        // Erasing makes room again.
        let (lines, echo) = type_keys(&mut editor, b"\x7fy\x07z\r");
        assert_eq!(echo, b"\x08 \x08y\x07\r\n");
        let kept = format!("{}y", &keys[..MAX_LINE - 1]);
        assert_eq!(lines, [kept.as_str()]);
        assert_eq!(parse(&kept), Ok(Command::Info(VmRef::Name(kept["info ".len()..].into()))));
    }

    fn name(s: &str) -> VmRef {
        VmRef::Name(s.into())
    }

    #[test]
    fn vm_refs_are_ids_or_names() {
        assert_eq!(VmRef::parse("0"), VmRef::Id(0));
        assert_eq!(VmRef::parse("12"), VmRef::Id(12));
        assert_eq!(VmRef::parse("007"), VmRef::Id(7));
        for word in ["linux", "vm0", "+1", "-1", "1a", "0x1", "99999999999999999999999"] {
            assert_eq!(VmRef::parse(word), name(word));
        }
        assert_eq!(VmRef::Id(3).to_string(), "3");
        assert_eq!(name("linux").to_string(), "linux");
    }

    #[test]
    fn every_command_parses() {
        let cases = [
            ("help", Command::Help),
            ("list", Command::List),
            ("info linux", Command::Info(name("linux"))),
            ("info 1", Command::Info(VmRef::Id(1))),
            ("pause linux", Command::Pause(name("linux"))),
            ("resume 0", Command::Resume(VmRef::Id(0))),
            ("reset linux", Command::Reset(name("linux"))),
            ("stop 2", Command::Stop(VmRef::Id(2))),
            ("start linux", Command::Start(name("linux"))),
            ("save linux", Command::Save(name("linux"))),
            ("restore linux", Command::Restore(name("linux"))),
            ("get linux psci-version", Command::Get(name("linux"), FwReg::PsciVersion)),
            ("get 0 smccc-arch-workaround-2", Command::Get(VmRef::Id(0), FwReg::Workaround2)),
            ("set linux psci-version 1.0", Command::Set(name("linux"), FwReg::PsciVersion, 0x1_0000)),
            ("set linux psci-version 0.1", Command::Set(name("linux"), FwReg::PsciVersion, 1)),
            ("set linux psci-version 0x10001", Command::Set(name("linux"), FwReg::PsciVersion, 0x1_0001)),
            ("set linux psci-version 65536", Command::Set(name("linux"), FwReg::PsciVersion, 0x1_0000)),
            ("set 1 std-bmap 0", Command::Set(VmRef::Id(1), FwReg::StdBmap, 0)),
            ("set 1 vendor-hyp-bmap 0X1", Command::Set(VmRef::Id(1), FwReg::VendorHypBmap, 1)),
            ("set 1 std-hyp-bmap 0xffffffffffffffff", Command::Set(VmRef::Id(1), FwReg::StdHypBmap, u64::MAX)),
            ("set 1 smccc-arch-workaround-1 2", Command::Set(VmRef::Id(1), FwReg::Workaround1, 2)),
            ("set 1 smccc-arch-workaround-3 0x2", Command::Set(VmRef::Id(1), FwReg::Workaround3, 2)),
            ("events", Command::Events(None)),
            ("events linux", Command::Events(Some(name("linux")))),
            ("log debug", Command::Log(LevelFilter::Debug)),
            ("log OFF", Command::Log(LevelFilter::Off)),
            ("log Trace", Command::Log(LevelFilter::Trace)),
            ("  info \t linux  ", Command::Info(name("linux"))),
        ];
        for (line, command) in cases {
            assert_eq!(parse(line), Ok(command), "{line}");
        }
        for level in ["off", "error", "warn", "info", "debug", "trace"] {
            assert!(matches!(parse(&format!("log {level}")), Ok(Command::Log(_))), "{level}");
        }
        // Every command in the table parses to something.
        for usage in commands() {
            let line = format!("{} 0 psci-version 1", usage.name);
            assert!(!matches!(parse(&line), Err(ParseError::Unknown(_))), "{}", usage.name);
        }
    }

    fn bad(line: &str) -> (&'static str, Problem) {
        match parse(line) {
            Err(ParseError::Usage(usage, problem)) => (usage.name, problem),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        for command in ["info", "pause", "resume", "reset", "stop", "start", "save", "restore", "get", "set"] {
            assert_eq!(bad(command), (usage(command).unwrap().name, Problem::Missing("VM")), "{command}");
        }
        for command in ["info", "pause", "resume", "reset", "stop", "start", "save", "restore", "events"] {
            let line = format!("{command} linux now");
            assert_eq!(bad(&line).1, Problem::Extra("now".into()), "{line}");
        }
        let extra = |word: &str| Problem::Extra(word.into());
        assert_eq!(bad("help me"), ("help", extra("me")));
        assert_eq!(bad("list all"), ("list", extra("all")));
        assert_eq!(bad("get linux"), ("get", Problem::Missing("REG")));
        assert_eq!(bad("get linux psci"), ("get", Problem::UnknownReg("psci".into())));
        assert_eq!(bad("get linux PSCI-VERSION").1, Problem::UnknownReg("PSCI-VERSION".into()));
        assert_eq!(bad("get linux psci-version 1").1, extra("1"));
        assert_eq!(bad("set linux std-bmap"), ("set", Problem::Missing("VALUE")));
        assert_eq!(bad("set linux bmap 1").1, Problem::UnknownReg("bmap".into()));
        assert_eq!(bad("set linux std-bmap 1 2").1, extra("2"));
        let bad_values = ["zz", "0x", "0xg", "-1", "+1", "1.0", "1_000", "0x1_0", "18446744073709551616"];
        for value in bad_values.into_iter().chain(["0x10000000000000000", "1e3", "0b1", "١"]) {
            let line = format!("set linux std-bmap {value}");
            assert_eq!(bad(&line), ("set", Problem::BadValue(FwReg::StdBmap, value.into())), "{line}");
        }
        for value in ["1.2", "1.3", "2.0", "1.", ".1", "v1.0", "1.0.0", "x"] {
            let line = format!("set linux psci-version {value}");
            assert_eq!(bad(&line).1, Problem::BadValue(FwReg::PsciVersion, value.into()), "{line}");
        }
        assert_eq!(bad("log"), ("log", Problem::Missing("LEVEL")));
        assert_eq!(bad("log loud"), ("log", Problem::BadLevel("loud".into())));
        assert_eq!(bad("log 3"), ("log", Problem::BadLevel("3".into())));
        assert_eq!(bad("log info now").1, extra("now"));
    }

    #[test]
    fn unknown_and_empty_lines() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("  \t "), Err(ParseError::Empty));
        assert_eq!(parse("foo linux"), Err(ParseError::Unknown("foo".into())));
        assert_eq!(parse("HELP"), Err(ParseError::Unknown("HELP".into())));
        assert_eq!(parse("0"), Err(ParseError::Unknown("0".into())));
    }

    #[test]
    fn every_error_is_answered_with_what_and_how() {
        assert!(error_lines(&ParseError::Empty).is_empty());
        assert_eq!(
            error_lines(&parse("foo").unwrap_err()),
            [
                "unknown command `foo`",
                "commands: help list info pause resume reset stop start save restore get set events log"
            ]
        );
        let cases = [
            ("info", "info: no VM given", "usage: info VM"),
            ("pause a b", "pause: unexpected `b`", "usage: pause VM"),
            ("help me", "help: unexpected `me`", "usage: help"),
            ("events a b", "events: unexpected `b`", "usage: events [VM]"),
            ("get a", "get: no REG given", "usage: get VM REG"),
            ("get a x", "get: unknown register `x`; help lists the registers", "usage: get VM REG"),
            ("set a std-bmap", "set: no VALUE given", "usage: set VM REG VALUE"),
            ("set a std-bmap 1.0", "set: bad value `1.0` for std-bmap: decimal or 0x-hex", "usage: set VM REG VALUE"),
            (
                "set a psci-version 1.2",
                "set: bad value `1.2` for psci-version: decimal, 0x-hex or 0.1, 0.2, 1.0, 1.1",
                "usage: set VM REG VALUE",
            ),
            ("log", "log: no LEVEL given", "usage: log LEVEL"),
            ("log loud", "log: unknown level `loud`; levels: off, error, warn, info, debug, trace", "usage: log LEVEL"),
        ];
        for (line, what, how) in cases {
            assert_eq!(error_lines(&parse(line).unwrap_err()), [what, how], "{line}");
        }
        // Words that are not printable ASCII are not sent to the terminal as they are.
        let lines = error_lines(&parse("f\u{1b}[2Jo").unwrap_err());
        assert_eq!(lines[0], "unknown command `f?[2Jo`");
    }

    #[test]
    fn help_lists_every_command_and_register() {
        let lines = help_lines();
        for usage in commands() {
            let line = lines.iter().find(|line| line.starts_with(&format!("{} ", usage.name))).unwrap();
            assert!(line.ends_with(usage.about), "{line}");
        }
        for reg in FwReg::ALL {
            assert!(lines.iter().any(|line| line.starts_with(&format!("  {} ", reg.name()))), "{}", reg.name());
        }
        // The descriptions start in one column.
        let column = lines[0].find("these lines").unwrap();
        for (line, usage) in lines.iter().zip(commands()) {
            assert_eq!(line.find(usage.about), Some(column), "{line}");
        }
        assert_eq!(lines[11], "set VM REG VALUE  write a firmware register (VALUE: decimal or 0x-hex)");
        let levels: Vec<String> = LevelFilter::iter().map(|level| level.as_str().to_ascii_lowercase()).collect();
        assert_eq!(levels.join(", "), LEVEL_NAMES);
        assert!(usage("log").unwrap().about.ends_with(LEVEL_NAMES));
        assert!(lines.iter().all(|line| line.len() <= 80), "{lines:#?}");
    }

    #[test]
    fn register_names_map_to_kvm_ids() {
        let ids: Vec<u64> = FwReg::ALL.iter().map(|reg| reg.id()).collect();
        assert_eq!(ids, fwregs::reg_list());
        assert_eq!(FwReg::PsciVersion.id(), 0x6030_0000_0014_0000);
        assert_eq!(FwReg::VendorHypBmap.id(), 0x6030_0000_0016_0002);
        for reg in FwReg::ALL {
            assert_eq!(FwReg::from_name(reg.name()), Some(reg));
        }
        assert_eq!(FwReg::from_name("smccc-arch-workaround-4"), None);
    }

    fn summary(id: usize, name: &str, vcpus: usize, mem_mib: u64, state: VmState, event: Option<&str>) -> VmSummary {
        VmSummary { id, name: name.into(), vcpus, mem_mib, state, last_event: event.map(String::from) }
    }

    #[test]
    fn list_is_an_aligned_table() {
        let vms = [
            summary(0, "linux", 4, 1024, VmState::Running, None),
            summary(1, "isolation-test", 1, 64, VmState::Crashed, Some("crash")),
            summary(12, "x", 2, 512, VmState::Blocked, Some("wakeup")),
            summary(3, "debian", 2, 2048, VmState::Paused, Some("reset")),
            summary(4, "alpine", 1, 256, VmState::ShutDown, Some("shutdown")),
        ];
        assert_eq!(
            list_lines(&vms),
            [
                "Name            ID  vCPUs  Mem(MiB)  State  Last event",
                "linux            0      4      1024  r----  -",
                "isolation-test   1      1        64  ----c  crash",
                "x               12      2       512  -b---  wakeup",
                "debian           3      2      2048  --p--  reset",
                "alpine           4      1       256  ---s-  shutdown",
            ]
        );
        assert_eq!(list_lines(&[]), ["Name  ID  vCPUs  Mem(MiB)  State  Last event"]);
    }

    #[test]
    fn state_flags_follow_xl() {
        let flags = [
            (VmState::Running, "r----"),
            (VmState::Blocked, "-b---"),
            (VmState::Paused, "--p--"),
            (VmState::ShutDown, "---s-"),
            (VmState::Crashed, "----c"),
        ];
        for (state, text) in flags {
            assert_eq!(state.flags(), text);
        }
    }

    #[test]
    fn info_shows_cpus_memory_devices_psci_and_events() {
        let mut log = EventLog::new();
        log.push(SystemEvent::Reset { vcpu: 1 });
        let vm = VmInfo {
            summary: summary(0, "linux", 2, 513, VmState::Running, Some("reset")),
            vcpus: vec![
                VcpuInfo { vcpu: 0, pcpu: 1, power: "runnable", pc: 0xffff_8000_0801_2345 },
                VcpuInfo { vcpu: 1, pcpu: 2, power: "wfi", pc: 0x4020_0000 },
            ],
            memory: vec![MemRange { base: 0x4000_0000, size: 512 * MIB }, MemRange { base: 0x9000_0000, size: 4096 }],
            devices: vec!["pl011 UART at 0x9000000, SPI 1".into(), "GICv3 distributor at 0x8000000".into()],
            psci: Version::V1_0,
            snapshot: Some(SnapshotInfo {
                slot: MemRange { base: 0x8000_0000, size: 514 * MIB },
                saved: Some((12 * MIB, true)),
            }),
            events: &log,
        };
        assert_eq!(
            info_lines(&vm),
            [
                "linux (ID 0): r----, 2 vCPUs, 513 MiB, PSCI 1.0",
                "  vcpu0 on cpu1: runnable, PC 0xffff800008012345",
                "  vcpu1 on cpu2: wfi, PC 0x40200000",
                "  memory 0x40000000-0x5fffffff (512 MiB)",
                "  memory 0x90000000-0x90000fff (4 KiB)",
                "  device pl011 UART at 0x9000000, SPI 1",
                "  device GICv3 distributor at 0x8000000",
                "  snapshot slot 0x80000000-0xa01fffff (514 MiB): a snapshot with 12 MiB of RAM in use, taken paused",
                "  events: 1 system event",
                "    reset (PSCI SYSTEM_RESET) from vcpu1",
            ]
        );
        let empty = EventLog::new();
        let lone = VmInfo {
            summary: summary(3, "tiny", 1, 0, VmState::ShutDown, None),
            vcpus: Vec::new(),
            memory: vec![MemRange { base: 0, size: 100 }],
            devices: Vec::new(),
            psci: Version::V0_1,
            snapshot: None,
            events: &empty,
        };
        assert_eq!(
            info_lines(&lone),
            [
                "tiny (ID 3): ---s-, 1 vCPU, 0 MiB, PSCI 0.1",
                "  memory 0x0-0x63 (100 bytes)",
                "  no snapshot slot (cairn.snapshot=on gives one)",
                "  events: no system events"
            ]
        );
    }

    #[test]
    fn events_of_every_vm_or_one() {
        let mut busy = EventLog::new();
        for entry in 0..20 {
            busy.push(SystemEvent::Suspend { vcpu: 0, entry });
            busy.push(SystemEvent::Wakeup { vcpu: 0, intid: 27, entry });
        }
        let mut once = EventLog::new();
        once.push(SystemEvent::Shutdown { vcpu: 0 });
        once.push(SystemEvent::Reset { vcpu: 1 });
        let quiet = EventLog::new();
        let lines = events_lines(&[("busy", &busy), ("once", &once), ("quiet", &quiet)]);
        assert_eq!(lines[0], "busy: 40 system events, the latest 32:");
        assert_eq!(lines[1], "  suspend (PSCI SYSTEM_SUSPEND, resume at 0x4) from vcpu0");
        assert_eq!(
            lines[33..],
            [
                "once: 2 system events",
                "  shutdown (PSCI SYSTEM_OFF) from vcpu0",
                "  reset (PSCI SYSTEM_RESET) from vcpu1",
                "quiet: no system events",
            ]
        );
        assert_eq!(events_lines(&[("quiet", &quiet)]), ["quiet: no system events"]);
        assert_eq!(events_lines(&[]), ["no VMs"]);
    }

    #[test]
    fn register_answers_say_what_values_mean() {
        assert_eq!(get_line(FwReg::PsciVersion, 0x1_0001), "psci-version = 0x10001 (PSCI 1.1)");
        assert_eq!(get_line(FwReg::PsciVersion, 0x1_0003), "psci-version = 0x10003 (PSCI 1.3)");
        assert_eq!(get_line(FwReg::PsciVersion, 1 << 32), "psci-version = 0x100000000");
        assert_eq!(get_line(FwReg::Workaround1, 2), "smccc-arch-workaround-1 = 0x2 (NOT_REQUIRED)");
        assert_eq!(get_line(FwReg::Workaround3, 0), "smccc-arch-workaround-3 = 0x0 (NOT_AVAIL)");
        assert_eq!(get_line(FwReg::Workaround3, 7), "smccc-arch-workaround-3 = 0x7");
        assert_eq!(get_line(FwReg::Workaround2, 1), "smccc-arch-workaround-2 = 0x1 (UNKNOWN)");
        assert_eq!(get_line(FwReg::Workaround2, 0x12), "smccc-arch-workaround-2 = 0x12 (AVAIL, ENABLED)");
        assert_eq!(get_line(FwReg::Workaround2, 0x22), "smccc-arch-workaround-2 = 0x22");
        assert_eq!(get_line(FwReg::StdBmap, 1), "std-bmap = 0x1");
        assert_eq!(set_line(FwReg::PsciVersion, 0x1_0000, Ok(())), "psci-version = 0x10000 (PSCI 1.0)");
        assert_eq!(
            set_line(FwReg::PsciVersion, 0x1_0000, Err(fwregs::Error::Busy)),
            "set psci-version 0x10000: VM configuration is frozen once a vCPU has run (EBUSY)"
        );
        assert_eq!(
            set_line(FwReg::StdHypBmap, 1, Err(fwregs::Error::Invalid)),
            "set std-hyp-bmap 0x1: value not supported by this VM or host (EINVAL)"
        );
    }

    #[test]
    fn small_answers() {
        assert_eq!(log_line(LevelFilter::Debug), "log level: debug");
        assert_eq!(log_line(LevelFilter::Off), "log level: off");
        assert_eq!(no_vm_line(&VmRef::Id(7)), "no VM with ID 7; list shows the VMs");
        assert_eq!(no_vm_line(&name("gone")), "no VM `gone`; list shows the VMs");
    }
}
