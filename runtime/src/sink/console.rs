use async_trait::async_trait;
use std::io::Write;

use super::EventSink;
use crate::aggregation::AggregationResult;
use crate::error::{ProcessorError, ProcessorResult};

/// Prints result rows on standard output: one readable line per row, or JSON lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleSink {
    json: bool,
}

impl ConsoleSink {
    /// A sink printing readable lines.
    pub fn new() -> Self {
        ConsoleSink { json: false }
    }

    /// A sink printing one JSON object per line, in the flat shape of [`FlatRow`].
    ///
    /// [`FlatRow`]: super::FlatRow
    pub fn json() -> Self {
        ConsoleSink { json: true }
    }

    /// The readable form of a row: window, key, statistics.
    pub fn format_row(r: &AggregationResult) -> String {
        use std::fmt::Write as _;
        let mut line = format!("{} {}", r.window, r.key);
        for (name, v) in &r.results {
            let _ = write!(line, " {name}={}", format_value(*v));
        }
        if r.is_update {
            line.push_str(" (update)");
        }
        line
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

#[async_trait]
impl EventSink<AggregationResult> for ConsoleSink {
    async fn send(&self, r: AggregationResult) -> ProcessorResult<()> {
        let line = if self.json {
            serde_json::to_string(&super::FlatRow(r))
                .map_err(|e| ProcessorError::Serialization(e.to_string()))?
        } else {
            ConsoleSink::format_row(&r)
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|e| ProcessorError::io("standard output", e))
    }
    async fn flush(&self) -> ProcessorResult<()> {
        std::io::stdout()
            .flush()
            .map_err(|e| ProcessorError::io("standard output", e))
    }
    fn name(&self) -> &str {
        "console"
    }
}
