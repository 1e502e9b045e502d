//! Snapshots from Cairn's prompt, as a user takes them: the bare-metal `counter` guest
//! counts on two vCPUs (keeping its counts in FP/SIMD and SVE registers too, and saying
//! if it ever finds them lost); the test pauses it, saves it, lets it count on, restores
//! it and sees the count back at the saved value, paused as it was; then saves it while
//! it runs and restores it running. Serial logs: target/test-logs/snapshot-*.log.

mod common;

use common::linux::{block, Checks};
use common::prompt::{at_prompt, switch_to, TO_PROMPT};
use common::{re, Boot, Session, ShellMarker};
use std::time::Duration;

/// The counter guest's VM: 64 MiB of RAM and a slot as large (guests/counter).
const SETTINGS: &str = "cairn.name=counter cairn.mem=64M cairn.snapshot=on";
/// What the console says when the input goes to the counter.
const TO_COUNTER: &str = "vm0 (counter)";
/// How long the test watches a paused VM for output it must not print.
const QUIET: Duration = Duration::from_secs(2);

/// The counts `count N (...)` in `log`, in order.
fn counts(log: &str) -> Vec<u64> {
    log.lines().filter_map(|l| l.split("count ").nth(1)?.split(' ').next()?.parse().ok()).collect()
}

/// The latest count printed so far.
fn last_count(s: &Session) -> u64 {
    counts(&s.log()).last().copied().unwrap_or(0)
}

/// Waits until the guest has printed a count of at least `n`.
fn wait_for_count(s: &mut Session, n: u64) {
    while last_count(s) < n {
        s.wait_for(re(r"count \d+ \("));
    }
}

/// Waits for the save's own line (run::snapshot) and returns it.
fn wait_saved(s: &mut Session, since: usize) -> String {
    s.wait_for_since(since, re(r"vm0 \(counter\): (saved|not saved): .*$"))
}

#[test]
fn a_counting_guest_is_saved_and_restored_gicv3() {
    a_counting_guest_is_saved_and_restored(3);
}

#[test]
fn a_counting_guest_is_saved_and_restored_gicv2() {
    a_counting_guest_is_saved_and_restored(2);
}

fn a_counting_guest_is_saved_and_restored(gic: u8) {
    let mut s =
        Boot::new(&format!("snapshot-counter-gicv{gic}")).smp(2).gic(gic).guest("counter").bootargs(SETTINGS).spawn();
    let mut c = Checks::new();
    s.wait_for(ShellMarker("counter: 2 vCPUs count"));
    wait_for_count(&mut s, 3);
    switch_to(&mut s, TO_PROMPT);

    // Paused, saved, let run on, restored: back at the saved count, paused as it was.
    let paused = at_prompt(&mut s, "pause counter");
    c.check("pause pauses it", paused.contains("counter paused"), || block(&paused));
    std::thread::sleep(QUIET);
    let at_save = last_count(&s);
    let mark = s.mark();
    let saving = at_prompt(&mut s, "save counter");
    c.check("save starts a save", saving.contains("saving counter"), || block(&saving));
    let saved = wait_saved(&mut s, mark);
    c.check("the save completes", saved.contains(": saved: 2 vCPUs"), || format!("    {saved}"));
    let info = at_prompt(&mut s, "info counter");
    c.check(
        "info shows the snapshot, taken paused",
        info.contains("a snapshot with") && info.contains("taken paused"),
        || block(&info),
    );
    c.check("a paused VM stays paused through a save", counts(&s.log_since(mark)).is_empty(), || {
        block(&s.log_since(mark))
    });
    at_prompt(&mut s, "resume counter");
    wait_for_count(&mut s, at_save + 15);
    let before_restore = last_count(&s);
    let restored = at_prompt(&mut s, "restore counter");
    c.check("restore restores it, paused", restored.contains("counter restored: 2 of 2 vCPUs on, paused"), || {
        block(&restored)
    });
    let quiet = s.mark();
    std::thread::sleep(QUIET);
    c.check("restored paused, it prints nothing", counts(&s.log_since(quiet)).is_empty(), || {
        block(&s.log_since(quiet))
    });
    let resumed = s.mark();
    at_prompt(&mut s, "resume counter");
    s.wait_for_since(resumed, re(r"count \d+ \("));
    let after: Vec<u64> = counts(&s.log_since(resumed));
    c.check("after the restore it counts on from the saved count", after.first() == Some(&(at_save + 1)), || {
        format!("    saved at {at_save}, {before_restore} before the restore, then {after:?}")
    });

    // Saved while it runs, restored running: back to a count from the time of the save.
    wait_for_count(&mut s, at_save + 8);
    let asked = last_count(&s);
    let mark = s.mark();
    at_prompt(&mut s, "save counter");
    let saved = wait_saved(&mut s, mark);
    let answered = last_count(&s);
    c.check("a running VM is saved", saved.contains(": saved:"), || format!("    {saved}"));
    wait_for_count(&mut s, answered + 10);
    let before_restore = last_count(&s);
    let restored_at = s.mark();
    let restored = at_prompt(&mut s, "restore counter");
    c.check("restore restores it, running", restored.contains("counter restored: 2 of 2 vCPUs on, running"), || {
        block(&restored)
    });
    s.wait_for_since(restored_at, re(r"count \d+ \("));
    let first = counts(&s.log_since(restored_at)).first().copied();
    c.check(
        "restored running, it counts on from the count it had at the save",
        first.is_some_and(|n| n > asked && n <= answered + 1),
        || {
            format!(
                "    save asked at {asked}, saved by {answered}, {before_restore} before the restore, then {first:?}"
            )
        },
    );

    // Commands typed while it reboots, all at once: each gets its answer, the save
    // completes, and what it saved (the VM at its new start) restores and counts.
    let burst = s.mark();
    s.send("reset counter\nsave counter\nlist\ninfo counter\npause counter\nresume counter\n");
    let saved = wait_saved(&mut s, burst);
    s.wait_for_since(burst, re(r"counter resumed|counter is not paused|a save is under way"));
    let answers = s.log_since(burst);
    c.check(
        "commands typed while it reboots each get their answer",
        answers.contains("counter reset") && answers.contains("saving counter") && answers.contains("Name "),
        || block(&answers),
    );
    c.check("a save right after a reset completes", saved.contains(": saved:"), || format!("    {saved}"));
    let rebooted = s.mark();
    s.wait_for_since(rebooted, re(r"count 3 \("));
    let again = at_prompt(&mut s, "restore counter");
    c.check("that snapshot restores", again.contains("counter restored"), || block(&again));
    let after = s.mark();
    s.wait_for_since(after, re(r"count \d+ \("));

    // A snapshot survives the VM's stop: restore brings it back from off.
    let stopped = at_prompt(&mut s, "stop counter");
    c.check("stop stops it", stopped.contains("counter stopped"), || block(&stopped));
    let back = at_prompt(&mut s, "restore counter");
    c.check("restore brings a stopped VM back", back.contains("counter restored"), || block(&back));
    let list = at_prompt(&mut s, "list");
    c.check("list shows it running", list.lines().any(|l| l.starts_with("counter") && l.contains("r")), || {
        block(&list)
    });

    let lost: Vec<&str> = s.log().lines().filter(|l| l.contains("lost its registers")).map(|_| "").collect();
    c.check("no vCPU ever found its FP/SIMD or SVE registers lost", lost.is_empty(), || {
        block(&s.log().lines().filter(|l| l.contains("lost")).collect::<Vec<_>>().join("\n"))
    });
    switch_to(&mut s, TO_COUNTER);
    s.send("q");
    let status = s.wait_exit();
    c.check("q powers it off and QEMU exits 0", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}

/// Debian's Linux on two vCPUs with 256 MiB and a slot as large: saved while it runs, a
/// file written after the save is gone after the restore, and the restored Linux runs on
/// where it was: its shell answers, its clock goes on from the save, it reports no stall
/// or soft lockup, and it powers off as usual.
#[test]
fn a_linux_vm_is_saved_and_restored() {
    let mut s = Boot::new("snapshot-linux")
        .linux()
        .smp(2)
        .gic(3)
        .bootargs("cairn.name=linux cairn.mem=256M cairn.snapshot=on")
        .spawn();
    let mut c = Checks::new();
    s.wait_for_shell();
    s.sh("echo before > /tmp/mark");
    let uptime_at_save = uptime(&mut s);
    switch_to(&mut s, TO_PROMPT);
    let mark = s.mark();
    at_prompt(&mut s, "save linux");
    let saved = s.wait_for_since(mark, re(r"vm0 \(linux\): (saved|not saved): .*$"));
    c.check("Linux is saved", saved.contains(": saved: 2 vCPUs"), || format!("    {saved}"));
    switch_to(&mut s, TO_LINUX);
    s.sh("echo after > /tmp/mark");
    std::thread::sleep(Duration::from_secs(3));
    let uptime_before_restore = uptime(&mut s);
    switch_to(&mut s, TO_PROMPT);
    let restored = at_prompt(&mut s, "restore linux");
    c.check("restore restores it, running", restored.contains("linux restored: 2 of 2 vCPUs on, running"), || {
        block(&restored)
    });
    switch_to(&mut s, TO_LINUX);
    let mark_file = s.sh_value("cat /tmp/mark");
    c.check("the file is as it was at the save", mark_file == "before", || format!("    /tmp/mark: {mark_file:?}"));
    let uptime_after = uptime(&mut s);
    c.check(
        "its clock goes on from the save",
        uptime_after > uptime_at_save && uptime_after < uptime_before_restore,
        || format!("    uptime at the save {uptime_at_save}, before the restore {uptime_before_restore}, after {uptime_after}"),
    );
    let stalls = s.sh_value("dmesg | grep -ciE 'soft lockup|stall|hung task|BUG:|Oops' || true");
    c.check("no stall, soft lockup or oops after the restore", stalls == "0", || format!("    {stalls}"));
    s.send_line("poweroff -f");
    let status = s.wait_exit();
    c.check("it powers off and QEMU exits 0", status == Some(0), || format!("    QEMU's status: {status:?}"));
    c.finish(&mut s);
}

/// What the console says when the input goes to the Linux VM.
const TO_LINUX: &str = "vm0 (linux)";

/// Linux's uptime in seconds (/proc/uptime).
fn uptime(s: &mut Session) -> f64 {
    let text = s.sh_value("cat /proc/uptime");
    text.split_whitespace().next().and_then(|u| u.parse().ok()).unwrap_or(0.0)
}
