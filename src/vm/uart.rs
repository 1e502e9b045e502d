//! A VM's serial port: its virtual UART ([`crate::vuart`]) as an emulated device at the
//! board's console address, its interrupt line into the VM's virtual GIC (a soft SPI,
//! `VGic::set_line`), and the console's two ways through it: what the guest transmits
//! leaves through [`Hardware::serial_out`], what the user types comes in through
//! [`SerialPort::receive`]. Cairn keeps the physical UART; no VM touches it.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::devices::{MmioDevice, MmioDone};
use crate::arch::aarch64::access::MmioAccess;
use crate::hw::{Hardware, Hw};
use crate::vgic::dist::{VGic, VcpuSet};
use crate::vuart::VirtualUart;

/// One VM's serial port, shared by its device table and the console.
pub struct SerialPort {
    /// The VM's id, which the console knows it by.
    pub vm: usize,
    uart: spin::Mutex<VirtualUart>,
    vgic: Arc<spin::Mutex<VGic>>,
    /// The SPI the guest's device tree gives the UART.
    intid: u32,
    /// The physical CPU of each vCPU, to kick the one the interrupt is routed to.
    pcpus: Vec<usize>,
}

impl SerialPort {
    /// A port for VM `vm` whose UART raises SPI `intid` in `vgic`.
    pub fn new(vm: usize, vgic: Arc<spin::Mutex<VGic>>, intid: u32, pcpus: Vec<usize>) -> Self {
        vgic.lock().add_soft_spi(intid);
        SerialPort { vm, uart: spin::Mutex::new(VirtualUart::new()), vgic, intid, pcpus }
    }

    /// Typed input for the guest. False when its receive FIFO is full: the byte stays
    /// with the caller, and [`Hardware::serial_room`] says when to try again.
    pub fn receive(&self, byte: u8) -> bool {
        let mut uart = self.uart.lock();
        let taken = uart.receive(byte);
        let kick = self.drive_line(&uart);
        drop(uart);
        self.kick(kick);
        taken
    }

    /// Back to the UART's power-on state (the VM's reset); typed input still queued is
    /// dropped, as a real UART's FIFO is at a reset.
    pub fn reset(&self) {
        let mut uart = self.uart.lock();
        uart.reset();
        self.drive_line(&uart);
    }

    /// The UART's registers and FIFOs, for a VM snapshot.
    pub fn snapshot(&self) -> VirtualUart {
        self.uart.lock().clone()
    }

    /// Puts back a [`SerialPort::snapshot`]. Its line's level goes back with the VM's
    /// virtual GIC, which keeps it.
    pub fn restore(&self, saved: &VirtualUart) {
        *self.uart.lock() = saved.clone();
    }

    fn drive_line(&self, uart: &VirtualUart) -> VcpuSet {
        self.vgic.lock().set_line(self.intid, uart.irq_level())
    }

    fn kick(&self, vcpus: VcpuSet) {
        for (vcpu, &pcpu) in self.pcpus.iter().enumerate() {
            if vcpus & (1 << vcpu) != 0 {
                Hw::kick(pcpu);
            }
        }
    }

    fn access(&self, offset: u64, access: &MmioAccess) -> MmioDone {
        let mut uart = self.uart.lock();
        let width = access.size as u8;
        let room_before = uart.rx_room();
        let (value, sent) = match access.write {
            Some(v) => (0, uart.write(offset, width, v as u32)),
            None => (u64::from(uart.read(offset, width)), None),
        };
        let room_again = room_before == 0 && uart.rx_room() > 0;
        let changed = self.drive_line(&uart);
        // The console is called without the UART's lock: its input path takes the console's
        // lock, then this UART's.
        drop(uart);
        if let Some(byte) = sent {
            Hw::serial_out(self.vm, byte);
        }
        if room_again {
            Hw::serial_room(self.vm);
        }
        MmioDone { value, changed }
    }
}

/// The port's register frame in the VM's device table.
pub struct UartDevice(pub Arc<SerialPort>);

impl MmioDevice for UartDevice {
    fn name(&self) -> &'static str {
        "virtual UART"
    }

    fn access(&self, _vcpu: usize, offset: u64, access: &MmioAccess) -> MmioDone {
        self.0.access(offset, access)
    }
}
