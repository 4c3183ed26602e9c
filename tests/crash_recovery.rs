//! Crash recovery, end to end: the real `processor` binary over a generated file of 1M events
//! with malformed and late lines and a short checkpoint interval, killed with SIGKILL at
//! random moments after its checkpoints show progress and restarted each time, must write
//! exactly the rows of an uninterrupted run at parallelism 1 (as a sorted set of lines, byte
//! for byte; the killed runs at parallelism 1, 2 and 4), and
//! exactly its dead letters and late records (as multisets: they carry the time they were
//! written). Damaged checkpoints fall back or fail with a clear error.
//!
//! The test sets the pace, not the machine: the starts that are killed replay the input at
//! [`PACE`] (its two hours of event time in [`PACED_RUN`]), so none can finish before its
//! kill however fast the build; the last start runs at full speed.

#[path = "support/child.rs"]
mod child;

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use child::{Proc, DEADLINE};

use llm_optimizer_processor::workload::{generate, to_json_lines, WorkloadSpec};

/// Events of the kill tests (the damaged-checkpoint tests need fewer).
const EVENTS: usize = 1_000_000;
const EVENTS_DAMAGE: usize = 240_000;

/// The replay rate of the starts that are killed: the generated two hours of event time in
/// [`PACED_RUN`], far longer than any start lives before its kill.
const PACE: &str = "60x";
const PACED_RUN: Duration = Duration::from_secs(120);

/// How long a killed start runs after its first checkpoint at most (a random moment in it).
const KILL_WITHIN: Duration = Duration::from_millis(1500);

struct Scenario {
    backend: &'static str,
    window: &'static str,
    parallelism: u32,
}

fn config(dir: &Path, s: &Scenario) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            r#"processor:
  parallelism: {parallelism}
  checkpoint_interval_secs: 0.1
  state:
    backend: {backend}
    path: {dir}/state
    checkpoint_path: {dir}/checkpoints
  windows:
    default_type: {window}
    tumbling: {{ size_secs: 60, allowed_lateness_secs: 60 }}
    sliding: {{ size_secs: 300, slide_secs: 60, allowed_lateness_secs: 60 }}
    session: {{ gap_secs: 30, allowed_lateness_secs: 60 }}
  watermark:
    max_out_of_orderness_secs: 30
    emit_interval_secs: 0
"#,
            parallelism = s.parallelism,
            backend = s.backend,
            window = s.window,
            dir = dir.display(),
        ),
    )
    .unwrap();
    path
}

fn input(dir: &Path, events: usize) -> PathBuf {
    let path = dir.join("events.jsonl");
    let mut bytes = to_json_lines(&generate(&WorkloadSpec {
        events,
        seed: 7,
        ..Default::default()
    }));
    // Malformed lines (dead-lettered) and events from the first minute (late once the
    // stream is well past it): never lost or doubled, in the rows or the side outputs.
    for i in 0..40 {
        let at = bytes.len() / 41 * (i + 1);
        let nl = at + bytes[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
        let line = if i % 2 == 0 {
            format!("{{not json {i}\n")
        } else {
            format!(
                "{{\"timestamp\":\"2026-01-01T00:00:{:02}Z\",\"model\":\"late\",\"region\":\"r\",\"latency_ms\":{i}}}\n",
                i
            )
        };
        bytes.splice(nl..nl, line.into_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The processor over `events`, writing into `dir`; `paced`: replayed at [`PACE`].
fn command(dir: &Path, events: &Path, paced: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_processor"));
    c.current_dir(dir)
        .args(["run", "--config"])
        .arg(dir.join("config.yaml"))
        .arg("--input")
        .arg(events)
        .arg("--output")
        .arg(dir.join("rows.jsonl"))
        .env("PROCESSOR_DEAD_LETTER_DIR", dir.join("dead-letter"))
        .env("RUST_LOG", "info");
    if paced {
        c.args(["--replay-rate", PACE]);
    }
    c
}

/// Runs to the end at full speed; returns stderr.
fn run_to_end(dir: &Path, events: &Path) -> String {
    let out = child::run(&mut command(dir, events, false), DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "processor failed:\n{stderr}");
    stderr
}

/// Starts a paced run and waits until it has sealed a checkpoint of its own (one newer
/// than the latest in `checkpoints` before it started).
fn paced_until_checkpoint(
    dir: &Path,
    events: &Path,
    what: &str,
    enough: impl Fn(&Path) -> bool,
) -> Proc {
    let checkpoints = dir.join("checkpoints");
    let mut child = Proc::spawn(&mut command(dir, events, true));
    let deadline = Instant::now() + DEADLINE;
    while !enough(&checkpoints) {
        if child.try_wait().is_some() {
            child.fail(&format!("{what}: the run ended before its checkpoint"));
        }
        if Instant::now() > deadline {
            child.fail(&format!("{what}: no checkpoint within {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

fn sorted_rows(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("rows.jsonl")).unwrap();
    let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

fn assert_same_rows(expected: &[String], got: &[String], what: &str) {
    assert!(!expected.is_empty());
    if expected != got {
        let missing = expected.iter().filter(|r| !got.contains(r)).count();
        let extra = got.iter().filter(|r| !expected.contains(r)).count();
        panic!(
            "{what}: {} rows instead of {} ({missing} missing, {extra} unexpected)",
            got.len(),
            expected.len()
        );
    }
}

/// Kills the processor `kills` times, each time at a random moment after the start has
/// written a checkpoint of its own (so that every restart tests a restore); the killed
/// starts are paced, so each is still running when it is killed. Then lets a last start
/// run to the end at full speed. Returns the stderr of every start.
fn run_with_kills(dir: &Path, events: &Path, kills: usize, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let checkpoints = dir.join("checkpoints");
    let mut logs = String::new();
    for start in 1..=kills {
        let before = checkpoint_entries(&checkpoints).pop();
        let mut child = paced_until_checkpoint(dir, events, &format!("start {start}"), |c| {
            checkpoint_entries(c).pop() != before
        });
        std::thread::sleep(KILL_WITHIN.mul_f64(rng.random_range(0.0..1.0)));
        if child.try_wait().is_some() {
            child.fail(&format!(
                "start {start} ended before its kill, though paced to take {PACED_RUN:?}"
            ));
        }
        child.kill(); // SIGKILL
        logs.push_str(&child.stderr_text());
    }
    logs.push_str(&run_to_end(dir, events));
    logs
}

/// The records of every side-output file (dead letters, late records), each as
/// `file|kind|position|payload`, sorted: what must be the same after crashes.
fn side_outputs(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("dead-letter")) else {
        return lines;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{name}: a torn line ({err}): {line}"));
            lines.push(format!(
                "{name}|{}|{}|{}",
                v["kind"], v["position"], v["payload"]
            ));
        }
    }
    lines.sort();
    lines
}

/// A scratch directory with `clean/` (the uninterrupted run) and `crashy/` (the one killed).
fn two_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let crashy = root.path().join("crashy");
    std::fs::create_dir_all(&clean).unwrap();
    std::fs::create_dir_all(&crashy).unwrap();
    (root, clean, crashy)
}

fn assert_same_side(expected: &[String], got: &[String], what: &str) {
    assert!(
        got == expected,
        "side outputs {what}: {} records instead of {} ({} missing, {} unexpected)",
        got.len(),
        expected.len(),
        expected.iter().filter(|r| !got.contains(r)).count(),
        got.iter().filter(|r| !expected.contains(r)).count(),
    );
}

fn crash_and_compare(s: Scenario, seed: u64) {
    let (root, clean, crashy) = two_dirs();
    let events = input(root.path(), EVENTS);
    // The reference is an uninterrupted run at parallelism 1: the killed runs at any
    // parallelism must end with its rows and side records.
    config(
        &clean,
        &Scenario {
            parallelism: 1,
            ..s
        },
    );
    config(&crashy, &s);

    run_to_end(&clean, &events);
    let expected = sorted_rows(&clean);

    let expected_side = side_outputs(&clean);
    let dead = expected_side
        .iter()
        .filter(|l| l.contains("deserialization"))
        .count();
    let late = expected_side
        .iter()
        .filter(|l| l.contains("\"late\""))
        .count();
    assert_eq!(dead, 20, "every malformed line is a dead letter");
    assert!(late > 0, "the inserted events are late: {late}");

    let logs = run_with_kills(&crashy, &events, 5, seed);
    assert_eq!(
        logs.matches("resuming from checkpoint").count(),
        5,
        "every restart resumes from a checkpoint:\n{logs}"
    );
    assert_same_rows(&expected, &sorted_rows(&crashy), "after 5 kills");
    assert_same_side(&expected_side, &side_outputs(&crashy), "after 5 kills");
    // Nothing is left pending beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(&crashy)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".pending-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_tumbling_survives_sigkill() {
    crash_and_compare(
        Scenario {
            backend: "rocksdb",
            window: "tumbling",
            parallelism: 1,
        },
        1,
    );
}

#[test]
fn memory_sliding_with_two_workers_survives_sigkill() {
    crash_and_compare(
        Scenario {
            backend: "memory",
            window: "sliding",
            parallelism: 2,
        },
        2,
    );
}

#[test]
fn memory_sessions_with_four_workers_survive_sigkill() {
    crash_and_compare(
        Scenario {
            backend: "memory",
            window: "session",
            parallelism: 4,
        },
        3,
    );
}

/// Kills one run mid-way, then damages its checkpoints: the latest → fall back to the
/// previous one, saying so, with the same final rows; all of them → a clear error.
fn damaged_checkpoints(backend: &'static str, damage: fn(&Path)) {
    let (root, clean, crashy) = two_dirs();
    let events = input(root.path(), EVENTS_DAMAGE);
    let s = Scenario {
        backend,
        window: "tumbling",
        parallelism: 1,
    };
    config(&clean, &s);
    config(&crashy, &s);
    run_to_end(&clean, &events);

    // A paced run until at least two checkpoints exist, then SIGKILL.
    let checkpoints = crashy.join("checkpoints");
    let mut child = paced_until_checkpoint(&crashy, &events, "the run to damage", |c| {
        count_checkpoints(c) >= 2
    });
    child.kill();

    let mut ids = checkpoint_entries(&checkpoints);
    let latest = ids.pop().unwrap();
    damage(&latest);
    let stderr = run_to_end(&crashy, &events);
    assert!(
        stderr.contains("trying the previous one"),
        "no fallback said:\n{stderr}"
    );
    assert_same_rows(
        &sorted_rows(&clean),
        &sorted_rows(&crashy),
        "after a fallback",
    );

    // Every checkpoint damaged (the fallback run's own, its "finished" one included): a
    // clear error, no panic. Each is damaged once: the latest may still be the one damaged
    // above (the fallback run writes few checkpoints), and damaging it again could undo it.
    let entries = checkpoint_entries(&checkpoints);
    assert!(!entries.is_empty());
    for e in entries.iter().filter(|e| **e != latest) {
        damage(e);
    }
    let out = child::run(&mut command(&crashy, &events, false), DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("can be restored") && stderr.contains("remove the checkpoint directory"),
        "{stderr}"
    );
}

fn checkpoint_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy();
                    n.starts_with("checkpoint-") && !n.ends_with(".tmp")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn count_checkpoints(dir: &Path) -> usize {
    checkpoint_entries(dir).len()
}

#[test]
fn a_corrupted_memory_checkpoint_falls_back_or_fails_clearly() {
    damaged_checkpoints("memory", |file| {
        let mut bytes = std::fs::read(file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(file, bytes).unwrap();
    });
}

#[cfg(feature = "rocksdb")]
#[test]
fn a_truncated_rocksdb_checkpoint_falls_back_or_fails_clearly() {
    damaged_checkpoints("rocksdb", |dir| {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("MANIFEST") {
                let bytes = std::fs::read(entry.path()).unwrap();
                std::fs::write(entry.path(), &bytes[..bytes.len() / 2]).unwrap();
            }
        }
    });
}

/// A kill between the seal of a run's finished checkpoint and its sinks' commits (the
/// `LOP_FAILPOINT` abort there, after periodic checkpoints have published some dead
/// letters and late records): the next start finishes those commits and ends, so rows,
/// dead letters and late records are the uninterrupted run's, none appended twice (a
/// start that ran the input again would append every side record a second time). A start
/// after that is a new run of the input.
#[test]
fn a_kill_inside_the_final_checkpoint_leaves_no_duplicate_side_output() {
    let (root, clean, crashy) = two_dirs();
    let events = input(root.path(), EVENTS_DAMAGE);
    // A malformed last line: the final checkpoint stages a dead letter of its own.
    let mut bytes = std::fs::read(&events).unwrap();
    bytes.extend_from_slice(b"{not json at the end\n");
    std::fs::write(&events, bytes).unwrap();
    let s = Scenario {
        backend: "memory",
        window: "tumbling",
        parallelism: 1,
    };
    config(&clean, &s);
    config(&crashy, &s);
    run_to_end(&clean, &events);
    let expected = sorted_rows(&clean);
    let expected_side = side_outputs(&clean);
    assert!(expected_side.len() > 20, "{expected_side:?}");

    // Paced over a few seconds, so that periodic checkpoints publish side records first.
    let mut aborted = command(&crashy, &events, false);
    aborted
        .args(["--replay-rate", "2400x"])
        .env("LOP_FAILPOINT", "final-checkpoint-sealed");
    let out = child::run(&mut aborted, DEADLINE);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the failpoint did not abort:\n{stderr}"
    );
    assert!(
        stderr.contains("aborting at final-checkpoint-sealed"),
        "{stderr}"
    );
    assert!(
        stderr.matches("checkpoint complete").count() >= 3,
        "periodic checkpoints before the final one:\n{stderr}"
    );
    let published_before = side_outputs(&crashy);
    assert!(
        !published_before.is_empty() && published_before.len() < expected_side.len(),
        "some side records were published before the kill, not all: {} of {}",
        published_before.len(),
        expected_side.len()
    );

    let restarted = run_to_end(&crashy, &events);
    assert_same_rows(
        &expected,
        &sorted_rows(&crashy),
        "after the final-checkpoint kill",
    );
    assert_same_side(
        &expected_side,
        &side_outputs(&crashy),
        "after the final-checkpoint kill",
    );
    assert!(restarted.contains("published now"), "{restarted}");

    // Published: the next start is a new run of the input, with the same rows.
    let stderr = run_to_end(&crashy, &events);
    assert!(stderr.contains("starting over"), "{stderr}");
    assert_same_rows(&expected, &sorted_rows(&crashy), "a new run after it");
}
