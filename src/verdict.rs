//! CI verdicts: how the machine's end tells what happened to its VMs. Cairn's bootarg
//! `exit=semihosting` makes Cairn end QEMU through semihosting with a status (the table in
//! the README); each VM's `cairn.*` words (`cairn.on-reset=`, `cairn.timeout=`) say what a
//! reset means and how long it may run. This module is the pure part, host-tested: the
//! words, and which status each end and the machine get. The semihosting call itself is
//! in arch::aarch64::semihosting; the run loop records each VM's end here.

use alloc::format;
use alloc::string::String;
use core::fmt;

use crate::bootargs;
use crate::event::SystemEvent;

/// Cairn's bootarg that asks for the exit status through semihosting.
pub const EXIT_ARG: &str = "exit";
pub const EXIT_SEMIHOSTING: &str = "semihosting";

/// Whether Cairn's own command line asks to end QEMU with a status (`exit=semihosting`).
pub fn wants_semihosting_exit(args: &str) -> bool {
    bootargs::value(args, EXIT_ARG) == Some(EXIT_SEMIHOSTING)
}

/// The statuses the machine ends with (README, "CI verdicts").
pub mod status {
    /// Every VM ended cleanly.
    pub const CLEAN: u8 = 0;
    /// The largest status a guest may set with EXIT_STATUS (1-63 are its own).
    pub const GUEST_MAX: u8 = 63;
    /// A VM crashed.
    pub const CRASH: u8 = 64;
    /// A VM reset with `cairn.on-reset=fail`.
    pub const RESET_FAIL: u8 = 65;
    /// A VM ran past its `cairn.timeout`.
    pub const TIMEOUT: u8 = 66;
    /// Cairn itself failed (an EL2 exception, a panic, an internal error).
    pub const CAIRN_FAILED: u8 = 70;
}

/// What a guest's reset (PSCI SYSTEM_RESET, SYSTEM_RESET2) does to its VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnReset {
    /// The VM restarts from its images (today's behaviour, the default).
    #[default]
    Restart,
    /// The VM ends cleanly, like QEMU's `-no-reboot`.
    Stop,
    /// The VM ends with status 65.
    Fail,
}

/// A VM's `cairn.*` settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmActions {
    pub on_reset: OnReset,
    /// How long the VM may run, in seconds from its start; a reset does not restart it.
    pub timeout_secs: Option<u64>,
}

/// The prefix of the words a VM's bootargs give Cairn rather than the guest.
pub const VM_WORD_PREFIX: &str = "cairn.";
/// The keys, as words (`cairn.on-reset=`) and as vm.conf keys (`on-reset`).
pub const ON_RESET_KEY: &str = "on-reset";
pub const TIMEOUT_KEY: &str = "timeout";

/// A `cairn.*` word Cairn could not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadWord(pub String);

impl fmt::Display for BadWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignoring \"{}\": expected cairn.on-reset=restart|stop|fail or cairn.timeout=<N>s|<N>m|<N>h", self.0)
    }
}

/// `restart`, `stop` or `fail`.
pub fn parse_on_reset(value: &str) -> Option<OnReset> {
    match value {
        "restart" => Some(OnReset::Restart),
        "stop" => Some(OnReset::Stop),
        "fail" => Some(OnReset::Fail),
        _ => None,
    }
}

const SECS_PER_MIN: u64 = 60;
const SECS_PER_HOUR: u64 = 60 * SECS_PER_MIN;

/// A duration as `30s`, `5m` or `2h`, in seconds; at least one second.
pub fn parse_duration(value: &str) -> Option<u64> {
    let unit = value.chars().last()?;
    let scale = match unit {
        's' => 1,
        'm' => SECS_PER_MIN,
        'h' => SECS_PER_HOUR,
        _ => return None,
    };
    let n: u64 = value[..value.len() - 1].parse().ok()?;
    n.checked_mul(scale).filter(|&s| s > 0)
}

impl VmActions {
    /// Applies one setting (`key`, `value`) as a word or a vm.conf line gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), BadWord> {
        let bad = || BadWord(format!("{VM_WORD_PREFIX}{key}={value}"));
        match key {
            ON_RESET_KEY => self.on_reset = parse_on_reset(value).ok_or_else(bad)?,
            TIMEOUT_KEY => self.timeout_secs = Some(parse_duration(value).ok_or_else(bad)?),
            _ => return Err(bad()),
        }
        Ok(())
    }
}

/// How a VM ended, as far as its status is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// SYSTEM_OFF.
    Off,
    /// SYSTEM_RESET or SYSTEM_RESET2 that `on-reset` turned into an end.
    Reset(OnReset),
    /// A crash (an exception Cairn could not hand back, an SError).
    Crash,
    /// It ran past its timeout.
    Timeout,
}

impl End {
    /// The end a VM-stopping system event means, under the VM's `on_reset`.
    pub fn of(event: &SystemEvent, on_reset: OnReset) -> End {
        match event {
            SystemEvent::Reset { .. } | SystemEvent::Reset2 { .. } => End::Reset(on_reset),
            SystemEvent::Crash { .. } => End::Crash,
            SystemEvent::Timeout { .. } => End::Timeout,
            _ => End::Off,
        }
    }

    /// What the end is called in the exit line.
    fn reason(self) -> &'static str {
        match self {
            End::Off => "powered off",
            End::Reset(OnReset::Fail) => "reset with cairn.on-reset=fail",
            End::Reset(_) => "reset with cairn.on-reset=stop",
            End::Crash => "crashed",
            End::Timeout => "ran past its cairn.timeout",
        }
    }
}

/// A VM's status: the guest's own (0-63, EXIT_STATUS) for a clean end, else the end's.
pub fn vm_status(end: End, guest_status: u8) -> u8 {
    match end {
        End::Off | End::Reset(OnReset::Stop) | End::Reset(OnReset::Restart) => guest_status,
        End::Reset(OnReset::Fail) => status::RESET_FAIL,
        End::Crash => status::CRASH,
        End::Timeout => status::TIMEOUT,
    }
}

/// The machine's verdict so far: the first VM that failed, else the last that ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    status: u8,
    line: String,
    failed: bool,
}

impl Verdict {
    pub const fn new() -> Self {
        Verdict { status: status::CLEAN, line: String::new(), failed: false }
    }

    /// Records VM `vm`'s end (`detail`: the event that ended it). The first failing VM
    /// (non-zero status) decides the machine's status; later ones change nothing.
    pub fn record(&mut self, vm: usize, end: End, guest_status: u8, detail: &dyn fmt::Display) {
        if self.failed {
            return;
        }
        let status = vm_status(end, guest_status);
        self.status = status;
        self.failed = status != status::CLEAN;
        let set = if end == End::Off && guest_status != status::CLEAN { " (its EXIT_STATUS)" } else { "" };
        self.line = format!("exit {status}: vm{vm} {}{set}: {detail}", end.reason());
    }

    /// The status the machine ends with.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The line Cairn prints before it exits (`exit 64: vm0 crashed: ...`).
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// The machine's verdict, recorded by the run loop as each VM ends.
pub static VERDICT: spin::Mutex<Verdict> = spin::Mutex::new(Verdict::new());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Crash;

    #[test]
    fn exit_semihosting_is_opt_in() {
        assert!(wants_semihosting_exit("loglevel=debug exit=semihosting"));
        assert!(!wants_semihosting_exit("loglevel=debug"));
        assert!(!wants_semihosting_exit("exit=psci"));
        assert!(!wants_semihosting_exit("xexit=semihosting"));
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("30s"), Some(30));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("2h"), Some(7200));
        for bad in ["", "s", "30", "0s", "-1s", "1.5m", "5x", "99999999999999999999s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn vm_conf_keys_set_the_same_actions() {
        let mut a = VmActions::default();
        a.set("on-reset", "stop").unwrap();
        a.set("timeout", "30s").unwrap();
        assert_eq!(a, VmActions { on_reset: OnReset::Stop, timeout_secs: Some(30) });
        assert!(a.set("vcpus", "2").is_err());
    }

    #[test]
    fn each_end_has_its_status() {
        assert_eq!(vm_status(End::Off, 0), 0);
        assert_eq!(vm_status(End::Off, 5), 5);
        assert_eq!(vm_status(End::Reset(OnReset::Stop), 0), 0);
        assert_eq!(vm_status(End::Reset(OnReset::Stop), 7), 7);
        assert_eq!(vm_status(End::Reset(OnReset::Fail), 0), status::RESET_FAIL);
        assert_eq!(vm_status(End::Crash, 5), status::CRASH);
        assert_eq!(vm_status(End::Timeout, 0), status::TIMEOUT);
        assert_eq!((status::CRASH, status::RESET_FAIL, status::TIMEOUT, status::CAIRN_FAILED), (64, 65, 66, 70));
    }

    #[test]
    fn events_map_to_ends() {
        let crash = SystemEvent::Crash { vcpu: 0, pc: 0, why: Crash::SError { esr: 0 } };
        assert_eq!(End::of(&crash, OnReset::Restart), End::Crash);
        assert_eq!(End::of(&SystemEvent::Shutdown { vcpu: 0 }, OnReset::Fail), End::Off);
        assert_eq!(End::of(&SystemEvent::Reset { vcpu: 0 }, OnReset::Fail), End::Reset(OnReset::Fail));
        let reset2 = SystemEvent::Reset2 { vcpu: 1, reset_type: 0, cookie: 0 };
        assert_eq!(End::of(&reset2, OnReset::Stop), End::Reset(OnReset::Stop));
        assert_eq!(End::of(&SystemEvent::Timeout { vcpu: 0, secs: 5 }, OnReset::Stop), End::Timeout);
    }

    #[test]
    fn the_first_failing_vm_decides() {
        let mut v = Verdict::new();
        v.record(2, End::Off, 0, &"shutdown");
        assert_eq!((v.status(), v.line()), (0, "exit 0: vm2 powered off: shutdown"));
        v.record(1, End::Crash, 0, &"crash (SError)");
        assert_eq!((v.status(), v.line()), (64, "exit 64: vm1 crashed: crash (SError)"));
        v.record(0, End::Timeout, 0, &"timeout");
        v.record(3, End::Off, 0, &"shutdown");
        assert_eq!(v.status(), 64, "a later failure or clean end changes nothing");
        let mut v = Verdict::new();
        v.record(0, End::Off, 5, &"shutdown");
        assert_eq!((v.status(), v.line()), (5, "exit 5: vm0 powered off (its EXIT_STATUS): shutdown"));
        let mut v = Verdict::new();
        v.record(0, End::Reset(OnReset::Fail), 0, &"reset");
        assert_eq!(v.line(), "exit 65: vm0 reset with cairn.on-reset=fail: reset");
    }
}
