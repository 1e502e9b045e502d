//! Virtual CPUs: the [`Vcpu`] type with its power state under its own lock, the
//! power-state machine ([`power`]) and the saved-state format ([`saved`]), all pure and
//! host-tested. The exit policy is `crate::policy`, the run loop `crate::run`.
//!
//! Every vCPU is pinned 1:1 to a physical CPU. A vCPU's power state changes only under its
//! own lock, and a vCPU (re)starts only on its own physical CPU.

pub mod power;
pub mod saved;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alloc::boxed::Box;

use power::Power;
pub use power::Wait;
pub use power::{PowerState, Start};
use saved::VcpuState;

/// How a look at a waiting vCPU ended.
pub enum WaitEnd<W> {
    /// A system event stopped it meanwhile.
    Stopped,
    /// It woke, for this reason.
    Woken(W),
    /// It waits on.
    Waiting,
}

pub struct Vcpu {
    pub index: usize,
    /// The MPIDR affinity the guest sees (VMPIDR_EL2).
    pub mpidr: u64,
    /// The physical CPU (logical number) it is pinned to.
    pub pcpu: usize,
    pub(crate) power: spin::Mutex<Power>,
    /// `Power::must_leave_guest`, republished after every change under the lock, so the
    /// exit path can read it without taking the lock. A change that sets it is followed
    /// by a kick, which makes the vCPU exit and read it.
    leave: AtomicBool,
    /// Set while the physical CPU idles at EL2 with no guest context live: the
    /// acknowledgement a system event waits for.
    parked: AtomicBool,
    /// The guest PC at the vCPU's latest interrupt exit or wait, for the console's `info`
    /// (which kicks the vCPU to refresh it).
    last_pc: AtomicU64,
    /// Set while a save at Cairn's prompt waits for this vCPU's state, which only its own
    /// CPU can read.
    capture: AtomicBool,
    /// The state a restore gives it, taken by its CPU at its next start.
    restore_from: spin::Mutex<Option<Box<VcpuState>>>,
    /// Set when an SDEI event may be ready for it: its CPU looks before it next enters
    /// the guest, and a wait for a wake-up event ends.
    sdei_ready: AtomicBool,
}

impl Vcpu {
    pub fn new(index: usize, mpidr: u64, pcpu: usize) -> Self {
        Vcpu {
            index,
            mpidr,
            pcpu,
            power: spin::Mutex::new(Power::new()),
            leave: AtomicBool::new(true),
            parked: AtomicBool::new(false),
            last_pc: AtomicU64::new(0),
            capture: AtomicBool::new(false),
            restore_from: spin::Mutex::new(None),
            sdei_ready: AtomicBool::new(false),
        }
    }

    /// Notes that an SDEI event may be ready for it.
    pub fn set_sdei_ready(&self) {
        self.sdei_ready.store(true, Ordering::SeqCst);
    }

    #[inline(always)]
    pub fn sdei_ready(&self) -> bool {
        self.sdei_ready.load(Ordering::Relaxed)
    }

    /// Takes the note that an SDEI event may be ready.
    pub fn take_sdei_ready(&self) -> bool {
        self.sdei_ready.swap(false, Ordering::SeqCst)
    }

    /// Asks the vCPU's CPU for its state (a save); its CPU answers while it holds it.
    pub fn request_capture(&self) {
        self.capture.store(true, Ordering::SeqCst);
    }

    #[inline(always)]
    pub fn capture_requested(&self) -> bool {
        self.capture.load(Ordering::Relaxed)
    }

    /// Takes the request for its state, if there is one.
    pub fn take_capture_request(&self) -> bool {
        self.capture.swap(false, Ordering::SeqCst)
    }

    /// The state its CPU enters it from at its next start (a restore).
    pub fn set_restore(&self, state: Box<VcpuState>) {
        *self.restore_from.lock() = Some(state);
    }

    pub fn take_restore(&self) -> Option<Box<VcpuState>> {
        self.restore_from.lock().take()
    }

    /// Notes where the guest is (an interrupt exit, a wait).
    pub fn note_pc(&self, pc: u64) {
        self.last_pc.store(pc, Ordering::Relaxed);
    }

    /// The guest PC last noted.
    pub fn last_pc(&self) -> u64 {
        self.last_pc.load(Ordering::Relaxed)
    }

    /// Runs `f` on the power state under the lock, then republishes `leave`.
    pub(crate) fn with_power<R>(&self, f: impl FnOnce(&mut Power) -> R) -> R {
        let mut p = self.power.lock();
        let r = f(&mut p);
        self.leave.store(p.must_leave_guest(), Ordering::SeqCst);
        r
    }

    pub fn state(&self) -> PowerState {
        self.power.lock().state()
    }

    /// CPU_ON (power::Power::power_on) under this vCPU's lock. `halting` is the VM's
    /// system-event flag, read under the lock, so a racing CPU_ON either lands before the
    /// event stops this vCPU or sees the flag.
    pub fn power_on(&self, start: Start, halting: &AtomicBool) -> Result<(), i64> {
        self.with_power(|p| p.power_on(start, halting.load(Ordering::SeqCst)))
    }

    /// Stops the vCPU; it leaves the guest at its next exit.
    pub fn power_off(&self) {
        self.with_power(|p| p.power_off());
    }

    /// Starts the vCPU again after a VM reset.
    pub fn restart(&self, start: Start) {
        self.with_power(|p| p.restart(start));
    }

    pub fn must_leave_guest(&self) -> bool {
        self.leave.load(Ordering::SeqCst)
    }

    pub fn take_start(&self) -> Option<Start> {
        self.with_power(|p| p.take_start())
    }

    /// Begins a wait (power::Power::begin_wait); false if the vCPU must leave instead.
    pub fn begin_wait(&self, how: Wait) -> bool {
        self.with_power(|p| p.begin_wait(how))
    }

    /// Ends a wait if `woken`, told whether a wake-up request (CPU_ON on a suspended vCPU)
    /// is pending, names a reason to wake, all under the lock.
    pub fn end_wait_if<W>(&self, woken: impl FnOnce(bool) -> Option<W>) -> WaitEnd<W> {
        let mut p = self.power.lock();
        // (end_wait leaves must_leave_guest as it was: no republish needed.)
        // Stopped, or stopped and started again (a reset or a restore from Cairn's prompt
        // while it waited): the wait's context is finished either way.
        if p.must_leave_guest() {
            return WaitEnd::Stopped;
        }
        match woken(p.wake_requested()) {
            Some(w) => {
                p.end_wait();
                WaitEnd::Woken(w)
            }
            None => WaitEnd::Waiting,
        }
    }

    /// Whether the vCPU's physical CPU idles with no guest context live.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    pub fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::SeqCst);
    }
}
