//! The management prompt's commands carried out (crate::prompt reads and parses them):
//! what `list`, `info`, `events`, `get` and `log` answer, from the VMs as they stand, and
//! which [`Control`] `stop`, `start`, `reset`, `pause` and `resume` ask of a VM: the run
//! loop carries that out (run::control), as only it can stop vCPUs; so are `save` and
//! `restore`; `set` writes a firmware register under KVM's rules.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::hw::{Hardware, Hw};
use crate::prompt::{self, Command, FwReg, VmRef};
use crate::vm::{self, Vm};

/// What a prompt command asks of a VM's life, for the run loop to carry out.
pub enum Control {
    /// Stop every vCPU and turn the VM off, as its SYSTEM_OFF would.
    Stop(Arc<Vm>),
    /// Stop it and boot it again from its pristine images, as its SYSTEM_RESET would.
    Reset(Arc<Vm>),
    /// Boot a VM that is off again from its pristine images.
    Start(Arc<Vm>),
    /// Keep every vCPU out of the guest from its next exit on.
    Pause(Arc<Vm>),
    /// Let a paused VM run again.
    Resume(Arc<Vm>),
    /// Take a snapshot of the VM into its slot.
    Save(Arc<Vm>),
    /// Put the VM back as its snapshot had it.
    Restore(Arc<Vm>),
}

/// The answer to one line typed at the prompt: lines of text (no line endings; none for
/// an empty line), or a [`Control`] whose outcome is the answer.
pub enum Answer {
    Lines(Vec<String>),
    Control(Control),
}

/// Answers one line typed at the prompt.
pub fn answer(line: &str) -> Answer {
    match prompt::parse(line) {
        Ok(Command::Stop(r)) => control(&r, |vm| (!vm.is_gone()).then(|| Control::Stop(vm.clone())), "is off already"),
        Ok(Command::Start(r)) => control(&r, |vm| vm.is_gone().then(|| Control::Start(vm.clone())), "is running"),
        Ok(Command::Reset(r)) => control(
            &r,
            |vm| Some(if vm.is_gone() { Control::Start(vm.clone()) } else { Control::Reset(vm.clone()) }),
            "",
        ),
        Ok(Command::Pause(r)) => control(
            &r,
            |vm| (!vm.is_gone() && !vm.is_paused()).then(|| Control::Pause(vm.clone())),
            "is off or paused already",
        ),
        Ok(Command::Resume(r)) => {
            control(&r, |vm| vm.is_paused().then(|| Control::Resume(vm.clone())), "is not paused")
        }
        Ok(Command::Save(r)) => control(&r, |vm| savable(vm).map(|()| Control::Save(vm.clone())), ""),
        Ok(Command::Restore(r)) => control(
            &r,
            |vm| vm.snapshot.lock().is_some().then(|| Control::Restore(vm.clone())),
            "has no snapshot: save it first",
        ),
        Ok(command) => Answer::Lines(run(command)),
        Err(e) => Answer::Lines(prompt::error_lines(&e)),
    }
}

/// The control `ask` makes of the VM `r` names, or the line saying why there is none
/// (`refusal` follows the VM's name).
fn control(r: &VmRef, ask: impl FnOnce(&Arc<Vm>) -> Option<Control>, refusal: &str) -> Answer {
    match find(r) {
        None => Answer::Lines(alloc::vec![prompt::no_vm_line(r)]),
        Some(vm) => match ask(&vm) {
            Some(c) => Answer::Control(c),
            None if refusal.is_empty() => Answer::Lines(alloc::vec![why_not_save(&vm)]),
            None => Answer::Lines(alloc::vec![format!("{} {refusal}", vm.name)]),
        },
    }
}

/// Whether `vm` can be saved: it runs (or is paused) and has a slot.
fn savable(vm: &Vm) -> Option<()> {
    (!vm.is_gone() && vm.snapshot_slot.is_some()).then_some(())
}

fn why_not_save(vm: &Vm) -> String {
    if vm.is_gone() {
        format!("{} is off: there is nothing to save", vm.name)
    } else {
        format!(
            "{} has no snapshot slot: give it one with cairn.snapshot=on (as large as its RAM) or cairn.snapshot=SIZE",
            vm.name
        )
    }
}

fn run(command: Command) -> Vec<String> {
    match command {
        Command::Help => prompt::help_lines(),
        Command::List => prompt::list_lines(&vm::every_vm().iter().map(|vm| vm.summary()).collect::<Vec<_>>()),
        Command::Info(r) => on_vm(&r, |vm| {
            refresh_pcs(vm);
            vm.info_lines()
        }),
        Command::Events(Some(r)) => on_vm(&r, |vm| events(core::slice::from_ref(vm))),
        Command::Events(None) => events(&vm::every_vm()),
        Command::Get(r, reg) => on_vm(&r, |vm| get(vm, reg)),
        Command::Log(level) => {
            log::set_max_level(level);
            alloc::vec![prompt::log_line(level)]
        }
        // Answered as controls, by `answer`.
        Command::Stop(_)
        | Command::Start(_)
        | Command::Reset(_)
        | Command::Pause(_)
        | Command::Resume(_)
        | Command::Save(_)
        | Command::Restore(_) => Vec::new(),
        Command::Set(r, reg, value) => on_vm(&r, |vm| set(vm, reg, value)),
    }
}

/// Runs `f` on the VM `r` names (by ID or name), or says there is none.
fn on_vm(r: &VmRef, f: impl FnOnce(&Arc<Vm>) -> Vec<String>) -> Vec<String> {
    match find(r) {
        Some(vm) => f(&vm),
        None => alloc::vec![prompt::no_vm_line(r)],
    }
}

/// `events`: each VM's log, under its name.
fn events(vms: &[Arc<Vm>]) -> Vec<String> {
    // Each log is read under its own lock, one VM at a time.
    let mut out = Vec::new();
    for vm in vms {
        out.extend(vm.with_event_log(|log| prompt::events_lines(&[(vm.name.as_str(), log)])));
    }
    if out.is_empty() {
        out = prompt::events_lines(&[]);
    }
    out
}

fn find(r: &VmRef) -> Option<Arc<Vm>> {
    vm::every_vm().into_iter().find(|vm| match r {
        VmRef::Id(id) => vm.id == *id,
        VmRef::Name(name) => vm.name == *name,
    })
}

fn get(vm: &Vm, reg: FwReg) -> Vec<String> {
    match vm.firmware_reg(reg) {
        Ok(value) => alloc::vec![prompt::get_line(reg, value)],
        Err(e) => alloc::vec![format!("{}: cannot read {}: {e}", vm.name, reg.name())],
    }
}

/// `set`: with KVM's rules (crate::fwregs): once the VM has run, a register changes only
/// while it is off (stopped, to be started again); a value Cairn cannot honour is refused.
fn set(vm: &Vm, reg: FwReg, value: u64) -> Vec<String> {
    let result = vm.firmware_regs(|regs| regs.set(reg.id(), value));
    let mut out = alloc::vec![prompt::set_line(reg, value, result)];
    if result.is_ok() && vm.is_gone() {
        out.push(format!("{} has it from its next start", vm.name));
    }
    out
}

/// Has every running vCPU of `vm` note where it is: a kick makes it exit, and the exit
/// notes its PC. Waits a little for them (a vCPU that does not exit in time shows its
/// previous PC).
fn refresh_pcs(vm: &Vm) {
    for v in vm.vcpus.iter().filter(|v| v.state() == crate::vcpu::PowerState::Runnable) {
        Hw::kick(v.pcpu);
    }
    Hw::settle();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(line: &str) -> Vec<String> {
        match answer(line) {
            Answer::Lines(lines) => lines,
            Answer::Control(_) => panic!("{line:?} asked for a control"),
        }
    }

    #[test]
    fn every_line_gets_an_answer_and_mistakes_get_the_usage() {
        assert!(lines("").is_empty(), "an empty line just prompts again");
        assert!(lines("help").iter().any(|l| l.starts_with("list")));
        let unknown = lines("frobnicate");
        assert!(unknown[0].contains("unknown command"), "{unknown:?}");
        let missing = lines("info");
        assert!(missing.iter().any(|l| l.starts_with("usage: info VM")), "{missing:?}");
        assert!(lines("info nosuchvm")[0].starts_with("no VM `nosuchvm`"));
        assert!(lines("stop nosuchvm")[0].starts_with("no VM `nosuchvm`"));
        assert!(lines("list")[0].starts_with("Name"));
        assert_eq!(lines("log debug"), ["log level: debug"]);
        assert!(lines("save nosuchvm")[0].starts_with("no VM `nosuchvm`"));
    }

    #[test]
    fn save_needs_a_running_vm_with_a_slot() {
        let vm = crate::vm::testing::vm(crate::smccc::psci::Version::V1_1, 1);
        assert_eq!(savable(&vm), None);
        let why = why_not_save(&vm);
        assert!(why.contains("has no snapshot slot") && why.contains("cairn.snapshot=on"), "{why}");
        crate::vm::destroy(&vm);
        assert_eq!(why_not_save(&vm), "vm0 is off: there is nothing to save");
    }

    #[test]
    fn set_follows_kvms_rules_and_a_stopped_vm_takes_a_new_psci_version() {
        use crate::smccc::call::VmFirmware;
        use crate::smccc::psci::Version;
        let vm = crate::vm::testing::vm(Version::V1_1, 1);
        vm.firmware.lock().mark_run();
        let busy = set(&vm, FwReg::PsciVersion, 0x1_0000);
        assert!(busy[0].contains("EBUSY"), "a VM that has run keeps its version: {busy:?}");
        crate::vm::destroy(&vm);
        let done = set(&vm, FwReg::PsciVersion, 0x1_0000);
        assert!(done[0].starts_with("psci-version = 0x10000") && done[1].contains("next start"), "{done:?}");
        assert_eq!(vm.psci_version(), Version::V1_0);
        let refused = set(&vm, FwReg::PsciVersion, 0x1_0002);
        assert!(refused[0].contains("EINVAL"), "a version Cairn does not implement: {refused:?}");
    }
}
