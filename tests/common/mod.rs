//! Boots the real Cairn image in real qemu-system-aarch64 and collects the serial log.
//! The image and guests come from scripts/build (run once per test binary); every log is
//! kept under target/test-logs/ so a failed boot can be read afterwards.
//!
//! `Boot::run` waits for QEMU to exit and returns the whole log (`Run`); `Boot::spawn`
//! starts an interactive `Session` (session.rs) that waits for text on the console, types
//! into it and checks QEMU's exit status. `Boot::linux` boots the default Linux guest
//! (scripts/guest-linux) and `Boot::native` boots the guest straight in QEMU without Cairn.

#![allow(dead_code)]

pub mod hang;
pub mod linux;
pub mod prompt;
pub mod regex;
pub mod session;

// Not every test binary uses every re-export.
#[allow(unused_imports)]
pub use regex::{re, Regex};
#[allow(unused_imports)]
pub use session::{without_interleaved_lines, ExitStatus, Pattern, Session, ShellMarker, WAIT_TIMEOUT};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where QEMU virt's guest-loader puts the guest, as in the README's command line.
pub const GUEST_ADDR: &str = "0x48000000";
/// Where the guest's initrd goes (scripts/run uses the same address).
pub const INITRD_ADDR: &str = "0x4c000000";
/// With several VMs, the modules are packed from GUEST_ADDR on, each at a 2 MiB boundary,
/// and must end below this: QEMU puts its device tree right after the 254 MiB Cairn's
/// Image header claims from 0x4020_0000 (README, "Plain QEMU").
const MODULE_WINDOW_END: u64 = 0x5000_0000;
const MODULE_ALIGN: u64 = 2 << 20;
/// The guest bootargs `Boot::linux` starts from.
pub const LINUX_BOOTARGS: &str = "console=ttyAMA0";
const TIMEOUT: Duration = Duration::from_secs(120);
/// QEMU's mux chardev escape: Ctrl-A c gives the input to the next frontend.
const MUX_NEXT_FRONTEND: &str = "\x01c";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Cairn image, built once per test binary by scripts/build.
pub fn cairn_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out =
            Command::new(root().join("scripts/build")).stderr(Stdio::inherit()).output().expect("scripts/build runs");
        assert!(out.status.success(), "scripts/build failed");
        let stdout = String::from_utf8(out.stdout).expect("utf-8 path");
        PathBuf::from(stdout.lines().last().expect("scripts/build prints the image path").trim())
    })
}

/// The default Linux guest: Debian's arm64 kernel Image and the busybox initramfs.
pub struct LinuxGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Fetched and built once per test binary by scripts/guest-linux (cached in ~/.cache/cairn).
pub fn linux_guest() -> &'static LinuxGuest {
    static GUEST: OnceLock<LinuxGuest> = OnceLock::new();
    GUEST.get_or_init(|| {
        let out = Command::new(root().join("scripts/guest-linux"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/guest-linux runs");
        assert!(out.status.success(), "scripts/guest-linux failed");
        let stdout = String::from_utf8(out.stdout).expect("utf-8 paths");
        let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
        let kernel = PathBuf::from(lines.next().expect("scripts/guest-linux prints the kernel path"));
        let initrd = PathBuf::from(lines.next().expect("scripts/guest-linux prints the initramfs path"));
        LinuxGuest { kernel, initrd }
    })
}

/// The Pi 4 device tree for QEMU raspi4b (scripts/qemu-raspi4b-dtb), once per binary.
pub fn raspi4b_dtb() -> &'static Path {
    static DTB: OnceLock<PathBuf> = OnceLock::new();
    DTB.get_or_init(|| {
        let out = Command::new(root().join("scripts/qemu-raspi4b-dtb"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/qemu-raspi4b-dtb runs");
        assert!(out.status.success(), "scripts/qemu-raspi4b-dtb failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().last().expect("a path").trim())
    })
}

/// A test guest's image, e.g. `guest("hypercalls")`.
pub fn guest(name: &str) -> PathBuf {
    cairn_image().parent().unwrap().join(format!("guest-{name}.bin"))
}

/// One QEMU boot: `run()` waits for QEMU to exit by itself, `spawn()` starts an
/// interactive `Session`.
pub struct Boot {
    pub name: String,
    pub smp: usize,
    pub gic: u8,
    pub mem: &'static str,
    pub virtualization: bool,
    /// Cairn's bootargs (`-append`); not used in native mode.
    pub append: String,
    pub guest: Option<PathBuf>,
    /// The guest's bootargs (guest-loader's `bootargs`, or `-append` in native mode).
    pub guest_args: Option<String>,
    pub initrd: Option<PathBuf>,
    /// Boots the guest directly in QEMU, without Cairn and without EL2.
    pub native: bool,
    /// Passes `-no-reboot`, so a reset ends QEMU (the default).
    pub no_reboot: bool,
    /// Appended to the QEMU command line as is.
    pub qemu_args: Vec<String>,
    /// Time allowed for each wait of a `Session`.
    pub wait_timeout: Duration,
    /// QEMU's raspi4b (Raspberry Pi 4: 4 CPUs, 2 GiB, GIC-400) instead of virt; the guest
    /// goes in a guest bundle loaded as the initrd, as the Pi's firmware would.
    pub raspi4b: bool,
    /// Extra scripts/guest-bundle options (raspi4b), e.g. `--on-reset fail` for vm.conf.
    pub bundle_args: Vec<String>,
    /// VMs after the first (`guest`, `initrd`, `guest_args`): one guest-loader kernel each.
    pub vms: Vec<ExtraVm>,
    /// A guest bundle made by the test itself (raspi4b), used instead of building one.
    pub bundle_file: Option<PathBuf>,
}

/// A VM besides the first: its kernel, initrd and bootargs (with its `cairn.*` words).
#[derive(Clone, Debug)]
pub struct ExtraVm {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub bootargs: String,
}

impl Boot {
    pub fn new(name: &str) -> Self {
        Boot {
            name: name.into(),
            smp: 1,
            gic: 3,
            mem: "1G",
            virtualization: true,
            append: String::new(),
            guest: None,
            guest_args: None,
            initrd: None,
            native: false,
            no_reboot: true,
            qemu_args: Vec::new(),
            wait_timeout: default_wait_timeout(),
            raspi4b: false,
            bundle_args: Vec::new(),
            vms: Vec::new(),
            bundle_file: None,
        }
    }

    /// Boots raspi4b with this guest bundle (e.g. one with several VMs).
    pub fn bundle_file(mut self, path: &Path) -> Self {
        self.bundle_file = Some(path.into());
        self
    }

    /// Adds a VM: `kernel` (a test guest's image, or Linux's), its initrd, its bootargs.
    pub fn vm(mut self, kernel: &Path, initrd: Option<&Path>, bootargs: &str) -> Self {
        self.vms.push(ExtraVm { kernel: kernel.into(), initrd: initrd.map(Into::into), bootargs: bootargs.into() });
        self
    }

    /// Adds a VM running the default Linux guest with `LINUX_BOOTARGS` and `extra`.
    pub fn linux_vm(self, extra: &str) -> Self {
        let linux = linux_guest();
        let (kernel, initrd) = (linux.kernel.clone(), linux.initrd.clone());
        self.vm(&kernel, Some(&initrd), &format!("{LINUX_BOOTARGS} {extra}"))
    }

    /// The guest-loader devices of every VM, packed from GUEST_ADDR on.
    fn packed_modules(&self) -> Vec<String> {
        let first = self.guest.as_ref().map(|k| ExtraVm {
            kernel: k.clone(),
            initrd: self.initrd.clone(),
            bootargs: self.guest_args.clone().unwrap_or_default(),
        });
        let mut addr = u64::from_str_radix(GUEST_ADDR.trim_start_matches("0x"), 16).unwrap();
        let mut devices = Vec::new();
        let mut place = |what: String, path: &Path| {
            let size = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len();
            devices.push(format!("guest-loader,addr={addr:#x},{what}"));
            addr = (addr + size).div_ceil(MODULE_ALIGN) * MODULE_ALIGN;
        };
        for vm in first.iter().chain(&self.vms) {
            let kernel =
                format!("kernel={},bootargs={}", qemu_opt(&vm.kernel.display().to_string()), qemu_opt(&vm.bootargs));
            place(kernel, &vm.kernel);
            if let Some(initrd) = &vm.initrd {
                place(format!("initrd={}", qemu_opt(&initrd.display().to_string())), initrd);
            }
        }
        assert!(addr <= MODULE_WINDOW_END, "the VMs' modules end at {addr:#x}, past {MODULE_WINDOW_END:#x}");
        devices
    }

    /// Extra scripts/guest-bundle options for the raspi4b bundle (vm.conf settings).
    pub fn bundle_args(mut self, args: &[&str]) -> Self {
        self.bundle_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Boots on QEMU's raspi4b with the Pi 4 device tree of scripts/qemu-raspi4b-dtb; the
    /// guest, its initrd and bootargs go into a guest bundle (scripts/guest-bundle).
    pub fn raspi4b(mut self) -> Self {
        self.raspi4b = true;
        self.smp = 4;
        self.gic = 2;
        self
    }

    pub fn smp(mut self, n: usize) -> Self {
        self.smp = n;
        self
    }

    pub fn gic(mut self, v: u8) -> Self {
        self.gic = v;
        self
    }

    pub fn no_virtualization(mut self) -> Self {
        self.virtualization = false;
        self
    }

    pub fn append(mut self, args: &str) -> Self {
        self.append = args.into();
        self
    }

    pub fn guest(mut self, name: &str) -> Self {
        self.guest = Some(guest(name));
        self
    }

    /// The default Linux guest (scripts/guest-linux) with bootargs `console=ttyAMA0`, its
    /// initramfs, and 2 GiB of RAM.
    pub fn linux(mut self) -> Self {
        let linux = linux_guest();
        self.guest = Some(linux.kernel.clone());
        self.initrd = Some(linux.initrd.clone());
        self.guest_args = Some(LINUX_BOOTARGS.into());
        self.mem = "2G";
        self
    }

    pub fn mem(mut self, size: &'static str) -> Self {
        self.mem = size;
        self
    }

    /// Adds to the guest's bootargs.
    pub fn bootargs(mut self, extra: &str) -> Self {
        self.guest_args = Some(match self.guest_args.take() {
            Some(a) if !a.is_empty() => format!("{a} {extra}"),
            _ => extra.into(),
        });
        self
    }

    pub fn initrd(mut self, path: &Path) -> Self {
        self.initrd = Some(path.into());
        self
    }

    /// Boots the guest straight in QEMU (`-kernel`, `-initrd`, `-append`) without Cairn
    /// and without `virtualization=on`: the reference the tests and benchmarks compare with.
    pub fn native(mut self) -> Self {
        self.native = true;
        self
    }

    /// Leaves out `-no-reboot`: a reset restarts the machine instead of ending QEMU.
    pub fn allow_reboot(mut self) -> Self {
        self.no_reboot = false;
        self
    }

    /// Extra QEMU arguments, e.g. `.qemu_args(&["-icount", "shift=0"])`.
    pub fn qemu_args(mut self, args: &[&str]) -> Self {
        self.qemu_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Time allowed for each wait of a `Session` (default `WAIT_TIMEOUT`, or
    /// CAIRN_TEST_WAIT_TIMEOUT seconds).
    pub fn wait_timeout(mut self, t: Duration) -> Self {
        self.wait_timeout = t;
        self
    }

    pub fn command(&self) -> Command {
        if self.raspi4b {
            return self.raspi4b_command();
        }
        let mut machine = format!("virt,gic-version={}", self.gic);
        if self.virtualization && !self.native {
            machine.push_str(",virtualization=on");
        }
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(["-M", &machine, "-cpu", "max", "-m", self.mem, "-smp", &self.smp.to_string()]);
        // QEMU's monitor listens next to the serial log (or at CAIRN_QEMU_MONITOR): a test
        // that gives up asks it where every CPU is (hang.rs); a person may look too.
        let monitor = hang::monitor_arg(&hang::monitor_socket(&self.name));
        cmd.args(["-display", "none", "-monitor", &monitor, "-serial", "stdio"]);
        if self.no_reboot {
            cmd.arg("-no-reboot");
        }
        if self.native {
            let guest = self.guest.as_ref().expect("native mode boots the guest itself: name one (.guest or .linux)");
            cmd.arg("-kernel").arg(guest);
            if let Some(initrd) = &self.initrd {
                cmd.arg("-initrd").arg(initrd);
            }
            if let Some(a) = &self.guest_args {
                cmd.args(["-append", a]);
            }
        } else {
            cmd.arg("-kernel").arg(cairn_image());
            if !self.append.is_empty() {
                cmd.args(["-append", &self.append]);
            }
            if !self.vms.is_empty() {
                for dev in self.packed_modules() {
                    cmd.args(["-device", &dev]);
                }
                cmd.args(&self.qemu_args);
                return cmd;
            }
            if let Some(g) = &self.guest {
                let mut dev = format!("guest-loader,addr={GUEST_ADDR},kernel={}", qemu_opt(&g.display().to_string()));
                if let Some(a) = &self.guest_args {
                    dev.push_str(&format!(",bootargs={}", qemu_opt(a)));
                }
                cmd.args(["-device", &dev]);
            }
            if let Some(initrd) = &self.initrd {
                cmd.args([
                    "-device",
                    &format!("guest-loader,addr={INITRD_ADDR},initrd={}", qemu_opt(&initrd.display().to_string())),
                ]);
            }
        }
        cmd.args(&self.qemu_args);
        cmd
    }

    fn raspi4b_command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-aarch64");
        // Both UARTs on the test's console: the PL011 (serial0, the guest's ttyAMA0,
        // which takes the typed input) and the mini UART (serial1), which the Pi's
        // stdout-path names and Cairn logs to.
        let monitor = hang::monitor_arg(&hang::monitor_socket(&self.name));
        cmd.args(["-M", "raspi4b", "-display", "none", "-monitor", &monitor]);
        cmd.args(["-chardev", "stdio,id=console,mux=on", "-serial", "chardev:console", "-serial", "chardev:console"]);
        cmd.arg("-dtb").arg(raspi4b_dtb());
        if self.no_reboot {
            cmd.arg("-no-reboot");
        }
        cmd.arg("-kernel").arg(cairn_image());
        if !self.append.is_empty() {
            cmd.args(["-append", &self.append]);
        }
        if let Some(bundle) = &self.bundle_file {
            cmd.arg("-initrd").arg(bundle);
        } else if let Some(g) = &self.guest {
            cmd.arg("-initrd").arg(self.bundle(g));
        }
        cmd.args(&self.qemu_args);
        cmd
    }

    /// The guest bundle for this boot, built by scripts/guest-bundle into
    /// target/test-bundles/<name>.cpio.
    fn bundle(&self, kernel: &Path) -> PathBuf {
        let dir = root().join("target/test-bundles");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!("{}.cpio", self.name));
        let mut cmd = Command::new(root().join("scripts/guest-bundle"));
        cmd.arg("--kernel").arg(kernel).arg("-o").arg(&out);
        match &self.initrd {
            Some(initrd) => cmd.arg("--initrd").arg(initrd),
            None => cmd.args(["--initrd", "none"]),
        };
        cmd.args(["--append", self.guest_args.as_deref().unwrap_or("")]);
        cmd.args(&self.bundle_args);
        let status = cmd.stdout(Stdio::null()).status().expect("scripts/guest-bundle runs");
        assert!(status.success(), "scripts/guest-bundle failed");
        out
    }

    /// Boots with the serial console attached to the test (see `Session`); the log goes to
    /// target/test-logs/<name>.log.
    pub fn spawn(&self) -> Session {
        let path = root().join("target/test-logs").join(format!("{}.log", self.name));
        let mut s = Session::start(&self.name, self.command(), path, self.wait_timeout);
        if self.raspi4b {
            // QEMU's multiplexed console sends typed input to the UART added last (the
            // mini UART); Ctrl-A c moves it on to the PL011, the guest's shell.
            s.send(MUX_NEXT_FRONTEND);
        }
        s
    }

    /// Boots, waits for QEMU to exit (or kills it after the timeout), keeps the log.
    pub fn run(&self) -> Run {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-aarch64 starts (scripts/setup-host installs it)");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let start = Instant::now();
        let mut registers = None;
        let (status, timed_out) = loop {
            if let Some(status) = child.try_wait().expect("wait for qemu") {
                break (status.code(), false);
            }
            if start.elapsed() > TIMEOUT {
                registers = Some(hang::ask_registers(&hang::monitor_socket(&self.name)));
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let log = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
        let dir = root().join("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.log", self.name));
        let hang = registers.map(|answer| match answer {
            Ok(answer) => hang::report(&answer, &log),
            Err(e) => e,
        });
        let cpus = hang.as_ref().map_or(String::new(), |h| format!("\n--- CPUs when the harness gave up ---\n{h}"));
        std::fs::write(&path, format!("{log}\n--- qemu stderr ---\n{stderr}{cpus}")).unwrap();
        Run { log, status, timed_out, elapsed: start.elapsed(), log_path: path, hang }
    }
}

/// `WAIT_TIMEOUT`, or CAIRN_TEST_WAIT_TIMEOUT seconds when set (e.g. to give up sooner
/// while reproducing a hang in a loop).
fn default_wait_timeout() -> Duration {
    std::env::var("CAIRN_TEST_WAIT_TIMEOUT").ok().and_then(|s| s.parse().ok()).map_or(WAIT_TIMEOUT, Duration::from_secs)
}

/// A value inside a QEMU `-device` option: commas are doubled.
fn qemu_opt(value: &str) -> String {
    value.replace(',', ",,")
}

pub struct Run {
    pub log: String,
    pub status: Option<i32>,
    pub timed_out: bool,
    /// Where the CPUs were when the harness gave up (hang.rs), if it did.
    pub hang: Option<String>,
    pub elapsed: Duration,
    pub log_path: PathBuf,
}

impl Run {
    fn context(&self) -> String {
        format!("(serial log: {})\n{}", self.where_to_look(), self.log)
    }

    /// The serial log's path and, if the harness gave up on QEMU, where its CPUs were:
    /// for failure messages.
    pub fn where_to_look(&self) -> String {
        match &self.hang {
            Some(cpus) => format!("{}\n--- CPUs when the harness gave up ---\n{cpus}", self.log_path.display()),
            None => self.log_path.display().to_string(),
        }
    }

    pub fn assert_contains(&self, needle: &str) {
        assert!(self.count(needle) > 0, "expected {needle:?} in the serial log {}", self.context());
    }

    pub fn assert_lacks(&self, needle: &str) {
        assert!(self.count(needle) == 0, "{needle:?} in the serial log {}", self.context());
    }

    pub fn assert_clean_exit(&self) {
        assert!(!self.timed_out, "QEMU did not exit within {TIMEOUT:?} {}", self.context());
        assert_eq!(self.status, Some(0), "QEMU exit status {}", self.context());
    }

    /// How often `needle` was written. The console puts whole lines of Cairn's and of
    /// unfocused VMs where the focused VM's output stands, even mid-line (src/conmux.rs):
    /// each writer's text is searched apart, so a line split by one still counts.
    pub fn count(&self, needle: &str) -> usize {
        let (stream, lines) = session::split_writers(&self.log);
        stream.matches(needle).count() + lines.iter().map(|l| l.matches(needle).count()).sum::<usize>()
    }

    /// Asserts the guest printed its pass line and no FAIL line.
    pub fn assert_guest_passed(&self, guest: &str) {
        assert!(self.count(": FAIL") == 0, "a check failed {}", self.context());
        self.assert_contains(&format!("CAIRN-TEST {guest} result: pass"));
    }
}
