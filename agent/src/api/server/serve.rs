//! The accept loop. It drives hyper's HTTP/1 connection itself instead of `axum::serve`,
//! because `axum::serve` sets no timer, and without one hyper has no header read timeout: a
//! client that connects and sends nothing would hold its connection (and slot) forever.

use super::listener::ApiListener;
use super::routes::{metrics_router, router};
use super::Limits;
use crate::api::ApiRequest;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// A listening socket the accept loop serves: the API's Unix socket, the metrics TCP port.
trait Accept {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn next(&self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn next(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn next(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Serves `GET /metrics` on `listener` (bound by the daemon's metrics concern) until
/// `shutdown` completes, with the API's bounds: a slow or idle client cannot hold a
/// connection, and only a few are served at once.
pub async fn serve_metrics(
    listener: TcpListener,
    tx: mpsc::Sender<ApiRequest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = Limits {
        max_connections: 8,
        ..Limits::default()
    };
    let what = listener
        .local_addr()
        .map_or_else(|_| "TCP".to_string(), |a| format!("http://{a}/metrics"));
    log::info!("metrics on {what}");
    serve_on(&listener, metrics_router(tx, limits), limits, shutdown).await;
}

/// How long in-flight requests may finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after an accept error (out of file descriptors, memory) before trying again, so the
/// loop does not spin on a condition that only time or a closing connection clears.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the API on `listener` until `shutdown` completes, forwarding requests to the daemon
/// loop over `tx`. Then lets in-flight requests finish (bounded) and removes the socket file.
pub async fn serve(
    listener: ApiListener,
    tx: mpsc::Sender<ApiRequest>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = listener.limits;
    log::info!("API listening on {}", listener.path().display());
    serve_on(&listener.listener, router(tx, limits), limits, shutdown).await;
    drop(listener);
}

/// The accept loop: bounded connections, then a bounded drain on shutdown.
async fn serve_on<A: Accept>(
    listener: &A,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // Take a slot before accepting: over the bound, clients wait in the listen backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.next() => accepted,
        };
        match accepted {
            Ok(stream) => {
                let conn = serve_connection(stream, app.clone(), limits, stopped.clone(), permit);
                connections.spawn(conn);
            }
            Err(e) => {
                log::warn!("API: cannot accept a connection: {e}");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        log::warn!(
            "API: {} connection(s) still busy after {SHUTDOWN_GRACE:?}; closing them",
            connections.len()
        );
        connections.shutdown().await;
    }
}

/// Serves one connection; on shutdown it finishes the request in flight, then closes.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    app: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)));
    let finished = tokio::select! {
        result = conn.as_mut() => Some(result),
        _ = stopped.wait_for(|stop| *stop) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts and clients hanging up mid-request: routine, but useful when debugging.
        log::debug!("API connection ended: {e}");
    }
}
