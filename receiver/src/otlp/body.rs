//! OTLP request bodies within two limits (docs/security.md, "Memory"):
//! the size of one request, checked after decompression, and a memory
//! budget shared by every request in flight on both transports.
//!
//! A request is charged as it goes: the bytes read off the wire, the bytes
//! gzip expands to, and, before it is decoded, what the decoded message
//! will hold ([`super::estimate`]). The charge is held until the request
//! has been answered. When the budget has no room, the request is refused
//! at once as retryable (HTTP 429 with `Retry-After`, gRPC
//! `RESOURCE_EXHAUSTED` with `RetryInfo`), and what it had read is dropped:
//! memory never follows the number of senders. A request that would decode
//! into more than the whole budget can never be taken and is refused as too
//! large, which senders do not retry.

use std::io::Read;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a refused sender is asked to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit of one request: not retryable.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// Decodes into more than the whole budget: not retryable.
    #[error(
        "the request would take about {estimate} bytes once decoded, more than the {budget} bytes \
         the hub holds for all requests in flight (max_inflight_request_bytes); send smaller batches"
    )]
    DecodesTooLarge { estimate: usize, budget: usize },
    /// Over the budget of all requests in flight: retryable.
    #[error(
        "the hub is holding its limit of {budget} bytes of requests in flight; retry in {RETRY_AFTER_SECS} s"
    )]
    OverBudget { budget: usize },
    #[error("invalid gzip body: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("cannot read request body: {0}")]
    Read(String),
}

/// The answer to a sender over the budget: `RESOURCE_EXHAUSTED` with a
/// `RetryInfo` detail, which OTLP clients retry after the delay. gRPC
/// answers it as is; OTLP/HTTP sends its encoded details with a 429.
pub fn retry_later(message: String) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(RETRY_AFTER_SECS))),
    )
}

/// The memory budget of the requests in flight, in bytes.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: usize,
    /// Bytes held, for `/metrics`.
    held: Option<IntGauge>,
    /// Decompressions and decodes running at once, one per core: they are
    /// CPU work, and spread over many threads each thread's allocator
    /// keeps its own freed memory, so the process holds far more than the
    /// requests do.
    decoders: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
            held: None,
            decoders: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Runs `work` (decompressing, decoding) on the blocking pool once one
    /// of the decoder places is free.
    pub async fn decode<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let _place = self
            .decoders
            .acquire()
            .await
            .expect("the semaphore is never closed");
        tokio::task::spawn_blocking(work).await
    }

    /// Reports the bytes held in `gauge`.
    pub fn with_gauge(mut self, gauge: IntGauge) -> Self {
        self.held = Some(gauge);
        self
    }

    fn gauge(&self, delta: i64) {
        if let Some(g) = &self.held {
            g.add(delta);
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not charged to any request now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// An empty charge for one request.
    pub fn charge(&self) -> Charge {
        Charge {
            budget: self.clone(),
            held: None,
        }
    }

    /// The smallest budget that holds one ordinary request of `limit`
    /// bytes: its body, its gzip output and its decoded message.
    pub fn minimum(limit: usize) -> usize {
        limit.saturating_mul(4)
    }
}

/// The bytes one request holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: BodyBudget,
    held: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Takes `n` more bytes, or refuses at once when the budget lacks them.
    pub fn add(&mut self, n: usize) -> Result<(), BodyError> {
        if n == 0 {
            return Ok(());
        }
        let over = || BodyError::OverBudget {
            budget: self.budget.total,
        };
        let n = u32::try_from(n).map_err(|_| over())?;
        let permit = self
            .budget
            .permits
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| over())?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        self.budget.gauge(i64::from(n));
        Ok(())
    }

    /// Takes what the decoded message will hold: refused as too large when
    /// it is more than the whole budget.
    pub fn add_decoded(&mut self, estimate: usize) -> Result<(), BodyError> {
        if estimate > self.budget.total {
            return Err(BodyError::DecodesTooLarge {
                estimate,
                budget: self.budget.total,
            });
        }
        self.add(estimate)
    }

    /// Gives back `n` bytes (a buffer that has been dropped).
    pub fn release(&mut self, n: usize) {
        if let Some(held) = &mut self.held {
            let n = n.min(held.num_permits());
            drop(held.split(n));
            self.budget.gauge(-(n as i64));
        }
    }

    /// The bytes held now.
    pub fn held(&self) -> usize {
        self.held.as_ref().map_or(0, |p| p.num_permits())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let held = self.held();
        self.budget.gauge(-(held as i64));
    }
}

/// Reads a whole body of at most `limit` bytes into one buffer of its own,
/// charged as it grows. Each frame is copied out and dropped at once: a
/// frame is a slice of the connection's read buffer, and holding it would
/// hold that whole buffer, several times the frame, uncharged.
pub async fn read<B>(body: B, limit: usize, charge: &mut Charge) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    // The announced length (`Content-Length`), when there is one within the
    // limit, is reserved at once.
    let announced = body.size_hint().exact().map(|n| n as usize);
    if announced.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut out = BytesMut::new();
    if let Some(n) = announced.filter(|n| *n > 0) {
        if let Err(e) = charge.add(n) {
            return Err(drain(body, limit, e).await);
        }
        out.reserve(n);
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = out.len().saturating_add(data.len());
        if needed > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if needed > out.capacity() {
            let before = out.capacity();
            let wanted = (before * 2).max(needed).max(64 * 1024).min(limit);
            if let Err(e) = charge.add(wanted - before) {
                let read = out.len() + data.len();
                drop((out, data));
                return Err(drain(body, limit.saturating_sub(read), e).await);
            }
            out.reserve(wanted - out.len());
            if out.capacity() > wanted {
                charge.add(out.capacity() - wanted)?;
            }
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// Reads and drops the rest of a body refused for the budget, up to
/// `limit` more bytes, so that the sender reads a clean 429 rather than a
/// connection reset by a server that closed with its data unread; then
/// returns `refused`. Nothing is kept, so nothing is charged.
async fn drain<B>(mut body: std::pin::Pin<&mut B>, limit: usize, refused: BodyError) -> BodyError
where
    B: http_body::Body<Data = Bytes>,
{
    let mut left = limit;
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map_or(0, Bytes::len);
        if n > left {
            break;
        }
        left -= n;
    }
    refused
}

/// Size of the pieces gzip output is decoded and charged in.
const GUNZIP_CHUNK: usize = 64 * 1024;

/// Decompresses a gzip body of one or more members into at most `limit`
/// bytes, charging the output as it grows, after `reserve` bytes left
/// empty at the front (a gRPC frame header). Bytes after the last member
/// that are not another member are an error.
#[allow(clippy::disallowed_methods)] // This is the capped, charged decoder.
pub fn gunzip(
    body: &[u8],
    limit: usize,
    reserve: usize,
    charge: &mut Charge,
) -> Result<BytesMut, BodyError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(body);
    let initial = (reserve + body.len().saturating_mul(4)).min(reserve + limit + 1);
    charge.add(initial)?;
    let mut out = BytesMut::with_capacity(initial);
    out.resize(reserve, 0);
    let mut chunk = vec![0u8; GUNZIP_CHUNK];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyError::Gzip(e)),
        };
        if out.len() - reserve + n > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if out.len() + n > out.capacity() {
            // Grow by doubling as a Vec would, but charged first and never
            // past what the limit allows.
            let wanted = (out.capacity() * 2)
                .max(out.len() + n)
                .min(reserve + limit + GUNZIP_CHUNK);
            charge.add(wanted - out.capacity())?;
            out.reserve(wanted - out.len());
            if out.capacity() > wanted {
                charge.add(out.capacity() - wanted)?;
            }
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use http_body_util::{Full, StreamBody};

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn charges_are_refused_past_the_budget_and_given_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = budget.charge();
        a.add(60).expect("room");
        let mut b = budget.charge();
        assert!(matches!(
            b.add(41),
            Err(BodyError::OverBudget { budget: 100 })
        ));
        b.add(40).expect("room");
        a.release(10);
        assert_eq!((a.held(), budget.available()), (50, 10));
        drop(a);
        assert_eq!(budget.available(), 60);
        drop(b);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn gunzip_takes_members_refuses_garbage_and_stops_at_the_limit() {
        let budget = BodyBudget::new(1 << 30);
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        let out = gunzip(&two, 100, 5, &mut budget.charge()).expect("two members");
        assert_eq!(&out[5..], b"hello world");
        let mut garbage = gzip(b"hello");
        garbage.extend_from_slice(b"trailing");
        assert!(matches!(
            gunzip(&garbage, 100, 0, &mut budget.charge()),
            Err(BodyError::Gzip(_))
        ));
        let bomb = gzip(&vec![0u8; 10 << 20]);
        assert!(matches!(
            gunzip(&bomb, 1 << 20, 0, &mut budget.charge()),
            Err(BodyError::TooLarge { limit }) if limit == 1 << 20
        ));
    }

    #[test]
    fn gunzip_is_charged_for_what_it_holds() {
        let budget = BodyBudget::new(4 << 20);
        let bomb = gzip(&vec![7u8; 16 << 20]);
        let mut charge = budget.charge();
        assert!(matches!(
            gunzip(&bomb, 64 << 20, 0, &mut charge),
            Err(BodyError::OverBudget { .. })
        ));
        drop(charge);
        let mut charge = budget.charge();
        let out = gunzip(&gzip(&[1u8; 3 << 20]), 64 << 20, 0, &mut charge).expect("fits");
        assert_eq!(out.len(), 3 << 20);
        assert!(
            charge.held() >= out.capacity(),
            "{} < {}",
            charge.held(),
            out.capacity()
        );
    }

    #[tokio::test]
    async fn bodies_are_read_within_the_limit_and_the_budget() {
        let budget = BodyBudget::new(1 << 20);
        let mut charge = budget.charge();
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(
            &read(body, 10, &mut charge).await.expect("ok")[..],
            b"0123456789"
        );
        assert_eq!(charge.held(), 10);
        let frames =
            futures::stream::iter((0..5).map(|_| {
                Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"abc")))
            }));
        let mut charge = budget.charge();
        let whole = read(StreamBody::new(frames), 100, &mut charge)
            .await
            .expect("ok");
        assert_eq!(whole.len(), 15);
        let frames =
            futures::stream::iter((0..5).map(|_| {
                Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"abc")))
            }));
        assert!(matches!(
            read(StreamBody::new(frames), 14, &mut budget.charge()).await,
            Err(BodyError::TooLarge { limit: 14 })
        ));
    }
}
