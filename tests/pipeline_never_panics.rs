//! No input makes the pipeline panic: random bytes, truncated and mutated JSON lines all
//! end as aggregated, late or dead-lettered records, and every record is accounted for.

use llm_optimizer_processor::*;
use proptest::prelude::*;
use std::time::Duration;

const GOOD: &str = r#"{"event_id":"x","timestamp":"2026-01-01T00:00:01.500Z","model":"m","region":"r","latency_ms":12.5,"rating":null}"#;

fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..80
        ),
        (0..GOOD.len()).prop_map(|n| GOOD.as_bytes()[..n].to_vec()),
        (0..GOOD.len(), any::<u8>()).prop_map(|(i, b)| {
            let mut v = GOOD.as_bytes().to_vec();
            v[i] = if b == b'\n' { b' ' } else { b };
            v
        }),
        (-1e20f64..1e20, -10_000_000_000_000i64..10_000_000_000_000).prop_map(|(v, t)| {
            format!(r#"{{"timestamp":{t},"model":"m","latency_ms":{v}}}"#).into_bytes()
        }),
        Just(br#"{"timestamp":9223372036854775807,"latency_ms":1}"#.to_vec()),
        Just(br#"{"timestamp":"+262143-12-31T23:59:59Z","latency_ms":1}"#.to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_input_is_accounted_for(lines in prop::collection::vec(line(), 1..60), session in any::<bool>()) {
        let dead = CollectorSink::<DeadLetterRecord>::new();
        let n = lines.len() as u64;
        let builder = create_pipeline::<FeedbackEvent>()
            .with_source(source::MemorySource::from_json_lines(lines))
            .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(5)))
            .with_late_event_handler(LateEventHandler::new(Duration::from_secs(1)).with_side_output(dead.clone()))
            .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(dead.clone()));
        let builder = if session {
            builder.with_session_window(Duration::from_secs(30))
        } else {
            builder.with_sliding_window(Duration::from_secs(60), Duration::from_secs(20))
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let s = rt.block_on(builder.build().unwrap().run()).unwrap();
        prop_assert_eq!(s.events_in, n);
        prop_assert_eq!(s.events_in, s.events_aggregated + s.events_late + s.events_dead_lettered);
        prop_assert_eq!(dead.len() as u64, s.events_late + s.events_dead_lettered);
    }
}
