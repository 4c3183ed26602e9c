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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
                (None, "kafka") if p.kafka.timestamp_fallback => b
                    .with_kafka_source(p.kafka.consumer.clone())
                    .with_kafka_timestamp_fallback(),
                (None, "kafka") => b.with_kafka_source(p.kafka.consumer.clone()),
                _ => b.with_source(FileSource::from_static("sample", SAMPLE)),
            };
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
            let server = if p.metrics.enabled {
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
            Ok(())
        }
    }
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
