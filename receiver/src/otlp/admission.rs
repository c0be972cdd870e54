//! Admission of an OTLP/gRPC request before tonic decodes it, the same
//! steps OTLP/HTTP takes in `read_request`: the bearer token, the tenant's
//! rate limit, then the body read within the size limit and the memory
//! budget ([`super::body`]) and, when gzip-compressed, decompressed here so
//! that its expanded size is charged too. The handler finds the
//! [`Principal`] in the request's extensions; the charge is held until the
//! answer has been produced.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use http::{Request, Response};
use sextant_kit::serve::Peer;
use tonic::Status;
use tonic::body::Body;

use super::body::{self, BodyBudget, BodyError, Charge};
use super::estimate::{self, Signal};
use crate::auth::{AuthError, Authenticator, Principal, Scope, refusal_message};
use crate::metrics::HubMetrics;
use crate::rate_limit::SurfaceLimiter;

/// A gRPC message's frame header: a compressed flag and a 32-bit length.
const FRAME_HEADER: usize = 5;

/// What every OTLP/gRPC request is admitted by.
#[derive(Clone)]
pub struct Admission {
    pub auth: Authenticator,
    pub rate_limit: SurfaceLimiter,
    pub budget: BodyBudget,
    pub max_request_bytes: usize,
    pub metrics: HubMetrics,
}

impl Admission {
    /// Admits a request, or says why not.
    async fn admit(&self, request: Request<Body>) -> Result<(Request<Body>, Charge), Status> {
        let principal = self.authenticate(&request)?;
        // Unknown paths are answered by tonic (UNIMPLEMENTED) undecoded.
        let signal = match request.uri().path() {
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Signal::Logs),
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => {
                Some(Signal::Metrics)
            }
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Signal::Traces),
            _ => None,
        };
        if let Err(limited) = self.rate_limit.check(&principal.tenant) {
            return Err(crate::rate_limit::ingest_status(
                &principal.tenant,
                &self.rate_limit.describe(),
                limited,
            ));
        }
        let (mut parts, body) = request.into_parts();
        let compressed_as = parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let mut charge = self.budget.charge();
        let limit = self.max_request_bytes;
        let wire = body::read(body, limit.saturating_add(FRAME_HEADER), &mut charge)
            .await
            .map_err(|e| refusal(&self.metrics, e))?;
        let wire_len = wire.len();
        let headers = &mut parts.headers;
        let metrics = self.metrics.clone();
        let decompress = move || {
            let refused = |e: BodyError| refusal(&metrics, e);
            let (compressed, message) = frame(&wire)?;
            let plain = if compressed {
                if compressed_as.as_deref() != Some("gzip") {
                    return Err(Status::unimplemented(format!(
                        "message compressed with {compressed_as:?}; the hub accepts gzip"
                    )));
                }
                let mut plain =
                    body::gunzip(message, limit, FRAME_HEADER, &mut charge).map_err(refused)?;
                let len = u32::try_from(plain.len() - FRAME_HEADER)
                    .map_err(|_| refused(BodyError::TooLarge { limit }))?;
                let mut header = &mut plain[..FRAME_HEADER];
                header.put_u8(0);
                header.put_u32(len);
                charge.release(wire.len());
                drop(wire);
                plain.freeze()
            } else {
                if message.len() > limit {
                    return Err(refused(BodyError::TooLarge { limit }));
                }
                wire
            };
            if let Some(signal) = signal {
                charge
                    .add_decoded(estimate::protobuf(signal, &plain[FRAME_HEADER..]))
                    .map_err(refused)?;
            }
            Ok((plain, compressed, charge))
        };
        let (plain, compressed, charge) = if wire_len > INLINE_BYTES {
            self.budget
                .decode(decompress)
                .await
                .map_err(|e| Status::internal(format!("decompressing failed: {e}")))??
        } else {
            decompress()?
        };
        if compressed {
            headers.remove("grpc-encoding");
        }
        parts.extensions.insert(principal);
        Ok((Request::from_parts(parts, one_frame(plain)), charge))
    }

    /// The bearer token, or the client certificate of the connection
    /// (tonic's connect info, [`Peer`]).
    fn authenticate(&self, request: &Request<Body>) -> Result<Principal, Status> {
        let header = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let peer = request.extensions().get::<Peer>();
        self.auth
            .check_request(header, peer, Scope::Ingest)
            .map_err(|e| match e {
                AuthError::Forbidden(_) => Status::permission_denied(e.to_string()),
                AuthError::Missing | AuthError::Unknown => {
                    Status::unauthenticated(refusal_message(&e, peer))
                }
            })
    }
}

/// Bodies up to this size are decompressed on the request's own task;
/// larger ones on the blocking pool.
const INLINE_BYTES: usize = 64 * 1024;

/// The status of a body that was not taken, counted.
fn refusal(metrics: &HubMetrics, e: BodyError) -> Status {
    metrics.body_refused(&e);
    match e {
        BodyError::TooLarge { .. } | BodyError::DecodesTooLarge { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        BodyError::OverBudget { .. } => body::retry_later(e.to_string()),
        BodyError::Gzip(_) | BodyError::Read(_) => Status::invalid_argument(e.to_string()),
    }
}

/// The one message of a unary request body: its compressed flag and bytes.
fn frame(body: &[u8]) -> Result<(bool, &[u8]), Status> {
    let malformed =
        |what: &str| Status::invalid_argument(format!("malformed gRPC request: {what}"));
    if body.len() < FRAME_HEADER {
        return Err(malformed("no message"));
    }
    let compressed = match body[0] {
        0 => false,
        1 => true,
        _ => return Err(malformed("invalid compression flag")),
    };
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = &body[FRAME_HEADER..];
    if message.len() != len {
        return Err(malformed("the message length does not match the body"));
    }
    Ok((compressed, message))
}

fn one_frame(frame: Bytes) -> Body {
    Body::new(http_body_util::Full::new(frame))
}

/// Puts [`Admission`] in front of the OTLP services.
#[derive(Clone)]
pub struct AdmissionLayer(pub Admission);

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            admission: self.0.clone(),
        }
    }
}

/// A service behind [`Admission`].
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Admission,
}

impl<S> tower::Service<Request<Body>> for Admitted<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The instance that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admission = self.admission.clone();
        Box::pin(async move {
            match admission.admit(request).await {
                Ok((request, charge)) => {
                    let response = inner.call(request).await;
                    drop(charge);
                    response
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    #[test]
    fn frames_are_checked() {
        assert!(frame(&[0, 0, 0, 0, 2, 8, 1]).is_ok_and(|(c, m)| !c && m == [8, 1]));
        assert!(frame(&[1, 0, 0, 0, 0]).is_ok_and(|(c, m)| c && m.is_empty()));
        for bad in [&[][..], &[0, 0, 0], &[2, 0, 0, 0, 0], &[0, 0, 0, 0, 3, 1]] {
            let err = frame(bad).expect_err("malformed");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn a_second_message_is_refused() {
        let mut two = BytesMut::new();
        for _ in 0..2 {
            two.put_u8(0);
            two.put_u32(1);
            two.put_u8(9);
        }
        assert!(frame(&two).is_err());
    }
}
