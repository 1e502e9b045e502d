//! Every kind of exit through the real policy, on a real [`Vm`] over the fake machine:
//! the Action each produces, and what it changed (power states, kicks, the distributor).

use super::action::{Action, Injection, Resume, Writes};
use super::on_exit;
use crate::arch::aarch64::access::MmioAccess;
use crate::arch::aarch64::esr::Esr;
use crate::arch::aarch64::exit::{Conduit, Exit, SysRegId, ICC_SGI1R_EL1};
use crate::arch::aarch64::frame::TrapFrame;
use crate::event::{Crash, SystemEvent};
use crate::hw::{fake::Fake, Hardware, Hw};
use crate::smccc::psci::{fid, ret, Version};
use crate::vcpu::{PowerState, Start};
use crate::verdict::OnReset;
use crate::vm::testing::{self, GICD, GICR_BASE, RAM, UART, UART_SPI};
use crate::vm::Vm;

const ENTRY: u64 = 0x4800_0000;
/// PSTATE of a guest at EL1h.
const EL1H: u64 = 0b0101;
/// The distributor's TYPER, CTLR and a redistributor's SGI_base ISENABLER0 (IHI 0069H
/// §12.9, §12.11).
const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICR_SGI_ISENABLER0: u64 = 0x1_0100;
/// ICC_SGI1R_EL1: INTID in bits [27:24], the target list in [15:0].
const SGI1R_INTID_SHIFT: u64 = 24;

/// Two vCPUs, the boot one running: the usual caller is vCPU 0.
fn two_vcpus() -> Vm {
    testing::vm_with_on(Version::V1_1, &[true, false])
}

fn call(x: &[u64]) -> TrapFrame {
    let mut frame = TrapFrame::new(0x4000_1000, EL1H);
    frame.x[..x.len()].copy_from_slice(x);
    frame
}

fn hvc(vm: &Vm, x: &[u64]) -> Action {
    on_exit(vm, &vm.vcpus[0], &call(x), Exit::Hypercall { conduit: Conduit::Hvc, imm: 0 })
}

fn returns(values: &[u64]) -> Action {
    Action::Resume(Resume { writes: Writes::from_x0(values), step: true, refill: false })
}

fn load(ipa: u64, register: usize) -> MmioAccess {
    MmioAccess { ipa, size: 4, register, sign_extend: false, sixty_four: false, write: None }
}

fn store(ipa: u64, value: u64) -> MmioAccess {
    MmioAccess { write: Some(value), ..load(ipa, 1) }
}

fn mmio(vm: &Vm, access: MmioAccess) -> Action {
    on_exit(vm, &vm.vcpus[0], &call(&[]), Exit::Mmio { access, va: Some(0x1234), len: 4 })
}

#[test]
fn a_hypercall_returns_its_results_through_one_write_for_hvc_and_smc() {
    let vm = two_vcpus();
    assert_eq!(hvc(&vm, &[fid::PSCI_VERSION.into()]), returns(&[0x1_0001]));
    let smc = Exit::Hypercall { conduit: Conduit::Smc, imm: 0 };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[fid::PSCI_VERSION.into()]), smc), returns(&[0x1_0001]));
    // Unknown function IDs and SMC with a non-zero immediate: NOT_SUPPORTED, never skipped.
    assert_eq!(hvc(&vm, &[0xC600_0000]), returns(&[ret::NOT_SUPPORTED as u64]));
    let smc_imm = Exit::Hypercall { conduit: Conduit::Smc, imm: 1 };
    let answer = on_exit(&vm, &vm.vcpus[0], &call(&[fid::PSCI_VERSION.into()]), smc_imm);
    assert_eq!(answer, returns(&[ret::NOT_SUPPORTED as u64]));
}

#[test]
fn cpu_on_starts_the_target_and_kicks_its_cpu() {
    let vm = two_vcpus();
    Fake::take_kicks();
    assert_eq!(hvc(&vm, &[fid::CPU_ON_64.into(), 1, ENTRY, 7]), returns(&[ret::SUCCESS as u64]));
    assert_eq!(vm.vcpus[1].state(), PowerState::Runnable);
    assert_eq!(Fake::take_kicks(), [1]);
    assert_eq!(vm.vcpus[1].take_start(), Some(Start { entry: ENTRY, context: 7, big_endian: false }));
    // The target now counts as on, and a second CPU_ON finds it so.
    assert_eq!(hvc(&vm, &[fid::CPU_ON_64.into(), 1, ENTRY, 7]), returns(&[ret::ALREADY_ON as u64]));
}

#[test]
fn cpu_on_checks_target_before_entry_point() {
    let vm = two_vcpus();
    let outside = RAM.end();
    assert_eq!(hvc(&vm, &[fid::CPU_ON_64.into(), 5, outside, 0]), returns(&[ret::INVALID_PARAMETERS as u64]));
    assert_eq!(hvc(&vm, &[fid::CPU_ON_64.into(), 1, outside, 0]), returns(&[ret::INVALID_ADDRESS as u64]));
    assert_eq!(hvc(&vm, &[fid::CPU_ON_64.into(), 1, ENTRY + 2, 0]), returns(&[ret::INVALID_ADDRESS as u64]));
    assert_eq!(vm.vcpus[1].state(), PowerState::Stopped, "a refused CPU_ON starts nothing");
}

#[test]
fn a_big_endian_caller_starts_its_target_big_endian() {
    let vm = two_vcpus();
    Fake::set_big_endian(true);
    hvc(&vm, &[fid::CPU_ON_64.into(), 1, ENTRY, 0]);
    Fake::set_big_endian(false);
    assert!(vm.vcpus[1].take_start().expect("started").big_endian);
}

#[test]
fn power_calls_become_their_actions() {
    let vm = two_vcpus();
    assert_eq!(hvc(&vm, &[fid::CPU_OFF.into()]), Action::PowerOff);
    assert_eq!(hvc(&vm, &[fid::CPU_SUSPEND_64.into(), 0]), Action::Halt { then: Writes::from_x0(&[0]) });
    let powerdown = 1 << 16;
    let resume = Start { entry: ENTRY, context: 9, big_endian: false };
    assert_eq!(hvc(&vm, &[fid::CPU_SUSPEND_64.into(), powerdown, ENTRY, 9]), Action::Suspend { resume, system: false });
    assert_eq!(hvc(&vm, &[fid::SYSTEM_SUSPEND_64.into(), ENTRY, 9]), Action::Suspend { resume, system: true });
    assert_eq!(hvc(&vm, &[fid::SYSTEM_OFF.into()]), Action::StopVm(SystemEvent::Shutdown { vcpu: 0 }));
    assert_eq!(hvc(&vm, &[fid::SYSTEM_RESET.into()]), Action::ResetVm(SystemEvent::Reset { vcpu: 0 }));
    let reset2 = SystemEvent::Reset2 { vcpu: 0, reset_type: 0x8000_0000, cookie: 5 };
    assert_eq!(hvc(&vm, &[fid::SYSTEM_RESET2_64.into(), 0x8000_0000, 5]), Action::ResetVm(reset2));
}

#[test]
fn on_reset_stop_or_fail_makes_a_reset_the_vms_end() {
    for (on_reset, restarts) in [(OnReset::Restart, true), (OnReset::Stop, false), (OnReset::Fail, false)] {
        let mut vm = two_vcpus();
        vm.actions.on_reset = on_reset;
        let reset = SystemEvent::Reset { vcpu: 0 };
        let reset2 = SystemEvent::Reset2 { vcpu: 0, reset_type: 0, cookie: 0 };
        let (a, b) = (hvc(&vm, &[fid::SYSTEM_RESET.into()]), hvc(&vm, &[fid::SYSTEM_RESET2_64.into(), 0, 0]));
        if restarts {
            assert_eq!((a, b), (Action::ResetVm(reset), Action::ResetVm(reset2)));
        } else {
            assert_eq!((a, b), (Action::StopVm(reset), Action::StopVm(reset2)), "{on_reset:?}");
        }
        assert_eq!(hvc(&vm, &[fid::SYSTEM_OFF.into()]), Action::StopVm(SystemEvent::Shutdown { vcpu: 0 }));
    }
}

#[test]
fn system_suspend_is_denied_while_another_vcpu_is_on() {
    let vm = testing::vm_with_on(Version::V1_1, &[true, true]);
    assert_eq!(hvc(&vm, &[fid::SYSTEM_SUSPEND_64.into(), ENTRY, 0]), returns(&[ret::DENIED as u64]));
}

#[test]
fn wfi_halts_and_wfe_steps_over() {
    let vm = two_vcpus();
    let at = |wfe| on_exit(&vm, &vm.vcpus[0], &call(&[]), Exit::WaitFor { wfe, len: 4 });
    assert_eq!(at(false), Action::Halt { then: Writes::NONE });
    assert_eq!(at(true), Action::Resume(Resume::STEP));
}

#[test]
fn a_device_load_reads_into_its_register_and_steps() {
    let vm = two_vcpus();
    let typer = Hw::with_gic(|hw| vm.vgic.lock().dist_access(0, GICD_TYPER, 4, None, hw)).unwrap();
    let action = mmio(&vm, load(GICD.base + GICD_TYPER, 3));
    let writes = Writes::one(Some((3, typer.0)));
    assert_eq!(action, Action::Resume(Resume { writes, step: true, refill: false }));
    assert_ne!(typer.0, 0);
}

#[test]
fn a_store_that_makes_an_interrupt_deliverable_refills_the_writers_list_registers() {
    let vm = two_vcpus();
    // Enable both groups, then SGI 1 on vCPU 0 through its redistributor.
    mmio(&vm, store(GICD.base + GICD_CTLR, 0b11));
    let enable = mmio(&vm, store(GICR_BASE + GICR_SGI_ISENABLER0, 1 << 1));
    assert!(matches!(enable, Action::Resume(Resume { step: true, writes: Writes::NONE, .. })));
    let to_self = 1 << SGI1R_INTID_SHIFT | 1;
    let sgi = Exit::SysReg { reg: ICC_SGI1R_EL1, rt: 2, write: Some(to_self) };
    Fake::take_kicks();
    let action = on_exit(&vm, &vm.vcpus[0], &call(&[]), sgi);
    assert_eq!(action, Action::Resume(Resume { writes: Writes::NONE, step: true, refill: true }));
    assert!(Fake::take_kicks().is_empty(), "no other vCPU to kick");
}

#[test]
fn an_sgi_to_another_vcpu_kicks_its_cpu() {
    let vm = testing::vm_with_on(Version::V1_1, &[true, true]);
    mmio(&vm, store(GICD.base + GICD_CTLR, 0b11));
    let frame_1 = GICR_BASE + crate::vgic::dist::GICR_FRAME_SIZE;
    on_exit(
        &vm,
        &vm.vcpus[1],
        &call(&[]),
        Exit::Mmio { access: store(frame_1 + GICR_SGI_ISENABLER0, 1), va: None, len: 4 },
    );
    Fake::take_kicks();
    let to_vcpu1 = 1 << 1;
    let sgi = Exit::SysReg { reg: ICC_SGI1R_EL1, rt: 2, write: Some(to_vcpu1) };
    let action = on_exit(&vm, &vm.vcpus[0], &call(&[]), sgi);
    assert_eq!(action, Action::Resume(Resume { writes: Writes::NONE, step: true, refill: false }));
    assert_eq!(Fake::take_kicks(), [1]);
}

#[test]
fn reading_an_sgi_register_gives_zero_and_other_trapped_registers_are_undefined() {
    let vm = two_vcpus();
    let read = Exit::SysReg { reg: ICC_SGI1R_EL1, rt: 4, write: None };
    let writes = Writes::one(Some((4, 0)));
    assert_eq!(
        on_exit(&vm, &vm.vcpus[0], &call(&[]), read),
        Action::Resume(Resume { writes, step: true, refill: false })
    );
    let other = SysRegId::new(3, 0, 1, 0, 0);
    let exit = Exit::SysReg { reg: other, rt: 0, write: Some(1) };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), exit), Action::Inject(Injection::Undefined));
}

#[test]
fn an_access_where_no_device_is_gets_an_external_abort_at_its_address() {
    let vm = two_vcpus();
    assert_eq!(mmio(&vm, load(0x0C00_0000, 0)), Action::Inject(Injection::DataAbort { far: 0x1234 }));
    let undecodable = Exit::UndecodableAccess { ipa: GICD.base, va: None };
    let action = on_exit(&vm, &vm.vcpus[0], &call(&[]), undecodable);
    assert_eq!(action, Action::Inject(Injection::DataAbort { far: GICD.base }), "no syndrome: nothing to emulate");
    let walk = Exit::TableWalk { ipa: 0x10, va: Some(0x20) };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), walk), Action::Inject(Injection::DataAbort { far: 0x20 }));
}

#[test]
fn cache_maintenance_outside_memory_completes() {
    let vm = two_vcpus();
    let exit = Exit::CacheMaintenance { ipa: 0x0900_0000, len: 4 };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), exit), Action::Resume(Resume::STEP));
}

#[test]
fn a_fetch_outside_memory_aborts_unless_it_is_the_guests_own_vectors() {
    let vm = two_vcpus();
    let vbar = 0x20_0000_0000;
    Fake::set_vector_base(vbar);
    let exit = Exit::InstructionAbort { ipa: 0x10, va: 0x10 };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), exit), Action::Inject(Injection::InstructionAbort { far: 0x10 }));
    let mut in_vectors = call(&[]);
    in_vectors.elr = vbar + 0x200;
    let crash = SystemEvent::Crash { vcpu: 0, pc: vbar + 0x200, why: Crash::VectorUnmapped { vbar } };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &in_vectors, exit), Action::StopVm(crash));
    Fake::set_vector_base(0);
}

#[test]
fn an_serror_crashes_the_vm() {
    let vm = two_vcpus();
    let esr = Esr(0xBE00_0000);
    let crash = SystemEvent::Crash { vcpu: 0, pc: 0x4000_1000, why: Crash::SError { esr: esr.0 } };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), Exit::SError { esr }), Action::StopVm(crash));
}

#[test]
fn an_interrupt_is_taken_and_anything_else_is_undefined() {
    let vm = two_vcpus();
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), Exit::Interrupt), Action::TakeInterrupts);
    let brk = Exit::Unhandled { esr: Esr(0xF200_0000) };
    assert_eq!(on_exit(&vm, &vm.vcpus[0], &call(&[]), brk), Action::Inject(Injection::Undefined));
}

// The guest's side of its virtual UART (PL011 TRM §3.3) and of its SPI in the distributor.
const UARTDR: u64 = 0x000;
const UARTIMSC: u64 = 0x038;
const UARTIMSC_RX_AND_TIMEOUT: u64 = (1 << 4) | (1 << 6);
const GICD_IGROUPR1: u64 = 0x0084;
const GICD_ISENABLER1: u64 = 0x0104;
const CTLR_ENABLE_GRP1: u64 = 1 << 1;

#[test]
fn the_virtual_uart_interrupts_for_typed_input_and_transmits_through_the_console() {
    let vm = two_vcpus();
    let spi_bit = 1 << (UART_SPI - 32);
    for (reg, value) in [(GICD_CTLR, CTLR_ENABLE_GRP1), (GICD_IGROUPR1, spi_bit), (GICD_ISENABLER1, spi_bit)] {
        mmio(&vm, store(GICD.base + reg, value));
    }
    mmio(&vm, store(UART.base + UARTIMSC, UARTIMSC_RX_AND_TIMEOUT));
    let port = vm.serial.clone().expect("the test VM has a serial port");
    Fake::take_kicks();

    assert!(port.receive(b'x'));
    assert_eq!(Fake::take_kicks(), [0], "the SPI is routed to vCPU 0, whose CPU is kicked");
    assert_eq!(vm.vgic.lock().first_pending(0), Some(UART_SPI), "typed input raises the UART's SPI");

    let read = mmio(&vm, load(UART.base + UARTDR, 3));
    assert_eq!(
        read,
        Action::Resume(Resume { writes: Writes::one(Some((3, u64::from(b'x')))), step: true, refill: false })
    );
    assert_eq!(vm.vgic.lock().first_pending(0), None, "the line fell once the FIFO was read empty");

    mmio(&vm, store(UART.base + UARTDR, u64::from(b'h')));
    assert_eq!(Fake::take_serial(), [(0, b'h')], "what the guest transmits reaches the console");
}

#[test]
fn a_full_virtual_uart_refuses_input_and_says_when_it_has_room() {
    let vm = two_vcpus();
    let port = vm.serial.clone().expect("the test VM has a serial port");
    let taken = (0..100).take_while(|_| port.receive(b'a')).count();
    assert_eq!(taken, crate::vuart::RX_FIFO_DEPTH, "the FIFO takes what it holds, the rest stays with the caller");
    Fake::take_serial_room();
    mmio(&vm, load(UART.base + UARTDR, 0));
    assert_eq!(Fake::take_serial_room(), [0], "reading a byte from a full FIFO makes room");
    mmio(&vm, load(UART.base + UARTDR, 0));
    assert!(Fake::take_serial_room().is_empty(), "said once, when room appears");
}
