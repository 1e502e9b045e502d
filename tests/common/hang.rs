//! What the machine's CPUs were doing when a test gave up waiting: QEMU's monitor (a
//! Unix socket next to the serial log) is asked for every CPU's registers before QEMU is
//! killed, and each CPU's PC and return address are named, Cairn's own (EL2) as functions
//! and source lines from its ELF. A hang in CI is then readable from the failure message
//! alone: which CPUs were stuck in Cairn, and where.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::root;

/// How long QEMU's monitor gets to answer, in all, and the quiet after which its answer
/// is taken as complete.
const ANSWER_TIME: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);
/// Unix socket paths are limited to 108 bytes (`sun_path`).
const MAX_SOCKET_PATH: usize = 100;
/// What Cairn's banner says of where it was loaded (src/main.rs), which its PCs are
/// relative to: it is linked at 0.
const IMAGE_AT: &str = ", image at 0x";

/// The socket QEMU's monitor listens on for the boot `name` (CAIRN_QEMU_MONITOR, when
/// set, chooses it instead).
pub fn monitor_socket(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var("CAIRN_QEMU_MONITOR") {
        if !path.is_empty() {
            return PathBuf::from(path);
        }
    }
    let beside_log = root().join("target/test-logs").join(format!("{name}.monitor"));
    if beside_log.as_os_str().len() <= MAX_SOCKET_PATH {
        return beside_log;
    }
    std::env::temp_dir().join(format!("cairn-{}-{name}.monitor", std::process::id()))
}

/// QEMU's `-monitor` argument for `socket`: its directory made (in a fresh clone the
/// first boot comes before any log), any stale socket file removed.
pub fn monitor_arg(socket: &Path) -> String {
    if let Some(dir) = socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(socket);
    format!("unix:{},server=on,wait=off", socket.display())
}

/// Asks the monitor at `socket` for every CPU's registers (`info registers -a`); the raw
/// answer, or why there is none.
pub fn ask_registers(socket: &Path) -> Result<String, String> {
    let mut monitor = UnixStream::connect(socket).map_err(|e| format!("monitor {}: {e}", socket.display()))?;
    monitor.set_read_timeout(Some(QUIET)).map_err(|e| e.to_string())?;
    monitor.write_all(b"info registers -a\n").map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    while started.elapsed() < ANSWER_TIME {
        match monitor.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) if !answer.is_empty() => break, // quiet: the answer is complete
            Err(_) => {}
        }
    }
    // The connection just closes: the caller kills QEMU itself, and says so.
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// One CPU in the monitor's answer.
#[derive(Debug, Default, PartialEq, Eq)]
struct CpuState {
    index: usize,
    pc: u64,
    lr: u64,
    /// `EL2h`, `EL1h`, `EL0t`...
    mode: String,
}

/// The CPUs in an `info registers -a` answer: blocks that start `CPU#n`, with `PC=`,
/// `X30=` and `PSTATE=... ELnx` in them.
fn parse(answer: &str) -> Vec<CpuState> {
    let mut cpus: Vec<CpuState> = Vec::new();
    let hex = |s: &str| u64::from_str_radix(s.trim(), 16).ok();
    for line in answer.lines() {
        // (The monitor may wrap what it prints in terminal escapes: look inside the line.)
        let header = line.find("CPU#").map(|at| &line[at + "CPU#".len()..]);
        if let Some(n) = header.and_then(|n| n.split_whitespace().next()).and_then(|n| n.parse().ok()) {
            cpus.push(CpuState { index: n, ..CpuState::default() });
            continue;
        }
        let Some(cpu) = cpus.last_mut() else { continue };
        for (i, field) in line.split_whitespace().enumerate() {
            if let Some(v) = field.strip_prefix("PC=").and_then(hex) {
                cpu.pc = v;
            } else if let Some(v) = field.strip_prefix("X30=").and_then(hex) {
                cpu.lr = v;
            } else if i > 0 && field.starts_with("EL") && line.contains("PSTATE=") {
                cpu.mode = field.to_string();
            }
        }
    }
    cpus
}

/// Where Cairn was loaded, from its banner in the serial `log`.
fn image_base(log: &str) -> Option<u64> {
    let at = log.find(IMAGE_AT)? + IMAGE_AT.len();
    let digits: String = log[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&digits, 16).ok()
}

/// Cairn's ELF, with the symbols and line tables the image was made from.
fn cairn_elf() -> PathBuf {
    root().join("target/aarch64-unknown-none-softfloat/release/cairn")
}

/// `file:line` with the file cut to its last two components.
fn short_location(location: &str) -> String {
    let parts: Vec<&str> = location.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [last, dir, _] => format!("{dir}/{last}"),
        _ => location.to_string(),
    }
}

/// One address's frames from `addr2line -i` (function and location lines in pairs,
/// innermost first) as one line: the innermost frame, then Cairn's own frames outwards
/// (`f (file:line) < cairn::g (file:line)`).
fn frames_line(pairs: &[&str]) -> String {
    let frames: Vec<(&str, &str)> = pairs.chunks(2).map(|f| (f[0], f.get(1).copied().unwrap_or("?"))).collect();
    let shown = frames.iter().enumerate().filter(|(i, (function, _))| *i == 0 || function.starts_with("cairn::"));
    shown.map(|(_, (function, at))| format!("{function} ({})", short_location(at))).collect::<Vec<_>>().join(" < ")
}

/// `offsets` in Cairn's ELF, one line each, through binutils' addr2line (`-a` heads
/// each address's frames with the address; `-i` adds the functions it was inlined into).
fn symbolize(offsets: &[u64]) -> Vec<String> {
    let unknown = || vec![String::from("?"); offsets.len()];
    let mut cmd = Command::new("addr2line");
    cmd.args(["-a", "-f", "-C", "-i", "-e"]).arg(cairn_elf());
    cmd.args(offsets.iter().map(|o| format!("{o:#x}")));
    let Ok(out) = cmd.output() else { return unknown() };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("0x") {
            blocks.push(Vec::new());
        } else if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    if blocks.len() == offsets.len() {
        blocks.iter().map(|b| frames_line(b)).collect()
    } else {
        unknown()
    }
}

/// The report: a line per CPU, its mode, PC and return address, Cairn's named.
pub fn report(answer: &str, log: &str) -> String {
    let cpus = parse(answer);
    if cpus.is_empty() {
        return format!("no registers in the monitor's answer:\n{answer}");
    }
    let base = image_base(log);
    let at_el2 = |c: &CpuState| c.mode.starts_with("EL2");
    let mut offsets = Vec::new();
    if let Some(base) = base {
        for c in cpus.iter().filter(|c| at_el2(c)) {
            offsets.extend([c.pc.wrapping_sub(base), c.lr.wrapping_sub(base)]);
        }
    }
    let mut names = symbolize(&offsets).into_iter();
    let mut out = String::new();
    for c in &cpus {
        out.push_str(&format!("cpu{} {} pc {:#x} lr {:#x}", c.index, c.mode, c.pc, c.lr));
        if at_el2(c) && base.is_some() {
            let (pc, lr) = (names.next().unwrap_or_default(), names.next().unwrap_or_default());
            out.push_str(&format!("\n    in Cairn: {pc}\n    called from: {lr}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "QEMU 10.0.2 monitor - type 'help' for more information\n\
        (qemu) info registers -a\n\nCPU#0\n PC=0000000040212345 X00=0000000000000000\n\
        X28=0000000000000000 X29=0000000040ffff00 X30=0000000040210000  SP=0000000040ffff00\n\
        PSTATE=600003c9 -ZC- EL2h    BTYPE=0\n\nCPU#1\n PC=ffff800008012345 X00=1\n\
        X30=ffff800008000000  SP=0\nPSTATE=604003c5 -ZC- EL1h\n";

    #[test]
    fn every_cpus_pc_return_address_and_mode_are_read() {
        assert_eq!(
            parse(ANSWER),
            [
                CpuState { index: 0, pc: 0x4021_2345, lr: 0x4021_0000, mode: "EL2h".into() },
                CpuState { index: 1, pc: 0xffff_8000_0801_2345, lr: 0xffff_8000_0800_0000, mode: "EL1h".into() },
            ]
        );
    }

    #[test]
    fn the_image_base_comes_from_cairns_banner() {
        let log = "cairn[cpu0] INFO  Cairn 0.1.0 at EL2: 2 CPUs, 1024 MiB RAM, GICv3, image at 0x40200000\n";
        assert_eq!(image_base(log), Some(0x4020_0000));
        assert_eq!(image_base("no banner"), None);
    }
}
