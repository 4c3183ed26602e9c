//! `WebSocketSink` against a real WebSocket server on loopback (tokio-tungstenite's
//! server side): the reference's dashboard pattern, `pipeline!` rows, a server that
//! disconnects mid-run, and a server that is not there (bounded buffer, oldest dropped).

#[path = "support/child.rs"]
mod child;

use child::{Deadline, RUN};
use chrono::{TimeZone, Utc};
use futures_util::StreamExt;
use llm_optimizer_processor::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// One event per minute: with 1-minute windows, one row per event.
fn events(n: i64) -> Vec<FeedbackEvent> {
    events_from(0, n)
}

/// Events `from..from + n`, with that number as the latency.
fn events_from(from: i64, n: i64) -> Vec<FeedbackEvent> {
    (from..from + n)
        .map(|i| FeedbackEvent {
            timestamp: Utc.timestamp_millis_opt(i * 60_000 + 1_000).unwrap(),
            model: "gpt-4o".into(),
            region: "eu".into(),
            latency_ms: i as f64,
            ..Default::default()
        })
        .collect()
}

/// A WebSocket server: every text message of every connection, in order, to `tx`; the
/// connection with index `close_after.0` is closed after `close_after.1` messages.
async fn serve(
    listener: TcpListener,
    tx: mpsc::UnboundedSender<(usize, String)>,
    close_after: Option<(usize, usize)>,
) {
    let mut conn = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            continue;
        };
        let mut seen = 0;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                let _ = tx.send((conn, t.to_string()));
                seen += 1;
                if close_after == Some((conn, seen)) {
                    let _ = ws.close(None).await;
                    break;
                }
            }
        }
        conn += 1;
    }
}

async fn server(
    close_after: Option<(usize, usize)>,
) -> (String, mpsc::UnboundedReceiver<(usize, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/metrics", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, tx, close_after));
    (url, rx)
}

async fn take(rx: &mut mpsc::UnboundedReceiver<(usize, String)>, n: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(m)) => out.push(m),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn the_reference_dashboard_pattern_sends_every_row_as_json() -> ProcessorResult<()> {
    let (url, mut rx) = server(None).await;
    let dashboard_sink = WebSocketSink::new(url);
    let summary = create_pipeline::<FeedbackEvent>()
        .with_tumbling_window(Duration::from_secs(60))
        .with_key_fields(&["model", "region"])
        .with_memory_source(events(50))
        .with_sink(dashboard_sink.clone())
        .build()?
        .run()
        .within(RUN, "the pipeline run (its WebSocket sink flushing)")
        .await?;
    assert_eq!(summary.rows_emitted, 50);
    let got = take(&mut rx, 50).await;
    assert_eq!(got.len(), 50);
    for (i, (_, text)) in got.iter().enumerate() {
        let row: serde_json::Value = serde_json::from_str(text).expect("each message is JSON");
        assert_eq!(row["results"]["count"], 1.0, "{text}");
        assert_eq!(row["results"]["sum"], i as f64, "rows in order: {text}");
    }
    assert_eq!((dashboard_sink.sent(), dashboard_sink.dropped()), (50, 0));
    Ok(())
}

pipeline! {
    /// Latency per model, every minute.
    pub pipeline PerMinute for FeedbackEvent {
        window: tumbling(1m),
        key_by: model,
        aggregate { requests: count(), worst: max(latency_ms) }
    }
}

#[tokio::test]
async fn pipeline_rows_survive_a_server_that_disconnects_mid_run() -> ProcessorResult<()> {
    // The first connection is closed by the server after 30 rows.
    let (url, mut rx) = server(Some((0, 30))).await;
    let sink =
        WebSocketSink::new(url).with_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let run = |from: i64| {
        PerMinute::pipeline()
            .with_memory_source(events_from(from, 400))
            .with_sink(sink.clone())
            .build()
            .unwrap()
            .run()
    };
    assert_eq!(run(0).within(RUN, "the first run").await?.rows_emitted, 400);
    let first = take(&mut rx, 30).await;
    assert_eq!(first.len(), 30);
    let row: serde_json::Value = serde_json::from_str(&first[0].1).unwrap();
    assert_eq!(
        (&row["model"], &row["requests"], &row["is_update"]),
        (
            &serde_json::json!("gpt-4o"),
            &serde_json::json!(1),
            &serde_json::json!(false)
        )
    );
    // The server has closed that connection; the next run's rows must find their way.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        run(400).within(RUN, "the second run").await?.rows_emitted,
        400
    );
    let mut got = first;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        got.push(m);
    }
    let worst = |t: &str| {
        serde_json::from_str::<serde_json::Value>(t).unwrap()["worst"]
            .as_f64()
            .unwrap()
    };
    let on = |conn: usize| -> Vec<f64> {
        got.iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, t)| worst(t))
            .collect()
    };
    assert_eq!(on(0), (0..30).map(f64::from).collect::<Vec<_>>());
    // Rows the server had not read when it closed are lost with the connection (a
    // WebSocket has no acknowledgements), as is a row written before the sink saw the
    // connection fail; from the reconnection on, every row arrives, in order.
    let later: Vec<f64> = got
        .iter()
        .filter(|(c, _)| *c >= 1)
        .map(|(_, t)| worst(t))
        .filter(|w| *w >= 400.0)
        .collect();
    assert!(
        later.first().is_some_and(|w| *w <= 402.0),
        "the second run's rows arrive from (nearly) its first: {later:?}"
    );
    assert!(
        later.windows(2).all(|w| w[1] == w[0] + 1.0),
        "in order, none missing: {later:?}"
    );
    assert_eq!(later.last(), Some(&799.0));
    assert_eq!((sink.buffered(), sink.dropped()), (0, 0));
    Ok(())
}

#[tokio::test]
async fn without_a_server_the_buffer_keeps_the_newest_rows_and_counts_the_rest(
) -> ProcessorResult<()> {
    // A free loopback port with nobody listening (yet).
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let sink = WebSocketSink::new(format!("ws://{addr}/metrics"))
        .with_buffer(10)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .with_flush_timeout(Duration::from_millis(100));
    let metrics = Arc::new(ProcessorMetrics::new());
    let summary = PerMinute::pipeline()
        .with_memory_source(events(100))
        .with_metrics(Arc::clone(&metrics))
        .with_sink(sink.clone())
        .build()?
        .run()
        .within(RUN, "the pipeline run (its WebSocket sink flushing)")
        .await?;
    assert_eq!(summary.rows_emitted, 100);
    assert_eq!((sink.dropped(), sink.buffered(), sink.sent()), (90, 10, 0));
    let exported = metrics.export();
    assert!(
        exported.contains(&format!(
            "processor_sink_dropped_total{{sink=\"websocket:ws://{addr}/metrics\"}} 90"
        )),
        "{exported}"
    );
    // The server comes up: the ten newest rows arrive.
    let listener = TcpListener::bind(addr).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, tx, None));
    let got = take(&mut rx, 10).await;
    let worst: Vec<f64> = got
        .iter()
        .map(|(_, t)| {
            serde_json::from_str::<serde_json::Value>(t).unwrap()["worst"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(worst, (90..100).map(f64::from).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_url_that_is_not_a_websocket_url_is_refused_when_the_pipeline_is_built() {
    for url in ["http//nope", "wss://dashboard:8080/metrics"] {
        let Err(err) = create_pipeline::<FeedbackEvent>()
            .with_tumbling_window(Duration::from_secs(60))
            .with_memory_source(events(1))
            .with_sink(WebSocketSink::new(url))
            .build()
        else {
            panic!("{url} was accepted");
        };
        assert!(err.to_string().contains("WebSocketSink"), "{err}");
    }
}
