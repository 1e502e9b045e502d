//! System events: what happened to a whole VM, recorded with its type and flags and
//! printed as one line each (`vmN: system event: <event>`), in the spirit of KVM's
//! `KVM_EXIT_SYSTEM_EVENT` (shutdown, reset, suspend, wakeup, crash).

use alloc::collections::VecDeque;
use core::fmt;

/// Why Cairn stops a VM whose guest it cannot let continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// The guest's own exception vector is not in its memory: every fault it takes would
    /// fault again at the vector, forever.
    VectorUnmapped { vbar: u64 },
    /// An SError from the guest that Cairn cannot attribute or contain.
    SError { esr: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    /// PSCI SYSTEM_OFF.
    Shutdown { vcpu: usize },
    /// PSCI SYSTEM_RESET.
    Reset { vcpu: usize },
    /// PSCI SYSTEM_RESET2 with its reset type and cookie (DEN0022 §5.10).
    Reset2 { vcpu: usize, reset_type: u32, cookie: u64 },
    /// PSCI SYSTEM_SUSPEND: the VM sleeps until a wake-up event.
    Suspend { vcpu: usize, entry: u64 },
    /// The end of a SYSTEM_SUSPEND: the interrupt that ended it.
    Wakeup { vcpu: usize, intid: u32, entry: u64 },
    /// A guest fault Cairn cannot handle: the VM is stopped.
    Crash { vcpu: usize, pc: u64, why: Crash },
    /// The VM ran past its `cairn.timeout` (`secs`): it is stopped. `vcpu` is the one
    /// whose exit noticed.
    Timeout { vcpu: usize, secs: u64 },
    /// `stop` at Cairn's prompt: every vCPU stopped, the VM off.
    Stop,
    /// `reset` or `start` at Cairn's prompt: the VM boots again from its images.
    Restart,
    /// `restore` at Cairn's prompt: the VM is back as its snapshot had it.
    Restore,
}

impl SystemEvent {
    /// The event's type, as its line starts.
    pub fn kind(&self) -> &'static str {
        match self {
            SystemEvent::Shutdown { .. } => "shutdown",
            SystemEvent::Reset { .. } => "reset",
            SystemEvent::Reset2 { .. } => "reset2",
            SystemEvent::Suspend { .. } => "suspend",
            SystemEvent::Wakeup { .. } => "wakeup",
            SystemEvent::Crash { .. } => "crash",
            SystemEvent::Timeout { .. } => "timeout",
            SystemEvent::Stop => "stop",
            SystemEvent::Restart => "restart",
            SystemEvent::Restore => "restore",
        }
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crash::VectorUnmapped { vbar } => {
                write!(f, "exception vector at VBAR_EL1 {vbar:#x} is outside guest memory")
            }
            Crash::SError { esr } => write!(f, "SError from the guest, ESR {esr:#x}"),
        }
    }
}

impl fmt::Display for SystemEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind())?;
        match *self {
            SystemEvent::Shutdown { vcpu } => write!(f, "(PSCI SYSTEM_OFF) from vcpu{vcpu}"),
            SystemEvent::Reset { vcpu } => write!(f, "(PSCI SYSTEM_RESET) from vcpu{vcpu}"),
            SystemEvent::Reset2 { vcpu, reset_type, cookie } => {
                write!(f, "(PSCI SYSTEM_RESET2 type {reset_type:#x} cookie {cookie:#x}) from vcpu{vcpu}")
            }
            SystemEvent::Suspend { vcpu, entry } => {
                write!(f, "(PSCI SYSTEM_SUSPEND, resume at {entry:#x}) from vcpu{vcpu}")
            }
            SystemEvent::Wakeup { vcpu, intid, entry } => {
                write!(f, "by interrupt {intid} (vcpu{vcpu} resumes at {entry:#x})")
            }
            SystemEvent::Crash { vcpu, pc, why } => write!(f, "({why}, PC {pc:#x}) from vcpu{vcpu}"),
            SystemEvent::Timeout { vcpu, secs } => write!(f, "(ran past cairn.timeout={secs}s) seen by vcpu{vcpu}"),
            SystemEvent::Stop | SystemEvent::Restart | SystemEvent::Restore => write!(f, "(from Cairn's prompt)"),
        }
    }
}

/// How many of a VM's latest events its record keeps.
pub const RECENT_EVENTS: usize = 32;

/// A VM's record of system events: how many there have been, and the latest
/// [`RECENT_EVENTS`]. Bounded, because a guest can raise events without end (suspend and
/// wake in a loop) and Cairn's heap must not grow with them.
#[derive(Debug, Default)]
pub struct EventLog {
    total: u64,
    recent: VecDeque<SystemEvent>,
}

impl EventLog {
    pub fn new() -> Self {
        EventLog { total: 0, recent: VecDeque::with_capacity(RECENT_EVENTS) }
    }

    pub fn push(&mut self, event: SystemEvent) {
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
        self.total += 1;
    }

    /// Every event so far, counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The latest events, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &SystemEvent> {
        self.recent.iter()
    }
}

/// The VM's epitaph: `gone after N system events: a, b, c` (with `the last 32:` before the
/// list when older events have been dropped).
impl fmt::Display for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.total == 1 { "" } else { "s" };
        write!(f, "gone after {} system event{plural}: ", self.total)?;
        if self.total > self.recent.len() as u64 {
            write!(f, "the last {}: ", self.recent.len())?;
        }
        for (n, event) in self.recent.iter().enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            write!(f, "{sep}{}", event.kind())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn each_event_is_one_readable_line_with_its_flags() {
        let lines = [
            (SystemEvent::Shutdown { vcpu: 0 }, "shutdown (PSCI SYSTEM_OFF) from vcpu0"),
            (SystemEvent::Reset { vcpu: 1 }, "reset (PSCI SYSTEM_RESET) from vcpu1"),
            (
                SystemEvent::Reset2 { vcpu: 3, reset_type: 0x8000_0000, cookie: 0xc0ffee00 },
                "reset2 (PSCI SYSTEM_RESET2 type 0x80000000 cookie 0xc0ffee00) from vcpu3",
            ),
            (
                SystemEvent::Suspend { vcpu: 0, entry: 0x4020_0000 },
                "suspend (PSCI SYSTEM_SUSPEND, resume at 0x40200000) from vcpu0",
            ),
            (
                SystemEvent::Wakeup { vcpu: 0, intid: 34, entry: 0x4020_0000 },
                "wakeup by interrupt 34 (vcpu0 resumes at 0x40200000)",
            ),
            (
                SystemEvent::Crash { vcpu: 2, pc: 0x20_0000_0200, why: Crash::VectorUnmapped { vbar: 0x20_0000_0000 } },
                "crash (exception vector at VBAR_EL1 0x2000000000 is outside guest memory, PC 0x2000000200) from vcpu2",
            ),
            (SystemEvent::Timeout { vcpu: 0, secs: 5 }, "timeout (ran past cairn.timeout=5s) seen by vcpu0"),
        ];
        for (event, line) in lines {
            assert_eq!(event.to_string(), line);
            assert!(!line.contains('\n'));
        }
        assert_eq!(SystemEvent::Reset2 { vcpu: 0, reset_type: 0, cookie: 0 }.kind(), "reset2");
    }

    #[test]
    fn the_record_keeps_the_count_and_only_the_latest_events() {
        let mut log = EventLog::new();
        log.push(SystemEvent::Reset { vcpu: 0 });
        assert_eq!(log.to_string(), "gone after 1 system event: reset");
        log.push(SystemEvent::Shutdown { vcpu: 1 });
        assert_eq!(log.to_string(), "gone after 2 system events: reset, shutdown");
        for n in 0..100_000 {
            log.push(SystemEvent::Suspend { vcpu: 0, entry: n });
            log.push(SystemEvent::Wakeup { vcpu: 0, intid: 27, entry: n });
        }
        assert_eq!(log.total(), 200_002);
        assert_eq!(log.recent().count(), RECENT_EVENTS);
        assert_eq!(log.recent().last(), Some(&SystemEvent::Wakeup { vcpu: 0, intid: 27, entry: 99_999 }));
        assert!(log.to_string().starts_with("gone after 200002 system events: the last 32: suspend, wakeup, "));
    }
}
