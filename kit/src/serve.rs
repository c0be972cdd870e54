//! Every listener of every service, served with the same limits
//! (docs/security.md, "Listeners"): a deadline for a request's headers, one
//! for the whole request, an idle timeout on the connection, a cap on open
//! connections, and an accept loop that survives running out of file
//! descriptors instead of spinning on them.
//!
//! HTTP listeners go through [`serve_http`]; gRPC listeners hand tonic the
//! stream of [`incoming`] connections, which carry the same idle timeout and
//! connection cap. Each listener counts the connections it refused at its
//! cap in the counter it is given ([`refused_counter`]).
//!
//! Given a [`ServerTls`] ([`serve_http_tls`], [`incoming_tls`]), a listener
//! speaks TLS, and with a client CA requires client certificates (`tls.rs`).
//! Every request carries its connection's [`Peer`] in its extensions: the
//! client's address and the names of its verified certificate.

/// The counter of connections a service's listeners refused at their cap,
/// by listener: `sextant_listener_connections_refused_total{listener}`.
pub fn refused_counter() -> prometheus::IntCounterVec {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "sextant_listener_connections_refused_total",
            "Connections accepted and closed at once because their listener was at its \
             max_connections, by listener.",
        ),
        &["listener"],
    )
    .expect("valid metric")
}

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

mod tls;
pub use tls::{CertName, ClientCertificate, ServerTls, ServerTlsConfig, TlsError};

/// File descriptors kept back from the connection caps for everything else
/// a service opens: database connections and files, outbox segments, logs.
pub const RESERVED_FILES: u64 = 128;

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source}")]
pub struct BindError {
    /// What the listener is for: `the API`, `OTLP/gRPC`, `agents`.
    pub what: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Binds `addr` for `what` (named in the error) and returns the listener
/// with the address it got: port 0 picks a free one.
pub async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let failed = |source| BindError { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    Ok((listener, local))
}

/// How long a stopping server waits for open requests to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// The limits of one listener. The defaults suit every Sextant listener;
/// the hub reads them from its `[listeners]` table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerLimits {
    /// Seconds a client has to send a request's headers, counted from the
    /// connection's first byte or from the end of its previous request;
    /// a connection that sends nothing at all is closed after this too.
    pub header_timeout_seconds: f64,
    /// Seconds a request may take from its headers to its answer, body
    /// included (HTTP 408 past it; gRPC: `DEADLINE_EXCEEDED`).
    pub request_timeout_seconds: f64,
    /// Seconds a connection may pass with nothing read or written before it
    /// is closed (an open HTTP/2 connection between requests).
    pub idle_timeout_seconds: f64,
    /// Connections served at once on this listener; one more is accepted
    /// and closed at once. Lowered at start when the open files limit is
    /// too low to hold them ([`fit_connections`]).
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            header_timeout_seconds: 10.0,
            request_timeout_seconds: 60.0,
            idle_timeout_seconds: 120.0,
            max_connections: 4096,
        }
    }
}

/// Why a [`ListenerLimits`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    #[error("{0} must be a number of seconds greater than 0")]
    Timeout(&'static str),
    #[error("max_connections must be at least 1")]
    Connections,
}

impl ListenerLimits {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), LimitsError> {
        for (name, secs) in [
            ("header_timeout_seconds", self.header_timeout_seconds),
            ("request_timeout_seconds", self.request_timeout_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
        ] {
            if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
                return Err(LimitsError::Timeout(name));
            }
        }
        if self.max_connections == 0 {
            return Err(LimitsError::Connections);
        }
        Ok(())
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout_seconds)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout_seconds)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_seconds)
    }
}

/// Raises the soft limit of open files to the hard limit, where the system
/// allows; returns the soft limit in force afterwards (`None` where it
/// cannot be read). Called once at start by every service.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "Cannot raise the open files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// Fits `listeners` caps of `wanted` connections each into the open files
/// limit, keeping [`RESERVED_FILES`] for the rest of the process: accepting
/// past the limit fails with "Too many open files", and then every listener
/// and the database fail together.
pub fn fit_connections(wanted: usize, listeners: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return wanted;
    };
    let room = soft.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64;
    let fitted = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .clamp(1, wanted.max(1));
    if fitted < wanted {
        tracing::warn!(
            wanted,
            fitted,
            open_files_limit = soft,
            "Fewer connections per listener than configured: the open files limit is too low"
        );
    }
    fitted
}

/// Accepts connections within a cap, wrapped with the idle timeout.
struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    limits: ListenerLimits,
    refused: IntCounter,
}

impl Acceptor {
    fn new(listener: TcpListener, limits: ListenerLimits, refused: IntCounter) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
            refused,
        }
    }

    /// The next connection within the cap. One past the cap is accepted and
    /// closed at once: left in the kernel's backlog, a flood would fill it
    /// and new clients' handshakes would hang; closed, they see the refusal
    /// and retry. Accept errors (out of file descriptors, a connection
    /// reset before it was accepted) are logged and waited out: they never
    /// stop the listener.
    async fn accept(&self) -> (Timed, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                        self.refused.inc();
                        tracing::debug!(%peer, max_connections = self.limits.max_connections,
                            "Connection refused: the listener is at its cap");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    return (Timed::new(stream, &self.limits, permit), peer);
                }
                Err(error) => {
                    let pause = if is_connection_error(&error) {
                        Duration::ZERO
                    } else {
                        // EMFILE/ENFILE/ENOMEM: a retry at once fails again.
                        tracing::warn!(%error, "Cannot accept a connection; retrying shortly");
                        Duration::from_millis(100)
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` with `limits` until `shutdown`, then lets
/// open requests finish for up to ten seconds.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    refused: IntCounter,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve_http_tls(listener, router, limits, refused, None, shutdown).await
}

/// [`serve_http`], over TLS when `tls` is given. Each connection's
/// handshake runs on its own task within the header timeout, so a client
/// that stalls in it holds up nobody else.
pub async fn serve_http_tls(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    refused: IntCounter,
    tls: Option<ServerTls>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout(),
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout())
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let acceptor = Acceptor::new(listener, limits, refused);
    let graceful = GracefulShutdown::new();
    loop {
        let (timed, addr) = tokio::select! {
            c = acceptor.accept() => c,
            () = shutdown.cancelled() => break,
        };
        let watcher = graceful.watcher();
        let (router, builder, tls) = (router.clone(), builder.clone(), tls.clone());
        tokio::spawn(async move {
            let connection = match Connection::establish(timed, addr, tls.as_ref(), &limits).await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::debug!(peer = %addr, %error, "TLS handshake failed");
                    return;
                }
            };
            let peer = connection.peer.clone();
            let service = router.map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(peer.clone());
                request
            });
            let serving = builder
                .serve_connection(TokioIo::new(connection), TowerToHyperService::new(service))
                .into_owned();
            if let Err(error) = watcher.watch(serving).await {
                tracing::debug!(error = %error, "Connection closed with an error");
            }
        });
    }
    drop(acceptor);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_seconds = DRAIN.as_secs(),
            "Requests still open at shutdown were cut off"
        );
    }
    Ok(())
}

/// The connections of a gRPC listener for tonic's
/// `serve_with_incoming_shutdown`, with the cap and the idle timeout. The
/// request deadline is tonic's `Server::timeout`.
pub fn incoming(
    listener: TcpListener,
    limits: ListenerLimits,
    refused: IntCounter,
) -> impl futures::Stream<Item = io::Result<Connection>> + Send + 'static {
    incoming_tls(listener, limits, refused, None)
}

/// [`incoming`], over TLS when `tls` is given: connections come out of the
/// stream once their handshake is done (each on its own task, within the
/// header timeout); failed handshakes never do. The stream's [`Peer`] is
/// in every request's extensions (tonic's connect info).
#[cfg_attr(not(feature = "tls"), allow(unused_assignments))]
pub fn incoming_tls(
    listener: TcpListener,
    limits: ListenerLimits,
    refused: IntCounter,
    tls: Option<ServerTls>,
) -> impl futures::Stream<Item = io::Result<Connection>> + Send + 'static {
    let acceptor = Acceptor::new(listener, limits, refused);
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Connection>>(64);
    tokio::spawn(async move {
        loop {
            // Stops (and closes the listener) once tonic drops the stream.
            let (timed, addr) = tokio::select! {
                c = acceptor.accept() => c,
                () = tx.closed() => break,
            };
            match &tls {
                None => {
                    let connection = Connection::plain(timed, addr);
                    if tx.send(Ok(connection)).await.is_err() {
                        break;
                    }
                }
                Some(tls) => {
                    let (tx, tls) = (tx.clone(), tls.clone());
                    tokio::spawn(async move {
                        match Connection::establish(timed, addr, Some(&tls), &limits).await {
                            Ok(connection) => {
                                let _ = tx.send(Ok(connection)).await;
                            }
                            Err(error) => {
                                tracing::debug!(peer = %addr, %error, "TLS handshake failed");
                            }
                        }
                    });
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        let connection = rx.recv().await?;
        Some((connection, rx))
    })
}

/// Who is on the other end of a connection, in every request's
/// extensions: the client's address and, over mTLS, the names of the
/// certificate it presented (verified against the client CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<Arc<ClientCertificate>>,
}

/// A served connection: plain TCP or TLS over it, and its [`Peer`].
pub struct Connection {
    io: Io,
    peer: Peer,
}

enum Io {
    Plain(Timed),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::server::TlsStream<Timed>>),
}

impl Connection {
    fn plain(timed: Timed, addr: SocketAddr) -> Self {
        Self {
            io: Io::Plain(timed),
            peer: Peer {
                addr,
                certificate: None,
            },
        }
    }

    /// The connection as it will be served: with `tls`, after a handshake
    /// that must finish within the header timeout, and then the first
    /// request's headers must come within the header timeout again.
    #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
    async fn establish(
        timed: Timed,
        addr: SocketAddr,
        tls: Option<&ServerTls>,
        limits: &ListenerLimits,
    ) -> io::Result<Self> {
        let Some(tls) = tls else {
            return Ok(Self::plain(timed, addr));
        };
        #[cfg(feature = "tls")]
        {
            let mut stream =
                tokio::time::timeout(limits.header_timeout(), tls.acceptor.accept(timed))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
            let (timed, session) = stream.get_mut();
            let certificate = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(ClientCertificate::from_der)
                .map(Arc::new);
            timed.expect_request();
            Ok(Self {
                io: Io::Tls(Box::new(stream)),
                peer: Peer { addr, certificate },
            })
        }
        #[cfg(not(feature = "tls"))]
        match *tls {}
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer.addr
    }
}

/// Delegates to the plain or the TLS stream.
macro_rules! io {
    ($self:ident, $io:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            Io::Plain($io) => {
                let $io = Pin::new($io);
                $e
            }
            #[cfg(feature = "tls")]
            Io::Tls($io) => {
                let $io = Pin::new($io.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        io!(self, io => io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        io!(self, io => io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        io!(self, io => io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io!(self, io => io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io!(self, io => io.poll_shutdown(cx))
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

/// An accepted TCP connection that closes itself after a stretch with
/// nothing read or written: the header timeout until its first byte, the
/// idle timeout afterwards. It holds one place of its listener's cap.
struct Timed {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    header: Duration,
    _permit: OwnedSemaphorePermit,
}

impl Timed {
    fn new(stream: TcpStream, limits: &ListenerLimits, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            deadline: Box::pin(tokio::time::sleep(limits.header_timeout())),
            idle: limits.idle_timeout(),
            header: limits.header_timeout(),
            _permit: permit,
        }
    }

    /// After a TLS handshake: the first request must start within the
    /// header timeout, as on a fresh plain connection.
    #[cfg(feature = "tls")]
    fn expect_request(&mut self) {
        let next = Instant::now() + self.header;
        self.deadline.as_mut().reset(next);
    }

    fn active(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// `Pending` while the deadline is ahead; a timed-out error after it.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection idle for too long",
        ))
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_deadline(cx).map(Err),
        }
    }
}

impl Timed {
    /// A write's outcome: progress keeps the connection alive; a write
    /// that cannot go on (a client that stops reading its answers) is
    /// idle too.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.active();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_deadline(cx).map(Err),
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
