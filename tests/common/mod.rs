//! Boots the real Cairn image in real qemu-system-aarch64 and collects the serial log.
//! The image and guests come from scripts/build (run once per test binary); every log is
//! kept under target/test-logs/ so a failed boot can be read afterwards.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where QEMU virt's guest-loader puts the guest, as in the README's command line.
pub const GUEST_ADDR: &str = "0x48000000";
const TIMEOUT: Duration = Duration::from_secs(120);

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

/// A test guest's image, e.g. `guest("hypercalls")`.
pub fn guest(name: &str) -> PathBuf {
    cairn_image().parent().unwrap().join(format!("guest-{name}.bin"))
}

/// One QEMU boot.
pub struct Boot {
    pub name: String,
    pub smp: usize,
    pub gic: u8,
    pub mem: &'static str,
    pub virtualization: bool,
    pub append: String,
    pub guest: Option<PathBuf>,
    pub guest_args: Option<String>,
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
        }
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

    pub fn command(&self) -> Command {
        let mut machine = format!("virt,gic-version={}", self.gic);
        if self.virtualization {
            machine.push_str(",virtualization=on");
        }
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(["-M", &machine, "-cpu", "max", "-m", self.mem, "-smp", &self.smp.to_string()]);
        cmd.args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"]);
        cmd.arg("-kernel").arg(cairn_image());
        if !self.append.is_empty() {
            cmd.args(["-append", &self.append]);
        }
        if let Some(g) = &self.guest {
            let mut dev = format!("guest-loader,addr={GUEST_ADDR},kernel={}", g.display());
            if let Some(a) = &self.guest_args {
                dev.push_str(&format!(",bootargs={a}"));
            }
            cmd.args(["-device", &dev]);
        }
        cmd
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
        let (status, timed_out) = loop {
            if let Some(status) = child.try_wait().expect("wait for qemu") {
                break (status.code(), false);
            }
            if start.elapsed() > TIMEOUT {
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
        std::fs::write(&path, format!("{log}\n--- qemu stderr ---\n{stderr}")).unwrap();
        Run { log, status, timed_out, elapsed: start.elapsed(), log_path: path }
    }
}

pub struct Run {
    pub log: String,
    pub status: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub log_path: PathBuf,
}

impl Run {
    fn context(&self) -> String {
        format!("(serial log: {})\n{}", self.log_path.display(), self.log)
    }

    pub fn assert_contains(&self, needle: &str) {
        assert!(self.log.contains(needle), "expected {needle:?} in the serial log {}", self.context());
    }

    pub fn assert_clean_exit(&self) {
        assert!(!self.timed_out, "QEMU did not exit within {TIMEOUT:?} {}", self.context());
        assert_eq!(self.status, Some(0), "QEMU exit status {}", self.context());
    }

    pub fn count(&self, needle: &str) -> usize {
        self.log.matches(needle).count()
    }

    /// Asserts the guest printed its pass line and no FAIL line.
    pub fn assert_guest_passed(&self, guest: &str) {
        assert!(!self.log.contains(": FAIL"), "a check failed {}", self.context());
        self.assert_contains(&format!("CAIRN-TEST {guest} result: pass"));
    }
}
