//! Partitioning: how the board's CPUs, RAM and devices are shared among several VMs, one per
//! kernel module. This module owns the `cairn.*` settings of a VM (its module's bootargs words,
//! over its vm.conf lines), the defaults for what nobody names, the refusals, and where each
//! VM's RAM goes. It is pure logic: the caller hands in the board's facts and the modules, and
//! gets a [`Plan`] back; building and starting the VMs is not its business.
//!
//! The rules, in the order they are applied:
//! 1. Each VM's settings are read; an unknown key or a malformed value refuses that VM.
//! 2. In module order, names, named CPUs and named devices are claimed; a clash refuses the
//!    later VM. A VM is refused as a whole, so it claims nothing.
//! 3. Named RAM sizes are placed, in order, each at the lowest free range big enough; one
//!    that does not fit is refused. They go before the shares because they cannot shrink.
//!    Snapshot slots of a named size (or, with `snapshot=on`, as large as a named RAM) are
//!    placed with them.
//! 4. CPUs nobody named are split evenly among the VMs without `cairn.cpus`; a VM left with
//!    none is refused.
//! 5. The RAM left is split evenly among the VMs without `cairn.mem`, each share placed the
//!    same way or shrunk to the largest free piece; a VM left with under 2 MiB is refused.
//!    A sharer with `snapshot=on` counts twice: its slot is as large as its share.
//! 6. Devices nobody named go to the first VM still standing.
//!
//! A refusal in steps 3-5 frees what the VM held, so they run again until none is refused.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::fwregs::parse_psci_version;
use crate::mm::{align_down, align_up, Region, GIB, KIB, MIB};
use crate::smccc::psci::Version;
use crate::verdict::{VmActions, ON_RESET_KEY, TIMEOUT_KEY, VM_WORD_PREFIX};

/// Guest RAM is identity-mapped with 2 MiB blocks: each VM's RAM is aligned to and a multiple of this.
pub const RAM_GRANULE: u64 = 2 * MIB;
/// The longest VM name: it prefixes every log line about the VM.
pub const MAX_NAME_LEN: usize = 15;

/// The settings' keys (`cairn.KEY=` in bootargs, `KEY=` in vm.conf), besides verdict.rs's.
pub const NAME_KEY: &str = "name";
pub const CPUS_KEY: &str = "cpus";
pub const MEM_KEY: &str = "mem";
pub const PSCI_KEY: &str = "psci";
pub const DEVICES_KEY: &str = "devices";
/// The Raspberry Pi bundle's legacy vm.conf key: at most N of the shared-out CPUs.
pub const VCPUS_KEY: &str = "vcpus";
/// A snapshot slot for the prompt's `save` and `restore`: a size, or `on` for one as large
/// as the VM's RAM.
pub const SNAPSHOT_KEY: &str = "snapshot";
/// SDEI for the VM's guest (`on` or `off`): crate::smccc::sdei.
pub const SDEI_KEY: &str = "sdei";
/// What a slot needs beyond the RAM it holds (its page map), rounded to the RAM granule.
pub const SLOT_OVERHEAD: u64 = RAM_GRANULE;

/// One kernel module, which starts one VM.
#[derive(Clone, Copy, Debug)]
pub struct ModuleInput<'a> {
    pub address: u64,
    pub bootargs: &'a str,
    /// The VM's vm.conf text, if it has one; its bootargs words override it.
    pub vm_conf: Option<&'a str>,
}

/// What the board offers the VMs.
#[derive(Clone, Copy, Debug)]
pub struct Board<'a> {
    /// CPUs `0..cpus`.
    pub cpus: usize,
    /// RAM no one holds yet (Cairn's own memory and any reserve already taken out).
    pub free_ram: &'a [Region],
    /// The devices VMs may be given, as full device-tree node paths.
    pub devices: &'a [&'a str],
}

/// One VM that can start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPlan {
    /// Its module's position among the modules.
    pub index: usize,
    pub name: String,
    /// The physical CPUs its vCPUs are pinned to, vCPU n on the n-th, ascending.
    pub cpus: Vec<usize>,
    /// Its RAM, one 2 MiB-aligned range (IPA = PA).
    pub ram: Region,
    /// Its PSCI version, if it set one.
    pub psci: Option<Version>,
    /// Its devices, as indices into [`Board::devices`], ascending.
    pub devices: Vec<usize>,
    /// Its snapshot slot, if it asked for one.
    pub snapshot: Option<Region>,
    /// Whether its guest gets SDEI (`cairn.sdei=on`).
    pub sdei: bool,
    pub actions: VmActions,
    /// The command line its guest sees: the bootargs without the `cairn.*` words.
    pub guest_args: String,
}

/// A VM that cannot start, and the one line that says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub line: String,
}

/// The partition: the VMs to start, those refused (by module order), and notes worth logging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub vms: Vec<VmPlan>,
    pub refused: Vec<Refusal>,
    pub notes: Vec<String>,
}

/// A setting as the user wrote it, kept to quote in the line that refuses its VM.
#[derive(Clone, Debug)]
struct Word {
    text: String,
    from_conf: bool,
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let conf = if self.from_conf { "vm.conf " } else { "" };
        write!(f, "{conf}\"{}\"", self.text)
    }
}

/// A setting: key, value (empty if the word has no `=`), and the word.
struct Setting<'a> {
    key: &'a str,
    value: &'a str,
    word: Word,
}

/// One VM's settings after reading; `None` where the VM named nothing.
#[derive(Default)]
struct Request {
    name: Option<(String, Word)>,
    cpus: Option<(Vec<usize>, Word)>,
    mem: Option<(u64, Word)>,
    psci: Option<Version>,
    devices: Option<(Vec<usize>, Word)>,
    vcpus: Option<usize>,
    snapshot: Option<(SlotSize, Word)>,
    sdei: bool,
    actions: VmActions,
}

/// How large a snapshot slot the VM asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotSize {
    Bytes(u64),
    /// As large as its RAM: every page fits, whatever the guest writes.
    AsRam,
}

/// A VM whose settings read well, on its way through the plan.
struct Candidate {
    index: usize,
    address: u64,
    name: String,
    req: Request,
    guest_args: String,
}

impl Candidate {
    fn refuse(&self, word: Option<&Word>, reason: &str) -> Refusal {
        let word = word.map(|w| format!("{w}: ")).unwrap_or_default();
        Refusal { index: self.index, line: format!("{}: {word}{reason}", self.who()) }
    }

    fn who(&self) -> String {
        format!("{} (module at {:#x})", self.name, self.address)
    }
}

/// Plans the VMs `modules` (ascending addresses) ask for on `board`: one VM per module, or one
/// refusal line; refusals come in module order.
pub fn plan(board: &Board, modules: &[ModuleInput]) -> Plan {
    let mut refused = Vec::new();
    let parsed = modules.iter().enumerate().filter_map(|(i, m)| read(board, i, m).map_err(|r| refused.push(r)).ok());
    let mut live = claim(board, parsed.collect(), &mut refused);
    let (cpus, (ram, slots), notes) = loop {
        match allocate(board, &live) {
            Ok(done) => break done,
            Err(out) => {
                live.retain(|c| out.iter().all(|r| r.index != c.index));
                refused.extend(out);
            }
        }
    };
    refused.sort_by_key(|r| r.index);
    let mut spare: Vec<usize> = (0..board.devices.len()).collect();
    spare.retain(|d| !live.iter().filter_map(|c| c.req.devices.as_ref()).any(|(named, _)| named.contains(d)));
    let vms = live.into_iter().zip(cpus).zip(ram.into_iter().zip(slots)).enumerate();
    let vms = vms.map(|(n, ((c, cpus), (ram, snapshot)))| {
        let mut devices = c.req.devices.map(|(d, _)| d).unwrap_or_default();
        if n == 0 {
            devices.append(&mut spare);
            devices.sort_unstable();
        }
        let (psci, sdei, actions) = (c.req.psci, c.req.sdei, c.req.actions);
        let guest_args = c.guest_args;
        VmPlan { index: c.index, name: c.name, cpus, ram, psci, devices, snapshot, sdei, actions, guest_args }
    });
    Plan { vms: vms.collect(), refused, notes }
}

/// vm.conf's settings: `key=value` lines, `#` comments.
fn conf_settings(conf: &str) -> impl Iterator<Item = Setting<'_>> {
    let lines = conf.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty());
    lines.map(|line| {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        Setting { key: key.trim(), value: value.trim(), word: Word { text: line.into(), from_conf: true } }
    })
}

/// Splits bootargs into Cairn's settings and the guest's command line (the other words, in
/// order, single-spaced).
fn split_bootargs(args: &str) -> (Vec<Setting<'_>>, String) {
    let (mut settings, mut guest) = (Vec::new(), Vec::new());
    for word in args.split_ascii_whitespace() {
        let Some(setting) = word.strip_prefix(VM_WORD_PREFIX) else {
            guest.push(word);
            continue;
        };
        let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
        settings.push(Setting { key, value, word: Word { text: word.into(), from_conf: false } });
    }
    (settings, guest.join(" "))
}

/// Reads module `index`'s settings, vm.conf first so that words override it.
fn read(board: &Board, index: usize, m: &ModuleInput) -> Result<Candidate, Refusal> {
    let (words, guest_args) = split_bootargs(m.bootargs);
    let mut req = Request::default();
    let mut error = None;
    for s in conf_settings(m.vm_conf.unwrap_or("")).chain(words) {
        if let Err(reason) = req.set(board, s) {
            // The first error is the one to fix first; reading on still finds the VM's name.
            error.get_or_insert(reason);
        }
    }
    let name = req.name.as_ref().map_or_else(|| format!("vm{index}"), |(n, _)| n.clone());
    let c = Candidate { index, address: m.address, name, req, guest_args };
    match error {
        Some((word, reason)) => Err(c.refuse(Some(&word), &reason)),
        None => Ok(c),
    }
}

impl Request {
    fn set(&mut self, board: &Board, s: Setting) -> Result<(), (Word, String)> {
        let Setting { key, value, word } = s;
        let result = match key {
            NAME_KEY => parse_name(value).map(|n| self.name = Some((n.into(), word.clone()))),
            CPUS_KEY => parse_cpus(value, board.cpus).map(|c| self.cpus = Some((c, word.clone()))),
            MEM_KEY => parse_size(value).map(|m| self.mem = Some((m, word.clone()))),
            PSCI_KEY => parse_psci_version(value).map(|v| self.psci = Some(v)).map_err(|e| e.to_string()),
            DEVICES_KEY => parse_devices(value, board.devices).map(|d| self.devices = Some((d, word.clone()))),
            // Legacy: only the bundle's vm.conf ever said `vcpus`.
            VCPUS_KEY if word.from_conf => parse_count(value).map(|n| self.vcpus = Some(n)),
            SNAPSHOT_KEY => parse_slot(value).map(|s| self.snapshot = s.map(|s| (s, word.clone()))),
            SDEI_KEY => parse_switch(value).map(|on| self.sdei = on),
            ON_RESET_KEY => self.actions.set(key, value).map_err(|_| "expected restart, stop or fail".into()),
            TIMEOUT_KEY => self.actions.set(key, value).map_err(|_| "expected a duration: <N>s, <N>m or <N>h".into()),
            _ => Err(format!("Cairn has no setting `{key}`")),
        };
        result.map_err(|reason| (word, reason))
    }
}

/// `on` or `off`.
fn parse_switch(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// A snapshot slot: `on`, `off` or a size.
fn parse_slot(value: &str) -> Result<Option<SlotSize>, String> {
    match value {
        "on" => Ok(Some(SlotSize::AsRam)),
        "off" => Ok(None),
        size => parse_size(size).map(|b| Some(SlotSize::Bytes(b))).map_err(|e| format!("{e}, or on, or off")),
    }
}

/// A VM name: 1-15 characters of `[A-Za-z0-9_-]`.
fn parse_name(value: &str) -> Result<&str, String> {
    let sane = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let fits = (1..=MAX_NAME_LEN).contains(&value.len()) && value.chars().all(sane);
    fits.then_some(value).ok_or_else(|| format!("a name is 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 _ -"))
}

/// Decimal digits only: `str::parse` would also take a sign.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A positive count (`vcpus=N`).
fn parse_count(value: &str) -> Result<usize, String> {
    let n = parse_decimal(value).and_then(|n| usize::try_from(n).ok());
    n.filter(|&n| n > 0).ok_or_else(|| "expected a count of at least 1".into())
}

/// A CPU list (`2`, `0-1`, `1,3`, `0-1,3`) of CPUs the board has, each once; ascending.
fn parse_cpus(value: &str, board: usize) -> Result<Vec<usize>, String> {
    let number = |s: &str| {
        let n = parse_decimal(s).and_then(|n| usize::try_from(n).ok());
        n.ok_or_else(|| format!("`{s}` is not a CPU number (expected a list such as 0-1,3)"))
    };
    let mut cpus = Vec::new();
    for item in value.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if first > last {
            return Err(format!("`{item}` counts down (write {last}-{first})"));
        }
        for cpu in first..=last {
            if cpu >= board {
                return Err(format!("the board has {}", cpu_names(board)));
            }
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice"));
            }
            cpus.push(cpu);
        }
    }
    cpus.sort_unstable();
    Ok(cpus)
}

/// How the board's CPUs are called in messages.
fn cpu_names(board: usize) -> String {
    match board {
        0 => "no CPUs".into(),
        1 => "CPU 0".into(),
        n => format!("CPUs 0-{}", n - 1),
    }
}

/// A RAM size: bytes, or with a K, M or G suffix (either case); a non-zero multiple of 2 MiB.
fn parse_size(value: &str) -> Result<u64, String> {
    let (digits, scale) = match value.bytes().last().map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => (&value[..value.len() - 1], KIB),
        Some(b'M') => (&value[..value.len() - 1], MIB),
        Some(b'G') => (&value[..value.len() - 1], GIB),
        _ => (value, 1),
    };
    let bytes = parse_decimal(digits).ok_or("expected a size such as 64M or 1G")?.checked_mul(scale);
    let bytes = bytes.ok_or("the size is too large")?;
    if bytes == 0 || bytes % RAM_GRANULE != 0 {
        return Err("guest RAM is a whole number of 2 MiB blocks".into());
    }
    Ok(bytes)
}

/// Device nodes, each a full path or a node name naming one board device; ascending indices.
fn parse_devices(value: &str, board: &[&str]) -> Result<Vec<usize>, String> {
    let mut devices = Vec::new();
    for item in value.split(',') {
        let matches =
            |path: &&str| if item.starts_with('/') { *path == item } else { path.rsplit('/').next() == Some(item) };
        let found: Vec<usize> = (0..board.len()).filter(|&d| matches(&board[d])).collect();
        let device = match found[..] {
            [d] => d,
            [] => return Err(format!("the board has no device `{item}`")),
            _ => return Err(format!("`{item}` names several devices; give its full path")),
        };
        if devices.contains(&device) {
            return Err(format!("{} is listed twice", board[device]));
        }
        devices.push(device);
    }
    devices.sort_unstable();
    Ok(devices)
}

/// Step 2: in order, a VM keeps its name, CPUs and devices only if no earlier VM has them.
fn claim(board: &Board, parsed: Vec<Candidate>, refused: &mut Vec<Refusal>) -> Vec<Candidate> {
    let mut live: Vec<Candidate> = Vec::new();
    for c in parsed {
        match clash(board, &live, &c) {
            Some(r) => refused.push(r),
            None => live.push(c),
        }
    }
    live
}

/// The refusal of `c` if it takes a name, CPU or device one of `earlier` has.
fn clash(board: &Board, earlier: &[Candidate], c: &Candidate) -> Option<Refusal> {
    if let Some(other) = earlier.iter().find(|o| o.name == c.name) {
        let word = c.req.name.as_ref().map(|(_, w)| w);
        return Some(c.refuse(word, &format!("the name is {}'s already", other.who())));
    }
    for other in earlier {
        if let (Some((mine, word)), Some((theirs, _))) = (&c.req.cpus, &other.req.cpus) {
            if let Some(cpu) = mine.iter().find(|m| theirs.contains(m)) {
                return Some(c.refuse(Some(word), &format!("CPU {cpu} is {}'s already", other.name)));
            }
        }
        if let (Some((mine, word)), Some((theirs, _))) = (&c.req.devices, &other.req.devices) {
            if let Some(&d) = mine.iter().find(|m| theirs.contains(m)) {
                return Some(c.refuse(Some(word), &format!("{} is {}'s already", board.devices[d], other.name)));
            }
        }
    }
    None
}

/// What [`allocate`] gives the VMs still standing: CPUs and RAM each, and notes.
/// Each VM's RAM and snapshot slot.
type Placement = (Vec<Region>, Vec<Option<Region>>);
/// Each VM's CPUs, RAM and snapshot slot, and the notes.
type Allocation = (Vec<Vec<usize>>, Placement, Vec<String>);

/// Steps 3-5 for the VMs `live`, or the refusals they lead to. A named size that does not
/// fit is refused first: that holds whoever else starts, while running out of CPUs or RAM
/// depends on how many VMs share, which those refusals change.
fn allocate(board: &Board, live: &[Candidate]) -> Result<Allocation, Vec<Refusal>> {
    let mut free: Vec<Region> = board.free_ram.iter().filter_map(usable).collect();
    free.sort_by_key(|r| r.base);
    let (mut ram, mut slots) = place_named(&mut free, live)?;
    let cpus = share_cpus(board.cpus, live);
    let no_cpu = format!("no CPU is left for it ({} went to other VMs)", cpu_names(board.cpus));
    let idle = live.iter().zip(&cpus).filter(|(_, c)| c.is_empty()).map(|(c, _)| c.refuse(None, &no_cpu));
    let idle: Vec<Refusal> = idle.collect();
    if !idle.is_empty() {
        return Err(idle);
    }
    let notes = place_shares(&mut free, live, &mut ram, &mut slots)?;
    Ok((cpus, (ram, slots), notes))
}

/// Step 4: named CPUs as named; the rest, ascending, in even runs to the other VMs in order.
fn share_cpus(board: usize, live: &[Candidate]) -> Vec<Vec<usize>> {
    let named = |cpu: &usize| live.iter().filter_map(|c| c.req.cpus.as_ref()).any(|(n, _)| n.contains(cpu));
    let pool: Vec<usize> = (0..board).filter(|cpu| !named(cpu)).collect();
    let caps: Vec<Option<usize>> = live.iter().filter(|c| c.req.cpus.is_none()).map(|c| c.req.vcpus).collect();
    let mut counts = even_split(pool.len(), &caps).into_iter();
    let mut rest = &pool[..];
    let cpus_of = |c: &Candidate| match &c.req.cpus {
        Some((named, _)) => named.clone(),
        None => {
            let (mine, after) = rest.split_at(counts.next().unwrap_or(0));
            rest = after;
            mine.to_vec()
        }
    };
    live.iter().map(cpus_of).collect()
}

/// Splits `total` among takers as evenly as possible, earlier ones getting the remainder and
/// none more than its cap; what a capped taker leaves goes to the others.
fn even_split(total: usize, caps: &[Option<usize>]) -> Vec<usize> {
    let mut fixed: Vec<Option<usize>> = vec![None; caps.len()];
    loop {
        let open: Vec<usize> = (0..caps.len()).filter(|&i| fixed[i].is_none()).collect();
        let left = total - fixed.iter().flatten().sum::<usize>();
        let share = |k: usize| left / open.len() + usize::from(k < left % open.len());
        let over: Vec<usize> =
            open.iter().enumerate().filter(|&(k, &i)| caps[i].is_some_and(|c| c < share(k))).map(|(_, &i)| i).collect();
        if over.is_empty() {
            open.iter().enumerate().for_each(|(k, &i)| fixed[i] = Some(share(k)));
            return fixed.into_iter().map(|n| n.unwrap_or(0)).collect();
        }
        // A capped taker keeps its cap whatever the others get, so it is settled for good.
        over.into_iter().for_each(|i| fixed[i] = caps[i]);
    }
}

/// Step 3, named sizes: each at the lowest free range big enough, in order, its slot after
/// it. The RAM of VMs that share (and a slot as large as it) is left empty here.
fn place_named(free: &mut [Region], live: &[Candidate]) -> Result<Placement, Vec<Refusal>> {
    let total: u64 = free.iter().map(|r| r.size).sum();
    let mut ram = vec![Region::new(0, 0); live.len()];
    let mut slots = vec![None; live.len()];
    let mut refused = Vec::new();
    for (i, c) in live.iter().enumerate() {
        if let Some((size, word)) = &c.req.mem {
            match take_lowest(free, *size) {
                Some(r) => ram[i] = r,
                None => {
                    refused.push(c.refuse(Some(word), &no_room(*size, total, free)));
                    continue;
                }
            }
        }
        let slot = match (&c.req.snapshot, &c.req.mem) {
            (Some((SlotSize::Bytes(size), word)), _) => (*size, word),
            (Some((SlotSize::AsRam, word)), Some((size, _))) => (size + SLOT_OVERHEAD, word),
            _ => continue,
        };
        match take_lowest(free, slot.0) {
            Some(r) => slots[i] = Some(r),
            None => refused.push(
                c.refuse(Some(slot.1), &format!("no room for its snapshot slot: {}", no_room(slot.0, total, free))),
            ),
        }
    }
    if refused.is_empty() {
        Ok((ram, slots))
    } else {
        Err(refused)
    }
}

/// Step 5, the rest: an even share each, rounded down to 2 MiB, at the lowest free range big
/// enough, or else the largest free piece (noted); a sharer with `snapshot=on` takes a
/// second share for its slot. Gives the notes.
fn place_shares(
    free: &mut [Region],
    live: &[Candidate],
    ram: &mut [Region],
    slots: &mut [Option<Region>],
) -> Result<Vec<String>, Vec<Refusal>> {
    let sharers: Vec<usize> = (0..live.len()).filter(|&i| live[i].req.mem.is_none()).collect();
    let Some(&last) = sharers.last() else { return Ok(Vec::new()) };
    let slot_as_ram = |i: usize| matches!(live[i].req.snapshot, Some((SlotSize::AsRam, _)));
    let doubled = sharers.iter().filter(|&&i| slot_as_ram(i)).count() as u64;
    let free_total = free.iter().map(|r| r.size).sum::<u64>().saturating_sub(doubled * SLOT_OVERHEAD);
    let share = align_down(free_total / (sharers.len() as u64 + doubled), RAM_GRANULE);
    let too_little = |c: &Candidate| vec![c.refuse(None, "less than 2 MiB of RAM is left for it")];
    if share == 0 {
        // Later VMs give way, as with CPUs: plan() shares again without this one.
        return Err(too_little(&live[last]));
    }
    let mut notes = Vec::new();
    for i in sharers {
        // take_largest's pieces are whole 2 MiB blocks, so any piece is enough.
        let r = take_lowest(free, share).or_else(|| take_largest(free)).ok_or_else(|| too_little(&live[i]))?;
        if r.size < share {
            let (want, got) = (share / MIB, r.size / MIB);
            notes.push(format!("{}: no {want} MiB free in one piece; it gets {got} MiB", live[i].who()));
        }
        ram[i] = r;
        if let Some((SlotSize::AsRam, word)) = &live[i].req.snapshot {
            let size = r.size + SLOT_OVERHEAD;
            let slot = take_lowest(free, size);
            slots[i] = Some(slot.ok_or_else(|| vec![live[i].refuse(Some(word), "no room for its snapshot slot")])?);
        }
    }
    Ok(notes)
}

/// The 2 MiB-aligned part of a free region, if any.
fn usable(r: &Region) -> Option<Region> {
    let (base, end) = (align_up(r.base, RAM_GRANULE), align_down(r.end(), RAM_GRANULE));
    (end > base).then(|| Region::from_bounds(base, end))
}

/// Takes `size` from the bottom of the lowest free region big enough.
fn take_lowest(free: &mut [Region], size: u64) -> Option<Region> {
    let piece = free.iter_mut().find(|r| r.size >= size)?;
    let taken = Region::new(piece.base, size);
    *piece = Region::from_bounds(taken.end(), piece.end());
    Some(taken)
}

/// Takes the whole of the largest free region (the lowest of equals), if it is not empty.
fn take_largest(free: &mut [Region]) -> Option<Region> {
    let largest = free.iter().map(|r| r.size).max().filter(|&s| s > 0)?;
    take_lowest(free, largest)
}

/// Why a named size does not fit.
fn no_room(size: u64, total: u64, free: &[Region]) -> String {
    if size > total {
        return format!("the board has only {} MiB of free RAM", total / MIB);
    }
    let largest = free.iter().map(|r| r.size).max().unwrap_or(0);
    format!("no {} MiB left in one piece (the largest is {} MiB)", size / MIB, largest / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::OnReset;

    const BASE: u64 = 0x4000_0000;
    const DEVICES: [&str; 3] = ["/pl011@9000000", "/virtio_mmio@a000000", "/soc/virtio_mmio@a000200"];

    fn board(cpus: usize, free: &[Region]) -> Board<'_> {
        Board { cpus, free_ram: free, devices: &DEVICES }
    }

    /// Modules 8 MiB apart from 0x48000000, each with `args`, no vm.conf.
    fn modules<'a>(args: &[&'a str]) -> Vec<ModuleInput<'a>> {
        let at = |i: usize| 0x4800_0000 + 0x80_0000 * i as u64;
        args.iter().enumerate().map(|(i, &bootargs)| ModuleInput { address: at(i), bootargs, vm_conf: None }).collect()
    }

    fn lines(p: &Plan) -> Vec<&str> {
        p.refused.iter().map(|r| r.line.as_str()).collect()
    }

    fn cpus(p: &Plan) -> Vec<Vec<usize>> {
        p.vms.iter().map(|v| v.cpus.clone()).collect()
    }

    fn ram(p: &Plan) -> Vec<Region> {
        p.vms.iter().map(|v| v.ram).collect()
    }

    #[test]
    fn one_vm_without_settings_gets_everything() {
        let free = [Region::new(BASE, 2 * GIB)];
        let p = plan(&board(4, &free), &modules(&["console=ttyAMA0 quiet"]));
        let vm = &p.vms[0];
        assert_eq!((vm.index, vm.name.as_str(), vm.guest_args.as_str()), (0, "vm0", "console=ttyAMA0 quiet"));
        assert_eq!((vm.cpus.clone(), vm.ram, vm.devices.clone()), (vec![0, 1, 2, 3], free[0], vec![0, 1, 2]));
        assert_eq!((vm.psci, vm.actions), (None, VmActions::default()));
        assert!(p.refused.is_empty() && p.notes.is_empty());
    }

    #[test]
    fn one_vm_gets_the_largest_region_aligned_to_2_mib() {
        let free = [Region::new(BASE, 256 * MIB), Region::new(0x8010_0000, GIB), Region::new(0xC000_0000, 512 * MIB)];
        let p = plan(&board(1, &free), &modules(&[""]));
        assert_eq!(ram(&p), [Region::from_bounds(0x8020_0000, 0xC000_0000)], "the odd 1 MiB ends are cut");
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    }

    #[test]
    fn two_vms_share_four_cpus_and_two_gib_evenly() {
        let free = [Region::new(BASE, 2 * GIB)];
        let p = plan(&board(4, &free), &modules(&["", ""]));
        assert_eq!(cpus(&p), [vec![0, 1], vec![2, 3]]);
        assert_eq!(ram(&p), [Region::new(BASE, GIB), Region::new(BASE + GIB, GIB)]);
        assert_eq!((p.vms[0].devices.clone(), p.vms[1].devices.clone()), (vec![0, 1, 2], vec![]));
        assert_eq!(p.vms[1].name, "vm1");
    }

    #[test]
    fn named_and_unnamed_mix() {
        let free = [Region::new(BASE, 2 * GIB)];
        let args = ["", "cairn.cpus=0 cairn.mem=512M cairn.devices=pl011@9000000", "", ""];
        let p = plan(&board(6, &free), &modules(&args));
        assert_eq!(cpus(&p), [vec![1, 2], vec![0], vec![3, 4], vec![5]], "unnamed CPUs in order, remainder first");
        // Named sizes are placed first: a share can shrink, a named size cannot.
        assert_eq!(p.vms[1].ram, Region::new(BASE, 512 * MIB));
        assert_eq!(ram(&p)[0], Region::new(BASE + 512 * MIB, 512 * MIB));
        assert_eq!(ram(&p)[3], Region::new(BASE + 3 * 512 * MIB, 512 * MIB));
        assert_eq!((p.vms[0].devices.clone(), p.vms[1].devices.clone()), (vec![1, 2], vec![0]));
        let remainder = plan(&board(4, &free), &modules(&["", "", ""]));
        assert_eq!(cpus(&remainder), [vec![0, 1], vec![2], vec![3]]);
        assert_eq!(ram(&remainder)[0].size, align_down(2 * GIB / 3, RAM_GRANULE));
    }

    #[test]
    fn cairn_words_leave_the_guest_command_line() {
        let args =
            "console=ttyAMA0 cairn.name=web  root=/dev/vda cairn.psci=1.0 cairn.on-reset=fail cairn.timeout=5m quiet";
        let p = plan(&board(2, &[Region::new(BASE, GIB)]), &modules(&[args]));
        let vm = &p.vms[0];
        assert_eq!(vm.guest_args, "console=ttyAMA0 root=/dev/vda quiet");
        assert_eq!((vm.name.as_str(), vm.psci), ("web", Some(Version::V1_0)));
        assert_eq!(vm.actions, VmActions { on_reset: OnReset::Fail, timeout_secs: Some(300) });
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("2", 4), Ok(vec![2]));
        assert_eq!(parse_cpus("0-1", 4), Ok(vec![0, 1]));
        assert_eq!(parse_cpus("3,1", 4), Ok(vec![1, 3]));
        assert_eq!(parse_cpus("0-1,3", 4), Ok(vec![0, 1, 3]));
        assert_eq!(parse_cpus("2-2", 4), Ok(vec![2]));
        assert_eq!(parse_cpus("1-0", 4), Err("`1-0` counts down (write 0-1)".into()));
        assert_eq!(parse_cpus("4", 4), Err("the board has CPUs 0-3".into()));
        assert_eq!(parse_cpus("0-1,1", 4), Err("CPU 1 is listed twice".into()));
        assert_eq!(parse_cpus("0", 1), Ok(vec![0]));
        assert_eq!(parse_cpus("1", 1), Err("the board has CPU 0".into()));
        for bad in ["a", ",", "", "1,", "-1", "1-", "+1", "0-1-2", "1 "] {
            assert!(parse_cpus(bad, 4).unwrap_err().contains("is not a CPU number"), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 * MIB));
        assert_eq!(parse_size("1g"), Ok(GIB));
        assert_eq!(parse_size("2048k"), Ok(2 * MIB));
        assert_eq!(parse_size("2097152"), Ok(2 * MIB));
        assert!(parse_size("512K").unwrap_err().contains("2 MiB"));
        for bad in ["", "M", "0", "0M", "1T", "-2M", "1.5G", "99999999999G", "3M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("web_1-a"), Ok("web_1-a"));
        assert_eq!(parse_name("abcdefghijklmno"), Ok("abcdefghijklmno"));
        for bad in ["", "abcdefghijklmnop", "a.b", "a b", "é"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        let free = [Region::new(BASE, GIB)];
        let p = plan(&board(4, &free), &modules(&["cairn.name=web", "cairn.name=web", "cairn.name=vm0", ""]));
        assert_eq!(
            lines(&p),
            [r#"web (module at 0x48800000): "cairn.name=web": the name is web (module at 0x48000000)'s already"#]
        );
        assert_eq!(p.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["web", "vm0", "vm3"]);
        let p = plan(&board(4, &free), &modules(&["", "cairn.name=vm0"]));
        assert_eq!(
            lines(&p),
            [r#"vm0 (module at 0x48800000): "cairn.name=vm0": the name is vm0 (module at 0x48000000)'s already"#]
        );
    }

    #[test]
    fn an_error_refuses_only_its_vm() {
        let free = [Region::new(BASE, GIB)];
        let p =
            plan(&board(4, &free), &modules(&["", "cairn.cpus=9", "cairn.colour=red", "cairn.psci=2.0 cairn.name=x"]));
        assert_eq!(
            lines(&p)[..2],
            [
                r#"vm1 (module at 0x48800000): "cairn.cpus=9": the board has CPUs 0-3"#,
                r#"vm2 (module at 0x49000000): "cairn.colour=red": Cairn has no setting `colour`"#,
            ]
        );
        assert!(lines(&p)[2].starts_with(r#"x (module at 0x49800000): "cairn.psci=2.0": unsupported PSCI version"#));
        assert_eq!((p.vms.len(), p.vms[0].cpus.len(), p.vms[0].ram.size), (1, 4, GIB), "the rest is vm0's");
        let bad = [
            "cairn.mem=512K",
            "cairn.on-reset=never",
            "cairn.timeout=soon",
            "cairn.cpus",
            "cairn.",
            "cairn.vcpus=2",
            "cairn.devices=/nope",
        ];
        let p = plan(&board(4, &free), &modules(&bad));
        assert_eq!((p.vms.len(), p.refused.len()), (0, bad.len()));
    }

    #[test]
    fn named_cpus_and_devices_may_not_overlap() {
        let free = [Region::new(BASE, GIB)];
        let args = [
            "cairn.cpus=0-1 cairn.devices=virtio_mmio@a000000",
            "cairn.cpus=1-2",
            "cairn.devices=/virtio_mmio@a000000",
            "",
        ];
        let p = plan(&board(4, &free), &modules(&args));
        assert_eq!(
            lines(&p),
            [
                r#"vm1 (module at 0x48800000): "cairn.cpus=1-2": CPU 1 is vm0's already"#,
                r#"vm2 (module at 0x49000000): "cairn.devices=/virtio_mmio@a000000": /virtio_mmio@a000000 is vm0's already"#,
            ]
        );
        assert_eq!(cpus(&p), [vec![0, 1], vec![2, 3]], "a refused VM holds no CPU");
        assert_eq!(p.vms[0].devices, [0, 1, 2]);
    }

    #[test]
    fn devices_by_path_or_node_name() {
        assert_eq!(parse_devices("/soc/virtio_mmio@a000200,pl011@9000000", &DEVICES), Ok(vec![0, 2]));
        assert_eq!(parse_devices("virtio_mmio@a000200", &DEVICES), Ok(vec![2]));
        assert!(parse_devices("/virtio_mmio@a000200", &DEVICES).unwrap_err().contains("no device"));
        assert!(parse_devices("virtio_mmio", &DEVICES).unwrap_err().contains("no device"));
        assert!(parse_devices("pl011@9000000,/pl011@9000000", &DEVICES).unwrap_err().contains("twice"));
        assert!(parse_devices("", &DEVICES).is_err());
        let twins = ["/a/uart@0", "/b/uart@0"];
        assert!(parse_devices("uart@0", &twins).unwrap_err().contains("several"));
        let free = [Region::new(BASE, GIB)];
        let p = plan(&board(4, &free), &modules(&["cairn.mem=3M", "", "cairn.devices=pl011@9000000"]));
        assert_eq!(
            p.vms.iter().map(|v| v.devices.clone()).collect::<Vec<_>>(),
            [vec![1, 2], vec![0]],
            "spares go to the first VM that starts"
        );
    }

    #[test]
    fn more_vms_than_cpus() {
        let free = [Region::new(BASE, GIB)];
        let p = plan(&board(4, &free), &modules(&[""; 5]));
        assert_eq!(lines(&p), ["vm4 (module at 0x4a000000): no CPU is left for it (CPUs 0-3 went to other VMs)"]);
        assert_eq!(cpus(&p), [vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!(ram(&p)[3], Region::new(BASE + 3 * 256 * MIB, 256 * MIB), "RAM is shared among the VMs that start");
        let p = plan(&board(2, &free), &modules(&["cairn.cpus=0-1", ""]));
        assert_eq!(lines(&p), ["vm1 (module at 0x48800000): no CPU is left for it (CPUs 0-1 went to other VMs)"]);
    }

    #[test]
    fn named_ram_that_does_not_fit_is_refused_in_order() {
        let free = [Region::new(BASE, GIB)];
        let args = ["cairn.mem=2G cairn.cpus=0-1", "cairn.mem=768M", "cairn.mem=512M", ""];
        let p = plan(&board(4, &free), &modules(&args));
        assert_eq!(
            lines(&p),
            [
                r#"vm0 (module at 0x48000000): "cairn.mem=2G": the board has only 1024 MiB of free RAM"#,
                r#"vm2 (module at 0x49000000): "cairn.mem=512M": no 512 MiB left in one piece (the largest is 256 MiB)"#,
            ]
        );
        assert_eq!(ram(&p), [Region::new(BASE, 768 * MIB), Region::new(BASE + 768 * MIB, 256 * MIB)]);
        assert_eq!(cpus(&p), [vec![0, 1], vec![2, 3]], "vm0's named CPUs went back to the pool");
    }

    #[test]
    fn a_share_shrinks_to_the_largest_free_piece() {
        let free = [Region::new(BASE, 512 * MIB), Region::new(0x8000_0000, 1536 * MIB)];
        let p = plan(&board(2, &free), &modules(&["", ""]));
        assert_eq!(ram(&p), [Region::new(0x8000_0000, GIB), Region::new(BASE, 512 * MIB)]);
        assert_eq!(p.notes, ["vm1 (module at 0x48800000): no 1024 MiB free in one piece; it gets 512 MiB"]);
        assert!(p.refused.is_empty());
    }

    #[test]
    fn a_vm_with_less_than_2_mib_is_refused() {
        let free = [Region::new(BASE, 6 * MIB)];
        let p = plan(&board(4, &free), &modules(&["", "", "", ""]));
        assert_eq!(lines(&p), ["vm3 (module at 0x49800000): less than 2 MiB of RAM is left for it"]);
        assert_eq!(ram(&p).iter().map(|r| r.size).collect::<Vec<_>>(), [2 * MIB; 3]);
        assert_eq!(cpus(&p), [vec![0, 1], vec![2], vec![3]], "vm3's CPU is shared again");
    }

    #[test]
    fn vm_conf_settings_under_bootargs() {
        let free = [Region::new(BASE, GIB)];
        let conf = "# the Pi's guest\ncpus=2-3\nmem = 64M # small\npsci=1.0\non-reset=stop\n\nname=pi";
        let mut m = modules(&["cairn.mem=128M cairn.name=pi2 console=tty1"]);
        m[0].vm_conf = Some(conf);
        let p = plan(&board(4, &free), &m);
        let vm = &p.vms[0];
        assert_eq!((vm.name.as_str(), vm.cpus.clone(), vm.ram.size), ("pi2", vec![2, 3], 128 * MIB));
        assert_eq!(
            (vm.psci, vm.actions.on_reset, vm.guest_args.as_str()),
            (Some(Version::V1_0), OnReset::Stop, "console=tty1")
        );
        m[0].vm_conf = Some("colour=red");
        assert_eq!(
            lines(&plan(&board(4, &free), &m)),
            [r#"pi2 (module at 0x48000000): vm.conf "colour=red": Cairn has no setting `colour`"#]
        );
        m[0].vm_conf = Some("cpus");
        assert!(lines(&plan(&board(4, &free), &m))[0].contains(r#"vm.conf "cpus": "#));
    }

    #[test]
    fn sdei_is_off_unless_asked_for() {
        let free = [Region::new(BASE, GIB)];
        let p = plan(&board(4, &free), &modules(&["cairn.sdei=on", "", "cairn.sdei=maybe"]));
        assert_eq!(p.vms.iter().map(|v| v.sdei).collect::<Vec<_>>(), [true, false]);
        assert_eq!(lines(&p), ["vm2 (module at 0x49000000): \"cairn.sdei=maybe\": expected on or off"]);
        let conf = [ModuleInput { address: BASE, bootargs: "", vm_conf: Some("sdei=on\n") }];
        assert!(plan(&board(4, &free), &conf).vms[0].sdei, "vm.conf's sdei=on");
    }

    #[test]
    fn snapshot_slots_follow_their_vm() {
        let free = [Region::new(BASE, 2 * GIB)];
        let named = plan(&board(4, &free), &modules(&["cairn.mem=256M cairn.snapshot=on", "cairn.snapshot=64M"]));
        let slots: Vec<Option<Region>> = named.vms.iter().map(|v| v.snapshot).collect();
        assert_eq!(named.vms[0].ram, Region::new(BASE, 256 * MIB));
        assert_eq!(slots[0], Some(Region::new(BASE + 256 * MIB, 258 * MIB)), "its RAM and the page map");
        assert_eq!(slots[1], Some(Region::new(BASE + 514 * MIB, 64 * MIB)));
        assert_eq!(named.vms[1].ram.size, 2 * GIB - 578 * MIB, "a sized slot comes out of the shares");
        // A sharer with snapshot=on takes two shares: 2 GiB - 2 MiB over 3.
        let shared = plan(&board(4, &free), &modules(&["cairn.snapshot=on", ""]));
        let share = align_down((2 * GIB - SLOT_OVERHEAD) / 3, RAM_GRANULE);
        assert_eq!(shared.vms[0].ram.size, share);
        assert_eq!(shared.vms[0].snapshot.map(|r| r.size), Some(share + SLOT_OVERHEAD));
        assert_eq!(shared.vms[1].ram.size, share);
        assert_eq!(shared.vms[1].snapshot, None);
    }

    #[test]
    fn a_slot_that_does_not_fit_refuses_its_vm() {
        let free = [Region::new(BASE, GIB)];
        let p = plan(&board(4, &free), &modules(&["cairn.mem=768M cairn.snapshot=on", "cairn.snapshot=maybe"]));
        assert!(p.vms.is_empty());
        assert_eq!(
            lines(&p),
            [
                "vm0 (module at 0x48000000): \"cairn.snapshot=on\": no room for its snapshot slot: no 770 MiB left in one piece (the largest is 256 MiB)",
                "vm1 (module at 0x48800000): \"cairn.snapshot=maybe\": expected a size such as 64M or 1G, or on, or off",
            ]
        );
    }

    #[test]
    fn legacy_vcpus_caps_the_shared_cpus() {
        let free = [Region::new(BASE, GIB)];
        let mut m = modules(&["", ""]);
        m[1].vm_conf = Some("vcpus=1");
        assert_eq!(cpus(&plan(&board(4, &free), &m)), [vec![0, 1, 2], vec![3]], "what vm1 leaves goes to vm0");
        m[0].vm_conf = Some("vcpus=2");
        assert_eq!(cpus(&plan(&board(4, &free), &m)), [vec![0, 1], vec![2]], "both capped: a CPU stays idle");
        m[1].vm_conf = Some("vcpus=0");
        assert!(lines(&plan(&board(4, &free), &m))[0].contains("at least 1"));
        assert_eq!(even_split(5, &[None, Some(1), None]), [2, 1, 2]);
        assert_eq!(even_split(0, &[None, None]), [0, 0]);
        assert_eq!(even_split(3, &[]), Vec::<usize>::new());
    }
}
