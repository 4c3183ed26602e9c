//! Config rules: each names the key path, the bad value and the allowed ones.

use super::Config;
use crate::error::{ProcessorError, ProcessorResult};

/// Rewrites a deserialization error at `path` into a message that names the key and, for
/// an unknown key, the closest known one.
pub fn explain(path: &str, error: &str) -> String {
    let at = |p: &str| {
        if p.is_empty() || p == "." {
            "the top level".to_owned()
        } else {
            format!("`{p}`")
        }
    };
    if let Some(rest) = error.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .map(|l| l.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
        let hint = closest(name, &expected)
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return format!(
            "unknown key `{name}` in {}{hint} (the keys there are {})",
            at(if parent.is_empty() {
                "processor"
            } else {
                parent
            }),
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    format!("{}: {error}", at(path))
}

fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    candidates
        .iter()
        .map(|c| (distance(name, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn one_of(key: &str, value: &str, allowed: &[&str]) -> ProcessorResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ProcessorError::Config(format!(
            "`{key}` is `{value}`; use one of {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn positive(key: &str, value: u64) -> ProcessorResult<()> {
    if value == 0 {
        Err(ProcessorError::Config(format!(
            "`{key}` is 0; it must be at least 1"
        )))
    } else {
        Ok(())
    }
}

/// Checks values the types cannot: choices, ranges, and features this build lacks.
pub fn validate(config: &Config) -> ProcessorResult<()> {
    let p = &config.processor;
    positive("processor.parallelism", p.parallelism as u64)?;
    positive("processor.buffer_size", p.buffer_size as u64)?;
    if !(p.checkpoint_interval_secs.is_finite() && p.checkpoint_interval_secs >= 0.0) {
        return Err(ProcessorError::Config(format!(
            "`processor.checkpoint_interval_secs` is {}; it must be a number of seconds ≥ 0 (0 turns checkpoints off)",
            p.checkpoint_interval_secs
        )));
    }
    one_of(
        "processor.state.backend",
        &p.state.backend,
        &["memory", "rocksdb"],
    )?;
    one_of(
        "processor.windows.default_type",
        &p.windows.default_type,
        &["tumbling", "sliding", "session"],
    )?;
    positive(
        "processor.windows.tumbling.size_secs",
        p.windows.tumbling.size_secs,
    )?;
    positive(
        "processor.windows.sliding.size_secs",
        p.windows.sliding.size_secs,
    )?;
    positive(
        "processor.windows.sliding.slide_secs",
        p.windows.sliding.slide_secs,
    )?;
    if p.windows.sliding.slide_secs > p.windows.sliding.size_secs {
        return Err(ProcessorError::Config(format!(
            "`processor.windows.sliding.slide_secs` ({}) is larger than `size_secs` ({}); use a slide ≤ size",
            p.windows.sliding.slide_secs, p.windows.sliding.size_secs
        )));
    }
    positive(
        "processor.windows.session.gap_secs",
        p.windows.session.gap_secs,
    )?;
    one_of(
        "processor.watermark.strategy",
        &p.watermark.strategy,
        &["bounded_out_of_orderness"],
    )?;
    for name in &p.aggregation.enabled {
        crate::aggregation::AggregationKind::parse(name).map_err(|_| {
            ProcessorError::Config(format!(
                "`processor.aggregation.enabled` lists `{name}`; the aggregations are `count`, `sum`, `average`, `min`, `max`, `percentile`, `stddev`"
            ))
        })?;
    }
    crate::aggregation::AggregationSpec::new(
        &p.aggregation
            .enabled
            .iter()
            .filter_map(|n| crate::aggregation::AggregationKind::parse(n).ok())
            .collect::<Vec<_>>(),
        &p.aggregation.percentiles,
    )
    .map_err(|e| {
        ProcessorError::Config(format!(
            "`processor.aggregation`: {}",
            e.to_string().trim_start_matches("invalid configuration: ")
        ))
    })?;
    one_of(
        "processor.error_handling.policy",
        &p.error_handling.policy,
        &["retry", "skip", "dead_letter"],
    )?;
    one_of(
        "processor.source.kind",
        &p.source.kind,
        &["sample", "file", "stdin", "kafka"],
    )?;
    if p.source.kind == "file" && p.source.path.is_empty() {
        return Err(ProcessorError::Config("`processor.source.kind` is `file` but `processor.source.path` is empty; give the JSON-lines file".into()));
    }
    one_of(
        "processor.output.kind",
        &p.output.kind,
        &["console", "file", "kafka"],
    )?;
    one_of(
        "processor.output.format",
        &p.output.format,
        &["table", "json"],
    )?;
    if p.output.kind == "file" && p.output.path.is_empty() {
        return Err(ProcessorError::Config(
            "`processor.output.kind` is `file` but `processor.output.path` is empty".into(),
        ));
    }
    if p.keys.is_empty() {
        return Err(ProcessorError::Config(
            "`processor.keys` is empty; list the fields to group by, e.g. [model, region]".into(),
        ));
    }
    let fields = ["event_id", "model", "region", "tenant", "success"];
    for k in &p.keys {
        one_of("processor.keys", k, &fields)?;
    }
    one_of(
        "processor.measure",
        &p.measure,
        &[
            "latency_ms",
            "ttft_ms",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "rating",
        ],
    )?;
    if p.metrics.enabled {
        p.metrics
            .address
            .parse::<std::net::SocketAddr>()
            .map_err(|_| {
                ProcessorError::Config(format!(
                    "`processor.metrics.address` is `{}`; give an address such as `127.0.0.1:9464`",
                    p.metrics.address
                ))
            })?;
    }
    Ok(())
}

/// Rejects valid settings that need a part this build does not have yet, saying which; a
/// value is never accepted and then ignored.
pub fn check_runnable(config: &Config) -> ProcessorResult<()> {
    let p = &config.processor;
    let missing = |key: &str, value: String, fix: &str| {
        Err(ProcessorError::Config(format!(
            "`{key}` is {value}, which this build cannot run yet; {fix}"
        )))
    };
    positive(
        "processor.state.retained_checkpoints",
        p.state.retained_checkpoints as u64,
    )?;
    if p.state.max_in_memory_windows > 0 && p.state.backend != "rocksdb" {
        return Err(ProcessorError::Config(format!(
            "`processor.state.max_in_memory_windows` is {} but state spills only to RocksDB: set `processor.state.backend: rocksdb`, or 0 for no bound",
            p.state.max_in_memory_windows
        )));
    }
    if p.state.backend == "rocksdb" && !cfg!(feature = "rocksdb") {
        return missing(
            "processor.state.backend",
            "`rocksdb`".into(),
            "build with the `rocksdb` cargo feature (on by default) or use `memory` (PROCESSOR_STATE__BACKEND=memory)",
        );
    }
    if p.source.kind == "kafka" {
        // What `build()` would refuse of a Kafka source, said in the config's terms and
        // before any Kafka client exists (validate-config and run check the same).
        if p.state.max_in_memory_windows > 0 {
            return Err(ProcessorError::Config(format!(
                "`processor.state.max_in_memory_windows` is {} with a Kafka source, which keeps each partition's state in memory between checkpoints: set it to 0",
                p.state.max_in_memory_windows
            )));
        }
        if p.kafka.consumer.topics.is_empty() {
            return Err(ProcessorError::Config(
                "`processor.kafka.consumer.topics` is empty with a Kafka source: list the topics to read".into(),
            ));
        }
        if p.kafka.partitioned_by_key && p.output.kind == "file" {
            return Err(ProcessorError::Config(
                "`processor.kafka.partitioned_by_key` is true with `processor.output.kind: file`: instances that split the partitions cannot share one file's commits; write to Kafka (`output.kind: kafka`), or set `partitioned_by_key: false` (one instance owns every key, and a file output is exactly once)".into(),
            ));
        }
    }
    if !cfg!(feature = "kafka") {
        for (key, kind) in [
            ("processor.source.kind", &p.source.kind),
            ("processor.output.kind", &p.output.kind),
        ] {
            if kind == "kafka" {
                return missing(
                    key,
                    "`kafka`".into(),
                    "build with the `kafka` cargo feature (on by default), or use a file",
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file output cannot be shared by instances that split the partitions: refused,
    /// naming the key and the fix; each alone is accepted.
    #[test]
    fn partitioned_by_key_with_a_file_output_is_refused() {
        let mut c = crate::config::default_config().unwrap();
        c.processor.source.kind = "kafka".into();
        c.processor.output.kind = "file".into();
        c.processor.output.path = "rows.jsonl".into();
        c.processor.state.backend = "memory".into();
        assert!(check_runnable(&c).is_ok(), "{:?}", check_runnable(&c));
        c.processor.kafka.partitioned_by_key = true;
        let e = check_runnable(&c).unwrap_err().to_string();
        assert!(
            e.contains("`processor.kafka.partitioned_by_key`") && e.contains("output.kind: kafka"),
            "{e}"
        );
        c.processor.output.kind = "kafka".into();
        assert!(check_runnable(&c).is_ok());
    }
}
