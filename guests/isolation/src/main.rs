//! Test guest: from inside a VM, shows that it reaches nothing but its own, when Cairn runs
//! several VMs side by side (each a guest-loader kernel with its `cairn.*` words) and also
//! when it runs alone.
//!
//! What a VM owns is what its own device tree says: one RAM range R (the one memory node,
//! identity-mapped), its vCPUs, its virtual GIC, its virtual UART and the devices it lists.
//! Every other address must give the synchronous external abort Cairn injects, every other
//! VM's interrupt must be invisible in its GIC, and its PSCI must know no other vCPU. The
//! guest checks, on its boot vCPU:
//! 1. `ram_is_its_own` (probe.rs): probed pages of the device window and of the RAM window
//!    read only where its device tree says they are its own, and abort everywhere else
//!    (other VMs' RAM, Cairn's memory, other VMs' devices);
//! 2. `no_foreign_pattern` (pattern.rs): no byte of another VM's RAM shows up in what it
//!    can read: the pattern the other VM (Linux) writes over its own pages is nowhere;
//! 3. `gic_writes_stay_home` (gic_writes.rs): all ones written to every SPI register stick
//!    only for its own SPIs; SGIs to every target it can name fault nowhere, and its GIC
//!    still works afterwards;
//! 4. `cpu_on_storm` (cpu_on.rs): 2000 rounds of CPU_ON on MPIDRs 0-7 start only its own
//!    vCPUs and answer INVALID_PARAMETERS for every other;
//! 5. `reset_storm` (storm.rs): before all that, the VM has reset itself N times
//!    (`resets=N`, default 20), each boot counted in RAM a reset keeps, each finding its
//!    image restored and R unchanged; checks 1-4 run at the last boot only, so the storm
//!    stays fast.
//!
//! The last boot reports 1-5, the result line, and powers the VM off (SYSTEM_OFF). Each
//! reset boot prints only `isolation: reset k`. Bootargs: args.rs.
#![no_std]
#![no_main]

mod args;
mod cpu_on;
mod gic_writes;
mod layout;
mod pattern;
mod probe;
mod storm;

use guestkit::{gic, guest_main, Checks};

use crate::args::Args;

const NAME: &str = "isolation";

fn run(dtb: usize) {
    let args = Args::from_device_tree(dtb);
    let gic = gic::init(dtb);
    let Some(layout) = layout::read(dtb, gic.ok()) else {
        let mut t = Checks::new(NAME);
        t.check("device_tree", false, format_args!("no device tree at {dtb:#x}"));
        t.finish_and_power_off();
    };
    let storm = storm::boot(&layout, args.resets);
    if args.wait_key {
        guestkit::println!("isolation: press a key to start the checks");
        guestkit::console::read_byte();
    }
    let mut t = Checks::new(NAME);
    if let Err(e) = gic {
        t.note(format_args!("gic::init: {e}"));
    }
    let probed = probe::run(&mut t, &layout);
    pattern::run(&mut t, &layout, &probed);
    gic_writes::run(&mut t, layout.gic, layout.spis, args.any_spi, &layout.cpus);
    cpu_on::run(&mut t, &layout.cpus);
    storm::report(&mut t, &storm);
    t.finish_and_power_off();
}

guest_main!(run);
