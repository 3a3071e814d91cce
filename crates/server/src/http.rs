//! Serving the router over TCP with limits a public socket needs: a cap on open connections (the
//! excess is closed at once), a time limit on reading a request's headers (slow and idle
//! clients are cut), and a graceful shutdown that lets the open requests finish.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Limits on connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Most connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers (an idle keep-alive connection
    /// waiting for its next request counts too).
    pub header_timeout: Duration,
    /// Longest the open requests may take to finish once a shutdown began.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the open requests
/// finish (up to the drain time).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "too many open connections: closing a new one");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(
            router.clone().map_request(|r: axum::http::Request<Incoming>| r.map(axum::body::Body::new)),
        );
        let mut stop = stop_rx.clone();
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(socket), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "requests still open after the drain time: closing them");
        connections.abort_all();
    }
    Ok(())
}
