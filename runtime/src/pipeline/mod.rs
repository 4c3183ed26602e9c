//! The dynamic pipeline: [`create_pipeline`], its builder, and the run loop that drives
//! source → decode → watermark → windows → aggregation → sinks.

mod batch;
mod builder;
mod checkpoint;
mod collector;
mod decode;
mod extract;
mod front;
#[cfg(feature = "kafka")]
mod kafka_run;
mod persist;
mod plan;
mod reader;
mod record;
mod replay;
mod router;
mod run;
mod sinks;
mod summary;
mod worker;

pub use builder::{create_pipeline, Pipeline, PipelineBuilder};
pub use decode::JsonDecoder;
pub use plan::DynamicAggregation;
pub use plan::{key_hash, DynamicPlan, Envelope, Fed, Plan};
pub use summary::RunSummary;

#[cfg(test)]
mod tests {
    /// Every file of the module, by name.
    const FILES: &[(&str, &str)] = &[
        ("batch", include_str!("batch.rs")),
        ("builder", include_str!("builder.rs")),
        ("checkpoint", include_str!("checkpoint.rs")),
        ("collector", include_str!("collector.rs")),
        ("decode", include_str!("decode.rs")),
        ("extract", include_str!("extract.rs")),
        ("front", include_str!("front.rs")),
        ("kafka_run", include_str!("kafka_run.rs")),
        ("router", include_str!("router.rs")),
        ("persist", include_str!("persist.rs")),
        ("plan", include_str!("plan.rs")),
        ("reader", include_str!("reader.rs")),
        ("record", include_str!("record.rs")),
        ("replay", include_str!("replay.rs")),
        ("run", include_str!("run.rs")),
        ("sinks", include_str!("sinks.rs")),
        ("summary", include_str!("summary.rs")),
        ("worker", include_str!("worker.rs")),
    ];

    /// The files `text` names as `super::<file>` outside comments and tests.
    fn uses(text: &str) -> Vec<&'static str> {
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        FILES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| {
                code.match_indices(&format!("super::{name}")).any(|(i, m)| {
                    let next = code[i + m.len()..].chars().next();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            })
            .collect()
    }

    /// The pipeline's files import each other without a circle (the stages build on the
    /// ones before them), so that a stage can be read, changed and tested alone.
    #[test]
    fn the_module_files_import_each_other_without_a_circle() {
        fn visit(name: &'static str, path: &mut Vec<&'static str>, done: &mut Vec<&'static str>) {
            if done.contains(&name) {
                return;
            }
            if let Some(i) = path.iter().position(|n| *n == name) {
                panic!("an import circle: {} -> {name}", path[i..].join(" -> "));
            }
            path.push(name);
            let text = FILES.iter().find(|(n, _)| *n == name).expect("listed").1;
            for next in uses(text) {
                visit(next, path, done);
            }
            path.pop();
            done.push(name);
        }
        let mut done = Vec::new();
        for (name, _) in FILES {
            visit(name, &mut Vec::new(), &mut done);
        }
        assert_eq!(done.len(), FILES.len());
        let listed =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/runtime/src/pipeline"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name() != "mod.rs")
                .count();
        assert_eq!(
            listed,
            FILES.len(),
            "every file of pipeline/ is listed here"
        );
    }
}
