//! `processor`: run a windowed-metrics pipeline over LLM feedback events from a YAML config.

use clap::{Parser, Subcommand, ValueEnum};
use llm_optimizer_processor::config::{self, Config};
use llm_optimizer_processor::workload::{generate, to_json_lines, WorkloadSpec};
use llm_optimizer_processor::*;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod progress;

/// mimalloc: the reader thread allocates events and lines that the operator's thread frees;
/// glibc's malloc serialises that on an arena lock (a fifth of a run's time in futex
/// calls), mimalloc frees across threads without one.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bundled sample: 1,500 feedback events over 20 minutes, out of order, 2 malformed lines.
const SAMPLE: &[u8] = include_bytes!("../../../data/sample-events.jsonl");

/// Event-time windowed metrics (count, sum, average, min, max, stddev, p50/p95/p99) over
/// streams of LLM feedback events.
///
/// With no arguments, `processor run` aggregates the bundled sample in 5-minute tumbling
/// windows per model and region and prints the rows.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log format on stderr (level from RUST_LOG, default `warn`).
    #[arg(long, value_enum, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline until its input ends (or Ctrl-C), printing or writing result rows.
    Run {
        /// YAML config (the API reference's format); PROCESSOR_… variables override it,
        /// e.g. PROCESSOR_WINDOWS__TUMBLING__SIZE_SECS=60.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// JSON-lines input file, or `-` for stdin (default: the config's source, else the bundled sample).
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Write rows as JSON lines to this file instead of the console.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Console format.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Serve a live dashboard (charts per key, the run's figures, /metrics) at this
        /// address [default: 127.0.0.1:8080]; it stays up after the input ends, until Ctrl-C.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
        dashboard: Option<String>,
        /// Replay the input at this multiple of its event time's pace (`30x`: a minute of
        /// events in two seconds), or `max` (as fast as it reads). Default: `max`, and
        /// `30x` for the bundled sample under --dashboard.
        #[arg(long, value_name = "RATE", value_parser = parse_rate)]
        replay_rate: Option<ReplayRate>,
    },
    /// Check a config file (and the PROCESSOR_… overrides) and print what would run.
    ValidateConfig {
        /// The YAML file.
        file: PathBuf,
    },
    /// Write a seeded workload of FeedbackEvent JSON lines (Zipf models and tenants,
    /// log-normal latency, out-of-order arrival).
    Generate {
        /// Number of events.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Output file (`-` for stdout).
        #[arg(long)]
        out: PathBuf,
        /// Random seed: the same seed gives the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// `--replay-rate`: a multiple of event time's pace, or as fast as the input reads.
#[derive(Clone, Copy, Debug)]
struct ReplayRate(Option<f64>);

fn parse_rate(text: &str) -> Result<ReplayRate, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(ReplayRate(None));
    }
    let number = text.strip_suffix(['x', 'X']).unwrap_or(text);
    match number.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(ReplayRate(Some(r))),
        _ => Err(format!(
            "`{text}` is not a rate: write a positive multiple such as `10x` or `0.5x`, or `max`"
        )),
    }
}

/// The bundled sample's replay rate under `--dashboard`: its 20 minutes in 40 seconds.
const SAMPLE_DASHBOARD_RATE: f64 = 30.0;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// One readable line per row.
    Table,
    /// One JSON object per row.
    Json,
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main());
    // A read of stdin may still block a thread after a stop signal: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn async_main() -> ExitCode {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Colours only on a terminal: logs sent to a file or a collector stay plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn load(path: Option<&PathBuf>) -> ProcessorResult<Config> {
    match path {
        Some(p) => config::load_config(p).await,
        None => config::default_config(),
    }
}

async fn run(cli: Cli) -> ProcessorResult<()> {
    match cli.command {
        Command::ValidateConfig { file } => {
            let config = config::load_config(&file).await?;
            config::check_runnable(&config)?;
            let p = &config.processor;
            println!(
                "{}: valid; {} windows, keys {:?}, measure `{}`, source `{}`, output `{}`",
                file.display(),
                p.windows.default_type,
                p.keys,
                p.measure,
                p.source.kind,
                p.output.kind
            );
            Ok(())
        }
        Command::Generate { events, out, seed } => {
            let bytes = to_json_lines(&generate(&WorkloadSpec {
                events,
                seed,
                ..Default::default()
            }));
            if out.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&bytes)
                    .map_err(|e| ProcessorError::io("standard output", e))
            } else {
                std::fs::write(&out, bytes)
                    .map_err(|e| ProcessorError::io(out.display().to_string(), e))
            }
        }
        Command::Run {
            config,
            input,
            output,
            format,
            dashboard,
            replay_rate,
        } => {
            let mut config = load(config.as_ref()).await?;
            if let Some(path) = &input {
                // `--input` replaces the configured source (and what is checked of it).
                config.processor.source.kind = if path.as_os_str() == "-" {
                    "stdin"
                } else {
                    "file"
                }
                .into();
            }
            let p = &config.processor;
            let mut b = config::pipeline_from_config(&config)?.with_shutdown_signal(stop_signal());
            b = match (&input, p.source.kind.as_str()) {
                (Some(path), _) => b.with_file_source(path),
                (None, "file") => b.with_file_source(&p.source.path),
                (None, "stdin") => b.with_stdin_source(),
                (None, "kafka") => {
                    b = b.with_kafka_source(p.kafka.consumer.clone());
                    if p.kafka.timestamp_fallback {
                        b = b.with_kafka_timestamp_fallback();
                    }
                    if p.kafka.partitioned_by_key {
                        b = b.with_kafka_partitioned_by_key();
                    }
                    b
                }
                _ => b.with_source(FileSource::from_static("sample", SAMPLE)),
            };
            let sample =
                input.is_none() && !matches!(p.source.kind.as_str(), "file" | "stdin" | "kafka");
            let rate = match (replay_rate, &dashboard) {
                (Some(ReplayRate(rate)), _) => rate,
                (None, Some(_)) if sample => Some(SAMPLE_DASHBOARD_RATE),
                (None, _) => None,
            };
            if let Some(rate) = rate {
                b = b.with_replay_rate(rate);
            }
            let json = match format {
                Some(Format::Json) => true,
                Some(Format::Table) => false,
                None => p.output.format == "json",
            };
            b = match (&output, p.output.kind.as_str()) {
                (Some(path), _) => b.with_sink(FlatRows(FileSink::<FlatRow>::new(path))),
                (None, "file") => b.with_sink(FlatRows(FileSink::<FlatRow>::new(&p.output.path))),
                (None, "kafka") => b.with_sink(FlatRows(KafkaAggregationSink::new(
                    p.kafka.producer.clone(),
                ))),
                _ if json => b.with_sink(ConsoleSink::json()),
                _ => b.with_sink(ConsoleSink::new()),
            };
            let metrics = Arc::new(ProcessorMetrics::new());
            b = b.with_metrics(Arc::clone(&metrics));
            let dashboard = match dashboard {
                None => None,
                Some(text) => {
                    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
                        ProcessorError::Config(format!(
                            "--dashboard `{text}` is not an address: write IP:PORT, e.g. 127.0.0.1:8080 (0.0.0.0:8080 to let other machines see it)"
                        ))
                    })?;
                    let board = dashboard::Dashboard::new(
                        Arc::clone(&metrics),
                        describe(&config, sample, rate),
                    );
                    b = b.with_sink(board.sink());
                    let (bound, task) = board.serve(addr).await?;
                    eprintln!("dashboard at http://{bound}/ (metrics at http://{bound}/metrics)");
                    Some((board, bound, task))
                }
            };
            let p = &config.processor;
            let server = if p.metrics.enabled
                && dashboard
                    .as_ref()
                    .is_none_or(|(_, bound, _)| bound.to_string() != p.metrics.address)
            {
                let addr = p.metrics.address.parse().map_err(|_| {
                    ProcessorError::Config(format!(
                        "`processor.metrics.address` `{}` is not an address",
                        p.metrics.address
                    ))
                })?;
                let (bound, task) = llm_optimizer_processor::metrics_server::serve_metrics(
                    addr,
                    Arc::clone(&metrics),
                )
                .await?;
                eprintln!("metrics at http://{bound}/metrics");
                Some(task)
            } else {
                None
            };
            let logger = (p.metrics.export_interval_secs > 0).then(|| {
                let metrics = Arc::clone(&metrics);
                let every = std::time::Duration::from_secs(p.metrics.export_interval_secs);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tick.tick().await;
                        tracing::info!(
                            events = metrics.events_processed(),
                            "metrics\n{}",
                            metrics.export()
                        );
                    }
                })
            });
            // On a terminal: a bar over the bytes of a file input, counts and the
            // watermark for a live source.
            let total = match (&input, p.source.kind.as_str()) {
                (Some(path), _) if path.as_os_str() != "-" => {
                    std::fs::metadata(path).ok().map(|m| m.len())
                }
                (None, "file") => std::fs::metadata(&p.source.path).ok().map(|m| m.len()),
                (Some(_), _) | (None, "stdin" | "kafka") => None,
                _ => Some(SAMPLE.len() as u64),
            };
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr())
                .then(|| progress::Progress::start(total, Arc::clone(&metrics)));
            let summary = b.build()?.run().await?;
            for task in [server, logger].into_iter().flatten() {
                task.abort();
            }
            if let Some(progress) = progress {
                progress.finish();
            }
            if let Some((board, _, _)) = &dashboard {
                board.finish(&summary);
            }
            eprintln!(
                "{} events read: {} aggregated, {} late, {} dead-lettered, {} skipped; {} rows ({} updates)",
                summary.events_in,
                summary.events_aggregated,
                summary.events_late,
                summary.events_dead_lettered,
                summary.events_skipped,
                summary.rows_emitted,
                summary.update_rows
            );
            if let Some((_, bound, task)) = dashboard {
                eprintln!("the input is done; the dashboard stays at http://{bound}/ until Ctrl-C");
                stop_signal().await;
                task.abort();
            }
            Ok(())
        }
    }
}

/// What runs, in a line: the dashboard's subtitle.
fn describe(config: &Config, sample: bool, rate: Option<f64>) -> String {
    let p = &config.processor;
    let w = &p.windows;
    let window = match w.default_type.as_str() {
        "sliding" => format!(
            "sliding {} s windows every {} s",
            w.sliding.size_secs, w.sliding.slide_secs
        ),
        "session" => format!("session windows ({} s gap)", w.session.gap_secs),
        _ => format!("tumbling {} s windows", w.tumbling.size_secs),
    };
    let source = if sample {
        "the bundled sample".to_owned()
    } else {
        format!("{} input", p.source.kind)
    };
    let pace = match rate {
        Some(r) => format!("replayed at {r}× event time"),
        None => "as fast as it reads".to_owned(),
    };
    format!(
        "{window} by {} · measure {} · {source}, {pace}",
        p.keys.join(", "),
        p.measure
    )
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
