//! The guest's own words in its bootargs (`/chosen/bootargs`; Cairn takes out the
//! `cairn.*` words and passes the rest):
//! - `resets=N`: boots before the checks run (default [`DEFAULT_RESETS`]; the first boot
//!   counts, so N - 1 resets);
//! - `gic-spis=any`: this is the first or only VM, which Cairn gives every SPI no other
//!   VM's device names, so SPIs its device tree does not name may stick
//!   (`gic-spis=named`, the default: only those its device tree names may);
//! - `wait-key`: after the reset storm, wait for a key typed on its console before the
//!   checks, so a test can have the VM beside it write its pattern first.

/// Boots, the first included, unless `resets=` says otherwise.
pub const DEFAULT_RESETS: u64 = 20;
const RESETS_ARG: &str = "resets=";
const GIC_SPIS_ARG: &str = "gic-spis=";
const GIC_SPIS_ANY: &str = "any";
const WAIT_KEY_ARG: &str = "wait-key";

pub struct Args {
    pub resets: u64,
    pub any_spi: bool,
    pub wait_key: bool,
}

impl Args {
    pub fn from_device_tree(dtb: usize) -> Args {
        // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
        let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.ok();
        let args = fdt.as_ref().and_then(|f| f.chosen().bootargs()).unwrap_or("");
        let arg = |prefix: &str| args.split_whitespace().find_map(|w| w.strip_prefix(prefix));
        Args {
            resets: arg(RESETS_ARG).and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_RESETS),
            any_spi: arg(GIC_SPIS_ARG) == Some(GIC_SPIS_ANY),
            wait_key: args.split_whitespace().any(|w| w == WAIT_KEY_ARG),
        }
    }
}
