//! The management prompt's commands carried out (crate::prompt reads and parses them):
//! what `list`, `info`, `events`, `get` and `log` answer, from the VMs as they stand.
//! Commands that change a VM (pause, resume, reset, stop, start, save, restore, set) are
//! recognised but answered as not available yet, in one line each.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::hw::{Hardware, Hw};
use crate::prompt::{self, Command, FwReg, VmRef};
use crate::vm::{self, Vm};

/// The answer to one line typed at the prompt, a line of text each (no line endings):
/// nothing for an empty line, one line or more for anything else.
pub fn answer(line: &str) -> Vec<String> {
    match prompt::parse(line) {
        Ok(command) => run(command),
        Err(e) => prompt::error_lines(&e),
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
        Command::Pause(r)
        | Command::Resume(r)
        | Command::Reset(r)
        | Command::Stop(r)
        | Command::Start(r)
        | Command::Save(r)
        | Command::Restore(r)
        | Command::Set(r, _, _) => on_vm(&r, |_| alloc::vec![String::from("not available in this version of Cairn")]),
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

    #[test]
    fn every_line_gets_an_answer_and_mistakes_get_the_usage() {
        assert!(answer("").is_empty(), "an empty line just prompts again");
        assert!(answer("help").iter().any(|l| l.starts_with("list")));
        let unknown = answer("frobnicate");
        assert!(unknown[0].contains("unknown command"), "{unknown:?}");
        let missing = answer("info");
        assert!(missing.iter().any(|l| l.starts_with("usage: info VM")), "{missing:?}");
        assert!(answer("info nosuchvm")[0].starts_with("no VM `nosuchvm`"));
        assert!(answer("list")[0].starts_with("Name"));
        assert_eq!(answer("log debug"), ["log level: debug"]);
    }
}
