//! A minimal HTTP endpoint serving [`ProcessorMetrics`] in the Prometheus text format at
//! `/metrics` (any other path: 404). Bound to loopback by default.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::{ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;

/// Binds `address` and serves `/metrics` until the returned task is aborted.
pub async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<ProcessorMetrics>,
) -> ProcessorResult<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| ProcessorError::io(format!("metrics endpoint {address}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ProcessorError::io("metrics endpoint", e))?;
    tracing::info!(%bound, "serving /metrics");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if request.starts_with("GET /metrics") {
                    ("200 OK", metrics.export())
                } else {
                    (
                        "404 Not Found",
                        "not found; the metrics are at /metrics\n".to_owned(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((bound, task))
}
