//! What the guest's device tree says: the PSCI version and function IDs (`/psci`, Linux's
//! arm/psci.yaml binding) and guest RAM (`/memory`).

use core::fmt;

use guestkit::spec::psci;

/// The PSCI versions this guest knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_1,
    V0_2,
    V1_0,
    V1_1,
}

impl Version {
    /// What PSCI_VERSION returns: `major << 16 | minor` (DEN0022 §5.1.1). 0.1 has no
    /// PSCI_VERSION; its encoding is only for display.
    pub const fn encode(self) -> u64 {
        match self {
            Version::V0_1 => 0x1,
            Version::V0_2 => 0x2,
            Version::V1_0 => 0x1_0000,
            Version::V1_1 => 0x1_0001,
        }
    }

    /// The 1.x version PSCI_VERSION names, if this guest knows it.
    pub fn from_1x(encoded: u64) -> Option<Version> {
        [Version::V1_0, Version::V1_1].into_iter().find(|v| v.encode() == encoded)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V0_1 => "0.1",
            Version::V0_2 => "0.2",
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
        })
    }
}

/// Which family the `/psci` compatible list names (Linux's arm/psci.yaml): the newest
/// entry wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// "arm,psci" only: function IDs from the node's properties.
    V0_1,
    /// "arm,psci-0.2", without "arm,psci-1.0".
    V0_2,
    /// "arm,psci-1.0": PSCI_VERSION tells 1.0 from 1.1.
    V1,
}

const COMPATIBLE_1_0: &str = "arm,psci-1.0";
const COMPATIBLE_0_2: &str = "arm,psci-0.2";
const COMPATIBLE_0_1: &str = "arm,psci";

/// The PSCI 0.1 function IDs (arm/psci.yaml: `cpu_on` and `cpu_off` are required,
/// `cpu_suspend` and `migrate` optional).
#[derive(Clone, Copy, Debug)]
pub struct Psci01Ids {
    pub cpu_suspend: Option<u32>,
    pub cpu_off: u32,
    pub cpu_on: u32,
    pub migrate: Option<u32>,
}

/// The `/psci` node.
#[derive(Clone, Copy, Debug)]
pub struct PsciNode {
    pub family: Family,
    /// `method`: the conduit the firmware wants ("hvc" for Cairn).
    pub method: Option<&'static str>,
    /// Under 0.1 only.
    pub ids_0_1: Option<Psci01Ids>,
}

/// Most `/memory` ranges this guest follows.
pub const MAX_RAM_REGIONS: usize = 8;

/// Guest RAM as `/memory` nodes describe it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ram {
    regions: [(u64, u64); MAX_RAM_REGIONS],
    count: usize,
}

impl Ram {
    pub fn regions(&self) -> &[(u64, u64)] {
        &self.regions[..self.count]
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.regions().iter().any(|&(base, size)| addr >= base && addr - base < size)
    }

    /// Page-aligned addresses outside guest RAM, for entry points PSCI must refuse: just
    /// past the top of RAM, just below its bottom, and the first hole between two ranges
    /// (where a hypervisor keeps its own memory), those that exist.
    pub fn outside(&self) -> [Option<u64>; 3] {
        const PAGE: u64 = 0x1000;
        let top = self.regions().iter().map(|&(b, s)| b + s).max();
        let bottom = self.regions().iter().map(|&(b, _)| b).min().and_then(|b| b.checked_sub(PAGE));
        let hole = self.regions().iter().map(|&(b, s)| b + s).find(|&end| !self.contains(end) && Some(end) != top);
        [top, bottom, hole].map(|a| a.filter(|&a| !self.contains(a)))
    }
}

/// Reads `/psci`.
pub fn psci(dtb: usize) -> Result<PsciNode, &'static str> {
    // SAFETY: the loader hands over a device tree in x0 per the arm64 boot protocol.
    let fdt = unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }.map_err(|_| "no valid device tree in x0")?;
    let node = fdt.find_node("/psci").ok_or("no /psci node")?;
    let compatible = node.compatible().ok_or("/psci has no compatible")?;
    let has = |name: &str| compatible.all().any(|c| c == name);
    let family = if has(COMPATIBLE_1_0) {
        Family::V1
    } else if has(COMPATIBLE_0_2) {
        Family::V0_2
    } else if has(COMPATIBLE_0_1) {
        Family::V0_1
    } else {
        return Err("/psci is compatible with no PSCI version");
    };
    let method = node.property("method").and_then(|p| p.as_str());
    let id = |name: &str| node.property(name).and_then(|p| p.as_usize()).map(|v| v as u32);
    let ids_0_1 = match family {
        Family::V0_1 => Some(Psci01Ids {
            cpu_suspend: id("cpu_suspend"),
            cpu_off: id("cpu_off").ok_or("PSCI 0.1 /psci has no cpu_off")?,
            cpu_on: id("cpu_on").ok_or("PSCI 0.1 /psci has no cpu_on")?,
            migrate: id("migrate"),
        }),
        _ => None,
    };
    Ok(PsciNode { family, method, ids_0_1 })
}

/// Reads the `/memory` nodes.
pub fn ram(dtb: usize) -> Ram {
    let mut ram = Ram::default();
    // SAFETY: as in `psci`.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else { return ram };
    let memory_nodes = fdt
        .all_nodes()
        .filter(|n| n.property("device_type").and_then(|p| p.as_str()) == Some("memory"))
        .filter_map(|n| n.reg());
    for region in memory_nodes.flatten() {
        if ram.count == MAX_RAM_REGIONS {
            break;
        }
        ram.regions[ram.count] = (region.starting_address as u64, region.size.unwrap_or(0) as u64);
        ram.count += 1;
    }
    ram
}

/// The PSCI function IDs a version uses, in the forms to try: under 0.2 and later the
/// standard SMC64 and SMC32 IDs, under 0.1 the device tree's.
#[derive(Clone, Copy, Debug)]
pub struct Forms {
    ids: [u32; 2],
    len: usize,
}

impl Forms {
    pub const fn one(id: u32) -> Forms {
        Forms { ids: [id, id], len: 1 }
    }

    pub const fn two(first: u32, second: u32) -> Forms {
        Forms { ids: [first, second], len: 2 }
    }

    pub fn all(&self) -> &[u32] {
        &self.ids[..self.len]
    }

    /// The form used where one is enough: SMC64 from 0.2, the device tree's under 0.1.
    pub fn first(&self) -> u32 {
        self.ids[0]
    }

    /// The last form: SMC32 from 0.2.
    pub fn last(&self) -> u32 {
        self.ids[self.len - 1]
    }
}

#[derive(Clone, Copy, Debug)]
pub struct PsciIds {
    pub cpu_on: Forms,
    pub cpu_off: u32,
    pub cpu_suspend: Option<Forms>,
    pub migrate: Option<Forms>,
}

impl PsciIds {
    pub fn for_version(version: Version, ids_0_1: Option<Psci01Ids>) -> PsciIds {
        match (version, ids_0_1) {
            (Version::V0_1, Some(ids)) => PsciIds {
                cpu_on: Forms::one(ids.cpu_on),
                cpu_off: ids.cpu_off,
                cpu_suspend: ids.cpu_suspend.map(Forms::one),
                migrate: ids.migrate.map(Forms::one),
            },
            _ => PsciIds {
                cpu_on: Forms::two(psci::CPU_ON_64, psci::CPU_ON_32),
                cpu_off: psci::CPU_OFF,
                cpu_suspend: Some(Forms::two(psci::CPU_SUSPEND_64, psci::CPU_SUSPEND_32)),
                migrate: Some(Forms::two(psci::MIGRATE_64, psci::MIGRATE_32)),
            },
        }
    }
}
