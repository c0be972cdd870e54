//! OTLP/gRPC transport: `LogsService/Export` with tonic. The request is
//! sent as the bytes the outbox built (a codec that writes them as they
//! are), so no record is decoded and re-encoded on the way out.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::http::error_chain;
use super::tls::{self, TlsConfig};
use super::transport::{ExportOutcome, FailureReason, LogsRequest, Transport, accepted};
use crate::error::{OutboxError, Result};
use sextant_kit::Secret;

/// `endpoint` (named `name` in errors) with `config` applied: for
/// `https://`, the public roots, the CA file and the client certificate;
/// `http://` as it is; any other scheme refused. The agent's channel to
/// the orchestrator dials with it too.
#[cfg_attr(not(feature = "tls"), allow(unused_mut))]
pub fn with_tls(mut endpoint: Endpoint, name: &str, config: &TlsConfig) -> Result<Endpoint> {
    let invalid = |reason: String| OutboxError::Endpoint {
        endpoint: name.to_owned(),
        reason,
    };
    let material = tls::load(config)?;
    match endpoint.uri().scheme_str() {
        Some("http") => {}
        #[cfg(feature = "tls")]
        Some("https") => {
            use tonic::transport::{Certificate, ClientTlsConfig, Identity};
            // The public roots stay trusted beside the CA file.
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some((pem, _)) = &material.ca {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some((cert, key)) = &material.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| invalid(error_chain(&e)))?;
        }
        #[cfg(not(feature = "tls"))]
        Some("https") => {
            let _ = material;
            return Err(invalid(
                "https needs sextant-exporters built with the `tls` feature".to_owned(),
            ));
        }
        other => {
            return Err(invalid(format!(
                "unsupported scheme {:?}: use http:// or https://",
                other.unwrap_or("")
            )));
        }
    }
    Ok(endpoint)
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Settings of an OTLP/gRPC endpoint.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// `http://hub:4317` (or `https://` with the `tls` feature).
    pub endpoint: String,
    /// Sent as the `authorization: Bearer …` metadata.
    pub token: Option<Secret>,
    /// Gzip requests.
    pub gzip: bool,
    /// Time for one request.
    pub timeout: Duration,
    /// Extra CA and client certificate for `https://` endpoints.
    pub tls: TlsConfig,
}

impl GrpcConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            token: None,
            gzip: false,
            timeout: Duration::from_secs(10),
            tls: TlsConfig::default(),
        }
    }
}

/// Sends logs requests over gRPC. The channel connects lazily and
/// reconnects by itself.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    client: tonic::client::Grpc<Channel>,
    endpoint: String,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl GrpcTransport {
    pub fn new(config: GrpcConfig) -> Result<Self> {
        let invalid = |reason: String| OutboxError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout);
        endpoint = with_tls(endpoint, &config.endpoint, &config.tls)?;
        endpoint = endpoint.http2_keep_alive_interval(Duration::from_secs(30));
        let mut client = tonic::client::Grpc::new(endpoint.connect_lazy())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(1 << 20);
        if config.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let authorization = match &config.token {
            Some(token) => Some(
                format!("Bearer {}", token.expose())
                    .parse()
                    .map_err(|_| invalid("the token is not valid metadata".to_owned()))?,
            ),
            None => None,
        };
        Ok(Self {
            client,
            endpoint: config.endpoint,
            authorization,
        })
    }

    async fn send(&self, request: LogsRequest) -> ExportOutcome {
        let mut client = self.client.clone();
        if let Err(e) = client.ready().await {
            return ExportOutcome::Retry {
                reason: FailureReason::Connection,
                retry_after: None,
                detail: format!("channel not ready: {e}"),
            };
        }
        let mut req = tonic::Request::new(request.body);
        if let Some(auth) = &self.authorization {
            req.metadata_mut().insert("authorization", auth.clone());
        }
        match client
            .unary(req, PathAndQuery::from_static(EXPORT_PATH), RawCodec)
            .await
        {
            Ok(response) => accepted(response.get_ref()),
            Err(status) => classify(&status),
        }
    }
}

impl Transport for GrpcTransport {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn export(
        &self,
        request: LogsRequest,
    ) -> impl std::future::Future<Output = ExportOutcome> + Send {
        self.send(request)
    }
}

/// Classifies a gRPC status per the OTLP/gRPC rules.
pub(crate) fn classify(status: &Status) -> ExportOutcome {
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    // A status made on this side from a transport error (refused, reset, a
    // failed TLS handshake) carries that error as its source; one the peer
    // sent does not.
    let local = std::error::Error::source(status);
    let (code, message) = (status.code(), status.message());
    let detail = match local.map(error_chain) {
        Some(chain) if chain.contains(message) => format!("gRPC {code:?}: {chain}"),
        Some(chain) => format!("gRPC {code:?}: {message}: {chain}"),
        None => format!("gRPC {code:?}: {message}"),
    };
    let retry = |reason| ExportOutcome::Retry {
        reason,
        retry_after,
        detail: detail.clone(),
    };
    let refuse = |reason| ExportOutcome::Refused {
        reason,
        detail: detail.clone(),
    };
    match status.code() {
        // tonic reports a failed connection (or TLS handshake) as
        // UNAVAILABLE, and a connection closed under a request as UNKNOWN.
        Code::Unavailable if local.is_some() || status.message().contains("connect") => {
            retry(FailureReason::Connection)
        }
        Code::Unknown if local.is_some() => retry(FailureReason::Connection),
        Code::Unavailable => retry(FailureReason::Unavailable),
        Code::DeadlineExceeded => retry(FailureReason::Timeout),
        Code::Cancelled | Code::Aborted | Code::OutOfRange | Code::DataLoss => {
            retry(FailureReason::RetryableStatus)
        }
        Code::ResourceExhausted if retry_after.is_some() => retry(FailureReason::Throttled),
        Code::ResourceExhausted => refuse(FailureReason::TooLarge),
        Code::Unauthenticated | Code::PermissionDenied => retry(FailureReason::Unauthorized),
        Code::InvalidArgument => refuse(FailureReason::BadRequest),
        _ => refuse(FailureReason::Refused),
    }
}

/// Sends pre-encoded request bytes; decodes the response with prost.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

struct RawEncoder;
struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportLogsServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportLogsServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable export response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn reason(status: Status) -> String {
        match classify(&status) {
            ExportOutcome::Retry {
                reason,
                retry_after,
                ..
            } => format!("retry {} {:?}", reason.as_str(), retry_after),
            ExportOutcome::Refused { reason, .. } => format!("refuse {}", reason.as_str()),
            ExportOutcome::Accepted { .. } => "ok".to_owned(),
        }
    }

    #[test]
    fn codes_are_classified_per_otlp() {
        let with_retry = |code| {
            Status::with_error_details(
                code,
                "slow down",
                ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
            )
        };
        assert_eq!(
            reason(Status::unavailable("down")),
            "retry unavailable None"
        );
        assert_eq!(
            reason(with_retry(Code::Unavailable)),
            "retry unavailable Some(3s)"
        );
        assert_eq!(
            reason(with_retry(Code::ResourceExhausted)),
            "retry throttled Some(3s)"
        );
        assert_eq!(
            reason(Status::resource_exhausted("too big")),
            "refuse too_large"
        );
        assert_eq!(
            reason(Status::invalid_argument("bad")),
            "refuse bad_request"
        );
        assert_eq!(reason(Status::aborted("x")), "retry retryable_status None");
        assert_eq!(reason(Status::internal("x")), "refuse refused");
        assert_eq!(
            reason(Status::unauthenticated("x")),
            "retry unauthorized None"
        );
        // Made here from a transport error (it has a source): the
        // connection failed; the same code from the peer is a refusal.
        assert_eq!(
            reason(Status::from_error(Box::new(std::io::Error::other(
                "invalid peer certificate: UnknownIssuer"
            )))),
            "retry connection None"
        );
        assert_eq!(reason(Status::unknown("x")), "refuse refused");
    }
}
