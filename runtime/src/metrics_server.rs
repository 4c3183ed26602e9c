//! [`ProcessorMetrics`] in the Prometheus text format at `/metrics` (any other path: 404),
//! on its own address or as a route of the dashboard's server.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::error::ProcessorResult;
use crate::metrics::ProcessorMetrics;

/// The `/metrics` route, to serve alone or merged into another router.
pub fn metrics_router(metrics: Arc<ProcessorMetrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.export(),
                    )
                }
            }),
        )
        .fallback(not_found)
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found; the metrics are at /metrics\n",
    )
}

/// Binds `address` and serves `/metrics` until the returned task is aborted.
pub async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<ProcessorMetrics>,
) -> ProcessorResult<(SocketAddr, tokio::task::JoinHandle<()>)> {
    crate::http::serve("the metrics endpoint", address, metrics_router(metrics)).await
}
