//! [`WebSocketSink`]: rows as JSON text messages to a WebSocket server (the reference's
//! "Real-Time Dashboard"), best effort: a bounded buffer while disconnected, the oldest
//! row dropped first, reconnection with backoff, never a stalled pipeline.

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::EventSink;
use crate::error::{ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;

/// Sends each row as one JSON text message to a WebSocket server, as the reference's
/// dashboard pattern does:
///
/// ```no_run
/// use llm_optimizer_processor::*;
/// use std::time::Duration;
///
/// # fn main() -> ProcessorResult<()> {
/// let dashboard_sink = WebSocketSink::new("ws://dashboard:8080/metrics");
/// let pipeline = create_pipeline::<FeedbackEvent>()
///     .with_tumbling_window(Duration::from_secs(60))
///     .with_sink(dashboard_sink)
///     .build()?;
/// # Ok(()) }
/// ```
///
/// Any `Serialize` row works: [`AggregationResult`](crate::AggregationResult)s as they
/// serialize, `pipeline!` rows flat; wrap in [`FlatRows`](super::FlatRows) for flat
/// `AggregationResult`s.
///
/// It is a best-effort sink, for people watching, not for records: `send` only queues the
/// row (it never waits for the network); a background task connects on the first row,
/// sends in order, and on any error reconnects with exponential backoff (100 ms doubling to
/// 5 s). While it cannot deliver, rows wait in a buffer of [`with_buffer`](Self::with_buffer)
/// rows (10,000 by default); when that is full the oldest row is dropped, logged and counted
/// in `processor_sink_dropped_total{sink="websocket:URL"}`. It does not take part in
/// checkpoints (a row sent is not taken back on a restore, and a checkpoint does not wait
/// for the server); at the end of a run, `flush` waits up to
/// [`with_flush_timeout`](Self::with_flush_timeout) (5 s) for the buffer to drain.
#[derive(Debug, Clone)]
pub struct WebSocketSink {
    shared: Arc<Shared>,
    /// Ends the connection task when the last clone of the sink goes.
    _owner: Arc<Owner>,
    capacity: usize,
    flush_timeout: Duration,
    backoff: (Duration, Duration),
}

/// What the sink and its connection task share.
#[derive(Debug)]
struct Shared {
    url: String,
    name: String,
    queue: Mutex<Queue>,
    /// A row was queued, or the sink closed.
    wake: Notify,
    /// The queue became empty.
    drained: Notify,
    dropped: AtomicU64,
    sent: AtomicU64,
    connected: AtomicBool,
    closed: AtomicBool,
    started: AtomicBool,
    metrics: OnceLock<Arc<ProcessorMetrics>>,
}

/// Rows waiting, each with its sequence number: the one being sent stays at the front
/// until it is written, so that a failed write is retried and not lost.
#[derive(Debug, Default)]
struct Queue {
    rows: VecDeque<(u64, String)>,
    next: u64,
}

#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

impl WebSocketSink {
    /// A sink sending to `url` (`ws://host:port/path`).
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let shared = Arc::new(Shared {
            name: format!("websocket:{url}"),
            url,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            drained: Notify::new(),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            started: AtomicBool::new(false),
            metrics: OnceLock::new(),
        });
        WebSocketSink {
            _owner: Arc::new(Owner(Arc::clone(&shared))),
            shared,
            capacity: 10_000,
            flush_timeout: Duration::from_secs(5),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// At most `rows` rows wait while the server cannot be reached (at least 1).
    pub fn with_buffer(mut self, rows: usize) -> Self {
        self.capacity = rows.max(1);
        self
    }

    /// How long the end-of-run `flush` waits for the buffer to drain.
    pub fn with_flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// Reconnection backoff: the first wait and the longest.
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = (first, max.max(first));
        self
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Rows dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Rows written to a connection.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Rows waiting to be sent.
    pub fn buffered(&self) -> usize {
        self.shared.lock().rows.len()
    }

    fn start(&self) {
        if !self.shared.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(connection(Arc::clone(&self.shared), self.backoff));
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a row; with `capacity` rows waiting, the oldest is dropped.
    fn push(&self, text: String, capacity: usize) {
        let dropped = {
            let mut q = self.lock();
            let seq = q.next;
            q.next += 1;
            let dropped = if q.rows.len() >= capacity {
                q.rows.pop_front();
                true
            } else {
                false
            };
            q.rows.push_back((seq, text));
            dropped
        };
        if dropped {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(m) = self.metrics.get() {
                m.record_sink_dropped(&self.name, 1);
            }
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(sink = %self.name, dropped = n, buffer = capacity, "WebSocket sink buffer full: the oldest rows are dropped until the server can be reached");
            }
        }
        self.wake.notify_one();
    }
}

/// The connection task: connects, sends the queue in order, reconnects with backoff.
async fn connection(shared: Arc<Shared>, (first, max): (Duration, Duration)) {
    let mut delay = first;
    let mut failures = 0u64;
    loop {
        if shared.closed.load(Ordering::Acquire) && shared.lock().rows.is_empty() {
            return;
        }
        let attempt = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(shared.url.as_str()),
        )
        .await;
        match attempt {
            Ok(Ok((ws, _))) => {
                if failures > 0 {
                    tracing::info!(sink = %shared.name, after = failures, "WebSocket sink reconnected");
                }
                failures = 0;
                delay = first;
                shared.connected.store(true, Ordering::Release);
                let ended = deliver(&shared, ws).await;
                shared.connected.store(false, Ordering::Release);
                if ended {
                    return;
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(sink = %shared.name, error = %e, failures, "WebSocket sink cannot connect; retrying with backoff");
                }
            }
            Err(_) => {
                failures += 1;
                tracing::warn!(sink = %shared.name, failures, "WebSocket sink: connecting timed out; retrying");
            }
        }
        // A closed sink that cannot deliver gives up: nobody is left to wait for it.
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wait_closed(&shared) => return,
        }
        delay = (delay * 2).min(max);
    }
}

async fn wait_closed(shared: &Shared) {
    while !shared.closed.load(Ordering::Acquire) {
        shared.wake.notified().await;
    }
}

/// Sends the queue on one connection until it fails (`false`: reconnect) or the sink is
/// closed with nothing left (`true`).
async fn deliver(
    shared: &Shared,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> bool {
    let (mut write, mut read) = ws.split();
    loop {
        let front = shared.lock().rows.front().cloned();
        match front {
            Some((seq, text)) => {
                if let Err(e) = write.send(Message::text(text)).await {
                    tracing::warn!(sink = %shared.name, error = %e, "WebSocket sink lost its connection; reconnecting");
                    return false;
                }
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let mut q = shared.lock();
                if q.rows.front().is_some_and(|(s, _)| *s == seq) {
                    q.rows.pop_front();
                }
                if q.rows.is_empty() {
                    shared.drained.notify_waiters();
                }
            }
            None => {
                shared.drained.notify_waiters();
                if shared.closed.load(Ordering::Acquire) {
                    let _ = write.send(Message::Close(None)).await;
                    return true;
                }
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    m = read.next() => match m {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            tracing::warn!(sink = %shared.name, "WebSocket server closed the connection; reconnecting");
                            return false;
                        }
                        // Pings are answered by tungstenite; anything else is ignored.
                        Some(Ok(_)) => {}
                    },
                }
            }
        }
    }
}

#[async_trait]
impl<R: Serialize + Send + 'static> EventSink<R> for WebSocketSink {
    async fn send(&self, row: R) -> ProcessorResult<()> {
        let text = serde_json::to_string(&row).map_err(|e| ProcessorError::Sink {
            sink: self.shared.name.clone(),
            message: format!("a row cannot be written as JSON: {e}"),
        })?;
        self.start();
        self.shared.push(text, self.capacity);
        Ok(())
    }

    /// Waits (up to the flush timeout) until every queued row is written.
    async fn flush(&self) -> ProcessorResult<()> {
        self.start();
        let deadline = tokio::time::Instant::now() + self.flush_timeout;
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let left = self.shared.lock().rows.len();
            if left == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                tracing::warn!(sink = %self.shared.name, rows = left, "WebSocket sink: rows still buffered after the flush timeout (the server cannot be reached); they are sent if it comes back while the process runs");
                return Ok(());
            }
        }
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn check(&self) -> ProcessorResult<()> {
        let url = self.shared.url.as_str();
        if url.starts_with("wss://") {
            return Err(ProcessorError::Config(format!(
                "WebSocketSink {url}: wss:// (TLS) is not built in; use ws:// (behind a TLS-terminating proxy for remote dashboards)"
            )));
        }
        url.into_client_request().map(|_| ()).map_err(|e| {
            ProcessorError::Config(format!(
                "WebSocketSink {url:?} is not a WebSocket URL ({e}); write ws://host:port/path"
            ))
        })
    }

    fn bind_metrics(&self, metrics: &Arc<ProcessorMetrics>) {
        let _ = self.shared.metrics.set(Arc::clone(metrics));
    }

    /// Best effort: a checkpoint neither waits for the server nor stages rows.
    async fn prepare_commit(&self, checkpoint_id: u64) -> ProcessorResult<Vec<u8>> {
        let _ = checkpoint_id;
        Ok(Vec::new())
    }
}
