//! Black-box tests of the `processor` binary.

#[path = "support/child.rs"]
mod child;

use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::Duration;

use child::{Proc, DEADLINE};

fn processor(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_processor"));
    cmd.args(args)
        .current_dir(dir)
        .env("PROCESSOR_DEAD_LETTER_DIR", dir.join("dead-letter"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    child::run(&mut cmd, DEADLINE)
}

/// Starts the processor with `args`, writes `events` JSON lines (one event a second of event
/// time) to its stdin and returns it with stdin still open.
fn spawn_with_events(
    args: &[&str],
    env: &[(&str, &str)],
    dir: &std::path::Path,
    events: u64,
) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_processor"));
    cmd.args(args)
        .current_dir(dir)
        .env("PROCESSOR_DEAD_LETTER_DIR", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Proc::spawn_with_stdin(&mut cmd);
    let stdin = child.stdin();
    for i in 0..events {
        writeln!(
            stdin,
            "{{\"timestamp\":{},\"model\":\"m\",\"region\":\"r\",\"latency_ms\":1}}",
            i * 1000
        )
        .unwrap();
    }
    stdin.flush().unwrap();
    child
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `a events read: b aggregated, c late, d dead-lettered, e skipped; …` → (a, b, c, d, e).
fn counts(stderr: &str) -> (u64, u64, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("events read"))
        .expect("a summary line");
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3], n[4])
}

#[test]
fn default_run_prints_windowed_rows_of_the_bundled_sample() {
    let dir = tempfile::tempdir().unwrap();
    let out = processor(&["run"], &[], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("model=gpt-4o,region=us-west-2"), "{stdout}");
    assert!(stdout.contains("p95="));
    let (events, aggregated, late, dead, skipped) = counts(&text(&out.stderr));
    assert_eq!(events, 1502);
    assert_eq!(
        events,
        aggregated + late + dead + skipped,
        "every record is accounted for"
    );
    assert_eq!(dead, 2);
    // the two malformed lines are in the dead-letter file with their reason
    let dl = std::fs::read_to_string(dir.path().join("dead-letter/processor-dead-letter.jsonl"))
        .unwrap();
    assert_eq!(dl.lines().count(), 2);
    assert!(dl.contains("deserialization"));
}

#[test]
fn malformed_input_lines_are_dead_lettered_and_the_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"timestamp\":1000,\"model\":\"a\",\"region\":\"r\",\"latency_ms\":5}\nnot json\n{\"model\":\"a\"}\n{\"timestamp\":2000,\"model\":\"a\",\"region\":\"r\",\"latency_ms\":7}\n",
    )
    .unwrap();
    let out = processor(
        &[
            "run",
            "--input",
            input.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    // Flat rows: the window, the key fields and the statistics by name, counts as integers.
    assert_eq!(rows[0]["count"], 2);
    assert_eq!(
        (rows[0]["model"].as_str(), rows[0]["region"].as_str()),
        (Some("a"), Some("r"))
    );
    assert!(rows[0]["window_start"]
        .as_str()
        .is_some_and(|t| t.starts_with("1970-01-01T")));
    assert_eq!(rows[0]["is_update"], false);
    assert!(
        rows[0]["p99"].is_f64() && rows[0].get("results").is_none(),
        "{}",
        rows[0]
    );
    assert_eq!(counts(&text(&out.stderr)), (4, 2, 0, 2, 0));
}

#[test]
fn config_file_and_env_overrides_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "processor:\n  keys: [model]\n  windows:\n    tumbling:\n      size_secs: 600\n",
    )
    .unwrap();
    let rows_of = |env: &[(&str, &str)]| {
        let out = processor(
            &["run", "--config", cfg.to_str().unwrap(), "--format", "json"],
            env,
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let ten_minutes = rows_of(&[]);
    assert!(ten_minutes
        .iter()
        .all(|r| r.get("model").is_some() && r.get("region").is_none()));
    let one_minute = rows_of(&[("PROCESSOR_WINDOWS__TUMBLING__SIZE_SECS", "60")]);
    assert!(
        one_minute.len() > 5 * ten_minutes.len(),
        "{} vs {}",
        one_minute.len(),
        ten_minutes.len()
    );
}

#[test]
fn bad_configs_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let err = |yaml: &str, env: &[(&str, &str)]| {
        std::fs::write(&cfg, yaml).unwrap();
        let out = processor(&["validate-config", cfg.to_str().unwrap()], env, dir.path());
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let e = err("processor:\n  paralelism: 2\n", &[]);
    assert!(
        e.contains("unknown key `paralelism`") && e.contains("did you mean `parallelism`?"),
        "{e}"
    );
    let e = err(
        "processor:\n  windows:\n    tumbling:\n      sise_secs: 3\n",
        &[],
    );
    assert!(
        e.contains("`processor.windows.tumbling`") && e.contains("did you mean `size_secs`?"),
        "{e}"
    );
    let e = err("processor:\n  windows:\n    default_type: hopping\n", &[]);
    assert!(e.contains("`processor.windows.default_type` is `hopping`; use one of `tumbling`, `sliding`, `session`"), "{e}");
    let e = err("processor:\n  buffer_size: lots\n", &[]);
    assert!(e.contains("processor.buffer_size"), "{e}");
    let e = err(
        "processor: {}\n",
        &[("PROCESSOR_STATE__BACKEND", "cassandra")],
    );
    assert!(
        e.contains("`processor.state.backend` is `cassandra`"),
        "{e}"
    );
    let e = err(
        "processor:\n  state:\n    max_in_memory_windows: 1000\n",
        &[],
    );
    assert!(
        e.contains("`processor.state.max_in_memory_windows`")
            && e.contains("set `processor.state.backend: rocksdb`"),
        "{e}"
    );
    let e = err("processor:\n  checkpoint_interval_secs: -1\n", &[]);
    assert!(
        e.contains("`processor.checkpoint_interval_secs` is -1")
            && e.contains("0 turns checkpoints off"),
        "{e}"
    );
}

#[test]
fn the_reference_example_validates() {
    let dir = tempfile::tempdir().unwrap();
    let reference = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/reference-complete.yaml"
    );
    // RocksDB state and parallelism 4 included; Kafka is configured but not the source.
    let out = processor(&["validate-config", reference], &[], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"), "{}", text(&out.stdout));
    let local = concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.yaml");
    assert!(processor(&["validate-config", local], &[], dir.path())
        .status
        .success());
}

/// One validation: `validate-config` refuses what `run` would, with the same message, and
/// `run` refuses it before any Kafka client exists (no broker errors logged first).
#[test]
fn validate_config_refuses_what_run_refuses_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let reference = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/reference-complete.yaml"
    );
    let env = [
        ("PROCESSOR_SOURCE__KIND", "kafka"),
        ("PROCESSOR_STATE__MAX_IN_MEMORY_WINDOWS", "1000"),
        (
            "PROCESSOR_KAFKA__CONSUMER__BOOTSTRAP_SERVERS",
            "127.0.0.1:1",
        ),
    ];
    let validated = processor(&["validate-config", reference], &env, dir.path());
    let ran = processor(&["run", "--config", reference], &env, dir.path());
    assert!(!validated.status.success() && !ran.status.success());
    let (v, r) = (text(&validated.stderr), text(&ran.stderr));
    assert!(
        v.contains("`processor.state.max_in_memory_windows` is 1000 with a Kafka source"),
        "{v}"
    );
    let line = |s: &str| {
        s.lines()
            .find(|l| l.contains("processor.state.max_in_memory_windows"))
            .map(str::to_owned)
    };
    assert_eq!(line(&v), line(&r), "the same message");
    assert!(
        !r.to_lowercase().contains("rdkafka") && !r.contains("127.0.0.1:1"),
        "{r}"
    );
    // With `--input`, the configured source is not the one that runs: nothing to refuse.
    std::fs::write(dir.path().join("e.jsonl"), "").unwrap();
    let from_file = processor(
        &["run", "--config", reference, "--input", "e.jsonl"],
        &env,
        dir.path(),
    );
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
}

#[test]
fn parallel_workers_give_the_rows_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = processor(
        &["generate", "--events", "20000", "--out", "w.jsonl"],
        &[],
        dir.path(),
    );
    assert!(out.status.success());
    let rows = |parallelism: &str| {
        let out = processor(
            &["run", "--input", "w.jsonl", "--format", "json"],
            &[
                ("PROCESSOR_PARALLELISM", parallelism),
                ("PROCESSOR_WINDOWS__TUMBLING__SIZE_SECS", "60"),
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
        lines.sort();
        (lines, counts(&text(&out.stderr)))
    };
    let (one, c1) = rows("1");
    let (three, c3) = rows("3");
    assert!(one.len() > 100);
    assert_eq!(c1, c3);
    assert_eq!(one, three);
}

#[test]
fn generate_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.jsonl", "b.jsonl"] {
        let out = processor(
            &["generate", "--events", "2000", "--out", name, "--seed", "7"],
            &[],
            dir.path(),
        );
        assert!(out.status.success());
    }
    let a = std::fs::read(dir.path().join("a.jsonl")).unwrap();
    assert_eq!(a, std::fs::read(dir.path().join("b.jsonl")).unwrap());
    assert_eq!(
        a.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(),
        2000
    );
    let out = processor(
        &[
            "generate", "--events", "2000", "--out", "c.jsonl", "--seed", "8",
        ],
        &[],
        dir.path(),
    );
    assert!(out.status.success());
    assert_ne!(a, std::fs::read(dir.path().join("c.jsonl")).unwrap());
}

#[test]
fn metrics_endpoint_is_scraped_during_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = spawn_with_events(
        &["run", "--input", "-"],
        &[
            ("PROCESSOR_METRICS__ENABLED", "true"),
            ("PROCESSOR_METRICS__ADDRESS", &address),
        ],
        dir.path(),
        50,
    );
    // scrape while the run is still waiting for more input
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(&address) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            body.clear();
            s.read_to_string(&mut body).unwrap();
            if body.contains("processor_events_processed_total 50")
                // 49 s, less the 30 s bound of the default config
                && body.contains("processor_partition_watermark_millis{partition=\"0\"} 19000")
            {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("processor_events_processed_total 50"),
        "{body}"
    );
    // Where the source is: the byte offset of the last line read (the 50th starts far in).
    let offset: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("processor_source_offset{partition=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no source offset: {body}"));
    assert!(offset > 49 * 40, "{offset}");
    child.close_stdin();
    let out = child.finish(DEADLINE);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn sigterm_and_sigint_stop_cleanly_with_rows_flushed() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_with_events(
            &[
                "run",
                "--input",
                "-",
                "--output",
                "rows.jsonl",
                "--log-format",
                "json",
            ],
            &[("RUST_LOG", "info")],
            dir.path(),
            10,
        );
        std::thread::sleep(std::time::Duration::from_millis(700));
        child.signal(signal);
        // Stdin stays open: the signal alone must stop the run (one that ignored it fails
        // at the deadline, killed).
        let out = child.finish(Duration::from_secs(60));
        assert!(out.status.success(), "{signal}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("shutdown requested"), "{stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with('{')),
            "JSON logs: {stderr}"
        );
        let rows = std::fs::read_to_string(dir.path().join("rows.jsonl")).unwrap();
        assert_eq!(
            rows.lines().count(),
            1,
            "the open window fired and was flushed"
        );
        assert!(rows.contains("\"count\":10,"), "{rows}");
    }
}

#[test]
fn a_paced_replay_takes_its_time_and_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let fast = processor(
        &["run", "--format", "json", "--replay-rate", "max"],
        &[("PROCESSOR_CHECKPOINT_INTERVAL_SECS", "0")],
        dir.path(),
    );
    assert!(fast.status.success(), "{}", text(&fast.stderr));
    // The sample spans 20 minutes of event time: about 4 s at 300x.
    let started = std::time::Instant::now();
    let paced = processor(
        &["run", "--format", "json", "--replay-rate", "300x"],
        &[("PROCESSOR_CHECKPOINT_INTERVAL_SECS", "0")],
        dir.path(),
    );
    let took = started.elapsed();
    assert!(paced.status.success(), "{}", text(&paced.stderr));
    assert!(
        took >= std::time::Duration::from_secs(3),
        "20 minutes at 300x is at least 3 s; took {took:?}"
    );
    assert_eq!(
        text(&paced.stdout),
        text(&fast.stdout),
        "same rows, same order"
    );
    assert_eq!(counts(&text(&paced.stderr)), counts(&text(&fast.stderr)));

    for bad in ["0x", "-2", "fast"] {
        let out = processor(&["run", &format!("--replay-rate={bad}")], &[], dir.path());
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("write a positive multiple such as `10x`"),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
}
