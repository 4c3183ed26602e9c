//! The HTTP server under `/metrics` and the dashboard: an [`axum`] router served on a
//! tokio listener, bound to loopback unless told otherwise.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::error::{ProcessorError, ProcessorResult};

/// Binds `address` and serves `router` until the returned task is aborted. `what` names
/// the server in errors and logs. Returns the address bound (port 0 picks a free port).
pub async fn serve(
    what: &str,
    address: SocketAddr,
    router: Router,
) -> ProcessorResult<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await.map_err(|e| {
        ProcessorError::io(
            format!(
                "{what} at {address} (is another process using the port? choose another address)"
            ),
            e,
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ProcessorError::io(what.to_owned(), e))?;
    tracing::info!(%bound, "serving {what}");
    let what = what.to_owned();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "{what} stopped");
        }
    });
    Ok((bound, task))
}
