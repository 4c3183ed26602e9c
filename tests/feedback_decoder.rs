//! The specialized `FeedbackEvent` decoder against serde_json's generic one, on random
//! events: every field decoded equals serde's, and a decoder for a subset of the fields
//! fills in exactly those (the rest keep their defaults).

use chrono::{DateTime, Utc};
use llm_optimizer_processor::event::{FeedbackDecoder, FeedbackFields};
use llm_optimizer_processor::FeedbackEvent;
use proptest::prelude::*;

const NAMES: [&str; 11] = [
    "event_id",
    "model",
    "region",
    "tenant",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "rating",
    "success",
];

fn event() -> impl Strategy<Value = FeedbackEvent> {
    (
        (
            // Printable ASCII (the scanner's fast path, unless a quote or backslash needs
            // an escape), any text, and a mix.
            "[ -~]{0,12}",
            0i64..4_000_000_000_000,
            "[a-z0-9\\-\"\\\\é]{0,10}",
            "\\PC{0,6}",
        ),
        (
            "[a-z0-9\\-]{0,8}",
            -1e6f64..1e6,
            0f64..1e4,
            any::<u32>(),
            any::<u32>(),
        ),
        (0f64..10.0, proptest::option::of(0f64..5.0), any::<bool>()),
    )
        .prop_map(
            |(
                (event_id, ms, model, region),
                (tenant, latency_ms, ttft_ms, input_tokens, output_tokens),
                (cost_usd, rating, success),
            )| FeedbackEvent {
                event_id,
                timestamp: DateTime::<Utc>::from_timestamp_millis(ms).expect("in range"),
                model,
                region,
                tenant,
                latency_ms,
                ttft_ms,
                input_tokens,
                output_tokens,
                cost_usd,
                rating,
                success,
            },
        )
}

/// `e` with every field outside `keep` (and not the timestamp) at its default.
fn only(e: &FeedbackEvent, keep: &[&str]) -> FeedbackEvent {
    let d = FeedbackEvent::default();
    let k = |n: &str| keep.contains(&n);
    FeedbackEvent {
        event_id: if k("event_id") {
            e.event_id.clone()
        } else {
            d.event_id
        },
        timestamp: e.timestamp,
        model: if k("model") { e.model.clone() } else { d.model },
        region: if k("region") {
            e.region.clone()
        } else {
            d.region
        },
        tenant: if k("tenant") {
            e.tenant.clone()
        } else {
            d.tenant
        },
        latency_ms: if k("latency_ms") {
            e.latency_ms
        } else {
            d.latency_ms
        },
        ttft_ms: if k("ttft_ms") { e.ttft_ms } else { d.ttft_ms },
        input_tokens: if k("input_tokens") {
            e.input_tokens
        } else {
            d.input_tokens
        },
        output_tokens: if k("output_tokens") {
            e.output_tokens
        } else {
            d.output_tokens
        },
        cost_usd: if k("cost_usd") {
            e.cost_usd
        } else {
            d.cost_usd
        },
        rating: if k("rating") { e.rating } else { d.rating },
        success: if k("success") { e.success } else { d.success },
    }
}

proptest! {
    #[test]
    fn decodes_as_serde_json_does(events in proptest::collection::vec(event(), 1..20), mask in any::<u16>()) {
        let all = FeedbackDecoder::new(FeedbackFields::ALL);
        let keep: Vec<&str> = NAMES.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect();
        let some = FeedbackDecoder::new(FeedbackFields::of(keep.iter().copied()).unwrap());
        // One reused event across the stream, as a source would use it.
        let mut reused = FeedbackEvent::default();
        for e in &events {
            let json = serde_json::to_vec(e).unwrap();
            let by_serde: FeedbackEvent = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(&all.decode(&json).unwrap(), &by_serde);
            some.decode_into(&json, &mut reused).unwrap();
            prop_assert_eq!(&reused, &only(&by_serde, &keep));
        }
    }
}

#[test]
fn the_workload_decodes_as_serde_json_does() {
    use llm_optimizer_processor::workload::{generate, to_json_lines, WorkloadSpec};
    let events = generate(&WorkloadSpec {
        events: 5_000,
        ..Default::default()
    });
    let json = to_json_lines(&events);
    let d = FeedbackDecoder::new(FeedbackFields::ALL);
    let mut e = FeedbackEvent::default();
    // (`to_json_lines` rounds some values, so compare with serde's reading of the line.)
    for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        d.decode_into(line, &mut e).unwrap();
        assert_eq!(e, serde_json::from_slice::<FeedbackEvent>(line).unwrap());
    }
}
