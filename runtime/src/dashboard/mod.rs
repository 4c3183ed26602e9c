//! A live dashboard: one page and a WebSocket feed from the same server, which serves
//! `/metrics` too. `processor run --dashboard` uses it; a program can as well:
//!
//! ```no_run
//! use llm_optimizer_processor::dashboard::Dashboard;
//! use llm_optimizer_processor::*;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # async fn example() -> ProcessorResult<()> {
//! let metrics = Arc::new(ProcessorMetrics::new());
//! let dashboard = Dashboard::new(Arc::clone(&metrics), "p95 latency per model");
//! let (address, _server) = dashboard.serve("127.0.0.1:8080".parse().unwrap()).await?;
//! println!("open http://{address}/");
//! let summary = create_pipeline::<FeedbackEvent>()
//!     .with_file_source("events.jsonl")
//!     .with_tumbling_window(Duration::from_secs(60))
//!     .with_key_fields(&["model"])
//!     .with_value_field("latency_ms")
//!     .with_metrics(metrics)
//!     .with_sink(dashboard.sink())
//!     .with_replay_rate(60.0)
//!     .build()?
//!     .run()
//!     .await?;
//! dashboard.finish(&summary);
//! # Ok(())
//! # }
//! ```
//!
//! The page (`assets/`, embedded in the binary: no network needed) draws, per key, the
//! p50/p95/p99 of the measure and the events per window over event time with
//! [uPlot](https://github.com/leeoniya/uPlot) (MIT, vendored in `assets/vendor/` with
//! its licence), and shows events/s, the watermark and its lag behind the newest
//! event, late and dead-lettered counts, and the latest rows with updates marked.

mod feed;
mod sink;

pub use sink::DashboardSink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ProcessorResult;
use crate::metrics::ProcessorMetrics;
use crate::pipeline::RunSummary;
use feed::{Feed, Message};

/// How often the page gets the run's figures.
const STATS_EVERY: Duration = Duration::from_millis(500);

/// The page and its assets.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    ),
    (
        "/assets/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("assets/dashboard.css"),
    ),
    (
        "/assets/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "/assets/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("assets/vendor/uPlot.min.css"),
    ),
    (
        "/assets/uPlot-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("assets/vendor/uPlot-LICENSE.txt"),
    ),
];

/// The live dashboard of one run: rows come in through [`sink`](Self::sink), figures
/// from the run's [`ProcessorMetrics`], and [`serve`](Self::serve) shows them.
#[derive(Debug, Clone)]
pub struct Dashboard {
    feed: Arc<Feed>,
    metrics: Arc<ProcessorMetrics>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Dashboard {
    /// A dashboard of the run that records into `metrics`; `description` says what runs
    /// (the page's subtitle).
    pub fn new(metrics: Arc<ProcessorMetrics>, description: impl Into<String>) -> Self {
        Dashboard {
            feed: Arc::new(Feed::new(description.into())),
            metrics,
        }
    }

    /// The sink to add to the pipeline: every row it is sent reaches the page.
    pub fn sink(&self) -> DashboardSink {
        DashboardSink {
            feed: Arc::clone(&self.feed),
        }
    }

    /// The page (`/`), its assets (`/assets/…`), the feed (`/feed`, a WebSocket) and
    /// `/metrics`.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for &(path, content_type, body) in ASSETS {
            router = router.route(
                path,
                get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }),
            );
        }
        router
            .route("/feed", get(feed_socket))
            .with_state(Arc::clone(&self.feed))
            .merge(crate::metrics_server::metrics_router(Arc::clone(
                &self.metrics,
            )))
    }

    /// Binds `address` and serves the dashboard until the returned task is aborted;
    /// the figures go out twice a second meanwhile. Returns the address bound (port 0
    /// picks a free port).
    pub async fn serve(
        &self,
        address: SocketAddr,
    ) -> ProcessorResult<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let (bound, server) = crate::http::serve("the dashboard", address, self.router()).await?;
        let (feed, metrics) = (Arc::clone(&self.feed), Arc::clone(&self.metrics));
        let task = tokio::spawn(async move {
            let _server = AbortOnDrop(server);
            let mut tick = tokio::time::interval(STATS_EVERY);
            loop {
                tick.tick().await;
                feed.publish_stats(&metrics);
            }
        });
        Ok((bound, task))
    }

    /// The run ended: the page shows its totals (`summary`) and stops updating the figures.
    pub fn finish(&self, summary: &RunSummary) {
        self.feed.finish(summary, &self.metrics);
    }
}

async fn feed_socket(ws: WebSocketUpgrade, State(feed): State<Arc<Feed>>) -> Response {
    ws.on_upgrade(move |socket| talk(socket, feed))
        .into_response()
}

/// One page's connection: the snapshot, then every message, until the page goes away.
async fn talk(mut socket: WebSocket, feed: Arc<Feed>) {
    let text = |m: &Message| WsMessage::Text(m.as_ref().into());
    let (first, mut rx) = feed.subscribe();
    for m in &first {
        if socket.send(text(m)).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            next = rx.recv() => match next {
                Ok(m) => {
                    if socket.send(text(&m)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    // The page fell behind: it gets the rows again (it keeps one per window).
                    tracing::debug!(missed, "dashboard page fell behind; sending a snapshot");
                    for m in &feed.snapshot() {
                        if socket.send(text(m)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
